#!/usr/bin/env bash
# test/package.sh: the Debian packages (debian/) as users get them, as root.
# For each supported version with a Debian package (15: bookworm, 17:
# trixie, 18: forky):
#
#   1. build: dpkg-buildpackage in the cached chroot of its release
#      (test/chroot.sh), on a copy of the project: postgresql-NN-storage,
#      libstorage-client1, libstorage-client-dev;
#   2. install the built .debs with apt into a FRESH chroot of that release
#      (a copy of the pristine debootstrap result), with what
#      debian/tests/control asks for;
#   3. run debian/tests there: installcheck (pg_buildext installcheck: the
#      regression and isolation tests against the installed package) and
#      client-example (the client library through pkg-config).
#
# Prints a line per version and ends with "N passed, N failed" (pg_regress
# and isolation tests, plus one for the client example, plus one failure
# for any step that breaks).  Nothing is written into the checkout.
# PACKAGE_VERSIONS="15 17 18" chooses the versions.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
source "$HERE/chroot.sh"

PASSED=0
FAILED=0
SUMMARY=""

# build_debs MAJOR: prints the directory (in the release's root chroot)
# holding the built .debs and the source tree they were built from.
build_debs() {
	local major=$1 rel root build
	rel=$(release_of "$major")
	make_root "$rel" >&2 || return 1
	root="$CI_CACHE/$rel/root"
	build=$(mktemp -d "$root/tmp/storage-pkg.XXXXXX")
	mkdir "$build/storage"
	(cd "$PROJECT_DIR" && tar --exclude=.git --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' --exclude='*.a' --exclude=results --exclude=output_iso \
		--exclude=tmp_check --exclude=src/client/build -cf - .) | tar -xf - -C "$build/storage"
	in_chroot "$root" dpkg --configure -a >&2
	CHROOT_ENV="SRC" SRC="${build#"$root"}/storage" in_chroot "$root" bash -euc '
		apt-get -o DPkg::Lock::Timeout=600 update -qq
		apt-get install -y -qq -o DPkg::Lock::Timeout=600 debhelper dpkg-dev \
			postgresql-server-dev-all libpq-dev pkgconf >/dev/null
		cd "$SRC"
		# debian/control is generated for the versions this release has
		pg_buildext updatecontrol
		# the tests run against the installed package (test/package.sh)
		DEB_BUILD_OPTIONS=nocheck DEB_BUILD_PROFILES=nocheck dpkg-buildpackage -us -uc -b
	' >&2 || { rm -rf "$build"; return 1; }
	echo "$build"
}

# test_debs MAJOR BUILD: installs BUILD's .debs into a fresh chroot and runs
# debian/tests there; sets P and F.
test_debs() {
	local major=$1 build=$2 rel fresh log rc n
	rel=$(release_of "$major")
	P=0
	F=0
	for n in "postgresql-$major-storage" libstorage-client1 libstorage-client-dev; do
		ls "$build/${n}_"*.deb >/dev/null 2>&1 || { echo "no $n package was built"; F=$((F + 1)); }
	done
	[ "$F" = 0 ] || return 0
	fresh=$(fresh_chroot "$rel") || { F=1; return 0; }
	mkdir "$fresh/tmp/pkgtest"
	cp "$build"/*.deb "$fresh/tmp/pkgtest/"
	cp -a "$build/storage" "$fresh/tmp/pkgtest/src"
	# what the build chroot downloaded already need not be fetched again
	cp -l "$CI_CACHE/$rel/root/var/cache/apt/archives/"*.deb "$fresh/var/cache/apt/archives/" 2>/dev/null
	log="$fresh/tmp/pkgtest/test.log"
	in_chroot "$fresh" bash -euc '
		apt-get update -qq
		# the packages, and the Depends of debian/tests/control
		apt-get install -y -qq /tmp/pkgtest/*.deb postgresql-server-dev-all \
			build-essential pkgconf >/dev/null
		dpkg -l "postgresql-*-storage" "libstorage-client*" | grep ^ii
		cd /tmp/pkgtest/src
		echo "== debian/tests/installcheck"
		debian/tests/installcheck
		echo "== debian/tests/client-example"
		debian/tests/client-example
	' >"$log" 2>&1
	rc=$?
	cat "$log"
	n=$(grep -oE 'All [0-9]+ tests passed' "$log" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}')
	P=$((P + n))
	n=$(grep -oE '[0-9]+ of [0-9]+ tests failed' "$log" |
		awk '{f+=$1; t+=$3} END {print f+0, t-f+0}')
	F=$((F + ${n% *}))
	P=$((P + ${n#* }))
	if grep -q '^client-example: ok$' "$log"; then
		P=$((P + 1))
	else
		F=$((F + 1))
	fi
	[ "$rc" != 0 ] && [ "$F" = 0 ] && F=1
	drop_chroot "$fresh"
}

need_root
for major in ${PACKAGE_VERSIONS:-15 17 18}; do
	start=$(date +%s)
	echo "== PostgreSQL $major: building the packages in the $(release_of "$major") chroot"
	if build=$(build_debs "$major"); then
		ls -l "$build"/*.deb
		echo "== PostgreSQL $major: installing them into a fresh $(release_of "$major") chroot and testing"
		test_debs "$major" "$build"
		rm -rf "$build"
	else
		echo "the package build for PostgreSQL $major failed"
		P=0
		F=1
	fi
	PASSED=$((PASSED + P))
	FAILED=$((FAILED + F))
	SUMMARY="$SUMMARY$(printf '%-12s %4d passed, %4d failed' "deb-pg$major" "$P" "$F")\n"
	echo "== PostgreSQL $major packages: $P passed, $F failed in $(($(date +%s) - start))s"
done
echo
printf "%b" "$SUMMARY"
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ] && [ "$PASSED" -gt 0 ]
