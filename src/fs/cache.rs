//! The directory cache: one LRU of directory path -> listing, each with the time it was
//! fetched. Attributes of a path come from its parent's listing, so filling one listing
//! answers lookup/getattr for all its children (one LIST instead of 2N SIZE/MDTM).
//! Negative answers (a name missing from a listing) are trusted for a shorter time.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lru::LruCache;
use parking_lot::Mutex;

use crate::remote::{Entry, RemoteResult};

/// A directory's children by name (sorted, so readdir order is stable).
pub type Listing = BTreeMap<String, Entry>;

/// How many directory listings the cache holds at most.
pub const CACHE_DIRS: usize = 4096;

#[derive(Debug)]
struct Cached {
    listing: Arc<Listing>,
    fetched: Instant,
}

/// Cache of directory listings with a TTL. All methods lock briefly; the remote is only
/// called inside `listing`, under a per-directory lock (never the cache's own lock), so
/// concurrent misses on one directory make one LIST and other directories are not blocked.
#[derive(Debug)]
pub struct DirCache {
    lru: Mutex<LruCache<String, Cached>>,
    ttl: Duration,
    /// Bumped by every local mutation: a listing fetched while one happened may miss it and
    /// is then returned to its caller but not cached.
    generation: AtomicU64,
    fetching: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    on_change: Option<ChangeHook>,
}

/// `(directory, below_too)`: see `ChangeHook`.
pub type OnChange = dyn Fn(&str, bool) + Send + Sync;

/// Called with a directory whose listing a local mutation changed, and whether everything
/// below it is affected too.
pub struct ChangeHook(pub Box<OnChange>);

impl std::fmt::Debug for ChangeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChangeHook")
    }
}

/// Whether a server-provided name can be shown (never ".", "..", empty or with '/').
fn usable_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

impl DirCache {
    /// A cache whose listings live `ttl` (zero disables caching).
    pub fn new(ttl: Duration) -> Self {
        DirCache {
            lru: Mutex::new(LruCache::new(
                NonZeroUsize::new(CACHE_DIRS).unwrap_or(NonZeroUsize::MIN),
            )),
            ttl,
            generation: AtomicU64::new(0),
            fetching: Mutex::new(HashMap::new()),
            on_change: None,
        }
    }

    /// Tells `hook` of every local mutation (see `ChangeHook`).
    pub fn with_change_hook(mut self, hook: ChangeHook) -> Self {
        self.on_change = Some(hook);
        self
    }

    fn changed(&self, dir: &str, tree: bool) {
        if let Some(hook) = &self.on_change {
            (hook.0)(dir, tree);
        }
    }

    /// The cached listing of `dir` if fetched less than `max_age` ago (capped at the TTL).
    pub fn fresh(&self, dir: &str, max_age: Duration) -> Option<(Arc<Listing>, Instant)> {
        let max_age = max_age.min(self.ttl);
        if max_age.is_zero() {
            return None;
        }
        let mut lru = self.lru.lock();
        let cached = lru.get(dir)?;
        if cached.fetched.elapsed() < max_age {
            Some((cached.listing.clone(), cached.fetched))
        } else {
            None
        }
    }

    /// The listing of `dir`: from the cache if younger than `max_age`, else from `fetch`
    /// (called once even if many threads miss together). Also returns when it was fetched.
    pub fn listing(
        &self,
        dir: &str,
        max_age: Duration,
        fetch: impl FnOnce() -> RemoteResult<Vec<Entry>>,
    ) -> RemoteResult<(Arc<Listing>, Instant)> {
        if let Some(l) = self.fresh(dir, max_age) {
            return Ok(l);
        }
        let lock = self
            .fetching
            .lock()
            .entry(dir.to_string())
            .or_default()
            .clone();
        let result = {
            let _guard = lock.lock();
            match self.fresh(dir, max_age) {
                Some(l) => Ok(l),
                None => self.fetch_and_store(dir, fetch),
            }
        };
        let mut fetching = self.fetching.lock();
        // Ours plus the map's: nobody else waits on it any more.
        if Arc::strong_count(&lock) == 2 {
            fetching.remove(dir);
        }
        result
    }

