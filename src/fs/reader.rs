//! Ranged reads over one remote stream per handle, with a background read-ahead window.
//!
//! A `Reader` owns at most one `Prefetch`: a thread that reads the remote stream into a
//! bounded buffer ahead of the consumer. Reads within the buffer (including slightly behind
//! the furthest read: the kernel issues parallel reads that arrive out of order, so
//! `HISTORY` bytes are kept) or a small jump forward (read and discarded) are served from
//! it; any other seek ends the stream and opens a new one at the new offset (REST + RETR).
//! The window starts at `INITIAL_WINDOW` and doubles each time a window's worth was consumed
//! sequentially, up to the configured maximum; a seek resets it. Memory per reader is
//! bounded by max(window, current request) + HISTORY + one chunk.
//!
//! A stream nobody reads for `IDLE_CLOSE` is closed (it holds one of the few server
//! connections); the next read reopens it where needed.

use std::collections::VecDeque;
use std::io::{self, ErrorKind, Read};
use std::sync::Arc;
use std::time::{Duration, Instant};

use log::{debug, warn};
use parking_lot::{Condvar, Mutex};

use super::bytes::{BufferPool, Chunk, ReadData};
use super::error::{FsError, FsResult};
use crate::remote::{ReadStream, Remote, RemoteError, RemoteErrorKind};

/// Read-ahead window right after opening or seeking.
pub const INITIAL_WINDOW: usize = 128 * 1024;
/// A forward jump up to this far is read and discarded rather than reopening the stream.
pub const SKIP_MAX: u64 = 256 * 1024;
/// Bytes kept behind the furthest read, for reads that arrive slightly out of order.
pub const HISTORY: u64 = 1 << 20;
/// How long reads keep failing at once after the server timed out.
const STALL_MEMORY: Duration = Duration::from_secs(2);
/// A stream with a full window and no reader for this long is closed.
pub const IDLE_CLOSE: Duration = Duration::from_secs(10);
/// After this many bytes read since a reopen, a broken stream may be reopened again.
const RETRY_RESET: u64 = 1 << 20;
/// Size of the buffers the background thread reads into. Chunks end at file offsets that are
/// multiples of CHUNK, so that the kernel's aligned reads (128 KiB, or 1 MiB with a raised
/// read_ahead_kb) each fall inside one chunk and are answered from it without a copy.
const CHUNK: usize = 1 << 20;

#[derive(Default)]
struct State {
    /// Downloaded bytes, starting at file offset `start` (history, then read-ahead).
    buf: ChunkBuf,
    start: u64,
    /// The furthest offset the consumer has read up to.
    pos: u64,
    /// The producer pauses when it is max(window, wanted) bytes ahead of `pos`.
    window: usize,
    wanted: usize,
    consumed_since_grow: usize,
    eof: bool,
    error: Option<RemoteError>,
    /// The producer closed the stream for idleness; it must be reopened to go further.
    idle_closed: bool,
    stop: bool,
}

impl State {
    fn end(&self) -> u64 {
        self.start + self.buf.len() as u64
    }

    fn ahead(&self) -> usize {
        usize::try_from(self.end().saturating_sub(self.pos)).unwrap_or(usize::MAX)
    }

    fn producer_may_pause(&self) -> bool {
        self.ahead() >= self.window.max(self.wanted)
    }
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

impl Shared {
    /// The state of a download from `offset` whose first bytes, `head`, are already here.
    fn starting_with(offset: u64, head: Vec<u8>, window: usize, eof: bool) -> Arc<Shared> {
        let mut state = State {
            start: offset,
            pos: offset,
            window,
            eof,
            ..State::default()
        };
        state.buf.push(head);
        Arc::new(Shared {
            state: Mutex::new(state),
            cond: Condvar::new(),
        })
    }
}

impl Prefetch {
    /// A download already finished: `data` is the file from `offset` to its end.
    fn complete(offset: u64, data: Vec<u8>) -> Prefetch {
        Prefetch {
            shared: Shared::starting_with(offset, data, 0, true),
        }
    }
}

/// Why `take` could not serve a read.
enum TakeError {
    /// The stream was closed for idleness: reopen and try again.
    Reopen,
    /// The stream failed (after its one retry).
    Failed(RemoteError),
}

/// Sequential-aware reader of one remote file for one open handle.
pub struct Reader {
    remote: Arc<dyn Remote>,
    path: String,
    max_window: usize,
    idle_close: Duration,
    fetch: Option<Prefetch>,
    /// The file's size as last listed, if known: small files are fetched whole at once.
    size_hint: Option<u64>,
    /// After a timeout, further reads fail at once for a moment instead of each waiting for
    /// the stalled server again (the kernel retries a failed read-ahead page by itself).
    stalled: Option<(Instant, FsError)>,
}

impl Reader {
    /// A reader of `path`; nothing is opened until the first read.
    pub fn new(remote: Arc<dyn Remote>, path: String, max_window: usize) -> Self {
        Reader {
            remote,
            path,
            max_window,
            idle_close: IDLE_CLOSE,
            fetch: None,
            size_hint: None,
            stalled: None,
        }
    }

