/*-------------------------------------------------------------------------
 *
 * feed.c
 *	  The change feed's logical decoding output plugin, and the notes the
 *	  write paths leave in the WAL for it.
 *
 * PostgreSQL loads an output plugin by library name, so the extension's
 * own library is the plugin: pg_create_logical_replication_slot('app',
 * 'storage').  It turns the changes of the records table into the binary
 * events of FEED-FORMAT.md (put, touch, delete, expire and a commit
 * message per transaction), in commit order, and ignores every other
 * table.
 *
 * Two things cannot be read from the table's WAL: whether an update only
 * moved expires_at (a touch), and whether a deleted row had expired (with
 * the default replica identity the old tuple holds only the id).  So the
 * write paths of the extension say it themselves: right after deleting an
 * expired row, or after touching a record, they write a transactional
 * logical message naming the id (storage_feed_expired/_touched, only when
 * wal_level is logical).  The plugin holds back the last update or delete
 * of the transaction until the next change of the table, or its commit:
 * a message for that id arriving first turns it into an expire or a
 * touch.  The purge's statement (purge.c) deletes only expired rows but
 * cannot note each one, so it is enclosed in two notes instead ("1" before,
 * "0" after), and every delete between them is an expire.  A note follows
 * its row within the same (sub)transaction,
 * so it is decoded with it or discarded with it, and it is written only
 * for a row that really was deleted or updated: the classification is
 * exact, and the plugin holds at most one event.  A plain SQL DELETE of an
 * expired row writes no message and shows as a delete.
 *
 * An update that gives a record version 1 replaced an expired record (a
 * save over it; a live one gets its version + 1): it is an expire of the
 * old record followed by a put of the new one, unless a touch note makes
 * it a touch of a record at version 1.
 *
 * Memory: no streaming callbacks, so PostgreSQL decodes a transaction only
 * once it committed and spills it to disk beyond logical_decoding_work_mem;
 * the plugin builds each event in a memory context reset after it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/xlog.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "libpq/pqformat.h"
#include "replication/logical.h"
#include "replication/message.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "storage.h"

#define FEED_EXPIRE_PREFIX	"storage.expire"
#define FEED_TOUCH_PREFIX	"storage.touch"
#define FEED_PURGE_PREFIX	"storage.purge"

/* event flags, FEED-FORMAT.md */
#define FEED_HAS_EXPIRES	0x01
#define FEED_HAS_FORMAT		0x02
#define FEED_HAS_DATA		0x04
#define FEED_NO_VALUES		0x08

/* the records table's columns the events carry */
typedef enum FeedColumn
{
	FEED_COL_ID,
	FEED_COL_VERSION,
	FEED_COL_EXPIRES,
	FEED_COL_FORMAT,
	FEED_COL_DATA,
	FEED_NUM_COLS
} FeedColumn;

static const char *const feed_column_names[FEED_NUM_COLS] = {
	"id", "version", "expires_at", "format", "data"
};

/*
 * The records table as the decoded transactions see it: looked up under
 * the historic snapshot at the first change of a decoding session and
 * again after any relcache invalidation that may concern it (a DROP and
 * CREATE EXTENSION in the decoded history gives it another OID).
 */
static Oid	feed_relid = InvalidOid;
static bool feed_relid_valid = false;
static AttrNumber feed_attnums[FEED_NUM_COLS];
static bool feed_callback_registered = false;

/* An update or delete held back until it is known what it was. */
typedef struct FeedHeld
{
	bool		held;
	char		op;				/* 'P' (an update) or 'D' */
	bool		replaced;		/* 'P' at version 1: an expired one replaced */
	int64		version;
	bool		has_expires;
	TimestampTz expires;
	StringInfoData id;
	StringInfoData event;		/* the event as it goes out unchanged */
} FeedHeld;

typedef struct FeedState
{
	char	   *prefix;			/* option "prefix" */
	Size		prefix_len;
	bool		values;			/* option "values" */
	bool		commits;		/* option "commits" (storage_changes: false) */
	MemoryContext event_cxt;	/* reset after every event */
	int32		nevents;		/* events sent in the current transaction */
	bool		purging;		/* between the purge statement's notes */
	FeedHeld	held;
} FeedState;

void		_PG_output_plugin_init(OutputPluginCallbacks *cb);

PG_FUNCTION_INFO_V1(storage_feed_deleted);

static void
feed_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == feed_relid || !OidIsValid(feed_relid))
		feed_relid_valid = false;
}

