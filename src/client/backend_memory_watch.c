/*-------------------------------------------------------------------------
 *
 * backend_memory_watch.c
 *	  The memory backend's change feed: an in-process log of the store's
 *	  committed changes that storage_watch() reads, and the watch loop.
 *
 *	  Every operation of the memory backend runs under the handle's mutex,
 *	  so it is one transaction: its events are added while it runs and
 *	  committed together (one position, a counter of transactions that
 *	  changed something) or dropped if it fails.  The log is a ring of
 *	  copies, always on, so a watch started after the saves still sees them
 *	  (no race between starting a watcher thread and saving).  It is
 *	  bounded: at most MEMLOG_MAX_EVENTS events and MEMLOG_MAX_BYTES bytes
 *	  of ids, formats and values; the oldest are dropped first, and a watch
 *	  that needs a dropped one fails instead of skipping it silently.
 *
 *	  Watchers wait on a condition variable tied to the handle's mutex and
 *	  copy events out under it, then run the callback without it (the
 *	  callback may save through the same handle, and a dropped event must
 *	  not be freed under a running callback).
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "storage_backend.h"

#define MEMLOG_MAX_EVENTS	65536	/* a power of two */
#define MEMLOG_MAX_BYTES	(64 * 1024 * 1024)
#define MEMLOG_BATCH		256 /* events copied out per lock (whole transactions) */
#define MEMLOG_WAIT_MS		100 /* cancellation latency while idle */

typedef struct memlog_ev
{
	storage_watch_event ev;		/* owns id, format, data */
	size_t		bytes;
} memlog_ev;

struct storage_memlog
{
	pthread_cond_t cond;		/* broadcast at each commit */
	memlog_ev  *ring;			/* event seq s lives at ring[s & (cap - 1)] */
	size_t		cap;
	uint64_t	first;			/* seq of the oldest event kept */
	uint64_t	committed;		/* seq after the last committed event */
	uint64_t	end;			/* seq after the last event (open: committed..end) */
	size_t		bytes;
	uint64_t	position;		/* position of the last committed transaction */
	uint64_t	dropped;		/* position of the newest dropped event, or 0 */
	bool		open_dropped;	/* the open transaction lost events */
};

storage_memlog *
storage_memlog_new(void)
{
	storage_memlog *log = calloc(1, sizeof(*log));
	pthread_condattr_t attr;

	if (log == NULL)
		return NULL;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	if (pthread_cond_init(&log->cond, &attr) != 0)
	{
		free(log);
		log = NULL;
	}
	pthread_condattr_destroy(&attr);
	return log;
}

static void
ev_clear(memlog_ev *e)
{
	free((void *) e->ev.id);
	free((void *) e->ev.format);
	free((void *) e->ev.data);
	memset(e, 0, sizeof(*e));
}

static memlog_ev *
slot_of(storage_memlog *log, uint64_t seq)
{
	return &log->ring[seq & (log->cap - 1)];
}

void
storage_memlog_free(storage_memlog *log)
{
	if (log == NULL)
		return;
	for (uint64_t s = log->first; s < log->end; s++)
		ev_clear(slot_of(log, s));
	free(log->ring);
	pthread_cond_destroy(&log->cond);
	free(log);
}

/* Drop the oldest event, remembering which position became incomplete. */
static void
drop_oldest(storage_memlog *log)
{
	memlog_ev  *e = slot_of(log, log->first);

	if (log->first < log->committed)
		log->dropped = e->ev.position;
	else
		log->open_dropped = true;
	log->bytes -= e->bytes;
	ev_clear(e);
	log->first++;
}

