//! Every column type of PostgreSQL 15, MariaDB 10.11 and SQLite is read without loss: the
//! decoders straight against real servers (exact values and cell issues), and data steps
//! copying every column into SQLite and PostgreSQL targets (exact target content).
//!
//! Tests named `*_end_to_end_rejects` depend on the data step turning cell issues into rejects
//! (rule "decode"); they are expected to fail until that wiring lands.

mod common;
mod support;

use common::mysql::MariaDbServer;
use common::pg::PgServer;
use cutover::engine::config::DbUrl;
use cutover::engine::db::{Db, Role, Rows};
use cutover::engine::decode::CellIssue;
use cutover::engine::value::Value;
use support::{Backend, TestProject, stderr, stdout};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn fetch(url: &str, dir: &std::path::Path, sql: &str, params: &[Value]) -> Rows {
    rt().block_on(async {
        let db = Db::connect(&DbUrl::new(url), dir, Role::Source).await.unwrap();
        let rows = db.fetch_all(sql, params).await.unwrap();
        db.close().await;
        rows
    })
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn json(s: &str) -> Value {
    Value::Json(serde_json::from_str(s).unwrap())
}

fn issue(column: usize, reason: &str) -> CellIssue {
    CellIssue {
        column,
        reason: reason.into(),
    }
}

/// Compare one row column by column, so a failure names the column.
fn assert_row(columns: &[String], got: &[Value], want: &[Value], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: column count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let same = match (g, w) {
            (Value::Real(a), Value::Real(b)) => a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
            _ => g == w,
        };
        assert!(same, "{what}: column {} ({i}): got {g:?}, want {w:?}", columns[i]);
    }
}

/// A data step copying `cols` of `table` into the same-named target table.
fn copy_step(table: &str, cols: &[&str], batch: usize) -> String {
    let mut s = format!(
        "kind = \"data\"\nbatch_size = {batch}\n[source]\ntable = \"{table}\"\nkey = \"id\"\n\n[target]\ntable = \"{table}\"\nnatural_key = [\"id\"]\n"
    );
    for c in cols {
        s.push_str(&format!("\n[[fields]]\ntarget = \"{c}\"\nsource = \"{c}\"\n"));
    }
    s
}

/// The target's rows as text (NULL as `None`), read through the engine's own decoder.
fn target_rows(p: &TestProject, table: &str) -> Vec<Vec<Option<String>>> {
    let rows = fetch(
        &p.target_url,
        p.path(),
        &format!("SELECT * FROM {table} ORDER BY id"),
        &[],
    );
    rows.rows
        .iter()
        .map(|r| r.iter().map(|v| v.to_text()).collect())
        .collect()
}

