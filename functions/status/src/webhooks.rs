//! A task's webhook deliveries, and redelivery.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use morag_shared::domain::{AttemptError, Delivery, DeliveryId, DeliveryState, EndpointId, TaskId, WebhookEvent};
use morag_shared::http::schema::ErrorBody;
use morag_shared::http::{ApiError, Authenticated};

use crate::{owned_task, Status};

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<AttemptError>,
    pub latency_ms: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub delivery_id: DeliveryId,
    #[schema(value_type = WebhookEvent)]
    pub event_type: String,
    pub url: String,
    /// The tenant endpoint it is for (absent: the task's own `webhook_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint_id: Option<EndpointId>,
    /// The task it is about (in an endpoint's delivery log).
    pub task_id: TaskId,
    pub state: DeliveryState,
    pub created_at: DateTime<Utc>,
    /// The latest attempts (at most 30), oldest first.
    pub attempts: Vec<AttemptView>,
    /// Every attempt made, across redeliveries.
    pub attempts_total: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesView {
    pub task_id: TaskId,
    pub deliveries: Vec<DeliveryView>,
}

/// A task's webhook deliveries and their attempts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/status/{task_id}/webhooks",
    operation_id = "list_task_deliveries",
    tag = "webhooks",
    params(("task_id" = TaskId, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task's deliveries", body = DeliveriesView),
        (status = 400, description = "`invalid_task_id`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn list(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path(raw_id): Path<String>,
) -> Result<Json<DeliveriesView>, ApiError> {
    let task = owned_task(&st, &tenant, &raw_id).await?;
    let deliveries = st.deliveries.list_deliveries(&task.task_id).await?;
    Ok(Json(DeliveriesView {
        task_id: task.task_id,
        deliveries: deliveries.into_iter().map(DeliveryView::from).collect(),
    }))
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            delivery_id: d.delivery_id,
            event_type: d.event_type.as_str().to_owned(),
            url: d.url,
            endpoint_id: d.endpoint_id,
            task_id: d.task_id,
            state: d.state,
            created_at: d.created_at,
            attempts_total: d.attempts_total,
            attempts: d
                .attempts
                .into_iter()
                .map(|a| AttemptView {
                    at: a.at,
                    status_code: a.status_code,
                    error: a.error,
                    latency_ms: a.latency_ms,
                })
                .collect(),
        }
    }
}

/// The answer to a redelivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeliveredView {
    pub delivery_id: DeliveryId,
    /// Always `pending`: its first attempt is queued.
    pub state: DeliveryState,
    /// The new attempt cycle.
    pub cycle: u32,
}

/// A fresh attempt cycle with the same `webhook-id`.
#[utoipa::path(
    post,
    path = "/api/v1/status/{task_id}/webhooks/{delivery_id}/redeliver",
    operation_id = "redeliver",
    tag = "webhooks",
    params(
        ("task_id" = TaskId, Path, description = "The task's id"),
        ("delivery_id" = DeliveryId, Path, description = "The delivery's id (its `webhook-id`)"),
    ),
    responses(
        (status = 202, description = "Queued for a fresh attempt cycle", body = RedeliveredView),
        (status = 400, description = "`invalid_task_id`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such task or delivery of the caller's tenant", body = ErrorBody),
    )
)]
pub async fn redeliver(
    State(st): State<Arc<Status>>,
    Authenticated(tenant): Authenticated,
    Path((raw_id, raw_delivery_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let task = owned_task(&st, &tenant, &raw_id).await?;
    // a malformed id names no delivery
    let delivery_id: DeliveryId = raw_delivery_id
        .parse()
        .map_err(|_| ApiError::not_found("no such delivery"))?;
    tracing::Span::current().record("delivery_id", delivery_id.as_str());
    let delivery = st
        .deliveries
        .restart_delivery(&task.task_id, &delivery_id)
        .await?
        .ok_or_else(|| ApiError::not_found("no such delivery"))?;
    morag_shared::outbox::enqueue_delivery(st.webhooks.as_ref(), st.deliveries.as_ref(), &delivery).await?;
    tracing::info!(cycle = delivery.cycle, "redelivery queued");
    Ok((
        StatusCode::ACCEPTED,
        Json(RedeliveredView {
            delivery_id: delivery.delivery_id,
            state: DeliveryState::Pending,
            cycle: delivery.cycle,
        }),
    )
        .into_response())
}
