#!/usr/bin/env bash
# idle.sh measures what idle keep-alive connections cost: for each server it
# opens N connections (one request each, answer read, then left open) and
# prints the growth of the serving process's RSS per connection.
#
# Servers (one worker/process each): forkd with a respond route (served on
# its event loops), forkd embedding a net/http app (examples/nethttp), nginx
# (worker_processes 1) and Go's net/http server (bench/peers/nethttp with
# GOMAXPROCS=1).
#
# Usage: bench/idle.sh                       (N=9000)
#        N=20000 SERVERS=forkd,nginx bench/idle.sh
#        bench/idle.sh --active              throughput of 256 active clients
#                                            with IDLE=50000 idle connections
#                                            open across WORKERS=4, vs none
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
N=${N:-9000}
IDLE=${IDLE:-50000}
WORKERS=${WORKERS:-4}
DURATION=${DURATION:-10s}
SERVERS=${SERVERS:-forkd,forkd-nethttp,nginx,nethttp}
ACTIVE=0
[[ ${1:-} == --active ]] && ACTIVE=1

# Each side holds one descriptor per connection; 100,000 need a high limit.
# With --active the idle connections come from several client processes
# (PER_CLIENT each, from 127.0.0.2, .3, ...), so the limit bounds each
# process and each forkd worker, not the total.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
PER_CLIENT=${PER_CLIENT:-$(( $(ulimit -n) - 1024 ))}
need=$(( (ACTIVE ? (IDLE < PER_CLIENT ? IDLE : PER_CLIENT) : N) + 1024 ))
if (( $(ulimit -n) < need )); then
	ulimit -Hn "$need" 2>/dev/null && ulimit -n "$need" || {
		echo "idle.sh: the open-file limit ($(ulimit -n)) is below $need; raise it (as root: ulimit -Hn $need)" >&2
		exit 1
	}
fi

BIN=$BENCH_DIR/bin
mkdir -p "$BIN"
(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o "$BIN/forkd" ./cmd/forkd &&
	CGO_ENABLED=0 go build -trimpath -o "$BIN/forkd-nethttp" ./examples/nethttp)
(cd "$BENCH_DIR" && CGO_ENABLED=0 go build -trimpath -o "$BIN/nethttp" ./peers/nethttp &&
	CGO_ENABLED=0 go build -trimpath -o "$BIN/idle" ./idle)

TMP=$(mktemp -d)
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() { # wait_port PORT PATH
	for _ in $(seq 200); do
		curl -fsS -o /dev/null "http://127.0.0.1:$1$2" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "idle.sh: nothing answers on port $1" >&2
	return 1
}

forkd_config() { # forkd_config FILE PORT WORKERS [ROUTE]
	{
		echo "workers = $3"
		echo "listen {"
		echo "  address = \"127.0.0.1:$2\""
		echo "}"
		echo "log {"
		echo "  level = \"warn\""
		echo "}"
		echo "limits {"
		echo "  max_connections = $(( (ACTIVE ? IDLE : N) + 1024 ))"
		echo "  idle_timeout = \"600s\""
		echo "}"
		if [[ -n ${4:-} ]]; then
			cat <<EOC
site "bench" {
  route "/" {
    respond {
      status = 200
      body   = "Hello, World!"
    }
  }
}
EOC
		fi
	} >"$1"
}

# start NAME PORT CMD...: starts a server and sets SERVE_PIDS to the pids
# that serve (the workers for forkd).
start() {
	local name=$1 port=$2
	shift 2
	"$@" >"$TMP/$name.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	wait_port "$port" / || { cat "$TMP/$name.log" >&2; exit 1; }
	case $name in
	forkd*) SERVE_PIDS=$(pgrep -P "$pid" | paste -sd,) ;;
	nginx) SERVE_PIDS=$(pgrep -P "$(cat "$TMP/nginx.pid")" | paste -sd,) ;;
	*) SERVE_PIDS=$pid ;;
	esac
	LAST=$pid
}

