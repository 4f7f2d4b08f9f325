/*-------------------------------------------------------------------------
 *
 * client.c
 *	  Front end of libstorage_client: URI dispatch to a backend, argument
 *	  and id validation, the save rules shared by the local backends,
 *	  status names, thread-local error messages, the injectable clock,
 *	  the per-handle mutex that makes a handle safe to share between
 *	  threads, and the batch operations with their fallback loops for
 *	  backends that do not implement them.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE				/* strerrorname_np */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_backend.h"

struct storage_client
{
	pthread_mutex_t mutex;		/* serializes every backend call */
	const storage_backend_ops *ops;
	void	   *state;			/* the backend's private state */
	storage_clock_fn clock;		/* NULL = real time */
	void	   *clock_arg;
	uint64_t	serial;			/* identifies the handle in error slots */
	bool		batch_fallback; /* tests: ignore native batch operations */
	bool		generic_buckets;	/* tests: ignore native bucket operations */
	storage_watch_ctl watch;	/* watch.c's */
};

/*
 * Failures are kept per thread (like errno), tagged with the serial number
 * of the handle that failed, so concurrent threads never see or overwrite
 * each other's.  The rules callers rely on are in storage_client.h.
 */
#define ERRMSG_SIZE 1024
typedef struct err_slot
{
	uint64_t	owner;			/* serial of the failed handle, 0 = none */
	storage_status status;
	int			sys_errno;
	bool		retryable;
	storage_outcome outcome;
	char		code[64];
	char		msg[ERRMSG_SIZE];
} err_slot;
static _Thread_local err_slot err;
static atomic_uint_fast64_t next_serial = 1;

/* errno values after which the same call may well succeed */
static bool
errno_retryable(int e)
{
	return e == EINTR || e == EAGAIN || e == EBUSY || e == ETIMEDOUT ||
		e == ENOLCK;
}

storage_status
storage_error(storage_client *h, storage_status st, const char *fmt,...)
{
	int			saved_errno = errno;
	va_list		ap;

	va_start(ap, fmt);
	errno = saved_errno;
	vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
	va_end(ap);
	err.owner = h ? h->serial : 0;
	err.status = st;
	err.retryable = false;
	err.outcome = STORAGE_OUTCOME_NOT_APPLIED;
	err.code[0] = '\0';
	err.sys_errno = 0;

	/*
	 * A message about a failed system call ("%m") carries its errno: the
	 * structured detail then comes for free at every such call site.
	 */
	if (strstr(fmt, "%m") != NULL && saved_errno != 0)
	{
		const char *name = strerrorname_np(saved_errno);

		err.sys_errno = saved_errno;
		err.retryable = errno_retryable(saved_errno);
		if (name)
			snprintf(err.code, sizeof(err.code), "%s", name);
		else
			snprintf(err.code, sizeof(err.code), "errno %d", saved_errno);
	}
	errno = saved_errno;
	return st;
}

void
storage_error_detail(const char *code, bool retryable)
{
	snprintf(err.code, sizeof(err.code), "%s", code ? code : "");
	err.retryable = retryable;
}

void
storage_error_outcome(storage_outcome outcome)
{
	err.outcome = outcome;
}

static bool
err_is_for(const storage_client *h)
{
	return h == NULL || (err.owner != 0 && err.owner == h->serial);
}

const char *
storage_errmsg(const storage_client *h)
{
	return err_is_for(h) ? err.msg : "";
}

const char *
storage_errcode(const storage_client *h)
{
	return err_is_for(h) ? err.code : "";
}

int
storage_errno(const storage_client *h)
{
	return err_is_for(h) ? err.sys_errno : 0;
}

bool
storage_retryable(const storage_client *h)
{
	return err_is_for(h) ? err.retryable : false;
}

storage_outcome
storage_outcome_of(const storage_client *h)
{
	return err_is_for(h) ? err.outcome : STORAGE_OUTCOME_NOT_APPLIED;
}

const char *
storage_client_version(void)
{
	return STORAGE_CLIENT_VERSION;
}

