/*-------------------------------------------------------------------------
 *
 * lock_api.c
 *	  TTL locks with fencing tokens: storage_acquire_lock(),
 *	  storage_release_lock() and storage_extend_lock().  A lock on token t
 *	  is the record ".locks/t", live until its TTL runs out, so an abandoned
 *	  lock frees itself and is purged like any record.
 *
 * Fencing: a lease can run out while its holder still works, and then
 * another session takes the lock.  So every take draws a fencing token
 * from the sequence storage_lock_fences and stores it as the lock record's
 * version; the fenced release and extend act only on the live record with
 * that version, and a resource that remembers the highest token it has
 * seen can refuse the stale holder.  The token is drawn after the take,
 * while this transaction holds the lock record's row: every earlier holder
 * drew its token before its own take committed, which was before ours
 * could happen, so tokens strictly increase across successive holders of
 * a lock whatever happened in between (expiry, purge, a deleted record).
 * Drawing before the take would not do: an acquirer that drew, stalled
 * and then took an expired lock would hold a smaller token than the
 * holder it followed.  A sequence, unlike the record, survives the purge,
 * and pg_dump saves its position (pg_extension_config_dump).
 *
 * Waiting: an acquirer that finds the lock held sleeps until it is
 * released or the holder's TTL runs out, whichever comes first.  With the
 * library preloaded it sleeps on a condition variable in shared memory
 * that release broadcasts when its transaction commits, so the waiter
 * wakes at once; without shared memory it sleeps on its latch with an
 * exponential backoff (1 ms doubling to 50 ms).  Either way it never
 * sleeps past the holder's expiry, and query cancel and statement_timeout
 * interrupt it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/dependency.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/sequence.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "storage.h"

PG_FUNCTION_INFO_V1(storage_acquire_lock);
PG_FUNCTION_INFO_V1(storage_release_lock);
PG_FUNCTION_INFO_V1(storage_release_lock_fenced);
PG_FUNCTION_INFO_V1(storage_extend_lock);

#define LOCKS_PREFIX ".locks/"
#define FENCES_SEQUENCE "storage_lock_fences"
#define MAX_SLEEP_MS 1000
#define BACKOFF_MAX_MS 50

/* $1 id: when the current holder's lock runs out */
static const char *const holder_sql =
"SELECT r.expires_at FROM %1$s AS r WHERE r.id OPERATOR(pg_catalog.=) $1";
static StgPlan holder_plan;

/* broadcasts owed at commit, one bit per condition variable slot */
StaticAssertDecl(STG_LOCK_CV_SLOTS <= 64, "one bit per slot");
static uint64 pending_broadcasts = 0;
static bool callback_registered = false;

/* the token sequence, once found and verified, until it is invalidated */
static Oid	fences_cached = InvalidOid;
static bool fences_callback_registered = false;

static text *
lock_record_id(FunctionCallInfo fcinfo)
{
	char	   *token;

	stg_require_arg(fcinfo, 0, "token");
	token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (stg_name_problem(token) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid lock token \"%s\"", token),
				 errdetail("Tokens are non-empty, contain no \"/\" and do not start with \".\".")));
	return stg_joined_id(LOCKS_PREFIX, token);
}

static uint32
token_hash(text *id)
{
	return hash_bytes((const unsigned char *) VARDATA_ANY(id), VARSIZE_ANY_EXHDR(id));
}

/*
 * The sequence fencing tokens are drawn from, or InvalidOid while the
 * extension's SQL is still at 1.0 (library installed, ALTER EXTENSION
 * UPDATE not yet run): a take then leaves version 1 as 1.0 did, and the
 * update starts the sequence above every lock record's version.  Found by
 * name, so it must be the extension's own: a sequence of that name that
 * someone else created in the schema (whose owner could setval it back)
 * is refused.
 */
static void
fences_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == fences_cached)
		fences_cached = InvalidOid;
}

static Oid
fences_seqid(void)
{
	Oid			seqid;

	if (OidIsValid(fences_cached))
		return fences_cached;
	seqid = get_relname_relid(FENCES_SEQUENCE,
							  get_rel_namespace(stg_records_relid(false)));
	if (!OidIsValid(seqid))
		return InvalidOid;
	if (getExtensionOfObject(RelationRelationId, seqid) != get_extension_oid("storage", false))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("sequence \"%s\" is not a member of extension \"storage\"",
						FENCES_SEQUENCE),
				 errhint("Drop it, then run ALTER EXTENSION storage UPDATE.")));
	if (!fences_callback_registered)
	{
		CacheRegisterRelcacheCallback(fences_relcache_callback, (Datum) 0);
		fences_callback_registered = true;
	}
	fences_cached = seqid;
	return seqid;
}

