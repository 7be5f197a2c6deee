//! Mounting ftpfs for real in tests: a guard that starts the daemon in the foreground, waits
//! until the kernel shows the mount, and always unmounts and reaps it on drop.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Server, TlsKind};

/// A live mount; unmounted (and the daemon reaped) on drop, also when a test panics.
pub struct Mount {
    pub dir: PathBuf,
    child: Option<Child>,
    _tmp: tempfile::TempDir,
}

/// The ftpfs binary cargo built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_ftpfs")
}

/// Whether `dir` is a mount point right now (per /proc/self/mountinfo).
pub fn is_mounted(dir: &Path) -> bool {
    let wanted = dir.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split(' ').nth(4) == Some(wanted.as_str()))
        })
        .unwrap_or(false)
}

/// The source URL for a server directory.
pub fn source(server: &Server, remote_dir: &str) -> String {
    let scheme = if server.tls == TlsKind::Implicit {
        "ftps"
    } else {
        "ftp"
    };
    format!(
        "{scheme}://{}@{}:{}{}",
        server.user, server.host, server.port, remote_dir
    )
}

/// Default options for a test mount of `server`: its CA, a given TLS mode.
pub fn options(server: &Server, tls: &str, extra: &str) -> String {
    let mut o = String::from("timeout=20");
    if tls != "off" {
        o.push_str(&format!(",cafile={}", server.cafile.display()));
    }
    if server.tls != TlsKind::Implicit && !tls.is_empty() {
        o.push_str(&format!(",tls={tls}"));
    }
    if !extra.is_empty() {
        o.push(',');
        o.push_str(extra);
    }
    o
}

impl Mount {
    /// Mounts `remote_dir` of `server` with `-o opts`, in the foreground; panics with the
    /// daemon's stderr if the mount does not appear within 20 s.
    pub fn new(server: &Server, remote_dir: &str, opts: &str) -> Mount {
        Mount::with_args(server, remote_dir, opts, &["-f"], "warn")
    }

    /// Like [`Mount::new`], with other daemon arguments (e.g. `-d`) and `RUST_LOG` level.
    pub fn with_args(
        server: &Server,
        remote_dir: &str,
        opts: &str,
        args: &[&str],
        rust_log: &str,
    ) -> Mount {
        Mount::spawn(server, remote_dir, opts, args, rust_log, Stdio::piped())
    }

    /// Like [`Mount::new`], logging at `rust_log` level into `log` instead of a pipe (a
    /// debug log of a long test would fill a pipe nobody reads and stall the daemon).
    pub fn logging_to(
        server: &Server,
        remote_dir: &str,
        opts: &str,
        rust_log: &str,
        log: &Path,
    ) -> Mount {
        let file = std::fs::File::create(log).expect("create daemon log");
        Mount::spawn(server, remote_dir, opts, &["-f"], rust_log, file.into())
    }

    fn spawn(
        server: &Server,
        remote_dir: &str,
        opts: &str,
        args: &[&str],
        rust_log: &str,
        stderr: Stdio,
    ) -> Mount {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let child = Command::new(binary())
            .arg(source(server, remote_dir))
            .arg(&dir)
            .args(args)
            .arg("-o")
            .arg(opts)
            .env("FTPFS_PASSWORD", &server.password)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start ftpfs");
        let mut mount = Mount {
            dir,
            child: Some(child),
            _tmp: tmp,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&mount.dir) {
            if let Some(child) = mount.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                {
                    let out = mount.child.take().unwrap().wait_with_output().unwrap();
                    panic!(
                        "ftpfs exited ({status}) before mounting: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "mount of {} did not appear within 20 s",
                server.name
            );
            std::thread::yield_now();
            std::thread::sleep(Duration::from_millis(20));
        }
        mount
    }

    /// The daemon's process id.
    pub fn daemon_pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.join(rel)
    }

    /// Unmounts and waits for the daemon; returns its exit status and stderr.
    pub fn unmount(mut self) -> (std::process::ExitStatus, String) {
        self.release().expect("daemon was running")
    }

    fn release(&mut self) -> Option<(std::process::ExitStatus, String)> {
        let child = self.child.take()?;
        if is_mounted(&self.dir) {
            let _ = Command::new("fusermount3")
                .arg("-u")
                .arg(&self.dir)
                .stderr(Stdio::null())
                .status();
        }
        if is_mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut child = child;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    // SAFETY: signalling our own child process by its PID.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let out = child.wait_with_output().ok()?;
        Some((
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// Runs a shell command line with a time bound; panics with its output on failure.
pub fn sh(cmdline: &str) -> Output {
    let out = Command::new("timeout")
        .args(["120", "sh", "-c", cmdline])
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "`{cmdline}` failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a shell command line with a time bound and returns its output whatever the status.
pub fn sh_status(cmdline: &str) -> Output {
    Command::new("timeout")
        .args(["120", "sh", "-c", cmdline])
        .output()
        .expect("run sh")
}

/// Quotes a path for `sh -c`.
pub fn q(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// `ftpfs` made reachable as /usr/local/bin/ftpfs for mount(8), removed again on drop
/// (left alone if something else is installed there).
pub struct InstalledBinary {
    link: Option<PathBuf>,
}

impl InstalledBinary {
    pub fn new() -> InstalledBinary {
        let link = PathBuf::from("/usr/local/bin/ftpfs");
        if link.symlink_metadata().is_ok() {
            return InstalledBinary { link: None };
        }
        std::os::unix::fs::symlink(binary(), &link).expect("link ftpfs into /usr/local/bin");
        InstalledBinary { link: Some(link) }
    }
}

impl Drop for InstalledBinary {
    fn drop(&mut self) {
        if let Some(link) = &self.link {
            let _ = std::fs::remove_file(link);
        }
    }
}
