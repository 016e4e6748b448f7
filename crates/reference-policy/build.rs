//! Builds the guest crate `policy/` as a component (see `quota-guest-build`),
//! into `$OUT_DIR` and `target/guest/reference-policy.wasm`.

fn main() {
    quota_guest_build::build(quota_guest_build::Guest {
        package: "quota-policy",
        lib_name: "quota_policy",
        out_file: "reference-policy.wasm",
        watch: &[
            "policy",
            "crates/policy-core",
            "crates/guest-arena",
            "wit",
            "Cargo.toml",
            "Cargo.lock",
        ],
        copy_to_target: true,
    });
}
