//! Queues, in memory: jobs, status events, dead letters, webhooks and the
//! webhook queue's visibility changes.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::faults::{down, lock};
use crate::domain::{DeliveryMessage, JobMessage, StatusEvent};
use crate::error::StoreError;
use crate::ports::{DeadLetters, EventSink, JobQueue, Visibility, WebhookQueue};

#[derive(Default)]
pub struct MemoryJobQueue {
    pub jobs: Mutex<Vec<JobMessage>>,
    pub fail: AtomicBool,
}

#[async_trait]
impl JobQueue for MemoryJobQueue {
    async fn enqueue(&self, job: &JobMessage) -> Result<String, StoreError> {
        down(&self.fail, "memory", "enqueue")?;
        let mut jobs = lock(&self.jobs);
        jobs.push(job.clone());
        Ok(format!("msg-{}", jobs.len()))
    }
}

/// The status-events queue, in memory.
#[derive(Default)]
pub struct MemoryEventSink {
    pub events: Mutex<Vec<StatusEvent>>,
    pub fail: AtomicBool,
}

#[async_trait]
impl EventSink for MemoryEventSink {
    async fn send(&self, event: &StatusEvent) -> Result<(), StoreError> {
        down(&self.fail, "memory", "send")?;
        lock(&self.events).push(event.clone());
        Ok(())
    }
}

/// A dead-letter queue, in memory: (body, reason, detail, source message id).
#[derive(Default)]
pub struct MemoryDeadLetters {
    pub parked: Mutex<Vec<(String, String, String, String)>>,
    pub fail: AtomicBool,
}

#[async_trait]
impl DeadLetters for MemoryDeadLetters {
    async fn park(&self, body: &str, reason: &str, detail: &str, source_message_id: &str) -> Result<(), StoreError> {
        down(&self.fail, "memory", "park")?;
        lock(&self.parked).push((
            body.to_owned(),
            reason.to_owned(),
            detail.to_owned(),
            source_message_id.to_owned(),
        ));
        Ok(())
    }
}

/// The webhook queue, in memory.
#[derive(Default)]
pub struct MemoryWebhookQueue {
    pub messages: Mutex<Vec<DeliveryMessage>>,
    pub fail: AtomicBool,
}

#[async_trait]
impl WebhookQueue for MemoryWebhookQueue {
    async fn enqueue(&self, message: &DeliveryMessage) -> Result<(), StoreError> {
        down(&self.fail, "memory", "enqueue")?;
        lock(&self.messages).push(message.clone());
        Ok(())
    }

    /// Handed out at once: the delay is the real queue's.
    async fn enqueue_after(&self, message: &DeliveryMessage, _delay: Duration) -> Result<(), StoreError> {
        self.enqueue(message).await
    }
}

/// Message visibility changes, recorded: (receipt handle, delay). Like SQS,
/// a change that would keep a message hidden past 12 h from its receive is
/// refused; a receipt not registered with [`MemoryVisibility::received`]
/// counts as received when the adapter was made.
pub struct MemoryVisibility {
    pub changes: Mutex<Vec<(String, std::time::Duration)>>,
    receives: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    made: std::time::Instant,
    /// Refuse every change (an SQS error).
    pub refuse: AtomicBool,
}

impl Default for MemoryVisibility {
    fn default() -> Self {
        Self {
            changes: Mutex::default(),
            receives: Mutex::default(),
            made: std::time::Instant::now(),
            refuse: AtomicBool::new(false),
        }
    }
}

impl MemoryVisibility {
    /// Registers the receive of `receipt_handle` at `at`.
    pub fn received(&self, receipt_handle: &str, at: std::time::Instant) {
        lock(&self.receives).insert(receipt_handle.to_owned(), at);
    }
}

#[async_trait]
impl Visibility for MemoryVisibility {
    async fn delay(&self, receipt_handle: &str, delay: std::time::Duration) -> Result<(), StoreError> {
        down(&self.refuse, "memory", "ChangeMessageVisibility")?;
        let received = lock(&self.receives).get(receipt_handle).copied().unwrap_or(self.made);
        // whole seconds, as SQS counts them, rounded against the caller
        let since = received.elapsed().as_millis().div_ceil(1000);
        let asked = delay.as_millis().div_ceil(1000);
        if since + asked > u128::from(crate::domain::delivery::MAX_SQS_DELAY.as_secs()) {
            return Err(StoreError::Unavailable {
                service: "memory",
                op: "ChangeMessageVisibility",
                detail: format!(
                    "InvalidParameterValue: a visibility of {asked} s, {since} s after the receive, exceeds 12 h"
                ),
            });
        }
        lock(&self.changes).push((receipt_handle.to_owned(), delay));
        Ok(())
    }
}
