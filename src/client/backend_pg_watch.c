/*-------------------------------------------------------------------------
 *
 * backend_pg_watch.c
 *	  The postgresql backend's change feed: a logical replication
 *	  connection (replication=database, the handle's connection options)
 *	  streaming from a slot of the storage extension's output plugin, in
 *	  the wire format of the plugin (events, then a commit message 'C' per
 *	  transaction, see the README's change feed section).
 *
 *	  Confirmation is what makes delivery at-least-once: the flush position
 *	  of the standby status updates (which advances the slot) is the
 *	  position of the last transaction whose 'C' was reached after the
 *	  callback returned for its last event, or, with no transaction under
 *	  way, the server's keepalive position (an idle watch must not hold
 *	  back WAL).  A crash of either side therefore redelivers at most the
 *	  transactions after the confirmed one.  Since the 'C' comes after the
 *	  last event, each event is held back until the next message says
 *	  whether it was the last.
 *
 *	  A lost connection is retried with back-off and streaming restarts at
 *	  the confirmed position; events at or before it are dropped here too,
 *	  so a transaction is never delivered twice within one storage_watch
 *	  call, whatever position the server restarts from.
 *
 *-------------------------------------------------------------------------
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_pg.h"

#define WATCH_PLUGIN		"storage"
#define STATUS_INTERVAL_US	(10 * STORAGE_SEC)	/* unprompted status update */
#define BUSY_STATUS_US		STORAGE_SEC /* while the input never drains */
#define POLL_MS				100 /* cancellation latency */
#define BACKOFF_MIN_US		(100 * STORAGE_MSEC)
#define BACKOFF_MAX_US		(5 * STORAGE_SEC)
#define GIVE_UP_US			(60 * STORAGE_SEC)	/* without a (re)connection */

typedef struct pg_watch
{
	storage_client *h;
	const storage_watch_req *req;
	const char **keys;			/* the replication connection's options */
	const char **values;
	size_t		replication;	/* index of "replication" in them */
	PGconn	   *conn;
	uint64_t	confirmed;		/* what the slot may advance to */
	uint64_t	sent;			/* the flush position last sent */
	uint64_t	received;		/* the highest position seen */
	int64_t		last_status;	/* monotonic usec of the last update */
	bool		in_txn;			/* events seen, its 'C' not yet */
	uint32_t	txn_events;		/* events of the open transaction */
	/* the held-back event: data points into buf */
	bool		pending;
	storage_watch_event ev;
	char	   *buf;
	char	   *id;
	char	   *format;
} pg_watch;

static int64_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * STORAGE_SEC + ts.tv_nsec / 1000;
}

static void
put_be64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char) (v >> (56 - 8 * i));
}

/* ---- errors ---------------------------------------------------------------- */

/*
 * A failure of the replication connection: transient (a retry after
 * back-off may work) unless the server said otherwise.  An active slot
 * (55006) is transient too: after a crash of the consumer the server
 * takes a moment to notice its old connection is gone.
 */
static storage_status
conn_error(pg_watch *w, const char *what, PGresult *res)
{
	const char *code = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	char		buf[512];
	bool		retry;
	storage_status st;

	if (res && PQresultErrorMessage(res)[0])
	{
		snprintf(buf, sizeof(buf), "%s", PQresultErrorMessage(res));
		buf[strcspn(buf, "\n")] = '\0';
	}
	else
		storage_pg_conn_message(w->conn, buf, sizeof(buf));
	retry = code == NULL || storage_pg_sqlstate_retryable(code) ||
		strcmp(code, "55006") == 0 || PQstatus(w->conn) == CONNECTION_BAD;
	st = storage_error(w->h, STORAGE_BACKEND_ERROR, "storage_watch: %s: %s", what, buf);
	storage_error_detail(code ? code : (PQstatus(w->conn) == CONNECTION_BAD ? "08006" : ""),
						 retry);
	return st;
}

