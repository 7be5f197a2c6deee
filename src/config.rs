//! Mount configuration: every option with its default, parsed from the URL and `-o` list.
//!
//! [`parse`] turns the command line's SOURCE, MOUNTPOINT and raw `-o` strings into a
//! [`MountConfig`]. It is pure (no I/O, no environment) and never panics on any input, so a bad
//! option is reported as a one-line [`ConfigError`] before anything is mounted.
//!
//! SOURCE forms:
//! - `ftp://[user@]host[:port][/path]` (plain or explicit TLS, default port 21)
//! - `ftps://[user@]host[:port][/path]` (implicit TLS, default port 990)
//! - `[user@]host:[path]` (sshfs style, like `ftp://`)
//!
//! The path is the directory on the server that the mount's root shows. As with curl and
//! RFC 1738, a URL path is relative to the login directory: `ftp://h/` is the login directory,
//! `ftp://h/pub` is `pub` under it, `ftp://h//srv/ftp` or `ftp://h/%2Fsrv/ftp` is the absolute
//! `/srv/ftp`. In the sshfs form `h:` is the login directory, `h:pub` relative, `h:/srv` absolute.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::fs::FsOptions;

/// Default number of FTP control connections.
pub const DEFAULT_CONNECTIONS: usize = 8;
/// Largest accepted `connections=` value.
pub const MAX_CONNECTIONS: usize = 64;
/// Default attribute/listing cache lifetime in seconds.
pub const DEFAULT_CACHE_TIMEOUT_SECS: u64 = 5;
/// Default network timeout in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// Largest accepted `timeout=` / `cache_timeout=` value in seconds (one day).
pub const MAX_TIMEOUT_SECS: u64 = 86_400;
/// Default port of `ftp://`.
pub const FTP_PORT: u16 = 21;
/// Default port of `ftps://` (implicit TLS).
pub const FTPS_PORT: u16 = 990;

pub use crate::ftp::TlsMode;

/// Everything the command line says about one mount, each field with its default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountConfig {
    /// SOURCE as given (it never contains a password: those are refused).
    pub source: String,
    /// Where to mount.
    pub mountpoint: PathBuf,
    /// Server host name or IP address (IPv6 without brackets).
    pub host: String,
    /// Server port (`-o port=`, else the URL's, else 21, or 990 for implicit TLS).
    pub port: u16,
    /// Login name (`-o user=` overrides the URL's); `None` = anonymous unless ~/.netrc says.
    pub user: Option<String>,
    /// Server directory shown as the mount root: `""` = login directory, relative to it, or
    /// absolute when it starts with `/`. Never ends with `/` (except the root `/` itself).
    pub base_path: String,
    /// `password_file=`: a file whose first line is the password.
    pub password_file: Option<PathBuf>,
    /// TLS use (`tls=`, or `ftps://`).
    pub tls: TlsMode,
    /// `cafile=`: PEM file of CA certificates to trust instead of the system's.
    pub cafile: Option<PathBuf>,
    /// `tls_insecure`: accept any server certificate (testing only).
    pub tls_insecure: bool,
    /// `tls12`: restrict TLS to version 1.2.
    pub tls12_only: bool,
    /// `active`: active mode (PORT/EPRT) instead of passive (EPSV/PASV).
    pub active: bool,
    /// `connections=N`: control connections in the pool (1..=64, default 8).
    pub connections: usize,
    /// `fetch_ahead=N`: parallel downloads of small files fetched ahead of a program that
    /// reads a directory's files in order (0 = off; default: `connections`).
    pub fetch_ahead: Option<usize>,
    /// `cache_timeout=SECS`: attribute/listing cache lifetime (default 5 s, 0 = off).
    pub cache_timeout: Duration,
    /// `timeout=SECS`: network timeout for connect and replies (default 30 s).
    pub timeout: Duration,
    /// `ro`: mount read-only.
    pub read_only: bool,
    /// `allow_other`: let every user access the mount.
    pub allow_other: bool,
    /// `allow_root`: let root (besides the owner) access the mount.
    pub allow_root: bool,
    /// `default_permissions`: let the kernel check permissions against the shown modes.
    pub default_permissions: bool,
    /// `uid=`: owner shown for every file (default: the mounting user).
    pub uid: Option<u32>,
    /// `gid=`: group shown for every file (default: the mounting user's group).
    pub gid: Option<u32>,
    /// `umask=`: octal mask applied to the shown permission bits (default: the core's).
    pub umask: Option<u32>,
    /// `fsname=`: the name shown in /proc/mounts (default: SOURCE).
    pub fsname: String,
    /// `debug` (or `-d`): debug logging, stay in the foreground.
    pub debug: bool,
    /// `noexec` / `noatime` / `sync` / `dirsync`: kernel mount flags passed through.
    pub flags: KernelFlags,
    /// `memory_backend` (hidden, test only): serve an in-memory tree instead of a server.
    pub memory_backend: bool,
}

