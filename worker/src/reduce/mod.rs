//! A reduce attempt: fetch the partition's segments, merge and reduce them
//! into a local file, upload it under `OUTPUT/_temporary/ATTEMPT/`, ask the
//! coordinator for the commit, and only then move it to
//! `OUTPUT/part-r-NNNNN`. A refused or failed attempt deletes its upload.
//! [`merge`]: the sorted runs merged and reduced group by group.

pub mod merge;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use harrow_core::ids::AttemptId;
use harrow_core::rpc::security::Token;
use harrow_core::storage::{Location, StorageOptions};
use harrow_core::task::{AttemptCounters, MapOutput, OutputFormat, TEMPORARY_DIR, part_file_name};
use harrow_formats::output::create_below;
use harrow_sdk::{JobRuntime, TaskInfo, TaskKind};
use object_store::{MultipartUpload, ObjectStoreExt, PutPayload};
use tokio::io::AsyncReadExt;

use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::limits::{PART_BYTES, PARTS_IN_FLIGHT};
use crate::shuffle::fetch::{Fetch, Recovery, ThisWorker};
use merge::merge_and_reduce;

/// The reduce attempt's link to the coordinator: where map outputs moved
/// after a failed fetch ([`Recovery`]), and whether this attempt may make
/// its output visible.
pub trait CommitGate: Recovery {
    /// `Ok(None)` when granted, `Ok(Some(reason))` when refused.
    fn request_commit(
        &self,
        attempt: AttemptId,
    ) -> impl Future<Output = Result<Option<String>, TaskError>> + Send;
}

pub struct ReduceTask<'a> {
    pub job: Arc<dyn JobRuntime>,
    pub attempt: AttemptId,
    pub partition: u32,
    pub output: &'a str,
    /// One per map task, in order; `None` while it runs again.
    pub map_outputs: &'a [Option<MapOutput>],
    /// The job's key for fetching its map output.
    pub shuffle_key: &'a Token,
    /// Scratch space of this attempt, removed when it ends.
    pub scratch: PathBuf,
    /// Bytes fetched and merged so far.
    pub progress: Arc<AtomicU64>,
    /// Object store settings for the output.
    pub storage: &'a StorageOptions,
    pub format: OutputFormat,
    /// This worker's map output, read in place rather than fetched.
    pub own: ThisWorker<'a>,
}

impl ReduceTask<'_> {
    pub async fn run(self, gate: &impl CommitGate) -> Result<AttemptCounters, TaskError> {
        let scratch = self.scratch.clone();
        let result = self.run_in_scratch(gate).await;
        // Scratch holds only copies; failing to remove it loses nothing.
        let _ = tokio::fs::remove_dir_all(&scratch).await;
        result
    }

    async fn run_in_scratch(self, gate: &impl CommitGate) -> Result<AttemptCounters, TaskError> {
        let output = Location::parse_with(self.output, self.storage)?;
        // The job's task setup runs before any input is read, as for maps.
        let job = self.job.clone();
        let task = TaskInfo {
            attempt: self.attempt.to_string(),
            kind: TaskKind::Reduce,
            partition: Some(self.partition),
        };
        run_cpu(move || job.start_task(&task))
            .await
            .map_err(TaskError::panic("panicked starting the reduce task:"))?
            .map_err(TaskError::job("start_task"))?;
        let fetch_started = std::time::Instant::now();
        let fetch = Fetch {
            attempt: self.attempt,
            map_outputs: self.map_outputs,
            shuffle_key: self.shuffle_key,
            partition: self.partition,
            dir: &self.scratch,
            progress: &self.progress,
            own: self.own,
        };
        let segments = fetch.run(gate).await?;
        let fetch_ms = fetch_started.elapsed().as_millis() as u64;
        let bytes_in = segments.iter().map(|run| run.len).sum();

        let file_name = part_file_name(self.partition, self.format);
        let temporary = output
            .child(TEMPORARY_DIR)
            .child(&self.attempt.file_stem())
            .child(&file_name);
        let committed = output.child(&file_name);
        // A local output is written in place under _temporary; for object
        // stores a local file is written, then uploaded.
        let in_place = temporary.local_path();
        let local = match (&in_place, output.local_path()) {
            (Some(path), Some(root)) => {
                let dir = path
                    .parent()
                    .expect("a part file has a directory")
                    .to_path_buf();
                run_cpu(move || create_below(&root, &dir))
                    .await
                    .map_err(TaskError::panic("panicked creating the output directory:"))??;
                path.clone()
            }
            _ => self.scratch.join(&file_name),
        };
        let format = self.format;
        let job = self.job.clone();
        let local_output = local.clone();
        let progress = self.progress.clone();
        let stats = run_cpu(move || {
            merge_and_reduce(job.as_ref(), &segments, &local_output, format, &progress)
        })
        .await
        .map_err(TaskError::panic("panicked in reduce:"))?;
        let stats = match stats {
            Ok(stats) => stats,
            Err(error) => {
                if in_place.is_some() {
                    // Not yet visible; the job's end clears _temporary too.
                    let _ = tokio::fs::remove_file(&local).await;
                }
                return Err(error);
            }
        };
        if in_place.is_none() {
            upload(&local, &temporary).await?;
        }
        let published = match gate.request_commit(self.attempt).await {
            Ok(None) => publish(&temporary, &committed).await,
            Ok(Some(reason)) => Err(TaskError::CommitRefused {
                attempt: self.attempt,
                reason,
            }),
            Err(error) => Err(error),
        };
        if published.is_err() {
            // Leave nothing behind; the coordinator also clears _temporary
            // when the job ends, so a failure here loses nothing.
            let _ = output.store().delete(temporary.path()).await;
        }
        published?;
        Ok(AttemptCounters {
            bytes_in,
            records_in: stats.records_in,
            bytes_out: stats.bytes_out,
            records_out: stats.records_out,
            spilled_records: 0,
            fetch_ms,
            user: stats.counters,
        })
    }
}