static storage_status
protocol_error(pg_watch *w, const char *what)
{
	storage_status st = storage_error(w->h, STORAGE_BACKEND_ERROR,
									  "storage_watch: malformed change feed message from the server: %s (is the server's storage extension of another release?)",
									  what);

	storage_error_detail("08P01", false);
	return st;
}

/* ---- standby status updates ------------------------------------------------ */

/* 'r': write = received, flush = apply = confirmed (advances the slot) */
static bool
send_status(pg_watch *w, bool reply_requested)
{
	char		msg[1 + 8 + 8 + 8 + 8 + 1];
	int64_t		now_pg = storage_real_now() - INT64_C(946684800000000);

	msg[0] = 'r';
	put_be64(msg + 1, w->received > w->confirmed ? w->received : w->confirmed);
	put_be64(msg + 9, w->confirmed);
	put_be64(msg + 17, w->confirmed);
	put_be64(msg + 25, (uint64_t) now_pg);
	msg[33] = reply_requested ? 1 : 0;
	if (PQputCopyData(w->conn, msg, sizeof(msg)) <= 0 || PQflush(w->conn) != 0)
		return false;
	w->sent = w->confirmed;
	w->last_status = mono_now();
	return true;
}

/* ---- the held-back event ---------------------------------------------------- */

static void
drop_pending(pg_watch *w)
{
	if (w->buf)
		PQfreemem(w->buf);
	free(w->id);
	free(w->format);
	w->buf = w->id = w->format = NULL;
	w->pending = false;
}

/* Deliver the held-back event (if any); true if the callback said stop. */
static bool
deliver_pending(pg_watch *w, bool last)
{
	bool		stop = false;

	if (w->pending)
	{
		w->ev.last = last;
		stop = storage_watch_deliver(w->req, &w->ev);
	}
	drop_pending(w);
	return stop;
}

/* ---- decoding ---------------------------------------------------------------- */

typedef struct reader
{
	const char *p;
	size_t		left;
	bool		ok;
} reader;

