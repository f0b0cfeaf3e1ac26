//! The appwrite scenario end to end on real PostgreSQL: `cutover generate appwrite` fills a
//! legacy database (deterministic per seed) and writes a manifest of what fixtures/appwrite's
//! rules imply, computed from what it planted (never through the engine); the fixture, unchanged
//! but for its batch size, moves it into collections and buckets the way an operator runs it
//! (`cutover -C COPY --source postgres://… --target postgres://… up --continue-on-error`). Every
//! collection's documents, every bucket's files, each step's books and rejects by rule, the
//! sample users' permissions, the files' bytes and the password hashes are held against the
//! manifest and the source; verify passes and then fails on a corrupted file; `down` empties
//! everything; a dry run writes nothing.
//!
//! The tests that run the fixture need the document-target machinery of issue 14
//! (collections, `[[embed]]`, buckets, the users and config templates); until it is merged
//! they are ignored with that reason.

mod common;
mod support;

use common::pg::PgServer;
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::{stderr, stdout};

/// Users of the default test size: a few batches per step, seconds per run.
const USERS: u64 = 300;
const SEED: u64 = 7;
/// Batches of this many rows in the test's copy (the fixture's 5000 would be one batch).
const BATCH: u64 = 100;

/// Step versions of fixtures/appwrite and their names (the manifest's `steps` keys).
const STEPS: &[(&str, &str)] = &[
    ("20250601T090000", "teams"),
    ("20250601T090100", "users"),
    ("20250601T090200", "projects"),
    ("20250601T090300", "appointments"),
    ("20250601T090400", "files_avatars"),
    ("20250601T090500", "files_records"),
    ("20250601T090600", "config"),
];
const COLLECTIONS: &[&str] = &["teams", "users", "projects", "appointments", "files", "config"];
const BUCKETS: &[&str] = &["avatars", "records"];
const LEGACY_TABLES: &[&str] = &[
    "teams",
    "users",
    "projects",
    "appointments",
    "appointment_notes",
    "files",
    "settings",
];

/// A generated legacy database, an empty target and a copy of the fixture.
pub struct Appwrite {
    dir: tempfile::TempDir,
    pub source: String,
    pub target: String,
    pub m: J,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/appwrite")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// `cutover generate appwrite URL --users N --seed S --manifest FILE`.
fn generate(url: &str, users: u64, seed: u64, manifest: &Path) -> Output {
    Command::new(support::bin())
        .args(["generate", "appwrite", url])
        .args(["--users", &users.to_string(), "--seed", &seed.to_string()])
        .arg("--manifest")
        .arg(manifest)
        .output()
        .expect("run cutover generate")
}

fn read_manifest(path: &Path) -> J {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A fresh legacy database generated with `users` and `seed`, a fresh target database, and a
/// copy of the fixture with batches of [`BATCH`].
pub fn setup(users: u64, seed: u64) -> Appwrite {
    let source = PgServer::shared().fresh_db("scheduler");
    let target = PgServer::shared().fresh_db("documents");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let config = dir.path().join("cutover.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("batch_size = 5000"), "{text}");
    std::fs::write(
        &config,
        text.replace("batch_size = 5000", &format!("batch_size = {BATCH}")),
    )
    .unwrap();
    let manifest = dir.path().join("manifest.json");
    let o = generate(&source, users, seed, &manifest);
    assert!(o.status.success(), "generate: {}\n{}", stdout(&o), stderr(&o));
    let m = read_manifest(&manifest);
    Appwrite { dir, source, target, m }
}

fn psql(url: &str, sql: &str) -> String {
    PgServer::shared().psql(url, sql)
}

impl Appwrite {
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(support::bin());
        c.arg("-C")
            .arg(self.path())
            .args(["--source", &self.source, "--target", &self.target])
            .args(args)
            .env_remove("CUTOVER_SOURCE")
            .env_remove("CUTOVER_TARGET");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cutover")
    }

    /// Runs and asserts success; stdout and stderr together (what an operator sees).
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cutover {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        format!("{}{}", stdout(&o), stderr(&o))
    }

    pub fn json(&self, args: &[&str]) -> J {
        let mut a = args.to_vec();
        a.push("--json");
        let o = self.run(&a);
        assert!(o.status.success(), "cutover {a:?}: {}\n{}", stdout(&o), stderr(&o));
        let out = stdout(&o);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    pub fn target_sql(&self, sql: &str) -> String {
        psql(&self.target, sql)
    }

    pub fn source_sql(&self, sql: &str) -> String {
        psql(&self.source, sql)
    }

    fn num(out: String) -> u64 {
        out.trim().parse().unwrap_or_else(|_| panic!("not a number: {out}"))
    }

    pub fn documents(&self, collection: &str) -> u64 {
        Self::num(self.target_sql(&format!("SELECT COUNT(*) FROM {collection}")))
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.path().join("buckets").join(bucket)
    }

    /// Files in a bucket's folder (its content-addressed `ab/abcdef…` files).
    fn bucket_files(&self, bucket: &str) -> Vec<PathBuf> {
        fn walk(d: &Path, out: &mut Vec<PathBuf>) {
            let Ok(it) = std::fs::read_dir(d) else { return };
            for e in it {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, out);
                } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.bucket_dir(bucket), &mut out);
        out
    }

    /// `rule=count` of the reject store for one step version and level.
    fn by_rule(&self, version: &str, level: &str) -> BTreeMap<String, u64> {
        self.target_sql(&format!(
            "SELECT rule || '=' || COUNT(*) FROM cutover_rejects WHERE version = '{version}' AND level = '{level}' GROUP BY rule"
        ))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (rule, n) = l.trim().split_once('=').unwrap_or_else(|| panic!("{l}"));
            (rule.to_string(), n.parse().unwrap())
        })
        .collect()
    }

