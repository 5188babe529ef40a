//! Rebuilds the crate when a migration is added or changed: the migrations
//! in `migrations/` are embedded at compile time, and a new file alone would
//! not otherwise make cargo compile the crate again.

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
