//! ringloop: an asyncio-shaped event loop for Rust.
#![deny(unsafe_op_in_unsafe_fn)]

// Until the loop in `src/runtime` builds a `Driver`, everything under it is
// unused outside tests; drop this allow when it does.
#[allow(dead_code)]
mod driver;
pub mod runtime;

pub use driver::{DriverChoice, DriverKind};
