//! The built-in checks (the ledger, the accounting of every step, foreign keys) and the
//! declared expectations and checksums.

use super::checksum::{ContentSum, canonical, content_sum, scalar, sql_error};
use super::spec::{ChecksumSpec, ExpectSpec};
use super::{Check, CheckKind, Measure, Source};
use crate::engine::backend::ForeignKeyCatalog;
use crate::engine::db::Db;
use crate::engine::project::{Project, StepKind};
use crate::engine::store::REJECTS;
use crate::engine::store::ledger::{self, LedgerStatus};
use crate::engine::value::Value;
use color_eyre::eyre::Result;
use std::collections::BTreeMap;
use std::ops::ControlFlow;

/// Steps left failed/running, then accounting and the reject store per applied data/merge step.
pub(super) async fn ledger_checks(target: &Db) -> Result<Vec<Check>> {
    let rows = ledger::load(target).await?;
    let mut checks = Vec::new();
    let unfinished: Vec<String> = rows
        .iter()
        .filter(|r| {
            matches!(
                r.status,
                LedgerStatus::Failed | LedgerStatus::Running | LedgerStatus::Interrupted
            )
        })
        .map(|r| format!("{}_{} is {}", r.version, r.name, r.status.as_str()))
        .collect();
    checks.push(Check {
        name: "no step failed or running".into(),
        kind: CheckKind::Ledger,
        ok: unfinished.is_empty(),
        source: None,
        target: Some(Measure::count(unfinished.len() as u64)),
        detail: if unfinished.is_empty() {
            let applied = rows.iter().filter(|r| r.status.is_applied()).count();
            format!("{applied} step{} applied", if applied == 1 { "" } else { "s" })
        } else {
            format!(
                "{} (see `cutover status`: `cutover up` resumes a failed or interrupted data step from its last checkpoint; `cutover repair` clears a failed schema step so `up` runs it again)",
                unfinished.join(", ")
            )
        },
        explained: None,
        not_checked: None,
    });
    let mut open_rejects: BTreeMap<String, i64> = BTreeMap::new();
    if target.table_exists(REJECTS).await? {
        let counted = target
            .fetch_all(
                &format!(
                    "SELECT version, COUNT(*) FROM {REJECTS} WHERE level = 'error' AND state = 'open' GROUP BY version"
                ),
                &[],
            )
            .await?;
        for r in counted.rows {
            if let (Some(v), Some(Value::Int(n))) = (r.first().and_then(|v| v.to_text()), r.get(1)) {
                open_rejects.insert(v, *n);
            }
        }
    }
    for r in rows
        .iter()
        .filter(|r| r.status == LedgerStatus::Applied && matches!(ledger::kind_of(r), StepKind::Data | StepKind::Merge))
    {
        let step = format!("{}_{}", r.version, r.name);
        let c = &r.counts;
        let accounted = c.written + c.skipped + c.rejected + c.merged;
        checks.push(Check {
            name: format!("accounting {step}"),
            kind: CheckKind::Accounting,
            ok: c.balanced(),
            source: Some(Measure::count(c.source)),
            target: Some(Measure::count(accounted)),
            detail: format!(
                "source {} {} written {} + skipped {} + rejected {} + merged {}",
                c.source,
                if c.balanced() { "=" } else { "≠" },
                c.written,
                c.skipped,
                c.rejected,
                c.merged
            ),
            explained: None,
            not_checked: None,
        });
        let stored = open_rejects.get(&r.version).copied().unwrap_or(0);
        let ok = i64::try_from(c.rejected).is_ok_and(|n| n == stored);
        checks.push(Check {
            name: format!("rejects {step}"),
            kind: CheckKind::Rejects,
            ok,
            source: Some(Measure::count(c.rejected)),
            target: Some(Measure::Int(stored)),
            detail: format!(
                "ledger rejected {} {} open rejects in {REJECTS} {stored}",
                c.rejected,
                if ok { "=" } else { "≠" }
            ),
            explained: None,
            not_checked: None,
        });
    }
    Ok(checks)
}

