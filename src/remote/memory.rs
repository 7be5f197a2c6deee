//! An in-memory `Remote` that behaves like a strict FTP server, with call counters, so the
//! filesystem core can be tested (and round trips counted) without a network.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::{
    Entry, EntryKind, ReadStream, Remote, RemoteCapabilities, RemoteError, RemoteErrorKind,
    RemoteResult, WriteMode, WriteStream,
};

/// The operations of `Remote`, used to count calls and to target injected faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    /// `Remote::list`.
    List,
    /// `Remote::stat`.
    Stat,
    /// `Remote::open_read`.
    OpenRead,
    /// `Remote::open_write`.
    OpenWrite,
    /// `Remote::delete`.
    Delete,
    /// `Remote::mkdir`.
    Mkdir,
    /// `Remote::rmdir`.
    Rmdir,
    /// `Remote::rename`.
    Rename,
    /// `Remote::set_mtime`.
    SetMtime,
    /// `Remote::chmod`.
    Chmod,
}

const OPS: usize = 10;

impl Op {
    fn index(self) -> usize {
        self as usize
    }
}

/// One object in the in-memory tree.
#[derive(Debug, Clone)]
enum Node {
    File(Arc<Vec<u8>>),
    Dir,
    Symlink(String),
}

#[derive(Debug, Clone)]
struct Object {
    node: Node,
    mtime: SystemTime,
    mode: u32,
}

/// The shared tree: absolute path ("/a/b") -> object. "/" always exists.
#[derive(Debug)]
struct Tree {
    objects: BTreeMap<String, Object>,
}

fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn not_found(path: &str) -> RemoteError {
    RemoteError::new(RemoteErrorKind::NotFound, format!("550 {path}: not found"))
}

fn check_path(path: &str) -> RemoteResult<()> {
    if !path.starts_with('/') || path.contains(['\r', '\n', '\0']) {
        return Err(RemoteError::new(
            RemoteErrorKind::InvalidName,
            format!("invalid path {path:?}"),
        ));
    }
    Ok(())
}

impl Tree {
    fn is_dir(&self, path: &str) -> bool {
        matches!(
            self.objects.get(path),
            Some(Object {
                node: Node::Dir,
                ..
            })
        )
    }

    /// Paths strictly below `dir`.
    fn descendants(&self, dir: &str) -> Vec<String> {
        let prefix = if dir == "/" {
            "/".to_string()
        } else {
            format!("{dir}/")
        };
        self.objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != "/")
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn entry(&self, path: &str, obj: &Object) -> Entry {
        let (kind, size) = match &obj.node {
            Node::File(data) => (EntryKind::File, data.len() as u64),
            Node::Dir => (EntryKind::Dir, 0),
            Node::Symlink(t) => (
                EntryKind::Symlink {
                    target: Some(t.clone()),
                },
                t.len() as u64,
            ),
        };
        Entry {
            name: if path == "/" {
                "/".into()
            } else {
                name_of(path).into()
            },
            kind,
            size,
            mtime: Some(obj.mtime),
            mode: Some(obj.mode),
        }
    }
}

/// An in-memory server. Cheap to clone (clones share the tree and the counters).
#[derive(Debug, Clone)]
pub struct MemoryRemote {
    tree: Arc<Mutex<Tree>>,
    counters: Arc<[AtomicUsize; OPS]>,
    caps: Arc<Mutex<RemoteCapabilities>>,
}

impl Default for MemoryRemote {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRemote {
    /// An empty server (only "/"), supporting set_mtime, chmod and append.
    pub fn new() -> Self {
        let mut objects = BTreeMap::new();
        objects.insert(
            "/".to_string(),
            Object {
                node: Node::Dir,
                mtime: SystemTime::now(),
                mode: 0o755,
            },
        );
        MemoryRemote {
            tree: Arc::new(Mutex::new(Tree { objects })),
            counters: Arc::new(Default::default()),
            caps: Arc::new(Mutex::new(RemoteCapabilities {
                set_mtime: true,
                chmod: true,
                append: true,
            })),
        }
    }

    /// Changes what `capabilities()` reports (operations themselves keep working).
    pub fn set_capabilities(&self, caps: RemoteCapabilities) {
        *self.caps.lock() = caps;
    }

