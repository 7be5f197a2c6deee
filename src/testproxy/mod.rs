//! An FTP-aware TCP proxy for tests and benchmarks: a slow or faulty network on loopback.
//!
//! Clients connect to the proxy; it forwards the control connection to the real server and
//! rewrites `227`/`229` replies and `PORT`/`EPRT` commands so every data connection passes
//! through it as well. Every chunk, both directions, control and data, is held for a one-way
//! delay (20 ms RTT = 10 ms) and may go through a token-bucket bandwidth cap shared by all
//! connections (one per direction, like one slow link). Faults are [`FaultRule`]s (drop, close
//! or stall a connection after N bytes, at a reply, on a command; replace a reply) plus
//! random drops at a per-connection rate; the whole network can be stalled and resumed or
//! every connection reset at once, from Rust ([`Proxy`]) or a shell (`--control-file`).
//!
//! Limits, by design:
//! - **TLS**: after a `234` reply to `AUTH TLS` (or TLS from the first byte, implicit FTPS)
//!   nothing can be parsed: the control connection passes through unchanged (delay,
//!   bandwidth, byte faults still apply) but its data connections go straight to the server,
//!   because their ports are inside the encryption. On loopback that works, since proxy and
//!   server share the address 127.0.0.1.
//! - **Active mode** is proxied: `PORT`/`EPRT` are rewritten to a proxy listener on the
//!   server side; when the server connects, the proxy connects on to the client's address
//!   (from `active_source` if set, to play "a data connection from the wrong address").
//!   The `150`/`125` that starts an active transfer is held until that onward connection
//!   exists, as on a real network (the server's connect to the proxy succeeds at once).
//! - A `227` reply's address is ignored: data goes to the upstream host, as clients should do.
//!
//! From a Rust test:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use ftpfs::testproxy::{Proxy, ProxyConfig};
//! use std::time::Duration;
//!
//! let mut config = ProxyConfig::new("127.0.0.1:2121".parse()?);
//! config.delay = Duration::from_millis(10); // 20 ms RTT
//! config.faults.push("drop:data:after-bytes=100000:times=1".parse()?);
//! let proxy = Proxy::start(config)?;
//! let url = format!("ftp://{}/", proxy.addr()); // point the client here
//! proxy.set_stalled(true); // freeze the network ...
//! proxy.set_stalled(false); // ... and thaw it
//! proxy.drop_all(); // reset every open connection
//! println!("{url}: {:?}", proxy.stats());
//! # Ok(())
//! # }
//! ```
//!
//! Threads: one accepting, four per connection (a reader and a writer per direction), one
//! per pending data listener, one watching the control file. All waits are bounded (at most
//! ~200 ms between looks at their state) and every thread ends when its connection does.

pub mod faults;

mod bucket;
mod control_file;
mod net;
mod queue;
mod relay;
mod rewrite;
mod session;

pub use faults::{FaultAction, FaultRule, Scope, Trigger};

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bucket::TokenBucket;
use faults::{ArmedRule, Rng};
use relay::{Conn, Dir};

/// How often the accept loop looks at the shutdown flag.
const TICK: Duration = Duration::from_millis(200);

/// Everything a proxy is started with.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect (`127.0.0.1:0` picks a free port; see [`Proxy::addr`]).
    pub listen: SocketAddr,
    /// The real FTP server's control address.
    pub upstream: SocketAddr,
    /// One-way delay added to every chunk in each direction (RTT = twice this).
    pub delay: Duration,
    /// Bandwidth cap in bytes per second, per direction, shared by all connections.
    pub bandwidth: Option<u64>,
    /// Probability that a new connection is dropped at a random point.
    pub drop_rate: f64,
    /// Seed of the random drops (same seed and connection order, same drops).
    pub seed: u64,
    /// Fault rules.
    pub faults: Vec<FaultRule>,
    /// File polled for `stall`, `resume`, `drop` (see [`Proxy`]).
    pub control_file: Option<PathBuf>,
    /// Source address of the proxy's active-mode data connections to the client.
    pub active_source: Option<IpAddr>,
}

impl ProxyConfig {
    /// A transparent proxy to `upstream` on a free loopback port: no delay, no cap, no faults.
    pub fn new(upstream: SocketAddr) -> Self {
        ProxyConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            upstream,
            delay: Duration::ZERO,
            bandwidth: None,
            drop_rate: 0.0,
            seed: 1,
            faults: Vec::new(),
            control_file: None,
            active_source: None,
        }
    }
}

