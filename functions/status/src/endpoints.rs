//! The tenant's webhook endpoints, with its API key:
//!
//! - `POST /api/v1/webhooks/endpoints` `{url, event_types?, description?, disabled?, rate_limit_per_s?}`: 201;
//! - `GET /api/v1/webhooks/endpoints`: every endpoint, oldest first;
//! - `GET|PATCH|DELETE /api/v1/webhooks/endpoints/{endpoint_id}`;
//! - `GET /api/v1/webhooks/endpoints/{endpoint_id}/deliveries?state=&limit=&cursor=`:
//!   its delivery log, newest first.
//!
//! URLs are checked like a task's `webhook_url` (https, public addresses)
//! when set and again by the sender at every send. Another tenant's
//! endpoint is indistinguishable from a missing one.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use morag_shared::domain::endpoint::{
    DisabledReason, MAX_DESCRIPTION_CHARS, MAX_ENDPOINTS_PER_TENANT, MAX_RATE_LIMIT_PER_S,
};
use morag_shared::domain::{fanout, DeliveryState, Endpoint, EndpointId, PageKey, TenantId, WebhookEvent};
use morag_shared::http::body::{json_body, parse_json, whole_number};
use morag_shared::http::query::{bounded, invalid_parameter};
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{ApiError, Authenticated, Params};
use morag_shared::outbound::check_target_url;

use crate::webhooks::DeliveryView;
use crate::Status;

/// Largest endpoint body read.
pub const MAX_ENDPOINT_BODY: usize = 8 * 1024;

/// The fields a create or a patch may set; `null` or absent: not given
/// (but `"rate_limit_per_s": null` removes the limit).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(title = "EndpointChange")]
pub struct EndpointBody {
    /// An https URL of a public host.
    #[schema(format = "uri", max_length = 2048)]
    url: Option<String>,
    /// The events it gets (at least one).
    #[schema(value_type = Option<Vec<WebhookEvent>>, min_items = 1)]
    event_types: Option<Vec<String>>,
    #[schema(max_length = 256)]
    description: Option<String>,
    disabled: Option<bool>,
    /// Most attempts started per second; `null` removes the limit.
    #[serde(default, deserialize_with = "given")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    rate_limit_per_s: Option<Option<Value>>,
}

/// A new endpoint (`url` is required; the rest as [`EndpointBody`]).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // the create body's schema; parsed as an `EndpointBody`
pub struct NewEndpoint {
    /// An https URL of a public host.
    #[schema(format = "uri", max_length = 2048)]
    url: String,
    /// The events it gets (default: every task event).
    #[schema(min_items = 1)]
    event_types: Option<Vec<WebhookEvent>>,
    #[schema(max_length = 256)]
    description: Option<String>,
    /// Created disabled (default false).
    disabled: Option<bool>,
    /// Most attempts started per second (absent or `null`: no limit).
    #[schema(minimum = 1, maximum = 1000)]
    rate_limit_per_s: Option<u32>,
}

/// A field that is present (`Some`, perhaps `null`) or absent (`None`).
fn given<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(d).map(Some)
}

