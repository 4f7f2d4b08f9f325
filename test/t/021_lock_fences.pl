# Fencing tokens of the TTL locks across the update from 1.0 and across
# pg_dump/pg_restore: a lock held during ALTER EXTENSION UPDATE keeps its
# token (its version, 1), every later token is larger than any lock record's
# version, the roles that could execute the 1.0 storage_acquire_lock can
# execute the new one (and pg_dump still dumps that grant), the updated
# schema equals a fresh install's, and a restored database goes on above
# every token handed out before the dump.  Also: the library refuses a
# token sequence that is not the extension's.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('fences');
$node->init;
$node->start;

# the same application role and grants in both databases
my $grants = q{
	GRANT EXECUTE ON FUNCTION storage_acquire_lock(text, interval),
	                          storage_release_lock(text)
	   TO regress_app WITH GRANT OPTION;
	GRANT SELECT, INSERT, UPDATE, DELETE ON storage_records TO regress_app;
};
$node->safe_psql('postgres', 'CREATE ROLE regress_app');
$node->safe_psql('postgres', 'CREATE DATABASE upd');
$node->safe_psql('postgres', 'CREATE DATABASE fresh');

# release 1.0 with a held lock, an expired one and a lock record whose
# version grew by storage_save
$node->safe_psql('upd', qq{
	CREATE EXTENSION storage VERSION '1.0';
	$grants
	SELECT storage_acquire_lock('held', '1 hour');
	SELECT storage_save('.locks/saved', '', 0, now() + interval '1 hour');
	SELECT storage_save('.locks/saved', '', 1, now() + interval '1 hour');
	SELECT storage_save('.locks/saved', '', 2, now() + interval '1 hour');
	SELECT storage_save('.locks/old', '', 0, now() - interval '1 hour');
});
is($node->safe_psql('upd', q{SELECT version FROM storage_records WHERE id = '.locks/held'}),
	'1', '1.0 takes locks with version 1');

$node->safe_psql('upd', 'ALTER EXTENSION storage UPDATE');
is($node->safe_psql('upd', q{SELECT extversion FROM pg_extension WHERE extname = 'storage'}),
	'1.1', 'updated to 1.1');
is( $node->safe_psql('upd', q{SELECT pg_typeof(storage_acquire_lock('new', '1 minute'))::text}),
	'bigint', 'storage_acquire_lock returns the token');

# grants
is( $node->safe_psql('upd', q{
		SELECT has_function_privilege('regress_app',
			'storage_acquire_lock(text, interval)', 'EXECUTE WITH GRANT OPTION')}),
	't', 'the role keeps EXECUTE (with grant option) on the re-created storage_acquire_lock');
is( $node->safe_psql('upd', q{
		SELECT count(*) FROM pg_init_privs i, aclexplode(i.initprivs) a
		 WHERE i.objoid = 'storage_acquire_lock(text, interval)'::regprocedure
		   AND a.grantee = 'regress_app'::regrole}),
	'0', 'that grant is not an initial privilege of the extension');
is( $node->safe_psql('upd', q{
		SELECT has_function_privilege('public', 'storage_acquire_lock(text, interval)', 'EXECUTE')}),
	'f', 'PUBLIC still cannot execute storage_acquire_lock');

# the lock held during the update: token 1; new tokens above every version
$node->safe_psql('upd', 'GRANT EXECUTE ON FUNCTION storage_release_lock(text, bigint) TO regress_app');
is( $node->safe_psql('upd', q{
		SET ROLE regress_app;
		SELECT 'released' FROM storage_release_lock('held', 1)}),
	'released', 'the lock held during the update is released with token 1, by the granted role');
is($node->safe_psql('upd', q{SELECT count(*) FROM storage_records WHERE id = '.locks/held'}),
	'0', 'its record is gone');
my $token = $node->safe_psql('upd', q{
	SET ROLE regress_app; SELECT storage_acquire_lock('held', '1 hour')});
cmp_ok($token, '>', 3, 'the next token is above every lock record version (3)');
my $old = $node->safe_psql('upd', q{
	SELECT version FROM storage_records WHERE id = '.locks/new'});
cmp_ok($token, '>', $old, 'and above the token taken right after the update');

# the updated schema is a fresh install's (with the same grants)
$node->safe_psql('fresh', qq{
	CREATE EXTENSION storage;
	$grants
	GRANT EXECUTE ON FUNCTION storage_release_lock(text, bigint) TO regress_app;
});
sub schema
{
	my ($db) = @_;
	my $out = $node->basedir . "/$db-schema.sql";
	$node->command_ok([ 'pg_dump', '--schema-only', '-d', $node->connstr($db), '-f', $out ],
		"pg_dump --schema-only $db");
	my $text = slurp_file($out);
	$text =~ s/^\\(un)?restrict .*$//mg;	# random keys of newer pg_dump
	return $text;
}
my $fresh_schema = schema('fresh');
is(schema('upd'), $fresh_schema, 'the updated schema equals a fresh 1.1 install');
like($fresh_schema, qr/GRANT ALL ON FUNCTION public\.storage_acquire_lock\(token text, ttl interval\) TO regress_app WITH GRANT OPTION/,
	'pg_dump dumps the grant on storage_acquire_lock');

# dump and restore: tokens go on above those handed out before the dump
my $last = $node->safe_psql('upd', q{SELECT storage_acquire_lock('before-dump', '1 hour')});
my $dump = $node->basedir . '/upd.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-d', $node->connstr('upd'), '-f', $dump ],
	'pg_dump of the updated database');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ],
	'pg_restore');
is( $node->safe_psql('restored', q{SELECT version FROM storage_records WHERE id = '.locks/held'}),
	$token, 'the held lock keeps its token');
my $after = $node->safe_psql('restored', q{SELECT storage_acquire_lock('after-restore', '1 hour')});
cmp_ok($after, '>', $last, 'a token after the restore is larger than every token before the dump');
is( $node->safe_psql('restored', q{
		SELECT has_function_privilege('regress_app',
			'storage_acquire_lock(text, interval)', 'EXECUTE')}),
	't', 'the grant survives the restore');

# before the update, the library finds the token sequence by name: one
# that someone else created in the extension's schema is refused, not used
$node->safe_psql('postgres', 'CREATE DATABASE squat');
$node->safe_psql('squat', q{
	CREATE EXTENSION storage VERSION '1.0';
	CREATE ROLE regress_squatter;
	GRANT CREATE ON SCHEMA public TO regress_squatter;
	SET ROLE regress_squatter;
	CREATE SEQUENCE storage_lock_fences;
});
my ($rc, $out, $err) = $node->psql('squat', q{SELECT storage_acquire_lock('x', '1 minute')});
like($err, qr/sequence "storage_lock_fences" is not a member of extension "storage"/,
	'a sequence of that name not created by the extension is refused');
is($node->safe_psql('squat', 'SELECT count(*) FROM storage_records'), '0',
	'and no lock was taken');

$node->stop;
done_testing();
