//! Fault rules: what to break, where and when, parsed from `--fault` strings.
//!
//! Grammar (fields separated by `:`):
//!
//! ```text
//! RULE    := ACTION ":" SCOPE ":" TRIGGER (":" OPTION)*
//!          | "reply:" CODE ":" TRIGGER (":" OPTION)*     (always on the control connection)
//! ACTION  := "drop"   reset both sides (RST)
//!          | "close"  close both sides gracefully (FIN)
//!          | "stall"  stop forwarding this connection, both directions
//! SCOPE   := "control" | "data" | "any"
//! TRIGGER := "after-bytes=" N     once N bytes (both directions together) went through
//!          | "at-reply=" CODE     before the server's reply CODE reaches the client
//!          | "on-command=" VERB   before the client's command VERB reaches the server
//! OPTION  := "times=" N           fire at most N times in all (default: every time)
//!          | "skip=" N            let the first N occasions pass
//!          | "for-ms=" N          stall only: resume after N ms (default: forever)
//! ```
//!
//! `at-reply` and `on-command` need the control connection (scope `control` or `any`).
//! `reply:CODE:on-command=VERB` answers VERB itself with CODE without sending it to the
//! server (so client and server stay in step); `reply:CODE:at-reply=C` replaces the
//! server's reply C with CODE.
//!
//! New kinds of fault are a new variant of [`FaultAction`] or [`Trigger`] plus a parser arm;
//! the relay and the FTP filters only ask "does a rule fire here?".

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a fault does to the connection it hits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultAction {
    /// Reset both sides of the connection (RST), like a crashed middlebox.
    Drop,
    /// Close both sides gracefully (FIN), like a server that exits.
    Close,
    /// Stop forwarding in both directions without closing; `None` = forever.
    Stall {
        /// Resume after this many milliseconds.
        for_ms: Option<u64>,
    },
    /// Send this reply code to the client instead of the server's reply.
    Reply(u16),
}

/// Which connections a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Control connections only.
    Control,
    /// Data connections only.
    Data,
    /// Both.
    Any,
}

impl Scope {
    /// Does this scope include a connection of this kind?
    pub fn covers(self, is_control: bool) -> bool {
        match self {
            Scope::Any => true,
            Scope::Control => is_control,
            Scope::Data => !is_control,
        }
    }
}

/// When a rule fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Once this many bytes (both directions together) went through the connection.
    AfterBytes(u64),
    /// Before a server reply with this code is forwarded.
    AtReply(u16),
    /// Before a client command with this verb (upper case) is forwarded.
    OnCommand(String),
}

/// One parsed `--fault` rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultRule {
    /// What to do.
    pub action: FaultAction,
    /// Which connections.
    pub scope: Scope,
    /// When.
    pub trigger: Trigger,
    /// Fire at most this many times in all.
    pub times: Option<u64>,
    /// Let this many occasions pass before firing.
    pub skip: u64,
}

/// Why a rule string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad fault rule: {}", self.0)
    }
}

impl std::error::Error for RuleError {}

fn err<T>(msg: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(msg.into()))
}

fn parse_num(what: &str, v: &str) -> Result<u64, RuleError> {
    v.parse()
        .map_err(|_| RuleError(format!("{what} wants a number, got `{v}`")))
}

fn parse_code(v: &str) -> Result<u16, RuleError> {
    match v.parse::<u16>() {
        Ok(c) if (100..=599).contains(&c) && v.len() == 3 => Ok(c),
        _ => err(format!("`{v}` is not a reply code (100-599)")),
    }
}

impl FromStr for FaultRule {
    type Err = RuleError;

