/*-------------------------------------------------------------------------
 *
 * storage.h
 *	  Declarations shared by the C files of the storage extension: the
 *	  record limits, the extension's own SQLSTATEs, the liveness clock,
 *	  id validation, the location of the records table and the purge loop.
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
#include "utils/relcache.h"
#include "utils/timestamp.h"

/* Same limit as the Go provider's MaxIDLength: bytes, not characters. */
#define STORAGE_MAX_ID_BYTES 255

/* SQLSTATEs of class SV ("storage"), see README "Errors". */
#define ERRCODE_STORAGE_VERSION_CONFLICT	MAKE_SQLSTATE('S','V','0','0','1')
#define ERRCODE_STORAGE_NOT_FOUND			MAKE_SQLSTATE('S','V','0','0','2')
#define ERRCODE_STORAGE_ALREADY_EXISTS		MAKE_SQLSTATE('S','V','0','0','3')
#define ERRCODE_STORAGE_COMPARE_FAILED		MAKE_SQLSTATE('S','V','0','0','4')

/* GUCs (storage.c) */
extern int	storage_purge_batch_size;
extern char *storage_test_now;
extern int	storage_expiry_slot_width;
extern bool storage_direct_writes;

/* clock.c: the one clock that decides liveness */
extern TimestampTz storage_now(void);
extern TimestampTz storage_slot_end(TimestampTz ts);
extern bool storage_expiry_slot_of(bool expires_null, Datum expires,
								   Datum *slot);
extern bool storage_ttl_expiry(const Interval *ttl, TimestampTz now,
							   bool zero_means_never, TimestampTz *expires);

/* ids.c */
extern Datum storage_prefix_end(PG_FUNCTION_ARGS);
extern text *storage_id_arg(FunctionCallInfo fcinfo, int argno);
extern void storage_check_id(const char *what, const char *id, int len);
extern void storage_require_arg(FunctionCallInfo fcinfo, int argno,
								const char *argname);

/* An array argument, deconstructed; n = -1 for a NULL array. */
typedef struct StorageArrayArg
{
	Datum	   *values;
	bool	   *nulls;
	int			n;
	int			lbound;			/* subscript of values[0] */
} StorageArrayArg;

extern StorageArrayArg storage_array_arg(FunctionCallInfo fcinfo, int argno,
										 const char *name, bool required);

/*
 * relation.c: where the records table is, and a cache of saved SPI plans
 * that is thrown away whenever that table changes (e.g. the extension was
 * dropped and created again in this session).
 */
typedef enum StoragePlanId
{
	PLAN_SAVE_UPSERT,
	PLAN_SAVE_CREATE,
	PLAN_SAVE_UPDATE,
	PLAN_LIVE_VERSION,
	PLAN_DELETE,
	PLAN_PURGE_BATCH,
	PLAN_PURGE_CANDIDATES,
	PLAN_PURGE_TIDS,
	PLAN_TOUCH,
	PLAN_MANY_LOCK,
	PLAN_MANY_UPSERT,
	PLAN_MANY_CREATE,
	PLAN_MANY_UPDATE,
	PLAN_MANY_DELETE,
	PLAN_BUCKET_CREATE,
	PLAN_BUCKET_UPSERT,
	PLAN_BUCKET_CAS,
	PLAN_BUCKET_GET,
	PLAN_BUCKET_UPSERT_ITEMS,
	PLAN_BUCKET_DELETE,
	PLAN_LOCK_TAKE,
	PLAN_LOCK_HOLDER,
	PLAN_LOCK_RELEASE,
	PLAN_LOCK_FENCE,
	PLAN_LOCK_RELEASE_FENCED,
	PLAN_LOCK_EXTEND,
	PLAN_BUCKET_WALK,
	STORAGE_NUM_PLANS
} StoragePlanId;

/*
 * The SQL texts of the SPI statements run with the caller's search_path,
 * which may put any schema before pg_catalog.  So every operator, function
 * and type name in them is schema-qualified (OPERATOR(pg_catalog.=),
 * pg_catalog.count, ::pg_catalog.bytea) and the table is named with its
 * schema: no object of another schema can be picked up (README "The expiry
 * worker and search_path").  A multi-argument unnest() in FROM stays
 * unqualified: the parser expands exactly that spelling into calls of
 * pg_catalog.unnest(), and a qualified one would not be expanded.
 *
 * LIVE is the liveness rule of clock.c in SQL: row r is live at time now.
 */
#define LIVE(r, now) \
	"(" r ".expires_at IS NULL OR " r ".expires_at OPERATOR(pg_catalog.>) " now ")"

extern const char *storage_records_table(void);
extern Oid	storage_records_relid(bool missing_ok);
extern Oid	storage_find_records_table(void);
extern SPIPlanPtr storage_plan(StoragePlanId which, const char *query_fmt,
							   int nargs, Oid *argtypes);

