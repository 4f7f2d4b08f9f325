# The change feed: the storage output plugin's events (put, touch, delete,
# expire and commit, FEED-FORMAT.md) through the SQL functions and
# pg_logical_slot_get_binary_changes, on a wal_level=logical cluster.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $node = PostgreSQL::Test::Cluster->new('feed');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'storage'
storage.purge_interval = '1h'
});
# since the security releases of 2026 (15.20, 17.12 and 18.6 have it) only
# the output plugins a DBA lists may be used
$node->append_conf('postgresql.conf',
	"output_plugin_libraries = 'pgoutput, test_decoding, storage'")
  if `postgres --describe-config` =~ /^output_plugin_libraries\t/m;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION storage');

# The events of a slot as "op id version flags [format] [data]" lines
# (data as its length and md5), decoded from the plugin's binary messages;
# commit messages as "C nevents".  Checks that every event of a
# transaction carries its commit's lsn and time.
sub raw_events
{
	my ($slot, @opts) = @_;
	my $opts = join('', map { ", '$_'" } @opts);
	my $hex = $node->safe_psql('postgres',
		"SELECT encode(data, 'hex') FROM pg_logical_slot_get_binary_changes('$slot', NULL, NULL$opts)");
	my (@out, @txn);
	for my $h (split /\n/, $hex)
	{
		my $b = pack('H*', $h);
		my $op = substr($b, 0, 1);
		if ($op eq 'C')
		{
			my ($lsn, $t, $n) = unpack('x Q> q> l>', $b);
			for my $e (@txn)
			{
				die "event lsn/time differ from its commit's"
				  unless $e->[0] == $lsn && $e->[1] == $t;
			}
			die "nevents $n, but " . scalar(@txn) . " events" unless $n == @txn;
			@txn = ();
			push @out, "C $n";
			next;
		}
		my ($lsn, $t, $version, $expires, $flags, $idlen) = unpack('x Q> q> q> q> C l>', $b);
		my $pos = 1 + 8 * 4 + 1 + 4;
		my $id = substr($b, $pos, $idlen);
		$pos += $idlen;
		my $line = "$op $id $version $flags";
		for my $bit (2, 4)
		{
			next unless $flags & $bit;
			my $len = unpack('l>', substr($b, $pos, 4));
			my $v = substr($b, $pos + 4, $len);
			$pos += 4 + $len;
			$line .= $bit == 2 ? " $v" : ($len > 64 ? " len=$len" : " $v");
		}
		die "trailing bytes in event $line" unless $pos == length($b);
		push @txn, [ $lsn, $t ];
		push @out, $line;
	}
	die "events after the last commit" if @txn;
	return join("\n", @out);
}

