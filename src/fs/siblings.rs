//! Fetching ahead the small files a program is about to read.
//!
//! `cp -r`, `tar`, `rsync`, `grep -r` and `md5sum *` read a directory's files one after
//! another in readdir (= name) order. Each small file then costs a round trip or two of its
//! own (RETR, and the 226), with the pool's other connections idle. When the files opened
//! in a directory follow each other in name order, the next small files of that directory
//! are downloaded whole, in parallel on the pool, before they are opened; the reader of such
//! a file then takes its content from here.
//!
//! In parallel only where a file costs a noticeable wait: when the first read of small files
//! that were not fetched ahead takes less than `WORTH_IT` (a LAN, loopback), extra logins
//! would cost the server more than they save, so only `FAST_DEPTH` files are fetched ahead,
//! one at a time, on a connection that is idle anyway (while the program starts its next
//! process, say).
//!
//! What is served is never older than `max_age` (the mount's cache timeout, the same trust
//! the listing that describes the file gets) and must still match the size and mtime that
//! the cached listing gives for it; everything fetched from a directory is dropped when we
//! change anything in it (`changed`). Memory is bounded by `BUDGET`; only files up to
//! `MAX_FILE` are fetched ahead.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read};
use std::num::NonZeroUsize;
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use log::debug;
use lru::LruCache;
use parking_lot::{Condvar, Mutex};

use super::cache::Listing;
use crate::remote::{EntryKind, Remote};

/// Largest file fetched ahead.
pub const MAX_FILE: u64 = 1 << 20;
/// Bytes held or being fetched ahead, all directories together.
pub const BUDGET: u64 = 16 << 20;
/// Opens that follow each other in name order before fetching ahead starts.
const STREAK: u32 = 2;
/// Two opens at most this many names apart count as in order (parallel readers such as
/// `xargs -P8` open neighbouring files slightly out of order).
const NEAR: usize = 16;
/// Directories whose reading order is remembered.
const DIRS: usize = 64;
/// Files queued, being fetched or fetched, at most.
const MAX_SLOTS: usize = 1024;
/// Fetching ahead starts only once the first read of a small file, done by its own reader,
/// takes this long on average: below that, a file is hardly worth a connection.
pub const WORTH_IT: Duration = Duration::from_millis(5);
/// Files fetched ahead on a fast link.
const FAST_DEPTH: usize = 2;

/// What is known about one file's content.
enum Slot {
    /// Waiting for a download thread: a reader that comes first reads it itself.
    Queued,
    /// A thread is downloading it.
    Fetching,
    /// Downloaded, at `at`.
    Ready { data: Vec<u8>, at: Instant },
}

struct Job {
    path: String,
    size: u64,
    /// Only on a connection that is idle now (a fast link): never wait for one or log in.
    idle_only: bool,
}

/// How a directory's files are being opened.
#[derive(Default)]
struct Order {
    /// The furthest name opened (in name order).
    last: String,
    /// Opens in a row that were near the previous one.
    streak: u32,
    /// The furthest name queued for fetching ahead.
    frontier: String,
}

struct Fetched {
    slot: Slot,
    /// The listing's size and mtime when queued: both must still hold when it is taken.
    size: u64,
    mtime: Option<SystemTime>,
    /// Something in its directory changed while it was being fetched: dropped when done.
    stale: bool,
}

#[derive(Default)]
struct State {
    dirs: Option<LruCache<String, Order>>,
    files: HashMap<String, Fetched>,
    queue: VecDeque<Job>,
    /// Bytes of all slots.
    bytes: u64,
    threads: usize,
    /// Moving average of how long the first read of a small file took its own reader, in
    /// microseconds; None before the first.
    direct_read_us: Option<u64>,
}

struct Inner {
    remote: Arc<dyn Remote>,
    state: Mutex<State>,
    done: Condvar,
    /// Parallel downloads at most (and files fetched ahead is twice that).
    threads: usize,
    max_age: Duration,
    /// Files whose content was taken from here.
    served: AtomicU64,
}

/// The fetch-ahead of small sibling files; cheap to clone.
#[derive(Clone)]
pub struct Siblings {
    inner: Arc<Inner>,
}

