//! Tests of `worker/src/shuffle/fetch.rs`.
use harrow_core::task::SegmentInfo;

use super::*;
use crate::shuffle::serve::test_map_output;

struct Setup {
    work: tempfile::TempDir,
    connector: Connector,
    key: Token,
    progress: AtomicU64,
}

impl Setup {
    fn new() -> Setup {
        Setup {
            work: tempfile::tempdir().unwrap(),
            connector: Connector::default(),
            key: Token::random().unwrap(),
            progress: AtomicU64::new(0),
        }
    }

    fn own(&self) -> ThisWorker<'_> {
        ThisWorker {
            address: "127.0.0.1:7",
            work_dir: self.work.path(),
            connector: &self.connector,
        }
    }

    /// Writes a map output of `attempt` on this worker; the location
    /// of its partition 1.
    fn own_output(&self, attempt: &str) -> MapOutput {
        let attempt: AttemptId = attempt.parse().unwrap();
        let segments = test_map_output(self.work.path(), attempt);
        MapOutput {
            map_attempt: attempt,
            shuffle_address: self.own().address.to_string(),
            segment: segments[1],
        }
    }

    async fn fetch(
        &self,
        outputs: &[MapOutput],
        recovery: &impl Recovery,
    ) -> Result<Vec<Run>, TaskError> {
        let outputs: Vec<_> = outputs.iter().cloned().map(Some).collect();
        self.fetch_some(&outputs, recovery).await
    }

    /// Fetches where some outputs may be pending (`None`).
    async fn fetch_some(
        &self,
        outputs: &[Option<MapOutput>],
        recovery: &impl Recovery,
    ) -> Result<Vec<Run>, TaskError> {
        let fetch = Fetch {
            attempt: "job-000001/r-00001/a-1".parse().unwrap(),
            map_outputs: outputs,
            shuffle_key: &self.key,
            partition: 1,
            dir: &self.work.path().join("scratch"),
            progress: &self.progress,
            own: self.own(),
        };
        fetch.run(recovery).await
    }
}

/// Map task `task`'s output on a worker that refuses connections.
fn unreachable_output(task: u32) -> MapOutput {
    MapOutput {
        map_attempt: format!("job-000001/m-{task:05}/a-1").parse().unwrap(),
        shuffle_address: "127.0.0.1:1".to_string(),
        segment: SegmentInfo {
            partition: 1,
            bytes: 7,
            records: 1,
            crc32c: 0,
        },
    }
}

#[tokio::test]
async fn own_map_output_is_read_in_place_and_checked() {
    let setup = Setup::new();
    let output = setup.own_output("job-000001/m-00000/a-1");
    let runs = setup
        .fetch(std::slice::from_ref(&output), &NoRecovery)
        .await
        .unwrap();
    // The segment itself, in the map output file: nothing copied.
    let job = job_dir(setup.work.path(), output.map_attempt.task.job);
    let data = data_path(&job, &output.map_attempt.file_stem());
    assert_eq!(runs[0].path, data);
    assert_eq!(runs[0].len, output.segment.bytes);
    let scratch = setup.work.path().join("scratch");
    assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
    assert_eq!(setup.progress.load(Ordering::Relaxed), output.segment.bytes);

    // A flipped byte is the map output's fault, as for a fetch.
    let mut bytes = std::fs::read(&data).unwrap();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();
    let error = setup
        .fetch(std::slice::from_ref(&output), &NoRecovery)
        .await
        .unwrap_err();
    match error {
        TaskError::Fetch {
            map_attempt,
            reason,
            cause,
            ..
        } => {
            assert_eq!(map_attempt, output.map_attempt);
            assert_eq!(cause, FetchFailure::Corrupt);
            assert!(reason.contains("CRC32C"), "{reason}");
        }
        other => panic!("expected a fetch failure, got {other}"),
    }
}

