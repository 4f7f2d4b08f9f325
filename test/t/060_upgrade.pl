# ALTER EXTENSION storage UPDATE from 1.0 keeps every record intact, the
# functions work on them afterwards, and the updated schema is the schema of
# a fresh install of the default version (compared through pg_dump).
#
# Generic on purpose: it knows nothing of what the update script changes,
# only the 1.0 columns of the records table and the 1.0 functions.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('upgrade');
$node->init;
$node->start;

my $default = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'storage'});
is($default, '1.1', 'the default version is 1.1');

$node->safe_psql('postgres', 'CREATE DATABASE upgraded');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

$node->safe_psql('upgraded', q{CREATE EXTENSION storage VERSION '1.0'});
is($node->safe_psql('upgraded',
		q{SELECT extversion FROM pg_extension WHERE extname = 'storage'}),
	'1.0', 'version 1.0 installed');

# records of every kind, written by the 1.0 functions
$node->safe_psql('upgraded', q{
	SELECT storage_save('plain', 'hello', 0);
	SELECT storage_save('plain', 'hello again', 1);
	SELECT storage_save('fmt', '\x00ff10', -1, NULL, 'raw');
	SELECT storage_save('nulls', NULL, -1, NULL, NULL);
	SELECT storage_save('soon', 'x', -1, now() + interval '1 day', 'json');
	SELECT storage_save('gone', 'x', -1, now() - interval '1 day');
	SELECT storage_save('forever', 'x', -1, 'infinity');
	SELECT storage_save('ünïcödé/key', 'x');
	SELECT storage_upsert_val('{users,42}', 'cart', '\x01', '1 hour');
	SELECT storage_upsert_items('{users,42}', '{a,b}', ARRAY['\x0a', '\x0b']::bytea[]);
	SELECT storage_acquire_lock('nightly', '1 hour');
	SELECT storage_save('big', convert_to(string_agg(md5(i::text), '' ORDER BY i), 'UTF8'))
	  FROM generate_series(1, 20000) AS i;
	SELECT count(storage_save('bulk/' || i, convert_to(repeat('v', i), 'UTF8')))
	  FROM generate_series(1, 300) AS i;
});
ok( $node->safe_psql('upgraded', q{
		SELECT c.reltoastrelid <> 0
		   AND pg_relation_size(c.reltoastrelid) > 0
		  FROM pg_class c
		 WHERE c.oid = 'storage_records'::regclass}) eq 't',
	'the large value is stored out of line');

# the 1.0 columns, every row, in id order (data as hex: the full content)
my $content = q{
	SELECT id, version, expires_at, format, encode(data, 'hex'), data IS NULL,
	       purge_after
	  FROM storage_records ORDER BY id COLLATE "C"};
my $before = $node->safe_psql('upgraded', $content);
my $rows = $node->safe_psql('upgraded', 'SELECT count(*) FROM storage_records');
is($rows, '312', 'the records are there before the update');

$node->safe_psql('upgraded', 'ALTER EXTENSION storage UPDATE');
is($node->safe_psql('upgraded',
		q{SELECT extversion FROM pg_extension WHERE extname = 'storage'}),
	'1.1', 'updated to 1.1');
is($node->safe_psql('upgraded', $content), $before,
	'every record is intact after the update');

# the functions work on the records written before the update
is($node->safe_psql('upgraded', q{SELECT version || ':' || convert_from(data, 'UTF8') FROM storage_fetch('plain')}),
	'2:hello again', 'fetch reads a record written by 1.0');
is($node->safe_psql('upgraded', q{SELECT storage_save('plain', 'next', 2)}),
	'3', 'a versioned save continues from its version');
is($node->safe_psql('upgraded', q{SELECT format || ':' || encode(data, 'hex') FROM storage_fetch('fmt')}),
	'raw:00ff10', 'format and data are read back');
is($node->safe_psql('upgraded', q{SELECT data IS NULL AND format IS NULL FROM storage_fetch('nulls')}),
	't', 'NULL data and format are read back');
is($node->safe_psql('upgraded', q{SELECT count(*) FROM storage_fetch('gone')}),
	'0', 'an expired record stays invisible');
is($node->safe_psql('upgraded', q{SELECT expires_at FROM storage_fetch('forever')}),
	'infinity', 'an infinite record is live');
is($node->safe_psql('upgraded',
		q{SELECT md5(data) = md5(convert_to((SELECT string_agg(md5(i::text), '' ORDER BY i) FROM generate_series(1, 20000) AS i), 'UTF8'))
		    FROM storage_fetch('big')}),
	't', 'the large value is read back whole');
is($node->safe_psql('upgraded', q{SELECT storage_get_val('{users,42}', 'cart')}),
	'\x01', 'a bucket value written by 1.0 is read back');
