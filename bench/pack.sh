#!/usr/bin/env bash
# pack.sh makes bench/ self-contained for a machine that gets only a copy of
# the working tree (no Go, no apt): it builds bench/bin/{forkd,nethttp,fasthttp,upstream,benchchart}
# and copies wrk, nginx, h2load (when installed: the HTTP/2 tests'), every
# shared library they link (per ldd), their dynamic loader and nginx's
# mime.types into bench/.work/tools/:
#
#   bench/.work/tools/bin/{wrk,nginx,h2load}
#   bench/.work/tools/lib/*.so*
#   bench/.work/tools/ld.so          the loader the libraries came with
#   bench/.work/tools/conf/mime.types
#
# run.sh starts the packed tools as `ld.so --library-path lib bin/TOOL`, so the
# copied libc always runs with its own loader. Both bench/bin and bench/.work
# are git-ignored; carry them to the remote machine, then run
# `bench/run.sh --no-build` there (add --packed to prefer the packed tools).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T="$BENCH_DIR/.work/tools"

if command -v go >/dev/null; then
	"$BENCH_DIR/run.sh" --build-only
	[[ -x $BENCH_DIR/bin/forkd ]] || echo "pack.sh: WARNING: bench/bin/forkd is missing; forkd rows will be skipped" >&2
else
	echo "pack.sh: go is not on PATH; bench/bin is left as it is" >&2
fi

find_tool() {
	command -v "$1" 2>/dev/null && return
	[[ -x /usr/sbin/$1 ]] && { echo "/usr/sbin/$1"; return; }
	echo "pack.sh: $1 not found; install it with: apt-get install -y $1" >&2
	exit 1
}
WRK=$(find_tool wrk)
NGINX=$(find_tool nginx)
TOOLS=(wrk nginx)
H2LOAD=$(command -v h2load || true)
if [[ -n $H2LOAD ]]; then
	TOOLS+=(h2load)
else
	echo "pack.sh: h2load not found; the HTTP/2 tests will be skipped (apt-get install -y nghttp2-client)" >&2
fi

rm -rf "$T"
mkdir -p "$T/bin" "$T/lib" "$T/conf"
cp -L "$WRK" "$T/bin/wrk"
cp -L "$NGINX" "$T/bin/nginx"
[[ -n $H2LOAD ]] && cp -L "$H2LOAD" "$T/bin/h2load"

# ldd prints "name => /path (addr)" for libraries and "/path/ld-linux... (addr)"
# for the loader; linux-vdso has no file and is skipped.
loader=""
for exe in "$WRK" "$NGINX" ${H2LOAD:+"$H2LOAD"}; do
	while read -r a b c _; do
		if [[ $b == "=>" && $c == /* ]]; then
			cp -L "$c" "$T/lib/$a"
		elif [[ $a == /* && $a == *ld-linux* ]]; then
			loader=$a
		elif [[ $b == "=>" && $c == not ]]; then
			echo "pack.sh: $exe: library $a not found" >&2
			exit 1
		fi
	done < <(ldd "$exe")
done
[[ -n $loader ]] || { echo "pack.sh: no dynamic loader in ldd output" >&2; exit 1; }
cp -L "$loader" "$T/ld.so"

mime=""
for m in /etc/nginx/mime.types /usr/local/nginx/conf/mime.types; do
	[[ -r $m ]] && { mime=$m; break; }
done
if [[ -n $mime ]]; then
	cp "$mime" "$T/conf/mime.types"
else
	echo 'types { text/html html; application/octet-stream bin; }' >"$T/conf/mime.types"
fi

# Check that the set is complete: every library must resolve inside $T/lib.
ok=1
for tool in "${TOOLS[@]}"; do
	while read -r a b c _; do
		if [[ $b == "=>" && $c != "$T/lib/"* && $c != "$T/ld.so" ]]; then
			echo "pack.sh: $tool: $a resolves to $c, outside the pack" >&2
			ok=0
		fi
	done < <("$T/ld.so" --library-path "$T/lib" --list "$T/bin/$tool")
done
((ok)) || exit 1
"$T/ld.so" --library-path "$T/lib" "$T/bin/wrk" --version 2>&1 | head -1 || true
"$T/ld.so" --library-path "$T/lib" "$T/bin/nginx" -v
[[ -n $H2LOAD ]] && "$T/ld.so" --library-path "$T/lib" "$T/bin/h2load" --version

echo "packed into $T ($(du -sh "$T" | cut -f1)); binaries in $BENCH_DIR/bin ($(du -sh "$BENCH_DIR/bin" | cut -f1))"
echo "carry bench/bin and bench/.work, then run: bench/run.sh --no-build --packed"
