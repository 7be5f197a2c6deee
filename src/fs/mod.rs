//! The filesystem core: plain methods returning Result, tested without FUSE.
//!
//! `Filesystem` is what the FUSE adapter calls, one method per request, from many worker
//! threads at once. No global lock is held across a remote call: the inode table, the cache
//! and the handle table lock briefly; remote calls happen under per-file or per-directory
//! locks only, so a slow transfer never blocks lookups or other files.
//!
//! Notes for the adapter:
//! - Errors carry their errno (`FsError::errno`): reply with it as is.
//! - `lookup`, `create`, `mkdir` count one kernel lookup; `forget` undoes them.
//!   `readdirplus` counts one per entry the callback accepted (not "." and ".."), so pass
//!   it a closure that adds to fuser's `ReplyDirectoryPlus` and returns `add()`'s "full".
//!   Plain `readdir` counts nothing; it returns at most `READDIR_BATCH` entries per call,
//!   each with `offset = index + 1` (the kernel calls again with the last offset).
//! - Entry and attribute TTL for replies: `attr_ttl()`. `OpenReply::keep_cache` maps to
//!   FOPEN_KEEP_CACHE.
//! - Requesting FUSE_ATOMIC_O_TRUNC is worthwhile: O_TRUNC then reaches `open`, which turns
//!   `cp`/`>` onto an existing file into a single streaming upload instead of an empty
//!   upload (truncate) followed by the real one.
//! - `flush` is close(): it waits for the server and returns ENOSPC/EACCES/EIO; `release`
//!   uploads anything still pending (its error can only be logged).

pub mod bytes;
pub mod cache;
pub mod error;
pub mod handle;
pub mod inode;
pub mod reader;
pub mod siblings;
pub mod writer;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, warn};
use parking_lot::{Mutex, MutexGuard};

use crate::remote::{Entry, EntryKind, Remote, RemoteErrorKind};
pub use bytes::ReadData;
use cache::{ChangeHook, DirCache, Listing};
pub use error::{FsError, FsResult};
pub use handle::Fh;
use handle::{DirHandle, Handles, OpenFile};
use inode::InodeTable;
pub use inode::{Ino, ROOT_INO};
use reader::Reader;
use siblings::Siblings;
use writer::{Content, Ctx};

/// How many entries one `readdir` call returns at most (the kernel asks again for more).
pub const READDIR_BATCH: usize = 256;
/// Longest name a component may have, in bytes.
pub const NAME_MAX: usize = 255;
/// Longest wait for a file being fetched ahead, rather than fetching it a second time
/// (its download has the network timeouts of its own; this only bounds the worst case).
const FETCHED_AHEAD_WAIT: Duration = Duration::from_secs(60);

/// What kind of object an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
}

/// Attributes of an inode, as the kernel wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// File, directory or symlink.
    pub kind: FileKind,
    /// Size in bytes (local size while writes are pending).
    pub size: u64,
    /// Modification time (also reported as atime and ctime by the adapter).
    pub mtime: SystemTime,
    /// Permission bits (0o7777 mask), umask applied.
    pub perm: u16,
    /// Link count: 2 for directories, 1 otherwise.
    pub nlink: u32,
    /// Owner (the mount's uid option).
    pub uid: u32,
    /// Group (the mount's gid option).
    pub gid: u32,
}

/// Mount options the core needs.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// How long listings and attributes are trusted, here and by the kernel; zero = off.
    pub cache_timeout: Duration,
    /// How long a name missing from a listing is trusted to be absent.
    pub negative_timeout: Duration,
    /// Owner shown for every file.
    pub uid: u32,
    /// Group shown for every file.
    pub gid: u32,
    /// Bits removed from every mode shown.
    pub umask: u32,
    /// Refuse every mutation with EROFS.
    pub read_only: bool,
    /// Mode of directories whose listing gives none (before umask).
    pub dir_mode: u16,
    /// Mode of files whose listing gives none (before umask).
    pub file_mode: u16,
    /// Largest read-ahead window per reader, in bytes.
    pub read_ahead_max: usize,
    /// Byte budget of a streaming upload's queue.
    pub write_buffer: usize,
    /// Parallel downloads of small files fetched ahead of a program reading a directory's
    /// files in order (see `siblings`); 0 = off.
    pub fetch_ahead: usize,
}

impl Default for FsOptions {
    fn default() -> Self {
        // SAFETY: getuid/getgid cannot fail and touch no memory.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        FsOptions {
            cache_timeout: Duration::from_secs(5),
            negative_timeout: Duration::from_secs(1),
            uid,
            gid,
            umask: 0o022,
            read_only: false,
            dir_mode: 0o755,
            file_mode: 0o644,
            read_ahead_max: 8 << 20,
            write_buffer: 4 << 20,
            fetch_ahead: 0,
        }
    }
}

/// Reply to open/create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenReply {
    /// The new handle.
    pub fh: Fh,
    /// The kernel may keep its page cache (size and mtime unchanged since the last open).
    pub keep_cache: bool,
    /// Bypass the page cache (FOPEN_DIRECT_IO); always false for now.
    pub direct_io: bool,
}

/// One readdir entry (with full attributes, so readdirplus can use it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode number of the entry.
    pub ino: Ino,
    /// Its name ("." and ".." included).
    pub name: String,
    /// Its attributes.
    pub attr: Attr,
}

/// The changes of a setattr request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New size (truncate).
    pub size: Option<u64>,
    /// New modification time.
    pub mtime: Option<SystemTime>,
    /// New permission bits.
    pub mode: Option<u32>,
    /// The handle, for ftruncate/futimens (the change applies per inode either way).
    pub fh: Option<Fh>,
}

/// Reply to statfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statfs {
    /// Total blocks of `frsize` bytes.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Free blocks for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Preferred I/O size.
    pub bsize: u32,
    /// Longest name.
    pub namelen: u32,
    /// Fragment (block) size.
    pub frsize: u32,
}

/// The filesystem core over a `Remote`. Send + Sync; every method takes &self.
pub struct Filesystem {
    remote: Arc<dyn Remote>,
    opts: FsOptions,
    inodes: InodeTable,
    cache: DirCache,
    handles: Handles,
    /// (size, mtime) of each file when it was last opened, to decide keep_cache.
    opened: Mutex<HashMap<Ino, (u64, SystemTime)>>,
    siblings: Siblings,
    mount_time: SystemTime,
}

