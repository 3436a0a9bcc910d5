//! Fuzzes what the receivers read from the network: an OTLP/HTTP body (protobuf or JSON) is either
//! refused or split into one message per trace that the pipeline decodes back to exactly the
//! spans counted; an X-Ray datagram is either rejected with a reason or keyed by a 32-hex id.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tracewarden::format::{Decoder, Encoding};
use tracewarden::ingest::split::{split, Body};
use tracewarden::ingest::xray_udp::{check, Datagram};

fuzz_target!(|data: &[u8]| {
    for (body, input) in [(Body::Protobuf, Encoding::OTLP_PROTO), (Body::Json, Encoding::OTLP_JSON)] {
        let Ok(split) = split(data, body) else { continue };
        for message in &split.messages {
            assert_eq!(message.key.len(), 32);
            let mut spans = Vec::new();
            let stats = Decoder::new(input.into()).decode(&Bytes::from(message.payload.clone()), &mut spans);
            let stats = stats.expect("a split message decodes");
            let read = spans.len() + (stats.invalid_id + stats.invalid_time) as usize;
            assert_eq!(read, message.spans, "every span of the message is read");
            assert!(spans.iter().all(|s| hex::encode(s.trace_id) == message.key), "one trace per message");
        }
    }
    match check(data) {
        Datagram::Segment { key } => assert!(key.len() == 32 && key.bytes().all(|b| b.is_ascii_hexdigit())),
        Datagram::Rejected { reason, .. } => assert!(matches!(reason, "bad_header" | "bad_document")),
    }
});
