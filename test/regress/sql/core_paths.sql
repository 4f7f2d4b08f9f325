--
-- The two ways a record is written (see src/direct.c): the direct path
-- (default, READ COMMITTED) and the SPI statements (storage.direct_writes
-- = off, REPEATABLE READ, or a table with triggers).  The same scenario of
-- saves, deletes and touches runs in each mode; every outcome (result or
-- error with its detail) and the final table must be identical, and the
-- direct mode's are printed.
--
SET timezone = 'UTC';
SET storage.test_now = '2030-01-01 12:00:00+00';

CREATE TABLE path_results (mode text, n int, step text, outcome text);

CREATE FUNCTION run_paths(mode text) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  steps text[] := ARRAY[
    $$SELECT storage_save('a', '\x01', 0)$$,
    $$SELECT storage_save('a', '\x02', 0)$$,
    $$SELECT storage_save('a', '\x02', 1)$$,
    $$SELECT storage_save('a', '\x03', 1)$$,
    $$SELECT storage_save('a', '\x03', 9)$$,
    $$SELECT storage_save('missing', '\x03', 1)$$,
    $$SELECT storage_save('a', '\x04', -1, '2031-01-01', 'json')$$,
    $$SELECT storage_save('a', NULL, -1, NULL, NULL)$$,
    $$SELECT storage_save('b', 'x', -7)$$,
    $$SELECT storage_save('e', 'old', 0, '2030-01-01 11:00+00')$$,
    $$SELECT storage_save('e', 'x', 1)$$,
    $$SELECT storage_save('e', 'x', -1)$$,
    $$SELECT storage_save('e', 'y', -1, '2030-01-01 12:00+00')$$,
    $$SELECT storage_save('e', 'z', -1)$$,
    $$SELECT storage_save('e', 'w', 0, '2030-01-01 11:59+00')$$,
    $$SELECT storage_save('i', 'a', -1, 'infinity'), storage_save('i', 'b', 1, 'infinity')$$,
    $$SELECT storage_save('ninf', 'a', -1, '-infinity'), storage_save('ninf', 'b', 0)$$,
    $$SELECT storage_save('slot', 'a', -1, '2030-01-01 12:00:30+00'), storage_save('slot', 'b', -1, '2030-01-01 12:00:50+00')$$,
    $$UPDATE storage_records SET version = 9223372036854775807 WHERE id = 'b' RETURNING version$$,
    $$SELECT storage_save('b', 'x', -1)$$,
    $$SELECT storage_save('b', 'x', 9223372036854775806)$$,
    $$SELECT storage_save('b', 'x', 9223372036854775807)$$,
    $$WITH u AS (UPDATE storage_records SET data = 'cte' WHERE id = 'a' RETURNING id)
      SELECT storage_save(u.id, 'after', -1) FROM u$$,
    $$WITH d AS (DELETE FROM storage_records WHERE id = 'b' RETURNING id)
      SELECT storage_save(d.id, 'reborn', 0) FROM d$$,
    $$SELECT storage_save_many('{m2,m1,a}', '{x,y,z}', '{0,0,-1}', '{2031-01-01,NULL,NULL}', '{f,NULL,g}')$$,
    $$SELECT storage_save_many('{m3,m2,m1}', '{a,b,c}', '{0,5,1}')$$,
    $$SELECT count(*) FROM storage_fetch('m3')$$,
    $$SELECT storage_save_many('{z1,m1,m2}', '{a,b,c}', '{0,7,0}')$$,
    $$SELECT storage_save_many('{e,z2}', '{a,b}', '{5,-1}')$$,
    $$SELECT storage_save_many('{m1,m2}', '{a,b}', '{1,1}', '{2030-01-01 11:00+00,NULL}')$$,
    $$SELECT storage_save_many('{m1,m2}', '{a,b}', '{2,2}')$$,
    $$SELECT storage_save_many('{}', '{}')$$,
    $$SELECT storage_save_many('{x,x}', '{a,b}')$$,
    $$SELECT storage_save_many('{x,y}', '{a}')$$,
    $$SELECT storage_save(NULL, 'x')$$,
    $$SELECT storage_save('', 'x')$$,
    $$SELECT storage_save(repeat('x', 256), 'x')$$,
    $$SELECT storage_save('a', 'x', NULL)$$,
    $$SELECT storage_delete('a'), storage_delete('a'), storage_delete('m1')$$,
    $$SELECT count(*) FROM storage_records WHERE id IN ('a', 'm1')$$,
    $$SELECT storage_touch('m2', '2031-01-01', -1), storage_touch('m2', NULL, 2),
             storage_touch('m2', NULL, 5), storage_touch('nope', NULL, -1)$$,
    $$SELECT storage_save('ex', 'x', -1, '2030-01-01 11:00+00'), storage_touch('ex', NULL, -1)$$,
    $$SELECT storage_touch('slot', '2030-01-01 12:00:40+00', 2), storage_touch('slot', '2030-01-01 12:05:00+00', -1)$$,
    $$WITH u AS (UPDATE storage_records SET data = 'z' WHERE id = 'i' RETURNING id)
      SELECT storage_delete(u.id) FROM u$$,
    $$SELECT storage_delete_many('{b,nope,b,ex,slot}'), storage_delete_many('{}')$$,
    $$SELECT storage_save('big', convert_to(string_agg(md5(g::text), ''), 'UTF8'), -1, NULL, 'f')
        FROM generate_series(1, 5000) AS g$$,
    $$SELECT storage_touch('big', '2031-01-01', 1), storage_touch('big', NULL, 1)$$,
    $$SELECT storage_delete(NULL)$$,
    $$SELECT storage_touch('m2', NULL, NULL)$$,
    $$SELECT storage_delete_many('{a,NULL}')$$,
    -- batches walk the primary key from one id to the next (src/direct.c):
    -- neighbours, gaps wider than the walk steps over, ids past the end of
    -- the index, ids with dead index entries, expired records
    $$SELECT array_length(storage_save_many(
               ARRAY(SELECT 'w:' || lpad(g::text, 3, '0') FROM generate_series(0, 399) AS g),
               array_fill('\x01'::bytea, ARRAY[400]), array_fill(0::bigint, ARRAY[400])), 1)$$,
    $$SELECT storage_delete('w:010'), storage_save('w:010', 'again', 0),
             storage_delete('w:011'), storage_save('w:011', 'x', -1),
             storage_save('w:300', 'old', -1, '2030-01-01 11:00+00')$$,
    $$SELECT storage_save_many('{w:010,w:011,w:012,w:0125,w:200,w:201,w:399,w:4,zzzz,0,w:300}',
                               array_fill('\x02'::bytea, ARRAY[11]))$$,
    $$SELECT storage_save_many('{w:399,w:000,w:200,w:300}', '{a,b,c,d}', '{2,1,2,1}')$$,
    $$SELECT storage_save_many('{w:001,w:201,w:398}', '{a,b,c}', '{1,1,7}')$$,
    $$SELECT storage_save_many('{w:003,w:0025,w:397}', '{a,b,c}', '{1,1,1}')$$,
    $$SELECT storage_delete_many(ARRAY(SELECT 'w:' || lpad(g::text, 3, '0')
                                         FROM generate_series(0, 399, 7) AS g) || '{w:0125,nope,zzzz}')$$,
    $$SELECT count(*), sum(version), md5(string_agg(id || version || data::text, ',' ORDER BY id))
        FROM storage_records WHERE id LIKE 'w:%' OR id IN ('zzzz', '0')$$,
    $$SELECT storage_delete_many(ARRAY(SELECT id FROM storage_records
                                        WHERE id LIKE 'w:%' OR id IN ('zzzz', '0')))$$,
    $$SELECT id, version, expires_at, format, length(data), md5(data),
             purge_after IS NOT DISTINCT FROM storage_expiry_slot(expires_at) AS slot_ok
        FROM storage_records ORDER BY id$$
  ];
  i int;
  res text;
  detail text;
