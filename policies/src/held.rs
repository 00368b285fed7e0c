//! Key records as a [`crate::Validator`] holds them: only what decisions
//! read, as fixed-size entries sorted by id in chunks of about a thousand,
//! with names in one arena and organization slugs, project ids and project
//! selections interned.
//!
//! A decoded [`KeyRecord`] is a tree of owned strings (about 600 bytes a key
//! in memory against about 105 on the wire); a held key is one entry of a
//! few dozen bytes plus its name. Lookups are a binary search over the
//! chunks' first ids, then within one chunk; a full snapshot appends in id
//! order (its keys come sorted), and a delta places each key in its chunk
//! (moving that chunk's keys, never the table's).

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use crate::decision::KeyFacts;
use crate::key::ID_LEN;
use crate::record::{KeyLevel, KeyRecord, KeyStatus, ProjectAccess, Scope};

/// Keys per chunk of a [`KeyTable`] as a full snapshot loads them; a chunk
/// that grows to twice this is split in two.
const CHUNK: usize = if cfg!(test) { 4 } else { 1024 };

/// Garbage the names arena may hold beyond the live names before it is
/// rebuilt.
const NAME_SLACK: usize = if cfg!(test) { 64 } else { 4096 };

// One bit per scope in `Held::scopes`.
const _: () = assert!(Scope::ALL.len() <= 8);

const DISABLED: u8 = 1;
const HAS_EXPIRY: u8 = 2;
const LEVEL_PROJECT: u8 = 4;
const ACCESS_ALL: u8 = 8;

/// One held key.
#[derive(Debug, Clone)]
struct Held {
    id: [u8; ID_LEN],
    flags: u8,
    /// Bit `i`: `Scope::ALL[i]` granted.
    scopes: u8,
    key_hash: [u8; 32],
    version: u64,
    created_at: u64,
    expires_at: u64,
    organization: u32,
    /// The owning project (project-level keys) or the interned selection
    /// (org-level keys with selected projects); unused for all projects.
    access: u32,
    /// The name's place in [`KeyTable::names`].
    name_at: u32,
    name_len: u16,
}

/// Strings (organization slugs, project ids) held once, by number.
#[derive(Debug, Clone, Default)]
struct Interner {
    strings: Vec<Box<str>>,
    numbers: BTreeMap<Box<str>, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&n) = self.numbers.get(s) {
            return n;
        }
        let n = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.push(Box::from(s));
        self.numbers.insert(Box::from(s), n);
        n
    }

    fn number(&self, s: &str) -> Option<u32> {
        self.numbers.get(s).copied()
    }

    fn get(&self, n: u32) -> &str {
        self.strings.get(n as usize).map_or("", |s| s)
    }
}

/// The key records a validator holds.
#[derive(Debug, Clone, Default)]
pub(crate) struct KeyTable {
    /// The held keys sorted by id, in chunks (none empty) of about
    /// [`CHUNK`] keys, so that a key added or removed moves the keys of
    /// one chunk, not of the table (a delta of a few keys into a table of
    /// a million costs microseconds, and no second copy of the table).
    chunks: Vec<Vec<Held>>,
    len: usize,
    /// Every held name, one after the other (one allocation, not one per
    /// key); a replaced or removed key's name stays until the garbage
    /// outgrows the live names, then the arena is rebuilt.
    names: Vec<u8>,
    /// Bytes of `names` that held keys still use.
    live_names: usize,
    strings: Interner,
    /// Project selections, each sorted by number, interned.
    sets: Vec<Box<[u32]>>,
    set_numbers: BTreeMap<Box<[u32]>, u32>,
}

/// A held key, as the rules read it.
#[derive(Clone, Copy)]
pub(crate) struct HeldKey<'a> {
    held: &'a Held,
    table: &'a KeyTable,
}

fn id_bytes(id: &str) -> Option<[u8; ID_LEN]> {
    id.as_bytes().try_into().ok()
}

impl KeyTable {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every held key, in id order.
    #[cfg(test)]
    fn entries(&self) -> impl Iterator<Item = &Held> {
        self.chunks.iter().flatten()
    }

