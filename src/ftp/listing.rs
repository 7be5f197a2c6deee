//! Directory listings: MLSD/MLST facts (RFC 3659) and LIST output (Unix `ls -l`, DOS/IIS).

use std::time::SystemTime;

/// What kind of object a listing entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link; the target when the server told us.
    Symlink {
        target: Option<String>,
    },
}

/// One object as a server listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The last path component, never empty, never "." or "..", never containing '/'.
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes (0 when the server did not say).
    pub size: u64,
    /// Last modification time, when known.
    pub mtime: Option<SystemTime>,
    /// Unix permission bits (0o7777 mask) when known.
    pub mode: Option<u32>,
}