/// Per applied data and merge step: the source's own row count (of the step's table or
/// query, now) against the rows the ledger accounted for. A reader that stopped early, or a
/// pager that skipped rows, shows here even when the books balance.
pub(super) async fn source_count_checks(project: &Project, target: &Db, source: &Source) -> Result<Vec<Check>> {
    let rows = ledger::load(target).await?;
    let mut checks = Vec::new();
    for r in rows
        .iter()
        .filter(|r| r.status == LedgerStatus::Applied && matches!(ledger::kind_of(r), StepKind::Data | StepKind::Merge))
    {
        let name = format!("source rows {}_{}", r.version, r.name);
        let Some(step) = project.step(&r.version) else {
            continue;
        };
        let sides = match step.kind {
            StepKind::Merge => crate::engine::steps::merge::MergeStep::load(step).map(|m| vec![m.a, m.b]),
            _ => crate::engine::ops::load_compiled(step).map(|c| vec![c]),
        };
        // A file step counts its file (its rows, blank lines left out) whatever the source.
        let counted: Result<u64, String> = match (sides, source) {
            (Err(e), _) => Err(format!("cannot load the step: {e:#}")),
            (Ok(sides), source) => {
                let mut n = 0u64;
                let mut err = None;
                for c in &sides {
                    let db = match source {
                        Source::Open(db) => Some(db),
                        Source::Unavailable(why) if !c.spec.source.is_file() => {
                            err = Some(format!("cannot count the source: {why}"));
                            continue;
                        }
                        Source::Unavailable(_) => None,
                    };
                    match crate::engine::source::table::count_step_source(&project.config, db, c).await {
                        Ok(k) => n += k,
                        Err(e) => err = Some(format!("cannot count the source: {e:#}")),
                    }
                }
                match err {
                    Some(e) => Err(e),
                    None => Ok(n),
                }
            }
        };
        checks.push(match counted {
            Ok(n) => Check {
                name,
                kind: CheckKind::Accounting,
                ok: n == r.counts.source,
                source: Some(Measure::count(n)),
                target: Some(Measure::count(r.counts.source)),
                detail: format!(
                    "the source has {n} rows {} the ledger accounted for {}",
                    if n == r.counts.source { "=" } else { "≠" },
                    r.counts.source
                ),
                explained: None,
                not_checked: None,
            },
            Err(e) => Check {
                name,
                kind: CheckKind::Accounting,
                ok: false,
                source: None,
                target: Some(Measure::count(r.counts.source)),
                detail: e,
                explained: None,
                not_checked: None,
            },
        });
    }
    Ok(checks)
}

pub(super) async fn expect_check(e: &ExpectSpec, source: &Source, target: &Db) -> Check {
    // The two sides are different databases: ask both at once.
    let src = async {
        match &e.source {
            Some(sql) => Some(match source.db() {
                Ok(db) => scalar(db, sql).await,
                Err(why) => Err(why),
            }),
            None => None,
        }
    };
    let tgt = async {
        match &e.target {
            Some(sql) => Some(scalar(target, sql).await),
            None => None,
        }
    };
    let (src, tgt) = tokio::join!(src, tgt);
    let mut errors = Vec::new();
    let mut values: Vec<(&str, Option<String>)> = Vec::new();
    for (side, r) in [("source", &src), ("target", &tgt)] {
        match r {
            Some(Ok(v)) => values.push((side, canonical(v))),
            Some(Err(msg)) => errors.push(format!("{side} query failed: {msg}")),
            None => {}
        }
    }
    if let Some(eq) = &e.equals {
        values.push(("expected", Some(eq.canonical())));
    }
    let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "NULL".into());
    let agree = values.windows(2).all(|w| w[0].1 == w[1].1);
    let ok = errors.is_empty() && agree;
    let detail = if !errors.is_empty() {
        errors.join("; ")
    } else {
        let parts: Vec<String> = values.iter().map(|(side, v)| format!("{side} {}", shown(v))).collect();
        parts.join(if agree { " = " } else { " ≠ " })
    };
    let measure = |r: &Option<Result<Value, String>>| match r {
        Some(Ok(v)) => Measure::from_value(v),
        _ => None,
    };
    Check {
        name: e.name.clone(),
        kind: CheckKind::Expect,
        ok,
        source: measure(&src),
        target: measure(&tgt),
        detail,
        explained: None,
        not_checked: None,
    }
}

