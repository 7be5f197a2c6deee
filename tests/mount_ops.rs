//! The mount, for real through /dev/fuse, against vsftpd, proftpd and pure-ftpd: what users do
//! with cp, ls, mv, rm, rsync, tar, shell redirection, truncate and touch.

mod common;
mod fsmount;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fsmount::{Mount, q, sh, sh_status};

/// A mount of a fresh scratch directory on `server`; returns the mount and the same
/// directory on the server's disk.
fn mount(name: &str, test: &str, extra: &str) -> (Mount, std::path::PathBuf) {
    let server = common::server(name);
    let (dir, local) = common::scratch_dir(&server, test);
    let m = Mount::new(&server, &dir, &fsmount::options(&server, "off", extra));
    (m, local)
}

/// A small tree with nested dirs, spaces, UTF-8, an empty file and a 3 MiB file.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("a/b c/ü")).unwrap();
    fs::write(root.join("top.txt"), b"top level\n").unwrap();
    fs::write(root.join("a/empty"), b"").unwrap();
    fs::write(root.join("a/b c/with space.txt"), b"spaces\n").unwrap();
    fs::write(root.join("a/b c/ü/naïve-文件.txt"), "utf-8 ✓\n").unwrap();
    fs::write(root.join("a/big.bin"), common::random_bytes(3 << 20, 9)).unwrap();
    for i in 0..30 {
        fs::write(root.join(format!("a/small{i:02}")), format!("file {i}\n")).unwrap();
    }
}

