//! ftpfs-proxy: an FTP-aware TCP proxy that adds delay, a bandwidth cap and faults between an
//! FTP client and a real server, for tests and benchmarks (there is no `tc netem` here).
//!
//! Prints the bound listen address as the first line on stdout, then runs until SIGTERM or
//! SIGINT (exit 0). Faults it injects are logged at info level on stderr.

use clap::Parser;
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use ftpfs::testproxy::{FaultRule, Proxy, ProxyConfig};

/// FTP-aware TCP proxy with delay, bandwidth cap and fault injection.
#[derive(Parser, Debug)]
#[command(name = "ftpfs-proxy", version, after_help = AFTER_HELP)]
struct Args {
    /// Address clients connect to (port 0: pick a free one; it is printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The real FTP server, HOST:PORT.
    #[arg(long)]
    upstream: String,
    /// One-way delay in milliseconds added to every chunk in each direction (RTT = 2x).
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    /// Bandwidth cap in bytes per second, each direction, shared by all connections.
    #[arg(long, value_name = "BYTES_PER_SEC")]
    bandwidth: Option<u64>,
    /// Probability (0..1) that a connection is dropped at a random point.
    #[arg(long, default_value_t = 0.0)]
    drop_rate: f64,
    /// Seed for --drop-rate (default: from the clock, logged).
    #[arg(long)]
    seed: Option<u64>,
    /// A fault rule (repeatable), e.g. drop:data:after-bytes=100000; see below.
    #[arg(long = "fault", value_name = "RULE")]
    faults: Vec<FaultRule>,
    /// File polled every 100 ms for `stall`, `resume` or `drop` (echo stall > FILE).
    #[arg(long, value_name = "PATH")]
    control_file: Option<PathBuf>,
    /// Source address for active-mode data connections to the client (e.g. 127.0.0.2,
    /// to play a data connection from the wrong host).
    #[arg(long, value_name = "IP")]
    active_source: Option<IpAddr>,
}

const AFTER_HELP: &str = "\
Fault rules: ACTION:SCOPE:TRIGGER[:OPTION]...  or  reply:CODE:TRIGGER[:OPTION]...
  ACTION   drop (RST both sides) | close (FIN both sides) | stall (stop forwarding)
  SCOPE    control | data | any
  TRIGGER  after-bytes=N | at-reply=CODE | on-command=VERB   (the last two: control only)
  OPTION   times=N (fire at most N times) | skip=N (let N occasions pass) | for-ms=N (stall)
  reply:CODE:on-command=VERB answers VERB with CODE in the server's place;
  reply:CODE:at-reply=C replaces the server's reply C.
Examples: drop:control:at-reply=150  stall:data:after-bytes=65536:times=1  reply:550:on-command=STOR";

/// Block SIGTERM and SIGINT in every thread (threads inherit the mask), so `sigwait` in
/// main receives them.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset_t is plain data, initialised by sigemptyset before use; the calls get
    // valid pointers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_signal(set: &libc::sigset_t) -> libc::c_int {
    let mut sig: libc::c_int = 0;
    // SAFETY: valid set and out pointer; sigwait only returns errors for invalid sets.
    unsafe { libc::sigwait(set, &mut sig) };
    sig
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let upstream = match args.upstream.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            eprintln!("ftpfs-proxy: cannot resolve --upstream {}", args.upstream);
            std::process::exit(2);
        }
    };
    if !(0.0..=1.0).contains(&args.drop_rate) {
        eprintln!("ftpfs-proxy: --drop-rate must be between 0 and 1");
        std::process::exit(2);
    }
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let signals = block_signals();
    let mut config = ProxyConfig::new(upstream);
    config.listen = args.listen;
    config.delay = Duration::from_millis(args.delay_ms);
    config.bandwidth = args.bandwidth;
    config.drop_rate = args.drop_rate;
    config.seed = seed;
    config.faults = args.faults;
    config.control_file = args.control_file;
    config.active_source = args.active_source;
    let proxy = match Proxy::start(config) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("ftpfs-proxy: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{}", proxy.addr());
    let _ = out.flush();
    let sig = wait_for_signal(&signals);
    log::info!("signal {sig}: stopping; {:?}", proxy.stats());
    drop(proxy);
}
