/*-------------------------------------------------------------------------
 *
 * backend_pg.c
 *	  The PostgreSQL backend: calls the storage extension's SQL functions
 *	  (storage_save, storage_fetch, storage_delete, storage_purge_expired,
 *	  storage_list and the batch functions storage_fetch_many,
 *	  storage_save_many, storage_delete_many) with binary parameters and
 *	  results.  Batch arguments are sent as binary arrays (no quoting or
 *	  escaping: any id round-trips).  The locks with fencing tokens call
 *	  storage_acquire_lock, storage_release_lock (token, fence) and
 *	  storage_extend_lock of release 1.1.  The bucket layer (pg_bucket) is
 *	  the extension's bucket and lock functions, one statement each: the
 *	  server's skip scan for get_keys, an atomic delete_bucket, the
 *	  server's clock for TTLs, the server's lock wait and wake-up.
 *
 *	  Two ways of sending a call, chosen by the connection string's own
 *	  option prepare=on|off (removed before the rest goes to libpq):
 *	  - on (default): named prepared statements, prepared once per
 *		connection (the batch and lock ones on first use, so a server with
 *		an older extension still serves the single-record calls);
 *	  - off: every call is one unnamed extended-protocol statement (Parse,
 *		Bind, Execute, Sync in one message sequence, PQexecParams), so no
 *		statement outlives its transaction.  A connection pooler in
 *		transaction mode hands each transaction another server
 *		connection, where a named statement prepared earlier does not
 *		exist (or one of another client does); off is the mode for it.
 *		Named statements meeting those symptoms (42P05, 26000) fail with a
 *		message that names the option.
 *
 *	  One PGconn per handle; the handle's mutex serializes its use.  Expiry
 *	  is judged by the server's clock (storage_now() in the extension), so
 *	  an injected client clock is refused.
 *
 *	  Lost connections: before each call the connection is polled
 *	  (PQconsumeInput) and, if the server has closed it or announced with
 *	  a FATAL message that it will (restart, pg_terminate_backend), it is
 *	  reset and the statements re-prepared before anything is sent.  If the
 *	  connection breaks during a call, a read (fetch, list) is retried once
 *	  on a new connection; a write reports STORAGE_BACKEND_ERROR (its
 *	  outcome is unknown, it is never retried) and the next call
 *	  reconnects.
 *
 *	  SQLSTATEs: SV001 -> VERSION_CONFLICT, SV002 -> NOT_FOUND, SV003 ->
 *	  ALREADY_EXISTS, SV004 -> COMPARE_FAILED, 22004/22023/22003 ->
 *	  INVALID_ARGUMENT, anything else -> BACKEND_ERROR with the server's
 *	  message.
 *
 *-------------------------------------------------------------------------
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "backend_pg.h"

/* type OIDs (pg_type.h is a server header) */
#define BOOLOID			16
#define BYTEAOID		17
#define INT8OID			20
#define TEXTOID			25
#define TIMESTAMPTZOID	1184
#define INTERVALOID		1186
#define BYTEAARRAYOID	1001
#define TEXTARRAYOID	1009
#define INT8ARRAYOID	1016
#define TIMESTAMPTZARRAYOID 1185

/* usec between the Unix epoch and the PostgreSQL epoch (2000-01-01) */
#define PG_EPOCH_OFFSET INT64_C(946684800000000)

typedef struct pg_stmt
{
	const char *name;
	const char *sql;
	int			nparams;
	Oid			types[5];
} pg_stmt;

enum
{
	STMT_SAVE, STMT_FETCH, STMT_DELETE, STMT_PURGE, STMT_LIST,
	NCORE_STMTS,				/* the above are prepared at connect time */
	STMT_FETCH_MANY = NCORE_STMTS, STMT_SAVE_MANY, STMT_DELETE_MANY,
	STMT_LOCK_ACQUIRE, STMT_LOCK_RELEASE, STMT_LOCK_EXTEND,
	STMT_B_CREATE, STMT_B_UPSERT, STMT_B_CAS, STMT_B_GET_VAL, STMT_B_GET_KEYS,
	STMT_B_GET_ITEMS, STMT_B_UPSERT_ITEMS, STMT_B_DELETE_KEY,
	STMT_B_DELETE_BUCKET, STMT_B_RELEASE_LOCK,
	NSTMTS
};

static const pg_stmt stmts[NSTMTS] = {
	[STMT_SAVE] = {"storage_client_save",
		"SELECT storage_save($1, $2, $3, $4, $5)",
	5, {TEXTOID, BYTEAOID, INT8OID, TIMESTAMPTZOID, TEXTOID}},
	[STMT_FETCH] = {"storage_client_fetch",
		"SELECT id, version, expires_at, format, data FROM storage_fetch($1)",
	1, {TEXTOID}},
	[STMT_DELETE] = {"storage_client_delete",
		"SELECT storage_delete($1)",
	1, {TEXTOID}},
	[STMT_PURGE] = {"storage_client_purge",
		"SELECT storage_purge_expired($1)",
	1, {INT8OID}},
	[STMT_LIST] = {"storage_client_list",
		"SELECT id, version, expires_at, format, data FROM storage_list($1)",
	1, {TEXTOID}},
	[STMT_FETCH_MANY] = {"storage_client_fetch_many",
		"SELECT id, version, expires_at, format, data FROM storage_fetch_many($1)",
	1, {TEXTARRAYOID}},
	[STMT_SAVE_MANY] = {"storage_client_save_many",
		"SELECT storage_save_many($1, $2, $3, $4, $5)",
	5, {TEXTARRAYOID, BYTEAARRAYOID, INT8ARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID}},
	[STMT_DELETE_MANY] = {"storage_client_delete_many",
		"SELECT storage_delete_many($1)",
	1, {TEXTARRAYOID}},
	/* release 1.1 of the extension: locks with fencing tokens */
	[STMT_LOCK_ACQUIRE] = {"storage_client_lock_acquire",
		"SELECT storage_acquire_lock($1, $2)",
	2, {TEXTOID, INTERVALOID}},
	[STMT_LOCK_RELEASE] = {"storage_client_lock_release",
		"SELECT storage_release_lock($1, $2)",
	2, {TEXTOID, INT8OID}},
	[STMT_LOCK_EXTEND] = {"storage_client_lock_extend",
		"SELECT storage_extend_lock($1, $2, $3)",
	3, {TEXTOID, INT8OID, INTERVALOID}},
	/* the bucket layer: the extension's bucket and lock functions */
	[STMT_B_CREATE] = {"storage_client_create_val",
		"SELECT storage_create_val($1, $2, $3, $4)",
	4, {TEXTARRAYOID, TEXTOID, BYTEAOID, INTERVALOID}},
	[STMT_B_UPSERT] = {"storage_client_upsert_val",
		"SELECT storage_upsert_val($1, $2, $3, $4)",
	4, {TEXTARRAYOID, TEXTOID, BYTEAOID, INTERVALOID}},
	[STMT_B_CAS] = {"storage_client_compare_and_swap_val",
		"SELECT storage_compare_and_swap_val($1, $2, $3, $4, $5)",
	5, {TEXTARRAYOID, TEXTOID, BYTEAOID, BYTEAOID, INTERVALOID}},
	[STMT_B_GET_VAL] = {"storage_client_get_val",
		"SELECT storage_get_val($1, $2)",
	2, {TEXTARRAYOID, TEXTOID}},
	[STMT_B_GET_KEYS] = {"storage_client_get_keys",
		"SELECT k FROM storage_get_keys($1) AS k",
	1, {TEXTARRAYOID}},
	[STMT_B_GET_ITEMS] = {"storage_client_get_items",
		"SELECT key, val, expires_at FROM storage_get_items($1)",
	1, {TEXTARRAYOID}},
	[STMT_B_UPSERT_ITEMS] = {"storage_client_upsert_items",
		"SELECT storage_upsert_items($1, $2, $3, $4)",
	4, {TEXTARRAYOID, TEXTARRAYOID, BYTEAARRAYOID, INTERVALOID}},
	[STMT_B_DELETE_KEY] = {"storage_client_delete_key",
		"SELECT storage_delete_key($1, $2)",
	2, {TEXTARRAYOID, TEXTOID}},
	[STMT_B_DELETE_BUCKET] = {"storage_client_delete_bucket",
		"SELECT storage_delete_bucket($1, $2)",
	2, {TEXTARRAYOID, TEXTOID}},
	[STMT_B_RELEASE_LOCK] = {"storage_client_release_lock",
		"SELECT storage_release_lock($1)",
	1, {TEXTOID}},
};

