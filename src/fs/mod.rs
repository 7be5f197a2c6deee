//! The filesystem core: plain methods returning Result, tested without FUSE.
