//! Ranged reads over one remote stream per handle, with a background read-ahead window.
//!
//! A `Reader` owns at most one `Prefetch`: a thread that reads the remote stream into a
//! bounded buffer ahead of the consumer. Reads at the buffer's position (or a small jump
//! forward, which is read and discarded) are served from it; any other seek ends the stream
//! and opens a new one at the new offset (REST + RETR). The window starts at
//! `INITIAL_WINDOW` and doubles each time a window's worth was consumed sequentially, up to
//! the configured maximum; a seek resets it. Memory per reader is bounded by
//! max(window, current request) + one chunk.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read};
use std::sync::Arc;

use log::{debug, warn};
use parking_lot::{Condvar, Mutex};

use super::error::{FsError, FsResult};
use crate::remote::{ReadStream, Remote, RemoteError};

/// Read-ahead window right after opening or seeking.
pub const INITIAL_WINDOW: usize = 128 * 1024;
/// A forward jump up to this far is read and discarded rather than reopening the stream.
pub const SKIP_MAX: u64 = 256 * 1024;
/// After this many bytes read since a reopen, a broken stream may be reopened again.
const RETRY_RESET: u64 = 1 << 20;
/// How much the background thread asks the stream for at once.
const CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct State {
    /// Bytes read ahead, starting at file offset `start`.
    buf: VecDeque<u8>,
    start: u64,
    /// The producer stops when `buf` holds max(window, wanted) bytes.
    window: usize,
    wanted: usize,
    consumed_since_grow: usize,
    eof: bool,
    error: Option<RemoteError>,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    cond: Condvar,
}

/// One remote stream plus its read-ahead thread.
struct Prefetch {
    shared: Arc<Shared>,
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        // The thread closes the stream when it sees `stop`; we do not wait for it, so a
        // stalled server never blocks the caller.
        self.shared.state.lock().stop = true;
        self.shared.cond.notify_all();
    }
}

/// Sequential-aware reader of one remote file for one open handle.
pub struct Reader {
    remote: Arc<dyn Remote>,
    path: String,
    max_window: usize,
    fetch: Option<Prefetch>,
}

impl Reader {
    /// A reader of `path`; nothing is opened until the first read.
    pub fn new(remote: Arc<dyn Remote>, path: String, max_window: usize) -> Self {
        Reader {
            remote,
            path,
            max_window,
            fetch: None,
        }
    }

    /// The path this reader downloads.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Returns `size` bytes at `offset`, fewer only at end of file.
    pub fn read(&mut self, offset: u64, size: usize) -> FsResult<Vec<u8>> {
        let reusable = self.fetch.as_ref().is_some_and(|p| {
            let st = p.shared.state.lock();
            st.error.is_none()
                && offset >= st.start
                && offset <= st.start + st.buf.len() as u64 + SKIP_MAX
        });
        if !reusable {
            self.fetch = None;
            self.start(offset)?;
        }
        let Some(fetch) = self.fetch.as_ref() else {
            return Err(FsError::io("read-ahead not running"));
        };
        let result = Self::take(&fetch.shared, offset, size, self.max_window);
        if result.is_err() {
            self.fetch = None;
        }
        result
    }

    fn start(&mut self, offset: u64) -> FsResult<()> {
        debug!("read {}: opening stream at {offset}", self.path);
        let stream = self.remote.open_read(&self.path, offset)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                start: offset,
                window: INITIAL_WINDOW.min(self.max_window),
                ..State::default()
            }),
            cond: Condvar::new(),
        });
        let producer = Producer {
            remote: self.remote.clone(),
            path: self.path.clone(),
            shared: shared.clone(),
            pos: offset,
        };
        std::thread::Builder::new()
            .name("ftpfs-readahead".into())
            .spawn(move || producer.run(stream))
            .map_err(|e| FsError::io(format!("cannot start read-ahead: {e}")))?;
        self.fetch = Some(Prefetch { shared });
        Ok(())
    }

    /// Consumes bytes up to `offset` and returns the next `size` (fewer only at EOF).
    fn take(shared: &Shared, offset: u64, size: usize, max_window: usize) -> FsResult<Vec<u8>> {
        let mut out = Vec::with_capacity(size);
        let mut st = shared.state.lock();
        loop {
            // Discard what lies before `offset` (a small forward jump).
            if st.start < offset {
                let skip = (offset - st.start).min(st.buf.len() as u64) as usize;
                st.buf.drain(..skip);
                st.start += skip as u64;
            }
            if st.start == offset + out.len() as u64 {
                let n = (size - out.len()).min(st.buf.len());
                out.extend(st.buf.drain(..n));
                st.start += n as u64;
                st.consumed_since_grow += n;
                if st.consumed_since_grow >= st.window {
                    st.consumed_since_grow = 0;
                    st.window = (st.window * 2).min(max_window).max(st.window);
                }
            }
            if out.len() == size || (st.buf.is_empty() && st.eof) {
                st.wanted = 0;
                shared.cond.notify_all();
                return Ok(out);
            }
            if st.buf.is_empty()
                && let Some(err) = st.error.clone()
            {
                return Err(FsError::from(err));
            }
            // Ask the producer for at least what this request still needs.
            st.wanted = (offset.saturating_sub(st.start) as usize) + (size - out.len());
            shared.cond.notify_all();
            shared.cond.wait(&mut st);
        }
    }
}

