//! Slow workers and stragglers: LATE's backups for the attempts estimated
//! to finish last, capped by a share of the slots, and workers far slower
//! than their peers taken out of placement until they catch up.

use harrow_core::ids::{AttemptId, WorkerId};
use harrow_core::task::Assignment;

use super::Harness;

/// Reports `bytes` of progress (of each 10-byte split) for the attempts.
fn progress(h: &mut Harness, worker: WorkerId, attempts: &[AttemptId], bytes: u64) {
    h.heartbeat(worker, attempts, bytes);
}

fn shown(h: &Harness, worker: WorkerId) -> (String, Option<String>) {
    let w = h.scheduler.workers().find(|w| w.id == worker).unwrap();
    (w.shown_state().to_string(), w.reason().map(str::to_string))
}

#[test]
fn stragglers_estimated_to_finish_last_get_backups_up_to_the_cap() {
    let mut h = Harness::new(4);
    let workers: Vec<WorkerId> = (0..6).map(|_| h.worker()).collect();
    h.submit(30, 1);
    let mut running: Vec<(WorkerId, Assignment)> = Vec::new();
    for &w in &workers {
        for a in h.request(w, 5) {
            running.push((w, a));
        }
    }
    assert_eq!(running.len(), 30);
    // 20 maps finish within about 100 ms; 10 keep running.
    h.now_ms += 100;
    for (w, a) in running.drain(..20).collect::<Vec<_>>() {
        h.succeed(w, &a);
    }
    assert!(
        h.request(workers[0], 5).is_empty(),
        "too young to tell, and nothing to start"
    );
    // Two seconds on: five have read 1 of their 10 bytes, five 8.
    h.now_ms += 2_000;
    let (crawling, nearly): (Vec<_>, Vec<_>) =
        running.iter().enumerate().partition(|(i, _)| i % 2 == 0);
    for &w in &workers {
        let of = |list: &[(usize, &(WorkerId, Assignment))]| -> Vec<AttemptId> {
            list.iter()
                .filter(|(_, (x, _))| *x == w)
                .map(|(_, (_, a))| a.attempt)
                .collect()
        };
        progress(&mut h, w, &of(&crawling), 1);
        progress(&mut h, w, &of(&nearly), 8);
    }
    let backups: Vec<Assignment> = workers.iter().flat_map(|&w| h.request(w, 5)).collect();
    // Twelve slots: the cap is two (at least two, or 10% of the slots).
    assert_eq!(backups.len(), 2, "{backups:?}");
    let crawling: Vec<_> = crawling.iter().map(|(_, (_, a))| a.attempt.task).collect();
    for backup in &backups {
        assert_eq!(backup.attempt.number, 2);
        assert!(
            crawling.contains(&backup.attempt.task),
            "the attempts with the most time left go first"
        );
    }
}

#[test]
fn no_speculation_while_the_phase_has_tasks_to_start() {
    let mut h = Harness::new(4);
    let (a, b) = (h.worker(), h.worker());
    h.submit(10, 1);
    let first = h.request(a, 2);
    h.now_ms += 5_000;
    progress(&mut h, a, &[first[0].attempt, first[1].attempt], 1);
    let next = h.request(b, 2);
    assert!(next.iter().all(|x| x.attempt.number == 1), "{next:?}");
}

#[test]
fn a_worker_far_slower_than_its_peers_gets_no_tasks_until_it_catches_up() {
    let mut h = Harness::new(4);
    let workers: Vec<WorkerId> = (0..4).map(|_| h.worker()).collect();
    let slow = workers[3];
    h.submit(40, 1);
    let crawling = h.request(slow, 2);
    let crawling: Vec<AttemptId> = crawling.iter().map(|a| a.attempt).collect();
    // The others finish a map every 100 ms or so; the slow one crawls.
    for round in 0..6 {
        for &w in &workers[..3] {
            for a in h.request(w, 1) {
                h.now_ms += 90;
                h.succeed(w, &a);
            }
        }
        progress(&mut h, slow, &crawling, round / 3);
        for &w in &workers[..3] {
            h.heartbeat(w, &[], 0);
        }
        h.advance(100);
    }
    let (state, reason) = shown(&h, slow);
    assert_eq!(state, "slow");
    assert!(reason.unwrap().contains("slower than the median worker's"));
    assert!(h.request(slow, 2).is_empty(), "a slow worker gets nothing");
    for &w in &workers[..3] {
        assert_eq!(shown(&h, w).0, "alive");
    }
    let job = h.scheduler.job(crawling[0].task.job).unwrap();
    let report = crate::report::job_report(&h.scheduler, job, false);
    assert_eq!(report.slow_workers, [slow.to_string()]);
    let metrics = crate::metrics::render(&h.scheduler);
    assert!(
        metrics.contains("harrow_workers{state=\"slow\"} 1"),
        "{metrics}"
    );

    // Its attempts get backups elsewhere once nothing is left to start.
    loop {
        let mut started = false;
        for &w in &workers[..3] {
            for a in h.request(w, 2) {
                started = true;
                h.succeed(w, &a);
            }
        }
        progress(&mut h, slow, &crawling, 1);
        if !started {
            break;
        }
    }
    let job = h.scheduler.job(crawling[0].task.job).unwrap();
    assert!(job.maps_done(), "backups finished the slow worker's maps");

    // With no attempt of its own in the window, it is tried again.
    for _ in 0..40 {
        for &w in &workers {
            h.heartbeat(w, &[], 0);
        }
        h.advance(900);
    }
    assert_eq!(shown(&h, slow).0, "alive");
}
