//! The SQS batch pipeline shared by the SQS functions (recorder, processor,
//! webhook sender), the way Lambda's SQS integration with
//! `ReportBatchItemFailures` expects it:
//!
//! 1. every record is parsed on its own ([`Batch::parse`]): one bad body
//!    never fails the batch; a record without a message id (SQS always sets
//!    one) is logged and counted, since it cannot be reported;
//! 2. records that can never succeed are parked in the function's DLQ with
//!    the reason ([`park_rejected`]) and deleted; if parking fails they are
//!    reported failed, so SQS retries them and its redrive policy parks them;
//! 3. the rest are handled, each in a span carrying its `message_id`, and
//!    only the failed ids go back in the [`SqsBatchResponse`].
//!
//! [`for_each`] runs all three for functions whose records are independent;
//! the recorder, which orders records per task, uses the steps itself.

use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures_util::future::join_all;
use tracing::Instrument;

use crate::ports::DeadLetters;

/// A record whose body parsed.
#[derive(Debug, Clone)]
pub struct Received<M> {
    pub message_id: String,
    pub receipt_handle: String,
    /// SQS's `ApproximateReceiveCount` (1 on the first receive).
    pub receive_count: u32,
    /// When the function got the record: the receive was at most the event
    /// source's batching window before (SQS counts visibility limits from
    /// the receive).
    pub received_at: std::time::Instant,
    pub message: M,
}

/// A record that can never be processed: parked with this reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub message_id: String,
    pub body: String,
    pub reason: &'static str,
    pub detail: String,
}

/// Why a body is not a message (the reason code and a detail for the DLQ).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable {
    pub reason: &'static str,
    pub detail: String,
}

/// A parsed batch.
#[derive(Debug)]
pub struct Batch<M> {
    pub received: Vec<Received<M>>,
    pub rejected: Vec<Rejected>,
    /// Records without a message id: logged, not reportable.
    pub without_id: u32,
}

impl<M> Batch<M> {
    /// Parses every record's body on its own.
    pub fn parse(event: SqsEvent, parse: impl Fn(&str) -> Result<M, Unparseable>) -> Self {
        let mut batch = Batch {
            received: Vec::new(),
            rejected: Vec::new(),
            without_id: 0,
        };
        let received_at = std::time::Instant::now();
        for record in event.records {
            let Some(message_id) = record.message_id else {
                tracing::error!("SQS record without a messageId; cannot report it");
                batch.without_id += 1;
                continue;
            };
            let body = record.body.unwrap_or_default();
            match parse(&body) {
                Ok(message) => batch.received.push(Received {
                    receive_count: record
                        .attributes
                        .get("ApproximateReceiveCount")
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                    receipt_handle: record.receipt_handle.unwrap_or_default(),
                    received_at,
                    message_id,
                    message,
                }),
                Err(Unparseable { reason, detail }) => batch.rejected.push(Rejected {
                    message_id,
                    body,
                    reason,
                    detail,
                }),
            }
        }
        batch
    }
}

/// JSON bodies, rejected with `reason` when they do not deserialize.
pub fn json<M: serde::de::DeserializeOwned>(reason: &'static str) -> impl Fn(&str) -> Result<M, Unparseable> {
    move |body| {
        serde_json::from_str(body).map_err(|e| Unparseable {
            reason,
            detail: e.to_string(),
        })
    }
}

/// Parks rejected records in `dead_letters`, concurrently. Returns how many
/// were parked and the ids that could not be (to report failed).
pub async fn park_rejected(dead_letters: &dyn DeadLetters, rejected: Vec<Rejected>) -> (u32, Vec<String>) {
    let outcomes = join_all(rejected.into_iter().map(|r| async move {
        let span = tracing::warn_span!("record", message_id = %r.message_id);
        async {
            tracing::warn!(reason = r.reason, detail = %r.detail, "unprocessable message; parking it in the DLQ");
            match dead_letters.park(&r.body, r.reason, &r.detail, &r.message_id).await {
                Ok(()) => Ok(()),
                Err(e) => {
                    tracing::error!(error = %e, "could not park it; leaving it to SQS");
                    Err(r.message_id.clone())
                }
            }
        }
        .instrument(span)
        .await
    }))
    .await;
    let mut parked = 0;
    let mut failed = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(()) => parked += 1,
            Err(id) => failed.push(id),
        }
    }
    (parked, failed)
}

