//! How durations are written wherever tracewarden prints one: alert messages, SLO gauge labels,
//! `/api/slos` and configuration messages (slo.md "Alert messages").
//!
//! A duration is written as in the configuration, with the largest unit that divides it:
//! `"30d"`, `"6h"`, `"5m"`, `"90s"`, `"500ms"` — never `"30days"` or `"1h 30m"`. The written form
//! parses back to the same duration.

use std::time::Duration;

/// Units from the largest, in nanoseconds.
const UNITS: [(u128, &str); 7] = [
    (86_400_000_000_000, "d"),
    (3_600_000_000_000, "h"),
    (60_000_000_000, "m"),
    (1_000_000_000, "s"),
    (1_000_000, "ms"),
    (1_000, "us"),
    (1, "ns"),
];

/// `duration` in the largest unit that divides it; zero is `"0s"`.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let (size, unit) = UNITS.iter().find(|(size, _)| nanos.is_multiple_of(*size)).copied().unwrap_or((1, "ns"));
    format!("{}{unit}", nanos / size)
}

/// [`format_duration`] of whole seconds (negative counts as zero).
pub fn format_seconds(seconds: i64) -> String {
    format_duration(Duration::from_secs(seconds.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn largest_unit_that_divides() {
        let cases = [
            (30 * 86_400, "30d"),
            (3 * 86_400, "3d"),
            (6 * 3_600, "6h"),
            (3_600, "1h"),
            (30 * 60, "30m"),
            (5 * 60, "5m"),
            (90 * 60, "90m"),
            (90, "90s"),
            (30, "30s"),
            (25 * 3_600, "25h"),
            (0, "0s"),
        ];
        for (seconds, text) in cases {
            assert_eq!(format_seconds(seconds), text, "{seconds} s");
        }
        assert_eq!(format_seconds(-5), "0s");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(format_duration(Duration::from_millis(1_500)), "1500ms");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(format_duration(Duration::from_nanos(1_000_001)), "1000001ns");
    }

    #[test]
    fn written_durations_parse_back() {
        for d in [
            Duration::from_secs(30 * 86_400),
            Duration::from_secs(5_400),
            Duration::from_millis(1_500),
            Duration::from_micros(7),
            Duration::from_nanos(3),
        ] {
            assert_eq!(humantime::parse_duration(&format_duration(d)).unwrap(), d);
        }
    }
}
