# pg_dump of a database with records, restored into a fresh database (and a
# fresh cluster), gives back the same records with the same versions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('dump');
$node->init;
$node->start;

$node->safe_psql('postgres', 'CREATE DATABASE src');
$node->safe_psql('src', q{
	CREATE EXTENSION storage;
	SELECT storage_save('plain', 'hello', 0);
	SELECT storage_save('plain', 'hello again', 1);
	SELECT storage_save('bin', '\x00ff10', -1, 'infinity', 'raw');
	SELECT storage_save('soon', 'x', -1, now() + interval '1 day', 'json');
	SELECT storage_save('nulls', NULL, -1, NULL, NULL);
	SELECT storage_save('gone', 'x', -1, now() - interval '1 day');
	SELECT storage_save('ünïcödé/key', 'x');
	SELECT count(storage_save('bulk/' || i, convert_to(repeat('v', i), 'UTF8')))
	  FROM generate_series(1, 500) AS i;
});

my $query = q{SELECT id, version, expires_at, format, encode(data, 'hex')
				FROM storage_records ORDER BY id};
my $before = $node->safe_psql('src', $query);
my $live_before = $node->safe_psql('src',
	q{SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM storage_list('')});

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('src'), '-f', $dump ],
	'pg_dump of a database with records');

# into a fresh database of the same cluster
$node->safe_psql('postgres', 'CREATE DATABASE dst');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('dst'), $dump ],
	'pg_restore into a fresh database');
is($node->safe_psql('dst', $query), $before,
	'every row comes back with the same version, expiry, format and data');
is( $node->safe_psql('dst',
		q{SELECT string_agg(id || ':' || version, ',' ORDER BY id) FROM storage_list('')}),
	$live_before,
	'the same records are live after the restore');
is($node->safe_psql('dst', q{SELECT version FROM storage_fetch('plain')}),
	'2', 'storage_fetch returns the restored version');
is($node->safe_psql('dst', q{SELECT storage_save('plain', 'next', 2)}),
	'3', 'optimistic locking continues from the restored version');
is($node->safe_psql('dst', q{SELECT count(*) FROM storage_fetch('gone')}),
	'0', 'an expired record stays invisible after the restore');

# a plain-format dump into another cluster, as psql would replay it
my $node2 = PostgreSQL::Test::Cluster->new('restore');
$node2->init;
$node2->start;
my $sql = $node->basedir . '/src.sql';
$node->command_ok([ 'pg_dump', '-d', $node->connstr('src'), '-f', $sql ],
	'plain pg_dump');
$node2->safe_psql('postgres', 'CREATE DATABASE dst');
$node2->command_ok(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node2->connstr('dst'), '-f', $sql ],
	'plain dump replays with psql into another cluster');
is($node2->safe_psql('dst', $query), $before,
	'same rows in the other cluster');

$node->stop;
$node2->stop;
done_testing();
