//! An ID map held in memory for the length of one step: the answer to every lookup a step
//! makes into a map that other steps wrote and committed, without asking the target once per
//! page. On the clinic project at 200k patients the per-page lookups were the largest single
//! item of a run: 1.78M keys in 1169 statements, 19 s of the SQLite target's time and 11.6 s
//! of PostgreSQL's. Loading a map once is one ordered scan of its entries.
//!
//! Held compactly (the keys' bytes in one buffer, ids that are UUIDs as 16 bytes) and only
//! while the whole step's snapshots fit the budget the caller gives; a map that does not fit
//! is looked up page by page as before, so memory stays bounded as the data grows.

use super::ID_MAP;
use crate::engine::db::Db;
use crate::engine::value::Value;
use color_eyre::eyre::{Result, eyre};
use std::sync::Arc;

/// Bytes one entry costs beyond its key's bytes: the key's end offset and a UUID.
const ENTRY_BYTES: usize = 4 + 16;

/// Rows per page while loading (one page in flight: a few hundred kB).
const LOAD_PAGE_ROWS: usize = 8192;

/// The entries of one map, sorted by key (byte order).
#[derive(Debug, Default)]
pub struct MapSnapshot {
    keys: Vec<u8>,
    /// `keys[ends[i-1]..ends[i]]` is key `i`.
    ends: Vec<u32>,
    ids: Ids,
}

/// New ids: 16 bytes each while every one is a UUID in its canonical text form (what the
/// tool mints), else their text.
#[derive(Debug)]
enum Ids {
    Uuids(Vec<[u8; 16]>),
    Texts { bytes: Vec<u8>, ends: Vec<u32> },
}

impl Default for Ids {
    fn default() -> Self {
        Ids::Uuids(Vec::new())
    }
}

/// Why a map is not held in memory (it is then looked up page by page).
#[derive(Debug, PartialEq)]
pub enum NotHeld {
    /// Its entries need more than the budget left.
    TooBig { entries: u64, bytes: u64 },
    /// The target returned its keys out of byte order (a collation the tool did not create):
    /// a binary search would miss keys that are there.
    Unordered,
}

impl std::fmt::Display for NotHeld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotHeld::TooBig { entries, bytes } => {
                write!(
                    f,
                    "{entries} entries need about {} MB, more than its budget",
                    bytes >> 20
                )
            }
            NotHeld::Unordered => write!(f, "the target returned its keys out of byte order"),
        }
    }
}

/// The maps a step's lookups are answered from, by name.
#[derive(Debug, Default)]
pub struct HeldMaps(std::collections::HashMap<String, Arc<MapSnapshot>>);

impl HeldMaps {
    pub fn get(&self, map: &str) -> Option<&MapSnapshot> {
        self.0.get(map).map(|s| &**s)
    }
}

/// The maps a run holds, kept from one step to the next: the clinic project's eight steps
/// after `persons` look up `patients` six times. A map is let go before any step that may
/// write to it runs (see [`HeldMapCache::forget`]), and when a step needs the room.
#[derive(Default)]
pub struct HeldMapCache {
    held: tokio::sync::Mutex<std::collections::HashMap<String, Arc<MapSnapshot>>>,
}

impl HeldMapCache {
    /// The snapshots of `maps` for step `step`: those held reused, the others loaded from the
    /// committed state of `db` while all fit `budget` bytes (the first maps first); maps this
    /// step does not read are let go first. The others are looked up page by page.
    pub async fn hold(&self, db: &Db, maps: &[String], budget: usize, step: &str) -> Result<HeldMaps> {
        let mut held = self.held.lock().await;
        held.retain(|m, _| maps.contains(m));
        let mut left = budget.saturating_sub(held.values().map(|s| s.bytes()).sum());
        for map in maps {
            if held.contains_key(map) {
                continue;
            }
            let started = std::time::Instant::now();
            match MapSnapshot::load(db, map, &mut left).await? {
                Ok(s) => {
                    tracing::info!(
                        "step {step}: the ID map `{map}` is held in memory for its lookups ({} entries, {:.1} MB, read in {} ms)",
                        s.len(),
                        s.bytes() as f64 / f64::from(1 << 20),
                        started.elapsed().as_millis()
                    );
                    held.insert(map.clone(), Arc::new(s));
                }
                Err(why) => tracing::info!("step {step}: the ID map `{map}` is looked up page by page: {why}"),
            }
        }
        Ok(HeldMaps(
            maps.iter()
                .filter_map(|m| held.get(m).map(|s| (m.clone(), s.clone())))
                .collect(),
        ))
    }

