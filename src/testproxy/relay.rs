//! Byte pumping for one proxied connection (control or data): per direction a reader thread
//! that stamps chunks with their due time, and a writer thread that releases them when due,
//! through the bandwidth cap, honouring stalls and firing byte-count faults.
//!
//! Delay is a queue, not a sleep per read: the reader keeps reading while earlier chunks wait,
//! so a 10 ms delay costs 10 ms of latency, not throughput.

use parking_lot::Mutex;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Shared;
use super::faults::{ArmedRule, FaultAction, RandomDrop, Trigger, random_drop};
use super::net;
use super::queue::{Item, Timed, TimedQueue};

/// Longest a thread blocks before looking at the connection's state again.
const TICK: Duration = Duration::from_millis(100);
/// Bytes read per chunk.
const CHUNK: usize = 64 * 1024;
/// Bytes a direction may hold in its delay queue: enough for ~1.6 GB/s at 10 ms.
const QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// Direction of travel through a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    ToServer = 0,
    /// Server to client.
    ToClient = 1,
}

/// Turns bytes read from one side into items for the other side (FTP filters rewrite,
/// drop or inject; data connections pass bytes through).
pub trait Filter: Send {
    /// Handle bytes read from the source.
    fn feed(&mut self, conn: &Conn, bytes: &[u8], out: &mut Vec<Item>);
    /// The source closed: flush whatever is held back.
    fn finish(&mut self, _conn: &Conn, _out: &mut Vec<Item>) {}
}

/// The filter of data connections: bytes pass unchanged.
pub struct PassThrough;

impl Filter for PassThrough {
    fn feed(&mut self, _conn: &Conn, bytes: &[u8], out: &mut Vec<Item>) {
        out.push(Item::Data(bytes.to_vec()));
    }
}

/// A fault that fires when the connection's byte count reaches `at`.
struct ByteTrigger {
    at: u64,
    action: FaultAction,
    why: String,
    rule: Option<Arc<ArmedRule>>,
}

/// Mutable per-connection fault state.
struct FaultState {
    /// Bytes forwarded so far, both directions together.
    bytes: u64,
    triggers: Vec<ByteTrigger>,
    /// None: flowing. Some(None): stalled for good. Some(Some(t)): stalled until t.
    stall: Option<Option<Instant>>,
}

/// One proxied TCP connection: the socket to the client, the socket to the server, and the
/// state both directions share.
pub struct Conn {
    /// Proxy-wide number of this connection, for logs.
    pub id: u64,
    /// Control connection (else data).
    pub is_control: bool,
    /// Where a random drop hits this connection, if it does.
    pub random: Option<RandomDrop>,
    /// The proxy this connection belongs to.
    pub shared: Arc<Shared>,
    client: TcpStream,
    server: TcpStream,
    queues: [TimedQueue; 2],
    dead: AtomicBool,
    faults: Mutex<FaultState>,
}

impl Conn {
    /// Set up a connection between two connected sockets and register it with the proxy
    /// (for `drop_all` and the stats). Fault triggers are armed here.
    pub fn new(
        shared: Arc<Shared>,
        is_control: bool,
        client: TcpStream,
        server: TcpStream,
    ) -> Arc<Conn> {
        for s in [&client, &server] {
            // Nagle would add its own delays to small control lines.
            let _ = s.set_nodelay(true);
            // Writers wake up regularly to notice a dropped connection.
            let _ = s.set_write_timeout(Some(TICK));
        }
        let mut triggers = Vec::new();
        for r in shared
            .rules
            .iter()
            .filter(|r| r.rule.scope.covers(is_control))
        {
            if let Trigger::AfterBytes(n) = r.rule.trigger {
                triggers.push(ByteTrigger {
                    at: n,
                    action: r.rule.action.clone(),
                    why: format!("rule {}", r.rule),
                    rule: Some(Arc::clone(r)),
                });
            }
        }
        let random = random_drop(&mut shared.rng.lock(), shared.drop_rate, is_control);
        if let Some(RandomDrop::AtByte(n)) = random {
            triggers.push(ByteTrigger {
                at: n,
                action: FaultAction::Drop,
                why: format!("random drop at byte {n}"),
                rule: None,
            });
        }
        let conn = Arc::new(Conn {
            id: shared.next_id(),
            is_control,
            random,
            client,
            server,
            queues: [TimedQueue::new(QUEUE_BYTES), TimedQueue::new(QUEUE_BYTES)],
            dead: AtomicBool::new(false),
            faults: Mutex::new(FaultState {
                bytes: 0,
                triggers,
                stall: None,
            }),
            shared: Arc::clone(&shared),
        });
        if let Some(r) = random {
            log::debug!("{} #{}: random drop planned: {r:?}", conn.kind(), conn.id);
        }
        shared.register(&conn);
        conn
    }

