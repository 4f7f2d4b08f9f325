# Makefile for the storage extension (PGXS)

EXTENSION = storage
MODULE_big = storage
OBJS = \
	src/storage.o \
	src/clock.o \
	src/ids.o \
	src/relation.o \
	src/records.o \
	src/direct.o \
	src/purge.o \
	src/guard.o \
	src/batch.o \
	src/status.o \
	src/worker.o \
	src/yield.o \
	src/buckets.o \
	src/locks.o \
	src/feed.o \
	src/feed_sql.o

DATA = $(wildcard sql/storage--*.sql)

# pg_regress: inputs in sql/, expected outputs in expected/
REGRESS = core_save core_paths core_fetch_delete core_purge core_batch core_admin buckets locks_touch
# tests of release 1.1, a line per topic
REGRESS += security_search_path # search_path safety and the expiry worker
REGRESS += fast_paths # fast paths: what the statements enforce
REGRESS += purge_skip # purge: skipped rows, back-off, status
REGRESS += locks_fencing # locks with fencing tokens
REGRESS += input_rules drop_guard # input rules and the DROP EXTENSION guard
REGRESS_OPTS = --inputdir=. --load-extension=storage

# isolation: specs in test/specs/, expected outputs in test/expected/
ISOLATION = save_races save_delete save_purge batch_races bucket_cas bucket_create lock_handoff
# tests of release 1.1, a line per topic
ISOLATION += # search_path safety and the expiry worker
ISOLATION += # fast paths: what the statements enforce
ISOLATION += purge_skip # purge: skipped rows, back-off, status
ISOLATION += lock_fencing # locks with fencing tokens
ISOLATION += # input rules and the DROP EXTENSION guard
ISOLATION_OPTS = --inputdir=test --load-extension=storage

PG_CONFIG ?= pg_config

# PostgreSQL's headers are treated as system headers so that -Wextra only
# judges our own code.  fmgr passes fcinfo to every function, used or not,
# hence -Wno-unused-parameter.  The test build adds WERROR=-Werror.
WERROR ?=
PG_CPPFLAGS = -isystem $(shell $(PG_CONFIG) --includedir-server) -I$(srcdir)/src
PG_CFLAGS = -Wall -Wextra -Wno-unused-parameter $(WERROR)

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies: every object depends on the shared headers.
$(OBJS): src/storage.h src/compat.h

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
