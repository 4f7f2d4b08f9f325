/*-------------------------------------------------------------------------
 *
 * buckets.c
 *	  The bucket/key layer with TTLs and locks, written once on top of the
 *	  public provider operations (fetch, save, delete, list), so that every
 *	  backend has it.  Key mapping as in the extension's SQL bucket
 *	  functions: bucket {"b1","b2"} and key "k" are record id "b1/b2/k";
 *	  lock "t" is record ".locks/t".
 *
 *	  A backend with its own bucket operation (storage_backend_ops.bucket:
 *	  postgresql, onto the extension's bucket and lock functions) gets each
 *	  call after the validation here; the generic code below serves the
 *	  others, with the same results (the suite runs both).
 *
 *	  Atomicity comes from the versioned save: create_val and acquire_lock
 *	  save with expect_version 0, compare_and_swap_val saves with the
 *	  version it compared.  upsert_items validates everything and then
 *	  writes all items with one storage_save_many(), all or nothing on
 *	  every backend with a native save_many (all built-in ones).
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_backend.h"

#define LOCKS_PREFIX	".locks/"
#define ID_BUF			(STORAGE_MAX_ID_LEN + 2)

/* ---- names ------------------------------------------------------------- */

static storage_status
check_name(storage_client *h, const char *what, const char *name)
{
	if (name == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "%s is NULL", what);
	if (name[0] == '\0')
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "%s is empty", what);
	if (strchr(name, '/') != NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "%s \"%s\" contains '/'", what, name);
	if (name[0] == '.')
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "%s \"%s\" starts with '.' (reserved)", what, name);
	return STORAGE_OK;
}

/* Append s to buf (ID_BUF bytes) at *len; false if the id would be too long. */
static bool
append(char *buf, size_t *len, const char *s, size_t slen)
{
	if (*len + slen > STORAGE_MAX_ID_LEN)
		return false;
	memcpy(buf + *len, s, slen);
	*len += slen;
	buf[*len] = '\0';
	return true;
}

/* "b1/b2/" (or "" for the root) into buf. */
static storage_status
bucket_prefix(storage_client *h, const char *const *bucket, size_t nbucket,
			  char *buf, size_t *len)
{
	*len = 0;
	buf[0] = '\0';
	if (bucket == NULL && nbucket > 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "bucket is NULL");
	for (size_t i = 0; i < nbucket; i++)
	{
		storage_status st = check_name(h, "bucket element", bucket[i]);

		if (st != STORAGE_OK)
			return st;
		if (!append(buf, len, bucket[i], strlen(bucket[i])) ||
			!append(buf, len, "/", 1))
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "bucket path is longer than %d bytes",
								 STORAGE_MAX_ID_LEN);
	}
	return STORAGE_OK;
}

/* Record id of bucket + key into buf. */
static storage_status
key_id(storage_client *h, const char *const *bucket, size_t nbucket,
	   const char *key, char *buf)
{
	size_t		len;
	storage_status st;

	if ((st = bucket_prefix(h, bucket, nbucket, buf, &len)) != STORAGE_OK)
		return st;
	if ((st = check_name(h, "key", key)) != STORAGE_OK)
		return st;
	if (!append(buf, &len, key, strlen(key)))
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "id of key \"%s\" is longer than %d bytes",
							 key, STORAGE_MAX_ID_LEN);
	return STORAGE_OK;
}

/* ttl (usec, 0 = none) -> expires_at */
static storage_status
ttl_expires(storage_client *h, int64_t ttl, int64_t *expires_at)
{
	if (ttl < 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "ttl must not be negative");
	if (ttl == 0)
	{
		*expires_at = STORAGE_NEVER;
		return STORAGE_OK;
	}
	if (!storage_ttl_expiry(storage_now(h), ttl, expires_at))
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "ttl is too large");
	return STORAGE_OK;
}

