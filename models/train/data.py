#!/usr/bin/env python3
"""Training data: phantom frames rendered by the agent itself, as the model inputs the agent
builds (so training and the agent preprocess identically), or a folder of real images plus
a CSV of labels (the real-data path, through `endo-agent model-input`).

A dataset directory holds `inputs.f32` (N raw little-endian float32 tensors of the model's
input shape) and `labels.csv` (the phantom's columns; at least `file,expected,severity`).

Targets (the rule documented in models/README.md):
  quality   = 1 - severity            (severity: 0 good .. 1 unusable)
  artifacts = one-hot of `expected` scaled by severity (blur, dark, overexposed, glare,
              outside, noise); a good frame has all zeros.
"""
import csv
import os
import random
import subprocess

import numpy as np

LABELS = ["blur", "dark", "overexposed", "glare", "outside", "noise"]


def agent_bin():
    return os.environ.get("ENDO_AGENT", "endo-agent")


def random_schedule(rng, n, mild_blur_share=0.0):
    """`n` one-frame segments (0.5 s at 2 fps: the camera pans between them) with graded
    degradations. Parameter ranges start where the phantom's severity rule reaches 0.5 (the
    clamp floor of a degraded frame), so that every degraded frame is visibly degraded."""
    segs = []
    for _ in range(n):
        r = rng.random()
        if r < mild_blur_share:
            segs.append("defocus 0.5s sigma=1.5")
        elif r < 0.36:
            segs.append("good 0.5s")
        elif r < 0.56:
            # Defocus, weighted toward the mild end that is hard to see.
            s = 1.0 + 4.0 * rng.random() ** 2
            segs.append(f"defocus 0.5s sigma={s:.2f}")
        elif r < 0.66:
            segs.append(f"motion 0.5s len={rng.uniform(6, 40):.1f} angle={rng.choice([0, 30, 45, 60, 90, 120, 135, 170])}")
        elif r < 0.74:
            segs.append(f"dark 0.5s gain={rng.uniform(0.03, 0.5):.3f}")
        elif r < 0.82:
            segs.append(f"overexposed 0.5s gain={rng.uniform(2.0, 4.5):.2f}")
        elif r < 0.93:
            segs.append(f"glare 0.5s area={rng.uniform(0.03, 0.16):.3f}")
        else:
            segs.append("outside 0.5s")
    return "; ".join(segs)


def render(out_dir, manifest, seed, height, palette, fov, osd, schedule, frames, stills=False):
    """Render one phantom run into `out_dir` (model inputs, or PNG stills with `stills`)."""
    width = height * 16 // 9
    cmd = [
        agent_bin(), "phantom", "--width", str(width), "--height", str(height), "--fps", "2",
        "--seed", str(seed), "--palette", palette, "--fov", fov, "--schedule", schedule,
        "--frames", str(frames), "--stills", out_dir,
    ]
    if not osd:
        cmd.append("--no-osd")
    if not stills:
        cmd += ["--model-input", manifest]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def variants(rng, seeds, heights):
    for seed in seeds:
        yield dict(
            seed=seed,
            height=rng.choice(heights),
            palette="nbi" if rng.random() < 0.7 else "white-light",
            fov=rng.choice(["circle", "octagon"]),
            osd=rng.random() < 0.8,
        )


def plan_split(rng, seeds, heights, frames, mild_blur_share=0.0):
    """The seeded draws of one split, without rendering: (variant, schedule) per run, in
    the order `rng` is consumed (each run's variant, then its schedule)."""
    return [(v, random_schedule(rng, frames, mild_blur_share)) for v in variants(rng, seeds, heights)]


def make_split(root, name, manifest, seeds, heights, frames, rng, stills=False, mild_blur_share=0.0):
    """Render one run per seed into root/name/run_<seed>/ and return the run dirs."""
    dirs = []
    for v, sched in plan_split(rng, seeds, heights, frames, mild_blur_share):
        d = os.path.join(root, name, f"run_{v['seed']:05d}")
        render(d, manifest, schedule=sched, frames=frames, stills=stills, **v)
        with open(os.path.join(d, "variant.txt"), "w") as f:
            f.write(f"{v}\n{sched}\n")
        dirs.append(d)
    return dirs


def read_labels(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def targets(rows):
    """(quality [N], artifacts [N, 5]) from label rows (see the module docstring)."""
    q = np.zeros(len(rows), np.float32)
    a = np.zeros((len(rows), len(LABELS)), np.float32)
    for i, r in enumerate(rows):
        sev = float(r["severity"])
        q[i] = 1.0 - sev
        if r["expected"] != "good":
            a[i, LABELS.index(r["expected"])] = sev
    return q, a


def load_dir(d, shape):
    """Inputs [N, C, H, W] float32 (memory-mapped) and label rows of one dataset dir."""
    rows = read_labels(os.path.join(d, "labels.csv"))
    x = np.memmap(os.path.join(d, "inputs.f32"), dtype="<f4", mode="r")
    per = int(np.prod(shape[1:]))
    assert x.size == per * len(rows), f"{d}: {x.size} values for {len(rows)} rows"
    return x.reshape(len(rows), *shape[1:]), rows


def load_dirs(dirs, shape):
    xs, rows = [], []
    for d in dirs:
        x, r = load_dir(d, shape)
        xs.append(np.asarray(x))
        rows += r
    return np.concatenate(xs), rows


def real_dataset(images_dir, labels_csv, manifest, out_dir, config=None):
    """The real-data path: images listed in `labels_csv` (columns file, expected, severity;
    `expected` one of good/blur/dark/overexposed/glare/outside, severity 0..1) under
    `images_dir` become a dataset dir the trainer reads like phantom data."""
    os.makedirs(out_dir, exist_ok=True)
    rows = read_labels(labels_csv)
    out = os.path.join(out_dir, "inputs.f32")
    if os.path.exists(out):
        os.remove(out)
    for i in range(0, len(rows), 200):
        chunk = [os.path.join(images_dir, r["file"]) for r in rows[i:i + 200]]
        cmd = [agent_bin(), "model-input", "--manifest", manifest, "--out", out] + chunk
        if config:
            cmd[2:2] = ["--config", config]
        subprocess.run(cmd, check=True)
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file", "expected", "severity"])
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in ["file", "expected", "severity"]})
    return out_dir


def realset_dataset(split_dir, manifest, out_dir, first=0, last=None):
    """A split of the real-image set (models/realset/make.py) as a dataset dir: each
    composition's frames go through `endo-agent model-input` with its true field of view
    fixed in [fov], as a live stream locks it. `first`/`last`: a slice of its rows (whole
    compositions), to convert a split that is still being written in parts."""
    import tempfile
    os.makedirs(out_dir, exist_ok=True)
    rows = read_labels(os.path.join(split_dir, "labels.csv"))[first:last]
    out = os.path.join(out_dir, "inputs.f32")
    if os.path.exists(out):
        os.remove(out)
    groups = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    ordered = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "fov.toml")
        for g, rs in groups.items():
            r0 = rs[0]
            with open(cfg, "w") as f:
                f.write(f'[fov]\nmode = "fixed"\nshape = "circle"\nrect = [{r0["fov_x"]}, {r0["fov_y"]}, {r0["fov_w"]}, {r0["fov_h"]}]\n')
            cmd = [agent_bin(), "model-input", "--config", cfg, "--manifest", manifest, "--out", out]
            subprocess.run(cmd + [os.path.join(split_dir, r["file"]) for r in rs], check=True)
            ordered += rs
    with open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(ordered[0].keys()))
        w.writeheader()
        w.writerows(ordered)
    return out_dir
