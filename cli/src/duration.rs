//! Durations on the command line and in the environment, read by humantime.
//!
//! Everything the binaries ever accepted still reads the same: a whole number and one of
//! `ms`, `s`, `m`, `h`, `d` (`10s`, `1500ms`, `15m`, `24h`, `7d`). humantime also reads
//! its longer unit names, fractions and sums (`2 hours`, `1.5s`, `1h30m`). A bare number
//! has no unit and is refused, as it always was (humantime would read `0` alone): `10`
//! could mean seconds or milliseconds.

use std::time::Duration;

const EXPECTED: &str = "expected a duration like 10s, 1500ms, 15m, 24h or 7d";

/// Reads a duration; the error is one line fit for [`crate::ConfigError::reason`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let number = text.trim();
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("{number} has no unit; {EXPECTED}"));
    }
    humantime::parse_duration(text).map_err(|error| match error {
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("{value} has no unit; {EXPECTED}")
        }
        humantime::DurationError::NumberOverflow => "duration too long".to_owned(),
        other => format!("{other}; {EXPECTED}"),
    })
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
            // What humantime adds.
            ("10 s", Ok(Duration::from_secs(10))),
            ("1h30m", Ok(Duration::from_secs(5400))),
            ("2 hours", Ok(Duration::from_secs(7200))),
            ("1.5s", Ok(Duration::from_millis(1500))),
            ("2.5", Err("2.5 has no unit")),
            ("10w", Ok(Duration::from_secs(70 * 86_400))),
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
