\set id random(1, :records)
SELECT * FROM storage_fetch('user:' || :id);
