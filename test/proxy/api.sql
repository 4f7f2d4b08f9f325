-- test/proxy/api.sql: every function of the storage API, run once against
-- one server and once through the storage_proxy extension over four
-- partitions (test/t/050_proxy.pl); the two outputs must be identical.
-- Errors print their SQLSTATE only: through PL/Proxy the message carries
-- the partition's name.  Multi-partition refusals are tested separately.
\set VERBOSITY sqlstate
\set ON_ERROR_STOP 0
SET client_min_messages = warning;

-- saves, each expect mode
SELECT storage_save('alpha', '\x01');
SELECT storage_save('alpha', '\x02', 1);
SELECT storage_save('alpha', '\x03', 1);
SELECT storage_save('alpha', '\x03', 0);
SELECT storage_save('beta', '\xbeef', 0, '2100-01-01 00:00:00+00', 'json');
SELECT storage_save('gamma', NULL, -1, 'infinity', NULL);
SELECT storage_save('old', '\x00', -1, '2000-01-01 00:00:00+00');
SELECT storage_save('old', '\x01', 0);
SELECT storage_save('gone', '\x00', -1, '2000-01-01 00:00:00+00');
SELECT storage_save('gone', '\x01', 1);
SELECT storage_save(repeat('x', 255), '\x01');
SELECT storage_save(repeat('x', 256), '\x01');
SELECT storage_save('', '\x01');
SELECT storage_save(NULL, '\x01');
SELECT storage_save('big', convert_to(repeat('payload', 30000), 'UTF8'));

-- fetch and list
SELECT id, version, expires_at, format, data FROM storage_fetch('alpha');
SELECT id, version, expires_at, format, data FROM storage_fetch('beta');
SELECT id, version, expires_at, format, data FROM storage_fetch('gamma');
SELECT count(*) FROM storage_fetch('gone');
SELECT count(*) FROM storage_fetch('missing');
SELECT * FROM storage_fetch(NULL);
SELECT id, version, length(data) FROM storage_fetch('big');
SELECT id, version, format FROM storage_list('') ORDER BY id;
SELECT id FROM storage_list('al');
SELECT id FROM storage_list('');
SELECT id FROM storage_list(NULL);

-- batches
SELECT id, version FROM storage_fetch_many('{alpha,beta,gone,missing,alpha}') ORDER BY id;
SELECT * FROM storage_fetch_many('{}');
SELECT * FROM storage_fetch_many(NULL);
SELECT * FROM storage_fetch_many('{alpha,NULL}');
SELECT storage_save_many('{"{s}1","{s}2","{s}3"}', '{"\\x01","\\x02","\\x03"}');
SELECT storage_save_many('{"{s}1","{s}2"}', '{"\\x11","\\x12"}', '{1,1}');
SELECT storage_save_many('{"{s}1","{s}2"}', '{"\\x11","\\x12"}', '{2,1}');
SELECT storage_save_many('{"{s}1"}', '{"\\x11","\\x12"}');
SELECT storage_save_many('{}', '{}');
SELECT storage_save_many(NULL, '{}');
SELECT id, version, data FROM storage_list('{s}') ORDER BY id;
SELECT storage_delete_many('{"{s}1",alpha,missing,gone}');
SELECT storage_delete_many('{}');
SELECT storage_delete_many(NULL);

-- delete and touch
SELECT storage_delete('beta');
SELECT storage_delete('beta');
SELECT storage_delete('');
SELECT storage_save('t', '\x01');
SELECT storage_touch('t', '2100-01-01 00:00:00+00');
SELECT storage_touch('t', '2100-01-02 00:00:00+00', 2);
SELECT storage_touch('t', '2100-01-03 00:00:00+00', 1);
SELECT storage_touch('missing', '2100-01-01 00:00:00+00');
SELECT id, version, expires_at FROM storage_fetch('t');

-- buckets: a bucket with a hash tag lives on one partition
SELECT storage_create_val('{"{u}",cart}', 'k1', '\x01');
SELECT storage_create_val('{"{u}",cart}', 'k1', '\x02');
SELECT storage_upsert_val('{"{u}",cart}', 'k2', '\x02', '1 hour');
SELECT storage_compare_and_swap_val('{"{u}",cart}', 'k1', '\x03', '\x01');
SELECT storage_compare_and_swap_val('{"{u}",cart}', 'k1', '\x04', '\x01');
SELECT storage_get_val('{"{u}",cart}', 'k1');
SELECT storage_get_val('{"{u}",cart}', 'nope');
SELECT storage_get_val('{"{u}"}', 'cart');
SELECT storage_upsert_items('{"{u}",cart}', '{k3,k4}', '{"\\x03","\\x04"}');
SELECT storage_upsert_items('{"{u}",cart}', '{k3,k3}', '{"\\x03","\\x04"}');
SELECT * FROM storage_get_keys('{"{u}"}');
SELECT * FROM storage_get_keys('{"{u}",cart}');
SELECT key, val, expires_at IS NOT NULL AS expires FROM storage_get_items('{"{u}",cart}');
SELECT storage_delete_key('{"{u}",cart}', 'k4');
SELECT storage_delete_key('{"{u}",cart}', 'k4');
SELECT storage_delete_bucket('{"{u}"}', 'cart');
SELECT storage_delete_bucket('{"{u}"}', 'cart');
SELECT storage_get_val('{a/b}', 'k');
SELECT storage_create_val('{.x}', 'k', '\x01');
-- an untagged bucket spreads its keys; reads merge all partitions
SELECT storage_upsert_val(('{plain,sub' || (g % 3) || '}')::text[], 'k' || g, '\x01')
  FROM generate_series(1, 12) AS g;
SELECT * FROM storage_get_keys('{plain}');
SELECT * FROM storage_get_keys('{plain,sub1}');
SELECT key, val FROM storage_get_items('{plain,sub2}');
SELECT * FROM storage_get_keys('{}');
SELECT * FROM storage_get_keys(NULL);

-- locks (fencing tokens come from one sequence per partition: printed as
-- comparisons only)
SELECT storage_acquire_lock('job', '1 hour') > 0 AS fenced;
SELECT storage_release_lock('job');
SELECT storage_release_lock('job');
SELECT storage_acquire_lock('job', '-1 hour');
SELECT storage_acquire_lock(NULL, '1 hour');
CREATE TEMP TABLE fence AS SELECT storage_acquire_lock('job2', '1 hour') AS f;
SELECT storage_extend_lock('job2', (SELECT f FROM fence), '2 hours');
SELECT storage_extend_lock('job2', (SELECT f FROM fence) + 1, '2 hours');
SELECT storage_release_lock('job2', (SELECT f FROM fence) + 1);
SELECT storage_release_lock('job2', (SELECT f FROM fence));
SELECT storage_acquire_lock('job2', '1 hour') > (SELECT f FROM fence) AS increasing;

-- purge
SELECT storage_purge_expired();
SELECT storage_purge_expired(-1);
SELECT count(*) FROM storage_list('');
