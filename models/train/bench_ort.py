#!/usr/bin/env python3
"""onnxruntime inference time, one thread (intra- and inter-op), median of many runs:
bench_ort.py MODEL.onnx... [--runs N]

Same input as benches/model.rs would see in spirit (a real model input: the first held-out
reference, models/reference/good.png); onnxruntime's default graph optimisations.
Prints one line per file: name, median and 10th/90th percentile in ms, file size.
"""
import argparse
import os
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=3000)
    args = ap.parse_args()
    ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference", "good.png")
    x = (np.asarray(Image.open(ref)).transpose(2, 0, 1)[None].astype(np.float32) * np.float32(1 / 255)).copy()
    print(f"onnxruntime {ort.__version__}, 1 thread, {args.runs} runs after 200 warm-up")
    for path in args.models:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {"image": x}
        for _ in range(200):
            s.run(None, feed)
        t = np.empty(args.runs)
        for i in range(args.runs):
            t0 = time.perf_counter()
            s.run(None, feed)
            t[i] = time.perf_counter() - t0
        p10, p50, p90 = np.percentile(t * 1000, [10, 50, 90])
        print(f"{os.path.basename(path)}: median {p50:.3f} ms (p10 {p10:.3f}, p90 {p90:.3f}), {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
