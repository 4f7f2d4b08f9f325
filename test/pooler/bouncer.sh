# test/pooler/bouncer.sh: starts a throwaway pgbouncer (sourced by
# test/pooler/run.sh and bench/client_section.sh).  Run as the unprivileged
# user: pgbouncer refuses to run as root.
#
# start_pgbouncer PGBOUNCER DIR NAME PORT DATABASES [SETTING...]
#   DIR: where the ini, log, pid file and the Unix socket .s.PGSQL.PORT go
#   (no TCP listener); DATABASES: the [databases] lines (newline-separated);
#   SETTINGs: more [pgbouncer] lines.  auth_type = trust for user
#   "postgres" (the servers these scripts start trust their socket too).
#   Returns non-zero, with the log on stderr, if it does not come up.
# stop_pgbouncer DIR NAME

start_pgbouncer() {
	local bin=$1 dir=$2 name=$3 port=$4 databases=$5 s i
	local ini="$dir/pgbouncer-$name.ini"
	shift 5
	echo '"postgres" ""' >"$dir/pgbouncer-userlist.txt"
	{
		echo "[databases]"
		echo "$databases"
		echo "[pgbouncer]"
		echo "listen_addr ="
		echo "listen_port = $port"
		echo "unix_socket_dir = $dir"
		echo "auth_type = trust"
		echo "auth_file = $dir/pgbouncer-userlist.txt"
		echo "max_client_conn = 200"
		echo "logfile = $dir/pgbouncer-$name.log"
		echo "pidfile = $dir/pgbouncer-$name.pid"
		for s in "$@"; do echo "$s"; done
	} >"$ini"
	"$bin" -d "$ini" >"$dir/pgbouncer-$name.out" 2>&1 || {
		cat "$dir/pgbouncer-$name.out" "$dir/pgbouncer-$name.log" >&2 2>/dev/null
		return 1
	}
	for i in $(seq 100); do
		[ -S "$dir/.s.PGSQL.$port" ] && return 0
		sleep 0.1
	done
	cat "$dir/pgbouncer-$name.log" >&2
	return 1
}

stop_pgbouncer() {
	[ -f "$1/pgbouncer-$2.pid" ] && kill "$(cat "$1/pgbouncer-$2.pid")" 2>/dev/null
	return 0
}

# The version as major * 1000 + minor (1.18.0 -> 1018).
pgbouncer_version() {
	"$1" --version | sed -n 's/^PgBouncer \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1 |
		awk '{print $1 * 1000 + $2}'
}
