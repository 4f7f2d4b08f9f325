# Hot standby: no purge runs there, the primary's purge replicates, fetch
# works on the standby; after promotion the new primary purges.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $primary = PostgreSQL::Test::Cluster->new('primary');
$primary->init(allows_streaming => 1);
$primary->append_conf('postgresql.conf', q{
shared_preload_libraries = 'storage'
storage.purge_interval = '500ms'
});
$primary->start;
$primary->safe_psql('postgres', 'CREATE EXTENSION storage');
$primary->safe_psql('postgres', q{SELECT storage_save('live', 'hello')});

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
$standby->start;

is($standby->safe_psql('postgres',
	q{SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'storage expiry%'}),
	'0', 'no expiry worker runs on the standby');
like($standby->safe_psql('postgres', 'SELECT worker_state FROM storage_status'),
	qr/^not running/, 'storage_status on the standby says so');

# stop the primary's purging so that the standby's own behaviour shows
$primary->append_conf('postgresql.conf', 'storage.autopurge = off');
$primary->reload;
sleep 2;
$primary->safe_psql('postgres', q{
	SELECT count(storage_save('e' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 1000) AS i});
$primary->wait_for_catchup($standby);
sleep 2;
is($standby->safe_psql('postgres', 'SELECT count(*) FROM storage_records'),
	'1001', 'the standby purges nothing itself');
is($standby->safe_psql('postgres', q{SELECT data FROM storage_fetch('live')}),
	'\x68656c6c6f', 'storage_fetch works on the standby');
is($standby->safe_psql('postgres', q{SELECT count(*) FROM storage_fetch('e1')}),
	'0', 'expired records are invisible on the standby too');

# the primary's purge replicates
$primary->append_conf('postgresql.conf', 'storage.autopurge = on');
$primary->reload;
ok($primary->poll_query_until('postgres', 'SELECT count(*) = 1 FROM storage_records'),
	'the primary purges');
# the worker commits asynchronously (a lost purge is redone), so its commit
# reaches the standby with the WAL writer's next flush, not at once
ok($standby->poll_query_until('postgres', 'SELECT count(*) = 1 FROM storage_records'),
	'the purge replicated to the standby');

# promotion: the new primary starts purging
$primary->stop;
$standby->promote;
ok($standby->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'storage expiry launcher'}),
	'the launcher starts after promotion');
$standby->safe_psql('postgres', q{
	SELECT count(storage_save('p' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 500) AS i});
ok($standby->poll_query_until('postgres', 'SELECT count(*) = 1 FROM storage_records'),
	'the promoted standby purges');
is($standby->safe_psql('postgres', q{SELECT data FROM storage_fetch('live')}),
	'\x68656c6c6f', 'the live record survived everything');

$standby->stop;
done_testing();
