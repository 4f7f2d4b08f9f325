/*-------------------------------------------------------------------------
 *
 * storage_backend.h
 *	  Internal interface between the library front end (client.c) and its
 *	  backends.  Not installed.
 *
 *	  To add a backend "foo":
 *	  1. write backend_foo.c defining
 *			const storage_backend_ops storage_foo_backend = { ... };
 *		 (backend_memory.c is the shortest complete example);
 *	  2. declare it at the bottom of this file;
 *	  3. add its URI scheme to the table in client.c (storage_open);
 *	  4. add backend_foo.c to SRCS in src/client/Makefile;
 *	  5. add a fixture for it to test/client/conformance.c and run.sh.
 *
 *	  What the front end guarantees to every backend operation:
 *	  - the handle's mutex is held: calls on one handle never overlap, so a
 *		backend needs no locking of its own against other threads using the
 *		same handle (it does need it against other handles/processes
 *		sharing the same data, as the dir backend does with flock);
 *	  - ids are valid (1..255 bytes, NUL-terminated), pointers are non-NULL
 *		where the public API requires them, rec->data_len is 0 when
 *		rec->data is NULL, prefix is a string (maybe "");
 *	  - output arguments are zeroed.
 *
 *	  What a backend must do:
 *	  - judge liveness with storage_is_live(expires_at, storage_clock_now(h))
 *		(unless its server judges it, see clock_is_server);
 *	  - apply the save rules with storage_save_rule(), atomically with
 *		respect to every other writer of the same data;
 *	  - report failures with storage_error(h, status, fmt, ...), which
 *		records the message and returns the status.
 *
 *	  Batch operations (fetch_many, save_many, delete_many) are optional
 *	  members at the END of storage_backend_ops.  A NULL member makes the
 *	  front end loop over the single-record operation under the handle's
 *	  mutex: correct results, but a save_many that fails midway leaves the
 *	  earlier records written (not atomic).  A native implementation must
 *	  be atomic: save_many checks every record before writing any.  The
 *	  front end guarantees n > 0 (it answers empty batches itself), valid
 *	  ids, and:
 *	  - fetch_many / delete_many: ids are distinct (deduplicated and sorted
 *		by bytes); fetch_many may return its records in any order (the
 *		front end sorts them) and *out must be malloc'd, freed by the front
 *		end with storage_records_free(*out, *n) even on failure;
 *	  - save_many: ids are distinct, in the caller's order; recs is a
 *		private copy, so the backend may write versions into it even if it
 *		then fails; expect is never NULL.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STORAGE_BACKEND_H
#define STORAGE_BACKEND_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

#include "storage_client.h"

struct storage_bucket_req;
struct storage_bucket_res;
struct storage_watch_req;

typedef struct storage_backend_ops
{
	const char *name;			/* "memory", "dir", ... */

	/*
	 * true if expiry is judged by the backend's own (server) clock:
	 * storage_set_clock() is then refused.
	 */
	bool		clock_is_server;

	/*
	 * Open: spec is the URI with the scheme prefix removed for "memory:",
	 * "dir:" and "dynamodb://", the full URI / conninfo for postgresql.  Store private
	 * state in *state.
	 */
	storage_status (*open) (storage_client *h, const char *spec, void **state);
	void		(*close) (void *state);

	storage_status (*fetch) (storage_client *h, void *state,
							 const char *id, storage_record *out);
	storage_status (*save) (storage_client *h, void *state,
							storage_record *rec, int64_t expect_version);
	storage_status (*delete) (storage_client *h, void *state,
							  const char *id, bool *deleted);
	storage_status (*purge_expired) (storage_client *h, void *state,
									 int64_t max_rows, int64_t *count);
	/* live records with id starting with prefix, sorted by id bytes */
	storage_status (*list) (storage_client *h, void *state,
							const char *prefix,
							storage_record **out, size_t *n);

	/* optional batch operations (NULL: the front end's fallback loop) */
	storage_status (*fetch_many) (storage_client *h, void *state,
								  const char *const *ids, size_t n,
								  storage_record **out, size_t *n_out);
	/* all or nothing; on success recs[i].version holds the new versions */
	storage_status (*save_many) (storage_client *h, void *state,
								 storage_record *recs, size_t n,
								 const int64_t *expect);
	/* *count: distinct live records removed */
	storage_status (*delete_many) (storage_client *h, void *state,
								   const char *const *ids, size_t n,
								   int64_t *count);

	/*
	 * Optional locks with fencing tokens (NULL: the fenced lock calls
	 * return STORAGE_INVALID_ARGUMENT).  id is ".locks/<token>" (both
	 * valid), ttl > 0 usec and expires_at = now + ttl by h's clock (a
	 * backend with clock_is_server uses ttl instead).  The lock record
	 * holds the token as its version.  Each must be atomic with respect to
	 * every other writer of the same data.
	 * - lock_acquire: if no live record holds id, writes it with a token
	 *   larger than any this store has handed out before (at least 2: 1 is
	 *   a lock taken by a plain save) and sets *fence; otherwise returns
	 *   STORAGE_ALREADY_EXISTS and the front end sleeps and retries.  It
	 *   may instead wait itself (postgresql: the server waits).
	 * - lock_release / lock_extend: delete the record / set its expiry
	 *   only if it is live with version == fence, else STORAGE_NOT_FOUND.
	 */
	storage_status (*lock_acquire) (storage_client *h, void *state,
									const char *id, const char *token,
									int64_t ttl, int64_t expires_at,
									int64_t *fence);
	storage_status (*lock_release) (storage_client *h, void *state,
									const char *id, const char *token,
									int64_t fence);
	storage_status (*lock_extend) (storage_client *h, void *state,
								   const char *id, const char *token,
								   int64_t fence, int64_t ttl,
								   int64_t expires_at);

	/*
	 * Optional: the bucket layer done by the backend itself (NULL: the
	 * generic layer of buckets.c over the provider operations).  The
	 * postgresql backend maps it onto the extension's bucket and lock
	 * functions: one round trip, atomic, the server's clock for TTLs, the
	 * server's lock wake-up.  See storage_bucket_req for what the front
	 * end guarantees; the results must be the generic layer's (the suite
	 * runs the same cases both ways).
	 */
	storage_status (*bucket) (storage_client *h, void *state,
							  const struct storage_bucket_req *req,
							  struct storage_bucket_res *res);

	/*
	 * Optional pipelining (NULL: pipeline.c runs the calls one by one with
	 * the single-record operations).  ops[0..n-1] are the valid calls in
	 * order (kind, ids and data checked; n > 0), each with its result
	 * zeroed and status STORAGE_ABORTED ("not run").  The backend gives
	 * each call it runs its result (the result fields, then
	 * storage_op_result()) and returns STORAGE_OK; any other return means
	 * nothing was sent, and every call gets that error.  With
	 * STORAGE_PIPELINE_ATOMIC the calls are one transaction, and the
	 * front end turns every successful call into STORAGE_ABORTED if
	 * another failed; a call whose effect is unknown (lost connection)
	 * must say so itself.
	 */
	storage_status (*pipeline) (storage_client *h, void *state,
								storage_op *const *ops, size_t n,
								unsigned int flags);

	/*
	 * Optional change feed (NULL: storage_watch() says the backend has
	 * none).  Unlike every other operation it is called WITHOUT the
	 * handle's mutex (another thread may save meanwhile, the callback may
	 * use the handle); see watch.c for what the front end guarantees.
	 */
	storage_status (*watch) (storage_client *h, void *state,
							 const struct storage_watch_req *req);
} storage_backend_ops;