/// Generic mount(8) flags that ftpfs passes to the kernel (the rest are accepted and ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelFlags {
    /// Do not allow executing programs from the mount.
    pub noexec: bool,
    /// Do not update access times.
    pub noatime: bool,
    /// Synchronous I/O.
    pub sync: bool,
    /// Synchronous directory changes.
    pub dirsync: bool,
}

/// A bad SOURCE or option: a one-line message naming what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The message, e.g. "option connections=0: must be between 1 and 64".
    pub message: String,
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        ConfigError {
            message: message.into(),
        }
    }

    fn option(name: &str, value: &str, why: impl fmt::Display) -> Self {
        ConfigError::new(format!("option {name}={value}: {why}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Options that mount(8), mount.fuse3 or systemd pass and that ftpfs accepts without effect.
const IGNORED_OPTIONS: &[&str] = &[
    "_netdev",
    "_rnetdev",
    "nofail",
    "noauto",
    "auto",
    "defaults",
    "user",
    "users",
    "nouser",
    "owner",
    "group",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "atime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "lazytime",
    "nolazytime",
    "diratime",
    "nodiratime",
    "async",
    "mand",
    "nomand",
    "loud",
    "silent",
    "iversion",
    "noiversion",
    "nosymfollow",
    "symfollow",
    "blkdev",
];

/// Option prefixes (`name=...` or `x-...`) accepted without effect.
const IGNORED_PREFIXES: &[&str] = &["x-", "comment=", "subtype=", "helper="];

/// Parses SOURCE, MOUNTPOINT and the raw `-o` strings (each a comma-separated list) into a
/// [`MountConfig`]. Later options override earlier ones.
pub fn parse(
    source: &str,
    mountpoint: &Path,
    options: &[String],
) -> Result<MountConfig, ConfigError> {
    let src = parse_source(source)?;
    let mut cfg = MountConfig {
        source: source.to_string(),
        mountpoint: mountpoint.to_path_buf(),
        host: src.host,
        port: src
            .port
            .unwrap_or(if src.implicit { FTPS_PORT } else { FTP_PORT }),
        user: src.user,
        base_path: src.path,
        password_file: None,
        tls: if src.implicit {
            TlsMode::Implicit
        } else {
            TlsMode::Auto
        },
        cafile: None,
        tls_insecure: false,
        tls12_only: false,
        active: false,
        connections: DEFAULT_CONNECTIONS,
        fetch_ahead: None,
        cache_timeout: Duration::from_secs(DEFAULT_CACHE_TIMEOUT_SECS),
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        read_only: false,
        allow_other: false,
        allow_root: false,
        default_permissions: false,
        uid: None,
        gid: None,
        umask: None,
        fsname: sanitize_fsname(source),
        debug: false,
        flags: KernelFlags::default(),
        memory_backend: false,
    };
    let mut tls_option: Option<TlsMode> = None;
    let mut port_option: Option<u16> = None;

    for item in options.iter().flat_map(|o| o.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let (name, value) = match item.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (item, None),
        };
        match (name, value) {
            ("user", Some(v)) => cfg.user = Some(check_text("user", v)?.to_string()),
            ("password", Some(_)) | ("pass", Some(_)) | ("passwd", Some(_)) => {
                return Err(ConfigError::new(format!(
                    "option {name}= is refused: a password on the command line is visible to \
                     every user (ps, /proc); use -o password_file=FILE, the FTPFS_PASSWORD \
                     environment variable or ~/.netrc"
                )));
            }
            ("password_file", Some(v)) => {
                cfg.password_file = Some(PathBuf::from(check_text("password_file", v)?))
            }
            ("tls", Some(v)) => {
                tls_option = Some(match v {
                    "auto" => TlsMode::Auto,
                    "required" | "require" | "yes" | "on" => TlsMode::Required,
                    "off" | "no" | "none" => TlsMode::Off,
                    "implicit" => TlsMode::Implicit,
                    _ => {
                        return Err(ConfigError::option(
                            name,
                            v,
                            "must be auto, required, off or implicit",
                        ));
                    }
                })
            }
            ("cafile", Some(v)) => cfg.cafile = Some(PathBuf::from(check_text("cafile", v)?)),
            ("tls_insecure", None) => cfg.tls_insecure = true,
            ("tls12", None) => cfg.tls12_only = true,
            ("active", None) => cfg.active = true,
            ("passive", None) => cfg.active = false,
            ("port", Some(v)) => port_option = Some(parse_number(name, v, 1, 65535)? as u16),
            ("connections", Some(v)) => {
                cfg.connections = parse_number(name, v, 1, MAX_CONNECTIONS as u64)? as usize
            }
            ("fetch_ahead", Some(v)) => {
                cfg.fetch_ahead = Some(parse_number(name, v, 0, MAX_CONNECTIONS as u64)? as usize)
            }
            ("cache_timeout", Some(v)) => {
                cfg.cache_timeout = Duration::from_secs(parse_number(name, v, 0, MAX_TIMEOUT_SECS)?)
            }
            ("timeout", Some(v)) => {
                cfg.timeout = Duration::from_secs(parse_number(name, v, 1, MAX_TIMEOUT_SECS)?)
            }
            ("ro", None) => cfg.read_only = true,
            ("rw", None) => cfg.read_only = false,
            ("allow_other", None) => cfg.allow_other = true,
            ("allow_root", None) => cfg.allow_root = true,
            ("default_permissions", None) => cfg.default_permissions = true,
            ("uid", Some(v)) => cfg.uid = Some(parse_number(name, v, 0, u32::MAX as u64)? as u32),
            ("gid", Some(v)) => cfg.gid = Some(parse_number(name, v, 0, u32::MAX as u64)? as u32),
            ("umask", Some(v)) => cfg.umask = Some(parse_octal(name, v)?),
            ("fsname", Some(v)) => {
                let v = check_text("fsname", v)?;
                if v.is_empty() {
                    return Err(ConfigError::option(name, v, "must not be empty"));
                }
                cfg.fsname = sanitize_fsname(v);
            }
            ("debug", None) => cfg.debug = true,
            ("memory_backend", None) => cfg.memory_backend = true,
            ("noexec", None) => cfg.flags.noexec = true,
            ("exec", None) => cfg.flags.noexec = false,
            ("noatime", None) => cfg.flags.noatime = true,
            ("atime", None) | ("relatime", None) | ("strictatime", None) => {
                cfg.flags.noatime = false
            }
            ("sync", None) => cfg.flags.sync = true,
            ("async", None) => cfg.flags.sync = false,
            ("dirsync", None) => cfg.flags.dirsync = true,
            (n, None) if IGNORED_OPTIONS.contains(&n) => {}
            _ if IGNORED_PREFIXES.iter().any(|p| item.starts_with(p)) => {}
            (n, None) if KNOWN_WITH_VALUE.contains(&n) => {
                return Err(ConfigError::new(format!(
                    "option {n} needs a value ({n}=...)"
                )));
            }
            (n, Some(_)) if KNOWN_FLAGS.contains(&n) || IGNORED_OPTIONS.contains(&n) => {
                return Err(ConfigError::new(format!("option {n} takes no value")));
            }
            _ => {
                return Err(ConfigError::new(format!(
                    "unknown option '{}' (see ftpfs --help)",
                    printable(name)
                )));
            }
        }
    }

    if let Some(mode) = tls_option {
        cfg.tls = match (src.implicit, mode) {
            (true, TlsMode::Off | TlsMode::Auto) => {
                return Err(ConfigError::new(format!(
                    "option tls={}: conflicts with ftps:// (implicit TLS); use ftp:// for \
                     plain or explicit TLS",
                    if mode == TlsMode::Off { "off" } else { "auto" }
                )));
            }
            (true, _) => TlsMode::Implicit,
            (false, m) => m,
        };
        if cfg.tls == TlsMode::Implicit && src.port.is_none() {
            cfg.port = FTPS_PORT;
        }
    }
    if let Some(port) = port_option {
        cfg.port = port;
    }
    if cfg.tls == TlsMode::Off && (cfg.cafile.is_some() || cfg.tls_insecure || cfg.tls12_only) {
        return Err(ConfigError::new(
            "options cafile, tls_insecure and tls12 need TLS, but tls=off",
        ));
    }
    if cfg.allow_other && cfg.allow_root {
        return Err(ConfigError::new(
            "options allow_other and allow_root are mutually exclusive",
        ));
    }
    Ok(cfg)
}

/// Options that require a value, for a helpful error when the value is missing.
const KNOWN_WITH_VALUE: &[&str] = &[
    "user",
    "port",
    "password_file",
    "tls",
    "cafile",
    "connections",
    "fetch_ahead",
    "cache_timeout",
    "timeout",
    "uid",
    "gid",
    "umask",
    "fsname",
];

/// Options that take no value, for a helpful error when one is given.
const KNOWN_FLAGS: &[&str] = &[
    "tls_insecure",
    "tls12",
    "active",
    "passive",
    "ro",
    "rw",
    "allow_other",
    "allow_root",
    "default_permissions",
    "debug",
    "memory_backend",
    "noexec",
    "noatime",
    "dirsync",
    "sync",
];

impl MountConfig {
    /// The options of the filesystem core: cache lifetime, owner, umask, read-only.
    pub fn fs_options(&self) -> FsOptions {
        let mut o = FsOptions::default();
        o.cache_timeout = self.cache_timeout;
        o.negative_timeout = o.negative_timeout.min(self.cache_timeout);
        // SAFETY: getuid/getgid cannot fail and have no preconditions.
        o.uid = self.uid.unwrap_or_else(|| unsafe { libc::getuid() });
        o.gid = self.gid.unwrap_or_else(|| unsafe { libc::getgid() });
        if let Some(umask) = self.umask {
            o.umask = umask;
        }
        o.read_only = self.read_only;
        // By default as many downloads ahead as the pool has connections: readers that
        // catch up take the content instead of a connection of their own.
        o.fetch_ahead = self.fetch_ahead.unwrap_or(self.connections);
        o
    }

    /// `host:port` for messages and connecting, with brackets around an IPv6 address.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The login name that will be used: the configured user or "anonymous".
    pub fn login_name(&self) -> &str {
        self.user.as_deref().unwrap_or("anonymous")
    }
}

/// SOURCE split into its parts.
#[derive(Debug)]
struct Source {
    implicit: bool,
    user: Option<String>,
    host: String,
    port: Option<u16>,
    path: String,
}

fn parse_source(source: &str) -> Result<Source, ConfigError> {
    if source.is_empty() {
        return Err(ConfigError::new("SOURCE is empty"));
    }
    if source.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(ConfigError::new(
            "SOURCE contains spaces or control characters (percent-encode them: %20)",
        ));
    }
    if let Some((scheme, rest)) = source.split_once("://") {
        let implicit = match scheme.to_ascii_lowercase().as_str() {
            "ftp" => false,
            "ftps" => true,
            _ => {
                return Err(ConfigError::new(format!(
                    "SOURCE: unsupported scheme '{}://' (use ftp:// or ftps://)",
                    printable(scheme)
                )));
            }
        };
        parse_url(implicit, rest)
    } else {
        parse_sshfs(source)
    }
}

fn password_refused() -> ConfigError {
    ConfigError::new(
        "SOURCE contains a password (user:password@): refused, because the command line is \
         visible to every user (ps, /proc/mounts); put the password in a file and use \
         -o password_file=FILE, or set FTPFS_PASSWORD, or use ~/.netrc",
    )
}

/// `[user@]host[:port][/path]` after `ftp://`.
fn parse_url(implicit: bool, rest: &str) -> Result<Source, ConfigError> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (user, hostport) = match authority.rfind('@') {
        Some(i) => {
            let userinfo = &authority[..i];
            if userinfo.contains(':') {
                return Err(password_refused());
            }
            (Some(decode_user(userinfo)?), &authority[i + 1..])
        }
        None => (None, authority),
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(Source {
        implicit,
        user,
        host,
        port,
        path: normalize_path(&percent_decode("path", path)?)?,
    })
}

/// `[user@]host:[path]` (sshfs style).
fn parse_sshfs(source: &str) -> Result<Source, ConfigError> {
    // Try each '@' from the left as the user/host separator; the first whose right side
    // is a valid `host:path` wins (users may contain '@', paths too).
    let mut candidates: Vec<(Option<&str>, &str)> = source
        .match_indices('@')
        .map(|(i, _)| (Some(&source[..i]), &source[i + 1..]))
        .collect();
    candidates.push((None, source));
    let mut first_err = None;
    for (user, rest) in candidates {
        if user.is_some_and(|u| u.contains('/')) {
            continue;
        }
        match split_sshfs_host(rest) {
            Ok((host, path)) => {
                if user.is_some_and(|u| u.contains(':')) {
                    return Err(password_refused());
                }
                let user = match user {
                    Some(u) => Some(decode_user(u)?),
                    None => None,
                };
                return Ok(Source {
                    implicit: false,
                    user,
                    host,
                    port: None,
                    path: normalize_path(path)?,
                });
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| ConfigError::new("SOURCE: cannot parse")))
}

/// `host:path` or `[v6]:path` in the sshfs form.
fn split_sshfs_host(s: &str) -> Result<(String, &str), ConfigError> {
    let usage = || {
        ConfigError::new(format!(
            "SOURCE '{}': expected ftp://[user@]host[:port][/path], ftps://... or \
             [user@]host:[path]",
            printable(s)
        ))
    };
    if let Some(inner) = s.strip_prefix('[') {
        let end = inner.find(']').ok_or_else(usage)?;
        let host = &inner[..end];
        let path = inner[end + 1..].strip_prefix(':').ok_or_else(usage)?;
        check_ipv6(host)?;
        return Ok((host.to_string(), path));
    }
    let (host, path) = s.split_once(':').ok_or_else(usage)?;
    check_host(host)?;
    Ok((host.to_string(), path))
}

/// `host[:port]` or `[v6][:port]` in a URL.
fn split_host_port(s: &str) -> Result<(String, Option<u16>), ConfigError> {
    let (host, port) = if let Some(inner) = s.strip_prefix('[') {
        let end = inner
            .find(']')
            .ok_or_else(|| ConfigError::new("SOURCE: '[' without ']' around the IPv6 address"))?;
        let host = &inner[..end];
        check_ipv6(host)?;
        let after = &inner[end + 1..];
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                ConfigError::new("SOURCE: expected ':port' after the IPv6 address")
            })?),
        };
        (host.to_string(), port)
    } else {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        if port.is_some_and(|p| p.contains(':')) {
            return Err(ConfigError::new(
                "SOURCE: an IPv6 address must be written in brackets: ftp://[::1]:21/",
            ));
        }
        check_host(host)?;
        (host.to_string(), port)
    };
    let port = match port {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(ConfigError::new(format!(
                    "SOURCE: bad port '{}' (1-65535)",
                    printable(p)
                )));
            }
        },
    };
    Ok((host, port))
}

