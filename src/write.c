/*-------------------------------------------------------------------------
 *
 * write.c
 *	  The write core: it owns the record rules.  Saving with each expect
 *	  mode (-1 unconditional, 0 create, N versioned), compare-and-swap,
 *	  deleting, touching and the lock fence are each written here once, as
 *	  one entry point that takes the direct write path (direct.c) where it
 *	  behaves exactly like the SPI statement, and runs the statement
 *	  otherwise.  The entry points return what happened instead of raising,
 *	  so that storage_save(), the batch functions, the bucket functions and
 *	  the locks, which all write through them, each report it their way.
 *
 * Each statement is one rule, so that READ COMMITTED's re-check of a
 * concurrently updated row decides races: of many sessions saving the same
 * id with the same expect_version exactly one UPDATE still matches after
 * waiting for the row lock, and concurrent creates meet in INSERT ... ON
 * CONFLICT, which never raises unique_violation.  The direct path decides
 * the same races the same way (see direct.c) and judges each record with
 * stg_save_verdict(), the one statement of the save rules in C.
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
static StgPlan save_upsert_plan;

/* same parameters; replaces only an expired record */
static const char *const save_create_sql =
"INSERT INTO %1$s AS r (id, version, expires_at, format, data) "
"VALUES ($1, 1, $3, $4, $2) "
"ON CONFLICT (id) DO UPDATE SET "
"  version = 1, expires_at = excluded.expires_at, "
"  format = excluded.format, data = excluded.data "
"WHERE NOT " LIVE("r", "$5") " "
"RETURNING version";
static StgPlan save_create_plan;

/* same parameters plus $6 expect_version */
static const char *const save_update_sql =
"UPDATE %1$s AS r SET version = r.version OPERATOR(pg_catalog.+) 1, "
"  expires_at = $3, format = $4, data = $2 "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND r.version OPERATOR(pg_catalog.=) $6 AND " LIVE("r", "$5") " "
"RETURNING r.version";
static StgPlan save_update_plan;

/* same parameters plus $6 the data the live record must have */
static const char *const save_cas_sql =
"UPDATE %1$s AS r SET version = r.version OPERATOR(pg_catalog.+) 1, "
"  expires_at = $3, format = $4, data = $2 "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND r.data OPERATOR(pg_catalog.=) $6 AND " LIVE("r", "$5") " "
"  AND r.version OPERATOR(pg_catalog.<>) 9223372036854775807 "
"RETURNING r.version";
static StgPlan save_cas_plan;

/* $1 id, $2 now, $3 match_data: the live record, after a save failed */
static const char *const save_failure_sql =
"SELECT r.version, r.data OPERATOR(pg_catalog.=) $3 FROM %1$s AS r "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND " LIVE("r", "$2");
static StgPlan save_failure_plan;

/* $1 id, $2 now */
static const char *const delete_sql =
"DELETE FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) $1 RETURNING " LIVE("r", "$2");
static StgPlan delete_plan;

/* same plus $3 the version the live record must have */
static const char *const delete_version_sql =
"DELETE FROM %1$s AS r "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND r.version OPERATOR(pg_catalog.=) $3 "
"  AND " LIVE("r", "$2") " "
"RETURNING true";
static StgPlan delete_version_plan;

/* $1 id, $2 expires_at, $3 now, $4 expect_version (< 1: any) */
static const char *const touch_sql =
"UPDATE %1$s AS r SET expires_at = $2 "
"WHERE r.id OPERATOR(pg_catalog.=) $1 AND " LIVE("r", "$3") " "
"  AND ($4 OPERATOR(pg_catalog.<) 1 OR r.version OPERATOR(pg_catalog.=) $4) "
"RETURNING 1";
static StgPlan touch_plan;

/* $1 id, $2 version */
static const char *const set_version_sql =
"UPDATE %1$s AS r SET version = $2 WHERE r.id OPERATOR(pg_catalog.=) $1";
static StgPlan set_version_plan;

/* $1 ids, sorted */
static const char *const many_lock_sql =
"SELECT 1 FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) ANY ($1) "
"ORDER BY r.id FOR UPDATE";
static StgPlan many_lock_plan;

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
static StgPlan many_upsert_plan;

static const char *const many_create_sql =
"INSERT INTO %1$s AS r (id, version, expires_at, format, data) "
"SELECT u.id, 1, u.e, u.f, u.d FROM unnest($1, $2, $3, $4) AS u(id, d, e, f) "
"ORDER BY u.id "
"ON CONFLICT (id) DO UPDATE SET "
"  version = 1, expires_at = excluded.expires_at, "
"  format = excluded.format, data = excluded.data "
"WHERE NOT " LIVE("r", "$5") " "
"RETURNING r.id, r.version";
static StgPlan many_create_plan;

