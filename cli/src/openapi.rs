//! `morag openapi`: the API's OpenAPI 3.1 document, assembled from the
//! ingest and status functions' annotated handlers and views, with what
//! every route shares: bearer API keys, and the 401, 500 and 503 answers
//! any of them may give. `docs/openapi.json` is its output (the status
//! function serves that file; a test checks the two are the same).

use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, Ref, RefOr, ServerBuilder};
use utoipa::OpenApi as _;

/// The security scheme's name.
const API_KEY: &str = "api_key";

/// The whole document.
pub fn document() -> OpenApi {
    let mut doc = morag_ingest::ApiDoc::openapi();
    doc.merge(morag_status::ApiDoc::openapi());
    doc.info = InfoBuilder::new()
        .title("morag-status")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Task intake, status tracking and signed webhook notifications for the MoRAG ingestion \
             pipeline. Every route but this document takes an API key: `Authorization: Bearer <key>`. \
             Errors are `{\"error\": {\"code\", \"message\"}}`.",
        ))
        .build();
    doc.servers = Some(vec![ServerBuilder::new()
        .url("/")
        .description(Some(
            "The API's base URL (a stack's `ApiUrl` output; `make dev`: http://127.0.0.1:3000)",
        ))
        .build()]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        API_KEY,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some("An API key (`morag keys create`)"))
                .build(),
        ),
    );
    doc.security = Some(vec![SecurityRequirement::new(API_KEY, Vec::<String>::new())]);
    for op in operations_mut(&mut doc) {
        // an operation with `security: [{}]` (the document) needs no key
        let public = op.security.as_ref().is_some_and(|s| !s.is_empty());
        let responses = &mut op.responses.responses;
        if !public {
            responses.insert(
                "401".to_owned(),
                error(
                    "No API key, or not a valid one (`unauthorized`)",
                    Some("WWW-Authenticate"),
                )
                .into(),
            );
        }
        responses.insert(
            "500".to_owned(),
            error("`internal_error`: an unexpected failure (logged)", None).into(),
        );
        responses.insert(
            "503".to_owned(),
            error(
                "`service_unavailable`: a backing service is down; retry after `Retry-After`",
                Some("Retry-After"),
            )
            .into(),
        );
    }
    add_links(&mut doc);
    doc
}

/// Every operation of the document.
fn operations_mut(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
    })
}

/// Where a value taken from an answer goes in a linked operation.
enum Slot {
    /// A parameter (path or query) of that name.
    Param(&'static str),
    /// A field of that name in its JSON body.
    Body(&'static str),
}

/// From the answers (this status) of some operations to other operations,
/// with values taken from the answer.
struct LinkPlan {
    from: &'static [&'static str],
    status: &'static str,
    to: &'static [&'static str],
    values: &'static [(Slot, &'static str)],
}

/// Where an answer's ids lead (OpenAPI links): a new task to its reads, a
/// new endpoint to its routes, a task's deliveries to a redelivery, a new
/// upload to its submission.
const LINKS: [LinkPlan; 4] = [
    LinkPlan {
        from: &["ingest_file", "ingest_url", "ingest_upload"],
        status: "202",
        to: &["get_status", "get_history", "get_timeline", "list_task_deliveries"],
        values: &[(Slot::Param("task_id"), "$response.body#/task_id")],
    },
    LinkPlan {
        from: &["create_endpoint"],
        status: "201",
        to: &[
            "get_endpoint",
            "update_endpoint",
            "delete_endpoint",
            "list_endpoint_deliveries",
            "recover_endpoint",
        ],
        values: &[(Slot::Param("endpoint_id"), "$response.body#/endpoint_id")],
    },
    LinkPlan {
        from: &["list_task_deliveries"],
        status: "200",
        to: &["redeliver"],
        values: &[
            (Slot::Param("task_id"), "$response.body#/task_id"),
            (Slot::Param("delivery_id"), "$response.body#/deliveries/0/delivery_id"),
        ],
    },
    LinkPlan {
        from: &["create_upload"],
        status: "201",
        to: &["ingest_upload"],
        values: &[(Slot::Body("upload_id"), "$response.body#/upload_id")],
    },
];

fn add_links(doc: &mut OpenApi) {
    for op in operations_mut(doc) {
        let Some(id) = op.operation_id.as_deref() else {
            continue;
        };
        let Some(plan) = LINKS.iter().find(|plan| plan.from.contains(&id)) else {
            continue;
        };
        let Some(RefOr::T(response)) = op.responses.responses.get_mut(plan.status) else {
            continue;
        };
        for target in plan.to {
            let mut link = LinkBuilder::new().operation_id(*target);
            let mut body = serde_json::Map::new();
            for (slot, value) in plan.values {
                match slot {
                    Slot::Param(name) => link = link.parameter(*name, *value),
                    Slot::Body(field) => {
                        body.insert((*field).to_owned(), (*value).into());
                    }
                }
            }
            if !body.is_empty() {
                link = link.request_body(Some(body));
            }
            response.links.insert((*target).to_owned(), RefOr::T(link.build()));
        }
    }
}

fn error(description: &str, header: Option<&str>) -> utoipa::openapi::Response {
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if let Some(name) = header {
        response = response.header(
            name,
            HeaderBuilder::new()
                .schema(utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::String))
                .build(),
        );
    }
    response.build()
}

/// The document as committed: pretty JSON and a final newline.
pub fn document_text() -> String {
    let mut value = serde_json::to_value(document()).expect("the document serializes");
    camel_case_links(&mut value);
    let mut text = serde_json::to_string_pretty(&value).expect("the document serializes");
    text.push('\n');
    text
}

/// utoipa 5.5 writes a Link object's fields in snake case
/// (`operation_id`); OpenAPI names them `operationId`, `operationRef`,
/// `requestBody`.
fn camel_case_links(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.values_mut())
        .filter_map(|op| op.get_mut("responses").and_then(|r| r.as_object_mut()))
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links").and_then(|l| l.as_object_mut()))
        .flat_map(|links| links.values_mut())
        .filter_map(|link| link.as_object_mut());
    for link in links {
        for (from, to) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(v) = link.remove(from) {
                link.insert(to.to_owned(), v);
            }
        }
    }
}
