/*-------------------------------------------------------------------------
 *
 * feed_sql.c
 *	  The change feed for SQL users: storage_watch_create(),
 *	  storage_changes(), storage_changes_peek() and storage_watch_drop().
 *
 * A watch is a logical replication slot of the storage output plugin
 * (feed.c) plus a row in the extension's table storage_watches naming its
 * id prefix and the role that created it.  Replication slots need the
 * REPLICATION attribute; these functions do not.  They are plain C
 * functions (not SECURITY DEFINER) that check the caller first: EXECUTE
 * on them (revoked from PUBLIC), a watch registered in storage_watches,
 * the caller a member of the role that created it, and the slot one of
 * this database with the storage plugin.  Only then they run one fixed,
 * fully qualified statement as the extension's owner, in a
 * security-restricted operation, with options the caller cannot choose
 * beyond the slot and the number of events.  So a role granted them can
 * read the records' changes through its own watches, and neither another
 * plugin's slot, nor another role's watch, nor any code of its choosing
 * as the owner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_watch_create);
PG_FUNCTION_INFO_V1(storage_changes);
PG_FUNCTION_INFO_V1(storage_changes_peek);
PG_FUNCTION_INFO_V1(storage_watch_drop);

#define WATCHES_TABLE "storage_watches"
#define CHANGES_COLS 8

/* The caller's identity while a statement runs as the extension's owner. */
typedef struct AsOwner
{
	Oid			save_userid;
	int			save_sec;
} AsOwner;

static Oid
extension_owner(void)
{
	bool		isnull;
	Datum		owner;

	if (SPI_execute("SELECT e.extowner FROM pg_catalog.pg_extension AS e "
					"WHERE e.extname OPERATOR(pg_catalog.=) 'storage'",
					true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"storage\" is not installed in this database")));
	owner = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
	return DatumGetObjectId(owner);
}

static void
become_owner(AsOwner *as)
{
	Oid			owner = extension_owner();

	GetUserIdAndSecContext(&as->save_userid, &as->save_sec);
	SetUserIdAndSecContext(owner, as->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
}

static void
become_caller(const AsOwner *as)
{
	SetUserIdAndSecContext(as->save_userid, as->save_sec);
}

/* The registry's qualified name: next to the records table. */
static char *
watches_table(void)
{
	Oid			nsp = get_rel_namespace(stg_records_relid(false));

	return quote_qualified_identifier(get_namespace_name(nsp), WATCHES_TABLE);
}

/* Runs one statement with a name and optional text/int arguments. */
static int
run(const char *sql, int nargs, Oid *types, Datum *values, bool read_only)
{
	int			ret;

	ret = SPI_execute_with_args(sql, nargs, types, values, NULL, read_only, 0);
	if (ret < 0)
		elog(ERROR, "SPI_execute_with_args failed: %s",
			 SPI_result_code_string(ret));
	return ret;
}

static Name
slot_arg(FunctionCallInfo fcinfo)
{
	stg_require_arg(fcinfo, 0, "slot");
	return PG_GETARG_NAME(0);
}

/*
 * The watch's prefix, after checking that the caller may use it and that
 * its slot is a storage slot of this database.  Inside SPI, as the owner.
 */
static char *
check_watch(Name slot, Oid caller, bool slot_must_exist)
{
	Oid			types[2] = {NAMEOID, OIDOID};
	Datum		values[2] = {NameGetDatum(slot), ObjectIdGetDatum(MyDatabaseId)};
	bool		isnull;
	Oid			owner;
	char	   *prefix;
	char	   *sql;

	sql = psprintf("SELECT w.owner::pg_catalog.oid, w.prefix FROM %s AS w "
				   "WHERE w.slot OPERATOR(pg_catalog.=) $1", watches_table());
	run(sql, 1, types, values, true);
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("storage watch \"%s\" does not exist", NameStr(*slot)),
				 errhint("Create it with storage_watch_create().")));
	owner = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	prefix = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	if (!has_privs_of_role(caller, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for storage watch \"%s\"",
						NameStr(*slot)),
				 errdetail("Only members of the role that created a watch may use it.")));

	run("SELECT s.plugin OPERATOR(pg_catalog.=) 'storage' "
		"       AND s.datoid OPERATOR(pg_catalog.=) $2 "
		"  FROM pg_catalog.pg_replication_slots AS s "
		" WHERE s.slot_name OPERATOR(pg_catalog.=) $1",
		2, types, values, true);
	if (SPI_processed == 0 && slot_must_exist)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("replication slot \"%s\" of storage watch \"%s\" does not exist",
						NameStr(*slot), NameStr(*slot)),
				 errhint("Drop the watch with storage_watch_drop() and create it again.")));
	if (SPI_processed > 0 &&
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									SPI_tuptable->tupdesc, 1, &isnull)))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication slot \"%s\" is not a storage watch of this database",
						NameStr(*slot)),
				 errdetail("Its output plugin or database differs.")));
	return prefix ? prefix : pstrdup("");
}

