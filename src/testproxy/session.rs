//! The FTP-aware part: one client session's control connection. Client commands and server
//! replies are read line by line; passive replies and PORT/EPRT commands are rewritten so
//! data connections pass through the proxy too; FTP-level fault rules fire here.
//!
//! Once the session speaks TLS (a `234` reply to AUTH, or TLS from the first byte) nothing
//! can be read any more: both directions pass through unchanged from then on.

use parking_lot::{Condvar, Mutex};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::Shared;
use super::faults::{FaultAction, RandomDrop, Trigger};
use super::net;
use super::queue::Item;
use super::relay::{self, Conn, Dir, Filter, PassThrough};
use super::rewrite::{
    ReplyTracker, eprt_command, parse_227, parse_229, parse_eprt, parse_port, port_command,
    rewrite_227, rewrite_229, split_command, trim_eol,
};

/// How long a connect to the server or the client may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a data listener waits for its one connection.
const DATA_ACCEPT_TIMEOUT: Duration = Duration::from_secs(60);
/// A line longer than this is not FTP: stop parsing and pass bytes through.
const MAX_LINE: usize = 64 * 1024;

/// How long a reply that starts an active-mode transfer waits for the proxy's onward
/// connection to the client.
const GATE_TIMEOUT: Duration = Duration::from_secs(10);

/// An active-mode data connection being set up. The server connects to the proxy at once (the
/// kernel accepts for us), so it may send the data and `226` before the proxy has connected on
/// to the client; a client that sees `226` before any data connection gives up. So the
/// `150`/`125` that starts the transfer is held until the onward connection is made, which
/// keeps the order a real network has.
struct Gate {
    open: Mutex<bool>,
    cv: Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock() = true;
        self.cv.notify_all();
    }

    /// Wait until open, at most `timeout`, giving up early when `alive` says so.
    /// True if it opened.
    fn wait(&self, timeout: Duration, alive: impl Fn() -> bool) -> bool {
        let end = Instant::now() + timeout;
        let mut g = self.open.lock();
        while !*g && alive() && Instant::now() < end {
            self.cv.wait_for(&mut g, Duration::from_millis(100));
        }
        *g
    }
}

/// Opens its gate when dropped, so every way out of the data setup opens it.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// What both directions of one control connection know about it.
struct Session {
    shared: Arc<Shared>,
    /// Our address as the client sees it: passive replies point there.
    client_local: SocketAddr,
    /// Our address as the server sees it: rewritten PORT/EPRT point there.
    upstream_local: SocketAddr,
    /// Set once the session is encrypted: no more parsing.
    raw: AtomicBool,
    /// The active-mode data connection of the last PORT/EPRT, while it is set up.
    gate: Mutex<Option<Arc<Gate>>>,
}

/// Serve one accepted client: connect to the server, start relaying with FTP filters.
pub fn serve_client(shared: Arc<Shared>, client: TcpStream) {
    let peer = client.peer_addr().ok();
    // The server hears of the client one one-way delay later, as over a real link.
    std::thread::sleep(shared.delay);
    let server = match net::connect(shared.upstream, None, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            log::warn!(
                "client {peer:?}: cannot connect to {}: {e}",
                shared.upstream
            );
            return;
        }
    };
    let (Ok(client_local), Ok(upstream_local)) = (client.local_addr(), server.local_addr()) else {
        return;
    };
    let session = Arc::new(Session {
        shared: Arc::clone(&shared),
        client_local,
        upstream_local,
        raw: AtomicBool::new(false),
        gate: Mutex::new(None),
    });
    let conn = Conn::new(shared, true, client, server);
    log::debug!("control #{}: client {peer:?}", conn.id);
    relay::run(
        conn,
        Box::new(CommandFilter {
            session: Arc::clone(&session),
            lines: LineBuf::default(),
            commands: 0,
        }),
        Box::new(ReplyFilter {
            session,
            lines: LineBuf::default(),
            tracker: ReplyTracker::default(),
            replies: 0,
            replacing: false,
        }),
    );
}

/// What to do with the rest of the stream after a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// Keep parsing lines.
    Parse,
    /// Stop parsing: pass everything through from here (TLS starts).
    Raw,
    /// A fault ended the connection: swallow everything from here.
    Discard,
}

