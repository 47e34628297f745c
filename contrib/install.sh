#!/bin/sh
# install.sh installs forkd, its systemd units, its sysusers.d and logrotate
# files, its documentation and, unless one exists, a starting
# /etc/forkd/config.hcl; on this machine (no DESTDIR) it also creates the
# forkd user and group the workers run as. Run it again to upgrade: it
# changes nothing else and never starts or enables anything.
set -eu

usage() {
	cat <<EOF
usage: [DESTDIR=dir] [PREFIX=/usr/local] $0 [-h] [-b path/to/forkd]

  -b path   install this forkd binary (default: go build ./cmd/forkd first)
  -h        print this help and exit

Environment (as in a Makefile):
  PREFIX       /usr/local: PREFIX/bin/forkd, the one the units run
  DESTDIR      empty: prepended to every path, for packaging; with it,
               no user is created on this machine
  SYSCONFDIR   /etc: SYSCONFDIR/forkd/config.hcl, SYSCONFDIR/logrotate.d
  UNITDIR      /etc/systemd/system (/usr/lib/systemd/system if PREFIX=/usr)
  SYSUSERSDIR  /etc/sysusers.d (/usr/lib/sysusers.d if PREFIX=/usr)
  DOCDIR       PREFIX/share/doc/forkd

Then: systemctl daemon-reload && systemctl enable --now forkd.service
(or, with socket activation: systemctl enable --now forkd.socket forkd.service)
EOF
}

bin=
while getopts hb: opt; do
	case $opt in
	b) bin=$OPTARG ;;
	h)
		usage
		exit 0
		;;
	*)
		usage >&2
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
if [ $# -ne 0 ]; then
	usage >&2
	exit 2
fi

repo=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=${SYSCONFDIR:-/etc}
# A package (PREFIX=/usr) puts its units and sysusers.d file where
# distributions do, which leaves /etc to the administrator; any other
# install is the administrator's own and goes to /etc, where systemd finds
# it whatever PREFIX is.
if [ "$PREFIX" = /usr ]; then
	UNITDIR=${UNITDIR:-/usr/lib/systemd/system}
	SYSUSERSDIR=${SYSUSERSDIR:-/usr/lib/sysusers.d}
else
	UNITDIR=${UNITDIR:-/etc/systemd/system}
	SYSUSERSDIR=${SYSUSERSDIR:-/etc/sysusers.d}
fi
DOCDIR=${DOCDIR:-$PREFIX/share/doc/forkd}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -z "$bin" ]; then
	(cd "$repo" && go build -o "$tmp/forkd" ./cmd/forkd)
	bin=$tmp/forkd
fi

install -d "$DESTDIR$PREFIX/bin" "$DESTDIR$UNITDIR" "$DESTDIR$SYSUSERSDIR" \
	"$DESTDIR$SYSCONFDIR/logrotate.d" "$DESTDIR$SYSCONFDIR/forkd" "$DESTDIR$DOCDIR/docs"
install -m 0755 "$bin" "$DESTDIR$PREFIX/bin/forkd"
# The units name /usr/local/... and /etc/forkd/; point them at where this
# install puts the binary, the documentation and the configuration.
for unit in forkd.service forkd.socket; do
	sed -e "s|/usr/local/|$PREFIX/|g" \
		-e "s|/etc/forkd/|$SYSCONFDIR/forkd/|g" \
		"$repo/contrib/systemd/$unit" >"$tmp/$unit"
	install -m 0644 "$tmp/$unit" "$DESTDIR$UNITDIR/$unit"
done
install -m 0644 "$repo/contrib/sysusers/forkd.conf" "$DESTDIR$SYSUSERSDIR/forkd.conf"
install -m 0644 "$repo/contrib/logrotate/forkd" "$DESTDIR$SYSCONFDIR/logrotate.d/forkd"
install -m 0644 "$repo/README.md" "$repo/LICENSE" "$DESTDIR$DOCDIR/"
for doc in "$repo"/docs/*.md; do
	install -m 0644 "$doc" "$DESTDIR$DOCDIR/docs/"
done
# Never overwrite an operator's configuration.
if [ ! -e "$DESTDIR$SYSCONFDIR/forkd/config.hcl" ]; then
	install -m 0644 "$repo/contrib/config.hcl" "$DESTDIR$SYSCONFDIR/forkd/config.hcl"
fi

# On this machine, create what the installed configuration needs before
# systemd starts it: the workers' user and group, and /var/log/forkd, so
# that `forkd -t` passes (systemd creates it too, LogsDirectory=).
if [ -z "$DESTDIR" ]; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers "$SYSUSERSDIR/forkd.conf"
	elif ! id -u forkd >/dev/null 2>&1; then
		# The fallback for a machine without systemd-sysusers: the same
		# user as contrib/sysusers/forkd.conf.
		group=--user-group
		if getent group forkd >/dev/null 2>&1; then
			group="--gid forkd"
		fi
		# $group is split into words on purpose.
		useradd --system $group --no-create-home --home-dir / \
			--shell /usr/sbin/nologin --comment "forkd web server workers" forkd
	fi
	install -d -m 0755 /var/log/forkd
fi

echo "installed forkd in $DESTDIR$PREFIX/bin; units in $DESTDIR$UNITDIR; configuration in $DESTDIR$SYSCONFDIR/forkd; documentation in $DESTDIR$DOCDIR"
# Units in /etc/systemd/system (an earlier install's) hide these.
if [ "$UNITDIR" != /etc/systemd/system ] && [ -e "$DESTDIR/etc/systemd/system/forkd.service" ]; then
	echo "warning: $DESTDIR/etc/systemd/system/forkd.service overrides $DESTDIR$UNITDIR/forkd.service; remove it (and forkd.socket) unless you edited it on purpose" >&2
fi