static storage_status
check_val(storage_client *h, const void *val, size_t len)
{
	if (val == NULL && len != 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "value is NULL but its length is %zu", len);
	return STORAGE_OK;
}

static void
value_record(storage_record *rec, char *id, const void *val, size_t len,
			 int64_t expires_at)
{
	memset(rec, 0, sizeof(*rec));
	rec->id = id;
	/* a NULL value stays NULL (data NULL), as the SQL functions keep it */
	rec->data = val;
	rec->data_len = len;
	rec->expires_at = expires_at;
	rec->format = NULL;
}

/* ---- values ------------------------------------------------------------ */

static storage_status
put_val(storage_client *h, const char *const *bucket, size_t nbucket,
		const char *key, const void *val, size_t len, int64_t ttl,
		int64_t expect)
{
	char		id[ID_BUF];
	storage_record rec;
	int64_t		expires_at;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = key_id(h, bucket, nbucket, key, id)) != STORAGE_OK ||
		(st = check_val(h, val, len)) != STORAGE_OK ||
		(st = ttl_expires(h, ttl, &expires_at)) != STORAGE_OK)
		return st;
	{
		storage_bucket_req req = {.op = expect == 0 ? STORAGE_BUCKET_CREATE_VAL : STORAGE_BUCKET_UPSERT_VAL,
		.bucket = bucket, .nbucket = nbucket, .key = key, .val = val, .val_len = len, .ttl = ttl};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
			return st;
	}
	value_record(&rec, id, val, len, expires_at);
	st = storage_save(h, &rec, expect);
	if (st == STORAGE_VERSION_CONFLICT && expect == 0)
		return storage_error(h, STORAGE_ALREADY_EXISTS,
							 "key \"%s\" already exists", key);
	return st;
}

storage_status
storage_create_val(storage_client *h, const char *const *bucket, size_t nbucket,
				   const char *key, const void *val, size_t val_len, int64_t ttl)
{
	return put_val(h, bucket, nbucket, key, val, val_len, ttl, 0);
}

storage_status
storage_upsert_val(storage_client *h, const char *const *bucket, size_t nbucket,
				   const char *key, const void *val, size_t val_len, int64_t ttl)
{
	return put_val(h, bucket, nbucket, key, val, val_len, ttl, -1);
}

storage_status
storage_compare_and_swap_val(storage_client *h,
							 const char *const *bucket, size_t nbucket,
							 const char *key,
							 const void *val, size_t val_len,
							 const void *prev_val, size_t prev_len,
							 int64_t ttl)
{
	char		id[ID_BUF];
	int64_t		expires_at;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = key_id(h, bucket, nbucket, key, id)) != STORAGE_OK ||
		(st = check_val(h, val, val_len)) != STORAGE_OK ||
		(st = ttl_expires(h, ttl, &expires_at)) != STORAGE_OK)
		return st;
	if (prev_val == NULL || prev_len == 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "prev_val is NULL or empty (use create_val)");
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_CAS_VAL, .bucket = bucket,
			.nbucket = nbucket, .key = key, .val = val, .val_len = val_len,
		.prev = prev_val, .prev_len = prev_len, .ttl = ttl};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
			return st;
	}

	/*
	 * Compare, then save over exactly the compared version.  If somebody
	 * wrote in between, compare again with what they wrote.
	 */
	for (;;)
	{
		storage_record cur;
		storage_record rec;
		bool		same;

		st = storage_fetch(h, id, &cur);
		if (st == STORAGE_NOT_FOUND)
			return storage_error(h, STORAGE_COMPARE_FAILED,
								 "key \"%s\" is not found", key);
		if (st != STORAGE_OK)
			return st;
		same = cur.data != NULL && cur.data_len == prev_len &&
			memcmp(cur.data, prev_val, prev_len) == 0;
		value_record(&rec, id, val, val_len, expires_at);
		st = same ? storage_save(h, &rec, cur.version) : STORAGE_COMPARE_FAILED;
		storage_record_clear(&cur);
		if (st == STORAGE_COMPARE_FAILED)
			return storage_error(h, STORAGE_COMPARE_FAILED,
								 "key \"%s\" does not hold the expected value", key);
		if (st != STORAGE_VERSION_CONFLICT)
			return st;
	}
}

