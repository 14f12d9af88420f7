//! Turning a request body into a validated [`Submission`]. Nothing here
//! writes anything.

use axum::extract::{FromRequest, Multipart, Request};
use bytes::Bytes;
use serde_json::{Map, Value};
use url::Url;

use morag_shared::domain::{InvalidId, SourceType, UploadId};
use morag_shared::domain::{Timeouts, WebhookEvent};
use morag_shared::http::body::whole_number;
use morag_shared::http::ApiError;
use morag_shared::outbound::target::{check_target_url, MAX_URL_LEN};

use crate::limits::{file_too_large, Limits, MAX_METADATA_BYTES};

/// A validated request.
#[derive(Debug)]
pub struct Submission {
    pub source_type: SourceType,
    pub input: SubmissionInput,
    pub webhook_url: Option<Url>,
    /// The webhook events subscribed to (all when not given).
    pub webhook_events: Vec<WebhookEvent>,
    pub metadata: Map<String, Value>,
    /// `heartbeat_timeout_s` and `timeout_s` (defaults when not given).
    pub timeouts: Timeouts,
}

#[derive(Debug)]
pub enum SubmissionInput {
    File {
        /// Sanitized: safe as the last segment of an S3 key.
        name: String,
        content_type: String,
        bytes: Bytes,
    },
    Url(Url),
    /// An object already in the bucket, granted by `POST /api/v1/uploads`.
    Upload(UploadId),
}

/// The fields every route takes besides its source.
const COMMON_FIELDS: [&str; 6] = [
    "source_type",
    "webhook_url",
    "webhook_events",
    "metadata",
    "heartbeat_timeout_s",
    "timeout_s",
];

fn fields_with(source: &'static str) -> [&'static str; 7] {
    let [a, b, c, d, e, f] = COMMON_FIELDS;
    [a, source, b, c, d, e, f]
}

fn timeouts(heartbeat_s: Option<u64>, timeout_s: Option<u64>) -> Result<Timeouts, ApiError> {
    Timeouts::parse(heartbeat_s, timeout_s).map_err(|e| ApiError::unprocessable("invalid_timeout", e))
}

/// A whole number of seconds given as text (a multipart field).
fn seconds_text(name: &str, text: &str) -> Result<u64, ApiError> {
    text.trim()
        .parse()
        .map_err(|_| ApiError::unprocessable("invalid_timeout", format!("{name} must be a whole number of seconds")))
}

/// A whole number of seconds in a JSON body.
fn seconds_field(body: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => whole_number(v).map(Some).ok_or_else(|| {
            ApiError::unprocessable("invalid_timeout", format!("{name} must be a whole number of seconds"))
        }),
    }
}

/// `webhook_events`: known names, at least one, no repeats; only with a
/// `webhook_url`.
fn parse_webhook_events(names: Option<Vec<String>>, webhook_url: &Option<Url>) -> Result<Vec<WebhookEvent>, ApiError> {
    let Some(names) = names else {
        return Ok(WebhookEvent::ALL.to_vec());
    };
    if webhook_url.is_none() {
        return Err(ApiError::unprocessable(
            "invalid_webhook_events",
            "webhook_events needs a webhook_url",
        ));
    }
    let mut events = Vec::new();
    for name in names {
        let event: WebhookEvent = name
            .trim()
            .parse()
            .map_err(|e: String| ApiError::unprocessable("invalid_webhook_events", e))?;
        if !events.contains(&event) {
            events.push(event);
        }
    }
    if events.is_empty() {
        return Err(ApiError::unprocessable(
            "invalid_webhook_events",
            "webhook_events must name at least one event",
        ));
    }
    Ok(events)
}

fn missing(field: &str) -> ApiError {
    ApiError::unprocessable("missing_field", format!("{field} is required"))
}

fn parse_source_type(raw: &str) -> Result<SourceType, ApiError> {
    raw.trim()
        .parse()
        .map_err(|e: String| ApiError::unprocessable("invalid_source_type", e))
}

