//! Behaviour of the filesystem core against the in-memory remote.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::*;
use crate::remote::faulty::FaultyRemote;
use crate::remote::memory::{MemoryRemote, Op};
use crate::remote::{RemoteCapabilities, WriteMode};

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn opts() -> FsOptions {
    FsOptions {
        cache_timeout: Duration::from_secs(60),
        negative_timeout: Duration::from_secs(30),
        uid: 1000,
        gid: 1000,
        ..FsOptions::default()
    }
}

fn setup() -> (MemoryRemote, Filesystem) {
    let m = MemoryRemote::new();
    let fs = Filesystem::new(Arc::new(m.clone()), opts());
    (m, fs)
}

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u8)
                .wrapping_mul(31)
                .wrapping_add(seed ^ (i >> 10) as u8)
        })
        .collect()
}

/// Reads a whole file through a fresh read-only handle.
pub(super) fn read_all(fs: &Filesystem, ino: Ino) -> Vec<u8> {
    let h = fs.open(ino, libc::O_RDONLY).unwrap();
    let mut out = Vec::new();
    loop {
        let chunk = fs.read(ino, h.fh, out.len() as u64, 65536).unwrap();
        let done = chunk.len() < 65536;
        out.extend_from_slice(&chunk);
        if done {
            break;
        }
    }
    fs.release(ino, h.fh).unwrap();
    out
}

fn readdir_names(fs: &Filesystem, ino: Ino) -> Vec<String> {
    let fh = fs.opendir(ino).unwrap();
    let mut names = Vec::new();
    let mut off = 0;
    loop {
        let batch = fs.readdir(ino, fh, off).unwrap();
        if batch.is_empty() {
            break;
        }
        off += batch.len() as u64;
        names.extend(batch.into_iter().map(|e| e.name));
    }
    fs.releasedir(ino, fh);
    names
}

#[test]
fn lookup_getattr_readdir() {
    let (m, fs) = setup();
    m.put_file("/dir/a.txt", b"hello");
    m.put_symlink("/dir/link", "a.txt");
    let root = fs.getattr(ROOT_INO).unwrap();
    assert_eq!(root.kind, FileKind::Dir);
    let dir = fs.lookup(ROOT_INO, n("dir")).unwrap();
    assert_eq!(dir.kind, FileKind::Dir);
    assert_eq!(dir.perm, 0o755);
    let a = fs.lookup(dir.ino, n("a.txt")).unwrap();
    assert_eq!(
        (a.kind, a.size, a.uid, a.perm),
        (FileKind::File, 5, 1000, 0o644)
    );
    assert_eq!(fs.getattr(a.ino).unwrap(), a);
    assert_eq!(fs.lookup(dir.ino, n("a.txt")).unwrap().ino, a.ino);
    let l = fs.lookup(dir.ino, n("link")).unwrap();
    assert_eq!(l.kind, FileKind::Symlink);
    assert_eq!(fs.readlink(l.ino).unwrap(), b"a.txt");
    assert_eq!(fs.readlink(a.ino).unwrap_err().errno, libc::EINVAL);
    assert_eq!(
        readdir_names(&fs, dir.ino),
        vec![".", "..", "a.txt", "link"]
    );
    assert_eq!(
        fs.lookup(dir.ino, n("nope")).unwrap_err().errno,
        libc::ENOENT
    );
    assert_eq!(read_all(&fs, a.ino), b"hello");
}

#[test]
fn one_list_per_directory() {
    let (m, fs) = setup();
    for i in 0..100 {
        m.put_file(&format!("/d/f{i}"), b"x");
    }
    let d = fs.lookup(ROOT_INO, n("d")).unwrap();
    m.reset_counters();
    for i in 0..100 {
        let a = fs.lookup(d.ino, n(&format!("f{i}"))).unwrap();
        fs.getattr(a.ino).unwrap();
    }
    assert_eq!(m.list_calls(), 1);
    assert_eq!(m.stat_calls(), 0);
    assert_eq!(readdir_names(&fs, d.ino).len(), 102);
    assert_eq!(m.total_calls(), 1);
}

