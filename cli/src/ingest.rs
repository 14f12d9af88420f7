//! `morag ingest FILE`: submits a file of any size through the upload flow:
//! `POST /api/v1/uploads` (size, type and SHA-256 declared), the file
//! streamed to the presigned S3 URL with a progress bar, then
//! `POST /api/v1/ingest/upload`. Works against `make dev` and a deployed
//! stack (`--api`, `--key`).

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use futures_util::stream;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Read and sent in pieces of this size.
const PIECE: usize = 1024 * 1024;

/// What to submit.
#[derive(Debug, Clone)]
pub struct IngestFile<'a> {
    pub api: &'a str,
    pub key: &'a str,
    pub path: &'a Path,
    pub source_type: &'a str,
    pub content_type: Option<&'a str>,
    pub webhook_url: Option<&'a str>,
    pub metadata: Option<Value>,
}

/// The accepted task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub task_id: String,
    pub status_url: String,
}

/// A media type from the file's extension.
pub fn content_type_of(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("md" | "markdown") => "text/markdown",
        Some("txt" | "text") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("pdf") => "application/pdf",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

fn sha256_of(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (mut hasher, mut size, mut buf) = (Sha256::new(), 0u64, vec![0u8; PIECE]);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok((size, hex::encode(hasher.finalize())));
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
}

/// The API's answer, or its JSON error as a readable failure.
async fn answer(response: reqwest::Response, what: &str) -> Result<Value> {
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let code = body["error"]["code"].as_str().unwrap_or("");
        let message = body["error"]["message"].as_str().unwrap_or("");
        bail!("{what}: HTTP {status} {code}: {message}");
    }
    Ok(body)
}

/// Uploads and submits the file; `progress` shows the upload.
pub async fn ingest(req: &IngestFile<'_>, progress: &ProgressBar) -> Result<Submitted> {
    let client = reqwest::Client::new();
    let filename = req
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file needs a name")?;
    let content_type = req.content_type.unwrap_or_else(|| content_type_of(req.path));
    let (size, sha256) = sha256_of(req.path)?;
    let granted = answer(
        client
            .post(format!("{}/api/v1/uploads", req.api))
            .bearer_auth(req.key)
            .json(&json!({"filename": filename, "content_type": content_type, "size_bytes": size, "sha256": sha256}))
            .send()
            .await
            .context("POST /api/v1/uploads")?,
        "requesting an upload",
    )
    .await?;

    progress.set_length(size);
    let mut file = std::fs::File::open(req.path)?;
    let bar = progress.clone();
    let body = stream::unfold(false, move |done| {
        let mut buf = vec![0u8; PIECE];
        let read = if done { Ok(0) } else { file.read(&mut buf) };
        let bar = bar.clone();
        async move {
            match read {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(buf), false))
                }
                Err(e) => Some((Err(e), true)),
            }
        }
    });
    let mut put = client
        .put(granted["url"].as_str().context("no upload url")?)
        .body(reqwest::Body::wrap_stream(body));
    for (name, value) in granted["headers"].as_object().context("no upload headers")? {
        put = put.header(name.as_str(), value.as_str().unwrap_or_default());
    }
    let sent = put.send().await.context("uploading to S3")?;
    if !sent.status().is_success() {
        bail!(
            "S3 refused the upload: HTTP {}: {}",
            sent.status(),
            sent.text().await.unwrap_or_default()
        );
    }
    progress.finish();

    let mut submission = json!({"upload_id": granted["upload_id"], "source_type": req.source_type});
    if let Some(url) = req.webhook_url {
        submission["webhook_url"] = url.into();
    }
    if let Some(metadata) = &req.metadata {
        submission["metadata"] = metadata.clone();
    }
    let accepted = answer(
        client
            .post(format!("{}/api/v1/ingest/upload", req.api))
            .bearer_auth(req.key)
            .json(&submission)
            .send()
            .await
            .context("POST /api/v1/ingest/upload")?,
        "submitting the upload",
    )
    .await?;
    Ok(Submitted {
        task_id: accepted["task_id"].as_str().unwrap_or_default().to_owned(),
        status_url: accepted["status_url"].as_str().unwrap_or_default().to_owned(),
    })
}

/// A byte-counting bar on stderr (hidden when stderr is not a terminal).
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}") {
        bar.set_style(style);
    }
    bar
}
