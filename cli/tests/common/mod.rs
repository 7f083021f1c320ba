//! Helpers for tests that run the real `harrow` binary: a cluster of
//! separate coordinator and worker processes on ports the OS picks, the
//! CLI, a deterministic test corpus, and sequential reference computations.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const HARROW: &str = env!("CARGO_BIN_EXE_harrow");

/// A coordinator and workers, each its own process, killed on drop.
pub struct Cluster {
    pub url: String,
    pub dir: tempfile::TempDir,
    coordinator: Option<Child>,
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

    /// Waits for a worker process to exit.
    pub fn wait_worker(&mut self, index: usize) -> std::process::ExitStatus {
        self.workers[index].child.wait().unwrap()
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
        let lines = BufReader::new(child.stdout.take().unwrap());
        Follow { child, lines }
    }

    /// Runs a client command against this cluster.
    pub fn harrow(&self, args: &[&str]) -> Output {
        Command::new(HARROW)
            .args(args)
            .env("HARROW_COORDINATOR", &self.url)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs a client command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.harrow(args);
        assert!(
            output.status.success(),
            "harrow {args:?} failed:\n{}",
            describe(&output)
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

    /// Every process's log, for a failing assertion's message.
    pub fn logs(&self) -> String {
        let mut all = String::new();
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
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
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        !line.is_empty(),
        "{name} exited before it was ready; see {}",
        dir.display()
    );
    (child, line.trim().to_string())
}

/// A `harrow status --json --follow` process.
pub struct Follow {
    child: Child,
    lines: BufReader<std::process::ChildStdout>,
}

impl Follow {
    /// Reads statuses until one satisfies `condition`, and returns it.
    /// Panics if the job ends first.
    pub fn until(
        &mut self,
        what: &str,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.lines.read_line(&mut line).unwrap();
            assert!(read > 0, "the job ended before {what}");
            let status: serde_json::Value = serde_json::from_str(&line).unwrap();
            if condition(&status) {
                return status;
            }
        }
    }
}

impl Drop for Follow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The attempts of a status's tasks of one phase (`"m"` or `"r"`).
pub fn attempts<'a>(status: &'a serde_json::Value, phase: &str) -> Vec<&'a serde_json::Value> {
    let marker = format!("/{phase}-");
    status["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .filter(|t| t["task_id"].as_str().unwrap().contains(&marker))
                .flat_map(|t| t["attempts"].as_array().unwrap())
                .collect()
        })
        .unwrap_or_default()
}

pub fn describe(output: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A small deterministic random generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "The",
    "THE",
    "cat",
    "Cat",
    "sat",
    "on",
    "mat",
    "naïve",
    "café",
    "Ärger",
    "straße",
    "日本語",
    "текст",
    "über",
    "x",
    "a",
    "zebra",
    "Zebra",
    "éclair",
    "ελληνικά",
    "don",
    "t",
    "it",
    "s",
    "harrow",
    "map",
    "reduce",
];
const SEPARATORS: &[&str] = &[
    " ", " ", " ", ", ", ". ", "; ", "—", " 42 ", "3rd", "\t", "-", "'", "  (", ") ", "_", "9",
];

/// Writes the test corpus into `dir`: files of different sizes with mixed
/// case, punctuation, digits, non-ASCII letters, CRLF and LF line ends, an
/// empty file and one without a final newline.
pub fn write_corpus(dir: &Path) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(0x4841_5252_4f57);
    let mut paths = Vec::new();
    for (index, lines) in [0usize, 1, 7, 60, 400, 2500].iter().enumerate() {
        let mut text = String::new();
        for line in 0..*lines {
            let words = rng.below(14);
            for _ in 0..words {
                text.push_str(WORDS[rng.below(WORDS.len())]);
                text.push_str(SEPARATORS[rng.below(SEPARATORS.len())]);
            }
            let last_line = line + 1 == *lines;
            if !(last_line && index == 3) {
                text.push_str(if rng.below(3) == 0 { "\r\n" } else { "\n" });
            }
        }
        let path = dir.join(format!("doc-{index}.txt"));
        std::fs::write(&path, text).unwrap();
        paths.push(path);
    }
    paths
}

/// The words of `text` as the wordcount job defines them, computed the
/// simplest way.
pub fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_alphabetic() {
            current.push(c);
        } else if !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned()
}

/// Sequential word count, as sorted `word\tcount` lines.
pub fn reference_wordcount(files: &[PathBuf]) -> Vec<String> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for file in files {
        for word in words(&read_lossy(file)) {
            *counts.entry(word).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(w, n)| format!("{w}\t{n}"))
        .collect()
}

/// Sequential inverted index, as sorted `word\tN\tnames` lines.
pub fn reference_inverted_index(files: &[PathBuf]) -> Vec<String> {
    let mut index: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let name = file.file_name().unwrap().to_str().unwrap().to_string();
        for word in words(&read_lossy(file)) {
            index.entry(word).or_default().insert(name.clone());
        }
    }
    index
        .into_iter()
        .map(|(w, names)| {
            let names: Vec<String> = names.into_iter().collect();
            format!("{w}\t{}\t{}", names.len(), names.join(","))
        })
        .collect()
}

/// All lines of all `part-r-*` files in `dir`, sorted; asserts `_SUCCESS`
/// exists and nothing else is visible.
pub fn read_output(dir: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names.contains(&"_SUCCESS".to_string()),
        "no _SUCCESS in {dir}: {names:?}"
    );
    for name in &names {
        if name == "_SUCCESS" {
            continue;
        }
        assert!(name.starts_with("part-r-"), "unexpected {name} in {dir}");
        let text = std::fs::read_to_string(Path::new(dir).join(name)).unwrap();
        lines.extend(text.lines().map(str::to_string));
    }
    lines.sort();
    lines
}

