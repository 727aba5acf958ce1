//! Times and durations as Berth writes them, in one place: now in unix milliseconds,
//! RFC 3339 (chrono), and durations such as `90s`, `30m`, `1h 30m` (humantime), for the
//! configuration and the API alike.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in unix milliseconds (0 before 1970, saturating far in the future).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds as RFC 3339 in UTC, to the second (`2026-12-07T04:05:06Z`); the
/// number itself when it is outside chrono's range.
pub fn rfc3339_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| ms.to_string())
}

/// A duration written `500ms`, `90s`, `30m`, `1h`, `2d`, `1h 30m` (humantime's syntax),
/// or bare seconds. The error says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Duration::from_secs)
            .map_err(|_| format!("{text:?} is too long"));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{text:?} is not a duration such as 90s, 30m, 1h or 2d ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let s = Duration::from_secs;
        for (text, want) in [
            ("0s", s(0)),
            ("90", s(90)),
            ("250ms", Duration::from_millis(250)),
            ("30m", s(1800)),
            ("2d", s(172_800)),
            ("1h 30m", s(5400)),
        ] {
            assert_eq!(parse_duration(text).unwrap(), want, "{text}");
        }
        for bad in [
            "",
            "soon",
            "-1s",
            "1x",
            "99999999999999999999",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc3339_formats() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_ms(951_782_400_999), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_ms(i64::MAX), i64::MAX.to_string());
        assert!(now_ms() > 1_700_000_000_000);
    }
}
