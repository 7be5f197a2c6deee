//! The FTP/FTPS protocol client: knows nothing of FUSE or of the filesystem above it.

pub mod control;
pub mod data;
pub mod error;
pub mod listing;
pub mod pool;
pub mod reply;
pub mod time;
pub mod tls;

pub use control::{ConnectOptions, Control, Features, Password, ServerQuirks, TlsMode, Transfer};
pub use error::{FtpError, FtpResult};
pub use listing::{Entry, EntryKind};
pub use pool::Pool;
