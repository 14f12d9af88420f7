//! The tenant's webhook signing, self-served with its API key:
//!
//! - `GET /api/v1/webhooks/secret`: the `whsec_` secrets that sign `v1` now
//!   (the current one, and the previous one while a rotation's overlap
//!   lasts). A tenant without signing gets its first here.
//! - `POST /api/v1/webhooks/secret/rotate?overlap_seconds=N`: a new current
//!   secret; the old one keeps signing for `N` seconds (default 86,400, at
//!   most 604,800; 0 ends it at once), so receivers can switch without
//!   dropping a webhook.
//! - `GET /api/v1/webhooks/public-keys`: the `whpk_` ed25519 public keys
//!   that verify `v1a` signatures, with their key ids (the ids the
//!   `webhook-key-ids` header names), newest first.
//! - `POST /api/v1/webhooks/public-keys/rotate?overlap_seconds=N`: a new
//!   signing key pair, the old one signing through the overlap.
//! - `PUT /api/v1/webhooks/signing` `{"schemes": ["v1", "v1a"]}`: which
//!   signatures the tenant's webhooks carry (`v1`, `v1a` or both).
//!
//! Secret answers carry `Cache-Control: no-store`; secrets and private keys
//! never reach a log or an answer other than the secret routes'.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use morag_shared::domain::delivery::{AsymmetricKey, Schemes, SigningSecret};
use morag_shared::domain::{Credential, Rotating, TenantId, TenantSecrets};
use morag_shared::error::StoreError;
use morag_shared::http::body::{json_body, parse_json};
use morag_shared::http::query::{bounded, Params};
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{ApiError, Authenticated};

use crate::Status;

/// Default overlap of a rotation: a day (Svix's figure).
pub const DEFAULT_OVERLAP_S: u32 = 86_400;
/// Longest overlap: a week.
pub const MAX_OVERLAP_S: u32 = 7 * 86_400;
/// Largest body `PUT /api/v1/webhooks/signing` reads.
pub const MAX_SIGNING_BODY: usize = 1024;

