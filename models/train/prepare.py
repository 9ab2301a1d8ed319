#!/usr/bin/env python3
"""The datasets: prepare.py WORK_DIR MANIFEST [REALSET_DIR]

Phantom (rendered by the agent):
  train/  40 runs (seeds 1-40), 96 frames each; 3/4 at 1080p, 1/4 at 720p
  val/    6 runs (seeds 501-506), 64 frames, 1080p: model selection and int8 calibration
  test/   8 runs (seeds 901-908), 80 frames, 1080p, as PNG stills (evaluated through the
          agent's still path, like real images), 15 % of them σ = 1.5 px defocus
  test720/ 4 runs (seeds 951-954), 80 frames, 720p, otherwise like test/ (the demo's size)
Palette (70 % NBI, 30 % white light), FOV shape and OSD vary per run; seeded, so the same
command renders the same frames.

Real photographs (models/realset/make.py, in REALSET_DIR, default ~/.cache/endo-agent/realset):
  real_train/  the realset's train split (random degradations), as model inputs
  real_val/    its graded val split: model selection together with val/
The realset's test split is never used here: models/realset/evaluate.py scores it.
"""
import os
import random
import shutil
import sys

import data


def main():
    work, manifest = sys.argv[1], sys.argv[2]
    realset = sys.argv[3] if len(sys.argv) > 3 else os.path.expanduser("~/.cache/endo-agent/realset")
    only = os.environ.get("PREPARE_ONLY", "")  # "phantom" or "real": one half (parallel runs)
    if only != "phantom":
        for split in ["real_train", "real_val"]:
            shutil.rmtree(os.path.join(work, split), ignore_errors=True)
        data.realset_dataset(os.path.join(realset, "train"), manifest, os.path.join(work, "real_train"))
        data.realset_dataset(os.path.join(realset, "val"), manifest, os.path.join(work, "real_val"))
    if only == "real":
        return
    rng = random.Random(20261121)
    for split in ["train", "val", "test", "test720"]:
        shutil.rmtree(os.path.join(work, split), ignore_errors=True)
    data.make_split(work, "train", manifest, range(1, 41), [1080, 1080, 1080, 720], 96, rng)
    data.make_split(work, "val", manifest, range(501, 507), [1080], 64, rng)
    for d in data.make_split(work, "test", manifest, range(901, 909), [1080], 80, rng, stills=True, mild_blur_share=0.15):
        data.real_dataset(d, os.path.join(d, "labels.csv"), manifest, os.path.join(d, "inputs"))
    # Its own generator state, so that adding it did not change the splits above.
    rng720 = random.Random(720)
    for d in data.make_split(work, "test720", manifest, range(951, 955), [720], 80, rng720, stills=True, mild_blur_share=0.15):
        data.real_dataset(d, os.path.join(d, "labels.csv"), manifest, os.path.join(d, "inputs"))
    print("datasets ready in", work)


if __name__ == "__main__":
    main()