pub(super) async fn checksum_check(c: &ChecksumSpec, source: &Source, target: &Db) -> Check {
    let src = async {
        match source.db() {
            Ok(db) => content_sum(db, &c.source).await,
            Err(why) => Err(why),
        }
    };
    let (src, tgt) = tokio::join!(src, content_sum(target, &c.target));
    let mut errors = Vec::new();
    if let Err(msg) = &src {
        errors.push(format!("source query failed: {msg}"));
    }
    if let Err(msg) = &tgt {
        errors.push(format!("target query failed: {msg}"));
    }
    let rows = |r: &Result<ContentSum, String>| match r {
        Ok(s) => s.rows.to_string(),
        Err(_) => "?".into(),
    };
    let ok = matches!((&src, &tgt), (Ok(a), Ok(b)) if a == b);
    let counts = format!("rows: source {}, target {}", rows(&src), rows(&tgt));
    let detail = if !errors.is_empty() {
        format!("{}; {counts}", errors.join("; "))
    } else if ok {
        format!("{counts}; content equal")
    } else {
        format!("{counts}; content differs")
    };
    let digest = |r: &Result<ContentSum, String>| r.as_ref().ok().map(|s| Measure::Text(s.hex()));
    Check {
        name: c.name.clone(),
        kind: CheckKind::Checksum,
        ok,
        source: digest(&src),
        target: digest(&tgt),
        detail,
        explained: None,
        not_checked: None,
    }
}

/// A foreign key of the target: child columns referencing parent columns.
struct ForeignKey {
    name: String,
    child: String,
    parent_schema: Option<String>,
    parent: String,
    columns: Vec<String>,
    parent_columns: Vec<String>,
}

const SEP: char = '\u{1f}';

fn split_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(|v| v.to_text())
        .map(|s| s.split([SEP, ',']).map(str::to_string).collect())
        .unwrap_or_default()
}

/// One check per target table with foreign keys: how many rows reference nothing.
pub(super) async fn foreign_key_checks(target: &Db) -> Vec<Check> {
    let result = match target.dialect().foreign_key_catalog() {
        ForeignKeyCatalog::Pragma { list, check } => pragma_foreign_keys(target, list, check).await,
        ForeignKeyCatalog::Query(sql) => catalog_foreign_keys(target, sql).await,
    };
    match result {
        Ok(checks) => checks,
        Err(msg) => vec![Check {
            name: "foreign keys".into(),
            kind: CheckKind::ForeignKeys,
            ok: false,
            source: None,
            target: None,
            detail: format!("cannot check foreign keys: {msg}"),
            explained: None,
            not_checked: None,
        }],
    }
}

fn fk_check(table: &str, orphans: u64, parts: &[String], parents: &[String]) -> Check {
    Check {
        name: format!("foreign keys {table}"),
        kind: CheckKind::ForeignKeys,
        ok: orphans == 0,
        source: None,
        target: Some(Measure::count(orphans)),
        detail: if orphans == 0 {
            format!("no orphan references (to {})", parents.join(", "))
        } else {
            format!(
                "{orphans} row{} reference{} nothing: {}",
                if orphans == 1 { "" } else { "s" },
                if orphans == 1 { "s" } else { "" },
                parts.join(", ")
            )
        },
        explained: None,
        not_checked: None,
    }
}

