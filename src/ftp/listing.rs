//! Directory listings: MLSD/MLST facts (RFC 3659) and LIST output (Unix `ls -l`, DOS/IIS).
//!
//! Every byte parsed here comes from the server, so nothing in this module may panic on any
//! input, and a name that could escape the mount root ("", ".", "..", anything with '/' or
//! NUL) never leaves it. Lines we cannot read are skipped, never an error: one odd line must
//! not hide a whole directory.
//!
//! Choices worth knowing:
//! - All dates are taken as UTC (MLSD mandates it; for LIST we cannot know the server's zone).
//! - LIST entries of type `c`, `b`, `p` and `s` (devices, FIFOs, sockets) are reported as
//!   files of size 0, so the name is visible (and `rm -r` works) but nobody trusts a
//!   device's "size" column (it holds "major, minor").
//! - A LIST directory keeps the size the server printed (usually the inode size, e.g. 4096);
//!   DOS `<DIR>` entries have none, so 0.

// Enforce "no panics on network input" mechanically for the non-test code.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic
    )
)]

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use log::debug;

/// What kind of object a listing entry names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    /// A symbolic link; the target when the server told us.
    Symlink { target: Option<String> },
}

/// One object as a server listing describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The last path component, never empty, never "." or "..", never containing '/'.
    pub name: String,
    pub kind: EntryKind,
    /// Size in bytes (0 when the server did not say).
    pub size: u64,
    /// Last modification time, when known.
    pub mtime: Option<SystemTime>,
    /// Unix permission bits (0o7777 mask) when known.
    pub mode: Option<u32>,
}

/// Which listing command produced the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListingFormat {
    /// RFC 3659 `MLSD`: one "facts name" line per entry.
    Mlsd,
    /// `LIST`: free-form, Unix `ls -l` style or DOS/IIS style.
    List,
}

/// Parses one MLSD line (RFC 3659 facts then a space then the name). Returns None for
/// type=cdir/pdir, ".", "..", unparseable lines, or names containing '/' or NUL.
pub fn parse_mlsd_line(line: &str) -> Option<Entry> {
    mlsd_entry(strip_line_end(line))
}

/// Parses the entry line of an MLST reply (leading space allowed); the name in the reply is a
/// path: return the entry with `name` = its last component ("/" for the root). cdir allowed
/// here (it is a Dir).
pub fn parse_mlst_line(line: &str) -> Option<Entry> {
    let line = strip_line_end(line);
    // The reply's entry line starts with exactly one space (RFC 3659 section 7.2).
    let line = line.strip_prefix(' ').unwrap_or(line);
    let (facts, path) = split_facts(line)?;
    let name = last_component(path)?;
    // "/" is the one name allowed to contain '/': it is how the root answers MLST.
    if name != "/" && !is_valid_name(name) {
        return None;
    }
    entry_from_facts(facts, name, true)
}

/// Parses one LIST line: Unix `ls -l` style or DOS/IIS style, auto-detected per line.
/// `now` resolves year-less dates ("Jan 16 14:35"): that date in now's year, or the previous
/// year if that would be more than a day in the future.
pub fn parse_list_line(line: &str, now: SystemTime) -> Option<Entry> {
    list_entry(strip_line_end(line), now)
}

/// Parses a whole listing (bytes as received, lines split on \n with optional \r, invalid
/// UTF-8 replaced lossily). Unparseable lines are skipped with log::debug!, never an error;
/// ".", "..", empty names and names containing '/' or NUL are dropped (they must never escape
/// the mount root).
pub fn parse_listing(data: &[u8], format: ListingFormat, now: SystemTime) -> Vec<Entry> {
    let mut entries = Vec::new();
    for raw in data.split(|&b| b == b'\n') {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue; // blank lines, including the empty piece after the final "\n"
        }
        let line: Cow<'_, str> = String::from_utf8_lossy(raw);
        let parsed = match format {
            ListingFormat::Mlsd => mlsd_entry(&line),
            ListingFormat::List => list_entry(&line, now),
        };
        match parsed {
            // Checked again here so no parser change can ever let an unsafe name through.
            Some(entry) if is_valid_name(&entry.name) => entries.push(entry),
            Some(entry) => debug!("listing: dropping unsafe name {:?}", entry.name),
            None => debug!("listing: skipping line {line:?}"),
        }
    }
    entries
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// Drops one trailing "\n" and then one "\r": the public line parsers may get raw lines.
fn strip_line_end(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// True for a name that is safe as one path component below the mount root.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Parses a non-empty run of ASCII digits (`str::parse` alone would also accept a '+').
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a number of `min_len..=max_len` ASCII digits; for date and time fields.
fn parse_field(s: &str, min_len: usize, max_len: usize) -> Option<u32> {
    if !(min_len..=max_len).contains(&s.len()) {
        return None;
    }
    parse_digits(s).and_then(|n| u32::try_from(n).ok())
}

/// Parses a byte count; some servers group digits with commas ("1,234").
fn parse_size(s: &str) -> Option<u64> {
    if !s.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        match b {
            b'0'..=b'9' => n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b',' => {}
            _ => return None,
        }
    }
    Some(n)
}

