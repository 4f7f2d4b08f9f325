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
 * own short transaction, through stg_purge_batch(), the code behind
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
 * A visit that fails (the records table renamed, say) must neither flood
 * the log nor be retried at full rate: the worker catches the error, keeps
 * it for storage_status, sets the database's back-off in its status slot
 * (the launcher skips the database until then), logs it within a budget
 * of lines per database and hour, and exits normally.  Rows that cannot
 * be deleted do not fail a visit at all: purge.c skips them.
 * The launcher starts only once recovery has finished (never on a hot
 * standby; after promotion it starts), never in binary-upgrade mode, and
 * the postmaster restarts it after a crash.
 *
 * What the worker runs, and as whom, must not depend on anything a
 * database owner or an ordinary role controls (docs/design.md "Security
 * of the worker and search_path").  It connects as the bootstrap superuser, and the
 * connection applies the database's ALTER DATABASE ... SET values, so
 * pin_settings() overrides every setting the purge depends on with a
 * source those values cannot outrank, and each batch runs as the records
 * table's owner inside a security-restricted operation, the way VACUUM,
 * ANALYZE and autovacuum have run a table's code since the 2022 fixes
 * (CVE-2022-1552): whatever code of the table's (a trigger) runs there
 * runs with its owner's privileges, never with ours.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "storage.h"

/* how long one worker may purge before it exits and lets others run */
#define PURGE_RUN_BUDGET_MS 1000

/*
 * A database whose visits keep failing (its records table renamed, say) is
 * visited after storage.purge_interval, then twice that, four times, ... up
 * to BACKOFF_MAX_MS (or the interval, if longer); its failures and the
 * rows it skips are logged at most LOG_LINES_PER_HOUR times an hour, the
 * rest only counted (storage_status: log_lines_suppressed).
 */
#define BACKOFF_MAX_MS (10 * 60 * 1000)
#define LOG_LINES_PER_HOUR 3

/*
 * While the application is busy (yield.c) the worker purges in batches of
 * at most this many rows (about 2 ms of work) at the pace of
 * storage.purge_busy_rate, pausing between them.
 */
#define YIELD_BATCH_ROWS 1000

PGDLLEXPORT void storage_launcher_main(Datum main_arg);
PGDLLEXPORT void storage_purge_worker_main(Datum main_arg);

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
stg_worker_init(void)
{
	if (!process_shared_preload_libraries_in_progress || IsBinaryUpgrade)
		return;
	stg_status_init();
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
	stg_status_keep_only(dbs);
	foreach(lc, dbs)
	{
		StgDbStatus st;
		Oid			dboid = lfirst_oid(lc);

		CHECK_FOR_INTERRUPTS();
		handle_reload();
		if (!stg_autopurge)
			break;
		if (stg_status_get(dboid, &st) &&
			st.backoff_until > GetCurrentTimestamp())
			continue;
		visit_database(dboid);
		if (stg_status_get(dboid, &st) && st.more_work)
			more = true;
	}
	MemoryContextSwitchTo(TopMemoryContext);
	return more;
}

static void
launcher_exit(int code, Datum arg)
{
	stg_status_set_launcher(0);
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
	stg_status_set_launcher(MyProcPid);
	before_shmem_exit(launcher_exit, (Datum) 0);

	cxt = AllocSetContextCreate(TopMemoryContext, "storage launcher",
								ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		more = false;

		CHECK_FOR_INTERRUPTS();
		handle_reload();
		if (stg_autopurge)
			more = purge_round(cxt);

		/* a backlog is worked off at once; otherwise sleep until next round */
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 more ? 1 : stg_purge_interval, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* the name of this worker's database, for its log lines */
static char dbname[NAMEDATALEN];

static bool
extension_installed(void)
{
	bool		installed;
	char	   *name;

	StartTransactionCommand();
	installed = OidIsValid(get_extension_oid("storage", true));
	name = get_database_name(MyDatabaseId);
	strlcpy(dbname, name ? name : "?", sizeof(dbname));
	CommitTransactionCommand();
	return installed;
}

/* The owner of the records table, or InvalidOid if it is gone. */
static Oid
table_owner(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			owner;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * One batch in its own transaction; returns the rows deleted.  *round
 * carries the position in the purge index from batch to batch of a visit,
 * and what was skipped.
 *
 * The batch runs as the table's owner, in a security-restricted operation
 * (no SET ROLE, no temporary objects or other session state left behind),
 * and with a GUC nest level of its own so that a setting changed by code
 * run in the batch is undone before the next: what vacuum_rel() does
 * around a table's index functions.  The owner holds every privilege the
 * purge needs (unless they revoked it from themselves, and then the purge
 * fails as their own DELETE would); a trigger of theirs runs as them, as it
 * would for their DELETE.
 */
static uint64
purge_one_batch(int batch_size, StgPurgeRound *round)
{
	uint64		n = 0;
	Oid			relid;
	Oid			owner = InvalidOid;

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "storage: purging expired records");

	/*
	 * A foreign key declared DEFERRABLE INITIALLY DEFERRED would check the
	 * rows at commit, where one refused row fails the whole batch: check
	 * them at the end of each statement, where purge.c can skip them.
	 */
	if (SPI_execute("SET CONSTRAINTS ALL IMMEDIATE", false, 0) != SPI_OK_UTILITY)
		elog(ERROR, "SET CONSTRAINTS failed");

	round->more = false;
	/* locked before anything else: a rename waited for must fail the visit */
	relid = stg_records_lock(RowExclusiveLock, true);
	if (OidIsValid(relid))
		owner = table_owner(relid);
	if (OidIsValid(owner))
	{
		Oid			save_userid;
		int			save_sec_context;
		int			save_nestlevel;

		GetUserIdAndSecContext(&save_userid, &save_sec_context);
		SetUserIdAndSecContext(owner,
							   save_sec_context | SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
		n = stg_purge_batch(stg_now(), batch_size, round);
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	else if (OidIsValid(get_extension_oid("storage", true)))
	{
		/*
		 * The extension is there but its table is not (renamed, moved):
		 * fail with the reason, which storage_status shows.  Only after DROP
		 * EXTENSION since the last batch do we stop quietly.
		 */
		(void) stg_records_relid(false);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return n;
}

/*
 * Whether a line about this database may go to the log now: at most
 * LOG_LINES_PER_HOUR an hour, the others are counted.
 */
static bool
may_log(StgDbStatus *st)
{
	TimestampTz now = GetCurrentTimestamp();

	if (st->log_window == 0 ||
		TimestampDifferenceExceeds(st->log_window, now, 3600 * 1000))
	{
		st->log_window = now;
		st->log_lines = 0;
	}
	if (st->log_lines >= LOG_LINES_PER_HOUR)
	{
		st->log_suppressed++;
		st->log_suppressed_total++;
		return false;
	}
	st->log_lines++;
	return true;
}

/* Purges until done or out of budget; keeps st up to date in shared memory. */
static void
purge_database(StgDbStatus *st)
{
	TimestampTz start = GetCurrentTimestamp();
	StgPurgeRound round;

	stg_purge_round_init(&round);
	st->purging = true;
	st->more_work = false;
	st->last_start = start;
	st->rows_last = 0;
	stg_status_put(st);

	for (;;)
	{
		bool		yield = stg_purge_busy_rate > 0 && stg_foreground_busy();
		int			batch = yield ? Min(stg_purge_batch_size, YIELD_BATCH_ROWS) :
		stg_purge_batch_size;
		TimestampTz t0 = GetCurrentTimestamp();
		TimestampTz t1;
		long		pause = stg_purge_batch_delay;
		int64		skipped = round.skipped;
		uint64		n;

		CHECK_FOR_INTERRUPTS();
		n = purge_one_batch(batch, &round);
		t1 = GetCurrentTimestamp();
		st->rows_last += n;
		st->rows_total += n;
		st->skipped_total += round.skipped - skipped;
		if (round.skipped > skipped)
			strlcpy(st->skip_reason, round.skip_reason, sizeof(st->skip_reason));
		stg_status_put(st);
		if (!round.more)
			break;
		if (TimestampDifferenceExceeds(start, t1, PURGE_RUN_BUDGET_MS))
		{
			st->more_work = true;
			break;
		}
		if (yield)
		{
			/* the batch's share of a second at the busy rate, minus its own time */
			int64		period = (int64) batch * USECS_PER_SEC / stg_purge_busy_rate;

			pause = Max(pause, (long) ((period - (t1 - t0)) / 1000));
		}
		if (pause > 0)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 pause, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	/* shown once the visit is over: a visit in progress has not met them all */
	st->skipped_last = round.skipped;
	st->purging = false;
	st->last_end = GetCurrentTimestamp();
	st->last_error[0] = '\0';
	st->failures = 0;
	st->backoff_until = 0;
	if (st->skipped_last > 0 && may_log(st))
	{
		ereport(LOG,
				(errmsg_plural("skipped %lld expired record in database \"%s\" that could not be deleted",
							   "skipped %lld expired records in database \"%s\" that could not be deleted",
							   st->skipped_last, (long long) st->skipped_last, dbname),
				 errdetail("The last one failed with %s.", st->skip_reason),
				 errhint("Up to %d such messages an hour are logged per database; %lld were left out since the previous one. storage_status shows the latest figures.",
						 LOG_LINES_PER_HOUR, (long long) st->log_suppressed)));
		st->log_suppressed = 0;
	}
	stg_status_put(st);
}

/*
 * A visit failed with edata: remember it for storage_status, put off the
 * next visit, and log it unless this database has had its share of lines.
 * The error is not re-thrown: the worker exits normally, so the postmaster
 * adds no line of its own.
 */
static void
note_failure(StgDbStatus *st, ErrorData *edata)
{
	int64		delay = stg_purge_interval;
	int			i;

	st->purging = false;
	st->more_work = false;
	st->last_end = GetCurrentTimestamp();
	strlcpy(st->last_error, edata->message, sizeof(st->last_error));
	st->failures++;
	for (i = 1; i < st->failures && delay < BACKOFF_MAX_MS; i++)
		delay *= 2;
	delay = Min(delay, Max(BACKOFF_MAX_MS, stg_purge_interval));
	st->backoff_until = TimestampTzPlusMilliseconds(st->last_end, delay);
	if (may_log(st))
	{
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("could not purge expired records in database \"%s\": %s",
						dbname, edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("The worker tries again at growing intervals, next at %s. Up to %d such messages an hour are logged per database; %lld were left out since the previous one.",
						 timestamptz_to_str(st->backoff_until),
						 LOG_LINES_PER_HOUR, (long long) st->log_suppressed)));
		st->log_suppressed = 0;
	}
	stg_status_put(st);
}

/*
 * Connecting to the database applied its ALTER DATABASE ... SET values (and
 * those of ALTER ROLE ... IN DATABASE), which its owner chooses.  Every
 * setting that could change what the purge runs, as whom, or whether it
 * can run at all is set here again with PGC_S_OVERRIDE, which no database,
 * role or SET outranks (autovacuum pins its settings the same way):
 *
 *	- search_path: pg_catalog first and pg_temp last (PostgreSQL's own
 *	  safe path for maintenance, RestrictSearchPath() in PostgreSQL 17), so
 *	  that no operator, function or type of any other schema is found.  The
 *	  extension's SQL is schema-qualified as well; this covers whatever
 *	  code of the table's owner runs during the purge (a trigger).
 *	- role: 'none', so that the process identity between batches is the
 *	  bootstrap superuser the worker was started as, not a role the
 *	  database's owner chose; each batch then runs as the table's owner
 *	  (purge_one_batch).
 *	- default_transaction_isolation = read committed: the purge is built for
 *	  it (SKIP LOCKED, the direct path's re-checks); REPEATABLE READ or
 *	  SERIALIZABLE would send it to its statement and could make it fail
 *	  on serialization conflicts.
 *	- default_transaction_read_only = off: the worker must write; on, every
 *	  visit would fail.
 *	- session_replication_role = origin: the worker's deletes are local
 *	  changes, so foreign keys referencing the table are enforced.
 *	- row_security = on (the default): policies that apply to the table's
 *	  owner (FORCE ROW LEVEL SECURITY) filter the purge as they filter the
 *	  owner's own DELETE, instead of making it fail.
 *	- statement_timeout, lock_timeout, idle_in_transaction_session_timeout
 *	  = 0: a batch is bounded by storage.purge_batch_size; a database's
 *	  timeouts would only make it fail (autovacuum does the same).
 *	- synchronous_commit = off: a purge lost in a crash is simply done
 *	  again (the rows are still expired), so its commits need not wait for
 *	  the WAL flush.
 *	- storage.direct_writes: the server's value (postgresql.conf, ALTER
 *	  SYSTEM), read before connecting, so that only the superuser who
 *	  configures the server chooses how the worker deletes.
 *
 * The other storage.* settings the purge reads (purge_batch_size,
 * expiry_slot, test_now) are superuser-only, so a database's value of
 * them was set by a superuser and is honoured.  Planner settings still
 * apply to the purge's statement: they can make it slower, never make it
 * run other code.
 */
static void
pin_settings(bool server_direct_writes)
{
	static const char *const pinned[][2] = {
		{"search_path", "pg_catalog, pg_temp"},
		{"role", "none"},
		{"default_transaction_isolation", "read committed"},
		{"default_transaction_read_only", "off"},
		{"session_replication_role", "origin"},
		{"row_security", "on"},
		{"statement_timeout", "0"},
		{"lock_timeout", "0"},
		{"idle_in_transaction_session_timeout", "0"},
		{"synchronous_commit", "off"},
	};
	size_t		i;

	for (i = 0; i < lengthof(pinned); i++)
		SetConfigOption(pinned[i][0], pinned[i][1], PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("storage.direct_writes", server_direct_writes ? "on" : "off",
					PGC_SUSET, PGC_S_OVERRIDE);
}

void
storage_purge_worker_main(Datum main_arg)
{
	Oid			dboid = DatumGetObjectId(main_arg);
	StgDbStatus st;
	MemoryContext cxt = CurrentMemoryContext;

	/* not connected yet: still the server's value, see pin_settings() */
	bool		server_direct_writes = stg_direct_writes;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pin_settings(server_direct_writes);
	pgstat_report_appname("storage expiry worker");

	if (!extension_installed())
	{
		stg_status_forget(dboid);
		proc_exit(0);
	}
	if (!stg_status_get(dboid, &st))
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

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		note_failure(&st, edata);
	}
	PG_END_TRY();
	proc_exit(0);
}
