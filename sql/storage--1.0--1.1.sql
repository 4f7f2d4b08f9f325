/* storage--1.0--1.1.sql: update script from release 1.0 to 1.1 */

\echo Use "ALTER EXTENSION storage UPDATE TO '1.1'" to load this file. \quit

--
-- Release 1.1 has no install script of its own: CREATE EXTENSION storage
-- runs storage--1.0.sql and then this script, so that a fresh install and
-- an updated one are made by the same statements (the upgrade test
-- compares both).  Every change of release 1.1 to installed SQL goes here,
-- in the section of its topic.
--

-- ==== search_path safety and the expiry worker ====

--
-- The SQL functions of release 1.0 named their operators and functions
-- unqualified.  Their bodies are parsed with the caller's search_path (the
-- inlined ones become part of the caller's query), so a schema put before
-- pg_catalog could supply its own "=" or ">" and have it run by whoever
-- called them, a superuser or the expiry worker included.  Same bodies,
-- every operator and function schema-qualified.  storage_fetch,
-- storage_fetch_many and storage_list must stay inlinable (a plain SQL
-- function: no SET clause, not SECURITY DEFINER), so qualification is the
-- only protection they can have; the planner still sees the same operators
-- and uses the primary key (the regression test security_search_path
-- checks the plans).
--
-- The liveness rule in SQL, the one the C functions apply (clock.c): a
-- record is live if it never expires or expires later than now.  A plain
-- IMMUTABLE SQL expression, so the planner inlines it into the inlined
-- functions below: their plans are the same as with the condition spelled
-- out (security_search_path checks them).  Like storage_now(), it reveals
-- nothing and the inlined functions need it, so PUBLIC keeps EXECUTE.
CREATE FUNCTION @extschema@.storage_live(expires_at timestamptz, now timestamptz)
RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT $1 IS NULL OR $1 OPERATOR(pg_catalog.>) $2
$$;
COMMENT ON FUNCTION @extschema@.storage_live(timestamptz, timestamptz) IS
    'the liveness rule: true if a record with this expires_at is live at now (NULL never expires)';
GRANT EXECUTE ON FUNCTION @extschema@.storage_live(timestamptz, timestamptz) TO PUBLIC;

