//! Builds the example guest crates as components (see `quota-guest-build`),
//! into `$OUT_DIR` and `target/guest/`.

fn main() {
    quota_guest_build::build(quota_guest_build::Guest {
        package: "quota-percent-grace-policy",
        lib_name: "quota_percent_grace_policy",
        out_file: "percent-grace.wasm",
        watch: &[
            "examples/percent-grace/Cargo.toml",
            "examples/percent-grace/src",
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
