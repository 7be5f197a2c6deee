//! Thin fuser adapter: hands each request to a worker, calls the core, replies or maps the error.
//!
//! Nothing but translation lives here: kernel types in, [`crate::fs::Filesystem`] calls, kernel
//! replies out. Every request that may touch the network runs on a worker thread (crossbeam
//! channel), so a slow download never blocks `ls` elsewhere; fuser replies are `Send` and are
//! answered from the worker. Only `forget`, `access` and the "not supported" answers run inline.

use std::ffi::{OsStr, OsString};
use std::io;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::SystemTime;

use crossbeam_channel::{Receiver, Sender};
use fuser::{
    AccessFlags, BackgroundSession, Config, Errno, FileAttr, FileHandle, FileType, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, MountOption, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyLock, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, SessionACL, TimeOrNow,
    WriteFlags,
};
use log::{debug, error, warn};

use crate::config::{KernelFlags, MountConfig};
use crate::fs::{Attr, FileKind, Filesystem, FsError, FsResult, OpenReply, SetAttr};

/// Worker threads that run the core's methods.
pub const DEFAULT_WORKERS: usize = 16;
/// fuser request-reading threads (each with its own cloned /dev/fuse fd).
pub const DEFAULT_FUSE_THREADS: usize = 2;
/// Largest write request we ask the kernel for.
const MAX_WRITE: u32 = 1 << 20;
/// Largest kernel read-ahead we ask for (the kernel caps it at the mount's read_ahead_kb,
/// 128 KiB unless `raise_readahead` could raise it).
const MAX_READAHEAD: u32 = 1 << 20;
/// `st_blksize` reported for every file: a hint for the I/O size programs use.
const BLOCK_SIZE: u32 = 128 * 1024;

/// Who may use the mount besides its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only the mounting user (FUSE's default).
    Owner,
    /// The owner and root (`allow_root`).
    OwnerAndRoot,
    /// Everyone (`allow_other`).
    Everyone,
}

/// How to mount: the kernel-facing part of the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSettings {
    /// Source name shown in /proc/mounts (never contains a password).
    pub fsname: String,
    /// Mount read-only.
    pub read_only: bool,
    /// Who may access the mount.
    pub access: Access,
    /// Let the kernel check permission bits.
    pub default_permissions: bool,
    /// noexec / noatime / sync / dirsync.
    pub flags: KernelFlags,
    /// Worker threads calling the core.
    pub workers: usize,
    /// fuser threads reading requests from the kernel.
    pub fuse_threads: usize,
}

impl MountSettings {
    /// The mount settings a configuration asks for.
    pub fn from_config(cfg: &MountConfig) -> MountSettings {
        MountSettings {
            fsname: cfg.fsname.clone(),
            read_only: cfg.read_only,
            access: if cfg.allow_other {
                Access::Everyone
            } else if cfg.allow_root {
                Access::OwnerAndRoot
            } else {
                Access::Owner
            },
            default_permissions: cfg.default_permissions,
            flags: cfg.flags,
            workers: DEFAULT_WORKERS,
            fuse_threads: DEFAULT_FUSE_THREADS,
        }
    }

    /// The fuser session configuration (mount options, ACL, threads).
    pub fn fuser_config(&self) -> Config {
        let mut opts = vec![
            MountOption::FSName(self.fsname.clone()),
            MountOption::Subtype("ftpfs".to_string()),
        ];
        if self.read_only {
            opts.push(MountOption::RO);
        }
        if self.default_permissions {
            opts.push(MountOption::DefaultPermissions);
        }
        if self.flags.noexec {
            opts.push(MountOption::NoExec);
        }
        if self.flags.noatime {
            opts.push(MountOption::NoAtime);
        }
        if self.flags.sync {
            opts.push(MountOption::Sync);
        }
        if self.flags.dirsync {
            opts.push(MountOption::DirSync);
        }
        let mut config = Config::default();
        config.mount_options = opts;
        config.acl = match self.access {
            Access::Owner => SessionACL::Owner,
            Access::OwnerAndRoot => SessionACL::RootAndOwner,
            Access::Everyone => SessionACL::All,
        };
        config.n_threads = Some(self.fuse_threads.max(1));
        config.clone_fd = self.fuse_threads > 1;
        config
    }
}

/// A live mount: the fuser session plus a flag telling whether the kernel side is gone.
#[derive(Debug)]
pub struct Mounted {
    /// The fuser session (use [`Mounted::join`] rather than its own `join`/drop).
    pub session: BackgroundSession,
    /// Set once the kernel has ended the session and only queued work is finishing.
    pub draining: Arc<AtomicBool>,
}

