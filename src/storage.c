/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  Module entry point: the magic block, the extension's settings (GUCs)
 *	  and, when loaded through shared_preload_libraries, the registration of
 *	  the expiry launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "storage.h"

PG_MODULE_MAGIC;

int			storage_purge_batch_size = 10000;
char	   *storage_test_now = NULL;
int			storage_expiry_slot_width = 60;
bool		storage_direct_writes = true;

void		_PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("storage.purge_batch_size",
							"Expired records deleted per purge transaction.",
							"Each batch is one short transaction of the worker; "
							"storage_purge_expired() loops over batches of this size.",
							&storage_purge_batch_size,
							10000, 1, 1000000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	/*
	 * Wider slots make more saves with sliding expiry HOT updates; narrower
	 * ones make the purge look at fewer not-yet-expired rows (see clock.c).
	 */
	DefineCustomIntVariable("storage.expiry_slot",
							"Width of the expiry slots that the purge index groups records by.",
							"A save that moves expires_at within one slot can be a HOT update. "
							"0 indexes the exact expiry time.",
							&storage_expiry_slot_width,
							60, 0, 86400,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	/*
	 * An escape hatch and a yardstick: off runs every save through its SPI
	 * statement, as REPEATABLE READ always does (see direct.c).
	 */
	DefineCustomBoolVariable("storage.direct_writes",
							 "Saves records without planning an SQL statement where that behaves the same.",
							 "Off makes every save run its INSERT/UPDATE statement through SPI.",
							 &storage_direct_writes,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	/*
	 * Only tests may move the clock, hence PGC_SUSET; an empty value means
	 * the real clock.
	 */
	DefineCustomStringVariable("storage.test_now",
							   "Test only: a fixed timestamp used instead of the clock to decide expiry.",
							   "Empty means the real clock. Never set this in production.",
							   &storage_test_now,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	storage_worker_init();

	MarkGUCPrefixReserved("storage");
}
