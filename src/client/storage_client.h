/*-------------------------------------------------------------------------
 *
 * storage_client.h
 *	  Public API of libstorage_client: versioned records with optimistic
 *	  locking (the provider interface of the "storage" PostgreSQL
 *	  extension), a bucket/key layer with TTLs and locks on top of it, and
 *	  interchangeable backends chosen by URI at open time:
 *
 *		"memory:"				private in-process store (tests, embedding)
 *		"dir:/some/path"		one file per record in a POSIX directory
 *		"postgresql://..."		the storage extension through libpq; any
 *		"postgres://..."		other libpq conninfo string such as
 *		"host=/tmp dbname=x"	is accepted too
 *		"dynamodb://TABLE?..."	an Amazon DynamoDB table (or a local
 *								DynamoDB-compatible server), see the README
 *
 *	  Every function returns a storage_status; STORAGE_OK is 0.  On failure
 *	  storage_errmsg() gives a readable message and storage_errcode(),
 *	  storage_errno(), storage_retryable() and storage_outcome_of() the
 *	  structured detail (see "errors" below).
 *
 *	  Memory: everything the library returns is freed by the library's
 *	  own functions, never by free() (the library may be built with
 *	  another allocator than the caller):
 *		storage_record filled in (fetch)	 storage_record_clear()
 *		storage_record arrays (list, fetch_many) storage_records_free()
 *		get_val's value buffer				 storage_free()
 *		get_keys' names						 storage_strings_free()
 *		get_items' items					 storage_items_free()
 *		a handle							 storage_close()
 *	  Each of them accepts NULL (and n == 0) and does nothing then.
 *
 *	  Strings and buffers the caller passes in are only read (const): a
 *	  record or item built by the caller keeps pointing to the caller's
 *	  memory, and the library never frees or changes it.
 *
 *	  Thread safety: a handle may be used from several threads at once;
 *	  each call is serialized by a mutex inside the handle.
 *
 *	  Time: timestamps and durations are int64 microseconds (timestamps
 *	  since the Unix epoch, UTC).  expires_at == STORAGE_NEVER (0) means the
 *	  record never expires, so a zero-initialized record never expires.
 *	  A record is live iff expires_at == STORAGE_NEVER or expires_at > now;
 *	  an expired record is absent for every operation.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STORAGE_CLIENT_H
#define STORAGE_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Version of this header.  storage_client_version() gives the version of
 * the library actually loaded (it may be newer than the header the program
 * was compiled with; the soname changes only for incompatible releases).
 */
#define STORAGE_CLIENT_VERSION_MAJOR	1
#define STORAGE_CLIENT_VERSION_MINOR	1
#define STORAGE_CLIENT_VERSION_PATCH	0
#define STORAGE_CLIENT_VERSION			"1.1.0"
/* major * 10000 + minor * 100 + patch, e.g. 10100 for 1.1.0 */
#define STORAGE_CLIENT_VERSION_NUM		10100

/* Only the functions declared here are exported from the shared library. */
#if defined(__GNUC__)
#define STORAGE_API __attribute__((visibility("default")))
#else
#define STORAGE_API
#endif

/* Maximum length of a record id in bytes (ids are 1..255 bytes, no NUL). */
#define STORAGE_MAX_ID_LEN	255

/* expires_at value meaning "never expires". */
#define STORAGE_NEVER		INT64_C(0)

/* Convenience units for timestamps and durations (microseconds). */
#define STORAGE_USEC		INT64_C(1)
#define STORAGE_MSEC		INT64_C(1000)
#define STORAGE_SEC			INT64_C(1000000)

typedef enum storage_status
{
	STORAGE_OK = 0,
	STORAGE_NOT_FOUND,			/* no live record / key / lock */
	STORAGE_VERSION_CONFLICT,	/* save: expect_version check failed */
	STORAGE_INVALID_ARGUMENT,	/* bad id, name, ttl, NULL pointer,
								 * version overflow, ... */
	STORAGE_ALREADY_EXISTS,		/* bucket layer: create_val over a live key */
	STORAGE_COMPARE_FAILED,		/* bucket layer: compare_and_swap_val */
	STORAGE_BACKEND_ERROR,		/* I/O, connection or server error */
	STORAGE_ABORTED				/* storage_pipeline: not applied because
								 * another call of an atomic pipeline
								 * failed */
} storage_status;

