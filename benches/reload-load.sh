#!/usr/bin/env bash
# reload-load: configuration reloads (SIGHUP) while `dialplane serve` carries calls; the bar is
# zero failed calls.
#
#   benches/reload-load.sh                      100 calls/s, 2000 calls, a SIGHUP every 50 ms
#   RATE=20 CALLS=200 benches/reload-load.sh    a quick check
#
# The call: SIPp's built-in uac (INVITE, holds HOLD_MS=500 after the 200, BYE) → dialplane serve
# running a static app that dials a phone number → the carrier's gateway, one of two SIPp uas.
# Every EVERY_S=0.05 s the config file is replaced (rename) by one naming the other gateway and
# serve gets SIGHUP. Printed: SIPp's successful and failed calls, the SIGHUPs sent, dialplane's
# dialplane_config_reloads_total and dialplane_calls_total, the calls each gateway answered. Exit code
# 1 if a call failed or a reload was rejected. Uses the debug build (cargo build --bin dialplane)
# unless BIN is set.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rate=${RATE:-100}
calls=${CALLS:-2000}
hold_ms=${HOLD_MS:-500}
every=${EVERY_S:-0.05}
base=${BASE_PORT:-36000}
bin=${BIN:-$root/target/debug/dialplane}
[ -n "${BIN:-}" ] || (cd "$root" && ${CARGO:-cargo} build --bin dialplane)
command -v sipp >/dev/null || { echo "reload-load: sipp not found (make deps)" >&2; exit 2; }

work=$(mktemp -d /tmp/reload-load.XXXXXX)
cd "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

gw1=$((base + 1)) gw2=$((base + 2)) sip=$base http=$((base + 3))
gateway() {
  # No OPTIONS probes: SIPp's built-in uas would count each as a failed call.
  printf '[[carriers]]\nname = "trunk"\ngateways = ["sip:127.0.0.1:%s"]\nprobe_interval_s = 0\n' "$1" >cfg.tmp
  mv cfg.tmp cfg.toml
}
echo '[{"verb":"dial","target":[{"type":"phone","number":"+15550001111"}]}]' >app.json
gateway $gw1
for port in $gw1 $gw2; do
  sipp -sn uas -i 127.0.0.1 -p $port -mp $((port + 100 * (port - base))) -nostdin \
    -trace_stat -fd 1 -stf "uas-$port.csv" >/dev/null 2>&1 &
  pids+=($!)
done
"$bin" serve --config cfg.toml --app app.json --sip 127.0.0.1:$sip --http 127.0.0.1:$http \
  --interface 127.0.0.1 --port-min 37000 --port-max 39999 --num-threads 1 \
  >serve.out 2>serve.log &
serve=$!
pids+=($serve)
for _ in $(seq 100); do grep -q '^ready' serve.out && break; sleep 0.1; done
grep -q '^ready' serve.out || { echo "reload-load: serve did not start" >&2; cat serve.log >&2; exit 2; }
sipp 127.0.0.1:$sip -sn uac -s 15550001111 -i 127.0.0.1 -p $((base + 10)) -mp $((base + 5000)) \
  -r "$rate" -m "$calls" -l "$calls" -d "$hold_ms" -nostdin -timeout 600s \
  -trace_screen -screen_file uac.screen >/dev/null 2>&1 &
uac=$!
pids+=($uac)
sent=0
while kill -0 $uac 2>/dev/null; do
  sleep "$every"
  if [ $((sent % 2)) = 0 ]; then gateway $gw2; else gateway $gw1; fi
  kill -HUP $serve
  sent=$((sent + 1))
done
uac_status=0
wait $uac || uac_status=$?
metrics=$(curl -s 127.0.0.1:$http/metrics)
echo "rate $rate/s, $calls calls, hold ${hold_ms} ms, SIGHUP every ${every} s: $sent sent"
grep -E "Successful call|Failed call" uac.screen | tail -2
echo "$metrics" | grep -E '^dialplane_(config_reloads|calls)_total'
sleep 6 # the uas scenario ends 4 s after its BYE; statistics are written each second
for port in $gw1 $gw2; do
  # The last line's SuccessfulCall(C) column (found by its header).
  answered=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "SuccessfulCall(C)") c = i }
    END { print $c }' "uas-$port.csv")
  echo "gateway 127.0.0.1:$port answered $answered calls"
done
rejected=$(echo "$metrics" | sed -n 's/^dialplane_config_reloads_total{result="rejected"} //p')
if [ "$uac_status" != 0 ] || [ -n "$rejected" ]; then
  echo "reload-load: FAILED (sipp exit $uac_status, rejected reloads ${rejected:-0}); logs in $work"
  trap - EXIT
  cleanup
  exit 1
fi
cleanup
trap - EXIT
rm -rf "$work"
