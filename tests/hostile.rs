//! Hostile input (issue #5): names that could inject FTP commands, endless server replies,
//! long fuzz runs over every parser, and the handling of credentials and certificates.

mod common;
mod fsmount;

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{PrivateServer, within};
use fsmount::Mount;
use ftpfs::ftp::control::Features;
use ftpfs::ftp::listing::{ListingFormat, parse_listing};
use ftpfs::ftp::reply::{Reply, read_reply};
use proptest::prelude::*;

// ------------------------------------------------------------------ names

fn errno_of<T>(r: io::Result<T>) -> i32 {
    r.err().and_then(|e| e.raw_os_error()).unwrap_or(0)
}

#[test]
fn names_with_cr_lf_are_einval_and_never_reach_the_server() {
    let server = common::server("proftpd");
    let (dir, local) = common::scratch_dir(&server, "crlf");
    common::write_local_file(local.join("ok.txt"), b"ok\n");
    let m = Mount::new(
        &server,
        &dir,
        &fsmount::options(&server, "off", "timeout=5"),
    );
    let bad = ["a\rb", "a\nb", "x\r\nDELE ok.txt", "\r\nRMD .", "end\n"];
    let mut refused = 0;
    for name in bad {
        let p = m.path(name);
        assert_eq!(
            errno_of(fs::File::create(&p)),
            libc::EINVAL,
            "create {name:?}"
        );
        assert_eq!(errno_of(fs::create_dir(&p)), libc::EINVAL, "mkdir {name:?}");
        assert_eq!(
            errno_of(fs::rename(m.path("ok.txt"), &p)),
            libc::EINVAL,
            "rename to {name:?}"
        );
        assert_eq!(
            errno_of(std::os::unix::fs::symlink("ok.txt", &p)),
            libc::EINVAL,
            "symlink {name:?}"
        );
        // a lookup of such a name is simply absent (nothing is sent for it either)
        assert!(fs::metadata(&p).is_err());
        refused += 4;
    }
    let long = "n".repeat(300);
    assert_eq!(
        errno_of(fs::File::create(m.path(&long))),
        libc::ENAMETOOLONG,
        "300-byte name"
    );
    let names: Vec<_> = fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec!["ok.txt"], "something reached the server");
    assert_eq!(fs::read(local.join("ok.txt")).unwrap(), b"ok\n");
    eprintln!("hostile names: {refused} operations refused with EINVAL, none reached the server");
}

// ------------------------------------------------------------------ endless replies

/// Yields `prefix`, then the byte `fill` forever, counting what was read.
struct Endless {
    prefix: Vec<u8>,
    fill: u8,
    read: usize,
}

impl Read for Endless {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(64 * 1024);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = self.prefix.get(self.read + i).copied().unwrap_or(self.fill);
        }
        self.read += n;
        Ok(n)
    }
}

#[test]
fn endless_reply_line_is_refused_after_a_bounded_read() {
    for prefix in ["220-", "220 ", "", "211-FEAT\r\n"] {
        let mut r = BufReader::new(Endless {
            prefix: prefix.as_bytes().to_vec(),
            fill: b'a',
            read: 0,
        });
        let e = read_reply(&mut r).expect_err("an endless line must be an error");
        let read = r.get_ref().read;
        assert!(
            read < 1 << 20,
            "{prefix:?}: read {read} bytes before giving up"
        );
        eprintln!("endless line after {prefix:?}: {e} after {read} bytes");
    }
    // endless *lines* of a multi-line reply (each short): bounded by the line count
    let mut lines = b"211-x\r\n".to_vec();
    lines.extend(std::iter::repeat_n(&b" feature\r\n"[..], 100_000).flatten());
    let mut r = io::Cursor::new(lines);
    assert!(read_reply(&mut r).is_err());
    assert!(r.position() < 1 << 20, "read {} bytes", r.position());
}

/// A fake server on 127.0.0.1 that greets with `220-` and then an endless line; returns its
/// port and a counter of the bytes it managed to send.
fn endless_greeting_server() -> (u16, Arc<Mutex<u64>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(0u64));
    let counter = sent.clone();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let chunk = vec![b'A'; 64 * 1024];
        let _ = s.write_all(b"220-");
        // 1 GiB at most; stops as soon as the client hangs up
        for _ in 0..(1 << 14) {
            if s.write_all(&chunk).is_err() {
                break;
            }
            *counter.lock().unwrap() += chunk.len() as u64;
        }
    });
    (port, sent)
}

/// Runs the ftpfs binary (foreground) with a time bound and returns its output.
fn run_ftpfs(source: &str, opts: &str, envs: &[(&str, &str)]) -> (Output, Duration) {
    let mnt = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let mut cmd = Command::new("timeout");
    cmd.args(["60", fsmount::binary(), source])
        .arg(mnt.path())
        .args(["-f", "-o", opts])
        .env_remove("FTPFS_PASSWORD")
        .stdin(Stdio::null());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(!fsmount::is_mounted(mnt.path()), "left a mount behind");
    (out, t.elapsed())
}

