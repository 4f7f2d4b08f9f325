/* storage--1.0.sql: install script of the storage extension */

\echo Use "CREATE EXTENSION storage" to load this file. \quit

--
-- The expiry slot of a record: the column the purge index is built on (see
-- README "Expiry, the purge index and HOT updates").  Defined before the
-- table because the table's generated column calls it.
--
CREATE FUNCTION @extschema@.storage_expiry_slot(expires_at timestamptz)
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'storage_expiry_slot'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_expiry_slot(timestamptz) IS
    'expires_at rounded up to a multiple of storage.expiry_slot; NULL for never (internal)';

--
-- The records.  An ordinary WAL-logged table, readable by a DBA, included
-- in pg_dump (see pg_extension_config_dump below).  No CHECK constraints:
-- the functions validate their input, and a CHECK expression is re-read
-- from the catalog by every INSERT/UPDATE statement, which cost about a
-- tenth of a save in the benchmark.  fillfactor leaves room on each page
-- for HOT updates.
--
CREATE TABLE @extschema@.storage_records (
    id          text COLLATE "C" NOT NULL,
    version     bigint NOT NULL,
    expires_at  timestamptz,
    format      text,
    data        bytea,
    purge_after timestamptz
                GENERATED ALWAYS AS (@extschema@.storage_expiry_slot(expires_at)) STORED,
    CONSTRAINT storage_records_pkey PRIMARY KEY (id)
) WITH (fillfactor = 90);

COMMENT ON TABLE @extschema@.storage_records IS
    'records of the storage extension; write through storage_save() and friends, read freely';
COMMENT ON COLUMN @extschema@.storage_records.id IS
    'record id, 1 to 255 bytes, bytewise ("C") order';
COMMENT ON COLUMN @extschema@.storage_records.version IS
    'optimistic locking version, 1 for a new record, +1 on every save';
COMMENT ON COLUMN @extschema@.storage_records.expires_at IS
    'the record is invisible from this time on (NULL or infinity: never) and is purged later';
COMMENT ON COLUMN @extschema@.storage_records.format IS
    'free-form string telling the application how to read data';
COMMENT ON COLUMN @extschema@.storage_records.data IS
    'opaque payload';
COMMENT ON COLUMN @extschema@.storage_records.purge_after IS
    'end of the expiry slot of expires_at (generated); the purge index is on this column so that moving expires_at within a slot is a HOT update';

-- Finds expired records for the purge.
CREATE INDEX storage_records_purge_after_idx
    ON @extschema@.storage_records (purge_after)
    WHERE purge_after IS NOT NULL;
COMMENT ON INDEX @extschema@.storage_records_purge_after_idx IS
    'finds expired records for the purge by expiry slot, without visiting records that never expire';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.storage_records', '');

--
-- Helpers.  They reveal nothing and are needed by the inlined SQL functions,
-- so PUBLIC keeps EXECUTE on them.
--
CREATE FUNCTION @extschema@.storage_now()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'storage_now_sql'
LANGUAGE C VOLATILE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_now() IS
    'the clock that decides liveness: clock_timestamp(), or storage.test_now when a superuser set it for tests';

CREATE FUNCTION @extschema@.storage_check_id(id text)
RETURNS text
AS 'MODULE_PATHNAME', 'storage_check_id_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_check_id(text) IS
    'returns id, or raises 22004 for NULL and 22023 for an empty id or one over 255 bytes';

CREATE FUNCTION @extschema@.storage_prefix_end(prefix text)
RETURNS text
AS 'MODULE_PATHNAME', 'storage_prefix_end'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_prefix_end(text) IS
    'upper bound of the index range of ids starting with prefix (internal)';

