/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between the PostgreSQL major versions the extension
 *	  supports (15, 16, 17 and 18) that its C code meets, and nothing else.
 *	  This is the only file that tests PG_VERSION_NUM: the C files are
 *	  written against the newest API, and the names below give them that
 *	  API on older servers.  Supporting a new major version means reading
 *	  this file against its headers (and building the whole suite there).
 *
 * 15, 17 and 18 are built and tested (see README "Install"); 16 has no
 * Debian package on the machines the project is tested on, so its branches
 * were checked against the PostgreSQL 16 porting notes of other extensions
 * (the commits they name), not by reading every header or by a build.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STORAGE_COMPAT_H
#define STORAGE_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 150000
#error "storage needs PostgreSQL 15 or later (shmem_request_hook, MarkGUCPrefixReserved)"
#endif

/*
 * 18 replaced the trailing pg_attribute_noreturn() with pg_noreturn in
 * front of the declaration; GCC and clang accept the attribute there too.
 */
#ifndef pg_noreturn
#define pg_noreturn pg_attribute_noreturn()
#endif

/*
 * 18: RelationGetPrimaryKeyIndex() returns a deferrable primary key only if
 * asked to.  Before 18 it never did; the direct path needs an immediate
 * one (it is the arbiter of speculative inserts).
 */
#if PG_VERSION_NUM >= 180000
#define stg_primary_key(rel)	RelationGetPrimaryKeyIndex((rel), false)
#else
#define stg_primary_key(rel)	RelationGetPrimaryKeyIndex(rel)
#endif

/* 18: index scans take an instrumentation struct (NULL: none) */
#if PG_VERSION_NUM >= 180000
#define stg_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), NULL, (nkeys), (norderbys))
#else
#define stg_index_beginscan(heap, index, snapshot, nkeys, norderbys) \
	index_beginscan((heap), (index), (snapshot), (nkeys), (norderbys))
#endif

/*
 * 16: table_tuple_update() says which indexes need entries for the new
 * version (none, only the summarizing ones such as BRIN, or all) instead
 * of a bool, and ExecInsertIndexTuples() can be limited to summarizing
 * indexes.  On 15 "some" always means all of them.
 */
#if PG_VERSION_NUM >= 160000
#define StgIndexUpdate			TU_UpdateIndexes
#define stg_no_index_update(u)	((u) == TU_None)
#define stg_only_summarizing(u)	((u) == TU_Summarizing)
#define stg_insert_index_tuples(rri, slot, estate, update, nodup, conflict, arbiters, summarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (nodup), \
						  (conflict), (arbiters), (summarizing))
#else
#define StgIndexUpdate			bool
#define stg_no_index_update(u)	(!(u))
#define stg_only_summarizing(u)	false
#define stg_insert_index_tuples(rri, slot, estate, update, nodup, conflict, arbiters, summarizing) \
	ExecInsertIndexTuples((rri), (slot), (estate), (update), (nodup), \
						  (conflict), (arbiters))
#endif

/*
 * 16: the local backend status array is read by index with its own
 * function (pgstat_fetch_stat_local_beentry() now takes a backend id).
 */
#if PG_VERSION_NUM < 160000
#define pgstat_get_local_beentry_by_index(idx) pgstat_fetch_stat_local_beentry(idx)
#endif

/*
 * 17: the decoded tuples of a change are plain HeapTuples (they were
 * wrapped in a ReorderBufferTupleBuf), and LogLogicalMessage() can flush.
 */
#if PG_VERSION_NUM >= 170000
#define storage_change_tuple(t)		(t)
#define storage_log_logical_message(prefix, msg, size) \
	LogLogicalMessage((prefix), (msg), (size), true, false)
#else
#define storage_change_tuple(t)		(&(t)->tuple)
#define storage_log_logical_message(prefix, msg, size) \
	LogLogicalMessage((prefix), (msg), (size), true)
#endif

#endif							/* STORAGE_COMPAT_H */
