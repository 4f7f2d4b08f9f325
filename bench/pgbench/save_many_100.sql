\set base random(0, :records / 100 - 1) * 100
SELECT storage_save_many(ARRAY(SELECT 'user:' || (:base + g) FROM generate_series(1, 100) AS g),
                         array_fill(:payload::bytea, ARRAY[100]));
