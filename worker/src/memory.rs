//! How much memory a worker's tasks may use. `--memory-budget` sets it; by
//! default it is half of what the worker may have: its cgroup's memory limit
//! (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`) when there is
//! one, else the machine's memory. Each slot gets an equal share, and a
//! task sizes its buffers from its share.

use std::path::Path;

use crate::limits::FALLBACK_BUDGET;

use harrow_formats::limits::{MAX_CHUNK_BYTES, MIN_CHUNK_BYTES};

/// Caps glibc's malloc arenas at one per CPU (at least two), from its
/// default of eight per CPU. Tokio and rayon threads each allocate from an
/// arena of their own, and memory freed into one is not reused by another,
/// so a map task that sorts and spills buffers of the same size again and
/// again grew well past its budget: TeraSort of 1 GiB under a 128 MiB
/// budget in 512 MiB splits peaked at 337 MiB of RSS by default and 250 MiB
/// capped, at the same speed. Call it first thing in `main`, before any
/// thread exists. Other C libraries: nothing to do.
pub fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        let arenas = libc::c_int::try_from(cpus.max(2)).unwrap_or(libc::c_int::MAX);
        // SAFETY: mallopt only sets a tunable of the allocator; it is
        // called before any other thread runs.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

/// The memory this process may use: the smaller of its cgroup's limit and
/// the machine's memory, if either is known.
pub fn available_memory() -> Option<u64> {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| parse_meminfo_total(&info));
    let cgroup = cgroup_memory_limit(Path::new("/"));
    match (machine, cgroup) {
        (Some(m), Some(c)) => Some(m.min(c)),
        (m, c) => m.or(c),
    }
}

/// Half of [`available_memory`].
pub fn default_budget() -> u64 {
    available_memory().map_or(FALLBACK_BUDGET, |bytes| bytes / 2)
}

/// `MemTotal` of `/proc/meminfo`, in bytes.
fn parse_meminfo_total(info: &str) -> Option<u64> {
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The memory limit of this process's cgroup, read below `root` (`/` but
/// in tests): v2's `memory.max` of the cgroup named in `/proc/self/cgroup`
/// or of the root (a container's namespace), else v1's limit of the
/// process's own memory cgroup or of the root. `None` when unlimited or
/// unknown.
fn cgroup_memory_limit(root: &Path) -> Option<u64> {
    let fs = root.join("sys/fs/cgroup");
    let membership = std::fs::read_to_string(root.join("proc/self/cgroup")).unwrap_or_default();
    // "0::/path" (v2) and "4:memory:/path" (v1).
    let own = |controller: &str| {
        membership.lines().find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| path.trim_start_matches('/').to_string())
        })
    };
    let candidates = [
        own("").map(|path| fs.join(path).join("memory.max")),
        Some(fs.join("memory.max")),
        own("memory").map(|path| fs.join("memory").join(path).join("memory.limit_in_bytes")),
        Some(fs.join("memory/memory.limit_in_bytes")),
    ];
    candidates.into_iter().flatten().find_map(|path| {
        let text = std::fs::read_to_string(path).ok()?;
        // "max" (v2) or a huge page-rounded number (v1) mean no limit.
        text.trim().parse::<u64>().ok().filter(|&b| b < 1 << 60)
    })
}

/// One task's share of the worker's memory budget, and the buffer sizes it
/// implies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMemory {
    pub bytes: u64,
}

impl TaskMemory {
    /// An equal share of `budget` for each of `slots`.
    pub fn share(budget: u64, slots: usize) -> TaskMemory {
        TaskMemory {
            bytes: budget / slots.max(1) as u64,
        }
    }

    /// Buffered map output past which it is sorted and spilled to disk.
    /// Sorting a buffer takes about three times its size (the buffer, its
    /// sort order, the sorted copy), and input is read meanwhile.
    pub fn spill_bytes(&self) -> u64 {
        (self.bytes / 5).max(64 << 10)
    }

    /// The largest input chunk: a few are in flight at once, each also held
    /// decoded.
    pub fn max_chunk_bytes(&self) -> u64 {
        (self.bytes / 16).clamp(MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cgroup_limits_and_ignores_unlimited() {
        let root = tempfile::tempdir().unwrap();
        let write = |path: &str, text: &str| {
            let path = root.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        assert_eq!(cgroup_memory_limit(root.path()), None);
        write("sys/fs/cgroup/memory.max", "max\n");
        assert_eq!(cgroup_memory_limit(root.path()), None);
        // The process's own cgroup wins over the root's.
        write("proc/self/cgroup", "0::/kubepods/pod1\n");
        write("sys/fs/cgroup/kubepods/pod1/memory.max", "536870912\n");
        assert_eq!(cgroup_memory_limit(root.path()), Some(512 << 20));
    }

    #[test]
    fn reads_v1_limits() {
        let root = tempfile::tempdir().unwrap();
        let path = root
            .path()
            .join("sys/fs/cgroup/memory/memory.limit_in_bytes");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "9223372036854771712\n").unwrap();
        assert_eq!(cgroup_memory_limit(root.path()), None);
        std::fs::write(&path, "1073741824\n").unwrap();
        assert_eq!(cgroup_memory_limit(root.path()), Some(1 << 30));
        // The process's own memory cgroup wins over the root's.
        let own = root.path().join("sys/fs/cgroup/memory/jobs/one");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(own.join("memory.limit_in_bytes"), "268435456\n").unwrap();
        std::fs::create_dir_all(root.path().join("proc/self")).unwrap();
        std::fs::write(
            root.path().join("proc/self/cgroup"),
            "5:cpu,cpuacct:/\n4:memory:/jobs/one\n0::/\n",
        )
        .unwrap();
        assert_eq!(cgroup_memory_limit(root.path()), Some(256 << 20));
    }

    #[test]
    fn shares_size_buffers() {
        assert_eq!(
            parse_meminfo_total("MemTotal:  1024 kB\nMemFree: 1 kB"),
            Some(1 << 20)
        );
        let task = TaskMemory::share(512 << 20, 2);
        assert_eq!(task.bytes, 256 << 20);
        assert!(task.spill_bytes() * 3 < task.bytes);
        assert_eq!(task.max_chunk_bytes(), 16 << 20);
        assert_eq!(TaskMemory::share(0, 0).max_chunk_bytes(), MIN_CHUNK_BYTES);
    }
}
