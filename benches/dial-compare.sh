#!/usr/bin/env bash
# dial-compare: what one `dial` call costs dialplane in CPU and memory, beside Kamailio 5.6 forking
# the same call as a stateful proxy (benches/dial/kamailio.cfg), measured in the same run.
#
#   benches/dial-compare.sh                        100 and 300 calls/s for 60 s each, then memory
#   DURATION=10 RATES=100 benches/dial-compare.sh  a quick check
#   SYSTEMS=kamailio benches/dial-compare.sh       one side only (SYSTEMS="kamailio dialplane")
#   KEEP=1 ...                                     keep the logs (always kept after a failure)
#
# The call: SIPp caller (INVITE with SDP, holds HOLD_MS=200 after the 200 OK, BYE) → system under
# test → two SIPp callees, one answering 200 (with SDP) after 50 ms, one ringing (180) until it is
# cancelled (200 to the CANCEL, 487, ACK). No RTP flows on either side: SIPp sends none, so the
# figures are signalling (plus, for dialplane, setting up and tearing down its relay endpoints).
#
# CPU: utime+stime from /proc/PID/stat of every process of the system under test (Kamailio's main
# process and all its children; dialplane's one process, all its threads), read at idle before
# the run and after the last call; divided by the calls completed. Only figures from one run are
# comparable on a shared machine. SIPp's own CPU is printed to show it was not the bottleneck.
# Memory: MEM_CALLS=1000 calls at MEM_RATE=100/s held MEM_HOLD=20 s; PSS summed over the
# system's processes (Kamailio's shared memory counted once, not once per process as VmRSS sums
# would) at the plateau minus at idle, per 1000 calls up at that moment (SIPp's count).
#
# Zero failed calls is the bar: failed calls (SIPp's FailedCall counters, caller and callees) are
# printed per run, with the first lines of SIPp's error logs, and the exit code is 1 if any.
# Also per run: the mean setup time (INVITE → 200; the callee answers at 50 ms), SIPp's CPU (% of
# one core) and the whole machine's busy share (others' work on a shared machine shows there).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
here=$root/benches/dial
duration=${DURATION:-60}
rates=${RATES:-100 300}
systems=${SYSTEMS:-kamailio dialplane}
hold_ms=${HOLD_MS:-200}
mem_calls=${MEM_CALLS:-1000}
mem_rate=${MEM_RATE:-100}
mem_hold=${MEM_HOLD:-20}
kam_children=${KAMAILIO_CHILDREN:-4}
# Kamailio's fast allocator (fm), as in production: Debian's default (qm) keeps debugging records
# per fragment and costs about twice the CPU per call here. KAMAILIO_OPTS= measures the default.
read -r -a kam_opts <<<"${KAMAILIO_OPTS--x fm}"
rtp_min=${RTP_PORT_MIN:-20000}
rtp_max=${RTP_PORT_MAX:-29999}
cargo=${CARGO:-cargo}
tck=$(getconf CLK_TCK)

for tool in sipp ss; do
  command -v $tool >/dev/null || { echo "dial-compare: $tool not found (make deps)" >&2; exit 2; }
done
case " $systems " in *" kamailio "*)
  command -v kamailio >/dev/null || { echo "dial-compare: kamailio not found (make deps)" >&2; exit 2; }
esac
case " $systems " in *" dialplane "*)
  (cd "$root" && $cargo build --release --bin dialplane)
esac
bin=$root/target/release/dialplane

work=$(mktemp -d /tmp/dial-compare.XXXXXX)
results=$work/results
: >"$results"
failed_any=0
pids=()

