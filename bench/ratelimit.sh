#!/usr/bin/env bash
# ratelimit.sh measures rate_limit zones (docs/configuration.md,
# "rate_limit blocks"):
#
#   accuracy  4 workers, rate = "100r/s", burst = 0, one key, wrk at full
#             speed for DURATION seconds: the requests allowed, against
#             100/s x DURATION; then the same with a
#             HUP a third of the way through and a USR2 at two thirds.
#   cost      the server CPU (master and workers: utime + stime) per
#             request of a hello route, with and without a rate_limit that
#             lets everything through, and the ratio.
#   memory    the RSS of the master and of each worker before and after a
#             flood of FLOOD_SECONDS of distinct keys into a zone of
#             FLOOD_SIZE.
#
# Usage: bench/ratelimit.sh        (environment: DURATION=30 COST_DURATION=10
#                                   CONNS=64 THREADS=2 FLOOD_SECONDS=10
#                                   FLOOD_SIZE=16MiB PORT=18950 TESTS="accuracy cost memory")
# Needs go, wrk and curl on PATH. Loopback only.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
DURATION=${DURATION:-30}
COST_DURATION=${COST_DURATION:-10}
CONNS=${CONNS:-64}
THREADS=${THREADS:-2}
FLOOD_SECONDS=${FLOOD_SECONDS:-10}
FLOOD_SIZE=${FLOOD_SIZE:-16MiB}
PORT=${PORT:-18950}
TESTS=${TESTS:-accuracy cost memory}

WORK=$(mktemp -d)
MASTER=
cleanup() {
	if [ -n "$MASTER" ]; then
		kill -QUIT "$(cat "$WORK/forkd.pid" 2>/dev/null || echo "$MASTER")" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

(cd "$ROOT" && go build -o "$WORK/forkd" ./cmd/forkd)
ADDR=127.0.0.1:$PORT

# start CONFIG_BODY: writes config.hcl (4 workers, control socket, pidfile)
# and starts a master; waits until it answers.
start() {
	cat >"$WORK/config.hcl" <<EOF
workers        = 4
pidfile        = "$WORK/forkd.pid"
control_socket = "$WORK/forkd.sock"
listen {
  address = "$ADDR"
}
log {
  level = "warn"
}
$1
EOF
	"$WORK/forkd" -c "$WORK/config.hcl" >>"$WORK/log" 2>&1 &
	MASTER=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://$ADDR/" && return 0
		sleep 0.1
	done
	echo "forkd did not start:" >&2
	cat "$WORK/log" >&2
	exit 1
}

stop() {
	local pid
	pid=$(cat "$WORK/forkd.pid")
	kill -TERM "$pid"
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	MASTER=
}

# zone FIELD: the first zone's FIELD in `forkd status -json`.
zone() {
	"$WORK/forkd" status -s "$WORK/forkd.sock" -json | tr -d " \n" | sed 's/.*"zones":\[{//' | tr ',' '\n' | sed -n "s/^\"$1\":\([0-9]*\).*/\1/p" | head -1
}

# cputicks: utime + stime of the master and its workers, in clock ticks.
cputicks() {
	local pid total=0
	pid=$(cat "$WORK/forkd.pid")
	for p in $pid $(pgrep -P "$pid"); do
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}

# rss: "master=RSS(anon+shmem) worker=..." now, in KiB: shmem is the
# zones' pages this process touched, anon its heap and stacks.
rss() {
	local pid out
	pid=$(cat "$WORK/forkd.pid")
	out="master=$(mem "$pid")"
	for p in $(pgrep -P "$pid"); do
		out="$out worker=$(mem "$p")"
	done
	echo "$out"
}

mem() {
	awk '/^VmRSS/{r=$2} /^RssAnon/{a=$2} /^RssShmem/{s=$2} END{printf "%d(%d+%d)", r, a, s}' "/proc/$1/status"
}

hello_site() {
	cat <<EOF
site "bench" {
  $1
  route "/" {
    respond {
      body = "Hello, World!\n"
    }
  }
}
EOF
}

accuracy() {
	local signals=$1 t0 t1 allowed expected
	start "rate_limit \"one\" {
  rate  = \"100r/s\"
  burst = 0
}
$(hello_site 'rate_limit = ["one"]')"
	t0=$(date +%s.%N)
	wrk -t "$THREADS" -c "$CONNS" -d "${DURATION}s" "http://$ADDR/" >"$WORK/wrk" &
	local wrk=$!
	if [ "$signals" = yes ]; then
		sleep $((DURATION / 3))
		kill -HUP "$(cat "$WORK/forkd.pid")"
		sleep $((DURATION / 3))
		kill -USR2 "$(cat "$WORK/forkd.pid")"
	fi
	wait "$wrk"
	t1=$(date +%s.%N)
	allowed=$(zone allowed)
	expected=$((DURATION * 100))
	printf '| accuracy%s | %s | %s | %s | %s |\n' "$([ "$signals" = yes ] && echo ' (HUP + USR2)')" "$allowed" \
		"$expected" "$(echo "$allowed $expected" | awk '{printf "%+.2f%%", ($1 - $2) * 100 / $2}')" \
		"$(awk '/requests in/{print $1}' "$WORK/wrk") requests, $(zone limited) limited; $(echo "$t0 $t1" | awk '{printf "%.2f", $2 - $1}') s from wrk start to exit"
	stop
}