fn parse_webhook_url(raw: &str, limits: &Limits) -> Result<Url, ApiError> {
    check_target_url(raw.trim(), limits.target_policy, true)
        .map_err(|e| ApiError::unprocessable("invalid_webhook_url", format!("webhook_url {e}")))
}

fn parse_source_url(raw: &str, limits: &Limits) -> Result<Url, ApiError> {
    if raw.len() > MAX_URL_LEN {
        return Err(ApiError::unprocessable(
            "invalid_url",
            format!("url must be at most {MAX_URL_LEN} characters"),
        ));
    }
    check_target_url(raw.trim(), limits.target_policy, false)
        .map_err(|e| ApiError::unprocessable("invalid_url", format!("url {e}")))
}

fn check_metadata(value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => {
            if Value::Object(map.clone()).to_string().len() > MAX_METADATA_BYTES {
                return Err(ApiError::unprocessable(
                    "invalid_metadata",
                    format!("metadata must be at most {MAX_METADATA_BYTES} bytes of JSON"),
                ));
            }
            Ok(map)
        }
        _ => Err(ApiError::unprocessable(
            "invalid_metadata",
            "metadata must be a JSON object",
        )),
    }
}

/// Keeps the last path segment of a client's file name, with only
/// `A-Z a-z 0-9 . - _`, no leading dots and at most 128 characters; anything
/// else becomes `_`. An empty result becomes `upload`.
pub fn sanitize_file_name(raw: &str) -> String {
    let last = raw.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = cleaned.trim_start_matches('.');
    let name: String = if trimmed.len() > 128 {
        // keep the extension when truncating
        match trimmed.rfind('.') {
            Some(dot) if trimmed.len() - dot <= 16 => {
                let ext = &trimmed[dot..];
                format!("{}{}", &trimmed[..128 - ext.len()], ext)
            }
            _ => trimmed[..128].to_owned(),
        }
    } else {
        trimmed.to_owned()
    };
    if name.chars().all(|c| c == '_' || c == '.') {
        "upload".to_owned()
    } else {
        name
    }
}

fn multipart_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("invalid_multipart", format!("malformed multipart body: {e}"))
}

/// `multipart/form-data`: `source_type`, `file`, optional `webhook_url` and
/// `metadata` (a JSON object as a string).
pub async fn parse_multipart(request: Request, limits: &Limits) -> Result<Submission, ApiError> {
    let mut form = Multipart::from_request(request, &()).await.map_err(multipart_error)?;
    let mut source_type = None;
    let mut file = None;
    let mut webhook_url = None;
    let mut webhook_events = None;
    let mut metadata = None;
    let (mut heartbeat_s, mut timeout_s) = (None, None);
    let mut seen: Vec<String> = Vec::new();
    let fields = fields_with("file");
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_owned();
        if !fields.contains(&name.as_str()) {
            return Err(ApiError::unprocessable(
                "unknown_field",
                format!("unknown field {name:?}; expected {}", fields.join(", ")),
            ));
        }
        if seen.contains(&name) {
            return Err(ApiError::unprocessable(
                "duplicate_field",
                format!("{name} given more than once"),
            ));
        }
        seen.push(name.clone());
        if name == "file" {
            let file_name = sanitize_file_name(field.file_name().unwrap_or(""));
            let content_type = field
                .content_type()
                .filter(|ct| is_simple_mime(ct))
                .unwrap_or("application/octet-stream")
                .to_owned();
            let bytes = field.bytes().await.map_err(multipart_error)?;
            if bytes.len() > limits.max_upload_bytes {
                return Err(file_too_large(limits.max_upload_bytes));
            }
            file = Some((file_name, content_type, bytes));
            continue;
        }
        let text = field
            .text()
            .await
            .map_err(|_| ApiError::bad_request("invalid_multipart", format!("{name} must be UTF-8 text")))?;
        match name.as_str() {
            "source_type" => source_type = Some(text),
            "webhook_url" => webhook_url = Some(text),
            // comma-separated: task_started,task_completed
            "webhook_events" => {
                webhook_events = Some(
                    text.split(',')
                        .map(str::to_owned)
                        .filter(|s| !s.trim().is_empty())
                        .collect(),
                )
            }
            "heartbeat_timeout_s" => heartbeat_s = Some(seconds_text(&name, &text)?),
            "timeout_s" => timeout_s = Some(seconds_text(&name, &text)?),
            _ => metadata = Some(text),
        }
    }

    let source_type = parse_source_type(&source_type.ok_or_else(|| missing("source_type"))?)?;
    let (name, content_type, bytes) = file.ok_or_else(|| missing("file"))?;
    if bytes.is_empty() {
        return Err(ApiError::unprocessable("empty_file", "file must not be empty"));
    }
    let webhook_url = webhook_url
        .filter(|u| !u.trim().is_empty())
        .map(|u| parse_webhook_url(&u, limits))
        .transpose()?;
    let metadata =
        match metadata.filter(|m| !m.trim().is_empty()) {
            None => Map::new(),
            Some(text) => check_metadata(serde_json::from_str(&text).map_err(|e| {
                ApiError::unprocessable("invalid_metadata", format!("metadata is not valid JSON: {e}"))
            })?)?,
        };
    let webhook_events = parse_webhook_events(webhook_events, &webhook_url)?;
    Ok(Submission {
        source_type,
        input: SubmissionInput::File {
            name,
            content_type,
            bytes,
        },
        webhook_url,
        webhook_events,
        metadata,
        timeouts: timeouts(heartbeat_s, timeout_s)?,
    })
}

