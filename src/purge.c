/*-------------------------------------------------------------------------
 *
 * purge.c
 *	  Deletion of expired records: one bounded batch at a time, shared by
 *	  storage_purge_expired() and the expiry background worker.
 *
 * A batch never waits for another transaction: a row that someone is
 * changing (a save replacing it, another purger holding it) is simply left
 * for a later round, so two purgers (two workers, a worker and pg_cron, two
 * manual calls) never wait for each other.  A record that was expired when
 * the batch started but has just been saved again is never deleted.
 * Expired rows are found through the index on the expiry slot
 * (purge_after): rows in slots that have ended are all expired, and only
 * the slot still open is filtered by expires_at, so live rows are visited
 * only when they expire within the current slot.
 *
 * The work is done by the direct write path (storage_writer_purge in
 * direct.c: one delete per row, no statement); the statement below, which
 * locks its rows with FOR UPDATE SKIP LOCKED and re-checks expires_at on
 * the newest version, serves where direct.c's rules send us to SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/datetime.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_purge_expired);

/*
 * $1 now, $2 batch size, $3 end of the open expiry slot.  Slots that ended
 * hold only expired rows and come first in purge_after order; the open
 * slot is read up to its end with expires_at as the filter.
 */
static const char *const purge_batch_sql =
"DELETE FROM %1$s AS r "
"WHERE r.ctid = ANY (ARRAY("
"    SELECT s.ctid FROM %1$s AS s "
"    WHERE s.purge_after <= $3 AND s.expires_at <= $1 "
"    ORDER BY s.purge_after "
"    LIMIT $2 "
"    FOR UPDATE SKIP LOCKED)) "
"  AND r.expires_at <= $1";

/*
 * Deletes at most batch_size records that are expired at "now" and returns
 * how many it deleted.  *resume is where a round of batches has got to in
 * the purge index (TIMESTAMP_NOBEGIN at first); see storage_writer_purge(),
 * which does the work unless the SPI statement must (direct.c's rules),
 * and which alone uses it.  Must be called inside SPI_connect().
 */
uint64
storage_purge_batch(TimestampTz now, int batch_size, TimestampTz *resume)
{
	Oid			argtypes[3] = {TIMESTAMPTZOID, INT8OID, TIMESTAMPTZOID};
	Datum		values[3];
	SPIPlanPtr	plan;
	StorageWriter *w;
	int			ret;

	/* the statement's FOR UPDATE needs UPDATE: same privileges both ways */
	w = storage_writer_begin(ACL_SELECT | ACL_UPDATE | ACL_DELETE);
	if (w != NULL)
	{
		int64		n = storage_writer_purge(w, now, batch_size, resume);

		storage_writer_end(w);
		if (n >= 0)
			return (uint64) n;
	}

	plan = storage_plan(PLAN_PURGE_BATCH, purge_batch_sql, 3, argtypes);
	values[0] = TimestampTzGetDatum(now);
	values[1] = Int64GetDatum(batch_size);
	values[2] = TimestampTzGetDatum(storage_slot_end(now));
	ret = SPI_execute_plan(plan, values, NULL, false, 0);
	if (ret != SPI_OK_DELETE)
		elog(ERROR, "could not purge expired records: %s",
			 SPI_result_code_string(ret));
	return SPI_processed;
}

/*
 * storage_purge_expired(max_rows bigint DEFAULT NULL) -> rows deleted
 *
 * As a function it runs inside the caller's transaction, so its batches
 * bound memory and plan size but their row locks last until the caller
 * commits; the locked rows are expired ones that nobody can see anyway.
 * The background worker commits after every batch.
 */
Datum
storage_purge_expired(PG_FUNCTION_ARGS)
{
	int64		max_rows = -1;
	int64		total = 0;
	TimestampTz now = storage_now();
	TimestampTz resume = DT_NOBEGIN;

	if (!PG_ARGISNULL(0))
	{
		max_rows = PG_GETARG_INT64(0);
		if (max_rows < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_rows must not be negative"),
					 errhint("Pass NULL to purge every expired record.")));
	}

	SPI_connect();
	for (;;)
	{
		int			batch = storage_purge_batch_size;
		uint64		n;

		CHECK_FOR_INTERRUPTS();
		if (max_rows >= 0 && max_rows - total < batch)
			batch = (int) (max_rows - total);
		if (batch <= 0)
			break;
		n = storage_purge_batch(now, batch, &resume);
		total += n;
		if (n < (uint64) batch)
			break;
	}
	SPI_finish();
	PG_RETURN_INT64(total);
}
