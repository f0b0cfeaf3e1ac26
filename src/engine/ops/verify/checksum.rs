//! Canonical values and the order-independent content checksum, and the declared queries
//! that produce them, streamed from either side.

use crate::engine::db::Db;
use crate::engine::protocol::report::canonical_real;
use crate::engine::value::{Value, hex};
use sha2::{Digest, Sha256};
use std::ops::ControlFlow;

/// The canonical text form of a value, the same for every database: NULL is `None`; integers as
/// decimals; a real with no fraction as an integer; booleans as 1/0 (SQLite has no booleans);
/// text as is; bytes in hex; JSON compact.
pub fn canonical(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
        Value::Int(i) => Some(i.to_string()),
        Value::Real(f) => Some(canonical_real(*f)),
        Value::Text(s) => Some(s.clone()),
        Value::Bytes(b) => Some(hex(&b.bytes)),
        Value::Json(j) => Some(j.to_string()),
    }
}

/// The first 16 bytes of the SHA-256 of a row's canonical form: each value as `N;` (NULL) or
/// `V<length>:<text>;`, so no two rows share a form.
pub fn row_hash(row: &[Value]) -> u128 {
    let mut h = Sha256::new();
    for v in row {
        match canonical(v) {
            None => h.update(b"N;"),
            Some(s) => {
                h.update(format!("V{}:", s.len()).as_bytes());
                h.update(s.as_bytes());
                h.update(b";");
            }
        }
    }
    let d = h.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_be_bytes(first)
}

/// An order-independent checksum of rows: the wrapping sum of their row hashes (duplicates
/// count), with the number of rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentSum {
    pub sum: u128,
    pub rows: u64,
}

impl ContentSum {
    pub fn add(&mut self, row: &[Value]) {
        self.sum = self.sum.wrapping_add(row_hash(row));
        self.rows += 1;
    }
    pub fn hex(&self) -> String {
        format!("{:032x}", self.sum)
    }
}

/// The one value of a scalar query.
pub(super) async fn scalar(db: &Db, sql: &str) -> Result<Value, String> {
    let mut rows: Vec<Vec<Value>> = Vec::new();
    db.for_each_row(sql, async |row| {
        rows.push(row);
        if rows.len() > 1 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .await
    .map_err(|e| sql_error(&e))?;
    match rows.as_slice() {
        [] => Err("returned no row (a scalar query returns one row of one column)".into()),
        [row] if row.len() == 1 => Ok(row[0].clone()),
        [row] => Err(format!(
            "returned {} columns (a scalar query returns one row of one column)",
            row.len()
        )),
        _ => Err("returned more than one row (a scalar query returns one row of one column)".into()),
    }
}

pub(super) async fn content_sum(db: &Db, sql: &str) -> Result<ContentSum, String> {
    let mut sum = ContentSum::default();
    db.for_each_row(sql, async |row| {
        sum.add(&row);
        ControlFlow::Continue(())
    })
    .await
    .map_err(|e| sql_error(&e))?;
    Ok(sum)
}

/// The content checksum of every row of a table (all columns, in the table's order): what a
/// step's rollback is compared against.
pub async fn table_sum(db: &Db, table: &str) -> Result<ContentSum, String> {
    content_sum(db, &format!("SELECT * FROM {}", db.dialect().quote_ident(table))).await
}

pub(super) fn sql_error(e: &sqlx::Error) -> String {
    let msg = crate::engine::config::redact_url(&e.to_string());
    if matches!(e, sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_)) {
        format!("{msg} (cast the value to an integer, a real or text in the query)")
    } else {
        msg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_forms_agree_across_types() {
        assert_eq!(canonical(&Value::Real(1.0)), canonical(&Value::Int(1)));
        assert_eq!(canonical(&Value::Real(-0.0)), Some("0".into()));
        assert_eq!(canonical(&Value::Real(12.5)), Some("12.5".into()));
        assert_eq!(canonical(&Value::Bool(true)), canonical(&Value::Int(1)));
        assert_eq!(canonical(&Value::Null), None);
        assert_eq!(canonical(&Value::Text("a b ".into())), Some("a b ".into()));
    }

    #[test]
    fn content_sum_ignores_order_but_counts_duplicates() {
        let rows = [
            vec![Value::Int(1), Value::Text("a".into())],
            vec![Value::Int(2), Value::Null],
            vec![Value::Real(3.0), Value::Text("".into())],
        ];
        let mut a = ContentSum::default();
        for r in &rows {
            a.add(r);
        }
        let mut b = ContentSum::default();
        for r in rows.iter().rev() {
            b.add(r);
        }
        assert_eq!(a, b);
        assert_eq!(a.hex().len(), 32);
        b.add(&rows[0]);
        assert_ne!(a.sum, b.sum);
        // NULL and empty text differ, and so do values that only concatenate alike
        assert_ne!(row_hash(&[Value::Null]), row_hash(&[Value::Text(String::new())]));
        assert_ne!(
            row_hash(&[Value::Text("ab".into()), Value::Text("c".into())]),
            row_hash(&[Value::Text("a".into()), Value::Text("bc".into())])
        );
    }
}
