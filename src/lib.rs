//! ftpfs: mount an FTP or FTPS server as a local directory through FUSE.

pub mod config;
pub mod credentials;
pub mod fs;
pub mod ftp;
pub mod fuse;
pub mod remote;
