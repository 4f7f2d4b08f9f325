\set id random(1, :records)
INSERT INTO raw_records AS r (id, version, expires_at, format, data)
VALUES ('user:' || :id, 1, NULL, NULL, :payload)
ON CONFLICT (id) DO UPDATE SET
  version = CASE WHEN r.expires_at IS NULL OR r.expires_at > clock_timestamp()
                 THEN r.version + 1 ELSE 1 END,
  expires_at = excluded.expires_at, format = excluded.format, data = excluded.data
RETURNING version;
