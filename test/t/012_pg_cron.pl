# pg_cron instead of the worker: a schedule calling storage_purge_expired()
# every minute, with the real pg_cron from Debian (postgresql-NN-cron).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Only the harness may skip this test, and it says why (test/cassert.sh:
# no pg_cron is built for the assertion-enabled server).
plan skip_all => $ENV{STORAGE_TEST_SKIP_MODULES}
  if $ENV{STORAGE_TEST_SKIP_MODULES};

my $node = PostgreSQL::Test::Cluster->new('cron');
$node->init;
# pg_cron's own instructions: preload it and name its database; background
# workers instead of libpq connections need no password or TCP set-up.
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pg_cron'
cron.database_name = 'postgres'
cron.use_background_workers = on
max_worker_processes = 20
});
$node->start;

my ($stdout, $stderr);
$node->psql('postgres', 'CREATE EXTENSION storage', stderr => \$stderr);
like($stderr, qr/automatic expiry is off/,
	'without the preloaded library CREATE EXTENSION says expiry is not automatic');

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_cron;
	SELECT count(storage_save('e' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 1000) AS i;
	SELECT storage_save('live', 'x');
	SELECT cron.schedule('storage-purge', '* * * * *', 'SELECT storage_purge_expired()');
});
is($node->safe_psql('postgres', 'SELECT count(*) FROM storage_records'), '1001',
	'nothing purges before the schedule runs');

# pg_cron runs at the start of each minute: wait up to two minutes
$node->safe_psql('postgres', 'SET statement_timeout = 0');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 1 FROM storage_records', 't'),
	'the pg_cron schedule purged the expired records');
is($node->safe_psql('postgres',
	q{SELECT status FROM cron.job_run_details ORDER BY runid DESC LIMIT 1}),
	'succeeded', 'pg_cron reports the run as succeeded');
is($node->safe_psql('postgres', q{SELECT count(*) FROM storage_fetch('live')}), '1',
	'the live record is still there');

$node->stop;
done_testing();
