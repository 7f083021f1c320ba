//! A plugin for testing what the engine does when job code misbehaves.
//! `--arg mode=` picks how: `ok` counts lines per file; `panic-map`,
//! `panic-combine`, `panic-reduce` panic there (with a NUL byte in the
//! message); `abort` calls `std::process::abort` in map; `segfault` writes
//! through a null pointer in map; `hang` never returns from map;
//! `fail-create` refuses to build. `ordered` counts each distinct line,
//! with total-order partitioning.

use harrow_sdk::{
    ArgSpec, Emitter, Job, JobArgs, JobDefinition, JobError, Line, Output, Partitioning,
};

pub const DEFINITION: JobDefinition = JobDefinition {
    name: "misbehave",
    summary: "lines per file, or a failure of the kind `mode` names",
    args: &[ArgSpec {
        name: "mode",
        help: "ok, panic-map, panic-combine, panic-reduce, abort, segfault, hang, fail-create",
        required: true,
    }],
    create: |args: &JobArgs| {
        let mode: String = args.require("mode")?;
        if mode == "fail-create" {
            return Err(JobError::job("refusing to build, as asked"));
        }
        Ok(harrow_sdk::record_runtime(Misbehave { mode }))
    },
};

pub const ORDERED: JobDefinition = JobDefinition {
    name: "ordered",
    summary: "each distinct line and its count, part files in key order",
    args: &[],
    create: |_: &JobArgs| Ok(harrow_sdk::record_runtime(Ordered)),
};

harrow_sdk::export_plugin!(DEFINITION, ORDERED);

/// Counts lines, partitioned by key ranges sampled at submission.
pub struct Ordered;

impl Job for Ordered {
    type Key = String;
    type Value = u64;
    type Output = (String, u64);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["line", "count"];
    const COMBINE: bool = true;
    const PARTITIONING: Partitioning = Partitioning::TotalOrder;

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        emit.emit(line.text, 1);
        Ok(())
    }

    fn combine(&self, _line: &String, counts: &mut dyn Iterator<Item = u64>) -> u64 {
        counts.sum()
    }

    fn reduce(
        &self,
        line: &String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut Output<'_, (String, u64)>,
    ) -> Result<(), JobError> {
        out.push((line.clone(), counts.sum()));
        Ok(())
    }
}

pub struct Misbehave {
    mode: String,
}

impl Job for Misbehave {
    type Key = String;
    type Value = u64;
    type Output = (String, u64);
    const OUTPUT_COLUMNS: &'static [&'static str] = &["file", "lines"];
    const COMBINE: bool = true;

    fn map(&self, line: &Line<'_>, emit: &mut Emitter<'_, Self>) -> Result<(), JobError> {
        match self.mode.as_str() {
            "panic-map" => panic!("map broke\0here at offset {}", line.offset),
            "abort" => std::process::abort(),
            #[allow(unsafe_code)]
            // SAFETY: none; crashing the process is the point.
            "segfault" => unsafe { std::ptr::null_mut::<u8>().write_volatile(1) },
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            _ => {}
        }
        emit.counter("lines_seen").add(1);
        emit.emit(harrow_sdk::base_name(line.file), 1);
        Ok(())
    }

    fn combine(&self, _file: &String, counts: &mut dyn Iterator<Item = u64>) -> u64 {
        if self.mode == "panic-combine" {
            panic!("combine broke");
        }
        counts.sum()
    }

    fn reduce(
        &self,
        file: &String,
        counts: &mut dyn Iterator<Item = u64>,
        out: &mut Output<'_, (String, u64)>,
    ) -> Result<(), JobError> {
        if self.mode == "panic-reduce" {
            panic!("reduce broke on {file}");
        }
        out.push((file.clone(), counts.sum()));
        Ok(())
    }
}
