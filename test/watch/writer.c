/*-------------------------------------------------------------------------
 *
 * writer.c
 *	  The writer of the change-feed TAP test: saves through the client
 *	  library until SIGTERM, alternating one record and a storage_save_many
 *	  of BATCH records, and appends "ACK <id> <version>" for every save the
 *	  server acknowledged (a failed call, e.g. while the server restarts,
 *	  is logged as "FAIL" and the next one tried after a pause: its outcome
 *	  is unknown, so it is not an acknowledged save).
 *
 *	  usage: writer URI PREFIX LOG [PAUSE_US [BATCH]]
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

#include "storage_client.h"

static volatile sig_atomic_t stop;

static void
on_term(int sig)
{
	(void) sig;
	stop = 1;
}

static void
pause_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};

	nanosleep(&ts, NULL);
}

int
main(int argc, char **argv)
{
	storage_client *h;
	long		pause = argc > 4 ? atol(argv[4]) : 2000;
	int			batch = argc > 5 ? atoi(argv[5]) : 4;
	FILE	   *log;
	char		ids[16][300];
	storage_record recs[16];

	if (argc < 4 || batch < 1 || batch > 16)
	{
		fprintf(stderr, "usage: %s URI PREFIX LOG [PAUSE_US [BATCH<=16]]\n", argv[0]);
		return 2;
	}
	if ((log = fopen(argv[3], "a")) == NULL || storage_open(argv[1], &h) != STORAGE_OK)
	{
		fprintf(stderr, "writer: %s\n", log ? storage_errmsg(NULL) : "cannot open the log");
		return 1;
	}
	signal(SIGTERM, on_term);
	for (long i = 0; !stop; i++)
	{
		int			n = i % 2 ? batch : 1;
		storage_status st;

		memset(recs, 0, sizeof(recs));
		for (int j = 0; j < n; j++)
		{
			snprintf(ids[j], sizeof(ids[j]), "%s%ld-%d", argv[2], i, j);
			recs[j].id = ids[j];
			recs[j].data = (const unsigned char *) ids[j];
			recs[j].data_len = strlen(ids[j]);
		}
		st = n == 1 ? storage_save(h, &recs[0], -1) : storage_save_many(h, recs, n, NULL);
		if (st == STORAGE_OK)
			for (int j = 0; j < n; j++)
				fprintf(log, "ACK %s %" PRId64 "\n", recs[j].id, recs[j].version);
		else
			fprintf(log, "FAIL %s\n", storage_errmsg(h));
		fflush(log);
		pause_us(st == STORAGE_OK ? pause : 50000);
	}
	fclose(log);
	storage_close(h);
	return 0;
}
