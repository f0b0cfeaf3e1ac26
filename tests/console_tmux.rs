//! End to end: the real binary's console in a real terminal (tmux), on a SQLite project with a
//! schema step and a data step. Runs both with `n`, checks the screen against the target
//! database, rolls the data step back with `u` + its name, and quits.
//!
//! The screens at each stage are printed (see them with `-- --nocapture`).

mod common;
mod support;

use cutover::console::format::fmt_count;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use support::{Backend, TestProject};

const SCHEMA: &str = "20250101T090000";
const ACCOUNTS: &str = "20250101T090100";
/// Enough rows in small batches that the run lasts a few seconds and the progress is visible.
const ROWS: u32 = 20_000;
/// Every 1000th source row has a bad email, so the step rejects some rows and goes on.
const BAD_EVERY: u32 = 1000;

const ACCOUNTS_STEP: &str = r#"kind = "data"

[source]
table = "users"
key = "id"

[target]
table = "accounts"
natural_key = ["email"]
on_duplicate = "skip"

[id_map]
column = "id"
map = "users"

[[fields]]
target = "legacy_id"
source = "id"

[[fields]]
target = "email"
source = "email"
transforms = ["trim", "lower"]
validate = [{ rule = "required" }, { rule = "email" }]

[[fields]]
target = "role"
source = "role"
"#;

fn project() -> TestProject {
    let p = TestProject::with_config(
        Backend::Sqlite,
        "\n[window]\nstart = \"2020-01-01T00:00:00+00:00\"\nend = \"2099-01-01T00:00:00+00:00\"\n\n[defaults]\nbatch_size = 4\ncontinue_on_error = true\n",
    );
    p.source_sql(&format!(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT, role TEXT);
         WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < {ROWS})
         INSERT INTO users SELECT printf('u%05d', i),
           CASE WHEN i % {BAD_EVERY} = 0 THEN 'not-an-email' ELSE printf('user%d@example.com', i) END,
           'admin' FROM c;"
    ));
    p.schema_step(
        &format!("{SCHEMA}_schema"),
        "CREATE TABLE accounts (id TEXT PRIMARY KEY, legacy_id TEXT NOT NULL UNIQUE, email TEXT NOT NULL UNIQUE, role TEXT NOT NULL);\n",
        "DROP TABLE accounts;\n",
    );
    p.data_step(&format!("{ACCOUNTS}_accounts"), ACCOUNTS_STEP);
    p
}

/// A tmux session that is killed when the test ends, pass or fail.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(width: u16, height: u16, command: &str) -> Tmux {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "cutover-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let out = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-x",
                &width.to_string(),
                "-y",
                &height.to_string(),
                "-s",
                &name,
                command,
            ])
            .env_remove("NO_COLOR")
            .env_remove("TMUX")
            .output()
            .expect("tmux is needed for this test (apt-get install tmux)");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmux { name }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.name.as_str()];
        args.extend_from_slice(keys);
        let out = Command::new("tmux").args(&args).output().expect("tmux send-keys");
        assert!(
            out.status.success(),
            "tmux send-keys {keys:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Type text literally (no key-name lookup).
    fn type_text(&self, text: &str) {
        let out = Command::new("tmux")
            .args(["send-keys", "-t", &self.name, "-l", text])
            .output()
            .expect("tmux send-keys");
        assert!(out.status.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.name])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Poll the screen until `ok` holds; panics with the last screen after `timeout`.
    fn wait_for(&self, what: &str, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if start.elapsed() > timeout {
                panic!("timed out after {timeout:?} waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["kill-session", "-t", &self.name]).output();
    }
}

/// The screen line of a migration: its row in the migrations table, without the pane beside it
/// (whose "last: schema applied" must not read as the row's state).
fn step_line<'a>(screen: &'a str, version: &str) -> &'a str {
    screen
        .lines()
        .find_map(|l| {
            let at = l.find(version)?;
            let end = l[at..].find(['┃', '│']).map_or(l.len(), |e| at + e);
            Some(&l[at..end])
        })
        .unwrap_or("")
}

