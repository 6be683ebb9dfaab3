//! The blocking-pool fallback used on io_uring when the kernel lacks an
//! opcode (forced here, since this kernel has them all).
