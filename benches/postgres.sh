#!/usr/bin/env bash
# Run `cutover bench` against a throwaway PostgreSQL server started from the system's binaries
# (unix socket in a temp dir, stopped afterwards). Usage: benches/postgres.sh [ROWS] [extra bench args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=${1:-1000000}
shift || true
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "no PostgreSQL server binaries: apt-get install -y postgresql" >&2; exit 1; }
dir=$(mktemp -d /tmp/cutover-bench-pg.XXXXXX)
chmod 755 "$dir"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; as_pg=(runuser -u postgres --); fi
cleanup() { "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir" cutover-bench-pg; }
trap cleanup EXIT
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
rm -rf cutover-bench-pg
${CUTOVER_BENCH_WRAPPER:-} ./target/release/cutover bench --rows "$rows" --dir cutover-bench-pg --target-url "postgres://postgres@localhost/postgres?host=$dir" "$@"
