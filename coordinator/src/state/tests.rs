//! Tests of `coordinator/src/state.rs` and `state/live.rs`.
use super::*;
use crate::scheduler::tests::{Harness, plan};
use crate::scheduler::{AttemptState, TaskState};

fn status(id: u64, state: pb::JobState, finished_at_ms: Option<u64>) -> pb::JobStatus {
    pb::JobStatus {
        job_id: JobId(id).to_string(),
        job_name: "wordcount".into(),
        state: state as i32,
        submitted_at_ms: 1,
        finished_at_ms,
        ..Default::default()
    }
}

fn open(dir: &Path) -> Result<(StateStore, Restored), StateError> {
    StateStore::open(dir, Retention::default(), 10)
}

/// A scheduler with `jobs` jobs submitted (two maps, one reducer each),
/// the first with a request id.
fn submitted(jobs: usize) -> Harness {
    let mut h = Harness::new(4);
    for job in 0..jobs {
        let splits = (0..2)
            .map(|i| harrow_core::task::Split {
                location: format!("/in/{i}"),
                start: 0,
                end: 10,
                file_size: 10,
            })
            .collect();
        let input = harrow_core::task::InputSpec::text();
        let mut plan = plan("wordcount", &format!("/out/{job}"), 1, splits, input);
        plan.request_id = (job == 0).then(|| "request-1".to_string());
        h.handle(crate::scheduler::Event::SubmitJob { plan });
    }
    h
}

/// Writes every job of `h` as submitted, with its tasks, and its workers.
async fn write_all(store: &StateStore, h: &Harness) {
    let mut changes = Changes::default();
    for job in h.scheduler.jobs() {
        changes.submitted(job, &status(job.id.0, pb::JobState::Queued, None));
        for task in job.tasks() {
            changes.task(task);
        }
    }
    for worker in h.scheduler.workers() {
        changes.worker(worker);
    }
    store.write(changes).await.unwrap();
}

async fn end(store: &StateStore, status: pb::JobStatus, retention: Retention, now_ms: u64) {
    let mut changes = Changes::default();
    changes.ended(&status, retention, now_ms);
    store.write(changes).await.unwrap();
}

#[tokio::test]
async fn jobs_and_ids_outlive_the_store_and_unfinished_jobs_fail_naming_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    {
        let (store, restored) = open(&state).unwrap();
        assert_eq!(restored.generation, 1);
        assert_eq!((restored.jobs_used, restored.workers_used), (0, 0));
        store.reserve(IdKind::Job, 1).await.unwrap();
        store.reserve(IdKind::Worker, 3).await.unwrap();
        write_all(&store, &submitted(2)).await;
        let mut done = status(2, pb::JobState::Succeeded, Some(5));
        done.tasks.push(pb::TaskStatus::default());
        end(&store, done, Retention::default(), 5).await;
        store.reserve(IdKind::Job, 3).await.unwrap();
    }
    let mode = std::fs::metadata(&state).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o700
    );

    let (store, restored) = open(&state).unwrap();
    assert_eq!(restored.generation, 2);
    // Reserved in blocks: ids handed out before are never handed out again.
    assert!(restored.jobs_used >= 3, "{restored:?}");
    assert!(restored.workers_used >= 3, "{restored:?}");
    // Job 1 resumes; job 2 ended, and its secrets are gone.
    assert!(restored.interrupted.is_empty());
    assert_eq!(restored.jobs.len(), 1);
    assert_eq!(restored.jobs[0].id, JobId(1));
    assert!(!live::secrets_path(&state, 2).exists());
    let second = store.job(JobId(2), true).unwrap().unwrap();
    assert_eq!(second.state, pb::JobState::Succeeded as i32);
    assert_eq!(second.tasks.len(), 1);
    assert!(
        store
            .job(JobId(2), false)
            .unwrap()
            .unwrap()
            .tasks
            .is_empty()
    );
    assert!(store.job(JobId(3), false).unwrap().is_none());
    let listed: Vec<String> = store
        .jobs(None, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.job_id)
        .collect();
    assert_eq!(listed, ["job-000002", "job-000001"]);
    let page: Vec<String> = store
        .jobs(Some(JobId(2)), 10)
        .unwrap()
        .into_iter()
        .map(|s| s.job_id)
        .collect();
    assert_eq!(page, ["job-000001"]);
}

