/*-------------------------------------------------------------------------
 *
 * backend_dir.c
 *	  The "dir:/path" backend: one file per record in a POSIX directory
 *	  (created, with parents, mode 0700, if missing).
 *
 *	  Durability: a record is written to a temporary file in the same
 *	  directory, fsync'd, renamed over the record's file and the directory
 *	  is fsync'd, so a crash leaves either the old or the new record, never
 *	  a torn one.  A failure of that last directory fsync comes after the
 *	  new version became visible: it is reported as STORAGE_BACKEND_ERROR
 *	  with storage_outcome_of() == STORAGE_OUTCOME_APPLIED and the new
 *	  version written back, since the save did happen (only its
 *	  durability is in doubt).
 *
 *	  Temporary files are named ".tmp." + 16 random hex digits and created
 *	  with O_EXCL (mkstemp's method, relative to the directory), so a file
 *	  left by a killed writer never collides with a later one; writers
 *	  create them only under the exclusive lock, so any seen under that
 *	  lock are stale and removed by open and purge_expired.
 *
 *	  Atomicity across threads and processes: every operation holds a
 *	  flock() on the file ".lock" in the directory, shared for reads
 *	  (fetch, list), exclusive for writes (save, delete, purge).  The lock
 *	  file is opened afresh for every operation, so handles opened in
 *	  different processes (or in one process) exclude each other.
 *
 *	  File names: every id byte outside [A-Za-z0-9_-] is percent-encoded
 *	  (%XX), so names never contain '/', never start with '.', and cannot
 *	  escape the directory.  An encoding longer than PLAIN_NAME_MAX bytes
 *	  (a 255-byte id may need 765) is replaced by "~" + hex SHA-256 of the
 *	  id ('~' never appears in an encoding, the hash is libcrypto's); every
 *	  file stores the full id, which is checked on read.  Names starting
 *	  with '.' (the lock file, the last lock fencing token ".fences",
 *	  temporary files, the journal) are not records.
 *
 *	  Foreign entries: list, purge_expired (and so get_keys) ignore what is
 *	  not a record file: subdirectories, symlinks, other special files,
 *	  files without the record magic (a README, an editor's backup), names
 *	  that are no id's encoding.  A record file under a name that is not
 *	  its id's (copied or renamed by hand) is ignored by list and moved to
 *	  its id's name by the next purge_expired, which holds the exclusive
 *	  lock; if that name already holds the same id's record, the one with
 *	  the lower version is moved aside to ".conflict.<the id's name>" (kept
 *	  for inspection, never read again; a later conflict replaces it).
 *
 *	  File format (little-endian): "STOREC01", int64 version, int64
 *	  expires_at, uint32 id_len, int32 format_len (-1 = NULL), int64
 *	  data_len (-1 = NULL), then id, format and data bytes.
 *
 *	  list() and purge_expired() read the whole directory: O(records).
 *	  purge_expired() also removes temporary files left by crashed writers.
 *
 *	  Batch operations run under one flock (shared for fetch_many,
 *	  exclusive for save_many and delete_many), so other handles and
 *	  processes see all of a batch or none of it.  save_many checks every
 *	  record, then writes and fsyncs every temporary file, then an intent
 *	  journal ".journal" listing every (temporary file, record file) pair
 *	  (written, fsync'd, renamed into place, directory fsync'd), and only
 *	  then renames the records into place, fsyncs the directory and removes
 *	  the journal.  A check or write failure before the journal leaves
 *	  nothing changed; a crash after it leaves the journal, and whoever
 *	  next locks the directory (any operation, any process) replays it
 *	  first under the exclusive lock, completing the batch: crash-atomic.
 *	  A failed rename midway (which a crash-free POSIX file system gives
 *	  only for a vanished directory) keeps the journal too, so the next
 *	  operation completes the batch; it is reported as
 *	  STORAGE_OUTCOME_UNKNOWN.  delete_many is not journaled: a crash
 *	  midway leaves some of the records deleted.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "storage_backend.h"

#define PLAIN_NAME_MAX	240
#define NAME_BUF		(PLAIN_NAME_MAX + 1)
#define LOCK_NAME		".lock"
#define JOURNAL_NAME	".journal"
#define TMP_PREFIX		".tmp."
#define CONFLICT_PREFIX ".conflict."
#define JOURNAL_MAGIC	"STORJ001\n"
#define MAGIC			"STOREC01"
#define HEADER_LEN		40

typedef struct dir_state
{
	char	   *path;
	int			dirfd;
} dir_state;

/* Fault injection for the test suite (see storage_backend.h). */
static atomic_int test_crash_after_renames = -1;
static atomic_bool test_fail_dir_fsync;

void
storage_dir_test_crash_after_renames(int n)
{
	atomic_store(&test_crash_after_renames, n);
}

void
storage_dir_test_fail_dir_fsync(bool on)
{
	atomic_store(&test_fail_dir_fsync, on);
}

static storage_status replay_journal(storage_client *h, struct dir_state *ds);

/* ---- names ------------------------------------------------------------- */

