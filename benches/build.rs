//! Builds the benchmark fixture `benches/floor` as a component (see
//! `quota-guest-build`), into `$OUT_DIR`.

fn main() {
    quota_guest_build::build(quota_guest_build::Guest {
        package: "quota-floor-policy",
        lib_name: "quota_floor_policy",
        out_file: "floor-policy.wasm",
        watch: &[
            "benches/floor/Cargo.toml",
            "benches/floor/src",
            "benches/floor/wit",
            "policy",
            "crates/guest-arena",
            "wit",
            "Cargo.toml",
            "Cargo.lock",
        ],
        copy_to_target: false,
    });
}