/// `s` without `prefix`, compared ASCII-case-insensitively (fact names and values are).
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (std has none; every date here is UTC)

const SECS_PER_DAY: i64 = 86_400;

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
/// Callers keep `year` within 1..=9999, so nothing here can overflow.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let shifted_month = (i64::from(month) + 9) % 12; // March = 0, so leap days come last
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The year containing the given day since 1970-01-01 (inverse of `days_from_civil`).
fn year_from_days(days: i64) -> i64 {
    let days = days.saturating_add(719_468);
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let year = year_of_era.saturating_add(era.saturating_mul(400));
    // Months 11 and 12 of the shifted year are January and February of the next one.
    if shifted_month >= 10 {
        year.saturating_add(1)
    } else {
        year
    }
}

/// Seconds since the epoch (negative before it), saturating far outside any real date.
fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// The instant `secs` seconds (plus `nanos`) after the epoch, if SystemTime can hold it.
fn from_unix_seconds(secs: i64, nanos: u32) -> Option<SystemTime> {
    let base = match u64::try_from(secs) {
        Ok(after) => UNIX_EPOCH.checked_add(Duration::from_secs(after))?,
        Err(_) => UNIX_EPOCH.checked_sub(Duration::from_secs(secs.unsigned_abs()))?,
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// A calendar date and time of day as read from a listing, not yet validated.
#[derive(Debug, Clone, Copy)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

impl Civil {
    /// The UTC instant, or None for an impossible date (Feb 30, hour 25, year 0...).
    fn to_system_time(self) -> Option<SystemTime> {
        let valid = (1..=9999).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=days_in_month(self.year, self.month)).contains(&self.day)
            && self.hour <= 23
            && self.minute <= 59
            && self.second <= 60
            && self.nanos < 1_000_000_000;
        if !valid {
            return None;
        }
        // A leap second (":60") cannot be represented; the second before is close enough.
        let second = self.second.min(59);
        let secs_of_day = i64::from(self.hour * 3600 + self.minute * 60 + second);
        let days = days_from_civil(self.year, self.month, self.day);
        from_unix_seconds(days * SECS_PER_DAY + secs_of_day, self.nanos)
    }
}

/// Resolves a date printed without a year. `ls` shows the time of day instead of the year for
/// recent files, so the date is in now's year unless that puts it more than a day in the
/// future (the day absorbs clock and time zone skew); then it is last year's.
fn resolve_yearless(month: u32, day: u32, hour: u32, minute: u32, now: SystemTime) -> Option<SystemTime> {
    let now_secs = unix_seconds(now);
    let this_year = year_from_days(now_secs.div_euclid(SECS_PER_DAY));
    let at = |year| {
        Civil { year, month, day, hour, minute, second: 0, nanos: 0 }.to_system_time()
    };
    match at(this_year) {
        Some(t) if unix_seconds(t) <= now_secs.saturating_add(SECS_PER_DAY) => Some(t),
        // Also the path for Feb 29 in a non-leap year: last year's try fails too, so None.
        _ => at(this_year.saturating_sub(1)),
    }
}

// ---------------------------------------------------------------------------------------------
// MLSD / MLST (RFC 3659)

/// The `type` fact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FactType<'a> {
    File,
    Dir,
    /// `cdir` or `pdir`: the listed directory itself or its parent.
    SelfOrParent,
    /// `OS.unix=slink[:target]` or `OS.unix=symlink[:target]`.
    Symlink(Option<&'a str>),
    /// Anything else (`OS.unix=blkdev`, pure-ftpd's `unknown`...): shown as a file.
    Other,
}

/// The facts we use from one entry; the rest (perm, unique, owner...) are ignored.
#[derive(Debug, Default)]
struct Facts<'a> {
    kind: Option<FactType<'a>>,
    size: Option<u64>,
    dir_size: Option<u64>,
    mtime: Option<SystemTime>,
    mode: Option<u32>,
}