/// A coordinator that moves the map outputs it is told about to where
/// `moved` says, after `not_yet` answers of "not yet".
struct Relocating {
    moved: Vec<MapOutput>,
    not_yet: Mutex<usize>,
    reported: Mutex<Vec<String>>,
}

impl Recovery for Relocating {
    async fn fetch_failed(
        &self,
        _: AttemptId,
        error: &TaskError,
    ) -> Result<Option<String>, TaskError> {
        self.reported.lock().unwrap().push(error.to_string());
        Ok(None)
    }

    async fn relocate(&self, _: AttemptId) -> Result<Relocation, TaskError> {
        let mut not_yet = self.not_yet.lock().unwrap();
        if *not_yet > 0 {
            *not_yet -= 1;
            return Ok(Relocation::NotYet);
        }
        Ok(Relocation::Ready(self.moved.clone()))
    }
}

#[tokio::test]
async fn a_failed_fetch_keeps_what_was_fetched_and_waits_for_new_locations() {
    let setup = Setup::new();
    let kept = setup.own_output("job-000001/m-00000/a-1");
    // Two outputs on a worker that refuses connections: one report for
    // both, then they come back from a re-run here.
    let rerun = [
        setup.own_output("job-000001/m-00001/a-2"),
        setup.own_output("job-000001/m-00002/a-2"),
    ];
    let recovery = Relocating {
        // The kept output's location changes too; it is not read again.
        moved: vec![rerun[0].clone(), rerun[0].clone(), rerun[1].clone()],
        not_yet: Mutex::new(2),
        reported: Mutex::new(Vec::new()),
    };
    let outputs = [kept.clone(), unreachable_output(1), unreachable_output(2)];
    let runs = setup.fetch(&outputs, &recovery).await.unwrap();
    let reported = recovery.reported.lock().unwrap();
    assert_eq!(reported.len(), 1, "{reported:?}");
    assert!(reported[0].contains("127.0.0.1:1"), "{reported:?}");
    let paths: Vec<_> = runs.iter().map(|r| r.path.clone()).collect();
    let path = |output: &MapOutput| {
        let job = job_dir(setup.work.path(), output.map_attempt.task.job);
        data_path(&job, &output.map_attempt.file_stem())
    };
    assert_eq!(paths, [path(&kept), path(&rerun[0]), path(&rerun[1])]);
    assert_eq!(
        setup.progress.load(Ordering::Relaxed),
        3 * kept.segment.bytes,
        "the kept segment is read once"
    );
}

#[tokio::test]
async fn a_fetch_failure_ends_the_attempt_when_the_coordinator_says_stop() {
    let setup = Setup::new();
    let error = setup
        .fetch(&[unreachable_output(0)], &NoRecovery)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            TaskError::Fetch {
                cause: FetchFailure::Unreachable,
                ..
            }
        ),
        "{error}"
    );
}

#[tokio::test]
async fn pending_outputs_are_fetched_once_relocated_without_a_report() {
    let setup = Setup::new();
    let available = setup.own_output("job-000001/m-00000/a-1");
    let rerun = setup.own_output("job-000001/m-00001/a-2");
    let recovery = Relocating {
        moved: vec![available.clone(), rerun.clone()],
        not_yet: Mutex::new(1),
        reported: Mutex::new(Vec::new()),
    };
    let runs = setup
        .fetch_some(&[Some(available.clone()), None], &recovery)
        .await
        .unwrap();
    assert!(recovery.reported.lock().unwrap().is_empty());
    assert_eq!(runs.len(), 2);
    assert_eq!(
        setup.progress.load(Ordering::Relaxed),
        2 * available.segment.bytes,
        "the available segment is read once"
    );

    // Stopped while waiting: the attempt ends, saying so.
    let error = setup
        .fetch_some(&[Some(available), None], &NoRecovery)
        .await
        .unwrap_err();
    assert!(matches!(error, TaskError::Stopped), "{error}");
}
