//! `Col2Im` (sliding blocks summed back into an image: `torch.nn.Fold`) and `RoiAlign`
//! (regions of a feature map pooled to a fixed grid by bilinear sampling).
//!
//! Determinism: both are single-threaded passes in a fixed order.

use super::error::{check_len, KernelError, KernelResult};

/// A `Col2Im` node's geometry (every list has one entry per spatial axis).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Col2ImSpec {
    /// The image's spatial extents.
    pub image: Vec<usize>,
    /// The block's extents.
    pub block: Vec<usize>,
    /// Dilation per axis.
    pub dilations: Vec<usize>,
    /// `[begins..., ends...]`.
    pub pads: Vec<usize>,
    /// Stride per axis.
    pub strides: Vec<usize>,
}

impl Col2ImSpec {
    /// Block positions along each axis, `None` when a block does not fit.
    pub fn positions(&self) -> Option<Vec<usize>> {
        let n = self.image.len();
        (0..n)
            .map(|i| {
                let span = self.dilations[i] * (self.block[i].checked_sub(1)?) + 1;
                let padded = self.image[i] + self.pads[i] + self.pads[n + i];
                let room = padded.checked_sub(span)?;
                Some(room / self.strides[i] + 1)
            })
            .collect()
    }
}

/// `Col2Im`: `x` is `[N, C * prod(block), L]` with `L` the number of block positions; `out`
/// is `[N, C, image...]`, each element the sum of the block entries that land on it.
///
/// # Errors
/// Length mismatches or a geometry where no block fits.
pub fn col2im(
    x: &[f32],
    x_shape: &[usize],
    spec: &Col2ImSpec,
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "Col2Im";
    let invalid = |reason: String| KernelError::InvalidAttribute {
        op: OP,
        attr: "image_shape",
        reason,
    };
    let positions = spec
        .positions()
        .ok_or_else(|| invalid(format!("no block fits: {spec:?}")))?;
    let &[n, cb, l] = x_shape else {
        return Err(invalid(format!(
            "input of shape {x_shape:?}: expected [N, C*block, L]"
        )));
    };
    let bsize: usize = spec.block.iter().product();
    let npos: usize = positions.iter().product();
    if bsize == 0 || cb % bsize != 0 || l != npos {
        return Err(invalid(format!(
            "input of shape {x_shape:?} for blocks {:?} at {positions:?} positions",
            spec.block
        )));
    }
    let c = cb / bsize;
    let isize: usize = spec.image.iter().product();
    check_len(OP, "input", x.len(), n * cb * l)?;
    check_len(OP, "output", out.len(), n * c * isize)?;
    out.fill(0.0);
    let rank = spec.image.len();
    let mut kidx = vec![0usize; rank];
    let mut pidx = vec![0usize; rank];
    for img in 0..n * c {
        let src = &x[img * bsize * l..(img + 1) * bsize * l];
        let dst = &mut out[img * isize..(img + 1) * isize];
        for (k, row) in src.chunks_exact(l).enumerate() {
            unflatten(k, &spec.block, &mut kidx);
            for (p, &v) in row.iter().enumerate() {
                unflatten(p, &positions, &mut pidx);
                // The image element this block entry lands on, if inside the image.
                let mut at = 0usize;
                let mut inside = true;
                for a in 0..rank {
                    let coord = (pidx[a] * spec.strides[a] + kidx[a] * spec.dilations[a])
                        .checked_sub(spec.pads[a])
                        .filter(|&q| q < spec.image[a]);
                    match coord {
                        Some(q) => at = at * spec.image[a] + q,
                        None => {
                            inside = false;
                            break;
                        }
                    }
                }
                if inside {
                    dst[at] += v;
                }
            }
        }
    }
    Ok(())
}

/// `idx` = the row-major coordinates of flat index `flat` in `dims`.
fn unflatten(mut flat: usize, dims: &[usize], idx: &mut [usize]) {
    for (i, &d) in dims.iter().enumerate().rev() {
        idx[i] = flat % d;
        flat /= d;
    }
}

