/*-------------------------------------------------------------------------
 *
 * pooler_check.c
 *	  The checks of test/pooler/run.sh that the conformance suite cannot
 *	  make: what the postgresql backend does behind a connection pooler
 *	  (a real pgbouncer the script starts).  Each command prints what it
 *	  saw and exits 0 when the check holds.
 *
 *	  usage: pooler_check default-fails URI
 *			   URI: a transaction-mode pooler, named statements (the
 *			   default).  Some call fails within 3 handles (3 handles
 *			   preparing the same names over 2 server connections must
 *			   meet one already there), and every failure is
 *			   STORAGE_BACKEND_ERROR naming prepare=off.
 *			 pooler_check handles URI
 *			   the same calls of 3 handles must all succeed (prepare=off
 *			   written in the URI's various forms).
 *			 pooler_check bad-option URI
 *			   opening must fail with STORAGE_INVALID_ARGUMENT naming the
 *			   option.
 *			 pooler_check ops URI
 *			   save, fetch, one save_many of 3, fetch_many, delete_many,
 *			   list, a pipeline of separate calls (one of them failing)
 *			   and two atomic pipelines (one failing): each call's result
 *			   as without a pooler (run.sh reads the server log after it).
 *			 pooler_check restart URI COMMAND
 *			   save, run COMMAND (restarts the server), then a write, a
 *			   read and a batch on the same handle must succeed.
 *
 *-------------------------------------------------------------------------
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage_client.h"

#define NHANDLES 3

static int	failures = 0;

static void
check(bool ok, const char *what, storage_client *h)
{
	printf("%s: %s%s%s\n", ok ? "ok" : "FAILED", what,
		   ok ? "" : ": ", ok ? "" : storage_errmsg(h));
	if (!ok)
		failures++;
}

static storage_status
put(storage_client *h, const char *id, const char *data, int64_t expect,
	int64_t *version)
{
	storage_record r = {0};
	storage_status st;

	r.id = (char *) id;
	r.data = (unsigned char *) data;
	r.data_len = strlen(data);
	st = storage_save(h, &r, expect);
	*version = st == STORAGE_OK ? r.version : -1;
	return st;
}

/* A failure behind the transaction pooler must say what to do. */
static bool
names_option(storage_status st, const char *msg)
{
	return st == STORAGE_BACKEND_ERROR && strstr(msg, "prepare=off") != NULL;
}

/*
 * want_fail: named statements behind the transaction pooler, some call must
 * fail and name the option; otherwise every call must succeed.
 */
static int
handles(const char *uri, bool want_fail)
{
	storage_client *h[NHANDLES] = {0};
	int			seen = 0;

	for (int i = 0; i < NHANDLES; i++)
	{
		char		id[16];
		int64_t		v;
		storage_record r;
		storage_status st = storage_open(uri, &h[i]);

		if (st != STORAGE_OK)
		{
			printf("open %d: %s: %s\n", i, storage_status_name(st), storage_errmsg(NULL));
			check(want_fail && names_option(st, storage_errmsg(NULL)),
				  "the failed open names prepare=off", NULL);
			seen++;
			h[i] = NULL;
			continue;
		}
		snprintf(id, sizeof(id), "pc:%d", i);
		for (int j = 0; j <= i; j++)
		{
			if ((st = put(h[j], id, "x", -1, &v)) == STORAGE_OK)
				st = storage_fetch(h[j], id, &r);
			if (st == STORAGE_OK)
			{
				storage_record_clear(&r);
				continue;
			}
			printf("handle %d: %s: %s\n", j, storage_status_name(st), storage_errmsg(h[j]));
			check(want_fail && names_option(st, storage_errmsg(h[j])),
				  "the failed call names prepare=off", h[j]);
			seen++;
		}
	}
	if (want_fail)
		check(seen > 0, "named statements failed behind the transaction pooler", NULL);
	else
		check(seen == 0, "every call of 3 handles succeeded", NULL);
	for (int i = 0; i < NHANDLES; i++)
		if (h[i])
			storage_close(h[i]);
	return failures == 0 ? 0 : 1;
}

#define SAVE(id_, expect_) \
	{.kind = STORAGE_OP_SAVE, .rec = {.id = (id_), .data = (unsigned char *) "p", \
	 .data_len = 1}, .expect_version = (expect_)}

/* The pipelined forms: separate transactions, and one transaction. */
static void
pipelined(storage_client *h)
{
	storage_op	sep[4] = {
		SAVE("ops:p1", 0),
		SAVE("ops:p1", 5),		/* conflict: only this call fails */
		{.kind = STORAGE_OP_FETCH, .id = "ops:p1"},
		{.kind = STORAGE_OP_DELETE, .id = "ops:p1"},
	};
	storage_op	atom[2] = {SAVE("ops:p2", 0), SAVE("ops:p3", 0)};
	storage_record r;
	storage_status st;

	st = storage_pipeline(h, sep, 4, 0);
	check(st == STORAGE_VERSION_CONFLICT && sep[0].status == STORAGE_OK &&
		  sep[1].status == STORAGE_VERSION_CONFLICT &&
		  strcmp(sep[1].errcode, "SV001") == 0 && sep[2].status == STORAGE_OK &&
		  sep[2].version == 1 && sep[3].status == STORAGE_OK && sep[3].deleted,
		  "pipeline of separate calls, the second failing", h);
	storage_pipeline_clear(sep, 4);
	st = storage_pipeline(h, atom, 2, STORAGE_PIPELINE_ATOMIC);
	check(st == STORAGE_OK && atom[0].version == 1 && atom[1].version == 1,
		  "atomic pipeline", h);
	storage_pipeline_clear(atom, 2);
	atom[0].expect_version = 1;
	st = storage_pipeline(h, atom, 2, STORAGE_PIPELINE_ATOMIC);
	check(st == STORAGE_VERSION_CONFLICT && atom[0].status == STORAGE_ABORTED &&
		  atom[1].status == STORAGE_VERSION_CONFLICT &&
		  storage_fetch(h, "ops:p2", &r) == STORAGE_OK && r.version == 1,
		  "atomic pipeline, the second call failing: nothing applied", h);
	storage_record_clear(&r);
	storage_pipeline_clear(atom, 2);
	storage_delete(h, "ops:p2", NULL);
	storage_delete(h, "ops:p3", NULL);
}

