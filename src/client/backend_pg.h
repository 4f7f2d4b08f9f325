/*-------------------------------------------------------------------------
 *
 * backend_pg.h
 *	  What the PostgreSQL backend (backend_pg.c) shares with its pipeline
 *	  (pipeline_pg.c): one call's statement and parameters, sending it,
 *	  reading its result; and with its change feed (backend_pg_watch.c):
 *	  the connection's options, error rules and time conversion.  The connection handling, the statements and the
 *	  result formats stay in backend_pg.c, so a pipelined call and a single
 *	  call are the same statement with the same result rules.  Not
 *	  installed.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STORAGE_BACKEND_PG_H
#define STORAGE_BACKEND_PG_H

#include <libpq-fe.h>

#include "storage_backend.h"

/* One fetch, save or delete, ready to send. */
typedef struct storage_pg_call
{
	int			stmt;			/* the statement (backend_pg.c's) */
	const char *values[5];		/* binary parameters */
	int			lengths[5];
	char		buf[2][8];		/* the save's expect_version, expires_at */
} storage_pg_call;

/*
 * The connection ready for a pipeline (reconnected if the server closed it,
 * the fetch, save and delete statements prepared): *conn.
 */
extern storage_status storage_pg_pipeline_ready(storage_client *h, void *state,
												PGconn **conn);

/* op's statement and parameters (pointing into op and c). */
extern storage_status storage_pg_call_of(storage_client *h, const storage_op *op,
										 storage_pg_call *c);

/* Queue c on the connection (PQsendQueryPrepared/Params); false on failure. */
extern bool storage_pg_send(void *state, const storage_pg_call *c);

/*
 * op's result from res (any status; res is cleared), with the error rules
 * of a single call: SQLSTATE to status, message, code, retryable.
 */
extern storage_status storage_pg_call_result(storage_client *h, void *state,
											 storage_op *op, int stmt,
											 PGresult *res);

/* The connection broke: statements must be prepared again after reset. */
extern void storage_pg_connection_lost(void *state);

/* pipeline_pg.c: storage_backend_ops.pipeline of the postgresql backend. */
extern storage_status storage_pg_pipeline(storage_client *h, void *state,
										  storage_op *const *ops, size_t n,
										  unsigned int flags);

/*
 * backend_pg.c, for backend_pg_watch.c: the live connection of a handle's
 * state (use it under the handle's mutex), its error rules and time
 * conversion.
 */
extern PGconn *storage_pg_conn(void *state);
extern bool storage_pg_sqlstate_retryable(const char *sqlstate);
extern const char *storage_pg_conn_message(PGconn *conn, char *buf, size_t size);
extern int64_t storage_pg_to_expires(int64_t pg);

/* backend_pg_watch.c: storage_backend_ops.watch of the postgresql backend. */
extern storage_status storage_pg_watch(storage_client *h, void *state,
									   const storage_watch_req *req);

#endif							/* STORAGE_BACKEND_PG_H */
