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

/// Input coordinate of output index `o` along one axis (ONNX `coordinate_transformation_mode`);
/// shared with the CUDA lowering, which precomputes its tables with it.
pub(crate) fn original_coord(
    ct: CoordTransform,
    o: usize,
    scale: f32,
    in_len: usize,
    out_len: usize,
) -> f32 {
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

/// Input index nearest to coordinate `x` (ONNX `nearest_mode`), clamped to the axis.
pub(crate) fn nearest_index(mode: NearestMode, x: f32, in_len: usize) -> usize {
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

/// Both Resize kernels' argument check: one output extent and one positive scale per input
/// axis. Returns the rank.
fn check_axes(x_shape: &[usize], out_shape: &[usize], scales: &[f32]) -> KernelResult<usize> {
    let rank = x_shape.len();
    if out_shape.len() != rank || scales.len() != rank || rank == 0 {
        return Err(invalid(
            "Resize",
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
            "Resize",
            "scales",
            format!("{scales:?} must be positive"),
        ));
    }
    Ok(rank)
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
    let rank = check_axes(x_shape, out_shape, scales)?;
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

/// Interpolation filter of [`resize_filtered`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResizeFilter {
    /// Linear (triangle) filter.
    Linear,
    /// Keys cubic convolution with coefficient `a` (ONNX `cubic_coeff_a`, default -0.75).
    Cubic {
        /// The cubic coefficient.
        a: f32,
    },
}

/// Coordinate mapping of [`resize_filtered`]: one of the ordinary transforms, or
/// `tf_crop_and_resize` with its region of interest.
#[derive(Debug, Clone, PartialEq)]
pub enum FilteredCoord {
    /// As in [`resize`].
    Transform(CoordTransform),
    /// `tf_crop_and_resize`: `roi` is `[starts..., ends...]` over every axis (normalised
    /// coordinates); outputs mapping outside the input take `extrapolation_value`.
    TfCropAndResize {
        /// `[starts..., ends...]`, `2 * rank` values.
        roi: Vec<f32>,
        /// Value of outputs outside the input.
        extrapolation_value: f32,
    },
}

/// Options of [`resize_filtered`].
#[derive(Debug, Clone, PartialEq)]
pub struct FilteredResize {
    /// Interpolation filter.
    pub filter: ResizeFilter,
    /// Coordinate mapping.
    pub coord: FilteredCoord,
    /// Widen the filter by `1 / scale` when downsampling (ONNX `antialias`).
    pub antialias: bool,
    /// Give samples outside the input weight 0 and renormalise (ONNX `exclude_outside`).
    pub exclude_outside: bool,
}

/// One output position along one axis: `(input index, weight)` taps, and whether it maps
/// outside the input (`tf_crop_and_resize` only).
type AxisTaps = (Vec<(usize, f32)>, bool);

/// Filter coefficients for `ratio` in `(0, 1]` (the distance from the sample left of the
/// mapped coordinate), as ONNX's reference computes them.
fn filter_coeffs(filter: ResizeFilter, ratio: f64, scale: f64, antialias: bool) -> Vec<f64> {
    let normalised = |c: Vec<f64>| {
        let s: f64 = c.iter().sum();
        if s == 0.0 {
            c
        } else {
            c.into_iter().map(|v| v / s).collect()
        }
    };
    match (filter, antialias) {
        (ResizeFilter::Linear, false) => vec![1.0 - ratio, ratio],
        (ResizeFilter::Cubic { a }, false) => {
            let a = f64::from(a);
            let (r, q) = (ratio, 1.0 - ratio);
            vec![
                ((a * (r + 1.0) - 5.0 * a) * (r + 1.0) + 8.0 * a) * (r + 1.0) - 4.0 * a,
                ((a + 2.0) * r - (a + 3.0)) * r * r + 1.0,
                ((a + 2.0) * q - (a + 3.0)) * q * q + 1.0,
                ((a * (q + 1.0) - 5.0 * a) * (q + 1.0) + 8.0 * a) * (q + 1.0) - 4.0 * a,
            ]
        }
        (ResizeFilter::Linear, true) => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            normalised(
                (start..start + footprint)
                    .map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0))
                    .collect(),
            )
        }
        (ResizeFilter::Cubic { a }, true) => {
            let a = f64::from(a);
            let s = scale.min(1.0);
            let cubic = |x: f64| {
                let x = x.abs();
                if x <= 1.0 {
                    (a + 2.0) * x * x * x - (a + 3.0) * x * x + 1.0
                } else if x < 2.0 {
                    a * x * x * x - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                } else {
                    0.0
                }
            };
            let start = (-2.0 / s).floor() as i64 + 1;
            let end = 2 - start;
            normalised(
                (start..end)
                    .map(|i| cubic(s * (i as f64 - ratio)))
                    .collect(),
            )
        }
    }
}

