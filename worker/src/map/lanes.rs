//! Lanes: a job with a combiner keeps a mapper per lane across pieces,
//! piece `i` going to lane `i % lanes`; each piece waits for the one
//! before it on its lane to hand the mapper over, so which mapper folds
//! which rows never depends on timing.

use std::sync::Arc;

use arrow::array::RecordBatch;
use harrow_formats::decode::ChunkDecoder;
use harrow_formats::source::Piece;
use harrow_sdk::{JobError, JobRuntime, Mapper, OwnedMapper};
use tokio::sync::oneshot;

use crate::cpu::run_cpu;
use crate::error::TaskError;
use crate::memory::TaskMemory;

/// A mapper kept across pieces, and the bytes of decoded input it has
/// mapped: an estimate of what its state holds.
pub(super) struct Lane {
    mapper: Box<OwnedMapper>,
    mapped: u64,
}

/// The lanes of a map attempt. For each lane, where its next piece gets
/// the mapper from: the piece before it on the lane sends it (or `None`
/// once finished) when it has mapped.
pub(super) struct Lanes {
    handoffs: Vec<oneshot::Receiver<Option<Lane>>>,
    /// The lane of the next piece.
    next: usize,
    limit: u64,
}

/// Where a piece gets its mapper, and where it passes it on.
pub(super) enum Handoff {
    /// A mapper of its own, finished after the piece (a job without a
    /// combiner has nothing to fold across pieces).
    Single,
    Lane {
        from: oneshot::Receiver<Option<Lane>>,
        to: oneshot::Sender<Option<Lane>>,
        limit: u64,
    },
}

impl Lanes {
    pub(super) fn new(job: &dyn JobRuntime, lanes: usize, memory: &TaskMemory) -> Lanes {
        if !job.schema().combiner {
            return Lanes {
                handoffs: Vec::new(),
                next: 0,
                limit: 0,
            };
        }
        let handoffs = (0..lanes.max(1))
            .map(|_| {
                let (to, from) = oneshot::channel();
                let _ = to.send(None);
                from
            })
            .collect::<Vec<_>>();
        // Together the lanes hold about half of what a spill holds: their
        // state is estimated from their input, which a hash table of small
        // keys can outgrow.
        let limit = memory.spill_bytes() / (2 * handoffs.len() as u64);
        Lanes {
            handoffs,
            next: 0,
            limit,
        }
    }

    pub(super) fn folding(&self) -> bool {
        !self.handoffs.is_empty()
    }

    pub(super) fn take(&mut self) -> Handoff {
        if !self.folding() {
            return Handoff::Single;
        }
        let index = self.next % self.handoffs.len();
        self.next += 1;
        let (to, next) = oneshot::channel();
        let from = std::mem::replace(&mut self.handoffs[index], next);
        Handoff::Lane {
            from,
            to,
            limit: self.limit,
        }
    }

    /// The open lanes, once every piece is mapped.
    pub(super) fn drain(&mut self) -> Vec<Lane> {
        self.handoffs
            .iter_mut()
            .filter_map(|handoff| handoff.try_recv().ok().flatten())
            .collect()
    }
}

/// Maps `piece` on the mapper its handoff gives, once the piece before it
/// on the lane is done, and passes the mapper on.
pub(super) async fn map_on_lane(
    job: Arc<dyn JobRuntime>,
    decoder: Arc<ChunkDecoder>,
    file: String,
    piece: Piece,
    handoff: Handoff,
) -> Result<Mapped, TaskError> {
    let (slot, to) = match handoff {
        Handoff::Single => (LaneSlot::single(), None),
        Handoff::Lane { from, to, limit } => {
            // A closed handoff: the piece before failed, and so does the task.
            let lane = from.await.map_err(|_| TaskError::Job {
                during: "map",
                source: JobError::job("the piece before this one on its mapper failed"),
            })?;
            (LaneSlot { lane, limit }, Some(to))
        }
    };
    let mut mapped = run_cpu(map_piece(job, decoder, file, piece, slot))
        .await
        .map_err(TaskError::panic("panicked in map:"))??;
    if let Some(to) = to {
        let _ = to.send(mapped.lane.take());
    }
    Ok(mapped)
}

/// A piece's lane, as [`map_piece`] takes it: the lane's mapper is
/// finished once it has mapped `limit` bytes.
pub(super) struct LaneSlot {
    lane: Option<Lane>,
    limit: u64,
}

impl LaneSlot {
    /// A mapper of its own, finished after the piece.
    pub(crate) fn single() -> LaneSlot {
        LaneSlot {
            lane: None,
            limit: 0,
        }
    }
}

/// What mapping one piece of input produced.
pub(super) struct Mapped {
    pub(super) records: u64,
    pub(super) counters: harrow_sdk::Counters,
    /// The finished mapper's output, if it was finished.
    pub(super) output: Option<RecordBatch>,
    /// The lane, unless it was finished.
    pub(super) lane: Option<Lane>,
    pub(super) bad_records: u64,
    pub(super) bad_record_samples: Vec<harrow_core::task::BadRecord>,
}

/// Finishes a lane's mapper: its output, counted as a piece of no input.
pub(super) fn finish_lane(lane: Lane) -> Result<Mapped, TaskError> {
    let (output, counters) = lane.mapper.finish().map_err(TaskError::job("map"))?;
    Ok(Mapped {
        records: 0,
        counters,
        output: Some(output),
        lane: None,
        bad_records: 0,
        bad_record_samples: Vec::new(),
    })
}

/// The CPU work for one piece: bytes, a row group or row numbers →
/// batches → the job's map, on the lane's mapper (a new one if it has
/// none), which is finished if it has mapped its share.
pub(super) fn map_piece(
    job: Arc<dyn JobRuntime>,
    decoder: Arc<ChunkDecoder>,
    file: String,
    piece: Piece,
    slot: LaneSlot,
) -> impl FnOnce() -> Result<Mapped, TaskError> {
    move || {
        let decoded = piece.decode(&decoder, &file)?;
        let mut lane = slot.lane.unwrap_or_else(|| Lane {
            mapper: Box::new(OwnedMapper::new(job)),
            mapped: 0,
        });
        let mut records = 0;
        for batch in &decoded.batches {
            records += batch.num_rows() as u64;
            lane.mapped += batch.get_array_memory_size() as u64;
            lane.mapper.map(batch).map_err(TaskError::job("map"))?;
        }
        let mut mapped = match lane.mapped >= slot.limit {
            true => finish_lane(lane)?,
            false => Mapped {
                records: 0,
                counters: Default::default(),
                output: None,
                lane: Some(lane),
                bad_records: 0,
                bad_record_samples: Vec::new(),
            },
        };
        mapped.records = records;
        mapped.bad_records = decoded.bad_records;
        mapped.bad_record_samples = decoded.bad_record_samples;
        Ok(mapped)
    }
}