/* The bucket operations of storage_backend_ops.bucket. */
typedef enum storage_bucket_op
{
	STORAGE_BUCKET_CREATE_VAL,
	STORAGE_BUCKET_UPSERT_VAL,
	STORAGE_BUCKET_CAS_VAL,
	STORAGE_BUCKET_GET_VAL,
	STORAGE_BUCKET_GET_KEYS,
	STORAGE_BUCKET_GET_ITEMS,
	STORAGE_BUCKET_UPSERT_ITEMS,
	STORAGE_BUCKET_DELETE_KEY,
	STORAGE_BUCKET_DELETE_BUCKET,
	STORAGE_BUCKET_ACQUIRE_LOCK,
	STORAGE_BUCKET_RELEASE_LOCK
} storage_bucket_op;

/*
 * A bucket call, validated by buckets.c exactly as for the generic layer:
 * bucket/nbucket (the parent for DELETE_BUCKET), key (the key, the bucket
 * name for DELETE_BUCKET, the token for the locks) and items' keys are
 * valid names with ids of at most 255 bytes, items' keys distinct; val is
 * NULL only with val_len 0 (a NULL value); prev is non-empty; ttl >= 0
 * usec, 0 = no expiry (> 0 for the locks).
 */
typedef struct storage_bucket_req
{
	storage_bucket_op op;
	const char *const *bucket;
	size_t		nbucket;
	const char *key;
	const void *val;
	size_t		val_len;
	const void *prev;
	size_t		prev_len;
	const storage_item *items;
	size_t		nitems;
	int64_t		ttl;
} storage_bucket_req;