/*
 * A record.  Pointers in a record filled in by the library (fetch, list,
 * fetch_many) are owned by the library's allocator and released with
 * storage_record_clear() / storage_records_free().  In a record passed to
 * storage_save() they belong to the caller and are only read.
 */
typedef struct storage_record
{
	const char *id;				/* NUL-terminated, 1..255 bytes */
	int64_t		version;		/* > 0; written back by storage_save() */
	int64_t		expires_at;		/* usec since epoch, or STORAGE_NEVER */
	const char *format;			/* NULL = no format */
	const unsigned char *data;	/* NULL = no data (distinct from empty) */
	size_t		data_len;
} storage_record;

/*
 * Bucket item: a key and its value (get_items output, freed with
 * storage_items_free(); upsert_items input, only read).
 */
typedef struct storage_item
{
	const char *key;
	const unsigned char *val;
	size_t		val_len;
	int64_t		expires_at;		/* output only (get_items) */
} storage_item;

typedef struct storage_client storage_client;

/* Clock callback: returns the current time in usec since the Unix epoch. */
typedef int64_t (*storage_clock_fn) (void *arg);

/* ---- handle ---------------------------------------------------------- */

/*
 * Open a handle.  On failure *out is NULL and storage_errmsg(NULL) explains.
 * Unknown "scheme:..." URIs give STORAGE_INVALID_ARGUMENT.
 */
extern STORAGE_API storage_status storage_open(const char *uri, storage_client **out);
extern STORAGE_API void storage_close(storage_client *h);

/* ---- version ----------------------------------------------------------- */

/* "1.1.0": the version of the loaded library (STORAGE_CLIENT_VERSION). */
extern STORAGE_API const char *storage_client_version(void);
/* 10100 for 1.1.0 (STORAGE_CLIENT_VERSION_NUM). */
extern STORAGE_API int storage_client_version_num(void);

/* ---- errors -------------------------------------------------------------- */

/*
 * Every failure is recorded in ONE slot per thread (like errno): its
 * message, status, code, errno, retryable flag and outcome, tagged with
 * the handle that failed (NULL for a failed storage_open() or a call with
 * a NULL handle).  Successful calls do not touch the slot; the next failure
 * in the same thread, on any handle, overwrites it.  Other threads never
 * see or change it.  So:
 *
 * storage_errmsg(h): the message of this thread's most recent failure if
 *	 that failure was on h, else "" (also "" if this thread never failed).
 *	 storage_errmsg(NULL): the message of this thread's most recent failure
 *	 whatever its handle (after a failed storage_open(): why it failed).
 *	 The string lives in the thread's slot: valid until this thread's next
 *	 failing call (copy it to keep it).
 * The other accessors below answer from the same slot by the same rule
 * (their "nothing" value when it is not h's failure).
 */
extern STORAGE_API const char *storage_errmsg(const storage_client *h);

/*
 * The backend's own code of the failure, "" if it has none:
 *	 postgresql: the SQLSTATE (e.g. "40001", "08006", "SV001"), or "" for
 *				 a failure without one (connection refused before a session);
 *	 dynamodb:	 the AWS error type (e.g. "ConditionalCheckFailedException",
 *				 "ProvisionedThroughputExceededException"), or "HTTP nnn" /
 *				 the curl error name (e.g. "CURLE_COULDNT_CONNECT");
 *	 dir:		 the errno name (e.g. "ENOSPC", "EACCES").
 * Failures the library decides itself (bad argument, version conflict
 * found by the local backends, not found) have "".
 */
extern STORAGE_API const char *storage_errcode(const storage_client *h);

/* The errno of a failed system call (dir backend), else 0. */
extern STORAGE_API int storage_errno(const storage_client *h);

/*
 * true if the failure is transient and the same call may succeed if
 * repeated later unchanged: a lost or refused connection, a serialization
 * failure or deadlock (40001, 40P01), throttling or a 5xx answer after the
 * library's own retries, EINTR/EAGAIN/EBUSY.  false for everything the
 * caller must change first (bad argument, conflict, not found, full disk,
 * permissions).  Check storage_outcome_of() before retrying a write.
 */
extern STORAGE_API bool storage_retryable(const storage_client *h);