/// What handling one record came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Delete it: done, or nothing left to do.
    Done,
    /// Report it failed: SQS delivers it again after its visibility timeout
    /// (and moves it to the DLQ after `maxReceiveCount`).
    Again,
}

/// The whole pipeline for independent records: parse, park what can never
/// succeed, handle the rest concurrently (each in a `record` span with its
/// `message_id`), and report only the failures.
pub async fn for_each<M, F, Fut>(
    event: SqsEvent,
    dead_letters: &dyn DeadLetters,
    parse: impl Fn(&str) -> Result<M, Unparseable>,
    handle: F,
) -> SqsBatchResponse
where
    F: Fn(Received<M>) -> Fut,
    Fut: Future<Output = Handled>,
{
    let batch = Batch::parse(event, parse);
    let (_, mut failed) = park_rejected(dead_letters, batch.rejected).await;
    let handled = join_all(batch.received.into_iter().map(|record| {
        let id = record.message_id.clone();
        let span = tracing::info_span!("record", message_id = %id);
        let fut = handle(record);
        async move { (id, fut.instrument(span).await) }
    }))
    .await;
    failed.extend(
        handled
            .into_iter()
            .filter(|(_, h)| *h == Handled::Again)
            .map(|(id, _)| id),
    );
    failures(failed)
}

/// A partial-batch response naming only the failed message ids.
pub fn failures(ids: impl IntoIterator<Item = String>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = ids
        .into_iter()
        .map(|id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::MemoryDeadLetters;
    use aws_lambda_events::event::sqs::SqsMessage;
    use std::sync::atomic::Ordering;

    fn record(id: Option<&str>, body: &str) -> SqsMessage {
        let mut m = SqsMessage::default();
        m.message_id = id.map(str::to_owned);
        m.body = Some(body.to_owned());
        m.attributes.insert("ApproximateReceiveCount".into(), "3".into());
        m
    }

    fn event(records: Vec<SqsMessage>) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = records;
        e
    }

    fn failed_ids(r: &SqsBatchResponse) -> Vec<&str> {
        let mut ids: Vec<&str> = r
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        ids.sort_unstable();
        ids
    }

    #[tokio::test]
    async fn parks_bad_bodies_reports_only_failures_and_never_fails_the_batch() {
        let dlq = MemoryDeadLetters::default();
        let seen = std::sync::Mutex::new(Vec::new());
        let response = for_each(
            event(vec![
                record(Some("a"), "1"),
                record(Some("b"), "not json"),
                record(Some("c"), "2"),
                record(None, "3"),
            ]),
            &dlq,
            json::<u32>("invalid_message"),
            |r| {
                seen.lock().unwrap().push((r.message.to_owned(), r.receive_count));
                async move {
                    if r.message == 2 {
                        Handled::Again
                    } else {
                        Handled::Done
                    }
                }
            },
        )
        .await;
        assert_eq!(failed_ids(&response), ["c"]);
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, [(1, 3), (2, 3)]);
        let parked = dlq.parked.lock().unwrap().clone();
        assert_eq!(parked.len(), 1);
        assert_eq!(
            (parked[0].0.as_str(), parked[0].1.as_str(), parked[0].3.as_str()),
            ("not json", "invalid_message", "b")
        );
    }

    #[tokio::test]
    async fn a_record_that_cannot_be_parked_is_reported_failed() {
        let dlq = MemoryDeadLetters::default();
        dlq.fail.store(true, Ordering::SeqCst);
        let response = for_each(
            event(vec![record(Some("b"), "x")]),
            &dlq,
            json::<u32>("invalid"),
            |_| async { Handled::Done },
        )
        .await;
        assert_eq!(failed_ids(&response), ["b"]);
    }
}
