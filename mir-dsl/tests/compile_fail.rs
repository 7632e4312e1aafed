//! Misuse of `#[protocol]` gives a compile error at the right span saying what to write instead.
//! The expected messages are in `tests/ui/**/*.stderr`; refresh them with
//! `TRYBUILD=overwrite cargo test -p mir-dsl --test compile_fail` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*/*.rs");
}
