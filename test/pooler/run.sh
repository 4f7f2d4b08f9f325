#!/usr/bin/env bash
# test/pooler/run.sh: the client library's postgresql backend behind a real
# pgbouncer.  Starts its own PostgreSQL cluster (from $PGBIN, with the
# storage extension already installed there) and pgbouncer ($PGBOUNCER),
# both on Unix sockets in a private work directory, as the calling user
# (never root), and runs:
#   - the whole client conformance suite through pgbouncer in transaction
#     mode with 2 server connections and prepare=off, and in session mode
#     with the default named statements (and, with pgbouncer >= 1.21, in
#     transaction mode with named statements and max_prepared_statements);
#   - named statements through the transaction pooler failing with
#     STORAGE_BACKEND_ERROR naming prepare=off;
#   - prepare=off sending unnamed statements only, one per call and batch
#     (the server's statement log);
#   - a server restart behind the pooler (transaction and session mode);
#   - a server-side lock wait through the transaction pooler.
# The last line is "pooler: N passed, N failed" (one per conformance test
# case, one per other check); exits non-zero on any failure.
#
# PGBIN (default: $PG_CONFIG --bindir, as test/run-all.sh passes it), PGBOUNCER (default: pgbouncer in
# PATH or /usr/sbin), KEEP_WORK=1 keeps the work directory.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
PGBIN=${PGBIN:-$("${PG_CONFIG:-pg_config}" --bindir)}
PGBOUNCER=${PGBOUNCER:-$(command -v pgbouncer || echo /usr/sbin/pgbouncer)}
work=$(mktemp -d "${TMPDIR:-/tmp}/storage-pooler.XXXXXX") || exit 1
data=$work/data
PGPORT_DIRECT=5432
PORT_BOUNCER=6432			# named statements unsupported (max_prepared_statements 0)
PORT_PREPARED=6433			# pgbouncer >= 1.21: max_prepared_statements 100

passed=0
failed=0
source "$here/bouncer.sh"

stop_all() {
	stop_pgbouncer "$work" plain
	stop_pgbouncer "$work" prepared
	[ -f "$data/postmaster.pid" ] && "$PGBIN/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
	if [ -n "${KEEP_WORK:-}" ]; then
		echo "kept $work"
	else
		rm -rf "$work"
	fi
}
trap stop_all EXIT
trap 'exit 1' INT TERM

pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAILED: $1" >&2; failed=$((failed + 1)); }
finish() {
	echo "pooler: $passed passed, $failed failed"
	[ "$failed" -eq 0 ]
	exit
}
die_setup() {
	echo "run.sh: $1" >&2
	failed=$((failed + 1))
	finish
}

psql_direct() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p $PGPORT_DIRECT -U postgres "$@"; }
psql_bouncer() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$work" -p $PORT_BOUNCER -U postgres "$@"; }

# ---- the server -------------------------------------------------------------

[ -x "$PGBOUNCER" ] || die_setup "no pgbouncer at $PGBOUNCER"
bouncer_version=$("$PGBOUNCER" --version | sed -n 's/^PgBouncer \([0-9][0-9.]*\).*/\1/p' | head -1)
bouncer_minor=$(pgbouncer_version "$PGBOUNCER")
echo "== pgbouncer $bouncer_version ($PGBOUNCER), PostgreSQL $("$PGBIN/pg_ctl" --version | awk '{print $NF}')"

"$PGBIN/initdb" -D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8 \
	>"$work/initdb.log" 2>&1 || { cat "$work/initdb.log"; die_setup "initdb failed"; }
cat >>"$data/postgresql.conf" <<EOF
port = $PGPORT_DIRECT
listen_addresses = ''
unix_socket_directories = '$work'
fsync = off
log_line_prefix = '%m [%p] db=%d '
EOF
"$PGBIN/pg_ctl" -D "$data" -l "$work/server.log" -w start >/dev/null ||
	{ cat "$work/server.log"; die_setup "the server did not start"; }
