//! The domain model. Nothing here knows about AWS.

pub mod ids;
pub mod task;

pub use ids::{InvalidId, TaskId, TenantId};
pub use task::{JobMessage, Source, SourceType, Task, TaskStatus};
