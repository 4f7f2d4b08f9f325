--
-- Input rules of release 1.1: ttl intervals of mixed sign, multidimensional
-- arrays, expiry slots at the end of the timestamptz range, ids that are
-- not valid bucket keys, the lower bounds of storage_save_many's arrays,
-- and the DROP EXTENSION guard.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store

--
-- ttl: one rule for values and locks, the interval as a whole at the time
-- of the call: now + ttl must be later than now.
--
-- '1 mon -29 days' is 2 days on 1 March but goes back one day on 31 January
SET storage.test_now = '2030-03-01 12:00:00+00';
SELECT storage_upsert_val('{t}', 'mon', 'x', '1 mon -29 days');
SELECT expires_at FROM storage_fetch('t/mon');
SELECT storage_acquire_lock('mon', '1 mon -29 days') > 0 AS taken;
SELECT expires_at FROM storage_fetch('.locks/mon');
SELECT storage_release_lock('mon');
SET storage.test_now = '2030-01-31 12:00:00+00';
SELECT storage_upsert_val('{t}', 'mon', 'y', '1 mon -29 days');        -- 22023
SELECT storage_create_val('{t}', 'mon2', 'y', '1 mon -29 days');       -- 22023
SELECT storage_compare_and_swap_val('{t}', 'mon', 'y', 'x', '1 mon -29 days'); -- 22023
SELECT storage_upsert_items('{t}', '{a}', '{y}', '1 mon -29 days');    -- 22023
SELECT storage_upsert_items('{t}', '{}', '{}', '1 mon -29 days');      -- 22023 even with no keys
SELECT storage_acquire_lock('mon', '1 mon -29 days');                  -- 22023
SELECT id, version, expires_at, data FROM storage_records ORDER BY id; -- unchanged
-- '1 day -24 hours' amounts to nothing: it would be expired when written
SELECT storage_upsert_val('{t}', 'day', 'x', '1 day -24 hours');       -- 22023
SELECT storage_create_val('{t}', 'day', 'x', '1 day -24 hours');       -- 22023
SELECT storage_acquire_lock('day', '1 day -24 hours');                 -- 22023
SELECT count(*) FROM storage_records WHERE id IN ('t/day', '.locks/day');
-- '-1 day 25 hours' is one hour
SELECT storage_upsert_val('{t}', 'hour', 'x', '-1 day 25 hours');
SELECT storage_acquire_lock('hour', '-1 day 25 hours') > 0 AS taken;
SELECT id, expires_at FROM storage_records WHERE id IN ('t/hour', '.locks/hour') ORDER BY id;
SELECT storage_release_lock('hour');
-- NULL and the zero interval mean no expiry for values; a lock needs a
-- positive ttl
SELECT storage_upsert_val('{t}', 'zero', 'x', '0');
SELECT storage_upsert_val('{t}', 'null', 'x', NULL);
SELECT storage_upsert_val('{t}', 'zero2', 'x', '0 mon 0 days 00:00:00');
SELECT id, expires_at FROM storage_records WHERE id LIKE 't/%' ORDER BY id;
SELECT storage_acquire_lock('zero', '0');                              -- 22023
SELECT storage_acquire_lock('zero', NULL);                             -- 22004
SELECT storage_acquire_lock('neg', '-1 second');                       -- 22023
SELECT storage_upsert_val('{t}', 'neg', 'x', '-1 second');             -- 22023
-- a ttl past the end of the timestamptz range is an error, not a wrap
SELECT storage_upsert_val('{t}', 'far', 'x', '300000 years');          -- 22008
SET storage.test_now = '2030-01-01 12:00:00+00';

--
-- storage_upsert_items takes one-dimensional arrays, like every function
--
SELECT storage_upsert_items('{t}', '{{a,b},{c,d}}', '{1,2,3,4}');     -- 22023
SELECT storage_upsert_items('{t}', '{a,b,c,d}', '{{1,2},{3,4}}');     -- 22023
SELECT storage_upsert_items('{{t}}', '{a}', '{1}');                   -- 22023
SELECT count(*) FROM storage_records WHERE id LIKE 't/_';              -- none written
-- lower bounds other than 1 are fine; element numbers are the caller's
SELECT storage_upsert_items('{t}', '[0:1]={a,b}', '[5:6]={1,2}');
SELECT key, val FROM storage_get_items('{t}') WHERE key IN ('a', 'b');
SELECT storage_upsert_items('{t}', '[0:1]={a,NULL}', '{1,2}');        -- element 1
SELECT storage_get_keys('[3:4]={t,NULL}');                           -- element 4

