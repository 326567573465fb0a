//! ONNX `Resize` (opset 11+; `Upsample` maps onto `nearest`/`linear` with `asymmetric`):
//! nearest on any rank, linear on the last two axes of a 4-D NCHW input (bilinear) or the
//! last axis of 3-D. The caller computes the output shape (`floor(in * scale)` or `sizes`)
//! and passes the effective per-axis scales (given `scales`, or `out / in` when `sizes` was
//! given), which the coordinate transforms use.

use super::error::{check_len, invalid, numel, KernelResult};
use super::par::par_chunks;

/// `coordinate_transformation_mode` (default `half_pixel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoordTransform {
    /// `(x + 0.5) / scale - 0.5`.
    HalfPixel,
    /// Like `HalfPixel`, centred so the resized extent is symmetric (opset 19).
    HalfPixelSymmetric,
    /// `HalfPixel` unless the output extent is 1 (then 0).
    PytorchHalfPixel,
    /// `x * (in - 1) / (scale * in - 1)` (0 when out is 1; `scale * in` is the output extent
    /// when sizes were given).
    AlignCorners,
    /// `x / scale`.
    Asymmetric,
    /// `(x + 0.5) / scale`.
    TfHalfPixelForNearest,
}

/// `nearest_mode` (default `round_prefer_floor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NearestMode {
    /// Round, halves down.
    RoundPreferFloor,
    /// Round, halves up.
    RoundPreferCeil,
    /// Floor.
    Floor,
    /// Ceil.
    Ceil,
}

/// Interpolation `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeMode {
    /// `nearest` with its rounding rule.
    Nearest(NearestMode),
    /// `linear`.
    Linear,
}

