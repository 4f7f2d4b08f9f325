# bench/redis_section.sh: the "redis" section of bench/run.sh (sourced by
# it; not a standalone script; `make bench-redis` runs it alone).  Measures
# each call of the extension against what PostgreSQL can do at all (a
# prepared SELECT 1, a bare write transaction, the raw statement) and
# against Redis on the same machine, then the client library against
# hiredis and against the same forms over bare libpq (pipelined SELECT 1
# and SELECT txid_current(), a Sync each: bench/pipeline_bench.c).
#
# Both servers on Unix sockets with matched durability: PostgreSQL with
# synchronous_commit = off (run.sh's cluster), Redis with appendonly yes,
# appendfsync everysec, started here the way run.sh starts PostgreSQL (as
# $RUN_USER, in a directory under $WORK, no TCP listener).  pgbench -M
# prepared against redis-benchmark, both with $CLIENTS clients, the same
# $RECORDS records of 200 bytes.  REDIS_ROUNDS rounds (5); in each round
# every variant runs once, one after the other, and each ratio is the
# median of the ratios of the rounds, so that both sides of a ratio share
# the machine's noise.
#
# Uses from run.sh / test/lib.sh: WORK, RUN_USER, as_user, log, sql,
# pgbench_tps, median, CLIENTS, RUN_SECONDS, RECORDS, PGHOST/PGPORT.
# Knobs: REDIS_ROUNDS (5), PIPELINE_SECONDS (2, per client-library
# measurement), PIPELINE_RECORDS (RECORDS).

REDIS_DEPS="redis-server redis-tools libhiredis-dev"

redis_install() {
	local missing="" p
	for p in $REDIS_DEPS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing="$missing $p"
	done
	[ -z "$missing" ] && return 0
	log "installing:$missing"
	# shellcheck disable=SC2086
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
		--no-install-recommends $missing >/dev/null
}

REDIS_DIR=
REDIS_SOCK=

redis_start() {
	REDIS_DIR="$WORK/redis"
	REDIS_SOCK="$REDIS_DIR/redis.sock"
	as_user mkdir -p "$REDIS_DIR"
	as_user tee "$REDIS_DIR/redis.conf" >/dev/null <<EOF
port 0
unixsocket $REDIS_SOCK
unixsocketperm 700
dir $REDIS_DIR
daemonize yes
pidfile $REDIS_DIR/redis.pid
logfile $REDIS_DIR/redis.log
appendonly yes
appendfsync everysec
save ""
EOF
	as_user redis-server "$REDIS_DIR/redis.conf" || return 1
	for _ in $(seq 100); do
		as_user redis-cli -s "$REDIS_SOCK" PING 2>/dev/null | grep -q PONG && return 0
		sleep 0.1
	done
	return 1
}

redis_stop() {
	[ -n "$REDIS_DIR" ] && [ -f "$REDIS_DIR/redis.pid" ] &&
		kill "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null
	return 0
}

rcli() { as_user redis-cli -s "$REDIS_SOCK" "$@"; }

# The same records as PostgreSQL's: user:<12 digits> (redis-benchmark's
# __rand_int__) with 200 bytes, and rec:<12 digits> hashes (version, data)
# for the version bump.
redis_load() {
	local payload
	payload=$(printf '%0200d' 0 | tr 0 a)
	rcli EVAL "for i = 0, tonumber(ARGV[1]) - 1 do
		local k = string.format('%012d', i)
		redis.call('SET', 'user:' .. k, ARGV[2])
		redis.call('HSET', 'rec:' .. k, 'v', 1, 'd', ARGV[2])
	end return 1" 0 "$RECORDS" "$payload" >/dev/null
}

# The save: bump the version, write the data, set the TTL (storage_save with
# expires_at, unconditional).
REDIS_SAVE="local v = redis.call('HINCRBY', KEYS[1], 'v', 1) redis.call('HSET', KEYS[1], 'd', ARGV[1]) redis.call('EXPIRE', KEYS[1], ARGV[2]) return v"

# redis_rps PIPELINE COMMAND...: requests/s of one redis-benchmark run of
# about RUN_SECONDS (its request count calibrated once per command).
declare -A REDIS_N=()
redis_rps() {
	local p=$1 key n rps
	shift
	key="$p $*"
	n=${REDIS_N[$key]:-}
	if [ -z "$n" ]; then
		rps=$(redis_bench 20000 "$p" "$@")
		n=$(echo "$rps * $RUN_SECONDS / 1" | bc)
		[ "$n" -lt 20000 ] && n=20000
		REDIS_N[$key]=$n
	fi
	redis_bench "$n" "$p" "$@"
}

redis_bench() {
	local n=$1 p=$2
	shift 2
	as_user redis-benchmark -s "$REDIS_SOCK" -c "$CLIENTS" -n "$n" -r "$RECORDS" -P "$p" -q "$@" 2>/dev/null |
		tr '\r' '\n' | awk '/requests per second/ {for (i = 1; i <= NF; i++) if ($(i + 1) == "requests") r = $i} END {print r + 0}'
}

# The variants: name and how to measure one run (tx or requests per second).
redis_variants() {
	cat <<'EOF'
fetch_storage	pg fetch_storage.sql
select1	pg select1.sql
fetch_raw	pg fetch_raw.sql
get	redis 1 GET user:__rand_int__
ping	redis 1 PING
save_storage	pg save_ttl_storage.sql
txid	pg txid.sql
update_raw	pg update_raw.sql
eval	redis 1 EVAL
fetch_many	pg fetch_many_100.sql
get_p100	redis 100 GET user:__rand_int__
save_many	pg save_many_100.sql
eval_p100	redis 100 EVAL
EOF
}