typedef struct pg_state
{
	PGconn	   *conn;
	bool		unnamed;		/* prepare=off: unnamed statements only */
	uint32_t	prepared;		/* bit i: stmts[i] exists on this connection */
	bool		doomed;			/* the server said FATAL while we were idle */
} pg_state;

/* What a named statement's failure says when a pooler is in between. */
#define POOLER_HINT \
	"a connection pooler in transaction mode (pgbouncer pool_mode = transaction) runs each transaction on another server connection: add prepare=off to the connection string"

/* ---- binary conversions ------------------------------------------------ */

static void
put_be64(char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (char) (v >> (56 - 8 * i));
}

static uint64_t
get_be64(const char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | (unsigned char) p[i];
	return v;
}

/* A timestamptz's value (usec since 2000) -> our expires_at. */
int64_t
storage_pg_to_expires(int64_t pg)
{
	int64_t		unix_us;

	if (pg == INT64_MAX)		/* 'infinity' */
		return STORAGE_NEVER;
	if (__builtin_add_overflow(pg, PG_EPOCH_OFFSET, &unix_us))
		return pg > 0 ? INT64_MAX : INT64_MIN + 1;
	return unix_us;
}

/* Binary timestamptz -> our expires_at. */
static int64_t
pg_to_expires(PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col) || PQgetlength(res, row, col) != 8)
		return STORAGE_NEVER;
	return storage_pg_to_expires((int64_t) get_be64(PQgetvalue(res, row, col)));
}

/* ---- errors ------------------------------------------------------------ */

static storage_status
map_sqlstate(const char *sqlstate)
{
	static const struct
	{
		const char *code;
		storage_status st;
	}			map[] = {
		{"SV001", STORAGE_VERSION_CONFLICT},
		{"SV002", STORAGE_NOT_FOUND},
		{"SV003", STORAGE_ALREADY_EXISTS},
		{"SV004", STORAGE_COMPARE_FAILED},
		{"22004", STORAGE_INVALID_ARGUMENT},
		{"22023", STORAGE_INVALID_ARGUMENT},
		{"22003", STORAGE_INVALID_ARGUMENT},
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(sqlstate, map[i].code) == 0)
			return map[i].st;
	return STORAGE_BACKEND_ERROR;
}

/*
 * SQLSTATEs after which the same call may succeed if repeated: connection
 * exceptions (08), transaction rollback (40: serialization failure,
 * deadlock), insufficient resources (53), operator intervention (57:
 * shutdown, crash, cancel) and lock not available (55P03).
 */
static bool
sqlstate_retryable(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "40", 2) == 0 ||
		strncmp(sqlstate, "53", 2) == 0 || strncmp(sqlstate, "57", 2) == 0 ||
		strcmp(sqlstate, "55P03") == 0;
}

/* Trim libpq's trailing newline for messages. */
static const char *
conn_message(PGconn *conn, char *buf, size_t size)
{
	size_t		len;

	snprintf(buf, size, "%s", PQerrorMessage(conn));
	len = strlen(buf);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
		buf[--len] = '\0';
	return buf;
}

/* ---- connection -------------------------------------------------------- */

static storage_status
prepare_stmt(storage_client *h, pg_state *ps, int i)
{
	PGresult   *res = PQprepare(ps->conn, stmts[i].name, stmts[i].sql,
								stmts[i].nparams, stmts[i].types);

	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		char		buf[512];
		const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
		const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

		if (sqlstate && strcmp(sqlstate, "42P05") == 0)
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "could not prepare %s: prepared statement \"%s\" already exists on this server connection (SQLSTATE 42P05): "
						  POOLER_HINT,
						  stmts[i].name, stmts[i].name);
		else
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "could not prepare %s: %s (is the storage extension installed and in search_path?)",
						  stmts[i].name,
						  msg ? msg : conn_message(ps->conn, buf, sizeof(buf)));
		PQclear(res);
		return STORAGE_BACKEND_ERROR;
	}
	PQclear(res);
	ps->prepared |= UINT32_C(1) << i;
	return STORAGE_OK;
}

/* The single-record statements (checks that the extension is there). */
static storage_status
prepare_core(storage_client *h, pg_state *ps)
{
	for (int i = 0; i < NCORE_STMTS; i++)
	{
		storage_status st = prepare_stmt(h, ps, i);

		if (st != STORAGE_OK)
			return st;
	}
	return STORAGE_OK;
}

/*
 * Make sure the connection is usable and the statements are prepared,
 * reconnecting if the server has closed the connection.  Nothing has been
 * sent for the caller's operation yet.
 */
