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
 * Anything this path does not reproduce exactly falls back to the SPI
 * statements in records.c and batch.c; stg_direct_refusal() below is
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

#include "storage.h"


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

static StgWriteResult save_one(StgWriter *w, const StgSaveArgs *a,
							   TimestampTz now);
static StgWriteStatus touch_one(StgWriter *w, text *id, bool expires_null,
								Datum expires, int64 expect, TimestampTz now);

struct StgWriter
{
	Relation	rel;
	Relation	pkey;			/* the primary key, for look-ups */
	EState	   *estate;
	ResultRelInfo *rri;			/* indexes opened on first need */
	List	   *arbiter;		/* the primary key, for speculative inserts */
	TupleTableSlot *found;		/* the newest version of the record */
	TupleTableSlot *newrow;		/* the version we write */

	/* the forward walk of the primary key, see stg_writer_walk() */
	bool		in_order;		/* look-ups come in ascending id order */
	IndexScanDesc walk;			/* NULL until the first look-up */
	SnapshotData walk_snapshot; /* its dirty snapshot */
	bool		walk_pending;	/* walk->xs_itup is read, not yet looked at */
	bool		walk_done;		/* no entries left after the last one read */
	FmgrInfo	walk_cmp;		/* the primary key's order */
};

/* a slot of the table that holds no buffer pin (for assertions) */
#define SLOT_PINS_NOTHING(slot) \
	(!TTS_IS_BUFFERTUPLE(slot) || \
	 !BufferIsValid(((BufferHeapTupleTableSlot *) (slot))->buffer))

/*
 * What every look-up and write below relies on, checked in assertion-enabled
 * builds: the table and primary key that stg_writer_begin() accepted,
 * still locked by us (the lock is what keeps their definition, and so
 * table_is_plain()'s verdict, from changing), a btree (the walk reads its
 * keys and order) that is immediate (the arbiter of speculative inserts),
 * and a transaction whose statements each take a fresh snapshot.
 */
static void
assert_writer(StgWriter *w)
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
	rel = table_open(stg_records_relid(false), RowExclusiveLock);
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
	rel = table_open(stg_records_relid(false), AccessShareLock);
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
	assert_writer(w);
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
static ResultRelInfo *
writer_rri(StgWriter *w)
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

/*
 * Looks id up and leaves its newest version in w->found.  Returns false if
 * there is none (or only versions that are dead for everyone).
 */
