/*-------------------------------------------------------------------------
 *
 * bucket_api.c
 *	  The bucket/key API on the records table: a value in bucket {b1,b2}
 *	  under key k is the record "b1/b2/k", so storage_fetch() reads what
 *	  storage_upsert_val() wrote and vice versa, and both expire and are
 *	  purged the same way.
 *
 * Names starting with "." are reserved for the extension (the locks live
 * in ".locks"), so they are rejected as input and never listed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"
#include "utils/tuplestore.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_create_val);
PG_FUNCTION_INFO_V1(storage_upsert_val);
PG_FUNCTION_INFO_V1(storage_compare_and_swap_val);
PG_FUNCTION_INFO_V1(storage_get_val);
PG_FUNCTION_INFO_V1(storage_get_keys);
PG_FUNCTION_INFO_V1(storage_get_items);
PG_FUNCTION_INFO_V1(storage_upsert_items);
PG_FUNCTION_INFO_V1(storage_delete_key);
PG_FUNCTION_INFO_V1(storage_delete_bucket);

/* $1 id, $2 now */
static const char *const get_sql =
"SELECT r.data FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) $1 AND " LIVE("r", "$2");
static StgPlan get_plan;

/* $1 first id, $2 end of range, $3 now */
static const char *const delete_range_sql =
"WITH d AS (DELETE FROM %1$s AS r "
"           WHERE r.id OPERATOR(pg_catalog.>=) $1 AND r.id OPERATOR(pg_catalog.<) $2 "
"           RETURNING %2$s.storage_feed_deleted(r.id, " LIVE("r", "$3") ") AS live) "
"SELECT pg_catalog.count(*) FROM d WHERE d.live";
static StgPlan delete_range_plan;

/* Raises 22023 unless name is a valid bucket element or key. */
static void
check_bucket_name(const char *what, const char *name)
{
	const char *why = stg_name_problem(name);

	if (why)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s \"%s\"", what, name),
				 errdetail_internal("%s", why)));
}

static char *
name_arg(FunctionCallInfo fcinfo, int argno, const char *what)
{
	char	   *name;

	stg_require_arg(fcinfo, argno, what);
	name = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	check_bucket_name(what, name);
	return name;
}

/* "b1/b2/" for {b1,b2}, "" for the root; validates every element */
static char *
bucket_id_prefix(FunctionCallInfo fcinfo, int argno, const char *what)
{
	StgArrayArg arr = stg_array_arg(fcinfo, argno, what, true);
	int			i;
	StringInfoData buf;

	initStringInfo(&buf);
	for (i = 0; i < arr.n; i++)
	{
		char	   *elem;

		if (arr.nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("bucket element must not be null"),
					 errdetail("Element %d of %s is null.", arr.lbound + i, what)));
		elem = TextDatumGetCString(arr.values[i]);
		check_bucket_name("bucket element", elem);
		appendStringInfo(&buf, "%s/", elem);
	}
	return buf.data;
}

/* NULL or the zero interval: never; else now + ttl, which must be later */
static bool
ttl_expiry(FunctionCallInfo fcinfo, int argno, TimestampTz now, TimestampTz *out)
{
	if (PG_ARGISNULL(argno))
		return false;
	return stg_ttl_expiry(PG_GETARG_INTERVAL_P(argno), now, true, out);
}

/* The bucket (argument 0) and key (argument 1) of a value function. */
typedef struct ValKey
{
	char	   *prefix;			/* the bucket's id prefix */
	char	   *key;
} ValKey;

static ValKey
val_key(FunctionCallInfo fcinfo)
{
	ValKey		k;

	k.prefix = bucket_id_prefix(fcinfo, 0, "bucket");
	k.key = name_arg(fcinfo, 1, "key");
	return k;
}

/*
 * The save of one value: bucket values have format NULL and expire after
 * the ttl argument ttl_argno (NULL or 0: never).
 */
static StgSaveArgs
val_args(FunctionCallInfo fcinfo, text *id, int64 expect, int ttl_argno,
		 TimestampTz now)
{
	StgSaveArgs a = {0};
	TimestampTz expires;

	a.id = id;
	a.expect = expect;
	a.data_null = PG_ARGISNULL(2);
	a.data = a.data_null ? (Datum) 0 : PG_GETARG_DATUM(2);
	a.expires_null = !ttl_expiry(fcinfo, ttl_argno, now, &expires);
	a.expires = a.expires_null ? (Datum) 0 : TimestampTzGetDatum(expires);
	a.format_null = true;
	return a;
}

