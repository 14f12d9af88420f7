//! What the OpenAPI document (docs/openapi.json) says of the shared types:
//! the error answer, the ids (strings with the exact pattern their parsers
//! accept) and the responses every route may give. The handlers' own
//! `#[utoipa::path]` annotations and views say the rest.

use std::borrow::Cow;

use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::delivery::{Scheme, Schemes};
use crate::domain::{DeliveryId, EndpointId, TaskId, UploadId};

/// The API's error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code (`not_found`, `invalid_parameter`, ...).
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
}

fn id(description: &str, pattern: &str, format: Option<SchemaFormat>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(format)
        .pattern(Some(pattern))
        .description(Some(description))
        .into()
}

macro_rules! id_schema {
    ($ty:ty, $name:literal, $description:literal, $pattern:literal, $format:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                id($description, $pattern, $format)
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

id_schema!(
    TaskId,
    "TaskId",
    "A task id: a UUID in its 36-character hyphenated form.",
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
    Some(SchemaFormat::Custom("uuid".to_owned()))
);
id_schema!(
    DeliveryId,
    "DeliveryId",
    "A webhook delivery's id, its `webhook-id` header: `msg_` and 24 lower-case hex digits.",
    "^msg_[0-9a-f]{24}$",
    None
);
id_schema!(
    EndpointId,
    "EndpointId",
    "A webhook endpoint's id: `ep_` and 24 lower-case hex digits.",
    "^ep_[0-9a-f]{24}$",
    None
);
id_schema!(
    UploadId,
    "UploadId",
    "An upload's id: `upl_` and 32 lower-case hex digits.",
    "^upl_[0-9a-f]{32}$",
    None
);

impl PartialSchema for Schemes {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Scheme::schema())
            .min_items(Some(1))
            .description(Some(
                "Which signatures webhooks carry: `v1` (HMAC-SHA256, the shared secret), `v1a` (ed25519), or both.",
            ))
            .into()
    }
}

impl ToSchema for Schemes {}