/*
 * storage_watch_create(slot name, prefix text DEFAULT '') -> pg_lsn
 *
 * Creates the slot first: PostgreSQL creates a logical slot only in a
 * transaction that has written nothing yet.  The slot is not
 * transactional; if the caller's transaction rolls back, the slot stays
 * without its registry row and a DBA drops it with
 * pg_drop_replication_slot().
 */
Datum
storage_watch_create(PG_FUNCTION_ARGS)
{
	Name		slot = slot_arg(fcinfo);
	text	   *prefix;
	Oid			caller = GetUserId();
	Oid			types[3] = {NAMEOID, TEXTOID, OIDOID};
	Datum		values[3];
	AsOwner		as;
	bool		isnull;
	XLogRecPtr	lsn;

	stg_require_arg(fcinfo, 1, "prefix");
	prefix = PG_GETARG_TEXT_PP(1);
	values[0] = NameGetDatum(slot);
	values[1] = PointerGetDatum(prefix);
	values[2] = ObjectIdGetDatum(caller);

	SPI_connect();
	become_owner(&as);
	run(psprintf("SELECT 1 FROM %s AS w WHERE w.slot OPERATOR(pg_catalog.=) $1",
				 watches_table()), 1, types, values, true);
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("storage watch \"%s\" already exists", NameStr(*slot))));
	run("SELECT s.lsn FROM pg_catalog.pg_create_logical_replication_slot($1, 'storage') AS s",
		1, types, values, false);
	lsn = DatumGetLSN(SPI_getbinval(SPI_tuptable->vals[0],
									SPI_tuptable->tupdesc, 1, &isnull));
	run(psprintf("INSERT INTO %s (slot, prefix, owner) VALUES ($1, $2, $3)",
				 watches_table()), 3, types, values, false);
	become_caller(&as);
	SPI_finish();
	PG_RETURN_LSN(lsn);
}

/* storage_watch_drop(slot name): the slot (if it still exists) and its row */
Datum
storage_watch_drop(PG_FUNCTION_ARGS)
{
	Name		slot = slot_arg(fcinfo);
	Oid			caller = GetUserId();
	Oid			types[2] = {NAMEOID, OIDOID};
	Datum		values[2] = {NameGetDatum(slot), ObjectIdGetDatum(MyDatabaseId)};
	AsOwner		as;

	SPI_connect();
	become_owner(&as);
	check_watch(slot, caller, false);
	run("SELECT pg_catalog.pg_drop_replication_slot(s.slot_name) "
		"  FROM pg_catalog.pg_replication_slots AS s "
		" WHERE s.slot_name OPERATOR(pg_catalog.=) $1",
		1, types, values, false);
	run(psprintf("DELETE FROM %s AS w WHERE w.slot OPERATOR(pg_catalog.=) $1",
				 watches_table()), 1, types, values, false);
	become_caller(&as);
	SPI_finish();
	PG_RETURN_VOID();
}

/* Big-endian readers of an event; an event too short is an internal error. */
typedef struct EventReader
{
	const char *p;
	const char *end;
} EventReader;

static void
need(EventReader *r, int64 n)
{
	if (n < 0 || r->end - r->p < n)
		elog(ERROR, "truncated change feed event");
}

static uint64
read_u(EventReader *r, int bytes)
{
	uint64		v = 0;

	need(r, bytes);
	while (bytes-- > 0)
		v = (v << 8) | (unsigned char) *r->p++;
	return v;
}

static text *
read_text(EventReader *r)
{
	int32		len = (int32) read_u(r, 4);

	need(r, len);
	r->p += len;
	return cstring_to_text_with_len(r->p - len, len);
}