fn assert_text_rows(got: &[Vec<Option<String>>], want: &[Vec<Option<&str>>], cols: &[&str], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: row count: {got:?}");
    for (r, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {r} width");
        for (c, (gv, wv)) in g.iter().zip(w).enumerate() {
            assert_eq!(gv.as_deref(), *wv, "{what}: row {r} column {}", cols[c]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const PG_SETUP: &str = r#"
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE TABLE every_type (
  id int PRIMARY KEY,
  c_numeric numeric, c_num_scaled numeric(12,4), c_money money, c_time time, c_timetz timetz,
  c_interval interval, c_enum mood, c_int_arr int[], c_text_arr text[], c_enum_arr mood[],
  c_num_arr numeric[], c_inet inet, c_cidr cidr, c_mac macaddr, c_xml xml, c_point point,
  c_box box, c_oid oid, c_bit bit(4), c_varbit varbit, c_ts timestamp, c_tstz timestamptz,
  c_date date, c_real real, c_double double precision, c_char char(3), c_varchar varchar(10),
  c_name name, c_text text, c_bytea bytea, c_json json, c_jsonb jsonb, c_uuid uuid, c_bool bool,
  c_int2 smallint, c_int8 bigint, c_tsv tsvector, c_range int4range, c_tsrange tsrange
);
SET timezone = 'UTC';
INSERT INTO every_type VALUES
 (1, '12345678901234567890.123456789012', '-12.5', '1234.56', '23:59:59.999999', '04:05:06+05:30',
  '1 year 2 mons 3 days 04:05:06.5', 'happy', '{1,NULL,3}', '{"a b","ü",NULL}', '{happy,sad}',
  '{1.50,NaN}', '192.168.0.1', '10.0.0.0/8', '08:00:2b:01:02:03', '<a>ü</a>', '(1.5,-2)',
  '(1,2),(3,4)', 4294967295, B'1010', B'101', '2024-02-29 23:59:58.123456',
  '2024-01-01 00:00:00.5+02', '2024-02-29', 'NaN', 'Infinity', 'ab', 'ünïcødé', 'n',
  E'line1\nline2 \\ ''q''', '\x00ff', '{"b": 1, "a": [1.5]}', '{"k": "v", "n": 123456789012345678901234567890}',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', true, -32768, 9223372036854775807, 'a:1A b',
  '[1,10)', '[2024-01-01 10:00,infinity)'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (3, 'NaN', '0', '-0.05', '00:00:00', '23:00:00-01', '-1 days -00:00:01.5', 'sad', '{{1,2},{3,4}}',
  '{}', '{}', '{}', '2001:db8::1', '2001:db8::/32', '00:00:00:00:00:00', '<b/>', '(0,0)',
  '(0,0),(0,0)', 0, B'0000', B'', 'infinity', '-infinity', '-infinity', '-Infinity', 'NaN', '',
  '', '', '', '\x', '[]', 'null', '00000000-0000-0000-0000-000000000000', false, 32767,
  -9223372036854775808, '', 'empty', '(,)');
"#;

const PG_COLS: [&str; 40] = [
    "id",
    "c_numeric",
    "c_num_scaled",
    "c_money",
    "c_time",
    "c_timetz",
    "c_interval",
    "c_enum",
    "c_int_arr",
    "c_text_arr",
    "c_enum_arr",
    "c_num_arr",
    "c_inet",
    "c_cidr",
    "c_mac",
    "c_xml",
    "c_point",
    "c_box",
    "c_oid",
    "c_bit",
    "c_varbit",
    "c_ts",
    "c_tstz",
    "c_date",
    "c_real",
    "c_double",
    "c_char",
    "c_varchar",
    "c_name",
    "c_text",
    "c_bytea",
    "c_json",
    "c_jsonb",
    "c_uuid",
    "c_bool",
    "c_int2",
    "c_int8",
    "c_tsv",
    "c_range",
    "c_tsrange",
];

fn pg_expected() -> Vec<Vec<Value>> {
    vec![
        vec![
            Value::Int(1),
            text("12345678901234567890.123456789012"),
            text("-12.5000"),
            text("1234.56"),
            text("23:59:59.999999"),
            text("04:05:06+05:30"),
            text("P1Y2M3DT4H5M6.5S"),
            text("happy"),
            json("[1,null,3]"),
            json(r#"["a b","ü",null]"#),
            json(r#"["happy","sad"]"#),
            json(r#"["1.50","NaN"]"#),
            text("192.168.0.1"),
            text("10.0.0.0/8"),
            text("08:00:2b:01:02:03"),
            text("<a>ü</a>"),
            text("(1.5,-2)"),
            text("(3,4),(1,2)"),
            Value::Int(4294967295),
            text("1010"),
            text("101"),
            text("2024-02-29T23:59:58.123456"),
            text("2023-12-31T22:00:00.500+00:00"),
            text("2024-02-29"),
            Value::Real(f64::NAN),
            Value::Real(f64::INFINITY),
            text("ab "),
            text("ünïcødé"),
            text("n"),
            text("line1\nline2 \\ 'q'"),
            Value::bytes(vec![0x00, 0xff]),
            json(r#"{"a":[1.5],"b":1}"#),
            // a number serde_json would round stays exact text
            text(r#"{"k": "v", "n": 123456789012345678901234567890}"#),
            text("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            Value::Bool(true),
            Value::Int(-32768),
            Value::Int(i64::MAX),
            text("'a':1A 'b'"),
            text("[1,10)"),
            text("[2024-01-01T10:00:00,infinity)"),
        ],
        std::iter::once(Value::Int(2))
            .chain(std::iter::repeat_n(Value::Null, 39))
            .collect(),
        vec![
            Value::Int(3),
            text("NaN"),
            text("0.0000"),
            text("-0.05"),
            text("00:00:00"),
            text("23:00:00-01:00"),
            text("P-1DT-1.5S"),
            text("sad"),
            json("[[1,2],[3,4]]"),
            json("[]"),
            json("[]"),
            json("[]"),
            text("2001:db8::1"),
            text("2001:db8::/32"),
            text("00:00:00:00:00:00"),
            text("<b/>"),
            text("(0,0)"),
            text("(0,0),(0,0)"),
            Value::Int(0),
            text("0000"),
            text(""),
            text("infinity"),
            text("-infinity"),
            text("-infinity"),
            Value::Real(f64::NEG_INFINITY),
            Value::Real(f64::NAN),
            text("   "),
            text(""),
            text(""),
            text(""),
            Value::bytes(vec![]),
            json("[]"),
            json("null"),
            text("00000000-0000-0000-0000-000000000000"),
            Value::Bool(false),
            Value::Int(32767),
            Value::Int(i64::MIN),
            text(""),
            text("empty"),
            text("(,)"),
        ],
    ]
}

fn pg_source() -> String {
    let pg = PgServer::shared();
    let src = pg.fresh_db("types");
    pg.psql(&src, PG_SETUP);
    src
}

#[test]
fn postgres_every_type_decodes_exactly() {
    let src = pg_source();
    let dir = tempfile::tempdir().unwrap();
    let rows = fetch(&src, dir.path(), "SELECT * FROM every_type ORDER BY id", &[]);
    assert_eq!(rows.columns, PG_COLS.map(String::from).to_vec());
    assert_eq!(rows.issues, vec![]);
    let want = pg_expected();
    assert_eq!(rows.rows.len(), want.len());
    for (k, (g, w)) in rows.rows.iter().zip(&want).enumerate() {
        assert_row(&rows.columns, g, w, &format!("row {k}"));
    }
    // an unknown type fails the read, naming the column and type, never silently
    let err = rt().block_on(async {
        let db = Db::connect(&DbUrl::new(&src), dir.path(), Role::Source).await.unwrap();
        db.fetch_all("SELECT 'a & b'::tsquery AS q", &[])
            .await
            .unwrap_err()
            .to_string()
    });
    assert!(err.contains("\"q\"") && err.to_lowercase().contains("tsquery"), "{err}");
}

/// The text each PostgreSQL source row arrives as in a text/jsonb target.
fn pg_expected_text(target: Backend) -> Vec<Vec<Option<&'static str>>> {
    // Reals travel as reals (read back as `Value::Real`, written here as Rust does); into
    // SQLite's text columns they are written as text, infinities spelt as PostgreSQL does.
    let (nan, inf, ninf) = match target {
        Backend::Sqlite => (Some("NaN"), Some("Infinity"), Some("-Infinity")),
        Backend::Postgres => (Some("NaN"), Some("inf"), Some("-inf")),
    };
    let (bytes1, bytes3) = (Some("00ff"), Some(""));
    let (yes, no) = match target {
        Backend::Sqlite => (Some("1"), Some("0")),
        Backend::Postgres => (Some("true"), Some("false")),
    };
    vec![
        vec![
            Some("1"),
            Some("12345678901234567890.123456789012"),
            Some("-12.5000"),
            Some("1234.56"),
            Some("23:59:59.999999"),
            Some("04:05:06+05:30"),
            Some("P1Y2M3DT4H5M6.5S"),
            Some("happy"),
            Some("[1,null,3]"),
            Some(r#"["a b","ü",null]"#),
            Some(r#"["happy","sad"]"#),
            Some(r#"["1.50","NaN"]"#),
            Some("192.168.0.1"),
            Some("10.0.0.0/8"),
            Some("08:00:2b:01:02:03"),
            Some("<a>ü</a>"),
            Some("(1.5,-2)"),
            Some("(3,4),(1,2)"),
            Some("4294967295"),
            Some("1010"),
            Some("101"),
            Some("2024-02-29T23:59:58.123456"),
            Some("2023-12-31T22:00:00.500+00:00"),
            Some("2024-02-29"),
            nan,
            inf,
            Some("ab "),
            Some("ünïcødé"),
            Some("n"),
            Some("line1\nline2 \\ 'q'"),
            bytes1,
            Some(r#"{"a":[1.5],"b":1}"#),
            Some(r#"{"k": "v", "n": 123456789012345678901234567890}"#),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
            yes,
            Some("-32768"),
            Some("9223372036854775807"),
            Some("'a':1A 'b'"),
            Some("[1,10)"),
            Some("[2024-01-01T10:00:00,infinity)"),
        ],
        std::iter::once(Some("2"))
            .chain(std::iter::repeat_n(None, 39))
            .collect(),
        vec![
            Some("3"),
            Some("NaN"),
            Some("0.0000"),
            Some("-0.05"),
            Some("00:00:00"),
            Some("23:00:00-01:00"),
            Some("P-1DT-1.5S"),
            Some("sad"),
            Some("[[1,2],[3,4]]"),
            Some("[]"),
            Some("[]"),
            Some("[]"),
            Some("2001:db8::1"),
            Some("2001:db8::/32"),
            Some("00:00:00:00:00:00"),
            Some("<b/>"),
            Some("(0,0)"),
            Some("(0,0),(0,0)"),
            Some("0"),
            Some("0000"),
            Some(""),
            Some("infinity"),
            Some("-infinity"),
            Some("-infinity"),
            ninf,
            nan,
            Some("   "),
            Some(""),
            Some(""),
            Some(""),
            bytes3,
            Some("[]"),
            Some("null"),
            Some("00000000-0000-0000-0000-000000000000"),
            no,
            Some("32767"),
            Some("-9223372036854775808"),
            Some(""),
            Some("empty"),
            Some("(,)"),
        ],
    ]
}

#[test]
fn postgres_every_type_copies_into_sqlite_and_postgres() {
    let src = pg_source();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let p = TestProject::new(backend);
        let cols: Vec<String> = PG_COLS
            .iter()
            .map(|c| {
                let ty = match (backend, *c) {
                    (_, "id") => "INTEGER PRIMARY KEY",
                    (Backend::Postgres, "c_json" | "c_int_arr" | "c_text_arr" | "c_enum_arr" | "c_num_arr") => "jsonb",
                    (Backend::Postgres, "c_bytea") => "bytea",
                    (Backend::Sqlite, "c_bytea") => "BLOB",
                    // PostgreSQL keeps reals as reals; SQLite cannot store NaN in a REAL
                    // column (it becomes NULL), so the SQLite target keeps them as text, every
                    // digit kept (the writer does not let SQLite round them to 15 digits).
                    (Backend::Postgres, "c_real" | "c_double") => "double precision",
                    (Backend::Sqlite, "c_real" | "c_double") => "TEXT",
                    (Backend::Postgres, "c_bool") => "boolean",
                    (Backend::Sqlite, "c_bool") => "INTEGER",
                    _ => "TEXT",
                };
                format!("{c} {ty}")
            })
            .collect();
        p.schema_step(
            "20250101T090000_schema",
            &format!("CREATE TABLE every_type ({});\n", cols.join(", ")),
            "DROP TABLE every_type;\n",
        );
        // two rows a batch: later pages are read with a key parameter
        p.data_step("20250101T090100_copy", &copy_step("every_type", &PG_COLS, 2));
        let o = p.run(&["--source", &src, "up", "--continue-on-error"]);
        assert!(o.status.success(), "{backend:?}: {}\n{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("source 3 = written 3"),
            "{backend:?}: {}",
            stdout(&o)
        );
        let mut got = target_rows(&p, "every_type");
        // bytes arrive as bytes: compare them in hex
        for r in &mut got {
            if let Some(b) = r.get_mut(30)
                && let Some(s) = b.as_mut()
            {
                *s = s.trim_start_matches("\\x").to_string();
            }
        }
        assert_text_rows(
            &got,
            &pg_expected_text(backend),
            &PG_COLS,
            &format!("{backend:?} target"),
        );
        if backend == Backend::Sqlite {
            assert_eq!(
                support::sqlite3(
                    &p.path().join("target.db"),
                    "SELECT typeof(c_bytea) FROM every_type ORDER BY id"
                ),
                "blob\nnull\nblob"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// MariaDB

const MY_SETUP: &str = r#"
SET NAMES utf8mb4;
SET SESSION sql_mode = '';
SET SESSION time_zone = '+00:00';
CREATE TABLE every_type (
  id INT PRIMARY KEY,
  c_tiny TINYINT, c_tiny_u TINYINT UNSIGNED, c_bool TINYINT(1), c_small SMALLINT,
  c_small_u SMALLINT UNSIGNED, c_med MEDIUMINT, c_med_u MEDIUMINT UNSIGNED, c_int INT,
  c_int_u INT UNSIGNED, c_big BIGINT, c_big_u BIGINT UNSIGNED, c_dec DECIMAL(30,10),
  c_float FLOAT, c_double DOUBLE, c_date DATE, c_dt DATETIME(3), c_dt6 DATETIME(6),
  c_ts TIMESTAMP(2) NULL DEFAULT NULL, c_time TIME(1), c_year YEAR, c_bit BIT(10),
  c_enum ENUM('a','b'), c_set SET('x','y','z'), c_json JSON, c_char CHAR(5),
  c_varchar VARCHAR(20), c_text TEXT, c_latin VARCHAR(20) CHARACTER SET latin1,
  c_bin BINARY(3), c_varbin VARBINARY(10), c_blob BLOB, c_geom GEOMETRY, c_inet6 INET6,
  c_uuid UUID, c_varchar_bin VARCHAR(10) COLLATE utf8mb4_bin
) CHARACTER SET utf8mb4;
INSERT INTO every_type VALUES
 (1, -128, 255, 2, -32768, 65535, -8388608, 16777215, -2147483648, 4294967295,
  -9223372036854775808, 18446744073709551615, '12345678901234567890.0123456789', 0.1,
  1.7976931348623157e308, '2024-02-29', '2024-02-29 23:59:58.123', '2024-02-29 23:59:58.000001',
  '2024-02-29 23:59:58.12', '-838:59:59.0', 2155, b'1010101010', 'b', 'x,z',
  '{"a": [1, 2.5], "b": null}', 'ab', 'ünïcødé 😀', 'line1\nline2', 'café', 'ab', x'00ff',
  x'deadbeef', ST_GeomFromText('POINT(1 2)'), '::1', '123e4567-e89b-12d3-a456-426614174000', 'Case'),
 (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL),
 (3, 127, 0, 1, 32767, 0, 8388607, 0, 2147483647, 0, 9223372036854775807, 9223372036854775807,
  '-0.0000000001', -1.5, -2.5e-300, '1000-01-01', '9999-12-31 23:59:59.999', '1970-01-01 00:00:00',
  '2038-01-19 03:14:07.99', '838:59:59.9', 1901, b'0', 'a', '', '[]', '', '', '', '', '', '',
  '', NULL, 'ffff::ffff', '00000000-0000-0000-0000-000000000000', '');
"#;

/// Rows whose dates MariaDB accepts but are no dates: each must be an issue naming the column.
const MY_ZERO_DATES: &str = r#"
SET SESSION sql_mode = '';
CREATE TABLE zero_dates (id INT PRIMARY KEY, d DATE, dt DATETIME, note VARCHAR(10));
INSERT INTO zero_dates VALUES
 (1, '0000-00-00', '2020-01-02 03:04:05', 'zero'),
 (2, '2020-00-00', '2020-01-02 03:04:05', 'month'),
 (3, '2021-03-04', '0000-00-00 00:00:00', 'zero dt'),
 (4, '2021-03-04', '2021-03-04 05:06:07', 'good');
"#;

const MY_COLS: [&str; 36] = [
    "id",
    "c_tiny",
    "c_tiny_u",
    "c_bool",
    "c_small",
    "c_small_u",
    "c_med",
    "c_med_u",
    "c_int",
    "c_int_u",
    "c_big",
    "c_big_u",
    "c_dec",
    "c_float",
    "c_double",
    "c_date",
    "c_dt",
    "c_dt6",
    "c_ts",
    "c_time",
    "c_year",
    "c_bit",
    "c_enum",
    "c_set",
    "c_json",
    "c_char",
    "c_varchar",
    "c_text",
    "c_latin",
    "c_bin",
    "c_varbin",
    "c_blob",
    "c_geom",
    "c_inet6",
    "c_uuid",
    "c_varchar_bin",
];

/// WKB of POINT(1 2) behind MariaDB's 4-byte SRID.
fn point_1_2() -> Vec<u8> {
    let mut b = vec![0, 0, 0, 0, 1, 1, 0, 0, 0];
    b.extend(1f64.to_le_bytes());
    b.extend(2f64.to_le_bytes());
    b
}

fn my_expected() -> Vec<Vec<Value>> {
    vec![
        vec![
            Value::Int(1),
            Value::Int(-128),
            Value::Int(255),
            Value::Int(2),
            Value::Int(-32768),
            Value::Int(65535),
            Value::Int(-8388608),
            Value::Int(16777215),
            Value::Int(-2147483648),
            Value::Int(4294967295),
            Value::Int(i64::MIN),
            text("18446744073709551615"),
            text("12345678901234567890.0123456789"),
            Value::Real(0.1),
            Value::Real(f64::MAX),
            text("2024-02-29"),
            text("2024-02-29T23:59:58.123"),
            text("2024-02-29T23:59:58.000001"),
            text("2024-02-29T23:59:58.120"),
            text("-838:59:59"),
            Value::Int(2155),
            Value::Int(0b1010101010),
            text("b"),
            text("x,z"),
            json(r#"{"a":[1,2.5],"b":null}"#),
            text("ab"),
            text("ünïcødé 😀"),
            text("line1\nline2"),
            text("café"),
            Value::bytes(b"ab\0".to_vec()),
            Value::bytes(vec![0x00, 0xff]),
            Value::bytes(vec![0xde, 0xad, 0xbe, 0xef]),
            Value::bytes(point_1_2()),
            text("::1"),
            text("123e4567-e89b-12d3-a456-426614174000"),
            text("Case"),
        ],
        std::iter::once(Value::Int(2))
            .chain(std::iter::repeat_n(Value::Null, 35))
            .collect(),
        vec![
            Value::Int(3),
            Value::Int(127),
            Value::Int(0),
            Value::Int(1),
            Value::Int(32767),
            Value::Int(0),
            Value::Int(8388607),
            Value::Int(0),
            Value::Int(2147483647),
            Value::Int(0),
            Value::Int(i64::MAX),
            Value::Int(i64::MAX),
            text("-0.0000000001"),
            Value::Real(-1.5),
            Value::Real(-2.5e-300),
            text("1000-01-01"),
            text("9999-12-31T23:59:59.999"),
            text("1970-01-01T00:00:00"),
            text("2038-01-19T03:14:07.990"),
            text("838:59:59.900"),
            Value::Int(1901),
            Value::Int(0),
            text("a"),
            text(""),
            json("[]"),
            text(""),
            text(""),
            text(""),
            text(""),
            Value::bytes(vec![0, 0, 0]),
            Value::bytes(vec![]),
            Value::bytes(vec![]),
            Value::Null,
            text("ffff::ffff"),
            text("00000000-0000-0000-0000-000000000000"),
            text(""),
        ],
    ]
}

fn my_source() -> String {
    let maria = MariaDbServer::shared();
    let src = maria.fresh_db("types");
    maria.mysql(&src, MY_SETUP);
    maria.mysql(&src, MY_ZERO_DATES);
    src
}

#[test]
fn mariadb_every_type_decodes_exactly_in_both_protocols() {
    let src = my_source();
    let dir = tempfile::tempdir().unwrap();
    // Without parameters sqlx uses the text protocol, with them the binary one.
    for (what, sql, params) in [
        ("text protocol", "SELECT * FROM every_type ORDER BY id", vec![]),
        (
            "binary protocol",
            "SELECT * FROM every_type WHERE id > $1 ORDER BY id",
            vec![Value::Int(0)],
        ),
    ] {
        let rows = fetch(&src, dir.path(), sql, &params);
        assert_eq!(rows.columns, MY_COLS.map(String::from).to_vec());
        assert_eq!(rows.issues, vec![], "{what}");
        let want = my_expected();
        assert_eq!(rows.rows.len(), want.len(), "{what}");
        for (k, (g, w)) in rows.rows.iter().zip(&want).enumerate() {
            assert_row(&rows.columns, g, w, &format!("{what} row {k}"));
        }

        let zd = fetch(&src, dir.path(), &sql.replace("every_type", "zero_dates"), &params);
        assert_eq!(
            zd.issues,
            vec![
                (0, issue(1, "zero date '0000-00-00' is not a date")),
                (1, issue(1, "date '2020-00-00' has a zero month or day")),
                (2, issue(2, "zero date '0000-00-00 00:00:00' is not a date")),
            ],
            "{what}"
        );
        // the cell with an issue is NULL, the rest of its row is read
        assert_eq!(
            zd.rows[0],
            vec![Value::Int(1), Value::Null, text("2020-01-02T03:04:05"), text("zero")]
        );
        assert_eq!(
            zd.rows[2],
            vec![Value::Int(3), text("2021-03-04"), Value::Null, text("zero dt")]
        );
        assert_eq!(
            zd.rows[3],
            vec![
                Value::Int(4),
                text("2021-03-04"),
                text("2021-03-04T05:06:07"),
                text("good")
            ]
        );
    }
}

/// The text each MariaDB source row arrives as in a text target (bytes in BLOB/bytea, read
/// back as hex).
fn my_expected_text() -> Vec<Vec<Option<String>>> {
    my_expected()
        .into_iter()
        .map(|r| r.iter().map(|v| v.to_text()).collect())
        .collect()
}

fn my_target_type(backend: Backend, c: &str) -> &'static str {
    match (backend, c) {
        (_, "id") => "INTEGER PRIMARY KEY",
        (Backend::Postgres, "c_json") => "jsonb",
        (Backend::Postgres, "c_bin" | "c_varbin" | "c_blob" | "c_geom") => "bytea",
        (Backend::Sqlite, "c_bin" | "c_varbin" | "c_blob" | "c_geom") => "BLOB",
        // reals stay reals (a TEXT column in SQLite would round them to 15 digits)
        (Backend::Postgres, "c_float" | "c_double") => "double precision",
        (Backend::Sqlite, "c_float" | "c_double") => "REAL",
        _ => "TEXT",
    }
}

#[test]
fn mariadb_every_type_copies_into_sqlite_and_postgres() {
    let src = my_source();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let p = TestProject::new(backend);
        let cols: Vec<String> = MY_COLS
            .iter()
            .map(|c| format!("{c} {}", my_target_type(backend, c)))
            .collect();
        p.schema_step(
            "20250101T090000_schema",
            &format!("CREATE TABLE every_type ({});\n", cols.join(", ")),
            "DROP TABLE every_type;\n",
        );
        // two rows a batch: the first page is read with the text protocol, later pages (with
        // a key parameter) with the binary one
        p.data_step("20250101T090100_copy", &copy_step("every_type", &MY_COLS, 2));
        let o = p.run(&["--source", &src, "up", "--continue-on-error"]);
        assert!(o.status.success(), "{backend:?}: {}\n{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("source 3 = written 3"),
            "{backend:?}: {}",
            stdout(&o)
        );
        let got = target_rows(&p, "every_type");
        let want = my_expected_text();
        let want: Vec<Vec<Option<&str>>> = want.iter().map(|r| r.iter().map(|v| v.as_deref()).collect()).collect();
        assert_text_rows(&got, &want, &MY_COLS, &format!("{backend:?} target"));
    }
}

/// DEPENDS ON THE REJECT WIRING (cell issues → rejects with rule "decode"): expected to fail
/// until that lands.
#[test]
fn mariadb_zero_dates_end_to_end_rejects() {
    let src = my_source();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let p = TestProject::new(backend);
        p.schema_step(
            "20250101T090000_schema",
            "CREATE TABLE zero_dates (id INTEGER PRIMARY KEY, d TEXT, dt TEXT, note TEXT);\n",
            "DROP TABLE zero_dates;\n",
        );
        p.data_step(
            "20250101T090100_copy",
            &copy_step("zero_dates", &["id", "d", "dt", "note"], 2),
        );
        let o = p.run(&["--source", &src, "up", "--continue-on-error"]);
        assert!(o.status.success(), "{backend:?}: {}\n{}", stdout(&o), stderr(&o));
        assert!(
            stdout(&o).contains("source 4 = written 1 + rejected 3")
                || stdout(&o).contains("source 4 = written 1 + skipped 0 + rejected 3"),
            "{backend:?}: {}",
            stdout(&o)
        );
        assert_eq!(
            p.target_sql("SELECT id || ' ' || d || ' ' || dt || ' ' || note FROM zero_dates"),
            "4 2021-03-04 2021-03-04T05:06:07 good"
        );
        let rejects = p.json(&["--source", &src, "rejects", "list"]);
        let mut got: Vec<(String, String, String, String)> = rejects
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["source_key"].as_str().unwrap_or_default().to_string(),
                    r["field"].as_str().unwrap_or_default().to_string(),
                    r["rule"].as_str().unwrap_or_default().to_string(),
                    r["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        got.sort();
        let want = [
            ("1", "d", "zero date '0000-00-00' is not a date"),
            ("2", "d", "date '2020-00-00' has a zero month or day"),
            ("3", "dt", "zero date '0000-00-00 00:00:00' is not a date"),
        ];
        assert_eq!(got.len(), want.len(), "{backend:?}: {rejects}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!(
                (g.0.as_str(), g.1.as_str(), g.2.as_str()),
                (w.0, w.1, "decode"),
                "{backend:?}"
            );
            assert!(
                g.3.contains(w.2),
                "{backend:?}: reason {:?} should contain {:?}",
                g.3,
                w.2
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite

const SQLITE_SETUP: &str = "
CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, label VARCHAR(10), raw BLOB, whenever DATETIME);
INSERT INTO notes VALUES
 (1, CAST(x'6869ff21' AS TEXT), 'bad text', x'00', NULL),
 (2, x'68c3a96c6c6f', 'blob text', x'01', x'0102'),
 (3, 'a' || char(0) || 'b', 'nul', x'6869', '2024-01-01'),
 (4, 'fine', x'ff00', NULL, NULL),
 (5, 'ünï', 'plain', x'ff', 1.5);
";

#[test]
fn sqlite_text_bytes_decode_or_report_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    support::sqlite3(&dir.path().join("source.db"), SQLITE_SETUP);
    let rows = fetch("sqlite://source.db", dir.path(), "SELECT * FROM notes ORDER BY id", &[]);
    assert_eq!(
        rows.issues,
        vec![
            (0, issue(1, "invalid UTF-8 at byte 2")),
            (3, issue(2, "BLOB value in a text column: invalid UTF-8 at byte 0")),
        ]
    );
    let want = vec![
        vec![
            Value::Int(1),
            Value::Null,
            text("bad text"),
            Value::bytes(vec![0]),
            Value::Null,
        ],
        // a BLOB in a TEXT column is its UTF-8 text; a BLOB in a DATETIME column stays bytes
        vec![
            Value::Int(2),
            text("héllo"),
            text("blob text"),
            Value::bytes(vec![1]),
            Value::bytes(vec![1, 2]),
        ],
        vec![
            Value::Int(3),
            text("a\0b"),
            text("nul"),
            Value::bytes(b"hi".to_vec()),
            text("2024-01-01"),
        ],
        vec![Value::Int(4), text("fine"), Value::Null, Value::Null, Value::Null],
        vec![
            Value::Int(5),
            text("ünï"),
            text("plain"),
            Value::bytes(vec![0xff]),
            Value::Real(1.5),
        ],
    ];
    assert_eq!(rows.rows.len(), want.len());
    for (k, (g, w)) in rows.rows.iter().zip(&want).enumerate() {
        assert_row(&rows.columns, g, w, &format!("row {k}"));
    }
}

const NOTES_STEP_COLS: [&str; 4] = ["id", "body", "label", "raw"];

#[test]
fn sqlite_blob_in_text_column_arrives_as_text() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(SQLITE_SETUP);
    // only the rows that decode: the others wait for the reject wiring (test below)
    p.source_sql("DELETE FROM notes WHERE id IN (1, 4);");
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, label TEXT, raw BLOB);\n",
        "DROP TABLE notes;\n",
    );
    p.data_step("20250101T090100_copy", &copy_step("notes", &NOTES_STEP_COLS, 2));
    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("source 3 = written 3"), "{}", stdout(&o));
    assert_eq!(
        p.target_sql("SELECT id, typeof(body), hex(body), label, typeof(raw), hex(raw) FROM notes ORDER BY id"),
        "2|text|68C3A96C6C6F|blob text|blob|01\n3|text|610062|nul|blob|6869\n5|text|C3BC6EC3AF|plain|blob|FF"
    );
}

/// DEPENDS ON THE REJECT WIRING (cell issues → rejects with rule "decode"): expected to fail
/// until that lands.
#[test]
fn sqlite_invalid_utf8_end_to_end_rejects() {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(SQLITE_SETUP);
    p.schema_step(
        "20250101T090000_schema",
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, label TEXT, raw BLOB);\n",
        "DROP TABLE notes;\n",
    );
    p.data_step("20250101T090100_copy", &copy_step("notes", &NOTES_STEP_COLS, 2));
    let o = p.run(&["up", "--continue-on-error"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("source 5 = written 3 + rejected 2")
            || stdout(&o).contains("source 5 = written 3 + skipped 0 + rejected 2"),
        "{}",
        stdout(&o)
    );
    assert_eq!(p.target_sql("SELECT id FROM notes ORDER BY id"), "2\n3\n5");
    let rejects = p.json(&["rejects", "list"]);
    let mut got: Vec<(String, String, String)> = rejects
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["source_key"].as_str().unwrap_or_default().to_string(),
                r["field"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), 2, "{rejects}");
    assert_eq!((got[0].0.as_str(), got[0].1.as_str()), ("1", "body"));
    assert!(got[0].2.contains("invalid UTF-8 at byte 2"), "{:?}", got[0]);
    assert_eq!((got[1].0.as_str(), got[1].1.as_str()), ("4", "label"));
    assert!(got[1].2.contains("invalid UTF-8 at byte 0"), "{:?}", got[1]);
}

#[test]
fn postgres_domains_composites_ranges_and_geometry_decode_exactly() {
    let pg = PgServer::shared();
    let src = pg.fresh_db("types2");
    pg.psql(
        &src,
        "CREATE DOMAIN amount AS numeric(10,2);
         CREATE TYPE addr AS (street text, no int, since date);
         CREATE TABLE more (id int PRIMARY KEY, a amount, ad addr, ads addr[], r8 int8range, rd daterange,
           rn numrange, circ circle, ln line, seg lseg, pth path, poly polygon, m8 macaddr8, lsn pg_lsn,
           ivs interval[], tsv tsvector, big numeric);
         INSERT INTO more VALUES (1, 12.3, ROW('Main \"St\"', 7, '2020-02-02'), ARRAY[ROW('x', NULL, NULL)::addr],
           '[1,5]', '[2020-01-01,2020-02-01)', '(1.50,2.5]', '<(1,2),3>', '{1,-1,0}', '[(0,0),(1,1)]',
           '[(0,0),(1,1)]', '((0,0),(1,0),(1,1))', '08:00:2b:01:02:03:04:05', '16/B374D848',
           '{1 day,-00:00:01}', $$'it''s':1 z:2B$$, 1e40);",
    );
    let dir = tempfile::tempdir().unwrap();
    let rows = fetch(&src, dir.path(), "SELECT * FROM more", &[]);
    assert_eq!(rows.issues, vec![]);
    let want = vec![
        Value::Int(1),
        text("12.30"),
        json(r#"{"street":"Main \"St\"","no":7,"since":"2020-02-02"}"#),
        json(r#"[{"street":"x","no":null,"since":null}]"#),
        text("[1,6)"),
        text("[2020-01-01,2020-02-01)"),
        text("(1.50,2.5]"),
        text("<(1,2),3>"),
        text("{1,-1,0}"),
        text("[(0,0),(1,1)]"),
        text("[(0,0),(1,1)]"),
        text("((0,0),(1,0),(1,1))"),
        text("08:00:2b:01:02:03:04:05"),
        text("16/B374D848"),
        json(r#"["P1D","PT-1S"]"#),
        text("'it''s':1 'z':2B"),
        text("10000000000000000000000000000000000000000"),
    ];
    assert_row(&rows.columns, &rows.rows[0], &want, "row 0");
}
