/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Automatic expiry: the launcher background worker and the short-lived
 *	  per-database purge workers it starts, and their settings.
 *
 * The launcher connects to no database (pg_database is a shared catalog).
 * Every storage.purge_interval it lists the databases that accept
 * connections and visits them one at a time: it starts a dynamic worker
 * connected to that database and waits for it to exit.  The worker checks
 * whether the extension is installed there, purges in batches (each its
 * own short transaction, through storage_purge_batch(), the code behind
 * storage_purge_expired()) for at most PURGE_RUN_BUDGET_MS, records what
 * it did in shared memory (status.c) and exits.
 *
 * Why short-lived workers visiting databases in turn:
 *	- a worker is connected to a database for at most about a second, and
 *	  DROP DATABASE or CREATE DATABASE ... TEMPLATE wait up to 5 seconds
 *	  for other sessions to leave, so they are never refused because of it;
 *	- a database that was dropped costs nothing: the launcher does not see
 *	  it any more, and no worker is tied to it, so nothing can crash-loop;
 *	- a database where CREATE EXTENSION runs is purged on the next visit,
 *	  one where DROP EXTENSION ran is skipped quietly;
 *	- one purge at a time across the cluster keeps expiry to one core at
 *	  most on a busy machine.
 * The launcher starts only once recovery has finished (never on a hot
 * standby; after promotion it starts), never in binary-upgrade mode, and
 * the postmaster restarts it after a crash.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "storage.h"

/* how long one worker may purge before it exits and lets others run */
#define PURGE_RUN_BUDGET_MS 1000

/*
 * While the application is busy (yield.c) the worker purges in batches of
 * at most this many rows (about 2 ms of work) at the pace of
 * storage.purge_busy_rate, pausing between them.
 */
#define YIELD_BATCH_ROWS 1000

bool		storage_autopurge = true;
int			storage_purge_interval = 10000;
int			storage_purge_batch_delay = 0;
int			storage_purge_busy_rate = 60000;

PGDLLEXPORT void storage_launcher_main(Datum main_arg);
PGDLLEXPORT void storage_purge_worker_main(Datum main_arg);

static void
define_worker_gucs(void)
{
	DefineCustomBoolVariable("storage.autopurge",
							 "Purges expired records automatically in every database with the extension.",
							 "Needs storage in shared_preload_libraries.",
							 &storage_autopurge, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("storage.purge_interval",
							"Time between two purge rounds of the expiry launcher.",
							"A round continues at once while a database still has a backlog.",
							&storage_purge_interval, 10000, 100, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("storage.purge_batch_delay",
							"Pause of the purge worker between two batches.",
							"Non-zero values trade purge speed for less load on a busy server.",
							&storage_purge_batch_delay, 0, 0, 10000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("storage.purge_busy_rate",
							"Pace of the purge worker, in rows per second, while client sessions are running queries.",
							"The worker then purges in small batches with pauses; alone it runs at full speed. 0 never slows it down.",
							&storage_purge_busy_rate, 60000, 0, 100000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

static void
register_launcher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "storage");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "storage_launcher_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "storage expiry launcher");
	snprintf(worker.bgw_type, BGW_MAXLEN, "storage expiry launcher");
	RegisterBackgroundWorker(&worker);
}

/* Called from _PG_init. */
void
storage_worker_init(void)
{
	define_worker_gucs();
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	storage_status_init();
	register_launcher();
}

static void
handle_reload(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
	}
}

/* The databases worth a visit, allocated in the caller's memory context. */
static List *
list_databases(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext old;

		/* templates are skipped so that CREATE DATABASE never meets us */
		if (!db->datallowconn || db->datistemplate || db->datconnlimit < -1)
			continue;
		old = MemoryContextSwitchTo(cxt);
		result = lappend_oid(result, db->oid);
		MemoryContextSwitchTo(old);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return result;
}

/* Starts the purge worker for dboid and waits until it has exited. */
static void
visit_database(Oid dboid)
{
	BackgroundWorker worker;
	BackgroundWorkerHandle *handle;
	pid_t		pid;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "storage");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "storage_purge_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "storage expiry worker for database %u", dboid);
	snprintf(worker.bgw_type, BGW_MAXLEN, "storage expiry worker");
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	if (!RegisterDynamicBackgroundWorker(&worker, &handle))
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the storage expiry worker"),
				 errhint("Raise max_worker_processes.")));
		return;
	}
	if (WaitForBackgroundWorkerStartup(handle, &pid) == BGWH_STARTED)
		WaitForBackgroundWorkerShutdown(handle);
	pfree(handle);
}

