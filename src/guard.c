/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Keeps DROP EXTENSION storage from silently destroying live records.
 *
 * PostgreSQL drops an extension's member tables with the extension.  An
 * event trigger on ddl_command_start sees the parse tree of the DROP before
 * anything happens, and refuses a plain DROP EXTENSION storage while live
 * records exist, the way DROP SCHEMA refuses without CASCADE.  CASCADE is
 * the explicit "yes, drop the records too".
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_drop_guard);

/* $1 now */
static const char *const count_live_sql =
"SELECT pg_catalog.count(*) FROM %1$s AS r "
"WHERE r.expires_at IS NULL OR r.expires_at OPERATOR(pg_catalog.>) $1";

static bool
drops_storage(DropStmt *stmt)
{
	ListCell   *lc;

	if (stmt->removeType != OBJECT_EXTENSION)
		return false;
	foreach(lc, stmt->objects)
	{
		if (strcmp(strVal(lfirst(lc)), "storage") == 0)
			return true;
	}
	return false;
}

static int64
count_live_records(void)
{
	Oid			argtypes[1] = {TIMESTAMPTZOID};
	Datum		values[1];
	SPIPlanPtr	plan;
	bool		isnull;
	int64		count;

	SPI_connect();
	plan = storage_plan(PLAN_COUNT_LIVE, count_live_sql, 1, argtypes);
	values[0] = TimestampTzGetDatum(storage_now());
	if (SPI_execute_plan(plan, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not count live records");
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	return count;
}

Datum
storage_drop_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	DropStmt   *stmt;
	int64		live;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("storage_drop_guard() must be called as an event trigger")));

	trigdata = (EventTriggerData *) fcinfo->context;
	if (!IsA(trigdata->parsetree, DropStmt))
		PG_RETURN_VOID();
	stmt = (DropStmt *) trigdata->parsetree;
	if (stmt->behavior == DROP_CASCADE || !drops_storage(stmt))
		PG_RETURN_VOID();

	/* the table may already be gone if someone dropped it by hand */
	if (!OidIsValid(storage_records_relid(true)))
		PG_RETURN_VOID();

	live = count_live_records();
	if (live > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("cannot drop extension storage because it holds live records"),
				 errdetail_plural("Table %s holds " INT64_FORMAT " live record.",
								  "Table %s holds " INT64_FORMAT " live records.",
								  (unsigned long) live,
								  storage_records_table(), live),
				 errhint("Use DROP EXTENSION storage CASCADE to drop the records too, or save them first with pg_dump.")));
	PG_RETURN_VOID();
}

