#!/usr/bin/env python3
"""Evaluate on the held-out phantom test stills:
evaluate.py WORK_DIR MODELS_DIR OUT_JSON [SPLIT]      (SPLIT: test (1080p, default) | test720)

For each scorer — the model alone (onnxruntime, on the inputs the agent builds from the
stills: float32 parent, shipped int8, static-QDQ candidate), the classical measures alone
(`endo-agent score --no-model --json`) and the agent as shipped (classical + int8 model,
`endo-agent score --json`, quality = min of the two) — it reports:

  srocc        Spearman rank correlation of predicted quality with ground-truth quality
               (1 − severity); ties (all good frames) get average ranks
  acc@t        good/bad accuracy with "good" = quality ≥ t, for t = 0.6 (scoring
               threshold_high: what a frame needs to be forwarded) and 0.5 (threshold_low)
  mild_recall  share of σ = 1.5 px defocus frames called bad (quality < 0.6)
  confusion    true class (good or the degradation's artifact) × predicted class (good if
               quality ≥ 0.6, else the largest artifact)
"""
import glob
import json
import os
import subprocess
import sys

import numpy as np
from scipy.stats import spearmanr

import data

SHAPE = [1, 4, 224, 224]
CLASSES = ["good"] + data.LABELS
T_HIGH, T_LOW = 0.6, 0.5


def ort_predict(path, x):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    q, a = [], []
    for i in range(len(x)):
        qq, aa = s.run(["quality", "artifacts"], {"image": np.ascontiguousarray(x[i:i + 1])})
        q.append(qq[0, 0])
        a.append(aa[0])
    return np.array(q), np.array(a)


def agent_predict(images, model=None):
    cmd = [data.agent_bin(), "score", "--json"] + (["--model", model] if model else ["--no-model"])
    q, a = [], []
    for i in range(0, len(images), 200):
        out = subprocess.run(cmd + images[i:i + 200], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            s = json.loads(line)["score"]
            q.append(s["quality"])
            a.append([s["artifacts"][k] for k in data.LABELS])
    return np.array(q), np.array(a)


def metrics(q, a, rows):
    sev = np.array([float(r["severity"]) for r in rows])
    true = np.array([CLASSES.index(r["expected"]) for r in rows])
    mild = np.array([r.get("degradation", "").startswith("defocus") and abs(float(r["degradation"].split("sigma=")[1]) - 1.5) < 1e-6 for r in rows])
    pred = np.where(q >= T_HIGH, 0, 1 + a.argmax(1))
    conf = np.zeros((len(CLASSES), len(CLASSES)), int)
    for t, p in zip(true, pred):
        conf[t, p] += 1
    good = sev == 0
    return dict(
        n=len(rows),
        srocc=float(spearmanr(q, 1 - sev).statistic),
        acc_at_0_6=float(((q >= T_HIGH) == good).mean()),
        acc_at_0_5=float(((q >= T_LOW) == good).mean()),
        mild_blur_n=int(mild.sum()),
        mild_blur_recall=float((q[mild] < T_HIGH).mean()) if mild.any() else None,
        good_kept=float((q[good] >= T_HIGH).mean()),
        bad_rejected=float((q[~good] < T_HIGH).mean()),
        confusion=conf.tolist(),
    )


def main():
    work, models, out = sys.argv[1], sys.argv[2], sys.argv[3]
    split = sys.argv[4] if len(sys.argv) > 4 else "test"
    runs = sorted(glob.glob(os.path.join(work, split, "run_*")))
    x, rows = data.load_dirs([os.path.join(r, "inputs") for r in runs], SHAPE)
    rows = []
    images = []
    for r in runs:
        for row in data.read_labels(os.path.join(r, "labels.csv")):
            rows.append(row)
            images.append(os.path.join(r, row["file"]))
    res = {}
    for name, path in [("model f32 (onnxruntime)", os.path.join(models, "quality.onnx")),
                       ("model int8 weight-only (onnxruntime)", os.path.join(models, "quality-int8.onnx")),
                       ("model int8 static QDQ (onnxruntime)", os.path.join(work, "out", "quality-qdq.onnx"))]:
        if os.path.exists(path):
            res[name] = metrics(*ort_predict(path, x), rows)
            print(name, {k: v for k, v in res[name].items() if k != "confusion"}, flush=True)
    res["classical only (agent, --no-model)"] = metrics(*agent_predict(images), rows)
    res["agent as shipped (classical + int8 model)"] = metrics(*agent_predict(images, os.path.join(models, "quality-int8.onnx")), rows)
    for k in list(res)[-2:]:
        print(k, {kk: v for kk, v in res[k].items() if kk != "confusion"}, flush=True)
    with open(out, "w") as f:
        json.dump(dict(split=split, classes=CLASSES, thresholds=[T_HIGH, T_LOW], results=res), f, indent=1)


if __name__ == "__main__":
    main()
