//! What state each step is in (files on disk joined with the ledger) and which steps a run
//! will touch. Pure functions, so the console and the CLI agree on the answers.

use crate::engine::project::{StepDef, StepKind};
use crate::engine::protocol::DownTarget;
use crate::engine::store::ledger::{LedgerRow, LedgerStatus};
use color_eyre::eyre::{Result, eyre};
use serde::Serialize;

pub use crate::engine::protocol::StepState;

#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub version: String,
    pub name: String,
    pub kind: StepKind,
    pub state: StepState,
    /// `ok`, `modified` (files changed since applied), `missing` (folder gone) or `-` (never run).
    pub checksum_state: &'static str,
    /// The file whose change made the step `modified`.
    pub modified_file: Option<String>,
    pub checksum: Option<String>,
    /// The SHA-256 of the data file the step read, as it is on disk now (file steps that
    /// applied only).
    pub source_checksum: Option<String>,
    pub baseline: bool,
    #[serde(skip)]
    pub def: Option<StepDef>,
    pub ledger: Option<LedgerRow>,
}

impl StepStatus {
    pub fn is_applied(&self) -> bool {
        matches!(self.state, StepState::Applied | StepState::Modified)
    }
}

pub fn compute_status(steps: &[StepDef], ledger: &[LedgerRow]) -> Vec<StepStatus> {
    let mut out: Vec<StepStatus> = Vec::new();
    for def in steps {
        let row = ledger.iter().find(|r| r.version == def.version);
        // The data file a step read, as it is now, when the ledger holds what it was.
        let source_checksum = match (row.and_then(|r| r.source_checksum.as_ref()), &def.source_file) {
            (Some(_), Some(path)) => {
                Some(crate::engine::checksum::file_checksum(path).unwrap_or_else(|e| format!("(cannot be read: {e})")))
            }
            _ => None,
        };
        let (state, checksum_state, modified_file) = match row {
            None => (StepState::Pending, "-", None),
            Some(r) => match r.status {
                LedgerStatus::Applied | LedgerStatus::Baseline => {
                    if r.status == LedgerStatus::Applied && r.checksum != def.checksum {
                        (
                            StepState::Modified,
                            "modified",
                            Some(def.file(&def.checksum_file).display().to_string()),
                        )
                    } else if r.status == LedgerStatus::Applied
                        && source_checksum.is_some()
                        && source_checksum != r.source_checksum
                    {
                        let file = def.source_file.as_ref().map(|p| p.display().to_string());
                        (StepState::Modified, "modified", file)
                    } else {
                        (StepState::Applied, "ok", None)
                    }
                }
                LedgerStatus::Running => (StepState::Running, "-", None),
                LedgerStatus::Interrupted => (StepState::Interrupted, "-", None),
                LedgerStatus::Failed => (StepState::Failed, "-", None),
                LedgerStatus::Reverted => (StepState::Reverted, "-", None),
            },
        };
        out.push(StepStatus {
            version: def.version.clone(),
            name: def.name.clone(),
            kind: def.kind,
            state,
            checksum_state,
            modified_file,
            checksum: Some(def.checksum.clone()),
            source_checksum,
            baseline: row.is_some_and(|r| r.status == LedgerStatus::Baseline),
            def: Some(def.clone()),
            ledger: row.cloned(),
        });
    }
    // Steps the ledger knows but whose folders are gone: still shown, never silently dropped.
    for r in ledger {
        if steps.iter().any(|d| d.version == r.version) || r.status == LedgerStatus::Reverted {
            continue;
        }
        out.push(StepStatus {
            version: r.version.clone(),
            name: r.name.clone(),
            kind: crate::engine::store::ledger::kind_of(r),
            state: match r.status {
                LedgerStatus::Running => StepState::Running,
                LedgerStatus::Interrupted => StepState::Interrupted,
                LedgerStatus::Failed => StepState::Failed,
                _ => StepState::Applied,
            },
            checksum_state: "missing",
            modified_file: None,
            checksum: None,
            source_checksum: None,
            baseline: r.status == LedgerStatus::Baseline,
            def: None,
            ledger: Some(r.clone()),
        });
    }
    out.sort_by(|a, b| a.version.cmp(&b.version));
    out
}