static storage_status
ensure_ready(storage_client *h, pg_state *ps, int stmt)
{
	/*
	 * Notice a connection the server closed while we were idle (restart,
	 * pg_terminate_backend): its farewell message and the EOF are waiting
	 * on the socket.  Read and parse whatever is pending until the socket
	 * is quiet or the connection is known to be bad.
	 */
	for (int i = 0; i < 8 && PQstatus(ps->conn) == CONNECTION_OK; i++)
	{
		struct pollfd pfd = {.fd = PQsocket(ps->conn), .events = POLLIN};
		PGnotify   *notify;

		if (pfd.fd < 0 || poll(&pfd, 1, 0) <= 0)
			break;
		if (!PQconsumeInput(ps->conn))
			break;
		(void) PQisBusy(ps->conn);	/* parses pending async messages */
		while ((notify = PQnotifies(ps->conn)) != NULL)
			PQfreemem(notify);
	}
	if (PQstatus(ps->conn) != CONNECTION_OK || ps->doomed)
	{
		char		buf[512];

		ps->prepared = 0;
		ps->doomed = false;
		PQreset(ps->conn);
		if (PQstatus(ps->conn) != CONNECTION_OK)
		{
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "could not reconnect to the server: %s",
						  conn_message(ps->conn, buf, sizeof(buf)));
			storage_error_detail("08001", true);
			return STORAGE_BACKEND_ERROR;
		}
	}
	if (!ps->unnamed && !(ps->prepared & (UINT32_C(1) << stmt)))
		return prepare_stmt(h, ps, stmt);
	return STORAGE_OK;
}

/*
 * The error of a failed statement whose connection is still up: its
 * status mapped from the SQLSTATE, the server's message (res is cleared).
 */
static storage_status
result_error(storage_client *h, pg_state *ps, int stmt, PGresult *res)
{
	const char *sqlstate = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary;
	const char *detail;
	storage_status st;

	if (sqlstate == NULL)
	{
		char		buf[512];

		PQclear(res);
		return storage_error(h, STORAGE_BACKEND_ERROR, "%s failed: %s",
							 stmts[stmt].name,
							 conn_message(ps->conn, buf, sizeof(buf)));
	}
	if (!ps->unnamed && strcmp(sqlstate, "26000") == 0)
	{
		PQclear(res);
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "prepared statement \"%s\" does not exist on this server connection (SQLSTATE 26000): "
							 POOLER_HINT,
							 stmts[stmt].name);
	}
	primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	st = storage_error(h, map_sqlstate(sqlstate), "%s%s%s (SQLSTATE %s)",
					   primary ? primary : "error",
					   detail ? ": " : "", detail ? detail : "",
					   sqlstate);
	storage_error_detail(sqlstate, sqlstate_retryable(sqlstate));
	PQclear(res);
	return st;
}

/*
 * Run a statement: the prepared one, or with prepare=off the same SQL as
 * one unnamed statement (parsed, bound and executed in one transaction, so
 * nothing is left for the next user of a pooled server connection).  On
 * success *result holds a PGRES_TUPLES_OK result.  is_read allows one
 * transparent retry after a lost connection.
 */
static storage_status
run(storage_client *h, pg_state *ps, int stmt, const char *const *values,
	const int *lengths, bool is_read, PGresult **result)
{
	static const int formats[5] = {1, 1, 1, 1, 1};

	*result = NULL;
	for (int attempt = 0;; attempt++)
	{
		storage_status st = ensure_ready(h, ps, stmt);
		PGresult   *res;

		if (st != STORAGE_OK)
			return st;
		if (ps->unnamed)
			res = PQexecParams(ps->conn, stmts[stmt].sql, stmts[stmt].nparams,
							   stmts[stmt].types, values, lengths, formats, 1);
		else
			res = PQexecPrepared(ps->conn, stmts[stmt].name, stmts[stmt].nparams,
								 values, lengths, formats, 1);
		if (res && PQresultStatus(res) == PGRES_TUPLES_OK)
		{
			*result = res;
			return STORAGE_OK;
		}
		if (PQstatus(ps->conn) != CONNECTION_OK)
		{
			char		buf[512];

			PQclear(res);
			ps->prepared = 0;
			if (is_read && attempt == 0)
				continue;
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "connection to the server lost during %s%s: %s",
						  stmts[stmt].name,
						  is_read ? "" : " (the write may or may not have committed)",
						  conn_message(ps->conn, buf, sizeof(buf)));
			storage_error_detail("08006", true);
			if (!is_read)
				storage_error_outcome(STORAGE_OUTCOME_UNKNOWN);
			return STORAGE_BACKEND_ERROR;
		}
		return result_error(h, ps, stmt, res);
	}
}

/* Copy row `row` of a fetch/list result into rec. */
static bool
row_to_record(PGresult *res, int row, storage_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	if ((rec->id = strdup(PQgetvalue(res, row, 0))) == NULL)
		return false;
	rec->version = (int64_t) get_be64(PQgetvalue(res, row, 1));
	rec->expires_at = pg_to_expires(res, row, 2);
	if (!PQgetisnull(res, row, 3) &&
		(rec->format = strdup(PQgetvalue(res, row, 3))) == NULL)
		goto oom;
	if (!PQgetisnull(res, row, 4))
	{
		size_t		len = (size_t) PQgetlength(res, row, 4);
		unsigned char *data = malloc(len ? len : 1);

		if (data == NULL)
			goto oom;
		memcpy(data, PQgetvalue(res, row, 4), len);
		rec->data = data;
		rec->data_len = len;
	}
	return true;
oom:
	storage_record_clear(rec);
	return false;
}

static bool
check_row_shape(PGresult *res)
{
	return PQnfields(res) == 5 && PQftype(res, 1) == INT8OID &&
		PQftype(res, 2) == TIMESTAMPTZOID && PQftype(res, 4) == BYTEAOID;
}

/* ---- operations -------------------------------------------------------- */

/*
 * Notices are not printed.  An error the server sends while we are idle
 * arrives here too: a FATAL one (e.g. 57P01 on shutdown or
 * pg_terminate_backend) means the server is closing this connection, so
 * the next call reconnects before sending anything, even if the socket's
 * EOF has not arrived yet.
 */
static void
notice_receiver(void *arg, const PGresult *res)
{
	pg_state   *ps = arg;
	const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);

	if (severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
		ps->doomed = true;
}

/* ---- the connection string's own option -------------------------------- */

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Takes a value of prepare=: on/off (also true/false, 1/0, yes/no). */
static storage_status
set_prepare(storage_client *h, pg_state *ps, const char *v, size_t len)
{
	static const char *const on[] = {"on", "true", "yes", "1"};
	static const char *const off[] = {"off", "false", "no", "0"};

	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++)
	{
		if (len == strlen(on[i]) && strncmp(v, on[i], len) == 0)
		{
			ps->unnamed = false;
			return STORAGE_OK;
		}
		if (len == strlen(off[i]) && strncmp(v, off[i], len) == 0)
		{
			ps->unnamed = true;
			return STORAGE_OK;
		}
	}
	return storage_error(h, STORAGE_INVALID_ARGUMENT,
						 "invalid value \"%.*s\" for the connection option prepare (use prepare=on or prepare=off)",
						 (int) (len > 64 ? 64 : len), v);
}

/*
 * URI form: postgresql://...?a=b&prepare=off&c=d.  The parameter is removed
 * from the query in place (libpq refuses parameters it does not know).
 */
