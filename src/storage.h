/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  Declarations shared by the C files of the storage extension, a
 *	  section per file: the records table's columns and limits, the
 *	  extension's SQLSTATEs, the settings, the clock and the liveness rule,
 *	  argument validation, the records table and its saved plans, the write
 *	  core, the direct path, the purge and the shared memory.  The C
 *	  internals are named stg_ (Stg, STG_), apart from the change feed's
 *	  (feed.c); storage_ names are the SQL functions' entry points.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STORAGE_H
#define STORAGE_H

#include "postgres.h"

#include "compat.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "storage/condition_variable.h"
#include "fmgr.h"
#include "storage/lockdefs.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

/*
 * The records table's columns, in order (see the install script); the
 * attribute number of a column is its index + 1.
 */
enum
{
	STG_COL_ID,
	STG_COL_VERSION,
	STG_COL_EXPIRES_AT,
	STG_COL_FORMAT,
	STG_COL_DATA,
	STG_COL_PURGE_AFTER,
	STG_NUM_COLS
};

/* Same limit as the Go provider's MaxIDLength: bytes, not characters. */
#define STG_MAX_ID_BYTES 255

/* SQLSTATEs of class SV ("storage"), see README "SQLSTATEs". */
#define ERRCODE_STORAGE_VERSION_CONFLICT	MAKE_SQLSTATE('S','V','0','0','1')
#define ERRCODE_STORAGE_NOT_FOUND			MAKE_SQLSTATE('S','V','0','0','2')
#define ERRCODE_STORAGE_ALREADY_EXISTS		MAKE_SQLSTATE('S','V','0','0','3')
#define ERRCODE_STORAGE_COMPARE_FAILED		MAKE_SQLSTATE('S','V','0','0','4')

/* guc.c: the settings */
extern int	stg_purge_batch_size;
extern char *stg_test_now;
extern int	stg_expiry_slot_width;
extern bool stg_direct_writes;
extern bool stg_autopurge;
extern int	stg_purge_interval;
extern int	stg_purge_batch_delay;
extern int	stg_purge_busy_rate;
extern int	stg_status_slots;
extern void stg_define_gucs(void);

/*
 * clock.c: the one clock that decides liveness, and the liveness rule: a
 * record is live at now if its expires_at is NULL or later than now.  The
 * rule is written three times, once per language, and nowhere else:
 * stg_live() here for C, the LIVE macro below for the SPI statements, and
 * the SQL function storage_live() for the inlined SQL functions (the
 * update script).
 */
static inline bool
stg_live(bool expires_null, Datum expires, TimestampTz now)
{
	return expires_null || DatumGetTimestampTz(expires) > now;
}

extern TimestampTz stg_now(void);
extern TimestampTz stg_slot_end(TimestampTz ts);
extern bool stg_expiry_slot_of(bool expires_null, Datum expires,
							   Datum *slot);
extern bool stg_ttl_expiry(const Interval *ttl, TimestampTz now,
						   bool zero_means_never, TimestampTz *expires);

/* ids.c */
extern Datum storage_prefix_end(PG_FUNCTION_ARGS);
extern text *stg_id_arg(FunctionCallInfo fcinfo, int argno);
extern void stg_check_id(const char *what, const char *id, int len);
extern void stg_require_arg(FunctionCallInfo fcinfo, int argno,
							const char *argname);
extern const char *stg_name_problem(const char *name);
extern text *stg_joined_id(const char *prefix, const char *name);

/* An array argument, deconstructed; n = -1 for a NULL array. */
typedef struct StgArrayArg
{
	Datum	   *values;
	bool	   *nulls;
	int			n;
	int			lbound;			/* subscript of values[0] */
} StgArrayArg;

extern StgArrayArg stg_array_arg(FunctionCallInfo fcinfo, int argno,
								 const char *name, bool required);

/*
 * relation.c: where the records table is, and this backend's saved SPI
 * plans of the statements on it, thrown away whenever that table changes
 * (e.g. the extension was dropped and created again in this session).
 * Each statement's plan is a static StgPlan beside its text, in the file
 * that runs it; stg_plan() prepares it on first use.
 */
typedef struct StgPlan
{
	SPIPlanPtr	plan;			/* NULL until prepared */
	struct StgPlan *next;		/* the list of prepared plans */
} StgPlan;

