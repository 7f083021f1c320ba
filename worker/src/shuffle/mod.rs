//! The shuffle between map and reduce: a map attempt's output on the
//! worker's disk ([`segment`]: one data file of a segment per partition and
//! its index), served to reducers ([`serve`]: the `ShuffleService`), and
//! fetched by them ([`fetch`]: every segment of a partition, recovering
//! from workers that do not answer).

pub mod fetch;
pub mod segment;
pub mod serve;