/* Results (zeroed by the front end; malloc'd, freed by it on failure). */
typedef struct storage_bucket_res
{
	unsigned char *val;			/* GET_VAL (NULL for a NULL value) */
	size_t		val_len;
	char	  **keys;			/* GET_KEYS, sorted */
	size_t		nkeys;
	storage_item *items;		/* GET_ITEMS, sorted by key */
	size_t		nitems;
	int64_t		count;			/* DELETE_BUCKET */
} storage_bucket_res;

/*
 * buckets.c: run req through h's backend if it has the bucket operation
 * (under h's mutex), *native = true then; else *native = false and nothing
 * is done.
 */
extern storage_status storage_bucket_call(storage_client *h,
										  const storage_bucket_req *req,
										  storage_bucket_res *res,
										  bool *native);

/* The lock operations of storage_backend_ops. */
typedef enum storage_lock_op
{
	STORAGE_LOCK_ACQUIRE,
	STORAGE_LOCK_RELEASE,
	STORAGE_LOCK_EXTEND
} storage_lock_op;

/*
 * buckets.c's fenced locks: one backend lock operation under h's mutex,
 * with expires_at computed from h's clock (client.c).  id and token are
 * valid, ttl > 0 for acquire and extend.
 */
extern storage_status storage_lock_call(storage_client *h, storage_lock_op op,
										const char *id, const char *token,
										int64_t fence, int64_t ttl,
										int64_t *fence_out);

/* ---- helpers provided by client.c ---------------------------------------- */

