//! Usage periods: which stretch of time a periodic entitlement counts
//! (docs/periods.md). Pure calendar arithmetic in UTC; the backends key
//! their period counters by the start this module computes, so a new
//! period starts from zero without any job having to run.

use std::fmt;
use std::str::FromStr;

use time::{Date, Duration, Month, OffsetDateTime, Time};

use crate::error::StoreError;

/// How often an entitlement's usage and grace start again from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum PeriodKind {
    /// Never: usage counts for ever (the default).
    #[default]
    None,
    /// Each UTC day, from 00:00.
    Day,
    /// Each ISO week, from Monday 00:00 UTC.
    Week,
    /// Each calendar month, from the 1st 00:00 UTC.
    Month,
    /// Each month from the user's plan start, on the same day and time of
    /// day, or on the last day of a month too short for it.
    Anniversary,
}

impl PeriodKind {
    /// Every kind, in the order of [`PeriodKind::as_str`]'s names.
    pub const ALL: [PeriodKind; 5] = [
        PeriodKind::None,
        PeriodKind::Day,
        PeriodKind::Week,
        PeriodKind::Month,
        PeriodKind::Anniversary,
    ];

    /// The name the API, the CLI and the database use.
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::None => "none",
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Anniversary => "anniversary",
        }
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a period.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a period: use none, day, week, month or anniversary")]
pub struct UnknownPeriod(pub String);

impl FromStr for PeriodKind {
    type Err = UnknownPeriod;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeriodKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownPeriod(s.to_owned()))
    }
}

/// A plan's period for one entitlement key: its kind, and since when it
/// has had it (a change of kind starts a new period at that instant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodSetting {
    /// The kind.
    pub kind: PeriodKind,
    /// When the key got this kind, Unix ms.
    pub since_ms: i64,
}

/// The period a periodic entitlement counts now: `[start_ms, end_ms)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    /// Its kind (never [`PeriodKind::None`]).
    pub kind: PeriodKind,
    /// The first instant it counts, Unix ms.
    pub start_ms: i64,
    /// The first instant it no longer counts, Unix ms.
    pub end_ms: i64,
}

/// The period `setting` counts at `now_ms`, for a user whose plan started
/// at `plan_started_ms`; `None` when the key has no period. For a user on
/// the plan when the key got its kind (`setting.since_ms`), a period never
/// starts before that change; an anniversary never before the plan start.
pub fn current(setting: PeriodSetting, plan_started_ms: i64, now_ms: i64) -> Option<Period> {
    let now = datetime(now_ms);
    let (start, end) = match setting.kind {
        PeriodKind::None => return None,
        PeriodKind::Day => {
            let start = now.date().midnight().assume_utc();
            (start, plus(start, Duration::DAY))
        }
        PeriodKind::Week => {
            let back = i64::from(now.weekday().number_days_from_monday());
            let midnight = now.date().midnight().assume_utc();
            let start = midnight
                .checked_sub(Duration::days(back))
                .unwrap_or(midnight);
            (start, plus(start, Duration::WEEK))
        }
        PeriodKind::Month => {
            let first = month_start(now.year(), now.month());
            let (year, month) = next_month(now.year(), now.month());
            (first, month_start(year, month))
        }
        PeriodKind::Anniversary => anniversary(datetime(plan_started_ms), now),
    };
    // The change of kind starts a period for the users on the plan then;
    // a user who came to the plan later counts from the calendar's start,
    // as on any plan with that period. (A clock behind the change gives a
    // period from the change on.)
    let floor = if setting.since_ms > plan_started_ms {
        setting.since_ms
    } else {
        i64::MIN
    };
    let start_ms = unix_ms(start).max(floor);
    Some(Period {
        kind: setting.kind,
        start_ms,
        end_ms: unix_ms(end).max(start_ms),
    })
}

/// The period a user's key counts at `now_ms`, from what a backend read:
/// the plan's period row for the key (kind and since, if any) and the
/// user's plan start.
pub(crate) fn read(
    kind: Option<&str>,
    since_ms: Option<i64>,
    plan_started_ms: i64,
    now_ms: i64,
) -> Result<Option<Period>, StoreError> {
    let Some(kind) = kind else {
        return Ok(None);
    };
    let kind = kind
        .parse()
        .map_err(|e: UnknownPeriod| StoreError::Database(e.to_string()))?;
    let setting = PeriodSetting {
        kind,
        since_ms: since_ms.unwrap_or(0),
    };
    Ok(current(setting, plan_started_ms, now_ms))
}

