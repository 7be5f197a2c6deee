//! The test proxy (`ftpfs::testproxy`, binary `ftpfs-proxy`) against the real servers of the
//! test bed, with curl as the client: passive and active data through the proxy, delay,
//! bandwidth cap, fault rules, random drops, stall/resume, drop-all, the control file,
//! TLS pass-through and the wrong-source-address option.
//!
//! Timing assertions are lower bounds only: a loaded machine makes things slower, never faster.

mod common;

use common::{Server, curl, curl_get, curl_list, curl_put, proxied, random_bytes, scratch_dir};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A scratch directory holding one file `f.bin` of `len` random bytes.
fn dir_with_file(server: &Server, test: &str, len: usize) -> (String, Vec<u8>) {
    let (remote, local) = scratch_dir(server, test);
    let bytes = random_bytes(len, len as u64);
    common::write_local_file(local.join("f.bin"), &bytes);
    (remote, bytes)
}

/// List and download through the proxy with extra curl options; checks the data went
/// through the proxy.
fn list_and_get(server: &Server, test: &str, opts: &[&str], active: bool) {
    let (remote, bytes) = dir_with_file(server, test, 300_000);
    let (proxy, via) = proxied(server, |_| {});
    let listing = curl(&via, &format!("{remote}/"), opts, None)
        .unwrap_or_else(|e| panic!("{}: {e}", server.name));
    assert!(
        String::from_utf8_lossy(&listing).contains("f.bin"),
        "{}: listing lacks f.bin",
        server.name
    );
    let got = curl(&via, &format!("{remote}/f.bin"), opts, None)
        .unwrap_or_else(|e| panic!("{}: {e}", server.name));
    assert!(got == bytes, "{}: downloaded bytes differ", server.name);
    let stats = proxy.stats();
    assert_eq!(stats.control_connections, 2, "{}: {stats:?}", server.name);
    assert_eq!(stats.data_connections, 2, "{}: {stats:?}", server.name);
    let rewrites = if active {
        stats.active_rewrites
    } else {
        stats.passive_rewrites
    };
    assert_eq!(rewrites, 2, "{}: {stats:?}", server.name);
    assert!(stats.bytes_to_client >= 300_000, "{stats:?}");
}

#[test]
fn passive_epsv_through_proxy_on_each_server() {
    for s in common::main_servers() {
        list_and_get(&s, "px-epsv", &[], false);
    }
}

#[test]
fn passive_pasv_through_proxy_on_each_server() {
    for s in common::main_servers() {
        list_and_get(&s, "px-pasv", &["--disable-epsv"], false);
    }
}

#[test]
fn active_eprt_and_port_through_proxy_on_each_server() {
    for s in common::main_servers() {
        list_and_get(&s, "px-eprt", &["-P", "127.0.0.1"], true);
        list_and_get(&s, "px-port", &["-P", "127.0.0.1", "--disable-eprt"], true);
    }
}

