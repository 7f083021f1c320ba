//! The serving end of the shuffle: the gRPC service that streams a map
//! attempt's segment for one partition out of the worker's work dir, to
//! fetches that carry the job's shuffle key. The reducer's end is
//! `fetch.rs`.

use std::collections::{BTreeSet, HashMap};
use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use harrow_core::ids::{AttemptId, JobId, Phase};
use harrow_core::rpc::security::Token;
use harrow_proto::v1::shuffle_service_server::ShuffleService;
use harrow_proto::v1::{FetchSegmentRequest, SegmentChunk};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::limits::CHUNK_BYTES;
use crate::shuffle::segment::{data_path, index_path, read_index};

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
                crate::shuffle::segment::SegmentError::Io { source, .. }
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

/// Writes the map output of `attempt` (two partitions: keys `a b` and
/// `c d e`) under `work_dir`, as a map task would.
#[cfg(test)]
pub(crate) fn test_map_output(
    work_dir: &Path,
    attempt: AttemptId,
) -> Vec<harrow_core::task::SegmentInfo> {
    use arrow::array::{RecordBatch, StringArray, UInt64Array};
    use arrow::datatypes::{DataType, Field, Schema};

    use crate::shuffle::segment::write_map_output;
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

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use harrow_proto::v1::shuffle_service_client::ShuffleServiceClient;

    use super::*;

    /// A worker's shuffle service on a loopback port, holding the map
    /// output of one attempt of job 1 under `key`.
    async fn serve(work_dir: &Path, key: &Token) -> (String, AttemptId) {
        let attempt: AttemptId = "job-000001/m-00000/a-1".parse().unwrap();
        test_map_output(work_dir, attempt);
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
