#!/usr/bin/env bash
# cutover beside what an operator would pick instead, on one source and one throwaway PostgreSQL
# server, interleaved, RUNS rounds (default 3):
#   cutover        the realistic step (6 transforms, 4 validations, ID map, rejects) -> PostgreSQL
#   cutover-plain  a plain copy step (no transforms, no ID map)                     -> PostgreSQL
#   pgloader       the same table, no transforms (skipped when not installed)       -> PostgreSQL
#   pipe           sqlite3 -csv | psql \copy into a table with a primary key        -> PostgreSQL
#   cutover-sqlite the realistic step                                               -> SQLite
#   sql-sqlite     sqlite3: ATTACH + INSERT ... SELECT with the same transforms in SQL -> SQLite
#   cutover-csv    a ROWS-row patients.csv (`cutover generate import`) through fixtures/import's
#                  patients step (trim, upper, dates, email, E.164 phone, gender map, address
#                  JSON, duplicate MRNs skipped, rejects) -> PostgreSQL (whole `up`, wall time)
#   copy-csv       psql \copy of the same file (its blank lines taken out beforehand, untimed:
#                  COPY refuses them) into a plain table with a primary key   -> PostgreSQL
# Prints min-max wall seconds, rows/s, peak RSS, and cutover's speed as a multiple of each
# alternative's (above 1 = cutover is faster). cutover's figure is its step time (the bench's
# own clock, without building the project); the others are whole-command wall time.
# Usage: benches/compare.sh [ROWS] [RUNS]   (needs target/release/cutover; pgloader optional:
# apt-get install -y pgloader). CSV_ONLY=1 runs only the two CSV cases.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
rows=${1:-1000000}
runs=${2:-3}
bin=$PWD/target/release/cutover
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "no PostgreSQL server binaries: apt-get install -y postgresql" >&2; exit 1; }
[ -x "$bin" ] || { echo "build first: cargo build --release" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "needs sqlite3: apt-get install -y sqlite3" >&2; exit 1; }
if ! command -v pgloader >/dev/null && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q pgloader >/dev/null 2>&1 || true
fi
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
pg_url() { echo "postgres://postgres@localhost/$1?host=$dir"; }

# time_of LABEL CMD...: wall seconds and peak RSS (MB) of one command into $work/results;
# for cutover, the step's own seconds from its --json line.
time_of() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/t" "$@" >"$work/$label.out" 2>"$work/$label.err" || {
    echo "$label failed:" >&2; tail -5 "$work/$label.err" >&2; return 1; }
  local secs kb
  read -r secs kb <"$work/t"
  local step
  step=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$work/$label.out" | head -n 1)
  echo "$label ${step:-$secs} $((kb / 1024))" >>"$work/results"
}

csv_only=${CSV_ONLY:-}
# The source, generated once by a first SQLite bench (a warm-up run, not counted; the plain
# step, which generates the same source and copies it faster).
[ -n "$csv_only" ] || "$bin" bench --plain --rows "$rows" --dir "$work/gen" --json >/dev/null
src="$work/gen/source.db"

# The CSV case's export folder (patients.csv only: no orders), and what its import must write.
"$bin" generate import "$work/export" --patients "$rows" --orders 0 --orders-format csv --seed 42 >/dev/null
csv_written=$(tr -d ' \n' <"$work/export/manifest.json" |
  sed -n 's/.*"patients.csv":{"rows":[0-9]*,"blank_lines":[0-9]*,"written":\([0-9]*\).*/\1/p')
