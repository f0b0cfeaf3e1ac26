//! Buckets (`[buckets.NAME]` of cutover.toml, `store_file = { bucket = … }`): files that keep
//! the bucket's limits are stored byte for byte under their SHA-256; a file over the size limit
//! or of a type the bucket does not take is a reject (rule `bucket`) and never lands in the
//! folder; `detect_mime` reads the type from the bytes; verify re-hashes every stored file and
//! finds every key the rows name; `down` removes the files only its rows named; a dry run
//! writes no file. Driven through the real binary on a SQLite source, into SQLite and a real
//! PostgreSQL target (and from a PostgreSQL `bytea` source).

mod common;
#[macro_use]
mod support;

use common::pg::PgServer;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use support::{Backend, TestProject, stderr, stdout};

const SCHEMA: &str = "20250101T090000_schema";
const AVATARS: &str = "20250101T090100_avatars";

/// Small files with real headers (magic numbers), as hex.
fn png(tag: u8) -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    b.extend_from_slice(b"\0\0\0\0IEND\xaeB`\x82");
    b.push(tag);
    b
}

fn jpeg() -> Vec<u8> {
    b"\xff\xd8\xff\xe0\0\x10JFIF\0\x01\x01\0\0\x01\0\x01\0\0\xff\xd9".to_vec()
}

fn gif() -> Vec<u8> {
    b"GIF89a\x01\0\x01\0\x80\0\0\0\0\0\xff\xff\xff!\xf9\x04\x01\0\0\0\0,\0\0\0\0\x01\0\x01\0\0\x02\x02D\x01\0;".to_vec()
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

fn sha256(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A source row: id, name, content.
type SourceFile = (i64, Option<&'static str>, Option<Vec<u8>>);

/// The source rows.
fn source_files() -> Vec<SourceFile> {
    let mut big = png(0);
    big.resize(300, 7); // over the bucket's 256-byte limit
    vec![
        (1, Some("one.png"), Some(png(1))),
        (2, Some("two.jpg"), Some(jpeg())),
        (3, Some("three.gif"), Some(gif())), // a type the bucket does not take
        (4, Some("four.png"), Some(big)),    // over the size limit
        (5, Some("five"), None),             // NULL stays NULL
        (6, Some("six.png"), Some(png(1))),  // the same bytes as 1: one file
        (7, None, Some(png(7))),             // rejected by a later field: no file
        (8, Some("eight.pdf"), Some(pdf())), // not an image
    ]
}

const BUCKETS: &str = r#"
[buckets.avatars]
max_bytes = 256
mime = ["image/png", "image/jpeg"]

[buckets.records]
dir = "records-folder"
mime = ["application/pdf", "text/*"]
"#;

fn avatars_step() -> &'static str {
    r#"kind = "data"
[source]
table = "files"
key = "id"

[target]
table = "avatars"

[id_map]
column = "id"
map = "avatars"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "mime"
source = "content"
transforms = ["detect_mime"]

[[fields]]
target = "storage_key"
source = "content"
transforms = [{ store_file = { bucket = "avatars" } }]

[[fields]]
target = "name"
source = "name"
validate = [{ rule = "required" }]
"#
}

fn schema(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => {
            "CREATE TABLE avatars (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL UNIQUE, mime TEXT, storage_key TEXT, name TEXT NOT NULL);"
        }
        Backend::Postgres => {
            "CREATE TABLE avatars (id UUID PRIMARY KEY, legacy_id BIGINT NOT NULL UNIQUE, mime TEXT, storage_key TEXT, name TEXT NOT NULL);"
        }
    }
}

/// A project with the two buckets, the avatars step and a SQLite source of [`source_files`].
fn project(b: Backend) -> TestProject {
    let p = TestProject::with_config(b, BUCKETS);
    let mut sql = String::from("CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, content BLOB);\n");
    for (id, name, content) in source_files() {
        let name = name.map(|n| format!("'{n}'")).unwrap_or_else(|| "NULL".into());
        let content = content
            .map(|c| format!("X'{}'", hex(&c)))
            .unwrap_or_else(|| "NULL".into());
        sql.push_str(&format!("INSERT INTO files VALUES ({id}, {name}, {content});\n"));
    }
    p.source_sql(&sql);
    p.schema_step(SCHEMA, schema(b), "DROP TABLE avatars;");
    p.data_step(AVATARS, avatars_step());
    p
}

/// Every file under a folder, by its path relative to it (`ab/abcdef…`), with its bytes.
fn files_in(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(shards) = std::fs::read_dir(dir) else { return out };
    for s in shards.flatten() {
        for f in std::fs::read_dir(s.path()).into_iter().flatten().flatten() {
            let key = format!(
                "{}/{}",
                s.file_name().to_string_lossy(),
                f.file_name().to_string_lossy()
            );
            out.insert(key, std::fs::read(f.path()).expect("read stored file"));
        }
    }
    out
}

fn bucket_dir(p: &TestProject) -> PathBuf {
    p.path().join("buckets").join("avatars")
}

fn rejects(p: &TestProject) -> Vec<serde_json::Value> {
    p.json(&["rejects", "list"]).as_array().expect("rejects array").clone()
}

fn step_counts(p: &TestProject) -> serde_json::Value {
    let v = p.json(&["status"]);
    v["migrations"]
        .as_array()
        .expect("migrations")
        .iter()
        .find(|m| m["version"] == "20250101T090100")
        .unwrap_or_else(|| panic!("no avatars step in status: {v}"))["counts"]
        .clone()
}

/// The bucket check of `verify --json`, and whether verify passed.
fn bucket_check(p: &TestProject, extra: &[&str]) -> (bool, serde_json::Value) {
    let mut args = extra.to_vec();
    args.extend(["verify", "--json"]);
    let o = p.run(&args);
    let v: serde_json::Value =
        serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("verify: {e}: {}{}", stdout(&o), stderr(&o)));
    let check = v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["name"] == "bucket avatars")
        .unwrap_or_else(|| panic!("no bucket avatars check: {v}"))
        .clone();
    (v["ok"] == true, check)
}

