//! Shared by worker and coordinator: ids, storage locations, task specs, wire conversions, the job registry
