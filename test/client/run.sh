#!/bin/sh
# test/client/run.sh: build libstorage_client and its cmocka conformance
# suite with AddressSanitizer + UndefinedBehaviorSanitizer, run the suite
# against the memory, dir and (when STORAGE_TEST_PG_URI is set) postgresql
# backends, and build example.c through pkg-config against a temporary
# installation and run it against each backend.
#
# Writes only under ${TMPDIR:-/tmp}; works as any user from any copy of
# the repository.  The last line is "client: N passed, N failed" (suite
# test cases + one per example run); exits non-zero on any failure.
#
# STORAGE_TEST_PG_URI: libpq URI/conninfo of a database where
# CREATE EXTENSION storage has been done; its records are wiped.

set -u

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/storage-client-run.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT INT TERM

CC=${CC:-cc}
SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS UBSAN_OPTIONS

passed=0
failed=0

fail_build() {
	echo "run.sh: $1 failed" >&2
	echo "client: $passed passed, $((failed + 1)) failed"
	exit 1
}

# 1. the library, sanitized, installed into a private prefix
make -s -C "$top/src/client" BUILDDIR="$work/build" PREFIX="$work/prefix" \
	CC="$CC" EXTRA_CFLAGS="$SAN" EXTRA_LDFLAGS="$SAN" install ||
	fail_build "building the library"

# 2. the conformance suite (linked with the static library)
$CC -std=c11 -g -O1 -Wall -Wextra -Werror $SAN -I"$work/prefix/include" \
	$(pkg-config --cflags cmocka libpq) \
	"$here/conformance.c" -o "$work/conformance" \
	"$work/prefix/lib/libstorage_client.a" \
	$(pkg-config --libs cmocka libpq) -pthread ||
	fail_build "building the conformance suite"

# 3. the README example, compiled the way the README says (pkg-config)
PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
export PKG_CONFIG_PATH
$CC -std=c11 -Wall -Wextra -Werror $SAN "$here/example.c" -o "$work/example" \
	$(pkg-config --cflags --libs storage_client) ||
	fail_build "building example.c with pkg-config"
LD_LIBRARY_PATH="$work/prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export LD_LIBRARY_PATH

backends="memory dir"
if [ -n "${STORAGE_TEST_PG_URI:-}" ]; then
	backends="$backends postgresql"
else
	echo "SKIP postgresql: STORAGE_TEST_PG_URI is not set (the postgresql group and its example run are skipped)"
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
	res=$(sed -n "s/^RESULT $b total=\([0-9]*\) failed=\([0-9]*\)$/\1 \2/p" "$log" | tail -n 1)
	if [ -z "$res" ]; then
		echo "conformance $b: crashed or aborted (exit $rc): counting all $total as failed" >&2
		f=$total
	else
		f=${res#* }
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
			echo "conformance $b: exit status $rc after the tests (sanitizer report?)" >&2
			f=1
		fi
	fi
	passed=$((passed + total - f))
	failed=$((failed + f))

	case $b in
		memory) run_example memory "memory:" ;;
		dir) run_example dir "dir:$work/example-store" ;;
		postgresql) run_example postgresql "$STORAGE_TEST_PG_URI" ;;
	esac
done

echo "client: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