/// How many names lie between `a` and `b` in `listing` (both excluded, capped past NEAR).
fn distance(listing: &Listing, a: &str, b: &str) -> usize {
    if a == b {
        // (A range with both ends equal and excluded is a panic, not an empty range.)
        return 0;
    }
    let (lo, hi) = if a < b { (a, b) } else { (b, a) };
    listing
        .range::<str, _>((Bound::Excluded(lo), Bound::Excluded(hi)))
        .take(NEAR + 1)
        .count()
}

impl Siblings {
    /// Fetches ahead with up to `threads` parallel downloads; content lives `max_age`.
    pub fn new(remote: Arc<dyn Remote>, threads: usize, max_age: Duration) -> Self {
        Siblings {
            inner: Arc::new(Inner {
                remote,
                state: Mutex::new(State::default()),
                done: Condvar::new(),
                threads,
                max_age,
                served: AtomicU64::new(0),
            }),
        }
    }

    fn enabled(&self) -> bool {
        self.inner.threads > 0 && !self.inner.max_age.is_zero()
    }

    /// `name` in `dir` (whose cached listing is `listing`) was opened for reading. When
    /// opens follow the name order, the small files after it are queued.
    pub fn opened(&self, dir: &str, name: &str, listing: &Listing) {
        if !self.enabled() {
            return;
        }
        let inner = &self.inner;
        let mut st = inner.state.lock();
        let st = &mut *st;
        sweep(st, inner.max_age);
        let dirs = st.dirs.get_or_insert_with(|| {
            LruCache::new(NonZeroUsize::new(DIRS).unwrap_or(NonZeroUsize::MIN))
        });
        let order = dirs.get_or_insert_mut(dir.to_string(), Order::default);
        if order.last.is_empty() || distance(listing, &order.last, name) > NEAR {
            order.streak = 0;
            order.last = name.to_string();
            order.frontier = name.to_string();
            return;
        }
        if name == order.last {
            return;
        }
        order.streak += 1;
        if name > order.last.as_str() {
            order.last = name.to_string();
        }
        if order.streak < STREAK {
            return;
        }
        let slow = st
            .direct_read_us
            .is_some_and(|us| us >= WORTH_IT.as_micros() as u64);
        let (depth, max_threads) = if slow {
            (2 * inner.threads, inner.threads)
        } else {
            (FAST_DEPTH, 1)
        };
        let from = order.frontier.as_str().max(order.last.as_str()).to_string();
        let ahead = listing
            .range::<str, _>((Bound::Excluded(order.last.as_str()), Bound::Unbounded))
            .filter(|(_, e)| e.kind == EntryKind::File)
            .take(depth);
        let mut frontier = None;
        for (child, entry) in ahead {
            if child.as_str() <= from.as_str() {
                continue;
            }
            if entry.size > MAX_FILE {
                frontier = Some(child.clone());
                continue;
            }
            if st.bytes.saturating_add(entry.size) > BUDGET || st.files.len() >= MAX_SLOTS {
                break;
            }
            frontier = Some(child.clone());
            let path = format!("{}/{child}", dir.trim_end_matches('/'));
            if st.files.contains_key(&path) {
                continue;
            }
            st.bytes += entry.size;
            st.files.insert(
                path.clone(),
                Fetched {
                    slot: Slot::Queued,
                    size: entry.size,
                    mtime: entry.mtime,
                    stale: false,
                },
            );
            st.queue.push_back(Job {
                path,
                size: entry.size,
                idle_only: !slow,
            });
        }
        if let Some(frontier) = frontier {
            order.frontier = frontier;
        }
        while st.threads < max_threads && st.threads < st.queue.len() {
            st.threads += 1;
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("ftpfs-siblings".into())
                .spawn(move || fetch_jobs(&inner));
            if spawned.is_err() {
                st.threads -= 1;
                break;
            }
        }
    }

