//! Timestamps as Connect, datasets and vendors write them, read in UTC.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

/// A timestamp in UTC: RFC 3339, a date and time without an offset
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
