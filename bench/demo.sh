#!/usr/bin/env bash
# make demo: lab PKI + softhsm2 token, the appliance in proxy mode on
# loopback, SIPp UAC -> appliance -> SIPp UAS, one decoded signed INVITE, its
# verification, the calls per second achieved, a second appliance that
# obtains its certificate through ACME from a lab STI-PA/STI-CA and renews it
# once (30 s certificates), and a screenshot of the status page (path
# printed; DEMO_STATUS_PNG sets it). Cleans up after itself.
set -euo pipefail
BIN=$(readlink -f "${1:-bin/appliance}")
HERE=$(cd "$(dirname "$0")" && pwd)
CALLS=${DEMO_CALLS:-12500}
RATE=${DEMO_RATE:-2500}
T=$(mktemp -d /tmp/shakenline-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT INT TERM
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
wait_port() { # wait_port PROTO PORT
  for _ in $(seq 100); do ss -Hln"$1" "sport = :$2" | grep -q . && return 0; sleep 0.1; done
  echo "nothing listens on $1 port $2" >&2; return 1
}

step "lab PKI"
"$BIN" lab-pki --out "$T/pki"

step "softhsm2 token with the provider key"
export SOFTHSM2_CONF="$T/softhsm2.conf"
mkdir -p "$T/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$T/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label shakenline-demo --pin 123456 --so-pin 654321 >/dev/null
softhsm2-util --import "$T/pki/sp.key" --token shakenline-demo --label sp --id 01 --pin 123456 >/dev/null
printf '123456' >"$T/pin" && chmod 600 "$T/pin"
URI="pkcs11:token=shakenline-demo;object=sp;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:$T/pin"
echo "$URI"

step "x5u server (http, lab) and appliance (proxy mode, key in softhsm2)"
X5U_PORT=18080 SIP_PORT=15060 UAS_PORT=15070 UAC_PORT=15080 API_PORT=18081
python3 -m http.server --bind 127.0.0.1 --directory "$T/pki" "$X5U_PORT" >/dev/null 2>&1 &
pids+=($!)
"$BIN" serve --sip 127.0.0.1:$SIP_PORT --next-hop 127.0.0.1:$UAS_PORT --pkcs11 "$URI" --cert "$T/pki/sp.pem" \
  --x5u "http://127.0.0.1:$X5U_PORT/sp.pem" --attest A --lab --api 127.0.0.1:$API_PORT 2>"$T/appliance.log" &
APPLIANCE_PID=$!
pids+=($APPLIANCE_PID)
wait_port u $SIP_PORT
wait_port t $API_PORT
wait_port t $X5U_PORT

step "one call through it, SIPp UAS logs what arrives"
sipp -sf "$HERE/sipp/uas.xml" -i 127.0.0.1 -p $UAS_PORT -nostdin -trace_msg -message_file "$T/uas.log" \
  -timeout 60s >/dev/null 2>&1 &
uas=$!
pids+=($uas)
wait_port u $UAS_PORT
sipp -sf "$HERE/sipp/uac_invite_only.xml" -inf "$HERE/sipp/numbers.csv" -i 127.0.0.1 -p $UAC_PORT -nostdin \
  -m 1 -timeout 15s -timeout_error 127.0.0.1:$SIP_PORT >/dev/null 2>&1
kill "$uas" 2>/dev/null || true
wait "$uas" 2>/dev/null || true
INVITE=$(awk '/^INVITE /{on=1} on{print} on&&/^\r?$/{exit}' "$T/uas.log" | tr -d '\r')
echo "$INVITE"
ID=$(printf '%s\n' "$INVITE" | sed -n 's/^Identity: //p' | head -1)
[ -n "$ID" ] || { echo "no Identity header arrived" >&2; cat "$T/appliance.log" >&2; exit 1; }

step "the Identity header decoded"
python3 - "$ID" <<'PY'
import base64, json, sys
jws = sys.argv[1].split(';')[0]
h, p, s = jws.split('.')
dec = lambda x: json.loads(base64.urlsafe_b64decode(x + '=' * (-len(x) % 4)))
print('header: ', json.dumps(dec(h)))
print('payload:', json.dumps(dec(p)))
print('signature: %d bytes (ES256 r||s)' % len(base64.urlsafe_b64decode(s + '=' * (-len(s) % 4))))
PY

step "verification (x5u fetched over http, chain to the lab root, TNAuthList, freshness, signature)"
printf '%s\n' "$INVITE" | "$BIN" verify --trust lab="$T/pki/root.pem" --lab || true

step "load: SIPp UAC at up to $RATE calls/s, $CALLS calls"
sipp -sf "$HERE/sipp/uas.xml" -i 127.0.0.1 -p $UAS_PORT -nostdin -timeout 120s >/dev/null 2>&1 &
uas=$!
pids+=($uas)
wait_port u $UAS_PORT
signed() { curl -fsS "http://127.0.0.1:$API_PORT/metrics" 2>/dev/null | awk '/^shakenline_calls_signed_total/{s+=$2} END{print s+0}'; }
cpu() { awk '{print $14+$15}' "/proc/$APPLIANCE_PID/stat"; } # utime+stime, clock ticks
before=$(signed)
cpu0=$(cpu)
t0=$(date +%s.%N)
sipp -sf "$HERE/sipp/uac_invite_only.xml" -inf "$HERE/sipp/numbers.csv" -i 127.0.0.1 -p $UAC_PORT -nostdin \
  -r "$RATE" -m "$CALLS" -l 2000 -timeout 60s -trace_stat -stf "$T/uac_stat.csv" -fd 1 \
  127.0.0.1:$SIP_PORT >/dev/null 2>&1 || true
t1=$(date +%s.%N)
after=$(signed)
cpu1=$(cpu)
python3 - "$before" "$after" "$t0" "$t1" "$T/uac_stat.csv" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" <<'PY'
import csv, sys
b, a, t0, t1, stat = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
cpu = (int(sys.argv[7]) - int(sys.argv[6])) / int(sys.argv[8])
rows = list(csv.reader(open(stat), delimiter=';'))
hdr, last = rows[0], rows[-1]
get = lambda k: last[hdr.index(k)]
ok, failed, el = int(get('SuccessfulCall(C)')), int(get('FailedCall(C)')), t1 - t0
print(f"SIPp: {ok} calls completed, {failed} failed, in {el:.2f}s: {ok/el:.0f} completed calls/s")
print(f"appliance: {a-b} PASSporTs signed ({(a-b)/el:.0f}/s; a retransmitted INVITE is signed again), "
      f"{cpu:.2f} CPU-seconds, {1e6*cpu/max(a-b,1):.0f} us CPU per signature")
print("(SIPp UAC + UAS + appliance + softhsm2 share this machine's cores; make bench measures without SIPp)")
PY
grep -E '^shakenline_calls_(bypassed|unsigned)_total' <(curl -fsS "http://127.0.0.1:$API_PORT/metrics") | awk '$2>0' || true
step "certificate through ACME: lab STI-PA + STI-CA (lab-sti, 30 s certificates), one renewal"
STI_PORT=18443 ACME_SIP=15062 ACME_API=18083 REPO_PORT=18085
"$BIN" lab-sti --listen 127.0.0.1:$STI_PORT --out "$T/sti" --lifetime 30s >"$T/lab-sti.log" 2>&1 &
pids+=($!)
wait_port t $STI_PORT
cat >"$T/acme.yaml" <<EOF
sip: 127.0.0.1:$ACME_SIP
next_hop: 127.0.0.1:$UAS_PORT
pkcs11: "$URI"
api: 127.0.0.1:$ACME_API
lab: true
trust: {lab: $T/sti/root.pem}
acme:                       # docs/KEYS.md, "Certificates through ACME"
  directory: https://127.0.0.1:$STI_PORT/acme/directory
  spc: "1234"
  spc_token: {api: "https://127.0.0.1:$STI_PORT/sti-pa", credentials: $T/sti/stipa-1234.json}
  tls_roots: $T/sti/tls-root.pem
  publish: {url: "http://127.0.0.1:$REPO_PORT/x5u/", listen: "127.0.0.1:$REPO_PORT"}
  state_dir: $T/acme
  unready_before: 3s
EOF
sed 's/^/  /' "$T/acme.yaml"
"$BIN" serve --config "$T/acme.yaml" 2>"$T/acme.log" &
pids+=($!)
wait_port u $ACME_SIP # serve opens SIP once it has its first certificate (its key generated in the token)
acme_show() {
  grep -E 'certificate obtained, validated and published|msg="certificate in use"' "$T/acme.log" | tail -2 |
    sed -E 's/^time=([^ ]+) level=[A-Z]+ /\1 /'
  curl -fsS "http://127.0.0.1:$ACME_API/metrics" |
    awk -v now="$(date +%s)" '/^shakenline_(cert_not_after_seconds|acme_next_attempt_timestamp_seconds) / { printf "%s %s (in %+ds)\n", $1, $2, $2-now }
      /^shakenline_acme_renewals_total/ && $2 > 0 { print }'
}
acme_show
echo "... waiting for the renewal, due when a third of the lifetime is left (about 20 s)"
for _ in $(seq 400); do [ "$(grep -c 'msg="certificate in use"' "$T/acme.log")" -ge 2 ] && break; sleep 0.1; done
acme_show

step "status page (GET /status on the API) in headless Chromium"
PNG=${DEMO_STATUS_PNG:-/tmp/shakenline-demo-status.png}
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$T/chromium" --window-size=1400,1500 --hide-scrollbars \
  --screenshot="$PNG" "http://127.0.0.1:$API_PORT/status" >/dev/null 2>&1 && echo "status page screenshot: $PNG"
step "done; cleaning up"
