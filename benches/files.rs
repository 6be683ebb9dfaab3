//! Random 4 KiB file reads at queue depth 1 and 32 (see `files/mod.rs`).
//! Also part of `cargo bench --bench compare`.
//!
//! ```text
//! cargo bench --bench files             # 256 MiB file, 3 rounds
//! cargo bench --bench files -- --quick  # 64 MiB file, 1 round
//! ```
//!
//! Without `--bench` (under `cargo test`) it runs once at a tiny size.

#[path = "files/mod.rs"]
mod files;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if !args.iter().any(|a| a == "--bench") {
        files::Mode::Smoke
    } else if args.iter().any(|a| a == "--quick") {
        files::Mode::Quick
    } else {
        files::Mode::Full
    };
    println!("\n{}", files::run(mode));
    if mode == files::Mode::Smoke {
        println!("(smoke run: tiny sizes, figures meaningless)");
    }
}