fn step_state_is(screen: &str, version: &str, state: &str) -> bool {
    step_line(screen, version).split_whitespace().any(|w| w == state)
}

/// The running step's gauge ("42% · 4 200 / 10 000 rows"), 0 when not on screen.
fn percent_done(screen: &str) -> u32 {
    screen
        .lines()
        .find_map(|l| {
            let end = l.find("% · ")?;
            let digits: String = l[..end].chars().rev().take_while(char::is_ascii_digit).collect();
            digits.chars().rev().collect::<String>().parse().ok()
        })
        .unwrap_or(0)
}

/// The running step's gauge rows ("4 200 / 10 000 rows"): (done, total).
fn rows_of_gauge(screen: &str) -> Option<(u64, u64)> {
    let re = regex::Regex::new(r"% · ([0-9][0-9 ]*) / ([0-9][0-9 ]*) rows").expect("regex");
    let c = re.captures(screen)?;
    let n = |i: usize| c[i].replace(' ', "").parse().ok();
    Some((n(1)?, n(2)?))
}

/// Rows of a query on the project's SQLite target (see `sqlite`).
fn target_sql(p: &TestProject, sql: &str) -> String {
    sqlite(&p.path().join("target.db"), sql)
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[test]
fn console_runs_steps_and_rolls_back_in_tmux() {
    let p = project();
    let bin = support::bin();
    // The shell keeps the pane open after the console exits so the exit status can be read.
    let command = format!(
        "{} -C {} console; echo CONSOLE-EXITED-$?; sleep 600",
        shell_quote(&bin.display().to_string()),
        shell_quote(&p.path().display().to_string())
    );
    let tmux = Tmux::start(120, 40, &command);
    let long = Duration::from_secs(60);

    let s = tmux.wait_for("the first snapshot", Duration::from_secs(30), |s| {
        step_line(s, SCHEMA).contains("next") || s.contains("CONSOLE-EXITED")
    });
    assert!(!s.contains("CONSOLE-EXITED"), "the console did not start:\n{s}");
    println!("--- console opened:\n{s}");

    // Step 1: the schema step, through the confirmation dialog.
    tmux.keys(&["n"]);
    let s = tmux.wait_for("the run-next confirmation", long, |s| {
        s.contains("Run the next pending step?")
    });
    assert!(
        s.contains("schema") && s.contains("up.sql"),
        "the dialog names the step and its source:\n{s}"
    );
    tmux.keys(&["y"]);
    // "No step is running" too: `n` is refused until the whole run has finished.
    tmux.wait_for("the schema step applied", long, |s| {
        step_state_is(s, SCHEMA, "applied") && s.contains("No step is running.")
    });

    // Step 2: the data step. Catch it mid-run (the gauge part-way, a rate), pause it there
    // with `p` so the screen can be read at leisure, check it, and resume.
    tmux.keys(&["n"]);
    let s = tmux.wait_for("the run-next confirmation", long, |s| {
        s.contains("Run the next pending step?")
    });
    assert!(
        s.contains("table users") && s.contains("table accounts"),
        "source and target in the dialog:\n{s}"
    );
    tmux.keys(&["y"]);
    let s = tmux.wait_for("the gauge mid-run (or the end of the run)", long, |s| {
        let finished = step_state_is(s, ACCOUNTS, "applied") || s.contains("CONSOLE-EXITED");
        finished || (s.contains("▶ running accounts") && (1..100).contains(&percent_done(s)))
    });
    assert!(
        !step_state_is(&s, ACCOUNTS, "applied"),
        "the run ended before any capture showed it mid-way; the test needs a larger source:\n{s}"
    );
    tmux.keys(&["p"]);
    let paused = tmux.wait_for("the paused run", long, |s| {
        step_state_is(s, ACCOUNTS, "paused") || step_state_is(s, ACCOUNTS, "applied")
    });
    println!("--- mid-run, paused:\n{paused}");
    assert!(
        step_state_is(&paused, ACCOUNTS, "paused"),
        "the run ended instead of pausing:\n{paused}"
    );
    assert!(
        paused.contains("paused at a batch boundary; p resumes"),
        "the status says how to go on:\n{paused}"
    );
    let pct = percent_done(&paused);
    assert!((1..100).contains(&pct), "the gauge part-way: {pct}%\n{paused}");
    let (done, total) = rows_of_gauge(&paused).unwrap_or_else(|| panic!("the gauge's rows:\n{paused}"));
    assert_eq!(total, u64::from(ROWS), "{paused}");
    assert!(done > 0 && done < total, "{done} of {total}:\n{paused}");
    let exact = done as f64 * 100.0 / total as f64;
    assert!(
        (f64::from(pct) - exact).abs() <= 1.0,
        "the percentage is the rows' ({exact:.1}):\n{paused}"
    );
    let rate = regex::Regex::new(r"│([0-9][0-9 ]*) rows/s ").expect("regex");
    let rate: u64 = rate
        .captures(&paused)
        .and_then(|c| c[1].replace(' ', "").parse().ok())
        .unwrap_or_else(|| panic!("a rate in the progress pane:\n{paused}"));
    assert!(rate > 0, "{paused}");
    // Paused: the target holds part of the rows and no more arrive.
    let held: i64 = target_sql(&p, "SELECT COUNT(*) FROM accounts")
        .trim()
        .parse()
        .expect("a count");
    assert!(held > 0 && held < i64::from(ROWS), "{held} rows while paused");
    tmux.keys(&["p"]);
    let done = tmux.wait_for("the data step applied", long, |s| {
        step_state_is(s, ACCOUNTS, "applied") && s.contains(" written, ") && s.contains("No step is running.")
    });
    println!("--- data step applied:\n{done}");

    let count: i64 = target_sql(&p, "SELECT COUNT(*) FROM accounts")
        .trim()
        .parse()
        .expect("a count");
    let rejected = i64::from(ROWS / BAD_EVERY);
    assert_eq!(
        count,
        i64::from(ROWS) - rejected,
        "the target holds the rows that were not rejected"
    );
    let row = step_line(&done, ACCOUNTS);
    assert!(
        row.contains(&fmt_count(count as u64)),
        "the migrations row shows {count} written: {row}"
    );
    let summary = done.lines().find(|l| l.contains(" written, ")).unwrap_or("");
    assert!(
        summary.contains(&format!(
            "{} written, {} rejected",
            fmt_count(count as u64),
            fmt_count(rejected as u64)
        )),
        "the progress pane shows the same books: {summary}"
    );

    // The rejected rows are in the error inspector.
    tmux.keys(&["3"]);
    let s = tmux.wait_for("the rejects", long, |s| s.contains(&format!("{rejected} open")));
    assert!(
        s.contains("not-an-email"),
        "the selected row's source row is shown:\n{s}"
    );
    tmux.keys(&["1"]);

    // Roll the data step back: select it, `u`, read what it undoes, type its name.
    tmux.keys(&["G", "u"]);
    let s = tmux.wait_for("the rollback preview", long, |s| {
        s.contains("Rolling back accounts will:") || s.contains("REFUSED")
    });
    assert!(!s.contains("REFUSED"), "the rollback was refused:\n{s}");
    assert!(
        s.contains(&format!("delete {count} rows from accounts")),
        "the preview says what it deletes:\n{s}"
    );
    tmux.type_text("account");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the refusal of a wrong name", long, |s| {
        s.contains("type the step's name exactly")
    });
    assert!(
        s.contains("Rolling back accounts will:"),
        "the dialog stays open after a wrong name:\n{s}"
    );
    tmux.type_text("s");
    let dialog = tmux.wait_for("the typed name", long, |s| s.contains("✓ matches"));
    println!("--- rollback dialog:\n{dialog}");
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the data step reverted", long, |s| {
        step_state_is(s, ACCOUNTS, "reverted")
    });
    println!("--- after the rollback:\n{s}");
    assert_eq!(
        target_sql(&p, "SELECT COUNT(*) FROM accounts").trim(),
        "0",
        "the rollback removed every row"
    );
    assert!(step_state_is(&s, SCHEMA, "applied"), "the schema step is untouched");

    tmux.keys(&["q"]);
    let s = tmux.wait_for("the console to exit", Duration::from_secs(20), |s| {
        s.contains("CONSOLE-EXITED")
    });
    assert!(
        s.contains("CONSOLE-EXITED-0"),
        "the console exits with 0 and restores the terminal:\n{s}"
    );
    assert!(
        p.path().join("cutover.log").exists(),
        "the console logs to cutover.log in the project folder"
    );
}