    /// Let `map` go: a step that writes to it is about to run.
    pub async fn forget(&self, map: &str) {
        self.held.lock().await.remove(map);
    }

    /// Let every map go: a step that may write to any is about to run (a merge, a schema
    /// step's SQL, a sync pass), or the run ends.
    pub async fn forget_all(&self) {
        self.held.lock().await.clear();
    }
}

impl MapSnapshot {
    /// Load `map` from the committed state of `db` if its entries fit `budget` bytes, which is
    /// reduced by what the snapshot takes.
    pub async fn load(db: &Db, map: &str, budget: &mut usize) -> Result<Result<MapSnapshot, NotHeld>> {
        let params = vec![Value::Text(map.into())];
        let sized = db
            .fetch_optional(
                &format!("SELECT COUNT(*), COALESCE(SUM(LENGTH(old_key)), 0) FROM {ID_MAP} WHERE map = $1"),
                &params,
            )
            .await?
            .unwrap_or_default();
        let number = |i: usize| match sized.get(i) {
            Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
            Some(v) => v.to_text().and_then(|t| t.parse::<u64>().ok()).unwrap_or(0),
            None => 0,
        };
        let (entries, key_chars) = (number(0), number(1));
        let bytes = entries * ENTRY_BYTES as u64 + key_chars;
        if bytes > *budget as u64 || key_chars > u64::from(u32::MAX) {
            return Ok(Err(NotHeld::TooBig { entries, bytes }));
        }
        let mut s = MapSnapshot {
            keys: Vec::with_capacity(key_chars as usize),
            ends: Vec::with_capacity(entries as usize),
            ids: Ids::Uuids(Vec::with_capacity(entries as usize)),
        };
        let mut pages = db.stream_pages(
            format!("SELECT old_key, new_id FROM {ID_MAP} WHERE map = $1 ORDER BY old_key"),
            params,
            LOAD_PAGE_ROWS,
        );
        loop {
            let page = pages
                .recv()
                .await
                .ok_or_else(|| eyre!("reading the ID map `{map}` stopped before its end"))??;
            let Some(page) = page else { break };
            for row in page.rows {
                let (Some(Value::Text(key)), Some(Value::Text(id))) = (row.first(), row.get(1)) else {
                    return Err(eyre!("the ID map `{map}` holds an entry that is not text"));
                };
                if !s.push(key, id) {
                    return Ok(Err(NotHeld::Unordered));
                }
                if s.bytes() > *budget {
                    // More entries than counted: committed since the count.
                    return Ok(Err(NotHeld::TooBig {
                        entries: s.len() as u64,
                        bytes: s.bytes() as u64,
                    }));
                }
            }
        }
        s.keys.shrink_to_fit();
        s.ends.shrink_to_fit();
        *budget -= s.bytes();
        Ok(Ok(s))
    }

    /// Add an entry whose key comes after every key held; `false` when it does not.
    fn push(&mut self, key: &str, id: &str) -> bool {
        if let Some(last) = self.len().checked_sub(1)
            && self.key(last) >= key.as_bytes()
        {
            return false;
        }
        self.keys.extend_from_slice(key.as_bytes());
        self.ends.push(self.keys.len() as u32);
        if let Ids::Uuids(uuids) = &mut self.ids {
            match canonical_uuid(id) {
                Some(u) => {
                    uuids.push(u);
                    return true;
                }
                None => self.ids = Ids::texts_from(uuids),
            }
        }
        if let Ids::Texts { bytes, ends } = &mut self.ids {
            bytes.extend_from_slice(id.as_bytes());
            ends.push(bytes.len() as u32);
        }
        true
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// What the snapshot holds, in bytes.
    pub fn bytes(&self) -> usize {
        let ids = match &self.ids {
            Ids::Uuids(u) => u.capacity() * 16,
            Ids::Texts { bytes, ends } => bytes.capacity() + ends.capacity() * 4,
        };
        self.keys.capacity() + self.ends.capacity() * 4 + ids
    }

    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.keys[start..self.ends[i] as usize]
    }

