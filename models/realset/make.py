#!/usr/bin/env python3
"""Build the real-image evaluation set from real photographs shipped by Debian packages.

  make.py [--work DIR] [--splits test,val,train] [--per-photo N] [--train-per-photo N]

Photographs: models/realset/photos.tsv (package, path, licence, split). Each package is
fetched with `apt-get download` and unpacked with `dpkg-deb -x` (nothing is installed).
The split is by photograph, so no content is shared between train, val and test.

  test/, val/   graded sets: per photograph N (test) or N-1 (val) compositions (compose.py), each rendered
                clean and with every degradation at every level (38 frames), as PNG;
                labels.csv has one row per frame.
  train/        for training the model: per photograph M compositions, each rendered clean
                twice (different noise) and with 8 random degradations at a random level.

labels.csv columns: file, photo, group (composition id), kind, param, severity, expected
(the artifact: good, blur, dark, overexposed, glare, outside, noise), clearly_bad,
width, height, layout, palette, fov_x, fov_y, fov_w, fov_h (the true FOV rect).
Seeded: the same command writes the same pixels.
"""
import argparse
import csv
import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import zipfile

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compose  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIELDS = ["file", "photo", "group", "kind", "param", "severity", "expected", "clearly_bad",
          "width", "height", "layout", "palette", "fov_x", "fov_y", "fov_w", "fov_h"]


def read_photos():
    rows = []
    with open(os.path.join(HERE, "photos.tsv")) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            split, pkg, path, lic, *opt = line.rstrip("\n").split("\t")
            # Optional fifth column: "tile=N", a seamless texture repeated N x N (a game's
            # 1024-px textures; tiled, a composition downscales it >= 1.2x like a photo).
            tile = int(opt[0].split("=")[1]) if opt and opt[0].startswith("tile=") else 1
            rows.append(dict(split=split, package=pkg, path=path, licence=lic, tile=tile))
    return rows


def fetch(work, photos):
    """Download and unpack every package the photographs come from (once)."""
    debs, root = os.path.join(work, "debs"), os.path.join(work, "photos")
    os.makedirs(debs, exist_ok=True)
    for pkg in sorted({p["package"] for p in photos}):
        dest = os.path.join(root, pkg)
        if os.path.isdir(dest):
            continue
        have = [f for f in os.listdir(debs) if f.startswith(pkg + "_")]
        if not have:
            subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True, stdout=subprocess.DEVNULL)
            have = [f for f in os.listdir(debs) if f.startswith(pkg + "_")]
        os.makedirs(dest + ".tmp", exist_ok=True)
        subprocess.run(["dpkg-deb", "-x", os.path.join(debs, have[0]), dest + ".tmp"], check=True)
        os.rename(dest + ".tmp", dest)
    for p in photos:
        if "!" in p["path"]:  # a member of an archive inside the package (a game's .pk3 zip)
            archive, member = p["path"].split("!", 1)
            p["file"] = os.path.join(root, p["package"] + ".members", member)
            if not os.path.exists(p["file"]):
                with zipfile.ZipFile(os.path.join(root, p["package"], archive)) as z:
                    os.makedirs(os.path.dirname(p["file"]), exist_ok=True)
                    with z.open(member) as src, open(p["file"] + ".tmp", "wb") as dst:
                        shutil.copyfileobj(src, dst)
                os.rename(p["file"] + ".tmp", p["file"])
        else:
            p["file"] = os.path.join(root, p["package"], p["path"])
        if not os.path.exists(p["file"]):
            sys.exit(f"make.py: {p['path']} not found in package {p['package']}")


def stem(photo):
    name = os.path.basename(photo["path"].split("!")[-1])
    if name[0].isdigit():  # plasma's wallpapers are named by size inside a named folder
        name = photo["path"].split("/")[3]
    return os.path.splitext(name)[0].split("_by_")[0]


def seed_of(*parts):
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def row(file, photo, group, comp, kind, p):
    sev = compose.severity(kind, p)
    x, y, w, h = comp.rect
    return dict(file=file, photo=stem(photo), group=group, kind=kind, param=p, severity=f"{sev:.4f}",
                expected="good" if kind == "clean" else compose.ARTIFACT[kind],
                clearly_bad=int(sev >= compose.CLEARLY_BAD), width=comp.size[0], height=comp.size[1],
                layout=comp.layout, palette=comp.palette, fov_x=x, fov_y=y, fov_w=w, fov_h=h)