/// Checks a name from the kernel before it goes anywhere near the server.
fn check_name(name: &OsStr) -> FsResult<&str> {
    let name = name
        .to_str()
        .ok_or_else(|| FsError::invalid("name is not UTF-8"))?;
    if name.len() > NAME_MAX {
        return Err(FsError::new(libc::ENAMETOOLONG, "name too long"));
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0', '\r', '\n']) {
        return Err(FsError::invalid(format!("invalid name {name:?}")));
    }
    Ok(name)
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// (parent, name) of a path other than "/".
fn split(path: &str) -> (&str, &str) {
    match path.rfind('/') {
        Some(0) => ("/", &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => ("/", path),
    }
}

/// The errno flush/fsync/close report: programs understand these three.
fn close_error(e: FsError) -> FsError {
    match e.errno {
        libc::ENOSPC | libc::EACCES | libc::EIO => e,
        _ => FsError::io(e.message),
    }
}

/// Drops the pending changes of `of`, whose locked content is `content`; returns whether
/// there were any.
fn discard_pending(of: &OpenFile, content: &mut Content) -> bool {
    let pending = content.is_dirty();
    content.discard();
    *of.pending_mode.lock() = None;
    *of.pending_mtime.lock() = None;
    of.refresh_overlay(content);
    pending
}

/// Locks the content of each open file in `files` (any may be absent) in inode order, so two
/// requests that need several can never each hold one and wait for another. The guards come
/// back in the order of `files`.
fn lock_in_order<'a>(files: &[Option<&'a OpenFile>]) -> Vec<Option<MutexGuard<'a, Content>>> {
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| files[i].map(|of| of.ino));
    let mut guards: Vec<_> = files.iter().map(|_| None).collect();
    let mut last = None;
    for i in order {
        // One inode under two names cannot happen (no hard links), but must not deadlock.
        if let Some(of) = files[i]
            && last != Some(of.ino)
        {
            last = Some(of.ino);
            guards[i] = Some(of.content.lock());
        }
    }
    guards
}

impl Filesystem {
    /// A filesystem over `remote`.
    pub fn new(remote: Arc<dyn Remote>, opts: FsOptions) -> Self {
        let siblings = Siblings::new(remote.clone(), opts.fetch_ahead, opts.cache_timeout);
        let changes = siblings.clone();
        // What was fetched ahead from a directory we change is dropped.
        let hook = ChangeHook(Box::new(move |dir, tree| changes.changed(dir, tree)));
        Filesystem {
            siblings,
            remote,
            cache: DirCache::new(opts.cache_timeout).with_change_hook(hook),
            opts,
            inodes: InodeTable::new(),
            handles: Handles::new(),
            opened: Mutex::new(HashMap::new()),
            mount_time: SystemTime::now(),
        }
    }

    /// How long the kernel may cache attributes and entries (= cache_timeout).
    pub fn attr_ttl(&self) -> Duration {
        self.opts.cache_timeout
    }

    /// The inode table (for the adapter's diagnostics and tests).
    pub fn inodes(&self) -> &InodeTable {
        &self.inodes
    }

    fn check_writable(&self) -> FsResult<()> {
        if self.opts.read_only {
            Err(FsError::read_only())
        } else {
            Ok(())
        }
    }

    fn path_of(&self, ino: Ino) -> FsResult<String> {
        self.inodes
            .path(ino)
            .ok_or_else(|| FsError::not_found(format!("inode {ino} is not known")))
    }