#[test]
fn a_gigabyte_greeting_fails_fast_with_bounded_memory() {
    let (port, sent) = endless_greeting_server();
    let (out, took) = run_ftpfs(
        &format!("ftp://u@127.0.0.1:{port}/"),
        "timeout=5,tls=off",
        &[("FTPFS_PASSWORD", "x")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let sent = *sent.lock().unwrap();
    eprintln!(
        "1 GB greeting: exit {}, {took:?}, server sent {sent} bytes: {err}",
        out.status
    );
    assert!(!out.status.success());
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert!(err.contains("longer than"), "not a protocol error: {err}");
    // the socket buffers hold a few MiB; a client buffering the line would take it all
    assert!(sent < 64 << 20, "the client swallowed {sent} bytes");
}

// ------------------------------------------------------------------ fuzz

/// Cases per fuzz test: several times the unit proptests, about 10-20 s each in a debug
/// build; `FTPFS_FUZZ_CASES` runs longer (or shorter).
fn fuzz_config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("FTPFS_FUZZ_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(4000),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Bytes that look like FTP replies often enough to reach the multi-line paths.
fn reply_like() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "[1-5][0-9][0-9][ -][ -~]{0,40}\r\n",
        "[ -~]{0,40}\r?\n",
        "[1-5][0-9][0-9]\r\n",
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        proptest::collection::vec(line, 0..40).prop_map(|l| l.concat().into_bytes()),
    ]
}

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

proptest! {
    #![proptest_config(fuzz_config())]

    #[test]
    fn fuzz_read_reply(data in reply_like()) {
        let mut r = io::Cursor::new(&data);
        // read replies until the input is exhausted; each must terminate or fail cleanly
        for _ in 0..=data.len() {
            match read_reply(&mut r) {
                Ok(reply) => {
                    prop_assert!((100..600).contains(&reply.code));
                    let _ = reply.text();
                }
                Err(_) => break,
            }
        }
    }

    #[test]
    fn fuzz_listings(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        for format in [ListingFormat::Mlsd, ListingFormat::List] {
            for e in parse_listing(&data, format, now()) {
                prop_assert!(!e.name.is_empty() && e.name != "." && e.name != "..");
                prop_assert!(!e.name.contains(['/', '\0']));
            }
        }
    }

    #[test]
    fn fuzz_listing_lines(lines in proptest::collection::vec(
        prop_oneof![
            "[-dl][-rwxsStT]{9} +[0-9]{1,3} [a-z0-9]{1,8} +[a-z0-9]{1,8} +[0-9]{1,12} [A-Z][a-z]{2} +[0-9]{1,2} +([0-9]{4}|[0-9]{2}:[0-9]{2}) [ -~]{0,30}",
            "[0-9]{2}-[0-9]{2}-[0-9]{2,4} +[0-9]{2}:[0-9]{2}(AM|PM) +(<DIR>|[0-9]{1,12}) +[ -~]{0,30}",
            "([a-zA-Z.]{1,10}=[ -~&&[^;]]{0,20};){0,6} [ -~]{0,30}",
        ],
        0..30,
    )) {
        let data = lines.join("\r\n").into_bytes();
        for format in [ListingFormat::Mlsd, ListingFormat::List] {
            for e in parse_listing(&data, format, now()) {
                prop_assert!(!e.name.contains(['/', '\0']));
                prop_assert!(e.name != "." && e.name != "..");
            }
        }
    }

    #[test]
    fn fuzz_feat(lines in proptest::collection::vec("[ -~]{0,40}", 0..30), code in 100u16..600) {
        let _ = Features::parse(&Reply { code, lines });
    }

    #[test]
    fn fuzz_config_parse(
        source in prop_oneof![
            "[ -~]{0,60}",
            "(ftp|ftps|sftp|http)://[ -~]{0,20}@?[a-z0-9.:\\[\\]%]{0,30}/?[ -~]{0,20}",
            "[a-z@]{0,10}[a-z0-9.]{0,10}:[ -~]{0,20}",
        ],
        options in proptest::collection::vec(
            prop_oneof![
                "[a-z_]{1,16}(=[ -~]{0,20})?(,[a-z_]{1,16}(=[ -~]{0,12})?){0,4}",
                "[ -~]{0,40}",
            ],
            0..4,
        ),
    ) {
        let _ = ftpfs::config::parse(&source, Path::new("/mnt/x"), &options);
    }
}

// ------------------------------------------------------------------ credentials

/// `needle` must not occur in `hay` (bytes of a /proc file or a log).
fn assert_absent(hay: &[u8], needle: &str, what: &str) {
    let found = hay.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(!found, "the password appears in {what}");
}

#[test]
fn password_stays_out_of_proc_and_logs() {
    let pw = format!("Zq9-ftpfs-secret-{}", std::process::id());
    let srv = PrivateServer::start_with_password("pure-ftpd", Some(&pw));
    let m = Mount::with_args(
        &srv.server,
        "/",
        &fsmount::options(&srv.server, "off", "timeout=5"),
        &["-d"],
        "debug",
    );
    fs::write(m.path("hello.txt"), b"hello\n").unwrap();
    assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello\n");
    assert_eq!(fs::read_dir(&m.dir).unwrap().count(), 1);
    let pid = m.daemon_pid();
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
    let (status, log) = m.unmount();
    assert!(status.success(), "{log}");
    assert_absent(&cmdline, &pw, "/proc/PID/cmdline");
    assert_absent(&environ, &pw, "/proc/PID/environ");
    assert!(log.contains("PASS"), "debug log has no login in it: {log}");
    assert_absent(log.as_bytes(), &pw, "the -d debug log");

    // a wrong password: a clear error, without the password in it (pure-ftpd delays its
    // 530 by several seconds, hence the longer timeout)
    let wrong = format!("Wr0ng-ftpfs-{}", std::process::id());
    let (out, _) = run_ftpfs(
        &fsmount::source(&srv.server, "/"),
        "timeout=30,tls=off",
        &[("FTPFS_PASSWORD", &wrong), ("RUST_LOG", "debug")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("login failed"), "{err}");
    assert_absent(&out.stderr, &wrong, "the error output");
}

#[test]
fn password_file_readable_by_others_is_warned_about() {
    let server = common::server("proftpd");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("pass");
    fs::write(&file, format!("{}\n", server.password)).unwrap();
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let opts = fsmount::options(
        &server,
        "off",
        &format!("timeout=5,password_file={}", file.display()),
    );
    let m = Mount::new(&server, "/", &opts);
    let (_, log) = m.unmount();
    assert!(
        log.contains("readable by group or others"),
        "no warning: {log}"
    );
    assert_absent(log.as_bytes(), &server.password, "the warning");
}

/// A plain FTP server without TLS that answers everything and records what it receives.
fn recording_plain_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        // ftpfs may connect more than once; serve a few connections
        for _ in 0..4 {
            let Ok((s, _)) = listener.accept() else {
                return;
            };
            let log = log.clone();
            std::thread::spawn(move || serve_plain(s, &log));
        }
    });
    (port, seen)
}