const PEOPLE: &str = "20250101T090100";

/// Patients and children; two children are linked to a patient whose name they spell
/// differently, so the merge step leaves three discrepancies for review.
fn merge_project() -> TestProject {
    let p = TestProject::new(Backend::Sqlite);
    p.source_sql(
        "CREATE TABLE patients (id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT);
         CREATE TABLE children (id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, linked_patient_id TEXT);
         INSERT INTO patients VALUES ('p1', 'Ann', 'Lee'), ('p2', 'Bob', 'Smith'), ('p3', 'Cy', 'Young');
         INSERT INTO children VALUES ('c1', 'Anne', 'Lee', 'p1'), ('c2', 'Rob', 'Smyth', 'p2'), ('c3', 'Dee', 'Dunn', NULL);",
    );
    p.schema_step(
        &format!("{SCHEMA}_schema"),
        "CREATE TABLE people (id TEXT PRIMARY KEY, first_name TEXT, last_name TEXT, needs_review BOOLEAN NOT NULL DEFAULT 0, legacy_patient_id TEXT, legacy_child_id TEXT);\n",
        "DROP TABLE people;\n",
    );
    p.data_step(
        &format!("{PEOPLE}_people"),
        r#"kind = "merge"
description = "patients + children -> people"

[a]
table = "patients"
key = "id"

[b]
table = "children"
key = "id"
link = "linked_patient_id"

[target]
table = "people"
review_flag = "needs_review"

[id_map]
column = "id"

[[fields]]
target = "first_name"
a = "first_name"
b = "first_name"
compare = true

[[fields]]
target = "last_name"
a = "last_name"
b = "last_name"
compare = true

[[fields]]
target = "needs_review"
value = false

[[fields]]
target = "legacy_patient_id"
a = "id"

[[fields]]
target = "legacy_child_id"
b = "id"
"#,
    );
    p
}

