//! One control connection: connect, TLS, login, feature discovery, commands and transfers.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use rustls::ClientConfig;
use rustls::pki_types::ServerName;

use super::data::{self, DataStream};
use super::error::{FtpError, FtpResult};
use super::listing::{self, Entry, EntryKind, ListingFormat, ListingParser};
use super::reply::{Reply, read_reply};
use super::time;
use super::tls::{self, SessionConfig, TlsContext, TlsStream};

/// How long a passive port opened ahead of need is trusted to still be listening.
const ARMED_PORT_FRESH: Duration = Duration::from_secs(5);

/// Most listing text we read for one directory, so a hostile server cannot keep us busy
/// forever (memory is bounded separately: entries plus one line).
const MAX_LISTING_BYTES: usize = 1 << 30;

/// A password that never shows in logs or Debug output.
#[derive(Clone, Default)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(secret: impl Into<String>) -> Self {
        Password(secret.into())
    }

    /// The password itself, for the PASS command only.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How TLS is used on the control and data connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain FTP, never TLS (`tls=off`).
    Off,
    /// `AUTH TLS` when the server offers it, plain otherwise (`tls=auto`, the default).
    Auto,
    /// `AUTH TLS` or fail; credentials are never sent in the clear (`tls=required`).
    Required,
    /// TLS from the first byte (`ftps://` or `tls=implicit`, usually port 990).
    Implicit,
}

/// Where and how to connect, shared by every connection of a pool.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Password,
    pub tls_mode: TlsMode,
    /// Trust settings; required unless `tls_mode` is `Off`.
    pub tls: Option<TlsContext>,
    /// Active mode (PORT/EPRT, the server connects to us) instead of passive.
    pub active: bool,
    /// Bound on every network wait.
    pub timeout: Duration,
    /// Use the address in a 227 reply instead of the control connection's peer.
    pub trust_pasv_ip: bool,
}

/// What the server announced in FEAT (RFC 2389).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    pub mlst: bool,
    pub mfmt: bool,
    pub mdtm: bool,
    pub size: bool,
    pub rest_stream: bool,
    pub epsv: bool,
    pub utf8: bool,
    pub auth_tls: bool,
}

impl Features {
    /// Reads the feature lines of a 211 FEAT reply.
    pub fn parse(reply: &Reply) -> Features {
        let mut f = Features::default();
        let inner = reply
            .lines
            .iter()
            .skip(1)
            .take(reply.lines.len().saturating_sub(2));
        for line in inner {
            let upper = line.trim().to_ascii_uppercase();
            let mut words = upper.split_whitespace();
            let Some(verb) = words.next() else { continue };
            let rest: Vec<&str> = words.collect();
            match verb {
                "MLST" | "MLSD" => f.mlst = true,
                "MFMT" => f.mfmt = true,
                "MDTM" => f.mdtm = true,
                "SIZE" => f.size = true,
                "REST" => f.rest_stream |= rest.contains(&"STREAM"),
                "EPSV" => f.epsv = true,
                "UTF8" => f.utf8 = true,
                "AUTH" => {
                    f.auth_tls |= rest
                        .iter()
                        .flat_map(|w| w.split(';'))
                        .any(|w| w == "TLS" || w == "TLS-C")
                }
                _ => {}
            }
        }
        f
    }
}

/// What we learned about a server at run time, shared by all its connections, so a command
/// that is not implemented is tried once, not on every call.
#[derive(Debug, Default)]
pub struct ServerQuirks {
    pub no_epsv: AtomicBool,
    pub no_mlsd: AtomicBool,
    pub no_chmod: AtomicBool,
    pub no_set_mtime: AtomicBool,
    /// The server ends the whole session when a TLS download is cut short by closing the
    /// data connection (proftpd); cut such downloads short with ABOR instead.
    pub tls_early_end_needs_abor: AtomicBool,
    /// The server failed a download because we half-closed its data connection early.
    pub no_download_half_close: AtomicBool,
}

/// The byte stream under the control connection.
enum Transport {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    Closed,
}

impl Transport {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Transport::Plain(s) => Some(s),
            Transport::Tls(s) => Some(&s.sock),
            Transport::Closed => None,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => s.read(buf),
            Transport::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Plain(s) => s.write(buf),
            Transport::Tls(s) => s.write(buf),
            Transport::Closed => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Plain(s) => s.flush(),
            Transport::Tls(s) => s.flush(),
            Transport::Closed => Ok(()),
        }
    }
}

/// A data transfer in progress (after the server's 1xx). Give it back to
/// `finish_download`/`finish_upload` on the same connection.
pub struct Transfer {
    pub stream: DataStream,
    /// Servers that skip the 1xx send their final reply first; keep it for `finish_*`.
    early_final: Option<Reply>,
    /// Our side of the data connection was shut at once (see `Direction::Download`).
    half_closed: bool,
}

/// Which way a transfer's data flows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// RETR and listings. Our sending side of a plain data connection is shut as soon as it
    /// is up: proftpd answers 226 only after the client's end of the connection closes, so
    /// this saves a round trip per download.
    Download,
    Upload,
}

impl Transfer {
    /// Whether the data connection has data or its end waiting, and the server's final
    /// reply to the transfer is here too (`control` is the connection that started it).
    pub fn ends_without_waiting(&self, control: &Control) -> bool {
        readable_now(self.stream.tcp()) && (self.early_final.is_some() || control.reply_arrived())
    }
}

/// Whether a socket can be read from without waiting (data, end of stream or an error).
fn readable_now(sock: &TcpStream) -> bool {
    data::wait_readable(&[sock.as_raw_fd()], Duration::ZERO).is_ok_and(|r| r[0])
}

impl Read for Transfer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
    }
}

