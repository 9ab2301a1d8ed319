#!/usr/bin/env python3
"""int8 forms of the float32 model: quantize.py F32_ONNX OUT_DIR CALIB_DIR...

  quality-int8.onnx  weight-only int8: every Conv/Gemm weight stored as int8 with one
                     float scale per output channel (symmetric, zero point 0), restored by a
                     DequantizeLinear on the initializer; activations stay float32. tract
                     folds the DequantizeLinear into a constant at load time, so it runs the
                     float32 graph at float32 speed from a 4x smaller file.
  quality-qdq.onnx   static QDQ (onnxruntime.quantization, per-channel int8 weights, uint8
                     activations calibrated on held-out phantom frames from CALIB_DIR):
                     QuantizeLinear/DequantizeLinear pairs around every op. Measured against
                     the weight-only form; not shipped unless faster in tract.
Both contain only standard ONNX ops (checked: every node in the default domain).
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

import data

SHAPE = [1, 4, 224, 224]


def weight_only(model):
    g = model.graph
    weights = {n.input[1] for n in g.node if n.op_type in ("Conv", "Gemm")}
    new_init, dq = [], []
    for t in g.initializer:
        if t.name not in weights:
            new_init.append(t)
            continue
        w = numpy_helper.to_array(t).astype(np.float32)
        flat = np.abs(w.reshape(w.shape[0], -1)).max(1)
        scale = np.where(flat > 0, flat / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.round(w / scale.reshape(-1, *[1] * (w.ndim - 1))), -127, 127).astype(np.int8)
        new_init += [
            numpy_helper.from_array(q, t.name + "_int8"),
            numpy_helper.from_array(scale, t.name + "_scale"),
            numpy_helper.from_array(np.zeros_like(scale, dtype=np.int8), t.name + "_zero"),
        ]
        dq.append(helper.make_node("DequantizeLinear", [t.name + "_int8", t.name + "_scale", t.name + "_zero"], [t.name], name=t.name + "_dq", axis=0))
    del g.initializer[:]
    g.initializer.extend(new_init)
    nodes = dq + list(g.node)
    del g.node[:]
    g.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def static_qdq(f32_path, out_path, calib_dirs):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    x, _ = data.load_dirs(calib_dirs, SHAPE)
    idx = np.random.default_rng(0).permutation(len(x))[:128]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(idx)

        def get_next(self):
            i = next(self.it, None)
            return None if i is None else {"image": np.ascontiguousarray(x[i:i + 1])}

    quantize_static(f32_path, out_path, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)


def check_standard(path):
    m = onnx.load(path)
    bad = {(n.domain, n.op_type) for n in m.graph.node if n.domain not in ("", "ai.onnx")}
    assert not bad, f"{path}: non-standard ops {bad}"


def main():
    f32, out = sys.argv[1], sys.argv[2]
    calib = sys.argv[3:]
    m = weight_only(onnx.load(f32))
    p = os.path.join(out, "quality-int8.onnx")
    onnx.save(m, p)
    check_standard(p)
    q = os.path.join(out, "quality-qdq.onnx")
    static_qdq(f32, q, calib)
    check_standard(q)
    for n in (f32, p, q):
        print(f"{os.path.basename(n)}: {os.path.getsize(n)} bytes")


if __name__ == "__main__":
    main()
