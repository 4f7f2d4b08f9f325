# The expiry worker: purges every database with the extension, follows
# reloads, picks up CREATE EXTENSION, stops quietly after DROP EXTENSION,
# never blocks DROP DATABASE or CREATE DATABASE ... TEMPLATE, survives
# SIGKILL without losing records, and never loses a record saved while it
# purges.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('worker');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'storage'
storage.purge_interval = '500ms'
restart_after_crash = on
});
$node->start;

sub expired_left
{
	my ($db) = @_;
	return $node->safe_psql($db, 'SELECT count(*) FROM storage_records WHERE expires_at <= now()');
}

# CREATE DATABASE, tried up to three times; each failure is reported with
# its message, and the third stops the test
sub create_db
{
	my ($sql) = @_;
	for my $try (1 .. 3)
	{
		my ($ret, $out, $err) = $node->psql('postgres', $sql);
		return if $ret == 0;
		diag("try $try of '$sql' failed: $err");
		sleep 1;
	}
	BAIL_OUT("could not run $sql");
}

sub fill
{
	my ($db, $prefix, $expired, $live) = @_;
	$node->safe_psql($db, qq{
		SELECT count(storage_save('$prefix:e' || i, 'x', -1, now() - interval '1 minute'))
		  FROM generate_series(1, $expired) AS i;
		SELECT count(storage_save('$prefix:l' || i, 'x', -1, now() + interval '1 hour'))
		  FROM generate_series(1, $live) AS i;
	});
}

is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'storage expiry launcher'
	    AND application_name = 'storage expiry launcher'}),
	'1', 'the launcher shows in pg_stat_activity with a clear backend_type');

# two databases, purged within two intervals, live records untouched
for my $db ('db1', 'db2')
{
	create_db("CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION storage');
	fill($db, $db, 3000, 100);
}
for my $db ('db1', 'db2')
{
	ok($node->poll_query_until($db,
		'SELECT count(*) = 0 FROM storage_records WHERE expires_at <= now()'),
		"expired records in $db are purged");
	is($node->safe_psql($db, 'SELECT count(*) FROM storage_list(\'\')'), '100',
		"live records in $db are untouched");
}
my $status = $node->safe_psql('db1',
	q{SELECT worker_state IN ('idle', 'purging'), rows_purged_total >= 3000, last_error IS NULL,
	         expired_records, live_records FROM storage_status});
is($status, 't|t|t|0|100', 'storage_status shows the purge');

# a reload of storage.purge_interval takes effect
$node->append_conf('postgresql.conf', "storage.purge_interval = '1h'");
$node->reload;
sleep 2;	# let the launcher finish the round it may be in
fill('db1', 'reload', 200, 0);
sleep 3;
is(expired_left('db1'), '200', 'with a one-hour interval nothing is purged');
$node->append_conf('postgresql.conf', "storage.purge_interval = '500ms'");
$node->reload;
# the launcher sleeps until its latch is set or the old timeout passes; a
# reload sets the latch through SIGHUP
ok($node->poll_query_until('db1',
	'SELECT count(*) = 0 FROM storage_records WHERE expires_at <= now()'),
	'after reloading a short interval the backlog is purged');

# storage.autopurge = off stops purging; on resumes it
$node->append_conf('postgresql.conf', "storage.autopurge = off");
$node->reload;
sleep 2;
fill('db1', 'off', 50, 0);
sleep 2;
is(expired_left('db1'), '50', 'storage.autopurge = off stops purging');
like($node->safe_psql('db1', 'SELECT worker_state FROM storage_status'),
	qr/^disabled/, 'storage_status says purging is disabled');
$node->append_conf('postgresql.conf', "storage.autopurge = on");
$node->reload;
ok($node->poll_query_until('db1',
	'SELECT count(*) = 0 FROM storage_records WHERE expires_at <= now()'),
	'storage.autopurge = on resumes purging');

# CREATE EXTENSION later is picked up; DROP EXTENSION stops quietly
create_db('CREATE DATABASE db3');
$node->safe_psql('db3', 'CREATE EXTENSION storage');
fill('db3', 'db3', 500, 0);
ok($node->poll_query_until('db3',
	'SELECT count(*) = 0 FROM storage_records WHERE expires_at <= now()'),
	'a database where the extension is created later is purged');
my $log_offset = -s $node->logfile;
$node->safe_psql('db3', 'DROP EXTENSION storage');
sleep 3;
my $log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/ERROR|exited with exit code/, 'after DROP EXTENSION the worker stays quiet');

