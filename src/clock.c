/*-------------------------------------------------------------------------
 *
 * clock.c
 *	  The single clock that decides whether a record is live.
 *
 * Liveness is judged by the wall clock at the moment of each operation
 * (what clock_timestamp() returns), not by the start of the transaction or
 * statement: a long transaction must not keep seeing records that expired
 * meanwhile, and a lock waiter must see the holder's TTL run out.  Every C
 * path and every SQL function of the extension asks this one function,
 * and judges by the one liveness rule (stg_live in storage.h).
 *
 * For tests, a superuser may pin the clock with storage.test_now.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/int.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_now_sql);

/*
 * Parsing the test clock on every call would cost a datetime parse, so the
 * parsed value is kept with the text it came from.
 */
static char *parsed_test_now = NULL;
static TimestampTz parsed_test_value;

TimestampTz
stg_now(void)
{
	if (stg_test_now == NULL || stg_test_now[0] == '\0')
		return GetCurrentTimestamp();

	if (parsed_test_now == NULL || strcmp(parsed_test_now, stg_test_now) != 0)
	{
		Datum		d;

		d = DirectFunctionCall3(timestamptz_in,
								CStringGetDatum(stg_test_now),
								ObjectIdGetDatum(InvalidOid),
								Int32GetDatum(-1));
		if (parsed_test_now)
			pfree(parsed_test_now);
		parsed_test_now = MemoryContextStrdup(TopMemoryContext, stg_test_now);
		parsed_test_value = DatumGetTimestampTz(d);
	}
	return parsed_test_value;
}

Datum
storage_now_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(stg_now());
}

PG_FUNCTION_INFO_V1(storage_expiry_slot);

/*
 * storage_expiry_slot(expires_at) -> the end of the expiry slot holding
 * expires_at: expires_at rounded up to a multiple of storage.expiry_slot.
 *
 * The records table indexes this value (column purge_after) instead of
 * expires_at itself.  A save that moves expires_at within the same slot
 * then changes no indexed column, so PostgreSQL can make it a HOT update;
 * sessions with sliding expiry save or touch their record many times per
 * slot.  Every row in a slot that has ended is expired, so the purge finds
 * them without visiting live rows; only the slot that is still open needs
 * a look at expires_at.
 *
 * Declared IMMUTABLE although the slot width is a setting: the value is
 * stored once per row version, and correctness only needs it to be at or
 * after expires_at, which holds for any width.
 */
TimestampTz
stg_slot_end(TimestampTz ts)
{
	int64		width = (int64) stg_expiry_slot_width * USECS_PER_SEC;
	int64		rem;
	TimestampTz end;

	if (width <= 0 || TIMESTAMP_NOT_FINITE(ts))
		return ts;
	rem = ts % width;
	if (rem < 0)
		rem += width;
	if (rem == 0)
		return ts;

	/*
	 * Near the end of the timestamptz range the slot may end past the last
	 * valid timestamp: clamp to it.  It is still at or after expires_at, so
	 * the record is purged once it has expired, and the column holds a value
	 * that can be output, dumped and compared.
	 */
	if (pg_add_s64_overflow(ts - rem, width, &end) || end >= END_TIMESTAMP)
		return END_TIMESTAMP - 1;
	return end;
}

/*
 * The value of the purge_after column for expires_at; false for NULL.
 * storage_expiry_slot() is this function, and the direct write path
 * (direct.c) fills the generated column with it.
 */
bool
stg_expiry_slot_of(bool expires_null, Datum expires, Datum *slot)
{
	TimestampTz ts;

	if (expires_null)
		return false;
	ts = DatumGetTimestampTz(expires);
	if (TIMESTAMP_IS_NOEND(ts))
		return false;			/* never expires, never purged */
	*slot = TimestampTzGetDatum(stg_slot_end(ts));
	return true;
}

Datum
storage_expiry_slot(PG_FUNCTION_ARGS)
{
	Datum		slot;

	if (!stg_expiry_slot_of(PG_ARGISNULL(0), PG_GETARG_DATUM(0), &slot))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(slot);
}

/*
 * The expiry time that a ttl gives at "now", for the bucket values and the
 * locks alike.  An interval can mix signs ('1 day -24 hours', '1 mon -29
 * days'), and what it amounts to depends on the calendar at the moment it
 * is applied: so it is judged as a whole, by where now + ttl lands, never
 * field by field nor by interval_cmp's 30-day months.  A ttl that lands at
 * or before now would write a value or lock that is expired from the
 * start: 22023.
 *
 * The zero interval (every field zero) is the one exception, because the
 * bucket API documents ttl 0 as "no expiry": with zero_means_never it
 * returns false, otherwise it is refused like any other ttl that does not
 * reach into the future.
 */
bool
stg_ttl_expiry(const Interval *ttl, TimestampTz now, bool zero_means_never,
			   TimestampTz *expires)
{
	if (ttl->month == 0 && ttl->day == 0 && ttl->time == 0 && zero_means_never)
		return false;
	*expires = DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
													   TimestampTzGetDatum(now),
													   IntervalPGetDatum((Interval *) ttl)));
	if (*expires <= now)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ttl must be positive"),
				 errdetail("Added to the current time %s, the ttl ends at %s, which is not later.",
						   pstrdup(timestamptz_to_str(now)),
						   pstrdup(timestamptz_to_str(*expires))),
				 zero_means_never ?
				 errhint("A ttl of NULL or 0 means no expiry.") : 0));
	return true;
}
