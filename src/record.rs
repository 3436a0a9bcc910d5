//! What comes in and what goes out: an input [`Message`] as read, and what the span path and the
//! SLO exchange ask to be written: a [`Record`] for a [`Destination`], with the holds its
//! acknowledgement releases. A leaf module: the producers of records need no
//! Kafka client, and the delivery ledger, which sends them, needs nothing of theirs.

use bytes::Bytes;

use crate::model::Encoding;
use crate::position::Hold;

/// The header naming a re-keyed record's encoding (its value an encoding's configuration name,
/// such as `jaeger_proto`). A message carrying it on a topic read as `auto` is read in that
/// encoding.
pub const ENCODING_HEADER: &str = "tracewarden.encoding";

/// The largest internal record tracewarden writes (points, rollups, changelogs, SLO aggregates
/// and checkpoints): under Kafka's default `max.message.bytes` (1 MB), with room for the record's
/// key and headers (investigation.md "No message too large").
pub const MAX_MESSAGE_BYTES: usize = 900_000;

/// One input message as read (the span path's input).
pub struct Message<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    /// The message's [`crate::record::ENCODING_HEADER`] header, if any.
    pub encoding: Option<&'a [u8]>,
}

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
    /// Partial 10 s points for the owner of each series' partition (explicit partition).
    Points,
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
            Destination::Points => "points",
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
    /// The [`ENCODING_HEADER`] header: the payload's encoding, on re-keyed records (the
    /// repartition topic carries every input's spans, binary encodings included).
    pub encoding: Option<Encoding>,
    /// Shares of the holds of the messages this record settles.
    pub holds: Vec<Hold>,
    /// Spans in the record (for `tracewarden_spans_forwarded_total`).
    pub spans: usize,
}
