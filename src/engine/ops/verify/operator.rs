//! What the operator did that the checks must know about, so that an expected state is
//! reported as such and not as a failure:
//!
//! - **fixed rows**: a reject the operator fixed (`rejects fix`) and retried was written with a
//!   value the source does not hold, so a declared check that reads the step's table can differ
//!   from the source by exactly those rows. It passes, saying so, only when the difference is
//!   exactly the fixed rows: an expectation's target exceeds its source by their number; a
//!   checksum's target holds every source row plus exactly that many more.
//! - **reverted steps**: a declared check that fails and reads a table a rolled-back step wrote
//!   is "reverted: not checked"; instead, the table is compared with its content checksum from
//!   before the step ran (`rollback` checks), which proves the rollback put it back.

use super::checksum::{row_hash, sql_error, table_sum};
use super::spec::{ChecksumSpec, DocumentsSpec, ExpectSpec};
use super::{Check, CheckKind, Measure, Source};
use crate::engine::db::Db;
use crate::engine::project::{Project, StepKind};
use crate::engine::store::RejectStore;
use crate::engine::store::ledger::{self, LedgerStatus, PreStepChecksum, RejectFix};
use color_eyre::eyre::Result;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;

/// A reject fixed by the operator and written by a retry.
struct FixedRow {
    fix: RejectFix,
    source_table: String,
    source_key: String,
    /// The table its step writes.
    table: String,
}

/// A step rolled back and not applied again.
struct RevertedStep {
    step: String,
    table: String,
}

pub(super) struct OperatorActions {
    fixed: Vec<FixedRow>,
    reverted: Vec<RevertedStep>,
    /// Reverted data and merge steps with no table (their folder is gone) or no checksum.
    unchecked: Vec<(String, String)>,
    pre: Vec<PreStepChecksum>,
    status: BTreeMap<String, (String, LedgerStatus)>,
}