# storage_changes as "op id version" lines
sub changes
{
	my ($fn, $slot, $max) = @_;
	$max //= 1000;
	return $node->safe_psql('postgres',
		"SELECT op || ' ' || id || coalesce(' ' || version, '') || coalesce(' ' || format, '')
		   || coalesce(' ' || encode(data, 'escape'), '')
		   FROM $fn('$slot', $max)");
}

$node->safe_psql('postgres', q{
	SELECT pg_create_logical_replication_slot('raw', 'storage');
	SELECT pg_create_logical_replication_slot('raw_a', 'storage');
	SELECT pg_create_logical_replication_slot('raw_nv', 'storage');
	SELECT storage_watch_create('w');
	SELECT storage_watch_create('w_b', 'b');
});

# every kind of event, by the direct path and by the statements
$node->safe_psql('postgres', q{
	SELECT storage_save('a1', 'one', -1, NULL, 'txt');
	SELECT storage_save('a1', 'two', 1, now() + interval '1 hour');
	SELECT storage_touch('a1', now() + interval '2 hours');
	SELECT storage_delete('a1');
	SELECT storage_save('b1', 'x', -1, now() - interval '1 second');
	SELECT storage_delete('b1');
	SELECT storage_save('b2', 'y', -1, now() - interval '1 second');
	SELECT storage_save('b2', 'z', -1);
	SET storage.direct_writes = off;
	SELECT storage_save('a2', 'one');
	SELECT storage_touch('a2', now() + interval '2 hours');
	SELECT storage_delete('a2');
	SELECT storage_save('b3', 'x', -1, now() - interval '1 second');
	SELECT storage_delete('b3');
});
is(raw_events('raw'), join("\n",
	'P a1 1 6 txt one', 'C 1',
	'P a1 2 5 two', 'C 1',
	'T a1 2 9', 'C 1',
	'D a1 0 8', 'C 1',
	'P b1 1 5 x', 'C 1',
	'E b1 0 8', 'C 1',
	'P b2 1 5 y', 'C 1',
	'E b2 0 8', 'P b2 1 4 z', 'C 2',
	'P a2 1 4 one', 'C 1',
	'T a2 1 9', 'C 1',
	'D a2 0 8', 'C 1',
	'P b3 1 5 x', 'C 1',
	'E b3 0 8', 'C 1'),
	'put, touch, delete, expire (delete of an expired record, save over one), by both paths');

is(raw_events('raw_a', 'prefix', 'a'), join("\n",
	'P a1 1 6 txt one', 'C 1', 'P a1 2 5 two', 'C 1', 'T a1 2 9', 'C 1', 'D a1 0 8', 'C 1',
	'P a2 1 4 one', 'C 1', 'T a2 1 9', 'C 1', 'D a2 0 8', 'C 1'),
	'the prefix option: only ids starting with it, no empty transactions');

is(raw_events('raw_nv', 'values', 'false'), join("\n",
	'P a1 1 8', 'C 1', 'P a1 2 9', 'C 1', 'T a1 2 9', 'C 1', 'D a1 0 8', 'C 1',
	'P b1 1 9', 'C 1', 'E b1 0 8', 'C 1', 'P b2 1 9', 'C 1', 'E b2 0 8', 'P b2 1 8', 'C 2',
	'P a2 1 8', 'C 1', 'T a2 1 9', 'C 1', 'D a2 0 8', 'C 1', 'P b3 1 9', 'C 1', 'E b3 0 8', 'C 1'),
	'values=false: no format and data');

my ($rc, $out, $err) = $node->psql('postgres',
	q{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('raw', NULL, NULL, 'colour', 'red')});
like($err, qr/ERROR:  unknown option "colour" of the storage output plugin/, 'an unknown option is refused');
($rc, $out, $err) = $node->psql('postgres',
	q{SELECT count(*) FROM pg_logical_slot_peek_binary_changes('raw', NULL, NULL, 'values', 'maybe')});
like($err, qr/ERROR:  option "values" of the storage output plugin must be true or false/,
	'values must be true or false');

is(changes('storage_changes_peek', 'w_b'), join("\n",
	'put b1 1 x', 'expire b1', 'put b2 1 y', 'expire b2', 'put b2 1 z', 'put b3 1 x', 'expire b3'),
	'storage_changes_peek with the watch\'s prefix');
is(changes('storage_changes', 'w_b', 2), join("\n",
	'put b1 1 x', 'expire b1'),
	'storage_changes consumes up to max_events');
is(changes('storage_changes', 'w_b', 2), join("\n",
	'put b2 1 y', 'expire b2', 'put b2 1 z'),
	'storage_changes finishes a transaction beyond max_events');
is(changes('storage_changes', 'w_b'), join("\n", 'put b3 1 x', 'expire b3'),
	'storage_changes goes on where it stopped');
is(changes('storage_changes', 'w_b'), '', 'nothing left');

# rollback emits nothing; a subtransaction rolled back neither
$node->safe_psql('postgres', q{
	SELECT storage_changes('w', 100000);
	BEGIN; SELECT storage_save('r1', 'x'); ROLLBACK;
	BEGIN; SELECT storage_save('r2', 'x'); SAVEPOINT s; SELECT storage_save('r3', 'x');
	ROLLBACK TO s; SELECT storage_save('r4', 'x'); COMMIT;
});
is(changes('storage_changes', 'w'), "put r2 1 x\nput r4 1 x",
	'rolled back transactions and subtransactions emit nothing');

# a TOASTed 1 MB value arrives whole; a touch of it carries no value
$node->safe_psql('postgres', q{
	CREATE TABLE big AS SELECT decode(string_agg(md5(i::text || random()::text), ''), 'hex') AS v
	  FROM generate_series(1, 65536) AS i;
	SELECT storage_save('big', v, -1, NULL, 'bin') FROM big;
	SELECT storage_touch('big', now() + interval '1 hour');
	SET storage.direct_writes = off;
	SELECT storage_touch('big', now() + interval '2 hours');
	UPDATE storage_records SET expires_at = NULL, version = version + 1 WHERE id = 'big';
});
is($node->safe_psql('postgres', q{
	SELECT c.op, c.version, c.format, length(c.data), c.data = b.v
	  FROM storage_changes('w') AS c LEFT JOIN big AS b ON true}),
	"put|1|bin|1048576|t\ntouch|1|||\ntouch|1|||\nput|2|||",
	'a 1 MB TOASTed value arrives whole; touches and an SQL update that leaves it in TOAST carry none');

# save_many and purge batches in commit order
$node->safe_psql('postgres', q{
	SELECT storage_save_many(ARRAY['m3', 'm1', 'm2'], ARRAY['3', '1', '2']::bytea[],
	                         NULL, ARRAY[now() - interval '1 s', NULL, now() - interval '1 s']);
	SELECT storage_save('m4', 'x', -1, now() - interval '1 s');
	SELECT storage_purge_expired();
	SELECT storage_save_many(ARRAY['m5', 'm6'], ARRAY['5', '6']::bytea[],
	                         NULL, ARRAY[now() - interval '1 s', now() - interval '1 s']);
	SET storage.direct_writes = off;
	SELECT storage_purge_expired();
	SELECT storage_save('m7', 'x', -1, now() - interval '1 s');
	SELECT storage_delete_many(ARRAY['m7', 'm1']);
});
is(changes('storage_changes', 'w'), join("\n",
	'put m1 1 1', 'put m2 1 2', 'put m3 1 3', 'put m4 1 x',
	'expire m2', 'expire m3', 'expire m4',
	'put m5 1 5', 'put m6 1 6', 'expire m5', 'expire m6',
	'put m7 1 x', 'delete m1', 'expire m7'),
	'save_many, the purge (direct and statement), delete_many in commit order');

# buckets and locks
$node->safe_psql('postgres', q{
	SELECT storage_upsert_val('{bk}', 'k1', 'v', '1 second'::interval);
	SELECT storage_upsert_val('{bk}', 'k2', 'v');
	SELECT pg_sleep(1.1);
	SELECT storage_delete_bucket('{}', 'bk');
	SELECT storage_extend_lock('t', storage_acquire_lock('t', '1 hour'), '2 hours');
});
is(changes('storage_changes', 'w'), join("\n",
	'put bk/k1 1 v', 'put bk/k2 1 v', 'expire bk/k1', 'delete bk/k2',
	'put .locks/t 1 ', 'put .locks/t 2 ', 'touch .locks/t 2'),
	'bucket deletes and lock extension');

# the expiry worker's purge
$node->safe_psql('postgres', q{
	SELECT storage_changes('w', 100000);
	SELECT storage_save('wk' || i, 'x', -1, now() - interval '1 s') FROM generate_series(1, 3) AS i;
	ALTER SYSTEM SET storage.purge_interval = '100ms';
	SELECT pg_reload_conf();
});
$node->poll_query_until('postgres', q{SELECT count(*) = 0 FROM storage_records WHERE id LIKE 'wk%'})
  or die 'the worker did not purge';
$node->safe_psql('postgres', q{ALTER SYSTEM RESET storage.purge_interval; SELECT pg_reload_conf()});
is(changes('storage_changes', 'w'), "put wk1 1 x\nput wk2 1 x\nput wk3 1 x\nexpire wk1\nexpire wk2\nexpire wk3",
	'the expiry worker\'s purge shows as expire events');

# A position after every commit so far: a WAL record after them first, as
# a commit may end exactly at a page boundary, before the page header that
# pg_current_wal_lsn() would count.
sub end_position
{
	$node->safe_psql('postgres', q{SELECT pg_logical_emit_message(false, 'test', 'end')});
	return $node->safe_psql('postgres', q{SELECT pg_current_wal_lsn()});
}

# pg_recvlogical: the same events through a replication connection
sub recvlogical
{
	my ($slot, $endpos, @opts) = @_;
	my $file = $node->basedir . "/$slot.bin";
	$node->command_ok([ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', $slot,
		'--start', '--no-loop', '-E', $endpos, '-f', $file, map { ('-o', $_) } @opts ],
		"pg_recvlogical from $slot");
	my $b = slurp_file($file);
	my @out;
	my $pos = 0;
	# each message is followed by a newline
	while ($pos < length($b))
	{
		my $op = substr($b, $pos, 1);
		if ($op eq 'C')
		{
			push @out, 'C ' . unpack('l>', substr($b, $pos + 17, 4));
			$pos += 22;
			next;
		}
		my ($flags, $idlen) = unpack('C l>', substr($b, $pos + 33, 5));
		my $line = "$op " . substr($b, $pos + 38, $idlen);
		$pos += 38 + $idlen;
		for my $bit (2, 4)
		{
			next unless $flags & $bit;
			my $len = unpack('l>', substr($b, $pos, 4));
			$line .= ' ' . ($len > 64 ? "len=$len" : substr($b, $pos + 4, $len));
			$pos += 4 + $len;
		}
		die "no newline after $line" unless substr($b, $pos, 1) eq "\n";
		$pos++;
		push @out, $line;
	}
	return join("\n", @out);
}
$node->safe_psql('postgres', q{SELECT pg_create_logical_replication_slot('recv', 'storage')});
$node->safe_psql('postgres', q{
	SELECT storage_save('q1', 'x', -1, NULL, 'f');
	SELECT storage_touch('q1', now() + interval '1 hour');
	SELECT storage_save('zz', 'x');
	SELECT storage_save('q2', 'y', -1, now() - interval '1 s');
	SELECT storage_purge_expired();
	SELECT storage_delete('q1');
	SELECT storage_save('big2', v) FROM big;
});
my $endpos = end_position();
is(recvlogical('recv', $endpos, 'prefix=q'), join("\n",
	'P q1 f x', 'C 1', 'T q1', 'C 1', 'P q2 y', 'C 1', 'E q2', 'C 1', 'D q1', 'C 1'),
	'pg_recvlogical with a prefix: every kind of event, each transaction with its commit');
$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('recv')});

