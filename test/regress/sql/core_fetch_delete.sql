--
-- storage_fetch, storage_delete and storage_list.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';

SELECT storage_save('a', 'A', 0, NULL, 'txt');
SELECT storage_save('b', 'B', 0, '2030-01-01 11:00:00+00');   -- expired
SELECT storage_save('c', 'C', 0, '2030-01-01 13:00:00+00');

SELECT * FROM storage_fetch('a');
SELECT * FROM storage_fetch('b');          -- expired: no row
SELECT * FROM storage_fetch('missing');    -- no row, no error
SELECT * FROM storage_fetch('c');

-- bad ids are errors for fetch and delete too
SELECT * FROM storage_fetch(NULL);
SELECT * FROM storage_fetch('');
SELECT * FROM storage_fetch(repeat('x', 256));
SELECT storage_delete(NULL);
SELECT storage_delete('');
SELECT storage_delete(repeat('x', 256));

-- fetch is a plain index lookup, inlined into the caller's query (a
-- sequential scan is not allowed: once autovacuum has analyzed the small
-- table it would be cheaper, and the plan would depend on that timing)
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM storage_fetch('a');
RESET enable_seqscan;

-- fetch sees the calling statement's snapshot: a record written earlier in
-- the same transaction is seen, and so is its deletion (the isolation test
-- fetch_snapshot shows other transactions' writes)
BEGIN;
SELECT storage_save('rc', 'one');
SELECT id, version, data FROM storage_fetch('rc');
SELECT storage_delete('rc');
SELECT count(*) FROM storage_fetch('rc');
ROLLBACK;

-- a record expires for fetch the moment the clock passes expires_at
SET storage.test_now = '2030-01-01 12:59:59+00';
SELECT id FROM storage_fetch('c');
SET storage.test_now = '2030-01-01 13:00:00+00';
SELECT id FROM storage_fetch('c');         -- expires_at is not later: gone
SET storage.test_now = '2030-01-01 12:00:00+00';

-- in the select list, as a lateral call, and by a named argument
SELECT storage_fetch('a');
SELECT k, f.version FROM unnest(ARRAY['a', 'b', 'c', 'missing']) AS k,
       LATERAL storage_fetch(k) AS f ORDER BY k;
SELECT version FROM storage_fetch(id => 'a');

-- fetch never writes: it works in a read-only transaction
BEGIN TRANSACTION READ ONLY;
SELECT id, version FROM storage_fetch('a');
SELECT storage_save('ro', 'x');
ROLLBACK;

-- delete: true for a live record, false otherwise, never an error
SELECT storage_delete('a');
SELECT storage_delete('a');
SELECT storage_delete('missing');
SELECT storage_delete('b');                -- expired: false, but gone from the table
SELECT count(*) FROM storage_records WHERE id = 'b';
SELECT * FROM storage_fetch('a');
-- after a delete, a versioned save conflicts and a create starts over
SELECT storage_save('a', 'A2', 1);
SELECT storage_save('a', 'A2', 0);

-- list: live records with a prefix, in bytewise order
SELECT storage_save(k, 'x') FROM unnest(ARRAY['p/1', 'p/10', 'p/2', 'p/é', 'p/Z', 'p0', 'p', 'q/1']) AS k;
SELECT storage_save('p/old', 'x', -1, '2030-01-01 11:00:00+00');
SELECT id FROM storage_list('p/');
SELECT id FROM storage_list('p');
SELECT (SELECT count(*) FROM storage_list('')) =
       (SELECT count(*) FROM storage_records
         WHERE expires_at IS NULL OR expires_at > storage_now()) AS all_live_listed;
SELECT id FROM storage_list('zzz');
SELECT id FROM storage_list(NULL);
-- the prefix range is an index range on the primary key, not a table scan
CREATE FUNCTION plan_of(q text) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
  line text;
BEGIN
  FOR line IN EXECUTE 'EXPLAIN (COSTS OFF) ' || q LOOP
    RETURN NEXT line;
  END LOOP;
END $$;
SELECT count(*) > 0 AS uses_pkey_range
  FROM plan_of($$SELECT id FROM storage_list('p/')$$) AS l
 WHERE l ~ 'Index.* on storage_records_pkey';
SELECT count(*) AS seq_scans
  FROM plan_of($$SELECT id FROM storage_list('p/')$$) AS l
 WHERE l ~ 'Seq Scan';
DROP FUNCTION plan_of(text);
