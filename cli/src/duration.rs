//! Durations on the command line and in the environment, read by humantime.
//!
//! The syntax is the one the binaries have always read: a whole number and one of `ms`,
//! `s`, `m`, `h`, `d` (`10s`, `1500ms`, `15m`, `24h`, `7d`), and humantime's compact sums
//! of those (`1h30m`). The rest of humantime's syntax (spaces, fractions, other units
//! such as `w` or `M`, long names) is refused, so that a value means the same everywhere
//! it was ever accepted and `1M` (a month to humantime) is not taken for a minute. A
//! bare number has no unit and is refused: `10` could mean seconds or milliseconds.
//! Nothing longer than [`LONGEST`] is accepted: far beyond it, a duration added to the
//! clock's time, or sent as a gRPC timeout, would not fit.

use std::time::Duration;

const EXPECTED: &str = "expected a duration like 10s, 1500ms, 15m, 24h or 7d";

/// The longest duration read: 36500d, about a hundred years.
pub const LONGEST: Duration = Duration::from_secs(36_500 * 86_400);

/// Reads a duration; the error is one line fit for [`crate::ConfigError::reason`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text} has no unit; {EXPECTED}"));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || b"mshd".contains(&b))
    {
        return Err(EXPECTED.to_owned());
    }
    let duration = humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("{value} has no unit; {EXPECTED}")
        }
        humantime::DurationError::NumberOverflow => "duration too long".to_owned(),
        humantime::DurationError::UnknownUnit { unit, .. } => {
            format!("unknown unit `{unit}`; {EXPECTED}")
        }
        _ => EXPECTED.to_owned(),
    })?;
    if duration > LONGEST {
        return Err("duration too long; at most 36500d".to_owned());
    }
    Ok(duration)
}

/// A duration above zero, for waits that must be able to succeed.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err("must be more than 0".to_owned()),
        duration => Ok(duration),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let cases = [
            // The syntax the binaries have always read.
            ("10s", Ok(Duration::from_secs(10))),
            ("1500ms", Ok(Duration::from_millis(1500))),
            ("15m", Ok(Duration::from_secs(900))),
            ("2h", Ok(Duration::from_secs(7200))),
            ("0s", Ok(Duration::ZERO)),
            ("7d", Ok(Duration::from_secs(7 * 86_400))),
            // Refused then and now.
            ("10", Err("10 has no unit")),
            ("0", Err("0 has no unit")),
            ("s", Err("expected a duration")),
            ("-1s", Err("expected a duration")),
            ("", Err("expected a duration")),
            ("soon", Err("expected a duration")),
            ("10x", Err("expected a duration")),
            ("99999999999999999999h", Err("too long")),
            ("36500d", Ok(LONGEST)),
            ("36501d", Err("too long; at most 36500d")),
            ("5000000d", Err("too long; at most 36500d")),
            ("10 s", Err("expected a duration")),
            ("1.5s", Err("expected a duration")),
            ("10w", Err("expected a duration")),
            ("1M", Err("expected a duration")),
            ("2 hours", Err("expected a duration")),
            ("1 day", Err("expected a duration")),
            ("10hs", Err("unknown unit `hs`; expected a duration")),
            ("1h30", Err("30 has no unit")),
            // Compact sums, which humantime adds.
            ("1h30m", Ok(Duration::from_secs(5400))),
            ("1m500ms", Ok(Duration::from_millis(60_500))),
        ];
        for (text, expected) in cases {
            match (parse_duration(text), expected) {
                (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
                (Err(got), Err(want)) => {
                    assert!(got.contains(want), "{text}: {got}");
                    assert!(!got.contains('\n'), "{text}: {got}");
                }
                (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn positive_durations() {
        assert_eq!(positive_duration("1ms"), Ok(Duration::from_millis(1)));
        assert_eq!(
            positive_duration("0s"),
            Err("must be more than 0".to_owned())
        );
        assert!(positive_duration("soon").is_err());
    }
}
