//! Builds the hostile test policy (`tests/guests/hostile`) as a component.

fn main() {
    quota_guest_build::build(quota_guest_build::Guest {
        package: "quota-hostile-policy",
        lib_name: "quota_hostile_policy",
        out_file: "hostile-policy.wasm",
        watch: &[
            "tests/guests/hostile",
            "policy",
            "crates/policy-core",
            "crates/guest-arena",
            "wit",
            "Cargo.toml",
            "Cargo.lock",
        ],
        copy_to_target: false,
    });
}
