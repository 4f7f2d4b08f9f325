/*-------------------------------------------------------------------------
 *
 * direct.c
 *	  The direct write path of the record functions (storage_save,
 *	  storage_delete, storage_touch and their batch forms): one record is
 *	  looked up in the primary key, checked and then updated, inserted or
 *	  deleted through the table access method and the executor's index
 *	  routines, without planning or running an SQL statement.
 *
 * Profiling showed a save spending most of its user time in SPI and in
 * starting and stopping the executor for a one-row statement; this path
 * does the same work as that statement with a fraction of the machinery.
 * It follows how the server does the same thing where it has no plan
 * either: logical replication's apply worker (execReplication.c) for the
 * look-up, and INSERT ... ON CONFLICT (nodeModifyTable.c) for inserting
 * without ever raising unique_violation.
 *
 * Concurrency (READ COMMITTED only, see stg_writer_begin):
 *	- The look-up uses a dirty snapshot, which also shows row versions of
 *	  transactions still in progress; if the newest version is being
 *	  inserted, updated or deleted by one, we wait for it to finish and look
 *	  again.  The checks (liveness, expected version) are thus made on the
 *	  newest committed version, as UPDATE's re-check of a concurrently
 *	  updated row does.
 *	- The update (or delete) is of exactly the version we checked; if
 *	  someone replaced or deleted it in between, we start over.
 *	- An insert is speculative: if another session inserted the same id in
 *	  between, our tuple is killed and we start over, finding theirs.
 *
 * The path is three files: this one decides when it may be taken and
 * opens and closes a writer; direct_lookup.c finds a record's newest
 * version; direct_write.c writes it.  They share the writer (direct.h).
 *
 * Anything this path does not reproduce exactly falls back to the SPI
 * statements of the write core (write.c); stg_direct_refusal() below is
 * the one place that decides, for the writes and for the bucket readers
 * (bucket_api.c), and the view storage_write_path shows its verdicts.  The
 * regression tests core_paths and fast_paths run the operations through
 * both paths and compare the outcomes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/itup.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "nodes/primnodes.h"
#include "executor/executor.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "direct.h"

/* the records table's columns as the install script makes them */
static const struct
{
	const char *name;
	Oid			type;
}			expected_cols[STG_NUM_COLS] =
{
	{"id", TEXTOID},
	{"version", INT8OID},
	{"expires_at", TIMESTAMPTZOID},
	{"format", TEXTOID},
	{"data", BYTEAOID},
	{"purge_after", TIMESTAMPTZOID},
};

PG_FUNCTION_INFO_V1(storage_write_path);

/*
 * What every look-up and write below relies on, checked in assertion-enabled
 * builds: the table and primary key that stg_writer_begin() accepted,
 * still locked by us (the lock is what keeps their definition, and so
 * stg_direct_refusal()'s verdict, from changing), a btree (the walk reads its
 * keys and order) that is immediate (the arbiter of speculative inserts),
 * and a transaction whose statements each take a fresh snapshot.
 */
void
stg_writer_assert(StgWriter *w)
{
	Assert(w->rel->rd_rel->relkind == RELKIND_RELATION);
	Assert(CheckRelationLockedByMe(w->rel, RowExclusiveLock, true));
	Assert(CheckRelationLockedByMe(w->pkey, RowExclusiveLock, true));
	Assert(w->pkey->rd_index->indisprimary && w->pkey->rd_index->indimmediate);
	Assert(w->pkey->rd_rel->relam == BTREE_AM_OID);
	Assert(!IsolationUsesXactSnapshot());
}

/*
 * Why the table is not the one the install script made, or NULL: same
 * columns, nothing dropped, a primary key.
 */
static const char *
shape_refusal(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		return "the records table is not a plain table";
	if (desc->natts != STG_NUM_COLS || desc->constr == NULL ||
		!OidIsValid(stg_primary_key(rel)))
		return "the records table's columns or primary key differ from the installed ones";
	for (i = 0; i < STG_NUM_COLS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != expected_cols[i].type ||
			strcmp(NameStr(att->attname), expected_cols[i].name) != 0)
			return "the records table's columns or primary key differ from the installed ones";
	}
	if (TupleDescAttr(desc, STG_COL_PURGE_AFTER)->attgenerated != ATTRIBUTE_GENERATED_STORED)
		return "the records table's columns or primary key differ from the installed ones";
	return NULL;
}

