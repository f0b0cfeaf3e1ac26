//! The import generator on its own: determinism, the manifest's arithmetic, and files that
//! other readers (the csv crate, calamine) read back with the manifest's row counts.

use super::*;

fn cfg(patients: u64, orders: u64, seed: u64, format: OrdersFormat) -> ImportConfig {
    ImportConfig {
        patients,
        orders,
        seed,
        orders_format: format,
        anomaly_rate: 0.2,
    }
}

fn gen_into(dir: &Path, c: &ImportConfig) -> ImportManifest {
    generate(dir, c).expect("generate")
}

fn read(dir: &Path, f: &str) -> Vec<u8> {
    std::fs::read(dir.join(f)).expect("read")
}

#[test]
fn the_same_seed_gives_the_same_files_and_another_seed_does_not() {
    let t = tempfile::tempdir().unwrap();
    for format in [OrdersFormat::Csv, OrdersFormat::Xlsx] {
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        let ma = gen_into(&a, &cfg(400, 900, 7, format));
        let mb = gen_into(&b, &cfg(400, 900, 7, format));
        let mc = gen_into(&c, &cfg(400, 900, 8, format));
        assert_eq!(ma, mb);
        assert_eq!(read(&a, "patients.csv"), read(&b, "patients.csv"));
        assert_eq!(read(&a, "manifest.json"), read(&b, "manifest.json"));
        assert_ne!(read(&a, "patients.csv"), read(&c, "patients.csv"));
        assert_ne!(ma.files, mc.files);
        if format == OrdersFormat::Csv {
            assert_eq!(read(&a, "orders.csv"), read(&b, "orders.csv"));
        } else {
            // A workbook carries its creation time in docProps; the cells must be the same.
            assert_eq!(sheet_rows(&a.join("orders.xlsx")), sheet_rows(&b.join("orders.xlsx")));
        }
        for d in [a, b, c] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

#[test]
fn every_file_balances_and_every_count_adds_up() {
    let t = tempfile::tempdir().unwrap();
    let m = gen_into(t.path(), &cfg(3000, 8000, 3, OrdersFormat::Csv));
    for (name, f) in &m.files {
        assert_eq!(f.rows, f.written + f.skipped + f.rejected, "{name}: {f:?}");
        assert_eq!(f.rejected_by_rule.values().sum::<u64>(), f.rejected, "{name}");
        assert_eq!(f.rejected_by_field.values().sum::<u64>(), f.rejected, "{name}");
        assert!(f.blank_lines >= 2, "{name}: a few blank lines");
    }
    let p = m.patients_file();
    let o = m.orders_file();
    assert_eq!((p.rows, o.rows), (3000, 8000));
    assert_eq!(m.tables["patients"], p.written);
    assert_eq!(m.tables["orders"], o.written);
    assert_eq!(m.content.genders.values().sum::<u64>(), p.written);
    assert_eq!(m.content.order_statuses.values().sum::<u64>(), o.written);
    assert_eq!(o.lookup_reasons.values().sum::<u64>(), o.rejected_by_rule["lookup"]);
    // Every kind of the contract is planted, and each leaves its mark in the outcome.
    for k in patients::KINDS {
        assert!(
            m.planted
                .get(&format!("patients.csv:{}", k.name()))
                .is_some_and(|n| *n > 0),
            "{k:?}"
        );
    }
    for k in orders::KINDS {
        assert!(
            m.planted
                .get(&format!("orders.csv:{}", k.name()))
                .is_some_and(|n| *n > 0),
            "{k:?}"
        );
    }
    for rule in ["required", "date", "not_in_future"] {
        assert!(p.rejected_by_rule.get(rule).is_some_and(|n| *n > 0), "patients {rule}");
    }
    for rule in ["required", "date", "not_in_future", "map", "lookup", "waiting"] {
        assert!(o.rejected_by_rule.get(rule).is_some_and(|n| *n > 0), "orders {rule}");
    }
    for reason in ["no patient", "ambiguous"] {
        assert!(o.lookup_reasons.get(reason).is_some_and(|n| *n > 0), "{reason}");
    }
    assert!(p.skipped > 0 && o.skipped > 0);
    assert!(p.warnings["email"] > 0 && p.warnings["phone"] > 0 && o.warnings["result_date"] > 0);
    assert!(m.content.address_null > 0 && m.content.notes_with_newline > 0);
    assert!(!m.waiting.is_empty());
    assert!(m.waiting.iter().map(|w| w.orders).sum::<u64>() <= o.rejected_by_rule["waiting"]);
    // The manifest on disk is the one returned.
    let on_disk: ImportManifest = serde_json::from_slice(&read(t.path(), "manifest.json")).unwrap();
    assert_eq!(on_disk, m);
}

#[test]
fn the_csv_reads_back_with_the_manifests_row_count() {
    let t = tempfile::tempdir().unwrap();
    let m = gen_into(t.path(), &cfg(2000, 3000, 11, OrdersFormat::Csv));
    let bytes = read(t.path(), "patients.csv");
    assert!(bytes.starts_with(b"\xEF\xBB\xBFmrn,"), "a BOM, then the header");
    assert!(
        bytes.windows(2).filter(|w| w == b"\r\n").count() > 2000,
        "CRLF line endings"
    );
    for (file, header) in [("patients.csv", patients::HEADER), ("orders.csv", orders::HEADER)] {
        let bytes = read(t.path(), file);
        let mut r = csv::ReaderBuilder::new().from_reader(&bytes[3..]);
        let got: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(got, header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        let mut rows = 0;
        let mut newlines = 0;
        for rec in r.records() {
            let rec = rec.unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(rec.len(), header.len(), "{file}: {rec:?}");
            newlines += usize::from(rec.iter().any(|c| c.contains('\n')));
            rows += 1;
        }
        assert_eq!(rows, m.files[file].rows, "{file}");
        assert!(newlines > 0, "{file}: notes with embedded newlines");
    }
}

/// A sheet's cells as text, row by row (calamine: the reader the engine uses too).
fn sheet_rows(path: &Path) -> Vec<Vec<String>> {
    use calamine::{Reader, open_workbook_auto};
    let mut book = open_workbook_auto(path).expect("open workbook");
    assert_eq!(book.sheet_names(), vec!["Orders".to_string()]);
    let range = book.worksheet_range("Orders").expect("sheet Orders");
    range
        .rows()
        .map(|r| r.iter().map(|c| format!("{c:?}")).collect())
        .collect()
}

#[test]
fn the_workbook_has_date_cells_serials_and_text_dates() {
    let t = tempfile::tempdir().unwrap();
    let m = gen_into(t.path(), &cfg(300, 600, 5, OrdersFormat::Xlsx));
    let rows = sheet_rows(&t.path().join("orders.xlsx"));
    assert_eq!(rows.len() as u64, 1 + m.orders_file().rows, "header + rows");
    assert!(rows[0][0].contains("orderNumber"), "{:?}", rows[0]);
    let order_dates: Vec<&String> = rows[1..].iter().map(|r| &r[2]).collect();
    let count = |p: &str| order_dates.iter().filter(|c| c.starts_with(p)).count();
    assert!(count("DateTime") > 0, "date cells: {:?}", &order_dates[..10]);
    assert!(count("Float") > 0, "serial numbers: {:?}", &order_dates[..10]);
    assert!(count("String") > 0, "text dates: {:?}", &order_dates[..10]);
}

#[test]
fn bad_configs_are_refused_and_existing_files_are_not_overwritten() {
    let t = tempfile::tempdir().unwrap();
    let mut c = cfg(10, 10, 1, OrdersFormat::Csv);
    c.anomaly_rate = 1.5;
    assert!(generate(t.path(), &c).is_err());
    c.anomaly_rate = 0.1;
    c.patients = 0;
    assert!(generate(t.path(), &c).is_err());
    c.patients = 10;
    gen_into(t.path(), &c);
    let e = generate(t.path(), &c).unwrap_err().to_string();
    assert!(e.contains("already exists"), "{e}");
}

/// Every record of `name` through the engine's own file reader.
fn engine_records(path: &Path) -> (Vec<String>, Vec<crate::engine::source::file::records::FileRecord>) {
    use crate::engine::source::file::records::{FileOptions, FileRecords};
    let mut r = FileRecords::open(path, &FileOptions::default()).expect("open");
    let headers = r.headers().to_vec();
    let mut rows = Vec::new();
    while let Some(rec) = r.next_record().expect("record") {
        rows.push(rec);
    }
    (headers, rows)
}

/// The engine's own file reader sees the manifest's rows, and reads the workbook's order
/// dates as date text (date cells) and whole numbers (serials).
#[test]
fn the_engines_reader_sees_the_manifests_rows() {
    use crate::engine::value::Value;
    let t = tempfile::tempdir().unwrap();
    let m = gen_into(t.path(), &cfg(1500, 3000, 17, OrdersFormat::Xlsx));
    let (headers, patients) = engine_records(&t.path().join("patients.csv"));
    assert_eq!(headers, patients::HEADER);
    assert_eq!(patients.len() as u64, m.patients_file().rows);
    let (headers, orders) = engine_records(&t.path().join("orders.xlsx"));
    assert_eq!(headers, orders::HEADER);
    assert_eq!(orders.len() as u64, m.orders_file().rows);
    assert_eq!(orders[0].line, 2, "the first row under the header is row 2");
    let dates: Vec<&Value> = orders.iter().map(|r| &r.cells[2]).collect();
    assert!(
        dates.iter().any(|v| matches!(v, Value::Int(n) if *n > 30_000)),
        "serials"
    );
    assert!(
        dates
            .iter()
            .any(|v| matches!(v, Value::Text(s) if s.len() == 10 && s.as_bytes()[4] == b'-')),
        "date cells as YYYY-MM-DD"
    );
}

/// The manifest's waiting patients are on the lines the engine's reader gives their records
/// (the rejects' source keys): the physical line each record starts on, counting the blank
/// lines and the line breaks inside quoted notes.
#[test]
fn the_engines_reader_puts_records_on_the_manifests_lines() {
    let t = tempfile::tempdir().unwrap();
    let m = gen_into(t.path(), &cfg(1500, 3000, 17, OrdersFormat::Xlsx));
    let (_, patients) = engine_records(&t.path().join("patients.csv"));
    // The physical lines, counted here from the bytes: where each record starts.
    let text = String::from_utf8(read(t.path(), "patients.csv")).unwrap();
    let lines: Vec<&str> = text.split('\n').collect();
    assert_eq!(
        patients[0].line, 3,
        "header on line 1, a blank line 2, the first record on 3"
    );
    for rec in &patients {
        let mrn = rec.cells[0].to_text().unwrap_or_default();
        let line = lines[(rec.line - 1) as usize];
        assert!(
            line.starts_with(&mrn) || line.starts_with(&format!("\"{mrn}")),
            "line {}: {line}",
            rec.line
        );
    }
    let at: HashSet<u64> = patients.iter().map(|r| r.line).collect();
    assert!(m.waiting.iter().all(|w| at.contains(&w.line)));
}
