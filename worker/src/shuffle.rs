//! Both ends of the shuffle: the gRPC service that streams a map attempt's
//! segment for one partition out of the worker's work dir, and the fetcher
//! with which a reducer streams its partition's segments to local files,
//! checking each against the size and CRC32C its map attempt reported.

use std::collections::{BTreeSet, HashMap};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use harrow_core::ids::{AttemptId, JobId, Phase};
use harrow_core::security::{
    AuthChannel, Connector, Token, describe_status, is_certificate_refused,
};
use harrow_core::task::{FetchFailure, MapOutput};
use harrow_proto::v1::shuffle_service_client::ShuffleServiceClient;
use harrow_proto::v1::shuffle_service_server::ShuffleService;
use harrow_proto::v1::{FetchSegmentRequest, SegmentChunk};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::error::TaskError;
use crate::merge::Run;
use crate::segment::{data_path, index_path, read_index};

/// Bytes per streamed chunk.
const CHUNK_BYTES: usize = 1 << 20;
/// Segments a reducer fetches at once.
pub const FETCH_CONCURRENCY: usize = 4;
/// The largest message either end accepts.
pub const MAX_MESSAGE_BYTES: usize = 4 * CHUNK_BYTES;
/// How long a fetch waits for the serving worker's answer or its next
/// chunk. A stopped worker (SIGSTOP, a frozen VM) keeps its connections
/// open and answers nothing; past this it counts as unreachable. A live
/// worker sends a 1 MiB chunk far sooner, even on a loaded machine.
pub const FETCH_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The directory holding a job's map output on this worker.
pub fn job_dir(work_dir: &Path, job: harrow_core::ids::JobId) -> PathBuf {
    work_dir.join(job.to_string())
}

/// The jobs whose map output this worker holds, each with its shuffle key:
/// a fetch of a job's segment must present that job's key, so a reducer
/// can fetch segments of its own job only, whatever else it can reach.
#[derive(Debug, Clone, Default)]
pub struct ShuffleKeys(Arc<Mutex<HashMap<JobId, Token>>>);

impl ShuffleKeys {
    /// Records that `job`'s map output is written here.
    pub fn insert(&self, job: JobId, key: Token) {
        self.0.lock().expect("shuffle keys lock").insert(job, key);
    }

    /// Forgets `job` once its map output is deleted.
    pub fn remove(&self, job: JobId) {
        self.0.lock().expect("shuffle keys lock").remove(&job);
    }

    /// The jobs with map output here.
    pub fn jobs(&self) -> BTreeSet<JobId> {
        self.0
            .lock()
            .expect("shuffle keys lock")
            .keys()
            .copied()
            .collect()
    }

    /// Admits a fetch of `job`'s output that presents `presented`.
    fn check(&self, job: JobId, presented: &str) -> Result<(), Status> {
        match self.0.lock().expect("shuffle keys lock").get(&job) {
            None => Err(Status::not_found(format!(
                "no map output of {job} on this worker"
            ))),
            Some(key) if key.matches(presented.as_bytes()) => Ok(()),
            Some(_) => Err(Status::permission_denied(format!(
                "the fetch does not carry {job}'s shuffle key"
            ))),
        }
    }
}

/// Serves segments from `work_dir`, to fetches with their job's key.
#[derive(Debug, Clone)]
pub struct ShuffleServer {
    work_dir: PathBuf,
    keys: ShuffleKeys,
}

impl ShuffleServer {
    pub fn new(work_dir: PathBuf, keys: ShuffleKeys) -> Self {
        ShuffleServer { work_dir, keys }
    }
}

#[tonic::async_trait]
impl ShuffleService for ShuffleServer {
    type FetchSegmentStream = ReceiverStream<Result<SegmentChunk, Status>>;

