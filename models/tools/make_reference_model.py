#!/usr/bin/env python3
"""Build the reference quality model: a small ONNX graph with fixed, hand-set weights.

It is a real model run by tract through the agent's runner, not a stub, and its output is
known in closed form, so tests can check tract's numbers against an independent
computation (tests/model_runner.rs does). It is the shipped default until the trained
int8 model replaces it.

Input "image": [1, 3, 224, 224] float32, RGB, value = pixel / 255.
  gray      = 0.299 R + 0.587 G + 0.114 B                      (1x1 Conv)
  L         = mean |Laplacian(gray)|   (3x3 Conv, valid)       (Abs, GlobalAveragePool)
  G         = mean |dx(gray)| + mean |dy(gray)|  (valid 3x3 Convs with one tap pair)
  blur      = sigmoid(BLUR_K * (BLUR_T - L / (G + 1e-6)))
  dark      = sigmoid(DARK_K * (DARK_T - mean(gray)))
  over      = sigmoid(OVER_K * (mean(sigmoid(60 (gray - 0.92))) - OVER_T))
  glare     = sigmoid(GLARE_K * (mean(sigmoid(80 (min(R,G,B) - 0.88))) - GLARE_T)) * (1 - over)
  outside   = sigmoid(OUT_K * (mean(B) - mean(R) - OUT_T))
Outputs: "artifacts" [1, 5] = [blur, dark, over, glare, outside];
         "quality"   [1, 1] = prod(1 - artifacts).

Usage: python3 models/tools/make_reference_model.py [OUT_DIR]   (needs: pip install onnx numpy)
"""
import hashlib
import json
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# Constants; tests/model_runner.rs repeats them to check tract's output.
BLUR_K, BLUR_T = 12.0, 0.35
DARK_K, DARK_T = 40.0, 0.10
OVER_K, OVER_T = 25.0, 0.35
GLARE_K, GLARE_T = 250.0, 0.02
OUT_K, OUT_T = 25.0, 0.05
SIZE = 224
VERSION = "0.1.0"


def const(name, value):
    return numpy_helper.from_array(np.asarray(value, dtype=np.float32), name)