/* same plus $6 expect_versions */
static const char *const many_update_sql =
"UPDATE %1$s AS r SET version = r.version OPERATOR(pg_catalog.+) 1, "
"  expires_at = u.e, format = u.f, data = u.d "
"FROM unnest($1, $2, $3, $4, $6) AS u(id, d, e, f, v) "
"WHERE r.id OPERATOR(pg_catalog.=) u.id AND r.version OPERATOR(pg_catalog.=) u.v AND " LIVE("r", "$5") " "
"RETURNING r.id, r.version";
static StgPlan many_update_plan;

/* $1 ids, $2 now */
static const char *const many_delete_sql =
"WITH d AS (DELETE FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) ANY ($1) "
"           RETURNING %2$s.storage_feed_deleted(r.id, " LIVE("r", "$2") ") AS live) "
"SELECT pg_catalog.count(*) FROM d WHERE d.live";
static StgPlan many_delete_plan;

/*
 * The save rules: what a save does to a record that is live or not, at
 * version actual, whose data equals the compare-and-swap's match_data or
 * not.  OK sets *version to the version to write.  Both paths judge by it:
 * the direct path before writing, the statement path after a statement
 * wrote nothing, to tell why.
 */
StgWriteStatus
stg_save_verdict(const StgSaveArgs *a, bool live, int64 actual, bool matches,
				 int64 *version)
{
	Assert(a->match_data == NULL || a->expect < 0);
	if (!live)
	{
		if (a->expect > 0 || a->match_data != NULL)
			return STG_WRITE_CONFLICT;
		*version = 1;
		return STG_WRITE_OK;
	}
	if (a->expect == 0)
		return STG_WRITE_EXISTS;
	if ((a->expect > 0 && a->expect != actual) ||
		(a->match_data != NULL && !matches))
		return STG_WRITE_CONFLICT;
	if (actual == PG_INT64_MAX)
		return STG_WRITE_OVERFLOW;
	*version = actual + 1;
	return STG_WRITE_OK;
}

/* The direct path's operation for a save: an update unless it may insert. */
static StgOp
save_op(const StgSaveArgs *a)
{
	return a->expect > 0 || a->match_data != NULL ?
		STG_OP_UPDATE : STG_OP_SAVE;
}

/*
 * Why a save statement wrote nothing, read again only here, on the failure
 * path, so that successful saves pay nothing for the message.  Must be
 * called inside SPI_connect().
 */
static StgWriteResult
save_failure(const StgSaveArgs *a, TimestampTz now)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, BYTEAOID};
	Datum		values[3];
	char		nulls[3] = {' ', ' ', ' '};
	StgWriteResult r = {0};
	bool		matches = false;
	int64		version;

	/* an unconditional save writes nothing only at the largest version */
	if (a->expect < 0 && a->match_data == NULL)
	{
		r.status = STG_WRITE_OVERFLOW;
		r.live = true;
		r.actual = PG_INT64_MAX;
		return r;
	}
	values[0] = PointerGetDatum(a->id);
	values[1] = TimestampTzGetDatum(now);
	values[2] = PointerGetDatum(a->match_data);
	nulls[2] = a->match_data ? ' ' : 'n';
	if (SPI_execute_plan(stg_plan(&save_failure_plan, save_failure_sql, 3, argtypes),
						 values, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read the current version of a record");
	if (SPI_processed > 0)
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		m;

		r.live = true;
		r.actual = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		m = SPI_getbinval(tup, desc, 2, &isnull);
		matches = !isnull && DatumGetBool(m);
	}
	r.status = stg_save_verdict(a, r.live, r.actual, matches, &version);
	/* the record changed since the statement ran: still its failure */
	if (r.status == STG_WRITE_OK)
		r.status = a->expect == 0 ? STG_WRITE_EXISTS : STG_WRITE_CONFLICT;
	return r;
}

