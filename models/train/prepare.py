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


# The phantom splits: (name, seeds, heights, frames per run, as PNG stills, share of
# σ = 1.5 px defocus, own generator seed). Splits without their own seed draw, in this
# order, from one generator seeded with PHANTOM_SEED.
PHANTOM_SEED = 20261121
PHANTOM = [
    ("train", range(1, 41), [1080, 1080, 1080, 720], 96, False, 0.0, None),
    ("val", range(501, 507), [1080], 64, False, 0.0, None),
    ("test", range(901, 909), [1080], 80, True, 0.15, None),
    # Its own generator state, so that adding it did not change the splits above.
    ("test720", range(951, 955), [720], 80, True, 0.15, 720),
]


def phantom_splits():
    """PHANTOM's rows with the generator in place of the seed, in order. Draw each split's
    runs (data.make_split, or data.plan_split without rendering) before the next's: the
    splits that share the generator depend on what the earlier ones drew."""
    shared = random.Random(PHANTOM_SEED)
    for name, seeds, heights, frames, stills, mild, own in PHANTOM:
        rng = shared if own is None else random.Random(own)
        yield name, seeds, heights, frames, stills, mild, rng


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
    for name, seeds, heights, frames, stills, mild, rng in phantom_splits():
        shutil.rmtree(os.path.join(work, name), ignore_errors=True)
        dirs = data.make_split(work, name, manifest, seeds, heights, frames, rng, stills=stills, mild_blur_share=mild)
        if stills:  # evaluated through the agent's still path, and as model inputs
            for d in dirs:
                data.real_dataset(d, os.path.join(d, "labels.csv"), manifest, os.path.join(d, "inputs"))
    print("datasets ready in", work)


if __name__ == "__main__":
    main()