fn check_rate_limit(raw: Option<Value>) -> Result<Option<u32>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    whole_number(&raw)
        .filter(|r| (1..=u64::from(MAX_RATE_LIMIT_PER_S)).contains(r))
        .map(|r| Some(r as u32))
        .ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_rate_limit",
                format!("rate_limit_per_s is a whole number from 1 to {MAX_RATE_LIMIT_PER_S}, or null for none"),
            )
        })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    pub endpoint_id: EndpointId,
    pub url: String,
    pub event_types: Vec<WebhookEvent>,
    pub description: String,
    pub disabled: bool,
    /// `manual` or `failing` (every attempt failed through the failure window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<DisabledReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its current streak of failed attempts began (absent: healthy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
    /// While failing, the circuit breaker: queued deliveries wait until
    /// this probe (one of them) goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_probe_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Most attempts started per second (absent: no limit).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit_per_s: Option<u32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Endpoint> for EndpointView {
    fn from(e: Endpoint) -> Self {
        Self {
            endpoint_id: e.endpoint_id,
            url: e.url,
            event_types: e.event_types,
            description: e.description,
            disabled: e.disabled,
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at,
            // a disabled endpoint is not probed (its breaker's last lease is moot)
            next_probe_at: e.failing_since.and(e.probe_at).filter(|_| !e.disabled),
            failing_since: e.failing_since,
            rate_limit_per_s: e.rate_limit_per_s,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

fn endpoint_not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

fn check_url(st: &Status, raw: &str) -> Result<String, ApiError> {
    check_target_url(raw.trim(), st.target_policy, true)
        .map(|u| u.to_string())
        .map_err(|e| ApiError::unprocessable("invalid_url", format!("url {e}")))
}

fn check_event_types(raw: Vec<String>) -> Result<Vec<WebhookEvent>, ApiError> {
    if raw.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_event_types",
            "event_types lists at least one event type (leave it out for all)",
        ));
    }
    let mut types = Vec::new();
    for t in raw {
        let t = WebhookEvent::parse_any(&t).map_err(|e| ApiError::unprocessable("invalid_event_types", e))?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    Ok(types)
}

fn check_description(raw: String) -> Result<String, ApiError> {
    if raw.chars().count() > MAX_DESCRIPTION_CHARS || raw.chars().any(char::is_control) {
        return Err(ApiError::unprocessable(
            "invalid_description",
            format!("description is at most {MAX_DESCRIPTION_CHARS} characters, none of them control characters"),
        ));
    }
    Ok(raw)
}

/// The caller's endpoint, or 404.
async fn owned_endpoint(st: &Status, tenant: &TenantId, raw_id: &str) -> Result<Endpoint, ApiError> {
    let id: EndpointId = raw_id.parse().map_err(|_| endpoint_not_found())?;
    tracing::Span::current().record("endpoint_id", id.as_str());
    st.endpoints
        .get_endpoint(tenant, &id)
        .await?
        .ok_or_else(endpoint_not_found)
}

/// A new webhook endpoint: every event of every task of the tenant whose
/// type it names goes there too.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints",
    operation_id = "create_endpoint",
    tag = "endpoints",
    request_body = NewEndpoint,
    responses(
        (status = 201, description = "Created", body = EndpointView),
        (status = 400, description = "`invalid_body`: not JSON, an unknown field, a wrong type", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 8 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`missing_field`, `invalid_url`, `invalid_event_types`, `invalid_description` or `invalid_rate_limit`", body = ErrorBody),
        (status = 409, description = "`endpoint_limit`: the tenant has 100 endpoints", body = ErrorBody),
    )
)]
pub async fn create(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    request: Request,
) -> Result<Response, ApiError> {
    let body: EndpointBody = parse_json(&json_body(request, MAX_ENDPOINT_BODY).await?)?;
    let url = match body.url {
        Some(u) => check_url(&st, &u)?,
        None => return Err(ApiError::unprocessable("missing_field", "url is required")),
    };
    let event_types = match body.event_types {
        Some(raw) => check_event_types(raw)?,
        None => WebhookEvent::ALL.to_vec(),
    };
    let description = check_description(body.description.unwrap_or_default())?;
    let rate_limit_per_s = check_rate_limit(body.rate_limit_per_s.flatten())?;
    let over_limit = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "endpoint_limit",
            format!("a tenant has at most {MAX_ENDPOINTS_PER_TENANT} endpoints; delete one first"),
        )
    };
    if st.endpoints.list_endpoints(&tenant).await?.len() >= MAX_ENDPOINTS_PER_TENANT {
        return Err(over_limit());
    }
    let now = morag_shared::time::now();
    let disabled = body.disabled.unwrap_or(false);
    let endpoint = Endpoint {
        description,
        disabled,
        disabled_reason: disabled.then_some(DisabledReason::Manual),
        disabled_at: disabled.then_some(now),
        rate_limit_per_s,
        ..Endpoint::new(tenant, url, event_types, now)
    };
    st.endpoints.create_endpoint(&endpoint).await?;
    // creates racing past the count above: counted again with this one in
    // (a consistent read), a create that finds more than the limit takes
    // its endpoint back, so no more than the limit ever stay (racing
    // creates may all be refused; a retry then succeeds)
    let now_there = st.endpoints.list_endpoints(&endpoint.tenant).await?.len();
    if now_there > MAX_ENDPOINTS_PER_TENANT {
        st.endpoints
            .delete_endpoint(&endpoint.tenant, &endpoint.endpoint_id)
            .await?;
        tracing::warn!(endpoint_id = %endpoint.endpoint_id, now_there, "concurrent creates passed the limit: this one taken back");
        return Err(over_limit());
    }
    tracing::info!(endpoint_id = %endpoint.endpoint_id, "endpoint created");
    Ok((StatusCode::CREATED, Json(EndpointView::from(endpoint))).into_response())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointsView {
    pub endpoints: Vec<EndpointView>,
}

