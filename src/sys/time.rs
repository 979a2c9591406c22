//! When something happened, as the journal and `production.json` record it.
//!
//! Written as RFC 3339 in UTC with exactly three fractional digits, so that
//! the times of one root sort as text and flip skew across hosts can be read
//! from them. Builds before millisecond times wrote whole seconds
//! (`2026-11-26T13:40:41Z`); those are read as times and written back
//! exactly as they were. Any other text (a hand edit, a value this build
//! cannot read) is kept as it was read: shown, written back unchanged, and
//! never taken for a time, so one odd line cannot move an age, a sort or a
//! report by a guess.

use std::fmt;

use jiff::{Timestamp, Unit};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A recorded time: one of the two spellings symdeploy writes, or text it
/// keeps without reading.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Time {
    /// As this build writes it: `2026-11-26T13:40:41.123Z`.
    Millis(Timestamp),
    /// As builds before millisecond times wrote it: `2026-11-26T13:40:41Z`.
    Seconds(Timestamp),
    /// Anything else, kept as it was read and never acted on.
    Unreadable(String),
}

impl Time {
    /// Now, to the millisecond.
    pub(crate) fn now() -> Time {
        Time::at(Timestamp::now())
    }

    /// `t` to the millisecond, as this build writes times.
    pub(crate) fn at(t: Timestamp) -> Time {
        Time::Millis(t.round(Unit::Millisecond).unwrap_or(t))
    }

    /// Read a recorded time. A spelling symdeploy never wrote stays text,
    /// even where jiff could read it: written back, it must come out as it
    /// went in.
    pub(crate) fn parse(text: &str) -> Time {
        match text.parse::<Timestamp>() {
            Ok(t) if millis(t) == text => Time::Millis(t),
            Ok(t) if t.subsec_nanosecond() == 0 && t.to_string() == text => Time::Seconds(t),
            _ => Time::Unreadable(text.to_string()),
        }
    }

    /// The instant, unless the text was not one symdeploy writes.
    pub(crate) fn timestamp(&self) -> Option<Timestamp> {
        match self {
            Time::Millis(t) | Time::Seconds(t) => Some(*t),
            Time::Unreadable(_) => None,
        }
    }

    /// Seconds since the Unix epoch, with the fraction (Prometheus's unit).
    pub(crate) fn unix_seconds(&self) -> Option<f64> {
        self.timestamp().map(|t| t.as_millisecond() as f64 / 1000.0)
    }

    /// How long ago, for people: `42s ago`, `3h ago`; `?` for unreadable text.
    pub(crate) fn age(&self) -> String {
        let Some(then) = self.timestamp() else {
            return "?".to_string();
        };
        match (Timestamp::now().as_second() - then.as_second()).max(0) {
            s if s < 90 => format!("{s}s ago"),
            s if s < 90 * 60 => format!("{}m ago", s / 60),
            s if s < 36 * 3600 => format!("{}h ago", s / 3600),
            s => format!("{}d ago", s / 86400),
        }
    }
}

/// `t` with exactly three fractional digits, rounded to the millisecond.
fn millis(t: Timestamp) -> String {
    t.round(Unit::Millisecond)
        .unwrap_or(t)
        .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Time::Millis(t) => f.pad(&millis(*t)),
            Time::Seconds(t) => f.pad(&t.to_string()),
            Time::Unreadable(text) => f.pad(text),
        }
    }
}

/// Times order by instant; text no one can read sorts before every time
/// (and among itself as text), so it never lands between two real ones.
impl Ord for Time {
    fn cmp(&self, other: &Time) -> std::cmp::Ordering {
        match (self, other) {
            (Time::Unreadable(a), Time::Unreadable(b)) => a.cmp(b),
            (Time::Unreadable(_), _) => std::cmp::Ordering::Less,
            (_, Time::Unreadable(_)) => std::cmp::Ordering::Greater,
            (a, b) => a
                .timestamp()
                .cmp(&b.timestamp())
                .then_with(|| a.to_string().cmp(&b.to_string())),
        }
    }
}