#[test]
fn concurrent_lookups_share_one_list() {
    let (m, fs) = setup();
    for i in 0..50 {
        m.put_file(&format!("/d/f{i}"), b"x");
    }
    let fs = Arc::new(fs);
    let d = fs.lookup(ROOT_INO, n("d")).unwrap().ino;
    m.reset_counters();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let fs = fs.clone();
            std::thread::spawn(move || {
                for i in (t..50).step_by(8) {
                    fs.lookup(d, n(&format!("f{i}"))).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(m.list_calls(), 1);
}

#[test]
fn negative_entries_expire_sooner() {
    let m = MemoryRemote::new();
    let fs = Filesystem::new(
        Arc::new(m.clone()),
        FsOptions {
            negative_timeout: Duration::from_millis(500),
            ..opts()
        },
    );
    assert_eq!(fs.lookup(ROOT_INO, n("x")).unwrap_err().errno, libc::ENOENT);
    m.put_file("/x", b"1");
    assert_eq!(fs.lookup(ROOT_INO, n("x")).unwrap_err().errno, libc::ENOENT);
    assert_eq!(m.list_calls(), 1);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(fs.lookup(ROOT_INO, n("x")).unwrap().size, 1);
    assert_eq!(m.list_calls(), 2);
}

#[test]
fn zero_timeout_disables_cache() {
    let m = MemoryRemote::new();
    let fs = Filesystem::new(
        Arc::new(m.clone()),
        FsOptions {
            cache_timeout: Duration::ZERO,
            negative_timeout: Duration::ZERO,
            ..opts()
        },
    );
    m.put_file("/x", b"1");
    let x = fs.lookup(ROOT_INO, n("x")).unwrap();
    m.put_file("/x", b"123");
    assert_eq!(fs.getattr(x.ino).unwrap().size, 3);
    assert_eq!(fs.attr_ttl(), Duration::ZERO);

    // Each stat asks for that one file, not for a listing of the whole directory.
    for i in 0..50 {
        m.put_file(&format!("/f{i}"), b"x");
    }
    m.reset_counters();
    for i in 0..50 {
        let name = format!("f{i}");
        let f = fs.lookup(ROOT_INO, n(&name)).unwrap();
        assert_eq!(fs.getattr(f.ino).unwrap().size, 1);
    }
    assert_eq!(m.list_calls(), 0);
    assert_eq!(m.stat_calls(), 100);
    assert_eq!(
        fs.lookup(ROOT_INO, n("gone")).unwrap_err().errno,
        libc::ENOENT
    );
}

#[test]
fn create_write_flush_is_visible() {
    let (m, fs) = setup();
    let root_list = readdir_names(&fs, ROOT_INO);
    assert_eq!(root_list, vec![".", ".."]);
    let (attr, h) = fs
        .create(ROOT_INO, n("new"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    // Listed at once; created on the server by its first upload (no extra round trip).
    assert_eq!(readdir_names(&fs, ROOT_INO), vec![".", "..", "new"]);
    assert_eq!(m.total_calls(), 1);
    assert_eq!(fs.write(attr.ino, h.fh, 0, b"abc").unwrap(), 3);
    assert_eq!(fs.getattr(attr.ino).unwrap().size, 3);
    fs.flush(attr.ino, h.fh).unwrap();
    assert_eq!(m.file("/new").unwrap(), b"abc");
    fs.release(attr.ino, h.fh).unwrap();
    assert_eq!(fs.getattr(attr.ino).unwrap().size, 3);
    assert_eq!(read_all(&fs, attr.ino), b"abc");
}

#[test]
fn touch_creates_empty_file() {
    let (m, fs) = setup();
    let (attr, h) = fs
        .create(ROOT_INO, n("empty"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.flush(attr.ino, h.fh).unwrap();
    fs.release(attr.ino, h.fh).unwrap();
    assert_eq!(m.file("/empty").unwrap(), b"");
    assert_eq!(fs.lookup(ROOT_INO, n("empty")).unwrap().size, 0);
}

#[test]
fn sequential_write_streams_without_spool() {
    let (m, fs) = setup();
    let big = data(5 << 20, 1);
    let (attr, h) = fs
        .create(ROOT_INO, n("big"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    m.reset_counters();
    for (i, chunk) in big.chunks(128 * 1024).enumerate() {
        fs.write(attr.ino, h.fh, (i * 128 * 1024) as u64, chunk)
            .unwrap();
        let of = fs.handles.find(attr.ino).unwrap();
        assert!(of.content.lock().is_streaming());
    }
    // ls -l during cp shows the local size.
    assert_eq!(fs.getattr(attr.ino).unwrap().size, big.len() as u64);
    fs.flush(attr.ino, h.fh).unwrap();
    fs.release(attr.ino, h.fh).unwrap();
    assert_eq!(m.file("/big").unwrap(), big);
    assert_eq!(m.open_write_calls(), 1);
    assert_eq!(m.open_read_calls(), 0);
}

#[test]
fn o_trunc_on_existing_file_streams() {
    let (m, fs) = setup();
    m.put_file("/f", b"old content");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let h = fs.open(f.ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    assert_eq!(fs.getattr(f.ino).unwrap().size, 0);
    fs.write(f.ino, h.fh, 0, b"new").unwrap();
    fs.write(f.ino, h.fh, 3, b"er").unwrap();
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"newer");
    assert_eq!(m.open_read_calls(), 0);
    assert_eq!(m.open_write_calls(), 1);

    // O_TRUNC and nothing written: the file becomes empty.
    let h = fs.open(f.ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fs.flush(f.ino, h.fh).unwrap();
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"");
}

#[test]
fn random_writes_append_truncate_use_spool() {
    let (m, fs) = setup();
    m.put_file("/f", b"0123456789");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    // Write into an existing file without O_TRUNC: spool with its content.
    let h = fs.open(f.ino, libc::O_RDWR).unwrap();
    fs.write(f.ino, h.fh, 2, b"ab").unwrap();
    assert!(fs.handles.find(f.ino).unwrap().content.lock().is_spool());
    fs.write(f.ino, h.fh, 12, b"z").unwrap();
    assert_eq!(fs.read(f.ino, h.fh, 0, 100).unwrap(), b"01ab456789\0\0z");
    assert_eq!(fs.getattr(f.ino).unwrap().size, 13);
    fs.setattr(
        f.ino,
        SetAttr {
            size: Some(4),
            fh: Some(h.fh),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(m.file("/f").unwrap(), b"0123456789");
    fs.flush(f.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"01ab");
    // After a flush, the same handle can keep writing (a new upload cycle).
    fs.write(f.ino, h.fh, 4, b"cd").unwrap();
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"01abcd");

    // O_APPEND without APPE support: spool.
    m.set_capabilities(RemoteCapabilities::default());
    let h = fs.open(f.ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.write(f.ino, h.fh, 0, b"++").unwrap();
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"01abcd++");
}

#[test]
fn append_streams_with_appe() {
    let (m, fs) = setup();
    m.put_file("/log", b"line1\n");
    let f = fs.lookup(ROOT_INO, n("log")).unwrap();
    let h = fs.open(f.ino, libc::O_WRONLY | libc::O_APPEND).unwrap();
    fs.write(f.ino, h.fh, 6, b"line2\n").unwrap();
    assert_eq!(fs.getattr(f.ino).unwrap().size, 12);
    fs.write(f.ino, h.fh, 12, b"line3\n").unwrap();
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(m.file("/log").unwrap(), b"line1\nline2\nline3\n");
    assert_eq!(m.open_read_calls(), 0);
}

#[test]
fn stream_switches_to_spool_on_seek() {
    let (m, fs) = setup();
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_RDWR | libc::O_CREAT)
        .unwrap();
    fs.write(attr.ino, h.fh, 0, b"hello ").unwrap();
    fs.write(attr.ino, h.fh, 6, b"world").unwrap();
    // Going back (like a header rewrite) moves to the spool.
    fs.write(attr.ino, h.fh, 0, b"J").unwrap();
    assert_eq!(fs.read(attr.ino, h.fh, 0, 64).unwrap(), b"Jello world");
    fs.release(attr.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"Jello world");
}

#[test]
fn truncate_without_handle() {
    let (m, fs) = setup();
    m.put_file("/f", b"0123456789");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let a = fs
        .setattr(
            f.ino,
            SetAttr {
                size: Some(3),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 3);
    assert_eq!(m.file("/f").unwrap(), b"012");
    fs.setattr(
        f.ino,
        SetAttr {
            size: Some(5),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(m.file("/f").unwrap(), b"012\0\0");
    m.reset_counters();
    fs.setattr(
        f.ino,
        SetAttr {
            size: Some(0),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(m.file("/f").unwrap(), b"");
    assert_eq!(m.open_read_calls(), 0);
}

#[test]
fn close_reports_enospc_and_leaves_no_short_file() {
    let m = MemoryRemote::new();
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    f.finish_error(Some(RemoteErrorKind::NoSpace));
    fs.write(attr.ino, h.fh, 0, &data(100_000, 3)).unwrap();
    assert_eq!(fs.flush(attr.ino, h.fh).unwrap_err().errno, libc::ENOSPC);
    assert!(!m.exists("/f"));
    fs.release(attr.ino, h.fh).unwrap();

    // A spool upload failing: ENOSPC, then a retry at release succeeds.
    m.put_file("/g", b"abc");
    let g = fs.lookup(ROOT_INO, n("g")).unwrap();
    let h = fs.open(g.ino, libc::O_RDWR).unwrap();
    fs.write(g.ino, h.fh, 1, b"X").unwrap();
    assert_eq!(fs.flush(g.ino, h.fh).unwrap_err().errno, libc::ENOSPC);
    assert!(!m.exists("/g"));
    f.finish_error(None);
    fs.release(g.ino, h.fh).unwrap();
    assert_eq!(m.file("/g").unwrap(), b"aXc");
}

/// An upload breaks and the partial file cannot be deleted (a server that allows STOR but
/// not DELE): the writes that follow (write(2) retrying the rest after a short write) must
/// fail too, or close() would upload the partial prefix plus the rest, with a hole between.
#[test]
fn writes_after_a_broken_upload_fail_instead_of_leaving_a_hole() {
    let m = MemoryRemote::new();
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    f.break_writes_after(Some(10_000));
    f.fail_always(Op::Delete, RemoteErrorKind::PermissionDenied);
    let chunk = data(4096, 9);
    let mut offset = 0u64;
    let mut errors = 0;
    for _ in 0..64 {
        match fs.write(attr.ino, h.fh, offset, &chunk) {
            Ok(_) => offset += 4096,
            Err(_) => {
                errors += 1;
                offset += 4096; // a writer that skips what failed and goes on
            }
        }
    }
    f.break_writes_after(None);
    assert!(errors > 0, "the broken upload was never reported");
    let _ = fs.flush(attr.ino, h.fh);
    let _ = fs.release(attr.ino, h.fh);
    let left = m.file("/f").unwrap_or_default();
    assert!(
        left.len() < 64 * 4096,
        "a {}-byte file with a hole was uploaded after the upload broke",
        left.len()
    );
}

/// Found by the model workload under load: `425 PASV: Address already in use` refused a
/// spool upload before STOR, and ftpfs then deleted the file, which still held its previous
/// content. A failed start must leave the server's file alone (and keep the spool to retry).
#[test]
fn upload_refused_before_it_starts_keeps_the_old_file() {
    let m = MemoryRemote::new();
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    m.put_file("/g", b"old content");
    let g = fs.lookup(ROOT_INO, n("g")).unwrap();
    let h = fs.open(g.ino, libc::O_RDWR).unwrap();
    fs.write(g.ino, h.fh, 0, b"NEW").unwrap();
    f.fail_nth(Op::OpenWrite, 1, RemoteErrorKind::Io);
    assert_eq!(fs.flush(g.ino, h.fh).unwrap_err().errno, libc::EIO);
    assert_eq!(m.file("/g").unwrap(), b"old content");
    fs.release(g.ino, h.fh).unwrap();
    assert_eq!(m.file("/g").unwrap(), b"NEW content");
}

#[test]
fn broken_upload_is_eio_and_removed() {
    let m = MemoryRemote::new();
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    f.break_writes_after(Some(1000));
    let chunk = data(4096, 9);
    let mut failed = None;
    for i in 0..64u64 {
        if let Err(e) = fs.write(attr.ino, h.fh, i * 4096, &chunk) {
            failed = Some(e);
            break;
        }
    }
    let err = match failed {
        Some(e) => e,
        None => fs.flush(attr.ino, h.fh).unwrap_err(),
    };
    assert_eq!(err.errno, libc::EIO);
    let _ = fs.release(attr.ino, h.fh);
    assert!(!m.exists("/f"), "a short file was left behind");
}

#[test]
fn permission_denied_on_open_write_is_eacces() {
    let m = MemoryRemote::new();
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    f.fail_always(Op::OpenWrite, RemoteErrorKind::PermissionDenied);
    let (a, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    assert_eq!(
        fs.write(a.ino, h.fh, 0, b"x").unwrap_err().errno,
        libc::EACCES
    );
    assert_eq!(fs.flush(a.ino, h.fh).unwrap_err().errno, libc::EACCES);
    assert_eq!(fs.release(a.ino, h.fh).unwrap_err().errno, libc::EACCES);
    // Never created: gone from our view too.
    assert_eq!(readdir_names(&fs, ROOT_INO), vec![".", ".."]);
    assert_eq!(fs.lookup(ROOT_INO, n("f")).unwrap_err().errno, libc::ENOENT);
}

#[test]
fn reads_at_random_offsets() {
    let (m, fs) = setup();
    let d = data(2_000_000, 5);
    m.put_file("/f", &d);
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let h = fs.open(f.ino, libc::O_RDONLY).unwrap();
    let mut seed = 12345u64;
    for _ in 0..200 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let off = (seed >> 20) % 2_100_000;
        let len = ((seed >> 5) % 200_000) as u32;
        let got = fs.read(f.ino, h.fh, off, len).unwrap();
        let start = (off as usize).min(d.len());
        let end = (start + len as usize).min(d.len());
        assert_eq!(got, &d[start..end], "read {len} at {off}");
    }
    fs.release(f.ino, h.fh).unwrap();
}

#[test]
fn sequential_reads_reuse_one_stream_and_keep_cache() {
    let (m, fs) = setup();
    let d = data(3_000_000, 7);
    m.put_file("/f", &d);
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    m.reset_counters();
    let h = fs.open(f.ino, libc::O_RDONLY).unwrap();
    assert!(!h.keep_cache);
    let mut off = 0u64;
    let mut out = Vec::new();
    loop {
        let got = fs.read(f.ino, h.fh, off, 131072).unwrap();
        off += got.len() as u64;
        let done = got.len() < 131072;
        out.extend_from_slice(&got);
        if done {
            break;
        }
    }
    assert_eq!(out, d);
    assert_eq!(m.open_read_calls(), 1);
    fs.release(f.ino, h.fh).unwrap();
    // Unchanged since the last open: the kernel may keep its pages.
    let h = fs.open(f.ino, libc::O_RDONLY).unwrap();
    assert!(h.keep_cache);
    fs.release(f.ino, h.fh).unwrap();
    // After our own upload it may not.
    let h = fs.open(f.ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
    fs.write(f.ino, h.fh, 0, b"x").unwrap();
    fs.release(f.ino, h.fh).unwrap();
    let h = fs.open(f.ino, libc::O_RDONLY).unwrap();
    assert!(!h.keep_cache);
    assert_eq!(fs.read(f.ino, h.fh, 0, 10).unwrap(), b"x");
    fs.release(f.ino, h.fh).unwrap();
}

#[test]
fn read_survives_one_dropped_connection() {
    let m = MemoryRemote::new();
    let d = data(1_000_000, 2);
    m.put_file("/f", &d);
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    let a = fs.lookup(ROOT_INO, n("f")).unwrap();
    f.break_reads_after(300_000, 1);
    assert!(read_all(&fs, a.ino) == d);
    f.break_reads_after(10, 1000);
    let h = fs.open(a.ino, libc::O_RDONLY).unwrap();
    assert_eq!(fs.read(a.ino, h.fh, 0, 100).unwrap_err().errno, libc::EIO);
    fs.release(a.ino, h.fh).unwrap();
}

#[test]
fn rename_over_existing() {
    let (m, fs) = setup();
    m.put_file("/a", b"A");
    m.put_file("/b", b"B");
    m.mkdir_all("/d1");
    m.mkdir_all("/d2");
    m.put_file("/d1/x", b"X");
    let a = fs.lookup(ROOT_INO, n("a")).unwrap();
    let b = fs.lookup(ROOT_INO, n("b")).unwrap();
    assert_eq!(
        fs.rename(ROOT_INO, n("a"), ROOT_INO, n("b"), libc::RENAME_NOREPLACE)
            .unwrap_err()
            .errno,
        libc::EEXIST
    );
    assert_eq!(
        fs.rename(ROOT_INO, n("a"), ROOT_INO, n("b"), libc::RENAME_EXCHANGE)
            .unwrap_err()
            .errno,
        libc::EINVAL
    );
    fs.rename(ROOT_INO, n("a"), ROOT_INO, n("b"), 0).unwrap();
    assert_eq!(m.file("/b").unwrap(), b"A");
    assert!(!m.exists("/a"));
    assert_eq!(fs.getattr(a.ino).unwrap().size, 1);
    assert_eq!(fs.getattr(b.ino).unwrap_err().errno, libc::ENOENT);
    assert_eq!(fs.lookup(ROOT_INO, n("a")).unwrap_err().errno, libc::ENOENT);
    assert_eq!(fs.lookup(ROOT_INO, n("b")).unwrap().ino, a.ino);
    assert_eq!(read_all(&fs, a.ino), b"A");

    // Directories: onto an empty one works, with the subtree's inodes moved.
    let d1 = fs.lookup(ROOT_INO, n("d1")).unwrap();
    let x = fs.lookup(d1.ino, n("x")).unwrap();
    fs.rename(ROOT_INO, n("d1"), ROOT_INO, n("d2"), 0).unwrap();
    assert_eq!(m.file("/d2/x").unwrap(), b"X");
    assert_eq!(read_all(&fs, x.ino), b"X");
    let d2 = fs.lookup(ROOT_INO, n("d2")).unwrap();
    assert_eq!(readdir_names(&fs, d2.ino), vec![".", "..", "x"]);
    // A file onto a directory: EISDIR; a dir onto a non-empty dir: ENOTEMPTY.
    assert_eq!(
        fs.rename(ROOT_INO, n("b"), ROOT_INO, n("d2"), 0)
            .unwrap_err()
            .errno,
        libc::EISDIR
    );
    fs.mkdir(ROOT_INO, n("d3"), 0o755).unwrap();
    assert_eq!(
        fs.rename(ROOT_INO, n("d3"), ROOT_INO, n("d2"), 0)
            .unwrap_err()
            .errno,
        libc::ENOTEMPTY
    );
}

#[test]
fn rename_while_writing() {
    let (m, fs) = setup();
    let (attr, h) = fs
        .create(ROOT_INO, n("tmp"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.write(attr.ino, h.fh, 0, b"part1").unwrap();
    fs.rename(ROOT_INO, n("tmp"), ROOT_INO, n("final"), 0)
        .unwrap();
    fs.write(attr.ino, h.fh, 5, b"part2").unwrap();
    fs.release(attr.ino, h.fh).unwrap();
    assert_eq!(m.file("/final").unwrap(), b"part1part2");
    assert!(!m.exists("/tmp"));
}

/// Found by the model workload (tests/faults.rs): renaming a file whose handle holds
/// unuploaded writes showed the old size afterwards, so the kernel cut reads short.
#[test]
fn rename_with_pending_writes_keeps_the_new_size() {
    let (m, fs) = setup();
    m.put_file("/f", b"0123456789");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let h = fs.open(f.ino, libc::O_RDWR).unwrap();
    fs.write(f.ino, h.fh, 8, b"abcdefgh").unwrap();
    fs.rename(ROOT_INO, n("f"), ROOT_INO, n("g"), 0).unwrap();
    assert_eq!(fs.getattr(f.ino).unwrap().size, 16);
    assert_eq!(fs.lookup(ROOT_INO, n("g")).unwrap().size, 16);
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(fs.getattr(f.ino).unwrap().size, 16);
    assert_eq!(m.file("/g").unwrap(), b"01234567abcdefgh");
}

#[test]
fn mkdir_rmdir_unlink() {
    let (m, fs) = setup();
    let d = fs.mkdir(ROOT_INO, n("d"), 0o755).unwrap();
    assert_eq!(d.kind, FileKind::Dir);
    assert!(m.exists("/d"));
    m.reset_counters();
    // A new directory is known empty: no LIST needed.
    assert_eq!(fs.lookup(d.ino, n("x")).unwrap_err().errno, libc::ENOENT);
    assert_eq!(m.list_calls(), 0);
    assert_eq!(
        fs.mkdir(ROOT_INO, n("d"), 0o755).unwrap_err().errno,
        libc::EEXIST
    );
    let (f, h) = fs
        .create(d.ino, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.release(f.ino, h.fh).unwrap();
    assert_eq!(
        fs.rmdir(ROOT_INO, n("d")).unwrap_err().errno,
        libc::ENOTEMPTY
    );
    assert_eq!(fs.unlink(ROOT_INO, n("d")).unwrap_err().errno, libc::EISDIR);
    fs.unlink(d.ino, n("f")).unwrap();
    assert_eq!(fs.lookup(d.ino, n("f")).unwrap_err().errno, libc::ENOENT);
    fs.rmdir(ROOT_INO, n("d")).unwrap();
    assert!(!m.exists("/d"));
    assert_eq!(fs.lookup(ROOT_INO, n("d")).unwrap_err().errno, libc::ENOENT);
    assert_eq!(
        fs.unlink(ROOT_INO, n("zz")).unwrap_err().errno,
        libc::ENOENT
    );
}

#[test]
fn rmdir_nonempty_on_server_only() {
    let (m, fs) = setup();
    m.mkdir_all("/d");
    let d = fs.lookup(ROOT_INO, n("d")).unwrap();
    assert!(readdir_names(&fs, d.ino).len() == 2);
    // Another client adds a file after we cached the empty listing.
    m.put_file("/d/late", b"");
    assert_eq!(
        fs.rmdir(ROOT_INO, n("d")).unwrap_err().errno,
        libc::ENOTEMPTY
    );
}

#[test]
fn unlink_while_streaming_does_not_resurrect() {
    let (m, fs) = setup();
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.write(attr.ino, h.fh, 0, b"data").unwrap();
    fs.unlink(ROOT_INO, n("f")).unwrap();
    // fstat on the open descriptor still works.
    assert_eq!(fs.getattr(attr.ino).unwrap().kind, FileKind::File);
    let _ = fs.release(attr.ino, h.fh);
    assert!(!m.exists("/f"));
}

#[test]
fn bad_names_are_refused_before_the_remote() {
    let (m, fs) = setup();
    let before = m.total_calls();
    for bad in ["a\r\nDELE x", "a\nb", "a\rb", "a/b", "", ".", ".."] {
        assert_eq!(
            fs.lookup(ROOT_INO, n(bad)).unwrap_err().errno,
            libc::EINVAL,
            "{bad:?}"
        );
        assert_eq!(
            fs.create(ROOT_INO, n(bad), 0o644, libc::O_WRONLY)
                .unwrap_err()
                .errno,
            libc::EINVAL
        );
        assert_eq!(
            fs.mkdir(ROOT_INO, n(bad), 0o755).unwrap_err().errno,
            libc::EINVAL
        );
    }
    let long = "x".repeat(256);
    assert_eq!(
        fs.lookup(ROOT_INO, n(&long)).unwrap_err().errno,
        libc::ENAMETOOLONG
    );
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(
        fs.lookup(ROOT_INO, OsStr::from_bytes(b"\xff\xfe"))
            .unwrap_err()
            .errno,
        libc::EINVAL
    );
    assert_eq!(m.total_calls(), before);
    // Unicode and spaces are fine.
    let (a, h) = fs
        .create(ROOT_INO, n("héllo wörld 日本"), 0o644, libc::O_WRONLY)
        .unwrap();
    fs.release(a.ino, h.fh).unwrap();
    assert!(m.exists("/héllo wörld 日本"));
}

#[test]
fn read_only_mount_refuses_mutations() {
    let m = MemoryRemote::new();
    m.put_file("/f", b"x");
    let fs = Filesystem::new(
        Arc::new(m.clone()),
        FsOptions {
            read_only: true,
            ..opts()
        },
    );
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    assert_eq!(f.perm & 0o222, 0);
    let before = m.total_calls();
    let erofs = |r: FsResult<()>| assert_eq!(r.unwrap_err().errno, libc::EROFS);
    erofs(
        fs.create(ROOT_INO, n("g"), 0o644, libc::O_WRONLY)
            .map(|_| ()),
    );
    erofs(fs.mkdir(ROOT_INO, n("g"), 0o755).map(|_| ()));
    erofs(fs.unlink(ROOT_INO, n("f")));
    erofs(fs.rmdir(ROOT_INO, n("f")));
    erofs(fs.rename(ROOT_INO, n("f"), ROOT_INO, n("g"), 0));
    erofs(fs.open(f.ino, libc::O_WRONLY).map(|_| ()));
    erofs(fs.open(f.ino, libc::O_RDONLY | libc::O_TRUNC).map(|_| ()));
    erofs(
        fs.setattr(
            f.ino,
            SetAttr {
                size: Some(0),
                ..SetAttr::default()
            },
        )
        .map(|_| ()),
    );
    assert_eq!(m.total_calls(), before);
    assert_eq!(read_all(&fs, f.ino), b"x");
}

#[test]
fn setattr_mtime_and_mode() {
    let (m, fs) = setup();
    m.put_file("/f", b"x");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let a = fs
        .setattr(
            f.ino,
            SetAttr {
                mtime: Some(t),
                mode: Some(0o600),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((a.mtime, a.perm), (t, 0o600));
    assert_eq!(m.meta("/f").unwrap(), (t, 0o600));

    // A server without MFMT/SITE CHMOD: kept locally, no error.
    m.set_capabilities(RemoteCapabilities::default());
    let t2 = t + Duration::from_secs(60);
    let a = fs
        .setattr(
            f.ino,
            SetAttr {
                mtime: Some(t2),
                mode: Some(0o640),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((a.mtime, a.perm), (t2, 0o640));
}

#[test]
fn mtime_set_before_close_survives_upload() {
    let (m, fs) = setup();
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.write(attr.ino, h.fh, 0, b"abc").unwrap();
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    let a = fs
        .setattr(
            attr.ino,
            SetAttr {
                mtime: Some(t),
                fh: Some(h.fh),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((a.size, a.mtime), (3, t));
    fs.release(attr.ino, h.fh).unwrap();
    assert_eq!(m.meta("/f").unwrap().0, t);
    assert_eq!(fs.getattr(attr.ino).unwrap().mtime, t);
}

#[test]
fn readdirplus_counts_accepted_entries() {
    let (m, fs) = setup();
    for name in ["a", "b", "c"] {
        m.put_file(&format!("/{name}"), b"");
    }
    let fh = fs.opendir(ROOT_INO).unwrap();
    let mut seen = Vec::new();
    // Buffer "full" after 4 entries (., .., a, b).
    fs.readdirplus(ROOT_INO, fh, 0, &mut |e, off| {
        if seen.len() == 4 {
            return true;
        }
        seen.push((e.name.clone(), e.ino, off));
        false
    })
    .unwrap();
    assert_eq!(seen.len(), 4);
    let a = seen[2].1;
    assert_eq!(fs.inodes().lookup_count(a), 1);
    // The refused entry holds no lookup (its inode may even be gone already).
    assert_eq!(
        fs.inodes()
            .find("/c")
            .map_or(0, |c| fs.inodes().lookup_count(c)),
        0
    );
    let mut rest = Vec::new();
    fs.readdirplus(ROOT_INO, fh, seen[3].2, &mut |e, _| {
        rest.push(e.name.clone());
        false
    })
    .unwrap();
    assert_eq!(rest, vec!["c"]);
    let c = fs.inodes().find("/c").unwrap();
    assert_eq!(fs.inodes().lookup_count(c), 1);
    fs.releasedir(ROOT_INO, fh);
    fs.forget(a, 1);
    assert_eq!(fs.inodes().path(a), None);
}

#[test]
fn two_handles_share_content() {
    let (m, fs) = setup();
    m.put_file("/f", b"hello");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let w = fs.open(f.ino, libc::O_WRONLY).unwrap();
    let r = fs.open(f.ino, libc::O_RDONLY).unwrap();
    fs.write(f.ino, w.fh, 0, b"J").unwrap();
    assert_eq!(fs.read(f.ino, r.fh, 0, 10).unwrap(), b"Jello");
    fs.flush(f.ino, r.fh).unwrap();
    fs.release(f.ino, r.fh).unwrap();
    fs.release(f.ino, w.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"Jello");
    assert_eq!(fs.read(f.ino, 9999, 0, 1).unwrap_err().errno, libc::EBADF);
}

#[test]
fn create_on_existing_file_opens_it() {
    let (m, fs) = setup();
    let _ = fs.lookup(ROOT_INO, n("f"));
    m.put_file("/f", b"keep me");
    // Our cached listing says "absent" but the server has it now... after the negative
    // timeout; simulate the kernel calling create with a fresh listing.
    let fs2 = Filesystem::new(Arc::new(m.clone()), opts());
    let (a, h) = fs2
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    assert_eq!(a.size, 7);
    fs2.release(a.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"keep me");
    assert_eq!(
        fs2.create(
            ROOT_INO,
            n("f"),
            0o644,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL
        )
        .unwrap_err()
        .errno,
        libc::EEXIST
    );
    let (a, h) = fs2
        .create(
            ROOT_INO,
            n("f"),
            0o644,
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
        )
        .unwrap();
    fs2.release(a.ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"");
    drop(fs);
}

#[test]
fn truncate_by_another_process_while_open_read_only() {
    let (m, fs) = setup();
    m.put_file("/f", b"0123456789");
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let r = fs.open(f.ino, libc::O_RDONLY).unwrap();
    fs.setattr(
        f.ino,
        SetAttr {
            size: Some(4),
            ..SetAttr::default()
        },
    )
    .unwrap();
    assert_eq!(m.file("/f").unwrap(), b"0123");
    assert_eq!(fs.read(f.ino, r.fh, 0, 100).unwrap(), b"0123");
    fs.release(f.ino, r.fh).unwrap();
}

#[test]
fn enospc_during_stream_is_reported() {
    let m = MemoryRemote::new();
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    let (attr, h) = fs
        .create(ROOT_INO, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    f.break_writes_after(Some(10_000));
    f.finish_error(Some(RemoteErrorKind::NoSpace));
    let chunk = data(4096, 1);
    let mut err = None;
    for i in 0..100u64 {
        if let Err(e) = fs.write(attr.ino, h.fh, i * 4096, &chunk) {
            err = Some(e);
            break;
        }
    }
    let err = err.unwrap_or_else(|| fs.flush(attr.ino, h.fh).unwrap_err());
    assert_eq!(err.errno, libc::ENOSPC);
    let _ = fs.release(attr.ino, h.fh);
    assert!(!m.exists("/f"));
}

#[test]
fn rename_dir_while_a_file_inside_streams() {
    let (m, fs) = setup();
    let d = fs.mkdir(ROOT_INO, n("d"), 0o755).unwrap();
    let (a, h) = fs
        .create(d.ino, n("f"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.write(a.ino, h.fh, 0, b"first ").unwrap();
    fs.rename(ROOT_INO, n("d"), ROOT_INO, n("e"), 0).unwrap();
    fs.write(a.ino, h.fh, 6, b"second").unwrap();
    fs.release(a.ino, h.fh).unwrap();
    assert_eq!(m.file("/e/f").unwrap(), b"first second");
    assert!(!m.exists("/d"));
}

#[test]
fn growing_a_stream_with_ftruncate_keeps_streaming() {
    let (m, fs) = setup();
    let (a, h) = fs
        .create(ROOT_INO, n("sparse"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.write(a.ino, h.fh, 0, b"head").unwrap();
    let attr = fs
        .setattr(
            a.ino,
            SetAttr {
                size: Some(3_000_000),
                fh: Some(h.fh),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(attr.size, 3_000_000);
    assert!(
        fs.handles
            .find(a.ino)
            .unwrap()
            .content
            .lock()
            .is_streaming()
    );
    fs.release(a.ino, h.fh).unwrap();
    let got = m.file("/sparse").unwrap();
    assert_eq!(got.len(), 3_000_000);
    assert_eq!(&got[..4], b"head");
    assert!(got[4..].iter().all(|&b| b == 0));
    assert_eq!(m.open_read_calls(), 0);
}

#[test]
fn large_sequential_read_is_fast_enough() {
    // Guards against accidental quadratic copying in the read-ahead buffer.
    let (m, fs) = setup();
    let d = data(64 << 20, 4);
    m.put_file("/big", &d);
    let f = fs.lookup(ROOT_INO, n("big")).unwrap();
    let h = fs.open(f.ino, libc::O_RDONLY).unwrap();
    let started = std::time::Instant::now();
    let mut off = 0u64;
    let mut same = true;
    loop {
        let got = fs.read(f.ino, h.fh, off, 1 << 20).unwrap();
        same &= got == d[off as usize..off as usize + got.len()];
        off += got.len() as u64;
        if got.len() < 1 << 20 {
            break;
        }
    }
    assert!(same);
    assert_eq!(off, d.len() as u64);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    eprintln!("64 MiB read in {:?}", started.elapsed());
    fs.release(f.ino, h.fh).unwrap();
}

#[test]
fn pending_new_file_behaves_like_a_file() {
    // Caching off: everything must come from the server or from local pending state.
    let m = MemoryRemote::new();
    let fs = Filesystem::new(
        Arc::new(m.clone()),
        FsOptions {
            cache_timeout: Duration::ZERO,
            negative_timeout: Duration::ZERO,
            ..opts()
        },
    );
    let d = fs.mkdir(ROOT_INO, n("d"), 0o755).unwrap();
    let (a, h) = fs
        .create(d.ino, n("new"), 0o600, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    assert!(!m.exists("/d/new"));
    assert_eq!(a.perm, 0o600);
    assert_eq!(fs.lookup(d.ino, n("new")).unwrap().ino, a.ino);
    assert_eq!(fs.getattr(a.ino).unwrap().size, 0);
    assert_eq!(readdir_names(&fs, d.ino), vec![".", "..", "new"]);
    assert_eq!(
        fs.rmdir(ROOT_INO, n("d")).unwrap_err().errno,
        libc::ENOTEMPTY
    );
    // tar: fchmod and futimens before close, on a file not yet on the server.
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_234_567_890);
    let attr = fs
        .setattr(
            a.ino,
            SetAttr {
                mode: Some(0o640),
                mtime: Some(t),
                fh: Some(h.fh),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((attr.perm, attr.mtime), (0o640, t));
    fs.release(a.ino, h.fh).unwrap();
    assert_eq!(m.file("/d/new").unwrap(), b"");
    assert_eq!(m.meta("/d/new").unwrap(), (t, 0o640));

    // Renaming or unlinking a file that exists only locally.
    let (b, h) = fs
        .create(d.ino, n("b"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.rename(d.ino, n("b"), d.ino, n("c"), 0).unwrap();
    assert_eq!(m.file("/d/c").unwrap(), b"");
    fs.write(b.ino, h.fh, 0, b"data").unwrap();
    fs.release(b.ino, h.fh).unwrap();
    assert_eq!(m.file("/d/c").unwrap(), b"data");
    let (e, h) = fs
        .create(d.ino, n("e"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.unlink(d.ino, n("e")).unwrap();
    fs.release(e.ino, h.fh).unwrap();
    assert!(!m.exists("/d/e"));
    assert_eq!(fs.lookup(d.ino, n("e")).unwrap_err().errno, libc::ENOENT);
}

#[test]
fn touch_costs_one_upload() {
    let (m, fs) = setup();
    fs.lookup(ROOT_INO, n("x")).unwrap_err();
    m.reset_counters();
    let (a, h) = fs
        .create(ROOT_INO, n("x"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.flush(a.ino, h.fh).unwrap();
    fs.release(a.ino, h.fh).unwrap();
    assert_eq!(m.total_calls(), 1);
    assert_eq!(m.open_write_calls(), 1);
    assert!(m.exists("/x"));
}

#[test]
fn filesystem_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Filesystem>();
}

#[test]
fn statfs_is_large() {
    let (_, fs) = setup();
    let s = fs.statfs();
    assert!(s.bavail > 1 << 30);
    assert_eq!(s.namelen, 255);
}

mod model {
    //! Model-based test: random operations on three files, compared after every step with
    //! a plain in-memory model of what each file must contain.

    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const NAMES: [&str; 3] = ["a", "b", "c"];

    #[derive(Debug, Clone)]
    enum Step {
        Open {
            file: usize,
            mode: i32,
            trunc: bool,
            append: bool,
        },
        Write {
            handle: usize,
            offset: u64,
            len: usize,
            seed: u8,
        },
        Read {
            handle: usize,
            offset: u64,
            len: u32,
        },
        Truncate {
            file: usize,
            size: u64,
        },
        Close {
            handle: usize,
        },
        Flush {
            handle: usize,
        },
        Rename {
            from: usize,
            to: usize,
        },
        Unlink {
            file: usize,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            (0..3usize, 0..3i32, any::<bool>(), prop::bool::weighted(0.2)).prop_map(
                |(file, m, trunc, append)| Step::Open {
                    file,
                    mode: [libc::O_RDONLY, libc::O_WRONLY, libc::O_RDWR][m as usize],
                    trunc,
                    append
                }
            ),
            (0..4usize, 0..300_000u64, 0..70_000usize, any::<u8>()).prop_map(
                |(handle, offset, len, seed)| Step::Write {
                    handle,
                    offset,
                    len,
                    seed
                }
            ),
            // Sequential-ish writes are the common case: offset chosen at run time.
            (0..4usize, 1..70_000usize, any::<u8>()).prop_map(|(handle, len, seed)| {
                Step::Write {
                    handle,
                    offset: u64::MAX,
                    len,
                    seed,
                }
            }),
            (0..4usize, 0..300_000u64, 0..100_000u32).prop_map(|(handle, offset, len)| {
                Step::Read {
                    handle,
                    offset,
                    len,
                }
            }),
            (0..3usize, 0..200_000u64).prop_map(|(file, size)| Step::Truncate { file, size }),
            (0..4usize).prop_map(|handle| Step::Close { handle }),
            (0..4usize).prop_map(|handle| Step::Flush { handle }),
            (0..3usize, 0..3usize).prop_map(|(from, to)| Step::Rename { from, to }),
            (0..3usize).prop_map(|file| Step::Unlink { file }),
        ]
    }

    struct Open {
        ino: Ino,
        fh: Fh,
        id: usize,
        mode: i32,
        append: bool,
    }

    /// `variant`: 0 = defaults, 1 = caching off, 2 = a server without APPE/MFMT/CHMOD.
    fn run(steps: Vec<Step>, variant: u8) {
        let m = MemoryRemote::new();
        let mut o = opts();
        if variant == 1 {
            o.cache_timeout = Duration::ZERO;
            o.negative_timeout = Duration::ZERO;
        }
        if variant == 2 {
            m.set_capabilities(RemoteCapabilities::default());
        }
        let fs = Filesystem::new(Arc::new(m.clone()), o);
        // Model: name -> file id; id -> content.
        let mut names: HashMap<&str, usize> = HashMap::new();
        let mut contents: Vec<Vec<u8>> = Vec::new();
        for (i, name) in NAMES.iter().enumerate() {
            let d = data(1000 * (i + 1) * (i + 1) * 10, i as u8);
            m.put_file(&format!("/{name}"), &d);
            names.insert(name, contents.len());
            contents.push(d);
        }
        let mut handles: Vec<Open> = Vec::new();
        for (stepno, s) in steps.into_iter().enumerate() {
            match s {
                Step::Open {
                    file,
                    mode,
                    trunc,
                    append,
                } => {
                    if handles.len() >= 4 {
                        continue;
                    }
                    let name = NAMES[file];
                    let mut flags = mode;
                    if append {
                        flags |= libc::O_APPEND;
                    }
                    if trunc && mode != libc::O_RDONLY {
                        flags |= libc::O_TRUNC;
                    }
                    let (ino, fh, id) = match names.get(name) {
                        Some(&id) => {
                            let ino = fs.lookup(ROOT_INO, n(name)).unwrap().ino;
                            let h = fs.open(ino, flags).unwrap();
                            if flags & libc::O_TRUNC != 0 {
                                contents[id].clear();
                            }
                            (ino, h.fh, id)
                        }
                        None => {
                            if mode == libc::O_RDONLY {
                                continue;
                            }
                            let (a, h) = fs
                                .create(ROOT_INO, n(name), 0o644, flags | libc::O_CREAT)
                                .unwrap();
                            names.insert(name, contents.len());
                            contents.push(Vec::new());
                            (a.ino, h.fh, contents.len() - 1)
                        }
                    };
                    handles.push(Open {
                        ino,
                        fh,
                        id,
                        mode,
                        append,
                    });
                }
                Step::Write {
                    handle,
                    offset,
                    len,
                    seed,
                } => {
                    let Some(h) = handles.get(handle) else {
                        continue;
                    };
                    if h.mode == libc::O_RDONLY || !names.values().any(|&id| id == h.id) {
                        continue;
                    }
                    let c = &mut contents[h.id];
                    let offset = if offset == u64::MAX {
                        c.len() as u64
                    } else {
                        offset
                    };
                    let bytes = data(len, seed);
                    fs.write(h.ino, h.fh, offset, &bytes).unwrap();
                    let at = if h.append { c.len() } else { offset as usize };
                    if c.len() < at + len {
                        c.resize(at + len, 0);
                    }
                    c[at..at + len].copy_from_slice(&bytes);
                }
                Step::Read {
                    handle,
                    offset,
                    len,
                } => {
                    let Some(h) = handles.get(handle) else {
                        continue;
                    };
                    if h.mode == libc::O_WRONLY || !names.values().any(|&id| id == h.id) {
                        continue;
                    }
                    let got = fs.read(h.ino, h.fh, offset, len).unwrap();
                    let c = &contents[h.id];
                    let start = (offset as usize).min(c.len());
                    let end = (start + len as usize).min(c.len());
                    assert_eq!(got.len(), end - start, "step {stepno}: read length");
                    assert!(got == c[start..end], "step {stepno}: read content");
                }
                Step::Truncate { file, size } => {
                    let Some(&id) = names.get(NAMES[file]) else {
                        continue;
                    };
                    let ino = fs.lookup(ROOT_INO, n(NAMES[file])).unwrap().ino;
                    let a = fs
                        .setattr(
                            ino,
                            SetAttr {
                                size: Some(size),
                                ..SetAttr::default()
                            },
                        )
                        .unwrap();
                    assert_eq!(a.size, size);
                    contents[id].resize(size as usize, 0);
                }
                Step::Close { handle } | Step::Flush { handle } => {
                    if handle >= handles.len() {
                        continue;
                    }
                    let h = &handles[handle];
                    let live = names.values().any(|&id| id == h.id);
                    let r = fs.flush(h.ino, h.fh);
                    if live {
                        r.unwrap();
                    }
                    if matches!(s, Step::Close { .. }) {
                        let h = handles.remove(handle);
                        let r = fs.release(h.ino, h.fh);
                        if live {
                            r.unwrap();
                        }
                    }
                }
                Step::Rename { from, to } => {
                    let (from, to) = (NAMES[from], NAMES[to]);
                    if from == to || !names.contains_key(from) {
                        continue;
                    }
                    fs.rename(ROOT_INO, n(from), ROOT_INO, n(to), 0).unwrap();
                    let id = names.remove(from).unwrap_or_default();
                    names.insert(to, id);
                }
                Step::Unlink { file } => {
                    let name = NAMES[file];
                    if names.remove(name).is_some() {
                        fs.unlink(ROOT_INO, n(name)).unwrap();
                    } else {
                        assert_eq!(
                            fs.unlink(ROOT_INO, n(name)).unwrap_err().errno,
                            libc::ENOENT
                        );
                    }
                }
            }
            // After every step: sizes and contents as seen through the mount.
            for name in NAMES {
                match names.get(name) {
                    Some(&id) => {
                        let a = fs.lookup(ROOT_INO, n(name)).unwrap();
                        assert_eq!(
                            a.size,
                            contents[id].len() as u64,
                            "step {stepno}: size of {name}"
                        );
                        let got = read_all(&fs, a.ino);
                        assert!(got == contents[id], "step {stepno}: content of {name}");
                        fs.forget(a.ino, 1);
                    }
                    None => {
                        assert_eq!(
                            fs.lookup(ROOT_INO, n(name)).unwrap_err().errno,
                            libc::ENOENT,
                            "step {stepno}: {name} should not exist"
                        );
                    }
                }
            }
            // With nothing open, the server holds exactly the model.
            if handles.is_empty() {
                for name in NAMES {
                    let on_server = m.file(&format!("/{name}"));
                    let want = names.get(name).map(|&id| contents[id].clone());
                    assert!(on_server == want, "step {stepno}: server content of {name}");
                }
            }
        }
        for h in handles {
            let _ = fs.release(h.ino, h.fh);
        }
        for name in NAMES {
            let on_server = m.file(&format!("/{name}"));
            let want = names.get(name).map(|&id| contents[id].clone());
            assert!(on_server == want, "end: server content of {name}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn matches_model(steps in prop::collection::vec(step(), 1..50), variant in 0..3u8) {
            run(steps, variant);
        }
    }
}

#[test]
fn stalled_read_does_not_block_other_requests() {
    let m = MemoryRemote::new();
    m.put_file("/slow", &data(100_000, 1));
    m.put_file("/d/other", b"other");
    let held = Arc::new(HeldRemote::new(m.clone()));
    let fs = Arc::new(Filesystem::new(held.clone(), opts()));
    let slow = fs.lookup(ROOT_INO, n("slow")).unwrap();
    let h = fs.open(slow.ino, libc::O_RDONLY).unwrap();
    held.hold(Op::OpenRead);
    let reader = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.read(slow.ino, h.fh, 0, 4096).map(|d| d.len()))
    };
    held.wait_held(Op::OpenRead);
    // While that read waits on the server: lookups, listings, writes, other files.
    let d = fs.lookup(ROOT_INO, n("d")).unwrap();
    assert_eq!(readdir_names(&fs, d.ino).len(), 3);
    assert_eq!(fs.getattr(slow.ino).unwrap().size, 100_000);
    let (a, wh) = fs
        .create(d.ino, n("new"), 0o644, libc::O_WRONLY | libc::O_CREAT)
        .unwrap();
    fs.write(a.ino, wh.fh, 0, b"x").unwrap();
    fs.release(a.ino, wh.fh).unwrap();
    assert!(!reader.is_finished());
    held.release(Op::OpenRead);
    assert_eq!(reader.join().unwrap().unwrap(), 4096);
    fs.release(slow.ino, h.fh).unwrap();
}

/// A remote that can hold the next call of chosen operations until the test lets it go, to
/// force one interleaving of concurrent requests (and to know when a thread got that far)
/// without sleeping.
struct HeldRemote {
    inner: Box<dyn crate::remote::Remote>,
    /// Per operation: (armed: its next call waits, waiting: a call is waiting now).
    holds: parking_lot::Mutex<std::collections::HashMap<Op, (bool, bool)>>,
    cond: parking_lot::Condvar,
}

impl HeldRemote {
    fn new(inner: impl crate::remote::Remote) -> Self {
        HeldRemote {
            inner: Box::new(inner),
            holds: parking_lot::Mutex::new(std::collections::HashMap::new()),
            cond: parking_lot::Condvar::new(),
        }
    }

    /// The next call of `op` waits until `release(op)`.
    fn hold(&self, op: Op) {
        self.holds.lock().insert(op, (true, false));
    }

    /// Returns once a call of `op` is waiting.
    fn wait_held(&self, op: Op) {
        let mut holds = self.holds.lock();
        while !holds.get(&op).is_some_and(|&(_, waiting)| waiting) {
            self.cond.wait(&mut holds);
        }
    }

    fn release(&self, op: Op) {
        self.holds.lock().remove(&op);
        self.cond.notify_all();
    }

    fn gate(&self, op: Op) {
        let mut holds = self.holds.lock();
        let Some(hold) = holds.get_mut(&op).filter(|(armed, _)| *armed) else {
            return;
        };
        *hold = (false, true);
        self.cond.notify_all();
        while holds.contains_key(&op) {
            self.cond.wait(&mut holds);
        }
    }
}

impl crate::remote::Remote for HeldRemote {
    fn list(&self, dir: &str) -> crate::remote::RemoteResult<Vec<Entry>> {
        self.gate(Op::List);
        self.inner.list(dir)
    }
    fn stat(&self, path: &str) -> crate::remote::RemoteResult<Entry> {
        self.gate(Op::Stat);
        self.inner.stat(path)
    }
    fn open_read(
        &self,
        path: &str,
        offset: u64,
    ) -> crate::remote::RemoteResult<Box<dyn crate::remote::ReadStream>> {
        self.gate(Op::OpenRead);
        self.inner.open_read(path, offset)
    }
    fn open_write(
        &self,
        path: &str,
        mode: WriteMode,
    ) -> crate::remote::RemoteResult<Box<dyn crate::remote::WriteStream>> {
        self.gate(Op::OpenWrite);
        self.inner.open_write(path, mode)
    }
    fn delete(&self, path: &str) -> crate::remote::RemoteResult<()> {
        self.gate(Op::Delete);
        self.inner.delete(path)
    }
    fn mkdir(&self, path: &str) -> crate::remote::RemoteResult<()> {
        self.gate(Op::Mkdir);
        self.inner.mkdir(path)
    }
    fn rmdir(&self, path: &str) -> crate::remote::RemoteResult<()> {
        self.gate(Op::Rmdir);
        self.inner.rmdir(path)
    }
    fn rename(&self, from: &str, to: &str) -> crate::remote::RemoteResult<()> {
        self.gate(Op::Rename);
        self.inner.rename(from, to)
    }
    fn set_mtime(&self, path: &str, mtime: SystemTime) -> crate::remote::RemoteResult<()> {
        self.gate(Op::SetMtime);
        self.inner.set_mtime(path, mtime)
    }
    fn chmod(&self, path: &str, mode: u32) -> crate::remote::RemoteResult<()> {
        self.gate(Op::Chmod);
        self.inner.chmod(path, mode)
    }
    fn capabilities(&self) -> crate::remote::RemoteCapabilities {
        self.inner.capabilities()
    }
}

/// Issue #5, as the model workload in tests/faults.rs met it: another handle's upload (there
/// a RELEASE the kernel sent before the file was reopened and written) completes while a
/// rename of the file is under way, after the rename took the file's attributes and before
/// it looked for pending writes. The renamed file then showed its size from before that
/// upload.
#[test]
fn upload_during_rename_does_not_leave_the_old_size() {
    let m = MemoryRemote::new();
    m.put_file("/f", b"0123456789");
    let held = Arc::new(HeldRemote::new(m.clone()));
    // A name missing from the cached listing is always asked of the server, so the rename's
    // lookup of its target makes a LIST the test can hold the rename at.
    let fs = Arc::new(Filesystem::new(
        held.clone(),
        FsOptions {
            negative_timeout: Duration::ZERO,
            ..opts()
        },
    ));
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let h = fs.open(f.ino, libc::O_RDWR).unwrap();
    fs.write(f.ino, h.fh, 8, b"abcdefgh").unwrap();

    held.hold(Op::OpenWrite);
    let upload = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.fsync(f.ino, h.fh))
    };
    held.wait_held(Op::OpenWrite);
    held.hold(Op::List);
    let rename = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.rename(ROOT_INO, n("f"), ROOT_INO, n("g"), 0))
    };
    // The rename has read the source's attributes and is looking for the target.
    held.wait_held(Op::List);
    held.release(Op::OpenWrite);
    upload.join().unwrap().unwrap();
    held.release(Op::List);
    rename.join().unwrap().unwrap();

    assert_eq!(m.file("/g").unwrap(), b"01234567abcdefgh");
    assert_eq!(fs.getattr(f.ino).unwrap().size, 16);
    assert_eq!(fs.lookup(ROOT_INO, n("g")).unwrap().size, 16);
    fs.release(f.ino, h.fh).unwrap();
}

/// Forces an upload into the middle of another request: `request` runs until its call of
/// `op` and is held there; then `upload` (a request that uploads the open file `ino`) starts,
/// and its STOR is held until `request` has finished. In that order such an upload read a path
/// the request was changing, and stored it afterwards. A request that holds the file's content
/// lock makes the upload wait its turn instead; a thread blocked on a lock gives no signal, so
/// then this spins until the upload has joined the file (one more user), on that state and not
/// on time. Returns both results.
fn upload_during<R: Send + 'static, U: Send + 'static>(
    fs: &Arc<Filesystem>,
    held: &HeldRemote,
    ino: Ino,
    op: Op,
    request: impl FnOnce(&Filesystem) -> R + Send + 'static,
    upload: impl FnOnce(&Filesystem) -> U + Send + 'static,
) -> (R, U) {
    held.hold(op);
    let request = {
        let fs = fs.clone();
        std::thread::spawn(move || request(&fs))
    };
    held.wait_held(op);
    let locked = fs.handles.find(ino).filter(|of| of.content.is_locked());
    let users = locked.as_ref().map_or(0, |of| of.users());
    held.hold(Op::OpenWrite);
    let upload = {
        let fs = fs.clone();
        std::thread::spawn(move || upload(&fs))
    };
    match &locked {
        Some(of) => {
            while of.users() == users {
                std::thread::yield_now();
            }
        }
        None => held.wait_held(Op::OpenWrite),
    }
    held.release(op);
    let request = request.join().unwrap();
    held.release(Op::OpenWrite);
    (request, upload.join().unwrap())
}

/// `: > f` (open with O_TRUNC, close) racing `rm f`: the truncating open comes while the
/// unlink is under way, and its RELEASE uploads the empty file it is due. That upload read
/// the name before the unlink forgot it and stored it after the DELE, so the file was back on
/// the server after unlink() returned.
#[test]
fn upload_during_unlink_does_not_bring_the_name_back() {
    let m = MemoryRemote::new();
    m.put_file("/f", b"0123456789");
    let held = Arc::new(HeldRemote::new(m.clone()));
    let fs = Arc::new(Filesystem::new(held.clone(), opts()));
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();

    let (unlink, truncate) = upload_during(
        &fs,
        &held,
        f.ino,
        Op::Delete,
        |fs| fs.unlink(ROOT_INO, n("f")),
        move |fs| {
            let h = fs.open(f.ino, libc::O_WRONLY | libc::O_TRUNC)?;
            fs.release(f.ino, h.fh)
        },
    );
    unlink.unwrap();
    truncate.unwrap();

    assert!(!m.exists("/f"));
    assert_eq!(fs.lookup(ROOT_INO, n("f")).unwrap_err().errno, libc::ENOENT);
}

/// `truncate -s 4 d/f` while `mv d e`, with d/f open (here read-only): the truncation's
/// upload read the path d/f while the rename of d was under way and stored it after the
/// RNFR/RNTO, into a directory that no longer existed, so truncate() failed and e/f kept its
/// old content.
#[test]
fn upload_during_directory_rename_goes_to_the_new_path() {
    let m = MemoryRemote::new();
    m.put_file("/d/f", b"0123456789");
    let held = Arc::new(HeldRemote::new(m.clone()));
    let fs = Arc::new(Filesystem::new(held.clone(), opts()));
    let d = fs.lookup(ROOT_INO, n("d")).unwrap();
    let f = fs.lookup(d.ino, n("f")).unwrap();
    let h = fs.open(f.ino, libc::O_RDONLY).unwrap();

    let (rename, truncate) = upload_during(
        &fs,
        &held,
        f.ino,
        Op::Rename,
        |fs| fs.rename(ROOT_INO, n("d"), ROOT_INO, n("e"), 0),
        move |fs| {
            let changes = SetAttr {
                size: Some(4),
                ..SetAttr::default()
            };
            fs.setattr(f.ino, changes)
        },
    );
    rename.unwrap();
    assert_eq!(truncate.unwrap().size, 4);

    assert_eq!(m.file("/e/f").unwrap(), b"0123");
    assert!(!m.exists("/d"));
    assert_eq!(fs.getattr(f.ino).unwrap().size, 4);
    fs.release(f.ino, h.fh).unwrap();
}

/// `: > f` racing `mv f g`, with f not open before: the truncating open comes while the
/// RNFR/RNTO is under way. Its RELEASE uploads the empty file it is due, and must store it
/// under the name the file has then, never bringing `f` back.
#[test]
fn upload_during_rename_of_an_unopened_file_does_not_recreate_the_old_name() {
    let m = MemoryRemote::new();
    m.put_file("/f", b"0123456789");
    let held = Arc::new(HeldRemote::new(m.clone()));
    let fs = Arc::new(Filesystem::new(held.clone(), opts()));
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();

    let (rename, truncate) = upload_during(
        &fs,
        &held,
        f.ino,
        Op::Rename,
        |fs| fs.rename(ROOT_INO, n("f"), ROOT_INO, n("g"), 0),
        move |fs| {
            let h = fs.open(f.ino, libc::O_WRONLY | libc::O_TRUNC)?;
            fs.release(f.ino, h.fh)
        },
    );
    rename.unwrap();
    truncate.unwrap();

    assert!(!m.exists("/f"), "the old name came back");
    assert_eq!(m.file("/g").unwrap(), b"");
    assert_eq!(fs.lookup(ROOT_INO, n("g")).unwrap().size, 0);
}

/// `rm` refused by the server (550 permission denied on DELE) leaves the file, so writes
/// still pending on an open handle of it must not be dropped: close() uploads them.
#[test]
fn refused_unlink_keeps_the_pending_writes() {
    let m = MemoryRemote::new();
    m.put_file("/f", b"0123456789");
    let f = Arc::new(FaultyRemote::new(m.clone()));
    let fs = Filesystem::new(f.clone(), opts());
    let ino = fs.lookup(ROOT_INO, n("f")).unwrap().ino;
    let h = fs.open(ino, libc::O_RDWR).unwrap();
    fs.write(ino, h.fh, 2, b"ab").unwrap();
    f.fail_always(Op::Delete, RemoteErrorKind::PermissionDenied);
    assert_eq!(fs.unlink(ROOT_INO, n("f")).unwrap_err().errno, libc::EACCES);
    f.clear();
    fs.release(ino, h.fh).unwrap();
    assert_eq!(m.file("/f").unwrap(), b"01ab456789");
}

/// `rm` refused by the server while the kernel's RELEASE of the file's last handle, with
/// writes still pending, waits for the unlink: that RELEASE counts the unlink as another
/// user and leaves the upload to it, so the unlink must do it, or the writes are lost
/// although the file stays. (Without that, this fails when the RELEASE gets the lock before
/// the unlink gives the file back: 2 runs in 5 here.)
#[test]
fn refused_unlink_racing_the_last_release_keeps_the_writes() {
    let m = MemoryRemote::new();
    m.put_file("/f", b"0123456789");
    let faulty = FaultyRemote::new(m.clone());
    faulty.fail_always(Op::Delete, RemoteErrorKind::PermissionDenied);
    let held = Arc::new(HeldRemote::new(faulty));
    let fs = Arc::new(Filesystem::new(held.clone(), opts()));
    let f = fs.lookup(ROOT_INO, n("f")).unwrap();
    let h = fs.open(f.ino, libc::O_RDWR).unwrap();
    fs.write(f.ino, h.fh, 2, b"ab").unwrap();

    held.hold(Op::Delete);
    let unlink = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.unlink(ROOT_INO, n("f")))
    };
    held.wait_held(Op::Delete);
    let release = {
        let fs = fs.clone();
        std::thread::spawn(move || fs.release(f.ino, h.fh))
    };
    // The RELEASE has taken the handle out of the table; next it waits for the content
    // lock the unlink holds (a blocked thread gives no other signal).
    while fs.handles.file(h.fh).is_some() {
        std::thread::yield_now();
    }
    held.release(Op::Delete);
    let (unlink, release) = (unlink.join().unwrap(), release.join().unwrap());
    assert_eq!(unlink.unwrap_err().errno, libc::EACCES);
    release.unwrap();
    assert_eq!(m.file("/f").unwrap(), b"01ab456789");
}
