//! Standard 5-field cron schedules, as Kubernetes reads a CronJob's
//! `schedule`: minute, hour, day of month, month, day of week, each a `*`,
//! a value, a range `a-b`, a step `*/n`, `a-b/n` or `a/n` (from `a` to the
//! end), or a comma-separated list of those; month and weekday names
//! (`JAN`..`DEC`, `SUN`..`SAT`, any case); `?` for `*` in the day fields;
//! a weekday of 7 is Sunday, as in Vixie cron; and the macros `@yearly`
//! (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`),
//! `@hourly`. When both day fields are restricted a day matching either
//! one matches (Vixie cron's rule); a field starting with `*` or `?` does
//! not restrict. Times are UTC Unix seconds.

use std::fmt;

/// A parsed schedule: the allowed values of each field as bit sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minutes: u64,
    hours: u32,
    days_of_month: u32,
    months: u16,
    days_of_week: u8,
    /// Whether the day-of-month field starts with `*` or `?`.
    dom_star: bool,
    /// Whether the day-of-week field starts with `*` or `?`.
    dow_star: bool,
}

/// Why a schedule does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// How far ahead (or back) a search looks before it gives up: a schedule
/// such as `0 0 30 2 *` (30 February) never fires.
const SEARCH_YEARS: i64 = 5;

/// One field's bounds and names.
struct Field {
    what: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of the first name (1 for months, 0 for days).
    first_name: u32,
}

impl Field {
    fn value(&self, text: &str) -> Result<u32, ParseError> {
        if let Some(i) = self.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Ok(self.first_name + u32::try_from(i).unwrap_or(0));
        }
        let v: u32 = text
            .parse()
            .map_err(|_| ParseError(format!("{}: {text:?} is not a number", self.what)))?;
        if v < self.min || v > self.max {
            return Err(ParseError(format!(
                "{}: {v} is out of range {}-{}",
                self.what, self.min, self.max
            )));
        }
        Ok(v)
    }

    /// The set of values `text` allows, as bits, and whether it starts
    /// with a star.
    fn parse(&self, text: &str) -> Result<(u64, bool), ParseError> {
        let mut bits = 0u64;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let step: u32 = s.parse().map_err(|_| {
                        ParseError(format!("{}: step {s:?} is not a number", self.what))
                    })?;
                    if step == 0 || step > self.max {
                        return Err(ParseError(format!(
                            "{}: step {step} is out of range 1-{}",
                            self.what, self.max
                        )));
                    }
                    (r, Some(step))
                }
                None => (part, None),
            };
            let (lo, hi) = if range == "*" || range == "?" {
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else {
                let v = self.value(range)?;
                // `a/n` runs from a to the end of the field.
                (v, if step.is_some() { self.max } else { v })
            };
            if lo > hi {
                return Err(ParseError(format!(
                    "{}: range {lo}-{hi} runs backwards",
                    self.what
                )));
            }
            let step = step.unwrap_or(1);
            let mut v = lo;
            while v <= hi {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, text.starts_with('*') || text.starts_with('?')))
    }
}

