/*-------------------------------------------------------------------------
 *
 * clock.c
 *	  The single clock that decides whether a record is live.
 *
 * Liveness is judged by the wall clock at the moment of each operation
 * (what clock_timestamp() returns), not by the start of the transaction or
 * statement: a long transaction must not keep seeing records that expired
 * meanwhile, and a lock waiter must see the holder's TTL run out.  Every C
 * path and every SQL function of the extension asks this one function.
 *
 * For tests, a superuser may pin the clock with storage.test_now.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

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
storage_now(void)
{
	if (storage_test_now == NULL || storage_test_now[0] == '\0')
		return GetCurrentTimestamp();

	if (parsed_test_now == NULL || strcmp(parsed_test_now, storage_test_now) != 0)
	{
		Datum		d;

		d = DirectFunctionCall3(timestamptz_in,
								CStringGetDatum(storage_test_now),
								ObjectIdGetDatum(InvalidOid),
								Int32GetDatum(-1));
		if (parsed_test_now)
			pfree(parsed_test_now);
		parsed_test_now = MemoryContextStrdup(TopMemoryContext, storage_test_now);
		parsed_test_value = DatumGetTimestampTz(d);
	}
	return parsed_test_value;
}

Datum
storage_now_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(storage_now());
}
