#!/usr/bin/env python3
"""Ship the trained model: package.py WORK_DIR MODELS_DIR VERSION

Copies the float32 parent and the weight-only int8 model into MODELS_DIR with their
manifests (sha256, input contract, output labels, version, quantization), and writes
MODELS_DIR/reference/: a few held-out test inputs as RGBA PNGs (RGB = channels 0-2, alpha =
the detail channel; every input value is a byte / 255, so a PNG holds it exactly) and
onnxruntime's outputs for both files in outputs.json, which tests/model_shipped.rs compares
with tract's.
"""
import glob
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from PIL import Image

import data
import evaluate

SCALE = 1.0 / 255.0
INPUT = {
    "name": "image", "shape": [1, 4, 224, 224], "layout": "NCHW", "color": "RGB",
    "scale": SCALE, "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
    "detail": {"tiles": 2, "spread": 0.4, "scale": SCALE, "mean": 0.0, "std": 1.0},
}
OUTPUTS = {"quality": "quality", "artifacts": "artifacts", "labels": data.LABELS}
REFERENCES = [("good", "good"), ("defocus_1_5", "defocus sigma=1.5"), ("motion", "motion"),
              ("dark", "dark"), ("overexposed", "overexposed"), ("glare", "glare"), ("outside", "outside")]


def manifest(path, version, quantization, description):
    data_ = open(path, "rb").read()
    m = {
        "name": "endo-quality", "version": version, "file": os.path.basename(path),
        "sha256": hashlib.sha256(data_).hexdigest(), "quantization": quantization,
        "input": INPUT, "outputs": OUTPUTS, "description": description,
    }
    stem = os.path.splitext(path)[0]
    with open(stem + ".manifest.json", "w") as f:
        json.dump(m, f, indent=2)
        f.write("\n")


def main():
    work, models, version = sys.argv[1], sys.argv[2], sys.argv[3]
    out = os.path.join(work, "out")
    f32 = os.path.join(models, "quality.onnx")
    i8 = os.path.join(models, "quality-int8.onnx")
    shutil.copy(os.path.join(out, "quality.onnx"), f32)
    shutil.copy(os.path.join(out, "quality-int8.onnx"), i8)
    card = ("Trained on procedural phantom frames and real photographs composed into endoscope frames "
            "(models/realset train split; models/train, model card models/README.md)")
    manifest(f32, version, "f32", card + "; float32 parent of quality-int8.onnx.")
    manifest(i8, version, "int8-weight-only",
             card + "; int8 weights (per-channel symmetric, DequantizeLinear on the initializers), float32 activations.")
    # The static-QDQ candidate is timed (benches/model.rs) but not shipped; it needs a manifest too.
    manifest(os.path.join(out, "quality-qdq.onnx"), version, "int8-qdq",
             card + "; static QDQ candidate (not shipped).")
    # Reference inputs: the first held-out test frame of each kind.
    ref = os.path.join(models, "reference")
    shutil.rmtree(ref, ignore_errors=True)
    os.makedirs(ref)
    runs = sorted(glob.glob(os.path.join(work, "test", "run_*")))
    x, _ = data.load_dirs([os.path.join(r, "inputs") for r in runs], evaluate.SHAPE)
    rows = [row for r in runs for row in data.read_labels(os.path.join(r, "labels.csv"))]
    entries = []
    for name, prefix in REFERENCES:
        i = next(k for k, r in enumerate(rows) if r["degradation"].startswith(prefix))
        b = np.round(x[i] * 255.0)
        assert np.array_equal(b.astype(np.float32) * np.float32(SCALE), x[i]), f"{name}: not byte / 255"
        Image.fromarray(b.transpose(1, 2, 0).astype(np.uint8), "RGBA").save(os.path.join(ref, name + ".png"), optimize=True)
        entries.append(dict(file=name + ".png", label=rows[i]["degradation"], severity=float(rows[i]["severity"])))
    xs = np.stack([(np.asarray(Image.open(os.path.join(ref, e["file"]))).transpose(2, 0, 1).astype(np.float32) * np.float32(SCALE)) for e in entries])
    for model_file in ("quality.onnx", "quality-int8.onnx"):
        q, a = evaluate.ort_predict(os.path.join(models, model_file), xs)
        for e, qq, aa in zip(entries, q, a):
            e.setdefault("onnxruntime", {})[model_file] = dict(quality=float(qq), artifacts=[float(v) for v in aa])
    with open(os.path.join(ref, "outputs.json"), "w") as f:
        json.dump(dict(labels=data.LABELS, note="onnxruntime 1.31.1 CPU outputs on these inputs; input = byte / 255 per channel (RGBA = channels 0..3)", references=entries), f, indent=1)
        f.write("\n")
    print("shipped", f32, i8, "and", len(entries), "references")


if __name__ == "__main__":
    main()
