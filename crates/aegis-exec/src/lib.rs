//! # aegis-exec — Layer 3 of AegisRT
//!
//! (crate documentation is completed as the modules land)

pub mod graph;
pub mod kernels;
pub mod loader;