    /// Room for the names of `keys` more keys (a full snapshot says how
    /// many it carries before them), without copies of the arena as it
    /// doubles (a WebAssembly memory keeps every page it ever touched).
    /// Capped, and allowed to fail: the count is not trusted before the
    /// signature.
    pub(crate) fn reserve(&mut self, keys: u32) {
        let keys = (keys as usize).min(1 << 20);
        let _ = self.chunks.try_reserve_exact(keys / CHUNK + 1);
        let _ = self.names.try_reserve(keys * 16);
    }

    /// Where a key is held (chunk, index), or where it would go.
    fn locate(&self, id: &[u8; ID_LEN]) -> Result<(usize, usize), (usize, usize)> {
        // The last chunk whose first id is not above `id` (chunks are
        // never empty).
        let c = self
            .chunks
            .partition_point(|ch| ch.first().is_some_and(|h| h.id <= *id))
            .saturating_sub(1);
        match self.chunks.get(c) {
            Some(ch) => match ch.binary_search_by(|h| h.id.cmp(id)) {
                Ok(i) => Ok((c, i)),
                Err(i) => Err((c, i)),
            },
            None => Err((0, 0)),
        }
    }

    /// The held key with this id.
    pub(crate) fn get(&self, id: &str) -> Option<HeldKey<'_>> {
        let (c, i) = self.locate(&id_bytes(id)?).ok()?;
        Some(HeldKey {
            held: &self.chunks[c][i],
            table: self,
        })
    }

    /// The held version of a key.
    pub(crate) fn version(&self, id: &str) -> Option<u64> {
        self.get(id).map(|k| k.held.version)
    }

    /// Forget a key; whether one was held.
    pub(crate) fn remove(&mut self, id: &str) -> bool {
        let gone = self.take(id);
        self.compact_names();
        gone
    }

    /// Forget many keys at once (a delta's tombstones).
    pub(crate) fn remove_all<'i>(&mut self, ids: impl IntoIterator<Item = &'i str>) {
        let mut gone: Vec<[u8; ID_LEN]> = ids.into_iter().filter_map(id_bytes).collect();
        if gone.len() <= self.chunks.len() {
            // A few: each from its chunk.
            for id in &gone {
                if let Ok((c, i)) = self.locate(id) {
                    self.take_at(c, i);
                }
            }
        } else {
            // Many (a catch-up delta): one pass over the table instead of a
            // shift of a chunk per key.
            gone.sort_unstable();
            let mut dropped = (0, 0);
            for chunk in &mut self.chunks {
                chunk.retain(|h| {
                    let keep = gone.binary_search(&h.id).is_err();
                    if !keep {
                        dropped.0 += 1;
                        dropped.1 += usize::from(h.name_len);
                    }
                    keep
                });
            }
            self.chunks.retain(|c| !c.is_empty());
            self.len -= dropped.0;
            self.live_names -= dropped.1;
        }
        self.compact_names();
    }

    /// Forget a key, leaving its name in the arena as garbage.
    fn take(&mut self, id: &str) -> bool {
        let Some(Ok((c, i))) = id_bytes(id).map(|b| self.locate(&b)) else {
            return false;
        };
        self.take_at(c, i);
        true
    }

    fn take_at(&mut self, c: usize, i: usize) {
        let gone = self.chunks[c].remove(i);
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
        }
        self.len -= 1;
        self.live_names -= usize::from(gone.name_len);
    }

    /// Hold a record, replacing whatever is held under its id (the caller
    /// compares versions).
    pub(crate) fn put(&mut self, r: &KeyRecord) {
        self.place(r);
        self.compact_names();
    }

    /// [`KeyTable::put`] without rebuilding the names arena (a caller that
    /// places many records rebuilds it once, at the end).
    fn place(&mut self, r: &KeyRecord) {
        let Some(id) = id_bytes(&r.id) else {
            return;
        };
        let at = self.locate(&id);
        let Some(h) = self.held(r) else {
            return;
        };
        match at {
            Ok((c, i)) => {
                let old = core::mem::replace(&mut self.chunks[c][i], h);
                self.live_names -= usize::from(old.name_len);
            }
            Err((c, i)) => self.insert_at(c, i, h),
        }
    }

    /// Rebuild the names arena once its garbage outgrows what is live.
    fn compact_names(&mut self) {
        if self.names.len() <= 2 * self.live_names + NAME_SLACK {
            return;
        }
        let mut names = Vec::with_capacity(self.live_names);
        for h in self.chunks.iter_mut().flatten() {
            let at = h.name_at as usize;
            let name = self
                .names
                .get(at..at + usize::from(h.name_len))
                .unwrap_or(&[]);
            h.name_at = u32::try_from(names.len()).unwrap_or(u32::MAX);
            names.extend_from_slice(name);
        }
        self.names = names;
    }

    /// Hold records that come in strictly increasing id order after every
    /// held one (a full snapshot's keys): appended to the last chunk, a
    /// new chunk every [`CHUNK`] keys.
    pub(crate) fn push_sorted(&mut self, r: &KeyRecord) {
        let in_order = match (id_bytes(&r.id), self.chunks.last().and_then(|c| c.last())) {
            (Some(id), Some(last)) => last.id < id,
            (Some(_), None) => true,
            (None, _) => return,
        };
        if !in_order {
            self.put(r);
            return;
        }
        let Some(h) = self.held(r) else {
            return;
        };
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(h),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(h);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    /// Hold many records at once (a delta): those whose version is newer
    /// than the held one, or whose id is new (if a delta carried an id
    /// twice, its newest version wins).
    pub(crate) fn merge(&mut self, records: impl IntoIterator<Item = KeyRecord>) {
        let mut new: Vec<Held> = Vec::new();
        for r in records {
            match self.version(&r.id) {
                Some(v) if v >= r.version => {}
                // Replaced where it is.
                Some(_) => self.place(&r),
                None => new.extend(self.held(&r)),
            }
        }
        // (A delta never carries an id twice; if it did, the newest wins.)
        new.sort_by(|a, b| a.id.cmp(&b.id).then(b.version.cmp(&a.version)));
        let before: usize = new.iter().map(|h| usize::from(h.name_len)).sum();
        new.dedup_by(|a, b| a.id == b.id);
        self.live_names -= before - new.iter().map(|h| usize::from(h.name_len)).sum::<usize>();
        if new.len() <= self.chunks.len() {
            // A few: each into its chunk.
            for h in new {
                self.insert(h);
            }
        } else {
            // Many (a catch-up delta): the table rebuilt in one pass, a
            // chunk at a time, instead of a chunk shift per key.
            let old = core::mem::take(&mut self.chunks);
            let mut a = old.into_iter().flatten().peekable();
            let mut b = new.into_iter().peekable();
            let mut chunks: Vec<Vec<Held>> = Vec::new();
            loop {
                let next = match (a.peek(), b.peek()) {
                    (Some(x), Some(y)) if x.id < y.id => a.next(),
                    (_, Some(_)) => b.next(),
                    (Some(_), None) => a.next(),
                    (None, None) => break,
                };
                let Some(h) = next else { break };
                match chunks.last_mut() {
                    Some(last) if last.len() < CHUNK => last.push(h),
                    _ => {
                        let mut chunk = Vec::with_capacity(CHUNK);
                        chunk.push(h);
                        chunks.push(chunk);
                    }
                }
            }
            self.len = chunks.iter().map(Vec::len).sum();
            self.chunks = chunks;
        }
        self.compact_names();
    }

    /// Hold a new key (its id is not held) in its chunk.
    fn insert(&mut self, h: Held) {
        match self.locate(&h.id) {
            Err((c, i)) => self.insert_at(c, i, h),
            // (Never: callers insert only ids not held.) Its name is
            // garbage then.
            Ok(_) => self.live_names -= usize::from(h.name_len),
        }
    }

    /// Put a new key where [`KeyTable::locate`] said it goes.
    fn insert_at(&mut self, c: usize, i: usize, h: Held) {
        if self.chunks.is_empty() {
            let mut first = Vec::with_capacity(CHUNK);
            first.push(h);
            self.chunks.push(first);
            self.len += 1;
            return;
        }
        let ch = &mut self.chunks[c];
        if ch.len() == ch.capacity() {
            let _ = ch.try_reserve_exact((CHUNK / 4).max(1));
        }
        ch.insert(i, h);
        self.len += 1;
        if ch.len() >= 2 * CHUNK {
            let tail = ch.split_off(ch.len() / 2);
            ch.shrink_to_fit();
            self.chunks.insert(c + 1, tail);
        }
    }

    fn held(&mut self, r: &KeyRecord) -> Option<Held> {
        let id = id_bytes(&r.id)?;
        // A checked name is at most 100 characters (400 bytes).
        let name_len = u16::try_from(r.name.len()).ok()?;
        let name_at = u32::try_from(self.names.len()).ok()?;
        self.names.extend_from_slice(r.name.as_bytes());
        self.live_names += r.name.len();
        let mut flags = 0;
        if r.status == KeyStatus::Disabled {
            flags |= DISABLED;
        }
        if r.expires_at.is_some() {
            flags |= HAS_EXPIRY;
        }
        let access = match (&r.level, &r.access) {
            (KeyLevel::Project(p), _) => {
                flags |= LEVEL_PROJECT;
                self.strings.intern(p)
            }
            (KeyLevel::Organization, ProjectAccess::AllProjects) => {
                flags |= ACCESS_ALL;
                0
            }
            (KeyLevel::Organization, ProjectAccess::Selected(ids)) => {
                let mut set: Vec<u32> = ids.iter().map(|p| self.strings.intern(p)).collect();
                set.sort_unstable();
                self.intern_set(set)
            }
        };
        let scopes = Scope::ALL
            .iter()
            .enumerate()
            .filter(|(_, s)| r.scopes.contains(s))
            .fold(0u8, |m, (i, _)| m | (1 << i));
        Some(Held {
            id,
            flags,
            scopes,
            key_hash: r.key_hash,
            version: r.version,
            created_at: r.created_at,
            expires_at: r.expires_at.unwrap_or(0),
            organization: self.strings.intern(&r.organization),
            access,
            name_at,
            name_len,
        })
    }

    fn intern_set(&mut self, set: Vec<u32>) -> u32 {
        if let Some(&n) = self.set_numbers.get(set.as_slice()) {
            return n;
        }
        let n = u32::try_from(self.sets.len()).unwrap_or(u32::MAX);
        let set: Box<[u32]> = set.into_boxed_slice();
        self.sets.push(set.clone());
        self.set_numbers.insert(set, n);
        n
    }
}