/// The taps of every output position along one axis.
#[allow(clippy::too_many_arguments)]
fn axis_taps(
    opts: &FilteredResize,
    in_len: usize,
    out_len: usize,
    scale: f32,
    roi: Option<(f32, f32)>,
) -> Vec<AxisTaps> {
    let (n_in, s) = (in_len as f64, f64::from(scale));
    // ONNX's reference measures the resized extent unrounded.
    let resized = s * n_in;
    (0..out_len)
        .map(|o| {
            let x = o as f64;
            let (xo, outside) = match (&opts.coord, roi) {
                (FilteredCoord::TfCropAndResize { .. }, Some((r0, r1))) => {
                    let (r0, r1) = (f64::from(r0), f64::from(r1));
                    let xo = if out_len == 1 {
                        (r1 - r0) * (n_in - 1.0) / 2.0
                    } else {
                        x * (r1 - r0) * (n_in - 1.0) / (resized - 1.0)
                    } + r0 * (n_in - 1.0);
                    (xo, xo < 0.0 || xo > n_in - 1.0)
                }
                (FilteredCoord::Transform(ct), _) => {
                    let xo = match ct {
                        CoordTransform::HalfPixel => (x + 0.5) / s - 0.5,
                        CoordTransform::HalfPixelSymmetric => {
                            let adj = out_len as f64 / resized;
                            n_in / 2.0 * (1.0 - adj) + (x + 0.5) / s - 0.5
                        }
                        CoordTransform::PytorchHalfPixel if out_len > 1 => (x + 0.5) / s - 0.5,
                        CoordTransform::PytorchHalfPixel => 0.0,
                        CoordTransform::AlignCorners if out_len == 1 || resized <= 1.0 => 0.0,
                        CoordTransform::AlignCorners => x * (n_in - 1.0) / (resized - 1.0),
                        CoordTransform::Asymmetric => x / s,
                        CoordTransform::TfHalfPixelForNearest => (x + 0.5) / s,
                    };
                    (xo, false)
                }
                // tf_crop_and_resize without a region: the whole input.
                (FilteredCoord::TfCropAndResize { .. }, None) => (x * (n_in - 1.0), false),
            };
            // The sample left of `xo` is `left`; `ratio` is in (0, 1].
            let left = xo.ceil() - 1.0;
            let ratio = xo - left;
            let mut coeffs = filter_coeffs(opts.filter, ratio, s, opts.antialias);
            let n = coeffs.len() as i64;
            let m = n / 2;
            let hi = in_len as i64 - 1;
            // The n nearest samples of the edge-padded input (padding m on each side).
            let start = ((left as i64) - m + 1).clamp(-m, (hi + 1 + m - n).max(-m));
            if opts.exclude_outside {
                for (k, c) in coeffs.iter_mut().enumerate() {
                    let j = start + k as i64;
                    if j < 0 || j > hi {
                        *c = 0.0;
                    }
                }
                let sum: f64 = coeffs.iter().sum();
                if sum != 0.0 {
                    coeffs.iter_mut().for_each(|c| *c /= sum);
                }
            }
            let mut taps: Vec<(usize, f32)> = Vec::with_capacity(coeffs.len());
            for (k, &c) in coeffs.iter().enumerate() {
                let j = (start + k as i64).clamp(0, hi.max(0)) as usize;
                match taps.iter_mut().find(|(i, _)| *i == j) {
                    Some(t) => t.1 += c as f32,
                    None => taps.push((j, c as f32)),
                }
            }
            (taps, outside)
        })
        .collect()
}

/// ONNX `Resize` with a general separable filter: linear or cubic on any axes, `antialias`,
/// `exclude_outside` and `tf_crop_and_resize`. Axes are filtered one after the other (the
/// filters are separable); each output is a fixed-order sum, so results do not depend on
/// `threads`.
///
/// # Errors
/// Rank mismatches, non-positive scales, a `roi` of the wrong length, or length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn resize_filtered(
    x: &[f32],
    x_shape: &[usize],
    out_shape: &[usize],
    scales: &[f32],
    opts: &FilteredResize,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Resize";
    let rank = check_axes(x_shape, out_shape, scales)?;
    let roi = match &opts.coord {
        FilteredCoord::TfCropAndResize { roi, .. } if roi.len() != 2 * rank => {
            return Err(invalid(
                OP,
                "roi",
                format!("{} values for rank {rank}", roi.len()),
            ))
        }
        FilteredCoord::TfCropAndResize { roi, .. } => Some(roi.as_slice()),
        FilteredCoord::Transform(_) => None,
    };
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
    let taps: Vec<Vec<AxisTaps>> = (0..rank)
        .map(|d| {
            let r = roi.map(|r| (r[d], r[rank + d]));
            axis_taps(opts, x_shape[d], out_shape[d], scales[d], r)
        })
        .collect();
    let identity = |d: usize| {
        x_shape[d] == out_shape[d]
            && taps[d]
                .iter()
                .enumerate()
                .all(|(o, (t, outside))| !outside && t.len() == 1 && t[0] == (o, 1.0))
    };
    let mut cur = x.to_vec();
    let mut shape = x_shape.to_vec();
    for d in (0..rank).filter(|&d| !identity(d)) {
        let outer: usize = shape[..d].iter().product();
        let inner: usize = shape[d + 1..].iter().product();
        let (len_in, len_out) = (shape[d], out_shape[d]);
        let mut next = vec![0.0f32; outer * len_out * inner];
        let axis = &taps[d];
        par_chunks(&mut next, len_out * inner, threads, 1, |first, piece| {
            for (k, dst_block) in piece.chunks_mut(len_out * inner).enumerate() {
                let src = &cur[(first + k) * len_in * inner..(first + k + 1) * len_in * inner];
                for (dst, (t, _)) in dst_block.chunks_mut(inner).zip(axis) {
                    for &(j, w) in t {
                        let row = &src[j * inner..(j + 1) * inner];
                        for (o, &v) in dst.iter_mut().zip(row) {
                            *o += w * v;
                        }
                    }
                }
            }
        });
        cur = next;
        shape[d] = len_out;
    }
    out.copy_from_slice(&cur);
    if let FilteredCoord::TfCropAndResize {
        extrapolation_value,
        ..
    } = &opts.coord
    {
        if taps.iter().any(|a| a.iter().any(|(_, o)| *o)) {
            let mut idx = vec![0usize; rank];
            for v in out.iter_mut() {
                if (0..rank).any(|d| taps[d][idx[d]].1) {
                    *v = *extrapolation_value;
                }
                for d in (0..rank).rev() {
                    idx[d] += 1;
                    if idx[d] < out_shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
    }
    Ok(())
}