static StgWriteResult
save_by_statement(const StgSaveArgs *a, TimestampTz now)
{
	Oid			argtypes[6] = {TEXTOID, BYTEAOID, TIMESTAMPTZOID, TEXTOID,
	TIMESTAMPTZOID, INT8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	StgWriteResult r = {0};
	SPIPlanPtr	plan;
	int			ret;

	values[0] = PointerGetDatum(a->id);
	values[1] = a->data;
	nulls[1] = a->data_null ? 'n' : ' ';
	values[2] = a->expires;
	nulls[2] = a->expires_null ? 'n' : ' ';
	values[3] = a->format;
	nulls[3] = a->format_null ? 'n' : ' ';
	values[4] = TimestampTzGetDatum(now);
	values[5] = Int64GetDatum(a->expect);

	SPI_connect();
	if (a->match_data != NULL)
	{
		argtypes[5] = BYTEAOID;
		values[5] = PointerGetDatum(a->match_data);
		plan = stg_plan(&save_cas_plan, save_cas_sql, 6, argtypes);
	}
	else if (a->expect < 0)
		plan = stg_plan(&save_upsert_plan, save_upsert_sql, 5, argtypes);
	else if (a->expect == 0)
		plan = stg_plan(&save_create_plan, save_create_sql, 5, argtypes);
	else
		plan = stg_plan(&save_update_plan, save_update_sql, 6, argtypes);
	ret = SPI_execute_plan(plan, values, nulls, false, 0);
	if (ret != SPI_OK_INSERT_RETURNING && ret != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "could not save record: %s", SPI_result_code_string(ret));

	if (SPI_processed == 0)
		r = save_failure(a, now);
	else
	{
		bool		isnull;

		r.status = STG_WRITE_OK;
		r.version = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	return r;
}

/* Saves one record by the save rules; see StgSaveArgs. */
StgWriteResult
stg_write_save(const StgSaveArgs *a, TimestampTz now)
{
	StgWriter  *w = stg_writer_begin(save_op(a));
	StgWriteResult r;

	if (w == NULL)
		return save_by_statement(a, now);
	r = stg_writer_save(w, a, now);
	stg_writer_end(w);
	return r;
}

/* bytewise, as the id column's "C" collation orders */
int
stg_compare_ids(const text *a, const text *b)
{
	int			la = VARSIZE_ANY_EXHDR(a);
	int			lb = VARSIZE_ANY_EXHDR(b);
	int			c = memcmp(VARDATA_ANY(a), VARDATA_ANY(b), Min(la, lb));

	return c != 0 ? c : (la > lb) - (la < lb);
}

static int
compare_id_ptrs(const void *a, const void *b)
{
	return stg_compare_ids(*(text *const *) a, *(text *const *) b);
}

static int
compare_items(const void *a, const void *b)
{
	return stg_compare_ids(((const StgSaveItem *) a)->args.id,
						   ((const StgSaveItem *) b)->args.id);
}

/* Sorts a batch into id order, the order stg_write_save_many() takes. */
void
stg_sort_items(StgSaveItem *items, int n)
{
	qsort(items, n, sizeof(StgSaveItem), compare_items);
}

static ArrayType *
build_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype,
							  typlen, typbyval, typalign);
}

typedef enum SaveKind
{
	SAVE_UPSERT,				/* expect_version < 0 */
	SAVE_CREATE,				/* expect_version = 0 */
	SAVE_UPDATE,				/* expect_version > 0 */
	NUM_SAVE_KINDS
} SaveKind;

static SaveKind
kind_of(int64 expect)
{
	return expect < 0 ? SAVE_UPSERT : expect == 0 ? SAVE_CREATE : SAVE_UPDATE;
}

/*
 * Runs the statement for one kind of save over the items of that kind and
 * stores the returned versions into the (id-sorted) items.
 */
static void
save_kind(StgSaveItem *items, int n, SaveKind kind, TimestampTz now)
{
	static const char *const sql[NUM_SAVE_KINDS] =
	{many_upsert_sql, many_create_sql, many_update_sql};
	static StgPlan *const plans[NUM_SAVE_KINDS] =
	{&many_upsert_plan, &many_create_plan, &many_update_plan};
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
		const StgSaveArgs *a = &items[i].args;

		if (kind_of(a->expect) != kind)
			continue;
		cols[0][m] = PointerGetDatum(a->id);
		cols[1][m] = a->data;
		colnulls[1][m] = a->data_null;
		cols[2][m] = a->expires;
		colnulls[2][m] = a->expires_null;
		cols[3][m] = a->format;
		colnulls[3][m] = a->format_null;
		cols[4][m] = Int64GetDatum(a->expect);
		m++;
	}
	if (m == 0)
		return;

	values[0] = PointerGetDatum(build_array(cols[0], NULL, m, TEXTOID));
	values[1] = PointerGetDatum(build_array(cols[1], colnulls[1], m, BYTEAOID));
	values[2] = PointerGetDatum(build_array(cols[2], colnulls[2], m, TIMESTAMPTZOID));
	values[3] = PointerGetDatum(build_array(cols[3], colnulls[3], m, TEXTOID));
	values[4] = TimestampTzGetDatum(now);
	values[5] = PointerGetDatum(build_array(cols[4], NULL, m, INT8OID));

	plan = stg_plan(plans[kind], sql[kind],
					kind == SAVE_UPDATE ? 6 : 5, argtypes);
	if (SPI_execute_plan(plan, values, NULL, false, 0) < 0)
		elog(ERROR, "could not save records");

	for (i = 0; i < (int) SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		StgSaveItem key;
		StgSaveItem *hit;

		key.args.id = DatumGetTextPP(SPI_getbinval(tup, desc, 1, &isnull));
		hit = bsearch(&key, items, n, sizeof(StgSaveItem), compare_items);
		if (hit == NULL)
			elog(ERROR, "batch save returned an id it was not given");
		hit->version = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	}
}

