//! Submitting a validated request: idempotency, the upload, the task and its
//! job, in that order, and what a failure at each step leaves behind. Knows
//! the ports, not HTTP or DynamoDB: the handler renders the result.
//!
//! 1. an `Idempotency-Key` already used: the first answer once its job is
//!    enqueued; `InProgress` (409) while the first request may still run;
//!    after the lease, the retry enqueues the job a dead first request never
//!    sent; `KeyReused` when the request differs (nothing written). The key's
//!    record is marked `enqueued` after the job is sent, so a replay never
//!    answers 202 for a task whose job may not exist;
//! 2. the upload (file submissions): fails → nothing written;
//! 3. the `pending` task (and the idempotency record) in one conditional
//!    write: fails → the upload is deleted;
//! 4. the job: fails → the task and the upload are deleted, so no task waits
//!    in `pending` for a job that was never sent. If that clean-up fails too,
//!    an `orphaned task` error is logged with the task id.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use url::Url;

use morag_shared::domain::{
    CreateOutcome, IdempotencyRecord, IdempotencyState, Source, Task, TaskId, TaskStatus, TenantId, Upload, UploadId,
};
use morag_shared::error::StoreError;

use crate::form::{Submission, SubmissionInput};
use crate::state::Ingest;

/// How long an `Idempotency-Key` is remembered.
pub const IDEMPOTENCY_WINDOW_HOURS: i64 = 24;

/// An accepted submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub task_id: TaskId,
    pub created_at: DateTime<Utc>,
    /// The answer to an earlier request with the same `Idempotency-Key`.
    pub replayed: bool,
}

/// Why a submission was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The `Idempotency-Key` was used before with a different request.
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    /// No such upload for this tenant (another tenant's is no different).
    #[error("no such upload")]
    UploadNotFound,
    /// The upload already made a task.
    #[error("this upload was already turned into a task")]
    UploadAlreadyUsed,
    /// Too long since the upload was granted.
    #[error("this upload expired; request a new one with POST /api/v1/uploads")]
    UploadExpired,
    /// The object is not in the bucket (yet).
    #[error("nothing was uploaded for this upload_id yet: PUT the file to the upload's url first")]
    UploadIncomplete,
    #[error("the uploaded object has {actual} bytes, not the {declared} declared")]
    UploadSizeMismatch { declared: u64, actual: u64 },
    #[error("the uploaded object's SHA-256 is not the one declared")]
    UploadChecksumMismatch,
    /// The first request with this `Idempotency-Key` has not finished yet.
    #[error("a request with this Idempotency-Key is still in progress; retry shortly")]
    InProgress,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn fingerprint(tenant: &TenantId, s: &Submission) -> String {
    let input = match &s.input {
        SubmissionInput::File {
            name,
            content_type,
            bytes,
        } => json!({
            "file": {"name": name, "content_type": content_type, "sha256": hex::encode(Sha256::digest(bytes))}
        }),
        SubmissionInput::Url(url) => json!({"url": url.as_str()}),
        SubmissionInput::Upload(upload_id) => json!({"upload": upload_id.as_str()}),
    };
    let canonical = json!({
        "tenant": tenant.as_str(),
        "source_type": s.source_type.as_str(),
        "input": input,
        "webhook_url": s.webhook_url.as_ref().map(Url::as_str),
        "webhook_events": s.webhook_events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "metadata": Value::Object(s.metadata.clone()),
        "heartbeat_timeout_s": s.timeouts.heartbeat_s,
        "timeout_s": s.timeouts.timeout_s,
    });
    hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
}

