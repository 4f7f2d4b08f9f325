\set id random(1, :records)
SELECT storage_save('user:' || :id, :payload, -1, now() + interval '1 hour');