impl Write for Transfer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// A logged-in control connection.
pub struct Control {
    io: BufReader<Transport>,
    peer: SocketAddr,
    local: SocketAddr,
    opts: Arc<ConnectOptions>,
    quirks: Arc<ServerQuirks>,
    features: Features,
    /// Set once PROT P is in force: data connections use TLS with this session cache.
    data_tls: Option<(SessionConfig, ServerName<'static>)>,
    broken: bool,
    /// The server let a wait run out (a stalled server rather than a closed connection).
    timed_out: bool,
    last_used: Instant,
    /// An EPSV sent ahead of need (after the last transfer) whose reply is still unread.
    epsv_in_flight: bool,
    /// A passive port the server opened for our next transfer, and when.
    armed_port: Option<(u16, Instant)>,
}

impl Control {
    /// Connects, sets up TLS as configured, logs in and prepares binary transfers.
    pub fn connect(opts: Arc<ConnectOptions>, quirks: Arc<ServerQuirks>) -> FtpResult<Control> {
        let sock = connect_tcp(&opts.host, opts.port, opts.timeout)?;
        let peer = sock.peer_addr()?;
        let local = sock.local_addr()?;
        let tls_config = match (&opts.tls, opts.tls_mode) {
            (_, TlsMode::Off) => None,
            (Some(ctx), _) => Some((ctx.session_config()?, tls::server_name(&opts.host)?)),
            (None, _) => {
                return Err(FtpError::Tls(
                    "TLS requested but no TLS settings given".into(),
                ));
            }
        };
        let transport = match (&tls_config, opts.tls_mode) {
            (Some((session, name)), TlsMode::Implicit) => {
                Transport::Tls(Box::new(tls::connect(&session.config, name, sock)?))
            }
            _ => Transport::Plain(sock),
        };
        let mut control = Control {
            io: BufReader::with_capacity(16 * 1024, transport),
            peer,
            local,
            opts: opts.clone(),
            quirks,
            features: Features::default(),
            data_tls: None,
            broken: false,
            timed_out: false,
            last_used: Instant::now(),
            epsv_in_flight: false,
            armed_port: None,
        };
        control.read_welcome()?;
        if matches!(opts.tls_mode, TlsMode::Auto | TlsMode::Required)
            && let Some((session, name)) = &tls_config
        {
            control.auth_tls(&session.config, name)?;
        }
        let protect = tls_config.is_some() && control.is_tls();
        control.login_and_prepare(protect)?;
        if protect {
            control.data_tls = tls_config;
        }
        Ok(control)
    }

    /// Logs in and prepares the session: USER, PASS, then data protection (PBSZ 0, PROT P)
    /// when under TLS, FEAT, UTF-8 names and binary transfers, all in one write: one round
    /// trip instead of three. The password goes out before the server asks for it, but only
    /// on this connection, and only once TLS is up when TLS is in use.
    fn login_and_prepare(&mut self, protect: bool) -> FtpResult<()> {
        let user = format!("USER {}", self.opts.user);
        let pass = format!("PASS {}", self.opts.password.expose());
        let mut session = Vec::with_capacity(5);
        if protect {
            session.extend(["PBSZ 0", "PROT P"]);
        }
        // OPTS UTF8 ON goes out whether or not FEAT will list UTF8: a server without it just
        // refuses, and names then travel as the same raw bytes anyway.
        session.extend(["FEAT", "OPTS UTF8 ON", "TYPE I"]);
        let mut lines = vec![user.as_str(), pass.as_str()];
        lines.extend(&session);
        self.send_lines(&lines)?;
        let user_reply = self.read()?;
        let verdict = match user_reply.code {
            // No password needed: the PASS was superfluous, whatever its answer.
            230 => {
                self.read()?;
                None
            }
            331 | 332 => {
                let pass_reply = self.read()?;
                (!matches!(pass_reply.code, 230 | 202)).then_some(pass_reply)
            }
            // Refused at USER (e.g. 421 too many users): the server may have hung up
            // already, so its answer to PASS is not waited for; this reply is the reason.
            _ => Some(user_reply),
        };
        if let Some(reply) = verdict {
            // The session commands' replies are still on their way: the connection is of
            // no further use.
            self.broken = true;
            return Err(FtpError::Reply {
                command: "login".into(),
                code: reply.code,
                text: reply.text(),
            });
        }
        let mut failure = None;
        for line in &session {
            let reply = self.read()?;
            let ok = match *line {
                "FEAT" => {
                    if reply.code == 211 {
                        self.features = Features::parse(&reply);
                    }
                    true
                }
                "OPTS UTF8 ON" => true,
                _ => reply.code == 200,
            };
            if !ok && failure.is_none() {
                failure = Some(refusal(line, &reply));
            }
        }
        self.last_used = Instant::now();
        if failure.is_none() {
            self.arm_passive();
        }
        failure.map_or(Ok(()), Err)
    }

    /// Whether the control connection is encrypted.
    pub fn is_tls(&self) -> bool {
        matches!(self.io.get_ref(), Transport::Tls(_))
    }

    /// What the server announced in FEAT.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// Whether an error left this connection unusable (it must not go back to a pool).
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Whether the next data connection could not resume this connection's TLS session
    /// (TLS 1.3 tickets used up by uploads); such a connection is replaced, since servers
    /// that require session reuse would refuse the transfer.
    pub fn needs_fresh_session(&self) -> bool {
        let Some((session, _)) = &self.data_tls else {
            return false;
        };
        let Transport::Tls(control) = self.io.get_ref() else {
            return false;
        };
        control.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3)
            && session.server_sends_tickets()
            && session.tls13_tickets() == 0
    }

    /// Replaces this connection with a freshly logged-in one (new TLS session, new tickets).
    fn reconnect(&mut self) -> FtpResult<()> {
        log::debug!("TLS 1.3 tickets used up by uploads; opening a fresh session");
        let fresh = Control::connect(self.opts.clone(), self.quirks.clone())
            .inspect_err(|_| self.broken = true)?;
        let old = std::mem::replace(self, fresh);
        old.quit();
        Ok(())
    }

    /// Whether a command can go out without first waiting for the reply to an EPSV sent
    /// ahead: none is in flight, or its reply has already arrived.
    pub fn answered(&self) -> bool {
        !self.epsv_in_flight || self.reply_arrived()
    }

    /// Whether a reply (or the start of one) is waiting to be read.
    pub fn reply_arrived(&self) -> bool {
        !self.io.buffer().is_empty() || self.io.get_ref().tcp().is_some_and(readable_now)
    }

    /// When the connection last completed a command.
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// Quirks shared with the other connections to this server.
    pub fn quirks(&self) -> &ServerQuirks {
        &self.quirks
    }

    fn read_welcome(&mut self) -> FtpResult<()> {
        loop {
            let reply = self.read()?;
            match reply.code {
                120 => continue,
                220 => return Ok(()),
                _ => {
                    self.broken = true;
                    return Err(FtpError::Reply {
                        command: "connect".into(),
                        code: reply.code,
                        text: reply.text(),
                    });
                }
            }
        }
    }