static int
ops(const char *uri)
{
	storage_client *h;
	storage_record recs[3] = {
		{.id = "ops:1", .data = (unsigned char *) "a", .data_len = 1},
		{.id = "ops:2", .data = (unsigned char *) "b", .data_len = 1},
		{.id = "ops:3", .data = (unsigned char *) "c", .data_len = 1},
	};
	const char *ids[3] = {"ops:1", "ops:2", "ops:3"};
	storage_record *got;
	storage_record r;
	size_t		n;
	int64_t		v;
	int64_t		count;

	if (storage_open(uri, &h) != STORAGE_OK)
	{
		printf("FAILED: open: %s\n", storage_errmsg(NULL));
		return 1;
	}
	check(put(h, "ops:0", "x", -1, &v) == STORAGE_OK, "save", h);
	check(storage_fetch(h, "ops:0", &r) == STORAGE_OK, "fetch", h);
	storage_record_clear(&r);
	check(storage_save_many(h, recs, 3, NULL) == STORAGE_OK, "save_many", h);
	check(storage_fetch_many(h, ids, 3, &got, &n) == STORAGE_OK && n == 3, "fetch_many", h);
	storage_records_free(got, n);
	check(storage_delete_many(h, ids, 3, &count) == STORAGE_OK && count == 3, "delete_many", h);
	check(storage_list(h, "ops:", &got, &n) == STORAGE_OK && n == 1, "list", h);
	storage_records_free(got, n);
	check(storage_delete(h, "ops:0", NULL) == STORAGE_OK, "delete", h);
	pipelined(h);
	storage_close(h);
	return failures == 0 ? 0 : 1;
}

static int
restart(const char *uri, const char *command)
{
	storage_client *h;
	storage_record recs[2] = {
		{.id = "rs:a", .data = (unsigned char *) "a", .data_len = 1},
		{.id = "rs:b", .data = (unsigned char *) "b", .data_len = 1},
	};
	const char *ids[2] = {"rs:a", "rs:b"};
	storage_record *got;
	storage_record r;
	size_t		n;
	int64_t		v;

	if (storage_open(uri, &h) != STORAGE_OK)
	{
		printf("FAILED: open: %s\n", storage_errmsg(NULL));
		return 1;
	}
	storage_delete_many(h, ids, 2, NULL);
	storage_delete(h, "rs", NULL);
	check(put(h, "rs", "1", 0, &v) == STORAGE_OK && v == 1, "create before the restart", h);
	fflush(stdout);
	if (system(command) != 0)
	{
		printf("FAILED: %s\n", command);
		return 1;
	}
	printf("ran: %s\n", command);
	check(put(h, "rs", "2", 1, &v) == STORAGE_OK && v == 2, "versioned save after the restart", h);
	check(storage_fetch(h, "rs", &r) == STORAGE_OK && r.version == 2, "fetch after the restart", h);
	storage_record_clear(&r);
	check(storage_save_many(h, recs, 2, NULL) == STORAGE_OK, "save_many after the restart", h);
	check(storage_fetch_many(h, ids, 2, &got, &n) == STORAGE_OK && n == 2, "fetch_many after the restart", h);
	storage_records_free(got, n);
	storage_delete_many(h, ids, 2, NULL);
	storage_delete(h, "rs", NULL);
	storage_close(h);
	return failures == 0 ? 0 : 1;
}

static int
bad_option(const char *uri)
{
	storage_client *h;
	storage_status st = storage_open(uri, &h);

	printf("open: %s: %s\n", storage_status_name(st), storage_errmsg(NULL));
	check(st == STORAGE_INVALID_ARGUMENT && strstr(storage_errmsg(NULL), "prepare=off"),
		  "a bad value of prepare is INVALID_ARGUMENT naming the option", NULL);
	if (st == STORAGE_OK)
		storage_close(h);
	return failures == 0 ? 0 : 1;
}

int
main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc == 3 && strcmp(argv[1], "default-fails") == 0)
		return handles(argv[2], true);
	if (argc == 3 && strcmp(argv[1], "handles") == 0)
		return handles(argv[2], false);
	if (argc == 3 && strcmp(argv[1], "bad-option") == 0)
		return bad_option(argv[2]);
	if (argc == 3 && strcmp(argv[1], "ops") == 0)
		return ops(argv[2]);
	if (argc == 4 && strcmp(argv[1], "restart") == 0)
		return restart(argv[2], argv[3]);
	fprintf(stderr, "usage: pooler_check default-fails URI | handles URI | bad-option URI | ops URI | restart URI COMMAND\n");
	return 2;
}
