#!/usr/bin/env bash
# bench/run.sh: the benchmark harness.  Run as root on Debian 12; like the
# test command it installs what it needs, builds, starts a throwaway
# cluster as the unprivileged user, and cleans up.  Writes bench/RESULTS.md
# (RESULTS names another file): a header saying where, when and how it was
# measured, then the Markdown tables of every section, also shown on stdout.
#
# Every comparison runs its variants interleaved (A B C A B C ...) and
# reports medians and ratios, because the machine is shared and noisy.
#
# Knobs (environment): RUN_SECONDS (3), REPS (3), CLIENTS (4),
# RECORDS (1000000), CHURN_SECONDS (600), BATCH_WARMUP (4), SECTIONS (all:
# "fetch save sync batch expiry churn memory client proxy feed watch redis"), RESULTS.
#
# Adding a section: define section_NAME in a file bench/NAME_section.sh
# (every such file is sourced below, as client_section.sh,
# proxy_section.sh and feed_section.sh are) and add NAME to the default
# SECTIONS.  What a section prints on stdout is appended to the results
# file; its progress goes to stderr (log).
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"
for section_file in "$(dirname "${BASH_SOURCE[0]}")"/*_section.sh; do
	source "$section_file"
done

RUN_SECONDS=${RUN_SECONDS:-3}
REPS=${REPS:-3}
CLIENTS=${CLIENTS:-4}
RECORDS=${RECORDS:-1000000}
CHURN_SECONDS=${CHURN_SECONDS:-600}
BATCH_WARMUP=${BATCH_WARMUP:-4}
SECTIONS=${SECTIONS:-"fetch save sync batch expiry churn memory client proxy feed watch redis"}
RESULTS=${RESULTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/RESULTS.md}
# 200 bytes of payload, as a bytea literal
PAYLOAD="\\x$(printf '%0400d' 0 | tr 0 a)"

BENCH_START=$(date +%s)
log() { echo "[bench $(($(date +%s) - BENCH_START))s] $*" >&2; }

sql() { as_user psql -X -q -At -v ON_ERROR_STOP=1 -d bench "$@"; }

# pgbench_tps SCRIPT [extra pgbench args]: one run, prints tps.  A script
# named X_spi.sql is X.sql run with storage.direct_writes = off.
pgbench_tps() {
	local script=$1 options=""
	shift
	case $script in
	*_spi.sql) script=${script%_spi.sql}.sql options="-c storage.direct_writes=off" ;;
	esac
	as_user env PGOPTIONS="$options" pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$RUN_SECONDS" \
		-D records="$RECORDS" -D clients="$CLIENTS" -D payload="$PAYLOAD" "$@" \
		-f "$WORK/src/bench/pgbench/$script" bench 2>&1 |
		awk '/^tps = / {print $3; found=1} END {if (!found) print "0"}'
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print 0; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }

# compare TITLE UNIT MULT SCRIPT... : interleaved runs; first script is the
# one the others are compared with ("vs first" column), MULT converts
# transactions to the unit (e.g. 100 records per transaction).
compare() {
	local title=$1 unit=$2 mult=$3 rep s
	shift 3
	local scripts=("$@")
	declare -A runs=()
	for ((rep = 1; rep <= REPS; rep++)); do
		for s in "${scripts[@]}"; do
			runs[$s]="${runs[$s]:-} $(pgbench_tps "$s")"
		done
	done
	echo
	echo "#### $title"
	echo
	echo "| variant | median $unit | runs | vs ${scripts[0]%.sql} |"
	echo "|---|---:|---|---:|"
	local base
	base=$(echo "${runs[${scripts[0]}]}" | tr ' ' '\n' | grep . | median)
	for s in "${scripts[@]}"; do
		local m
		m=$(echo "${runs[$s]}" | tr ' ' '\n' | grep . | median)
		printf '| %s | %.0f | %s | %.2f |\n' "${s%.sql}" "$(echo "$m * $mult" | bc -l)" \
			"$(echo "${runs[$s]}" | awk '{for (i=1;i<=NF;i++) printf "%s%.0f", (i>1?" ":""), $i}')" \
			"$(echo "$m / $base" | bc -l)"
	done
}

setup_cluster() {
	start_cluster bench \
		"fsync = on" \
		"shared_buffers = 2GB" \
		"synchronous_commit = off" \
		"max_wal_size = 16GB" \
		"checkpoint_timeout = 30min" \
		"shared_preload_libraries = 'storage'" \
		"storage.autopurge = off" \
		"max_connections = 50"
	as_user psql -X -q -d postgres -c "CREATE DATABASE bench"
	sql -c "CREATE EXTENSION storage" 2>/dev/null
	sql -f "$WORK/src/bench/plpgsql_storage.sql"
	log "loading $RECORDS records of ~200 bytes into storage_records and raw_records"
	sql -c "INSERT INTO storage_records (id, version, format, data)
	        SELECT 'user:' || i, 1, 'raw', decode(repeat(md5(i::text), 12) || 'abcdabcd', 'hex')
	          FROM generate_series(1, $RECORDS) AS i"
	sql -c "INSERT INTO raw_records SELECT id, version, expires_at, format, data FROM storage_records"
	sql -c "VACUUM ANALYZE storage_records" -c "VACUUM ANALYZE raw_records" -c "CHECKPOINT"
}

section_fetch() {
	log "fetch"
	compare "Fetch one record by id (transactions/s, $CLIENTS clients)" "tx/s" 1 \
		fetch_raw.sql fetch_storage.sql select1.sql
}

section_save() {
	log "save"
	compare "Unversioned save (expect_version -1), synchronous_commit off" "tx/s" 1 \
		save_any_raw.sql save_any_storage.sql save_any_plpgsql.sql
	compare "Create (expect_version 0), synchronous_commit off" "tx/s" 1 \
		save_create_raw.sql save_create_storage.sql save_create_plpgsql.sql
	compare "Versioned save (read version, save with it), synchronous_commit off" "tx/s" 1 \
		save_versioned_raw.sql save_versioned_storage.sql save_versioned_plpgsql.sql
}

section_sync() {
	log "save with synchronous_commit on"
	sql -c "ALTER SYSTEM SET synchronous_commit = on" -c "SELECT pg_reload_conf()" >/dev/null
	compare "Unversioned save, synchronous_commit on" "tx/s" 1 \
		save_any_raw.sql save_any_storage.sql
	sql -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null
}

section_batch() {
	local k
	log "batch"
	{
		echo '\set base random(0, :records / 100 - 1) * 100'
		for ((k = 1; k <= 100; k++)); do
			echo "SELECT storage_save('user:' || (:base + $k), :payload);"
		done
	} >"$WORK/src/bench/pgbench/save_single_100.sql"
	{
		echo '\set base random(0, :records / 100 - 1) * 100'
		for ((k = 1; k <= 100; k++)); do
			echo "SELECT * FROM storage_fetch('user:' || (:base + $k));"
		done
	} >"$WORK/src/bench/pgbench/fetch_single_100.sql"
	chown "$RUN_USER" "$WORK"/src/bench/pgbench/*_100.sql
	# Warm-up runs, unmeasured in the table.  A freshly loaded table is
	# packed to its fillfactor: a batch's first updates on a page use its
	# little free space and the rest move to new pages (not HOT, an index
	# entry each), since versions written by the same transaction cannot be
	# pruned.  Within a few passes the pages settle with room for a batch
	# (HOT 26% -> 99%, see docs/design.md); the ramp is printed.
	local ramp=""
	log "batch: $BATCH_WARMUP warm-up runs of save_many_100"
	for ((k = 1; k <= BATCH_WARMUP; k++)); do
		ramp="$ramp $(printf '%.0f' "$(echo "$(pgbench_tps save_many_100.sql) * 100" | bc -l)")"
	done
	printf '\nstorage_save_many on the freshly loaded table, %s warm-up runs (records/s):%s\n' \
		"$BATCH_WARMUP" "$ramp"
	compare "Save 100 records: 100 single calls vs one storage_save_many (records/s)" "records/s" 100 \
		save_single_100.sql save_many_100.sql
	compare "Fetch 100 records: 100 single calls vs one storage_fetch_many (records/s)" "records/s" 100 \
		fetch_single_100.sql fetch_many_100.sql
}

# load_expired N: N expired records spread over the last two hours
load_expired() {
	sql -c "INSERT INTO storage_records (id, version, expires_at, data)
	        SELECT 'exp:' || i, 1, now() - interval '2 hours' + (i % 3600) * interval '1 second',
	               decode(repeat(md5(i::text), 12) || 'abcdabcd', 'hex')
	          FROM generate_series(1, $1) AS i" -c "VACUUM ANALYZE storage_records"
}

expired_left() { sql -c "SELECT count(*) FROM storage_records WHERE id LIKE 'exp:%'"; }

# rows the worker purged so far: read from shared memory, free, so that
# watching the worker does not load the server being measured
worker_purged() { sql -c "SELECT coalesce(rows_purged_total, 0) FROM storage_worker_status()"; }

# wait_worker TARGET: until the worker's purged total reaches TARGET (at most
# 300 s).  Polls once a second: the poll is itself a client session running
# a query, which the worker counts as load (yield.c) and slows down for, so
# polling often would measure the harness; the time comes from the worker's
# own clock anyway.
wait_worker() {
	local target=$1 t0=$SECONDS
	while [ "$(worker_purged)" -lt "$target" ] && [ $((SECONDS - t0)) -lt 300 ]; do
		sleep 1
	done
}

# latency_run NAME SECONDS: fetch load with per-transaction logging, in the
# background; latency_stats NAME [FROM TO] prints "p50 p99 count" (ms) of
# the transactions that ended between epoch seconds FROM and TO.
latency_run() {
	local dir="$WORK/lat_$1"
	as_user mkdir -p "$dir"
	(cd "$dir" && as_user pgbench -n -M prepared -c 4 -j 2 -T "$2" -l \
		-D records="$RECORDS" -f "$WORK/src/bench/pgbench/fetch_storage.sql" bench >/dev/null 2>&1)
}

latency_stats() {
	cat "$WORK/lat_$1"/pgbench_log.* |
		awk -v from="${2:-0}" -v to="${3:-1e12}" '{t = $5 + $6 / 1e6} t >= from && t <= to {print $3}' |
		sort -n |
		awk '{a[NR]=$1} END {if (NR == 0) print "0 0 0"; else printf "%.3f %.3f %d\n", a[int(NR*0.5)+1]/1000, a[int(NR*0.99)+1]/1000, NR}'
}

# purge_loop BATCH CALLS: storage_purge_expired(BATCH), each call its own transaction
purge_loop() {
	local batch=$1 calls=$2 n
	for ((n = 0; n < calls; n++)); do echo "SELECT storage_purge_expired($batch);"; done |
		as_user psql -X -q -At -d bench | awk '{s+=$1} END {print s+0}'
}

section_expiry() {
	local t0 t1 purged n lat_idle lat_idle2 p99_idle lat_busy rate kv target purger
	# PURGE_SETTINGS="storage.purge_batch_size=1000 storage.purge_batch_delay=10"
	for kv in ${PURGE_SETTINGS:-}; do
		sql -c "ALTER SYSTEM SET ${kv%%=*} = '${kv#*=}'" >/dev/null
	done
	sql -c "SELECT pg_reload_conf()" >/dev/null
	log "expiry: loading $RECORDS expired records beside $RECORDS live ones"
	load_expired "$RECORDS"
	echo
	echo "#### Expiry: $RECORDS expired + $RECORDS live records${PURGE_SETTINGS:+ ($PURGE_SETTINGS)}"
	echo
	echo "| measurement | value |"
	echo "|---|---:|"
	# half of the backlog by the function, the other half by the worker
	t0=$(date +%s.%N)
	purged=$(purge_loop 10000 $((RECORDS / 20000)))
	t1=$(date +%s.%N)
	printf '| storage_purge_expired(10000) in a loop, one transaction each, alone | %.0f rows/s (%d rows) |\n' \
		"$(echo "$purged / ($t1 - $t0)" | bc -l)" "$purged"
	if sql -c "SHOW storage.purge_interval" >/dev/null 2>&1; then
		n=$(expired_left)
		target=$(($(worker_purged) + n))
		sql -c "ALTER SYSTEM SET storage.autopurge = on" -c "ALTER SYSTEM SET storage.purge_interval = '1s'" \
			-c "SELECT pg_reload_conf()" >/dev/null
		t0=$(date +%s.%N)
		wait_worker "$target"
		# Timed by the worker's own clock (shared memory), not by this
		# 100 ms poll: one visit that did it all is timed from its start,
		# several from the moment the worker was switched on.
		local visit
		visit=$(sql -F ' ' -c "SELECT rows_purged_last, extract(epoch FROM last_purge_start),
		                              extract(epoch FROM last_purge_end) FROM storage_worker_status()")
		set -- $visit
		if [ "$1" = "$n" ]; then t0=$2; fi
		t1=$3
		printf '| background worker, alone (batch %s) | %.0f rows/s (%d rows in %.3f s%s) |\n' \
			"$(sql -c 'SHOW storage.purge_batch_size')" "$(echo "$n / ($t1 - $t0)" | bc -l)" "$n" \
			"$(echo "$t1 - $t0" | bc -l)" "$([ "$1" = "$n" ] && echo ', one visit')"
		sql -c "ALTER SYSTEM SET storage.autopurge = off" -c "SELECT pg_reload_conf()" >/dev/null
	else
		echo "| background worker | not built in this version |"
	fi
	if sql -c "SHOW storage.purge_interval" >/dev/null 2>&1; then
		expiry_interleaved
	else
		echo "| fetch latency while purging | needs the background worker |"
	fi
	sql -c "DELETE FROM storage_records WHERE id LIKE 'exp:%'" -c "VACUUM storage_records" >/dev/null
}

# Fetch latency with the worker purging vs not, in the same pgbench run:
# the worker is switched on and off every 4 s while 4 clients fetch, its
# state is sampled from shared memory every 50 ms, and every transaction is
# classified by the state at its end.  Interleaving makes the two sides
# share the machine's noise, which between separate windows moved the idle
# p99 by a factor of two.
expiry_interleaved() {
	local dir="$WORK/lat_mix" n left k t0 t1 stats
	load_expired "$RECORDS"
	n=$(expired_left)
	sql -c "ALTER SYSTEM SET storage.autopurge = off" -c "ALTER SYSTEM SET storage.purge_interval = '100ms'" \
		-c "SELECT pg_reload_conf()" >/dev/null
	as_user mkdir -p "$dir"
	(cd "$dir" && as_user pgbench -n -M prepared -c 4 -j 2 -T 34 -l \
		-D records="$RECORDS" -f "$WORK/src/bench/pgbench/fetch_storage.sql" bench >/dev/null 2>&1) &
	# one session samples the worker's state (shared memory, no table access;
	# its own storage.autopurge does not follow the reloads during the loop,
	# so the state is read from the purge's start and end times).  It commits
	# every sample: a transaction open for the whole run would hold back the
	# xmin horizon, and the purge would then step over the index entries of
	# every row it already deleted, again in every batch.
	as_user psql -X -q -d bench -c "DO \$\$ BEGIN FOR i IN 1 .. 640 LOOP
		RAISE NOTICE 'tl % %', extract(epoch FROM clock_timestamp()),
			(SELECT CASE WHEN last_purge_start > coalesce(last_purge_end, '-infinity') THEN 'purging' ELSE 'no' END
			   FROM storage_worker_status());
		COMMIT; PERFORM pg_sleep(0.05); COMMIT; END LOOP; END \$\$" 2>&1 |
		awk '$2 == "tl" {print $3, $4}' >"$dir/timeline" &
	sleep 1
	t0=$(date +%s.%N)
	for k in 1 2 3 4; do
		sql -c "ALTER SYSTEM SET storage.autopurge = on" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 4
		sql -c "ALTER SYSTEM SET storage.autopurge = off" -c "SELECT pg_reload_conf()" >/dev/null
		sleep 4
	done
	t1=$(date +%s.%N)
	wait
	left=$(expired_left)
	# timeline lines "epoch state"; pgbench log: $3 latency (us), $5.$6 end time
	stats=$(cat "$dir"/pgbench_log.* |
		awk -v from="$t0" -v to="$t1" '{ t = $5 + $6 / 1e6; if (t >= from && t <= to) printf "%.6f %s\n", t, $3 }' |
		sort -n -k1,1 |
		awk -v tl="$dir/timeline" '
		BEGIN { while ((getline line < tl) > 0) { split(line, f, " "); nt++; ts[nt] = f[1]; st[nt] = (f[2] == "purging") } i = 1 }
		{ while (i < nt && ts[i + 1] <= $1) i++; if (ts[i] <= $1) { if (st[i]) print "busy", $2; else print "idle", $2 } }' |
		sort -k1,1 -k2,2n |
		awk '{ v[$1, ++c[$1]] = $2 }
		END { for (k in c) printf "%s %.3f %.3f %d\n", k, v[k, int(c[k] * 0.5) + 1] / 1000, v[k, int(c[k] * 0.99) + 1] / 1000, c[k] }')
	local busy idle purging_s
	busy=$(echo "$stats" | awk '$1 == "busy" {print $2, $3, $4}')
	idle=$(echo "$stats" | awk '$1 == "idle" {print $2, $3, $4}')
	purging_s=$(awk '$2 == "purging"' "$dir/timeline" | wc -l | awk '{print $1 * 0.05}')
	printf '| fetch p50 / p99, 4 clients, worker not purging (same run, interleaved 4 s windows; %s transactions) | %s / %s ms |\n' \
		"$(echo "$idle" | cut -d' ' -f3)" $(echo "$idle" | cut -d' ' -f1,2)
	printf '| fetch p50 / p99, 4 clients, worker purging (%s transactions) | %s / %s ms |\n' \
		"$(echo "$busy" | cut -d' ' -f3)" $(echo "$busy" | cut -d' ' -f1,2)
	printf '| fetch p99 purging / not purging | %.2f |\n' \
		"$(echo "$(echo "$busy" | cut -d' ' -f2) / $(echo "$idle" | cut -d' ' -f2)" | bc -l)"
	printf '| rows purged per second while purging under that load | %.0f (%d rows in %.1f s) |\n' \
		"$(echo "($n - $left) / $purging_s" | bc -l)" $((n - left)) "$purging_s"
}

# churn_stats: "total_bytes table_bytes index_bytes dead_tuples updates hot_updates"
churn_stats() {
	sql -c "SELECT pg_stat_clear_snapshot()" >/dev/null
	sql -c "SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid),
	               s.n_dead_tup, s.n_tup_upd, s.n_tup_hot_upd
	          FROM pg_class c JOIN pg_stat_user_tables s ON s.relid = c.oid
	         WHERE c.oid = 'storage_records'::regclass" | tr '|' ' '
}

# Steady mixed load on SESSIONS sessions with sliding expiry: save (50%),
# touch (30%), delete (10%) and short-lived records that expire (10%).
section_churn() {
	local sessions=${SESSIONS_ACTIVE:-10000} rate=${CHURN_RATE:-2000} start end purger_pid=""
	if ! sql -c "SELECT 'storage_touch(text,timestamptz,bigint)'::regprocedure" >/dev/null 2>&1; then
		log "churn: storage_touch is not available, skipped"
		return
	fi
	log "churn: ${CHURN_SECONDS}s at $rate tx/s over $sessions sessions"
	sql -c "DELETE FROM storage_records WHERE id NOT LIKE 'user:%'" -c "VACUUM ANALYZE storage_records" >/dev/null
	sql -c "SELECT count(storage_save('sess:' || i, decode(repeat('ab', 200), 'hex'), -1,
	                                  now() + interval '30 minutes'))
	          FROM generate_series(1, $sessions) AS i" >/dev/null
	sql -c "VACUUM ANALYZE storage_records" -c "SELECT pg_stat_reset()" >/dev/null
	sleep 1
	start=$(churn_stats)
	if sql -c "SHOW storage.purge_interval" >/dev/null 2>&1; then
		sql -c "ALTER SYSTEM SET storage.autopurge = on" -c "ALTER SYSTEM SET storage.purge_interval = '1s'" \
			-c "SELECT pg_reload_conf()" >/dev/null
	else
		(while sleep 1; do sql -c "SELECT storage_purge_expired()" >/dev/null 2>&1 || break; done) &
		purger_pid=$!
	fi
	as_user pgbench -n -M prepared -c 4 -j 2 -T "$CHURN_SECONDS" -R "$rate" \
		-D sessions="$sessions" -D payload="$PAYLOAD" \
		-f "$WORK/src/bench/pgbench/churn_save.sql@50" -f "$WORK/src/bench/pgbench/churn_touch.sql@30" \
		-f "$WORK/src/bench/pgbench/churn_delete.sql@10" -f "$WORK/src/bench/pgbench/churn_expire.sql@10" \
		bench >"$WORK/churn.log" 2>&1
	[ -n "$purger_pid" ] && kill "$purger_pid" 2>/dev/null
	sql -c "ALTER SYSTEM SET storage.autopurge = off" -c "SELECT pg_reload_conf()" >/dev/null 2>&1
	sleep 1
	end=$(churn_stats)
	echo
	echo "#### Churn: ${CHURN_SECONDS}s at $rate tx/s (save 50%, touch 30%, delete 10%, 5-second records 10%) over $sessions sessions beside $RECORDS records"
	echo
	echo "| | start | end | end / start |"
	echo "|---|---:|---:|---:|"
	paste <(echo "$start" | tr ' ' '\n') <(echo "$end" | tr ' ' '\n') |
		awk 'BEGIN {split("table+indexes (MB)|heap (MB)|indexes (MB)|dead tuples", n, "|")}
		     NR <= 3 {printf "| %s | %.1f | %.1f | %.2f |\n", n[NR], $1/1048576, $2/1048576, ($1 ? $2/$1 : 0)}
		     NR == 4 {printf "| %s | %d | %d | |\n", n[NR], $1, $2}
		     NR == 5 {upd = $2} NR == 6 {hot = $2}
		     END {printf "| updates during the run (HOT) | | %d (%.1f%% HOT) | |\n", upd, (upd ? 100*hot/upd : 0)}'
	echo
	echo "pgbench: $(grep -E '^(tps|number of transactions actually processed)' "$WORK/churn.log" | tr '\n' ' ')"
}

# RssAnon (private memory) of one session across 1,000,000 storage_save calls
section_memory() {
	local out
	log "memory"
	out=$(as_user psql -X -q -At -d bench <<'SQL'
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
\! echo "at_100k $(awk '/RssAnon/ {print $2}' /proc/$PID/status)"
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
SELECT count(storage_save('mem:' || (i % 10000), '\x00')) FROM generate_series(1, 100000) AS i;
\! echo "at_1m $(awk '/RssAnon/ {print $2}' /proc/$PID/status)"
SQL
)
	echo
	echo "#### Memory: one session, 1,000,000 storage_save calls (10 statements of 100,000)"
	echo
	echo "| after | backend RssAnon |"
	echo "|---|---:|"
	echo "$out" | awk '/^at_100k/ {printf "| 100,000 calls | %s kB |\n", $2} /^at_1m/ {printf "| 1,000,000 calls | %s kB |\n", $2}'
	sql -c "DELETE FROM storage_records WHERE id LIKE 'mem:%'" >/dev/null
	memory_purge
}

# The purge code in one session (100 calls, each deleting 200 fresh
# expired rows) and the long-lived launcher across 100 rounds, each of which
# starts a worker that purges.
memory_purge() {
	local out pid at10 at100 round
	out=$(as_user psql -X -q -At -d bench <<'SQL'
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SELECT count(storage_save('memp:' || i, '\x00', -1, now() - interval '1 s')) FROM generate_series(1, 20000) AS i;
SELECT sum(storage_purge_expired(200)) FROM generate_series(1, 10);
\! echo "at_10 $(awk '/RssAnon/ {print $2}' /proc/$PID/status)"
SELECT sum(storage_purge_expired(200)) FROM generate_series(1, 90);
\! echo "at_100 $(awk '/RssAnon/ {print $2}' /proc/$PID/status)"
SQL
)
	echo
	echo "#### Memory: purging"
	echo
	echo "| process | after 10 | after 100 |"
	echo "|---|---:|---:|"
	echo "$out" | awk '/^at_10 / {a=$2} /^at_100 / {b=$2} END {printf "| one session, storage_purge_expired(200) calls | %s kB | %s kB |\n", a, b}'
	if sql -c "SHOW storage.purge_interval" >/dev/null 2>&1; then
		pid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'storage expiry launcher'")
		sql -c "ALTER SYSTEM SET storage.autopurge = on" -c "ALTER SYSTEM SET storage.purge_interval = '100ms'" \
			-c "SELECT pg_reload_conf()" >/dev/null
		for round in $(seq 1 100); do
			sql -c "SELECT count(storage_save('meml:' || i, '\\x00', -1, now() - interval '1 s')) FROM generate_series(1, 100) AS i" >/dev/null
			sleep 0.1
			[ "$round" = 10 ] && at10=$(awk '/RssAnon/ {print $2}' /proc/$pid/status)
		done
		at100=$(awk '/RssAnon/ {print $2}' /proc/$pid/status)
		printf '| the launcher, purge rounds (each starting a worker) | %s kB | %s kB |\n' "$at10" "$at100"
		sql -c "ALTER SYSTEM SET storage.autopurge = off" -c "SELECT pg_reload_conf()" >/dev/null
	fi
	sql -c "DELETE FROM storage_records WHERE id LIKE 'mem%'" >/dev/null
}

main() {
	need_root
	install_deps
	command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
	trap cleanup EXIT
	prepare_copy
	build_install
	setup_cluster
	results_header | tee "$RESULTS"
	local s
	for s in $SECTIONS; do
		if declare -F "section_$s" >/dev/null; then
			"section_$s" | tee -a "$RESULTS"
		else
			log "section $s not available"
		fi
	done
	printf '\nThe whole run took %s s.\n' "$(($(date +%s) - BENCH_START))" | tee -a "$RESULTS"
	log "done; results in $RESULTS"
}

# The head of the results file: where, when and how the figures were made.
results_header() {
	cat <<EOF
# Benchmark results

Written by \`bench/run.sh\` (how to run it: [CONTRIBUTING.md](../CONTRIBUTING.md#benchmarks));
measurements made by hand are in [MEASUREMENTS.md](MEASUREMENTS.md).

- Measured: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -m), $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB
- Server: $(sql -c 'SELECT version()' | cut -d, -f1)
- Settings: shared_buffers = 2GB, fsync on, synchronous_commit = off unless a table says
  otherwise, max_wal_size = 16GB, checkpoint_timeout = 30min
- Data: $RECORDS records of ~200 bytes in storage_records, and the same rows in raw_records
  (a plain table with the same columns and indexes)
- pgbench -M prepared, $CLIENTS clients, $RUN_SECONDS s runs, $REPS interleaved repetitions, medians
- Sections, in this order: $SECTIONS

Variants: \`*_raw\` is the hand-written SQL statement on raw_records, \`*_storage\` the
extension's function, \`*_plpgsql\` the same contract written in PL/pgSQL
(\`bench/plpgsql_storage.sql\`), \`select1\` a bare \`SELECT 1\` (the round trip alone).
Each table runs its variants interleaved (A B C A B C ...); the last column is the
ratio to the first variant, and \`runs\` shows the spread.
EOF
}

main "$@"
