/*-------------------------------------------------------------------------
 *
 * records.c
 *	  The provider functions on single records: storage_save() with
 *	  optimistic locking and storage_delete().  (storage_fetch() is an
 *	  inlinable SQL function in the install script; see README.)
 *
 * Each save rule is one statement, so that READ COMMITTED's re-check of a
 * concurrently updated row decides races: of many sessions saving the same
 * id with the same expect_version exactly one UPDATE still matches after
 * waiting for the row lock, and concurrent creates meet in INSERT ... ON
 * CONFLICT, which never raises unique_violation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_save);
PG_FUNCTION_INFO_V1(storage_delete);
PG_FUNCTION_INFO_V1(storage_touch);

/*
 * $1 id, $2 data, $3 expires_at, $4 format, $5 now.  A live record already
 * at the largest version is left alone (no row returned) so that the caller
 * can report the overflow with the record's id instead of a bare "bigint out
 * of range" from inside the statement.
 */
static const char *const save_upsert_sql =
"INSERT INTO %1$s AS r (id, version, expires_at, format, data) "
"VALUES ($1, 1, $3, $4, $2) "
"ON CONFLICT (id) DO UPDATE SET "
"  version = CASE WHEN " LIVE("r", "$5") " THEN r.version OPERATOR(pg_catalog.+) 1 ELSE 1 END, "
"  expires_at = excluded.expires_at, format = excluded.format, "
"  data = excluded.data "
"WHERE NOT (" LIVE("r", "$5") " AND r.version OPERATOR(pg_catalog.=) 9223372036854775807) "
"RETURNING version";

/* same parameters; replaces only an expired record */
static const char *const save_create_sql =
"INSERT INTO %1$s AS r (id, version, expires_at, format, data) "
"VALUES ($1, 1, $3, $4, $2) "
"ON CONFLICT (id) DO UPDATE SET "
"  version = 1, expires_at = excluded.expires_at, "
"  format = excluded.format, data = excluded.data "
"WHERE NOT " LIVE("r", "$5") " "
"RETURNING version";

/* same parameters plus $6 expect_version */
static const char *const save_update_sql =
"UPDATE %1$s AS r SET version = r.version OPERATOR(pg_catalog.+) 1, "
"  expires_at = $3, format = $4, data = $2 "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND r.version OPERATOR(pg_catalog.=) $6 AND " LIVE("r", "$5") " "
"RETURNING r.version";

/* $1 id, $2 now */
static const char *const live_version_sql =
"SELECT r.version FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) $1 AND " LIVE("r", "$2");

/* $1 id, $2 now */
static const char *const delete_sql =
"DELETE FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) $1 RETURNING " LIVE("r", "$2");

/*
 * Raises the error for a save that wrote nothing: the version conflict,
 * or for an unversioned save the version overflow.  The actual version is
 * read again only here, on the failure path, so that successful saves pay
 * nothing for the message.
 */
void
storage_report_conflict(Datum id, int64 expect, TimestampTz now)
{
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];
	SPIPlanPtr	plan;
	bool		isnull;
	int64		actual = 0;

	/* an unversioned save writes nothing only when the version is at its maximum */
	if (expect >= 0)
	{
		plan = storage_plan(PLAN_LIVE_VERSION, live_version_sql, 2, argtypes);
		values[0] = id;
		values[1] = TimestampTzGetDatum(now);
		if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
			elog(ERROR, "could not read the current version of a record");
		if (SPI_processed > 0)
			actual = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												 SPI_tuptable->tupdesc, 1,
												 &isnull));
	}
	storage_raise_conflict((text *) DatumGetPointer(id), expect,
						   expect < 0 || SPI_processed > 0, actual);
}

/*
 * The error of a save that wrote nothing, once the record's state is known:
 * live says whether a live record exists, actual is its version.  For an
 * unversioned save that can only be the version overflow.
 */
void
storage_raise_conflict(const text *id, int64 expect, bool live, int64 actual)
{
	char	   *idstr = text_to_cstring(id);
	char		expected[64];

	if (expect < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("version would overflow bigint"),
				 errdetail("Record \"%s\" already has version " INT64_FORMAT ".",
						   idstr, PG_INT64_MAX)));

	if (expect == 0)
		snprintf(expected, sizeof(expected), "no live record");
	else
		snprintf(expected, sizeof(expected), "version " INT64_FORMAT, expect);

	if (!live)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_VERSION_CONFLICT),
				 errmsg("version conflict"),
				 errdetail("Record \"%s\": expected %s, but no live record exists.",
						   idstr, expected)));
	ereport(ERROR,
			(errcode(ERRCODE_STORAGE_VERSION_CONFLICT),
			 errmsg("version conflict"),
			 errdetail("Record \"%s\": expected %s, but the live record has version " INT64_FORMAT ".",
					   idstr, expected, actual)));
}

/*
 * storage_save() through the direct write path; false if that path does
 * not apply here and the SPI statement must run instead.
 */
