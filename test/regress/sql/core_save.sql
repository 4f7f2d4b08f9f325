--
-- storage_save: every rule of the save contract and every bad input.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';
SELECT storage_now();

-- expect_version = 0 creates; version starts at 1
SELECT storage_save('s1', '\x01', 0);
-- a second create conflicts and names the live version
SELECT storage_save('s1', '\x02', 0);
-- expect_version > 0 needs exactly that live version
SELECT storage_save('s1', '\x02', 1);
SELECT storage_save('s1', '\x03', 1);      -- stale: conflict
SELECT storage_save('s1', '\x03', 7);      -- ahead: conflict
SELECT storage_save('nope', '\x03', 1);    -- missing: conflict
SELECT version, data FROM storage_fetch('s1');

-- the conflict's SQLSTATE is SV001
DO $$
BEGIN
  PERFORM storage_save('s1', '\x09', 1);
EXCEPTION WHEN SQLSTATE 'SV001' THEN
  RAISE NOTICE 'caught %', SQLSTATE;
END $$;

-- expect_version < 0: no check, full replace (data, format, expires_at)
SELECT storage_save('s1', '\x04', -1, '2031-01-01', 'json');
SELECT * FROM storage_fetch('s1');
SELECT storage_save('s1', '\x05');         -- defaults: -1, never expires, NULL format
SELECT * FROM storage_fetch('s1');
SELECT storage_save('s2', 'x', -5);        -- any negative is unversioned; creates at 1

-- NULL data and NULL format are stored and returned as NULL
SELECT storage_save('nulls', NULL, -1, NULL, NULL);
SELECT id, version, data IS NULL AS data_null, format IS NULL AS format_null
  FROM storage_fetch('nulls');

-- expiry: expired records count as absent for every rule
SELECT storage_save('e1', 'old', 0, '2030-01-01 11:00:00+00');  -- already expired
SELECT count(*) FROM storage_fetch('e1');
SELECT storage_save('e1', 'old', 1);       -- expired counts as absent: conflict
SELECT storage_save('e1', 'new', 0);       -- replaced by a create, version restarts
SELECT version, data FROM storage_fetch('e1');
SELECT storage_save('e2', 'a', -1, '2030-01-01 11:00:00+00');
SELECT storage_save('e2', 'b', -1, '2030-01-01 11:00:00+00');  -- previous not live: 1 again
SELECT storage_save('e3', 'a', -1, '2030-01-01 12:00:00+00');  -- expires_at = now is expired
SELECT count(*) FROM storage_fetch('e3');
SELECT storage_save('e4', 'a', -1, '2030-01-01 12:00:00.000001+00');
SELECT count(*) FROM storage_fetch('e4');
-- 'infinity' means never
SELECT storage_save('inf', 'a', -1, 'infinity');
SET storage.test_now = '294000-01-01 00:00:00+00';
SELECT id, expires_at FROM storage_fetch('inf');
SELECT count(*) FROM storage_fetch('e4');
SET storage.test_now = '2030-01-01 12:00:00+00';

-- a record saved with an expiry becomes invisible when the clock passes it
SELECT storage_save('ttl', 'a', -1, '2030-01-01 12:00:10+00');
SELECT count(*) FROM storage_fetch('ttl');
SET storage.test_now = '2030-01-01 12:00:10+00';
SELECT count(*) FROM storage_fetch('ttl');
SET storage.test_now = '2030-01-01 12:00:00+00';

-- bad input: clear errors, nothing changed
SELECT storage_save(NULL, 'x');
SELECT storage_save('s1', 'x', NULL);
SELECT storage_save('', 'x');
SELECT storage_save(repeat('a', 256), 'x');
SELECT storage_save(repeat('é', 128), 'x');      -- 128 characters, 256 bytes
SELECT storage_save(repeat('é', 127) || 'a', 'x'); -- 255 bytes: accepted
SELECT length(id), octet_length(id) FROM storage_fetch(repeat('é', 127) || 'a');
SELECT storage_save(repeat('a', 255), 'x');
SELECT storage_save('s1', 'x', 9223372036854775807);
-- a stored version at the maximum cannot be bumped
SELECT storage_save('max', 'x', -1);
UPDATE storage_records SET version = 9223372036854775807 WHERE id = 'max';
SELECT storage_save('max', 'y', -1);
SELECT version, data FROM storage_fetch('max');
SELECT * FROM storage_fetch('s1');

-- the error codes, as an application sees them
CREATE FUNCTION sqlstate_of(q text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE q;
  RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
  RETURN SQLSTATE;
END $$;
SELECT q, sqlstate_of(q) FROM (VALUES
  ('SELECT storage_save(NULL, ''x'')'),
  ('SELECT storage_save(''a'', ''x'', NULL)'),
  ('SELECT storage_save('''', ''x'')'),
  ('SELECT storage_save(repeat(''a'', 256), ''x'')'),
  ('SELECT storage_save(''s1'', ''x'', 9223372036854775807)'),
  ('SELECT storage_save(''max'', ''x'')'),
  ('SELECT storage_save(''s1'', ''x'', 0)')
) AS t(q);
DROP FUNCTION sqlstate_of(text);

-- a failed save inside a transaction leaves earlier work of that
-- transaction intact only up to the error, like any statement
BEGIN;
SELECT storage_save('tx', 'a', 0);
SAVEPOINT s;
SELECT storage_save('tx', 'b', 0);
ROLLBACK TO SAVEPOINT s;
SELECT storage_save('tx', 'b', 1);
COMMIT;
SELECT version, data FROM storage_fetch('tx');

-- named arguments, as client code calls it
SELECT storage_save(id => 'named', data => 'x', expires_at => '2031-01-01', format => 'raw');
SELECT id, version, expires_at, format FROM storage_fetch(id => 'named');

SELECT left(id, 12) AS id, version, expires_at, format, data
  FROM storage_records ORDER BY id;
