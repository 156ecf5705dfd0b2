//! What cannot work is a compile error that points at the cause (`tests/ui/*.stderr`).
//! Regenerate the expected output with `TRYBUILD=overwrite cargo test -p tidings-macros`.

#[test]
fn misuse_is_a_clear_compile_error() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
