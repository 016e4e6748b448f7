//! The host runtime against real components: loading and type-checking,
//! the sandbox, the differential test of guest against native core, and the
//! percent-grace example policy against its native model.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly too"
)]

mod cache;
mod differential;
mod loading;
mod memory;
mod percent_grace;
mod sandbox;