    /// Runs `f` with a writer context for `of` at `path`; uploads update the cache.
    fn with_ctx<R>(&self, of: &OpenFile, path: Option<&str>, f: impl FnOnce(&Ctx<'_>) -> R) -> R {
        let hook = |size: u64| {
            if let Some(p) = path {
                self.uploaded(of, p, size);
            }
        };
        f(&Ctx {
            remote: &self.remote,
            path,
            write_buffer: self.opts.write_buffer,
            on_upload: &hook,
        })
    }

    /// Records a completed upload of `size` bytes to `path`.
    fn uploaded(&self, of: &OpenFile, path: &str, size: u64) {
        of.version.fetch_add(1, Ordering::SeqCst);
        self.opened.lock().remove(&of.ino);
        let (parent, name) = split(path);
        let mut entry = Entry {
            name: name.into(),
            kind: EntryKind::File,
            size,
            mtime: Some(SystemTime::now()),
            mode: None,
        };
        self.cache.update(parent, |l| {
            if let Some(old) = l.get(name) {
                entry.mode = old.mode;
            }
            l.insert(name.to_string(), entry);
        });
    }

    /// The listing of `dir`, from the cache if younger than `max_age`.
    fn listing(&self, dir: &str, max_age: Duration) -> FsResult<(Arc<Listing>, Instant)> {
        Ok(self.cache.listing(dir, max_age, || self.remote.list(dir))?)
    }

    /// What the server (as cached) says about `path`; ENOENT if absent.
    fn entry(&self, path: &str) -> FsResult<Entry> {
        if path == "/" {
            return Ok(Entry {
                name: "/".into(),
                kind: EntryKind::Dir,
                size: 0,
                mtime: Some(self.mount_time),
                mode: None,
            });
        }
        if self.opts.cache_timeout.is_zero() {
            return self.entry_uncached(path);
        }
        let (parent, name) = split(path);
        let started = Instant::now();
        let (listing, fetched) = self.listing(parent, self.opts.cache_timeout)?;
        if let Some(e) = listing.get(name) {
            return Ok(e.clone());
        }
        if let Some(e) = self.pending_entry(path) {
            return Ok(e);
        }
        // A cached absence is trusted only for the (shorter) negative timeout.
        if fetched < started && fetched.elapsed() >= self.opts.negative_timeout {
            let (listing, _) = self.listing(parent, self.opts.negative_timeout)?;
            if let Some(e) = listing.get(name) {
                return Ok(e.clone());
            }
        }
        Err(FsError::not_found(path))
    }

    /// `entry` with the cache off: one MLST for this path (where the server has it) instead
    /// of a listing of its parent, which would make `ls -l` of N files cost N listings of N
    /// entries.
    fn entry_uncached(&self, path: &str) -> FsResult<Entry> {
        match self.remote.stat(path) {
            Ok(e) => Ok(e),
            Err(e) if e.kind == RemoteErrorKind::NotFound => self
                .pending_entry(path)
                .ok_or_else(|| FsError::not_found(path)),
            Err(e) => Err(e.into()),
        }
    }

    /// What a cached listing says of `path`, without asking the server.
    fn cached_entry(&self, path: &str) -> Option<Entry> {
        let (parent, name) = split(path);
        let (listing, _) = self.cache.fresh(parent, self.opts.cache_timeout)?;
        listing.get(name).cloned()
    }

    /// A file created or written here whose content is not on the server yet (it may not
    /// exist there at all): described from local state.
    fn pending_entry(&self, path: &str) -> Option<Entry> {
        let of = self.open_file(path)?;
        let (size, mtime) = (*of.overlay.lock())?;
        Some(Entry {
            name: split(path).1.to_string(),
            kind: EntryKind::File,
            size,
            mtime: Some(mtime),
            mode: *of.pending_mode.lock(),
        })
    }

    /// Pending files (see `pending_entry`) directly in `dir` that `listing` lacks.
    fn pending_children(&self, dir: &str, listing: &Listing) -> Vec<(String, Entry)> {
        let mut out = Vec::new();
        for of in self.handles.open_files() {
            let Some(path) = self.inodes.path(of.ino) else {
                continue;
            };
            let (parent, name) = split(&path);
            if path == "/" || parent != dir || listing.contains_key(name) {
                continue;
            }
            if let Some(e) = self.pending_entry(&path) {
                out.push((name.to_string(), e));
            }
        }
        out
    }

    /// Attributes of `ino` from a listing entry, with pending local writes applied.
    fn attr(&self, ino: Ino, e: &Entry) -> Attr {
        let (kind, default_mode) = match e.kind {
            EntryKind::File => (FileKind::File, self.opts.file_mode),
            EntryKind::Dir => (FileKind::Dir, self.opts.dir_mode),
            EntryKind::Symlink { .. } => (FileKind::Symlink, 0o777),
        };
        let mut perm = e.mode.map_or(u32::from(default_mode), |m| m & 0o7777);
        if kind != FileKind::Symlink {
            perm &= !self.opts.umask;
            if self.opts.read_only {
                perm &= !0o222;
            }
        }
        let size = match &e.kind {
            EntryKind::Dir => 4096,
            EntryKind::Symlink { target: Some(t) } => t.len() as u64,
            _ => e.size,
        };
        let mut attr = Attr {
            ino,
            kind,
            size,
            mtime: e.mtime.unwrap_or(self.mount_time),
            perm: (perm & 0o7777) as u16,
            nlink: if kind == FileKind::Dir { 2 } else { 1 },
            uid: self.opts.uid,
            gid: self.opts.gid,
        };
        if kind == FileKind::File
            && let Some(of) = self.handles.find(ino)
            && let Some((size, mtime)) = *of.overlay.lock()
        {
            attr.size = size;
            attr.mtime = mtime;
        }
        attr
    }

    fn dir_attr(&self, ino: Ino) -> Attr {
        self.attr(
            ino,
            &Entry {
                name: ".".into(),
                kind: EntryKind::Dir,
                size: 0,
                mtime: Some(self.mount_time),
                mode: None,
            },
        )
    }

    /// Applies `f` to `path`'s entry in its parent's cached listing.
    fn update_entry(&self, path: &str, f: impl FnOnce(&mut Entry)) {
        let (parent, name) = split(path);
        self.cache.update(parent, |l| {
            if let Some(e) = l.get_mut(name) {
                f(e);
            }
        });
    }

    /// Adds (or replaces) `path`'s entry in its parent's cached listing.
    fn insert_entry(&self, path: &str, mut entry: Entry) {
        let (parent, name) = split(path);
        entry.name = name.to_string();
        self.cache.update(parent, |l| {
            l.insert(name.to_string(), entry);
        });
    }

    fn remove_entry(&self, path: &str) {
        let (parent, name) = split(path);
        self.cache.update(parent, |l| {
            l.remove(name);
        });
    }

    /// Looks `name` up in `parent`; counts one kernel lookup on success.
    pub fn lookup(&self, parent: Ino, name: &OsStr) -> FsResult<Attr> {
        let name = check_name(name)?;
        let path = join(&self.path_of(parent)?, name);
        let entry = self.entry(&path)?;
        let ino = self.inodes.lookup(&path);
        Ok(self.attr(ino, &entry))
    }

    /// The kernel forgets `nlookup` lookups of `ino`.
    pub fn forget(&self, ino: Ino, nlookup: u64) {
        if self.inodes.forget(ino, nlookup) {
            self.opened.lock().remove(&ino);
        }
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> FsResult<Attr> {
        let Some(path) = self.inodes.path(ino) else {
            // fstat() of a file unlinked while open: describe what the handles hold.
            let of = self
                .handles
                .find(ino)
                .ok_or_else(|| FsError::not_found(format!("inode {ino} is not known")))?;
            let size = (*of.overlay.lock()).map_or(0, |(size, _)| size);
            return Ok(self.attr(
                ino,
                &Entry {
                    name: String::new(),
                    kind: EntryKind::File,
                    size,
                    mtime: None,
                    mode: None,
                },
            ));
        };
        let entry = self.entry(&path)?;
        Ok(self.attr(ino, &entry))
    }

    /// Changes size (truncate), mode and/or mtime, in that order.
    pub fn setattr(&self, ino: Ino, changes: SetAttr) -> FsResult<Attr> {
        if changes.size.is_some() || changes.mode.is_some() || changes.mtime.is_some() {
            self.check_writable()?;
        }
        let path = self.path_of(ino)?;
        if let Some(size) = changes.size {
            self.truncate(ino, size)?;
        }
        if let Some(mode) = changes.mode
            && !self.defer_if_pending(ino, |of| *of.pending_mode.lock() = Some(mode & 0o7777))
        {
            match self.remote.chmod(&path, mode & 0o7777) {
                Ok(()) => {}
                Err(e) if e.kind == RemoteErrorKind::NotSupported => {
                    debug!("chmod {path}: not supported by the server; kept locally");
                }
                Err(e) => return Err(e.into()),
            }
            self.update_entry(&path, |e| e.mode = Some(mode & 0o7777));
        } else if let Some(mode) = changes.mode {
            self.update_entry(&path, |e| e.mode = Some(mode & 0o7777));
        }
        if let Some(mtime) = changes.mtime {
            self.set_mtime(ino, &path, mtime)?;
        }
        self.getattr(ino)
    }

    fn truncate(&self, ino: Ino, size: u64) -> FsResult<()> {
        let of = self.handles.acquire(ino);
        let result = (|| {
            let mut content = of.content.lock();
            // Read under the lock, like every path an upload may use (see `commit_locked`).
            let path = self.path_of(ino)?;
            self.with_ctx(&of, Some(&path), |ctx| content.truncate(ctx, size))?;
            of.refresh_overlay(&content);
            // With no handle open for writing (plain `truncate`, or another process while
            // this file is open read-only), upload now. Otherwise the writers' flush/release
            // uploads it together with their writes.
            if of.writers() == 0 {
                self.commit_locked(&of, &mut content)?;
            }
            Ok(())
        })();
        self.release_acquired(&of);
        result
    }

    /// Gives back a file acquired for the length of one request (truncate, unlink, rename).
    /// A RELEASE of its last handle that ran meanwhile counted this request as a user and
    /// left the upload to it: done here, as that RELEASE would have (its close() has
    /// returned, so a failure can only be logged).
    fn release_acquired(&self, of: &Arc<OpenFile>) {
        {
            let mut content = of.content.lock();
            if of.users() <= 1
                && content.is_dirty()
                && let Err(e) = self.commit_locked(of, &mut content)
            {
                warn!("upload of a closed file failed: {}", e.message);
            }
        }
        self.handles.release(of);
    }

    /// If `ino` has changes awaiting upload, records a metadata change with `f` to be
    /// applied after the upload (which would overwrite an mtime, and before which a new file
    /// does not exist on the server) and returns true.
    fn defer_if_pending(&self, ino: Ino, f: impl FnOnce(&OpenFile)) -> bool {
        let Some(of) = self.handles.find(ino) else {
            return false;
        };
        let content = of.content.lock();
        if !content.is_dirty() {
            return false;
        }
        f(&of);
        of.refresh_overlay(&content);
        true
    }

    fn set_mtime(&self, ino: Ino, path: &str, mtime: SystemTime) -> FsResult<()> {
        if self.defer_if_pending(ino, |of| *of.pending_mtime.lock() = Some(mtime)) {
            return Ok(());
        }
        match self.remote.set_mtime(path, mtime) {
            Ok(()) => {}
            Err(e) if e.kind == RemoteErrorKind::NotSupported => {
                debug!("set mtime of {path}: not supported by the server; kept locally");
            }
            Err(e) => return Err(e.into()),
        }
        self.update_entry(path, |e| e.mtime = Some(mtime));
        self.opened.lock().remove(&ino);
        Ok(())
    }

    /// Target of the symlink `ino`; EINVAL if not a symlink or the target is unknown.
    pub fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        let path = self.path_of(ino)?;
        match self.entry(&path)?.kind {
            EntryKind::Symlink { target: Some(t) } => Ok(t.into_bytes()),
            _ => Err(FsError::invalid(format!("{path}: no known symlink target"))),
        }
    }

    /// Creates a directory; counts one kernel lookup.
    pub fn mkdir(&self, parent: Ino, name: &OsStr, mode: u32) -> FsResult<Attr> {
        self.check_writable()?;
        let name = check_name(name)?;
        let path = join(&self.path_of(parent)?, name);
        self.remote.mkdir(&path)?;
        let perm = mode & 0o7777;
        let mut shown = None;
        if perm != u32::from(self.opts.dir_mode) && self.remote.capabilities().chmod {
            match self.remote.chmod(&path, perm) {
                Ok(()) => shown = Some(perm),
                Err(e) => debug!("chmod {path}: {e}"),
            }
        }
        let entry = Entry {
            name: name.into(),
            kind: EntryKind::Dir,
            size: 0,
            mtime: Some(SystemTime::now()),
            mode: shown,
        };
        self.insert_entry(&path, entry.clone());
        // A new directory is empty: no need to list it.
        self.cache.insert(&path, Listing::new());
        let ino = self.inodes.lookup(&path);
        Ok(self.attr(ino, &entry))
    }

    /// Aborts pending writes of the file at `path` (it is being removed or replaced);
    /// returns whether there were any (the file may then not exist on the server).
    fn discard_writes(&self, path: &str) -> bool {
        let Some(of) = self.open_file(path) else {
            return false;
        };
        let mut content = of.content.lock();
        discard_pending(&of, &mut content)
    }

    /// The shared state of the file at `path`, if it is open.
    fn open_file(&self, path: &str) -> Option<Arc<OpenFile>> {
        self.handles.find(self.inodes.find(path)?)
    }

    /// The file or directory at `path` is gone: forget it everywhere.
    fn forget_path(&self, path: &str) {
        if let Some(ino) = self.inodes.find(path) {
            self.opened.lock().remove(&ino);
        }
        self.remove_entry(path);
        self.cache.invalidate_tree(path);
        self.inodes.remove_path(path);
    }

    /// Removes a file.
    pub fn unlink(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let path = join(&self.path_of(parent)?, name);
        if let Ok(e) = self.entry(&path)
            && e.kind == EntryKind::Dir
        {
            return Err(FsError::new(libc::EISDIR, format!("{path} is a directory")));
        }
        // The file's content stays locked from dropping its pending writes until its name is
        // forgotten, so every upload (e.g. the FLUSH or RELEASE of a handle opened with O_TRUNC
        // meanwhile) either lands before the DELE or finds no path afterwards. Unlocked, one
        // could read the name before it was forgotten and store it after the DELE, bringing the
        // file back once unlink() had returned. Acquired rather than looked up, so that a
        // handle opened while the DELE runs shares, and waits for, this lock too.
        let of = self.handles.acquire(self.inodes.ino_of(&path));
        let result = {
            let mut content = of.content.lock();
            // A running upload is ended first (the server holds its bytes so far). Writes
            // kept locally are dropped only once the file is gone: a refused DELE (EACCES)
            // leaves the file, and them still to be uploaded.
            let mut pending = content.is_streaming() && discard_pending(&of, &mut content);
            match self.remote.delete(&path) {
                Ok(()) => {
                    discard_pending(&of, &mut content);
                    self.forget_path(&path);
                    Ok(())
                }
                Err(e) if e.kind == RemoteErrorKind::NotFound => {
                    pending |= discard_pending(&of, &mut content);
                    self.forget_path(&path);
                    // A file created here but never uploaded exists only locally.
                    if pending { Ok(()) } else { Err(e.into()) }
                }
                Err(e) => Err(e.into()),
            }
        };
        self.release_acquired(&of);
        result
    }

    /// Removes an empty directory (ENOTEMPTY otherwise).
    pub fn rmdir(&self, parent: Ino, name: &OsStr) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let path = join(&self.path_of(parent)?, name);
        let entry = self.entry(&path)?;
        if entry.kind != EntryKind::Dir {
            return Err(FsError::new(
                libc::ENOTDIR,
                format!("{path}: not a directory"),
            ));
        }
        let (listing, _) = self.listing(&path, self.opts.cache_timeout)?;
        if !listing.is_empty() || !self.pending_children(&path, &listing).is_empty() {
            return Err(FsError::new(libc::ENOTEMPTY, format!("{path}: not empty")));
        }
        self.remote.rmdir(&path)?;
        self.forget_path(&path);
        Ok(())
    }