/* locks the rows that exist, in id order, before the statements write */
static void
lock_existing(StgSaveItem *items, int n)
{
	Oid			argtypes[1] = {TEXTARRAYOID};
	Datum	   *ids = palloc(sizeof(Datum) * n);
	Datum		values[1];
	int			i;
	int			ret;

	for (i = 0; i < n; i++)
		ids[i] = PointerGetDatum(items[i].args.id);
	values[0] = PointerGetDatum(build_array(ids, NULL, n, TEXTOID));
	ret = SPI_execute_plan(stg_plan(&many_lock_plan, many_lock_sql, 1, argtypes),
						   values, NULL, false, 0);
	if (ret < 0)
		elog(ERROR, "could not lock records: %s", SPI_result_code_string(ret));
}

/* The first item not written, in the caller's order; -1 if none. */
static int
first_failure(const StgSaveItem *items, int n)
{
	int			first = -1;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (items[i].version == 0 &&
			(first < 0 || items[i].pos < items[first].pos))
			first = i;
	}
	return first;
}

/*
 * Saves a batch by the save rules, all records or none: a failed record
 * does not stop the others, so that the result can name the first failure
 * in the caller's order (items[*failed], *failed = -1 if none); the caller
 * raises it, which undoes them all.  items must be in id order and unique
 * (stg_sort_items), which is the order rows are locked in: two batches with
 * overlapping ids wait for each other instead of deadlocking.  The direct
 * path saves them one after the other; the statements lock the existing
 * rows first and then write each kind of save (unconditional, create,
 * versioned) with one set-based statement.
 */
StgWriteResult
stg_write_save_many(StgSaveItem *items, int n, TimestampTz now, int *failed)
{
	StgWriteResult r = {0};
	StgWriter  *w;
	bool		inserts = false;
	int			i;
	SaveKind	kind;

	r.status = STG_WRITE_OK;
	*failed = -1;
	if (n == 0)
		return r;
	for (i = 0; i < n; i++)
	{
		Assert(items[i].args.match_data == NULL);
		Assert(i == 0 || stg_compare_ids(items[i - 1].args.id, items[i].args.id) < 0);
		inserts |= items[i].args.expect <= 0;
	}

	w = stg_writer_begin(inserts ? STG_OP_SAVE : STG_OP_UPDATE);
	if (w != NULL)
	{
		stg_writer_walk(w);
		for (i = 0; i < n; i++)
		{
			StgWriteResult ri = stg_writer_save(w, &items[i].args, now);

			items[i].version = ri.status == STG_WRITE_OK ? ri.version : 0;
			if (ri.status != STG_WRITE_OK &&
				(*failed < 0 || items[i].pos < items[*failed].pos))
			{
				*failed = i;
				r = ri;
			}
		}
		stg_writer_end(w);
		return r;
	}

	SPI_connect();
	lock_existing(items, n);
	for (kind = 0; kind < NUM_SAVE_KINDS; kind++)
		save_kind(items, n, kind, now);
	*failed = first_failure(items, n);
	if (*failed >= 0)
		r = save_failure(&items[*failed].args, now);
	SPI_finish();
	return r;
}

/*
 * Deletes a record.  expect < 1: whatever its state, and an expired record
 * is removed too (it would be purged anyway) but reports NOT_FOUND because
 * to the caller it did not exist.  expect >= 1: only the live record at
 * that version.  OK if a live record was deleted.
 */
