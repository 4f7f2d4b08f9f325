/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Batch operations, one round trip for many records:
 *	  storage_save_many(), storage_delete_many() and the id-array check that
 *	  the inlinable SQL function storage_fetch_many() calls.
 *
 * storage_save_many() is all or nothing: it validates every element first,
 * then saves the records in id order through the direct write path
 * (direct.c), and if any record fails its check it raises SV001 naming the
 * first such id in the caller's order, which rolls back the whole
 * statement.  Where the direct path does not apply it locks the existing
 * rows in id order and writes each kind of save (unversioned, create,
 * versioned) with one set-based statement.  Either way rows are locked in
 * id order, so two batches with overlapping ids wait for each other
 * instead of deadlocking.
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

typedef enum SaveKind
{
	SAVE_UPSERT,				/* expect_version < 0 */
	SAVE_CREATE,				/* expect_version = 0 */
	SAVE_UPDATE,				/* expect_version > 0 */
	NUM_SAVE_KINDS
} SaveKind;

typedef struct ManyItem
{
	int			pos;			/* position in the caller's arrays */
	text	   *id;
	Datum		data;
	bool		data_null;
	int64		expect;
	Datum		expires;
	bool		expires_null;
	Datum		format;
	bool		format_null;
	int64		version;		/* new version; 0 until written */
	bool		live;			/* on failure (direct path): what was there */
	int64		actual;
} ManyItem;


/* $1 ids, sorted */
static const char *const many_lock_sql =
"SELECT 1 FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) ANY ($1) "
"ORDER BY r.id FOR UPDATE";

/* $1 ids, $2 datas, $3 expires_ats, $4 formats, $5 now */
static const char *const many_upsert_sql =
"INSERT INTO %1$s AS r (id, version, expires_at, format, data) "
"SELECT u.id, 1, u.e, u.f, u.d FROM unnest($1, $2, $3, $4) AS u(id, d, e, f) "
"ORDER BY u.id "
"ON CONFLICT (id) DO UPDATE SET "
"  version = CASE WHEN " LIVE("r", "$5") " THEN r.version OPERATOR(pg_catalog.+) 1 ELSE 1 END, "
"  expires_at = excluded.expires_at, format = excluded.format, "
"  data = excluded.data "
"WHERE NOT (" LIVE("r", "$5") " AND r.version OPERATOR(pg_catalog.=) 9223372036854775807) "
"RETURNING r.id, r.version";

static const char *const many_create_sql =
"INSERT INTO %1$s AS r (id, version, expires_at, format, data) "
"SELECT u.id, 1, u.e, u.f, u.d FROM unnest($1, $2, $3, $4) AS u(id, d, e, f) "
"ORDER BY u.id "
"ON CONFLICT (id) DO UPDATE SET "
"  version = 1, expires_at = excluded.expires_at, "
"  format = excluded.format, data = excluded.data "
"WHERE NOT " LIVE("r", "$5") " "
"RETURNING r.id, r.version";

/* same plus $6 expect_versions */
static const char *const many_update_sql =
"UPDATE %1$s AS r SET version = r.version OPERATOR(pg_catalog.+) 1, "
"  expires_at = u.e, format = u.f, data = u.d "
"FROM unnest($1, $2, $3, $4, $6) AS u(id, d, e, f, v) "
"WHERE r.id OPERATOR(pg_catalog.=) u.id AND r.version OPERATOR(pg_catalog.=) u.v AND " LIVE("r", "$5") " "
"RETURNING r.id, r.version";

/* $1 ids, $2 now */
static const char *const many_delete_sql =
"WITH d AS (DELETE FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) ANY ($1) "
"           RETURNING %2$s.storage_feed_deleted(r.id, " LIVE("r", "$2") ") AS live) "
"SELECT pg_catalog.count(*) FROM d WHERE d.live";

static void
check_length(const StorageArrayArg *a, const char *name, int nids)
{
	if (a->n >= 0 && a->n != nids)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("arrays must have the same length"),
				 errdetail("ids has %d elements, %s has %d.", nids, name, a->n)));
}

/* Validates every id of an id array; returns them as detoasted texts. */
static text **
checked_ids(const StorageArrayArg *ids)
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
		storage_check_id("id", VARDATA_ANY(out[i]), VARSIZE_ANY_EXHDR(out[i]));
	}
	return out;
}

/* bytewise, as the id column's "C" collation orders */
static int
compare_ids(const text *a, const text *b)
{
	int			la = VARSIZE_ANY_EXHDR(a);
	int			lb = VARSIZE_ANY_EXHDR(b);
	int			c = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(la, lb));

	return c != 0 ? c : (la > lb) - (la < lb);
}

static int
compare_id_ptrs(const void *a, const void *b)
{
	return compare_ids(*(text *const *) a, *(text *const *) b);
}

