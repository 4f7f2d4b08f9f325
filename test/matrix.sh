#!/usr/bin/env bash
# test/matrix.sh: every supported PostgreSQL version and the Debian
# packages (bash test/run-all.sh --matrix; what CI runs).  As root on
# Debian 12:
#
#   15          test/run-all.sh on the host (Debian 12's PostgreSQL 15)
#   17, 18      test/run-all.sh in a trixie / forky chroot (test/chroot.sh)
#   15-cassert  test/run-all.sh against PostgreSQL 15 built from Debian's
#               source with assertions, in a bookworm chroot (test/cassert.sh)
#   packages    the .deb of each version built in its release's chroot,
#               installed into a fresh chroot and tested there
#               (test/package.sh)
#
# Each part's output goes to a log under $MATRIX_LOGS (shown when the part
# fails); a summary per part and the line "N passed, N failed" counting
# every test of every part end the output.
#
# Chroots and the assertion-enabled build are cached in $CI_CACHE
# (/var/cache/storage-ci) and reused; remove that directory to start from
# nothing.  MATRIX_PARTS="15 17 ..." runs only some parts.  MATRIX_HOST_LOCK
# names a lock file to hold (flock) while the host's PostgreSQL 15 is used,
# for machines where others install into it too.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
source "$HERE/chroot.sh"

PARTS=${MATRIX_PARTS:-15 17 18 15-cassert packages}
PASSED=0
FAILED=0
SUMMARY=""
MATRIX_START=$(date +%s)

# part NAME COMMAND...: runs one part, counts its last "N passed, N failed"
part() {
	local name=$1 log="$MATRIX_LOGS/$1.log" start secs line p f rc
	shift
	echo "== $name: $* (log: $log)"
	start=$(date +%s)
	"$@" >"$log" 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	line=$(grep -oE '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
	p=$(echo "$line" | awk '{print $1}')
	f=$(echo "$line" | awk '{print $3}')
	p=${p:-0}
	f=${f:-0}
	# a part that fails without saying what failed counts as one failure
	[ "$rc" != 0 ] && [ "$f" = 0 ] && f=1
	if [ "$f" != 0 ]; then
		echo "---- $name failed; the end of its log:"
		tail -n 150 "$log"
	fi
	grep -E '^[A-Za-z_-]+ +[0-9]+ passed, +[0-9]+ failed$' "$log" | sed "s/^/   $name: /"
	echo "   $name: $p passed, $f failed in ${secs}s"
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	SUMMARY="$SUMMARY$(printf '%-12s %5d passed, %4d failed  %5ds' "$name" "$p" "$f" "$secs")\n"
}

host_15() {
	if [ -n "${MATRIX_HOST_LOCK:-}" ]; then
		local t=$(date +%s)
		PG_MAJOR=15 PG_CONFIG= flock "$MATRIX_HOST_LOCK" bash -c \
			'echo "(waited $(($(date +%s) - $1))s for $2)"; bash "$3"' _ "$t" \
			"$MATRIX_HOST_LOCK" "$HERE/run-all.sh"
	else
		PG_MAJOR=15 PG_CONFIG= bash "$HERE/run-all.sh"
	fi
}

chroot_suite() {
	PG_MAJOR=$1 PG_CONFIG= suite_in_chroot "$(release_of "$1")"
}

main() {
	need_root
	mkdir -p "$CI_CACHE"
	MATRIX_LOGS=${MATRIX_LOGS:-$(mktemp -d /tmp/storage-matrix.XXXXXX)}
	mkdir -p "$MATRIX_LOGS"
	local p
	for p in $PARTS; do
		case $p in
		15) part pg15 host_15 ;;
		17 | 18) part "pg$p" chroot_suite "$p" ;;
		15-cassert) part pg15-cassert bash "$HERE/cassert.sh" ;;
		packages) part packages bash "$HERE/package.sh" ;;
		*) die "unknown part $p (15 17 18 15-cassert packages)" ;;
		esac
	done
	echo
	printf "%b" "$SUMMARY"
	echo "(matrix: $(($(date +%s) - MATRIX_START))s; logs in $MATRIX_LOGS)"
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
}

main "$@"