    /// The whole content of `path` if it was fetched ahead and the cached listing still
    /// describes it as then (`size`, `mtime`). Waits for a download under way. Otherwise
    /// the caller reads the file itself (also one still queued: it is taken off the queue).
    pub fn take(
        &self,
        path: &str,
        size: u64,
        mtime: Option<SystemTime>,
        wait_max: Duration,
    ) -> Option<Vec<u8>> {
        if !self.enabled() {
            return None;
        }
        let inner = &self.inner;
        let deadline = Instant::now() + wait_max;
        let mut st = inner.state.lock();
        while st
            .files
            .get(path)
            .is_some_and(|f| matches!(f.slot, Slot::Fetching))
        {
            if inner.done.wait_until(&mut st, deadline).timed_out() {
                return None;
            }
        }
        let taken = match st.files.remove(path) {
            Some(Fetched {
                slot: Slot::Queued,
                size: was_size,
                ..
            }) => {
                st.bytes -= was_size;
                st.queue.retain(|job| job.path != path);
                None
            }
            Some(Fetched {
                slot: Slot::Ready { data, at },
                size: was_size,
                mtime: was_mtime,
                ..
            }) => {
                st.bytes -= was_size;
                let current =
                    was_size == size && was_mtime == mtime && at.elapsed() < inner.max_age;
                current.then_some(data)
            }
            Some(fetching) => {
                // Timed out above: still running. Its thread finds the slot gone.
                st.bytes -= fetching.size;
                None
            }
            None => None,
        };
        sweep(&mut st, inner.max_age);
        if taken.is_some() {
            inner.served.fetch_add(1, Ordering::Relaxed);
            debug!("{path}: content fetched ahead");
        }
        taken
    }

    /// Something in `dir` changed through the mount (below it too, with `tree`): what was
    /// fetched from there may be out of date, and is dropped.
    pub fn changed(&self, dir: &str, tree: bool) {
        if !self.enabled() {
            return;
        }
        let prefix = format!("{}/", dir.trim_end_matches('/'));
        let affected = |path: &str| {
            path.strip_prefix(&prefix)
                .is_some_and(|rest| tree || !rest.contains('/'))
        };
        let mut st = self.inner.state.lock();
        let st = &mut *st;
        let mut freed = 0;
        st.files.retain(|path, f| {
            if !affected(path) {
                return true;
            }
            if matches!(f.slot, Slot::Fetching) {
                f.stale = true;
                return true;
            }
            freed += f.size;
            false
        });
        st.bytes -= freed;
        st.queue.retain(|job| !affected(&job.path));
    }

    /// A small file's own reader took `took` for its first read (RETR to first bytes):
    /// what decides whether fetching ahead is worth it.
    pub fn note_direct_read(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut st = self.inner.state.lock();
        st.direct_read_us = Some(match st.direct_read_us {
            // A quarter of each new sample: one slow read (a busy machine) does not switch
            // it on, a link that is slow throughout does within a few files.
            Some(avg) => (avg * 3 + us) / 4,
            None => us,
        });
    }

    /// Waits until nothing is queued or being fetched (tests: a reader slower than the
    /// downloads).
    #[cfg(test)]
    fn wait_idle(&self) {
        let mut st = self.inner.state.lock();
        while st
            .files
            .values()
            .any(|f| matches!(f.slot, Slot::Queued | Slot::Fetching))
        {
            self.inner.done.wait(&mut st);
        }
    }

    /// How many files were served from content fetched ahead.
    pub fn served(&self) -> u64 {
        self.inner.served.load(Ordering::Relaxed)
    }
}

/// Forgets content older than `max_age`.
fn sweep(st: &mut State, max_age: Duration) {
    let mut freed = 0;
    st.files.retain(|_, f| match f.slot {
        Slot::Fetching | Slot::Queued => true,
        Slot::Ready { at, .. } => {
            let keep = at.elapsed() < max_age;
            if !keep {
                freed += f.size;
            }
            keep
        }
    });
    st.bytes -= freed;
}