[ -n "$csv_written" ] || { echo "no patients.csv written count in the manifest" >&2; exit 1; }
# COPY reads a blank line as a short row and stops: the same file without them (not timed).
sed '/^\r$/d' "$work/export/patients.csv" >"$work/patients-noblank.csv"
chmod 644 "$work/patients-noblank.csv"
csv_cols='mrn, "lastName", "firstName", "dateOfBirth", gender, "legacyFlags", email, phone, address, city, state, "zipCode", country, "externalId", "lastVisit", notes'
# The import project: fixtures/import with its schema and patients steps (orders left out).
mkdir -p "$work/import/migrations"
cp fixtures/import/cutover.toml "$work/import/"
cp -r fixtures/import/migrations/*_create_tables fixtures/import/migrations/*_patients "$work/import/migrations/"
cols="id, first_name, last_name, email, phone, dob, gender, allergies, created_at"

# The realistic step's transforms written as SQL, for SQLite's own best: trim, lower, digits of
# the phone as E.164, both date formats, gender codes, allergies as a JSON array, a new id and
# the ID-map rows, with the same indexes as cutover's tables.
cat >"$work/transform.sql" <<EOF
ATTACH '$src' AS src;
CREATE TABLE persons (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, first_name TEXT, last_name TEXT, email TEXT,
  phone TEXT, date_of_birth DATE, gender TEXT, allergies TEXT, created_at TEXT);
CREATE TABLE id_map (map TEXT NOT NULL, old_key TEXT NOT NULL, new_id TEXT NOT NULL, version TEXT NOT NULL,
  alias INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (map, old_key));
CREATE INDEX id_map_version ON id_map (version);
BEGIN;
INSERT INTO persons
SELECT lower(hex(randomblob(16))), CAST(id AS TEXT), trim(first_name), trim(last_name),
  CASE WHEN lower(trim(email)) LIKE '%_@_%._%' THEN lower(trim(email)) END,
  CASE WHEN length(d) = 10 THEN '+1' || d WHEN length(d) = 11 AND d LIKE '1%' THEN '+' || d END,
  CASE WHEN dob LIKE '__/__/____' THEN substr(dob, 7, 4) || '-' || substr(dob, 1, 2) || '-' || substr(dob, 4, 2) ELSE date(dob) END,
  CASE upper(trim(gender)) WHEN 'M' THEN 'male' WHEN 'F' THEN 'female' WHEN 'U' THEN 'unknown' ELSE 'other' END,
  CASE WHEN trim(allergies) = '' THEN '[]'
       ELSE '["' || replace(replace(replace(trim(allergies), ' ,', ','), ', ', ','), ',', '","') || '"]' END,
  created_at
FROM (SELECT *, replace(replace(replace(replace(replace(phone, '(', ''), ')', ''), ' ', ''), '-', ''), '+', '') AS d
      FROM src.patients);
INSERT INTO id_map SELECT 'patients', legacy_id, id, '20250101T000100', 0 FROM persons;
COMMIT;
EOF

psql_ -d postgres -c "SELECT 1" >/dev/null
for r in $(seq 1 "$runs"); do
  # The CSV cases: cutover's patients step against psql \copy, same file, same server.
  for db in csv$r copy$r; do psql_ -d postgres -c "CREATE DATABASE $db" >/dev/null; done
  rm -f "$work/import/"*.log
  time_of cutover-csv "$bin" -C "$work/import" --source "file://$work/export/" --target "$(pg_url csv$r)" up --continue-on-error
  psql_ -d "copy$r" -c "CREATE TABLE patients_raw (line bigserial PRIMARY KEY, mrn text, \"lastName\" text, \"firstName\" text,
    \"dateOfBirth\" text, gender text, \"legacyFlags\" text, email text, phone text, address text, city text, state text,
    \"zipCode\" text, country text, \"externalId\" text, \"lastVisit\" text, notes text)" >/dev/null
  time_of copy-csv psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -U postgres -d "copy$r" \
    -c "\\copy patients_raw ($csv_cols) FROM '$work/patients-noblank.csv' CSV HEADER"
  n=$(psql_ -d "csv$r" -At -c "SELECT count(*) FROM patients")
  [ "$n" = "$csv_written" ] || { echo "cutover-csv wrote $n patients, the manifest says $csv_written" >&2; exit 1; }
  n=$(psql_ -d "copy$r" -At -c "SELECT count(*) FROM patients_raw")
  [ "$n" = "$rows" ] || { echo "copy-csv loaded $n rows, expected $rows" >&2; exit 1; }
  for db in csv$r copy$r; do psql_ -d postgres -c "DROP DATABASE $db" >/dev/null; done
  [ -z "$csv_only" ] || continue
  for db in cut$r plain$r pipe$r pgl$r; do psql_ -d postgres -c "CREATE DATABASE $db" >/dev/null; done
  time_of cutover "$bin" bench --rows "$rows" --source-db "$src" --dir "$work/cut$r" --target-url "$(pg_url cut$r)" --json
  time_of cutover-plain "$bin" bench --plain --rows "$rows" --source-db "$src" --dir "$work/plain$r" --target-url "$(pg_url plain$r)" --json
  if command -v pgloader >/dev/null; then
    time_of pgloader pgloader --quiet "sqlite://$src" "postgresql://postgres@unix:$dir:5432/pgl$r"
  fi
  psql_ -d "pipe$r" -c "CREATE TABLE patients (id bigint PRIMARY KEY, first_name text, last_name text, email text, phone text, dob text, gender text, allergies text, created_at text)" >/dev/null
  cat >"$work/pipe.sh" <<EOF
set -euo pipefail
sqlite3 -csv "$src" "SELECT $cols FROM patients" |
  psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -U postgres -d pipe$r -c "\\copy patients ($cols) FROM STDIN CSV"
EOF
  time_of pipe bash "$work/pipe.sh"
  time_of cutover-sqlite "$bin" bench --rows "$rows" --source-db "$src" --dir "$work/sq$r" --json
  rm -f "$work/sql$r.db"
  time_of sql-sqlite sqlite3 "$work/sql$r.db" ".read $work/transform.sql"
  # Every figure must be of a complete copy.
  for pair in "cut$r persons" "plain$r patients_copy" "pipe$r patients"; do
    set -- $pair
    n=$(psql_ -d "$1" -At -c "SELECT count(*) FROM $2")
    [ "$n" = "$rows" ] || { echo "$1.$2 has $n rows, expected $rows" >&2; exit 1; }
  done
  n=$(sqlite3 "$work/sq$r/target.db" "SELECT count(*) FROM persons")
  [ "$n" = "$rows" ] || { echo "cutover-sqlite wrote $n rows, expected $rows" >&2; exit 1; }
  rm -rf "$work/cut$r" "$work/plain$r" "$work/sq$r" "$work/sql$r.db"
  for db in cut$r plain$r pipe$r pgl$r; do psql_ -d postgres -c "DROP DATABASE $db" >/dev/null; done
done

echo "rows=$rows runs=$runs (interleaved); seconds: cutover = its step, others = whole command"
printf "%-15s %14s %18s %10s\n" tool seconds rows_per_s peak_MB
stat_of() { awk -v l="$1" -v r="$rows" '$1==l { n++; s[n]=$2; if ($3>m) m=$3 }
  END { if (!n) exit; asort(s); printf "%s %s %s %d %d %d\n", s[1], s[n], s[int((n+1)/2)], r/s[n], r/s[1], m }' "$work/results"; }
for label in cutover cutover-plain pgloader pipe cutover-sqlite sql-sqlite cutover-csv copy-csv; do
  st=$(stat_of "$label") || continue
  [ -n "$st" ] || continue
  read -r lo hi med rlo rhi mb <<<"$st"
  printf "%-15s %6s-%-7s %8s-%-9s %10s\n" "$label" "$lo" "$hi" "$rlo" "$rhi" "$mb"
  echo "$label $med" >>"$work/medians"
done
med() { awk -v l="$1" '$1==l {print $2}' "$work/medians"; }
ratio() { # cutover's speed as a multiple of the other's, from medians
  local a b; a=$(med "$1"); b=$(med "$2")
  [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" -v x="$1" -v y="$2" 'BEGIN{printf "%-15s vs %-12s %5.2fx\n", x, y, b/a}'
  return 0
}
echo "speed ratios (medians; above 1 = cutover faster):"
ratio cutover pgloader
ratio cutover pipe
ratio cutover-plain pipe
ratio cutover-plain pgloader
ratio cutover-sqlite sql-sqlite
ratio cutover-csv copy-csv