# Large transactions: a save_many of 10,000 records and a purge batch of
# 10,000, decoded with logical_decoding_work_mem at its minimum: PostgreSQL
# spills them to disk, and every event arrives, in commit order.
$node->safe_psql('postgres', q{
	ALTER SYSTEM SET logical_decoding_work_mem = '64kB';
	SELECT pg_reload_conf();
	SELECT storage_watch_create('wmem', 'mem/');
	SELECT pg_create_logical_replication_slot('recvmem', 'storage');
});
$node->safe_psql('postgres', q{
	SELECT storage_save_many(array_agg('mem/' || lpad(i::text, 5, '0')), array_agg('v'::bytea),
	                         NULL, array_agg(now() - interval '1 s'))
	  FROM generate_series(1, 10000) AS i;
	SET storage.purge_batch_size = 10000;
	SELECT storage_purge_expired();
});
$endpos = end_position();
my $big_txn = q{
	WITH c AS (SELECT row_number() OVER () AS n, * FROM storage_changes('wmem', 1))
	SELECT op, count(*), count(DISTINCT id), count(DISTINCT lsn),
	       bool_and(id = 'mem/' || lpad(n::text, 5, '0'))
	  FROM c GROUP BY op};
is($node->safe_psql('postgres', $big_txn), 'put|10000|10000|1|t',
	'storage_changes(max_events => 1): the save_many of 10,000 records whole, in id order');
