//! The delay line: chunks stamped with the time they may leave, bounded by bytes so a
//! fast sender feels back-pressure instead of filling memory.

use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::faults::FaultAction;

/// How long a blocked push or pop sleeps before looking at its `alive` test again.
const TICK: Duration = Duration::from_millis(100);

/// One thing travelling through a direction of a connection.
#[derive(Debug)]
pub enum Item {
    /// Bytes to forward.
    Data(Vec<u8>),
    /// The sender closed its side: pass the FIN on.
    Eof,
    /// Apply a fault when this point of the stream is reached; the text says why.
    Fire(FaultAction, String),
}

/// An item and the instant it is due at the far side.
#[derive(Debug)]
pub struct Timed {
    /// When the item may be delivered.
    pub due: Instant,
    /// What to deliver.
    pub item: Item,
}

struct Inner {
    items: VecDeque<Timed>,
    bytes: usize,
}

/// FIFO of [`Timed`] items holding at most `limit` bytes of data (always at least one item).
pub struct TimedQueue {
    inner: Mutex<Inner>,
    cv: Condvar,
    limit: usize,
}

fn size(t: &Timed) -> usize {
    match &t.item {
        Item::Data(b) => b.len(),
        _ => 0,
    }
}

impl TimedQueue {
    /// An empty queue that holds up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        TimedQueue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                bytes: 0,
            }),
            cv: Condvar::new(),
            limit,
        }
    }

    /// Append, waiting while the queue is full. Returns false (item dropped) once `alive`
    /// says the connection is gone.
    pub fn push(&self, t: Timed, alive: impl Fn() -> bool) -> bool {
        let n = size(&t);
        let mut g = self.inner.lock();
        while g.bytes > 0 && g.bytes + n > self.limit {
            if !alive() {
                return false;
            }
            self.cv.wait_for(&mut g, TICK);
        }
        g.bytes += n;
        g.items.push_back(t);
        self.cv.notify_all();
        true
    }

    /// Take the oldest item, waiting while the queue is empty. None once `alive` says the
    /// connection is gone.
    pub fn pop(&self, alive: impl Fn() -> bool) -> Option<Timed> {
        let mut g = self.inner.lock();
        loop {
            if !alive() {
                return None;
            }
            if let Some(t) = g.items.pop_front() {
                g.bytes -= size(&t);
                self.cv.notify_all();
                return Some(t);
            }
            self.cv.wait_for(&mut g, TICK);
        }
    }

    /// Wake everyone waiting, so they look at their `alive` test now.
    pub fn wake(&self) {
        let _g = self.inner.lock();
        self.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn data(n: usize) -> Timed {
        Timed {
            due: Instant::now(),
            item: Item::Data(vec![0; n]),
        }
    }

    #[test]
    fn fifo_and_bounded() {
        let q = Arc::new(TimedQueue::new(10));
        assert!(q.push(data(8), || true));
        let q2 = Arc::clone(&q);
        let pusher = std::thread::spawn(move || q2.push(data(8), || true));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished(), "second push must wait for room");
        assert!(matches!(q.pop(|| true).map(|t| t.item), Some(Item::Data(b)) if b.len() == 8));
        assert!(pusher.join().unwrap_or(false));
        // an item bigger than the limit still goes through an empty queue
        assert!(matches!(
            q.pop(|| true).map(|t| t.item),
            Some(Item::Data(_))
        ));
        assert!(q.push(data(100), || true));
    }

    #[test]
    fn dead_connection_ends_waits() {
        let q = Arc::new(TimedQueue::new(10));
        let alive = Arc::new(AtomicBool::new(true));
        let (q2, a2) = (Arc::clone(&q), Arc::clone(&alive));
        let popper = std::thread::spawn(move || q2.pop(|| a2.load(Ordering::SeqCst)).is_none());
        std::thread::sleep(Duration::from_millis(20));
        alive.store(false, Ordering::SeqCst);
        q.wake();
        assert!(popper.join().unwrap_or(false));
    }
}
