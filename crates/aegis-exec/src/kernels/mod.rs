//! Host kernels (f32).
