# The client library's storage_watch on PostgreSQL: every event kind, a
# prefix, a TOASTed 1 MB value whole, the watch created on first use and
# confirmed when the callback stops, a clear error for a missing slot; then
# a writer saving and a consumer watching while the consumer and the server
# are killed with SIGKILL, ten rounds: no acknowledged save is missing from
# what the consumer saw, nothing at or before the slot's confirmed position
# is delivered again, and what the killed consumer had seen after it is.
#
# The programs are test/watch/consumer.c and writer.c, built here against
# the client library built from this tree.
use strict;
use warnings;
use Cwd qw(abs_path);
use Digest::MD5 qw(md5_hex);
use File::Basename qw(dirname);
use POSIX ();
use Time::HiRes qw(usleep);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $top = abs_path(dirname(__FILE__) . '/../..');
my $tmp = PostgreSQL::Test::Utils::tempdir();

# ---- the programs -----------------------------------------------------------

my $cc = $ENV{CC} // 'cc';
system_or_bail('make', '-s', '-C', "$top/src/client", "BUILDDIR=$tmp/lib");
for my $prog ('consumer', 'writer')
{
	system_or_bail($cc, '-std=c11', '-D_POSIX_C_SOURCE=200809L', '-Wall',
		'-Wextra', '-Werror', "-I$top/src/client", "$top/test/watch/$prog.c",
		'-o', "$tmp/$prog", "$tmp/lib/libstorage_client.a",
		'-lpq', '-lcrypto', '-lcurl', '-ljson-c', '-pthread');
}

# ---- the server -----------------------------------------------------------------

my $node = PostgreSQL::Test::Cluster->new('watch');
$node->init(allows_streaming => 'logical');
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'storage'
storage.purge_interval = '1h'
});
$node->append_conf('postgresql.conf',
	"output_plugin_libraries = 'pgoutput, test_decoding, storage'")
  if `postgres --describe-config` =~ /^output_plugin_libraries\t/m;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION storage');
my $uri = 'host=' . $node->host . ' port=' . $node->port . ' dbname=postgres';

# A program in the background, its output to $tmp/<name>.out.
my %children;
sub spawn
{
	my ($name, @cmd) = @_;
	my $pid = fork();
	die "fork: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDOUT, '>>', "$tmp/$name.out") or POSIX::_exit(126);
		open(STDERR, '>&', \*STDOUT) or POSIX::_exit(126);
		exec(@cmd) or POSIX::_exit(127);
	}
	$children{$pid} = 1;
	return $pid;
}

# Wait for a child to exit; killed after $secs (a hang fails, not blocks).
# Returns its exit status, or -1 if it had to be killed.
sub finish
{
	my ($pid, $secs) = @_;
	for (1 .. $secs * 10)
	{
		if (waitpid($pid, POSIX::WNOHANG()) == $pid)
		{
			delete $children{$pid};
			return $? >> 8;
		}
		usleep(100_000);
	}
	kill('KILL', $pid);
	waitpid($pid, 0);
	delete $children{$pid};
	return -1;
}

END { kill('KILL', keys %children) if %children; }

sub slurp_lines
{
	my ($file) = @_;
	open(my $fh, '<', $file) or return ();
	my @lines = <$fh>;
	close($fh);
	chomp(@lines);
	return @lines;
}

# "E pos op id version last expires format len md5 omitted" -> hash
sub event
{
	my ($line) = @_;
	my @f = split / /, $line;
	return undef unless @f == 11 && $f[0] eq 'E';
	my %e;
	@e{qw(pos op id version last expires format len md5 omitted)} = @f[ 1 .. 10 ];
	return \%e;
}

sub slot_lsn
{
	my ($slot) = @_;
	return $node->safe_psql('postgres',
		"SELECT confirmed_flush_lsn OPERATOR(pg_catalog.-) '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = '$slot'");
}

# ---- every kind of event, a prefix, a 1 MB value --------------------------------

srand(42);
my $big = join('', map { chr(int(rand(256))) } 1 .. 1024 * 1024);
my $big_hex = unpack('H*', $big);