/* One event of the plugin as a row of storage_changes(). */
static void
put_event(Tuplestorestate *store, TupleDesc desc, bytea *event)
{
	EventReader r = {VARDATA_ANY(event), VARDATA_ANY(event) + VARSIZE_ANY_EXHDR(event)};
	Datum		values[CHANGES_COLS];
	bool		nulls[CHANGES_COLS];
	char		op = (char) read_u(&r, 1);
	const char *opname;
	int64		version;
	int64		expires;
	uint8		flags;

	switch (op)
	{
		case 'P':
			opname = "put";
			break;
		case 'T':
			opname = "touch";
			break;
		case 'D':
			opname = "delete";
			break;
		case 'E':
			opname = "expire";
			break;
		default:
			return;				/* a commit message: not a row */
	}
	memset(nulls, 0, sizeof(nulls));
	values[0] = LSNGetDatum((XLogRecPtr) read_u(&r, 8));
	values[1] = CStringGetTextDatum(opname);
	values[7] = TimestampTzGetDatum((TimestampTz) read_u(&r, 8));
	version = (int64) read_u(&r, 8);
	expires = (int64) read_u(&r, 8);
	flags = (uint8) read_u(&r, 1);
	values[2] = PointerGetDatum(read_text(&r));
	values[3] = Int64GetDatum(version);
	nulls[3] = (op == 'D' || op == 'E');
	values[4] = TimestampTzGetDatum(expires);
	nulls[4] = (flags & 1) == 0;
	nulls[5] = (flags & 2) == 0;
	if (!nulls[5])
		values[5] = PointerGetDatum(read_text(&r));
	nulls[6] = (flags & 4) == 0;
	if (!nulls[6])
		values[6] = PointerGetDatum(read_text(&r));
	tuplestore_putvalues(store, desc, values, nulls);
}

/*
 * The events of whole transactions, at least max_events of them if there
 * are that many: the slot advances only by whole transactions, so the
 * last one is finished even beyond max_events.
 */
static Datum
changes(FunctionCallInfo fcinfo, bool consume)
{
	Name		slot = slot_arg(fcinfo);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			caller = GetUserId();
	Oid			types[3] = {NAMEOID, INT4OID, TEXTOID};
	Datum		values[3];
	AsOwner		as;
	char	   *prefix;
	Portal		portal;
	MemoryContext rowcxt;
	uint64		i;

	stg_require_arg(fcinfo, 1, "max_events");
	if (PG_GETARG_INT32(1) < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_events must be at least 1")));
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	become_owner(&as);
	prefix = check_watch(slot, caller, true);
	values[0] = NameGetDatum(slot);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = CStringGetTextDatum(prefix);
	/*
	 * Through a cursor, a batch of rows at a time: the decoded changes are
	 * kept in the decoding function's tuplestore and in ours, both bounded
	 * by work_mem, never all in memory at once.
	 */
	portal = SPI_cursor_open_with_args(NULL, consume ?
									   "SELECT d.data FROM pg_catalog.pg_logical_slot_get_binary_changes("
									   "$1, NULL, $2, 'prefix', $3, 'commits', 'false') AS d" :
									   "SELECT d.data FROM pg_catalog.pg_logical_slot_peek_binary_changes("
									   "$1, NULL, $2, 'prefix', $3, 'commits', 'false') AS d",
									   3, types, values, NULL, false, 0);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "storage_changes row",
								   ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		SPI_cursor_fetch(portal, true, 100);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			bool		isnull;
			Datum		d = SPI_getbinval(SPI_tuptable->vals[i],
										  SPI_tuptable->tupdesc, 1, &isnull);
			MemoryContext old = MemoryContextSwitchTo(rowcxt);

			CHECK_FOR_INTERRUPTS();
			put_event(rsinfo->setResult, rsinfo->setDesc, DatumGetByteaPP(d));
			MemoryContextSwitchTo(old);
			MemoryContextReset(rowcxt);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	/* for storage_watch_status: when the watch was last read */
	if (consume && !RecoveryInProgress() && !XactReadOnly)
		run(psprintf("UPDATE %s AS w SET last_consumed_at = pg_catalog.now() "
					 "WHERE w.slot OPERATOR(pg_catalog.=) $1", watches_table()),
			1, types, values, false);
	become_caller(&as);
	SPI_finish();
	return (Datum) 0;
}

/* storage_changes(slot, max_events): reads and consumes */
Datum
storage_changes(PG_FUNCTION_ARGS)
{
	return changes(fcinfo, true);
}

/* storage_changes_peek(slot, max_events): reads, the slot stays where it is */
Datum
storage_changes_peek(PG_FUNCTION_ARGS)
{
	return changes(fcinfo, false);
}
