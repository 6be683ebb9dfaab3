//! ringloop: an asyncio-shaped event loop for Rust.
#![deny(unsafe_op_in_unsafe_fn)]

mod driver;
pub mod runtime;
pub mod sync;

pub use driver::{DriverChoice, DriverKind};