# Every child we start is in $pids; on any exit, each still alive gets SIGTERM (Kamailio's main
# process then stops its children), then SIGKILL after 5 s.
stop() {
  local p deadline=$((SECONDS + 5))
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for p in "$@"; do
    while kill -0 "$p" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  forget "$@"
}
# A PID that has exited leaves $pids at once, so the cleanup never signals a reused PID.
forget() {
  local p q keep=()
  for q in "${pids[@]}"; do
    for p in "$@"; do [ "$q" != "$p" ] || continue 2; done
    keep+=("$q")
  done
  pids=("${keep[@]}")
}
cleanup() {
  [ ${#pids[@]} -eq 0 ] || stop "${pids[@]}"
  if [ "$failed_any" -eq 0 ] && [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "dial-compare: logs kept in $work" >&2; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Ports: random even bases from 15000-19999 with the next three ports free too (SIPp's media port
# and its neighbours), never handed out twice in one run.
taken=" "
# free_port VAR: sets VAR (not named port or used) to the port.
free_port() {
  local port used
  used=" $(ss -Hantu | awk '{ n = split($5, a, ":"); print a[n] }' | tr '\n' ' ') "
  for _ in $(seq 500); do
    port=$((15000 + RANDOM % 1250 * 4))
    case "$taken$used" in *" $port "* | *" $((port + 1)) "* | *" $((port + 2)) "* | *" $((port + 3)) "*) continue ;; esac
    taken="$taken$port "
    printf -v "$1" %d "$port"
    return
  done
  echo "dial-compare: no free port found" >&2
  exit 2
}

# The system's processes: Kamailio's main process and its children, or dialplane's process.
sut_pids() { echo "$sut_pid" $(pgrep -P "$sut_pid" || true); }

cpu_ticks() {
  local p total=0 t
  for p in $(sut_pids); do
    [ -r "/proc/$p/stat" ] || continue
    # Fields after "(comm) ": utime and stime are the 12th and 13th.
    t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{ print $12 + $13 }')
    total=$((total + t))
  done
  echo "$total"
}

# "NAME TICKS" per thread name (Kamailio: per process), summed: where the time goes.
ticks_by_name() {
  local t
  for t in $(for p in $(sut_pids); do echo /proc/"$p"/task/*; done); do
    if [ -r "$t/stat" ]; then
      echo "$(tr ' ' _ <"$t/comm") $(sed 's/.*) //' "$t/stat" | awk '{ print $12 + $13 }')"
    fi
  done | awk '{ n[$1] += $2 } END { for (k in n) print k, n[k] }' | sort
}

# "BUSY TOTAL" jiffies of the whole machine (every CPU), from /proc/stat.
host_jiffies() {
  awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}

# "PSS_KiB RSS_KiB" summed over the system's processes.
mem_kib() {
  local p pss=0 rss=0
  for p in $(sut_pids); do
    [ -r "/proc/$p/status" ] || continue
    pss=$((pss + $(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup")))
    rss=$((rss + $(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status")))
  done
  echo "$pss $rss"
}

# Up once an OPTIONS to 127.0.0.1:$1 gets any answer (bounded: 10 s, or until $sut_pid exits).
wait_sip() {
  local port=$1 fd reply deadline=$((SECONDS + 10))
  exec {fd}<>"/dev/udp/127.0.0.1/$port"
  # One datagram: cat writes the file in one go (bash's printf would send line by line).
  printf 'OPTIONS sip:ping@127.0.0.1:%s SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK-up%s\r\nFrom: <sip:up@127.0.0.1>;tag=up\r\nTo: <sip:ping@127.0.0.1>\r\nCall-ID: up-%s\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n' \
    "$port" "$RANDOM" "$RANDOM" >"$work/options"
  while [ $SECONDS -lt $deadline ] && kill -0 "$sut_pid" 2>/dev/null; do
    cat "$work/options" >&"$fd" 2>/dev/null || true
    # head, not read: bash reads a socket a byte at a time, and each read takes a whole datagram.
    reply=$(timeout 0.3 head -c 7 <&"$fd" 2>/dev/null || true)
    if [ "$reply" = SIP/2.0 ]; then
      exec {fd}>&-
      return 0
    fi
    sleep 0.1
  done
  exec {fd}>&-
  return 1
}

# start_sut SYSTEM RUN_DIR: starts it on a free port ($sut_port), sets $sut_pid; 1 if it did not
# come up (the reason on stderr).
start_sut() {
  local system=$1 run=$2
  free_port sut_port
  free_port callee_port
  free_port ringer_port
  case $system in
    kamailio)
      sed -e "s/@SIP_PORT@/$sut_port/; s/@CALLEE_PORT@/$callee_port/; s/@RINGER_PORT@/$ringer_port/" \
        -e "s/@CHILDREN@/$kam_children/" "$here/kamailio.cfg" >"$run/kamailio.cfg"
      kamailio -DD -E -m 256 -M 8 ${kam_opts[@]+"${kam_opts[@]}"} -f "$run/kamailio.cfg" -P "$run/kamailio.pid" -w "$run" -Y "$run" \
        >"$run/sut.log" 2>&1 &
      sut_pid=$!
      pids+=("$sut_pid")
      if ! wait_sip "$sut_port"; then
        echo "dial-compare: kamailio did not answer on $sut_port; its log:" >&2
        tail -n 20 "$run/sut.log" >&2
        return 1
      fi
      ;;
    dialplane)
      # answerOnBridge true: the caller gets 180 while the forks ring and its 200 OK only when the
      # callee answers, as through the proxy. With false the caller would be answered before the
      # outdial and its 200 ms hold would start before the callee is even reached.
      sed -e "s/@CALLEE_PORT@/$callee_port/; s/@RINGER_PORT@/$ringer_port/" \
        "$here/two-targets.json" >"$run/two-targets.json"
      RUST_LOG=${RUST_LOG:-warn} "$bin" serve --sip "127.0.0.1:$sut_port" --interface 127.0.0.1 \
        --port-min "$rtp_min" --port-max "$rtp_max" --num-threads 1 --http "127.0.0.1:$http_port" \
        --app "$run/two-targets.json" >"$run/sut.out" 2>"$run/sut.log" &
      sut_pid=$!
      pids+=("$sut_pid")
      local deadline=$((SECONDS + 20))
      until grep -q '^ready ' "$run/sut.out" 2>/dev/null; do
        if ! kill -0 "$sut_pid" 2>/dev/null || [ $SECONDS -ge $deadline ]; then
          echo "dial-compare: dialplane serve did not print 'ready'; its stderr:" >&2
          tail -n 20 "$run/sut.log" >&2
          return 1
        fi
        sleep 0.1
      done
      ;;
  esac
  sleep 1 # let every worker settle before the idle readings
}

stop_sut() { stop $(sut_pids); }

# timed NAME RUN_DIR command...: runs it in RUN_DIR in the background; its PID goes to NAME.pid,
# its CPU (the wrapper's children times) to NAME.times, its exit code is the wrapper's. Sets $w.
timed() {
  local name=$1 run=$2
  shift 2
  (
    cd "$run"
    "$@" >"$name.out" 2>&1 &
    echo $! >"$name.pid"
    rc=0
    wait $! || rc=$?
    times >"$name.times"
    exit $rc
  ) &
  w=$!
  pids+=("$w")
  local deadline=$((SECONDS + 5))
  until [ -s "$run/$name.pid" ] || [ $SECONDS -ge $deadline ]; do sleep 0.05; done
  pids+=("$(cat "$run/$name.pid")")
}

# CPU seconds of a finished timed NAME (the second line of `times`: children's user, system).
times_secs() {
  [ -s "$1.times" ] || { echo 0; return; }
  sed -n 2p "$1.times" | awk '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, ms, /[ms]/); t += ms[1] * 60 + ms[2] }
    print t
  }'
}

# A column of the last line of a SIPp -trace_stat file.
stat_col() {
  awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
    { v = $c } END { print (v == "" ? 0 : v) + 0 }' "$1"
}

# The caller's mean INVITE → 200 time in ms, from SIPp's "HH:MM:SS:uuuuuu" (the callee answers
# at 50 ms: anything above that is the system's doing, or the machine's).
setup_ms() {
  awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "ResponseTime1(C)") c = i; next }
    { v = $c } END { split(v, t, ":"); printf "%.0f", t[1] * 3600e3 + t[2] * 60e3 + t[3] * 1e3 + t[4] / 1e3 }' "$1"
}

# load SYSTEM RUN_DIR RATE CALLS HOLD_MS: the callees and the caller against the running system;
# sets $ok $failed $sipp_pct (caller CPU, % of one core) $uas_pct (both callees) $cps (achieved)
# $setup (mean ms from INVITE to 200) $uas_failed (the callees' failed calls: a late retransmission
# reaching a callee after its call ended counts there as one).
# With $on_plateau set, that command runs while all the calls are up.
load() {
  local system=$1 run=$2 rate=$3 calls=$4 hold=$5
  local common=(-i 127.0.0.1 -nostdin -trace_stat -fd 1 -trace_err -timeout_error)
  local recv=$((hold + 10000)) mp1 mp2 mp3 p
  free_port mp1
  free_port mp2
  free_port mp3
  local t0 t1 w_callee w_ringer w_caller rc=0
  timed callee "$run" sipp -sf "$here/callee.xml" -p "$callee_port" -mp "$mp1" -m "$calls" \
    -recv_timeout "$recv" -stf callee.csv -error_file callee.err "${common[@]}"
  w_callee=$w
  timed ringer "$run" sipp -sf "$here/ringer.xml" -p "$ringer_port" -mp "$mp2" -m "$calls" \
    -recv_timeout "$recv" -stf ringer.csv -error_file ringer.err "${common[@]}"
  w_ringer=$w
  sleep 0.5
  t0=$(date +%s.%N)
  free_port p
  timed caller "$run" sipp "127.0.0.1:$sut_port" -sf "$here/caller.xml" -s callee -p "$p" \
    -mp "$mp3" -r "$rate" -m "$calls" -l "$calls" -d "$hold" -recv_timeout 10000 \
    -timeout $((calls / rate + hold / 1000 + 60)) -stf caller.csv -error_file caller.err "${common[@]}"
  w_caller=$w
  if [ -n "${on_plateau:-}" ]; then
    # Halfway between placing the last call and the first call hanging up.
    sleep "$(awk -v c="$calls" -v r="$rate" -v h="$hold" 'BEGIN { print (c / r + h / 1000) / 2 }')"
    $on_plateau
  fi
  wait "$w_caller" || rc=$?
  t1=$(date +%s.%N)
  # The callees finish with the caller's last call; a callee still waiting lost some calls.
  local deadline=$((SECONDS + 15))
  while { kill -0 "$w_callee" || kill -0 "$w_ringer"; } 2>/dev/null && [ $SECONDS -lt $deadline ]; do
    sleep 0.1
  done
  # Stop SIPp itself, so that its wrapper still writes its CPU times.
  stop "$(cat "$run/callee.pid")" "$(cat "$run/ringer.pid")"
  wait "$w_callee" "$w_ringer" 2>/dev/null || true
  forget "$w_callee" "$w_ringer" "$w_caller" "$(cat "$run/caller.pid")"
  ok=$(stat_col "$run/caller.csv" 'SuccessfulCall(C)')
  failed=$(stat_col "$run/caller.csv" 'FailedCall(C)')
  cps=$(stat_col "$run/caller.csv" 'CallRate(C)')
  setup=$(setup_ms "$run/caller.csv")
  uas_failed=$(($(stat_col "$run/callee.csv" 'FailedCall(C)') + $(stat_col "$run/ringer.csv" 'FailedCall(C)')))
  sipp_pct=$(awk -v c="$(times_secs "$run/caller")" -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", 100 * c / (b - a) }')
  uas_pct=$(awk -v c="$(times_secs "$run/callee")" -v d="$(times_secs "$run/ringer")" -v a="$t0" -v b="$t1" \
    'BEGIN { printf "%.0f", 100 * (c + d) / (b - a) }')
  if [ "$rc" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$uas_failed" -ne 0 ] || [ "$ok" -ne "$calls" ]; then
    failed_any=1
    echo "dial-compare: $system at $rate/s: caller exit $rc, $ok/$calls ok, $failed failed" \
      "(callees: $uas_failed failed); first SIPp errors:" >&2
    local f
    for f in caller callee ringer; do
      # SIPp's error log runs its events together on one line: one per line, each cut short.
      if [ -s "$run/$f.err" ]; then
        sed -E 's/(20[0-9]{2}-[0-9]{2}-[0-9]{2}\t)/\n\1/g' "$run/$f.err" |
          grep -v -e '^$' -e 'The following events' | head -n 5 | cut -c1-240 | sed "s/^/  $f: /" >&2 || true
      fi
      grep -i -m 3 -E 'fatal|unable|cannot' "$run/$f.out" 2>/dev/null | sed "s/^/  $f: /" >&2 || true
    done
    tail -n 5 "$run/sut.log" | sed 's/^/  sut: /' >&2
  fi
  # A caller that never finished its calls counts them as failed here.
  failed=$((calls - ok > failed ? calls - ok : failed))
}

# One CPU run of SYSTEM at RATE calls/s for $duration s: a results line
# "cpu RATE SYSTEM OK FAILED US_PER_CALL SIPP_CALLER_PCT SIPP_CALLEES_PCT ACHIEVED_CPS HOST_BUSY_PCT
# SETUP_MS CALLEES_FAILED"
# (the whole machine's busy share of all its CPUs: others' work on a shared machine shows there).
cpu_run() {
  local system=$1 rate=$2 run=$work/$1-$2 calls=$(($2 * duration)) before after
  mkdir -p "$run"
  free_port http_port
  echo "== $system, $rate calls/s for ${duration} s" >&2
  if ! start_sut "$system" "$run"; then
    failed_any=1
    echo "cpu $rate $system 0 $calls - - - - - - -" >>"$results"
    stop_sut
    return
  fi
  before=$(cpu_ticks)
  ticks_by_name >"$run/ticks.before"
  read -r hb0 ht0 <<<"$(host_jiffies)"
  on_plateau="" load "$system" "$run" "$rate" "$calls" "$hold_ms"
  read -r hb1 ht1 <<<"$(host_jiffies)"
  after=$(cpu_ticks)
  ticks_by_name >"$run/ticks.after"
  join -a 2 -e 0 -o 0,1.2,2.2 "$run/ticks.before" "$run/ticks.after" |
    awk -v hz="$tck" '{ printf " %s=%.2fs", $1, ($3 - $2) / hz }' | sed "s/^/  $system CPU by thread:/;s/\$/\n/" >&2
  stop_sut
  awk -v r="$rate" -v s="$system" -v ok="$ok" -v f="$failed" -v t=$((after - before)) -v hz="$tck" \
    -v sp="$sipp_pct" -v up="$uas_pct" -v cps="$cps" -v hb=$((hb1 - hb0)) -v ht=$((ht1 - ht0)) \
    -v setup="$setup" -v uf="$uas_failed" \
    'BEGIN { printf "cpu %s %s %d %d %s %s %s %s %.0f %s %d\n", r, s, ok, f, (ok > 0 ? sprintf("%.1f", t / hz * 1e6 / ok) : "-"), sp, up, cps, 100 * hb / ht, setup, uf }' \
    >>"$results"
  tail -n 1 "$results" >&2
}

# The memory run of SYSTEM: a results line
# "mem SYSTEM CALLS_UP IDLE_PSS PLATEAU_PSS PSS_PER_1000 IDLE_RSS PLATEAU_RSS FAILED" (KiB).
sample_plateau() {
  plateau=$(mem_kib)
  up=$(stat_col "$run/caller.csv" 'CurrentCall')
}
mem_run() {
  local system=$1 run=$work/$1-mem idle
  mkdir -p "$run"
  free_port http_port
  echo "== $system, memory: $mem_calls calls at $mem_rate/s held ${mem_hold} s" >&2
  if ! start_sut "$system" "$run"; then
    failed_any=1
    echo "mem $system 0 - - - - - $mem_calls" >>"$results"
    stop_sut
    return
  fi
  idle=$(mem_kib)
  plateau="0 0" up=0
  on_plateau=sample_plateau load "$system" "$run" "$mem_rate" "$mem_calls" $((mem_hold * 1000))
  stop_sut
  read -r ipss irss <<<"$idle"
  read -r ppss prss <<<"$plateau"
  awk -v s="$system" -v up="$up" -v ip="$ipss" -v pp="$ppss" -v ir="$irss" -v pr="$prss" -v f="$failed" \
    'BEGIN { printf "mem %s %d %d %d %s %d %d %d\n", s, up, ip, pp, (up > 0 ? sprintf("%.0f", (pp - ip) * 1000 / up) : "-"), ir, pr, f }' \
    >>"$results"
  tail -n 1 "$results" >&2
}

if [ $((mem_hold * mem_rate)) -le $((mem_calls + 2 * mem_rate)) ]; then
  echo "dial-compare: MEM_HOLD must outlast placing MEM_CALLS at MEM_RATE by 2 s for a plateau" >&2
  exit 2
fi
for rate in $rates; do
  for system in $systems; do cpu_run "$system" "$rate"; done
done
for system in $systems; do mem_run "$system"; done

echo
echo "dial: caller → system → 2 forks (one answers at 50 ms, one rings until cancelled);" \
  "hold ${hold_ms} ms, ${duration} s per rate; no RTP"
awk '
  BEGIN { printf "%-6s %-10s %9s %7s %15s %12s %11s %9s %12s %13s %10s\n", "rate", "system", "calls ok", "failed", "callees failed", "CPU us/call", "x kamailio", "setup ms", "sipp caller", "sipp callees", "host busy" }
  $1 == "cpu" && $3 == "kamailio" { kam[$2] = $6 }
  $1 == "cpu" { line[++n] = $0 }
  END {
    for (i = 1; i <= n; i++) {
      split(line[i], f, " ")
      ratio = (f[6] != "-" && kam[f[2]] > 0) ? sprintf("%.2f", f[6] / kam[f[2]]) : "-"
      printf "%-6s %-10s %9s %7s %15s %12s %11s %9s %11s%% %12s%% %9s%%\n", f[2], f[3], f[4], f[5], f[12], f[6], ratio, f[11], f[7], f[8], f[10]
    }
  }' "$results"
echo
echo "memory: ${mem_calls} calls at ${mem_rate}/s held ${mem_hold} s; PSS summed over the system's processes (KiB)"
awk '
  BEGIN { printf "%-10s %9s %10s %12s %14s %10s %12s %7s\n", "system", "calls up", "idle PSS", "plateau PSS", "KiB/1000 calls", "idle RSS", "plateau RSS", "failed" }
  $1 == "mem" { printf "%-10s %9s %10s %12s %14s %10s %12s %7s\n", $2, $3, $4, $5, $6, $7, $8, $9 }' "$results"
[ "$failed_any" -eq 0 ] || exit 1
