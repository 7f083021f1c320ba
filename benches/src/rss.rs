//! Peak resident memory per measured system. In this process Linux keeps
//! the high-water mark (`VmHWM`), and writing 5 to `/proc/self/clear_refs`
//! resets it to the current RSS; a system that is a child process (GNU
//! sort, a peer) is run through [`run_child`], which takes the child's own
//! peak from `wait4`. A plugin host, a child of Harrow's worker, is not
//! counted.

// wait4 is the one way to learn one child's peak RSS.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitStatus, Stdio};

thread_local! {
    /// The largest peak of a child run since the last reset.
    static CHILD_PEAK: Cell<u64> = const { Cell::new(0) };
}

/// Resets the peak to the current RSS.
fn reset_peak() {
    // Unsupported kernels leave the peak as it was: the figure is then an
    // upper bound over earlier systems too.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    CHILD_PEAK.set(0);
}

/// This process's peak RSS since the last reset, in bytes (0 if unknown).
fn own_peak() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Runs `f`, returning its result and the peak RSS while it ran: of this
/// process, or of a child it ran through [`run_child`] if that was larger.
pub fn measured<T>(f: impl FnOnce() -> T) -> (T, u64) {
    reset_peak();
    let result = f();
    (result, own_peak().max(CHILD_PEAK.get()))
}

/// What a child process printed and how it ended.
pub struct ChildOutput {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Runs `command` to its end with its output captured, and records its
/// peak RSS for [`measured`].
pub fn run_child(command: &mut Command) -> std::io::Result<ChildOutput> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stderr_pipe.read_to_end(&mut bytes);
        bytes
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .expect("stdout is piped")
        .read_to_end(&mut stdout)?;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid out-parameter for wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child, which nothing else waits for.
    let waited = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    if waited < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let peak = u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024;
    CHILD_PEAK.set(CHILD_PEAK.get().max(peak));
    Ok(ChildOutput {
        status: ExitStatus::from_raw(status),
        stdout,
        stderr: stderr.join().unwrap_or_default(),
    })
}
