//! FTP text the proxy must understand or change: reply framing (multi-line aware),
//! 227/229 passive replies and PORT/EPRT commands. Pure functions, no I/O.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Where one line stands in the server's reply stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineInfo {
    /// The reply code, if this line starts or ends a reply.
    pub code: Option<u16>,
    /// This line starts a reply.
    pub first: bool,
    /// This line ends a reply (a single-line reply is first and last).
    pub last: bool,
}

/// Follows reply framing across lines: `123-...` opens a multi-line reply that only a line
/// starting with `123 ` closes; lines in between may look like anything, digits included.
#[derive(Debug, Default)]
pub struct ReplyTracker {
    open: Option<[u8; 3]>,
}

fn code_of(line: &[u8]) -> Option<([u8; 3], u16)> {
    let d = line.get(..3)?;
    if !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = d.iter().fold(0u16, |n, b| n * 10 + u16::from(b - b'0'));
    Some(([d[0], d[1], d[2]], code))
}

/// `line` without its trailing CR LF (or LF).
pub fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl ReplyTracker {
    /// Classify the next line (with or without its line end) of the server's replies.
    pub fn line(&mut self, line: &[u8]) -> LineInfo {
        let line = trim_eol(line);
        let sep = line.get(3).copied();
        if let Some(open) = self.open {
            if line.starts_with(&open) && matches!(sep, None | Some(b' ')) {
                self.open = None;
                return LineInfo {
                    code: code_of(line).map(|c| c.1),
                    first: false,
                    last: true,
                };
            }
            return LineInfo {
                code: None,
                first: false,
                last: false,
            };
        }
        match (code_of(line), sep) {
            (Some((digits, code)), Some(b'-')) => {
                self.open = Some(digits);
                LineInfo {
                    code: Some(code),
                    first: true,
                    last: false,
                }
            }
            (Some((_, code)), None | Some(b' ')) => LineInfo {
                code: Some(code),
                first: true,
                last: true,
            },
            // Not a reply line at all: pass it on as a reply of its own.
            _ => LineInfo {
                code: None,
                first: true,
                last: true,
            },
        }
    }
}

/// Parse `n1,n2,...` with `count` numbers, each at most `max`, starting at `s[0]`.
/// Returns the numbers and how many bytes they took.
fn number_list(s: &[u8], count: usize) -> Option<(Vec<u16>, usize)> {
    let mut nums = Vec::with_capacity(count);
    let mut i = 0;
    while nums.len() < count {
        if !nums.is_empty() {
            if s.get(i) != Some(&b',') {
                return None;
            }
            i += 1;
        }
        let start = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) && i - start < 3 {
            i += 1;
        }
        if i == start || s.get(i).is_some_and(u8::is_ascii_digit) {
            return None;
        }
        let n: u16 = std::str::from_utf8(&s[start..i]).ok()?.parse().ok()?;
        if n > 255 {
            return None;
        }
        nums.push(n);
    }
    Some((nums, i))
}

/// Find `h1,h2,h3,h4,p1,p2` anywhere in `s` (with or without parentheses, as servers differ).
/// Returns its byte range, the address and the port.
fn find_host_port(s: &[u8]) -> Option<(std::ops::Range<usize>, Ipv4Addr, u16)> {
    (0..s.len())
        .filter(|&i| s[i].is_ascii_digit() && (i == 0 || !s[i - 1].is_ascii_digit()))
        .find_map(|i| {
            let (n, len) = number_list(&s[i..], 6)?;
            let ip = Ipv4Addr::new(n[0] as u8, n[1] as u8, n[2] as u8, n[3] as u8);
            Some((i..i + len, ip, n[4] * 256 + n[5]))
        })
}

fn host_port_text(ip: Ipv4Addr, port: u16) -> String {
    let o = ip.octets();
    format!(
        "{},{},{},{},{},{}",
        o[0],
        o[1],
        o[2],
        o[3],
        port >> 8,
        port & 0xff
    )
}

/// The data port of a `227` reply line (the address in it is ignored on purpose: servers
/// behind NAT send private or 0.0.0.0 addresses).
pub fn parse_227(line: &[u8]) -> Option<u16> {
    let line = trim_eol(line);
    if !line.starts_with(b"227") {
        return None;
    }
    find_host_port(&line[3..]).map(|(_, _, port)| port)
}