CREATE OR REPLACE FUNCTION @extschema@.storage_fetch(id text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM @extschema@.storage_records AS r
     WHERE r.id OPERATOR(pg_catalog.=) @extschema@.storage_check_id($1)
       AND @extschema@.storage_live(r.expires_at, @extschema@.storage_now())
$$;

CREATE OR REPLACE FUNCTION @extschema@.storage_list(prefix text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM @extschema@.storage_records AS r
     WHERE r.id OPERATOR(pg_catalog.>=) $1
       AND r.id OPERATOR(pg_catalog.<) @extschema@.storage_prefix_end($1)
       AND @extschema@.storage_live(r.expires_at, @extschema@.storage_now())
     ORDER BY r.id
$$;

CREATE OR REPLACE FUNCTION @extschema@.storage_fetch_many(ids text[])
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM @extschema@.storage_records AS r
     WHERE r.id OPERATOR(pg_catalog.=) ANY (@extschema@.storage_check_ids($1))
       AND @extschema@.storage_live(r.expires_at, @extschema@.storage_now())
$$;

-- ==== fast paths: what the statements enforce ====

-- Which path each operation takes here and now (for the calling role, in
-- the calling transaction), decided by the same function as the
-- operations themselves; see docs/design.md "Which writes take the
-- statement path".
CREATE FUNCTION @extschema@.storage_write_path(
    OUT operation text,
    OUT path text,
    OUT reason text)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'storage_write_path'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_write_path() IS
    'for each operation: direct or statement path, for the current role and transaction, and why not direct';

CREATE VIEW @extschema@.storage_write_path AS
    SELECT * FROM @extschema@.storage_write_path();
COMMENT ON VIEW @extschema@.storage_write_path IS
    'which path writes and bucket reads take in this database for the current role, and why not the direct one';

REVOKE ALL ON FUNCTION @extschema@.storage_write_path() FROM PUBLIC;
REVOKE ALL ON @extschema@.storage_write_path FROM PUBLIC;
-- monitoring roles may look at it (the function runs as the caller)
GRANT EXECUTE ON FUNCTION @extschema@.storage_write_path() TO pg_monitor;
GRANT SELECT ON @extschema@.storage_write_path TO pg_monitor;

-- ==== purge: skipped rows, back-off, status ====

-- storage_worker_status() and storage_status gain the rows the purge had
-- to skip (a trigger or a foreign key refused them), the last reason, and
-- the back-off of a database whose visits fail.  Their OUT columns
-- change, so they are dropped and made again (the view first).
DROP VIEW @extschema@.storage_status;
DROP FUNCTION @extschema@.storage_status(boolean);
DROP FUNCTION @extschema@.storage_worker_status();

CREATE FUNCTION @extschema@.storage_worker_status(
    OUT state text,
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
RETURNS record
AS 'MODULE_PATHNAME', 'storage_worker_status'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_worker_status() IS
    'the expiry worker''s state for the current database, from shared memory (cheap)';

-- The counts are made in C so that storage_status still answers (with
-- NULL counts) when the records table is missing: then last_error says why
-- nothing is purged.  Counting expired rows goes through the expiry-slot
-- index (cost grows with the backlog only); live records are estimated
-- from pg_class.reltuples unless exact => true asks for a full count.
CREATE FUNCTION @extschema@.storage_record_counts(
    exact boolean,
    OUT live_records bigint,
    OUT live_is_estimate boolean,
    OUT expired_records bigint)
RETURNS record
AS 'MODULE_PATHNAME', 'storage_record_counts'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_record_counts(boolean) IS
    'the record counts of storage_status (NULL if the records table is missing); exact => true counts live records exactly (full scan)';

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
    OUT last_error text,
    OUT rows_skipped_last bigint,
    OUT rows_skipped_total bigint,
    OUT last_skip_reason text,
    OUT consecutive_failures integer,
    OUT backoff_until timestamptz,
    OUT log_lines_suppressed bigint)
RETURNS record
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_catalog.current_database(), c.live_records, c.live_is_estimate,
           c.expired_records, w.*
      FROM @extschema@.storage_record_counts($1) c,
           @extschema@.storage_worker_status() w
$$;
COMMENT ON FUNCTION @extschema@.storage_status(boolean) IS
    'live and expired record counts and the expiry worker''s state for this database; exact => true counts live records exactly (full scan)';

CREATE VIEW @extschema@.storage_status AS
    SELECT * FROM @extschema@.storage_status(false);
COMMENT ON VIEW @extschema@.storage_status IS
    'at a glance: live records (estimated), expired records not yet purged, the expiry worker''s state, last purge, rows purged, last error, rows skipped and why, back-off';

REVOKE ALL ON FUNCTION
    @extschema@.storage_worker_status(),
    @extschema@.storage_record_counts(boolean),
    @extschema@.storage_status(boolean)
FROM PUBLIC;
REVOKE ALL ON @extschema@.storage_status FROM PUBLIC;
-- monitoring roles may look at the figures
GRANT EXECUTE ON FUNCTION @extschema@.storage_worker_status(),
                          @extschema@.storage_status(boolean)
   TO pg_monitor;
GRANT SELECT ON @extschema@.storage_status TO pg_monitor;

-- ==== locks with fencing tokens ====

-- Fencing tokens: every take of a lock draws the next value and stores it
-- as the lock record's version (see src/lock_api.c).  A sequence, not a
-- counter in the lock record, because the record is deleted by a release
-- or the purge; marked for pg_dump so that a restored database goes on
-- above every token handed out before the dump.  Tokens start at 2:
-- version 1 marks a lock taken without a token (by release 1.0, or by a
-- client's plain save of '.locks/<token>'), so that no fenced holder's
-- token can match such a lock.
CREATE SEQUENCE @extschema@.storage_lock_fences AS bigint MINVALUE 1 START WITH 2 NO CYCLE;
COMMENT ON SEQUENCE @extschema@.storage_lock_fences IS
    'fencing tokens of the TTL locks: each take of a lock draws the next value (internal; drawn by storage_acquire_lock without a privilege check on the sequence)';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.storage_lock_fences', '');
REVOKE ALL ON SEQUENCE @extschema@.storage_lock_fences FROM PUBLIC;

-- Locks held while 1.0 is updated keep their record version (1.0 wrote 1)
-- as their fencing token; every later take gets a larger one, also if
-- some lock record's version grew beyond by storage_save.
SELECT pg_catalog.setval('@extschema@.storage_lock_fences', s.m)
  FROM (SELECT pg_catalog.max(r.version) AS m
          FROM @extschema@.storage_records AS r
         WHERE r.id OPERATOR(pg_catalog.>=) '.locks/'
           AND r.id OPERATOR(pg_catalog.<) @extschema@.storage_prefix_end('.locks/')) AS s
 WHERE s.m OPERATOR(pg_catalog.>=) 2;

-- storage_acquire_lock now returns the token.  A new return type means a
-- new function: the roles that could execute the 1.0 one keep that right,
-- and the grants stay their own (not initial privileges of the extension),
-- so pg_dump still dumps them.
DO $$
DECLARE
    old_acl pg_catalog.aclitem[];
    init_acl pg_catalog.aclitem[];
    new_fn pg_catalog.regprocedure;
    g record;
BEGIN
    SELECT p.proacl INTO old_acl
      FROM pg_catalog.pg_proc AS p
     WHERE p.oid OPERATOR(pg_catalog.=)
           '@extschema@.storage_acquire_lock(pg_catalog.text, pg_catalog.interval)'::pg_catalog.regprocedure;

    DROP FUNCTION @extschema@.storage_acquire_lock(text, interval);
    CREATE FUNCTION @extschema@.storage_acquire_lock(token text, ttl interval)
    RETURNS bigint
    AS 'MODULE_PATHNAME', 'storage_acquire_lock'
    LANGUAGE C VOLATILE;
    COMMENT ON FUNCTION @extschema@.storage_acquire_lock(text, interval) IS
        'waits until the lock is free (or its TTL ran out), then takes it for ttl and returns its fencing token, larger than every earlier holder''s; not reentrant';
    REVOKE ALL ON FUNCTION @extschema@.storage_acquire_lock(text, interval) FROM PUBLIC;

    new_fn := '@extschema@.storage_acquire_lock(pg_catalog.text, pg_catalog.interval)'::pg_catalog.regprocedure;
    SELECT p.proacl INTO init_acl
      FROM pg_catalog.pg_proc AS p
     WHERE p.oid OPERATOR(pg_catalog.=) new_fn;
    FOR g IN
        SELECT a.grantee, a.is_grantable
          FROM pg_catalog.aclexplode(old_acl) AS a
          JOIN pg_catalog.pg_proc AS p ON p.oid OPERATOR(pg_catalog.=) new_fn
         WHERE a.privilege_type OPERATOR(pg_catalog.=) 'EXECUTE'
           AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s',
            new_fn,
            CASE WHEN g.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                 ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(g.grantee)) END,
            CASE WHEN g.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
    END LOOP;
    UPDATE pg_catalog.pg_init_privs AS i
       SET initprivs = init_acl
     WHERE i.objoid OPERATOR(pg_catalog.=) new_fn
       AND i.classoid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
       AND i.objsubid OPERATOR(pg_catalog.=) 0;
END
$$;

CREATE FUNCTION @extschema@.storage_release_lock(token text, fence bigint)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_release_lock_fenced'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_release_lock(text, bigint) IS
    'releases the lock only if it is held, live, with this fencing token, and wakes its waiters at commit; SV002 and no change otherwise';

COMMENT ON FUNCTION @extschema@.storage_release_lock(text) IS
    'releases a lock whoever holds it and wakes its waiters at commit; SV002 if it is not held; unsafe once the caller''s lease may have run out: use storage_release_lock(token, fence)';

CREATE FUNCTION @extschema@.storage_extend_lock(token text, fence bigint, ttl interval)
RETURNS boolean
AS 'MODULE_PATHNAME', 'storage_extend_lock'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_extend_lock(text, bigint, interval) IS
    'renews the lease of the lock held with this fencing token to end ttl from now; false, changing nothing, if it is not held (live) with that token';

REVOKE ALL ON FUNCTION
    @extschema@.storage_release_lock(text, bigint),
    @extschema@.storage_extend_lock(text, bigint, interval)
FROM PUBLIC;

-- ==== input rules and the DROP EXTENSION guard ====

-- The guard also refuses DROP OWNED BY the extension's owner without
-- CASCADE while live records exist: a role clean-up script would otherwise
-- drop them silently.  The tags of an event trigger cannot be altered, so
-- it is created again (and stays a member of the extension).
DROP EVENT TRIGGER storage_drop_guard;
CREATE EVENT TRIGGER storage_drop_guard
    ON ddl_command_start
    WHEN TAG IN ('DROP EXTENSION', 'DROP OWNED')
    EXECUTE FUNCTION @extschema@.storage_drop_guard();
COMMENT ON EVENT TRIGGER storage_drop_guard IS
    'refuses DROP EXTENSION storage, and DROP OWNED BY its owner, without CASCADE while live records exist';
COMMENT ON FUNCTION @extschema@.storage_drop_guard() IS
    'event trigger function: refuses DROP EXTENSION storage, and DROP OWNED BY its owner, without CASCADE while live records exist (by the real clock, wherever the records table was renamed)';

-- ==== change feed ====

-- The watches: logical replication slots of the storage output plugin
-- (the extension's library, see README "Change feed") made by
-- storage_watch_create(), with the id prefix of their events and the role
-- that created them.  Only the slots named here can be read through the
-- SQL functions, and only by members of that role.  Marked for pg_dump;
-- replication slots themselves are not dumped, so after a restore each
-- watch has to be dropped and created again.
CREATE TABLE @extschema@.storage_watches (
    slot             name NOT NULL PRIMARY KEY,
    prefix           text NOT NULL,
    owner            regrole NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT pg_catalog.now(),
    last_consumed_at timestamptz
);
COMMENT ON TABLE @extschema@.storage_watches IS
    'the change feed''s watches: replication slots made by storage_watch_create(), their id prefix and creator (internal; use storage_watch_status)';
COMMENT ON COLUMN @extschema@.storage_watches.slot IS
    'the logical replication slot, of the storage output plugin';
COMMENT ON COLUMN @extschema@.storage_watches.prefix IS
    'only records whose id starts with this are reported';
COMMENT ON COLUMN @extschema@.storage_watches.owner IS
    'the role that created the watch: only its members may read or drop it';
COMMENT ON COLUMN @extschema@.storage_watches.created_at IS
    'when the watch was created';
COMMENT ON COLUMN @extschema@.storage_watches.last_consumed_at IS
    'when storage_changes() last consumed the watch (NULL: never)';
SELECT pg_catalog.pg_extension_config_dump('@extschema@.storage_watches', '');
REVOKE ALL ON @extschema@.storage_watches FROM PUBLIC;

CREATE FUNCTION @extschema@.storage_watch_create(slot name, prefix text DEFAULT '')
RETURNS pg_lsn
AS 'MODULE_PATHNAME', 'storage_watch_create'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_watch_create(name, text) IS
    'creates a watch: a logical replication slot reporting the changes of records whose id starts with prefix from the returned position on; must run before the transaction writes anything; the slot retains WAL until consumed or dropped';

CREATE FUNCTION @extschema@.storage_changes(slot name, max_events integer DEFAULT 1000)
RETURNS TABLE(lsn pg_lsn, op text, id text, version bigint, expires_at timestamptz,
              format text, data bytea, committed_at timestamptz)
AS 'MODULE_PATHNAME', 'storage_changes'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_changes(name, integer) IS
    'consumes the watch''s next changes (put, touch, delete, expire) in commit order; whole transactions, so possibly more than max_events to finish the last one';

CREATE FUNCTION @extschema@.storage_changes_peek(slot name, max_events integer DEFAULT 1000)
RETURNS TABLE(lsn pg_lsn, op text, id text, version bigint, expires_at timestamptz,
              format text, data bytea, committed_at timestamptz)
AS 'MODULE_PATHNAME', 'storage_changes_peek'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_changes_peek(name, integer) IS
    'the changes storage_changes() would return, without consuming them';

CREATE FUNCTION @extschema@.storage_watch_drop(slot name)
RETURNS void
AS 'MODULE_PATHNAME', 'storage_watch_drop'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_watch_drop(name) IS
    'drops a watch and its replication slot, which then retains no more WAL';

-- Called in the RETURNING clause of the statements that delete many
-- records; it writes nothing but a WAL note for the output plugin, and
-- only that caller's own deletes can be affected by it.
CREATE FUNCTION @extschema@.storage_feed_deleted(id text, live boolean)
RETURNS boolean
AS 'MODULE_PATHNAME', 'storage_feed_deleted'
LANGUAGE C VOLATILE;
COMMENT ON FUNCTION @extschema@.storage_feed_deleted(text, boolean) IS
    'returns live; when it is false, notes for the change feed that the row of id just deleted had expired (internal)';

-- Lag in bytes from the WAL position (the replayed one on a standby);
-- lag_seconds of an active watch is the consumer's flush lag, of an
-- inactive one the time since it was last consumed (or, from PostgreSQL
-- 17, since its consumer disconnected, if later).
CREATE FUNCTION @extschema@.storage_watch_status(
    OUT slot name,
    OUT prefix text,
    OUT owner regrole,
    OUT active boolean,
    OUT lag_bytes numeric,
    OUT retained_bytes numeric,
    OUT lag_seconds double precision,
    OUT wal_status text,
    OUT last_consumed_at timestamptz)
RETURNS SETOF record
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH pos AS (
        SELECT CASE WHEN pg_catalog.pg_is_in_recovery()
                    THEN pg_catalog.pg_last_wal_replay_lsn()
                    ELSE pg_catalog.pg_current_wal_lsn() END AS lsn
    )
    SELECT w.slot, w.prefix, w.owner, s.active,
           pg_catalog.pg_wal_lsn_diff(pos.lsn, s.confirmed_flush_lsn),
           pg_catalog.pg_wal_lsn_diff(pos.lsn, s.restart_lsn),
           CASE WHEN s.active
                THEN pg_catalog.date_part('epoch',
                         COALESCE(r.flush_lag, '0'::pg_catalog.interval))
                WHEN s.slot_name IS NOT NULL
                THEN pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-)
                         COALESCE(GREATEST(w.last_consumed_at,
                                           (pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'inactive_since')::pg_catalog.timestamptz),
                                  w.created_at))
           END,
           COALESCE(s.wal_status, 'missing'),
           w.last_consumed_at
      FROM @extschema@.storage_watches AS w
      CROSS JOIN pos
      LEFT JOIN pg_catalog.pg_replication_slots AS s
             ON s.slot_name OPERATOR(pg_catalog.=) w.slot
      LEFT JOIN pg_catalog.pg_stat_replication AS r
             ON r.pid OPERATOR(pg_catalog.=) s.active_pid
     ORDER BY w.slot
$$;
COMMENT ON FUNCTION @extschema@.storage_watch_status() IS
    'each watch''s slot: active, lag in bytes and seconds, WAL retained, wal_status (missing: the slot is gone)';

CREATE VIEW @extschema@.storage_watch_status AS
    SELECT * FROM @extschema@.storage_watch_status();
COMMENT ON VIEW @extschema@.storage_watch_status IS
    'the change feed''s watches and their lag; WARNING: an abandoned watch retains WAL for ever (retained_bytes grows until the disk is full): drop it with storage_watch_drop()';

REVOKE ALL ON FUNCTION
    @extschema@.storage_watch_create(name, text),
    @extschema@.storage_changes(name, integer),
    @extschema@.storage_changes_peek(name, integer),
    @extschema@.storage_watch_drop(name),
    @extschema@.storage_watch_status()
FROM PUBLIC;
REVOKE ALL ON @extschema@.storage_watch_status FROM PUBLIC;
-- monitoring roles may look at the watches' lag
GRANT EXECUTE ON FUNCTION @extschema@.storage_watch_status() TO pg_monitor;
GRANT SELECT ON @extschema@.storage_watch_status TO pg_monitor;
