//! The tenant's webhook signing secrets, self-served with its API key:
//!
//! - `GET /api/v1/webhooks/secret`: the secrets that sign now (the current
//!   one, and the previous one while a rotation's overlap lasts). A tenant
//!   without one gets its first here.
//! - `POST /api/v1/webhooks/secret/rotate?overlap_seconds=N`: a new current
//!   secret; the old one keeps signing for `N` seconds (default 86,400, at
//!   most 604,800; 0 ends it at once), so receivers can switch without
//!   dropping a webhook.
//!
//! Answers carry `Cache-Control: no-store`; secrets never reach a log.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use morag_shared::domain::delivery::SigningSecret;
use morag_shared::domain::TenantSecrets;
use morag_shared::http::query::{bounded, Params};
use morag_shared::http::{ApiError, Authenticated};

use crate::Status;

/// Default overlap of a rotation: a day (Svix's figure).
pub const DEFAULT_OVERLAP_S: u32 = 86_400;
/// Longest overlap: a week.
pub const MAX_OVERLAP_S: u32 = 7 * 86_400;

#[derive(Debug, Serialize)]
pub struct SecretView {
    pub secret: String,
    /// `true` for the secret that signs first (the newest).
    pub current: bool,
    /// When it became current (the current one only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Until when it still signs (the previous one only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signs_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize)]
pub struct SecretsView {
    /// Newest first; every one listed signs every webhook now.
    pub secrets: Vec<SecretView>,
}

fn view(s: TenantSecrets, now: DateTime<Utc>) -> SecretsView {
    let mut secrets = vec![SecretView {
        secret: s.current,
        current: true,
        since: Some(s.since),
        signs_until: None,
    }];
    if let Some((previous, until)) = s.previous.filter(|(_, until)| *until > now) {
        secrets.push(SecretView {
            secret: previous,
            current: false,
            since: None,
            signs_until: Some(until),
        });
    }
    SecretsView { secrets }
}

fn no_store(body: SecretsView) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

pub async fn get(State(st): State<Arc<Status>>, Authenticated(tenant): Authenticated) -> Result<Response, ApiError> {
    let (secrets, created) = st.secrets.secrets_or_provision(&tenant).await?;
    if created {
        tracing::info!("tenant had no signing secret: provisioned its first");
    }
    Ok(no_store(view(secrets, morag_shared::time::now())))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateParams {
    overlap_seconds: Option<u32>,
}

pub async fn rotate(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Params(p): Params<RotateParams>,
) -> Result<Response, ApiError> {
    let overlap = bounded(
        p.overlap_seconds,
        "overlap_seconds",
        DEFAULT_OVERLAP_S,
        0..=MAX_OVERLAP_S,
    )?;
    let now = morag_shared::time::now();
    let until = (overlap > 0).then(|| now + chrono::Duration::seconds(i64::from(overlap)));
    let secrets = st
        .secrets
        .rotate_secret(&tenant, &SigningSecret::generate(), until)
        .await?;
    tracing::warn!(overlap_s = overlap, "signing secret rotated");
    Ok(no_store(view(secrets, now)))
}