/// `data` compressed with the codec of a file extension: gz, zst or bz2.
pub fn compress(extension: &str, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::write::{BzEncoder, GzipEncoder, ZstdEncoder};
    use tokio::io::{AsyncWrite, AsyncWriteExt};
    async fn run(mut encoder: impl AsyncWrite + Unpin, data: &[u8]) {
        encoder.write_all(data).await.unwrap();
        encoder.shutdown().await.unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut out = Vec::new();
    runtime.block_on(async {
        match extension {
            "gz" => run(GzipEncoder::new(&mut out), data).await,
            "zst" => run(ZstdEncoder::new(&mut out), data).await,
            "bz2" => run(BzEncoder::new(&mut out), data).await,
            other => panic!("{other}"),
        }
    });
    out
}

/// The gutenberg books CI has, if present.
pub fn gutenberg() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/gutenberg");
    dir.is_dir().then(|| dir.canonicalize().unwrap())
}

/// The `.txt` files in `dir`, sorted.
pub fn text_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
}

/// Writes `files` text files of about `bytes_per_file` each into `dir`:
/// lines of 5 to 15 lowercase words drawn from a vocabulary of 20,000 with
/// a skewed (Zipf-like) frequency, as prose has. Returns the sequential
/// word count of it (sorted `word\tcount` lines), tallied as it is written.
pub fn write_large_corpus(dir: &Path, files: usize, bytes_per_file: usize) -> Vec<String> {
    use std::io::Write;
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = Rng::new(0x0053_4341_4c45);
    let vocabulary: Vec<String> = (0..20_000)
        .map(|_| {
            let len = 2 + rng.below(9);
            (0..len)
                .map(|_| (b'a' + rng.below(26) as u8) as char)
                .collect()
        })
        .collect();
    let mut counts = vec![0u64; vocabulary.len()];
    for file in 0..files {
        let mut out =
            std::io::BufWriter::new(File::create(dir.join(format!("part-{file}.txt"))).unwrap());
        let mut written = 0;
        while written < bytes_per_file {
            let words = 5 + rng.below(11);
            for w in 0..words {
                // u³ over the vocabulary: low indexes are far more common.
                let u = (rng.next() >> 11) as f64 / (1u64 << 53) as f64;
                let index = (u * u * u * vocabulary.len() as f64) as usize;
                counts[index] += 1;
                let word = &vocabulary[index];
                out.write_all(word.as_bytes()).unwrap();
                out.write_all(if w + 1 == words { b"\n" } else { b" " })
                    .unwrap();
                written += word.len() + 1;
            }
        }
        out.flush().unwrap();
    }
    let mut total: BTreeMap<&str, u64> = BTreeMap::new();
    for (word, count) in vocabulary.iter().zip(counts) {
        if count > 0 {
            *total.entry(word).or_default() += count;
        }
    }
    total
        .into_iter()
        .map(|(w, n)| format!("{w}\t{n}"))
        .collect()
}

/// The bytes of each `part-r-*` file in `dir`, by name.
pub fn part_files(dir: &str) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_str().unwrap().starts_with("part-r-"))
        .map(|e| {
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

/// A cgroup v1 `cpu` and `memory` group made for one test, removed (once
/// its processes are gone) on drop.
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

impl Cgroup {
    /// A group of `cpu_quota_us` of CPU time per 100 ms (100,000: one
    /// CPU) and, if given, `memory` bytes, or why it cannot be made (no
    /// cgroup v1 hierarchy, or not root).
    pub fn create(name: &str, cpu_quota_us: u64, memory: Option<u64>) -> Result<Cgroup, String> {
        let root = Path::new("/sys/fs/cgroup");
        let cpu = root.join("cpu").join(name);
        let mem = root.join("memory").join(name);
        let mut cgroup = Cgroup { dirs: Vec::new() };
        let dirs = if memory.is_some() {
            vec![&cpu, &mem]
        } else {
            vec![&cpu]
        };
        for dir in dirs {
            std::fs::create_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            cgroup.dirs.push(dir.clone());
        }
        let write = |path: PathBuf, value: String| {
            std::fs::write(&path, value).map_err(|e| format!("{}: {e}", path.display()))
        };
        write(cpu.join("cpu.cfs_period_us"), "100000".into())?;
        write(cpu.join("cpu.cfs_quota_us"), cpu_quota_us.to_string())?;
        if let Some(memory) = memory {
            write(mem.join("memory.limit_in_bytes"), memory.to_string())?;
        }
        Ok(cgroup)
    }

    /// A shell wrapper that joins the group, then runs its arguments.
    pub fn wrapper(&self) -> String {
        let joins: Vec<String> = self
            .dirs
            .iter()
            .map(|dir| format!("echo $$ > {}/cgroup.procs", dir.display()))
            .collect();
        format!("{} && exec \"$0\" \"$@\"", joins.join(" && "))
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Whether a `status --json` says the job ended.
pub fn is_terminal(status: &serde_json::Value) -> bool {
    matches!(
        status["state"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Submits `wordcount` over `corpus` in splits of `split_size` to
/// `reducers` reducers; returns the job id.
pub fn submit_wordcount(
    cluster: &Cluster,
    corpus: &str,
    out: &str,
    split_size: &str,
    reducers: usize,
) -> String {
    let reducers = reducers.to_string();
    let args = [
        "submit",
        "wordcount",
        "--input",
        corpus,
        "--output",
        out,
        "--split-size",
        split_size,
        "--reducers",
        &reducers,
    ];
    cluster.ok(&args).trim().to_string()
}
