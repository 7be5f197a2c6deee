//! The inode table: a stable inode number per path while the kernel knows it, the kernel's
//! lookup counts, and `forget`. Renames move a whole subtree's paths.

use std::collections::HashMap;

use parking_lot::Mutex;

/// An inode number as the kernel sees it; 1 is the root.
pub type Ino = u64;

/// The root's inode number (fuser's FUSE_ROOT_ID).
pub const ROOT_INO: Ino = 1;

#[derive(Debug)]
struct Node {
    /// None once the path was unlinked or replaced while the kernel still holds the inode.
    path: Option<String>,
    /// Outstanding kernel lookups (lookup, create, mkdir, readdirplus), minus forgets.
    lookups: u64,
}

#[derive(Debug)]
struct Inner {
    nodes: HashMap<Ino, Node>,
    by_path: HashMap<String, Ino>,
    next: Ino,
}

/// Maps inode numbers to paths and back. All methods lock briefly; none calls the remote.
#[derive(Debug)]
pub struct InodeTable {
    inner: Mutex<Inner>,
}

impl Default for InodeTable {
    fn default() -> Self {
        Self::new()
    }
}

impl InodeTable {
    /// A table holding only the root ("/").
    pub fn new() -> Self {
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT_INO,
            Node {
                path: Some("/".into()),
                lookups: 1,
            },
        );
        let mut by_path = HashMap::new();
        by_path.insert("/".to_string(), ROOT_INO);
        InodeTable {
            inner: Mutex::new(Inner {
                nodes,
                by_path,
                next: ROOT_INO + 1,
            }),
        }
    }

    /// The current path of `ino`, or None if unknown or unlinked.
    pub fn path(&self, ino: Ino) -> Option<String> {
        self.inner
            .lock()
            .nodes
            .get(&ino)
            .and_then(|n| n.path.clone())
    }

    /// The inode of `path`, allocating one if needed, without counting a kernel lookup
    /// (plain readdir entries).
    pub fn ino_of(&self, path: &str) -> Ino {
        self.assign(path, 0)
    }

    /// The inode of `path` with one more kernel lookup counted (lookup, create, mkdir,
    /// readdirplus).
    pub fn lookup(&self, path: &str) -> Ino {
        self.assign(path, 1)
    }

    /// The inode already known for `path`, if any.
    pub fn find(&self, path: &str) -> Option<Ino> {
        self.inner.lock().by_path.get(path).copied()
    }

    fn assign(&self, path: &str, count: u64) -> Ino {
        let mut inner = self.inner.lock();
        if let Some(&ino) = inner.by_path.get(path) {
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.lookups += count;
            }
            return ino;
        }
        let ino = inner.next;
        inner.next += 1;
        inner.nodes.insert(
            ino,
            Node {
                path: Some(path.to_string()),
                lookups: count,
            },
        );
        inner.by_path.insert(path.to_string(), ino);
        ino
    }

    /// The kernel dropped `n` lookups of `ino`; the inode is freed when none remain.
    /// Returns whether it was freed.
    pub fn forget(&self, ino: Ino, n: u64) -> bool {
        if ino == ROOT_INO {
            return false;
        }
        let mut inner = self.inner.lock();
        let Some(node) = inner.nodes.get_mut(&ino) else {
            return false;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups == 0 {
            let path = node.path.take();
            inner.nodes.remove(&ino);
            if let Some(p) = path
                && inner.by_path.get(&p) == Some(&ino)
            {
                inner.by_path.remove(&p);
            }
            return true;
        }
        false
    }

    /// Current kernel lookup count of `ino` (0 if unknown); for tests and diagnostics.
    pub fn lookup_count(&self, ino: Ino) -> u64 {
        self.inner.lock().nodes.get(&ino).map_or(0, |n| n.lookups)
    }

    /// `path` (and everything below it) no longer exists: detach it from its inodes, which
    /// live on until forgotten but no longer resolve to a path.
    pub fn remove_path(&self, path: &str) {
        let mut inner = self.inner.lock();
        let prefix = format!("{path}/");
        let gone: Vec<String> = inner
            .by_path
            .keys()
            .filter(|p| p.as_str() == path || p.starts_with(&prefix))
            .cloned()
            .collect();
        for p in gone {
            if let Some(ino) = inner.by_path.remove(&p) {
                let forgotten = match inner.nodes.get_mut(&ino) {
                    Some(node) => {
                        node.path = None;
                        node.lookups == 0
                    }
                    None => false,
                };
                if forgotten {
                    inner.nodes.remove(&ino);
                }
            }
        }
    }

    /// `from` was renamed to `to`: whatever was at `to` is detached, and `from` with its
    /// subtree moves, keeping inode numbers.
    pub fn rename(&self, from: &str, to: &str) {
        self.remove_path(to);
        let mut inner = self.inner.lock();
        let prefix = format!("{from}/");
        let moved: Vec<(String, Ino)> = inner
            .by_path
            .iter()
            .filter(|(p, _)| p.as_str() == from || p.starts_with(&prefix))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        for (old, ino) in moved {
            inner.by_path.remove(&old);
            let new = format!("{to}{}", &old[from.len()..]);
            if let Some(node) = inner.nodes.get_mut(&ino) {
                node.path = Some(new.clone());
            }
            inner.by_path.insert(new, ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_numbers_and_forget() {
        let t = InodeTable::new();
        assert_eq!(t.path(ROOT_INO).as_deref(), Some("/"));
        let a = t.lookup("/a");
        assert_eq!(t.lookup("/a"), a);
        assert_eq!(t.lookup_count(a), 2);
        assert!(!t.forget(a, 1));
        assert_eq!(t.path(a).as_deref(), Some("/a"));
        assert!(t.forget(a, 1));
        assert_eq!(t.path(a), None);
        assert_ne!(t.lookup("/a"), a);
    }

    #[test]
    fn rename_moves_subtree_and_detaches_target() {
        let t = InodeTable::new();
        let d = t.lookup("/d");
        let f = t.lookup("/d/f");
        let x = t.lookup("/x");
        t.rename("/d", "/x");
        assert_eq!(t.path(d).as_deref(), Some("/x"));
        assert_eq!(t.path(f).as_deref(), Some("/x/f"));
        assert_eq!(t.path(x), None);
        assert_eq!(t.find("/x/f"), Some(f));
        assert_eq!(t.find("/d/f"), None);
    }
}
