//! Named schedules: six-field NCRONTAB expressions that start an orchestration at each
//! occurrence. Each occurrence gets a deterministic instance id (schedule name + occurrence
//! time), so a double fire — two replicas, a host restart, a past-due catch-up — starts it
//! once. The Functions timer trigger and the standalone worker both call [`fire_due`].
//!
//! Catch-up: each call starts every occurrence in its look-back window that has not been
//! started yet, oldest first (2 minutes, or 24 hours when the host says its timer is past
//! due; the standalone worker looks back to its previous tick), so a schedule finer than the
//! caller's tick loses nothing. At most [`MAX_CATCH_UP`] occurrences per schedule and call;
//! older ones are logged as missed. Every start and every skip is logged.
//!
//! Time zones: a schedule may name an IANA zone (`timeZone`, default UTC); its expression
//! is then read in local time, and every local occurrence fires exactly once across
//! daylight-saving changes: one that falls in the hour skipped in spring fires when the
//! clocks jump (at the end of the gap), one in the hour repeated in autumn fires the first
//! time. (The `cron` crate alone skips the first and fires the second twice.)

mod book;
mod firing;

pub use book::{BookEntry, BookError, Origin, Paused, ScheduleBook, ScheduleRecord};
pub use firing::{
    backfill, fire_due, look_back, trigger_now, BackfillError, Backfilled, Fired, MAX_BACKFILL,
};

use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The most occurrences of one schedule a single call starts (the newest ones).
pub const MAX_CATCH_UP: usize = 100;

/// What to do when the previous run of a schedule is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Overlap {
    /// Skip the occurrence.
    #[default]
    Skip,
    /// Start it anyway.
    Allow,
    /// Hold one occurrence back and start it when the previous run ends (later ones, while
    /// one is held, are skipped).
    BufferOne,
    /// Terminate the previous run and start this one.
    CancelPrevious,
}

/// One schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Name (letters, digits, `-`, `_`).
    pub name: String,
    /// Six-field NCRONTAB: second minute hour day month day-of-week (0 = Sunday).
    pub cron: String,
    /// Orchestration to start.
    pub orchestration: String,
    /// Input; every string `{{occurrence}}` in it becomes the occurrence time (RFC 3339).
    #[serde(default)]
    pub input: Value,
    /// Overlap policy.
    #[serde(default)]
    pub overlap: Overlap,
    /// IANA time zone the expression is read in (`Europe/Berlin`); UTC when absent.
    #[serde(default, rename = "timeZone", skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    cron: cron::Schedule,
    zone: Tz,
}

/// Converts NCRONTAB's day-of-week numbers (0–6, Sunday = 0) to the `cron` crate's (1–7,
/// Sunday = 1); names pass through.
fn ncrontab_to_cron(expression: &str) -> Result<String, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() != 6 {
        return Err(format!(
            "'{expression}' has {} fields; NCRONTAB needs six: second minute hour day month day-of-week",
            fields.len()
        ));
    }
    let mut dow = String::new();
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| -> Result<(), String> {
        if !number.is_empty() {
            let n: u32 = number
                .parse()
                .map_err(|_| format!("bad day of week '{number}'"))?;
            if n > 6 {
                return Err(format!("day of week {n} is out of range 0-6"));
            }
            out.push_str(&(n + 1).to_string());
            number.clear();
        }
        Ok(())
    };
    let mut after_slash = false;
    for c in fields[5].chars() {
        if c.is_ascii_digit() && !after_slash {
            number.push(c);
        } else {
            flush(&mut number, &mut dow)?;
            after_slash = c == '/' || (after_slash && c.is_ascii_digit());
            dow.push(c);
        }
    }
    flush(&mut number, &mut dow)?;
    Ok(format!(
        "{} {} {} {} {} {}",
        fields[0], fields[1], fields[2], fields[3], fields[4], dow
    ))
}

