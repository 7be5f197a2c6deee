//! The write side of an open file: what its new content is and how it reaches the server.
//!
//! States (`Content`):
//! - `Remote`: nothing local; the server's file is the content.
//! - `Empty`: truncated to zero locally, or created here and not uploaded yet; an empty
//!   upload is due unless a write starts a stream first.
//! - `Stream`: writes so far were sequential from the start of a new/truncated file (or
//!   appends, when the server supports APPE); they go straight to an upload through a bounded
//!   channel and a sender thread, so memory stays bounded and nothing touches the disk.
//! - `Spool`: a temporary file holds the whole new content; uploaded whole when committed.
//!
//! Any operation a stream cannot serve (a write elsewhere than its end, a read, a truncate to
//! a non-zero size) converts the stream to a spool: the upload is finished (so the server
//! holds the streamed prefix), then downloaded back into the spool. That costs a round trip of
//! the prefix, but only on the rare non-sequential pattern, and keeps sequential copies free
//! of local disk I/O. The same download fills a spool for writes into an existing file.
//!
//! A failed upload deletes the remote file (best effort): a broken STOR leaves a truncated
//! file that would otherwise look complete.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crossbeam_channel::{Sender, TrySendError, bounded};
use log::{debug, warn};

use crate::remote::{Remote, RemoteError, RemoteErrorKind, RemoteResult, WriteMode, WriteStream};

/// Size of the pieces spools are uploaded and downloaded in.
const COPY_CHUNK: usize = 1 << 20;
/// Typical FUSE write size, to turn the write buffer's byte budget into a channel depth.
const TYPICAL_WRITE: usize = 128 * 1024;

/// A running upload fed by a sender thread.
pub struct Upload {
    tx: Option<Sender<Vec<u8>>>,
    thread: Option<JoinHandle<RemoteResult<()>>>,
    /// File offset of the next byte (for Append: the server size when it started + sent).
    pos: u64,
    mode: WriteMode,
    /// Set to end the upload without `finish` (the file was removed or replaced).
    abort: Arc<AtomicBool>,
}

impl Upload {
    fn start(
        remote: &Arc<dyn Remote>,
        path: &str,
        mode: WriteMode,
        pos: u64,
        write_buffer: usize,
    ) -> RemoteResult<Upload> {
        let mut stream = remote.open_write(path, mode)?;
        let (tx, rx) = bounded::<Vec<u8>>((write_buffer / TYPICAL_WRITE).max(1));
        let abort = Arc::new(AtomicBool::new(false));
        let aborted = abort.clone();
        let thread = std::thread::Builder::new()
            .name("ftpfs-upload".into())
            .spawn(move || {
                for chunk in rx {
                    // Returning drops `rx`, so later sends fail fast.
                    if let Err(e) = stream.write_all(&chunk) {
                        let err = RemoteError::from_io(e);
                        // The server's reply says why the data connection broke (552 disk
                        // full, 550 denied...), which beats a bare "connection reset".
                        return match stream.finish() {
                            Err(verdict) if verdict.kind != RemoteErrorKind::Io => Err(verdict),
                            _ => Err(err),
                        };
                    }
                }
                if aborted.load(Ordering::SeqCst) {
                    // Dropping the stream aborts the transfer.
                    return Err(RemoteError::new(RemoteErrorKind::Io, "upload aborted"));
                }
                stream.flush().map_err(RemoteError::from_io)?;
                stream.finish()
            })
            .map_err(|e| RemoteError::new(RemoteErrorKind::Io, format!("cannot spawn: {e}")))?;
        Ok(Upload {
            tx: Some(tx),
            thread: Some(thread),
            pos,
            mode,
            abort,
        })
    }

    /// Queues bytes; an error means the upload already failed (call `finish` for why).
    fn send(&mut self, data: &[u8]) -> bool {
        let ok = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.send(data.to_vec()).is_ok());
        if ok {
            self.pos += data.len() as u64;
        }
        ok
    }

    /// Queues bytes only if that needs no waiting; gives them back otherwise (queue full,
    /// or the upload ended: the blocking path then finds out why).
    fn try_send(&mut self, data: Vec<u8>) -> Result<(), Vec<u8>> {
        let Some(tx) = self.tx.as_ref() else {
            return Err(data);
        };
        let len = data.len() as u64;
        match tx.try_send(data) {
            Ok(()) => {
                self.pos += len;
                Ok(())
            }
            Err(TrySendError::Full(d) | TrySendError::Disconnected(d)) => Err(d),
        }
    }

    /// Ends the upload and waits for the server's verdict.
    fn finish(mut self) -> RemoteResult<()> {
        self.tx = None;
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(RemoteError::new(
                RemoteErrorKind::Io,
                "upload thread panicked",
            )),
            None => Err(RemoteError::new(
                RemoteErrorKind::Io,
                "upload already finished",
            )),
        }
    }
}