static bool
plain_byte(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		(c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* File name of id into buf (NAME_BUF bytes). */
static void
id_to_name(const char *id, char *buf)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t		n = 0;

	for (const unsigned char *p = (const unsigned char *) id; *p; p++)
	{
		if (plain_byte(*p))
		{
			if (n + 1 > PLAIN_NAME_MAX)
				goto hashed;
			buf[n++] = (char) *p;
		}
		else
		{
			if (n + 3 > PLAIN_NAME_MAX)
				goto hashed;
			buf[n++] = '%';
			buf[n++] = hex[*p >> 4];
			buf[n++] = hex[*p & 15];
		}
	}
	buf[n] = '\0';
	return;

hashed:
	{
		unsigned char digest[EVP_MAX_MD_SIZE];
		unsigned int dlen = 0;

		/* cannot fail for SHA-256 short of memory; zeros then still name it */
		memset(digest, 0, sizeof(digest));
		(void) EVP_Digest(id, strlen(id), digest, &dlen, EVP_sha256(), NULL);
		buf[0] = '~';
		for (int i = 0; i < 32; i++)
		{
			buf[1 + 2 * i] = hex[digest[i] >> 4];
			buf[2 + 2 * i] = hex[digest[i] & 15];
		}
		buf[65] = '\0';
	}
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode a plain file name into buf (STORAGE_MAX_ID_LEN + 1 bytes).
 * False for names that are not plain record names.
 */
static bool
name_to_id(const char *name, char *buf)
{
	size_t		n = 0;

	for (const char *p = name; *p; p++)
	{
		if (n >= STORAGE_MAX_ID_LEN)
			return false;
		if (*p == '%')
		{
			int			hi,
						lo;

			if ((hi = hexval(p[1])) < 0 || (lo = hexval(p[2])) < 0 ||
				(hi == 0 && lo == 0))
				return false;
			buf[n++] = (char) (hi << 4 | lo);
			p += 2;
		}
		else if (plain_byte((unsigned char) *p))
			buf[n++] = *p;
		else
			return false;
	}
	buf[n] = '\0';
	return n > 0;
}

/* ---- locking ----------------------------------------------------------- */

static storage_status
dir_lock(storage_client *h, dir_state *ds, int how, int *lockfd)
{
	int			fd;

	fd = openat(ds->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not open lock file \"%s/%s\": %m",
							 ds->path, LOCK_NAME);
	while (flock(fd, how) != 0)
	{
		if (errno != EINTR)
		{
			int			save = errno;

			close(fd);
			errno = save;
			return storage_error(h, STORAGE_BACKEND_ERROR,
								 "could not lock \"%s/%s\": %m",
								 ds->path, LOCK_NAME);
		}
	}

	/*
	 * A journal left by a crashed save_many must be replayed before anyone
	 * reads or writes: with a shared lock, convert to exclusive for that.
	 * The check is one faccessat() per operation.
	 */
	while (faccessat(ds->dirfd, JOURNAL_NAME, F_OK, 0) == 0)
	{
		storage_status st;

		if (how == LOCK_SH && flock(fd, LOCK_EX) != 0)
		{
			int			save = errno;

			close(fd);
			errno = save;
			return storage_error(h, STORAGE_BACKEND_ERROR,
								 "could not lock \"%s/%s\": %m",
								 ds->path, LOCK_NAME);
		}
		st = replay_journal(h, ds);
		if (st == STORAGE_OK && how == LOCK_SH && flock(fd, LOCK_SH) != 0)
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "could not lock \"%s/%s\": %m",
							   ds->path, LOCK_NAME);
		if (st != STORAGE_OK)
		{
			close(fd);
			return st;
		}
	}
	*lockfd = fd;
	return STORAGE_OK;
}

static void
dir_unlock(int lockfd)
{
	/* closing the only descriptor of the open file releases the flock */
	close(lockfd);
}

/* ---- record files ------------------------------------------------------ */

/* Little-endian integers of n bytes in the record files. */
static void
put_le(unsigned char *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (unsigned char) (v >> (8 * i));
}

static uint64_t
get_le(const unsigned char *p, int n)
{
	uint64_t	v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t) p[i] << (8 * i);
	return v;
}

/*
 * Read the record file "name".  *exists = false (and STORAGE_OK) if there
 * is no such file, and with foreign_ok also if it is not a record file
 * (not a regular file, or no record magic: see "Foreign entries").  On
 * success out holds malloc'd fields.
 */
static storage_status
read_record(storage_client *h, dir_state *ds, const char *name,
			storage_record *out, bool *exists, bool foreign_ok)
{
	int			fd;
	struct stat sb;
	unsigned char *buf = NULL;
	size_t		size,
				off = 0;
	uint32_t	id_len;
	int32_t		format_len;
	int64_t		data_len;
	char	   *id = NULL;
	char	   *format = NULL;
	unsigned char *data = NULL;

	memset(out, 0, sizeof(*out));
	*exists = false;
	/* O_NONBLOCK: a FIFO someone left here must not hang us */
	fd = openat(ds->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
	{
		if (errno == ENOENT || (foreign_ok && errno == ELOOP))
			return STORAGE_OK;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not open \"%s/%s\": %m", ds->path, name);
	}
	if (fstat(fd, &sb) != 0)
		goto io_error;
	if (!S_ISREG(sb.st_mode))
	{
		close(fd);
		if (foreign_ok)
			return STORAGE_OK;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "\"%s/%s\" is not a regular file", ds->path, name);
	}
	size = (size_t) sb.st_size;
	if (size < HEADER_LEN)
		goto corrupt;
	if ((buf = malloc(size)) == NULL)
	{
		close(fd);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	while (off < size)
	{
		ssize_t		r = read(fd, buf + off, size - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			goto io_error;
		if (r == 0)
			goto corrupt;
		off += (size_t) r;
	}
	close(fd);
	fd = -1;

	if (memcmp(buf, MAGIC, 8) != 0)
		goto corrupt;
	out->version = (int64_t) get_le(buf + 8, 8);
	out->expires_at = (int64_t) get_le(buf + 16, 8);
	id_len = (uint32_t) get_le(buf + 24, 4);
	format_len = (int32_t) (uint32_t) get_le(buf + 28, 4);
	data_len = (int64_t) get_le(buf + 32, 8);
	if (id_len < 1 || id_len > STORAGE_MAX_ID_LEN || format_len < -1 ||
		data_len < -1 ||
		(uint64_t) HEADER_LEN + id_len + (format_len > 0 ? (uint64_t) format_len : 0) +
		(data_len > 0 ? (uint64_t) data_len : 0) != size)
		goto corrupt;
	off = HEADER_LEN;
	if ((id = malloc(id_len + 1)) == NULL)
		goto oom;
	memcpy(id, buf + off, id_len);
	id[id_len] = '\0';
	off += id_len;
	if (strlen(id) != id_len)
		goto corrupt;
	if (format_len >= 0)
	{
		if ((format = malloc((size_t) format_len + 1)) == NULL)
			goto oom;
		memcpy(format, buf + off, (size_t) format_len);
		format[format_len] = '\0';
		off += (size_t) format_len;
	}
	if (data_len >= 0)
	{
		if ((data = malloc(data_len ? (size_t) data_len : 1)) == NULL)
			goto oom;
		memcpy(data, buf + off, (size_t) data_len);
		out->data_len = (size_t) data_len;
	}
	out->id = id;
	out->format = format;
	out->data = data;
	free(buf);
	*exists = true;
	return STORAGE_OK;

io_error:
	{
		int			save = errno;

		if (fd >= 0)
			close(fd);
		free(buf);
		errno = save;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not read \"%s/%s\": %m", ds->path, name);
	}
corrupt:
	if (fd >= 0)
		close(fd);
	/* a file that does not even start like a record is not ours */
	if (foreign_ok && (buf == NULL || size < 8 || memcmp(buf, MAGIC, 8) != 0))
	{
		free(buf);
		memset(out, 0, sizeof(*out));
		return STORAGE_OK;
	}
	free(buf);
	free(id);
	free(format);
	memset(out, 0, sizeof(*out));
	return storage_error(h, STORAGE_BACKEND_ERROR,
						 "corrupt record file \"%s/%s\"", ds->path, name);
oom:
	free(buf);
	free(id);
	free(format);
	memset(out, 0, sizeof(*out));
	return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
}

