#!/bin/bash
# Glance-vs-Mosaic benchmark (make bench-glance): in one run, start the real
# Glance (../shared/glance/real-glance/start.sh) and a Mosaic node, measure
# both with the same script (../shared/glance/real-glance/bench.sh: wrk for
# creates, shows and lists), and print the ratios.
#
# Usage: glance-vs-mosaic.sh [OUTDIR]
# Env: MOSAIC_BIN (default bin/mosaic), SHARED (default: shared/ found
#      beside or above the repository), DURATION (wrk seconds per test, 10),
#      GLANCE_IMAGES (list size for Glance, 1000), MOSAIC_IMAGES (10000).
# Needs wrk, curl, python3 and the glance-api package (see .ci/run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:-$ROOT/bench-out/glance-vs-mosaic}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BIN=${MOSAIC_BIN:-$ROOT/bin/mosaic}
DURATION=${DURATION:-10}
GLANCE_IMAGES=${GLANCE_IMAGES:-1000}
MOSAIC_IMAGES=${MOSAIC_IMAGES:-10000}
if [ -z "${SHARED:-}" ]; then
  d=$ROOT
  while [ "$d" != / ] && [ ! -f "$d/shared/glance/real-glance/bench.sh" ]; do d=$(dirname "$d"); done
  SHARED=$d/shared
fi
[ -f "$SHARED/glance/real-glance/bench.sh" ] || { echo "shared/glance/real-glance not found (set SHARED)" >&2; exit 1; }
for t in wrk curl python3 glance-api; do
  command -v "$t" >/dev/null || { echo "$t is not installed (see .ci/run)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "$BIN missing: run make build" >&2; exit 1; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d)
GW=$WORK/glance
MOSAIC_PID=""
cleanup() {
  bash "$SHARED/glance/real-glance/stop.sh" "$GW" >/dev/null 2>&1 || true
  if [ -n "$MOSAIC_PID" ]; then kill "$MOSAIC_PID" 2>/dev/null; wait "$MOSAIC_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "# glance-vs-mosaic $(date -u +%FT%TZ): $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg) (machine shared with other work: compare ratios, not absolutes)"

# --- the real Glance ----------------------------------------------------------
GPORT=$(free_port)
GPID=$(bash "$SHARED/glance/real-glance/start.sh" "$GW" "$GPORT" 2>/dev/null | tail -1)
echo "## Glance 25.1 (pid $GPID, port $GPORT), $GLANCE_IMAGES images for the list test"
bash "$SHARED/glance/real-glance/bench.sh" "http://127.0.0.1:$GPORT" x --only post,list --duration "$DURATION" \
  --list-images "$GLANCE_IMAGES" --pid "$GPID" --out "$OUT/glance" > "$OUT/glance.log" 2>&1
grep RESULT "$OUT/glance/summary.txt"
bash "$SHARED/glance/real-glance/stop.sh" "$GW" >/dev/null 2>&1

# --- Mosaic ---------------------------------------------------------------------
MPORT=$(free_port); RPORT=$(free_port)
"$BIN" serve --data-dir "$WORK/mosaic" --api-addr "127.0.0.1:$MPORT" --raft-addr "127.0.0.1:$RPORT" \
  --log-level warn > "$OUT/mosaic-server.log" 2>&1 &
MOSAIC_PID=$!
for _ in $(seq 1 200); do curl -sf -o /dev/null "http://127.0.0.1:$MPORT/versions" && break; sleep 0.1; done
echo "## Mosaic (pid $MOSAIC_PID, port $MPORT), $MOSAIC_IMAGES images for the list test"
bash "$SHARED/glance/real-glance/bench.sh" "http://127.0.0.1:$MPORT" x --only post,list --duration "$DURATION" \
  --list-images "$MOSAIC_IMAGES" --pid "$MOSAIC_PID" --out "$OUT/mosaic" > "$OUT/mosaic.log" 2>&1
grep RESULT "$OUT/mosaic/summary.txt"

# --- ratios ---------------------------------------------------------------------
python3 - "$OUT/glance/summary.txt" "$OUT/mosaic/summary.txt" "$GLANCE_IMAGES" "$MOSAIC_IMAGES" <<'PY'
import re, sys
def load(p):
    out = {}
    for line in open(p):
        m = re.match(r'RESULT (\S+)\s+req/s\s+([\d.]+)\s+p50\s+([\d.]+) ms\s+p90\s+([\d.]+) ms\s+p99\s+([\d.]+) ms', line)
        if m:
            cpu = re.search(r'server-CPU ([\d.]+) ms/req', line)
            out[m.group(1)] = tuple(float(x) for x in m.groups()[1:]) + (float(cpu.group(1)) if cpu else 0.0,)
    return out
g, m = load(sys.argv[1]), load(sys.argv[2])
print("## ratios (same run)")
print("%-20s %12s %12s %8s   %-24s %s" % ("test", "Glance req/s", "Mosaic req/s", "ratio", "p99 ms Glance / Mosaic", "server CPU ms/req Glance / Mosaic"))
for k in ["post-create-c1", "post-create-c4", "show-one-c1", "show-one-c8", "list-default-c1", "list-default-c8",
          "list-filter-prop-c1", "list-limit1000-c1", "versions-c8"]:
    if k in g and k in m:
        print("%-20s %12.1f %12.1f %7.1fx   %-24s %.2f / %.3f" % (k, g[k][0], m[k][0], m[k][0] / g[k][0] if g[k][0] else 0,
              "%.1f / %.1f" % (g[k][3], m[k][3]), g[k][4], m[k][4]))
print("(list tests: Glance with %s images, Mosaic with %s; list-default = 25 per page)" % (sys.argv[3], sys.argv[4]))
PY
