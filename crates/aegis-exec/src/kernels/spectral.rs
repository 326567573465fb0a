//! `DFT` and `STFT`: discrete Fourier transforms along one axis, through `rustfft` (any
//! length: mixed radix, Rader, Bluestein).
//!
//! Tensors hold complex numbers as a last axis of 2 (real, imaginary), or of 1 for a real
//! signal. The transforms run in f64, as the reference's numpy FFT does, and are rounded to
//! f32 once. The inverse divides by the length; a one-sided result keeps the first
//! `n / 2 + 1` frequencies (of a real signal, the others are their conjugates).

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

use super::error::{check_len, KernelError, KernelResult};

/// A `DFT` node's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DftSpec {
    /// The transformed axis (of the input, never its last, complex axis).
    pub axis: usize,
    /// The transform's length: the axis is cut or zero-padded to it.
    pub length: usize,
    /// Inverse transform (scaled by `1 / length`).
    pub inverse: bool,
    /// Forward: keep the first `length / 2 + 1` outputs along the axis (RFFT). Inverse:
    /// the input is such a one-sided spectrum and the output is real (IRFFT).
    pub onesided: bool,
}

impl DftSpec {
    /// Outputs along the axis.
    pub fn bins(&self) -> usize {
        if self.onesided && !self.inverse {
            self.length / 2 + 1
        } else {
            self.length
        }
    }

    /// Whether the transform is an IRFFT: a one-sided spectrum in, a real signal out.
    pub fn irfft(&self) -> bool {
        self.onesided && self.inverse
    }

    /// Parts per output element: 1 for the IRFFT's real signal, else 2 (complex).
    pub fn out_parts(&self) -> usize {
        if self.irfft() {
            1
        } else {
            2
        }
    }
}

fn fft_in_place(buf: &mut [Complex<f64>], n: usize, inverse: bool) {
    let mut planner = FftPlanner::<f64>::new();
    let fft = if inverse {
        planner.plan_fft_inverse(n)
    } else {
        planner.plan_fft_forward(n)
    };
    fft.process(buf);
    if inverse {
        let scale = 1.0 / n as f64;
        for v in buf.iter_mut() {
            *v *= scale;
        }
    }
}

/// `DFT` of `x` (shape `x_shape`, last axis 1 or 2) into `out` (`x_shape` with the axis
/// `spec.bins()` long and a last axis of `spec.out_parts()`).
///
/// # Errors
/// Length mismatches or an axis outside the input's non-complex axes.
pub fn dft(x: &[f32], x_shape: &[usize], spec: &DftSpec, out: &mut [f32]) -> KernelResult<()> {
    const OP: &str = "DFT";
    let rank = x_shape.len();
    let c = x_shape.last().copied().unwrap_or(0);
    if rank < 2 || spec.axis >= rank - 1 || !(1..=2).contains(&c) || spec.length == 0 {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "axis",
            reason: format!(
                "axis {} of input {x_shape:?} (last axis 1 or 2, length {})",
                spec.axis, spec.length
            ),
        });
    }
    let outer: usize = x_shape[..spec.axis].iter().product();
    let len = x_shape[spec.axis];
    let inner: usize = x_shape[spec.axis + 1..rank - 1].iter().product();
    let (n, m, parts) = (spec.length, spec.bins(), spec.out_parts());
    check_len(OP, "input", x.len(), outer * len * inner * c)?;
    check_len(OP, "output", out.len(), outer * m * inner * parts)?;
    // IRFFT: the first `n / 2 + 1` bins are given, the rest are their conjugate mirror
    // (`X[n - k] = conj(X[k])`); the real part of the inverse is the signal (numpy's irfft:
    // the imaginary parts of the DC and Nyquist bins drop out).
    let given = if spec.irfft() {
        len.min(n / 2 + 1)
    } else {
        len
    };
    // One contiguous run of `n` per transformed line, all lines in one call.
    let mut buf = vec![Complex::new(0.0f64, 0.0); outer * inner * n];
    for o in 0..outer {
        for i in 0..inner {
            let line = &mut buf[(o * inner + i) * n..(o * inner + i + 1) * n];
            for (k, v) in line.iter_mut().enumerate().take(given) {
                let at = ((o * len + k) * inner + i) * c;
                let im = if c == 2 { f64::from(x[at + 1]) } else { 0.0 };
                *v = Complex::new(f64::from(x[at]), im);
            }
            if spec.irfft() {
                for k in given.max(1)..n {
                    if n - k < given {
                        line[k] = line[n - k].conj();
                    }
                }
            }
        }
    }
    if !buf.is_empty() {
        fft_in_place(&mut buf, n, spec.inverse);
    }
    for o in 0..outer {
        for i in 0..inner {
            let line = &buf[(o * inner + i) * n..];
            for (k, v) in line.iter().take(m).enumerate() {
                let at = ((o * m + k) * inner + i) * parts;
                out[at] = v.re as f32;
                if parts == 2 {
                    out[at + 1] = v.im as f32;
                }
            }
        }
    }
    Ok(())
}

