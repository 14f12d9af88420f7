//! The reference pipeline worker (SQS processing queue): reads a `text` or
//! `document` source that is plain text, Markdown or HTML (from the uploads
//! bucket, or fetched from its URL under the same address rules as webhook
//! targets), splits it into paragraph-aware chunks and reports `started`,
//! `progress` and `completed` with `{chunks, characters, words, sha256}`
//! through [`TaskReporter`], exactly as any MoRAG worker would. Anything it
//! cannot process is reported `failed` with a clear error.
//!
//! Retries: a failure of our own infrastructure (S3, the status-events queue)
//! fails the record so SQS delivers it again; a problem with the source is a
//! `failed` task, not a retry. A malformed job is parked in the processing
//! DLQ with the reason.

pub mod stream;
pub mod text;
pub mod wiring;

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tracing::Instrument;

use futures_util::StreamExt;
use morag_shared::batch::{self, Handled, Received};
use morag_shared::domain::{Blob, JobMessage, Source, SourceType};
use morag_shared::error::StoreError;
use morag_shared::outbound::{self, check_target_url, TargetPolicy};
use morag_shared::ports::{BlobReader, DeadLetters, EventSink};
use morag_shared::reporter::TaskReporter;

/// The `User-Agent` of the processor's downloads.
pub const USER_AGENT: &str = "MoRAG-Processor/1.0";

use stream::TextStream;
use text::TextKind;

/// Knobs of one deployment.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub max_source_bytes: usize,
    pub chunk_chars: usize,
    pub target_policy: TargetPolicy,
    /// A job's whole run (read, chunk, report) must end within this, below
    /// the function's timeout; one that does not is reported `failed`.
    pub time_budget: std::time::Duration,
}

pub struct Processor {
    pub blobs: Arc<dyn BlobReader>,
    pub events: Arc<dyn EventSink>,
    pub dead_letters: Arc<dyn DeadLetters>,
    pub http: reqwest::Client,
    pub settings: Settings,
}

/// Why a source could not be processed (reported as the task's error).
#[derive(Debug)]
pub enum Problem {
    /// The task fails with this message.
    Source(String),
    /// Our infrastructure failed: retry the job.
    Infra(StoreError),
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        Problem::Infra(e)
    }
}

/// The kind of a source, or the task's error.
fn kind_of(content_type: &str, name: &str) -> Result<TextKind, Problem> {
    text::kind_of(content_type, name).ok_or_else(|| {
        Problem::Source(format!(
            "unsupported content type {content_type:?}: plain text, Markdown, HTML or PDF only"
        ))
    })
}

/// What the processor learns from a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Analysis {
    pub chunks: usize,
    pub characters: usize,
    pub words: usize,
    pub sha256: String,
}

/// Text from the bytes, chunked and counted: pure and CPU-bound (run it on a
/// blocking thread). Linear in the input.
pub fn analyse(bytes: &[u8], kind: TextKind, chunk_chars: usize) -> Result<Analysis, Problem> {
    let utf8 = || std::str::from_utf8(bytes).map_err(|_| Problem::Source("the source is not UTF-8 text".to_owned()));
    let text = match kind {
        TextKind::Html => text::html_to_text(bytes),
        TextKind::Plain | TextKind::Markdown => utf8()?.replace("\r\n", "\n"),
        TextKind::Pdf => pdf_extract::extract_text_from_mem(bytes)
            .map_err(|e| Problem::Source(format!("the PDF could not be read: {e}")))?,
    };
    let chunks = text::chunk(&text, chunk_chars).len();
    if chunks == 0 {
        return Err(Problem::Source("the source contains no text".to_owned()));
    }
    Ok(Analysis {
        chunks,
        characters: text.chars().count(),
        words: text.split_whitespace().count(),
        sha256: hex::encode(Sha256::digest(bytes)),
    })
}

impl Processor {
    /// Handles one SQS batch of jobs; only failed records are reported.
    pub async fn handle(&self, event: SqsEvent) -> SqsBatchResponse {
        batch::for_each(
            event,
            self.dead_letters.as_ref(),
            batch::json::<JobMessage>("invalid_job"),
            |record| self.handle_job(record),
        )
        .await
    }

