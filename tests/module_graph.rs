//! The layering rule, checked from the source text: no module imports another that (directly
//! or through others) imports it back, and the engine never reaches into the CLI or the console.
//!
//! Each file under `src/` is one module. An edge A → B is any `crate::…` or `super::…` path in A
//! that names B (or an item inside B). `cargo test --test module_graph -- --nocapture` prints the
//! graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read src")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// `src/engine/data/run.rs` → `engine::steps::data`; `src/engine/mod.rs` → `engine`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src").with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod")) {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        return "crate".into();
    }
    parts.join("::")
}

/// Drop comments and string literals so that prose and SQL never count as imports.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r'
            && (b.get(i + 1) == Some(&b'"') || b.get(i + 1) == Some(&b'#'))
            && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'))
        {
            // raw string r"…" or r#"…"#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push('r');
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == b'"' && b[j + 1..].iter().take(hashes).filter(|c| **c == b'#').count() == hashes {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            // char literal like '"'
            out.push_str("' '");
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // escaped char literal like '\''
            let mut j = i + 2;
            while j < b.len() && b[j] != b'\'' {
                j += 1;
            }
            out.push_str("' '");
            i = j + 1;
        } else {
            // non-ASCII only appears in prose and literals; a space keeps byte offsets valid
            out.push(if b[i].is_ascii() { b[i] as char } else { ' ' });
            i += 1;
        }
    }
    out
}

/// Every path after `crate::` or a run of `super::`, with `{a, b::c}` groups expanded.
fn referenced_paths(code: &str, module: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let self_path: Vec<String> = if module == "crate" {
        vec![]
    } else {
        module.split("::").map(String::from).collect()
    };
    let b = code.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts_word = i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
        let (base, rest) = if starts_word && code[i..].starts_with("crate::") {
            (Vec::new(), i + 7)
        } else if starts_word && code[i..].starts_with("super::") {
            let mut base = self_path.clone();
            let mut j = i;
            while code[j..].starts_with("super::") {
                base.pop();
                j += 7;
            }
            (base, j)
        } else {
            i += 1;
            continue;
        };
        let (paths, end) = parse_tree(code, rest);
        for p in paths {
            let mut full = base.clone();
            full.extend(p);
            found.push(full);
        }
        i = end.max(i + 1);
    }
    found
}

/// Parse `a::b::{c, d::e}` from `pos`; returns the paths and where parsing stopped.
fn parse_tree(code: &str, mut pos: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut prefix = Vec::new();
    loop {
        let start = pos;
        while pos < b.len() && (b[pos].is_ascii_alphanumeric() || b[pos] == b'_') {
            pos += 1;
        }
        if pos > start {
            prefix.push(code[start..pos].to_string());
        }
        if code[pos..].starts_with("::{") {
            pos += 3;
            let mut all = Vec::new();
            loop {
                while pos < b.len() && (b[pos] as char).is_whitespace() {
                    pos += 1;
                }
                if pos >= b.len() || b[pos] == b'}' {
                    pos += 1;
                    break;
                }
                let (inner, end) = parse_tree(code, pos);
                for p in inner {
                    let mut full = prefix.clone();
                    full.extend(p);
                    all.push(full);
                }
                pos = end;
                while pos < b.len() && b[pos] != b',' && b[pos] != b'}' {
                    pos += 1;
                }
                if pos < b.len() && b[pos] == b',' {
                    pos += 1;
                }
            }
            return (all, pos);
        }
        if code[pos..].starts_with("::") {
            pos += 2;
            continue;
        }
        return (vec![prefix], pos);
    }
}

/// The longest known module that is a prefix of `path` (`self` and items are dropped).
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    let path: Vec<&str> = path.iter().map(String::as_str).filter(|s| *s != "self").collect();
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        let text = std::fs::read_to_string(f).expect("read source file");
        // `super::` names the parent module both in `dir/mod.rs` and in `dir/file.rs`, since
        // module_of already maps a mod.rs to its directory.
        let deps = edges.entry(module.clone()).or_default();
        for p in referenced_paths(&code_only(&text), &module) {
            if let Some(target) = resolve(&p, &modules)
                && target != module
                && target != "crate"
            {
                deps.insert(target);
            }
        }
    }
    edges
}

/// Strongly connected components with more than one member (Tarjan).
fn cycles(g: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        if let Some(ws) = t.g.get(v) {
            for w in ws {
                let w = w.as_str();
                if !t.index.contains_key(w) {
                    visit(t, w);
                    let lw = t.low[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(lw));
                } else if t.on.contains(w) {
                    let iw = t.index[w];
                    let lv = t.low[v];
                    t.low.insert(v, lv.min(iw));
                }
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v.as_str());
        }
    }
    t.out
}

#[test]
fn parser_finds_grouped_and_super_paths() {
    let code = code_only(
        "use crate::engine::{db::{Db, DbTx}, value::Value};\nlet s = \"crate::cli::x\"; // crate::console\nsuper::ledger::f();",
    );
    let paths = referenced_paths(&code, "engine::runner");
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "engine::db::Db",
            "engine::db::DbTx",
            "engine::value::Value",
            "engine::ledger::f"
        ]
    );
}