/// Counters since the proxy started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyStats {
    /// Control connections proxied.
    pub control_connections: u64,
    /// Data connections proxied.
    pub data_connections: u64,
    /// Connections open now (control and data).
    pub open_connections: usize,
    /// Bytes delivered to servers.
    pub bytes_to_server: u64,
    /// Bytes delivered to clients.
    pub bytes_to_client: u64,
    /// Faults injected (rules and random drops).
    pub faults_injected: u64,
    /// 227/229 replies rewritten.
    pub passive_rewrites: u64,
    /// PORT/EPRT commands rewritten.
    pub active_rewrites: u64,
}

/// State shared by the accept loop, every connection and the [`Proxy`] handle.
struct Shared {
    upstream: SocketAddr,
    delay: Duration,
    drop_rate: f64,
    active_source: Option<IpAddr>,
    rules: Vec<Arc<ArmedRule>>,
    rng: Mutex<Rng>,
    buckets: Option<[TokenBucket; 2]>,
    shutdown: AtomicBool,
    stalled: Mutex<bool>,
    stall_cv: Condvar,
    conns: Mutex<HashMap<u64, Weak<Conn>>>,
    next_id: AtomicU64,
    control_connections: AtomicU64,
    data_connections: AtomicU64,
    bytes: [AtomicU64; 2],
    faults: AtomicU64,
    passive_rewrites: AtomicU64,
    active_rewrites: AtomicU64,
    threads: Mutex<usize>,
    threads_cv: Condvar,
}

/// Decrements the thread count when a proxy thread ends (or never started).
struct ThreadGuard(Arc<Shared>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        let mut n = self.0.threads.lock();
        *n -= 1;
        self.0.threads_cv.notify_all();
    }
}

impl Shared {
    fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    fn is_stalled(&self) -> bool {
        *self.stalled.lock()
    }

    fn set_stalled(&self, on: bool) {
        *self.stalled.lock() = on;
        self.stall_cv.notify_all();
        log::info!("network {}", if on { "stalled" } else { "resumed" });
    }

    /// Sleep until a stall changes or a connection dies, at most `tick`.
    fn wait_stall_change(&self, tick: Duration) {
        let mut g = self.stalled.lock();
        self.stall_cv.wait_for(&mut g, tick);
    }