/// A `RoiAlign` node's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoiAlignSpec {
    /// Max instead of average of the samples.
    pub max: bool,
    /// Output grid.
    pub out_h: usize,
    /// Output grid.
    pub out_w: usize,
    /// Samples per bin and axis; 0: `ceil(roi extent / output extent)`.
    pub sampling_ratio: usize,
    /// Scale from ROI coordinates to the feature map's.
    pub spatial_scale: f32,
    /// `half_pixel` coordinates (opset 16's default): shift by -0.5 and allow ROIs under one
    /// pixel; otherwise ROIs are at least one pixel.
    pub half_pixel: bool,
}

/// `RoiAlign`: `x` `[N, C, H, W]`, `rois` `[R, 4]` (`x1, y1, x2, y2`), `batch` `[R]` into
/// `out` `[R, C, out_h, out_w]`, as the ONNX reference (and onnxruntime) computes it,
/// including its max mode: the largest of the samples' weighted corner values.
///
/// # Errors
/// Length mismatches or a batch index outside `[0, N)`.
pub fn roi_align(
    x: &[f32],
    x_shape: &[usize],
    rois: &[f32],
    batch: &[i64],
    spec: &RoiAlignSpec,
    out: &mut [f32],
) -> KernelResult<()> {
    const OP: &str = "RoiAlign";
    let &[n, c, h, w] = x_shape else {
        return Err(KernelError::InvalidAttribute {
            op: OP,
            attr: "X",
            reason: format!("shape {x_shape:?}: expected [N, C, H, W]"),
        });
    };
    let r = batch.len();
    let (oh, ow) = (spec.out_h, spec.out_w);
    check_len(OP, "X", x.len(), n * c * h * w)?;
    check_len(OP, "rois", rois.len(), r * 4)?;
    check_len(OP, "Y", out.len(), r * c * oh * ow)?;
    // Per sample of a bin: four corner offsets and weights.
    let mut samples: Vec<([usize; 4], [f32; 4])> = Vec::new();
    for (i, roi) in rois.chunks_exact(4).enumerate() {
        let b = usize::try_from(batch[i]).ok().filter(|&b| b < n).ok_or(
            KernelError::IndexOutOfRange {
                op: OP,
                index: batch[i],
                size: n,
            },
        )?;
        let off = if spec.half_pixel { 0.5 } else { 0.0 };
        let (x0, y0) = (
            roi[0] * spec.spatial_scale - off,
            roi[1] * spec.spatial_scale - off,
        );
        let (x1, y1) = (
            roi[2] * spec.spatial_scale - off,
            roi[3] * spec.spatial_scale - off,
        );
        let (mut rw, mut rh) = (x1 - x0, y1 - y0);
        if !spec.half_pixel {
            rw = rw.max(1.0);
            rh = rh.max(1.0);
        }
        let (bin_h, bin_w) = (rh / oh as f32, rw / ow as f32);
        let grid = |extent: f32, bins: usize| -> usize {
            if spec.sampling_ratio > 0 {
                spec.sampling_ratio
            } else {
                // Negative extents (a reversed ROI) sample nothing, as `int(ceil(..))` of a
                // negative number gives an empty range.
                (extent / bins as f32).ceil().max(0.0) as usize
            }
        };
        let (gh, gw) = (grid(rh, oh), grid(rw, ow));
        let count = (gh * gw).max(1) as f32;
        samples.clear();
        for ph in 0..oh {
            for pw in 0..ow {
                for iy in 0..gh {
                    let yy = y0 + ph as f32 * bin_h + (iy as f32 + 0.5) * bin_h / gh as f32;
                    for ix in 0..gw {
                        let xx = x0 + pw as f32 * bin_w + (ix as f32 + 0.5) * bin_w / gw as f32;
                        samples.push(bilinear(yy, xx, h, w));
                    }
                }
            }
        }
        let per_bin = gh * gw;
        for ch in 0..c {
            let plane = &x[(b * c + ch) * h * w..(b * c + ch + 1) * h * w];
            let dst = &mut out[(i * c + ch) * oh * ow..(i * c + ch + 1) * oh * ow];
            for (bin, o) in dst.iter_mut().enumerate() {
                let bin_samples = &samples[bin * per_bin..(bin + 1) * per_bin];
                *o = if spec.max {
                    bin_samples
                        .iter()
                        .map(|(pos, wt)| {
                            (0..4)
                                .map(|k| wt[k] * plane[pos[k]])
                                .fold(f32::NEG_INFINITY, f32::max)
                        })
                        .reduce(f32::max)
                        .unwrap_or(0.0)
                } else {
                    let s: f32 = bin_samples
                        .iter()
                        .map(|(pos, wt)| {
                            wt[0] * plane[pos[0]]
                                + wt[1] * plane[pos[1]]
                                + wt[2] * plane[pos[2]]
                                + wt[3] * plane[pos[3]]
                        })
                        .sum();
                    s / count
                };
            }
        }
    }
    Ok(())
}

