//! A calendar month in UTC, written `YYYY-MM`: what a usage file reports (Connect's usage
//! files cover one month each), what a vendor's usage is read for, and what an emulator of
//! Connect serves usage by.
//!
//! The month before a date is the usual one to report: January's is December of the year
//! before (the copied Python sample computes month 0 and breaks there).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// A calendar month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    month: u32,
}

/// A month that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a month in the form YYYY-MM")]
pub struct MonthError {
    pub text: String,
}

impl Month {
    pub fn new(year: i32, month: u32) -> Option<Month> {
        ((1..=12).contains(&month) && (1..=9999).contains(&year)).then_some(Month { year, month })
    }

    /// The calendar month before the one `now` falls in.
    pub fn previous_month(now: DateTime<Utc>) -> Month {
        let (year, month) = (now.year(), now.month());
        if month == 1 {
            Month {
                year: year - 1,
                month: 12,
            }
        } else {
            Month {
                year,
                month: month - 1,
            }
        }
    }

    pub fn year(&self) -> i32 {
        self.year
    }

    pub fn month(&self) -> u32 {
        self.month
    }

    /// The first day.
    pub fn first_day(&self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.year, self.month, 1).unwrap_or(NaiveDate::MIN)
    }

    /// The last day.
    pub fn last_day(&self) -> NaiveDate {
        self.next().first_day().pred_opt().unwrap_or(NaiveDate::MAX)
    }

    /// The month after this one.
    pub fn next(&self) -> Month {
        if self.month == 12 {
            Month {
                year: self.year + 1,
                month: 1,
            }
        } else {
            Month {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant of the period, `YYYY-MM-01T00:00:00Z`.
    pub fn start(&self) -> DateTime<Utc> {
        self.first_day().and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The first instant after the period.
    pub fn end_exclusive(&self) -> DateTime<Utc> {
        self.next().start()
    }

    /// The last second of the period, `YYYY-MM-DDT23:59:59Z` (Connect's usage file periods are
    /// whole days, and record times are written to the second).
    pub fn last_second(&self) -> DateTime<Utc> {
        self.end_exclusive() - chrono::Duration::seconds(1)
    }

    /// Whether `at` falls inside the period.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.start() && at < self.end_exclusive()
    }

    /// "April 2024"
    pub fn long_name(&self) -> String {
        format!("{} {}", self.first_day().format("%B"), self.year)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for Month {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Month, MonthError> {
        let err = || MonthError { text: s.to_owned() };
        let (y, m) = s.trim().split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(err());
        }
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        Month::new(year, month).ok_or_else(err)
    }
}

impl serde::Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Month, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 12, 0, 0)
            .single()
            .expect("valid")
    }

    #[test]
    fn january_reports_december_of_the_year_before() {
        assert_eq!(Month::previous_month(at(2025, 1, 1)).to_string(), "2024-12");
        assert_eq!(
            Month::previous_month(at(2025, 1, 31)).to_string(),
            "2024-12"
        );
        assert_eq!(Month::previous_month(at(2024, 3, 1)).to_string(), "2024-02");
        assert_eq!(
            Month::previous_month(at(2024, 12, 31)).to_string(),
            "2024-11"
        );
    }

    #[test]
    fn bounds_of_a_month() {
        let feb: Month = "2024-02".parse().expect("valid");
        assert_eq!(feb.first_day().to_string(), "2024-02-01");
        assert_eq!(feb.last_day().to_string(), "2024-02-29", "leap year");
        assert_eq!(feb.last_second().to_rfc3339(), "2024-02-29T23:59:59+00:00");
        let dec: Month = "2024-12".parse().expect("valid");
        assert_eq!(dec.last_day().to_string(), "2024-12-31");
        assert_eq!(
            dec.end_exclusive().to_rfc3339(),
            "2025-01-01T00:00:00+00:00"
        );
        assert!(
            dec.contains(
                Utc.with_ymd_and_hms(2024, 12, 31, 23, 59, 59)
                    .single()
                    .expect("valid")
            )
        );
        assert!(
            !dec.contains(
                Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                    .single()
                    .expect("valid")
            )
        );
        assert_eq!(dec.long_name(), "December 2024");
    }

    #[test]
    fn parsing() {
        for bad in [
            "2024-13", "2024-00", "2024-1", "24-01", "2024/01", "", "april",
        ] {
            assert!(bad.parse::<Month>().is_err(), "{bad}");
        }
        assert_eq!(
            " 2024-04 ".parse::<Month>().map(|p| (p.year(), p.month())),
            Ok((2024, 4))
        );
    }
}
