#!/usr/bin/env python3
"""Copy a small subset of the real-image test split into the repository for
tests/scoring_real.rs: subset.py [--work DIR] [--out models/realset/subset]

Three 1280x720 compositions (different photographs), each clean and with one clearly bad
level of every degradation plus a mild defocus, as JPEG quality 95 (the test allows for
what that adds), with the same labels.csv columns as the split.
"""
import argparse
import csv
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
KEEP = {("clean", "0"), ("defocus", "1.5"), ("defocus", "3.0"), ("motion", "15"), ("dark", "0.22"),
        ("over", "2.6"), ("glare", "0.05"), ("noise", "16"), ("jpeg", "6"), ("outside", "1")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.expanduser("~/.cache/endo-agent/realset"))
    ap.add_argument("--out", default=os.path.join(HERE, "subset"))
    ap.add_argument("--groups", type=int, default=3)
    a = ap.parse_args()
    split = os.path.join(a.work, "test")
    rows = list(csv.DictReader(open(os.path.join(split, "labels.csv"))))
    groups, photos = [], set()
    for r in rows:
        if r["width"] == "1280" and r["height"] == "720" and r["photo"] not in photos and r["kind"] == "clean":
            groups.append(r["group"])
            photos.add(r["photo"])
    groups = groups[: a.groups]
    os.makedirs(a.out, exist_ok=True)
    for f in os.listdir(a.out):
        os.remove(os.path.join(a.out, f))
    keep = []
    for r in rows:
        if r["group"] in groups and (r["kind"], r["param"]) in KEEP:
            name = os.path.splitext(r["file"])[0] + ".jpg"
            Image.open(os.path.join(split, r["file"])).convert("RGB").save(os.path.join(a.out, name), quality=95)
            keep.append(dict(r, file=name))
    with open(os.path.join(a.out, "labels.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(keep[0].keys()))
        w.writeheader()
        w.writerows(keep)
    size = sum(os.path.getsize(os.path.join(a.out, f)) for f in os.listdir(a.out))
    print(f"{len(keep)} frames of {len(groups)} compositions ({', '.join(groups)}), {size / 1e6:.1f} MB in {a.out}")


if __name__ == "__main__":
    main()