/// The caller's upload, landed as declared and not claimed yet; its object is
/// marked claimed (so the lifecycle rule for abandoned uploads spares it)
/// before any task exists.
async fn landed_upload(
    st: &Ingest,
    tenant: &TenantId,
    upload_id: &UploadId,
    now: DateTime<Utc>,
) -> Result<Upload, SubmitError> {
    let upload = st
        .uploads
        .get_upload(upload_id)
        .await?
        .filter(|u| &u.tenant == tenant)
        .ok_or(SubmitError::UploadNotFound)?;
    if upload.task_id.is_some() {
        return Err(SubmitError::UploadAlreadyUsed);
    }
    if now > upload.claimable_until() {
        return Err(SubmitError::UploadExpired);
    }
    let info = st.blobs.head(&upload.key).await?.ok_or(SubmitError::UploadIncomplete)?;
    if info.size_bytes != upload.size_bytes {
        return Err(SubmitError::UploadSizeMismatch {
            declared: upload.size_bytes,
            actual: info.size_bytes,
        });
    }
    if let (Some(declared), Some(stored)) = (upload.sha256_base64(), &info.checksum_sha256) {
        if &declared != stored {
            return Err(SubmitError::UploadChecksumMismatch);
        }
    }
    st.blobs.mark_claimed(&upload.key).await?;
    Ok(upload)
}

/// The answer for a key used before: the first answer once its job is
/// enqueued; `InProgress` while the first request may still be running; and
/// if that request died between its write and its enqueue (past the lease),
/// the retry finishes its work.
async fn replay(
    st: &Ingest,
    existing: &IdempotencyRecord,
    fingerprint: &str,
    now: DateTime<Utc>,
) -> Result<Submitted, SubmitError> {
    if existing.fingerprint != fingerprint {
        return Err(SubmitError::KeyReused);
    }
    tracing::Span::current().record("task_id", existing.task_id.to_string());
    match existing.state {
        IdempotencyState::Enqueued => {}
        IdempotencyState::InFlight if !existing.abandoned(now) => {
            tracing::info!("idempotent retry while the first request is in flight");
            return Err(SubmitError::InProgress);
        }
        IdempotencyState::InFlight => take_over(st, existing).await?,
    }
    tracing::info!("idempotent replay");
    Ok(Submitted {
        task_id: existing.task_id,
        created_at: existing.created_at,
        replayed: true,
    })
}

/// Enqueues the job of an abandoned first request (if its task is still
/// `pending`) and marks its key done. At-least-once: had the first request
/// enqueued and died before marking, its job goes out twice (same task id).
async fn take_over(st: &Ingest, existing: &IdempotencyRecord) -> Result<(), SubmitError> {
    let Some(task) = st.tasks.get_task(&existing.task_id).await? else {
        // the first request's clean-up removes task and record together
        tracing::error!("idempotency record without its task; answering in progress until it expires");
        return Err(SubmitError::InProgress);
    };
    if task.status == TaskStatus::Pending && !task.job_enqueued {
        let message_id = st.jobs.enqueue(&task.job()).await?;
        tracing::warn!(%message_id, "took over an abandoned submission: its job is enqueued now");
        confirm_job(st, &task).await;
    }
    st.tasks
        .mark_idempotency_enqueued(&existing.tenant, &existing.key_hash, &existing.task_id)
        .await?;
    Ok(())
}

/// Records that the task's job is on the queue. If this fails, the watchdog
/// sends the job again after its grace period: a duplicate with the same
/// `job_id`, never a lost job.
async fn confirm_job(st: &Ingest, task: &Task) {
    if let Err(e) = st.tasks.mark_job_enqueued(task).await {
        tracing::warn!(error = %e, "could not record that the job is enqueued; the watchdog will send it again");
    }
}