/// Every file under `root`, relative path -> content.
fn snapshot(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.push((format!("{rel}/"), Vec::new()));
                stack.push(path);
            } else {
                out.push((rel, fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn tree_roundtrip(name: &str) {
    let (m, local) = mount(name, "tree", "");
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    sh(&format!("cp -r {}/. {}/", q(src.path()), q(&m.dir)));
    assert_eq!(
        snapshot(&local),
        snapshot(src.path()),
        "{name}: server has the tree"
    );
    assert_eq!(
        snapshot(&m.dir),
        snapshot(src.path()),
        "{name}: mount shows the tree"
    );
    let out = tempfile::tempdir().unwrap();
    sh(&format!("cp -r {}/. {}/", q(&m.dir), q(out.path())));
    assert_eq!(
        snapshot(out.path()),
        snapshot(src.path()),
        "{name}: copied back intact"
    );
    // ls -l agrees with the server's disk on sizes and mtimes.
    for rel in ["top.txt", "a/big.bin", "a/empty", "a/b c/ü/naïve-文件.txt"] {
        let mounted = fs::metadata(m.path(rel)).unwrap();
        let real = fs::metadata(local.join(rel)).unwrap();
        assert_eq!(mounted.len(), real.len(), "{name}: size of {rel}");
        assert!(
            (mounted.mtime() - real.mtime()).abs() <= 1,
            "{name}: mtime of {rel}: {} vs {}",
            mounted.mtime(),
            real.mtime()
        );
        assert!(mounted.is_file());
    }
    assert!(fs::metadata(m.path("a/b c")).unwrap().is_dir());
}

fn symlinks(name: &str) {
    let server = common::server(name);
    let (dir, local) = common::scratch_dir(&server, "symlinks");
    fs::create_dir(local.join("a")).unwrap();
    fs::write(local.join("a/inner"), b"inside\n").unwrap();
    fs::write(local.join("top.txt"), b"top level\n").unwrap();
    std::os::unix::fs::symlink("top.txt", local.join("link")).unwrap();
    std::os::unix::fs::symlink("a", local.join("dirlink")).unwrap();
    let m = Mount::new(&server, &dir, &fsmount::options(&server, "off", ""));
    assert_eq!(
        fs::read_link(m.path("link")).unwrap(),
        Path::new("top.txt"),
        "{name}"
    );
    assert_eq!(
        fs::read(m.path("link")).unwrap(),
        b"top level\n",
        "{name}: read through a link"
    );
    assert_eq!(
        fs::read(m.path("dirlink/inner")).unwrap(),
        b"inside\n",
        "{name}: a directory through a link"
    );
}

fn namespace_ops(name: &str) {
    let (m, local) = mount(name, "names", "");
    fs::create_dir(m.path("d")).unwrap();
    assert!(local.join("d").is_dir());
    fs::write(m.path("d/f"), b"one").unwrap();
    fs::write(m.path("g"), b"two").unwrap();
    // mv file, mv over an existing file, mv a directory.
    fs::rename(m.path("d/f"), m.path("moved")).unwrap();
    assert_eq!(fs::read(local.join("moved")).unwrap(), b"one");
    fs::rename(m.path("g"), m.path("moved")).unwrap();
    assert_eq!(fs::read(m.path("moved")).unwrap(), b"two");
    assert_eq!(fs::read(local.join("moved")).unwrap(), b"two");
    assert!(!m.path("g").exists());
    fs::rename(m.path("d"), m.path("d2")).unwrap();
    assert!(local.join("d2").is_dir() && !local.join("d").exists());
    // rmdir of a non-empty dir fails; rm -r works.
    fs::write(m.path("d2/x"), b"x").unwrap();
    let err = fs::remove_dir(m.path("d2")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY), "{name}: {err}");
    sh(&format!("rm -r {}", q(&m.path("d2"))));
    assert!(!local.join("d2").exists());
    fs::remove_file(m.path("moved")).unwrap();
    assert!(!local.join("moved").exists());
    assert_eq!(
        fs::metadata(m.path("moved")).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    );
    // Names that cannot cross FTP are refused, and nothing reaches the server.
    let err = fs::write(m.path("bad\nname"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{name}: {err}");
    assert_eq!(
        fs::read_dir(&local).unwrap().count(),
        0,
        "{name}: nothing created"
    );
}

fn writes_in_place(name: &str) {
    let (m, local) = mount(name, "writes", "");
    // Append with the shell.
    sh(&format!(
        "echo first > {0} && echo second >> {0}",
        q(&m.path("log.txt"))
    ));
    assert_eq!(fs::read(local.join("log.txt")).unwrap(), b"first\nsecond\n");
    // In-place write at an offset.
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(m.path("log.txt"))
        .unwrap();
    f.seek(SeekFrom::Start(2)).unwrap();
    f.write_all(b"RS").unwrap();
    drop(f);
    assert_eq!(fs::read(local.join("log.txt")).unwrap(), b"fiRSt\nsecond\n");
    // Read-write: read, then overwrite the middle.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("log.txt"))
        .unwrap();
    let mut head = [0u8; 5];
    f.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"fiRSt");
    f.write_all(b"_").unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::read(local.join("log.txt")).unwrap(), b"fiRSt_second\n");
    drop(f);
    // truncate down, up, to zero.
    sh(&format!("truncate -s 5 {}", q(&m.path("log.txt"))));
    assert_eq!(fs::read(local.join("log.txt")).unwrap(), b"fiRSt");
    sh(&format!("truncate -s 8 {}", q(&m.path("log.txt"))));
    assert_eq!(fs::read(local.join("log.txt")).unwrap(), b"fiRSt\0\0\0");
    assert_eq!(fs::metadata(m.path("log.txt")).unwrap().len(), 8);
    sh(&format!("truncate -s 0 {}", q(&m.path("log.txt"))));
    assert_eq!(fs::read(local.join("log.txt")).unwrap(), b"");
    // An empty file and a 0-byte upload.
    sh(&format!("touch {}", q(&m.path("empty"))));
    assert_eq!(fs::metadata(local.join("empty")).unwrap().len(), 0);
    sh(&format!("cp /dev/null {}", q(&m.path("zero"))));
    assert!(local.join("zero").exists());
    assert_eq!(fs::read(m.path("zero")).unwrap(), b"");
}

fn set_times(name: &str) {
    let (m, local) = mount(name, "touch", "");
    fs::write(m.path("old"), b"x").unwrap();
    sh(&format!(
        "touch -d '2001-02-03 04:05:06 UTC' {}",
        q(&m.path("old"))
    ));
    let want = 981_173_106;
    assert_eq!(
        fs::metadata(m.path("old")).unwrap().mtime(),
        want,
        "{name}: mount shows mtime"
    );
    assert_eq!(
        fs::metadata(local.join("old")).unwrap().mtime(),
        want,
        "{name}: server has mtime"
    );
    let mode = fs::metadata(local.join("old"))
        .unwrap()
        .permissions()
        .mode();
    sh(&format!("chmod 600 {}", q(&m.path("old"))));
    let after = fs::metadata(local.join("old"))
        .unwrap()
        .permissions()
        .mode();
    assert!(
        after & 0o777 == 0o600 || after == mode,
        "{name}: chmod kept or applied"
    );
}

fn rsync_and_tar(name: &str) {
    let (m, local) = mount(name, "rsync", "");
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let target = m.path("copy");
    sh(&format!("rsync -a {}/ {}/", q(src.path()), q(&target)));
    assert_eq!(
        snapshot(&local.join("copy")),
        snapshot(src.path()),
        "{name}: rsync copy"
    );
    let again = sh(&format!(
        "rsync -a --stats {}/ {}/",
        q(src.path()),
        q(&target)
    ));
    let stats = String::from_utf8_lossy(&again.stdout);
    assert!(
        stats.contains("Number of regular files transferred: 0"),
        "{name}: second rsync transferred files:\n{stats}"
    );
    // tar x into the mount.
    let archive = src.path().join("../tree.tar");
    sh(&format!("tar -C {} -cf {} .", q(src.path()), q(&archive)));
    fs::create_dir(m.path("untar")).unwrap();
    sh(&format!(
        "tar -C {} -xf {}",
        q(&m.path("untar")),
        q(&archive)
    ));
    let _ = fs::remove_file(&archive);
    assert_eq!(
        snapshot(&local.join("untar")),
        snapshot(src.path()),
        "{name}: tar x"
    );
}

fn failed_write_is_reported(name: &str) {
    let (m, local) = mount(name, "denied", "");
    // A file the FTP user may not overwrite: owned by root, read-only, in a root-owned dir.
    fs::create_dir(local.join("ro")).unwrap();
    fs::write(local.join("ro/locked"), b"original").unwrap();
    fs::set_permissions(local.join("ro/locked"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(local.join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    let attempt = (|| -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(m.path("ro/locked"))?;
        f.write_all(b"replaced")?;
        f.sync_all()?;
        drop(f);
        Ok(())
    })();
    let err = attempt.expect_err("writing a file the server refuses must fail");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::EACCES) | Some(libc::EPERM) | Some(libc::EIO)
        ),
        "{name}: {err}"
    );
    assert_eq!(fs::read(local.join("ro/locked")).unwrap(), b"original");
    let err = fs::write(m.path("ro/new"), b"data").expect_err("creating in a denied dir fails");
    assert!(err.raw_os_error().is_some(), "{name}: {err}");
    assert!(!local.join("ro/new").exists());
}

macro_rules! per_server {
    ($($test:ident => $f:ident;)*) => {
        mod vsftpd { $( #[test] fn $test() { super::$f("vsftpd"); } )* }
        mod proftpd { $( #[test] fn $test() { super::$f("proftpd"); } )* }
        mod pureftpd { $( #[test] fn $test() { super::$f("pure-ftpd"); } )* }
    };
}

per_server! {
    tree_copied_in_and_out => tree_roundtrip;
    mkdir_mv_rm => namespace_ops;
    symlinks_with_targets => symlinks;
    append_truncate_in_place => writes_in_place;
    touch_and_chmod => set_times;
    rsync_twice_and_tar => rsync_and_tar;
    server_refusal_reaches_the_program => failed_write_is_reported;
}

#[test]
fn explicit_tls_mount_reads_and_writes() {
    let server = common::server("proftpd");
    let (dir, local) = common::scratch_dir(&server, "tls-mount");
    let m = Mount::new(&server, &dir, &fsmount::options(&server, "required", ""));
    let data = common::random_bytes(5 << 20, 3);
    fs::write(m.path("f.bin"), &data).unwrap();
    assert!(fs::read(local.join("f.bin")).unwrap() == data);
    assert!(fs::read(m.path("f.bin")).unwrap() == data);
}

#[test]
fn implicit_tls_mount() {
    let server = common::server("implicit");
    let (dir, local) = common::scratch_dir(&server, "implicit-mount");
    fs::write(local.join("hello"), b"over implicit TLS\n").unwrap();
    let m = Mount::new(&server, &dir, &fsmount::options(&server, "", ""));
    assert_eq!(fs::read(m.path("hello")).unwrap(), b"over implicit TLS\n");
}

#[test]
fn wrong_password_exits_non_zero_and_mounts_nothing() {
    let server = common::server("vsftpd");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new("timeout")
        .arg("30")
        .arg(fsmount::binary())
        .arg(fsmount::source(&server, "/"))
        .arg(tmp.path())
        .arg("-o")
        .arg(fsmount::options(&server, "off", ""))
        .env("FTPFS_PASSWORD", "not the password")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must fail: {stderr}");
    assert!(
        stderr.to_lowercase().contains("login"),
        "clear message: {stderr}"
    );
    assert!(!stderr.contains("not the password"));
    assert!(!fsmount::is_mounted(tmp.path()));
}

#[test]
fn mount_through_mount_fuse3_and_umount() {
    let server = common::server("pure-ftpd");
    let (dir, local) = common::scratch_dir(&server, "mount-t");
    fs::write(local.join("via-mount"), b"mount -t fuse.ftpfs\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // mount(8) runs helpers with a fixed PATH: ftpfs must be installed where it looks.
    let _installed = fsmount::InstalledBinary::new();
    let path = std::env::var("PATH").unwrap_or_default();
    let out = Command::new("timeout")
        .args(["30", "mount", "-t", "fuse.ftpfs"])
        .arg(fsmount::source(&server, &dir))
        .arg(tmp.path())
        .arg("-o")
        .arg(fsmount::options(&server, "off", "_netdev"))
        .env("PATH", &path)
        .env("FTPFS_PASSWORD", &server.password)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mount -t fuse.ftpfs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mounted = fsmount::is_mounted(tmp.path());
    let content = fs::read(tmp.path().join("via-mount"));
    let umount = sh_status(&format!("umount {}", q(tmp.path())));
    if fsmount::is_mounted(tmp.path()) {
        let _ = sh_status(&format!("umount -l {}", q(tmp.path())));
    }
    assert!(mounted, "mount visible after mount(8) returned");
    assert_eq!(content.unwrap(), b"mount -t fuse.ftpfs\n");
    assert!(
        umount.status.success(),
        "umount: {}",
        String::from_utf8_lossy(&umount.stderr)
    );
    // The daemon exits after the unmount; nothing is left behind.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fsmount::is_mounted(tmp.path()) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!fsmount::is_mounted(tmp.path()));
}

#[test]
fn unmount_on_sigterm_with_a_file_open() {
    let server = common::server("vsftpd");
    let (dir, local) = common::scratch_dir(&server, "sigterm");
    fs::write(local.join("held"), b"open while unmounting\n").unwrap();
    let m = Mount::new(&server, &dir, &fsmount::options(&server, "off", ""));
    let mut held = fs::File::open(m.path("held")).unwrap();
    let mut first = [0u8; 4];
    held.read_exact(&mut first).unwrap();
    // SAFETY: signalling the daemon this test started.
    unsafe { libc::kill(m.daemon_pid(), libc::SIGTERM) };
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while fsmount::is_mounted(&m.dir) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!fsmount::is_mounted(&m.dir), "SIGTERM unmounted the mount");
    let (status, stderr) = m.unmount();
    drop(held);
    assert!(
        status.success(),
        "daemon exit after SIGTERM: {status} {stderr}"
    );
}

/// Programs ask whether an open file is a terminal (TCGETS: Python's open(), git, less).
/// The answer is ENOTTY, and it is not worth a warning in the log (fuser's default logged
/// one per call, so `git commit` on a mount filled the log).
#[test]
fn a_file_is_not_a_terminal_and_asking_logs_no_warning() {
    use std::os::fd::AsRawFd;
    let server = common::server("pure-ftpd");
    let (dir, local) = common::scratch_dir(&server, "isatty");
    fs::write(local.join("f"), b"x").unwrap();
    let log = std::env::temp_dir().join("ftpfs-mount-ops-isatty.log");
    let m = Mount::logging_to(
        &server,
        &dir,
        &fsmount::options(&server, "off", ""),
        "warn",
        &log,
    );
    let f = fs::File::open(m.path("f")).unwrap();
    // SAFETY: isatty only reads the descriptor, which `f` keeps open.
    let tty = unsafe { libc::isatty(f.as_raw_fd()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((tty, errno), (0, Some(libc::ENOTTY)));
    drop(f);
    drop(m);
    let logged = fs::read_to_string(&log).unwrap_or_default();
    assert!(!logged.contains("Not Implemented"), "log: {logged}");
}