int
storage_client_version_num(void)
{
	return STORAGE_CLIENT_VERSION_NUM;
}

void
storage_free(void *p)
{
	free(p);
}

const char *
storage_status_name(storage_status st)
{
	switch (st)
	{
		case STORAGE_OK:
			return "STORAGE_OK";
		case STORAGE_NOT_FOUND:
			return "STORAGE_NOT_FOUND";
		case STORAGE_VERSION_CONFLICT:
			return "STORAGE_VERSION_CONFLICT";
		case STORAGE_INVALID_ARGUMENT:
			return "STORAGE_INVALID_ARGUMENT";
		case STORAGE_ALREADY_EXISTS:
			return "STORAGE_ALREADY_EXISTS";
		case STORAGE_COMPARE_FAILED:
			return "STORAGE_COMPARE_FAILED";
		case STORAGE_BACKEND_ERROR:
			return "STORAGE_BACKEND_ERROR";
		case STORAGE_ABORTED:
			return "STORAGE_ABORTED";
	}
	return "STORAGE_UNKNOWN_STATUS";
}

/* ---- clock ------------------------------------------------------------- */

int64_t
storage_real_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * STORAGE_SEC + ts.tv_nsec / 1000;
}

int64_t
storage_clock_now(storage_client *h)
{
	return h->clock ? h->clock(h->clock_arg) : storage_real_now();
}

int64_t
storage_now(storage_client *h)
{
	int64_t		now;

	if (h == NULL)
		return storage_real_now();
	pthread_mutex_lock(&h->mutex);
	now = storage_clock_now(h);
	pthread_mutex_unlock(&h->mutex);
	return now;
}

storage_status
storage_set_clock(storage_client *h, storage_clock_fn fn, void *arg)
{
	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (h->ops->clock_is_server)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "the %s backend judges expiry by the server's clock; a client clock cannot be injected",
							 h->ops->name);
	pthread_mutex_lock(&h->mutex);
	h->clock = fn;
	h->clock_arg = fn ? arg : NULL;
	pthread_mutex_unlock(&h->mutex);
	return STORAGE_OK;
}

/* ---- open / close ------------------------------------------------------ */

static bool
has_prefix(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Does uri start with something like "scheme:"? */
static bool
looks_like_scheme(const char *uri)
{
	const char *p = uri;

	if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
		return false;
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		   (*p >= '0' && *p <= '9') || *p == '+' || *p == '-' || *p == '.')
		p++;
	return *p == ':';
}

storage_status
storage_open(const char *uri, storage_client **out)
{
	const storage_backend_ops *ops;
	const char *spec;
	storage_client *h;
	storage_status st;

	if (out == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "out is NULL");
	*out = NULL;
	if (uri == NULL || uri[0] == '\0')
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT,
							 "URI is NULL or empty");

	/* the scheme table: add new backends here */
	if (has_prefix(uri, "memory:"))
	{
		ops = &storage_memory_backend;
		spec = uri + strlen("memory:");
		if (*spec != '\0')
			return storage_error(NULL, STORAGE_INVALID_ARGUMENT,
								 "the memory URI takes no argument: \"memory:\"");
	}
	else if (has_prefix(uri, "dir:"))
	{
		ops = &storage_dir_backend;
		spec = uri + strlen("dir:");
		if (*spec == '\0')
			return storage_error(NULL, STORAGE_INVALID_ARGUMENT,
								 "the dir URI needs a path: \"dir:/path\"");
	}
	else if (has_prefix(uri, "dynamodb://"))
	{
		ops = &storage_dynamodb_backend;
		spec = uri + strlen("dynamodb://");
	}
	else if (has_prefix(uri, "postgresql://") || has_prefix(uri, "postgres://") ||
			 !looks_like_scheme(uri))
	{
		ops = &storage_pg_backend;
		spec = uri;
	}
	else
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT,
							 "unknown URI scheme in \"%s\" (use memory:, dir:/path, dynamodb://TABLE?..., postgresql://... or a libpq conninfo)",
							 uri);

	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return storage_error(NULL, STORAGE_BACKEND_ERROR, "out of memory");
	if (pthread_mutex_init(&h->mutex, NULL) != 0)
	{
		free(h);
		return storage_error(NULL, STORAGE_BACKEND_ERROR,
							 "could not initialize mutex");
	}
	h->ops = ops;
	h->serial = atomic_fetch_add(&next_serial, 1);

	st = ops->open(h, spec, &h->state);
	if (st != STORAGE_OK)
	{
		err.owner = 0;			/* the handle is gone: see storage_errmsg(NULL) */
		pthread_mutex_destroy(&h->mutex);
		free(h);
		return st;
	}
	*out = h;
	return STORAGE_OK;
}