impl Mounted {
    /// Waits until the kernel ends the session (after an unmount) and queued requests have
    /// finished. Never unmounts anything itself: fuser 0.18's unmount-on-drop tests "still
    /// mounted" backwards (it takes POLLERR on /dev/fuse, i.e. a dead connection, for
    /// "mounted") and would then unmount whatever is mounted at the path by that time, e.g.
    /// another mount underneath ours.
    pub fn join(self) -> io::Result<()> {
        let session = std::mem::ManuallyDrop::new(self.session);
        // SAFETY: `session` is never dropped, so the JoinHandle is moved out exactly once;
        // the rest (its /dev/fuse handle) is leaked on purpose, the process is ending.
        let guard = unsafe { std::ptr::read(&session.guard) };
        guard
            .join()
            .map_err(|_| io::Error::other("the FUSE session thread panicked"))?
    }
}

/// Mounts `fs` at `mountpoint` and serves it on background threads. The mount is live when
/// this returns.
pub fn mount(
    fs: Arc<Filesystem>,
    mountpoint: &Path,
    settings: &MountSettings,
) -> io::Result<Mounted> {
    let draining = Arc::new(AtomicBool::new(false));
    let adapter = FtpFuse::new(fs, settings.workers, Arc::clone(&draining))?;
    let session = fuser::spawn_mount(adapter, mountpoint, &settings.fuser_config())?;
    Ok(Mounted { session, draining })
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of threads running jobs from a channel.
struct Workers {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl Workers {
    fn start(n: usize) -> io::Result<Workers> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let rx: Receiver<Job> = rx.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ftpfs-worker-{i}"))
                    .spawn(move || {
                        for job in rx.iter() {
                            // A panicking core method must not take the worker down; the
                            // dropped reply answers EIO to the kernel.
                            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                                error!("a filesystem operation panicked; replied EIO");
                            }
                        }
                    })?,
            );
        }
        Ok(Workers {
            tx: Some(tx),
            threads,
        })
    }

    fn submit(&self, job: Job) {
        match &self.tx {
            Some(tx) => {
                if let Err(e) = tx.send(job) {
                    // Only after shutdown; run it here so the request still gets an answer.
                    (e.into_inner())();
                }
            }
            None => job(),
        }
    }

    /// Lets queued jobs finish (uploads on release) and waits for the threads.
    fn shutdown(&mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The `fuser::Filesystem` that forwards every request to the core.
struct FtpFuse {
    fs: Arc<Filesystem>,
    workers: Workers,
    draining: Arc<AtomicBool>,
}

impl FtpFuse {
    fn new(fs: Arc<Filesystem>, workers: usize, draining: Arc<AtomicBool>) -> io::Result<FtpFuse> {
        Ok(FtpFuse {
            fs,
            workers: Workers::start(workers)?,
            draining,
        })
    }

    /// Runs `f` with the core on a worker thread.
    fn spawn(&self, f: impl FnOnce(&Filesystem) + Send + 'static) {
        let fs = Arc::clone(&self.fs);
        self.workers.submit(Box::new(move || f(&fs)));
    }
}

/// Raises the read-ahead of our mount (device `major:minor`) to MAX_READAHEAD. The kernel
/// caps a FUSE mount's read-ahead at its default 128 KiB whatever init asked for; with 1 MiB
/// a sequential read takes an eighth of the requests and copies. Only root may change it,
/// so failing is normal for user mounts.
pub fn raise_readahead(major: u32, minor: u32) {
    let path = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&path, (MAX_READAHEAD / 1024).to_string()) {
        Ok(()) => debug!("{path}: read-ahead set to {} KiB", MAX_READAHEAD / 1024),
        Err(e) => debug!("{path}: cannot raise read-ahead: {e}"),
    }
}