/// An `STFT` node's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StftSpec {
    /// Samples between the starts of consecutive frames.
    pub step: usize,
    /// Each frame's transform length.
    pub length: usize,
    /// Samples a frame takes from the signal (the window's length, else `length`).
    pub window_len: usize,
    /// Frames (`(signal_len - length) / step + 1`).
    pub frames: usize,
    /// Keep the first `length / 2 + 1` frequencies.
    pub onesided: bool,
}

/// `STFT` of `signal` (`[batch, len, 1 or 2]`) with an optional `window` (`window_len`
/// weights) into `out` (`[batch, frames, bins, 2]`). A frame that runs past the signal's end
/// is zero-padded, as in the reference.
///
/// # Errors
/// Length mismatches.
pub fn stft(
    signal: &[f32],
    signal_shape: &[usize],
    window: Option<&[f32]>,
    spec: &StftSpec,
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "STFT";
    let [batch, len, c] = *signal_shape else {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "signal",
            reason: format!("shape {signal_shape:?}: expected [batch, length, 1 or 2]"),
        });
    };
    if !(1..=2).contains(&c) || spec.length == 0 || spec.step == 0 {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "signal",
            reason: format!(
                "shape {signal_shape:?}, frame length {}, step {}",
                spec.length, spec.step
            ),
        });
    }
    check_len(OP, "signal", signal.len(), batch * len * c)?;
    if let Some(w) = window {
        check_len(OP, "window", w.len(), spec.window_len)?;
    }
    let n = spec.length;
    let bins = if spec.onesided { n / 2 + 1 } else { n };
    check_len(OP, "output", out.len(), batch * spec.frames * bins * 2)?;
    let mut buf = vec![Complex::new(0.0f64, 0.0); batch * spec.frames * n];
    for b in 0..batch {
        for f in 0..spec.frames {
            let frame = &mut buf[(b * spec.frames + f) * n..(b * spec.frames + f + 1) * n];
            let start = f * spec.step;
            let take = spec.window_len.min(n).min(len.saturating_sub(start));
            for (k, v) in frame.iter_mut().enumerate().take(take) {
                let at = (b * len + start + k) * c;
                let w = window.map_or(1.0, |w| f64::from(w[k]));
                let im = if c == 2 {
                    f64::from(signal[at + 1])
                } else {
                    0.0
                };
                *v = Complex::new(f64::from(signal[at]) * w, im * w);
            }
        }
    }
    if !buf.is_empty() {
        fft_in_place(&mut buf, n, false);
    }
    for (frame, dst) in buf.chunks_exact(n).zip(out.chunks_exact_mut(bins * 2)) {
        for (v, d) in frame.iter().zip(dst.chunks_exact_mut(2)) {
            d[0] = v.re as f32;
            d[1] = v.im as f32;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook O(n^2) sum, for comparison.
    fn naive(x: &[(f64, f64)], n: usize, inverse: bool) -> Vec<(f64, f64)> {
        let sign = if inverse { 1.0 } else { -1.0 };
        (0..n)
            .map(|k| {
                let mut acc = (0.0, 0.0);
                for (t, &(re, im)) in x.iter().enumerate().take(n) {
                    let a = sign * 2.0 * std::f64::consts::PI * (k * t) as f64 / n as f64;
                    acc.0 += re * a.cos() - im * a.sin();
                    acc.1 += re * a.sin() + im * a.cos();
                }
                if inverse {
                    (acc.0 / n as f64, acc.1 / n as f64)
                } else {
                    acc
                }
            })
            .collect()
    }

    #[test]
    fn dft_matches_the_definition_along_a_middle_axis() {
        // [2, 5, 3, 2]: complex lines of 5 along axis 1, padded to 7; 3 lines per batch.
        let shape = [2, 5, 3, 2];
        let x: Vec<f32> = (0..60).map(|v| ((v * 37) % 11) as f32 - 5.0).collect();
        for (inverse, onesided) in [(false, false), (true, false), (false, true)] {
            let spec = DftSpec {
                axis: 1,
                length: 7,
                inverse,
                onesided,
            };
            let m = spec.bins();
            let mut out = vec![0.0; 2 * m * 3 * 2];
            dft(&x, &shape, &spec, &mut out).unwrap();
            for o in 0..2 {
                for i in 0..3 {
                    let line: Vec<(f64, f64)> = (0..5)
                        .map(|k| {
                            let at = ((o * 5 + k) * 3 + i) * 2;
                            (f64::from(x[at]), f64::from(x[at + 1]))
                        })
                        .collect();
                    let want = naive(&line, 7, inverse);
                    for (k, w) in want.iter().take(m).enumerate() {
                        let at = ((o * m + k) * 3 + i) * 2;
                        assert!((f64::from(out[at]) - w.0).abs() < 1e-4, "{inverse} {k}");
                        assert!((f64::from(out[at + 1]) - w.1).abs() < 1e-4, "{inverse} {k}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_one_sided_inverse_turns_a_one_sided_spectrum_back_into_its_real_signal() {
        // Real lines of 6 and of 7 samples (even and odd lengths) along axis 0 of [n, 2, 1]:
        // RFFT, then IRFFT with the signal's length, gives the signal back.
        for n in [6usize, 7] {
            let x: Vec<f32> = (0..n * 2).map(|v| ((v * 5) % 7) as f32 - 3.0).collect();
            let fwd = DftSpec {
                axis: 0,
                length: n,
                inverse: false,
                onesided: true,
            };
            let bins = fwd.bins();
            let mut spectrum = vec![0.0; bins * 2 * 2];
            dft(&x, &[n, 2, 1], &fwd, &mut spectrum).unwrap();
            let inv = DftSpec {
                inverse: true,
                ..fwd
            };
            assert_eq!((inv.bins(), inv.out_parts()), (n, 1));
            let mut back = vec![f32::NAN; n * 2];
            dft(&spectrum, &[bins, 2, 2], &inv, &mut back).unwrap();
            for (got, want) in back.iter().zip(&x) {
                assert!((got - want).abs() < 1e-5, "n {n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn stft_windows_frames_and_keeps_the_one_sided_bins() {
        // One real signal of 10 samples, frames of 4 every 3 samples: 3 frames.
        let x: Vec<f32> = (0..10).map(|v| (v as f32 * 0.7).sin()).collect();
        let w = [0.0f32, 0.5, 1.0, 0.5];
        let spec = StftSpec {
            step: 3,
            length: 4,
            window_len: 4,
            frames: 3,
            onesided: true,
        };
        let mut out = vec![0.0; 3 * 3 * 2];
        stft(&x, &[1, 10, 1], Some(&w), &spec, &mut out).unwrap();
        for f in 0..3 {
            let frame: Vec<(f64, f64)> = (0..4)
                .map(|k| (f64::from(x[f * 3 + k]) * f64::from(w[k]), 0.0))
                .collect();
            let want = naive(&frame, 4, false);
            for (k, w) in want.iter().take(3).enumerate() {
                let at = (f * 3 + k) * 2;
                assert!((f64::from(out[at]) - w.0).abs() < 1e-5);
                assert!((f64::from(out[at + 1]) - w.1).abs() < 1e-5);
            }
        }
    }
}