/// A download thread: takes queued files until none is left.
fn fetch_jobs(inner: &Inner) {
    loop {
        let job = {
            let mut st = inner.state.lock();
            match st.queue.pop_front() {
                Some(job) => {
                    if let Some(f) = st.files.get_mut(&job.path) {
                        f.slot = Slot::Fetching;
                    }
                    job
                }
                None => {
                    st.threads -= 1;
                    return;
                }
            }
        };
        // A panic in the remote must not leave the slot `Fetching` (readers would wait for
        // it) nor this thread counted.
        let data = catch_unwind(AssertUnwindSafe(|| download(inner.remote.as_ref(), &job)))
            .unwrap_or(None);
        let mut st = inner.state.lock();
        let st = &mut *st;
        let usable = st
            .files
            .get(&job.path)
            .is_some_and(|f| matches!(f.slot, Slot::Fetching) && !f.stale);
        match data {
            Some(data) if usable => {
                if let Some(f) = st.files.get_mut(&job.path) {
                    f.slot = Slot::Ready {
                        data,
                        at: Instant::now(),
                    };
                }
            }
            _ => {
                // Failed, changed meanwhile, or given up by a reader: its own reader reads it.
                if let Some(f) = st.files.get(&job.path)
                    && matches!(f.slot, Slot::Fetching)
                {
                    st.bytes -= f.size;
                    st.files.remove(&job.path);
                }
            }
        }
        inner.done.notify_all();
    }
}

