//! GridSample: every output point reads the input at the point its grid entry names
//! (normalised coordinates in `[-1, 1]`, last axis first), by nearest neighbour, linear or
//! cubic interpolation, with zeros, the border or a reflection beyond the edges. Follows the
//! ONNX specification's reference (PyTorch's `grid_sample`): for 1 to 3 spatial axes.

use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::par::par_chunks;

/// Interpolation of [`grid_sample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridMode {
    /// The nearest input point (coordinates rounded half to even).
    Nearest,
    /// Linear in every spatial axis (2 taps per axis).
    Linear,
    /// Keys' cubic convolution with `a = -0.75` in every spatial axis (4 taps per axis).
    Cubic,
}

/// What [`grid_sample`] reads outside the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridPadding {
    /// Zeros.
    Zeros,
    /// The nearest border value (coordinates clamped).
    Border,
    /// The input reflected at its borders (coordinates reflected until inside).
    Reflection,
}

/// Most spatial axes [`grid_sample`] takes.
const MAX_AXES: usize = 3;

/// ONNX GridSample: `x [N, C, D1..Dr]`, `grid [N, O1..Or, r]` (entry `r - 1 - i` is the
/// normalised coordinate on spatial axis `i`), `out [N, C, O1..Or]`.
///
/// # Errors
/// More than 3 or no spatial axes, or shape and length mismatches.
#[allow(clippy::too_many_arguments)]
pub fn grid_sample(
    x: &[f32],
    x_shape: &[usize],
    grid: &[f32],
    grid_shape: &[usize],
    mode: GridMode,
    padding: GridPadding,
    align_corners: bool,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "GridSample";
    let r = x_shape.len().saturating_sub(2);
    if r == 0 || r > MAX_AXES {
        return Err(invalid(
            OP,
            "X",
            format!("shape {x_shape:?} (1 to 3 spatial axes)"),
        ));
    }
    if grid_shape.len() != r + 2 || grid_shape[0] != x_shape[0] || grid_shape[r + 1] != r {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: grid_shape.to_vec(),
        });
    }
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "grid", grid.len(), numel(OP, grid_shape)?)?;
    let (n, c) = (x_shape[0], x_shape[1]);
    let dims = &x_shape[2..];
    let plane: usize = dims.iter().product();
    let points: usize = grid_shape[1..=r].iter().product();
    check_len(OP, "Y", out.len(), n * c * points)?;
    if out.is_empty() {
        return Ok(());
    }
    // Row-major strides of the spatial axes.
    let mut stride = [0usize; MAX_AXES];
    let mut s = 1;
    for i in (0..r).rev() {
        stride[i] = s;
        s *= dims[i];
    }
    let s = Sampler {
        dims,
        stride,
        mode,
        padding,
        align_corners,
    };
    // One `(n, c)` output plane per chunk; each point's taps are found per plane (cheap next
    // to reading them for one channel).
    par_chunks(out, points, threads, 1, |first, piece| {
        for (pi, oplane) in piece.chunks_mut(points).enumerate() {
            let nc = first + pi;
            let b = nc / c;
            let xplane = &x[nc * plane..(nc + 1) * plane];
            let g = &grid[b * points * r..(b + 1) * points * r];
            for (o, gp) in oplane.iter_mut().zip(g.chunks_exact(r)) {
                *o = s.sample(xplane, gp);
            }
        }
    });
    Ok(())
}

/// ONNX AffineGrid: for each of the `N` affine matrices `theta` (`[N, 2, 3]` for 2-D,
/// `[N, 3, 4]` for 3-D), the sampling grid `[N, (D,) H, W, r]` of the output points'
/// normalised coordinates (`x` first) mapped through it, for [`grid_sample`].
///
/// # Errors
/// `spatial` of other than 2 or 3 axes, or length mismatches.
pub fn affine_grid(
    theta: &[f32],
    n: usize,
    spatial: &[usize],
    align_corners: bool,
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "AffineGrid";
    let r = spatial.len();
    if r != 2 && r != 3 {
        return Err(invalid(OP, "size", format!("{r} spatial axes (2 or 3)")));
    }
    check_len(OP, "theta", theta.len(), n * r * (r + 1))?;
    let points: usize = spatial.iter().product();
    check_len(OP, "grid", out.len(), n * points * r)?;
    // The base coordinate of index `i` on an axis of `d` points.
    let base = |i: usize, d: usize| -> f32 {
        if align_corners {
            if d <= 1 {
                -1.0
            } else {
                -1.0 + 2.0 * i as f32 / (d - 1) as f32
            }
        } else {
            -1.0 + (2 * i + 1) as f32 / d as f32
        }
    };
    for (b, grid) in out.chunks_exact_mut(points * r).enumerate() {
        let th = &theta[b * r * (r + 1)..(b + 1) * r * (r + 1)];
        for (p, g) in grid.chunks_exact_mut(r).enumerate() {
            // Homogeneous coordinates, `x` (last axis) first.
            let mut hom = [1.0f32; 4];
            let mut rest = p;
            for (k, &d) in spatial.iter().enumerate().rev() {
                hom[r - 1 - k] = base(rest % d, d);
                rest /= d;
            }
            for (row, o) in g.iter_mut().enumerate() {
                let coeffs = &th[row * (r + 1)..(row + 1) * (r + 1)];
                *o = coeffs.iter().zip(&hom).map(|(c, h)| c * h).sum();
            }
        }
    }
    Ok(())
}