/* The records table's OID, InvalidOid while the extension does not exist. */
static Oid
feed_records_relid(Relation changed)
{
	if (!feed_relid_valid)
	{
		int			i;

		feed_relid = storage_find_records_table();
		feed_relid_valid = true;
		if (!feed_callback_registered)
		{
			CacheRegisterRelcacheCallback(feed_relcache_callback, (Datum) 0);
			feed_callback_registered = true;
		}
		for (i = 0; i < FEED_NUM_COLS; i++)
			feed_attnums[i] = InvalidAttrNumber;
	}
	if (OidIsValid(feed_relid) && RelationGetRelid(changed) == feed_relid &&
		feed_attnums[FEED_COL_ID] == InvalidAttrNumber)
	{
		TupleDesc	desc = RelationGetDescr(changed);
		int			i;
		int			j;

		for (i = 0; i < FEED_NUM_COLS; i++)
			for (j = 0; j < desc->natts; j++)
				if (!TupleDescAttr(desc, j)->attisdropped &&
					strcmp(NameStr(TupleDescAttr(desc, j)->attname),
						   feed_column_names[i]) == 0)
					feed_attnums[i] = j + 1;
	}
	return feed_relid;
}

/* A true/false option of the plugin. */
static bool
feed_bool_option(DefElem *elem)
{
	bool		result;

	if (elem->arg == NULL || !parse_bool(strVal(elem->arg), &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" of the storage output plugin must be true or false",
						elem->defname)));
	return result;
}

static void
feed_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
			 bool is_init)
{
	FeedState  *st = MemoryContextAllocZero(ctx->context, sizeof(FeedState));
	MemoryContext old = MemoryContextSwitchTo(ctx->context);
	ListCell   *lc;

	st->prefix = "";
	st->values = true;
	st->commits = true;
	foreach(lc, ctx->output_plugin_options)
	{
		DefElem    *elem = lfirst(lc);

		if (strcmp(elem->defname, "prefix") == 0)
			st->prefix = pstrdup(elem->arg ? strVal(elem->arg) : "");
		else if (strcmp(elem->defname, "values") == 0)
			st->values = feed_bool_option(elem);
		else if (strcmp(elem->defname, "commits") == 0)
			st->commits = feed_bool_option(elem);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown option \"%s\" of the storage output plugin",
							elem->defname),
					 errhint("The options are \"prefix\" and \"values\".")));
	}
	st->prefix_len = strlen(st->prefix);
	st->event_cxt = AllocSetContextCreate(ctx->context, "storage feed event",
										  ALLOCSET_DEFAULT_SIZES);
	initStringInfo(&st->held.id);
	initStringInfo(&st->held.event);
	MemoryContextSwitchTo(old);
	ctx->output_plugin_private = st;
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	/* a new session looks the table up again, under its own snapshot */
	feed_relid_valid = false;
}

static void
feed_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	FeedState  *st = ctx->output_plugin_private;

	st->nevents = 0;
	st->purging = false;
	st->held.held = false;
}

/* Sends one complete message. */
static void
feed_write(LogicalDecodingContext *ctx, const char *data, int len)
{
	FeedState  *st = ctx->output_plugin_private;

	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, data, len);
	OutputPluginWrite(ctx, true);
	st->nevents++;
}

/*
 * An event without values into buf (touch, delete, expire, or a put with
 * values omitted); buf is reset first.
 */
static void
feed_build_bare(StringInfo buf, ReorderBufferTXN *txn, char op, int64 version,
				bool has_expires, TimestampTz expires, const char *id,
				int idlen)
{
	resetStringInfo(buf);
	pq_sendbyte(buf, op);
	pq_sendint64(buf, txn->end_lsn);
	pq_sendint64(buf, txn->xact_time.commit_time);
	pq_sendint64(buf, version);
	pq_sendint64(buf, has_expires ? expires : 0);
	pq_sendbyte(buf, (has_expires ? FEED_HAS_EXPIRES : 0) | FEED_NO_VALUES);
	pq_sendint32(buf, idlen);
	pq_sendbytes(buf, id, idlen);
}

/* Sends the held event, as it is or as the note that followed made it. */
static void
feed_flush(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, char note)
{
	FeedState  *st = ctx->output_plugin_private;
	FeedHeld   *h = &st->held;
	StringInfoData buf;

	if (!h->held)
		return;
	h->held = false;
	if (h->op == 'D' || note == 'T')
	{
		char		op = h->op == 'D' ? (note == 'E' ? 'E' : 'D') : 'T';

		initStringInfo(&buf);
		feed_build_bare(&buf, txn, op, op == 'T' ? h->version : 0,
						op == 'T' && h->has_expires, h->expires,
						h->id.data, h->id.len);
		feed_write(ctx, buf.data, buf.len);
		pfree(buf.data);
		return;
	}
	if (h->replaced)
	{
		initStringInfo(&buf);
		feed_build_bare(&buf, txn, 'E', 0, false, 0, h->id.data, h->id.len);
		feed_write(ctx, buf.data, buf.len);
		pfree(buf.data);
	}
	feed_write(ctx, h->event.data, h->event.len);
}

