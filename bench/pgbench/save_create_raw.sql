\set id random(1, 1000000000000000)
INSERT INTO raw_records AS r (id, version, expires_at, format, data)
VALUES ('new:' || :client_id || ':' || :id, 1, NULL, NULL, :payload)
ON CONFLICT (id) DO UPDATE SET
  version = 1, expires_at = excluded.expires_at, format = excluded.format, data = excluded.data
WHERE NOT (r.expires_at IS NULL OR r.expires_at > clock_timestamp())
RETURNING version;