/*
 * feed.c: the notes the change feed's output plugin reads, written right
 * after deleting an expired record or touching one, and around a purge
 * statement, which deletes only expired records.
 */
extern void storage_feed_expired(const text *id);
extern void storage_feed_touched(const text *id);
extern void storage_feed_purging(bool purging);

/* records.c */
pg_noreturn extern void storage_report_conflict(Datum id, int64 expect, TimestampTz now);
pg_noreturn extern void storage_raise_conflict(const text *id, int64 expect,
											   bool live, int64 actual);

/*
 * direct.c: the direct write path of the saves (no SPI), used whenever it
 * behaves exactly like the SPI statements; NULL from begin means "use SPI".
 * The operations, each with the privileges its statement needs and the
 * commands it runs, decide together with the table and the transaction
 * whether a fast path may be taken (storage_direct_refusal).
 */
typedef enum StorageOp
{
	STORAGE_OP_SAVE,			/* create or unversioned save: INSERT ... ON
								 * CONFLICT DO UPDATE */
	STORAGE_OP_UPDATE,			/* versioned save, touch: UPDATE */
	STORAGE_OP_DELETE,			/* delete: DELETE */
	STORAGE_OP_PURGE,			/* purge: DELETE of rows locked FOR UPDATE */
	STORAGE_OP_READ,			/* the bucket readers: SELECT */
	STORAGE_NUM_OPS
} StorageOp;

typedef struct StorageWriter StorageWriter;
typedef struct StorageSaveArgs
{
	text	   *id;
	int64		expect;
	Datum		data;
	bool		data_null;
	Datum		expires;
	bool		expires_null;
	Datum		format;
	bool		format_null;
} StorageSaveArgs;

extern const char *storage_direct_refusal(Relation rel, StorageOp op);
extern StorageWriter *storage_writer_begin(StorageOp op);
extern void storage_writer_walk(StorageWriter *w);
extern int64 storage_writer_save(StorageWriter *w, const StorageSaveArgs *a,
								 TimestampTz now, bool *live, int64 *actual);
extern bool storage_writer_delete(StorageWriter *w, text *id, TimestampTz now);
extern bool storage_writer_touch(StorageWriter *w, text *id, bool expires_null,
								 Datum expires, int64 expect, TimestampTz now);
extern int64 storage_writer_purge(StorageWriter *w, TimestampTz now,
								  int batch_size, TimestampTz *resume);
extern void storage_writer_end(StorageWriter *w);

/*
 * purge.c: shared by storage_purge_expired() and the background worker.
 * A round of batches carries this state from batch to batch: where it has
 * got to in the purge index (past the rows it had to skip) and what it
 * skipped.  Start a round with storage_purge_round_init().
 */
#define STORAGE_REASON_LEN 256
typedef struct StoragePurgeRound
{
	TimestampTz resume;			/* purge_after reached (DT_NOBEGIN at first) */
	bool		resume_has_id;	/* and within it, the ids up to resume_id */
	char		resume_id[STORAGE_MAX_ID_BYTES + 1];
	bool		more;			/* the last batch was full: go on */
	int64		skipped;		/* rows that could not be deleted */
	char		skip_reason[STORAGE_REASON_LEN];	/* "SQLSTATE: message" */
} StoragePurgeRound;

extern void storage_purge_round_init(StoragePurgeRound *round);
extern uint64 storage_purge_batch(TimestampTz now, int batch_size,
								  StoragePurgeRound *round);

/*
 * status.c: the expiry worker's state per database, in shared memory when
 * the library is preloaded.
 */
typedef struct StorageDbStatus
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
	char		skip_reason[STORAGE_REASON_LEN];
	int32		failures;		/* consecutive visits that failed */
	TimestampTz backoff_until;	/* no visit before this */
	TimestampTz log_window;		/* start of the hour log_lines counts in */
	int32		log_lines;		/* lines logged in that hour */
	int64		log_suppressed; /* lines not logged since the last one */
	int64		log_suppressed_total;
} StorageDbStatus;

extern bool storage_preloaded;
extern void storage_status_init(void);
extern void storage_status_set_launcher(pid_t pid);
extern bool storage_status_get(Oid dboid, StorageDbStatus *out);
extern void storage_status_put(const StorageDbStatus *st);
extern void storage_status_forget(Oid dboid);
extern void storage_status_keep_only(List *dboids);
extern int	storage_status_slots;
#define STORAGE_LOCK_CV_SLOTS 64
extern ConditionVariable *storage_lock_cv(uint32 hash);

/* worker.c: the expiry launcher and per-database purge workers */
extern bool storage_autopurge;
extern int	storage_purge_interval;
extern int	storage_purge_batch_delay;
extern int	storage_purge_busy_rate;

/* yield.c: whether client sessions are busy, for the purge worker */
extern bool storage_foreground_busy(void);
extern void storage_worker_init(void);

#endif							/* STORAGE_H */
