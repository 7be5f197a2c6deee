//! ftpfs: mount an FTP or FTPS server as a local directory through FUSE.

pub mod config;
pub mod credentials;
pub mod fs;
pub mod ftp;
pub mod fuse;
pub mod remote;
/// Test and benchmark support, not part of the filesystem: an FTP-aware TCP proxy with delay, bandwidth cap and fault injection.
pub mod testproxy;