#[tokio::test]
async fn history_keeps_the_newest_finished_jobs_within_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(dir.path()).unwrap();
    let keep = Retention {
        jobs: 2,
        for_ms: 1_000,
    };
    write_all(&store, &submitted(5)).await;
    // Job 1 finished long ago; 2..=4 just now, and only two are kept.
    end(
        &store,
        status(1, pb::JobState::Failed, Some(100)),
        keep,
        5_000,
    )
    .await;
    for id in 2..=4 {
        let done = status(id, pb::JobState::Succeeded, Some(4_900));
        end(&store, done, keep, 5_000).await;
    }
    let ids: Vec<String> = store
        .jobs(None, 10)
        .unwrap()
        .into_iter()
        .map(|s| s.job_id)
        .collect();
    // Unfinished jobs are never dropped.
    assert_eq!(ids, ["job-000005", "job-000004", "job-000003"]);
    assert!(store.job(JobId(2), true).unwrap().is_none());
}

#[test]
fn a_second_coordinator_on_the_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path()).unwrap();
    let error = open(dir.path()).err().expect("refused");
    assert!(matches!(error, StateError::Locked { .. }), "{error}");
    assert!(error.to_string().contains("state.redb"), "{error}");
}

#[test]
fn a_damaged_state_file_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).unwrap());
    let file = dir.path().join(FILE_NAME);
    let bytes = std::fs::read(&file).unwrap();

    // Truncated.
    std::fs::write(&file, &bytes[..bytes.len() / 3]).unwrap();
    let error = open(dir.path()).err().expect("refused");
    assert!(error.to_string().contains("state.redb"), "{error}");

    // Not a redb file at all.
    std::fs::write(&file, b"not a database, just some text").unwrap();
    let error = open(dir.path()).err().expect("refused");
    assert!(error.to_string().contains("state.redb"), "{error}");

    // Every byte of the committed pages flipped in turn is caught by a
    // checksum or refused as unreadable; none opens as if nothing happened.
    std::fs::write(&file, &bytes).unwrap();
    let (store, _) = open(dir.path()).unwrap();
    drop(store);
    let bytes = std::fs::read(&file).unwrap();
    let mut opened = 0;
    for offset in (0..bytes.len()).step_by(bytes.len() / 64 + 1) {
        let mut flipped = bytes.clone();
        flipped[offset] ^= 0x55;
        std::fs::write(&file, &flipped).unwrap();
        match std::panic::catch_unwind(|| open(dir.path())) {
            Ok(Ok((store, restored))) => {
                // A flip in space the state does not use: what it holds
                // reads back as it was.
                assert_eq!(restored.generation, 3);
                opened += 1;
                drop(store);
                std::fs::write(&file, &bytes).unwrap();
            }
            Ok(Err(error)) => assert!(error.to_string().contains("state.redb"), "{error}"),
            Err(_) => panic!("opening a state file flipped at {offset} panicked"),
        }
    }
    assert!(opened < 64, "no flip was caught");
}

