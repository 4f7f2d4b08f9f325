/*-------------------------------------------------------------------------
 *
 * conformance.c
 *	  The conformance suite of libstorage_client (cmocka): the same tests
 *	  run against every backend through a backend-specific fixture that
 *	  gives each test a fresh handle.
 *
 *	  usage: conformance memory|dir|postgresql|dynamodb|dynamodb-unit
 *			 conformance --count <group>	print its test count
 *
 *	  The postgresql group uses the URI in STORAGE_TEST_PG_URI (a database
 *	  with CREATE EXTENSION storage done) and is skipped, with a message,
 *	  when it is unset.  Its own libpq connections (to terminate the
 *	  client's) use STORAGE_TEST_PG_ADMIN_URI if set: the server itself
 *	  when the client goes through a pooler, and without the client's own
 *	  options (prepare=off), which libpq does not know.
 *	  STORAGE_TEST_PG_TXN_POOLER set: the URI leads through a pooler in
 *	  transaction mode (see test_pipeline_long).
 *	  STORAGE_TEST_PG_SESSION_POOLER set: the URI leads through a pooler in
 *	  session mode (see test_pg_reconnect).  Time: memory and dir get an injected clock that
 *	  tests advance instantly; for postgresql "advancing" sleeps, so
 *	  durations are kept to a few TICKs.
 *
 *	  The batch tests (test_batch_*) run the same way on every backend; one
 *	  of them forces the front end's fallback loops through an internal
 *	  hook that only the static library exposes.
 *
 *	  The dynamodb group uses the URI in STORAGE_TEST_DYNAMODB_URI (a
 *	  DynamoDB-compatible server; the table's items are wiped) and is skipped
 *	  when it is unset; it has the injected clock, since expiry is judged by
 *	  the client there.  A call the server does not implement
 *	  (TransactWriteItems on dynalite: STORAGE_BACKEND_ERROR with the error
 *	  code UnknownOperationException) makes its test SKIPPED with that
 *	  reason, never passed.  dynamodb-unit needs no server: the SigV4
 *	  signing against AWS's published test vectors and the encoding of the
 *	  TransactWriteItems request.
 *
 *	  The last line printed is
 *	  "RESULT <group> total=<n> failed=<n> skipped=<n>".
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <json-c/json.h>
#include <libpq-fe.h>

#include "storage_client.h"

#define TICK		(300 * STORAGE_MSEC)

typedef struct fixture
{
	const char *backend;
	bool		shared;			/* a store other tests use too: wipe it */
	char		uri[PATH_MAX + 16];
	char		tmpdir[PATH_MAX];	/* dir backend: the temp dir */
	storage_client *h;
	bool		fake;			/* injected clock? */
	_Atomic int64_t fake_now;
} fixture;

static const char *backend_name;
static const char *group_name;	/* backend_name, or "postgresql-generic" */
static bool generic_buckets;	/* the generic bucket layer, not the backend's */

/* internal test hook of the library (the test archive exports it) */
extern void storage_force_generic_buckets(storage_client *h, bool on);
static const char *pg_uri;
static const char *pg_admin_uri;	/* for libpq directly, see above */
static const char *ddb_uri;
static int	nskipped;

/* a test that needs what this server lacks: SKIPPED with the reason */
#define SKIP_UNSUPPORTED(h) \
	do { \
		printf("SKIPPED %s: %s\n", __func__, storage_errmsg(h)); \
		fflush(stdout); \
		nskipped++; \
		skip(); \
	} while (0)

static bool
unsupported(storage_client *h, storage_status st)
{
	return st == STORAGE_BACKEND_ERROR &&
		strcmp(storage_errcode(h), "UnknownOperationException") == 0;
}

/* ---- helpers ----------------------------------------------------------- */

#define ST(h, expr, expected) \
	do { \
		storage_status st_ = (expr); \
		if (st_ != (expected) && unsupported(h, st_)) \
			SKIP_UNSUPPORTED(h); \
		if (st_ != (expected)) \
			fail_msg("%s:%d: %s\n  got %s, want %s (%s)", __FILE__, __LINE__, #expr, \
					 storage_status_name(st_), storage_status_name(expected), \
					 storage_errmsg(h)); \
	} while (0)

static int64_t
fake_clock(void *arg)
{
	fixture    *f = arg;

	return atomic_load(&f->fake_now);
}

static void
sleep_us(int64_t us)
{
	struct timespec ts = {.tv_sec = us / STORAGE_SEC,
	.tv_nsec = (us % STORAGE_SEC) * 1000};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Let time pass: instantly for an injected clock, really otherwise. */
static void
advance(fixture *f, int64_t us)
{
	if (f->fake)
		atomic_fetch_add(&f->fake_now, us);
	else
		sleep_us(us);
}

static storage_status
put(storage_client *h, const char *id, const char *data, int64_t expect,
	int64_t expires_at, int64_t *version)
{
	storage_record r = {0};
	storage_status st;

	r.id = (char *) id;
	r.data = (unsigned char *) data;
	r.data_len = data ? strlen(data) : 0;
	r.expires_at = expires_at;
	r.version = 12345;			/* ignored on input */
	st = storage_save(h, &r, expect);
	if (version)
		*version = st == STORAGE_OK ? r.version : -1;
	return st;
}

static void
assert_data(const storage_record *r, const char *data)
{
	assert_non_null(r->data);
	assert_int_equal(r->data_len, strlen(data));
	assert_memory_equal(r->data, data, r->data_len);
}

static int
rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void) sb;
	(void) flag;
	(void) ftw;
	return remove(path);
}

static storage_status
open_peer(fixture *f, storage_client **out)
{
	storage_status st = storage_open(f->uri, out);

	if (st == STORAGE_OK && f->fake)
		st = storage_set_clock(*out, fake_clock, f);
	if (st == STORAGE_OK && generic_buckets)
		storage_force_generic_buckets(*out, true);
	return st;
}

/* Remove every record (postgresql: the database is shared by all tests). */
static void
wipe(storage_client *h)
{
	storage_record *recs;
	size_t		n;

	ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
	for (size_t i = 0; i < n; i++)
		ST(h, storage_delete(h, recs[i].id, NULL), STORAGE_OK);
	storage_records_free(recs, n);
	ST(h, storage_purge_expired(h, 0, NULL), STORAGE_OK);
}

/* ---- fixtures ---------------------------------------------------------- */

