//! FTP timestamps: `YYYYMMDDHHMMSS[.sss]` in UTC (RFC 3659 §2.3), without a date crate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01: (year, month, day).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A UTC calendar time as a `SystemTime`; None when out of range or before 1970.
pub fn from_utc(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    min: u32,
    sec: u32,
) -> Option<SystemTime> {
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(hour) * 3600 + i64::from(min) * 60 + i64::from(sec);
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// Parses `YYYYMMDDHHMMSS` with optional `.fraction`.
pub fn parse_ftp_time(s: &str) -> Option<SystemTime> {
    let (main, frac) = match s.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (s, None),
    };
    if main.len() != 14 || !main.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |a: usize, b: usize| main.get(a..b).and_then(|x| x.parse::<u32>().ok());
    let base = from_utc(
        i64::from(num(0, 4)?),
        num(4, 6)?,
        num(6, 8)?,
        num(8, 10)?,
        num(10, 12)?,
        num(12, 14)?,
    )?;
    let nanos = match frac {
        Some(f) if !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()) => {
            f.parse::<u32>().ok()? * 10u32.pow(9 - f.len() as u32)
        }
        Some(_) => return None,
        None => 0,
    };
    base.checked_add(Duration::from_nanos(u64::from(nanos)))
}

/// Formats a time as `YYYYMMDDHHMMSS` (UTC, whole seconds; before 1970 becomes 1970).
pub fn format_ftp_time(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}{mo:02}{d:02}{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_times() {
        let t = parse_ftp_time("20201116143500").unwrap();
        assert_eq!(
            t.duration_since(UNIX_EPOCH).unwrap().as_secs(),
            1_605_537_300
        );
        assert_eq!(format_ftp_time(t), "20201116143500");
        let f = parse_ftp_time("19700101000001.5").unwrap();
        assert_eq!(f.duration_since(UNIX_EPOCH).unwrap().as_millis(), 1500);
        assert_eq!(format_ftp_time(UNIX_EPOCH), "19700101000000");
    }

    #[test]
    fn bad_times() {
        for s in [
            "",
            "2020",
            "20201316143500",
            "2020111614350x",
            "20201116143500.",
            "20201116143500.1234567890",
            "+2020111614350",
        ] {
            assert!(parse_ftp_time(s).is_none(), "{s}");
        }
    }

    proptest::proptest! {
        #[test]
        fn roundtrip(secs in 0u64..253_402_300_799) {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse_ftp_time(&format_ftp_time(t)), Some(t));
        }

        #[test]
        fn never_panics(s in "\\PC{0,30}") {
            let _ = parse_ftp_time(&s);
        }
    }
}