my $klog = "$tmp/kinds.log";
my $kpid = spawn('kinds', "$tmp/consumer", $uri, 'kinds', 'k/', 0, $klog, 11);
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM storage_watch_status WHERE slot = 'kinds' AND prefix = 'k/'"),
	'storage_watch creates its slot with storage_watch_create on first use');
$node->safe_psql('postgres', q{
SELECT storage_save('k/a', 'A', -1, NULL, 'text/plain');
SELECT storage_save('other/x', 'X');
SELECT storage_save('k/a', 'A2', 1, now() + interval '1 day');
SELECT storage_touch('k/a', now() + interval '2 days');
SELECT storage_save_many(ARRAY['k/b', 'other/y', 'k/c'], ARRAY['B', 'Y', 'C']::bytea[]);
SELECT storage_delete('k/b');
SELECT storage_save('k/e', 'E', -1, now() + interval '1 second');
SELECT storage_save('k/f', 'F', -1, now() + interval '1 second');
});
$node->safe_psql('postgres', q{
SELECT pg_sleep(1.2);
BEGIN;
SELECT storage_save('k/rolled_back', 'R');
ROLLBACK;
SELECT storage_purge_expired();
});
$node->safe_psql('postgres', "SELECT storage_save('k/big', decode('$big_hex', 'hex'))");
is(finish($kpid, 120), 0, 'the consumer stopped itself after 11 events');

my @kinds = map { event($_) } grep { /^E / } slurp_lines($klog);
my @lines = map { join(' ', @$_{qw(op id version last format len)}, $_->{expires} ? 'x' : '-') } @kinds;
# one purge expires both, in an order of its own: the second one is last
if (@lines == 11)
{
	my @purged = sort map { s/^(expire \S+ 0) [01]/$1 ?/r } @lines[ 8, 9 ];
	$purged[$_] =~ s/\?/$_/ for (0, 1);
	@lines[ 8, 9 ] = @purged;
}
is( join("\n", @lines),
	join("\n",
		'put k/a 1 1 text/plain 1 -',
		'put k/a 2 1 - 2 x',
		'touch k/a 2 1 - - x',
		'put k/b 1 0 - 1 -',
		'put k/c 1 1 - 1 -',
		'delete k/b 0 1 - - -',
		'put k/e 1 1 - 1 x',
		'put k/f 1 1 - 1 x',
		'expire k/e 0 0 - - -',
		'expire k/f 0 1 - - -',
		'put k/big 1 1 - 1048576 -'),
	'every kind of event through the client, only the prefix, nothing rolled back');
is(join('', map { $_->{last} } @kinds[ 8, 9 ]), '01', 'the purge ends at its second event');
is($kinds[10]{md5}, md5_hex($big), 'the 1 MB value arrives whole');
is($kinds[3]{pos}, $kinds[4]{pos}, 'a save_many is one position');
ok($kinds[2]{expires} > $kinds[1]{expires}, 'touch carries the new expiry');
is(slot_lsn('kinds'), $kinds[10]{pos},
	'the last transaction is confirmed when the callback stops at its last event');

# a slot that does not exist, with a position: a clear error, not a new slot
my $nlog = "$tmp/nosuch.log";
my $npid = spawn('nosuch', "$tmp/consumer", $uri, 'nosuch', 'k/', 123, $nlog);
finish($npid, 60);
like((slurp_lines($nlog))[-1], qr/^END STORAGE_NOT_FOUND replication slot "nosuch" does not exist/,
	'a missing slot with a position is STORAGE_NOT_FOUND');
is($node->safe_psql('postgres', "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'nosuch'"),
	'0', 'and no slot was created');

# ---- kill the consumer and the server, ten rounds ------------------------------

my $clog = "$tmp/crash.log";
my $alog = "$tmp/acks.log";
# 2 ms of "work" per event: slower than the writer, so every kill lands
# inside a callback
my @consumer = ("$tmp/consumer", $uri, 'crash', 'w/', 0, $clog, 0, 2000);
my $cpid = spawn('crash', @consumer);
$node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM pg_replication_slots WHERE slot_name = 'crash' AND active")
  or die 'the consumer did not start';
my $wpid = spawn('writer', "$tmp/writer", $uri, 'w/', $alog, 2000, 4);

