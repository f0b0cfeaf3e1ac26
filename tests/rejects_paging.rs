//! The rejects pane's engine side: a store of more rejects than any page (or the old 2 000-row
//! snapshot) held, read through the engine task the console talks to. The last page, a filter
//! that finds the oldest rejects, and an export of every matching row, counted against the
//! store.

mod common;
#[macro_use]
mod support;

use cutover::engine::config::Overrides;
use cutover::engine::db::{Db, Role};
use cutover::engine::project::Project;
use cutover::engine::protocol::views::RejectPage;
use cutover::engine::protocol::{Command, EngineEvent, PageAt, RejectPageRequest};
use cutover::engine::runner::{self, EngineHandle};
use cutover::engine::store::{self, NewReject, RejectStore};
use std::sync::Arc;
use std::time::Duration;
use support::{Backend, TestProject, sqlite3};

const ACCOUNTS: &str = "20250101T090100";
const ORDERS: &str = "20250101T090200";
/// The accounts step's rejects: the oldest in the store.
const OLD: usize = 300;
/// The orders step's, newer: more than the old snapshot's 2 000 on their own.
const NEW: usize = 2300;

fn new_reject(key: String, rule: &str, reason: &str) -> NewReject {
    NewReject {
        row: serde_json::json!({"id": key, "password_hash": "$2b$secret"}),
        source_key: key,
        field: Some("email".into()),
        rule: rule.into(),
        reason: reason.into(),
        warning: false,
        waits_for: None,
    }
}

/// A project with two data steps (accounts, then orders) and their rejects in the store.
async fn project_with_rejects() -> (TestProject, Arc<Project>) {
    let p = TestProject::new(Backend::Sqlite);
    p.data_step(&format!("{ACCOUNTS}_accounts"), "kind = \"data\"\n");
    p.data_step(&format!("{ORDERS}_orders"), "kind = \"data\"\n");
    let project = Project::load(p.path(), &Overrides::default()).expect("project");
    let target = Db::connect(&project.config.target, &project.config.dir, Role::Target)
        .await
        .expect("target");
    store::ensure(&target).await.expect("store");
    let mut tx = target.begin().await.expect("tx");
    let old: Vec<NewReject> = (0..OLD)
        .map(|i| new_reject(format!("u{i:07}"), "email", "'bob@' is not an email address"))
        .collect();
    RejectStore::insert(&mut tx, "run-1", ACCOUNTS, "users", &old)
        .await
        .expect("insert");
    let new: Vec<NewReject> = (0..NEW)
        .map(|i| new_reject(format!("o{i:07}"), "lookup", "no account for the user yet"))
        .collect();
    RejectStore::insert(&mut tx, "run-2", ORDERS, "orders", &new)
        .await
        .expect("insert");
    tx.commit().await.expect("commit");
    target.close().await;
    (p, Arc::new(project))
}

