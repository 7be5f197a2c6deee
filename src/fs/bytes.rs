//! `ReadData`: the bytes a read returns, shared with the read-ahead buffer when they lie in
//! one downloaded chunk. Sequential reads are answered from the chunk itself, so each byte is
//! copied once less on its way from the socket to the kernel.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use parking_lot::Mutex;

/// Spare buffers of one size, reused so that a long download does not allocate (and fault
/// in) a fresh megabyte for every chunk.
pub struct BufferPool {
    size: usize,
    keep: usize,
    free: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    /// A pool of buffers of `size` bytes that keeps at most `keep` spare ones.
    pub fn new(size: usize, keep: usize) -> Arc<Self> {
        Arc::new(BufferPool {
            size,
            keep,
            free: Mutex::new(Vec::new()),
        })
    }

    /// A buffer of exactly `size` bytes (contents unspecified).
    pub fn get(&self) -> Vec<u8> {
        let spare = self.free.lock().pop();
        let mut buf = spare.unwrap_or_else(|| Vec::with_capacity(self.size));
        buf.resize(self.size, 0);
        buf
    }

    /// Wraps `data` as a shared chunk that returns to this pool when its last user drops it.
    pub fn chunk(self: &Arc<Self>, data: Vec<u8>) -> Arc<Chunk> {
        let pool = (data.capacity() == self.size).then(|| self.clone());
        Arc::new(Chunk { data, pool })
    }

    fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.lock();
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

/// Downloaded bytes shared between the read-ahead buffer and the reads answered from it.
pub struct Chunk {
    data: Vec<u8>,
    pool: Option<Arc<BufferPool>>,
}

impl Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Chunk {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            pool.put(std::mem::take(&mut self.data));
        }
    }
}

/// An immutable byte range, possibly shared with the buffer it came from.
#[derive(Clone)]
pub struct ReadData {
    bytes: Arc<Chunk>,
    from: usize,
    to: usize,
}

impl ReadData {
    /// `bytes[from..to]` of a shared chunk (clamped to its length).
    pub fn shared(bytes: Arc<Chunk>, from: usize, to: usize) -> Self {
        let to = to.min(bytes.len());
        ReadData {
            from: from.min(to),
            to,
            bytes,
        }
    }

    /// No bytes (end of file).
    pub fn empty() -> Self {
        Vec::new().into()
    }
}

impl From<Vec<u8>> for ReadData {
    fn from(v: Vec<u8>) -> Self {
        let to = v.len();
        ReadData {
            bytes: Arc::new(Chunk {
                data: v,
                pool: None,
            }),
            from: 0,
            to,
        }
    }
}

impl Deref for ReadData {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.from..self.to]
    }
}

impl AsRef<[u8]> for ReadData {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl<T: AsRef<[u8]> + ?Sized> PartialEq<T> for ReadData {
    fn eq(&self, other: &T) -> bool {
        **self == *other.as_ref()
    }
}

impl fmt::Debug for ReadData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ranges_are_clamped_and_compare_by_content() {
        let pool = BufferPool::new(11, 1);
        let buf = pool.chunk(b"hello world".to_vec());
        let d = ReadData::shared(buf.clone(), 6, 100);
        assert_eq!(d, b"world");
        assert_eq!(ReadData::shared(buf, 20, 30).len(), 0);
        assert_eq!(ReadData::from(b"abc".to_vec()), b"abc".to_vec());
        assert!(ReadData::empty().is_empty());
    }

    #[test]
    fn chunks_return_to_their_pool_when_the_last_user_drops_them() {
        let pool = BufferPool::new(4, 1);
        let mut buf = pool.get();
        buf.copy_from_slice(b"abcd");
        let chunk = pool.chunk(buf);
        let read = ReadData::shared(chunk.clone(), 1, 3);
        drop(chunk);
        assert!(pool.free.lock().is_empty(), "still shared by a read");
        assert_eq!(read, b"bc");
        drop(read);
        assert_eq!(pool.free.lock().len(), 1);
        // Wrong-sized buffers are not pooled; the pool keeps at most `keep`.
        drop(pool.chunk(vec![0; 3]));
        drop(pool.chunk(pool.get()));
        drop(pool.chunk(vec![0; 4]));
        assert_eq!(pool.free.lock().len(), 1);
        assert_eq!(pool.get().len(), 4);
    }
}