/* A column of the tuple; a column the table lacks is NULL. */
static Datum
feed_attr(HeapTuple tuple, TupleDesc desc, FeedColumn col, bool *isnull)
{
	*isnull = true;
	if (feed_attnums[col] == InvalidAttrNumber)
		return (Datum) 0;
	return heap_getattr(tuple, feed_attnums[col], desc, isnull);
}

/* A value of the tuple, or NULL; *unchanged if it is a TOAST pointer. */
static struct varlena *
feed_varlena(HeapTuple tuple, TupleDesc desc, FeedColumn col, bool *unchanged)
{
	bool		isnull;
	Datum		d = feed_attr(tuple, desc, col, &isnull);

	if (isnull)
		return NULL;

	/*
	 * A value the transaction did not write is still a pointer into the
	 * TOAST table, which cannot be read under the historic snapshot.
	 */
	if (VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(d)))
	{
		*unchanged = true;
		return NULL;
	}
	return pg_detoast_datum_packed((struct varlena *) DatumGetPointer(d));
}

static void
feed_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			Relation relation, ReorderBufferChange *change)
{
	FeedState  *st = ctx->output_plugin_private;
	FeedHeld   *h = &st->held;
	TupleDesc	desc = RelationGetDescr(relation);
	HeapTuple	tuple;
	MemoryContext old;
	struct varlena *id;
	struct varlena *format;
	struct varlena *data;
	bool		unchanged = false;
	bool		isnull;
	int64		version = 0;
	bool		has_expires = false;
	TimestampTz expires = 0;
	uint8		flags;
	char		op;

	if (feed_records_relid(relation) != RelationGetRelid(relation) ||
		!OidIsValid(feed_relid))
		return;

	/* this change settles what the held one was: nothing followed it */
	feed_flush(ctx, txn, 0);

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
		case REORDER_BUFFER_CHANGE_UPDATE:
			op = 'P';
			tuple = storage_change_tuple(change->data.tp.newtuple);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			op = 'D';
			/* NULL with REPLICA IDENTITY NOTHING: the id is not known */
			tuple = change->data.tp.oldtuple ?
				storage_change_tuple(change->data.tp.oldtuple) : NULL;
			break;
		default:
			return;
	}
	if (tuple == NULL)
		return;

	old = MemoryContextSwitchTo(st->event_cxt);
	id = feed_varlena(tuple, desc, FEED_COL_ID, &unchanged);
	if (id == NULL || VARSIZE_ANY_EXHDR(id) < st->prefix_len ||
		memcmp(VARDATA_ANY(id), st->prefix, st->prefix_len) != 0)
		goto done;

	if (op == 'P')
	{
		Datum		d;

		d = feed_attr(tuple, desc, FEED_COL_VERSION, &isnull);
		version = isnull ? 0 : DatumGetInt64(d);
		d = feed_attr(tuple, desc, FEED_COL_EXPIRES, &isnull);
		has_expires = !isnull;
		expires = isnull ? 0 : DatumGetTimestampTz(d);
	}

	if (op == 'D' || !st->values)
		feed_build_bare(&h->event, txn, op, version, has_expires, expires,
						VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
	else
	{
		format = feed_varlena(tuple, desc, FEED_COL_FORMAT, &unchanged);
		data = feed_varlena(tuple, desc, FEED_COL_DATA, &unchanged);
		if (unchanged)
			feed_build_bare(&h->event, txn, op, version, has_expires, expires,
							VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
		else
		{
			flags = (has_expires ? FEED_HAS_EXPIRES : 0) |
				(format ? FEED_HAS_FORMAT : 0) | (data ? FEED_HAS_DATA : 0);
			resetStringInfo(&h->event);
			pq_sendbyte(&h->event, op);
			pq_sendint64(&h->event, txn->end_lsn);
			pq_sendint64(&h->event, txn->xact_time.commit_time);
			pq_sendint64(&h->event, version);
			pq_sendint64(&h->event, expires);
			pq_sendbyte(&h->event, flags);
			pq_sendint32(&h->event, VARSIZE_ANY_EXHDR(id));
			pq_sendbytes(&h->event, VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
			if (format)
			{
				pq_sendint32(&h->event, VARSIZE_ANY_EXHDR(format));
				pq_sendbytes(&h->event, VARDATA_ANY(format),
							 VARSIZE_ANY_EXHDR(format));
			}
			if (data)
			{
				pq_sendint32(&h->event, VARSIZE_ANY_EXHDR(data));
				pq_sendbytes(&h->event, VARDATA_ANY(data),
							 VARSIZE_ANY_EXHDR(data));
			}
		}
	}

	if (op == 'D' && st->purging)
	{
		h->event.data[0] = 'E';
		feed_write(ctx, h->event.data, h->event.len);
		goto done;
	}
	if (change->action == REORDER_BUFFER_CHANGE_INSERT)
	{
		/* nothing can turn an insert into something else */
		feed_write(ctx, h->event.data, h->event.len);
		goto done;
	}
	h->held = true;
	h->op = op;
	h->replaced = (op == 'P' && version == 1);
	h->version = version;
	h->has_expires = has_expires;
	h->expires = expires;
	resetStringInfo(&h->id);
	appendBinaryStringInfo(&h->id, VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));

done:
	MemoryContextSwitchTo(old);
	MemoryContextReset(st->event_cxt);
}

/* The notes of the write paths: they settle the held event of their id. */
static void
feed_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			 XLogRecPtr message_lsn, bool transactional, const char *prefix,
			 Size message_size, const char *message)
{
	FeedState  *st = ctx->output_plugin_private;
	FeedHeld   *h = &st->held;
	char		note;

	if (!transactional)
		return;
	if (strcmp(prefix, FEED_PURGE_PREFIX) == 0)
	{
		feed_flush(ctx, txn, 0);
		st->purging = (message_size == 1 && message[0] == '1');
		return;
	}
	if (!h->held)
		return;
	if (strcmp(prefix, FEED_EXPIRE_PREFIX) == 0 && h->op == 'D')
		note = 'E';
	else if (strcmp(prefix, FEED_TOUCH_PREFIX) == 0 && h->op == 'P')
		note = 'T';
	else
		return;
	if (message_size != (Size) h->id.len ||
		memcmp(message, h->id.data, message_size) != 0)
		return;
	feed_flush(ctx, txn, note);
}

