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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::db::Rows;

    fn rows(keys: &[(&str, &str)]) -> Rows {
        Rows {
            columns: vec!["id".into(), A_KEY_COLUMN.into()],
            types: vec![],
            rows: keys
                .iter()
                .map(|(b, a)| vec![Value::Text((*b).into()), Value::Text((*a).into())])
                .collect(),
            issues: vec![],
        }
    }

    fn stream(pages: Vec<Rows>, end: bool) -> LinkedRows {
        let (tx, rx) = tokio::sync::mpsc::channel(pages.len() + 1);
        for p in pages {
            tx.try_send(Ok(Some(p))).unwrap();
        }
        if end {
            tx.try_send(Ok(None)).unwrap();
        }
        LinkedRows {
            pages: rx,
            columns: None,
            held: VecDeque::new(),
            ended: false,
        }
    }

    fn keys(k: &[&str]) -> HashSet<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    fn ids(b: &SourceBatch) -> Vec<String> {
        b.rows.iter().map(|r| r[0].to_string()).collect()
    }

    /// Each A page takes exactly its own linked rows, across the stream's page boundaries,
    /// without the A key column; a page with none takes nothing and leaves the rest.
    #[tokio::test]
    async fn each_page_takes_its_own_rows() {
        let mut s = stream(
            vec![rows(&[("c1", "a1"), ("c2", "a1")]), rows(&[("c3", "a2"), ("c4", "a5")])],
            true,
        );
        let p1 = s.take(&keys(&["a1", "a2", "a3"])).await.unwrap();
        assert_eq!(ids(&p1), ["c1", "c2", "c3"]);
        assert_eq!(p1.columns.as_slice(), ["id".to_string()]);
        assert!(p1.rows.iter().all(|r| r.len() == 1));
        assert!(s.take(&keys(&["a4"])).await.unwrap().rows.is_empty());
        assert_eq!(ids(&s.take(&keys(&["a5", "a6"])).await.unwrap()), ["c4"]);
        s.finish().await.unwrap();
    }

    /// A row no A page took fails the end of phase A instead of going unmerged.
    #[tokio::test]
    async fn a_row_left_over_fails_the_phase() {
        let mut s = stream(vec![rows(&[("c1", "a1"), ("c9", "a9")])], true);
        assert_eq!(ids(&s.take(&keys(&["a1", "a2"])).await.unwrap()), ["c1"]);
        let e = s.finish().await.unwrap_err();
        assert!(format!("{e}").contains("a9"), "{e}");
    }

    /// A stream that stops without its end marker is an error, never the end of the data.
    #[tokio::test]
    async fn a_stream_that_dies_is_an_error() {
        // Whether a1 has more rows is only known from the next row, which never comes.
        let mut s = stream(vec![rows(&[("c1", "a1")])], false);
        let e = s.take(&keys(&["a1"])).await.unwrap_err();
        assert!(format!("{e}").contains("stopped before its end"), "{e}");
    }
}
