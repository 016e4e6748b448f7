//! The reference policy component, compiled from `policy/` by this crate's
//! build script and encoded with `wit-component`: a WebAssembly component
//! that exports `quota:policy/engine@0.1.0` and imports nothing.
//!
//! ```
//! let bytes = quota_reference_policy::COMPONENT;
//! assert_eq!(&bytes[..4], b"\0asm");
//! ```

/// The component's bytes.
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/reference-policy.wasm"));
