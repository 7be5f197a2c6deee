//! `Remote` over a pool of FTP control connections.

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use super::{
    Entry, EntryKind, ReadStream, Remote, RemoteCapabilities, RemoteError, RemoteErrorKind,
    RemoteResult, WriteMode, WriteStream,
};
use crate::ftp::control::{Control, Features, Transfer, check_name};
use crate::ftp::pool::{Pool, PooledControl, Preemptible, Purpose};
use crate::ftp::{FtpError, FtpResult};

/// A download must have been left unread this long before the pool may take its connection.
const PREEMPT_IDLE: Duration = Duration::from_millis(500);

/// The filesystem's storage: one FTP server, under a base directory.
pub struct FtpRemote {
    pool: Pool,
    /// Absolute server path that the mount's "/" stands for, without a trailing slash
    /// ("" for the server root).
    base: String,
    features: Features,
}

impl FtpRemote {
    /// Logs in once (so bad credentials fail here, before mounting), learns the server's
    /// features and resolves a relative `base` against the login directory.
    pub fn connect(pool: Pool, base: &str) -> RemoteResult<FtpRemote> {
        check_name(base).map_err(map_error)?;
        let mut conn = pool.get(Purpose::Meta).map_err(map_error)?;
        let features = conn.features().clone();
        let base = if base.starts_with('/') {
            base.to_string()
        } else {
            let home = working_directory(&mut conn).map_err(map_error)?;
            if base.is_empty() {
                home
            } else {
                format!("{}/{}", home.trim_end_matches('/'), base)
            }
        };
        drop(conn);
        Ok(FtpRemote {
            pool,
            base: base.trim_end_matches('/').to_string(),
            features,
        })
    }

    /// The pool this remote uses.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Maps a mount path ("/a/b") to the server's path, refusing CR/LF/NUL.
    fn server_path(&self, path: &str) -> RemoteResult<String> {
        check_name(path).map_err(map_error)?;
        let rel = path.trim_start_matches('/');
        if rel.is_empty() {
            return Ok(if self.base.is_empty() {
                "/".into()
            } else {
                self.base.clone()
            });
        }
        Ok(format!("{}/{}", self.base, rel))
    }

