//! Shared helpers for integration tests: the real FTP servers of the test bed.
//!
//! `scripts/testbed.sh start` runs vsftpd, proftpd and pure-ftpd (and an implicit-TLS and a
//! connection-limited instance) on 127.0.0.1 and writes a state file of `KEY=VALUE` lines,
//! by default `/run/ftpfs-testbed/env` (override with the env var `FTPFS_TESTBED_ENV`).
//! A test gets a server with [`server`] or [`main_servers`] and a private directory on it with
//! [`scratch_dir`]. A missing server is a test failure (panic), never a silent skip.
//!
//! Use from an integration test with `mod common;`. Only std is used.
#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Where `scripts/testbed.sh start` writes its state file unless `FTPFS_TESTBED_ENV` says otherwise.
pub const DEFAULT_ENV_FILE: &str = "/run/ftpfs-testbed/env";

/// The instances the test bed starts, in order.
pub const ALL_SERVERS: [&str; 5] = ["vsftpd", "proftpd", "pure-ftpd", "implicit", "limited"];

/// How a server speaks TLS on its control port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsKind {
    /// No TLS offered.
    None,
    /// Plain connect, then optional `AUTH TLS` (explicit FTPS).
    Explicit,
    /// TLS from the first byte (implicit FTPS).
    Implicit,
}

/// One running test bed instance.
#[derive(Clone, Debug)]
pub struct Server {
    /// Instance name: vsftpd, proftpd, pure-ftpd, implicit, limited.
    pub name: String,
    /// Server software behind the instance: vsftpd, proftpd or pure-ftpd.
    pub software: String,
    /// Always "127.0.0.1".
    pub host: String,
    /// Control port.
    pub port: u16,
    /// The instance's data root on local disk; the server chroots the user into it, so the
    /// remote path "/x" is `root.join("x")`.
    pub root: PathBuf,
    /// TLS mode of the control port.
    pub tls: TlsKind,
    /// FTP user name (a system user).
    pub user: String,
    /// FTP password.
    pub password: String,
    /// PEM file of the CA that signed the servers' certificate (CN/SAN localhost, 127.0.0.1).
    pub cafile: PathBuf,
    /// uid of the test user (files the server may modify must belong to it).
    pub uid: u32,
    /// gid of the test user.
    pub gid: u32,
    /// The instance's passive port range, inclusive.
    pub pasv_range: (u16, u16),
    /// Maximum connections per IP, where the instance limits them (`limited`: 2).
    pub max_per_ip: Option<u32>,
    /// The server's log file, for diagnosing a failing test.
    pub log: PathBuf,
}

impl Server {
    /// "127.0.0.1:PORT".
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// URL of the server root without credentials: `ftp://127.0.0.1:PORT/` (`ftps://` if implicit).
    pub fn url(&self) -> String {
        let scheme = if self.tls == TlsKind::Implicit {
            "ftps"
        } else {
            "ftp"
        };
        format!("{scheme}://{}:{}/", self.host, self.port)
    }

    /// Local path of a remote path ("/a/b" -> root/a/b).
    pub fn local_path(&self, remote: &str) -> PathBuf {
        self.root.join(remote.trim_start_matches('/'))
    }
}

