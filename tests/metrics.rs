//! `--metrics-addr`: the real binary runs the clinic scenario while the test scrapes /metrics
//! like Prometheus would; mid-run the series are there and only grow, and once the run is over
//! (`--metrics-linger` keeps the endpoint up) every step's row counters equal the ledger's
//! counts in `cutover status --json`.

mod common;
mod support;

use serde_json::Value as J;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::{Backend, TestProject, stderr};

/// One sample of the text format: `name{labels} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parse the Prometheus text format strictly enough that a malformed line fails the test:
/// `# HELP`/`# TYPE` comments, and samples whose family was typed before them.
fn parse(text: &str) -> Vec<Sample> {
    let mut typed: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kind, name, what) = (parts.next(), parts.next(), parts.next());
            match (kind, name, what) {
                (Some("HELP"), Some(_), Some(_)) => {}
                (Some("TYPE"), Some(n), Some(t @ ("counter" | "gauge" | "histogram"))) => {
                    typed.insert(n.to_string(), t.to_string());
                }
                _ => panic!("bad comment line: {line}"),
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                let mut labels = BTreeMap::new();
                // Label values here never hold `",` (versions, names, kinds, states, uuids).
                for pair in body.split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once("=\"")
                        .unwrap_or_else(|| panic!("bad label {pair}: {line}"));
                    labels.insert(k.to_string(), v.trim_end_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
        };
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name: {line}"
        );
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| typed.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name);
        assert!(typed.contains_key(family), "sample before its # TYPE: {line}");
        samples.push(Sample { name, labels, value });
    }
    samples
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .iter()
        .find(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
}

/// `GET /metrics`: the body of a 200 answer, or None when nothing answers (yet).
fn scrape(addr: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "not a 200: {head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "not the Prometheus text format: {head}"
    );
    Some(body.to_string())
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr")
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