/// Parses one MLSD line, already without its line terminator.
fn mlsd_entry(line: &str) -> Option<Entry> {
    let (facts, name) = split_facts(line)?;
    if !is_valid_name(name) {
        return None;
    }
    entry_from_facts(facts, name, false)
}

/// Splits "facts name" into its two parts; the name is kept byte for byte.
///
/// RFC 3659: the facts end with ';', then one space, then the name, which may itself hold
/// spaces, '=' and ';'. A line starting with a space has no facts. When the text before the
/// first space does not end with ';', a symlink target containing a space has most likely cut
/// the facts short (`type=OS.unix=slink:/a b;size=3; name`), so the first "; " is taken as
/// the separator instead; failing that, the first space (servers that omit the final ';').
fn split_facts(line: &str) -> Option<(&str, &str)> {
    if let Some(name) = line.strip_prefix(' ') {
        return Some(("", name));
    }
    let first_space = line.find(' ')?;
    let facts = line.get(..first_space)?;
    let separator = if facts.ends_with(';') {
        first_space
    } else {
        line.find("; ").map_or(first_space, |semicolon| semicolon + 1)
    };
    Some((line.get(..separator)?, line.get(separator + 1..)?))
}

/// Reads "name=value;name=value;" into `Facts`. None if a fact is not of the form name=value
/// (then the line is not an MLSD entry at all, e.g. a LIST line fed to the wrong parser).
fn parse_facts(facts: &str) -> Option<Facts<'_>> {
    let mut out = Facts::default();
    for fact in facts.split(';').filter(|f| !f.is_empty()) {
        let (name, value) = fact.split_once('=')?;
        if name.is_empty() {
            return None;
        }
        // Malformed values of known facts are treated as absent rather than failing the line.
        if name.eq_ignore_ascii_case("type") {
            out.kind = Some(parse_type_fact(value));
        } else if name.eq_ignore_ascii_case("size") {
            out.size = parse_digits(value);
        } else if name.eq_ignore_ascii_case("sizd") {
            out.dir_size = parse_digits(value);
        } else if name.eq_ignore_ascii_case("modify") {
            out.mtime = parse_mlsd_time(value);
        } else if name.eq_ignore_ascii_case("unix.mode") {
            out.mode = parse_octal_mode(value);
        }
    }
    Some(out)
}

/// Interprets the value of the `type` fact (case-insensitive, per RFC 3659).
fn parse_type_fact(value: &str) -> FactType<'_> {
    if value.eq_ignore_ascii_case("file") {
        return FactType::File;
    }
    if value.eq_ignore_ascii_case("dir") {
        return FactType::Dir;
    }
    if value.eq_ignore_ascii_case("cdir") || value.eq_ignore_ascii_case("pdir") {
        return FactType::SelfOrParent;
    }
    // RFC 3659's examples write "OS.unix=slink:/target"; its grammar (and pure-ftpd without a
    // readable target) gives "OS.unix=symlink". proftpd and pure-ftpd send "slink:" even when
    // the target is empty.
    let rest = strip_prefix_ignore_case(value, "OS.unix=slink")
        .or_else(|| strip_prefix_ignore_case(value, "OS.unix=symlink"));
    match rest {
        Some("") => FactType::Symlink(None),
        Some(rest) => match rest.strip_prefix(':') {
            Some(target) => FactType::Symlink(Some(target).filter(|t| !t.is_empty())),
            None => FactType::Other,
        },
        None => FactType::Other,
    }
}

