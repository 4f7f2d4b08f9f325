\set id random(1, :sessions)
SELECT storage_delete('sess:' || :id);