    /// Finds one name in its parent's listing.
    fn find_in_parent(&self, path: &str) -> RemoteResult<Option<Entry>> {
        let (parent, name) = split_parent(path);
        match self.list(parent) {
            Ok(entries) => Ok(entries.into_iter().find(|e| e.name == name)),
            Err(e) if e.kind == RemoteErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// 550 means anything from "no such file" to "permission denied": look before saying.
    fn classify_550(&self, path: &str, err: RemoteError) -> RemoteError {
        if err.kind != RemoteErrorKind::NotFound {
            return err;
        }
        match self.find_in_parent(path) {
            Ok(Some(_)) => RemoteError::new(RemoteErrorKind::PermissionDenied, err.message),
            _ => err,
        }
    }

    fn open_read_stream(&self, path: &str, offset: u64) -> RemoteResult<FtpReadStream> {
        let server_path = self.server_path(path)?;
        let active = start_retr(&self.pool, &server_path, offset)?;
        Ok(self.read_stream(server_path, offset, active))
    }

    /// A download under way as a stream the pool may preempt.
    fn read_stream(&self, server_path: String, offset: u64, active: ActiveRead) -> FtpReadStream {
        let stream = FtpReadStream {
            pool: self.pool.clone(),
            path: server_path,
            offset,
            slot: Arc::new(ReadSlot {
                active: Mutex::new(Some(active)),
            }),
            eof: false,
        };
        let holder: Arc<dyn Preemptible> = stream.slot.clone();
        self.pool.register_preemptible(Arc::downgrade(&holder));
        stream
    }
}

impl Remote for FtpRemote {
    fn list(&self, dir: &str) -> RemoteResult<Vec<Entry>> {
        let path = self.server_path(dir)?;
        self.pool
            .run(true, |c| c.list_dir(&path))
            .map_err(map_error)
    }

    fn stat(&self, path: &str) -> RemoteResult<Entry> {
        let server_path = self.server_path(path)?;
        if path.trim_matches('/').is_empty() {
            return Ok(Entry {
                name: "/".into(),
                kind: EntryKind::Dir,
                size: 0,
                mtime: None,
                mode: None,
            });
        }
        if self.features.mlst {
            let found = self.pool.run(true, |c| c.mlst(&server_path));
            match found {
                Ok(Some(mut entry)) => {
                    entry.name = split_parent(path).1.to_string();
                    return Ok(entry);
                }
                Ok(None) => {}
                Err(e) => return Err(map_error(e)),
            }
        }
        self.find_in_parent(path)?.ok_or_else(|| {
            RemoteError::new(RemoteErrorKind::NotFound, format!("{path}: no such file"))
        })
    }

    fn open_read(&self, path: &str, offset: u64) -> RemoteResult<Box<dyn ReadStream>> {
        match self.open_read_stream(path, offset) {
            Ok(s) => Ok(Box::new(s)),
            Err(e) => Err(e),
        }
    }

    fn open_read_if_idle(
        &self,
        path: &str,
        offset: u64,
    ) -> RemoteResult<Option<Box<dyn ReadStream>>> {
        let server_path = self.server_path(path)?;
        let Some(mut conn) = self.pool.try_get_spare() else {
            return Ok(None);
        };
        let transfer = conn.retr(&server_path, offset).map_err(map_error)?;
        let active = ActiveRead {
            conn,
            transfer,
            touched: Instant::now(),
        };
        Ok(Some(Box::new(self.read_stream(
            server_path,
            offset,
            active,
        ))))
    }

    fn open_write(&self, path: &str, mode: WriteMode) -> RemoteResult<Box<dyn WriteStream>> {
        let server_path = self.server_path(path)?;
        let append = mode == WriteMode::Append;
        let (conn, transfer) =
            start_transfer(&self.pool, "upload", path, |c| c.stor(&server_path, append))
                .map_err(|e| self.classify_550(path, map_error(e)))?;
        Ok(Box::new(FtpWriteStream {
            conn: Some(conn),
            transfer: Some(transfer),
        }))
    }

    fn delete(&self, path: &str) -> RemoteResult<()> {
        let server_path = self.server_path(path)?;
        self.pool
            .run(false, |c| c.delete(&server_path))
            .map_err(|e| self.classify_550(path, map_error(e)))
    }

    fn mkdir(&self, path: &str) -> RemoteResult<()> {
        let server_path = self.server_path(path)?;
        match self.pool.run(false, |c| c.mkdir(&server_path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = map_error(e);
                if matches!(
                    err.kind,
                    RemoteErrorKind::NotFound | RemoteErrorKind::PermissionDenied
                ) && matches!(self.find_in_parent(path), Ok(Some(_)))
                {
                    return Err(RemoteError::new(
                        RemoteErrorKind::AlreadyExists,
                        err.message,
                    ));
                }
                Err(err)
            }
        }
    }

    fn rmdir(&self, path: &str) -> RemoteResult<()> {
        let server_path = self.server_path(path)?;
        match self.pool.run(false, |c| c.rmdir(&server_path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let err = map_error(e);
                if (err.kind == RemoteErrorKind::NotFound
                    || err.kind == RemoteErrorKind::PermissionDenied)
                    && let Ok(children) = self.list(path)
                    && !children.is_empty()
                {
                    return Err(RemoteError::new(RemoteErrorKind::NotEmpty, err.message));
                }
                Err(self.classify_550(path, err))
            }
        }
    }

    fn rename(&self, from: &str, to: &str) -> RemoteResult<()> {
        let server_from = self.server_path(from)?;
        let server_to = self.server_path(to)?;
        // A rename is not safe to repeat once RNTO went out (it may have happened), but a
        // connection lost before that (during RNFR, which changes nothing) is retried once.
        let target_sent = Cell::new(false);
        let op = |c: &mut Control| {
            target_sent.set(false);
            c.expect(&format!("RNFR {server_from}"), |code| code == 350)?;
            target_sent.set(true);
            c.expect(&format!("RNTO {server_to}"), |code| {
                code == 250 || code == 200
            })
            .map(|_| ())
        };
        let mut result = self.pool.run(false, op);
        if matches!(&result, Err(e) if e.breaks_connection()) && !target_sent.get() {
            log::warn!("rename of {from}: connection lost before RNTO; retrying");
            self.pool.drop_idle();
            result = self.pool.run(false, op);
        }
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let refused_target =
                    matches!(&e, FtpError::Reply { command, .. } if command == "RNTO");
                let err = map_error(e);
                if refused_target && matches!(self.find_in_parent(to), Ok(Some(_))) {
                    return Err(RemoteError::new(
                        RemoteErrorKind::AlreadyExists,
                        err.message,
                    ));
                }
                if refused_target {
                    return Err(err);
                }
                Err(self.classify_550(from, err))
            }
        }
    }