--
-- the expiry slot of a record that expires at the end of the timestamptz
-- range is clamped to the last valid timestamp: it can be read, dumped and
-- purged
--
SELECT s, s::text::timestamptz = s AS valid
  FROM storage_expiry_slot('294276-12-31 23:59:30+00') AS s;
SELECT s, s::text::timestamptz = s AS valid
  FROM storage_expiry_slot('294276-12-31 23:59:59.999999+00') AS s;
SELECT storage_expiry_slot('294276-12-31 23:58:00+00');                -- on a slot boundary
-- a width that does not divide the range: the slot would end 10 hours past it
SET storage.expiry_slot = 86399;
SELECT s, s + interval '0' = s AS valid
  FROM storage_expiry_slot('294276-12-31 12:00:00+00') AS s;
SELECT storage_save('end-of-time-wide', 'x', -1, '294276-12-31 12:00:00+00');
RESET storage.expiry_slot;
SELECT storage_save('end-of-time', 'x', -1, '294276-12-31 23:59:30+00');
SET storage.direct_writes = off;
SELECT storage_save('end-of-time-spi', 'x', -1, '294276-12-31 23:59:31+00');
RESET storage.direct_writes;
SELECT storage_touch('end-of-time', '294276-12-31 23:59:40+00');
SELECT id, expires_at, purge_after, purge_after::text::timestamptz >= expires_at AS ok
  FROM storage_records WHERE id LIKE 'end-of-time%' ORDER BY id;
SET storage.test_now = '294276-12-31 23:59:59.999999+00';
SELECT storage_purge_expired();
SELECT count(*) FROM storage_records WHERE id LIKE 'end-of-time%';
SET storage.test_now = '2030-01-01 12:00:00+00';

--
-- ids that are not valid keys of a bucket ('bk/', 'bk//c') are not listed
--
DELETE FROM storage_records;
SELECT storage_save('bk/', 'empty key');
SELECT storage_save('bk//c', 'empty sub-bucket');
SELECT storage_save('bk//', 'empty both');
SELECT storage_save('bk/ok', 'fine');
SELECT storage_save('bk/sub/x', 'fine');
SELECT storage_save('bk/sub//y', 'not a key of bk/sub');
SELECT storage_save('bk/z', 'fine');
SELECT * FROM storage_get_keys('{bk}');
SELECT key, val FROM storage_get_items('{bk}');
SELECT * FROM storage_get_keys('{bk,sub}');
SELECT key FROM storage_get_items('{bk,sub}');
-- the bucket's parent still sees something below bk: the bucket holds
-- every record below its prefix, addressable or not
SELECT * FROM storage_get_keys('{}');
-- get_val cannot name them, and they do not make a key look like a bucket
SELECT storage_get_val('{bk}', '');                                    -- 22023
SELECT storage_save('only/', 'x');
SELECT storage_save('only//y', 'x');
SELECT storage_get_val('{}', 'only');                                  -- SV002, not "is a bucket"
-- storage_delete_bucket removes everything below the prefix, them too
SELECT storage_delete_bucket('{}', 'only');
SELECT storage_delete_bucket('{}', 'bk');
SELECT count(*) FROM storage_records;

--
-- storage_save_many: the result has the subscripts of ids
--
SELECT storage_save_many('[0:1]={a,b}', '{x,y}');
SELECT v[0] AS a, v[1] AS b FROM storage_save_many('[0:1]={a,b}', '{x,y}') AS v;
SELECT v, array_lower(v, 1), v[-3] AS c, v[-1] AS b
  FROM storage_save_many('[-3:-1]={c,a,b}', '[7:9]={x,y,z}', '[1:3]={0,2,2}') AS v;
SELECT storage_save_many('[-3:-1]={c,a,b}', '{x,y,z}', '{-1,3,9}');  -- SV001 names b
SET storage.direct_writes = off;
SELECT storage_save_many('[5:6]={a,d}', '{x,y}');
RESET storage.direct_writes;
SELECT storage_save_many('[5:6]={a,NULL}', '{x,y}');                   -- element 6
SELECT storage_save_many('[5:6]={a,d}', '{x,y}', '[2:3]={1,NULL}');    -- element 3
SELECT storage_save_many('{}'::text[], '{}');
SELECT id, version FROM storage_records ORDER BY id;

RESET storage.test_now;
