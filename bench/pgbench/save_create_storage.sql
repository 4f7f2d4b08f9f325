\set id random(1, 1000000000000000)
SELECT storage_save('new:' || :client_id || ':' || :id, :payload, 0);
