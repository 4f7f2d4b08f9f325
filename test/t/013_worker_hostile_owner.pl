# The expiry worker against a hostile database owner: a role that owns a
# database (but is no superuser) sets the database's search_path to a
# schema of its own full of operators shadowing the ones the purge uses,
# forces the purge's statement path (storage.direct_writes = off,
# REPEATABLE READ) or tries to stop it (read-only default, a role, short
# timeouts).  None of its code may ever run in the worker, it must not
# become superuser, and the expired records must be purged all the same.
# When the owner is given the records table, its trigger runs as the owner,
# never as the superuser the worker is.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = PostgreSQL::Test::Cluster->new('hostile');
$node->init;
$node->append_conf('postgresql.conf', q{
shared_preload_libraries = 'storage'
storage.purge_interval = '200ms'
});
$node->start;

$node->safe_psql('postgres', q{
	CREATE ROLE mallory LOGIN;
	CREATE DATABASE evil OWNER mallory;
});
# a superuser installs the extension in the owner's database (in public,
# which the database owner owns since PostgreSQL 15)
$node->safe_psql('evil', 'CREATE EXTENSION storage');

# The owner's own settings in the database would stop the test's sessions
# too (read-only, 5 ms timeouts).  Options in the startup packet take
# precedence over the database's settings, so the test's sessions start
# without them (a SET as the first statement could itself be cancelled by
# a 5 ms statement_timeout on a loaded machine); each session also undoes
# them, for what the startup options do not cover.
$ENV{PGOPTIONS} = '-c statement_timeout=0 -c lock_timeout=0 -c default_transaction_read_only=off';
my $undo = q{
	SET statement_timeout = 0;
	SET lock_timeout = 0;
	SET default_transaction_read_only = off;
};

sub as_mallory
{
	my ($sql) = @_;
	return $node->safe_psql('evil', $undo . $sql, extra_params => [ '-U', 'mallory' ]);
}

# The owner's trap: the operators the purge statement compares expiry
# times with, each logging who called it and making mallory superuser (once
# per transaction: the purge calls them for every row).
as_mallory(q{
	CREATE SCHEMA mal;
	CREATE TABLE mal.hits (what text, who text, session text);
	GRANT INSERT ON mal.hits TO PUBLIC;
	CREATE FUNCTION mal.hit(what text) RETURNS void
	LANGUAGE plpgsql AS $$
	BEGIN
		INSERT INTO mal.hits
		VALUES (what, pg_catalog.current_user(), pg_catalog.session_user());
		IF NOT (SELECT rolsuper FROM pg_catalog.pg_roles
		         WHERE rolname OPERATOR(pg_catalog.=) 'mallory') THEN
			BEGIN
				EXECUTE 'ALTER ROLE mallory SUPERUSER';
			EXCEPTION WHEN OTHERS THEN
				NULL;
			END;
		END IF;
	END $$;
	CREATE FUNCTION mal.ts_le(timestamptz, timestamptz) RETURNS boolean
	LANGUAGE plpgsql AS $$
	BEGIN PERFORM mal.hit('<= timestamptz'); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
	CREATE OPERATOR mal.<= (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mal.ts_le);
	CREATE FUNCTION mal.ts_gt(timestamptz, timestamptz) RETURNS boolean
	LANGUAGE plpgsql AS $$
	BEGIN PERFORM mal.hit('> timestamptz'); RETURN $1 OPERATOR(pg_catalog.>) $2; END $$;
	CREATE OPERATOR mal.> (LEFTARG = timestamptz, RIGHTARG = timestamptz, FUNCTION = mal.ts_gt);
});

# What the test itself runs is schema-qualified and sets its own safe
# environment, so that only the worker could ever call the trap.
my $safe = $undo . q{
	SET search_path = pg_catalog, pg_temp;
	SET default_transaction_isolation = 'read committed';
	SET role = NONE;
};

sub fill
{
	my ($prefix) = @_;
	$node->safe_psql('evil', $safe . qq{
		SELECT pg_catalog.count(public.storage_save('$prefix:e' OPERATOR(pg_catalog.||) i::text,
		           '\\x01', -1, pg_catalog.now() OPERATOR(pg_catalog.-) interval '1 minute'))
		  FROM pg_catalog.generate_series(1, 500) AS i;
		SELECT pg_catalog.count(public.storage_save('$prefix:l' OPERATOR(pg_catalog.||) i::text,
		           '\\x01', -1, pg_catalog.now() OPERATOR(pg_catalog.+) interval '1 hour'))
		  FROM pg_catalog.generate_series(1, 10) AS i;
	});
}