/*
 * Draws the fencing token for a lock just taken (its row is ours until
 * commit) and stores it as the record's version.
 */
static int64
set_fence(text *id)
{
	Oid			seqid = fences_seqid();
	int64		fence;

	if (!OidIsValid(seqid))
		return 1;

	/*
	 * No privilege check on the sequence: EXECUTE on the lock functions is
	 * what grants the use of locks, as for the records table's rows.
	 */
	fence = nextval_internal(seqid, false);
	stg_write_set_version(id, fence);
	return fence;
}

/*
 * Tries to take the lock, a create of its record (free or expired); on
 * success sets *fence.
 *
 * The attempt runs in a subtransaction that is rolled back when it fails:
 * INSERT ... ON CONFLICT DO UPDATE locks the conflicting row even when its
 * WHERE clause rejects the update, and a waiter holding that row lock
 * while it sleeps would block the very release it waits for.
 */
static bool
try_take(text *id, TimestampTz expires, TimestampTz now, int64 *fence)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	StgSaveArgs a = {0};
	bool		taken;

	a.id = id;
	a.expect = 0;
	a.data = PointerGetDatum(cstring_to_text(""));	/* an empty bytea */
	a.expires = TimestampTzGetDatum(expires);
	a.format_null = true;

	BeginInternalSubTransaction(NULL);
	taken = stg_write_save(&a, now).status == STG_WRITE_OK;
	if (taken)
		*fence = set_fence(id);
	if (taken)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return taken;
}

/* When the current holder's lock runs out (now if there is none). */
static TimestampTz
holder_expiry(text *id, TimestampTz now)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	TimestampTz until = now;
	bool		isnull;

	values[0] = PointerGetDatum(id);
	SPI_connect();
	/* not read-only: a fresh snapshot, to see a release that just committed */
	if (SPI_execute_plan(stg_plan(&holder_plan, holder_sql, 1, argtypes),
						 values, NULL, false, 1) == SPI_OK_SELECT &&
		SPI_processed > 0)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		until = isnull ? DT_NOEND : DatumGetTimestampTz(d);
	}
	SPI_finish();
	return until;
}

/*
 * Sleeps until woken, the holder's expiry or a timeout; interruptible.
 * holder_until and now are both on the stg_now() clock (which tests
 * may pin), so the sleep is bounded by what liveness will decide.
 */
static void
wait_for_release(ConditionVariable *cv, TimestampTz now, TimestampTz holder_until,
				 long *backoff_ms)
{
	long		sleep_ms = TimestampDifferenceMilliseconds(now, holder_until) + 1;

	if (cv)
	{
		sleep_ms = Min(sleep_ms, MAX_SLEEP_MS);
		(void) ConditionVariableTimedSleep(cv, sleep_ms, PG_WAIT_EXTENSION);
	}
	else
	{
		sleep_ms = Min(sleep_ms, *backoff_ms);
		*backoff_ms = Min(*backoff_ms * 2, BACKOFF_MAX_MS);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
}

/*
 * storage_acquire_lock(token, ttl): waits until the lock is free, then
 * takes it for ttl and returns its fencing token.  Not reentrant: a token
 * already held, even by the caller, is waited for.
 *
 * The first round just tries.  Later rounds first read the holder with a
 * fresh snapshot and try again only when it looks free, so a long wait
 * costs no subtransactions (nor transaction ids) per round.
 */
Datum
storage_acquire_lock(PG_FUNCTION_ARGS)
{
	text	   *id = lock_record_id(fcinfo);
	Interval   *ttl;
	ConditionVariable *cv = stg_lock_cv(token_hash(id));
	long		backoff_ms = 1;
	bool		look = false;
	int64		fence = 0;
	TimestampTz expires;

	stg_require_arg(fcinfo, 1, "ttl");
	ttl = PG_GETARG_INTERVAL_P(1);
	/* refuse a ttl that would not reach past now before waiting for anyone */
	(void) stg_ttl_expiry(ttl, stg_now(), false, &expires);

	for (;;)
	{
		TimestampTz now;
		TimestampTz holder_until;

		CHECK_FOR_INTERRUPTS();

		/*
		 * Prepare to sleep before looking at the holder, so that a release
		 * that commits after the look wakes us.  (A rolled-back attempt
		 * cancels the preparation, hence every round.)
		 */
		if (cv)
			ConditionVariablePrepareToSleep(cv);
		now = stg_now();
		if (look && (holder_until = holder_expiry(id, now)) > now)
		{
			if (IsolationUsesXactSnapshot())
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot wait for lock \"%s\" in a %s transaction",
								text_to_cstring(id) + strlen(LOCKS_PREFIX),
								IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
						 errdetail("The transaction's snapshot would never show the release."),
						 errhint("Acquire locks in READ COMMITTED transactions.")));
			wait_for_release(cv, now, holder_until, &backoff_ms);
			continue;
		}
		(void) stg_ttl_expiry(ttl, now, false, &expires);
		if (try_take(id, expires, now, &fence))
			break;
		look = true;			/* held, or someone else was quicker */
	}
	if (cv)
		ConditionVariableCancelSleep();
	Assert(fence > 0);
	PG_RETURN_INT64(fence);
}