static storage_status
strip_uri_option(storage_client *h, pg_state *ps, char *uri)
{
	char	   *q = strchr(uri, '?');
	char	   *p;
	char	   *out;

	if (q == NULL)
		return STORAGE_OK;
	p = q + 1;
	out = q + 1;
	while (*p)
	{
		size_t		len = strcspn(p, "&");
		char	   *next = p + len + (p[len] == '&');

		if (len >= 8 && strncmp(p, "prepare=", 8) == 0)
		{
			storage_status st = set_prepare(h, ps, p + 8, len - 8);

			if (st != STORAGE_OK)
				return st;
		}
		else if (len > 0)
		{
			if (out > q + 1)
				*out++ = '&';
			memmove(out, p, len);
			out += len;
		}
		p = next;
	}
	if (out == q + 1)
		out = q;				/* nothing left: drop the '?' */
	*out = '\0';
	return STORAGE_OK;
}

/*
 * key=value form, with libpq's rules: spaces around '=', values in single
 * quotes with backslash escapes.  The pair prepare=... is removed from the
 * string in place; anything malformed is left for libpq to report.
 */
static storage_status
strip_conninfo_option(storage_client *h, pg_state *ps, char *conninfo)
{
	char	   *p = conninfo;
	char	   *out = conninfo;

	while (*p)
	{
		char	   *start = p;
		char	   *key;
		size_t		keylen;
		char		value[16];
		size_t		vlen = 0;
		bool		toolong = false;

		while (is_space(*p))
			p++;
		if (*p == '\0')
			break;
		start = p;
		key = p;
		while (*p && *p != '=' && !is_space(*p))
			p++;
		keylen = (size_t) (p - key);
		while (is_space(*p))
			p++;
		if (*p != '=')
			return STORAGE_OK;	/* malformed: libpq will say so */
		p++;
		while (is_space(*p))
			p++;
		if (*p == '\'')
		{
			for (p++; *p != '\''; p++)
			{
				if (*p == '\\' && p[1])
					p++;
				if (*p == '\0')
					return STORAGE_OK;	/* unterminated quote */
				if (vlen < sizeof(value))
					value[vlen++] = *p;
				else
					toolong = true;
			}
			p++;
		}
		else
		{
			for (; *p && !is_space(*p); p++)
			{
				if (*p == '\\' && p[1])
					p++;
				if (vlen < sizeof(value))
					value[vlen++] = *p;
				else
					toolong = true;
			}
		}
		if (keylen == 7 && strncmp(key, "prepare", 7) == 0)
		{
			storage_status st = set_prepare(h, ps, value, toolong ? sizeof(value) : vlen);

			if (st != STORAGE_OK)
				return st;
		}
		else
		{
			if (out > conninfo)
				*out++ = ' ';
			memmove(out, start, (size_t) (p - start));
			out += p - start;
		}
	}
	*out = '\0';
	return STORAGE_OK;
}

/* Reads and removes prepare=on|off from spec; *conninfo is malloc'd. */
static storage_status
take_options(storage_client *h, pg_state *ps, const char *spec, char **conninfo)
{
	storage_status st;

	if ((*conninfo = strdup(spec)) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	if (strncmp(spec, "postgresql://", 13) == 0 || strncmp(spec, "postgres://", 11) == 0)
		st = strip_uri_option(h, ps, *conninfo);
	else if (strchr(spec, '=') != NULL)
		st = strip_conninfo_option(h, ps, *conninfo);
	else
		st = STORAGE_OK;		/* a bare database name */
	if (st != STORAGE_OK)
	{
		free(*conninfo);
		*conninfo = NULL;
	}
	return st;
}

/*
 * prepare=off has nothing to prepare at connect time; check instead, the
 * same way (search_path included), that the extension's functions exist.
 */
static storage_status
check_extension(storage_client *h, pg_state *ps)
{
	PGresult   *res = PQexecParams(ps->conn,
								   "SELECT pg_catalog.to_regprocedure('storage_fetch(text)') IS NOT NULL",
								   0, NULL, NULL, NULL, NULL, 0);
	storage_status st = STORAGE_OK;
	char		buf[512];

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "could not check for the storage extension: %s",
						   conn_message(ps->conn, buf, sizeof(buf)));
	else if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "function storage_fetch(text) does not exist (is the storage extension installed and in search_path?)");
	PQclear(res);
	return st;
}

static storage_status
pg_open(storage_client *h, const char *spec, void **state)
{
	static const char *const keys[] = {"dbname", "fallback_application_name", NULL};
	const char *values[] = {NULL, "storage_client", NULL};
	char	   *conninfo;
	pg_state   *ps;
	storage_status st;

	ps = calloc(1, sizeof(*ps));
	if (ps == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	if ((st = take_options(h, ps, spec, &conninfo)) != STORAGE_OK)
	{
		free(ps);
		return st;
	}
	values[0] = conninfo;
	ps->conn = PQconnectdbParams(keys, values, 1);
	free(conninfo);
	if (ps->conn == NULL || PQstatus(ps->conn) != CONNECTION_OK)
	{
		char		buf[512];

		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "could not connect to the server: %s",
						   ps->conn ? conn_message(ps->conn, buf, sizeof(buf)) : "out of memory");
		/* libpq has no SQLSTATE for a refused connection: 08001's meaning */
		storage_error_detail("08001", true);
		PQfinish(ps->conn);
		free(ps);
		return st;
	}
	/* server notices (and an idle connection's FATAL) must not go to stderr */
	PQsetNoticeReceiver(ps->conn, notice_receiver, ps);
	st = ps->unnamed ? check_extension(h, ps) : prepare_core(h, ps);
	if (st != STORAGE_OK)
	{
		PQfinish(ps->conn);
		free(ps);
		return st;
	}
	*state = ps;
	return STORAGE_OK;
}

static void
pg_close(void *state)
{
	pg_state   *ps = state;

	PQfinish(ps->conn);
	free(ps);
}

/*
 * The single-record calls in two halves, parameters and result, shared by
 * the calls here and the pipeline (pipeline_pg.c).
 */
static void
id_call(storage_pg_call *c, int stmt, const char *id)
{
	c->stmt = stmt;
	c->values[0] = id;
	c->lengths[0] = (int) strlen(id);
}