impl Schedule {
    /// Parses and checks a schedule.
    pub fn parse(spec: ScheduleSpec) -> Result<Self, String> {
        if spec.name.is_empty()
            || !spec
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "schedule name '{}' must be letters, digits, '-' or '_'",
                spec.name
            ));
        }
        let expression =
            ncrontab_to_cron(&spec.cron).map_err(|e| format!("schedule '{}': {e}", spec.name))?;
        let cron = cron::Schedule::from_str(&expression).map_err(|e| {
            format!(
                "schedule '{}': '{}' is not a valid NCRONTAB expression: {e}",
                spec.name, spec.cron
            )
        })?;
        let zone = match &spec.time_zone {
            None => Tz::UTC,
            Some(name) => name.parse::<Tz>().map_err(|_| {
                format!(
                    "schedule '{}': '{name}' is not an IANA time zone (such as Europe/Berlin)",
                    spec.name
                )
            })?,
        };
        Ok(Self { spec, cron, zone })
    }

    /// Occurrences after `at`, in order, each local occurrence once (see the module's
    /// note on daylight-saving changes).
    fn after(&self, at: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // The expression walks local wall-clock times (as if they were UTC); each is then
        // placed on the timeline of the zone.
        let local = Utc.from_utc_datetime(&at.with_timezone(&self.zone).naive_local());
        let mut last: Option<DateTime<Utc>> = None;
        self.cron
            .after(&local)
            .map(|wall| self.instant_of(wall.naive_utc()))
            .filter(move |t| {
                let new = *t > at && last.is_none_or(|l| *t > l);
                if new {
                    last = Some(*t);
                }
                new
            })
    }

    /// The instant of a local wall-clock time: the first of two in the repeated hour, the
    /// end of the gap for one in the skipped hour.
    fn instant_of(&self, wall: NaiveDateTime) -> DateTime<Utc> {
        if let Some(t) = self.zone.from_local_datetime(&wall).earliest() {
            return t.with_timezone(&Utc);
        }
        // In a gap (an hour or so, anywhere): the first wall-clock minute that exists, the
        // moment the clocks jumped.
        let mut probe = wall.with_second(0).unwrap_or(wall);
        for _ in 0..(24 * 60) {
            probe += Duration::minutes(1);
            if let Some(t) = self.zone.from_local_datetime(&probe).earliest() {
                return t.with_timezone(&Utc);
            }
        }
        wall.and_utc()
    }

    /// The schedule's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The occurrences in `(now - look_back, now]`, oldest first: the newest `limit` of
    /// them, and how many older ones did not fit.
    pub fn due_occurrences(
        &self,
        now: DateTime<Utc>,
        look_back: Duration,
        limit: usize,
    ) -> (Vec<DateTime<Utc>>, usize) {
        let mut due: Vec<DateTime<Utc>> = self
            .after(now - look_back)
            .take_while(|t| *t <= now)
            .collect();
        let missed = due.len().saturating_sub(limit);
        due.drain(..missed);
        (due, missed)
    }

    /// The first occurrence after `at`.
    pub fn next_occurrence(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.after(at).next()
    }

    /// What the schedule was configured with.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The next `n` occurrences after `at`.
    pub fn upcoming(&self, at: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        self.after(at).take(n).collect()
    }

    /// The latest `n` occurrences at or before `now` within the last year, oldest first.
    /// (The cron iterator only goes forwards: widening windows keep a minutely schedule
    /// from walking a year of occurrences.)
    pub fn recent(&self, now: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let windows = [
            Duration::hours(1),
            Duration::days(1),
            Duration::days(7),
            Duration::days(31),
            Duration::days(366),
        ];
        let mut found = Vec::new();
        for window in windows {
            found = self.due_occurrences(now, window, n).0;
            if found.len() >= n {
                break;
            }
        }
        found
    }

    /// The instance id of an occurrence.
    pub fn instance_id(&self, occurrence: DateTime<Utc>) -> String {
        format!(
            "schedule-{}-{}",
            self.spec.name,
            occurrence.format("%Y%m%dT%H%M%SZ")
        )
    }

    fn input(&self, occurrence: DateTime<Utc>) -> Value {
        fn fill(value: &Value, at: &str) -> Value {
            match value {
                Value::String(s) => Value::String(s.replace("{{occurrence}}", at)),
                Value::Array(items) => Value::Array(items.iter().map(|v| fill(v, at)).collect()),
                Value::Object(map) => {
                    Value::Object(map.iter().map(|(k, v)| (k.clone(), fill(v, at))).collect())
                }
                other => other.clone(),
            }
        }
        fill(&self.spec.input, &occurrence.to_rfc3339())
    }
}