/// The review pane against the real engine: take B, undo it (A again), split a child off,
/// and the target and the queue follow.
#[test]
fn console_reviews_discrepancies_in_tmux() {
    let p = merge_project();
    let bin = support::bin();
    let command = format!(
        "{} -C {} console; echo CONSOLE-EXITED-$?; sleep 600",
        shell_quote(&bin.display().to_string()),
        shell_quote(&p.path().display().to_string())
    );
    let tmux = Tmux::start(120, 40, &command);
    let long = Duration::from_secs(60);
    let first_name = |patient: &str| {
        target_sql(
            &p,
            &format!("SELECT first_name FROM people WHERE legacy_patient_id = '{patient}'"),
        )
        .trim()
        .to_string()
    };

    let s = tmux.wait_for("the first snapshot", Duration::from_secs(30), |s| {
        step_line(s, SCHEMA).contains("next") || s.contains("CONSOLE-EXITED")
    });
    assert!(!s.contains("CONSOLE-EXITED"), "the console did not start:\n{s}");
    tmux.keys(&["A"]);
    tmux.wait_for("the run-all confirmation", long, |s| {
        s.contains("Run all pending steps?")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the merge step applied", long, |s| {
        step_state_is(s, PEOPLE, "applied") && s.contains("No step is running.")
    });

    // The queue: the first open one is selected, its entity's records side by side.
    tmux.keys(&["5"]);
    // The title and the records can land in different captures (a frame is written in
    // pieces): wait for both.
    let s = tmux.wait_for("the review queue", long, |s| {
        s.contains("[5] Review · 3 open · 0 decided · 0 void") && s.contains("A · patients p1")
    });
    println!("--- review pane:\n{s}");
    assert!(
        s.contains("A · patients p1") && s.contains("B · children c1"),
        "the two records of the selected entity:\n{s}"
    );
    assert!(s.contains("≠ Ann"), "the difference is marked:\n{s}");

    // b: one key, written at once; the selection moves to the next open one (p2's).
    tmux.keys(&["b"]);
    let s = tmux.wait_for("take B applied", long, |s| {
        s.contains("discrepancy 1: first_name = Anne (take_b)") && s.contains("2 open · 1 decided")
    });
    println!("--- after b:\n{s}");
    assert_eq!(first_name("p1"), "Anne");
    assert!(
        s.contains("A · patients p2") && s.contains("B · children c2"),
        "the next open discrepancy is selected:\n{s}"
    );

    // U: asks, then undoes that last decision: the old value is back and it is open again.
    tmux.keys(&["U"]);
    tmux.wait_for("the undo confirmation", long, |s| {
        s.contains("Undo the decision on discrepancy 1?")
    });
    tmux.keys(&["y"]);
    tmux.wait_for("the undo applied", long, |s| {
        s.contains("discrepancy 1: take_b undone") && s.contains("3 open · 0 decided")
    });
    assert_eq!(first_name("p1"), "Ann");
    assert_eq!(
        target_sql(&p, "SELECT COUNT(*) FROM cutover_events WHERE event = 'review_undone'").trim(),
        "1",
        "the undo is audited"
    );
    // The undone one is selected again; a takes A and moves on to p2's.
    tmux.keys(&["a"]);
    tmux.wait_for("take A applied", long, |s| {
        s.contains("discrepancy 1: first_name = Ann (take_a)") && s.contains("A · patients p2")
    });

    // s on p2/c2: not the same person. The child becomes a person of its own and its other
    // discrepancy with p2 is void.
    tmux.keys(&["s"]);
    tmux.wait_for("the split confirmation", long, |s| s.contains("Split off children c2"));
    tmux.keys(&["y"]);
    let s = tmux.wait_for("the split applied", long, |s| {
        s.contains("split off into entity") && s.contains("0 open · 2 decided · 1 void")
    });
    println!("--- after the split:\n{s}");
    assert_eq!(
        target_sql(
            &p,
            "SELECT COUNT(*) FROM people WHERE legacy_child_id = 'c2' AND legacy_patient_id IS NULL"
        )
        .trim(),
        "1",
        "c2 is a person of its own"
    );
    assert!(s.contains("No open discrepancies"), "nothing left open:\n{s}");

    tmux.keys(&["q"]);
    let s = tmux.wait_for("the console to exit", Duration::from_secs(20), |s| {
        s.contains("CONSOLE-EXITED")
    });
    assert!(s.contains("CONSOLE-EXITED-0"), "the console exits with 0:\n{s}");
}