/// Answers a request whose only result is success or an errno.
fn answer_empty(reply: ReplyEmpty, op: &str, result: FsResult<()>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

fn errno(op: &str, e: &FsError) -> Errno {
    debug!("{op}: {e}");
    Errno::from_i32(e.errno)
}

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.size.div_ceil(512),
        atime: a.mtime,
        mtime: a.mtime,
        ctime: a.mtime,
        crtime: a.mtime,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

fn fopen_flags(o: &OpenReply) -> FopenFlags {
    let mut f = FopenFlags::empty();
    if o.keep_cache {
        f |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if o.direct_io {
        f |= FopenFlags::FOPEN_DIRECT_IO;
    }
    f
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::SpecificTime(t) => t,
        TimeOrNow::Now => SystemTime::now(),
    }
}

const GENERATION: Generation = Generation(0);

impl fuser::Filesystem for FtpFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(max) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(max);
        }
        if let Err(max) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(max);
        }
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
            // open() gets O_TRUNC itself (the core handles it) instead of a separate
            // setattr(size 0): one upload instead of two for `> file`.
            InitFlags::FUSE_ATOMIC_O_TRUNC,
        ] {
            if config.add_capabilities(cap).is_err() {
                debug!("kernel lacks capability {cap:?}");
            }
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn destroy(&mut self) {
        self.draining.store(true, Ordering::SeqCst);
        self.workers.shutdown();
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.to_os_string();
        self.spawn(move |fs| match fs.lookup(parent.0, &name) {
            Ok(a) => reply.entry(&fs.attr_ttl(), &file_attr(&a), GENERATION),
            Err(e) => reply.error(errno("lookup", &e)),
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    // batch_forget: fuser 0.18 does not export `ForgetOne`, so its default (calling
    // `forget` for each node) is used.

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(move |fs| match fs.getattr(ino.0) {
            Ok(a) => reply.attr(&fs.attr_ttl(), &file_attr(&a)),
            Err(e) => reply.error(errno("getattr", &e)),
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr {
            size,
            mtime: mtime.map(time),
            mode: mode.map(|m| m & 0o7777),
            fh: fh.map(|f| f.0),
        };
        self.spawn(move |fs| {
            // FTP has no owners: accept a chown only to the owner already shown.
            if uid.is_some() || gid.is_some() {
                match fs.getattr(ino.0) {
                    Ok(a) if uid.is_none_or(|u| u == a.uid) && gid.is_none_or(|g| g == a.gid) => {}
                    Ok(_) => return reply.error(Errno::EPERM),
                    Err(e) => return reply.error(errno("setattr", &e)),
                }
            }
            let result = if change.size.is_none() && change.mtime.is_none() && change.mode.is_none()
            {
                fs.getattr(ino.0)
            } else {
                fs.setattr(ino.0, change)
            };
            match result {
                Ok(a) => reply.attr(&fs.attr_ttl(), &file_attr(&a)),
                Err(e) => reply.error(errno("setattr", &e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.spawn(move |fs| match fs.readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno("readlink", &e)),
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(Errno::EPERM);
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let name = name.to_os_string();
        self.spawn(move |fs| match fs.mkdir(parent.0, &name, mode & !umask) {
            Ok(a) => reply.entry(&fs.attr_ttl(), &file_attr(&a), GENERATION),
            Err(e) => reply.error(errno("mkdir", &e)),
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_os_string();
        self.spawn(move |fs| answer_empty(reply, "unlink", fs.unlink(parent.0, &name)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let name = name.to_os_string();
        self.spawn(move |fs| answer_empty(reply, "rmdir", fs.rmdir(parent.0, &name)));
    }

    fn symlink(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        // FTP cannot create symbolic links.
        reply.error(Errno::EPERM);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let (name, newname): (OsString, OsString) = (name.into(), newname.into());
        self.spawn(move |fs| {
            let result = fs.rename(parent.0, &name, newparent.0, &newname, flags.bits());
            answer_empty(reply, "rename", result);
        });
    }

    fn link(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        // FTP has no hard links.
        reply.error(Errno::EPERM);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(move |fs| match fs.open(ino.0, flags.0) {
            Ok(o) => reply.opened(FileHandle(o.fh), fopen_flags(&o)),
            Err(e) => reply.error(errno("open", &e)),
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // Sequential reads are mostly already downloaded by the read-ahead: answer those
        // here, and hand only the ones that may wait to a worker.
        if let Some(data) = self.fs.try_read(ino.0, fh.0, offset, size) {
            reply.data(&data);
            return;
        }
        self.spawn(move |fs| match fs.read(ino.0, fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno("read", &e)),
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        // Writes that continue a streaming upload with room in its queue are taken here;
        // only those that may wait go to a worker.
        let data = match self.fs.try_write(ino.0, fh.0, offset, data.to_vec()) {
            Ok(written) => {
                reply.written(written);
                return;
            }
            Err(data) => data,
        };
        self.spawn(move |fs| match fs.write(ino.0, fh.0, offset, &data) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno("write", &e)),
        });
    }

    fn flush(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| answer_empty(reply, "flush", fs.flush(ino.0, fh.0)));
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| match fs.release(ino.0, fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => {
                // Nobody sees a release error (close() has returned): log it loudly.
                warn!("upload on close failed: {e}");
                reply.error(Errno::from_i32(e.errno));
            }
        });
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| answer_empty(reply, "fsync", fs.fsync(ino.0, fh.0)));
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(move |fs| match fs.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", &e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.spawn(move |fs| match fs.readdir(ino.0, fh.0, offset) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    let next = offset + i as u64 + 1;
                    if reply.add(INodeNo(e.ino), next, file_type(e.attr.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno("readdir", &e)),
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.spawn(move |fs| {
            let ttl = fs.attr_ttl();
            // The core counts a lookup for each entry the reply accepts (not "." and "..").
            let result = fs.readdirplus(ino.0, fh.0, offset, &mut |e, next| {
                reply.add(
                    INodeNo(e.ino),
                    next,
                    &e.name,
                    &ttl,
                    &file_attr(&e.attr),
                    GENERATION,
                )
            });
            match result {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno("readdirplus", &e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.spawn(move |fs| {
            fs.releasedir(ino.0, fh.0);
            reply.ok();
        });
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        // Directory changes are sent to the server as they happen.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The server decides; an operation it refuses fails with EACCES then.
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let name = name.to_os_string();
        self.spawn(
            move |fs| match fs.create(parent.0, &name, mode & !umask, flags) {
                Ok((a, o)) => reply.created(
                    &fs.attr_ttl(),
                    &file_attr(&a),
                    GENERATION,
                    FileHandle(o.fh),
                    fopen_flags(&o),
                ),
                Err(e) => reply.error(errno("create", &e)),
            },
        );
    }

    // The rest is not supported by FTP. Answer at once and quietly (fuser's defaults log a
    // warning per call); ENOSYS makes the kernel stop asking, or handle it locally (locks).

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: ReplyXattr) {
        reply.error(Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn getlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        reply: ReplyLock,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn setlk(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        _start: u64,
        _end: u64,
        _typ: i32,
        _pid: u32,
        _sleep: bool,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::EOPNOTSUPP);
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: fuser::ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        _fh_in: FileHandle,
        _offset_in: u64,
        _ino_out: INodeNo,
        _fh_out: FileHandle,
        _offset_out: u64,
        _len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        reply.error(Errno::ENOSYS);
    }

    /// No ioctl applies to FTP files. ENOTTY is what programs expect of an unsupported one
    /// (`cp` tries FICLONE on every copy and falls back to reading), and unlike fuser's
    /// default it logs no warning per file.
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: fuser::ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::time::Duration;

    fn cfg(opts: &[&str]) -> MountConfig {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        crate::config::parse("ftp://u@h/", Path::new("/mnt"), &opts).expect("config")
    }

    #[test]
    fn settings_from_config() {
        let s = MountSettings::from_config(&cfg(&["ro,allow_other,default_permissions,noexec"]));
        let c = s.fuser_config();
        assert!(c.mount_options.contains(&MountOption::RO));
        assert!(c.mount_options.contains(&MountOption::DefaultPermissions));
        assert!(c.mount_options.contains(&MountOption::NoExec));
        assert!(
            c.mount_options
                .contains(&MountOption::FSName("ftp://u@h/".into()))
        );
        assert!(
            c.mount_options
                .contains(&MountOption::Subtype("ftpfs".into()))
        );
        assert_eq!(c.acl, SessionACL::All);
        assert_eq!(c.n_threads, Some(DEFAULT_FUSE_THREADS));
        let c = MountSettings::from_config(&cfg(&["allow_root"])).fuser_config();
        assert_eq!(c.acl, SessionACL::RootAndOwner);
        assert!(!c.mount_options.contains(&MountOption::RO));
        let c = MountSettings::from_config(&cfg(&[])).fuser_config();
        assert_eq!(c.acl, SessionACL::Owner);
        assert_eq!(c.mount_options.len(), 2);
    }

    #[test]
    fn attr_translation() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let a = Attr {
            ino: 7,
            kind: FileKind::Symlink,
            size: 1025,
            mtime: t,
            perm: 0o644,
            nlink: 1,
            uid: 5,
            gid: 6,
        };
        let f = file_attr(&a);
        assert_eq!(f.ino, INodeNo(7));
        assert_eq!(f.kind, FileType::Symlink);
        assert_eq!(f.blocks, 3);
        assert_eq!((f.mtime, f.ctime, f.atime), (t, t, t));
        assert_eq!((f.perm, f.uid, f.gid, f.nlink), (0o644, 5, 6, 1));
        let o = OpenReply {
            fh: 1,
            keep_cache: true,
            direct_io: false,
        };
        assert_eq!(fopen_flags(&o), FopenFlags::FOPEN_KEEP_CACHE);
    }

    #[test]
    fn workers_run_jobs_and_drain_on_shutdown() {
        let mut w = Workers::start(3).expect("workers");
        let (tx, rx) = crossbeam_channel::unbounded();
        for i in 0..20 {
            let tx = tx.clone();
            w.submit(Box::new(move || {
                std::thread::sleep(Duration::from_millis(2));
                let _ = tx.send(i);
            }));
        }
        w.submit(Box::new(|| panic!("survives")));
        w.shutdown();
        drop(tx);
        let mut got: Vec<i32> = rx.iter().collect();
        got.sort();
        assert_eq!(got, (0..20).collect::<Vec<_>>());
        // After shutdown, jobs run inline.
        let (tx, rx) = crossbeam_channel::unbounded();
        w.submit(Box::new(move || {
            let _ = tx.send(1);
        }));
        assert_eq!(rx.try_recv(), Ok(1));
    }
}