fn is_simple_mime(ct: &str) -> bool {
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    matches!(ct.split_once('/'), Some((a, b)) if token(a) && token(b))
}

fn string_field<'a>(body: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::unprocessable(
            "invalid_field_type",
            format!("{name} must be a string"),
        )),
    }
}

/// `application/json`: `{source_type, url, webhook_url?, metadata?}`.
/// Which JSON route a body is for: the source is a URL, or a landed upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonSource {
    Url,
    Upload,
}

/// A JSON object body with only the `fields` it may have.
fn json_object(bytes: &[u8], fields: &[&str]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {e}")))?;
    let Value::Object(body) = value else {
        return Err(ApiError::bad_request(
            "invalid_json",
            "request body must be a JSON object",
        ));
    };
    if let Some(unknown) = body.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(ApiError::unprocessable(
            "unknown_field",
            format!("unknown field {unknown:?}; expected {}", fields.join(", ")),
        ));
    }
    Ok(body)
}

pub fn parse_json(bytes: &[u8], limits: &Limits, source: JsonSource) -> Result<Submission, ApiError> {
    let fields = match source {
        JsonSource::Url => fields_with("url"),
        JsonSource::Upload => fields_with("upload_id"),
    };
    let body = json_object(bytes, &fields)?;
    let source_type = parse_source_type(string_field(&body, "source_type")?.ok_or_else(|| missing("source_type"))?)?;
    let input = match source {
        JsonSource::Url => SubmissionInput::Url(parse_source_url(
            string_field(&body, "url")?.ok_or_else(|| missing("url"))?,
            limits,
        )?),
        JsonSource::Upload => SubmissionInput::Upload(
            string_field(&body, "upload_id")?
                .ok_or_else(|| missing("upload_id"))?
                .parse()
                .map_err(|e: InvalidId| ApiError::unprocessable("invalid_upload_id", e.0))?,
        ),
    };
    let webhook_url = string_field(&body, "webhook_url")?
        .filter(|u| !u.trim().is_empty())
        .map(|u| parse_webhook_url(u, limits))
        .transpose()?;
    let webhook_events = match body.get("webhook_events") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    ApiError::unprocessable("invalid_field_type", "webhook_events must be a list of strings")
                })?,
        ),
        Some(_) => {
            return Err(ApiError::unprocessable(
                "invalid_field_type",
                "webhook_events must be a list of strings",
            ))
        }
    };
    let webhook_events = parse_webhook_events(webhook_events, &webhook_url)?;
    let metadata = check_metadata(body.get("metadata").cloned().unwrap_or(Value::Null))?;
    Ok(Submission {
        source_type,
        input,
        webhook_url,
        webhook_events,
        metadata,
        timeouts: timeouts(
            seconds_field(&body, "heartbeat_timeout_s")?,
            seconds_field(&body, "timeout_s")?,
        )?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_cannot_escape_their_prefix() {
        assert_eq!(sanitize_file_name("report.pdf"), "report.pdf");
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("..\\..\\boot.ini"), "boot.ini");
        assert_eq!(sanitize_file_name(".."), "upload");
        assert_eq!(sanitize_file_name(".htaccess"), "htaccess");
        assert_eq!(sanitize_file_name("a\u{0}b\nc\rd.txt"), "a_b_c_d.txt");
        assert_eq!(sanitize_file_name("résumé 2024.md"), "r_sum__2024.md");
        assert_eq!(sanitize_file_name(""), "upload");
        let long = format!("{}.markdown", "x".repeat(300));
        let short = sanitize_file_name(&long);
        assert_eq!(short.len(), 128);
        assert!(short.ends_with(".markdown"));
    }

    #[test]
    fn mime_types_are_checked() {
        assert!(is_simple_mime("text/markdown"));
        assert!(is_simple_mime(
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
        ));
        assert!(!is_simple_mime("text/html\r\nX-Evil: 1"));
        assert!(!is_simple_mime("nonsense"));
    }
}

