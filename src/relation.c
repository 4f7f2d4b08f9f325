/*-------------------------------------------------------------------------
 *
 * relation.c
 *	  Locates the records table (it lives in the extension's schema, which
 *	  is chosen at CREATE EXTENSION time) and keeps this backend's saved SPI
 *	  plans for it.
 *
 * The table's qualified name and the plans are computed once per backend.
 * A relcache invalidation of the table (DROP EXTENSION, ALTER TABLE, ...)
 * marks them stale, and the next caller rebuilds them: freeing plans inside
 * the invalidation callback itself would be unsafe while one is running.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "utils/fmgroids.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/builtins.h"

#include "storage.h"

#define RECORDS_TABLE "storage_records"

static Oid	cached_relid = InvalidOid;
static char *cached_table_name = NULL;
static char *cached_schema_name = NULL;
static StgPlan *prepared = NULL;	/* the plans to throw away */
static bool cache_stale = true;
static bool callback_registered = false;

static void
records_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == cached_relid)
		cache_stale = true;
}

/*
 * The schema the extension was created in.  (get_extension_schema() is not
 * exported before PostgreSQL 16.)
 */
static Oid
extension_schema(Oid extoid)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			nspoid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
		nspoid = ((Form_pg_extension) GETSTRUCT(tuple))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nspoid;
}

/*
 * The table that belongs to the extension, whatever its name and schema
 * now (a DBA may have renamed or moved it); InvalidOid if there is none.
 * Only for the error that says where it went.
 */
static Oid
extension_member_table(Oid extoid)
{
	Relation	rel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tuple;
	Oid			relid = InvalidOid;

	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(ExtensionRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tuple);

		if (dep->classid == RelationRelationId &&
			dep->deptype == DEPENDENCY_EXTENSION &&
			get_rel_relkind(dep->objid) == RELKIND_RELATION)
		{
			relid = dep->objid;
			break;
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return relid;
}

/*
 * The records table's OID by the current (or historic) snapshot, without
 * the cache: InvalidOid if the extension or the table is missing.  For the
 * change feed's output plugin, which sees the catalog as of each decoded
 * transaction.
 */
Oid
storage_find_records_table(void)
{
	Oid			extoid = get_extension_oid("storage", true);

	if (!OidIsValid(extoid))
		return InvalidOid;
	return get_relname_relid(RECORDS_TABLE, extension_schema(extoid));
}

static bool
rebuild_cache(bool missing_ok)
{
	Oid			extoid;
	Oid			nspoid;
	Oid			relid;
	while (prepared != NULL)
	{
		StgPlan    *slot = prepared;

		prepared = slot->next;
		SPI_freeplan(slot->plan);
		slot->plan = NULL;
		slot->next = NULL;
	}
	if (cached_table_name)
		pfree(cached_table_name);
	cached_table_name = NULL;
	if (cached_schema_name)
		pfree(cached_schema_name);
	cached_schema_name = NULL;
	cached_relid = InvalidOid;

	extoid = get_extension_oid("storage", true);
	if (!OidIsValid(extoid) && missing_ok)
		return false;
	if (!OidIsValid(extoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"storage\" is not installed in this database"),
				 errhint("Run CREATE EXTENSION storage.")));
	nspoid = extension_schema(extoid);
	relid = get_relname_relid(RECORDS_TABLE, nspoid);
	if (!OidIsValid(relid) && missing_ok)
		return false;
	if (!OidIsValid(relid))
	{
		Oid			moved = extension_member_table(extoid);

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("table \"%s\" of extension \"storage\" is missing",
						RECORDS_TABLE),
				 OidIsValid(moved) ?
				 errdetail("The extension's table is now %s.",
						   quote_qualified_identifier(get_namespace_name(get_rel_namespace(moved)),
													  get_rel_name(moved))) : 0,
				 errhint("Expired records are not purged until the table is back as %s.",
						 quote_qualified_identifier(get_namespace_name(nspoid),
													RECORDS_TABLE))));
	}

	cached_table_name =
		MemoryContextStrdup(TopMemoryContext,
							quote_qualified_identifier(get_namespace_name(nspoid),
													   RECORDS_TABLE));
	cached_schema_name =
		MemoryContextStrdup(TopMemoryContext,
							quote_identifier(get_namespace_name(nspoid)));
	cached_relid = relid;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(records_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	cache_stale = false;
	return true;
}

/* The records table's schema-qualified, quoted name. */
const char *
stg_records_table(void)
{
	if (cache_stale)
		rebuild_cache(false);
	return cached_table_name;
}

Oid
stg_records_relid(bool missing_ok)
{
	if (cache_stale && !rebuild_cache(missing_ok))
		return InvalidOid;
	return cached_relid;
}

/*
 * The records table's OID, locked in lockmode.  The name is looked up again
 * once the lock is granted, as RangeVarGetRelidExtended does for a
 * statement: a rename, drop or schema change that committed while we
 * waited for the lock must not leave us working on a table that is no
 * longer the records table (granting the lock processed its invalidation,
 * which marked the cache stale).
 */
Oid
stg_records_lock(LOCKMODE lockmode, bool missing_ok)
{
	for (;;)
	{
		Oid			relid = stg_records_relid(missing_ok);

		if (!OidIsValid(relid))
			return InvalidOid;
		LockRelationOid(relid, lockmode);
		if (stg_records_relid(true) == relid)
			return relid;
		UnlockRelationOid(relid, lockmode);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Returns the saved plan of slot, preparing it on first use.  query_fmt has
 * every occurrence of the table written as %1$s, and of the extension's
 * schema (for its functions) as %2$s.  Must be called inside SPI_connect().
 */
SPIPlanPtr
stg_plan(StgPlan *slot, const char *query_fmt, int nargs, Oid *argtypes)
{
	const char *table = stg_records_table();
	SPIPlanPtr	plan;
	char	   *query;

	if (slot->plan)
		return slot->plan;

	query = psprintf(query_fmt, table, cached_schema_name);
	plan = SPI_prepare(query, nargs, argtypes);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed for \"%s\": %s",
			 query, SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "SPI_keepplan failed");
	slot->plan = plan;
	slot->next = prepared;
	prepared = slot;
	pfree(query);
	return plan;
}
