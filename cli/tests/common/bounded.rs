//! Waits with a deadline: a test that would hang fails instead, naming
//! what it waited for and showing the processes' logs.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// How long one wait may take: a safety net far above what any wait needs
/// on a loaded 2-core machine, never a measure of speed.
pub const DEADLINE: Duration = Duration::from_secs(600);

/// Runs `command` to its end (stdin closed, output captured) within
/// [`DEADLINE`]; past it, kills it and panics with `what` and `logs()`.
pub fn output(command: &mut Command, what: &str, logs: impl FnOnce() -> String) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let pid = child.id();
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match result.recv_timeout(DEADLINE) {
        Ok(output) => output.unwrap_or_else(|e| panic!("waiting for {what}: {e}")),
        Err(_) => {
            kill(pid);
            panic!("{what} did not finish within {DEADLINE:?}\n{}", logs())
        }
    }
}

/// Runs `command` to its end within [`DEADLINE`]: for commands outside a
/// cluster, whose own output is all there is to show.
pub fn run(command: &mut Command) -> Output {
    let what = format!("{command:?}");
    output(command, &what, String::new)
}

/// Waits for `child` to exit within [`DEADLINE`]; past it, panics with
/// `what` and `logs()` (the child is left for its owner to kill).
pub fn exit(
    child: &mut Child,
    what: &str,
    logs: impl FnOnce() -> String,
) -> std::process::ExitStatus {
    let mut status = None;
    let exited = || {
        status = child.try_wait().unwrap();
        status.is_some()
    };
    until(&format!("{what} exiting"), exited, logs);
    status.expect("exited")
}

/// Waits until `condition` holds, checking it every 20 ms, within
/// [`DEADLINE`]; past it, panics with `what` and `logs()`.
pub fn until(what: &str, mut condition: impl FnMut() -> bool, logs: impl FnOnce() -> String) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < DEADLINE,
            "no {what} within {DEADLINE:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines `reader` produces, read on a thread of their own, so each
/// can be waited for with a deadline.
pub struct Lines(Receiver<String>);

impl Lines {
    pub fn new(reader: impl Read + Send + 'static) -> Lines {
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Lines(lines)
    }

    /// The next line; `None` once the reader ended. Past [`DEADLINE`],
    /// panics with `what` and `logs()`.
    pub fn next(&self, what: &str, logs: impl FnOnce() -> String) -> Option<String> {
        match self.0.recv_timeout(DEADLINE) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Disconnected) => None,
            Err(RecvTimeoutError::Timeout) => {
                panic!("no {what} within {DEADLINE:?}\n{}", logs())
            }
        }
    }
}

fn kill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status();
}