stop() { kill "$LAST" 2>/dev/null || true; wait "$LAST" 2>/dev/null || true; }

start_named() { # start_named NAME WORKERS
	local port
	port=$(free_port)
	PORT=$port
	case $1 in
	forkd)
		forkd_config "$TMP/forkd.hcl" "$port" "$2" route
		start forkd "$port" "$BIN/forkd" -c "$TMP/forkd.hcl" ;;
	forkd-nethttp)
		forkd_config "$TMP/forkd-nethttp.hcl" "$port" "$2"
		start forkd-nethttp "$port" "$BIN/forkd-nethttp" -c "$TMP/forkd-nethttp.hcl" ;;
	nginx)
		mkdir -p "$TMP/nginx/logs"
		cat >"$TMP/nginx.conf" <<EOC
worker_processes $2;
worker_rlimit_nofile $(( (ACTIVE ? IDLE : N) + 2048 ));
daemon off;
pid $TMP/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections $(( (ACTIVE ? IDLE : N) + 1024 )); }
http {
    access_log off;
    keepalive_timeout 600s;
    keepalive_requests 10000000;
    server {
        listen 127.0.0.1:$port;
        location / { return 200 "Hello, World!"; }
    }
}
EOC
		start nginx "$port" nginx -p "$TMP/nginx" -c "$TMP/nginx.conf" ;;
	nethttp)
		GOMAXPROCS=$2 start nethttp "$port" "$BIN/nethttp" -addr "127.0.0.1:$port" ;;
	esac
}

if (( ! ACTIVE )); then
	echo "| server | idle connections | RSS before (KiB) | RSS after (KiB) | per connection (KiB) |"
	echo "|---|---|---|---|---|"
	IFS=, read -ra list <<<"$SERVERS"
	for s in "${list[@]}"; do
		start_named "$s" 1
		line=$("$BIN/idle" -addr "127.0.0.1:$PORT" -n "$N" -pids "$SERVE_PIDS" -name "$s")
		stop
		# name conns= rss_before_kib= rss_after_kib= per_conn_kib=
		read -r name c b a p <<<"$(tr '\t' ' ' <<<"$line")"
		echo "| $name | ${c#conns=} | ${b#rss_before_kib=} | ${a#rss_after_kib=} | ${p#per_conn_kib=} |"
	done
	exit 0
fi

# --active: plaintext throughput for 256 active connections, without and
# with IDLE idle ones held open, on forkd with WORKERS workers.
command -v wrk >/dev/null || { echo "idle.sh: wrk not found" >&2; exit 1; }
start_named forkd "$WORKERS"
rate() { wrk -t2 -c256 -d"$DURATION" "http://127.0.0.1:$PORT/" | awk '/Requests\/sec/ {print $2}'; }
without=$(rate)
HOLDS=()
left=$IDLE
k=0
while (( left > 0 )); do
	n=$(( left < PER_CLIENT ? left : PER_CLIENT ))
	"$BIN/idle" -addr "127.0.0.1:$PORT" -n "$n" -src $((k + 2)) -pids "$SERVE_PIDS" -name forkd -hold >"$TMP/hold$k.out" &
	HOLDS+=($!)
	PIDS+=($!)
	for _ in $(seq 1200); do grep -q holding "$TMP/hold$k.out" && break; sleep 0.1; done
	grep -q holding "$TMP/hold$k.out" || { echo "idle.sh: could not open $n idle connections (client $k)" >&2; cat "$TMP/hold$k.out" >&2; exit 1; }
	left=$(( left - n ))
	k=$(( k + 1 ))
done
with=$(rate)
kill "${HOLDS[@]}"
echo "| forkd, $WORKERS workers | req/s, 256 active | with $IDLE idle | ratio |"
echo "|---|---|---|---|"
echo "| plaintext | $without | $with | $(python3 -c "print(f'{$with/$without:.2f}')") |"
cat "$TMP"/hold*.out | grep -v holding