is($node->safe_psql('postgres', $big_txn), 'expire|10000|10000|1|t',
	'then the purge batch of 10,000 whole');
my $recv = recvlogical('recvmem', $endpos, 'values=false');
my @lines = split /\n/, $recv;
is(scalar(@lines), 20002, 'pg_recvlogical: 20,000 events and 2 commits');
is($lines[10000] . ',' . $lines[20001], 'C 10000,C 10000', 'each transaction whole');
$node->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_replication_slots
	 WHERE slot_name IN ('wmem', 'recvmem') AND spill_txns > 0})
  or diag('pg_stat_replication_slots: ' . $node->safe_psql('postgres', 'SELECT * FROM pg_stat_replication_slots'));
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_replication_slots
	 WHERE slot_name IN ('wmem', 'recvmem') AND spill_txns > 0 AND spill_bytes > 0}), '2',
	'both were spilled to disk (logical_decoding_work_mem = 64kB), not held in memory');
$node->safe_psql('postgres', q{
	ALTER SYSTEM RESET logical_decoding_work_mem;
	SELECT pg_reload_conf();
	SELECT storage_watch_drop('wmem');
	SELECT pg_drop_replication_slot('recvmem');
});

# privileges: a role granted the functions uses its own watches, and no
# other slot
$node->safe_psql('postgres', q{
	CREATE ROLE app LOGIN;
	CREATE ROLE other LOGIN;
	GRANT EXECUTE ON FUNCTION storage_watch_create(name, text), storage_changes(name, integer),
	      storage_changes_peek(name, integer), storage_watch_drop(name)
	      TO app, other;
	SELECT storage_changes('w', 100000);
});
my $app = sub {
	my ($role, $sql) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', $sql,
		extra_params => [ '-U', $role ]);
	return $rc == 0 ? $out : $err;
};
is($app->('app', q{SELECT storage_watch_create('app_w', 'app/') IS NOT NULL}), 't',
	'a role without REPLICATION creates a watch');
