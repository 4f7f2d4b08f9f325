#!/usr/bin/env bash
# examples/demo.sh: the README's first command.  Installs what it needs,
# builds and installs the extension, starts a throwaway cluster in a
# temporary directory, shows save / fetch / version conflict / expiry in
# psql, then stops the cluster and removes everything it created.
#
# --installed: the extension is installed already (test/run-all.sh runs the
# demo as one of its suites, after its own build); PG_MAJOR and PG_CONFIG as
# in test/lib.sh.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../test/lib.sh"

need_root
install_deps
trap cleanup EXIT
prepare_copy
if [ "${1:-}" != --installed ]; then
	echo "== building and installing the extension"
	build_install
fi
start_cluster demo
echo "== a throwaway cluster is running in $WORK/demo; psql session follows"
echo
as_user psql -X -d postgres -v ON_ERROR_STOP=0 -e <<'SQL'
CREATE EXTENSION storage;

-- create a record: expect_version 0 means "must not exist yet"
SELECT storage_save('session:42', convert_to('{"user": "ada"}', 'UTF8'), 0,
                    now() + interval '2 seconds', 'json') AS version;

-- read it back
SELECT id, version, format, convert_from(data, 'UTF8') AS data, expires_at > now() AS live
  FROM storage_fetch('session:42');

-- update it, expecting version 1: succeeds, version becomes 2
SELECT storage_save('session:42', convert_to('{"user": "ada", "cart": 1}', 'UTF8'), 1,
                    now() + interval '2 seconds', 'json') AS version;

-- a writer still holding version 1 loses: SQLSTATE SV001
\set VERBOSITY verbose
SELECT storage_save('session:42', convert_to('{"user": "eve"}', 'UTF8'), 1);
\set VERBOSITY default

-- wait until the record expires: it becomes invisible at once
SELECT pg_sleep(2.1);
SELECT count(*) AS visible_after_expiry FROM storage_fetch('session:42');

-- the row is still in the table until it is purged
SELECT count(*) AS rows_in_table FROM storage_records;
SELECT storage_purge_expired() AS purged;
SELECT count(*) AS rows_in_table FROM storage_records;
SQL
echo
echo "== demo done; stopping the cluster and cleaning up"