    /// "control" or "data", for logs.
    pub fn kind(&self) -> &'static str {
        if self.is_control { "control" } else { "data" }
    }

    /// Still forwarding: not dropped, and the proxy not shutting down.
    pub fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst) && !self.shared.is_shutting_down()
    }

    /// The instant a chunk read now may be delivered.
    pub fn due(&self) -> Instant {
        Instant::now() + self.shared.delay
    }

    /// Queue an item for one direction. False if the connection is gone.
    pub fn push(&self, dir: Dir, item: Item, due: Instant) -> bool {
        self.queues[dir as usize].push(Timed { due, item }, || self.alive())
    }

    fn source(&self, dir: Dir) -> &TcpStream {
        match dir {
            Dir::ToServer => &self.client,
            Dir::ToClient => &self.server,
        }
    }

    fn dest(&self, dir: Dir) -> &TcpStream {
        match dir {
            Dir::ToServer => &self.server,
            Dir::ToClient => &self.client,
        }
    }

    fn wake(&self) {
        for q in &self.queues {
            q.wake();
        }
        self.shared.wake_stalled();
    }

    /// Reset both sides now (RST): readers are woken by shutting their read side, writers
    /// by their send timeout; the last close of each socket sends the RST.
    pub fn reset(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in [&self.client, &self.server] {
            net::set_reset_on_close(s);
            let _ = s.shutdown(Shutdown::Read);
        }
        self.wake();
    }

    /// Close both sides now, gracefully (FIN); data still queued is discarded.
    pub fn close(&self) {
        if self.dead.swap(true, Ordering::SeqCst) {
            return;
        }
        for s in [&self.client, &self.server] {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.wake();
    }

    /// Apply a fault now: count it, log it, do it.
    pub fn fire(&self, action: &FaultAction, why: &str) {
        self.shared.note_fault();
        log::info!("fault: {} connection #{}: {why}", self.kind(), self.id);
        match action {
            FaultAction::Drop => self.reset(),
            FaultAction::Close => self.close(),
            FaultAction::Stall { for_ms } => {
                self.faults.lock().stall =
                    Some(for_ms.map(|ms| Instant::now() + Duration::from_millis(ms)));
            }
            // Replies are replaced by the FTP filter before anything reaches the queue.
            FaultAction::Reply(_) => {}
        }
    }

    /// Count a fault that a filter applied itself (a replaced reply).
    pub fn note_fault(&self, why: &str) {
        self.shared.note_fault();
        log::info!("fault: {} connection #{}: {why}", self.kind(), self.id);
    }

    /// Is this connection stalled by a fault, and is that for good?
    fn local_stall(&self) -> Option<bool> {
        let mut f = self.faults.lock();
        match f.stall {
            None => None,
            Some(None) => Some(true),
            Some(Some(until)) if Instant::now() >= until => {
                f.stall = None;
                None
            }
            Some(Some(_)) => Some(false),
        }
    }

    /// Wait while the proxy or this connection is stalled. False once the connection is gone.
    /// A reader passes its socket: a connection stalled for good is reset when that peer
    /// hangs up, so its threads end instead of waiting for a resume that never comes.
    fn wait_flowing(&self, watch: Option<&TcpStream>) -> bool {
        loop {
            if !self.alive() {
                return false;
            }
            let local = self.local_stall();
            if local.is_none() && !self.shared.is_stalled() {
                return true;
            }
            match (local, watch) {
                (Some(true), Some(s)) => {
                    if net::wait_hangup(s.as_raw_fd(), TICK) {
                        log::info!(
                            "{} connection #{}: peer gave up while stalled; resetting",
                            self.kind(),
                            self.id
                        );
                        self.reset();
                    }
                }
                _ => self.shared.wait_stall_change(TICK),
            }
        }
    }

    /// Sleep until `t`, in short steps. False once the connection is gone.
    fn sleep_until(&self, t: Instant) -> bool {
        loop {
            if !self.alive() {
                return false;
            }
            let now = Instant::now();
            if now >= t {
                return true;
            }
            std::thread::sleep((t - now).min(TICK));
        }
    }

    /// Ask to forward `want` bytes: how many may go before the next byte trigger, and the
    /// fault to fire first if a trigger is reached.
    fn account(&self, want: usize) -> (usize, Option<(FaultAction, String)>) {
        let mut f = self.faults.lock();
        loop {
            let next = f
                .triggers
                .iter()
                .enumerate()
                .min_by_key(|(_, t)| t.at)
                .map(|(i, t)| (i, t.at));
            let Some((i, at)) = next else {
                f.bytes += want as u64;
                return (want, None);
            };
            if f.bytes >= at {
                let t = f.triggers.swap_remove(i);
                if t.rule.as_ref().is_none_or(|r| r.try_fire()) {
                    return (0, Some((t.action, t.why)));
                }
                continue;
            }
            let allowed = (want as u64).min(at - f.bytes) as usize;
            f.bytes += allowed as u64;
            return (allowed, None);
        }
    }

    /// Write all of `buf` to `dst`, waking on the send timeout to notice a drop.
    fn write_all(&self, dst: &TcpStream, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match (&*dst).write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    if !self.alive() {
                        return Err(io::Error::other("connection dropped"));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Forward one chunk: stalls, byte triggers, bandwidth cap. False once the connection is gone.
    fn forward(&self, dir: Dir, bytes: &[u8]) -> bool {
        let bucket = self.shared.buckets.as_ref().map(|b| &b[dir as usize]);
        let piece = bucket.map_or(usize::MAX, |b| b.piece_len());
        let mut off = 0;
        while off < bytes.len() {
            if !self.wait_flowing(None) {
                return false;
            }
            let (n, fault) = self.account((bytes.len() - off).min(piece));
            if n > 0 {
                if let Some(b) = bucket
                    && !self.sleep_until(Instant::now() + b.take(n))
                {
                    return false;
                }
                if let Err(e) = self.write_all(self.dest(dir), &bytes[off..off + n]) {
                    if self.alive() {
                        log::debug!("{} #{} write {dir:?}: {e}", self.kind(), self.id);
                        self.reset();
                    }
                    return false;
                }
                self.shared.note_bytes(dir, n);
                off += n;
            }
            if let Some((action, why)) = fault {
                self.fire(&action, &why);
            }
        }
        true
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.shared.unregister(self.id);
    }
}

/// Read from the source, filter, queue with a due time, until EOF or the connection dies.
fn read_loop(conn: Arc<Conn>, dir: Dir, mut filter: Box<dyn Filter>) {
    let src = conn.source(dir);
    let mut buf = vec![0u8; CHUNK];
    let mut out = Vec::new();
    loop {
        if !conn.wait_flowing(Some(src)) {
            return;
        }
        let eof = match (&*src).read(&mut buf) {
            Ok(0) if conn.local_stall() == Some(true) => {
                // Stalled for good: the FIN would never be delivered, so end it all now.
                log::info!(
                    "{} connection #{}: peer closed while stalled; resetting",
                    conn.kind(),
                    conn.id
                );
                conn.reset();
                return;
            }
            Ok(0) => {
                filter.finish(&conn, &mut out);
                out.push(Item::Eof);
                true
            }
            Ok(n) => {
                filter.feed(&conn, &buf[..n], &mut out);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if conn.alive() {
                    log::debug!("{} #{} read {dir:?}: {e}", conn.kind(), conn.id);
                    // pass a reset on as a reset
                    conn.reset();
                }
                return;
            }
        };
        let due = conn.due();
        for item in out.drain(..) {
            if !conn.push(dir, item, due) {
                return;
            }
        }
        if eof {
            return;
        }
    }
}

/// Deliver queued items when due, until the FIN is passed on or the connection dies.
fn write_loop(conn: Arc<Conn>, dir: Dir) {
    while let Some(t) = conn.queues[dir as usize].pop(|| conn.alive()) {
        if !conn.sleep_until(t.due) {
            return;
        }
        match t.item {
            Item::Data(bytes) => {
                if !conn.forward(dir, &bytes) {
                    return;
                }
            }
            Item::Eof => {
                let _ = conn.dest(dir).shutdown(Shutdown::Write);
                return;
            }
            Item::Fire(action, why) => conn.fire(&action, &why),
        }
    }
}

/// Start the four threads of a connection. They end when both directions have closed or the
/// connection is dropped; the sockets close when the last of them ends.
pub fn run(conn: Arc<Conn>, to_server: Box<dyn Filter>, to_client: Box<dyn Filter>) {
    let id = conn.id;
    let jobs: [(Dir, Option<Box<dyn Filter>>); 4] = [
        (Dir::ToServer, None),
        (Dir::ToClient, None),
        (Dir::ToServer, Some(to_server)),
        (Dir::ToClient, Some(to_client)),
    ];
    for (dir, filter) in jobs {
        let c = Arc::clone(&conn);
        let (name, job): (String, Box<dyn FnOnce() + Send>) = match filter {
            None => (
                format!("px{id}-w{}", dir as u8),
                Box::new(move || write_loop(c, dir)),
            ),
            Some(f) => (
                format!("px{id}-r{}", dir as u8),
                Box::new(move || read_loop(c, dir, f)),
            ),
        };
        if let Err(e) = conn.shared.spawn(name, job) {
            log::warn!("connection #{id}: cannot start thread: {e}");
            conn.reset();
            return;
        }
    }
}