    async fn handle_job(&self, record: Received<JobMessage>) -> Handled {
        let job = record.message;
        let span = tracing::info_span!("job", task_id = %job.task_id, tenant = %job.tenant);
        match self.process(&job).instrument(span.clone()).await {
            Ok(()) => Handled::Done,
            Err(e) => {
                span.in_scope(|| tracing::error!(error = %e, "job failed on our side; SQS will retry it"));
                Handled::Again
            }
        }
    }

    /// Processes one job, reporting as it goes.
    pub async fn process(&self, job: &JobMessage) -> Result<(), StoreError> {
        let reporter = TaskReporter::new(self.events.clone(), job.task_id);
        reporter.started("Processing started").await?;
        let budget = self.settings.time_budget;
        let outcome = match tokio::time::timeout(budget, self.run(job, &reporter)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Problem::Source(format!(
                "time_budget_exceeded: processing took longer than {} s",
                budget.as_secs_f64()
            ))),
        };
        match outcome {
            Ok(result) => {
                reporter.completed(result).await?;
                tracing::info!("job completed");
                Ok(())
            }
            Err(Problem::Source(message)) => {
                tracing::info!(%message, "job failed: the source cannot be processed");
                reporter.failed(message).await?;
                Ok(())
            }
            Err(Problem::Infra(e)) => Err(e),
        }
    }

    async fn run(&self, job: &JobMessage, reporter: &TaskReporter) -> Result<Map<String, Value>, Problem> {
        if !matches!(job.source_type, SourceType::Text | SourceType::Document) {
            return Err(Problem::Source(format!(
                "unsupported_source_type: the reference processor handles text and document sources, not {} \
                 (a pipeline for it takes these jobs by their source_type)",
                job.source_type
            )));
        }
        let (analysis, declared_sha256) = match &job.source {
            Source::Object { bucket, key, sha256 } => {
                let blob = match self.blobs.open(bucket, key).await {
                    Ok(Some(blob)) => blob,
                    Ok(None) => return Err(Problem::Source("the uploaded file no longer exists".to_owned())),
                    Err(e) => return Err(Problem::Infra(e)),
                };
                let kind = kind_of(&blob.content_type, key)?;
                let analysis = match kind {
                    // any size, in bounded memory
                    TextKind::Plain | TextKind::Markdown => self.stream(blob, reporter).await?,
                    // PDFs need random access; HTML is read whole
                    TextKind::Html | TextKind::Pdf => {
                        let bytes = self.collect(blob).await?;
                        self.analyse_whole(bytes, kind, reporter).await?
                    }
                };
                (analysis, sha256.clone())
            }
            Source::Url { url } => {
                let (bytes, content_type) = self.fetch(url).await?;
                let kind = kind_of(&content_type, url.split(['?', '#']).next().unwrap_or(url))?;
                (self.analyse_whole(bytes, kind, reporter).await?, None)
            }
        };
        // the checksum declared at upload, checked where the bytes are read
        if declared_sha256.is_some_and(|d| !d.eq_ignore_ascii_case(&analysis.sha256)) {
            return Err(Problem::Source(
                "checksum_mismatch: the object's SHA-256 is not the one declared when it was uploaded".to_owned(),
            ));
        }
        let n = analysis.chunks;
        reporter.progress(0.95, format!("Cut into {n} chunks")).await?;
        let mut result = Map::new();
        result.insert("chunks".into(), json!(n));
        result.insert("characters".into(), json!(analysis.characters));
        result.insert("words".into(), json!(analysis.words));
        result.insert("sha256".into(), json!(analysis.sha256));
        Ok(result)
    }

    /// Streams plain text or Markdown through the counter on a blocking
    /// thread, reporting progress at each tenth of the bytes.
    async fn stream(&self, mut blob: Blob, reporter: &TaskReporter) -> Result<Analysis, Problem> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(8);
        let chunk_chars = self.settings.chunk_chars;
        let counting = tokio::task::spawn_blocking(move || {
            let mut text = TextStream::new(chunk_chars);
            while let Some(piece) = rx.blocking_recv() {
                text.push(&piece)?;
            }
            text.finish()
        });
        let size = blob.size_bytes;
        reporter.progress(0.1, format!("Reading {size} bytes")).await?;
        let (mut read, mut reported) = (0u64, 0u64);
        while let Some(piece) = blob.body.next().await {
            let piece = piece.map_err(|e| Problem::Infra(StoreError::unavailable("s3", "GetObject", e)))?;
            read += piece.len() as u64;
            if tx.send(piece).await.is_err() {
                break; // the counter stopped: not UTF-8
            }
            let decile = read * 10 / size.max(1);
            if decile > reported && decile < 10 {
                reported = decile;
                let fraction = 0.1 + 0.8 * (read as f64 / size.max(1) as f64);
                reporter
                    .progress(fraction, format!("Read {read} of {size} bytes"))
                    .await?;
            }
        }
        drop(tx);
        let counts = counting
            .await
            .map_err(|e| Problem::Source(format!("processing the source failed: {e}")))?
            .map_err(|_| Problem::Source("the source is not UTF-8 text".to_owned()))?;
        if counts.chunks == 0 {
            return Err(Problem::Source("the source contains no text".to_owned()));
        }
        Ok(Analysis {
            chunks: counts.chunks,
            characters: counts.characters,
            words: counts.words,
            sha256: counts.sha256,
        })
    }

    /// A whole object, up to the size cap (sources read in memory).
    async fn collect(&self, mut blob: Blob) -> Result<Bytes, Problem> {
        let max = self.settings.max_source_bytes;
        let too_large = || Problem::Source(format!("the uploaded file is larger than {max} bytes"));
        if blob.size_bytes > max as u64 {
            return Err(too_large());
        }
        let mut bytes = Vec::new();
        while let Some(piece) = blob.body.next().await {
            let piece = piece.map_err(|e| Problem::Infra(StoreError::unavailable("s3", "GetObject", e)))?;
            if bytes.len() + piece.len() > max {
                return Err(too_large());
            }
            bytes.extend_from_slice(&piece);
        }
        Ok(Bytes::from(bytes))
    }

    /// Analyses a source held in memory, on a blocking thread.
    async fn analyse_whole(&self, bytes: Bytes, kind: TextKind, reporter: &TaskReporter) -> Result<Analysis, Problem> {
        reporter.progress(0.1, format!("Read {} bytes", bytes.len())).await?;
        // CPU-bound: off the async runtime, so other jobs of the batch (and,
        // in `morag dev`, the API) keep running while a big document is cut
        let chunk_chars = self.settings.chunk_chars;
        tokio::task::spawn_blocking(move || analyse(&bytes, kind, chunk_chars))
            .await
            .map_err(|e| Problem::Source(format!("processing the source failed: {e}")))?
    }

    /// Fetches a URL under the target policy, reading at most the size cap.
    async fn fetch(&self, url: &str) -> Result<(Bytes, String), Problem> {
        let url = check_target_url(url, self.settings.target_policy, false)
            .map_err(|e| Problem::Source(format!("url {e}")))?;
        let host = url.host_str().unwrap_or("").to_owned();
        let fail = |what: String| Problem::Source(format!("could not fetch {host}: {what}"));
        let mut response =
            self.http
                .get(url.clone())
                .send()
                .await
                .map_err(|e| match outbound::blocked_by_policy(&e) {
                    Some(b) => Problem::Source(format!("url host {} resolves to a non-public address", b.host)),
                    None if e.is_timeout() => fail("timed out".to_owned()),
                    None if e.is_connect() => fail("connection failed".to_owned()),
                    None => fail("request failed".to_owned()),
                })?;
        let status = response.status();
        if status.is_redirection() {
            return Err(fail(format!(
                "HTTP {} redirect (redirects are not followed)",
                status.as_u16()
            )));
        }
        if !status.is_success() {
            return Err(fail(format!("HTTP {}", status.as_u16())));
        }
        let max = self.settings.max_source_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(fail(format!("larger than {max} bytes")));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| fail("the download broke off".to_owned()))?
        {
            if body.len() + chunk.len() > max {
                return Err(fail(format!("larger than {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(body), content_type))
    }
}

#[cfg(test)]
mod tests;
