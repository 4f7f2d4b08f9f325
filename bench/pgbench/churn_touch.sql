\set id random(1, :sessions)
SELECT storage_touch('sess:' || :id, now() + interval '30 minutes');
