/* storage_proxy--1.1.sql: install script of the storage_proxy extension */

\echo Use "CREATE EXTENSION storage_proxy" to load this file. \quit

--
-- The proxy side of a partitioned record store: the functions of the
-- storage extension, with the same signatures and SQLSTATEs, each sending
-- its call to the partition that holds the id (PL/Proxy, cluster
-- "storage": CREATE SERVER storage FOREIGN DATA WRAPPER plproxy ...).
-- Every partition is an ordinary database with the storage extension in
-- a schema of the same name as this extension's.  See the README,
-- "Scale-out with PL/Proxy".
--
-- Operations that must be atomic run on one partition or are refused
-- (0A000): PL/Proxy commits each remote call on its own, so nothing that
-- spans partitions can be all or nothing.
--

--
-- Routing (routing.c): the partition of an id is
-- storage_proxy_hash(id) & (partitions - 1).
--
CREATE FUNCTION @extschema@.storage_proxy_hash(id text)
RETURNS integer
AS 'MODULE_PATHNAME', 'storage_proxy_hash'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_proxy_hash(text) IS
    'partition hash of an id: CRC-32C of its hash tag {...} if it has one, else of the whole id; NULL gives 0';

CREATE FUNCTION @extschema@.storage_proxy_bucket_hash(bucket text[], key text)
RETURNS integer
AS 'MODULE_PATHNAME', 'storage_proxy_bucket_hash'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_proxy_bucket_hash(text[], text) IS
    'partition hash of the id bucket/key, the same as storage_proxy_hash of that id';

CREATE FUNCTION @extschema@.storage_proxy_bucket_tag_hash(bucket text[])
RETURNS integer
AS 'MODULE_PATHNAME', 'storage_proxy_bucket_tag_hash'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_proxy_bucket_tag_hash(text[]) IS
    'the partition hash shared by every id below the bucket, or NULL when the bucket path has no complete hash tag of its own';

CREATE FUNCTION @extschema@.storage_proxy_partitions()
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.count(*)::integer
      FROM pg_catalog.pg_foreign_server s,
           pg_catalog.pg_options_to_table(s.srvoptions) o
     WHERE s.srvname OPERATOR(pg_catalog.=) 'storage'
       AND o.option_name OPERATOR(pg_catalog.~) '^p[0-9]+$'
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_partitions() IS
    'the number of partitions of the cluster "storage" (options p0, p1, ... of its foreign server)';

CREATE FUNCTION @extschema@.storage_proxy_partition(hash integer)
RETURNS integer
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT $1 OPERATOR(pg_catalog.&)
           (@extschema@.storage_proxy_partitions() OPERATOR(pg_catalog.-) 1)
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_partition(integer) IS
    'the partition number PL/Proxy sends a call with this hash to';

--
-- Single-record calls: to the id's partition.
--
CREATE FUNCTION @extschema@.storage_save(
    id text,
    data bytea,
    expect_version bigint DEFAULT -1,
    expires_at timestamptz DEFAULT NULL,
    format text DEFAULT NULL)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_hash(id);
$$;
COMMENT ON FUNCTION @extschema@.storage_save(text, bytea, bigint, timestamptz, text) IS
    'storage_save on the id''s partition';

