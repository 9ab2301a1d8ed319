#!/usr/bin/env python3
"""Write the evaluation into the model card:
card.py METRICS_JSON BENCH_ORT_TXT README [METRICS_720P_JSON]

Replaces the text between `<!-- metrics:begin -->` and `<!-- metrics:end -->` in README.
"""
import json
import sys


def table(m):
    out = ["| scorer | SROCC | accuracy @0.6 | accuracy @0.5 | mild blur σ=1.5 recall | good kept | bad rejected |",
           "|---|---|---|---|---|---|---|"]
    for name, r in m["results"].items():
        out.append(f"| {name} | {r['srocc']:.3f} | {100 * r['acc_at_0_6']:.1f} % | {100 * r['acc_at_0_5']:.1f} % | "
                   f"{100 * r['mild_blur_recall']:.1f} % (n={r['mild_blur_n']}) | {100 * r['good_kept']:.1f} % | {100 * r['bad_rejected']:.1f} % |")
    return out


def confusion(m, name):
    c = m["classes"]
    out = [f"**{name}** (rows: truth, columns: verdict)", "", "| truth \\ verdict | " + " | ".join(c) + " |",
           "|---" * (len(c) + 1) + "|"]
    for i, row in enumerate(m["results"][name]["confusion"]):
        out.append(f"| {c[i]} (n={sum(row)}) | " + " | ".join(str(v) for v in row) + " |")
    return out + [""]


def main():
    m = json.load(open(sys.argv[1]))
    bench = open(sys.argv[2]).read().strip().splitlines()
    n = next(iter(m["results"].values()))["n"]
    lines = [f"Held-out test set: {n} phantom stills (8 seeds never seen in training, 1080p), read back from PNG "
             "and preprocessed by the agent exactly as live frames. Verdict \"good\" = quality ≥ 0.6 "
             "(`select.threshold_high`); otherwise the largest artifact.", ""]
    lines += table(m) + [""]
    for name in m["results"]:
        if name.startswith("model int8 weight") or name.startswith("classical") or name.startswith("agent"):
            lines += confusion(m, name)
    if len(sys.argv) > 4:
        m7 = json.load(open(sys.argv[4]))
        n7 = next(iter(m7["results"].values()))["n"]
        lines += [f"At 720p (the demo's size): {n7} stills from 4 more unseen seeds, same mix (`test720`).", ""]
        lines += table(m7) + [""]
    lines += ["onnxruntime timing (`models/train/bench_ort.py`):", "", "```"] + bench + ["```"]
    text = open(sys.argv[3]).read()
    a, b = text.index("<!-- metrics:begin -->"), text.index("<!-- metrics:end -->")
    text = text[:a] + "<!-- metrics:begin -->\n" + "\n".join(lines) + "\n" + text[b:]
    open(sys.argv[3], "w").write(text)


if __name__ == "__main__":
    main()
