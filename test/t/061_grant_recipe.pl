# The README's GRANT recipe, run verbatim: the sql block after the marker
# comment "grant-recipe" in README.md.  Then each role it creates does what
# the README says it can, through both write paths, and is refused the rest.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Basename;
use File::Spec;

my $readme = File::Spec->rel2abs(dirname(__FILE__) . '/../../README.md');
open(my $fh, '<', $readme) or die "cannot open $readme: $!";
my @lines = <$fh>;
close($fh);

# every ```sql block that directly follows a marker line
my @blocks;
for (my $i = 0; $i < @lines; $i++)
{
	next unless $lines[$i] =~ /<!-- grant-recipe\b/;
	my $j = $i + 1;
	$j++ while $j < @lines && $lines[$j] =~ /^\s*$/;
	die "no sql block after the grant-recipe marker at line " . ($i + 1)
	  unless $j < @lines && $lines[$j] =~ /^```sql\s*$/;
	my $sql = '';
	for ($j++; $j < @lines && $lines[$j] !~ /^```\s*$/; $j++)
	{
		$sql .= $lines[$j];
	}
	push @blocks, $sql;
}
ok(@blocks >= 1, 'README.md has a marked GRANT recipe');
my $recipe = join('', @blocks);
like($recipe, qr/CREATE ROLE app\b/, 'the recipe creates the application role');
like($recipe, qr/CREATE ROLE maintenance\b/, 'the recipe creates the maintenance role');

my $node = PostgreSQL::Test::Cluster->new('grants');
$node->init;
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION storage');
my ($ret, $out, $err) = $node->psql('postgres', $recipe);
is($ret, 0, 'the recipe runs verbatim without errors') or diag($err);

$node->safe_psql('postgres', q{
	CREATE ROLE nobody LOGIN;
	SELECT storage_save('old1', 'x', -1, now() - interval '1 hour');
	SELECT storage_save('old2', 'x', -1, now() - interval '1 hour');
	SELECT storage_save('old3', 'x', -1, now() - interval '1 hour');
});

# runs sql as a role; returns (exit code, stdout, stderr)
sub as_role
{
	my ($role, $sql) = @_;
	my ($stdout, $stderr);
	my $rc = $node->psql('postgres', $sql,
		stdout => \$stdout, stderr => \$stderr,
		extra_params => [ '-U', $role ]);
	return ($rc, $stdout, $stderr);
}

sub allowed
{
	my ($role, $sql, $expect, $name) = @_;
	my ($rc, $stdout, $stderr) = as_role($role, $sql);
	ok($rc == 0 && $stdout eq $expect, "$role may $name")
	  or diag("rc $rc, stdout '$stdout', stderr $stderr");
}

sub refused
{
	my ($role, $sql, $name) = @_;
	my ($rc, $stdout, $stderr) = as_role($role, $sql);
	ok($rc != 0 && $stderr =~ /permission denied/, "$role may not $name")
	  or diag("rc $rc, stdout '$stdout', stderr $stderr");
}

foreach my $direct ('on', 'off')
{
	my $set = "SET storage.direct_writes = $direct;";
	allowed('app', qq{$set
		SELECT storage_save('a-$direct', 'x', 0);
		SELECT storage_save('a-$direct', 'y', 1, now() + interval '1 hour', 'f');
		SELECT storage_touch('a-$direct', now() + interval '2 hours');
		SELECT version FROM storage_fetch('a-$direct');
		SELECT count(*) FROM storage_list('a-$direct');
		SELECT storage_save_many(ARRAY['m1-$direct', 'm2-$direct'], '{x,y}');
		SELECT count(*) FROM storage_fetch_many(ARRAY['m1-$direct', 'm2-$direct']);
		SELECT storage_delete_many(ARRAY['m1-$direct', 'm2-$direct']);
		SELECT storage_delete('a-$direct');},
		"1\n2\nt\n2\n1\n{1,1}\n2\n2\nt",
		"use the record API (direct_writes $direct)");
	allowed('app', qq{$set
		SELECT storage_create_val('{b-$direct}', 'k', 'v', '1 hour');
		SELECT storage_upsert_val('{b-$direct}', 'k', 'w');
		SELECT storage_compare_and_swap_val('{b-$direct}', 'k', 'u', 'w');
		SELECT storage_get_val('{b-$direct}', 'k');
		SELECT storage_upsert_items('{b-$direct}', '{a,b}', '{1,2}');
		SELECT string_agg(k, ',') FROM storage_get_keys('{b-$direct}') AS k;
		SELECT count(*) FROM storage_get_items('{b-$direct}');
		SELECT storage_delete_key('{b-$direct}', 'a');
		SELECT storage_delete_bucket('{}', 'b-$direct');
		SELECT 'locked' FROM (SELECT storage_acquire_lock('l-$direct', '1 minute')) AS s;
		SELECT 'released' FROM (SELECT storage_release_lock('l-$direct')) AS s;},
		"\n\n\n\\x75\n\na,b,k\n3\n\n2\nlocked\nreleased",
		"use the bucket and lock API (direct_writes $direct)");
	refused('app', qq{$set SELECT storage_purge_expired()}, "purge (direct_writes $direct)");

	# the purge through the direct path and through its statement
	allowed('maintenance', qq{$set SELECT storage_purge_expired(1)}, '1',
		"purge (direct_writes $direct)");
	refused('maintenance', qq{$set SELECT storage_save('m', 'x')},
		"save (direct_writes $direct)");
}
allowed('maintenance', 'SELECT storage_purge_expired()', '1', 'purge what is left');
refused('maintenance', q{SELECT * FROM storage_fetch('x')}, 'fetch');
refused('maintenance', q{SELECT storage_delete('x')}, 'delete');
refused('maintenance', q{INSERT INTO storage_records (id, version) VALUES ('x', 1)},
	'insert into the table');
refused('app', q{SELECT storage_worker_status()}, 'read the worker status');
refused('nobody', q{SELECT storage_save('x', 'x')}, 'save');
refused('nobody', q{SELECT * FROM storage_fetch('x')}, 'fetch');
refused('nobody', q{SELECT storage_purge_expired()}, 'purge');
refused('nobody', q{SELECT * FROM storage_records}, 'read the table');
is($node->safe_psql('postgres', 'SELECT count(*) FROM storage_records'),
	'0', 'every record purged or deleted, nothing else left');

$node->stop;
done_testing();