    async fn fetch_segment(
        &self,
        request: Request<FetchSegmentRequest>,
    ) -> Result<Response<Self::FetchSegmentStream>, Status> {
        let request = request.into_inner();
        // A parsed attempt id has a fixed shape, so the paths below stay
        // inside the work dir.
        let attempt: AttemptId = request
            .map_attempt_id
            .parse()
            .map_err(|e: harrow_core::ids::IdError| Status::invalid_argument(e.to_string()))?;
        if attempt.task.phase != Phase::Map {
            return Err(Status::invalid_argument(format!(
                "{attempt} is not a map attempt"
            )));
        }
        self.keys.check(attempt.task.job, &request.shuffle_key)?;
        let dir = job_dir(&self.work_dir, attempt.task.job);
        let stem = attempt.file_stem();
        let index_file = index_path(&dir, &stem);
        let index = tokio::task::spawn_blocking(move || read_index(&index_file))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| match &e {
                crate::segment::SegmentError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    Status::not_found(format!("no map output of {attempt} on this worker"))
                }
                _ => Status::data_loss(e.to_string()),
            })?;
        let entry = *index.get(request.partition as usize).ok_or_else(|| {
            Status::invalid_argument(format!(
                "partition {} out of range: {attempt} has {} partitions",
                request.partition,
                index.len()
            ))
        })?;
        let data = data_path(&dir, &stem);
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(async move {
            if let Err(status) = stream_range(&data, entry.offset, entry.info.bytes, &sender).await
            {
                // The reducer may be gone; nothing else to tell.
                let _ = sender.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }
}

async fn stream_range(
    path: &Path,
    offset: u64,
    mut remaining: u64,
    sender: &mpsc::Sender<Result<SegmentChunk, Status>>,
) -> Result<(), Status> {
    let io = |e: std::io::Error| Status::data_loss(format!("{}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    file.seek(SeekFrom::Start(offset)).await.map_err(io)?;
    while remaining > 0 {
        let mut buffer = vec![0; CHUNK_BYTES.min(remaining as usize)];
        file.read_exact(&mut buffer).await.map_err(io)?;
        remaining -= buffer.len() as u64;
        if sender
            .send(Ok(SegmentChunk { data: buffer }))
            .await
            .is_err()
        {
            return Ok(());
        }
    }
    Ok(())
}

/// The fetching worker: the address it serves map output on and the work
/// dir that output lies in (its own segments are read in place), and how
/// it reaches the other workers.
#[derive(Debug, Clone, Copy)]
pub struct ThisWorker<'a> {
    pub address: &'a str,
    pub work_dir: &'a Path,
    pub connector: &'a Connector,
}

/// Fetches every non-empty segment of `partition` into `dir`, a few at a
/// time, and returns the runs to merge in `map_outputs` order. A segment
/// of this worker's own map output is not copied: it is checked (size and
/// CRC32C, like a fetched one) and read where it lies.
pub async fn fetch_segments(
    map_outputs: &[MapOutput],
    shuffle_key: &Token,
    partition: u32,
    dir: &Path,
    progress: &AtomicU64,
    own: ThisWorker<'_>,
) -> Result<Vec<Run>, TaskError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(TaskError::io(dir))?;
    let mut channels: HashMap<&str, AuthChannel> = HashMap::new();
    let mut fetches = Vec::new();
    for output in map_outputs.iter().filter(|o| o.segment.bytes > 0) {
        if output.shuffle_address == own.address {
            let dir = job_dir(own.work_dir, output.map_attempt.task.job);
            let stem = output.map_attempt.file_stem();
            let (data, index) = (data_path(&dir, &stem), index_path(&dir, &stem));
            fetches.push(check_own(output, partition, data, index, progress).boxed());
            continue;
        }
        let channel = match channels.get(output.shuffle_address.as_str()) {
            Some(channel) => channel.clone(),
            None => {
                let channel = own
                    .connector
                    .worker_channel(&output.shuffle_address)
                    .map_err(|e| unreachable(output, e.to_string()))?;
                channels.insert(&output.shuffle_address, channel.clone());
                channel
            }
        };
        let file = dir.join(format!("{}.segment", output.map_attempt.file_stem()));
        fetches.push(fetch_one(channel, output, shuffle_key, partition, file, progress).boxed());
    }
    futures::stream::iter(fetches)
        .buffered(FETCH_CONCURRENCY)
        .try_collect()
        .await
}

/// Checks this worker's own segment of `partition` in the map output file
/// `data` (with its `index`) against what its map attempt reported.
async fn check_own(
    output: &MapOutput,
    partition: u32,
    data: PathBuf,
    index_file: PathBuf,
    progress: &AtomicU64,
) -> Result<Run, TaskError> {
    let expected = output.segment;
    let checked = tokio::task::spawn_blocking(move || -> Result<Run, String> {
        let index = read_index(&index_file).map_err(|e| e.to_string())?;
        let entry = index
            .get(partition as usize)
            .ok_or_else(|| format!("no partition {partition} in its index"))?;
        let mut file = std::fs::File::open(&data).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(entry.offset))
            .map_err(|e| e.to_string())?;
        let mut range = std::io::Read::take(file, expected.bytes);
        let (mut bytes, mut crc) = (0u64, 0u32);
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            let n = std::io::Read::read(&mut range, &mut buffer).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            bytes += n as u64;
            crc = crc32c::crc32c_append(crc, &buffer[..n]);
        }
        if entry.info.bytes != expected.bytes || bytes != expected.bytes || crc != expected.crc32c {
            return Err(format!(
                "read {bytes} bytes with CRC32C {crc:08x} in place, expected {} bytes with {:08x}",
                expected.bytes, expected.crc32c
            ));
        }
        Ok(Run {
            path: data,
            offset: entry.offset,
            len: expected.bytes,
        })
    })
    .await
    .map_err(|e| corrupt(output, e.to_string()))?
    .map_err(|reason| corrupt(output, reason))?;
    progress.fetch_add(expected.bytes, Ordering::Relaxed);
    Ok(checked)
}

