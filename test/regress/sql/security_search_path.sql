--
-- search_path safety: a schema full of operators, functions, aggregates and
-- types shadowing pg_catalog's is put first in search_path (explicitly
-- before pg_catalog), and every function of the extension runs through
-- each of its paths: the direct path, the SPI statements
-- (storage.direct_writes = off) and REPEATABLE READ.  None of the shadows
-- may ever be called.  Each shadow raises a WARNING (shown even if the
-- call's subtransaction is rolled back) and logs its call in
-- shadow.calls.
--
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';
SET timezone = 'UTC';

CREATE SCHEMA shadow;
CREATE TABLE shadow.calls (what text);
CREATE FUNCTION shadow.called(what text) RETURNS boolean
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  RAISE WARNING 'shadow % called', what;
  BEGIN
    INSERT INTO shadow.calls VALUES (what);
  EXCEPTION WHEN read_only_sql_transaction THEN
    NULL;
  END;
  RETURN true;
END $$;

-- every infix operator of pg_catalog with these names on these types
DO $$
DECLARE
  o record;
  n int := 0;
BEGIN
  FOR o IN
    SELECT op.oprname, format_type(op.oprleft, NULL) AS l,
           format_type(op.oprright, NULL) AS r, format_type(op.oprresult, NULL) AS res
      FROM pg_operator op
     WHERE op.oprnamespace = 'pg_catalog'::regnamespace AND op.oprkind = 'b'
       AND op.oprname IN ('=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/', '||',
                          '~~', '!~~', '~', '^@', '@>', '<@', '&&')
       AND op.oprleft IN (SELECT t::regtype FROM unnest(ARRAY[
             'text', 'bigint', 'integer', 'smallint', 'numeric', 'timestamptz',
             'timestamp', 'date', 'interval', 'bytea', 'tid', 'boolean', 'oid',
             'name', 'regclass', 'anyarray', 'anycompatiblearray', 'anyelement',
             'anycompatible', 'anynonarray', 'anycompatiblenonarray']) AS t)
       AND op.oprright IN (SELECT t::regtype FROM unnest(ARRAY[
             'text', 'bigint', 'integer', 'smallint', 'numeric', 'timestamptz',
             'timestamp', 'date', 'interval', 'bytea', 'tid', 'boolean', 'oid',
             'name', 'regclass', 'anyarray', 'anycompatiblearray', 'anyelement',
             'anycompatible', 'anynonarray', 'anycompatiblenonarray']) AS t)
  LOOP
    n := n + 1;
    EXECUTE format('CREATE FUNCTION shadow.op_%s(%s, %s) RETURNS %s LANGUAGE plpgsql '
                   'SET search_path = pg_catalog, pg_temp AS %L',
                   n, o.l, o.r, o.res,
                   format('BEGIN PERFORM shadow.called(%L); RETURN $1 OPERATOR(pg_catalog.%s) $2; END',
                          format('%s %s %s', o.l, o.oprname, o.r), o.oprname));
    EXECUTE format('CREATE OPERATOR shadow.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = shadow.op_%s)',
                   o.oprname, o.l, o.r, n);
  END LOOP;
END $$;

-- functions: those the extension could plausibly call, with their
-- pg_catalog signatures (plain functions of simple types)
DO $$
DECLARE
  f record;
BEGIN
  FOR f IN
    SELECT p.proname, pg_get_function_identity_arguments(p.oid) AS args,
           format_type(p.prorettype, NULL) AS res, p.pronargs
      FROM pg_proc p
     WHERE p.pronamespace = 'pg_catalog'::regnamespace AND p.prokind = 'f'
       AND NOT p.proretset AND p.provariadic = 0
       AND p.proname IN ('now', 'clock_timestamp', 'statement_timestamp',
                         'transaction_timestamp', 'current_database',
                         'current_setting', 'length', 'octet_length', 'left',
                         'right', 'substr', 'lower', 'upper', 'split_part',
                         'starts_with', 'array_length', 'cardinality',
                         'array_position', 'textlen', 'byteaeq', 'texteq',
                         'int8pl', 'timestamptz_gt', 'timestamptz_le')
  LOOP
    EXECUTE format('CREATE FUNCTION shadow.%I(%s) RETURNS %s LANGUAGE plpgsql '
                   'SET search_path = pg_catalog, pg_temp AS %L',
                   f.proname, f.args, f.res,
                   format('BEGIN PERFORM shadow.called(%L); RETURN pg_catalog.%I(%s); END',
                          format('%s(%s)', f.proname, f.args), f.proname,
                          (SELECT string_agg('$' || i, ', ')
                             FROM generate_series(1, f.pronargs) AS i)));
  END LOOP;
END $$;

-- set-returning functions and aggregates
CREATE FUNCTION shadow.unnest(anyarray) RETURNS SETOF anyelement
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM shadow.called('unnest(anyarray)');
  RETURN QUERY SELECT pg_catalog.unnest($1);
END $$;
CREATE FUNCTION shadow.count_step(bigint) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM shadow.called('count');
  RETURN $1 OPERATOR(pg_catalog.+) 1;
END $$;
CREATE AGGREGATE shadow.count(*) (SFUNC = shadow.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION shadow.count_any_step(bigint, anyelement) RETURNS bigint
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM shadow.called('count(anyelement)');
  RETURN $1 OPERATOR(pg_catalog.+) 1;
END $$;
CREATE AGGREGATE shadow.count(anyelement) (SFUNC = shadow.count_any_step, STYPE = bigint, INITCOND = '0');

-- types: a cast to an unqualified type name would find these domains
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['text', 'bytea', 'int8', 'int4', 'timestamptz', 'tid',
                           'regclass', 'name', 'bool']
  LOOP
    EXECUTE format('CREATE DOMAIN shadow.%I AS pg_catalog.%I CHECK (shadow.called(%L))',
                   t, t, 'domain ' || t);
  END LOOP;
END $$;

SELECT count(*) > 200 AS many_operators,
       array_agg(DISTINCT oprname ORDER BY oprname) AS operator_names
  FROM pg_operator WHERE oprnamespace = 'shadow'::regnamespace;
SELECT array_agg(DISTINCT proname ORDER BY proname) AS functions
  FROM pg_proc WHERE pronamespace = 'shadow'::regnamespace AND proname !~ '^op_';
SELECT array_agg(typname ORDER BY typname) AS types
  FROM pg_type WHERE typnamespace = 'shadow'::regnamespace AND typtype = 'd';

-- Every function of the extension, one step each; the outcome (first
-- column as text, or the error) is recorded per mode.  The runner itself
-- names pg_catalog's operators and types explicitly (its body is compiled
-- under the hostile search_path), so that only the extension could call a
-- shadow.
CREATE TABLE sp_results (mode text, n int, step text, outcome text);
CREATE FUNCTION sp_run(mode text) RETURNS void
LANGUAGE plpgsql AS $f$
DECLARE
  steps pg_catalog.text[] := ARRAY[
    $$SELECT storage_save('a', '\x01', 0)$$,
    $$SELECT storage_save('a', '\x02', 1)$$,
    $$SELECT storage_save('a', '\x03', 1)$$,
    $$SELECT storage_save('a', '\x04')$$,
    $$SELECT storage_save('a', '\x05', 0)$$,
    $$SELECT storage_save('e', '\x05', -1, '2030-01-01 11:00+00', 'f')$$,
    $$SELECT storage_save('e', '\x06', 0, '2030-01-01 11:30+00')$$,
    $$SELECT storage_save('e', '\x07', 1)$$,
    $$SELECT storage_save('x', '\x07', -1, '2030-01-01 11:00+00')$$,
    $$SELECT storage_save('f', '\x08', -1, '2030-01-02 00:00+00', 'json')$$,
    $$SELECT pg_catalog.concat(id, ' ', version, ' ', expires_at, ' ', format, ' ', data) FROM storage_fetch('a')$$,
    $$SELECT pg_catalog.string_agg(pg_catalog.concat(id, ' ', version), ', ' ORDER BY id) FROM storage_fetch_many('{a,e,f,x,zz}')$$,
    $$SELECT pg_catalog.string_agg(pg_catalog.concat(id, ' ', version), ', ' ORDER BY id) FROM storage_list('')$$,
    $$SELECT pg_catalog.string_agg(pg_catalog.concat(id, ' ', version), ', ' ORDER BY id) FROM storage_list('f')$$,
    $$SELECT storage_touch('a', '2031-01-01 00:00+00', 3)$$,
    $$SELECT storage_touch('a', '2031-01-01 00:00+00', 9)$$,
    $$SELECT storage_touch('a', NULL)$$,
    $$SELECT storage_delete('f')$$,
    $$SELECT storage_delete('x')$$,
    $$SELECT storage_save_many('{m1,m2}', '{"\\x01","\\x02"}')$$,
    $$SELECT storage_save_many('{m1,m2}', '{"\\x03","\\x04"}', '{1,1}')$$,
    $$SELECT storage_save_many('{m2,m1}', '{"\\x05","\\x06"}', '{2,7}')$$,
    $$SELECT storage_save_many('{c1,c2}', '{"\\x01","\\x02"}', '{0,0}', '{"2030-01-01 11:00+00",NULL}', '{f,g}')$$,
    $$SELECT storage_save_many('{c1,c2}', '{"\\x01","\\x02"}', '{0,0}')$$,
    $$SELECT storage_delete_many('{m1,m2,c1,zz}')$$,
    $$SELECT storage_create_val('{b}', 'k', '\x01', '1 hour')$$,
    $$SELECT storage_create_val('{b}', 'k', '\x01')$$,
    $$SELECT storage_upsert_val('{b}', 'k', '\x02')$$,
    $$SELECT storage_upsert_val('{b,s}', 'k', '\x02', '1 minute')$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'k', '\x03', '\x02')$$,
    $$SELECT storage_compare_and_swap_val('{b}', 'k', '\x04', '\x02')$$,
    $$SELECT storage_get_val('{b}', 'k')$$,
    $$SELECT storage_get_val('{b}', 's')$$,
    $$SELECT pg_catalog.string_agg(k, ', ') FROM storage_get_keys('{b}') AS k$$,
    $$SELECT pg_catalog.string_agg(pg_catalog.concat(key, ' ', val), ', ') FROM storage_get_items('{b}')$$,
    $$SELECT storage_upsert_items('{b}', '{k2,k3}', '{"\\x01","\\x02"}', '1 hour')$$,
    $$SELECT storage_delete_key('{b}', 'k2')$$,
    $$SELECT storage_delete_key('{b}', 'k2')$$,
    $$SELECT storage_delete_bucket('{}', 'b')$$,
    $$SELECT 'taken' FROM (SELECT storage_acquire_lock('t', '1 minute')) AS l$$,
    $$SELECT 'released' FROM (SELECT storage_release_lock('t')) AS l$$,
    $$SELECT 'released' FROM (SELECT storage_release_lock('t')) AS l$$,
    $$SELECT 'taken' FROM (SELECT pg_catalog.set_config('sp.fence', storage_acquire_lock('t2', '1 minute')::pg_catalog.text, false)) AS l$$,
    $$SELECT storage_extend_lock('t2', pg_catalog.current_setting('sp.fence')::pg_catalog.int8, '2 minutes')$$,
    $$SELECT storage_extend_lock('t2', 1, '2 minutes')$$,
    $$SELECT 'released' FROM (SELECT storage_release_lock('t2', 1)) AS l$$,
    $$SELECT 'released' FROM (SELECT storage_release_lock('t2', pg_catalog.current_setting('sp.fence')::pg_catalog.int8)) AS l$$,
    $$SELECT storage_purge_expired()$$,
    $$SELECT pg_catalog.concat(live_records, ' ', expired_records) FROM storage_status(true)$$,
    $$SELECT expired_records FROM storage_status$$,
    $$SELECT storage_now()$$,
    $$SELECT pg_catalog.string_agg(pg_catalog.concat(id, ' ', version, ' ', expires_at, ' ', format, ' ', data), ', ' ORDER BY id) FROM storage_records$$
  ];
  s pg_catalog.text;
  i pg_catalog.int4 := 0;
  r pg_catalog.text;
