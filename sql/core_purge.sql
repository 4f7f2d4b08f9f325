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

-- expired rows are found through the partial index on expires_at
EXPLAIN (COSTS OFF)
SELECT ctid FROM storage_records
 WHERE expires_at <= '2030-01-01' ORDER BY expires_at LIMIT 10;
