//! `check`: before the window, can this project run? Both servers answer (a refused
//! connection, a wrong password, a missing database and an unknown host each say so), their
//! versions, the privileges the run needs, free disk space where files are written, and every
//! pending step loads (the pre-flight `up` runs). Writes nothing that stays: the privilege
//! probe's table is created and dropped inside a transaction that is rolled back.

use crate::engine::db::{Db, Role};
use crate::engine::exec::{RunControl, RunCtx, new_run_id};
use crate::engine::plan::{self, UpPlanOptions, compute_status};
use crate::engine::project::Project;
use crate::engine::store::ledger;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Free space below which the disk check fails.
const MIN_FREE_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckItem {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CheckReport {
    pub ok: bool,
    pub checks: Vec<CheckItem>,
}

fn item(name: &str, ok: bool, detail: impl Into<String>) -> CheckItem {
    CheckItem {
        name: name.into(),
        ok,
        detail: crate::engine::config::redact_url(&detail.into()),
    }
}

fn text(e: &color_eyre::Report) -> String {
    crate::engine::db_error::report_text(e)
}

pub async fn check(project: &Project) -> CheckReport {
    let mut checks = Vec::new();
    let source = check_source(project, &mut checks).await;
    let mut project = project.clone();
    let sqlite_target = crate::engine::db::sqlite_path(project.config.target.expose(), &project.config.dir);
    // A SQLite target that does not exist yet is not created by a check: its folder must be
    // writable, and the pre-flight runs against an empty scratch file.
    let scratch = match crate::engine::ops::assess::scratch_target(&mut project) {
        Ok(s) => s,
        Err(e) => {
            checks.push(item("target reachable", false, text(&e)));
            None
        }
    };
    if let (Some(p), Some(_)) = (&sqlite_target, &scratch)
        && let Some(folder) = p.parent().filter(|f| !f.as_os_str().is_empty())
        && !folder.is_dir()
    {
        checks.push(item(
            "target reachable",
            false,
            format!(
                "{} cannot be created: {} is not a folder",
                p.display(),
                folder.display()
            ),
        ));
        checks.extend(disk_space(&project, sqlite_target.as_deref()));
        checks.push(item("steps load", false, "not checked: the target is not reachable"));
        crate::engine::ops::assess::remove_scratch(scratch);
        return CheckReport { ok: false, checks };
    }
    let target = match Db::connect(&project.config.target, &project.config.dir, Role::Target).await {
        Ok(t) => {
            let detail = match (&sqlite_target, &scratch) {
                (Some(p), Some(_)) => format!("{} does not exist yet; `up` creates it", p.display()),
                _ => format!("connected to {}", project.config.target),
            };
            checks.push(item("target reachable", true, detail));
            Some(t)
        }
        Err(e) => {
            checks.push(item("target reachable", false, text(&e)));
            None
        }
    };
    if let Some(t) = &target {
        checks.push(version("target version", t).await);
        checks.push(privileges(t, sqlite_target.as_deref()).await);
    }
    checks.extend(disk_space(&project, sqlite_target.as_deref()));
    match &target {
        Some(t) => checks.push(steps_load(&project, t, source).await),
        None => checks.push(item("steps load", false, "not checked: the target is not reachable")),
    }
    if let Some(t) = target {
        t.close().await;
    }
    crate::engine::ops::assess::remove_scratch(scratch);
    CheckReport {
        ok: checks.iter().all(|c| c.ok),
        checks,
    }
}

/// The source: a database that must answer, or a folder of files that must exist.
async fn check_source(project: &Project, checks: &mut Vec<CheckItem>) -> Option<Db> {
    if let Some(folder) = &project.config.source_folder {
        let ok = folder.is_dir();
        checks.push(item(
            "source reachable",
            ok,
            if ok {
                format!("the folder {} is there", folder.display())
            } else {
                format!("the folder {} does not exist", folder.display())
            },
        ));
        return None;
    }
    let url = match project.config.source_db() {
        Ok(u) => u,
        Err(e) => {
            checks.push(item("source reachable", false, text(&e)));
            return None;
        }
    };
    match Db::connect(url, &project.config.dir, Role::Source).await {
        Ok(db) => {
            checks.push(item("source reachable", true, format!("connected to {url}")));
            checks.push(version("source version", &db).await);
            Some(db)
        }
        Err(e) => {
            checks.push(item("source reachable", false, text(&e)));
            None
        }
    }
}

async fn version(name: &str, db: &Db) -> CheckItem {
    match db.fetch_all(db.dialect().version_sql(), &[]).await {
        Ok(rows) => {
            let v = rows
                .rows
                .first()
                .and_then(|r| r.first())
                .and_then(|v| v.to_text())
                .unwrap_or_default();
            item(name, true, v)
        }
        Err(e) => item(name, false, format!("cannot read the server version: {}", text(&e))),
    }
}

/// Create a table, insert into it (PostgreSQL's COPY needs no more than that) and drop it, in
/// a transaction that is rolled back; and for a SQLite target, write a file in its folder.
async fn privileges(target: &Db, sqlite_file: Option<&Path>) -> CheckItem {
    let probe = format!("check_probe_{}", std::process::id());
    let d = target.dialect();
    let table = d.quote_table(&probe);
    let res: color_eyre::eyre::Result<()> = async {
        let mut tx = target.begin().await?;
        let steps = [
            format!("CREATE TABLE {table} (x INTEGER)"),
            format!("INSERT INTO {table} (x) VALUES (1)"),
            format!("DROP TABLE {table}"),
        ];
        for s in &steps {
            if let Err(e) = tx.execute_raw(s).await {
                let _ = tx.rollback().await;
                return Err(color_eyre::eyre::eyre!(
                    "{}: {}",
                    s,
                    crate::engine::db_error::describe(&e)
                ));
            }
        }
        tx.rollback().await?;
        Ok(())
    }
    .await;
    if let Err(e) = res {
        return item("privileges", false, format!("the target refused: {}", text(&e)));
    }
    let mut detail = "create table, insert (and COPY), drop table".to_string();
    if let Some(file) = sqlite_file {
        let folder = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        if let Err(e) = write_probe(&folder) {
            return item(
                "privileges",
                false,
                format!("cannot write in the target's folder {}: {e}", folder.display()),
            );
        }
        detail.push_str(&format!("; the folder {} is writable", folder.display()));
    }
    item("privileges", true, detail)
}

/// Write and remove a small file in `folder` (with a sync, so a read-only or full file
/// system answers now).
fn write_probe(folder: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let path = folder.join(format!(".cutover-check-{}", std::process::id()));
    let res = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(b"cutover check\n")?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    res
}

/// Free space beside a SQLite target, the document store (the project folder) and each bucket's
/// folder.
fn disk_space(project: &Project, sqlite_file: Option<&Path>) -> Vec<CheckItem> {
    let mut places: Vec<(String, PathBuf)> = Vec::new();
    if let Some(f) = sqlite_file {
        places.push((
            "SQLite target".into(),
            f.parent().map(Path::to_path_buf).unwrap_or_default(),
        ));
    }
    places.push(("document store".into(), project.config.dir.clone()));
    for b in crate::engine::data::bucket::buckets_of(&project.config).values() {
        places.push((format!("bucket {}", b.name), b.dir.clone()));
    }
    let mut details = Vec::new();
    let mut ok = true;
    for (what, at) in places {
        // A bucket folder is made by the first file stored into it: until then, its disk is
        // the one of the nearest folder that exists.
        let existing = at.ancestors().find(|a| a.exists()).unwrap_or(&at);
        match free_bytes(existing) {
            Ok(free) => {
                let enough = free >= MIN_FREE_BYTES;
                ok &= enough;
                details.push(format!(
                    "{what} {}: {:.1} GB free{}",
                    at.display(),
                    free as f64 / 1e9,
                    if enough { "" } else { " (less than 1 GB)" }
                ));
            }
            Err(e) => {
                ok = false;
                details.push(format!("{what} {}: cannot tell ({e})", at.display()));
            }
        }
    }
    vec![item("disk space", ok, details.join("; "))]
}

fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.f_bavail as u64 * st.f_frsize as u64)
}

