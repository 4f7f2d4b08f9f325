# pgaudit's object audit against the fast paths: with the real pgaudit from
# Debian (postgresql-15-pgaudit) preloaded and an audit role granted the
# records table, every write and read of the record and bucket functions
# leaves its AUDIT: OBJECT entry in the server log.  pgaudit sees table
# access through the executor's permission-check hook, which the direct
# paths skip; so they take the statement path while such a hook is set.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

# Only the harness may skip this test, and it says why (test/cassert.sh:
# no pgaudit is built for the assertion-enabled server).
plan skip_all => $ENV{STORAGE_TEST_SKIP_MODULES}
  if $ENV{STORAGE_TEST_SKIP_MODULES};

my $node = PostgreSQL::Test::Cluster->new('audit');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'pgaudit'
pgaudit.role = 'regress_auditor'
storage.test_now = '2030-01-01 12:00:00+00'
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pgaudit;
	CREATE EXTENSION storage;
	CREATE ROLE regress_auditor;
	GRANT SELECT, INSERT, UPDATE, DELETE ON storage_records TO regress_auditor;
});

# psql, not safe_psql: on a server without the view the audit checks
# below still run
my ($paths, $reasons);
$node->psql('postgres', q{SELECT string_agg(DISTINCT path, ',') FROM storage_write_path},
	stdout => \$paths);
is($paths, 'statement', 'with pgaudit loaded every operation takes the statement path');
$node->psql('postgres', q{SELECT string_agg(DISTINCT reason, ',') FROM storage_write_path},
	stdout => \$reasons);
like($reasons, qr/ExecutorCheckPerms_hook/, 'and storage_write_path says why');

# audited(SQL, CLASS, COMMAND): SQL leaves an AUDIT: OBJECT entry of that
# class and command on the records table
sub audited
{
	my ($sql, $class, $command) = @_;
	my $offset = -s $node->logfile;
	$node->safe_psql('postgres', $sql);
	my $log = slurp_file($node->logfile, $offset);
	like($log,
		qr/AUDIT: OBJECT,\d+,\d+,$class,$command,TABLE,public\.storage_records,/,
		"$sql: audited as $class $command");
}

audited(q{SELECT storage_save('a', 'x')}, 'WRITE', 'INSERT');
audited(q{SELECT storage_save('a', 'y', 1)}, 'WRITE', 'UPDATE');
audited(q{SELECT storage_touch('a', '2031-01-01', -1)}, 'WRITE', 'UPDATE');
audited(q{SELECT storage_save_many('{b,c}', '{x,y}')}, 'WRITE', 'INSERT');
audited(q{SELECT storage_delete('a')}, 'WRITE', 'DELETE');
audited(q{SELECT storage_delete_many('{b}')}, 'WRITE', 'DELETE');
$node->safe_psql('postgres',
	q{SELECT storage_save('gone', 'x', -1, '2030-01-01 11:00+00')});
audited(q{SELECT storage_purge_expired()}, 'WRITE', 'DELETE');
audited(q{SELECT storage_upsert_val('{bk}', 'k', 'v')}, 'WRITE', 'INSERT');
audited(q{SELECT storage_get_keys('{bk}')}, 'READ', 'SELECT');
audited(q{SELECT storage_get_items('{bk}')}, 'READ', 'SELECT');
audited(q{SELECT storage_fetch('c')}, 'READ', 'SELECT');

is($node->safe_psql('postgres', q{SELECT string_agg(id, ',' ORDER BY id) FROM storage_records}),
	'bk/k,c', 'the records are as written');

$node->stop;
done_testing();
