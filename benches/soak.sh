#!/usr/bin/env bash
# soak: hours of traffic compressed into minutes, to show nothing leaks. SIPp calls `dialplane
# serve` (release build, static app: dial one SIPp callee) at RATE calls/s, each held HOLD_MS
# with RTP both ways (the caller plays SIPp's PCMA pcap, the callee echoes it back through the
# relay), for DURATION seconds.
#
#   benches/soak.sh                            100 calls/s, 3 s hold, 10 minutes (make check-long)
#   DURATION=60 RATE=50 benches/soak.sh        a quick look
#
# The bar: zero failed calls, and after the run, once the last call is gone, the process's open
# file descriptors, its UDP sockets, and the gauges dialplane_calls_active,
# dialplane_sip_dialogs_active and dialplane_media_legs are back at their values before the run.
# RSS is printed before, every minute under load and after: under steady load it must level off
# (the allocator keeps freed pages, so RSS after is not expected to fall back to the start).
# Exit code 1 when the bar is not met; the logs are kept then.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
duration=${DURATION:-600}
rate=${RATE:-100}
hold_ms=${HOLD_MS:-3000}
cargo=${CARGO:-cargo}
command -v sipp >/dev/null || { echo "soak: sipp not found (make deps)" >&2; exit 2; }
(cd "$root" && $cargo build --release --bin dialplane)
bin=$root/target/release/dialplane
work=$(mktemp -d /tmp/soak.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports: a base with 16 free ports above it (SIP, HTTP, SIPp's SIP ports, and its media ports
# with the three after each: RTP and RTCP for audio, then for video).
used=" $(ss -Hantu | awk '{ n = split($5, a, ":"); print a[n] }' | tr '\n' ' ') "
base=
for _ in $(seq 200); do
  b=$((15000 + RANDOM % 300 * 16))
  for i in $(seq 0 15); do case "$used" in *" $((b + i)) "*) continue 2 ;; esac; done
  base=$b
  break
done
[ -n "$base" ] || { echo "soak: no free ports" >&2; exit 2; }
sip=$((base)) http=$((base + 1)) callee=$((base + 2)) caller=$((base + 4))

echo "[{\"verb\":\"dial\",\"target\":[{\"type\":\"sip\",\"sipUri\":\"sip:callee@127.0.0.1:$callee\"}]}]" >"$work/app.json"
RUST_LOG=warn "$bin" serve --sip "127.0.0.1:$sip" --http "127.0.0.1:$http" --interface 127.0.0.1 \
  --port-min 30000 --port-max 49999 --app "$work/app.json" >"$work/serve.log" 2>&1 &
sut=$!
pids+=("$sut")

metrics() {
  local text
  exec 3<>"/dev/tcp/127.0.0.1/$http" || return 1
  printf 'GET /metrics HTTP/1.0\r\nHost: soak\r\n\r\n' >&3
  text=$(cat <&3)
  exec 3<&-
  echo "$text"
}
gauge() { awk -v m="$1" '$1 == m { v = $2 } END { print v + 0 }' <<<"$2"; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$sut/status"; }
udp_sockets() { ss -Huanp 2>/dev/null | grep -c "pid=$sut," || true; }
snapshot() {
  local m
  m=$(metrics)
  echo "fds=$(ls "/proc/$sut/fd" | wc -l) udp=$(udp_sockets) calls=$(gauge dialplane_calls_active "$m") dialogs=$(gauge dialplane_sip_dialogs_active "$m") legs=$(gauge dialplane_media_legs "$m")"
}

for _ in $(seq 50); do metrics >/dev/null 2>&1 && break; sleep 0.1; done
before=$(snapshot)
echo "before: $before rss_kb=$(rss_kb)"

sipp -sf "$root/tests/kamailio/uas.xml" -rtp_echo -i 127.0.0.1 -p "$callee" -mp $((base + 8)) \
  -nostdin -trace_err -error_file "$work/callee_errors.log" -trace_stat -stf "$work/callee.csv" \
  >"$work/callee.out" 2>&1 &
callee_pid=$!
pids+=("$callee_pid")
calls=$((rate * duration))
sipp "127.0.0.1:$sip" -sf "$root/tests/kamailio/uac.xml" -i 127.0.0.1 -p "$caller" -mp $((base + 12)) \
  -r "$rate" -m "$calls" -d "$hold_ms" -nostdin -recv_timeout 10000 -timeout_error \
  -trace_err -error_file "$work/caller_errors.log" -trace_stat -stf "$work/caller.csv" \
  >"$work/caller.out" 2>&1 &
caller_pid=$!
pids+=("$caller_pid")

start=$SECONDS
while kill -0 "$caller_pid" 2>/dev/null; do
  sleep 1
  if [ $(((SECONDS - start) % 60)) -eq 0 ]; then
    echo "t=$((SECONDS - start))s rss_kb=$(rss_kb) $(snapshot)"
  fi
done
wait "$caller_pid" || true
kill "$callee_pid" 2>/dev/null || true

# Idle: the last BYE answered, dialogs and legs freed.
after=
for _ in $(seq 100); do
  after=$(snapshot)
  [ "$after" = "$before" ] && break
  sleep 0.1
done
echo "after:  $after rss_kb=$(rss_kb)"
relayed=$(metrics | awk '$1 ~ /^dialplane_media_packets_relayed_total/ { n += $2 } END { print n + 0 }')
echo "RTP packets relayed: $relayed"

header=$(head -1 "$work/caller.csv")
last=$(tail -1 "$work/caller.csv")
field() {
  awk -F';' -v h="$header" -v l="$last" -v f="$1" 'BEGIN {
    n = split(h, hs, ";"); split(l, ls, ";")
    for (i = 1; i <= n; i++) if (hs[i] == f) print ls[i]
  }' </dev/null
}
ok=$(field SuccessfulCall\(C\)) failed=$(field FailedCall\(C\))
echo "calls: $ok successful, $failed failed of $calls (caller side)"
status=0
[ "$failed" = "0" ] && [ "$ok" = "$calls" ] || { echo "soak: failed calls" >&2; status=1; }
[ "$after" = "$before" ] || { echo "soak: not back to the start" >&2; status=1; }
[ "$relayed" -gt 0 ] || { echo "soak: no RTP relayed" >&2; status=1; }
if [ $status -ne 0 ]; then
  trap - EXIT
  cleanup
  echo "soak: logs kept in $work" >&2
  exit 1
fi
rm -rf "$work"
