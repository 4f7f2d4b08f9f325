\set id random(1, :records)
SELECT * FROM plpgsql_fetch('user:' || :id);