typedef enum storage_outcome
{
	STORAGE_OUTCOME_NOT_APPLIED = 0,	/* nothing was changed */
	STORAGE_OUTCOME_APPLIED,	/* the write took effect and is visible, but
								 * a later step failed (dir: the directory
								 * fsync, so durability is not assured) */
	STORAGE_OUTCOME_UNKNOWN		/* the connection was lost after sending a
								 * write: it may or may not have committed */
} storage_outcome;

/*
 * What a failed write did.  For STORAGE_OUTCOME_APPLIED the new versions
 * ARE written back (rec->version, recs[i].version) as on success.
 */
extern STORAGE_API storage_outcome storage_outcome_of(const storage_client *h);

/* Constant name of a status, e.g. "STORAGE_VERSION_CONFLICT". */
extern STORAGE_API const char *storage_status_name(storage_status st);

/* Name of the backend of a handle: "memory", "dir" or "postgresql". */
extern STORAGE_API const char *storage_backend_name(const storage_client *h);

/*
 * Inject a clock (fn == NULL restores the real clock).  The clock decides
 * liveness in the memory and dir backends and is the "now" of TTLs in the
 * bucket layer.  The postgresql backend judges expiry by the server's
 * clock and returns STORAGE_INVALID_ARGUMENT here.
 */
extern STORAGE_API storage_status storage_set_clock(storage_client *h,
										storage_clock_fn fn, void *arg);

/* The handle's current time (usec since epoch). */
extern STORAGE_API int64_t storage_now(storage_client *h);

/* ---- provider operations ----------------------------------------------- */

/*
 * Fetch the live record with this id into *out (caller frees with
 * storage_record_clear()).  STORAGE_NOT_FOUND if missing or expired.
 */
extern STORAGE_API storage_status storage_fetch(storage_client *h, const char *id,
									storage_record *out);

/*
 * Save rec (rec->version is ignored on input):
 *	 expect_version > 0: only over a live record of exactly that version;
 *						 new version = expect_version + 1
 *	 expect_version = 0: only if no live record exists (an expired one is
 *						 replaced); new version = 1
 *	 expect_version < 0: no check, full replace; new version = previous live
 *						 version + 1, or 1
 * A failed check gives STORAGE_VERSION_CONFLICT.  A version that would
 * overflow int64 (expect_version == INT64_MAX, checked first as in the
 * extension, or a live version of INT64_MAX) gives STORAGE_INVALID_ARGUMENT.
 * On success the new version is written to rec->version; on failure
 * rec->version is unchanged unless storage_outcome_of() says
 * STORAGE_OUTCOME_APPLIED (the save happened, a later step failed).
 */
extern STORAGE_API storage_status storage_save(storage_client *h, storage_record *rec,
								   int64_t expect_version);

/*
 * Delete the record (live or expired).  Never an error for a missing id;
 * *deleted (may be NULL) tells whether a live record was removed.
 */
extern STORAGE_API storage_status storage_delete(storage_client *h, const char *id,
									 bool *deleted);

/* Delete expired records (all if max_rows <= 0); *count may be NULL. */
extern STORAGE_API storage_status storage_purge_expired(storage_client *h,
											int64_t max_rows,
											int64_t *count);

/*
 * The live records whose id starts with prefix ("" = all), sorted by id
 * bytes (unsigned, C collation).  Free with storage_records_free().
 */
extern STORAGE_API storage_status storage_list(storage_client *h, const char *prefix,
								   storage_record **out, size_t *n);

/* ---- batch operations -------------------------------------------------- */

/*
 * Batch versions of fetch, save and delete: one call (for postgresql one
 * round trip) for many records.  ids are validated like single ids; any bad
 * id gives STORAGE_INVALID_ARGUMENT before anything is read or written.
 * n == 0 is a valid, empty batch.
 *
 * The backends built into the library do these natively and atomically
 * (postgresql: storage_fetch_many / storage_save_many / storage_delete_many
 * in one statement; memory: under the handle's lock; dir: under the
 * directory's exclusive flock, and save_many is crash-atomic too: it
 * writes an intent journal before the first rename, and a journal left by
 * a crash is replayed, completing the batch, before the directory is next
 * read or written; dynamodb: BatchGetItem and TransactWriteItems, at most
 * 100 records a call, see the README).  A backend without a native
 * implementation gets a fallback loop over the single-record operation
 * (under the handle's mutex), which is NOT atomic: see storage_save_many.
 */

