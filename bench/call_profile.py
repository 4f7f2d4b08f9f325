#!/usr/bin/env python3
"""bench/call_profile.py: CPU microseconds per call by category from a perf
recording of a server's backends (bench/call_profile.sh).

usage: call_profile.py PERF_DATA CALLS WALWRITER_PID [NAME]

Each sample is one millisecond of CPU (perf -e task-clock -c 1000000) with
its call chain.  A sample goes to the first category of CATEGORIES whose
functions appear anywhere in its chain, so that work is charged to the step
that asked for it (a buffer read inside heap_update is heap work, inside
an index scan a lookup).  Kernel samples under a socket read or write or a
wait are the kernel's; under the latch set at commit, the commit's.  What
is left is the protocol loop of postgres.c, most of whose functions are
static and unnamed in a stripped server.  Prints one line per category
(microseconds per call, share) and the innermost storage.so functions of
the samples charged to the extension."""
import collections
import re
import subprocess
import sys

KERNEL_LATCH = 'commit: latch set for the WAL writer (kill)'
KERNEL_SOCKET = 'kernel: socket read/write, wait, context switch'

# (category, functions): the first that matches a sample's chain wins
CATEGORIES = [
    ('transaction: xid, commit record, end of transaction',
     {'CommitTransactionCommand', 'StartTransactionCommand', 'AssignTransactionId',
      'GetTopTransactionId', 'GetCurrentTransactionId', 'XLogSetAsyncXactLSN'}),
    ('WAL insert of the row change',
     {'XLogInsert', 'XLogBeginInsert', 'XLogRegisterData', 'XLogRegisterBuffer',
      'XLogRegisterBufData', 'XLogInsertRecord'}),
    ('index insert (a new row version that is not HOT)',
     {'btinsert', '_bt_doinsert', 'index_insert', 'ExecInsertIndexTuples',
      '_bt_check_unique', '_bt_findinsertloc', '_bt_insertonpg', 'index_form_tuple'}),
    ('heap update/insert, pruning',
     {'heap_update', 'heap_insert', 'heap_delete', 'heap_page_prune', 'heap_page_prune_opt',
      'RelationGetBufferForTuple', 'heap_form_tuple', 'simple_heap_update',
      'heapam_tuple_update', 'table_tuple_update', 'heap_toast_insert_or_update',
      'PageAddItemExtended', 'heap_lock_tuple'}),
    ('lookup (B-tree descent, buffers, visibility)',
     {'_bt_first', '_bt_search', '_bt_next', 'index_getnext_tid', 'index_fetch_heap',
      'heapam_index_fetch_tuple', 'heap_hot_search_buffer', 'index_getnext_slot',
      'ReadBufferExtended', 'ReadBuffer', 'ReleaseBuffer', '_bt_compare', 'index_beginscan',
      'index_rescan', 'index_endscan', 'btgettuple', 'btbeginscan', 'btrescan', 'btendscan',
      'LockBuffer', 'ReleaseAndReadBuffer', 'BufTableLookup', 'heap_fetch'}),
    (None, None),  # the kernel's other samples, then the extension's (below)
    ('executor, plan cache, snapshot, function call',
     {'ExecInterpExpr', 'ExecEvalFunc', 'FunctionCall1Coll', 'FunctionCall2Coll',
      'ExecutorStart', 'ExecutorRun', 'ExecutorEnd', 'standard_ExecutorStart',
      'standard_ExecutorRun', 'standard_ExecutorEnd', 'ExecInitNode', 'ExecEndNode',
      'CreateExecutorState', 'FreeExecutorState', 'PortalStart', 'PortalRun', 'PortalDrop',
      'CreatePortal', 'GetCachedPlan', 'CheckCachedPlan', 'ExecProcNode', 'ExecScan',
      'ExecResult', 'CreateQueryDesc', 'FreeQueryDesc', 'ExecCheckRTPerms',
      'ExecModifyTable', 'ExecInitModifyTable', 'ExecUpdate', 'ExecOpenIndices',
      'ExecCloseIndices', 'InitPlan', 'ExecEndPlan', 'ExecProject', 'AcquireExecutorLocks',
      'LockRelationOid', 'UnlockRelationId', 'relation_open', 'RelationIdGetRelation',
      'GetTransactionSnapshot', 'GetSnapshotData', 'PushActiveSnapshot',
      'PopActiveSnapshot', 'RegisterSnapshot', 'UnregisterSnapshot', 'ExecInitExpr'}),
]
SOCKET = {'secure_read', 'secure_write', 'pq_getbyte', 'pq_flush', 'WaitEventSetWait'}
LATCH = {'kill', '__GI_kill', 'SetLatch'}
PROTOCOL = 'protocol: messages, parameters, postgres.c loop'
EXTENSION = 'storage extension (storage.so, with what it calls not above)'


def samples(path):
    """(pid, [(function, object)] innermost first) per sample."""
    out = subprocess.run(['perf', 'script', '-i', path, '-F', 'comm,pid,ip,sym,dso'],
                         capture_output=True, text=True, check=True).stdout
    cur = None
    for line in out.split('\n'):
        if not line.strip():
            if cur:
                yield cur
            cur = None
        elif not line[0].isspace():
            cur = (line.split()[1], [])
        elif cur is not None:
            m = re.match(r'\s*[0-9a-f]+\s+(.*?)\s+\((.*)\)\s*$', line)
            if m:
                cur[1].append((re.sub(r'\+0x[0-9a-f]+$', '', m.group(1)), m.group(2)))
    if cur:
        yield cur


def category(pid, frames, walwriter):
    if pid == walwriter:
        return 'WAL writer process'
    names = {f for f, _ in frames}
    kernel = bool(frames) and 'kernel' in frames[0][1]
    if kernel and names & LATCH:
        return KERNEL_LATCH
    if kernel and names & SOCKET:
        return KERNEL_SOCKET
    for name, funcs in CATEGORIES:
        if name is None:
            if kernel:
                return 'kernel: other'
            if any('storage.so' in obj for _, obj in frames):
                return EXTENSION
        elif names & funcs:
            return name
    return PROTOCOL


def main():
    path, calls, walwriter = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    name = sys.argv[4] if len(sys.argv) > 4 else path
    count = collections.Counter()
    ours = collections.Counter()
    for pid, frames in samples(path):
        c = category(pid, frames, walwriter)
        count[c] += 1
        if c == EXTENSION:
            ours[next(f for f, obj in frames if 'storage.so' in obj)] += 1
    total = sum(count.values())
    us = 1000.0 / calls          # one sample is 1000 us of CPU
    print(f'{name}: {calls} calls, {total} ms of CPU: {total * us:.1f} us per call')
    for c, n in count.most_common():
        print(f'  {c:60s} {n * us:6.2f} us  {100.0 * n / total:5.1f} %')
    if ours:
        print('  storage.so, innermost:',
              ', '.join(f'{f} {n * us:.2f}' for f, n in ours.most_common(8)))


if __name__ == '__main__':
    main()