/// Parses `modify`: YYYYMMDDHHMMSS with optional fractional seconds, in UTC.
fn parse_mlsd_time(value: &str) -> Option<SystemTime> {
    let (whole, fraction) = match value.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (value, None),
    };
    if whole.len() != 14 {
        return None;
    }
    let field = |range: std::ops::Range<usize>| {
        whole.get(range.clone()).and_then(|s| parse_field(s, range.len(), range.len()))
    };
    Civil {
        year: i64::from(field(0..4)?),
        month: field(4..6)?,
        day: field(6..8)?,
        hour: field(8..10)?,
        minute: field(10..12)?,
        second: field(12..14)?,
        nanos: match fraction {
            Some(fraction) => parse_fraction(fraction)?,
            None => 0,
        },
    }
    .to_system_time()
}

/// Digits after the decimal point as nanoseconds; digits beyond the ninth are ignored.
fn parse_fraction(digits: &str) -> Option<u32> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nanos = 0;
    let mut scale = 100_000_000;
    for b in digits.bytes().take(9) {
        nanos += u32::from(b - b'0') * scale;
        scale /= 10;
    }
    Some(nanos)
}

/// Parses `unix.mode` ("0644", "644", "0100640"): octal, file type bits masked away.
fn parse_octal_mode(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
        return None;
    }
    let digits = value.trim_start_matches('0');
    if digits.is_empty() {
        return Some(0);
    }
    u32::from_str_radix(digits, 8).ok().map(|mode| mode & 0o7777)
}

/// Builds the entry from a fact list; `mlst` allows cdir/pdir (MLST of a directory).
fn entry_from_facts(facts: &str, name: &str, mlst: bool) -> Option<Entry> {
    let facts = parse_facts(facts)?;
    // RFC 3659 makes every fact optional; an entry without a type can only be shown as a file.
    let kind = match facts.kind.unwrap_or(FactType::File) {
        FactType::File | FactType::Other => EntryKind::File,
        FactType::Dir => EntryKind::Dir,
        FactType::SelfOrParent if mlst => EntryKind::Dir,
        FactType::SelfOrParent => return None,
        FactType::Symlink(target) => EntryKind::Symlink {
            target: target.map(str::to_owned),
        },
    };
    Some(Entry {
        name: name.to_owned(),
        kind,
        size: facts.size.or(facts.dir_size).unwrap_or(0),
        mtime: facts.mtime,
        mode: facts.mode,
    })
}

/// The last component of an MLST path: "/srv/a/" gives "a", "/" gives "/".
fn last_component(path: &str) -> Option<&str> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { None } else { Some("/") };
    }
    trimmed.rsplit('/').next()
}

// ---------------------------------------------------------------------------------------------
// LIST

/// Parses one LIST line, already without its line terminator.
fn list_entry(line: &str, now: SystemTime) -> Option<Entry> {
    // A DOS/IIS line starts with its date; a Unix one with its mode letter.
    let first = line.trim_start_matches([' ', '\t']).bytes().next()?;
    if first.is_ascii_digit() {
        parse_dos_line(line)
    } else {
        parse_unix_line(line, now)
    }
}

/// Whitespace-separated fields of a line with their byte offsets, so the name can be cut
/// from the original text with its inner runs of spaces intact. Copying it is a cheap
/// look-ahead.
#[derive(Debug, Clone, Copy)]
struct Fields<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(text: &'a str) -> Self {
        Fields { text, pos: 0 }
    }
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

impl<'a> Iterator for Fields<'a> {
    /// (byte offset of the field in the line, the field)
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let bytes = self.text.as_bytes();
        let mut start = self.pos;
        while bytes.get(start).copied().is_some_and(is_blank) {
            start += 1;
        }
        let mut end = start;
        while bytes.get(end).is_some_and(|&b| !is_blank(b)) {
            end += 1;
        }
        self.pos = end;
        // Blanks are ASCII, so both offsets fall on char boundaries.
        let field = self.text.get(start..end).filter(|f| !f.is_empty())?;
        Some((start, field))
    }
}

// ----- Unix `ls -l`

/// The date columns of an `ls -l` line and what surrounds them.
#[derive(Debug)]
struct UnixDate {
    /// The size column (the field just before the date).
    size: u64,
    /// Byte offset where the name starts.
    name_start: usize,
    mtime: Option<SystemTime>,
}