    /// Test setup: stores a file (parents are created), without counting a call.
    pub fn put_file(&self, path: &str, data: &[u8]) {
        self.mkdir_all(parent_of(path));
        self.tree.lock().objects.insert(
            path.to_string(),
            Object {
                node: Node::File(Arc::new(data.to_vec())),
                mtime: SystemTime::now(),
                mode: 0o644,
            },
        );
    }

    /// Test setup: creates a directory and its parents, without counting a call.
    pub fn mkdir_all(&self, path: &str) {
        let mut tree = self.tree.lock();
        let mut cur = String::new();
        for part in path.split('/').filter(|p| !p.is_empty()) {
            cur.push('/');
            cur.push_str(part);
            tree.objects.entry(cur.clone()).or_insert(Object {
                node: Node::Dir,
                mtime: SystemTime::now(),
                mode: 0o755,
            });
        }
    }

    /// Test setup: stores a symbolic link pointing at `target`.
    pub fn put_symlink(&self, path: &str, target: &str) {
        self.mkdir_all(parent_of(path));
        self.tree.lock().objects.insert(
            path.to_string(),
            Object {
                node: Node::Symlink(target.to_string()),
                mtime: SystemTime::now(),
                mode: 0o777,
            },
        );
    }

    /// The content of a file, or None if `path` is not a file.
    pub fn file(&self, path: &str) -> Option<Vec<u8>> {
        match self.tree.lock().objects.get(path) {
            Some(Object {
                node: Node::File(d),
                ..
            }) => Some(d.as_ref().clone()),
            _ => None,
        }
    }

    /// Whether anything exists at `path`.
    pub fn exists(&self, path: &str) -> bool {
        self.tree.lock().objects.contains_key(path)
    }

    /// The stored modification time and mode of `path`.
    pub fn meta(&self, path: &str) -> Option<(SystemTime, u32)> {
        self.tree
            .lock()
            .objects
            .get(path)
            .map(|o| (o.mtime, o.mode))
    }

    /// How many times `op` was called.
    pub fn calls(&self, op: Op) -> usize {
        self.counters[op.index()].load(Ordering::SeqCst)
    }

    /// Calls of all operations together.
    pub fn total_calls(&self) -> usize {
        self.counters.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }

    /// Number of `list` calls.
    pub fn list_calls(&self) -> usize {
        self.calls(Op::List)
    }

    /// Number of `stat` calls.
    pub fn stat_calls(&self) -> usize {
        self.calls(Op::Stat)
    }

    /// Number of `open_read` calls.
    pub fn open_read_calls(&self) -> usize {
        self.calls(Op::OpenRead)
    }

    /// Number of `open_write` calls.
    pub fn open_write_calls(&self) -> usize {
        self.calls(Op::OpenWrite)
    }

    /// Resets every counter to zero.
    pub fn reset_counters(&self) {
        for c in self.counters.iter() {
            c.store(0, Ordering::SeqCst);
        }
    }

    fn count(&self, op: Op) {
        self.counters[op.index()].fetch_add(1, Ordering::SeqCst);
    }
}

/// A download: a snapshot of the file taken when it was opened, like a server's open fd.
struct MemReader {
    data: Arc<Vec<u8>>,
    pos: usize,
}

impl Read for MemReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = self.data.get(self.pos..).unwrap_or(&[]);
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.pos += n;
        Ok(n)
    }
}

impl ReadStream for MemReader {
    fn close(self: Box<Self>) -> RemoteResult<()> {
        Ok(())
    }
}

/// An upload: bytes collect in memory and land in the tree at `finish`.
struct MemWriter {
    tree: Arc<Mutex<Tree>>,
    path: String,
    mode: WriteMode,
    buf: Vec<u8>,
}

