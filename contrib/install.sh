#!/bin/sh
# install.sh installs forkd, its systemd unit and socket, its logrotate file
# and, unless one exists, a starting /etc/forkd/config.hcl.
#
#   contrib/install.sh [-b path/to/forkd]
#
# Without -b it builds ./cmd/forkd with `go build` first. PREFIX (default
# /usr/local) is where the binary goes (PREFIX/bin/forkd, which the
# installed unit runs); DESTDIR (default empty) is prepended to every path,
# for packaging; SYSCONFDIR (default /etc) and UNITDIR (default
# /etc/systemd/system) place the configuration and the units. It does not
# start or enable anything: `systemctl daemon-reload && systemctl enable
# --now forkd` does.
set -eu

usage() {
	echo "usage: [DESTDIR=dir] [PREFIX=/usr/local] $0 [-b path/to/forkd]" >&2
	exit 2
}

bin=
while getopts b: opt; do
	case $opt in
	b) bin=$OPTARG ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage

repo=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
UNITDIR=${UNITDIR:-/etc/systemd/system}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$bin" ]; then
	(cd "$repo" && go build -o "$tmp/forkd" ./cmd/forkd)
	bin=$tmp/forkd
fi

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$UNITDIR" "$DESTDIR$SYSCONFDIR/logrotate.d" "$DESTDIR$SYSCONFDIR/forkd"
install -m 0755 "$bin" "$DESTDIR$PREFIX/bin/forkd"
# The units name /usr/local/bin/forkd and /etc/forkd/config.hcl; point them
# at where this install puts the binary and the configuration.
for unit in forkd.service forkd.socket; do
	sed -e "s|/usr/local/bin/forkd|$PREFIX/bin/forkd|g" \
		-e "s|/etc/forkd/|$SYSCONFDIR/forkd/|g" \
		"$repo/contrib/systemd/$unit" >"$tmp/$unit"
	install -m 0644 "$tmp/$unit" "$DESTDIR$UNITDIR/$unit"
done
install -m 0644 "$repo/contrib/logrotate/forkd" "$DESTDIR$SYSCONFDIR/logrotate.d/forkd"
# Never overwrite an operator's configuration.
if [ ! -e "$DESTDIR$SYSCONFDIR/forkd/config.hcl" ]; then
	install -m 0644 "$repo/contrib/config.hcl" "$DESTDIR$SYSCONFDIR/forkd/config.hcl"
fi
echo "installed forkd in $DESTDIR$PREFIX/bin; units in $DESTDIR$UNITDIR; configuration in $DESTDIR$SYSCONFDIR/forkd"
