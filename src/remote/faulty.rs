//! A `Remote` wrapper that injects failures by rule, to test how the filesystem core copes
//! with a server that refuses, drops connections or runs out of space.

use std::io::{self, Read, Write};
use std::time::SystemTime;

use parking_lot::Mutex;

pub use super::memory::Op;
use super::{
    Entry, ReadStream, Remote, RemoteCapabilities, RemoteError, RemoteErrorKind, RemoteResult,
    WriteMode, WriteStream,
};

/// When a rule fires.
#[derive(Debug, Clone, Copy)]
enum When {
    /// The nth call of the operation counted from when the rule was added (1-based).
    Nth(usize),
    /// Every call.
    Always,
}

#[derive(Debug, Clone)]
struct CallRule {
    op: Op,
    when: When,
    kind: RemoteErrorKind,
    seen: usize,
}

#[derive(Debug, Default)]
struct Rules {
    calls: Vec<CallRule>,
    /// Read streams opened while this is Some((bytes, streams left)) fail after `bytes` bytes.
    break_reads: Option<(u64, usize)>,
    /// Upload streams fail in `write` after this many bytes (the server keeps the prefix).
    break_writes: Option<u64>,
    /// `finish` returns this error after the server stored the data (like 552 after a
    /// partial write).
    finish_error: Option<RemoteErrorKind>,
}

/// Wraps a `Remote` and makes chosen calls fail.
pub struct FaultyRemote<R> {
    inner: R,
    rules: Mutex<Rules>,
}

impl<R: Remote> FaultyRemote<R> {
    /// Wraps `inner` with no faults configured.
    pub fn new(inner: R) -> Self {
        FaultyRemote {
            inner,
            rules: Mutex::new(Rules::default()),
        }
    }

    /// The wrapped remote.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// Makes the `n`th call (1-based, counted from now) of `op` fail with `kind`.
    pub fn fail_nth(&self, op: Op, n: usize, kind: RemoteErrorKind) {
        self.rules.lock().calls.push(CallRule {
            op,
            when: When::Nth(n),
            kind,
            seen: 0,
        });
    }

    /// Makes every call of `op` fail with `kind`.
    pub fn fail_always(&self, op: Op, kind: RemoteErrorKind) {
        self.rules.lock().calls.push(CallRule {
            op,
            when: When::Always,
            kind,
            seen: 0,
        });
    }

    /// The next `streams` read streams break with an I/O error after `bytes` bytes.
    pub fn break_reads_after(&self, bytes: u64, streams: usize) {
        self.rules.lock().break_reads = Some((bytes, streams));
    }

    /// Upload streams opened from now on break after `bytes` bytes (the prefix is stored,
    /// as a real server keeps a partial file).
    pub fn break_writes_after(&self, bytes: Option<u64>) {
        self.rules.lock().break_writes = bytes;
    }

    /// `finish` of uploads returns `kind` (None: succeed again). The data is stored first,
    /// like a server that answers 552 after writing part of the file.
    pub fn finish_error(&self, kind: Option<RemoteErrorKind>) {
        self.rules.lock().finish_error = kind;
    }

    /// Removes every rule.
    pub fn clear(&self) {
        *self.rules.lock() = Rules::default();
    }