/// Stores, records and enqueues a validated submission.
pub async fn submit(
    st: &Ingest,
    tenant: TenantId,
    submission: Submission,
    idem_key: Option<String>,
) -> Result<Submitted, SubmitError> {
    let now = morag_shared::time::now();
    let fingerprint = fingerprint(&tenant, &submission);
    let task_id = TaskId::new();
    let idem = idem_key.map(|key| IdempotencyRecord {
        tenant: tenant.clone(),
        key_hash: hex::encode(Sha256::digest(key.as_bytes())),
        fingerprint: fingerprint.clone(),
        task_id,
        created_at: now,
        expires_at: now + Duration::hours(IDEMPOTENCY_WINDOW_HOURS),
        state: IdempotencyState::InFlight,
    });
    if let Some(idem) = &idem {
        if let Some(existing) = st.tasks.get_idempotency(&tenant, &idem.key_hash).await? {
            return replay(st, &existing, &fingerprint, now).await;
        }
    }
    tracing::Span::current().record("task_id", task_id.to_string());

    let mut claim: Option<UploadId> = None;
    let (source, object_key) = match submission.input {
        SubmissionInput::File {
            name,
            content_type,
            bytes,
        } => {
            let key = format!("uploads/{tenant}/{task_id}/{name}");
            let size = bytes.len();
            st.blobs.put(&key, bytes, &content_type).await?;
            tracing::info!(bytes = size, "upload stored");
            (
                Source::Object {
                    bucket: st.blobs.bucket().to_owned(),
                    key: key.clone(),
                    sha256: None,
                },
                Some(key),
            )
        }
        SubmissionInput::Url(url) => (Source::Url { url: url.to_string() }, None),
        // the client's object: never deleted on failure, so the client can retry
        SubmissionInput::Upload(upload_id) => {
            let upload = landed_upload(st, &tenant, &upload_id, now).await?;
            claim = Some(upload_id);
            (
                Source::Object {
                    bucket: st.blobs.bucket().to_owned(),
                    key: upload.key,
                    sha256: upload.sha256,
                },
                None,
            )
        }
    };
    let delete_object = || async {
        if let Some(key) = &object_key {
            if let Err(e) = st.blobs.delete(key).await {
                tracing::error!(error = %e, "could not delete the upload of a request that failed");
            }
        }
    };

    let task = Task::pending(
        task_id,
        tenant,
        submission.source_type,
        source,
        submission.webhook_url.map(String::from),
        submission.metadata,
        now,
    );
    let mut task = task.with_timeouts(submission.timeouts);
    task.webhook_events = submission.webhook_events;
    let created = match &claim {
        Some(upload) => st.tasks.create_task_from_upload(&task, idem.as_ref(), upload).await,
        None => st.tasks.create_task(&task, idem.as_ref()).await,
    };
    match created {
        Ok(CreateOutcome::Created) => {}
        // claimed by a concurrent request between the check and the write
        Ok(CreateOutcome::UploadUnavailable) => return Err(SubmitError::UploadAlreadyUsed),
        Ok(CreateOutcome::IdempotencyHit(existing)) => {
            // a concurrent request with the same key won the race
            delete_object().await;
            return replay(st, &existing, &fingerprint, now).await;
        }
        Err(e) => {
            delete_object().await;
            return Err(e.into());
        }
    }

    match st.jobs.enqueue(&task.job()).await {
        Ok(message_id) => {
            tracing::info!(%message_id, source_type = %task.source_type, "task accepted");
            confirm_job(st, &task).await;
            if let Some(idem) = &idem {
                // if this fails, a retry past the lease enqueues the job again:
                // a duplicate job, never a lost one
                if let Err(e) = st
                    .tasks
                    .mark_idempotency_enqueued(&task.tenant, &idem.key_hash, &task_id)
                    .await
                {
                    tracing::warn!(error = %e, "could not mark the Idempotency-Key done");
                }
            }
            Ok(Submitted {
                task_id,
                created_at: now,
                replayed: false,
            })
        }
        Err(e) => {
            if let Err(discard) = st.tasks.discard_task(&task, idem.as_ref()).await {
                tracing::error!(error = %discard, "orphaned task: job not enqueued and task not removed");
            }
            if let Some(upload) = &claim {
                if let Err(release) = st.uploads.release_upload(upload, &task.task_id).await {
                    tracing::error!(error = %release, %upload, "upload still claimed by a task that was removed");
                }
            }
            delete_object().await;
            Err(e.into())
        }
    }
}
