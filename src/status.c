/*-------------------------------------------------------------------------
 *
 * status.c
 *	  The extension's shared memory: the expiry worker's state, one slot
 *	  per database it serves, shown to SQL by storage_worker_status() (the
 *	  storage_status view is built on it), and the condition variables
 *	  that wake lock waiters (lock_api.c).
 *
 * Exists only when the library is in shared_preload_libraries; without
 * it, storage_worker_status() reports "not running" and lock waiters
 * fall back to sleeping with a backoff.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_worker_status);
PG_FUNCTION_INFO_V1(storage_worker_loaded);
PG_FUNCTION_INFO_V1(storage_expiry_notice);
PG_FUNCTION_INFO_V1(storage_record_counts);

#define STATUS_TRANCHE "storage status"

/*
 * lock guards launcher_pid and slots[]: shared to read, exclusive to
 * change.  An LWLock rather than a spinlock because the slot loops are
 * storage.status_slots long.
 */
typedef struct StatusShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	ConditionVariable lock_cv[STG_LOCK_CV_SLOTS];
	StgDbStatus slots[FLEXIBLE_ARRAY_MEMBER];
} StatusShared;

#define STATUS_SHARED_SIZE \
	add_size(offsetof(StatusShared, slots), \
			 mul_size(stg_status_slots, sizeof(StgDbStatus)))

bool		stg_preloaded = false;
static StatusShared *shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
status_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(STATUS_SHARED_SIZE));
	RequestNamedLWLockTranche(STATUS_TRANCHE, 1);
}

static void
status_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("storage expiry status", STATUS_SHARED_SIZE, &found);
	if (!found)
	{
		int			i;

		memset(shared, 0, STATUS_SHARED_SIZE);
		shared->lock = &(GetNamedLWLockTranche(STATUS_TRANCHE))->lock;
		for (i = 0; i < STG_LOCK_CV_SLOTS; i++)
			ConditionVariableInit(&shared->lock_cv[i]);
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * The condition variable lock waiters for a token with this hash sleep on;
 * NULL without shared memory.  Tokens share slots, so a wake-up may be for
 * another token: waiters always re-check.
 */
ConditionVariable *
stg_lock_cv(uint32 hash)
{
	return shared ? &shared->lock_cv[hash % STG_LOCK_CV_SLOTS] : NULL;
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
stg_status_init(void)
{
	stg_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = status_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = status_shmem_startup;
}

void
stg_status_set_launcher(pid_t pid)
{
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	shared->launcher_pid = pid;
	LWLockRelease(shared->lock);
}

/*
 * Copies the slot of dboid into *out under the lock; returns false if the
 * database has none.
 */
bool
stg_status_get(Oid dboid, StgDbStatus *out)
{
	bool		found = false;
	int			i;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	for (i = 0; i < stg_status_slots && !found; i++)
	{
		if (shared->slots[i].dboid == dboid)
		{
			*out = shared->slots[i];
			found = true;
		}
	}
	LWLockRelease(shared->lock);
	return found;
}

/*
 * Replaces the slot of st->dboid (taking a free one if needed).  With more
 * databases than slots the extra ones are purged but not shown (and are
 * not backed off: see worker.c).
 */
void
stg_status_put(const StgDbStatus *st)
{
	int			i;
	int			free_slot = -1;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < stg_status_slots; i++)
	{
		if (shared->slots[i].dboid == st->dboid)
			break;
		if (free_slot < 0 && shared->slots[i].dboid == InvalidOid)
			free_slot = i;
	}
	if (i == stg_status_slots)
		i = free_slot;
	if (i >= 0)
		shared->slots[i] = *st;
	LWLockRelease(shared->lock);
}

/* Frees the slot of a database that no longer has the extension. */
void
stg_status_forget(Oid dboid)
{
	int			i;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < stg_status_slots; i++)
	{
		if (shared->slots[i].dboid == dboid)
			memset(&shared->slots[i], 0, sizeof(StgDbStatus));
	}
	LWLockRelease(shared->lock);
}

/*
 * Frees the slots of the databases not in dboids, the databases the
 * launcher visits: a database that was dropped (or stopped accepting
 * connections) is never visited again, so nothing else would free its slot
 * and new databases would find none.
 */
void
stg_status_keep_only(List *dboids)
{
	int			i;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < stg_status_slots; i++)
	{
		Oid			dboid = shared->slots[i].dboid;

		if (OidIsValid(dboid) && !list_member_oid(dboids, dboid))
			memset(&shared->slots[i], 0, sizeof(StgDbStatus));
	}
	LWLockRelease(shared->lock);
}

static bool notice_due = false;

static void
expiry_notice_xact_callback(XactEvent event, void *arg)
{
	if (!notice_due)
		return;
	if (event == XACT_EVENT_PRE_COMMIT)
		ereport(NOTICE,
				(errmsg("automatic expiry is off: storage is not in shared_preload_libraries"),
				 errhint("Add storage to shared_preload_libraries and restart, "
						 "or schedule SELECT storage_purge_expired() with pg_cron.")));
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_ABORT)
		notice_due = false;
}

/*
 * storage_expiry_notice(): called by the install script.  The NOTICE waits
 * for the end of the transaction, when CREATE EXTENSION has restored the
 * session's client_min_messages.
 */
Datum
storage_expiry_notice(PG_FUNCTION_ARGS)
{
	static bool registered = false;

	if (stg_preloaded)
		PG_RETURN_VOID();
	if (!registered)
	{
		RegisterXactCallback(expiry_notice_xact_callback, NULL);
		registered = true;
	}
	notice_due = true;
	PG_RETURN_VOID();
}

/* storage_worker_loaded() -> is the library in shared_preload_libraries */
Datum
storage_worker_loaded(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(stg_preloaded);
}

