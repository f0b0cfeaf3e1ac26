//! Reading a driver row into engine values, one decoder per dialect. Every column type a
//! source server can hold must arrive here without loss or fail with the column named.

use crate::engine::value::Value;
use sqlx::{Column, Row, TypeInfo, ValueRef};

/// A cell that cannot become a value without loss (invalid UTF-8, a zero date). The row keeps
/// NULL in its place; a data step turns the row into a reject naming the column and reason,
/// and verification treats it as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellIssue {
    /// Index of the column in the row.
    pub column: usize,
    pub reason: String,
}

pub fn decode_sqlite(row: &sqlx::sqlite::SqliteRow, _issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        // Match on the borrowed name: this runs for every cell read.
        let ty = raw.type_info();
        vals.push(match ty.name() {
            "INTEGER" | "BOOLEAN" => Value::Int(row.try_get::<i64, _>(i)?),
            "REAL" => Value::Real(row.try_get::<f64, _>(i)?),
            "BLOB" => Value::bytes(row.try_get::<Vec<u8>, _>(i)?),
            _ => Value::Text(row.try_get::<String, _>(i)?),
        });
    }
    Ok(vals)
}

pub fn decode_pg(row: &sqlx::postgres::PgRow, _issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        vals.push(match row.column(i).type_info().name() {
            "INT2" => Value::Int(row.try_get::<i16, _>(i)? as i64),
            "INT4" => Value::Int(row.try_get::<i32, _>(i)? as i64),
            "INT8" => Value::Int(row.try_get::<i64, _>(i)?),
            "FLOAT4" => Value::Real(row.try_get::<f32, _>(i)? as f64),
            "FLOAT8" => Value::Real(row.try_get::<f64, _>(i)?),
            "BOOL" => Value::Bool(row.try_get::<bool, _>(i)?),
            "UUID" => Value::Text(row.try_get::<uuid::Uuid, _>(i)?.to_string()),
            "DATE" => Value::Text(row.try_get::<chrono::NaiveDate, _>(i)?.to_string()),
            "TIMESTAMP" => Value::Text(
                row.try_get::<chrono::NaiveDateTime, _>(i)?
                    .format("%Y-%m-%dT%H:%M:%S%.f")
                    .to_string(),
            ),
            "TIMESTAMPTZ" => Value::Text(row.try_get::<chrono::DateTime<chrono::Utc>, _>(i)?.to_rfc3339()),
            "JSON" | "JSONB" => Value::Json(row.try_get::<serde_json::Value, _>(i)?),
            "BYTEA" => Value::bytes(row.try_get::<Vec<u8>, _>(i)?),
            _ => Value::Text(row.try_get::<String, _>(i)?),
        });
    }
    Ok(vals)
}

pub fn decode_mysql(row: &sqlx::mysql::MySqlRow, _issues: &mut Vec<CellIssue>) -> Result<Vec<Value>, sqlx::Error> {
    let mut vals = Vec::with_capacity(row.len());
    for i in 0..row.len() {
        let raw = row.try_get_raw(i)?;
        if raw.is_null() {
            vals.push(Value::Null);
            continue;
        }
        vals.push(match row.column(i).type_info().name() {
            "TINYINT" | "SMALLINT" | "INT" | "MEDIUMINT" | "BIGINT" => Value::Int(row.try_get::<i64, _>(i)?),
            "BOOLEAN" => Value::Bool(row.try_get::<bool, _>(i)?),
            "FLOAT" | "DOUBLE" => Value::Real(row.try_get::<f64, _>(i)?),
            "BLOB" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" | "BINARY" | "VARBINARY" => {
                Value::bytes(row.try_get::<Vec<u8>, _>(i)?)
            }
            "DATE" => Value::Text(row.try_get::<chrono::NaiveDate, _>(i)?.to_string()),
            "DATETIME" | "TIMESTAMP" => Value::Text(
                row.try_get::<chrono::NaiveDateTime, _>(i)?
                    .format("%Y-%m-%dT%H:%M:%S")
                    .to_string(),
            ),
            "JSON" => Value::Json(row.try_get::<serde_json::Value, _>(i)?),
            _ => match row.try_get::<String, _>(i) {
                Ok(s) => Value::Text(s),
                Err(_) => Value::Text(String::from_utf8_lossy(&row.try_get::<Vec<u8>, _>(i)?).into_owned()),
            },
        });
    }
    Ok(vals)
}
