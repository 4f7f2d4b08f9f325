# bench/feed_section.sh: the "feed" section of bench/run.sh (sourced by it;
# not a standalone script).  Measures the change feed on the bench cluster:
#
# - save throughput (the unversioned save of the save section) at
#   wal_level = replica, at wal_level = logical with no slot, and at
#   logical with one watch slot whose consumer (pg_recvlogical) decodes
#   every save as it happens; interleaved, a restart per wal_level change;
# - events decoded per second by the output plugin: FEED_EVENTS small saves
#   (in transactions of 10,000) read back with
#   pg_logical_slot_peek_binary_changes, with and without values, and
#   test_decoding over the same WAL as a yardstick.
#
# The bench cluster is left at wal_level = replica as it was found.
# Uses from run.sh / test/lib.sh: WORK, as_user, sql, log, median,
# pgbench_tps, REPS, RUN_SECONDS, CLIENTS, PGHOST/PGPORT.
# Knob: FEED_EVENTS (200000).

# feed_restart WAL_LEVEL: the bench cluster restarted at that wal_level
feed_restart() {
	sql -c "ALTER SYSTEM SET wal_level = '$1'" >/dev/null
	as_user pg_ctl -D "$WORK/bench/data" -l "$WORK/bench/server.log" -w -m fast restart >/dev/null
	# a short unmeasured run: the restart emptied shared_buffers
	RUN_SECONDS=1 pgbench_tps save_any_storage.sql >/dev/null
}

# feed_consumer_start / _stop: pg_recvlogical following slot bench_feed
feed_consumer_start() {
	sql -c "SELECT pg_create_logical_replication_slot('bench_feed', 'storage')" >/dev/null
	# status every second, so that its confirmed position follows closely
	as_user pg_recvlogical -d bench -S bench_feed --start --no-loop -s 1 -F 1 -f /dev/null &
	FEED_CONSUMER=$!
	local k
	for ((k = 0; k < 100; k++)); do
		[ "$(sql -c "SELECT active FROM pg_replication_slots WHERE slot_name = 'bench_feed'")" = t ] && return
		sleep 0.1
	done
	log "feed: pg_recvlogical did not start"
}
feed_consumer_stop() {
	# how long the consumer needs after the run to confirm everything the
	# run wrote (its status interval is 1 s): whether decoding keeps up
	local end t0 k
	end=$(sql -c "SELECT pg_current_wal_lsn()")
	t0=$(date +%s.%N)
	for ((k = 0; k < 600; k++)); do
		[ "$(sql -c "SELECT confirmed_flush_lsn >= '$end' FROM pg_replication_slots
		              WHERE slot_name = 'bench_feed'")" = t ] && break
		sleep 0.1
	done
	FEED_CATCHUP="$FEED_CATCHUP $(printf '%.1f' "$(echo "$(date +%s.%N) - $t0" | bc -l)")"
	# its walsender ends, and with --no-loop so does pg_recvlogical
	sql -c "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
	         WHERE slot_name = 'bench_feed' AND active" >/dev/null
	wait "$FEED_CONSUMER" 2>/dev/null
	sql -c "SELECT pg_drop_replication_slot('bench_feed')" >/dev/null
}

