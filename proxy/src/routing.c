/*-------------------------------------------------------------------------
 *
 * routing.c
 *	  The partition hash of storage_proxy: which partition a record id
 *	  belongs to.  PL/Proxy sends a call to partition (hash & (N - 1)) of
 *	  a cluster of N partitions, N a power of two.
 *
 * The hash is defined here, not borrowed from hashtext(), because every
 * proxy and every tool that routes ids must compute the same value for
 * ever, and PostgreSQL does not promise that hashtext() stays the same
 * across major versions.  It is CRC-32C (Castagnoli, the checksum of
 * iSCSI, ext4 and PostgreSQL's WAL) of the routing key's bytes, read as a
 * signed 32-bit integer; libraries for it exist in every language.
 *
 * The routing key is the id itself, or, when the id contains a hash tag,
 * only the tag: the bytes between the first "{" and the first "}" after
 * it, if there is at least one byte between them (Redis Cluster's rule).
 * Ids with the same tag live on the same partition, so that a bucket
 * named "{tenant42}" keeps all its keys, and their batches, on one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "port/pg_crc32c.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(storage_proxy_hash);
PG_FUNCTION_INFO_V1(storage_proxy_bucket_hash);
PG_FUNCTION_INFO_V1(storage_proxy_bucket_tag_hash);

/*
 * The tag of key[0..len), or NULL if it has none; *taglen receives its
 * length.  "{}" is no tag: the search goes on neither way, as in Redis.
 */
static const char *
hash_tag(const char *key, int len, int *taglen)
{
	const char *open = memchr(key, '{', len);
	const char *close;

	if (open == NULL)
		return NULL;
	close = memchr(open + 1, '}', len - (open + 1 - key));
	if (close == NULL || close == open + 1)
		return NULL;
	*taglen = close - (open + 1);
	return open + 1;
}

static int32
route(const char *key, int len)
{
	const char *tag;
	int			taglen;
	pg_crc32c	crc;

	tag = hash_tag(key, len, &taglen);
	if (tag != NULL)
	{
		key = tag;
		len = taglen;
	}
	INIT_CRC32C(crc);
	COMP_CRC32C(crc, key, len);
	FIN_CRC32C(crc);
	return (int32) crc;
}

/*
 * The id a bucket function addresses: "b1/b2/" for {b1,b2}, then key
 * (NULL: the prefix alone).  The partitions validate names; routing only
 * has to be the same for the same input, so invalid names are joined as
 * they are and NULL elements as empty ones.
 */
static StringInfo
bucket_id(ArrayType *bucket, text *key)
{
	StringInfo	buf = makeStringInfo();
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int			i;

	deconstruct_array(bucket, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	for (i = 0; i < n; i++)
	{
		if (!nulls[i])
			appendBinaryStringInfo(buf, VARDATA_ANY(elems[i]),
								   VARSIZE_ANY_EXHDR(elems[i]));
		appendStringInfoChar(buf, '/');
	}
	if (key != NULL)
		appendBinaryStringInfo(buf, VARDATA_ANY(key), VARSIZE_ANY_EXHDR(key));
	return buf;
}

/*
 * storage_proxy_hash(id text) -> int4
 *
 * NULL routes to 0: that partition then raises the error the call
 * deserves, as one server would.
 */
Datum
storage_proxy_hash(PG_FUNCTION_ARGS)
{
	text	   *id;

	if (PG_ARGISNULL(0))
		PG_RETURN_INT32(0);
	id = PG_GETARG_TEXT_PP(0);
	PG_RETURN_INT32(route(VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id)));
}

/* storage_proxy_bucket_hash(bucket text[], key text) -> int4 */
Datum
storage_proxy_bucket_hash(PG_FUNCTION_ARGS)
{
	StringInfo	id;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_INT32(0);
	id = bucket_id(PG_GETARG_ARRAYTYPE_P(0), PG_GETARG_TEXT_PP(1));
	PG_RETURN_INT32(route(id->data, id->len));
}

/*
 * storage_proxy_bucket_tag_hash(bucket text[]) -> int4
 *
 * The hash every id below the bucket has, or NULL when the bucket's path
 * has no complete tag of its own (its keys are then spread over all
 * partitions).
 */
Datum
storage_proxy_bucket_tag_hash(PG_FUNCTION_ARGS)
{
	StringInfo	prefix;
	int			taglen;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	prefix = bucket_id(PG_GETARG_ARRAYTYPE_P(0), NULL);
	if (hash_tag(prefix->data, prefix->len, &taglen) == NULL)
		PG_RETURN_NULL();
	PG_RETURN_INT32(route(prefix->data, prefix->len));
}
