/*-------------------------------------------------------------------------
 *
 * direct_lookup.c
 *	  The look-up of the direct write path: a record's newest version,
 *	  committed or being written, by the primary key, waiting for a
 *	  transaction that is changing it; and the forward walk of the primary
 *	  key that serves a sorted batch.  See direct.c for the concurrency
 *	  rules.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/itup.h"
#include "access/nbtree.h"
#include "access/relscan.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "direct.h"

/*
 * Looks id up and leaves its newest version in w->found.  Returns false if
 * there is none (or only versions that are dead for everyone).
 */
static bool
find_newest(StgWriter *w, text *id)
{
	stg_writer_assert(w);
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
		/* waiting with no buffer or index page pinned (see stg_writer_look_up) */
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

	stg_writer_assert(w);
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
bool
stg_writer_look_up(StgWriter *w, text *id, bool first_try,
				   bool absent_final)
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

/* Whether the version in w->found is live at now. */
bool
stg_writer_found_is_live(StgWriter *w, TimestampTz now)
{
	bool		isnull;
	Datum		expires = slot_getattr(w->found, STG_COL_EXPIRES_AT + 1, &isnull);

	return stg_live(isnull, expires, now);
}

