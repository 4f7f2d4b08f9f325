# Scale-out through PL/Proxy: the storage_proxy extension in a proxy
# database in front of four partitions on two clusters.  The whole API
# script test/proxy/api.sql gives the same output through the proxy as on
# one server; ids land on the partition the documented hash names; a
# stopped partition fails only its own calls and comes back by itself.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Only the harness may skip this test, and it says why (test/cassert.sh:
# no PL/Proxy is built for the assertion-enabled server).
plan skip_all => $ENV{STORAGE_TEST_SKIP_MODULES}
  if $ENV{STORAGE_TEST_SKIP_MODULES};
use File::Basename;
use File::Spec;

# CRC-32C, written out here so that the routing is checked against the
# documented definition rather than against the extension's own code
sub crc32c
{
	my ($s) = @_;
	my $crc = 0xFFFFFFFF;
	for my $byte (unpack('C*', $s))
	{
		$crc ^= $byte;
		$crc = ($crc & 1) ? (($crc >> 1) ^ 0x82F63B78) : ($crc >> 1) for 1 .. 8;
	}
	return $crc ^ 0xFFFFFFFF;
}

sub routing_key
{
	my ($id) = @_;
	return $1 if $id =~ /^[^{]*\{([^}]+)\}/;
	return $id;
}

sub partition_of { return crc32c(routing_key($_[0])) & 3; }

my $a = PostgreSQL::Test::Cluster->new('proxy_a');
my $b = PostgreSQL::Test::Cluster->new('proxy_b');
$_->init for ($a, $b);
$_->start for ($a, $b);

my @parts = ([ $a, 'part0' ], [ $a, 'part1' ], [ $b, 'part2' ], [ $b, 'part3' ]);
for my $p (@parts)
{
	my ($node, $db) = @$p;
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, 'CREATE EXTENSION storage');
}
$a->safe_psql('postgres', 'CREATE DATABASE single');
$a->safe_psql('single', 'CREATE EXTENSION storage');

my $options = join(', ',
	map {
		my ($node, $db) = @{ $parts[$_] };
		"p$_ 'dbname=$db host=" . $node->host . ' port=' . $node->port . "'"
	} 0 .. 3);
$a->safe_psql('postgres', 'CREATE DATABASE proxy');
$a->safe_psql('proxy', qq{
	CREATE EXTENSION plproxy;
	CREATE EXTENSION storage_proxy;
	CREATE SERVER storage FOREIGN DATA WRAPPER plproxy OPTIONS ($options);
	CREATE USER MAPPING FOR PUBLIC SERVER storage;
});
is($a->safe_psql('proxy', 'SELECT storage_proxy_partitions()'), '4', 'four partitions');

# the published check value of CRC-32C, as a signed integer
is($a->safe_psql('proxy', q{SELECT storage_proxy_hash('123456789')}),
	'-486108541', 'storage_proxy_hash is CRC-32C (check value 0xE3069283)');

# 1. the same API, the same results
my $script = File::Spec->rel2abs(dirname(__FILE__) . '/../proxy/api.sql');
my ($single, $proxied);
$a->psql('single', undef, extra_params => [ '-f', $script, '-a' ], stdout => \$single, stderr => \my $e1);
$a->psql('proxy', undef, extra_params => [ '-f', $script, '-a' ], stdout => \$proxied, stderr => \my $e2);
$single .= "\n$e1";
$proxied .= "\n$e2";
ok(length($single) > 5000 && $single =~ /storage_get_items/, 'the API script ran on one server');
is($proxied, $single, 'the API script gives the same output through the proxy');
if ($proxied ne $single)
{
	diag("one server:\n$single\nproxy:\n$proxied");
}
unlike($single, qr/ERROR:  (XX|42|0A)/, 'no internal, syntax or unsupported-feature error on one server');

# 2. routing: each id is on the partition the documented hash names
my @ids = map { "id$_" } 1 .. 40;
push @ids, '{tag}a', '{tag}b', 'x{tag}y', 'plain/{}/k';
$a->safe_psql('proxy', "SELECT storage_save('$_', '\\x01')") for @ids;
my %where;
for my $i (0 .. 3)
{
	my ($node, $db) = @{ $parts[$i] };
	$where{$_} = $i
	  for split /\n/, $node->safe_psql($db, q{SELECT id FROM storage_list('')});
}
my @wrong = grep { !defined $where{$_} || $where{$_} != partition_of($_) } @ids;
is_deeply(\@wrong, [], 'every id is on partition crc32c(routing key) & 3');
my %used = map { $where{$_} => 1 } grep { /^id/ } @ids;
is(scalar(keys %used), 4, '40 ids spread over all four partitions');
is($where{'{tag}a'}, $where{'x{tag}y'}, 'ids with the same hash tag share a partition');

# a tagged bucket lives on one partition
$a->safe_psql('proxy',
	q{SELECT storage_upsert_val('{"{t42}",s}', 'k' || g, '\x01') FROM generate_series(1, 20) g});
