//! `ftpfs`: the command line. Parses arguments and `-o` options, reads credentials, logs in
//! before mounting, daemonizes, mounts, and unmounts cleanly on SIGTERM/SIGINT/SIGHUP.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{ArgAction, Parser};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::{debug, info, warn};
use parking_lot::Mutex;

use ftpfs::config::{self, MountConfig};
use ftpfs::credentials::{self, Credentials, Secret};
use ftpfs::fs::Filesystem;
use ftpfs::fuse::{self, MountSettings};
use ftpfs::remote::Remote;

const OPTIONS_HELP: &str = "\
SOURCE:
  ftp://[user@]host[:port][/path]   plain FTP, upgraded with AUTH TLS when offered (port 21)
  ftps://[user@]host[:port][/path]  implicit TLS (port 990)
  [user@]host:[path]                sshfs style, same as ftp://
  The path is the server directory shown at the mount root, relative to the login directory
  (ftp://h/pub) or absolute (ftp://h//srv or ftp://h/%2Fsrv). User and path may be
  percent-encoded (bob%40example.com). IPv6: ftp://[::1]:21/.
  A password in SOURCE (ftp://user:pw@host/) is refused: see PASSWORD below.

OPTIONS (-o name[=value],... ; -o may repeat and may follow the positionals):
  user=NAME            login name (overrides the one in SOURCE)
  port=N               server port (overrides the one in SOURCE; for the sshfs form)
  password_file=FILE   read the password from the first line of FILE (chmod 600 it)
  tls=auto|required|off|implicit
                       auto (default): AUTH TLS if the server offers it; required: fail
                       without TLS; off: never; implicit: like ftps://
  cafile=FILE          trust the CA certificates in this PEM file instead of the system's
  tls_insecure         accept any server certificate (testing only!)
  tls12                use TLS 1.2 only (for servers that break with TLS 1.3)
  active               active mode (PORT/EPRT) instead of passive (EPSV/PASV)
  connections=N        FTP control connections, 1..64 (default 8)
  fetch_ahead=N        when a program reads a directory's files in name order (cp -r, tar,
                       md5sum *), download up to N of the next small ones in parallel
                       before they are opened (default: connections; 0 = off)
  cache_timeout=SECS   cache attributes and listings this long (default 5, 0 = off)
  timeout=SECS         network timeout (default 30)
  ro / rw              read-only / read-write mount (default rw)
  allow_other          let all users access the mount (non-root: needs user_allow_other in
                       /etc/fuse.conf)
  allow_root           let root access the mount too
  default_permissions  let the kernel enforce the permission bits shown
  uid=N, gid=N         owner and group shown for all files (default: the mounting user)
  umask=OCTAL          mask for the permission bits shown (e.g. 022)
  fsname=NAME          source name shown in /proc/mounts (default: SOURCE)
  noexec, noatime, sync, dirsync
                       generic mount flags, passed to the kernel
  debug                debug log, stay in the foreground (like -d)
  Accepted and ignored (from mount(8), mount.fuse3, systemd): _netdev, nofail, noauto, auto,
  defaults, user, users, owner, group, dev, nodev, suid, nosuid, exec, atime, relatime,
  strictatime, lazytime, nodiratime, async, x-systemd.*, x-*, comment=*, subtype=*.
  (The mount is always nodev,nosuid.)

PASSWORD (first that applies):
  1. -o password_file=FILE
  2. the FTPFS_PASSWORD environment variable
  3. ~/.netrc: 'machine HOST login USER password PW' (or a 'default' entry); also supplies
     the user when none was given
  4. a prompt on the terminal (when stdin is a terminal)
  5. anonymous login when no user was given
  Passwords are never accepted on the command line and never logged.

EXAMPLES:
  ftpfs ftp://bob@ftp.example.com/ ~/ftp
  ftpfs -o ro,cache_timeout=60 ftps://ftp.example.com/pub /mnt/pub
  fstab:
    ftp://user@host/ /mnt/ftp fuse.ftpfs _netdev,password_file=/etc/ftpfs.pass 0 0
  Unmount with: fusermount3 -u MOUNTPOINT (or umount as root), or stop the process
  (SIGTERM/SIGINT).

EXIT STATUS: 0 once the mount is live (without -f) or after a clean unmount (with -f);
1 on a bad option, an unreachable server, a failed login or a failed mount; 2 on usage errors.";

/// Mount an FTP or FTPS server as a local directory.
#[derive(Parser, Debug)]
#[command(
    name = "ftpfs",
    version,
    about = "Mount an FTP or FTPS server as a local directory (FUSE)",
    after_long_help = OPTIONS_HELP
)]
struct Cli {
    /// ftp://[user@]host[:port][/path], ftps://... (implicit TLS) or [user@]host:[path]
    source: String,
    /// Existing directory to mount on
    mountpoint: PathBuf,
    /// Mount options, comma-separated (--help lists them all)
    #[arg(short = 'o', value_name = "OPT[,OPT...]", action = ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground
    #[arg(short = 'f')]
    foreground: bool,
    /// Debug log (implies -f)
    #[arg(short = 'd')]
    debug: bool,
}

