\set id random(1, :records)
SELECT id, version, expires_at, format, data FROM raw_records
 WHERE id = 'user:' || :id AND (expires_at IS NULL OR expires_at > clock_timestamp());
