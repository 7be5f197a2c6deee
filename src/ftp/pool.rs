//! A pool of logged-in control connections shared by the whole mount.
//!
//! Connections open lazily up to a limit. A connection carrying a transfer stays checked out
//! until the transfer ends. Metadata callers get one spare connection beyond the limit (unless
//! the server has shown it limits logins) so `ls` stays fast while every slot is streaming.
//! When every slot is taken, an idle download (one not inside a read call) is preempted: it
//! gives its connection back and transparently restarts at its offset when next read.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::control::{ConnectOptions, Control, ServerQuirks};
use super::error::{FtpError, FtpResult};

/// Idle connections older than this get a NOOP before reuse: servers drop idle sessions.
const IDLE_CHECK: Duration = Duration::from_secs(15);
/// After the server let a wait run out, new requests fail at once for this long instead of
/// each waiting a full timeout on a server that is probably stalled.
const STALL_MEMORY: Duration = Duration::from_secs(2);
/// After a 421 at login lowered the limit, try the configured limit again after this long.
const LIMIT_RECOVERY: Duration = Duration::from_secs(60);

/// What a connection is wanted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A short command or a listing.
    Meta,
    /// A RETR/STOR stream that holds the connection until it ends.
    Transfer,
}

/// Something holding a connection that can give it back on request (an idle download).
pub trait Preemptible: Send + Sync {
    /// Ends the holder's transfer and hands over its connection, or None if busy right now.
    fn preempt(&self) -> Option<PooledControl>;
}

struct State {
    idle: Vec<Control>,
    /// Connections in existence (idle + checked out + being opened).
    open: usize,
    /// Current limit; lowered when the server answers 421 at login.
    limit: usize,
    limit_lowered_at: Option<Instant>,
    /// Whether the server ever refused a login for too many connections.
    server_limits_logins: bool,
    /// When a connection last timed out waiting for the server.
    last_timeout: Option<Instant>,
}

struct Shared {
    opts: Arc<ConnectOptions>,
    quirks: Arc<ServerQuirks>,
    configured: usize,
    state: Mutex<State>,
    changed: Condvar,
    preemptible: Mutex<Vec<Weak<dyn Preemptible>>>,
}

/// A pool of control connections to one server.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

/// A checked-out connection; goes back to the pool on drop (or is closed if broken).
pub struct PooledControl {
    conn: Option<Control>,
    shared: Arc<Shared>,
}