static void
broadcast_at_commit(XactEvent event, void *arg)
{
	int			i;

	if (event == XACT_EVENT_COMMIT && pending_broadcasts != 0)
	{
		for (i = 0; i < STG_LOCK_CV_SLOTS; i++)
		{
			if (pending_broadcasts & (UINT64CONST(1) << i))
				ConditionVariableBroadcast(stg_lock_cv(i));
		}
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PREPARE)
		pending_broadcasts = 0;	/* a prepared release wakes no one; waiters time out */
}

/* Waiters on the lock id are woken when this transaction commits. */
static void
wake_waiters_at_commit(text *id)
{
	if (stg_lock_cv(0) == NULL)
		return;
	if (!callback_registered)
	{
		RegisterXactCallback(broadcast_at_commit, NULL);
		callback_registered = true;
	}
	pending_broadcasts |= UINT64CONST(1) << (token_hash(id) % STG_LOCK_CV_SLOTS);
}

/*
 * storage_release_lock(token): SV002 if the lock is not held.  Whoever
 * holds it: unsafe once the caller's lease may have run out (see the
 * fenced form).
 */
Datum
storage_release_lock(PG_FUNCTION_ARGS)
{
	text	   *id = lock_record_id(fcinfo);

	if (stg_write_delete(id, -1, stg_now()) != STG_WRITE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_NOT_FOUND),
				 errmsg("lock \"%s\" is not held", text_to_cstring(id) + strlen(LOCKS_PREFIX))));

	wake_waiters_at_commit(id);
	PG_RETURN_VOID();
}

/* The fence argument: a token storage_acquire_lock() can have returned. */
static int64
fence_arg(FunctionCallInfo fcinfo, int argno)
{
	int64		fence;

	stg_require_arg(fcinfo, argno, "fence");
	fence = PG_GETARG_INT64(argno);
	if (fence < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("fence must be positive")));
	return fence;
}

/*
 * storage_release_lock(token, fence): releases the lock only if it is
 * held, live, with this fencing token; SV002 and no change otherwise (the
 * lease ran out, and maybe someone else holds the lock now).
 */
Datum
storage_release_lock_fenced(PG_FUNCTION_ARGS)
{
	text	   *id = lock_record_id(fcinfo);
	int64		fence = fence_arg(fcinfo, 1);

	if (stg_write_delete(id, fence, stg_now()) != STG_WRITE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_STORAGE_NOT_FOUND),
				 errmsg("lock \"%s\" is not held with fence " INT64_FORMAT,
						text_to_cstring(id) + strlen(LOCKS_PREFIX), fence),
				 errdetail("It was released, or its lease ran out and it may have been taken by someone else.")));

	wake_waiters_at_commit(id);
	PG_RETURN_VOID();
}

/*
 * storage_extend_lock(token, fence, ttl): renews the lease of the lock
 * held with fence to end ttl from now (a keepalive; it may also shorten
 * it).  False, changing nothing, if the lock is not held with that fence:
 * a keepalive loop learns that it lost the lock without catching an
 * error.  A lease that already ran out is not revived, even if no one
 * took the lock since: the holder must acquire it again and use the new
 * fence.
 */
Datum
storage_extend_lock(PG_FUNCTION_ARGS)
{
	text	   *id = lock_record_id(fcinfo);
	int64		fence = fence_arg(fcinfo, 1);
	Interval   *ttl;
	TimestampTz now;
	TimestampTz expires;

	stg_require_arg(fcinfo, 2, "ttl");
	ttl = PG_GETARG_INTERVAL_P(2);
	now = stg_now();
	(void) stg_ttl_expiry(ttl, now, false, &expires);
	PG_RETURN_BOOL(stg_write_touch(id, false, TimestampTzGetDatum(expires),
								   fence, now) == STG_WRITE_OK);
}