fn main() -> ExitCode {
    bound_heap_growth();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("ftpfs: {message}");
            ExitCode::from(1)
        }
    }
}

/// Large buffers (read-ahead chunks, write queues) are allocated on one thread and freed on
/// another; glibc's per-thread arenas then keep the freed megabytes, and the dynamic mmap
/// threshold moves such buffers into those arenas after the first free. A fixed threshold
/// keeps every buffer above it in its own mapping, returned to the system when freed.
fn bound_heap_growth() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Everything up to the fork runs single-threaded: parse, check, read credentials.
fn run(cli: Cli) -> Result<(), String> {
    let mut cfg =
        config::parse(&cli.source, &cli.mountpoint, &cli.options).map_err(|e| e.to_string())?;
    cfg.debug |= cli.debug;
    init_logging(cfg.debug);
    debug!("configuration: {cfg:?}");

    let mountpoint = check_mountpoint(&cfg.mountpoint)?;
    // The daemon changes to "/": make the paths it may still read absolute.
    if let Some(ca) = &cfg.cafile {
        cfg.cafile = Some(std::path::absolute(ca).map_err(|e| format!("cafile: {e}"))?);
    }

    let credentials = if cfg.memory_backend {
        None
    } else {
        // Single-threaded here, as Inputs::from_process requires.
        let c = credentials::resolve(&cfg, credentials::Inputs::from_process())?;
        debug!(
            "login as {} (password from {:?})",
            c.user.as_deref().unwrap_or("anonymous"),
            c.source
        );
        Some(c)
    };

    let foreground = cli.foreground || cfg.debug;
    if foreground {
        serve(cfg, credentials, &mountpoint, None)
    } else {
        // The parent exits inside daemonize(); only the child returns.
        let notify = daemonize()?;
        serve(cfg, credentials, &mountpoint, Some(notify))
    }
}

/// Logging: env_logger (RUST_LOG respected; default warn, debug with -d) to stderr, and to
/// syslog (facility daemon) once a daemonized ftpfs has detached from the terminal.
fn init_logging(debug: bool) {
    let default = if debug { "debug" } else { "warn" };
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default));
    builder.format(move |buf, record| {
        if LOG_TO_SYSLOG.load(Ordering::Relaxed) {
            let priority = match record.level() {
                log::Level::Error => libc::LOG_ERR,
                log::Level::Warn => libc::LOG_WARNING,
                log::Level::Info => libc::LOG_INFO,
                log::Level::Debug | log::Level::Trace => libc::LOG_DEBUG,
            };
            writeln!(buf, "{priority} {}: {}", record.target(), record.args())
        } else if debug {
            let ts = buf.timestamp_micros();
            let (level, target) = (record.level(), record.target());
            writeln!(buf, "[{ts} {level:<5} {target}] {}", record.args())
        } else {
            writeln!(buf, "ftpfs: {}: {}", record.level(), record.args())
        }
    });
    builder.target(env_logger::Target::Pipe(Box::new(LogSink::default())));
    let _ = builder.try_init();
}

