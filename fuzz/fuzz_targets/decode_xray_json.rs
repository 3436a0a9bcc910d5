//! Fuzzes the xray_json decoder: any input either fails cleanly or yields spans that re-encode (as a
//! kept trace is forwarded) into a payload that decodes to the same spans.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tracewarden::testing::fuzz_decode(tracewarden::decode::InputEncoding::XrayJson, data);
});
