--
-- storage_purge_expired.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';

SELECT storage_save('live' || i, 'x') FROM generate_series(1, 5) AS i;
SELECT storage_save('later' || i, 'x', -1, '2030-01-02') FROM generate_series(1, 5) AS i;
SELECT storage_save('inf' || i, 'x', -1, 'infinity') FROM generate_series(1, 2) AS i;
SELECT count(storage_save('dead' || i, 'x', -1, '2030-01-01 11:00:00+00'))
  FROM generate_series(1, 25) AS i;

SELECT storage_purge_expired(0);
SELECT storage_purge_expired(10);
SELECT count(*) FROM storage_records;
-- batches smaller than the work: the loop goes on until done
SET storage.purge_batch_size = 4;
SELECT storage_purge_expired();
SELECT storage_purge_expired();
SELECT id FROM storage_records ORDER BY id;
RESET storage.purge_batch_size;

-- the clock moves on: records that expire later are purged then
SET storage.test_now = '2030-01-02 00:00:00+00';
SELECT storage_purge_expired();
SELECT id FROM storage_records ORDER BY id;

SELECT storage_purge_expired(-1);
SELECT storage_purge_expired(NULL);

-- The purge index is on the expiry slot (purge_after), expires_at rounded
-- up to storage.expiry_slot (60 s by default).
SELECT storage_expiry_slot('2030-01-01 12:00:00+00'),
       storage_expiry_slot('2030-01-01 12:00:00.000001+00'),
       storage_expiry_slot('2030-01-01 12:00:59+00'),
       storage_expiry_slot('infinity'),
       storage_expiry_slot('-infinity'),
       storage_expiry_slot(NULL);
SET storage.expiry_slot = '1h';
SELECT storage_expiry_slot('2030-01-01 12:00:01+00');
SET storage.expiry_slot = 0;
SELECT storage_expiry_slot('2030-01-01 12:00:01+00');
RESET storage.expiry_slot;

-- records expired within the slot that is still open are purged too, and a
-- record expiring later in that slot is not
DELETE FROM storage_records;
SET storage.test_now = '2030-01-01 12:00:30+00';
SELECT storage_save('gone', 'x', -1, '2030-01-01 12:00:29+00');
SELECT storage_save('stays', 'x', -1, '2030-01-01 12:00:31+00');
SELECT storage_save('old', 'x', -1, '-infinity');
SELECT id, expires_at, purge_after FROM storage_records ORDER BY id;
SELECT storage_purge_expired();
SELECT id FROM storage_records ORDER BY id;

-- moving expires_at within its slot changes no indexed column: HOT update
BEGIN;
SELECT storage_save('stays', 'y', -1, '2030-01-01 12:00:40+00');
SELECT storage_save('stays', 'z', -1, '2030-01-01 12:00:50+00');
SELECT pg_stat_get_xact_tuples_updated('storage_records'::regclass) AS updated,
       pg_stat_get_xact_tuples_hot_updated('storage_records'::regclass) AS hot;
COMMIT;

-- the purge's search goes through that index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT ctid FROM storage_records
 WHERE purge_after <= '2030-01-01 12:01:00+00' AND expires_at <= '2030-01-01 12:00:30+00'
 ORDER BY purge_after LIMIT 10;
RESET enable_seqscan;

-- The purge deletes directly (src/direct.c) unless the statement must do
-- it (storage.direct_writes = off here); both purge the same rows, in
-- batches that each start where the previous one stopped.
DELETE FROM storage_records;
SET storage.test_now = '2030-01-01 12:00:30+00';
SELECT count(storage_save('p' || i, 'x', -1, '2030-01-01 11:00:00+00'::timestamptz + i * interval '7 seconds'))
  FROM generate_series(1, 600) AS i;
BEGIN;
SET LOCAL storage.purge_batch_size = 50;
SELECT storage_purge_expired();
SELECT count(*), min(id), md5(string_agg(id, ',' ORDER BY id)) FROM storage_records;
ROLLBACK;
BEGIN;
SET LOCAL storage.purge_batch_size = 50;
SET LOCAL storage.direct_writes = off;
SELECT storage_purge_expired();
SELECT count(*), min(id), md5(string_agg(id, ',' ORDER BY id)) FROM storage_records;
ROLLBACK;
-- a purge within the caller's transaction after saving an expired record
BEGIN;
SELECT storage_save('p1', 'y', -1, '2030-01-01 11:00:00+00');
SELECT storage_purge_expired(5), storage_purge_expired(1000);
SELECT count(*) FROM storage_records WHERE expires_at <= '2030-01-01 12:00:30+00';
ROLLBACK;
DELETE FROM storage_records;
RESET storage.test_now;