/*
 * The SQL texts of the SPI statements run with the caller's search_path,
 * which may put any schema before pg_catalog.  So every operator, function
 * and type name in them is schema-qualified (OPERATOR(pg_catalog.=),
 * pg_catalog.count, ::pg_catalog.bytea) and the table is named with its
 * schema: no object of another schema can be picked up (docs/design.md
 * "Security of the worker and search_path").  A multi-argument unnest() in FROM stays
 * unqualified: the parser expands exactly that spelling into calls of
 * pg_catalog.unnest(), and a qualified one would not be expanded.
 *
 * LIVE is the liveness rule (stg_live) in SQL: row r is live at time now.
 * The statements spell it out rather than call storage_live(): their
 * texts are part of error messages (CONTEXT) and their now is a parameter
 * taken once per operation in C.
 */
#define LIVE(r, now) \
	"(" r ".expires_at IS NULL OR " r ".expires_at OPERATOR(pg_catalog.>) " now ")"

extern const char *stg_records_table(void);
extern Oid	stg_records_relid(bool missing_ok);
extern Oid	stg_records_lock(LOCKMODE lockmode, bool missing_ok);
extern Oid	storage_find_records_table(void);
extern SPIPlanPtr stg_plan(StgPlan *slot, const char *query_fmt, int nargs,
						   Oid *argtypes);

/*
 * feed.c: the notes the change feed's output plugin reads, written right
 * after deleting an expired record or touching one, and around a purge
 * statement, which deletes only expired records.
 */
extern void storage_feed_expired(const text *id);
extern void storage_feed_touched(const text *id);
extern void storage_feed_purging(bool purging);

/*
 * write.c: the write core.  Each record rule (save with its expect modes,
 * compare-and-swap, delete, touch, the lock fence) is one entry point that
 * takes the direct path where it applies and the SPI statement otherwise,
 * and returns what happened instead of raising: the callers turn results
 * into their own errors.
 */
typedef enum StgWriteStatus
{
	STG_WRITE_OK,
	STG_WRITE_CONFLICT,			/* versioned save or compare-and-swap: the
								 * check failed */
	STG_WRITE_EXISTS,			/* create: a live record exists */
	STG_WRITE_OVERFLOW,			/* the live record is at the largest version */
	STG_WRITE_NOT_FOUND			/* delete, touch: no live record (at that
								 * version) */
} StgWriteStatus;

typedef struct StgWriteResult
{
	StgWriteStatus status;
	int64		version;		/* OK: the new version */
	bool		live;			/* else: whether a live record was there */
	int64		actual;			/* and its version */
} StgWriteResult;

/*
 * One record to save.  expect: -1 unconditional, 0 create, N versioned.
 * match_data (compare-and-swap, with expect -1): the live record's data
 * must equal it; the record is then replaced, never created.
 */
typedef struct StgSaveArgs
{
	text	   *id;
	int64		expect;
	Datum		data;
	bool		data_null;
	Datum		expires;
	bool		expires_null;
	Datum		format;
	bool		format_null;
	bytea	   *match_data;
} StgSaveArgs;

/* a record of a batch: its arguments, where the caller had it, the result */
typedef struct StgSaveItem
{
	StgSaveArgs args;
	int			pos;
	int64		version;		/* 0 until written */
} StgSaveItem;

extern StgWriteStatus stg_save_verdict(const StgSaveArgs *a, bool live,
									   int64 actual, bool matches,
									   int64 *version);
extern StgWriteResult stg_write_save(const StgSaveArgs *a, TimestampTz now);
extern int	stg_compare_ids(const text *a, const text *b);
extern void stg_sort_items(StgSaveItem *items, int n);
extern StgWriteResult stg_write_save_many(StgSaveItem *items, int n,
										  TimestampTz now, int *failed);
extern StgWriteStatus stg_write_delete(text *id, int64 expect, TimestampTz now);
extern int64 stg_write_delete_many(text **ids, int n, TimestampTz now);
extern StgWriteStatus stg_write_touch(text *id, bool expires_null,
									  Datum expires, int64 expect,
									  TimestampTz now);
extern void stg_write_set_version(text *id, int64 version);

/* records.c: the errors of a save that wrote nothing */
pg_noreturn extern void stg_raise_conflict(const text *id, int64 expect,
										   const StgWriteResult *r);

