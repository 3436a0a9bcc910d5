//! Fuzzes every decoder: the first byte picks the encoding (its slot in the format table, modulo
//! their number, so a new encoding is fuzzed without touching this file), the rest is the message.
//! Any message either fails cleanly or yields spans that re-encode (as a kept trace is forwarded)
//! into a payload that decodes to the same spans. Seeds in `fuzz/seeds/decode` are named
//! `<encoding>-<what>` and start with that encoding's slot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracewarden::format::{Encoding, InputEncoding};

fuzz_target!(|data: &[u8]| {
    let Some((&slot, message)) = data.split_first() else { return };
    let encoding = Encoding::ALL[usize::from(slot) % Encoding::ALL.len()];
    tracewarden::testing::fuzz_decode(InputEncoding::Fixed(encoding), message);
});
