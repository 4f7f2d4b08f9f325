/*-------------------------------------------------------------------------
 *
 * backend_dynamodb.c
 *	  The "dynamodb://TABLE?region=R&endpoint=URL&create=true" backend: one
 *	  item per record in an Amazon DynamoDB table (or a DynamoDB-compatible
 *	  server such as dynalite), spoken to over HTTP with libcurl, signed by
 *	  libcurl's own AWS Signature V4 (CURLOPT_AWS_SIGV4), JSON by json-c.
 *	  No protocol code of our own beyond building the documented requests.
 *
 *	  Item layout (the README has the table):
 *		id				S	the record id (partition key)
 *		version			N	the record version
 *		expires_at_us	N	exact expiry, usec since the epoch (absent: never)
 *		ttl				N	the expiry in epoch seconds, rounded up, so that
 *							DynamoDB's own TTL may be switched on for the
 *							table on attribute "ttl" (absent: never)
 *		format			S	absent for a NULL format
 *		data			B	absent for NULL data; empty data is an empty B
 *							(DynamoDB accepts empty non-key binary and
 *							string values since May 2020)
 *
 *	  Expiry: DynamoDB's TTL deletes expired items up to days later, so
 *	  liveness is judged here, by the handle's clock, on every read and in
 *	  every write's condition: creating needs "attribute_not_exists(id) OR
 *	  expires_at_us <= :now", a versioned save "version = :v AND (no expiry
 *	  OR expires_at_us > :now)".  An unversioned save reads the live
 *	  version and writes on that exact state, re-reading after a lost race.
 *	  purge_expired scans with a filter and deletes each expired item on the
 *	  condition that it is still the expired version.  list is a filtered,
 *	  paginated, strongly consistent Scan, sorted here: it costs O(table).
 *
 *	  Batches: fetch_many is BatchGetItem (100 keys a request, unprocessed
 *	  keys retried); save_many and delete_many are one TransactWriteItems
 *	  each (all or nothing), so at most 100 records a call: a larger batch is
 *	  STORAGE_INVALID_ARGUMENT, since atomicity cannot span requests.  A
 *	  server without TransactWriteItems (dynalite) gets STORAGE_BACKEND_ERROR
 *	  saying so, never a non-atomic fallback.
 *
 *	  Transport: one curl easy handle per storage handle (the handle's mutex
 *	  serializes its use), so the connection is reused across calls;
 *	  connect and total timeouts; throttling, 5xx answers and failures to
 *	  connect are retried with capped exponential backoff and full jitter
 *	  as the AWS SDKs do.  A conditional-check failure is never retried.  A
 *	  write whose answer is lost is not retried either (it may have been
 *	  applied): STORAGE_OUTCOME_UNKNOWN.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <openssl/evp.h>

#include "storage_backend.h"

#define DDB_TARGET_PREFIX	"DynamoDB_20120810."
#define DDB_MAX_BATCH		100		/* BatchGetItem, TransactWriteItems */
#define DDB_MAX_ITEM		(400 * 1024)
#define DDB_CAS_ROUNDS		50		/* unversioned save: re-reads after races */

#define A_ID		"id"
#define A_VERSION	"version"
#define A_EXPIRES	"expires_at_us"
#define A_TTL		"ttl"
#define A_FORMAT	"format"
#define A_DATA		"data"

/*
 * Every expression names attributes through these (reserved words).  The
 * liveness rule (storage_is_live) in DynamoDB's expression language, once:
 * an item without #e never expires.
 */
#define COND_LIVE "(attribute_not_exists(#e) OR #e > :now)"
#define COND_EXPIRED "#e <= :now"
#define COND_CREATE "attribute_not_exists(#id) OR " COND_EXPIRED
#define COND_VERSION "#v = :v AND " COND_LIVE

typedef struct ddb_state
{
	CURL	   *curl;
	char	   *table;
	char	   *region;
	char	   *endpoint;		/* URL, e.g. https://dynamodb.R.amazonaws.com */
	char	   *userpwd;		/* "AKID:SECRET" for CURLOPT_USERPWD */
	char	   *sigv4;			/* "aws:amz:REGION:dynamodb" */
	char	   *token_header;	/* "x-amz-security-token: ..." or NULL */
	long		timeout_ms;
	long		connect_timeout_ms;
	int			max_attempts;
	/* the last answer */
	char	   *body;
	size_t		body_len;
	size_t		body_cap;
} ddb_state;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void
curl_init_once(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- small helpers --------------------------------------------------------- */

static char *
xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void
sleep_ms(long ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Full-jitter exponential backoff: random in [0, min(cap, base * 2^n)]. */
static void
backoff(int attempt)
{
	long		cap = 25L << (attempt < 10 ? attempt : 10);
	uint32_t	r = 0;

	if (cap > 2000)
		cap = 2000;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t) sizeof(r))
		r = (uint32_t) rand();
	sleep_ms((long) (r % (uint32_t) (cap + 1)));
}

static json_object *
attr_s(const char *s)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "S", json_object_new_string(s));
	return o;
}

static json_object *
attr_n(int64_t n)
{
	char		buf[32];
	json_object *o = json_object_new_object();

	snprintf(buf, sizeof(buf), "%lld", (long long) n);
	json_object_object_add(o, "N", json_object_new_string(buf));
	return o;
}

static json_object *
attr_b(const unsigned char *data, size_t len)
{
	json_object *o = json_object_new_object();
	char	   *b64 = malloc(4 * ((len + 2) / 3) + 1);

	if (b64 == NULL)
	{
		json_object_put(o);
		return NULL;
	}
	EVP_EncodeBlock((unsigned char *) b64, data, (int) len);
	json_object_object_add(o, "B", json_object_new_string(b64));
	free(b64);
	return o;
}

/* The key of id: {"id": {"S": id}} */
static json_object *
key_of(const char *id)
{
	json_object *k = json_object_new_object();

	json_object_object_add(k, A_ID, attr_s(id));
	return k;
}

/*
 * The expression attribute names that expressions expr1/expr2 (either may
 * be NULL) use: DynamoDB refuses names a request does not use.
 */
static json_object *
attr_names(const char *expr1, const char *expr2)
{
	static const char *const names[][2] = {
		{"#id", A_ID}, {"#v", A_VERSION}, {"#e", A_EXPIRES},
	};
	json_object *n = json_object_new_object();

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((expr1 && strstr(expr1, names[i][0])) || (expr2 && strstr(expr2, names[i][0])))
			json_object_object_add(n, names[i][0], json_object_new_string(names[i][1]));
	return n;
}

/* ttl attribute: epoch seconds, rounded up (TTL must never come early). */
static int64_t
ttl_seconds(int64_t expires_at)
{
	int64_t		s = expires_at / STORAGE_SEC;

	if (expires_at % STORAGE_SEC > 0)
		s++;
	return s;
}

/* The item of rec (version already set). */
static json_object *
encode_item(const storage_record *rec)
{
	json_object *item = json_object_new_object();

	json_object_object_add(item, A_ID, attr_s(rec->id));
	json_object_object_add(item, A_VERSION, attr_n(rec->version));
	if (rec->expires_at != STORAGE_NEVER)
	{
		json_object_object_add(item, A_EXPIRES, attr_n(rec->expires_at));
		json_object_object_add(item, A_TTL, attr_n(ttl_seconds(rec->expires_at)));
	}
	if (rec->format)
		json_object_object_add(item, A_FORMAT, attr_s(rec->format));
	if (rec->data)
	{
		json_object *b = attr_b(rec->data, rec->data_len);

		if (b == NULL)
		{
			json_object_put(item);
			return NULL;
		}
		json_object_object_add(item, A_DATA, b);
	}
	return item;
}

/*
 * DynamoDB's size of an item: attribute names plus values (numbers count
 * at most 21 bytes).  Checked before sending, to answer the 400 KB limit
 * with STORAGE_INVALID_ARGUMENT rather than a server error.
 */