/// Moves the granted attempt's file to its committed name. The coordinator
/// grants the commit to one attempt at a time, so a file already there was
/// moved by an earlier holder that died before it could report: a complete
/// output of the same partition, which this attempt's replaces.
async fn publish(temporary: &Location, committed: &Location) -> Result<(), TaskError> {
    let store = committed.store();
    let output_error = |source| TaskError::Output {
        location: committed.to_string(),
        source,
    };
    match store
        .rename_if_not_exists(temporary.path(), committed.path())
        .await
    {
        Err(object_store::Error::AlreadyExists { .. }) => {
            store.delete(committed.path()).await.map_err(output_error)?;
            store
                .rename_if_not_exists(temporary.path(), committed.path())
                .await
                .map_err(output_error)
        }
        // S3 and others cannot copy conditionally. The grant makes this
        // attempt the only writer, and the copy appears whole: overwrite.
        Err(
            object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented { .. },
        ) => store
            .rename(temporary.path(), committed.path())
            .await
            .map_err(output_error),
        other => other.map_err(output_error),
    }
}

/// Copies a local file to `target`: one put when small, else a multipart
/// upload that only [`Upload`]'s owner completes. Killed at any point (its
/// attempt's future dropped, even while completing), the upload is aborted.
async fn upload(local: &Path, target: &Location) -> Result<(), TaskError> {
    let output_error = |source| TaskError::Output {
        location: target.to_string(),
        source,
    };
    let size = tokio::fs::metadata(local)
        .await
        .map_err(TaskError::io(local))?
        .len();
    let store = target.store();
    if size <= PART_BYTES as u64 {
        // A single put appears whole or not at all.
        let bytes = tokio::fs::read(local).await.map_err(TaskError::io(local))?;
        store
            .put(target.path(), bytes.into())
            .await
            .map_err(output_error)?;
        return Ok(());
    }
    let multipart = store
        .put_multipart(target.path())
        .await
        .map_err(output_error)?;
    let mut upload = Upload(Some(multipart));
    let sent = send_parts(
        local,
        upload.0.as_mut().expect("upload present until finished"),
    )
    .await;
    let mut multipart = upload.0.take().expect("upload present until finished");
    if let Err(error) = sent {
        let _ = multipart.abort().await;
        return Err(match error {
            PartError::Local(error) => error,
            PartError::Store(source) => output_error(source),
        });
    }
    Ok(())
}

enum PartError {
    Local(TaskError),
    Store(object_store::Error),
}

/// Sends the file in parts, a few at once, and completes the upload.
async fn send_parts(local: &Path, upload: &mut Box<dyn MultipartUpload>) -> Result<(), PartError> {
    let mut file = tokio::fs::File::open(local)
        .await
        .map_err(|e| PartError::Local(TaskError::io(local)(e)))?;
    // Dropped with the attempt, the set aborts the parts in flight.
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        let mut part = Vec::with_capacity(PART_BYTES);
        while part.len() < PART_BYTES {
            let read = (&mut file)
                .take((PART_BYTES - part.len()) as u64)
                .read_to_end(&mut part)
                .await
                .map_err(|e| PartError::Local(TaskError::io(local)(e)))?;
            if read == 0 {
                break;
            }
        }
        if part.is_empty() {
            break;
        }
        while in_flight.len() >= PARTS_IN_FLIGHT {
            joined(in_flight.join_next().await)?;
        }
        in_flight.spawn(upload.put_part(PutPayload::from(part)));
    }
    while let Some(result) = in_flight.join_next().await {
        joined(Some(result))?;
    }
    upload.complete().await.map_err(PartError::Store)?;
    Ok(())
}

