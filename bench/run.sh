#!/usr/bin/env bash
# run.sh drives forkd, Go net/http, fasthttp (prefork) and nginx with wrk on
# loopback (and forkd and nginx with h2load for the HTTP/2 tests), prints
# one markdown table of the results and draws it as an SVG chart
# (internal/benchchart).
#
# Usage: bench/run.sh [options]     (bench/run.sh -h lists them)
#
# Every option also has an environment variable (shown in -h), so a remote run
# can be configured either way. The script builds the Go binaries when `go` is
# on PATH; otherwise it uses the prebuilt ones in bench/bin/ (see pack.sh).
# wrk, h2load and nginx come from PATH, or from bench/.work/tools/ made by
# pack.sh.
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$BENCH_DIR")
BIN="$BENCH_DIR/bin"
TOOLS="$BENCH_DIR/.work/tools"

ALL_TESTS="plaintext,static4k,static1m,churn,scaling,tls,tlshandshake,tls1m,embedded,proxy,proxychurn,compress,compress0,h2tls,h2tls4k,h2c,h2c4k"
# H2_TESTS are the HTTP/2 tests, h2load's; "h2" in TESTS names them all.
H2_TESTS="h2tls,h2tls4k,h2c,h2c4k"
ALL_SERVERS="forkd,nethttp,fasthttp,nginx"

DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-1s}
CONNS=${CONNS:-256}
CHURN_CONNS=${CHURN_CONNS:-64}
# PROXY_KEEPALIVE is the upstream keepalive of both proxies (forkd's
# keepalive, nginx's upstream keepalive).
PROXY_KEEPALIVE=${PROXY_KEEPALIVE:-64}
THREADS=${THREADS:-}
SERVER_CPUS=${SERVER_CPUS:-}
CLIENT_CPUS=${CLIENT_CPUS:-}
WORKERS=${WORKERS:-}
TESTS=${TESTS:-$ALL_TESTS}
SERVERS=${SERVERS:-$ALL_SERVERS}
SCALE=${SCALE:-1 2 4 8}
OUT=${OUT:-}
CHART=${CHART:-}
CHART_LATEST=${CHART_LATEST:-}
BUILD=${BUILD:-1}
PACKED=${PACKED:-0}
KEEP=${KEEP:-0}
REPEAT=${REPEAT:-1}
BUILD_ONLY=0
H2_CONNS=${H2_CONNS:-64}
H2_STREAMS=${H2_STREAMS:-10}
H2_WORKERS=${H2_WORKERS:-1}
COMPRESS_WORKERS=${COMPRESS_WORKERS:-1}

usage() {
	cat <<EOF
Usage: bench/run.sh [options]

  -d, --duration D       wrk duration per test (DURATION, default 10s)
  -w, --warmup D         unmeasured wrk run before each test, 0 = none (WARMUP, default 1s)
  -c, --connections N    keep-alive connections (CONNS, default 256)
      --churn-connections N  connections of the churn test (CHURN_CONNS, default 64)
      --proxy-keepalive N  idle upstream connections each proxy keeps, forkd and
                         nginx alike (PROXY_KEEPALIVE, default 64)
  -t, --threads N        wrk threads (THREADS, default: CPUs in the client set)
  -s, --server-cpus L    taskset CPU list for the servers, e.g. 0-15 (SERVER_CPUS)
  -l, --client-cpus L    taskset CPU list for wrk, e.g. 16-31 (CLIENT_CPUS)
                         default: first half of the CPUs for servers, second half for wrk
  -n, --workers N        server workers/processes (WORKERS, default: CPUs in the server set)
  -T, --tests LIST       comma list of $ALL_TESTS (TESTS);
                         h2 = all four HTTP/2 tests ($H2_TESTS)
      --h2-connections N  h2load connections (H2_CONNS, default 64)
      --h2-streams N     h2load concurrent streams per connection (H2_STREAMS, default 10)
      --h2-workers N     forkd workers and nginx worker processes of the HTTP/2
                         tests (H2_WORKERS, default 1)
      --compress-workers N  the same for the compress tests (COMPRESS_WORKERS, default 1)
  -S, --servers LIST     comma list of $ALL_SERVERS (SERVERS); the embedded test
                         always runs both of its servers (forkd.HTTP and net/http.Server)
      --scale "LIST"     forkd worker counts for the scaling test (SCALE, default "1 2 4 8")
  -r, --repeat N         N interleaved rounds of every test, report the median (REPEAT, default 1)
  -q, --quick            smoke mode: --duration 2s --warmup 0
  -o, --out FILE         also write the table to FILE (OUT)
      --chart FILE       the run's SVG chart (CHART; default: FILE of -o with .svg,
                         else bench/results/run-<UTC time>.svg); also copied to
                         bench/chart-latest.svg (CHART_LATEST), which bench/README.md shows
      --no-build         use the binaries already in bench/bin (BUILD=0)
      --packed           use wrk/h2load/nginx from bench/.work/tools even if installed (PACKED=1)
      --keep             keep the temporary directory (configs, server logs) (KEEP=1)
      --build-only       build bench/bin/{forkd,nethttp,fasthttp,benchapp,benchchart} and exit
  -h, --help             this help
EOF
}

while (($#)); do
	case $1 in
	-d | --duration) DURATION=$2; shift ;;
	--churn-connections) CHURN_CONNS=$2; shift ;;
	--proxy-keepalive) PROXY_KEEPALIVE=$2; shift ;;
	-w | --warmup) WARMUP=$2; shift ;;
	-c | --connections) CONNS=$2; shift ;;
	-t | --threads) THREADS=$2; shift ;;
	-s | --server-cpus) SERVER_CPUS=$2; shift ;;
	-l | --client-cpus) CLIENT_CPUS=$2; shift ;;
	-n | --workers) WORKERS=$2; shift ;;
	-T | --tests) TESTS=$2; shift ;;
	-S | --servers) SERVERS=$2; shift ;;
	--scale) SCALE=$2; shift ;;
	--h2-connections) H2_CONNS=$2; shift ;;
	--h2-streams) H2_STREAMS=$2; shift ;;
	--h2-workers) H2_WORKERS=$2; shift ;;
	--compress-workers) COMPRESS_WORKERS=$2; shift ;;
	-q | --quick) DURATION=2s; WARMUP=0 ;;
	-r | --repeat) REPEAT=$2; shift ;;
	-o | --out) OUT=$2; shift ;;
	--chart) CHART=$2; shift ;;
	--no-build) BUILD=0 ;;
	--packed) PACKED=1 ;;
	--keep) KEEP=1 ;;
	--build-only) BUILD_ONLY=1 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown option $1 (try -h)" >&2; exit 2 ;;
	esac
	shift
done

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'run.sh: %s\n' "$*" >&2; }
die() { warn "$*"; exit 1; }

# has reports whether the comma list $1 contains the word $2.
has() { [[ ",$1," == *",$2,"* ]]; }

has "$TESTS" h2 && TESTS+=",$H2_TESTS"
has_h2_test() { has "$TESTS" h2tls || has "$TESTS" h2tls4k || has "$TESTS" h2c || has "$TESTS" h2c4k; }
is_h2_test() { has "$H2_TESTS" "$1"; }

# cpu_count prints how many CPUs a taskset list such as "0-3,8,10-11" names.
cpu_count() {
	local n=0 part lo hi
	local IFS=,
	for part in $1; do
		if [[ $part == *-* ]]; then
			lo=${part%-*} hi=${part#*-}
			n=$((n + hi - lo + 1))
		else
			n=$((n + 1))
		fi
	done
	echo "$n"
}

# secs prints a wrk duration ("10s", "2m", "1h", "30") in whole seconds.
secs() {
	case $1 in
	*s) echo "${1%s}" ;;
	*m) echo $((${1%m} * 60)) ;;
	*h) echo $((${1%h} * 3600)) ;;
	*) echo "$1" ;;
	esac
}

