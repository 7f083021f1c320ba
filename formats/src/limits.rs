//! Every bound on how input is cut and decoded, in one place.

// Pieces of a split.

/// The fewest input bytes read per request and mapped per rayon job:
/// smaller reads cost more in calls than they save in memory.
pub const MIN_CHUNK_BYTES: u64 = 1 << 20;

/// The most input bytes read per request and mapped per rayon job: a
/// task's memory share caps it lower (`worker::memory`).
pub const MAX_CHUNK_BYTES: u64 = 32 << 20;

/// Bytes per text chunk of a compressed file: its size says little about
/// the text inside, so its chunks take a large size.
pub const COMPRESSED_CHUNK_BYTES: u64 = MAX_CHUNK_BYTES / 2;

/// Rows per piece of generated input, at most.
pub const MAX_PIECE_ROWS: u64 = 1 << 20;

// Batches.

/// Rows per input batch.
pub const BATCH_ROWS: usize = 8192;