/// A step the ledger says is `running` while no live run holds the target's lock was stopped
/// (killed, or its connection lost for good): it is interrupted. `run_alive` comes from the
/// lock (`store::lock::current_holder`), the only thing that knows whether a run is alive.
pub fn mark_interrupted(status: &mut [StepStatus], run_alive: bool) {
    if run_alive {
        return;
    }
    for s in status.iter_mut().filter(|s| s.state == StepState::Running) {
        s.state = StepState::Interrupted;
    }
}

/// The explanation for a step left running or failed, and what `repair` will do about it.
pub fn blocked_message(s: &StepStatus) -> String {
    let r = s.ledger.as_ref();
    let what = match s.state {
        StepState::Running | StepState::Interrupted => {
            "was left running (the process stopped before it finished; its transaction was rolled back)".to_string()
        }
        _ => format!(
            "failed{}{}",
            r.and_then(|r| r.failing_statement.as_ref())
                .map(|st| format!(" at statement `{}`", one_line(st)))
                .unwrap_or_default(),
            r.and_then(|r| r.error.as_ref())
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    };
    format!(
        "migration {}_{} {what}. Fix the migration if needed, then run `cutover repair`: it removes the {} ledger entry (nothing of it was committed) so `cutover up` runs the step again.",
        s.version,
        s.name,
        s.state.as_str()
    )
}

pub fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > 160 {
        format!("{}…", joined.chars().take(160).collect::<String>())
    } else {
        joined
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpPlanOptions<'a> {
    pub to: Option<&'a str>,
    pub only_next: bool,
    pub only: Option<&'a str>,
    pub allow_out_of_order: bool,
}

/// Steps `up` will run, in order; or why it refuses.
pub fn plan_up(status: &[StepStatus], o: &UpPlanOptions) -> Result<Vec<StepDef>> {
    for s in status {
        if s.state == StepState::Modified {
            return Err(eyre!(
                "migration {}_{} was applied but {} has changed since (checksum {} in the ledger, {} on disk). Applied migrations must not be edited: restore the file, or add a new migration. If the change is deliberate and harmless (comments, formatting), `cutover repair` records the new checksum.",
                s.version,
                s.name,
                s.modified_file.as_deref().unwrap_or("its file"),
                s.ledger.as_ref().map(|r| short(recorded(s, r))).unwrap_or_default(),
                on_disk(s).map(short).unwrap_or_default()
            ));
        }
        if s.kind == StepKind::Schema && s.state.is_unfinished() {
            return Err(eyre!("{}", blocked_message(s)));
        }
    }
    if let Some(to) = o.to
        && !status.iter().any(|s| s.version == to)
    {
        return Err(eyre!("--to {to}: no migration has this version (see `cutover status`)"));
    }
    let highest_applied = status
        .iter()
        .filter(|s| s.is_applied())
        .map(|s| s.version.clone())
        .max();
    let mut out = Vec::new();
    for s in status {
        let runnable = matches!(s.state, StepState::Pending | StepState::Reverted)
            || (s.kind != StepKind::Schema && s.state.is_unfinished());
        if !runnable {
            continue;
        }
        if let Some(to) = o.to
            && s.version.as_str() > to
        {
            break;
        }
        if let Some(only) = o.only
            && s.version != only
        {
            continue;
        }
        let Some(def) = s.def.clone() else { continue };
        if let Some(h) = &highest_applied
            && s.version < *h
            && !o.allow_out_of_order
            && matches!(s.state, StepState::Pending)
        {
            return Err(eyre!(
                "migration {}_{} is pending but older than the applied {h}; run with --allow-out-of-order to apply it anyway",
                s.version,
                s.name
            ));
        }
        out.push(def);
        if o.only_next {
            break;
        }
    }
    Ok(out)
}

/// Steps `down` will revert, newest first.
pub fn plan_down(status: &[StepStatus], target: &DownTarget) -> Result<Vec<StatusRef>> {
    let applied: Vec<&StepStatus> = status
        .iter()
        .filter(|s| s.is_applied() || (s.kind != StepKind::Schema && s.state.is_unfinished()))
        .collect();
    let mut chosen: Vec<&StepStatus> = match target {
        DownTarget::Last => applied.last().copied().into_iter().collect(),
        DownTarget::All => applied.clone(),
        DownTarget::To(v) => {
            if !status.iter().any(|s| &s.version == v) {
                return Err(eyre!("--to {v}: no migration has this version (see `cutover status`)"));
            }
            applied
                .iter()
                .copied()
                .filter(|s| s.version.as_str() > v.as_str())
                .collect()
        }
        DownTarget::Only(v) => {
            let s = applied
                .iter()
                .copied()
                .find(|s| &s.version == v)
                .ok_or_else(|| eyre!("migration {v} is not applied, so there is nothing to roll back"))?;
            if let Some(later) = applied.iter().find(|a| a.version > s.version) {
                return Err(eyre!(
                    "migration {}_{} is applied after {}_{}; roll that back first (steps are reverted newest first)",
                    later.version,
                    later.name,
                    s.version,
                    s.name
                ));
            }
            vec![s]
        }
    };
    if let Some(b) = chosen.iter().find(|s| s.baseline) {
        return Err(eyre!(
            "migration {}_{} is below the baseline (it was never run by cutover), so it cannot be reverted",
            b.version,
            b.name
        ));
    }
    if let Some(m) = chosen.iter().find(|s| s.def.is_none()) {
        return Err(eyre!(
            "migration {}_{} is applied but its folder is gone, so cutover cannot know how to revert it; restore the folder",
            m.version,
            m.name
        ));
    }
    chosen.reverse();
    Ok(chosen
        .into_iter()
        .map(|s| StatusRef {
            def: s.def.clone(),
            status: s.clone(),
        })
        .filter(|s| s.def.is_some())
        .collect())
}

#[derive(Debug, Clone)]
pub struct StatusRef {
    pub def: Option<StepDef>,
    pub status: StepStatus,
}

/// Whether a modified step's change is its data file (not its step.toml or up.sql).
fn file_changed(s: &StepStatus, r: &LedgerRow) -> bool {
    s.checksum.as_ref() == Some(&r.checksum) && s.source_checksum.is_some()
}

/// The ledger's checksum of what changed.
fn recorded<'a>(s: &StepStatus, r: &'a LedgerRow) -> &'a str {
    match (file_changed(s, r), &r.source_checksum) {
        (true, Some(c)) => c,
        _ => &r.checksum,
    }
}