my @holding = grep {
	my ($node, $db) = @{ $parts[$_] };
	$node->safe_psql($db, q{SELECT count(*) FROM storage_list('{t42}/')}) > 0
} 0 .. 3;
is(scalar(@holding), 1, 'the 20 keys of a tagged bucket live on one partition');
is($holding[0], partition_of('{t42}'), '... the one its tag hashes to');

# 3. what spans partitions and must be atomic is refused
my ($ret, $out, $err) = $a->psql('proxy',
	q{SELECT storage_save_many('{id1,id2,id3,id4,id5,id6}', '{"\\x01","\\x01","\\x01","\\x01","\\x01","\\x01"}', '{0,0,0,0,0,0}')});
like($err, qr/spans \d partitions/, 'save_many across partitions is refused');
is($a->safe_psql('proxy', q{SELECT count(*) FROM storage_fetch_many('{id1,id2,id3,id4,id5,id6}') WHERE version > 1}),
	'0', '... and writes nothing anywhere');
($ret, $out, $err) = $a->psql('proxy',
	q{\set VERBOSITY verbose
	  SELECT storage_upsert_items('{plain}', '{a,b,c,d,e,f,g,h}', '{"\\x01","\\x01","\\x01","\\x01","\\x01","\\x01","\\x01","\\x01"}')});
like($err, qr/0A000: storage_upsert_items spans/, 'upsert_items on an untagged bucket spanning partitions: 0A000');
($ret, $out, $err) = $a->psql('proxy',
	q{\set VERBOSITY verbose
	  SELECT storage_delete_bucket('{}', 'plain')});
like($err, qr/0A000: bucket "plain" spans all partitions/, 'delete_bucket of an untagged bucket: 0A000');
is($a->safe_psql('proxy', q{SELECT storage_delete_bucket('{"{t42}"}', 's')}),
	'20', 'delete_bucket of a tagged bucket deletes on its partition');

# 4. a stopped partition: its calls fail naming it, the others go on
my ($on_b) = grep { $where{$_} >= 2 } grep { /^id/ } @ids;
my ($on_a) = grep { $where{$_} <= 1 } grep { /^id/ } @ids;
$b->stop('fast');
($ret, $out, $err) = $a->psql('proxy', "SELECT version FROM storage_fetch('$on_b')");
like($err, qr/\[part[23]\]/, 'a call for a stopped partition fails naming the partition');
is($a->safe_psql('proxy', "SELECT version FROM storage_fetch('$on_a')"),
	'1', 'calls for partitions that are up keep working');
is($a->safe_psql('proxy', "SELECT storage_save('$on_a', '\\x02', 1)"),
	'2', 'saves on partitions that are up keep working');
$b->start;
is($a->safe_psql('proxy', "SELECT storage_save('$on_b', '\\x02', 1)"),
	'2', 'after the partition is back, its calls work without intervention');
is($a->safe_psql('proxy', q{SELECT count(*) FROM storage_status WHERE partition IS NOT NULL}),
	'4', 'storage_status has one row per partition');
is($a->safe_psql('proxy', q{SELECT live_records FROM storage_status(true) WHERE partition IS NULL}),
	$a->safe_psql('proxy', q{SELECT count(*) FROM storage_list('')}),
	'its total row counts every live record');

# 5. an application role that is not a superuser, with the README's grants
for my $node ($a, $b) { $node->safe_psql('postgres', 'CREATE ROLE app LOGIN'); }
for my $p (@parts)
{
	my ($node, $db) = @$p;
	$node->safe_psql($db, q{
		GRANT SELECT, INSERT, UPDATE, DELETE ON storage_records TO app;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO app;
	});
}
$a->safe_psql('proxy', q{
GRANT USAGE ON FOREIGN SERVER storage TO app;
SELECT format('GRANT EXECUTE ON FUNCTION %s TO app', p.oid::regprocedure)
  FROM pg_depend d JOIN pg_proc p ON p.oid = d.objid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e'
   AND d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'storage_proxy')
\gexec
});
my $as_app = sub { $a->safe_psql('proxy', "SET ROLE app; $_[0]") };
is($as_app->(q{SELECT storage_save('{app}1', '\x01')}), '1', 'the application role saves through the proxy');
is($as_app->(q{SELECT storage_save_many('{"{app}2","{app}3"}', '{"\\x02","\\x03"}')}),
	'{1,1}', '... saves a tagged batch');
is($as_app->(q{SELECT string_agg(id, ',') FROM storage_list('{app}')}),
	'{app}1,{app}2,{app}3', '... and lists across partitions');
($ret, $out, $err) = $a->psql('proxy', q{CREATE ROLE nobody; SET ROLE nobody; SELECT storage_fetch('x')});
like($err, qr/permission denied/, 'a role without the grants is refused');

done_testing();