/// Path of the test bed state file.
pub fn env_file() -> PathBuf {
    std::env::var_os("FTPFS_TESTBED_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ENV_FILE))
}

fn not_running(name: &str, why: &str) -> ! {
    panic!(
        "test server `{name}` not running: run `scripts/testbed.sh install && scripts/testbed.sh start` \
         ({why}; state file {})",
        env_file().display()
    )
}

fn read_env(name: &str) -> HashMap<String, String> {
    let path = env_file();
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => not_running(name, &format!("cannot read {}: {e}", path.display())),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// The running test bed instance `name` (see [`ALL_SERVERS`]). Panics with a clear message if
/// the test bed is not started or the server does not accept a TCP connection.
pub fn server(name: &str) -> Server {
    let env = read_env(name);
    let prefix = name.to_uppercase().replace('-', "_");
    let get = |key: &str| -> String {
        env.get(key)
            .cloned()
            .unwrap_or_else(|| not_running(name, &format!("state file has no {key}")))
    };
    let key = |suffix: &str| format!("{prefix}_{suffix}");
    let port: u16 = get(&key("PORT"))
        .parse()
        .unwrap_or_else(|_| not_running(name, "bad port in state file"));
    let tls = match get(&key("TLS")).as_str() {
        "explicit" => TlsKind::Explicit,
        "implicit" => TlsKind::Implicit,
        _ => TlsKind::None,
    };
    let root = PathBuf::from(get(&key("ROOT")));
    let meta = fs::metadata(&root)
        .unwrap_or_else(|e| not_running(name, &format!("root {}: {e}", root.display())));
    let uid = env
        .get("FTPFS_TEST_UID")
        .and_then(|v| v.parse().ok())
        .unwrap_or(meta.uid());
    let gid = env
        .get("FTPFS_TEST_GID")
        .and_then(|v| v.parse().ok())
        .unwrap_or(meta.gid());
    let pasv_range = env
        .get(&key("PASV_RANGE"))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
        .unwrap_or((0, 0));
    let server = Server {
        name: name.to_string(),
        software: env
            .get(&key("SERVER"))
            .cloned()
            .unwrap_or_else(|| name.to_string()),
        host: env
            .get("FTPFS_TEST_HOST")
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".to_string()),
        port,
        root,
        tls,
        user: get("FTPFS_TEST_USER"),
        password: get("FTPFS_TEST_PASSWORD"),
        cafile: PathBuf::from(get("FTPFS_TEST_CAFILE")),
        uid,
        gid,
        pasv_range,
        max_per_ip: env.get(&key("MAX_PER_IP")).and_then(|v| v.parse().ok()),
        log: env.get(&key("LOG")).map(PathBuf::from).unwrap_or_default(),
    };
    let addr: SocketAddr = server
        .addr()
        .parse()
        .unwrap_or_else(|_| not_running(name, "bad host in state file"));
    if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        not_running(name, &format!("connect to {addr}: {e}"));
    }
    server
}

/// The three main servers: vsftpd, proftpd, pure-ftpd (all plain FTP with optional explicit TLS).
pub fn main_servers() -> Vec<Server> {
    ["vsftpd", "proftpd", "pure-ftpd"]
        .iter()
        .map(|n| server(n))
        .collect()
}

/// Every test bed instance, including `implicit` and `limited`.
pub fn all_servers() -> Vec<Server> {
    ALL_SERVERS.iter().map(|n| server(n)).collect()
}

static LIMITED: Mutex<()> = Mutex::new(());

/// Serialises the tests of one test binary that connect to the `limited` instance (it allows
/// only 2 connections per IP, so two such tests in parallel would see each other's 421s).
pub fn lock_limited() -> MutexGuard<'static, ()> {
    LIMITED.lock().unwrap_or_else(|e| e.into_inner())
}