#[test]
fn a_newer_or_foreign_state_is_refused_with_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path()).unwrap());
    {
        let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert(FORMAT, FORMAT_VERSION + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let error = open(dir.path()).err().expect("refused");
    let message = error.to_string();
    assert!(
        message.contains(&format!("format {}", FORMAT_VERSION + 1)),
        "{message}"
    );
    assert!(
        message.contains(&format!("coordinator's {FORMAT_VERSION}")),
        "{message}"
    );

    let other = tempfile::tempdir().unwrap();
    {
        let db = Database::create(other.path().join(FILE_NAME)).unwrap();
        let txn = db.begin_write().unwrap();
        let table: TableDefinition<&str, &str> = TableDefinition::new("something_else");
        txn.open_table(table).unwrap().insert("a", "b").unwrap();
        txn.commit().unwrap();
    }
    let error = open(other.path()).err().expect("refused");
    assert!(matches!(error, StateError::Foreign { .. }), "{error}");
}

#[tokio::test]
async fn a_running_job_comes_back_with_its_tasks_commits_and_workers() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = submitted(1);
    let worker = h.worker();
    let maps = h.request(worker, 2);
    h.succeed(worker, &maps[0]);
    {
        let (store, _) = open(dir.path()).unwrap();
        write_all(&store, &h).await;
    }
    let (store, restored) = open(dir.path()).unwrap();
    assert_eq!(restored.workers.len(), 1);
    assert_eq!(restored.workers[0].id, worker);
    let job = &restored.jobs[0];
    let before = h.scheduler.jobs().next().unwrap();
    assert_eq!(job.plan.spec, before.plan.spec, "secrets and all");
    assert_eq!(job.plan.request_id.as_deref(), Some("request-1"));
    assert_eq!(store.job_for_request("request-1").unwrap(), Some(job.id));
    assert_eq!(store.job_for_request("request-2").unwrap(), None);
    assert_eq!(job.plan.splits, before.plan.splits);
    assert_eq!(job.state, before.state);
    assert!(matches!(job.maps[0].state, TaskState::Succeeded { .. }));
    assert_eq!(job.maps[0].state, before.maps[0].state);
    assert_eq!(job.maps[1].attempts[0].state, AttemptState::Running);
    assert_eq!(job.reduces[0].state, TaskState::Pending);

    // The job's secrets are a file of their own, for this user only.
    let secrets = live::secrets_path(dir.path(), job.id.0);
    let mode = std::fs::metadata(&secrets).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    let plan = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
    let key = job.plan.spec.shuffle_key.expose().as_bytes();
    assert!(
        !plan.windows(key.len()).any(|w| w == key),
        "no secret in the state file"
    );
}

#[tokio::test]
async fn a_job_whose_secrets_are_gone_is_failed_saying_so() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) = open(dir.path()).unwrap();
        write_all(&store, &submitted(1)).await;
    }
    std::fs::remove_file(live::secrets_path(dir.path(), 1)).unwrap();
    let (store, restored) = open(dir.path()).unwrap();
    assert!(restored.jobs.is_empty());
    assert_eq!(restored.interrupted, [JobId(1)]);
    let failed = store.job(JobId(1), false).unwrap().unwrap();
    assert_eq!(failed.state, pb::JobState::Failed as i32);
    assert!(failed.error.contains("secrets"), "{}", failed.error);
}

/// The checked-in state dir of format 1: one finished job, one running with
/// a map done and a request id, one worker.
fn format_1_fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-format-1")
}

/// Writes `format_1_fixture` again: `cargo test -p harrow-coordinator
/// write_the_format_1_fixture -- --ignored`. Only while format 1 is the
/// current one: the fixture stands for what released coordinators wrote.
#[tokio::test]
#[ignore]
async fn write_the_format_1_fixture() {
    let dir = format_1_fixture();
    let _ = std::fs::remove_dir_all(&dir);
    let mut h = submitted(2);
    let worker = h.worker();
    let maps = h.request(worker, 1);
    h.succeed(worker, &maps[0]);
    let (store, _) = open(&dir).unwrap();
    write_all(&store, &h).await;
    let second = h.scheduler.jobs().nth(1).unwrap();
    let ended = status(second.id.0, pb::JobState::Succeeded, Some(20));
    end(&store, ended, Retention::default(), 30).await;
}

#[test]
fn a_state_dir_of_format_1_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("state");
    for entry in walk(&format_1_fixture()) {
        let target = copy.join(entry.strip_prefix(format_1_fixture()).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let (store, restored) = StateStore::open(&copy, Retention::default(), 40).unwrap();
    assert_eq!(restored.generation, 2);
    assert!(restored.interrupted.is_empty());
    assert_eq!(restored.workers.len(), 1);
    let [job] = &restored.jobs[..] else {
        panic!("{:?}", restored.jobs)
    };
    assert_eq!(job.id, JobId(1));
    assert_eq!(job.plan.request_id.as_deref(), Some("request-1"));
    assert_eq!(job.maps[0].state.name(), "succeeded");
    assert_eq!(job.maps[1].state.name(), "pending");
    let ended = store.job(JobId(2), false).unwrap().unwrap();
    assert_eq!(ended.state, pb::JobState::Succeeded as i32);
    assert_eq!(store.job_for_request("request-1").unwrap(), Some(JobId(1)));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