// ---- the real demo: review and verify ------------------------------------------------------

/// The selected row of the focused review list ("┃>? 3     p00000140 + c000 date_of_birth │"):
/// its id and field.
fn selected_review_row(screen: &str) -> Option<(i64, String)> {
    screen.lines().find_map(|l| {
        let list = l.strip_prefix("┃>")?.split('│').next()?;
        let words: Vec<&str> = list.split_whitespace().collect();
        // The state marker, the id, "A + B", the field.
        let id = words.get(1)?.parse().ok()?;
        Some((id, words.last()?.to_string()))
    })
}

/// "[5] Review · 16 open · 0 decided · …": (open, decided).
fn review_counts(screen: &str) -> Option<(usize, usize)> {
    let rest = screen.split("[5] Review · ").nth(1)?;
    let mut words = rest.split_whitespace();
    let open = words.next()?.parse().ok()?;
    let decided = words.nth(2)?.parse().ok()?;
    Some((open, decided))
}

/// "[6] Verify · 37 of 37 checks passed · checked at …": (passed, total).
fn verify_title(screen: &str) -> Option<(usize, usize)> {
    let rest = screen.split("[6] Verify · ").nth(1)?;
    let line = rest.lines().next()?;
    if !line.contains("checks passed · ") {
        return None;
    }
    let mut words = line.split_whitespace();
    let passed = words.next()?.parse().ok()?;
    let total = words.nth(1)?.parse().ok()?;
    Some((passed, total))
}