static int
compare_items(const void *a, const void *b)
{
	return compare_ids(((const ManyItem *) a)->id, ((const ManyItem *) b)->id);
}

static SaveKind
kind_of(int64 expect)
{
	return expect < 0 ? SAVE_UPSERT : expect == 0 ? SAVE_CREATE : SAVE_UPDATE;
}

static ArrayType *
build_array(Datum *values, bool *nulls, int n, Oid elemtype, int lbound)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {lbound};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype,
							  typlen, typbyval, typalign);
}

/*
 * Runs the statement for one kind of save over the items of that kind and
 * stores the returned versions into the (id-sorted) items.
 */
static void
save_kind(ManyItem *items, int n, SaveKind kind, TimestampTz now)
{
	static const char *const sql[NUM_SAVE_KINDS] =
	{many_upsert_sql, many_create_sql, many_update_sql};
	static const StoragePlanId plan_ids[NUM_SAVE_KINDS] =
	{PLAN_MANY_UPSERT, PLAN_MANY_CREATE, PLAN_MANY_UPDATE};
	Oid			argtypes[6] = {TEXTARRAYOID, BYTEAARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID, TIMESTAMPTZOID, INT8ARRAYOID};
	Datum	   *cols[5];
	bool	   *colnulls[5];
	Datum		values[6];
	int			m = 0;
	int			i;
	int			c;
	SPIPlanPtr	plan;

	for (c = 0; c < 5; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		colnulls[c] = palloc0(sizeof(bool) * n);
	}
	for (i = 0; i < n; i++)
	{
		if (kind_of(items[i].expect) != kind)
			continue;
		cols[0][m] = PointerGetDatum(items[i].id);
		cols[1][m] = items[i].data;
		colnulls[1][m] = items[i].data_null;
		cols[2][m] = items[i].expires;
		colnulls[2][m] = items[i].expires_null;
		cols[3][m] = items[i].format;
		colnulls[3][m] = items[i].format_null;
		cols[4][m] = Int64GetDatum(items[i].expect);
		m++;
	}
	if (m == 0)
		return;

	values[0] = PointerGetDatum(build_array(cols[0], NULL, m, TEXTOID, 1));
	values[1] = PointerGetDatum(build_array(cols[1], colnulls[1], m, BYTEAOID, 1));
	values[2] = PointerGetDatum(build_array(cols[2], colnulls[2], m, TIMESTAMPTZOID, 1));
	values[3] = PointerGetDatum(build_array(cols[3], colnulls[3], m, TEXTOID, 1));
	values[4] = TimestampTzGetDatum(now);
	values[5] = PointerGetDatum(build_array(cols[4], NULL, m, INT8OID, 1));

	plan = storage_plan(plan_ids[kind], sql[kind],
						kind == SAVE_UPDATE ? 6 : 5, argtypes);
	if (SPI_execute_plan(plan, values, NULL, false, 0) < 0)
		elog(ERROR, "could not save records");

	for (i = 0; i < (int) SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		ManyItem	key;
		ManyItem   *hit;

		key.id = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
		hit = bsearch(&key, items, n, sizeof(ManyItem), compare_items);
		if (hit == NULL)
			elog(ERROR, "batch save returned an id it was not given");
		hit->version = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	}
}

/* Reports the first failed item in the caller's order, if any. */
static void
report_first_failure(ManyItem *items, int n, TimestampTz now)
{
	ManyItem   *first = NULL;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (items[i].version == 0 && (first == NULL || items[i].pos < first->pos))
			first = &items[i];
	}
	if (first == NULL)
		return;
	storage_report_conflict(PointerGetDatum(first->id), first->expect, now);
}

static ManyItem *
collect_items(FunctionCallInfo fcinfo, int *nitems, int *lbound)
{
	StorageArrayArg ids = storage_array_arg(fcinfo, 0, "ids", true);
	StorageArrayArg datas = storage_array_arg(fcinfo, 1, "datas", true);
	StorageArrayArg expects = storage_array_arg(fcinfo, 2, "expect_versions", false);
	StorageArrayArg expires = storage_array_arg(fcinfo, 3, "expires_ats", false);
	StorageArrayArg formats = storage_array_arg(fcinfo, 4, "formats", false);
	text	  **idtexts;
	ManyItem   *items;
	int			i;

	check_length(&datas, "datas", ids.n);
	check_length(&expects, "expect_versions", ids.n);
	check_length(&expires, "expires_ats", ids.n);
	check_length(&formats, "formats", ids.n);
	idtexts = checked_ids(&ids);

	items = palloc0(sizeof(ManyItem) * Max(ids.n, 1));
	for (i = 0; i < ids.n; i++)
	{
		ManyItem   *it = &items[i];

		it->pos = i;
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

	qsort(items, ids.n, sizeof(ManyItem), compare_items);
	for (i = 1; i < ids.n; i++)
	{
		if (compare_ids(items[i - 1].id, items[i].id) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("id \"%s\" appears more than once",
							text_to_cstring(items[i].id)),
					 errhint("Each id may be saved once per call.")));
	}
	*nitems = ids.n;
	*lbound = ids.lbound;
	return items;
}

