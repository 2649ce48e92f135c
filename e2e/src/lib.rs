//! Tests of reftrack as a whole live in `tests/`; this crate has no code of its own.