static SCRATCH_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty directory in the server's root, owned by the test user, unique to this call
/// (test name, process id and a counter), so tests running in parallel never collide.
/// Returns the remote path ("/t-NAME-PID-N") and the same directory on local disk.
pub fn scratch_dir(server: &Server, test_name: &str) -> (String, PathBuf) {
    let clean: String = test_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let n = SCRATCH_COUNTER.fetch_add(1, Ordering::SeqCst);
    let name = format!("t-{clean}-{}-{n}", std::process::id());
    let local = server.root.join(&name);
    if local.exists() {
        // left over from an earlier run whose pid was the same
        fs::remove_dir_all(&local)
            .unwrap_or_else(|e| panic!("remove stale {}: {e}", local.display()));
    }
    fs::create_dir(&local).unwrap_or_else(|e| panic!("create {}: {e}", local.display()));
    std::os::unix::fs::chown(&local, Some(server.uid), Some(server.gid))
        .unwrap_or_else(|e| panic!("chown {}: {e}", local.display()));
    fs::set_permissions(&local, fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", local.display()));
    (format!("/{name}"), local)
}

/// Write a file on local disk (creating parent directories), owned like its parent directory,
/// so the FTP user may read, overwrite and delete it.
pub fn write_local_file(path: impl AsRef<Path>, bytes: &[u8]) {
    let path = path.as_ref();
    let parent = path.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent).unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
    let mut f = fs::File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    f.write_all(bytes)
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    drop(f);
    if let Ok(meta) = fs::metadata(parent) {
        std::os::unix::fs::chown(path, Some(meta.uid()), Some(meta.gid()))
            .unwrap_or_else(|e| panic!("chown {}: {e}", path.display()));
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), the same for the same (len, seed).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed ^ 0x9E37_79B9_7F4A_7C15;
    if x == 0 {
        x = 0x2545_F491_4F6C_DD1D;
    }
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Connect (plain TCP) and read the first reply line, within `timeout`.
/// Not for an implicit-TLS server: its greeting is inside TLS, so this would time out.
pub fn read_welcome(server: &Server, timeout: Duration) -> std::io::Result<String> {
    let addr: SocketAddr = server
        .addr()
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// Percent-encode a remote path for a URL (keeps '/' and unreserved characters).
pub fn url_path(remote: &str) -> String {
    let mut out = String::new();
    for b in remote.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Run curl against the server as an independent FTP client (TLS for `implicit` only).
/// `remote` is a path like "/dir/" (trailing slash = list the directory) or "/dir/file".
pub fn curl(
    server: &Server,
    remote: &str,
    extra: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    let url = format!(
        "{}{}",
        server.url().trim_end_matches('/'),
        url_path(&format!("/{}", remote.trim_start_matches('/')))
    );
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "30", "--user"])
        .arg(format!("{}:{}", server.user, server.password));
    if server.tls == TlsKind::Implicit {
        cmd.arg("--cacert").arg(&server.cafile);
    }
    cmd.args(extra).arg(&url);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot run curl: {e}"))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .map_err(|e| format!("curl stdin: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("curl: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "curl {url} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// LIST of a remote directory through curl, as text.
pub fn curl_list(server: &Server, remote_dir: &str) -> Result<String, String> {
    let dir = format!("{}/", remote_dir.trim_end_matches('/'));
    curl(server, &dir, &[], None).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Download a remote file through curl.
pub fn curl_get(server: &Server, remote: &str) -> Result<Vec<u8>, String> {
    curl(server, remote, &[], None)
}

/// Upload bytes to a remote file through curl.
pub fn curl_put(server: &Server, remote: &str, bytes: &[u8]) -> Result<(), String> {
    curl(server, remote, &["-T", "-"], Some(bytes)).map(|_| ())
}

// ------------------------------------------------------------------ private servers and bounds

/// Runs `f` on its own thread and returns its result; panics if it takes longer than `limit`
/// (the thread is left behind: the test fails anyway, and a hang is what we are testing for).
pub fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("HANG: {what} did not finish within {limit:?}")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            panic!("{what} panicked (see above)")
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after `limit`.
pub fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it for us).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

static PRIVATE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A server process of our own (`scripts/testbed.sh serve`), for tests that kill, stop or
/// restart a server: the shared test bed must never see that. The server leads its own process
/// group, and proftpd and pure-ftpd keep their session processes in it, so signalling the group
/// reaches every session too. Killed (and its root removed) on drop.
pub struct PrivateServer {
    /// The server as the other helpers (mounts, curl) want it; `root` is private to this test.
    pub server: Server,
    child: Option<std::process::Child>,
    password: Option<String>,
}

impl PrivateServer {
    /// Starts `software` (proftpd or pure-ftpd: their sessions die with the group; vsftpd
    /// sessions call setsid()) with the test bed's user and password on a free port.
    pub fn start(software: &str) -> PrivateServer {
        Self::start_with_password(software, None)
    }

    /// Like [`PrivateServer::start`], with a password of its own (pure-ftpd only: the others
    /// check the system user's password, which the shared servers use too).
    pub fn start_with_password(software: &str, password: Option<&str>) -> PrivateServer {
        let shared = server("proftpd");
        let data = shared.root.parent().expect("test bed root has a parent");
        let n = PRIVATE_COUNTER.fetch_add(1, Ordering::SeqCst);
        let root = data.join(format!("p-{software}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir(&root).unwrap_or_else(|e| panic!("create {}: {e}", root.display()));
        std::os::unix::fs::chown(&root, Some(shared.uid), Some(shared.gid)).expect("chown root");
        let port = free_port();
        let mut s = PrivateServer {
            server: Server {
                name: format!("private-{software}-{port}"),
                software: software.to_string(),
                port,
                root,
                password: password.map_or(shared.password.clone(), str::to_string),
                max_per_ip: None,
                pasv_range: (0, 0),
                log: PathBuf::new(),
                ..shared
            },
            child: None,
            password: password.map(str::to_string),
        };
        s.spawn();
        s
    }

    /// Where the server's stdout and stderr go.
    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("ftpfs-private-{}.log", self.server.port))
    }

    /// The server's process id (= its process group id).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/testbed.sh");
        let out = fs::File::create(self.log_path()).expect("server log file");
        let mut cmd = Command::new("bash");
        cmd.arg(script)
            .arg("serve")
            .arg(&self.server.software)
            .arg(self.server.port.to_string())
            .arg(&self.server.root)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup log"))
            .stderr(out);
        if let Some(pw) = &self.password {
            cmd.env("FTPFS_SERVE_PASSWORD", pw);
        }
        self.child = Some(cmd.spawn().expect("start testbed.sh serve"));
        let srv = self.server.clone();
        wait_for(Duration::from_secs(20), "private server greeting", || {
            read_welcome(&srv, Duration::from_secs(2)).is_ok_and(|l| l.starts_with("220"))
        });
    }

    fn signal(&self, sig: i32) {
        let pid = self.pid();
        assert!(pid > 0, "private server not running");
        // SAFETY: signals the process group of a child we spawned as its own group leader.
        unsafe { libc::kill(-pid, sig) };
    }

    /// SIGKILL the server and all its sessions, and reap the listener.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: as in `signal`: our own child's process group.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// SIGKILL only the session processes (children of the listener): every open control and
    /// data connection drops, but the server keeps accepting new ones.
    pub fn kill_sessions(&self) -> usize {
        let pid = self.pid();
        let children = fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        for c in &children {
            // SAFETY: a child of our own server process.
            unsafe { libc::kill(*c, libc::SIGKILL) };
        }
        children.len()
    }

    /// SIGSTOP the server and its sessions: connections stay open but nothing answers.
    pub fn stop(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`PrivateServer::stop`].
    pub fn cont(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the server (if running) and starts it again on the same port and root.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.cont();
        }
        self.kill();
        let _ = fs::remove_dir_all(&self.server.root);
        // testbed.sh serve keeps config, log and PID files in STATE/serve/PORT
        if let Some(state) = env_file().parent() {
            let _ = fs::remove_dir_all(state.join("serve").join(self.server.port.to_string()));
        }
        let _ = fs::remove_file(self.log_path());
    }
}

/// Starts an FTP-aware proxy (`ftpfs::testproxy`) in front of `server`; returns it and a copy
/// of `server` that points at it, so clients (curl helpers, mounts) go through the proxy.
pub fn proxied(
    server: &Server,
    tweak: impl FnOnce(&mut ftpfs::testproxy::ProxyConfig),
) -> (ftpfs::testproxy::Proxy, Server) {
    let upstream: SocketAddr = server.addr().parse().expect("server address");
    let mut config = ftpfs::testproxy::ProxyConfig::new(upstream);
    tweak(&mut config);
    let proxy = ftpfs::testproxy::Proxy::start(config).expect("start proxy");
    let mut via = server.clone();
    via.port = proxy.addr().port();
    (proxy, via)
}