/*
 * Fetch the live records among ids[0..n-1] into *out (n_out of them; free
 * with storage_records_free()).  One record per distinct live id, sorted by
 * id bytes as storage_list() sorts; repeated ids are fetched once, missing
 * and expired ids are simply absent (not an error).
 */
extern STORAGE_API storage_status storage_fetch_many(storage_client *h,
										 const char *const *ids, size_t n,
										 storage_record **out, size_t *n_out);

/*
 * Save recs[0..n-1], all or nothing, each with the rules of storage_save()
 * and its own expect_versions[i] (expect_versions == NULL: all -1, i.e.
 * unversioned).  Kinds may be mixed in one call.  On success the new
 * versions are written to recs[i].version; on failure no record and no
 * recs[i].version is changed (except with STORAGE_OUTCOME_APPLIED, see
 * storage_outcome_of(): then all of them are written and visible):
 *	 - a repeated id, a bad id, data == NULL with data_len != 0 or an
 *	   expect_version of INT64_MAX: STORAGE_INVALID_ARGUMENT, checked before
 *	   anything is read;
 *	 - a failed check: STORAGE_VERSION_CONFLICT, the message names the
 *	   first conflicting id in the caller's order (a version overflow met
 *	   first gives STORAGE_INVALID_ARGUMENT the same way).
 * With a backend's fallback loop (none of the built-in backends) the saves
 * are separate: the items before the failing one stay written.
 */
extern STORAGE_API storage_status storage_save_many(storage_client *h,
										storage_record *recs, size_t n,
										const int64_t *expect_versions);

/*
 * Delete the records with these ids (live or expired; repeated ids are
 * fine).  *count (may be NULL) is the number of distinct live records
 * removed; expired ones are removed too but not counted.
 */
extern STORAGE_API storage_status storage_delete_many(storage_client *h,
										  const char *const *ids, size_t n,
										  int64_t *count);

extern STORAGE_API void storage_record_clear(storage_record *rec);
extern STORAGE_API void storage_records_free(storage_record *recs, size_t n);

/* ---- bucket layer ------------------------------------------------------ */

/*
 * A bucket is an array of nbucket names; bucket {"b1","b2"} and key "k"
 * are stored as record id "b1/b2/k" (nbucket 0 = the root).  Bucket names
 * and keys are non-empty, contain no '/', and do not start with '.'; the
 * joined id is at most 255 bytes.  Violations: STORAGE_INVALID_ARGUMENT.
 * ttl is a duration in usec: 0 = no expiry, negative = invalid.
 * Values are stored as record data with format NULL; a NULL value (val
 * NULL, val_len 0) as NULL data, distinct from an empty one (1.0 stored it
 * as an empty value).  The postgresql backend runs these calls as the
 * extension's bucket and lock functions (server clock for TTLs, one
 * statement each); the other backends through a generic layer over the
 * record operations, with the same results.
 */
extern STORAGE_API storage_status storage_create_val(storage_client *h,
										 const char *const *bucket, size_t nbucket,
										 const char *key,
										 const void *val, size_t val_len,
										 int64_t ttl);
extern STORAGE_API storage_status storage_upsert_val(storage_client *h,
										 const char *const *bucket, size_t nbucket,
										 const char *key,
										 const void *val, size_t val_len,
										 int64_t ttl);
extern STORAGE_API storage_status storage_compare_and_swap_val(storage_client *h,
												   const char *const *bucket,
												   size_t nbucket,
												   const char *key,
												   const void *val, size_t val_len,
												   const void *prev_val,
												   size_t prev_len,
												   int64_t ttl);
/*
 * *val is the library's (free it with storage_free()); NULL with *val_len 0
 * for NULL data.
 */
extern STORAGE_API storage_status storage_get_val(storage_client *h,
									  const char *const *bucket, size_t nbucket,
									  const char *key,
									  unsigned char **val, size_t *val_len);
/* Sorted unique names; free with storage_strings_free(). */
extern STORAGE_API storage_status storage_get_keys(storage_client *h,
									   const char *const *bucket, size_t nbucket,
									   char ***keys, size_t *n);
/* Sorted by key; free with storage_items_free(). */
extern STORAGE_API storage_status storage_get_items(storage_client *h,
										const char *const *bucket, size_t nbucket,
										storage_item **items, size_t *n);
