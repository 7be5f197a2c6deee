//! What the filesystem needs from a server, as a trait, so the core never sees FTP.
//!
//! Paths are absolute within the mount ("/", "/a/b"); an implementation maps them onto the
//! server (e.g. under the URL's base path). Names never contain CR, LF or NUL: the
//! implementation refuses such paths with `RemoteErrorKind::InvalidName` before sending anything.

use std::fmt;
use std::io::{Read, Write};
use std::time::SystemTime;

pub use crate::ftp::listing::{Entry, EntryKind};

/// The class of a remote failure; the filesystem maps each class to one errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteErrorKind {
    /// The path does not exist (ENOENT).
    NotFound,
    /// The server refused (EACCES).
    PermissionDenied,
    /// Disk full or quota exceeded: 452/552 (ENOSPC).
    NoSpace,
    /// A name the server or we refuse: CR/LF/NUL, 553 (EINVAL).
    InvalidName,
    /// The server lacks the command (ENOSYS / EOPNOTSUPP).
    NotSupported,
    /// Temporary refusal after retries: 450/451, too many connections (EAGAIN or EIO).
    Transient,
    /// The target already exists (EEXIST).
    AlreadyExists,
    /// A directory that is not empty (ENOTEMPTY).
    NotEmpty,
    /// Connection lost, malformed reply, TLS failure (EIO).
    Io,
    /// The server did not answer within the timeout (EIO). Not retried: a stalled server
    /// would only make the caller wait another full timeout.
    TimedOut,
}

/// A failed remote operation: its class plus a human-readable message (never a password).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteError {
    pub kind: RemoteErrorKind,
    pub message: String,
}

impl RemoteError {
    /// Builds an error of `kind` with a message.
    pub fn new(kind: RemoteErrorKind, message: impl Into<String>) -> Self {
        RemoteError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for RemoteError {}

/// Result of a remote operation.
pub type RemoteResult<T> = Result<T, RemoteError>;

/// An open download. Reading returns the file's bytes from the offset it was opened at;
/// `Ok(0)` means end of file. A read error is an `io::Error` whose inner error may be a
/// `RemoteError` (use `RemoteError::from_io` to classify it).
pub trait ReadStream: Read + Send {
    /// Ends the transfer, possibly before end of file, leaving the connection usable.
    /// Dropping the stream does the same, ignoring errors.
    fn close(self: Box<Self>) -> RemoteResult<()>;

    /// Whether reading on to the end would not wait on the network: the rest of the data and
    /// the server's confirmation have arrived already. A guess that may say false wrongly.
    fn ends_without_waiting(&self) -> bool {
        true
    }
}

/// An open upload. Bytes written go to the server; `finish` waits for its verdict.
/// Dropping it without `finish` aborts the upload (the server may keep a partial file).
pub trait WriteStream: Write + Send {
    /// Completes the upload and returns the server's verdict (e.g. NoSpace on 552).
    fn finish(self: Box<Self>) -> RemoteResult<()>;
}

/// How an upload treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Replace the file's content (STOR).
    Truncate,
    /// Add to the end of the file (APPE).
    Append,
}

/// What the server can do beyond the basics, so the filesystem can choose a strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteCapabilities {
    /// Modification times can be set.
    pub set_mtime: bool,
    /// Permission bits can be set.
    pub chmod: bool,
    /// Uploads can append (APPE).
    pub append: bool,
}

/// The storage the filesystem is built on: a server reached over FTP, or memory in tests.
pub trait Remote: Send + Sync + 'static {
    /// Lists a directory's entries (without "." and "..").
    fn list(&self, dir: &str) -> RemoteResult<Vec<Entry>>;
    /// Describes one path; `NotFound` if it does not exist. The root "/" is a directory.
    fn stat(&self, path: &str) -> RemoteResult<Entry>;
    /// Starts a download of `path` from byte `offset`.
    fn open_read(&self, path: &str, offset: u64) -> RemoteResult<Box<dyn ReadStream>>;
    /// Like `open_read`, but only on a connection idle now, with another left idle for
    /// whoever comes next (no waiting, no new login); None otherwise.
    fn open_read_if_idle(
        &self,
        path: &str,
        offset: u64,
    ) -> RemoteResult<Option<Box<dyn ReadStream>>> {
        self.open_read(path, offset).map(Some)
    }
    /// Starts an upload to `path`, creating the file if needed.
    fn open_write(&self, path: &str, mode: WriteMode) -> RemoteResult<Box<dyn WriteStream>>;
    /// Removes a file.
    fn delete(&self, path: &str) -> RemoteResult<()>;
    /// Creates a directory.
    fn mkdir(&self, path: &str) -> RemoteResult<()>;
    /// Removes an empty directory.
    fn rmdir(&self, path: &str) -> RemoteResult<()>;
    /// Renames a file or directory; the target may not exist (callers remove it first if needed).
    fn rename(&self, from: &str, to: &str) -> RemoteResult<()>;
    /// Sets a path's modification time; `NotSupported` if the server cannot.
    fn set_mtime(&self, path: &str, mtime: SystemTime) -> RemoteResult<()>;
    /// Sets a path's permission bits; `NotSupported` if the server cannot.
    fn chmod(&self, path: &str, mode: u32) -> RemoteResult<()>;
    /// What this server supports.
    fn capabilities(&self) -> RemoteCapabilities;
}

impl RemoteError {
    /// Wraps this error in an `io::Error` so it can travel through `Read`/`Write`.
    pub fn into_io(self) -> std::io::Error {
        std::io::Error::other(self)
    }

    /// Recovers the `RemoteError` inside an `io::Error`, or classifies a plain one as `Io`.
    pub fn from_io(err: std::io::Error) -> RemoteError {
        if err.get_ref().is_some_and(|e| e.is::<RemoteError>()) {
            if let Some(inner) = err.into_inner()
                && let Ok(remote) = inner.downcast::<RemoteError>()
            {
                return *remote;
            }
            return RemoteError::new(RemoteErrorKind::Io, "I/O error");
        }
        RemoteError::new(RemoteErrorKind::Io, err.to_string())
    }
}

pub mod faulty;
pub mod ftp;
pub mod memory;