/// Splits a byte stream into lines; gives up (raw) when told to or on absurd lines.
#[derive(Default)]
struct LineBuf {
    buf: Vec<u8>,
    raw: bool,
    /// A fault ended the connection: swallow the rest.
    discard: bool,
}

impl LineBuf {
    /// Add bytes; complete lines are handed to `each`, which says how to go on.
    /// Raw bytes go straight to `out`.
    fn feed(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Item>,
        mut each: impl FnMut(Vec<u8>, &mut Vec<Item>) -> Next,
    ) {
        if self.discard {
            return;
        }
        if self.raw {
            out.push(Item::Data(bytes.to_vec()));
            return;
        }
        self.buf.extend_from_slice(bytes);
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            match each(line, out) {
                Next::Parse => {}
                Next::Raw => {
                    self.raw = true;
                    self.flush(out);
                    return;
                }
                Next::Discard => {
                    self.discard = true;
                    self.buf.clear();
                    return;
                }
            }
        }
        if self.buf.len() > MAX_LINE {
            log::warn!("line of over {MAX_LINE} bytes: not FTP, passing through");
            self.raw = true;
            self.flush(out);
        }
    }

    fn flush(&mut self, out: &mut Vec<Item>) {
        if !self.buf.is_empty() && !self.discard {
            out.push(Item::Data(std::mem::take(&mut self.buf)));
        }
    }
}

/// FTP-level rules that match a point of the control stream, in order.
fn matching_rules<'a>(
    conn: &'a Conn,
    hit: impl Fn(&Trigger) -> bool + 'a,
) -> impl Iterator<Item = (FaultAction, String)> + 'a {
    conn.shared
        .rules
        .iter()
        .filter(move |r| r.rule.scope.covers(true) && hit(&r.rule.trigger))
        .filter(|r| r.try_fire())
        .map(|r| (r.rule.action.clone(), format!("rule {}", r.rule)))
}

/// Client → server: commands.
struct CommandFilter {
    session: Arc<Session>,
    lines: LineBuf,
    commands: u64,
}

impl Filter for CommandFilter {
    fn feed(&mut self, conn: &Conn, bytes: &[u8], out: &mut Vec<Item>) {
        if !self.lines.raw && self.session.raw.load(Ordering::SeqCst) {
            self.lines.raw = true;
            self.lines.flush(out);
        }
        if self.commands == 0 && self.lines.buf.is_empty() && bytes.first() == Some(&0x16) {
            // A TLS ClientHello before any command: implicit FTPS.
            log::info!(
                "control #{}: TLS from the first byte, passing through",
                conn.id
            );
            self.session.raw.store(true, Ordering::SeqCst);
            self.lines.raw = true;
        }
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, out, |line, out| self.command(conn, line, out));
        self.lines = lines;
    }

    fn finish(&mut self, _conn: &Conn, out: &mut Vec<Item>) {
        self.lines.flush(out);
    }
}

impl CommandFilter {
    /// One command line.
    fn command(&mut self, conn: &Conn, line: Vec<u8>, out: &mut Vec<Item>) -> Next {
        self.commands += 1;
        let (verb, arg) = split_command(&line);
        if verb == "PASS" {
            log::debug!("control #{} C: PASS ****", conn.id);
        } else {
            log::debug!(
                "control #{} C: {}",
                conn.id,
                String::from_utf8_lossy(trim_eol(&line))
            );
        }
        if conn.random == Some(RandomDrop::AtCommand(self.commands)) {
            let why = format!("random drop at command {} ({verb})", self.commands);
            out.push(Item::Fire(FaultAction::Drop, why));
            return Next::Discard;
        }
        let rules: Vec<_> =
            matching_rules(conn, |t| matches!(t, Trigger::OnCommand(v) if *v == verb)).collect();
        for (action, why) in rules {
            match action {
                FaultAction::Drop | FaultAction::Close => {
                    out.push(Item::Fire(action, format!("{why}: before {verb}")));
                    return Next::Discard;
                }
                FaultAction::Stall { .. } => {
                    out.push(Item::Fire(action, format!("{why}: before {verb}")));
                }
                FaultAction::Reply(code) => {
                    // Answer in the server's place, one round trip later, and never send the
                    // command: client and server stay in step.
                    conn.note_fault(&format!("{why}: answered {verb} with {code}"));
                    let reply = format!("{code} ftpfs-proxy: injected reply to {verb}\r\n");
                    let due = Instant::now() + 2 * conn.shared.delay;
                    conn.push(Dir::ToClient, Item::Data(reply.into_bytes()), due);
                    return Next::Parse;
                }
            }
        }
        let rewritten = match verb.as_str() {
            "PORT" => parse_port(arg).and_then(|t| self.active(conn, t, false)),
            "EPRT" => parse_eprt(arg).and_then(|t| self.active(conn, t, true)),
            _ => None,
        };
        out.push(Item::Data(rewritten.unwrap_or(line)));
        Next::Parse
    }