fn check_host(host: &str) -> Result<(), ConfigError> {
    if host.is_empty() {
        return Err(ConfigError::new("SOURCE: the host name is missing"));
    }
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        || (!host.is_ascii() && !host.contains(['/', '@', ':', '[', ']', '%']));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "SOURCE: bad host name '{}'",
            printable(host)
        )))
    }
}

fn check_ipv6(host: &str) -> Result<(), ConfigError> {
    // An address, optionally with a zone ("fe80::1%eth0" or URL-encoded "%25eth0").
    let addr = host.split('%').next().unwrap_or("");
    if addr.parse::<std::net::Ipv6Addr>().is_ok()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'.' | b'%' | b'-' | b'_'))
    {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "SOURCE: bad IPv6 address '[{}]'",
            printable(host)
        )))
    }
}

fn decode_user(raw: &str) -> Result<String, ConfigError> {
    let user = percent_decode("user name", raw)?;
    if user.is_empty() {
        return Err(ConfigError::new("SOURCE: empty user name before '@'"));
    }
    check_text("user", &user)?;
    Ok(user)
}

/// Decodes `%XX` escapes; the result must be UTF-8 without CR, LF or NUL.
fn percent_decode(what: &str, s: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| {
                std::str::from_utf8(h)
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            });
            match hex {
                Some(b) => {
                    out.push(b);
                    i += 3;
                }
                None => {
                    return Err(ConfigError::new(format!(
                        "SOURCE: bad percent-escape in the {what} (use %XX with two hex digits)"
                    )));
                }
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out)
        .map_err(|_| ConfigError::new(format!("SOURCE: the {what} is not valid UTF-8")))?;
    if text.contains(['\r', '\n', '\0']) {
        return Err(ConfigError::new(format!(
            "SOURCE: the {what} contains CR, LF or NUL"
        )));
    }
    Ok(text)
}