impl Pool {
    /// A pool of at most `max` connections (at least 1) with these settings.
    pub fn new(opts: ConnectOptions, max: usize) -> Pool {
        let max = max.max(1);
        Pool {
            shared: Arc::new(Shared {
                opts: Arc::new(opts),
                quirks: Arc::new(ServerQuirks::default()),
                configured: max,
                state: Mutex::new(State {
                    idle: Vec::new(),
                    open: 0,
                    limit: max,
                    limit_lowered_at: None,
                    server_limits_logins: false,
                    last_timeout: None,
                }),
                changed: Condvar::new(),
                preemptible: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The settings every connection uses.
    pub fn options(&self) -> &ConnectOptions {
        &self.shared.opts
    }

    /// Connections currently open (idle or in use).
    pub fn open_connections(&self) -> usize {
        self.shared.state.lock().open
    }

    /// The current connection limit (lower than configured after 421s at login).
    pub fn limit(&self) -> usize {
        self.shared.state.lock().limit
    }

    /// Registers a download that may be asked to give its connection back.
    pub fn register_preemptible(&self, holder: Weak<dyn Preemptible>) {
        let mut list = self.shared.preemptible.lock();
        list.retain(|w| w.strong_count() > 0);
        list.push(holder);
    }

    /// Checks out a connection, waiting at most the configured timeout.
    pub fn get(&self, purpose: Purpose) -> FtpResult<PooledControl> {
        let deadline = Instant::now() + self.shared.opts.timeout;
        let mut backoff = Duration::from_millis(50);
        let mut login_retried = false;
        loop {
            let mut st = self.shared.state.lock();
            if let Some(at) = st.last_timeout
                && at.elapsed() < STALL_MEMORY
            {
                return Err(FtpError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the server did not answer within the timeout a moment ago",
                )));
            }
            if let Some(lowered) = st.limit_lowered_at
                && lowered.elapsed() > LIMIT_RECOVERY
            {
                st.limit = self.shared.configured;
                st.limit_lowered_at = None;
            }
            if let Some(conn) = take_best_idle(&mut st.idle) {
                drop(st);
                if let Some(conn) = self.revalidate(conn) {
                    return Ok(self.wrap(conn));
                }
                continue;
            }
            let spare = usize::from(purpose == Purpose::Meta && !st.server_limits_logins);
            if st.open < st.limit + spare {
                st.open += 1;
                drop(st);
                let result = match self.connect_racing(deadline) {
                    Raced::Idle(conn) => return Ok(self.wrap(conn)),
                    Raced::Retry => continue,
                    Raced::Own(result) => result,
                };
                let e = match result {
                    Ok(conn) => return Ok(self.wrap(conn)),
                    Err(e) => e,
                };
                if !is_too_many_connections(&e) {
                    // A connection lost during greeting or login (reset, closed) is tried
                    // once more: logging in is safe to repeat, and such a drop says nothing
                    // about the operation waiting for the connection. A timeout is not: it
                    // already cost `timeout=`.
                    if !login_retried && matches!(e, FtpError::Io(_)) && !e.is_timeout() {
                        login_retried = true;
                        log::warn!("login failed ({e}); trying once more");
                        continue;
                    }
                    return Err(e);
                }
                if self.shared.state.lock().open > 0 {
                    continue;
                }
                // Nothing of ours to wait for: other clients hold the server's slots.
                if Instant::now() + backoff > deadline {
                    return Err(e);
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            drop(st);
            if let Some(conn) = self.preempt_one() {
                return Ok(conn);
            }
            let mut st = self.shared.state.lock();
            if !st.idle.is_empty() || st.open < st.limit + spare {
                continue;
            }
            // Wake up now and then to retry preemption: a reader may have become idle.
            let wait_until = deadline.min(Instant::now() + Duration::from_millis(200));
            let _ = self.shared.changed.wait_until(&mut st, wait_until);
            if Instant::now() >= deadline {
                return Err(FtpError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out waiting for a free FTP connection",
                )));
            }
        }
    }

    /// An idle connection if one is ready now and another stays idle for whoever comes
    /// next: never waits, never makes anyone log in (for work that is worth doing only when
    /// it costs nothing extra, like fetching ahead on a fast link).
    pub fn try_get_spare(&self) -> Option<PooledControl> {
        let conn = {
            let mut st = self.shared.state.lock();
            if st.idle.len() < 2 {
                return None;
            }
            take_best_idle(&mut st.idle)?
        };
        self.revalidate(conn).map(|conn| self.wrap(conn))
    }

    /// Runs `op` on a connection. When the connection breaks (reset, timeout, 421) and the
    /// operation is safe to repeat, runs it once more on a newly opened connection.
    pub fn run<T>(
        &self,
        idempotent: bool,
        mut op: impl FnMut(&mut Control) -> FtpResult<T>,
    ) -> FtpResult<T> {
        let mut conn = self.get(Purpose::Meta)?;
        match op(&mut conn) {
            // A timeout is not retried: a stalled server would make the caller wait twice.
            Err(e) if idempotent && conn.is_broken() && !e.is_timeout() => {
                log::warn!("connection lost ({e}); retrying on a new connection");
                drop(conn);
                self.drop_idle();
                let mut fresh = self.get(Purpose::Meta)?;
                op(&mut fresh)
            }
            other => other,
        }
    }

    /// Closes all idle connections: after one broke they are likely dead too (server restart).
    pub fn drop_idle(&self) {
        drop(self.take_idle());
    }

    /// Closes every idle connection politely (at unmount).
    pub fn shutdown(&self) {
        for conn in self.take_idle() {
            conn.quit();
        }
    }

    /// Removes every idle connection from the pool's accounting and hands them over.
    fn take_idle(&self) -> Vec<Control> {
        let idle = {
            let mut st = self.shared.state.lock();
            let idle = std::mem::take(&mut st.idle);
            st.open -= idle.len();
            idle
        };
        self.shared.changed.notify_all();
        idle
    }

    /// Logs in a new connection (its slot already counted in `open`) on a thread of its own,
    /// and meanwhile takes an idle connection if one comes back first: logging in costs
    /// several round trips (and proftpd forks and sets up a process), often far longer than
    /// the transfer that a busy connection is about to finish. A connection whose caller
    /// moved on joins the idle ones when ready.
    fn connect_racing(&self, deadline: Instant) -> Raced {
        let slot: Arc<Mutex<ConnectSlot>> = Arc::new(Mutex::new(ConnectSlot::Waiting));
        let (shared, theirs) = (self.shared.clone(), slot.clone());
        let spawned = std::thread::Builder::new()
            .name("ftpfs-login".into())
            .spawn(move || {
                let result = Control::connect(shared.opts.clone(), shared.quirks.clone());
                let mut st = shared.state.lock();
                if let Err(e) = &result {
                    st.open -= 1;
                    if is_too_many_connections(e) {
                        st.server_limits_logins = true;
                        st.limit = st.open.max(1);
                        st.limit_lowered_at = Some(Instant::now());
                        log::warn!(
                            "server refused a login ({e}); using at most {} connection(s)",
                            st.limit
                        );
                    }
                }
                let mut slot = theirs.lock();
                match (&*slot, result) {
                    (ConnectSlot::Abandoned, Ok(conn)) => st.idle.push(conn),
                    (ConnectSlot::Abandoned, Err(e)) => log::debug!("spare login failed: {e}"),
                    (_, result) => *slot = ConnectSlot::Done(Box::new(result)),
                }
                drop(slot);
                shared.changed.notify_all();
            });
        if let Err(e) = spawned {
            self.shared.state.lock().open -= 1;
            return Raced::Own(Err(FtpError::Io(e)));
        }
        let mut st = self.shared.state.lock();
        loop {
            let mut mine = slot.lock();
            if matches!(&*mine, ConnectSlot::Done(_)) {
                let ConnectSlot::Done(result) =
                    std::mem::replace(&mut *mine, ConnectSlot::Abandoned)
                else {
                    unreachable!("checked above");
                };
                return Raced::Own(*result);
            }
            let idle = take_best_idle(&mut st.idle);
            if idle.is_some() || Instant::now() >= deadline {
                // From here the login thread answers to the pool: it frees the slot on
                // failure and parks the connection on success.
                *mine = ConnectSlot::Abandoned;
            }
            drop(mine);
            if let Some(conn) = idle {
                drop(st);
                return match self.revalidate(conn) {
                    Some(conn) => Raced::Idle(conn),
                    None => Raced::Retry,
                };
            }
            if Instant::now() >= deadline {
                return Raced::Own(Err(FtpError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "timed out logging in to the server",
                ))));
            }
            let _ = self.shared.changed.wait_until(&mut st, deadline);
        }
    }