/*
 * What each operation's statement needs: its table privileges, and whether
 * it writes (then CheckCmdReplicaIdentity's commands).  The purge
 * statement's FOR UPDATE needs UPDATE, so the direct purge asks for it too;
 * its replica identity check is made in stg_direct_refusal.
 */
static const struct
{
	const char *name;
	AclMode		need;
	bool		updates;
	bool		deletes;
	bool		writes;
}			ops[STG_NUM_OPS] =
{
	[STG_OP_SAVE] = {"save", ACL_SELECT | ACL_INSERT | ACL_UPDATE, true, false, true},
	[STG_OP_UPDATE] = {"versioned save, touch", ACL_SELECT | ACL_UPDATE, true, false, true},
	[STG_OP_DELETE] = {"delete", ACL_SELECT | ACL_DELETE, false, true, true},
	[STG_OP_PURGE] = {"purge", ACL_SELECT | ACL_UPDATE | ACL_DELETE, false, false, true},
	[STG_OP_READ] = {"bucket read", ACL_SELECT, false, false, false},
};

/*
 * Whether the statement's replica identity check refuses deletes: the
 * executor's own function, which raises, in a subtransaction.  Only the
 * purge asks: its statement path skips and reports the rows it cannot
 * delete instead of raising (purge.c), and the direct purge must end the
 * same way.  A table in no publication is never refused, and asks
 * nothing more than the relcache entry's publication summary.
 */
static bool
deletes_refused_by_publication(Relation rel)
{
	PublicationDesc pd;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool refused = false;

	RelationBuildPublicationDesc(rel, &pd);
	if (!pd.pubactions.pubinsert && !pd.pubactions.pubupdate &&
		!pd.pubactions.pubdelete && !pd.pubactions.pubtruncate &&
		pd.rf_valid_for_delete && pd.cols_valid_for_delete)
		return false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		CheckCmdReplicaIdentity(rel, CMD_DELETE);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		refused = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return refused;
}

/*
 * The one decision whether an operation may skip the executor: NULL if
 * the fast path does exactly what the operation's statement would do here,
 * else why not (the caller then runs the statement).  Everything the
 * executor enforces around a statement on this table is either reproduced
 * by the fast path (constraints, unique and exclusion checks, the replica
 * identity check made by stg_writer_begin) or named here.  Only the
 * relcache entry, the role's privileges (syscache) and settings are read:
 * this runs on every call.
 */
const char *
stg_direct_refusal(Relation rel, StgOp op)
{
	Assert(op >= 0 && op < STG_NUM_OPS);

	if (ops[op].writes)
	{
		if (!stg_direct_writes)
			return "storage.direct_writes is off";
		/* their snapshot rules and predicate locks */
		if (IsolationUsesXactSnapshot())
			return "the transaction is REPEATABLE READ or SERIALIZABLE";
		if (XactReadOnly)
			return "the transaction is read-only";
		if (IsInParallelMode())
			return "the transaction is in parallel mode";
	}

	/*
	 * A module that checks or records each statement's table access (pgaudit,
	 * sepgsql) sees it only through the executor; we cannot call its hook
	 * ourselves because it depends on its own executor hooks' state.
	 * ExecutorStart/Run hooks (pg_stat_statements, auto_explain) only
	 * observe, and see the calling statement anyway.
	 */
	if (ExecutorCheckPerms_hook != NULL)
		return "a module checks or audits table access (ExecutorCheckPerms_hook, e.g. pgaudit or sepgsql)";
	/* privileges granted per column are the executor's to check */
	if (pg_class_aclmask(RelationGetRelid(rel), GetUserId(), ops[op].need,
						 ACLMASK_ALL) != ops[op].need)
		return "the role lacks a table-level privilege the statement needs";
	if (rel->rd_rel->relrowsecurity)
		return "row-level security is enabled on the records table";
	/* lazily cleared, so it may outlive the last child: harmless */
	if (rel->rd_rel->relhassubclass)
		return "the records table has inheritance children";
	if (ops[op].writes)
	{
		if (rel->rd_rel->relispartition)
			return "the records table is a partition";
		if (rel->trigdesc != NULL)
			return "the records table has triggers";
		if (rel->rd_rules != NULL)
			return "the records table has rules";
	}
	if (op == STG_OP_PURGE && deletes_refused_by_publication(rel))
		return "a publication of the records table refuses deletes (replica identity)";
	return shape_refusal(rel);
}