$node->safe_psql('postgres', q{SELECT storage_save('app/1', 'x'); SELECT storage_save('zzz', 'x')});
is($app->('app', q{SELECT op || ' ' || id FROM storage_changes_peek('app_w')}), 'put app/1',
	'and peeks at it');
is($app->('app', q{SELECT op || ' ' || id FROM storage_changes('app_w')}), 'put app/1',
	'and consumes it');
like($app->('app', q{SELECT * FROM storage_changes('w')}),
	qr/ERROR:  permission denied for storage watch "w"/, 'but not a watch of another role');
like($app->('other', q{SELECT * FROM storage_changes_peek('app_w')}),
	qr/ERROR:  permission denied for storage watch "app_w"/, 'nor can another role read it');
like($app->('other', q{SELECT storage_watch_drop('app_w')}),
	qr/ERROR:  permission denied for storage watch "app_w"/, 'or drop it');
like($app->('app', q{SELECT * FROM storage_changes('raw')}),
	qr/ERROR:  storage watch "raw" does not exist/, 'a slot not made by storage_watch_create is not a watch');
like($app->('app', q{SELECT * FROM pg_logical_slot_peek_binary_changes('raw', NULL, NULL)}),
	qr/ERROR:  (permission denied|must be superuser or replication role)/, 'and cannot be read directly');
like($app->('app', q{SELECT * FROM storage_watch_status}),
	qr/ERROR:  permission denied/, 'the status view is for monitoring roles');
