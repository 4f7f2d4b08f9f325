# The expiry worker and rows that cannot be deleted: expired rows that a
# foreign key refers to or that a trigger refuses are skipped (counted, the
# last reason shown in storage_status) and the rest is purged, also behind
# them in the purge index; a database that keeps failing (its records table
# renamed) is reported in storage_status, visited with growing intervals and
# logged a few times an hour at most; the status slots of dropped databases
# are taken by new ones.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('purge_skip');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'storage'
storage.purge_interval = '100ms'
storage.purge_batch_size = 100
storage.status_slots = 4
});
$node->start;

sub create_db
{
	my ($db) = @_;
	for my $try (1 .. 3)
	{
		my ($ret, $out, $err) = $node->psql('postgres', "CREATE DATABASE $db");
		if ($ret == 0)
		{
			$node->safe_psql($db, 'CREATE EXTENSION storage');
			return;
		}
		diag("try $try of CREATE DATABASE $db failed: $err");
		sleep 1;
	}
	BAIL_OUT("could not create database $db");
}

# the log lines of the server since offset that match re
sub log_count
{
	my ($offset, $re) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @lines = grep { /$re/ } split /\n/, $log;
	return scalar @lines;
}

# ---- undeletable rows: a foreign key, a trigger that raises
create_db('db1');
my $offset = -s $node->logfile;
# one transaction: the worker (every 100 ms) must not purge the rows before
# the foreign keys and the trigger that keep them exist
$node->safe_psql('db1', q{
	BEGIN;
	SELECT storage_save('ref:' || i, 'x', -1, now() - interval '2 hours')
	  FROM generate_series(1, 150) AS i;
	CREATE TABLE refs (id text REFERENCES storage_records (id));
	INSERT INTO refs SELECT 'ref:' || i FROM generate_series(1, 140) AS i;
	-- a deferred check would come at commit, after any batch
	CREATE TABLE refs_later (id text REFERENCES storage_records (id)
	    DEFERRABLE INITIALLY DEFERRED);
	INSERT INTO refs_later SELECT 'ref:' || i FROM generate_series(141, 150) AS i;
	CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
	    IF OLD.id LIKE 'keep:%' THEN
	        RAISE EXCEPTION 'record % is kept by the application', OLD.id;
	    END IF;
	    RETURN OLD;
	END $$;
	CREATE TRIGGER refuse BEFORE DELETE ON storage_records
	    FOR EACH ROW EXECUTE FUNCTION refuse();
	SELECT count(storage_save('keep:' || i, 'x', -1, now() - interval '90 minutes'))
	  FROM generate_series(1, 150) AS i;
	SELECT count(storage_save('dead:' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 2000) AS i;
	SELECT count(storage_save('live:' || i, 'x', -1, now() + interval '1 hour'))
	  FROM generate_series(1, 10) AS i;
	COMMIT;
});
ok($node->poll_query_until('db1',
	q{SELECT count(*) = 0 FROM storage_records WHERE id LIKE 'dead:%'}),
	'the worker purges the expired rows behind 300 undeletable ones');
is($node->safe_psql('db1',
	q{SELECT count(*) FILTER (WHERE id LIKE 'ref:%'), count(*) FILTER (WHERE id LIKE 'keep:%'),
	         count(*) FILTER (WHERE id LIKE 'live:%') FROM storage_records}),
	'150|150|10', 'referenced, refused and live rows stay');
# several visits with the same 300 rows skipped
ok($node->poll_query_until('db1',
	q{SELECT rows_skipped_total >= 5 * 300 FROM storage_status}),
	'the skipped rows are counted on every visit');
# once a visit has ended (last_purge_end is NULL during one)
ok($node->poll_query_until('db1',
	q{SELECT rows_skipped_last, last_error IS NULL, consecutive_failures, backoff_until IS NULL
	    FROM storage_status WHERE last_purge_end IS NOT NULL},
	'300|t|0|t'),
	'storage_status: 300 rows skipped by the last visit, no error, no back-off');
like($node->safe_psql('db1', 'SELECT last_skip_reason FROM storage_status'),
	qr/^(23503: .*refs|P0001: record keep:\d+ is kept by the application)/,
	'storage_status shows the last reason with its SQLSTATE');
my $skip_lines = log_count($offset, qr/skipped \d+ expired records|ERROR:/);
cmp_ok($skip_lines, '>=', 1, 'skipped rows are logged');
cmp_ok($skip_lines, '<=', 3, 'and logged at most three times however many visits');
is(log_count($offset, qr/exited with exit code/), 0, 'the worker never fails');

# storage_purge_expired() does the same as the worker, and says what it skipped
$node->safe_psql('db1', q{ALTER SYSTEM SET storage.autopurge = off; SELECT pg_reload_conf()});
ok($node->poll_query_until('db1', q{SELECT worker_state LIKE 'disabled%' FROM storage_status}),
	'the worker is off');
sleep 1;	# let the launcher see the reload; then no visit is in progress
ok($node->poll_query_until('db1',
	q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'storage expiry worker'}),
	'no purge worker is running');