/* Room for one more event: grow the ring up to its bound, then drop. */
static bool
make_room(storage_memlog *log)
{
	memlog_ev  *ring;
	size_t		newcap;

	if (log->end - log->first < log->cap)
		return true;
	if (log->cap == MEMLOG_MAX_EVENTS)
	{
		drop_oldest(log);
		return true;
	}
	newcap = log->cap ? log->cap * 2 : 64;
	if ((ring = calloc(newcap, sizeof(memlog_ev))) == NULL)
		return false;
	for (uint64_t s = log->first; s < log->end; s++)
		ring[s & (newcap - 1)] = *slot_of(log, s);
	free(log->ring);
	log->ring = ring;
	log->cap = newcap;
	return true;
}

bool
storage_memlog_add(storage_memlog *log, storage_watch_op op,
				   const storage_record *rec)
{
	memlog_ev	e = {0};

	e.ev.op = op;
	e.ev.id = strdup(rec->id);
	if (op == STORAGE_WATCH_PUT || op == STORAGE_WATCH_TOUCH)
	{
		e.ev.version = rec->version;
		e.ev.expires_at = rec->expires_at;
	}
	if (op == STORAGE_WATCH_PUT)
	{
		if (rec->format)
			e.ev.format = strdup(rec->format);
		if (rec->data)
		{
			unsigned char *data = malloc(rec->data_len ? rec->data_len : 1);

			if (data)
				memcpy(data, rec->data, rec->data_len);
			e.ev.data = data;
			e.ev.data_len = rec->data_len;
		}
	}
	if (e.ev.id == NULL || (rec->format && op == STORAGE_WATCH_PUT && !e.ev.format) ||
		(rec->data && op == STORAGE_WATCH_PUT && !e.ev.data) || !make_room(log))
	{
		/* the change is made: watchers must fail, not miss it silently */
		ev_clear(&e);
		log->open_dropped = true;
		return false;
	}
	e.bytes = strlen(rec->id) + (e.ev.format ? strlen(e.ev.format) : 0) + e.ev.data_len;
	*slot_of(log, log->end++) = e;
	log->bytes += e.bytes;
	while (log->bytes > MEMLOG_MAX_BYTES)
		drop_oldest(log);
	return true;
}

void
storage_memlog_commit(storage_memlog *log, int64_t now)
{
	uint64_t	start = log->committed > log->first ? log->committed : log->first;

	if (log->end == log->committed && !log->open_dropped)
		return;					/* nothing changed: no transaction */
	log->position++;
	for (uint64_t s = start; s < log->end; s++)
	{
		memlog_ev  *e = slot_of(log, s);

		e->ev.position = log->position;
		e->ev.committed_at = now;
		e->ev.last = s + 1 == log->end;
	}
	if (log->open_dropped)
		log->dropped = log->position;
	log->open_dropped = false;
	log->committed = log->end;
	pthread_cond_broadcast(&log->cond);
}

/* ---- the watch loop ------------------------------------------------------ */

static bool
ev_copy(storage_watch_event *dst, const storage_watch_event *src)
{
	*dst = *src;
	dst->id = strdup(src->id);
	dst->format = src->format ? strdup(src->format) : NULL;
	dst->data = NULL;
	if (src->data)
	{
		unsigned char *data = malloc(src->data_len ? src->data_len : 1);

		if (data)
			memcpy(data, src->data, src->data_len);
		dst->data = data;
	}
	if (dst->id == NULL || (src->format && !dst->format) || (src->data && !dst->data))
	{
		memlog_ev	e = {.ev = *dst};

		ev_clear(&e);
		return false;
	}
	return true;
}

typedef struct ev_batch
{
	storage_watch_event *ev;
	size_t		n;
	size_t		cap;
} ev_batch;

static void
batch_clear(ev_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
	{
		memlog_ev	e = {.ev = b->ev[i]};

		ev_clear(&e);
	}
	b->n = 0;
}

static bool
batch_add(ev_batch *b, const storage_watch_event *src)
{
	if (b->n == b->cap)
	{
		size_t		cap = b->cap ? b->cap * 2 : MEMLOG_BATCH;
		storage_watch_event *ev = realloc(b->ev, cap * sizeof(*ev));

		if (ev == NULL)
			return false;
		b->ev = ev;
		b->cap = cap;
	}
	if (!ev_copy(&b->ev[b->n], src))
		return false;
	b->ev[b->n++].last = false;
	return true;
}

