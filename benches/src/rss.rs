//! Peak resident memory of this process, per measured system: Linux keeps
//! the high-water mark (`VmHWM`), and writing 5 to `/proc/self/clear_refs`
//! resets it to the current RSS. Child processes (a plugin host, GNU sort)
//! are not counted.

/// Resets the peak to the current RSS.
pub fn reset_peak() {
    // Unsupported kernels leave the peak as it was: the figure is then an
    // upper bound over earlier systems too.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The peak RSS since the last reset, in bytes (0 if unknown).
pub fn peak() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some(kib * 1024)
        })
        .unwrap_or(0)
}

/// Runs `f`, returning its result and the peak RSS while it ran.
pub fn measured<T>(f: impl FnOnce() -> T) -> (T, u64) {
    reset_peak();
    let result = f();
    (result, peak())
}