/// Parses `drwxr-xr-x 2 owner group 4096 Jan 16 14:35 name` and its variants.
fn parse_unix_line(line: &str, now: SystemTime) -> Option<Entry> {
    let mut fields = Fields::new(line);
    let (_, mode_field) = fields.next()?;
    let (type_letter, mode) = parse_mode_field(mode_field)?;
    let date = find_unix_date(fields, now)?;
    let raw_name = line.get(date.name_start..)?;
    let (name, kind, size) = match type_letter {
        b'd' => (raw_name, EntryKind::Dir, date.size),
        // Only a link's name is split: a regular file may well be called "a -> b".
        b'l' => match raw_name.split_once(" -> ") {
            Some((name, target)) => {
                let target = Some(target.to_owned()).filter(|t| !t.is_empty());
                (name, EntryKind::Symlink { target }, date.size)
            }
            None => (raw_name, EntryKind::Symlink { target: None }, date.size),
        },
        b'-' => (raw_name, EntryKind::File, date.size),
        // Devices, FIFOs, sockets: see the module comment.
        _ => (raw_name, EntryKind::File, 0),
    };
    if !is_valid_name(name) {
        return None;
    }
    Some(Entry {
        name: name.to_owned(),
        kind,
        size,
        mtime: date.mtime,
        mode: Some(mode),
    })
}

/// Decodes a mode column such as `drwxr-sr-t` (optionally followed by '+' for an ACL, '.' for
/// an SELinux context or '@' for macOS extended attributes) into its type letter and the
/// permission bits, setuid/setgid/sticky included.
fn parse_mode_field(field: &str) -> Option<(u8, u32)> {
    let bytes = match field.as_bytes() {
        [head @ .., b'+' | b'.' | b'@'] if head.len() == 10 => head,
        bytes => bytes,
    };
    let &[kind, ur, uw, ux, gr, gw, gx, or, ow, ox] = bytes else {
        return None;
    };
    if !b"-dlcbps".contains(&kind) {
        return None;
    }
    let mode = permission_bit(ur, b'r', 0o400)?
        | permission_bit(uw, b'w', 0o200)?
        | exec_bits(ux, b's', 0o100, 0o4000)?
        | permission_bit(gr, b'r', 0o040)?
        | permission_bit(gw, b'w', 0o020)?
        | exec_bits(gx, b's', 0o010, 0o2000)?
        | permission_bit(or, b'r', 0o004)?
        | permission_bit(ow, b'w', 0o002)?
        | exec_bits(ox, b't', 0o001, 0o1000)?;
    Some((kind, mode))
}

/// One of the r/w positions: the letter sets `bit`, '-' sets nothing, anything else is not a
/// mode string.
fn permission_bit(c: u8, letter: u8, bit: u32) -> Option<u32> {
    match c {
        b'-' => Some(0),
        c if c == letter => Some(bit),
        _ => None,
    }
}

/// An execute position: 'x', or the special letter (s/t) meaning execute plus the special
/// bit, or its capital meaning the special bit alone.
fn exec_bits(c: u8, special: u8, exec: u32, special_bit: u32) -> Option<u32> {
    match c {
        b'-' => Some(0),
        b'x' => Some(exec),
        c if c == special => Some(exec | special_bit),
        c if c == special.to_ascii_uppercase() => Some(special_bit),
        _ => None,
    }
}

/// Finds the date columns after the mode: the first (month, day, time-or-year) run whose
/// preceding field is a number (the size).
///
/// Searching for the date rather than counting columns copes with servers that omit the
/// group (`-rw-r--r-- 1 owner 1234 Jan 1 2020 x`), with device entries whose size column is
/// "major, minor", and with owners containing odd text. The search starts at the fourth field
/// (link count, owner and size come first), so an owner or group that looks like a date
/// cannot win; only if that fails is the third field tried, for servers without a link count
/// (NetPresenz: `drwxrwxr-x  folder  2 May 10  1996 name`).
fn find_unix_date(fields: Fields<'_>, now: SystemTime) -> Option<UnixDate> {
    find_date_in(fields, 3, usize::MAX, now).or_else(|| find_date_in(fields, 2, 2, now))
}