static uint64_t
rd_u(reader *r, size_t n)
{
	uint64_t	v = 0;

	if (r->left < n)
	{
		r->ok = false;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v = v << 8 | (unsigned char) r->p[i];
	r->p += n;
	r->left -= n;
	return v;
}

/* A length-prefixed string, copied with a terminating NUL. */
static char *
rd_str(reader *r, const char **raw, size_t *len)
{
	size_t		n = (size_t) rd_u(r, 4);
	char	   *s;

	if (!r->ok || n > r->left)
	{
		r->ok = false;
		return NULL;
	}
	*raw = r->p;
	*len = n;
	r->p += n;
	r->left -= n;
	if ((s = malloc(n + 1)) == NULL)
	{
		r->ok = false;
		return NULL;
	}
	memcpy(s, *raw, n);
	s[n] = '\0';
	return s;
}

static storage_watch_op
op_of(char c)
{
	switch (c)
	{
		case 'P':
			return STORAGE_WATCH_PUT;
		case 'T':
			return STORAGE_WATCH_TOUCH;
		case 'D':
			return STORAGE_WATCH_DELETE;
		case 'E':
			return STORAGE_WATCH_EXPIRE;
	}
	return 0;
}

/*
 * An event message: deliver the one held back (not the last of its
 * transaction, since another follows) and hold this one back instead.
 * buf is the whole CopyData buffer, msg/len the plugin's message in it.
 */
static storage_status
on_event(pg_watch *w, char *buf, const char *msg, size_t len, bool *stop)
{
	reader		r = {msg + 1, len - 1, true};
	storage_watch_event ev = {.op = op_of(msg[0])};
	uint64_t	flags;
	const char *raw;
	size_t		n;
	char	   *id,
			   *format = NULL;

	ev.position = rd_u(&r, 8);
	ev.committed_at = storage_pg_to_expires((int64_t) rd_u(&r, 8));
	ev.version = (int64_t) rd_u(&r, 8);
	ev.expires_at = (int64_t) rd_u(&r, 8);
	flags = rd_u(&r, 1);
	id = rd_str(&r, &raw, &n);
	if (r.ok && (n == 0 || strlen(id) != n))
		r.ok = false;			/* ids are 1.. bytes without NUL */
	if (r.ok && (flags & 2))
		format = rd_str(&r, &raw, &n);
	if (r.ok && (flags & 4))
	{
		n = (size_t) rd_u(&r, 4);
		if (r.ok && n <= r.left)
		{
			ev.data = (const unsigned char *) r.p;
			ev.data_len = n;
			r.left -= n;
		}
		else
			r.ok = false;
	}
	if (!r.ok || r.left != 0)
	{
		free(id);
		free(format);
		PQfreemem(buf);
		return protocol_error(w, "a truncated or oversized event");
	}
	ev.expires_at = (flags & 1) ? storage_pg_to_expires(ev.expires_at) : STORAGE_NEVER;
	ev.value_omitted = ev.op == STORAGE_WATCH_PUT && (flags & 8);
	if (ev.op == STORAGE_WATCH_DELETE || ev.op == STORAGE_WATCH_EXPIRE)
		ev.expires_at = 0;
	ev.id = id;
	ev.format = format;

	*stop = deliver_pending(w, false);
	w->in_txn = true;
	w->txn_events++;
	if (ev.position > w->received)
		w->received = ev.position;
	/* already confirmed (a restart from an older position): not again */
	if (ev.position <= w->confirmed || *stop)
	{
		free(id);
		free(format);
		PQfreemem(buf);
		return STORAGE_OK;
	}
	w->ev = ev;
	w->buf = buf;
	w->id = id;
	w->format = format;
	w->pending = true;
	return STORAGE_OK;
}

/* 'C': the held-back event was the last; the transaction is done. */
static storage_status
on_commit(pg_watch *w, const char *msg, size_t len, bool *stop)
{
	reader		r = {msg + 1, len - 1, true};
	uint64_t	lsn = rd_u(&r, 8);
	uint32_t	nevents;

	(void) rd_u(&r, 8);			/* committed_at: the events carry it */
	nevents = (uint32_t) rd_u(&r, 4);
	if (!r.ok || r.left != 0)
		return protocol_error(w, "a truncated commit message");
	if (nevents != w->txn_events)
		return protocol_error(w, "a commit message whose event count differs from the events received");
	*stop = deliver_pending(w, true);
	w->in_txn = false;
	w->txn_events = 0;
	if (lsn > w->received)
		w->received = lsn;
	if (lsn > w->confirmed)
		w->confirmed = lsn;
	return STORAGE_OK;
}

/* One CopyData message from the server (buf is freed or kept). */
static storage_status
on_copydata(pg_watch *w, char *buf, int len, bool *stop)
{
	if (buf[0] == 'k' && len >= 18)
	{
		uint64_t	wal_end = 0;

		for (int i = 1; i < 9; i++)
			wal_end = wal_end << 8 | (unsigned char) buf[i];
		/* between transactions, everything before wal_end was seen */
		if (!w->in_txn && wal_end > w->confirmed)
			w->confirmed = wal_end;
		if (buf[17] && !send_status(w, false))
		{
			PQfreemem(buf);
			return conn_error(w, "could not send a status update", NULL);
		}
		PQfreemem(buf);
		return STORAGE_OK;
	}
	if (buf[0] == 'w' && len > 25)
	{
		const char *msg = buf + 25;
		size_t		mlen = (size_t) len - 25;
		storage_status st;

		if (op_of(msg[0]) != 0)
			return on_event(w, buf, msg, mlen, stop);
		st = msg[0] == 'C' ? on_commit(w, msg, mlen, stop) :
			protocol_error(w, "an unknown message type");
		PQfreemem(buf);
		return st;
	}
	PQfreemem(buf);
	return protocol_error(w, "an unknown replication message");
}

/* ---- connecting -------------------------------------------------------------- */

/*
 * The replication connection's options: every option of the handle's live
 * connection, plus replication=database.
 */
static storage_status
build_conninfo(pg_watch *w, void *state)
{
	PQconninfoOption *opts;
	size_t		n = 0;

	pthread_mutex_lock(storage_handle_mutex(w->h));
	opts = PQconninfo(storage_pg_conn(state));
	pthread_mutex_unlock(storage_handle_mutex(w->h));
	if (opts == NULL)
		return storage_error(w->h, STORAGE_BACKEND_ERROR, "out of memory");
	for (PQconninfoOption *o = opts; o->keyword; o++)
		n++;
	w->keys = calloc(n + 3, sizeof(char *));
	w->values = calloc(n + 3, sizeof(char *));
	if (w->keys == NULL || w->values == NULL)
	{
		PQconninfoFree(opts);
		return storage_error(w->h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	n = 0;
	for (PQconninfoOption *o = opts; o->keyword; o++)
	{
		if (o->val == NULL || strcmp(o->keyword, "replication") == 0 ||
			strcmp(o->keyword, "fallback_application_name") == 0)
			continue;
		w->keys[n] = strdup(o->keyword);
		w->values[n] = strdup(o->val);
		if (w->keys[n] == NULL || w->values[n] == NULL)
		{
			PQconninfoFree(opts);
			return storage_error(w->h, STORAGE_BACKEND_ERROR, "out of memory");
		}
		n++;
	}
	PQconninfoFree(opts);
	w->replication = n;
	w->keys[n] = "replication";
	w->values[n++] = "database";
	w->keys[n] = "fallback_application_name";
	w->values[n++] = "storage_watch";
	return STORAGE_OK;
}

static void
free_conninfo(pg_watch *w)
{
	for (size_t i = 0; w->keys && w->keys[i]; i++)
	{
		if (strcmp(w->keys[i], "replication") == 0)
			break;				/* the two constant ones at the end */
		free((void *) w->keys[i]);
		free((void *) w->values[i]);
	}
	free(w->keys);
	free(w->values);
}

/* A simple-protocol command on the replication connection (res: caller's). */
static storage_status
run(pg_watch *w, const char *sql, ExecStatusType want, const char *what,
	PGresult **res)
{
	*res = PQexec(w->conn, sql);
	if (PQresultStatus(*res) == want)
		return STORAGE_OK;
	return conn_error(w, what, *res);
}

/*
 * A new slot is made by the extension's storage_watch_create(), on an
 * ordinary connection (it is SQL that writes): the watch is then recorded
 * with its prefix and owner, and a DBA sees its lag in storage_watch_status
 * like that of every other watch.
 */
static storage_status
create_watch(pg_watch *w)
{
	const char *params[2] = {w->req->slot, w->req->prefix};
	PGconn	   *conn;
	PGresult   *res;
	storage_status st = STORAGE_OK;

	w->values[w->replication] = "false";
	conn = PQconnectdbParams(w->keys, w->values, 0);
	w->values[w->replication] = "database";
	if (conn == NULL)
		return storage_error(w->h, STORAGE_BACKEND_ERROR, "out of memory");
	if (PQstatus(conn) != CONNECTION_OK)
	{
		PGconn	   *repl = w->conn;

		w->conn = conn;
		st = conn_error(w, "could not connect to create the watch", NULL);
		w->conn = repl;
		PQfinish(conn);
		return st;
	}
	res = PQexecParams(conn, "SELECT storage_watch_create($1, $2)", 2, NULL,
					   params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *code = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* created meanwhile by another consumer of the same name: use it */
		if (code == NULL || strcmp(code, "42710") != 0)
		{
			PGconn	   *repl = w->conn;

			w->conn = conn;
			st = conn_error(w, "could not create the watch with storage_watch_create()", res);
			w->conn = repl;
		}
	}
	PQclear(res);
	PQfinish(conn);
	return st;
}

/*
 * The slot must be a logical slot of the storage plugin in this database.
 * A missing one is created only when the watch has no position yet: with
 * one, a new slot would begin now and skip the changes since then.
 */
static storage_status
check_slot(pg_watch *w)
{
	char	   *lit = PQescapeLiteral(w->conn, w->req->slot, strlen(w->req->slot));
	char		sql[512];
	PGresult   *res;
	storage_status st;

	if (lit == NULL)
		return conn_error(w, "could not quote the slot name", NULL);
	snprintf(sql, sizeof(sql),
			 "SELECT plugin, slot_type, database OPERATOR(pg_catalog.=) pg_catalog.current_database() "
			 "FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) %s", lit);
	PQfreemem(lit);
	if ((st = run(w, sql, PGRES_TUPLES_OK, "could not look up the replication slot", &res)) != STORAGE_OK)
	{
		PQclear(res);
		return st;
	}
	if (PQntuples(res) == 1)
	{
		bool		ours = strcmp(PQgetvalue(res, 0, 1), "logical") == 0 &&
			strcmp(PQgetvalue(res, 0, 0), WATCH_PLUGIN) == 0;
		bool		here = strcmp(PQgetvalue(res, 0, 2), "t") == 0;

		PQclear(res);
		if (!ours)
			return storage_error(w->h, STORAGE_INVALID_ARGUMENT,
								 "replication slot \"%s\" is not a logical slot of the \"%s\" output plugin",
								 w->req->slot, WATCH_PLUGIN);
		if (!here)
			return storage_error(w->h, STORAGE_INVALID_ARGUMENT,
								 "replication slot \"%s\" belongs to another database",
								 w->req->slot);
		return STORAGE_OK;
	}
	PQclear(res);
	if (w->confirmed != 0)
		return storage_error(w->h, STORAGE_NOT_FOUND,
							 "replication slot \"%s\" does not exist: it cannot be created for a watch from position %llu, since a new slot begins now and would skip the changes after that position (watch from 0 to create it)",
							 w->req->slot, (unsigned long long) w->confirmed);
	return create_watch(w);
}

/* The prefix as a replication-protocol string literal ('' doubled). */
static char *
quote_prefix(const char *prefix)
{
	char	   *q = malloc(2 * strlen(prefix) + 3);
	char	   *o = q;

	if (q == NULL)
		return NULL;
	*o++ = '\'';
	for (const char *p = prefix; *p; p++)
	{
		if (*p == '\'')
			*o++ = '\'';
		*o++ = *p;
	}
	*o++ = '\'';
	*o = '\0';
	return q;
}

static storage_status
connect_and_start(pg_watch *w)
{
	char	   *prefix;
	char	   *sql;
	PGresult   *res;
	storage_status st;

	w->conn = PQconnectdbParams(w->keys, w->values, 0);
	if (w->conn == NULL)
		return storage_error(w->h, STORAGE_BACKEND_ERROR, "out of memory");
	if (PQstatus(w->conn) != CONNECTION_OK)
		return conn_error(w, "could not connect to the server", NULL);
	if ((st = check_slot(w)) != STORAGE_OK)
		return st;
	if ((prefix = quote_prefix(w->req->prefix)) == NULL ||
		(sql = malloc(strlen(prefix) + 256)) == NULL)
	{
		free(prefix);
		return storage_error(w->h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	sprintf(sql, "START_REPLICATION SLOT \"%s\" LOGICAL %X/%X (\"prefix\" %s, \"values\" 'true')",
			w->req->slot, (unsigned) (w->confirmed >> 32), (unsigned) w->confirmed, prefix);
	free(prefix);
	st = run(w, sql, PGRES_COPY_BOTH, "could not start streaming", &res);
	free(sql);
	PQclear(res);
	w->last_status = mono_now();
	w->sent = w->confirmed;
	return st;
}

/* ---- streaming ------------------------------------------------------------ */

/* Wait up to POLL_MS for input; false if the connection broke. */
static bool
wait_input(pg_watch *w)
{
	struct pollfd pfd = {.fd = PQsocket(w->conn), .events = POLLIN};

	if (pfd.fd < 0)
		return false;
	if (poll(&pfd, 1, POLL_MS) < 0)
		return true;			/* EINTR: look again */
	return PQconsumeInput(w->conn) != 0;
}

/*
 * Stream until the callback stops (STORAGE_OK, *done), a cancel (the same)
 * or a failure.  Confirmations go out when the input is drained, so a
 * burst of transactions costs one status update, at least every second
 * while it never drains, and before returning.
 */
static storage_status
stream(pg_watch *w, bool *done)
{
	for (;;)
	{
		char	   *buf = NULL;
		int			len;
		bool		stop = false;
		storage_status st;

		if (storage_watch_cancelled(w->h))
		{
			*done = true;
			send_status(w, false);
			return STORAGE_OK;
		}
		len = PQgetCopyData(w->conn, &buf, 1);
		if (len == 0)
		{
			if ((w->confirmed != w->sent ||
				 mono_now() - w->last_status >= STATUS_INTERVAL_US) &&
				!send_status(w, false))
				return conn_error(w, "could not send a status update", NULL);
			if (!wait_input(w))
				return conn_error(w, "connection lost", NULL);
			continue;
		}
		if (len == -1)
		{
			PGresult   *res = PQgetResult(w->conn);

			st = conn_error(w, "the server ended the replication stream", res);
			PQclear(res);
			storage_error_detail(storage_errcode(w->h), true);
			return st;
		}
		if (len < 0)
			return conn_error(w, "connection lost", NULL);
		if ((st = on_copydata(w, buf, len, &stop)) != STORAGE_OK)
			return st;
		/* a stream that never drains still confirms every second */
		if (w->confirmed != w->sent && mono_now() - w->last_status >= BUSY_STATUS_US &&
			!send_status(w, false))
			return conn_error(w, "could not send a status update", NULL);
		if (stop)
		{
			*done = true;
			send_status(w, false);
			return STORAGE_OK;
		}
	}
}

static void
disconnect(pg_watch *w)
{
	drop_pending(w);
	w->in_txn = false;
	w->txn_events = 0;
	PQfinish(w->conn);
	w->conn = NULL;
}

/* Sleep us in POLL_MS slices; false if cancelled meanwhile. */
static bool
backoff_sleep(storage_client *h, int64_t us)
{
	for (int64_t slept = 0; slept < us; slept += POLL_MS * STORAGE_MSEC)
	{
		struct timespec ts = {0, POLL_MS * 1000000L};

		if (storage_watch_cancelled(h))
			return false;
		nanosleep(&ts, NULL);
	}
	return !storage_watch_cancelled(h);
}

storage_status
storage_pg_watch(storage_client *h, void *state, const storage_watch_req *req)
{
	pg_watch	w = {.h = h, .req = req, .confirmed = req->from_position};
	int64_t		failing_since = 0;
	int64_t		backoff = BACKOFF_MIN_US;
	storage_status st;

	if (req->slot[0] == '\0')
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "the postgresql backend watches through a replication slot: name it with storage_set_watch_slot()");
	if ((st = build_conninfo(&w, state)) != STORAGE_OK)
	{
		free_conninfo(&w);
		return st;
	}
	while (!storage_watch_cancelled(h))
	{
		bool		done = false;

		st = connect_and_start(&w);
		if (st == STORAGE_OK)
		{
			failing_since = 0;
			backoff = BACKOFF_MIN_US;
			st = stream(&w, &done);
		}
		disconnect(&w);
		if (done || !storage_retryable(h))
			break;
		if (failing_since == 0)
			failing_since = mono_now();
		else if (mono_now() - failing_since > GIVE_UP_US)
			break;
		if (!backoff_sleep(h, backoff))
			break;
		backoff = backoff * 2 > BACKOFF_MAX_US ? BACKOFF_MAX_US : backoff * 2;
	}
	free_conninfo(&w);
	if (storage_watch_cancelled(h))
		return STORAGE_OK;
	return st;
}