impl<'a> HeldKey<'a> {
    pub(crate) fn id(&self) -> &'a str {
        // Held ids come from checked records: ASCII.
        core::str::from_utf8(&self.held.id).unwrap_or("")
    }

    pub(crate) fn name(&self) -> &'a str {
        let at = self.held.name_at as usize;
        // The bytes were a whole `str`.
        self.table
            .names
            .get(at..at + usize::from(self.held.name_len))
            .and_then(|b| core::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    pub(crate) fn key_hash(&self) -> &'a [u8; 32] {
        &self.held.key_hash
    }

    pub(crate) fn version(&self) -> u64 {
        self.held.version
    }

    pub(crate) fn level(&self) -> KeyLevel {
        if self.held.flags & LEVEL_PROJECT != 0 {
            KeyLevel::Project(self.table.strings.get(self.held.access).into())
        } else {
            KeyLevel::Organization
        }
    }
}

/// The rules read a held key as they read the record it was made from
/// (`grants_project` answers like [`KeyRecord::grants_project`]).
impl KeyFacts for HeldKey<'_> {
    fn organization(&self) -> &str {
        self.table.strings.get(self.held.organization)
    }
    fn created_at(&self) -> u64 {
        self.held.created_at
    }
    fn expires_at(&self) -> Option<u64> {
        (self.held.flags & HAS_EXPIRY != 0).then_some(self.held.expires_at)
    }
    fn disabled(&self) -> bool {
        self.held.flags & DISABLED != 0
    }
    fn has_scope(&self, scope: Scope) -> bool {
        Scope::ALL
            .iter()
            .position(|s| *s == scope)
            .is_some_and(|i| self.held.scopes & (1 << i) != 0)
    }
    fn grants_project(&self, project: &str) -> bool {
        let h = self.held;
        if h.flags & LEVEL_PROJECT != 0 {
            return self.table.strings.get(h.access) == project;
        }
        if h.flags & ACCESS_ALL != 0 {
            return true;
        }
        let Some(n) = self.table.strings.number(project) else {
            return false;
        };
        self.table
            .sets
            .get(h.access as usize)
            .is_some_and(|set| set.binary_search(&n).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::ExpiryPolicy;
    use alloc::string::{String, ToString};
    use alloc::vec;
    use proptest::prelude::*;

    fn project(n: u8) -> String {
        alloc::format!("prj_{:011}", n % 7)
    }

    /// A checked record from a few generated choices.
    fn record(id: u8, version: u64, shape: u8, when: u64, name: &str) -> KeyRecord {
        let id = alloc::format!("{:011}", id % 40);
        let (level, access) = match shape % 3 {
            0 => (KeyLevel::Organization, ProjectAccess::AllProjects),
            1 => {
                let mut ids: Vec<String> =
                    (0..(1 + shape % 4)).map(|i| project(shape + i)).collect();
                ids.sort();
                ids.dedup();
                (KeyLevel::Organization, ProjectAccess::Selected(ids))
            }
            _ => (
                KeyLevel::Project(project(shape)),
                ProjectAccess::Selected(vec![project(shape)]),
            ),
        };
        KeyRecord {
            id,
            organization: alloc::format!("org{}", shape % 3),
            name: name.to_string(),
            level,
            scopes: vec![Scope::TriggerWorkflows],
            access,
            created_at: when,
            expiry: if shape.is_multiple_of(2) {
                ExpiryPolicy::Never
            } else {
                ExpiryPolicy::Days(7)
            },
            expires_at: (shape % 2 == 1).then_some(when + 7 * 86_400),
            status: if shape.is_multiple_of(5) {
                KeyStatus::Disabled
            } else {
                KeyStatus::Active
            },
            key_hash: [shape; 32],
            version,
            rotated_from: None,
            rotated_to: None,
        }
    }

    fn same(held: HeldKey<'_>, r: &KeyRecord) -> bool {
        held.id() == r.id
            && held.name() == r.name
            && held.organization() == r.organization
            && held.key_hash() == &r.key_hash
            && held.version() == r.version
            && held.created_at() == r.created_at
            && held.expires_at() == r.expires_at
            && held.disabled() == (r.status == KeyStatus::Disabled)
            && held.has_scope(Scope::TriggerWorkflows)
            && held.level() == r.level
            && (0..8).all(|p| held.grants_project(&project(p)) == r.grants_project(&project(p)))
            && held.grants_project("prj_nowhere00") == r.grants_project("prj_nowhere00")
    }

    #[test]
    fn replaced_names_are_reclaimed_and_every_name_still_reads() {
        let mut table = KeyTable::default();
        let name = |id: u8, round: u64| alloc::format!("{id:03} round {round} {}", "n".repeat(80));
        for round in 1..=12u64 {
            for id in 0..40u8 {
                table.put(&record(id, round, id, 1_700_000_000, &name(id, round)));
            }
            let named: usize = table.entries().map(|h| usize::from(h.name_len)).sum();
            assert_eq!(table.live_names, named);
            assert!(
                table.names.len() <= 2 * named + 4096,
                "round {round}: {}",
                table.names.len()
            );
        }
        // 12 rounds of 40 names of about 95 bytes: without reclaiming, the
        // arena would hold all 480.
        assert!(table.names.len() < 40 * 95 * 4);
        for id in 0..40u8 {
            let r = record(id, 12, id, 1_700_000_000, &name(id, 12));
            assert!(same(table.get(&r.id).unwrap(), &r), "{id}");
        }
        assert!(table.remove(&record(3, 1, 3, 0, "").id));
        table.remove_all([
            record(4, 1, 4, 0, "").id.as_str(),
            record(5, 1, 5, 0, "").id.as_str(),
        ]);
        let named: usize = table.entries().map(|h| usize::from(h.name_len)).sum();
        assert_eq!(table.live_names, named);
        for id in (0..40u8).filter(|id| ![3, 4, 5].contains(id)) {
            let r = record(id, 12, id, 1_700_000_000, &name(id, 12));
            assert!(same(table.get(&r.id).unwrap(), &r), "{id}");
        }
    }

    proptest! {
        /// Whatever sequence of puts, merges and removals, the table holds
        /// exactly what a map of whole records would, and reads the same.
        #[test]
        fn the_table_reads_like_a_map_of_records(
            first in proptest::collection::btree_set(any::<u8>(), 0..30),
            ops in proptest::collection::vec((0u8..5, any::<u8>(), 0u64..5, any::<u8>()), 1..80)
        ) {
            let mut table = KeyTable::default();
            let mut reference: BTreeMap<String, KeyRecord> = BTreeMap::new();
            // A full snapshot's load first: keys in id order, appended in
            // full chunks.
            let mut loaded: Vec<KeyRecord> = first
                .iter()
                .map(|&id| record(id, 1, id, 1_700_000_000, &alloc::format!("first {id}")))
                .collect();
            loaded.sort_by(|a, b| a.id.cmp(&b.id));
            loaded.dedup_by(|a, b| a.id == b.id);
            for r in loaded {
                table.push_sorted(&r);
                reference.insert(r.id.clone(), r);
            }
            let mut batch: Vec<KeyRecord> = Vec::new();
            for (op, id, version, shape) in ops {
                // Names of many lengths: a name read from the wrong place
                // in the arena shows.
                let name = alloc::format!("k{id}.{version}.{}", "x".repeat(usize::from(shape % 60)));
                let r = record(id, version, shape, 1_700_000_000 + u64::from(shape), &name);
                match op {
                    0 => {
                        table.put(&r);
                        reference.insert(r.id.clone(), r);
                    }
                    1 => {
                        let held = table.remove(&r.id);
                        prop_assert_eq!(held, reference.remove(&r.id).is_some());
                    }
                    2 => batch.push(r),
                    3 if shape % 2 == 0 => {
                        // Several tombstones at once.
                        let other = record(id.wrapping_add(1), 0, 0, 0, "k").id;
                        table.remove_all([r.id.as_str(), other.as_str(), "short"]);
                        reference.remove(&r.id);
                        reference.remove(&other);
                    }
                    3 if shape % 3 == 1 => {
                        // More ids than chunks: the one-pass removal.
                        let ids: Vec<String> = (0..12u8)
                            .map(|k| record(id.wrapping_add(k * 3), 0, 0, 0, "k").id)
                            .collect();
                        table.remove_all(ids.iter().map(String::as_str));
                        for i in &ids {
                            reference.remove(i);
                        }
                    }
                    _ => {
                        // A delta: ids unique and increasing, newer versions win.
                        batch.sort_by(|a, b| a.id.cmp(&b.id));
                        batch.dedup_by(|a, b| a.id == b.id);
                        for b in &batch {
                            if reference.get(&b.id).is_none_or(|h| h.version < b.version) {
                                reference.insert(b.id.clone(), b.clone());
                            }
                        }
                        table.merge(core::mem::take(&mut batch));
                    }
                }
            }
            prop_assert_eq!(table.len(), reference.len());
            let ids: Vec<[u8; ID_LEN]> = table.entries().map(|h| h.id).collect();
            prop_assert!(ids.windows(2).all(|w| w[0] < w[1]));
            prop_assert_eq!(ids.len(), table.len());
            prop_assert!(table.chunks.iter().all(|c| !c.is_empty() && c.len() < 2 * CHUNK));
            for (id, r) in &reference {
                let held = table.get(id);
                prop_assert!(held.is_some_and(|h| same(h, r)), "{}", id);
            }
            // The arena's accounting: what is live is what held keys name,
            // and garbage never outgrows it for long.
            let named: usize = table.entries().map(|h| usize::from(h.name_len)).sum();
            prop_assert_eq!(table.live_names, named);
            prop_assert!(table.names.len() <= 2 * named + NAME_SLACK + 400);
            prop_assert!(table.get("zzzzzzzzzzz").is_none());
            prop_assert!(table.get("short").is_none());
        }
    }
}
