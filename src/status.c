/*-------------------------------------------------------------------------
 *
 * status.c
 *	  The extension's shared memory: the expiry worker's state, one slot
 *	  per database it serves, shown to SQL by storage_worker_status() (the
 *	  storage_status view is built on it), and the condition variables
 *	  that wake lock waiters (locks.c).
 *
 * Exists only when the library is in shared_preload_libraries; without
 * it, storage_worker_status() reports "not running" and lock waiters
 * fall back to sleeping with a backoff.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_worker_status);
PG_FUNCTION_INFO_V1(storage_worker_loaded);
PG_FUNCTION_INFO_V1(storage_expiry_notice);

#define STATUS_SLOTS 128

typedef struct StatusShared
{
	slock_t		mutex;
	pid_t		launcher_pid;
	StorageDbStatus slots[STATUS_SLOTS];
	ConditionVariable lock_cv[STORAGE_LOCK_CV_SLOTS];
} StatusShared;

bool		storage_preloaded = false;
static StatusShared *shared = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;

static void
status_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(StatusShared)));
}

static void
status_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("storage expiry status", sizeof(StatusShared), &found);
	if (!found)
	{
		int			i;

		memset(shared, 0, sizeof(StatusShared));
		SpinLockInit(&shared->mutex);
		for (i = 0; i < STORAGE_LOCK_CV_SLOTS; i++)
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
storage_lock_cv(uint32 hash)
{
	return shared ? &shared->lock_cv[hash % STORAGE_LOCK_CV_SLOTS] : NULL;
}

/* Called from _PG_init while shared_preload_libraries is processed. */
void
storage_status_init(void)
{
	storage_preloaded = true;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = status_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = status_shmem_startup;
}

void
storage_status_set_launcher(pid_t pid)
{
	SpinLockAcquire(&shared->mutex);
	shared->launcher_pid = pid;
	SpinLockRelease(&shared->mutex);
}

/*
 * Copies the slot of dboid into *out under the lock; returns false if the
 * database has none.
 */
bool
storage_status_get(Oid dboid, StorageDbStatus *out)
{
	bool		found = false;
	int			i;

	if (shared == NULL)
		return false;
	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < STATUS_SLOTS && !found; i++)
	{
		if (shared->slots[i].dboid == dboid)
		{
			*out = shared->slots[i];
			found = true;
		}
	}
	SpinLockRelease(&shared->mutex);
	return found;
}

/*
 * Replaces the slot of st->dboid (taking a free one if needed).  With more
 * databases than slots the extra ones are purged but not shown.
 */
void
storage_status_put(const StorageDbStatus *st)
{
	int			i;
	int			free_slot = -1;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < STATUS_SLOTS; i++)
	{
		if (shared->slots[i].dboid == st->dboid)
			break;
		if (free_slot < 0 && shared->slots[i].dboid == InvalidOid)
			free_slot = i;
	}
	if (i == STATUS_SLOTS)
		i = free_slot;
	if (i >= 0)
		shared->slots[i] = *st;
	SpinLockRelease(&shared->mutex);
}

/* Frees the slot of a database that no longer has the extension. */
void
storage_status_forget(Oid dboid)
{
	int			i;

	SpinLockAcquire(&shared->mutex);
	for (i = 0; i < STATUS_SLOTS; i++)
	{
		if (shared->slots[i].dboid == dboid)
			memset(&shared->slots[i], 0, sizeof(StorageDbStatus));
	}
	SpinLockRelease(&shared->mutex);
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

	if (storage_preloaded)
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
	PG_RETURN_BOOL(storage_preloaded);
}

/*
 * storage_worker_status() -> (state, launcher_pid, last_start, last_end,
 *		rows_last, rows_total, last_error) for the current database
 */
Datum
storage_worker_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, true, true, true, true, true, true};
	StorageDbStatus st;
	pid_t		launcher = 0;
	bool		have;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (shared != NULL)
	{
		SpinLockAcquire(&shared->mutex);
		launcher = shared->launcher_pid;
		SpinLockRelease(&shared->mutex);
	}

	have = storage_status_get(MyDatabaseId, &st);
	if (!storage_preloaded)
		values[0] = CStringGetTextDatum("not running: storage is not in shared_preload_libraries");
	else if (!storage_autopurge)
		values[0] = CStringGetTextDatum("disabled: storage.autopurge is off");
	else if (launcher == 0)
		values[0] = CStringGetTextDatum("not running: launcher not started (hot standby, or starting)");
	else if (!have)
		values[0] = CStringGetTextDatum("waiting for the first purge");
	else
		values[0] = CStringGetTextDatum(st.purging ? "purging" : "idle");

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
	}
	if (launcher != 0)
	{
		values[1] = Int32GetDatum(launcher);
		nulls[1] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
