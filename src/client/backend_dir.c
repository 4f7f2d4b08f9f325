/*-------------------------------------------------------------------------
 *
 * backend_dir.c
 *	  The "dir:/path" backend: one file per record in a POSIX directory
 *	  (created, with parents, mode 0700, if missing).
 *
 *	  Durability: a record is written to a temporary file in the same
 *	  directory, fsync'd, renamed over the record's file and the directory
 *	  is fsync'd, so a crash leaves either the old or the new record, never
 *	  a torn one.
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
 *	  id ('~' never appears in an encoding); every file stores the full id,
 *	  which is checked on read.  Names starting with '.' (the lock file,
 *	  the last lock fencing token ".fences", temporary files) are not
 *	  records.
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
 *	  record, then writes and fsyncs every temporary file, and only then
 *	  renames them all into place and fsyncs the directory once: a check
 *	  or write failure (e.g. a full disk) leaves nothing changed.  Only a
 *	  crash or a failed rename during that last step can leave part of a
 *	  batch applied (each record is still whole).
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
#include <sys/stat.h>
#include <unistd.h>

#include "storage_backend.h"

#define PLAIN_NAME_MAX	240
#define NAME_BUF		(PLAIN_NAME_MAX + 1)
#define LOCK_NAME		".lock"
#define MAGIC			"STOREC01"
#define HEADER_LEN		40

typedef struct dir_state
{
	char	   *path;
	int			dirfd;
} dir_state;

static atomic_uint tmp_counter;

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
		unsigned char digest[32];

		storage_sha256(id, strlen(id), digest);
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

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char) (v >> (8 * i));
}

static uint64_t
get64(const unsigned char *p)
{
	uint64_t	v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t) p[i] << (8 * i);
	return v;
}

static void
put32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char) (v >> (8 * i));
}

static uint32_t
get32(const unsigned char *p)
{
	uint32_t	v = 0;

	for (int i = 0; i < 4; i++)
		v |= (uint32_t) p[i] << (8 * i);
	return v;
}

/*
 * Read the record file "name".  *exists = false (and STORAGE_OK) if there
 * is no such file.  On success out holds malloc'd fields.
 */
static storage_status
read_record(storage_client *h, dir_state *ds, const char *name,
			storage_record *out, bool *exists)
{
	int			fd;
	struct stat sb;
	unsigned char *buf = NULL;
	size_t		size,
				off = 0;
	uint32_t	id_len;
	int32_t		format_len;
	int64_t		data_len;

	memset(out, 0, sizeof(*out));
	*exists = false;
	fd = openat(ds->dirfd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
	{
		if (errno == ENOENT)
			return STORAGE_OK;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not open \"%s/%s\": %m", ds->path, name);
	}
	if (fstat(fd, &sb) != 0)
		goto io_error;
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
	out->version = (int64_t) get64(buf + 8);
	out->expires_at = (int64_t) get64(buf + 16);
	id_len = get32(buf + 24);
	format_len = (int32_t) get32(buf + 28);
	data_len = (int64_t) get64(buf + 32);
	if (id_len < 1 || id_len > STORAGE_MAX_ID_LEN || format_len < -1 ||
		data_len < -1 ||
		(uint64_t) HEADER_LEN + id_len + (format_len > 0 ? (uint64_t) format_len : 0) +
		(data_len > 0 ? (uint64_t) data_len : 0) != size)
		goto corrupt;
	off = HEADER_LEN;
	if ((out->id = malloc(id_len + 1)) == NULL)
		goto oom;
	memcpy(out->id, buf + off, id_len);
	out->id[id_len] = '\0';
	off += id_len;
	if (format_len >= 0)
	{
		if ((out->format = malloc((size_t) format_len + 1)) == NULL)
			goto oom;
		memcpy(out->format, buf + off, (size_t) format_len);
		out->format[format_len] = '\0';
		off += (size_t) format_len;
	}
	if (data_len >= 0)
	{
		if ((out->data = malloc(data_len ? (size_t) data_len : 1)) == NULL)
			goto oom;
		memcpy(out->data, buf + off, (size_t) data_len);
		out->data_len = (size_t) data_len;
	}
	if (strlen(out->id) != id_len)
		goto corrupt;
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
	free(buf);
	storage_record_clear(out);
	return storage_error(h, STORAGE_BACKEND_ERROR,
						 "corrupt record file \"%s/%s\"", ds->path, name);
oom:
	free(buf);
	storage_record_clear(out);
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
	put64(hdr + 8, (uint64_t) rec->version);
	put64(hdr + 16, (uint64_t) rec->expires_at);
	put32(hdr + 24, (uint32_t) id_len);
	put32(hdr + 28, rec->format ? (uint32_t) format_len : (uint32_t) -1);
	put64(hdr + 32, rec->data ? (uint64_t) rec->data_len : (uint64_t) -1);

	snprintf(tmp, TMP_BUF, ".tmp.%ld.%u", (long) getpid(),
			 atomic_fetch_add(&tmp_counter, 1));
	fd = openat(ds->dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not create \"%s/%s\": %m", ds->path, tmp);
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

static storage_status
sync_dir(storage_client *h, dir_state *ds)
{
	if (fsync(ds->dirfd) != 0)
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "could not fsync directory \"%s\": %m", ds->path);
	return STORAGE_OK;
}