static storage_status
save_call(storage_client *h, storage_pg_call *c, const storage_record *rec,
		  int64_t expect)
{
	int64_t		pg_expires;

	if (rec->data_len > (size_t) INT32_MAX)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "data longer than %d bytes", INT32_MAX);
	c->stmt = STMT_SAVE;
	c->values[0] = rec->id;
	c->lengths[0] = (int) strlen(rec->id);
	/* NULL data stays NULL; empty data must not look NULL to libpq */
	c->values[1] = rec->data ? (const char *) rec->data : NULL;
	c->lengths[1] = (int) rec->data_len;
	put_be64(c->buf[0], (uint64_t) expect);
	c->values[2] = c->buf[0];
	c->lengths[2] = 8;
	c->values[3] = NULL;
	c->lengths[3] = 0;
	if (rec->expires_at != STORAGE_NEVER)
	{
		if (__builtin_sub_overflow(rec->expires_at, PG_EPOCH_OFFSET, &pg_expires))
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "expires_at out of range");
		put_be64(c->buf[1], (uint64_t) pg_expires);
		c->values[3] = c->buf[1];
		c->lengths[3] = 8;
	}
	c->values[4] = rec->format;
	c->lengths[4] = rec->format ? (int) strlen(rec->format) : 0;
	return STORAGE_OK;
}

/* The results of fetch, save and delete (each clears res). */
static storage_status
fetch_result(storage_client *h, PGresult *res, const char *id,
			 storage_record *out)
{
	storage_status st = STORAGE_OK;

	if (!check_row_shape(res))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result shape from storage_fetch");
	else if (PQntuples(res) == 0)
		st = storage_error(h, STORAGE_NOT_FOUND, "record \"%s\" not found", id);
	else if (!row_to_record(res, 0, out))
		st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	PQclear(res);
	return st;
}

static storage_status
save_result(storage_client *h, PGresult *res, int64_t *version)
{
	storage_status st = STORAGE_OK;

	if (PQntuples(res) != 1 || PQftype(res, 0) != INT8OID ||
		PQgetisnull(res, 0, 0))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result from storage_save");
	else
		*version = (int64_t) get_be64(PQgetvalue(res, 0, 0));
	PQclear(res);
	return st;
}

static storage_status
delete_result(storage_client *h, PGresult *res, bool *deleted)
{
	storage_status st = STORAGE_OK;

	if (PQntuples(res) != 1 || PQftype(res, 0) != BOOLOID ||
		PQgetisnull(res, 0, 0))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result from storage_delete");
	else
		*deleted = PQgetvalue(res, 0, 0)[0] != 0;
	PQclear(res);
	return st;
}

static storage_status
pg_fetch(storage_client *h, void *state, const char *id, storage_record *out)
{
	storage_pg_call c;
	PGresult   *res;
	storage_status st;

	id_call(&c, STMT_FETCH, id);
	if ((st = run(h, state, c.stmt, c.values, c.lengths, true, &res)) != STORAGE_OK)
		return st;
	return fetch_result(h, res, id, out);
}

static storage_status
pg_save(storage_client *h, void *state, storage_record *rec, int64_t expect)
{
	storage_pg_call c;
	PGresult   *res;
	storage_status st;

	if ((st = save_call(h, &c, rec, expect)) != STORAGE_OK ||
		(st = run(h, state, c.stmt, c.values, c.lengths, false, &res)) != STORAGE_OK)
		return st;
	return save_result(h, res, &rec->version);
}

static storage_status
pg_delete(storage_client *h, void *state, const char *id, bool *deleted)
{
	storage_pg_call c;
	PGresult   *res;
	storage_status st;

	id_call(&c, STMT_DELETE, id);
	if ((st = run(h, state, c.stmt, c.values, c.lengths, false, &res)) != STORAGE_OK)
		return st;
	return delete_result(h, res, deleted);
}

/* ---- the pipeline's hooks (backend_pg.h) --------------------------------- */

storage_status
storage_pg_pipeline_ready(storage_client *h, void *state, PGconn **conn)
{
	pg_state   *ps = state;
	static const int used[] = {STMT_FETCH, STMT_SAVE, STMT_DELETE};
	storage_status st = STORAGE_OK;

	for (size_t i = 0; st == STORAGE_OK && i < sizeof(used) / sizeof(used[0]); i++)
		st = ensure_ready(h, ps, used[i]);
	*conn = ps->conn;
	return st;
}

storage_status
storage_pg_call_of(storage_client *h, const storage_op *op, storage_pg_call *c)
{
	memset(c, 0, sizeof(*c));
	switch (op->kind)
	{
		case STORAGE_OP_FETCH:
			id_call(c, STMT_FETCH, op->id);
			return STORAGE_OK;
		case STORAGE_OP_DELETE:
			id_call(c, STMT_DELETE, op->id);
			return STORAGE_OK;
		case STORAGE_OP_SAVE:
		default:
			return save_call(h, c, &op->rec, op->expect_version);
	}
}

bool
storage_pg_send(void *state, const storage_pg_call *c)
{
	static const int formats[5] = {1, 1, 1, 1, 1};
	pg_state   *ps = state;
	const pg_stmt *s = &stmts[c->stmt];

	if (ps->unnamed)
		return PQsendQueryParams(ps->conn, s->sql, s->nparams, s->types,
								 c->values, c->lengths, formats, 1) == 1;
	return PQsendQueryPrepared(ps->conn, s->name, s->nparams, c->values,
							   c->lengths, formats, 1) == 1;
}

storage_status
storage_pg_call_result(storage_client *h, void *state, storage_op *op,
					   int stmt, PGresult *res)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		return result_error(h, state, stmt, res);
	switch (op->kind)
	{
		case STORAGE_OP_FETCH:
			return fetch_result(h, res, op->id, &op->record);
		case STORAGE_OP_DELETE:
			return delete_result(h, res, &op->deleted);
		case STORAGE_OP_SAVE:
		default:
			return save_result(h, res, &op->version);
	}
}

void
storage_pg_connection_lost(void *state)
{
	((pg_state *) state)->prepared = 0;
}

static storage_status
pg_purge(storage_client *h, void *state, int64_t max_rows, int64_t *count)
{
	char		max_buf[8];
	const char *values[1] = {NULL};
	int			lengths[1] = {0};
	PGresult   *res;
	storage_status st;

	if (max_rows > 0)
	{
		put_be64(max_buf, (uint64_t) max_rows);
		values[0] = max_buf;
		lengths[0] = 8;
	}
	if ((st = run(h, state, STMT_PURGE, values, lengths, false, &res)) != STORAGE_OK)
		return st;
	if (PQntuples(res) != 1 || PQftype(res, 0) != INT8OID ||
		PQgetisnull(res, 0, 0))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result from storage_purge_expired");
	else
		*count = (int64_t) get_be64(PQgetvalue(res, 0, 0));
	PQclear(res);
	return st;
}

static storage_status
pg_list(storage_client *h, void *state, const char *prefix,
		storage_record **out, size_t *n)
{
	const char *values[1] = {prefix};
	int			lengths[1] = {(int) strlen(prefix)};
	PGresult   *res;
	storage_status st;
	int			ntuples;

	if ((st = run(h, state, STMT_LIST, values, lengths, true, &res)) != STORAGE_OK)
		return st;
	if (!check_row_shape(res))
	{
		PQclear(res);
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "unexpected result shape from storage_list");
	}
	ntuples = PQntuples(res);
	*out = calloc(ntuples ? (size_t) ntuples : 1, sizeof(storage_record));
	if (*out == NULL)
		st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (int i = 0; st == STORAGE_OK && i < ntuples; i++)
	{
		if (!row_to_record(res, i, &(*out)[i]))
			st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		else
			(*n)++;
	}
	PQclear(res);
	return st;
}