BEGIN
  DELETE FROM public.storage_records;
  FOREACH s IN ARRAY steps
  LOOP
    i := i OPERATOR(pg_catalog.+) 1;
    BEGIN
      EXECUTE s INTO r;
    EXCEPTION WHEN OTHERS THEN
      r := pg_catalog.format('ERROR %s: %s', SQLSTATE, SQLERRM);
    END;
    INSERT INTO public.sp_results VALUES (mode, i, s, r);
  END LOOP;
END $f$;

-- the hostile search_path: the shadows first, explicitly before pg_catalog
SET search_path = shadow, pg_catalog, public;

SET storage.direct_writes = on;
SELECT sp_run('direct');
SET storage.direct_writes = off;
SELECT sp_run('statements');
SET storage.direct_writes = on;
SET default_transaction_isolation = 'repeatable read';
SELECT sp_run('repeatable read');
SET default_transaction_isolation = 'read committed';

-- the DROP EXTENSION guard (an event trigger) counts live records
DROP EXTENSION storage;

RESET search_path;

-- nothing of the shadow schema ran
SELECT count(*) AS shadow_calls FROM shadow.calls;

-- the outcomes (of the direct path), and every mode gave the same
SELECT n, step, outcome FROM sp_results WHERE mode = 'direct' ORDER BY n;
SELECT a.mode, a.n, a.outcome, d.outcome AS direct
  FROM sp_results a JOIN sp_results d ON d.n = a.n AND d.mode = 'direct'
 WHERE a.outcome IS DISTINCT FROM d.outcome;