/*
 * Create or replace every item (with the same ttl) in one storage_save_many()
 * call: all or nothing on every built-in backend.  Every key and value is
 * validated first, so a bad or repeated key writes nothing.
 */
extern STORAGE_API storage_status storage_upsert_items(storage_client *h,
										   const char *const *bucket,
										   size_t nbucket,
										   const storage_item *items, size_t n,
										   int64_t ttl);
extern STORAGE_API storage_status storage_delete_key(storage_client *h,
										 const char *const *bucket, size_t nbucket,
										 const char *key);
extern STORAGE_API storage_status storage_delete_bucket(storage_client *h,
											const char *const *parent,
											size_t nparent,
											const char *name,
											int64_t *count);
/* Blocks (short backoff) until the lock ".locks/<token>" is free. */
extern STORAGE_API storage_status storage_acquire_lock(storage_client *h,
										   const char *token, int64_t ttl);
/*
 * Deletes the lock whoever holds it: unsafe once the caller's lease may
 * have run out (another client may hold the lock by then).  Use
 * storage_release_lock_fenced.
 */
extern STORAGE_API storage_status storage_release_lock(storage_client *h,
										   const char *token);

/*
 * Locks with fencing tokens.  A lease (ttl, usec, > 0) can run out while
 * its holder still works, and another client then takes the lock.
 * storage_acquire_lock_fenced blocks like storage_acquire_lock and sets
 * *fence to a token larger than that of every earlier holder of the lock
 * (also after it expired, was released or purged).  Give the token to the
 * resource the lock protects, so that it can refuse a stale holder, and
 * to the calls below, which act only while the lock is held (live) with
 * that token and otherwise return STORAGE_NOT_FOUND, changing nothing:
 * - storage_release_lock_fenced releases the lock;
 * - storage_extend_lock renews the lease to end ttl from now (keepalive);
 *   a lease that already ran out is not revived.
 * Tokens start at 2: a lock taken by storage_acquire_lock (no token) has
 * version 1.  Backends: memory (per store), dir (a counter file ".fences"
 * in the directory), postgresql (the extension's storage_acquire_lock,
 * storage_release_lock(token, fence) and storage_extend_lock: release 1.1
 * of the extension and EXECUTE on them; the server waits and judges the
 * lease by its clock) and dynamodb (a counter item in the table, see the
 * README).  Other backends return STORAGE_INVALID_ARGUMENT.
 */
extern STORAGE_API storage_status storage_acquire_lock_fenced(storage_client *h,
												  const char *token,
												  int64_t ttl,
												  int64_t *fence);
extern STORAGE_API storage_status storage_release_lock_fenced(storage_client *h,
												  const char *token,
												  int64_t fence);
extern STORAGE_API storage_status storage_extend_lock(storage_client *h,
										  const char *token,
										  int64_t fence, int64_t ttl);

/* ---- pipelining ---------------------------------------------------------- */

/*
 * Many calls in flight on one handle, as with Redis pipelining: the caller
 * fills an array of calls, storage_pipeline() runs them in order and gives
 * each its own result and error.  The postgresql backend sends them all
 * without waiting (libpq pipeline mode) and reads the results while it
 * sends, so a pipeline of any length costs about one round trip per
 * window of calls instead of one per call; it works behind a pooler in
 * transaction mode with prepare=off too (long pipelines of separate calls
 * through pgbouncer: see the README).  The other backends run the calls
 * one after the other under the handle's lock, with the same results.
 *
 *	 storage_op ops[3] = {
 *		 {.kind = STORAGE_OP_SAVE, .rec = {.id = "a", .data = d, .data_len = n},
 *		  .expect_version = -1},
 *		 {.kind = STORAGE_OP_FETCH, .id = "b"},
 *		 {.kind = STORAGE_OP_DELETE, .id = "c"},
 *	 };
 *	 storage_pipeline(h, ops, 3, 0);
 *	 ... ops[i].status, ops[i].version, ops[i].record, ops[i].errmsg ...
 *	 storage_pipeline_clear(ops, 3);
 */
typedef enum storage_op_kind
{
	STORAGE_OP_FETCH = 1,		/* storage_fetch(id) */
	STORAGE_OP_SAVE,			/* storage_save(rec, expect_version) */
	STORAGE_OP_DELETE			/* storage_delete(id) */
} storage_op_kind;

