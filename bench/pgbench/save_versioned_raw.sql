\set id :client_id * (:records / :clients) + random(1, :records / :clients)
SELECT version AS v FROM raw_records
 WHERE id = 'user:' || :id AND (expires_at IS NULL OR expires_at > clock_timestamp()) \gset
UPDATE raw_records SET version = version + 1, expires_at = NULL, format = NULL, data = :payload
 WHERE id = 'user:' || :id AND version = :v
   AND (expires_at IS NULL OR expires_at > clock_timestamp())
RETURNING version;