def random_variants(comp, rng, n):
    """Clean twice, then `n` random degradations at a random level (training)."""
    out = [("clean", 0, 0), ("clean", 0, 1)]
    kinds = ["defocus", "defocus", "motion", "dark", "over", "glare", "noise", "jpeg", "outside"]
    ranges = dict(defocus=(0.8, 6.0), motion=(4, 35), dark=(0.04, 0.6), over=(1.4, 4.5),
                  glare=(0.006, 0.16), noise=(4, 36), jpeg=(3, 32))
    for _ in range(n):
        k = kinds[rng.integers(0, len(kinds))]
        if k == "outside":
            out.append((k, 1, 0))
            continue
        lo, hi = ranges[k]
        p = float(rng.uniform(lo, hi))
        if k in ("jpeg", "motion"):
            p = int(round(p))
        elif k == "defocus" and rng.random() < 0.5:
            p = float(lo + (hi - lo) * rng.random() ** 2)  # weighted toward the hard, mild end
        out.append((k, round(p, 3), 0))
    return out


def job(args):
    split, photo, i, out_dir, graded, n_random = args
    img = Image.open(photo["file"]).convert("RGB")
    if photo["tile"] > 1:
        t = photo["tile"]
        img = Image.fromarray(np.tile(np.asarray(img), (t, t, 1)))
    group = f"{stem(photo)}-{i}"
    comp = compose.Composition(img, seed_of(split, photo["path"], i))
    variants = list(comp.variants()) if graded else random_variants(comp, np.random.default_rng(seed_of("v", split, photo["path"], i)), n_random)
    rows = []
    for kind, p, rep in variants:
        name = f"{group}_{kind}_{p}" + (f"_{rep}" if rep else "") + ".png"
        path = os.path.join(out_dir, name)
        if not os.path.exists(path):  # resume an interrupted run
            # Training frames are read once: store them uncompressed (faster).
            Image.fromarray(comp.render(kind, p, rep)).save(path + ".tmp.png", compress_level=1 if graded else 0)
            os.rename(path + ".tmp.png", path)
        rows.append(row(name, photo, group, comp, kind, p))
    return rows


def make_split(work, split, photos, per_photo, graded, n_random=8, procs=2, texture_per_photo=None):
    texture_per_photo = per_photo if texture_per_photo is None else texture_per_photo
    out_dir = os.path.join(work, split)
    os.makedirs(out_dir, exist_ok=True)
    jobs = [(split, p, i, out_dir, graded, n_random) for p in photos if p["split"] == split
            for i in range(per_photo if p["tile"] == 1 or graded else texture_per_photo)]
    rows = []
    # labels.csv grows one composition at a time, so an interrupted split is usable as far
    # as it got (and a rerun resumes it).
    with mp.Pool(procs) as pool, open(os.path.join(out_dir, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in pool.imap(job, jobs):
            rows += r
            w.writerows(r)
            f.flush()
            print(f"{split}: {len(rows)} frames", end="\r", file=sys.stderr)
    print(f"{split}: {len(rows)} frames in {out_dir}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/endo-agent/realset"))
    ap.add_argument("--splits", default="test,val")
    ap.add_argument("--per-photo", type=int, default=3, help="compositions per photograph (test, val)")
    ap.add_argument("--train-per-photo", type=int, default=10, help="compositions per photograph (train)")
    ap.add_argument("--texture-per-photo", type=int, default=5, help="compositions per tiled texture (train)")
    ap.add_argument("--procs", type=int, default=2)
    a = ap.parse_args()
    photos = read_photos()
    fetch(a.work, photos)
    for split in a.splits.split(","):
        if split == "train":
            make_split(a.work, split, photos, a.train_per_photo, graded=False, procs=a.procs,
                       texture_per_photo=a.texture_per_photo)
        else:
            make_split(a.work, split, photos, a.per_photo if split == "test" else max(1, a.per_photo - 1), graded=True, procs=a.procs)


if __name__ == "__main__":
    main()