/// The pre-flight `up` runs before its first write, over the pending steps.
async fn steps_load(project: &Project, target: &Db, source: Option<Db>) -> CheckItem {
    let ledger_rows = match ledger::load(target).await {
        Ok(r) => r,
        Err(e) => return item("steps load", false, format!("cannot read the ledger: {}", text(&e))),
    };
    let status = compute_status(&project.steps, &ledger_rows);
    let plan = match plan::plan_up(
        &status,
        &UpPlanOptions {
            to: None,
            only_next: false,
            only: None,
            allow_out_of_order: false,
        },
    ) {
        Ok(p) => p,
        Err(e) => return item("steps load", false, text(&e)),
    };
    let (events, _) = tokio::sync::mpsc::channel(1);
    let cell = tokio::sync::OnceCell::new();
    if let Some(s) = source {
        let _ = cell.set(s);
    }
    let ctx = RunCtx {
        project: Arc::new(project.clone()),
        target: target.clone(),
        source: cell,
        run_id: new_run_id(),
        dry_run: false,
        continue_on_error: None,
        events,
        control: RunControl::default(),
        dry_tx: tokio::sync::Mutex::new(None),
        lock_token: None,
        preflight_counts: Default::default(),
        next_source: Default::default(),
    };
    let problems = crate::engine::preflight::check(&ctx, &plan).await;
    if problems.is_empty() {
        item(
            "steps load",
            true,
            format!("{} pending step(s) pass the pre-flight", plan.len()),
        )
    } else {
        let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        item("steps load", false, list.join("; "))
    }
}
