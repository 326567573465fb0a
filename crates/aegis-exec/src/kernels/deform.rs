//! `DeformConv` (2-D): a convolution whose taps sample the input at learned fractional
//! offsets (bilinear, zero outside the image), optionally scaled by a mask.
//!
//! Per image and group the sampled taps form a column matrix `[C/group * kh * kw, oh * ow]`
//! (the offsets differ per output position, so no input element is shared between columns),
//! and the host GEMM multiplies the group's filter rows into it, on top of the bias.
//! Determinism: the samples are computed in a fixed order and the GEMM tiles depend on the
//! shapes only.

use super::error::{check_len, KernelError, KernelResult};
use super::matmul::{gemm_tiled, Operand};

/// A `DeformConv` node's geometry (2-D).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeformSpec {
    /// Kernel extents `[kh, kw]`.
    pub kernel: [usize; 2],
    /// `[top, left, bottom, right]`.
    pub pads: [usize; 4],
    /// `[sh, sw]`.
    pub strides: [usize; 2],
    /// `[dh, dw]`.
    pub dilations: [usize; 2],
    /// Filter groups.
    pub group: usize,
    /// Groups of input channels sharing one set of offsets (and mask).
    pub offset_group: usize,
}

impl DeformSpec {
    /// Output extents for an `ih x iw` input, `None` when the kernel does not fit.
    pub fn output(&self, ih: usize, iw: usize) -> Option<[usize; 2]> {
        let out = |i: usize, p0: usize, p1: usize, k: usize, d: usize, s: usize| {
            let span = d * (k.checked_sub(1)?) + 1;
            Some((i + p0 + p1).checked_sub(span)? / s + 1)
        };
        Some([
            out(
                ih,
                self.pads[0],
                self.pads[2],
                self.kernel[0],
                self.dilations[0],
                self.strides[0],
            )?,
            out(
                iw,
                self.pads[1],
                self.pads[3],
                self.kernel[1],
                self.dilations[1],
                self.strides[1],
            )?,
        ])
    }
}

/// The operands of [`deform_conv`].
#[derive(Debug, Clone, Copy)]
pub struct DeformArgs<'a> {
    /// `[N, C, H, W]`.
    pub x: &'a [f32],
    /// `x`'s shape.
    pub x_shape: [usize; 4],
    /// `[OC, C / group, kh, kw]`.
    pub w: &'a [f32],
    /// `[N, offset_group * 2 * kh * kw, oh, ow]`: per tap, a (y, x) pair.
    pub offset: &'a [f32],
    /// `[OC]`.
    pub bias: Option<&'a [f32]>,
    /// `[N, offset_group * kh * kw, oh, ow]`.
    pub mask: Option<&'a [f32]>,
}

/// `DeformConv` into `out` (`[N, OC, oh, ow]`), using at most `threads` for the GEMMs.
///
/// # Errors
/// Length mismatches or inconsistent channel counts.
pub fn deform_conv(
    a: &DeformArgs<'_>,
    spec: &DeformSpec,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "DeformConv";
    let [n, c, ih, iw] = a.x_shape;
    let [kh, kw] = spec.kernel;
    let taps = kh * kw;
    let [oh, ow] = spec
        .output(ih, iw)
        .ok_or_else(|| KernelError::InvalidAttribute {
            op: OP,
            attr: "kernel_shape",
            reason: format!("{spec:?} does not fit a {ih}x{iw} input"),
        })?;
    let (g, og) = (spec.group, spec.offset_group);
    if g == 0 || og == 0 || c % g != 0 || c % og != 0 || taps == 0 {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "group",
            reason: format!("{c} channels in {g} groups and {og} offset groups"),
        });
    }
    let cg = c / g;
    let kdim = cg * taps;
    let oc = a.w.len() / kdim.max(1);
    if !oc.is_multiple_of(g) {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "group",
            reason: format!("{oc} output channels in {g} groups"),
        });
    }
    let ocg = oc / g;
    let p = oh * ow;
    check_len(OP, "X", a.x.len(), n * c * ih * iw)?;
    check_len(OP, "W", a.w.len(), oc * kdim)?;
    check_len(OP, "offset", a.offset.len(), n * og * 2 * taps * p)?;
    if let Some(b) = a.bias {
        check_len(OP, "B", b.len(), oc)?;
    }
    if let Some(m) = a.mask {
        check_len(OP, "mask", m.len(), n * og * taps * p)?;
    }
    check_len(OP, "Y", out.len(), n * oc * p)?;
    let per_og = c / og;
    let mut col = vec![0.0f32; kdim * p];
    for b in 0..n {
        for gi in 0..g {
            for (row, dst) in col.chunks_exact_mut(p).enumerate() {
                let (cl, t) = (row / taps, row % taps);
                let ch = gi * cg + cl;
                let o = ch / per_og;
                let plane = &a.x[(b * c + ch) * ih * iw..(b * c + ch + 1) * ih * iw];
                let (ki, kj) = (t / kw, t % kw);
                let dy = &a.offset[((b * og + o) * 2 * taps + 2 * t) * p..][..p];
                let dx = &a.offset[((b * og + o) * 2 * taps + 2 * t + 1) * p..][..p];
                let m = a.mask.map(|m| &m[((b * og + o) * taps + t) * p..][..p]);
                for (q, v) in dst.iter_mut().enumerate() {
                    let (i, j) = (q / ow, q % ow);
                    let y = (i * spec.strides[0] + ki * spec.dilations[0]) as f32
                        - spec.pads[0] as f32
                        + dy[q];
                    let x = (j * spec.strides[1] + kj * spec.dilations[1]) as f32
                        - spec.pads[1] as f32
                        + dx[q];
                    *v = sample(plane, ih, iw, y, x) * m.map_or(1.0, |m| m[q]);
                }
            }
            let dst = &mut out[(b * oc + gi * ocg) * p..(b * oc + (gi + 1) * ocg) * p];
            for (co, row) in dst.chunks_exact_mut(p).enumerate() {
                row.fill(a.bias.map_or(0.0, |bias| bias[gi * ocg + co]));
            }
            gemm_tiled(
                OP,
                ocg,
                p,
                kdim,
                Operand {
                    data: &a.w[gi * ocg * kdim..(gi + 1) * ocg * kdim],
                    rs: kdim,
                    cs: 1,
                },
                Operand {
                    data: &col,
                    rs: p,
                    cs: 1,
                },
                dst,
                true,
                1.0,
                threads,
            )?;
        }
    }
    Ok(())
}