for my $round (1 .. 10)
{
	usleep(700_000 + int(rand(600_000)));
	if ($round % 2)
	{
		kill('KILL', $cpid);
		finish($cpid, 10);
		# the slot's position once the server has read all the consumer sent
		$node->poll_query_until('postgres',
			"SELECT NOT active FROM pg_replication_slots WHERE slot_name = 'crash'")
		  or die 'the killed consumer stays active';
		my $confirmed = slot_lsn('crash');
		open(my $fh, '>>', $clog) or die;
		print $fh "KILLED $confirmed\n";
		close($fh);
		$cpid = spawn('crash', @consumer);
	}
	else
	{
		# the whole server: the postmaster leads the process group of
		# every backend (pg_ctl starts it in a session of its own)
		my $pm = (slurp_lines($node->data_dir . '/postmaster.pid'))[0];
		kill('KILL', -$pm) or die "kill -$pm: $!";
		$node->kill9;    # only forgets it now
		usleep(50_000) while kill(0, -$pm);
		$node->start;
	}
}
kill('TERM', $wpid);
finish($wpid, 60);

# wait until the consumer has seen every acknowledged save (or has seen
# nothing new for 30 s: what is missing then never comes)
my %acked = map { /^ACK (\S+) (\d+)$/ ? ("$1 $2" => 1) : () } slurp_lines($alog);
my %seen;
my ($size, $grew, $deadline) = (-1, time(), time() + 600);
while (time() < $deadline && time() - $grew < 30)
{
	if ((-s $clog) != $size)
	{
		($size, $grew) = (-s $clog, time());
		%seen = map { my $e = event($_); $e && $e->{op} eq 'put' ? ("$e->{id} $e->{version}" => 1) : () }
		  slurp_lines($clog);
		last unless grep { !$seen{$_} } keys %acked;
	}
	usleep(500_000);
}
kill('TERM', $cpid);
is(finish($cpid, 60), 0, 'the consumer ends cleanly on SIGTERM (storage_watch_cancel)');

my @missing = grep { !$seen{$_} } sort keys %acked;
ok(keys(%acked) > 100, scalar(keys %acked) . ' saves acknowledged');
is(scalar(@missing), 0, 'no acknowledged save is missing from the feed')
  or diag("missing: @missing[0 .. ($#missing < 9 ? $#missing : 9)]");

# Runs of the consumer: no event at or before the position the slot had
# confirmed (or, within a run, before the last transaction the run
# completed: reconnections resume there); and what a killed run saw after
# the confirmed position, the next run delivers again.
my (@runs, $floor);
for my $line (slurp_lines($clog))
{
	if ($line =~ /^KILLED (\d+)$/) { $floor = $1; next; }
	if ($line eq 'START') { push @runs, { floor => $floor // 0, events => [] }; next; }
	my $e = event($line);
	push @{ $runs[-1]{events} }, $e if $e;
}
my ($stale, $redelivered, $not_redelivered, $mid_txn) = (0, 0, 0, 0);
for my $i (0 .. $#runs)
{
	my $done = $runs[$i]{floor};
	for my $e (@{ $runs[$i]{events} })
	{
		$stale++ if $e->{pos} <= $done;
		$done = $e->{pos} if $e->{last};
	}
	next if $i == 0;
	my %next = map { ("$_->{pos} $_->{id} $_->{version}" => 1) } @{ $runs[$i]{events} };
	# how far the next run got: the last transaction it saw whole (a run
	# killed inside a transaction saw only that transaction's first events)
	my ($last_next) = map { $_->{pos} } grep { $_->{last} } reverse @{ $runs[$i]{events} };
	$last_next //= 0;
	my @after = grep { $_->{pos} > $runs[$i]{floor} } @{ $runs[ $i - 1 ]{events} };
	$mid_txn++ if @after && !$after[-1]{last};
	for my $e (@after)
	{
		next if $e->{pos} > $last_next;    # the next run did not get that far
		$next{"$e->{pos} $e->{id} $e->{version}"} ? $redelivered++ : $not_redelivered++;
	}
}
is($stale, 0, 'nothing at or before a confirmed position is delivered again');
is($not_redelivered, 0,
	"what a killed consumer saw after the confirmed position is delivered again ($redelivered events, $mid_txn kills within a transaction)");
is(scalar(@runs), 6, 'six consumer runs');

done_testing();