void
storage_close(storage_client *h)
{
	if (h == NULL)
		return;
	h->ops->close(h->state);
	pthread_mutex_destroy(&h->mutex);
	free(h);
}

const char *
storage_backend_name(const storage_client *h)
{
	return h ? h->ops->name : NULL;
}

/* ---- validation and shared rules ---------------------------------------- */

storage_status
storage_check_id(storage_client *h, const char *id)
{
	size_t		len;

	if (id == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "id is NULL");
	len = strnlen(id, STORAGE_MAX_ID_LEN + 1);
	if (len == 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "id is empty");
	if (len > STORAGE_MAX_ID_LEN)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "id is longer than %d bytes", STORAGE_MAX_ID_LEN);
	return STORAGE_OK;
}

storage_status
storage_check_record(storage_client *h, const storage_record *rec)
{
	storage_status st = storage_check_id(h, rec->id);

	if (st == STORAGE_OK && rec->data == NULL && rec->data_len != 0)
		st = storage_error(h, STORAGE_INVALID_ARGUMENT,
						   "data is NULL but data_len is %zu", rec->data_len);
	return st;
}

storage_status
storage_save_rule(storage_client *h, const char *id, int64_t live_version,
				  int64_t expect_version, int64_t *new_version)
{
	if (expect_version > 0)
	{
		/* like the extension: an impossible expectation is bad input first */
		if (expect_version == INT64_MAX)
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "version of record \"%s\" would overflow int64: expect_version is %lld",
								 id, (long long) expect_version);
		if (live_version != expect_version)
		{
			if (live_version == 0)
				return storage_error(h, STORAGE_VERSION_CONFLICT,
									 "version conflict: record \"%s\" expected version %lld, but no live record exists",
									 id, (long long) expect_version);
			return storage_error(h, STORAGE_VERSION_CONFLICT,
								 "version conflict: record \"%s\" expected version %lld, actual version %lld",
								 id, (long long) expect_version,
								 (long long) live_version);
		}
		*new_version = expect_version + 1;
	}
	else if (expect_version == 0)
	{
		if (live_version != 0)
			return storage_error(h, STORAGE_VERSION_CONFLICT,
								 "version conflict: record \"%s\" expected no live record, actual version %lld",
								 id, (long long) live_version);
		*new_version = 1;
	}
	else
	{
		if (live_version == INT64_MAX)
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "version of record \"%s\" would overflow int64", id);
		*new_version = live_version + 1;
	}
	return STORAGE_OK;
}

bool
storage_record_copy(storage_record *dst, const storage_record *src)
{
	memset(dst, 0, sizeof(*dst));
	dst->version = src->version;
	dst->expires_at = src->expires_at;
	dst->data_len = src->data_len;
	if ((dst->id = strdup(src->id)) == NULL)
		goto oom;
	if (src->format && (dst->format = strdup(src->format)) == NULL)
		goto oom;
	if (src->data)
	{
		/* malloc(0) may return NULL: always allocate at least one byte */
		unsigned char *data = malloc(src->data_len ? src->data_len : 1);

		if (data == NULL)
			goto oom;
		memcpy(data, src->data, src->data_len);
		dst->data = data;
	}
	return true;
oom:
	storage_record_clear(dst);
	return false;
}