/// The content of an open file as the writers see it.
pub enum Content {
    /// The server's file is the content.
    Remote,
    /// Locally truncated to zero; an empty upload is due.
    Empty,
    /// Sequential upload in progress.
    Stream(Upload),
    /// Whole content in a temporary file.
    Spool {
        /// The temporary file (deleted by the OS when dropped).
        file: File,
        /// Content length in bytes.
        size: u64,
        /// Whether it differs from the server's file.
        dirty: bool,
    },
    /// A streaming upload broke and its error was reported (by the write or flush that found
    /// it). The bytes it had taken are lost, so every later write and read on the file fails
    /// with that error: falling back to the server's (deleted or partial) file instead let the
    /// next write succeed and close() upload a file with a hole where the lost bytes were.
    /// Not dirty (nothing left to upload); truncating to zero starts afresh.
    Failed(RemoteError),
}

/// What a writer needs to reach the server.
pub struct Ctx<'a> {
    /// The server.
    pub remote: &'a Arc<dyn Remote>,
    /// The file's current path; None once unlinked (pending content is then discarded).
    pub path: Option<&'a str>,
    /// Byte budget of a streaming upload's queue.
    pub write_buffer: usize,
    /// Called with the new size after every completed upload, including the implicit one
    /// when a stream turns into a spool, so caches learn the server's new state.
    pub on_upload: &'a dyn Fn(u64),
}

impl Ctx<'_> {
    fn path(&self) -> RemoteResult<&str> {
        self.path
            .ok_or_else(|| RemoteError::new(RemoteErrorKind::NotFound, "file was removed"))
    }
}

fn io_err(e: std::io::Error) -> RemoteError {
    RemoteError::new(RemoteErrorKind::Io, format!("spool file: {e}"))
}

/// Downloads `path` whole into a new spool file, resuming once after a broken stream.
fn download(ctx: &Ctx<'_>, path: &str) -> RemoteResult<(File, u64)> {
    let file = tempfile::tempfile().map_err(io_err)?;
    let mut stream = ctx.remote.open_read(path, 0)?;
    let mut pos = 0u64;
    let mut retried = false;
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                file.write_all_at(&buf[..n], pos).map_err(io_err)?;
                pos += n as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if !retried => {
                warn!("download {path} at {pos}: {e}; reopening once");
                retried = true;
                stream = ctx.remote.open_read(path, pos)?;
            }
            Err(e) => return Err(RemoteError::from_io(e)),
        }
    }
    if let Err(e) = stream.close() {
        debug!("closing download of {path}: {e}");
    }
    Ok((file, pos))
}

/// Sends the first `size` bytes of `file` into `stream`, an upload already started.
fn upload_file(mut stream: Box<dyn WriteStream>, file: &File, size: u64) -> RemoteResult<()> {
    let mut buf = vec![
        0u8;
        COPY_CHUNK
            .min(usize::try_from(size).unwrap_or(COPY_CHUNK))
            .max(1)
    ];
    let mut pos = 0u64;
    while pos < size {
        let want = buf
            .len()
            .min(usize::try_from(size - pos).unwrap_or(buf.len()));
        let n = file.read_at(&mut buf[..want], pos).map_err(io_err)?;
        if n == 0 {
            return Err(RemoteError::new(RemoteErrorKind::Io, "spool file shrank"));
        }
        stream.write_all(&buf[..n]).map_err(RemoteError::from_io)?;
        pos += n as u64;
    }
    stream.flush().map_err(RemoteError::from_io)?;
    stream.finish()
}

/// Best-effort removal of a file an upload failed to complete. A failed append is left
/// alone: deleting it would destroy the content that was there before.
fn remove_partial(ctx: &Ctx<'_>, path: &str, mode: WriteMode, err: &RemoteError) {
    if mode == WriteMode::Append {
        warn!("append to {path} failed ({err}); the file may hold part of the data");
        return;
    }
    warn!("upload of {path} failed ({err}); removing the partial file");
    match ctx.remote.delete(path) {
        Ok(()) => {}
        Err(e) if e.kind == RemoteErrorKind::NotFound => debug!("removing partial {path}: {e}"),
        // the user must learn that an incomplete file is left behind (README, Reliability)
        Err(e) => warn!(
            "could not remove the partial file {path} ({e}): it stays on the server, incomplete"
        ),
    }
}

impl Content {
    /// Drops pending changes without uploading them (the file was removed or replaced);
    /// a running upload is aborted rather than finished.
    pub fn discard(&mut self) {
        if let Content::Stream(up) = std::mem::replace(self, Content::Remote) {
            up.abort.store(true, Ordering::SeqCst);
            let _ = up.finish();
        }
    }