impl PartialOrd for Time {
    fn partial_cmp(&self, other: &Time) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// Only a placeholder for `..Default::default()` (an entry is always given
/// its real time): empty text, which nothing acts on.
impl Default for Time {
    fn default() -> Time {
        Time::Unreadable(String::new())
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Time, D::Error> {
        let text = String::deserialize(d)?;
        Ok(Time::parse(&text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Time {
        let json = serde_json::to_string(text).unwrap();
        let t: Time = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), json, "{t:?}");
        assert_eq!(t.to_string(), text);
        t
    }

    #[test]
    fn new_times_have_three_fractional_digits() {
        let t: Timestamp = "2026-11-26T13:55:01.5Z".parse().unwrap();
        assert_eq!(Time::at(t).to_string(), "2026-11-26T13:55:01.500Z");
        let t: Timestamp = "2026-11-26T13:55:01.0004Z".parse().unwrap();
        assert_eq!(Time::at(t).to_string(), "2026-11-26T13:55:01.000Z");
        let t: Timestamp = "2026-11-26T13:55:01.9996Z".parse().unwrap();
        assert_eq!(Time::at(t).to_string(), "2026-11-26T13:55:02.000Z");
        let now = Time::now();
        assert!(matches!(now, Time::Millis(_)));
        assert_eq!(now.to_string().len(), "2026-11-26T13:55:01.000Z".len());
        assert_eq!(Time::parse(&now.to_string()), now);
    }

    #[test]
    fn both_spellings_symdeploy_wrote_are_times_and_written_back_as_read() {
        let ms = round_trip("2026-11-26T14:30:16.807Z");
        assert!(matches!(ms, Time::Millis(_)));
        // A new time on a whole second keeps its three zeros.
        let whole_ms = round_trip("2026-11-26T14:30:16.000Z");
        assert!(matches!(whole_ms, Time::Millis(_)));
        let secs = round_trip("2026-11-26T13:40:41Z");
        assert!(matches!(secs, Time::Seconds(_)));
        assert_eq!(secs.unix_seconds(), Some(1_795_700_441.0));
        assert_eq!(ms.unix_seconds(), Some(1_795_703_416.807));
        // The same instant in either spelling is the same time.
        assert_eq!(
            Time::parse("2026-11-26T13:40:41Z").timestamp(),
            Time::parse("2026-11-26T13:40:41.000Z").timestamp()
        );
    }

    /// Values no symdeploy wrote, as a hand edit or a newer build might leave
    /// them: read, shown and written back unchanged, never taken for a time.
    #[test]
    fn odd_values_are_kept_as_text_and_not_acted_on() {
        for odd in [
            "",
            "t",
            "yesterday",
            "2026-13-45T99:99:99Z",
            "2026-11-26 13:40:41",
            // Times jiff reads, but not in a spelling of ours: bytes first.
            "2026-11-26T13:40:41+01:00",
            "2026-11-26T13:40:41.5Z",
            "2026-11-26T13:40:41.123456789Z",
            "\u{1b}[31mred\u{1b}[0m",
        ] {
            let t = round_trip(odd);
            assert_eq!(t, Time::Unreadable(odd.to_string()));
            assert_eq!(t.timestamp(), None, "{odd}");
            assert_eq!(t.unix_seconds(), None, "{odd}");
            assert_eq!(t.age(), "?");
        }
        // A non-string time is not a time either: the line is unreadable,
        // as it always was.
        assert!(serde_json::from_str::<Time>("1700000000").is_err());
    }

    #[test]
    fn times_sort_by_instant_and_unreadable_text_first() {
        let mut v = [
            Time::parse("2026-11-26T13:40:41.500Z"),
            Time::parse("2026-11-26T13:40:41Z"),
            Time::parse("garbage"),
            Time::parse("2026-11-26T13:40:40.999Z"),
        ];
        v.sort();
        let text: Vec<String> = v.iter().map(Time::to_string).collect();
        assert_eq!(
            text,
            [
                "garbage",
                "2026-11-26T13:40:40.999Z",
                "2026-11-26T13:40:41Z",
                "2026-11-26T13:40:41.500Z"
            ]
        );
    }

    #[test]
    fn age_reads_real_times() {
        let two_hours_ago = Time::at(Timestamp::now() - jiff::SignedDuration::from_hours(2));
        assert_eq!(two_hours_ago.age(), "2h ago");
    }
}
