//! The host runtime against real components: loading and type-checking,
//! the sandbox, and the differential test of guest against native core.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly too"
)]

mod differential;
mod loading;
mod sandbox;