/// SQLite: the keys from the pragma list, the orphans from `PRAGMA foreign_key_check`.
async fn pragma_foreign_keys(target: &Db, list: &str, check: &str) -> Result<Vec<Check>, String> {
    let keys = target.fetch_all(list, &[]).await.map_err(|e| format!("{e:#}"))?;
    // table -> parents it references
    let mut tables: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &keys.rows {
        let (Some(t), Some(p)) = (r.first().and_then(|v| v.to_text()), r.get(1).and_then(|v| v.to_text())) else {
            continue;
        };
        let parents = tables.entry(t).or_default();
        if !parents.contains(&p) {
            parents.push(p);
        }
    }
    // table -> parent -> orphans
    let mut orphans: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    target
        .for_each_row_probing(check, async |r| {
            if let (Some(t), Some(p)) = (r.first().and_then(|v| v.to_text()), r.get(2).and_then(|v| v.to_text())) {
                *orphans.entry(t).or_default().entry(p).or_default() += 1;
            }
            ControlFlow::Continue(())
        })
        .await
        .map_err(|e| sql_error(&e))?;
    Ok(tables
        .iter()
        .map(|(table, parents)| {
            let by_parent = orphans.get(table);
            let total = by_parent.map(|m| m.values().sum()).unwrap_or(0);
            let parts: Vec<String> = by_parent
                .map(|m| m.iter().map(|(p, n)| format!("{n} to {p}")).collect())
                .unwrap_or_default();
            fk_check(table, total, &parts, parents)
        })
        .collect())
}

/// A server's catalog lists the keys; a LEFT JOIN per key counts its orphans.
async fn catalog_foreign_keys(target: &Db, sql: &str) -> Result<Vec<Check>, String> {
    let dialect = target.dialect();
    let rows = target.fetch_all(sql, &[]).await.map_err(|e| format!("{e:#}"))?;
    let keys: Vec<ForeignKey> = rows
        .rows
        .iter()
        .map(|r| {
            let t = |i: usize| r.get(i).and_then(|v| v.to_text()).unwrap_or_default();
            ForeignKey {
                name: t(0),
                child: t(1),
                parent_schema: r.get(2).and_then(|v| v.to_text()),
                parent: t(3),
                columns: split_list(r.get(4)),
                parent_columns: split_list(r.get(5)),
            }
        })
        .collect();
    // table -> (orphans, per-constraint parts, parents)
    let mut tables: BTreeMap<String, (u64, Vec<String>, Vec<String>)> = BTreeMap::new();
    for fk in &keys {
        let q = |n: &str| dialect.quote_ident(n);
        let parent = match &fk.parent_schema {
            Some(s) => format!("{}.{}", q(s), q(&fk.parent)),
            None => q(&fk.parent),
        };
        let count_sql = format!(
            "SELECT COUNT(*) FROM {} c WHERE {}",
            q(&fk.child),
            dialect.orphan_condition(&fk.columns, &parent, &fk.parent_columns)
        );
        let n = match scalar(target, &count_sql).await {
            Ok(Value::Int(n)) => u64::try_from(n).unwrap_or(0),
            Ok(other) => return Err(format!("counting orphans of {} returned {other}", fk.name)),
            Err(msg) => return Err(format!("counting orphans of {}: {msg}", fk.name)),
        };
        let entry = tables.entry(fk.child.clone()).or_default();
        entry.0 += n;
        if n > 0 {
            entry.1.push(format!(
                "{n} by {} ({}) to {}",
                fk.name,
                fk.columns.join(", "),
                fk.parent
            ));
        }
        if !entry.2.contains(&fk.parent) {
            entry.2.push(fk.parent.clone());
        }
    }
    Ok(tables
        .iter()
        .map(|(table, (n, parts, parents))| fk_check(table, *n, parts, parents))
        .collect())
}