    fn wake_stalled(&self) {
        let _g = self.stalled.lock();
        self.stall_cv.notify_all();
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn register(&self, conn: &Arc<Conn>) {
        let counter = if conn.is_control {
            &self.control_connections
        } else {
            &self.data_connections
        };
        counter.fetch_add(1, Ordering::SeqCst);
        self.conns.lock().insert(conn.id, Arc::downgrade(conn));
    }

    fn unregister(&self, id: u64) {
        self.conns.lock().remove(&id);
    }

    fn note_fault(&self) {
        self.faults.fetch_add(1, Ordering::SeqCst);
    }

    fn note_bytes(&self, dir: Dir, n: usize) {
        self.bytes[dir as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    fn note_passive_rewrite(&self) {
        self.passive_rewrites.fetch_add(1, Ordering::SeqCst);
    }

    fn note_active_rewrite(&self) {
        self.active_rewrites.fetch_add(1, Ordering::SeqCst);
    }

    /// Reset every open connection; returns how many.
    fn drop_all(&self) -> usize {
        let conns: Vec<Arc<Conn>> = self
            .conns
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        for c in &conns {
            c.reset();
        }
        conns.len()
    }

    /// Run `job` on a new thread that the proxy waits for when it stops.
    fn spawn(self: &Arc<Self>, name: String, job: Box<dyn FnOnce() + Send>) -> io::Result<()> {
        *self.threads.lock() += 1;
        let guard = ThreadGuard(Arc::clone(self));
        std::thread::Builder::new()
            .name(name)
            .stack_size(256 * 1024)
            .spawn(move || {
                let _guard = guard;
                job()
            })
            .map(|_| ())
    }

    fn stats(&self) -> ProxyStats {
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        ProxyStats {
            control_connections: get(&self.control_connections),
            data_connections: get(&self.data_connections),
            open_connections: self.conns.lock().len(),
            bytes_to_server: get(&self.bytes[Dir::ToServer as usize]),
            bytes_to_client: get(&self.bytes[Dir::ToClient as usize]),
            faults_injected: get(&self.faults),
            passive_rewrites: get(&self.passive_rewrites),
            active_rewrites: get(&self.active_rewrites),
        }
    }
}

/// A running proxy; background threads do the work, dropping the handle stops them and
/// resets every connection.
///
/// A shell script gets the same controls through `control_file`: write `stall`, `resume` or
/// `drop` into it (`echo stall > FILE`); the proxy looks at the file every 100 ms and acts
/// on its last word whenever the file changes.
pub struct Proxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    threads: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Bind the listen address and start serving.
    pub fn start(config: ProxyConfig) -> io::Result<Proxy> {
        let listener = TcpListener::bind(config.listen)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream: config.upstream,
            delay: config.delay,
            drop_rate: config.drop_rate,
            active_source: config.active_source,
            rules: config
                .faults
                .iter()
                .cloned()
                .map(|r| Arc::new(ArmedRule::new(r)))
                .collect(),
            rng: Mutex::new(Rng::new(config.seed)),
            buckets: config
                .bandwidth
                .map(|rate| [TokenBucket::new(rate), TokenBucket::new(rate)]),
            shutdown: AtomicBool::new(false),
            stalled: Mutex::new(false),
            stall_cv: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            control_connections: AtomicU64::new(0),
            data_connections: AtomicU64::new(0),
            bytes: [AtomicU64::new(0), AtomicU64::new(0)],
            faults: AtomicU64::new(0),
            passive_rewrites: AtomicU64::new(0),
            active_rewrites: AtomicU64::new(0),
            threads: Mutex::new(0),
            threads_cv: Condvar::new(),
        });
        let mut proxy = Proxy {
            shared: Arc::clone(&shared),
            addr,
            threads: Vec::new(),
        };
        let s = Arc::clone(&shared);
        proxy.threads.push(
            std::thread::Builder::new()
                .name("proxy-accept".into())
                .spawn(move || accept_loop(s, listener))?,
        );
        if let Some(path) = config.control_file {
            let s = Arc::clone(&shared);
            proxy.threads.push(
                std::thread::Builder::new()
                    .name("proxy-control".into())
                    .spawn(move || control_file::watch(&path, &s))?,
            );
        }
        log::info!(
            "proxy {addr} -> {}: delay {:?} one way, bandwidth {}, drop rate {} (seed {}), {} fault rules",
            config.upstream,
            config.delay,
            config
                .bandwidth
                .map_or("unlimited".to_string(), |b| format!("{b} B/s")),
            config.drop_rate,
            config.seed,
            config.faults.len()
        );
        Ok(proxy)
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop (true) or resume (false) forwarding on every connection, both directions,
    /// without closing anything: a frozen network. New connections are accepted but stay
    /// silent too.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.set_stalled(stalled);
    }

    /// Is the network stalled (by [`Proxy::set_stalled`] or the control file)?
    pub fn is_stalled(&self) -> bool {
        self.shared.is_stalled()
    }

    /// Reset every open connection now (RST to both sides); returns how many there were.
    pub fn drop_all(&self) -> usize {
        let n = self.shared.drop_all();
        log::info!("fault: dropped all {n} open connections");
        n
    }

    /// Counters since start.
    pub fn stats(&self) -> ProxyStats {
        self.shared.stats()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.drop_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Connection threads notice the shutdown within a tick; wait for them, bounded.
        let end = Instant::now() + Duration::from_secs(5);
        let mut n = self.shared.threads.lock();
        while *n > 0 && Instant::now() < end {
            self.shared.threads_cv.wait_for(&mut n, TICK);
        }
        if *n > 0 {
            log::warn!("proxy stopped with {} threads still ending", *n);
        }
    }
}

/// Accept clients until shutdown; each gets its own thread (connecting upstream may wait).
fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    while !shared.is_shutting_down() {
        match net::wait_readable(listener.as_raw_fd(), TICK) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                log::warn!("listener: {e}");
                std::thread::sleep(TICK);
                continue;
            }
        }
        match listener.accept() {
            Ok((client, peer)) => {
                log::debug!("client {peer} connected");
                let s = Arc::clone(&shared);
                let job = Box::new(move || session::serve_client(s, client));
                if let Err(e) = shared.spawn("proxy-client".into(), job) {
                    log::warn!("client {peer}: cannot start thread: {e}");
                }
            }
            Err(e) => log::debug!("accept: {e}"),
        }
    }
}