/* One round over all databases; true if some database has more to purge. */
static bool
purge_round(MemoryContext cxt)
{
	List	   *dbs;
	ListCell   *lc;
	bool		more = false;

	MemoryContextReset(cxt);
	MemoryContextSwitchTo(cxt);
	dbs = list_databases();
	foreach(lc, dbs)
	{
		StorageDbStatus st;
		Oid			dboid = lfirst_oid(lc);

		CHECK_FOR_INTERRUPTS();
		handle_reload();
		if (!storage_autopurge)
			break;
		visit_database(dboid);
		if (storage_status_get(dboid, &st) && st.more_work)
			more = true;
	}
	MemoryContextSwitchTo(TopMemoryContext);
	return more;
}

static void
launcher_exit(int code, Datum arg)
{
	storage_status_set_launcher(0);
}

void
storage_launcher_main(Datum main_arg)
{
	MemoryContext cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("storage expiry launcher");
	storage_status_set_launcher(MyProcPid);
	before_shmem_exit(launcher_exit, (Datum) 0);

	cxt = AllocSetContextCreate(TopMemoryContext, "storage launcher",
								ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		more = false;

		CHECK_FOR_INTERRUPTS();
		handle_reload();
		if (storage_autopurge)
			more = purge_round(cxt);

		/* a backlog is worked off at once; otherwise sleep until next round */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 more ? 1 : storage_purge_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static bool
extension_installed(void)
{
	bool		installed;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("storage", true));
	CommitTransactionCommand();
	return installed;
}

/*
 * One batch in its own transaction; returns the rows deleted.  *resume
 * carries the position in the purge index from batch to batch of a visit.
 */
static uint64
purge_one_batch(int batch_size, TimestampTz *resume)
{
	uint64		n;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "storage: purging expired records");
	/* DROP EXTENSION may have run since the last batch: stop quietly */
	if (OidIsValid(storage_records_relid(true)))
		n = storage_purge_batch(storage_now(), batch_size, resume);
	else
		n = 0;
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/* Purges until done or out of budget; keeps st up to date in shared memory. */
static void
purge_database(StorageDbStatus *st)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz resume = DT_NOBEGIN;

	st->purging = true;
	st->more_work = false;
	st->last_start = start;
	st->rows_last = 0;
	storage_status_put(st);

	for (;;)
	{
		bool		yield = storage_purge_busy_rate > 0 && storage_foreground_busy();
		int			batch = yield ? Min(storage_purge_batch_size, YIELD_BATCH_ROWS) :
		storage_purge_batch_size;
		TimestampTz t0 = GetCurrentTimestamp();
		TimestampTz t1;
		long		pause = storage_purge_batch_delay;
		uint64		n;

		CHECK_FOR_INTERRUPTS();
		n = purge_one_batch(batch, &resume);
		t1 = GetCurrentTimestamp();
		st->rows_last += n;
		st->rows_total += n;
		storage_status_put(st);
		if (n < (uint64) batch)
			break;
		if (TimestampDifferenceExceeds(start, t1, PURGE_RUN_BUDGET_MS))
		{
			st->more_work = true;
			break;
		}
		if (yield)
		{
			/* the batch's share of a second at the busy rate, minus its own time */
			int64		period = (int64) batch * USECS_PER_SEC / storage_purge_busy_rate;

			pause = Max(pause, (long) ((period - (t1 - t0)) / 1000));
		}
		if (pause > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pause, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	st->purging = false;
	st->last_end = GetCurrentTimestamp();
	st->last_error[0] = '\0';
	storage_status_put(st);
}

void
storage_purge_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	StorageDbStatus st;
	MemoryContext cxt = CurrentMemoryContext;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("storage expiry worker");

	/*
	 * A purge lost in a crash is simply done again (the rows are still
	 * expired), so its commits need not wait for the WAL flush.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	if (!extension_installed())
	{
		storage_status_forget(dboid);
		proc_exit(0);
	}
	if (!storage_status_get(dboid, &st))
	{
		memset(&st, 0, sizeof(st));
		st.dboid = dboid;
	}

	PG_TRY();
	{
		purge_database(&st);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* keep the message for storage_status, then die as usual */
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		st.purging = false;
		st.more_work = false;
		st.last_end = GetCurrentTimestamp();
		strlcpy(st.last_error, edata->message, sizeof(st.last_error));
		storage_status_put(&st);
		PG_RE_THROW();
	}
	PG_END_TRY();
	proc_exit(0);
}