static bool
save_direct(FunctionCallInfo fcinfo, text *id, int64 expect, TimestampTz now,
			int64 *result)
{
	StorageWriter *w = storage_writer_begin(expect <= 0 ? STORAGE_OP_SAVE :
											STORAGE_OP_UPDATE);
	StorageSaveArgs a;
	bool		live;
	int64		actual;

	if (w == NULL)
		return false;
	a.id = id;
	a.expect = expect;
	a.data_null = PG_ARGISNULL(1);
	a.data = a.data_null ? (Datum) 0 : PG_GETARG_DATUM(1);
	a.expires_null = PG_ARGISNULL(3);
	a.expires = a.expires_null ? (Datum) 0 : PG_GETARG_DATUM(3);
	a.format_null = PG_ARGISNULL(4);
	a.format = a.format_null ? (Datum) 0 : PG_GETARG_DATUM(4);
	*result = storage_writer_save(w, &a, now, &live, &actual);
	storage_writer_end(w);
	if (*result == 0)
		storage_raise_conflict(id, expect, live, actual);
	return true;
}

/*
 * storage_save(id, data, expect_version, expires_at, format) -> new version
 */
Datum
storage_save(PG_FUNCTION_ARGS)
{
	Oid			argtypes[6] = {TEXTOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID,
	TIMESTAMPTZOID, INT8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	text	   *id = storage_id_arg(fcinfo, 0);
	int64		expect;
	TimestampTz now;
	SPIPlanPtr	plan;
	int			ret;
	int64		result;
	bool		isnull;

	storage_require_arg(fcinfo, 2, "expect_version");
	expect = PG_GETARG_INT64(2);
	if (expect == PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("version would overflow bigint"),
				 errdetail("expect_version is " INT64_FORMAT "; the next version cannot be represented.",
						   expect)));

	now = storage_now();
	if (save_direct(fcinfo, id, expect, now, &result))
		PG_RETURN_INT64(result);

	values[0] = PointerGetDatum(id);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[2] = PG_ARGISNULL(3) ? 'n' : ' ';
	values[3] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[3] = PG_ARGISNULL(4) ? 'n' : ' ';
	values[4] = TimestampTzGetDatum(now);
	values[5] = Int64GetDatum(expect);

	SPI_connect();
	if (expect < 0)
		plan = storage_plan(PLAN_SAVE_UPSERT, save_upsert_sql, 5, argtypes);
	else if (expect == 0)
		plan = storage_plan(PLAN_SAVE_CREATE, save_create_sql, 5, argtypes);
	else
		plan = storage_plan(PLAN_SAVE_UPDATE, save_update_sql, 6, argtypes);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING && ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not save record: %s", SPI_result_code_string(ret));

	if (SPI_processed == 0)
		storage_report_conflict(PointerGetDatum(id), expect, now);

	result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										 SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(result);
}

/*
 * storage_delete(id) -> true if a live record was removed
 *
 * An expired record is removed too (it would be purged anyway), but reports
 * false because to the caller it did not exist.
 */
Datum
storage_delete(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];
	SPIPlanPtr	plan;
	bool		live = false;
	text	   *id = storage_id_arg(fcinfo, 0);
	TimestampTz now = storage_now();
	StorageWriter *w = storage_writer_begin(STORAGE_OP_DELETE);

	if (w != NULL)
	{
		live = storage_writer_delete(w, id, now);
		storage_writer_end(w);
		PG_RETURN_BOOL(live);
	}

	values[0] = PointerGetDatum(id);
	values[1] = TimestampTzGetDatum(now);

	SPI_connect();
	plan = storage_plan(PLAN_DELETE, delete_sql, 2, argtypes);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
		elog(ERROR, "could not delete record");
	if (SPI_processed > 0)
	{
		bool		isnull;

		live = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
		if (!live)
			storage_feed_expired(id);
	}
	SPI_finish();
	PG_RETURN_BOOL(live);
}

/* $1 id, $2 expires_at, $3 now, $4 expect_version (< 1: any) */
static const char *const touch_sql =
"UPDATE %1$s AS r SET expires_at = $2 "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND " LIVE("r", "$3") " "
"  AND ($4 OPERATOR(pg_catalog.<) 1 OR r.version OPERATOR(pg_catalog.=) $4) "
"RETURNING 1";

/*
 * storage_touch(id, expires_at, expect_version) -> true if touched
 *
 * Moves a live record's expiry without changing its data or version, so a
 * session store can extend a session on every request without breaking an
 * optimistic lock held elsewhere.  Within one expiry slot this is a HOT
 * update.
 */
Datum
storage_touch(PG_FUNCTION_ARGS)
{
	Oid			argtypes[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	bool		touched;
	text	   *id = storage_id_arg(fcinfo, 0);
	TimestampTz now;
	StorageWriter *w;

	storage_require_arg(fcinfo, 2, "expect_version");
	now = storage_now();
	w = storage_writer_begin(STORAGE_OP_UPDATE);
	if (w != NULL)
	{
		touched = storage_writer_touch(w, id, PG_ARGISNULL(1),
									   PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
									   PG_GETARG_INT64(2), now);
		storage_writer_end(w);
		PG_RETURN_BOOL(touched);
	}

	values[0] = PointerGetDatum(id);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	values[2] = TimestampTzGetDatum(now);
	values[3] = PG_GETARG_DATUM(2);

	SPI_connect();
	if (SPI_execute_plan(storage_plan(PLAN_TOUCH, touch_sql, 4, argtypes),
						 values, nulls, false, 0) < 0)
		elog(ERROR, "could not touch record");
	touched = SPI_processed > 0;
	if (touched)
		storage_feed_touched(id);
	SPI_finish();
	PG_RETURN_BOOL(touched);
}
