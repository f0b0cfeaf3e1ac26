//! Error reports and logs on stderr carry no colour codes when stderr is not a terminal (a file,
//! a pipe, CI), nor at a terminal with `NO_COLOR` set.

use assert_cmd::Command;
use std::path::Path;

const ESC: &str = "\x1b[";

/// A project whose only step fails: `up` logs (with CUTOVER_LOG=debug, every statement) and
/// ends with an error report.
fn failing_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    std::fs::write(
        p.join("cutover.toml"),
        "[project]\nname = \"plain\"\n\n[source]\nurl = \"sqlite://source.db\"\n\n[target]\nurl = \"sqlite://target.db\"\n",
    )
    .expect("config");
    let step = p.join("migrations").join("20250101T090000_broken");
    std::fs::create_dir_all(&step).expect("mkdir");
    std::fs::write(step.join("up.sql"), "CREATE TABLE t (id INTEGER);\nSELEC nonsense;\n").expect("up");
    std::fs::write(step.join("down.sql"), "DROP TABLE t;\n").expect("down");
    dir
}

fn cutover(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("cutover").expect("the cutover binary");
    c.arg("-C").arg(dir);
    c.env_remove("NO_COLOR").env_remove("CUTOVER_LOG");
    c.env_remove("CUTOVER_SOURCE").env_remove("CUTOVER_TARGET");
    c
}

#[test]
fn a_failing_command_with_stderr_redirected_prints_no_colour_codes() {
    let dir = failing_project();
    let out = cutover(dir.path())
        .env("CUTOVER_LOG", "debug")
        .arg("up")
        .output()
        .expect("run");
    assert!(!out.status.success(), "the broken step must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    // Not vacuous: there are log lines and the error itself.
    assert!(
        err.contains("INFO") || err.contains("DEBUG"),
        "no log lines on stderr:\n{err}"
    );
    assert!(err.contains("SELEC"), "the error names the failing statement:\n{err}");
    assert!(!err.contains(ESC), "colour codes in redirected stderr:\n{err:?}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains(ESC));
}

#[test]
fn an_unknown_argument_is_reported_without_colour_codes() {
    let dir = failing_project();
    let out = cutover(dir.path())
        .args(["up", "--no-such-flag"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "clap's usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--no-such-flag"), "{err}");
    assert!(!err.contains(ESC), "{err:?}");
}

/// At a terminal (`script` gives the command a pty) colours are on, unless NO_COLOR is set.
#[test]
fn no_color_is_honoured_at_a_terminal() {
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let dir = failing_project();
    let bin = assert_cmd::cargo::cargo_bin("cutover");
    let run = |no_color: Option<&str>| {
        let line = format!("{} -C {} up", bin.display(), dir.path().display());
        let mut c = std::process::Command::new("script");
        c.args(["-q", "-e", "-c", &line, "/dev/null"]);
        c.env_remove("NO_COLOR").env("CUTOVER_LOG", "debug");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().expect("script");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = run(None);
    // The first run failed; the second must fail the same way, not find the step applied.
    let _ = std::fs::remove_file(dir.path().join("target.db"));
    assert!(coloured.contains("SELEC"), "{coloured}");
    assert!(coloured.contains(ESC), "a terminal gets colours:\n{coloured:?}");
    let plain = run(Some("1"));
    assert!(plain.contains("SELEC"), "{plain}");
    assert!(!plain.contains(ESC), "NO_COLOR=1 at a terminal:\n{plain:?}");
}
