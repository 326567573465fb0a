//! Elementwise maps for the less common one-input operators (trigonometric, Softplus, Elu,
//! Selu, Sign, IsNaN, Not, ...) and for integer inputs, where a scalar closure per element is
//! fast enough; the hot activations (Relu, Sigmoid, Tanh, Gelu, ...) have SIMD paths in
//! `elementwise`. Every element is computed by the same scalar code whatever the split, so
//! results do not depend on the thread count.

use super::broadcast::PAR_MIN_ELEMS;
use super::error::{check_len, KernelResult};
use super::par::par_chunks;

/// `out[i] = f(x[i])`.
///
/// # Errors
/// `out` and `x` differ in length.
pub fn map<T, U>(
    op: &'static str,
    x: &[T],
    out: &mut [U],
    threads: usize,
    f: impl Fn(T) -> U + Sync,
) -> KernelResult<()>
where
    T: Copy + Sync,
    U: Send,
{
    check_len(op, "output", out.len(), x.len())?;
    par_chunks(out, 1, threads, PAR_MIN_ELEMS, |first, piece| {
        let src = &x[first..first + piece.len()];
        for (o, &v) in piece.iter_mut().zip(src) {
            *o = f(v);
        }
    });
    Ok(())
}

/// `data[i] = f(data[i])` (the output planned over its input).
pub fn map_inplace<T: Copy + Send>(data: &mut [T], threads: usize, f: impl Fn(T) -> T + Sync) {
    par_chunks(data, 1, threads, PAR_MIN_ELEMS, |_, piece| {
        for v in piece {
            *v = f(*v);
        }
    });
}

/// `log(1 + exp(x))` without overflow for large `x` and without losing small results.
pub fn softplus(x: f32) -> f32 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

/// numpy's `sign` for floats: -1, 0 or 1, NaN stays NaN (and -0.0 gives 0).
pub fn sign_f32(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x * 0.0 + 0.0 // 0 for ±0, NaN for NaN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_matches_a_serial_loop_for_any_thread_count() {
        let x: Vec<f32> = (0..200_000)
            .map(|i| (i as f32 * 0.37).sin() * 9.0)
            .collect();
        let want: Vec<f32> = x.iter().map(|&v| softplus(v)).collect();
        for threads in [1, 2, 4] {
            let mut out = vec![0.0; x.len()];
            map("Softplus", &x, &mut out, threads, softplus).unwrap();
            assert_eq!(out, want, "threads {threads}");
            let mut inplace = x.clone();
            map_inplace(&mut inplace, threads, softplus);
            assert_eq!(inplace, want, "in place, threads {threads}");
        }
    }

    #[test]
    fn map_rejects_a_wrong_output_length() {
        let mut out = vec![0u8; 3];
        let e = map("IsNaN", &[1.0f32, 2.0], &mut out, 1, |v: f32| {
            u8::from(v.is_nan())
        });
        assert!(e.is_err());
    }

    #[test]
    fn softplus_is_stable_at_both_ends() {
        assert_eq!(softplus(100.0), 100.0);
        assert_eq!(softplus(-200.0), 0.0);
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        // Small results keep their precision: log(1 + e^-20) ≈ e^-20.
        let tiny = softplus(-20.0);
        assert!(((tiny - (-20f32).exp()) / tiny).abs() < 1e-6, "{tiny}");
    }

    #[test]
    fn sign_follows_numpy() {
        assert_eq!(sign_f32(3.5), 1.0);
        assert_eq!(sign_f32(-0.1), -1.0);
        assert_eq!(sign_f32(0.0), 0.0);
        assert_eq!(sign_f32(-0.0).to_bits(), 0.0f32.to_bits());
        assert!(sign_f32(f32::NAN).is_nan());
    }
}
