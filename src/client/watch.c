/*-------------------------------------------------------------------------
 *
 * watch.c
 *	  Front end of the change feed: storage_watch(), storage_set_watch_slot()
 *	  and storage_watch_cancel().  It validates the call, makes sure only
 *	  one watch runs per handle, and hands the call to the backend's watch
 *	  operation (backend_memory_watch.c, backend_pg_watch.c) without the
 *	  handle's mutex: a watch blocks for as long as the application wants,
 *	  while other threads keep using the handle and the callback may too.
 *
 *	  Cancellation is a flag, not a wake-up: storage_watch_cancel() may run
 *	  in a signal handler, where only an atomic store is safe, so backends
 *	  poll the flag at least every 100 ms while they wait.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "storage_backend.h"

/* PostgreSQL's rule for replication slot names (ReplicationSlotValidateName) */
static bool
valid_slot_name(const char *slot)
{
	size_t		len = strlen(slot);

	if (len == 0 || len > 63)
		return false;
	for (const char *p = slot; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
			return false;
	return true;
}

storage_status
storage_set_watch_slot(storage_client *h, const char *slot)
{
	storage_watch_ctl *ctl;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (slot != NULL && !valid_slot_name(slot))
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "invalid replication slot name \"%.100s\": use 1 to 63 characters of a-z, 0-9 and _",
							 slot);
	ctl = storage_handle_watch(h);
	pthread_mutex_lock(storage_handle_mutex(h));
	snprintf(ctl->slot, sizeof(ctl->slot), "%s", slot ? slot : "");
	pthread_mutex_unlock(storage_handle_mutex(h));
	return STORAGE_OK;
}

void
storage_watch_cancel(storage_client *h)
{
	if (h != NULL)
		atomic_store(&storage_handle_watch(h)->cancel, true);
}

bool
storage_watch_cancelled(storage_client *h)
{
	return atomic_load(&storage_handle_watch(h)->cancel);
}

bool
storage_watch_deliver(const storage_watch_req *req, const storage_watch_event *ev)
{
	return req->fn(req->arg, ev) != 0;
}

storage_status
storage_watch(storage_client *h, const char *prefix, uint64_t from_position,
			  storage_watch_fn fn, void *arg)
{
	storage_watch_ctl *ctl;
	storage_watch_req req;
	char		slot[sizeof(ctl->slot)];
	storage_status st;

	if (h == NULL)
		return storage_error(NULL, STORAGE_INVALID_ARGUMENT, "handle is NULL");
	if (prefix == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "prefix is NULL (use \"\" for all records)");
	if (strlen(prefix) > STORAGE_MAX_ID_LEN)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "prefix is longer than %d bytes", STORAGE_MAX_ID_LEN);
	if (fn == NULL)
		return storage_error(h, STORAGE_INVALID_ARGUMENT, "callback is NULL");
	ctl = storage_handle_watch(h);
	if (atomic_exchange(&ctl->active, true))
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "a watch is already running on this handle (one at a time: open another handle)");
	pthread_mutex_lock(storage_handle_mutex(h));
	memcpy(slot, ctl->slot, sizeof(slot));
	pthread_mutex_unlock(storage_handle_mutex(h));

	req.prefix = prefix;
	req.from_position = from_position;
	req.fn = fn;
	req.arg = arg;
	req.slot = slot;
	st = storage_backend_watch(h, &req);

	/* a cancel is consumed by the watch it ended (or found pending) */
	if (st == STORAGE_OK)
		atomic_store(&ctl->cancel, false);
	atomic_store(&ctl->active, false);
	return st;
}
