//! Macro benchmarks: Harrow against hand-written baselines
