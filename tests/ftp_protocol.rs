//! The protocol client against real servers: every operation on vsftpd, proftpd and
//! pure-ftpd, passive and active, plain and explicit TLS; implicit TLS; big transfers;
//! early-ended streams; command injection; the connection pool under login limits.

mod common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Server, TlsKind};
use ftpfs::ftp::pool::Purpose;
use ftpfs::ftp::tls::{TlsContext, TlsSettings};
use ftpfs::ftp::{ConnectOptions, Control, EntryKind, FtpError, Password, Pool, TlsMode};
use ftpfs::remote::ftp::FtpRemote;
use ftpfs::remote::{Remote, RemoteErrorKind, WriteMode};

fn options(server: &Server, active: bool, tls: bool) -> ConnectOptions {
    let tls_mode = match (server.tls, tls) {
        (TlsKind::Implicit, _) => TlsMode::Implicit,
        (_, true) => TlsMode::Required,
        (_, false) => TlsMode::Off,
    };
    let context = TlsContext::new(&TlsSettings {
        cafile: Some(server.cafile.clone()),
        ..Default::default()
    })
    .expect("test CA loads");
    ConnectOptions {
        host: server.host.clone(),
        port: server.port,
        user: server.user.clone(),
        password: Password::new(server.password.clone()),
        tls_mode,
        tls: Some(context),
        active,
        timeout: Duration::from_secs(10),
        trust_pasv_ip: false,
    }
}

fn connect(server: &Server, active: bool, tls: bool) -> Control {
    let opts = Arc::new(options(server, active, tls));
    Control::connect(opts, Default::default())
        .unwrap_or_else(|e| panic!("login to {} failed: {e}", server.name))
}

fn upload(c: &mut Control, path: &str, data: &[u8], append: bool) {
    let mut t = c.stor(path, append).expect("STOR starts");
    t.write_all(data).expect("upload data");
    c.finish_upload(t).expect("upload accepted");
}

fn download(c: &mut Control, path: &str, offset: u64) -> Vec<u8> {
    let mut t = c.retr(path, offset).expect("RETR starts");
    let mut out = Vec::new();
    t.read_to_end(&mut out).expect("download data");
    c.finish_download(t, true).expect("download complete");
    out
}

