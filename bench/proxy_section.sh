# bench/proxy_section.sh: the "proxy" section of bench/run.sh (sourced by
# it; not a standalone script).  Measures the storage_proxy extension on
# the bench cluster: the cost a call pays for going through PL/Proxy
# (fetch and save, proxy with one partition vs calling that partition
# directly) and throughput with 1, 2 and 4 partitions.  All partitions are
# databases of the one bench cluster on this machine, so the figures show
# the proxy's overhead, not scaling (see the README, "Scale-out").
#
# Uses from run.sh / test/lib.sh: WORK, as_user, log, median, REPS,
# RUN_SECONDS, CLIENTS, PAYLOAD, PGHOST/PGPORT.
# Knob: PROXY_RECORDS (100000).

# proxy_tps DB SCRIPT: one pgbench run against database DB, prints tps
proxy_tps() {
	as_user pgbench -n -M prepared -c "$CLIENTS" -j 2 -T "$RUN_SECONDS" \
		-D records="${PROXY_RECORDS:-100000}" -D payload="$PAYLOAD" \
		-f "$WORK/src/bench/pgbench/$2" "$1" 2>&1 |
		awk '/^tps = / {print $3; found=1} END {if (!found) print "0"}'
}

# proxy_setup N: databases pN_0 .. pN_(N-1) holding their share of the
# records, and database proxyN routing to them
proxy_setup() {
	local n=$1 k opts=""
	for ((k = 0; k < n; k++)); do
		as_user psql -X -q -d postgres -c "CREATE DATABASE p${n}_$k"
		as_user psql -X -q -d "p${n}_$k" -c "CREATE EXTENSION storage" 2>/dev/null
		# the partition's share, chosen by the proxy's own hash function
		as_user psql -X -q -d "p${n}_$k" \
			-c "CREATE FUNCTION pg_temp.route(text) RETURNS integer
			      AS 'storage_proxy', 'storage_proxy_hash' LANGUAGE C IMMUTABLE" \
			-c "INSERT INTO storage_records (id, version, format, data)
			    SELECT 'user:' || i, 1, 'raw', decode(repeat(md5(i::text), 12) || 'abcdabcd', 'hex')
			      FROM generate_series(1, ${PROXY_RECORDS:-100000}) AS i
			     WHERE pg_temp.route('user:' || i) & ($n - 1) = $k" \
			-c "VACUUM ANALYZE storage_records"
		opts="$opts${opts:+, }p$k 'dbname=p${n}_$k host=$PGHOST port=$PGPORT'"
	done
	as_user psql -X -q -d postgres -c "CREATE DATABASE proxy$n"
	as_user psql -X -q -d "proxy$n" \
		-c "CREATE EXTENSION plproxy" -c "CREATE EXTENSION storage_proxy" \
		-c "CREATE SERVER storage FOREIGN DATA WRAPPER plproxy OPTIONS ($opts)" \
		-c "CREATE USER MAPPING FOR PUBLIC SERVER storage"
}

# proxy_row LABEL DB:SCRIPT ...: interleaved runs, medians, ratio to the first
proxy_row() {
	local label=$1 rep t
	shift
	local -a targets=("$@")
	declare -A runs=()
	for ((rep = 1; rep <= REPS; rep++)); do
		for t in "${targets[@]}"; do
			runs[$t]="${runs[$t]:-} $(proxy_tps "${t%%:*}" "${t#*:}")"
		done
	done
	local base m cells=""
	base=$(echo "${runs[${targets[0]}]}" | tr ' ' '\n' | grep . | median)
	for t in "${targets[@]}"; do
		m=$(echo "${runs[$t]}" | tr ' ' '\n' | grep . | median)
		cells="$cells | $(printf '%.0f (%.2f)' "$m" "$(echo "$m / $base" | bc -l)")"
	done
	echo "| $label$cells |"
}

section_proxy() {
	local n
	log "proxy: loading ${PROXY_RECORDS:-100000} records into 1, 2 and 4 partitions"
	for n in 1 2 4; do proxy_setup "$n"; done
	echo
	echo "#### Scale-out through PL/Proxy (tx/s, $CLIENTS clients, ${REPS} interleaved repetitions, medians; in brackets: ratio to the first column)"
	echo
	echo "All partitions are databases of one cluster on this $(nproc)-core machine: the proxy and the partitions share the cores."
	echo
	echo "| call | one server directly | proxy, 1 partition | proxy, 2 partitions | proxy, 4 partitions |"
	echo "|---|---:|---:|---:|---:|"
	proxy_row "storage_fetch" p1_0:fetch_storage.sql proxy1:fetch_storage.sql \
		proxy2:fetch_storage.sql proxy4:fetch_storage.sql
	proxy_row "storage_save (unversioned)" p1_0:save_any_storage.sql proxy1:save_any_storage.sql \
		proxy2:save_any_storage.sql proxy4:save_any_storage.sql
}