    fn wrap(&self, conn: Control) -> PooledControl {
        PooledControl {
            conn: Some(conn),
            shared: self.shared.clone(),
        }
    }

    /// NOOPs a connection that sat idle for long; None (and the slot freed) if it is dead.
    fn revalidate(&self, mut conn: Control) -> Option<Control> {
        if conn.last_used().elapsed() < IDLE_CHECK {
            return Some(conn);
        }
        if conn.noop().is_ok() {
            return Some(conn);
        }
        log::debug!("idle connection is dead; replacing it");
        drop(conn);
        let mut st = self.shared.state.lock();
        st.open -= 1;
        self.shared.changed.notify_all();
        None
    }

    fn preempt_one(&self) -> Option<PooledControl> {
        let holders: Vec<Arc<dyn Preemptible>> = {
            let mut list = self.shared.preemptible.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        holders.iter().find_map(|h| h.preempt())
    }
}

impl PooledControl {
    /// Closes a connection whose server stopped answering (a data read timed out), and
    /// makes requests fail fast for a moment (see `STALL_MEMORY`).
    pub fn discard_stalled(mut self) {
        if let Some(conn) = self.conn.take() {
            drop(conn);
            let mut st = self.shared.state.lock();
            st.last_timeout = Some(Instant::now());
            st.open -= 1;
            self.shared.changed.notify_all();
        }
    }
}

impl Deref for PooledControl {
    type Target = Control;
    fn deref(&self) -> &Control {
        self.conn.as_ref().expect("connection present until drop")
    }
}

impl DerefMut for PooledControl {
    fn deref_mut(&mut self) -> &mut Control {
        self.conn.as_mut().expect("connection present until drop")
    }
}

impl Drop for PooledControl {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut st = self.shared.state.lock();
        if conn.timed_out() {
            st.last_timeout = Some(Instant::now());
        }
        if conn.is_broken() || st.open > st.limit + 1 {
            st.open -= 1;
            drop(st);
            drop(conn);
        } else {
            st.idle.push(conn);
            drop(st);
        }
        self.shared.changed.notify_all();
    }
}

/// A login started for one caller, who may have taken another connection meanwhile.
enum ConnectSlot {
    Waiting,
    Done(Box<FtpResult<Control>>),
    /// Nobody waits for this login any more: it goes to the idle connections.
    Abandoned,
}

/// How `connect_racing` got its caller a connection.
enum Raced {
    /// An idle connection came back first.
    Idle(Control),
    /// The caller's own login finished first (or failed).
    Own(FtpResult<Control>),
    /// The idle connection taken was dead: start over.
    Retry,
}

/// Takes the idle connection that can start at once: one whose EPSV sent ahead has been
/// answered, else the one idle longest (its answer is the nearest). The most recently
/// returned connection is the worst pick: its EPSV went out a moment ago, so a transfer on
/// it waits a full round trip that another connection has already paid.
fn take_best_idle(idle: &mut Vec<Control>) -> Option<Control> {
    if idle.is_empty() {
        return None;
    }
    let pick = idle.iter().position(Control::answered).unwrap_or(0);
    Some(idle.remove(pick))
}

/// Whether a login failure means "too many connections" (421, or 530 with that text as
/// some servers send) rather than bad credentials.
fn is_too_many_connections(e: &FtpError) -> bool {
    match e {
        FtpError::Reply { code: 421, .. } => true,
        FtpError::Reply {
            code: 530, text, ..
        } => {
            let t = text.to_ascii_lowercase();
            t.contains("too many") || t.contains("maximum")
        }
        _ => false,
    }
}