#[test]
fn upload_through_proxy_on_each_server() {
    for s in common::main_servers() {
        let (remote, local) = scratch_dir(&s, "px-put");
        let (_proxy, via) = proxied(&s, |c| c.delay = Duration::from_millis(2));
        let bytes = random_bytes(500_000, 9);
        curl_put(&via, &format!("{remote}/up.bin"), &bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", s.name));
        let stored = std::fs::read(local.join("up.bin")).expect("uploaded file");
        assert!(stored == bytes, "{}: uploaded bytes differ", s.name);
    }
}

#[test]
fn delay_of_10ms_makes_a_listing_take_at_least_4_round_trips() {
    let s = common::server("vsftpd");
    let (remote, _) = dir_with_file(&s, "px-delay", 10);
    let (_proxy, via) = proxied(&s, |c| c.delay = Duration::from_millis(10));
    let start = Instant::now();
    let listing = curl_list(&via, &remote).expect("listing through delayed proxy");
    let took = start.elapsed();
    assert!(listing.contains("f.bin"));
    // greeting, USER, PASS, PWD, CWD, EPSV, TYPE, LIST, 226: far more than 4 round trips
    assert!(
        took >= Duration::from_millis(80),
        "listing took only {took:?}"
    );
}

#[test]
fn bandwidth_cap_of_1mib_makes_2mib_take_at_least_1_5s() {
    let s = common::server("proftpd");
    let (remote, bytes) = dir_with_file(&s, "px-bw", 2 << 20);
    let (_proxy, via) = proxied(&s, |c| c.bandwidth = Some(1 << 20));
    let start = Instant::now();
    let got = curl_get(&via, &format!("{remote}/f.bin")).expect("capped download");
    let took = start.elapsed();
    assert!(got == bytes, "capped download differs");
    assert!(
        took >= Duration::from_millis(1500),
        "2 MiB at 1 MiB/s took {took:?}"
    );
}

#[test]
fn drop_data_after_bytes_fails_the_download_once() {
    let s = common::server("pure-ftpd");
    let (remote, bytes) = dir_with_file(&s, "px-dropdata", 1 << 20);
    let rule = "drop:data:after-bytes=100000:times=1"
        .parse()
        .expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    let path = format!("{remote}/f.bin");
    let err = curl_get(&via, &path).expect_err("download through a dropped data connection");
    assert!(!err.is_empty());
    assert_eq!(proxy.stats().faults_injected, 1);
    // times=1: the next download is untouched
    assert!(curl_get(&via, &path).expect("second download") == bytes);
}

#[test]
fn drop_control_at_reply_150_fails_the_download() {
    let s = common::server("vsftpd");
    let (remote, _) = dir_with_file(&s, "px-drop150", 1000);
    let rule = "drop:control:at-reply=150".parse().expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    curl_get(&via, &format!("{remote}/f.bin")).expect_err("download with 150 dropped");
    assert_eq!(proxy.stats().faults_injected, 1);
}

#[test]
fn close_control_on_command_fails_the_listing() {
    let s = common::server("proftpd");
    let (remote, _) = dir_with_file(&s, "px-closecwd", 10);
    let rule = "close:control:on-command=CWD".parse().expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    curl_list(&via, &remote).expect_err("listing with CWD closed");
    assert_eq!(proxy.stats().faults_injected, 1);
}

#[test]
fn injected_reply_on_command_answers_in_the_servers_place() {
    let s = common::server("pure-ftpd");
    let (remote, bytes) = dir_with_file(&s, "px-reply", 1000);
    let rule = "reply:550:on-command=RETR:times=1".parse().expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    let path = format!("{remote}/f.bin");
    let err = curl_get(&via, &path).expect_err("RETR answered with 550");
    assert!(err.contains("550"), "{err}");
    assert!(curl_get(&via, &path).expect("second download") == bytes);
    assert_eq!(proxy.stats().faults_injected, 1);
}

#[test]
fn replaced_226_makes_the_download_fail() {
    let s = common::server("vsftpd");
    let (remote, _) = dir_with_file(&s, "px-repl226", 5000);
    let rule = "reply:451:at-reply=226".parse().expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    let err = curl_get(&via, &format!("{remote}/f.bin")).expect_err("226 replaced by 451");
    assert!(err.contains("451"), "{err}");
    assert!(proxy.stats().faults_injected >= 1);
}

#[test]
fn stall_then_resume_completes_the_download() {
    let s = common::server("proftpd");
    let (remote, bytes) = dir_with_file(&s, "px-stall", 200_000);
    let (proxy, via) = proxied(&s, |_| {});
    proxy.set_stalled(true);
    assert!(proxy.is_stalled());
    let start = Instant::now();
    let path = format!("{remote}/f.bin");
    let job = std::thread::spawn(move || curl_get(&via, &path));
    std::thread::sleep(Duration::from_secs(1));
    assert!(!job.is_finished(), "curl finished through a stalled proxy");
    assert!(proxy.stats().bytes_to_client == 0, "{:?}", proxy.stats());
    proxy.set_stalled(false);
    let got = job
        .join()
        .expect("curl thread")
        .expect("download after resume");
    assert!(got == bytes);
    assert!(start.elapsed() >= Duration::from_secs(1));
}

#[test]
fn drop_all_resets_stalled_connections_and_the_client_fails() {
    let s = common::server("vsftpd");
    let (remote, _) = dir_with_file(&s, "px-dropall", 1000);
    let (proxy, via) = proxied(&s, |_| {});
    proxy.set_stalled(true);
    let path = format!("{remote}/f.bin");
    let job = std::thread::spawn(move || curl_get(&via, &path));
    // wait until curl's control connection is there (bounded)
    let end = Instant::now() + Duration::from_secs(10);
    while proxy.stats().open_connections == 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(proxy.drop_all() >= 1);
    job.join()
        .expect("curl thread")
        .expect_err("download through dropped connections");
    proxy.set_stalled(false);
}

#[test]
fn stall_fault_on_data_holds_the_client_and_ends_when_it_gives_up() {
    let s = common::server("pure-ftpd");
    let (remote, _) = dir_with_file(&s, "px-stallfault", 1 << 20);
    let rule = "stall:data:after-bytes=50000".parse().expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    let start = Instant::now();
    curl(&via, &format!("{remote}/f.bin"), &["--max-time", "2"], None)
        .expect_err("download through a stalled data connection");
    assert!(start.elapsed() >= Duration::from_secs(2));
    let stats = proxy.stats();
    assert_eq!(stats.faults_injected, 1);
    assert!(stats.bytes_to_client >= 50_000, "{stats:?}");
    // curl gave up: the stalled connection is reset and its threads end (bounded wait)
    let end = Instant::now() + Duration::from_secs(10);
    while proxy.stats().open_connections > 0 && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(proxy.stats().open_connections, 0);
}

#[test]
fn stall_fault_for_a_while_delays_but_completes_the_download() {
    let s = common::server("vsftpd");
    let (remote, bytes) = dir_with_file(&s, "px-stallfor", 300_000);
    let rule = "stall:data:after-bytes=50000:for-ms=1000"
        .parse()
        .expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    let start = Instant::now();
    let got = curl_get(&via, &format!("{remote}/f.bin")).expect("download after the stall");
    assert!(got == bytes);
    assert!(start.elapsed() >= Duration::from_millis(1000));
    assert_eq!(proxy.stats().faults_injected, 1);
}

#[test]
fn drop_control_after_bytes_breaks_the_login() {
    let s = common::server("proftpd");
    let (remote, _) = dir_with_file(&s, "px-dropctl", 10);
    let rule = "drop:control:after-bytes=60".parse().expect("rule");
    let (proxy, via) = proxied(&s, |c| c.faults = vec![rule]);
    curl_list(&via, &remote).expect_err("listing with the control connection reset");
    assert_eq!(proxy.stats().faults_injected, 1);
}

#[test]
fn random_drops_are_seeded_and_break_sessions() {
    let s = common::server("proftpd");
    let (remote, _) = dir_with_file(&s, "px-random", 1000);
    let (proxy, via) = proxied(&s, |c| {
        c.drop_rate = 1.0;
        c.seed = 7;
    });
    let failures = (0..5).filter(|_| curl_list(&via, &remote).is_err()).count();
    assert!(failures >= 1, "rate 1.0 never broke a session");
    assert!(proxy.stats().faults_injected >= failures as u64);
    drop(proxy);
    let (_quiet, via) = proxied(&s, |c| c.drop_rate = 0.0);
    curl_list(&via, &remote).expect("rate 0 never drops");
}

/// Read one reply (multi-line aware) from a control connection; returns its code.
fn read_reply(r: &mut BufReader<TcpStream>) -> u16 {
    let mut first = String::new();
    r.read_line(&mut first).expect("reply");
    let code: u16 = first
        .get(..3)
        .and_then(|c| c.parse().ok())
        .expect("reply code");
    if first.as_bytes().get(3) == Some(&b'-') {
        loop {
            let mut line = String::new();
            assert!(
                r.read_line(&mut line).expect("reply line") > 0,
                "EOF in reply"
            );
            if line.starts_with(&format!("{code} ")) {
                break;
            }
        }
    }
    code
}

#[test]
fn active_source_makes_data_come_from_the_wrong_address() {
    let s = common::server("vsftpd");
    let (remote, _) = dir_with_file(&s, "px-wrongsrc", 10);
    let (_proxy, via) = proxied(&s, |c| c.active_source = Some("127.0.0.2".parse().unwrap()));
    let ctl = TcpStream::connect(("127.0.0.1", via.port)).expect("connect proxy");
    ctl.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut w = ctl.try_clone().expect("clone");
    let mut r = BufReader::new(ctl);
    assert_eq!(read_reply(&mut r), 220);
    let mut cmd = |line: String, r: &mut BufReader<TcpStream>| {
        w.write_all(format!("{line}\r\n").as_bytes()).expect("send");
        read_reply(r)
    };
    assert_eq!(cmd(format!("USER {}", s.user), &mut r), 331);
    assert_eq!(cmd(format!("PASS {}", s.password), &mut r), 230);
    let me = TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = me.local_addr().expect("addr").port();
    let port_cmd = format!("PORT 127,0,0,1,{},{}", port >> 8, port & 0xff);
    assert_eq!(cmd(port_cmd, &mut r), 200);
    assert_eq!(cmd(format!("LIST {remote}"), &mut r), 150);
    me.set_nonblocking(true).expect("nonblocking");
    let end = Instant::now() + Duration::from_secs(10);
    let peer = loop {
        match me.accept() {
            Ok((_, peer)) => break peer,
            Err(_) if Instant::now() < end => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("no data connection: {e}"),
        }
    };
    assert_eq!(peer.ip().to_string(), "127.0.0.2");
}

#[test]
fn tls_control_passes_through_unchanged() {
    let s = common::server("vsftpd");
    let (remote, bytes) = dir_with_file(&s, "px-tls", 20_000);
    let (proxy, via) = proxied(&s, |c| c.delay = Duration::from_millis(1));
    let cafile = s.cafile.to_string_lossy().into_owned();
    let opts = ["--ssl-reqd", "--cacert", cafile.as_str()];
    let got = curl(&via, &format!("{remote}/f.bin"), &opts, None).expect("FTPS through proxy");
    assert!(got == bytes);
    let stats = proxy.stats();
    // data went straight to the server: its port was inside TLS
    assert_eq!(
        (stats.passive_rewrites, stats.data_connections),
        (0, 0),
        "{stats:?}"
    );
    assert!(
        stats.bytes_to_client > 1000,
        "TLS handshake went through: {stats:?}"
    );
}

#[test]
fn implicit_tls_passes_through_unchanged() {
    let s = common::server("implicit");
    let (remote, bytes) = dir_with_file(&s, "px-implicit", 20_000);
    let (proxy, via) = proxied(&s, |_| {});
    let got = curl_get(&via, &format!("{remote}/f.bin")).expect("implicit FTPS through proxy");
    assert!(got == bytes);
    let stats = proxy.stats();
    assert_eq!(
        (stats.passive_rewrites, stats.data_connections),
        (0, 0),
        "{stats:?}"
    );
}

#[test]
fn binary_prints_its_address_obeys_the_control_file_and_exits_0_on_sigterm() {
    let s = common::server("pure-ftpd");
    let (remote, _) = dir_with_file(&s, "px-bin", 10);
    let ctl = std::env::temp_dir().join(format!("ftpfs-proxy-ctl-{}", std::process::id()));
    let _ = std::fs::remove_file(&ctl);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ftpfs-proxy"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &s.addr(),
            "--delay-ms",
            "1",
        ])
        .arg("--control-file")
        .arg(&ctl)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ftpfs-proxy");
    let mut first = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("address line");
    let addr: SocketAddr = first.trim().parse().expect("first line is the address");
    let mut via = s.clone();
    via.port = addr.port();
    curl_list(&via, &remote).expect("listing through the binary");

    std::fs::write(&ctl, "stall\n").expect("write control file");
    std::thread::sleep(Duration::from_millis(300));
    curl(&via, &format!("{remote}/"), &["--max-time", "2"], None)
        .expect_err("listing through a stalled proxy");
    std::fs::write(&ctl, "resume\n").expect("write control file");
    std::thread::sleep(Duration::from_millis(300));
    curl_list(&via, &remote).expect("listing after resume");

    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < end, "ftpfs-proxy ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = std::fs::remove_file(&ctl);
    assert!(status.success(), "{status}");
}
