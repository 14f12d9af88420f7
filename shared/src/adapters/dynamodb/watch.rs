//! The due index (`DueIndex`, sparse, keys only): `due_pk` = `DUE#{shard}`,
//! `due_sk` = `{when}#{id}`, present on live tasks (`tasks.rs`), on
//! deliveries not yet finished (`deliveries.rs`) and on fan-out markers
//! (`fanout.rs`), removed when they end. The
//! watchdog reads only what is due, oldest first.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::{s, DynamoStore, Item};
use crate::domain::watch::{self, Watched};
use crate::domain::{DeliveryId, Page, PageKey, TaskId};
use crate::error::StoreError;
use crate::ports::WatchIndex;
use crate::time::sort_ts;

/// The due index's partition key for a shard.
pub(super) fn due_pk(shard: u8) -> String {
    format!("DUE#{shard}")
}

/// The due index's sort key: when (rounded up to
/// `watch::DUE_GRANULARITY_S`), then what (unique, ordered by time).
pub(super) fn due_sk(when: DateTime<Utc>, what: &impl std::fmt::Display) -> String {
    format!("{}#{what}", sort_ts(round_up(when)))
}

fn round_up(when: DateTime<Utc>) -> DateTime<Utc> {
    let g = watch::DUE_GRANULARITY_S * 1000;
    let ms = when.timestamp_millis();
    let rounded = ms.div_euclid(g) * g + if ms.rem_euclid(g) == 0 { 0 } else { g };
    DateTime::from_timestamp_millis(rounded).unwrap_or(when)
}

fn watched(item: Item) -> Result<Watched, StoreError> {
    let key = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
    let corrupt = |detail: String| StoreError::Corrupt {
        what: "due index entry",
        detail,
    };
    let (pk, sk) = (key("pk"), key("sk"));
    let task_id: TaskId = pk
        .strip_prefix("TASK#")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| corrupt(format!("pk {pk}")))?;
    if sk == super::TASK_SK {
        return Ok(Watched::Task(task_id));
    }
    if sk.starts_with(super::FANOUT_PREFIX) {
        return Ok(Watched::Fanout(task_id));
    }
    match sk.strip_prefix("DELIVERY#").map(str::parse::<DeliveryId>) {
        Some(Ok(delivery_id)) => Ok(Watched::Delivery(task_id, delivery_id)),
        _ => Err(corrupt(format!("sk {sk}"))),
    }
}

#[async_trait]
impl WatchIndex for DynamoStore {
    async fn due(
        &self,
        shard: u8,
        now: DateTime<Utc>,
        limit: usize,
        start: Option<PageKey>,
    ) -> Result<Page<Watched>, StoreError> {
        // `~` sorts after every id: everything due at or before `now`
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .index_name("DueIndex")
            .key_condition_expression("due_pk = :pk AND due_sk <= :now")
            .expression_attribute_values(":pk", s(due_pk(shard)))
            .expression_attribute_values(":now", s(format!("{}#~", sort_ts(now))))
            .scan_index_forward(true);
        self.query_page(query, limit, start, watched).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_rounded_up_to_the_granularity() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let t = "0b7e5a4e-2f1c-4c8e-9d3a-6f5b4e3d2c1b";
        // never earlier than due: the watchdog must not find a check before its time
        assert_eq!(
            due_sk(at("2026-11-30T10:00:00.001Z"), &t),
            format!("{}#{t}", sort_ts(at("2026-11-30T10:00:10Z")))
        );
        assert_eq!(
            due_sk(at("2026-11-30T10:00:09.999Z"), &t),
            format!("{}#{t}", sort_ts(at("2026-11-30T10:00:10Z")))
        );
        // on the boundary it stays
        assert_eq!(
            due_sk(at("2026-11-30T10:00:10Z"), &t),
            format!("{}#{t}", sort_ts(at("2026-11-30T10:00:10Z")))
        );
        // events a few seconds apart keep one entry
        assert_eq!(
            due_sk(at("2026-11-30T10:15:01.200Z"), &t),
            due_sk(at("2026-11-30T10:15:08.900Z"), &t)
        );
    }
}
