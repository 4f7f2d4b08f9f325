--
-- Batch operations: storage_fetch_many, storage_save_many, storage_delete_many.
--
SET timezone = 'UTC';
DELETE FROM storage_records;   -- each file starts from an empty store
SET storage.test_now = '2030-01-01 12:00:00+00';

-- unversioned by default; versions aligned with ids
SELECT storage_save_many(ARRAY['b', 'a', 'c'], ARRAY['\x0b', '\x0a', '\x0c']::bytea[]);
SELECT storage_save_many(ARRAY['b', 'a', 'c'], ARRAY['\x1b', '\x1a', '\x1c']::bytea[]);
SELECT id, version, data FROM storage_fetch_many(ARRAY['a', 'b', 'c', 'a', 'missing']) ORDER BY id;

-- every kind of save in one call
SELECT storage_save_many(
  ARRAY['a', 'b', 'new', 'c'],
  ARRAY['\x2a', '\x2b', '\x01', NULL]::bytea[],
  ARRAY[2, -1, 0, 2],
  ARRAY['2031-01-01', NULL, 'infinity', '2030-01-01 11:00:00+00']::timestamptz[],
  ARRAY['fa', NULL, 'fn', 'fc']);
SELECT * FROM storage_records ORDER BY id;

-- all or nothing: one conflict and nothing is written; the first conflicting
-- id in the caller's order is named
SELECT storage_save_many(ARRAY['a', 'z1', 'b', 'z2'], ARRAY['x', 'x', 'x', 'x']::bytea[],
                         ARRAY[3, 0, 99, 5]);
SELECT storage_save_many(ARRAY['z1', 'new'], ARRAY['x', 'x']::bytea[], ARRAY[0, 0]);
SELECT count(*) FROM storage_records WHERE id LIKE 'z%';
SELECT id, version FROM storage_records ORDER BY id;
-- an expired record counts as absent: create replaces it, versioned save conflicts
SELECT storage_save_many(ARRAY['c'], ARRAY['x']::bytea[], ARRAY[1]);
SELECT storage_save_many(ARRAY['c'], ARRAY['\x3c']::bytea[], ARRAY[0]);

-- empty arrays are a no-op
SELECT storage_save_many('{}', '{}');
SELECT count(*) FROM storage_fetch_many('{}');
SELECT storage_delete_many('{}');

-- bad input: clear errors, nothing written
SELECT storage_save_many(NULL, '{}');
SELECT storage_save_many('{}', NULL);
SELECT storage_save_many(ARRAY['x', 'y'], ARRAY['x']::bytea[]);
SELECT storage_save_many(ARRAY['x'], ARRAY['x']::bytea[], ARRAY[1, 2]);
SELECT storage_save_many(ARRAY['x'], ARRAY['x']::bytea[], NULL, ARRAY[now(), now()]);
SELECT storage_save_many(ARRAY['x'], ARRAY['x']::bytea[], NULL, NULL, ARRAY['a', 'b']);
SELECT storage_save_many(ARRAY['x', 'y', 'x'], ARRAY['x', 'y', 'z']::bytea[]);
SELECT storage_save_many(ARRAY['x', NULL], ARRAY['x', 'y']::bytea[]);
SELECT storage_save_many(ARRAY['x', ''], ARRAY['x', 'y']::bytea[]);
SELECT storage_save_many(ARRAY['x', repeat('y', 256)], ARRAY['x', 'y']::bytea[]);
SELECT storage_save_many(ARRAY['x'], ARRAY['x']::bytea[], ARRAY[NULL]::bigint[]);
SELECT storage_save_many(ARRAY['x'], ARRAY['x']::bytea[], ARRAY[9223372036854775807]);
SELECT storage_save_many(ARRAY[['x'], ['y']], ARRAY[['x'], ['y']]::bytea[]);
SELECT count(*) FROM storage_records WHERE id IN ('x', 'y');
SELECT * FROM storage_fetch_many(NULL);
SELECT * FROM storage_fetch_many(ARRAY['a', NULL]);
SELECT * FROM storage_fetch_many(ARRAY['a', '']);
SELECT storage_delete_many(NULL);
SELECT storage_delete_many(ARRAY['a', repeat('y', 256)]);
SELECT count(*) FROM storage_fetch('a');

-- delete_many counts live records only, and removes expired ones as well
SELECT storage_save('old', 'x', -1, '2030-01-01 11:00:00+00');
SELECT storage_delete_many(ARRAY['a', 'b', 'old', 'missing', 'a']);
SELECT id FROM storage_records ORDER BY id;

-- a batch of 100, written and read back
SELECT array_length(storage_save_many(array_agg('k' || i), array_agg('\x00'::bytea)), 1)
  FROM generate_series(1, 100) AS i;
SELECT count(*) FROM storage_fetch_many(ARRAY(SELECT 'k' || i FROM generate_series(1, 150) AS i));
SELECT storage_delete_many(ARRAY(SELECT 'k' || i FROM generate_series(1, 150) AS i));