    /// The new id of `key`, aliases included (an alias maps to the row that was kept).
    pub fn get(&self, key: &str) -> Option<String> {
        let (mut lo, mut hi) = (0, self.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.key(mid).cmp(key.as_bytes()) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.id(mid)),
            }
        }
        None
    }

    fn id(&self, i: usize) -> String {
        match &self.ids {
            Ids::Uuids(u) => uuid::Uuid::from_bytes(u[i]).hyphenated().to_string(),
            Ids::Texts { bytes, ends } => {
                let start = if i == 0 { 0 } else { ends[i - 1] as usize };
                // Each id was pushed whole from a `&str`: its bytes are UTF-8.
                String::from_utf8_lossy(&bytes[start..ends[i] as usize]).into_owned()
            }
        }
    }
}

impl Ids {
    /// The ids held so far as text (the first id that is not a canonical UUID came).
    fn texts_from(uuids: &[[u8; 16]]) -> Ids {
        let mut bytes = Vec::with_capacity(uuids.len() * 36);
        let mut ends = Vec::with_capacity(uuids.len());
        for u in uuids {
            bytes.extend_from_slice(uuid::Uuid::from_bytes(*u).hyphenated().to_string().as_bytes());
            ends.push(bytes.len() as u32);
        }
        Ids::Texts { bytes, ends }
    }
}