/// The clinic project on a generated legacy database, with a window open now (from an hour
/// ago to two hours from now).
fn clinic(patients: u32) -> TestProject {
    let now = chrono::Utc::now();
    let window = format!(
        "\n[window]\nstart = \"{}\"\nend = \"{}\"\n\n[defaults]\nbatch_size = 500\ncontinue_on_error = true\n",
        (now - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        (now + chrono::Duration::hours(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    );
    let p = TestProject::with_config(Backend::Sqlite, &window);
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clinic/migrations"),
        &p.path().join("migrations"),
    );
    let src = p.path().join("source.db");
    let o = std::process::Command::new(support::bin())
        .args(["generate", src.to_str().unwrap(), "--patients", &patients.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    p
}

/// Kills the process when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const KINDS: [(&str, &str); 6] = [
    ("read", "source"),
    ("written", "written"),
    ("skipped", "skipped"),
    ("rejected", "rejected"),
    ("merged", "merged"),
    ("warned", "warnings"),
];

/// Every row counter of a scrape: (step, kind) → value.
fn row_counters(samples: &[Sample]) -> BTreeMap<(String, String), f64> {
    samples
        .iter()
        .filter(|s| s.name == "cutover_rows_total")
        .map(|s| ((s.labels["step"].clone(), s.labels["kind"].clone()), s.value))
        .collect()
}

#[test]
fn a_scrape_mid_run_has_the_series_and_the_final_counters_equal_the_ledger() {
    let p = clinic(6_000);
    let addr = free_port();
    let mut cmd = p.cmd(&[
        "--metrics-addr",
        &addr.to_string(),
        "--metrics-linger",
        "120",
        "up",
        "--continue-on-error",
    ]);
    let child = Running(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start cutover up"),
    );

    // Mid-run: scrape until a data step is running with rows read; every scrape on the way
    // must parse, and no counter may go down from one scrape to the next.
    let started = Instant::now();
    let mut last: BTreeMap<(String, String), f64> = BTreeMap::new();
    let mut mid_run: Option<Vec<Sample>> = None;
    let mut scrapes = 0;
    let finished = loop {
        assert!(started.elapsed() < Duration::from_secs(300), "the run did not finish");
        let Some(text) = scrape(addr) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        scrapes += 1;
        let samples = parse(&text);
        let counters = row_counters(&samples);
        for (key, before) in &last {
            let now = counters.get(key).copied().unwrap_or(0.0);
            assert!(now >= *before, "{key:?} went down from {before} to {now}");
        }
        last = counters;
        let running_with_rows = samples.iter().any(|s| {
            s.name == "cutover_step_state"
                && s.labels["state"] == "running"
                && s.value == 1.0
                && value(
                    &samples,
                    "cutover_rows_total",
                    &[("step", &s.labels["step"]), ("kind", "read")],
                )
                .is_some_and(|n| n > 0.0)
        });
        if mid_run.is_none() && running_with_rows {
            mid_run = Some(samples.clone());
        }
        if value(&samples, "cutover_run_active", &[]) == Some(0.0) {
            break samples;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mid = mid_run.unwrap_or_else(|| panic!("no scrape of {scrapes} caught a step running with rows read"));
    for name in [
        "cutover_rows_total",
        "cutover_batch_duration_seconds_bucket",
        "cutover_batch_duration_seconds_sum",
        "cutover_batch_duration_seconds_count",
        "cutover_step_state",
        "cutover_window_seconds_left",
        "cutover_eta_seconds",
        "cutover_run_info",
    ] {
        assert!(mid.iter().any(|s| s.name == name), "no {name} mid-run");
    }
    assert!(
        value(&mid, "cutover_run_info", &[("operation", "up")]) == Some(1.0),
        "run info mid-run"
    );
    let left = value(&mid, "cutover_window_seconds_left", &[]).unwrap();
    assert!(
        (6_000.0..=7_200.0).contains(&left),
        "the window closes in about two hours, not {left}s"
    );
    let eta = value(&mid, "cutover_eta_seconds", &[]).unwrap();
    assert!(eta > 0.0, "rows are left mid-run, yet the ETA is {eta}");

    // After the run: every step's counters equal the ledger's counts.
    let ledger: J = p.json(&["status"]);
    let steps = ledger["migrations"].as_array().expect("migrations");
    let mut data_steps = 0;
    for m in steps {
        let version = m["version"].as_str().unwrap();
        assert_eq!(m["state"], "applied", "{version}: {m}");
        for (kind, field) in KINDS {
            let want = m["counts"][field].as_u64().unwrap() as f64;
            let got = value(&finished, "cutover_rows_total", &[("step", version), ("kind", kind)]);
            assert_eq!(got, Some(want), "{version} {kind}: metrics vs ledger");
        }
        assert_eq!(
            value(
                &finished,
                "cutover_step_state",
                &[("step", version), ("state", "applied")]
            ),
            Some(1.0),
            "{version} applied"
        );
        if m["kind"] != "schema" && m["counts"]["source"].as_u64().unwrap() > 0 {
            data_steps += 1;
            let count = value(&finished, "cutover_batch_duration_seconds_count", &[("step", version)]).unwrap();
            let inf = value(
                &finished,
                "cutover_batch_duration_seconds_bucket",
                &[("step", version), ("le", "+Inf")],
            )
            .unwrap();
            assert!(
                count >= 1.0 && inf == count,
                "{version}: {count} batches, +Inf bucket {inf}"
            );
        }
    }
    assert!(data_steps >= 5, "the clinic moves rows in several steps: {ledger}");
    // 6000 patients in batches of 500: accounts (one per patient) took 12 batches, every one
    // of them in the histogram although progress is coalesced.
    let accounts = steps.iter().find(|m| m["name"] == "accounts").expect("accounts step");
    let batches = accounts["counts"]["source"].as_u64().unwrap().div_ceil(500) as f64;
    assert_eq!(
        value(
            &finished,
            "cutover_batch_duration_seconds_count",
            &[("step", accounts["version"].as_str().unwrap())]
        ),
        Some(batches)
    );
    assert_eq!(value(&finished, "cutover_eta_seconds", &[]), Some(0.0));
    drop(child);
}

#[test]
fn a_taken_address_stops_up_before_any_work() {
    let p = clinic(50);
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().unwrap().to_string();
    let o = p.run(&["--metrics-addr", &addr, "up"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("cannot serve metrics on {addr}")) && err.to_lowercase().contains("in use"),
        "{err}"
    );
    let states = p.states();
    assert!(
        states.iter().all(|(_, s)| s == "pending"),
        "a step ran although the metrics could not be served: {states:?}"
    );
}

#[test]
fn metrics_addr_on_a_verb_without_a_run_is_refused() {
    let p = clinic(10);
    let o = p.run(&["--metrics-addr", "127.0.0.1:0", "status"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("use it with up, down, sync or console"),
        "{}",
        stderr(&o)
    );
}

/// A tmux session running a command; killed when dropped.
struct Tmux(String);

impl Tmux {
    fn start(command: &str) -> Tmux {
        let name = format!("cutover-metrics-{}", std::process::id());
        let out = std::process::Command::new("tmux")
            .args(["new-session", "-d", "-x", "120", "-y", "40", "-s", &name, command])
            .env_remove("TMUX")
            .output()
            .expect("tmux is needed for this test (apt-get install tmux)");
        assert!(out.status.success(), "tmux: {}", String::from_utf8_lossy(&out.stderr));
        Tmux(name)
    }

    fn keys(&self, keys: &str) {
        let out = std::process::Command::new("tmux")
            .args(["send-keys", "-t", &self.0, keys])
            .output()
            .expect("tmux send-keys");
        assert!(out.status.success());
    }

    fn screen(&self) -> String {
        let out = std::process::Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// Scrape until `ok` holds for the parsed samples; panics with the last scrape after a minute.
fn scrape_until(addr: SocketAddr, what: &str, ok: impl Fn(&[Sample]) -> bool) -> Vec<Sample> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        if let Some(text) = scrape(addr) {
            let samples = parse(&text);
            if ok(&samples) {
                return samples;
            }
            last = text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}; the last scrape:\n{last}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_console_feeds_the_metrics_its_snapshot_and_its_runs() {
    let p = clinic(200);
    let addr = free_port();
    let command = format!(
        "'{}' -C '{}' --metrics-addr {addr} console; sleep 600",
        support::bin().display(),
        p.path().display()
    );
    let tmux = Tmux::start(&command);
    let schema = "20250101T090000";
    // The console's first snapshot of the ledger: every step pending.
    let samples = scrape_until(addr, "every step pending", |s| {
        let pending = s
            .iter()
            .filter(|x| x.name == "cutover_step_state" && x.labels["state"] == "pending" && x.value == 1.0)
            .count();
        pending == 11
    });
    assert_eq!(value(&samples, "cutover_run_active", &[]), None, "no run yet");
    // Run the next step (the schema step) from the console: `n`, then `y` in its dialog.
    tmux.keys("n");
    let started = Instant::now();
    while !tmux.screen().contains("Run the next pending step?") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no dialog:\n{}",
            tmux.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux.keys("y");
    let samples = scrape_until(addr, "the schema step applied by the console's run", |s| {
        value(s, "cutover_step_state", &[("step", schema), ("state", "applied")]) == Some(1.0)
            && value(s, "cutover_run_active", &[]) == Some(0.0)
    });
    assert_eq!(value(&samples, "cutover_run_info", &[("operation", "up")]), Some(1.0));
    assert_eq!(
        value(
            &samples,
            "cutover_step_state",
            &[("step", "20250101T090100"), ("state", "pending")]
        ),
        Some(1.0),
        "only the next step ran"
    );
}