is($node->safe_psql('upgraded', q{SELECT string_agg(k, ',') FROM storage_get_keys('{users,42}') AS k}),
	'a,b,cart', 'the bucket lists its keys');
is($node->safe_psql('upgraded', q{SELECT count(*) FROM storage_fetch_many(ARRAY['plain', 'fmt', 'gone', 'soon'])}),
	'3', 'fetch_many sees the live ones');
is($node->safe_psql('upgraded', q{SELECT count(*) FROM storage_list('bulk/')}),
	'300', 'list sees them all');
is($node->safe_psql('upgraded',
		q{SELECT 'released' FROM (SELECT storage_release_lock('nightly')) AS s}),
	'released', 'the lock taken under 1.0 is released');
is($node->safe_psql('upgraded',
		q{SELECT 'taken' FROM (SELECT storage_acquire_lock('nightly', '1 minute')) AS s}),
	'taken', 'and can be taken again');
is($node->safe_psql('upgraded', q{SELECT storage_purge_expired()}),
	'1', 'the purge deletes the record that expired under 1.0');
is($node->safe_psql('upgraded', q{SELECT storage_delete_bucket('{}', 'bulk')}),
	'300', 'the bucket functions delete records written by 1.0');
my ($rc, $out, $err) = $node->psql('upgraded', 'DROP EXTENSION storage');
like($err, qr/holds live records/, 'the DROP guard still protects the records');

# a fresh install of the default version: storage--1.0.sql and then the
# update script, so it must equal the update in every object
$node->safe_psql('fresh', 'CREATE EXTENSION storage');
is($node->safe_psql('fresh',
		q{SELECT extversion FROM pg_extension WHERE extname = 'storage'}),
	'1.1', 'a fresh install is 1.1');

sub dump_schema
{
	my ($db, @opts) = @_;
	my $file = $node->basedir . "/$db" . join('', @opts) . '.sql';
	$node->command_ok(
		[ 'pg_dump', '--schema-only', @opts, '-d', $node->connstr($db), '-f', $file ],
		"pg_dump --schema-only @opts of $db");
	return slurp_file($file);
}

# pg_dump protects its output with "\restrict KEY" and "\unrestrict KEY"
# lines, a random key per run: the only lines a plain schema dump needs
# masked.
sub unrestrict
{
	my ($dump) = @_;
	$dump =~ s/^\\((?:un)?restrict) \S+$/\\$1 KEY/mg;
	return $dump;
}

# The plain schema dump shows the extension, its version-independent
# comment and any privilege or configuration that differs from what its
# scripts set.
is(unrestrict(dump_schema('upgraded')), unrestrict(dump_schema('fresh')),
	'pg_dump --schema-only: the updated database equals a fresh install');

# A plain dump leaves out the extension's member objects.  In binary-upgrade
# mode pg_dump writes every member (tables, columns, indexes, functions,
# views, event triggers, comments, privileges) as pg_upgrade would recreate
# it.  Besides the restrict key, the only things that must differ between
# two databases are the OIDs, relfilenodes, LSNs and transaction ids it
# preserves for pg_upgrade, which appear only in its binary_upgrade_* calls
# and the relfrozenxid/relminmxid UPDATE of pg_class: the numbers in those
# lines are masked.  So is the position in setval() of a sequence that the
# extension marks for dumping (the lock fencing tokens): that is data, and
# the updated database has handed out tokens.  Nothing else.
sub normalise
{
	my ($dump) = @_;
	my @out;
	foreach my $line (split /\n/, unrestrict($dump))
	{
		$line =~ s/[0-9A-Fa-f]*[0-9][0-9A-Fa-f]*/N/g
		  if $line =~ /binary_upgrade_|relfrozenxid|relminmxid|^WHERE oid = '\d+';$/;
		$line =~ s/^(SELECT pg_catalog\.setval\('[^']+', )\d+, (true|false)\);$/$1N, B);/;
		push @out, $line;
	}
	return join("\n", @out);
}
my $up = normalise(dump_schema('upgraded', '--binary-upgrade'));
my $fr = normalise(dump_schema('fresh', '--binary-upgrade'));
like($fr, qr/ALTER EXTENSION storage ADD TABLE public\.storage_records/,
	'the binary-upgrade dump lists the member objects');
# the objects of release 1.1 are among them (so the comparison covers them)
for my $member ('TABLE public.storage_watches', 'FUNCTION public.storage_changes(',
	'FUNCTION public.storage_watch_create(', 'VIEW public.storage_watch_status')
{
	like($fr, qr/ALTER EXTENSION storage ADD \Q$member\E/, "the binary-upgrade dump lists $member");
}
is($up, $fr, 'pg_dump --schema-only --binary-upgrade: every member object is the same');

$node->stop;
done_testing();