/// Set once the daemon has detached: log records go to syslog instead of stderr.
static LOG_TO_SYSLOG: AtomicBool = AtomicBool::new(false);

/// Switches logging to syslog (ident "ftpfs", facility daemon).
fn log_to_syslog() {
    // SAFETY: the ident is a static C string, as openlog requires.
    unsafe { libc::openlog(c"ftpfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    LOG_TO_SYSLOG.store(true, Ordering::Relaxed);
}

/// Where formatted log records go: stderr, or syslog line by line ("PRIORITY text").
#[derive(Default)]
struct LogSink {
    pending: Vec<u8>,
}

impl Write for LogSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if !LOG_TO_SYSLOG.load(Ordering::Relaxed) {
            std::io::stderr().write_all(data)?;
            return Ok(data.len());
        }
        self.pending.extend_from_slice(data);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line[..end]);
            let (priority, text) = line.split_once(' ').unwrap_or(("6", &line));
            let priority = priority.parse().unwrap_or(libc::LOG_INFO);
            if let Ok(text) = CString::new(text.replace('\0', "")) {
                // SAFETY: "%s" with one valid C string argument.
                unsafe { libc::syslog(priority, c"%s".as_ptr(), text.as_ptr()) };
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The mountpoint must exist and be a directory; returns its canonical path.
fn check_mountpoint(path: &Path) -> Result<PathBuf, String> {
    let shown = path.display();
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("mountpoint {shown} is not a directory")),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(format!(
                "mountpoint {shown}: {e} (a stale mount? run: fusermount3 -u {shown})"
            ));
        }
        Err(e) => return Err(format!("mountpoint {shown}: {e}")),
    }
    path.canonicalize()
        .map_err(|e| format!("mountpoint {shown}: {e}"))
}

/// Builds the FTP remote and logs in once, so that a wrong password or an unreachable host
/// fails here, before anything is mounted ("login failed for user bob at 127.0.0.1:21: 530
/// Login incorrect.").
fn build_remote(cfg: &MountConfig, password: Option<Secret>) -> Result<Arc<dyn Remote>, String> {
    use ftpfs::config::TlsMode;
    use ftpfs::ftp::pool::Purpose;
    use ftpfs::ftp::tls::{TlsContext, TlsSettings};
    use ftpfs::ftp::{ConnectOptions, FtpError, Password, Pool};
    use ftpfs::remote::ftp::FtpRemote;

    let address = cfg.address();
    let tls = match cfg.tls {
        TlsMode::Off => None,
        _ => Some(
            TlsContext::new(&TlsSettings {
                cafile: cfg.cafile.clone(),
                insecure: cfg.tls_insecure,
                tls12_only: cfg.tls12_only,
            })
            .map_err(|e| e.to_string())?,
        ),
    };
    let user = cfg.login_name().to_string();
    let password = match &password {
        Some(p) => Password::new(p.expose()),
        None => Password::new("anonymous@"),
    };
    let pool = Pool::new(
        ConnectOptions {
            host: cfg.host.clone(),
            port: cfg.port,
            user: user.clone(),
            password,
            tls_mode: cfg.tls,
            tls,
            active: cfg.active,
            timeout: cfg.timeout,
            trust_pasv_ip: false,
        },
        cfg.connections,
    );
    // Log in once now: a wrong password or an unreachable host fails before mounting.
    match pool.get(Purpose::Meta) {
        Ok(conn) => drop(conn),
        Err(FtpError::Reply {
            command,
            code,
            text,
        }) if command == "login" => {
            return Err(format!(
                "login failed for user {user} at {address}: {code} {text}"
            ));
        }
        Err(e) => {
            let message = e.to_string();
            return Err(if message.contains(&address) {
                message
            } else {
                format!("cannot connect to {address}: {message}")
            });
        }
    }
    let remote = FtpRemote::connect(pool, &cfg.base_path)
        .map_err(|e| format!("{address}: {}", e.message))?;
    Ok(Arc::new(remote))
}

/// The in-memory remote behind the hidden, test-only `-o memory_backend`.
fn build_memory_remote() -> Result<Arc<dyn Remote>, String> {
    Ok(Arc::new(ftpfs::remote::memory::MemoryRemote::new()))
}

