//! What the span path and the SLO exchange ask to be written: a [`Record`] for a [`Destination`],
//! with the holds its acknowledgement releases. A leaf module: the producers of records need no
//! Kafka client, and the delivery ledger, which sends them, needs nothing of theirs.

use bytes::Bytes;

use crate::position::Hold;

/// Which topic a record goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Kept traces (`kafka.output_topic`).
    Output,
    /// Undecodable input, unchanged (`kafka.dead_letter_topic`).
    DeadLetter,
    /// Spans re-keyed by trace id (input not keyed by trace id).
    Repartition,
    /// SLO alert messages.
    Alerts,
    /// Partial SLO counts for the owner of each SLO (explicit partition).
    Aggregates,
    /// SLO state checkpoints (compacted, keyed by SLO name).
    SloState,
}

impl Destination {
    /// The name used in logs and in `tracewarden_forward_failures_total{destination}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Destination::Output => "output",
            Destination::DeadLetter => "dead_letter",
            Destination::Repartition => "repartition",
            Destination::Alerts => "alerts",
            Destination::Aggregates => "aggregates",
            Destination::SloState => "slo_state",
        }
    }
}

/// One record to write, and the holds its acknowledgement releases.
#[derive(Debug)]
pub struct Record {
    pub destination: Destination,
    /// The partition to write to; `None` lets the partitioner pick by key.
    pub partition: Option<i32>,
    pub key: Bytes,
    pub payload: Bytes,
    /// `(tracewarden.error, tracewarden.source)` headers, for dead letters.
    pub dead_letter: Option<(String, String)>,
    /// Shares of the holds of the messages this record settles.
    pub holds: Vec<Hold>,
    /// Spans in the record (for `tracewarden_spans_forwarded_total`).
    pub spans: usize,
}