    fn check(&self, op: Op) -> RemoteResult<()> {
        let mut rules = self.rules.lock();
        for rule in rules.calls.iter_mut().filter(|r| r.op == op) {
            rule.seen += 1;
            let fire = match rule.when {
                When::Nth(n) => rule.seen == n,
                When::Always => true,
            };
            if fire {
                return Err(RemoteError::new(
                    rule.kind,
                    format!("injected fault on {op:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// A download that breaks after a byte budget.
struct BreakingReader {
    inner: Box<dyn ReadStream>,
    left: Option<u64>,
}

impl Read for BreakingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.left {
            Some(0) => {
                Err(RemoteError::new(RemoteErrorKind::Io, "injected: connection reset").into_io())
            }
            Some(left) => {
                let max = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = self.inner.read(&mut buf[..max])?;
                self.left = Some(left - n as u64);
                Ok(n)
            }
            None => self.inner.read(buf),
        }
    }
}

impl ReadStream for BreakingReader {
    fn close(self: Box<Self>) -> RemoteResult<()> {
        self.inner.close()
    }

    fn ends_without_waiting(&self) -> bool {
        self.inner.ends_without_waiting()
    }
}

/// An upload that breaks after a byte budget or fails at finish.
struct BreakingWriter {
    inner: Box<dyn WriteStream>,
    left: Option<u64>,
    broken: bool,
    finish_error: Option<RemoteErrorKind>,
}

impl Write for BreakingWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self.left {
            Some(left) if (data.len() as u64) > left => {
                let n = usize::try_from(left).unwrap_or(0);
                self.inner.write_all(&data[..n])?;
                self.left = Some(0);
                self.broken = true;
                Err(
                    RemoteError::new(RemoteErrorKind::Io, "injected: upload connection reset")
                        .into_io(),
                )
            }
            Some(left) => {
                self.inner.write_all(data)?;
                self.left = Some(left - data.len() as u64);
                Ok(data.len())
            }
            None => self.inner.write(data),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl WriteStream for BreakingWriter {
    fn finish(self: Box<Self>) -> RemoteResult<()> {
        // The server keeps whatever arrived, then reports the failure.
        self.inner.finish()?;
        // An injected verdict wins: it is the server's reason for a broken transfer.
        match (self.finish_error, self.broken) {
            (Some(kind), _) => Err(RemoteError::new(kind, "injected: finish failed")),
            (None, true) => Err(RemoteError::new(
                RemoteErrorKind::Io,
                "injected: upload broken",
            )),
            (None, false) => Ok(()),
        }
    }
}

impl<R: Remote> Remote for FaultyRemote<R> {
    fn list(&self, dir: &str) -> RemoteResult<Vec<Entry>> {
        self.check(Op::List)?;
        self.inner.list(dir)
    }

    fn stat(&self, path: &str) -> RemoteResult<Entry> {
        self.check(Op::Stat)?;
        self.inner.stat(path)
    }

    fn open_read(&self, path: &str, offset: u64) -> RemoteResult<Box<dyn ReadStream>> {
        self.check(Op::OpenRead)?;
        let inner = self.inner.open_read(path, offset)?;
        let mut rules = self.rules.lock();
        let left = match rules.break_reads {
            Some((bytes, n)) if n > 0 => {
                rules.break_reads = Some((bytes, n - 1));
                Some(bytes)
            }
            _ => None,
        };
        Ok(Box::new(BreakingReader { inner, left }))
    }

    fn open_write(&self, path: &str, mode: WriteMode) -> RemoteResult<Box<dyn WriteStream>> {
        self.check(Op::OpenWrite)?;
        let inner = self.inner.open_write(path, mode)?;
        let rules = self.rules.lock();
        Ok(Box::new(BreakingWriter {
            inner,
            left: rules.break_writes,
            broken: false,
            finish_error: rules.finish_error,
        }))
    }

    fn delete(&self, path: &str) -> RemoteResult<()> {
        self.check(Op::Delete)?;
        self.inner.delete(path)
    }

    fn mkdir(&self, path: &str) -> RemoteResult<()> {
        self.check(Op::Mkdir)?;
        self.inner.mkdir(path)
    }

    fn rmdir(&self, path: &str) -> RemoteResult<()> {
        self.check(Op::Rmdir)?;
        self.inner.rmdir(path)
    }

    fn rename(&self, from: &str, to: &str) -> RemoteResult<()> {
        self.check(Op::Rename)?;
        self.inner.rename(from, to)
    }

    fn set_mtime(&self, path: &str, mtime: SystemTime) -> RemoteResult<()> {
        self.check(Op::SetMtime)?;
        self.inner.set_mtime(path, mtime)
    }

    fn chmod(&self, path: &str, mode: u32) -> RemoteResult<()> {
        self.check(Op::Chmod)?;
        self.inner.chmod(path, mode)
    }

    fn capabilities(&self) -> RemoteCapabilities {
        self.inner.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::memory::MemoryRemote;

    #[test]
    fn nth_call_fails_once() {
        let r = FaultyRemote::new(MemoryRemote::new());
        r.fail_nth(Op::List, 2, RemoteErrorKind::Transient);
        assert!(r.list("/").is_ok());
        assert_eq!(r.list("/").unwrap_err().kind, RemoteErrorKind::Transient);
        assert!(r.list("/").is_ok());
    }

    #[test]
    fn read_stream_breaks_after_budget() {
        let m = MemoryRemote::new();
        m.put_file("/f", &[7u8; 100]);
        let r = FaultyRemote::new(m);
        r.break_reads_after(10, 1);
        let mut s = r.open_read("/f", 0).unwrap();
        let mut buf = Vec::new();
        let err = s.read_to_end(&mut buf).unwrap_err();
        assert_eq!(buf.len(), 10);
        assert_eq!(RemoteError::from_io(err).kind, RemoteErrorKind::Io);
        let mut s = r.open_read("/f", 0).unwrap();
        buf.clear();
        s.read_to_end(&mut buf).unwrap();
        assert_eq!(buf.len(), 100);
    }

    #[test]
    fn finish_error_keeps_partial_data() {
        let r = FaultyRemote::new(MemoryRemote::new());
        r.finish_error(Some(RemoteErrorKind::NoSpace));
        let mut w = r.open_write("/f", WriteMode::Truncate).unwrap();
        w.write_all(b"abc").unwrap();
        assert_eq!(w.finish().unwrap_err().kind, RemoteErrorKind::NoSpace);
        assert_eq!(r.inner().file("/f").unwrap(), b"abc");
    }
}