/// Every operation the filesystem uses, on one server in one mode.
fn exercise_all_operations(name: &str, active: bool, tls: bool) {
    let server = common::server(name);
    let (dir, local) = common::scratch_dir(&server, &format!("ops-{active}-{tls}"));
    let mut c = connect(&server, active, tls);
    assert_eq!(c.is_tls(), tls || server.tls == TlsKind::Implicit);

    // Upload, append, size, ranged reads.
    let file = format!("{dir}/hello wörld.txt");
    upload(&mut c, &file, b"hello ", false);
    upload(&mut c, &file, b"world\n", true);
    assert_eq!(
        std::fs::read(local.join("hello wörld.txt")).unwrap(),
        b"hello world\n"
    );
    assert_eq!(c.size(&file).unwrap(), 12);
    assert_eq!(download(&mut c, &file, 0), b"hello world\n");
    assert_eq!(download(&mut c, &file, 6), b"world\n");

    // A stream ended after a few bytes leaves the connection in sync.
    let big = common::random_bytes(4 << 20, 7);
    let big_path = format!("{dir}/big.bin");
    upload(&mut c, &big_path, &big, false);
    let mut t = c.retr(&big_path, 1000).unwrap();
    let mut first = [0u8; 16];
    t.read_exact(&mut first).unwrap();
    assert_eq!(&first, &big[1000..1016]);
    c.finish_download(t, false)
        .expect("early end accepted as end of transfer");
    c.noop().expect("connection usable after an early end");
    assert_eq!(c.size(&file).unwrap(), 12, "replies still in sync");
    assert_eq!(download(&mut c, &file, 0), b"hello world\n");

    // Modification time and permissions.
    let when = UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    match c.set_mtime(&file, when) {
        Ok(()) => assert_eq!(c.mdtm(&file).unwrap(), when),
        Err(FtpError::NotSupported(_)) => {}
        Err(e) => panic!("set_mtime on {name}: {e}"),
    }
    match c.chmod(&file, 0o600) {
        Ok(()) => {
            let mode = std::fs::metadata(local.join("hello wörld.txt"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Err(FtpError::NotSupported(_)) => {}
        Err(e) => panic!("chmod on {name}: {e}"),
    }

    // Directories, listing, symlinks.
    c.mkdir(&format!("{dir}/sub dir")).unwrap();
    std::os::unix::fs::symlink("hello wörld.txt", local.join("link")).unwrap();
    let entries = c.list_dir(&dir).unwrap();
    let find = |n: &str| {
        entries
            .iter()
            .find(|e| e.name == n)
            .unwrap_or_else(|| panic!("{n} missing from listing on {name}: {entries:?}"))
    };
    assert_eq!(find("hello wörld.txt").size, 12);
    assert_eq!(find("hello wörld.txt").kind, EntryKind::File);
    assert_eq!(find("big.bin").size, big.len() as u64);
    assert_eq!(find("sub dir").kind, EntryKind::Dir);
    assert_eq!(
        find("link").kind,
        EntryKind::Symlink {
            target: Some("hello wörld.txt".into())
        },
        "{name}: symlink and its target"
    );
    if let Some(entry) = c.mlst(&file).unwrap() {
        assert_eq!(entry.size, 12);
        assert_eq!(entry.kind, EntryKind::File);
    }

    // Rename, delete, rmdir.
    let renamed = format!("{dir}/sub dir/moved.txt");
    c.rename(&file, &renamed).unwrap();
    assert!(local.join("sub dir/moved.txt").exists());
    c.delete(&renamed).unwrap();
    c.rmdir(&format!("{dir}/sub dir")).unwrap();
    assert!(!local.join("sub dir").exists());
    let missing = c.retr(&format!("{dir}/no such file"), 0);
    assert!(
        matches!(missing, Err(FtpError::Reply { code: 550, .. })),
        "{name}: {:?}",
        missing.err()
    );
    c.noop().unwrap();

    // A name that would inject a command is refused before anything is sent.
    let injected = format!("{dir}/x\r\nDELE {big_path}");
    assert!(matches!(
        c.stor(&injected, false),
        Err(FtpError::InvalidName(_))
    ));
    assert!(matches!(c.delete(&injected), Err(FtpError::InvalidName(_))));
    assert!(matches!(
        c.rename(&big_path, &format!("{dir}/a\nb")),
        Err(FtpError::InvalidName(_))
    ));
    c.noop().unwrap();
    assert!(local.join("big.bin").exists(), "injected DELE must not run");
    c.quit();
}

macro_rules! matrix {
    ($($test:ident: $server:literal, $active:literal, $tls:literal;)*) => {
        $(
            #[test]
            fn $test() {
                exercise_all_operations($server, $active, $tls);
            }
        )*
    };
}

matrix! {
    vsftpd_passive_plain: "vsftpd", false, false;
    vsftpd_passive_tls: "vsftpd", false, true;
    vsftpd_active_plain: "vsftpd", true, false;
    vsftpd_active_tls: "vsftpd", true, true;
    proftpd_passive_plain: "proftpd", false, false;
    proftpd_passive_tls: "proftpd", false, true;
    proftpd_active_plain: "proftpd", true, false;
    proftpd_active_tls: "proftpd", true, true;
    pureftpd_passive_plain: "pure-ftpd", false, false;
    pureftpd_passive_tls: "pure-ftpd", false, true;
    pureftpd_active_plain: "pure-ftpd", true, false;
    pureftpd_active_tls: "pure-ftpd", true, true;
    implicit_passive: "implicit", false, true;
    implicit_active: "implicit", true, true;
}

/// 64 MiB each way through the pool-backed remote, checked byte for byte.
fn big_transfer(name: &str, tls: bool) {
    let server = common::server(name);
    let (dir, local) = common::scratch_dir(&server, &format!("big-{tls}"));
    let base = dir.clone();
    let remote = FtpRemote::connect(Pool::new(options(&server, false, tls), 2), &base).unwrap();
    let data = common::random_bytes(64 << 20, 42);
    let mut up = remote.open_write("/up.bin", WriteMode::Truncate).unwrap();
    for chunk in data.chunks(1 << 20) {
        up.write_all(chunk).unwrap();
    }
    up.finish().unwrap();
    assert!(
        std::fs::read(local.join("up.bin")).unwrap() == data,
        "upload intact"
    );
    let mut down = remote.open_read("/up.bin", 0).unwrap();
    let mut back = Vec::with_capacity(data.len());
    down.read_to_end(&mut back).unwrap();
    down.close().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "download intact");
}

#[test]
fn big_transfers_vsftpd() {
    big_transfer("vsftpd", false);
}

#[test]
fn big_transfers_proftpd_tls() {
    big_transfer("proftpd", true);
}

#[test]
fn big_transfers_pureftpd() {
    big_transfer("pure-ftpd", false);
}

/// Ten uploads in a row under TLS 1.3 on servers that demand session reuse on data
/// connections (vsftpd require_ssl_reuse, proftpd's default).
#[test]
fn ten_tls13_uploads_in_a_row() {
    for name in ["vsftpd", "proftpd", "pure-ftpd"] {
        let server = common::server(name);
        let (dir, local) = common::scratch_dir(&server, "tls13-uploads");
        let remote = FtpRemote::connect(Pool::new(options(&server, false, true), 1), &dir).unwrap();
        for i in 0..10 {
            let body = format!("upload {i} to {name}\n");
            let mut w = remote
                .open_write(&format!("/f{i}"), WriteMode::Truncate)
                .unwrap();
            w.write_all(body.as_bytes()).unwrap();
            w.finish()
                .unwrap_or_else(|e| panic!("{name}: upload {i} failed: {e}"));
            assert_eq!(
                std::fs::read_to_string(local.join(format!("f{i}"))).unwrap(),
                body
            );
        }
    }
}

/// A remote rooted in a scratch directory holding `files` files of 256 KiB.
fn remote_with_files(server: &Server, test: &str, files: usize, connections: usize) -> FtpRemote {
    let (dir, local) = common::scratch_dir(server, test);
    for i in 0..files {
        common::write_local_file(
            local.join(format!("f{i}")),
            &common::random_bytes(256 << 10, i as u64),
        );
    }
    FtpRemote::connect(Pool::new(options(server, false, false), connections), &dir).unwrap()
}

#[test]
fn parallel_downloads_use_parallel_connections() {
    let server = common::server("proftpd");
    let remote = Arc::new(remote_with_files(&server, "pool-parallel", 4, 4));
    let started = Arc::new(Barrier::new(5));
    let done = Arc::new(Barrier::new(5));
    let mut threads = Vec::new();
    for i in 0..4 {
        let (remote, started, done) = (remote.clone(), started.clone(), done.clone());
        threads.push(std::thread::spawn(move || {
            let mut s = remote.open_read(&format!("/f{i}"), 0).unwrap();
            let mut buf = [0u8; 1024];
            s.read_exact(&mut buf).unwrap();
            started.wait();
            done.wait();
            s.close().unwrap();
        }));
    }
    started.wait();
    assert_eq!(
        remote.pool().open_connections(),
        4,
        "4 streams, 4 connections"
    );
    done.wait();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn login_limited_server_serves_eight_callers() {
    let _only_user = common::lock_limited();
    let server = common::server("limited");
    let remote = Arc::new(remote_with_files(&server, "pool-limited", 8, 8));
    let expected: Vec<Vec<u8>> = (0..8)
        .map(|i| common::random_bytes(256 << 10, i as u64))
        .collect();
    let expected = Arc::new(expected);
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (remote, expected) = (remote.clone(), expected.clone());
            std::thread::spawn(move || {
                for round in 0..3 {
                    let mut s = remote.open_read(&format!("/f{i}"), 0).unwrap();
                    let mut got = Vec::new();
                    s.read_to_end(&mut got)
                        .unwrap_or_else(|e| panic!("caller {i} round {round}: {e}"));
                    assert!(got == expected[i], "caller {i} got wrong bytes");
                    let listing = remote.list("/").unwrap();
                    assert_eq!(listing.len(), 8);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(
        remote.pool().limit() <= 2,
        "pool adapted to the login limit"
    );
}

#[test]
fn remote_errors_are_classified() {
    let server = common::server("vsftpd");
    let (dir, local) = common::scratch_dir(&server, "errors");
    let remote = FtpRemote::connect(Pool::new(options(&server, false, false), 2), &dir).unwrap();
    assert_eq!(
        remote.stat("/missing").unwrap_err().kind,
        RemoteErrorKind::NotFound
    );
    assert_eq!(
        remote.open_read("/missing", 0).err().map(|e| e.kind),
        Some(RemoteErrorKind::NotFound)
    );
    std::fs::create_dir(local.join("full")).unwrap();
    common::write_local_file(local.join("full/x"), b"x");
    assert_eq!(
        remote.rmdir("/full").unwrap_err().kind,
        RemoteErrorKind::NotEmpty
    );
    assert_eq!(
        remote.mkdir("/full").unwrap_err().kind,
        RemoteErrorKind::AlreadyExists
    );
    assert_eq!(
        remote.delete("/a\r\nb").unwrap_err().kind,
        RemoteErrorKind::InvalidName
    );
    let stat = remote.stat("/full/x").unwrap();
    assert_eq!(stat.size, 1);
    assert!(stat.mtime.unwrap() <= SystemTime::now() + Duration::from_secs(5));
}

#[test]
fn wrong_password_is_a_clear_error() {
    let server = common::server("proftpd");
    let mut opts = options(&server, false, false);
    opts.password = Password::new("definitely wrong");
    let err = Control::connect(Arc::new(opts), Default::default())
        .err()
        .expect("login must fail");
    assert!(matches!(err, FtpError::Reply { code: 530, .. }), "{err}");
    assert!(!err.to_string().contains("definitely wrong"));
}

#[test]
fn pool_checkout_returns_connections() {
    let server = common::server("pure-ftpd");
    let pool = Pool::new(options(&server, false, false), 2);
    for _ in 0..5 {
        let mut c = pool.get(Purpose::Meta).unwrap();
        c.noop().unwrap();
    }
    assert_eq!(pool.open_connections(), 1, "one connection reused");
}

/// Work that is worth doing only for free (fetching ahead on a fast link) gets a connection
/// only while another one stays idle, and never makes the pool log in.
#[test]
fn pool_lends_a_spare_connection_only_when_another_stays_idle() {
    let server = common::server("pure-ftpd");
    let pool = Pool::new(options(&server, false, false), 3);
    assert!(pool.try_get_spare().is_none(), "nothing open yet");
    let (a, b) = (
        pool.get(Purpose::Transfer).unwrap(),
        pool.get(Purpose::Transfer).unwrap(),
    );
    drop((a, b));
    let mut spare = pool.try_get_spare().expect("two idle: one is lent");
    spare.noop().unwrap();
    assert!(pool.try_get_spare().is_none(), "the last idle one is kept");
    assert_eq!(pool.open_connections(), 2, "no login for it");
}

/// A caller whose new login is slow takes a connection that another caller returns
/// meanwhile, instead of waiting for its own login (here stalled past the timeout: without
/// that, the second caller would fail).
#[test]
fn pool_hands_a_returned_connection_to_a_caller_stuck_in_login() {
    let server = common::server("pure-ftpd");
    let (_proxy, via) = common::proxied(&server, |c| {
        // Every banner after the first is held back for longer than the timeout.
        c.faults.push(
            "stall:control:at-reply=220:skip=1:for-ms=30000"
                .parse()
                .unwrap(),
        );
    });
    let mut opts = options(&via, false, false);
    opts.timeout = Duration::from_secs(5);
    let pool = Pool::new(opts, 2);
    let first = pool.get(Purpose::Transfer).expect("first login passes");
    let waiter = {
        let pool = pool.clone();
        std::thread::spawn(move || pool.get(Purpose::Transfer).map(|mut c| c.noop()))
    };
    common::wait_for(Duration::from_secs(5), "second login started", || {
        pool.open_connections() == 2
    });
    drop(first);
    let served = waiter.join().expect("waiter thread");
    assert!(
        matches!(served, Ok(Ok(_))),
        "second caller got the returned connection: {:?}",
        served.map(|r| r.map(|_| ()))
    );
}
