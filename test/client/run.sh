#!/bin/sh
# test/client/run.sh: build libstorage_client and its cmocka conformance
# suite with AddressSanitizer + UndefinedBehaviorSanitizer, run the suite
# against the memory, dir, (when STORAGE_TEST_PG_URI is set) postgresql and
# (with a DynamoDB-compatible server) dynamodb backends, and build
# example.c through pkg-config against a temporary installation and run it
# against each backend.
#
# Writes only under ${TMPDIR:-/tmp}; works as any user from any copy of
# the repository.  The last line is "client: N passed, N failed" (suite
# test cases + packaging checks + one per example run); the line before it
# "client: N skipped" (tests the server could not run, each named with its
# reason above; never counted as passed).  Exits non-zero on any failure.
#
# STORAGE_TEST_PG_URI: libpq URI/conninfo of a database where
# CREATE EXTENSION storage has been done; its records are wiped.
# STORAGE_TEST_DYNAMODB_URI: dynamodb://TABLE?... of a server to use (its
# table is wiped; AWS_* credentials from the environment).  Unset: the
# script starts dynalite itself on a free loopback port when it is
# installed (test/client/install-dynalite.sh; STORAGE_TEST_DYNALITE names
# its cli.js) and stops it at exit; without it the group is skipped.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/storage-client-run.XXXXXX") || exit 1
dynalite_pid=
cleanup() {
	[ -n "$dynalite_pid" ] && kill "$dynalite_pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

CC=${CC:-cc}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS UBSAN_OPTIONS

passed=0
failed=0
skipped=0

fail_build() {
	echo "run.sh: $1 failed" >&2
	echo "client: $passed passed, $((failed + 1)) failed"
	exit 1
}

# check NAME COMMAND...: one counted test case of the packaging
check() {
	name=$1
	shift
	if "$@" >"$work/check.out" 2>&1; then
		echo "check $name: ok"
		passed=$((passed + 1))
	else
		echo "check $name: FAILED" >&2
		cat "$work/check.out" >&2
		failed=$((failed + 1))
	fi
}

# 1. the library, sanitized: built first with the default PREFIX, then
# installed into a private prefix (the .pc file must follow the install's
# PREFIX, not the build's)
make -s -C "$top/src/client" BUILDDIR="$work/build" \
	CC="$CC" EXTRA_CFLAGS="$SAN" EXTRA_LDFLAGS="$SAN" ||
	fail_build "building the library"
make -s -C "$top/src/client" BUILDDIR="$work/build" PREFIX="$work/prefix" \
	CC="$CC" EXTRA_CFLAGS="$SAN" EXTRA_LDFLAGS="$SAN" install ||
	fail_build "installing the library"

# 2. the conformance suite, linked with the test archive (the installed
# static library hides the internal test hooks)
$CC -std=c11 -g -O1 -Wall -Wextra -Werror $SAN -I"$work/prefix/include" \
	$(pkg-config --cflags cmocka libpq) \
	"$here/conformance.c" -o "$work/conformance" \
	"$work/build/libstorage_client_test.a" \
	$(pkg-config --libs cmocka libpq) -lcrypto -lcurl -ljson-c -pthread ||
	fail_build "building the conformance suite"

# 3. packaging: pkg-config, exported symbols, const-correct header
pc_only() {					# pkg-config that sees only our .pc (no libpq.pc)
	PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$work/prefix/lib/pkgconfig" pkg-config "$@"
}
check pkgconfig-prefix sh -c "test \"\$(PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR='$work/prefix/lib/pkgconfig' pkg-config --variable=prefix storage_client)\" = '$work/prefix'"
check pkgconfig-without-libpq-pc pc_only --cflags --libs storage_client
check pkgconfig-static-libs sh -c "PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR='$work/prefix/lib/pkgconfig' pkg-config --static --libs storage_client | grep -q -- -lpq"
# the static library defines exactly the public functions of the header
nm -g --defined-only "$work/prefix/lib/libstorage_client.a" | awk 'NF == 3 {print $3}' |
	sort >"$work/static.syms"
grep -oE 'STORAGE_API [^(]*\(' "$work/prefix/include/storage_client.h" |
	grep -oE 'storage_[a-z0-9_]+\($' | tr -d '(' | sort >"$work/header.syms"
check static-exports-only-api cmp "$work/static.syms" "$work/header.syms"
# the shared library: soname 1, every export versioned, 1.0 names in 1.0
objdump -T "$work/prefix/lib/libstorage_client.so.1" |
	awk '$4 == ".text" {print $6, $7}' | sort >"$work/shared.syms"
check shared-soname sh -c "objdump -p '$work/prefix/lib/libstorage_client.so.1' | grep -q 'SONAME *libstorage_client.so.1\$'"
check shared-exports-only-api sh -c "awk '{print \$2}' '$work/shared.syms' | sort | cmp - '$work/header.syms'"
check shared-1.0-symbols sh -c "grep -c '^STORAGE_CLIENT_1.0 ' '$work/shared.syms' | grep -qx 30"
check header-write-strings $CC -std=c11 -Wall -Wextra -Werror -Wwrite-strings \
	-I"$work/prefix/include" -fsyntax-only "$here/example.c"
check header-cplusplus sh -c "printf '#include <storage_client.h>\nint main() { storage_record r = {}; r.id = \"x\"; r.format = \"f\"; return r.id[0] == 0; }\n' |
	\${CXX:-c++} -x c++ -Wall -Wextra -Werror -I'$work/prefix/include' -fsyntax-only -"

# 4. the README example, compiled the way the README says (pkg-config)
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
export PKG_CONFIG_PATH
$CC -std=c11 -Wall -Wextra -Werror $SAN "$here/example.c" -o "$work/example" \
	$(pkg-config --cflags --libs storage_client) ||
	fail_build "building example.c with pkg-config"
LD_LIBRARY_PATH="$work/prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH

backends="memory dir dynamodb-unit"
if [ -n "${STORAGE_TEST_PG_URI:-}" ]; then
	# postgresql-generic: the same cases through the generic bucket layer
	# instead of the server's bucket and lock functions (same results)
	backends="$backends postgresql postgresql-generic"
else
	echo "SKIP postgresql: STORAGE_TEST_PG_URI is not set (the postgresql group and its example run are skipped)"
fi

# dynalite on a free loopback port, in memory, for this run only
start_dynalite() {
	cli=${STORAGE_TEST_DYNALITE:-/var/cache/storage-test/dynalite/node_modules/dynalite/cli.js}
	if [ ! -f "$cli" ] || ! command -v node >/dev/null 2>&1; then
		echo "SKIP dynamodb: dynalite is not installed ($cli; see test/client/install-dynalite.sh)"
		return 1
	fi
	for try in 1 2 3 4 5; do
		port=$(( (($$ + try * 7919) % 20000) + 20000 ))
		node "$cli" --host 127.0.0.1 --port "$port" >"$work/dynalite.log" 2>&1 &
		dynalite_pid=$!
		for i in $(seq 1 100); do
			grep -q "listening" "$work/dynalite.log" 2>/dev/null && break
			kill -0 "$dynalite_pid" 2>/dev/null || break
			sleep 0.1
		done
		if grep -q "listening" "$work/dynalite.log" 2>/dev/null; then
			# dynalite checks that a signature is there, not its value
			AWS_ACCESS_KEY_ID=storage-test AWS_SECRET_ACCESS_KEY=storage-test
			export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY
			STORAGE_TEST_DYNAMODB_URI="dynamodb://storage_test?region=us-east-1&endpoint=http://127.0.0.1:$port&create=true"
			export STORAGE_TEST_DYNAMODB_URI
			echo "dynalite $(node -p "require('$(dirname "$cli")/package.json').version") on 127.0.0.1:$port (Node.js $(node --version))"
			return 0
		fi
		kill "$dynalite_pid" 2>/dev/null
		wait "$dynalite_pid" 2>/dev/null
		dynalite_pid=
	done
	cat "$work/dynalite.log"
	echo "run.sh: dynalite did not start" >&2
	failed=$((failed + 1))
	return 1
}
if [ -n "${STORAGE_TEST_DYNAMODB_URI:-}" ] || start_dynalite; then
	backends="$backends dynamodb"
fi

run_example() {
	name=$1
	uri=$2
	out="$work/example-$name.out"
	if timeout 60 "$work/example" "$uri" >"$out" 2>&1 &&
		grep -q '^saved version 1$' "$out" &&
		grep -q '^conflict: ' "$out" &&
		grep -q '^greeting v1: hello$' "$out"; then
		echo "example $name: ok"
		passed=$((passed + 1))
	else
		echo "example $name: FAILED" >&2
		cat "$out" >&2
		failed=$((failed + 1))
	fi
}

for b in $backends; do
	total=$("$work/conformance" --count "$b")
	log="$work/conformance-$b.log"
	echo "== conformance: $b ($total tests)"
	# a hang (e.g. a lock never freed) must fail, not block CI forever
	(cd "$work" && TMPDIR="$work" timeout -k 10 "${STORAGE_TEST_TIMEOUT:-600}" \
		"$work/conformance" "$b") >"$log" 2>&1
	rc=$?
	cat "$log"
	res=$(sed -n "s/^RESULT $b total=\([0-9]*\) failed=\([0-9]*\) skipped=\([0-9]*\)$/\2 \3/p" "$log" | tail -n 1)
	s=0
	if [ -z "$res" ]; then
		echo "conformance $b: crashed or aborted (exit $rc): counting all $total as failed" >&2
		f=$total
	else
		f=${res% *}
		s=${res#* }
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			echo "conformance $b: exit status $rc after the tests (sanitizer report?)" >&2
			f=1
		fi
	fi
	passed=$((passed + total - f - s))
	failed=$((failed + f))
	skipped=$((skipped + s))

	case $b in
		memory) run_example memory "memory:" ;;
		dir) run_example dir "dir:$work/example-store" ;;
		postgresql) run_example postgresql "$STORAGE_TEST_PG_URI" ;;
		dynamodb) run_example dynamodb "$STORAGE_TEST_DYNAMODB_URI" ;;
	esac
done

grep -h '^SKIPPED ' "$work"/conformance-*.log 2>/dev/null
echo "client: $skipped skipped"
echo "client: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
