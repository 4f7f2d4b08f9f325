--
-- The DROP EXTENSION guard: it finds the records table through the
-- extension's membership, judges liveness by the real clock, and also
-- guards DROP OWNED BY the extension's owner.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SELECT evtevent, evttags FROM pg_event_trigger WHERE evtname = 'storage_drop_guard';

SELECT storage_save('keep', 'precious');

-- renaming the table first does not get past it
BEGIN;
ALTER TABLE storage_records RENAME TO renamed_records;
DROP EXTENSION storage;
ROLLBACK;
BEGIN;
CREATE SCHEMA elsewhere;
ALTER TABLE storage_records SET SCHEMA elsewhere;
ALTER TABLE elsewhere.storage_records RENAME TO r;
DROP EXTENSION storage;
ROLLBACK;

-- a pinned test clock does not make live records look expired
SET storage.test_now = '294276-01-01 00:00:00+00';
SELECT count(*) FROM storage_fetch('keep');
DROP EXTENSION storage;
RESET storage.test_now;
-- ... nor one pinned in the past make expired records look live
SELECT storage_delete('keep');
SELECT storage_save('old', 'x', -1, now() - interval '1 hour');
SET storage.test_now = '2000-01-01 00:00:00+00';
BEGIN;
DROP EXTENSION storage;
ROLLBACK;
RESET storage.test_now;
SELECT storage_save('keep', 'precious');

-- DROP OWNED BY the role that created the extension
CREATE ROLE storage_dba SUPERUSER;
CREATE ROLE storage_bystander;
BEGIN;
SET LOCAL ROLE storage_dba;
DROP EXTENSION storage CASCADE;
CREATE EXTENSION storage;
SELECT storage_save('owned', 'precious');
RESET ROLE;
SAVEPOINT s;
DROP OWNED BY storage_dba;                        -- refused
ROLLBACK TO s;
DROP OWNED BY storage_bystander, storage_dba;     -- refused too
ROLLBACK TO s;
DROP OWNED BY storage_bystander;                  -- nothing of storage's
SELECT id FROM storage_fetch('owned');
-- without live records it goes ahead
SELECT storage_delete('owned');
DROP OWNED BY storage_dba;
SELECT count(*) FROM pg_extension WHERE extname = 'storage';
ROLLBACK;

-- CASCADE is the explicit way
BEGIN;
SET LOCAL ROLE storage_dba;
DROP EXTENSION storage CASCADE;
CREATE EXTENSION storage;
SELECT storage_save('owned', 'precious');
RESET ROLE;
DROP OWNED BY storage_dba CASCADE;
SELECT count(*) FROM pg_extension WHERE extname = 'storage';
ROLLBACK;

-- a role that owns only the table cannot drop it: PostgreSQL itself refuses
BEGIN;
ALTER TABLE storage_records OWNER TO storage_bystander;
DROP OWNED BY storage_bystander;
ROLLBACK;

SELECT id, data FROM storage_fetch('keep');
DROP ROLE storage_dba;
DROP ROLE storage_bystander;
DELETE FROM storage_records;
