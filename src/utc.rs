//! UTC calendar dates from the system clock, without a date crate: record timestamps and
//! the day/month periods of token budgets.

use std::time::{SystemTime, UNIX_EPOCH};

/// Days since 1970-01-01 → (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`, restricted to non-negative day counts).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March-based
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The UTC day (`YYYYMMDD`) and month (`YYYYMM`) of `t` (times before 1970: the epoch).
pub fn day_and_month(t: SystemTime) -> (u32, u32) {
    let days = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400;
    let (y, m, d) = civil_from_days(days);
    let (y, m, d) = (y as u32, m as u32, d as u32);
    (y * 10_000 + m * 100 + d, y * 100 + m)
}

/// Seconds from `t` to the next UTC midnight.
pub fn secs_to_midnight(t: SystemTime) -> u64 {
    let s = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    86_400 - s % 86_400
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn days_and_months() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_824_000); // 2026-11-28T00:00:00Z
        assert_eq!(day_and_month(t), (20261128, 202611));
        assert_eq!(
            day_and_month(t - Duration::from_secs(1)),
            (20261127, 202611)
        );
        let t = UNIX_EPOCH + Duration::from_secs(1_798_761_599); // 2026-12-31T23:59:59Z
        assert_eq!(day_and_month(t), (20261231, 202612));
        assert_eq!(
            day_and_month(t + Duration::from_secs(1)),
            (20270101, 202701)
        );
        assert_eq!(secs_to_midnight(t), 1);
        assert_eq!(day_and_month(UNIX_EPOCH), (19700101, 197001));
    }
}