async fn fetch_one(
    channel: AuthChannel,
    output: &MapOutput,
    shuffle_key: &Token,
    partition: u32,
    file: PathBuf,
    progress: &AtomicU64,
) -> Result<Run, TaskError> {
    let mut client =
        ShuffleServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES);
    let request = FetchSegmentRequest {
        map_attempt_id: output.map_attempt.to_string(),
        partition,
        shuffle_key: shuffle_key.expose().to_string(),
    };
    let mut stream = tokio::time::timeout(FETCH_IDLE_TIMEOUT, client.fetch_segment(request))
        .await
        .map_err(|_| idle(output))?
        .map_err(|status| status_error(output, &status))?
        .into_inner();
    let mut out = tokio::fs::File::create(&file)
        .await
        .map_err(TaskError::io(&file))?;
    let (mut bytes, mut crc) = (0u64, 0u32);
    while let Some(chunk) = tokio::time::timeout(FETCH_IDLE_TIMEOUT, stream.next())
        .await
        .map_err(|_| idle(output))?
    {
        let chunk = chunk.map_err(|status| status_error(output, &status))?;
        bytes += chunk.data.len() as u64;
        if bytes > output.segment.bytes {
            return Err(corrupt(
                output,
                format!("more than the {} bytes reported", output.segment.bytes),
            ));
        }
        crc = crc32c::crc32c_append(crc, &chunk.data);
        progress.fetch_add(chunk.data.len() as u64, Ordering::Relaxed);
        out.write_all(&chunk.data)
            .await
            .map_err(TaskError::io(&file))?;
    }
    out.flush().await.map_err(TaskError::io(&file))?;
    if bytes != output.segment.bytes || crc != output.segment.crc32c {
        return Err(corrupt(
            output,
            format!(
                "got {bytes} bytes with CRC32C {crc:08x}, expected {} bytes with {:08x}",
                output.segment.bytes, output.segment.crc32c
            ),
        ));
    }
    Run::file(&file)
}

/// The serving worker answered, but this segment is missing or wrong.
fn corrupt(output: &MapOutput, reason: String) -> TaskError {
    fetch_error(output, reason, FetchFailure::Corrupt)
}

/// The serving worker did not answer at all.
fn unreachable(output: &MapOutput, reason: String) -> TaskError {
    fetch_error(output, reason, FetchFailure::Unreachable)
}

fn idle(output: &MapOutput) -> TaskError {
    let reason = format!(
        "no answer for {} s (a stopped or overloaded worker)",
        FETCH_IDLE_TIMEOUT.as_secs()
    );
    unreachable(output, reason)
}

/// A failed call: the connection's failures (refused, reset, a timeout,
/// TLS, a server going away) say the worker is unreachable; an answer of
/// the shuffle service's own (no such segment, a wrong key) concerns this
/// segment only.
fn status_error(output: &MapOutput, status: &Status) -> TaskError {
    use tonic::Code;
    let reason = describe_status(status);
    match status.code() {
        Code::Unavailable | Code::Unknown | Code::DeadlineExceeded | Code::Cancelled => {
            unreachable(output, reason)
        }
        _ if is_certificate_refused(status) => unreachable(output, reason),
        _ => corrupt(output, reason),
    }
}

