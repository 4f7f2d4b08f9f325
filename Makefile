# Makefile for the storage extension (PGXS)

EXTENSION = storage
MODULE_big = storage
OBJS = \
	src/storage.o \
	src/guc.o \
	src/clock.o \
	src/ids.o \
	src/relation.o \
	src/records.o \
	src/write.o \
	src/direct.o \
	src/direct_lookup.o \
	src/direct_write.o \
	src/purge.o \
	src/guard.o \
	src/batch.o \
	src/status.o \
	src/worker.o \
	src/yield.o \
	src/bucket_api.o \
	src/lock_api.o \
	src/feed.o \
	src/feed_sql.o

# sql/ holds the install scripts and nothing else: what is installed is
# what is there.
DATA = $(wildcard sql/storage--*.sql)

# The tests are their files: adding one never edits this Makefile.
#   test/regress/sql/NAME.sql       -> test/regress/expected/NAME.out  (pg_regress)
#   test/isolation/specs/NAME.spec  -> test/isolation/expected/NAME.out (isolation)
#   test/t/NNN_NAME.pl              (TAP: make prove_installcheck)
# Each suite runs its tests in alphabetical order in one database, where
# --load-extension created the extension.  No test depends on that order:
# each starts from an empty store (and, where it shows fencing tokens, from
# the first token) and drops what it creates; they pass alone and in any
# order.  The suites have their own directories because a name may be in
# both (purge_skip).
REGRESS = $(sort $(patsubst $(srcdir)/test/regress/sql/%.sql,%,\
	$(wildcard $(srcdir)/test/regress/sql/*.sql)))
REGRESS_OPTS = --inputdir=$(srcdir)/test/regress --load-extension=storage
ISOLATION = $(sort $(patsubst $(srcdir)/test/isolation/specs/%.spec,%,\
	$(wildcard $(srcdir)/test/isolation/specs/*.spec)))
ISOLATION_OPTS = --inputdir=$(srcdir)/test/isolation --load-extension=storage

PG_CONFIG ?= pg_config

# PostgreSQL's headers are treated as system headers so that -Wextra only
# judges our own code.  fmgr passes fcinfo to every function, used or not,
# hence -Wno-unused-parameter.  The test build adds WERROR=-Werror.
WERROR ?=
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server) -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter $(WERROR)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# A test anywhere but test/regress/ and test/isolation/ (or an install
# script not named storage--*.sql) would silently never run or never be
# installed: refuse to build.
MISPLACED = $(filter-out $(wildcard $(srcdir)/sql/storage--*.sql),\
	$(wildcard $(srcdir)/sql/*.sql)) $(wildcard $(srcdir)/expected/*.out \
	$(srcdir)/test/specs/*.spec $(srcdir)/test/expected/*.out)
ifneq ($(strip $(MISPLACED)),)
$(error misplaced test files (pg_regress: test/regress/sql, isolation: test/isolation/specs, see CONTRIBUTING.md): $(MISPLACED))
endif

# PGXS tracks no header dependencies: every object depends on the shared headers.
$(OBJS): src/storage.h src/compat.h
src/direct.o src/direct_lookup.o src/direct_write.o: src/direct.h

# make installcheck: pg_regress, then isolation (PGXS), against the running
# server that libpq's environment names (PGHOST, PGPORT, PGUSER: a
# superuser), where the extension is installed but not preloaded: the
# expected outputs are those of a server without the expiry worker
# (storage not in shared_preload_libraries).  Outputs: results/,
# regression.diffs, output_iso/.
#
# make prove_installcheck: the TAP scripts (test/t), which start their own
# servers from the installed $(bindir): storage and storage_proxy must be
# installed there, and pg_cron, pgaudit and PL/Proxy unless
# STORAGE_TEST_SKIP_MODULES='<reason>' skips the scripts that use them;
# Perl needs IPC::Run (Debian: libipc-run-perl) and PostgreSQL's TAP modules
# (Debian: postgresql-server-dev-NN).  PGXS's prove_installcheck recipe
# (Makefile.global) sets what PostgreSQL's TAP modules need on the version
# at hand (PG_REGRESS, the modules' -I, PATH; TESTDIR on 15, TESTDATADIR
# and TESTLOGDIR on 17+); it is only not a target, and looks for the
# scripts in t/.  Logs go to tmp_check/log/.  PROVE_TESTS= runs some
# scripts only, PROVE_FLAGS= adds prove options (--verbose).
PROVE_TESTS ?= test/t/*.pl
prove_installcheck:
	$(prove_installcheck)
.PHONY: prove_installcheck

# make check-client: the client library's suite (test/client/run.sh; no
# install needed).  Its postgresql backend runs when STORAGE_TEST_PG_URI
# names a database where CREATE EXTENSION storage was done (its records
# are wiped), its dynamodb backend when dynalite is installed
# (test/client/install-dynalite.sh).
check-client:
	sh $(srcdir)/test/client/run.sh
.PHONY: check-client

# make bench-redis (as root, like bench/run.sh, which it runs with
# SECTIONS=redis): each call against PostgreSQL's own ceiling and against
# Redis, and the client library against hiredis (bench/redis_section.sh);
# installs redis-server and libhiredis-dev when missing.  The table goes to
# stdout and to $RESULTS (default /tmp/storage-bench-redis.md: a full
# bench/run.sh writes bench/RESULTS.md).  Quicker: RECORDS=20000
# RUN_SECONDS=1 REDIS_ROUNDS=3.
bench-redis:
	RECORDS=$${RECORDS:-200000} REPS=1 SECTIONS=redis \
	RESULTS=$${RESULTS:-/tmp/storage-bench-redis.md} bash $(srcdir)/bench/run.sh
.PHONY: bench-redis

# The client library (src/client, see its Makefile) is built and installed
# with the extension.  Its install goes to /usr/local unless PREFIX= or
# DESTDIR= say otherwise.  STORAGE_CLIENT=no leaves it out (debian/rules
# builds the extension once per server version, the library only once).
ifneq ($(STORAGE_CLIENT),no)
all: client
install: client-install
clean: client-clean
endif
client:
	$(MAKE) -C src/client
client-install: client
	$(MAKE) -C src/client install
client-clean:
	$(MAKE) -C src/client clean
.PHONY: client client-install client-clean

# The storage_proxy extension (proxy/, see its Makefile): the same API
# over PL/Proxy partitions, built and installed with the extension.
all: proxy
install: proxy-install
clean: proxy-clean
proxy:
	$(MAKE) -C proxy PG_CONFIG=$(PG_CONFIG) WERROR=$(WERROR)
proxy-install: proxy
	$(MAKE) -C proxy PG_CONFIG=$(PG_CONFIG) install
proxy-clean:
	$(MAKE) -C proxy PG_CONFIG=$(PG_CONFIG) clean
.PHONY: proxy proxy-install proxy-clean