    fn from_str(s: &str) -> Result<Self, RuleError> {
        let fields: Vec<&str> = s.trim().split(':').collect();
        if fields.len() < 3 {
            return err(format!("`{s}`: want ACTION:SCOPE:TRIGGER[:OPTION]..."));
        }
        let (mut action, scope) = match fields[0] {
            "drop" => (FaultAction::Drop, fields[1]),
            "close" => (FaultAction::Close, fields[1]),
            "stall" => (FaultAction::Stall { for_ms: None }, fields[1]),
            "reply" => (FaultAction::Reply(parse_code(fields[1])?), "control"),
            other => {
                return err(format!(
                    "unknown action `{other}` (drop, close, stall, reply)"
                ));
            }
        };
        let scope = match scope {
            "control" => Scope::Control,
            "data" => Scope::Data,
            "any" => Scope::Any,
            other => return err(format!("unknown scope `{other}` (control, data, any)")),
        };
        let trigger = match fields[2].split_once('=') {
            Some(("after-bytes", v)) => Trigger::AfterBytes(parse_num("after-bytes", v)?),
            Some(("at-reply", v)) => Trigger::AtReply(parse_code(v)?),
            Some(("on-command", v))
                if !v.is_empty() && v.chars().all(|c| c.is_ascii_alphabetic()) =>
            {
                Trigger::OnCommand(v.to_ascii_uppercase())
            }
            _ => {
                return err(format!(
                    "unknown trigger `{}` (after-bytes=N, at-reply=CODE, on-command=VERB)",
                    fields[2]
                ));
            }
        };
        let mut rule = FaultRule {
            action: FaultAction::Drop,
            scope,
            trigger,
            times: None,
            skip: 0,
        };
        for opt in &fields[3..] {
            match opt.split_once('=') {
                Some(("times", v)) => rule.times = Some(parse_num("times", v)?),
                Some(("skip", v)) => rule.skip = parse_num("skip", v)?,
                Some(("for-ms", v)) => match &mut action {
                    FaultAction::Stall { for_ms } => *for_ms = Some(parse_num("for-ms", v)?),
                    _ => return err("for-ms only goes with stall"),
                },
                _ => {
                    return err(format!(
                        "unknown option `{opt}` (times=N, skip=N, for-ms=N)"
                    ));
                }
            }
        }
        let ftp_level = !matches!(rule.trigger, Trigger::AfterBytes(_));
        if ftp_level && scope == Scope::Data {
            return err("at-reply and on-command need the control connection");
        }
        if matches!(action, FaultAction::Reply(_)) && !ftp_level {
            return err("reply needs at-reply=CODE or on-command=VERB");
        }
        rule.action = action;
        Ok(rule)
    }
}

impl fmt::Display for FaultRule {
    /// The canonical rule string (parses back to the same rule).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Control => "control",
            Scope::Data => "data",
            Scope::Any => "any",
        };
        match self.action {
            FaultAction::Drop => write!(f, "drop:{scope}")?,
            FaultAction::Close => write!(f, "close:{scope}")?,
            FaultAction::Stall { .. } => write!(f, "stall:{scope}")?,
            FaultAction::Reply(code) => write!(f, "reply:{code}")?,
        }
        match &self.trigger {
            Trigger::AfterBytes(n) => write!(f, ":after-bytes={n}")?,
            Trigger::AtReply(c) => write!(f, ":at-reply={c}")?,
            Trigger::OnCommand(v) => write!(f, ":on-command={v}")?,
        }
        if let Some(n) = self.times {
            write!(f, ":times={n}")?;
        }
        if self.skip > 0 {
            write!(f, ":skip={}", self.skip)?;
        }
        if let FaultAction::Stall { for_ms: Some(ms) } = self.action {
            write!(f, ":for-ms={ms}")?;
        }
        Ok(())
    }
}

/// A rule plus its counters, shared by every connection of one proxy.
#[derive(Debug)]
pub struct ArmedRule {
    /// The rule.
    pub rule: FaultRule,
    occasions: AtomicU64,
    fired: AtomicU64,
}

impl ArmedRule {
    /// Arm a rule with fresh counters.
    pub fn new(rule: FaultRule) -> Self {
        ArmedRule {
            rule,
            occasions: AtomicU64::new(0),
            fired: AtomicU64::new(0),
        }
    }

    /// The rule's trigger was reached: should it fire this time (honours skip and times)?
    pub fn try_fire(&self) -> bool {
        if self.occasions.fetch_add(1, Ordering::SeqCst) < self.rule.skip {
            return false;
        }
        match self.rule.times {
            Some(max) => self.fired.fetch_add(1, Ordering::SeqCst) < max,
            None => true,
        }
    }
}