# a caller's transaction checks deferred constraints at its commit: the
# README says so; here the rows are referred to by an immediate key instead
$node->safe_psql('db1', q{
	INSERT INTO refs SELECT id FROM refs_later;
	DROP TABLE refs_later;
	SELECT count(storage_save('dead:' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 500) AS i});
my ($ret, $out, $err) = $node->psql('db1', 'SELECT storage_purge_expired()');
is($out, '500', 'storage_purge_expired() deletes the 500 deletable rows');
like($err, qr/NOTICE:  skipped 300 expired records that could not be deleted/,
	'and reports the 300 skipped ones in a NOTICE');
$node->safe_psql('db1', q{ALTER SYSTEM RESET storage.autopurge; SELECT pg_reload_conf()});

# ---- a renamed records table: reported, backed off, logged a few times
create_db('db2');
$node->safe_psql('db2', q{
	SELECT count(storage_save('dead:' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 50) AS i});
ok($node->poll_query_until('db2',
	q{SELECT expired_records = 0 AND last_purge_end IS NOT NULL FROM storage_status}),
	'db2 is purged');
$offset = -s $node->logfile;
$node->safe_psql('db2', q{
	BEGIN;
	SELECT count(storage_save('dead:' || i, 'x', -1, now() - interval '1 minute'))
	  FROM generate_series(1, 50) AS i;
	ALTER TABLE storage_records RENAME TO records_elsewhere;
	COMMIT});
ok($node->poll_query_until('db2',
	q{SELECT consecutive_failures >= 5 FROM storage_status}),
	'the visits of a database without its records table fail');
my $st = $node->safe_psql('db2',
	q{SELECT expired_records IS NULL, backoff_until > now(), last_error FROM storage_status});
like($st, qr/^t\|t\|.*storage_records.*missing/,
	'storage_status reports the missing table and the back-off');
like($node->safe_psql('db2', 'SELECT worker_state FROM storage_status'),
	qr/^backing off/, 'the worker state says it backs off');
is($node->safe_psql('db2', 'SELECT count(*) FROM records_elsewhere'), '50',
	'nothing was purged from the renamed table');
my $fail_lines = log_count($offset, qr/could not purge expired records in database "db2"/);
cmp_ok($fail_lines, '>=', 1, 'the failure is logged');
cmp_ok($fail_lines, '<=', 3, 'at most three times, whatever the number of failed visits');
cmp_ok($node->safe_psql('db2', 'SELECT log_lines_suppressed FROM storage_status'), '>=', 2,
	'the lines not logged are counted');
$node->safe_psql('db2', 'ALTER TABLE records_elsewhere RENAME TO storage_records');
ok($node->poll_query_until('db2',
	q{SELECT expired_records = 0 AND consecutive_failures = 0 AND last_error IS NULL
	    FROM storage_status}),
	'once the table is back, the purge resumes and the failures are forgotten');

# ---- status slots of dropped databases are reused (4 slots: db1, db2 and
# one database at a time created, purged, dropped; more than the slots)
for my $i (1 .. 4)
{
	create_db("tmp$i");
	ok($node->poll_query_until("tmp$i",
		q{SELECT worker_state IN ('idle', 'purging') FROM storage_status}),
		"database tmp$i gets a status slot");
	$node->safe_psql('postgres', "DROP DATABASE tmp$i");
}
is($node->safe_psql('db1', q{SELECT worker_state IN ('idle', 'purging') FROM storage_status}),
	't', 'db1 keeps its slot');

$node->stop;
done_testing();