    fn set_mtime(&self, path: &str, mtime: SystemTime) -> RemoteResult<()> {
        let server_path = self.server_path(path)?;
        let result = self.pool.run(true, |c| c.set_mtime(&server_path, mtime));
        let err = match result {
            Ok(()) => return Ok(()),
            Err(e) => map_error(e),
        };
        if err.kind != RemoteErrorKind::NotFound {
            return Err(err);
        }
        // vsftpd's `MDTM time path` works on files only and answers 550 for directories.
        match self.find_in_parent(path) {
            Ok(Some(entry)) if entry.kind == EntryKind::Dir => Err(RemoteError::new(
                RemoteErrorKind::NotSupported,
                format!(
                    "the server cannot set times on directories: {}",
                    err.message
                ),
            )),
            Ok(Some(_)) => Err(RemoteError::new(
                RemoteErrorKind::PermissionDenied,
                err.message,
            )),
            _ => Err(err),
        }
    }

    fn chmod(&self, path: &str, mode: u32) -> RemoteResult<()> {
        let server_path = self.server_path(path)?;
        self.pool
            .run(true, |c| c.chmod(&server_path, mode))
            .map_err(map_error)
    }

    fn capabilities(&self) -> RemoteCapabilities {
        RemoteCapabilities {
            set_mtime: self.features.mfmt || self.features.mdtm,
            chmod: true,
            append: true,
        }
    }
}

/// Asks the server for the login directory (PWD: `257 "/home/x" is current directory`).
fn working_directory(conn: &mut Control) -> FtpResult<String> {
    let reply = conn.expect("PWD", |c| c == 257)?;
    let text = reply.text();
    let start = text.find('"');
    let end = text.rfind('"');
    match (start, end) {
        (Some(s), Some(e)) if e > s => Ok(text[s + 1..e].replace("\"\"", "\"")),
        _ => Ok("/".into()),
    }
}

/// Opens REST+RETR on a transfer connection, retrying once if the connection was dead.
fn start_retr(pool: &Pool, path: &str, offset: u64) -> RemoteResult<ActiveRead> {
    let (conn, transfer) =
        start_transfer(pool, "download", path, |c| c.retr(path, offset)).map_err(map_error)?;
    Ok(ActiveRead {
        conn,
        transfer,
        touched: Instant::now(),
    })
}

