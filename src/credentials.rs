//! Login credentials: where the password comes from, and a [`Secret`] type that never prints it.
//!
//! Order (first that applies wins):
//! 1. `-o password_file=FILE` (first line of the file);
//! 2. the `FTPFS_PASSWORD` environment variable;
//! 3. `~/.netrc`: the `machine` entry for the host (with a matching `login` when a user was
//!    given, which also supplies the user when none was given), else its `default` entry;
//! 4. a prompt on the terminal, echo off, when stdin is a terminal and a user is known;
//! 5. anonymous login when no user was given (or the user is `anonymous`/`ftp`);
//! 6. otherwise an error.

use std::fmt;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::config::MountConfig;

/// Environment variable that may hold the password.
pub const PASSWORD_ENV: &str = "FTPFS_PASSWORD";

/// A password: its `Debug` prints `***`, it has no `Display`, and its memory is zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Secret(password.into())
    }

    /// The password itself, for the one place that sends it (the FTP `PASS` command).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        // SAFETY: only zero bytes are written, which keeps the string valid UTF-8.
        unsafe { self.0.as_bytes_mut() }.fill(0);
    }
}

/// Where the password was found (for a debug log line; never the password itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordSource {
    /// `-o password_file=`.
    File,
    /// `FTPFS_PASSWORD`.
    Environment,
    /// `~/.netrc`.
    Netrc,
    /// Typed at the prompt.
    Prompt,
    /// No password: anonymous login.
    Anonymous,
}

/// The resolved login: user (None = anonymous) and password.
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Login name; `None` means anonymous.
    pub user: Option<String>,
    /// Password; `None` for an anonymous login without one.
    pub password: Option<Secret>,
    /// Where the password came from.
    pub source: PasswordSource,
}

/// What the credential lookup may consult besides the configuration (injectable for tests).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The value of `FTPFS_PASSWORD`, if set.
    pub env_password: Option<Secret>,
    /// The netrc file to consult (normally `~/.netrc`), if any.
    pub netrc_path: Option<PathBuf>,
    /// Whether stdin is a terminal we may prompt on.
    pub interactive: bool,
}

/// Overwrites the value of the environment variable `name` in place. remove_var only unlinks
/// it from `environ`: the original bytes stay in the block the kernel shows as
/// /proc/PID/environ for the life of the daemon. Must be called while single-threaded.
fn scrub_env_value(name: &str) {
    let Ok(cname) = std::ffi::CString::new(name) else {
        return;
    };
    // SAFETY: single-threaded (caller's precondition), so nothing changes the environment
    // meanwhile; getenv returns NULL or a NUL-terminated string inside the environment
    // block, writable memory that we overwrite within its length.
    unsafe {
        let value = libc::getenv(cname.as_ptr());
        if !value.is_null() {
            std::ptr::write_bytes(value, 0, libc::strlen(value));
        }
    }
}

impl Inputs {
    /// The real inputs: the environment, `$HOME/.netrc` and whether stdin is a terminal.
    /// Also removes `FTPFS_PASSWORD` from the environment so that no child process (such as
    /// fusermount3) inherits it.
    ///
    /// Must be called while the process has a single thread.
    pub fn from_process() -> Inputs {
        let env_password = std::env::var(PASSWORD_ENV).ok().map(Secret::new);
        if env_password.is_some() {
            scrub_env_value(PASSWORD_ENV);
            // SAFETY: called before any thread is started (documented precondition).
            unsafe { std::env::remove_var(PASSWORD_ENV) };
        }
        let netrc_path = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|h| Path::new(&h).join(".netrc"));
        // SAFETY: isatty has no preconditions.
        let interactive = unsafe { libc::isatty(libc::STDIN_FILENO) } == 1;
        Inputs {
            env_password,
            netrc_path,
            interactive,
        }
    }
}

/// Finds the credentials for `cfg` in the documented order, prompting on the terminal if
/// needed. Errors are one-line messages without the password.
pub fn resolve(cfg: &MountConfig, inputs: Inputs) -> Result<Credentials, String> {
    resolve_with(cfg, inputs, prompt_password)
}

