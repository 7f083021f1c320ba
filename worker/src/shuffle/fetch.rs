//! The reducer's end of the shuffle: fetch a partition's segment from
//! every map output, a few at a time, into scratch files (this worker's
//! own segments are checked and read in place), each checked against the
//! size and CRC32C its map attempt reported. A fetch that fails does not
//! end the attempt: the fetcher keeps what it has, tells the coordinator
//! (once per unreachable worker), waits for the new locations and fetches
//! what is still missing. An attempt that starts while some map tasks run
//! again fetches what is available and waits the same way for the rest.

use std::collections::{BTreeSet, HashMap};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::{FutureExt, StreamExt};
use harrow_core::ids::AttemptId;
use harrow_core::rpc::security::{
    AuthChannel, Connector, Token, describe_status, is_certificate_refused,
};
use harrow_core::task::{FetchFailure, MapOutput};
use harrow_proto::v1::FetchSegmentRequest;
use harrow_proto::v1::shuffle_service_client::ShuffleServiceClient;
use tokio::io::AsyncWriteExt;
use tonic::Status;

use crate::error::TaskError;
use crate::limits::{CHUNK_BYTES, MAX_SHUFFLE_MESSAGE_BYTES};
use crate::limits::{FETCH_CONCURRENCY, FETCH_IDLE_TIMEOUT, MAX_FETCH_ROUNDS};
use crate::reduce::merge::Run;
use crate::shuffle::segment::{data_path, index_path, read_index};
use crate::shuffle::serve::job_dir;

/// The fetching worker: the address it serves map output on and the work
/// dir that output lies in (its own segments are read in place), and how
/// it reaches the other workers.
#[derive(Debug, Clone, Copy)]
pub struct ThisWorker<'a> {
    pub address: &'a str,
    pub work_dir: &'a Path,
    pub connector: &'a Connector,
}

/// The coordinator's answer to a waiting reduce attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relocation {
    /// Every map output is available again: where each is, in map order.
    Ready(Vec<MapOutput>),
    /// Not yet: ask again.
    NotYet,
    /// The attempt no longer runs: stop.
    Stop,
}

/// How a reduce attempt gets past a failed fetch: the coordinator hears of
/// it and says where the map outputs are once they are available again.
pub trait Recovery {
    /// Reports a failed fetch (`TaskError::Fetch`). `Ok(None)`: wait for
    /// new locations; `Ok(Some(reason))`: end the attempt.
    fn fetch_failed(
        &self,
        attempt: AttemptId,
        error: &TaskError,
    ) -> impl Future<Output = Result<Option<String>, TaskError>> + Send;

    /// Where the map outputs are now, once every map task has succeeded:
    /// after a failed fetch, or for outputs that were pending at the start.
    fn relocate(
        &self,
        attempt: AttemptId,
    ) -> impl Future<Output = Result<Relocation, TaskError>> + Send;
}

/// No recovery: a failed fetch ends the attempt.
pub struct NoRecovery;

impl Recovery for NoRecovery {
    async fn fetch_failed(&self, _: AttemptId, _: &TaskError) -> Result<Option<String>, TaskError> {
        Ok(Some("no recovery".to_string()))
    }

    async fn relocate(&self, _: AttemptId) -> Result<Relocation, TaskError> {
        Ok(Relocation::Stop)
    }
}

/// What one reduce attempt fetches.
pub struct Fetch<'a> {
    pub attempt: AttemptId,
    /// One per map task, in order; `None` while it runs again.
    pub map_outputs: &'a [Option<MapOutput>],
    pub shuffle_key: &'a Token,
    pub partition: u32,
    /// Scratch space for fetched segments.
    pub dir: &'a Path,
    /// Bytes fetched so far.
    pub progress: &'a AtomicU64,
    pub own: ThisWorker<'a>,
}

