#!/usr/bin/env bash
# cutover beside what an operator would pick instead, on one source and one throwaway PostgreSQL
# server, in one run: `cutover bench` (6 transforms, 4 validations, ID map, rejects), pgloader
# (plain copy, no transforms) and `sqlite3 -csv | psql \copy` (raw pipe). Prints wall seconds,
# rows/s and peak RSS of each, and cutover's time as a ratio of each alternative.
# Usage: benches/compare.sh [ROWS]   (needs target/release/cutover; pgloader is optional)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=${1:-1000000}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "no PostgreSQL server binaries: apt-get install -y postgresql" >&2; exit 1; }
[ -x target/release/cutover ] || { echo "build first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d /tmp/cutover-compare.XXXXXX)
chmod 755 "$dir"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then chown postgres "$dir"; as_pg=(runuser -u postgres --); fi
work=$(mktemp -d /tmp/cutover-compare-work.XXXXXX)
cleanup() { "${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$dir" "$work"; }
trap cleanup EXIT
"${as_pg[@]}" "$bindir/initdb" -D "$dir/data" -U postgres -A trust >/dev/null
"${as_pg[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses='' -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null
psql_() { psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -U postgres "$@"; }
for db in cut pipe pgl; do psql_ -d postgres -c "CREATE DATABASE $db" >/dev/null; done

# time_of LABEL CMD...: wall seconds and peak RSS (MB) of one command, appended to $work/results
time_of() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/$label.out" 2>"$work/$label.err" || {
    echo "$label failed:" >&2; tail -5 "$work/$label.err" >&2; return 1; }
  read -r secs kb <"$work/t"
  echo "$label $secs $((kb / 1024))" >>"$work/results"
}

# cutover generates the source (not timed in its own figure) and runs the step into `cut`.
time_of cutover ./target/release/cutover bench --rows "$rows" --dir "$work/bench" \
  --target-url "postgres://postgres@localhost/cut?host=$dir" --json
src="$work/bench/source.db"
cols="id, first_name, last_name, email, phone, dob, gender, allergies, created_at"

psql_ -d pipe -c "CREATE TABLE patients (id bigint PRIMARY KEY, first_name text, last_name text, email text, phone text, dob text, gender text, allergies text, created_at text)" >/dev/null
cat >"$work/pipe.sh" <<EOF
set -euo pipefail
sqlite3 -csv "$src" "SELECT $cols FROM patients" |
  psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -U postgres -d pipe -c "\\copy patients ($cols) FROM STDIN CSV"
EOF
time_of pipe bash "$work/pipe.sh"

if command -v pgloader >/dev/null; then
  time_of pgloader pgloader --quiet "sqlite://$src" "postgresql://postgres@unix:$dir:5432/pgl"
fi

cut_rows=$(psql_ -d cut -At -c "SELECT count(*) FROM persons")
pipe_rows=$(psql_ -d pipe -At -c "SELECT count(*) FROM patients")
pgl_rows=$( (psql_ -d pgl -At -c "SELECT count(*) FROM patients" 2>/dev/null) || echo "-")
cut_secs=$(awk '$1=="cutover"{print $2}' "$work/results")
cut_step=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$work/cutover.out")
echo "rows=$rows  target rows: cutover=$cut_rows pipe=$pipe_rows pgloader=$pgl_rows"
echo "cutover step alone (no source generation): ${cut_step}s"
printf "%-10s %10s %12s %10s %22s\n" tool wall_s rows_per_s peak_MB "cutover_step/this"
while read -r label secs mb; do
  rate=$(awk -v r="$rows" -v s="$secs" 'BEGIN{printf "%d", r/s}')
  ratio=$(awk -v c="$cut_step" -v s="$secs" 'BEGIN{printf "%.2f", c/s}')
  [ "$label" = cutover ] && rate="(incl. gen)" && ratio="-"
  printf "%-10s %10s %12s %10s %22s\n" "$label" "$secs" "$rate" "$mb" "$ratio"
done <"$work/results"