    /// Renames, replacing an existing target like rename(2) (RENAME_NOREPLACE: EEXIST if
    /// the target exists; RENAME_EXCHANGE is not supported: EINVAL).
    pub fn rename(
        &self,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) -> FsResult<()> {
        self.check_writable()?;
        let name = check_name(name)?;
        let new_name = check_name(new_name)?;
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(FsError::invalid("unsupported rename flags"));
        }
        let from = join(&self.path_of(parent)?, name);
        let to = join(&self.path_of(new_parent)?, new_name);
        if from == to {
            return Ok(());
        }
        if to.starts_with(&format!("{from}/")) {
            return Err(FsError::invalid("cannot move a directory into itself"));
        }
        let src = self.entry(&from)?;
        let target = self.entry(&to).ok();
        if flags & libc::RENAME_NOREPLACE != 0 && target.is_some() {
            return Err(FsError::new(libc::EEXIST, format!("{to} exists")));
        }
        // The content of the file that moves, and of the one it replaces, stays locked from
        // here to the end: no upload can land in between (any handle may upload, even a
        // RELEASE the kernel sent long before), neither to a name that is changing hands nor
        // after `src` was taken. Such an upload used to leave `src` describing the content
        // before it, and fstat of the renamed file showed the old size (#5).
        // A directory moves the files open below it: theirs stay locked too, or an upload
        // could read a path under the old name and store it after the RNTO, into a directory
        // that is gone.
        // Acquired rather than looked up (as in unlink): a handle opened while the rename
        // runs shares these locks, so its upload waits and then finds the new name.
        let acquire = |path: &str| self.handles.acquire(self.inodes.ino_of(path));
        let moving = (src.kind != EntryKind::Dir).then(|| acquire(&from));
        let replaced = target
            .as_ref()
            .filter(|t| t.kind != EntryKind::Dir)
            .map(|_| acquire(&to));
        let result = self.rename_acquired(
            &from,
            &to,
            src,
            target,
            moving.as_deref(),
            replaced.as_deref(),
        );
        for of in moving.iter().chain(replaced.iter()) {
            self.release_acquired(of);
        }
        result
    }

    /// `rename` once the files that move and are replaced are acquired.
    fn rename_acquired(
        &self,
        from: &str,
        to: &str,
        mut src: Entry,
        target: Option<Entry>,
        moving: Option<&OpenFile>,
        replaced: Option<&OpenFile>,
    ) -> FsResult<()> {
        let below = if src.kind == EntryKind::Dir {
            self.open_below(from)
        } else {
            Vec::new()
        };
        let files: Vec<Option<&OpenFile>> = [moving, replaced]
            .into_iter()
            .chain(below.iter().map(|of| Some(&**of)))
            .collect();
        let mut locked = lock_in_order(&files).into_iter();
        let mut moving_content = locked.next().flatten();
        let mut replaced_content = locked.next().flatten();
        let mut below_content: Vec<_> = locked.collect();
        if self.commit_below(&below, &mut below_content)? {
            src = self.entry(from)?;
        }
        if let (Some(of), Some(content)) = (moving, moving_content.as_deref_mut()) {
            src = self.settle(of, content, from, src)?;
        }
        self.remote_rename(from, to, &src, target.as_ref())?;
        if let (Some(of), Some(content)) = (replaced, replaced_content.as_deref_mut()) {
            discard_pending(of, content);
        }
        if target.is_some() {
            self.forget_path(to);
        }
        self.remove_entry(from);
        self.insert_entry(to, src.clone());
        if src.kind == EntryKind::Dir {
            self.cache.invalidate_tree(from);
            self.cache.invalidate_tree(to);
        }
        self.inodes.rename(from, to);
        Ok(())
    }

    /// The open files below the directory `dir`.
    fn open_below(&self, dir: &str) -> Vec<Arc<OpenFile>> {
        let prefix = format!("{dir}/");
        self.handles
            .open_files()
            .into_iter()
            .filter(|of| {
                self.inodes
                    .path(of.ino)
                    .is_some_and(|p| p.starts_with(&prefix))
            })
            .collect()
    }

    /// Uploads pending content of the open files `below` a directory, whose locked contents
    /// are `contents` (in the same order), so renaming the directory moves complete files on
    /// every server; returns whether any had some.
    fn commit_below(
        &self,
        below: &[Arc<OpenFile>],
        contents: &mut [Option<MutexGuard<'_, Content>>],
    ) -> FsResult<bool> {
        let mut committed = false;
        for (of, content) in below.iter().zip(contents) {
            if let Some(content) = content
                && content.is_dirty()
            {
                self.commit_locked(of, content).map_err(close_error)?;
                committed = true;
            }
        }
        Ok(committed)
    }

    /// Makes the open file `of` at `path` whole on the server before it changes name (an
    /// upload in progress goes to the old name; a new file may not exist there yet) and
    /// returns its entry as it is now. `content` is its locked content.
    fn settle(
        &self,
        of: &OpenFile,
        content: &mut Content,
        path: &str,
        src: Entry,
    ) -> FsResult<Entry> {
        let uploads = of.version.load(Ordering::SeqCst);
        self.commit_locked(of, content).map_err(close_error)?;
        if of.version.load(Ordering::SeqCst) == uploads {
            // Nothing was pending now, but another handle's upload may have completed since
            // `src` was read; with the content locked the cache has it.
            return self.entry(path);
        }
        // Asked of the server itself: a listing fetched while the upload ran may still show
        // the old size.
        let mut fresh = self.remote.stat(path)?;
        fresh.name = src.name;
        self.update_entry(path, |e| *e = fresh.clone());
        Ok(fresh)
    }

    /// RNFR/RNTO; on a server that refuses to replace an existing target, removes it first.
    fn remote_rename(
        &self,
        from: &str,
        to: &str,
        src: &Entry,
        target: Option<&Entry>,
    ) -> FsResult<()> {
        match self.remote.rename(from, to) {
            Ok(()) => Ok(()),
            Err(e)
                if matches!(
                    e.kind,
                    RemoteErrorKind::AlreadyExists
                        | RemoteErrorKind::PermissionDenied
                        | RemoteErrorKind::InvalidName
                ) && target.is_some() =>
            {
                debug!("rename {from} -> {to}: {e}; replacing the target");
                self.remove_target(src, target.unwrap_or(src), to)?;
                Ok(self.remote.rename(from, to)?)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the existing `target` at `to` so `src` can take its name, with rename(2)'s
    /// type rules.
    fn remove_target(&self, src: &Entry, target: &Entry, to: &str) -> FsResult<()> {
        let src_dir = src.kind == EntryKind::Dir;
        let target_dir = target.kind == EntryKind::Dir;
        match (src_dir, target_dir) {
            (true, false) => Err(FsError::new(
                libc::ENOTDIR,
                format!("{to}: not a directory"),
            )),
            (false, true) => Err(FsError::new(libc::EISDIR, format!("{to}: is a directory"))),
            (true, true) => {
                let (listing, _) = self.listing(to, self.opts.cache_timeout)?;
                if !listing.is_empty() {
                    return Err(FsError::new(libc::ENOTEMPTY, format!("{to}: not empty")));
                }
                self.remote.rmdir(to)?;
                Ok(())
            }
            // The target's pending writes are dropped by the caller once the rename is done
            // (it holds their lock, so none can be uploaded meanwhile).
            (false, false) => Ok(self.remote.delete(to)?),
        }
    }

    /// Opens a file; `flags` are open(2) flags (O_ACCMODE, O_TRUNC, O_APPEND).
    pub fn open(&self, ino: Ino, flags: i32) -> FsResult<OpenReply> {
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
        if writes {
            self.check_writable()?;
        }
        let path = self.path_of(ino)?;
        let entry = self.entry(&path)?;
        if entry.kind == EntryKind::Dir {
            return Err(FsError::new(libc::EISDIR, format!("{path} is a directory")));
        }
        let attr = self.attr(ino, &entry);
        if !writes {
            let (dir, name) = split(&path);
            if let Some((listing, _)) = self.cache.fresh(dir, self.opts.cache_timeout) {
                self.siblings.opened(dir, name, &listing);
            }
        }
        let truncating = flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY;
        let keep_cache = {
            let mut opened = self.opened.lock();
            let now = (attr.size, attr.mtime);
            let same = opened.insert(ino, now) == Some(now);
            same && !truncating
        };
        let of = self.handles.acquire(ino);
        if truncating {
            let mut content = of.content.lock();
            if let Err(e) = self.with_ctx(&of, Some(&path), |ctx| content.truncate(ctx, 0)) {
                drop(content);
                self.handles.release(&of);
                return Err(e.into());
            }
            of.refresh_overlay(&content);
        }
        let fh = self.handles.add_file(ino, flags, of);
        Ok(OpenReply {
            fh,
            keep_cache,
            direct_io: false,
        })
    }

    /// Creates and opens a file; it exists on the server (empty) when this returns.
    /// Counts one kernel lookup.
    pub fn create(
        &self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> FsResult<(Attr, OpenReply)> {
        self.check_writable()?;
        let name = check_name(name)?;
        let path = join(&self.path_of(parent)?, name);
        if let Ok(existing) = self.entry(&path) {
            if flags & libc::O_EXCL != 0 {
                return Err(FsError::new(libc::EEXIST, format!("{path} exists")));
            }
            if existing.kind == EntryKind::Dir {
                return Err(FsError::new(libc::EISDIR, format!("{path} is a directory")));
            }
            // The kernel's negative entry was stale: open the existing file as open(2)
            // would without O_EXCL (truncating only with O_TRUNC).
            let ino = self.inodes.lookup(&path);
            return match self.open(ino, flags) {
                Ok(reply) => Ok((self.attr(ino, &existing), reply)),
                Err(e) => {
                    self.inodes.forget(ino, 1);
                    Err(e)
                }
            };
        }
        // The file is created lazily: its first upload (the streaming STOR of the first
        // write, or an empty STOR at flush/release when nothing was written) creates it, so
        // `cp` of many small files costs one data connection per file, not two. Until then
        // it is a pending file: listed, looked up and stat'ed from local state (see
        // `pending_entry`), and committed first by rename.
        self.discard_writes(&path);
        let perm = mode & 0o7777;
        let pending_mode = (perm != u32::from(self.opts.file_mode)
            && self.remote.capabilities().chmod)
            .then_some(perm);
        let entry = Entry {
            name: name.into(),
            kind: EntryKind::File,
            size: 0,
            mtime: Some(SystemTime::now()),
            mode: pending_mode,
        };
        self.insert_entry(&path, entry.clone());
        let ino = self.inodes.lookup(&path);
        self.opened.lock().remove(&ino);
        let of = self.handles.acquire(ino);
        {
            let mut content = of.content.lock();
            content.discard();
            *content = Content::Empty;
            *of.pending_mode.lock() = pending_mode;
            of.refresh_overlay(&content);
        }
        let fh = self.handles.add_file(ino, flags & !libc::O_TRUNC, of);
        let attr = self.attr(ino, &entry);
        Ok((
            attr,
            OpenReply {
                fh,
                keep_cache: false,
                direct_io: false,
            },
        ))
    }

    /// Reads `size` bytes at `offset` (fewer only at end of file).
    pub fn read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> FsResult<ReadData> {
        let h = self
            .handles
            .file(fh)
            .filter(|h| h.ino == ino && h.readable())
            .ok_or_else(|| FsError::bad_handle(fh))?;
        let path = {
            let mut content = h.file.content.lock();
            // Read under the lock, like every path an upload may use (see `commit_locked`).
            let path = self.inodes.path(ino);
            let local = self.with_ctx(&h.file, path.as_deref(), |ctx| {
                content.read(ctx, offset, size as usize)
            });
            h.file.refresh_overlay(&content);
            if let Some(data) = local? {
                return Ok(data.into());
            }
            path
        };
        let path = path.ok_or_else(|| FsError::not_found("file was removed"))?;
        let version = h.file.version.load(Ordering::SeqCst);
        let mut reader = h.reader.lock();
        let stale = reader
            .as_ref()
            .is_none_or(|(v, r)| *v != version || r.path() != path);
        // The first read of a small file that was not fetched ahead: how long it takes
        // tells whether fetching ahead is worth it.
        let mut timed_first_read = None;
        if stale {
            let listed = self.cached_entry(&path);
            let mut fresh = Reader::new(self.remote.clone(), path, self.opts.read_ahead_max);
            fresh.set_size_hint(listed.as_ref().map(|e| e.size));
            if let Some(e) = listed {
                match self
                    .siblings
                    .take(fresh.path(), e.size, e.mtime, FETCHED_AHEAD_WAIT)
                {
                    Some(content) => fresh.preload(content),
                    None if e.size <= siblings::MAX_FILE => timed_first_read = Some(Instant::now()),
                    None => {}
                }
            }
            *reader = Some((version, fresh));
        }
        let result = match reader.as_mut() {
            Some((_, r)) => r.read(offset, size as usize),
            None => Err(FsError::io("no reader")),
        };
        if let (Some(t), Ok(_)) = (timed_first_read, &result) {
            self.siblings.note_direct_read(t.elapsed());
        }
        result
    }

    /// Answers a read from data already downloaded, without blocking: None when that is not
    /// possible (pending local writes, nothing buffered yet, a lock held), and the caller
    /// then uses `read`. Never touches the network.
    pub fn try_read(&self, ino: Ino, fh: Fh, offset: u64, size: u32) -> Option<ReadData> {
        let h = self
            .handles
            .file(fh)
            .filter(|h| h.ino == ino && h.readable())?;
        if !matches!(*h.file.content.try_lock()?, Content::Remote) {
            return None;
        }
        let version = h.file.version.load(Ordering::SeqCst);
        let mut reader = h.reader.try_lock()?;
        match reader.as_mut() {
            Some((v, r)) if *v == version => r.try_read(offset, size as usize),
            _ => None,
        }
    }

    /// Takes a write that continues a running upload without blocking (the FUSE thread can
    /// answer it itself); gives the data back when it needs `write` (anything else, a full
    /// queue, a lock held, a read-only mount).
    pub fn try_write(&self, ino: Ino, fh: Fh, offset: u64, data: Vec<u8>) -> Result<u32, Vec<u8>> {
        let Ok(len) = u32::try_from(data.len()) else {
            return Err(data);
        };
        if self.opts.read_only {
            return Err(data);
        }
        let Some(h) = self
            .handles
            .file(fh)
            .filter(|h| h.ino == ino && h.writable())
        else {
            return Err(data);
        };
        let Some(mut content) = h.file.content.try_lock() else {
            return Err(data);
        };
        content.try_stream_write(offset, data, h.append())?;
        h.file.refresh_overlay(&content);
        Ok(len)
    }

    /// Writes `data` at `offset` (at the end for O_APPEND handles); returns bytes written.
    pub fn write(&self, ino: Ino, fh: Fh, offset: u64, data: &[u8]) -> FsResult<u32> {
        self.check_writable()?;
        let h = self
            .handles
            .file(fh)
            .filter(|h| h.ino == ino && h.writable())
            .ok_or_else(|| FsError::bad_handle(fh))?;
        let mut content = h.file.content.lock();
        // Read under the lock, like every path an upload may use (see `commit_locked`).
        let path = self.inodes.path(ino);
        // Only a file still on the server needs its size (to know whether streaming fits).
        let server_size = match (&*content, &path) {
            (Content::Remote, Some(p)) => self.entry(p).map(|e| e.size).unwrap_or(0),
            _ => 0,
        };
        let result = self.with_ctx(&h.file, path.as_deref(), |ctx| {
            content.write(ctx, offset, data, h.append(), server_size)
        });
        h.file.refresh_overlay(&content);
        if result.is_err()
            && !content.is_dirty()
            && let Some(p) = &path
        {
            self.cache.invalidate(split(p).0);
        }
        result?;
        u32::try_from(data.len()).map_err(|_| FsError::invalid("write too large"))
    }

    /// Uploads pending changes of `of` (the cache learns of it through `uploaded`) and
    /// applies an mtime set while they were pending.
    fn commit(&self, of: &OpenFile) -> FsResult<()> {
        let mut content = of.content.lock();
        self.commit_locked(of, &mut content)
    }

    /// `commit` with the content already locked by the caller. The path is read under that
    /// lock: rename changes it only while holding the lock, so an upload never goes to a name
    /// the file has just left.
    fn commit_locked(&self, of: &OpenFile, content: &mut Content) -> FsResult<()> {
        let path = self.inodes.path(of.ino);
        let result = self.with_ctx(of, path.as_deref(), |ctx| content.commit(ctx));
        of.refresh_overlay(content);
        let Some(path) = path else {
            return result.map(|_| ()).map_err(FsError::from);
        };
        match result {
            Ok(Some(_)) => {
                let mode = of.pending_mode.lock().take();
                if let Some(mode) = mode {
                    match self.remote.chmod(&path, mode) {
                        Ok(()) => {}
                        Err(e) if e.kind == RemoteErrorKind::NotSupported => {}
                        Err(e) => debug!("chmod {path} after upload: {e}"),
                    }
                    self.update_entry(&path, |e| e.mode = Some(mode));
                }
                let pending = of.pending_mtime.lock().take();
                if let Some(mtime) = pending {
                    match self.remote.set_mtime(&path, mtime) {
                        Ok(()) => {}
                        Err(e) if e.kind == RemoteErrorKind::NotSupported => {}
                        Err(e) => debug!("set mtime of {path} after upload: {e}"),
                    }
                    self.update_entry(&path, |e| e.mtime = Some(mtime));
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                // The remote file's state is unknown now (a partial file may be removed).
                self.cache.invalidate(split(&path).0);
                Err(e.into())
            }
        }
    }

    /// close() of one descriptor: uploads pending writes and returns the server's verdict.
    pub fn flush(&self, ino: Ino, fh: Fh) -> FsResult<()> {
        let h = self
            .handles
            .file(fh)
            .filter(|h| h.ino == ino)
            .ok_or_else(|| FsError::bad_handle(fh))?;
        if !h.writable() {
            return Ok(());
        }
        self.commit(&h.file).map_err(close_error)
    }

    /// fsync(): like flush, waits until the server has the data.
    pub fn fsync(&self, ino: Ino, fh: Fh) -> FsResult<()> {
        let h = self
            .handles
            .file(fh)
            .filter(|h| h.ino == ino)
            .ok_or_else(|| FsError::bad_handle(fh))?;
        self.commit(&h.file).map_err(close_error)
    }

    /// Last close of a handle: uploads anything still pending and frees the handle.
    pub fn release(&self, ino: Ino, fh: Fh) -> FsResult<()> {
        let h = self
            .handles
            .remove_file(fh)
            .ok_or_else(|| FsError::bad_handle(fh))?;
        if h.ino != ino {
            debug!("release of fh {fh}: inode {ino} != {}", h.ino);
        }
        // Dropping the reader ends its stream in the background.
        h.reader.lock().take();
        // Upload before leaving the table, so getattr keeps seeing the local size until
        // the server has it.
        // The kernel sends RELEASE after close() has returned, so another handle of the same
        // file (e.g. the program reopened it at once) may be writing right now: its changes
        // are its own to commit at its flush/release. Only the last user uploads here, and
        // that is decided under the content lock: counted before it, a RELEASE that ran late
        // could find a handle opened and written meanwhile and upload its writes behind its
        // back, e.g. while that handle's file was being renamed.
        let result = {
            let mut content = h.file.content.lock();
            if h.file.users() <= 1 && content.is_dirty() {
                self.commit_locked(&h.file, &mut content)
                    .map_err(close_error)
            } else {
                Ok(())
            }
        };
        self.handles.release(&h.file);
        result
    }

    /// Opens a directory: takes a snapshot of its listing for stable readdir offsets.
    pub fn opendir(&self, ino: Ino) -> FsResult<Fh> {
        let path = self.path_of(ino)?;
        if path != "/" {
            let e = self.entry(&path)?;
            if e.kind != EntryKind::Dir {
                return Err(FsError::new(
                    libc::ENOTDIR,
                    format!("{path}: not a directory"),
                ));
            }
        }
        let (listing, _) = self.listing(&path, self.opts.cache_timeout)?;
        let parent_ino = if path == "/" {
            ROOT_INO
        } else {
            self.inodes.ino_of(split(&path).0)
        };
        let mut entries: Vec<(String, Entry)> = listing
            .iter()
            .map(|(n, e)| (n.clone(), e.clone()))
            .collect();
        entries.extend(self.pending_children(&path, &listing));
        Ok(self.handles.add_dir(DirHandle {
            ino,
            path,
            parent_ino,
            entries,
        }))
    }

    fn dir_entry(&self, dir: &DirHandle, index: usize, count: bool) -> Option<DirEntry> {
        match index {
            0 => Some(DirEntry {
                ino: dir.ino,
                name: ".".into(),
                attr: self.dir_attr(dir.ino),
            }),
            1 => Some(DirEntry {
                ino: dir.parent_ino,
                name: "..".into(),
                attr: self.dir_attr(dir.parent_ino),
            }),
            i => {
                let (name, entry) = dir.entries.get(i - 2)?;
                let path = join(&dir.path, name);
                let ino = if count {
                    self.inodes.lookup(&path)
                } else {
                    self.inodes.ino_of(&path)
                };
                Some(DirEntry {
                    ino,
                    name: name.clone(),
                    attr: self.attr(ino, entry),
                })
            }
        }
    }

    /// Entries after `offset` ("." and ".." first; an entry's offset is its index + 1), at
    /// most `READDIR_BATCH` per call; empty at the end.
    pub fn readdir(&self, ino: Ino, fh: Fh, offset: u64) -> FsResult<Vec<DirEntry>> {
        let dir = self
            .handles
            .dir(fh)
            .filter(|d| d.ino == ino)
            .ok_or_else(|| FsError::bad_handle(fh))?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok((start..start.saturating_add(READDIR_BATCH))
            .map_while(|i| self.dir_entry(&dir, i, false))
            .collect())
    }

    /// readdirplus: calls `add(entry, next_offset)` for each entry after `offset` until it
    /// returns true (the kernel buffer is full). Every entry `add` accepted, other than "."
    /// and "..", counts one kernel lookup, as readdirplus requires; a refused one does not.
    pub fn readdirplus(
        &self,
        ino: Ino,
        fh: Fh,
        offset: u64,
        add: &mut dyn FnMut(&DirEntry, u64) -> bool,
    ) -> FsResult<()> {
        let dir = self
            .handles
            .dir(fh)
            .filter(|d| d.ino == ino)
            .ok_or_else(|| FsError::bad_handle(fh))?;
        let mut i = usize::try_from(offset).unwrap_or(usize::MAX);
        while let Some(entry) = self.dir_entry(&dir, i, i >= 2) {
            let full = add(&entry, i as u64 + 1);
            if full {
                if i >= 2 {
                    self.inodes.forget(entry.ino, 1);
                }
                break;
            }
            i += 1;
        }
        Ok(())
    }

    /// Frees a directory handle.
    pub fn releasedir(&self, _ino: Ino, fh: Fh) {
        self.handles.remove_dir(fh);
    }

    /// Filesystem statistics: FTP has no quota command, so fixed large numbers.
    pub fn statfs(&self) -> Statfs {
        Statfs {
            blocks: 1 << 40,
            bfree: 1 << 40,
            bavail: 1 << 40,
            files: 1 << 30,
            ffree: 1 << 30,
            bsize: 4096,
            namelen: NAME_MAX as u32,
            frsize: 4096,
        }
    }
}

#[cfg(test)]
mod tests;