/// Starts a transfer on a transfer connection. Nothing has moved before the server's 1xx, so
/// a connection found broken (not a timeout) or a data connection that could not be set up
/// (425) is retried once on another connection.
fn start_transfer(
    pool: &Pool,
    what: &str,
    path: &str,
    mut start: impl FnMut(&mut Control) -> FtpResult<Transfer>,
) -> FtpResult<(PooledControl, Transfer)> {
    let mut last = None;
    for _ in 0..2 {
        let mut conn = pool.get(Purpose::Transfer)?;
        match start(&mut conn) {
            Ok(transfer) => return Ok((conn, transfer)),
            Err(e) if (conn.is_broken() && !e.is_timeout()) || is_data_setup_failure(&e) => {
                log::warn!("{what} of {path} could not start ({e}); retrying");
                pool.drop_idle();
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| FtpError::Protocol(format!("{what} could not start"))))
}

/// A download in progress and the connection it occupies.
struct ActiveRead {
    conn: PooledControl,
    transfer: Transfer,
    /// When the download last started or delivered data.
    touched: Instant,
}

/// The part of a download the pool may take back while nobody is reading.
struct ReadSlot {
    active: Mutex<Option<ActiveRead>>,
}

impl Preemptible for ReadSlot {
    fn preempt(&self) -> Option<PooledControl> {
        let mut guard = self.active.try_lock()?;
        // A download that just started or just delivered data is about to be read again:
        // taking its connection would only make it start over (and take another one).
        if guard.as_ref()?.touched.elapsed() < PREEMPT_IDLE {
            return None;
        }
        let ActiveRead {
            mut conn, transfer, ..
        } = guard.take()?;
        drop(guard);
        log::debug!("preempting an idle download to free its connection");
        match conn.finish_download(transfer, false) {
            Ok(()) if !conn.is_broken() => Some(conn),
            _ => None,
        }
    }
}

/// A download that survives preemption: it restarts at its offset when read again.
struct FtpReadStream {
    pool: Pool,
    path: String,
    offset: u64,
    slot: Arc<ReadSlot>,
    eof: bool,
}

impl Read for FtpReadStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.eof || buf.is_empty() {
            return Ok(0);
        }
        let mut guard = self.slot.active.lock();
        if guard.is_none() {
            *guard = Some(
                start_retr(&self.pool, &self.path, self.offset).map_err(RemoteError::into_io)?,
            );
        }
        let Some(active) = guard.as_mut() else {
            return Err(io::Error::other("download vanished"));
        };
        match active.transfer.read(buf) {
            Ok(0) => {
                let ActiveRead {
                    mut conn, transfer, ..
                } = guard.take().expect("checked above");
                // End of data only counts as end of file once the server confirms with 226:
                // a data connection cut short by a crash must not look like a short file.
                conn.finish_download(transfer, true)
                    .map_err(|e| map_error(e).into_io())?;
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.offset += n as u64;
                active.touched = Instant::now();
                Ok(n)
            }
            Err(e) => {
                let timed_out = matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                );
                if let Some(ActiveRead {
                    mut conn, transfer, ..
                }) = guard.take()
                {
                    if timed_out {
                        // The server is not answering: asking it how the transfer ended
                        // would only wait another full timeout.
                        transfer.stream.abandon();
                        conn.discard_stalled();
                    } else {
                        let _ = conn.finish_download(transfer, false);
                    }
                }
                let kind = if timed_out {
                    RemoteErrorKind::TimedOut
                } else {
                    RemoteErrorKind::Io
                };
                Err(
                    RemoteError::new(kind, format!("download of {} failed: {e}", self.path))
                        .into_io(),
                )
            }
        }
    }
}

impl ReadStream for FtpReadStream {
    fn ends_without_waiting(&self) -> bool {
        match &*self.slot.active.lock() {
            Some(active) => active.transfer.ends_without_waiting(&active.conn),
            None => self.eof,
        }
    }

    fn close(self: Box<Self>) -> RemoteResult<()> {
        let taken = self.slot.active.lock().take();
        if let Some(ActiveRead {
            mut conn, transfer, ..
        }) = taken
        {
            conn.finish_download(transfer, false).map_err(map_error)?;
        }
        Ok(())
    }
}

impl Drop for FtpReadStream {
    fn drop(&mut self) {
        if let Some(ActiveRead {
            mut conn, transfer, ..
        }) = self.slot.active.lock().take()
        {
            let _ = conn.finish_download(transfer, false);
        }
    }
}

/// An upload holding its connection until the server's verdict.
struct FtpWriteStream {
    conn: Option<PooledControl>,
    transfer: Option<Transfer>,
}

impl FtpWriteStream {
    /// After a failed write, the control connection tells why (e.g. 552 disk full).
    fn failure_reason(&mut self, e: io::Error) -> RemoteError {
        if let (Some(mut conn), Some(transfer)) = (self.conn.take(), self.transfer.take())
            && let Err(reason) = conn.finish_upload(transfer)
        {
            return map_error(reason);
        }
        RemoteError::new(RemoteErrorKind::Io, format!("upload failed: {e}"))
    }
}

impl Write for FtpWriteStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(transfer) = self.transfer.as_mut() else {
            return Err(RemoteError::new(RemoteErrorKind::Io, "upload already ended").into_io());
        };
        match transfer.write(buf) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.failure_reason(e).into_io()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(transfer) = self.transfer.as_mut() else {
            return Ok(());
        };
        match transfer.flush() {
            Ok(()) => Ok(()),
            Err(e) => Err(self.failure_reason(e).into_io()),
        }
    }
}

