--
-- The bucket/key API: names, every function's rules and errors, and the
-- shared keyspace with storage_save / storage_fetch.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';

-- create, then create again: SV003; get
SELECT storage_create_val('{b1,b2}', 'k', 'v1');
SELECT storage_create_val('{b1,b2}', 'k', 'v2');
SELECT storage_get_val('{b1,b2}', 'k');

-- the same record through the provider API, and back
SELECT id, version, format, data FROM storage_fetch('b1/b2/k');
SELECT storage_save('b1/b2/k', 'from save', 1);
SELECT storage_get_val('{b1,b2}', 'k');
-- bucket writes bump the version like an unversioned save
SELECT storage_upsert_val('{b1,b2}', 'k', 'v3');
SELECT version, data FROM storage_fetch('b1/b2/k');

-- an expired value is absent: create replaces it, get does not see it
SELECT storage_upsert_val('{b1}', 'ttl', 'x', '10 seconds');
SELECT expires_at FROM storage_fetch('b1/ttl');
SET storage.test_now = '2030-01-01 12:00:10+00';
SELECT storage_get_val('{b1}', 'ttl');
SELECT storage_create_val('{b1}', 'ttl', 'again');
SELECT storage_get_val('{b1}', 'ttl');
SET storage.test_now = '2030-01-01 12:00:00+00';

-- upsert with NULL or zero ttl clears an earlier expiry
SELECT storage_upsert_val('{b1}', 'clear', 'x', '1 hour');
SELECT expires_at FROM storage_fetch('b1/clear');
SELECT storage_upsert_val('{b1}', 'clear', 'y', '0');
SELECT expires_at FROM storage_fetch('b1/clear');
SELECT storage_upsert_val('{b1}', 'clear', 'z', '1 hour');
SELECT storage_upsert_val('{b1}', 'clear', 'w');
SELECT expires_at FROM storage_fetch('b1/clear');

-- compare and swap
SELECT storage_compare_and_swap_val('{b1}', 'clear', 'new', 'w');
SELECT storage_compare_and_swap_val('{b1}', 'clear', 'newer', 'w');     -- stale: SV004
SELECT storage_compare_and_swap_val('{b1}', 'missing', 'x', 'w');       -- missing: SV004
SELECT storage_compare_and_swap_val('{b1}', 'clear', 'x', NULL);        -- 22023
SELECT storage_compare_and_swap_val('{b1}', 'clear', 'x', '');          -- 22023
SELECT storage_upsert_val('{b1}', 'cas_ttl', 'old', '5 seconds');
SET storage.test_now = '2030-01-01 12:00:05+00';
SELECT storage_compare_and_swap_val('{b1}', 'cas_ttl', 'x', 'old');     -- expired: SV004
SET storage.test_now = '2030-01-01 12:00:00+00';
SELECT storage_get_val('{b1}', 'clear');

-- get: missing key, a name that is a bucket
SELECT storage_get_val('{b1}', 'nope');
SELECT storage_get_val('{b1}', 'b2');
SELECT storage_get_val('{}', 'b1');

-- listing: keys and sub-buckets, sorted, without duplicates
SELECT storage_upsert_items('{l}', '{b,a,c-d}', '{1,2,3}');
SELECT storage_upsert_val('{l,c}', 'x', 'in c');
SELECT storage_upsert_val('{l,c,deep}', 'x', 'deeper');
SELECT storage_upsert_val('{l,a}', 'x', 'a is a key and a bucket');
SELECT storage_upsert_val('{l,gone}', 'x', 'expired', '1 second');
SELECT storage_upsert_val('{l}', 'old', 'expired', '1 second');
SET storage.test_now = '2030-01-01 12:00:01+00';
SELECT * FROM storage_get_keys('{l}');
SELECT * FROM storage_get_items('{l}');
SELECT * FROM storage_get_keys('{l,c}');
SELECT * FROM storage_get_keys('{unknown}');
SELECT * FROM storage_get_items('{unknown}');
SELECT * FROM storage_get_keys('{}');
SET storage.test_now = '2030-01-01 12:00:00+00';

-- upsert_items: all or nothing
SELECT storage_upsert_items('{i}', '{a,b}', '{1}');
SELECT storage_upsert_items('{i}', '{a,b,a}', '{1,2,3}');
SELECT storage_upsert_items('{i}', '{a,NULL}', '{1,2}');
SELECT storage_upsert_items('{i}', '{a,.b}', '{1,2}');
SELECT count(*) FROM storage_list('i/');
SELECT storage_upsert_items('{i}', '{a,b}', '{1,2}', '1 hour');
SELECT storage_upsert_items('{i}', '{b,c}', '{20,30}');
SELECT key, val, expires_at FROM storage_get_items('{i}');
SELECT storage_upsert_items('{i}', '{}', '{}');