struct Sampler<'a> {
    dims: &'a [usize],
    stride: [usize; MAX_AXES],
    mode: GridMode,
    padding: GridPadding,
    align_corners: bool,
}

impl Sampler<'_> {
    /// The interpolated value at grid entry `gp` (normalised, last axis first).
    fn sample(&self, xplane: &[f32], gp: &[f32]) -> f32 {
        let r = self.dims.len();
        // Per axis: up to 4 (flat offset or none for a zero, weight) taps; an axis past the
        // input's spatial axes has one tap at offset 0 of weight 1.
        let mut taps = [[(Some(0), 1.0f32); 4]; MAX_AXES];
        let mut count = [1usize; MAX_AXES];
        for i in 0..r {
            let d = self.dims[i];
            let (lo, hi) = if self.align_corners {
                (0.0, d as f32 - 1.0)
            } else {
                (-0.5, d as f32 - 0.5)
            };
            let g = gp[r - 1 - i];
            let mut v = if self.align_corners {
                (g + 1.0) / 2.0 * (d as f32 - 1.0)
            } else {
                ((g + 1.0) * d as f32 - 1.0) / 2.0
            };
            if self.mode == GridMode::Nearest {
                v = v.round_ties_even();
            }
            if v < lo || v > hi {
                match self.padding {
                    GridPadding::Border => v = v.clamp(0.0, d as f32 - 1.0),
                    GridPadding::Reflection => v = reflect(v, lo, hi),
                    // Every tap this far out reads a zero either way; the bound keeps the
                    // tap indices far from i64's limits (a grid value of 1e30).
                    GridPadding::Zeros => v = v.clamp(-4.0 - d as f32, d as f32 + 4.0),
                }
            }
            let at = |t: i64| self.index(t, i, lo, hi);
            match self.mode {
                GridMode::Nearest => {
                    taps[i][0] = (at(v as i64), 1.0);
                }
                GridMode::Linear => {
                    let x0 = v.floor();
                    let f = v - x0;
                    let x0 = x0 as i64;
                    taps[i][0] = (at(x0), 1.0 - f);
                    taps[i][1] = (at(x0 + 1), f);
                    count[i] = 2;
                }
                GridMode::Cubic => {
                    let x0 = v.floor();
                    let w = cubic_coeffs(v - x0);
                    let x0 = x0 as i64;
                    for (t, wt) in w.iter().enumerate() {
                        taps[i][t] = (at(x0 - 1 + t as i64), *wt);
                    }
                    count[i] = 4;
                }
            }
        }
        // Separable: the last axis innermost, then outwards (the reference's order).
        let mut acc = 0.0f32;
        for &(o0, w0) in &taps[0][..count[0]] {
            let mut a1 = 0.0f32;
            for &(o1, w1) in &taps[1][..count[1]] {
                let mut a2 = 0.0f32;
                for &(o2, w2) in &taps[2][..count[2]] {
                    let v = match (o0, o1, o2) {
                        (Some(a), Some(b), Some(c)) => xplane[a + b + c],
                        _ => 0.0,
                    };
                    a2 += w2 * v;
                }
                a1 += w1 * a2;
            }
            acc += w0 * a1;
        }
        acc
    }

    /// The flat offset of index `t` on spatial axis `i` (unused axes: offset 0), or `None`
    /// for a zero read outside the input.
    fn index(&self, t: i64, i: usize, lo: f32, hi: f32) -> Option<usize> {
        let d = self.dims[i] as i64;
        let t = match self.padding {
            GridPadding::Zeros => t,
            GridPadding::Border => t.clamp(0, d - 1),
            // Truncation toward zero, as the reference's `int()`.
            GridPadding::Reflection => reflect(t as f32, lo, hi) as i64,
        };
        (0..d).contains(&t).then(|| t as usize * self.stride[i])
    }
}

/// Reflects `x` at the borders `lo` and `hi` until it lies between them.
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    let rng = hi - lo;
    if rng <= 0.0 {
        return lo;
    }
    let (dx, from_lo) = if x < lo {
        (lo - x, true)
    } else if x > hi {
        (x - hi, false)
    } else {
        return x;
    };
    let n = (dx / rng).trunc();
    let r = dx - n * rng;
    // An even number of whole ranges lands back on the side it left from.
    if (n as i64 % 2 == 0) == from_lo {
        lo + r
    } else {
        hi - r
    }
}