/// Run the avatars step and check what landed: rows, rejects, books, files, MIME types.
fn assert_migrated(p: &TestProject, extra: &[&str]) {
    let mut up = extra.to_vec();
    up.extend(["up", "--continue-on-error"]);
    p.ok(&up);

    // Two bucket rejects with the contract's reasons, one `required` reject (row 7), one PDF.
    let mut got: Vec<(String, String, String)> = rejects(p)
        .iter()
        .filter(|r| r["level"] == "error")
        .map(|r| {
            (
                r["source_key"].as_str().unwrap_or_default().to_string(),
                r["rule"].as_str().unwrap_or_default().to_string(),
                r["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(
        got[0],
        (
            "3".into(),
            "bucket".into(),
            "file is image/gif (detected from its bytes), bucket avatars takes image/png, image/jpeg".into()
        )
    );
    assert_eq!(
        got[1],
        (
            "4".into(),
            "bucket".into(),
            "file is 300 bytes, over bucket avatars' limit of 256".into()
        )
    );
    assert_eq!((got[2].0.as_str(), got[2].1.as_str()), ("7", "required"), "{got:#?}");
    assert_eq!(
        got[3],
        (
            "8".into(),
            "bucket".into(),
            "file is application/pdf (detected from its bytes), bucket avatars takes image/png, image/jpeg".into()
        )
    );

    // The books: source 8 = written 4 + rejected 4, from the tables themselves and the ledger.
    assert_eq!(p.count("avatars"), 4);
    let c = step_counts(p);
    assert_eq!(
        (c["source"].as_i64(), c["written"].as_i64(), c["rejected"].as_i64()),
        (Some(8), Some(4), Some(4)),
        "{c}"
    );

    // Each written row: its MIME type from the bytes, its file byte-identical under its digest.
    let rows = p.target_sql("SELECT legacy_id, mime, storage_key FROM avatars ORDER BY legacy_id");
    let by_id: BTreeMap<i64, (Option<&'static str>, Option<Vec<u8>>)> =
        source_files().into_iter().map(|(id, n, c)| (id, (n, c))).collect();
    let stored = files_in(&bucket_dir(p));
    let mut seen = Vec::new();
    for line in rows.lines() {
        let cols: Vec<&str> = line.split('|').collect();
        let id: i64 = cols[0].trim().parse().expect("id");
        let (mime, key) = (cols[1].trim(), cols[2].trim());
        match &by_id[&id].1 {
            None => assert_eq!((mime, key), ("", ""), "row {id}: NULL stays NULL"),
            Some(bytes) => {
                let digest = sha256(bytes);
                assert_eq!(key, format!("{}/{digest}", &digest[..2]), "row {id}");
                assert_eq!(
                    stored.get(key),
                    Some(bytes),
                    "row {id}: the stored file is not the source's bytes"
                );
                assert_eq!(mime, if id == 2 { "image/jpeg" } else { "image/png" }, "row {id}");
                seen.push(key.to_string());
            }
        }
    }
    assert_eq!(seen.len(), 3, "{rows}");
    // Exactly the accepted files: the PNG once (rows 1 and 6), the JPEG; nothing of the
    // rejected rows 3, 4, 7 and 8, not even of row 7 whose bytes kept the bucket's limits.
    seen.sort();
    seen.dedup();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), seen);
    assert!(
        !p.path().join("records-folder").exists(),
        "nothing went to the records bucket"
    );
}

fn buckets_store_check_and_roll_back(b: Backend) {
    let p = project(b);
    assert_migrated(&p, &[]);

    // verify: every file checks out, every key the rows name is there.
    let (ok, c) = bucket_check(&p, &[]);
    assert!(ok, "verify failed: {c}");
    assert_eq!(c["ok"], true, "{c}");
    assert_eq!(c["kind"], "bucket", "{c}");
    let detail = c["detail"].as_str().unwrap_or_default().to_string();
    assert!(
        detail.starts_with("2 files, ") && detail.contains("every file matches its SHA-256"),
        "{detail}"
    );

    // Flip one byte of a stored file: verify fails and names it.
    let stored = files_in(&bucket_dir(&p));
    let (key, bytes) = stored.iter().next().expect("a stored file");
    let path = bucket_dir(&p).join(key);
    let mut bad = bytes.clone();
    bad[10] ^= 0xff;
    std::fs::write(&path, &bad).expect("corrupt");
    let (ok, c) = bucket_check(&p, &[]);
    assert!(!ok && c["ok"] == false, "a corrupted file passed: {c}");
    assert_eq!(
        c["detail"].as_str().unwrap_or_default(),
        format!("1 of 2 files does not match its name: {key}")
    );

    // Delete it instead: the key a row names is missing.
    std::fs::remove_file(&path).expect("delete");
    let (ok, c) = bucket_check(&p, &[]);
    assert!(!ok, "a missing file passed: {c}");
    assert_eq!(
        c["detail"].as_str().unwrap_or_default(),
        format!("1 of 2 storage keys the rows name is missing: {key}")
    );
    std::fs::write(&path, bytes).expect("restore");
    assert!(bucket_check(&p, &[]).0, "verify fails after the file is back");

    // down removes the step's rows and exactly the files only they named.
    let preview = p.ok(&["down", "--to", "20250101T090000", "--dry-run"]);
    assert!(preview.contains("remove 2 files from buckets/avatars/"), "{preview}");
    p.ok(&["down", "--to", "20250101T090000", "--yes"]);
    assert_eq!(p.count("avatars"), 0);
    assert!(
        files_in(&bucket_dir(&p)).is_empty(),
        "{:?}",
        files_in(&bucket_dir(&p)).keys()
    );
}
both!(buckets_store_check_and_roll_back);

/// A file another step still names stays when one step is rolled back.
#[test]
fn rollback_keeps_files_another_step_names() {
    let p = project(Backend::Sqlite);
    p.schema_step(
        "20250101T090200_more_schema",
        "CREATE TABLE more (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL UNIQUE, k TEXT);",
        "DROP TABLE more;",
    );
    p.data_step(
        "20250101T090300_more",
        r#"kind = "data"
[source]
query = "SELECT id, content FROM files WHERE id = 1"
key = "id"
[target]
table = "more"
[id_map]
column = "id"
map = "more"
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "k"
source = "content"
transforms = [{ store_file = { bucket = "avatars" } }]
"#,
    );
    p.ok(&["up", "--continue-on-error"]);
    assert_eq!(files_in(&bucket_dir(&p)).len(), 2);
    let preview = p.ok(&["down", "--to", "20250101T090200", "--dry-run"]);
    assert!(preview.contains("remove 0 files from buckets/avatars/"), "{preview}");
    p.ok(&["down", "--to", "20250101T090200", "--yes"]);
    let left = files_in(&bucket_dir(&p));
    assert_eq!(
        left.len(),
        2,
        "the avatars step still names both files: {:?}",
        left.keys()
    );
    p.ok(&["down", "--to", "20250101T090000", "--yes"]);
    assert!(files_in(&bucket_dir(&p)).is_empty());
}

#[test]
fn a_dry_run_writes_no_file() {
    let p = project(Backend::Sqlite);
    let out = p.ok(&["up", "--continue-on-error", "--dry-run"]);
    assert!(!bucket_dir(&p).exists(), "a dry run made the bucket folder:\n{out}");
    assert!(!p.path().join("buckets").exists());
}

#[test]
fn an_unknown_bucket_is_refused_naming_the_buckets() {
    let p = project(Backend::Sqlite);
    p.data_step(
        AVATARS,
        &avatars_step().replace("bucket = \"avatars\"", "bucket = \"avatarz\""),
    );
    let o = p.run(&["status"]);
    assert!(!o.status.success(), "status accepted an unknown bucket: {}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains(
            "store_file names bucket 'avatarz', which cutover.toml does not define; the buckets are avatars, records"
        ),
        "{err}"
    );
    assert!(err.contains("20250101T090100_avatars"), "{err}");
    // `dir` and `bucket` together are refused when the step loads.
    p.data_step(
        AVATARS,
        &avatars_step().replace("bucket = \"avatars\"", "bucket = \"avatars\", dir = \"x\""),
    );
    let o = p.run(&["up"]);
    assert!(!o.status.success());
    assert!(
        format!("{}{}", stdout(&o), stderr(&o)).contains("store_file takes `dir` or `bucket`, not both"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
}

#[test]
fn check_lists_each_bucket_folder() {
    let p = project(Backend::Sqlite);
    let o = p.run(&["check"]);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    let avatars = bucket_dir(&p);
    assert!(out.contains(&format!("bucket avatars {}:", avatars.display())), "{out}");
    assert!(
        out.contains(&format!(
            "bucket records {}:",
            p.path().join("records-folder").display()
        )),
        "{out}"
    );
}

/// A PostgreSQL `bytea` source into a PostgreSQL target: the same files, byte for byte.
#[test]
fn postgres_bytea_source() {
    let p = project(Backend::Postgres);
    let src = PgServer::shared().fresh_db("bucket_src");
    let mut sql = String::from("CREATE TABLE files (id INTEGER PRIMARY KEY, name TEXT, content BYTEA);\n");
    for (id, name, content) in source_files() {
        let name = name.map(|n| format!("'{n}'")).unwrap_or_else(|| "NULL".into());
        let content = content
            .map(|c| format!("'\\x{}'::bytea", hex(&c)))
            .unwrap_or_else(|| "NULL".into());
        sql.push_str(&format!("INSERT INTO files VALUES ({id}, {name}, {content});\n"));
    }
    PgServer::shared().psql(&src, &sql);
    let source = ["--source", src.as_str()];
    assert_migrated(&p, &source);
    let (ok, c) = bucket_check(&p, &source);
    assert!(ok, "{c}");
}

/// A key kept inside a JSON document column (`doc.file.key`, as a collection keeps it in
/// `data`): verify reads the keys there, and `down` removes the files they name. A temporary
/// file a killed run left in the bucket is swept by the next run.
fn keys_inside_a_json_column(b: Backend) {
    let p = project(b);
    let table = match b {
        Backend::Sqlite => "CREATE TABLE blobs (id TEXT PRIMARY KEY, legacy_id INTEGER NOT NULL UNIQUE, doc TEXT);",
        Backend::Postgres => "CREATE TABLE blobs (id UUID PRIMARY KEY, legacy_id BIGINT NOT NULL UNIQUE, doc JSONB);",
    };
    p.schema_step(SCHEMA, table, "DROP TABLE blobs;");
    p.data_step(
        AVATARS,
        r#"kind = "data"
[source]
query = "SELECT id, content FROM files WHERE id IN (1, 2, 5)"
key = "id"
[target]
table = "blobs"
[id_map]
column = "id"
map = "blobs"
[[fields]]
target = "legacy_id"
source = "id"
[[fields]]
target = "doc.file.key"
source = "content"
transforms = [{ store_file = { bucket = "avatars" } }]
[[fields]]
target = "doc.file.mime"
source = "content"
transforms = ["detect_mime"]
"#,
    );
    // A dead process's temporary file in the bucket.
    let mut done = std::process::Command::new("true").spawn().expect("spawn true");
    let dead = done.id();
    done.wait().expect("wait");
    let shard = bucket_dir(&p).join("ab");
    std::fs::create_dir_all(&shard).expect("mkdir");
    let orphan = shard.join(format!(".ab{}-0.{dead}", "0".repeat(62)));
    std::fs::write(&orphan, b"half").expect("orphan");

    p.ok(&["up"]);
    assert!(
        !orphan.exists(),
        "the killed run's temporary file is still in the bucket"
    );
    let stored = files_in(&bucket_dir(&p));
    assert_eq!(stored.len(), 2, "{:?}", stored.keys());
    let mimes = p.target_sql(match b {
        Backend::Sqlite => "SELECT json_extract(doc, '$.file.mime') FROM blobs ORDER BY legacy_id",
        Backend::Postgres => "SELECT doc #>> '{file,mime}' FROM blobs ORDER BY legacy_id",
    });
    // Row 5's NULL content leaves no MIME type (the last, empty line is trimmed).
    assert_eq!(p.count("blobs"), 3);
    assert_eq!(
        mimes.lines().map(str::trim).collect::<Vec<_>>(),
        ["image/png", "image/jpeg"]
    );
    let (ok, c) = bucket_check(&p, &[]);
    assert!(ok, "{c}");
    assert!(
        c["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("the rows name 2 keys"),
        "{c}"
    );

    let (key, bytes) = stored.iter().next().expect("a stored file");
    std::fs::remove_file(bucket_dir(&p).join(key)).expect("delete");
    let (ok, c) = bucket_check(&p, &[]);
    assert!(!ok, "{c}");
    assert_eq!(
        c["detail"].as_str().unwrap_or_default(),
        format!("1 of 2 storage keys the rows name is missing: {key}")
    );
    std::fs::write(bucket_dir(&p).join(key), bytes).expect("restore");

    p.ok(&["down", "--to", "20250101T090000", "--yes"]);
    assert!(
        files_in(&bucket_dir(&p)).is_empty(),
        "{:?}",
        files_in(&bucket_dir(&p)).keys()
    );
}
both!(keys_inside_a_json_column);