/// The 16 bytes of `id` when it is a UUID written as the tool writes one (lowercase,
/// hyphenated), so that writing it back gives the same text.
fn canonical_uuid(id: &str) -> Option<[u8; 16]> {
    if id.len() != 36 {
        return None;
    }
    let u = uuid::Uuid::try_parse(id).ok()?;
    let mut buf = [0u8; 36];
    (u.hyphenated().encode_lower(&mut buf) == id).then(|| *u.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(entries: &[(&str, &str)]) -> MapSnapshot {
        let mut s = MapSnapshot::default();
        for (k, id) in entries {
            assert!(s.push(k, id), "{k} in order");
        }
        s
    }

    #[test]
    fn keys_are_found_by_their_bytes_and_ids_come_back_as_written() {
        let a = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let b = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c";
        // Text order: "10" before "9"; "é" after every ASCII key.
        let s = held(&[("10", a), ("9", b), ("é", a)]);
        assert_eq!(s.get("10").as_deref(), Some(a));
        assert_eq!(s.get("9").as_deref(), Some(b));
        assert_eq!(s.get("é").as_deref(), Some(a));
        for missing in ["", "1", "09", "90", "e", "10 "] {
            assert_eq!(s.get(missing), None, "{missing:?}");
        }
        assert!(matches!(s.ids, Ids::Uuids(_)), "canonical UUIDs take 16 bytes");
    }

    #[test]
    fn ids_that_are_not_canonical_uuids_are_kept_as_text() {
        let a = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let upper = "0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B";
        let s = held(&[("1", a), ("2", upper), ("3", "P-0001"), ("4", "")]);
        assert!(matches!(s.ids, Ids::Texts { .. }));
        assert_eq!(s.get("1").as_deref(), Some(a));
        assert_eq!(
            s.get("2").as_deref(),
            Some(upper),
            "written back as it was, not lowercased"
        );
        assert_eq!(s.get("3").as_deref(), Some("P-0001"));
        assert_eq!(s.get("4").as_deref(), Some(""));
    }

    async fn target_with(dir: &std::path::Path, id_map_ddl: Option<&str>, entries: &[(&str, &str, &str)]) -> Db {
        use crate::engine::{config::DbUrl, db::Role};
        let db = Db::connect(&DbUrl::new("sqlite://target.db"), dir, Role::Target)
            .await
            .unwrap();
        if let Some(ddl) = id_map_ddl {
            db.execute(ddl, &[]).await.unwrap();
        }
        crate::engine::store::ensure(&db).await.unwrap();
        for (map, old, new) in entries {
            db.execute(
                &format!("INSERT INTO {ID_MAP} (map, old_key, new_id, version) VALUES ($1, $2, $3, 'v1')"),
                &[
                    Value::Text((*map).into()),
                    Value::Text((*old).into()),
                    Value::Text((*new).into()),
                ],
            )
            .await
            .unwrap();
        }
        db
    }

    /// Loaded from a real target: only the named map, every entry, and the budget charged.
    #[tokio::test]
    async fn a_map_is_loaded_whole_within_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let a = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let mut entries: Vec<(String, String)> = (1..=300)
            .map(|i| (i.to_string(), uuid::Uuid::now_v7().to_string()))
            .collect();
        entries.push(("MRN-7".into(), "kept-as-text".into()));
        let mut rows: Vec<(&str, &str, &str)> = entries
            .iter()
            .map(|(k, v)| ("patients", k.as_str(), v.as_str()))
            .collect();
        rows.push(("users", "1", a));
        let db = target_with(dir.path(), None, &rows).await;
        let mut budget = 1 << 20;
        let s = MapSnapshot::load(&db, "patients", &mut budget).await.unwrap().unwrap();
        assert_eq!(s.len(), 301);
        for (k, v) in &entries {
            assert_eq!(s.get(k).as_deref(), Some(v.as_str()), "{k}");
        }
        assert_eq!(s.get("301"), None);
        assert_eq!(budget, (1 << 20) - s.bytes());
        // Too little left: not held, and nothing charged.
        let mut small = s.bytes() - 1;
        let refused = MapSnapshot::load(&db, "patients", &mut small).await.unwrap();
        assert!(
            matches!(refused, Err(NotHeld::TooBig { entries: 301, .. })),
            "{refused:?}"
        );
        assert_eq!(small, s.bytes() - 1);
        let mut none = 0;
        let empty = MapSnapshot::load(&db, "nobody", &mut none).await.unwrap().unwrap();
        assert!(empty.is_empty());
    }

    /// A store whose keys sort in another order than their bytes (made by hand with NOCASE)
    /// is not held: a binary search over it would miss keys that are there.
    #[tokio::test]
    async fn keys_in_another_order_are_not_held() {
        let dir = tempfile::tempdir().unwrap();
        let ddl = format!(
            "CREATE TABLE {ID_MAP} (map TEXT NOT NULL, old_key TEXT NOT NULL COLLATE NOCASE, new_id TEXT NOT NULL, version TEXT NOT NULL, alias INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (map, old_key))"
        );
        let db = target_with(dir.path(), Some(&ddl), &[("m", "a", "1"), ("m", "B", "2")]).await;
        let mut budget = 1 << 20;
        let r = MapSnapshot::load(&db, "m", &mut budget).await.unwrap();
        assert!(matches!(r, Err(NotHeld::Unordered)), "{r:?}");
    }

    /// Kept from one step to the next until a step lets it go; maps a step does not read are
    /// let go for the room.
    #[tokio::test]
    async fn the_run_keeps_a_map_until_it_is_let_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = target_with(dir.path(), None, &[("a", "1", "x"), ("b", "1", "y")]).await;
        let cache = HeldMapCache::default();
        let maps = |m: &[&str]| m.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let held = cache.hold(&db, &maps(&["a", "b"]), 1 << 20, "v1").await.unwrap();
        assert_eq!(held.get("a").and_then(|s| s.get("1")).as_deref(), Some("x"));
        db.execute(&format!("UPDATE {ID_MAP} SET new_id = 'x2' WHERE map = 'a'"), &[])
            .await
            .unwrap();
        // Not let go: the copy is what the run holds (only a step writing to `a` changes it,
        // and such a step lets it go first).
        let held = cache.hold(&db, &maps(&["a"]), 1 << 20, "v2").await.unwrap();
        assert_eq!(held.get("a").and_then(|s| s.get("1")).as_deref(), Some("x"));
        assert!(held.get("b").is_none(), "only the maps the step reads");
        cache.forget("a").await;
        let held = cache.hold(&db, &maps(&["a"]), 1 << 20, "v3").await.unwrap();
        assert_eq!(held.get("a").and_then(|s| s.get("1")).as_deref(), Some("x2"));
        db.execute(&format!("UPDATE {ID_MAP} SET new_id = 'x3' WHERE map = 'a'"), &[])
            .await
            .unwrap();
        cache.forget_all().await;
        let held = cache.hold(&db, &maps(&["a"]), 1 << 20, "v4").await.unwrap();
        assert_eq!(held.get("a").and_then(|s| s.get("1")).as_deref(), Some("x3"));
        // No budget: looked up page by page.
        cache.forget_all().await;
        let held = cache.hold(&db, &maps(&["a"]), 0, "v5").await.unwrap();
        assert!(held.get("a").is_none());
    }

    #[test]
    fn a_key_out_of_byte_order_is_refused() {
        let mut s = held(&[("a", "x"), ("b", "y")]);
        assert!(!s.push("b", "z"), "a repeated key");
        assert!(!s.push("B", "z"), "an earlier key");
        assert!(s.push("ba", "z"));
        assert_eq!(s.len(), 3);
    }
}
