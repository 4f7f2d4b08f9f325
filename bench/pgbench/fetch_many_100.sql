\set base random(0, :records / 100 - 1) * 100
-- The ids reach storage_fetch_many as an array value, as the client library
-- binds them.  Written as its argument, ARRAY(SELECT ...) would keep the
-- planner from inlining the function (an argument with a subquery), and
-- its body would be parsed and planned on every call.
SELECT f.* FROM (SELECT ARRAY(SELECT 'user:' || (:base + g) FROM generate_series(1, 100) AS g) AS ids) AS a,
       LATERAL storage_fetch_many(a.ids) AS f;