/* storage_create_val(bucket, key, val, ttl): SV003 if the key is live */
Datum
storage_create_val(PG_FUNCTION_ARGS)
{
	ValKey		k = val_key(fcinfo);
	text	   *id = stg_joined_id(k.prefix, k.key);
	TimestampTz now = stg_now();
	StgSaveArgs a = val_args(fcinfo, id, 0, 3, now);

	if (stg_write_save(&a, now).status != STG_WRITE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_ALREADY_EXISTS),
				 errmsg("key \"%s\" already exists", k.key),
				 errdetail("Record \"%s\" is live.", text_to_cstring(id))));
	PG_RETURN_VOID();
}

/* storage_upsert_val(bucket, key, val, ttl) */
Datum
storage_upsert_val(PG_FUNCTION_ARGS)
{
	ValKey		k = val_key(fcinfo);
	TimestampTz now = stg_now();
	StgSaveArgs a = val_args(fcinfo, stg_joined_id(k.prefix, k.key), -1, 3, now);
	StgWriteResult r = stg_write_save(&a, now);

	if (r.status != STG_WRITE_OK)
		stg_raise_conflict(a.id, a.expect, &r);
	PG_RETURN_VOID();
}

/*
 * storage_compare_and_swap_val(bucket, key, val, prev_val, ttl): SV004
 * unless the live value equals prev_val.
 */
Datum
storage_compare_and_swap_val(PG_FUNCTION_ARGS)
{
	ValKey		k = val_key(fcinfo);
	TimestampTz now = stg_now();
	StgSaveArgs a;
	StgWriteResult r;

	if (PG_ARGISNULL(3) || VARSIZE_ANY_EXHDR(PG_GETARG_BYTEA_PP(3)) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("prev_val must not be null or empty"),
				 errhint("Use storage_create_val() to create a value.")));
	a = val_args(fcinfo, stg_joined_id(k.prefix, k.key), -1, 4, now);
	a.match_data = PG_GETARG_BYTEA_PP(3);
	r = stg_write_save(&a, now);
	if (r.status == STG_WRITE_OVERFLOW)
		stg_raise_conflict(a.id, a.expect, &r);
	if (r.status != STG_WRITE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_COMPARE_FAILED),
				 errmsg("compare failed for key \"%s\"", k.key),
				 errdetail("No live value of key \"%s\" equals prev_val.", k.key)));
	PG_RETURN_VOID();
}

static text *
prefix_end(const char *prefix)
{
	return DatumGetTextPP(DirectFunctionCall1(storage_prefix_end,
											  CStringGetTextDatum(prefix)));
}

/*
 * A walk over the live names directly in one bucket, in id order, on the
 * primary key.  Keys come one index entry each; a sub-bucket "s" comes
 * once, after which the scan restarts at prefix || "s0" ("0" follows "/"),
 * so the records inside it are never read.  (Through SPI the planner, not
 * knowing how wide a range is, chose a bitmap scan that read the whole
 * rest of the bucket.)  Names that are not valid keys or bucket elements
 * are skipped: reserved ones (starting with ".") and the empty name of ids
 * such as "b/" or "b//c", which storage_save() accepts but no bucket
 * function could address.  They still lie below the bucket's prefix, so
 * they make it non-empty to its parent's listing and
 * storage_delete_bucket() removes them with it.
 *
 * Where the direct read would skip what a SELECT enforces (row-level
 * security, inheritance children, an auditing module: see
 * stg_direct_refusal), the same walk runs over a cursor of walk_sql
 * instead, restarted the same way, so the caller sees exactly the rows the
 * SELECT shows it.
 */
typedef struct BucketWalk
{
	Relation	rel;
	Relation	idx;			/* direct: the primary key */
	IndexScanDesc scan;			/* direct: the scan on it */
	Portal		cursor;			/* via SPI: the cursor of walk_sql */
	SPITupleTable *rows;		/* via SPI: the rows fetched last */
	uint64		next_row;
	MemoryContext cxt;			/* the caller's, for the names returned */
	TupleTableSlot *slot;		/* the current key's row */
	ScanKeyData keys[2];		/* id >= cursor, id < end of the bucket */
	const char *prefix;
	int			plen;
	TimestampTz now;
} BucketWalk;

/* $1 first id, $2 end of the range; the columns in the table's order */
static const char *const walk_sql =
"SELECT r.id, r.version, r.expires_at, r.format, r.data FROM %1$s AS r "
"WHERE r.id OPERATOR(pg_catalog.>=) $1 AND r.id OPERATOR(pg_catalog.<) $2 "
"ORDER BY r.id";
static StgPlan walk_plan;