for db in client_test logcheck; do
	psql_direct -d postgres -c "CREATE DATABASE $db" &&
		psql_direct -d $db -c "CREATE EXTENSION storage" ||
		die_setup "CREATE EXTENSION storage in $db (is the extension installed for $PGBIN?)"
done
# every statement of database logcheck is logged, with its name
psql_direct -d postgres -c "ALTER DATABASE logcheck SET log_statement = 'all'" ||
	die_setup "ALTER DATABASE"

# ---- pgbouncer --------------------------------------------------------------

# Transaction mode: 2 server connections (opened by two_connections below)
# used in turn (server_round_robin: FIFO instead of LIFO), so even one
# client's consecutive transactions alternate between them.  Session mode
# binds a server connection per client: room for the races' handles.
# (Not min_pool_size: pgbouncer would try to refill the pool while the
# server restarts, and then refuse clients for server_login_retry.)
dbs="txn = host=$work port=$PGPORT_DIRECT dbname=client_test pool_mode=transaction pool_size=2
logtxn = host=$work port=$PGPORT_DIRECT dbname=logcheck pool_mode=transaction pool_size=2
sess = host=$work port=$PGPORT_DIRECT dbname=client_test pool_mode=session pool_size=40"
start_bouncer() {
	start_pgbouncer "$PGBOUNCER" "$work" "$1" "$2" "$dbs" "server_round_robin = 1" "${@:3}" ||
		die_setup "pgbouncer $1 did not start"
}

prepared_support=false
if [ "$bouncer_minor" -ge 1021 ]; then
	prepared_support=true
	# pgbouncer 1.24 turned prepared statement support on by default
	start_bouncer plain $PORT_BOUNCER "max_prepared_statements = 0"
	start_bouncer prepared $PORT_PREPARED "max_prepared_statements = 100"
else
	start_bouncer plain $PORT_BOUNCER
fi

# ---- the library, the suite and the checks (as test/client/run.sh builds them)

CC=${CC:-cc}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
make -s -C "$top/src/client" BUILDDIR="$work/build" PREFIX="$work/prefix" \
	CC="$CC" EXTRA_CFLAGS="$SAN" EXTRA_LDFLAGS="$SAN" install >"$work/build.log" 2>&1 ||
	{ cat "$work/build.log"; die_setup "building the library failed"; }
# the test archive: the installed one hides the suite's internal hooks
for prog in "$top/test/client/conformance.c" "$here/pooler_check.c"; do
	$CC -std=c11 -g -O1 -Wall -Wextra -Werror $SAN -I"$work/prefix/include" \
		$(pkg-config --cflags cmocka libpq) "$prog" -o "$work/$(basename "$prog" .c)" \
		"$work/build/libstorage_client_test.a" \
		$(pkg-config --libs cmocka libpq) -lcrypto -lcurl -ljson-c -pthread ||
		die_setup "building $(basename "$prog") failed"
done

direct="host=$work port=$PGPORT_DIRECT user=postgres"
bouncer="host=$work port=$PORT_BOUNCER user=postgres"

# two_connections ALIAS DB: pgbouncer opens both server connections of the
# pool (they stay open while idle): a second transaction arrives while a
# first one is still running, which is then cancelled.
two_connections() {
	local sleeper i q="datname = '$2' AND pid <> pg_backend_pid()"
	psql_bouncer -d "$1" -c "SELECT pg_sleep(600)" >/dev/null 2>&1 &
	sleeper=$!
	for i in $(seq 200); do
		[ "$(psql_direct -d postgres -At -c "SELECT count(*) FROM pg_stat_activity
			WHERE $q AND state = 'active' AND query = 'SELECT pg_sleep(600)'")" = 1 ] && break
		sleep 0.05
	done
	psql_bouncer -d "$1" -c "SELECT 1" >/dev/null
	psql_direct -d postgres -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity
		WHERE $q AND query = 'SELECT pg_sleep(600)'" >/dev/null
	wait $sleeper
	[ "$(psql_direct -d postgres -At -c "SELECT count(*) FROM pg_stat_activity WHERE $q")" = 2 ] ||
		echo "run.sh: pgbouncer did not open 2 server connections to $2" >&2
}

