#!/usr/bin/env python3
"""Compare two `endo-agent score --json` outputs of the same stills (scripts/aarch64.sh).

Usage: compare-scores.py REFERENCE.jsonl OTHER.jsonl

Fails (exit 1) unless both scored the same images with the same field of view and the same
reasons, every classical measure agrees within 1e-6 (relative, for large measures) and
every model-derived figure within 1e-5. Prints the largest difference of each kind.
"""
import json
import sys

CLASSICAL_TOL = 1e-6
MODEL_TOL = 1e-5


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ref, other = load(sys.argv[1]), load(sys.argv[2])
    errors = []
    if len(ref) != len(other) or not ref:
        sys.exit(f"compare: {len(ref)} scores against {len(other)}")
    classical, model = 0.0, 0.0
    for a, b in zip(ref, other):
        name = a["image"]
        if a["image"] != b["image"] or a["fov"] != b["fov"]:
            errors.append(f"{name}: fov {a['fov']} against {b['fov']}")
            continue
        sa, sb = a["score"], b["score"]
        if sa["reasons"] != sb["reasons"]:
            errors.append(f"{name}: reasons {sa['reasons']} against {sb['reasons']}")
        for key, va in sa["measures"].items():
            d = abs(va - sb["measures"][key]) / max(1.0, abs(va))
            classical = max(classical, d)
            if d > CLASSICAL_TOL:
                errors.append(f"{name}: measure {key} {va} against {sb['measures'][key]}")
        if abs(sa["classical_quality"] - sb["classical_quality"]) > CLASSICAL_TOL:
            errors.append(f"{name}: classical_quality differs")
        pairs = [("quality", sa["quality"], sb["quality"])]
        if sa.get("model_quality") is not None:
            pairs.append(("model_quality", sa["model_quality"], sb["model_quality"]))
        pairs += [(f"artifact {k}", v, sb["artifacts"][k]) for k, v in sa["artifacts"].items()]
        for key, va, vb in pairs:
            model = max(model, abs(va - vb))
            if abs(va - vb) > MODEL_TOL:
                errors.append(f"{name}: {key} {va} against {vb}")
    print(f"compare: {len(ref)} stills, same FOV and reasons; largest difference: "
          f"classical measures {classical:.2g}, quality/model/artifacts {model:.2g}")
    if errors:
        print("\n".join(errors[:20]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
