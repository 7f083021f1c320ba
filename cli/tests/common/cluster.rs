//! A coordinator and workers, each its own process, and the CLI against them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::HARROW;
use super::bounded::{self, Lines};
use super::jobs::describe;

/// A coordinator and workers, each its own process, killed on drop.
pub struct Cluster {
    pub url: String,
    pub dir: tempfile::TempDir,
    coordinator: Option<Child>,
    /// The coordinator's flags, for a restart.
    coordinator_args: Vec<String>,
    /// Coordinator processes started so far (a restart's log is
    /// `coordinator-N.log`).
    coordinator_starts: usize,
    pub workers: Vec<WorkerProcess>,
    slots: usize,
    /// Flags every worker gets.
    worker_flags: Vec<String>,
}

/// One `harrow worker` process.
pub struct WorkerProcess {
    /// The id the coordinator gave it, e.g. `worker-0002`.
    pub id: String,
    pub work_dir: PathBuf,
    /// Where it serves shuffle segments.
    pub address: String,
    child: Child,
}

impl Cluster {
    /// Starts a coordinator (`max_attempts` per task) and `workers` workers
    /// with `slots` slots each (0: as many as the worker decides), each
    /// registered when this returns.
    pub fn start(workers: usize, slots: usize, max_attempts: u32) -> Cluster {
        Cluster::start_with(
            workers,
            slots,
            &["--max-attempts", &max_attempts.to_string()],
        )
    }

    /// Like `start`, with extra coordinator flags.
    pub fn start_with(workers: usize, slots: usize, coordinator_flags: &[&str]) -> Cluster {
        Cluster::start_configured(workers, slots, coordinator_flags, &[])
    }