impl Write for MemWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WriteStream for MemWriter {
    fn finish(self: Box<Self>) -> RemoteResult<()> {
        let mut tree = self.tree.lock();
        if !tree.is_dir(parent_of(&self.path)) {
            return Err(not_found(&self.path));
        }
        let (mut data, mode) = match tree.objects.get(&self.path) {
            Some(Object {
                node: Node::File(d),
                mode,
                ..
            }) => (
                if self.mode == WriteMode::Append {
                    d.as_ref().clone()
                } else {
                    Vec::new()
                },
                *mode,
            ),
            Some(_) => {
                return Err(RemoteError::new(
                    RemoteErrorKind::PermissionDenied,
                    format!("550 {}: not a plain file", self.path),
                ));
            }
            None => (Vec::new(), 0o644),
        };
        data.extend_from_slice(&self.buf);
        tree.objects.insert(
            self.path.clone(),
            Object {
                node: Node::File(Arc::new(data)),
                mtime: SystemTime::now(),
                mode,
            },
        );
        Ok(())
    }
}

impl Remote for MemoryRemote {
    fn list(&self, dir: &str) -> RemoteResult<Vec<Entry>> {
        self.count(Op::List);
        check_path(dir)?;
        let tree = self.tree.lock();
        if !tree.is_dir(dir) {
            return Err(not_found(dir));
        }
        Ok(tree
            .descendants(dir)
            .iter()
            .filter(|p| parent_of(p) == dir)
            .filter_map(|p| tree.objects.get(p).map(|o| tree.entry(p, o)))
            .collect())
    }

    fn stat(&self, path: &str) -> RemoteResult<Entry> {
        self.count(Op::Stat);
        check_path(path)?;
        let tree = self.tree.lock();
        tree.objects
            .get(path)
            .map(|o| tree.entry(path, o))
            .ok_or_else(|| not_found(path))
    }

    fn open_read(&self, path: &str, offset: u64) -> RemoteResult<Box<dyn ReadStream>> {
        self.count(Op::OpenRead);
        check_path(path)?;
        let tree = self.tree.lock();
        match tree.objects.get(path) {
            Some(Object {
                node: Node::File(d),
                ..
            }) => Ok(Box::new(MemReader {
                data: d.clone(),
                pos: usize::try_from(offset).unwrap_or(usize::MAX),
            })),
            Some(_) => Err(RemoteError::new(
                RemoteErrorKind::PermissionDenied,
                format!("550 {path}: not a plain file"),
            )),
            None => Err(not_found(path)),
        }
    }

    fn open_write(&self, path: &str, mode: WriteMode) -> RemoteResult<Box<dyn WriteStream>> {
        self.count(Op::OpenWrite);
        check_path(path)?;
        let tree = self.tree.lock();
        if !tree.is_dir(parent_of(path)) {
            return Err(not_found(path));
        }
        if tree.is_dir(path) {
            return Err(RemoteError::new(
                RemoteErrorKind::PermissionDenied,
                format!("550 {path}: is a directory"),
            ));
        }
        Ok(Box::new(MemWriter {
            tree: self.tree.clone(),
            path: path.to_string(),
            mode,
            buf: Vec::new(),
        }))
    }

    fn delete(&self, path: &str) -> RemoteResult<()> {
        self.count(Op::Delete);
        check_path(path)?;
        let mut tree = self.tree.lock();
        match tree.objects.get(path) {
            Some(Object {
                node: Node::Dir, ..
            }) => Err(RemoteError::new(
                RemoteErrorKind::PermissionDenied,
                format!("550 {path}: is a directory"),
            )),
            Some(_) => {
                tree.objects.remove(path);
                Ok(())
            }
            None => Err(not_found(path)),
        }
    }

    fn mkdir(&self, path: &str) -> RemoteResult<()> {
        self.count(Op::Mkdir);
        check_path(path)?;
        let mut tree = self.tree.lock();
        if tree.objects.contains_key(path) {
            return Err(RemoteError::new(
                RemoteErrorKind::AlreadyExists,
                format!("550 {path}: exists"),
            ));
        }
        if !tree.is_dir(parent_of(path)) {
            return Err(not_found(path));
        }
        tree.objects.insert(
            path.to_string(),
            Object {
                node: Node::Dir,
                mtime: SystemTime::now(),
                mode: 0o755,
            },
        );
        Ok(())
    }