typedef struct storage_op
{
	/* the call: only read */
	storage_op_kind kind;
	const char *id;				/* FETCH, DELETE */
	storage_record rec;			/* SAVE: the record (rec.version ignored) */
	int64_t		expect_version; /* SAVE: as for storage_save() */

	/*
	 * Its result, written by storage_pipeline() (whatever was there is
	 * overwritten, not freed) and released by storage_pipeline_clear().
	 */
	storage_status status;		/* the call's own status */
	int64_t		version;		/* SAVE: the new version; FETCH: the
								 * record's */
	storage_record record;		/* FETCH: the record found */
	bool		deleted;		/* DELETE: a live record was removed */
	storage_outcome outcome;	/* as storage_outcome_of() for this call */
	bool		retryable;		/* as storage_retryable() for this call */
	char		errcode[64];	/* as storage_errcode() for this call */
	char	   *errmsg;			/* NULL on success, else the message */
} storage_op;

/*
 * The form of a pipeline (flags):
 *	 0: every call is separate, as if made alone: each save is its own
 *		transaction, and a call that fails (a version conflict, a bad id)
 *		changes nothing for the calls before or after it;
 *	 STORAGE_PIPELINE_ATOMIC: all or nothing: the calls run in one
 *		transaction; if one fails (a fetch that finds nothing or a delete of
 *		a missing record is not a failure), it carries its error, every
 *		other call has STORAGE_ABORTED, and nothing is changed.  The
 *		postgresql backend takes any mix of calls; the other backends take
 *		saves of distinct ids (run as storage_save_many(), atomic there)
 *		and refuse other mixes with STORAGE_INVALID_ARGUMENT.
 */
#define STORAGE_PIPELINE_ATOMIC		0x1

/*
 * Run ops[0..n-1] in order on h (holding h's lock for the whole pipeline).
 * Returns STORAGE_OK if every call succeeded, else the status of the first
 * call that did not (its error is then also this thread's error, as for a
 * single call); a bad argument to the pipeline itself (ops NULL, unknown
 * flags) is STORAGE_INVALID_ARGUMENT with no call run.  A call with a bad
 * kind, id or record gets STORAGE_INVALID_ARGUMENT and is not sent.  If
 * the connection is lost, calls whose results had arrived keep them; the
 * others get STORAGE_BACKEND_ERROR, with outcome STORAGE_OUTCOME_UNKNOWN
 * for writes that had been sent.  n == 0 is a valid, empty pipeline.
 */
extern STORAGE_API storage_status storage_pipeline(storage_client *h,
									   storage_op *ops, size_t n,
									   unsigned int flags);

/* Free the results of ops[0..n-1] and zero them (the calls are kept). */
extern STORAGE_API void storage_pipeline_clear(storage_op *ops, size_t n);

/* ---- change feed --------------------------------------------------------- */

/*
 * storage_watch() calls a function for every change committed to the
 * records whose id starts with a prefix, in commit order, from a position
 * on, and blocks until the function asks it to stop, storage_watch_cancel()
 * is called or an error ends it.
 *
 * Delivery is at least once.  A position is the commit position of a
 * transaction (postgresql: the LSN of the end of its commit record; memory:
 * a counter of the store's transactions): every event of one transaction
 * has the same position, and event->last marks the last one.  Once the
 * function has returned for the last event of a transaction, the
 * transaction is confirmed and is not delivered again to the same watch
 * (postgresql: the replication slot advances past it); a crash before
 * that delivers the whole transaction again.  For exactly-once processing
 * store event->position with the application's own data, in the same
 * transaction, and pass the stored position as from_position when
 * watching again: transactions at or before it are skipped.
 *
 * from_position 0: postgresql: from the slot's confirmed position (a new
 * slot: the changes committed after it was created); memory: from the
 * oldest change it still keeps.
 *
 * Backends:
 *	 postgresql: a logical replication connection (replication=database,
 *		derived from the handle's connection; the role needs REPLICATION)
 *		to a slot of the storage extension's output plugin, named with
 *		storage_set_watch_slot() (required).  A missing slot is created
 *		with the extension's storage_watch_create(slot, prefix) (so it
 *		shows in storage_watch_status) when from_position is 0; with
 *		from_position > 0 a missing slot is
 *		STORAGE_NOT_FOUND (a new slot would silently skip the changes
 *		since that position).  A lost connection or a server restart is
 *		retried with back-off (0.1 s doubling to 5 s) and streaming resumes
 *		after the last confirmed transaction; after 60 s without a
 *		successful reconnection storage_watch returns STORAGE_BACKEND_ERROR
 *		with storage_retryable() true.  An idle watch confirms the
 *		server's keepalive positions, so it does not hold back WAL.
 *		A slot nobody reads retains WAL for ever: drop it when the
 *		consumer is retired (SELECT pg_drop_replication_slot('name')).
 *	 memory: in-process, with the events the extension reports for the
 *		same calls (a save over an expired record: EXPIRE, then PUT);
 *		the store keeps its last 65,536 events (at most
 *		64 MiB of ids, formats and values) for watchers: a watch that
 *		starts before or falls behind the oldest of them fails with
 *		STORAGE_NOT_FOUND.  Another thread may save through the same
 *		handle while one watches; the callback may use the handle too.
 *	 dir, dynamodb: STORAGE_INVALID_ARGUMENT (not supported).
 *
 * One watch at a time per handle; the callback runs in the calling thread
 * without the handle's lock held.
 */