impl Schedule {
    /// Parses a 5-field schedule or a macro.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            t if t.starts_with('@') => {
                return Err(ParseError(format!("unsupported schedule macro {text:?}")));
            }
            t if t.starts_with("tz=") || t.starts_with("cron_tz=") => {
                return Err(ParseError(
                    "a time zone in the schedule is not supported: use spec.timeZone".into(),
                ));
            }
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        let [minute, hour, dom, month, dow] = fields[..] else {
            return Err(ParseError(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
                fields.len()
            )));
        };
        let field = |what, min, max, names, first_name| Field {
            what,
            min,
            max,
            names,
            first_name,
        };
        let (minutes, _) = field("minute", 0, 59, &[], 0).parse(minute)?;
        let (hours, _) = field("hour", 0, 23, &[], 0).parse(hour)?;
        let (days_of_month, dom_star) = field("day of month", 1, 31, &[], 0).parse(dom)?;
        let (months, _) = field("month", 1, 12, &MONTHS, 1).parse(month)?;
        let (mut days_of_week, dow_star) = field("day of week", 0, 7, &DAYS, 0).parse(dow)?;
        // 7 is Sunday too.
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week | 1) & 0x7f;
        }
        let narrow = |bits: u64| u32::try_from(bits).unwrap_or(u32::MAX);
        Ok(Schedule {
            minutes,
            hours: narrow(hours),
            days_of_month: narrow(days_of_month),
            months: u16::try_from(months).unwrap_or(u16::MAX),
            days_of_week: u8::try_from(days_of_week).unwrap_or(u8::MAX),
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, t: &Civil) -> bool {
        let dom = self.days_of_month & (1 << t.day) != 0;
        let dow = self.days_of_week & (1 << t.weekday) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first time the schedule fires strictly after `after` (Unix
    /// seconds; fires are on whole minutes), or `None` if it never does
    /// within five years.
    pub fn next(&self, after: i64) -> Option<i64> {
        // The next whole minute.
        let mut t = after.div_euclid(60) * 60 + 60;
        let limit = after.saturating_add(SEARCH_YEARS * 366 * 86_400);
        while t <= limit {
            let c = Civil::of(t);
            if self.months & (1 << c.month) == 0 {
                t = Civil::unix(c.year + i64::from(c.month == 12), c.month % 12 + 1, 1);
            } else if !self.day_matches(&c) {
                t = (t.div_euclid(86_400) + 1) * 86_400;
            } else if self.hours & (1 << c.hour) == 0 {
                t = (t.div_euclid(3600) + 1) * 3600;
            } else if self.minutes & (1 << c.minute) == 0 {
                t += 60;
            } else {
                return Some(t);
            }
        }
        None
    }

    /// The last time the schedule fired at or before `at`, or `None` if it
    /// did not within five years.
    pub fn prev(&self, at: i64) -> Option<i64> {
        let mut t = at.div_euclid(60) * 60;
        let limit = at.saturating_sub(SEARCH_YEARS * 366 * 86_400);
        while t >= limit {
            let c = Civil::of(t);
            // Each step goes to the last minute of the previous month,
            // day or hour.
            if self.months & (1 << c.month) == 0 {
                t = Civil::unix(c.year, c.month, 1) - 60;
            } else if !self.day_matches(&c) {
                t = t.div_euclid(86_400) * 86_400 - 60;
            } else if self.hours & (1 << c.hour) == 0 {
                t = t.div_euclid(3600) * 3600 - 60;
            } else if self.minutes & (1 << c.minute) == 0 {
                t -= 60;
            } else {
                return Some(t);
            }
        }
        None
    }
}

/// A UTC time broken down into the fields cron looks at.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    /// 0 is Sunday.
    weekday: u32,
}

impl Civil {
    fn of(unix: i64) -> Self {
        let days = unix.div_euclid(86_400);
        let secs = unix.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let small = |v: i64| u32::try_from(v).unwrap_or(0);
        Civil {
            year,
            month: small(month),
            day: small(day),
            hour: small(secs / 3600),
            minute: small(secs / 60 % 60),
            // 1970-01-01 was a Thursday.
            weekday: small((days + 4).rem_euclid(7)),
        }
    }

    /// Unix seconds of midnight UTC on `year`-`month`-`day`.
    fn unix(year: i64, month: u32, day: u32) -> i64 {
        let (m, d) = (i64::from(month), i64::from(day));
        let y = if m <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        (era * 146_097 + doe - 719_468) * 86_400
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchd_sdk::meta::{format_time, parse_time};

    fn t(text: &str) -> i64 {
        parse_time(text).unwrap()
    }

    fn next(schedule: &str, after: &str) -> String {
        format_time(Schedule::parse(schedule).unwrap().next(t(after)).unwrap())
    }

    fn prev(schedule: &str, at: &str) -> String {
        format_time(Schedule::parse(schedule).unwrap().prev(t(at)).unwrap())
    }

    #[test]
    fn every_minute_fires_on_the_next_whole_minute() {
        assert_eq!(
            next("* * * * *", "2026-12-02T04:35:32Z"),
            "2026-12-02T04:36:00Z"
        );
        assert_eq!(
            next("* * * * *", "2026-12-02T04:36:00Z"),
            "2026-12-02T04:37:00Z"
        );
        assert_eq!(
            prev("* * * * *", "2026-12-02T04:35:32Z"),
            "2026-12-02T04:35:00Z"
        );
        assert_eq!(
            prev("* * * * *", "2026-12-02T04:35:00Z"),
            "2026-12-02T04:35:00Z"
        );
    }

    #[test]
    fn ranges_steps_and_lists() {
        assert_eq!(
            next("*/15 * * * *", "2026-12-02T04:35:32Z"),
            "2026-12-02T04:45:00Z"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-02T04:50:00Z"),
            "2026-12-02T05:00:00Z"
        );
        assert_eq!(
            next("5,10-12 * * * *", "2026-12-02T04:10:00Z"),
            "2026-12-02T04:11:00Z"
        );
        assert_eq!(
            next("5,10-12 * * * *", "2026-12-02T04:12:00Z"),
            "2026-12-02T05:05:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-12-02T10:00:00Z"),
            "2026-12-02T13:00:00Z"
        );
        assert_eq!(
            next("0 9-17/4 * * *", "2026-12-02T17:00:00Z"),
            "2026-12-03T09:00:00Z"
        );
        // `a/n`: from a to the end.
        assert_eq!(
            next("50/5 * * * *", "2026-12-02T04:51:00Z"),
            "2026-12-02T04:55:00Z"
        );
        assert_eq!(
            next("50/5 * * * *", "2026-12-02T04:56:00Z"),
            "2026-12-02T05:50:00Z"
        );
        assert_eq!(
            prev("30 2 * * *", "2026-12-02T01:00:00Z"),
            "2026-12-01T02:30:00Z"
        );
    }

    #[test]
    fn names_and_days() {
        // 2026-12-02 is a Wednesday.
        assert_eq!(
            next("0 0 * * mon", "2026-12-02T04:00:00Z"),
            "2026-12-07T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * SUN", "2026-12-02T04:00:00Z"),
            "2026-12-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * 7", "2026-12-02T04:00:00Z"),
            "2026-12-06T00:00:00Z"
        );
        assert_eq!(
            next("0 0 * * MON-FRI", "2026-12-04T04:00:00Z"),
            "2026-12-07T00:00:00Z"
        );
        assert_eq!(
            next("0 12 1 jan,Jul *", "2026-12-02T04:00:00Z"),
            "2027-01-01T12:00:00Z"
        );
        assert_eq!(
            next("0 12 1 FEB-MAR *", "2027-02-01T13:00:00Z"),
            "2027-03-01T12:00:00Z"
        );
        // Both days restricted: either matches (the 13th, or a Friday).
        assert_eq!(
            next("0 0 13 * 5", "2026-12-02T04:00:00Z"),
            "2026-12-04T00:00:00Z"
        );
        assert_eq!(
            next("0 0 13 * 5", "2026-12-11T04:00:00Z"),
            "2026-12-13T00:00:00Z"
        );
        // A starred field does not restrict: both must match.
        assert_eq!(
            next("0 0 */2 * 5", "2026-12-02T04:00:00Z"),
            "2026-12-11T00:00:00Z"
        );
        assert_eq!(
            next("0 0 ? * 5", "2026-12-02T04:00:00Z"),
            "2026-12-04T00:00:00Z"
        );
        // 29 February: the next leap year.
        assert_eq!(
            next("0 0 29 2 *", "2026-12-02T04:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            prev("0 0 29 2 *", "2026-12-02T04:00:00Z"),
            "2024-02-29T00:00:00Z"
        );
        assert_eq!(
            Schedule::parse("0 0 30 2 *")
                .unwrap()
                .next(t("2026-12-02T04:00:00Z")),
            None
        );
    }

    #[test]
    fn macros() {
        let at = "2026-12-02T04:35:32Z";
        assert_eq!(next("@hourly", at), "2026-12-02T05:00:00Z");
        assert_eq!(next("@daily", at), "2026-12-03T00:00:00Z");
        assert_eq!(next("@midnight", at), "2026-12-03T00:00:00Z");
        assert_eq!(next("@weekly", at), "2026-12-06T00:00:00Z");
        assert_eq!(next("@monthly", at), "2027-01-01T00:00:00Z");
        assert_eq!(next("@yearly", at), "2027-01-01T00:00:00Z");
        assert_eq!(next("@ANNUALLY", at), "2027-01-01T00:00:00Z");
        assert_eq!(prev("@monthly", at), "2026-12-01T00:00:00Z");
        assert_eq!(prev("@yearly", at), "2026-01-01T00:00:00Z");
    }

    #[test]
    fn bad_schedules_are_refused() {
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "a * * * *",
            "* * * FOO *",
            "@every 5m",
            "TZ=Europe/Paris * * * * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn next_and_prev_agree_over_a_year() {
        let s = Schedule::parse("7 */5 1,15 * MON").unwrap();
        let mut at = t("2026-01-01T00:00:00Z");
        let mut fired = Vec::new();
        while let Some(n) = s.next(at) {
            if n > t("2027-01-01T00:00:00Z") {
                break;
            }
            assert_eq!(s.prev(n), Some(n));
            assert_eq!(s.prev(n - 1), fired.last().copied().or(s.prev(n - 1)));
            fired.push(n);
            at = n;
        }
        // 52 Mondays and 24 days of month, less the overlap, 5 fires each.
        assert!((5 * 68..=5 * 76).contains(&fired.len()), "{}", fired.len());
    }
}