static int
setup(void **state)
{
	fixture    *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->backend = backend_name;
	if (strcmp(backend_name, "memory") == 0)
	{
		snprintf(f->uri, sizeof(f->uri), "memory:");
		f->fake = true;
	}
	else if (strcmp(backend_name, "dir") == 0)
	{
		const char *tmp = getenv("TMPDIR");

		snprintf(f->tmpdir, sizeof(f->tmpdir), "%s/storage-client-test.XXXXXX",
				 tmp && *tmp ? tmp : "/tmp");
		if (mkdtemp(f->tmpdir) == NULL)
		{
			perror("mkdtemp");
			free(f);
			return -1;
		}
		/* "store" does not exist yet: open must create it */
		snprintf(f->uri, sizeof(f->uri), "dir:%s/store", f->tmpdir);
		f->fake = true;
	}
	else if (strcmp(backend_name, "dynamodb") == 0)
	{
		snprintf(f->uri, sizeof(f->uri), "%s", ddb_uri);
		f->fake = true;
		f->shared = true;
	}
	else
	{
		snprintf(f->uri, sizeof(f->uri), "%s", pg_uri);
		f->fake = false;
		f->shared = true;
	}
	atomic_store(&f->fake_now, INT64_C(1700000000) * STORAGE_SEC);
	if (open_peer(f, &f->h) != STORAGE_OK)
	{
		fprintf(stderr, "could not open %s: %s\n", f->uri, storage_errmsg(NULL));
		free(f);
		return -1;
	}
	if (f->shared)
		wipe(f->h);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	fixture    *f = *state;

	if (f->shared)
		wipe(f->h);
	storage_close(f->h);
	if (f->tmpdir[0])
		nftw(f->tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return 0;
}

/* ---- provider: save rules ---------------------------------------------- */

static void
test_save_sequence(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record r;
	int64_t		v;
	bool		deleted;

	ST(h, put(h, "seq", "one", 0, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 1);
	ST(h, put(h, "seq", "dup", 0, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(storage_errmsg(h), "version conflict"));
	ST(h, put(h, "seq", "two", 1, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 2);
	ST(h, put(h, "seq", "stale", 1, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	ST(h, storage_fetch(h, "seq", &r), STORAGE_OK);
	assert_int_equal(r.version, 2);
	assert_data(&r, "two");
	storage_record_clear(&r);
	ST(h, storage_delete(h, "seq", &deleted), STORAGE_OK);
	assert_true(deleted);
	ST(h, storage_delete(h, "seq", &deleted), STORAGE_OK);
	assert_false(deleted);
	ST(h, storage_fetch(h, "seq", &r), STORAGE_NOT_FOUND);
	assert_null(r.id);
	ST(h, put(h, "seq", "stale", 2, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	ST(h, put(h, "seq", "again", 0, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 1);
}

static void
test_save_unconditional(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record r = {0};
	storage_record got;
	int64_t		v;

	ST(h, put(h, "u", "a", -1, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 1);
	ST(h, put(h, "u", "b", -7, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 2);

	/* full replace: format and data go back to NULL */
	r.id = "u";
	r.format = "json";
	r.data = (unsigned char *) "{}";
	r.data_len = 2;
	ST(h, storage_save(h, &r, -1), STORAGE_OK);
	assert_int_equal(r.version, 3);
	r.format = NULL;
	r.data = NULL;
	r.data_len = 0;
	ST(h, storage_save(h, &r, 3), STORAGE_OK);
	assert_int_equal(r.version, 4);
	ST(h, storage_fetch(h, "u", &got), STORAGE_OK);
	assert_int_equal(got.version, 4);
	assert_null(got.format);
	assert_null(got.data);
	assert_int_equal(got.data_len, 0);
	assert_int_equal(got.expires_at, STORAGE_NEVER);
	storage_record_clear(&got);

	/* expect > 0 on a missing record; a far-off version */
	ST(h, put(h, "missing", "x", 1, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	ST(h, put(h, "u", "x", 5, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	/* a version that would overflow int64 is an invalid argument */
	ST(h, put(h, "u", "x", INT64_MAX, STORAGE_NEVER, &v), STORAGE_INVALID_ARGUMENT);
	ST(h, put(h, "absent", "x", INT64_MAX, STORAGE_NEVER, &v), STORAGE_INVALID_ARGUMENT);
	/* a failed save leaves the caller's version alone */
	r.version = 77;
	ST(h, storage_save(h, &r, 1), STORAGE_VERSION_CONFLICT);
	assert_int_equal(r.version, 77);
}

static void
test_fields_roundtrip(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const unsigned char bin[] = {0, 1, 2, 0xff, 0, 0x80, 'x'};
	storage_record r = {0};
	storage_record got;
	int64_t		exp = storage_now(h) + 3600 * STORAGE_SEC + 123457;

	r.id = "fields";
	r.format = "application/octet-stream; v=1";
	r.data = (unsigned char *) bin;
	r.data_len = sizeof(bin);
	r.expires_at = exp;
	ST(h, storage_save(h, &r, 0), STORAGE_OK);
	ST(h, storage_fetch(h, "fields", &got), STORAGE_OK);
	assert_string_equal(got.id, "fields");
	assert_int_equal(got.version, 1);
	assert_string_equal(got.format, r.format);
	assert_int_equal(got.data_len, sizeof(bin));
	assert_memory_equal(got.data, bin, sizeof(bin));
	assert_int_equal(got.expires_at, exp);
	storage_record_clear(&got);

	/* empty data and empty format are not NULL */
	r.format = "";
	r.data = (unsigned char *) "";
	r.data_len = 0;
	r.expires_at = STORAGE_NEVER;
	ST(h, storage_save(h, &r, 1), STORAGE_OK);
	ST(h, storage_fetch(h, "fields", &got), STORAGE_OK);
	assert_non_null(got.format);
	assert_string_equal(got.format, "");
	assert_non_null(got.data);
	assert_int_equal(got.data_len, 0);
	assert_int_equal(got.expires_at, STORAGE_NEVER);
	assert_int_equal(got.version, 2);
	storage_record_clear(&got);
}

/* ---- expiry ------------------------------------------------------------ */

static void
test_expiry_hiding(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record r;
	storage_record *recs;
	size_t		n;
	int64_t		v;
	bool		deleted;

	ST(h, put(h, "exp/a", "a", 0, storage_now(h) + TICK, &v), STORAGE_OK);
	ST(h, put(h, "exp/b", "b", 0, storage_now(h) + 100 * TICK, &v), STORAGE_OK);
	ST(h, storage_fetch(h, "exp/a", &r), STORAGE_OK);
	storage_record_clear(&r);
	advance(f, 2 * TICK);
	ST(h, storage_fetch(h, "exp/a", &r), STORAGE_NOT_FOUND);
	ST(h, storage_list(h, "exp/", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].id, "exp/b");
	storage_records_free(recs, n);
	/* expired = absent for the save rules */
	ST(h, put(h, "exp/a", "x", 1, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	ST(h, put(h, "exp/a", "new", -1, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 1);

	/* expired from the start; replaced by a create; delete says false */
	ST(h, put(h, "exp/c", "c", 0, storage_now(h) - STORAGE_SEC, &v), STORAGE_OK);
	ST(h, storage_fetch(h, "exp/c", &r), STORAGE_NOT_FOUND);
	ST(h, put(h, "exp/c", "c2", 0, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 1);
	ST(h, put(h, "exp/d", "d", 0, storage_now(h) - STORAGE_SEC, &v), STORAGE_OK);
	ST(h, storage_delete(h, "exp/d", &deleted), STORAGE_OK);
	assert_false(deleted);
}

static void
test_purge(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	int64_t		past = storage_now(h) - 10 * STORAGE_SEC;
	int64_t		count,
				v;
	storage_record *recs;
	size_t		n;

	ST(h, put(h, "p1", "x", 0, past, &v), STORAGE_OK);
	ST(h, put(h, "p2", "x", 0, past, &v), STORAGE_OK);
	ST(h, put(h, "p3", "x", 0, past, &v), STORAGE_OK);
	ST(h, put(h, "live1", "x", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "live2", "x", 0, storage_now(h) + 3600 * STORAGE_SEC, &v), STORAGE_OK);
	ST(h, storage_purge_expired(h, 1, &count), STORAGE_OK);
	assert_int_equal(count, 1);
	if (strcmp(f->backend, "dir") == 0)
	{
		/* a crashed writer's temporary file: purge removes it */
		char		path[PATH_MAX + 64];
		FILE	   *fp;

		snprintf(path, sizeof(path), "%s/store/.tmp.99999.7", f->tmpdir);
		fp = fopen(path, "w");
		assert_non_null(fp);
		fputs("torn", fp);
		fclose(fp);
		ST(h, storage_purge_expired(h, 0, &count), STORAGE_OK);
		assert_int_equal(access(path, F_OK), -1);
	}
	else
		ST(h, storage_purge_expired(h, 0, &count), STORAGE_OK);
	assert_int_equal(count, 2);
	ST(h, storage_purge_expired(h, -1, &count), STORAGE_OK);
	assert_int_equal(count, 0);
	ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].id, "live1");
	assert_string_equal(recs[1].id, "live2");
	storage_records_free(recs, n);
}

/* ---- list ------------------------------------------------------------- */

static void
test_list_order(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;

	/* valid UTF-8 (the postgresql backend stores ids as text) */
	static const char *ids[] = {
		"b", "a", "a/b", "a\xc3\xa9", "a\xe2\x82\xac", "aZ", "a-", "ab",
		"\xf0\x9f\x98\x80x", "a/", "A", "a b", "~", "a.b"
	};
	static const char *all_sorted[] = {
		"A", "a", "a b", "a-", "a.b", "a/", "a/b", "aZ", "ab", "a\xc3\xa9",
		"a\xe2\x82\xac", "b", "~", "\xf0\x9f\x98\x80x"
	};
	size_t		nids = sizeof(ids) / sizeof(ids[0]);
	storage_record *recs;
	size_t		n;
	int64_t		v;

	for (size_t i = 0; i < nids; i++)
		ST(h, put(h, ids[i], ids[i], 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "a-expired", "x", 0, storage_now(h) - STORAGE_SEC, &v), STORAGE_OK);

	ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
	assert_int_equal(n, nids);
	for (size_t i = 0; i < n; i++)
	{
		assert_string_equal(recs[i].id, all_sorted[i]);
		assert_data(&recs[i], all_sorted[i]);
		assert_int_equal(recs[i].version, 1);
	}
	storage_records_free(recs, n);

	ST(h, storage_list(h, "a", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 10);
	assert_string_equal(recs[0].id, "a");
	assert_string_equal(recs[9].id, "a\xe2\x82\xac");
	storage_records_free(recs, n);

	ST(h, storage_list(h, "a/", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].id, "a/");
	assert_string_equal(recs[1].id, "a/b");
	storage_records_free(recs, n);

	ST(h, storage_list(h, "a\xc3\xa9", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 1);
	storage_records_free(recs, n);

	ST(h, storage_list(h, "zzz", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 0);
	storage_records_free(recs, n);
}

/* ---- bad arguments ----------------------------------------------------- */

static void
test_bad_ids(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	char		long_id[STORAGE_MAX_ID_LEN + 2];
	storage_record r = {0};
	storage_record *recs;
	size_t		n;
	int64_t		v;
	bool		deleted;

	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[STORAGE_MAX_ID_LEN + 1] = '\0';	/* 256 bytes */

	ST(h, storage_fetch(h, NULL, &r), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_fetch(h, "", &r), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_fetch(h, long_id, &r), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "255"));
	ST(h, put(h, NULL, "x", -1, STORAGE_NEVER, &v), STORAGE_INVALID_ARGUMENT);
	ST(h, put(h, "", "x", -1, STORAGE_NEVER, &v), STORAGE_INVALID_ARGUMENT);
	ST(h, put(h, long_id, "x", -1, STORAGE_NEVER, &v), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_delete(h, NULL, &deleted), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_delete(h, "", &deleted), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_delete(h, long_id, &deleted), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_save(h, NULL, -1), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_list(h, NULL, &recs, &n), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_fetch(NULL, "x", &r), STORAGE_INVALID_ARGUMENT);
	r.id = "x";
	r.data = NULL;
	r.data_len = 3;
	ST(h, storage_save(h, &r, -1), STORAGE_INVALID_ARGUMENT);

	/* 255 bytes is fine, and so are two ids sharing a 254-byte prefix */
	long_id[STORAGE_MAX_ID_LEN] = '\0';
	ST(h, put(h, long_id, "long", 0, STORAGE_NEVER, &v), STORAGE_OK);
	long_id[STORAGE_MAX_ID_LEN - 1] = 'y';
	ST(h, put(h, long_id, "long2", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, storage_fetch(h, long_id, &r), STORAGE_OK);
	assert_data(&r, "long2");
	storage_record_clear(&r);
	long_id[STORAGE_MAX_ID_LEN - 1] = '\0';
	ST(h, storage_list(h, long_id, &recs, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_data(&recs[0], "long");
	assert_data(&recs[1], "long2");
	storage_records_free(recs, n);
}

static void
test_path_like_ids(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const char *ids[] = {
		"../x", "/etc/passwd", "..", ".", "a/../../b", "./.lock", ".lock",
		"%2E%2E", "~x", "\\..\\x", "a\nb"
	};
	storage_record r;
	int64_t		v;

	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
		ST(h, put(h, ids[i], ids[i], 0, STORAGE_NEVER, &v), STORAGE_OK);
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++)
	{
		ST(h, storage_fetch(h, ids[i], &r), STORAGE_OK);
		assert_string_equal(r.id, ids[i]);
		assert_data(&r, ids[i]);
		storage_record_clear(&r);
	}
	if (strcmp(f->backend, "dir") == 0)
	{
		/* nothing escaped: the temp dir holds only "store" */
		DIR		   *d = opendir(f->tmpdir);
		struct dirent *de;
		int			entries = 0;

		assert_non_null(d);
		while ((de = readdir(d)) != NULL)
		{
			if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
				continue;
			assert_string_equal(de->d_name, "store");
			entries++;
		}
		closedir(d);
		assert_int_equal(entries, 1);
	}
}

static void
test_open_and_status(void **state)
{
	fixture    *f = *state;
	storage_client *x = (storage_client *) 1;

	ST(NULL, storage_open("bogus:thing", &x), STORAGE_INVALID_ARGUMENT);
	assert_null(x);
	assert_non_null(strstr(storage_errmsg(NULL), "unknown URI scheme"));
	ST(NULL, storage_open("", &x), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_open(NULL, &x), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_open("memory:extra", &x), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_open("dir:", &x), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_open("dir:/proc/no/such/place", &x), STORAGE_BACKEND_ERROR);
	assert_null(x);
	assert_string_equal(storage_status_name(STORAGE_COMPARE_FAILED),
						"STORAGE_COMPARE_FAILED");
	assert_string_equal(storage_backend_name(f->h),
						strcmp(f->backend, "postgresql") == 0 ? "postgresql" : f->backend);
	if (f->fake)
		ST(f->h, storage_set_clock(f->h, NULL, NULL), STORAGE_OK);
	else
		ST(f->h, storage_set_clock(f->h, fake_clock, f), STORAGE_INVALID_ARGUMENT);
	/* messages are per handle */
	ST(f->h, put(f->h, "", "x", -1, STORAGE_NEVER, NULL), STORAGE_INVALID_ARGUMENT);
	assert_string_not_equal(storage_errmsg(f->h), "");
}

/* ---- bucket layer ------------------------------------------------------ */

static const char *const B12[] = {"b1", "b2"};

static void
test_bucket_names(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const char *bad[] = {"", "a/b", ".", "..", ".hidden"};
	char		big[200];
	const char *bigb[2] = {big, big};
	unsigned char *val;
	size_t		len;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		const char *b[2] = {"ok", bad[i]};

		ST(h, storage_upsert_val(h, B12, 2, bad[i], "v", 1, 0), STORAGE_INVALID_ARGUMENT);
		ST(h, storage_create_val(h, b, 2, "k", "v", 1, 0), STORAGE_INVALID_ARGUMENT);
		ST(h, storage_get_val(h, b, 2, "k", &val, &len), STORAGE_INVALID_ARGUMENT);
		ST(h, storage_delete_key(h, B12, 2, bad[i]), STORAGE_INVALID_ARGUMENT);
		ST(h, storage_acquire_lock(h, bad[i], STORAGE_SEC), STORAGE_INVALID_ARGUMENT);
	}
	ST(h, storage_upsert_val(h, B12, 2, NULL, "v", 1, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_upsert_val(h, NULL, 1, "k", "v", 1, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_upsert_val(h, B12, 2, "k", NULL, 1, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_upsert_val(h, B12, 2, "k", "v", 1, -1), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_create_val(h, B12, 2, "k", "v", 1, -5), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "ttl"));
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ST(h, storage_upsert_val(h, bigb, 2, "k", "v", 1, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_upsert_val(h, bigb, 1, big, "v", 1, 0), STORAGE_INVALID_ARGUMENT);
	/* nothing was written by any of that */
	{
		storage_record *recs;
		size_t		n;

		ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
		assert_int_equal(n, 0);
		storage_records_free(recs, n);
	}
}

static void
test_bucket_values(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	unsigned char *val;
	size_t		len;
	storage_record r;
	int64_t		v;

	ST(h, storage_create_val(h, B12, 2, "k", "v1", 2, 0), STORAGE_OK);
	ST(h, storage_create_val(h, B12, 2, "k", "v2", 2, 0), STORAGE_ALREADY_EXISTS);
	ST(h, storage_get_val(h, B12, 2, "k", &val, &len), STORAGE_OK);
	assert_int_equal(len, 2);
	assert_memory_equal(val, "v1", 2);
	free(val);

	/* same records as the provider API, in both directions */
	ST(h, storage_fetch(h, "b1/b2/k", &r), STORAGE_OK);
	assert_data(&r, "v1");
	assert_null(r.format);
	assert_int_equal(r.version, 1);
	storage_record_clear(&r);
	ST(h, storage_upsert_val(h, B12, 2, "k", "v3", 2, 0), STORAGE_OK);
	ST(h, storage_fetch(h, "b1/b2/k", &r), STORAGE_OK);
	assert_data(&r, "v3");
	assert_int_equal(r.version, 2);	/* bucket writes bump the version */
	storage_record_clear(&r);
	ST(h, put(h, "b1/b2/from-provider", "pv", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, storage_get_val(h, B12, 2, "from-provider", &val, &len), STORAGE_OK);
	assert_int_equal(len, 2);
	assert_memory_equal(val, "pv", 2);
	free(val);

	/* NULL value (stays NULL, as in SQL); empty value; root bucket */
	ST(h, storage_upsert_val(h, NULL, 0, "rootkey", NULL, 0, 0), STORAGE_OK);
	ST(h, storage_get_val(h, NULL, 0, "rootkey", &val, &len), STORAGE_OK);
	assert_int_equal(len, 0);
	assert_null(val);
	ST(h, storage_fetch(h, "rootkey", &r), STORAGE_OK);
	assert_null(r.data);
	storage_record_clear(&r);
	ST(h, storage_upsert_val(h, NULL, 0, "rootkey", "", 0, 0), STORAGE_OK);
	ST(h, storage_get_val(h, NULL, 0, "rootkey", &val, &len), STORAGE_OK);
	assert_int_equal(len, 0);
	assert_non_null(val);
	storage_free(val);
	ST(h, storage_fetch(h, "rootkey", &r), STORAGE_OK);
	assert_non_null(r.data);
	assert_int_equal(r.data_len, 0);
	storage_record_clear(&r);

	/* missing key; a bucket is not a key */
	ST(h, storage_get_val(h, B12, 2, "nope", &val, &len), STORAGE_NOT_FOUND);
	assert_non_null(strstr(storage_errmsg(h), "not found"));
	assert_null(val);
	ST(h, storage_get_val(h, B12, 1, "b2", &val, &len), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "bucket"));
}

static void
test_bucket_ttl(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	unsigned char *val;
	size_t		len;
	char	  **keys;
	size_t		n;

	ST(h, storage_upsert_val(h, B12, 2, "short", "s", 1, TICK), STORAGE_OK);
	ST(h, storage_upsert_val(h, B12, 2, "cleared", "c", 1, TICK), STORAGE_OK);
	ST(h, storage_upsert_val(h, B12, 2, "cleared", "c2", 2, 0), STORAGE_OK);
	ST(h, storage_get_val(h, B12, 2, "short", &val, &len), STORAGE_OK);
	free(val);
	advance(f, 2 * TICK);
	ST(h, storage_get_val(h, B12, 2, "short", &val, &len), STORAGE_NOT_FOUND);
	ST(h, storage_get_val(h, B12, 2, "cleared", &val, &len), STORAGE_OK);
	assert_memory_equal(val, "c2", 2);
	free(val);
	ST(h, storage_get_keys(h, B12, 2, &keys, &n), STORAGE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(keys[0], "cleared");
	storage_strings_free(keys, n);
	/* create over an expired value; delete_key of an expired one */
	ST(h, storage_create_val(h, B12, 2, "short", "s2", 2, TICK), STORAGE_OK);
	advance(f, 2 * TICK);
	ST(h, storage_delete_key(h, B12, 2, "short"), STORAGE_NOT_FOUND);
	/* a bucket holding something live is not a key; an empty one is nothing */
	ST(h, storage_get_val(h, B12, 1, "b2", &val, &len), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_delete_key(h, B12, 2, "cleared"), STORAGE_OK);
	ST(h, storage_get_val(h, B12, 1, "b2", &val, &len), STORAGE_NOT_FOUND);
}

static void
test_compare_and_swap(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	unsigned char *val;
	size_t		len;

	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "n", 1, "p", 1, 0),
	   STORAGE_COMPARE_FAILED);
	ST(h, storage_upsert_val(h, B12, 2, "k", "old", 3, 0), STORAGE_OK);
	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "n", 1, NULL, 0, 0),
	   STORAGE_INVALID_ARGUMENT);
	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "n", 1, "", 0, 0),
	   STORAGE_INVALID_ARGUMENT);
	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "n", 1, "ol", 2, 0),
	   STORAGE_COMPARE_FAILED);
	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "new", 3, "old", 3, TICK),
	   STORAGE_OK);
	ST(h, storage_get_val(h, B12, 2, "k", &val, &len), STORAGE_OK);
	assert_int_equal(len, 3);
	assert_memory_equal(val, "new", 3);
	free(val);
	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "x", 1, "old", 3, 0),
	   STORAGE_COMPARE_FAILED);
	advance(f, 2 * TICK);
	ST(h, storage_compare_and_swap_val(h, B12, 2, "k", "x", 1, "new", 3, 0),
	   STORAGE_COMPARE_FAILED);
}

typedef struct cas_arg
{
	fixture    *f;
	storage_client *h;
	int			i;
	pthread_barrier_t *barrier;
	storage_status result;
} cas_arg;

static void *
cas_thread(void *p)
{
	cas_arg    *a = p;
	char		val[16];

	snprintf(val, sizeof(val), "t%d", a->i);
	pthread_barrier_wait(a->barrier);
	a->result = storage_compare_and_swap_val(a->h, B12, 2, "cas", val,
											 strlen(val), "v0", 2, 0);
	return NULL;
}

static void
test_compare_and_swap_race(void **state)
{
	fixture    *f = *state;
	enum
	{
	NT = 6};
	pthread_t	th[NT];
	cas_arg		args[NT];
	pthread_barrier_t barrier;
	int			wins = 0;

	for (int round = 0; round < 5; round++)
	{
		ST(f->h, storage_upsert_val(f->h, B12, 2, "cas", "v0", 2, 0), STORAGE_OK);
		pthread_barrier_init(&barrier, NULL, NT);
		for (int i = 0; i < NT; i++)
		{
			args[i] = (cas_arg) {.f = f, .h = f->h, .i = i, .barrier = &barrier};
			/* separate handles where the backend shares data between them */
			if (strcmp(f->backend, "memory") != 0 && i % 2 == 1)
				ST(NULL, open_peer(f, &args[i].h), STORAGE_OK);
			pthread_create(&th[i], NULL, cas_thread, &args[i]);
		}
		wins = 0;
		for (int i = 0; i < NT; i++)
		{
			pthread_join(th[i], NULL);
			if (args[i].result == STORAGE_OK)
				wins++;
			else
				assert_int_equal(args[i].result, STORAGE_COMPARE_FAILED);
			if (args[i].h != f->h)
				storage_close(args[i].h);
		}
		pthread_barrier_destroy(&barrier);
		assert_int_equal(wins, 1);
	}
}

static void
test_keys_and_items(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	const char *a[] = {"a"};
	const char *asub[] = {"a", "sub"};
	const char *asub2deep[] = {"a", "sub2", "deep"};
	const char *unknown[] = {"nope", "never"};
	char	  **keys;
	storage_item *items;
	size_t		n;

	ST(h, storage_upsert_val(h, a, 1, "k2", "v2", 2, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, a, 1, "k1", "v1", 2, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, a, 1, "s-b", "x", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, a, 1, "old", "o", 1, TICK), STORAGE_OK);
	ST(h, storage_upsert_val(h, asub, 2, "x", "x", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, asub, 2, "y", "y", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, asub2deep, 3, "z", "z", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, a, 1, "gone", "g", 1, TICK), STORAGE_OK);
	ST(h, storage_upsert_val(h, NULL, 0, "top", "t", 1, 0), STORAGE_OK);
	ST(h, storage_acquire_lock(h, "a-lock", 100 * TICK), STORAGE_OK);
	advance(f, 2 * TICK);

	ST(h, storage_get_keys(h, a, 1, &keys, &n), STORAGE_OK);
	assert_int_equal(n, 5);
	assert_string_equal(keys[0], "k1");
	assert_string_equal(keys[1], "k2");
	assert_string_equal(keys[2], "s-b");
	assert_string_equal(keys[3], "sub");
	assert_string_equal(keys[4], "sub2");
	storage_strings_free(keys, n);

	ST(h, storage_get_items(h, a, 1, &items, &n), STORAGE_OK);
	assert_int_equal(n, 3);
	assert_string_equal(items[0].key, "k1");
	assert_int_equal(items[0].val_len, 2);
	assert_memory_equal(items[0].val, "v1", 2);
	assert_int_equal(items[0].expires_at, STORAGE_NEVER);
	assert_string_equal(items[1].key, "k2");
	assert_string_equal(items[2].key, "s-b");
	storage_items_free(items, n);

	/* the root: locks (".locks") are reserved and not listed */
	ST(h, storage_get_keys(h, NULL, 0, &keys, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(keys[0], "a");
	assert_string_equal(keys[1], "top");
	storage_strings_free(keys, n);

	ST(h, storage_get_keys(h, unknown, 2, &keys, &n), STORAGE_OK);
	assert_int_equal(n, 0);
	storage_strings_free(keys, n);
	ST(h, storage_get_items(h, unknown, 2, &items, &n), STORAGE_OK);
	assert_int_equal(n, 0);
	storage_items_free(items, n);
	ST(h, storage_release_lock(h, "a-lock"), STORAGE_OK);
}

static void
test_upsert_items(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_item good[] = {
		{.key = "x", .val = (unsigned char *) "1", .val_len = 1},
		{.key = "y", .val = (unsigned char *) "2", .val_len = 1},
		{.key = "z", .val = (unsigned char *) "3", .val_len = 1},
	};
	storage_item dup[] = {
		{.key = "p", .val = (unsigned char *) "1", .val_len = 1},
		{.key = "q", .val = (unsigned char *) "2", .val_len = 1},
		{.key = "p", .val = (unsigned char *) "3", .val_len = 1},
	};
	storage_item bad[] = {
		{.key = "p", .val = (unsigned char *) "1", .val_len = 1},
		{.key = "..", .val = (unsigned char *) "2", .val_len = 1},
	};
	storage_item *items;
	size_t		n;

	ST(h, storage_upsert_items(h, B12, 2, dup, 3, 0), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "duplicate"));
	ST(h, storage_upsert_items(h, B12, 2, bad, 2, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_upsert_items(h, B12, 2, good, 3, -1), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_get_items(h, B12, 2, &items, &n), STORAGE_OK);
	assert_int_equal(n, 0);		/* all or nothing */
	storage_items_free(items, n);

	ST(h, storage_upsert_items(h, B12, 2, good, 3, TICK), STORAGE_OK);
	ST(h, storage_upsert_items(h, B12, 2, good + 1, 1, 0), STORAGE_OK);
	ST(h, storage_get_items(h, B12, 2, &items, &n), STORAGE_OK);
	assert_int_equal(n, 3);
	assert_string_equal(items[2].key, "z");
	assert_memory_equal(items[2].val, "3", 1);
	assert_true(items[0].expires_at != STORAGE_NEVER);
	assert_int_equal(items[1].expires_at, STORAGE_NEVER);
	storage_items_free(items, n);
	advance(f, 2 * TICK);
	ST(h, storage_get_items(h, B12, 2, &items, &n), STORAGE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(items[0].key, "y");
	storage_items_free(items, n);
	ST(h, storage_upsert_items(h, B12, 2, NULL, 0, 0), STORAGE_OK);
}

static void
test_delete_key_and_bucket(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	const char *a[] = {"a"};
	const char *asub[] = {"a", "sub"};
	const char *asubd[] = {"a", "sub", "d"};
	const char *asub2[] = {"a", "sub2"};
	int64_t		count;
	char	  **keys;
	size_t		n;

	ST(h, storage_upsert_val(h, a, 1, "k", "v", 1, 0), STORAGE_OK);
	ST(h, storage_delete_key(h, a, 1, "k"), STORAGE_OK);
	ST(h, storage_delete_key(h, a, 1, "k"), STORAGE_NOT_FOUND);

	ST(h, storage_upsert_val(h, asub, 2, "x", "v", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, asub, 2, "y", "v", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, asubd, 3, "z", "v", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, asubd, 3, "old", "v", 1, TICK), STORAGE_OK);
	ST(h, storage_upsert_val(h, asub2, 2, "keep", "v", 1, 0), STORAGE_OK);
	ST(h, storage_upsert_val(h, a, 1, "sub", "a key named like the bucket", 27, 0),
	   STORAGE_OK);
	advance(f, 2 * TICK);
	ST(h, storage_delete_bucket(h, a, 1, "sub", &count), STORAGE_OK);
	assert_int_equal(count, 3);
	ST(h, storage_delete_bucket(h, a, 1, "sub", &count), STORAGE_NOT_FOUND);
	assert_int_equal(count, 0);
	ST(h, storage_delete_bucket(h, a, 1, "..", &count), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_get_keys(h, a, 1, &keys, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(keys[0], "sub");	/* the key */
	assert_string_equal(keys[1], "sub2");
	storage_strings_free(keys, n);
	ST(h, storage_delete_bucket(h, NULL, 0, "a", &count), STORAGE_OK);
	assert_int_equal(count, 2);
}

/* ---- locks ------------------------------------------------------------- */

static void
test_locks(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record r;

	ST(h, storage_acquire_lock(h, "t", 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_acquire_lock(h, "t", -1), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_release_lock(h, "t"), STORAGE_NOT_FOUND);
	ST(h, storage_acquire_lock(h, "t", 100 * TICK), STORAGE_OK);
	ST(h, storage_fetch(h, ".locks/t", &r), STORAGE_OK);
	assert_non_null(r.data);
	assert_int_equal(r.data_len, 0);
	assert_null(r.format);
	assert_true(r.expires_at != STORAGE_NEVER);
	storage_record_clear(&r);
	ST(h, storage_acquire_lock(h, "other", 100 * TICK), STORAGE_OK);	/* no blocking */
	ST(h, storage_release_lock(h, "t"), STORAGE_OK);
	ST(h, storage_release_lock(h, "t"), STORAGE_NOT_FOUND);
	ST(h, storage_release_lock(h, "other"), STORAGE_OK);

	/* an expired lock is taken over */
	ST(h, storage_acquire_lock(h, "exp", TICK), STORAGE_OK);
	advance(f, 2 * TICK);
	ST(h, storage_acquire_lock(h, "exp", TICK), STORAGE_OK);
	advance(f, 2 * TICK);
	ST(h, storage_release_lock(h, "exp"), STORAGE_NOT_FOUND);	/* expired */
}

typedef struct lock_arg
{
	storage_client *h;
	atomic_int *released;
	storage_status st;
	int			released_seen;
} lock_arg;

static void *
lock_thread(void *p)
{
	lock_arg   *a = p;

	a->st = storage_acquire_lock(a->h, "handoff", 1000 * TICK);
	a->released_seen = atomic_load(a->released);
	return NULL;
}

static void
test_lock_handoff(void **state)
{
	fixture    *f = *state;
	atomic_int	released = 0;
	lock_arg	a = {.released = &released};
	pthread_t	th;

	ST(f->h, storage_acquire_lock(f->h, "handoff", 1000 * TICK), STORAGE_OK);
	a.h = f->h;
	if (strcmp(f->backend, "memory") != 0)
		ST(NULL, open_peer(f, &a.h), STORAGE_OK);
	pthread_create(&th, NULL, lock_thread, &a);
	sleep_us(150 * STORAGE_MSEC);	/* the waiter is blocked meanwhile */
	atomic_store(&released, 1);
	ST(f->h, storage_release_lock(f->h, "handoff"), STORAGE_OK);
	pthread_join(th, NULL);
	if (a.h != f->h)
		storage_close(a.h);
	assert_int_equal(a.st, STORAGE_OK);
	assert_int_equal(a.released_seen, 1);
	ST(f->h, storage_release_lock(f->h, "handoff"), STORAGE_OK);
}

/*
 * Locks with fencing tokens: the stolen lock.  A's lease runs out while A
 * still works and B (another handle on the same store; memory: the same
 * handle, its stores are private) takes the lock over: A's fenced release
 * and extend must fail and leave B's lock alone, and B's token is larger,
 * also after a release and after the purge of an expired lock record.
 */
static void
test_fenced_locks(void **state)
{
	fixture    *f = *state;
	storage_client *a = f->h;
	storage_client *b = f->h;
	int64_t		fa,
				fb,
				fc,
				fd,
				count;
	storage_record r;

	if (strcmp(f->backend, "memory") != 0)
		ST(NULL, open_peer(f, &b), STORAGE_OK);

	/* bad input */
	ST(a, storage_acquire_lock_fenced(a, "t", 0, &fa), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_acquire_lock_fenced(a, "t", -1, &fa), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_acquire_lock_fenced(a, "t", TICK, NULL), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_acquire_lock_fenced(a, NULL, TICK, &fa), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_acquire_lock_fenced(a, "a/b", TICK, &fa), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_acquire_lock_fenced(a, ".x", TICK, &fa), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_acquire_lock_fenced(NULL, "t", TICK, &fa), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_release_lock_fenced(a, "t", 0), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_release_lock_fenced(a, "t", -5), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_release_lock_fenced(a, "", 2), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_extend_lock(a, "t", 0, TICK), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_extend_lock(a, "t", 2, 0), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_extend_lock(a, "t", 2, -1), STORAGE_INVALID_ARGUMENT);
	ST(a, storage_extend_lock(a, NULL, 2, TICK), STORAGE_INVALID_ARGUMENT);
	/* a free lock is held with no token */
	ST(a, storage_release_lock_fenced(a, "t", 2), STORAGE_NOT_FOUND);
	ST(a, storage_extend_lock(a, "t", 2, TICK), STORAGE_NOT_FOUND);

	/* A takes the lock with a short lease; the token is the record's version */
	ST(a, storage_acquire_lock_fenced(a, "t", TICK, &fa), STORAGE_OK);
	assert_true(fa >= 2);
	ST(a, storage_fetch(a, ".locks/t", &r), STORAGE_OK);
	assert_int_equal(r.version, fa);
	storage_record_clear(&r);
	ST(a, storage_release_lock_fenced(a, "t", fa + 1), STORAGE_NOT_FOUND);
	ST(a, storage_extend_lock(a, "t", fa + 1, TICK), STORAGE_NOT_FOUND);
	ST(a, storage_extend_lock(a, "t", fa, TICK), STORAGE_OK);

	/* the lease runs out while A still works: not revived, B takes over */
	advance(f, 2 * TICK);
	ST(a, storage_extend_lock(a, "t", fa, TICK), STORAGE_NOT_FOUND);
	ST(b, storage_acquire_lock_fenced(b, "t", 100 * TICK, &fb), STORAGE_OK);
	assert_true(fb > fa);
	/* A's release and extend are refused, and B still holds the lock */
	ST(a, storage_release_lock_fenced(a, "t", fa), STORAGE_NOT_FOUND);
	ST(a, storage_extend_lock(a, "t", fa, 100 * TICK), STORAGE_NOT_FOUND);
	ST(a, storage_fetch(a, ".locks/t", &r), STORAGE_OK);
	assert_int_equal(r.version, fb);
	storage_record_clear(&r);
	ST(b, storage_extend_lock(b, "t", fb, 100 * TICK), STORAGE_OK);
	ST(b, storage_release_lock_fenced(b, "t", fb), STORAGE_OK);
	ST(b, storage_release_lock_fenced(b, "t", fb), STORAGE_NOT_FOUND);

	/* after a release the next token is larger */
	ST(a, storage_acquire_lock_fenced(a, "t", TICK, &fc), STORAGE_OK);
	assert_true(fc > fb);
	/* and after the expired lock record was purged, larger still */
	advance(f, 2 * TICK);
	ST(a, storage_purge_expired(a, 0, &count), STORAGE_OK);
	assert_true(count >= 1);
	ST(b, storage_acquire_lock_fenced(b, "t", 100 * TICK, &fd), STORAGE_OK);
	assert_true(fd > fc);

	/* the plain release still removes whoever holds the lock */
	ST(a, storage_release_lock(a, "t"), STORAGE_OK);
	ST(b, storage_release_lock_fenced(b, "t", fd), STORAGE_NOT_FOUND);
	/* a lock taken without a token is held with none of the tokens */
	ST(a, storage_acquire_lock(a, "u", 100 * TICK), STORAGE_OK);
	ST(a, storage_release_lock_fenced(a, "u", fd), STORAGE_NOT_FOUND);
	ST(a, storage_extend_lock(a, "u", fd, TICK), STORAGE_NOT_FOUND);
	ST(a, storage_release_lock(a, "u"), STORAGE_OK);
	if (b != a)
		storage_close(b);
}

typedef struct fenced_arg
{
	storage_client *h;
	atomic_int *released;
	storage_status st;
	int64_t		fence;
	int			released_seen;
} fenced_arg;

static void *
fenced_thread(void *p)
{
	fenced_arg *a = p;

	a->st = storage_acquire_lock_fenced(a->h, "handoff", 1000 * TICK, &a->fence);
	a->released_seen = atomic_load(a->released);
	return NULL;
}

/* A waiter gets the lock when the holder's fenced release frees it. */
static void
test_fenced_lock_handoff(void **state)
{
	fixture    *f = *state;
	atomic_int	released = 0;
	fenced_arg	a = {.released = &released};
	pthread_t	th;
	int64_t		fence;

	ST(f->h, storage_acquire_lock_fenced(f->h, "handoff", 1000 * TICK, &fence), STORAGE_OK);
	a.h = f->h;
	if (strcmp(f->backend, "memory") != 0)
		ST(NULL, open_peer(f, &a.h), STORAGE_OK);
	pthread_create(&th, NULL, fenced_thread, &a);
	sleep_us(150 * STORAGE_MSEC);	/* the waiter is blocked meanwhile */
	atomic_store(&released, 1);
	ST(f->h, storage_release_lock_fenced(f->h, "handoff", fence), STORAGE_OK);
	pthread_join(th, NULL);
	if (a.h != f->h)
		storage_close(a.h);
	assert_int_equal(a.st, STORAGE_OK);
	assert_int_equal(a.released_seen, 1);
	assert_true(a.fence > fence);
	ST(f->h, storage_release_lock_fenced(f->h, "handoff", fence), STORAGE_NOT_FOUND);
	ST(f->h, storage_release_lock_fenced(f->h, "handoff", a.fence), STORAGE_OK);
}

/* ---- races ------------------------------------------------------------- */

#define COUNTER_ID "race/counter"

typedef struct race_shared
{
	fixture    *f;
	int			target;			/* successful saves per writer */
	atomic_int	successes;
	atomic_int	inconsistent;
	atomic_int	errors;
	atomic_int	writers_done;
	int			nwriters;
} race_shared;

typedef struct race_arg
{
	race_shared *s;
	storage_client *h;
	int			i;
} race_arg;

/* A fetched counter record must carry its own version in its data. */
static bool
consistent(const storage_record *r)
{
	char		buf[32];

	if (r->data == NULL || r->data_len >= sizeof(buf))
		return false;
	memcpy(buf, r->data, r->data_len);
	buf[r->data_len] = '\0';
	return strncmp(buf, "v=", 2) == 0 && strtoll(buf + 2, NULL, 10) == r->version;
}

/* One versioned increment; returns 1 on success, 0 on conflict, -1 on error. */
static int
increment(storage_client *h, atomic_int *inconsistent)
{
	storage_record r;
	storage_record w = {0};
	char		data[32];
	int64_t		expect;
	storage_status st;

	st = storage_fetch(h, COUNTER_ID, &r);
	if (st == STORAGE_OK)
	{
		if (!consistent(&r))
			atomic_fetch_add(inconsistent, 1);
		expect = r.version;
		storage_record_clear(&r);
	}
	else if (st == STORAGE_NOT_FOUND)
		expect = 0;
	else
		return -1;
	snprintf(data, sizeof(data), "v=%" PRId64, expect + 1);
	w.id = COUNTER_ID;
	w.data = (unsigned char *) data;
	w.data_len = strlen(data);
	st = storage_save(h, &w, expect);
	if (st == STORAGE_OK)
		return w.version == expect + 1 ? 1 : -1;
	return st == STORAGE_VERSION_CONFLICT ? 0 : -1;
}

static void *
writer_thread(void *p)
{
	race_arg   *a = p;
	race_shared *s = a->s;

	for (int done = 0; done < s->target;)
	{
		int			r = increment(a->h, &s->inconsistent);

		if (r < 0)
		{
			atomic_fetch_add(&s->errors, 1);
			break;
		}
		done += r;
		atomic_fetch_add(&s->successes, r);
	}
	atomic_fetch_add(&s->writers_done, 1);
	return NULL;
}

/* create / fetch / delete distinct ids, and watch the counter */
static void *
other_thread(void *p)
{
	race_arg   *a = p;
	race_shared *s = a->s;

	for (int n = 0; atomic_load(&s->writers_done) < s->nwriters || n < 5; n++)
	{
		char		id[64];
		storage_record r;
		int64_t		v;
		bool		deleted;

		snprintf(id, sizeof(id), "race/other-%d-%d", a->i, n);
		if (put(a->h, id, id, 0, STORAGE_NEVER, &v) != STORAGE_OK || v != 1)
			atomic_fetch_add(&s->errors, 1);
		if (storage_fetch(a->h, id, &r) != STORAGE_OK ||
			r.version != 1 || r.data_len != strlen(id) ||
			memcmp(r.data, id, r.data_len) != 0)
			atomic_fetch_add(&s->inconsistent, 1);
		storage_record_clear(&r);
		if (storage_fetch(a->h, COUNTER_ID, &r) == STORAGE_OK && !consistent(&r))
			atomic_fetch_add(&s->inconsistent, 1);
		storage_record_clear(&r);
		if (storage_delete(a->h, id, &deleted) != STORAGE_OK || !deleted)
			atomic_fetch_add(&s->errors, 1);
		if (storage_fetch(a->h, id, &r) != STORAGE_NOT_FOUND)
			atomic_fetch_add(&s->inconsistent, 1);
	}
	return NULL;
}

static void
check_counter(storage_client *h, int expected)
{
	storage_record r;

	ST(h, storage_fetch(h, COUNTER_ID, &r), STORAGE_OK);
	assert_true(consistent(&r));
	assert_int_equal(r.version, expected);
	storage_record_clear(&r);
}

static void
test_race_threads(void **state)
{
	fixture    *f = *state;
	enum
	{
	NW = 4, NO = 2};
	pthread_t	th[NW + NO];
	race_arg	args[NW + NO];
	race_shared s = {.f = f, .nwriters = NW};
	storage_record *recs;
	size_t		n;

	s.target = strcmp(f->backend, "memory") == 0 ? 300 :
		strcmp(f->backend, "dir") == 0 ? 40 : 60;
	for (int i = 0; i < NW + NO; i++)
	{
		args[i] = (race_arg) {.s = &s, .h = f->h, .i = i};
		/* odd threads get their own handle where handles share data */
		if (strcmp(f->backend, "memory") != 0 && i % 2 == 1)
			ST(NULL, open_peer(f, &args[i].h), STORAGE_OK);
	}
	for (int i = 0; i < NW + NO; i++)
		pthread_create(&th[i], NULL, i < NW ? writer_thread : other_thread, &args[i]);
	for (int i = 0; i < NW + NO; i++)
	{
		pthread_join(th[i], NULL);
		if (args[i].h != f->h)
			storage_close(args[i].h);
	}
	assert_int_equal(atomic_load(&s.errors), 0);
	assert_int_equal(atomic_load(&s.inconsistent), 0);
	assert_int_equal(atomic_load(&s.successes), NW * s.target);
	check_counter(f->h, NW * s.target);	/* no lost update */
	ST(f->h, storage_list(f->h, "race/other", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 0);
	storage_records_free(recs, n);
}

/* dir only: the same race across processes */
static void
test_race_processes(void **state)
{
	fixture    *f = *state;
	enum
	{
	NP = 4, TARGET = 20};
	int			fds[2];
	pid_t		pids[NP];
	int			total = 0,
				bad = 0;

	assert_int_equal(pipe(fds), 0);
	for (int p = 0; p < NP; p++)
	{
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0)
		{
			/* child: its own handle, never the parent's */
			storage_client *h;
			atomic_int	inconsistent = 0;
			int			result[2] = {0, 0};

			close(fds[0]);
			if (open_peer(f, &h) != STORAGE_OK)
				_exit(2);
			for (int done = 0; done < TARGET;)
			{
				int			r = increment(h, &inconsistent);
				char		id[64];
				int64_t		v;

				if (r < 0)
				{
					result[1]++;
					break;
				}
				done += r;
				result[0] += r;
				snprintf(id, sizeof(id), "race/proc-%d-%d", p, done);
				if (put(h, id, id, -1, STORAGE_NEVER, &v) != STORAGE_OK ||
					storage_delete(h, id, NULL) != STORAGE_OK)
					result[1]++;
			}
			result[1] += atomic_load(&inconsistent);
			storage_close(h);
			if (write(fds[1], result, sizeof(result)) != sizeof(result))
				_exit(3);
			_exit(0);
		}
	}
	close(fds[1]);
	for (int p = 0; p < NP; p++)
	{
		int			result[2];

		assert_int_equal(read(fds[0], result, sizeof(result)), sizeof(result));
		total += result[0];
		bad += result[1];
	}
	close(fds[0]);
	for (int p = 0; p < NP; p++)
	{
		int			status;

		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(bad, 0);
	assert_int_equal(total, NP * TARGET);
	check_counter(f->h, NP * TARGET);
}

/* ---- batch operations ---------------------------------------------------- */

/* not exported from the shared library: the suite links the static one */
extern void storage_force_batch_fallback(storage_client *h, bool on);

static storage_record
rec_of(const char *id, const char *data)
{
	storage_record r = {0};

	r.id = (char *) id;
	r.data = (unsigned char *) data;
	r.data_len = data ? strlen(data) : 0;
	r.version = 777;			/* ignored on input, kept on failure */
	return r;
}

/* The ids of recs[0..n-1] must be exactly want[0..n-1]. */
static void
assert_ids(const storage_record *recs, size_t n, const char *const *want,
		   size_t nwant)
{
	assert_int_equal(n, nwant);
	for (size_t i = 0; i < n; i++)
		assert_string_equal(recs[i].id, want[i]);
}

/* Number of live records whose id starts with prefix. */
static size_t
count_live(storage_client *h, const char *prefix)
{
	storage_record *recs;
	size_t		n;

	ST(h, storage_list(h, prefix, &recs, &n), STORAGE_OK);
	storage_records_free(recs, n);
	return n;
}

static void
test_batch_save_kinds(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const unsigned char bin[] = {0, 0xff, '{', '"', 0};
	int64_t		exp = storage_now(h) + 3600 * STORAGE_SEC + 654321;
	storage_record recs[6];
	int64_t		expect[6] = {0, 2, -1, -1, 0, 0};
	static const int64_t want[6] = {1, 3, 2, 1, 1, 1};
	static const char *const ids[] = {"bs/a", "bs/b", "bs/c", "bs/e", "bs/n", "bs/z"};
	storage_record *got;
	size_t		n;
	int64_t		v;

	ST(h, put(h, "bs/a", "a1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bs/b", "b1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bs/b", "b2", 1, STORAGE_NEVER, &v), STORAGE_OK);

	/* caller order is not id order: versions must follow the caller's */
	recs[0] = rec_of("bs/z", "z1");		/* create */
	recs[1] = rec_of("bs/b", "b3");		/* versioned */
	recs[2] = rec_of("bs/a", "a2");		/* unversioned over v1 */
	recs[3] = rec_of("bs/c", NULL);		/* unversioned, new, NULL data */
	recs[4] = rec_of("bs/e", "");		/* create, empty data */
	recs[5] = rec_of("bs/n", NULL);		/* create, binary data, format, expiry */
	recs[5].data = (unsigned char *) bin;
	recs[5].data_len = sizeof(bin);
	recs[5].format = "application/x; q=\"1\"";
	recs[5].expires_at = exp;
	ST(h, storage_save_many(h, recs, 6, expect), STORAGE_OK);
	for (int i = 0; i < 6; i++)
		assert_int_equal(recs[i].version, want[i]);

	ST(h, storage_fetch_many(h, ids, 6, &got, &n), STORAGE_OK);
	assert_ids(got, n, ids, 6);
	assert_int_equal(got[0].version, 2);
	assert_data(&got[0], "a2");
	assert_data(&got[1], "b3");
	assert_null(got[2].data);
	assert_int_equal(got[2].data_len, 0);
	assert_non_null(got[3].data);
	assert_int_equal(got[3].data_len, 0);
	assert_int_equal(got[4].data_len, sizeof(bin));
	assert_memory_equal(got[4].data, bin, sizeof(bin));
	assert_string_equal(got[4].format, "application/x; q=\"1\"");
	assert_int_equal(got[4].expires_at, exp);
	assert_null(got[0].format);
	assert_int_equal(got[0].expires_at, STORAGE_NEVER);
	assert_data(&got[5], "z1");
	storage_records_free(got, n);

	/* expect_versions NULL: all unversioned */
	ST(h, storage_save_many(h, recs, 2, NULL), STORAGE_OK);
	assert_int_equal(recs[0].version, 2);
	assert_int_equal(recs[1].version, 4);
}

static void
test_batch_save_conflict(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record recs[4];
	int64_t		expect[4] = {0, 1, 3, 0};
	storage_record *got;
	size_t		n;
	int64_t		v;

	ST(h, put(h, "bc/x", "x1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bc/y", "y1", 0, STORAGE_NEVER, &v), STORAGE_OK);

	/*
	 * "bc/new" and "bc/x" would succeed; "bc/zz" (no such record) is the
	 * first conflict in the caller's order, "bc/y" (exists) the second,
	 * although it comes first in id order.
	 */
	recs[0] = rec_of("bc/new", "n");
	recs[1] = rec_of("bc/x", "x2");
	recs[2] = rec_of("bc/zz", "zz");
	recs[3] = rec_of("bc/y", "y2");
	ST(h, storage_save_many(h, recs, 4, expect), STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(storage_errmsg(h), "bc/zz"));
	assert_null(strstr(storage_errmsg(h), "bc/y"));
	for (int i = 0; i < 4; i++)
		assert_int_equal(recs[i].version, 777);

	/* nothing was written */
	ST(h, storage_list(h, "bc/", &got, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_int_equal(got[0].version, 1);
	assert_data(&got[0], "x1");
	assert_int_equal(got[1].version, 1);
	assert_data(&got[1], "y1");
	storage_records_free(got, n);

	/* a version overflow is bad input, checked before any write */
	expect[2] = INT64_MAX;
	ST(h, storage_save_many(h, recs, 3, expect), STORAGE_INVALID_ARGUMENT);
	assert_int_equal(count_live(h, "bc/"), 2);

	/* the same batch with the right versions goes through */
	expect[2] = 0;
	expect[3] = 1;
	ST(h, storage_save_many(h, recs, 4, expect), STORAGE_OK);
	assert_int_equal(recs[0].version, 1);
	assert_int_equal(recs[1].version, 2);
	assert_int_equal(recs[2].version, 1);
	assert_int_equal(recs[3].version, 2);
	assert_int_equal(count_live(h, "bc/"), 4);
}

static void
test_batch_bad_args(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	char		long_id[STORAGE_MAX_ID_LEN + 2];
	const char *bad_ids[][2] = {{"ok", ""}, {"ok", NULL}, {"ok", long_id}};
	storage_record recs[3];
	storage_record *got = (storage_record *) 1;
	size_t		n = 99;
	int64_t		count = 99;

	memset(long_id, 'x', sizeof(long_id) - 1);
	long_id[STORAGE_MAX_ID_LEN + 1] = '\0';

	/* a repeated id: nothing is written, not even the other records */
	recs[0] = rec_of("bb/a", "1");
	recs[1] = rec_of("bb/b", "2");
	recs[2] = rec_of("bb/a", "3");
	ST(h, storage_save_many(h, recs, 3, NULL), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "bb/a"));
	assert_int_equal(recs[1].version, 777);
	for (size_t i = 0; i < 3; i++)
	{
		storage_record bad[2] = {rec_of("bb/ok", "1"), rec_of(bad_ids[i][1], "2")};

		ST(h, storage_save_many(h, bad, 2, NULL), STORAGE_INVALID_ARGUMENT);
		ST(h, storage_fetch_many(h, bad_ids[i], 2, &got, &n), STORAGE_INVALID_ARGUMENT);
		assert_null(got);
		assert_int_equal(n, 0);
		ST(h, storage_delete_many(h, bad_ids[i], 2, &count), STORAGE_INVALID_ARGUMENT);
		assert_int_equal(count, 0);
	}
	recs[1].data = NULL;
	recs[1].data_len = 1;
	ST(h, storage_save_many(h, recs, 2, NULL), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_save_many(h, NULL, 1, NULL), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_fetch_many(h, NULL, 1, &got, &n), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_fetch_many(h, bad_ids[0], 1, NULL, &n), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_delete_many(h, NULL, 1, &count), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_save_many(NULL, recs, 1, NULL), STORAGE_INVALID_ARGUMENT);
	assert_int_equal(count_live(h, ""), 0);

	/* empty batches are fine, and NULL arrays with them */
	ST(h, storage_save_many(h, NULL, 0, NULL), STORAGE_OK);
	ST(h, storage_fetch_many(h, NULL, 0, &got, &n), STORAGE_OK);
	assert_int_equal(n, 0);
	storage_records_free(got, n);
	ST(h, storage_delete_many(h, NULL, 0, &count), STORAGE_OK);
	assert_int_equal(count, 0);
}

static void
test_batch_expired(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const char *const ids[] = {"be/gone", "be/live", "be/soon"};
	storage_record recs[2];
	int64_t		expect[2] = {1, -1};
	storage_record *got;
	size_t		n;
	int64_t		v,
				count;

	ST(h, put(h, "be/live", "l", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "be/gone", "g", 0, storage_now(h) - STORAGE_SEC, &v), STORAGE_OK);
	ST(h, put(h, "be/soon", "s", 0, storage_now(h) + TICK, &v), STORAGE_OK);
	ST(h, put(h, "be/soon", "s", 1, storage_now(h) + TICK, &v), STORAGE_OK);
	advance(f, 2 * TICK);

	ST(h, storage_fetch_many(h, ids, 3, &got, &n), STORAGE_OK);
	assert_ids(got, n, ids + 1, 1);
	storage_records_free(got, n);

	/* expired = absent: expect 1 conflicts, expect 0 creates version 1 */
	recs[0] = rec_of("be/gone", "g2");
	recs[1] = rec_of("be/soon", "s2");
	ST(h, storage_save_many(h, recs, 2, expect), STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(storage_errmsg(h), "be/gone"));
	expect[0] = 0;
	ST(h, storage_save_many(h, recs, 2, expect), STORAGE_OK);
	assert_int_equal(recs[0].version, 1);
	assert_int_equal(recs[1].version, 1);	/* unversioned over expired v2 */

	/* delete_many counts only live records, removes expired ones too */
	ST(h, put(h, "be/old", "o", 0, storage_now(h) - STORAGE_SEC, &v), STORAGE_OK);
	{
		const char *del[] = {"be/old", "be/live", "be/missing", "be/gone"};

		ST(h, storage_delete_many(h, del, 4, &count), STORAGE_OK);
		assert_int_equal(count, 2);
	}
	ST(h, storage_purge_expired(h, 0, &count), STORAGE_OK);
	assert_int_equal(count, 0);		/* be/old is gone already */
	assert_int_equal(count_live(h, "be/"), 1);
}

static void
test_batch_fetch_delete(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const char *const ask[] = {
		"bf/b", "bf/zz", "bf/a", "bf/b", "bf/a", "bf/missing", "bf/c"
	};
	static const char *const want[] = {"bf/a", "bf/b", "bf/c"};
	storage_record *got;
	size_t		n;
	int64_t		v,
				count;

	ST(h, put(h, "bf/c", "c", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bf/a", "a", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bf/b", "b", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bf/b", "b2", 1, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "bf/other", "o", 0, STORAGE_NEVER, &v), STORAGE_OK);

	/* one record per distinct live id, sorted by id */
	ST(h, storage_fetch_many(h, ask, 7, &got, &n), STORAGE_OK);
	assert_ids(got, n, want, 3);
	assert_data(&got[0], "a");
	assert_int_equal(got[1].version, 2);
	assert_data(&got[1], "b2");
	storage_records_free(got, n);
	ST(h, storage_fetch_many(h, ask + 1, 1, &got, &n), STORAGE_OK);
	assert_int_equal(n, 0);
	storage_records_free(got, n);

	/* repeated ids are deleted (and counted) once */
	ST(h, storage_delete_many(h, ask, 7, &count), STORAGE_OK);
	assert_int_equal(count, 3);
	ST(h, storage_delete_many(h, ask, 7, &count), STORAGE_OK);
	assert_int_equal(count, 0);
	ST(h, storage_delete_many(h, ask, 7, NULL), STORAGE_OK);
	assert_int_equal(count_live(h, "bf/"), 1);
}

/* ids that need quoting in array literals, and non-ASCII (valid UTF-8) */
static const char *const odd_ids[] = {
	"q\"uote", "back\\slash", "com,ma", "{brace}", "}", "{", "\"\"", "NULL",
	"null", " lead and trail ", "tab\there", "new\nline", "caf\xc3\xa9",
	"\xe6\x97\xa5\xe6\x9c\xac", "\xf0\x9f\x98\x80", "a'b", "(1,2)", "[0:1]={x}",
	"\\\"{,}\"\\", "\\x41"
};
#define NODD (sizeof(odd_ids) / sizeof(odd_ids[0]))

static void
test_batch_odd_ids(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record recs[NODD];
	storage_record *got;
	size_t		n;
	int64_t		count;

	for (size_t i = 0; i < NODD; i++)
		recs[i] = rec_of(odd_ids[i], odd_ids[i]);
	ST(h, storage_save_many(h, recs, NODD, NULL), STORAGE_OK);
	for (size_t i = 0; i < NODD; i++)
	{
		storage_record r;

		assert_int_equal(recs[i].version, 1);
		ST(h, storage_fetch(h, odd_ids[i], &r), STORAGE_OK);	/* single sees it */
		assert_data(&r, odd_ids[i]);
		storage_record_clear(&r);
	}
	ST(h, storage_fetch_many(h, odd_ids, NODD, &got, &n), STORAGE_OK);
	assert_int_equal(n, NODD);
	for (size_t i = 0; i < n; i++)
	{
		assert_data(&got[i], got[i].id);
		if (i > 0)
			assert_true(strcmp(got[i - 1].id, got[i].id) < 0);
	}
	storage_records_free(got, n);
	ST(h, storage_save_many(h, recs, NODD, NULL), STORAGE_OK);
	assert_int_equal(recs[NODD - 1].version, 2);
	ST(h, storage_delete_many(h, odd_ids, NODD, &count), STORAGE_OK);
	assert_int_equal(count, NODD);
	assert_int_equal(count_live(h, ""), 0);
}

/* The front end's loops for backends without native batch operations. */
static void
test_batch_fallback(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	static const char *const ask[] = {"fb/b", "fb/x", "fb/a", "fb/b"};
	storage_record recs[3] = {rec_of("fb/b", "b"), rec_of("fb/a", "a"),
	rec_of("fb/a", "dup")};
	int64_t		expect[2] = {0, 0};
	storage_record *got;
	size_t		n;
	int64_t		count;

	storage_force_batch_fallback(h, true);
	ST(h, storage_save_many(h, recs, 3, NULL), STORAGE_INVALID_ARGUMENT);
	assert_int_equal(count_live(h, "fb/"), 0);
	ST(h, storage_save_many(h, recs, 2, expect), STORAGE_OK);
	assert_int_equal(recs[0].version, 1);
	assert_int_equal(recs[1].version, 1);
	ST(h, storage_fetch_many(h, ask, 4, &got, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(got[0].id, "fb/a");
	assert_string_equal(got[1].id, "fb/b");
	storage_records_free(got, n);

	/* documented: the fallback is not atomic, the first save stays */
	recs[0] = rec_of("fb/new", "n");
	recs[1] = rec_of("fb/a", "a2");
	ST(h, storage_save_many(h, recs, 2, expect), STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(storage_errmsg(h), "fb/a"));
	assert_int_equal(recs[0].version, 777);
	assert_int_equal(count_live(h, "fb/"), 3);

	ST(h, storage_delete_many(h, ask, 4, &count), STORAGE_OK);
	assert_int_equal(count, 2);
	storage_force_batch_fallback(h, false);
}

/* Batches are atomic for concurrent readers and writers on other handles. */
typedef struct pair_arg
{
	fixture    *f;
	storage_client *h;
	int			rounds;
	atomic_int *bad;
	atomic_int *writers_left;
} pair_arg;

static const char *const pair_ids[] = {"pair/a", "pair/b"};

/* Both pair records, with equal versions and data; -1 on error/inconsistency. */
static int64_t
read_pair(storage_client *h)
{
	storage_record *got;
	size_t		n;
	int64_t		v = -1;

	if (storage_fetch_many(h, pair_ids, 2, &got, &n) != STORAGE_OK)
		return -1;
	if (n == 0)
		v = 0;
	else if (n == 2 && got[0].version == got[1].version &&
			 got[0].data_len == got[1].data_len &&
			 memcmp(got[0].data, got[1].data, got[0].data_len) == 0)
		v = got[0].version;
	storage_records_free(got, n);
	return v;
}

static void *
pair_writer(void *p)
{
	pair_arg   *a = p;

	for (int done = 0; done < a->rounds;)
	{
		int64_t		v = read_pair(a->h);
		char		data[32];
		storage_record recs[2];
		int64_t		expect[2] = {v, v};
		storage_status st;

		if (v < 0)
		{
			atomic_fetch_add(a->bad, 1);
			break;
		}
		snprintf(data, sizeof(data), "%d", done);
		recs[0] = rec_of("pair/b", data);	/* not in id order */
		recs[1] = rec_of("pair/a", data);
		st = storage_save_many(a->h, recs, 2, expect);
		if (st == STORAGE_OK)
			done++;
		else if (st != STORAGE_VERSION_CONFLICT)
		{
			atomic_fetch_add(a->bad, 1);
			break;
		}
	}
	atomic_fetch_sub(a->writers_left, 1);
	return NULL;
}

static void *
pair_reader(void *p)
{
	pair_arg   *a = p;

	while (atomic_load(a->writers_left) > 0)
		if (read_pair(a->h) < 0)
			atomic_fetch_add(a->bad, 1);
	return NULL;
}

static void
test_batch_race(void **state)
{
	fixture    *f = *state;
	enum
	{
	NT = 3};
	atomic_int	bad = 0;
	atomic_int	writers_left = NT - 1;
	pthread_t	th[NT];
	pair_arg	args[NT];
	int			rounds = strcmp(f->backend, "dir") == 0 ? 15 : 40;
	storage_record probe = {.id = "probe", .data = (const unsigned char *) "p",
	.data_len = 1};

	/* the writers' threads cannot skip: ask the server first */
	ST(f->h, storage_save_many(f->h, &probe, 1, NULL), STORAGE_OK);
	ST(f->h, storage_delete(f->h, "probe", NULL), STORAGE_OK);
	for (int i = 0; i < NT; i++)
	{
		args[i] = (pair_arg) {.f = f, .h = f->h, .rounds = rounds,
		.bad = &bad, .writers_left = &writers_left};
		if (strcmp(f->backend, "memory") != 0 && i > 0)
			ST(NULL, open_peer(f, &args[i].h), STORAGE_OK);
	}
	for (int i = 0; i < NT; i++)
		pthread_create(&th[i], NULL, i < NT - 1 ? pair_writer : pair_reader, &args[i]);
	for (int i = 0; i < NT; i++)
	{
		pthread_join(th[i], NULL);
		if (args[i].h != f->h)
			storage_close(args[i].h);
	}
	assert_int_equal(atomic_load(&bad), 0);
	assert_int_equal(read_pair(f->h), (NT - 1) * rounds);	/* no lost update */
}

/* postgresql only: a terminated connection is re-established */
static void
test_pg_reconnect(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record r;
	PGconn	   *admin;
	PGresult   *res;
	int64_t		v;
	storage_status st;

	ST(h, put(h, "re", "1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	admin = PQconnectdb(pg_admin_uri);
	assert_int_equal(PQstatus(admin), CONNECTION_OK);
	res = PQexec(admin,
				 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
				 "WHERE application_name = 'storage_client' AND pid <> pg_backend_pid()");
	assert_int_equal(PQresultStatus(res), PGRES_TUPLES_OK);
	assert_true(atoi(PQgetvalue(res, 0, 0)) >= 1);
	PQclear(res);
	/* wait until the server has really closed it */
	for (int i = 0; i < 100; i++)
	{
		res = PQexec(admin, "SELECT count(*) FROM pg_stat_activity "
					 "WHERE application_name = 'storage_client'");
		st = atoi(PQgetvalue(res, 0, 0)) == 0 ? STORAGE_OK : STORAGE_BACKEND_ERROR;
		PQclear(res);
		if (st == STORAGE_OK)
			break;
		sleep_us(20 * STORAGE_MSEC);
	}
	PQfinish(admin);

	/*
	 * Through a pooler in session mode the farewell reaches the client only
	 * when the pooler relays it, some time after the server connection is
	 * gone: a write sent before that fails as "may or may not have
	 * committed".  There a read goes first (a read is retried once on a new
	 * connection).
	 */
	if (getenv("STORAGE_TEST_PG_SESSION_POOLER") != NULL)
	{
		ST(h, storage_fetch(h, "re", &r), STORAGE_OK);
		storage_record_clear(&r);
	}

	/* the idle connection's death is noticed before anything is sent */
	ST(h, put(h, "re", "2", 1, STORAGE_NEVER, &v), STORAGE_OK);
	assert_int_equal(v, 2);
	ST(h, storage_fetch(h, "re", &r), STORAGE_OK);
	assert_int_equal(r.version, 2);
	assert_data(&r, "2");
	storage_record_clear(&r);
}

typedef struct lock_waiter
{
	fixture    *f;
	storage_status st;
} lock_waiter;

static void *
acquire_thread(void *p)
{
	lock_waiter *w = p;
	storage_client *h;

	w->st = open_peer(w->f, &h);
	if (w->st == STORAGE_OK)
	{
		w->st = storage_acquire_lock(h, "server-wait", 60 * STORAGE_SEC);
		if (w->st == STORAGE_OK)
			w->st = storage_release_lock(h, "server-wait");
		storage_close(h);
	}
	return NULL;
}

/*
 * postgresql only: the bucket layer runs the server's functions, so a lock
 * waiter waits inside storage_acquire_lock on the server (woken at the
 * release), where pg_stat_activity shows it; the generic layer's polling
 * saves never show there as that call.
 */
static void
test_pg_server_buckets(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	lock_waiter w = {.f = f, .st = STORAGE_BACKEND_ERROR};
	pthread_t	th;
	PGconn	   *admin = PQconnectdb(pg_admin_uri);
	bool		seen = false;

	assert_int_equal(PQstatus(admin), CONNECTION_OK);
	ST(h, storage_acquire_lock(h, "server-wait", 60 * STORAGE_SEC), STORAGE_OK);
	assert_int_equal(pthread_create(&th, NULL, acquire_thread, &w), 0);
	for (int i = 0; i < 500 && !seen; i++)
	{
		PGresult   *res = PQexec(admin,
								 "SELECT count(*) FROM pg_stat_activity "
								 "WHERE state = 'active' AND query LIKE '%storage_acquire_lock%' "
								 "AND pid <> pg_backend_pid()");

		seen = PQresultStatus(res) == PGRES_TUPLES_OK && atoi(PQgetvalue(res, 0, 0)) == 1;
		PQclear(res);
		if (!seen)
			sleep_us(20 * STORAGE_MSEC);
	}
	ST(h, storage_release_lock(h, "server-wait"), STORAGE_OK);
	pthread_join(th, NULL);
	PQfinish(admin);
	assert_true(seen);
	assert_int_equal(w.st, STORAGE_OK);
}

/* postgresql only: server errors map onto statuses */
static void
test_pg_errors(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record *recs;
	size_t		n;
	int64_t		v;
	PGconn	   *admin = PQconnectdb(pg_admin_uri);
	const char *enc = PQparameterStatus(admin, "server_encoding");

	/* invalid UTF-8 is refused by the server: a backend error, no write */
	if (enc && strcmp(enc, "UTF8") == 0)
	{
		ST(h, put(h, "bad\xff", "x", -1, STORAGE_NEVER, &v), STORAGE_BACKEND_ERROR);
		assert_non_null(strstr(storage_errmsg(h), "SQLSTATE"));
		assert_string_equal(storage_errcode(h), "22021");
		assert_false(storage_retryable(h));
		ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
		assert_int_equal(n, 0);
		storage_records_free(recs, n);
	}
	PQfinish(admin);
	ST(h, put(h, "c", "x", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "c", "x", 0, STORAGE_NEVER, &v), STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(storage_errmsg(h), "SV001"));
	assert_string_equal(storage_errcode(h), "SV001");
	assert_false(storage_retryable(h));
}

/* ---- errors, version ----------------------------------------------------- */

/* storage_errmsg & co. answer from one slot per thread, tagged by handle */
static void
test_error_detail(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_client *other;
	storage_record r;

	assert_string_equal(storage_client_version(), STORAGE_CLIENT_VERSION);
	assert_int_equal(storage_client_version_num(), STORAGE_CLIENT_VERSION_NUM);
	assert_int_equal(STORAGE_CLIENT_VERSION_NUM,
					 STORAGE_CLIENT_VERSION_MAJOR * 10000 +
					 STORAGE_CLIENT_VERSION_MINOR * 100 +
					 STORAGE_CLIENT_VERSION_PATCH);

	ST(h, open_peer(f, &other), STORAGE_OK);
	/* a decision of the library: no code, not retryable, nothing applied */
	ST(h, storage_fetch(h, "", &r), STORAGE_INVALID_ARGUMENT);
	assert_string_not_equal(storage_errmsg(h), "");
	assert_string_equal(storage_errcode(h), "");
	assert_int_equal(storage_errno(h), 0);
	assert_false(storage_retryable(h));
	assert_int_equal(storage_outcome_of(h), STORAGE_OUTCOME_NOT_APPLIED);
	/* not other's failure; NULL asks for this thread's latest, any handle */
	assert_string_equal(storage_errmsg(other), "");
	assert_string_equal(storage_errmsg(NULL), storage_errmsg(h));
	/* a success does not clear the slot */
	ST(h, put(h, "ok", "x", -1, STORAGE_NEVER, NULL), STORAGE_OK);
	assert_string_not_equal(storage_errmsg(h), "");
	/* the next failure, on another handle, takes the slot over */
	ST(other, storage_fetch(other, "missing", &r), STORAGE_NOT_FOUND);
	assert_string_equal(storage_errmsg(h), "");
	assert_string_equal(storage_errcode(h), "");
	assert_non_null(strstr(storage_errmsg(other), "missing"));
	storage_close(other);

	/* a failed open is reported through NULL */
	assert_int_equal(storage_open("dir:/dev/null/store", &other), STORAGE_BACKEND_ERROR);
	assert_null(other);
	assert_string_equal(storage_errcode(NULL), "ENOTDIR");
	assert_int_equal(storage_errno(NULL), ENOTDIR);
	assert_false(storage_retryable(NULL));
}

/* ---- pipelining ---------------------------------------------------------- */

static storage_op
save_op(const char *id, const char *data, int64_t expect)
{
	storage_op op = {.kind = STORAGE_OP_SAVE, .expect_version = expect};

	op.rec = rec_of(id, data);
	return op;
}

static storage_op
id_op(storage_op_kind kind, const char *id)
{
	storage_op op = {.kind = kind, .id = id};

	return op;
}

static bool
is_postgresql(fixture *f)
{
	return strcmp(f->backend, "postgresql") == 0;
}

/* The live version of id, 0 if none. */
static int64_t
live_version(storage_client *h, const char *id)
{
	storage_record r;
	storage_status st = storage_fetch(h, id, &r);
	int64_t		v = st == STORAGE_OK ? r.version : 0;

	if (st != STORAGE_NOT_FOUND)
		ST(h, st, STORAGE_OK);
	storage_record_clear(&r);
	return v;
}

/* Separate calls: each its own result; a failing call changes no other. */
static void
test_pipeline_separate(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_op	ops[9];
	int64_t		v;

	ST(h, put(h, "pl/b", "b1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ops[0] = save_op("pl/a", "a1", -1);
	ops[1] = save_op("pl/b", "b2", 1);
	ops[2] = save_op("pl/a", "a2", 5);	/* conflict */
	ops[3] = id_op(STORAGE_OP_FETCH, "pl/a");
	ops[4] = id_op(STORAGE_OP_DELETE, "pl/b");
	ops[5] = id_op(STORAGE_OP_FETCH, "pl/b");
	ops[6] = save_op("", "x", -1);	/* bad id: not sent */
	ops[7] = save_op("pl/c", NULL, 0);
	ops[8] = id_op(STORAGE_OP_DELETE, "pl/none");
	ops[8].errmsg = (char *) "not freed";	/* results are overwritten */

	ST(h, storage_pipeline(h, ops, 9, 0), STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(storage_errmsg(h), "pl/a"));

	assert_int_equal(ops[0].status, STORAGE_OK);
	assert_int_equal(ops[0].version, 1);
	assert_null(ops[0].errmsg);
	assert_int_equal(ops[1].status, STORAGE_OK);
	assert_int_equal(ops[1].version, 2);
	assert_int_equal(ops[2].status, STORAGE_VERSION_CONFLICT);
	assert_int_equal(ops[2].version, 0);
	assert_non_null(strstr(ops[2].errmsg, "pl/a"));
	assert_string_equal(ops[2].errcode, is_postgresql(f) ? "SV001" : "");
	assert_int_equal(ops[2].outcome, STORAGE_OUTCOME_NOT_APPLIED);
	assert_int_equal(ops[3].status, STORAGE_OK);
	assert_int_equal(ops[3].version, 1);
	assert_string_equal(ops[3].record.id, "pl/a");
	assert_data(&ops[3].record, "a1");
	assert_int_equal(ops[4].status, STORAGE_OK);
	assert_true(ops[4].deleted);
	assert_int_equal(ops[5].status, STORAGE_NOT_FOUND);
	assert_null(ops[5].record.id);
	assert_int_equal(ops[6].status, STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(ops[6].errmsg, "id is empty"));
	assert_int_equal(ops[7].status, STORAGE_OK);
	assert_int_equal(ops[7].version, 1);
	assert_int_equal(ops[8].status, STORAGE_OK);
	assert_false(ops[8].deleted);
	assert_null(ops[8].errmsg);

	/* what the calls did stays done around the failed one */
	assert_int_equal(live_version(h, "pl/a"), 1);
	assert_int_equal(live_version(h, "pl/b"), 0);
	assert_int_equal(live_version(h, "pl/c"), 1);

	/* cleared results can be run again: the same calls, new results */
	storage_pipeline_clear(ops, 9);
	assert_null(ops[3].record.id);
	assert_null(ops[2].errmsg);
	ops[1].expect_version = 0;	/* b was deleted */
	ops[2].expect_version = 2;	/* a is at 2 after ops[0] */
	ST(h, storage_pipeline(h, ops, 4, 0), STORAGE_OK);
	assert_int_equal(ops[0].version, 2);
	assert_int_equal(ops[1].version, 1);
	assert_int_equal(ops[2].version, 3);
	assert_int_equal(ops[3].version, 3);
	assert_data(&ops[3].record, "a2");
	storage_pipeline_clear(ops, 9);
}

/* storage_pipeline, or SKIPPED (results freed) where the server lacks a call */
static storage_status
pipeline_or_skip(const char *test, storage_client *h, storage_op *ops, size_t n,
				 unsigned int flags)
{
	storage_status st = storage_pipeline(h, ops, n, flags);

	if (unsupported(h, st))
	{
		storage_pipeline_clear(ops, n);
		printf("SKIPPED %s: %s\n", test, storage_errmsg(h));
		fflush(stdout);
		nskipped++;
		skip();
	}
	return st;
}

/* The atomic form: all calls or none. */
static void
test_pipeline_atomic(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_op	ops[4];
	int64_t		v;

	ST(h, put(h, "pa/x", "x1", 0, STORAGE_NEVER, &v), STORAGE_OK);

	/* one conflict: it carries the error, the others are ABORTED */
	ops[0] = save_op("pa/x", "x2", 1);
	ops[1] = save_op("pa/z", "z1", 0);
	ops[2] = save_op("pa/y", "y1", 7);
	ops[3] = save_op("pa/w", "w1", -1);
	ST(h, pipeline_or_skip(__func__, h, ops, 4, STORAGE_PIPELINE_ATOMIC),
	   STORAGE_VERSION_CONFLICT);
	assert_int_equal(ops[2].status, STORAGE_VERSION_CONFLICT);
	assert_non_null(strstr(ops[2].errmsg, "pa/y"));
	for (int i = 0; i < 4; i++)
	{
		if (i == 2)
			continue;
		assert_int_equal(ops[i].status, STORAGE_ABORTED);
		assert_int_equal(ops[i].version, 0);
		assert_non_null(strstr(ops[i].errmsg, "call 2 of the atomic pipeline"));
	}
	assert_int_equal(live_version(h, "pa/x"), 1);
	assert_int_equal(live_version(h, "pa/z"), 0);
	assert_int_equal(live_version(h, "pa/w"), 0);
	storage_pipeline_clear(ops, 4);

	/* a bad call: nothing is run */
	ops[2] = save_op("pa/y", NULL, -1);
	ops[2].rec.data_len = 3;
	ST(h, pipeline_or_skip(__func__, h, ops, 4, STORAGE_PIPELINE_ATOMIC),
	   STORAGE_INVALID_ARGUMENT);
	assert_int_equal(ops[2].status, STORAGE_INVALID_ARGUMENT);
	assert_int_equal(ops[0].status, STORAGE_ABORTED);
	assert_int_equal(ops[3].status, STORAGE_ABORTED);
	assert_int_equal(live_version(h, "pa/x"), 1);
	assert_int_equal(live_version(h, "pa/w"), 0);
	storage_pipeline_clear(ops, 4);

	/* all good: all applied */
	ops[2] = save_op("pa/y", "y1", 0);
	ST(h, pipeline_or_skip(__func__, h, ops, 4, STORAGE_PIPELINE_ATOMIC), STORAGE_OK);
	assert_int_equal(ops[0].version, 2);
	assert_int_equal(ops[1].version, 1);
	assert_int_equal(ops[2].version, 1);
	assert_int_equal(ops[3].version, 1);
	for (int i = 0; i < 4; i++)
	{
		assert_int_equal(ops[i].status, STORAGE_OK);
		assert_null(ops[i].errmsg);
	}
	assert_int_equal(live_version(h, "pa/x"), 2);
	assert_int_equal(count_live(h, "pa/"), 4);
	storage_pipeline_clear(ops, 4);
}

/* Mixed atomic calls: the postgresql backend runs them; others refuse. */
static void
test_pipeline_atomic_mixed(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_op	ops[5];
	int64_t		v;

	ST(h, put(h, "pm/a", "a1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ST(h, put(h, "pm/b", "b1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ops[0] = id_op(STORAGE_OP_DELETE, "pm/a");
	ops[1] = save_op("pm/c", "c1", 0);
	ops[2] = id_op(STORAGE_OP_FETCH, "pm/c");	/* sees the save before it */
	ops[3] = id_op(STORAGE_OP_FETCH, "pm/none");	/* not a failure */
	ops[4] = save_op("pm/b", "b2", 1);
	if (!is_postgresql(f))
	{
		ST(h, storage_pipeline(h, ops, 5, STORAGE_PIPELINE_ATOMIC),
		   STORAGE_INVALID_ARGUMENT);
		assert_non_null(strstr(ops[0].errmsg, "atomic pipeline of saves only"));
		assert_int_equal(live_version(h, "pm/a"), 1);
		storage_pipeline_clear(ops, 5);
		return;
	}
	ST(h, storage_pipeline(h, ops, 5, STORAGE_PIPELINE_ATOMIC), STORAGE_NOT_FOUND);
	assert_int_equal(ops[0].status, STORAGE_OK);
	assert_true(ops[0].deleted);
	assert_int_equal(ops[1].version, 1);
	assert_int_equal(ops[2].status, STORAGE_OK);
	assert_data(&ops[2].record, "c1");
	assert_int_equal(ops[3].status, STORAGE_NOT_FOUND);
	assert_int_equal(ops[4].status, STORAGE_OK);
	assert_int_equal(ops[4].version, 2);
	assert_int_equal(live_version(h, "pm/a"), 0);
	storage_pipeline_clear(ops, 5);

	/* the last call fails: the delete, save and fetches before it are void */
	ST(h, put(h, "pm/a", "a1", 0, STORAGE_NEVER, &v), STORAGE_OK);
	ops[1] = save_op("pm/d", "d1", 0);
	ops[2] = id_op(STORAGE_OP_FETCH, "pm/d");
	ops[4] = save_op("pm/b", "b3", 1);	/* b is at 2 */
	ST(h, storage_pipeline(h, ops, 5, STORAGE_PIPELINE_ATOMIC),
	   STORAGE_VERSION_CONFLICT);
	for (int i = 0; i < 4; i++)
	{
		assert_int_equal(ops[i].status, STORAGE_ABORTED);
		assert_null(ops[i].record.id);
		assert_false(ops[i].deleted);
	}
	assert_int_equal(ops[4].status, STORAGE_VERSION_CONFLICT);
	assert_string_equal(ops[4].errcode, "SV001");
	assert_int_equal(live_version(h, "pm/a"), 1);
	assert_int_equal(live_version(h, "pm/d"), 0);
	assert_int_equal(live_version(h, "pm/b"), 2);
	storage_pipeline_clear(ops, 5);

	/* the same id twice in one transaction: the second sees the first */
	ops[0] = save_op("pm/e", "e1", 0);
	ops[1] = save_op("pm/e", "e2", 1);
	ST(h, storage_pipeline(h, ops, 2, STORAGE_PIPELINE_ATOMIC), STORAGE_OK);
	assert_int_equal(ops[1].version, 2);
	storage_pipeline_clear(ops, 2);
}

/*
 * A long pipeline: the postgresql backend must read results while it
 * sends (the server stops reading when its output is not read), here with
 * values large enough to fill both sockets' buffers many times.
 */
static void
test_pipeline_long(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	size_t		n = (strcmp(f->backend, "dir") == 0 ||
					 strcmp(f->backend, "dynamodb") == 0) ? 300 : 10000;
	storage_op *ops = calloc(n, sizeof(storage_op));
	char	   *ids = calloc(n, 16);
	char	   *val = malloc(2049);
	unsigned int form = 0;

	/*
	 * pgbouncer in transaction mode may hand a server connection to another
	 * transaction while a long message of the separate form is half
	 * forwarded (see the client README): through it, the same calls in the
	 * atomic form, which has one Sync at the end.
	 */
	if (getenv("STORAGE_TEST_PG_TXN_POOLER") != NULL)
	{
		printf("SKIPPED test_pipeline_long (separate form): long pipelines of separate calls are not run through a pooler in transaction mode; the atomic form is\n");
		nskipped++;
		form = STORAGE_PIPELINE_ATOMIC;
	}
	assert_non_null(ops);
	assert_non_null(ids);
	assert_non_null(val);
	memset(val, 'v', 2048);
	val[2048] = '\0';
	for (size_t i = 0; i < n; i++)
	{
		snprintf(ids + 16 * i, 16, "pb/%06zu", i);
		ops[i] = save_op(ids + 16 * i, val, 0);
	}
	ST(h, storage_pipeline(h, ops, n, form), STORAGE_OK);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(ops[i].version, 1);
	storage_pipeline_clear(ops, n);
	for (size_t i = 0; i < n; i++)
		ops[i] = id_op(i % 2 ? STORAGE_OP_FETCH : STORAGE_OP_DELETE, ids + 16 * i);
	ST(h, storage_pipeline(h, ops, n, form), STORAGE_OK);
	for (size_t i = 0; i < n; i++)
	{
		assert_int_equal(ops[i].status, STORAGE_OK);
		if (i % 2)
		{
			assert_string_equal(ops[i].record.id, ids + 16 * i);
			assert_int_equal(ops[i].record.data_len, 2048);
		}
		else
			assert_true(ops[i].deleted);
	}
	storage_pipeline_clear(ops, n);
	if (is_postgresql(f))
	{
		/* one transaction of n saves, the last one failing (odd: live) */
		for (size_t i = 0; i < n; i++)
			ops[i] = save_op(ids + 16 * i, val, i == n - 1 ? 0 : -1);
		ST(h, storage_pipeline(h, ops, n, STORAGE_PIPELINE_ATOMIC),
		   STORAGE_VERSION_CONFLICT);
		assert_int_equal(ops[0].status, STORAGE_ABORTED);
		assert_int_equal(ops[n - 1].status, STORAGE_VERSION_CONFLICT);
		assert_int_equal(count_live(h, "pb/"), n / 2);
		assert_int_equal(live_version(h, ids + 16), 1);
		storage_pipeline_clear(ops, n);
	}
	free(ops);
	free(ids);
	free(val);
}

typedef struct pipe_thread
{
	storage_client *h;
	storage_op *ops;
	size_t		n;
	storage_status st;
} pipe_thread;

static void *
pipeline_thread(void *p)
{
	pipe_thread *t = p;

	t->st = storage_pipeline(t->h, t->ops, t->n, 0);
	return NULL;
}

/*
 * The server connection is terminated while a long pipeline runs: the calls
 * answered before keep their results, the rest fail as a lost connection
 * (a write sent: outcome unknown), and the handle works again afterwards.
 */
static void
test_pg_pipeline_lost(void **state)
{
	fixture    *f = *state;
	pipe_thread t = {.h = f->h, .n = 20000};
	char	   *ids;
	pthread_t	th;
	PGconn	   *admin;
	PGresult   *res;
	storage_record r;
	size_t		k = 0;
	int			killed = 0;
	storage_status st;

	if (getenv("STORAGE_TEST_PG_SESSION_POOLER") || getenv("STORAGE_TEST_PG_TXN_POOLER"))
	{
		printf("SKIPPED test_pg_pipeline_lost: the pooler, not the client, sees the server connection end\n");
		nskipped++;
		skip();
	}
	ids = calloc(t.n, 16);
	t.ops = calloc(t.n, sizeof(storage_op));
	assert_non_null(t.ops);
	assert_non_null(ids);
	for (size_t i = 0; i < t.n; i++)
	{
		snprintf(ids + 16 * i, 16, "pl/%06d", (int) i);
		t.ops[i] = save_op(ids + 16 * i, "some bytes to write", -1);
	}
	admin = PQconnectdb(pg_admin_uri);
	assert_int_equal(PQstatus(admin), CONNECTION_OK);
	pthread_create(&th, NULL, pipeline_thread, &t);
	for (int i = 0; i < 500 && !killed; i++)
	{
		res = PQexec(admin,
					 "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
					 "WHERE application_name = 'storage_client' AND state = 'active' "
					 "AND pid <> pg_backend_pid()");
		killed = atoi(PQgetvalue(res, 0, 0));
		PQclear(res);
		if (!killed)
			sleep_us(STORAGE_MSEC);
	}
	pthread_join(th, NULL);
	PQfinish(admin);
	if (t.st == STORAGE_OK)
	{
		printf("SKIPPED test_pg_pipeline_lost: the pipeline ended before its connection was terminated\n");
		nskipped++;
	}
	else
	{
		assert_int_equal(t.st, STORAGE_BACKEND_ERROR);
		while (k < t.n && t.ops[k].status == STORAGE_OK)
			assert_int_equal(t.ops[k++].version >= 1, 1);
		assert_true(k < t.n);
		for (size_t i = k; i < t.n; i++)
		{
			assert_int_equal(t.ops[i].status, STORAGE_BACKEND_ERROR);
			assert_true(t.ops[i].retryable);
			assert_string_equal(t.ops[i].errcode, "08006");
			assert_int_not_equal(t.ops[i].outcome, STORAGE_OUTCOME_APPLIED);
		}
		assert_int_equal(t.ops[k].outcome, STORAGE_OUTCOME_UNKNOWN);
	}
	storage_pipeline_clear(t.ops, t.n);

	/*
	 * The handle reconnects: single calls and pipelines work again.  The
	 * first record is there if its save was answered; if the connection was
	 * terminated before any answer, that save may or may not have committed.
	 */
	st = storage_fetch(f->h, ids, &r);
	if (t.st == STORAGE_OK || k > 0)
		ST(f->h, st, STORAGE_OK);
	else if (st != STORAGE_NOT_FOUND)
		ST(f->h, st, STORAGE_OK);
	storage_record_clear(&r);
	for (size_t i = 0; i < t.n; i++)
		t.ops[i] = id_op(STORAGE_OP_DELETE, ids + 16 * i);
	ST(f->h, storage_pipeline(f->h, t.ops, t.n, 0), STORAGE_OK);
	storage_pipeline_clear(t.ops, t.n);
	free(t.ops);
	free(ids);
}

static void
test_pipeline_args(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_op	op = id_op((storage_op_kind) 99, "pl/x");

	ST(NULL, storage_pipeline(NULL, &op, 1, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_pipeline(h, NULL, 1, 0), STORAGE_INVALID_ARGUMENT);
	ST(h, storage_pipeline(h, NULL, 0, 0), STORAGE_OK);
	ST(h, storage_pipeline(h, &op, 1, 0x100), STORAGE_INVALID_ARGUMENT);
	assert_int_equal(op.status, STORAGE_OK);	/* not run */
	ST(h, storage_pipeline(h, &op, 1, 0), STORAGE_INVALID_ARGUMENT);
	assert_int_equal(op.status, STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(op.errmsg, "kind 99"));
	storage_pipeline_clear(&op, 1);
	storage_pipeline_clear(NULL, 3);
	op = id_op(STORAGE_OP_FETCH, NULL);
	ST(h, storage_pipeline(h, &op, 1, STORAGE_PIPELINE_ATOMIC), STORAGE_INVALID_ARGUMENT);
	storage_pipeline_clear(&op, 1);
	assert_string_equal(storage_status_name(STORAGE_ABORTED), "STORAGE_ABORTED");
}

/* ---- dir backend defects ----------------------------------------------- */

static void
store_path(fixture *f, const char *name, char *buf, size_t size)
{
	if ((size_t) snprintf(buf, size, "%s/store/%s", f->tmpdir, name) >= size)
		fail_msg("path too long");
}

static void
touch_file(fixture *f, const char *name, const char *content)
{
	char		path[PATH_MAX];
	FILE	   *fp;

	store_path(f, name, path, sizeof(path));
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(content, fp);
	fclose(fp);
}

static bool
store_has(fixture *f, const char *name)
{
	char		path[PATH_MAX];

	store_path(f, name, path, sizeof(path));
	return access(path, F_OK) == 0;
}

/* conformance --save-once URI: one save in a fresh process (exit 0 if OK) */
static int
save_once(const char *uri)
{
	storage_client *h;
	storage_record r = {.id = "after-restart", .data = (const unsigned char *) "x",
	.data_len = 1};

	if (storage_open(uri, &h) != STORAGE_OK)
	{
		fprintf(stderr, "save-once: open: %s\n", storage_errmsg(NULL));
		return 1;
	}
	if (storage_save(h, &r, -1) != STORAGE_OK)
	{
		fprintf(stderr, "save-once: save: %s\n", storage_errmsg(h));
		storage_close(h);
		return 1;
	}
	storage_close(h);
	return 0;
}

/*
 * A temporary file left by a killed writer whose PID comes back (PID 1
 * after every container restart) must not break the new process's saves;
 * open removes stale temporary files.
 */
static void
test_dir_stale_temp(void **state)
{
	fixture    *f = *state;
	storage_client *h2;
	pid_t		pid;
	int			status;

	touch_file(f, ".tmp.left-by-a-crash", "junk");
	ST(NULL, storage_open(f->uri, &h2), STORAGE_OK);
	assert_false(store_has(f, ".tmp.left-by-a-crash"));
	storage_close(h2);

	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
	{
		char		path[PATH_MAX];
		char		self[PATH_MAX];
		ssize_t		len = readlink("/proc/self/exe", self, sizeof(self) - 1);
		FILE	   *fp;

		/* the names a writer with this PID used to pick first */
		for (int i = 0; i < 4; i++)
		{
			if ((size_t) snprintf(path, sizeof(path), "%s/store/.tmp.%ld.%d",
								  f->tmpdir, (long) getpid(), i) < sizeof(path) &&
				(fp = fopen(path, "w")) != NULL)
				fclose(fp);
		}
		if (len <= 0)
			_exit(3);
		self[len] = '\0';
		execl(self, "conformance", "--save-once", f->uri, (char *) NULL);
		_exit(4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/*
 * What is not a record file (a README, a subdirectory, an NFS silly-rename
 * file, a FIFO) does not break list, get_keys or purge_expired.
 */
static void
test_dir_foreign_entries(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	const char *bucket[] = {"b"};
	char		path[PATH_MAX];
	storage_record *recs;
	char	  **keys;
	size_t		n;
	int64_t		count;

	ST(h, storage_upsert_val(h, bucket, 1, "k", "v", 1, 0), STORAGE_OK);
	ST(h, put(h, "README2", "x", -1, f->fake_now + TICK, NULL), STORAGE_OK);
	touch_file(f, "README", "This directory holds records.\n");
	touch_file(f, "b%2Fz", "not a record either, under a record-like name\n");
	touch_file(f, ".nfs000000001234", "silly rename");
	store_path(f, "subdir", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	store_path(f, "b%2Fpipe", path, sizeof(path));
	assert_int_equal(mkfifo(path, 0600), 0);

	ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].id, "README2");
	assert_string_equal(recs[1].id, "b/k");
	storage_records_free(recs, n);
	ST(h, storage_get_keys(h, bucket, 1, &keys, &n), STORAGE_OK);
	assert_int_equal(n, 1);
	assert_string_equal(keys[0], "k");
	storage_strings_free(keys, n);
	advance(f, 2 * TICK);
	ST(h, storage_purge_expired(h, 0, &count), STORAGE_OK);
	assert_int_equal(count, 1);
	/* foreign entries are left alone */
	assert_true(store_has(f, "README"));
	assert_true(store_has(f, "subdir"));
	assert_true(store_has(f, "b%2Fpipe"));
}

static void
copy_file(fixture *f, const char *from, const char *to, bool keep)
{
	char		a[PATH_MAX],
				b[PATH_MAX];
	char		buf[4096];
	size_t		len;
	FILE	   *in,
			   *out;

	store_path(f, from, a, sizeof(a));
	store_path(f, to, b, sizeof(b));
	in = fopen(a, "rb");
	out = fopen(b, "wb");
	assert_non_null(in);
	assert_non_null(out);
	len = fread(buf, 1, sizeof(buf), in);
	assert_int_equal(fwrite(buf, 1, len, out), len);
	fclose(in);
	fclose(out);
	if (!keep)
		assert_int_equal(unlink(a), 0);
}

/*
 * A record file under a name that is not its id's: never listed twice,
 * moved to its own name by purge_expired, then reachable and removable.
 */
static void
test_dir_misnamed_record(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record *recs;
	storage_record r;
	size_t		n;
	bool		deleted;

	/* a copy of "y" under the name of "x" */
	ST(h, put(h, "y", "y1", -1, STORAGE_NEVER, NULL), STORAGE_OK);
	copy_file(f, "y", "x", true);
	ST(h, put(h, "y", "y2", 1, STORAGE_NEVER, NULL), STORAGE_OK);
	/* "z" renamed by hand to "w" */
	ST(h, put(h, "z", "z1", -1, STORAGE_NEVER, NULL), STORAGE_OK);
	copy_file(f, "z", "w", false);

	ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 1);			/* y, once */
	assert_string_equal(recs[0].id, "y");
	assert_int_equal(recs[0].version, 2);
	storage_records_free(recs, n);

	ST(h, storage_purge_expired(h, 0, NULL), STORAGE_OK);
	ST(h, storage_list(h, "", &recs, &n), STORAGE_OK);
	assert_int_equal(n, 2);
	assert_string_equal(recs[0].id, "y");
	assert_int_equal(recs[0].version, 2);	/* the newer one won */
	assert_string_equal(recs[1].id, "z");
	storage_records_free(recs, n);
	assert_true(store_has(f, ".conflict.y"));
	/* "x" and "w" are free again; "z" is reachable and removable */
	ST(h, storage_fetch(h, "x", &r), STORAGE_NOT_FOUND);
	ST(h, put(h, "x", "x1", 0, STORAGE_NEVER, NULL), STORAGE_OK);
	ST(h, put(h, "w", "w1", 0, STORAGE_NEVER, NULL), STORAGE_OK);
	ST(h, storage_fetch(h, "z", &r), STORAGE_OK);
	assert_data(&r, "z1");
	storage_record_clear(&r);
	ST(h, storage_delete(h, "z", &deleted), STORAGE_OK);
	assert_true(deleted);
	ST(h, storage_fetch(h, "z", &r), STORAGE_NOT_FOUND);
}

extern void storage_dir_test_crash_after_renames(int n);
extern void storage_dir_test_fail_dir_fsync(bool on);

/*
 * save_many is crash-atomic: a process killed midway through the renames
 * leaves a batch that the next operation completes.
 */
static void
test_dir_save_many_crash(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	const char *ids[] = {"c1", "c2", "c3"};
	storage_record *recs;
	size_t		n;
	pid_t		pid;
	int			status;

	for (int i = 0; i < 3; i++)
		ST(h, put(h, ids[i], "old", -1, STORAGE_NEVER, NULL), STORAGE_OK);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
	{
		storage_client *c;
		storage_record batch[3] = {
			{.id = "c1", .data = (const unsigned char *) "new", .data_len = 3},
			{.id = "c2", .data = (const unsigned char *) "new", .data_len = 3},
			{.id = "c3", .data = (const unsigned char *) "new", .data_len = 3},
		};

		if (storage_open(f->uri, &c) != STORAGE_OK)
			_exit(2);
		storage_dir_test_crash_after_renames(1);
		storage_save_many(c, batch, 3, NULL);
		_exit(3);				/* not reached: the hook exits with 0 */
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	/* a fresh handle and the old one agree: the whole batch is there */
	ST(h, storage_fetch_many(h, ids, 3, &recs, &n), STORAGE_OK);
	assert_int_equal(n, 3);
	for (size_t i = 0; i < n; i++)
	{
		assert_int_equal(recs[i].version, 2);
		assert_data(&recs[i], "new");
	}
	storage_records_free(recs, n);
	assert_false(store_has(f, ".journal"));
}

/* A failed directory fsync after the rename: the save happened; say so. */
static void
test_dir_fsync_failure(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record r;
	storage_record batch[2] = {
		{.id = "m1", .data = (const unsigned char *) "b", .data_len = 1},
		{.id = "m2", .data = (const unsigned char *) "b", .data_len = 1},
	};
	int64_t		v;

	ST(h, put(h, "f", "1", -1, STORAGE_NEVER, &v), STORAGE_OK);
	storage_dir_test_fail_dir_fsync(true);
	r = (storage_record) {.id = "f", .data = (const unsigned char *) "2", .data_len = 1};
	ST(h, storage_save(h, &r, 1), STORAGE_BACKEND_ERROR);
	assert_int_equal(storage_outcome_of(h), STORAGE_OUTCOME_APPLIED);
	assert_int_equal(r.version, 2);
	assert_string_equal(storage_errcode(h), "EIO");
	assert_int_equal(storage_errno(h), EIO);
	assert_false(storage_retryable(h));
	assert_non_null(strstr(storage_errmsg(h), "saved as version 2"));
	ST(h, storage_save_many(h, batch, 2, NULL), STORAGE_BACKEND_ERROR);
	/* the journal's own fsync failed first: nothing was applied */
	assert_int_equal(storage_outcome_of(h), STORAGE_OUTCOME_NOT_APPLIED);
	assert_int_equal(batch[0].version, 0);
	storage_dir_test_fail_dir_fsync(false);

	ST(h, storage_fetch(h, "f", &r), STORAGE_OK);
	assert_int_equal(r.version, 2);
	assert_data(&r, "2");
	storage_record_clear(&r);
	ST(h, storage_fetch(h, "m1", &r), STORAGE_NOT_FOUND);
}

/* ---- dynamodb ------------------------------------------------------------ */

extern char *storage_dynamodb_test_encode_save_many(const char *table,
													const storage_record *recs,
													size_t n, const int64_t *live,
													int64_t now);
extern int	storage_dynamodb_test_signed_request(const char *url,
												 const char *connect_to,
												 const char *userpwd,
												 const char *sigv4,
												 const char *const *headers,
												 size_t nheaders,
												 const char *body);

/* dynamodb only: limits answered before anything is sent */
static void
test_ddb_limits(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	size_t		big = 400 * 1024;
	unsigned char *data = calloc(1, big);
	storage_record r = {.id = "big", .data = data, .data_len = big};
	storage_record many[101];
	const char *ids[101];
	char		names[101][16];
	int64_t		count;

	assert_non_null(data);
	ST(h, storage_save(h, &r, -1), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "400"));
	r.data_len = big - 1024;
	ST(h, storage_save(h, &r, -1), STORAGE_OK);
	free(data);
	for (int i = 0; i < 101; i++)
	{
		snprintf(names[i], sizeof(names[i]), "m%03d", i);
		many[i] = (storage_record) {.id = names[i]};
		ids[i] = names[i];
	}
	ST(h, storage_save_many(h, many, 101, NULL), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "at most 100"));
	ST(h, storage_delete_many(h, ids, 101, &count), STORAGE_INVALID_ARGUMENT);
	/* reading has no such limit: BatchGetItem is paged by 100 */
	{
		storage_record *recs;
		size_t		n;

		ST(h, storage_fetch_many(h, ids, 101, &recs, &n), STORAGE_OK);
		assert_int_equal(n, 0);
		storage_records_free(recs, n);
	}
}

/*
 * dynamodb only: a server without TransactWriteItems refuses save_many
 * with a message saying so, and writes nothing (never a non-atomic
 * fallback); a server with it saves atomically.
 */
static void
test_ddb_transactions(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	storage_record recs[2] = {
		{.id = "t1", .data = (const unsigned char *) "a", .data_len = 1},
		{.id = "t2", .data = (const unsigned char *) "b", .data_len = 1},
	};
	storage_record r;
	storage_status st = storage_save_many(h, recs, 2, NULL);

	if (st == STORAGE_OK)
	{
		ST(h, storage_fetch(h, "t2", &r), STORAGE_OK);
		storage_record_clear(&r);
		return;
	}
	assert_int_equal(st, STORAGE_BACKEND_ERROR);
	assert_string_equal(storage_errcode(h), "UnknownOperationException");
	assert_non_null(strstr(storage_errmsg(h), "TransactWriteItems is not supported by this server"));
	assert_false(storage_retryable(h));
	ST(h, storage_fetch(h, "t1", &r), STORAGE_NOT_FOUND);
	ST(h, storage_fetch(h, "t2", &r), STORAGE_NOT_FOUND);
	/* delete_many of nothing present needs no transaction */
	{
		const char *ids[] = {"t1", "t2"};
		int64_t		count = -1;

		ST(h, storage_delete_many(h, ids, 2, &count), STORAGE_OK);
		assert_int_equal(count, 0);
	}
}

/*
 * dynamodb only: fetch_many through BatchGetItem on data saved one by one
 * (the batch tests that save with save_many are skipped on servers without
 * TransactWriteItems): more than one request's 100 keys, repeated, missing
 * and expired ids.
 */
static void
test_ddb_fetch_many(void **state)
{
	fixture    *f = *state;
	storage_client *h = f->h;
	const char *ids[150];
	char		names[150][16];
	storage_record *recs;
	size_t		n;

	for (int i = 0; i < 130; i++)
	{
		snprintf(names[i], sizeof(names[i]), "fm%03d", i);
		ids[i] = names[i];
		ST(h, put(h, ids[i], names[i], -1,
				  i % 10 == 3 ? f->fake_now + TICK : STORAGE_NEVER, NULL), STORAGE_OK);
	}
	for (int i = 130; i < 150; i++)
		ids[i] = ids[i - 130];	/* repeated */
	advance(f, 2 * TICK);		/* every tenth has expired */
	ST(h, storage_fetch_many(h, ids, 150, &recs, &n), STORAGE_OK);
	assert_int_equal(n, 117);
	for (size_t i = 0; i < n; i++)
	{
		assert_int_equal(recs[i].version, 1);
		assert_data(&recs[i], recs[i].id);
		if (i > 0)
			assert_true(strcmp(recs[i - 1].id, recs[i].id) < 0);
	}
	storage_records_free(recs, n);
}

/* dynamodb only: connection errors are structured and retryable */
static void
test_ddb_errors(void **state)
{
	storage_client *x;

	(void) state;
	/* port 1 on loopback: nothing listens there */
	ST(NULL, storage_open("dynamodb://tbl?region=us-east-1&endpoint=http://127.0.0.1:1&max_attempts=2",
						  &x), STORAGE_BACKEND_ERROR);
	assert_string_equal(storage_errcode(NULL), "CURLE_COULDNT_CONNECT");
	assert_true(storage_retryable(NULL));
	ST(NULL, storage_open("dynamodb://t", &x), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_open("dynamodb://table?bogus=1", &x), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_open("dynamodb://table?create=maybe", &x), STORAGE_INVALID_ARGUMENT);
}

/* A one-connection HTTP listener on loopback that keeps the request head. */
typedef struct listener
{
	int			fd;
	int			port;
	char		request[8192];
} listener;

static void *
listen_once(void *p)
{
	listener   *l = p;
	int			c = accept(l->fd, NULL, NULL);
	size_t		len = 0;
	static const char reply[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";

	if (c < 0)
		return NULL;
	while (len < sizeof(l->request) - 1 && strstr(l->request, "\r\n\r\n") == NULL)
	{
		ssize_t		r = read(c, l->request + len, sizeof(l->request) - 1 - len);

		if (r <= 0)
			break;
		len += (size_t) r;
		l->request[len] = '\0';
	}
	if (write(c, reply, sizeof(reply) - 1) < 0)
		perror("write");
	close(c);
	return NULL;
}

static void
listener_start(listener *l, pthread_t *th)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t	alen = sizeof(a);

	memset(l->request, 0, sizeof(l->request));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	l->fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(l->fd >= 0);
	assert_int_equal(bind(l->fd, (struct sockaddr *) &a, sizeof(a)), 0);
	assert_int_equal(listen(l->fd, 1), 0);
	assert_int_equal(getsockname(l->fd, (struct sockaddr *) &a, &alen), 0);
	l->port = ntohs(a.sin_port);
	assert_int_equal(pthread_create(th, NULL, listen_once, l), 0);
}

/*
 * The requests are signed as AWS's Signature Version 4 test suite says:
 * get-vanilla and post-vanilla (credentials AKIDEXAMPLE, us-east-1,
 * service "service", 2015-08-30T12:36:00Z), signed by the backend's own
 * signing set-up.
 */
static void
test_ddb_sigv4_vectors(void **state)
{
	static const char *const vectors[][2] = {
		{"GET", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"},
		{"POST", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"},
	};
	const char *headers[] = {"X-Amz-Date: 20150830T123600Z"};

	(void) state;
	for (size_t i = 0; i < 2; i++)
	{
		listener	l;
		pthread_t	th;
		char		connect_to[64];
		char		want[512];

		listener_start(&l, &th);
		snprintf(connect_to, sizeof(connect_to), "example.amazonaws.com:80:127.0.0.1:%d", l.port);
		assert_int_equal(storage_dynamodb_test_signed_request("http://example.amazonaws.com/",
															  connect_to,
															  "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
															  "aws:amz:us-east-1:service",
															  headers, 1,
															  strcmp(vectors[i][0], "POST") == 0 ? "" : NULL),
						 0);
		pthread_join(th, NULL);
		close(l.fd);
		snprintf(want, sizeof(want),
				 "Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
				 "SignedHeaders=host;x-amz-date, Signature=%s\r\n", vectors[i][1]);
		if (strncmp(l.request, vectors[i][0], strlen(vectors[i][0])) != 0 ||
			strstr(l.request, want) == NULL)
			fail_msg("%s request:\n%s\nwanted:\n%s", vectors[i][0], l.request, want);
	}
}

static json_object *
jget(json_object *o, const char *key)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no \"%s\" in %s", key, json_object_to_json_string(o));
	return v;
}

static const char *
jstr(json_object *o, const char *a, const char *b)
{
	return json_object_get_string(jget(jget(o, a), b));
}

/*
 * The TransactWriteItems request of save_many, as DynamoDB's API reference
 * documents it: {"TransactItems": [{"Put": {"TableName", "Item",
 * "ConditionExpression", "ExpressionAttributeNames",
 * "ExpressionAttributeValues"}}, ...]}, with the item layout of the README.
 */
static void
test_ddb_encode_save_many(void **state)
{
	storage_record recs[3] = {
		{.id = "new", .version = 1, .expires_at = 1700000000123456,
		.format = "text/plain", .data = (const unsigned char *) "hi", .data_len = 2},
		{.id = "upd", .version = 8, .data = (const unsigned char *) "", .data_len = 0},
		{.id = "nul", .version = 3, .expires_at = 2 * STORAGE_SEC},
	};
	int64_t		live[3] = {0, 7, 2};
	char	   *body = storage_dynamodb_test_encode_save_many("tbl", recs, 3, live, 555);
	json_object *req,
			   *items,
			   *put,
			   *item,
			   *vals;

	(void) state;
	assert_non_null(body);
	req = json_tokener_parse(body);
	free(body);
	assert_non_null(req);
	assert_int_equal(json_object_object_length(req), 1);
	items = jget(req, "TransactItems");
	assert_int_equal(json_object_array_length(items), 3);

	/* a create: absent or expired */
	put = jget(json_object_array_get_idx(items, 0), "Put");
	assert_string_equal(json_object_get_string(jget(put, "TableName")), "tbl");
	assert_string_equal(json_object_get_string(jget(put, "ConditionExpression")),
						"attribute_not_exists(#id) OR #e <= :now");
	assert_string_equal(jstr(put, "ExpressionAttributeNames", "#id"), "id");
	assert_string_equal(jstr(put, "ExpressionAttributeNames", "#e"), "expires_at_us");
	assert_int_equal(json_object_object_length(jget(put, "ExpressionAttributeNames")), 2);
	vals = jget(put, "ExpressionAttributeValues");
	assert_int_equal(json_object_object_length(vals), 1);
	assert_string_equal(jstr(vals, ":now", "N"), "555");
	item = jget(put, "Item");
	assert_int_equal(json_object_object_length(item), 6);
	assert_string_equal(jstr(item, "id", "S"), "new");
	assert_string_equal(jstr(item, "version", "N"), "1");
	assert_string_equal(jstr(item, "expires_at_us", "N"), "1700000000123456");
	assert_string_equal(jstr(item, "ttl", "N"), "1700000001");	/* rounded up */
	assert_string_equal(jstr(item, "format", "S"), "text/plain");
	assert_string_equal(jstr(item, "data", "B"), "aGk=");

	/* a versioned write on version 7, live; empty data, never expires */
	put = jget(json_object_array_get_idx(items, 1), "Put");
	assert_string_equal(json_object_get_string(jget(put, "ConditionExpression")),
						"#v = :v AND (attribute_not_exists(#e) OR #e > :now)");
	assert_string_equal(jstr(put, "ExpressionAttributeNames", "#v"), "version");
	vals = jget(put, "ExpressionAttributeValues");
	assert_string_equal(jstr(vals, ":v", "N"), "7");
	assert_string_equal(jstr(vals, ":now", "N"), "555");
	item = jget(put, "Item");
	assert_int_equal(json_object_object_length(item), 3);
	assert_string_equal(jstr(item, "version", "N"), "8");
	assert_string_equal(jstr(item, "data", "B"), "");

	/* NULL format and data: absent; a whole second of expiry: ttl exact */
	item = jget(jget(json_object_array_get_idx(items, 2), "Put"), "Item");
	assert_int_equal(json_object_object_length(item), 4);
	assert_string_equal(jstr(item, "ttl", "N"), "2");
	json_object_put(req);
}

/* ---- change feed (storage_watch) ------------------------------------------ */

/* A callback that copies events until it has want of them. */
typedef struct watched
{
	storage_watch_event *ev;
	size_t		n;
	size_t		want;
	size_t		stop_at;		/* return 1 at this event (1-based), 0 = want */
	storage_client *h;			/* fetch through it from the callback */
} watched;

static int
collect(void *arg, const storage_watch_event *ev)
{
	watched    *w = arg;
	storage_watch_event *c;

	w->ev = realloc(w->ev, (w->n + 1) * sizeof(*ev));
	assert_non_null(w->ev);
	c = &w->ev[w->n++];
	*c = *ev;
	c->id = strdup(ev->id);
	c->format = ev->format ? strdup(ev->format) : NULL;
	c->data = NULL;
	if (ev->data)
	{
		unsigned char *d = malloc(ev->data_len + 1);

		assert_non_null(d);
		memcpy(d, ev->data, ev->data_len);
		c->data = d;
	}
	if (w->h)
	{
		storage_record r;
		storage_status st = storage_fetch(w->h, ev->id, &r);

		assert_true(st == STORAGE_OK || st == STORAGE_NOT_FOUND);
		storage_record_clear(&r);
	}
	return w->n == (w->stop_at ? w->stop_at : w->want);
}

/*
 * storage_watch, cancelled by a guard thread if it has not returned after
 * 30 s: a missing event fails the test (the guard "fired") instead of
 * hanging it.
 */
typedef struct watch_guard
{
	storage_client *h;
	atomic_bool done;
	atomic_bool fired;
} watch_guard;

static void *
guard_main(void *arg)
{
	watch_guard *g = arg;

	for (int i = 0; i < 600 && !atomic_load(&g->done); i++)
		sleep_us(50 * STORAGE_MSEC);
	if (!atomic_load(&g->done))
	{
		atomic_store(&g->fired, true);
		storage_watch_cancel(g->h);
	}
	return NULL;
}

static storage_status
watch_guarded(storage_client *h, const char *prefix, uint64_t from,
			  storage_watch_fn fn, void *arg, bool *fired)
{
	watch_guard g = {.h = h};
	pthread_t	th;
	storage_status st;

	if (pthread_create(&th, NULL, guard_main, &g) != 0)
		return STORAGE_BACKEND_ERROR;
	st = storage_watch(h, prefix, from, fn, arg);
	atomic_store(&g.done, true);
	pthread_join(th, NULL);
	*fired = atomic_load(&g.fired);
	return st;
}

/* A guarded watch that must end by its callback, not by the guard. */
#define WATCH(h, prefix, from, fn, arg, expected) \
	do { \
		bool fired_; \
		ST(h, watch_guarded(h, prefix, from, fn, arg, &fired_), expected); \
		if (fired_) \
			fail_msg("%s:%d: the watch was still waiting after 30 s (events missing)", \
					 __FILE__, __LINE__); \
	} while (0)

static void
watched_free(watched *w)
{
	for (size_t i = 0; i < w->n; i++)
	{
		free((void *) w->ev[i].id);
		free((void *) w->ev[i].format);
		free((void *) w->ev[i].data);
	}
	free(w->ev);
	memset(w, 0, sizeof(*w));
}

static void
assert_event(const storage_watch_event *ev, storage_watch_op op, const char *id,
			 int64_t version, bool last)
{
	if (ev->op != op || strcmp(ev->id, id) != 0 || ev->version != version ||
		ev->last != last)
		fail_msg("event %d \"%s\" v%lld last=%d, want %d \"%s\" v%lld last=%d",
				 ev->op, ev->id, (long long) ev->version, ev->last, op, id,
				 (long long) version, last);
}

/* Arguments, and the backends without a change feed. */
static void
test_watch_args(void **state)
{
	fixture    *f = *state;
	watched		w = {.want = 1};

	ST(f->h, storage_watch(f->h, "", 0, NULL, &w), STORAGE_INVALID_ARGUMENT);
	ST(f->h, storage_watch(f->h, NULL, 0, collect, &w), STORAGE_INVALID_ARGUMENT);
	ST(NULL, storage_watch(NULL, "", 0, collect, &w), STORAGE_INVALID_ARGUMENT);
	ST(f->h, storage_set_watch_slot(f->h, ""), STORAGE_INVALID_ARGUMENT);
	ST(f->h, storage_set_watch_slot(f->h, "Upper"), STORAGE_INVALID_ARGUMENT);
	ST(f->h, storage_set_watch_slot(f->h, "a-b"), STORAGE_INVALID_ARGUMENT);
	ST(f->h, storage_set_watch_slot(f->h,
									"a234567890123456789012345678901234567890123456789012345678901234"),
	   STORAGE_INVALID_ARGUMENT);
	ST(f->h, storage_set_watch_slot(f->h,
									"a23456789012345678901234567890123456789012345678901234567890123"),
	   STORAGE_OK);
	ST(f->h, storage_set_watch_slot(f->h, NULL), STORAGE_OK);
	if (strcmp(f->backend, "dir") == 0 || strcmp(f->backend, "dynamodb") == 0)
	{
		ST(f->h, storage_watch(f->h, "", 0, collect, &w), STORAGE_INVALID_ARGUMENT);
		assert_non_null(strstr(storage_errmsg(f->h), "not supported"));
	}
	else if (strcmp(f->backend, "postgresql") == 0)
	{
		/* no slot named: refused before connecting */
		ST(f->h, storage_watch(f->h, "", 0, collect, &w), STORAGE_INVALID_ARGUMENT);
		assert_non_null(strstr(storage_errmsg(f->h), "storage_set_watch_slot"));
	}
	assert_int_equal(w.n, 0);
	watched_free(&w);
}

/* Every kind of change, in commit order, one position per operation. */
static void
test_watch_kinds(void **state)
{
	fixture    *f = *state;
	int64_t		t0 = atomic_load(&f->fake_now);
	int64_t		fence;
	bool		deleted;
	storage_record many[2] = {{.id = "c"}, {.id = "d"}};
	storage_record big = {.id = "f", .format = "bin"};
	unsigned char *bytes = malloc(1024 * 1024);
	watched		w = {.want = 13};

	assert_non_null(bytes);
	for (size_t i = 0; i < 1024 * 1024; i++)
		bytes[i] = (unsigned char) (i * 7 + i / 251);
	big.data = bytes;
	big.data_len = 1024 * 1024;

	ST(f->h, put(f->h, "a", "A", 0, 0, NULL), STORAGE_OK);	/* 1 */
	ST(f->h, put(f->h, "a", "A", 0, 0, NULL), STORAGE_VERSION_CONFLICT);	/* nothing */
	ST(f->h, put(f->h, "b", "B", -1, t0 + TICK, NULL), STORAGE_OK);	/* 2 */
	ST(f->h, storage_save_many(f->h, many, 2, NULL), STORAGE_OK);	/* 3 */
	ST(f->h, storage_delete(f->h, "a", &deleted), STORAGE_OK);	/* 4 */
	ST(f->h, storage_delete(f->h, "a", &deleted), STORAGE_OK);	/* nothing */
	advance(f, 2 * TICK);
	ST(f->h, storage_delete(f->h, "b", &deleted), STORAGE_OK);	/* 5: expired */
	assert_false(deleted);
	ST(f->h, put(f->h, "e", NULL, -1, atomic_load(&f->fake_now) + TICK, NULL), STORAGE_OK);	/* 6 */
	advance(f, 2 * TICK);
	ST(f->h, storage_purge_expired(f->h, 0, NULL), STORAGE_OK);	/* 7 */
	ST(f->h, storage_purge_expired(f->h, 0, NULL), STORAGE_OK);	/* nothing */
	ST(f->h, storage_acquire_lock_fenced(f->h, "t", TICK, &fence), STORAGE_OK);	/* 8 */
	ST(f->h, storage_extend_lock(f->h, "t", fence, 5 * TICK), STORAGE_OK);	/* 9 */
	ST(f->h, storage_release_lock_fenced(f->h, "t", fence), STORAGE_OK);	/* 10 */
	ST(f->h, storage_save(f->h, &big, -1), STORAGE_OK);	/* 11 */
	ST(f->h, storage_delete_many(f->h, (const char *const[]) {"c", "d", "zz"}, 3, NULL),
	   STORAGE_OK);				/* 12 */
	ST(f->h, put(f->h, "h", "1", -1, atomic_load(&f->fake_now) + TICK, NULL), STORAGE_OK);	/* 13 */
	advance(f, 2 * TICK);
	ST(f->h, put(f->h, "h", "2", -1, 0, NULL), STORAGE_OK);	/* 14: over an expired one */

	WATCH(f->h, "", 0, collect, &w, STORAGE_OK);
	assert_int_equal(w.n, 13);
	assert_event(&w.ev[0], STORAGE_WATCH_PUT, "a", 1, true);
	assert_non_null(w.ev[0].data);
	assert_int_equal(w.ev[0].data_len, 1);
	assert_memory_equal(w.ev[0].data, "A", 1);
	assert_null(w.ev[0].format);
	assert_int_equal(w.ev[0].expires_at, STORAGE_NEVER);
	assert_int_equal(w.ev[0].committed_at, t0);
	assert_event(&w.ev[1], STORAGE_WATCH_PUT, "b", 1, true);
	assert_int_equal(w.ev[1].expires_at, t0 + TICK);
	assert_event(&w.ev[2], STORAGE_WATCH_PUT, "c", 1, false);
	assert_null(w.ev[2].data);	/* NULL data stays NULL */
	assert_event(&w.ev[3], STORAGE_WATCH_PUT, "d", 1, true);
	assert_int_equal(w.ev[2].position, w.ev[3].position);
	assert_event(&w.ev[4], STORAGE_WATCH_DELETE, "a", 0, true);
	assert_null(w.ev[4].data);
	assert_event(&w.ev[5], STORAGE_WATCH_EXPIRE, "b", 0, true);
	assert_int_equal(w.ev[5].committed_at, t0 + 2 * TICK);
	assert_event(&w.ev[6], STORAGE_WATCH_PUT, "e", 1, true);
	assert_event(&w.ev[7], STORAGE_WATCH_EXPIRE, "e", 0, true);
	assert_event(&w.ev[8], STORAGE_WATCH_PUT, ".locks/t", fence, true);
	assert_event(&w.ev[9], STORAGE_WATCH_TOUCH, ".locks/t", fence, true);
	assert_int_equal(w.ev[9].expires_at, t0 + 4 * TICK + 5 * TICK);
	assert_null(w.ev[9].data);
	assert_event(&w.ev[10], STORAGE_WATCH_DELETE, ".locks/t", 0, true);
	assert_event(&w.ev[11], STORAGE_WATCH_PUT, "f", 1, true);
	assert_string_equal(w.ev[11].format, "bin");
	assert_int_equal(w.ev[11].data_len, 1024 * 1024);
	assert_memory_equal(w.ev[11].data, bytes, 1024 * 1024);
	assert_event(&w.ev[12], STORAGE_WATCH_DELETE, "c", 0, false);	/* stopped within */
	for (size_t i = 1; i < w.n; i++)
		assert_true(w.ev[i].position >= w.ev[i - 1].position);
	assert_int_equal(w.ev[11].position, w.ev[0].position + 10);
	watched_free(&w);

	/* again from the start: the same events, then the rest and a new one */
	w.want = 18;
	ST(f->h, put(f->h, "g", "G", -1, 0, NULL), STORAGE_OK);
	WATCH(f->h, "", 0, collect, &w, STORAGE_OK);
	assert_event(&w.ev[12], STORAGE_WATCH_DELETE, "c", 0, false);
	assert_event(&w.ev[13], STORAGE_WATCH_DELETE, "d", 0, true);
	assert_event(&w.ev[14], STORAGE_WATCH_PUT, "h", 1, true);
	assert_event(&w.ev[15], STORAGE_WATCH_EXPIRE, "h", 0, false);
	assert_event(&w.ev[16], STORAGE_WATCH_PUT, "h", 1, true);
	assert_memory_equal(w.ev[16].data, "2", 1);
	assert_false(w.ev[16].value_omitted);
	assert_int_equal(w.ev[15].position, w.ev[16].position);
	assert_event(&w.ev[17], STORAGE_WATCH_PUT, "g", 1, true);
	watched_free(&w);
	free(bytes);
}

/* from_position skips the transactions at or before it, never a part of one */
static void
test_watch_resume(void **state)
{
	fixture    *f = *state;
	storage_record many[3] = {{.id = "m1"}, {.id = "m2"}, {.id = "m3"}};
	watched		w = {.want = 5};
	uint64_t	pos[5];

	ST(f->h, put(f->h, "a", "1", -1, 0, NULL), STORAGE_OK);
	ST(f->h, storage_save_many(f->h, many, 3, NULL), STORAGE_OK);
	ST(f->h, put(f->h, "b", "2", -1, 0, NULL), STORAGE_OK);
	WATCH(f->h, "", 0, collect, &w, STORAGE_OK);
	for (int i = 0; i < 5; i++)
		pos[i] = w.ev[i].position;
	watched_free(&w);
	assert_true(pos[0] < pos[1] && pos[1] == pos[3] && pos[3] < pos[4]);

	/* after the first transaction: the whole batch, then b */
	w.want = 4;
	WATCH(f->h, "", pos[0], collect, &w, STORAGE_OK);
	assert_event(&w.ev[0], STORAGE_WATCH_PUT, "m1", 1, false);
	assert_event(&w.ev[3], STORAGE_WATCH_PUT, "b", 1, true);
	watched_free(&w);

	/* after the batch: only b (a callback stopping at once) */
	w.want = 1;
	WATCH(f->h, "", pos[1], collect, &w, STORAGE_OK);
	assert_int_equal(w.n, 1);
	assert_event(&w.ev[0], STORAGE_WATCH_PUT, "b", 1, true);
	watched_free(&w);

	/* a position in the future: only what commits after it */
	for (uint64_t p = pos[4] + 1; p <= pos[4] + 2; p++)
		ST(f->h, put(f->h, "c", "3", -1, 0, NULL), STORAGE_OK);
	w.want = 1;
	WATCH(f->h, "", pos[4] + 1, collect, &w, STORAGE_OK);
	assert_int_equal(w.ev[0].position, pos[4] + 2);
	assert_event(&w.ev[0], STORAGE_WATCH_PUT, "c", 2, true);
	watched_free(&w);
}

/* A prefix: only matching ids; last marks the last matching one. */
static void
test_watch_prefix(void **state)
{
	fixture    *f = *state;
	storage_record mixed[4] = {{.id = "app/1"}, {.id = "other/1"}, {.id = "app/2"}, {.id = "other/2"}};
	watched		w = {.want = 4};

	ST(f->h, put(f->h, "other/0", "x", -1, 0, NULL), STORAGE_OK);
	ST(f->h, storage_save_many(f->h, mixed, 4, NULL), STORAGE_OK);
	ST(f->h, put(f->h, "ap", "x", -1, 0, NULL), STORAGE_OK);
	ST(f->h, storage_delete(f->h, "app/1", NULL), STORAGE_OK);
	ST(f->h, put(f->h, "app/", "x", -1, 0, NULL), STORAGE_OK);
	WATCH(f->h, "app/", 0, collect, &w, STORAGE_OK);
	assert_event(&w.ev[0], STORAGE_WATCH_PUT, "app/1", 1, false);
	assert_event(&w.ev[1], STORAGE_WATCH_PUT, "app/2", 1, true);
	assert_event(&w.ev[2], STORAGE_WATCH_DELETE, "app/1", 0, true);
	assert_event(&w.ev[3], STORAGE_WATCH_PUT, "app/", 1, true);
	watched_free(&w);
}

typedef struct watch_thread
{
	storage_client *h;
	watched		w;
	uint64_t	from;
	storage_status st;
} watch_thread;

static void *
watch_main(void *arg)
{
	watch_thread *t = arg;

	bool		fired;

	t->st = watch_guarded(t->h, "", t->from, collect, &t->w, &fired);
	if (fired)
		t->st = STORAGE_BACKEND_ERROR;
	return NULL;
}

/*
 * One thread watches while another saves through the same handle, and the
 * callback reads through it too: every change arrives once, in order.
 */
static void
test_watch_threads(void **state)
{
	fixture    *f = *state;
	watch_thread t = {.h = f->h, .w = {.want = 3000, .h = f->h}};
	pthread_t	th;
	char		id[32];

	assert_int_equal(pthread_create(&th, NULL, watch_main, &t), 0);
	for (int i = 0; i < 1000; i++)
	{
		storage_record two[2] = {{.id = "x"}, {.id = "y"}};

		snprintf(id, sizeof(id), "k%04d", i);
		ST(f->h, put(f->h, id, id, -1, 0, NULL), STORAGE_OK);
		ST(f->h, storage_save_many(f->h, two, 2, NULL), STORAGE_OK);
	}
	assert_int_equal(pthread_join(th, NULL), 0);
	ST(f->h, t.st, STORAGE_OK);
	assert_int_equal(t.w.n, 3000);
	for (int i = 0; i < 1000; i++)
	{
		snprintf(id, sizeof(id), "k%04d", i);
		assert_event(&t.w.ev[3 * i], STORAGE_WATCH_PUT, id, 1, true);
		assert_event(&t.w.ev[3 * i + 1], STORAGE_WATCH_PUT, "x", i + 1, false);
		assert_event(&t.w.ev[3 * i + 2], STORAGE_WATCH_PUT, "y", i + 1, true);
		assert_int_equal(t.w.ev[3 * i].position + 1, t.w.ev[3 * i + 1].position);
	}
	watched_free(&t.w);
}

/* A callback that tries a second watch on its handle. */
static int
watch_again(void *arg, const storage_watch_event *ev)
{
	storage_client *h = arg;
	watched		w = {.want = 1};

	(void) ev;
	ST(h, storage_watch(h, "", 0, collect, &w), STORAGE_INVALID_ARGUMENT);
	assert_non_null(strstr(storage_errmsg(h), "already running"));
	return 1;
}

/* Cancel: an idle watch returns; a cancel before the watch is kept for it. */
static void
test_watch_cancel(void **state)
{
	fixture    *f = *state;
	watch_thread t = {.h = f->h, .w = {.want = 1}};
	pthread_t	th;

	/* (if the thread has not begun yet, the cancel waits for it: same end) */
	assert_int_equal(pthread_create(&th, NULL, watch_main, &t), 0);
	sleep_us(50 * STORAGE_MSEC);
	storage_watch_cancel(f->h);
	assert_int_equal(pthread_join(th, NULL), 0);
	ST(f->h, t.st, STORAGE_OK);
	assert_int_equal(t.w.n, 0);

	ST(f->h, put(f->h, "a", "1", -1, 0, NULL), STORAGE_OK);
	storage_watch_cancel(f->h);
	WATCH(f->h, "", 0, collect, &t.w, STORAGE_OK);
	assert_int_equal(t.w.n, 0);
	/* consumed: the next watch runs; one watch at a time per handle */
	WATCH(f->h, "", 0, watch_again, f->h, STORAGE_OK);
	WATCH(f->h, "", 0, collect, &t.w, STORAGE_OK);
	assert_int_equal(t.w.n, 1);
	watched_free(&t.w);
}

/* Bounded retention: a position older than what is kept fails loudly. */
static void
test_watch_retention(void **state)
{
	fixture    *f = *state;
	watched		w = {.want = 1};
	char		id[32];
	int			n = 65536 + 100;

	for (int i = 0; i < n; i++)
	{
		snprintf(id, sizeof(id), "r%d", i % 7);
		ST(f->h, put(f->h, id, NULL, -1, 0, NULL), STORAGE_OK);
	}
	WATCH(f->h, "", 1, collect, &w, STORAGE_NOT_FOUND);
	assert_non_null(strstr(storage_errmsg(f->h), "no longer kept"));
	WATCH(f->h, "", 100, collect, &w, STORAGE_OK);
	assert_int_equal(w.ev[0].position, 101);
	watched_free(&w);
	w.want = 1;
	WATCH(f->h, "", 0, collect, &w, STORAGE_OK);
	assert_int_equal(w.ev[0].position, 101);
	watched_free(&w);
}

/* ---- main -------------------------------------------------------------- */

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

static const struct CMUnitTest common_tests[] = {
	T(test_save_sequence),
	T(test_save_unconditional),
	T(test_fields_roundtrip),
	T(test_expiry_hiding),
	T(test_purge),
	T(test_list_order),
	T(test_bad_ids),
	T(test_path_like_ids),
	T(test_open_and_status),
	T(test_bucket_names),
	T(test_bucket_values),
	T(test_bucket_ttl),
	T(test_compare_and_swap),
	T(test_compare_and_swap_race),
	T(test_keys_and_items),
	T(test_upsert_items),
	T(test_delete_key_and_bucket),
	T(test_locks),
	T(test_lock_handoff),
	T(test_fenced_locks),
	T(test_fenced_lock_handoff),
	T(test_race_threads),
	T(test_batch_save_kinds),
	T(test_batch_save_conflict),
	T(test_batch_bad_args),
	T(test_batch_expired),
	T(test_batch_fetch_delete),
	T(test_batch_odd_ids),
	T(test_batch_fallback),
	T(test_batch_race),
	T(test_error_detail),
	T(test_pipeline_separate),
	T(test_pipeline_atomic),
	T(test_pipeline_atomic_mixed),
	T(test_pipeline_long),
	T(test_pipeline_args),
	T(test_watch_args),
};

static const struct CMUnitTest dir_tests[] = {
	T(test_race_processes),
	T(test_dir_stale_temp),
	T(test_dir_foreign_entries),
	T(test_dir_misnamed_record),
	T(test_dir_save_many_crash),
	T(test_dir_fsync_failure),
};
static const struct CMUnitTest memory_tests[] = {
	T(test_watch_kinds),
	T(test_watch_resume),
	T(test_watch_prefix),
	T(test_watch_threads),
	T(test_watch_cancel),
	T(test_watch_retention),
};
static const struct CMUnitTest pg_tests[] = {T(test_pg_reconnect), T(test_pg_errors), T(test_pg_pipeline_lost)};
static const struct CMUnitTest pg_native_tests[] = {T(test_pg_server_buckets)};
static const struct CMUnitTest ddb_tests[] = {
	T(test_ddb_limits),
	T(test_ddb_transactions),
	T(test_ddb_fetch_many),
	T(test_ddb_errors),
};
static const struct CMUnitTest ddb_unit_tests[] = {
	cmocka_unit_test(test_ddb_sigv4_vectors),
	cmocka_unit_test(test_ddb_encode_save_many),
};

#define NCOMMON (sizeof(common_tests) / sizeof(common_tests[0]))

int
main(int argc, char **argv)
{
	struct CMUnitTest tests[NCOMMON + 16];
	size_t		ntests = 0;
	bool		count_only = false;
	const char *uri_var = NULL;
	int			failed;

#define ADD(arr) \
	do { \
		memcpy(tests + ntests, arr, sizeof(arr)); \
		ntests += sizeof(arr) / sizeof(arr[0]); \
	} while (0)

	if (argc == 3 && strcmp(argv[1], "--save-once") == 0)
		return save_once(argv[2]);
	if (argc == 3 && strcmp(argv[1], "--count") == 0)
	{
		count_only = true;
		argv++;
		argc--;
	}
	if (argc == 2 && strcmp(argv[1], "postgresql-generic") == 0)
	{
		/* the same cases with the generic bucket layer: same results */
		generic_buckets = true;
		group_name = argv[1];
		argv[1] = (char *) "postgresql";
	}
	if (argc != 2 || (strcmp(argv[1], "memory") != 0 && strcmp(argv[1], "dir") != 0 &&
					  strcmp(argv[1], "postgresql") != 0 &&
					  strcmp(argv[1], "dynamodb") != 0 &&
					  strcmp(argv[1], "dynamodb-unit") != 0))
	{
		fprintf(stderr, "usage: %s [--count] memory|dir|postgresql|postgresql-generic|dynamodb|dynamodb-unit\n",
				argv[0]);
		return 2;
	}
	backend_name = argv[1];
	if (group_name == NULL)
		group_name = backend_name;
	if (strcmp(backend_name, "dynamodb-unit") == 0)
		ADD(ddb_unit_tests);
	else
		ADD(common_tests);
	if (strcmp(backend_name, "dir") == 0)
		ADD(dir_tests);
	if (strcmp(backend_name, "memory") == 0)
		ADD(memory_tests);
	if (strcmp(backend_name, "postgresql") == 0)
	{
		ADD(pg_tests);
		if (!generic_buckets)
			ADD(pg_native_tests);
		uri_var = "STORAGE_TEST_PG_URI";
		pg_uri = getenv(uri_var);
		pg_admin_uri = getenv("STORAGE_TEST_PG_ADMIN_URI");
		if (pg_admin_uri == NULL || pg_admin_uri[0] == '\0')
			pg_admin_uri = pg_uri;
	}
	if (strcmp(backend_name, "dynamodb") == 0)
	{
		ADD(ddb_tests);
		uri_var = "STORAGE_TEST_DYNAMODB_URI";
		ddb_uri = getenv(uri_var);
	}
	if (!count_only && uri_var && (getenv(uri_var) == NULL || getenv(uri_var)[0] == '\0'))
	{
		printf("SKIP %s: %s is not set\n", group_name, uri_var);
		printf("RESULT %s total=0 failed=0 skipped=0\n", group_name);
		return 0;
	}
	if (count_only)
	{
		printf("%zu\n", ntests);
		return 0;
	}
	failed = _cmocka_run_group_tests(group_name, tests, ntests, NULL, NULL);
	fflush(stderr);
	printf("RESULT %s total=%zu failed=%d skipped=%d\n", group_name, ntests,
		   failed, nskipped);
	fflush(stdout);				/* before LeakSanitizer's exit handler */
	return failed == 0 ? 0 : 1;
}
