#!/usr/bin/env python3
"""The FOV locator on live streams of real content: does any written JPEG show text?

  ENDO_AGENT=target/release/endo-agent stream.py [--splits val,train] [--per-photo 1]
                                                 [--photos N] [--starts lit,dark,partial]

For each real photograph of the chosen splits (models/realset/photos.tsv; never test), one
composition (compose.py: a processor layout with burned-in text in the corners and, on
some layouts, a status bar) becomes a short live stream at 30 fps: a *start* of 12 frames
(`lit`: the normal view; `dark`: the whole view at gain 0.08, as in a dark lumen;
`partial`: only the left 35 % of the field of view lit, the rest at gain 0.03), then 36
lit frames whose content pans 3 px a frame. The stream is played through the agent's own
capture pipeline (raw I420, BT.601 limited, `filesrc ! rawvideoparse`) with `fov.mode =
"auto"` and the thresholds at 0, so that every selected frame is written to the local
datalake. Then, from every written record's FOV rectangle and shape:

  * privacy: the frame pixels the JPEG shows (inside the rectangle, inside its inscribed
    ellipse for shape `circle`) must include no pixel of the burned-in text or status bar
    (known exactly from the composition); any hit fails the run;
  * accuracy: the largest edge distance between the locked rectangle and the true FOV's
    bounding rectangle (goal: within 8 px).

Prints one line per stream and a summary per start and layout. Exit 1 on a privacy hit.
Needs the real-image set's packages (make.py fetches them); writes into a temporary dir.
"""
import argparse
import contextlib
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import defaultdict

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose  # noqa: E402
import make  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
START, LIT, PAN = 12, 36, 3


def to_i420(rgb):
    """BT.601 limited-range I420 bytes of an RGB uint8 frame (even width and height)."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    cb = 128 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255
    cr = 128 + (112.0 * r - 93.786 * g - 18.214 * b) / 255
    sub = lambda c: c.reshape(c.shape[0] // 2, 2, c.shape[1] // 2, 2).mean(axis=(1, 3))  # noqa: E731
    planes = [y, sub(cb), sub(cr)]
    return b"".join(np.clip(p + 0.5, 0, 255).astype(np.uint8).tobytes() for p in planes)


def frames(comp, start):
    """The stream's RGB frames: `start` for START frames, then LIT panning lit frames."""
    h, w = comp.size[1], comp.size[0]
    x, _, fw, _ = comp.rect
    rng = np.random.default_rng(comp.seed)
    gain = np.ones((h, w, 1), np.float32)
    if start == "dark":
        gain[:] = 0.08
    elif start == "partial":
        gain[:] = 0.03
        gain[:, : x + int(0.35 * fw)] = 1.0
    for i in range(START + LIT):
        lit = i >= START or start == "lit"
        shift = PAN * max(0, i - START)
        img = np.roll(comp.base, (shift // 2, shift), axis=(0, 1))
        if not lit:
            img = img * gain
        img = img + 1.5 * rng.standard_normal((h, w, 1), dtype=np.float32)
        frame = np.where(comp.mask[..., None], img, comp.border) * comp.keep + comp.text
        yield np.clip(frame + 0.5, 0, 255).astype(np.uint8)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run_agent(agent, d, size, port):
    """Play d/stream.i420 through the agent; return the written records (JSON)."""
    w, h = size
    template = os.path.join(d, "raw.pipeline")
    with open(template, "w") as f:
        f.write(f'filesrc location="{{path}}" ! rawvideoparse format=i420 width={w} height={h} framerate=30/1')
    cfg = os.path.join(d, "agent.toml")
    with open(cfg, "w") as f:
        f.write(f"""[agent]
site = "stream"
device = "fov"
[source]
kind = "file"
path = "{d}/stream.i420"
[capture]
template = "{template}"
on_eos = "idle"
[fov]
mode = "auto"
[model]
path = "{ROOT}/models/quality-int8.onnx"
[select]
threshold_high = 0.0
threshold_low = 0.0
window_ms = 50
max_per_second = 100.0
duplicate_bits = 0
[datalake]
dir = "{d}/lake"
[spool]
dir = "{d}/spool"
[http]
listen = "127.0.0.1:{port}"
""")
    log = open(os.path.join(d, "agent.log"), "w")
    p = subprocess.Popen([agent, "run", "--config", cfg], stdout=log, stderr=log)
    try:
        end = time.time() + 120
        while time.time() < end:
            time.sleep(0.5)
            try:
                st = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5))
            except OSError:
                continue
            if st.get("drained"):
                break
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        p.terminate()
        p.wait(timeout=60)
    recs = [json.load(open(f)) for f in sorted(glob.glob(f"{d}/lake/**/*.json", recursive=True))
            if not f.endswith(".annotation.json")]
    captured = next((float(l.split()[-1]) for l in metrics.splitlines()
                     if l.startswith("endo_agent_frames_captured_total")), 0.0)
    return recs, captured