# ---------------------------------------------------------------- binaries

build() {
	command -v go >/dev/null || {
		warn "go is not on PATH; using the prebuilt binaries in $BIN"
		return
	}
	mkdir -p "$BIN"
	log "building peers (bench/bin/nethttp, bench/bin/fasthttp, bench/bin/upstream)"
	(cd "$BENCH_DIR" &&
		CGO_ENABLED=0 go build -trimpath -o bin/nethttp ./peers/nethttp &&
		CGO_ENABLED=0 go build -trimpath -o bin/fasthttp ./peers/fasthttp &&
		CGO_ENABLED=0 go build -trimpath -o bin/upstream ./peers/upstream) ||
		die "building the peers failed"
	log "building forkd (go build -o bench/bin/forkd ./cmd/forkd)"
	# Build to a temporary name so that a failed build never leaves a stale
	# binary that would be benchmarked by mistake.
	if (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o bench/bin/forkd.new ./cmd/forkd) 2>"$BIN/forkd-build.log"; then
		mv -f "$BIN/forkd.new" "$BIN/forkd"
	else
		rm -f "$BIN/forkd.new" "$BIN/forkd"
		warn "building forkd failed; its rows are skipped. Compiler output:"
		sed 's/^/    /' "$BIN/forkd-build.log" | head -20 >&2
	fi
	log "building the chart maker (go build -o bench/bin/benchchart ./internal/benchchart/cmd/benchchart)"
	(cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o bench/bin/benchchart ./internal/benchchart/cmd/benchchart) ||
		warn "building benchchart failed; the run makes no chart"
	log "building the embedded net/http app (go build -o bench/bin/benchapp ./internal/benchapp)"
	if (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -o bench/bin/benchapp.new ./internal/benchapp) 2>"$BIN/benchapp-build.log"; then
		mv -f "$BIN/benchapp.new" "$BIN/benchapp"
	else
		rm -f "$BIN/benchapp.new" "$BIN/benchapp"
		warn "building the embedded app failed; its rows are skipped. Compiler output:"
		sed 's/^/    /' "$BIN/benchapp-build.log" | head -20 >&2
	fi
}

if ((BUILD)) || ((BUILD_ONLY)); then build; fi
((BUILD_ONLY)) && exit 0

# Packed tools are started through their own dynamic loader: a libc copied
# from another system only works with the ld.so it came with, which
# LD_LIBRARY_PATH alone cannot guarantee.
packed() { [[ -x $TOOLS/ld.so && -x $TOOLS/bin/$1 ]]; }
WRK=() NGINX=() MIME=""
if ((!PACKED)) && command -v wrk >/dev/null; then
	WRK=(wrk)
elif packed wrk; then
	WRK=("$TOOLS/ld.so" --library-path "$TOOLS/lib" "$TOOLS/bin/wrk")
else
	die "wrk not found. Install it with: apt-get install -y wrk   (or run bench/pack.sh on a machine that has it)"