static bool
find_newest(StgWriter *w, text *id)
{
	assert_writer(w);
	for (;;)
	{
		ScanKeyData key;
		SnapshotData dirty;
		IndexScanDesc scan;
		ItemPointerData tid;
		TransactionId xwait;
		bool		found;

		InitDirtySnapshot(dirty);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_TEXTEQ,
					PointerGetDatum(id));
		key.sk_collation = w->pkey->rd_indcollation[0];
		scan = stg_index_beginscan(w->rel, w->pkey, &dirty, 1, 0);
		index_rescan(scan, &key, 1, NULL, 0);
		found = index_getnext_slot(scan, ForwardScanDirection, w->found);
		index_endscan(scan);
		if (!found)
			return false;

		xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
		if (!TransactionIdIsValid(xwait))
			return true;

		/* another transaction is changing the record: wait, look again */
		tid = w->found->tts_tid;
		ExecClearTuple(w->found);
		/* waiting with no buffer or index page pinned (see look_up) */
		Assert(SLOT_PINS_NOTHING(w->found) && w->walk == NULL);
		if (dirty.speculativeToken)
			SpeculativeInsertionWait(dirty.xmin, dirty.speculativeToken);
		else
			XactLockTableWait(xwait, w->rel, &tid, XLTW_Update);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * The forward walk: one index scan kept open across the look-ups of a
 * sorted batch.  It returns index entries with their keys (xs_want_itup),
 * so entries of ids in between are stepped over without visiting the
 * heap; only entries of the id looked for are fetched, with the same dirty
 * snapshot as find_newest().
 *
 * A btree scan reads a leaf page at a time into its own copy, so entries
 * added after that (by us or anyone) are not seen by the walk.  That is
 * safe here: a record someone else inserts meanwhile makes our speculative
 * insert fail and the retry looks the id up afresh (find_newest), and a
 * version replaced meanwhile makes the update fail the same way.  Every
 * retry and every wait uses find_newest; the walk only serves first looks.
 */
typedef enum
{
	WALK_FOUND,					/* newest version in w->found */
	WALK_ABSENT,				/* no version of the id */
	WALK_BUSY					/* another transaction is changing it */
} WalkResult;

/* entries stepped over before a fresh descent is cheaper */
#define WALK_MAX_STEPS	64

/* Positions the walk before the first entry >= id, descending afresh. */
static void
walk_seek(StgWriter *w, text *id)
{
	ScanKeyData key;

	assert_writer(w);
	if (w->walk == NULL)
	{
		InitDirtySnapshot(w->walk_snapshot);
		fmgr_info_copy(&w->walk_cmp, index_getprocinfo(w->pkey, 1, BTORDER_PROC),
					   CurrentMemoryContext);
		w->walk = stg_index_beginscan(w->rel, w->pkey, &w->walk_snapshot, 1, 0);
		w->walk->xs_want_itup = true;
	}
	/* the scan refers to id until the next seek; batch ids outlive it */
	ScanKeyEntryInitialize(&key, 0, 1, BTGreaterEqualStrategyNumber, InvalidOid,
						   w->pkey->rd_indcollation[0], F_TEXT_GE,
						   PointerGetDatum(id));
	index_rescan(w->walk, &key, 1, NULL, 0);
	w->walk_pending = false;
	w->walk_done = false;
}

/* id compared with the key of the entry the walk read last */
static int
walk_compare(StgWriter *w, text *id)
{
	bool		isnull;
	Datum		key = index_getattr(w->walk->xs_itup, 1,
									w->walk->xs_itupdesc, &isnull);

	return DatumGetInt32(FunctionCall2Coll(&w->walk_cmp,
										   w->pkey->rd_indcollation[0],
										   PointerGetDatum(id), key));
}

/* Ends the walk, letting go of its pins; the next look-up starts afresh. */
static void
walk_end(StgWriter *w)
{
	ExecClearTuple(w->found);
	index_endscan(w->walk);
	w->walk = NULL;
}

static WalkResult
walk_find(StgWriter *w, text *id)
{
	int			steps = 0;

	/*
	 * Start afresh unless id lies ahead of the last entry read (or is that
	 * entry's, not yet looked at).  After the end of the index xs_itup is
	 * not to be trusted.
	 */
	if (w->walk == NULL || w->walk_done)
		walk_seek(w, id);
	else
	{
		int			c = walk_compare(w, id);

		if (c < 0 || (c == 0 && !w->walk_pending))
			walk_seek(w, id);
	}

	for (;;)
	{
		int			c;

		if (!w->walk_pending)
		{
			if (w->walk_done ||
				index_getnext_tid(w->walk, ForwardScanDirection) == NULL)
			{
				w->walk_done = true;
				return WALK_ABSENT;
			}
		}
		w->walk_pending = false;
		c = walk_compare(w, id);
		if (c > 0)
		{
			if (++steps > WALK_MAX_STEPS)
			{
				walk_seek(w, id);
				steps = 0;
			}
			continue;
		}
		if (c < 0)
		{
			/* past id: the entry belongs to a later look-up */
			w->walk_pending = true;
			return WALK_ABSENT;
		}
		/* WALK_BUSY below reads what only a dirty snapshot reports */
		Assert(w->walk->xs_snapshot->snapshot_type == SNAPSHOT_DIRTY);
		if (index_fetch_heap(w->walk, w->found))
			return TransactionIdIsValid(w->walk_snapshot.xmin) ||
				TransactionIdIsValid(w->walk_snapshot.xmax) ?
				WALK_BUSY : WALK_FOUND;
		/* a version the dirty snapshot does not see: the id's next entry */
	}
}

/*
 * Looks id up like find_newest; a writer told its look-ups come in order
 * walks to it on the first try.  The walk's copy of a leaf page misses
 * entries added since it was read (a record created, or moved by a
 * non-HOT update, by a transaction that committed meanwhile), so "absent"
 * from the walk is trusted only when the caller inserts speculatively next
 * (absent_final), which catches such a record; otherwise find_newest
 * confirms it.  "Found" is always right: a replaced version is not visible
 * to the dirty snapshot, or is busy.
 */
static bool
look_up(StgWriter *w, text *id, bool first_try, bool absent_final)
{
	if (w->walk && !first_try)
		walk_end(w);			/* a retry may wait: no pins held meanwhile */
	if (w->in_order && first_try)
	{
		/* the scan allocates lazily: not in the per-record context */
		MemoryContext oldcxt = MemoryContextSwitchTo(w->estate->es_query_cxt);
		WalkResult	r = walk_find(w, id);

		MemoryContextSwitchTo(oldcxt);
		if (r == WALK_FOUND || (r == WALK_ABSENT && absent_final))
			return r == WALK_FOUND;
		walk_end(w);
	}
	return find_newest(w, id);
}

/*
 * The table has NOT NULL on id and version, which we always fill.  A DBA
 * may have added more; the executor's own check then raises the error,
 * with its usual message.  (It is not called every time because a CHECK
 * constraint costs a catalog read per call; the install script has none.)
 */
static void
check_constraints(StgWriter *w)
{
	TupleConstr *constr = w->rel->rd_att->constr;
	TupleDesc	desc = RelationGetDescr(w->rel);
	bool		run = constr->num_check > 0;
	int			i;

	for (i = 0; i < STG_NUM_COLS && !run; i++)
		run = TupleDescAttr(desc, i)->attnotnull && w->newrow->tts_isnull[i];
	if (run)
		ExecConstraints(writer_rri(w), w->newrow, w->estate);
}

static bool
found_is_live(StgWriter *w, TimestampTz now)
{
	bool		isnull;
	Datum		expires = slot_getattr(w->found, STG_COL_EXPIRES_AT + 1, &isnull);

	return stg_live(isnull, expires, now);
}

/* heapam does not use it, but the table AM interface takes one */
static Snapshot
current_snapshot(void)
{
	return ActiveSnapshotSet() ? GetActiveSnapshot() : InvalidSnapshot;
}

/* Fills w->newrow with the record to write. */
static void
build_row(StgWriter *w, const StgSaveArgs *a, int64 version)
{
	TupleTableSlot *slot = w->newrow;
	Datum	   *v = slot->tts_values;
	bool	   *n = slot->tts_isnull;

	ExecClearTuple(slot);
	v[STG_COL_ID] = PointerGetDatum(a->id);
	n[STG_COL_ID] = false;
	v[STG_COL_VERSION] = Int64GetDatum(version);
	n[STG_COL_VERSION] = false;
	v[STG_COL_EXPIRES_AT] = a->expires;
	n[STG_COL_EXPIRES_AT] = a->expires_null;
	v[STG_COL_FORMAT] = a->format;
	n[STG_COL_FORMAT] = a->format_null;
	v[STG_COL_DATA] = a->data;
	n[STG_COL_DATA] = a->data_null;
	/* the generated column, computed by the function its expression calls */
	n[STG_COL_PURGE_AFTER] = !stg_expiry_slot_of(a->expires_null, a->expires,
												 &v[STG_COL_PURGE_AFTER]);
	ExecStoreVirtualTuple(slot);
	check_constraints(w);
}

/*
 * Locks the version at tid for our update without waiting.  Returns false
 * if another transaction holds a conflicting lock on it or has replaced or
 * deleted it: the caller starts over, and waits then, with the walk ended.
 */
static bool
lock_without_waiting(StgWriter *w, ItemPointer tid)
{
	TM_FailureData tmfd;
	TM_Result	res;

	res = table_tuple_lock(w->rel, tid, current_snapshot(), w->found,
						   GetCurrentCommandId(true), LockTupleNoKeyExclusive,
						   LockWaitSkip, 0, &tmfd);
	/* the slot holds the locked version and a pin: let go of both */
	ExecClearTuple(w->found);
	switch (res)
	{
		case TM_Ok:
			return true;
		case TM_WouldBlock:
		case TM_Updated:
		case TM_Deleted:
			return false;
		case TM_SelfModified:
			elog(ERROR, "record was already modified by this command");
			break;
		default:
			elog(ERROR, "unexpected table_tuple_lock status: %u", res);
			break;
	}
	return false;
}

/*
 * Replaces the version in w->found.  Returns false if it is no longer the
 * newest one (the caller starts over).
 */
static bool
update_found(StgWriter *w, const StgSaveArgs *a, int64 version)
{
	ItemPointerData tid = w->found->tts_tid;
	TM_FailureData tmfd;
	LockTupleMode lockmode;
	TM_Result	res;

	StgIndexUpdate update_indexes;

	/* no buffer pin while heap_update possibly waits for a row lock */
	ExecClearTuple(w->found);
	assert_writer(w);
	Assert(SLOT_PINS_NOTHING(w->found) && ItemPointerIsValid(&tid));

	/*
	 * While the walk is open it pins a leaf page of the primary key, which
	 * VACUUM must not be kept waiting for behind a row lock: then a busy
	 * row sends the caller round again, to wait after the walk has ended.
	 * heap_update() must not be asked not to wait (an assertion-enabled
	 * server stops there), so the row is first locked without waiting, as
	 * SKIP LOCKED does; the update then meets only our own lock.
	 */
	if (w->walk != NULL && !lock_without_waiting(w, &tid))
		return false;

	build_row(w, a, version);
	res = table_tuple_update(w->rel, &tid, w->newrow,
							 GetCurrentCommandId(true),
							 current_snapshot(), InvalidSnapshot,
							 true, &tmfd, &lockmode, &update_indexes);
	switch (res)
	{
		case TM_Ok:
			break;
		case TM_Updated:
		case TM_Deleted:
			return false;
		case TM_SelfModified:
			elog(ERROR, "record was already modified by this command");
			break;
		default:
			elog(ERROR, "unexpected table_tuple_update status: %u", res);
			break;
	}

	/* not a HOT update: every index gets an entry for the new version */
	if (!stg_no_index_update(update_indexes))
		list_free(stg_insert_index_tuples(writer_rri(w), w->newrow, w->estate,
										  true, false, NULL, NIL,
										  stg_only_summarizing(update_indexes)));
	return true;
}

/*
 * Inserts a new record.  Returns false if another session inserted the id
 * since we looked (the caller starts over and finds that row).
 */
static bool
insert_new(StgWriter *w, const StgSaveArgs *a)
{
	ResultRelInfo *rri = writer_rri(w);
	TransactionId xid = GetCurrentTransactionId();
	uint32		token;
	bool		conflict = false;

	assert_writer(w);
	build_row(w, a, 1);
	token = SpeculativeInsertionLockAcquire(xid);
	table_tuple_insert_speculative(w->rel, w->newrow,
								   GetCurrentCommandId(true), 0, NULL, token);
	/* the index entries point at the tuple just placed */
	Assert(ItemPointerIsValid(&w->newrow->tts_tid));
	list_free(stg_insert_index_tuples(rri, w->newrow, w->estate, false, true,
									  &conflict, w->arbiter, false));
	table_tuple_complete_speculative(w->rel, w->newrow, token, !conflict);
	SpeculativeInsertionLockRelease(xid);
	return !conflict;
}

/*
 * A batch writes many records: each one's garbage goes into the per-record
 * memory context, emptied here; returns the context to switch back to.
 */
static MemoryContext
record_context(StgWriter *w)
{
	ResetPerTupleExprContext(w->estate);
	return MemoryContextSwitchTo(GetPerTupleMemoryContext(w->estate));
}

/*
 * Saves one record by the save rules (write.c's stg_save_verdict).  On
 * failure the result tells what the newest version was, for the message.
 */
StgWriteResult
stg_writer_save(StgWriter *w, const StgSaveArgs *a, TimestampTz now)
{
	MemoryContext oldcxt = record_context(w);
	StgWriteResult r = save_one(w, a, now);

	MemoryContextSwitchTo(oldcxt);
	return r;
}

/* Whether the data of the version in w->found equals match. */
static bool
found_data_equals(StgWriter *w, bytea *match)
{
	bool		isnull;
	Datum		data = slot_getattr(w->found, STG_COL_DATA + 1, &isnull);

	return !isnull && DatumGetBool(DirectFunctionCall2(byteaeq, data,
													   PointerGetDatum(match)));
}

static StgWriteResult
save_one(StgWriter *w, const StgSaveArgs *a, TimestampTz now)
{
	bool		inserts = a->expect <= 0 && a->match_data == NULL;
	bool		first_try = true;

	for (;; first_try = false)
	{
		StgWriteResult r = {0};
		bool		found;
		bool		matches = false;

		CHECK_FOR_INTERRUPTS();
		found = look_up(w, a->id, first_try, inserts);
		if (found)
		{
			bool		isnull;

			r.live = found_is_live(w, now);
			r.actual = DatumGetInt64(slot_getattr(w->found, STG_COL_VERSION + 1, &isnull));
			if (r.live && a->match_data != NULL)
				matches = found_data_equals(w, a->match_data);
		}
		r.status = stg_save_verdict(a, r.live, r.actual, matches, &r.version);
		if (r.status != STG_WRITE_OK)
		{
			ExecClearTuple(w->found);
			return r;
		}
		/* a compare-and-swap or versioned save never inserts */
		Assert(found || inserts);
		if (found ? !update_found(w, a, r.version) : !insert_new(w, a))
			continue;

		/* the next save in this statement must see this one */
		CommandCounterIncrement();
		return r;
	}
}

/*
 * Deletes a record by the rules of stg_write_delete(): OK if a live record
 * was deleted (an expired one is deleted too, but reports NOT_FOUND); with
 * expect >= 1 only the live record at that version is deleted.
 */
StgWriteStatus
stg_writer_delete(StgWriter *w, text *id, int64 expect, TimestampTz now)
{
	bool		first_try = true;

	for (;; first_try = false)
	{
		ItemPointerData tid;
		TM_FailureData tmfd;
		TM_Result	res;
		bool		live;
		bool		isnull;

		CHECK_FOR_INTERRUPTS();
		if (!look_up(w, id, first_try, false))
			return STG_WRITE_NOT_FOUND;
		live = found_is_live(w, now);
		if (expect >= 1 &&
			(!live || DatumGetInt64(slot_getattr(w->found, STG_COL_VERSION + 1,
												 &isnull)) != expect))
		{
			ExecClearTuple(w->found);
			return STG_WRITE_NOT_FOUND;
		}
		tid = w->found->tts_tid;
		ExecClearTuple(w->found);
		Assert(SLOT_PINS_NOTHING(w->found) && ItemPointerIsValid(&tid));
		/* not waiting while the walk pins the index, as in update_found */
		res = table_tuple_delete(w->rel, &tid, GetCurrentCommandId(true),
								 current_snapshot(), InvalidSnapshot,
								 w->walk == NULL, &tmfd, false);
		if (res == TM_Updated || res == TM_Deleted || res == TM_BeingModified)
			continue;
		if (res != TM_Ok)
			elog(ERROR, "unexpected table_tuple_delete status: %u", res);
		if (!live)
			storage_feed_expired(id);
		CommandCounterIncrement();
		return live ? STG_WRITE_OK : STG_WRITE_NOT_FOUND;
	}
}

/*
 * Moves a live record's expiry by the rules of stg_write_touch(); expect
 * < 1 means any version.  OK if touched.
 */
StgWriteStatus
stg_writer_touch(StgWriter *w, text *id, bool expires_null,
				 Datum expires, int64 expect, TimestampTz now)
{
	MemoryContext oldcxt = record_context(w);
	StgWriteStatus st = touch_one(w, id, expires_null, expires, expect, now);

	MemoryContextSwitchTo(oldcxt);
	return st;
}

/*
 * The record in w->found as save arguments, to write it again with some
 * fields changed.  The values are copied (an unchanged TOAST pointer stays
 * one) because the old version's buffer is let go before the update.
 */
static void
args_from_found(StgWriter *w, text *id, StgSaveArgs *a)
{
	TupleTableSlot *f = w->found;

	slot_getallattrs(f);
	memset(a, 0, sizeof(StgSaveArgs));
	a->id = id;
	a->expect = DatumGetInt64(f->tts_values[STG_COL_VERSION]);
	a->data_null = f->tts_isnull[STG_COL_DATA];
	a->data = a->data_null ? (Datum) 0 :
		datumCopy(f->tts_values[STG_COL_DATA], false, -1);
	a->format_null = f->tts_isnull[STG_COL_FORMAT];
	a->format = a->format_null ? (Datum) 0 :
		datumCopy(f->tts_values[STG_COL_FORMAT], false, -1);
	a->expires_null = f->tts_isnull[STG_COL_EXPIRES_AT];
	a->expires = f->tts_values[STG_COL_EXPIRES_AT];
}

static StgWriteStatus
touch_one(StgWriter *w, text *id, bool expires_null, Datum expires,
		  int64 expect, TimestampTz now)
{
	bool		first_try = true;

	for (;; first_try = false)
	{
		StgSaveArgs a;
		bool		isnull;
		int64		version;

		CHECK_FOR_INTERRUPTS();
		if (!look_up(w, id, first_try, false))
			return STG_WRITE_NOT_FOUND;
		version = DatumGetInt64(slot_getattr(w->found, STG_COL_VERSION + 1, &isnull));
		if (!found_is_live(w, now) || (expect >= 1 && version != expect))
		{
			ExecClearTuple(w->found);
			return STG_WRITE_NOT_FOUND;
		}
		args_from_found(w, id, &a);
		a.expires = expires;
		a.expires_null = expires_null;
		if (update_found(w, &a, version))
		{
			storage_feed_touched(id);
			CommandCounterIncrement();
			return STG_WRITE_OK;
		}
	}
}

/*
 * Gives the record id the version "version" (stg_write_set_version): the
 * row is this transaction's own, so no one else can replace it meanwhile.
 * False if there is no such record.
 */
bool
stg_writer_set_version(StgWriter *w, text *id, int64 version)
{
	MemoryContext oldcxt = record_context(w);
	StgSaveArgs a;
	bool		done;

	if (!look_up(w, id, true, false))
		done = false;
	else
	{
		args_from_found(w, id, &a);
		done = update_found(w, &a, version);
		if (done)
			CommandCounterIncrement();
	}
	MemoryContextSwitchTo(oldcxt);
	return done;
}
