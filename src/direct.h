/*-------------------------------------------------------------------------
 *
 * direct.h
 *	  The writer that the three files of the direct write path share
 *	  (direct.c, direct_lookup.c, direct_write.c); private to them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STORAGE_DIRECT_H
#define STORAGE_DIRECT_H

#include "access/genam.h"
#include "access/relscan.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "storage/bufmgr.h"

#include "storage.h"

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

extern void stg_writer_assert(StgWriter *w);
extern ResultRelInfo *stg_writer_rri(StgWriter *w);
extern bool stg_writer_look_up(StgWriter *w, text *id, bool first_try,
							   bool absent_final);
extern bool stg_writer_found_is_live(StgWriter *w, TimestampTz now);

#endif							/* STORAGE_DIRECT_H */