int
storage_record_cmp(const void *a, const void *b)
{
	const storage_record *ra = a;
	const storage_record *rb = b;

	/* strcmp compares as unsigned char, i.e. byte order */
	return strcmp(ra->id, rb->id);
}

void
storage_record_clear(storage_record *rec)
{
	if (rec == NULL)
		return;
	/* the library allocated them: const only for the caller's inputs */
	free((void *) rec->id);
	free((void *) rec->format);
	free((void *) rec->data);
	memset(rec, 0, sizeof(*rec));
}

void
storage_records_free(storage_record *recs, size_t n)
{
	if (recs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		storage_record_clear(&recs[i]);
	free(recs);
}

/* ---- provider operations: validate, lock, dispatch ----------------------- */

#define CHECK_HANDLE(h) \
	do { \
		if ((h) == NULL) \
			return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL"); \
	} while (0)

storage_status
storage_fetch(storage_client *h, const char *id, storage_record *out)
{
	storage_status st;

	CHECK_HANDLE(h);
	if (out == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "out is NULL");
	memset(out, 0, sizeof(*out));
	if ((st = storage_check_id(h, id)) != STORAGE_OK)
		return st;
	pthread_mutex_lock(&h->mutex);
	st = h->ops->fetch(h, h->state, id, out);
	pthread_mutex_unlock(&h->mutex);
	if (st != STORAGE_OK)
		storage_record_clear(out);
	return st;
}

storage_status
storage_save(storage_client *h, storage_record *rec, int64_t expect_version)
{
	storage_status st;
	storage_record r;

	CHECK_HANDLE(h);
	if (rec == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "record is NULL");
	if ((st = storage_check_record(h, rec)) != STORAGE_OK)
		return st;
	/* the backend sees a copy of the caller's fields, never partial writes */
	r = *rec;
	pthread_mutex_lock(&h->mutex);
	st = h->ops->save(h, h->state, &r, expect_version);
	pthread_mutex_unlock(&h->mutex);
	if (st == STORAGE_OK || storage_outcome_of(h) == STORAGE_OUTCOME_APPLIED)
		rec->version = r.version;
	return st;
}

storage_status
storage_delete(storage_client *h, const char *id, bool *deleted)
{
	storage_status st;
	bool		d = false;

	CHECK_HANDLE(h);
	if (deleted)
		*deleted = false;
	if ((st = storage_check_id(h, id)) != STORAGE_OK)
		return st;
	pthread_mutex_lock(&h->mutex);
	st = h->ops->delete(h, h->state, id, &d);
	pthread_mutex_unlock(&h->mutex);
	if (st == STORAGE_OK && deleted)
		*deleted = d;
	return st;
}

storage_status
storage_purge_expired(storage_client *h, int64_t max_rows, int64_t *count)
{
	storage_status st;
	int64_t		c = 0;

	CHECK_HANDLE(h);
	if (count)
		*count = 0;
	pthread_mutex_lock(&h->mutex);
	st = h->ops->purge_expired(h, h->state, max_rows > 0 ? max_rows : 0, &c);
	pthread_mutex_unlock(&h->mutex);
	if (st == STORAGE_OK && count)
		*count = c;
	return st;
}

storage_status
storage_list(storage_client *h, const char *prefix,
			 storage_record **out, size_t *n)
{
	storage_status st;
	storage_record *recs = NULL;
	size_t		count = 0;

	CHECK_HANDLE(h);
	if (out == NULL || n == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "out or n is NULL");
	*out = NULL;
	*n = 0;
	if (prefix == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "prefix is NULL (use \"\" for all records)");
	pthread_mutex_lock(&h->mutex);
	st = h->ops->list(h, h->state, prefix, &recs, &count);
	pthread_mutex_unlock(&h->mutex);
	if (st != STORAGE_OK)
	{
		storage_records_free(recs, count);
		return st;
	}
	*out = recs;
	*n = count;
	return STORAGE_OK;
}

storage_status
storage_locked(storage_client *h, storage_locked_fn fn, void *arg)
{
	storage_status st;

	pthread_mutex_lock(&h->mutex);
	st = fn(h, h->ops, h->state, arg);
	pthread_mutex_unlock(&h->mutex);
	return st;
}

/* ---- fenced locks (buckets.c validates, this dispatches) ----------------- */

storage_status
storage_lock_call(storage_client *h, storage_lock_op op, const char *id,
				  const char *token, int64_t fence, int64_t ttl,
				  int64_t *fence_out)
{
	const storage_backend_ops *ops = h->ops;
	int64_t		expires_at = 0;
	storage_status st;

	if ((op == STORAGE_LOCK_ACQUIRE && ops->lock_acquire == NULL) ||
		(op == STORAGE_LOCK_RELEASE && ops->lock_release == NULL) ||
		(op == STORAGE_LOCK_EXTEND && ops->lock_extend == NULL))
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "the %s backend has no locks with fencing tokens",
							 ops->name);
	pthread_mutex_lock(&h->mutex);
	if (op != STORAGE_LOCK_RELEASE)
	{
		if (!storage_ttl_expiry(storage_clock_now(h), ttl, &expires_at))
		{
			pthread_mutex_unlock(&h->mutex);
			return storage_error(h, STORAGE_INVALID_ARGUMENT, "lock ttl is too large");
		}
	}
	switch (op)
	{
		case STORAGE_LOCK_ACQUIRE:
			st = ops->lock_acquire(h, h->state, id, token, ttl, expires_at, fence_out);
			break;
		case STORAGE_LOCK_RELEASE:
			st = ops->lock_release(h, h->state, id, token, fence);
			break;
		case STORAGE_LOCK_EXTEND:
		default:
			st = ops->lock_extend(h, h->state, id, token, fence, ttl, expires_at);
			break;
	}
	pthread_mutex_unlock(&h->mutex);
	return st;
}

/* ---- batch operations ---------------------------------------------------- */

/* check_id for element i of a batch, naming the element */
static storage_status
check_batch_id(storage_client *h, const char *id, size_t i)
{
	storage_status st = storage_check_id(h, id);
	char		msg[ERRMSG_SIZE];

	if (st == STORAGE_OK)
		return st;
	snprintf(msg, sizeof(msg), "%s", storage_errmsg(h));
	return storage_error(h, st, "batch element %zu: %s", i, msg);
}

static storage_status
check_batch_ids(storage_client *h, const char *const *ids, size_t n)
{
	storage_status st;

	if (ids == NULL && n > 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "ids is NULL");
	for (size_t i = 0; i < n; i++)
		if ((st = check_batch_id(h, ids[i], i)) != STORAGE_OK)
			return st;
	return STORAGE_OK;
}

static int
cmp_idp(const void *a, const void *b)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * The ids sorted by bytes into a new array *sorted (free() it).  With
 * unique, duplicates are dropped (*nsorted counts the rest); without, a
 * duplicate is STORAGE_INVALID_ARGUMENT.
 */
static storage_status
sorted_ids(storage_client *h, const char *const *ids, size_t n, bool unique,
		   const char ***sorted, size_t *nsorted)
{
	const char **s = calloc(n, sizeof(char *));
	size_t		m = 0;

	if (s == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	memcpy(s, ids, n * sizeof(char *));
	qsort(s, n, sizeof(char *), cmp_idp);
	for (size_t i = 0; i < n; i++)
	{
		if (m > 0 && strcmp(s[i], s[m - 1]) == 0)
		{
			if (unique)
				continue;
			storage_error(h, STORAGE_INVALID_ARGUMENT,
						  "id \"%s\" appears more than once in the batch", s[i]);
			free(s);
			return STORAGE_INVALID_ARGUMENT;
		}
		s[m++] = s[i];
	}
	*sorted = s;
	*nsorted = m;
	return STORAGE_OK;
}

/* Fallback: one fetch per (distinct) id, under the handle's mutex. */
static storage_status
fallback_fetch_many(storage_client *h, const char *const *ids, size_t n,
					storage_record **out, size_t *n_out)
{
	if ((*out = calloc(n, sizeof(storage_record))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (size_t i = 0; i < n; i++)
	{
		storage_status st = h->ops->fetch(h, h->state, ids[i], &(*out)[*n_out]);

		if (st == STORAGE_OK)
			(*n_out)++;
		else
		{
			storage_record_clear(&(*out)[*n_out]);
			if (st != STORAGE_NOT_FOUND)
				return st;
		}
	}
	return STORAGE_OK;
}

storage_status
storage_fetch_many(storage_client *h, const char *const *ids, size_t n,
				   storage_record **out, size_t *n_out)
{
	const char **uniq;
	size_t		nuniq;
	storage_record *recs = NULL;
	size_t		count = 0;
	storage_status st;

	CHECK_HANDLE(h);
	if (out == NULL || n_out == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "out or n_out is NULL");
	*out = NULL;
	*n_out = 0;
	if ((st = check_batch_ids(h, ids, n)) != STORAGE_OK || n == 0)
		return st;
	if ((st = sorted_ids(h, ids, n, true, &uniq, &nuniq)) != STORAGE_OK)
		return st;
	pthread_mutex_lock(&h->mutex);
	if (h->ops->fetch_many && !h->batch_fallback)
		st = h->ops->fetch_many(h, h->state, uniq, nuniq, &recs, &count);
	else
		st = fallback_fetch_many(h, uniq, nuniq, &recs, &count);
	pthread_mutex_unlock(&h->mutex);
	free(uniq);
	if (st != STORAGE_OK)
	{
		storage_records_free(recs, count);
		return st;
	}
	qsort(recs, count, sizeof(storage_record), storage_record_cmp);
	*out = recs;
	*n_out = count;
	return STORAGE_OK;
}

/* Everything storage_save_many() checks before anything is read. */
static storage_status
check_save_many(storage_client *h, const storage_record *recs, size_t n,
				const int64_t *expect)
{
	const char **ids;
	const char **sorted;
	size_t		nsorted;
	storage_status st;

	if (recs == NULL && n > 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "recs is NULL");
	for (size_t i = 0; i < n; i++)
	{
		if ((st = check_batch_id(h, recs[i].id, i)) != STORAGE_OK)
			return st;
		if (recs[i].data == NULL && recs[i].data_len != 0)
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "record \"%s\": data is NULL but data_len is %zu",
								 recs[i].id, recs[i].data_len);
		if (expect && expect[i] == INT64_MAX)
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "version of record \"%s\" would overflow int64: expect_version is %lld",
								 recs[i].id, (long long) expect[i]);
	}
	if (n == 0)
		return STORAGE_OK;
	if ((ids = calloc(n, sizeof(char *))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (size_t i = 0; i < n; i++)
		ids[i] = recs[i].id;
	st = sorted_ids(h, ids, n, false, &sorted, &nsorted);
	free(ids);
	if (st == STORAGE_OK)
		free(sorted);
	return st;
}

/* Fallback: one save after the other; NOT atomic (stops at the first failure). */
static storage_status
fallback_save_many(storage_client *h, storage_record *recs, size_t n,
				   const int64_t *expect)
{
	for (size_t i = 0; i < n; i++)
	{
		storage_status st = h->ops->save(h, h->state, &recs[i], expect[i]);

		if (st != STORAGE_OK)
			return st;
	}
	return STORAGE_OK;
}

storage_status
storage_save_many(storage_client *h, storage_record *recs, size_t n,
				  const int64_t *expect_versions)
{
	storage_record *copy;
	int64_t    *expect;
	storage_status st;

	CHECK_HANDLE(h);
	if ((st = check_save_many(h, recs, n, expect_versions)) != STORAGE_OK || n == 0)
		return st;
	/* the backend sees copies: the caller's records change only on success */
	copy = calloc(n, sizeof(storage_record));
	expect = calloc(n, sizeof(int64_t));
	if (copy == NULL || expect == NULL)
	{
		free(copy);
		free(expect);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	memcpy(copy, recs, n * sizeof(storage_record));
	for (size_t i = 0; i < n; i++)
		expect[i] = expect_versions ? expect_versions[i] : -1;
	pthread_mutex_lock(&h->mutex);
	if (h->ops->save_many && !h->batch_fallback)
		st = h->ops->save_many(h, h->state, copy, n, expect);
	else
		st = fallback_save_many(h, copy, n, expect);
	pthread_mutex_unlock(&h->mutex);
	if (st == STORAGE_OK || storage_outcome_of(h) == STORAGE_OUTCOME_APPLIED)
		for (size_t i = 0; i < n; i++)
			recs[i].version = copy[i].version;
	free(copy);
	free(expect);
	return st;
}

/* Fallback: one delete per (distinct) id, under the handle's mutex. */
static storage_status
fallback_delete_many(storage_client *h, const char *const *ids, size_t n,
					 int64_t *count)
{
	for (size_t i = 0; i < n; i++)
	{
		bool		deleted = false;
		storage_status st = h->ops->delete(h, h->state, ids[i], &deleted);

		if (st != STORAGE_OK)
			return st;
		*count += deleted;
	}
	return STORAGE_OK;
}

storage_status
storage_delete_many(storage_client *h, const char *const *ids, size_t n,
					int64_t *count)
{
	const char **uniq;
	size_t		nuniq;
	int64_t		c = 0;
	storage_status st;

	CHECK_HANDLE(h);
	if (count)
		*count = 0;
	if ((st = check_batch_ids(h, ids, n)) != STORAGE_OK || n == 0)
		return st;
	if ((st = sorted_ids(h, ids, n, true, &uniq, &nuniq)) != STORAGE_OK)
		return st;
	pthread_mutex_lock(&h->mutex);
	if (h->ops->delete_many && !h->batch_fallback)
		st = h->ops->delete_many(h, h->state, uniq, nuniq, &c);
	else
		st = fallback_delete_many(h, uniq, nuniq, &c);
	pthread_mutex_unlock(&h->mutex);
	free(uniq);
	if (st == STORAGE_OK && count)
		*count = c;
	return st;
}

void
storage_force_generic_buckets(storage_client *h, bool on)
{
	pthread_mutex_lock(&h->mutex);
	h->generic_buckets = on;
	pthread_mutex_unlock(&h->mutex);
}

storage_status
storage_bucket_call(storage_client *h, const storage_bucket_req *req,
					storage_bucket_res *res, bool *native)
{
	storage_status st;

	memset(res, 0, sizeof(*res));
	pthread_mutex_lock(&h->mutex);
	*native = h->ops->bucket != NULL && !h->generic_buckets;
	st = *native ? h->ops->bucket(h, h->state, req, res) : STORAGE_OK;
	pthread_mutex_unlock(&h->mutex);
	if (st != STORAGE_OK)
	{
		free(res->val);
		storage_strings_free(res->keys, res->nkeys);
		storage_items_free(res->items, res->nitems);
		memset(res, 0, sizeof(*res));
	}
	return st;
}

void
storage_force_batch_fallback(storage_client *h, bool on)
{
	pthread_mutex_lock(&h->mutex);
	h->batch_fallback = on;
	pthread_mutex_unlock(&h->mutex);
}

/* ---- change feed hooks (watch.c owns the feature) ------------------------ */

pthread_mutex_t *
storage_handle_mutex(storage_client *h)
{
	return &h->mutex;
}

storage_watch_ctl *
storage_handle_watch(storage_client *h)
{
	return &h->watch;
}

storage_status
storage_backend_watch(storage_client *h, const storage_watch_req *req)
{
	if (h->ops->watch == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "the %s backend has no change feed: storage_watch is not supported",
							 h->ops->name);
	return h->ops->watch(h, h->state, req);
}
