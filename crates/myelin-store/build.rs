// `sqlx::migrate!` embeds the migrations at compile time, but on stable Rust cargo does not know
// the macro read the directory: without this a new migration file is not picked up by an
// incremental build (the binary would silently lack it).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations-sqlite");
}