#define WALK_FETCH	64

/* (Re)starts the walk at the id in w->keys[0]. */
static void
walk_restart(BucketWalk *w)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	if (w->scan)
	{
		index_rescan(w->scan, w->keys, 2, NULL, 0);
		return;
	}
	if (w->cursor)
		SPI_cursor_close(w->cursor);
	if (w->rows)
		SPI_freetuptable(w->rows);
	w->rows = NULL;
	values[0] = w->keys[0].sk_argument;
	values[1] = w->keys[1].sk_argument;
	w->cursor = SPI_cursor_open(NULL, stg_plan(&walk_plan, walk_sql,
											   2, argtypes),
								values, NULL, true);
}

static void
walk_begin(BucketWalk *w, const char *prefix, TimestampTz now)
{
	memset(w, 0, sizeof(BucketWalk));
	w->cxt = CurrentMemoryContext;
	w->rel = table_open(stg_records_lock(AccessShareLock, false), NoLock);
	w->prefix = prefix;
	w->plen = strlen(prefix);
	w->now = now;
	ScanKeyInit(&w->keys[0], 1, BTGreaterEqualStrategyNumber, F_TEXT_GE,
				CStringGetTextDatum(prefix));
	w->keys[0].sk_collation = C_COLLATION_OID;
	ScanKeyInit(&w->keys[1], 1, BTLessStrategyNumber, F_TEXT_LT,
				PointerGetDatum(prefix_end(prefix)));
	w->keys[1].sk_collation = C_COLLATION_OID;

	if (stg_direct_refusal(w->rel, STG_OP_READ) != NULL)
	{
		SPI_connect();
		walk_restart(w);
		/* the cursor's descriptor goes with the cursor at a restart */
		w->slot = MakeSingleTupleTableSlot(CreateTupleDescCopy(w->cursor->tupDesc),
										   &TTSOpsHeapTuple);
		return;
	}
	w->idx = index_open(stg_primary_key(w->rel), AccessShareLock);
	w->slot = table_slot_create(w->rel, NULL);
	w->scan = stg_index_beginscan(w->rel, w->idx, GetActiveSnapshot(), 2, 0);
	walk_restart(w);
}

/* The next row of the range into w->slot; false at the end. */
static bool
walk_fetch(BucketWalk *w)
{
	if (w->scan)
		return index_getnext_slot(w->scan, ForwardScanDirection, w->slot);
	if (w->rows == NULL || w->next_row >= w->rows->numvals)
	{
		if (w->rows)
			SPI_freetuptable(w->rows);
		SPI_cursor_fetch(w->cursor, true, WALK_FETCH);
		w->rows = SPI_tuptable;
		w->next_row = 0;
		if (SPI_processed == 0)
			return false;
	}
	ExecStoreHeapTuple(w->rows->vals[w->next_row++], w->slot, false);
	return true;
}

/*
 * The next live name (palloc'd in the caller's context) or NULL at the
 * end; *is_key tells a key (whose row is then in w->slot) from a
 * sub-bucket.
 */
static char *
walk_next(BucketWalk *w, bool *is_key)
{
	while (walk_fetch(w))
	{
		bool		isnull;
		Datum		expires = slot_getattr(w->slot, STG_COL_EXPIRES_AT + 1, &isnull);
		text	   *id;
		const char *rest;
		const char *slash;
		int			restlen;
		int			len;
		char	   *name;

		CHECK_FOR_INTERRUPTS();
		if (!stg_live(isnull, expires, w->now))
			continue;
		id = DatumGetTextPP(slot_getattr(w->slot, STG_COL_ID + 1, &isnull));
		rest = VARDATA_ANY(id) + w->plen;
		restlen = VARSIZE_ANY_EXHDR(id) - w->plen;
		slash = memchr(rest, '/', restlen);
		len = slash ? slash - rest : restlen;
		name = MemoryContextAlloc(w->cxt, len + 1);
		memcpy(name, rest, len);
		name[len] = '\0';
		*is_key = (slash == NULL);
		if (slash)
		{
			w->keys[0].sk_argument =
				CStringGetTextDatum(psprintf("%s%s0", w->prefix, name));
			walk_restart(w);
		}
		if (stg_name_problem(name) == NULL)
			return name;
	}
	return NULL;
}