    /// The ledger's counts per step version, from `status --json`.
    fn counts(&self) -> BTreeMap<String, J> {
        let status = self.json(&["status"]);
        status["migrations"]
            .as_array()
            .unwrap_or_else(|| panic!("{status}"))
            .iter()
            .map(|m| (m["version"].as_str().unwrap().to_string(), m["counts"].clone()))
            .collect()
    }

    /// Every collection's documents, every bucket's files, and every step's books, rejects and
    /// warnings by rule, against the manifest.
    fn assert_matches_manifest(&self) {
        for c in COLLECTIONS {
            assert_eq!(
                self.documents(c),
                self.m["expected"][format!("collection:{c}")].as_u64().unwrap(),
                "documents in {c}"
            );
        }
        for b in BUCKETS {
            assert_eq!(
                self.bucket_files(b).len() as u64,
                self.m["expected"][format!("bucket:{b}")].as_u64().unwrap(),
                "files in bucket {b}"
            );
        }
        let counts = self.counts();
        for (version, name) in STEPS {
            let want = &self.m["steps"][version];
            assert_eq!(want["name"], *name);
            let got = &counts[*version];
            for k in ["source", "written", "skipped", "rejected"] {
                assert_eq!(got[k], want[k], "{name}: ledger {k} (ledger {got}, manifest {want})");
            }
            assert_eq!(
                self.by_rule(version, "error"),
                rules_of(&want["rejected_by_rule"]),
                "{name}: rejects by rule"
            );
            assert_eq!(
                self.by_rule(version, "warning"),
                rules_of(&want["warnings_by_rule"]),
                "{name}: warnings by rule"
            );
        }
    }

    /// `_id` of the document with `data.legacy_id` in a collection.
    fn id_of(&self, collection: &str, legacy_id: u64) -> String {
        let id = self
            .target_sql(&format!(
                "SELECT _id FROM {collection} WHERE data->>'legacy_id' = '{legacy_id}'"
            ))
            .trim()
            .to_string();
        assert!(!id.is_empty(), "no {collection} document with legacy id {legacy_id}");
        id
    }

    /// A manifest permission with its placeholders (`{_id}`, `{users:7}`, `{teams:2}`) replaced
    /// by the ids this run gave.
    fn rendered(&self, permission: &str, own_id: &str) -> String {
        let mut s = permission.replace("{_id}", own_id);
        while let Some(start) = s.find("{users:").or_else(|| s.find("{teams:")) {
            let end = start + s[start..].find('}').unwrap();
            let (collection, legacy) = s[start + 1..end].split_once(':').unwrap();
            let id = self.id_of(collection, legacy.parse().unwrap());
            s.replace_range(start..=end, &id);
        }
        s
    }

