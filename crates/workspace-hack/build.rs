//! Nothing to build: the build-dependencies only ask for features of the
//! crates procedural macros use.
fn main() {}
