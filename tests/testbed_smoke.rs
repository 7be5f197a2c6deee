//! The test bed itself: every instance answers, scratch directories work through FTP.

mod common;

use common::{TlsKind, server};
use std::time::Duration;

#[test]
fn every_instance_sends_a_220_welcome() {
    let _limited = common::lock_limited();
    for name in common::ALL_SERVERS {
        let s = server(name);
        if s.tls == TlsKind::Implicit {
            // The greeting is inside TLS: server() already checked the TCP connect, and
            // the scratch_dir test lists it over TLS with curl.
            continue;
        }
        let line = common::read_welcome(&s, Duration::from_secs(10));
        let line = line.unwrap_or_else(|e| panic!("{name} on port {}: no welcome: {e}", s.port));
        assert!(line.starts_with("220"), "{name} welcome: {line:?}");
    }
}

#[test]
fn scratch_dir_file_is_listed_through_ftp() {
    let _limited = common::lock_limited();
    for name in common::ALL_SERVERS {
        let s = server(name);
        let (remote, local) = common::scratch_dir(&s, "smoke");
        assert!(remote.starts_with("/t-smoke-"), "{remote}");
        assert_eq!(local, s.local_path(&remote));
        assert_eq!(
            std::fs::read_dir(&local).unwrap().count(),
            0,
            "scratch dir not empty"
        );
        let data = common::random_bytes(5000, 42);
        common::write_local_file(local.join("hello file é.bin"), &data);
        let listing = common::curl_list(&s, &remote).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            listing.contains("hello file é.bin"),
            "{name} listing: {listing}"
        );
        assert!(
            listing.contains("5000"),
            "{name} listing lacks the size: {listing}"
        );
        let back = common::curl_get(&s, &format!("{remote}/hello file é.bin"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(back, data, "{name}: downloaded bytes differ");
        // the FTP user may write into the scratch dir and overwrite the file we wrote
        common::curl_put(&s, &format!("{remote}/hello file é.bin"), b"new")
            .unwrap_or_else(|e| panic!("{name}: upload: {e}"));
        assert_eq!(
            std::fs::read(local.join("hello file é.bin")).unwrap(),
            b"new"
        );
        std::fs::remove_dir_all(&local).unwrap();
    }
}

#[test]
fn scratch_dirs_are_distinct_and_servers_roots_separate() {
    let servers = common::main_servers();
    assert_eq!(servers.len(), 3);
    let a = common::scratch_dir(&servers[0], "distinct");
    let b = common::scratch_dir(&servers[0], "distinct");
    assert_ne!(a.0, b.0);
    let roots: std::collections::HashSet<_> = servers.iter().map(|s| s.root.clone()).collect();
    assert_eq!(roots.len(), 3, "each server has its own root");
    std::fs::remove_dir_all(&a.1).unwrap();
    std::fs::remove_dir_all(&b.1).unwrap();
}

#[test]
fn random_bytes_is_deterministic() {
    assert_eq!(common::random_bytes(100, 7), common::random_bytes(100, 7));
    assert_ne!(common::random_bytes(100, 7), common::random_bytes(100, 8));
    assert_eq!(common::random_bytes(13, 0).len(), 13);
}

#[test]
#[should_panic(
    expected = "not running: run `scripts/testbed.sh install && scripts/testbed.sh start`"
)]
fn unknown_state_file_panics_clearly() {
    let _ = common::server("no-such-instance");
}

#[test]
fn limited_instance_refuses_a_connection_over_its_limit() {
    use std::io::{BufRead, BufReader};
    let _limited = common::lock_limited();
    let s = server("limited");
    let max = s.max_per_ip.expect("limited has a per-IP limit") as usize;
    let welcome = |held: &mut Vec<BufReader<std::net::TcpStream>>| -> String {
        let stream = std::net::TcpStream::connect(s.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut r = BufReader::new(stream);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        held.push(r);
        line
    };
    // Sessions of an earlier test may take a moment to end on the server side: retry a while.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut held = Vec::new();
        let firsts: Vec<String> = (0..max).map(|_| welcome(&mut held)).collect();
        if firsts.iter().all(|l| l.starts_with("220")) {
            let over = welcome(&mut held);
            assert!(
                over.starts_with("421"),
                "connection {} got {over:?}",
                max + 1
            );
            return;
        }
        assert!(std::time::Instant::now() < deadline, "limited: {firsts:?}");
        drop(held);
        std::thread::sleep(Duration::from_millis(200));
    }
}
