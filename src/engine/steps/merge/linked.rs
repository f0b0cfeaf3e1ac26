//! The B rows linked to A rows, read for phase A as one stream instead of one query per page.
//!
//! Asking the source for each page's linked rows (`link IN (...)`) scans the whole B side once
//! per page when its link column has no index (a legacy database rarely has one): quadratic in
//! the data. Instead one statement joins B to A and orders the pairs by A's key, the order the
//! A pager reads in, so the pairs of consecutive A pages come out consecutively: each page
//! takes the rows at the head of the stream whose A key is one of its own, and stops at the
//! first that is not (it belongs to a later page). The source does the comparing and ordering
//! in both statements, so no order is computed here. Phase A must end with the stream drained:
//! a row left over would be a B row nobody merged, and the step fails rather than lose it.

use super::spec::MergeStep;
use crate::engine::data::pipeline::SourceBatch;
use crate::engine::data::writer::ident;
use crate::engine::db::{Db, PageStream};
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;

/// The extra column carrying the A key each B row links to (dropped before the row is used).
const A_KEY_COLUMN: &str = "__cutover_linked_a_key";

/// The statement of the stream: every B row with its A row's key, in A's key order (B's key
/// within one A row, the order its B rows merge in). `after_param`: the placeholder of the
/// A key to resume after.
pub(super) fn linked_sql(m: &MergeStep, dialect: crate::engine::db::Dialect, after_param: Option<&str>) -> String {
    let link = ident(m.file.b.link.as_deref().unwrap_or(""));
    let a_key = ident(&m.file.a.key);
    let b_key = ident(&m.file.b.key);
    let after = after_param
        .map(|p| format!(" WHERE a.{a_key} > {p}"))
        .unwrap_or_default();
    format!(
        "SELECT b.*, a.{a_key} AS {} FROM ({}) b JOIN ({}) a ON a.{a_key} = b.{link}{after} ORDER BY a.{a_key}, b.{b_key}",
        ident(A_KEY_COLUMN),
        m.b.spec.source_sql(dialect),
        m.a.spec.source_sql(dialect),
    )
}

pub(super) struct LinkedRows {
    pages: PageStream,
    /// B's columns (without the A key column), known from the first page.
    columns: Option<Arc<Vec<String>>>,
    /// Rows read and not yet taken, each ending with its A key.
    held: VecDeque<Vec<Value>>,
    ended: bool,
}

impl LinkedRows {
    /// Start the stream; `after`: the placeholder and value of the A key phase A resumes after.
    pub(super) fn open(source: &Db, m: &MergeStep, after: Option<(String, Value)>, page_rows: usize) -> LinkedRows {
        let (sql, params) = match after {
            Some((p, k)) => (linked_sql(m, source.dialect(), Some(&p)), vec![k]),
            None => (linked_sql(m, source.dialect(), None), vec![]),
        };
        LinkedRows {
            pages: source.stream_pages(sql, params, page_rows),
            columns: None,
            held: VecDeque::new(),
            ended: false,
        }
    }

    /// Read one more page into `held`; false at the end of the stream.
    async fn fill(&mut self) -> Result<bool> {
        if self.ended {
            return Ok(false);
        }
        match self.pages.recv().await {
            Some(Ok(Some(rows))) => {
                if self.columns.is_none() {
                    let mut cols = rows.columns;
                    if cols.last().map(String::as_str) != Some(A_KEY_COLUMN) {
                        return Err(eyre!("the linked rows of side B came without their A key column"));
                    }
                    cols.pop();
                    self.columns = Some(Arc::new(cols));
                }
                self.held.extend(rows.rows);
                Ok(true)
            }
            Some(Ok(None)) => {
                self.ended = true;
                Ok(false)
            }
            Some(Err(e)) => Err(e.wrap_err("reading the B rows linked to side A")),
            None => Err(eyre!(
                "the stream of the B rows linked to side A stopped before its end"
            )),
        }
    }

    /// The B rows linked to one page of A rows (`keys`: the page's A keys), in stream order.
    pub(super) async fn take(&mut self, keys: &HashSet<String>) -> Result<SourceBatch> {
        let mut rows = Vec::new();
        loop {
            let Some(front) = self.held.front() else {
                if self.fill().await? {
                    continue;
                }
                break;
            };
            let a_key = front.last().and_then(|v| v.to_text()).unwrap_or_default();
            if !keys.contains(&a_key) {
                break;
            }
            if let Some(mut row) = self.held.pop_front() {
                row.pop();
                rows.push(row);
            }
        }
        let columns = self.columns.clone().unwrap_or_default();
        Ok(SourceBatch::new(columns, rows))
    }

    /// At the end of phase A: every linked row must have gone to its page.
    pub(super) async fn finish(&mut self) -> Result<()> {
        if self.held.is_empty() && !self.fill().await? {
            return Ok(());
        }
        let a_key = self
            .held
            .front()
            .and_then(|r| r.last())
            .map(|v| v.to_string())
            .unwrap_or_default();
        Err(eyre!(
            "side B rows linked to side A key {a_key} were left after the last page of side A (the source ordered the two reads differently); nothing of them was merged. Roll the step back and report this"
        ))
    }
}
