/*-------------------------------------------------------------------------
 *
 * backend_memory.c
 *	  The "memory:" backend: a private in-process hash table of records.
 *	  Every storage_open("memory:") creates a new empty store that lives
 *	  until storage_close().  The handle's mutex (held by client.c around
 *	  every call) is the table's lock, which also makes the batch
 *	  operations atomic: save_many checks every record and allocates every
 *	  copy before it changes the table.
 *
 *	  This is the smallest complete backend: read it to see what a backend
 *	  must implement (see also storage_backend.h).  Each operation also
 *	  records its changes in the store's change log for storage_watch()
 *	  (backend_memory_watch.c): one transaction per operation.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "storage_backend.h"

typedef struct mem_entry
{
	struct mem_entry *next;		/* hash chain */
	uint64_t	hash;
	storage_record rec;
} mem_entry;

typedef struct mem_state
{
	mem_entry **buckets;
	size_t		nbuckets;		/* power of two */
	size_t		nentries;
	int64_t		last_fence;		/* the last lock fencing token handed out */
	storage_memlog *log;		/* the change feed */
} mem_state;

/* FNV-1a */
static uint64_t
hash_id(const char *id)
{
	uint64_t	h = UINT64_C(14695981039346656037);

	for (const unsigned char *p = (const unsigned char *) id; *p; p++)
	{
		h ^= *p;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

static storage_status
mem_open(storage_client *h, const char *spec, void **state)
{
	mem_state  *ms;

	(void) spec;
	ms = calloc(1, sizeof(*ms));
	if (ms == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	ms->nbuckets = 64;
	ms->last_fence = 1;			/* tokens start at 2 (see storage_backend.h) */
	ms->buckets = calloc(ms->nbuckets, sizeof(mem_entry *));
	ms->log = storage_memlog_new();
	if (ms->buckets == NULL || ms->log == NULL)
	{
		free(ms->buckets);
		storage_memlog_free(ms->log);
		free(ms);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	*state = ms;
	return STORAGE_OK;
}

static void
mem_close(void *state)
{
	mem_state  *ms = state;

	for (size_t i = 0; i < ms->nbuckets; i++)
	{
		mem_entry  *e = ms->buckets[i];

		while (e)
		{
			mem_entry  *next = e->next;

			storage_record_clear(&e->rec);
			free(e);
			e = next;
		}
	}
	free(ms->buckets);
	storage_memlog_free(ms->log);
	free(ms);
}

/* Pointer to the link pointing at the entry for id (or at the NULL end). */
static mem_entry **
mem_find(mem_state *ms, const char *id, uint64_t hash)
{
	mem_entry **link = &ms->buckets[hash & (ms->nbuckets - 1)];

	while (*link && !((*link)->hash == hash && strcmp((*link)->rec.id, id) == 0))
		link = &(*link)->next;
	return link;
}

static void
mem_grow(mem_state *ms)
{
	size_t		newn = ms->nbuckets * 2;
	mem_entry **nb = calloc(newn, sizeof(mem_entry *));

	if (nb == NULL)
		return;					/* keep the old table: slower, still correct */
	for (size_t i = 0; i < ms->nbuckets; i++)
	{
		mem_entry  *e = ms->buckets[i];

		while (e)
		{
			mem_entry  *next = e->next;

			e->next = nb[e->hash & (newn - 1)];
			nb[e->hash & (newn - 1)] = e;
			e = next;
		}
	}
	free(ms->buckets);
	ms->buckets = nb;
	ms->nbuckets = newn;
}

static void
mem_remove(mem_state *ms, mem_entry **link)
{
	mem_entry  *e = *link;

	*link = e->next;
	storage_record_clear(&e->rec);
	free(e);
	ms->nentries--;
}

static storage_status
mem_fetch(storage_client *h, void *state, const char *id, storage_record *out)
{
	mem_state  *ms = state;
	mem_entry  *e = *mem_find(ms, id, hash_id(id));

	if (e == NULL || !storage_is_live(e->rec.expires_at, storage_clock_now(h)))
		return storage_error(h, STORAGE_NOT_FOUND, "record \"%s\" not found", id);
	if (!storage_record_copy(out, &e->rec))
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	return STORAGE_OK;
}

/* An operation's changes are one transaction of the change feed. */
static void
mem_commit(storage_client *h, mem_state *ms)
{
	storage_memlog_commit(ms->log, storage_clock_now(h));
}

/* Log the removal of the entry at *link (live: a delete, else an expiry). */
static void
mem_log_removal(storage_client *h, mem_state *ms, mem_entry **link)
{
	storage_memlog_add(ms->log,
					   storage_is_live((*link)->rec.expires_at, storage_clock_now(h)) ?
					   STORAGE_WATCH_DELETE : STORAGE_WATCH_EXPIRE,
					   &(*link)->rec);
}

static storage_status
mem_put(storage_client *h, void *state, storage_record *rec, int64_t expect)
{
	mem_state  *ms = state;
	uint64_t	hash = hash_id(rec->id);
	mem_entry **link = mem_find(ms, rec->id, hash);
	int64_t		live_version = 0;
	int64_t		new_version;
	storage_record copy;
	storage_status st;

	if (*link && storage_is_live((*link)->rec.expires_at, storage_clock_now(h)))
		live_version = (*link)->rec.version;
	st = storage_save_rule(h, rec->id, live_version, expect, &new_version);
	if (st != STORAGE_OK)
		return st;

	if (!storage_record_copy(&copy, rec))
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	copy.version = new_version;
	if (*link)
	{
		if (live_version == 0)
			mem_log_removal(h, ms, link);	/* the expired record it replaces */
		storage_record_clear(&(*link)->rec);
		(*link)->rec = copy;
	}
	else
	{
		mem_entry  *e = calloc(1, sizeof(*e));

		if (e == NULL)
		{
			storage_record_clear(&copy);
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		}
		e->hash = hash;
		e->rec = copy;
		*link = e;
		if (++ms->nentries > ms->nbuckets)
			mem_grow(ms);
	}
	rec->version = new_version;
	return STORAGE_OK;
}

static storage_status
mem_save(storage_client *h, void *state, storage_record *rec, int64_t expect)
{
	mem_state  *ms = state;
	storage_status st = mem_put(h, state, rec, expect);

	if (st == STORAGE_OK)
	{
		storage_memlog_add(ms->log, STORAGE_WATCH_PUT, rec);
		mem_commit(h, ms);
	}
	return st;
}

static storage_status
mem_delete(storage_client *h, void *state, const char *id, bool *deleted)
{
	mem_state  *ms = state;
	mem_entry **link = mem_find(ms, id, hash_id(id));

	if (*link)
	{
		*deleted = storage_is_live((*link)->rec.expires_at, storage_clock_now(h));
		mem_log_removal(h, ms, link);
		mem_remove(ms, link);
		mem_commit(h, ms);
	}
	return STORAGE_OK;
}

static storage_status
mem_purge(storage_client *h, void *state, int64_t max_rows, int64_t *count)
{
	mem_state  *ms = state;
	int64_t		now = storage_clock_now(h);

	for (size_t i = 0; i < ms->nbuckets; i++)
	{
		mem_entry **link = &ms->buckets[i];

		while (*link)
		{
			if (max_rows > 0 && *count >= max_rows)
			{
				mem_commit(h, ms);
				return STORAGE_OK;
			}
			if (!storage_is_live((*link)->rec.expires_at, now))
			{
				storage_memlog_add(ms->log, STORAGE_WATCH_EXPIRE, &(*link)->rec);
				mem_remove(ms, link);
				(*count)++;
			}
			else
				link = &(*link)->next;
		}
	}
	mem_commit(h, ms);
	return STORAGE_OK;
}

static storage_status
mem_list(storage_client *h, void *state, const char *prefix,
		 storage_record **out, size_t *n)
{
	mem_state  *ms = state;
	int64_t		now = storage_clock_now(h);
	size_t		plen = strlen(prefix);
	storage_record *recs;

	recs = calloc(ms->nentries ? ms->nentries : 1, sizeof(storage_record));
	if (recs == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	*out = recs;
	for (size_t i = 0; i < ms->nbuckets; i++)
	{
		for (mem_entry *e = ms->buckets[i]; e; e = e->next)
		{
			if (strncmp(e->rec.id, prefix, plen) != 0 ||
				!storage_is_live(e->rec.expires_at, now))
				continue;
			if (!storage_record_copy(&recs[*n], &e->rec))
				return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
			(*n)++;
		}
	}
	qsort(recs, *n, sizeof(storage_record), storage_record_cmp);
	return STORAGE_OK;
}

/* ---- batch operations -------------------------------------------------- */

static storage_status
mem_fetch_many(storage_client *h, void *state, const char *const *ids,
			   size_t n, storage_record **out, size_t *n_out)
{
	mem_state  *ms = state;
	int64_t		now = storage_clock_now(h);

	if ((*out = calloc(n, sizeof(storage_record))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (size_t i = 0; i < n; i++)
	{
		mem_entry  *e = *mem_find(ms, ids[i], hash_id(ids[i]));

		if (e == NULL || !storage_is_live(e->rec.expires_at, now))
			continue;
		if (!storage_record_copy(&(*out)[*n_out], &e->rec))
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		(*n_out)++;
	}
	return STORAGE_OK;
}

/* Phase 1 of save_many: the new version of every record, or the first failure. */
static storage_status
mem_check_many(storage_client *h, mem_state *ms, storage_record *recs,
			   size_t n, const int64_t *expect)
{
	int64_t		now = storage_clock_now(h);

	for (size_t i = 0; i < n; i++)
	{
		mem_entry  *e = *mem_find(ms, recs[i].id, hash_id(recs[i].id));
		int64_t		live = e && storage_is_live(e->rec.expires_at, now) ? e->rec.version : 0;
		storage_status st = storage_save_rule(h, recs[i].id, live, expect[i],
											  &recs[i].version);

		if (st != STORAGE_OK)
			return st;
	}
	return STORAGE_OK;
}

/* Phase 2: one entry per record holding its copy (nothing changed yet). */
static mem_entry **
mem_prepare_many(const storage_record *recs, size_t n)
{
	mem_entry **entries = calloc(n, sizeof(mem_entry *));

	for (size_t i = 0; entries && i < n; i++)
	{
		if ((entries[i] = calloc(1, sizeof(mem_entry))) == NULL ||
			!storage_record_copy(&entries[i]->rec, &recs[i]))
		{
			for (size_t j = 0; j <= i; j++)
			{
				if (entries[j])
					storage_record_clear(&entries[j]->rec);
				free(entries[j]);
			}
			free(entries);
			return NULL;
		}
		entries[i]->rec.version = recs[i].version;
		entries[i]->hash = hash_id(recs[i].id);
	}
	return entries;
}

static storage_status
mem_save_many(storage_client *h, void *state, storage_record *recs, size_t n,
			  const int64_t *expect)
{
	mem_state  *ms = state;
	mem_entry **entries;
	storage_status st;

	if ((st = mem_check_many(h, ms, recs, n, expect)) != STORAGE_OK)
		return st;
	if ((entries = mem_prepare_many(recs, n)) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");

	/* phase 3: swap the entries in; nothing can fail any more */
	for (size_t i = 0; i < n; i++)
	{
		mem_entry **link = mem_find(ms, recs[i].id, entries[i]->hash);

		if (*link)
		{
			if (!storage_is_live((*link)->rec.expires_at, storage_clock_now(h)))
				mem_log_removal(h, ms, link);
			entries[i]->next = (*link)->next;
			storage_record_clear(&(*link)->rec);
			free(*link);
		}
		else
			ms->nentries++;
		*link = entries[i];
		storage_memlog_add(ms->log, STORAGE_WATCH_PUT, &entries[i]->rec);
	}
	free(entries);
	mem_commit(h, ms);
	while (ms->nentries > ms->nbuckets)
	{
		size_t		before = ms->nbuckets;

		mem_grow(ms);
		if (ms->nbuckets == before)
			break;				/* out of memory: slower, still correct */
	}
	return STORAGE_OK;
}

static storage_status
mem_delete_many(storage_client *h, void *state, const char *const *ids,
				size_t n, int64_t *count)
{
	mem_state  *ms = state;
	int64_t		now = storage_clock_now(h);

	for (size_t i = 0; i < n; i++)
	{
		mem_entry **link = mem_find(ms, ids[i], hash_id(ids[i]));

		if (*link == NULL)
			continue;
		if (storage_is_live((*link)->rec.expires_at, now))
			(*count)++;
		mem_log_removal(h, ms, link);
		mem_remove(ms, link);
	}
	mem_commit(h, ms);
	return STORAGE_OK;
}

/* ---- locks with fencing tokens (the counter lives as long as the store) -- */

static storage_status
mem_lock_acquire(storage_client *h, void *state, const char *id,
				 const char *token, int64_t ttl, int64_t expires_at,
				 int64_t *fence)
{
	mem_state  *ms = state;
	storage_record rec = {.id = (char *) id, .expires_at = expires_at};
	mem_entry **link;
	storage_status st;

	(void) ttl;
	if (ms->last_fence == INT64_MAX)
		return storage_error(h, STORAGE_BACKEND_ERROR, "lock fencing tokens exhausted");
	/* a create: ALREADY_EXISTS (retry) if a live record holds the lock */
	if ((st = mem_put(h, state, &rec, 0)) != STORAGE_OK)
		return st == STORAGE_VERSION_CONFLICT ?
			storage_error(h, STORAGE_ALREADY_EXISTS, "lock \"%s\" is held", token) : st;
	link = mem_find(ms, id, hash_id(id));
	(*link)->rec.version = *fence = ++ms->last_fence;
	storage_memlog_add(ms->log, STORAGE_WATCH_PUT, &(*link)->rec);
	mem_commit(h, ms);
	return STORAGE_OK;
}

/* The entry of the live lock id held with fence, or NULL. */
static mem_entry **
mem_held(storage_client *h, mem_state *ms, const char *id, int64_t fence)
{
	mem_entry **link = mem_find(ms, id, hash_id(id));

	if (*link && (*link)->rec.version == fence &&
		storage_is_live((*link)->rec.expires_at, storage_clock_now(h)))
		return link;
	return NULL;
}

static storage_status
mem_lock_release(storage_client *h, void *state, const char *id,
				 const char *token, int64_t fence)
{
	mem_entry **link = mem_held(h, state, id, fence);

	if (link == NULL)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "lock \"%s\" is not held with fence %lld",
							 token, (long long) fence);
	mem_log_removal(h, state, link);
	mem_remove(state, link);
	mem_commit(h, state);
	return STORAGE_OK;
}

static storage_status
mem_lock_extend(storage_client *h, void *state, const char *id,
				const char *token, int64_t fence, int64_t ttl,
				int64_t expires_at)
{
	mem_entry **link = mem_held(h, state, id, fence);

	(void) ttl;
	if (link == NULL)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "lock \"%s\" is not held with fence %lld",
							 token, (long long) fence);
	(*link)->rec.expires_at = expires_at;
	storage_memlog_add(((mem_state *) state)->log, STORAGE_WATCH_TOUCH, &(*link)->rec);
	mem_commit(h, state);
	return STORAGE_OK;
}

static storage_status
mem_watch(storage_client *h, void *state, const storage_watch_req *req)
{
	return storage_memlog_watch(h, ((mem_state *) state)->log, req);
}

const storage_backend_ops storage_memory_backend = {
	.name = "memory",
	.clock_is_server = false,
	.open = mem_open,
	.close = mem_close,
	.fetch = mem_fetch,
	.save = mem_save,
	.delete = mem_delete,
	.purge_expired = mem_purge,
	.list = mem_list,
	.fetch_many = mem_fetch_many,
	.save_many = mem_save_many,
	.delete_many = mem_delete_many,
	.lock_acquire = mem_lock_acquire,
	.lock_release = mem_lock_release,
	.lock_extend = mem_lock_extend,
	.watch = mem_watch,
};
