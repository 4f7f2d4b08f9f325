--
-- TTL locks and storage_touch.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
ALTER SEQUENCE storage_lock_fences RESTART;   -- and from the first fencing token
SET storage.test_now = '2030-01-01 12:00:00+00';

-- a lock is the record .locks/<token>
SELECT storage_acquire_lock('job', '30 seconds');
SELECT id, version, expires_at, format, data FROM storage_records;
-- not reentrant: the same token waits (here until statement_timeout)
SET statement_timeout = '200ms';
SELECT storage_acquire_lock('job', '30 seconds');
RESET statement_timeout;
-- another token does not wait
SELECT storage_acquire_lock('other', '30 seconds');
-- release; releasing again is SV002
SELECT storage_release_lock('job');
SELECT storage_release_lock('job');
SELECT storage_release_lock('never');
SELECT storage_acquire_lock('job', '30 seconds');
-- an expired lock is taken over, and cannot be released
SET storage.test_now = '2030-01-01 12:00:30+00';
SELECT storage_release_lock('job');
SELECT storage_acquire_lock('job', '10 seconds');
SELECT expires_at FROM storage_fetch('.locks/job');
-- locks are not listed as bucket keys
SELECT * FROM storage_get_keys('{}');
-- bad input
SELECT storage_acquire_lock('job', '0');
SELECT storage_acquire_lock('job', '-1 second');
SELECT storage_acquire_lock('job', '1 day -25 hours');     -- negative overall
SELECT storage_acquire_lock('mixed', '1 day -1 hour');     -- positive overall: taken
SELECT storage_release_lock('mixed');
SELECT storage_acquire_lock('job', NULL);
SELECT storage_acquire_lock(NULL, '1 second');
SELECT storage_acquire_lock('', '1 second');
SELECT storage_acquire_lock('a/b', '1 second');
SELECT storage_acquire_lock('.x', '1 second');
SELECT storage_acquire_lock(repeat('t', 249), '1 second');
SELECT storage_release_lock(NULL);
-- waiting in REPEATABLE READ could never see the release: refused
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT storage_acquire_lock('job', '1 second');
ROLLBACK;
RESET storage.test_now;

-- touch: moves expiry, keeps data and version
SET storage.test_now = '2030-01-01 12:00:00+00';
SELECT storage_save('s', 'data', 0, '2030-01-01 12:10:00+00');
SELECT storage_touch('s', '2030-01-01 12:30:00+00');
SELECT version, expires_at, data FROM storage_fetch('s');
SELECT storage_touch('s', '2030-01-01 12:40:00+00', 1);     -- matching version
SELECT storage_touch('s', '2030-01-01 12:50:00+00', 2);     -- wrong version: false
SELECT version, expires_at FROM storage_fetch('s');
SELECT storage_save('s', 'data2', 1, '2030-01-01 12:40:00+00');  -- optimistic lock unbroken
SELECT storage_touch('s', NULL);                             -- NULL: never expires
SELECT version, expires_at FROM storage_fetch('s');
SELECT storage_touch('missing', '2030-01-01 13:00:00+00');
SELECT storage_save('exp', 'x', -1, '2030-01-01 11:00:00+00');
SELECT storage_touch('exp', '2030-01-01 13:00:00+00');       -- expired: false, stays expired
SELECT count(*) FROM storage_fetch('exp');
SELECT storage_touch(NULL, now());
SELECT storage_touch('', now());
SELECT storage_touch(repeat('x', 256), now());
SELECT storage_touch('s', now(), NULL);
