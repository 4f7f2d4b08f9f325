-- bench/plpgsql_storage.sql: the storage_save / storage_fetch contract
-- written by hand in PL/pgSQL over a plain table, the way an application
-- team would without the extension.  The benchmark compares against it.

CREATE TABLE IF NOT EXISTS raw_records (
    id          text COLLATE "C" PRIMARY KEY,
    version     bigint NOT NULL,
    expires_at  timestamptz,
    format      text,
    data        bytea
);
CREATE INDEX IF NOT EXISTS raw_records_expires_at_idx
    ON raw_records (expires_at) WHERE expires_at IS NOT NULL;

CREATE OR REPLACE FUNCTION plpgsql_save(p_id text, p_data bytea,
                                        p_expect bigint DEFAULT -1,
                                        p_expires timestamptz DEFAULT NULL,
                                        p_format text DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_version bigint;
BEGIN
    IF p_id IS NULL OR p_expect IS NULL THEN
        RAISE EXCEPTION 'id must not be null' USING ERRCODE = '22004';
    END IF;
    IF octet_length(p_id) = 0 OR octet_length(p_id) > 255 THEN
        RAISE EXCEPTION 'bad id' USING ERRCODE = '22023';
    END IF;
    IF p_expect < 0 THEN
        INSERT INTO raw_records AS r (id, version, expires_at, format, data)
        VALUES (p_id, 1, p_expires, p_format, p_data)
        ON CONFLICT (id) DO UPDATE SET
            version = CASE WHEN r.expires_at IS NULL OR r.expires_at > v_now
                           THEN r.version + 1 ELSE 1 END,
            expires_at = excluded.expires_at, format = excluded.format,
            data = excluded.data
        RETURNING version INTO v_version;
    ELSIF p_expect = 0 THEN
        INSERT INTO raw_records AS r (id, version, expires_at, format, data)
        VALUES (p_id, 1, p_expires, p_format, p_data)
        ON CONFLICT (id) DO UPDATE SET
            version = 1, expires_at = excluded.expires_at,
            format = excluded.format, data = excluded.data
        WHERE NOT (r.expires_at IS NULL OR r.expires_at > v_now)
        RETURNING version INTO v_version;
    ELSE
        UPDATE raw_records AS r SET version = r.version + 1,
               expires_at = p_expires, format = p_format, data = p_data
         WHERE r.id = p_id AND r.version = p_expect
           AND (r.expires_at IS NULL OR r.expires_at > v_now)
        RETURNING r.version INTO v_version;
    END IF;
    IF v_version IS NULL THEN
        RAISE EXCEPTION 'version conflict' USING ERRCODE = 'SV001';
    END IF;
    RETURN v_version;
END $$;

CREATE OR REPLACE FUNCTION plpgsql_fetch(p_id text)
RETURNS TABLE(id text, version bigint, expires_at timestamptz, format text, data bytea)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT r.id, r.version, r.expires_at, r.format, r.data
      FROM raw_records r
     WHERE r.id = p_id AND (r.expires_at IS NULL OR r.expires_at > clock_timestamp());
END $$;
