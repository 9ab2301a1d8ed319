#!/usr/bin/env python3
"""Score the real-image set with the agent and print the scorers side by side.

  evaluate.py [--work DIR] [--split test] [--model ONNX] [--config TOML] [--json OUT]
              [--fov]

Every frame is scored by `endo-agent score --json` with the composition's true field of
view fixed in `[fov]` (as a live stream locks it once; `--fov` also reports what the
automatic locator finds on the clean stills alone). Scorers:

  final      the agent's `quality` (what the selector compares with threshold_high)
  classical  the classical measures alone (`classical_quality`)
  model      the model alone (`model_quality`)
  laplacian  baseline: variance of the Laplacian of the luma over the FOV (one line of
             OpenCV in most pipelines); it has no threshold, so no pass rates

Metrics (severity from compose.py; "clearly bad" = severity >= 0.6):

  srocc      Spearman rank correlation of the score with 1 - severity, all frames
  pairwise   share of (clean, degraded variant of the same composition) pairs where the
             clean frame scores higher (ties count half); also per degradation
  auc        clean vs clearly bad, area under the ROC curve
  clean_pass share of clean frames with score >= select.threshold_high
  bad_pass   share of clearly bad frames with score >= select.threshold_high
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from collections import defaultdict

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.stats import spearmanr

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
KINDS = ["defocus", "motion", "dark", "over", "glare", "noise", "jpeg", "outside"]


def agent_bin():
    return os.environ.get("ENDO_AGENT", "endo-agent")


def read_rows(d):
    with open(os.path.join(d, "labels.csv"), newline="") as f:
        return list(csv.DictReader(f))


def fov_config(base, r, path):
    """A config: `base` (if any) with [fov] fixed at the composition's true rect."""
    text = open(base).read() if base else ""
    if "[fov]" in text:
        sys.exit("evaluate.py: --config must not have an [fov] section (the true FOV is set per image)")
    with open(path, "w") as f:
        f.write(text + f'\n[fov]\nmode = "fixed"\nshape = "circle"\nrect = [{r["fov_x"]}, {r["fov_y"]}, {r["fov_w"]}, {r["fov_h"]}]\n')


def score(d, rows, model, base_config, auto=False):
    """`endo-agent score --json` per composition; returns per-row score dicts."""
    groups = defaultdict(list)
    for i, r in enumerate(rows):
        groups[r["group"]].append(i)
    out = [None] * len(rows)
    with tempfile.TemporaryDirectory() as tmp:
        for g, idx in groups.items():
            cmd = [agent_bin(), "score", "--json"]
            if model:
                cmd += ["--model", model]
            if not auto:
                cfg = os.path.join(tmp, "c.toml")
                fov_config(base_config, rows[idx[0]], cfg)
                cmd += ["--config", cfg]
            elif base_config:
                cmd += ["--config", base_config]
            res = subprocess.run(cmd + [os.path.join(d, rows[i]["file"]) for i in idx],
                                 check=True, capture_output=True, text=True)
            for i, line in zip(idx, res.stdout.splitlines()):
                out[i] = json.loads(line)
    return out


def laplacian_variance(path, r):
    y = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
    x, yy, w, h = (int(r[k]) for k in ("fov_x", "fov_y", "fov_w", "fov_h"))
    c = y[yy + h * 15 // 100: yy + h * 85 // 100, x + w * 15 // 100: x + w * 85 // 100]
    return float(ndimage.laplace(c).var())


def auc(pos, neg):
    pos, neg = np.asarray(pos), np.asarray(neg)
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))


def metrics(s, rows, threshold):
    s = np.asarray(s, dtype=np.float64)
    sev = np.array([float(r["severity"]) for r in rows])
    clean = np.array([r["kind"] == "clean" for r in rows])
    bad = np.array([r["clearly_bad"] == "1" for r in rows])
    by_group = defaultdict(list)
    for i, r in enumerate(rows):
        by_group[r["group"]].append(i)
    pairs = defaultdict(list)
    for idx in by_group.values():
        c = [i for i in idx if clean[i]]
        for i in idx:
            if clean[i]:
                continue
            for j in c:
                pairs[rows[i]["kind"]].append(1.0 if s[j] > s[i] else 0.5 if s[j] == s[i] else 0.0)
    allp = [v for k in pairs for v in pairs[k]]
    m = dict(
        frames=len(rows), clean=int(clean.sum()), clearly_bad=int(bad.sum()),
        srocc=float(spearmanr(s, 1 - sev).correlation),
        pairwise=float(np.mean(allp)),
        pairwise_by_kind={k: float(np.mean(v)) for k, v in sorted(pairs.items())},
        auc=auc(s[clean], s[bad]),
    )
    if threshold is not None:
        m["clean_pass"] = float((s[clean] >= threshold).mean())
        m["bad_pass"] = float((s[bad] >= threshold).mean())
    return m