static size_t
item_size(const storage_record *rec)
{
	size_t		size = strlen(A_ID) + strlen(rec->id) + strlen(A_VERSION) + 21;

	if (rec->expires_at != STORAGE_NEVER)
		size += strlen(A_EXPIRES) + 21 + strlen(A_TTL) + 21;
	if (rec->format)
		size += strlen(A_FORMAT) + strlen(rec->format);
	if (rec->data)
		size += strlen(A_DATA) + rec->data_len;
	return size;
}

static storage_status
check_item_size(storage_client *h, const storage_record *rec)
{
	size_t		size = item_size(rec);

	if (size > DDB_MAX_ITEM)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "record \"%s\" is %zu bytes as a DynamoDB item, more than DynamoDB's limit of 400 KB (%d bytes)",
							 rec->id, size, DDB_MAX_ITEM);
	return STORAGE_OK;
}

static bool
get_n(json_object *item, const char *name, int64_t *out)
{
	json_object *a,
			   *n;
	char	   *end;
	long long	v;

	if (!json_object_object_get_ex(item, name, &a) ||
		!json_object_object_get_ex(a, "N", &n))
		return false;
	errno = 0;
	v = strtoll(json_object_get_string(n), &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64_t) v;
	return true;
}

static const char *
get_s(json_object *item, const char *name)
{
	json_object *a,
			   *s;

	if (!json_object_object_get_ex(item, name, &a) ||
		!json_object_object_get_ex(a, "S", &s))
		return NULL;
	return json_object_get_string(s);
}

/* Decode an item into rec (malloc'd fields); false if malformed/no memory. */
static bool
decode_item(json_object *item, storage_record *rec)
{
	const char *id = get_s(item, A_ID);
	const char *format = get_s(item, A_FORMAT);
	json_object *a,
			   *b;

	memset(rec, 0, sizeof(*rec));
	if (id == NULL || !get_n(item, A_VERSION, &rec->version))
		return false;
	if (!get_n(item, A_EXPIRES, &rec->expires_at))
		rec->expires_at = STORAGE_NEVER;
	if ((rec->id = strdup(id)) == NULL)
		return false;
	if (format && (rec->format = strdup(format)) == NULL)
		goto fail;
	if (json_object_object_get_ex(item, A_DATA, &a) &&
		json_object_object_get_ex(a, "B", &b))
	{
		const char *b64 = json_object_get_string(b);
		size_t		len = strlen(b64);
		unsigned char *data = malloc(len / 4 * 3 + 1);
		int			n;

		if (data == NULL)
			goto fail;
		n = len ? EVP_DecodeBlock(data, (const unsigned char *) b64, (int) len) : 0;
		if (n < 0)
		{
			free(data);
			goto fail;
		}
		/* EVP_DecodeBlock counts the padding as zero bytes */
		if (len >= 1 && b64[len - 1] == '=')
			n--;
		if (len >= 2 && b64[len - 2] == '=')
			n--;
		rec->data = data;
		rec->data_len = (size_t) n;
	}
	return true;
fail:
	storage_record_clear(rec);
	return false;
}

/* ---- requests ---------------------------------------------------------------- */

static size_t
on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	ddb_state  *ds = arg;
	size_t		len = size * nmemb;

	if (ds->body_len + len + 1 > ds->body_cap)
	{
		size_t		cap = (ds->body_len + len + 1) * 2;
		char	   *nb = realloc(ds->body, cap);

		if (nb == NULL)
			return 0;			/* curl fails the transfer */
		ds->body = nb;
		ds->body_cap = cap;
	}
	memcpy(ds->body + ds->body_len, ptr, len);
	ds->body_len += len;
	ds->body[ds->body_len] = '\0';
	return len;
}

/*
 * Configure AWS Signature V4 signing of h's requests: libcurl signs every
 * request itself (CURLOPT_AWS_SIGV4).  Separate so that the suite can
 * check it against AWS's published signing examples.
 */
static void
setup_signing(CURL *curl, const char *userpwd, const char *sigv4)
{
	curl_easy_setopt(curl, CURLOPT_USERPWD, userpwd);
	curl_easy_setopt(curl, CURLOPT_AWS_SIGV4, sigv4);
}

/* Is this AWS error type worth retrying (the SDKs' list)? */
static bool
type_retryable(const char *type)
{
	static const char *const retry[] = {
		"ProvisionedThroughputExceededException", "ThrottlingException",
		"RequestLimitExceeded", "Throttling", "ThrottledException",
		"InternalServerError", "InternalFailure", "ServiceUnavailable",
		"TransactionInProgressException", "LimitExceededException",
	};

	for (size_t i = 0; i < sizeof(retry) / sizeof(retry[0]); i++)
		if (strcmp(type, retry[i]) == 0)
			return true;
	return false;
}

/* curl failures after which nothing can have reached the server */
static bool
curl_not_sent(CURLcode rc)
{
	return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
		rc == CURLE_COULDNT_RESOLVE_PROXY;
}

typedef struct ddb_answer
{
	json_object *json;			/* the parsed answer (200) or error body */
	char		type[128];		/* AWS error type, "" on success */
	const char *message;		/* inside json */
} ddb_answer;

static void
answer_free(ddb_answer *ans)
{
	if (ans->json)
		json_object_put(ans->json);
	memset(ans, 0, sizeof(*ans));
}

/*
 * Send one request: POST of req's JSON with X-Amz-Target DynamoDB_20120810.op.
 * Retries throttling, 5xx and connection failures with backoff.  Returns
 * STORAGE_OK with ans->json the answer when HTTP 200; STORAGE_OK with
 * ans->type set for an AWS error that the caller interprets (those in
 * pass[], NULL-terminated); otherwise records the error and returns
 * STORAGE_BACKEND_ERROR.  A write (!is_read) whose answer was lost is
 * reported with STORAGE_OUTCOME_UNKNOWN and not retried.
 */
