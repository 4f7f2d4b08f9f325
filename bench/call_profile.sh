#!/usr/bin/env bash
# bench/call_profile.sh: where one call's server time goes, by hand (not part
# of bench/run.sh).  For each pgbench script named, runs it with pgbench -M
# prepared (CLIENTS clients) against an existing database and records the
# CPU of its backends and of the WAL writer with perf for PROFILE_SECONDS,
# then prints the CPU microseconds per call by category
# (bench/call_profile.py).  The calls are counted by the transaction ids
# assigned in that window (every call of a write script takes one; the
# statistics counters lag by up to a second), so the figures hold on a
# loaded machine, where rates do not.  Write scripts only.
#
#   usage (as root, perf installed): bench/call_profile.sh SCRIPT...
#   e.g.  PGHOST=/tmp/sock PGPORT=5432 PGDATABASE=bench \
#           bench/call_profile.sh txid.sql update_raw.sql save_ttl_storage.sql
#
# The database is one bench/run.sh's setup_cluster makes (storage_records and
# raw_records with RECORDS records of 200 bytes).  Knobs: CLIENTS (4),
# RECORDS (200000), PROFILE_SECONDS (8), RUN_USER (postgres: runs pgbench
# and psql), PGBIN (the directory of pgbench and psql), OUT (a directory for
# the perf data, default a new one under /tmp).  Settle the table first
# (a few runs of each script, then a CHECKPOINT): a freshly loaded table
# moves every first update to a new page, and the first change of a page
# after a checkpoint writes the whole page to WAL.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CLIENTS=${CLIENTS:-4}
RECORDS=${RECORDS:-200000}
PROFILE_SECONDS=${PROFILE_SECONDS:-8}
RUN_USER=${RUN_USER:-postgres}
PGDATABASE=${PGDATABASE:-bench}
OUT=${OUT:-$(mktemp -d /tmp/call-profile.XXXXXX)}
export PGDATABASE
[ -n "${PGBIN:-}" ] && PATH="$PGBIN:$PATH"
payload="\\x$(printf '%0400d' 0 | tr 0 a)"

as_user() { runuser -u "$RUN_USER" -- env PATH="$PATH" PGHOST="${PGHOST:-}" PGPORT="${PGPORT:-}" \
	PGDATABASE="$PGDATABASE" "$@"; }
q() { as_user psql -X -At -c "$1"; }
next_xid() { q "SELECT txid_current()"; }

chmod 755 "$OUT"
for script in "$@"; do
	tag=${script%.sql}
	as_user pgbench -n -M prepared -c "$CLIENTS" -j 2 -T $((PROFILE_SECONDS + 6)) \
		-D records="$RECORDS" -D payload="$payload" -f "$here/pgbench/$script" \
		>"$OUT/$tag.pgbench" 2>&1 &
	bench=$!
	sleep 3
	pids=$(q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity
	          WHERE application_name = 'pgbench' OR backend_type = 'walwriter'")
	walwriter=$(q "SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'")
	before=$(next_xid)
	# task-clock: the machine may have no hardware counters (a VM); one
	# sample per millisecond of CPU; DWARF call chains, since the server is
	# built without frame pointers
	perf record -q -e task-clock -c 1000000 --call-graph dwarf,8192 -p "$pids" \
		-o "$OUT/$tag.data" -- sleep "$PROFILE_SECONDS" 2>/dev/null
	after=$(next_xid)
	wait "$bench"
	python3 "$here/call_profile.py" "$OUT/$tag.data" $((after - before - 1)) "$walwriter" "$tag"
done
echo "perf data in $OUT"