/// A validated `POST /api/v1/uploads` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRequest {
    /// Sanitized, as for `/ingest/file`.
    pub filename: String,
    /// Lower-case `type/subtype`.
    pub content_type: String,
    pub size_bytes: u64,
    /// Lower-case hex.
    pub sha256: Option<String>,
}

const UPLOAD_REQUEST_FIELDS: [&str; 4] = ["filename", "content_type", "size_bytes", "sha256"];
/// Longest `content_type` of an upload.
const MAX_CONTENT_TYPE: usize = 255;

/// `application/json`: `{filename, content_type, size_bytes, sha256?}`.
pub fn parse_upload_request(bytes: &[u8], limits: &Limits) -> Result<UploadRequest, ApiError> {
    let body = json_object(bytes, &UPLOAD_REQUEST_FIELDS)?;
    let raw_name = string_field(&body, "filename")?.ok_or_else(|| missing("filename"))?;
    let filename = sanitize_file_name(raw_name);
    if raw_name.trim().is_empty() || filename.is_empty() {
        return Err(ApiError::unprocessable("invalid_filename", "filename must name a file"));
    }
    let content_type = string_field(&body, "content_type")?
        .ok_or_else(|| missing("content_type"))?
        .trim()
        .to_ascii_lowercase();
    let mime_part = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let valid_type = content_type.len() <= MAX_CONTENT_TYPE
        && content_type
            .split_once('/')
            .is_some_and(|(t, s)| mime_part(t) && mime_part(s));
    if !valid_type {
        return Err(ApiError::unprocessable(
            "invalid_content_type",
            "content_type must be a media type like text/markdown or application/pdf",
        ));
    }
    let size_bytes = match body.get("size_bytes") {
        None | Some(Value::Null) => return Err(missing("size_bytes")),
        Some(v) => whole_number(v).ok_or_else(|| {
            ApiError::unprocessable("invalid_size_bytes", "size_bytes must be a whole number of bytes")
        })?,
    };
    if size_bytes == 0 || size_bytes > limits.max_object_bytes {
        return Err(ApiError::unprocessable(
            "invalid_size_bytes",
            format!(
                "size_bytes must be from 1 to {} (one S3 PUT); larger files are not supported yet",
                limits.max_object_bytes
            ),
        ));
    }
    let sha256 = string_field(&body, "sha256")?
        .map(|h| {
            let h = h.trim().to_ascii_lowercase();
            (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .then_some(h)
                .ok_or_else(|| ApiError::unprocessable("invalid_sha256", "sha256 must be 64 hex digits"))
        })
        .transpose()?;
    Ok(UploadRequest {
        filename,
        content_type,
        size_bytes,
        sha256,
    })
}