/* ---- batch operations: binary array parameters ------------------------- */

/* A one-dimensional array in binary send format, being built. */
typedef struct pg_array
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	bool		failed;			/* out of memory */
} pg_array;

static void
arr_put(pg_array *a, const void *p, size_t len)
{
	if (a->failed)
		return;
	if (a->len + len > a->cap)
	{
		size_t		ncap = a->cap ? a->cap : 256;
		char	   *nbuf;

		while (ncap < a->len + len)
			ncap *= 2;
		if ((nbuf = realloc(a->buf, ncap)) == NULL)
		{
			a->failed = true;
			return;
		}
		a->buf = nbuf;
		a->cap = ncap;
	}
	memcpy(a->buf + a->len, p, len);
	a->len += len;
}

static void
arr_put32(pg_array *a, uint32_t v)
{
	char		b[4] = {(char) (v >> 24), (char) (v >> 16), (char) (v >> 8), (char) v};

	arr_put(a, b, 4);
}

/* Header: 1 dimension of n elements (lower bound 1), no null bitmap flag. */
static void
arr_begin(pg_array *a, Oid elemtype, size_t n)
{
	arr_put32(a, 1);
	arr_put32(a, 0);
	arr_put32(a, elemtype);
	arr_put32(a, (uint32_t) n);
	arr_put32(a, 1);
}

/* One element; p == NULL is an SQL NULL. */
static void
arr_elem(pg_array *a, const void *p, size_t len)
{
	arr_put32(a, p ? (uint32_t) len : UINT32_C(0xFFFFFFFF));
	if (p)
		arr_put(a, p, len);
}

static void
arr_elem64(pg_array *a, int64_t v)
{
	char		b[8];

	put_be64(b, (uint64_t) v);
	arr_elem(a, b, 8);
}

/* Make the array parameter i of values/lengths; false if too large or OOM. */
static bool
arr_param(pg_array *a, const char **values, int *lengths, int i)
{
	if (a->failed || a->len > (size_t) INT32_MAX)
		return false;
	values[i] = a->buf;
	lengths[i] = (int) a->len;
	return true;
}

static pg_array
id_array(const char *const *ids, size_t n)
{
	pg_array	a = {0};

	arr_begin(&a, TEXTOID, n);
	for (size_t i = 0; i < n; i++)
		arr_elem(&a, ids[i], strlen(ids[i]));
	return a;
}

static storage_status
pg_fetch_many(storage_client *h, void *state, const char *const *ids,
			  size_t n, storage_record **out, size_t *n_out)
{
	pg_array	a = id_array(ids, n);
	const char *values[1];
	int			lengths[1];
	PGresult   *res;
	storage_status st;
	int			ntuples;

	if (!arr_param(&a, values, lengths, 0))
		st = storage_error(h, STORAGE_INVALID_ARGUMENT, "batch too large");
	else
		st = run(h, state, STMT_FETCH_MANY, values, lengths, true, &res);
	free(a.buf);
	if (st != STORAGE_OK)
		return st;
	ntuples = PQntuples(res);
	if (!check_row_shape(res) || (size_t) ntuples > n)
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result from storage_fetch_many");
	else if ((*out = calloc(ntuples ? (size_t) ntuples : 1, sizeof(storage_record))) == NULL)
		st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	for (int i = 0; st == STORAGE_OK && i < ntuples; i++)
	{
		if (!row_to_record(res, i, &(*out)[i]))
			st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		else
			(*n_out)++;
	}
	PQclear(res);
	return st;
}

/* The five array parameters of storage_save_many. */
static storage_status
save_many_arrays(storage_client *h, const storage_record *recs, size_t n,
				 const int64_t *expect, pg_array *arrs)
{
	static const Oid types[5] = {TEXTOID, BYTEAOID, INT8OID, TIMESTAMPTZOID, TEXTOID};

	for (int c = 0; c < 5; c++)
		arr_begin(&arrs[c], types[c], n);
	for (size_t i = 0; i < n; i++)
	{
		const storage_record *r = &recs[i];
		int64_t		pg_expires = 0;

		if (r->data_len > (size_t) INT32_MAX)
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "record \"%s\": data longer than %d bytes",
								 r->id, INT32_MAX);
		if (r->expires_at != STORAGE_NEVER &&
			__builtin_sub_overflow(r->expires_at, PG_EPOCH_OFFSET, &pg_expires))
			return storage_error(h, STORAGE_INVALID_ARGUMENT,
								 "record \"%s\": expires_at out of range", r->id);
		arr_elem(&arrs[0], r->id, strlen(r->id));
		/* NULL data stays NULL; empty data is an empty element */
		arr_elem(&arrs[1], r->data ? r->data : NULL, r->data_len);
		arr_elem64(&arrs[2], expect[i]);
		if (r->expires_at == STORAGE_NEVER)
			arr_elem(&arrs[3], NULL, 0);
		else
			arr_elem64(&arrs[3], pg_expires);
		arr_elem(&arrs[4], r->format, r->format ? strlen(r->format) : 0);
	}
	return STORAGE_OK;
}

/* The bigint[] result of storage_save_many into recs[i].version. */
static bool
read_versions(PGresult *res, storage_record *recs, size_t n)
{
	const char *p;
	size_t		len;

	if (PQntuples(res) != 1 || PQftype(res, 0) != INT8ARRAYOID ||
		PQgetisnull(res, 0, 0))
		return false;
	p = PQgetvalue(res, 0, 0);
	len = (size_t) PQgetlength(res, 0, 0);
	/* ndim 1, flags, element type, dim n, lower bound, n x (len 8, value) */
	if (len != 20 + 12 * n || get_be64(p) >> 32 != 1 ||
		(get_be64(p + 8) >> 32) != INT8OID || (get_be64(p + 8) & 0xFFFFFFFF) != n)
		return false;
	p += 20;
	for (size_t i = 0; i < n; i++, p += 12)
	{
		if (get_be64(p) >> 32 != 8)
			return false;
		recs[i].version = (int64_t) get_be64(p + 4);
	}
	return true;
}

static storage_status
pg_save_many(storage_client *h, void *state, storage_record *recs, size_t n,
			 const int64_t *expect)
{
	pg_array	arrs[5] = {{0}};
	const char *values[5];
	int			lengths[5];
	PGresult   *res = NULL;
	storage_status st;

	st = save_many_arrays(h, recs, n, expect, arrs);
	for (int c = 0; st == STORAGE_OK && c < 5; c++)
		if (!arr_param(&arrs[c], values, lengths, c))
			st = storage_error(h, STORAGE_INVALID_ARGUMENT,
							   "batch too large (or out of memory)");
	if (st == STORAGE_OK)
		st = run(h, state, STMT_SAVE_MANY, values, lengths, false, &res);
	for (int c = 0; c < 5; c++)
		free(arrs[c].buf);
	if (st != STORAGE_OK)
		return st;
	if (!read_versions(res, recs, n))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result from storage_save_many");
	PQclear(res);
	return st;
}

