\set id :client_id * (:records / :clients) + random(1, :records / :clients)
SELECT version AS v FROM storage_fetch('user:' || :id) \gset
SELECT storage_save('user:' || :id, :payload, :v);