/// `find_unix_date` restricted to dates starting at field index `first..=last` (0 = the
/// field after the mode).
fn find_date_in(mut fields: Fields<'_>, first: usize, last: usize, now: SystemTime) -> Option<UnixDate> {
    let mut previous: Option<&str> = None;
    for index in 0..=last {
        if index >= first {
            let size = previous.and_then(parse_size);
            if let Some((name_start, mtime)) = size.and_then(|_| match_unix_date(fields, now)) {
                return Some(UnixDate {
                    size: size.unwrap_or(0),
                    name_start,
                    mtime,
                });
            }
        }
        let (_, field) = fields.next()?;
        previous = Some(field);
    }
    None
}

/// Tries to read a date from the next fields. On success returns where the name starts (after
/// exactly one blank, so leading spaces of a name survive) and the time, which is None when
/// the date has the right shape but is impossible (Feb 30).
///
/// Shapes: `Jan 16 14:35`, `Jan 16  2020`, `1 16 14:35` (numeric month, some localized
/// servers), `2020-01-16 14:35` (GNU long-iso), `01-16 14:35` / `01-16 2020` (GNU iso).
fn match_unix_date(mut fields: Fields<'_>, now: SystemTime) -> Option<(usize, Option<SystemTime>)> {
    let (_, first) = fields.next()?;
    let (month, day, year) = if let Some(month) = parse_month(first) {
        let (_, day) = fields.next()?;
        (month, parse_field(day, 1, 2).filter(|d| (1..=31).contains(d))?, None)
    } else {
        parse_iso_date(first)?
    };
    let (last_start, last) = fields.next()?;
    let mtime = match (year, parse_clock(last)) {
        (Some(year), Some((hour, minute, second))) => {
            Civil { year, month, day, hour, minute, second, nanos: 0 }.to_system_time()
        }
        (None, Some((hour, minute, _))) => resolve_yearless(month, day, hour, minute, now),
        (None, None) => {
            let year = parse_field(last, 4, 4)?;
            Civil { year: i64::from(year), month, day, hour: 0, minute: 0, second: 0, nanos: 0 }
                .to_system_time()
        }
        (Some(_), None) => return None,
    };
    let date_end = last_start + last.len();
    let after = fields.text.as_bytes().get(date_end).copied();
    let name_start = if after.is_some_and(is_blank) { date_end + 1 } else { return None };
    Some((name_start, mtime))
}

/// A month column: an English abbreviation or full name in any case, or 1..=12.
fn parse_month(s: &str) -> Option<u32> {
    const NAMES: [&str; 12] = [
        "january", "february", "march", "april", "may", "june", "july", "august", "september",
        "october", "november", "december",
    ];
    if let Some(n) = parse_field(s, 1, 2) {
        return (1..=12).contains(&n).then_some(n);
    }
    let position = NAMES.iter().position(|name| {
        let short = name.get(..3).unwrap_or(name);
        s.eq_ignore_ascii_case(short) || s.eq_ignore_ascii_case(name)
    });
    let position = position.or_else(|| s.eq_ignore_ascii_case("sept").then_some(8))?;
    u32::try_from(position + 1).ok()
}

/// `YYYY-MM-DD` (year given) or `MM-DD` (year to be resolved), as GNU ls prints them with
/// --time-style=long-iso / iso. Returns (month, day, year).
fn parse_iso_date(s: &str) -> Option<(u32, u32, Option<i64>)> {
    let mut parts = s.split('-');
    let a = parts.next()?;
    let b = parts.next()?;
    let (year, month, day) = match parts.next() {
        Some(c) => (Some(i64::from(parse_field(a, 4, 4)?)), b, c),
        None => (None, a, b),
    };
    if parts.next().is_some() {
        return None;
    }
    let month = parse_field(month, 2, 2).filter(|m| (1..=12).contains(m))?;
    let day = parse_field(day, 2, 2).filter(|d| (1..=31).contains(d))?;
    Some((month, day, year))
}

/// `H:MM`, `HH:MM` or `HH:MM:SS` on a 24-hour clock.
fn parse_clock(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.split(':');
    let hour = parse_field(parts.next()?, 1, 2)?;
    let minute = parse_field(parts.next()?, 2, 2)?;
    let second = match parts.next() {
        Some(p) => parse_field(p, 2, 2)?,
        None => 0,
    };
    let valid = parts.next().is_none() && hour <= 23 && minute <= 59 && second <= 60;
    valid.then_some((hour, minute, second))
}