fn serve_plain(mut s: TcpStream, log: &Mutex<Vec<String>>) {
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let _ = s.write_all(b"220 plain fake server\r\n");
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    while r.read_line(&mut line).is_ok_and(|n| n > 0) {
        log.lock().unwrap().push(line.trim_end().to_string());
        let verb = line.split_whitespace().next().unwrap_or("").to_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "FEAT" => b"211-Features:\r\n UTF8\r\n211 End\r\n",
            "AUTH" => b"502 AUTH not implemented\r\n",
            "USER" => b"331 password please\r\n",
            "PASS" => b"230 logged in\r\n",
            "QUIT" => b"221 bye\r\n",
            _ => b"502 not implemented\r\n",
        };
        if s.write_all(reply).is_err() {
            return;
        }
        line.clear();
    }
}

#[test]
fn tls_required_never_sends_credentials_in_the_clear() {
    let (port, seen) = recording_plain_server();
    let (out, took) = run_ftpfs(
        &format!("ftp://someone@127.0.0.1:{port}/"),
        "timeout=5,tls=required",
        &[("FTPFS_PASSWORD", "cleartext-secret")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let seen = seen.lock().unwrap().clone();
    eprintln!("tls=required vs plain: {took:?}, server saw {seen:?}: {err}");
    assert!(!out.status.success());
    assert!(err.contains("AUTH TLS"), "unclear error: {err}");
    assert!(
        !seen.iter().any(|l| {
            let up = l.to_uppercase();
            up.starts_with("USER") || up.starts_with("PASS")
        }),
        "credentials sent without TLS: {seen:?}"
    );
}

/// A CA of our own (not the test bed's), PEM at `dir/other-ca.pem`.
fn other_ca(dir: &Path) -> std::path::PathBuf {
    let pem = dir.join("other-ca.pem");
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(dir.join("other-ca.key"))
        .arg("-out")
        .arg(&pem)
        .args(["-subj", "/CN=not the ftpfs test CA"])
        .args(["-addext", "basicConstraints=critical,CA:TRUE"])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl could not make a CA");
    pem
}

#[test]
fn wrong_ca_fails_the_mount_with_a_certificate_message() {
    let server = common::server("proftpd");
    let tmp = tempfile::tempdir().unwrap();
    let ca = other_ca(tmp.path());
    let (out, took) = within(Duration::from_secs(60), "mount with a wrong CA", {
        let source = fsmount::source(&server, "/");
        let pw = server.password.clone();
        move || {
            run_ftpfs(
                &source,
                &format!("timeout=5,tls=required,cafile={}", ca.display()),
                &[("FTPFS_PASSWORD", &pw)],
            )
        }
    });
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("wrong CA: {took:?}: {err}");
    assert!(!out.status.success());
    assert!(err.contains("certificate"), "unclear error: {err}");
    assert_absent(&out.stderr, &server.password, "the error output");
}