/// Where a listed secret or key stands in its rotation.
#[derive(Debug, Serialize, ToSchema)]
pub struct Validity {
    /// `true` for the one that signs first (the newest).
    pub current: bool,
    /// When it became current (the current one only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// Until when it still signs (the previous one only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signs_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    pub secret: String,
    #[serde(flatten)]
    pub validity: Validity,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretsView {
    /// Newest first; while `v1` is on, every one listed signs every webhook.
    pub secrets: Vec<SecretView>,
    /// The signatures the tenant's webhooks carry.
    pub schemes: Schemes,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeyView {
    /// Names the key in the `webhook-key-ids` header.
    pub key_id: String,
    /// `whpk_` + base64 of the 32-byte ed25519 public key.
    pub public_key: String,
    pub algorithm: &'static str,
    #[serde(flatten)]
    pub validity: Validity,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PublicKeysView {
    /// Newest first; while `v1a` is on, every one listed signs every webhook.
    pub keys: Vec<PublicKeyView>,
    pub schemes: Schemes,
}

/// Each value of `r` that signs at `now`, newest first, with where it stands.
fn listed(r: &Rotating, now: DateTime<Utc>) -> Vec<(&str, Validity)> {
    let current = Validity {
        current: true,
        since: Some(r.since),
        signs_until: None,
    };
    let previous = r.previous_at(now).map(|(previous, until)| {
        let validity = Validity {
            current: false,
            since: None,
            signs_until: Some(until),
        };
        (previous, validity)
    });
    std::iter::once((r.current.as_str(), current)).chain(previous).collect()
}

fn secrets_view(s: &TenantSecrets, now: DateTime<Utc>) -> SecretsView {
    SecretsView {
        secrets: listed(&s.secret, now)
            .into_iter()
            .map(|(secret, validity)| SecretView {
                secret: secret.to_owned(),
                validity,
            })
            .collect(),
        schemes: s.schemes,
    }
}

fn keys_view(s: &TenantSecrets, now: DateTime<Utc>) -> Result<PublicKeysView, ApiError> {
    let key = s.signing_key.as_ref().ok_or_else(|| {
        ApiError::internal(&StoreError::Corrupt {
            what: "tenant signing",
            detail: "no signing key after it was ensured".to_owned(),
        })
    })?;
    let keys = listed(key, now)
        .into_iter()
        .map(|(text, validity)| {
            let key = AsymmetricKey::parse(text).map_err(|detail| {
                ApiError::internal(&StoreError::Corrupt {
                    what: "tenant signing key",
                    detail,
                })
            })?;
            Ok(PublicKeyView {
                key_id: key.key_id(),
                public_key: key.public_key(),
                algorithm: "ed25519",
                validity,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(PublicKeysView {
        keys,
        schemes: s.schemes,
    })
}

fn no_store(body: impl Serialize) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

/// The tenant's signing, provisioned if it has none, with a signing key
/// (tenants from before `v1a` get theirs here).
async fn with_key(st: &Status, tenant: &TenantId) -> Result<TenantSecrets, ApiError> {
    let secrets = provisioned(st, tenant).await?;
    if secrets.signing_key.is_some() {
        return Ok(secrets);
    }
    let secrets = st.secrets.configure(tenant, None, &AsymmetricKey::generate()).await?;
    tracing::info!("tenant had no signing key: generated its first");
    Ok(secrets)
}

async fn provisioned(st: &Status, tenant: &TenantId) -> Result<TenantSecrets, ApiError> {
    let (secrets, created) = st.secrets.secrets_or_provision(tenant).await?;
    if created {
        tracing::info!("tenant had no signing secret: provisioned its first");
    }
    Ok(secrets)
}

/// The tenant's webhook signing secrets (`v1`); provisions the first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/secret",
    operation_id = "get_signing_secrets",
    tag = "signing",
    responses((status = 200, description = "The secrets that sign, newest first", body = SecretsView))
)]
pub async fn get(State(st): State<Arc<Status>>, Authenticated(tenant): Authenticated) -> Result<Response, ApiError> {
    let secrets = provisioned(&st, &tenant).await?;
    Ok(no_store(secrets_view(&secrets, morag_shared::time::now())))
}

/// The tenant's `v1a` public keys; generates the first key pair.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/public-keys",
    operation_id = "get_public_keys",
    tag = "signing",
    responses((status = 200, description = "The public keys that verify, newest first", body = PublicKeysView))
)]
pub async fn public_keys(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
) -> Result<Response, ApiError> {
    let secrets = with_key(&st, &tenant).await?;
    Ok(Json(keys_view(&secrets, morag_shared::time::now())?).into_response())
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RotateParams {
    /// How long the previous one still signs beside the new (default 86400; 0: not at all).
    #[param(minimum = 0, maximum = 604800)]
    overlap_seconds: Option<u32>,
}

/// Rotates `which`, answering the signing as stored (409 if another
/// rotation came first: nothing was written).
async fn rotate_credential(
    st: &Status,
    tenant: &TenantId,
    which: Credential,
    p: RotateParams,
) -> Result<(TenantSecrets, DateTime<Utc>), ApiError> {
    let overlap = bounded(
        p.overlap_seconds,
        "overlap_seconds",
        DEFAULT_OVERLAP_S,
        0..=MAX_OVERLAP_S,
    )?;
    let new_value = match which {
        Credential::Secret => SigningSecret::generate(),
        Credential::SigningKey => AsymmetricKey::generate(),
    };
    let now = morag_shared::time::now();
    let until = (overlap > 0).then(|| now + chrono::Duration::seconds(i64::from(overlap)));
    match st.secrets.rotate(tenant, which, &new_value, until).await {
        Ok(secrets) => {
            tracing::warn!(credential = ?which, overlap_s = overlap, "webhook signing rotated");
            Ok((secrets, now))
        }
        Err(StoreError::Conflict { .. }) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "rotation_conflict",
            "another change to the signing came first; nothing was rotated, read the current state and retry",
        )),
        Err(e) => Err(e.into()),
    }
}

/// A new signing secret; the previous one signs beside it for the overlap.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/secret/rotate",
    operation_id = "rotate_signing_secret",
    tag = "signing",
    params(RotateParams),
    responses(
        (status = 200, description = "The secrets that sign now", body = SecretsView),
        (status = 400, description = "`invalid_parameter`", body = ErrorBody),
        (status = 409, description = "`rotation_conflict`: another change came first; nothing was rotated", body = ErrorBody),
    )
)]
pub async fn rotate(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Params(p): Params<RotateParams>,
) -> Result<Response, ApiError> {
    let (secrets, now) = rotate_credential(&st, &tenant, Credential::Secret, p).await?;
    Ok(no_store(secrets_view(&secrets, now)))
}

/// A new `v1a` key pair; the previous one signs beside it for the overlap.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/public-keys/rotate",
    operation_id = "rotate_signing_key",
    tag = "signing",
    params(RotateParams),
    responses(
        (status = 200, description = "The public keys that verify now", body = PublicKeysView),
        (status = 400, description = "`invalid_parameter`", body = ErrorBody),
        (status = 409, description = "`rotation_conflict`: another change came first; nothing was rotated", body = ErrorBody),
    )
)]
pub async fn rotate_key(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Params(p): Params<RotateParams>,
) -> Result<Response, ApiError> {
    with_key(&st, &tenant).await?;
    let (secrets, now) = rotate_credential(&st, &tenant, Credential::SigningKey, p).await?;
    Ok(Json(keys_view(&secrets, now)?).into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SigningBody {
    schemes: Schemes,
}

/// Which signatures the tenant's webhooks carry (`v1`, `v1a` or both).
///
/// Answers the public keys view: the key that signs `v1a` is there from now on.
#[utoipa::path(
    put,
    path = "/api/v1/webhooks/signing",
    operation_id = "set_signing_schemes",
    tag = "signing",
    request_body = SigningBody,
    responses(
        (status = 200, description = "The public keys (the key that signs `v1a` is there from now on)", body = PublicKeysView),
        (status = 400, description = "`invalid_body`: not JSON, an unknown field, no scheme", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 1 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
    )
)]
pub async fn set_signing(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    let body: SigningBody = parse_json(&json_body(request, MAX_SIGNING_BODY).await?)?;
    provisioned(&st, &tenant).await?;
    let secrets = st
        .secrets
        .configure(&tenant, Some(body.schemes), &AsymmetricKey::generate())
        .await?;
    tracing::warn!(schemes = ?body.schemes, "webhook signature schemes set");
    Ok(Json(keys_view(&secrets, morag_shared::time::now())?).into_response())
}
