//! Paged reads: a page of items and where the next one starts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a query page stopped: the store's own position, carried in a sealed
/// cursor (`http::cursor`), never interpreted by clients or handlers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageKey(pub BTreeMap<String, String>);

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<PageKey>,
}