/*
 * Opens the records table for direct writes, or returns NULL when the
 * caller must use its SPI statement instead (stg_direct_refusal).
 */
StgWriter *
stg_writer_begin(StgOp op)
{
	StgWriter  *w;
	Relation	rel;

	Assert(ops[op].writes);
	rel = table_open(stg_records_lock(RowExclusiveLock, false), NoLock);
	if (stg_direct_refusal(rel, op) != NULL)
	{
		table_close(rel, RowExclusiveLock);
		return NULL;
	}

	/*
	 * The statement's own check, with its error: no replica identity, or a
	 * publication's row filter or column list that the identity does not
	 * cover, refuses updates and deletes of a table that publishes them.
	 * (An INSERT ... ON CONFLICT DO UPDATE is checked as an update.)  The
	 * publication information is cached in the relcache entry.
	 */
	if (ops[op].updates)
		CheckCmdReplicaIdentity(rel, CMD_UPDATE);
	if (ops[op].deletes)
		CheckCmdReplicaIdentity(rel, CMD_DELETE);

	/*
	 * Like the statement it replaces, start a new command, so that rows
	 * written earlier in the calling statement (a data-modifying WITH) can
	 * be updated here.
	 */
	CommandCounterIncrement();

	w = palloc0(sizeof(StgWriter));
	w->rel = rel;
	w->pkey = index_open(stg_primary_key(rel), RowExclusiveLock);
	w->estate = CreateExecutorState();
	w->found = table_slot_create(rel, NULL);
	w->newrow = MakeSingleTupleTableSlot(RelationGetDescr(rel), &TTSOpsVirtual);
	return w;
}

/*
 * storage_write_path() -> (operation, path, reason): for each operation,
 * the path it takes in this database, for the current role and in the
 * current transaction, and why it is not the direct one.
 */
Datum
storage_write_path(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	rel;
	int			op;

	InitMaterializedSRF(fcinfo, 0);
	rel = table_open(stg_records_lock(AccessShareLock, false), NoLock);
	for (op = 0; op < STG_NUM_OPS; op++)
	{
		const char *why = stg_direct_refusal(rel, op);
		Datum		values[3];
		bool		nulls[3] = {false, false, why == NULL};

		values[0] = CStringGetTextDatum(ops[op].name);
		values[1] = CStringGetTextDatum(why ? "statement" : "direct");
		values[2] = why ? CStringGetTextDatum(why) : (Datum) 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	table_close(rel, AccessShareLock);
	return (Datum) 0;
}

/*
 * Tells the writer that its look-ups will come in ascending id order (a
 * sorted batch).  It then walks the primary key forward from one id to the
 * next instead of descending from the root for each: ids saved together
 * are often neighbours (one user's keys, a range), and the descent was a
 * quarter of a batched save's time.
 */
void
stg_writer_walk(StgWriter *w)
{
	w->in_order = true;
}

/*
 * The table the writer has open and locked, and a slot of it that a
 * caller's own scan may use between the writer's calls (the purge's).
 */
Relation
stg_writer_relation(StgWriter *w)
{
	stg_writer_assert(w);
	return w->rel;
}

TupleTableSlot *
stg_writer_slot(StgWriter *w)
{
	Assert(SLOT_PINS_NOTHING(w->found));
	return w->found;
}

void
stg_writer_end(StgWriter *w)
{
	if (w->walk)
		index_endscan(w->walk);
	ExecDropSingleTupleTableSlot(w->found);
	ExecDropSingleTupleTableSlot(w->newrow);
	if (w->rri)
		ExecCloseIndices(w->rri);
	FreeExecutorState(w->estate);
	index_close(w->pkey, NoLock);
	table_close(w->rel, NoLock);
	pfree(w);
}


/* The executor's view of the table, for index maintenance. */
ResultRelInfo *
stg_writer_rri(StgWriter *w)
{
	if (w->rri == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(w->estate->es_query_cxt);

		w->rri = makeNode(ResultRelInfo);
		InitResultRelInfo(w->rri, w->rel, 0, NULL, 0);
		ExecOpenIndices(w->rri, true);
		w->arbiter = list_make1_oid(RelationGetRelid(w->pkey));
		MemoryContextSwitchTo(oldcxt);
	}
	return w->rri;
}
