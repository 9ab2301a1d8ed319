#!/usr/bin/env bash
# Instructions the scorer executes per 1080p frame, counted by valgrind's callgrind inside
# `Scorer::score` only (classical measures, preprocessing, the model): the same count for
# the same binary and frames whatever else the machine does, where timings on these
# shared 2-core machines move by 10-20 % between runs (docs/benchmarks.md). Compare two
# trees' release binaries with it; a timing still says what a change is worth live.
#
#   scripts/score-instructions.sh [--no-model] BINARY [BINARY ...]
#
# `--no-model` counts the classical-only scorer (`[model] enabled = false`) instead.
#
# The frames: 12 phantom stills at 1920x1080 (good, defocus, dark, glare; white light and
# NBI), made once with the first binary's `phantom` command in
# ~/.cache/endo-agent/instructions. Each binary scores them (with the shipped model, or
# none with --no-model) and prints its instructions per frame, and whether its scores
# equal the first binary's.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
model=(--model "$here/models/quality-int8.onnx")
if [ "${1:-}" = --no-model ]; then model=(--no-model); shift; fi
[ $# -ge 1 ] || { echo "usage: $0 [--no-model] BINARY [BINARY ...]" >&2; exit 2; }
command -v valgrind > /dev/null || { echo "valgrind is needed: apt-get install valgrind" >&2; exit 2; }
work=${XDG_CACHE_HOME:-$HOME/.cache}/endo-agent/instructions
frames=()
for palette in nbi white-light; do
    dir=$work/$palette
    if [ ! -s "$dir/labels.csv" ]; then
        mkdir -p "$dir"
        "$1" phantom --width 1920 --height 1080 --fps 1 --palette "$palette" --seed 3 \
            --schedule "good 2s; defocus 1s sigma=2; dark 1s gain=0.3; glare 2s area=0.04" \
            --stills "$dir" > /dev/null
    fi
    while IFS= read -r f; do frames+=("$dir/$f"); done \
        < <(tail -n +2 "$dir/labels.csv" | cut -d, -f1)
done
n=${#frames[@]}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
first=""
i=0
for bin in "$@"; do
    i=$((i + 1))
    out=$tmp/$i
    valgrind --tool=callgrind --callgrind-out-file="$out.cg" --toggle-collect='*Scorer*score*' \
        "$bin" score --json "${model[@]}" "${frames[@]}" \
        > "$out" 2> "$out.err" || { cat "$out.err" >&2; exit 1; }
    ir=$(grep -o 'Collected : [0-9]*' "$out.err" | grep -o '[0-9]*$')
    same="-"
    if [ -z "$first" ]; then first=$out; else cmp -s "$first" "$out" && same=yes || same=NO; fi
    awk -v b="$bin" -v ir="$ir" -v n="$n" -v s="$same" \
        'BEGIN { printf "%-50s %6.2f M instructions per frame (%d frames), same scores as the first: %s\n", b, ir / n / 1e6, n, s }'
    rm -f "$out.cg"
done
