/*-------------------------------------------------------------------------
 *
 * guard.c
 *	  Keeps DROP EXTENSION storage and DROP OWNED BY its owner from silently
 *	  destroying live records.
 *
 * PostgreSQL drops an extension's member tables with the extension, and
 * DROP OWNED BY drops the extensions the role owns.  An event trigger on
 * ddl_command_start sees the parse tree of either command before anything
 * happens, and refuses it without CASCADE while live records exist, the way
 * DROP SCHEMA refuses without CASCADE.  CASCADE is the explicit "yes, drop
 * the records too".
 *
 * The records table is found through the extension's membership in
 * pg_depend, not by name, so renaming it first does not get past the
 * guard; it is read directly, so neither search_path, row-level security
 * nor rules change what it sees.  Liveness is judged by the real clock:
 * storage.test_now must not make live records look expired here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_drop_guard);

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

/* The tables that belong to the extension, whatever they are called now. */
static List *
member_tables(Oid extoid)
{
	Relation	rel;
	ScanKeyData keys[2];
	SysScanDesc scan;
	HeapTuple	tup;
	List	   *relids = NIL;

	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&keys[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&keys[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, keys);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);

		if (dep->deptype == DEPENDENCY_EXTENSION &&
			dep->classid == RelationRelationId &&
			get_rel_relkind(dep->objid) == RELKIND_RELATION)
			relids = lappend_oid(relids, dep->objid);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return relids;
}

/*
 * The live records in a member table; -1 if it holds no records (no
 * expires_at column).  Read with a fresh snapshot, so that what committed
 * before the DROP counts.
 */
static int64
count_live(Oid relid, TimestampTz now)
{
	AttrNumber	attnum = get_attnum(relid, "expires_at");
	Relation	rel;
	Snapshot	snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	int64		live = 0;

	if (attnum == InvalidAttrNumber || get_atttype(relid, attnum) != TIMESTAMPTZOID)
		return -1;
	rel = table_open(relid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		bool		isnull;
		Datum		expires = slot_getattr(slot, attnum, &isnull);

		CHECK_FOR_INTERRUPTS();
		if (stg_live(isnull, expires, now))
			live++;
	}
	ExecDropSingleTupleTableSlot(slot);
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
	return live;
}

/*
 * The role among those of DROP OWNED BY that owns the extension, or
 * InvalidOid.  (A role that owns only the table cannot drop it: PostgreSQL
 * refuses to drop a member of an extension on its own.)
 */
static Oid
drops_owned_storage(DropOwnedStmt *stmt, Oid extoid)
{
	HeapTuple	tup;
	Oid			extowner;
	ListCell   *lc;

	tup = SearchSysCache1(EXTENSIONOID, ObjectIdGetDatum(extoid));
	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	extowner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	ReleaseSysCache(tup);

	foreach(lc, stmt->roles)
	{
		Oid			roleid = get_rolespec_oid(lfirst(lc), true);

		if (OidIsValid(roleid) && roleid == extowner)
			return roleid;
	}
	return InvalidOid;
}

Datum
storage_drop_guard(PG_FUNCTION_ARGS)
{
	EventTriggerData *trigdata;
	Node	   *parsetree;
	Oid			extoid;
	Oid			roleid = InvalidOid;
	List	   *tables;
	TimestampTz now;
	ListCell   *lc;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("storage_drop_guard() must be called as an event trigger")));

	trigdata = (EventTriggerData *) fcinfo->context;
	parsetree = trigdata->parsetree;
	if (IsA(parsetree, DropStmt))
	{
		DropStmt   *stmt = (DropStmt *) parsetree;

		if (stmt->behavior == DROP_CASCADE || !drops_storage(stmt))
			PG_RETURN_VOID();
	}
	else if (IsA(parsetree, DropOwnedStmt))
	{
		if (((DropOwnedStmt *) parsetree)->behavior == DROP_CASCADE)
			PG_RETURN_VOID();
	}
	else
		PG_RETURN_VOID();

	extoid = get_extension_oid("storage", true);
	if (!OidIsValid(extoid))
		PG_RETURN_VOID();
	if (IsA(parsetree, DropOwnedStmt))
	{
		roleid = drops_owned_storage((DropOwnedStmt *) parsetree, extoid);
		if (!OidIsValid(roleid))
			PG_RETURN_VOID();
	}
	tables = member_tables(extoid);

	/* the real clock: a pinned test clock must not make records look dead */
	now = GetCurrentTimestamp();
	foreach(lc, tables)
	{
		Oid			relid = lfirst_oid(lc);
		int64		live = count_live(relid, now);

		if (live <= 0)
			continue;
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 OidIsValid(roleid) ?
				 errmsg("cannot drop objects owned by role \"%s\" because extension storage holds live records",
						GetUserNameFromId(roleid, false)) :
				 errmsg("cannot drop extension storage because it holds live records"),
				 errdetail_plural("Table %s holds " INT64_FORMAT " live record.",
								  "Table %s holds " INT64_FORMAT " live records.",
								  (unsigned long) live,
								  quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
															 get_rel_name(relid)),
								  live),
				 OidIsValid(roleid) ?
				 errhint("Use DROP OWNED ... CASCADE to drop the records too, REASSIGN OWNED to keep them, or save them first with pg_dump.") :
				 errhint("Use DROP EXTENSION storage CASCADE to drop the records too, or save them first with pg_dump.")));
	}
	PG_RETURN_VOID();
}
