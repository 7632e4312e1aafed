//! Membership files, TOML and JSON.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mir_runtime::membership::Membership;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = Membership::from_toml_str(text, "fuzz.toml") {
            // What is accepted writes back to an equal membership.
            assert_eq!(Membership::from_toml_str(&m.to_toml(), "again").unwrap(), m);
        }
        let _ = Membership::from_json_str(text, "fuzz.json");
    }
});
