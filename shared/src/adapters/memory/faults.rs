//! Failure injection and locking shared by the in-memory adapters.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::error::StoreError;

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn down(flag: &AtomicBool, service: &'static str, op: &'static str) -> Result<(), StoreError> {
    if flag.load(Ordering::SeqCst) {
        Err(StoreError::unavailable(service, op, "injected failure"))
    } else {
        Ok(())
    }
}
