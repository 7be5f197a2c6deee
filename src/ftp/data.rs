//! Data connections: the stream type, passive/active address handling, bounded waits.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::tls::{self, TlsStream};

/// An open data connection, plain or TLS-protected (PROT P).
pub enum DataStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl DataStream {
    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            DataStream::Plain(s) => s,
            DataStream::Tls(s) => &s.sock,
        }
    }

    /// Ends an upload so the server sees a clean end of file (and, under TLS, keeps the
    /// session tickets it sent us).
    pub fn finish_upload(&mut self) -> io::Result<()> {
        match self {
            DataStream::Plain(s) => {
                s.flush()?;
                s.shutdown(Shutdown::Write)
            }
            DataStream::Tls(s) => tls::close_gracefully(s),
        }
    }

    /// Drops the connection at once; the server sees a reset if it was still sending.
    pub fn abandon(self) {
        if let DataStream::Tls(mut s) = self {
            // proftpd ends the whole session when a TLS data connection drops without
            // close_notify; say goodbye first (without waiting for the answer).
            s.conn.send_close_notify();
            let _ = s.conn.write_tls(&mut s.sock);
            let _ = s.sock.shutdown(Shutdown::Both);
            return;
        }
        let _ = self.tcp().shutdown(Shutdown::Both);
    }
}

impl Read for DataStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(s) => s.read(buf),
            DataStream::Tls(s) => match s.read(buf) {
                // Servers often close the data connection without close_notify after the
                // last byte; the control connection's 226 tells whether the file was whole.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for DataStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            DataStream::Plain(s) => s.write(buf),
            DataStream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            DataStream::Plain(s) => s.flush(),
            DataStream::Tls(s) => s.flush(),
        }
    }
}

/// Reads the port from a 229 reply: "Entering Extended Passive Mode (|||6446|)" (RFC 2428;
/// the delimiter may be any printable character).
pub fn parse_epsv(text: &str) -> Option<u16> {
    let start = text.find('(')?;
    let inner = text.get(start + 1..)?;
    let end = inner.find(')')?;
    let inner = inner.get(..end)?;
    let delim = inner.chars().next()?;
    let fields: Vec<&str> = inner.split(delim).collect();
    // "|||6446|" splits into ["", "", "", "6446", ""].
    if fields.len() != 5 {
        return None;
    }
    fields[3].parse::<u16>().ok().filter(|&p| p != 0)
}

/// Reads address and port from a 227 reply: "Entering Passive Mode (h1,h2,h3,h4,p1,p2)";
/// the parentheses are optional in practice.
pub fn parse_pasv(text: &str) -> Option<(Ipv4Addr, u16)> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let end = bytes[i..]
                .iter()
                .position(|b| !(b.is_ascii_digit() || *b == b','))
                .map_or(bytes.len(), |n| i + n);
            let numbers: Vec<&str> = text.get(i..end)?.split(',').collect();
            if numbers.len() == 6 {
                let mut v = [0u8; 6];
                for (slot, n) in v.iter_mut().zip(&numbers) {
                    *slot = n.parse().ok()?;
                }
                let port = u16::from(v[4]) << 8 | u16::from(v[5]);
                if port == 0 {
                    return None;
                }
                return Some((Ipv4Addr::new(v[0], v[1], v[2], v[3]), port));
            }
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

/// The PORT (IPv4) or EPRT (IPv6) command announcing our listening address.
pub fn active_command(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => {
            let [h1, h2, h3, h4] = a.ip().octets();
            format!(
                "PORT {h1},{h2},{h3},{h4},{},{}",
                a.port() >> 8,
                a.port() & 0xff
            )
        }
        SocketAddr::V6(a) => format!("EPRT |2|{}|{}|", a.ip(), a.port()),
    }
}

/// Which of several file descriptors became readable.
pub fn wait_readable(fds: &[RawFd], timeout: Duration) -> io::Result<Vec<bool>> {
    let deadline = Instant::now() + timeout;
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: pollfds is a valid, exclusively borrowed array of pollfd of the given length.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "timed out waiting for the server",
            ));
        }
        return Ok(pollfds
            .iter()
            .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) != 0)
            .collect());
    }
}

/// Accepts the server's data connection in active mode, refusing any peer but the server.
pub fn accept_from(
    listener: &TcpListener,
    server: IpAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        wait_readable(&[listener.as_raw_fd()], left)?;
        let (sock, peer) = listener.accept()?;
        if peer.ip() == server {
            sock.set_nonblocking(false)?;
            return Ok(sock);
        }
        log::warn!("refused a data connection from {peer}: not the server ({server})");
        drop(sock);
    }
}

/// Applies read/write timeouts so no data wait is unbounded, and disables Nagle.
pub fn set_timeouts(sock: &TcpStream, timeout: Duration) -> io::Result<()> {
    // Without NODELAY the last small segment of an upload waits for the server's delayed
    // ACK (~40 ms per file), which dominates small-file copies.
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(timeout))?;
    sock.set_write_timeout(Some(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epsv_replies() {
        assert_eq!(
            parse_epsv("Entering Extended Passive Mode (|||30042|)"),
            Some(30042)
        );
        assert_eq!(
            parse_epsv("Entering extended passive mode (!!!6446!)"),
            Some(6446)
        );
        assert_eq!(parse_epsv("EPSV ok (|||0|)"), None);
        assert_eq!(parse_epsv("no port here"), None);
        assert_eq!(parse_epsv("(|||99999|)"), None);
        assert_eq!(parse_epsv("(|||"), None);
    }

    #[test]
    fn pasv_replies() {
        assert_eq!(
            parse_pasv("Entering Passive Mode (127,0,0,1,117,48)."),
            Some((Ipv4Addr::new(127, 0, 0, 1), 30000))
        );
        // pure-ftpd and some embedded servers: no parentheses.
        assert_eq!(
            parse_pasv("Entering Passive Mode 10,0,0,5,4,1"),
            Some((Ipv4Addr::new(10, 0, 0, 5), 1025))
        );
        assert_eq!(
            parse_pasv("=227 Entering Passive Mode (0,0,0,0,200,10)"),
            Some((Ipv4Addr::new(0, 0, 0, 0), 51210))
        );
        assert_eq!(parse_pasv("Entering Passive Mode (127,0,0,1,300,1)"), None);
        assert_eq!(parse_pasv("Passive (1,2,3)"), None);
    }

    #[test]
    fn active_commands() {
        assert_eq!(
            active_command("127.0.0.1:30001".parse().unwrap()),
            "PORT 127,0,0,1,117,49"
        );
        assert_eq!(
            active_command("[::1]:2000".parse().unwrap()),
            "EPRT |2|::1|2000|"
        );
    }

    proptest::proptest! {
        #[test]
        fn passive_parsers_never_panic(s in "\\PC{0,80}") {
            let _ = parse_epsv(&s);
            let _ = parse_pasv(&s);
        }
    }
}