// ----- DOS / IIS

/// Parses `01-16-20  02:35PM       <DIR>          name` and its variants: 2-, 3- (OS/2 Y2K
/// bug) or 4-digit years, ISO `2002-09-02`, 12- or 24-hour clocks, sizes with commas.
fn parse_dos_line(line: &str) -> Option<Entry> {
    let mut fields = Fields::new(line);
    let (_, date) = fields.next()?;
    let (year, month, day) = parse_dos_date(date)?;
    let (_, clock) = fields.next()?;
    let (hour, minute, attached) = split_dos_clock(clock)?;
    // The AM/PM marker is usually glued to the time ("02:35PM") but may stand alone.
    let mut after_clock = fields;
    let (meridiem, mut fields) = match after_clock.next() {
        Some((_, word)) if attached.is_empty() && is_meridiem(word) => (word, after_clock),
        _ => (attached, fields),
    };
    let hour = apply_meridiem(hour, meridiem)?;
    let (_, size_field) = fields.next()?;
    let (kind, size) = if size_field.eq_ignore_ascii_case("<DIR>") {
        (EntryKind::Dir, 0)
    } else {
        (EntryKind::File, parse_size(size_field)?)
    };
    // The name is padded into its column, so it starts at the next non-blank.
    let (name_start, _) = fields.next()?;
    let name = line.get(name_start..)?;
    if !is_valid_name(name) {
        return None;
    }
    Some(Entry {
        name: name.to_owned(),
        kind,
        size,
        mtime: Civil { year, month, day, hour, minute, second: 0, nanos: 0 }.to_system_time(),
        mode: None,
    })
}

/// `MM-DD-YY`, `MM-DD-YYYY`, `MM-DD-1YY` or `YYYY-MM-DD` ('-' or '/'), as (year, month, day).
/// A first number above 12 with a second one that fits a month is read as DD-MM.
fn parse_dos_date(s: &str) -> Option<(i64, u32, u32)> {
    let separator = if s.contains('-') { '-' } else { '/' };
    let mut parts = s.split(separator);
    let (a, b, c) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (year, mut month, mut day) = if a.len() == 4 {
        (i64::from(parse_field(a, 4, 4)?), parse_field(b, 1, 2)?, parse_field(c, 1, 2)?)
    } else {
        let year = parse_field(c, 2, 4)?;
        let year = match c.len() {
            // Two-digit years: 70-99 are 19xx, the rest 20xx.
            2 if year >= 70 => 1900 + year,
            2 => 2000 + year,
            // Some servers (OS/2) print years since 1900: "103" is 2003.
            3 => 1900 + year,
            _ => year,
        };
        (i64::from(year), parse_field(a, 1, 2)?, parse_field(b, 1, 2)?)
    };
    if month > 12 && day <= 12 {
        std::mem::swap(&mut month, &mut day);
    }
    let valid = (1..=12).contains(&month) && (1..=31).contains(&day);
    valid.then_some((year, month, day))
}

/// Splits "02:35PM" into (2, 35, "PM"); the suffix may be empty.
fn split_dos_clock(s: &str) -> Option<(u32, u32, &str)> {
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == ':')).unwrap_or(s.len());
    let (clock, suffix) = s.split_at_checked(split)?;
    let (hour, minute, _) = parse_clock(clock)?;
    Some((hour, minute, suffix))
}

fn is_meridiem(s: &str) -> bool {
    s.eq_ignore_ascii_case("AM") || s.eq_ignore_ascii_case("PM")
}

/// Converts a 12-hour clock hour to 24-hour ("12:05AM" is 00:05, "12:05PM" is 12:05); an
/// empty marker means the hour is already 24-hour.
fn apply_meridiem(hour: u32, meridiem: &str) -> Option<u32> {
    if meridiem.is_empty() {
        return Some(hour);
    }
    if !(1..=12).contains(&hour) {
        return None;
    }
    if meridiem.eq_ignore_ascii_case("AM") {
        Some(hour % 12)
    } else if meridiem.eq_ignore_ascii_case("PM") {
        Some(hour % 12 + 12)
    } else {
        None
    }
}