static storage_status
ddb_call(storage_client *h, ddb_state *ds, const char *op, json_object *req,
		 bool is_read, const char *const *pass, ddb_answer *ans)
{
	const char *payload = json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN);
	char		target[96];
	struct curl_slist *headers = NULL;
	storage_status st = STORAGE_BACKEND_ERROR;

	memset(ans, 0, sizeof(*ans));
	snprintf(target, sizeof(target), "X-Amz-Target: " DDB_TARGET_PREFIX "%s", op);
	headers = curl_slist_append(headers, "Content-Type: application/x-amz-json-1.0");
	headers = curl_slist_append(headers, target);
	if (ds->token_header)
		headers = curl_slist_append(headers, ds->token_header);
	if (headers == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");

	for (int attempt = 0;; attempt++)
	{
		CURLcode	rc;
		long		status = 0;
		json_object *type_o = NULL;
		json_object *msg_o = NULL;
		const char *type;
		bool		last = attempt + 1 >= ds->max_attempts;

		ds->body_len = 0;
		if (ds->body)
			ds->body[0] = '\0';
		curl_easy_setopt(ds->curl, CURLOPT_URL, ds->endpoint);
		curl_easy_setopt(ds->curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(ds->curl, CURLOPT_POSTFIELDS, payload);
		curl_easy_setopt(ds->curl, CURLOPT_POSTFIELDSIZE, (long) strlen(payload));
		rc = curl_easy_perform(ds->curl);
		if (rc != CURLE_OK)
		{
			bool		sent = !curl_not_sent(rc);

			if ((!sent || is_read) && !last)
			{
				backoff(attempt);
				continue;
			}
			storage_error(h, STORAGE_BACKEND_ERROR, "DynamoDB %s at %s failed: %s%s",
						  op, ds->endpoint, curl_easy_strerror(rc),
						  sent && !is_read ? " (the write may or may not have been applied)" : "");
			{
				char		code[64];

				snprintf(code, sizeof(code), "CURLE_%d", (int) rc);
				if (rc == CURLE_COULDNT_CONNECT)
					snprintf(code, sizeof(code), "CURLE_COULDNT_CONNECT");
				else if (rc == CURLE_OPERATION_TIMEDOUT)
					snprintf(code, sizeof(code), "CURLE_OPERATION_TIMEDOUT");
				else if (rc == CURLE_COULDNT_RESOLVE_HOST)
					snprintf(code, sizeof(code), "CURLE_COULDNT_RESOLVE_HOST");
				storage_error_detail(code, true);
			}
			if (sent && !is_read)
				storage_error_outcome(STORAGE_OUTCOME_UNKNOWN);
			break;
		}
		curl_easy_getinfo(ds->curl, CURLINFO_RESPONSE_CODE, &status);
		ans->json = ds->body_len ? json_tokener_parse(ds->body) : NULL;
		if (status == 200)
		{
			if (ans->json == NULL)
			{
				storage_error(h, STORAGE_BACKEND_ERROR,
							  "DynamoDB %s: unparsable answer", op);
				break;
			}
			st = STORAGE_OK;
			break;
		}
		/* {"__type": "com.amazonaws.dynamodb.v20120810#Type", "message": ...} */
		if (ans->json)
		{
			json_object_object_get_ex(ans->json, "__type", &type_o);
			if (!json_object_object_get_ex(ans->json, "message", &msg_o))
				json_object_object_get_ex(ans->json, "Message", &msg_o);
		}
		type = type_o ? json_object_get_string(type_o) : "";
		if (strchr(type, '#'))
			type = strchr(type, '#') + 1;
		if (type[0] == '\0')
			snprintf(ans->type, sizeof(ans->type), "HTTP %ld", status);
		else
			snprintf(ans->type, sizeof(ans->type), "%s", type);
		ans->message = msg_o ? json_object_get_string(msg_o) : "";
		for (const char *const *p = pass; p && *p; p++)
			if (strcmp(ans->type, *p) == 0)
			{
				curl_slist_free_all(headers);
				return STORAGE_OK;
			}
		if ((status >= 500 || type_retryable(ans->type)) && !last)
		{
			answer_free(ans);
			backoff(attempt);
			continue;
		}
		if (strcmp(ans->type, "UnknownOperationException") == 0)
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "DynamoDB %s is not supported by this server (%s): use Amazon DynamoDB or a server that implements it",
						  op, ds->endpoint);
		else
			storage_error(h, STORAGE_BACKEND_ERROR, "DynamoDB %s failed: %s: %s",
						  op, ans->type, ans->message);
		storage_error_detail(ans->type, status >= 500 || type_retryable(ans->type));
		break;
	}
	curl_slist_free_all(headers);
	if (st != STORAGE_OK)
		answer_free(ans);
	return st;
}

static json_object *
new_request(ddb_state *ds)
{
	json_object *req = json_object_new_object();

	json_object_object_add(req, "TableName", json_object_new_string(ds->table));
	return req;
}

/* ---- open / close ------------------------------------------------------------ */

static void
ddb_free(ddb_state *ds)
{
	if (ds == NULL)
		return;
	if (ds->curl)
		curl_easy_cleanup(ds->curl);
	free(ds->table);
	free(ds->region);
	free(ds->endpoint);
	free(ds->userpwd);
	free(ds->sigv4);
	free(ds->token_header);
	free(ds->body);
	free(ds);
}

/* Decode %XX in place. */
static void
pct_decode(char *s)
{
	char	   *o = s;

	for (; *s; s++)
	{
		if (s[0] == '%' && s[1] && s[2])
		{
			char		hex[3] = {s[1], s[2], 0};
			char	   *end;
			long		v = strtol(hex, &end, 16);

			if (*end == '\0' && v > 0)
			{
				*o++ = (char) v;
				s += 2;
				continue;
			}
		}
		*o++ = *s;
	}
	*o = '\0';
}