static storage_status
pg_delete_many(storage_client *h, void *state, const char *const *ids,
			   size_t n, int64_t *count)
{
	pg_array	a = id_array(ids, n);
	const char *values[1];
	int			lengths[1];
	PGresult   *res;
	storage_status st;

	if (!arr_param(&a, values, lengths, 0))
		st = storage_error(h, STORAGE_INVALID_ARGUMENT, "batch too large");
	else
		st = run(h, state, STMT_DELETE_MANY, values, lengths, false, &res);
	free(a.buf);
	if (st != STORAGE_OK)
		return st;
	if (PQntuples(res) != 1 || PQftype(res, 0) != INT8OID ||
		PQgetisnull(res, 0, 0))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result from storage_delete_many");
	else
		*count = (int64_t) get_be64(PQgetvalue(res, 0, 0));
	PQclear(res);
	return st;
}

/* ---- locks with fencing tokens: the extension's functions ---------------- */

/* Binary interval of ttl usec: int64 time, int32 days, int32 months. */
static void
put_interval(char *p, int64_t usec)
{
	put_be64(p, (uint64_t) usec);
	memset(p + 8, 0, 8);
}

/* The server waits for the lock (the handle's mutex is held meanwhile). */
static storage_status
pg_lock_acquire(storage_client *h, void *state, const char *id,
				const char *token, int64_t ttl, int64_t expires_at,
				int64_t *fence)
{
	char		ttl_buf[16];
	const char *values[2] = {token, ttl_buf};
	int			lengths[2] = {(int) strlen(token), 16};
	PGresult   *res;
	storage_status st;

	(void) id;
	(void) expires_at;
	put_interval(ttl_buf, ttl);
	if ((st = run(h, state, STMT_LOCK_ACQUIRE, values, lengths, false, &res)) != STORAGE_OK)
		return st;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) != 8)
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "storage_acquire_lock returned no fencing token (is the extension at release 1.1?)");
	else
		*fence = (int64_t) get_be64(PQgetvalue(res, 0, 0));
	PQclear(res);
	return st;
}

static storage_status
pg_lock_release(storage_client *h, void *state, const char *id,
				const char *token, int64_t fence)
{
	char		fence_buf[8];
	const char *values[2] = {token, fence_buf};
	int			lengths[2] = {(int) strlen(token), 8};
	PGresult   *res;
	storage_status st;

	(void) id;
	put_be64(fence_buf, (uint64_t) fence);
	if ((st = run(h, state, STMT_LOCK_RELEASE, values, lengths, false, &res)) == STORAGE_OK)
		PQclear(res);
	return st;
}

/* storage_extend_lock's false (not held with fence) is NOT_FOUND here. */
static storage_status
pg_lock_extend(storage_client *h, void *state, const char *id,
			   const char *token, int64_t fence, int64_t ttl,
			   int64_t expires_at)
{
	char		fence_buf[8];
	char		ttl_buf[16];
	const char *values[3] = {token, fence_buf, ttl_buf};
	int			lengths[3] = {(int) strlen(token), 8, 16};
	PGresult   *res;
	storage_status st;

	(void) id;
	(void) expires_at;
	put_be64(fence_buf, (uint64_t) fence);
	put_interval(ttl_buf, ttl);
	if ((st = run(h, state, STMT_LOCK_EXTEND, values, lengths, false, &res)) != STORAGE_OK)
		return st;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0) || PQgetlength(res, 0, 0) != 1)
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "unexpected result of storage_extend_lock");
	else if (PQgetvalue(res, 0, 0)[0] == 0)
		st = storage_error(h, STORAGE_NOT_FOUND,
						   "lock \"%s\" is not held with fence %lld",
						   token, (long long) fence);
	PQclear(res);
	return st;
}

/* ---- the bucket layer: the extension's functions --------------------------- */

/* text[] of n names; an empty array (0 dimensions) for n == 0 */
static pg_array
name_array(const char *const *names, size_t n)
{
	pg_array	a = {0};

	if (n > 0)
		return id_array(names, n);
	arr_put32(&a, 0);			/* ndim */
	arr_put32(&a, 0);			/* flags */
	arr_put32(&a, TEXTOID);
	return a;
}

/*
 * The server's SV002 (and SV003/SV004) messages name the function; give
 * the generic layer's message instead, keeping status and SQLSTATE.
 */
static storage_status
restate(storage_client *h, storage_status st, const char *fmt, const char *name)
{
	char		code[16];

	snprintf(code, sizeof(code), "%s", storage_errcode(h));
	storage_error(h, st, fmt, name);
	storage_error_detail(code, false);
	return st;
}