    /// The sample users' documents carry exactly the permissions the manifest states.
    fn assert_sample_permissions(&self) {
        let samples = self.m["samples"].as_array().unwrap();
        let roles: Vec<&str> = samples.iter().map(|s| s["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["admin", "clinician", "patient"]);
        for s in samples {
            let user = s["legacy_id"].as_u64().unwrap();
            assert_eq!(
                self.target_sql(&format!(
                    "SELECT data->>'email' FROM users WHERE data->>'legacy_id' = '{user}'"
                ))
                .trim(),
                s["email"].as_str().unwrap(),
                "{s}"
            );
            for d in s["documents"].as_array().unwrap() {
                let collection = d["collection"].as_str().unwrap();
                let id = self.id_of(collection, d["legacy_id"].as_u64().unwrap());
                let got: Vec<String> = serde_json::from_str(&self.target_sql(&format!(
                    "SELECT _permissions::text FROM {collection} WHERE _id = '{id}'"
                )))
                .unwrap();
                let got: BTreeSet<String> = got.into_iter().collect();
                let want: BTreeSet<String> = d["permissions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| self.rendered(p.as_str().unwrap(), &id))
                    .collect();
                assert_eq!(got, want, "{} sample: {collection} {}", s["role"], d["legacy_id"]);
            }
        }
    }
}

fn rules_of(v: &J) -> BTreeMap<String, u64> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .iter()
        .map(|(k, n)| (k.clone(), n.as_u64().unwrap()))
        .collect()
}

fn planted(m: &J, what: &str) -> u64 {
    m["planted"][what].as_u64().unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- The generator on its own (runs on this branch). ---------------------------------------

#[test]
fn generate_fills_the_legacy_tables_the_manifest_describes() {
    let dir = tempfile::tempdir().unwrap();
    let a = PgServer::shared().fresh_db("gen_a");
    let ma = dir.path().join("a.json");
    let o = generate(&a, USERS, SEED, &ma);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let m = read_manifest(&ma);
    // The operator's summary: each step's books as the rules imply them.
    let users = &m["steps"]["20250601T090100"];
    let line = format!(
        "20250601T090100 users: {USERS} rows = {} written + {} skipped + {} rejected",
        users["written"], users["skipped"], users["rejected"]
    );
    assert!(stdout(&o).contains(&line), "{line:?} not in:\n{}", stdout(&o));

    for t in LEGACY_TABLES {
        assert_eq!(
            psql(&a, &format!("SELECT COUNT(*) FROM {t}")),
            m["tables"][t].to_string(),
            "legacy rows of {t}"
        );
    }
    // The planted problems are really in the rows.
    let count = |sql: &str| -> u64 { psql(&a, sql).trim().parse().unwrap() };
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM files WHERE bucket = 'avatars' AND substring(content from 1 for 6) = 'GIF89a'::bytea"
        ),
        planted(&m, "files.avatar_gif")
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM files WHERE bucket = 'avatars' AND mime_type = 'image/png' AND substring(content from 1 for 6) = 'GIF89a'::bytea"
        ),
        planted(&m, "files.avatar_gif"),
        "the GIFs claim to be PNGs"
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM files WHERE bucket = 'records' AND substring(content from 1 for 6) = 'GIF89a'::bytea"
        ),
        planted(&m, "files.record_wrong_type")
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM files WHERE bucket = 'avatars' AND length(content) > 65536"),
        planted(&m, "files.avatar_over_limit")
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM files WHERE bucket = 'records' AND length(content) > 131072"),
        planted(&m, "files.record_over_limit")
    );
    assert_eq!(
        count(
            "SELECT COUNT(*) FROM files WHERE substring(content from 1 for 8) = '\\x89504e470d0a1a0a'::bytea \
             OR substring(content from 1 for 3) = '\\xffd8ff'::bytea OR substring(content from 1 for 5) = '%PDF-'::bytea \
             OR substring(content from 1 for 6) = 'GIF89a'::bytea OR mime_type = 'text/plain'"
        ),
        m["tables"]["files"].as_u64().unwrap(),
        "every file is a PNG, JPEG, PDF, GIF or text"
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM users WHERE password_hash !~ '^\\$2b\\$12\\$[./A-Za-z0-9]{53}$'"),
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) - COUNT(DISTINCT LOWER(TRIM(email))) FROM users"),
        planted(&m, "users.duplicate_email")
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM appointments WHERE patient_user_id NOT IN (SELECT id FROM users)"),
        planted(&m, "appointments.missing_patient")
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM appointments WHERE patient_user_id IS NULL"),
        planted(&m, "appointments.no_patient")
    );
    assert_eq!(count("SELECT COUNT(*) FROM settings"), 14);

    // Same seed, same rows and manifest, in another database; another seed, other rows.
    let digest = |url: &str| -> Vec<String> {
        LEGACY_TABLES
            .iter()
            .map(|t| {
                psql(
                    url,
                    &format!("SELECT md5(string_agg(x::text, '|' ORDER BY x::text)) FROM {t} x"),
                )
            })
            .collect()
    };
    let b = PgServer::shared().fresh_db("gen_b");
    let mb = dir.path().join("b.json");
    let o = generate(&b, USERS, SEED, &mb);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(read_manifest(&mb), m);
    assert_eq!(digest(&a), digest(&b), "same seed, same rows");
    let o = generate(&b, USERS, SEED + 1, &mb);
    assert!(o.status.success(), "{}", stderr(&o));
    let other = digest(&b);
    assert_ne!(other[1], digest(&a)[1], "another seed, other users");
    // Generating again drops and recreates the legacy tables: no rows of the earlier run stay.
    assert_eq!(read_manifest(&mb)["tables"]["users"], USERS);
    assert_eq!(psql(&b, "SELECT COUNT(*) FROM users"), USERS.to_string());
}