/// The `227` line with its address and port replaced by `ip:port`, the rest kept.
pub fn rewrite_227(line: &[u8], ip: Ipv4Addr, port: u16) -> Option<Vec<u8>> {
    let body = trim_eol(line);
    if !body.starts_with(b"227") {
        return None;
    }
    let (range, _, _) = find_host_port(&body[3..])?;
    let mut out = body[..3 + range.start].to_vec();
    out.extend_from_slice(host_port_text(ip, port).as_bytes());
    out.extend_from_slice(&body[3 + range.end..]);
    out.extend_from_slice(&line[body.len()..]);
    Some(out)
}

/// Find `(<d><d><d>port<d>)` of a 229 reply; returns the range of the port digits and the port.
fn find_epsv_port(s: &[u8]) -> Option<(std::ops::Range<usize>, u16)> {
    let open = s.iter().position(|&b| b == b'(')?;
    let d = *s.get(open + 1)?;
    if !(33..=126).contains(&d) || d.is_ascii_digit() {
        return None;
    }
    if s.get(open + 2) != Some(&d) || s.get(open + 3) != Some(&d) {
        return None;
    }
    let start = open + 4;
    let mut end = start;
    while s.get(end).is_some_and(u8::is_ascii_digit) {
        end += 1;
    }
    if end == start || s.get(end) != Some(&d) || s.get(end + 1) != Some(&b')') {
        return None;
    }
    let port = std::str::from_utf8(&s[start..end]).ok()?.parse().ok()?;
    Some((start..end, port))
}

/// The data port of a `229 ... (|||port|)` reply line.
pub fn parse_229(line: &[u8]) -> Option<u16> {
    let line = trim_eol(line);
    if !line.starts_with(b"229") {
        return None;
    }
    find_epsv_port(line).map(|(_, p)| p)
}

/// The `229` line with its port replaced, the rest kept.
pub fn rewrite_229(line: &[u8], port: u16) -> Option<Vec<u8>> {
    if !line.starts_with(b"229") {
        return None;
    }
    let (range, _) = find_epsv_port(line)?;
    let mut out = line[..range.start].to_vec();
    out.extend_from_slice(port.to_string().as_bytes());
    out.extend_from_slice(&line[range.end..]);
    Some(out)
}

/// The upper-case verb and the argument of a client command line.
pub fn split_command(line: &[u8]) -> (String, &[u8]) {
    let line = trim_eol(line);
    let (verb, arg) = match line.iter().position(|&b| b == b' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &line[line.len()..]),
    };
    (String::from_utf8_lossy(verb).to_ascii_uppercase(), arg)
}