fn original_coord(ct: CoordTransform, o: usize, scale: f32, in_len: usize, out_len: usize) -> f32 {
    let x = o as f32;
    match ct {
        CoordTransform::HalfPixel => (x + 0.5) / scale - 0.5,
        CoordTransform::HalfPixelSymmetric => {
            let adj = out_len as f32 / (scale * in_len as f32);
            let center = in_len as f32 / 2.0;
            let offset = center * (1.0 - adj);
            offset + (x + 0.5) / scale - 0.5
        }
        CoordTransform::PytorchHalfPixel => {
            if out_len > 1 {
                (x + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordTransform::AlignCorners => {
            // ONNX's reference divides by the unrounded `scale * in_len`, which differs from
            // the output extent when a scale (not a size) was given.
            let resized = scale * in_len as f32;
            if out_len == 1 || resized <= 1.0 {
                0.0
            } else {
                x * (in_len as f32 - 1.0) / (resized - 1.0)
            }
        }
        CoordTransform::Asymmetric => x / scale,
        CoordTransform::TfHalfPixelForNearest => (x + 0.5) / scale,
    }
}

fn nearest_index(mode: NearestMode, x: f32, in_len: usize) -> usize {
    let r = match mode {
        NearestMode::RoundPreferFloor => {
            if x.fract() == 0.5 || x.fract() == -0.5 {
                x.floor()
            } else {
                x.round()
            }
        }
        NearestMode::RoundPreferCeil => {
            if x.fract() == 0.5 || x.fract() == -0.5 {
                x.ceil()
            } else {
                x.round()
            }
        }
        NearestMode::Floor => x.floor(),
        NearestMode::Ceil => x.ceil(),
    };
    (r.max(0.0) as usize).min(in_len.saturating_sub(1))
}

/// ONNX `Resize` of `x` (`x_shape`) to `out_shape` with per-axis `scales`.
///
/// # Errors
/// Rank mismatches, non-positive scales, linear on axes other than the trailing spatial ones,
/// or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn resize(
    x: &[f32],
    x_shape: &[usize],
    out_shape: &[usize],
    scales: &[f32],
    mode: ResizeMode,
    coord: CoordTransform,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Resize";
    let rank = x_shape.len();
    if out_shape.len() != rank || scales.len() != rank || rank == 0 {
        return Err(invalid(
            OP,
            "scales",
            format!(
                "rank {rank}, {} output axes, {} scales",
                out_shape.len(),
                scales.len()
            ),
        ));
    }
    if scales.iter().any(|&s| s.is_nan() || s <= 0.0) {
        return Err(invalid(
            OP,
            "scales",
            format!("{scales:?} must be positive"),
        ));
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "Y", out.len(), numel(OP, out_shape)?)?;
    if out.is_empty() {
        return Ok(());
    }
    if x.is_empty() {
        return Err(invalid(
            OP,
            "X",
            "cannot resize an empty input to a non-empty output",
        ));
    }
    match mode {
        ResizeMode::Nearest(nm) => {
            let maps: Vec<Vec<usize>> = (0..rank)
                .map(|d| {
                    (0..out_shape[d])
                        .map(|o| {
                            nearest_index(
                                nm,
                                original_coord(coord, o, scales[d], x_shape[d], out_shape[d]),
                                x_shape[d],
                            )
                        })
                        .collect()
                })
                .collect();
            let mut st = vec![1usize; rank];
            for d in (0..rank - 1).rev() {
                st[d] = st[d + 1] * x_shape[d + 1];
            }
            let inner = out_shape[rank - 1];
            let outer_shape = &out_shape[..rank - 1];
            par_chunks(
                out,
                inner,
                threads,
                (1 << 14) / inner.max(1),
                |first, piece| {
                    let mut idx = vec![0usize; rank - 1];
                    let mut rem = first;
                    for d in (0..rank - 1).rev() {
                        idx[d] = rem % outer_shape[d];
                        rem /= outer_shape[d];
                    }
                    for row in piece.chunks_mut(inner) {
                        let base: usize = (0..rank - 1).map(|d| maps[d][idx[d]] * st[d]).sum();
                        let src = &x[base..base + x_shape[rank - 1]];
                        for (v, &i) in row.iter_mut().zip(&maps[rank - 1]) {
                            *v = src[i];
                        }
                        let mut d = rank - 1;
                        while d > 0 {
                            d -= 1;
                            idx[d] += 1;
                            if idx[d] < outer_shape[d] {
                                break;
                            }
                            idx[d] = 0;
                        }
                    }
                },
            );
            Ok(())
        }
        ResizeMode::Linear => {
            // Interpolated axes: the last two for rank >= 4, the last for rank <= 3... axes in
            // front must keep their extent.
            let lin_axes = if rank >= 4 { 2 } else { 1 };
            if (0..rank - lin_axes).any(|d| x_shape[d] != out_shape[d]) {
                return Err(invalid(
                    OP,
                    "mode",
                    "linear resize supports only the trailing spatial axes (H, W of NCHW)",
                ));
            }
            let coeffs = |d: usize| -> Vec<(usize, usize, f32)> {
                (0..out_shape[d])
                    .map(|o| {
                        let xo = original_coord(coord, o, scales[d], x_shape[d], out_shape[d]);
                        let x0 = xo.floor();
                        let f = xo - x0;
                        let n = x_shape[d] as i64 - 1;
                        let i0 = (x0 as i64).clamp(0, n) as usize;
                        let i1 = (x0 as i64 + 1).clamp(0, n) as usize;
                        (i0, i1, f)
                    })
                    .collect()
            };
            let (ih, iw) = if lin_axes == 2 {
                (x_shape[rank - 2], x_shape[rank - 1])
            } else {
                (1, x_shape[rank - 1])
            };
            let (oh, ow) = if lin_axes == 2 {
                (out_shape[rank - 2], out_shape[rank - 1])
            } else {
                (1, out_shape[rank - 1])
            };
            let hc = if lin_axes == 2 {
                coeffs(rank - 2)
            } else {
                vec![(0, 0, 0.0)]
            };
            let wc = coeffs(rank - 1);
            par_chunks(out, oh * ow, threads, 1, |first, piece| {
                let mut r0 = vec![0.0f32; ow];
                let mut r1 = vec![0.0f32; ow];
                for (pi, oplane) in piece.chunks_mut(oh * ow).enumerate() {
                    let plane = &x[(first + pi) * ih * iw..(first + pi + 1) * ih * iw];
                    for (orow, &(h0, h1, fh)) in oplane.chunks_mut(ow).zip(&hc) {
                        // Horizontal pass on the two source rows, then a vertical blend.
                        for (dst, h) in [(&mut r0, h0), (&mut r1, h1)] {
                            let src = &plane[h * iw..(h + 1) * iw];
                            for (v, &(w0, w1, fw)) in dst.iter_mut().zip(&wc) {
                                *v = src[w0] * (1.0 - fw) + src[w1] * fw;
                            }
                        }
                        for ((o, &a), &b) in orow.iter_mut().zip(&r0).zip(&r1) {
                            *o = a * (1.0 - fh) + b * fh;
                        }
                    }
                }
            });
            Ok(())
        }
    }
}