StgWriteStatus
stg_write_delete(text *id, int64 expect, TimestampTz now)
{
	Oid			argtypes[3] = {TEXTOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[3];
	StgWriter  *w = stg_writer_begin(STG_OP_DELETE);
	bool		live = false;

	if (w != NULL)
	{
		StgWriteStatus st = stg_writer_delete(w, id, expect, now);

		stg_writer_end(w);
		return st;
	}

	values[0] = PointerGetDatum(id);
	values[1] = TimestampTzGetDatum(now);
	values[2] = Int64GetDatum(expect);
	SPI_connect();
	if (SPI_execute_plan(expect < 1 ?
						 stg_plan(&delete_plan, delete_sql, 2, argtypes) :
						 stg_plan(&delete_version_plan, delete_version_sql, 3, argtypes),
						 values, NULL, false, 0) != SPI_OK_DELETE_RETURNING)
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
	return live ? STG_WRITE_OK : STG_WRITE_NOT_FOUND;
}

/*
 * Deletes the records ids (any order, duplicates allowed) by the rules of
 * stg_write_delete() with expect -1; returns how many were live.
 */
int64
stg_write_delete_many(text **ids, int n, TimestampTz now)
{
	Oid			argtypes[2] = {TEXTARRAYOID, TIMESTAMPTZOID};
	Datum		values[2];
	StgWriter  *w;
	bool		isnull;
	int64		count = 0;
	int			i;

	if (n == 0)
		return 0;
	/* in id order, as the statement's index scan would lock them */
	qsort(ids, n, sizeof(text *), compare_id_ptrs);
	w = stg_writer_begin(STG_OP_DELETE);
	if (w != NULL)
	{
		stg_writer_walk(w);
		for (i = 0; i < n; i++)
			count += stg_writer_delete(w, ids[i], -1, now) == STG_WRITE_OK;
		stg_writer_end(w);
		return count;
	}

	values[0] = PointerGetDatum(build_array((Datum *) ids, NULL, n, TEXTOID));
	values[1] = TimestampTzGetDatum(now);
	SPI_connect();
	if (SPI_execute_plan(stg_plan(&many_delete_plan, many_delete_sql, 2, argtypes),
						 values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not delete records");
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return count;
}

/*
 * Moves a live record's expiry without changing its data or version;
 * expect < 1 means any version.  OK if touched, else NOT_FOUND.  Within one
 * expiry slot this is a HOT update.
 */
StgWriteStatus
stg_write_touch(text *id, bool expires_null, Datum expires, int64 expect,
				TimestampTz now)
{
	Oid			argtypes[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT8OID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	StgWriter  *w = stg_writer_begin(STG_OP_UPDATE);
	bool		touched;

	if (w != NULL)
	{
		StgWriteStatus st = stg_writer_touch(w, id, expires_null, expires,
											 expect, now);

		stg_writer_end(w);
		return st;
	}

	values[0] = PointerGetDatum(id);
	values[1] = expires;
	nulls[1] = expires_null ? 'n' : ' ';
	values[2] = TimestampTzGetDatum(now);
	values[3] = Int64GetDatum(expect);
	SPI_connect();
	if (SPI_execute_plan(stg_plan(&touch_plan, touch_sql, 4, argtypes),
						 values, nulls, false, 0) < 0)
		elog(ERROR, "could not touch record");
	touched = SPI_processed > 0;
	if (touched)
		storage_feed_touched(id);
	SPI_finish();
	return touched ? STG_WRITE_OK : STG_WRITE_NOT_FOUND;
}

/*
 * Gives the record id, which this transaction has just written and so
 * holds, the version "version", live or not: the fencing token of a lock
 * just taken (lock_api.c).
 */
void
stg_write_set_version(text *id, int64 version)
{
	Oid			argtypes[2] = {TEXTOID, INT8OID};
	Datum		values[2];
	StgWriter  *w = stg_writer_begin(STG_OP_UPDATE);
	bool		done;

	Assert(version >= 1);
	if (w != NULL)
	{
		done = stg_writer_set_version(w, id, version);
		stg_writer_end(w);
	}
	else
	{
		values[0] = PointerGetDatum(id);
		values[1] = Int64GetDatum(version);
		SPI_connect();
		done = SPI_execute_plan(stg_plan(&set_version_plan, set_version_sql, 2, argtypes),
								values, NULL, false, 0) == SPI_OK_UPDATE &&
			SPI_processed == 1;
		SPI_finish();
	}
	if (!done)
		elog(ERROR, "could not set the version of record \"%s\"",
			 text_to_cstring(id));
}
