#!/usr/bin/env bash
# relay-compare: what relaying one RTP packet costs, for the floor, rtpengine, `dialplane media`,
# `dialplane media --dsp-taps` and the same with a dub track on every 10th call, under the same
# load, as ratios to the floor measured in the same run (only ratios within one run mean anything
# on a shared or virtual machine).
#
#   benches/relay-compare.sh            500 and 1000 calls, 10 s each
#   CALLS="500" SECS=5 benches/relay-compare.sh
#
# Uses ../shared/bench/relay-bench (or $DIALPLANE_SHARED/bench/relay-bench): N calls set up over
# the ng protocol on 127.0.0.1:2223, 50 pps per leg both ways, relay pinned to CPU 0 and load to
# CPU 1. rtpengine is measured when installed (Debian rtpengine-daemon). Needs gcc, python3 and
# liburing-dev. Prints one table: CPU µs per relayed packet (and ratio to the floor), loss, p99
# latency (and its difference to the floor's).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
shared=${DIALPLANE_SHARED:-$root/../shared}
bench=$shared/bench/relay-bench
secs=${SECS:-10}
calls_list=${CALLS:-500 1000}
cargo=${CARGO:-cargo}

[ -x "$bench" ] || { echo "relay-compare: $bench not found (set DIALPLANE_SHARED)" >&2; exit 2; }
[ -e /usr/include/liburing.h ] || { echo "relay-compare: liburing-dev is needed for the floor" >&2; exit 2; }
if ss -lun 2>/dev/null | grep -q '127.0.0.1:2223 '; then
  echo "relay-compare: 127.0.0.1:2223 is in use; stop whatever listens there first" >&2; exit 2
fi

(cd "$root" && $cargo build --release --bin dialplane)
bin=$root/target/release/dialplane
relay_flags="--interface 127.0.0.1 --listen-ng 127.0.0.1:2223 --port-min 30000 --port-max 60000 --num-threads 1"

# name, then relay-bench arguments; prints "name calls us_per_pkt lost_pct p99_us"
measure() {
  local name=$1 calls=$2; shift 2
  local line
  line=$("$bench" "$@" --calls "$calls" --secs "$secs")
  echo "$line" >&2
  awk -v n="$name" -v c="$calls" '{
    for (i = 1; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
    print n, c, v["us_per_pkt"], v["lost_pct"], v["p99_us"], v["sent"], v["recv"]
  }' <<<"$line"
}

results=$(mktemp); trap 'rm -f "$results"' EXIT
for calls in $calls_list; do
  measure floor-uring "$calls" --floor uring >>"$results"
  if command -v rtpengine >/dev/null; then
    measure rtpengine "$calls" --ng-cmd "rtpengine --interface=127.0.0.1 --listen-ng=127.0.0.1:2223 --table=-1 --port-min=30000 --port-max=60000 --foreground --log-stderr --num-threads=1" >>"$results"
  fi
  measure dialplane "$calls" --ng-cmd "$bin media $relay_flags" >>"$results"
  measure dialplane+taps "$calls" --ng-cmd "$bin media $relay_flags --dsp-taps" >>"$results"
  # Issue 6's load: taps on both legs and a dub track (a looped tone mixed in) on every 10th call.
  measure dp+taps+dub "$calls" --ng-cmd "$bin media $relay_flags --dsp-taps --dsp-dub-every 10" >>"$results"
done

echo
echo "(# loss by count only)"
awk '
  BEGIN { printf "%-15s %6s %10s %8s %8s %8s %10s\n", "relay", "calls", "us/pkt", "x floor", "loss%", "p99_us", "p99-floor" }
  $1 == "floor-uring" { fus[$2] = $3; fp99[$2] = $5 }
  {
    ratio = (fus[$2] > 0) ? sprintf("%.2f", $3 / fus[$2]) : "-"
    # A dub track mixes into the payload, where rtpblast stamps its send time, and plays before
    # the load starts: latency of dubbed calls cannot be read, and loss only by count (packets
    # missing from what arrived; the dub frames sent before the load make up for as many).
    if ($1 == "dp+taps+dub") {
      missing = ($6 > $7) ? ($6 - $7) * 100 / $6 : 0
      printf "%-15s %6d %10.2f %8s %7.3f# %8s %10s\n", $1, $2, $3, ratio, missing, "-", "-"
    } else {
      printf "%-15s %6d %10.2f %8s %8.3f %8d %+10d\n", $1, $2, $3, ratio, $4, $5, $5 - fp99[$2]
    }
  }' "$results"