/// The four corners and weights of a bilinear sample at `(y, x)` of an `h x w` plane (all
/// zero outside `[-1, h] x [-1, w]`).
fn bilinear(y: f32, x: f32, h: usize, w: usize) -> ([usize; 4], [f32; 4]) {
    if y < -1.0 || y > h as f32 || x < -1.0 || x > w as f32 || h == 0 || w == 0 {
        return ([0; 4], [0.0; 4]);
    }
    let (mut y, mut x) = (y.max(0.0), x.max(0.0));
    let (mut yl, mut xl) = (y as usize, x as usize);
    let yh = if yl >= h - 1 {
        yl = h - 1;
        y = yl as f32;
        yl
    } else {
        yl + 1
    };
    let xh = if xl >= w - 1 {
        xl = w - 1;
        x = xl as f32;
        xl
    } else {
        xl + 1
    };
    let (ly, lx) = (y - yl as f32, x - xl as f32);
    let (hy, hx) = (1.0 - ly, 1.0 - lx);
    (
        [yl * w + xl, yl * w + xh, yh * w + xl, yh * w + xh],
        [hy * hx, hy * lx, ly * hx, ly * lx],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn col2im_sums_overlapping_blocks() {
        // One channel, 2x2 blocks at stride 1 over a 3x3 image: 4 positions; every block
        // entry 1, so each pixel counts the blocks covering it.
        let spec = Col2ImSpec {
            image: vec![3, 3],
            block: vec![2, 2],
            dilations: vec![1, 1],
            pads: vec![0; 4],
            strides: vec![1, 1],
        };
        let x = [1.0f32; 16];
        let mut out = [0.0; 9];
        col2im(&x, &[1, 4, 4], &spec, &mut out).unwrap();
        assert_eq!(out, [1.0, 2.0, 1.0, 2.0, 4.0, 2.0, 1.0, 2.0, 1.0]);
        let e = col2im(&x, &[1, 4, 5], &spec, &mut out).unwrap_err();
        assert!(e.to_string().contains("positions"), "{e}");
    }

    #[test]
    fn roi_align_averages_bilinear_samples() {
        // A ramp x[i][j] = j: any sample's value is its x coordinate, so a bin's average is
        // its center's x (within the plane).
        let plane: Vec<f32> = (0..36).map(|v| (v % 6) as f32).collect();
        let spec = RoiAlignSpec {
            max: false,
            out_h: 1,
            out_w: 2,
            sampling_ratio: 2,
            spatial_scale: 1.0,
            half_pixel: false,
        };
        let mut out = [0.0; 2];
        roi_align(
            &plane,
            &[1, 1, 6, 6],
            &[1.0, 1.0, 5.0, 3.0],
            &[0],
            &spec,
            &mut out,
        )
        .unwrap();
        // ROI x 1..5 in two bins: samples at 1.5, 2.5 and 3.5, 4.5.
        assert_eq!(out, [2.0, 4.0]);
        let e = roi_align(
            &plane,
            &[1, 1, 6, 6],
            &[1.0, 1.0, 5.0, 3.0],
            &[1],
            &spec,
            &mut out,
        )
        .unwrap_err();
        assert!(
            matches!(e, KernelError::IndexOutOfRange { index: 1, .. }),
            "{e}"
        );
    }
}