/// [`resolve`] with an injectable prompt (which receives the prompt text).
pub fn resolve_with(
    cfg: &MountConfig,
    inputs: Inputs,
    prompt: impl FnOnce(&str) -> io::Result<Secret>,
) -> Result<Credentials, String> {
    let mut user = cfg.user.clone();
    if let Some(path) = &cfg.password_file {
        let password = read_password_file(path)?;
        return Ok(Credentials {
            user,
            password: Some(password),
            source: PasswordSource::File,
        });
    }
    if let Some(password) = inputs.env_password {
        return Ok(Credentials {
            user,
            password: Some(password),
            source: PasswordSource::Environment,
        });
    }
    let netrc = match &inputs.netrc_path {
        Some(path) => read_netrc(path)?,
        None => None,
    };
    if let Some(entry) = netrc.and_then(|n| n.find(&cfg.host, user.as_deref())) {
        if user.is_none() {
            user = entry.login.clone();
        }
        if let Some(password) = entry.password {
            return Ok(Credentials {
                user,
                password: Some(password),
                source: PasswordSource::Netrc,
            });
        }
    }
    let anonymous = match user.as_deref() {
        None => true,
        Some(u) => u.eq_ignore_ascii_case("anonymous") || u.eq_ignore_ascii_case("ftp"),
    };
    if anonymous {
        return Ok(Credentials {
            user,
            password: None,
            source: PasswordSource::Anonymous,
        });
    }
    let name = user.as_deref().unwrap_or_default();
    if inputs.interactive {
        let text = format!("Password for {name} at {}: ", cfg.address());
        let password = prompt(&text).map_err(|e| format!("cannot read the password: {e}"))?;
        return Ok(Credentials {
            user,
            password: Some(password),
            source: PasswordSource::Prompt,
        });
    }
    Err(format!(
        "no password for user {name} at {}: use -o password_file=FILE, the {PASSWORD_ENV} \
         environment variable or ~/.netrc (or run on a terminal to be asked)",
        cfg.address()
    ))
}

/// Reads the first line of a password file, warning if others may read it.
pub fn read_password_file(path: &Path) -> Result<Secret, String> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| format!("password_file {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("password_file {shown}: not a regular file"));
    }
    warn_if_readable_by_others(path, meta.permissions().mode());
    let bytes = fs::read(path).map_err(|e| format!("password_file {shown}: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("password_file {shown}: not valid UTF-8 text"))?;
    let secret = Secret::new(text);
    let line = secret.expose().lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(format!("password_file {shown}: the first line is empty"));
    }
    if line.contains('\0') {
        return Err(format!("password_file {shown}: contains a NUL byte"));
    }
    Ok(Secret::new(line))
}

fn warn_if_readable_by_others(path: &Path, mode: u32) {
    if mode & 0o044 != 0 {
        eprintln!(
            "ftpfs: warning: {} is readable by group or others (mode {:03o}); \
             run: chmod 600 {}",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
}

/// One `machine` (or `default`) entry of a netrc file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetrcEntry {
    /// The host name; `None` for the `default` entry.
    pub machine: Option<String>,
    /// `login`, if given.
    pub login: Option<String>,
    /// `password`, if given.
    pub password: Option<Secret>,
}

/// A parsed netrc file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Netrc {
    /// Entries in file order.
    pub entries: Vec<NetrcEntry>,
}

impl Netrc {
    /// Parses netrc text: whitespace-separated tokens (across lines), `machine`, `default`,
    /// `login`, `password`, `account`, `macdef` (skipped up to an empty line), `#` comments,
    /// and double-quoted tokens.
    pub fn parse(text: &str) -> Netrc {
        let mut entries: Vec<NetrcEntry> = Vec::new();
        let mut tokens = Tokens::new(text);
        while let Some(tok) = tokens.next_token() {
            match tok.as_str() {
                "machine" => {
                    let name = tokens.next_token();
                    entries.push(NetrcEntry {
                        machine: Some(name.unwrap_or_default()),
                        login: None,
                        password: None,
                    });
                }
                "default" => entries.push(NetrcEntry {
                    machine: None,
                    login: None,
                    password: None,
                }),
                "login" | "user" => {
                    let v = tokens.next_token();
                    if let Some(e) = entries.last_mut() {
                        e.login = v;
                    }
                }
                "password" | "passwd" => {
                    let v = tokens.next_token().map(Secret::new);
                    if let Some(e) = entries.last_mut() {
                        e.password = v;
                    }
                }
                "account" => {
                    tokens.next_token();
                }
                "macdef" => {
                    tokens.next_token();
                    tokens.skip_macro();
                }
                _ => {}
            }
        }
        Netrc { entries }
    }

