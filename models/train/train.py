#!/usr/bin/env python3
"""Train the quality network (net.py) on dataset dirs (data.py) and export float32 ONNX.

  train.py --train DIR... --val DIR... --out OUT_DIR [--epochs N] [--seed S]

Writes OUT_DIR/quality.onnx (float32, batch norm folded) and OUT_DIR/train_log.json.
Single-threaded on purpose (the build machine is shared); fixed seed.
"""
import argparse
import json
import os
import random
import time

import numpy as np
import torch
import torch.nn.functional as F

import data
import net

SHAPE = [1, 4, net.SIZE, net.SIZE]


def augment(x, q, a, rng, contrast=1.0):
    """Nuisance variation: a little sensor noise (at most 2 code values, under the real-image
    set's mildest labelled noise of 6; on the native-resolution detail channel, averaged
    down on the overview) on frames not labelled noisy, mild gain on frames whose label
    does not depend on exposure, flips. With `contrast` < 1, half the good and blurred
    frames also get their contrast scaled by a factor drawn from [contrast, 1] about their
    own mean (black, outside the FOV's circle, stays black): smooth, low-contrast mucosa is
    not defocus, and a blurred frame of low contrast is still blurred."""
    x = x.clone()
    n = x.shape[0]
    exposure_free = (a[:, 1:].sum(1) == 0).numpy()  # good or blur
    if contrast < 1.0:
        k = np.where(exposure_free & (rng.random(n) < 0.5), rng.uniform(contrast, 1.0, n), 1.0).astype(np.float32)
        k = torch.from_numpy(k)[:, None, None, None]
        lit = x > 0.04
        mean = (x * lit).sum((2, 3), keepdim=True) / lit.sum((2, 3), keepdim=True).clamp(min=1)
        x = torch.where(lit, mean + k * (x - mean), x)
    noisy = a[:, data.LABELS.index("noise")].numpy() > 0
    sigma = torch.from_numpy((rng.uniform(0, 2.0 / 255, n) * ((rng.random(n) < 0.6) & ~noisy)).astype(np.float32))
    x[:, 3:4] += sigma[:, None, None, None] * torch.randn_like(x[:, 3:4])
    x[:, :3] += (sigma / 4)[:, None, None, None] * torch.randn_like(x[:, :3])
    gain = np.where(exposure_free & (rng.random(n) < 0.5), rng.uniform(0.8, 1.2, n), 1.0).astype(np.float32)
    x = x * torch.from_numpy(gain)[:, None, None, None]
    if rng.random() < 0.5:
        x = x.flip(3)
    if rng.random() < 0.5:
        x = x.flip(2)
    return x.clamp_(-0.05, 1.05), q, a


def loss_fn(z, q, a, w=None):
    # Quality weighs double: it is what the selector thresholds. `w`: per-frame weights.
    lq = F.binary_cross_entropy_with_logits(z[:, 0], q, reduction="none")
    la = F.binary_cross_entropy_with_logits(z[:, 1:], a, reduction="none").mean(1)
    per = 2 * lq + la
    if w is None:
        return per.mean()
    return (per * w).sum() / w.sum()


def weights(rows, real_good):
    """Per-frame loss weights: the real set's clean frames weigh `real_good` (they are a
    fifth of its frames and the ones a site sees most; passing them is the first target)."""
    return np.array([real_good if ("group" in r and r["expected"] == "good") else 1.0 for r in rows], np.float32)


def evaluate(model, x, q, a, bs=64):
    model.eval()
    tot, zs = 0.0, []
    with torch.no_grad():
        for i in range(0, len(x), bs):
            xb = torch.from_numpy(np.ascontiguousarray(x[i:i + bs]))
            z = model(xb)
            tot += loss_fn(z, torch.from_numpy(q[i:i + bs]), torch.from_numpy(a[i:i + bs])).item() * len(xb)
            zs.append(torch.sigmoid(z).numpy())
    p = np.concatenate(zs)
    good = q == 1.0
    acc = float(((p[:, 0] >= 0.5) == good).mean())
    return tot / len(x), acc


def load_pool(dirs):
    """(frames of each distinct dir once, their label rows, the index pool listing each
    dir's frames as often as the dir is listed)."""
    distinct = list(dict.fromkeys(dirs))
    xs, rows, span = [], [], {}
    for d in distinct:
        x, r = data.load_dir(d, SHAPE)
        span[d] = (len(rows), len(r))
        xs.append(np.asarray(x))
        rows += r
    pool = np.concatenate([np.arange(s, s + n) for s, n in (span[d] for d in dirs)])
    return np.concatenate(xs), rows, pool


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--val", nargs="+", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=14)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--real-good-weight", type=float, default=3.0)
    ap.add_argument("--contrast", type=float, default=1.0,
                    help="low end of the contrast augmentation of good and blurred frames (1: off, as for 2.0.0)")
    ap.add_argument("--detail-max", action="store_true",
                    help="also max-pool the detail branch (net.py); 2.0.0 average-pools it only")
    ap.add_argument("--init", help="start from this state dict (fine-tuning, e.g. on real frames)")
    args = ap.parse_args()

    torch.set_num_threads(int(os.environ.get("TRAIN_THREADS", "1")))
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    random.seed(args.seed)
    rng = np.random.default_rng(args.seed)

    # A dir listed n times weighs n: its frames are loaded once and `pool` lists their
    # indices n times (a copy per listing would not fit in memory with the real set).
    xt, rt, pool = load_pool(args.train)
    xv, rv = data.load_dirs(args.val, SHAPE)
    qt, at = data.targets(rt)
    qv, av = data.targets(rv)
    wt = weights(rt, args.real_good_weight)
    print(f"train {len(pool)} frames ({len(xt)} distinct), val {len(xv)}", flush=True)

    model = net.Net(detail_max=args.detail_max)
    if args.init:
        model.load_state_dict(torch.load(args.init))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    steps = args.epochs * (len(pool) // args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    log, best = [], (float("inf"), None)
    for ep in range(args.epochs):
        model.train()
        t0 = time.time()
        perm = rng.permutation(len(pool))
        run = 0.0
        for b in range(len(pool) // args.batch):
            idx = np.sort(pool[perm[b * args.batch:(b + 1) * args.batch]])
            xb = torch.from_numpy(xt[idx])
            qb, ab = torch.from_numpy(qt[idx]), torch.from_numpy(at[idx])
            xb, qb, ab = augment(xb, qb, ab, rng, args.contrast)
            loss = loss_fn(model(xb), qb, ab, torch.from_numpy(wt[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            run += loss.item()
        vl, vacc = evaluate(model, xv, qv, av)
        entry = dict(epoch=ep + 1, train_loss=run / (len(pool) // args.batch), val_loss=vl, val_acc=vacc, seconds=time.time() - t0)
        log.append(entry)
        print(json.dumps(entry), flush=True)
        if vl < best[0]:
            best = (vl, {k: v.clone() for k, v in model.state_dict().items()})
    model.load_state_dict(best[1])
    os.makedirs(args.out, exist_ok=True)
    torch.save(best[1], os.path.join(args.out, "quality.pt"))
    onx = net.to_onnx(model)
    with open(os.path.join(args.out, "quality.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump(dict(args=vars(args), epochs=log, best_val_loss=best[0]), f, indent=1)


if __name__ == "__main__":
    main()
