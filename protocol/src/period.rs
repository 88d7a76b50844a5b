//! Reporting periods: calendar months written `YYYY-MM`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::{Date, Month};

/// A calendar month, the unit of reporting and of the privacy budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Period {
    year: i32,
    month: Month,
}

/// Why a period could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid period {value:?}: expected a month written YYYY-MM between 2000-01 and 2999-12, e.g. 2026-10"
)]
pub struct PeriodError {
    /// What was given.
    pub value: String,
}

impl Period {
    /// The month `month` (1–12) of `year`, if both are in range.
    pub fn new(year: i32, month: u8) -> Option<Self> {
        if !(2000..=2999).contains(&year) {
            return None;
        }
        Month::try_from(month)
            .ok()
            .map(|month| Self { year, month })
    }

    /// The month a day belongs to.
    pub fn of_date(date: Date) -> Self {
        Self {
            year: date.year(),
            month: date.month(),
        }
    }

    /// The year.
    pub fn year(self) -> i32 {
        self.year
    }

    /// The month number, 1–12.
    pub fn month(self) -> u8 {
        u8::from(self.month)
    }

    /// The first day of the month.
    pub fn first_day(self) -> Date {
        // unwrap safety: day 1 exists in every month of a year in range.
        #[allow(clippy::unwrap_used)]
        Date::from_calendar_date(self.year, self.month, 1).unwrap()
    }

    /// The last day of the month.
    pub fn last_day(self) -> Date {
        // unwrap safety: the month's own length is a valid day of it.
        #[allow(clippy::unwrap_used)]
        Date::from_calendar_date(self.year, self.month, self.month.length(self.year)).unwrap()
    }

    /// The next month.
    pub fn next(self) -> Self {
        let month = self.month.next();
        let year = if month == Month::January {
            self.year + 1
        } else {
            self.year
        };
        Self { year, month }
    }

    /// The previous month.
    pub fn previous(self) -> Self {
        let month = self.month.previous();
        let year = if month == Month::December {
            self.year - 1
        } else {
            self.year
        };
        Self { year, month }
    }

    /// Whether the whole month lies strictly before `today`.
    pub fn has_ended(self, today: Date) -> bool {
        self.last_day() < today
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, u8::from(self.month))
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeriodError {
            value: s.to_owned(),
        };
        let bytes = s.as_bytes();
        if bytes.len() != 7 || bytes[4] != b'-' || !s.is_char_boundary(4) {
            return Err(err());
        }
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        let (year, month) = (&s[..4], &s[5..]);
        if !digits(year) || !digits(month) {
            return Err(err());
        }
        let year: i32 = year.parse().map_err(|_| err())?;
        let month: u8 = month.parse().map_err(|_| err())?;
        Self::new(year, month).ok_or_else(err)
    }
}

impl Serialize for Period {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    #[test]
    fn parses_and_rejects() {
        assert_eq!("2026-10".parse::<Period>().ok(), Period::new(2026, 10));
        for bad in [
            "2026-13",
            "2026-00",
            "2026-1",
            "26-10",
            "2026/10",
            "2026-10-01",
            "",
            "１２３４-10",
            "1999-12",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_of_a_month() -> Result<(), PeriodError> {
        let p: Period = "2024-02".parse()?;
        assert_eq!(p.first_day(), date!(2024 - 02 - 01));
        assert_eq!(p.last_day(), date!(2024 - 02 - 29));
        assert!(!p.has_ended(date!(2024 - 02 - 29)));
        assert!(p.has_ended(date!(2024 - 03 - 01)));
        assert_eq!(p.next().to_string(), "2024-03");
        assert_eq!("2025-12".parse::<Period>()?.next().to_string(), "2026-01");
        Ok(())
    }

    proptest! {
        #[test]
        fn display_round_trips(year in 2000i32..=2999, month in 1u8..=12) {
            let p = Period::new(year, month).ok_or_else(|| TestCaseError::fail("in range"))?;
            prop_assert_eq!(p.to_string().parse::<Period>(), Ok(p));
            let json = serde_json::to_string(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(serde_json::from_str::<Period>(&json).ok(), Some(p));
        }

        #[test]
        fn never_panics_on_garbage(s in ".{0,12}") {
            let _ = s.parse::<Period>();
        }
    }
}