fn fetch_error(output: &MapOutput, reason: String, cause: FetchFailure) -> TaskError {
    TaskError::Fetch {
        map_attempt: output.map_attempt,
        address: output.shuffle_address.clone(),
        reason,
        cause,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{RecordBatch, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use harrow_core::task::SegmentInfo;

    use super::*;
    use crate::segment::write_map_output;

    fn map_output(work_dir: &Path, attempt: AttemptId) -> Vec<SegmentInfo> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::UInt64, false),
        ]));
        let batch = |keys: Vec<&str>| {
            let values = UInt64Array::from_iter_values(0..keys.len() as u64);
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(keys)), Arc::new(values)],
            )
            .unwrap()
        };
        let dir = job_dir(work_dir, attempt.task.job);
        let partitions = [
            vec![batch(vec!["a", "b"])],
            vec![batch(vec!["c", "d", "e"])],
        ];
        write_map_output(&dir, &attempt.file_stem(), &schema, &partitions).unwrap()
    }

    #[tokio::test]
    async fn own_map_output_is_read_in_place_and_checked() {
        let work = tempfile::tempdir().unwrap();
        let attempt: AttemptId = "job-000001/m-00000/a-1".parse().unwrap();
        let segments = map_output(work.path(), attempt);
        let connector = Connector::default();
        let own = ThisWorker {
            address: "127.0.0.1:7",
            work_dir: work.path(),
            connector: &connector,
        };
        let output = MapOutput {
            map_attempt: attempt,
            shuffle_address: own.address.to_string(),
            segment: segments[1],
        };
        let scratch = work.path().join("scratch");
        let progress = AtomicU64::new(0);
        let key = Token::random().unwrap();
        let runs = fetch_segments(
            std::slice::from_ref(&output),
            &key,
            1,
            &scratch,
            &progress,
            own,
        )
        .await
        .unwrap();
        // The segment itself, in the map output file: nothing copied.
        let data = data_path(
            &job_dir(work.path(), attempt.task.job),
            &attempt.file_stem(),
        );
        assert_eq!(runs[0].path, data);
        assert_eq!(
            (runs[0].offset, runs[0].len),
            (segments[0].bytes, segments[1].bytes)
        );
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
        assert_eq!(progress.load(Ordering::Relaxed), segments[1].bytes);

        // A flipped byte is the map output's fault, as for a fetch.
        let mut bytes = std::fs::read(&data).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        std::fs::write(&data, bytes).unwrap();
        let error = fetch_segments(&[output], &key, 1, &scratch, &progress, own)
            .await
            .unwrap_err();
        match error {
            TaskError::Fetch {
                map_attempt,
                reason,
                cause,
                ..
            } => {
                assert_eq!(map_attempt, attempt);
                assert_eq!(cause, FetchFailure::Corrupt);
                assert!(reason.contains("CRC32C"), "{reason}");
            }
            other => panic!("expected a fetch failure, got {other}"),
        }
    }

    /// A worker's shuffle service on a loopback port, holding the map
    /// output of one attempt of job 1 under `key`.
    async fn serve(work_dir: &Path, key: &Token) -> (String, AttemptId) {
        let attempt: AttemptId = "job-000001/m-00000/a-1".parse().unwrap();
        map_output(work_dir, attempt);
        let keys = ShuffleKeys::default();
        keys.insert(attempt.task.job, key.clone());
        let server = ShuffleServer::new(work_dir.to_path_buf(), keys);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(
                    harrow_proto::v1::shuffle_service_server::ShuffleServiceServer::new(server),
                )
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (format!("http://{address}"), attempt)
    }

    /// Fetches a segment; returns the bytes served or the refusal.
    async fn fetch(url: &str, attempt: &str, key: &str) -> Result<usize, Status> {
        let mut client = ShuffleServiceClient::connect(url.to_string())
            .await
            .unwrap();
        let mut stream = client
            .fetch_segment(FetchSegmentRequest {
                map_attempt_id: attempt.to_string(),
                partition: 1,
                shuffle_key: key.to_string(),
            })
            .await?
            .into_inner();
        let mut bytes = 0;
        while let Some(chunk) = stream.next().await {
            bytes += chunk?.data.len();
        }
        Ok(bytes)
    }

    #[tokio::test]
    async fn only_the_jobs_key_fetches_and_ids_cannot_leave_the_work_dir() {
        let root = tempfile::tempdir().unwrap();
        let work_dir = root.path().join("work");
        std::fs::create_dir_all(&work_dir).unwrap();
        let canary = root.path().join("canary");
        std::fs::write(&canary, "outside the work dir").unwrap();
        let key = Token::random().unwrap();
        let (url, attempt) = serve(&work_dir, &key).await;

        let served = fetch(&url, &attempt.to_string(), key.expose())
            .await
            .unwrap();
        assert!(served > 0);
        for wrong in ["", "x", Token::random().unwrap().expose()] {
            let refused = fetch(&url, &attempt.to_string(), wrong).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
        }
        // Another job's output is not here, whatever key is presented.
        let other = fetch(&url, "job-000002/m-00000/a-1", key.expose())
            .await
            .unwrap_err();
        assert_eq!(other.code(), tonic::Code::NotFound, "{other:?}");
        for escape in [
            "../canary",
            "../../canary",
            "job-000001/m-00000/a-1/../../../canary",
            "job-000001/../../canary",
            "%2e%2e/canary",
            "job-000001%2fm-00000%2fa-1",
            "..%2f..%2fcanary",
            "/etc/passwd",
            "job-000001/m-00000/a-1\0",
            "job-000001/r-00000/a-1",
        ] {
            let refused = fetch(&url, escape, key.expose()).await.unwrap_err();
            assert_eq!(
                refused.code(),
                tonic::Code::InvalidArgument,
                "{escape}: {refused:?}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(&canary).unwrap(),
            "outside the work dir"
        );
    }
}