/// Bilinear sample of an `h x w` plane at `(y, x)`, corners outside the plane reading 0.
fn sample(plane: &[f32], h: usize, w: usize, y: f32, x: f32) -> f32 {
    if !(y > -1.0 && x > -1.0 && y < h as f32 && x < w as f32) {
        return 0.0;
    }
    let (y0, x0) = (y.floor(), x.floor());
    let (ly, lx) = (y - y0, x - x0);
    let at = |yy: f32, xx: f32| -> f32 {
        if yy >= 0.0 && xx >= 0.0 && (yy as usize) < h && (xx as usize) < w {
            plane[yy as usize * w + xx as usize]
        } else {
            0.0
        }
    };
    (1.0 - ly) * (1.0 - lx) * at(y0, x0)
        + (1.0 - ly) * lx * at(y0, x0 + 1.0)
        + ly * (1.0 - lx) * at(y0 + 1.0, x0)
        + ly * lx * at(y0 + 1.0, x0 + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeformSpec {
        DeformSpec {
            kernel: [2, 2],
            pads: [0; 4],
            strides: [1, 1],
            dilations: [1, 1],
            group: 1,
            offset_group: 1,
        }
    }

    #[test]
    fn zero_offsets_are_an_ordinary_convolution() {
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let w = [1.0f32, 2.0, 3.0, 4.0];
        let offset = [0.0f32; 8 * 4];
        let mut out = [0.0; 4];
        let a = DeformArgs {
            x: &x,
            x_shape: [1, 1, 3, 3],
            w: &w,
            offset: &offset,
            bias: Some(&[0.5]),
            mask: None,
        };
        deform_conv(&a, &spec(), &mut out, 1).unwrap();
        // out[i][j] = x[i][j] + 2x[i][j+1] + 3x[i+1][j] + 4x[i+1][j+1] + 0.5
        let want: Vec<f32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|&(i, j)| {
                let v = |r: usize, c: usize| x[r * 3 + c];
                v(i, j) + 2.0 * v(i, j + 1) + 3.0 * v(i + 1, j) + 4.0 * v(i + 1, j + 1) + 0.5
            })
            .collect();
        assert_eq!(out.to_vec(), want);
    }

    #[test]
    fn offsets_sample_between_pixels_and_outside_reads_zero() {
        let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
        // A 1x1 kernel with its tap moved by (0.5, 0.25) at position 0 and by (-3, 0) at
        // position 1; a mask of 0.5 everywhere.
        let s = DeformSpec {
            kernel: [1, 1],
            ..spec()
        };
        let mut offset = [0.0f32; 2 * 9];
        offset[0] = 0.5; // dy at (0, 0)
        offset[9] = 0.25; // dx at (0, 0)
        offset[1] = -3.0; // dy at (0, 1)
        let mask = [0.5f32; 9];
        let mut out = [0.0; 9];
        let a = DeformArgs {
            x: &x,
            x_shape: [1, 1, 3, 3],
            w: &[1.0],
            offset: &offset,
            bias: None,
            mask: Some(&mask),
        };
        deform_conv(&a, &s, &mut out, 1).unwrap();
        // (0.5, 0.25) on x[r][c] = 3r + c: 1.5 + 0.25, halved by the mask.
        assert!((out[0] - 0.875).abs() < 1e-6, "{}", out[0]);
        assert_eq!(out[1], 0.0);
        assert_eq!(out[4], 2.0);
    }
}