# feed_decode SLOT PLUGIN [options]: seconds to read the slot's changes (peek)
feed_decode() {
	local slot=$1 fn=$2 opts=""
	shift 2
	[ $# -gt 0 ] && opts=", $(printf "'%s', " "$@" | sed 's/, $//')"
	local t0 t1 n
	t0=$(date +%s.%N)
	n=$(sql -c "SELECT count(*) FROM $fn('$slot', NULL, NULL$opts)")
	t1=$(date +%s.%N)
	echo "$(echo "$t1 - $t0" | bc -l) $n"
}

section_feed() {
	local rep level tps runs label runs_replica="" runs_logical="" runs_slot=""
	local events=${FEED_EVENTS:-200000}
	FEED_CATCHUP=""
	log "feed: save throughput at wal_level replica, logical, logical with a watch"
	if [ -n "$(sql -c "SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries'")" ]; then
		sql -c "ALTER SYSTEM SET output_plugin_libraries = 'pgoutput', 'test_decoding', 'storage'" >/dev/null
	fi
	for ((rep = 1; rep <= REPS; rep++)); do
		feed_restart replica
		runs_replica="$runs_replica $(pgbench_tps save_any_storage.sql)"
		feed_restart logical
		runs_logical="$runs_logical $(pgbench_tps save_any_storage.sql)"
		feed_consumer_start
		runs_slot="$runs_slot $(pgbench_tps save_any_storage.sql)"
		feed_consumer_stop
	done
	local m_rep m_log m_slot
	m_rep=$(echo "$runs_replica" | tr ' ' '\n' | grep . | median)
	m_log=$(echo "$runs_logical" | tr ' ' '\n' | grep . | median)
	m_slot=$(echo "$runs_slot" | tr ' ' '\n' | grep . | median)
	echo
	echo "#### Change feed: unversioned save with a watch (tx/s, $CLIENTS clients)"
	echo
	echo "| variant | median tx/s | runs | vs wal_level = logical, no slot |"
	echo "|---|---:|---|---:|"
	for level in replica logical slot; do
		case $level in
		replica) tps=$m_rep runs=$runs_replica label="wal_level = replica" ;;
		logical) tps=$m_log runs=$runs_logical label="wal_level = logical, no slot" ;;
		slot) tps=$m_slot runs=$runs_slot label="wal_level = logical, one watch decoded by pg_recvlogical" ;;
		esac
		printf '| %s | %.0f | %s | %.2f |\n' "$label" "$tps" \
			"$(echo "$runs" | awk '{for (i=1;i<=NF;i++) printf "%s%.0f", (i>1?" ":""), $i}')" \
			"$(echo "$tps / $m_log" | bc -l)"
	done
	echo
	echo "After each run the consumer had confirmed everything the run wrote within (s):$FEED_CATCHUP"
	echo "(its status interval is 1 s)."

	log "feed: decoding $events small saves"
	sql -c "SELECT pg_create_logical_replication_slot('bench_decode', 'storage')" \
		-c "SELECT pg_create_logical_replication_slot('bench_decode_td', 'test_decoding')" >/dev/null
	local k
	for ((k = 0; k < events; k += 10000)); do
		sql -c "SELECT count(storage_save('feed:' || i, 'abcdefgh'))
		          FROM generate_series($k + 1, least($k + 10000, $events)) AS i" >/dev/null
	done
	local -a plugins=("bench_decode pg_logical_slot_peek_binary_changes"
		"bench_decode pg_logical_slot_peek_binary_changes values false"
		"bench_decode_td pg_logical_slot_peek_changes")
	local -a labels=("storage, values" "storage, values=false" "test_decoding (text, for comparison)")
	declare -A secs=()
	local p out
	for ((rep = 1; rep <= REPS; rep++)); do
		for ((p = 0; p < ${#plugins[@]}; p++)); do
			# shellcheck disable=SC2086
			out=$(feed_decode ${plugins[$p]})
			secs[$p]="${secs[$p]:-} ${out%% *}"
		done
	done
	echo
	echo "#### Change feed: decoding $events saves (transactions of 10,000), pg_logical_slot_peek_*_changes"
	echo
	echo "| plugin | median s | runs (s) | events/s |"
	echo "|---|---:|---|---:|"
	for ((p = 0; p < ${#plugins[@]}; p++)); do
		local m
		m=$(echo "${secs[$p]}" | tr ' ' '\n' | grep . | median)
		printf '| %s | %.2f | %s | %.0f |\n' "${labels[$p]}" "$m" \
			"$(echo "${secs[$p]}" | awk '{for (i=1;i<=NF;i++) printf "%s%.2f", (i>1?" ":""), $i}')" \
			"$(echo "$events / $m" | bc -l)"
	done
	sql -c "SELECT pg_drop_replication_slot('bench_decode')" \
		-c "SELECT pg_drop_replication_slot('bench_decode_td')" \
		-c "DELETE FROM storage_records WHERE id LIKE 'feed:%'" >/dev/null
	feed_restart replica
}
