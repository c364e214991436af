//! Listing instances: the filters the table service evaluates itself, so that a page reads
//! about as many state rows as it returns instead of the whole task hub.
//!
//! The state row carries its kind (`Kind`), the status (`Status`) and the creation time
//! (`CreatedAt`, RFC 3339 in UTC) as properties of their own and begins its RowKey with the
//! instance id; the service returns a partition's rows in RowKey order, which is instance id
//! order (`rows`), so a listing merges one query per table partition and a page ends once
//! it has one match more than it holds. The service's filter only narrows: every row is
//! still checked against the whole query (the workflow id, inside the state body, only
//! there).

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use flowforge_orchestrator::backend::InstanceQuery;

use crate::rows::{encode_id, odata_quote, InstanceKeys, STATE_KIND};

/// The OData filter of a listing in one table partition: state rows after the continuation,
/// of the statuses, in the creation window and from the id prefix on.
pub(crate) fn service_filter(query: &InstanceQuery, partition: &str) -> String {
    let mut clauses = vec![
        format!("PartitionKey eq '{partition}'"),
        format!("Kind eq '{STATE_KIND}'"),
    ];
    if let Some(after) = &query.continuation {
        // The state row of the last instance listed (its partition does not matter).
        let key = InstanceKeys::of(after, 1).state_row();
        clauses.push(format!("RowKey gt '{}'", odata_quote(&key)));
    }
    if let Some(prefix) = query
        .instance_id_prefix
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        clauses.push(format!("RowKey ge '{}'", odata_quote(&encode_id(prefix))));
    }
    if !query.statuses.is_empty() {
        let any = query
            .statuses
            .iter()
            .map(|s| format!("Status eq '{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(" or ");
        clauses.push(format!("({any})"));
    }
    // Whole seconds, widened outwards: compared as text, "…:05+00:00" sorts before every
    // "…:05.xxx+00:00", so the bounds never cut off a match; the exact check is ours.
    if let Some(from) = query.created_from {
        clauses.push(format!(
            "CreatedAt ge '{}'",
            whole_second(from).to_rfc3339()
        ));
    }
    if let Some(to) = query.created_to {
        let up = whole_second(to) + TimeDelta::seconds(1);
        clauses.push(format!("CreatedAt le '{}'", up.to_rfc3339()));
    }
    clauses.join(" and ")
}

/// Whether the listing is past every id with the prefix (rows come in id order).
pub(crate) fn past_prefix(query: &InstanceQuery, instance_id: &str) -> bool {
    match query.instance_id_prefix.as_deref() {
        Some(prefix) => !instance_id.starts_with(prefix) && instance_id > prefix,
        None => false,
    }
}

/// Rows asked for per request: one more than the page (the match that tells a next page
/// exists), within the service's 1,000.
pub(crate) fn rows_per_request(page_size: usize) -> u32 {
    (page_size + 1).min(1000) as u32
}

fn whole_second(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::seconds(1)).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use flowforge_orchestrator::status::RuntimeStatus;

    #[test]
    fn every_filter_goes_to_the_service() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Running, RuntimeStatus::Pending],
            created_from: Some(Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 5).unwrap()),
            created_to: Some(
                Utc.with_ymd_and_hms(2026, 12, 3, 8, 0, 0).unwrap() + TimeDelta::milliseconds(250),
            ),
            instance_id_prefix: Some("run-o'brien".into()),
            continuation: Some("run-o'brien-7".into()),
            ..Default::default()
        };
        assert_eq!(
            service_filter(&query, "03"),
            "PartitionKey eq '03' and Kind eq 'state' and RowKey gt 'run-o''brien-7  state' \
             and RowKey ge 'run-o''brien' \
             and (Status eq 'Running' or Status eq 'Pending') \
             and CreatedAt ge '2026-12-03T07:00:05+00:00' \
             and CreatedAt le '2026-12-03T08:00:01+00:00'"
        );
    }

    #[test]
    fn no_filter_lists_state_rows() {
        assert_eq!(
            service_filter(&InstanceQuery::default(), "00"),
            "PartitionKey eq '00' and Kind eq 'state'"
        );
    }

    #[test]
    fn the_text_bounds_never_cut_off_a_match() {
        // The stored form of times within the window, against the bounds' text.
        let from =
            Utc.with_ymd_and_hms(2026, 12, 3, 7, 0, 5).unwrap() + TimeDelta::milliseconds(500);
        let lower = whole_second(from).to_rfc3339();
        for stored in [
            from,
            from + TimeDelta::microseconds(1),
            from + TimeDelta::seconds(1),
        ] {
            assert!(stored.to_rfc3339() >= lower, "{stored}");
        }
        let to = from;
        let upper = (whole_second(to) + TimeDelta::seconds(1)).to_rfc3339();
        for stored in [
            to,
            to - TimeDelta::milliseconds(500),
            to - TimeDelta::hours(1),
        ] {
            assert!(stored.to_rfc3339() <= upper, "{stored}");
        }
    }

    #[test]
    fn a_prefix_ends_the_listing_once_passed() {
        let query = InstanceQuery {
            instance_id_prefix: Some("b".into()),
            ..Default::default()
        };
        assert!(!past_prefix(&query, "b-1"));
        assert!(past_prefix(&query, "c"));
        assert!(!past_prefix(&InstanceQuery::default(), "z"));
    }

    #[test]
    fn a_request_asks_for_one_more_than_the_page() {
        assert_eq!(rows_per_request(100), 101);
        assert_eq!(rows_per_request(5000), 1000);
    }
}