#[test]
fn generate_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on port 1: the connection is refused.
    let o = generate(
        "postgres://legacy:Hunter2Secret@127.0.0.1:1/scheduler",
        10,
        1,
        &dir.path().join("m.json"),
    );
    assert!(!o.status.success());
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(all.contains("cannot connect to"), "{all}");
    assert!(!all.contains("Hunter2Secret"), "{all}");
    assert!(
        !dir.path().join("m.json").exists(),
        "no manifest for a run that did nothing"
    );
}

// ---- The fixture (needs the issue 14 machinery). -------------------------------------------

#[test]
fn up_moves_what_the_manifest_predicts_and_verify_catches_a_corrupted_file() {
    let h = setup(USERS, SEED);
    let mut outputs = Vec::new();
    outputs.push(h.ok(&["up", "--continue-on-error"]));
    let status = h.json(&["status"]);
    let states: Vec<&str> = status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["applied"; 7], "{status}");
    h.assert_matches_manifest();
    h.assert_sample_permissions();

    // A slot without a patient carries no patient permission: only the clinician's and the team's.
    let blocked = h.target_sql(
        "SELECT _permissions::text FROM appointments WHERE NOT (data ? 'patient_id') OR data->'patient_id' = 'null'::jsonb LIMIT 1",
    );
    let blocked: Vec<String> = serde_json::from_str(&blocked).unwrap_or_else(|e| panic!("{e}: {blocked}"));
    assert_eq!(blocked.len(), 3, "{blocked:?}");

    // One migrated appointment, notes embedded oldest first, as the source has them.
    let doc: J =
        serde_json::from_str(&h.target_sql("SELECT data::text FROM appointments WHERE data->>'legacy_id' = '1'"))
            .unwrap();
    let notes = h.source_sql("SELECT trim(body) FROM appointment_notes WHERE appointment_id = 1 ORDER BY written_at");
    let got: Vec<&str> = doc["notes"]
        .as_array()
        .unwrap_or_else(|| panic!("{doc}"))
        .iter()
        .map(|n| n["text"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = notes.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(got, want, "{doc}");
    assert_eq!(doc["patient_id"].as_str(), Some(h.id_of("users", 3).as_str()), "{doc}");
    // Every note of a written appointment is embedded.
    let written: Vec<String> = h
        .target_sql("SELECT data->>'legacy_id' FROM appointments")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        h.target_sql("SELECT COALESCE(SUM(jsonb_array_length(data->'notes')), 0) FROM appointments"),
        h.source_sql(&format!(
            "SELECT COUNT(*) FROM appointment_notes WHERE appointment_id IN ({})",
            written.join(",")
        ))
    );
    // An oversize document is rejected with its size.
    let reason = h.target_sql("SELECT reason FROM cutover_rejects WHERE rule = 'document_size' LIMIT 1");
    assert!(reason.contains("over the collection's limit of 4 096"), "{reason}");

    // Every stored file is the source's bytes, found through the files collection.
    let mut checked = 0;
    for line in h
        .target_sql(
            "SELECT data->>'legacy_id', data->>'bucket', data->>'storage_key', data->>'mime', data->>'size' FROM files",
        )
        .lines()
    {
        let f: Vec<&str> = line.split('|').collect();
        let source_hex = h.source_sql(&format!("SELECT encode(content, 'hex') FROM files WHERE id = {}", f[0]));
        let stored = std::fs::read(h.bucket_dir(f[1]).join(f[2])).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(hex(&stored), source_hex.trim(), "file {}", f[0]);
        assert_eq!(f[4], stored.len().to_string(), "{line}");
        assert_ne!(f[3], "image/gif", "{line}");
        checked += 1;
    }
    assert_eq!(checked, h.m["expected"]["collection:files"].as_u64().unwrap());

    // Password hashes arrive byte for byte, and no output shows one.
    let pairs = h.target_sql("SELECT data->>'legacy_id', data->'password'->>'hash' FROM users ORDER BY 1");
    for line in pairs.lines() {
        let (id, hash) = line.split_once('|').unwrap();
        assert_eq!(
            hash,
            h.source_sql(&format!("SELECT password_hash FROM users WHERE id = {id}"))
                .trim(),
            "user {id}"
        );
    }
    let rejected_user = h
        .target_sql("SELECT id FROM cutover_rejects WHERE source_table = 'users' AND rule = 'roles' LIMIT 1")
        .trim()
        .to_string();
    assert!(!rejected_user.is_empty(), "no user rejected for an unknown role");
    outputs.push(h.ok(&["rejects", "list"]));
    outputs.push(h.ok(&["rejects", "list", "--json"]));
    outputs.push(h.ok(&["rejects", "show", &rejected_user]));
    outputs.push(h.ok(&["rejects", "show", &rejected_user, "--json"]));
    outputs.push(h.ok(&["status"]));
    outputs.push(h.ok(&["report"]));

    // verify: the fixture's counts, every collection's checksum, every bucket's files.
    let v = h.json(&["verify"]);
    assert_eq!(v["ok"], true, "{v:#}");
    // The contract's checks `collection NAME` and `bucket NAME`, whatever fields carry the words.
    let checks: Vec<String> = v["checks"].as_array().unwrap().iter().map(|c| c.to_string()).collect();
    for (kind, name) in [
        ("collection", "appointments"),
        ("collection", "users"),
        ("collection", "files"),
        ("bucket", "avatars"),
        ("bucket", "records"),
    ] {
        assert!(
            checks.iter().any(|c| c.contains(kind) && c.contains(name)),
            "no {kind} {name} check in {checks:#?}"
        );
    }
    outputs.push(h.ok(&["verify"]));
    let all = outputs.join("\n");
    for hash in h.source_sql("SELECT password_hash FROM users").lines() {
        assert!(!all.contains(hash), "a password hash was shown");
    }

    // A second `up` writes nothing twice.
    let again = h.ok(&["up", "--continue-on-error"]);
    assert!(again.contains("nothing to do"), "{again}");
    h.assert_matches_manifest();

    // A stored file changed on disk: verify fails and names it.
    let victim = h.bucket_files("avatars").into_iter().next().expect("an avatar");
    std::fs::write(&victim, b"not the picture any more").unwrap();
    let o = h.run(&["verify"]);
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!o.status.success(), "{out}");
    let name = victim.file_name().unwrap().to_string_lossy().to_string();
    assert!(out.contains("bucket avatars") && out.contains(&name[..6]), "{out}");
}

