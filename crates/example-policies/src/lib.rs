//! Example policy components, compiled from `examples/` by this crate's
//! build script and encoded with `wit-component`. Each exports
//! `quota:policy/engine@0.1.0` and imports nothing, and is also written to
//! `target/guest/` for the CLI and the admin API.
//!
//! ```
//! let bytes = quota_example_policies::PERCENT_GRACE;
//! assert_eq!(&bytes[..4], b"\0asm");
//! ```

/// `examples/percent-grace`: the reference policy with grace set to 20% of
/// the resolved limit, rounded up, instead of the plan's `grace_count`
/// (`target/guest/percent-grace.wasm`).
pub const PERCENT_GRACE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/percent-grace.wasm"));