/* Parse "TABLE?k=v&k=v" into ds; *create set from create=. */
static storage_status
parse_spec(storage_client *h, ddb_state *ds, const char *spec, bool *create)
{
	char	   *copy = strdup(spec);
	char	   *q;
	char	   *save = NULL;
	storage_status st = STORAGE_OK;

	if (copy == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	if ((q = strchr(copy, '?')) != NULL)
		*q++ = '\0';
	pct_decode(copy);
	if (strlen(copy) < 3 || strlen(copy) > 255 ||
		strspn(copy, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != strlen(copy))
	{
		st = storage_error(h, STORAGE_INVALID_ARGUMENT,
						   "bad DynamoDB table name \"%s\" (3 to 255 of [A-Za-z0-9_.-]): use dynamodb://TABLE?region=R&endpoint=URL&create=true",
						   copy);
		goto out;
	}
	ds->table = xstrdup(copy);
	for (char *kv = q ? strtok_r(q, "&", &save) : NULL; kv; kv = strtok_r(NULL, "&", &save))
	{
		char	   *val = strchr(kv, '=');

		if (val == NULL)
		{
			st = storage_error(h, STORAGE_INVALID_ARGUMENT,
							   "DynamoDB URI parameter \"%s\" has no value", kv);
			goto out;
		}
		*val++ = '\0';
		pct_decode(val);
		if (strcmp(kv, "region") == 0)
		{
			free(ds->region);
			ds->region = xstrdup(val);
		}
		else if (strcmp(kv, "endpoint") == 0)
		{
			free(ds->endpoint);
			ds->endpoint = xstrdup(val);
		}
		else if (strcmp(kv, "create") == 0)
		{
			if (strcmp(val, "true") != 0 && strcmp(val, "false") != 0)
			{
				st = storage_error(h, STORAGE_INVALID_ARGUMENT,
								   "DynamoDB URI parameter create must be true or false, not \"%s\"", val);
				goto out;
			}
			*create = strcmp(val, "true") == 0;
		}
		else if (strcmp(kv, "timeout_ms") == 0 || strcmp(kv, "connect_timeout_ms") == 0 ||
				 strcmp(kv, "max_attempts") == 0)
		{
			char	   *end;
			long		v = strtol(val, &end, 10);

			if (*end != '\0' || v <= 0 || v > 3600000)
			{
				st = storage_error(h, STORAGE_INVALID_ARGUMENT,
								   "DynamoDB URI parameter %s must be a positive integer, not \"%s\"", kv, val);
				goto out;
			}
			if (kv[0] == 't')
				ds->timeout_ms = v;
			else if (kv[0] == 'c')
				ds->connect_timeout_ms = v;
			else
				ds->max_attempts = (int) (v > 100 ? 100 : v);
		}
		else
		{
			st = storage_error(h, STORAGE_INVALID_ARGUMENT,
							   "unknown DynamoDB URI parameter \"%s\" (known: region, endpoint, create, timeout_ms, connect_timeout_ms, max_attempts)",
							   kv);
			goto out;
		}
	}
out:
	free(copy);
	return st;
}

/* DescribeTable: *status the TableStatus, or NULL if the table is missing. */
static storage_status
describe_table(storage_client *h, ddb_state *ds, char *status, size_t size,
			   bool *exists)
{
	static const char *const pass[] = {"ResourceNotFoundException", NULL};
	json_object *req = new_request(ds);
	json_object *t,
			   *s;
	ddb_answer	ans;
	storage_status st;

	st = ddb_call(h, ds, "DescribeTable", req, true, pass, &ans);
	json_object_put(req);
	if (st != STORAGE_OK)
		return st;
	*exists = ans.type[0] == '\0';
	status[0] = '\0';
	if (*exists && json_object_object_get_ex(ans.json, "Table", &t) &&
		json_object_object_get_ex(t, "TableStatus", &s))
		snprintf(status, size, "%s", json_object_get_string(s));
	answer_free(&ans);
	return STORAGE_OK;
}

static storage_status
create_table(storage_client *h, ddb_state *ds)
{
	static const char *const pass[] = {"ResourceInUseException", NULL};
	json_object *req = new_request(ds);
	json_object *defs = json_object_new_array();
	json_object *def = json_object_new_object();
	json_object *keys = json_object_new_array();
	json_object *key = json_object_new_object();
	ddb_answer	ans;
	storage_status st;

	json_object_object_add(def, "AttributeName", json_object_new_string(A_ID));
	json_object_object_add(def, "AttributeType", json_object_new_string("S"));
	json_object_array_add(defs, def);
	json_object_object_add(key, "AttributeName", json_object_new_string(A_ID));
	json_object_object_add(key, "KeyType", json_object_new_string("HASH"));
	json_object_array_add(keys, key);
	json_object_object_add(req, "AttributeDefinitions", defs);
	json_object_object_add(req, "KeySchema", keys);
	json_object_object_add(req, "BillingMode", json_object_new_string("PAY_PER_REQUEST"));
	st = ddb_call(h, ds, "CreateTable", req, false, pass, &ans);
	json_object_put(req);
	answer_free(&ans);			/* created, or someone else did */
	return st;
}

static storage_status
ddb_open(storage_client *h, const char *spec, void **state)
{
	ddb_state  *ds = calloc(1, sizeof(*ds));
	const char *akid = getenv("AWS_ACCESS_KEY_ID");
	const char *secret = getenv("AWS_SECRET_ACCESS_KEY");
	const char *token = getenv("AWS_SESSION_TOKEN");
	bool		create = false;
	bool		exists = false;
	char		status[64];
	storage_status st;

	if (ds == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	ds->timeout_ms = 10000;
	ds->connect_timeout_ms = 3000;
	ds->max_attempts = 8;
	if ((st = parse_spec(h, ds, spec, &create)) != STORAGE_OK)
		goto fail;
	if (ds->region == NULL)
	{
		const char *r = getenv("AWS_REGION");

		if (r == NULL || r[0] == '\0')
			r = getenv("AWS_DEFAULT_REGION");
		if (r == NULL || r[0] == '\0')
		{
			st = storage_error(h, STORAGE_INVALID_ARGUMENT,
							   "no DynamoDB region: add region=... to the URI or set AWS_REGION");
			goto fail;
		}
		ds->region = xstrdup(r);
	}
	if (akid == NULL || akid[0] == '\0' || secret == NULL || secret[0] == '\0')
	{
		st = storage_error(h, STORAGE_INVALID_ARGUMENT,
						   "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)");
		goto fail;
	}
	if (ds->endpoint == NULL &&
		asprintf(&ds->endpoint, "https://dynamodb.%s.amazonaws.com/", ds->region) < 0)
		ds->endpoint = NULL;
	if (asprintf(&ds->userpwd, "%s:%s", akid, secret) < 0)
		ds->userpwd = NULL;
	if (asprintf(&ds->sigv4, "aws:amz:%s:dynamodb", ds->region) < 0)
		ds->sigv4 = NULL;
	if (token && token[0] &&
		asprintf(&ds->token_header, "x-amz-security-token: %s", token) < 0)
		ds->token_header = NULL;
	if (ds->table == NULL || ds->region == NULL || ds->endpoint == NULL ||
		ds->userpwd == NULL || ds->sigv4 == NULL ||
		(token && token[0] && ds->token_header == NULL))
	{
		st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		goto fail;
	}
	pthread_once(&curl_once, curl_init_once);
	if (curl_init_result != CURLE_OK || (ds->curl = curl_easy_init()) == NULL)
	{
		st = storage_error(h, STORAGE_BACKEND_ERROR, "could not initialize libcurl");
		goto fail;
	}
	setup_signing(ds->curl, ds->userpwd, ds->sigv4);
	curl_easy_setopt(ds->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(ds->curl, CURLOPT_WRITEDATA, ds);
	curl_easy_setopt(ds->curl, CURLOPT_TIMEOUT_MS, ds->timeout_ms);
	curl_easy_setopt(ds->curl, CURLOPT_CONNECTTIMEOUT_MS, ds->connect_timeout_ms);
	curl_easy_setopt(ds->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(ds->curl, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(ds->curl, CURLOPT_USERAGENT, "libstorage_client/" STORAGE_CLIENT_VERSION);

	/* the table must exist (or be created), with key "id" */
	if ((st = describe_table(h, ds, status, sizeof(status), &exists)) != STORAGE_OK)
		goto fail;
	if (!exists && !create)
	{
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "DynamoDB table \"%s\" does not exist (add create=true to the URI to create it)",
						   ds->table);
		storage_error_detail("ResourceNotFoundException", false);
		goto fail;
	}
	if (!exists && (st = create_table(h, ds)) != STORAGE_OK)
		goto fail;
	/* a new table stays CREATING for a while: wait until it is ACTIVE */
	for (int i = 0; strcmp(status, "ACTIVE") != 0; i++)
	{
		if (i >= 600)
		{
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "DynamoDB table \"%s\" did not become ACTIVE within 60 s (status %s)",
							   ds->table, status);
			storage_error_detail("ResourceInUseException", true);
			goto fail;
		}
		if (i > 0)
			sleep_ms(100);
		if ((st = describe_table(h, ds, status, sizeof(status), &exists)) != STORAGE_OK)
			goto fail;
	}
	*state = ds;
	return STORAGE_OK;
fail:
	ddb_free(ds);
	return st;
}

static void
ddb_close(void *state)
{
	ddb_free(state);
}

/* ---- single records ------------------------------------------------------- */

/*
 * GetItem (strongly consistent): *found and rec (malloc'd) if an item
 * exists, whatever its liveness.
 */
static storage_status
get_item(storage_client *h, ddb_state *ds, const char *id, storage_record *rec,
		 bool *found)
{
	json_object *req = new_request(ds);
	json_object *item;
	ddb_answer	ans;
	storage_status st;

	*found = false;
	memset(rec, 0, sizeof(*rec));
	json_object_object_add(req, "Key", key_of(id));
	json_object_object_add(req, "ConsistentRead", json_object_new_boolean(1));
	st = ddb_call(h, ds, "GetItem", req, true, NULL, &ans);
	json_object_put(req);
	if (st != STORAGE_OK)
		return st;
	if (json_object_object_get_ex(ans.json, "Item", &item))
	{
		if (!decode_item(item, rec))
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "DynamoDB item \"%s\" is not a record of this library (or out of memory)", id);
		else
			*found = true;
	}
	answer_free(&ans);
	return st;
}

static storage_status
ddb_fetch(storage_client *h, void *state, const char *id, storage_record *out)
{
	bool		found;
	storage_status st = get_item(h, state, id, out, &found);

	if (st != STORAGE_OK)
		return st;
	if (!found || !storage_is_live(out->expires_at, storage_clock_now(h)))
	{
		storage_record_clear(out);
		return storage_error(h, STORAGE_NOT_FOUND, "record \"%s\" not found", id);
	}
	return STORAGE_OK;
}

/* The live version of id (0 if none) as seen now. */
static storage_status
live_version(storage_client *h, ddb_state *ds, const char *id, int64_t now,
			 int64_t *live)
{
	storage_record cur;
	bool		found;
	storage_status st = get_item(h, ds, id, &cur, &found);

	*live = 0;
	if (st == STORAGE_OK && found && storage_is_live(cur.expires_at, now))
		*live = cur.version;
	storage_record_clear(&cur);
	return st;
}

/*
 * Add to a Put/Delete request the condition that the item is in the state
 * we saw: live with version `live`, or (live == 0) absent or expired.
 */
static void
add_state_condition(json_object *req, int64_t live, int64_t now)
{
	json_object *vals = json_object_new_object();

	json_object_object_add(vals, ":now", attr_n(now));
	if (live > 0)
		json_object_object_add(vals, ":v", attr_n(live));
	json_object_object_add(req, "ConditionExpression",
						   json_object_new_string(live > 0 ? COND_VERSION : COND_CREATE));
	json_object_object_add(req, "ExpressionAttributeNames",
						   attr_names(live > 0 ? COND_VERSION : COND_CREATE, NULL));
	json_object_object_add(req, "ExpressionAttributeValues", vals);
}

/* Conditional PutItem; *lost = the condition failed. */
static storage_status
put_on_state(storage_client *h, ddb_state *ds, const storage_record *rec,
			 int64_t live, int64_t now, bool *lost)
{
	static const char *const pass[] = {"ConditionalCheckFailedException", NULL};
	json_object *req = new_request(ds);
	json_object *item = encode_item(rec);
	ddb_answer	ans;
	storage_status st;

	*lost = false;
	if (item == NULL)
	{
		json_object_put(req);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	json_object_object_add(req, "Item", item);
	add_state_condition(req, live, now);
	st = ddb_call(h, ds, "PutItem", req, false, pass, &ans);
	json_object_put(req);
	if (st == STORAGE_OK && ans.type[0] != '\0')
		*lost = true;
	answer_free(&ans);
	return st;
}

static storage_status
ddb_save(storage_client *h, void *state, storage_record *rec, int64_t expect)
{
	ddb_state  *ds = state;
	storage_status st;

	if ((st = check_item_size(h, rec)) != STORAGE_OK)
		return st;
	for (int round = 0; round < DDB_CAS_ROUNDS; round++)
	{
		int64_t		now = storage_clock_now(h);
		int64_t		live;
		int64_t		nv;
		bool		lost;

		if (expect > 0)
		{
			/* write on the expected state; read only to explain a conflict */
			if ((st = storage_save_rule(h, rec->id, expect, expect, &nv)) != STORAGE_OK)
				return st;
			live = expect;
		}
		else if (expect == 0)
		{
			nv = 1;
			live = 0;
		}
		else
		{
			if ((st = live_version(h, ds, rec->id, now, &live)) != STORAGE_OK)
				return st;
			if ((st = storage_save_rule(h, rec->id, live, expect, &nv)) != STORAGE_OK)
				return st;
		}
		rec->version = nv;
		if ((st = put_on_state(h, ds, rec, live, now, &lost)) != STORAGE_OK)
			return st;
		if (!lost)
			return STORAGE_OK;
		if (expect >= 0)
		{
			/* say what the record is now, with the rules' own message */
			if ((st = live_version(h, ds, rec->id, now, &live)) != STORAGE_OK)
				return st;
			st = storage_save_rule(h, rec->id, live, expect, &nv);
			if (st != STORAGE_OK)
				return st;
			return storage_error(h, STORAGE_VERSION_CONFLICT,
								 "version conflict: record \"%s\" changed concurrently",
								 rec->id);
		}
		/* unversioned: someone wrote between our read and write; again */
	}
	storage_error(h, STORAGE_BACKEND_ERROR,
				  "record \"%s\": gave up after %d concurrent changes between read and write",
				  rec->id, DDB_CAS_ROUNDS);
	storage_error_detail("ConditionalCheckFailedException", true);
	return STORAGE_BACKEND_ERROR;
}

static storage_status
ddb_delete(storage_client *h, void *state, const char *id, bool *deleted)
{
	ddb_state  *ds = state;
	json_object *req = new_request(ds);
	json_object *old;
	ddb_answer	ans;
	storage_status st;

	json_object_object_add(req, "Key", key_of(id));
	json_object_object_add(req, "ReturnValues", json_object_new_string("ALL_OLD"));
	st = ddb_call(h, ds, "DeleteItem", req, false, NULL, &ans);
	json_object_put(req);
	if (st != STORAGE_OK)
		return st;
	if (json_object_object_get_ex(ans.json, "Attributes", &old))
	{
		int64_t		e = STORAGE_NEVER;

		if (!get_n(old, A_EXPIRES, &e))
			e = STORAGE_NEVER;
		*deleted = storage_is_live(e, storage_clock_now(h));
	}
	answer_free(&ans);
	return STORAGE_OK;
}

/* ---- scans ------------------------------------------------------------------ */

typedef storage_status (*scan_fn) (storage_client *h, ddb_state *ds,
								   json_object *item, void *arg, bool *stop);

/*
 * A strongly consistent Scan of the whole table with a filter, page after
 * page (LastEvaluatedKey), calling fn for every item that passed it.
 */
static storage_status
scan(storage_client *h, ddb_state *ds, const char *filter, json_object *values,
	 const char *projection, scan_fn fn, void *arg)
{
	json_object *start = NULL;
	storage_status st = STORAGE_OK;
	bool		stop = false;

	do
	{
		json_object *req = new_request(ds);
		json_object *items;
		json_object *last;
		ddb_answer	ans;

		json_object_object_add(req, "ConsistentRead", json_object_new_boolean(1));
		json_object_object_add(req, "FilterExpression", json_object_new_string(filter));
		json_object_object_add(req, "ExpressionAttributeNames", attr_names(filter, projection));
		json_object_object_add(req, "ExpressionAttributeValues", json_object_get(values));
		if (projection)
			json_object_object_add(req, "ProjectionExpression",
								   json_object_new_string(projection));
		if (start)
			json_object_object_add(req, "ExclusiveStartKey", start);
		start = NULL;
		st = ddb_call(h, ds, "Scan", req, true, NULL, &ans);
		json_object_put(req);
		if (st != STORAGE_OK)
			break;
		if (json_object_object_get_ex(ans.json, "Items", &items))
			for (size_t i = 0; st == STORAGE_OK && !stop &&
				 i < json_object_array_length(items); i++)
				st = fn(h, ds, json_object_array_get_idx(items, i), arg, &stop);
		if (st == STORAGE_OK && !stop &&
			json_object_object_get_ex(ans.json, "LastEvaluatedKey", &last))
			start = json_object_get(last);
		answer_free(&ans);
	} while (st == STORAGE_OK && !stop && start);
	if (start)
		json_object_put(start);
	return st;
}

typedef struct purge_arg
{
	int64_t		now;
	int64_t		max_rows;
	int64_t    *count;
} purge_arg;

static storage_status
purge_one(storage_client *h, ddb_state *ds, json_object *item, void *p, bool *stop)
{
	static const char *const pass[] = {"ConditionalCheckFailedException", NULL};
	purge_arg  *a = p;
	const char *id = get_s(item, A_ID);
	int64_t		version;
	json_object *req;
	json_object *vals;
	ddb_answer	ans;
	storage_status st;

	if (id == NULL || !get_n(item, A_VERSION, &version))
		return STORAGE_OK;		/* not ours */
	req = new_request(ds);
	vals = json_object_new_object();
	json_object_object_add(req, "Key", key_of(id));
	/* only if it is still this expired version: a new save wins */
	json_object_object_add(req, "ConditionExpression",
						   json_object_new_string("#v = :v AND " COND_EXPIRED));
	json_object_object_add(vals, ":v", attr_n(version));
	json_object_object_add(vals, ":now", attr_n(a->now));
	json_object_object_add(req, "ExpressionAttributeNames",
						   attr_names("#v = :v AND " COND_EXPIRED, NULL));
	json_object_object_add(req, "ExpressionAttributeValues", vals);
	st = ddb_call(h, ds, "DeleteItem", req, false, pass, &ans);
	json_object_put(req);
	if (st == STORAGE_OK && ans.type[0] == '\0')
		(*a->count)++;
	answer_free(&ans);
	if (a->max_rows > 0 && *a->count >= a->max_rows)
		*stop = true;
	return st;
}

static storage_status
ddb_purge(storage_client *h, void *state, int64_t max_rows, int64_t *count)
{
	purge_arg	a = {.now = storage_clock_now(h), .max_rows = max_rows, .count = count};
	json_object *vals = json_object_new_object();
	storage_status st;

	json_object_object_add(vals, ":now", attr_n(a.now));
	st = scan(h, state, COND_EXPIRED, vals, "#id, #v, #e", purge_one, &a);
	json_object_put(vals);
	return st;
}

typedef struct list_arg
{
	storage_record **out;
	size_t	   *n;
	size_t		cap;
} list_arg;

static storage_status
list_one(storage_client *h, ddb_state *ds, json_object *item, void *p, bool *stop)
{
	list_arg   *a = p;
	storage_record rec;

	(void) ds;
	(void) stop;
	/* the fence counter and anything else with an id no record can have */
	if (get_s(item, A_ID) && strlen(get_s(item, A_ID)) > STORAGE_MAX_ID_LEN)
		return STORAGE_OK;
	if (!decode_item(item, &rec))
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "a DynamoDB item is not a record of this library (or out of memory)");
	if (*a->n == a->cap)
	{
		size_t		ncap = a->cap ? a->cap * 2 : 16;
		storage_record *nrecs = realloc(*a->out, ncap * sizeof(storage_record));

		if (nrecs == NULL)
		{
			storage_record_clear(&rec);
			return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
		}
		*a->out = nrecs;
		a->cap = ncap;
	}
	(*a->out)[(*a->n)++] = rec;
	return STORAGE_OK;
}

static storage_status
ddb_list(storage_client *h, void *state, const char *prefix,
		 storage_record **out, size_t *n)
{
	list_arg	a = {.out = out, .n = n};
	json_object *vals = json_object_new_object();
	storage_status st;

	json_object_object_add(vals, ":now", attr_n(storage_clock_now(h)));
	if (prefix[0])
		json_object_object_add(vals, ":p", attr_s(prefix));
	st = scan(h, state,
			  prefix[0] ? "begins_with(#id, :p) AND " COND_LIVE : COND_LIVE,
			  vals, NULL, list_one, &a);
	json_object_put(vals);
	/* Scan returns items in hash order */
	if (st == STORAGE_OK && *n > 1)
		qsort(*out, *n, sizeof(storage_record), storage_record_cmp);
	return st;
}

/* ---- batches -------------------------------------------------------------- */

/*
 * BatchGetItem of ids (any number: 100 a request), strongly consistent;
 * unprocessed keys are asked again after a backoff.  Every item found,
 * whatever its liveness, is appended to *out (capacity n).
 */
static storage_status
batch_get(storage_client *h, ddb_state *ds, const char *const *ids, size_t n,
		  storage_record *out, size_t *n_out)
{
	for (size_t start = 0; start < n; start += DDB_MAX_BATCH)
	{
		size_t		end = start + DDB_MAX_BATCH < n ? start + DDB_MAX_BATCH : n;
		json_object *keys = json_object_new_array();

		for (size_t i = start; i < end; i++)
			json_object_array_add(keys, key_of(ids[i]));
		for (int attempt = 0; keys != NULL; attempt++)
		{
			json_object *req = json_object_new_object();
			json_object *ri = json_object_new_object();
			json_object *tbl = json_object_new_object();
			json_object *resp,
					   *items,
					   *unp,
					   *ut,
					   *uk;
			ddb_answer	ans;
			storage_status st;

			json_object_object_add(tbl, "Keys", keys);
			json_object_object_add(tbl, "ConsistentRead", json_object_new_boolean(1));
			json_object_object_add(ri, ds->table, tbl);
			json_object_object_add(req, "RequestItems", ri);
			keys = NULL;
			st = ddb_call(h, ds, "BatchGetItem", req, true, NULL, &ans);
			json_object_put(req);
			if (st != STORAGE_OK)
				return st;
			if (json_object_object_get_ex(ans.json, "Responses", &resp) &&
				json_object_object_get_ex(resp, ds->table, &items))
				for (size_t i = 0; i < json_object_array_length(items); i++)
				{
					if (*n_out >= n || !decode_item(json_object_array_get_idx(items, i), &out[*n_out]))
					{
						answer_free(&ans);
						return storage_error(h, STORAGE_BACKEND_ERROR,
											 "BatchGetItem: an item is not a record of this library (or out of memory)");
					}
					(*n_out)++;
				}
			if (json_object_object_get_ex(ans.json, "UnprocessedKeys", &unp) &&
				json_object_object_get_ex(unp, ds->table, &ut) &&
				json_object_object_get_ex(ut, "Keys", &uk) &&
				json_object_array_length(uk) > 0)
			{
				if (attempt + 1 >= ds->max_attempts * 2)
				{
					answer_free(&ans);
					storage_error(h, STORAGE_BACKEND_ERROR,
								  "BatchGetItem: keys still unprocessed after %d attempts", attempt + 1);
					storage_error_detail("ProvisionedThroughputExceededException", true);
					return STORAGE_BACKEND_ERROR;
				}
				keys = json_object_get(uk);
				backoff(attempt);
			}
			answer_free(&ans);
		}
	}
	return STORAGE_OK;
}

static storage_status
ddb_fetch_many(storage_client *h, void *state, const char *const *ids,
			   size_t n, storage_record **out, size_t *n_out)
{
	int64_t		now = storage_clock_now(h);
	storage_status st;
	size_t		kept = 0;

	if ((*out = calloc(n, sizeof(storage_record))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	st = batch_get(h, state, ids, n, *out, n_out);
	if (st != STORAGE_OK)
		return st;
	for (size_t i = 0; i < *n_out; i++)
	{
		if (storage_is_live((*out)[i].expires_at, now))
			(*out)[kept++] = (*out)[i];
		else
			storage_record_clear(&(*out)[i]);
	}
	*n_out = kept;
	return STORAGE_OK;
}

/* The live version of each id (0: none) by one batch read. */
static storage_status
live_versions(storage_client *h, ddb_state *ds, const char *const *ids,
			  size_t n, int64_t now, int64_t *live)
{
	storage_record *recs = calloc(n ? n : 1, sizeof(storage_record));
	size_t		got = 0;
	storage_status st;

	if (recs == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	st = batch_get(h, ds, ids, n, recs, &got);
	for (size_t i = 0; i < n; i++)
		live[i] = 0;
	for (size_t j = 0; st == STORAGE_OK && j < got; j++)
		if (storage_is_live(recs[j].expires_at, now))
			for (size_t i = 0; i < n; i++)
				if (strcmp(ids[i], recs[j].id) == 0)
					live[i] = recs[j].version;
	storage_records_free(recs, got);
	return st;
}

/*
 * The TransactWriteItems request of a save_many: a Put per record, each on
 * the condition that the record is still in the state its new version was
 * computed from (live[i]: that live version, or 0 for absent or expired).
 * Shared with the suite's encoding test through
 * storage_dynamodb_test_encode_save_many().
 */
static json_object *
encode_save_many(const char *table, const storage_record *recs, size_t n,
				 const int64_t *live, int64_t now)
{
	json_object *req = json_object_new_object();
	json_object *items = json_object_new_array();

	for (size_t i = 0; i < n; i++)
	{
		json_object *put = json_object_new_object();
		json_object *wrap = json_object_new_object();
		json_object *item = encode_item(&recs[i]);

		if (item == NULL)
		{
			json_object_put(put);
			json_object_put(wrap);
			json_object_put(items);
			json_object_put(req);
			return NULL;
		}
		json_object_object_add(put, "TableName", json_object_new_string(table));
		json_object_object_add(put, "Item", item);
		add_state_condition(put, live[i], now);
		json_object_object_add(wrap, "Put", put);
		json_object_array_add(items, wrap);
	}
	json_object_object_add(req, "TransactItems", items);
	return req;
}

/* The same for delete_many: a Delete per record found live or expired. */
static json_object *
encode_delete_many(const char *table, const char *const *ids, size_t n,
				   const int64_t *version)
{
	json_object *req = json_object_new_object();
	json_object *items = json_object_new_array();

	for (size_t i = 0; i < n; i++)
	{
		json_object *del;
		json_object *wrap;
		json_object *vals;

		if (version[i] == 0)
			continue;			/* nothing there */
		del = json_object_new_object();
		wrap = json_object_new_object();
		vals = json_object_new_object();
		json_object_object_add(del, "TableName", json_object_new_string(table));
		json_object_object_add(del, "Key", key_of(ids[i]));
		json_object_object_add(del, "ConditionExpression",
							   json_object_new_string("#v = :v"));
		json_object_object_add(vals, ":v", attr_n(version[i]));
		{
			json_object *names = json_object_new_object();

			json_object_object_add(names, "#v", json_object_new_string(A_VERSION));
			json_object_object_add(del, "ExpressionAttributeNames", names);
		}
		json_object_object_add(del, "ExpressionAttributeValues", vals);
		json_object_object_add(wrap, "Delete", del);
		json_object_array_add(items, wrap);
	}
	json_object_object_add(req, "TransactItems", items);
	return req;
}

/*
 * Send a TransactWriteItems; *lost = cancelled because a condition failed
 * (a concurrent change): the caller re-reads and decides again.
 */
static storage_status
transact(storage_client *h, ddb_state *ds, json_object *req, bool *lost)
{
	static const char *const pass[] = {"TransactionCanceledException", NULL};
	ddb_answer	ans;
	storage_status st;

	*lost = false;
	st = ddb_call(h, ds, "TransactWriteItems", req, false, pass, &ans);
	if (st == STORAGE_OK && ans.type[0] != '\0')
	{
		json_object *reasons;
		bool		conditional = false;

		if (json_object_object_get_ex(ans.json, "CancellationReasons", &reasons))
			for (size_t i = 0; i < json_object_array_length(reasons); i++)
			{
				json_object *code;

				if (json_object_object_get_ex(json_object_array_get_idx(reasons, i),
											  "Code", &code) &&
					strcmp(json_object_get_string(code), "ConditionalCheckFailed") == 0)
					conditional = true;
			}
		if (conditional || strstr(ans.message ? ans.message : "", "ConditionalCheckFailed"))
			*lost = true;
		else
		{
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "DynamoDB TransactWriteItems cancelled: %s", ans.message);
			storage_error_detail(ans.type, strstr(ans.message ? ans.message : "",
												  "TransactionConflict") != NULL);
		}
	}
	answer_free(&ans);
	return st;
}

static storage_status
check_batch_size(storage_client *h, size_t n)
{
	if (n > DDB_MAX_BATCH)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "a DynamoDB batch write takes at most %d records (%zu given): TransactWriteItems' limit, and atomicity cannot span requests",
							 DDB_MAX_BATCH, n);
	return STORAGE_OK;
}

static storage_status
ddb_save_many(storage_client *h, void *state, storage_record *recs, size_t n,
			  const int64_t *expect)
{
	ddb_state  *ds = state;
	const char **ids;
	int64_t    *live;
	storage_status st;

	if ((st = check_batch_size(h, n)) != STORAGE_OK)
		return st;
	for (size_t i = 0; i < n; i++)
		if ((st = check_item_size(h, &recs[i])) != STORAGE_OK)
			return st;
	ids = calloc(n, sizeof(char *));
	live = calloc(n, sizeof(int64_t));
	if (ids == NULL || live == NULL)
	{
		free(ids);
		free(live);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	for (size_t i = 0; i < n; i++)
		ids[i] = recs[i].id;
	for (int round = 0;; round++)
	{
		int64_t		now = storage_clock_now(h);
		json_object *req;
		bool		lost;

		if (round >= DDB_CAS_ROUNDS)
		{
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "save_many: gave up after %d concurrent changes between read and write",
							   DDB_CAS_ROUNDS);
			storage_error_detail("TransactionCanceledException", true);
			break;
		}
		/* the rules in the caller's order: the first conflict is named */
		if ((st = live_versions(h, ds, ids, n, now, live)) != STORAGE_OK)
			break;
		for (size_t i = 0; st == STORAGE_OK && i < n; i++)
			st = storage_save_rule(h, recs[i].id, live[i], expect[i], &recs[i].version);
		if (st != STORAGE_OK)
			break;
		if ((req = encode_save_many(ds->table, recs, n, live, now)) == NULL)
		{
			st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
			break;
		}
		st = transact(h, ds, req, &lost);
		json_object_put(req);
		if (st != STORAGE_OK || !lost)
			break;
	}
	free(ids);
	free(live);
	return st;
}

static storage_status
ddb_delete_many(storage_client *h, void *state, const char *const *ids,
				size_t n, int64_t *count)
{
	ddb_state  *ds = state;
	storage_record *recs;
	int64_t    *version;
	storage_status st;

	if ((st = check_batch_size(h, n)) != STORAGE_OK)
		return st;
	recs = calloc(n, sizeof(storage_record));
	version = calloc(n, sizeof(int64_t));
	if (recs == NULL || version == NULL)
	{
		free(recs);
		free(version);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	for (int round = 0;; round++)
	{
		int64_t		now = storage_clock_now(h);
		size_t		got = 0;
		size_t		present = 0;
		int64_t		live = 0;
		json_object *req;
		bool		lost;

		if (round >= DDB_CAS_ROUNDS)
		{
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "delete_many: gave up after %d concurrent changes between read and write",
							   DDB_CAS_ROUNDS);
			storage_error_detail("TransactionCanceledException", true);
			break;
		}
		/* what is there (live or expired), to delete exactly that */
		st = batch_get(h, ds, ids, n, recs, &got);
		for (size_t i = 0; i < n; i++)
			version[i] = 0;
		for (size_t j = 0; st == STORAGE_OK && j < got; j++)
			for (size_t i = 0; i < n; i++)
				if (strcmp(ids[i], recs[j].id) == 0)
				{
					version[i] = recs[j].version;
					present++;
					live += storage_is_live(recs[j].expires_at, now);
				}
		for (size_t j = 0; j < got; j++)
			storage_record_clear(&recs[j]);
		if (st != STORAGE_OK)
			break;
		if (present == 0)
			break;				/* nothing to delete: no transaction needed */
		if ((req = encode_delete_many(ds->table, ids, n, version)) == NULL)
		{
			st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
			break;
		}
		st = transact(h, ds, req, &lost);
		json_object_put(req);
		if (st != STORAGE_OK)
			break;
		if (!lost)
		{
			*count = live;
			break;
		}
	}
	free(recs);
	free(version);
	return st;
}

/* ---- locks with fencing tokens --------------------------------------------- */

/*
 * The store's fencing token counter is one item whose id is longer than any
 * record id can be (so no record can collide with it; list skips it): its
 * number attribute "fence_seq" is raised by an atomic UpdateItem.
 */
#define FENCE_COUNTER_ID \
	".storage_client.fence_counter." \
	"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~" \
	"~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~"
#define A_FENCE_SEQ "fence_seq"
#define A_NONCE		"lock_nonce"

/* One UpdateItem; *lost = its condition failed.  *out: UPDATED_NEW values. */
static storage_status
update_item(storage_client *h, ddb_state *ds, const char *id, const char *update,
			const char *cond, json_object *names, json_object *vals,
			bool *lost, json_object **out)
{
	static const char *const pass[] = {"ConditionalCheckFailedException", NULL};
	json_object *req = new_request(ds);
	json_object *attrs;
	ddb_answer	ans;
	storage_status st;

	*lost = false;
	json_object_object_add(req, "Key", key_of(id));
	json_object_object_add(req, "UpdateExpression", json_object_new_string(update));
	if (cond)
		json_object_object_add(req, "ConditionExpression", json_object_new_string(cond));
	json_object_object_add(req, "ExpressionAttributeNames", names);
	json_object_object_add(req, "ExpressionAttributeValues", vals);
	if (out)
		json_object_object_add(req, "ReturnValues", json_object_new_string("UPDATED_NEW"));
	st = ddb_call(h, ds, "UpdateItem", req, false, pass, &ans);
	json_object_put(req);
	if (st == STORAGE_OK && ans.type[0] != '\0')
		*lost = true;
	else if (st == STORAGE_OK && out &&
			 json_object_object_get_ex(ans.json, "Attributes", &attrs))
		*out = json_object_get(attrs);
	answer_free(&ans);
	return st;
}

/*
 * Take the lock, then draw the token and stamp it on the lock (as the
 * extension does: drawn after the take, so that tokens grow in the order
 * the lock was held).  The take writes version 1 and a random nonce; the
 * stamp is conditioned on that nonce, so a holder whose lease ran out
 * before it stamped loses the lock instead of stamping another's.
 */
static storage_status
ddb_lock_acquire(storage_client *h, void *state, const char *id,
				 const char *token, int64_t ttl, int64_t expires_at,
				 int64_t *fence)
{
	ddb_state  *ds = state;
	storage_record rec = {.id = id, .version = 1, .expires_at = expires_at};
	json_object *req = new_request(ds);
	json_object *item = encode_item(&rec);
	json_object *names;
	json_object *vals;
	json_object *attrs = NULL;
	static const char *const pass[] = {"ConditionalCheckFailedException", NULL};
	unsigned char rnd[12];
	char		nonce[32];
	int64_t		n = 0;
	ddb_answer	ans;
	bool		lost;
	storage_status st;

	(void) ttl;
	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
	{
		json_object_put(req);
		json_object_put(item);
		return storage_error(h, STORAGE_BACKEND_ERROR, "could not get random bytes: %m");
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		sprintf(nonce + 2 * i, "%02x", rnd[i]);
	json_object_object_add(item, A_NONCE, attr_s(nonce));
	json_object_object_add(req, "Item", item);
	add_state_condition(req, 0, storage_clock_now(h));
	st = ddb_call(h, ds, "PutItem", req, false, pass, &ans);
	json_object_put(req);
	lost = st == STORAGE_OK && ans.type[0] != '\0';
	answer_free(&ans);
	if (st != STORAGE_OK)
		return st;
	if (lost)
		return storage_error(h, STORAGE_ALREADY_EXISTS, "lock \"%s\" is held", token);

	/* draw: fence_seq = (fence_seq or 1) + 1, so tokens start at 2 */
	names = json_object_new_object();
	vals = json_object_new_object();
	json_object_object_add(names, "#s", json_object_new_string(A_FENCE_SEQ));
	json_object_object_add(vals, ":one", attr_n(1));
	st = update_item(h, ds, FENCE_COUNTER_ID, "SET #s = if_not_exists(#s, :one) + :one",
					 NULL, names, vals, &lost, &attrs);
	if (st == STORAGE_OK && (attrs == NULL || !get_n(attrs, A_FENCE_SEQ, &n) || n < 2))
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "DynamoDB UpdateItem of the fence counter returned no token");
	if (attrs)
		json_object_put(attrs);
	if (st != STORAGE_OK)
		return st;

	/* stamp it, if the lock is still ours */
	names = json_object_new_object();
	vals = json_object_new_object();
	json_object_object_add(names, "#v", json_object_new_string(A_VERSION));
	json_object_object_add(names, "#n", json_object_new_string(A_NONCE));
	json_object_object_add(vals, ":f", attr_n(n));
	json_object_object_add(vals, ":nonce", attr_s(nonce));
	st = update_item(h, ds, id, "SET #v = :f REMOVE #n", "#n = :nonce", names, vals,
					 &lost, NULL);
	if (st != STORAGE_OK)
		return st;
	if (lost)
		return storage_error(h, STORAGE_ALREADY_EXISTS,
							 "lock \"%s\" was taken over before its token was stamped", token);
	*fence = n;
	return STORAGE_OK;
}

/* condition: the lock is live and held with this fence */
#define COND_HELD "#v = :f AND " COND_LIVE

static json_object *
held_values(storage_client *h, int64_t fence)
{
	json_object *vals = json_object_new_object();

	json_object_object_add(vals, ":f", attr_n(fence));
	json_object_object_add(vals, ":now", attr_n(storage_clock_now(h)));
	return vals;
}

static storage_status
ddb_lock_release(storage_client *h, void *state, const char *id,
				 const char *token, int64_t fence)
{
	static const char *const pass[] = {"ConditionalCheckFailedException", NULL};
	ddb_state  *ds = state;
	json_object *req = new_request(ds);
	ddb_answer	ans;
	bool		lost;
	storage_status st;

	json_object_object_add(req, "Key", key_of(id));
	json_object_object_add(req, "ConditionExpression", json_object_new_string(COND_HELD));
	json_object_object_add(req, "ExpressionAttributeNames", attr_names(COND_HELD, NULL));
	json_object_object_add(req, "ExpressionAttributeValues", held_values(h, fence));
	st = ddb_call(h, ds, "DeleteItem", req, false, pass, &ans);
	json_object_put(req);
	lost = st == STORAGE_OK && ans.type[0] != '\0';
	answer_free(&ans);
	if (st == STORAGE_OK && lost)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "lock \"%s\" is not held with fence %lld",
							 token, (long long) fence);
	return st;
}

static storage_status
ddb_lock_extend(storage_client *h, void *state, const char *id,
				const char *token, int64_t fence, int64_t ttl,
				int64_t expires_at)
{
	json_object *names = attr_names(COND_HELD, NULL);
	json_object *vals = held_values(h, fence);
	bool		lost;
	storage_status st;

	(void) ttl;
	json_object_object_add(names, "#t", json_object_new_string(A_TTL));
	json_object_object_add(vals, ":e", attr_n(expires_at));
	json_object_object_add(vals, ":t", attr_n(ttl_seconds(expires_at)));
	st = update_item(h, state, id, "SET #e = :e, #t = :t", COND_HELD, names, vals,
					 &lost, NULL);
	if (st == STORAGE_OK && lost)
		return storage_error(h, STORAGE_NOT_FOUND,
							 "lock \"%s\" is not held with fence %lld",
							 token, (long long) fence);
	return st;
}

/* ---- test hooks ------------------------------------------------------------ */

/*
 * Tests only: the JSON body of the TransactWriteItems request that
 * save_many would send for recs (versions already set) on the states
 * live[], at time now.  malloc'd; NULL on out of memory.
 */
char *
storage_dynamodb_test_encode_save_many(const char *table,
									   const storage_record *recs, size_t n,
									   const int64_t *live, int64_t now)
{
	json_object *req = encode_save_many(table, recs, n, live, now);
	char	   *s;

	if (req == NULL)
		return NULL;
	s = strdup(json_object_to_json_string_ext(req, JSON_C_TO_STRING_PLAIN));
	json_object_put(req);
	return s;
}

static size_t
discard_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void) ptr;
	(void) arg;
	return size * nmemb;
}

/*
 * Tests only: send one request signed exactly as the backend signs its own
 * (setup_signing) to url, with extra headers (e.g. a fixed X-Amz-Date),
 * connecting to connect_to (CURLOPT_CONNECT_TO syntax) instead of the
 * url's host.  GET when body is NULL, else POST of body.  0 on success.
 */
int
storage_dynamodb_test_signed_request(const char *url, const char *connect_to,
									 const char *userpwd, const char *sigv4,
									 const char *const *headers, size_t nheaders,
									 const char *body)
{
	CURL	   *curl;
	struct curl_slist *hl = NULL;
	struct curl_slist *ct = NULL;
	CURLcode	rc;

	pthread_once(&curl_once, curl_init_once);
	if ((curl = curl_easy_init()) == NULL)
		return -1;
	for (size_t i = 0; i < nheaders; i++)
		hl = curl_slist_append(hl, headers[i]);
	ct = curl_slist_append(ct, connect_to);
	setup_signing(curl, userpwd, sigv4);
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_CONNECT_TO, ct);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
	if (body)
	{
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
	}
	rc = curl_easy_perform(curl);
	curl_slist_free_all(hl);
	curl_slist_free_all(ct);
	curl_easy_cleanup(curl);
	return rc == CURLE_OK ? 0 : -1;
}

const storage_backend_ops storage_dynamodb_backend = {
	.name = "dynamodb",
	.clock_is_server = false,
	.open = ddb_open,
	.close = ddb_close,
	.fetch = ddb_fetch,
	.save = ddb_save,
	.delete = ddb_delete,
	.purge_expired = ddb_purge,
	.list = ddb_list,
	.fetch_many = ddb_fetch_many,
	.save_many = ddb_save_many,
	.delete_many = ddb_delete_many,
	.lock_acquire = ddb_lock_acquire,
	.lock_release = ddb_lock_release,
	.lock_extend = ddb_lock_extend,
};