storage_status
storage_get_val(storage_client *h, const char *const *bucket, size_t nbucket,
				const char *key, unsigned char **val, size_t *val_len)
{
	char		id[ID_BUF + 1];
	storage_record rec;
	storage_record *below;
	size_t		nbelow;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (val == NULL || val_len == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "val or val_len is NULL");
	*val = NULL;
	*val_len = 0;
	if ((st = key_id(h, bucket, nbucket, key, id)) != STORAGE_OK)
		return st;
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_GET_VAL, .bucket = bucket,
		.nbucket = nbucket, .key = key};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
		{
			*val = res.val;
			*val_len = res.val_len;
			return st;
		}
	}
	st = storage_fetch(h, id, &rec);
	if (st == STORAGE_OK)
	{
		*val = (unsigned char *) rec.data;	/* the library's: storage_free() */
		*val_len = rec.data_len;
		rec.data = NULL;
		storage_record_clear(&rec);
		return STORAGE_OK;
	}
	if (st != STORAGE_NOT_FOUND)
		return st;

	/* no such key: is it a bucket? */
	strcat(id, "/");
	if ((st = storage_list(h, id, &below, &nbelow)) != STORAGE_OK)
		return st;
	storage_records_free(below, nbelow);
	if (nbelow > 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "\"%s\" is a bucket, not a key", key);
	return storage_error(h, STORAGE_NOT_FOUND, "key \"%s\" is not found", key);
}

/* ---- listing ----------------------------------------------------------- */

static int
cmp_strp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* A name usable as key/bucket name (skips reserved and foreign ids). */
static bool
listable(const char *name, size_t len)
{
	return len > 0 && name[0] != '.';
}

/*
 * What get_keys and get_items start with: the backend's own answer
 * (*native, *res), or else the records under the bucket's prefix (*recs,
 * *nrecs; *plen is the prefix's length).
 */
static storage_status
bucket_listing(storage_client *h, storage_bucket_op op, const char *const *bucket,
			   size_t nbucket, storage_bucket_res *res, bool *native,
			   storage_record **recs, size_t *nrecs, size_t *plen)
{
	char		prefix[ID_BUF];
	storage_bucket_req req = {.op = op, .bucket = bucket, .nbucket = nbucket};
	storage_status st;

	*native = false;
	if ((st = bucket_prefix(h, bucket, nbucket, prefix, plen)) != STORAGE_OK)
		return st;
	st = storage_bucket_call(h, &req, res, native);
	if (*native)
		return st;
	return storage_list(h, prefix, recs, nrecs);
}