/// The tenant's endpoints, oldest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints",
    operation_id = "list_endpoints",
    tag = "endpoints",
    responses((status = 200, description = "Every endpoint of the tenant", body = EndpointsView))
)]
pub async fn list(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
) -> Result<Json<EndpointsView>, ApiError> {
    let endpoints = st.endpoints.list_endpoints(&tenant).await?;
    Ok(Json(EndpointsView {
        endpoints: endpoints.into_iter().map(EndpointView::from).collect(),
    }))
}

/// One endpoint, with its health.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    operation_id = "get_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = EndpointId, Path, description = "The endpoint's id")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointView),
        (status = 404, description = "`not_found`: no such endpoint of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn get(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    Ok(Json(owned_endpoint(&st, &tenant, &raw_id).await?.into()))
}

/// Changes the fields given (`disabled: false` re-enables and clears its health).
#[utoipa::path(
    patch,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    operation_id = "update_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = EndpointId, Path, description = "The endpoint's id")),
    request_body = EndpointBody,
    responses(
        (status = 200, description = "The endpoint as changed", body = EndpointView),
        (status = 400, description = "`invalid_body`: not JSON, an unknown field, a wrong type", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: over 8 KiB", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not application/json", body = ErrorBody),
        (status = 422, description = "`missing_field`, `invalid_url`, `invalid_event_types`, `invalid_description` or `invalid_rate_limit`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn patch(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
    request: Request,
) -> Result<Json<EndpointView>, ApiError> {
    let body: EndpointBody = parse_json(&json_body(request, MAX_ENDPOINT_BODY).await?)?;
    let mut endpoint = owned_endpoint(&st, &tenant, &raw_id).await?;
    if let Some(u) = body.url {
        endpoint.url = check_url(&st, &u)?;
    }
    if let Some(raw) = body.event_types {
        endpoint.event_types = check_event_types(raw)?;
    }
    if let Some(d) = body.description {
        endpoint.description = check_description(d)?;
    }
    if let Some(r) = body.rate_limit_per_s {
        endpoint.rate_limit_per_s = check_rate_limit(r)?;
    }
    let now = morag_shared::time::now();
    match body.disabled {
        Some(true) if !endpoint.disabled => {
            endpoint.disabled = true;
            endpoint.disabled_reason = Some(DisabledReason::Manual);
            endpoint.disabled_at = Some(now);
        }
        // enabled again: a fresh start (its failure streak is forgotten)
        Some(false) if endpoint.disabled => endpoint.enable(),
        _ => {}
    }
    endpoint.updated_at = now;
    if !st.endpoints.update_endpoint(&endpoint).await? {
        return Err(endpoint_not_found());
    }
    tracing::info!(disabled = endpoint.disabled, "endpoint updated");
    Ok(Json(endpoint.into()))
}

/// Deletes the endpoint; its queued deliveries fail as `endpoint_deleted`.
#[utoipa::path(
    delete,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}",
    operation_id = "delete_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = EndpointId, Path, description = "The endpoint's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`not_found`: no such endpoint of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn delete(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: EndpointId = raw_id.parse().map_err(|_| endpoint_not_found())?;
    if !st.endpoints.delete_endpoint(&tenant, &id).await? {
        return Err(endpoint_not_found());
    }
    tracing::info!(endpoint_id = %id, "endpoint deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only deliveries in this state.
    #[param(value_type = Option<DeliveryState>)]
    state: Option<String>,
    /// Deliveries per page (default 50).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `next_cursor` of the previous page (with the same `state`).
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointDeliveriesView {
    pub endpoint_id: EndpointId,
    /// Newest first; with `state`, only those in it (a page may then hold
    /// fewer than `limit`: follow `next_cursor`).
    pub deliveries: Vec<DeliveryView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct DeliveriesCursor {
    endpoint: EndpointId,
    state: Option<DeliveryState>,
    key: PageKey,
}

/// The endpoint's delivery log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}/deliveries",
    operation_id = "list_endpoint_deliveries",
    tag = "endpoints",
    params(("endpoint_id" = EndpointId, Path, description = "The endpoint's id"), DeliveriesQuery),
    responses(
        (status = 200, description = "A page of the endpoint's deliveries", body = EndpointDeliveriesView),
        (status = 400, description = "`invalid_parameter` or `invalid_cursor`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn deliveries(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
    Params(q): Params<DeliveriesQuery>,
) -> Result<Json<EndpointDeliveriesView>, ApiError> {
    let limit = bounded(q.limit, "limit", 50, 1..=100)? as usize;
    let state = match q.state.as_deref() {
        None => None,
        Some(raw) => Some(
            serde_json::from_value::<DeliveryState>(Value::String(raw.to_owned())).map_err(|_| {
                invalid_parameter("state must be one of pending, succeeded, failed, dead, superseded, paused")
            })?,
        ),
    };
    let endpoint = owned_endpoint(&st, &tenant, &raw_id).await?;
    let start = match st.open_cursor::<DeliveriesCursor>("endpoint_deliveries", &tenant, q.cursor.as_deref())? {
        Some(c) if c.endpoint != endpoint.endpoint_id || c.state != state => {
            return Err(crate::queries::invalid_cursor())
        }
        c => c.map(|c| c.key),
    };
    let page = st
        .endpoints
        .endpoint_deliveries(&endpoint.endpoint_id, limit, start)
        .await?;
    Ok(Json(EndpointDeliveriesView {
        deliveries: page
            .items
            .into_iter()
            // the tenant's own deliveries only, whatever the index holds
            .filter(|d| d.tenant == tenant && state.is_none_or(|s| d.state == s))
            .map(DeliveryView::from)
            .collect(),
        next_cursor: page.next.map(|key| {
            st.cursors.seal(
                "endpoint_deliveries",
                &tenant,
                &DeliveriesCursor {
                    endpoint: endpoint.endpoint_id.clone(),
                    state,
                    key,
                },
            )
        }),
        endpoint_id: endpoint.endpoint_id,
    }))
}

/// Deliveries one recover call replays at most (it answers `next_since`
/// to go on from): each is two writes and a send, within API Gateway's 30 s.
pub const MAX_REPLAY_PER_CALL: usize = 200;
/// A replay's pace for an endpoint without a rate limit: deliveries per
/// second reaching the queue (each message is delayed by its place in the
/// replay; SQS delays up to 15 minutes). An endpoint's own
/// `rate_limit_per_s` sets the pace when it has one (and the sender holds
/// every attempt to it, replayed or not).
pub const REPLAY_PER_S: u64 = 10;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecoverQuery {
    /// Replay the missed deliveries created since then (RFC 3339, not in the future).
    #[param(required = true, value_type = String, format = DateTime)]
    since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoverView {
    pub endpoint_id: EndpointId,
    /// Deliveries sent again, oldest first, each with its `webhook-id`.
    pub replayed: usize,
    /// More to replay: call again with `since` = this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_since: Option<chrono::DateTime<chrono::Utc>>,
    pub endpoint: EndpointView,
}

/// Enables the endpoint and replays the deliveries it missed since `since`.
///
/// Enables the endpoint (a fresh failure streak) and sends again every
/// delivery to it created since `since` that did not succeed (`paused`,
/// `dead`, `failed`), oldest first, at most 200 per call, paced at its rate
/// limit or 10 per second (`REPLAY_PER_S`), each with its original
/// `webhook-id`. Progress that a newer delivery of its task overtook is
/// superseded by the sender, so the endpoint gets each task's latest state.
#[utoipa::path(
    post,
    path = "/api/v1/webhooks/endpoints/{endpoint_id}/recover",
    operation_id = "recover_endpoint",
    tag = "endpoints",
    params(("endpoint_id" = EndpointId, Path, description = "The endpoint's id"), RecoverQuery),
    responses(
        (status = 202, description = "Replays queued (`next_since`: call again from there for more)", body = RecoverView),
        (status = 400, description = "`invalid_parameter`: `since` missing, not RFC 3339, or in the future", body = ErrorBody),
        (status = 404, description = "`not_found`: no such endpoint of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn recover(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
    Params(q): Params<RecoverQuery>,
) -> Result<Response, ApiError> {
    let now = morag_shared::time::now();
    let since = match q.since.as_deref() {
        None | Some("") => {
            return Err(invalid_parameter(
                "since is required: an RFC 3339 time, e.g. 2026-11-30T00:00:00Z",
            ))
        }
        Some(raw) => chrono::DateTime::parse_from_rfc3339(raw)
            .map_err(|_| invalid_parameter("since must be an RFC 3339 time, e.g. 2026-11-30T00:00:00Z"))?
            .with_timezone(&chrono::Utc),
    };
    if since > now {
        return Err(invalid_parameter("since is in the future"));
    }
    let mut endpoint = owned_endpoint(&st, &tenant, &raw_id).await?;
    let was_disabled = endpoint.disabled;
    if endpoint.disabled {
        endpoint.enable();
        endpoint.updated_at = now;
        if !st.endpoints.update_endpoint(&endpoint).await? {
            return Err(endpoint_not_found());
        }
        tracing::info!("endpoint enabled for its recovery");
    }
    let pace = endpoint.rate_limit_per_s.map_or(REPLAY_PER_S, u64::from);
    let mut replayed = 0usize;
    let mut next_since = None;
    let mut start = None;
    'pages: loop {
        let page = st
            .endpoints
            .endpoint_deliveries_since(&endpoint.endpoint_id, since, 100, start)
            .await?;
        for d in page.items {
            let missed = matches!(
                d.state,
                DeliveryState::Paused | DeliveryState::Dead | DeliveryState::Failed
            );
            if d.tenant != tenant || !missed {
                continue;
            }
            if replayed == MAX_REPLAY_PER_CALL {
                next_since = Some(d.created_at);
                break 'pages;
            }
            let Some(again) = st.deliveries.restart_delivery(&d.task_id, &d.delivery_id).await? else {
                continue;
            };
            let delay = std::time::Duration::from_millis(replayed as u64 * 1000 / pace);
            st.webhooks.enqueue_after(&again.message(), delay).await?;
            st.deliveries
                .mark_enqueued(&again.task_id, &again.delivery_id, again.cycle)
                .await?;
            replayed += 1;
        }
        match page.next {
            Some(k) => start = Some(k),
            None => break,
        }
    }
    tracing::warn!(
        replayed,
        more = next_since.is_some(),
        "endpoint recovered: missed deliveries replayed"
    );
    // the call that enabled it tells the tenant's other subscribed
    // endpoints (after the replay was queued: a failure here is logged, the
    // recovery stands)
    if was_disabled {
        let told = morag_shared::outbox::announce(
            st.endpoints.as_ref(),
            st.deliveries.as_ref(),
            st.webhooks.as_ref(),
            &tenant,
            |all| fanout::endpoint_recovered(&endpoint, since, replayed, now, all),
        )
        .await;
        if let Err(e) = told {
            tracing::error!(error = %e, "could not send endpoint.recovered");
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(RecoverView {
            endpoint_id: endpoint.endpoint_id.clone(),
            replayed,
            next_since,
            endpoint: endpoint.into(),
        }),
    )
        .into_response())
}
