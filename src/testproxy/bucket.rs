//! Token bucket for the bandwidth cap: one per direction, shared by every connection of a
//! proxy, like one slow link.

use parking_lot::Mutex;
use std::time::{Duration, Instant};

/// A bucket refilled at `rate` bytes per second, holding at most `burst` bytes.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket for `rate` bytes per second (at least 1).
    pub fn new(rate: u64) -> Self {
        let rate = rate.max(1) as f64;
        let burst = self::piece(rate as u64) as f64;
        TokenBucket {
            rate,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// How many bytes to send at once: about 20 ms worth, so connections sharing the bucket
    /// interleave finely, but not fewer than 1 KiB or more than 64 KiB.
    pub fn piece_len(&self) -> usize {
        piece(self.rate as u64)
    }

    /// Take `n` bytes' worth of tokens; returns how long the caller must wait before sending.
    /// Tokens may go negative: later callers then wait for the debt too, which keeps the
    /// long-run rate exact when several connections share the bucket.
    pub fn take(&self, n: usize) -> Duration {
        let mut g = self.state.lock();
        let now = Instant::now();
        let (tokens, last) = &mut *g;
        *tokens = (*tokens + now.duration_since(*last).as_secs_f64() * self.rate).min(self.burst);
        *last = now;
        *tokens -= n as f64;
        if *tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-*tokens / self.rate)
        }
    }
}

fn piece(rate: u64) -> usize {
    ((rate / 50) as usize).clamp(1024, 64 * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_add_up_to_the_rate() {
        let b = TokenBucket::new(100_000);
        assert_eq!(b.piece_len(), 2000);
        // the burst goes at once, the rest is owed: 100 kB at 100 kB/s is ~1 s of waiting
        let mut last = Duration::ZERO;
        for _ in 0..50 {
            last = b.take(2000);
        }
        assert!(last >= Duration::from_millis(950), "{last:?}");
        assert!(last <= Duration::from_millis(1000), "{last:?}");
    }

    #[test]
    fn piece_limits() {
        assert_eq!(TokenBucket::new(1).piece_len(), 1024);
        assert_eq!(TokenBucket::new(1 << 40).piece_len(), 65536);
    }
}
