#!/usr/bin/env bash
# test/cassert.sh: the whole suite (test/run-all.sh) against PostgreSQL 15
# built with assertions (--enable-cassert --enable-debug), as root.
#
# The direct write path pins buffers, locks tuples and inserts index
# entries itself; an assertion-enabled server (and the extension built
# against it, which gets -DUSE_ASSERT_CHECKING from its pg_config.h) turns
# a mistake there into an immediate failure instead of later corruption.
#
# The server is built from Debian's source package (apt-get source, the
# upstream tree without Debian's patches) in the cached bookworm chroot
# (test/chroot.sh) and installed there under $PREFIX, with only what the
# suites use: the server, its programs, pg_regress/isolation and the TAP
# modules; no contrib.  It is built once and reused while the marker file
# $PREFIX/.storage-ci-complete exists in the chroot.
#
# The TAP tests with third-party server modules (012_pg_cron, 050_pgaudit,
# 050_proxy) are skipped here, saying why: the mirror serves no source
# package of pg_cron, pgaudit or PL/Proxy to build them against this server,
# and Debian's postgresql-15-cron, -pgaudit and -plproxy are built for
# Debian's server, not this one.  They run on every other server of the matrix.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
source "$HERE/chroot.sh"

REL=bookworm
ROOT=$CI_CACHE/$REL/root
PREFIX=/opt/pg15-cassert

build_server() {
	[ -f "$ROOT$PREFIX/$CHROOT_MARK" ] && {
		echo "== using the cached assertion-enabled PostgreSQL 15 ($(cat "$ROOT$PREFIX/$CHROOT_MARK"))"
		return 0
	}
	echo "== building PostgreSQL 15 with assertions in $ROOT$PREFIX"
	local start=$(date +%s)
	CHROOT_ENV="PREFIX" PREFIX=$PREFIX in_chroot "$ROOT" bash -euc '
		apt-get -o DPkg::Lock::Timeout=600 update -qq
		apt-get install -y -qq -o DPkg::Lock::Timeout=600 build-essential dpkg-dev \
			libreadline-dev zlib1g-dev libipc-run-perl pkg-config bison flex >/dev/null
		rm -rf "$PREFIX" /usr/src/storage-ci
		mkdir -p /usr/src/storage-ci
		cd /usr/src/storage-ci
		apt-get source --download-only -qq postgresql-15 2>&1 | grep -v unsandboxed || :
		# the upstream tree: Debian patches its layout for its own packaging
		dpkg-source --skip-patches -x postgresql-15_*.dsc pg >/dev/null
		cd pg
		./configure -q --prefix="$PREFIX" --enable-cassert --enable-debug \
			--enable-tap-tests --without-icu --without-llvm
		make -s -j2 >/dev/null
		make -s install >/dev/null
		# what gives the extension built against it -DUSE_ASSERT_CHECKING
		grep -q "^#define USE_ASSERT_CHECKING 1" \
			"$("$PREFIX/bin/pg_config" --includedir-server)/pg_config.h"
		cd / && rm -rf /usr/src/storage-ci
	' || die "building the assertion-enabled server failed"
	echo "built $(date -u +%FT%TZ) in $(($(date +%s) - start))s" >"$ROOT$PREFIX/$CHROOT_MARK"
	echo "== built in $(($(date +%s) - start))s"
}

need_root
make_root "$REL" || die "no $REL chroot"
build_server
STORAGE_TEST_SKIP_MODULES="no third-party modules (pg_cron, pgaudit, plproxy) for the assertion-enabled server: the mirror has no source to build them" \
	PG_MAJOR=15 PG_CONFIG=$PREFIX/bin/pg_config suite_in_chroot "$REL"
