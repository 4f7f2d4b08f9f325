--
-- Installation: privileges, comments, pg_dump marking, the DROP guard.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store

-- every member of the extension explains itself in \dx+ and \df+
SELECT pg_describe_object(classid, objid, 0) AS undocumented
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'storage')
   AND deptype = 'e'
   AND obj_description(objid, classid::regclass::name) IS NULL
   AND NOT (classid = 'pg_type'::regclass)
 ORDER BY 1;

-- the table's rows are dumped by pg_dump
SELECT extconfig::regclass[] FROM pg_extension WHERE extname = 'storage';

-- PUBLIC gets no access to the data
SELECT has_table_privilege('public', 'storage_records', 'SELECT') AS public_select,
       has_table_privilege('public', 'storage_records', 'INSERT') AS public_insert;
-- only the helpers that reveal nothing are executable by PUBLIC
SELECT p.oid::regprocedure AS public_function
  FROM pg_proc p
  JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'storage')
   AND d.deptype = 'e'
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY p.proname;

-- the README's GRANT recipe gives an application role what it needs
CREATE ROLE storage_app LOGIN;
SET ROLE storage_app;
SELECT storage_save('priv', 'x');          -- denied
RESET ROLE;
GRANT EXECUTE ON FUNCTION storage_save(text, bytea, bigint, timestamptz, text),
                          storage_fetch(text), storage_delete(text)
   TO storage_app;
-- EXECUTE alone is not enough: the functions use the caller's table privileges
SET ROLE storage_app;
SELECT storage_save('priv', 'x');          -- denied
SELECT storage_delete('priv');             -- denied
SELECT * FROM storage_fetch('priv');       -- denied: the SELECT's error
RESET ROLE;
-- SELECT granted on the fetched columns only is enough
GRANT SELECT (id, version, expires_at, format, data) ON storage_records TO storage_app;
SET ROLE storage_app;
SELECT * FROM storage_fetch('priv');
RESET ROLE;
REVOKE SELECT (version) ON storage_records FROM storage_app;
SET ROLE storage_app;
SELECT * FROM storage_fetch('priv');       -- denied: one column is missing
RESET ROLE;
REVOKE ALL ON storage_records FROM storage_app;
-- column-level grants work too (such calls take the SPI path, see direct.c)
GRANT SELECT ON storage_records TO storage_app;
GRANT INSERT (id, version, expires_at, format, data),
      UPDATE (version, expires_at, format, data) ON storage_records TO storage_app;
SET ROLE storage_app;
SELECT storage_save('priv', 'x'), storage_save('priv', 'y', 1);
SELECT storage_delete('priv');             -- denied: no DELETE
RESET ROLE;
REVOKE ALL ON storage_records FROM storage_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON storage_records TO storage_app;
SET ROLE storage_app;
SELECT storage_save('priv', 'x');
SELECT storage_save('priv', 'x', 3);
SELECT id, version FROM storage_fetch('priv');
SELECT storage_delete('priv');
SELECT storage_purge_expired();            -- not granted
RESET ROLE;
REVOKE ALL ON storage_records FROM storage_app;
REVOKE ALL ON FUNCTION storage_save(text, bytea, bigint, timestamptz, text),
                       storage_fetch(text), storage_delete(text)
  FROM storage_app;
DROP ROLE storage_app;

-- DROP EXTENSION refuses while live records exist ...
SELECT storage_save('keep', 'precious');
DROP EXTENSION storage;
SELECT id, data FROM storage_fetch('keep');
-- ... also when named among others
DROP EXTENSION IF EXISTS plpgsql_nonexistent, storage;
-- expired records alone do not hold it back
SELECT storage_delete('keep');
SELECT storage_save('old', 'x', -1, now() - interval '1 hour');
BEGIN;
DROP EXTENSION storage;
ROLLBACK;
-- CASCADE is the explicit way to drop the records too
SELECT storage_save('keep', 'precious');
BEGIN;
DROP EXTENSION storage CASCADE;
SELECT count(*) FROM pg_class WHERE relname = 'storage_records';
ROLLBACK;
SELECT id FROM storage_fetch('keep');

-- the functions keep working after the extension is dropped and created
-- again in the same session (cached plans are rebuilt)
DROP EXTENSION storage CASCADE;
CREATE EXTENSION storage;
SELECT storage_save('again', 'x', 0);
SELECT id, version FROM storage_fetch('again');
SELECT storage_delete('again');

-- administration: without shared_preload_libraries nothing purges by itself
SELECT storage_worker_loaded();
SELECT storage_save('old', 'x', -1, now() - interval '1 hour');
SELECT storage_save('new', 'x');
SELECT database = current_database() AS this_db, live_records, live_is_estimate,
       expired_records, worker_state, launcher_pid, rows_purged_total
  FROM storage_status(exact => true);
SELECT live_is_estimate, expired_records FROM storage_status;
SELECT has_table_privilege('pg_monitor', 'storage_status', 'SELECT') AS monitor_can_read,
       has_table_privilege('public', 'storage_status', 'SELECT') AS public_can_read;