    /// The entry for `host` (and `login`, when given); falls back to `default`.
    pub fn find(&self, host: &str, login: Option<&str>) -> Option<NetrcEntry> {
        let login_ok = |e: &&NetrcEntry| match (login, e.login.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        self.entries
            .iter()
            .filter(|e| {
                e.machine
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(host))
            })
            .find(login_ok)
            .or_else(|| {
                self.entries
                    .iter()
                    .filter(|e| e.machine.is_none())
                    .find(login_ok)
            })
            .cloned()
    }
}

/// Reads and parses a netrc file; `Ok(None)` if it does not exist.
pub fn read_netrc(path: &Path) -> Result<Option<Netrc>, String> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = Secret::new(String::from_utf8_lossy(&bytes).into_owned());
    let netrc = Netrc::parse(text.expose());
    if netrc.entries.iter().any(|e| e.password.is_some()) {
        warn_if_readable_by_others(path, meta.permissions().mode());
    }
    Ok(Some(netrc))
}

/// A netrc tokenizer.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Tokens<'a> {
    fn new(text: &'a str) -> Self {
        Tokens { rest: text }
    }

    fn next_token(&mut self) -> Option<String> {
        loop {
            self.rest = self.rest.trim_start();
            if self.rest.starts_with('#') {
                // A comment runs to the end of the line.
                self.rest = self.rest.find('\n').map_or("", |i| &self.rest[i..]);
                continue;
            }
            break;
        }
        if self.rest.is_empty() {
            return None;
        }
        if let Some(quoted) = self.rest.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            out.push(n);
                        }
                    }
                    c => out.push(c),
                }
            }
            self.rest = &quoted[end.min(quoted.len())..];
            return Some(out);
        }
        let end = self
            .rest
            .find(char::is_whitespace)
            .unwrap_or(self.rest.len());
        let tok = &self.rest[..end];
        self.rest = &self.rest[end..];
        Some(tok.to_string())
    }

    /// Skips a `macdef` body: up to and including the next empty line.
    fn skip_macro(&mut self) {
        // The body starts on the line after the macro name.
        let after_name = self.rest.find('\n').map_or("", |i| &self.rest[i + 1..]);
        let mut rest = after_name;
        loop {
            match rest.find('\n') {
                Some(i) => {
                    let line = &rest[..i];
                    rest = &rest[i + 1..];
                    if line.trim().is_empty() {
                        break;
                    }
                }
                None => {
                    rest = "";
                    break;
                }
            }
        }
        self.rest = rest;
    }
}