/// Which phase the process is in, for the signal thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Logging in / mounting: a signal simply ends the process (nothing to clean up).
    Starting,
    /// Mounted: a signal unmounts.
    Mounted,
}

/// Set by main, read by the signal thread; locked around the mount call so a signal that
/// arrives during it waits and then unmounts instead of leaving a dead mount behind.
static PHASE: Mutex<Phase> = Mutex::new(Phase::Starting);

enum Event {
    Signal(i32),
    Ended(std::io::Result<()>),
}

/// Logs in, mounts and serves until unmounted or signalled. `notify` is the pipe to the
/// waiting parent when daemonized.
fn serve(
    cfg: MountConfig,
    credentials: Option<Credentials>,
    mountpoint: &Path,
    notify: Option<OwnedFd>,
) -> Result<(), String> {
    let mut notify = notify.map(std::fs::File::from);
    let fail = |notify: &mut Option<std::fs::File>, message: String| -> Result<(), String> {
        match notify.take() {
            Some(mut pipe) => {
                let _ = pipe.write_all(message.as_bytes());
                // The parent prints it; exit without printing it twice.
                std::process::exit(1);
            }
            None => Err(message),
        }
    };

    // Block the termination signals before any thread exists, so that every thread
    // inherits the mask and only the signal thread receives them (with sigwait).
    let signals = match block_signals() {
        Ok(s) => s,
        Err(e) => return fail(&mut notify, e),
    };
    let (tx, events) = crossbeam_channel::unbounded::<Event>();
    let signal_tx = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("ftpfs-signals".into())
        .spawn(move || signal_loop(signals, signal_tx));
    if let Err(e) = spawned {
        return fail(&mut notify, format!("cannot start the signal thread: {e}"));
    }

    let remote = if cfg.memory_backend {
        build_memory_remote()
    } else {
        let password = credentials.as_ref().and_then(|c| c.password.clone());
        let mut cfg = cfg.clone();
        if let Some(c) = &credentials {
            cfg.user = c.user.clone();
        }
        build_remote(&cfg, password)
    };
    drop(credentials);
    let remote = match remote {
        Ok(r) => r,
        Err(e) => return fail(&mut notify, e),
    };
    let fs = Arc::new(Filesystem::new(remote, cfg.fs_options()));
    let settings = MountSettings::from_config(&cfg);

    let mounted = {
        let mut phase = PHASE.lock();
        match fuse::mount(fs, mountpoint, &settings) {
            Ok(s) => {
                *phase = Phase::Mounted;
                s
            }
            Err(e) => {
                drop(phase);
                return fail(
                    &mut notify,
                    format!("cannot mount on {}: {e}", mountpoint.display()),
                );
            }
        }
    };
    info!("mounted {} on {}", cfg.fsname, mountpoint.display());
    // Our mount's device: to unmount only our own mount, and its minor is the FUSE
    // connection id, for aborting the connection if a detached mount lingers.
    let device = mount_device(mountpoint);
    if let Some((major, minor)) = device {
        fuse::raise_readahead(major, minor);
    }

    if let Some(mut pipe) = notify.take() {
        let _ = pipe.write_all(b"ok");
        drop(pipe);
        detach_stdio();
        log_to_syslog();
    }

    let ended_tx = tx;
    let draining = Arc::clone(&mounted.draining);
    let joiner = std::thread::Builder::new()
        .name("ftpfs-session".into())
        .spawn(move || {
            let _ = ended_tx.send(Event::Ended(mounted.join()));
        });
    if let Err(e) = joiner {
        // Without a joiner we cannot notice an external unmount; still serve signals.
        warn!("cannot start the session thread: {e}");
    }

    match events.recv() {
        Ok(Event::Ended(result)) => {
            info!("unmounted");
            result.map_err(|e| format!("session ended with an error: {e}"))
        }
        Ok(Event::Signal(sig)) => {
            info!("signal {sig}: unmounting {}", mountpoint.display());
            if device.is_some() && mount_device(mountpoint) == device {
                unmount_detached(mountpoint);
            } else {
                debug!("{} is no longer our mount", mountpoint.display());
            }
            shut_down(&events, &draining, device.map(|(_, minor)| minor));
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// After a detached unmount: wait for the session to end (uploads still running finish
/// first). If files are still held open the kernel keeps the session alive; abort the FUSE
/// connection then, and exit.
fn shut_down(events: &Receiver<Event>, draining: &AtomicBool, conn_id: Option<u32>) {
    const GRACE: Duration = Duration::from_secs(3);
    const DRAIN: Duration = Duration::from_secs(60);
    if wait_ended(events, Some(GRACE)) {
        return;
    }
    if draining.load(Ordering::SeqCst) {
        // The kernel is done; uploads of closed files are finishing. Let them.
        info!("waiting for uploads to finish");
        wait_ended(events, None);
        return;
    }
    warn!("files are still open on the unmounted filesystem; aborting the FUSE connection");
    if let Some(id) = conn_id {
        let abort = format!("/sys/fs/fuse/connections/{id}/abort");
        match std::fs::write(&abort, b"1") {
            Ok(()) => {
                wait_ended(events, Some(DRAIN));
            }
            Err(e) => debug!("{abort}: {e}"),
        }
    }
    // Exiting closes /dev/fuse, which aborts the connection in the kernel.
}

/// Waits for the session to end, at most `timeout` (None: without limit). True if it ended.
fn wait_ended(events: &Receiver<Event>, timeout: Option<Duration>) -> bool {
    let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
    let event = match deadline {
        Some(d) => events.recv_deadline(d),
        None => events.recv().map_err(|_| RecvTimeoutError::Disconnected),
    };
    match event {
        Ok(Event::Ended(r)) => {
            if let Err(e) = r {
                debug!("session ended: {e}");
            }
            true
        }
        Ok(Event::Signal(sig)) => {
            warn!("signal {sig} again: exiting without waiting");
            true
        }
        Err(RecvTimeoutError::Timeout) => false,
        Err(RecvTimeoutError::Disconnected) => true,
    }
}

/// The device ("major:minor") of the topmost mount at `mountpoint`, from
/// /proc/self/mountinfo (no request to our own filesystem, which may be stuck).
/// For FUSE the minor is the connection number of /sys/fs/fuse/connections.
fn mount_device(mountpoint: &Path) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let want = mountpoint.as_os_str().as_bytes();
    text.lines().rev().find_map(|line| {
        let mut fields = line.split(' ');
        let dev = fields.nth(2)?;
        let point = fields.nth(1)?;
        if unescape_mountinfo(point) != want {
            return None;
        }
        let (major, minor) = dev.split_once(':')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mountinfo(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Unmounts lazily (MNT_DETACH): works even while files are open (fuser 0.18 #686).
/// Root calls umount2 directly; others go through fusermount3 -u -z.
fn unmount_detached(mountpoint: &Path) {
    let Ok(c_path) = CString::new(mountpoint.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: c_path is a valid NUL-terminated path.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return;
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EINVAL) {
        return; // no longer mounted
    }
    debug!("umount2: {err}; trying fusermount3");
    for helper in ["fusermount3", "fusermount"] {
        match std::process::Command::new(helper)
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .stdin(std::process::Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => return,
            Ok(out) => warn!(
                "{helper} -u -z failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => debug!("{helper}: {e}"),
        }
    }
}

/// The termination signals handled by the signal thread.
const SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// Blocks SIGTERM/SIGINT/SIGHUP in the calling thread (inherited by threads started later).
fn block_signals() -> Result<libc::sigset_t, String> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(format!(
                "cannot block signals: {}",
                std::io::Error::from_raw_os_error(rc)
            ));
        }
        Ok(set)
    }
}

/// Waits for termination signals; before the mount is live a signal ends the process,
/// afterwards it is forwarded to main, which unmounts.
fn signal_loop(set: libc::sigset_t, tx: crossbeam_channel::Sender<Event>) {
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: set was initialised by block_signals; sig is a valid out-pointer.
        let rc = unsafe { libc::sigwait(&set, &mut sig) };
        if rc != 0 {
            continue;
        }
        let phase = PHASE.lock();
        if *phase == Phase::Starting {
            eprintln!("ftpfs: interrupted before the mount was ready");
            std::process::exit(1);
        }
        drop(phase);
        if tx.send(Event::Signal(sig)).is_err() {
            return;
        }
    }
}

/// Forks. The parent waits on a pipe until the child reports "ok" (exit 0) or an error
/// (printed, exit 1) and never returns; the child starts a new session and gets the pipe's
/// write end. Must be called before any thread is started.
fn daemonize() -> Result<OwnedFd, String> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: fds is a valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created by pipe2 and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let _ = std::io::stderr().flush();
    // SAFETY: the process is single-threaded here (documented precondition).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        drop(read_end);
        // SAFETY: setsid has no preconditions; it fails only if already a group leader.
        unsafe { libc::setsid() };
        return Ok(write_end);
    }
    drop(write_end);
    let mut message = String::new();
    let _ = std::fs::File::from(read_end).read_to_string(&mut message);
    if message == "ok" {
        std::process::exit(0);
    }
    if message.is_empty() {
        let mut status = 0;
        // SAFETY: pid is our child; status a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        message = "the mount process ended before the mount was ready".into();
    }
    eprintln!("ftpfs: {message}");
    std::process::exit(1);
}

/// Points stdin/stdout/stderr at /dev/null and leaves the mountpoint's directory.
fn detach_stdio() {
    let _ = std::env::set_current_dir("/");
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors with a valid open fd.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_shape() {
        Cli::command().debug_assert();
        let c = Cli::try_parse_from(["ftpfs", "-o", "ro", "ftp://h/", "/mnt", "-o", "rw,active"])
            .expect("parse");
        assert_eq!(c.options, vec!["ro", "rw,active"]);
        assert_eq!(c.source, "ftp://h/");
        assert_eq!(c.mountpoint, PathBuf::from("/mnt"));
        // mount.fuse3 style: options after the positionals.
        let c =
            Cli::try_parse_from(["ftpfs", "h:/x", "/m", "-o", "_netdev,user=bob"]).expect("parse");
        assert_eq!(c.options, vec!["_netdev,user=bob"]);
        let c = Cli::try_parse_from(["ftpfs", "-f", "-d", "-oro", "h:", "/m"]).expect("parse");
        assert!(c.foreground && c.debug);
        assert_eq!(c.options, vec!["ro"]);
        assert!(Cli::try_parse_from(["ftpfs", "h:"]).is_err());
        assert!(Cli::try_parse_from(["ftpfs", "h:", "/m", "extra"]).is_err());
    }

    #[test]
    fn long_help_documents_options() {
        let help = Cli::command().render_long_help().to_string();
        for needle in [
            "password_file=",
            "FTPFS_PASSWORD",
            ".netrc",
            "fuse.ftpfs _netdev,password_file=/etc/ftpfs.pass 0 0",
            "connections=N",
            "fetch_ahead=N",
            "cache_timeout=SECS",
            "tls=auto|required|off",
            "allow_other",
            "umask=",
        ] {
            assert!(help.contains(needle), "help lacks {needle}");
        }
    }

    #[test]
    fn mountinfo_parsing() {
        assert_eq!(unescape_mountinfo(r"/mnt/a\040b\134c"), b"/mnt/a b\\c");
        assert_eq!(unescape_mountinfo(r"\777"), [0o777u32 as u8]);
        assert_eq!(unescape_mountinfo(r"/x\04"), b"/x\\04");
        assert_eq!(mount_device(Path::new("/nonexistent/mountpoint")), None);
        let root = mount_device(Path::new("/"));
        assert!(root.is_some(), "/ is always mounted");
    }

    #[test]
    fn mountpoint_checks() {
        assert!(
            check_mountpoint(Path::new("/nonexistent/x"))
                .unwrap_err()
                .contains("No such")
        );
        let f = tempfile::NamedTempFile::new().expect("tmp");
        assert!(
            check_mountpoint(f.path())
                .unwrap_err()
                .contains("not a directory")
        );
        let d = tempfile::tempdir().expect("tmp");
        assert!(check_mountpoint(d.path()).is_ok());
    }
}