/// The on-disk checksum of what changed.
fn on_disk(s: &StepStatus) -> Option<&str> {
    match &s.ledger {
        Some(r) if file_changed(s, r) => s.source_checksum.as_deref(),
        _ => s.checksum.as_deref(),
    }
}

fn short(c: &str) -> String {
    c.chars().take(19).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::protocol::Counts;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn def(version: &str, kind: StepKind) -> StepDef {
        StepDef {
            version: version.into(),
            name: format!("s{version}"),
            kind,
            dir: PathBuf::from(format!("/nonexistent/{version}")),
            checksum_file: "up.sql".into(),
            checksum: format!("sum-{version}"),
            overrides: BTreeMap::new(),
            source_file: None,
        }
    }

    fn row(d: &StepDef, status: LedgerStatus) -> LedgerRow {
        LedgerRow {
            version: d.version.clone(),
            name: d.name.clone(),
            kind: "data".into(),
            checksum: d.checksum.clone(),
            status,
            run_id: None,
            started_at: None,
            applied_at: None,
            applied_by: None,
            host: None,
            duration_ms: None,
            counts: Counts::default(),
            error: Some("boom".into()),
            failing_statement: None,
            source_checksum: None,
        }
    }

    fn versions(defs: &[StepDef]) -> Vec<&str> {
        defs.iter().map(|d| d.version.as_str()).collect()
    }

    #[test]
    fn states_join_files_and_ledger() {
        let (a, b, c) = (
            def("1", StepKind::Schema),
            def("2", StepKind::Data),
            def("3", StepKind::Data),
        );
        let mut edited = row(&b, LedgerStatus::Applied);
        edited.checksum = "older".into();
        let gone = def("9", StepKind::Data);
        let st = compute_status(
            &[a.clone(), b.clone(), c.clone()],
            &[row(&a, LedgerStatus::Applied), edited, row(&gone, LedgerStatus::Failed)],
        );
        let got: Vec<(&str, StepState, &str)> = st
            .iter()
            .map(|s| (s.version.as_str(), s.state, s.checksum_state))
            .collect();
        assert_eq!(
            got,
            [
                ("1", StepState::Applied, "ok"),
                ("2", StepState::Modified, "modified"),
                ("3", StepState::Pending, "-"),
                // a ledger row whose folder is gone is still shown, never dropped
                ("9", StepState::Failed, "missing"),
            ]
        );
    }

    #[test]
    fn up_refuses_a_modified_step_and_an_older_pending_one() {
        let (a, b) = (def("1", StepKind::Data), def("2", StepKind::Data));
        let mut edited = row(&a, LedgerStatus::Applied);
        edited.checksum = "older".into();
        let err = plan_up(
            &compute_status(&[a.clone(), b.clone()], &[edited]),
            &UpPlanOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("has changed since"), "{err}");

        let st = compute_status(&[a.clone(), b.clone()], &[row(&b, LedgerStatus::Applied)]);
        let err = plan_up(&st, &UpPlanOptions::default()).unwrap_err();
        assert!(err.to_string().contains("--allow-out-of-order"), "{err}");
        let ok = plan_up(
            &st,
            &UpPlanOptions {
                allow_out_of_order: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(versions(&ok), ["1"]);
    }

    #[test]
    fn up_resumes_data_steps_but_blocks_on_a_failed_schema_step() {
        let (a, b, c) = (
            def("1", StepKind::Schema),
            def("2", StepKind::Data),
            def("3", StepKind::Data),
        );
        let st = compute_status(
            &[a.clone(), b.clone(), c.clone()],
            &[row(&a, LedgerStatus::Applied), row(&b, LedgerStatus::Running)],
        );
        assert_eq!(versions(&plan_up(&st, &UpPlanOptions::default()).unwrap()), ["2", "3"]);
        assert_eq!(
            versions(
                &plan_up(
                    &st,
                    &UpPlanOptions {
                        only_next: true,
                        ..Default::default()
                    }
                )
                .unwrap()
            ),
            ["2"]
        );
        assert_eq!(
            versions(
                &plan_up(
                    &st,
                    &UpPlanOptions {
                        to: Some("2"),
                        ..Default::default()
                    }
                )
                .unwrap()
            ),
            ["2"]
        );
        let err = plan_up(
            &st,
            &UpPlanOptions {
                to: Some("7"),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("no migration has this version"), "{err}");

        let st = compute_status(&[a.clone(), b.clone()], &[row(&a, LedgerStatus::Failed)]);
        let err = plan_up(&st, &UpPlanOptions::default()).unwrap_err();
        assert!(err.to_string().contains("cutover repair"), "{err}");
    }

    #[test]
    fn down_goes_newest_first_and_refuses_baseline_and_out_of_turn() {
        let (a, b, c) = (
            def("1", StepKind::Schema),
            def("2", StepKind::Data),
            def("3", StepKind::Data),
        );
        let steps = [a.clone(), b.clone(), c.clone()];
        let st = compute_status(
            &steps,
            &[
                row(&a, LedgerStatus::Applied),
                row(&b, LedgerStatus::Applied),
                row(&c, LedgerStatus::Applied),
            ],
        );
        let order = |t: &DownTarget| {
            plan_down(&st, t)
                .unwrap()
                .iter()
                .map(|r| r.status.version.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(order(&DownTarget::Last), ["3"]);
        assert_eq!(order(&DownTarget::To("1".into())), ["3", "2"]);
        assert_eq!(order(&DownTarget::All), ["3", "2", "1"]);
        let err = plan_down(&st, &DownTarget::Only("2".into())).unwrap_err();
        assert!(err.to_string().contains("roll that back first"), "{err}");

        let st = compute_status(
            &steps,
            &[row(&a, LedgerStatus::Baseline), row(&b, LedgerStatus::Applied)],
        );
        let err = plan_down(&st, &DownTarget::All).unwrap_err();
        assert!(err.to_string().contains("below the baseline"), "{err}");
    }

    /// `running` in the ledger with no live run holding the lock (a killed run) is
    /// interrupted; with a live holder it is running. An aborted step is stored interrupted.
    #[test]
    fn running_without_a_live_run_is_interrupted() {
        let (a, b) = (def("1", StepKind::Data), def("2", StepKind::Data));
        let rows = [row(&a, LedgerStatus::Running), row(&b, LedgerStatus::Interrupted)];
        let mut live = compute_status(&[a.clone(), b.clone()], &rows);
        mark_interrupted(&mut live, true);
        assert_eq!(live[0].state, StepState::Running);
        assert_eq!(live[1].state, StepState::Interrupted);
        let mut dead = compute_status(&[a.clone(), b.clone()], &rows);
        mark_interrupted(&mut dead, false);
        assert_eq!(dead[0].state, StepState::Interrupted);
        // `up` resumes both.
        assert_eq!(
            versions(&plan_up(&dead, &UpPlanOptions::default()).unwrap()),
            ["1", "2"]
        );
    }
}