sub query
{
	my ($sql) = @_;
	return $node->safe_psql('evil', $safe . $sql);
}

# true once no expired record is left (false after the default timeout)
sub purged
{
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		return 1 if query(q{
			SELECT pg_catalog.count(*) FROM public.storage_records
			 WHERE expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()}) eq '0';
		usleep(100_000);
	}
	return 0;
}

# one attack: the owner's database settings, expired records, a worker visit
sub attack
{
	my ($name, @settings) = @_;

	as_mallory('ALTER DATABASE evil RESET ALL');
	as_mallory("ALTER DATABASE evil SET $_") for @settings;
	query('TRUNCATE mal.hits');
	my $purged_before = query('SELECT rows_purged_total FROM public.storage_worker_status()') || 0;
	fill($name);

	ok(purged(),
		"$name: the expired records are purged");
	ok(query('SELECT rows_purged_total FROM public.storage_worker_status()') >= $purged_before + 500,
		"$name: by the worker");
	is(query(q{SELECT pg_catalog.count(*) FROM public.storage_records
	            WHERE id OPERATOR(pg_catalog.~~) } . "'$name:l%'"),
		'10', "$name: the live records are untouched");
	is(query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'mallory'"),
		'f', "$name: the owner did not become superuser");
	is(query(q{SELECT pg_catalog.string_agg(what OPERATOR(pg_catalog.||) ' by ' OPERATOR(pg_catalog.||) who
	               OPERATOR(pg_catalog.||) ' in a session of ' OPERATOR(pg_catalog.||) session, ', ') FROM mal.hits}),
		'', "$name: none of the owner's operators ran");
	is(query('SELECT last_error FROM public.storage_worker_status()'),
		'', "$name: the worker reports no error");

	# if an attack got through, start the next one from a clean state
	query('ALTER ROLE mallory NOSUPERUSER');
}

my $path = q{search_path = mal, pg_catalog, public};

attack('direct_off', $path, 'storage.direct_writes = off');
attack('repeatable', $path, q{default_transaction_isolation = 'repeatable read'});
attack('serializable', $path, q{default_transaction_isolation = 'serializable'},
	'storage.direct_writes = off');
attack('read_only', $path, 'default_transaction_read_only = on',
	'storage.direct_writes = off');
attack('role', $path, 'role = mallory', q{statement_timeout = '5ms'},
	q{lock_timeout = '5ms'}, 'storage.direct_writes = off');

# The owner is given the records table (a superuser's choice): now its own
# trigger fires when the worker purges, and it must run as the owner, in a
# security-restricted operation, with the pinned search_path.
query('ALTER TABLE public.storage_records OWNER TO mallory');
as_mallory(q{
	CREATE FUNCTION mal.on_purge() RETURNS trigger
	LANGUAGE plpgsql AS $$
	BEGIN
		PERFORM mal.hit('trigger, search_path ' OPERATOR(pg_catalog.||)
		                pg_catalog.current_setting('search_path'));
		RETURN OLD;
	END $$;
	CREATE TRIGGER on_purge BEFORE DELETE ON public.storage_records
	FOR EACH ROW EXECUTE FUNCTION mal.on_purge();
});
as_mallory('ALTER DATABASE evil RESET ALL');
as_mallory("ALTER DATABASE evil SET $path");
query('TRUNCATE mal.hits');
fill('owned');
ok(purged(),
	'table owned by the database owner: the expired records are purged');
is(query("SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'mallory'"),
	'f', 'table owned by the database owner: its trigger did not make it superuser');
# (only the worker deletes; its session is the bootstrap superuser's)
my $bootstrap = query('SELECT rolname FROM pg_catalog.pg_roles WHERE oid OPERATOR(pg_catalog.=) 10');
is(query(q{SELECT pg_catalog.count(*), pg_catalog.string_agg(DISTINCT who, ','),
                  pg_catalog.string_agg(DISTINCT session, ','), pg_catalog.string_agg(DISTINCT what, ',')
             FROM mal.hits}),
	"500|mallory|$bootstrap|trigger, search_path pg_catalog, pg_temp",
	'table owned by the database owner: its trigger ran as the owner, with the pinned search_path, and nothing else of theirs ran');

$node->stop;
done_testing();
