#!/usr/bin/env bash
# scrapecost.sh BIN: what monitoring costs a loaded appliance (docs/METRICS.md, "Cost of monitoring").
#
# The appliance (BIN serve, proxy mode, software key, one loop) runs pinned to CPU 0; the load generator
# (shakebench: generator and sink in one process) and the HTTP clients run on CPU 1.
#   1. Idle: appliance CPU over N back-to-back GET /metrics (then /status), minus its idle baseline, per request.
#   2. Under RATE calls/s: PHASE-long runs alternating no scraping and GET /metrics every 15 s (ROUNDS times),
#      then GET /status every 5 s, and /metrics and /status at 20/s (a stress bound); per phase: loss, latency
#      percentiles (kernel timestamps, shakebench) and the appliance's CPU per call.
# Needs root (taskset), curl, python3, two cores. Run it under flock /work/helpers/bench.lock on shared machines.
# Env: RATE (20000), PHASE (20s), ROUNDS (6), N (1000), OUT (temp dir), SHAKEBENCH (go run ./cmd/shakebench).
set -euo pipefail
BIN=$(readlink -f "${1:?usage: scrapecost.sh bin/appliance}")
RATE=${RATE:-20000}; PHASE=${PHASE:-20s}; ROUNDS=${ROUNDS:-6}; N=${N:-1000}
OUT=${OUT:-$(mktemp -d /tmp/shakenline-scrapecost.XXXXXX)}
SB=${SHAKEBENCH:-}
if [ -z "$SB" ]; then go build -o "$OUT/shakebench" ./cmd/shakebench; SB=$OUT/shakebench; fi
LO=127.0.19.1; API=$LO:18081
"$BIN" lab-pki --out "$OUT/pki" >/dev/null
taskset -c 0 "$BIN" serve --sip $LO:5060 --next-hop $LO:5070 --key "$OUT/pki/sp.key" --cert "$OUT/pki/sp.pem" \
  --x5u https://cert.example.org/sp.pem --attest A --lab --api $API --loops 1 2>"$OUT/appliance.log" &
APID=$!
trap 'kill $APID 2>/dev/null || true; wait 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -fs "http://$API/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TCK=$(getconf CLK_TCK)
cpu() { awk '{print $14+$15}' "/proc/$APID/stat"; }
now() { date +%s.%N; }

idle() { # PATH: N requests over one keep-alive connection (one curl), CPU per request above the idle baseline
  local b0 b1 bt0 bt1 c0 c1 t0 t1 urls=()
  for _ in $(seq "$N"); do urls+=(-o /dev/null "http://$API$1"); done
  b0=$(cpu); bt0=$(now); sleep 10; b1=$(cpu); bt1=$(now)
  c0=$(cpu); t0=$(now); taskset -c 1 curl -fs "${urls[@]}"; c1=$(cpu); t1=$(now)
  python3 -c "b=($b1-$b0)/$TCK/($bt1-$bt0); el=$t1-$t0; c=($c1-$c0)/$TCK
print('idle GET $1: %d requests in %.2f s; appliance %.3f CPU-s, idle baseline %.4f CPU-s/s: %.0f us CPU per request' % ($N, el, c, b, 1e6*(c-b*el)/$N))"
}
idle /metrics
idle /status

poll() { # PATH INTERVAL COUNT
  for _ in $(seq "$3"); do taskset -c 1 curl -fs -o /dev/null "http://$API$1" || true; sleep "$2"; done
}
phase() { # NAME [PATH INTERVAL COUNT]
  local name=$1 pp="" c0 c1 t0 t1
  if [ $# -gt 1 ]; then poll "$2" "$3" "$4" & pp=$!; fi
  c0=$(cpu); t0=$(now)
  taskset -c 1 $SB run --target $LO:5060 --sink $LO:5070 --rate "$RATE" --duration "$PHASE" --json >"$OUT/$name.json" 2>/dev/null || true
  c1=$(cpu); t1=$(now)
  if [ -n "$pp" ]; then kill "$pp" 2>/dev/null || true; wait "$pp" 2>/dev/null || true; fi
  python3 - "$OUT/$name.json" "$name" "$c0" "$c1" "$t0" "$t1" "$TCK" <<'PY'
import json, sys
r = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
c = (float(sys.argv[4]) - float(sys.argv[3])) / float(sys.argv[7]); el = float(sys.argv[6]) - float(sys.argv[5])
l = r["latency"]
print(f'{sys.argv[2]:<14} achieved {r["achieved_rate"]:6.0f}/s lost {r["loss_pct"]:6.3f}% p50 {l["p50_us"]:8.1f} us '
      f'p99 {l["p99_us"]:9.1f} us p99.9 {l["p99_9_us"]:9.1f} us; appliance {c/el:.3f} CPU-s/s, {1e6*c/max(r["received"],1):.2f} us/call')
PY
}
secs=${PHASE%s}
for round in $(seq "$ROUNDS"); do
  phase "none-$round"
  phase "metrics15s-$round" /metrics 15 $(( (secs + 14) / 15 ))
done
phase status5s /status 5 $(( secs / 5 ))
phase metrics20hz /metrics 0.05 $(( secs * 20 ))
phase status20hz /status 0.05 $(( secs * 20 ))
phase none-last
echo "raw results: $OUT"
