--
-- The write core (src/write.c): the bucket functions and the locks write
-- through the same record rules as storage_save, storage_delete and
-- storage_touch, on the direct path and through the statements alike.
-- Every step runs with storage.direct_writes on and off, each from the
-- same starting state (it is rolled back afterwards); outcome and
-- resulting table must be identical.  Lock fences come from a sequence
-- and are shown only as "fence" (the steps compare them with the record).
--
SET timezone = 'UTC';
DELETE FROM storage_records;
SET storage.test_now = '2030-01-01 12:00:00+00';

CREATE TABLE wc_results (mode text, n int, step text, outcome text, state text);

-- id:version:data:format:expires_at of every record, fences masked
CREATE FUNCTION wc_state() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce(string_agg(r.id || ':'
                             || CASE WHEN r.id LIKE '.locks/%' AND r.version < 1000000
                                     THEN 'fence' ELSE r.version::text END
                             || ':' || coalesce(convert_from(r.data, 'UTF8'), '-')
                             || ':' || coalesce(r.format, '-')
                             || ':' || coalesce(to_char(r.expires_at, 'HH24:MI'), '-'),
                             ' ' ORDER BY r.id COLLATE "C"), '')
    FROM storage_records r
$$;

-- takes a lock; true if the record's version is the fence returned
CREATE FUNCTION wc_acquire(token text) RETURNS bool LANGUAGE plpgsql AS $$
DECLARE
  fence bigint := storage_acquire_lock(token, '1 hour');
BEGIN
  RETURN fence = (SELECT version FROM storage_records WHERE id = '.locks/' || token);
END
$$;

CREATE FUNCTION wc_run() RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  steps text[] := ARRAY[
    $$SELECT storage_create_val('{b}', 'new', 'x', NULL)$$,
    $$SELECT storage_create_val('{b}', 'k1', 'x', NULL)$$,
    $$SELECT storage_create_val('{b}', 'old', 'x', '1 hour')$$,
    $$SELECT storage_upsert_val('{b}', 'k1', 'y', NULL)$$,
    $$SELECT storage_upsert_val('{b}', 'old', 'y', '0')$$,
    $$SELECT storage_upsert_val('{b}', 'max', 'y', NULL)$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'k1', 'z', 'k1', '1 hour')$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'k1', 'z', 'k2', NULL)$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'old', 'z', 'o3', NULL)$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'none', 'z', 'k1', NULL)$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'max', 'z', 'm', NULL)$$,
    $$SELECT storage_delete_key('{b}', 'k1')$$,
    $$SELECT storage_delete_key('{b}', 'old')$$,
    $$SELECT storage_upsert_items('{b}', '{k2,n,k1,old}', '{a,b,c,d}', '1 hour')$$,
    $$SELECT storage_upsert_items('{b}', '{k1,max}', '{a,b}', NULL)$$,
    $$SELECT wc_acquire('free')$$,
    $$SELECT wc_acquire('gone')$$,
    $$SELECT storage_release_lock('held')$$,
    $$SELECT storage_release_lock('gone')$$,
    $$SELECT storage_release_lock('held', 1000007)$$,
    $$SELECT storage_release_lock('held', 1000008)$$,
    $$SELECT storage_release_lock('gone', 1000005)$$,
    $$SELECT storage_extend_lock('held', 1000007, '2 hours')$$,
    $$SELECT storage_extend_lock('held', 1000008, '2 hours')$$,
    $$SELECT storage_extend_lock('gone', 1000005, '2 hours')$$
  ];
  modes text[] := ARRAY['direct', 'statement'];
  results text[];
  states text[];
  m int;
  i int;
  res text;
BEGIN
  FOR m IN 1 .. 2 LOOP
    results := '{}';
    states := '{}';
    FOR i IN 1 .. array_length(steps, 1) LOOP
      BEGIN
        BEGIN
          PERFORM set_config('storage.direct_writes',
                             CASE modes[m] WHEN 'direct' THEN 'on' ELSE 'off' END, true);
          EXECUTE 'SELECT string_agg(r::text, '' '') FROM (' || steps[i] || ') r' INTO res;
        EXCEPTION WHEN OTHERS THEN
          res := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
        END;
        results := results || res;
        states := states || wc_state();
        -- undo the step: every step starts from the same state
        RAISE EXCEPTION USING ERRCODE = 'WCUND';
      EXCEPTION WHEN SQLSTATE 'WCUND' THEN
        NULL;
      END;
    END LOOP;
    INSERT INTO wc_results
      SELECT modes[m], g.k, steps[g.k], results[g.k], states[g.k]
        FROM generate_subscripts(steps, 1) AS g(k);
  END LOOP;
END
$f$;

INSERT INTO storage_records (id, version, expires_at, data) VALUES
  ('b/k1', 1, NULL, 'k1'), ('b/k2', 1, NULL, 'k2'),
  ('b/old', 3, '2030-01-01 11:00+00', 'o3'),
  ('b/max', 9223372036854775807, NULL, 'm'),
  ('.locks/held', 1000007, '2030-01-01 13:00+00', ''),
  ('.locks/gone', 1000005, '2030-01-01 11:00+00', '');
SELECT wc_state();
SELECT wc_run();

-- what each step did (direct path)
SELECT n, step, outcome, state FROM wc_results WHERE mode = 'direct' ORDER BY n;

-- through the statements every outcome is the same: no rows
SELECT s.n, s.step, s.outcome, s.state, d.outcome AS direct, d.state AS direct_state
  FROM wc_results s JOIN wc_results d USING (n)
 WHERE s.mode = 'statement' AND d.mode = 'direct'
   AND (s.outcome IS DISTINCT FROM d.outcome OR s.state IS DISTINCT FROM d.state)
 ORDER BY s.n;

DELETE FROM storage_records;
DROP FUNCTION wc_run();
DROP FUNCTION wc_state();
DROP FUNCTION wc_acquire(text);
DROP TABLE wc_results;