/// Removes duplicate and trailing slashes, refuses `..` and control characters.
fn normalize_path(path: &str) -> Result<String, ConfigError> {
    if path.contains(['\r', '\n', '\0']) {
        return Err(ConfigError::new("SOURCE: the path contains CR, LF or NUL"));
    }
    let absolute = path.starts_with('/');
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                return Err(ConfigError::new("SOURCE: '..' is not allowed in the path"));
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    Ok(if absolute {
        format!("/{joined}")
    } else {
        joined
    })
}

/// Rejects CR, LF and NUL in option values (they would end up in FTP commands or mount data).
fn check_text<'a>(name: &str, v: &'a str) -> Result<&'a str, ConfigError> {
    if v.chars().any(|c| c.is_control()) {
        return Err(ConfigError::new(format!(
            "option {name}=: contains control characters"
        )));
    }
    if v.is_empty() && name != "fsname" {
        return Err(ConfigError::new(format!("option {name}=: empty value")));
    }
    Ok(v)
}

fn parse_number(name: &str, v: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::option(
            name,
            &printable(v),
            "not a whole number",
        ));
    }
    match v.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ConfigError::option(
            name,
            &printable(v),
            format!("must be between {min} and {max}"),
        )),
    }
}

fn parse_octal(name: &str, v: &str) -> Result<u32, ConfigError> {
    let digits = v.strip_prefix("0o").unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return Err(ConfigError::option(
            name,
            &printable(v),
            "not an octal number (e.g. 022)",
        ));
    }
    match u32::from_str_radix(digits, 8) {
        Ok(n) if n <= 0o777 => Ok(n),
        _ => Err(ConfigError::option(
            name,
            &printable(v),
            "must be between 000 and 777",
        )),
    }
}