static void
walk_end(BucketWalk *w)
{
	ExecDropSingleTupleTableSlot(w->slot);
	if (w->scan)
	{
		index_endscan(w->scan);
		index_close(w->idx, AccessShareLock);
	}
	else
	{
		if (w->rows)
			SPI_freetuptable(w->rows);
		SPI_cursor_close(w->cursor);
		SPI_finish();
	}
	table_close(w->rel, AccessShareLock);
}

/* Does anything live lie below prefix? */
static bool
live_below(const char *prefix, TimestampTz now)
{
	BucketWalk	w;
	bool		is_key;
	bool		found;

	walk_begin(&w, prefix, now);
	found = walk_next(&w, &is_key) != NULL;
	walk_end(&w);
	return found;
}

Datum
storage_get_val(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];
	ValKey		k = val_key(fcinfo);
	TimestampTz now = stg_now();
	bool		isnull = true;
	Datum		result = (Datum) 0;
	bool		found;

	values[0] = PointerGetDatum(stg_joined_id(k.prefix, k.key));
	values[1] = TimestampTzGetDatum(now);
	SPI_connect();
	if (SPI_execute_plan(stg_plan(&get_plan, get_sql, 2, argtypes),
						 values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read value");
	found = SPI_processed > 0;
	if (found)
	{
		result = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = SPI_datumTransfer(result, false, -1);
	}
	SPI_finish();
	if (!found && live_below(psprintf("%s%s/", k.prefix, k.key), now))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is a bucket, not a key", k.key),
				 errhint("Use storage_get_keys() or storage_get_items() to read a bucket.")));
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_NOT_FOUND),
				 errmsg("key \"%s\" is not found", k.key)));
	if (isnull)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(result);
}

static int
compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Checks that the caller accepts a materialized set; returns its info. */
static ReturnSetInfo *
materialize_info(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		!(rsinfo->allowedModes & SFRM_Materialize))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));
	rsinfo->returnMode = SFRM_Materialize;
	return rsinfo;
}

/*
 * storage_get_keys(bucket): the live keys and non-empty sub-buckets
 * directly in the bucket.  The walk returns them in id order, which is not
 * name order ("a-b" sorts before "a/x", so sub-bucket "a" comes after key
 * "a-b") and may name "a" twice (a key and a sub-bucket): sort and skip
 * duplicates.
 */
Datum
storage_get_keys(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = materialize_info(fcinfo);
	char	   *prefix = bucket_id_prefix(fcinfo, 0, "bucket");
	BucketWalk	w;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	MemoryContext old;
	char	  **names;
	char	   *name;
	bool		is_key;
	int			n = 0;
	int			size = 64;
	int			i;

	names = palloc(sizeof(char *) * size);
	walk_begin(&w, prefix, stg_now());
	while ((name = walk_next(&w, &is_key)) != NULL)
	{
		if (n == size)
		{
			size *= 2;
			names = repalloc(names, sizeof(char *) * size);
		}
		names[n++] = name;
	}
	walk_end(&w);
	qsort(names, n, sizeof(char *), compare_names);

	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTemplateTupleDesc(1);
	TupleDescInitEntry(tupdesc, 1, "storage_get_keys", TEXTOID, -1, 0);
	store = tuplestore_begin_heap(true, false, work_mem);
	for (i = 0; i < n; i++)
	{
		Datum		value;
		bool		isnull = false;

		if (i > 0 && strcmp(names[i - 1], names[i]) == 0)
			continue;
		value = CStringGetTextDatum(names[i]);
		tuplestore_putvalues(store, tupdesc, &value, &isnull);
	}
	MemoryContextSwitchTo(old);
	rsinfo->setResult = store;
	rsinfo->setDesc = tupdesc;
	return (Datum) 0;
}

/*
 * storage_get_items(bucket) -> (key, val, expires_at): the live keys
 * directly in the bucket.  The walk already returns keys in key order (ids
 * differ only after the common prefix), and skips sub-buckets unread.
 */