def build():
    init = [
        const("w_gray", np.array([0.299, 0.587, 0.114]).reshape(1, 3, 1, 1)),
        const("w_lap", np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]]).reshape(1, 1, 3, 3)),
        const("w_dx", np.array([[0, 0, 0], [0, -1, 1], [0, 0, 0]]).reshape(1, 1, 3, 3)),
        const("w_dy", np.array([[0, 0, 0], [0, -1, 0], [0, 1, 0]]).reshape(1, 1, 3, 3)),
        const("w_bmr", np.array([-1.0, 0.0, 1.0]).reshape(1, 3, 1, 1)),
        const("eps", 1e-6),
        const("one", 1.0),
        const("k60", 60.0), const("t092", 0.92),
        const("k80", 80.0), const("t088", 0.88),
        const("blur_k", BLUR_K), const("blur_t", BLUR_T),
        const("dark_k", DARK_K), const("dark_t", DARK_T),
        const("over_k", OVER_K), const("over_t", OVER_T),
        const("glare_k", GLARE_K), const("glare_t", GLARE_T),
        const("out_k", OUT_K), const("out_t", OUT_T),
        numpy_helper.from_array(np.array([1, 1], dtype=np.int64), "shape11"),
    ]
    n = []

    def node(op, inputs, output, **attrs):
        n.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    gray = node("Conv", ["image", "w_gray"], "gray")
    lap = node("Abs", [node("Conv", [gray, "w_lap"], "lap_raw")], "lap")
    dx = node("Abs", [node("Conv", [gray, "w_dx"], "dx_raw")], "dx")
    dy = node("Abs", [node("Conv", [gray, "w_dy"], "dy_raw")], "dy")
    L = node("GlobalAveragePool", [lap], "L")
    G = node("Add", [node("GlobalAveragePool", [dx], "Gx"), node("GlobalAveragePool", [dy], "Gy")], "G")
    ratio = node("Div", [L, node("Add", [G, "eps"], "G_eps")], "ratio")
    blur = node("Sigmoid", [node("Mul", [node("Sub", ["blur_t", ratio], "blur_d"), "blur_k"], "blur_z")], "blur")

    m = node("GlobalAveragePool", [gray], "mean_gray")
    dark = node("Sigmoid", [node("Mul", [node("Sub", ["dark_t", m], "dark_d"), "dark_k"], "dark_z")], "dark")

    bright = node("Sigmoid", [node("Mul", [node("Sub", [gray, "t092"], "br_d"), "k60"], "br_z")], "bright_px")
    fb = node("GlobalAveragePool", [bright], "bright_frac")
    over = node("Sigmoid", [node("Mul", [node("Sub", [fb, "over_t"], "over_d"), "over_k"], "over_z")], "over")

    # min over channels as two element-wise Mins: tract's ReduceMin over the channel
    # axis of NCHW is ~100x slower (measured 9.7 ms vs ~0.1 ms at 224x224).
    n.append(helper.make_node("Split", ["image"], ["ch_r", "ch_g", "ch_b"], axis=1))
    mn = node("Min", [node("Min", ["ch_r", "ch_g"], "min_rg"), "ch_b"], "min_rgb")
    sp = node("Sigmoid", [node("Mul", [node("Sub", [mn, "t088"], "sp_d"), "k80"], "sp_z")], "spec_px")
    fs = node("GlobalAveragePool", [sp], "spec_frac")
    glare_raw = node("Sigmoid", [node("Mul", [node("Sub", [fs, "glare_t"], "gl_d"), "glare_k"], "gl_z")], "glare_raw")
    # Large clipped areas are over-exposure, not glare.
    glare = node("Mul", [glare_raw, node("Sub", ["one", over], "not_over")], "glare")

    mrgb = node("GlobalAveragePool", ["image"], "mean_rgb")
    bmr = node("Conv", [mrgb, "w_bmr"], "b_minus_r")
    outside = node("Sigmoid", [node("Mul", [node("Sub", [bmr, "out_t"], "out_d"), "out_k"], "out_z")], "outside")

    parts = [node("Reshape", [x, "shape11"], f"{x}_11") for x in (blur, dark, over, glare, outside)]
    arts = node("Concat", parts, "artifacts", axis=1)
    node("ReduceProd", [node("Sub", ["one", arts], "one_minus")], "quality", axes=[1], keepdims=1)

    graph = helper.make_graph(
        n,
        "endo-quality-reference",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info("quality", TensorProto.FLOAT, [1, 1]),
            helper.make_tensor_value_info("artifacts", TensorProto.FLOAT, [1, 5]),
        ],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="endo-agent")
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")
    model = build()
    data = model.SerializeToString()
    path = os.path.join(out_dir, "quality-ref.onnx")
    with open(path, "wb") as f:
        f.write(data)
    manifest = {
        "name": "endo-quality-reference",
        "version": VERSION,
        "file": "quality-ref.onnx",
        "sha256": hashlib.sha256(data).hexdigest(),
        "quantization": "f32",
        "input": {
            "name": "image",
            "shape": [1, 3, SIZE, SIZE],
            "layout": "NCHW",
            "color": "RGB",
            "scale": 1.0 / 255.0,
            "mean": [0.0, 0.0, 0.0],
            "std": [1.0, 1.0, 1.0],
        },
        "outputs": {
            "quality": "quality",
            "artifacts": "artifacts",
            "labels": ["blur", "dark", "overexposed", "glare", "outside"],
        },
        "description": "Hand-weighted reference model (models/tools/make_reference_model.py): "
        "closed-form blur/exposure/glare/colour-cast measures at 224x224. "
        "Stands in until the trained int8 model ships.",
    }
    with open(os.path.join(out_dir, "quality-ref.manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"wrote {path} ({len(data)} bytes, sha256 {manifest['sha256']})")


if __name__ == "__main__":
    main()