fi
NGINX_BIN=$(command -v nginx || true)
[[ -z $NGINX_BIN && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
if ((!PACKED)) && [[ -n $NGINX_BIN ]]; then
	NGINX=("$NGINX_BIN")
	for m in /etc/nginx/mime.types /usr/local/nginx/conf/mime.types "$TOOLS/conf/mime.types"; do
		[[ -r $m ]] && { MIME=$m; break; }
	done
elif packed nginx; then
	NGINX=("$TOOLS/ld.so" --library-path "$TOOLS/lib" "$TOOLS/bin/nginx")
	MIME="$TOOLS/conf/mime.types"
elif has "$SERVERS" nginx; then
	warn "nginx not found; its rows are skipped. Install it with: apt-get install -y nginx   (or use bench/pack.sh)"
fi
H2LOAD=()
if ((!PACKED)) && command -v h2load >/dev/null; then
	H2LOAD=(h2load)
elif packed h2load; then
	H2LOAD=("$TOOLS/ld.so" --library-path "$TOOLS/lib" "$TOOLS/bin/h2load")
elif has_h2_test; then
	warn "h2load not found; the HTTP/2 rows are skipped. Install it with: apt-get install -y nghttp2-client   (or use bench/pack.sh)"
fi
command -v taskset >/dev/null || die "taskset not found (util-linux)"
command -v setsid >/dev/null || die "setsid not found (util-linux)"

# ---------------------------------------------------------------- CPUs

# expand prints one CPU number a line for a taskset list such as "0-3,8".
expand() {
	local part
	local IFS=,
	for part in $1; do
		if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
	done
}

# default_split sets SERVER_CPUS and CLIENT_CPUS, if unset, to two halves of
# the CPUs this script may use. It splits by physical core so that a server
# and wrk never share one core's SMT threads (on Linux, CPU n and n+N/2 are
# often siblings, so a plain "first half / second half" split would pair them).
default_split() {
	local allowed cpu sib c group cores=() cpus=()
	local -A seen=() inset=()
	allowed=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
	mapfile -t cpus < <(expand "${allowed:-0-$(($(nproc) - 1))}")
	for cpu in "${cpus[@]}"; do inset[$cpu]=1; done
	for cpu in "${cpus[@]}"; do
		sib=$(cat "${CPU_SYSFS:-/sys/devices/system/cpu}/cpu$cpu/topology/thread_siblings_list" 2>/dev/null || echo "$cpu")
		[[ -n ${seen[$sib]:-} ]] && continue
		seen[$sib]=1
		group=""
		for c in $(expand "$sib"); do
			[[ -n ${inset[$c]:-} ]] && group+=${group:+,}$c
		done
		cores+=("$group")
	done
	local n=${#cores[@]} half server="" client="" i
	if ((n >= 2)); then
		half=$((n / 2))
		for ((i = 0; i < n; i++)); do
			if ((i < half)); then server+=${server:+,}${cores[i]}; else client+=${client:+,}${cores[i]}; fi
		done
	elif ((${#cpus[@]} >= 2)); then
		half=$((${#cpus[@]} / 2))
		for ((i = 0; i < ${#cpus[@]}; i++)); do
			if ((i < half)); then server+=${server:+,}${cpus[i]}; else client+=${client:+,}${cpus[i]}; fi
		done
	else
		server=${cpus[0]} client=${cpus[0]}
		warn "only one CPU: server and wrk share it; numbers mean little"
	fi
	SERVER_CPUS=${SERVER_CPUS:-$server}
	CLIENT_CPUS=${CLIENT_CPUS:-$client}
}

NCPU=$(nproc --all 2>/dev/null || getconf _NPROCESSORS_ONLN)
[[ -n $SERVER_CPUS && -n $CLIENT_CPUS ]] || default_split
WORKERS=${WORKERS:-$(cpu_count "$SERVER_CPUS")}
THREADS=${THREADS:-$(cpu_count "$CLIENT_CPUS")}
((THREADS > CONNS)) && THREADS=$CONNS

# ---------------------------------------------------------------- state

TMP=$(mktemp -d "${TMPDIR:-/tmp}/forkd-bench.XXXXXX")
SERVER_PID="" WRK_PID=""
RUNNING=() # PIDs (session leaders) of the servers that are up

cleanup() {
	trap - EXIT INT TERM
	[[ -n $WRK_PID ]] && kill -KILL -- "-$WRK_PID" 2>/dev/null
	stop_all
	if ((KEEP)); then warn "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'warn interrupted; exit 130' INT TERM

# Generate the static files once; the same directory serves forkd and nginx.
mkdir -p "$TMP/www"
head -c 4096 /dev/urandom >"$TMP/www/4k.bin"
head -c 1048576 /dev/urandom >"$TMP/www/1m.bin"
cp "$BENCH_DIR/testdata/app.js" "$TMP/www/app.js"

cat >"$TMP/report.lua" <<'EOF'
-- done prints wrk's totals and exact latency percentiles on one line that
-- run.sh parses; defining only done keeps wrk on its fast static-request path.
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d errors=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF

# free_port prints a loopback TCP port that nothing listens on, below the
# ephemeral range: a port wrk or a probe holds as its local end would make
# the server's bind fail.
read -r EPH_LO EPH_HI </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || EPH_LO=32768 EPH_HI=60999
if ((EPH_LO - 10000 >= 1000)); then
	PORT_LO=10000 PORT_SPAN=$((EPH_LO - 10000))
elif ((65535 - EPH_HI >= 1000)); then
	PORT_LO=$((EPH_HI + 1)) PORT_SPAN=$((65535 - EPH_HI))
else
	PORT_LO=20000 PORT_SPAN=40000 # no room outside: rely on the probe
fi
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((PORT_LO + RANDOM % PORT_SPAN))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# probe sends one GET for $2 to port $1 and succeeds on a 200 response; with
# PROBE_TLS=1 it speaks HTTPS (curl, not verifying the test certificate).
PROBE_TLS=0
probe() {
	local line
	if ((PROBE_TLS)); then
		[[ $(curl -sk -m 2 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1$2" 2>/dev/null) == 200 ]]
		return
	fi
	(
		exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
		printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == "HTTP/1."[01]" 200"* ]]
	) 2>/dev/null
}

# children prints the PIDs whose parent is $1.
children() {
	local f stat rest ppid p
	for f in /proc/[0-9]*/stat; do
		read -r stat <"$f" 2>/dev/null || continue
		rest=${stat##*) } # skip "pid (comm) "; comm may hold spaces
		read -r _ ppid _ <<<"$rest"
		if [[ $ppid == "$1" ]]; then
			p=${f#/proc/}
			echo "${p%/stat}"
		fi
	done
}

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# start_server NAME PORT PATH NCHILD CMD... starts CMD pinned to the server
# CPUs in its own session and waits (bounded) until PATH answers 200 and the
# process has NCHILD children. On success it sets SERVER_PID and RSS_NOTE (the
# idle RSS, measured before any load) and adds the server to RUNNING.
start_server() {
	local name=$1 port=$2 path=$3 nchild=$4
	shift 4
	setsid taskset -c "$SERVER_CPUS" "$@" >"$TMP/$name.log" 2>&1 </dev/null &
	SERVER_PID=$!
	local deadline=$((SECONDS + 20)) kids=()
	while ((SECONDS < deadline)); do
		if ! kill -0 "$SERVER_PID" 2>/dev/null; then
			warn "$name exited during start-up; last lines of its log:"
			tail -n 15 "$TMP/$name.log" | sed 's/^/    /' >&2
			wait "$SERVER_PID" 2>/dev/null
			SERVER_PID=""
			return 1
		fi
		if probe "$port" "$path"; then
			mapfile -t kids < <(children "$SERVER_PID")
			((${#kids[@]} >= nchild)) && break
		fi
		sleep 0.05
	done
	if ((SECONDS >= deadline)); then
		warn "$name did not become ready within 20s (want 200 on $path and $nchild children); log:"
		tail -n 15 "$TMP/$name.log" | sed 's/^/    /' >&2
		stop_server "$SERVER_PID"
		SERVER_PID=""
		return 1
	fi
	RUNNING+=("$SERVER_PID")
	local master k r sum=0 n=0
	master=$(rss_kib "$SERVER_PID")
	for k in "${kids[@]}"; do
		r=$(rss_kib "$k") && [[ -n $r ]] && { sum=$((sum + r)); n=$((n + 1)); }
	done
	if ((n)); then
		RSS_NOTE=$(printf '%.1f / %.1f' "$(bc_div "$master" 1024)" "$(bc_div "$sum" $((n * 1024)))")
	else
		RSS_NOTE=$(printf '%.1f / —' "$(bc_div "$master" 1024)")
	fi
	return 0
}

bc_div() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b ? a / b : 0) }'; }

# stop_server PID sends SIGTERM to the server's whole session, waits up to 5s,
# then SIGKILLs whatever is left.
stop_server() {
	local pid=$1 deadline=$((SECONDS + 5))
	kill -TERM -- "-$pid" 2>/dev/null
	while kill -0 -- "-$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.05; done
	kill -KILL -- "-$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
}

# stop_all stops every server in RUNNING, all at once.
stop_all() {
	local pid
	for pid in "${RUNNING[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
	for pid in "${RUNNING[@]}"; do stop_server "$pid"; done
	RUNNING=()
}

# ---------------------------------------------------------------- wrk

TIMEOUT_S=$(($(secs "$DURATION") + 30))

# wrk_run URL DURATION TEST runs wrk pinned to the client CPUs and sets
# RESULT from the report line. The churn tests send "Connection: close", so
# that every request opens a connection, over CHURN_CONNS connections. It
# runs in the background, in its own session, so that an interrupt is
# handled at once and cleanup can kill it as a group.
wrk_run() {
	local url=$1 dur=$2 out=$TMP/wrk.out conns=$CONNS extra=()
	if [[ ${3:-} == churn || ${3:-} == proxychurn ]]; then
		conns=$CHURN_CONNS
		extra=(-H "Connection: close")
	fi
	[[ -n ${4:-} ]] && extra+=(-H "$4")
	setsid timeout --kill-after=5 "$TIMEOUT_S" taskset -c "$CLIENT_CPUS" "${WRK[@]}" \
		-t "$THREADS" -c "$conns" -d "$dur" "${extra[@]}" -s "$TMP/report.lua" "$url" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID"
	local rc=$?
	WRK_PID=""
	RESULT=$(grep '^BENCH ' "$out")
	if [[ -z $RESULT ]]; then
		warn "wrk failed (exit $rc):"
		sed 's/^/    /' "$out" >&2
		return 1
	fi
}

# h2load_run URL DURATION runs h2load (H2_CONNS connections, H2_STREAMS
# streams each; h2c with prior knowledge for http://, h2 by ALPN for
# https://) pinned to the client CPUs and sets RESULT like wrk_run. h2load
# reports no latency percentiles: mean_us and max_us are the mean and the
# maximum of its "time for request".
h2load_run() {
	local url=$1 dur=$2 out=$TMP/h2load.out threads=$THREADS
	((threads > H2_CONNS)) && threads=$H2_CONNS
	setsid timeout --kill-after=5 "$TIMEOUT_S" taskset -c "$CLIENT_CPUS" "${H2LOAD[@]}" \
		-t "$threads" -c "$H2_CONNS" -m "$H2_STREAMS" -D "$dur" "$url" >"$out" 2>&1 &
	WRK_PID=$!
	wait "$WRK_PID"
	local rc=$?
	WRK_PID=""
	# finished in 2.00s, 61187.50 req/s, 6.07MB/s
	# requests: 122375 total, 122375 started, 122375 done, 122375 succeeded, 0 failed, 0 errored, 0 timeout
	# status codes: 122375 2xx, 0 3xx, 0 4xx, 0 5xx
	# traffic: 12.15MB (12737346) total, ...
	# time for request:      223us     43.10ms      9.90ms      3.21ms    75.31%
	RESULT=$(awk '
		function us(v) {
			if (v ~ /us$/) return v + 0
			if (v ~ /ms$/) return v * 1000
			if (v ~ /s$/) return v * 1e6
			return v + 0
		}
		/^finished in / { d = $3; sub(/s,$/, "", d); dur = d * 1e6 }
		/^requests: / { done = $6; bad = $10 + $12 + $14 }
		/^status codes: / { non2xx = $5 + $7 + $9 }
		/^traffic: / { b = $3; gsub(/[()]/, "", b) }
		/^time for request:/ { mean = us($6); max = us($5) }
		END {
			if (dur > 0 && done != "")
				printf "BENCH requests=%d duration_us=%d bytes=%d errors=%d mean_us=%d max_us=%d\n", done, dur, b, bad + non2xx, mean, max
		}' "$out")
	if [[ -z $RESULT ]]; then
		warn "h2load failed (exit $rc):"
		sed 's/^/    /' "$out" >&2
		return 1
	fi
}

# ---------------------------------------------------------------- targets

# Every server is started first and stays up; then the runs are interleaved:
# round 1 measures every target once, round 2 again, and so on, and each row
# reports the median round. A machine whose speed drifts (a noisy VM, a CPU
# that heats up) then shifts every server alike instead of favouring whichever
# ran first. Idle servers wait in epoll and cost the running one nothing.
T_TEST=() T_SERVER=() T_WORKERS=() T_URL=() T_RSS=() T_RUNS=() T_HDR=()

# target TEST SERVER WORKERS URL [HEADER] registers a measurement; an URL that
# is not http(s)://... is the reason the row has no figures ("not built",
# ...). HEADER is one more request header for wrk ("Connection: close").
target() {
	T_TEST+=("$1") T_SERVER+=("$2") T_WORKERS+=("$3") T_URL+=("$4") T_RSS+=("$RSS_NOTE") T_RUNS+=("") T_HDR+=("${5:-}")
}

is_url() { [[ $1 == http://* || $1 == https://* ]]; }

# skip_targets SERVER REASON TEST... registers rows without figures.
skip_targets() {
	local server=$1 reason=$2 t
	shift 2
	for t in "$@"; do has "$TESTS" "$t" && RSS_NOTE="" target "$t" "$server" "" "$reason"; done
}

warmup() { [[ $WARMUP != 0 && $WARMUP != 0s ]]; }

# measure_round R runs wrk once against every target, starting at a different
# target each round, and appends "REQ_PER_S BENCH..." to the target's runs.
measure_round() {
	local r=$1 n=${#T_TEST[@]} j i rate t0
	for ((j = 0; j < n; j++)); do
		i=$(((j + r) % n))
		is_url "${T_URL[i]}" || continue
		log "round $((r + 1))/$REPEAT: ${T_TEST[i]}: ${T_SERVER[i]} (${T_WORKERS[i]} workers) ${T_URL[i]}"
		if is_h2_test "${T_TEST[i]}"; then
			warmup && { h2load_run "${T_URL[i]}" "$WARMUP" || true; }
			t0=$(server_ticks)
			h2load_run "${T_URL[i]}" "$DURATION" || continue
		else
			warmup && { wrk_run "${T_URL[i]}" "$WARMUP" "${T_TEST[i]}" "${T_HDR[i]}" || true; }
			t0=$(server_ticks)
			wrk_run "${T_URL[i]}" "$DURATION" "${T_TEST[i]}" "${T_HDR[i]}" || continue
		fi
		RESULT+=" cpu_ticks=$(($(server_ticks) - t0))"
		rate=$(awk '{ split($2, r, "="); split($3, d, "="); printf "%.3f", r[2] / d[2] * 1e6 }' <<<"$RESULT")
		T_RUNS[i]+="$rate $RESULT"$'\n'
		awk -v r="$rate" -v hz="$HZ" '{
			for (k = 2; k <= NF; k++) { split($k, kv, "="); v[kv[1]] = kv[2] }
			printf "    %.0f req/s, %s %s, %.2f us CPU/req\n", r, $6, $7, v["requests"] ? v["cpu_ticks"] * 1e6 / hz / v["requests"] : 0
		}' <<<"$RESULT" >&2
	done
}

# server_ticks prints the CPU time (USER_HZ ticks, all but idle and iowait)
# spent so far on the server CPUs, so that a run's CPU per request shows what
# each server costs even when wrk, not the server, is the bottleneck.
SERVER_CPU_RE="^cpu($(expand "$SERVER_CPUS" | paste -sd'|'))\$"
server_ticks() {
	awk -v re="$SERVER_CPU_RE" '$1 ~ re { t += $2 + $3 + $4 + $7 + $8 + $9 } END { print t + 0 }' /proc/stat
}
HZ=$(getconf CLK_TCK 2>/dev/null || echo 100)

declare -A ROWS=() RATE=() P99=() CPU=()

# rows turns every target into a table row, from its median run.
rows() {
	local i n med requests duration_us bytes errors p50_us p99_us mean_us max_us cpu_ticks kv lat50 lat99
	for ((i = 0; i < ${#T_TEST[@]}; i++)); do
		if ! is_url "${T_URL[i]}"; then
			row "${T_TEST[i]}" "${T_SERVER[i]}" "${T_WORKERS[i]}" "${T_URL[i]}" "" "" "" "" "" ""
			continue
		fi
		n=$(grep -c . <<<"${T_RUNS[i]}")
		if ((n == 0)); then
			row "${T_TEST[i]}" "${T_SERVER[i]}" "${T_WORKERS[i]}" "wrk failed" "" "" "" "" "" "${T_RSS[i]}"
			continue
		fi
		med=$(grep . <<<"${T_RUNS[i]}" | sort -n | sed -n "$(((n + 1) / 2))p")
		for kv in ${med#* BENCH }; do local "$kv"; done
		RATE[${T_TEST[i]}:${T_SERVER[i]}]=${med%% *}
		if is_h2_test "${T_TEST[i]}"; then
			# h2load's mean and maximum, labelled: no percentiles.
			lat50="$(awk -v v="$mean_us" 'BEGIN { printf "%.3f", v / 1000 }') (mean)"
			lat99="$(awk -v v="$max_us" 'BEGIN { printf "%.3f", v / 1000 }') (max)"
		else
			P99[${T_TEST[i]}:${T_SERVER[i]}]=$p99_us
			lat50=$(awk -v v="$p50_us" 'BEGIN { printf "%.3f", v / 1000 }')
			lat99=$(awk -v v="$p99_us" 'BEGIN { printf "%.3f", v / 1000 }')
		fi
		CPU[${T_TEST[i]}:${T_SERVER[i]}]=$(awk -v t="$cpu_ticks" -v r="$requests" 'BEGIN { printf "%.6f", r ? t / r : 0 }')
		row "${T_TEST[i]}" "${T_SERVER[i]}" "${T_WORKERS[i]}" \
			"$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')" \
			"$(awk -v b="$bytes" -v d="$duration_us" 'BEGIN { printf "%.1f", b / 1048576 / (d / 1e6) }')" \
			"$lat50" "$lat99" \
			"$(awk -v t="$cpu_ticks" -v r="$requests" -v hz="$HZ" 'BEGIN { printf "%.2f", r ? t * 1e6 / hz / r : 0 }')" \
			"$errors" "${T_RSS[i]}"
	done
}

row() {
	ROWS[$1]+=$(printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |' "$@")$'\n'
}

# ---------------------------------------------------------------- servers

forkd_config() { # forkd_config FILE PORT WORKERS ROUTE-BODY
	cat >"$1" <<EOF
workers = $3
listen {
  address = "127.0.0.1:$2"
}
log {
  level = "warn"
}
site "bench" {
  hosts = ["*"]
  route "/" {
    $4
  }
}
EOF
}

# HELLO_ROUTE is the forkd route body for the plaintext hello. HCL allows only
# one attribute in a single-line block, so it spans lines.
HELLO_ROUTE='respond {
      status = 200
      body   = "Hello, World!"
    }'

start_forkd() {
	if [[ ! -x $BIN/forkd ]]; then
		skip_targets forkd "not built" plaintext static4k static1m churn tls tlshandshake tls1m proxy proxychurn compress compress0 h2tls h2tls4k h2c h2c4k
		if has "$TESTS" scaling; then RSS_NOTE="" target scaling forkd "" "not built"; fi
		return
	fi
	local port w
	if has "$TESTS" plaintext || has "$TESTS" churn; then
		port=$(free_port)
		forkd_config "$TMP/forkd.hcl" "$port" "$WORKERS" "$HELLO_ROUTE"
		if start_server forkd "$port" / "$WORKERS" "$BIN/forkd" -c "$TMP/forkd.hcl"; then
			has "$TESTS" plaintext && target plaintext forkd "$WORKERS" "http://127.0.0.1:$port/"
			has "$TESTS" churn && target churn forkd "$WORKERS" "http://127.0.0.1:$port/"
		else
			skip_targets forkd "did not start" plaintext churn
		fi
	fi
	if has "$TESTS" static4k || has "$TESTS" static1m; then
		port=$(free_port)
		forkd_config "$TMP/forkd-static.hcl" "$port" "$WORKERS" "static { root = \"$TMP/www\" }"
		if start_server forkd-static "$port" /4k.bin "$WORKERS" "$BIN/forkd" -c "$TMP/forkd-static.hcl"; then
			has "$TESTS" static4k && target static4k forkd "$WORKERS" "http://127.0.0.1:$port/4k.bin"
			has "$TESTS" static1m && target static1m forkd "$WORKERS" "http://127.0.0.1:$port/1m.bin"
		else
			skip_targets forkd "did not start" static4k static1m
		fi
	fi
	if has_tls_test; then
		port=$(free_port)
		cat >"$TMP/forkd-tls.hcl" <<EOF
workers = $WORKERS
listen {
  address   = "127.0.0.1:$port"
  protocols = ["http/1.1"] # the tls rows are HTTP/1.1 (wrk offers no ALPN), as before h2 was the default
  tls {
    certificate = "$TMP/tls/cert.pem"
    key         = "$TMP/tls/key.pem"
  }
}
log {
  level = "warn"
}
site "bench" {
  route "/" {
    $HELLO_ROUTE
  }
  route "/1m.bin" {
    static {
      root = "$TMP/www"
    }
  }
}
EOF
		if PROBE_TLS=1 start_server forkd-tls "$port" / "$WORKERS" "$BIN/forkd" -c "$TMP/forkd-tls.hcl"; then
			tls_targets forkd "https://127.0.0.1:$port"
		else
			skip_targets forkd "did not start" tls tlshandshake tls1m
		fi
	fi
	if has_proxy_test; then
		port=$(free_port)
		forkd_config "$TMP/forkd-proxy.hcl" "$port" "$WORKERS" "proxy {
      upstreams = [\"127.0.0.1:$UPSTREAM_PORT\"]
      keepalive = $PROXY_KEEPALIVE
    }"
		if start_server forkd-proxy "$port" / "$WORKERS" "$BIN/forkd" -c "$TMP/forkd-proxy.hcl"; then
			proxy_targets forkd "http://127.0.0.1:$port/"
		else
			skip_targets forkd "did not start" proxy proxychurn
		fi
	fi
	if has_h2_test; then
		start_forkd_h2
	fi
	start_forkd_compress
	if has "$TESTS" scaling; then
		for w in $SCALE; do
			port=$(free_port)
			forkd_config "$TMP/forkd-$w.hcl" "$port" "$w" "$HELLO_ROUTE"
			if start_server "forkd-$w" "$port" / "$w" "$BIN/forkd" -c "$TMP/forkd-$w.hcl"; then
				target scaling forkd "$w" "http://127.0.0.1:$port/"
			else
				RSS_NOTE="" target scaling forkd "$w" "did not start"
			fi
		done
	fi
}

# start_forkd_h2 starts the HTTP/2 tests' forkd: H2_WORKERS workers, a TLS
# listener offering h2 (ALPN) and a plain one taking h2c with prior
# knowledge, both serving the hello and the static files.
start_forkd_h2() {
	if ((${#H2LOAD[@]} == 0)); then
		skip_targets forkd "h2load not installed" h2tls h2tls4k h2c h2c4k
		return
	fi
	local tport cport
	tport=$(free_port)
	cport=$(free_port)
	cat >"$TMP/forkd-h2.hcl" <<EOF
workers = $H2_WORKERS
listen {
  address   = "127.0.0.1:$tport"
  protocols = ["h2", "http/1.1"]
  tls {
    certificate = "$TMP/tls/cert.pem"
    key         = "$TMP/tls/key.pem"
  }
}
listen {
  address   = "127.0.0.1:$cport"
  protocols = ["http/1.1", "h2c"]
}
log {
  level = "warn"
}
site "bench" {
  route "/" {
    $HELLO_ROUTE
  }
  route "/4k.bin" {
    static {
      root = "$TMP/www"
    }
  }
}
EOF
	if start_server forkd-h2 "$cport" /4k.bin "$H2_WORKERS" "$BIN/forkd" -c "$TMP/forkd-h2.hcl"; then
		h2_targets forkd "https://127.0.0.1:$tport" "http://127.0.0.1:$cport"
	else
		skip_targets forkd "did not start" h2tls h2tls4k h2c h2c4k
	fi
}

# ---------------------------------------------------------------- compression

# The compress tests fetch a 64 KiB JavaScript file (bench/testdata/app.js)
# with COMPRESS_WORKERS workers per server. compress: forkd with its cache
# of compressed variants (the client accepts "gzip, br, zstd": forkd picks
# zstd) against nginx's "gzip on" (level 1, compressed per request).
# compress0: forkd without the cache, gzip level 1, against the same nginx.
COMPRESS_AE="gzip, br, zstd"
declare -A COMPRESS_URL=()
has_compress_test() { has "$TESTS" compress || has "$TESTS" compress0; }

start_forkd_compress() {
	has_compress_test || return
	local t port cache levels ae
	for t in compress compress0; do
		has "$TESTS" "$t" || continue
		port=$(free_port)
		cache='"64MiB"' levels="" ae=$COMPRESS_AE
		[[ $t == compress0 ]] && cache='"0"' levels='levels = { gzip = 1 }' ae="gzip"
		cat >"$TMP/forkd-$t.hcl" <<EOF
workers = $COMPRESS_WORKERS
listen {
  address = "127.0.0.1:$port"
}
log {
  level = "warn"
}
site "bench" {
  compress {
    cache = $cache
    $levels
  }
  route "/" {
    static {
      root = "$TMP/www"
    }
  }
}
EOF
		if start_server "forkd-$t" "$port" /app.js "$COMPRESS_WORKERS" "$BIN/forkd" -c "$TMP/forkd-$t.hcl"; then
			target "$t" forkd "$COMPRESS_WORKERS" "http://127.0.0.1:$port/app.js" "Accept-Encoding: $ae"
			COMPRESS_URL[$t]="http://127.0.0.1:$port/app.js"
		else
			skip_targets forkd "did not start" "$t"
		fi
	done
}

# start_nginx_compress starts the compress tests' nginx: gzip on, for
# application/javascript, at its default level (1).
start_nginx_compress() {
	has_compress_test || return
	if ((${#NGINX[@]} == 0)); then
		skip_targets nginx "not installed" compress compress0
		return
	fi
	local port d=$TMP/nginx-compress
	port=$(free_port)
	mkdir -p "$d/logs" "$d/tmp"
	local mime="types { application/javascript js; }"
	[[ -n $MIME ]] && mime="include $MIME;"
	cat >"$d/nginx.conf" <<EOF
# Generated by bench/run.sh.
$(nginx_common "$d" "$COMPRESS_WORKERS" "$mime")
    gzip on;
    gzip_types application/javascript;

    server {
        listen 127.0.0.1:$port;
        server_name _;
        root $TMP/www;
        location / {
        }
    }
}
EOF
	if start_server nginx-compress "$port" /app.js "$COMPRESS_WORKERS" "${NGINX[@]}" -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf"; then
		has "$TESTS" compress && target compress nginx "$COMPRESS_WORKERS" "http://127.0.0.1:$port/app.js" "Accept-Encoding: gzip"
		has "$TESTS" compress0 && target compress0 nginx "$COMPRESS_WORKERS" "http://127.0.0.1:$port/app.js" "Accept-Encoding: gzip"
		COMPRESS_URL[nginx]="http://127.0.0.1:$port/app.js"
	else
		skip_targets nginx "did not start" compress compress0
	fi
}

# compress_sizes prints the body bytes of app.js per coding as each compress
# server sends it (curl, not decoding).
compress_sizes() {
	command -v curl >/dev/null || { echo "not measured (no curl)"; return; }
	local u out=() ae
	size() { curl -s -o /dev/null -w '%{size_download}' -H "Accept-Encoding: $1" "$2"; }
	u=${COMPRESS_URL[compress]:-}
	if [[ -n $u ]]; then
		for ae in identity zstd br gzip; do out+=("forkd $ae $(size "$ae" "$u")"); done
	fi
	u=${COMPRESS_URL[compress0]:-}
	[[ -n $u ]] && out+=("forkd gzip level 1 (cache 0) $(size gzip "$u")")
	u=${COMPRESS_URL[nginx]:-}
	[[ -n $u ]] && out+=("nginx gzip level 1 $(size gzip "$u")")
	local IFS=';'
	echo "${out[*]}" | sed 's/;/; /g'
}

# h2_targets SERVER TLS-BASE H2C-BASE registers the HTTP/2 tests.
h2_targets() {
	has "$TESTS" h2tls && target h2tls "$1" "$H2_WORKERS" "$2/"
	has "$TESTS" h2tls4k && target h2tls4k "$1" "$H2_WORKERS" "$2/4k.bin"
	has "$TESTS" h2c && target h2c "$1" "$H2_WORKERS" "$3/"
	has "$TESTS" h2c4k && target h2c4k "$1" "$H2_WORKERS" "$3/4k.bin"
}

# start_nginx_h2 starts the HTTP/2 tests' nginx: H2_WORKERS worker
# processes, h2 over TLS and h2c (prior knowledge) on a plain port. nginx
# before 1.25.1 turns HTTP/2 on with a listen parameter, on a plain port
# h2c only; later ones with "http2 on;", on a plain port beside HTTP/1.1.
start_nginx_h2() {
	has_h2_test || return
	if ((${#NGINX[@]} == 0)); then
		skip_targets nginx "not installed" h2tls h2tls4k h2c h2c4k
		return
	fi
	if ((${#H2LOAD[@]} == 0)); then
		skip_targets nginx "h2load not installed" h2tls h2tls4k h2c h2c4k
		return
	fi
	local tport cport d=$TMP/nginx-h2 ver listen_h2="" http2_on=""
	tport=$(free_port)
	cport=$(free_port)
	mkdir -p "$d/logs" "$d/tmp"
	ver=$("${NGINX[@]}" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
	if [[ $(printf '%s\n' "$ver" 1.25.1 | sort -V | head -1) == 1.25.1 ]]; then
		http2_on="http2 on;"
	else
		listen_h2=" http2"
	fi
	local mime="types { application/octet-stream bin; }"
	[[ -n $MIME ]] && mime="include $MIME;"
	cat >"$d/nginx.conf" <<EOF
# Generated by bench/run.sh (nginx $ver).
$(nginx_common "$d" "$H2_WORKERS" "$mime")

    server {
        listen 127.0.0.1:$tport ssl$listen_h2;
        $http2_on
        server_name _;
        root $TMP/www;
        ssl_certificate $TMP/tls/cert.pem;
        ssl_certificate_key $TMP/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;

        location = / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
        location / {
        }
    }
    server {
        listen 127.0.0.1:$cport$listen_h2;
        $http2_on
        server_name _;
        root $TMP/www;

        location = / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
        location / {
        }
    }
}
EOF
	# The TLS port answers HTTP/1.1 too (ALPN): the probe's.
	if PROBE_TLS=1 start_server nginx-h2 "$tport" / "$H2_WORKERS" "${NGINX[@]}" -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf"; then
		h2_targets nginx "https://127.0.0.1:$tport" "http://127.0.0.1:$cport"
	else
		skip_targets nginx "did not start" h2tls h2tls4k h2c h2c4k
	fi
}

# start_embedded starts the embedded test: one ordinary net/http handler
# (internal/benchapp) under forkd.HTTP with WORKERS workers and no site
# routes, and the same binary as a plain net/http.Server whose GOMAXPROCS is
# forkd's total: WORKERS times the GOMAXPROCS a worker gets (the server CPUs
# shared between the workers, rounded up).
start_embedded() {
	has "$TESTS" embedded || return
	if [[ ! -x $BIN/benchapp ]]; then
		skip_targets forkd "not built" embedded
		skip_targets "Go net/http" "not built" embedded
		return
	fi
	local port cpus procs
	cpus=$(cpu_count "$SERVER_CPUS")
	procs=$((WORKERS * ((cpus + WORKERS - 1) / WORKERS)))
	port=$(free_port)
	cat >"$TMP/benchapp.hcl" <<EOF
workers = $WORKERS
listen {
  address = "127.0.0.1:$port"
}
log {
  level = "warn"
}
EOF
	if start_server benchapp "$port" / "$WORKERS" "$BIN/benchapp" -c "$TMP/benchapp.hcl"; then
		target embedded forkd "$WORKERS (forkd.HTTP)" "http://127.0.0.1:$port/"
	else
		skip_targets forkd "did not start" embedded
	fi
	port=$(free_port)
	if start_server benchapp-plain "$port" / 0 env BENCHAPP_PLAIN="127.0.0.1:$port" GOMAXPROCS="$procs" "$BIN/benchapp"; then
		target embedded "Go net/http" "1 (http.Server, GOMAXPROCS=$procs)" "http://127.0.0.1:$port/"
	else
		skip_targets "Go net/http" "did not start" embedded
	fi
}

start_nethttp() {
	if has "$TESTS" plaintext; then
		if [[ ! -x $BIN/nethttp ]]; then
			skip_targets "Go net/http" "not built" plaintext
		else
			local port
			port=$(free_port)
			if start_server nethttp "$port" / 0 env GOMAXPROCS="$WORKERS" "$BIN/nethttp" -addr "127.0.0.1:$port"; then
				target plaintext "Go net/http" "1 (GOMAXPROCS=$WORKERS)" "http://127.0.0.1:$port/"
			else
				skip_targets "Go net/http" "did not start" plaintext
			fi
		fi
	fi
	start_nethttp_h2
}

# start_nethttp_h2 starts net/http's own HTTP/2 server (the same code as
# golang.org/x/net/http2, which forkd's HTTP/2 is bridged to) for the HTTP/2
# tests, with GOMAXPROCS=H2_WORKERS: the floor of what forkd's HTTP/2 can
# reach without a hand-written protocol engine.
start_nethttp_h2() {
	has_h2_test || return
	if [[ ! -x $BIN/nethttp ]]; then
		skip_targets "Go net/http" "not built" h2tls h2tls4k h2c h2c4k
		return
	fi
	if ((${#H2LOAD[@]} == 0)); then
		skip_targets "Go net/http" "h2load not installed" h2tls h2tls4k h2c h2c4k
		return
	fi
	local port tport cport
	port=$(free_port)
	tport=$(free_port)
	cport=$(free_port)
	if start_server nethttp-h2 "$port" / 0 env GOMAXPROCS="$H2_WORKERS" "$BIN/nethttp" -addr "127.0.0.1:$port" \
		-h2c-addr "127.0.0.1:$cport" -tls-addr "127.0.0.1:$tport" \
		-cert "$TMP/tls/cert.pem" -key "$TMP/tls/key.pem" -file "$TMP/www/4k.bin"; then
		h2_targets "Go net/http" "https://127.0.0.1:$tport" "http://127.0.0.1:$cport"
	else
		skip_targets "Go net/http" "did not start" h2tls h2tls4k h2c h2c4k
	fi
}

start_fasthttp() {
	has "$TESTS" plaintext || return
	[[ -x $BIN/fasthttp ]] || { skip_targets "fasthttp prefork" "not built" plaintext; return; }
	local port
	port=$(free_port)
	# prefork starts GOMAXPROCS children, each with GOMAXPROCS=1.
	if start_server fasthttp "$port" / "$WORKERS" env GOMAXPROCS="$WORKERS" "$BIN/fasthttp" -addr "127.0.0.1:$port"; then
		target plaintext "fasthttp prefork" "$WORKERS" "http://127.0.0.1:$port/"
	else
		skip_targets "fasthttp prefork" "did not start" plaintext
	fi
}

# nginx_common DIR WORKERS MIME prints what both nginx configurations start
# with: the main context, events, and the http block's settings up to its
# servers (left open).
nginx_common() {
	local d=$1 mime=$3
	cat <<EOF
user root;
daemon off;
master_process on;
worker_processes $2;
worker_rlimit_nofile 65536;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;

events {
    worker_connections 16384;
}

http {
    $mime
    default_type application/octet-stream;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 75s;
    keepalive_requests 10000000;
    client_body_temp_path $d/tmp/client;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;
EOF
}

start_nginx() {
	has "$TESTS" plaintext || has "$TESTS" static4k || has "$TESTS" static1m || has "$TESTS" churn || has_tls_test || has_proxy_test || return
	if ((${#NGINX[@]} == 0)); then
		skip_targets nginx "not installed" plaintext static4k static1m churn tls tlshandshake tls1m proxy proxychurn
		return
	fi
	local port tport pport d=$TMP/nginx
	port=$(free_port)
	tport=$(free_port)
	pport=$(free_port)
	mkdir -p "$d/logs" "$d/tmp"
	local mime="types { application/octet-stream bin; }"
	[[ -n $MIME ]] && mime="include $MIME;"
	# The TLS server only when a TLS test runs: its certificate is made
	# only then.
	local tls_server=""
	if has_tls_test; then
		tls_server=$(cat <<TLS
    # The same certificate as forkd's; TLS 1.2 and 1.3, session tickets
    # (nginx's default) and a shared session cache, as a site would have.
    server {
        listen 127.0.0.1:$tport ssl;
        server_name _;
        root $TMP/www;
        ssl_certificate $TMP/tls/cert.pem;
        ssl_certificate_key $TMP/tls/key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:SSL:10m;

        location = / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
        location / {
        }
    }
TLS
)
	fi
	# The proxy server only when a proxy test runs: the upstream is started
	# only then. HTTP/1.1 to the upstream with Connection cleared is what
	# keepalive needs (nginx's documentation of the upstream keepalive). The
	# X-Forwarded fields are forkd's defaults, so that the upstream parses the
	# same request from both proxies.
	# PROXY_KEEPALIVE=0 leaves nginx's keepalive out (it takes no 0): no
	# idle connections kept, as forkd's keepalive = 0.
	local proxy_server="" keepalive=""
	((PROXY_KEEPALIVE > 0)) && keepalive="keepalive $PROXY_KEEPALIVE;"
	if has_proxy_test; then
		proxy_server=$(cat <<PROXY
    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        $keepalive
    }
    server {
        listen 127.0.0.1:$pport;
        server_name _;
        location / {
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
        }
    }
PROXY
)
	fi
	cat >"$d/nginx.conf" <<EOF
# Generated by bench/run.sh.
$(nginx_common "$d" "$WORKERS" "$mime")

    server {
        listen 127.0.0.1:$port;
        server_name _;
        root $TMP/www;

        location = / {
            default_type text/plain;
            return 200 "Hello, World!";
        }
        location / {
        }
    }

$tls_server
$proxy_server
}
EOF
	if ! start_server nginx "$port" / "$WORKERS" "${NGINX[@]}" -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf"; then
		skip_targets nginx "did not start" plaintext static4k static1m churn tls tlshandshake tls1m proxy proxychurn
		return
	fi
	if has_proxy_test; then
		if probe "$pport" /; then
			proxy_targets nginx "http://127.0.0.1:$pport/"
		else
			skip_targets nginx "did not start" proxy proxychurn
		fi
	fi
	has "$TESTS" plaintext && target plaintext nginx "$WORKERS" "http://127.0.0.1:$port/"
	has "$TESTS" churn && target churn nginx "$WORKERS" "http://127.0.0.1:$port/"
	has "$TESTS" static4k && target static4k nginx "$WORKERS" "http://127.0.0.1:$port/4k.bin"
	has "$TESTS" static1m && target static1m nginx "$WORKERS" "http://127.0.0.1:$port/1m.bin"
	if has_tls_test; then
		if PROBE_TLS=1 probe "$tport" /; then
			tls_targets nginx "https://127.0.0.1:$tport"
		else
			skip_targets nginx "did not start" tls tlshandshake tls1m
		fi
	fi
}

# ---------------------------------------------------------------- proxy

has_proxy_test() { has "$TESTS" proxy || has "$TESTS" proxychurn; }

# proxy_targets SERVER URL registers the proxy tests: keep-alive clients,
# and a new client connection per request (Connection: close).
proxy_targets() {
	has "$TESTS" proxy && target proxy "$1" "$WORKERS" "$2"
	has "$TESTS" proxychurn && target proxychurn "$1" "$WORKERS" "$2"
}

# start_upstream starts the one upstream every proxy test shares (fasthttp,
# GOMAXPROCS=1, on the server CPUs as the proxies are) and sets
# UPSTREAM_PORT; without it the proxy tests are dropped.
UPSTREAM_PORT=""
start_upstream() {
	has_proxy_test || return
	local port
	port=$(free_port)
	if [[ -x $BIN/upstream ]] && RSS_NOTE="" start_server upstream "$port" / 0 env GOMAXPROCS=1 "$BIN/upstream" -addr "127.0.0.1:$port"; then
		UPSTREAM_PORT=$port
		return
	fi
	warn "the proxy upstream (bench/bin/upstream) did not start; the proxy tests are skipped"
	TESTS=$(tr , '\n' <<<"$TESTS" | grep -vx -e proxy -e proxychurn | paste -sd,)
}

# ---------------------------------------------------------------- TLS

has_tls_test() { has "$TESTS" tls || has "$TESTS" tlshandshake || has "$TESTS" tls1m; }

# tls_targets SERVER BASE registers the TLS tests: keep-alive hello over
# HTTPS, a new handshake per request (Connection: close), and 1 MiB static.
tls_targets() {
	has "$TESTS" tls && target tls "$1" "$WORKERS" "$2/"
	has "$TESTS" tlshandshake && target tlshandshake "$1" "$WORKERS" "$2/" "Connection: close"
	has "$TESTS" tls1m && target tls1m "$1" "$WORKERS" "$2/1m.bin"
}

# One ECDSA P-256 certificate, made once, serves forkd and nginx alike.
if has_tls_test || has_h2_test; then
	command -v openssl >/dev/null || die "openssl not found (for the TLS tests). Install it with: apt-get install -y openssl"
	mkdir -p "$TMP/tls"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=127.0.0.1 -keyout "$TMP/tls/key.pem" -out "$TMP/tls/cert.pem" 2>"$TMP/tls/openssl.log" ||
		die "openssl could not make the test certificate: $(cat "$TMP/tls/openssl.log")"
fi

# ---------------------------------------------------------------- main

log "servers on CPUs $SERVER_CPUS ($WORKERS workers), wrk on CPUs $CLIENT_CPUS ($THREADS threads), $CONNS connections, $DURATION per run, $REPEAT round(s)"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
start_upstream
IFS=, read -ra server_list <<<"$SERVERS"
for s in "${server_list[@]}"; do
	RSS_NOTE=""
	case $s in
	forkd) start_forkd ;;
	nethttp) start_nethttp ;;
	fasthttp) start_fasthttp ;;
	nginx) start_nginx; RSS_NOTE=""; start_nginx_h2; RSS_NOTE=""; start_nginx_compress ;;
	*) warn "unknown server $s (want $ALL_SERVERS)" ;;
	esac
done
start_embedded
COMPRESS_SIZES=""
has_compress_test && COMPRESS_SIZES=$(compress_sizes)
for ((round = 0; round < REPEAT; round++)); do measure_round "$round"; done
stop_all
rows

# ratio A B prints A/B with two decimals, or "—" when either is missing.
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a == "" || b == "" || b == 0) print "—"; else printf "%.2f", a / b }'; }

report() {
	local cpu kernel
	cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
	kernel=$(uname -r)
	echo "forkd bench — $(date -u +%Y-%m-%dT%H:%MZ), $cpu, $NCPU CPUs, Linux $kernel"
	echo "load average before the run: $LOAD0"
	echo "servers on CPUs $SERVER_CPUS, $WORKERS workers; wrk on CPUs $CLIENT_CPUS, $THREADS threads, $CONNS keep-alive connections (churn: $CHURN_CONNS, Connection: close), $DURATION per run, median of $REPEAT interleaved round(s)"
	echo
	echo "| test | server | workers | req/s | MiB/s | p50 ms | p99 ms | server CPU µs/req | errors | idle RSS MiB (master / per worker) |"
	echo "|---|---|---|---:|---:|---:|---:|---:|---:|---|"
	local t
	IFS=, read -ra tl <<<"$ALL_TESTS"
	for t in "${tl[@]}"; do printf '%s' "${ROWS[$t]:-}"; done
	echo
	echo "| forkd ÷ peer | req/s | p99 | server CPU per request |"
	echo "|---|---:|---:|---:|"
	local peer
	for peer in nginx "fasthttp prefork" "Go net/http"; do
		[[ -n ${RATE[plaintext:$peer]:-} ]] || continue
		echo "| plaintext ÷ $peer | $(ratio "${RATE[plaintext:forkd]:-}" "${RATE[plaintext:$peer]}") | $(ratio "${P99[plaintext:forkd]:-}" "${P99[plaintext:$peer]}") | $(ratio "${CPU[plaintext:forkd]:-}" "${CPU[plaintext:$peer]}") |"
	done
	if [[ -n ${RATE[embedded:Go net/http]:-} ]]; then
		echo "| embedded net/http app: forkd.HTTP ÷ net/http.Server (same cores) | $(ratio "${RATE[embedded:forkd]:-}" "${RATE[embedded:Go net/http]}") | $(ratio "${P99[embedded:forkd]:-}" "${P99[embedded:Go net/http]}") | $(ratio "${CPU[embedded:forkd]:-}" "${CPU[embedded:Go net/http]}") |"
	fi
	for t in static4k static1m churn tls tlshandshake tls1m proxy proxychurn compress compress0 h2tls h2tls4k h2c h2c4k; do
		[[ -n ${RATE[$t:nginx]:-} ]] || continue
		echo "| $t ÷ nginx | $(ratio "${RATE[$t:forkd]:-}" "${RATE[$t:nginx]}") | $(ratio "${P99[$t:forkd]:-}" "${P99[$t:nginx]:-}") | $(ratio "${CPU[$t:forkd]:-}" "${CPU[$t:nginx]}") |"
	done
	echo
	echo "Server CPU is all non-idle time on the server CPUs during the measured runs (kernel and"
	echo "softirq included), divided by the requests. When wrk saturates its own CPUs, req/s"
	echo "tie and this column still tells the servers apart."
	if has_compress_test; then
		echo
		echo "compress rows: a 64 KiB JavaScript file (bench/testdata/app.js), $COMPRESS_WORKERS worker(s) per server;"
		echo "compress: forkd with its cache of compressed variants (Accept-Encoding: $COMPRESS_AE, so zstd);"
		echo "compress0: forkd with cache = \"0\" and gzip level 1 (Accept-Encoding: gzip); nginx gzip on,"
		echo "level 1, in both (Accept-Encoding: gzip). Body bytes per response: $COMPRESS_SIZES."
	fi
	if has_h2_test; then
		echo
		echo "HTTP/2 rows (h2tls, h2tls4k: h2 over TLS; h2c, h2c4k: h2c with prior knowledge; hello and"
		echo "static 4 KiB) are h2load's: $H2_CONNS connections × $H2_STREAMS concurrent streams, $H2_WORKERS worker(s)"
		echo "per server. h2load gives no latency percentiles: their p50 and p99 columns hold the mean"
		echo "and the maximum of its request time, labelled, and their ratios have no p99."
	fi
}
echo >&2
report >"$TMP/report.md"
cat "$TMP/report.md"
if [[ -n $OUT ]]; then
	mkdir -p "$(dirname "$OUT")"
	cp "$TMP/report.md" "$OUT"
fi

# chart draws the report as an SVG chart (req/s and p99 per test and
# server, internal/benchchart) to CHART and copies it to CHART_LATEST.
chart() {
	local out=$CHART latest=${CHART_LATEST:-$BENCH_DIR/chart-latest.svg} cmd=()
	if [[ -z $out && -n $OUT ]]; then
		out=${OUT%.md}.svg
	elif [[ -z $out ]]; then
		out=$BENCH_DIR/results/run-$(date -u +%Y%m%dT%H%M%SZ).svg
	fi
	if [[ -x $BIN/benchchart ]]; then
		cmd=("$BIN/benchchart")
	elif command -v go >/dev/null; then
		cmd=(go -C "$ROOT" run ./internal/benchchart/cmd/benchchart)
	else
		warn "no bench/bin/benchchart and no go: no chart (bench/pack.sh builds it)"
		return
	fi
	mkdir -p "$(dirname "$out")"
	if "${cmd[@]}" -o "$out" "$TMP/report.md"; then
		cp "$out" "$latest"
		log "chart: $out (and $latest)"
	else
		warn "the chart failed; the table above is the run's result"
	fi
}
chart
