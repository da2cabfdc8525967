#!/usr/bin/env bash
# make bench: the side-by-side benchmark of issue 8 (bench/README.md).
#   bash bench/run.sh [bin/appliance]           full run, about 14 min
#   QUICK=1 bash bench/run.sh [bin/appliance]   short run, < 2 min
# Full runs write bench/results/<UTC date-time>/ (raw data, git-ignored),
# bench/results/latest.md (the report, committed) and the run's row in
# bench/results/history.md (committed); quick runs write
# bench/results/tmp/quick/ (git-ignored) only.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=$(readlink -f "${1:-$ROOT/bin/appliance}")
GO=${GO:-go}
GEN_CPU=0

[ -x "$BIN" ] || { echo "bench: $BIN not built (make build)" >&2; exit 1; }
# Plots need gnuplot (Debian package gnuplot-nox).
if ! command -v gnuplot >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench: installing gnuplot-nox"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends gnuplot-nox >/dev/null ||
      echo "bench: gnuplot-nox not installed; the report will have no plots" >&2
  else
    echo "bench: gnuplot missing and not root; the report will have no plots" >&2
  fi
fi
for t in taskset openssl kamailio softhsm2-util; do
  command -v "$t" >/dev/null || { echo "bench: $t missing (make deps)" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then echo "bench: needs 2 cores (generator and system under test apart)" >&2; exit 1; fi

cd "$ROOT"
mkdir -p bin
"$GO" build -o bin/shakecompare ./cmd/shakecompare

if [ "${QUICK:-}" = 1 ] || [ "${QUICK:-}" = true ]; then
  OUT=bench/results/tmp/quick
  rm -rf "$OUT"
  # The generator process runs on CPU $GEN_CPU; it pins what it starts.
  taskset -c "$GEN_CPU" bin/shakecompare run --quick --appliance "$BIN" --out "$OUT"
else
  OUT=bench/results/$(date -u +%Y-%m-%d-%H%M)
  taskset -c "$GEN_CPU" bin/shakecompare run --appliance "$BIN" --out "$OUT" \
    --latest bench/results/latest.md --history bench/results/history.md
fi
echo
sed -n '/^| setup/,/^## Machine/p' "$OUT/README.md" | sed '$d'
echo "bench: report in $OUT/README.md"
