//! Event-log files (gzip of length-prefixed entries), with a 16 MiB decompression limit.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mir_runtime::eventlog::read_log_from(std::path::Path::new("fuzz.gz"), data, 16 << 20);
});