    /// Tells the reader the file's size as listed (a hint: the server's file may differ).
    pub fn set_size_hint(&mut self, size: Option<u64>) {
        self.size_hint = size;
    }

    /// Gives the reader the file's whole content, downloaded already (fetched ahead).
    pub fn preload(&mut self, content: Vec<u8>) {
        self.fetch = Some(Prefetch::complete(0, content));
    }

    /// Changes how long an unread stream stays open (tests use a short one).
    pub fn set_idle_close(&mut self, idle: Duration) {
        self.idle_close = idle;
    }

    /// The path this reader downloads.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Serves a read only if the read-ahead already holds all of it (or the end of file),
    /// without waiting and without touching the network; None otherwise. Lets the FUSE
    /// thread answer steady sequential reads itself, without a hand-off to a worker.
    pub fn try_read(&mut self, offset: u64, size: usize) -> Option<ReadData> {
        let fetch = self.fetch.as_ref()?;
        let want_end = offset.saturating_add(size as u64);
        {
            let st = fetch.shared.state.try_lock()?;
            let ready = st.error.is_none()
                && offset >= st.start
                && offset <= st.end()
                && (st.end() >= want_end || st.eof);
            if !ready {
                return None;
            }
        }
        Self::take(&fetch.shared, offset, size, self.max_window).ok()
    }

    /// Returns `size` bytes at `offset`, fewer only at end of file.
    pub fn read(&mut self, offset: u64, size: usize) -> FsResult<ReadData> {
        if let Some((until, err)) = &self.stalled {
            if Instant::now() < *until {
                return Err(err.clone());
            }
            self.stalled = None;
        }
        let reusable = self.fetch.as_ref().is_some_and(|p| {
            let st = p.shared.state.lock();
            st.error.is_none() && offset >= st.start && offset <= st.end() + SKIP_MAX
        });
        if !reusable {
            self.fetch = None;
            self.start(offset, size)?;
        }
        for _ in 0..2 {
            let Some(fetch) = self.fetch.as_ref() else {
                break;
            };
            match Self::take(&fetch.shared, offset, size, self.max_window) {
                Ok(data) => return Ok(data),
                Err(TakeError::Failed(e)) => {
                    self.fetch = None;
                    return Err(self.note_failure(e));
                }
                Err(TakeError::Reopen) => {
                    self.fetch = None;
                    self.start(offset, size)?;
                }
            }
        }
        Err(FsError::io("read-ahead not running"))
    }

    /// Converts a stream failure, remembering a timeout so the reads queued behind this one
    /// fail at once.
    fn note_failure(&mut self, e: RemoteError) -> FsError {
        let timed_out = e.kind == RemoteErrorKind::TimedOut;
        let err = FsError::from(e);
        if timed_out {
            self.stalled = Some((Instant::now() + STALL_MEMORY, err.clone()));
        }
        err
    }

    /// Opens a stream at `offset` for a read of `want` bytes.
    fn start(&mut self, offset: u64, want: usize) -> FsResult<()> {
        debug!("read {}: opening stream at {offset}", self.path);
        let mut stream = match self.remote.open_read(&self.path, offset) {
            Ok(stream) => stream,
            Err(e) => return Err(self.note_failure(e)),
        };
        let mut head = Vec::new();
        let left = self.size_hint.map(|size| size.saturating_sub(offset));
        if let Some(left) = left.filter(|&left| left <= CHUNK as u64) {
            // What is left is at most one chunk: download it here, without starting a
            // read-ahead thread and handing the bytes over, if the end (the server's 226)
            // follows the data without a wait. Where it does not (proftpd waits for our
            // side of the data connection to close first: a round trip), the read is
            // answered as soon as its bytes are here and the rest goes on in the background.
            let need = (want as u64).min(left).max(1);
            match fetch_small(&mut stream, &mut head, need) {
                Ok(true) => {
                    if let Err(e) = stream.close() {
                        debug!("closing read stream of {}: {e}", self.path);
                    }
                    self.fetch = Some(Prefetch::complete(offset, head));
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    let err = RemoteError::from_io(e);
                    if err.kind == RemoteErrorKind::TimedOut {
                        return Err(self.note_failure(err));
                    }
                    // Broken mid-way: the read-ahead path resumes once, as for big files.
                    warn!("read {} at {offset}: {err}; reopening once", self.path);
                    drop(stream);
                    self.size_hint = None;
                    return self.start(offset, want);
                }
            }
        }
        let pos = offset + head.len() as u64;
        let window = INITIAL_WINDOW.min(self.max_window);
        let shared = Shared::starting_with(offset, head, window, false);
        let producer = Producer {
            remote: self.remote.clone(),
            path: self.path.clone(),
            shared: shared.clone(),
            pos,
            idle_close: self.idle_close,
        };
        std::thread::Builder::new()
            .name("ftpfs-readahead".into())
            .spawn(move || producer.run(stream))
            .map_err(|e| FsError::io(format!("cannot start read-ahead: {e}")))?;
        self.fetch = Some(Prefetch { shared });
        Ok(())
    }

