\set id :client_id * (:records / :clients) + random(1, :records / :clients)
SELECT version AS v FROM plpgsql_fetch('user:' || :id) \gset
SELECT plpgsql_save('user:' || :id, :payload, :v);