    fn auth_tls(
        &mut self,
        config: &Arc<ClientConfig>,
        name: &ServerName<'static>,
    ) -> FtpResult<()> {
        let reply = self.cmd("AUTH TLS")?;
        if reply.code != 234 {
            if self.opts.tls_mode == TlsMode::Required {
                self.broken = true;
                return Err(FtpError::NotSupported(format!(
                    "server refused AUTH TLS ({} {}) and tls=required: not sending credentials in the clear",
                    reply.code,
                    reply.text()
                )));
            }
            log::info!(
                "server does not offer TLS ({}); continuing unencrypted",
                reply.code
            );
            return Ok(());
        }
        if !self.io.buffer().is_empty() {
            self.broken = true;
            return Err(FtpError::Protocol(
                "server sent data after 234 before the TLS handshake".into(),
            ));
        }
        let transport = std::mem::replace(self.io.get_mut(), Transport::Closed);
        let Transport::Plain(sock) = transport else {
            self.broken = true;
            return Err(FtpError::Protocol(
                "AUTH TLS on an encrypted connection".into(),
            ));
        };
        let stream = tls::connect(config, name, sock).inspect_err(|_| self.broken = true)?;
        *self.io.get_mut() = Transport::Tls(Box::new(stream));
        Ok(())
    }

    fn read(&mut self) -> FtpResult<Reply> {
        match read_reply(&mut self.io) {
            Ok(reply) => {
                log::debug!("<- {} {}", reply.code, reply.text());
                if reply.code == 421 {
                    self.broken = true;
                }
                Ok(reply)
            }
            Err(e) => {
                self.broken = true;
                self.timed_out |= e.is_timeout();
                Err(e)
            }
        }
    }

