--
-- The fast paths (the direct write path of src/direct.c and the bucket
-- readers' primary-key walk in src/buckets.c) against what the statements
-- enforce: row-level security, replica identity and publications, rules,
-- inheritance children, partition constraints.  Every scenario runs the
-- same steps with storage.direct_writes on and off, each step from the
-- same starting state (it is rolled back afterwards); outcome and
-- resulting table must be identical.  The reads must show exactly what the
-- equivalent SELECT shows the role.  storage_write_path says which path
-- writes take and why.
--
SET timezone = 'UTC';
DELETE FROM storage_records;
SET storage.test_now = '2030-01-01 12:00:00+00';

-- what a DO ALSO rule records
CREATE TABLE fp_audit (op text, id text);
CREATE TABLE fp_results (scenario text, mode text, n int, step text,
                         outcome text, state text);

-- the table as the superuser sees it: id:version:data, '*' marks a row
-- of an inheritance child; then what the audit rules recorded
CREATE FUNCTION fp_state() RETURNS text LANGUAGE sql AS $$
  SELECT coalesce((SELECT string_agg(CASE WHEN r.tableoid = 'storage_records'::regclass
                                          THEN '' ELSE '*' END
                                     || r.id || ':' || r.version || ':'
                                     || coalesce(convert_from(r.data, 'UTF8'), '-'),
                                     ' ' ORDER BY r.id COLLATE "C")
                     FROM storage_records r), '')
      || coalesce(' | audit: ' || (SELECT string_agg(a.op || ' ' || a.id, ', ' ORDER BY a.op, a.id)
                                     FROM fp_audit a), '')
$$;

CREATE FUNCTION fp_run(scenario text, who text) RETURNS void LANGUAGE plpgsql AS $f$
DECLARE
  steps text[] := ARRAY[
    $$SELECT storage_save('a', 'x', -1)$$,
    $$SELECT storage_save('a', 'x', 1)$$,
    $$SELECT storage_save('new', 'x', -1)$$,
    $$SELECT storage_save('old', 'x', 0)$$,
    $$SELECT storage_delete('a')$$,
    $$SELECT storage_delete('nope')$$,
    $$SELECT storage_touch('a', '2031-01-01', -1)$$,
    $$SELECT storage_save_many('{a,new}', '{x,y}', '{1,-1}')$$,
    $$SELECT storage_delete_many('{a,nope}')$$,
    $$SELECT storage_purge_expired()$$,
    $$SELECT storage_save('c1', 'x', 1)$$,
    $$SELECT storage_delete('c1')$$,
    $$SELECT storage_touch('c1', NULL, -1)$$,
    $$SELECT storage_save('zz', 'x', -1)$$,
    $$SELECT string_agg(id, ' ' ORDER BY id COLLATE "C") FROM storage_records$$,
    $$SELECT storage_get_keys('{}')$$,
    $$SELECT storage_get_keys('{b}')$$,
    $$SELECT storage_get_items('{b}')$$,
    $$SELECT storage_get_keys('{cb}')$$,
    $$SELECT storage_get_val('{}', 'hidden')$$,
    $$SELECT storage_get_val('{b}', 'hsub')$$,
    $$SELECT storage_get_val('{b}', 'hid')$$,
    $$SELECT storage_get_val('{b}', 'vsub')$$,
    $$SELECT storage_get_val('{}', 'cb')$$,
    $$SELECT storage_fetch('a')$$,
    $$SELECT storage_fetch('old')$$,
    $$SELECT storage_fetch('b/hid')$$,
    $$SELECT storage_fetch('hidden/x')$$,
    $$SELECT storage_fetch('c1')$$
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
          EXECUTE format('SET LOCAL ROLE %I', who);
          EXECUTE 'SELECT string_agg(r::text, '' '') FROM (' || steps[i] || ') r' INTO res;
          RESET ROLE;
        EXCEPTION WHEN OTHERS THEN
          res := 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
        END;
        results := results || res;
        states := states || fp_state();
        -- undo the step: every step starts from the same state
        RAISE EXCEPTION USING ERRCODE = 'FPUND';
      EXCEPTION WHEN SQLSTATE 'FPUND' THEN
        NULL;
      END;
    END LOOP;
    INSERT INTO fp_results
      SELECT scenario, modes[m], g.k, steps[g.k], results[g.k], states[g.k]
        FROM generate_subscripts(steps, 1) AS g(k);
  END LOOP;
END
$f$;

-- the records every scenario starts from
CREATE FUNCTION fp_load() RETURNS void LANGUAGE sql AS $$
  INSERT INTO storage_records (id, version, expires_at, data) VALUES
    ('a', 1, NULL, 'a1'), ('old', 3, '2030-01-01 11:00+00', 'o3'),
    ('b/k1', 1, NULL, 'k1'), ('b/k2', 1, NULL, 'k2'), ('b/hid', 1, NULL, 'h'),
    ('b/hsub/x', 1, NULL, 'hx'), ('b/vsub/y', 1, NULL, 'vy'), ('hidden/x', 1, NULL, 'hx');
$$;

CREATE ROLE regress_fp_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON storage_records TO regress_fp_app;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO regress_fp_app;
GRANT SELECT ON storage_write_path TO regress_fp_app;

-- the plain table: every write takes the direct path
SELECT fp_load();
SELECT * FROM storage_write_path;
SELECT fp_run('plain', 'regress_fp_app');
-- what storage_fetch shows the role on the plain table
SET ROLE regress_fp_app;
CREATE TEMP TABLE fp_fetched AS
  SELECT k, (SELECT f::text FROM storage_fetch(k) AS f) AS plain
    FROM unnest(ARRAY['a', 'old', 'b/k1', 'b/hid', 'hidden/x', 'nope']) AS k;
RESET ROLE;

-- row-level security: a policy hides "h..." and ".../h..." from the role
CREATE POLICY fp_hide ON storage_records
  USING (id NOT LIKE 'h%' AND id NOT LIKE '%/h%');
ALTER TABLE storage_records ENABLE ROW LEVEL SECURITY;
SET ROLE regress_fp_app;
SELECT * FROM storage_write_path;
-- the readers show the role what the SELECT shows it
SELECT array(SELECT storage_get_keys('{}')) AS keys,
       array(SELECT DISTINCT split_part(id, '/', 1) FROM storage_records
              WHERE expires_at IS NULL OR expires_at > storage_now() ORDER BY 1) AS "select";
SELECT array(SELECT storage_get_keys('{b}')) AS keys,
       array(SELECT DISTINCT split_part(substr(id, 3), '/', 1) FROM storage_records
              WHERE id LIKE 'b/%' ORDER BY 1) AS "select";
SELECT array(SELECT key FROM storage_get_items('{b}')) AS items,
       array(SELECT substr(id, 3) FROM storage_records
              WHERE id LIKE 'b/%' AND strpos(substr(id, 3), '/') = 0 ORDER BY 1) AS "select";
-- and so does storage_fetch, id by id: the policy applies
SELECT array(SELECT f.id FROM unnest(ARRAY['a', 'old', 'b/k1', 'b/hid', 'b/hsub/x', 'hidden/x']) AS k,
                    LATERAL storage_fetch(k) AS f ORDER BY 1) AS fetched,
       array(SELECT id FROM storage_records
              WHERE expires_at IS NULL OR expires_at > storage_now() ORDER BY 1) AS "select";
RESET ROLE;
-- a second policy shows the role every row: the fetch returns what it
-- returned on the plain table
CREATE POLICY fp_all ON storage_records USING (true);
SET ROLE regress_fp_app;
SELECT k, plain, (SELECT f::text FROM storage_fetch(k) AS f) AS "row-level security"
  FROM fp_fetched ORDER BY k;
RESET ROLE;
DROP POLICY fp_all ON storage_records;
DROP TABLE fp_fetched;
SELECT fp_run('row-level security', 'regress_fp_app');
ALTER TABLE storage_records DISABLE ROW LEVEL SECURITY;
DROP POLICY fp_hide ON storage_records;

-- replication: no replica identity, and a publication of updates and
-- deletes; the statements raise 55000, so must every direct write
SET client_min_messages = error;   -- no wal_level warning
CREATE PUBLICATION fp_pub FOR TABLE storage_records WITH (publish = 'update, delete');
RESET client_min_messages;
ALTER TABLE storage_records REPLICA IDENTITY NOTHING;
SELECT * FROM storage_write_path;
SELECT fp_run('replica identity nothing', 'regress_fp_app');
ALTER TABLE storage_records REPLICA IDENTITY DEFAULT;
DROP PUBLICATION fp_pub;

-- a publication's row filter on a column outside the replica identity
SET client_min_messages = error;
CREATE PUBLICATION fp_pub FOR TABLE storage_records WHERE (format IS NOT NULL);
RESET client_min_messages;
SELECT fp_run('publication row filter', 'regress_fp_app');
DROP PUBLICATION fp_pub;

-- a publication's column list that leaves out the replica identity (id)
SET client_min_messages = error;
CREATE PUBLICATION fp_pub FOR TABLE storage_records (version, data);
RESET client_min_messages;
SELECT fp_run('publication column list', 'regress_fp_app');
DROP PUBLICATION fp_pub;

-- rules: DO INSTEAD NOTHING keeps records from being deleted
CREATE RULE fp_keep AS ON DELETE TO storage_records DO INSTEAD NOTHING;
SELECT * FROM storage_write_path;
SELECT fp_run('rule: instead nothing', 'regress_fp_app');
DROP RULE fp_keep ON storage_records;

-- rules: DO ALSO audit rules see every update and delete
CREATE RULE fp_audit_update AS ON UPDATE TO storage_records
  DO ALSO INSERT INTO fp_audit VALUES ('update', new.id);
CREATE RULE fp_audit_delete AS ON DELETE TO storage_records
  DO ALSO INSERT INTO fp_audit VALUES ('delete', old.id);
GRANT INSERT ON fp_audit TO regress_fp_app;
SELECT fp_run('rule: also audit', 'regress_fp_app');
DROP RULE fp_audit_update ON storage_records;
DROP RULE fp_audit_delete ON storage_records;

-- inheritance: statements on the table also read and write its children
CREATE TABLE fp_child () INHERITS (storage_records);
GRANT SELECT, INSERT, UPDATE, DELETE ON fp_child TO regress_fp_app;
INSERT INTO fp_child (id, version, expires_at, data) VALUES
  ('c1', 1, NULL, 'c1'), ('cold', 1, '2030-01-01 11:00+00', 'co'), ('cb/k', 1, NULL, 'ck');
SELECT * FROM storage_write_path;
SELECT fp_run('inheritance child', 'regress_fp_app');
DROP TABLE fp_child;

-- the table as a partition: its partition constraint holds for every write
DELETE FROM storage_records;
CREATE TABLE fp_parts (LIKE storage_records INCLUDING GENERATED) PARTITION BY RANGE (id);
ALTER TABLE fp_parts ATTACH PARTITION storage_records FOR VALUES FROM (MINVALUE) TO ('p');
SELECT fp_load();
SELECT * FROM storage_write_path;
SELECT fp_run('partition', 'regress_fp_app');
ALTER TABLE fp_parts DETACH PARTITION storage_records;
DROP TABLE fp_parts;

-- every scenario's outcomes (direct writes on)
SELECT scenario, n, outcome, state
  FROM fp_results WHERE mode = 'direct' ORDER BY scenario, n;

-- with direct writes off every outcome is the same: no rows
SELECT s.scenario, s.n, s.step, s.outcome, s.state, d.outcome AS direct, d.state AS direct_state
  FROM fp_results s JOIN fp_results d USING (scenario, n)
 WHERE s.mode = 'statement' AND d.mode = 'direct'
   AND (s.outcome IS DISTINCT FROM d.outcome OR s.state IS DISTINCT FROM d.state)
 ORDER BY s.scenario, s.n;

-- the view: what it is, who may read it
SELECT has_table_privilege('public', 'storage_write_path', 'SELECT') AS public_reads,
       has_table_privilege('pg_monitor', 'storage_write_path', 'SELECT') AS monitor_reads;
SELECT obj_description('storage_write_path'::regclass) IS NOT NULL AS commented;

DELETE FROM storage_records;
DROP FUNCTION fp_run(text, text);
DROP FUNCTION fp_state();
DROP FUNCTION fp_load();
DROP TABLE fp_results;
DROP TABLE fp_audit;
REVOKE ALL ON storage_records FROM regress_fp_app;
REVOKE ALL ON storage_write_path FROM regress_fp_app;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA public FROM regress_fp_app;
DROP ROLE regress_fp_app;