SELECT mode, count(*) FROM sp_results GROUP BY mode ORDER BY mode;

-- the inlined functions are still inlined: index scans on the records
-- table, no Function Scan.  Only index scans are allowed, so that the plans
-- shown do not depend on whether autovacuum has analyzed the small table
-- (then a sequential scan is cheaper); a function that is not inlined
-- would still show as a Function Scan.
SET enable_seqscan = off;
SET enable_bitmapscan = off;
EXPLAIN (COSTS OFF) SELECT * FROM storage_fetch('a');
EXPLAIN (COSTS OFF) SELECT * FROM storage_fetch_many('{a,b}');
-- (storage_list with a parameter: its range ends in 0xFF bytes)
PREPARE list_plan(text) AS SELECT * FROM storage_list($1);
SET plan_cache_mode = force_generic_plan;
EXPLAIN (COSTS OFF) EXECUTE list_plan('b/');
RESET plan_cache_mode;
RESET enable_seqscan;
RESET enable_bitmapscan;
DEALLOCATE list_plan;

DROP FUNCTION sp_run(text);
DROP TABLE sp_results;
SET client_min_messages = warning;
DROP SCHEMA shadow CASCADE;
RESET client_min_messages;
DELETE FROM storage_records;
RESET storage.test_now;
RESET timezone;