static void
feed_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			XLogRecPtr commit_lsn)
{
	FeedState  *st = ctx->output_plugin_private;
	StringInfoData buf;

	feed_flush(ctx, txn, 0);
	if (st->nevents == 0 || !st->commits)
		return;

	initStringInfo(&buf);
	pq_sendbyte(&buf, 'C');
	pq_sendint64(&buf, txn->end_lsn);
	pq_sendint64(&buf, txn->xact_time.commit_time);
	pq_sendint32(&buf, st->nevents);
	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, buf.data, buf.len);
	OutputPluginWrite(ctx, true);
	pfree(buf.data);
}

static void
feed_shutdown(LogicalDecodingContext *ctx)
{
	feed_relid_valid = false;
}

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = feed_startup;
	cb->begin_cb = feed_begin;
	cb->change_cb = feed_change;
	cb->message_cb = feed_message;
	cb->commit_cb = feed_commit;
	cb->shutdown_cb = feed_shutdown;
}

/*
 * The notes.  Transactional, so that they are decoded with the change
 * they follow or discarded with it; nothing at all below wal_level
 * logical, where no decoding can read them.
 */
static void
feed_note(const char *prefix, const text *id)
{
	if (!XLogLogicalInfoActive())
		return;
	storage_log_logical_message(prefix, VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
}

/* Call right after deleting the expired record id. */
void
storage_feed_expired(const text *id)
{
	feed_note(FEED_EXPIRE_PREFIX, id);
}

/* Call right after moving only the expiry of record id. */
void
storage_feed_touched(const text *id)
{
	feed_note(FEED_TOUCH_PREFIX, id);
}

/*
 * Call with true right before the purge statement, and with false right
 * after it: it deletes only expired records.
 */
void
storage_feed_purging(bool purging)
{
	if (XLogLogicalInfoActive())
		storage_log_logical_message(FEED_PURGE_PREFIX, purging ? "1" : "0", 1);
}

/*
 * storage_feed_deleted(id, live) -> live
 *
 * For the RETURNING clause of the statements that delete many records:
 * it runs right after each row is deleted, so the note follows its row.
 */
Datum
storage_feed_deleted(PG_FUNCTION_ARGS)
{
	bool		live = PG_ARGISNULL(1) ? false : PG_GETARG_BOOL(1);

	if (!PG_ARGISNULL(0) && !live)
		storage_feed_expired(PG_GETARG_TEXT_PP(0));
	PG_RETURN_BOOL(live);
}
