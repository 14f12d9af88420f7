//! The domain model. Nothing here knows about AWS.

pub mod fanout;
pub mod ids;
pub mod lifecycle;
pub mod task;
#[cfg(test)]
pub(crate) mod test_support;

pub use ids::{InvalidId, TaskId, TenantId};
pub use lifecycle::{decide, Decision, EventStatus, HistoryEntry, Ignored, MalformedEvent, StatusEvent};
pub use task::{JobMessage, Source, SourceType, Task, TaskStatus};
