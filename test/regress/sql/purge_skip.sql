--
-- storage_purge_expired() skips the expired rows that cannot be deleted (a
-- foreign key refers to them, a trigger refuses) and purges the rest, also
-- behind many such rows; storage_status survives a renamed records table.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';
SET storage.expiry_slot = 0;   -- one slot per expiry time: exact index order

-- a table of the application that refers to records
CREATE TABLE purge_skip_ref (id text REFERENCES storage_records (id));
-- a trigger that refuses to delete some records
CREATE FUNCTION purge_skip_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.id LIKE 'keep:%' THEN
        RAISE EXCEPTION 'record % is kept', OLD.id USING ERRCODE = 'P0001';
    END IF;
    RETURN OLD;
END $$;

SELECT count(storage_save('dead' || i, 'x', -1, '2030-01-01 11:30:00+00'))
  FROM generate_series(1, 20) AS i;
SELECT storage_save('ref:1', 'x', -1, '2030-01-01 11:00:00+00');
INSERT INTO purge_skip_ref VALUES ('ref:1');
SELECT storage_save('live', 'x');

-- a foreign key refers to one expired row: the other 20 are purged
SELECT storage_purge_expired();
SELECT id FROM storage_records ORDER BY id;

-- a trigger refuses some rows; max_rows counts the rows deleted
CREATE TRIGGER purge_skip_refuse BEFORE DELETE ON storage_records
    FOR EACH ROW EXECUTE FUNCTION purge_skip_refuse();
SELECT count(storage_save('keep:' || i, 'x', -1, '2030-01-01 11:40:00+00'))
  FROM generate_series(1, 3) AS i;
SELECT count(storage_save('dead' || i, 'x', -1, '2030-01-01 11:50:00+00'))
  FROM generate_series(1, 10) AS i;
SELECT storage_purge_expired(4);
SELECT count(*) FROM storage_records WHERE id LIKE 'dead%';
SELECT storage_purge_expired();
SELECT id FROM storage_records ORDER BY id;

-- 300 undeletable rows at the head of the purge index, batches of 50: the
-- 40 expired rows behind them are purged all the same
SET storage.purge_batch_size = 50;
SELECT count(storage_save('keep:head' || i, 'x', -1, '2030-01-01 10:00:00+00'))
  FROM generate_series(1, 300) AS i;
SELECT count(storage_save('dead' || i, 'x', -1, '2030-01-01 11:55:00+00'))
  FROM generate_series(1, 40) AS i;
SELECT storage_purge_expired();
SELECT count(*) FILTER (WHERE id LIKE 'keep:%') AS kept,
       count(*) FILTER (WHERE id LIKE 'dead%') AS dead_left,
       count(*) FILTER (WHERE id = 'ref:1') AS referenced
  FROM storage_records;
-- the same with the direct write path off (it never applies with triggers)
SET storage.direct_writes = off;
SELECT count(storage_save('dead' || i, 'x', -1, '2030-01-01 11:56:00+00'))
  FROM generate_series(1, 40) AS i;
SELECT storage_purge_expired();
RESET storage.direct_writes;
RESET storage.purge_batch_size;

-- a record saved again is no longer expired and stays
SELECT storage_save('dead1', 'y', -1, '2030-01-01 11:00:00+00');
BEGIN;
SELECT storage_save('dead1', 'z', -1, '2030-01-02');
SELECT storage_purge_expired();
COMMIT;
SELECT id, expires_at FROM storage_records WHERE id = 'dead1';

-- a read-only transaction cannot purge: 25006 like any write
BEGIN READ ONLY;
\set VERBOSITY sqlstate
SELECT storage_purge_expired();
\set VERBOSITY default
ROLLBACK;

-- the statement's own errors still raise: a cancel is not a skipped row
CREATE FUNCTION purge_skip_slow() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(0.05);
    RETURN OLD;
END $$;
CREATE TRIGGER purge_skip_slow BEFORE DELETE ON storage_records
    FOR EACH ROW EXECUTE FUNCTION purge_skip_slow();
SELECT storage_save('dead:slow', 'x', -1, '2030-01-01 11:59:00+00');
SET statement_timeout = '10ms';
\set VERBOSITY sqlstate
SELECT storage_purge_expired();
\set VERBOSITY default
RESET statement_timeout;
DROP TRIGGER purge_skip_slow ON storage_records;
DROP FUNCTION purge_skip_slow();

-- storage_status with the records table renamed: the counts are unknown,
-- the function does not fail; storage_purge_expired() says what is missing
ALTER TABLE storage_records RENAME TO storage_records_moved;
SELECT live_records, live_is_estimate, expired_records,
       rows_skipped_last, last_skip_reason, consecutive_failures
  FROM storage_status;
SELECT storage_purge_expired();
ALTER TABLE storage_records_moved RENAME TO storage_records;
SELECT expired_records FROM storage_status;
SELECT expired_records, live_records FROM storage_status(true);

DROP TRIGGER purge_skip_refuse ON storage_records;
DROP FUNCTION purge_skip_refuse();
DROP TABLE purge_skip_ref;
SELECT storage_purge_expired();
SELECT id FROM storage_records ORDER BY id;
DELETE FROM storage_records;