/// A query with the sqlite3 shell, waiting (up to 10 s) while the engine's last write commits:
/// a screen can show a result just before the engine's transaction ends.
fn sqlite(db: &std::path::Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 10000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 shell is needed for this test");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The demo's clinic project, built and applied headless, then reviewed in the console: three
/// date-of-birth discrepancies decided with `b`, `a` and `e` + a date, and the target follows;
/// `6` + `V` shows every check of the project's verify.toml passing.
#[test]
fn console_reviews_and_verifies_the_demo_in_tmux() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("clinic");
    let out = Command::new(env!("CARGO_BIN_EXE_cutover"))
        .arg("demo")
        .arg(&dir)
        .args(["--rows", "300", "--no-console"])
        .env_remove("CUTOVER_SOURCE")
        .env_remove("CUTOVER_TARGET")
        .output()
        .expect("run the demo");
    assert!(
        out.status.success(),
        "cutover demo failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let db = dir.join("target.db");
    assert!(
        dir.join("verify.toml").exists(),
        "the clinic project ships a verify.toml"
    );

    let command = format!(
        "{} -C {} console; echo CONSOLE-EXITED-$?; sleep 600",
        shell_quote(env!("CARGO_BIN_EXE_cutover")),
        shell_quote(&dir.display().to_string())
    );
    let tmux = Tmux::start(120, 40, &command);
    let long = Duration::from_secs(60);
    let s = tmux.wait_for("the first snapshot", Duration::from_secs(30), |s| {
        s.contains("nothing pending") || s.contains("CONSOLE-EXITED")
    });
    assert!(!s.contains("CONSOLE-EXITED"), "the console did not start:\n{s}");

    tmux.keys(&["5"]);
    let s = tmux.wait_for("the review queue", long, |s| {
        review_counts(s).is_some() && selected_review_row(s).is_some()
    });
    println!("--- review pane:\n{s}");
    let (open, decided) = review_counts(&s).expect("counts");
    assert_eq!(decided, 0, "nothing is decided yet:\n{s}");
    let in_db: usize = sqlite(&db, "SELECT COUNT(*) FROM cutover_discrepancies WHERE state = 'open'")
        .parse()
        .expect("a count");
    assert_eq!(open, in_db, "the pane counts the open discrepancies of the target");

    // Three dates of birth: take B, take A, then a date of the reviewer's own.
    let decisions = [("b", "take_b"), ("a", "take_a"), ("e", "value=2015-03-04")];
    let mut decided_rows = Vec::new();
    for (n, (key, label)) in decisions.iter().enumerate() {
        // Move down the list to the next date of birth (the selection starts on an open one).
        let mut s = tmux.screen();
        let id = loop {
            let (id, field) = selected_review_row(&s).unwrap_or_else(|| panic!("no selected row:\n{s}"));
            if field == "date_of_birth" {
                break id;
            }
            tmux.keys(&["j"]);
            s = tmux.wait_for("the selection to move", long, |s| {
                selected_review_row(s).is_some_and(|(next, _)| next != id)
            });
        };
        let row = sqlite(
            &db,
            &format!("SELECT value_a, value_b, entity_id FROM cutover_discrepancies WHERE id = {id}"),
        );
        let [a, b, entity]: [&str; 3] = row.split('|').collect::<Vec<_>>().try_into().expect("a row");
        assert!(
            s.lines()
                .any(|l| l.contains("▶date_of_birth ≠ ") && l.contains(a) && l.contains(b)),
            "the records of discrepancy {id} side by side ({a} | {b}):\n{s}"
        );
        let value = match *key {
            "a" => a.to_string(),
            "b" => b.to_string(),
            _ => "2015-03-04".to_string(),
        };
        tmux.keys(&[key]);
        if *key == "e" {
            tmux.wait_for("the value dialog", long, |s| {
                s.contains(&format!("Another value for discrepancy {id}"))
            });
            tmux.type_text(&value);
            tmux.keys(&["Enter"]);
        }
        let s = tmux.wait_for("the decision applied", long, |s| {
            s.contains(&format!("discrepancy {id}: date_of_birth = {value} ({label})"))
                && review_counts(s) == Some((open - n - 1, n + 1))
        });
        println!("--- after {key} on discrepancy {id}:\n{s}");
        decided_rows.push((id, label.to_string(), value, entity.to_string()));
    }

    // Verify: read-only, from the verify pane.
    tmux.keys(&["6"]);
    tmux.wait_for("the verify pane", long, |s| s.contains("[6] Verify"));
    tmux.keys(&["V"]);
    let s = tmux.wait_for("the verify result", long, |s| verify_title(s).is_some());
    println!("--- verify pane:\n{s}");
    let (passed, total) = verify_title(&s).expect("the title");
    assert!(total > 10, "the clinic project's checks ran ({total}):\n{s}");
    assert_eq!(passed, total, "every check passes:\n{s}");
    assert!(
        s.contains(&format!("verify: all {total} checks passed")),
        "the status line:\n{s}"
    );
    assert!(!s.contains("FAIL"), "no failing check is listed:\n{s}");
    for kind in ["ledger", "accounting", "rejects"] {
        assert!(
            s.contains(&format!("ok     {kind} ")),
            "a passing {kind} check is listed:\n{s}"
        );
    }

    tmux.keys(&["q"]);
    let s = tmux.wait_for("the console to exit", Duration::from_secs(20), |s| {
        s.contains("CONSOLE-EXITED")
    });
    assert!(s.contains("CONSOLE-EXITED-0"), "the console exits with 0:\n{s}");

    // The target: the three are decided as chosen, and the persons hold the chosen dates.
    for (id, label, value, entity) in &decided_rows {
        let row = sqlite(
            &db,
            &format!("SELECT state, decision, value_applied FROM cutover_discrepancies WHERE id = {id}"),
        );
        assert_eq!(row, format!("decided|{label}|{value}"), "discrepancy {id}");
        let dob = sqlite(&db, &format!("SELECT date_of_birth FROM persons WHERE id = '{entity}'"));
        assert_eq!(&dob, value, "persons {entity} (discrepancy {id}) holds the chosen date");
    }
    let decided: usize = sqlite(
        &db,
        "SELECT COUNT(*) FROM cutover_discrepancies WHERE state = 'decided'",
    )
    .parse()
    .expect("a count");
    assert_eq!(decided, 3, "only those three were decided");
}

/// Issue 11 items 3 and 4 on the real binary: `x` holds the run at its next batch boundary
/// while the question is open (the ledger's books stop moving), `n` lets it go on, and `y`
/// stops it there: the step is `interrupted` on the screen, in the ledger and in `status`.
#[test]
fn the_abort_question_holds_the_run_and_an_aborted_step_is_interrupted_in_tmux() {
    let p = project();
    let bin = support::bin();
    let command = format!(
        "{} -C {} console; echo CONSOLE-EXITED-$?; sleep 600",
        shell_quote(&bin.display().to_string()),
        shell_quote(&p.path().display().to_string())
    );
    let tmux = Tmux::start(120, 40, &command);
    let long = Duration::from_secs(60);
    tmux.wait_for("the first snapshot", Duration::from_secs(30), |s| {
        step_line(s, SCHEMA).contains("next")
    });
    tmux.keys(&["n"]);
    tmux.wait_for("the confirmation", long, |s| s.contains("Run the next pending step?"));
    tmux.keys(&["y"]);
    tmux.wait_for("the schema step applied", long, |s| {
        step_state_is(s, SCHEMA, "applied") && s.contains("No step is running.")
    });
    tmux.keys(&["n"]);
    tmux.wait_for("the confirmation", long, |s| s.contains("Run the next pending step?"));
    tmux.keys(&["y"]);
    tmux.wait_for("the step mid-run", long, |s| (2..90).contains(&percent_done(s)));

    let ledger_rows = || {
        target_sql(
            &p,
            &format!("SELECT rows_source FROM cutover_ledger WHERE version = '{ACCOUNTS}'"),
        )
        .trim()
        .parse::<u64>()
        .unwrap_or(0)
    };
    tmux.keys(&["x"]);
    let s = tmux.wait_for("the run held under the question", long, |s| {
        s.contains("Abort the run?") && s.contains("held at a batch boundary")
    });
    println!("--- held under the abort question:\n{s}");
    let held_at = ledger_rows();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ledger_rows(), held_at, "nothing commits while the question is open");
    assert!(held_at < u64::from(ROWS), "held part-way");

    // n: the run goes on.
    tmux.keys(&["n"]);
    let start = Instant::now();
    while ledger_rows() <= held_at {
        assert!(start.elapsed() < long, "the run did not go on after n");
        std::thread::sleep(Duration::from_millis(100));
    }

    // x, y: it stops at the boundary it holds at, interrupted.
    tmux.keys(&["x"]);
    tmux.wait_for("the question again", long, |s| s.contains("held at a batch boundary"));
    let stopped_at = ledger_rows();
    tmux.keys(&["y"]);
    let s = tmux.wait_for("the step interrupted", long, |s| {
        s.contains("No step is running.") && step_line(s, ACCOUNTS).contains("interrupted")
    });
    println!("--- an interrupted step:\n{s}");
    assert_eq!(ledger_rows(), stopped_at, "nothing committed after the yes");
    assert_eq!(
        target_sql(
            &p,
            &format!("SELECT status FROM cutover_ledger WHERE version = '{ACCOUNTS}'")
        )
        .trim(),
        "interrupted"
    );
    assert_eq!(
        target_sql(&p, "SELECT count(*) FROM accounts")
            .trim()
            .parse::<u64>()
            .unwrap_or(0),
        stopped_at
            - target_sql(
                &p,
                &format!("SELECT rows_rejected FROM cutover_ledger WHERE version = '{ACCOUNTS}'")
            )
            .trim()
            .parse::<u64>()
            .unwrap_or(0),
        "the screen's books are the database's"
    );
    // Its details say what resumes it.
    tmux.keys(&["Down"]);
    tmux.keys(&["Enter"]);
    let s = tmux.wait_for("the details", long, |s| {
        s.contains("resumes it from its last checkpoint")
    });
    println!("--- its details:\n{s}");
    tmux.keys(&["Escape"]);
    tmux.keys(&["q"]);
    tmux.wait_for("the console to exit", long, |s| s.contains("CONSOLE-EXITED-0"));
}
