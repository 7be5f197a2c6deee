//! One error type for the filesystem core: an errno plus a message. Every remote failure is
//! mapped to an errno here, and only here (DESIGN §4).

use std::fmt;

use crate::remote::{RemoteError, RemoteErrorKind};

/// A failed filesystem operation: the errno the kernel gets, and a message for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsError {
    /// The errno replied to the kernel (a `libc::E*` constant).
    pub errno: i32,
    /// What went wrong, for logs; never shown to the kernel.
    pub message: String,
}

/// Result of a filesystem operation.
pub type FsResult<T> = Result<T, FsError>;

impl FsError {
    /// Builds an error from an errno and a message.
    pub fn new(errno: i32, message: impl Into<String>) -> Self {
        FsError {
            errno,
            message: message.into(),
        }
    }

    /// ENOENT: no such file or directory.
    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(libc::ENOENT, what)
    }

    /// EINVAL: an argument the kernel or the user gave is unusable.
    pub fn invalid(what: impl Into<String>) -> Self {
        Self::new(libc::EINVAL, what)
    }

    /// EIO: the remote failed in a way the caller cannot fix.
    pub fn io(what: impl Into<String>) -> Self {
        Self::new(libc::EIO, what)
    }

    /// EROFS: the mount is read-only.
    pub fn read_only() -> Self {
        Self::new(libc::EROFS, "read-only mount")
    }

    /// EBADF: the handle is unknown or not open for this access.
    pub fn bad_handle(fh: u64) -> Self {
        Self::new(libc::EBADF, format!("bad file handle {fh}"))
    }
}

/// The errno a remote error class becomes (DESIGN §4). Transient errors reach us only after
/// the remote layer has retried, so they are reported as EIO: programs rarely retry EAGAIN
/// on regular files and would treat it as a spurious failure anyway.
pub fn errno_for(kind: RemoteErrorKind) -> i32 {
    match kind {
        RemoteErrorKind::NotFound => libc::ENOENT,
        RemoteErrorKind::PermissionDenied => libc::EACCES,
        RemoteErrorKind::NoSpace => libc::ENOSPC,
        RemoteErrorKind::InvalidName => libc::EINVAL,
        RemoteErrorKind::NotSupported => libc::EOPNOTSUPP,
        RemoteErrorKind::Transient => libc::EIO,
        RemoteErrorKind::AlreadyExists => libc::EEXIST,
        RemoteErrorKind::NotEmpty => libc::ENOTEMPTY,
        RemoteErrorKind::Io | RemoteErrorKind::TimedOut => libc::EIO,
    }
}

impl From<RemoteError> for FsError {
    fn from(err: RemoteError) -> Self {
        FsError::new(errno_for(err.kind), err.to_string())
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "errno {}: {}", self.errno, self.message)
    }
}

impl std::error::Error for FsError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_kinds_map_to_errnos() {
        let e: FsError = RemoteError::new(RemoteErrorKind::NoSpace, "552").into();
        assert_eq!(e.errno, libc::ENOSPC);
        assert_eq!(errno_for(RemoteErrorKind::NotFound), libc::ENOENT);
        assert_eq!(errno_for(RemoteErrorKind::PermissionDenied), libc::EACCES);
        assert_eq!(errno_for(RemoteErrorKind::AlreadyExists), libc::EEXIST);
        assert_eq!(errno_for(RemoteErrorKind::NotEmpty), libc::ENOTEMPTY);
        assert_eq!(errno_for(RemoteErrorKind::Transient), libc::EIO);
    }
}