    fn rmdir(&self, path: &str) -> RemoteResult<()> {
        self.count(Op::Rmdir);
        check_path(path)?;
        let mut tree = self.tree.lock();
        if !tree.is_dir(path) || path == "/" {
            return Err(not_found(path));
        }
        if !tree.descendants(path).is_empty() {
            return Err(RemoteError::new(
                RemoteErrorKind::NotEmpty,
                format!("550 {path}: directory not empty"),
            ));
        }
        tree.objects.remove(path);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> RemoteResult<()> {
        self.count(Op::Rename);
        check_path(from)?;
        check_path(to)?;
        let mut tree = self.tree.lock();
        if !tree.objects.contains_key(from) || from == "/" {
            return Err(not_found(from));
        }
        if tree.objects.contains_key(to) {
            // Like servers that refuse RNTO onto an existing name.
            return Err(RemoteError::new(
                RemoteErrorKind::AlreadyExists,
                format!("553 {to}: exists"),
            ));
        }
        if !tree.is_dir(parent_of(to)) {
            return Err(not_found(to));
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(RemoteError::new(
                RemoteErrorKind::InvalidName,
                "cannot move a directory into itself",
            ));
        }
        let mut moved = tree.descendants(from);
        moved.push(from.to_string());
        for old in moved {
            if let Some(obj) = tree.objects.remove(&old) {
                let new = format!("{to}{}", &old[from.len()..]);
                tree.objects.insert(new, obj);
            }
        }
        Ok(())
    }

    fn set_mtime(&self, path: &str, mtime: SystemTime) -> RemoteResult<()> {
        self.count(Op::SetMtime);
        check_path(path)?;
        if !self.caps.lock().set_mtime {
            return Err(RemoteError::new(RemoteErrorKind::NotSupported, "no MFMT"));
        }
        let mut tree = self.tree.lock();
        let obj = tree.objects.get_mut(path).ok_or_else(|| not_found(path))?;
        obj.mtime = mtime;
        Ok(())
    }

    fn chmod(&self, path: &str, mode: u32) -> RemoteResult<()> {
        self.count(Op::Chmod);
        check_path(path)?;
        if !self.caps.lock().chmod {
            return Err(RemoteError::new(
                RemoteErrorKind::NotSupported,
                "no SITE CHMOD",
            ));
        }
        let mut tree = self.tree.lock();
        let obj = tree.objects.get_mut(path).ok_or_else(|| not_found(path))?;
        obj.mode = mode & 0o7777;
        Ok(())
    }

    fn capabilities(&self) -> RemoteCapabilities {
        *self.caps.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_appears_at_finish_and_reads_from_offset() {
        let r = MemoryRemote::new();
        r.mkdir("/d").unwrap();
        let mut w = r.open_write("/d/f", WriteMode::Truncate).unwrap();
        w.write_all(b"hello world").unwrap();
        assert!(!r.exists("/d/f"));
        w.finish().unwrap();
        let mut s = r.open_read("/d/f", 6).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert_eq!(out, "world");
        let mut w = r.open_write("/d/f", WriteMode::Append).unwrap();
        w.write_all(b"!").unwrap();
        w.finish().unwrap();
        assert_eq!(r.file("/d/f").unwrap(), b"hello world!");
        assert_eq!(r.list("/d").unwrap().len(), 1);
        assert_eq!(r.list_calls(), 1);
    }

    #[test]
    fn behaves_like_a_strict_server() {
        let r = MemoryRemote::new();
        r.put_file("/d/f", b"x");
        r.put_file("/g", b"y");
        assert_eq!(r.rmdir("/d").unwrap_err().kind, RemoteErrorKind::NotEmpty);
        assert_eq!(
            r.mkdir("/d").unwrap_err().kind,
            RemoteErrorKind::AlreadyExists
        );
        assert_eq!(
            r.rename("/g", "/d/f").unwrap_err().kind,
            RemoteErrorKind::AlreadyExists
        );
        r.rename("/d", "/e").unwrap();
        assert_eq!(r.file("/e/f").unwrap(), b"x");
        assert_eq!(
            r.delete("/nope").unwrap_err().kind,
            RemoteErrorKind::NotFound
        );
        assert_eq!(
            r.stat("/a\r\nDELE x").unwrap_err().kind,
            RemoteErrorKind::InvalidName
        );
    }
}