CREATE FUNCTION @extschema@.storage_fetch(id text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_hash(id);
$$;
COMMENT ON FUNCTION @extschema@.storage_fetch(text) IS
    'storage_fetch on the id''s partition';

CREATE FUNCTION @extschema@.storage_delete(id text)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_hash(id);
$$;
COMMENT ON FUNCTION @extschema@.storage_delete(text) IS
    'storage_delete on the id''s partition';

CREATE FUNCTION @extschema@.storage_touch(id text, expires_at timestamptz,
                                          expect_version bigint DEFAULT -1)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_hash(id);
$$;
COMMENT ON FUNCTION @extschema@.storage_touch(text, timestamptz, bigint) IS
    'storage_touch on the id''s partition';

--
-- Calls over many ids.
--
CREATE FUNCTION @extschema@.storage_proxy_fetch_many_split(ids text[])
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    SPLIT ids;
    RUN ON @extschema@.storage_proxy_hash(ids);
    TARGET @extschema@.storage_fetch_many;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_fetch_many_split(text[]) IS
    'storage_fetch_many on each partition with its own ids, in parallel (internal)';

-- Calls that PL/Proxy would send nowhere (a NULL array) go to partition 0,
-- which refuses them as one server would.
CREATE FUNCTION @extschema@.storage_proxy_fetch_many_on(hash integer, ids text[])
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT f.id, f.version, f.expires_at, f.format, f.data
      FROM @extschema@.storage_fetch_many(ids) AS f;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_fetch_many_on(integer, text[]) IS
    'storage_fetch_many on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_fetch_many(ids text[])
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT f.* FROM @extschema@.storage_proxy_fetch_many_split($1) AS f WHERE $1 IS NOT NULL
    UNION ALL
    SELECT f.* FROM @extschema@.storage_proxy_fetch_many_on(0, $1) AS f WHERE $1 IS NULL
$$;
COMMENT ON FUNCTION @extschema@.storage_fetch_many(text[]) IS
    'storage_fetch_many: each partition is sent its own ids, all in parallel';

CREATE FUNCTION @extschema@.storage_proxy_delete_many_split(ids text[])
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    SPLIT ids;
    RUN ON @extschema@.storage_proxy_hash(ids);
    TARGET @extschema@.storage_delete_many;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_delete_many_split(text[]) IS
    'storage_delete_many on each partition with its own ids: one count per partition (internal)';

CREATE FUNCTION @extschema@.storage_proxy_delete_many_on(hash integer, ids text[])
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT @extschema@.storage_delete_many(ids);
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_delete_many_on(integer, text[]) IS
    'storage_delete_many on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_delete_many(ids text[])
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN $1 IS NULL
                THEN @extschema@.storage_proxy_delete_many_on(0, $1)
                ELSE (SELECT coalesce(pg_catalog.sum(n), 0)::bigint
                        FROM @extschema@.storage_proxy_delete_many_split($1) AS n)
           END
$$;
COMMENT ON FUNCTION @extschema@.storage_delete_many(text[]) IS
    'storage_delete_many: each partition deletes its own ids; atomic per partition, not across partitions';

-- All the ids of an atomic call must live on one partition: returns its
-- hash, or raises 0A000.  NULL ids are left to the partition to refuse.
CREATE FUNCTION @extschema@.storage_proxy_one_partition(hashes integer[], what text)
RETURNS integer
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    parts integer;
BEGIN
    SELECT pg_catalog.count(DISTINCT @extschema@.storage_proxy_partition(h))
      INTO parts
      FROM pg_catalog.unnest(hashes) AS h;
    IF parts OPERATOR(pg_catalog.>) 1 THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = pg_catalog.format('%s spans %s partitions', what, parts),
            DETAIL = 'A call that must be all or nothing can run on one partition only.',
            HINT = 'Give the ids a common hash tag, e.g. "{user42}/cart", to keep them on one partition.';
    END IF;
    RETURN coalesce(hashes[pg_catalog.array_lower(hashes, 1)], 0);
END
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_one_partition(integer[], text) IS
    'the hash of the one partition all these hashes map to; 0A000 if they span several (internal)';

CREATE FUNCTION @extschema@.storage_proxy_save_many_on(
    hash integer,
    ids text[],
    datas bytea[],
    expect_versions bigint[],
    expires_ats timestamptz[],
    formats text[])
RETURNS bigint[]
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT @extschema@.storage_save_many(ids, datas, expect_versions, expires_ats, formats);
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_save_many_on(integer, text[], bytea[], bigint[], timestamptz[], text[]) IS
    'storage_save_many on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_save_many(
    ids text[],
    datas bytea[],
    expect_versions bigint[] DEFAULT NULL,
    expires_ats timestamptz[] DEFAULT NULL,
    formats text[] DEFAULT NULL)
RETURNS bigint[]
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.storage_proxy_save_many_on(
               @extschema@.storage_proxy_one_partition(
                   ARRAY(SELECT @extschema@.storage_proxy_hash(i)
                           FROM pg_catalog.unnest($1) AS i
                          WHERE i IS NOT NULL),
                   'storage_save_many'),
               $1, $2, $3, $4, $5)
$$;
COMMENT ON FUNCTION @extschema@.storage_save_many(text[], bytea[], bigint[], timestamptz[], text[]) IS
    'storage_save_many, all or nothing, when every id lives on one partition; 0A000 otherwise';