/// The next event of the kind `pick` takes, within a few seconds.
async fn next<T>(engine: &mut EngineHandle, mut pick: impl FnMut(EngineEvent) -> Option<T>) -> T {
    let wait = async {
        loop {
            match engine.events.recv().await {
                Some(ev) => {
                    if let Some(t) = pick(ev) {
                        return t;
                    }
                }
                None => panic!("the engine stopped"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .expect("the engine answered in time")
}

async fn load(engine: &mut EngineHandle, seq: u64, filter: &str, at: PageAt) -> RejectPage {
    engine
        .commands
        .send(Command::LoadRejects(RejectPageRequest {
            seq,
            filter: filter.into(),
            at,
            limit: 50,
        }))
        .await
        .expect("send");
    let page = next(engine, |ev| match ev {
        EngineEvent::RejectPage(p) => Some(p),
        _ => None,
    })
    .await;
    assert_eq!(page.error, None);
    assert_eq!(page.seq, seq);
    page
}

async fn export(engine: &mut EngineHandle, filter: &str, stamp: &str) -> (String, u64) {
    engine
        .commands
        .send(Command::ExportRejects {
            filter: filter.into(),
            stamp: stamp.into(),
        })
        .await
        .expect("send");
    next(engine, |ev| match ev {
        EngineEvent::RejectsExported { path, rows, error } => {
            assert_eq!(error, None);
            Some((path, rows))
        }
        _ => None,
    })
    .await
}

/// Records in a CSV file (not lines: a field may hold a newline), and whether a secret leaked.
fn csv_records(path: &str) -> (usize, bool) {
    let mut r = csv::Reader::from_path(path).expect("csv");
    let mut n = 0;
    let mut leaked = false;
    for rec in r.records() {
        let rec = rec.expect("record");
        leaked |= rec.iter().any(|f| f.contains("$2b$secret"));
        n += 1;
    }
    (n, leaked)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reject_is_reachable_by_page_filter_and_export() {
    let (p, project) = project_with_rejects().await;
    let total = OLD + NEW;
    let in_store = sqlite3(
        &p.path().join("target.db"),
        "SELECT COUNT(*) FROM cutover_rejects WHERE level = 'error'",
    );
    assert_eq!(in_store.trim(), total.to_string());
    let mut engine = runner::spawn(project);

    // The first page and the true totals.
    let first = load(&mut engine, 1, "", PageAt::Offset(0)).await;
    assert_eq!(
        (first.matching, first.open, first.offset),
        (total as u64, total as u64, 0)
    );
    assert_eq!(first.rows.len(), 50);
    assert_eq!(first.rows[0].source_key, "u0000000", "oldest first");

    // The last page: rows 2 551–2 600, ending with the newest reject.
    let last = load(&mut engine, 2, "", PageAt::Last).await;
    assert_eq!(last.offset, 2550);
    assert_eq!(last.rows.len(), 50);
    assert_eq!(
        last.rows.last().map(|r| r.source_key.as_str()),
        Some(format!("o{:07}", NEW - 1).as_str())
    );
    // Paging down from the first page by offsets reaches the same rows.
    let same = load(&mut engine, 3, "", PageAt::Offset(2550)).await;
    assert_eq!(same.rows, last.rows);
    // The secret never leaves the engine.
    assert!(
        last.rows
            .iter()
            .all(|r| r.row.iter().all(|(_, v)| !v.contains("$2b$secret")))
    );

    // The step's name finds its rejects, all older than the newest 2 000.
    let accounts = load(&mut engine, 4, "accounts", PageAt::Offset(0)).await;
    assert_eq!(accounts.matching, OLD as u64);
    assert!(accounts.rows.iter().all(|r| r.step == ACCOUNTS));
    assert_eq!(accounts.rows[0].source_key, "u0000000");
    let accounts_last = load(&mut engine, 5, "accounts", PageAt::Last).await;
    assert_eq!(accounts_last.offset, 250);
    assert_eq!(accounts_last.rows.len(), 50);
    // A key, and words that must all match (rule and reason).
    let one = load(&mut engine, 6, "u0000007", PageAt::Offset(0)).await;
    assert_eq!(one.matching, 1);
    assert_eq!(one.rows[0].source_key, "u0000007");
    let both = load(&mut engine, 7, "EMAIL bob@", PageAt::Offset(0)).await;
    assert_eq!(both.matching, OLD as u64, "case-insensitive, every word");
    // LIKE's wildcards are taken literally.
    let none = load(&mut engine, 8, "%", PageAt::Offset(0)).await;
    assert_eq!((none.matching, none.rows.len()), (0, 0));

    // Export: every row the filter matches, counted against the store.
    let (path, rows) = export(&mut engine, "", "all").await;
    assert_eq!(rows, total as u64);
    let (records, leaked) = csv_records(&path);
    assert_eq!(records, total, "one CSV record per reject in the store");
    assert!(!leaked, "secrets are redacted in the export");
    let (path, rows) = export(&mut engine, "accounts", "accounts").await;
    let accounts_in_store = sqlite3(
        &p.path().join("target.db"),
        &format!("SELECT COUNT(*) FROM cutover_rejects WHERE version = '{ACCOUNTS}'"),
    );
    assert_eq!(rows.to_string(), accounts_in_store.trim());
    assert_eq!(csv_records(&path).0.to_string(), accounts_in_store.trim());
}
