# bench/client_section.sh: the "client" section of bench/run.sh (sourced by
# it; not a standalone script).  Builds bench/client_bench.c as $RUN_USER
# from the copy in $WORK/src and measures libstorage_client against the
# memory, dir and postgresql backends: single calls vs batches of 100,
# interleaved repetitions, medians (see client_bench.c).
#
# Uses from run.sh / test/lib.sh: WORK, RUN_USER, as_user, log, REPS and
# PGHOST/PGPORT (exported by start_cluster; database "bench").
# Knobs: CLIENT_RECORDS (20000, postgresql), CLIENT_MEMORY_RECORDS (200000),
# CLIENT_DIR_RECORDS (2000: every dir save fsyncs), CLIENT_BATCH (100),
# CLIENT_CAP (20 seconds at most per measurement).

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
			postgresql) run=(-n "${CLIENT_RECORDS:-20000}" -l postgresql
				"host=$PGHOST port=$PGPORT dbname=bench user=postgres") ;;
		esac
		(cd "$WORK" && as_user "$build/client_bench" "${opts[@]}" "${run[@]}") ||
			log "client: the $b run failed"
	done
	as_user rm -rf "$WORK/clientbench-dir"
}