BEGIN
  DELETE FROM storage_records;
  FOR i IN 1 .. array_length(steps, 1) LOOP
    BEGIN
      IF steps[i] LIKE 'SELECT%' THEN
        EXECUTE 'SELECT string_agg(r::text, E''\n'') FROM (' || steps[i] || ') r' INTO res;
      ELSE   -- data-modifying statements cannot be subqueries
        EXECUTE steps[i] INTO res;
      END IF;
    EXCEPTION WHEN OTHERS THEN
      GET STACKED DIAGNOSTICS detail = PG_EXCEPTION_DETAIL;
      res := 'ERROR ' || SQLSTATE || ': ' || SQLERRM || coalesce(' / ' || detail, '');
    END;
    INSERT INTO path_results VALUES (mode, i, steps[i], res);
  END LOOP;
END
$f$;

-- direct path (READ COMMITTED, the default)
SELECT run_paths('direct');

-- SPI statements, switched on by the setting
SET storage.direct_writes = off;
SELECT run_paths('spi');
RESET storage.direct_writes;

-- SPI statements, because the table has a trigger
CREATE FUNCTION path_noop() RETURNS trigger LANGUAGE plpgsql AS
$$BEGIN RETURN CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END; END$$;
CREATE TRIGGER path_noop BEFORE INSERT OR UPDATE OR DELETE ON storage_records
  FOR EACH ROW EXECUTE FUNCTION path_noop();
SELECT run_paths('trigger');
DROP TRIGGER path_noop ON storage_records;

-- SPI statements, because REPEATABLE READ needs the executor's snapshot rules
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT run_paths('repeatable read');
COMMIT;

-- the direct path's outcomes
SELECT n, outcome FROM path_results WHERE mode = 'direct' ORDER BY n;

-- every other mode must match it step by step: no rows
SELECT o.mode, o.n, o.outcome, d.outcome AS direct
  FROM path_results o JOIN path_results d ON d.mode = 'direct' AND d.n = o.n
 WHERE o.mode <> 'direct' AND o.outcome IS DISTINCT FROM d.outcome
 ORDER BY o.mode, o.n;
SELECT mode, count(*) FROM path_results GROUP BY mode ORDER BY mode;

DROP FUNCTION run_paths(text);
DROP FUNCTION path_noop();
DROP TABLE path_results;
DELETE FROM storage_records;