/// The background half: reads the stream into the shared buffer.
struct Producer {
    remote: Arc<dyn Remote>,
    path: String,
    shared: Arc<Shared>,
    /// File offset of the next byte the stream returns.
    pos: u64,
}

impl Producer {
    fn run(mut self, stream: Box<dyn ReadStream>) {
        let mut stream = Some(stream);
        let mut may_retry = true;
        let mut since_reopen = 0u64;
        let mut chunk = vec![0u8; CHUNK];
        loop {
            {
                let mut st = self.shared.state.lock();
                while !st.stop && st.buf.len() >= st.window.max(st.wanted) {
                    self.shared.cond.wait(&mut st);
                }
                if st.stop {
                    break;
                }
            }
            let Some(s) = stream.as_mut() else { break };
            match s.read(&mut chunk) {
                Ok(0) => {
                    self.shared.state.lock().eof = true;
                    self.shared.cond.notify_all();
                    break;
                }
                Ok(n) => {
                    self.pos += n as u64;
                    since_reopen += n as u64;
                    // Enough progress since the last reopen: a later drop is a new event.
                    if since_reopen >= RETRY_RESET {
                        may_retry = true;
                    }
                    self.shared.state.lock().buf.extend(&chunk[..n]);
                    self.shared.cond.notify_all();
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = RemoteError::from_io(e);
                    // The stream is broken; dropping it releases its connection.
                    stream = None;
                    if may_retry {
                        // A dropped connection mid-transfer is often transient: resume
                        // once at the same offset before failing the read.
                        warn!("read {} at {}: {err}; reopening once", self.path, self.pos);
                        may_retry = false;
                        since_reopen = 0;
                        match self.remote.open_read(&self.path, self.pos) {
                            Ok(s) => {
                                stream = Some(s);
                                continue;
                            }
                            Err(e2) => self.fail(e2),
                        }
                    } else {
                        self.fail(err);
                    }
                    break;
                }
            }
        }
        if let Some(s) = stream
            && let Err(e) = s.close()
        {
            debug!("closing read stream of {}: {e}", self.path);
        }
    }

    fn fail(&self, err: RemoteError) {
        warn!("read {} at {}: {err}", self.path, self.pos);
        self.shared.state.lock().error = Some(err);
        self.shared.cond.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::RemoteErrorKind;
    use crate::remote::faulty::FaultyRemote;
    use crate::remote::memory::MemoryRemote;

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn sequential_reads_share_one_stream() {
        let m = MemoryRemote::new();
        let d = data(3 * 1024 * 1024 + 17);
        m.put_file("/f", &d);
        let mut r = Reader::new(Arc::new(m.clone()), "/f".into(), 8 << 20);
        let mut off = 0;
        loop {
            let got = r.read(off, 100_000).unwrap();
            assert_eq!(got, &d[off as usize..(off as usize + got.len())]);
            if got.len() < 100_000 {
                break;
            }
            off += got.len() as u64;
        }
        assert_eq!(m.open_read_calls(), 1);
        // Small forward jump: same stream; backward: new one.
        let mut r = Reader::new(Arc::new(m.clone()), "/f".into(), 8 << 20);
        m.reset_counters();
        assert_eq!(r.read(0, 10).unwrap(), &d[..10]);
        assert_eq!(r.read(100_000, 10).unwrap(), &d[100_000..100_010]);
        assert_eq!(m.open_read_calls(), 1);
        assert_eq!(r.read(5, 10).unwrap(), &d[5..15]);
        assert_eq!(r.read(2_000_000, 10).unwrap(), &d[2_000_000..2_000_010]);
        assert_eq!(m.open_read_calls(), 3);
        assert!(r.read(10_000_000, 10).unwrap().is_empty());
    }

    #[test]
    fn tiny_window_still_serves_large_reads() {
        let m = MemoryRemote::new();
        let d = data(1_000_000);
        m.put_file("/f", &d);
        let mut r = Reader::new(Arc::new(m), "/f".into(), 0);
        assert_eq!(r.read(0, 600_000).unwrap(), &d[..600_000]);
        assert_eq!(r.read(600_000, 600_000).unwrap(), &d[600_000..]);
    }

    #[test]
    fn broken_stream_is_reopened_once_then_eio() {
        let m = MemoryRemote::new();
        let d = data(500_000);
        m.put_file("/f", &d);
        let f = Arc::new(FaultyRemote::new(m.clone()));
        f.break_reads_after(100_000, 1);
        let mut r = Reader::new(f.clone(), "/f".into(), 8 << 20);
        assert!(r.read(0, 500_000).unwrap() == d);
        assert_eq!(m.open_read_calls(), 2);

        f.break_reads_after(1000, 100);
        let mut r = Reader::new(f.clone(), "/f".into(), 8 << 20);
        let err = r.read(0, 500_000).unwrap_err();
        assert_eq!(err.errno, libc::EIO);

        f.clear();
        f.fail_always(
            crate::remote::memory::Op::OpenRead,
            RemoteErrorKind::NotFound,
        );
        let mut r = Reader::new(f, "/f".into(), 8 << 20);
        assert_eq!(r.read(0, 1).unwrap_err().errno, libc::ENOENT);
    }
}
