//! Open handles: file handles (each with its own reader) over per-inode shared write state,
//! and directory handles holding a listing snapshot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::inode::Ino;
use super::reader::Reader;
use super::writer::Content;
use crate::remote::Entry;

/// A file or directory handle number as the kernel sees it.
pub type Fh = u64;

/// State shared by every handle open on one inode: all writers see one content, so two
/// descriptors on a file never upload conflicting versions.
pub struct OpenFile {
    /// The inode this state belongs to.
    pub ino: Ino,
    /// The content and how it reaches the server. Held across remote calls (per file only).
    ///
    /// Lock order: a request that needs the content of several files locks them in inode
    /// order (`lock_in_order` in the parent module), and no content lock is taken while any
    /// other lock is held. Under it a request may take the inode table, the cache (with its
    /// per-directory lock across a LIST), the handle table, the `opened` map, `overlay` and the
    /// `pending_*` fields; those are never held while waiting for a content lock, or two
    /// requests could each hold what the other waits for.
    pub content: Mutex<Content>,
    /// Local (size, mtime) while changes are pending; read by getattr without waiting for
    /// `content`, which an upload may hold for long.
    pub overlay: Mutex<Option<(u64, SystemTime)>>,
    /// Bumped after each upload so readers drop streams of the old content.
    pub version: AtomicU64,
    /// An mtime set while changes were pending, applied after the upload (which would
    /// otherwise overwrite it), as `cp -p` does with futimens before close.
    pub pending_mtime: Mutex<Option<SystemTime>>,
    /// Permission bits set while changes were pending (the file may not exist on the server
    /// yet), applied after the upload.
    pub pending_mode: Mutex<Option<u32>>,
    users: AtomicU64,
    writers: AtomicU64,
}

impl OpenFile {
    /// Handles open for writing on this inode.
    pub fn writers(&self) -> u64 {
        self.writers.load(Ordering::SeqCst)
    }

    /// Recomputes `overlay` after `content` changed.
    pub fn refresh_overlay(&self, content: &Content) {
        let mut overlay = self.overlay.lock();
        *overlay = if content.is_dirty() {
            let mtime = self.pending_mtime.lock().unwrap_or_else(SystemTime::now);
            content.local_size().map(|size| (size, mtime))
        } else {
            None
        };
    }

    /// Handles (and temporary users such as truncate) currently holding this state.
    pub fn users(&self) -> u64 {
        self.users.load(Ordering::SeqCst)
    }
}

/// One open file descriptor's handle.
pub struct FileHandle {
    /// The inode opened.
    pub ino: Ino,
    /// open(2) flags.
    pub flags: i32,
    /// Shared state of the inode.
    pub file: Arc<OpenFile>,
    /// This handle's download stream, tagged with the content version it reads.
    pub reader: Mutex<Option<(u64, Reader)>>,
}

impl FileHandle {
    /// Whether the handle may write.
    pub fn writable(&self) -> bool {
        self.flags & libc::O_ACCMODE != libc::O_RDONLY
    }

    /// Whether the handle may read.
    pub fn readable(&self) -> bool {
        self.flags & libc::O_ACCMODE != libc::O_WRONLY
    }

    /// Whether writes go to the end of the file.
    pub fn append(&self) -> bool {
        self.flags & libc::O_APPEND != 0
    }
}

/// An open directory: a snapshot of its listing, so offsets stay stable while it is read.
pub struct DirHandle {
    /// The directory's inode.
    pub ino: Ino,
    /// The directory's path when opened.
    pub path: String,
    /// The inode of its parent (for "..").
    pub parent_ino: Ino,
    /// Children in listing order.
    pub entries: Vec<(String, Entry)>,
}

/// Every open handle, plus the shared per-inode state of open files.
#[derive(Default)]
pub struct Handles {
    next: AtomicU64,
    files: Mutex<HashMap<Fh, Arc<FileHandle>>>,
    dirs: Mutex<HashMap<Fh, Arc<DirHandle>>>,
    open: Mutex<HashMap<Ino, Arc<OpenFile>>>,
}

impl Handles {
    /// An empty table.
    pub fn new() -> Self {
        Handles {
            next: AtomicU64::new(1),
            ..Default::default()
        }
    }

    fn next_fh(&self) -> Fh {
        self.next.fetch_add(1, Ordering::SeqCst).max(1)
    }

    /// The shared state of `ino`, created (server content) if none; counts one user.
    pub fn acquire(&self, ino: Ino) -> Arc<OpenFile> {
        let mut open = self.open.lock();
        let of = open
            .entry(ino)
            .or_insert_with(|| {
                Arc::new(OpenFile {
                    ino,
                    content: Mutex::new(Content::Remote),
                    overlay: Mutex::new(None),
                    version: AtomicU64::new(0),
                    pending_mtime: Mutex::new(None),
                    pending_mode: Mutex::new(None),
                    users: AtomicU64::new(0),
                    writers: AtomicU64::new(0),
                })
            })
            .clone();
        of.users.fetch_add(1, Ordering::SeqCst);
        of
    }

    /// Drops one user of `of`; the state leaves the table with its last user.
    pub fn release(&self, of: &Arc<OpenFile>) {
        let mut open = self.open.lock();
        if of.users.fetch_sub(1, Ordering::SeqCst) == 1
            && open.get(&of.ino).is_some_and(|o| Arc::ptr_eq(o, of))
        {
            open.remove(&of.ino);
        }
    }

    /// The shared state of every open inode.
    pub fn open_files(&self) -> Vec<Arc<OpenFile>> {
        self.open.lock().values().cloned().collect()
    }

    /// The shared state of `ino` if it is open.
    pub fn find(&self, ino: Ino) -> Option<Arc<OpenFile>> {
        self.open.lock().get(&ino).cloned()
    }

    /// Registers a file handle.
    pub fn add_file(&self, ino: Ino, flags: i32, file: Arc<OpenFile>) -> Fh {
        let fh = self.next_fh();
        let handle = FileHandle {
            ino,
            flags,
            file,
            reader: Mutex::new(None),
        };
        if handle.writable() {
            handle.file.writers.fetch_add(1, Ordering::SeqCst);
        }
        self.files.lock().insert(fh, Arc::new(handle));
        fh
    }

    /// The file handle `fh`.
    pub fn file(&self, fh: Fh) -> Option<Arc<FileHandle>> {
        self.files.lock().get(&fh).cloned()
    }

    /// Removes and returns the file handle `fh`.
    pub fn remove_file(&self, fh: Fh) -> Option<Arc<FileHandle>> {
        let handle = self.files.lock().remove(&fh)?;
        if handle.writable() {
            handle.file.writers.fetch_sub(1, Ordering::SeqCst);
        }
        Some(handle)
    }

    /// Registers a directory handle.
    pub fn add_dir(&self, dir: DirHandle) -> Fh {
        let fh = self.next_fh();
        self.dirs.lock().insert(fh, Arc::new(dir));
        fh
    }

    /// The directory handle `fh`.
    pub fn dir(&self, fh: Fh) -> Option<Arc<DirHandle>> {
        self.dirs.lock().get(&fh).cloned()
    }

    /// Removes the directory handle `fh`.
    pub fn remove_dir(&self, fh: Fh) {
        self.dirs.lock().remove(&fh);
    }
}
