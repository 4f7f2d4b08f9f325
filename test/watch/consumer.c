/*-------------------------------------------------------------------------
 *
 * consumer.c
 *	  The consumer of the change-feed TAP test (test/t/071_watch_crash.pl):
 *	  storage_watch on a slot, one line per event appended to a log with
 *	  write(2) (so a SIGKILL loses no line the callback finished), until
 *	  SIGTERM (storage_watch_cancel from the handler) or max events.
 *
 *	  usage: consumer URI SLOT PREFIX FROM_POSITION LOG [MAX_EVENTS [SLEEP_US]]
 *
 *	  A line: "E <position> <op> <id> <version> <last> <expires_at>
 *	  <format|-> <data length|-> <data md5|-> <value_omitted>"; the run
 *	  begins with "START" and ends with "END <status>" if it ends itself.
 *	  SLEEP_US: a pause in each callback before its line (its "work"): a
 *	  consumer slower than the writer is always inside a callback, so every
 *	  kill lands in one, and an event confirmed before its callback
 *	  returned is an event missing from the log.
 *
 *-------------------------------------------------------------------------
 */
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "storage_client.h"

static storage_client *handle;
static int	log_fd;
static long max_events;
static long nevents;
static long sleep_us;

static void
on_term(int sig)
{
	(void) sig;
	storage_watch_cancel(handle);
}

static void
log_line(const char *line)
{
	size_t		len = strlen(line);

	if (write(log_fd, line, len) != (ssize_t) len)
		_exit(3);
}

/* the value's MD5 in hex, to compare with the writer's */
static void
md5_hex(const unsigned char *p, size_t n, char *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (!EVP_Digest(p, n, md, &len, EVP_md5(), NULL))
		len = 0;
	for (unsigned int i = 0; i < len; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
	out[2 * len] = '\0';
}

static int
on_event(void *arg, const storage_watch_event *ev)
{
	static const char *const ops[] = {"?", "put", "touch", "delete", "expire"};
	char		line[1024];
	char		len[32] = "-";
	char		sum[2 * EVP_MAX_MD_SIZE + 1] = "-";

	(void) arg;
	/* the "work" comes first: a kill in it leaves the event unlogged */
	if (sleep_us > 0)
	{
		struct timespec ts = {0, sleep_us * 1000};

		nanosleep(&ts, NULL);
	}
	if (ev->data)
	{
		snprintf(len, sizeof(len), "%zu", ev->data_len);
		md5_hex(ev->data, ev->data_len, sum);
	}
	snprintf(line, sizeof(line), "E %" PRIu64 " %s %s %" PRId64 " %d %" PRId64 " %s %s %s %d\n",
			 ev->position, ops[ev->op <= 4 ? ev->op : 0], ev->id, ev->version,
			 ev->last, ev->expires_at, ev->format ? ev->format : "-", len, sum,
			 ev->value_omitted);
	log_line(line);
	return max_events > 0 && ++nevents >= max_events;
}

int
main(int argc, char **argv)
{
	storage_status st;
	char		line[1200];

	if (argc < 6)
	{
		fprintf(stderr, "usage: %s URI SLOT PREFIX FROM_POSITION LOG [MAX_EVENTS [SLEEP_US]]\n", argv[0]);
		return 2;
	}
	max_events = argc > 6 ? atol(argv[6]) : 0;
	sleep_us = argc > 7 ? atol(argv[7]) : 0;
	log_fd = open(argv[5], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (log_fd < 0)
	{
		perror(argv[5]);
		return 2;
	}
	if (storage_open(argv[1], &handle) != STORAGE_OK ||
		storage_set_watch_slot(handle, argv[2]) != STORAGE_OK)
	{
		fprintf(stderr, "consumer: %s\n", storage_errmsg(NULL));
		return 1;
	}
	signal(SIGTERM, on_term);
	log_line("START\n");
	st = storage_watch(handle, argv[3], strtoull(argv[4], NULL, 10), on_event, NULL);
	snprintf(line, sizeof(line), "END %s %s\n", storage_status_name(st),
			 st == STORAGE_OK ? "" : storage_errmsg(handle));
	log_line(line);
	storage_close(handle);
	return st == STORAGE_OK ? 0 : 1;
}
