#!/usr/bin/env bash
# test/lib.sh: shared by test/run-all.sh, examples/demo.sh and bench/run.sh.
# Installs what the project needs (Debian, as root), makes a private copy
# of the project that the unprivileged PostgreSQL user can read and write,
# builds and installs the extension, and starts/stops throwaway clusters.
# Nothing here depends on where the checkout lives or on its permissions.
#
# The PostgreSQL major version comes from the environment: PG_MAJOR (15 by
# default: Debian 12's), and PG_CONFIG, the pg_config of the server to build
# against and test (by default Debian's /usr/lib/postgresql/$PG_MAJOR).
# Every build, install and test of a run uses that one PG_CONFIG.

PG_MAJOR=${PG_MAJOR:-15}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/$PG_MAJOR/bin/pg_config}
export PG_MAJOR PG_CONFIG

# PGBIN: the server's programs; PGXS_DIR: its PGXS tree (pg_regress, the TAP
# modules).  Known once pg_config is installed: set again by install_deps.
pg_paths() {
	if [ -x "$PG_CONFIG" ]; then
		PGBIN=$("$PG_CONFIG" --bindir)
		PGXS_DIR=$(dirname "$("$PG_CONFIG" --pgxs)")/../..
		PGXS_DIR=$(cd "$PGXS_DIR" && pwd)
	else
		PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
		PGXS_DIR=/usr/lib/postgresql/$PG_MAJOR/lib/pgxs
	fi
}
pg_paths
# PostgreSQL refuses to run as root: servers and test runners run as this user.
RUN_USER=${STORAGE_RUN_USER:-postgres}
PROJECT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Same results whatever locale the caller has (often none at all as root);
# C.UTF-8 ships with libc-bin on every Debian system.
export LC_ALL=C.UTF-8
unset LANG LANGUAGE

die() { echo "error: $*" >&2; exit 1; }

need_root() {
	[ "$(id -u)" = 0 ] || die "run this as root: it installs packages and the extension"
}

# Packages, installed only when missing so that a second run is quick.
# One package per line; add yours at the end.
DEPS="
build-essential
pkg-config
postgresql-$PG_MAJOR
postgresql-server-dev-$PG_MAJOR
postgresql-$PG_MAJOR-cron
postgresql-$PG_MAJOR-plproxy
libpq-dev
libcmocka-dev
libipc-run-perl
procps
pgbouncer
postgresql-$PG_MAJOR-pgaudit
libcurl4-openssl-dev
libjson-c-dev
"

install_deps() {
	local missing="" p
	sh "$PROJECT_DIR/test/client/install-dynalite.sh"	# the client suite's DynamoDB server
	for p in $DEPS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && { pg_paths; return 0; }
	echo "== installing:$missing"
	# Debian would otherwise create and start a "main" cluster we do not use.
	mkdir -p /etc/postgresql-common
	[ -f /etc/postgresql-common/createcluster.conf ] ||
		echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
	# other runs on this machine may hold apt's locks for a while
	apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
		-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
		$missing >/dev/null || die "apt-get install$missing failed"
	id "$RUN_USER" >/dev/null 2>&1 || die "user $RUN_USER missing after installing PostgreSQL"
	pg_paths
}

as_user() {
	runuser -u "$RUN_USER" -- env PATH="$PGBIN:/usr/local/bin:/usr/bin:/bin" "$@"
}

# WORK: a fresh directory owned by RUN_USER holding a copy of the project
# (without .git) at $WORK/src.  Removed by cleanup().
prepare_copy() {
	WORK=$(mktemp -d /tmp/storage-run.XXXXXX)
	chmod 755 "$WORK"
	mkdir "$WORK/src"
	(cd "$PROJECT_DIR" && tar --exclude=.git --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' -cf - .) | tar -xf - -C "$WORK/src"
	chown -R "$RUN_USER" "$WORK"
	# PostgreSQL's programs chdir back to the current directory, which may be
	# one RUN_USER cannot enter (a checkout under /root)
	cd "$WORK"
}

# Builds as RUN_USER with warnings as errors, installs as root, both with
# the same PG_CONFIG.
build_install() {
	[ -x "$PG_CONFIG" ] || die "no pg_config at $PG_CONFIG"
	as_user make -s -C "$WORK/src" PG_CONFIG="$PG_CONFIG" WERROR=-Werror >"$WORK/build.log" 2>&1 ||
		{ cat "$WORK/build.log"; die "build failed"; }
	make -s -C "$WORK/src" PG_CONFIG="$PG_CONFIG" install >>"$WORK/build.log" 2>&1 ||
		{ cat "$WORK/build.log"; die "install failed"; }
}

# start_cluster NAME [postgresql.conf lines...]: a cluster in $WORK/NAME,
# reachable only through a Unix socket in that directory.  Sets PGHOST/PGPORT.
start_cluster() {
	local name=$1 dir="$WORK/$1"
	shift
	as_user mkdir -p "$dir"
	# UTF8 whatever the caller's locale: a bare root shell has no LANG, and
	# initdb would then make an SQL_ASCII cluster (C.UTF-8 is in libc-bin)
	as_user initdb -D "$dir/data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 \
		>"$dir/initdb.log" 2>&1 ||
		{ cat "$dir/initdb.log"; die "initdb failed"; }
	{
		echo "port = 5432"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$dir'"
		echo "fsync = off"
		echo "max_prepared_transactions = 10"
		for line in "$@"; do echo "$line"; done
	} >>"$dir/data/postgresql.conf"
	as_user pg_ctl -D "$dir/data" -l "$dir/server.log" -w start >/dev/null ||
		{ cat "$dir/server.log"; die "server did not start"; }
	export PGHOST="$dir" PGPORT=5432 PGUSER=postgres
}

stop_cluster() {
	local dir="$WORK/$1"
	[ -f "$dir/data/postmaster.pid" ] &&
		as_user pg_ctl -D "$dir/data" -m fast -w stop >/dev/null 2>&1
	return 0
}

cleanup() {
	[ -n "${WORK:-}" ] && [ -d "$WORK" ] || return 0
	local d
	for d in "$WORK"/*/data; do
		[ -f "$d/postmaster.pid" ] && as_user pg_ctl -D "$d" -m immediate -w stop >/dev/null 2>&1
	done
	[ -n "${KEEP_WORK:-}" ] && { echo "kept $WORK"; return 0; }
	rm -rf "$WORK"
}