typedef enum storage_watch_op
{
	STORAGE_WATCH_PUT = 1,		/* a record was created or replaced */
	STORAGE_WATCH_TOUCH,		/* only its expiry changed (a lock extended):
								 * version and expires_at, no format/data */
	STORAGE_WATCH_DELETE,		/* a live record was deleted */
	STORAGE_WATCH_EXPIRE		/* an expired record was removed (purge or
								 * delete) */
} storage_watch_op;

/*
 * One change.  Every pointer is valid only during the callback (copy what
 * you keep).  Fields may be added at the end in later releases.
 */
typedef struct storage_watch_event
{
	storage_watch_op op;
	const char *id;				/* NUL-terminated */
	int64_t		version;		/* the new version (PUT, TOUCH); 0 otherwise */
	int64_t		expires_at;		/* PUT, TOUCH: usec since epoch or
								 * STORAGE_NEVER; 0 otherwise */
	const char *format;			/* PUT: NULL = no format; NULL otherwise */
	const unsigned char *data;	/* PUT: NULL = no data; NULL otherwise */
	size_t		data_len;
	uint64_t	position;		/* commit position of the transaction */
	int64_t		committed_at;	/* commit time, usec since epoch */
	bool		last;			/* last event of its transaction */
	bool		value_omitted;	/* PUT without its format and data: a plain
								 * SQL UPDATE left a large (TOASTed) value
								 * unchanged, so it is not in the WAL;
								 * fetch the record */
} storage_watch_event;

/* Return 0 to go on, nonzero to make storage_watch() return STORAGE_OK. */
typedef int (*storage_watch_fn) (void *arg, const storage_watch_event *ev);

/*
 * Watch the records whose id starts with prefix ("" = all) from the
 * transaction after from_position on.  Returns STORAGE_OK when fn returned
 * nonzero (the event counts as processed: if it was the last of its
 * transaction, the transaction is confirmed) or the watch was cancelled.
 */
extern STORAGE_API storage_status storage_watch(storage_client *h,
									const char *prefix,
									uint64_t from_position,
									storage_watch_fn fn, void *arg);

/*
 * Name the replication slot of h's watches (postgresql: required; 1..63
 * characters of a-z, 0-9 and _, PostgreSQL's rule for slot names).  A slot
 * is one consumer's durable position: give every consumer its own.  Other
 * backends accept and ignore it.  NULL clears it.
 */
extern STORAGE_API storage_status storage_set_watch_slot(storage_client *h,
											 const char *slot);

/*
 * Make the storage_watch() running on h (in another thread) return
 * STORAGE_OK within about 100 ms; if none runs, the next one on h returns
 * at once.  Async-signal-safe: may be called from a signal handler.
 */
extern STORAGE_API void storage_watch_cancel(storage_client *h);

/* Free a buffer the library returned (get_val's value). */
extern STORAGE_API void storage_free(void *p);
extern STORAGE_API void storage_strings_free(char **strs, size_t n);
extern STORAGE_API void storage_items_free(storage_item *items, size_t n);

#ifdef __cplusplus
}
#endif

#endif							/* STORAGE_CLIENT_H */
