/*-------------------------------------------------------------------------
 *
 * ids.c
 *	  Validation of record ids, required arguments and array arguments,
 *	  shared by every function that takes them so that the rules and
 *	  messages are the same everywhere.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_check_id_sql);

void
stg_require_arg(FunctionCallInfo fcinfo, int argno, const char *argname)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname)));
}

/*
 * Every array argument of the extension is a list: one dimension (an empty
 * array has none), 22023 otherwise, rather than silently flattening a
 * matrix.  The lower bound is kept so that results and messages can use
 * the caller's subscripts.  A NULL array is 22004 when required, else n
 * is -1.
 */
StgArrayArg
stg_array_arg(FunctionCallInfo fcinfo, int argno, const char *name,
			  bool required)
{
	StgArrayArg a = {NULL, NULL, -1, 1};
	ArrayType  *arr;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (PG_ARGISNULL(argno))
	{
		if (required)
			stg_require_arg(fcinfo, argno, name);
		return a;
	}
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a one-dimensional array", name)));
	if (ARR_NDIM(arr) == 1)
		a.lbound = ARR_LBOUND(arr)[0];
	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign,
					  &a.values, &a.nulls, &a.n);
	return a;
}

/*
 * "what" names the thing in messages ("id", "joined id").  The limit is in
 * bytes because that is what the Go provider and the client library count.
 */
void
stg_check_id(const char *what, const char *id, int len)
{
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > STG_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", what),
				 errdetail("The %s is %d bytes long; the limit is %d bytes.",
						   what, len, STG_MAX_ID_BYTES)));
}

text *
stg_id_arg(FunctionCallInfo fcinfo, int argno)
{
	text	   *id;

	stg_require_arg(fcinfo, argno, "id");
	id = PG_GETARG_TEXT_PP(argno);
	stg_check_id("id", VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
	return id;
}

/*
 * storage_check_id(id) returns id or raises the id errors.  The SQL-language
 * functions (storage_fetch) call it so that they can stay inlinable while
 * applying the same rules as the C ones.
 */
Datum
storage_check_id_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(stg_id_arg(fcinfo, 0));
}

/*
 * The name rule of the bucket API and the locks: why name is not a valid
 * bucket element, key or lock token, or NULL if it is.  Names starting
 * with "." are reserved for the extension (the locks live in ".locks").
 * The bucket listings skip the ids whose names fail it, so what they show
 * is exactly what the functions accept.
 */
const char *
stg_name_problem(const char *name)
{
	if (name[0] == '\0')
		return "It is empty.";
	if (strchr(name, '/') != NULL)
		return "It contains \"/\".";
	if (name[0] == '.')
		return "Names starting with \".\" are reserved.";
	return NULL;
}

/* The id prefix || name (a bucket value, a lock), checked as an id. */
text *
stg_joined_id(const char *prefix, const char *name)
{
	char	   *id = psprintf("%s%s", prefix, name);

	stg_check_id("joined id", id, strlen(id));
	return cstring_to_text(id);
}

PG_FUNCTION_INFO_V1(storage_prefix_end);

/*
 * storage_prefix_end(prefix) returns a string that sorts (bytewise, as the
 * id column's "C" collation does) after every id of at most 255 bytes that
 * starts with prefix, and before every larger id that does not: the prefix
 * padded with 0xFF bytes to 256 bytes.  "id >= prefix AND id <
 * storage_prefix_end(prefix)" is thus an index range scan over exactly the
 * ids with that prefix.  The result is only ever compared, never stored or
 * shown, so it does not matter that 0xFF is not valid in any encoding.
 */
Datum
storage_prefix_end(PG_FUNCTION_ARGS)
{
	text	   *prefix;
	int			len;
	int			outlen;
	text	   *result;

	stg_require_arg(fcinfo, 0, "prefix");
	prefix = PG_GETARG_TEXT_PP(0);
	len = VARSIZE_ANY_EXHDR(prefix);
	outlen = Max(len + 1, STG_MAX_ID_BYTES + 1);
	result = (text *) palloc(VARHDRSZ + outlen);
	SET_VARSIZE(result, VARHDRSZ + outlen);
	memcpy(VARDATA(result), VARDATA_ANY(prefix), len);
	memset(VARDATA(result) + len, 0xFF, outlen - len);
	PG_RETURN_TEXT_P(result);
}