    /// Active mode: listen where the server can reach us, and tell it that address; when it
    /// connects, connect on to the client's real address.
    fn active(&self, conn: &Conn, target: SocketAddr, eprt: bool) -> Option<Vec<u8>> {
        let ip = self.session.upstream_local.ip();
        let listener = bind_logged(conn, ip)?;
        let port = listener.local_addr().ok()?.port();
        let shared = Arc::clone(&self.session.shared);
        let source = shared.active_source;
        let id = conn.id;
        let gate = Arc::new(Gate {
            open: Mutex::new(false),
            cv: Condvar::new(),
        });
        *self.session.gate.lock() = Some(Arc::clone(&gate));
        let job = move || {
            let _open = OpenOnDrop(gate);
            let Some(server) = accept_logged(&shared, &listener, id) else {
                return;
            };
            std::thread::sleep(shared.delay);
            match net::connect(target, source, CONNECT_TIMEOUT) {
                Ok(client) => start_data(shared, client, server),
                Err(e) => log::warn!("control #{id}: active data to {target}: {e}"),
            }
        };
        if let Err(e) = conn.shared.spawn(format!("px{id}-port"), Box::new(job)) {
            log::warn!("control #{id}: {e}");
            return None;
        }
        conn.shared.note_active_rewrite();
        log::debug!("control #{id}: active data {target} via proxy port {port}");
        Some(match ip {
            IpAddr::V4(v4) if !eprt => port_command(v4, port),
            _ => eprt_command(SocketAddr::new(ip, port)),
        })
    }
}

/// Server → client: replies.
struct ReplyFilter {
    session: Arc<Session>,
    lines: LineBuf,
    tracker: ReplyTracker,
    replies: u64,
    /// The current reply was replaced by a fault: swallow its remaining lines.
    replacing: bool,
}

impl Filter for ReplyFilter {
    fn feed(&mut self, conn: &Conn, bytes: &[u8], out: &mut Vec<Item>) {
        if !self.lines.raw && self.session.raw.load(Ordering::SeqCst) {
            self.lines.raw = true;
            self.lines.flush(out);
        }
        let mut lines = std::mem::take(&mut self.lines);
        lines.feed(bytes, out, |line, out| self.reply(conn, line, out));
        self.lines = lines;
    }

    fn finish(&mut self, _conn: &Conn, out: &mut Vec<Item>) {
        self.lines.flush(out);
    }
}

