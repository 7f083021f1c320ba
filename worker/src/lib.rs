//! The Harrow worker.

pub mod cpu;
pub mod input;
