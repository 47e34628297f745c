#!/usr/bin/env bash
# churn.sh measures how forkd's workers share new connections: it runs wrk
# with "Connection: close" (every request on a new connection) against a
# forkd with several workers, counts the accept4(2) calls the workers make
# (perf's syscalls:sys_enter_accept4 tracepoint) and reads each worker's
# request count from `forkd status -json`. It prints accept4 calls per
# connection (1.0 is ideal: no worker woken for nothing) and the largest
# and smallest worker share.
#
# Usage: bench/churn.sh                      (WORKERS=8 CONNS=64 DURATION=5s)
#        FORKD_BIN=/tmp/forkd-old bench/churn.sh   (another build)
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
WORKERS=${WORKERS:-8}
CONNS=${CONNS:-64}
DURATION=${DURATION:-5s}
FORKD_BIN=${FORKD_BIN:-}

for t in wrk perf python3 setsid; do
	command -v "$t" >/dev/null || { echo "churn.sh: $t not found" >&2; exit 1; }
done
if [[ -z $FORKD_BIN ]]; then
	FORKD_BIN="$BENCH_DIR/bin/forkd"
	(cd "$ROOT" && mkdir -p bench/bin && CGO_ENABLED=0 go build -trimpath -o bench/bin/forkd ./cmd/forkd)
fi

TMP=$(mktemp -d)
MASTER=""
cleanup() {
	if [[ -n $MASTER ]]; then
		kill -TERM -- "-$MASTER" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$MASTER" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$MASTER" 2>/dev/null || true
	fi
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$TMP/forkd.hcl" <<EOF
workers = $WORKERS
pidfile = "$TMP/forkd.pid"
listen {
  address = "127.0.0.1:$PORT"
}
log {
  level = "warn"
}
site "bench" {
  hosts = ["*"]
  route "/" {
    respond {
      status = 200
      body   = "Hello, World!"
    }
  }
}
EOF

setsid "$FORKD_BIN" -c "$TMP/forkd.hcl" >"$TMP/forkd.log" 2>&1 &
MASTER=$!
status_json() { "$FORKD_BIN" status -c "$TMP/forkd.hcl" -json 2>/dev/null; }
# Wait until every worker is up and answering.
workers_json() { status_json | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["status"]["workers"]))'; }
deadline=$((SECONDS + 30))
until [[ $(workers_json 2>/dev/null | python3 -c 'import json,sys; print(sum(w["state"]=="ready" for w in json.load(sys.stdin)))' 2>/dev/null) == "$WORKERS" ]]; do
	((SECONDS < deadline)) || { echo "churn.sh: forkd did not start:" >&2; cat "$TMP/forkd.log" >&2; exit 1; }
	sleep 0.2
done
PIDS=$(workers_json | python3 -c 'import json,sys; print(",".join(str(w["pid"]) for w in json.load(sys.stdin)))')
before=$(workers_json)

perf stat -x, -e syscalls:sys_enter_accept4 -p "$PIDS" -o "$TMP/perf.csv" &
PERF=$!
sleep 0.5 # perf attaches
wrk -t1 -c"$CONNS" -d"$DURATION" -H 'Connection: close' "http://127.0.0.1:$PORT/" >"$TMP/wrk.txt"
kill -INT "$PERF"
wait "$PERF" || true
sleep 2.5 # two heartbeats: the workers' request counts reach the master

accepts=$(awk -F, '/sys_enter_accept4/ {print $1}' "$TMP/perf.csv")
workers_json | python3 -c '
import json, sys
before = {w["pid"]: w["requests"] for w in json.loads(sys.argv[1])}
after = {w["pid"]: w["requests"] for w in json.load(sys.stdin)}
d = [after[p] - before.get(p, 0) for p in after]
total = sum(d)
accepts = int(sys.argv[2])
print("workers %d, connections (requests) %d, accept4 calls %d, accept4 per connection %.3f" % (len(d), total, accepts, accepts / max(total, 1)))
print("shares: " + " ".join("%.1f%%" % (100.0 * x / total) for x in sorted(d)))
print("max/min share: %.2f" % (max(d) / max(min(d), 1)))
' "$before" "$accepts"
grep -E "Requests/sec|Socket errors" "$TMP/wrk.txt" || true