/*
 * direct.c: the direct write path of the saves (no SPI), used whenever it
 * behaves exactly like the SPI statements; NULL from begin means "use SPI".
 * The operations, each with the privileges its statement needs and the
 * commands it runs, decide together with the table and the transaction
 * whether a fast path may be taken (stg_direct_refusal).
 */
typedef enum StgOp
{
	STG_OP_SAVE,			/* create or unversioned save: INSERT ... ON
								 * CONFLICT DO UPDATE */
	STG_OP_UPDATE,			/* versioned save, touch: UPDATE */
	STG_OP_DELETE,			/* delete: DELETE */
	STG_OP_PURGE,			/* purge: DELETE of rows locked FOR UPDATE */
	STG_OP_READ,			/* the bucket readers: SELECT */
	STG_NUM_OPS
} StgOp;

typedef struct StgWriter StgWriter;

extern const char *stg_direct_refusal(Relation rel, StgOp op);
extern StgWriter *stg_writer_begin(StgOp op);
extern void stg_writer_walk(StgWriter *w);
extern StgWriteResult stg_writer_save(StgWriter *w, const StgSaveArgs *a,
									  TimestampTz now);
extern StgWriteStatus stg_writer_delete(StgWriter *w, text *id,
										int64 expect, TimestampTz now);
extern StgWriteStatus stg_writer_touch(StgWriter *w, text *id,
									   bool expires_null, Datum expires,
									   int64 expect, TimestampTz now);
extern bool stg_writer_set_version(StgWriter *w, text *id,
								   int64 version);
extern Relation stg_writer_relation(StgWriter *w);
extern TupleTableSlot *stg_writer_slot(StgWriter *w);
extern void stg_writer_end(StgWriter *w);

/*
 * purge.c: shared by storage_purge_expired() and the background worker.
 * A round of batches carries this state from batch to batch: where it has
 * got to in the purge index (past the rows it had to skip) and what it
 * skipped.  Start a round with stg_purge_round_init().
 */
#define STG_REASON_LEN 256
typedef struct StgPurgeRound
{
	TimestampTz resume;			/* purge_after reached (DT_NOBEGIN at first) */
	bool		resume_has_id;	/* and within it, the ids up to resume_id */
	char		resume_id[STG_MAX_ID_BYTES + 1];
	bool		more;			/* the last batch was full: go on */
	int64		skipped;		/* rows that could not be deleted */
	char		skip_reason[STG_REASON_LEN];	/* "SQLSTATE: message" */
} StgPurgeRound;

extern void stg_purge_round_init(StgPurgeRound *round);
extern uint64 stg_purge_batch(TimestampTz now, int batch_size,
							  StgPurgeRound *round);

/*
 * status.c: the expiry worker's state per database, in shared memory when
 * the library is preloaded.
 */
typedef struct StgDbStatus
{
	Oid			dboid;			/* InvalidOid: free slot */
	bool		purging;
	bool		more_work;		/* the last run stopped at its time budget */
	TimestampTz last_start;
	TimestampTz last_end;
	int64		rows_last;
	int64		rows_total;
	char		last_error[256];
	int64		skipped_last;	/* rows skipped by the last visit */
	int64		skipped_total;
	char		skip_reason[STG_REASON_LEN];
	int32		failures;		/* consecutive visits that failed */
	TimestampTz backoff_until;	/* no visit before this */
	TimestampTz log_window;		/* start of the hour log_lines counts in */
	int32		log_lines;		/* lines logged in that hour */
	int64		log_suppressed; /* lines not logged since the last one */
	int64		log_suppressed_total;
} StgDbStatus;

extern bool stg_preloaded;
extern void stg_status_init(void);
extern void stg_status_set_launcher(pid_t pid);
extern bool stg_status_get(Oid dboid, StgDbStatus *out);
extern void stg_status_put(const StgDbStatus *st);
extern void stg_status_forget(Oid dboid);
extern void stg_status_keep_only(List *dboids);
#define STG_LOCK_CV_SLOTS 64
extern ConditionVariable *stg_lock_cv(uint32 hash);


/* worker.c: the expiry launcher and per-database purge workers */
extern void stg_worker_init(void);

/* yield.c: whether client sessions are busy, for the purge worker */
extern bool stg_foreground_busy(void);

#endif							/* STORAGE_H */