/// The fsname shown in /proc/mounts; commas would split the kernel's mount option string.
fn sanitize_fsname(s: &str) -> String {
    s.chars()
        .map(|c| if c == ',' || c.is_control() { '_' } else { c })
        .collect()
}

/// A value made safe to echo in a one-line error message.
fn printable(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(source: &str, opts: &[&str]) -> Result<MountConfig, ConfigError> {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        parse(source, Path::new("/mnt"), &opts)
    }

    fn ok(source: &str, opts: &[&str]) -> MountConfig {
        match p(source, opts) {
            Ok(c) => c,
            Err(e) => panic!("{source} {opts:?}: {e}"),
        }
    }

    fn err(source: &str, opts: &[&str]) -> String {
        match p(source, opts) {
            Ok(c) => panic!("{source} {opts:?} should fail, got {c:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn defaults() {
        let c = ok("ftp://example.com/", &[]);
        assert_eq!(c.host, "example.com");
        assert_eq!(c.port, 21);
        assert_eq!(c.user, None);
        assert_eq!(c.base_path, "");
        assert_eq!(c.tls, TlsMode::Auto);
        assert_eq!(c.connections, DEFAULT_CONNECTIONS);
        assert_eq!(c.cache_timeout, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert!(!c.read_only && !c.active && !c.tls_insecure && !c.tls12_only);
        assert!(!c.allow_other && !c.allow_root && !c.default_permissions && !c.debug);
        assert_eq!((c.uid, c.gid, c.umask), (None, None, None));
        assert_eq!(c.password_file, None);
        assert_eq!(c.cafile, None);
        assert_eq!(c.fsname, "ftp://example.com/");
        assert_eq!(c.mountpoint, PathBuf::from("/mnt"));
        assert_eq!(c.flags, KernelFlags::default());
        assert!(!c.memory_backend);
        assert_eq!(c.address(), "example.com:21");
        assert_eq!(c.login_name(), "anonymous");
    }

    #[test]
    fn url_forms() {
        let c = ok("ftp://bob@h:2121/pub/x/", &[]);
        assert_eq!(
            (c.user.as_deref(), c.host.as_str(), c.port),
            (Some("bob"), "h", 2121)
        );
        assert_eq!(c.base_path, "pub/x");
        assert_eq!(ok("ftp://h", &[]).base_path, "");
        assert_eq!(ok("ftp://h:/", &[]).port, 21);
        assert_eq!(ok("FTP://h/", &[]).host, "h");
        assert_eq!(ok("ftp://h//srv/ftp", &[]).base_path, "/srv/ftp");
        assert_eq!(ok("ftp://h/%2Fsrv/ftp", &[]).base_path, "/srv/ftp");
        assert_eq!(ok("ftp://h/a//b/./c", &[]).base_path, "a/b/c");
        assert_eq!(ok("ftp://h/my%20dir", &[]).base_path, "my dir");
        assert_eq!(ok("ftp://h/d%C3%A9j%C3%A0", &[]).base_path, "déjà");
        assert_eq!(ok("ftp://127.0.0.1/", &[]).host, "127.0.0.1");
    }

    #[test]
    fn url_user_percent_decoding() {
        let c = ok("ftp://bob%40example.com@h/", &[]);
        assert_eq!(c.user.as_deref(), Some("bob@example.com"));
        // A raw '@' in the user: the last '@' ends the user.
        assert_eq!(
            ok("ftp://bob@corp@h/", &[]).user.as_deref(),
            Some("bob@corp")
        );
        assert!(err("ftp://bob%0D%0AQUIT@h/", &[]).contains("CR, LF or NUL"));
        assert!(err("ftp://bob%zz@h/", &[]).contains("percent-escape"));
        assert!(err("ftp://@h/", &[]).contains("empty user"));
        assert!(err("ftp://h/%ff", &[]).contains("UTF-8"));
    }

    #[test]
    fn ftps_is_implicit() {
        let c = ok("ftps://h/", &[]);
        assert_eq!((c.tls, c.port), (TlsMode::Implicit, 990));
        assert_eq!(ok("ftps://h:4990/", &[]).port, 4990);
        assert_eq!(ok("ftps://h/", &["tls=required"]).tls, TlsMode::Implicit);
        assert!(err("ftps://h/", &["tls=off"]).contains("ftps://"));
        assert!(err("ftps://h/", &["tls=auto"]).contains("ftps://"));
        let c = ok("ftp://h/", &["tls=implicit"]);
        assert_eq!((c.tls, c.port), (TlsMode::Implicit, 990));
        assert_eq!(ok("ftp://h:21/", &["tls=implicit"]).port, 21);
    }

    #[test]
    fn ipv6() {
        let c = ok("ftp://[::1]:2121/x", &[]);
        assert_eq!((c.host.as_str(), c.port), ("::1", 2121));
        assert_eq!(c.address(), "[::1]:2121");
        assert_eq!(ok("ftp://[fe80::1%25eth0]/", &[]).host, "fe80::1%25eth0");
        assert_eq!(ok("ftp://u@[2001:db8::5]/", &[]).port, 21);
        assert!(err("ftp://::1/", &[]).contains("brackets"));
        assert!(err("ftp://[::1/", &[]).contains("]"));
        assert!(err("ftp://[zz]/", &[]).contains("IPv6"));
        assert!(err("ftp://[::1]x/", &[]).contains("port"));
        let c = ok("bob@[::1]:/srv", &[]);
        assert_eq!(
            (c.host.as_str(), c.base_path.as_str(), c.user.as_deref()),
            ("::1", "/srv", Some("bob"))
        );
    }

    #[test]
    fn sshfs_form() {
        let c = ok("bob@host:/srv/ftp/", &[]);
        assert_eq!(c.user.as_deref(), Some("bob"));
        assert_eq!(c.host, "host");
        assert_eq!(c.port, 21);
        assert_eq!(c.base_path, "/srv/ftp");
        assert_eq!(c.tls, TlsMode::Auto);
        let c = ok("host:", &[]);
        assert_eq!((c.user, c.base_path.as_str()), (None, ""));
        assert_eq!(ok("host:pub", &[]).base_path, "pub");
        assert_eq!(ok("mem:", &["memory_backend"]).host, "mem");
        assert_eq!(
            ok("bob@corp@host:/a", &[]).user.as_deref(),
            Some("bob@corp")
        );
        let c = ok("u@h:/a@b:c", &[]);
        assert_eq!(
            (c.user.as_deref(), c.host.as_str(), c.base_path.as_str()),
            (Some("u"), "h", "/a@b:c")
        );
        assert!(err("justahost", &[]).contains("expected"));
        assert!(err(":/path", &[]).contains("host name is missing"));
    }

    #[test]
    fn passwords_refused() {
        for s in [
            "ftp://u:pw@h/",
            "ftp://u:@h/",
            "ftps://u:secret@h:990/",
            "u:pw@h:/x",
        ] {
            let e = err(s, &[]);
            assert!(e.contains("password_file"), "{s}: {e}");
            assert!(!e.contains("pw@") && !e.contains("secret"), "{e}");
        }
        let e = err("ftp://h/", &["password=hunter2"]);
        assert!(e.contains("password_file") && !e.contains("hunter2"), "{e}");
    }

    #[test]
    fn bad_sources() {
        assert!(err("", &[]).contains("empty"));
        assert!(err("sftp://h/", &[]).contains("scheme"));
        assert!(err("http://h/", &[]).contains("scheme"));
        assert!(err("ftp:///x", &[]).contains("host name is missing"));
        assert!(err("ftp://h:0/", &[]).contains("port"));
        assert!(err("ftp://h:65536/", &[]).contains("port"));
        assert!(err("ftp://h:+21/", &[]).contains("port"));
        assert!(err("ftp://h:ab/", &[]).contains("port"));
        assert!(err("ftp://h/../etc", &[]).contains(".."));
        assert!(err("ftp://h/a b", &[]).contains("spaces"));
        assert!(err("ftp://h\r\n/", &[]).contains("control"));
        assert!(err("ftp://h!x/", &[]).contains("host"));
    }

    #[test]
    fn every_option() {
        let c = ok(
            "ftp://h/",
            &[
                "user=alice,password_file=/etc/ftpfs.pass,tls=required,cafile=/ca.pem",
                "tls_insecure,tls12,active,connections=8,fetch_ahead=3,cache_timeout=0,timeout=10",
                "ro,allow_other,default_permissions,uid=1000,gid=100,umask=027",
                "fsname=myftp,debug,noexec,noatime,sync,dirsync",
            ],
        );
        assert_eq!(c.user.as_deref(), Some("alice"));
        assert_eq!(c.password_file, Some(PathBuf::from("/etc/ftpfs.pass")));
        assert_eq!(c.tls, TlsMode::Required);
        assert_eq!(c.cafile, Some(PathBuf::from("/ca.pem")));
        assert!(c.tls_insecure && c.tls12_only && c.active);
        assert_eq!(c.connections, 8);
        assert_eq!(c.fs_options().fetch_ahead, 3);
        assert_eq!(c.cache_timeout, Duration::ZERO);
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert!(c.read_only && c.allow_other && c.default_permissions && c.debug);
        assert_eq!(
            (c.uid, c.gid, c.umask),
            (Some(1000), Some(100), Some(0o027))
        );
        assert_eq!(c.fsname, "myftp");
        assert_eq!(
            c.flags,
            KernelFlags {
                noexec: true,
                noatime: true,
                sync: true,
                dirsync: true
            }
        );
        assert!(ok("ftp://h/", &["allow_root"]).allow_root);
        assert!(ok("ftp://h/", &["memory_backend"]).memory_backend);
        assert_eq!(ok("ftp://h/", &["tls=off"]).tls, TlsMode::Off);
        assert_eq!(ok("ftp://h/", &["tls=auto"]).tls, TlsMode::Auto);
        assert_eq!(ok("ftp://h/", &["umask=0o77"]).umask, Some(0o77));
        assert_eq!(ok("h:/x", &["port=2121"]).port, 2121);
        assert_eq!(ok("ftp://h:21/", &["port=2121"]).port, 2121);
        assert_eq!(ok("ftps://h/", &["port=4990"]).port, 4990);
        assert!(err("h:", &["port=0"]).contains("port=0"));
        assert!(err("h:", &["port=65536"]).contains("port"));
    }

    #[test]
    fn later_options_win() {
        assert!(!ok("ftp://h/", &["ro", "rw"]).read_only);
        assert!(ok("ftp://h/", &["rw,ro"]).read_only);
        assert!(!ok("ftp://h/", &["active,passive"]).active);
        assert_eq!(
            ok("ftp://h/", &["connections=2,connections=3"]).connections,
            3
        );
        assert!(!ok("ftp://h/", &["noexec,exec"]).flags.noexec);
        assert!(!ok("ftp://h/", &["noatime", "relatime"]).flags.noatime);
        assert!(!ok("ftp://h/", &["sync,async"]).flags.sync);
        // -o user= overrides the URL's user.
        assert_eq!(
            ok("ftp://bob@h/", &["user=carol"]).user.as_deref(),
            Some("carol")
        );
    }

    #[test]
    fn option_errors_name_the_option() {
        assert!(err("ftp://h/", &["connections=0"]).contains("connections=0"));
        assert!(err("ftp://h/", &["connections=65"]).contains("between 1 and 64"));
        assert!(err("ftp://h/", &["fetch_ahead=65"]).contains("between 0 and 64"));
        assert_eq!(
            ok("ftp://h/", &["connections=5"]).fs_options().fetch_ahead,
            5
        );
        assert_eq!(
            ok("ftp://h/", &["fetch_ahead=0"]).fs_options().fetch_ahead,
            0
        );
        assert!(err("ftp://h/", &["connections=x"]).contains("connections"));
        assert!(err("ftp://h/", &["connections=-1"]).contains("connections"));
        assert!(err("ftp://h/", &["timeout=0"]).contains("timeout"));
        assert!(err("ftp://h/", &["cache_timeout=abc"]).contains("cache_timeout"));
        assert!(err("ftp://h/", &["cache_timeout=99999999999999999999999"]).contains("between"));
        assert!(err("ftp://h/", &["uid=root"]).contains("uid"));
        assert!(err("ftp://h/", &["gid=4294967296"]).contains("gid"));
        assert!(err("ftp://h/", &["umask=999"]).contains("umask"));
        assert!(err("ftp://h/", &["umask=7777"]).contains("umask"));
        assert!(err("ftp://h/", &["tls=maybe"]).contains("tls=maybe"));
        assert!(err("ftp://h/", &["bogus"]).contains("unknown option 'bogus'"));
        assert!(err("ftp://h/", &["ro,frobnicate=1"]).contains("frobnicate"));
        assert!(err("ftp://h/", &["timeout"]).contains("needs a value"));
        assert!(err("ftp://h/", &["ro=1"]).contains("takes no value"));
        assert!(err("ftp://h/", &["user="]).contains("empty"));
        assert!(err("ftp://h/", &["fsname="]).contains("fsname"));
        assert!(err("ftp://h/", &["allow_other,allow_root"]).contains("exclusive"));
        assert!(err("ftp://h/", &["tls=off,tls12"]).contains("tls=off"));
        // libfuse-only options are unknown here, not silently accepted.
        assert!(err("ftp://h/", &["kernel_cache"]).contains("unknown"));
    }

    #[test]
    fn mount8_options_are_accepted() {
        let c = ok(
            "ftp://h/",
            &[
                "_netdev,nofail,noauto,auto,defaults,user,users,nouser,owner,group",
                "x-systemd.automount,x-systemd.idle-timeout=60,x-systemd.mount-timeout=30s",
                "comment=systemd.automount,dev,nodev,suid,nosuid,exec,atime,relatime",
                "strictatime,lazytime,nodiratime,async,subtype=ftpfs,x-gvfs-show",
            ],
        );
        assert_eq!(c.flags, KernelFlags::default());
        assert!(!c.read_only);
        // Empty items (",,", trailing comma) are ignored.
        assert!(ok("ftp://h/", &["ro,,", ""]).read_only);
    }

    #[test]
    fn fsname_without_commas() {
        assert_eq!(ok("ftp://h/a,b", &[]).fsname, "ftp://h/a_b");
    }

    #[test]
    fn fs_options_mapping() {
        let c = ok("ftp://h/", &["cache_timeout=7,uid=12,gid=34,umask=077,ro"]);
        let o = c.fs_options();
        assert_eq!(o.cache_timeout, Duration::from_secs(7));
        assert_eq!((o.uid, o.gid, o.umask, o.read_only), (12, 34, 0o077, true));
        let o = ok("ftp://h/", &["cache_timeout=0"]).fs_options();
        assert_eq!(o.negative_timeout, Duration::ZERO);
        let o = ok("ftp://h/", &[]).fs_options();
        assert_eq!(o.uid, unsafe { libc::getuid() });
        assert_eq!(o.umask, FsOptions::default().umask);
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parser_never_panics(source in ".{0,64}", opt in ".{0,64}") {
                let _ = parse(&source, Path::new("/m"), &[opt]);
            }

            #[test]
            fn url_shaped_never_panics(
                user in "[a-z%@:0-9\\[\\]]{0,12}",
                host in "[a-z0-9:.\\[\\]%]{0,20}",
                rest in "[/a-z%0-9:@.\\[\\]]{0,20}",
                opt in "[a-z_=0-9,.]{0,40}",
            ) {
                for s in [
                    format!("ftp://{user}@{host}{rest}"),
                    format!("ftps://{host}{rest}"),
                    format!("{user}@{host}:{rest}"),
                ] {
                    let _ = parse(&s, Path::new("/m"), std::slice::from_ref(&opt));
                }
            }
        }
    }
}