# cost LABEL RATE_LIMIT_LINE PREAMBLE: CPU ticks per 10k requests.
cost() {
	start "$2
$(hello_site "$1")"
	wrk -t "$THREADS" -c "$CONNS" -d 2s "http://$ADDR/" >/dev/null # warm-up
	local c0 c1 n
	c0=$(cputicks)
	wrk -t "$THREADS" -c "$CONNS" -d "${COST_DURATION}s" "http://$ADDR/" >"$WORK/wrk"
	c1=$(cputicks)
	n=$(awk '/requests in/{print $1}' "$WORK/wrk")
	stop
	echo "$c0 $c1 $n" | awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f", ($2 - $1) / hz * 1e6 / $3}'
}

memory() {
	start "rate_limit \"flood\" {
  key   = \"{header.X-Key}\"
  rate  = \"1r/s\"
  size  = \"$FLOOD_SIZE\"
}
$(hello_site 'rate_limit = ["flood"]')"
	local before after
	wrk -t "$THREADS" -c "$CONNS" -d 2s "http://$ADDR/" >/dev/null
	before=$(rss)
	cat >"$WORK/flood.lua" <<'EOF'
local n = 0
-- Each wrk thread has its own Lua state with the same seed: mix in the
-- address of a table, which differs between threads.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 1000000007)
request = function()
  n = n + 1
  return wrk.format("GET", "/", {["X-Key"] = tostring(math.random(1, 2000000000)) .. "-" .. n})
end
EOF
	wrk -t "$THREADS" -c "$CONNS" -d "${FLOOD_SECONDS}s" -s "$WORK/flood.lua" "http://$ADDR/" >"$WORK/wrk"
	after=$(rss)
	printf '| memory | %s keys sent into a %s zone | entries %s of %s, evictions %s | before: %s; after: %s |\n' \
		"$(awk '/requests in/{print $1}' "$WORK/wrk")" "$FLOOD_SIZE" "$(zone entries)" "$(zone capacity)" "$(zone evictions)" "$before" "$after"
	stop
}

echo "| test | allowed / measured | expected | error | notes |"
echo "|---|---|---|---|---|"
for t in $TESTS; do
	case $t in
	accuracy)
		accuracy no
		accuracy yes
		;;
	cost)
		# ABBA order, so that a load that drifts during the runs (other
		# processes on the machine) weighs on both alike.
		limit='rate_limit "all" {
  rate  = "1000000r/s"
  burst = 1000000
}'
		p1=$(cost "" "")
		l1=$(cost 'rate_limit = ["all"]' "$limit")
		l2=$(cost 'rate_limit = ["all"]' "$limit")
		p2=$(cost "" "")
		plain=$(echo "$p1 $p2" | awk '{printf "%.2f", ($1 + $2) / 2}')
		limited=$(echo "$l1 $l2" | awk '{printf "%.2f", ($1 + $2) / 2}')
		printf '| cost | %s µs CPU/request limited (%s, %s) | %s µs CPU/request plain (%s, %s) | ratio %s | 4 workers, wrk -c %s, %ss each |\n' \
			"$limited" "$l1" "$l2" "$plain" "$p1" "$p2" "$(echo "$limited $plain" | awk '{printf "%.3f", $1 / $2}')" "$CONNS" "$COST_DURATION"
		;;
	memory)
		memory
		;;
	esac
done