# conformance LABEL URI [ENV=VALUE...]: the whole postgresql group, one
# count per test case
conformance() {
	local label=$1 uri=$2 total log="$work/conformance.log" rc res f
	shift 2
	total=$("$work/conformance" --count postgresql)
	echo "== conformance through $label ($total tests): $uri"
	(cd "$work" && env "$@" TMPDIR="$work" STORAGE_TEST_PG_URI="$uri" \
		STORAGE_TEST_PG_ADMIN_URI="$direct dbname=client_test" \
		timeout -k 10 "${STORAGE_TEST_TIMEOUT:-600}" "$work/conformance" postgresql) >"$log" 2>&1
	rc=$?
	cat "$log"
	res=$(sed -n "s/^RESULT postgresql total=\([0-9]*\) failed=\([0-9]*\) skipped=[0-9]*$/\2/p" "$log" | tail -n 1)
	if [ -z "$res" ]; then
		echo "conformance through $label: crashed or aborted (exit $rc): all $total counted as failed" >&2
		f=$total
	else
		f=$res
		[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	fi
	passed=$((passed + total - f))
	failed=$((failed + f))
	[ "$f" -eq 0 ] && echo "ok: conformance through $label" ||
		echo "FAILED: conformance through $label: $f of $total" >&2
}

two_connections txn client_test
conformance "pgbouncer transaction mode, prepare=off" "$bouncer dbname=txn prepare=off" \
	STORAGE_TEST_PG_TXN_POOLER=1
conformance "pgbouncer session mode, named statements" "$bouncer dbname=sess" \
	STORAGE_TEST_PG_SESSION_POOLER=1
if $prepared_support; then
	conformance "pgbouncer $bouncer_version transaction mode, named statements (max_prepared_statements)" \
		"host=$work port=$PORT_PREPARED user=postgres dbname=txn" STORAGE_TEST_PG_TXN_POOLER=1
else
	echo "SKIP: pgbouncer $bouncer_version has no prepared statement support (1.21): named statements through its transaction mode are not run"
fi

# ---- named statements behind the transaction pooler: the clear error --------

echo "== named statements through the transaction pooler"
if (cd "$work" && "$work/pooler_check" default-fails "$bouncer dbname=txn"); then
	pass "named statements through the transaction pooler fail naming prepare=off"
else
	fail "named statements through the transaction pooler fail naming prepare=off"
fi

# ---- the option's forms ---------------------------------------------------------

echo "== prepare=off written as a URI parameter and as a quoted conninfo value"
for uri in "postgresql://postgres@/txn?host=$work&port=$PORT_BOUNCER&prepare=off" \
	"postgresql://postgres@/txn?prepare=off&host=$work&port=$PORT_BOUNCER" \
	"$bouncer dbname=txn prepare = 'off'"; do
	if (cd "$work" && "$work/pooler_check" handles "$uri"); then
		pass "3 handles through the transaction pooler with $uri"
	else
		fail "3 handles through the transaction pooler with $uri"
	fi
done
if (cd "$work" && "$work/pooler_check" bad-option "$direct dbname=client_test prepare=maybe"); then
	pass "prepare=maybe is refused naming the option"
else
	fail "prepare=maybe is refused naming the option"
fi

# ---- prepare=off: unnamed statements only, one per call ----------------------

# log_lines FROM: statements of database logcheck logged after byte FROM
log_lines() { tail -c +"$(($1 + 1))" "$work/server.log" | grep ' db=logcheck ' | grep -E 'LOG:  (execute|statement)'; }
echo "== statements sent with prepare=off (server log of database logcheck)"
two_connections logtxn logcheck
size=$(stat -c %s "$work/server.log")
if (cd "$work" && "$work/pooler_check" ops "$bouncer dbname=logtxn prepare=off"); then
	log_lines "$size" >"$work/unnamed.log"
	cat "$work/unnamed.log"
	named=$(grep -c 'execute storage_client_' "$work/unnamed.log")
	unnamed=$(grep -c 'execute <unnamed>: SELECT' "$work/unnamed.log")
	batch=$(grep -c 'execute <unnamed>: SELECT storage_save_many(' "$work/unnamed.log")
	pids=$(grep 'execute <unnamed>' "$work/unnamed.log" | sed 's/.*\[\([0-9]*\)\].*/\1/' | sort -u | wc -l)
	if [ "$named" -eq 0 ] && [ "$unnamed" -ge 15 ] && [ "$batch" -eq 1 ] && [ "$pids" -eq 2 ]; then
		pass "prepare=off sends unnamed statements only, one per call, one per batch and one per pipelined call ($unnamed unnamed over $pids server connections)"
	else
		fail "prepare=off: $named named, $unnamed unnamed, $batch save_many statements over $pids server connections (want 0, >= 15, 1, 2)"
	fi
else
	fail "prepare=off calls through the transaction pooler"
fi
# the same check can fail: named statements do show up in that log
size=$(stat -c %s "$work/server.log")
if (cd "$work" && "$work/pooler_check" ops "$direct dbname=logcheck") >/dev/null &&
	log_lines "$size" | grep -q 'execute storage_client_save_many'; then
	pass "the statement log shows named statements when they are used"
else
	fail "the statement log shows named statements when they are used"
fi

# ---- a server-side lock wait through the transaction pooler -------------------

# The waiter's statement occupies one of the 2 server connections while it
# waits; the holder's release gets the other one.
echo "== storage_acquire_lock waiting through the transaction pooler"
psql_bouncer -d txn -c "SELECT storage_acquire_lock('pooler', '1 minute')" >/dev/null
psql_bouncer -d txn -At -c "SELECT storage_acquire_lock('pooler', '1 minute')" \
	-c "SELECT storage_release_lock('pooler')" -c "SELECT 'waiter done'" \
	>"$work/waiter.out" 2>&1 &
waiter=$!
waiting=0
for _ in $(seq 200); do
	waiting=$(psql_direct -d client_test -At -c "SELECT count(*) FROM pg_stat_activity
		WHERE state = 'active' AND query LIKE '%storage_acquire_lock(''pooler''%'
		AND pid <> pg_backend_pid()")
	[ "$waiting" = 1 ] && break
	sleep 0.05
done
psql_bouncer -d txn -c "SELECT storage_release_lock('pooler')" >/dev/null
timeout 60 tail --pid=$waiter -f /dev/null
wait $waiter
rc=$?
cat "$work/waiter.out"
if [ "$waiting" = 1 ] && [ "$rc" = 0 ] && grep -q '^waiter done$' "$work/waiter.out"; then
	pass "a lock waiter through the transaction pooler gets the lock released through it"
else
	fail "lock wait through the transaction pooler (waiting=$waiting, exit $rc)"
fi

# ---- a server restart behind the pooler --------------------------------------

restart_cmd="'$PGBIN/pg_ctl' -D '$data' -l '$work/server.log' -m fast -w restart >/dev/null"
for c in "transaction mode, prepare=off|$bouncer dbname=txn prepare=off" \
	"session mode, named statements|$bouncer dbname=sess" \
	"session mode, prepare=off|$bouncer dbname=sess prepare=off"; do
	label=${c%%|*}
	echo "== server restart behind pgbouncer, $label"
	if (cd "$work" && "$work/pooler_check" restart "${c#*|}" "$restart_cmd"); then
		pass "server restart behind pgbouncer, $label"
	else
		fail "server restart behind pgbouncer, $label"
		tail -20 "$work/pgbouncer-plain.log"
	fi
done

finish