fn joined(
    result: Option<Result<object_store::Result<()>, tokio::task::JoinError>>,
) -> Result<(), PartError> {
    match result {
        Some(Ok(sent)) => sent.map_err(PartError::Store),
        Some(Err(join)) => Err(PartError::Store(object_store::Error::Generic {
            store: "output",
            source: Box::new(join),
        })),
        None => Ok(()),
    }
}

/// A multipart upload in progress. Dropped before it finished (its attempt
/// was killed), it aborts itself, so no half-written multipart upload is
/// left behind in an object store. An abort after a completion that raced
/// it fails harmlessly; the object is under `_temporary`, which the
/// coordinator clears when the job ends.
struct Upload(Option<Box<dyn MultipartUpload>>);

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(mut upload) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                match upload.abort().await {
                    Ok(()) => tracing::debug!("aborted an unfinished upload"),
                    Err(error) => tracing::warn!(%error, "could not abort an unfinished upload"),
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream::BoxStream;
    use object_store::memory::InMemory;
    use object_store::{
        CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
        PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
    };
    use tokio::sync::mpsc;

    /// An in-memory store that reports what happens to multipart uploads.
    #[derive(Debug)]
    struct Recording {
        inner: InMemory,
        events: mpsc::UnboundedSender<&'static str>,
    }

    impl std::fmt::Display for Recording {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Recording")
        }
    }

    #[derive(Debug)]
    struct RecordingUpload {
        inner: Box<dyn MultipartUpload>,
        events: mpsc::UnboundedSender<&'static str>,
    }

    #[tonic::async_trait]
    impl MultipartUpload for RecordingUpload {
        fn put_part(&mut self, data: PutPayload) -> UploadPart {
            let _ = self.events.send("part");
            self.inner.put_part(data)
        }

        async fn complete(&mut self) -> object_store::Result<PutResult> {
            let _ = self.events.send("complete");
            self.inner.complete().await
        }

        async fn abort(&mut self) -> object_store::Result<()> {
            let _ = self.events.send("abort");
            self.inner.abort().await
        }
    }

    #[tonic::async_trait]
    impl ObjectStore for Recording {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: PutPayload,
            opts: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.inner.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            let inner = self.inner.put_multipart_opts(location, opts).await?;
            let events = self.events.clone();
            Ok(Box::new(RecordingUpload { inner, events }))
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: GetOptions,
        ) -> object_store::Result<GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: BoxStream<'static, object_store::Result<object_store::path::Path>>,
        ) -> BoxStream<'static, object_store::Result<object_store::path::Path>> {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn an_upload_dropped_midway_aborts_its_multipart_upload() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("part");
        // Larger than the writer's buffer, so it goes multipart.
        std::fs::write(&local, vec![b'x'; 48 << 20]).unwrap();
        let (events, mut seen) = mpsc::unbounded_channel();
        let store: Arc<dyn ObjectStore> = Arc::new(Recording {
            inner: InMemory::new(),
            events,
        });
        let target = Location::for_store(store, object_store::path::Path::from("out/part"));
        // Kill the upload as soon as its first part is on its way.
        tokio::select! {
            result = upload(&local, &target) => panic!("finished before it could be killed: {result:?}"),
            event = seen.recv() => assert_eq!(event, Some("part")),
        }
        // A generous bound as a safety net only: without the abort nothing
        // else would ever be reported.
        let next_other = async {
            loop {
                match seen.recv().await {
                    Some("part") => continue,
                    other => return other,
                }
            }
        };
        let after_parts =
            tokio::time::timeout(std::time::Duration::from_secs(60), next_other).await;
        assert_eq!(after_parts.ok().flatten(), Some("abort"));
    }

    #[tokio::test]
    async fn a_finished_upload_completes_and_does_not_abort() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("part");
        std::fs::write(&local, vec![b'y'; 24 << 20]).unwrap();
        let (events, mut seen) = mpsc::unbounded_channel();
        let store: Arc<dyn ObjectStore> = Arc::new(Recording {
            inner: InMemory::new(),
            events,
        });
        let target = Location::for_store(store.clone(), object_store::path::Path::from("out/part"));
        upload(&local, &target).await.unwrap();
        drop(target);
        drop(store);
        let mut all = Vec::new();
        while let Ok(event) = seen.try_recv() {
            all.push(event);
        }
        assert_eq!(all.last(), Some(&"complete"), "{all:?}");
        assert!(!all.contains(&"abort"), "{all:?}");
    }
}