static void
lock_existing(ManyItem *items, int n)
{
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum		values[1];
	int			i;
	int			ret;

	for (i = 0; i < n; i++)
		ids[i] = PointerGetDatum(items[i].id);
	values[0] = PointerGetDatum(build_array(ids, NULL, n, TEXTOID, 1));
	ret = SPI_execute_plan(storage_plan(PLAN_MANY_LOCK, many_lock_sql, 1, argtypes),
						   values, NULL, false, 0);
	if (ret < 0)
		elog(ERROR, "could not lock records: %s", SPI_result_code_string(ret));
}

/*
 * Saves the (id-sorted) items through the direct write path, one after
 * the other in id order, which is the lock order that keeps overlapping
 * batches from deadlocking.  A failed item does not stop the others, so
 * that the error can name the first failure in the caller's order; the
 * error then undoes them all.  False if the direct path does not apply.
 */
static bool
save_many_direct(ManyItem *items, int n, TimestampTz now)
{
	StorageWriter *w;
	ManyItem   *first = NULL;
	bool		inserts = false;
	int			i;

	for (i = 0; i < n; i++)
		inserts |= items[i].expect <= 0;
	w = storage_writer_begin(inserts ? STORAGE_OP_SAVE : STORAGE_OP_UPDATE);
	if (w == NULL)
		return false;
	storage_writer_walk(w);

	for (i = 0; i < n; i++)
	{
		ManyItem   *it = &items[i];
		StorageSaveArgs a;

		a.id = it->id;
		a.expect = it->expect;
		a.data = it->data;
		a.data_null = it->data_null;
		a.expires = it->expires;
		a.expires_null = it->expires_null;
		a.format = it->format;
		a.format_null = it->format_null;
		it->version = storage_writer_save(w, &a, now, &it->live, &it->actual);
		if (it->version == 0 && (first == NULL || it->pos < first->pos))
			first = it;
	}
	storage_writer_end(w);
	if (first)
		storage_raise_conflict(first->id, first->expect, first->live,
							   first->actual);
	return true;
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
	ManyItem   *items = collect_items(fcinfo, &n, &lbound);
	TimestampTz now = storage_now();
	Datum	   *versions;
	int			i;
	SaveKind	kind;

	if (n > 0 && !save_many_direct(items, n, now))
	{
		SPI_connect();
		lock_existing(items, n);
		for (kind = 0; kind < NUM_SAVE_KINDS; kind++)
			save_kind(items, n, kind, now);
		report_first_failure(items, n, now);
		SPI_finish();
	}

	versions = palloc(sizeof(Datum) * Max(n, 1));
	for (i = 0; i < n; i++)
		versions[items[i].pos] = Int64GetDatum(items[i].version);
	PG_RETURN_ARRAYTYPE_P(build_array(versions, NULL, n, INT8OID, lbound));
}

/* storage_delete_many(ids) -> how many live records were deleted */
Datum
storage_delete_many(PG_FUNCTION_ARGS)
{
	StorageArrayArg ids = storage_array_arg(fcinfo, 0, "ids", true);
	Oid			argtypes[2] = {TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		values[2];
	bool		isnull;
	int64		count;

	text	  **idtexts = checked_ids(&ids);
	TimestampTz now = storage_now();
	StorageWriter *w;

	if (ids.n == 0)
		PG_RETURN_INT64(0);
	w = storage_writer_begin(STORAGE_OP_DELETE);
	if (w != NULL)
	{
		int			i;

		/* in id order, as the statement's index scan would lock them */
		qsort(idtexts, ids.n, sizeof(text *), compare_id_ptrs);
		storage_writer_walk(w);
		count = 0;
		for (i = 0; i < ids.n; i++)
			count += storage_writer_delete(w, idtexts[i], now) ? 1 : 0;
		storage_writer_end(w);
		PG_RETURN_INT64(count);
	}
	values[0] = PG_GETARG_DATUM(0);
	values[1] = TimestampTzGetDatum(now);

	SPI_connect();
	if (SPI_execute_plan(storage_plan(PLAN_MANY_DELETE, many_delete_sql, 2, argtypes),
						 values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not delete records");
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(count);
}

/*
 * storage_check_ids(ids) returns ids or raises the id errors for the first
 * bad element; storage_fetch_many() calls it so that it can stay an
 * inlinable SQL function.
 */
Datum
storage_check_ids_sql(PG_FUNCTION_ARGS)
{
	StorageArrayArg ids = storage_array_arg(fcinfo, 0, "ids", true);

	checked_ids(&ids);
	PG_RETURN_DATUM(PG_GETARG_DATUM(0));
}
