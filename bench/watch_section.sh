# bench/watch_section.sh: the "watch" section of bench/run.sh (sourced by
# it; not a standalone script).  Commit-to-callback latency of the client
# library's storage_watch (bench/watch_bench.c): a writer saves at a fixed
# rate (1,000 and 10,000 saves/s, each save its own transaction) while a
# watch streams them; the callback takes now - committed_at of each event.
# Three ways: the writers at synchronous_commit = on; at the bench
# cluster's off, where a commit reaches the feed only once the WAL writer
# flushed it (logical decoding reads flushed WAL only), with the default
# wal_writer_delay (200ms) and with 10ms.
# Reports per variant and rate the achieved save rate and the medians over
# REPS runs of p50, p99 and max latency.  Runs at wal_level = logical (restarting
# the bench cluster with feed_section.sh's feed_restart) and leaves it at
# replica, as the feed section does.
#
# Uses from run.sh / test/lib.sh: WORK, as_user, sql, log, median, REPS,
# PGHOST/PGPORT; feed_restart from feed_section.sh.
# Knobs: WATCH_RATES ("1000 10000"), WATCH_SECONDS (5).

# watch_wal_writer_delay VARIANT: 10ms for off10, the default otherwise
watch_wal_writer_delay() {
	if [ "$1" = off10 ]; then
		sql -c "ALTER SYSTEM SET wal_writer_delay = '10ms'" -c "SELECT pg_reload_conf()" >/dev/null
	else
		sql -c "ALTER SYSTEM RESET wal_writer_delay" -c "SELECT pg_reload_conf()" >/dev/null
	fi
}

section_watch() {
	local build="$WORK/watch-bench-build" rate rep out sc k
	local -A ach=() p50=() p99=() pmax=()
	log "watch: commit-to-callback latency"
	if ! as_user make -s -C "$WORK/src/src/client" BUILDDIR="$build" "$build/watch_bench" \
		>"$WORK/watch-bench-build.log" 2>&1; then
		cat "$WORK/watch-bench-build.log" >&2
		log "watch: building watch_bench failed, section skipped"
		return
	fi
	if [ -n "$(sql -c "SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries'")" ]; then
		sql -c "ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'storage'" >/dev/null
	fi
	feed_restart logical
	for ((rep = 1; rep <= REPS; rep++)); do
		for sc in on off off10; do
			for rate in ${WATCH_RATES:-1000 10000}; do
				k="$sc $rate"
				watch_wal_writer_delay "$sc"
				out=$(as_user "$build/watch_bench" -r "$rate" -s "${WATCH_SECONDS:-5}" \
					"host=$PGHOST port=$PGPORT dbname=bench user=postgres options=-csynchronous_commit=${sc%10}" \
					bench_watch)
				sql -c "SELECT storage_watch_drop('bench_watch')" >/dev/null
				log "watch: synchronous_commit=$sc $out"
				ach[$k]="${ach[$k]:-} $(echo "$out" | sed -n 's/.*achieved=\([0-9.]*\).*/\1/p')"
				p50[$k]="${p50[$k]:-} $(echo "$out" | sed -n 's/.*p50_ms=\([0-9.]*\).*/\1/p')"
				p99[$k]="${p99[$k]:-} $(echo "$out" | sed -n 's/.*p99_ms=\([0-9.]*\).*/\1/p')"
				pmax[$k]="${pmax[$k]:-} $(echo "$out" | sed -n 's/.*max_ms=\([0-9.]*\).*/\1/p')"
			done
		done
	done
	echo
	echo "#### Change feed: commit-to-callback latency of storage_watch (ms; medians of $REPS runs of ${WATCH_SECONDS:-5} s)"
	echo
	echo "| writers' synchronous_commit | offered saves/s | achieved saves/s | p50 | p99 | max | p99 of each run |"
	echo "|---|---:|---:|---:|---:|---:|---|"
	for sc in on off off10; do
		for rate in ${WATCH_RATES:-1000 10000}; do
			k="$sc $rate"
			printf '| %s | %s | %.0f | %.2f | %.2f | %.2f | %s |\n' \
				"$(case $sc in on) echo on ;; off) echo "off (wal_writer_delay 200ms)" ;; *) echo "off, wal_writer_delay 10ms" ;; esac)" "$rate" \
				"$(echo "${ach[$k]}" | tr ' ' '\n' | grep . | median)" \
				"$(echo "${p50[$k]}" | tr ' ' '\n' | grep . | median)" \
				"$(echo "${p99[$k]}" | tr ' ' '\n' | grep . | median)" \
				"$(echo "${pmax[$k]}" | tr ' ' '\n' | grep . | median)" \
				"$(echo "${p99[$k]}" | xargs)"
		done
	done
	echo
	echo "Each save is its own transaction (4 writer connections, separate saves of a"
	echo "storage_pipeline each millisecond); the watch confirms as it goes. An achieved"
	echo "rate below the offered one means the server did not keep up with the writers."
	echo "With synchronous_commit = off a commit is decoded only once the WAL writer has"
	echo "flushed it: wal_writer_delay bounds the latency."
	watch_wal_writer_delay off
	sql -c "DELETE FROM storage_records WHERE id LIKE 'watchbench/%'" >/dev/null
	feed_restart replica
}