/// The lower-cased identifiers a query names (its tables among them).
fn identifiers(sql: &str) -> BTreeSet<String> {
    sql.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn target_table(project: &Project, version: &str) -> Option<String> {
    let step = project.step(version)?;
    if step.kind == StepKind::Schema {
        return None;
    }
    crate::engine::ops::load_compiled(step)
        .ok()
        .map(|c| c.spec.target.table)
}

impl OperatorActions {
    pub(super) async fn load(project: &Project, target: &Db) -> Result<OperatorActions> {
        let rows = ledger::load(target).await?;
        let status: BTreeMap<String, (String, LedgerStatus)> = rows
            .iter()
            .map(|r| (r.version.clone(), (format!("{}_{}", r.version, r.name), r.status)))
            .collect();
        let mut reverted = Vec::new();
        let mut unchecked = Vec::new();
        for r in rows
            .iter()
            .filter(|r| r.status == LedgerStatus::Reverted && ledger::kind_of(r) != StepKind::Schema)
        {
            let step = format!("{}_{}", r.version, r.name);
            match target_table(project, &r.version) {
                Some(table) => reverted.push(RevertedStep { step, table }),
                None => unchecked.push((step, "its folder is gone, so its table is unknown".to_string())),
            }
        }
        let pre = ledger::pre_checksums(target).await?;
        for r in &reverted {
            if !pre
                .iter()
                .any(|p| p.table == r.table && status.get(&p.version).is_some_and(|s| s.0 == r.step))
            {
                unchecked.push((
                    r.step.clone(),
                    "no checksum of its table was taken before it ran".into(),
                ));
            }
        }
        let mut fixed = Vec::new();
        let mut seen = BTreeSet::new();
        let fixes = ledger::reject_fixes(target).await?;
        if !fixes.is_empty() {
            let mut tx = target.begin().await?;
            // The last fix of each reject names who made the row what it is.
            for fix in fixes.into_iter().rev() {
                if !seen.insert(fix.reject_id) {
                    continue;
                }
                let Some(rec) = RejectStore::get(&mut tx, fix.reject_id).await? else {
                    continue;
                };
                // Still open: not written, so it changes nothing in the target.
                if rec.state == "open" {
                    continue;
                }
                let Some(table) = target_table(project, &rec.step) else {
                    continue;
                };
                fixed.push(FixedRow {
                    fix,
                    source_table: rec.source_table,
                    source_key: rec.source_key,
                    table,
                });
            }
            tx.rollback().await?;
            fixed.reverse();
        }
        Ok(OperatorActions {
            fixed,
            reverted,
            unchecked,
            pre,
            status,
        })
    }

    /// The rolled-back step whose table `sql` reads, if any.
    fn reverted_in(&self, sql: &str) -> Option<&RevertedStep> {
        let names = identifiers(sql);
        self.reverted.iter().find(|r| names.contains(&r.table.to_lowercase()))
    }

    fn fixed_in(&self, sql: &str) -> Vec<&FixedRow> {
        let names = identifiers(sql);
        self.fixed
            .iter()
            .filter(|f| names.contains(&f.table.to_lowercase()))
            .collect()
    }

    fn not_checked(check: &mut Check, r: &RevertedStep) {
        let why = format!(
            "reverted: not checked ({} was rolled back, and {} with it)",
            r.step, r.table
        );
        check.detail = format!("{why}; {}", check.detail);
        check.not_checked = Some(why);
        check.ok = true;
    }

    fn explained(check: &mut Check, rows: &[&FixedRow]) {
        let first: Vec<String> = rows
            .iter()
            .take(3)
            .map(|f| {
                format!(
                    "reject {} {} {}: {} fixed by {} at {}",
                    f.fix.reject_id, f.source_table, f.source_key, f.fix.field, f.fix.by, f.fix.at
                )
            })
            .collect();
        let more = if rows.len() > 3 {
            format!(", and {} more", rows.len() - 3)
        } else {
            String::new()
        };
        let why = format!(
            "{} row{} written after a fix: {}{more}",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" },
            first.join("; ")
        );
        check.detail = format!("pass ({why}); {}", check.detail);
        check.explained = Some(why);
        check.ok = true;
    }

    /// A failed `[[expect]]`: reverted, or off by exactly the fixed rows.
    pub(super) fn review_expect(&self, e: &ExpectSpec, mut check: Check) -> Check {
        if check.ok {
            return check;
        }
        if let Some(r) = e.target.as_deref().and_then(|sql| self.reverted_in(sql)) {
            Self::not_checked(&mut check, r);
            return check;
        }
        let rows = e.target.as_deref().map(|sql| self.fixed_in(sql)).unwrap_or_default();
        if let (false, Some(Measure::Int(s)), Some(Measure::Int(t))) = (rows.is_empty(), &check.source, &check.target)
            && t - s == rows.len() as i64
        {
            Self::explained(&mut check, &rows);
        }
        check
    }

    /// A failed `[[checksum]]`: reverted, or the target holds every source row and exactly
    /// the fixed rows more.
    pub(super) async fn review_checksum(
        &self,
        c: &ChecksumSpec,
        mut check: Check,
        source: &Source,
        target: &Db,
    ) -> Check {
        if check.ok {
            return check;
        }
        if let Some(r) = self.reverted_in(&c.target) {
            Self::not_checked(&mut check, r);
            return check;
        }
        let rows = self.fixed_in(&c.target);
        if rows.is_empty() {
            return check;
        }
        let Ok(source_db) = source.db() else {
            return check;
        };
        match row_difference(source_db, &c.source, target, &c.target).await {
            Ok((0, extra)) if extra == rows.len() as u64 => Self::explained(&mut check, &rows),
            Ok(_) => {}
            Err(e) => check.detail = format!("{}; cannot compare the rows one by one: {e}", check.detail),
        }
        check
    }

    pub(super) fn review_documents(&self, d: &DocumentsSpec, mut check: Check) -> Check {
        if !check.ok
            && let Some(r) = self.reverted.iter().find(|r| r.table.eq_ignore_ascii_case(&d.table))
        {
            Self::not_checked(&mut check, r);
        }
        check
    }

    /// Per table a rolled-back step wrote: its content now against the checksum taken before
    /// the earliest of the steps that wrote it and are all rolled back since.
    pub(super) async fn rollback_checks(&self, target: &Db) -> Vec<Check> {
        let mut checks: Vec<Check> = self
            .unchecked
            .iter()
            .map(|(step, why)| {
                let why = format!("reverted: not checked ({why})");
                Check {
                    name: format!("rollback {step}"),
                    kind: CheckKind::Rollback,
                    ok: true,
                    source: None,
                    target: None,
                    detail: why.clone(),
                    explained: None,
                    not_checked: Some(why),
                }
            })
            .collect();
        let mut by_table: BTreeMap<&str, Vec<&PreStepChecksum>> = BTreeMap::new();
        for p in &self.pre {
            by_table.entry(p.table.as_str()).or_default().push(p);
        }
        for (table, mut taken) in by_table {
            taken.sort_by(|a, b| a.version.cmp(&b.version));
            let reverted = |p: &&PreStepChecksum| {
                self.status
                    .get(&p.version)
                    .is_some_and(|s| s.1 == LedgerStatus::Reverted)
            };
            // The steps rolled back since the last one still applied that wrote the table.
            let tail = taken.iter().rev().take_while(|p| reverted(p)).count();
            let Some(before) = taken.get(taken.len() - tail) else {
                continue;
            };
            let step = self
                .status
                .get(&before.version)
                .map_or(before.version.clone(), |s| s.0.clone());
            let name = format!("rollback {step}: {table} as before it ran");
            let expected = Measure::Text(before.sum.clone());
            checks.push(match target.table_exists(table).await {
                Ok(false) => Check {
                    name,
                    kind: CheckKind::Rollback,
                    ok: true,
                    source: Some(expected),
                    target: None,
                    detail: format!("reverted: not checked ({table} is gone: its schema step was rolled back too)"),
                    explained: None,
                    not_checked: Some(format!("{table} is gone")),
                },
                Err(e) => Check {
                    name,
                    kind: CheckKind::Rollback,
                    ok: false,
                    source: Some(expected),
                    target: None,
                    detail: format!("cannot read {table}: {e:#}"),
                    explained: None,
                    not_checked: None,
                },
                Ok(true) => match table_sum(target, table).await {
                    Ok(now) => {
                        let same = now.hex() == before.sum && now.rows == before.rows;
                        Check {
                            name,
                            kind: CheckKind::Rollback,
                            ok: same,
                            source: Some(expected),
                            target: Some(Measure::Text(now.hex())),
                            detail: format!(
                                "{table} {} its content before {step} ran (checksum taken at {}): {} rows then, {} now",
                                if same { "is back to" } else { "DIFFERS from" },
                                before.at,
                                before.rows,
                                now.rows
                            ),
                            explained: None,
                            not_checked: None,
                        }
                    }
                    Err(e) => Check {
                        name,
                        kind: CheckKind::Rollback,
                        ok: false,
                        source: Some(expected),
                        target: None,
                        detail: format!("cannot take the checksum of {table}: {e}"),
                        explained: None,
                        not_checked: None,
                    },
                },
            });
        }
        checks
    }
}

/// Rows of the source query missing from the target's, and rows of the target's beyond the
/// source's, compared as multisets of row hashes.
async fn row_difference(source: &Db, source_sql: &str, target: &Db, target_sql: &str) -> Result<(u64, u64), String> {
    let mut balance: HashMap<u128, i64> = HashMap::new();
    source
        .for_each_row(source_sql, async |row| {
            *balance.entry(row_hash(&row)).or_default() += 1;
            ControlFlow::Continue(())
        })
        .await
        .map_err(|e| sql_error(&e))?;
    target
        .for_each_row(target_sql, async |row| {
            *balance.entry(row_hash(&row)).or_default() -= 1;
            ControlFlow::Continue(())
        })
        .await
        .map_err(|e| sql_error(&e))?;
    let missing = balance.values().filter(|n| **n > 0).map(|n| *n as u64).sum();
    let extra = balance.values().filter(|n| **n < 0).map(|n| n.unsigned_abs()).sum();
    Ok((missing, extra))
}

#[cfg(test)]
mod tests {
    use super::identifiers;

    #[test]
    fn identifiers_are_words_not_substrings() {
        let ids = identifiers("SELECT COUNT(*) FROM cutover_rejects WHERE source_table = 'persons_x'");
        assert!(ids.contains("cutover_rejects"));
        assert!(!ids.contains("persons"));
        assert!(identifiers("select email from Accounts").contains("accounts"));
    }
}