/*
 * Copy the matching events of whole committed transactions from *seq on
 * (until about MEMLOG_BATCH events) into b; the last matching event of
 * each transaction gets last = true.
 */
static storage_status
copy_batch(storage_client *h, storage_memlog *log, const char *prefix,
		   uint64_t *seq, ev_batch *b)
{
	size_t		plen = strlen(prefix);
	size_t		txn_start = 0;

	while (*seq < log->committed && b->n < MEMLOG_BATCH)
	{
		memlog_ev  *e = slot_of(log, (*seq)++);

		if (strncmp(e->ev.id, prefix, plen) == 0 && !batch_add(b, &e->ev))
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		if (!e->ev.last)
			continue;
		if (b->n > txn_start)
			b->ev[b->n - 1].last = true;
		txn_start = b->n;
	}
	/* a transaction is never split: finish the one begun */
	while (*seq < log->committed && b->n > txn_start)
	{
		memlog_ev  *e = slot_of(log, (*seq)++);

		if (strncmp(e->ev.id, prefix, plen) == 0 && !batch_add(b, &e->ev))
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		if (e->ev.last)
		{
			b->ev[b->n - 1].last = true;
			break;
		}
	}
	return STORAGE_OK;
}

static void
wait_for_commit(storage_client *h, storage_memlog *log)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += MEMLOG_WAIT_MS * 1000000L;
	if (ts.tv_nsec >= 1000000000L)
	{
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&log->cond, storage_handle_mutex(h), &ts);
}

/* The first seq to read, or an error if from is older than what is kept. */
static storage_status
start_seq(storage_client *h, storage_memlog *log, uint64_t from, uint64_t *seq)
{
	if (from != 0 && from < log->dropped)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "position %llu is no longer kept by the memory store (it keeps the last %d events: watch from position %llu or later, or 0)",
							 (unsigned long long) from, MEMLOG_MAX_EVENTS,
							 (unsigned long long) log->dropped);
	*seq = log->first;
	while (*seq < log->committed &&
		   (slot_of(log, *seq)->ev.position <= from ||
			slot_of(log, *seq)->ev.position <= log->dropped))
		(*seq)++;
	return STORAGE_OK;
}

storage_status
storage_memlog_watch(storage_client *h, storage_memlog *log,
					 const storage_watch_req *req)
{
	pthread_mutex_t *mutex = storage_handle_mutex(h);
	ev_batch	b = {0};
	uint64_t	seq = 0;
	uint64_t	skip = req->from_position;	/* positions already delivered */
	bool		stop = false;
	storage_status st;

	pthread_mutex_lock(mutex);
	st = start_seq(h, log, req->from_position, &seq);
	while (st == STORAGE_OK && !stop && !storage_watch_cancelled(h))
	{
		if (seq < log->first)
		{
			st = storage_error(h, STORAGE_NOT_FOUND,
							   "the watch fell behind: the memory store dropped events after position %llu before they were delivered (it keeps the last %d events)",
							   (unsigned long long) skip, MEMLOG_MAX_EVENTS);
			break;
		}
		if (seq == log->committed)
		{
			wait_for_commit(h, log);
			continue;
		}
		st = copy_batch(h, log, req->prefix, &seq, &b);
		pthread_mutex_unlock(mutex);
		for (size_t i = 0; st == STORAGE_OK && i < b.n && !stop; i++)
		{
			if (b.ev[i].position > skip)
				stop = storage_watch_deliver(req, &b.ev[i]);
			if (b.ev[i].last)
				skip = b.ev[i].position;
		}
		batch_clear(&b);
		pthread_mutex_lock(mutex);
	}
	pthread_mutex_unlock(mutex);
	free(b.ev);
	return st;
}
