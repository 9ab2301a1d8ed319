#!/usr/bin/env python3
"""The agent on the phantom's held-out test stills, without the training data.

  phantom_stills.py [--work DIR] [--model ONNX] [--config TOML] BINARY [BINARY ...]

Renders exactly the stills `prepare.py` writes for its `test` (8 runs × 80 frames, 1080p)
and `test720` (4 × 80, 720p) splits — from prepare.PHANTOM and its seeded generators,
drawing the training and validation splits without rendering them — and scores them with each agent
binary given (`endo-agent score --json`, the automatic FOV, as `evaluate.py` does for the
agent). Two binaries print two rules side by side in one run. Per split:

  srocc        Spearman rank correlation of `quality` with 1 − severity
  acc@0.6      good/bad accuracy, good = quality ≥ select.threshold_high (0.6)
  good_pass    share of good frames that pass
  mild_recall  share of σ = 1.5 px defocus frames called bad (quality < 0.6)

`--dump FILE` writes every frame's label row and `score --json` output, one JSON object per
line (binary, split, label, score), to study a combination rule without re-scoring.

Needs numpy and scipy (models/realset's venv is enough); ~2 min per binary on 2 cores.
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data  # noqa: E402
import prepare  # noqa: E402


def splits():
    """(split, frames, variant, schedule) of every test and test720 run, as prepare.py draws them:
    the training and validation splits are drawn too (not rendered), since they share the
    generator with test."""
    out = []
    for name, seeds, heights, frames, stills, mild, rng in prepare.phantom_splits():
        plan = data.plan_split(rng, seeds, heights, frames, mild)
        if stills:
            out += [(name, frames, v, s) for v, s in plan]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/endo-agent/phantom-eval"))
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "..", "quality-int8.onnx"))
    ap.add_argument("--config")
    ap.add_argument("--dump", help="write every frame's label and score here (JSON lines)")
    ap.add_argument("binaries", nargs="+")
    a = ap.parse_args()
    dump = open(a.dump, "w") if a.dump else None
    runs = []
    for name, frames, v, sched in splits():
        d = os.path.join(a.work, name, f"run_{v['seed']:05d}")
        if not os.path.exists(os.path.join(d, "labels.csv")):
            os.environ.setdefault("ENDO_AGENT", a.binaries[0])
            data.render(d, None, schedule=sched, frames=frames, stills=True, **v)
        runs.append((name, d))
    for binary in a.binaries:
        for name in ["test", "test720"]:
            q, sev, exp, deg = [], [], [], []
            for n, d in runs:
                if n != name:
                    continue
                rows = data.read_labels(os.path.join(d, "labels.csv"))
                cmd = [binary, "score", "--json", "--model", a.model]
                if a.config:
                    cmd += ["--config", a.config]
                res = subprocess.run(cmd + [os.path.join(d, r["file"]) for r in rows],
                                     check=True, capture_output=True, text=True)
                scores = [json.loads(line)["score"] for line in res.stdout.splitlines()]
                q += [s["quality"] for s in scores]
                if dump:
                    for r, s in zip(rows, scores):
                        dump.write(json.dumps(dict(binary=binary, split=name, label=r, score=s)) + "\n")
                sev += [float(r["severity"]) for r in rows]
                exp += [r["expected"] for r in rows]
                deg += [r["degradation"] for r in rows]
            q, sev, exp = np.array(q), np.array(sev), np.array(exp)
            good = exp == "good"
            mild = np.array([d == "defocus sigma=1.5" for d in deg])
            print(json.dumps(dict(
                binary=binary, split=name, frames=len(q),
                srocc=round(float(spearmanr(q, 1 - sev).correlation), 3),
                acc=round(float(((q >= 0.6) == good).mean()), 3),
                good_pass=round(float((q[good] >= 0.6).mean()), 3),
                mild_recall=round(float((q[mild] < 0.6).mean()), 3), mild_frames=int(mild.sum()))))
    if dump:
        dump.close()


if __name__ == "__main__":
    main()