/// A plan's periods as stored (key, kind's name), parsed.
pub(crate) fn parse_all(
    rows: Vec<(String, String)>,
) -> Result<Vec<(String, PeriodKind)>, StoreError> {
    rows.into_iter()
        .map(|(key, kind)| {
            let kind = kind
                .parse()
                .map_err(|e: UnknownPeriod| StoreError::Database(e.to_string()))?;
            Ok((key, kind))
        })
        .collect()
}

/// The anniversary month around `now`: from the `n`th monthly
/// anniversary of `anchor` to the next, each computed from the anchor (so
/// a plan started on Jan 31 renews on Feb 28 or 29, then on Mar 31).
fn anniversary(anchor: OffsetDateTime, now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    if now < anchor {
        // A clock behind the plan start: the first period.
        return (anchor, months_after(anchor, 1));
    }
    let months = (now.year() - anchor.year()) * 12 + i32::from(u8::from(now.month()))
        - i32::from(u8::from(anchor.month()));
    let mut n = months.max(0);
    while n > 0 && months_after(anchor, n) > now {
        n -= 1;
    }
    (months_after(anchor, n), months_after(anchor, n + 1))
}

/// `anchor` moved `n` months on: same day (or the month's last), same time.
fn months_after(anchor: OffsetDateTime, n: i32) -> OffsetDateTime {
    let index = anchor.year() * 12 + i32::from(u8::from(anchor.month())) - 1 + n;
    let year = index.div_euclid(12);
    let month = month_of(index.rem_euclid(12) + 1);
    let day = anchor.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX);
    date.with_time(anchor.time()).assume_utc()
}

fn plus(at: OffsetDateTime, by: Duration) -> OffsetDateTime {
    at.checked_add(by).unwrap_or(at)
}

fn month_of(number: i32) -> Month {
    u8::try_from(number)
        .ok()
        .and_then(|n| Month::try_from(n).ok())
        .unwrap_or(Month::December)
}

fn month_start(year: i32, month: Month) -> OffsetDateTime {
    Date::from_calendar_date(year, month, 1)
        .unwrap_or(Date::MAX)
        .with_time(Time::MIDNIGHT)
        .assume_utc()
}

fn next_month(year: i32, month: Month) -> (i32, Month) {
    match month {
        Month::December => (year + 1, Month::January),
        other => (year, other.next()),
    }
}

