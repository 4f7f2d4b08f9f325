\set id random(1, :sessions)
SELECT storage_save('sess:' || :id, :payload, -1, now() + interval '30 minutes');
