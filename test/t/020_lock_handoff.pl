# TTL lock handoff between sessions: a waiter takes the lock when the
# holder releases it (long before the holder's TTL would free it), with the
# library preloaded (condition variable broadcast at commit) and without it
# (latch sleep with backoff); a waiter honours query cancel.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

sub handoff
{
	my ($node, $label) = @_;

	$node->safe_psql('postgres', "SELECT storage_acquire_lock('t', '1 minute')");
	my $bg = $node->background_psql('postgres');
	$bg->query_until(qr/waiting/, q{\echo waiting
SELECT storage_acquire_lock('t', '1 minute');
\echo acquired
});
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1 FROM pg_stat_activity
		 WHERE query LIKE 'SELECT storage_acquire_lock%' AND state = 'active'
		   AND wait_event_type = 'Extension'}),
		"$label: the second acquirer waits (wait_event_type Extension)");
	is($node->safe_psql('postgres', q{SELECT count(*) FROM storage_records WHERE id = '.locks/t'}),
		'1', "$label: the first holder still holds the lock");

	my $t0 = time();
	$node->safe_psql('postgres', "SELECT storage_release_lock('t')");
	$bg->query_until(qr/acquired/, '');
	my $waited = time() - $t0;
	# the holder's TTL was a minute: anything well below it means the
	# release, not the expiry, let the waiter in
	cmp_ok($waited, "<", 5, "$label: the waiter took the lock after the release");
	note sprintf("%s: acquired %.3f s after the release", $label, $waited);
	is($node->safe_psql('postgres',
		q{SELECT count(*) FROM storage_fetch('.locks/t') WHERE expires_at > now() + interval '50 seconds'}),
		'1', "$label: the lock is held anew with the waiter's TTL");
	$bg->quit;
	$node->safe_psql('postgres', "SELECT storage_release_lock('t')");

	# a waiter is cancelled by statement_timeout
	$node->safe_psql('postgres', "SELECT storage_acquire_lock('c', '1 minute')");
	my ($ret, $out, $err) = $node->psql('postgres',
		"SET statement_timeout = '300ms'; SELECT storage_acquire_lock('c', '1 minute')");
	like($err, qr/canceling statement due to statement timeout/,
		"$label: statement_timeout interrupts the wait");
	$node->safe_psql('postgres', "SELECT storage_release_lock('c')");
}

my $node = PostgreSQL::Test::Cluster->new('locks');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION storage');
handoff($node, 'not preloaded');

$node->append_conf('postgresql.conf', "shared_preload_libraries = 'storage'");
$node->restart;
is($node->safe_psql('postgres', 'SELECT storage_worker_loaded()'), 't', 'now preloaded');
handoff($node, 'preloaded');

$node->stop;
done_testing();