/// Keys' cubic convolution weights of the taps at `-1, 0, 1, 2` for a fraction `t`.
fn cubic_coeffs(t: f32) -> [f32; 4] {
    const A: f32 = -0.75;
    let x = t.abs();
    [
        ((A * (x + 1.0) - 5.0 * A) * (x + 1.0) + 8.0 * A) * (x + 1.0) - 4.0 * A,
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0,
        ((A + 2.0) * (1.0 - x) - (A + 3.0)) * (1.0 - x) * (1.0 - x) + 1.0,
        ((A * (2.0 - x) - 5.0 * A) * (2.0 - x) + 8.0 * A) * (2.0 - x) - 4.0 * A,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The grid of every input point's own coordinates (align_corners): `[1, h, w, 2]`.
    fn identity_grid(h: usize, w: usize) -> Vec<f32> {
        let norm = |i: usize, d: usize| 2.0 * i as f32 / (d - 1) as f32 - 1.0;
        (0..h)
            .flat_map(|y| (0..w).flat_map(move |x| [norm(x, w), norm(y, h)]))
            .collect()
    }

    #[test]
    fn every_mode_reproduces_the_input_on_its_own_points() {
        let x: Vec<f32> = (0..2 * 3 * 4).map(|i| (i * 5 % 7) as f32 - 3.0).collect();
        let grid = identity_grid(3, 4);
        for mode in [GridMode::Nearest, GridMode::Linear, GridMode::Cubic] {
            for padding in [
                GridPadding::Zeros,
                GridPadding::Border,
                GridPadding::Reflection,
            ] {
                let mut out = vec![0.0; x.len()];
                grid_sample(
                    &x,
                    &[1, 2, 3, 4],
                    &grid,
                    &[1, 3, 4, 2],
                    mode,
                    padding,
                    true,
                    &mut out,
                    2,
                )
                .unwrap();
                for (o, v) in out.iter().zip(&x) {
                    assert!((o - v).abs() < 1e-5, "{mode:?} {padding:?}: {o} vs {v}");
                }
            }
        }
    }

    #[test]
    fn the_identity_affine_grid_samples_the_input_back() {
        let theta = [1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0];
        let mut grid = vec![0.0; 3 * 4 * 2];
        affine_grid(&theta, 1, &[3, 4], true, &mut grid).unwrap();
        assert_eq!(grid, identity_grid(3, 4));
        // Without align_corners the points are the cells' centres.
        affine_grid(&theta, 1, &[3, 4], false, &mut grid).unwrap();
        for (g, w) in grid.iter().zip([-0.75, -2.0 / 3.0, -0.25, -2.0 / 3.0]) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let mut out = vec![0.0; 12];
        grid_sample(
            &x,
            &[1, 1, 3, 4],
            &grid,
            &[1, 3, 4, 2],
            GridMode::Linear,
            GridPadding::Zeros,
            false,
            &mut out,
            1,
        )
        .unwrap();
        for (o, v) in out.iter().zip(&x) {
            assert!((o - v).abs() < 1e-5, "{o} vs {v}");
        }
        assert!(affine_grid(&theta, 1, &[4], true, &mut grid).is_err());
    }

    #[test]
    fn outside_points_read_zeros_the_border_or_a_reflection() {
        // A 1-D input [0, 10, 20] read half a cell past its right edge.
        let x = [0.0f32, 10.0, 20.0];
        let at = |g: f32, padding| {
            let mut out = [0.0f32];
            grid_sample(
                &x,
                &[1, 1, 3],
                &[g],
                &[1, 1, 1],
                GridMode::Linear,
                padding,
                true,
                &mut out,
                1,
            )
            .unwrap();
            out[0]
        };
        // Normalised 1.5 is index 2.5 (align_corners: (g + 1) / 2 * 2).
        assert_eq!(
            at(1.5, GridPadding::Zeros),
            10.0,
            "half of 20, half of a zero"
        );
        assert_eq!(at(1.5, GridPadding::Border), 20.0);
        // Reflected at 2: index 1.5, between 10 and 20.
        assert_eq!(at(1.5, GridPadding::Reflection), 15.0);
        // Points absurdly far out read zeros or the border, without overflow.
        for g in [1e30, -1e30, f32::MAX] {
            assert_eq!(at(g, GridPadding::Zeros), 0.0);
            assert_eq!(
                at(g.min(1e30), GridPadding::Border),
                if g > 0.0 { 20.0 } else { 0.0 }
            );
        }
        assert!(grid_sample(
            &x,
            &[1, 1, 3],
            &[0.0, 0.0],
            &[1, 1, 2],
            GridMode::Linear,
            GridPadding::Zeros,
            true,
            &mut [0.0],
            1
        )
        .is_err());
    }
}