Datum
storage_get_items(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = materialize_info(fcinfo);
	char	   *prefix = bucket_id_prefix(fcinfo, 0, "bucket");
	BucketWalk	w;
	TupleDesc	tupdesc;
	Tuplestorestate *store;
	MemoryContext old;
	char	   *name;
	bool		is_key;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	tupdesc = CreateTupleDescCopy(tupdesc);
	store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);

	walk_begin(&w, prefix, stg_now());
	while ((name = walk_next(&w, &is_key)) != NULL)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};

		if (!is_key)
			continue;
		values[0] = CStringGetTextDatum(name);
		values[1] = slot_getattr(w.slot, STG_COL_DATA + 1, &nulls[1]);
		if (!nulls[1])			/* the tuplestore must not keep a toast pointer */
			values[1] = PointerGetDatum(PG_DETOAST_DATUM_PACKED(values[1]));
		values[2] = slot_getattr(w.slot, STG_COL_EXPIRES_AT + 1, &nulls[2]);
		old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
		tuplestore_putvalues(store, tupdesc, values, nulls);
		MemoryContextSwitchTo(old);
	}
	walk_end(&w);
	rsinfo->setResult = store;
	rsinfo->setDesc = tupdesc;
	return (Datum) 0;
}

/* storage_upsert_items(bucket, keys, vals, ttl): all or nothing */
Datum
storage_upsert_items(PG_FUNCTION_ARGS)
{
	char	   *prefix = bucket_id_prefix(fcinfo, 0, "bucket");
	TimestampTz now = stg_now();
	TimestampTz expires;
	bool		expires_null;
	StgArrayArg keys;
	StgArrayArg vals;
	StgSaveItem *items;
	StgWriteResult r;
	char	  **sorted;
	int			nk;
	int			failed;
	int			i;

	keys = stg_array_arg(fcinfo, 1, "keys", true);
	vals = stg_array_arg(fcinfo, 2, "vals", true);
	nk = keys.n;
	if (keys.n != vals.n)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("arrays must have the same length"),
				 errdetail("keys has %d elements, vals has %d.", keys.n, vals.n)));
	items = palloc0(sizeof(StgSaveItem) * Max(nk, 1));
	sorted = palloc(sizeof(char *) * Max(nk, 1));
	for (i = 0; i < nk; i++)
	{
		if (keys.nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("key must not be null"),
					 errdetail("Element %d of keys is null.", keys.lbound + i)));
		sorted[i] = TextDatumGetCString(keys.values[i]);
		check_bucket_name("key", sorted[i]);
		items[i].pos = i;
		items[i].args.id = stg_joined_id(prefix, sorted[i]);
		items[i].args.expect = -1;
		items[i].args.data = vals.values[i];
		items[i].args.data_null = vals.nulls[i];
		items[i].args.format_null = true;
	}
	qsort(sorted, nk, sizeof(char *), compare_names);
	for (i = 1; i < nk; i++)
	{
		if (strcmp(sorted[i - 1], sorted[i]) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("key \"%s\" appears more than once", sorted[i])));
	}
	expires_null = !ttl_expiry(fcinfo, 3, now, &expires);
	for (i = 0; i < nk; i++)
	{
		items[i].args.expires_null = expires_null;
		items[i].args.expires = expires_null ? (Datum) 0 : TimestampTzGetDatum(expires);
	}

	stg_sort_items(items, nk);
	r = stg_write_save_many(items, nk, now, &failed);
	if (failed >= 0)
		stg_raise_conflict(items[failed].args.id, -1, &r);
	PG_RETURN_VOID();
}

/* Deletes the live records in [from, prefix_end(from)); returns the count. */
static int64
delete_range(const char *from)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[3];
	bool		isnull;
	int64		n;

	values[0] = CStringGetTextDatum(from);
	values[1] = PointerGetDatum(prefix_end(from));
	values[2] = TimestampTzGetDatum(stg_now());
	SPI_connect();
	if (SPI_execute_plan(stg_plan(&delete_range_plan, delete_range_sql, 3, argtypes),
						 values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not delete");
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return n;
}

Datum
storage_delete_key(PG_FUNCTION_ARGS)
{
	ValKey		k = val_key(fcinfo);
	text	   *id = stg_joined_id(k.prefix, k.key);

	if (stg_write_delete(id, -1, stg_now()) != STG_WRITE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_NOT_FOUND),
				 errmsg("key \"%s\" is not found", k.key)));
	PG_RETURN_VOID();
}

Datum
storage_delete_bucket(PG_FUNCTION_ARGS)
{
	char	   *parent = bucket_id_prefix(fcinfo, 0, "parent");
	char	   *bucket = name_arg(fcinfo, 1, "bucket");
	char	   *prefix = psprintf("%s%s/", parent, bucket);
	int64		n;

	stg_check_id("joined id", prefix, strlen(prefix));
	n = delete_range(prefix);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_NOT_FOUND),
				 errmsg("bucket \"%s\" is not found", bucket)));
	PG_RETURN_INT64(n);
}
