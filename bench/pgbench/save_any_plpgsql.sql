\set id random(1, :records)
SELECT plpgsql_save('user:' || :id, :payload);