def visible_mask(size, rect, shape):
    w, h = size
    m = np.zeros((h, w), bool)
    x, y, rw, rh = rect
    if shape == "circle":
        yy, xx = np.mgrid[0:rh, 0:rw].astype(np.float32)
        inside = ((xx + 0.5 - rw / 2) / (rw / 2)) ** 2 + ((yy + 0.5 - rh / 2) / (rh / 2)) ** 2 < 1
        m[y:y + rh, x:x + rw] = inside
    else:
        m[y:y + rh, x:x + rw] = True
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/endo-agent/realset"))
    ap.add_argument("--splits", default="val,train")
    ap.add_argument("--photos", type=int, default=8, help="at most this many photographs")
    ap.add_argument("--per-photo", type=int, default=1)
    ap.add_argument("--starts", default="lit,dark,partial")
    ap.add_argument("--only", help="only the photograph with this name (its stem, e.g. Dragonfly)")
    ap.add_argument("--keep", help="keep each run's stream, config, log and datalake under this dir")
    a = ap.parse_args()
    agent = os.environ.get("ENDO_AGENT") or sys.exit("stream.py: set ENDO_AGENT to the endo-agent binary")
    splits = a.splits.split(",")
    if "test" in splits:
        sys.exit("stream.py: the test split is for scoring once; use val and train")
    photos = [p for p in make.read_photos() if p["split"] in splits and p["tile"] == 1
              and (a.only is None or make.stem(p) == a.only)][: a.photos]
    make.fetch(a.work, photos)
    hits, summary, lines = 0, defaultdict(list), []
    for photo in photos:
        img = Image.open(photo["file"]).convert("RGB")
        for i in range(a.per_photo):
            comp = compose.Composition(img, make.seed_of("stream", photo["path"], i))
            text = comp.text[..., 0] > 0
            tx, ty, tw, th = comp.rect
            for start in a.starts.split(","):
                keep = contextlib.nullcontext(tempfile.mkdtemp(dir=a.keep)) if a.keep else None
                with keep or tempfile.TemporaryDirectory() as d:
                    with open(os.path.join(d, "stream.i420"), "wb") as f:
                        for fr in frames(comp, start):
                            f.write(to_i420(fr))
                    recs, captured = run_agent(agent, d, comp.size, free_port())
                    errs, shown = [], 0
                    for r in recs:
                        fov = r["frame"]["fov"]
                        rect = (fov["x"], fov["y"], fov["width"], fov["height"])
                        shown += int((visible_mask(comp.size, rect, r["frame"]["fov_shape"]) & text).sum())
                        errs.append(max(abs(rect[0] - tx), abs(rect[1] - ty),
                                        abs(rect[0] + rect[2] - tx - tw), abs(rect[1] + rect[3] - ty - th)))
                    hits += shown
                    err = max(errs) if errs else None
                    summary[(start, comp.layout)].append((len(recs), err, shown))
                    line = (f"{make.stem(photo)}-{i} {comp.layout:12} {comp.size[0]}x{comp.size[1]} start {start:7}: "
                            f"{int(captured)} captured, {len(recs)} written, FOV error {err if err is not None else '-'} px, "
                            f"text pixels shown {shown}")
                    print(line, flush=True)
                    lines.append(line)
    print("\nstart    layout        streams  locked  within 8 px  frames written  text pixels shown")
    for (start, layout), v in sorted(summary.items()):
        locked = [e for n, e, _ in v if n > 0]
        print(f"{start:8} {layout:12} {len(v):8} {len(locked):7} {sum(e <= 8 for e in locked):12} "
              f"{sum(n for n, _, _ in v):15} {sum(s for _, _, s in v):18}")
    if hits:
        print(f"PRIVACY: {hits} text pixels were shown in written JPEGs")
        sys.exit(1)


if __name__ == "__main__":
    main()