/* Write rec durably as file "name" (temp file, fsync, rename, fsync dir). */
static storage_status
write_record(storage_client *h, dir_state *ds, const char *name,
			 const storage_record *rec)
{
	char		tmp[TMP_BUF];
	storage_status st;

	if ((st = write_temp(h, ds, rec, tmp)) != STORAGE_OK ||
		(st = install_temp(h, ds, tmp, name)) != STORAGE_OK)
		return st;
	return sync_dir(h, ds);
}

/*
 * Read the record of id (whatever its liveness).  A file whose stored id
 * differs (a SHA-256 collision of hashed names) is an error.
 */
static storage_status
read_id(storage_client *h, dir_state *ds, const char *id, const char *name,
		storage_record *out, bool *exists)
{
	storage_status st = read_record(h, ds, name, out, exists);

	if (st == STORAGE_OK && *exists && strcmp(out->id, id) != 0)
	{
		storage_record_clear(out);
		*exists = false;
		return storage_error(h, STORAGE_BACKEND_ERROR,
							 "record file \"%s/%s\" holds another id", ds->path, name);
	}
	return st;
}

/* ---- operations -------------------------------------------------------- */

static storage_status
dir_open(storage_client *h, const char *spec, void **state)
{
	dir_state  *ds;
	char	   *p;
	int			fd;

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
	/* check now that the lock file can be created */
	fd = openat(ds->dirfd, LOCK_NAME, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
	{
		storage_error(h, STORAGE_BACKEND_ERROR,
					  "could not open lock file \"%s/%s\": %m",
					  ds->path, LOCK_NAME);
		close(ds->dirfd);
		free(ds->path);
		free(ds);
		return STORAGE_BACKEND_ERROR;
	}
	close(fd);
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
		if (st != STORAGE_OK)
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
		if (unlinkat(ds->dirfd, name, 0) != 0 || fsync(ds->dirfd) != 0)
		{
			*deleted = false;
			st = storage_error(h, STORAGE_BACKEND_ERROR,
							   "could not remove \"%s/%s\": %m", ds->path, name);
		}
	}
	dir_unlock(lockfd);
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

static storage_status
dir_purge(storage_client *h, void *state, int64_t max_rows, int64_t *count)
{
	dir_state  *ds = state;
	int64_t		now = storage_clock_now(h);
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
		bool		exists;

		if (max_rows > 0 && *count >= max_rows)
			break;

		/*
		 * Writers create temporary files only while holding the exclusive
		 * lock, which we hold: any temporary file seen now was left by a
		 * writer that crashed.  Remove it (not counted as a record).
		 */
		if (strncmp(de->d_name, ".tmp.", 5) == 0)
		{
			unlinkat(ds->dirfd, de->d_name, 0);
			continue;
		}
		if (de->d_name[0] == '.')
			continue;
		st = read_record(h, ds, de->d_name, &rec, &exists);
		if (st != STORAGE_OK)
			break;
		if (!exists)
			continue;
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
			(*count)++;
		}
		storage_record_clear(&rec);
	}
	closedir(d);
	if (st == STORAGE_OK && *count > 0 && fsync(ds->dirfd) != 0)
		st = storage_error(h, STORAGE_BACKEND_ERROR,
						   "could not fsync directory \"%s\": %m", ds->path);
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
		storage_record rec;
		bool		exists;

		if (de->d_name[0] == '.')
			continue;
		/* plain names: filter on the prefix before opening the file */
		if (de->d_name[0] != '~')
		{
			if (!name_to_id(de->d_name, id))
				continue;		/* not a record file */
			if (strncmp(id, prefix, plen) != 0)
				continue;
		}
		st = read_record(h, ds, de->d_name, &rec, &exists);
		if (st != STORAGE_OK)
			break;
		if (!exists)
			continue;
		if (strncmp(rec.id, prefix, plen) != 0 ||
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

/* save_many, step 2: all temporary files, then all renames, one dir fsync. */
static storage_status
dir_write_many(storage_client *h, dir_state *ds, const storage_record *recs,
			   size_t n)
{
	char		(*tmps)[TMP_BUF] = calloc(n, TMP_BUF);
	size_t		written = 0;
	storage_status st = STORAGE_OK;

	if (tmps == NULL)
		return storage_error(h, STORAGE_BACKEND_ERROR, "out of memory");
	while (written < n &&
		   (st = write_temp(h, ds, &recs[written], tmps[written])) == STORAGE_OK)
		written++;
	for (size_t i = 0; i < written; i++)
	{
		char		name[NAME_BUF];

		id_to_name(recs[i].id, name);
		if (st == STORAGE_OK)
			st = install_temp(h, ds, tmps[i], name);
		else
			unlinkat(ds->dirfd, tmps[i], 0);	/* nothing renamed after a failure */
	}
	free(tmps);
	if (st == STORAGE_OK)
		st = sync_dir(h, ds);
	return st;
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
	if (removed)
	{
		storage_status sst = sync_dir(h, ds);

		if (st == STORAGE_OK)
			st = sst;
	}
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