def fov_errors(rows, scores):
    """Locked rect vs the true one on the clean stills: the largest edge error in px."""
    errs, outside = [], 0
    for r, sc in zip(rows, scores):
        if r["kind"] != "clean":
            continue
        t = [int(r[k]) for k in ("fov_x", "fov_y", "fov_w", "fov_h")]
        f = sc["fov"]
        got = [f["x"], f["y"], f["width"], f["height"]]
        edges_t = [t[0], t[1], t[0] + t[2], t[1] + t[3]]
        edges_g = [got[0], got[1], got[0] + got[2], got[1] + got[3]]
        errs.append(max(abs(a - b) for a, b in zip(edges_t, edges_g)))
        # Wider than the true FOV (beyond 2 px): the crop reaches into the text border.
        if got[0] < t[0] - 2 or got[1] < t[1] - 2 or edges_g[2] > edges_t[2] + 2 or edges_g[3] > edges_t[3] + 2:
            outside += 1
    e = np.array(errs)
    return dict(stills=len(e), median_px=float(np.median(e)), p90_px=float(np.percentile(e, 90)),
                max_px=int(e.max()), within_8px=float((e <= 8).mean()), wider_than_true=outside)


def table(results, order):
    keys = ["srocc", "pairwise", "auc", "clean_pass", "bad_pass"]
    lines = ["| scorer | SROCC | pairwise | AUC | clean pass @t | clearly bad pass @t | " + " | ".join(KINDS) + " |",
             "|---|" + "---|" * (len(keys) + len(KINDS))]
    for name in order:
        m = results[name]
        cells = [f"{m[k]:.3f}" if k in m else "–" for k in keys]
        cells += [f"{m['pairwise_by_kind'].get(k, float('nan')):.2f}" for k in KINDS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def light_accuracy(rows, scores):
    """The `light` tag against the composition's palette: clean stills, and every still.

    A still that cannot tell (dark, washed out, glaring, outside) is tagged white, as a
    stream's first frames are; on a live stream it keeps the light of the frames before.
    """
    def acc(pick):
        n = [(r["palette"] == "nbi") == (x["score"]["light"] == "nbi") for r, x in zip(rows, scores) if pick(r)]
        return dict(right=int(sum(n)), frames=len(n), accuracy=float(np.mean(n)) if n else float("nan"))
    return dict(clean=acc(lambda r: r["kind"] == "clean"), all=acc(lambda r: True))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/endo-agent/realset"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--model", help="ONNX model (default: the config's / the shipped one)")
    ap.add_argument("--config", help="agent config without [fov] (default: built-in defaults)")
    ap.add_argument("--threshold", type=float, default=None, help="default: select.threshold_high of the config")
    ap.add_argument("--json", help="write the metrics here")
    ap.add_argument("--fov", action="store_true", help="also report the automatic FOV locator on the clean stills")
    ap.add_argument("--dump", help="write every frame's label row and `score --json` output here (JSON lines)")
    a = ap.parse_args()
    d = os.path.join(a.work, a.split)
    rows = read_rows(d)
    threshold = a.threshold
    if threshold is None:
        threshold = 0.6
        if a.config:
            import tomllib
            threshold = tomllib.load(open(a.config, "rb")).get("select", {}).get("threshold_high", 0.6)
    scores = score(d, rows, a.model, a.config)
    if a.dump:
        with open(a.dump, "w") as f:
            for r, x in zip(rows, scores):
                f.write(json.dumps(dict(label=r, out=x)) + "\n")
    final = [x["score"]["quality"] for x in scores]
    classical = [x["score"]["classical_quality"] for x in scores]
    model = [x["score"]["model_quality"] for x in scores]
    lap = [laplacian_variance(os.path.join(d, r["file"]), r) for r in rows]
    results = {
        "final": metrics(final, rows, threshold),
        "classical": metrics(classical, rows, threshold),
        "laplacian": metrics(lap, rows, None),
    }
    order = ["final", "classical"]
    if model[0] is not None:
        results["model"] = metrics(model, rows, threshold)
        order.append("model")
    order.append("laplacian")
    m = results["final"]
    print(f"real-image set, split {a.split}: {m['frames']} frames ({m['clean']} clean, {m['clearly_bad']} clearly bad), "
          f"threshold_high {threshold}")
    print(table(results, order))
    results["light"] = light_accuracy(rows, scores)
    lt = results["light"]
    print(f"light tag (white / nbi palette): clean {lt['clean']['right']} of {lt['clean']['frames']}, "
          f"all {lt['all']['right']} of {lt['all']['frames']} ({100 * lt['all']['accuracy']:.1f} %)")
    if a.fov:
        auto = score(d, [r for r in rows if r["kind"] == "clean"], a.model, a.config, auto=True)
        results["fov"] = fov_errors([r for r in rows if r["kind"] == "clean"], auto)
        print("FOV locator on the clean stills alone:", json.dumps(results["fov"]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