storage_status
storage_get_keys(storage_client *h, const char *const *bucket, size_t nbucket,
				 char ***keys, size_t *n)
{
	size_t		plen;
	storage_record *recs;
	size_t		nrecs;
	char	  **names;
	size_t		count = 0;
	storage_bucket_res res;
	bool		native;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (keys == NULL || n == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "keys or n is NULL");
	*keys = NULL;
	*n = 0;
	st = bucket_listing(h, STORAGE_BUCKET_GET_KEYS, bucket, nbucket, &res, &native,
						&recs, &nrecs, &plen);
	if (native)
	{
		*keys = res.keys;
		*n = res.nkeys;
	}
	if (st != STORAGE_OK || native)
		return st;
	names = calloc(nrecs ? nrecs : 1, sizeof(char *));
	if (names == NULL)
	{
		storage_records_free(recs, nrecs);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	for (size_t i = 0; i < nrecs; i++)
	{
		const char *rest = recs[i].id + plen;
		size_t		len = strcspn(rest, "/");

		if (!listable(rest, len))
			continue;
		if ((names[count] = strndup(rest, len)) == NULL)
		{
			storage_strings_free(names, count);
			storage_records_free(recs, nrecs);
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		}
		count++;
	}
	storage_records_free(recs, nrecs);

	/* "a-b" sorts before "a/x" as ids, but "a" before "a-b" as names */
	qsort(names, count, sizeof(char *), cmp_strp);
	if (count > 1)
	{
		size_t		out = 1;

		for (size_t i = 1; i < count; i++)
		{
			if (strcmp(names[i], names[out - 1]) == 0)
				free(names[i]);
			else
				names[out++] = names[i];
		}
		count = out;
	}
	*keys = names;
	*n = count;
	return STORAGE_OK;
}

storage_status
storage_get_items(storage_client *h, const char *const *bucket, size_t nbucket,
				  storage_item **items, size_t *n)
{
	size_t		plen;
	storage_record *recs;
	size_t		nrecs;
	storage_item *out;
	size_t		count = 0;
	storage_bucket_res res;
	bool		native;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (items == NULL || n == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "items or n is NULL");
	*items = NULL;
	*n = 0;
	st = bucket_listing(h, STORAGE_BUCKET_GET_ITEMS, bucket, nbucket, &res, &native,
						&recs, &nrecs, &plen);
	if (native)
	{
		*items = res.items;
		*n = res.nitems;
	}
	if (st != STORAGE_OK || native)
		return st;
	out = calloc(nrecs ? nrecs : 1, sizeof(storage_item));
	if (out == NULL)
	{
		storage_records_free(recs, nrecs);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	/* list is sorted by id; with a common prefix that is key order */
	for (size_t i = 0; i < nrecs; i++)
	{
		const char *rest = recs[i].id + plen;
		size_t		len = strlen(rest);

		if (!listable(rest, len) || strchr(rest, '/') != NULL)
			continue;
		if ((out[count].key = strdup(rest)) == NULL)
		{
			storage_items_free(out, count);
			storage_records_free(recs, nrecs);
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		}
		out[count].val = recs[i].data;
		out[count].val_len = recs[i].data_len;
		out[count].expires_at = recs[i].expires_at;
		recs[i].data = NULL;
		count++;
	}
	storage_records_free(recs, nrecs);
	*items = out;
	*n = count;
	return STORAGE_OK;
}

/* ---- bulk and deletes -------------------------------------------------- */

/* Every key and value of upsert_items, and no key twice. */
static storage_status
check_items(storage_client *h, const char *const *bucket, size_t nbucket,
			const storage_item *items, size_t n)
{
	char		id[ID_BUF];
	const char **sorted;
	storage_status st = STORAGE_OK;

	for (size_t i = 0; i < n; i++)
	{
		if ((st = key_id(h, bucket, nbucket, items[i].key, id)) != STORAGE_OK ||
			(st = check_val(h, items[i].val, items[i].val_len)) != STORAGE_OK)
			return st;
	}
	if (n == 0)
		return key_id(h, bucket, nbucket, "x", id);	/* still check bucket */
	if ((sorted = malloc(n * sizeof(char *))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (size_t i = 0; i < n; i++)
		sorted[i] = items[i].key;
	qsort(sorted, n, sizeof(char *), cmp_strp);
	for (size_t i = 1; i < n && st == STORAGE_OK; i++)
	{
		if (strcmp(sorted[i], sorted[i - 1]) == 0)
			st = storage_error(h, STORAGE_INVALID_ARGUMENT,
							   "duplicate key \"%s\"", sorted[i]);
	}
	free(sorted);
	return st;
}

storage_status
storage_upsert_items(storage_client *h, const char *const *bucket, size_t nbucket,
					 const storage_item *items, size_t n, int64_t ttl)
{
	int64_t		expires_at;
	storage_record *recs;
	char	   *ids;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (items == NULL && n > 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "items is NULL");
	if ((st = ttl_expires(h, ttl, &expires_at)) != STORAGE_OK ||
		(st = check_items(h, bucket, nbucket, items, n)) != STORAGE_OK ||
		n == 0)
		return st;
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_UPSERT_ITEMS, .bucket = bucket,
		.nbucket = nbucket, .items = items, .nitems = n, .ttl = ttl};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
			return st;
	}

	recs = calloc(n, sizeof(storage_record));
	ids = calloc(n, ID_BUF);
	if (recs == NULL || ids == NULL)
		st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (size_t i = 0; st == STORAGE_OK && i < n; i++)
	{
		char	   *id = ids + i * ID_BUF;

		key_id(h, bucket, nbucket, items[i].key, id);
		value_record(&recs[i], id, items[i].val, items[i].val_len, expires_at);
	}
	if (st == STORAGE_OK)
		st = storage_save_many(h, recs, n, NULL);
	free(recs);
	free(ids);
	return st;
}

storage_status
storage_delete_key(storage_client *h, const char *const *bucket, size_t nbucket,
				   const char *key)
{
	char		id[ID_BUF];
	bool		deleted;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = key_id(h, bucket, nbucket, key, id)) != STORAGE_OK)
		return st;
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_DELETE_KEY, .bucket = bucket,
		.nbucket = nbucket, .key = key};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
			return st;
	}
	if ((st = storage_delete(h, id, &deleted)) != STORAGE_OK)
		return st;
	if (!deleted)
		return storage_error(h, STORAGE_NOT_FOUND, "key \"%s\" is not found", key);
	return STORAGE_OK;
}

