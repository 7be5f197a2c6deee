//! The protocol layer's error type.

use std::fmt;
use std::io;

/// Why an FTP operation failed.
#[derive(Debug)]
pub enum FtpError {
    /// The connection broke or a wait timed out; the connection is unusable.
    Io(io::Error),
    /// The server answered with a negative reply to `command` (the verb only, never arguments
    /// that could hold a password).
    Reply {
        command: String,
        code: u16,
        text: String,
    },
    /// The server's replies made no sense (malformed, out of order); the connection is unusable.
    Protocol(String),
    /// TLS setup or certificate verification failed.
    Tls(String),
    /// A path or name with CR, LF or NUL was refused before anything was sent.
    InvalidName(String),
    /// The server lacks something we need (e.g. no AUTH TLS with tls=required).
    NotSupported(String),
}

impl FtpError {
    /// Whether the control connection must be thrown away after this error.
    pub fn breaks_connection(&self) -> bool {
        match self {
            FtpError::Io(_) | FtpError::Protocol(_) | FtpError::Tls(_) => true,
            FtpError::Reply { code, .. } => *code == 421,
            FtpError::InvalidName(_) | FtpError::NotSupported(_) => false,
        }
    }

    /// The reply code, when the server refused.
    pub fn code(&self) -> Option<u16> {
        match self {
            FtpError::Reply { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Whether the error means a timeout rather than a refusal or a broken link.
    pub fn is_timeout(&self) -> bool {
        matches!(self, FtpError::Io(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock))
    }
}

impl fmt::Display for FtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FtpError::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock) => {
                write!(f, "timed out waiting for the server")
            }
            FtpError::Io(e) => write!(f, "connection error: {e}"),
            FtpError::Reply {
                command,
                code,
                text,
            } => write!(f, "{command}: server replied {code} {text}"),
            FtpError::Protocol(m) => write!(f, "protocol error: {m}"),
            FtpError::Tls(m) => write!(f, "TLS error: {m}"),
            FtpError::InvalidName(m) => write!(f, "invalid name: {m}"),
            FtpError::NotSupported(m) => write!(f, "not supported by the server: {m}"),
        }
    }
}

impl std::error::Error for FtpError {}

impl From<io::Error> for FtpError {
    fn from(e: io::Error) -> Self {
        FtpError::Io(e)
    }
}

/// Result of a protocol operation.
pub type FtpResult<T> = Result<T, FtpError>;