/* Record a failure message for h (thread-local) and return st. */
extern storage_status storage_error(storage_client *h, storage_status st,
									const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/*
 * Add detail to the failure just recorded by storage_error() (same thread):
 * the backend's code (SQLSTATE, AWS error type; NULL = none) and whether a
 * retry may succeed.  storage_error() itself fills in errno and its name
 * when its format has "%m".
 */
extern void storage_error_detail(const char *code, bool retryable);

/* What a failed write did (default STORAGE_OUTCOME_NOT_APPLIED). */
extern void storage_error_outcome(storage_outcome outcome);

/* Current time of h's clock; call only with h's mutex held (i.e. from ops). */
extern int64_t storage_clock_now(storage_client *h);

/* Real time in usec since the epoch. */
extern int64_t storage_real_now(void);

/*
 * The liveness rule and the TTL rule of the client, in one place (the
 * extension has its own in SQL and C; a backend whose server judges expiry
 * uses that one).  A record is live iff it never expires or expires later
 * than now.  A ttl > 0 expires at now + ttl: false if that overflows; a
 * clock at the epoch gives 1, expired, never STORAGE_NEVER.
 */
static inline bool
storage_is_live(int64_t expires_at, int64_t now)
{
	return expires_at == STORAGE_NEVER || expires_at > now;
}

static inline bool
storage_ttl_expiry(int64_t now, int64_t ttl, int64_t *expires_at)
{
	if (__builtin_add_overflow(now, ttl, expires_at))
		return false;
	if (*expires_at == STORAGE_NEVER)
		*expires_at = 1;
	return true;
}

/*
 * The save rules, in one place.  live_version is the version of the live
 * record (0 if none).  On success sets *new_version and returns STORAGE_OK;
 * otherwise records the error (VERSION_CONFLICT or INVALID_ARGUMENT for an
 * overflow) and returns it.
 */
extern storage_status storage_save_rule(storage_client *h, const char *id,
										int64_t live_version,
										int64_t expect_version,
										int64_t *new_version);

/* client.c: the checks of a single call's id and of a record to save. */
extern storage_status storage_check_id(storage_client *h, const char *id);
extern storage_status storage_check_record(storage_client *h,
										   const storage_record *rec);

/*
 * client.c: run fn(h, ops, state, arg) holding h's mutex, i.e. as a backend
 * operation (pipeline.c runs a whole pipeline this way).
 */
typedef storage_status (*storage_locked_fn) (storage_client *h,
											 const storage_backend_ops *ops,
											 void *state, void *arg);
extern storage_status storage_locked(storage_client *h, storage_locked_fn fn,
									 void *arg);

/*
 * pipeline.c: give op the status st, and if it failed, this thread's error
 * (message, code, retryable, outcome) just recorded by storage_error().
 */
extern void storage_op_result(storage_client *h, storage_op *op,
							  storage_status st);

/* Deep copy of a record (fields malloc'd); false on out of memory. */
extern bool storage_record_copy(storage_record *dst, const storage_record *src);

/* memcmp-order comparison of ids, for qsort of storage_record arrays. */
extern int	storage_record_cmp(const void *a, const void *b);

/*
 * Tests only (not exported from the shared library): make h use the front
 * end's fallback loops even where its backend has native batch operations.
 */
extern void storage_force_batch_fallback(storage_client *h, bool on);

/* Tests only: make h use the generic bucket layer even where native. */
extern void storage_force_generic_buckets(storage_client *h, bool on);

/*
 * Tests only, dir backend fault injection: make the process _exit() after
 * n renames of a save_many (n < 0: never), as a crash would; make every
 * directory fsync fail with EIO.
 */
extern void storage_dir_test_crash_after_renames(int n);
extern void storage_dir_test_fail_dir_fsync(bool on);

/* Tests only, dynamodb backend: see backend_dynamodb.c. */
extern char *storage_dynamodb_test_encode_save_many(const char *table,
													const storage_record *recs,
													size_t n,
													const int64_t *live,
													int64_t now);
extern int	storage_dynamodb_test_signed_request(const char *url,
												 const char *connect_to,
												 const char *userpwd,
												 const char *sigv4,
												 const char *const *headers,
												 size_t nheaders,
												 const char *body);


/* ---- change feed (watch.c) ---------------------------------------------- */

/*
 * A storage_watch() call as a backend's watch operation gets it: prefix is
 * a string, fn non-NULL, slot the name set with storage_set_watch_slot()
 * ("" if none; valid).  The backend calls storage_watch_deliver() for each
 * event and stops when it returns true, and polls storage_watch_cancelled()
 * at least every 100 ms while it waits.
 */
typedef struct storage_watch_req
{
	const char *prefix;
	uint64_t	from_position;
	storage_watch_fn fn;
	void	   *arg;
	const char *slot;
} storage_watch_req;

/* Run the callback; true if it asked to stop. */
extern bool storage_watch_deliver(const storage_watch_req *req,
								  const storage_watch_event *ev);

/* true once storage_watch_cancel(h) was called (then the watch returns OK). */
extern bool storage_watch_cancelled(storage_client *h);

/* client.c: the handle's mutex (for a backend's watch, which runs without it) */
extern pthread_mutex_t *storage_handle_mutex(storage_client *h);

/*
 * Per-handle watch state, embedded in the handle (client.c) and used by
 * watch.c only.  Atomics: storage_watch_cancel() must be async-signal-safe.
 */
typedef struct storage_watch_ctl
{
	char		slot[64];		/* storage_set_watch_slot(), under h's mutex */
	atomic_bool active;			/* a storage_watch() runs on the handle */
	atomic_bool cancel;			/* storage_watch_cancel() pending */
} storage_watch_ctl;

/* client.c: the handle's watch control block */
extern storage_watch_ctl *storage_handle_watch(storage_client *h);

/* client.c: call h's backend watch operation, or refuse if it has none */
extern storage_status storage_backend_watch(storage_client *h,
											const storage_watch_req *req);

/* memory backend's event log (backend_memory_watch.c) */
typedef struct storage_memlog storage_memlog;
extern storage_memlog *storage_memlog_new(void);
extern void storage_memlog_free(storage_memlog *log);
/*
 * Record one event of the operation under way, after its change is made
 * (false: out of memory; the position is then marked as lost, so watchers
 * fail instead of missing it).
 */
extern bool storage_memlog_add(storage_memlog *log, storage_watch_op op,
							   const storage_record *rec);
/* end the operation: its events (if any) become one transaction at now */
extern void storage_memlog_commit(storage_memlog *log, int64_t now);
extern storage_status storage_memlog_watch(storage_client *h,
										   storage_memlog *log,
										   const storage_watch_req *req);

/* ---- the backends ------------------------------------------------------ */

extern const storage_backend_ops storage_memory_backend;
extern const storage_backend_ops storage_dir_backend;
extern const storage_backend_ops storage_pg_backend;
extern const storage_backend_ops storage_dynamodb_backend;

#endif							/* STORAGE_BACKEND_H */
