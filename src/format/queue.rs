//! The queue a messaging span publishes to or consumes from (investigation.md "Queues on the
//! map"), read from the span's bytes when the map needs it rather than kept on every span: only
//! spans that name a messaging system (`RemoteKind::Queue`) are asked, and the answer is written
//! into reused buffers ([`QueueScratch`]), so asking allocates nothing once they have grown.
//!
//! A queue is `{messaging.system}:{messaging.destination.name}`; a span publishes to it when
//! `messaging.operation.type` says `publish`, `send` or `create`, consumes from it when it says
//! `receive`, `process`, `deliver` or `settle`, and otherwise by its kind (PRODUCER publishes,
//! CONSUMER consumes, any other kind neither). Encodings that carry the messaging facts elsewhere
//! (X-Ray's `aws` fields) answer in their own file, in the same terms.

use crate::model::SpanKind;

/// Reused buffers for the parts of a queue's name.
#[derive(Debug, Default)]
pub struct QueueScratch {
    pub(crate) system: String,
    pub(crate) destination: String,
    operation_type: String,
    name: String,
}

impl QueueScratch {
    /// The queue's name, as the last successful [`super::Format::queue`] found it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn clear(&mut self) {
        self.system.clear();
        self.destination.clear();
        self.operation_type.clear();
        self.name.clear();
    }

    /// Names the queue from `system` and `destination` (both set); whether a span of `kind`
    /// publishes to it (`None`: it neither publishes nor consumes).
    pub(crate) fn named(&mut self, kind: SpanKind) -> Option<bool> {
        if self.system.is_empty() || self.destination.is_empty() {
            return None;
        }
        let publishes = match self.operation_type.as_str() {
            "publish" | "send" | "create" => true,
            "receive" | "process" | "deliver" | "settle" => false,
            _ => match kind {
                SpanKind::Producer => true,
                SpanKind::Consumer => false,
                _ => return None,
            },
        };
        self.name.push_str(&self.system);
        self.name.push(':');
        self.name.push_str(&self.destination);
        Some(publishes)
    }
}

/// The messaging attributes a queue is read from, in the order of [`from_attributes`]' slots.
const MESSAGING_KEYS: [&str; 3] = ["messaging.system", "messaging.destination.name", "messaging.operation.type"];

/// The slot of a messaging attribute a queue is read from.
pub(crate) fn messaging_key(key: &[u8]) -> Option<usize> {
    MESSAGING_KEYS.iter().position(|k| k.as_bytes() == key)
}

/// The queue of a span from OpenTelemetry's messaging attributes (the first value of each), which
/// `visit` walks ([`super::Format::visit_span_attributes`]): whether it publishes, its name left
/// in `scratch`.
pub(crate) fn from_attributes(
    visit: impl FnOnce(&mut dyn FnMut(usize, &str)),
    kind: SpanKind,
    scratch: &mut QueueScratch,
) -> Option<bool> {
    scratch.clear();
    let mut seen = [false; 3];
    visit(&mut |slot, value| {
        let buffer = match slot {
            0 => &mut scratch.system,
            1 => &mut scratch.destination,
            _ => &mut scratch.operation_type,
        };
        if !std::mem::replace(&mut seen[slot], true) {
            buffer.push_str(value);
        }
    });
    scratch.named(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The queue and direction of a span of `kind` with `attributes`, in wire order.
    fn queue_of(kind: SpanKind, attributes: &[(&str, &str)]) -> Option<(String, bool)> {
        let mut scratch = QueueScratch::default();
        let visit = |visit: &mut dyn FnMut(usize, &str)| {
            attributes.iter().for_each(|(k, v)| messaging_key(k.as_bytes()).into_iter().for_each(|slot| visit(slot, v)))
        };
        let publishes = from_attributes(visit, kind, &mut scratch)?;
        Some((scratch.name().to_string(), publishes))
    }

    #[test]
    fn the_operation_type_says_the_direction_else_the_kind() {
        let kafka = [("messaging.destination.name", "billing-events"), ("messaging.system", "kafka")];
        let with = |operation: &'static str| [kafka[0], kafka[1], ("messaging.operation.type", operation)];
        let published = Some(("kafka:billing-events".to_string(), true));
        let consumed = Some(("kafka:billing-events".to_string(), false));
        for operation in ["publish", "send", "create"] {
            assert_eq!(queue_of(SpanKind::Client, &with(operation)), published, "{operation}");
        }
        for operation in ["receive", "process", "deliver", "settle"] {
            assert_eq!(queue_of(SpanKind::Client, &with(operation)), consumed, "{operation}");
        }
        assert_eq!(queue_of(SpanKind::Producer, &kafka), published);
        assert_eq!(queue_of(SpanKind::Consumer, &kafka), consumed);
        assert_eq!(queue_of(SpanKind::Client, &kafka), None, "a client span says neither");
        assert_eq!(queue_of(SpanKind::Producer, &kafka[..1]), None, "no system");
        assert_eq!(queue_of(SpanKind::Producer, &kafka[1..]), None, "no destination");
        // The first value of a repeated key counts.
        let repeated = [kafka[0], kafka[1], ("messaging.system", "rabbitmq")];
        assert_eq!(queue_of(SpanKind::Producer, &repeated), published);
    }
}
