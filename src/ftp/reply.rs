//! Server replies (RFC 959 §4.2): single- and multi-line, read with bounded memory.

use std::io::{self, BufRead};

use super::error::{FtpError, FtpResult};

/// Longest reply line we accept; a server sending more is broken or hostile.
const MAX_LINE: usize = 16 * 1024;
/// Most lines in one multi-line reply (FEAT, MLST, STAT); bounds memory.
const MAX_LINES: usize = 4096;

/// One complete server reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit code.
    pub code: u16,
    /// The text of each line without the code prefix and without CRLF.
    pub lines: Vec<String>,
}

impl Reply {
    /// The reply's text on one line (lines joined by spaces), for messages.
    pub fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// 1xx: the server started something and another reply will follow.
    pub fn is_preliminary(&self) -> bool {
        (100..200).contains(&self.code)
    }

    /// 2xx: the command succeeded.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: the server wants more (e.g. PASS after USER, RNTO after RNFR).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }
}

/// Reads one line ending in LF (CR before it optional), at most `MAX_LINE` bytes.
fn read_line<R: BufRead>(reader: &mut R) -> FtpResult<String> {
    let mut line = Vec::new();
    loop {
        let available = match reader.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FtpError::Io(e)),
        };
        if available.is_empty() {
            return Err(FtpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed the control connection",
            )));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if line.len() + chunk.len() > MAX_LINE {
            return Err(FtpError::Protocol(format!(
                "reply line longer than {MAX_LINE} bytes"
            )));
        }
        line.extend_from_slice(chunk);
        let consumed = done.unwrap_or(chunk.len());
        reader.consume(consumed);
        if done.is_some() {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
    }
}

/// Splits "123-text" / "123 text" / "123" into (code, separator, text).
fn split_code(line: &str) -> Option<(u16, Option<u8>, &str)> {
    let bytes = line.as_bytes();
    if bytes.len() < 3 || !bytes[..3].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code: u16 = line.get(..3)?.parse().ok()?;
    if !(100..600).contains(&code) {
        return None;
    }
    match bytes.get(3) {
        None => Some((code, None, "")),
        Some(&sep @ (b' ' | b'-')) => Some((code, Some(sep), line.get(4..).unwrap_or(""))),
        Some(_) => None,
    }
}

/// Reads one complete reply, following multi-line replies to their closing "NNN " line.
pub fn read_reply<R: BufRead>(reader: &mut R) -> FtpResult<Reply> {
    let first = read_line(reader)?;
    let Some((code, sep, text)) = split_code(&first) else {
        return Err(FtpError::Protocol(format!(
            "malformed reply line: {:?}",
            truncate(&first)
        )));
    };
    let mut lines = vec![text.to_string()];
    if sep != Some(b'-') {
        return Ok(Reply { code, lines });
    }
    loop {
        let line = read_line(reader)?;
        if let Some((c, s, t)) = split_code(&line)
            && c == code
            && s != Some(b'-')
        {
            lines.push(t.to_string());
            return Ok(Reply { code, lines });
        }
        if lines.len() >= MAX_LINES {
            return Err(FtpError::Protocol(format!(
                "multi-line reply longer than {MAX_LINES} lines"
            )));
        }
        lines.push(line);
    }
}

/// Shortens a line for an error message.
fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn parse(s: &str) -> FtpResult<Reply> {
        read_reply(&mut Cursor::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn single_line() {
        let r = parse("220 (vsFTPd 3.0.3)\r\n").unwrap();
        assert_eq!(r.code, 220);
        assert_eq!(r.text(), "(vsFTPd 3.0.3)");
    }

    #[test]
    fn bare_code_and_lf_only() {
        let r = parse("200\n").unwrap();
        assert_eq!(r.code, 200);
        assert_eq!(r.lines, vec![""]);
    }

    #[test]
    fn multi_line_feat_from_proftpd() {
        let text = "211-Features:\r\n AUTH TLS\r\n MFMT\r\n MLST modify*;perm*;size*;type*;unique*;UNIX.group*;UNIX.mode*;UNIX.owner*;\r\n REST STREAM\r\n SIZE\r\n211 End\r\n";
        let r = parse(text).unwrap();
        assert_eq!(r.code, 211);
        assert_eq!(r.lines.len(), 7);
        assert_eq!(r.lines[1], " AUTH TLS");
        assert_eq!(r.lines[6], "End");
    }

    #[test]
    fn multi_line_with_embedded_codes_and_other_code() {
        // RFC 959's example: inner lines may start with digits.
        let text = "123-First line\r\nSecond line\r\n  234 A line beginning with numbers\r\n123-not the end\r\n456 also not the end\r\n123 The last line\r\n";
        let r = parse(text).unwrap();
        assert_eq!(r.code, 123);
        assert_eq!(r.lines.len(), 6);
        assert_eq!(r.lines[5], "The last line");
    }

    #[test]
    fn two_replies_in_a_row_are_read_separately() {
        let mut c = Cursor::new(b"150 Opening\r\n226 Done\r\n".to_vec());
        assert_eq!(read_reply(&mut c).unwrap().code, 150);
        assert_eq!(read_reply(&mut c).unwrap().code, 226);
    }

    #[test]
    fn malformed_and_truncated() {
        assert!(matches!(parse("hello\r\n"), Err(FtpError::Protocol(_))));
        assert!(matches!(parse("22\r\n"), Err(FtpError::Protocol(_))));
        assert!(matches!(parse("099 x\r\n"), Err(FtpError::Protocol(_))));
        assert!(matches!(parse("220x\r\n"), Err(FtpError::Protocol(_))));
        assert!(matches!(parse("211-a\r\nb\r\n"), Err(FtpError::Io(_))));
        assert!(matches!(parse(""), Err(FtpError::Io(_))));
    }

    #[test]
    fn overlong_line_is_refused_without_reading_it_all() {
        let long = format!("220 {}\r\n", "x".repeat(MAX_LINE * 4));
        assert!(matches!(parse(&long), Err(FtpError::Protocol(_))));
    }

    #[test]
    fn endless_multi_line_is_bounded() {
        let mut s = String::from("211-start\r\n");
        for _ in 0..MAX_LINES + 10 {
            s.push_str(" x\r\n");
        }
        s.push_str("211 End\r\n");
        assert!(matches!(parse(&s), Err(FtpError::Protocol(_))));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let r = read_reply(&mut Cursor::new(b"550 \xff\xfe no\r\n".to_vec())).unwrap();
        assert_eq!(r.code, 550);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let mut c = Cursor::new(data);
            for _ in 0..8 {
                if read_reply(&mut c).is_err() { break; }
            }
        }

        #[test]
        fn arbitrary_lines_never_panic(lines in proptest::collection::vec("[0-9 -]{0,6}[ -~]{0,20}", 0..10)) {
            let data = lines.join("\r\n");
            let _ = parse(&data);
        }
    }
}