/// The address of a `PORT h1,h2,h3,h4,p1,p2` argument.
pub fn parse_port(arg: &[u8]) -> Option<SocketAddr> {
    let arg = trim_eol(arg);
    let (nums, len) = number_list(arg.trim_ascii_start(), 6)?;
    if len != arg.trim_ascii().len() {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    Some(SocketAddr::new(IpAddr::V4(ip), nums[4] * 256 + nums[5]))
}

/// The address of an `EPRT <d>proto<d>addr<d>port<d>` argument (RFC 2428).
pub fn parse_eprt(arg: &[u8]) -> Option<SocketAddr> {
    let arg = std::str::from_utf8(trim_eol(arg)).ok()?.trim();
    let d = arg.chars().next()?;
    let parts: Vec<&str> = arg.split(d).collect();
    // "|1|1.2.3.4|5|" splits into ["", "1", "1.2.3.4", "5", ""]
    if parts.len() != 5 || !parts[0].is_empty() || !parts[4].is_empty() {
        return None;
    }
    let ip: IpAddr = parts[2].parse().ok()?;
    match (parts[1], ip) {
        ("1", IpAddr::V4(_)) | ("2", IpAddr::V6(_)) => {}
        _ => return None,
    }
    Some(SocketAddr::new(ip, parts[3].parse().ok()?))
}

/// A `PORT` command line for an IPv4 address.
pub fn port_command(ip: Ipv4Addr, port: u16) -> Vec<u8> {
    format!("PORT {}\r\n", host_port_text(ip, port)).into_bytes()
}

/// An `EPRT` command line for any address.
pub fn eprt_command(addr: SocketAddr) -> Vec<u8> {
    let proto = if addr.is_ipv4() { 1 } else { 2 };
    format!("EPRT |{proto}|{}|{}|\r\n", addr.ip(), addr.port()).into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(code: Option<u16>, first: bool, last: bool) -> LineInfo {
        LineInfo { code, first, last }
    }

    #[test]
    fn single_and_multi_line_replies() {
        let mut t = ReplyTracker::default();
        assert_eq!(t.line(b"220 Welcome\r\n"), info(Some(220), true, true));
        assert_eq!(t.line(b"211-Features:\r\n"), info(Some(211), true, false));
        assert_eq!(t.line(b" MDTM\r\n"), info(None, false, false));
        // a line in the middle that looks like a reply of another code
        assert_eq!(t.line(b"227 not the end\r\n"), info(None, false, false));
        // same code but '-' does not end it
        assert_eq!(t.line(b"211-still going\r\n"), info(None, false, false));
        assert_eq!(t.line(b"211 End\r\n"), info(Some(211), false, true));
        assert_eq!(t.line(b"200\r\n"), info(Some(200), true, true));
        assert_eq!(t.line(b"garbage\n"), info(None, true, true));
    }

    #[test]
    fn pasv_reply_forms() {
        let ip = Ipv4Addr::new(127, 0, 0, 1);
        let line = b"227 Entering Passive Mode (10,0,0,7,117,48).\r\n";
        assert_eq!(parse_227(line), Some(117 * 256 + 48));
        assert_eq!(
            rewrite_227(line, ip, 40000).as_deref(),
            Some(&b"227 Entering Passive Mode (127,0,0,1,156,64).\r\n"[..])
        );
        // no parentheses (RFC 1123 allows it; some servers do it)
        let bare = b"227 Entering Passive Mode 0,0,0,0,4,1\r\n";
        assert_eq!(parse_227(bare), Some(1025));
        assert_eq!(
            rewrite_227(bare, ip, 258).as_deref(),
            Some(&b"227 Entering Passive Mode 127,0,0,1,1,2\r\n"[..])
        );
        assert_eq!(parse_227(b"227 =192,168,1,2,0,21"), Some(21));
        // numbers in the text before the address are skipped
        assert_eq!(
            parse_227(b"227 Mode 2 ok (1,2,3,4,0,99)\r\n"),
            Some(99),
            "first six-number run wins"
        );
        for bad in [
            &b"227 Entering Passive Mode\r\n"[..],
            b"227 (1,2,3,4,5)\r\n",
            b"227 (1,2,3,4,5,256)\r\n",
            b"200 (1,2,3,4,5,6)\r\n",
            b"227 (1,2,3,4,5,6666)\r\n",
        ] {
            assert_eq!(parse_227(bad), None, "{}", String::from_utf8_lossy(bad));
            assert_eq!(rewrite_227(bad, ip, 1), None);
        }
    }

    #[test]
    fn epsv_reply_forms() {
        let line = b"229 Entering Extended Passive Mode (|||30012|)\r\n";
        assert_eq!(parse_229(line), Some(30012));
        assert_eq!(
            rewrite_229(line, 41234).as_deref(),
            Some(&b"229 Entering Extended Passive Mode (|||41234|)\r\n"[..])
        );
        assert_eq!(parse_229(b"229 ok (!!!21!)"), Some(21));
        assert_eq!(
            rewrite_229(b"229 ok (!!!21!)", 7).as_deref(),
            Some(&b"229 ok (!!!7!)"[..])
        );
        for bad in [
            &b"229 Entering Extended Passive Mode\r\n"[..],
            b"229 (||30012|)",
            b"229 (|||x|)",
            b"229 (|||70000|)",
            b"229 (|||12|",
            b"229 (111222|)",
            b"227 (|||12|)",
        ] {
            assert_eq!(parse_229(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn commands() {
        assert_eq!(
            split_command(b"retr file name\r\n"),
            ("RETR".to_string(), &b"file name"[..])
        );
        assert_eq!(split_command(b"PASV\r\n"), ("PASV".to_string(), &b""[..]));
        assert_eq!(
            parse_port(b"127,0,0,1,200,10"),
            Some("127.0.0.1:51210".parse().unwrap())
        );
        assert_eq!(parse_port(b"127,0,0,1,200"), None);
        assert_eq!(parse_port(b"127,0,0,1,200,10,3"), None);
        assert_eq!(parse_port(b"127,0,0,1,200,x"), None);
        assert_eq!(
            parse_eprt(b"|1|127.0.0.1|6446|"),
            Some("127.0.0.1:6446".parse().unwrap())
        );
        assert_eq!(parse_eprt(b"!2!::1!99!"), Some("[::1]:99".parse().unwrap()));
        assert_eq!(parse_eprt(b"|2|127.0.0.1|6446|"), None);
        assert_eq!(parse_eprt(b"|1|127.0.0.1|6446"), None);
        assert_eq!(parse_eprt(b"|1|127.0.0.1|port|"), None);
        assert_eq!(
            port_command(Ipv4Addr::new(10, 1, 2, 3), 258),
            b"PORT 10,1,2,3,1,2\r\n"
        );
        assert_eq!(
            eprt_command("[::1]:21".parse().unwrap()),
            b"EPRT |2|::1|21|\r\n"
        );
    }
}