static bool
write_all(int fd, const void *p, size_t len)
{
	const unsigned char *c = p;

	while (len > 0)
	{
		ssize_t		w = write(fd, c, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		c += w;
		len -= (size_t) w;
	}
	return true;
}

#define TMP_BUF 64

/*
 * Create a new temporary file in the directory, mkstemp's way (random
 * name, O_EXCL, retry on collision) but relative to our directory fd.
 * Returns the fd, its name in tmp; -1 after recording the error.
 */
static int
create_temp(storage_client *h, dir_state *ds, char *tmp)
{
	static const char hex[] = "0123456789abcdef";

	for (int attempt = 0; attempt < 100; attempt++)
	{
		unsigned char rnd[8];
		char	   *p;
		int			fd;

		if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t) sizeof(rnd))
		{
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "could not get random bytes for a temporary file name: %m");
			return -1;
		}
		p = tmp + sprintf(tmp, "%s", TMP_PREFIX);
		for (size_t i = 0; i < sizeof(rnd); i++)
		{
			*p++ = hex[rnd[i] >> 4];
			*p++ = hex[rnd[i] & 15];
		}
		*p = '\0';
		fd = openat(ds->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0)
			return fd;
		if (errno != EEXIST)
			break;
	}
	storage_error(h, STORAGE_BACKEND_ERROR,
				  "could not create \"%s/%s\": %m", ds->path, tmp);
	return -1;
}

/* Write rec to a new temporary file and fsync it; its name into tmp. */
static storage_status
write_temp(storage_client *h, dir_state *ds, const storage_record *rec,
		   char *tmp)
{
	unsigned char hdr[HEADER_LEN];
	size_t		id_len = strlen(rec->id);
	size_t		format_len = rec->format ? strlen(rec->format) : 0;
	int			fd;
	int			save;
	bool		ok;

	if (format_len > INT32_MAX || rec->data_len > INT64_MAX)
		return storage_error(h, STORAGE_INVALID_ARGUMENT,
							 "format or data too large");
	memcpy(hdr, MAGIC, 8);
	put_le(hdr + 8, (uint64_t) rec->version, 8);
	put_le(hdr + 16, (uint64_t) rec->expires_at, 8);
	put_le(hdr + 24, (uint32_t) id_len, 4);
	put_le(hdr + 28, rec->format ? (uint32_t) format_len : (uint32_t) -1, 4);
	put_le(hdr + 32, rec->data ? (uint64_t) rec->data_len : (uint64_t) -1, 8);

	if ((fd = create_temp(h, ds, tmp)) < 0)
		return STORAGE_BACKEND_ERROR;
	ok = write_all(fd, hdr, sizeof(hdr)) &&
		write_all(fd, rec->id, id_len) &&
		(rec->format == NULL || write_all(fd, rec->format, format_len)) &&
		(rec->data == NULL || write_all(fd, rec->data, rec->data_len)) &&
		fsync(fd) == 0;
	save = errno;
	if (close(fd) != 0 && ok)
	{
		ok = false;
		save = errno;
	}
	if (!ok)
	{
		unlinkat(ds->dirfd, tmp, 0);
		errno = save;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not write \"%s/%s\": %m", ds->path, tmp);
	}
	return STORAGE_OK;
}

/* Rename temporary file tmp over the record file "name" (tmp is gone after). */
static storage_status
install_temp(storage_client *h, dir_state *ds, const char *tmp, const char *name)
{
	if (renameat(ds->dirfd, tmp, ds->dirfd, name) != 0)
	{
		int			save = errno;

		unlinkat(ds->dirfd, tmp, 0);
		errno = save;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not rename \"%s/%s\" into place: %m",
							 ds->path, tmp);
	}
	return STORAGE_OK;
}

/* fsync the directory; false with errno set on failure */
static bool
fsync_dir(dir_state *ds)
{
	if (atomic_load(&test_fail_dir_fsync))
	{
		errno = EIO;
		return false;
	}
	return fsync(ds->dirfd) == 0;
}

/*
 * The directory fsync after changes already visible to everyone: on
 * failure say so (STORAGE_OUTCOME_APPLIED), since the change did happen.
 */
