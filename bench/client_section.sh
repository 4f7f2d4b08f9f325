# bench/client_section.sh: the "client" section of bench/run.sh (sourced by
# it; not a standalone script).  Builds bench/client_bench.c as $RUN_USER
# from the copy in $WORK/src and measures libstorage_client against the
# memory, dir and postgresql backends: single calls vs batches of 100,
# interleaved repetitions, medians (see client_bench.c).  PostgreSQL is
# measured four ways in one run: directly with prepared (named) and with
# unnamed statements (prepare=off), through pgbouncer in transaction mode
# (prepare=off) and in session mode (prepared), with the ratios to the
# direct prepared connection.
#
# Uses from run.sh / test/lib.sh: WORK, RUN_USER, as_user, log, REPS and
# PGHOST/PGPORT (exported by start_cluster; database "bench").
# Knobs: CLIENT_RECORDS (20000, postgresql), CLIENT_MEMORY_RECORDS (200000),
# CLIENT_DIR_RECORDS (2000: every dir save fsyncs), CLIENT_BATCH (100),
# CLIENT_CAP (20 seconds at most per measurement).  PGBOUNCER (default:
# pgbouncer in PATH or /usr/sbin): without it the pooler rows are left out.

source "$(dirname "${BASH_SOURCE[0]}")/../test/pooler/bouncer.sh"

section_client() {
	local build="$WORK/client-bench-build" batch=${CLIENT_BATCH:-100} b
	local -a opts=(-b "$batch" -r "${REPS:-3}" -t "${CLIENT_CAP:-20}")
	log "client library"
	if ! as_user make -s -C "$WORK/src/src/client" BUILDDIR="$build" bench \
		>"$WORK/client-bench-build.log" 2>&1; then
		cat "$WORK/client-bench-build.log" >&2
		log "client: building client_bench failed, section skipped"
		return
	fi
	echo
	echo "#### Client library: single calls vs batches of $batch (records/s; ${REPS:-3} interleaved repetitions, medians)"
	echo
	echo "| backend | operation | single calls (records/s) | batches of $batch (records/s) | batch / single | single runs | batch runs |"
	echo "|---|---|---:|---:|---:|---|---|"
	for b in memory dir postgresql; do
		local -a run=()
		case $b in
			memory) run=(-n "${CLIENT_MEMORY_RECORDS:-200000}" -l memory "memory:") ;;
			dir) run=(-n "${CLIENT_DIR_RECORDS:-2000}" -l dir "dir:$WORK/clientbench-dir") ;;
			postgresql)
				client_pg_runs
				run=(-n "${CLIENT_RECORDS:-20000}" "${CLIENT_PG_RUNS[@]}") ;;
		esac
		(cd "$WORK" && as_user "$build/client_bench" "${opts[@]}" "${run[@]}") ||
			log "client: the $b run failed"
	done
	as_user rm -rf "$WORK/clientbench-dir"
	as_user bash -c 'source "$0" && stop_pgbouncer "$1" bench' \
		"$WORK/src/test/pooler/bouncer.sh" "$WORK/bench-bouncer"
}

# CLIENT_PG_RUNS: the postgresql URIs, each after -l and its label.  Starts
# pgbouncer for the pooled ones (one client at a time: 2 server
# connections are plenty).
client_pg_runs() {
	local bouncer=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
	local dir="$WORK/bench-bouncer" direct="host=$PGHOST port=$PGPORT dbname=bench user=postgres"
	local dbs="txn = host=$PGHOST port=$PGPORT dbname=bench pool_mode=transaction pool_size=2
sess = host=$PGHOST port=$PGPORT dbname=bench pool_mode=session pool_size=2"
	local -a more=()
	CLIENT_PG_RUNS=(-l "postgresql direct, prepared" "$direct"
		-l "postgresql direct, prepare=off" "$direct prepare=off")
	[ -x "$bouncer" ] || { log "client: no pgbouncer at $bouncer: no pooler rows"; return; }
	# pgbouncer >= 1.24 tracks named statements by default: measure it without
	[ "$(pgbouncer_version "$bouncer")" -ge 1021 ] && more=("max_prepared_statements = 0")
	as_user mkdir -p "$dir"
	if as_user bash -c 'source "$0" && start_pgbouncer "$@"' "$WORK/src/test/pooler/bouncer.sh" \
		"$bouncer" "$dir" bench 6432 "$dbs" "${more[@]}" >&2; then
		CLIENT_PG_RUNS+=(-l "pgbouncer transaction, prepare=off" "host=$dir port=6432 dbname=txn user=postgres prepare=off"
			-l "pgbouncer session, prepared" "host=$dir port=6432 dbname=sess user=postgres")
	else
		log "client: pgbouncer did not start: no pooler rows"
	fi
}