redis_run_variant() {
	local kind=$1
	shift
	case $kind in
		pg) pgbench_tps "$1" ;;
		redis)
			if [ "$2" = EVAL ]; then
				redis_rps "$1" EVAL "$REDIS_SAVE" 1 'rec:__rand_int__' "$(printf '%0200d' 0 | tr 0 b)" 3600
			else
				redis_rps "$@"
			fi ;;
	esac
}

section_redis() {
	local rounds=${REDIS_ROUNDS:-5} r name kind rest
	declare -A rate=()
	redis_install || { log "redis: could not install $REDIS_DEPS, section skipped"; return; }
	redis_start || { log "redis: the server did not start, section skipped"; return; }
	log "redis: loading $RECORDS records"
	redis_load
	for ((r = 1; r <= rounds; r++)); do
		log "redis: round $r of $rounds"
		# Every round starts from vacuumed tables: the reads must not walk
		# the dead versions that the previous round's saves left in
		# storage_records (TTL saves are often not HOT) and the plain
		# UPDATEs left in raw_records, or the ratios would depend on the
		# order of the variants rather than on the calls.
		sql -c "VACUUM storage_records" -c "VACUUM raw_records" >/dev/null
		while IFS=$'\t' read -r name rest; do
			# shellcheck disable=SC2086
			rate[$name,$r]=$(redis_run_variant $rest)
		done < <(redis_variants)
	done
	redis_table "$rounds" rate
	redis_client_bench
	redis_stop
}

# ratio NUM DEN [MULT]: the median over the rounds of NUM/DEN (x MULT)
redis_ratio() {
	local -n rates=$4
	local r
	for ((r = 1; r <= $3; r++)); do
		echo "${rates[$1,$r]} ${rates[$2,$r]}"
	done | awk -v m="${5:-1}" '$2 > 0 {printf "%.4f\n", $1 * m / $2}' | median
}

redis_median() {
	local -n rates=$3
	local r
	for ((r = 1; r <= $2; r++)); do echo "${rates[$1,$r]}"; done | median
}

redis_table() {
	local n=$1 v
	echo
	echo "#### Each call against the server's own ceiling and against Redis ($CLIENTS clients, $RECORDS records of 200 B, $n rounds, medians of the rounds' ratios)"
	echo
	echo "Both servers on Unix sockets: PostgreSQL with synchronous_commit = off (pgbench -M prepared), Redis with appendfsync everysec (redis-benchmark)."
	echo "Load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)."
	echo
	echo "| call | storage against the server's own ceiling | storage against Redis |"
	echo "|---|---|---|"
	printf '| fetch | %.2f× of a prepared `SELECT 1`; %.2f× of the raw `SELECT` of the row | %.2f× of GET (GET at %.2f× of PING) |\n' \
		"$(redis_ratio fetch_storage select1 "$n" "$2")" "$(redis_ratio fetch_storage fetch_raw "$n" "$2")" \
		"$(redis_ratio fetch_storage get "$n" "$2")" "$(redis_ratio get ping "$n" "$2")"
	printf '| save (unconditional, TTL) | %.2f× of a bare write transaction (`SELECT txid_current()`); %.2f× of a plain `UPDATE` of the row | %.2f× of an EVAL version bump + EXPIRE |\n' \
		"$(redis_ratio save_storage txid "$n" "$2")" "$(redis_ratio save_storage update_raw "$n" "$2")" \
		"$(redis_ratio save_storage eval "$n" "$2")"
	printf '| fetch_many of 100 | — | %.2f× of GET pipelined by 100 (records/s) |\n' \
		"$(redis_ratio fetch_many get_p100 "$n" "$2" 100)"
	printf '| save_many of 100 | — | %.2f× of EVAL pipelined by 100 (records/s) |\n' \
		"$(redis_ratio save_many eval_p100 "$n" "$2" 100)"
	echo
	echo "| variant | median per second | what |"
	echo "|---|---:|---|"
	while IFS=$'\t' read -r v rest; do
		printf '| %s | %.0f | %s |\n' "$v" "$(redis_median "$v" "$n" "$2")" "$rest"
	done < <(redis_variants)
	echo
	echo "(fetch_many and save_many: transactions of 100 records; the pipelined Redis rows: requests, i.e. records.)"
}

# The client library on PostgreSQL against hiredis on Redis and against
# PostgreSQL's ceiling over bare libpq.
redis_client_bench() {
	local build="$WORK/pipeline-bench-build" bin="$WORK/pipeline_bench"
	log "redis: client library vs hiredis"
	if ! as_user make -s -C "$WORK/src/src/client" BUILDDIR="$build" >"$WORK/pipeline-bench.log" 2>&1 ||
		! as_user cc -O2 -std=c11 -Wall -Wextra -Werror -I"$WORK/src/src/client" \
			-I"$("$PG_CONFIG" --includedir)" \
			-o "$bin" "$WORK/src/bench/pipeline_bench.c" "$build/libstorage_client.a" \
			$(pkg-config --cflags --libs hiredis) -lpq -lcrypto -lcurl -ljson-c -pthread \
			>>"$WORK/pipeline-bench.log" 2>&1; then
		cat "$WORK/pipeline-bench.log" >&2
		log "redis: building pipeline_bench failed"
		return
	fi
	(cd "$WORK" && as_user "$bin" -s "${PIPELINE_SECONDS:-2}" -r "${REDIS_ROUNDS:-5}" \
		-n "${PIPELINE_RECORDS:-$RECORDS}" \
		"host=$PGHOST port=$PGPORT dbname=bench user=postgres" "$REDIS_SOCK") ||
		log "redis: pipeline_bench failed"
}
