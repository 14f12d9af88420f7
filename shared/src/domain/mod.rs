//! The domain model. Nothing here knows about AWS or HTTP.
//!
//! Imports point one way: `ids` ← `delivery` ← `task` ← `event` ← `fanout`
//! ← `lifecycle`; `endpoint` (← `delivery`) is what `fanout` plans tenant
//! endpoints' webhooks from; `watch` (← `task`, `event`) holds the
//! watchdog's rules; `keys` (← `delivery`, for signing), `idempotency`,
//! `page` and `upload` (← `ids`) stand alone; `timeline` (← `delivery`)
//! orders a task's webhook attempts for its readers.

pub mod delivery;
pub mod endpoint;
pub mod event;
pub mod fanout;
pub mod idempotency;
pub mod ids;
pub mod keys;
pub mod lifecycle;
pub mod page;
pub mod task;
#[cfg(test)]
pub(crate) mod test_support;
pub mod timeline;
pub mod upload;
pub mod watch;

pub use delivery::{
    Attempt, AttemptError, AttemptOutcome, Delivery, DeliveryId, DeliveryMessage, DeliveryState, SendSlot, WebhookEvent,
};
pub use endpoint::{Endpoint, EndpointId};
pub use event::{EventStatus, MalformedEvent, StatusEvent};
pub use fanout::Links;
pub use idempotency::{CreateOutcome, IdempotencyRecord, IdempotencyState};
pub use ids::{InvalidId, TaskId, TenantId};
pub use keys::{ApiKeyRecord, Credential, KeyHash, Rotating, TenantSecrets};
pub use lifecycle::{decide, decide_linked, ApplyOutcome, Decision, HistoryEntry, Ignored, RecentEvent, Retention};
pub use page::{Page, PageKey};
pub use task::{JobMessage, Source, SourceType, Task, TaskStatus, Timeouts};
pub use timeline::{AttemptEntry, AttemptRecord};
pub use upload::{Blob, ObjectInfo, PresignedPut, Upload, UploadId};