static storage_status
sync_dir_applied(storage_client *h, dir_state *ds, const char *what)
{
	if (!fsync_dir(ds))
	{
		storage_error(h, STORAGE_BACKEND_ERROR,
					  "%s, but could not fsync directory \"%s\" afterwards, so it may not survive a crash: %m",
					  what, ds->path);
		storage_error_outcome(STORAGE_OUTCOME_APPLIED);
		return STORAGE_BACKEND_ERROR;
	}
	return STORAGE_OK;
}

/* Write rec durably as file "name" (temp file, fsync, rename, fsync dir). */
static storage_status
write_record(storage_client *h, dir_state *ds, const char *name,
			 const storage_record *rec)
{
	char		tmp[TMP_BUF];
	char		what[STORAGE_MAX_ID_LEN + 64];
	storage_status st;

	if ((st = write_temp(h, ds, rec, tmp)) != STORAGE_OK ||
		(st = install_temp(h, ds, tmp, name)) != STORAGE_OK)
		return st;
	snprintf(what, sizeof(what), "record \"%s\" was saved as version %lld",
			 rec->id, (long long) rec->version);
	return sync_dir_applied(h, ds, what);
}

/*
 * Read the record of id (whatever its liveness).  A file whose stored id
 * differs (a SHA-256 collision of hashed names) is an error.
 */
static storage_status
read_id(storage_client *h, dir_state *ds, const char *id, const char *name,
		storage_record *out, bool *exists)
{
	storage_status st = read_record(h, ds, name, out, exists, false);

	if (st == STORAGE_OK && *exists && strcmp(out->id, id) != 0)
	{
		storage_record_clear(out);
		*exists = false;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "record file \"%s/%s\" holds another id", ds->path, name);
	}
	return st;
}

/* Open a fresh DIR stream on the directory (our dirfd stays ours). */
static DIR *
open_dir_stream(storage_client *h, dir_state *ds)
{
	int			fd = openat(ds->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	DIR		   *d;

	if (fd < 0 || (d = fdopendir(fd)) == NULL)
	{
		int			save = errno;

		if (fd >= 0)
			close(fd);
		errno = save;
		storage_error(h, STORAGE_BACKEND_ERROR,
					  "could not read directory \"%s\": %m", ds->path);
		return NULL;
	}
	return d;
}

static bool
is_temp_name(const char *name)
{
	return strncmp(name, TMP_PREFIX, strlen(TMP_PREFIX)) == 0;
}

/*
 * Exclusive lock held (so no writer is between creating and renaming a
 * temporary file): every temporary file is stale.
 */
static storage_status
remove_stale_temps(storage_client *h, dir_state *ds)
{
	struct dirent *de;
	DIR		   *d;

	if ((d = open_dir_stream(h, ds)) == NULL)
		return STORAGE_BACKEND_ERROR;
	while ((de = readdir(d)) != NULL)
		if (is_temp_name(de->d_name))
			unlinkat(ds->dirfd, de->d_name, 0);
	closedir(d);
	return STORAGE_OK;
}

/* ---- the intent journal of save_many ------------------------------------ */

/*
 * Write the journal of a batch: temporary file names and their record
 * file names, one pair a line, between a magic line and "END".  It is
 * written to a temporary file, fsync'd and renamed into place, and the
 * directory fsync'd: once that returns OK, the batch will be completed
 * even after a crash.
 */
static storage_status
write_journal(storage_client *h, dir_state *ds, char (*tmps)[TMP_BUF],
			  char (*names)[NAME_BUF], size_t n)
{
	char		jtmp[TMP_BUF];
	int			fd;
	bool		ok;
	int			save;

	if ((fd = create_temp(h, ds, jtmp)) < 0)
		return STORAGE_BACKEND_ERROR;
	ok = write_all(fd, JOURNAL_MAGIC, strlen(JOURNAL_MAGIC));
	for (size_t i = 0; ok && i < n; i++)
		ok = write_all(fd, tmps[i], strlen(tmps[i])) && write_all(fd, " ", 1) &&
			write_all(fd, names[i], strlen(names[i])) && write_all(fd, "\n", 1);
	ok = ok && write_all(fd, "END\n", 4) && fsync(fd) == 0;
	save = errno;
	if (close(fd) != 0 && ok)
	{
		ok = false;
		save = errno;
	}
	if (ok && renameat(ds->dirfd, jtmp, ds->dirfd, JOURNAL_NAME) != 0)
	{
		ok = false;
		save = errno;
	}
	if (!ok)
	{
		unlinkat(ds->dirfd, jtmp, 0);
		errno = save;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not write the journal \"%s/%s\": %m",
							 ds->path, JOURNAL_NAME);
	}
	if (!fsync_dir(ds))
	{
		/* not known to be durable: take it back, nothing was applied */
		save = errno;
		if (unlinkat(ds->dirfd, JOURNAL_NAME, 0) != 0)
		{
			storage_error(h, STORAGE_BACKEND_ERROR,
						  "could not fsync directory \"%s\" after writing the journal, nor remove it: %m",
						  ds->path);
			storage_error_outcome(STORAGE_OUTCOME_UNKNOWN);
			return STORAGE_BACKEND_ERROR;
		}
		errno = save;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not fsync directory \"%s\": %m", ds->path);
	}
	return STORAGE_OK;
}

/* Is name a file name the journal may legitimately contain? */
static bool
journal_name_ok(const char *name, size_t len)
{
	if (len == 0 || len >= NAME_BUF || name[0] == '/')
		return false;
	for (size_t i = 0; i < len; i++)
		if (name[i] == '/' || name[i] == '\0')
			return false;
	return !(len <= 2 && name[0] == '.' && (len == 1 || name[1] == '.'));
}

/*
 * Exclusive lock held: complete the batch a journal describes (rename each
 * temporary file still present over its record file), make that durable,
 * remove the journal.  An incomplete journal cannot be in place (it is
 * renamed only when whole): one without "END" is removed unreplayed.
 */
