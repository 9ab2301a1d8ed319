#!/usr/bin/env python3
"""Blur in a still: how much of the real-image SROCC gap it is, and one classical try.

Reads a split's frames and the agent's own scores of them (`evaluate.py --dump`), then
prints, recomputing only the classical blur artifact (every other artifact, the model's
output and the combination rule as the agent has them; the defaults of `[scoring]`):

- the agent as it is (the recomputation must match the dump: checked);
- the **ceiling**: the true severity put in as the blur artifact of the defocus and
  motion frames;
- a **blur scale** from the luma structure function g_k (mean squared difference of
  pixels k apart, k = 1 … 32, four directions, every second row of the central 70 % of the
  FOV): per octave the noise-free exponent log2((g4k - g2k) / (g2k - gk)), 2 where the
  image is smooth; the scale is the octave where it first falls under a threshold (0 =
  already at 1 px), the largest over the directions; defocus = max(today's, soft(scale)).

    ENDO_AGENT=target/release/endo-agent python models/realset/evaluate.py --split val \\
        --model models/quality-int8.onnx --dump /tmp/val.jsonl
    python models/realset/blur_study.py --split val --dump /tmp/val.jsonl

docs/scoring.md ("Three classical blur measures tried") has the figures. Train and
validation only: the test split is for the release's figures.
"""
import argparse
import csv
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from evaluate import metrics  # noqa: E402

KS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
DIRS = ((1, 0), (0, 1), (1, 1), (1, -1))


def structure(path, r):
    """g_k per direction over the central 70 % of the true FOV (BT.601 luma)."""
    a = np.asarray(Image.open(path).convert("RGB"), np.float32)
    y = 0.257 * a[..., 0] + 0.504 * a[..., 1] + 0.098 * a[..., 2] + 16
    fx, fy, fw, fh = (int(r[k]) for k in ("fov_x", "fov_y", "fov_w", "fov_h"))
    m = 33
    x0, y0 = fx + fw * 15 // 100 + m, fy + fh * 15 // 100 + m
    x1, y1 = fx + fw * 85 // 100 - m, fy + fh * 85 // 100 - m
    base = y[y0:y1:2, x0:x1]
    g = []
    for dx, dy in DIRS:
        g.append([float(((y[y0 + k * dy:y1 + k * dy:2, x0 + k * dx:x1 + k * dx] - base) ** 2).mean()) for k in KS])
    return np.array(g)


def blur_scale(g, threshold):
    ix = {k: i for i, k in enumerate(KS)}
    worst = 0.0
    for d in g:
        e = []
        for k in (1, 2, 4, 8):
            lo, hi = d[ix[2 * k]] - d[ix[k]], d[ix[4 * k]] - d[ix[2 * k]]
            e.append(2.0 if lo <= 1e-6 else float(np.clip(np.log2(max(hi, 1e-6) / lo), -1, 3)))
        pos = 4.0
        for o, v in enumerate(e):
            if v < threshold:
                pos = 0.0 if o == 0 else o - 1 + (e[o - 1] - threshold) / max(e[o - 1] - v, 1e-6)
                break
        worst = max(worst, pos)
    return worst


def ramp(x, lo, hi):
    return float(np.clip((x - lo) / (hi - lo), 0, 1))


def soft(x, zero, half):
    t = (x - zero) / (half - zero)
    return 1 - 2 ** (-t) if t > 0 else 0.0


def classical_quality(m, blur=None):
    """The agent's classical artifacts at the default [scoring] (agent/score/classical.rs);
    `blur(defocus, motion) -> (defocus, motion)` replaces the two focus values."""
    over = max(soft(m["clipped_fraction"], 0.05, 0.3), soft(m["mean_luma"], 135, 180))
    a = [
        max(soft(m["dark_fraction"], 0.25, 0.6), soft(m["mean_luma"], 80, 60)),
        over,
        soft(m["specular_fraction"], 0.005, 0.02) * (1 - over),
        ramp(m["cast"], 0, 12),
        max(soft(m["noise_sigma"], 4, 10.5), soft(m["blockiness"], 1.05, 2.4)),
    ]
    defocus, motion = 1 - ramp(m["sharpness"], 0.38, 0.41), 1 - ramp(m["isotropy"], 0.2, 0.4)
    if blur:
        defocus, motion = blur(defocus, motion)
    a.append(max(defocus, motion) * (1 - max(a)))
    return float(np.prod([1 - v for v in a]))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/endo-agent/realset"))
    ap.add_argument("--split", default="val", choices=("train", "val"))
    ap.add_argument("--dump", required=True, help="evaluate.py --dump output for this split")
    ap.add_argument("--weight", type=float, default=0.5, help="scoring.model_weight")
    a = ap.parse_args()
    d = os.path.join(a.work, a.split)
    labels = {r["file"]: r for r in csv.DictReader(open(os.path.join(d, "labels.csv")))}
    frames = [json.loads(line) for line in open(a.dump)]
    rows, scores, g = [], [], []
    for f in frames:
        r = labels[f["label"]["file"]]
        rows.append(r)
        scores.append(f["out"]["score"])
        g.append(structure(os.path.join(d, r["file"]), r))
    err = max(abs(classical_quality(s["measures"]) - s["classical_quality"]) for s in scores)
    assert err < 1e-4, f"the recomputed classical quality is off by {err}: defaults changed?"

    def run(name, blur_of):
        q = [classical_quality(s["measures"], blur_of(i)) * s.get("model_quality", 1.0) ** a.weight
             for i, s in enumerate(scores)]
        m = metrics(q, rows, 0.6)
        kinds = " ".join(f"{k} {v:.2f}" for k, v in m["pairwise_by_kind"].items())
        print(f"{name:34s} SROCC {m['srocc']:.3f} pairwise {m['pairwise']:.3f} AUC {m['auc']:.3f} "
              f"clean pass {m['clean_pass']:.3f} bad pass {m['bad_pass']:.3f} | {kinds}")

    def severity(i):
        r = rows[i]
        return float(r["severity"]) if r["kind"] in ("defocus", "motion") else 0.0

    print(f"{a.split}: {len(rows)} frames, model_weight {a.weight}")
    run("agent (recomputed)", lambda i: None)
    run("ceiling: true blur severity", lambda i: (lambda d, m: (severity(i), 0.0)))
    for t, z, h in ((1.2, 0.2, 1.0), (1.4, 0.2, 1.0), (1.4, 0.3, 0.8)):
        sc = [blur_scale(x, t) for x in g]
        run(f"blur scale <{t}, soft({z}, {h})", lambda i, sc=sc, z=z, h=h: (lambda d, m: (max(d, soft(sc[i], z, h)), m)))


if __name__ == "__main__":
    main()