    /// Whether local changes await upload.
    pub fn is_dirty(&self) -> bool {
        match self {
            Content::Remote | Content::Failed(_) => false,
            Content::Empty | Content::Stream(_) => true,
            Content::Spool { dirty, .. } => *dirty,
        }
    }

    /// The content's size as known locally (None: ask the server's listing).
    pub fn local_size(&self) -> Option<u64> {
        match self {
            Content::Remote | Content::Failed(_) => None,
            Content::Empty => Some(0),
            Content::Stream(u) => Some(u.pos),
            Content::Spool { size, .. } => Some(*size),
        }
    }

    /// Whether this is a streaming upload (for tests and logs).
    pub fn is_streaming(&self) -> bool {
        matches!(self, Content::Stream(_))
    }

    /// Whether this is a spool (for tests and logs).
    pub fn is_spool(&self) -> bool {
        matches!(self, Content::Spool { .. })
    }

    /// Writes `data` at `offset` (at the end when `append`). `server_size` is the size the
    /// server's file has as far as we know, used to decide whether streaming is possible.
    /// Returns the offset actually written at.
    /// Appends to a running stream without blocking, when the write continues it and the
    /// queue has room; gives the data back otherwise (the caller then uses `write`).
    pub fn try_stream_write(
        &mut self,
        offset: u64,
        data: Vec<u8>,
        append: bool,
    ) -> Result<(), Vec<u8>> {
        match self {
            Content::Stream(up) if append || offset == up.pos => up.try_send(data),
            _ => Err(data),
        }
    }

    pub fn write(
        &mut self,
        ctx: &Ctx<'_>,
        offset: u64,
        data: &[u8],
        append: bool,
        server_size: u64,
    ) -> RemoteResult<u64> {
        if let Content::Failed(e) = self {
            return Err(e.clone());
        }
        if let Content::Stream(up) = self
            && (append || offset == up.pos)
        {
            let at = up.pos;
            if up.send(data) {
                return Ok(at);
            }
            // The sender thread stopped: collect its error.
            let mode = up.mode;
            let err = match std::mem::replace(self, Content::Remote) {
                Content::Stream(up) => up.finish().err(),
                _ => None,
            }
            .unwrap_or_else(|| RemoteError::new(RemoteErrorKind::Io, "upload ended early"));
            if let Some(path) = ctx.path {
                remove_partial(ctx, path, mode, &err);
            }
            *self = Content::Failed(err.clone());
            return Err(err);
        }
        let start = match self {
            Content::Empty if offset == 0 || append => Some((WriteMode::Truncate, 0)),
            Content::Remote if append && ctx.remote.capabilities().append => {
                Some((WriteMode::Append, server_size))
            }
            Content::Remote if !append && offset == 0 && server_size == 0 => {
                Some((WriteMode::Truncate, 0))
            }
            _ => None,
        };
        if let (Some((mode, pos)), Some(path)) = (start, ctx.path) {
            debug!("write {path}: streaming upload ({mode:?}) from {pos}");
            let mut up = Upload::start(ctx.remote, path, mode, pos, ctx.write_buffer)?;
            let at = up.pos;
            up.send(data);
            *self = Content::Stream(up);
            return Ok(at);
        }
        self.ensure_spool(ctx)?;
        let Content::Spool { file, size, dirty } = self else {
            return Err(RemoteError::new(RemoteErrorKind::Io, "no spool"));
        };
        let at = if append { *size } else { offset };
        file.write_all_at(data, at).map_err(io_err)?;
        *size = (*size).max(at + data.len() as u64);
        *dirty = true;
        Ok(at)
    }

    /// Sets the content's length (zero-filling when growing).
    pub fn truncate(&mut self, ctx: &Ctx<'_>, new_size: u64) -> RemoteResult<()> {
        if new_size == 0 {
            // A running upload is superseded by the empty upload due now.
            self.discard();
            *self = Content::Empty;
            return Ok(());
        }
        if let Content::Stream(up) = self
            && new_size >= up.pos
        {
            // Growing a sequential upload (cp of a sparse file ends with ftruncate): the
            // zeros are simply more sequential data.
            let zeros = vec![0u8; COPY_CHUNK];
            while up.pos < new_size {
                let n =
                    usize::try_from(new_size - up.pos).map_or(COPY_CHUNK, |n| n.min(COPY_CHUNK));
                if !up.send(&zeros[..n]) {
                    // The upload failed: report why through the next write or commit.
                    break;
                }
            }
            return Ok(());
        }
        self.ensure_spool(ctx)?;
        if let Content::Spool { file, size, dirty } = self
            && *size != new_size
        {
            file.set_len(new_size).map_err(io_err)?;
            *size = new_size;
            *dirty = true;
        }
        Ok(())
    }

