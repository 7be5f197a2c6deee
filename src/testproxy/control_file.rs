//! Remote control for shell scripts: a file polled every 100 ms whose last word is
//! `stall`, `resume` or `drop`, acted on whenever the file changes.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use super::Shared;

/// How often the file is looked at.
const POLL: Duration = Duration::from_millis(100);

/// What identifies one version of the file: a rewrite with the same text still counts.
#[derive(PartialEq, Eq, Clone, Copy)]
struct Version {
    inode: u64,
    mtime_ns: i64,
    len: u64,
}

/// Poll `path` until the proxy shuts down.
pub fn watch(path: &Path, shared: &Shared) {
    let mut seen: Option<Version> = None;
    while !shared.is_shutting_down() {
        if let Ok(meta) = std::fs::metadata(path) {
            let v = Version {
                inode: meta.ino(),
                mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
                len: meta.len(),
            };
            if seen != Some(v) {
                seen = Some(v);
                if let Ok(text) = std::fs::read_to_string(path) {
                    apply(text.split_whitespace().last(), shared, path);
                }
            }
        }
        std::thread::sleep(POLL);
    }
}

fn apply(word: Option<&str>, shared: &Shared, path: &Path) {
    match word {
        Some("stall") => shared.set_stalled(true),
        Some("resume") => shared.set_stalled(false),
        Some("drop") => {
            let n = shared.drop_all();
            log::info!(
                "fault: dropped all {n} open connections ({})",
                path.display()
            );
        }
        None => {}
        Some(other) => log::warn!(
            "{}: unknown command `{other}` (stall, resume, drop)",
            path.display()
        ),
    }
}
