//! The sandbox's own calendar: the month its usage API and exports serve (`YYYY-MM`), and
//! the UTC timestamps a dataset gives. The sandbox emulates Connect and the vendor's systems
//! for any client, so it reads these itself rather than borrowing the reporting pipeline's
//! types; a client with its own month type converts into [`CalendarMonth`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, Utc};

/// A calendar month, as the usage API's `period=YYYY-MM` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CalendarMonth {
    year: i32,
    month: u32,
}

/// A month that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a month in the form YYYY-MM")]
pub struct MonthError {
    pub text: String,
}

impl CalendarMonth {
    pub fn new(year: i32, month: u32) -> Option<CalendarMonth> {
        ((1..=12).contains(&month) && (1..=9999).contains(&year))
            .then_some(CalendarMonth { year, month })
    }

    /// The month `day` falls in.
    pub fn of_day(day: NaiveDate) -> CalendarMonth {
        CalendarMonth {
            year: day.year(),
            month: day.month(),
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
    pub fn next(&self) -> CalendarMonth {
        if self.month == 12 {
            CalendarMonth {
                year: self.year + 1,
                month: 1,
            }
        } else {
            CalendarMonth {
                year: self.year,
                month: self.month + 1,
            }
        }
    }

    /// The first instant, `YYYY-MM-01T00:00:00Z`.
    pub fn start(&self) -> DateTime<Utc> {
        self.first_day().and_time(chrono::NaiveTime::MIN).and_utc()
    }

    /// The first instant after the month.
    pub fn end_exclusive(&self) -> DateTime<Utc> {
        self.next().start()
    }

    /// The last second of the month (record times are written to the second).
    pub fn last_second(&self) -> DateTime<Utc> {
        self.end_exclusive() - chrono::Duration::seconds(1)
    }

    /// Whether `at` falls inside the month.
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        at >= self.start() && at < self.end_exclusive()
    }
}

impl fmt::Display for CalendarMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl FromStr for CalendarMonth {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<CalendarMonth, MonthError> {
        let err = || MonthError { text: s.to_owned() };
        let (y, m) = s.trim().split_once('-').ok_or_else(err)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(err());
        }
        let year: i32 = y.parse().map_err(|_| err())?;
        let month: u32 = m.parse().map_err(|_| err())?;
        CalendarMonth::new(year, month).ok_or_else(err)
    }
}

/// A timestamp as datasets write them, in UTC: RFC 3339, a date and time without an offset
/// (taken as UTC, `T` or a space between them), or a bare date (its midnight).
pub fn parse_utc(text: &str) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(dt) = NaiveDateTime::parse_from_str(t, fmt) {
            return Some(dt.and_utc());
        }
    }
    if let Ok(dt) = DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z") {
        return Some(dt.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(t, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|dt| dt.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_read_and_bound() {
        let m: CalendarMonth = "2024-02".parse().expect("month");
        assert_eq!(m.to_string(), "2024-02");
        assert_eq!(
            m.last_day(),
            NaiveDate::from_ymd_opt(2024, 2, 29).expect("day")
        );
        assert_eq!(
            m.end_exclusive(),
            "2024-03".parse::<CalendarMonth>().expect("m").start()
        );
        assert_eq!(
            "2024-13"
                .parse::<CalendarMonth>()
                .map_err(|e| e.to_string()),
            Err("\"2024-13\" is not a month in the form YYYY-MM".to_owned())
        );
        assert_eq!(
            "2023-12"
                .parse::<CalendarMonth>()
                .expect("m")
                .next()
                .to_string(),
            "2024-01"
        );
    }

    #[test]
    fn timestamps_read_in_utc() {
        let at = |t| parse_utc(t).map(|d| d.to_rfc3339());
        let noon = Some("2024-04-02T12:00:00+00:00".to_owned());
        assert_eq!(at("2024-04-02T12:00:00Z"), noon);
        assert_eq!(at("2024-04-02T14:00:00+02:00"), noon);
        assert_eq!(at("2024-04-02 12:00:00"), noon);
        assert_eq!(at(" 2024-04-02T12:00:00.000 "), noon);
        assert_eq!(
            at("2024-04-02"),
            Some("2024-04-02T00:00:00+00:00".to_owned())
        );
        assert_eq!(at("April"), None);
    }
}
