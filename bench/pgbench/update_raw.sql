\set id random(1, :records)
UPDATE raw_records SET data = :payload WHERE id = 'user:' || :id;