impl ReplyFilter {
    /// One reply line.
    fn reply(&mut self, conn: &Conn, line: Vec<u8>, out: &mut Vec<Item>) -> Next {
        let info = self.tracker.line(&line);
        log::debug!(
            "control #{} S: {}",
            conn.id,
            String::from_utf8_lossy(trim_eol(&line))
        );
        if info.first {
            self.replacing = false;
            self.replies += 1;
            if conn.random == Some(RandomDrop::AtReply(self.replies)) {
                let why = format!("random drop at reply {}", self.replies);
                out.push(Item::Fire(FaultAction::Drop, why));
                return Next::Discard;
            }
            if matches!(info.code, Some(125 | 150)) {
                let gate = self.session.gate.lock().take();
                if let Some(gate) = gate
                    && !gate.wait(GATE_TIMEOUT, || conn.alive())
                {
                    log::debug!("control #{}: active data not connected in time", conn.id);
                }
            }
            if let Some(code) = info.code {
                let rules: Vec<_> =
                    matching_rules(conn, |t| *t == Trigger::AtReply(code)).collect();
                for (action, why) in rules {
                    match action {
                        FaultAction::Drop | FaultAction::Close => {
                            out.push(Item::Fire(action, format!("{why}: before reply {code}")));
                            return Next::Discard;
                        }
                        FaultAction::Stall { .. } => {
                            out.push(Item::Fire(action, format!("{why}: before reply {code}")));
                        }
                        FaultAction::Reply(new) => {
                            conn.note_fault(&format!("{why}: replaced reply {code} with {new}"));
                            let text =
                                format!("{new} ftpfs-proxy: injected reply (was {code})\r\n");
                            out.push(Item::Data(text.into_bytes()));
                            self.replacing = true;
                            break;
                        }
                    }
                }
            }
        }
        if self.replacing {
            if info.last {
                self.replacing = false;
            }
            return Next::Parse;
        }
        if !info.last {
            out.push(Item::Data(line));
            return Next::Parse;
        }
        let rewritten = match info.code {
            Some(227) => parse_227(&line).and_then(|port| self.passive(conn, &line, port, false)),
            Some(229) => parse_229(&line).and_then(|port| self.passive(conn, &line, port, true)),
            _ => None,
        };
        out.push(Item::Data(rewritten.unwrap_or(line)));
        if info.code == Some(234) {
            log::info!(
                "control #{}: AUTH accepted, TLS from here: passing through",
                conn.id
            );
            self.session.raw.store(true, Ordering::SeqCst);
            return Next::Raw;
        }
        Next::Parse
    }

    /// Passive mode: listen where the client reached us and point the reply there; when the
    /// client connects, connect on to the server's data port (on the server's host, whatever
    /// address the reply named).
    fn passive(&self, conn: &Conn, line: &[u8], port: u16, epsv: bool) -> Option<Vec<u8>> {
        let ip = self.session.client_local.ip();
        let listener = bind_logged(conn, ip)?;
        let ours = listener.local_addr().ok()?.port();
        let rewritten = match ip {
            _ if epsv => rewrite_229(line, ours)?,
            IpAddr::V4(v4) => rewrite_227(line, v4, ours)?,
            IpAddr::V6(_) => return None, // 227 cannot name an IPv6 address
        };
        let shared = Arc::clone(&self.session.shared);
        let target = SocketAddr::new(shared.upstream.ip(), port);
        let id = conn.id;
        let job = move || {
            let Some(client) = accept_logged(&shared, &listener, id) else {
                return;
            };
            std::thread::sleep(shared.delay);
            match net::connect(target, None, CONNECT_TIMEOUT) {
                Ok(server) => start_data(shared, client, server),
                Err(e) => log::warn!("control #{id}: passive data to {target}: {e}"),
            }
        };
        if let Err(e) = conn.shared.spawn(format!("px{id}-pasv"), Box::new(job)) {
            log::warn!("control #{id}: {e}");
            return None;
        }
        conn.shared.note_passive_rewrite();
        log::debug!("control #{id}: passive data port {port} via proxy port {ours}");
        Some(rewritten)
    }
}

fn bind_logged(conn: &Conn, ip: IpAddr) -> Option<TcpListener> {
    TcpListener::bind((ip, 0))
        .inspect_err(|e| log::warn!("control #{}: cannot listen on {ip}: {e}", conn.id))
        .ok()
}

fn accept_logged(shared: &Shared, listener: &TcpListener, id: u64) -> Option<TcpStream> {
    let tick = Duration::from_millis(200);
    match net::accept_within(listener, DATA_ACCEPT_TIMEOUT, tick, || {
        shared.is_shutting_down()
    }) {
        Ok(Some((s, _))) => Some(s),
        Ok(None) => {
            log::debug!("control #{id}: nobody came for the data connection");
            None
        }
        Err(e) => {
            log::warn!("control #{id}: data accept: {e}");
            None
        }
    }
}

/// Relay a data connection like any other, with the data-scope fault rules.
fn start_data(shared: Arc<Shared>, client: TcpStream, server: TcpStream) {
    let conn = Conn::new(shared, false, client, server);
    relay::run(conn, Box::new(PassThrough), Box::new(PassThrough));
}
