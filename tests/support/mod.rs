//! A cutover project in a temp folder, on a SQLite or a real PostgreSQL target, driven through
//! the real binary.
#![allow(dead_code)]

/// `both!(check)` runs `fn check(b: Backend)` as two tests: on SQLite and on PostgreSQL.
#[allow(unused_macros)]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(super::Backend::Sqlite)
            }
            #[test]
            fn postgres() {
                super::$name(super::Backend::Postgres)
            }
        }
    };
}

use crate::common::pg::PgServer;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestProject {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    pub target_url: String,
}

/// The binary under test; `CUTOVER_TEST_BIN` runs a test file against another build (e.g. to
/// show that a new test fails on the code before a fix).
pub fn bin() -> PathBuf {
    std::env::var_os("CUTOVER_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_cutover")))
}

impl TestProject {
    pub fn new(backend: Backend) -> TestProject {
        Self::with_config(backend, "")
    }

    /// `extra` is appended to cutover.toml (e.g. a [defaults] section).
    pub fn with_config(backend: Backend, extra: &str) -> TestProject {
        let dir = tempfile::tempdir().expect("tempdir");
        let target_url = match backend {
            Backend::Sqlite => "sqlite://target.db".to_string(),
            Backend::Postgres => PgServer::shared().fresh_db("cutover"),
        };
        std::fs::create_dir_all(dir.path().join("migrations")).expect("mkdir");
        std::fs::write(
            dir.path().join("cutover.toml"),
            format!("[project]\nname = \"test\"\n\n[source]\nurl = \"sqlite://source.db\"\n\n[target]\nurl = \"{target_url}\"\n{extra}"),
        )
        .expect("write config");
        TestProject {
            dir,
            backend,
            target_url,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn step_dir(&self, folder: &str) -> PathBuf {
        self.path().join("migrations").join(folder)
    }

    pub fn schema_step(&self, folder: &str, up: &str, down: &str) {
        let d = self.step_dir(folder);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("up.sql"), up).expect("up");
        std::fs::write(d.join("down.sql"), down).expect("down");
    }

    pub fn data_step(&self, folder: &str, toml: &str) {
        let d = self.step_dir(folder);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("step.toml"), toml).expect("step");
    }

    /// Run SQL on the source (a SQLite file) with the sqlite3 shell.
    pub fn source_sql(&self, sql: &str) {
        sqlite3(&self.path().join("source.db"), sql);
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.arg("-C").arg(self.path()).args(args);
        c.env_remove("CUTOVER_SOURCE").env_remove("CUTOVER_TARGET");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run cutover")
    }

    /// Run and require success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "cutover {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            o.status.code(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.ok(&a);
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Rows of a query on the target, `|`-separated, one line per row.
    pub fn target_sql(&self, sql: &str) -> String {
        match self.backend {
            Backend::Sqlite => sqlite3(&self.path().join("target.db"), sql),
            Backend::Postgres => {
                let out = PgServer::shared().psql(&self.target_url, sql);
                // psql prints booleans as t/f; SQLite stores 1/0.
                out
            }
        }
    }

    /// As `target_sql`, but `None` when the query fails (e.g. the table is not there yet).
    pub fn try_target_sql(&self, sql: &str) -> Option<String> {
        match self.backend {
            Backend::Sqlite => {
                let o = Command::new("sqlite3")
                    .args(["-cmd", ".timeout 10000"])
                    .arg(self.path().join("target.db"))
                    .arg(sql)
                    .output()
                    .ok()?;
                o.status
                    .success()
                    .then(|| String::from_utf8_lossy(&o.stdout).trim_end().to_string())
            }
            Backend::Postgres => PgServer::shared().try_psql(&self.target_url, sql).ok(),
        }
    }

    pub fn count(&self, table: &str) -> i64 {
        self.target_sql(&format!("SELECT COUNT(*) FROM {table}"))
            .trim()
            .parse()
            .expect("count")
    }

    /// Tables of the target, sorted (the user's schema, the engine's own tables left out).
    pub fn user_tables(&self) -> Vec<String> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
            }
            Backend::Postgres => {
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
            }
        };
        self.target_sql(sql)
            .lines()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && !s.starts_with("cutover_"))
            .collect()
    }

    /// The state of each migration from `status --json`.
    pub fn states(&self) -> Vec<(String, String)> {
        let v = self.json(&["status"]);
        // An empty list would make every `states().iter().all(..)` pass.
        assert!(
            v["migrations"].as_array().is_some_and(|m| !m.is_empty()),
            "status lists no migrations: {v}"
        );
        v["migrations"]
            .as_array()
            .expect("migrations array")
            .iter()
            .map(|m| {
                (
                    m["version"].as_str().unwrap_or("").to_string(),
                    m["state"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }
}

impl TestProject {
    /// Every migration's state, in order, exactly as `expected` (so neither an empty list nor
    /// a missing step can pass).
    pub fn assert_states(&self, expected: &[&str]) {
        let states = self.states();
        let got: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
        assert_eq!(got, expected, "states of {states:?}");
    }
}

/// The busy timeout: a read racing the engine's commit (or another shell's close, which
/// checkpoints) would otherwise fail at once with "database is locked".
pub fn sqlite3(db: &Path, sql: &str) -> String {
    let o = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3 (apt-get install sqlite3)");
    assert!(
        o.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).trim_end().to_string()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// An exclusive lock on a SQLite file, held by a `sqlite3` shell until dropped: a reader of
/// that file (a step reading its source) waits at its next page, so the test decides when the
/// step may go on. Held for less than the engine's busy timeout (10 s), a held read only waits.
pub struct SqliteLock {
    child: std::process::Child,
}

impl SqliteLock {
    /// Blocks until the lock is held (waiting for readers that are inside a page to finish).
    pub fn exclusive(db: &Path) -> SqliteLock {
        use std::io::{BufRead, Write};
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("sqlite3 (apt-get install sqlite3)");
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b".timeout 30000\nBEGIN EXCLUSIVE;\nSELECT 'held';\n")
            .expect("write to sqlite3");
        stdin.flush().expect("flush");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().expect("stdout"))
            .read_line(&mut line)
            .expect("read from sqlite3");
        assert_eq!(line.trim(), "held", "sqlite3 could not lock {}", db.display());
        SqliteLock { child }
    }
}

impl SqliteLock {
    /// Run `sql` inside the held lock and commit it; the lock ends with the commit.
    pub fn commit(mut self, sql: &str) {
        use std::io::Write;
        let mut stdin = self.child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{sql}\nCOMMIT;\n.quit\n").as_bytes())
            .expect("write to sqlite3");
        drop(stdin);
        let status = self.child.wait().expect("sqlite3");
        assert!(status.success(), "sqlite3 could not commit {sql}");
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        use std::io::Write;
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

/// Run `cmd` to the end, or kill it and fail the test after `limit`.
pub fn output_within(mut cmd: Command, limit: std::time::Duration) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            let o = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} still running after {limit:?}\nstdout:\n{}\nstderr:\n{}",
                stdout(&o),
                stderr(&o)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}
