/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The extension's settings (storage.*), all defined here: the variables
 *	  the other files read and their definitions, so that one file lists
 *	  every setting with its range, context and documentation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"

#include "storage.h"

/* records, expiry slots and the purge */
int			stg_purge_batch_size = 10000;
char	   *stg_test_now = NULL;
int			stg_expiry_slot_width = 60;
bool		stg_direct_writes = true;

/* the expiry worker (worker.c) */
bool		stg_autopurge = true;
int			stg_purge_interval = 10000;
int			stg_purge_batch_delay = 0;
int			stg_purge_busy_rate = 60000;

/* shared memory (status.c), fixed at server start: the size of its slots */
int			stg_status_slots = 128;

/*
 * Called from _PG_init.  storage.status_slots sizes shared memory, so it
 * exists only while shared_preload_libraries is processed.
 */
void
stg_define_gucs(void)
{
	DefineCustomIntVariable("storage.purge_batch_size",
							"Expired records deleted per purge transaction.",
							"Each batch is one short transaction of the worker; "
							"storage_purge_expired() loops over batches of this size.",
							&stg_purge_batch_size,
							10000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	/*
	 * Wider slots make more saves with sliding expiry HOT updates; narrower
	 * ones make the purge look at fewer not-yet-expired rows (see clock.c).
	 */
	DefineCustomIntVariable("storage.expiry_slot",
							"Width of the expiry slots that the purge index groups records by.",
							"A save that moves expires_at within one slot can be a HOT update. "
							"0 indexes the exact expiry time.",
							&stg_expiry_slot_width,
							60, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * An escape hatch and a yardstick: off runs every save through its SPI
	 * statement, as REPEATABLE READ always does (see direct.c).
	 */
	DefineCustomBoolVariable("storage.direct_writes",
							 "Saves records without planning an SQL statement where that behaves the same.",
							 "Off makes every save run its INSERT/UPDATE statement through SPI.",
							 &stg_direct_writes,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	/*
	 * Only tests may move the clock, hence PGC_SUSET; an empty value means
	 * the real clock.
	 */
	DefineCustomStringVariable("storage.test_now",
							   "Test only: a fixed timestamp used instead of the clock to decide expiry.",
							   "Empty means the real clock. Never set this in production.",
							   &stg_test_now,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("storage.autopurge",
							 "Purges expired records automatically in every database with the extension.",
							 "Needs storage in shared_preload_libraries.",
							 &stg_autopurge, true, PGC_SIGHUP, 0,
							 NULL, NULL, NULL);
	DefineCustomIntVariable("storage.purge_interval",
							"Time between two purge rounds of the expiry launcher.",
							"A round continues at once while a database still has a backlog.",
							&stg_purge_interval, 10000, 100, 86400000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("storage.purge_batch_delay",
							"Pause of the purge worker between two batches.",
							"Non-zero values trade purge speed for less load on a busy server.",
							&stg_purge_batch_delay, 0, 0, 10000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomIntVariable("storage.purge_busy_rate",
							"Pace of the purge worker, in rows per second, while client sessions are running queries.",
							"The worker then purges in small batches with pauses; alone it runs at full speed. 0 never slows it down.",
							&stg_purge_busy_rate, 60000, 0, 100000000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("storage.status_slots",
								"Databases whose expiry status is kept in shared memory.",
								"Databases beyond this number are purged but not shown in storage_status, and not backed off.",
								&stg_status_slots, 128, 1, 100000,
								PGC_POSTMASTER, 0,
								NULL, NULL, NULL);
}
