#!/usr/bin/env bash
# test/chroot.sh: Debian chroots for the version matrix, sourced by
# test/matrix.sh and test/package.sh (after test/lib.sh).  PostgreSQL 17
# comes from trixie and 18 from forky; the host (bookworm) has 15.
#
# Chroots are made here with debootstrap (as root) and cached OUTSIDE the
# checkout in $CI_CACHE/<release>/: "base" is the pristine debootstrap
# result (copied to make a fresh chroot for the package install test),
# "root" is base plus whatever the suites install with apt.  Each is used
# only when its completion marker exists, otherwise it is rebuilt, so an
# interrupted run or a fresh machine both work.
#
# Commands run in a private mount namespace (unshare): proc, sys, dev and a
# private /dev/shm (PostgreSQL's dynamic shared memory) are mounted there
# and vanish with the namespace when the command ends, whatever way it
# ends, so no mount is ever left behind on the host.

CI_CACHE=${STORAGE_CI_CACHE:-/var/cache/storage-ci}
CHROOT_MARK=.storage-ci-complete

# The mirror the host's apt uses (deb822 or one-line sources), never a
# hard-coded host.
debian_mirror() {
	local m
	m=$(grep -hsE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{print $2}' | grep -vE 'security' | grep -E '/debian/?$' | head -1)
	[ -n "$m" ] || m=$(grep -hsE '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		sed -E 's/^deb +(\[[^]]*\] +)?//' | awk '{print $1}' |
		grep -vE 'security' | grep -E '/debian/?$' | head -1)
	[ -n "$m" ] || die "no Debian mirror found in /etc/apt/sources.list(.d)"
	echo "${m%/}"
}

release_of() {			# release_of PG_MAJOR
	case $1 in
	15) echo bookworm ;;
	17) echo trixie ;;
	18) echo forky ;;
	*) die "no Debian release known for PostgreSQL $1" ;;
	esac
}

# in_chroot DIR CMD...: CMD as root inside DIR with a clean environment
# (plus the variables named in CHROOT_ENV).
in_chroot() {
	local dir=$1 envs=() v
	shift
	for v in ${CHROOT_ENV:-}; do
		[ -n "${!v+x}" ] && envs+=("$v=${!v}")
	done
	unshare --mount --propagation private -- bash -c '
		set -e
		d=$1; shift
		mount -t proc proc "$d/proc"
		mount -t sysfs sys "$d/sys"
		mount --rbind /dev "$d/dev"
		mount -t tmpfs -o mode=1777,size=2g shm "$d/dev/shm"
		exec chroot "$d" "$@"' _ "$dir" \
		/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		HOME=/root LC_ALL=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${envs[@]}" "$@"
}

# make_base RELEASE: $CI_CACHE/RELEASE/base, debootstrapped once.
make_base() {
	local rel=$1 dir="$CI_CACHE/$1/base" mirror script=()
	[ -f "$dir/$CHROOT_MARK" ] && return 0
	command -v debootstrap >/dev/null || {
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
	}
	mirror=$(debian_mirror)
	rm -rf "$dir"
	mkdir -p "$dir"
	# bookworm's debootstrap predates forky; sid's script fits every
	# release after bookworm
	[ -e "/usr/share/debootstrap/scripts/$rel" ] || script=(/usr/share/debootstrap/scripts/sid)
	echo "== debootstrap $rel from $mirror into $dir"
	debootstrap --variant=minbase "$rel" "$dir" "$mirror" "${script[@]}" \
		>"$CI_CACHE/$rel/debootstrap.log" 2>&1 ||
		{ tail -30 "$CI_CACHE/$rel/debootstrap.log"; die "debootstrap $rel failed"; }
	# deb-src: test/cassert.sh builds from Debian's source packages
	printf 'deb %s %s main\ndeb-src %s %s main\n' "$mirror" "$rel" "$mirror" "$rel" \
		>"$dir/etc/apt/sources.list"
	# a testing release's Release file can be past its Valid-Until date
	echo 'Acquire::Check-Valid-Until "false";' >"$dir/etc/apt/apt.conf.d/99storage-ci"
	echo 'APT::Install-Recommends "false";' >>"$dir/etc/apt/apt.conf.d/99storage-ci"
	# packages must not start services in a chroot
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	# Debian would otherwise create a "main" cluster nobody uses
	mkdir -p "$dir/etc/postgresql-common"
	echo "create_main_cluster = false" >"$dir/etc/postgresql-common/createcluster.conf"
	in_chroot "$dir" apt-get update -qq >/dev/null || die "apt-get update in $rel failed"
	in_chroot "$dir" apt-get clean
	touch "$dir/$CHROOT_MARK"
}

# make_root RELEASE: $CI_CACHE/RELEASE/root, a copy of base that keeps what
# the suites install (apt-get only installs what is missing on reuse).
make_root() {
	local rel=$1 dir="$CI_CACHE/$1/root"
	[ -f "$dir/$CHROOT_MARK" ] && return 0
	make_base "$rel"
	rm -rf "$dir"
	cp -a "$CI_CACHE/$rel/base" "$dir"
}

# fresh_chroot RELEASE: prints the path of a new copy of the pristine base
# (the caller removes it with drop_chroot).
fresh_chroot() {
	local rel=$1 dir
	make_base "$rel" >&2
	dir=$(mktemp -d "$CI_CACHE/$rel/fresh.XXXXXX")
	cp -a "$CI_CACHE/$rel/base/." "$dir/"
	echo "$dir"
}

drop_chroot() {
	case $1 in
	"$CI_CACHE"/*/fresh.*) rm -rf --one-file-system "$1" ;;
	*) die "refusing to remove $1" ;;
	esac
}

# suite_in_chroot RELEASE: test/run-all.sh in the cached chroot of RELEASE,
# on a copy of the project made for this run; PG_MAJOR, PG_CONFIG (a path
# inside the chroot), STORAGE_RUN_USER, KEEP_WORK and
# STORAGE_TEST_SKIP_MODULES are passed on.
suite_in_chroot() {
	local rel=$1 root copy rc
	make_root "$rel" || return 1
	root="$CI_CACHE/$rel/root"
	copy=$(mktemp -d "$root/tmp/storage-src.XXXXXX")
	(cd "$PROJECT_DIR" && tar --exclude=.git --exclude='*.o' --exclude='*.so' \
		--exclude='*.bc' -cf - .) | tar -xf - -C "$copy"
	# an earlier run may have been interrupted in the middle of dpkg
	in_chroot "$root" dpkg --configure -a
	CHROOT_ENV="PG_MAJOR PG_CONFIG STORAGE_RUN_USER KEEP_WORK STORAGE_TEST_SKIP_MODULES" \
		in_chroot "$root" bash "${copy#"$root"}/test/run-all.sh"
	rc=$?
	rm -rf "$copy"
	return $rc
}
