//! A cgroup v1 group that limits one test's worker process.

use std::path::{Path, PathBuf};

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