    /// Waits until [offset, offset + size) is buffered (or EOF) and returns it.
    fn take(
        shared: &Shared,
        offset: u64,
        size: usize,
        max_window: usize,
    ) -> Result<ReadData, TakeError> {
        let want_end = offset.saturating_add(size as u64);
        let mut st = shared.state.lock();
        loop {
            if st.end() >= want_end || st.eof {
                let from = offset.saturating_sub(st.start);
                let to = want_end.min(st.end()).saturating_sub(st.start);
                let out = st.buf.range(from as usize, to as usize);
                let new_pos = offset + out.len() as u64;
                if new_pos > st.pos {
                    st.consumed_since_grow += (new_pos - st.pos) as usize;
                    st.pos = new_pos;
                    if st.consumed_since_grow >= st.window {
                        st.consumed_since_grow = 0;
                        st.window = (st.window * 2).min(max_window).max(st.window);
                    }
                }
                // Keep only HISTORY bytes behind the furthest read.
                let behind = st.pos.saturating_sub(st.start);
                if behind > HISTORY {
                    let drop = (behind - HISTORY).min(st.buf.len() as u64) as usize;
                    st.buf.drop_front(drop);
                    st.start += drop as u64;
                }
                st.wanted = 0;
                shared.cond.notify_all();
                return Ok(out);
            }
            if let Some(err) = st.error.clone() {
                return Err(TakeError::Failed(err));
            }
            if st.idle_closed {
                return Err(TakeError::Reopen);
            }
            // Ask the producer for at least what this request still needs.
            st.wanted = usize::try_from(want_end.saturating_sub(st.pos)).unwrap_or(usize::MAX);
            shared.cond.notify_all();
            shared.cond.wait(&mut st);
        }
    }
}

/// Reads a small download into `head`: at least `want` bytes (or all there is), then on to
/// the end only where that needs no waiting. True when the end was reached, within one
/// chunk; false when the rest is left to a read-ahead thread.
fn fetch_small(
    stream: &mut Box<dyn ReadStream>,
    head: &mut Vec<u8>,
    want: u64,
) -> io::Result<bool> {
    let mut piece = [0u8; 64 * 1024];
    loop {
        if head.len() as u64 >= want && !stream.ends_without_waiting() {
            return Ok(false);
        }
        if head.len() > CHUNK {
            return Ok(false);
        }
        match stream.read(&mut piece) {
            Ok(0) => return Ok(true),
            Ok(n) => head.extend_from_slice(&piece[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Downloaded bytes as a queue of chunks, so that the producer hands over what it read
/// without copying it again, and a read inside one chunk shares it; chunks nobody shares
/// any more are recycled for the next reads.
struct ChunkBuf {
    chunks: VecDeque<Arc<Chunk>>,
    /// Bytes of the first chunk already dropped.
    head: usize,
    len: usize,
    pool: Arc<BufferPool>,
}

/// Spare chunks a stream keeps for reuse.
const SPARE_CHUNKS: usize = 4;

impl Default for ChunkBuf {
    fn default() -> Self {
        ChunkBuf {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
            pool: BufferPool::new(CHUNK, SPARE_CHUNKS),
        }
    }
}

impl ChunkBuf {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, chunk: Vec<u8>) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(self.pool.chunk(chunk));
        }
    }

    /// Forgets the first `n` bytes.
    fn drop_front(&mut self, n: usize) {
        let mut n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.len() - self.head;
            if n < left {
                self.head += n;
                break;
            }
            n -= left;
            self.head = 0;
            self.chunks.pop_front();
        }
    }

    /// Bytes [from, to) of the buffer: shared when they lie in one chunk, else copied.
    fn range(&self, from: usize, to: usize) -> ReadData {
        let to = to.min(self.len);
        if from >= to {
            return ReadData::empty();
        }
        let mut skip = from + self.head;
        for chunk in &self.chunks {
            if skip < chunk.len() {
                if skip + (to - from) <= chunk.len() {
                    return ReadData::shared(chunk.clone(), skip, skip + (to - from));
                }
                break;
            }
            skip -= chunk.len();
        }
        let mut out = Vec::with_capacity(to - from);
        self.copy_range(from, to, &mut out);
        out.into()
    }

    /// Appends bytes [from, to) of the buffer to `out`.
    fn copy_range(&self, from: usize, to: usize, out: &mut Vec<u8>) {
        let mut skip = from + self.head;
        let mut remaining = to.saturating_sub(from);
        for chunk in &self.chunks {
            if remaining == 0 {
                break;
            }
            if skip >= chunk.len() {
                skip -= chunk.len();
                continue;
            }
            let take = (chunk.len() - skip).min(remaining);
            out.extend_from_slice(&chunk[skip..skip + take]);
            remaining -= take;
            skip = 0;
        }
    }

    /// A full-size buffer to read into next (a recycled one when there is one).
    fn spare_chunk(&self) -> Vec<u8> {
        self.pool.get()
    }
}

/// The background half: reads the stream into the shared buffer.
struct Producer {
    remote: Arc<dyn Remote>,
    path: String,
    shared: Arc<Shared>,
    /// File offset of the next byte the stream returns.
    pos: u64,
    idle_close: Duration,
}

impl Producer {
    fn run(mut self, stream: Box<dyn ReadStream>) {
        let mut stream = Some(stream);
        let mut may_retry = true;
        let mut since_reopen = 0u64;
        let mut chunk = self.shared.state.lock().buf.spare_chunk();
        // Bytes of `chunk` read but not handed over yet; they start at `self.pos - filled`.
        let mut filled = 0usize;
        loop {
            {
                let mut st = self.shared.state.lock();
                while !st.stop && st.producer_may_pause() {
                    let idle = self
                        .shared
                        .cond
                        .wait_for(&mut st, self.idle_close)
                        .timed_out();
                    if idle && !st.stop && st.producer_may_pause() {
                        debug!("read {}: idle, closing stream at {}", self.path, self.pos);
                        st.idle_closed = true;
                        st.stop = true;
                    }
                }
                if st.stop {
                    break;
                }
            }
            let Some(s) = stream.as_mut() else { break };
            let room = CHUNK - (self.pos % CHUNK as u64) as usize;
            match s.read(&mut chunk[filled..filled + room]) {
                Ok(0) => {
                    let mut st = self.shared.state.lock();
                    Self::hand_over(&mut st, &mut chunk, &mut filled);
                    st.eof = true;
                    drop(st);
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
                    filled += n;
                    let mut st = self.shared.state.lock();
                    // Whole chunks are what reads share without copying; a part is handed
                    // over early only when the reader may need it soon.
                    let chunk_done = self.pos.is_multiple_of(CHUNK as u64);
                    if chunk_done || st.wanted > 0 || st.ahead() < CHUNK {
                        Self::hand_over(&mut st, &mut chunk, &mut filled);
                        drop(st);
                        self.shared.cond.notify_all();
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let err = RemoteError::from_io(e);
                    Self::hand_over(&mut self.shared.state.lock(), &mut chunk, &mut filled);
                    self.shared.cond.notify_all();
                    // The stream is broken; dropping it releases its connection.
                    stream = None;
                    if may_retry && err.kind != RemoteErrorKind::TimedOut {
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

    /// Moves the `filled` bytes read into `chunk` to the shared buffer: a well-filled chunk
    /// as it is (no copy), a small part (e.g. one TLS record) as a copy, so that buffers do
    /// not waste their capacity.
    fn hand_over(st: &mut State, chunk: &mut Vec<u8>, filled: &mut usize) {
        if *filled * 4 >= chunk.len() * 3 {
            let mut full = st.buf.spare_chunk();
            std::mem::swap(&mut full, chunk);
            full.truncate(*filled);
            st.buf.push(full);
        } else if *filled > 0 {
            st.buf.push(chunk[..*filled].to_vec());
        }
        *filled = 0;
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
        // Slightly backward (out-of-order parallel reads): served from history.
        assert_eq!(r.read(5, 10).unwrap(), &d[5..15]);
        assert_eq!(m.open_read_calls(), 1);
        assert_eq!(r.read(2_000_000, 10).unwrap(), &d[2_000_000..2_000_010]);
        assert_eq!(m.open_read_calls(), 2);
        assert_eq!(r.read(1_000, 10).unwrap(), &d[1_000..1_010]);
        assert_eq!(m.open_read_calls(), 3);
        assert!(r.read(10_000_000, 10).unwrap().is_empty());
    }

    #[test]
    fn out_of_order_reads_and_idle_close() {
        let m = MemoryRemote::new();
        let d = data(4_000_000);
        m.put_file("/f", &d);
        let mut r = Reader::new(Arc::new(m.clone()), "/f".into(), 256 << 10);
        r.set_idle_close(Duration::from_millis(500));
        // Pairs of 128 KiB reads swapped, as parallel kernel readahead delivers them.
        let k = 131_072u64;
        assert!(r.read(0, k as usize).unwrap() == d[..k as usize]);
        for pair in 0..7u64 {
            for off in [(2 * pair + 2) * k, (2 * pair + 1) * k] {
                let got = r.read(off, k as usize).unwrap();
                assert!(got == d[off as usize..(off + k) as usize]);
            }
        }
        assert_eq!(m.open_read_calls(), 1);
        std::thread::sleep(Duration::from_millis(1500));
        // The idle stream was closed; reading on reopens once, data still right.
        let off = 15 * k;
        assert!(r.read(off, 3_000_000).unwrap() == d[off as usize..]);
        assert_eq!(m.open_read_calls(), 2);
    }

    #[test]
    fn small_files_are_fetched_whole_and_size_hints_are_only_hints() {
        let m = MemoryRemote::new();
        let small = data(5000);
        m.put_file("/s", &small);
        let mut r = Reader::new(Arc::new(m.clone()), "/s".into(), 8 << 20);
        r.set_size_hint(Some(5000));
        assert_eq!(r.read(0, 4096).unwrap(), &small[..4096]);
        // Served from the whole download, without asking for more.
        assert_eq!(r.try_read(4096, 4096).unwrap(), &small[4096..]);
        assert!(r.read(5000, 10).unwrap().is_empty());
        assert_eq!(m.open_read_calls(), 1);

        // Listed small but grown since: everything is still read, in order.
        let big = data(3 * CHUNK + 123);
        m.put_file("/g", &big);
        let mut r = Reader::new(Arc::new(m.clone()), "/g".into(), 8 << 20);
        r.set_size_hint(Some(10));
        let mut got = Vec::new();
        while got.len() < big.len() {
            let piece = r.read(got.len() as u64, 128 * 1024).unwrap();
            assert!(!piece.is_empty());
            got.extend_from_slice(&piece);
        }
        assert!(got == big);
    }

    #[test]
    fn broken_small_fetch_is_reopened_once() {
        let m = MemoryRemote::new();
        let d = data(200_000);
        m.put_file("/f", &d);
        let f = Arc::new(FaultyRemote::new(m.clone()));
        f.break_reads_after(100_000, 1);
        let mut r = Reader::new(f, "/f".into(), 8 << 20);
        r.set_size_hint(Some(200_000));
        assert!(r.read(0, 200_000).unwrap() == d);
        assert_eq!(m.open_read_calls(), 2);
    }

    #[test]
    fn tiny_window_still_serves_large_reads() {
        let m = MemoryRemote::new();
        let d = data(1_000_000);
        m.put_file("/f", &d);
        let mut r = Reader::new(Arc::new(m), "/f".into(), 0);
        assert!(r.read(0, 600_000).unwrap() == d[..600_000]);
        assert!(r.read(600_000, 600_000).unwrap() == d[600_000..]);
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

#[cfg(test)]
mod chunk_tests {
    use super::*;

    #[test]
    fn ranges_across_chunks_and_dropped_fronts() {
        let mut b = ChunkBuf::default();
        b.push(b"hello ".to_vec());
        b.push(Vec::new());
        b.push(b"wide ".to_vec());
        b.push(b"world".to_vec());
        assert_eq!(b.len(), 16);
        let mut out = Vec::new();
        b.copy_range(3, 13, &mut out);
        assert_eq!(out, b"lo wide wo");
        b.drop_front(8);
        assert_eq!(b.len(), 8);
        out.clear();
        b.copy_range(0, 8, &mut out);
        assert_eq!(out, b"de world");
        assert_eq!(b.range(3, 8), b"world");
        assert_eq!(b.range(0, 5), b"de wo");
        b.drop_front(100);
        assert_eq!(b.len(), 0);
        out.clear();
        b.copy_range(0, 4, &mut out);
        assert!(out.is_empty());
    }
}