CREATE FUNCTION @extschema@.storage_proxy_list_all(prefix text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON ALL;
    TARGET @extschema@.storage_list;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_list_all(text) IS
    'storage_list on every partition, unordered (internal)';

CREATE FUNCTION @extschema@.storage_list(prefix text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.id, l.version, l.expires_at, l.format, l.data
      FROM @extschema@.storage_proxy_list_all($1) AS l
     ORDER BY l.id COLLATE "C"
$$;
COMMENT ON FUNCTION @extschema@.storage_list(text) IS
    'storage_list over all partitions, merged in bytewise id order';

CREATE FUNCTION @extschema@.storage_proxy_purge_all(max_rows bigint)
RETURNS SETOF bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON ALL;
    TARGET @extschema@.storage_purge_expired;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_purge_all(bigint) IS
    'storage_purge_expired on every partition (internal)';

CREATE FUNCTION @extschema@.storage_purge_expired(max_rows bigint DEFAULT NULL)
RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(pg_catalog.sum(n), 0)::bigint
      FROM @extschema@.storage_proxy_purge_all($1) AS n
$$;
COMMENT ON FUNCTION @extschema@.storage_purge_expired(bigint) IS
    'storage_purge_expired on every partition in parallel, each purging at most max_rows; the total';

--
-- Buckets and keys: the id bucket/key routes like any id.  A bucket whose
-- path has a hash tag lives on one partition; other buckets spread their
-- keys over all of them.
--
CREATE FUNCTION @extschema@.storage_create_val(bucket text[], key text, val bytea,
                                               ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_bucket_hash(bucket, key);
$$;
COMMENT ON FUNCTION @extschema@.storage_create_val(text[], text, bytea, interval) IS
    'storage_create_val on the partition of bucket/key';

CREATE FUNCTION @extschema@.storage_upsert_val(bucket text[], key text, val bytea,
                                               ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_bucket_hash(bucket, key);
$$;
COMMENT ON FUNCTION @extschema@.storage_upsert_val(text[], text, bytea, interval) IS
    'storage_upsert_val on the partition of bucket/key';

CREATE FUNCTION @extschema@.storage_compare_and_swap_val(bucket text[], key text, val bytea,
                                                         prev_val bytea, ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_bucket_hash(bucket, key);
$$;
COMMENT ON FUNCTION @extschema@.storage_compare_and_swap_val(text[], text, bytea, bytea, interval) IS
    'storage_compare_and_swap_val on the partition of bucket/key';

CREATE FUNCTION @extschema@.storage_get_val(bucket text[], key text)
RETURNS bytea
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_bucket_hash(bucket, key);
$$;
COMMENT ON FUNCTION @extschema@.storage_get_val(text[], text) IS
    'storage_get_val on the partition of bucket/key';

CREATE FUNCTION @extschema@.storage_delete_key(bucket text[], key text)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_bucket_hash(bucket, key);
$$;
COMMENT ON FUNCTION @extschema@.storage_delete_key(text[], text) IS
    'storage_delete_key on the partition of bucket/key';

CREATE FUNCTION @extschema@.storage_proxy_get_keys_on(hash integer, bucket text[])
RETURNS SETOF text
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT @extschema@.storage_get_keys(bucket);
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_get_keys_on(integer, text[]) IS
    'storage_get_keys on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_proxy_get_keys_all(bucket text[])
RETURNS SETOF text
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON ALL;
    SELECT @extschema@.storage_get_keys(bucket);
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_get_keys_all(text[]) IS
    'storage_get_keys on every partition (internal)';

CREATE FUNCTION @extschema@.storage_get_keys(bucket text[])
RETURNS SETOF text
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hash integer := @extschema@.storage_proxy_bucket_tag_hash(bucket);
BEGIN
    IF hash IS NOT NULL THEN
        RETURN QUERY SELECT k FROM @extschema@.storage_proxy_get_keys_on(hash, bucket) AS k;
    ELSE
        -- a sub-bucket can hold live records on several partitions
        RETURN QUERY SELECT DISTINCT k COLLATE "C"
                       FROM @extschema@.storage_proxy_get_keys_all(bucket) AS k
                      ORDER BY 1;
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.storage_get_keys(text[]) IS
    'storage_get_keys: on the bucket''s partition if its path has a hash tag, else merged from all partitions';

CREATE FUNCTION @extschema@.storage_proxy_get_items_on(hash integer, bucket text[])
RETURNS TABLE(key text, val bytea, expires_at timestamptz)
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT i.key, i.val, i.expires_at FROM @extschema@.storage_get_items(bucket) AS i;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_get_items_on(integer, text[]) IS
    'storage_get_items on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_proxy_get_items_all(bucket text[])
RETURNS TABLE(key text, val bytea, expires_at timestamptz)
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON ALL;
    SELECT i.key, i.val, i.expires_at FROM @extschema@.storage_get_items(bucket) AS i;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_get_items_all(text[]) IS
    'storage_get_items on every partition (internal)';

CREATE FUNCTION @extschema@.storage_get_items(bucket text[])
RETURNS TABLE(key text, val bytea, expires_at timestamptz)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hash integer := @extschema@.storage_proxy_bucket_tag_hash(bucket);
BEGIN
    IF hash IS NOT NULL THEN
        RETURN QUERY SELECT i.key, i.val, i.expires_at
                       FROM @extschema@.storage_proxy_get_items_on(hash, bucket) AS i;
    ELSE
        RETURN QUERY SELECT i.key, i.val, i.expires_at
                       FROM @extschema@.storage_proxy_get_items_all(bucket) AS i
                      ORDER BY i.key COLLATE "C";
    END IF;
END
$$;
COMMENT ON FUNCTION @extschema@.storage_get_items(text[]) IS
    'storage_get_items: on the bucket''s partition if its path has a hash tag, else merged from all partitions';

CREATE FUNCTION @extschema@.storage_proxy_upsert_items_on(hash integer, bucket text[], keys text[],
                                                          vals bytea[], ttl interval)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT @extschema@.storage_upsert_items(bucket, keys, vals, ttl);
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_upsert_items_on(integer, text[], text[], bytea[], interval) IS
    'storage_upsert_items on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_upsert_items(bucket text[], keys text[], vals bytea[],
                                                 ttl interval DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.storage_proxy_upsert_items_on(
               coalesce(
                   @extschema@.storage_proxy_bucket_tag_hash($1),
                   @extschema@.storage_proxy_one_partition(
                       ARRAY(SELECT @extschema@.storage_proxy_bucket_hash($1, k)
                               FROM pg_catalog.unnest($2) AS k
                              WHERE k IS NOT NULL),
                       'storage_upsert_items')),
               $1, $2, $3, $4)
$$;
COMMENT ON FUNCTION @extschema@.storage_upsert_items(text[], text[], bytea[], interval) IS
    'storage_upsert_items, all or nothing, when the keys live on one partition (a tagged bucket); 0A000 otherwise';

CREATE FUNCTION @extschema@.storage_proxy_delete_bucket_on(hash integer, parent text[], bucket text)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON hash;
    SELECT @extschema@.storage_delete_bucket(parent, bucket);
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_delete_bucket_on(integer, text[], text) IS
    'storage_delete_bucket on the partition of hash (internal)';

CREATE FUNCTION @extschema@.storage_delete_bucket(parent text[], bucket text)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hash integer := @extschema@.storage_proxy_bucket_tag_hash(
                        pg_catalog.array_append(parent, bucket));
BEGIN
    -- an unknown partition cannot be worse than a wrong one: let the
    -- partition of hash 0 raise what one server would for NULL input
    IF parent IS NULL OR bucket IS NULL THEN
        hash := 0;
    END IF;
    IF hash IS NULL THEN
        RAISE EXCEPTION USING
            ERRCODE = 'feature_not_supported',
            MESSAGE = pg_catalog.format('bucket "%s" spans all partitions', bucket),
            DETAIL = 'Deleting a bucket is all or nothing, so it can run on one partition only: the bucket path needs a hash tag.',
            HINT = 'Name the bucket with a hash tag, e.g. {"{tenant42}"}, or delete its keys one by one.';
    END IF;
    RETURN @extschema@.storage_proxy_delete_bucket_on(hash, parent, bucket);
END
$$;
COMMENT ON FUNCTION @extschema@.storage_delete_bucket(text[], text) IS
    'storage_delete_bucket on the bucket''s partition; 0A000 for a bucket without a hash tag, which spans all partitions';

--
-- Locks: the lock on token t is the record ".locks/t" on its partition.
--
CREATE FUNCTION @extschema@.storage_proxy_lock_hash(token text)
RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT @extschema@.storage_proxy_hash('.locks/' OPERATOR(pg_catalog.||) $1)
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_lock_hash(text) IS
    'partition hash of the lock record of a token (internal)';

CREATE FUNCTION @extschema@.storage_acquire_lock(token text, ttl interval)
RETURNS bigint
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_lock_hash(token);
$$;
COMMENT ON FUNCTION @extschema@.storage_acquire_lock(text, interval) IS
    'storage_acquire_lock on the partition of the lock; returns its fencing token';

CREATE FUNCTION @extschema@.storage_release_lock(token text)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_lock_hash(token);
$$;
COMMENT ON FUNCTION @extschema@.storage_release_lock(text) IS
    'storage_release_lock on the partition of the lock (unsafe after expiry: prefer the fenced form)';

CREATE FUNCTION @extschema@.storage_release_lock(token text, fence bigint)
RETURNS void
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_lock_hash(token);
$$;
COMMENT ON FUNCTION @extschema@.storage_release_lock(text, bigint) IS
    'storage_release_lock with a fencing token on the partition of the lock';

CREATE FUNCTION @extschema@.storage_extend_lock(token text, fence bigint, ttl interval)
RETURNS boolean
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    RUN ON @extschema@.storage_proxy_lock_hash(token);
$$;
COMMENT ON FUNCTION @extschema@.storage_extend_lock(text, bigint, interval) IS
    'storage_extend_lock on the partition of the lock';

--
-- Administration: every partition, then the total.
--
CREATE FUNCTION @extschema@.storage_proxy_status_split(
    partitions integer[],
    exact boolean,
    OUT partition integer,
    OUT database name,
    OUT live_records bigint,
    OUT live_is_estimate boolean,
    OUT expired_records bigint,
    OUT worker_state text,
    OUT launcher_pid integer,
    OUT last_purge_start timestamptz,
    OUT last_purge_end timestamptz,
    OUT rows_purged_last bigint,
    OUT rows_purged_total bigint,
    OUT last_error text,
    OUT rows_skipped_last bigint,
    OUT rows_skipped_total bigint,
    OUT last_skip_reason text,
    OUT consecutive_failures integer,
    OUT backoff_until timestamptz,
    OUT log_lines_suppressed bigint)
RETURNS SETOF record
LANGUAGE plproxy
AS $$
    CLUSTER 'storage';
    SPLIT partitions;
    RUN ON partitions;
    SELECT (partitions)[1] AS partition, s.database, s.live_records, s.live_is_estimate,
           s.expired_records, s.worker_state, s.launcher_pid, s.last_purge_start,
           s.last_purge_end, s.rows_purged_last, s.rows_purged_total, s.last_error,
           s.rows_skipped_last, s.rows_skipped_total, s.last_skip_reason,
           s.consecutive_failures, s.backoff_until, s.log_lines_suppressed
      FROM @extschema@.storage_status(exact) AS s;
$$;
COMMENT ON FUNCTION @extschema@.storage_proxy_status_split(integer[], boolean) IS
    'storage_status of each listed partition, tagged with its number (internal)';

CREATE FUNCTION @extschema@.storage_status(
    exact boolean DEFAULT false,
    OUT partition integer,
    OUT database name,
    OUT live_records bigint,
    OUT live_is_estimate boolean,
    OUT expired_records bigint,
    OUT worker_state text,
    OUT launcher_pid integer,
    OUT last_purge_start timestamptz,
    OUT last_purge_end timestamptz,
    OUT rows_purged_last bigint,
    OUT rows_purged_total bigint,
    OUT last_error text,
    OUT rows_skipped_last bigint,
    OUT rows_skipped_total bigint,
    OUT last_skip_reason text,
    OUT consecutive_failures integer,
    OUT backoff_until timestamptz,
    OUT log_lines_suppressed bigint)
RETURNS SETOF record
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH p AS (
        SELECT s.*
          FROM @extschema@.storage_proxy_status_split(
                   ARRAY(SELECT pg_catalog.generate_series(0,
                             @extschema@.storage_proxy_partitions() OPERATOR(pg_catalog.-) 1)),
                   $1) AS s
    )
    SELECT * FROM (
        SELECT * FROM p
        UNION ALL
        SELECT NULL, 'total', pg_catalog.sum(p.live_records)::bigint, pg_catalog.bool_or(p.live_is_estimate),
               pg_catalog.sum(p.expired_records)::bigint, NULL, NULL,
               pg_catalog.min(p.last_purge_start), pg_catalog.max(p.last_purge_end),
               pg_catalog.sum(p.rows_purged_last)::bigint, pg_catalog.sum(p.rows_purged_total)::bigint,
               pg_catalog.string_agg(pg_catalog.format('partition %s: %s', p.partition, p.last_error), '; ')
                 FILTER (WHERE p.last_error OPERATOR(pg_catalog.<>) ''),
               pg_catalog.sum(p.rows_skipped_last)::bigint, pg_catalog.sum(p.rows_skipped_total)::bigint,
               pg_catalog.string_agg(pg_catalog.format('partition %s: %s', p.partition, p.last_skip_reason), '; ')
                 FILTER (WHERE p.last_skip_reason OPERATOR(pg_catalog.<>) ''),
               pg_catalog.max(p.consecutive_failures), pg_catalog.max(p.backoff_until),
               pg_catalog.sum(p.log_lines_suppressed)::bigint
          FROM p
    ) AS s
    ORDER BY s.partition NULLS LAST
$$;
COMMENT ON FUNCTION @extschema@.storage_status(boolean) IS
    'storage_status of every partition (partition = its number) and a total row (partition NULL)';

CREATE VIEW @extschema@.storage_status AS
    SELECT * FROM @extschema@.storage_status(false);
COMMENT ON VIEW @extschema@.storage_status IS
    'storage_status of every partition and their total';

--
-- Privileges: nothing for PUBLIC; the README has the GRANT recipe.  The
-- routing functions reveal nothing and stay public, so that applications
-- and tools can check where an id lives.
--
REVOKE ALL ON FUNCTION
    @extschema@.storage_save(text, bytea, bigint, timestamptz, text),
    @extschema@.storage_fetch(text),
    @extschema@.storage_delete(text),
    @extschema@.storage_touch(text, timestamptz, bigint),
    @extschema@.storage_proxy_fetch_many_split(text[]),
    @extschema@.storage_proxy_fetch_many_on(integer, text[]),
    @extschema@.storage_fetch_many(text[]),
    @extschema@.storage_proxy_delete_many_on(integer, text[]),
    @extschema@.storage_proxy_delete_many_split(text[]),
    @extschema@.storage_delete_many(text[]),
    @extschema@.storage_proxy_one_partition(integer[], text),
    @extschema@.storage_proxy_save_many_on(integer, text[], bytea[], bigint[], timestamptz[], text[]),
    @extschema@.storage_save_many(text[], bytea[], bigint[], timestamptz[], text[]),
    @extschema@.storage_proxy_list_all(text),
    @extschema@.storage_list(text),
    @extschema@.storage_proxy_purge_all(bigint),
    @extschema@.storage_purge_expired(bigint),
    @extschema@.storage_create_val(text[], text, bytea, interval),
    @extschema@.storage_upsert_val(text[], text, bytea, interval),
    @extschema@.storage_compare_and_swap_val(text[], text, bytea, bytea, interval),
    @extschema@.storage_get_val(text[], text),
    @extschema@.storage_delete_key(text[], text),
    @extschema@.storage_proxy_get_keys_on(integer, text[]),
    @extschema@.storage_proxy_get_keys_all(text[]),
    @extschema@.storage_get_keys(text[]),
    @extschema@.storage_proxy_get_items_on(integer, text[]),
    @extschema@.storage_proxy_get_items_all(text[]),
    @extschema@.storage_get_items(text[]),
    @extschema@.storage_proxy_upsert_items_on(integer, text[], text[], bytea[], interval),
    @extschema@.storage_upsert_items(text[], text[], bytea[], interval),
    @extschema@.storage_proxy_delete_bucket_on(integer, text[], text),
    @extschema@.storage_delete_bucket(text[], text),
    @extschema@.storage_acquire_lock(text, interval),
    @extschema@.storage_release_lock(text),
    @extschema@.storage_release_lock(text, bigint),
    @extschema@.storage_extend_lock(text, bigint, interval),
    @extschema@.storage_proxy_status_split(integer[], boolean),
    @extschema@.storage_status(boolean)
FROM PUBLIC;
REVOKE ALL ON @extschema@.storage_status FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.storage_proxy_status_split(integer[], boolean),
                          @extschema@.storage_status(boolean)
   TO pg_monitor;
GRANT SELECT ON @extschema@.storage_status TO pg_monitor;