--
-- The provider functions.
--
CREATE FUNCTION @extschema@.storage_save(
    id text,
    data bytea,
    expect_version bigint DEFAULT -1,
    expires_at timestamptz DEFAULT NULL,
    format text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'storage_save'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_save(text, bytea, bigint, timestamptz, text) IS
    'saves a record and returns its new version; expect_version > 0: only over that live version, 0: only if no live record, < 0: unconditionally; SV001 on conflict';

-- An inlinable SQL function: the planner folds it into the caller's query,
-- so a fetch costs what the equivalent hand-written SELECT costs.
CREATE FUNCTION @extschema@.storage_fetch(id text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM @extschema@.storage_records AS r
     WHERE r.id = @extschema@.storage_check_id($1)
       AND (r.expires_at IS NULL OR r.expires_at > @extschema@.storage_now())
$$;
COMMENT ON FUNCTION @extschema@.storage_fetch(text) IS
    'the live record with this id: one row, or none if it is missing or expired; never writes';

CREATE FUNCTION @extschema@.storage_delete(id text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'storage_delete'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_delete(text) IS
    'deletes the record; true if a live record was removed, false if there was none';

CREATE FUNCTION @extschema@.storage_purge_expired(max_rows bigint DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'storage_purge_expired'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_purge_expired(bigint) IS
    'deletes expired records (all, or at most max_rows) in batches of storage.purge_batch_size, skipping rows locked by others; returns the count';

CREATE FUNCTION @extschema@.storage_list(prefix text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM @extschema@.storage_records AS r
     WHERE r.id >= $1
       AND r.id < @extschema@.storage_prefix_end($1)
       AND (r.expires_at IS NULL OR r.expires_at > @extschema@.storage_now())
     ORDER BY r.id
$$;
COMMENT ON FUNCTION @extschema@.storage_list(text) IS
    'the live records whose id starts with prefix, in bytewise id order';

--
-- Batch operations: one round trip for many records.
--
CREATE FUNCTION @extschema@.storage_check_ids(ids text[])
RETURNS text[]
AS 'MODULE_PATHNAME', 'storage_check_ids_sql'
LANGUAGE C IMMUTABLE PARALLEL SAFE;
COMMENT ON FUNCTION @extschema@.storage_check_ids(text[]) IS
    'returns ids, or raises 22004/22023 for the first NULL, empty or over-long id (internal)';

CREATE FUNCTION @extschema@.storage_fetch_many(ids text[])
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM @extschema@.storage_records AS r
     WHERE r.id = ANY (@extschema@.storage_check_ids($1))
       AND (r.expires_at IS NULL OR r.expires_at > @extschema@.storage_now())
$$;
COMMENT ON FUNCTION @extschema@.storage_fetch_many(text[]) IS
    'one row per distinct live id among ids; never writes';

CREATE FUNCTION @extschema@.storage_save_many(
    ids text[],
    datas bytea[],
    expect_versions bigint[] DEFAULT NULL,
    expires_ats timestamptz[] DEFAULT NULL,
    formats text[] DEFAULT NULL)
RETURNS bigint[]
AS 'MODULE_PATHNAME', 'storage_save_many'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_save_many(text[], bytea[], bigint[], timestamptz[], text[]) IS
    'saves many records, all or nothing, with the rules of storage_save; returns the new versions aligned with ids; SV001 names the first conflicting id';

CREATE FUNCTION @extschema@.storage_delete_many(ids text[])
RETURNS bigint
AS 'MODULE_PATHNAME', 'storage_delete_many'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_delete_many(text[]) IS
    'deletes the records with these ids; returns how many of them were live';

--
-- Buckets, keys, TTL locks and touch: the same records, addressed as
-- bucket {b1,b2} + key k = id 'b1/b2/k'; locks are records '.locks/<token>'.
--
CREATE FUNCTION @extschema@.storage_touch(id text, expires_at timestamptz,
                                          expect_version bigint DEFAULT -1)
RETURNS boolean
AS 'MODULE_PATHNAME', 'storage_touch'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_touch(text, timestamptz, bigint) IS
    'sets a live record''s expires_at without changing data or version; with expect_version >= 1 only at that version; true if touched';

CREATE FUNCTION @extschema@.storage_create_val(bucket text[], key text, val bytea,
                                               ttl interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_create_val'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_create_val(text[], text, bytea, interval) IS
    'creates a value; SV003 if a live one exists (an expired one is replaced); ttl NULL or 0: no expiry';

CREATE FUNCTION @extschema@.storage_upsert_val(bucket text[], key text, val bytea,
                                               ttl interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_upsert_val'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_upsert_val(text[], text, bytea, interval) IS
    'creates or replaces a value; ttl NULL or 0 clears any earlier expiry';

CREATE FUNCTION @extschema@.storage_compare_and_swap_val(bucket text[], key text, val bytea,
                                                         prev_val bytea, ttl interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_compare_and_swap_val'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_compare_and_swap_val(text[], text, bytea, bytea, interval) IS
    'replaces a value only if the live value equals prev_val; SV004 otherwise';

CREATE FUNCTION @extschema@.storage_get_val(bucket text[], key text)
RETURNS bytea
AS 'MODULE_PATHNAME', 'storage_get_val'
LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.storage_get_val(text[], text) IS
    'the live value of a key; SV002 if missing or expired, 22023 if the name is a bucket';

CREATE FUNCTION @extschema@.storage_get_keys(bucket text[])
RETURNS SETOF text
AS 'MODULE_PATHNAME', 'storage_get_keys'
LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.storage_get_keys(text[]) IS
    'live keys and sub-buckets holding anything live directly in the bucket, sorted; one index probe per name';

-- C, not SQL: it skips sub-buckets unread the way storage_get_keys does.
CREATE FUNCTION @extschema@.storage_get_items(bucket text[])
RETURNS TABLE(key text, val bytea, expires_at timestamptz)
AS 'MODULE_PATHNAME', 'storage_get_items'
LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.storage_get_items(text[]) IS
    'the live keys directly in the bucket with their values and expiry, sorted by key';

CREATE FUNCTION @extschema@.storage_upsert_items(bucket text[], keys text[], vals bytea[],
                                                 ttl interval DEFAULT NULL)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_upsert_items'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_upsert_items(text[], text[], bytea[], interval) IS
    'creates or replaces many values in one bucket, all or nothing';

CREATE FUNCTION @extschema@.storage_delete_key(bucket text[], key text)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_delete_key'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_delete_key(text[], text) IS
    'deletes a key; SV002 if it is not live';

CREATE FUNCTION @extschema@.storage_delete_bucket(parent text[], bucket text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'storage_delete_bucket'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_delete_bucket(text[], text) IS
    'deletes everything below parent/bucket recursively and returns how many live records it removed; SV002 if none';

CREATE FUNCTION @extschema@.storage_acquire_lock(token text, ttl interval)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_acquire_lock'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_acquire_lock(text, interval) IS
    'waits until the lock is free (or its TTL ran out), then takes it for ttl; not reentrant';

CREATE FUNCTION @extschema@.storage_release_lock(token text)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_release_lock'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_release_lock(text) IS
    'releases a lock and wakes its waiters at commit; SV002 if it is not held';

--
-- Expiry worker and administration.
--
CREATE FUNCTION @extschema@.storage_worker_loaded()
RETURNS boolean
AS 'MODULE_PATHNAME', 'storage_worker_loaded'
LANGUAGE C STABLE;
COMMENT ON FUNCTION @extschema@.storage_worker_loaded() IS
    'true if storage is in shared_preload_libraries, so that expired records are purged automatically';

CREATE FUNCTION @extschema@.storage_worker_status(
    OUT state text,
    OUT launcher_pid integer,
    OUT last_purge_start timestamptz,
    OUT last_purge_end timestamptz,
    OUT rows_purged_last bigint,
    OUT rows_purged_total bigint,
    OUT last_error text)
RETURNS record
AS 'MODULE_PATHNAME', 'storage_worker_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_worker_status() IS
    'the expiry worker''s state for the current database, from shared memory (cheap)';

-- Counting expired rows goes through the expiry-slot index (cost grows with
-- the backlog only); live records are estimated from pg_class.reltuples
-- unless exact => true asks for a full count.
CREATE FUNCTION @extschema@.storage_status(
    exact boolean DEFAULT false,
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
    OUT last_error text)
RETURNS record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH now AS (
        SELECT @extschema@.storage_now() AS t
    ), expired AS (
        SELECT count(*) AS n
          FROM @extschema@.storage_records r, now
         WHERE r.purge_after <= @extschema@.storage_expiry_slot(now.t)
           AND r.expires_at <= now.t
    ), est AS (
        SELECT c.reltuples::bigint AS n
          FROM pg_class c
         WHERE c.oid = '@extschema@.storage_records'::regclass
    ), live AS (
        SELECT CASE
                 WHEN $1 OR est.n < 0 THEN
                   (SELECT count(*) FROM @extschema@.storage_records r, now
                     WHERE r.expires_at IS NULL OR r.expires_at > now.t)
                 ELSE greatest(est.n - expired.n, 0)
               END AS n,
               NOT ($1 OR est.n < 0) AS estimate
          FROM est, expired
    )
    SELECT current_database(), live.n, live.estimate, expired.n, w.*
      FROM live, expired, @extschema@.storage_worker_status() w
$$;
COMMENT ON FUNCTION @extschema@.storage_status(boolean) IS
    'live and expired record counts and the expiry worker''s state for this database; exact => true counts live records exactly (full scan)';

CREATE VIEW @extschema@.storage_status AS
    SELECT * FROM @extschema@.storage_status(false);
COMMENT ON VIEW @extschema@.storage_status IS
    'at a glance: live records (estimated), expired records not yet purged, the expiry worker''s state, last purge, rows purged, last error';

--
-- DROP EXTENSION guard.
--
CREATE FUNCTION @extschema@.storage_drop_guard()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'storage_drop_guard'
LANGUAGE C;
COMMENT ON FUNCTION @extschema@.storage_drop_guard() IS
    'event trigger function: refuses DROP EXTENSION storage without CASCADE while live records exist';

CREATE EVENT TRIGGER storage_drop_guard
    ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION')
    EXECUTE FUNCTION @extschema@.storage_drop_guard();
COMMENT ON EVENT TRIGGER storage_drop_guard IS
    'refuses DROP EXTENSION storage without CASCADE while live records exist';

-- A NOTICE raised by this script itself would be swallowed (extension
-- scripts run with client_min_messages = warning), so this only marks the
-- notice as due; it is sent when CREATE EXTENSION commits.
CREATE FUNCTION @extschema@.storage_expiry_notice()
RETURNS void
AS 'MODULE_PATHNAME', 'storage_expiry_notice'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_expiry_notice() IS
    'at the end of the transaction, a NOTICE with the hint to enable automatic expiry if the library is not preloaded';
SELECT @extschema@.storage_expiry_notice();

--
-- Privileges: nothing for PUBLIC but the harmless helpers above.  See the
-- README for the GRANT recipe for an application role.
--
REVOKE ALL ON FUNCTION
    @extschema@.storage_save(text, bytea, bigint, timestamptz, text),
    @extschema@.storage_fetch(text),
    @extschema@.storage_delete(text),
    @extschema@.storage_purge_expired(bigint),
    @extschema@.storage_list(text),
    @extschema@.storage_fetch_many(text[]),
    @extschema@.storage_save_many(text[], bytea[], bigint[], timestamptz[], text[]),
    @extschema@.storage_delete_many(text[]),
    @extschema@.storage_touch(text, timestamptz, bigint),
    @extschema@.storage_create_val(text[], text, bytea, interval),
    @extschema@.storage_upsert_val(text[], text, bytea, interval),
    @extschema@.storage_compare_and_swap_val(text[], text, bytea, bytea, interval),
    @extschema@.storage_get_val(text[], text),
    @extschema@.storage_get_keys(text[]),
    @extschema@.storage_get_items(text[]),
    @extschema@.storage_upsert_items(text[], text[], bytea[], interval),
    @extschema@.storage_delete_key(text[], text),
    @extschema@.storage_delete_bucket(text[], text),
    @extschema@.storage_acquire_lock(text, interval),
    @extschema@.storage_release_lock(text),
    @extschema@.storage_drop_guard(),
    @extschema@.storage_expiry_notice(),
    @extschema@.storage_worker_status(),
    @extschema@.storage_status(boolean)
FROM PUBLIC;
REVOKE ALL ON @extschema@.storage_status FROM PUBLIC;
-- monitoring roles may look at the figures
GRANT EXECUTE ON FUNCTION @extschema@.storage_worker_status(),
                          @extschema@.storage_status(boolean)
   TO pg_monitor;
GRANT SELECT ON @extschema@.storage_status TO pg_monitor;