    /// Reads local content; None when the server's file is the content (use a `Reader`).
    pub fn read(
        &mut self,
        ctx: &Ctx<'_>,
        offset: u64,
        len: usize,
    ) -> RemoteResult<Option<Vec<u8>>> {
        match self {
            Content::Remote => return Ok(None),
            Content::Empty => return Ok(Some(Vec::new())),
            Content::Stream(_) => self.ensure_spool(ctx)?,
            Content::Spool { .. } => {}
            Content::Failed(e) => return Err(e.clone()),
        }
        let Content::Spool { file, size, .. } = self else {
            return Err(RemoteError::new(RemoteErrorKind::Io, "no spool"));
        };
        let end = (*size).min(offset.saturating_add(len as u64));
        let mut out = vec![0u8; end.saturating_sub(offset) as usize];
        let mut done = 0;
        while done < out.len() {
            let n = file
                .read_at(&mut out[done..], offset + done as u64)
                .map_err(io_err)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        out.truncate(done);
        Ok(Some(out))
    }

    /// Switches to a spool holding the current content.
    fn ensure_spool(&mut self, ctx: &Ctx<'_>) -> RemoteResult<()> {
        match self {
            Content::Spool { .. } => return Ok(()),
            Content::Empty => {
                let file = tempfile::tempfile().map_err(io_err)?;
                *self = Content::Spool {
                    file,
                    size: 0,
                    dirty: true,
                };
                return Ok(());
            }
            Content::Stream(_) => {
                debug!(
                    "{:?}: non-sequential access, converting upload to spool",
                    ctx.path
                );
                self.commit(ctx)?;
            }
            Content::Failed(e) => return Err(e.clone()),
            Content::Remote => {}
        }
        let path = ctx.path()?;
        let (file, size) = download(ctx, path)?;
        *self = Content::Spool {
            file,
            size,
            dirty: false,
        };
        Ok(())
    }

    /// Uploads pending changes and waits for the server's verdict. Returns the uploaded size
    /// when something was uploaded. With no path (file unlinked) pending data is discarded.
    pub fn commit(&mut self, ctx: &Ctx<'_>) -> RemoteResult<Option<u64>> {
        let result = self.upload(ctx);
        if let Ok(Some(size)) = result {
            (ctx.on_upload)(size);
        }
        result
    }

    fn upload(&mut self, ctx: &Ctx<'_>) -> RemoteResult<Option<u64>> {
        if !self.is_dirty() {
            return Ok(None);
        }
        let Some(path) = ctx.path else {
            debug!("discarding writes to a removed file");
            // Abandoned: nothing waits for the server's verdict on a running upload, and
            // no later write joins it.
            self.discard();
            return Ok(None);
        };
        match std::mem::replace(self, Content::Remote) {
            Content::Remote => Ok(None),
            Content::Empty => match ctx
                .remote
                .open_write(path, WriteMode::Truncate)
                .and_then(|s| s.finish())
            {
                Ok(()) => Ok(Some(0)),
                Err(e) => {
                    *self = Content::Empty;
                    Err(e)
                }
            },
            Content::Stream(up) => {
                let (size, mode) = (up.pos, up.mode);
                match up.finish() {
                    Ok(()) => Ok(Some(size)),
                    Err(e) => {
                        // The streamed bytes are gone; never leave a short file behind.
                        remove_partial(ctx, path, mode, &e);
                        *self = Content::Failed(e.clone());
                        Err(e)
                    }
                }
            }
            // not dirty: commit returned before this match
            failed @ Content::Failed(_) => {
                *self = failed;
                Ok(None)
            }
            Content::Spool { file, size, .. } => match ctx
                .remote
                .open_write(path, WriteMode::Truncate)
                .map_err(|e| (e, false))
                .and_then(|stream| upload_file(stream, &file, size).map_err(|e| (e, true)))
            {
                Ok(()) => {
                    *self = Content::Spool {
                        file,
                        size,
                        dirty: false,
                    };
                    Ok(Some(size))
                }
                Err((e, started)) => {
                    // Refused before a byte went out (e.g. `425 PASV: Address already in
                    // use`, or STOR denied): the server's file is still the previous version,
                    // and deleting it would destroy that. (A server that truncated at STOR
                    // and then lost the data connection keeps what it made of it.)
                    if started {
                        remove_partial(ctx, path, WriteMode::Truncate, &e);
                    }
                    // Keep the content so a later flush/release can try again.
                    *self = Content::Spool {
                        file,
                        size,
                        dirty: true,
                    };
                    Err(e)
                }
            },
        }
    }
}