/// The whole file, if it has exactly the listed size (anything else means it changed and
/// its own reader will find out).
fn download(remote: &dyn Remote, job: &Job) -> Option<Vec<u8>> {
    let opened = if job.idle_only {
        remote.open_read_if_idle(&job.path, 0)
    } else {
        remote.open_read(&job.path, 0).map(Some)
    };
    let mut stream = match opened {
        Ok(Some(s)) => s,
        Ok(None) => return None,
        Err(e) => {
            debug!("{}: fetching ahead failed: {e}", job.path);
            return None;
        }
    };
    let mut data = Vec::with_capacity(job.size as usize);
    let mut piece = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut piece) {
            Ok(0) => break,
            Ok(n) if (data.len() + n) as u64 <= job.size => data.extend_from_slice(&piece[..n]),
            Ok(_) => {
                debug!("{}: larger than listed; not fetched ahead", job.path);
                return None;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("{}: fetching ahead failed: {e}", job.path);
                return None;
            }
        }
    }
    if let Err(e) = stream.close() {
        debug!("{}: closing a download fetched ahead: {e}", job.path);
    }
    (data.len() as u64 == job.size).then_some(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::Filesystem;
    use crate::fs::{FsOptions, Ino, ROOT_INO};
    use crate::remote::memory::MemoryRemote;
    use std::ffi::OsStr;

    const WAIT: Duration = Duration::from_secs(10);
    const SLOW: Duration = Duration::from_millis(50);

    fn content(i: usize, len: usize) -> Vec<u8> {
        (0..len).map(|j| (i * 7 + j * 13) as u8).collect()
    }

    /// A filesystem over `/d/f00`, `/d/f01`... (`sizes[i]` bytes each), fetching ahead
    /// with `threads` downloads.
    fn setup(sizes: &[usize], threads: usize) -> (MemoryRemote, Filesystem) {
        let m = MemoryRemote::new();
        m.mkdir_all("/d");
        for (i, &len) in sizes.iter().enumerate() {
            m.put_file(&format!("/d/f{i:02}"), &content(i, len));
        }
        let opts = FsOptions {
            cache_timeout: Duration::from_secs(60),
            fetch_ahead: threads,
            ..FsOptions::default()
        };
        let fs = Filesystem::new(Arc::new(m.clone()), opts);
        // As on a link where each file costs a round trip of 50 ms.
        fs.siblings.note_direct_read(SLOW);
        (m, fs)
    }

    fn ino_of(fs: &Filesystem, i: usize) -> Ino {
        let dir = fs.lookup(ROOT_INO, OsStr::new("d")).unwrap().ino;
        fs.lookup(dir, OsStr::new(&format!("f{i:02}"))).unwrap().ino
    }

    fn read_whole(fs: &Filesystem, i: usize) -> Vec<u8> {
        crate::fs::tests::read_all(fs, ino_of(fs, i))
    }

    #[test]
    fn files_read_in_name_order_are_fetched_ahead_once_each() {
        let (m, fs) = setup(&[4096; 20], 4);
        for i in 0..20 {
            fs.siblings.wait_idle();
            assert_eq!(read_whole(&fs, i), content(i, 4096), "f{i:02}");
        }
        // The third open in a row starts it: every later file comes from here.
        assert_eq!(fs.siblings.served(), 17);
        assert_eq!(m.open_read_calls(), 20, "each file downloaded once");
    }

    #[test]
    fn big_files_are_left_to_their_reader() {
        let mut sizes = vec![1000; 8];
        sizes[5] = MAX_FILE as usize + 1;
        let (m, fs) = setup(&sizes, 2);
        for (i, &len) in sizes.iter().enumerate() {
            fs.siblings.wait_idle();
            assert_eq!(read_whole(&fs, i), content(i, len), "f{i:02}");
        }
        assert_eq!(fs.siblings.served(), 4, "f03, f04, f06, f07");
        assert_eq!(m.open_read_calls(), 8);
    }

    #[test]
    fn files_opened_out_of_order_are_not_fetched_ahead() {
        let (m, fs) = setup(&[100; 60], 4);
        for i in [0, 30, 5, 50, 12, 40, 20] {
            assert_eq!(read_whole(&fs, i), content(i, 100), "f{i:02}");
        }
        assert_eq!(fs.siblings.served(), 0);
        assert_eq!(m.open_read_calls(), 7, "nothing downloaded in vain");
    }

    #[test]
    fn a_file_we_changed_after_it_was_fetched_reads_as_changed() {
        let (_m, fs) = setup(&[4096; 10], 4);
        for i in 0..3 {
            read_whole(&fs, i);
        }
        // f03..f09 are being fetched ahead; now f05 is rewritten through the mount.
        let ino = ino_of(&fs, 5);
        let h = fs.open(ino, libc::O_WRONLY | libc::O_TRUNC).unwrap();
        fs.write(ino, h.fh, 0, b"new content").unwrap();
        fs.release(ino, h.fh).unwrap();
        for i in 3..10 {
            let want = if i == 5 {
                b"new content".to_vec()
            } else {
                content(i, 4096)
            };
            assert_eq!(read_whole(&fs, i), want, "f{i:02}");
        }
    }

    /// A remote holding `/d/f00`... (`count` files of `len` bytes) and their listing.
    fn listed_remote(count: usize, len: usize) -> (MemoryRemote, Listing) {
        let m = MemoryRemote::new();
        m.mkdir_all("/d");
        let mut listing = Listing::new();
        for i in 0..count {
            let name = format!("f{i:02}");
            m.put_file(&format!("/d/{name}"), &content(i, len));
            listing.insert(name.clone(), m.stat(&format!("/d/{name}")).unwrap());
        }
        (m, listing)
    }

    #[test]
    fn content_is_served_only_while_the_listing_still_describes_it() {
        let (m, listing) = listed_remote(8, 50);
        let sib = Siblings::new(Arc::new(m.clone()), 2, Duration::from_secs(60));
        sib.note_direct_read(SLOW);
        for name in ["f00", "f01", "f02"] {
            sib.opened("/d", name, &listing);
        }
        sib.wait_idle();
        let e3 = &listing["f03"];
        let e4 = &listing["f04"];
        assert_eq!(
            sib.take("/d/f03", e3.size + 1, e3.mtime, WAIT),
            None,
            "size"
        );
        assert_eq!(
            sib.take("/d/f04", e4.size, e4.mtime, WAIT),
            Some(content(4, 50))
        );
        assert_eq!(
            sib.take("/d/f04", e4.size, e4.mtime, WAIT),
            None,
            "taken once"
        );
        // A change made through the mount in the directory (or above it) drops the rest.
        sib.changed("/other", true);
        let e5 = &listing["f05"];
        assert_eq!(
            sib.take("/d/f05", e5.size, e5.mtime, WAIT),
            Some(content(5, 50))
        );
        sib.changed("/d", false);
        let e6 = &listing["f06"];
        assert_eq!(sib.take("/d/f06", e6.size, e6.mtime, WAIT), None, "changed");
    }

    #[test]
    fn a_change_during_a_download_drops_what_it_brings() {
        let (m, listing) = listed_remote(5, 50);
        let sib = Siblings::new(Arc::new(m), 1, Duration::from_secs(60));
        sib.note_direct_read(SLOW);
        {
            // The one thread is taken, so nothing starts: the slot is set to Fetching by hand,
            // as a thread does before it downloads.
            let mut st = sib.inner.state.lock();
            st.threads = 1;
        }
        for name in ["f00", "f01", "f02"] {
            sib.opened("/d", name, &listing);
        }
        let job = {
            let mut st = sib.inner.state.lock();
            let job = st.queue.pop_front().expect("f03 queued");
            st.files.get_mut(&job.path).unwrap().slot = Slot::Fetching;
            st.threads = 0;
            job
        };
        sib.changed("/", true);
        {
            // What the thread does when its download is done.
            let mut st = sib.inner.state.lock();
            st.threads = 1;
            st.queue.push_front(job);
        }
        fetch_jobs(&sib.inner);
        let e = &listing["f03"];
        assert_eq!(sib.take("/d/f03", e.size, e.mtime, WAIT), None);
        assert_eq!(sib.inner.state.lock().bytes, 0, "nothing left counted");
    }

    proptest::proptest! {
        /// Any order of opens, including the same file again and names the listing lacks.
        #[test]
        fn any_order_of_opens_is_fine(opens in proptest::collection::vec(0usize..40, 0..60)) {
            let (m, listing) = listed_remote(30, 10);
            let sib = Siblings::new(Arc::new(m), 1, Duration::from_secs(60));
            sib.note_direct_read(SLOW);
            for i in opens {
                sib.opened("/d", &format!("f{i:02}"), &listing);
                let e = listing.get(&format!("f{i:02}"));
                let got = sib.take(&format!("/d/f{i:02}"), 10, e.and_then(|e| e.mtime), WAIT);
                proptest::prop_assert!(got.is_none() || got == Some(content(i, 10)));
            }
        }
    }

    #[test]
    fn where_files_come_fast_only_two_are_fetched_ahead_at_a_time() {
        let (m, fs) = setup(&[100; 10], 4);
        // Files read straight from the (in-memory) server take microseconds: after a few,
        // the average falls below the threshold.
        for _ in 0..20 {
            fs.siblings.note_direct_read(Duration::from_micros(300));
        }
        for i in 0..10 {
            fs.siblings.wait_idle();
            let st = fs.siblings.inner.state.lock();
            assert!(st.files.len() <= FAST_DEPTH, "{} ahead", st.files.len());
            assert!(st.threads <= 1);
            drop(st);
            assert_eq!(read_whole(&fs, i), content(i, 100));
        }
        assert_eq!(fs.siblings.served(), 7);
        assert_eq!(m.open_read_calls(), 10, "each file downloaded once");
    }

    #[test]
    fn a_reader_that_comes_first_reads_a_queued_file_itself() {
        let (m, listing) = listed_remote(12, 20);
        // No download thread may run: zero threads allowed would switch it off, so the
        // queue is filled by hand through a Siblings with threads but none spawned yet.
        let sib = Siblings::new(Arc::new(m.clone()), 1, Duration::from_secs(60));
        sib.note_direct_read(SLOW);
        {
            let mut st = sib.inner.state.lock();
            st.threads = 1; // pretend the one thread is busy: nothing gets spawned
        }
        for name in ["f00", "f01", "f02"] {
            sib.opened("/d", name, &listing);
        }
        let e = &listing["f03"];
        assert_eq!(sib.take("/d/f03", e.size, e.mtime, WAIT), None);
        let st = sib.inner.state.lock();
        assert!(st.queue.iter().all(|job| job.path != "/d/f03"), "dequeued");
        assert!(st.queue.iter().any(|job| job.path == "/d/f04"));
    }

    #[test]
    fn nothing_is_fetched_when_off() {
        let (m, fs) = setup(&[100; 10], 0);
        for i in 0..10 {
            read_whole(&fs, i);
        }
        assert_eq!(fs.siblings.served(), 0);
        assert_eq!(m.open_read_calls(), 10);
    }
}
