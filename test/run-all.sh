#!/usr/bin/env bash
# test/run-all.sh: runs every test of the project against real PostgreSQL
# servers and ends with the line "N passed, N failed".  Run as root on
# Debian: it installs what it needs, then builds and runs everything as
# the unprivileged user $RUN_USER in a private temporary copy.
#
# The suites are the Makefile's targets (make installcheck,
# prove_installcheck, check-client) and the scripts of test/pooler and
# examples/; this script only prepares the copy and the servers they run
# against, and counts what they report.
#
#   bash test/run-all.sh            one PostgreSQL: PG_MAJOR (default 15, the
#                                   host's) or the server of PG_CONFIG
#   bash test/run-all.sh --matrix   every supported version, the
#                                   assertion-enabled server and the Debian
#                                   packages (test/matrix.sh; what CI runs)
set -uo pipefail
if [ "${1:-}" = --matrix ]; then
	exec bash "$(dirname "${BASH_SOURCE[0]}")/matrix.sh"
fi
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PASSED=0
FAILED=0
SUMMARY=""

record() {					# record SUITE PASSED FAILED
	PASSED=$((PASSED + $2))
	FAILED=$((FAILED + $3))
	SUMMARY="$SUMMARY$(printf '%-12s %4d passed, %4d failed' "$1" "$2" "$3")\n"
}

# pg_regress and pg_isolation_regress print "All N tests passed." or
# "M of N tests failed."
count_regress() {			# count_regress SUITE LOGFILE EXITCODE
	local all failed total
	all=$(grep -oE 'All [0-9]+ tests passed' "$2" | grep -oE '[0-9]+' | tail -1)
	if [ -n "$all" ] && [ "$3" = 0 ]; then
		record "$1" "$all" 0
		return
	fi
	failed=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$2" | tail -1)
	if [ -n "$failed" ]; then
		total=${failed#* of }; total=${total%% *}
		failed=${failed%% *}
		record "$1" $((total - failed)) "$failed"
	else
		record "$1" 0 1
	fi
	cat "$WORK/src/regression.diffs" "$WORK/src/output_iso/regression.diffs" 2>/dev/null | head -200
}

# make installcheck runs pg_regress, then isolation; each suite is run on
# its own (the other one emptied) so that one's failure does not hide the
# other's count.
run_installcheck() {		# run_installcheck SUITE VARIABLE_TO_EMPTY
	local log="$WORK/$1.log" rc
	as_user make -s -C "$WORK/src" PG_CONFIG="$PG_CONFIG" installcheck "$2=" >"$log" 2>&1
	rc=$?
	grep -E '^(ok|not ok|test| [a-z_]+ +\.\.\.)' "$log" || true
	count_regress "$1" "$log" "$rc"
}

# TAP (make prove_installcheck): one assertion is one test; a script that
# dies counts one failure.
run_tap() {
	local log="$WORK/tap.log" tests failed dubious
	as_user env STORAGE_TEST_SKIP_MODULES="${STORAGE_TEST_SKIP_MODULES:-}" \
		make -s -C "$WORK/src" PG_CONFIG="$PG_CONFIG" prove_installcheck >"$log" 2>&1
	cat "$log"
	tests=$(grep -oE 'Tests=[0-9]+' "$log" | grep -oE '[0-9]+' | tail -1)
	failed=$(grep -oE 'Failed [0-9]+/[0-9]+ subtests' "$log" | awk '{split($2,a,"/"); s+=a[1]} END {print s+0}')
	dubious=$(grep -cE 'Dubious|No subtests run|Bailout' "$log")
	tests=${tests:-0}
	[ "$dubious" -gt 0 ] && [ "$failed" = 0 ] && failed=$dubious
	# the details of a failed TAP script are in its regress log, not on stdout
	local t
	for t in $(awk '/^test\/t\/.*\.pl/ && !/ ok$/ {print $1}' "$log" | sort -u); do
		t=$(basename "$t" .pl)
		echo "---- tail of regress_log_$t"
		tail -n 60 "$WORK/src/tmp_check/log/regress_log_$t" 2>/dev/null
	done
	record TAP $((tests - failed < 0 ? 0 : tests - failed)) "$failed"
}

# make check-client, with its postgresql backend on a database of the
# running cluster.
run_client() {
	local log="$WORK/client.log" line p f
	as_user psql -X -q -d postgres -c "CREATE DATABASE client_test" &&
		as_user psql -X -q -d client_test -c "CREATE EXTENSION storage" ||
		{ record client 0 1; return; }
	as_user env HOME="$WORK" TMPDIR="$WORK" \
		STORAGE_TEST_PG_URI="host=$PGHOST port=$PGPORT user=postgres dbname=client_test" \
		make -s -C "$WORK/src" PG_CONFIG="$PG_CONFIG" check-client >"$log" 2>&1
	cat "$log"
	line=$(grep -E '^client: [0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
	if [ -z "$line" ]; then
		record client 0 1
		return
	fi
	p=$(echo "$line" | awk '{print $2}')
	f=$(echo "$line" | awk '{print $4}')
	record client "$p" "$f"
}

# The README's demo, against the extension this run installed: it must
# run to the end and show what the README says it shows.
run_demo() {
	local log="$WORK/demo.log"
	if bash "$WORK/src/examples/demo.sh" --installed >"$log" 2>&1 &&
		grep -q 'SQLSTATE.*SV001\|SV001' "$log" &&
		grep -A2 'visible_after_expiry' "$log" | grep -qE '^ +0$' &&
		grep -A2 ' purged' "$log" | grep -qE '^ +1$'; then
		record demo 1 0
	else
		cat "$log"
		record demo 0 1
	fi
}

# run_script NAME SCRIPT [ARGS...]: a suite of its own (a script in the
# copy, run as RUN_USER with the test cluster's PGHOST/PGPORT) whose last
# line is "... N passed, N failed".
run_script() {
	local name=$1 log="$WORK/$1.log" line
	shift
	(cd "$WORK/src" && as_user env HOME="$WORK" TMPDIR="$WORK" PGHOST="$PGHOST" \
		PGPORT="$PGPORT" PGUSER=postgres PG_CONFIG="$PG_CONFIG" bash "$@") >"$log" 2>&1
	cat "$log"
	line=$(grep -oE '[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)
	if [ -z "$line" ]; then
		record "$name" 0 1
		return
	fi
	record "$name" "$(echo "$line" | awk '{print $1}')" "$(echo "$line" | awk '{print $3}')"
}

main() {
	need_root
	install_deps
	trap cleanup EXIT
	prepare_copy
	echo "== PostgreSQL $("$PG_CONFIG" --version | awk '{print $2}') ($PG_CONFIG)"
	echo "== building in $WORK (as $RUN_USER, -Werror)"
	build_install
	# the suites, one line each (run_script NAME SCRIPT for a suite script)
	start_cluster regress
	echo "== pg_regress";	run_installcheck pg_regress ISOLATION
	echo "== isolation";	run_installcheck isolation REGRESS
	echo "== client library"; run_client
	stop_cluster regress
	echo "== pooler";		run_script pooler test/pooler/run.sh
	echo "== demo";			run_demo
	echo "== TAP";			run_tap
	echo
	printf "%b" "$SUMMARY"
	echo "$PASSED passed, $FAILED failed"
	[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
}

main "$@"
