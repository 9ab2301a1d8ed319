#!/usr/bin/env bash
# The agent alone, as its own process, on a 1080p60 recording: peak memory, CPU per frame
# per thread, and the time from exec to the first scored frame (docs/benchmarks.md, "The
# agent's memory alone"). No generator in the process: a 20 s MJPEG file made once with
# GStreamer, played by `source.kind = "file"` as fast as the agent takes it, a fixed
# field of view, the shipped model, a local datalake in a scratch directory.
# ENDO_ALONE_SOURCE=test instead runs `source.kind = "test"` (videotestsrc, 1920×1080@60,
# live, no decoder) for 20 s: what a raw capture card's memory looks like.
# ENDO_ALONE_CONFIG: TOML appended to the generated config (a section the script does not
# write, e.g. '[encode] queue_frames = 4' as two lines; with the test source also [capture]).
#
#   scripts/agent-alone.sh [BINARY]    # default: target/release/endo-agent (build it first)
#
# Prints VmHWM (kB), per thread and in all the CPU ms per frame (utime + stime from
# /proc/<pid>/task/*/stat, sampled every 0.25 s; a thread's last sample before it ends),
# the frames scored, and the seconds from exec to the first scored frame (the metrics
# endpoint polled every 10 ms). Run it twice, alternating with the binary you compare.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-${CARGO_TARGET_DIR:-$here/target}/release/endo-agent}
work=${ENDO_ALONE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/endo-agent/alone}
frames=1200
mkdir -p "$work"
video=$work/ball1080.avi
if [ ! -s "$video" ]; then
    gst-launch-1.0 -q videotestsrc num-buffers=$frames pattern=ball \
        ! video/x-raw,width=1920,height=1080,framerate=60/1 \
        ! jpegenc quality=85 ! avimux ! filesink location="$video"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
if [ "${ENDO_ALONE_SOURCE:-file}" = test ]; then
    source='kind = "test"
width = 1920
height = 1080
fps = 60'
else
    source="kind = \"file\"
path = \"$video\"

[capture]
on_eos = \"stop\""
fi
cat > "$work/agent.toml" <<EOF
[source]
$source

[fov]
mode = "fixed"
rect = [420, 60, 1080, 960]

[model]
path = "$here/models/quality-int8.onnx"

[datalake]
dir = "$work/lake"

[spool]
dir = "$work/spool"

[http]
listen = "127.0.0.1:$port"

${ENDO_ALONE_CONFIG:-}
EOF
rm -rf "$work/lake" "$work/spool"
t0=$(date +%s.%N)
"$bin" run --config "$work/agent.toml" > "$work/run.log" 2>&1 &
pid=$!
first=""
stopped=""
hwm=0
declare -A cpu name
while kill -0 "$pid" 2>/dev/null; do
    if [ -z "$first" ]; then
        n=$(curl -s "http://127.0.0.1:$port/metrics" 2>/dev/null \
            | awk '/^endo_agent_frames_scored_total/ {print int($2)}' || true)
        if [ -n "$n" ] && [ "$n" -ge 1 ]; then
            first=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.3f", a - b }')
        fi
        sleep 0.01
    fi
    h=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
    [ -n "$h" ] && hwm=$h
    for t in /proc/$pid/task/*; do
        id=${t##*/}
        c=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null) || continue
        [ -n "$c" ] || continue
        cpu[$id]=$c
        name[$id]=$(cat "$t/comm" 2>/dev/null || echo "?")
    done
    [ -n "$first" ] && sleep 0.25
    if [ "${ENDO_ALONE_SOURCE:-file}" = test ] && [ -n "$first" ] && [ -z "$stopped" ] \
        && awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { exit !(a - b > 20) }'; then
        kill -INT "$pid" 2>/dev/null || true
        stopped=1
    fi
done
wait "$pid" || { echo "the agent failed: $work/run.log" >&2; exit 1; }
frames=$(grep -o "scored: [0-9]*" "$work/run.log" | tail -1 | grep -o "[0-9]*")
hz=$(getconf CLK_TCK)
echo "VmHWM_kB $hwm"
for id in "${!cpu[@]}"; do echo "${name[$id]} ${cpu[$id]}"; done | awk -v hz="$hz" -v n=$frames '
    { t[$1] += $2; all += $2 }
    END {
        for (k in t) if (t[k] > 0) printf "  %-16s %.2f ms/frame\n", k, t[k] * 1000 / hz / n
        printf "  all              %.2f ms/frame\n", all * 1000 / hz / n
    }'
echo "scored: $frames"
grep -o "captured: [0-9]*, scored: [0-9]*" "$work/run.log" | tail -1 | sed 's/^/summary: /' || true
echo "first score after ${first:-?} s"