impl Fetch<'_> {
    /// Fetches every non-empty segment and returns the runs to merge, in
    /// map order. A failed fetch is reported through `recovery`; while it
    /// says to wait, the segments fetched are kept, and those missing are
    /// fetched from their new locations, as are those pending at the start.
    pub async fn run(self, recovery: &impl Recovery) -> Result<Vec<Run>, TaskError> {
        tokio::fs::create_dir_all(self.dir)
            .await
            .map_err(TaskError::io(self.dir))?;
        let mut outputs = self.map_outputs.to_vec();
        let mut runs: Vec<Option<Run>> = vec![None; outputs.len()];
        let mut channels: HashMap<String, AuthChannel> = HashMap::new();
        for round in 1.. {
            let failures = self.round(&outputs, &mut runs, &mut channels).await?;
            let pending = outputs.iter().any(Option::is_none);
            if failures.is_empty() && !pending {
                break;
            }
            if round >= MAX_FETCH_ROUNDS && !failures.is_empty() {
                return Err(failures.into_iter().next().expect("not empty"));
            }
            for failure in &failures {
                if recovery
                    .fetch_failed(self.attempt, failure)
                    .await?
                    .is_some()
                {
                    return Err(failures.into_iter().next().expect("not empty"));
                }
            }
            let relocated = loop {
                match recovery.relocate(self.attempt).await? {
                    Relocation::Ready(outputs) => break outputs,
                    Relocation::NotYet => continue,
                    // The first failure says best why it waited, if any.
                    Relocation::Stop => {
                        return Err(failures.into_iter().next().unwrap_or(TaskError::Stopped));
                    }
                }
            };
            assert_eq!(
                relocated.len(),
                outputs.len(),
                "a job's map tasks do not change in number"
            );
            for (i, location) in relocated.into_iter().enumerate() {
                if runs[i].is_none() {
                    outputs[i] = Some(location);
                }
            }
        }
        Ok(outputs
            .iter()
            .zip(runs)
            .filter(|(output, _)| output.as_ref().expect("relocated").segment.bytes > 0)
            .map(|(_, run)| run.expect("every non-empty segment was fetched"))
            .collect())
    }

    /// Fetches what is missing, a few at a time; returns the failures: one
    /// per worker that did not answer (its other fetches wait for the next
    /// round), and each missing or corrupt segment.
    async fn round(
        &self,
        outputs: &[Option<MapOutput>],
        runs: &mut [Option<Run>],
        channels: &mut HashMap<String, AuthChannel>,
    ) -> Result<Vec<TaskError>, TaskError> {
        let silent: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
        let mut fetches = Vec::new();
        for (i, output) in outputs.iter().enumerate() {
            let Some(output) = output else { continue };
            if runs[i].is_some() || output.segment.bytes == 0 {
                continue;
            }
            if output.shuffle_address == self.own.address {
                let dir = job_dir(self.own.work_dir, output.map_attempt.task.job);
                let stem = output.map_attempt.file_stem();
                let (data, index) = (data_path(&dir, &stem), index_path(&dir, &stem));
                let own = check_own(output, self.partition, data, index, self.progress);
                fetches.push(own.map(move |r| (i, Fetched::from(r))).boxed());
                continue;
            }
            let channel = match channels.get(&output.shuffle_address) {
                Some(channel) => Ok(channel.clone()),
                None => self
                    .own
                    .connector
                    .worker_channel(&output.shuffle_address)
                    .inspect(|channel| {
                        channels.insert(output.shuffle_address.clone(), channel.clone());
                    })
                    .map_err(|e| unreachable(output, e.to_string())),
            };
            let file = self
                .dir
                .join(format!("{}.segment", output.map_attempt.file_stem()));
            let silent = &silent;
            let fetch = async move {
                if silent
                    .lock()
                    .expect("lock")
                    .contains(&output.shuffle_address)
                {
                    return (i, Fetched::Skipped);
                }
                let fetched = match channel {
                    Ok(channel) => {
                        fetch_one(
                            channel,
                            output,
                            self.shuffle_key,
                            self.partition,
                            file,
                            self.progress,
                        )
                        .await
                    }
                    Err(error) => Err(error),
                };
                let first_silence = |error: &TaskError| {
                    !matches!(
                        error,
                        TaskError::Fetch {
                            cause: FetchFailure::Unreachable,
                            ..
                        }
                    ) || silent
                        .lock()
                        .expect("lock")
                        .insert(output.shuffle_address.clone())
                };
                match fetched {
                    Err(error) if !first_silence(&error) => (i, Fetched::Skipped),
                    other => (i, Fetched::from(other)),
                }
            };
            fetches.push(fetch.boxed());
        }
        let mut results = futures::stream::iter(fetches).buffer_unordered(FETCH_CONCURRENCY);
        let mut failures = Vec::new();
        while let Some((i, fetched)) = results.next().await {
            match fetched {
                Fetched::Run(run) => runs[i] = Some(run),
                Fetched::Skipped => {}
                Fetched::Failed(error @ TaskError::Fetch { .. }) => failures.push(error),
                // A local failure (scratch space): the attempt's own.
                Fetched::Failed(error) => return Err(error),
            }
        }
        Ok(failures)
    }
}

/// How one segment's fetch ended.
enum Fetched {
    Run(Run),
    /// Not tried: its worker already failed to answer this round.
    Skipped,
    Failed(TaskError),
}

impl From<Result<Run, TaskError>> for Fetched {
    fn from(result: Result<Run, TaskError>) -> Self {
        match result {
            Ok(run) => Fetched::Run(run),
            Err(error) => Fetched::Failed(error),
        }
    }
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
        ShuffleServiceClient::new(channel).max_decoding_message_size(MAX_SHUFFLE_MESSAGE_BYTES);
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
#[path = "fetch_tests.rs"]
mod tests;
