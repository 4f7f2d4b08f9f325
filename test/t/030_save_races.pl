# Many sessions saving the same few records at once, through the direct
# write path and through the SPI statements: no update is ever lost or
# applied twice, every create of an id succeeds exactly once, and nothing
# deadlocks or fails with anything but SV001.  Each successful save is
# logged in the same transaction, so a record's final version must be one
# more than the saves logged for it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;

my $node = PostgreSQL::Test::Cluster->new('races');
$node->init;
$node->append_conf('postgresql.conf', "max_connections = 20\n");
$node->start;

$node->safe_psql('postgres', q{
CREATE EXTENSION storage;
CREATE TABLE race_log (id text NOT NULL);

-- one pgbench transaction: kind 1-4 versioned save of what was read,
-- 5-6 unversioned save, 7-8 a batch of five neighbours (overlapping other
-- batches in both orders), 9-10 a create of an id that others create too
CREATE FUNCTION race_step(i int, kind int, c int) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  k text := 'r' || i;
  v bigint;
  ids text[];
BEGIN
  IF kind <= 4 THEN
    SELECT version INTO v FROM storage_fetch(k);
    BEGIN
      PERFORM storage_save(k, 'v', v);
      INSERT INTO race_log VALUES (k);
    EXCEPTION WHEN SQLSTATE 'SV001' THEN
      NULL;
    END;
  ELSIF kind <= 6 THEN
    PERFORM storage_save(k, 'u');
    INSERT INTO race_log VALUES (k);
  ELSIF kind <= 8 THEN
    ids := ARRAY(SELECT 'r' || ((i + g * CASE WHEN kind = 7 THEN 1 ELSE -1 END + 20) % 20 + 1)
                   FROM generate_series(0, 4) AS g);
    PERFORM storage_save_many(ids, array_fill('b'::bytea, ARRAY[5]));
    INSERT INTO race_log SELECT unnest(ids);
  ELSE
    BEGIN
      PERFORM storage_save('c' || c, 'c', 0);
      INSERT INTO race_log VALUES ('c' || c);
    EXCEPTION WHEN SQLSTATE 'SV001' THEN
      NULL;
    END;
  END IF;
END $$;
});

sub check_mode
{
	my ($mode) = @_;

	$node->safe_psql('postgres', q{
		TRUNCATE race_log;
		DELETE FROM storage_records;
		SELECT storage_save('r' || i, 'start', 0) FROM generate_series(1, 20) AS i;
	});
	$node->pgbench(
		'--no-vacuum --client=6 --jobs=2 --time=4',
		0,
		[qr{processed: [1-9]}],
		[qr{^$}],
		"$mode: 6 clients race over 20 records without an error",
		{
			"race_$mode" => q{
\set i random(1, 20)
\set kind random(1, 10)
\set c random(1, 300)
SELECT race_step(:i, :kind, :c);
}
		});

	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM storage_records r
		 WHERE r.id LIKE 'r%'
		   AND r.version <> 1 + (SELECT count(*) FROM race_log l WHERE l.id = r.id)}),
		'0', "$mode: every record's version is 1 + its logged saves (none lost, none doubled)");
	cmp_ok($node->safe_psql('postgres', q{SELECT count(*) FROM race_log WHERE id LIKE 'r%'}),
		'>', 100, "$mode: the race saved records many times");
	is($node->safe_psql('postgres', q{
		SELECT count(*) FROM (SELECT id FROM race_log WHERE id LIKE 'c%'
		                       GROUP BY id HAVING count(*) <> 1) AS twice}),
		'0', "$mode: no id was created twice");
	is($node->safe_psql('postgres', q{
		SELECT (SELECT count(*) FROM storage_records WHERE id LIKE 'c%' AND version = 1)
		     = (SELECT count(*) FROM race_log WHERE id LIKE 'c%')}),
		't', "$mode: every create that succeeded left its record at version 1");
}

check_mode('direct');

$node->safe_psql('postgres', 'ALTER DATABASE postgres SET storage.direct_writes = off');
check_mode('spi');

$node->stop;
done_testing();
