//! UTC timestamps as AWS writes them, to and from unix seconds.
//!
//! SigV4 needs `YYYYMMDD'T'HHMMSS'Z'`; EC2 reports `launchTime` as ISO 8601
//! (`2024-05-01T12:00:00.000Z`) and stop times inside
//! `stateTransitionReason` (`User initiated (2024-05-01 12:30:00 GMT)`).
//! Those three shapes are all the component needs, so it carries the
//! proleptic Gregorian day arithmetic (Howard Hinnant's `days_from_civil`)
//! instead of a date-time crate.

/// A UTC calendar time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–60.
    pub second: u32,
}

impl Utc {
    /// The calendar time of `unix` seconds.
    pub fn from_unix(unix: u64) -> Self {
        let days = (unix / 86_400) as i64;
        let secs = (unix % 86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: secs / 3600,
            minute: secs / 60 % 60,
            second: secs % 60,
        }
    }

    /// Unix seconds, or `None` before 1970.
    pub fn to_unix(self) -> Option<u64> {
        let days = days_from_civil(self.year, self.month, self.day);
        let secs = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        u64::try_from(secs).ok()
    }

    /// `20150830T123600Z`, SigV4's `X-Amz-Date`.
    pub fn amz_date_time(self) -> String {
        format!(
            "{}T{:02}{:02}{:02}Z",
            self.amz_date(),
            self.hour,
            self.minute,
            self.second
        )
    }

    /// `20150830`, SigV4's credential-scope date.
    pub fn amz_date(self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }
}

/// Parse `YYYY-MM-DD[T ]HH:MM:SS[.fff][Z| GMT]` (and SigV4's compact
/// `YYYYMMDDTHHMMSSZ`) into unix seconds. Fractions are dropped; anything
/// else is `None`.
pub fn parse(s: &str) -> Option<u64> {
    let s = s.trim();
    if !s.is_ascii() {
        return None;
    }
    let digits = |t: &str| -> Option<u32> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (date, time) = if s.len() >= 15 && s.as_bytes()[8] == b'T' && !s.contains('-') {
        // Compact form.
        (
            [&s[0..4], &s[4..6], &s[6..8]],
            [&s[9..11], &s[11..13], &s[13..15]],
        )
    } else {
        let (d, rest) = s.split_at_checked(10)?;
        let rest = rest.strip_prefix(['T', ' '])?;
        let mut dp = d.split('-');
        let date = [dp.next()?, dp.next()?, dp.next()?];
        let t = rest.get(0..8)?;
        let mut tp = t.split(':');
        let time = [tp.next()?, tp.next()?, tp.next()?];
        let tail = &rest[8..];
        let tail = match tail.strip_prefix('.') {
            Some(f) => f.trim_start_matches(|c: char| c.is_ascii_digit()),
            None => tail,
        };
        if !matches!(tail, "" | "Z" | " GMT" | " UTC" | "+00:00") {
            return None;
        }
        (date, time)
    };
    let t = Utc {
        year: i64::from(digits(date[0])?),
        month: digits(date[1])?,
        day: digits(date[2])?,
        hour: digits(time[0])?,
        minute: digits(time[1])?,
        second: digits(time[2])?,
    };
    if !(1..=12).contains(&t.month)
        || !(1..=31).contains(&t.day)
        || t.hour > 23
        || t.minute > 59
        || t.second > 60
    {
        return None;
    }
    t.to_unix()
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        // 2015-08-30T12:36:00Z is the SigV4 test suite's timestamp.
        assert_eq!(parse("2015-08-30T12:36:00Z"), Some(1_440_938_160));
        assert_eq!(
            Utc::from_unix(1_440_938_160).amz_date_time(),
            "20150830T123600Z"
        );
        assert_eq!(parse("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse("1970-01-01T00:00:00.000Z"), Some(0));
        // A leap day, and EC2's transition-reason shape.
        assert_eq!(parse("2024-02-29 23:59:59 GMT"), Some(1_709_251_199));
        assert_eq!(parse("2024-03-01T00:00:00.123Z"), Some(1_709_251_200));
    }

    #[test]
    fn round_trips_across_centuries() {
        for unix in (0..5_000_000_000u64).step_by(86_399 * 97) {
            let t = Utc::from_unix(unix);
            assert_eq!(t.to_unix(), Some(unix), "{t:?}");
        }
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00+02:00",
            "2024-01-01",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }
}
