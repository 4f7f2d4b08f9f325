/* example.c: save, conflict, fetch with libstorage_client.  usage: example URI */
#include <stdio.h>
#include <storage_client.h>

int
main(int argc, char **argv)
{
	storage_client *h;
	storage_record rec = {.id = "greeting", .format = "text/plain",
	.data = (unsigned char *) "hello", .data_len = 5};
	storage_record got;

	if (argc != 2 || storage_open(argv[1], &h) != STORAGE_OK)
		return fprintf(stderr, "open: %s\n", storage_errmsg(NULL)), 1;
	storage_delete(h, rec.id, NULL);					/* start afresh */
	if (storage_save(h, &rec, 0) == STORAGE_OK)		/* create: version 1 */
		printf("saved version %lld\n", (long long) rec.version);
	if (storage_save(h, &rec, 0) == STORAGE_VERSION_CONFLICT)	/* exists */
		printf("conflict: %s\n", storage_errmsg(h));
	if (storage_fetch(h, "greeting", &got) == STORAGE_OK)
		printf("%s v%lld: %.*s\n", got.id, (long long) got.version,
			   (int) got.data_len, (char *) got.data);
	storage_record_clear(&got);
	storage_close(h);
	return 0;
}
