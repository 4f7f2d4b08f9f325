--
-- TTL locks with fencing tokens (release 1.1): storage_acquire_lock
-- returns a token, storage_release_lock(token, fence) and
-- storage_extend_lock(token, fence, ttl) act only for the holder of that
-- token.  Tokens come from a sequence, so the tests compare them instead
-- of printing them.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';
CREATE TEMP TABLE fences (who text PRIMARY KEY, fence bigint NOT NULL);
CREATE FUNCTION fence_of(w text) RETURNS bigint LANGUAGE sql
    AS $$ SELECT fence FROM fences WHERE who = w $$;
-- runs q; its error with the numbers (tokens) masked
CREATE FUNCTION outcome(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE || ' ' || regexp_replace(SQLERRM, '[0-9]+', 'N', 'g');
END $$;

-- the token is positive and is the lock record's version
INSERT INTO fences SELECT 'a', storage_acquire_lock('job', '30 seconds');
SELECT fence_of('a') > 0 AS positive,
       fence_of('a') = (SELECT version FROM storage_fetch('.locks/job')) AS is_version;

-- extend renews the lease to end ttl from now
SET storage.test_now = '2030-01-01 12:00:20+00';
SELECT storage_extend_lock('job', fence_of('a'), '30 seconds');
SELECT expires_at FROM storage_fetch('.locks/job');
-- a wrong token neither extends nor releases, and changes nothing
SELECT storage_extend_lock('job', fence_of('a') + 1, '1 hour');
SELECT outcome($$SELECT storage_release_lock('job', fence_of('a') + 1)$$);
SELECT version = fence_of('a') AS a_holds, expires_at FROM storage_fetch('.locks/job');
-- a token that was never handed out, another lock's token, a free lock
SELECT storage_acquire_lock('other', '1 hour') > fence_of('a') AS other_above_a;
SELECT outcome($$SELECT storage_release_lock('other', fence_of('a'))$$);
SELECT storage_extend_lock('free', fence_of('a'), '1 hour');
SELECT outcome($$SELECT storage_release_lock('free', fence_of('a'))$$);

-- the stolen lock: a's lease runs out while a still works
SET storage.test_now = '2030-01-01 12:01:00+00';
SELECT storage_extend_lock('job', fence_of('a'), '30 seconds');  -- not revived
INSERT INTO fences SELECT 'b', storage_acquire_lock('job', '30 seconds');
SELECT fence_of('b') > fence_of('a') AS b_above_a;
-- a's release is refused and b still holds the lock
SELECT outcome($$SELECT storage_release_lock('job', fence_of('a'))$$);
SELECT version = fence_of('b') AS b_holds, expires_at FROM storage_fetch('.locks/job');
SELECT storage_extend_lock('job', fence_of('a'), '1 hour');      -- a cannot extend it
SELECT storage_extend_lock('job', fence_of('b'), '1 hour');      -- b can
SELECT expires_at FROM storage_fetch('.locks/job');

-- b's lease runs out and its record is purged: c's token is larger still
SET storage.test_now = '2030-01-01 14:00:00+00';
SELECT storage_purge_expired() >= 1 AS purged;
SELECT count(*) FROM storage_records WHERE id = '.locks/job';
INSERT INTO fences SELECT 'c', storage_acquire_lock('job', '30 seconds');
SELECT fence_of('c') > fence_of('b') AS c_above_b;
SELECT outcome($$SELECT storage_release_lock('job', fence_of('b'))$$);
-- c releases with its token; releasing twice is SV002
SELECT outcome($$SELECT storage_release_lock('job', fence_of('c'))$$);
SELECT outcome($$SELECT storage_release_lock('job', fence_of('c'))$$);
SELECT count(*) FROM storage_fetch('.locks/job');
-- after a release, the next holder's token is larger too
INSERT INTO fences SELECT 'd', storage_acquire_lock('job', '30 seconds');
SELECT fence_of('d') > fence_of('c') AS d_above_c;
-- the one-argument form still releases whoever holds the lock
SELECT storage_release_lock('job');
SELECT outcome($$SELECT storage_release_lock('job', fence_of('d'))$$);

-- a fenced release inside a transaction that rolls back changes nothing
INSERT INTO fences SELECT 'e', storage_acquire_lock('job', '30 seconds');
BEGIN;
SELECT outcome($$SELECT storage_release_lock('job', fence_of('e'))$$);
ROLLBACK;
SELECT version = fence_of('e') AS e_holds FROM storage_fetch('.locks/job');

-- bad input: clear errors, nothing changed
SELECT storage_release_lock(NULL, 1);
SELECT storage_release_lock('job', NULL);
SELECT storage_release_lock('job', 0);
SELECT storage_release_lock('job', -1);
SELECT storage_release_lock('', 1);
SELECT storage_release_lock('a/b', 1);
SELECT storage_release_lock('.x', 1);
SELECT storage_extend_lock(NULL, 1, '1 second');
SELECT storage_extend_lock('job', NULL, '1 second');
SELECT storage_extend_lock('job', fence_of('e'), NULL);
SELECT storage_extend_lock('job', 0, '1 second');
SELECT storage_extend_lock('job', fence_of('e'), '0');
SELECT storage_extend_lock('job', fence_of('e'), '-1 second');
SELECT storage_extend_lock('job', fence_of('e'), '1 day -25 hours');
SELECT storage_extend_lock('.x', 1, '1 second');
SELECT version = fence_of('e') AS e_holds, expires_at FROM storage_fetch('.locks/job');

-- the error codes, as an application sees them
SELECT q, outcome(q) FROM (VALUES
  ('SELECT storage_release_lock(''job'', fence_of(''a''))'),
  ('SELECT storage_release_lock(''free'', 1)'),
  ('SELECT storage_release_lock(NULL, 1)'),
  ('SELECT storage_release_lock(''job'', NULL)'),
  ('SELECT storage_release_lock(''job'', 0)'),
  ('SELECT storage_extend_lock(''job'', fence_of(''a''), ''1 hour'')'),
  ('SELECT storage_extend_lock(''job'', NULL, ''1 hour'')'),
  ('SELECT storage_extend_lock(''job'', 1, NULL)'),
  ('SELECT storage_extend_lock(''job'', 1, ''-1 second'')'),
  ('SELECT storage_extend_lock(''job'', 1, ''0'')'),
  ('SELECT storage_acquire_lock(''job2'', ''0'')')
) AS t(q);
SELECT outcome($$SELECT storage_release_lock('job', fence_of('e'))$$);

-- PUBLIC gets nothing new: neither the functions nor the sequence
SELECT p.oid::regprocedure AS function,
       has_function_privilege('public', p.oid, 'EXECUTE') AS public_execute
  FROM pg_proc p
 WHERE p.proname IN ('storage_acquire_lock', 'storage_release_lock', 'storage_extend_lock')
 ORDER BY p.oid::regprocedure::text;
SELECT has_sequence_privilege('public', 'storage_lock_fences', 'USAGE') AS public_usage,
       has_sequence_privilege('public', 'storage_lock_fences', 'SELECT') AS public_select,
       has_sequence_privilege('public', 'storage_lock_fences', 'UPDATE') AS public_update;
-- an application role with EXECUTE on the lock functions and the table
-- privileges of the README's recipe needs no privilege on the sequence
CREATE ROLE regress_storage_locker;
GRANT EXECUTE ON FUNCTION storage_acquire_lock(text, interval),
                          storage_release_lock(text, bigint),
                          storage_extend_lock(text, bigint, interval)
   TO regress_storage_locker;
GRANT SELECT, INSERT, UPDATE, DELETE ON storage_records TO regress_storage_locker;
GRANT SELECT, INSERT ON fences TO regress_storage_locker;
SET ROLE regress_storage_locker;
INSERT INTO fences SELECT 'f', storage_acquire_lock('job', '30 seconds');
SELECT fence_of('f') > fence_of('e') AS f_above_e;
SELECT storage_extend_lock('job', fence_of('f'), '1 minute');
SELECT outcome($$SELECT storage_release_lock('job', fence_of('f'))$$);
SELECT nextval('storage_lock_fences');     -- denied: only the functions draw
SELECT storage_release_lock('job');        -- denied: not granted
RESET ROLE;
REVOKE ALL ON storage_records, fences FROM regress_storage_locker;
REVOKE ALL ON FUNCTION storage_acquire_lock(text, interval),
                       storage_release_lock(text, bigint),
                       storage_extend_lock(text, bigint, interval)
  FROM regress_storage_locker;
DROP ROLE regress_storage_locker;

-- the sequence and the new functions belong to the extension; pg_dump
-- saves the sequence's position
SELECT pg_describe_object(d.classid, d.objid, 0) AS member
  FROM pg_depend d
 WHERE d.refclassid = 'pg_extension'::regclass
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'storage')
   AND d.deptype = 'e'
   AND pg_describe_object(d.classid, d.objid, 0) ~ 'lock'
 ORDER BY 1;
SELECT c.relname
  FROM pg_extension e, unnest(e.extconfig) AS cfg(oid)
  JOIN pg_class c ON c.oid = cfg.oid
 WHERE e.extname = 'storage'
 ORDER BY 1;

DROP FUNCTION outcome(text);
DROP FUNCTION fence_of(text);
DROP TABLE fences;
DELETE FROM storage_records;
RESET storage.test_now;