static storage_status
replay_journal(storage_client *h, dir_state *ds)
{
	int			fd;
	struct stat sb;
	char	   *buf;
	size_t		size,
				off = 0;
	bool		whole;

	fd = openat(ds->dirfd, JOURNAL_NAME, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return STORAGE_OK;	/* someone else replayed it */
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not open the journal \"%s/%s\": %m",
							 ds->path, JOURNAL_NAME);
	}
	if (fstat(fd, &sb) != 0 || (buf = malloc((size_t) sb.st_size + 1)) == NULL)
	{
		close(fd);
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not read the journal \"%s/%s\": %m",
							 ds->path, JOURNAL_NAME);
	}
	size = (size_t) sb.st_size;
	while (off < size)
	{
		ssize_t		r = read(fd, buf + off, size - off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		off += (size_t) r;
	}
	close(fd);
	buf[off] = '\0';
	whole = off == size && off >= strlen(JOURNAL_MAGIC) + 4 &&
		strncmp(buf, JOURNAL_MAGIC, strlen(JOURNAL_MAGIC)) == 0 &&
		strcmp(buf + off - 4, "END\n") == 0;
	if (whole)
	{
		char	   *line = buf + strlen(JOURNAL_MAGIC);

		while (strcmp(line, "END\n") != 0)
		{
			char	   *nl = strchr(line, '\n');
			char	   *sp = strchr(line, ' ');

			if (nl == NULL || sp == NULL || sp > nl)
				break;
			*sp = '\0';
			*nl = '\0';
			if (is_temp_name(line) && journal_name_ok(sp + 1, (size_t) (nl - sp - 1)) &&
				renameat(ds->dirfd, line, ds->dirfd, sp + 1) != 0 &&
				errno != ENOENT)
			{
				storage_error(h, STORAGE_BACKEND_ERROR,
							  "could not complete the batch in the journal \"%s/%s\": renaming \"%s\": %m",
							  ds->path, JOURNAL_NAME, line);
				free(buf);
				return STORAGE_BACKEND_ERROR;
			}
			line = nl + 1;
		}
	}
	free(buf);
	/* the renames must be durable before the journal may go */
	if (!fsync_dir(ds) ||
		(unlinkat(ds->dirfd, JOURNAL_NAME, 0) != 0 && errno != ENOENT) ||
		!fsync_dir(ds))
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not finish replaying the journal \"%s/%s\": %m",
							 ds->path, JOURNAL_NAME);
	return STORAGE_OK;
}

/* ---- operations -------------------------------------------------------- */

