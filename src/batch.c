/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Batch operations, one round trip for many records:
 *	  storage_save_many(), storage_delete_many() and the id-array check that
 *	  the inlinable SQL function storage_fetch_many() calls.
 *
 * storage_save_many() is all or nothing: it validates every element first,
 * then saves the records in id order through the write core (write.c),
 * and if any record fails its check it raises SV001 naming the first such
 * id in the caller's order, which rolls back the whole statement.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_save_many);
PG_FUNCTION_INFO_V1(storage_delete_many);
PG_FUNCTION_INFO_V1(storage_check_ids_sql);

static void
check_length(const StgArrayArg *a, const char *name, int nids)
{
	if (a->n >= 0 && a->n != nids)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("arrays must have the same length"),
				 errdetail("ids has %d elements, %s has %d.", nids, name, a->n)));
}

/* Validates every id of an id array; returns them as detoasted texts. */
static text **
checked_ids(const StgArrayArg *ids)
{
	text	  **out = palloc(sizeof(text *) * Max(ids->n, 1));
	int			i;

	for (i = 0; i < ids->n; i++)
	{
		if (ids->nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("id must not be null"),
					 errdetail("Element %d of ids is null.", ids->lbound + i)));
		out[i] = DatumGetTextPP(ids->values[i]);
		stg_check_id("id", VARDATA_ANY(out[i]), VARSIZE_ANY_EXHDR(out[i]));
	}
	return out;
}

static StgSaveItem *
collect_items(FunctionCallInfo fcinfo, int *nitems, int *lbound)
{
	StgArrayArg ids = stg_array_arg(fcinfo, 0, "ids", true);
	StgArrayArg datas = stg_array_arg(fcinfo, 1, "datas", true);
	StgArrayArg expects = stg_array_arg(fcinfo, 2, "expect_versions", false);
	StgArrayArg expires = stg_array_arg(fcinfo, 3, "expires_ats", false);
	StgArrayArg formats = stg_array_arg(fcinfo, 4, "formats", false);
	text	  **idtexts;
	StgSaveItem *items;
	int			i;

	check_length(&datas, "datas", ids.n);
	check_length(&expects, "expect_versions", ids.n);
	check_length(&expires, "expires_ats", ids.n);
	check_length(&formats, "formats", ids.n);
	idtexts = checked_ids(&ids);

	items = palloc0(sizeof(StgSaveItem) * Max(ids.n, 1));
	for (i = 0; i < ids.n; i++)
	{
		StgSaveArgs *it = &items[i].args;

		items[i].pos = i;
		it->id = idtexts[i];
		it->data = datas.values[i];
		it->data_null = datas.nulls[i];
		it->expect = -1;
		if (expects.n >= 0)
		{
			if (expects.nulls[i])
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("expect_version must not be null"),
						 errdetail("Element %d of expect_versions is null.",
								   expects.lbound + i)));
			it->expect = DatumGetInt64(expects.values[i]);
			if (it->expect == PG_INT64_MAX)
				ereport(ERROR,
						(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						 errmsg("version would overflow bigint"),
						 errdetail("Element %d of expect_versions is " INT64_FORMAT ".",
								   expects.lbound + i, it->expect)));
		}
		it->expires_null = expires.n < 0 || expires.nulls[i];
		it->expires = it->expires_null ? (Datum) 0 : expires.values[i];
		it->format_null = formats.n < 0 || formats.nulls[i];
		it->format = it->format_null ? (Datum) 0 : formats.values[i];
	}

	stg_sort_items(items, ids.n);
	for (i = 1; i < ids.n; i++)
	{
		if (stg_compare_ids(items[i - 1].args.id, items[i].args.id) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("id \"%s\" appears more than once",
							text_to_cstring(items[i].args.id)),
					 errhint("Each id may be saved once per call.")));
	}
	*nitems = ids.n;
	*lbound = ids.lbound;
	return items;
}

/*
 * storage_save_many(ids, datas, expect_versions, expires_ats, formats)
 *		-> the new versions, aligned with ids: the result has the subscripts
 *		of ids, whatever its lower bound.  The other arrays are paired with
 *		ids by position, as unnest() pairs them.
 */
Datum
storage_save_many(PG_FUNCTION_ARGS)
{
	int			n;
	int			lbound;
	StgSaveItem *items = collect_items(fcinfo, &n, &lbound);
	Datum	   *versions;
	int			failed;
	StgWriteResult r;
	int			i;

	r = stg_write_save_many(items, n, stg_now(), &failed);
	if (failed >= 0)
		stg_raise_conflict(items[failed].args.id, items[failed].args.expect, &r);

	versions = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		versions[items[i].pos] = Int64GetDatum(items[i].version);
	PG_RETURN_ARRAYTYPE_P(construct_md_array(versions, NULL, 1, &n, &lbound,
											 INT8OID, sizeof(int64),
											 FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/* storage_delete_many(ids) -> how many live records were deleted */
Datum
storage_delete_many(PG_FUNCTION_ARGS)
{
	StgArrayArg ids = stg_array_arg(fcinfo, 0, "ids", true);
	text	  **idtexts = checked_ids(&ids);

	PG_RETURN_INT64(stg_write_delete_many(idtexts, ids.n, stg_now()));
}

/*
 * storage_check_ids(ids) returns ids or raises the id errors for the first
 * bad element; storage_fetch_many() calls it so that it can stay an
 * inlinable SQL function.
 */
Datum
storage_check_ids_sql(PG_FUNCTION_ARGS)
{
	StgArrayArg ids = stg_array_arg(fcinfo, 0, "ids", true);

	checked_ids(&ids);
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
