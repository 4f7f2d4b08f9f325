/*-------------------------------------------------------------------------
 *
 * yield.c
 *	  How the expiry worker makes room for the application: it notices
 *	  that client sessions are running queries and then purges in small
 *	  batches with pauses, so that a fetch never waits long behind it;
 *	  alone, it purges at full speed.
 *
 * On a machine whose cores are busy with the application, any CPU time the
 * purge takes shows up in the application's latency, and a long batch (ten
 * thousand rows take about 20 ms) is what costs the tail the most.  Expired
 * records are already invisible, so deleting them can wait for a quieter
 * moment; but not forever, or the table grows, hence a minimum pace rather
 * than a full stop.
 *
 * Load is sampled from the backend status array (what pg_stat_activity
 * shows): a client backend other than us in state "active".  One sample
 * may miss sessions that are between two short queries, so a session seen
 * running keeps the worker in yielding mode for BUSY_MEMORY_MS.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "utils/backend_status.h"
#include "utils/timestamp.h"

#include "storage.h"

/* a session seen running counts as load for this long */
#define BUSY_MEMORY_MS 500

static TimestampTz last_busy = 0;

/* True if some client session other than ours is running a query now. */
static bool
others_running(void)
{
	bool		running = false;
	int			n;
	int			i;

	pgstat_clear_snapshot();
	n = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= n && !running; i++)
	{
		LocalPgBackendStatus *local = pgstat_get_local_beentry_by_index(i);
		PgBackendStatus *be = local ? &local->backendStatus : NULL;

		running = be != NULL && be->st_procpid != MyProcPid &&
			be->st_backendType == B_BACKEND && be->st_state == STATE_RUNNING;
	}
	pgstat_clear_snapshot();
	return running;
}

/* True while the application is busy (see the file header). */
bool
stg_foreground_busy(void)
{
	TimestampTz now = GetCurrentTimestamp();

	if (others_running())
		last_busy = now;
	return last_busy != 0 &&
		!TimestampDifferenceExceeds(last_busy, now, BUSY_MEMORY_MS);
}
