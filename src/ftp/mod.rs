//! The FTP/FTPS protocol client: knows nothing of FUSE or of the filesystem above it.

pub mod listing;

pub use listing::{Entry, EntryKind};