-- delete key and bucket, twice
SELECT storage_delete_key('{i}', 'a');
SELECT storage_delete_key('{i}', 'a');
SELECT storage_delete_bucket('{}', 'l');
SELECT storage_delete_bucket('{}', 'l');
SELECT count(*) FROM storage_list('l/');
SELECT storage_delete_bucket('{b1}', 'b2');
SELECT storage_delete_bucket('{b1}', 'b2');
SELECT storage_upsert_val('{e}', 'x', 'soon', '1 second');
SET storage.test_now = '2030-01-01 12:00:01+00';
SELECT storage_delete_key('{e}', 'x');                 -- expired: SV002
SELECT storage_delete_bucket('{}', 'e');               -- nothing live: SV002
SET storage.test_now = '2030-01-01 12:00:00+00';

-- names
SELECT storage_upsert_val('{a/b}', 'k', 'x');
SELECT storage_upsert_val('{a}', 'k/x', 'x');
SELECT storage_upsert_val('{a}', '', 'x');
SELECT storage_upsert_val('{""}', 'k', 'x');
SELECT storage_upsert_val('{.}', 'k', 'x');
SELECT storage_upsert_val('{a}', '..', 'x');
SELECT storage_upsert_val('{.locks}', 'k', 'x');
SELECT storage_upsert_val('{a}', repeat('k', 254), 'x');
SELECT storage_upsert_val('{a}', repeat('k', 253), 'x');
SELECT storage_upsert_val(NULL, 'k', 'x');
SELECT storage_upsert_val('{a,NULL}', 'k', 'x');
SELECT storage_upsert_val('{a}', NULL, 'x');
SELECT storage_upsert_val('{a}', 'k', 'x', '-1 second');
SELECT storage_get_keys(NULL);
SELECT storage_delete_bucket('{}', NULL);
SELECT storage_delete_bucket('{}', '.locks');

-- the error codes, as an application sees them
CREATE FUNCTION sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;
SELECT q, sqlstate_of(q) FROM (VALUES
  ('SELECT storage_create_val(''{z}'', ''k'', ''x'')'),
  ('SELECT storage_create_val(''{z}'', ''k'', ''x'')'),
  ('SELECT storage_get_val(''{z}'', ''nope'')'),
  ('SELECT storage_compare_and_swap_val(''{z}'', ''k'', ''y'', ''nope'')'),
  ('SELECT storage_get_val(''{}'', ''z'')'),
  ('SELECT storage_get_val(''{z}'', NULL)'),
  ('SELECT storage_upsert_val(''{z}'', ''k'', ''x'', ''-1 day'')')
) AS t(q);
DROP FUNCTION sqlstate_of(text);

-- get_keys skips from one sub-bucket to the next through the index: with
-- 20 sub-buckets of 500 records each it reads about one index entry per
-- name, not 10,000 (counted inside one transaction, where the statistics
-- counters are not flushed)
SELECT count(storage_upsert_items(ARRAY['big', 's' || lpad(b::text, 2, '0')],
                                  ARRAY(SELECT 'k' || i FROM generate_series(1, 500) AS i),
                                  array_fill('\x00'::bytea, ARRAY[500])))
  FROM generate_series(1, 20) AS b;
BEGIN;
SELECT pg_stat_get_xact_tuples_returned('storage_records_pkey'::regclass) AS before \gset
SELECT count(*) FROM storage_get_keys('{big}');
SELECT pg_stat_get_xact_tuples_returned('storage_records_pkey'::regclass) - :before AS index_entries_read;
COMMIT;
-- get_items skips the sub-buckets the same way: 2 keys + 20 sub-buckets
SELECT storage_upsert_items('{big}', '{k1,k2}', '{1,2}');
BEGIN;
SELECT pg_stat_get_xact_tuples_returned('storage_records_pkey'::regclass) AS before \gset
SELECT key, val FROM storage_get_items('{big}');
SELECT pg_stat_get_xact_tuples_returned('storage_records_pkey'::regclass) - :before AS index_entries_read;
COMMIT;

-- without SELECT on the table listing runs its statement, which raises
CREATE ROLE regress_storage_lister;
GRANT EXECUTE ON FUNCTION storage_get_keys(text[]), storage_get_items(text[])
   TO regress_storage_lister;
SET ROLE regress_storage_lister;
SELECT * FROM storage_get_keys('{big}');
SELECT * FROM storage_get_items('{big}');
RESET ROLE;
GRANT SELECT ON storage_records TO regress_storage_lister;
SET ROLE regress_storage_lister;
SELECT count(*) FROM storage_get_keys('{big}');
RESET ROLE;
REVOKE ALL ON storage_records FROM regress_storage_lister;
REVOKE ALL ON FUNCTION storage_get_keys(text[]), storage_get_items(text[])
  FROM regress_storage_lister;
DROP ROLE regress_storage_lister;