#[test]
fn down_empties_every_collection_and_bucket() {
    let h = setup(USERS, SEED);
    h.ok(&["up", "--continue-on-error"]);
    for b in BUCKETS {
        assert!(!h.bucket_files(b).is_empty(), "{b}");
    }
    h.ok(&["down", "--all", "--yes"]);
    for c in COLLECTIONS {
        assert_eq!(h.documents(c), 0, "documents left in {c}");
    }
    for b in BUCKETS {
        assert_eq!(h.bucket_files(b), Vec::<PathBuf>::new(), "files left in bucket {b}");
    }
    let status = h.json(&["status"]);
    assert!(
        status["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "reverted"),
        "{status}"
    );
    // And up again gives the same result.
    h.ok(&["up", "--continue-on-error"]);
    for c in COLLECTIONS {
        assert_eq!(
            h.documents(c),
            h.m["expected"][format!("collection:{c}")].as_u64().unwrap(),
            "{c} after down and up"
        );
    }
}

#[test]
fn a_dry_run_writes_nothing() {
    let h = setup(USERS, SEED);
    h.ok(&["up", "--dry-run", "--continue-on-error"]);
    let tables = h.target_sql(&format!(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public' AND table_name IN ({})",
        COLLECTIONS
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(",")
    ));
    assert_eq!(tables.trim(), "0", "a dry run created collections");
    for b in BUCKETS {
        assert_eq!(
            h.bucket_files(b),
            Vec::<PathBuf>::new(),
            "a dry run stored files in {b}"
        );
    }
    let status = h.json(&["status"]);
    assert!(
        status["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "pending"),
        "{status}"
    );
}