/// Where the schedules come from.
#[derive(Debug, clap::Args)]
pub struct SchedulesArgs {
    /// Schedules as a JSON array (see README).
    #[arg(long, env = "FLOWFORGE_SCHEDULES")]
    pub schedules: Option<String>,
    /// Or a file holding that JSON array.
    #[arg(long, env = "FLOWFORGE_SCHEDULES_FILE")]
    pub schedules_file: Option<std::path::PathBuf>,
}

impl SchedulesArgs {
    /// Loads and validates the schedules.
    pub fn load(&self) -> anyhow::Result<Vec<Schedule>> {
        let text = match (&self.schedules, &self.schedules_file) {
            (Some(json), _) => json.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?,
            (None, None) => String::new(),
        };
        parse_all(&text).map_err(anyhow::Error::msg)
    }
}

/// Parses the schedules of a JSON array (the `FLOWFORGE_SCHEDULES` setting or a file).
pub fn parse_all(json: &str) -> Result<Vec<Schedule>, String> {
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    let specs: Vec<ScheduleSpec> =
        serde_json::from_str(json).map_err(|e| format!("schedules are not valid: {e}"))?;
    let mut names = std::collections::HashSet::new();
    specs
        .into_iter()
        .map(|spec| {
            if !names.insert(spec.name.clone()) {
                return Err(format!("schedule '{}' is defined twice", spec.name));
            }
            Schedule::parse(spec)
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::TimeZone;

    pub(crate) fn spec(cron: &str) -> ScheduleSpec {
        ScheduleSpec {
            name: "nightly".into(),
            cron: cron.into(),
            orchestration: "demo".into(),
            input: Value::Null,
            overlap: Overlap::Skip,
            time_zone: None,
        }
    }

    pub(crate) fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn berlin_0230() -> Schedule {
        Schedule::parse(ScheduleSpec {
            time_zone: Some("Europe/Berlin".into()),
            ..spec("0 30 2 * * *")
        })
        .unwrap()
    }

    #[test]
    fn a_daily_0230_in_berlin_fires_once_a_day_across_spring_forward() {
        // 28 March 2027: at 02:00 CET the clocks go to 03:00 CEST; 02:30 does not exist
        // that day, so the run goes at the jump (03:00 CEST = 01:00 UTC).
        let fired = berlin_0230().upcoming(utc("2027-03-26T00:00:00Z"), 4);
        assert_eq!(
            fired,
            [
                utc("2027-03-26T01:30:00Z"), // 02:30 CET
                utc("2027-03-27T01:30:00Z"),
                utc("2027-03-28T01:00:00Z"), // the gap's end
                utc("2027-03-29T00:30:00Z"), // 02:30 CEST
            ]
        );
    }

    #[test]
    fn a_daily_0230_in_berlin_fires_once_a_day_across_fall_back() {
        // 31 October 2027: at 03:00 CEST the clocks go back to 02:00 CET; 02:30 happens
        // twice, and the run goes the first time only.
        let schedule = berlin_0230();
        let fired = schedule.upcoming(utc("2027-10-30T00:00:00Z"), 3);
        assert_eq!(
            fired,
            [
                utc("2027-10-30T00:30:00Z"), // 02:30 CEST
                utc("2027-10-31T00:30:00Z"), // the first 02:30 (CEST)
                utc("2027-11-01T01:30:00Z"), // 02:30 CET
            ]
        );
        // Looking from inside the repeated hour (02:10 CET, the second pass) does not
        // fire the 02:30 of that day again.
        assert_eq!(
            schedule.next_occurrence(utc("2027-10-31T01:10:00Z")),
            Some(utc("2027-11-01T01:30:00Z"))
        );
        // The timer's catch-up over the whole night: one occurrence.
        let (due, missed) = schedule.due_occurrences(
            utc("2027-10-31T03:00:00Z"),
            Duration::hours(6),
            MAX_CATCH_UP,
        );
        assert_eq!((due, missed), (vec![utc("2027-10-31T00:30:00Z")], 0));
    }

    #[test]
    fn every_15_minutes_through_the_spring_gap_fires_the_jump_once() {
        let schedule = Schedule::parse(ScheduleSpec {
            time_zone: Some("Europe/Berlin".into()),
            ..spec("0 */15 * * * *")
        })
        .unwrap();
        // 01:45 CET, then 02:00–02:45 do not exist: one run at the jump, then 03:15 CEST.
        let fired = schedule.upcoming(utc("2027-03-28T00:30:00Z"), 4);
        assert_eq!(
            fired,
            [
                utc("2027-03-28T00:45:00Z"),
                utc("2027-03-28T01:00:00Z"),
                utc("2027-03-28T01:15:00Z"),
                utc("2027-03-28T01:30:00Z"),
            ]
        );
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_its_name() {
        let error = Schedule::parse(ScheduleSpec {
            time_zone: Some("Mars/Olympus".into()),
            ..spec("0 30 2 * * *")
        })
        .unwrap_err();
        assert!(error.contains("Mars/Olympus"), "{error}");
    }

    #[test]
    fn ncrontab_days_of_week_are_sunday_zero() {
        assert_eq!(ncrontab_to_cron("0 0 9 * * 1-5").unwrap(), "0 0 9 * * 2-6");
        assert_eq!(ncrontab_to_cron("0 0 9 * * 0,6").unwrap(), "0 0 9 * * 1,7");
        assert_eq!(ncrontab_to_cron("0 0 9 * * Mon").unwrap(), "0 0 9 * * Mon");
        assert!(ncrontab_to_cron("0 9 * * *").unwrap_err().contains("six"));
        assert!(ncrontab_to_cron("0 0 9 * * 7").is_err());
        // Sunday 2026-11-29 09:00 is an occurrence of "every Sunday at 9".
        let sunday = Schedule::parse(spec("0 0 9 * * 0")).unwrap();
        let at = Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 30).unwrap();
        assert_eq!(
            sunday.due_occurrences(at, Duration::minutes(2), MAX_CATCH_UP),
            (
                vec![Utc.with_ymd_and_hms(2026, 11, 29, 9, 0, 0).unwrap()],
                0
            )
        );
    }

    #[test]
    fn occurrences_and_ids_are_deterministic() {
        let every5 = Schedule::parse(spec("0 */5 * * * *")).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 7, 3).unwrap();
        let (due, _) = every5.due_occurrences(now, Duration::minutes(10), MAX_CATCH_UP);
        let occurrence = *due.last().unwrap();
        assert_eq!(
            occurrence,
            Utc.with_ymd_and_hms(2026, 1, 1, 10, 5, 0).unwrap()
        );
        assert_eq!(
            every5.instance_id(occurrence),
            "schedule-nightly-20260101T100500Z"
        );
        assert_eq!(
            every5.due_occurrences(now, Duration::minutes(2), MAX_CATCH_UP),
            (vec![], 0),
            "10:05 is outside a 2-minute look-back"
        );
        assert!(Schedule::parse(spec("not a cron at all")).is_err());
    }

    #[test]
    fn a_schedule_finer_than_the_tick_loses_no_occurrence() {
        // Every 10 s, looked at by a once-a-minute tick: all six occurrences of the last
        // minute are due, oldest first, none dropped.
        let every10 = Schedule::parse(spec("*/10 * * * * *")).unwrap();
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 10, 1, 0).unwrap();
        let (due, missed) = every10.due_occurrences(now, Duration::minutes(1), MAX_CATCH_UP);
        let seconds: Vec<u32> = due.iter().map(chrono::Timelike::second).collect();
        assert_eq!(seconds, vec![10, 20, 30, 40, 50, 0]);
        assert_eq!(missed, 0);
        assert_eq!(
            every10.next_occurrence(now),
            Some(Utc.with_ymd_and_hms(2026, 1, 1, 10, 1, 10).unwrap())
        );
        // A day of per-second occurrences after an outage: only the newest are started, and
        // the rest are counted as missed.
        let every_second = Schedule::parse(spec("* * * * * *")).unwrap();
        let (due, missed) = every_second.due_occurrences(now, look_back(true), MAX_CATCH_UP);
        assert_eq!(due.len(), MAX_CATCH_UP);
        assert_eq!(missed, 24 * 3600 - MAX_CATCH_UP);
        assert_eq!(due.last(), Some(&now));
    }
}