    /// Whether the server failed to answer within the timeout on this connection.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    fn send(&mut self, line: &str) -> FtpResult<()> {
        self.send_lines(&[line])
    }

    /// Sends several commands in one write (pipelining, RFC 959 allows it): their replies
    /// come back in order, and one round trip is saved per extra command.
    fn send_lines(&mut self, lines: &[&str]) -> FtpResult<()> {
        for line in lines {
            check_name(line)?;
        }
        self.settle_passive()?;
        let verb = lines
            .first()
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or("");
        if !matches!(
            verb,
            "REST" | "RETR" | "STOR" | "APPE" | "MLSD" | "LIST" | "CWD"
        ) {
            // Only transfer-related commands are known to leave a passive port open.
            self.armed_port = None;
        }
        if self.broken {
            return Err(FtpError::Io(io::Error::new(
                io::ErrorKind::NotConnected,
                "connection is closed",
            )));
        }
        let mut bytes = Vec::new();
        for line in lines {
            if line.starts_with("PASS ") {
                log::debug!("-> PASS ***");
            } else {
                log::debug!("-> {line}");
            }
            bytes.extend_from_slice(line.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        }
        let transport = self.io.get_mut();
        let result = transport.write_all(&bytes).and_then(|_| transport.flush());
        if let Err(e) = result {
            self.broken = true;
            return Err(FtpError::Io(e));
        }
        Ok(())
    }

    /// Sends one command and returns the server's final reply, whatever its code.
    pub fn cmd(&mut self, line: &str) -> FtpResult<Reply> {
        self.send(line)?;
        let reply = self.read()?;
        self.last_used = Instant::now();
        Ok(reply)
    }

    /// Sends one command and fails unless the reply code satisfies `ok`.
    pub fn expect(&mut self, line: &str, ok: impl Fn(u16) -> bool) -> FtpResult<Reply> {
        let reply = self.cmd(line)?;
        if ok(reply.code) {
            return Ok(reply);
        }
        if reply.code < 400 {
            // Not a refusal but a positive reply meant for some other command: the reply
            // sequence slipped, and every later reply on this connection would be off by one.
            return Err(self.out_of_sequence(line, &reply));
        }
        Err(refusal(line, &reply))
    }

    /// Checks the connection is alive (NOOP).
    pub fn noop(&mut self) -> FtpResult<()> {
        self.expect("NOOP", |c| c == 200).map(|_| ())
    }

    /// Says goodbye; errors are irrelevant at that point.
    pub fn quit(mut self) {
        if !self.broken {
            let _ = self.cmd("QUIT");
        }
    }

    /// Sends EPSV for the next transfer now, without waiting: its reply is read when the
    /// next command goes out, so a transfer that follows soon skips that round trip.
    fn arm_passive(&mut self) {
        if self.opts.active
            || self.broken
            || self.epsv_in_flight
            || self.quirks.no_epsv.load(Ordering::Relaxed)
        {
            return;
        }
        log::debug!("-> EPSV (ahead of the next transfer)");
        let transport = self.io.get_mut();
        match transport
            .write_all(b"EPSV\r\n")
            .and_then(|_| transport.flush())
        {
            Ok(()) => self.epsv_in_flight = true,
            Err(_) => self.broken = true,
        }
    }

    /// Reads the reply of an EPSV sent ahead, keeping the port it announced.
    fn settle_passive(&mut self) -> FtpResult<()> {
        if !self.epsv_in_flight {
            return Ok(());
        }
        self.epsv_in_flight = false;
        let reply = self.read()?;
        self.armed_port = match (reply.code, data::parse_epsv(&reply.text())) {
            (229, Some(port)) => Some((port, Instant::now())),
            (421, _) => return Err(refusal("EPSV", &reply)),
            (code, _) if code < 400 => return Err(self.out_of_sequence("EPSV", &reply)),
            (code, _) => {
                if (500..600).contains(&code) {
                    self.quirks.no_epsv.store(true, Ordering::Relaxed);
                }
                None
            }
        };
        Ok(())
    }

    /// Opens our listening socket for active mode and announces it (PORT/EPRT).
    fn listen_for_data(&mut self) -> FtpResult<TcpListener> {
        let listener = TcpListener::bind(SocketAddr::new(self.local.ip(), 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        self.expect(&data::active_command(addr), |c| c == 200)?;
        Ok(listener)
    }

    /// Asks for a passive port (EPSV, else PASV, remembered per server) and sets the restart
    /// offset. EPSV and REST travel together, so this costs one round trip.
    /// Returns the address and whether the REST was already sent and accepted (otherwise
    /// the caller sends it together with the transfer command).
    fn passive_address(&mut self, offset: u64) -> FtpResult<(SocketAddr, bool)> {
        self.settle_passive()?;
        if let Some((port, at)) = self.armed_port.take()
            && at.elapsed() < ARMED_PORT_FRESH
        {
            return Ok((SocketAddr::new(self.peer.ip(), port), false));
        }
        let rest = format!("REST {offset}");
        if !self.quirks.no_epsv.load(Ordering::Relaxed) {
            if offset > 0 {
                self.send_lines(&["EPSV", &rest])?;
            } else {
                self.send("EPSV")?;
            }
            let epsv = self.read()?;
            let rest_reply = if offset > 0 { Some(self.read()?) } else { None };
            if epsv.code == 229 {
                let Some(port) = data::parse_epsv(&epsv.text()) else {
                    self.broken = true;
                    return Err(FtpError::Protocol(format!(
                        "unreadable EPSV reply: {}",
                        epsv.text()
                    )));
                };
                if let Some(reply) = rest_reply.filter(|r| r.code != 350) {
                    return Err(refusal("REST", &reply));
                }
                return Ok((SocketAddr::new(self.peer.ip(), port), true));
            }
            if epsv.code == 421 {
                return Err(refusal("EPSV", &epsv));
            }
            if epsv.code < 400 {
                // e.g. a stray 226 ahead of the 229: not a refusal of EPSV, and no reason
                // to give up EPSV for good.
                return Err(self.out_of_sequence("EPSV", &epsv));
            }
            log::debug!("EPSV refused ({}); using PASV from now on", epsv.code);
            self.quirks.no_epsv.store(true, Ordering::Relaxed);
        }
        let reply = self.expect("PASV", |c| c == 227)?;
        let Some((ip, port)) = data::parse_pasv(&reply.text()) else {
            self.broken = true;
            return Err(FtpError::Protocol(format!(
                "unreadable PASV reply: {}",
                reply.text()
            )));
        };
        if offset > 0 {
            self.expect(&rest, |c| c == 350)?;
        }
        // Servers behind NAT announce private or 0.0.0.0 addresses: the peer is the truth.
        let ip = if self.opts.trust_pasv_ip && !ip.is_unspecified() {
            ip.into()
        } else {
            self.peer.ip()
        };
        Ok((SocketAddr::new(ip, port), true))
    }

    /// Starts a transfer: data socket, optional REST, the command, then the data connection
    /// (TLS if PROT P) and the server's 1xx, in whichever order the server sends them.
    pub fn start_transfer(
        &mut self,
        command: &str,
        offset: u64,
        direction: Direction,
    ) -> FtpResult<Transfer> {
        if self.needs_fresh_session() {
            self.reconnect()?;
        }
        check_name(command)?;
        let mut first_reply: Option<Reply> = None;
        let sock = if self.opts.active {
            let listener = self.listen_for_data()?;
            if offset > 0 {
                self.expect(&format!("REST {offset}"), |c| c == 350)?;
            }
            self.send(command)?;
            self.accept_data(&listener, command, &mut first_reply)?
        } else {
            let (target, rest_done) = self.passive_address(offset)?;
            let rest = format!("REST {offset}");
            let rest_with_command = offset > 0 && !rest_done;
            // The command goes out first and the connection is made while it travels: the
            // server accepts once it has the command, so both take one round trip together.
            if rest_with_command {
                self.send_lines(&[&rest, command])?;
            } else {
                self.send(command)?;
            }
            let connected = TcpStream::connect_timeout(&target, self.opts.timeout);
            let rest_refused = if rest_with_command {
                let reply = self.read()?;
                (reply.code != 350).then_some(reply)
            } else {
                None
            };
            let sock = match connected {
                Ok(sock) => sock,
                Err(e) => return Err(self.data_connect_failed(command, e)),
            };
            if let Some(reply) = rest_refused {
                // The command went out anyway and may be sending from byte 0: end it.
                drop(sock);
                let _ = self.read_early_end();
                return Err(refusal(&rest, &reply));
            }
            data::set_timeouts(&sock, self.opts.timeout)?;
            sock
        };
        let half_closed = direction == Direction::Download
            && self.data_tls.is_none()
            && !self.quirks.no_download_half_close.load(Ordering::Relaxed)
            && sock.shutdown(Shutdown::Write).is_ok();
        let stream = match self.data_tls.clone() {
            Some((session, name)) => {
                let config = session.config;
                DataStream::Tls(Box::new(self.data_handshake(
                    &config,
                    &name,
                    sock,
                    command,
                    &mut first_reply,
                )?))
            }
            None => DataStream::Plain(sock),
        };
        let reply = match first_reply {
            Some(r) => r,
            None => self.read()?,
        };
        if !fits_transfer_command(&reply) {
            stream.abandon();
            return Err(self.out_of_sequence(command, &reply));
        }
        if reply.is_preliminary() {
            return Ok(Transfer {
                stream,
                early_final: None,
                half_closed,
            });
        }
        if reply.is_success() {
            return Ok(Transfer {
                stream,
                early_final: Some(reply),
                half_closed,
            });
        }
        stream.abandon();
        Err(refusal(command, &reply))
    }

    /// The data connection could not be made after the command went out. A server that
    /// refused the command (550) closes its passive port at once, so its reply is the real
    /// reason; anything else leaves the reply sequence unknown and the connection unusable.
    fn data_connect_failed(&mut self, command: &str, err: io::Error) -> FtpError {
        let mut slot = None;
        match self.note_first_reply(command, &mut slot) {
            Err(refusal @ FtpError::Reply { .. }) => refusal,
            _ => {
                self.broken = true;
                FtpError::Io(err)
            }
        }
    }

    /// Waits for the server's connection in active mode, or for its refusal on the control
    /// connection, whichever comes first.
    fn accept_data(
        &mut self,
        listener: &TcpListener,
        command: &str,
        first_reply: &mut Option<Reply>,
    ) -> FtpResult<TcpStream> {
        let deadline = Instant::now() + self.opts.timeout;
        loop {
            if first_reply.is_none() && !self.io.buffer().is_empty() {
                self.note_first_reply(command, first_reply)?;
                continue;
            }
            let ctrl_fd = self.control_fd()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = data::wait_readable(&[listener.as_raw_fd(), ctrl_fd], left)
                .inspect_err(|_| self.broken = true)?;
            if ready[0] {
                // No connection from the server in time (maybe only strangers'): the
                // server's replies to the command are still on their way, so the
                // connection's reply sequence is unknown.
                let sock = data::accept_from(listener, self.peer.ip(), self.opts.timeout)
                    .inspect_err(|_| self.broken = true)?;
                data::set_timeouts(&sock, self.opts.timeout)?;
                return Ok(sock);
            }
            if ready[1] && first_reply.is_none() {
                self.note_first_reply(command, first_reply)?;
            } else if ready[1] {
                // A second reply before any connection: the server gave up on us.
                let reply = self.read()?;
                return Err(refusal(command, &reply));
            }
        }
    }

    /// Reads the reply that answers a transfer command before the data connection is up.
    fn note_first_reply(&mut self, command: &str, slot: &mut Option<Reply>) -> FtpResult<()> {
        let reply = self.read()?;
        if !fits_transfer_command(&reply) {
            return Err(self.out_of_sequence(command, &reply));
        }
        let accepted = reply.is_preliminary() || reply.is_success();
        let result = if accepted {
            Ok(())
        } else {
            Err(refusal(command, &reply))
        };
        // Kept even when negative, so that nobody waits for this reply a second time.
        *slot = Some(reply);
        result
    }

    /// TLS on the data connection. Some servers send their 1xx before the handshake and some
    /// after, so the ClientHello goes out at once and both sockets are watched.
    fn data_handshake(
        &mut self,
        config: &Arc<ClientConfig>,
        name: &ServerName<'static>,
        sock: TcpStream,
        command: &str,
        first_reply: &mut Option<Reply>,
    ) -> FtpResult<TlsStream> {
        let conn = rustls::ClientConnection::new(config.clone(), name.clone())
            .map_err(|e| FtpError::Tls(e.to_string()))?;
        let mut stream = rustls::StreamOwned::new(conn, sock);
        if let Err(e) = self.drive_data_handshake(&mut stream, command, first_reply) {
            if first_reply.is_none() && !self.broken {
                // The server may have refused the command and dropped the data connection:
                // its reply says why, which beats a bare "connection reset".
                self.note_first_reply(command, first_reply)?;
            }
            return Err(e);
        }
        log::debug!(
            "data connection TLS: {:?} {:?}",
            stream.conn.protocol_version(),
            stream.conn.handshake_kind()
        );
        Ok(stream)
    }

    fn drive_data_handshake(
        &mut self,
        stream: &mut TlsStream,
        command: &str,
        first_reply: &mut Option<Reply>,
    ) -> FtpResult<()> {
        while stream.conn.wants_write() {
            stream.conn.write_tls(&mut stream.sock)?;
        }
        let deadline = Instant::now() + self.opts.timeout;
        while first_reply.is_none() {
            if !self.io.buffer().is_empty() {
                self.note_first_reply(command, first_reply)?;
                break;
            }
            let ctrl_fd = self.control_fd()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = data::wait_readable(&[stream.sock.as_raw_fd(), ctrl_fd], left)
                .inspect_err(|_| self.broken = true)?;
            if ready[1] {
                self.note_first_reply(command, first_reply)?;
            } else if ready[0] {
                break;
            }
        }
        tls::finish_handshake(stream)
    }

    /// A reply that cannot answer `line` (a stray 226 before a 229, a 229 for RETR): the
    /// replies are out of step with the commands, so the connection is given up.
    fn out_of_sequence(&mut self, line: &str, reply: &Reply) -> FtpError {
        self.broken = true;
        let verb = line.split_whitespace().next().unwrap_or("");
        log::warn!(
            "reply {} {} does not answer {verb}: replies out of order, dropping the connection",
            reply.code,
            reply.text()
        );
        FtpError::Protocol(format!(
            "reply {} does not answer {verb}: replies out of order",
            reply.code
        ))
    }

    fn control_fd(&self) -> FtpResult<i32> {
        self.io
            .get_ref()
            .tcp()
            .map(|s| s.as_raw_fd())
            .ok_or_else(|| FtpError::Protocol("control connection closed".into()))
    }

    /// Ends a download. `complete`: the data reached end of file; otherwise the stream is cut
    /// short and the server's 426/451 is accepted as the end (DESIGN §5: no ABOR).
    pub fn finish_download(&mut self, transfer: Transfer, complete: bool) -> FtpResult<()> {
        let result = self.end_download(transfer, complete);
        if result.is_ok() {
            self.arm_passive();
        }
        result
    }

    fn end_download(&mut self, transfer: Transfer, complete: bool) -> FtpResult<()> {
        let Transfer {
            stream,
            early_final,
            half_closed,
        } = transfer;
        let is_tls = matches!(stream, DataStream::Tls(_));
        if !complete
            && early_final.is_none()
            && is_tls
            && self.quirks.tls_early_end_needs_abor.load(Ordering::Relaxed)
        {
            return self.abort_download(stream);
        }
        stream.abandon();
        let reply = match early_final {
            Some(r) => r,
            None if complete => {
                // The server has closed the data connection, so it is done with the transfer
                // and reads commands again: the next EPSV may go out before its 226 comes in,
                // which takes a round trip off every download.
                self.arm_passive();
                self.read_final()?
            }
            None => match self.read_early_end() {
                Ok(r) => r,
                Err(e) => {
                    if is_tls && matches!(e, FtpError::Io(_)) {
                        log::info!(
                            "server dropped the session when a TLS download was cut short; using ABOR from now on"
                        );
                        self.quirks
                            .tls_early_end_needs_abor
                            .store(true, Ordering::Relaxed);
                        // The download was meant to end anyway: carry on with a new session.
                        return self.reconnect();
                    }
                    return Err(e);
                }
            },
        };
        if !fits_transfer_end(&reply) {
            return Err(self.out_of_sequence("RETR", &reply));
        }
        if reply.is_success() {
            if reply.text().to_ascii_lowercase().contains("truncated") {
                // pure-ftpd cuts listings at its -L limit (10,000 entries by default) and
                // says so only here: the directory shows fewer files than it holds.
                log::warn!("the server cut a listing short: {}", reply.text().trim());
            }
            return Ok(());
        }
        if !complete && matches!(reply.code, 425 | 426 | 450 | 451) {
            return Ok(());
        }
        if complete && half_closed && matches!(reply.code, 425 | 426 | 450 | 451) {
            // Our early half-close may be what the server objected to: stop doing it. The
            // download still fails, and its caller's one retry runs without it.
            if !self
                .quirks
                .no_download_half_close
                .swap(true, Ordering::Relaxed)
            {
                log::warn!(
                    "server failed a download after we half-closed its data connection ({} {}); no longer half-closing",
                    reply.code,
                    reply.text().trim()
                );
            }
        }
        if !complete {
            // An answer that fits neither outcome: we cannot trust the reply sequence any more.
            self.broken = true;
        }
        Err(refusal("RETR", &reply))
    }

    /// Cuts a TLS download short the way proftpd needs: ABOR, let the server close the data
    /// connection cleanly (reading what it still sends), then NOOP to find the end of the
    /// replies (426+226, or 226, or 225, depending on timing and server).
    fn abort_download(&mut self, stream: DataStream) -> FtpResult<()> {
        self.send("ABOR")?;
        let deadline = Instant::now() + self.opts.timeout;
        let mut sink = vec![0u8; 64 * 1024];
        let mut stream = stream;
        loop {
            match stream.read(&mut sink) {
                Ok(0) => break,
                Ok(_) if Instant::now() < deadline => {}
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        stream.abandon();
        self.send("NOOP")?;
        loop {
            let reply = self.read()?;
            if reply.code == 200 {
                self.last_used = Instant::now();
                return Ok(());
            }
            if !matches!(
                reply.code,
                150 | 225 | 226 | 425 | 426 | 450 | 451 | 500 | 502
            ) {
                self.broken = true;
                return Err(FtpError::Protocol(format!(
                    "unexpected reply {} after ABOR",
                    reply.code
                )));
            }
        }
    }

    /// Ends an upload and returns the server's verdict on the stored file.
    pub fn finish_upload(&mut self, transfer: Transfer) -> FtpResult<()> {
        let result = self.end_upload(transfer);
        if result.is_ok() {
            self.arm_passive();
        }
        result
    }

    fn end_upload(&mut self, transfer: Transfer) -> FtpResult<()> {
        let Transfer {
            mut stream,
            early_final,
            ..
        } = transfer;
        let closed = stream.finish_upload();
        stream.abandon();
        let reply = match early_final {
            Some(r) => r,
            None => self.read_final()?,
        };
        if !fits_transfer_end(&reply) {
            return Err(self.out_of_sequence("STOR", &reply));
        }
        if !reply.is_success() {
            return Err(refusal("STOR", &reply));
        }
        closed.map_err(FtpError::Io)
    }

    /// Reads the reply that ends a download we cut short. pure-ftpd answers that with a
    /// lone 1xx and nothing after it, so after a 1xx a NOOP marks where the sequence ends:
    /// whatever final reply comes before NOOP's 200 belongs to the transfer.
    fn read_early_end(&mut self) -> FtpResult<Reply> {
        let first = self.read()?;
        if !first.is_preliminary() {
            return Ok(first);
        }
        self.send("NOOP")?;
        let mut outcome = None;
        loop {
            let reply = self.read()?;
            if reply.is_preliminary() {
                continue;
            }
            if reply.code == 200 {
                self.last_used = Instant::now();
                return Ok(outcome.unwrap_or(Reply {
                    code: 426,
                    lines: vec!["transfer ended early".into()],
                }));
            }
            if outcome.is_some() {
                self.broken = true;
                return Err(FtpError::Protocol(format!(
                    "unexpected reply {} after an interrupted transfer",
                    reply.code
                )));
            }
            outcome = Some(reply);
        }
    }

    /// Reads replies until a final one, skipping stray 1xx.
    fn read_final(&mut self) -> FtpResult<Reply> {
        loop {
            let reply = self.read()?;
            if !reply.is_preliminary() {
                self.last_used = Instant::now();
                return Ok(reply);
            }
        }
    }

    /// Lists a directory: MLSD where the server has it, else `LIST -a` after CWD (a path
    /// argument to LIST is globbed or taken as options by some servers).
    pub fn list_dir(&mut self, path: &str) -> FtpResult<Vec<Entry>> {
        if self.features.mlst && !self.quirks.no_mlsd.load(Ordering::Relaxed) {
            match self.read_listing(&format!("MLSD {path}"), ListingFormat::Mlsd) {
                Err(FtpError::Reply {
                    code: 500 | 502 | 504,
                    ..
                }) => {
                    self.quirks.no_mlsd.store(true, Ordering::Relaxed);
                }
                Ok(entries) => return self.fill_symlink_targets(path, entries),
                Err(e) => return Err(e),
            }
        }
        self.expect(&format!("CWD {path}"), |c| c == 250)?;
        self.read_listing("LIST -a", ListingFormat::List)
    }

    /// proftpd and pure-ftpd name no target for symlinks in MLSD; their LIST does
    /// (`name -> target`). One extra listing, only for directories that hold such links.
    fn fill_symlink_targets(
        &mut self,
        path: &str,
        mut entries: Vec<Entry>,
    ) -> FtpResult<Vec<Entry>> {
        let unknown = |e: &Entry| matches!(e.kind, EntryKind::Symlink { target: None });
        if !entries.iter().any(unknown) {
            return Ok(entries);
        }
        self.expect(&format!("CWD {path}"), |c| c == 250)?;
        let long = self.read_listing("LIST -a", ListingFormat::List)?;
        for entry in entries.iter_mut().filter(|e| unknown(e)) {
            let target = long.iter().find_map(|l| match &l.kind {
                EntryKind::Symlink { target } if l.name == entry.name => target.clone(),
                _ => None,
            });
            entry.kind = EntryKind::Symlink { target };
        }
        Ok(entries)
    }

    /// Runs a listing command and parses the data as it arrives (memory: the entries plus
    /// one line), up to `MAX_LISTING_BYTES` of listing text.
    fn read_listing(&mut self, command: &str, format: ListingFormat) -> FtpResult<Vec<Entry>> {
        let half_closing = !self.quirks.no_download_half_close.load(Ordering::Relaxed);
        match self.read_listing_once(command, format) {
            Err(e)
                if half_closing && self.quirks.no_download_half_close.load(Ordering::Relaxed) =>
            {
                log::debug!("listing failed with our early half-close ({e}); listing again");
                self.read_listing_once(command, format)
            }
            result => result,
        }
    }

    fn read_listing_once(&mut self, command: &str, format: ListingFormat) -> FtpResult<Vec<Entry>> {
        let mut transfer = self.start_transfer(command, 0, Direction::Download)?;
        let mut parser = ListingParser::new(format, SystemTime::now());
        let mut total = 0usize;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match transfer.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    total += n;
                    if total > MAX_LISTING_BYTES {
                        let _ = self.finish_download(transfer, false);
                        return Err(FtpError::Protocol("directory listing too large".into()));
                    }
                    parser.feed(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = self.finish_download(transfer, false);
                    self.broken = true;
                    return Err(FtpError::Io(e));
                }
            }
        }
        self.finish_download(transfer, true)?;
        Ok(parser.finish())
    }

    /// Describes one path with MLST; `None` if the server lacks MLST.
    pub fn mlst(&mut self, path: &str) -> FtpResult<Option<Entry>> {
        if !self.features.mlst {
            return Ok(None);
        }
        let reply = self.expect(&format!("MLST {path}"), |c| c == 250)?;
        let entry = reply
            .lines
            .iter()
            .skip(1)
            .find(|l| l.starts_with(' '))
            .and_then(|l| listing::parse_mlst_line(l));
        match entry {
            Some(e) => Ok(Some(e)),
            None => Err(FtpError::Protocol(format!(
                "unreadable MLST reply for {path:?}"
            ))),
        }
    }

    /// Size of a file in bytes (SIZE, RFC 3659).
    pub fn size(&mut self, path: &str) -> FtpResult<u64> {
        let reply = self.expect(&format!("SIZE {path}"), |c| c == 213)?;
        reply
            .text()
            .trim()
            .parse()
            .map_err(|_| FtpError::Protocol(format!("unreadable SIZE reply: {}", reply.text())))
    }

    /// Modification time of a file (MDTM, RFC 3659).
    pub fn mdtm(&mut self, path: &str) -> FtpResult<SystemTime> {
        let reply = self.expect(&format!("MDTM {path}"), |c| c == 213)?;
        time::parse_ftp_time(reply.text().trim())
            .ok_or_else(|| FtpError::Protocol(format!("unreadable MDTM reply: {}", reply.text())))
    }

    /// Removes a file.
    pub fn delete(&mut self, path: &str) -> FtpResult<()> {
        self.expect(&format!("DELE {path}"), |c| c == 250 || c == 200)
            .map(|_| ())
    }

    /// Creates a directory.
    pub fn mkdir(&mut self, path: &str) -> FtpResult<()> {
        self.expect(&format!("MKD {path}"), |c| c == 257 || c == 250)
            .map(|_| ())
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, path: &str) -> FtpResult<()> {
        self.expect(&format!("RMD {path}"), |c| c == 250 || c == 200)
            .map(|_| ())
    }

    /// Renames a file or directory (RNFR + RNTO).
    pub fn rename(&mut self, from: &str, to: &str) -> FtpResult<()> {
        check_name(to)?;
        self.expect(&format!("RNFR {from}"), |c| c == 350)?;
        self.expect(&format!("RNTO {to}"), |c| c == 250 || c == 200)
            .map(|_| ())
    }

    /// Sets a modification time: MFMT, else vsftpd's `MDTM time path`; NotSupported when
    /// the server has neither.
    pub fn set_mtime(&mut self, path: &str, mtime: SystemTime) -> FtpResult<()> {
        if self.quirks.no_set_mtime.load(Ordering::Relaxed) {
            return Err(FtpError::NotSupported("setting modification times".into()));
        }
        let stamp = time::format_ftp_time(mtime);
        let command = if self.features.mfmt {
            format!("MFMT {stamp} {path}")
        } else if self.features.mdtm {
            format!("MDTM {stamp} {path}")
        } else {
            self.quirks.no_set_mtime.store(true, Ordering::Relaxed);
            return Err(FtpError::NotSupported("setting modification times".into()));
        };
        let reply = self.cmd(&command)?;
        match reply.code {
            213 | 200 | 250 => Ok(()),
            500 | 502 | 504 => {
                self.quirks.no_set_mtime.store(true, Ordering::Relaxed);
                Err(FtpError::NotSupported("setting modification times".into()))
            }
            _ => Err(refusal(&command, &reply)),
        }
    }

    /// Sets permission bits with SITE CHMOD; NotSupported when the server lacks it.
    pub fn chmod(&mut self, path: &str, mode: u32) -> FtpResult<()> {
        if self.quirks.no_chmod.load(Ordering::Relaxed) {
            return Err(FtpError::NotSupported("SITE CHMOD".into()));
        }
        let command = format!("SITE CHMOD {:o} {path}", mode & 0o7777);
        let reply = self.cmd(&command)?;
        match reply.code {
            200 | 250 => Ok(()),
            500 | 502 | 504 => {
                self.quirks.no_chmod.store(true, Ordering::Relaxed);
                Err(FtpError::NotSupported("SITE CHMOD".into()))
            }
            _ => Err(refusal(&command, &reply)),
        }
    }

    /// Starts a download of `path` at byte `offset` (REST + RETR).
    pub fn retr(&mut self, path: &str, offset: u64) -> FtpResult<Transfer> {
        self.start_transfer(&format!("RETR {path}"), offset, Direction::Download)
    }

    /// Starts an upload to `path`, replacing it (STOR) or appending (APPE).
    pub fn stor(&mut self, path: &str, append: bool) -> FtpResult<Transfer> {
        let verb = if append { "APPE" } else { "STOR" };
        self.start_transfer(&format!("{verb} {path}"), 0, Direction::Upload)
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(sock) = self.io.get_ref().tcp() {
            let _ = sock.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// Whether a reply can be the first answer to a transfer command (RFC 959: 1xx, or the final
/// 226/250 of servers that skip the 1xx, or a refusal).
fn fits_transfer_command(reply: &Reply) -> bool {
    reply.is_preliminary() || fits_transfer_end(reply)
}

/// Whether a reply can end a transfer: 226/250 (225 after an early end), or a refusal.
fn fits_transfer_end(reply: &Reply) -> bool {
    matches!(reply.code, 225 | 226 | 250) || reply.code >= 400
}

/// Refuses names that would let a path inject a command.
pub fn check_name(path: &str) -> FtpResult<()> {
    if path.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(FtpError::InvalidName(
            "names with CR, LF or NUL cannot be sent over FTP".into(),
        ));
    }
    Ok(())
}

/// A negative reply as an error naming the command's verb (arguments may be secrets).
fn refusal(line: &str, reply: &Reply) -> FtpError {
    let verb = line.split_whitespace().next().unwrap_or("").to_string();
    FtpError::Reply {
        command: verb,
        code: reply.code,
        text: reply.text(),
    }
}

/// Connects to the first address of `host` that answers within `timeout`.
fn connect_tcp(host: &str, port: u16, timeout: Duration) -> FtpResult<TcpStream> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (bare, port)
        .to_socket_addrs()
        .map_err(|e| {
            FtpError::Io(io::Error::new(
                e.kind(),
                format!("cannot resolve {host}: {e}"),
            ))
        })?
        .collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(sock) => {
                sock.set_read_timeout(Some(timeout))?;
                sock.set_write_timeout(Some(timeout))?;
                sock.set_nodelay(true)?;
                return Ok(sock);
            }
            Err(e) => last = e,
        }
    }
    Err(FtpError::Io(io::Error::new(
        last.kind(),
        format!("cannot connect to {host}:{port}: {last}"),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feat(text: &str) -> Features {
        let reply = read_reply(&mut io::Cursor::new(text.as_bytes().to_vec())).unwrap();
        Features::parse(&reply)
    }

    #[test]
    fn vsftpd_features() {
        let f = feat(
            "211-Features:\r\n AUTH TLS\r\n EPRT\r\n EPSV\r\n MDTM\r\n PASV\r\n PBSZ\r\n PROT\r\n REST STREAM\r\n SIZE\r\n TVFS\r\n UTF8\r\n211 End\r\n",
        );
        assert!(f.auth_tls && f.epsv && f.mdtm && f.size && f.rest_stream && f.utf8);
        assert!(!f.mlst && !f.mfmt);
    }

    #[test]
    fn proftpd_features() {
        let f = feat(
            "211-Features:\r\n AUTH TLS\r\n CCC\r\n PBSZ\r\n PROT\r\n LANG en-US*\r\n MDTM\r\n MFMT\r\n TVFS\r\n UTF8\r\n MFF modify;UNIX.group;UNIX.mode;\r\n MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.groupname*;UNIX.mode*;UNIX.owner*;UNIX.ownername*;\r\n SITE MKDIR\r\n SITE RMDIR\r\n SITE UTIME\r\n SITE SYMLINK\r\n SITE COPY\r\n SIZE\r\n REST STREAM\r\n EPSV\r\n EPRT\r\n211 End\r\n",
        );
        assert!(f.auth_tls && f.mlst && f.mfmt && f.mdtm && f.size && f.rest_stream);
    }

    #[test]
    fn auth_variants() {
        assert!(feat("211-x\r\n AUTH SSL;TLS\r\n211 End\r\n").auth_tls);
        assert!(feat("211-x\r\n AUTH TLS-C\r\n211 End\r\n").auth_tls);
        assert!(!feat("211-x\r\n AUTH SSL\r\n211 End\r\n").auth_tls);
        assert_eq!(feat("211 no features\r\n"), Features::default());
    }

    #[test]
    fn names_with_line_breaks_are_refused() {
        assert!(check_name("/a\r\nDELE b").is_err());
        assert!(check_name("/a\nb").is_err());
        assert!(check_name("/a\0b").is_err());
        assert!(check_name("/a b/ç").is_ok());
    }

    #[test]
    fn replies_that_cannot_answer_a_transfer() {
        let reply = |code| Reply {
            code,
            lines: vec![format!("{code} x")],
        };
        for ok in [125, 150, 226, 250, 425, 450, 550] {
            assert!(fits_transfer_command(&reply(ok)), "{ok}");
        }
        // a 229 meant for EPSV, a 200 for TYPE, a 350 for REST: out of order
        for bad in [200, 227, 229, 257, 331, 350] {
            assert!(!fits_transfer_command(&reply(bad)), "{bad}");
        }
        assert!(!fits_transfer_end(&reply(150)));
        assert!(fits_transfer_end(&reply(426)));
    }

    /// A one-session server on 127.0.0.1 answering each command line with `answer`;
    /// returns its port and, once the session ends, the lines it received.
    fn scripted_server(
        answer: fn(&str) -> &'static str,
    ) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use std::io::BufRead;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut out = sock.try_clone().unwrap();
            out.write_all(b"220 scripted\r\n").unwrap();
            let mut seen = Vec::new();
            for line in BufReader::new(sock).lines() {
                let Ok(line) = line else { break };
                let reply = answer(&line);
                seen.push(line);
                if out.write_all(reply.as_bytes()).is_err() || reply.starts_with("221") {
                    break;
                }
            }
            seen
        });
        (port, server)
    }

    fn plain_options(port: u16) -> Arc<ConnectOptions> {
        Arc::new(ConnectOptions {
            host: "127.0.0.1".into(),
            port,
            user: "someone".into(),
            password: Password::new("secret"),
            tls_mode: TlsMode::Off,
            tls: None,
            active: false,
            timeout: Duration::from_secs(10),
            trust_pasv_ip: false,
        })
    }

    #[test]
    fn login_is_pipelined_and_an_unasked_pass_is_ignored() {
        // A server that needs no password: USER is enough, PASS is out of sequence.
        let (port, server) = scripted_server(|line| match line.split(' ').next().unwrap() {
            "USER" => "230 welcome, no password needed\r\n",
            "PASS" => "503 already logged in\r\n",
            "FEAT" => "211-Features:\r\n EPSV\r\n211 End\r\n",
            "EPSV" => "229 Entering Extended Passive Mode (|||9|)\r\n",
            "QUIT" => "221 bye\r\n",
            _ => "200 ok\r\n",
        });
        let mut c = Control::connect(plain_options(port), Default::default()).expect("login");
        assert!(c.features().epsv);
        c.noop().expect("NOOP after login");
        c.quit();
        let seen = server.join().unwrap();
        assert_eq!(
            seen[..5],
            [
                "USER someone",
                "PASS secret",
                "FEAT",
                "OPTS UTF8 ON",
                "TYPE I"
            ]
        );
    }

    #[test]
    fn refused_login_reports_the_reply_that_refused() {
        let (port, server) = scripted_server(|line| match line.split(' ').next().unwrap() {
            "USER" => "331 password please\r\n",
            "PASS" => "530 Login incorrect\r\n",
            _ => "530 log in first\r\n",
        });
        let err = Control::connect(plain_options(port), Default::default())
            .err()
            .expect("login must fail");
        assert!(
            matches!(&err, FtpError::Reply { code: 530, text, .. } if text.contains("incorrect")),
            "{err}"
        );
        drop(server);
    }

    #[test]
    fn password_is_hidden_from_debug() {
        let opts = format!("{:?}", Password::new("hunter2"));
        assert!(!opts.contains("hunter2"));
    }
}

/// FEAT replies captured from the Debian 12 servers (tests/fixtures/servers).
#[cfg(test)]
mod captured_feat_tests {
    use super::*;

    fn parse(text: &str) -> Features {
        Features::parse(&read_reply(&mut io::Cursor::new(text.as_bytes().to_vec())).unwrap())
    }

    #[test]
    fn captured_servers() {
        let vsftpd = parse(include_str!("../../tests/fixtures/servers/vsftpd/feat.txt"));
        assert!(vsftpd.auth_tls && vsftpd.epsv && vsftpd.mdtm && vsftpd.size && vsftpd.utf8);
        assert!(!vsftpd.mlst && !vsftpd.mfmt);
        let proftpd = parse(include_str!(
            "../../tests/fixtures/servers/proftpd/feat.txt"
        ));
        assert!(proftpd.auth_tls && proftpd.mlst && proftpd.mfmt && proftpd.rest_stream);
        let pure = parse(include_str!(
            "../../tests/fixtures/servers/pure-ftpd/feat.txt"
        ));
        assert!(pure.auth_tls && pure.mlst && pure.mfmt && pure.epsv && pure.utf8);
    }
}
