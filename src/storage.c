/*-------------------------------------------------------------------------
 *
 * storage.c
 *	  Module entry point: the magic block, the extension's settings
 *	  (guc.c) and, when loaded through shared_preload_libraries, the
 *	  registration of the expiry launcher.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

#include "storage.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	stg_define_gucs();
	stg_worker_init();

	MarkGUCPrefixReserved("storage");
}
