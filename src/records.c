/*-------------------------------------------------------------------------
 *
 * records.c
 *	  The provider functions on single records: storage_save() with
 *	  optimistic locking, storage_delete() and storage_touch(), and the
 *	  errors of a save that wrote nothing.  The rules themselves are the
 *	  write core's (write.c); storage_fetch() is an inlinable SQL function
 *	  in the install script.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_save);
PG_FUNCTION_INFO_V1(storage_delete);
PG_FUNCTION_INFO_V1(storage_touch);

/*
 * Raises the error of a save that wrote nothing (r, from the write core):
 * the version overflow, or the version conflict with what was there.
 */
void
stg_raise_conflict(const text *id, int64 expect, const StgWriteResult *r)
{
	char	   *idstr = text_to_cstring(id);
	char		expected[64];

	Assert(r->status != STG_WRITE_OK && r->status != STG_WRITE_NOT_FOUND);
	if (r->status == STG_WRITE_OVERFLOW)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("version would overflow bigint"),
				 errdetail("Record \"%s\" already has version " INT64_FORMAT ".",
						   idstr, PG_INT64_MAX)));

	if (expect == 0)
		snprintf(expected, sizeof(expected), "no live record");
	else
		snprintf(expected, sizeof(expected), "version " INT64_FORMAT, expect);

	if (!r->live)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_VERSION_CONFLICT),
				 errmsg("version conflict"),
				 errdetail("Record \"%s\": expected %s, but no live record exists.",
						   idstr, expected)));
	ereport(ERROR,
			(errcode(ERRCODE_STORAGE_VERSION_CONFLICT),
			 errmsg("version conflict"),
			 errdetail("Record \"%s\": expected %s, but the live record has version " INT64_FORMAT ".",
					   idstr, expected, r->actual)));
}

/*
 * storage_save(id, data, expect_version, expires_at, format) -> new version
 */
Datum
storage_save(PG_FUNCTION_ARGS)
{
	StgSaveArgs a = {0};
	StgWriteResult r;

	a.id = stg_id_arg(fcinfo, 0);
	stg_require_arg(fcinfo, 2, "expect_version");
	a.expect = PG_GETARG_INT64(2);
	if (a.expect == PG_INT64_MAX)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("version would overflow bigint"),
				 errdetail("expect_version is " INT64_FORMAT "; the next version cannot be represented.",
						   a.expect)));
	a.data_null = PG_ARGISNULL(1);
	a.data = a.data_null ? (Datum) 0 : PG_GETARG_DATUM(1);
	a.expires_null = PG_ARGISNULL(3);
	a.expires = a.expires_null ? (Datum) 0 : PG_GETARG_DATUM(3);
	a.format_null = PG_ARGISNULL(4);
	a.format = a.format_null ? (Datum) 0 : PG_GETARG_DATUM(4);

	r = stg_write_save(&a, stg_now());
	if (r.status != STG_WRITE_OK)
		stg_raise_conflict(a.id, a.expect, &r);
	PG_RETURN_INT64(r.version);
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
	text	   *id = stg_id_arg(fcinfo, 0);

	PG_RETURN_BOOL(stg_write_delete(id, -1, stg_now()) == STG_WRITE_OK);
}

/*
 * storage_touch(id, expires_at, expect_version) -> true if touched
 *
 * Moves a live record's expiry without changing its data or version, so a
 * session store can extend a session on every request without breaking an
 * optimistic lock held elsewhere.
 */
Datum
storage_touch(PG_FUNCTION_ARGS)
{
	text	   *id = stg_id_arg(fcinfo, 0);

	stg_require_arg(fcinfo, 2, "expect_version");
	PG_RETURN_BOOL(stg_write_touch(id, PG_ARGISNULL(1),
								   PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1),
								   PG_GETARG_INT64(2), stg_now()) == STG_WRITE_OK);
}
