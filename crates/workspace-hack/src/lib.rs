//! No code: this crate only depends on crates with the features the
//! workspace's tests and benches turn on, so that the `quota` binary built
//! alone resolves the same features as in `make test` and reuses what that
//! compiled (see its `Cargo.toml`).