# DROP DATABASE and CREATE DATABASE ... TEMPLATE of served databases work
$node->safe_psql('db2', 'SELECT storage_save(\'keep\', \'x\')');
$node->safe_psql('postgres', 'CREATE DATABASE copy TEMPLATE db2');
is($node->safe_psql('copy', "SELECT data FROM storage_fetch('keep')"), '\x78',
	'CREATE DATABASE ... TEMPLATE a served database succeeds');
for my $i (1 .. 3)
{
	$node->safe_psql('postgres', 'DROP DATABASE copy');
	$node->safe_psql('postgres', 'CREATE DATABASE copy TEMPLATE db2');
}
$node->safe_psql('postgres', 'DROP DATABASE db2');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_database WHERE datname = 'db2'"),
	'0', 'DROP DATABASE of a served database succeeds');
$log_offset = -s $node->logfile;
sleep 2;
$log = slurp_file($node->logfile, $log_offset);
unlike($log, qr/ERROR|FATAL|exited with exit code/, 'no errors after the database is gone');

# a save racing with the purge of the same expired ids never loses the new
# record: the worker purges every 100 ms while expired ids are recreated
$node->append_conf('postgresql.conf', "storage.purge_interval = '100ms'");
$node->reload;
my $purged_before = $node->safe_psql('db1', 'SELECT rows_purged_total FROM storage_status');
my $all_saved = 1;
for my $round (1 .. 20)
{
	$node->safe_psql('db1', q{
		SELECT count(storage_save('race:' || i, 'old', -1, now() - interval '1 second'))
		  FROM generate_series(1, 2000) AS i;
		SELECT pg_sleep(0.3)});
	my $saved = $node->safe_psql('db1', qq{
		SELECT count(storage_save('race:' || i, 'new$round', 0, now() + interval '1 hour'))
		  FROM generate_series(1, 2000) AS i});
	$all_saved = 0 if $saved ne '2000';
	$node->safe_psql('db1', q{SELECT storage_delete_many(ARRAY(SELECT 'race:' || i FROM generate_series(1, 2000) AS i))})
	  if $round < 20;
}
ok($all_saved, 'every create over an expired record succeeded while the worker purged');
cmp_ok($node->safe_psql('db1', 'SELECT rows_purged_total FROM storage_status'),
	'>', $purged_before, 'the worker really purged during the race');
is($node->safe_psql('db1',
	q{SELECT count(*) FROM storage_list('race:') WHERE data = 'new20' AND version = 1}),
	'2000', 'no record saved during the purge was lost');
$node->append_conf('postgresql.conf', "storage.purge_interval = '500ms'");
$node->reload;

# SIGKILL of the launcher: the postmaster restarts, nothing is lost
my $before = $node->safe_psql('db1',
	q{SELECT count(*), md5(string_agg(id || version || encode(data, 'hex'), ',' ORDER BY id))
	    FROM storage_records WHERE expires_at IS NULL OR expires_at > now()});
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'storage expiry launcher'});
kill 'KILL', $pid;
ok($node->poll_query_until('postgres',
	qq{SELECT count(*) = 1 FROM pg_stat_activity
	    WHERE backend_type = 'storage expiry launcher' AND pid <> $pid}),
	'the launcher is running again after SIGKILL');
is($node->safe_psql('db1',
	q{SELECT count(*), md5(string_agg(id || version || encode(data, 'hex'), ',' ORDER BY id))
	    FROM storage_records WHERE expires_at IS NULL OR expires_at > now()}),
	$before, 'no record lost or changed by the crash');
fill('db1', 'after', 300, 0);
ok($node->poll_query_until('db1',
	'SELECT count(*) = 0 FROM storage_records WHERE expires_at <= now()'),
	'purging goes on after the restart');

# a busy application slows the worker down (storage.purge_busy_rate) but
# never stops it: a session runs a query throughout while records expire
my ($ret, $out, $err) = $node->psql('postgres', 'ALTER SYSTEM SET storage.purge_busy_rate = -1');
like($err, qr/-1 is outside the valid range/, 'a negative storage.purge_busy_rate is refused');
$node->append_conf('postgresql.conf', "storage.purge_busy_rate = 5000");
$node->reload;
my $busy = $node->background_psql('postgres');
$busy->query_until(qr/busy/, q{\echo busy
SELECT pg_sleep(120);
});
fill('db1', 'busy', 12000, 0);
ok($node->poll_query_until('db1',
	'SELECT count(*) = 0 FROM storage_records WHERE expires_at <= now()'),
	'expired records are purged while another session is running a query');
is($node->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120);' AND state = 'active'}),
	'1', 'the other session was running a query all along');
$node->safe_psql('postgres',
	q{SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120);'});
# the cancelled psql stops on the error by itself (ON_ERROR_STOP)
eval { $busy->quit; };

$node->stop;
done_testing();
