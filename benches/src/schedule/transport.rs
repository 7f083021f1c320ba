//! The baseline of `harrow-bench schedule`: the same simulated workers
//! against a coordinator that schedules nothing. It hands out tasks from a
//! counter, grants every commit and counts reports, behind the same gRPC
//! stack and connection bounds, so its completions per second are what
//! the transport allows on this machine: a ceiling for the real one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use harrow_proto::v1 as pb;
use harrow_proto::v1::worker_service_server::WorkerService;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

pub struct NullCoordinator {
    maps: usize,
    total: usize,
    open: watch::Sender<bool>,
    handed_out: AtomicUsize,
    reported: AtomicUsize,
    finished: watch::Sender<bool>,
}

impl NullCoordinator {
    /// `maps` map tasks and `reduces` reduce tasks, handed out once
    /// [`NullCoordinator::open`] is called.
    pub fn new(maps: usize, reduces: usize) -> Self {
        NullCoordinator {
            maps,
            total: maps + reduces,
            open: watch::channel(false).0,
            handed_out: AtomicUsize::new(0),
            reported: AtomicUsize::new(0),
            finished: watch::channel(false).0,
        }
    }

    /// Starts handing out tasks.
    pub fn open(&self) {
        self.open.send_replace(true);
    }

    /// Returns once every task was reported.
    pub async fn finished(&self) {
        let _ = self.finished.subscribe().wait_for(|done| *done).await;
    }

    /// The next task, while there are any left.
    fn hand_out(&self) -> Option<pb::TaskAssignment> {
        let index = self.handed_out.fetch_add(1, Ordering::SeqCst);
        (index < self.total).then(|| self.assignment(index))
    }

    fn assignment(&self, index: usize) -> pb::TaskAssignment {
        let task = if index < self.maps {
            pb::task_assignment::Task::Map(pb::MapTask {
                split: Some(pb::InputSplit {
                    location: "generated".into(),
                    start: index as u64,
                    end: index as u64 + 1,
                    ..Default::default()
                }),
                job_maps: self.maps as u32,
            })
        } else {
            pb::task_assignment::Task::Reduce(pb::ReduceTask::default())
        };
        let phase = if index < self.maps { 'm' } else { 'r' };
        pb::TaskAssignment {
            attempt_id: format!("job-000001/{phase}-{index:05}/a-1"),
            job_name: "teragen".into(),
            reducers: (self.total - self.maps) as u32,
            task: Some(task),
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl WorkerService for NullCoordinator {
    async fn register(
        &self,
        _request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(pb::RegisterResponse {
            worker_id: "worker-000001".into(),
            heartbeat_interval_ms: 500,
        }))
    }

    async fn heartbeat(
        &self,
        _request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Ok(Response::new(pb::HeartbeatResponse::default()))
    }

    async fn request_task(
        &self,
        request: Request<pb::TaskRequest>,
    ) -> Result<Response<pb::TaskResponse>, Status> {
        let wait = Duration::from_millis(request.get_ref().wait_ms);
        if !*self.open.borrow() {
            let mut open = self.open.subscribe();
            let _ = tokio::time::timeout(wait, open.wait_for(|open| *open)).await;
            return Ok(Response::new(pb::TaskResponse::default()));
        }
        if let Some(assignment) = self.hand_out() {
            return Ok(Response::new(pb::TaskResponse {
                assignments: vec![assignment],
                ..Default::default()
            }));
        }
        let mut finished = self.finished.subscribe();
        let _ = tokio::time::timeout(wait, finished.wait_for(|done| *done)).await;
        Ok(Response::new(pb::TaskResponse::default()))
    }

    async fn request_commit(
        &self,
        _request: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        Ok(Response::new(pb::CommitResponse {
            granted: true,
            reason: String::new(),
        }))
    }

    async fn report_attempt(
        &self,
        request: Request<pb::AttemptReport>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        if self.reported.fetch_add(1, Ordering::SeqCst) + 1 == self.total {
            self.finished.send_replace(true);
        }
        let assignments = match request.get_ref().free_slots {
            0 => Vec::new(),
            _ => self.hand_out().into_iter().collect(),
        };
        Ok(Response::new(pb::ReportResponse { assignments }))
    }

    async fn report_fetch_failure(
        &self,
        _request: Request<pb::FetchFailureReport>,
    ) -> Result<Response<pb::FetchFailureResponse>, Status> {
        Err(Status::unimplemented("the baseline has no shuffle"))
    }

    async fn wait_map_outputs(
        &self,
        _request: Request<pb::WaitMapOutputsRequest>,
    ) -> Result<Response<pb::WaitMapOutputsResponse>, Status> {
        Err(Status::unimplemented("the baseline has no shuffle"))
    }

    type FetchPluginStream = futures::stream::Empty<Result<pb::PluginChunk, Status>>;

    async fn fetch_plugin(
        &self,
        _request: Request<pb::FetchPluginRequest>,
    ) -> Result<Response<Self::FetchPluginStream>, Status> {
        Err(Status::unimplemented("the baseline has no plugins"))
    }
}