$node->safe_psql('postgres', q{
	SELECT pg_drop_replication_slot('app_w');
	SELECT pg_create_logical_replication_slot('app_w', 'pgoutput');
});
like($app->('app', q{SELECT * FROM storage_changes('app_w')}),
	qr/ERROR:  replication slot "app_w" is not a storage watch of this database/,
	'a slot of another plugin under a watch\'s name is refused');
$node->safe_psql('postgres', q{SELECT pg_drop_replication_slot('app_w')});
like($app->('app', q{SELECT * FROM storage_changes('app_w')}),
	qr/ERROR:  replication slot "app_w" of storage watch "app_w" does not exist/,
	'a watch whose slot is gone says so');
$app->('app', q{SELECT storage_watch_drop('app_w')});
is($node->safe_psql('postgres', q{SELECT count(*) FROM storage_watches WHERE slot = 'app_w'}), '0',
	'storage_watch_drop forgets a watch whose slot is gone');

# the lag view: an abandoned watch retains WAL, a consumed one does not
$node->safe_psql('postgres', q{
	CREATE ROLE mon LOGIN IN ROLE pg_monitor;
	SELECT storage_changes('w', 100000);
	SELECT count(storage_save('lag' || i, 'x')) FROM generate_series(1, 1000) AS i;
	SELECT storage_changes('w', 100000);
});
is($app->('mon', q{
	SELECT slot, prefix, owner, active, lag_bytes < 100000, retained_bytes > 0,
	       lag_seconds >= 0, wal_status, last_consumed_at IS NOT NULL
	  FROM storage_watch_status}),
	"w||postgres|f|t|t|t|reserved|t\nw_b|b|postgres|f|f|t|t|reserved|t",
	'storage_watch_status: lag and WAL retained per watch, for pg_monitor');
# while a replication connection reads a watch
my $recv_h = IPC::Run::start([ 'pg_recvlogical', '-d', $node->connstr('postgres'), '-S', 'w',
	'--start', '--no-loop', '-f', '/dev/null' ]);
$node->poll_query_until('postgres', q{SELECT active FROM storage_watch_status WHERE slot = 'w'})
  or die 'pg_recvlogical did not start';
$node->safe_psql('postgres', q{SELECT storage_save('lag-active', 'x')});
is($node->safe_psql('postgres', q{
	SELECT active, lag_seconds >= 0, lag_bytes >= 0 FROM storage_watch_status WHERE slot = 'w'}),
	't|t|t', 'storage_watch_status: an active watch with its consumer\'s lag');
($rc, $out, $err) = $node->psql('postgres', q{SELECT count(*) FROM storage_changes('w')});
like($err, qr/ERROR:  replication slot "w" is active for PID/,
	'storage_changes refuses a watch a replication connection reads');
$recv_h->kill_kill;
$recv_h->finish;

is($node->safe_psql('postgres', q{SELECT FROM storage_watch_drop('w_b');
	SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'w_b'}), '0',
	'storage_watch_drop drops the slot');

# The plugin finds the records table under each transaction's snapshot: a
# DROP and CREATE EXTENSION in the decoded history give it a new OID, and
# the changes of both tables are reported.
$node->safe_psql('postgres', q{
	SELECT pg_create_logical_replication_slot('reinc', 'storage');
	SELECT storage_save('x1', 'x');
	DROP EXTENSION storage CASCADE;
	CREATE TABLE storage_records (id text, version bigint, data bytea);
	INSERT INTO storage_records VALUES ('not-the-extension''s', 1, 'x');
	DROP TABLE storage_records;
	CREATE EXTENSION storage;
	SELECT storage_save('x2', 'y');
});
is(raw_events('reinc'), "P x1 1 4 x\nC 1\nP x2 1 4 y\nC 1",
	'changes before a DROP EXTENSION and after the CREATE EXTENSION, nothing of another table of that name');

done_testing();
