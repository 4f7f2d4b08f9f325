\set id random(1, 1000000000000000)
SELECT storage_save('tmp:' || :client_id || ':' || :id, :payload, -1, now() + interval '5 seconds');