/// The instant of `ms`, clamped to what the calendar holds.
fn datetime(ms: i64) -> OffsetDateTime {
    let nanos = i128::from(ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(if ms < 0 {
        Date::MIN.midnight().assume_utc()
    } else {
        Date::MAX.midnight().assume_utc()
    })
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;

    /// An RFC 3339 instant, in Unix ms.
    fn ms(at: &str) -> i64 {
        unix_ms(OffsetDateTime::parse(at, &Rfc3339).unwrap())
    }

    fn setting(kind: PeriodKind) -> PeriodSetting {
        PeriodSetting { kind, since_ms: 0 }
    }

    fn period(kind: PeriodKind, anchor: &str, now: &str) -> (i64, i64) {
        let p = current(setting(kind), ms(anchor), ms(now)).unwrap();
        (p.start_ms, p.end_ms)
    }

    const ANCHOR: &str = "2024-01-01T00:00:00Z";

    #[test]
    fn no_period_counts_for_ever() {
        assert_eq!(current(setting(PeriodKind::None), 0, 5), None);
    }

    #[test]
    fn a_day_runs_from_midnight_to_midnight_utc() {
        let now = "2026-03-10T23:59:59.999Z";
        assert_eq!(
            period(PeriodKind::Day, ANCHOR, now),
            (ms("2026-03-10T00:00:00Z"), ms("2026-03-11T00:00:00Z"))
        );
        let next = current(setting(PeriodKind::Day), 0, ms(now) + 1).unwrap();
        assert_eq!(next.start_ms, ms("2026-03-11T00:00:00Z"));
    }

    #[test]
    fn a_week_starts_on_monday() {
        // 2026-12-06 is a Sunday; the week began on Monday 2026-11-30.
        let sunday = "2026-12-06T23:59:59.999Z";
        assert_eq!(
            period(PeriodKind::Week, ANCHOR, sunday),
            (ms("2026-11-30T00:00:00Z"), ms("2026-12-07T00:00:00Z"))
        );
        let monday = ms(sunday) + 1;
        let next = current(setting(PeriodKind::Week), 0, monday).unwrap();
        assert_eq!(next.start_ms, monday);
    }

    #[test]
    fn a_calendar_month_ends_at_the_next_first() {
        let now = "2026-12-31T23:59:59.999Z";
        assert_eq!(
            period(PeriodKind::Month, ANCHOR, now),
            (ms("2026-12-01T00:00:00Z"), ms("2027-01-01T00:00:00Z"))
        );
        let feb = period(PeriodKind::Month, ANCHOR, "2024-02-15T12:00:00Z");
        assert_eq!(feb.1, ms("2024-03-01T00:00:00Z"));
    }

    #[test]
    fn an_anniversary_on_the_31st_lands_on_the_last_day_of_february() {
        let anchor = "2025-01-31T10:30:00Z";
        // 2025 is not a leap year: Feb 28.
        assert_eq!(
            period(PeriodKind::Anniversary, anchor, "2025-02-10T00:00:00Z"),
            (ms("2025-01-31T10:30:00Z"), ms("2025-02-28T10:30:00Z"))
        );
        // And back to the 31st in March: computed from the anchor.
        assert_eq!(
            period(PeriodKind::Anniversary, anchor, "2025-03-01T00:00:00Z"),
            (ms("2025-02-28T10:30:00Z"), ms("2025-03-31T10:30:00Z"))
        );
        // 2028 is a leap year: Feb 29.
        let leap = "2028-01-31T00:00:00Z";
        assert_eq!(
            period(PeriodKind::Anniversary, leap, "2028-02-29T12:00:00Z"),
            (ms("2028-02-29T00:00:00Z"), ms("2028-03-31T00:00:00Z"))
        );
    }

    #[test]
    fn one_millisecond_either_side_of_an_anniversary() {
        let anchor = "2025-01-31T10:30:00Z";
        let boundary = ms("2025-02-28T10:30:00Z");
        let before = current(setting(PeriodKind::Anniversary), ms(anchor), boundary - 1).unwrap();
        let at = current(setting(PeriodKind::Anniversary), ms(anchor), boundary).unwrap();
        assert_eq!(before.end_ms, boundary);
        assert_eq!(at.start_ms, boundary);
        assert!(before.start_ms < at.start_ms);
    }

    #[test]
    fn anniversaries_cross_years() {
        let anchor = "2025-11-15T08:00:00Z";
        assert_eq!(
            period(PeriodKind::Anniversary, anchor, "2026-01-20T00:00:00Z"),
            (ms("2026-01-15T08:00:00Z"), ms("2026-02-15T08:00:00Z"))
        );
        // Before the day of the month comes round: still the last period.
        assert_eq!(
            period(PeriodKind::Anniversary, anchor, "2026-01-15T07:59:00Z").0,
            ms("2025-12-15T08:00:00Z")
        );
    }

    #[test]
    fn a_change_of_kind_starts_a_period_at_that_instant() {
        let since = ms("2026-12-15T09:00:00Z");
        let p = current(
            PeriodSetting {
                kind: PeriodKind::Month,
                since_ms: since,
            },
            0,
            ms("2026-12-20T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(p.start_ms, since);
        assert_eq!(p.end_ms, ms("2027-01-01T00:00:00Z"));
        // The next month is a whole one.
        let next = current(
            PeriodSetting {
                kind: PeriodKind::Month,
                since_ms: since,
            },
            0,
            ms("2027-01-02T00:00:00Z"),
        )
        .unwrap();
        assert_eq!(next.start_ms, ms("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn a_user_who_joins_after_the_change_counts_from_the_calendar() {
        let setting = PeriodSetting {
            kind: PeriodKind::Month,
            since_ms: ms("2026-12-15T09:00:00Z"),
        };
        let joined = ms("2026-12-20T00:00:00Z");
        let p = current(setting, joined, ms("2026-12-21T00:00:00Z")).unwrap();
        assert_eq!(p.start_ms, ms("2026-12-01T00:00:00Z"));
    }

    #[test]
    fn extreme_clocks_give_a_period_and_never_panic() {
        for now in [i64::MIN, -1, 0, 1, i64::MAX] {
            for kind in PeriodKind::ALL {
                if let Some(p) = current(setting(kind), now, now) {
                    assert!(p.start_ms <= p.end_ms, "{kind} at {now}");
                }
                let _ = current(setting(kind), 0, now);
            }
        }
    }

    #[test]
    fn kinds_read_back_from_their_names() {
        for kind in PeriodKind::ALL {
            assert_eq!(kind.as_str().parse::<PeriodKind>(), Ok(kind));
        }
        assert!("monthly".parse::<PeriodKind>().is_err());
    }
}