storage_status
storage_delete_bucket(storage_client *h, const char *const *parent,
					  size_t nparent, const char *name, int64_t *count)
{
	char		prefix[ID_BUF];
	size_t		plen;
	storage_record *recs;
	size_t		nrecs;
	int64_t		removed = 0;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (count)
		*count = 0;
	if ((st = bucket_prefix(h, parent, nparent, prefix, &plen)) != STORAGE_OK)
		return st;
	if ((st = check_name(h, "bucket", name)) != STORAGE_OK)
		return st;
	if (!append(prefix, &plen, name, strlen(name)) ||
		!append(prefix, &plen, "/", 1))
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "bucket path is longer than %d bytes",
							 STORAGE_MAX_ID_LEN);
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_DELETE_BUCKET, .bucket = parent,
		.nbucket = nparent, .key = name};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
		{
			if (count)
				*count = res.count;
			return st;
		}
	}
	if ((st = storage_list(h, prefix, &recs, &nrecs)) != STORAGE_OK)
		return st;
	for (size_t i = 0; i < nrecs; i++)
	{
		bool		deleted;

		if ((st = storage_delete(h, recs[i].id, &deleted)) != STORAGE_OK)
			break;
		if (deleted)
			removed++;
	}
	storage_records_free(recs, nrecs);
	if (count)
		*count = removed;
	if (st != STORAGE_OK)
		return st;
	if (removed == 0)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "bucket \"%s\" is not found", name);
	return STORAGE_OK;
}

/* ---- locks ------------------------------------------------------------- */

static storage_status
lock_id(storage_client *h, const char *token, char *buf)
{
	size_t		len = 0;
	storage_status st;

	buf[0] = '\0';
	if ((st = check_name(h, "lock token", token)) != STORAGE_OK)
		return st;
	if (!append(buf, &len, LOCKS_PREFIX, strlen(LOCKS_PREFIX)) ||
		!append(buf, &len, token, strlen(token)))
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "lock token \"%s\" is too long", token);
	return STORAGE_OK;
}