impl WriteStream for FtpWriteStream {
    fn finish(mut self: Box<Self>) -> RemoteResult<()> {
        match (self.conn.take(), self.transfer.take()) {
            (Some(mut conn), Some(transfer)) => conn.finish_upload(transfer).map_err(map_error),
            _ => Err(RemoteError::new(
                RemoteErrorKind::Io,
                "upload already failed",
            )),
        }
    }
}

impl Drop for FtpWriteStream {
    fn drop(&mut self) {
        if let (Some(mut conn), Some(transfer)) = (self.conn.take(), self.transfer.take()) {
            log::debug!("upload abandoned before completion");
            let _ = conn.finish_download(transfer, false);
        }
    }
}

/// A transfer that failed before any data moved because the data connection could not be
/// set up (425: e.g. the server's passive port was taken): safe to try again at once.
fn is_data_setup_failure(e: &FtpError) -> bool {
    matches!(e, FtpError::Reply { code: 425, .. })
}

/// Splits "/a/b/c" into ("/a/b", "c"); the root's parent is itself.
fn split_parent(path: &str) -> (&str, &str) {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rfind('/') {
        Some(0) => ("/", &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => ("/", trimmed),
    }
}

/// The one place FTP failures become remote error classes (DESIGN §4).
pub fn map_error(e: FtpError) -> RemoteError {
    let message = e.to_string();
    let kind = match &e {
        FtpError::InvalidName(_) => RemoteErrorKind::InvalidName,
        FtpError::NotSupported(_) => RemoteErrorKind::NotSupported,
        _ if e.is_timeout() => RemoteErrorKind::TimedOut,
        FtpError::Io(_) | FtpError::Protocol(_) | FtpError::Tls(_) => RemoteErrorKind::Io,
        FtpError::Reply { code, text, .. } => match code {
            550 => RemoteErrorKind::NotFound,
            452 | 552 => RemoteErrorKind::NoSpace,
            450 | 451 if says_no_space(text) => RemoteErrorKind::NoSpace,
            530 | 532 | 553 => RemoteErrorKind::PermissionDenied,
            450 | 451 => RemoteErrorKind::Transient,
            500 | 502 | 504 => RemoteErrorKind::NotSupported,
            501 => RemoteErrorKind::InvalidName,
            _ => RemoteErrorKind::Io,
        },
    };
    RemoteError::new(kind, message)
}

/// Whether a reply's text reports a full disk or an exceeded quota: some servers send that as a
/// transient 450/451 instead of 452/552. (vsftpd's "Failure writing to local file" and
/// pure-ftpd's "Error during write to file" on a full disk say nothing we could tell apart
/// from other write errors: those stay EIO.)
fn says_no_space(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    [
        "no space",
        "disk full",
        "quota",
        "not enough space",
        "insufficient storage",
    ]
    .iter()
    .any(|w| text.contains(w))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(split_parent("/a"), ("/", "a"));
        assert_eq!(split_parent("/a/b c"), ("/a", "b c"));
        assert_eq!(split_parent("/a/b/"), ("/a", "b"));
    }

    #[test]
    fn error_classes() {
        let reply = |code| FtpError::Reply {
            command: "STOR".into(),
            code,
            text: "x".into(),
        };
        assert_eq!(map_error(reply(552)).kind, RemoteErrorKind::NoSpace);
        assert_eq!(map_error(reply(452)).kind, RemoteErrorKind::NoSpace);
        assert_eq!(map_error(reply(550)).kind, RemoteErrorKind::NotFound);
        assert_eq!(
            map_error(reply(530)).kind,
            RemoteErrorKind::PermissionDenied
        );
        assert_eq!(map_error(reply(502)).kind, RemoteErrorKind::NotSupported);
        let reply_text = |code, text: &str| FtpError::Reply {
            command: "STOR quota.txt".into(),
            code,
            text: text.into(),
        };
        for text in [
            "No space left on device",
            "Disk full - please upload later",
            "Quota exceeded",
        ] {
            assert_eq!(
                map_error(reply_text(451, text)).kind,
                RemoteErrorKind::NoSpace
            );
        }
        // the file name (in the command) does not count, only the server's words
        assert_eq!(
            map_error(reply_text(451, "Failure writing to local file.")).kind,
            RemoteErrorKind::Transient
        );
        assert_eq!(
            map_error(FtpError::InvalidName("x".into())).kind,
            RemoteErrorKind::InvalidName
        );
    }
}