/// Terminal settings to restore if a signal ends the process while echo is off.
static mut SAVED_TERMIOS: std::mem::MaybeUninit<libc::termios> = std::mem::MaybeUninit::uninit();
/// Whether `SAVED_TERMIOS` holds settings to restore.
static TERMIOS_SAVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// The termination signals that may interrupt the prompt.
const PROMPT_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Signal handler during the prompt: turn echo back on, then die of the signal as usual.
extern "C" fn restore_terminal_and_reraise(sig: libc::c_int) {
    if TERMIOS_SAVED.load(std::sync::atomic::Ordering::SeqCst) {
        // SAFETY: tcsetattr, write, signal and raise are async-signal-safe; SAVED_TERMIOS
        // was fully written before TERMIOS_SAVED was set.
        unsafe {
            libc::tcsetattr(
                libc::STDIN_FILENO,
                libc::TCSANOW,
                (&raw const SAVED_TERMIOS).cast::<libc::termios>(),
            );
        }
    }
    // SAFETY: as above.
    unsafe {
        libc::write(libc::STDERR_FILENO, b"\n".as_ptr().cast(), 1);
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// Asks for the password on the terminal (stdin) with echo off; the prompt goes to stderr.
/// Echo is restored even if Ctrl-C (or SIGTERM/SIGHUP) ends the process at the prompt.
pub fn prompt_password(text: &str) -> io::Result<Secret> {
    let mut stderr = io::stderr();
    stderr.write_all(text.as_bytes())?;
    stderr.flush()?;
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut original: libc::termios = unsafe { std::mem::zeroed() };
    let have_termios = unsafe { libc::tcgetattr(fd, &mut original) } == 0;
    let mut previous_handlers = Vec::new();
    if have_termios {
        // SAFETY: single-threaded (credentials are read before any thread starts); the
        // handler only reads SAVED_TERMIOS after TERMIOS_SAVED is set.
        unsafe {
            (&raw mut SAVED_TERMIOS).write(std::mem::MaybeUninit::new(original));
            TERMIOS_SAVED.store(true, std::sync::atomic::Ordering::SeqCst);
            for sig in PROMPT_SIGNALS {
                let handler = restore_terminal_and_reraise as extern "C" fn(libc::c_int);
                previous_handlers.push((sig, libc::signal(sig, handler as libc::sighandler_t)));
            }
        }
        let mut silent = original;
        silent.c_lflag &= !(libc::ECHO | libc::ECHONL);
        silent.c_lflag |= libc::ICANON;
        // SAFETY: fd is stdin, `silent` a valid termios copied from the terminal.
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &silent) };
    }
    let mut line = String::new();
    let result = io::stdin().lock().read_line(&mut line);
    if have_termios {
        // SAFETY: restores the settings read above, then the previous signal handlers.
        unsafe {
            libc::tcsetattr(fd, libc::TCSAFLUSH, &original);
            TERMIOS_SAVED.store(false, std::sync::atomic::Ordering::SeqCst);
            for (sig, handler) in previous_handlers {
                libc::signal(sig, handler);
            }
        }
    }
    let _ = stderr.write_all(b"\n");
    let secret = Secret::new(line);
    result?;
    let password = secret.expose().trim_end_matches(['\n', '\r']);
    if password.is_empty() && secret.expose().is_empty() {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "end of input"));
    }
    Ok(Secret::new(password))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    fn cfg(source: &str, opts: &[&str]) -> MountConfig {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        config::parse(source, Path::new("/mnt"), &opts).expect("config")
    }

    fn no_inputs() -> Inputs {
        Inputs {
            env_password: None,
            netrc_path: None,
            interactive: false,
        }
    }

    fn no_prompt(_: &str) -> io::Result<Secret> {
        panic!("must not prompt")
    }

    fn write_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).expect("write");
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    #[test]
    fn secret_debug_hides() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "***");
        let c = Credentials {
            user: Some("bob".into()),
            password: Some(s.clone()),
            source: PasswordSource::File,
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write_file(dir.path(), "p", "s3cret\nignored\n", 0o600);
        let o = format!("password_file={}", f.display());
        let c = resolve_with(&cfg("ftp://bob@h/", &[&o]), no_inputs(), no_prompt).expect("ok");
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.source, PasswordSource::File);
        let f = write_file(dir.path(), "crlf", "pw\r\n", 0o644);
        assert_eq!(read_password_file(&f).expect("ok").expose(), "pw");
        let f = write_file(dir.path(), "empty", "\n", 0o600);
        assert!(read_password_file(&f).unwrap_err().contains("empty"));
        let e = read_password_file(&dir.path().join("missing")).unwrap_err();
        assert!(e.contains("missing"), "{e}");
        assert!(
            read_password_file(dir.path())
                .unwrap_err()
                .contains("regular")
        );
    }

    #[test]
    fn file_beats_env_beats_netrc() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = write_file(dir.path(), "p", "fromfile", 0o600);
        let n = write_file(
            dir.path(),
            "netrc",
            "machine h login bob password fromnetrc",
            0o600,
        );
        let inputs = Inputs {
            env_password: Some(Secret::new("fromenv")),
            netrc_path: Some(n.clone()),
            interactive: true,
        };
        let o = format!("password_file={}", f.display());
        let c = resolve_with(&cfg("ftp://bob@h/", &[&o]), inputs.clone(), no_prompt).expect("ok");
        assert_eq!(c.password.expect("pw").expose(), "fromfile");
        let c = resolve_with(&cfg("ftp://bob@h/", &[]), inputs.clone(), no_prompt).expect("ok");
        assert_eq!(c.password.expect("pw").expose(), "fromenv");
        assert_eq!(c.source, PasswordSource::Environment);
        let inputs = Inputs {
            env_password: None,
            ..inputs
        };
        let c = resolve_with(&cfg("ftp://bob@h/", &[]), inputs, no_prompt).expect("ok");
        assert_eq!(c.password.expect("pw").expose(), "fromnetrc");
        assert_eq!(c.source, PasswordSource::Netrc);
    }

    #[test]
    fn netrc_supplies_user_when_none_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let n = write_file(
            dir.path(),
            "netrc",
            "machine other login x password y\nmachine H\n  login alice\n  password \"a b\\\"c\"\n",
            0o600,
        );
        let inputs = Inputs {
            netrc_path: Some(n),
            ..no_inputs()
        };
        let c = resolve_with(&cfg("ftp://h/", &[]), inputs, no_prompt).expect("ok");
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.password.expect("pw").expose(), "a b\"c");
    }

    #[test]
    fn netrc_parsing() {
        let text = "# comment\nmachine a login u1 password p1\n\
                    macdef init\ncd /pub\nbin\n\n\
                    machine a login u2 password p2 account acct\n\
                    default login anon password guest\n";
        let n = Netrc::parse(text);
        assert_eq!(n.entries.len(), 3);
        let e = n.find("a", Some("u2")).expect("u2");
        assert_eq!(e.password.expect("pw").expose(), "p2");
        let e = n.find("a", None).expect("first");
        assert_eq!(e.login.as_deref(), Some("u1"));
        let e = n.find("b", None).expect("default");
        assert_eq!((e.machine, e.login.as_deref()), (None, Some("anon")));
        assert!(n.find("a", Some("u3")).is_none());
        assert!(Netrc::parse("").entries.is_empty());
        assert!(Netrc::parse("password x").entries.is_empty());
        // Truncated files do not panic.
        let n = Netrc::parse("machine");
        assert_eq!(n.entries.len(), 1);
        Netrc::parse("machine h password \"unterminated");
        Netrc::parse("macdef");
    }

    #[test]
    fn missing_netrc_is_fine() {
        assert_eq!(read_netrc(Path::new("/nonexistent/.netrc")), Ok(None));
    }

    #[test]
    fn prompt_when_interactive() {
        let inputs = Inputs {
            interactive: true,
            ..no_inputs()
        };
        let mut asked = String::new();
        let c = resolve_with(&cfg("ftp://bob@h:2121/", &[]), inputs, |t| {
            asked = t.to_string();
            Ok(Secret::new("typed"))
        })
        .expect("ok");
        assert_eq!(asked, "Password for bob at h:2121: ");
        assert_eq!(c.password.expect("pw").expose(), "typed");
        assert_eq!(c.source, PasswordSource::Prompt);
    }

    #[test]
    fn anonymous_without_user() {
        let c = resolve_with(&cfg("ftp://h/", &[]), no_inputs(), no_prompt).expect("ok");
        assert_eq!(
            (c.user, c.password, c.source),
            (None, None, PasswordSource::Anonymous)
        );
        let c = resolve_with(&cfg("ftp://anonymous@h/", &[]), no_inputs(), no_prompt);
        assert_eq!(c.expect("ok").source, PasswordSource::Anonymous);
    }

    #[test]
    fn error_when_user_but_no_password() {
        let e = resolve_with(&cfg("ftp://bob@h/", &[]), no_inputs(), no_prompt).unwrap_err();
        assert!(e.contains("bob") && e.contains("password_file"), "{e}");
    }
}