/*
 * storage_worker_status() -> (state, launcher_pid, last_start, last_end,
 *		rows_last, rows_total, last_error, skipped_last, skipped_total,
 *		last_skip_reason, consecutive_failures, backoff_until,
 *		log_lines_suppressed) for the current database.  Release 1.0's SQL
 *		declares only the first seven columns; heap_form_tuple takes as many
 *		as the declaration has.
 */
#define WORKER_STATUS_COLS 13

Datum
storage_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[WORKER_STATUS_COLS];
	bool		nulls[WORKER_STATUS_COLS];
	StgDbStatus st;
	pid_t		launcher = 0;
	bool		have;
	int			i;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	if (tupdesc->natts > WORKER_STATUS_COLS)
		elog(ERROR, "return type has %d columns, expected at most %d",
			 tupdesc->natts, WORKER_STATUS_COLS);
	for (i = 0; i < WORKER_STATUS_COLS; i++)
	{
		values[i] = (Datum) 0;
		nulls[i] = true;
	}
	nulls[0] = false;

	if (shared != NULL)
	{
		LWLockAcquire(shared->lock, LW_SHARED);
		launcher = shared->launcher_pid;
		LWLockRelease(shared->lock);
	}

	have = stg_status_get(MyDatabaseId, &st);
	if (!stg_preloaded)
		values[0] = CStringGetTextDatum("not running: storage is not in shared_preload_libraries");
	else if (!stg_autopurge)
		values[0] = CStringGetTextDatum("disabled: storage.autopurge is off");
	else if (launcher == 0)
		values[0] = CStringGetTextDatum("not running: launcher not started (hot standby, or starting)");
	else if (!have)
		values[0] = CStringGetTextDatum("waiting for the first purge");
	else if (st.purging)
		values[0] = CStringGetTextDatum("purging");
	else if (st.failures > 0)
		values[0] = CStringGetTextDatum(psprintf("backing off: the last %d visits failed",
												 st.failures));
	else
		values[0] = CStringGetTextDatum("idle");

	/* the figures of earlier purges stay visible whatever the state */
	if (have)
	{
		values[2] = TimestampTzGetDatum(st.last_start);
		nulls[2] = st.last_start == 0;
		values[3] = TimestampTzGetDatum(st.last_end);
		nulls[3] = st.last_end == 0 || st.purging;
		values[4] = Int64GetDatum(st.rows_last);
		nulls[4] = false;
		values[5] = Int64GetDatum(st.rows_total);
		nulls[5] = false;
		values[6] = CStringGetTextDatum(st.last_error);
		nulls[6] = st.last_error[0] == '\0';
		values[7] = Int64GetDatum(st.skipped_last);
		nulls[7] = false;
		values[8] = Int64GetDatum(st.skipped_total);
		nulls[8] = false;
		values[9] = CStringGetTextDatum(st.skip_reason);
		nulls[9] = st.skip_reason[0] == '\0';
		values[10] = Int32GetDatum(st.failures);
		nulls[10] = false;
		values[11] = TimestampTzGetDatum(st.backoff_until);
		nulls[11] = st.backoff_until == 0;
		values[12] = Int64GetDatum(st.log_suppressed_total);
		nulls[12] = false;
	}
	if (launcher != 0)
	{
		values[1] = Int32GetDatum(launcher);
		nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/* $1 now, $2 the end of its expiry slot; as the purge finds them */
static const char *const count_expired_sql =
"SELECT pg_catalog.count(*) FROM %s AS r "
"WHERE r.purge_after OPERATOR(pg_catalog.<=) $2 "
"  AND r.expires_at OPERATOR(pg_catalog.<=) $1";

static const char *const count_live_sql =
"SELECT pg_catalog.count(*) FROM %s AS r "
"WHERE " LIVE("r", "$1");

static int64
count_records(const char *query_fmt, Datum *args)
{
	Oid			argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	bool		isnull;
	int			ret;

	ret = SPI_execute_with_args(psprintf(query_fmt, stg_records_table()),
								2, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count records: %s", SPI_result_code_string(ret));
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * storage_record_counts(exact boolean) -> (live_records, live_is_estimate,
 *		expired_records), the counts of storage_status.  All NULL when the
 *		records table is missing (renamed, moved to another schema): then
 *		storage_status must still show why nothing is purged.
 */
Datum
storage_record_counts(PG_FUNCTION_ARGS)
{
	bool		exact = !PG_ARGISNULL(0) && PG_GETARG_BOOL(0);
	TupleDesc	tupdesc;
	Datum		values[3];
	bool		nulls[3] = {true, true, true};
	Oid			relid;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	relid = stg_records_relid(true);
	if (OidIsValid(relid))
	{
		TimestampTz now = stg_now();
		Datum		args[2];
		Relation	rel;
		float4		reltuples;
		int64		expired;
		int64		live;
		bool		estimate;

		/* reltuples < 0: never vacuumed or analyzed, no estimate */
		rel = table_open(relid, AccessShareLock);
		reltuples = rel->rd_rel->reltuples;
		table_close(rel, NoLock);

		args[0] = TimestampTzGetDatum(now);
		args[1] = TimestampTzGetDatum(stg_slot_end(now));
		SPI_connect();
		expired = count_records(count_expired_sql, args);
		estimate = !exact && reltuples >= 0;
		if (estimate)
			live = Max((int64) reltuples - expired, 0);
		else
			live = count_records(count_live_sql, args);
		SPI_finish();

		values[0] = Int64GetDatum(live);
		values[1] = BoolGetDatum(estimate);
		values[2] = Int64GetDatum(expired);
		nulls[0] = nulls[1] = nulls[2] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