    fn fetch_and_store(
        &self,
        dir: &str,
        fetch: impl FnOnce() -> RemoteResult<Vec<Entry>>,
    ) -> RemoteResult<(Arc<Listing>, Instant)> {
        let generation = self.generation.load(Ordering::SeqCst);
        let entries = fetch()?;
        let listing: Listing = entries
            .into_iter()
            .filter(|e| usable_name(&e.name))
            .map(|e| (e.name.clone(), e))
            .collect();
        let listing = Arc::new(listing);
        let fetched = Instant::now();
        if !self.ttl.is_zero() {
            let mut lru = self.lru.lock();
            if self.generation.load(Ordering::SeqCst) == generation {
                lru.put(
                    dir.to_string(),
                    Cached {
                        listing: listing.clone(),
                        fetched,
                    },
                );
            }
        }
        Ok((listing, fetched))
    }

    /// Records `dir`'s listing as known (a directory we just created is empty).
    pub fn insert(&self, dir: &str, listing: Listing) {
        if self.ttl.is_zero() {
            return;
        }
        let mut lru = self.lru.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        lru.put(
            dir.to_string(),
            Cached {
                listing: Arc::new(listing),
                fetched: Instant::now(),
            },
        );
        drop(lru);
        self.changed(dir, false);
    }

    /// Applies a local mutation to `dir`'s cached listing, if cached (whatever its age: the
    /// mutation is true either way, and expiry stays as it was).
    pub fn update(&self, dir: &str, f: impl FnOnce(&mut Listing)) {
        let mut lru = self.lru.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Some(cached) = lru.get_mut(dir) {
            f(Arc::make_mut(&mut cached.listing));
        }
        drop(lru);
        self.changed(dir, false);
    }

    /// Drops `dir`'s listing (after a failure that left its state unknown).
    pub fn invalidate(&self, dir: &str) {
        let mut lru = self.lru.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        lru.pop(dir);
        drop(lru);
        self.changed(dir, false);
    }

    /// Drops the listings of `dir` and every directory below it.
    pub fn invalidate_tree(&self, dir: &str) {
        let mut lru = self.lru.lock();
        self.generation.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{dir}/");
        let doomed: Vec<String> = lru
            .iter()
            .map(|(k, _)| k)
            .filter(|k| k.as_str() == dir || k.starts_with(&prefix))
            .cloned()
            .collect();
        for k in doomed {
            lru.pop(&k);
        }
        drop(lru);
        self.changed(dir, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::EntryKind;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            kind: EntryKind::File,
            size: 1,
            mtime: None,
            mode: None,
        }
    }

    #[test]
    fn caches_for_ttl_and_filters_names() {
        let c = DirCache::new(Duration::from_secs(60));
        let mut calls = 0;
        for _ in 0..3 {
            let l = c
                .listing("/", Duration::MAX, || {
                    calls += 1;
                    Ok(vec![entry("a"), entry("."), entry("b/c"), entry("")])
                })
                .unwrap();
            assert_eq!(l.0.keys().collect::<Vec<_>>(), vec!["a"]);
        }
        assert_eq!(calls, 1);
        c.update("/", |l| {
            l.insert("z".into(), entry("z"));
        });
        assert!(c.fresh("/", Duration::MAX).unwrap().0.contains_key("z"));
        c.invalidate_tree("/");
        assert!(c.fresh("/", Duration::MAX).is_none());
    }

    #[test]
    fn zero_ttl_disables() {
        let c = DirCache::new(Duration::ZERO);
        let mut calls = 0;
        for _ in 0..2 {
            c.listing("/", Duration::MAX, || {
                calls += 1;
                Ok(vec![])
            })
            .unwrap();
        }
        assert_eq!(calls, 2);
    }
}