    /// Like `start`, with extra coordinator flags and flags for every worker.
    pub fn start_configured(
        workers: usize,
        slots: usize,
        coordinator_flags: &[&str],
        worker_flags: &[&str],
    ) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let plugin_dir = dir.path().join("plugins");
        let mut args = vec![
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--heartbeat-interval-ms",
            "200",
            "--plugin-dir",
            plugin_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(coordinator_flags);
        let (child, line) = spawn(dir.path(), "coordinator", &args);
        let address = line.rsplit(' ').next().unwrap().to_string();
        let scheme = if coordinator_flags.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut cluster = Cluster {
            url: format!("{scheme}://{address}"),
            dir,
            coordinator: Some(child),
            coordinator_args: args.iter().map(|a| a.to_string()).collect(),
            coordinator_starts: 1,
            workers: Vec::new(),
            slots,
            worker_flags: worker_flags.iter().map(|f| f.to_string()).collect(),
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        cluster
    }

    /// Starts one more worker; returns its index in `workers`.
    pub fn add_worker(&mut self) -> usize {
        self.add_worker_with(&[])
    }

    /// Starts one more worker with extra flags.
    pub fn add_worker_with(&mut self, flags: &[&str]) -> usize {
        self.add_worker_wrapped(&[], flags)
    }

    /// Starts one more worker through `wrapper` (a command that ends by
    /// running its arguments, e.g. `sh -c '...; exec "$0" "$@"'`).
    pub fn add_worker_wrapped(&mut self, wrapper: &[&str], flags: &[&str]) -> usize {
        let index = self.workers.len();
        let work_dir = self.dir.path().join(format!("work-{index}"));
        let slots = self.slots.to_string();
        let url = self.url.clone();
        let mut args = vec![
            "worker",
            "--coordinator",
            &url,
            "--listen",
            "127.0.0.1:0",
            "--work-dir",
            work_dir.to_str().unwrap(),
        ];
        if self.slots > 0 {
            args.extend(["--slots", &slots]);
        }
        args.extend(self.worker_flags.iter().map(String::as_str));
        args.extend_from_slice(flags);
        let command: Vec<&str> = wrapper.iter().copied().chain([HARROW]).collect();
        let (child, line) = spawn_via(self.dir.path(), &format!("worker-{index}"), &command, &args);
        // "harrow worker worker-0002 serving shuffle on ADDRESS"
        let id = line.split(' ').nth(2).unwrap().to_string();
        let address = line.rsplit(' ').next().unwrap().to_string();
        self.workers.push(WorkerProcess {
            id,
            work_dir,
            address,
            child,
        });
        index
    }

    /// SIGKILL to the coordinator: gone without a word to anyone.
    pub fn kill_coordinator(&mut self) {
        let mut child = self.coordinator.take().expect("a coordinator runs");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM to the coordinator, then waits for it to exit; returns how.
    pub fn stop_coordinator(&mut self) -> std::process::ExitStatus {
        let mut child = self.coordinator.take().expect("a coordinator runs");
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}");
        let dir = self.dir.path().to_path_buf();
        bounded::exit(&mut child, "the coordinator", || logs_in(&dir))
    }

    /// Starts the coordinator again with its flags, on the address it had
    /// (so the workers find it), after `kill_coordinator` or
    /// `stop_coordinator`.
    pub fn restart_coordinator(&mut self) {
        self.restart_coordinator_with(&[]);
    }

    /// Like `restart_coordinator`, with `NAME=VALUE` settings in its
    /// environment (a failpoint, say).
    pub fn restart_coordinator_with(&mut self, env: &[&str]) {
        assert!(self.coordinator.is_none(), "stop the coordinator first");
        let address = self.url.rsplit('/').next().unwrap().to_string();
        let mut args = self.coordinator_args.clone();
        let listen = args.iter().position(|a| a == "--listen").unwrap() + 1;
        args[listen] = address;
        self.coordinator_starts += 1;
        let name = format!("coordinator-{}", self.coordinator_starts);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let command: Vec<&str> = ["env"]
            .into_iter()
            .chain(env.iter().copied())
            .chain([HARROW])
            .collect();
        let (child, _) = spawn_via(self.dir.path(), &name, &command, &args);
        self.coordinator = Some(child);
    }

    /// Waits until the running coordinator's log has a line holding `text`.
    pub fn await_coordinator_log(&self, text: &str) {
        let log = self
            .dir
            .path()
            .join(format!("coordinator-{}.log", self.coordinator_starts));
        bounded::until(
            &format!("the coordinator to log {text:?}"),
            || std::fs::read_to_string(&log).is_ok_and(|l| l.contains(text)),
            || self.logs(),
        );
    }

    /// Runs a second coordinator with this one's flags on a port of its
    /// own, expecting it to refuse to start; returns what it said.
    pub fn second_coordinator_fails(&self) -> String {
        let mut args = self.coordinator_args.clone();
        let listen = args.iter().position(|a| a == "--listen").unwrap() + 1;
        args[listen] = "127.0.0.1:0".to_string();
        let mut command = Command::new(HARROW);
        command.args(&args);
        let output = bounded::output(&mut command, "a second coordinator", || self.logs());
        assert!(
            !output.status.success(),
            "a second coordinator started:\n{}",
            describe(&output)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// SIGKILL: the worker is gone, with whatever it held.
    pub fn kill_worker(&mut self, index: usize) {
        let child = &mut self.workers[index].child;
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Whether the worker process is still running.
    pub fn worker_running(&mut self, index: usize) -> bool {
        self.workers[index].child.try_wait().unwrap().is_none()
    }

    /// Waits for a worker process to exit (within the deadline).
    pub fn wait_worker(&mut self, index: usize) -> std::process::ExitStatus {
        let dir = self.dir.path().to_path_buf();
        let worker = &mut self.workers[index];
        let what = format!("worker {}", worker.id);
        bounded::exit(&mut worker.child, &what, || logs_in(&dir))
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`) to a worker.
    pub fn signal_worker(&self, index: usize, signal: &str) {
        let pid = self.workers[index].child.id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Panics unless every worker process is still running.
    pub fn assert_workers_alive(&mut self) {
        for worker in &mut self.workers {
            let status = worker.child.try_wait().unwrap();
            assert!(status.is_none(), "worker {} exited: {status:?}", worker.id);
        }
    }

    pub fn worker_index(&self, id: &str) -> usize {
        self.workers
            .iter()
            .position(|w| w.id == id)
            .unwrap_or_else(|| panic!("no worker {id}"))
    }

    /// Follows a job's status (with tasks) as it changes.
    pub fn follow(&self, job: &str) -> Follow {
        let mut child = Command::new(HARROW)
            .args(["status", job, "--json", "--follow"])
            .env("HARROW_COORDINATOR", &self.url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let lines = Lines::new(child.stdout.take().unwrap());
        Follow {
            child,
            lines,
            dir: self.dir.path().to_path_buf(),
        }
    }

    /// Runs a client command against this cluster (within the deadline).
    pub fn harrow(&self, args: &[&str]) -> Output {
        let mut command = Command::new(HARROW);
        command.args(args).env("HARROW_COORDINATOR", &self.url);
        bounded::output(&mut command, &format!("harrow {args:?}"), || self.logs())
    }

    /// Runs a client command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.harrow(args);
        assert!(
            output.status.success(),
            "harrow {args:?} failed:\n{}\nthe cluster's logs, last lines:\n{}",
            describe(&output),
            self.log_tails(40)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a client command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.harrow(args);
        assert!(
            !output.status.success(),
            "harrow {args:?} succeeded:\n{}",
            describe(&output)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// Where the coordinator serves HTTP (started with --http-listen).
    pub fn http_address(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("coordinator.log")).unwrap();
        log.split("http=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no HTTP address in the log:\n{log}"))
            .to_string()
    }

    /// The last `lines` lines of every process's log: what a failed client
    /// call's message shows (a server that panicked says so here).
    pub fn log_tails(&self, lines: usize) -> String {
        logs_in(self.dir.path())
            .split("--- ")
            .filter(|log| !log.is_empty())
            .map(|log| {
                let all: Vec<&str> = log.lines().collect();
                let name = all.first().copied().unwrap_or_default();
                let tail = &all[all.len().saturating_sub(lines).max(1)..];
                format!("--- {name}\n{}\n", tail.join("\n"))
            })
            .collect()
    }

    /// Every process's log, for a failing assertion's message.
    pub fn logs(&self) -> String {
        logs_in(self.dir.path())
    }

    /// A path in the cluster's temp dir.
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let workers = self.workers.iter_mut().map(|w| &mut w.child);
        for child in workers.chain(self.coordinator.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Spawns `harrow ARGS` logging to `DIR/NAME.log`, and returns it with its
/// first stdout line (printed once it is ready).
fn spawn(dir: &Path, name: &str, args: &[&str]) -> (Child, String) {
    spawn_via(dir, name, &[HARROW], args)
}

/// Like `spawn`, running `command` (a program and its first arguments).
fn spawn_via(dir: &Path, name: &str, command: &[&str], args: &[&str]) -> (Child, String) {
    let log = File::create(dir.join(format!("{name}.log"))).unwrap();
    let mut child = Command::new(command[0])
        .args(&command[1..])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let lines = Lines::new(child.stdout.take().unwrap());
    let line = lines.next(&format!("ready line from {name}"), || logs_in(dir));
    let Some(line) = line else {
        panic!("{name} exited before it was ready\n{}", logs_in(dir));
    };
    (child, line.trim().to_string())
}

/// A `harrow status --json --follow` process.
pub struct Follow {
    child: Child,
    lines: Lines,
    /// The cluster's dir, for its logs.
    dir: PathBuf,
}

impl Follow {
    /// Reads statuses until one satisfies `condition`, and returns it.
    /// Panics if the job ends first, or nothing changes for the deadline.
    pub fn until(
        &mut self,
        what: &str,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        loop {
            let line = self
                .lines
                .next(&format!("status change before {what}"), || {
                    logs_in(&self.dir)
                });
            let Some(line) = line else {
                panic!("the job ended before {what}\n{}", logs_in(&self.dir));
            };
            let status: serde_json::Value = serde_json::from_str(&line).unwrap();
            if condition(&status) {
                return status;
            }
        }
    }
}

/// Every log in `dir`, for a failing assertion's message.
pub fn logs_in(dir: &Path) -> String {
    let mut all = String::new();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    paths.sort();
    for path in paths {
        all.push_str(&format!("--- {}\n", path.display()));
        all.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
    }
    all
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