#[test]
fn rule_matchers_see_what_they_look_for() {
    let arm = regex_lite(&["Dialect::Mysql", "Db::Sqlite"]);
    assert_eq!(arm("match d { Dialect::Mysql => 1 }"), Some("Dialect::Mysql".into()));
    assert_eq!(arm("DbTx::Sqlite(t) => t"), None, "DbTx is not Db");
    assert_eq!(arm("MyDb::Sqlite"), None);
    assert!(!code_only("// Dialect::Mysql in prose\nlet x = 1;").contains("Dialect"));
    assert!(strip_comments("let t = \"cutover_rejects\";").contains("cutover_rejects"));
}

#[test]
fn cycle_finder_sees_a_cycle() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    g.insert("d".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_string(), "b".to_string(), "c".to_string()]]
    );
}

#[test]
fn no_module_cycles_and_engine_stays_below_the_faces() {
    let g = graph();
    assert!(g.len() > 40, "expected the whole crate, found {} modules", g.len());
    for (m, deps) in &g {
        if !deps.is_empty() {
            println!("{m} -> {}", deps.iter().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    let upward: Vec<String> = g
        .iter()
        .filter(|(m, _)| m.starts_with("engine"))
        .flat_map(|(m, deps)| {
            deps.iter()
                .filter(|d| d.starts_with("cli") || d.starts_with("console"))
                .map(move |d| format!("{m} -> {d}"))
        })
        .collect();
    let found = cycles(&g);
    for c in &found {
        println!("CYCLE of {}: {}", c.len(), c.join(", "));
    }
    assert!(upward.is_empty(), "the engine imports a face: {upward:?}");
    assert!(found.is_empty(), "module cycles: {found:?}");
}

/// Each non-test source file's code (comments, literals kept for the table check) by module.
fn sources(keep_literals: bool) -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read source file");
            // unit tests sit at the end of a file; they may name anything
            let text = text.split("#[cfg(test)]").next().unwrap_or_default().to_string();
            let text = if keep_literals {
                strip_comments(&text)
            } else {
                code_only(&text)
            };
            (module_of(&src, f), text)
        })
        .collect()
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| if l.trim_start().starts_with("//") { "" } else { l })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn only_the_backends_match_on_a_dialect() {
    let arm = regex_lite(&[
        "Dialect::Sqlite",
        "Dialect::Postgres",
        "Dialect::Mysql",
        "Db::Sqlite",
        "Db::Postgres",
        "Db::Mysql",
        "DbTx::Sqlite",
        "DbTx::Postgres",
        "DbTx::Mysql",
    ]);
    let offenders: Vec<String> = sources(false)
        .into_iter()
        .filter(|(m, _)| !m.starts_with("engine::backend"))
        .filter_map(|(m, code)| arm(&code).map(|hit| format!("{m}: {hit}")))
        .collect();
    assert!(
        offenders.is_empty(),
        "dialect code outside engine::backend: {offenders:?}"
    );
}

#[test]
fn only_the_store_names_the_tools_tables() {
    let names = [
        "cutover_ledger",
        "cutover_events",
        "cutover_id_map",
        "cutover_rejects",
        "cutover_checkpoints",
        "cutover_backups",
        "cutover_discrepancies",
        "cutover_lock\"",
    ];
    let offenders: Vec<String> = sources(true)
        .into_iter()
        .filter(|(m, _)| !m.starts_with("engine::store"))
        .filter_map(|(m, code)| regex_lite(&names)(&code).map(|hit| format!("{m}: {hit}")))
        .collect();
    assert!(
        offenders.is_empty(),
        "the tool's tables named outside engine::store: {offenders:?}"
    );
}

/// A matcher for any of `needles` (whole words on the left), returning the first hit.
fn regex_lite<'a>(needles: &'a [&'a str]) -> impl Fn(&str) -> Option<String> + 'a {
    move |hay: &str| {
        needles.iter().find_map(|n| {
            hay.match_indices(n)
                .find(|(i, _)| {
                    *i == 0 || !hay.as_bytes()[i - 1].is_ascii_alphanumeric() && hay.as_bytes()[i - 1] != b'_'
                })
                .map(|_| n.to_string())
        })
    }
}

/// The metrics exporter sits beside the faces: it reads the protocol (events), the config and
/// the project only, and nothing below the faces imports it.
#[test]
fn metrics_reads_events_only_and_nothing_below_imports_it() {
    let g = graph();
    assert!(
        g.contains_key("metrics"),
        "no metrics module in {:?}",
        g.keys().collect::<Vec<_>>()
    );
    let allowed = ["engine::protocol", "engine::config", "engine::project"];
    let mut wrong = Vec::new();
    for (m, deps) in g.iter().filter(|(m, _)| m.starts_with("metrics")) {
        for d in deps {
            let inside = d.starts_with("metrics");
            let below = allowed.iter().any(|a| d == a || d.starts_with(&format!("{a}::")));
            if !inside && !below {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    for (m, deps) in g.iter().filter(|(m, _)| m.starts_with("engine")) {
        wrong.extend(
            deps.iter()
                .filter(|d| d.starts_with("metrics"))
                .map(|d| format!("{m} -> {d}")),
        );
    }
    assert!(wrong.is_empty(), "metrics layering: {wrong:?}");
}
