//! Test-only crate: the end-to-end and conformance tests live in `tests/tests/`.