static storage_status
pg_bucket(storage_client *h, void *state, const storage_bucket_req *req,
		  storage_bucket_res *res)
{
	pg_state   *ps = state;
	pg_array	bucket = name_array(req->bucket, req->nbucket);
	pg_array	keys = {0};
	pg_array	vals = {0};
	char		ttl_buf[16];
	const char *values[5] = {0};
	int			lengths[5] = {0};
	const char *ttl_value = NULL;
	int			stmt;
	bool		is_read = false;
	PGresult   *r = NULL;
	storage_status st;

	if (req->ttl > 0)
	{
		put_interval(ttl_buf, req->ttl);
		ttl_value = ttl_buf;
	}
	if (!arr_param(&bucket, values, lengths, 0))
	{
		free(bucket.buf);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	if (req->key)
	{
		values[1] = req->key;
		lengths[1] = (int) strlen(req->key);
	}
	switch (req->op)
	{
		case STORAGE_BUCKET_CREATE_VAL:
		case STORAGE_BUCKET_UPSERT_VAL:
		case STORAGE_BUCKET_CAS_VAL:
			if (req->val_len > INT32_MAX || req->prev_len > INT32_MAX)
			{
				free(bucket.buf);
				return storage_error(h, STORAGE_INVALID_ARGUMENT, "value too large");
			}
			stmt = req->op == STORAGE_BUCKET_CREATE_VAL ? STMT_B_CREATE :
				req->op == STORAGE_BUCKET_UPSERT_VAL ? STMT_B_UPSERT : STMT_B_CAS;
			/* a NULL value stays NULL; an empty one is an empty bytea */
			values[2] = req->val ? (const char *) req->val : NULL;
			lengths[2] = (int) req->val_len;
			if (stmt == STMT_B_CAS)
			{
				values[3] = req->prev;
				lengths[3] = (int) req->prev_len;
				values[4] = ttl_value;
				lengths[4] = 16;
			}
			else
			{
				values[3] = ttl_value;
				lengths[3] = 16;
			}
			break;
		case STORAGE_BUCKET_GET_VAL:
			stmt = STMT_B_GET_VAL;
			is_read = true;
			break;
		case STORAGE_BUCKET_GET_KEYS:
			stmt = STMT_B_GET_KEYS;
			is_read = true;
			break;
		case STORAGE_BUCKET_GET_ITEMS:
			stmt = STMT_B_GET_ITEMS;
			is_read = true;
			break;
		case STORAGE_BUCKET_UPSERT_ITEMS:
			stmt = STMT_B_UPSERT_ITEMS;
			arr_begin(&keys, TEXTOID, req->nitems);
			arr_begin(&vals, BYTEAOID, req->nitems);
			for (size_t i = 0; i < req->nitems; i++)
			{
				arr_elem(&keys, req->items[i].key, strlen(req->items[i].key));
				arr_elem(&vals, req->items[i].val, req->items[i].val_len);
			}
			if (!arr_param(&keys, values, lengths, 1) || !arr_param(&vals, values, lengths, 2))
			{
				free(bucket.buf);
				free(keys.buf);
				free(vals.buf);
				return storage_error(h, STORAGE_INVALID_ARGUMENT, "batch too large");
			}
			values[3] = ttl_value;
			lengths[3] = 16;
			break;
		case STORAGE_BUCKET_DELETE_KEY:
			stmt = STMT_B_DELETE_KEY;
			break;
		case STORAGE_BUCKET_DELETE_BUCKET:
			stmt = STMT_B_DELETE_BUCKET;
			break;
		case STORAGE_BUCKET_ACQUIRE_LOCK:
		case STORAGE_BUCKET_RELEASE_LOCK:
		default:
			/* token first: no bucket parameter */
			values[0] = req->key;
			lengths[0] = (int) strlen(req->key);
			values[1] = ttl_value;
			lengths[1] = 16;
			stmt = req->op == STORAGE_BUCKET_ACQUIRE_LOCK ? STMT_LOCK_ACQUIRE : STMT_B_RELEASE_LOCK;
			break;
	}
	st = run(h, ps, stmt, values, lengths, is_read, &r);
	free(bucket.buf);
	free(keys.buf);
	free(vals.buf);
	if (st != STORAGE_OK)
	{
		switch (req->op)
		{
			case STORAGE_BUCKET_CREATE_VAL:
				return st == STORAGE_ALREADY_EXISTS ?
					restate(h, st, "key \"%s\" already exists", req->key) : st;
			case STORAGE_BUCKET_CAS_VAL:
				return st == STORAGE_COMPARE_FAILED ?
					restate(h, st, "key \"%s\" does not hold the expected value", req->key) : st;
			case STORAGE_BUCKET_GET_VAL:
				if (st == STORAGE_INVALID_ARGUMENT && strcmp(storage_errcode(h), "22023") == 0)
					return restate(h, st, "\"%s\" is a bucket, not a key", req->key);
				/* FALLTHROUGH */
			case STORAGE_BUCKET_DELETE_KEY:
				return st == STORAGE_NOT_FOUND ?
					restate(h, st, "key \"%s\" is not found", req->key) : st;
			case STORAGE_BUCKET_DELETE_BUCKET:
				return st == STORAGE_NOT_FOUND ?
					restate(h, st, "bucket \"%s\" is not found", req->key) : st;
			case STORAGE_BUCKET_RELEASE_LOCK:
				return st == STORAGE_NOT_FOUND ?
					restate(h, st, "lock \"%s\" is not held", req->key) : st;
			default:
				return st;
		}
	}
	switch (req->op)
	{
		case STORAGE_BUCKET_GET_VAL:
			if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0))
			{
				size_t		len = (size_t) PQgetlength(r, 0, 0);

				if ((res->val = malloc(len ? len : 1)) == NULL)
					st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
				else
				{
					memcpy(res->val, PQgetvalue(r, 0, 0), len);
					res->val_len = len;
				}
			}
			break;
		case STORAGE_BUCKET_GET_KEYS:
			res->keys = calloc((size_t) PQntuples(r) + 1, sizeof(char *));
			if (res->keys == NULL)
				st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
			for (int i = 0; st == STORAGE_OK && i < PQntuples(r); i++)
			{
				if ((res->keys[i] = strdup(PQgetvalue(r, i, 0))) == NULL)
					st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
				else
					res->nkeys++;
			}
			break;
		case STORAGE_BUCKET_GET_ITEMS:
			res->items = calloc((size_t) PQntuples(r) + 1, sizeof(storage_item));
			if (res->items == NULL)
				st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
			for (int i = 0; st == STORAGE_OK && i < PQntuples(r); i++)
			{
				storage_item *it = &res->items[i];
				char	   *key = strdup(PQgetvalue(r, i, 0));

				it->key = key;
				it->expires_at = pg_to_expires(r, i, 2);
				if (key && !PQgetisnull(r, i, 1))
				{
					size_t		len = (size_t) PQgetlength(r, i, 1);
					unsigned char *v = malloc(len ? len : 1);

					if (v)
						memcpy(v, PQgetvalue(r, i, 1), len);
					it->val = v;
					it->val_len = len;
					if (v == NULL)
						key = NULL;
				}
				res->nitems++;
				if (key == NULL)
					st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
			}
			break;
		case STORAGE_BUCKET_DELETE_BUCKET:
			if (PQntuples(r) == 1 && PQgetlength(r, 0, 0) == 8)
				res->count = (int64_t) get_be64(PQgetvalue(r, 0, 0));
			break;
		default:
			break;
	}
	PQclear(r);
	return st;
}

const storage_backend_ops storage_pg_backend = {
	.name = "postgresql",
	.clock_is_server = true,
	.open = pg_open,
	.close = pg_close,
	.fetch = pg_fetch,
	.save = pg_save,
	.delete = pg_delete,
	.purge_expired = pg_purge,
	.list = pg_list,
	.fetch_many = pg_fetch_many,
	.save_many = pg_save_many,
	.delete_many = pg_delete_many,
	.lock_acquire = pg_lock_acquire,
	.lock_release = pg_lock_release,
	.lock_extend = pg_lock_extend,
	.bucket = pg_bucket,
	.pipeline = storage_pg_pipeline,
	.watch = storage_pg_watch,
};

/* ---- for the change feed (backend_pg_watch.c) ---------------------------- */

PGconn *
storage_pg_conn(void *state)
{
	return ((pg_state *) state)->conn;
}

bool
storage_pg_sqlstate_retryable(const char *sqlstate)
{
	return sqlstate_retryable(sqlstate);
}

const char *
storage_pg_conn_message(PGconn *conn, char *buf, size_t size)
{
	return conn_message(conn, buf, size);
}