storage_status
storage_acquire_lock(storage_client *h, const char *token, int64_t ttl)
{
	char		id[ID_BUF];
	long		backoff_ns = 1000000;	/* 1 ms, doubling up to 50 ms */
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = lock_id(h, token, id)) != STORAGE_OK)
		return st;
	if (ttl <= 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "lock ttl must be positive");
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_ACQUIRE_LOCK, .key = token,
		.ttl = ttl};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
			return st;
	}
	for (;;)
	{
		storage_record rec;
		int64_t		expires_at;
		struct timespec ts;

		if ((st = ttl_expires(h, ttl, &expires_at)) != STORAGE_OK)
			return st;
		/* an empty value, as the extension's lock records have */
		value_record(&rec, id, "", 0, expires_at);
		st = storage_save(h, &rec, 0);
		if (st != STORAGE_VERSION_CONFLICT)
			return st;
		ts.tv_sec = 0;
		ts.tv_nsec = backoff_ns;
		nanosleep(&ts, NULL);
		if (backoff_ns < 50000000)
			backoff_ns *= 2;
	}
}

storage_status
storage_release_lock(storage_client *h, const char *token)
{
	char		id[ID_BUF];
	bool		deleted;
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = lock_id(h, token, id)) != STORAGE_OK)
		return st;
	{
		storage_bucket_req req = {.op = STORAGE_BUCKET_RELEASE_LOCK, .key = token};
		storage_bucket_res res;
		bool		native;

		st = storage_bucket_call(h, &req, &res, &native);
		if (native)
			return st;
	}
	if ((st = storage_delete(h, id, &deleted)) != STORAGE_OK)
		return st;
	if (!deleted)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "lock \"%s\" is not held", token);
	return STORAGE_OK;
}

/*
 * Fenced locks: validated here, run by the backend's lock operations (see
 * storage_backend.h), which keep the token with the lock atomically; the
 * plain save and delete above cannot, because a save over an expired lock
 * restarts its version at 1.
 */
storage_status
storage_acquire_lock_fenced(storage_client *h, const char *token, int64_t ttl,
							int64_t *fence)
{
	char		id[ID_BUF];
	long		backoff_ns = 1000000;	/* 1 ms, doubling up to 50 ms */
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (fence == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "fence is NULL");
	*fence = 0;
	if ((st = lock_id(h, token, id)) != STORAGE_OK)
		return st;
	if (ttl <= 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "lock ttl must be positive");
	for (;;)
	{
		struct timespec ts;

		st = storage_lock_call(h, STORAGE_LOCK_ACQUIRE, id, token, 0, ttl, fence);
		if (st != STORAGE_ALREADY_EXISTS)
			return st;
		ts.tv_sec = 0;
		ts.tv_nsec = backoff_ns;
		nanosleep(&ts, NULL);
		if (backoff_ns < 50000000)
			backoff_ns *= 2;
	}
}

static storage_status
check_fence(storage_client *h, int64_t fence)
{
	if (fence < 1)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "fence must be positive");
	return STORAGE_OK;
}

storage_status
storage_release_lock_fenced(storage_client *h, const char *token, int64_t fence)
{
	char		id[ID_BUF];
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = lock_id(h, token, id)) != STORAGE_OK ||
		(st = check_fence(h, fence)) != STORAGE_OK)
		return st;
	return storage_lock_call(h, STORAGE_LOCK_RELEASE, id, token, fence, 0, NULL);
}

storage_status
storage_extend_lock(storage_client *h, const char *token, int64_t fence,
					int64_t ttl)
{
	char		id[ID_BUF];
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if ((st = lock_id(h, token, id)) != STORAGE_OK ||
		(st = check_fence(h, fence)) != STORAGE_OK)
		return st;
	if (ttl <= 0)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "lock ttl must be positive");
	return storage_lock_call(h, STORAGE_LOCK_EXTEND, id, token, fence, ttl, NULL);
}

/* ---- freeing ----------------------------------------------------------- */

void
storage_strings_free(char **strs, size_t n)
{
	if (strs == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		free(strs[i]);
	free(strs);
}

void
storage_items_free(storage_item *items, size_t n)
{
	if (items == NULL)
		return;
	for (size_t i = 0; i < n; i++)
	{
		free((void *) items[i].key);
		free((void *) items[i].val);
	}
	free(items);
}