static storage_status
dir_open(storage_client *h, const char *spec, void **state)
{
	dir_state  *ds;
	char	   *p;
	int			fd;
	storage_status st;

	ds = calloc(1, sizeof(*ds));
	if (ds == NULL || (ds->path = strdup(spec)) == NULL)
	{
		free(ds);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	/* mkdir -p */
	for (p = ds->path + 1; ; p++)
	{
		if (*p == '/' || *p == '\0')
		{
			char		c = *p;

			*p = '\0';
			if (mkdir(ds->path, 0700) != 0 && errno != EEXIST)
			{
				storage_error(h, STORAGE_BACKEND_ERROR,
							  "could not create directory \"%s\": %m", ds->path);
				free(ds->path);
				free(ds);
				return STORAGE_BACKEND_ERROR;
			}
			*p = c;
			if (c == '\0')
				break;
		}
	}
	ds->dirfd = open(ds->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (ds->dirfd < 0)
	{
		storage_error(h, STORAGE_BACKEND_ERROR,
					  "could not open directory \"%s\": %m", ds->path);
		free(ds->path);
		free(ds);
		return STORAGE_BACKEND_ERROR;
	}
	/*
	 * Under the exclusive lock (which also checks that the lock file can
	 * be created, and replays a journal left by a crash): remove the
	 * temporary files crashed writers left behind.
	 */
	if ((st = dir_lock(h, ds, LOCK_EX, &fd)) == STORAGE_OK)
	{
		st = remove_stale_temps(h, ds);
		dir_unlock(fd);
	}
	if (st != STORAGE_OK)
	{
		close(ds->dirfd);
		free(ds->path);
		free(ds);
		return st;
	}
	*state = ds;
	return STORAGE_OK;
}

static void
dir_close(void *state)
{
	dir_state  *ds = state;

	close(ds->dirfd);
	free(ds->path);
	free(ds);
}

static storage_status
dir_fetch(storage_client *h, void *state, const char *id, storage_record *out)
{
	dir_state  *ds = state;
	char		name[NAME_BUF];
	bool		exists;
	int			lockfd;
	storage_status st;

	id_to_name(id, name);
	if ((st = dir_lock(h, ds, LOCK_SH, &lockfd)) != STORAGE_OK)
		return st;
	st = read_id(h, ds, id, name, out, &exists);
	dir_unlock(lockfd);
	if (st != STORAGE_OK)
		return st;
	if (!exists || !storage_is_live(out->expires_at, storage_clock_now(h)))
	{
		storage_record_clear(out);
		return storage_error(h, STORAGE_NOT_FOUND, "record \"%s\" not found", id);
	}
	return STORAGE_OK;
}

static storage_status
dir_save(storage_client *h, void *state, storage_record *rec, int64_t expect)
{
	dir_state  *ds = state;
	char		name[NAME_BUF];
	storage_record old;
	bool		exists;
	int64_t		live_version = 0;
	int64_t		new_version;
	int			lockfd;
	storage_status st;

	id_to_name(rec->id, name);
	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	st = read_id(h, ds, rec->id, name, &old, &exists);
	if (st == STORAGE_OK)
	{
		if (exists && storage_is_live(old.expires_at, storage_clock_now(h)))
			live_version = old.version;
		storage_record_clear(&old);
		st = storage_save_rule(h, rec->id, live_version, expect, &new_version);
	}
	if (st == STORAGE_OK)
	{
		int64_t		saved = rec->version;

		rec->version = new_version;
		st = write_record(h, ds, name, rec);
		if (st != STORAGE_OK && storage_outcome_of(h) != STORAGE_OUTCOME_APPLIED)
			rec->version = saved;
	}
	dir_unlock(lockfd);
	return st;
}

static storage_status
dir_delete(storage_client *h, void *state, const char *id, bool *deleted)
{
	dir_state  *ds = state;
	char		name[NAME_BUF];
	storage_record old;
	bool		exists;
	int			lockfd;
	storage_status st;

	id_to_name(id, name);
	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	st = read_id(h, ds, id, name, &old, &exists);
	if (st == STORAGE_OK && exists)
	{
		*deleted = storage_is_live(old.expires_at, storage_clock_now(h));
		storage_record_clear(&old);
		if (unlinkat(ds->dirfd, name, 0) != 0)
		{
			*deleted = false;
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "could not remove \"%s/%s\": %m", ds->path, name);
		}
		else
		{
			char		what[STORAGE_MAX_ID_LEN + 64];

			snprintf(what, sizeof(what), "record \"%s\" was deleted", id);
			st = sync_dir_applied(h, ds, what);
		}
	}
	dir_unlock(lockfd);
	return st;
}


/*
 * Exclusive lock held: the record file "name" holds rec, whose id's own
 * name is "proper".  Move it there; whichever of the two records of that
 * id has the lower version goes aside to ".conflict.<proper>".
 */
static storage_status
repair_misnamed(storage_client *h, dir_state *ds, const char *name,
				const storage_record *rec, const char *proper)
{
	storage_record cur;
	bool		exists;
	char		aside[NAME_BUF + sizeof(CONFLICT_PREFIX)];
	storage_status st;

	st = read_record(h, ds, proper, &cur, &exists, true);
	if (st != STORAGE_OK)
		return st;
	if (exists && strcmp(cur.id, rec->id) == 0 && cur.version >= rec->version)
	{
		/* the properly named one wins: the stray copy goes aside */
		storage_record_clear(&cur);
		snprintf(aside, sizeof(aside), "%s%s", CONFLICT_PREFIX, proper);
		if (renameat(ds->dirfd, name, ds->dirfd, aside) != 0)
			return storage_error(h, STORAGE_BACKEND_ERROR,
								 "could not move \"%s/%s\" aside: %m", ds->path, name);
		return STORAGE_OK;
	}
	storage_record_clear(&cur);
	if (faccessat(ds->dirfd, proper, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
	{
		snprintf(aside, sizeof(aside), "%s%s", CONFLICT_PREFIX, proper);
		if (renameat(ds->dirfd, proper, ds->dirfd, aside) != 0)
			return storage_error(h, STORAGE_BACKEND_ERROR,
								 "could not move \"%s/%s\" aside: %m", ds->path, proper);
	}
	if (renameat(ds->dirfd, name, ds->dirfd, proper) != 0)
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not rename \"%s/%s\" to \"%s\": %m",
							 ds->path, name, proper);
	return STORAGE_OK;
}

static storage_status
dir_purge(storage_client *h, void *state, int64_t max_rows, int64_t *count)
{
	dir_state  *ds = state;
	int64_t		now = storage_clock_now(h);
	bool		changed = false;
	struct dirent *de;
	DIR		   *d;
	int			lockfd;
	storage_status st;

	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	if ((d = open_dir_stream(h, ds)) == NULL)
	{
		dir_unlock(lockfd);
		return STORAGE_BACKEND_ERROR;
	}
	while ((de = readdir(d)) != NULL)
	{
		storage_record rec;
		char		proper[NAME_BUF];
		bool		exists;

		if (max_rows > 0 && *count >= max_rows)
			break;

		/*
		 * Writers create temporary files only while holding the exclusive
		 * lock, which we hold: any temporary file seen now was left by a
		 * writer that crashed.  Remove it (not counted as a record).
		 */
		if (is_temp_name(de->d_name))
		{
			unlinkat(ds->dirfd, de->d_name, 0);
			continue;
		}
		if (de->d_name[0] == '.' ||
			(de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;
		st = read_record(h, ds, de->d_name, &rec, &exists, true);
		if (st != STORAGE_OK)
			break;
		if (!exists)
			continue;			/* not a record file */
		id_to_name(rec.id, proper);
		if (!storage_is_live(rec.expires_at, now))
		{
			if (unlinkat(ds->dirfd, de->d_name, 0) != 0)
			{
				st = storage_error(h, STORAGE_BACKEND_ERROR,
								   "could not remove \"%s/%s\": %m",
								   ds->path, de->d_name);
				storage_record_clear(&rec);
				break;
			}
			changed = true;
			(*count)++;
		}
		else if (strcmp(proper, de->d_name) != 0)
		{
			st = repair_misnamed(h, ds, de->d_name, &rec, proper);
			changed = true;
			if (st != STORAGE_OK)
			{
				storage_record_clear(&rec);
				break;
			}
		}
		storage_record_clear(&rec);
	}
	closedir(d);
	if (st == STORAGE_OK && changed)
		st = sync_dir_applied(h, ds, "expired records were removed");
	dir_unlock(lockfd);
	return st;
}

static storage_status
dir_list(storage_client *h, void *state, const char *prefix,
		 storage_record **out, size_t *n)
{
	dir_state  *ds = state;
	int64_t		now = storage_clock_now(h);
	size_t		plen = strlen(prefix);
	size_t		cap = 0;
	struct dirent *de;
	DIR		   *d;
	int			lockfd;
	storage_status st;

	if ((st = dir_lock(h, ds, LOCK_SH, &lockfd)) != STORAGE_OK)
		return st;
	if ((d = open_dir_stream(h, ds)) == NULL)
	{
		dir_unlock(lockfd);
		return STORAGE_BACKEND_ERROR;
	}
	while ((de = readdir(d)) != NULL)
	{
		char		id[STORAGE_MAX_ID_LEN + 1];
		char		proper[NAME_BUF];
		storage_record rec;
		bool		exists;

		if (de->d_name[0] == '.' ||
			(de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;
		/* plain names: filter on the prefix before opening the file */
		if (de->d_name[0] != '~')
		{
			if (!name_to_id(de->d_name, id))
				continue;		/* not a record file */
			if (strncmp(id, prefix, plen) != 0)
				continue;
		}
		st = read_record(h, ds, de->d_name, &rec, &exists, true);
		if (st != STORAGE_OK)
			break;
		if (!exists)
			continue;
		id_to_name(rec.id, proper);
		/* a copy under another name is not the record (see the header) */
		if (strcmp(proper, de->d_name) != 0 ||
			strncmp(rec.id, prefix, plen) != 0 ||
			!storage_is_live(rec.expires_at, now))
		{
			storage_record_clear(&rec);
			continue;
		}
		if (*n == cap)
		{
			size_t		ncap = cap ? cap * 2 : 16;
			storage_record *nrecs = realloc(*out, ncap * sizeof(storage_record));

			if (nrecs == NULL)
			{
				storage_record_clear(&rec);
				st = storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
				break;
			}
			*out = nrecs;
			cap = ncap;
		}
		(*out)[(*n)++] = rec;
	}
	closedir(d);
	dir_unlock(lockfd);
	if (st == STORAGE_OK && *n > 1)
		qsort(*out, *n, sizeof(storage_record), storage_record_cmp);
	return st;
}

/* ---- batch operations -------------------------------------------------- */

static storage_status
dir_fetch_many(storage_client *h, void *state, const char *const *ids,
			   size_t n, storage_record **out, size_t *n_out)
{
	dir_state  *ds = state;
	int64_t		now = storage_clock_now(h);
	int			lockfd;
	storage_status st;

	if ((*out = calloc(n, sizeof(storage_record))) == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	if ((st = dir_lock(h, ds, LOCK_SH, &lockfd)) != STORAGE_OK)
		return st;
	for (size_t i = 0; i < n; i++)
	{
		storage_record *rec = &(*out)[*n_out];
		char		name[NAME_BUF];
		bool		exists;

		id_to_name(ids[i], name);
		if ((st = read_id(h, ds, ids[i], name, rec, &exists)) != STORAGE_OK)
			break;
		if (exists && storage_is_live(rec->expires_at, now))
			(*n_out)++;
		else
			storage_record_clear(rec);
	}
	dir_unlock(lockfd);
	return st;
}

/* save_many, step 1 (exclusive lock held): every record's new version. */
static storage_status
dir_check_many(storage_client *h, dir_state *ds, storage_record *recs,
			   size_t n, const int64_t *expect)
{
	int64_t		now = storage_clock_now(h);

	for (size_t i = 0; i < n; i++)
	{
		char		name[NAME_BUF];
		storage_record old;
		bool		exists;
		int64_t		live = 0;
		storage_status st;

		id_to_name(recs[i].id, name);
		if ((st = read_id(h, ds, recs[i].id, name, &old, &exists)) != STORAGE_OK)
			return st;
		if (exists && storage_is_live(old.expires_at, now))
			live = old.version;
		storage_record_clear(&old);
		st = storage_save_rule(h, recs[i].id, live, expect[i], &recs[i].version);
		if (st != STORAGE_OK)
			return st;
	}
	return STORAGE_OK;
}

/*
 * save_many, step 2: all temporary files, then the journal, then all
 * renames, one directory fsync, and the journal removed.
 */
static storage_status
dir_write_many(storage_client *h, dir_state *ds, const storage_record *recs,
			   size_t n)
{
	char		(*tmps)[TMP_BUF] = calloc(n, TMP_BUF);
	char		(*names)[NAME_BUF] = calloc(n, NAME_BUF);
	size_t		written = 0;
	int			crash_after = atomic_load(&test_crash_after_renames);
	storage_status st = STORAGE_OK;

	if (tmps == NULL || names == NULL)
	{
		free(tmps);
		free(names);
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	}
	while (written < n &&
		   (st = write_temp(h, ds, &recs[written], tmps[written])) == STORAGE_OK)
	{
		id_to_name(recs[written].id, names[written]);
		written++;
	}
	if (st == STORAGE_OK)
		st = write_journal(h, ds, tmps, names, n);
	if (st != STORAGE_OK)
	{
		/* nothing renamed, no journal: the batch never happened */
		for (size_t i = 0; i < written; i++)
			unlinkat(ds->dirfd, tmps[i], 0);
		free(tmps);
		free(names);
		return st;
	}
	for (size_t i = 0; i < n; i++)
	{
		if (crash_after >= 0 && (size_t) crash_after == i)
			_exit(0);			/* test: a crash midway through the renames */
		if (renameat(ds->dirfd, tmps[i], ds->dirfd, names[i]) != 0)
		{
			/* the journal stays: the next operation completes the batch */
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "could not rename \"%s/%s\" into place: %m (the batch is completed from the journal by the next operation)",
							   ds->path, tmps[i]);
			storage_error_outcome(STORAGE_OUTCOME_UNKNOWN);
			free(tmps);
			free(names);
			return st;
		}
	}
	free(tmps);
	free(names);
	if (!fsync_dir(ds))
	{
		/* the journal stays too: a replay makes the renames durable */
		storage_error(h, STORAGE_BACKEND_ERROR,
					  "the batch was saved, but could not fsync directory \"%s\" afterwards, so it may not survive a crash: %m",
					  ds->path);
		storage_error_outcome(STORAGE_OUTCOME_APPLIED);
		return STORAGE_BACKEND_ERROR;
	}
	/* no fsync needed: a journal whose files are gone replays as nothing */
	unlinkat(ds->dirfd, JOURNAL_NAME, 0);
	return STORAGE_OK;
}

static storage_status
dir_save_many(storage_client *h, void *state, storage_record *recs, size_t n,
			  const int64_t *expect)
{
	dir_state  *ds = state;
	int			lockfd;
	storage_status st;

	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	st = dir_check_many(h, ds, recs, n, expect);
	if (st == STORAGE_OK)
		st = dir_write_many(h, ds, recs, n);
	dir_unlock(lockfd);
	return st;
}

static storage_status
dir_delete_many(storage_client *h, void *state, const char *const *ids,
				size_t n, int64_t *count)
{
	dir_state  *ds = state;
	int64_t		now = storage_clock_now(h);
	bool		removed = false;
	int			lockfd;
	storage_status st;

	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	for (size_t i = 0; st == STORAGE_OK && i < n; i++)
	{
		char		name[NAME_BUF];
		storage_record old;
		bool		exists;

		id_to_name(ids[i], name);
		st = read_id(h, ds, ids[i], name, &old, &exists);
		if (st != STORAGE_OK || !exists)
			continue;
		if (unlinkat(ds->dirfd, name, 0) != 0)
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "could not remove \"%s/%s\": %m", ds->path, name);
		else
		{
			removed = true;
			*count += storage_is_live(old.expires_at, now);
		}
		storage_record_clear(&old);
	}
	if (removed && st == STORAGE_OK)
		st = sync_dir_applied(h, ds, "the records were deleted");
	else if (removed)
		(void) fsync_dir(ds);
	dir_unlock(lockfd);
	return st;
}

/*
 * ---- locks with fencing tokens ---------------------------------------------
 *
 * The last token handed out is the version of the record file ".fences"
 * (not a record: its name starts with '.'), so it survives the purge of
 * expired lock records and is shared by every handle and process on the
 * directory.  It is written durably before the lock record, under the
 * exclusive flock: a crash in between costs a token, never repeats one.
 */
#define FENCES_NAME		".fences"

static storage_status
dir_lock_acquire(storage_client *h, void *state, const char *id,
				 const char *token, int64_t ttl, int64_t expires_at,
				 int64_t *fence)
{
	dir_state  *ds = state;
	char		name[NAME_BUF];
	storage_record old;
	storage_record rec = {.id = (char *) id, .expires_at = expires_at};
	storage_record counter = {.id = FENCES_NAME};
	bool		exists;
	int			lockfd;
	storage_status st;

	(void) ttl;
	id_to_name(id, name);
	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	st = read_id(h, ds, id, name, &old, &exists);
	if (st == STORAGE_OK && exists)
	{
		if (storage_is_live(old.expires_at, storage_clock_now(h)))
			st = storage_error(h, STORAGE_ALREADY_EXISTS, "lock \"%s\" is held", token);
		storage_record_clear(&old);
	}
	if (st == STORAGE_OK)
		st = read_id(h, ds, FENCES_NAME, FENCES_NAME, &old, &exists);
	if (st == STORAGE_OK)
	{
		counter.version = exists && old.version > 1 ? old.version : 1;
		if (exists)
			storage_record_clear(&old);
		if (counter.version == INT64_MAX)
			st = storage_error(h, STORAGE_BACKEND_ERROR, "lock fencing tokens exhausted");
	}
	if (st == STORAGE_OK)
	{
		rec.version = ++counter.version;
		if ((st = write_record(h, ds, FENCES_NAME, &counter)) == STORAGE_OK &&
			(st = write_record(h, ds, name, &rec)) == STORAGE_OK)
			*fence = rec.version;
	}
	dir_unlock(lockfd);
	return st;
}

/*
 * Deletes (expires_at == 0) or re-expires the lock id if it is live with
 * version fence; NOT_FOUND otherwise.
 */
static storage_status
dir_lock_change(storage_client *h, dir_state *ds, const char *id,
				const char *token, int64_t fence, int64_t expires_at)
{
	char		name[NAME_BUF];
	storage_record rec;
	bool		exists;
	int			lockfd;
	storage_status st;

	id_to_name(id, name);
	if ((st = dir_lock(h, ds, LOCK_EX, &lockfd)) != STORAGE_OK)
		return st;
	st = read_id(h, ds, id, name, &rec, &exists);
	if (st == STORAGE_OK)
	{
		if (!exists || rec.version != fence ||
			!storage_is_live(rec.expires_at, storage_clock_now(h)))
			st = storage_error(h, STORAGE_NOT_FOUND,
							   "lock \"%s\" is not held with fence %lld",
							   token, (long long) fence);
		else if (expires_at != STORAGE_NEVER)
		{
			rec.expires_at = expires_at;
			st = write_record(h, ds, name, &rec);
		}
		else if (unlinkat(ds->dirfd, name, 0) != 0 || fsync(ds->dirfd) != 0)
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "could not remove \"%s/%s\": %m", ds->path, name);
		if (exists)
			storage_record_clear(&rec);
	}
	dir_unlock(lockfd);
	return st;
}

static storage_status
dir_lock_release(storage_client *h, void *state, const char *id,
				 const char *token, int64_t fence)
{
	return dir_lock_change(h, state, id, token, fence, STORAGE_NEVER);
}

static storage_status
dir_lock_extend(storage_client *h, void *state, const char *id,
				const char *token, int64_t fence, int64_t ttl,
				int64_t expires_at)
{
	(void) ttl;
	return dir_lock_change(h, state, id, token, fence, expires_at);
}

const storage_backend_ops storage_dir_backend = {
	.name = "dir",
	.clock_is_server = false,
	.open = dir_open,
	.close = dir_close,
	.fetch = dir_fetch,
	.save = dir_save,
	.delete = dir_delete,
	.purge_expired = dir_purge,
	.list = dir_list,
	.fetch_many = dir_fetch_many,
	.save_many = dir_save_many,
	.delete_many = dir_delete_many,
	.lock_acquire = dir_lock_acquire,
	.lock_release = dir_lock_release,
	.lock_extend = dir_lock_extend,
};