/// xorshift64* pseudo-random numbers: reproducible from a seed, no crate needed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for this seed (any seed works, 0 included).
    pub fn new(seed: u64) -> Self {
        let s = seed ^ 0x9E37_79B9_7F4A_7C15;
        Rng(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi] (hi >= lo).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Where a random drop hits one connection, decided when the connection opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RandomDrop {
    /// Reset once this many bytes went through (data connections).
    AtByte(u64),
    /// Reset before forwarding the n-th server reply (1 = the greeting).
    AtReply(u64),
    /// Reset before forwarding the n-th client command ("between commands").
    AtCommand(u64),
}

/// Decide whether (and where) a new connection is dropped at random, with probability `rate`.
/// Data connections get a byte offset spread over 0..16 MiB on a log scale, so small files,
/// listings and big transfers are all hit; control connections a reply or a command index
/// within a typical session (login, listing, RETR, STOR).
pub fn random_drop(rng: &mut Rng, rate: f64, is_control: bool) -> Option<RandomDrop> {
    if rate <= 0.0 || rng.unit() >= rate {
        return None;
    }
    Some(if is_control {
        if rng.next_u64().is_multiple_of(2) {
            RandomDrop::AtReply(rng.range(1, 12))
        } else {
            RandomDrop::AtCommand(rng.range(1, 12))
        }
    } else {
        let bits = rng.range(0, 24);
        RandomDrop::AtByte(rng.range(0, (1u64 << bits) - 1))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> FaultRule {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_the_issue_examples() {
        let r = p("drop:control:after-bytes=5000");
        assert_eq!(r.action, FaultAction::Drop);
        assert_eq!(r.scope, Scope::Control);
        assert_eq!(r.trigger, Trigger::AfterBytes(5000));
        assert_eq!(p("drop:data:after-bytes=100000").scope, Scope::Data);
        assert_eq!(
            p("drop:control:at-reply=150").trigger,
            Trigger::AtReply(150)
        );
        let s = p("stall:data:after-bytes=7");
        assert_eq!(s.action, FaultAction::Stall { for_ms: None });
        let r = p("reply:550:on-command=stor");
        assert_eq!(r.action, FaultAction::Reply(550));
        assert_eq!(r.scope, Scope::Control);
        assert_eq!(r.trigger, Trigger::OnCommand("STOR".into()));
    }

    #[test]
    fn parses_options() {
        let r = p("stall:any:after-bytes=1:times=2:skip=3:for-ms=400");
        assert_eq!(r.times, Some(2));
        assert_eq!(r.skip, 3);
        assert_eq!(r.action, FaultAction::Stall { for_ms: Some(400) });
        assert_eq!(r.scope, Scope::Any);
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "drop:control:after-bytes=5000",
            "close:data:after-bytes=0:times=1",
            "stall:any:after-bytes=9:skip=2:for-ms=100",
            "reply:451:at-reply=226",
            "reply:550:on-command=STOR:times=1",
            "drop:control:on-command=RETR",
        ] {
            assert_eq!(p(s).to_string(), s);
            assert_eq!(p(&p(s).to_string()), p(s));
        }
    }

    #[test]
    fn rejects_bad_rules() {
        for s in [
            "",
            "drop",
            "drop:control",
            "explode:control:after-bytes=1",
            "drop:sideways:after-bytes=1",
            "drop:control:after-bytes=lots",
            "drop:control:after-bytes=-1",
            "drop:control:at-reply=99",
            "drop:control:at-reply=1500",
            "drop:control:at-reply=abc",
            "drop:control:on-command=",
            "drop:control:on-command=RE TR",
            "drop:data:at-reply=150",
            "drop:data:on-command=RETR",
            "reply:550:after-bytes=10",
            "reply:5xx:on-command=STOR",
            "drop:control:after-bytes=1:for-ms=5",
            "drop:control:after-bytes=1:sometimes",
            "drop:control:when=later",
        ] {
            assert!(s.parse::<FaultRule>().is_err(), "accepted `{s}`");
        }
    }

    #[test]
    fn skip_and_times_count_occasions() {
        let r = ArmedRule::new(p("drop:any:after-bytes=1:skip=2:times=2"));
        let fired: Vec<bool> = (0..6).map(|_| r.try_fire()).collect();
        assert_eq!(fired, [false, false, true, true, false, false]);
        let always = ArmedRule::new(p("drop:any:after-bytes=1"));
        assert!((0..100).all(|_| always.try_fire()));
    }

    #[test]
    fn rng_is_reproducible_and_spread() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(42);
        assert_eq!(a, (0..5).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(0).next_u64(), 0);
        let mut r = Rng::new(7);
        let hits = (0..10_000).filter(|_| r.unit() < 0.03).count();
        assert!((200..400).contains(&hits), "{hits}");
    }

    #[test]
    fn random_drop_follows_rate_and_kind() {
        let mut r = Rng::new(1);
        assert_eq!(random_drop(&mut r, 0.0, true), None);
        for _ in 0..200 {
            match random_drop(&mut r, 1.0, true) {
                Some(RandomDrop::AtReply(n)) | Some(RandomDrop::AtCommand(n)) => {
                    assert!((1..=12).contains(&n))
                }
                other => panic!("{other:?}"),
            }
            match random_drop(&mut r, 1.0, false) {
                Some(RandomDrop::AtByte(n)) => assert!(n < 1 << 24),
                other => panic!("{other:?}"),
            }
        }
    }
}
