use super::testutil::*;
use super::*;
use rstest::rstest;

fn p3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

/// Direct-definition pooling from the ONNX reference semantics.
fn naive_pool(kind: PoolKind, x: &[f32], xs: &[usize], a: &PoolAttrs) -> Vec<f32> {
    let osp = pool_output_spatial(&xs[2..], a).unwrap();
    let (i3, o3, k3) = (p3(&xs[2..], 1), p3(&osp, 1), p3(&a.kernel, 1));
    let (s3, d3, pb3, pe3) = (
        p3(&a.strides, 1),
        p3(&a.dilations, 1),
        p3(&a.pads_begin, 0),
        p3(&a.pads_end, 0),
    );
    let ip: usize = i3.iter().product();
    let mut out = Vec::new();
    for plane in 0..xs[0] * xs[1] {
        for od in 0..o3[0] {
            for oh in 0..o3[1] {
                for ow in 0..o3[2] {
                    let (mut mx, mut sum, mut cnt, mut padded) = (f32::NEG_INFINITY, 0.0f64, 0, 0);
                    for kd in 0..k3[0] {
                        for kh in 0..k3[1] {
                            for kw in 0..k3[2] {
                                let p = [
                                    (od * s3[0] + kd * d3[0]) as isize - pb3[0] as isize,
                                    (oh * s3[1] + kh * d3[1]) as isize - pb3[1] as isize,
                                    (ow * s3[2] + kw * d3[2]) as isize - pb3[2] as isize,
                                ];
                                if (0..3).all(|i| {
                                    p[i] >= -(pb3[i] as isize) && p[i] < (i3[i] + pe3[i]) as isize
                                }) {
                                    padded += 1;
                                }
                                if (0..3).all(|i| p[i] >= 0 && p[i] < i3[i] as isize) {
                                    let v = x[plane * ip
                                        + (p[0] as usize * i3[1] + p[1] as usize) * i3[2]
                                        + p[2] as usize];
                                    mx = mx.max(v);
                                    sum += v as f64;
                                    cnt += 1;
                                }
                            }
                        }
                    }
                    out.push(match kind {
                        PoolKind::Max => mx,
                        PoolKind::Average => {
                            (sum / if a.count_include_pad { padded } else { cnt } as f64) as f32
                        }
                    });
                }
            }
        }
    }
    out
}

fn pa(
    k: &[usize],
    s: &[usize],
    d: &[usize],
    pb: &[usize],
    pe: &[usize],
    ceil: bool,
    cip: bool,
) -> PoolAttrs {
    PoolAttrs {
        kernel: k.to_vec(),
        strides: s.to_vec(),
        dilations: d.to_vec(),
        pads_begin: pb.to_vec(),
        pads_end: pe.to_vec(),
        ceil_mode: ceil,
        count_include_pad: cip,
    }
}

#[rstest]
#[case(&[1, 3, 112, 112], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[2, 2, 7, 8], pa(&[3, 2], &[2, 2], &[1, 1], &[0, 1], &[1, 0], true, false))]
#[case(&[2, 2, 7, 8], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], true, true))]
#[case(&[1, 2, 9, 9], pa(&[2, 3], &[1, 2], &[2, 2], &[1, 1], &[2, 0], false, true))]
#[case(&[1, 2, 10], pa(&[4], &[3], &[1], &[1], &[1], true, false))]
#[case(&[1, 1, 4, 5, 6], pa(&[2, 2, 3], &[2, 1, 2], &[1, 1, 1], &[0, 1, 1], &[1, 0, 1], false, false))]
// Max pool on the phase-split plane copy: squeezenet's 3x3/2 ceil (odd and even sizes), rows
// wider than a vector block, stride 3, a window wider than the input, 1x1 outputs.
#[case(&[1, 5, 109, 109], pa(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false))]
#[case(&[2, 3, 54, 54], pa(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false))]
#[case(&[1, 3, 13, 70], pa(&[3, 3], &[3, 3], &[1, 1], &[1, 2], &[2, 1], false, false))]
#[case(&[1, 2, 5, 4], pa(&[5, 7], &[1, 1], &[1, 1], &[2, 3], &[2, 3], false, false))]
#[case(&[1, 3, 2, 2], pa(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[2, 3, 33], pa(&[3], &[2], &[2], &[2], &[1], true, false))]
// The stride-2 plane path (pool_plane): SqueezeNet's 27x27 3x3/2, DenseNet's 2x2/2 on 14x14,
// ceil mode with padding, an even kernel, asymmetric pads, odd and even widths
#[case(&[1, 4, 27, 27], pa(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[2, 3, 14, 14], pa(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[1, 2, 13, 13], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], true, false))]
#[case(&[1, 2, 9, 30], pa(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[1, 2, 5, 32], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 0], &[0, 1], false, false))]
// ... and its edges: a single row, a 3x3 plane in ceil mode, a 2x2 plane
#[case(&[1, 2, 1, 10], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 1, 3, 3], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], true, false))]
#[case(&[2, 2, 2, 2], pa(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false))]
// Stride 1 on the plane path: Inception's 3x3/1 "same" pools (with and without
// count_include_pad), a 5x5 window, asymmetric pads with an even kernel, rows wider than
// a vector, a single row; and ShuffleNet's padded 3x3/2 average pools (odd and even sizes)
#[case(&[1, 3, 14, 14], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[2, 2, 7, 7], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, true))]
#[case(&[1, 2, 9, 11], pa(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], false, false))]
#[case(&[1, 2, 6, 7], pa(&[2, 2], &[1, 1], &[1, 1], &[0, 1], &[1, 0], false, true))]
#[case(&[1, 2, 5, 40], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], true, false))]
#[case(&[1, 2, 1, 9], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 3, 28, 28], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 3, 15, 15], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], true, true))]
// Stride 2 on planes above 64x64 (the general loop, 3-wide windows fused): VGG's 2x2,
// asymmetric pads in ceil mode, a 4-wide window reaching into the end padding, 1-D with
// padding, count_include_pad in ceil mode, 1-D windows mostly in the padding
#[case(&[1, 2, 80, 80], pa(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[1, 2, 67, 71], pa(&[3, 3], &[2, 2], &[1, 1], &[0, 1], &[1, 2], true, false))]
#[case(&[1, 2, 66, 70], pa(&[4, 4], &[2, 2], &[1, 1], &[2, 2], &[2, 2], false, true))]
#[case(&[2, 2, 31], pa(&[3], &[2], &[1], &[1], &[1], true, false))]
#[case(&[1, 2, 65, 66], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], true, true))]
#[case(&[1, 2, 5], pa(&[3], &[2], &[1], &[2], &[2], false, true))]
// The AVX-512 row path's edges (stride 2): outputs over three vectors with a partial last one, the
// left padding two columns wide, 5x3 and 1x3 windows, 2-wide windows with left padding, a
// row shorter than a vector, ceil mode reaching past the input
#[case(&[1, 2, 9, 70], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 2], &[1, 2], false, false))]
#[case(&[2, 2, 11, 37], pa(&[5, 3], &[2, 2], &[1, 1], &[2, 1], &[2, 1], true, true))]
#[case(&[1, 3, 6, 34], pa(&[1, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false))]
#[case(&[1, 2, 8, 33], pa(&[2, 2], &[2, 2], &[1, 1], &[1, 1], &[0, 0], true, true))]
#[case(&[3, 1, 5, 6], pa(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false))]
// One window over the whole plane (the global pool's path): a classifier head's 7x7, a 1-D
// one in ceil mode; with padding it stays on the window paths
#[case(&[2, 5, 7, 7], pa(&[7, 7], &[1, 1], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[1, 3, 9], pa(&[9], &[3], &[1], &[0], &[0], true, true))]
#[case(&[1, 3, 5, 5], pa(&[5, 5], &[1, 1], &[1, 1], &[1, 1], &[0, 0], false, false))]
fn pool_matches_naive(#[case] xs: &[usize], #[case] a: PoolAttrs) {
    let x = rand_vec(xs.iter().product(), 31);
    for kind in [PoolKind::Max, PoolKind::Average] {
        let want = naive_pool(kind, &x, xs, &a);
        for threads in [1, 2] {
            // Also without the AVX-512 row path, so the paths it replaces on such CPUs
            // stay tested on them.
            for rows in [true, false] {
                let mut out = vec![f32::NAN; want.len()];
                super::pool::pool_paths(kind, &x, xs, &a, &mut out, threads, rows).unwrap();
                assert_close(&out, &want, 1e-6);
            }
        }
    }
}

/// The AVX-512 row path gives the other paths' bits, ties between +0 and -0 and max's NaN
/// payloads included (values drawn from a few, so windows hold ties).
#[rstest]
#[case(&[2, 3, 27, 27], pa(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false))]
#[case(&[1, 3, 70, 71], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 4, 16, 16], pa(&[2, 2], &[2, 2], &[1, 1], &[0, 0], &[0, 0], false, false))]
#[case(&[1, 3, 15, 15], pa(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], true, true))]
// Stride 1: Inception's "same" pools, pads of two columns, 2x2 windows with asymmetric pads,
// rows over two vectors
#[case(&[1, 3, 14, 14], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[2, 2, 9, 37], pa(&[3, 3], &[1, 1], &[1, 1], &[2, 2], &[0, 1], false, true))]
#[case(&[1, 2, 7, 33], pa(&[2, 2], &[1, 1], &[1, 1], &[0, 1], &[1, 0], true, false))]
// 3x3/1 "same" on small planes, the flat path: 7x7 (a vector across rows, 49 = 3 x 16 + 1),
// a plane of one row, one column, one position, 28x28 (its largest), with and without the
// padding in the divisor, batches
#[case(&[2, 5, 7, 7], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 4, 7, 7], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, true))]
#[case(&[1, 3, 1, 19], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 3, 21, 1], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, true))]
#[case(&[2, 3, 1, 1], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[1, 3, 28, 28], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, false))]
#[case(&[2, 3, 5, 13], pa(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], false, true))]
fn row_paths_agree_bitwise(#[case] xs: &[usize], #[case] a: PoolAttrs) {
    // Two quiet NaN payloads and a signalling NaN (kept as it is, not quieted).
    let picks = [
        0.0,
        -0.0,
        1.5,
        -2.0,
        f32::NAN,
        f32::from_bits(0x7fc0_0001),
        f32::from_bits(0x7f80_0001),
    ];
    let x: Vec<f32> = rand_vec(xs.iter().product(), 35)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            // Mostly ties of +-0 and small sets, a few NaNs with three payloads.
            let k = ((v.abs() * 1000.0) as usize + i) % 40;
            if k < picks.len() {
                picks[k]
            } else {
                picks[k % 4]
            }
        })
        .collect();
    for kind in [PoolKind::Max, PoolKind::Average] {
        let mut outs = Vec::new();
        for rows in [true, false] {
            let n = a.kernel.len();
            let osp = pool_output_spatial(&xs[2..], &a).unwrap();
            assert_eq!(osp.len(), n);
            let mut out = vec![0.0; xs[0] * xs[1] * osp.iter().product::<usize>()];
            super::pool::pool_paths(kind, &x, xs, &a, &mut out, 2, rows).unwrap();
            outs.push(out);
        }
        if kind == PoolKind::Average {
            // A sum's NaN payload is whichever operand the compiled add keeps (Rust leaves
            // NaN payloads of arithmetic unspecified); max's selects are explicit.
            for out in &mut outs {
                out.iter_mut()
                    .filter(|v| v.is_nan())
                    .for_each(|v| *v = f32::NAN);
            }
        }
        assert_bits_eq(&outs[0], &outs[1]);
    }
}

#[test]
fn max_pool_propagates_nan_and_is_thread_count_independent() {
    // 3x3/2 and 3x3/1 (both plane paths) with padding over 7 planes of 17x23: NaN at a
    // corner, on a border and inside; every output whose window holds a NaN is NaN, the
    // others match the naive pool.
    for stride in [2, 1] {
        max_pool_nan_case(stride);
    }
}

fn max_pool_nan_case(stride: usize) {
    let xs = [1, 7, 17, 23];
    let mut x = rand_vec(xs.iter().product(), 33);
    let plane = 17 * 23;
    for at in [
        0,
        plane + 22,
        2 * plane + 8 * 23 + 11,
        6 * plane + plane - 1,
    ] {
        x[at] = f32::NAN;
    }
    let a = pa(
        &[3, 3],
        &[stride; 2],
        &[1, 1],
        &[1, 1],
        &[1, 1],
        false,
        false,
    );
    let clean: Vec<f32> = x
        .iter()
        .map(|v| if v.is_nan() { 0.0 } else { *v })
        .collect();
    let want = naive_pool(PoolKind::Max, &clean, &xs, &a);
    let nan_mask = naive_pool(
        PoolKind::Max,
        &x.iter()
            .map(|v| if v.is_nan() { 1.0 } else { 0.0 })
            .collect::<Vec<_>>(),
        &xs,
        &a,
    );
    let mut first: Option<Vec<f32>> = None;
    for threads in [1, 2, 3] {
        let mut out = vec![0.0; want.len()];
        pool(PoolKind::Max, &x, &xs, &a, &mut out, threads).unwrap();
        for (i, (&o, (&w, &m))) in out.iter().zip(want.iter().zip(&nan_mask)).enumerate() {
            if m > 0.0 {
                assert!(o.is_nan(), "element {i}: {o}, want NaN");
            } else {
                assert_eq!(o, w, "element {i}");
            }
        }
        match &first {
            None => first = Some(out),
            Some(f) => assert_bits_eq(&out, f),
        }
    }
    assert!(nan_mask.iter().filter(|&&m| m > 0.0).count() >= 4);
}

#[test]
fn pool_onnx_examples() {
    // maxpool_2d_ceil: 4x4 input 1..16, kernel 3, stride 2, ceil -> 2x2 [11, 12, 15, 16].
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let a = pa(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], true, false);
    assert_eq!(pool_output_spatial(&[4, 4], &a).unwrap(), vec![2, 2]);
    let mut out = [0.0; 4];
    pool(PoolKind::Max, &x, &[1, 1, 4, 4], &a, &mut out, 1).unwrap();
    assert_eq!(out, [11.0, 12.0, 15.0, 16.0]);
    // 5x5 input 1..25, kernel 3, pads 2, count_include_pad: the first windows see 1, 1+2,
    // 1+2+3 of nine padded taps.
    let x: Vec<f32> = (1..=25).map(|v| v as f32).collect();
    let a = pa(&[3, 3], &[1, 1], &[1, 1], &[2, 2], &[2, 2], false, true);
    let mut out = vec![0.0; 49];
    pool(PoolKind::Average, &x, &[1, 1, 5, 5], &a, &mut out, 1).unwrap();
    assert_close(&out[..3], &[1.0 / 9.0, 3.0 / 9.0, 6.0 / 9.0], 1e-6);
    // Same without count_include_pad: first = mean(1) = 1.
    let a = pa(&[3, 3], &[1, 1], &[1, 1], &[2, 2], &[2, 2], false, false);
    pool(PoolKind::Average, &x, &[1, 1, 5, 5], &a, &mut out, 1).unwrap();
    assert_close(&out[..3], &[1.0, 1.5, 2.0], 1e-6);
    // ceil mode must not start a window past the input + begin padding.
    // A window starting inside the end padding only is dropped; a partial one is kept.
    let a = pa(&[2], &[2], &[1], &[0], &[1], true, false);
    assert_eq!(pool_output_spatial(&[4], &a).unwrap(), vec![2]);
    let a = pa(&[2], &[2], &[1], &[0], &[0], true, false);
    assert_eq!(pool_output_spatial(&[5], &a).unwrap(), vec![3]);
    assert!(pool_output_spatial(&[2], &pa(&[3], &[1], &[1], &[0], &[0], false, false)).is_err());
}

#[test]
fn global_pool_and_lrn() {
    let x = rand_vec(2 * 3 * 5 * 4, 41);
    let mut out = [0.0; 6];
    global_pool(false, &x, &[2, 3, 5, 4], &mut out, 2).unwrap();
    let want: Vec<f32> = x.chunks(20).map(|p| p.iter().sum::<f32>() / 20.0).collect();
    assert_close(&out, &want, 1e-6);
    global_pool(true, &x, &[2, 3, 5, 4], &mut out, 1).unwrap();
    let want: Vec<f32> = x
        .chunks(20)
        .map(|p| p.iter().cloned().fold(f32::MIN, f32::max))
        .collect();
    assert_eq!(out.to_vec(), want);

    let xs = [2, 5, 3, 2];
    let x = rand_vec(60, 42);
    let a = LrnAttrs {
        alpha: 0.0002,
        beta: 0.75,
        bias: 2.0,
        size: 3,
    };
    let mut out = vec![0.0; 60];
    lrn(&x, &xs, &a, &mut out, 2).unwrap();
    let want: Vec<f32> = (0..60usize)
        .map(|i| {
            let (n, c, p) = (i / 30, (i / 6) % 5, i % 6);
            let sq: f32 = (c.saturating_sub(1)..(c + 2).min(5))
                .map(|cc| x[n * 30 + cc * 6 + p].powi(2))
                .sum();
            x[i] / (2.0f32 + 0.0002 / 3.0 * sq).powf(0.75)
        })
        .collect();
    assert_close(&out, &want, 1e-6);
    assert!(lrn(&x, &xs, &LrnAttrs { size: 0, ..a }, &mut out, 1).is_err());
}

#[test]
fn batch_norm_matches_formula() {
    let xs = [2, 3, 4];
    let x = rand_vec(24, 51);
    let (s, b, m, v) = (
        [1.0, 1.5, -0.5],
        [0.0, 1.0, 2.0],
        [0.1, -0.2, 0.3],
        [1.0, 0.5, 2.0],
    );
    let mut out = vec![0.0; 24];
    batch_norm(&x, &xs, &s, &b, &m, &v, 1e-5, &mut out, 2).unwrap();
    let want: Vec<f32> = (0..24)
        .map(|i| {
            let c = (i / 4) % 3;
            (x[i] - m[c]) / (v[c] + 1e-5f32).sqrt() * s[c] + b[c]
        })
        .collect();
    assert_close(&out, &want, 1e-5);
    assert!(batch_norm(&x, &xs, &s[..2], &b, &m, &v, 1e-5, &mut out, 1).is_err());
}

/// The fused affine + activation (a BatchNormalization with its Relu or Clip folded in) is
/// exactly the affine followed by the activation, for any plane size and thread count, and a
/// Clip with a NaN bound is an error rather than a silently skipped activation.
#[rstest]
#[case::relu(UnaryOp::Relu)]
#[case::clip(UnaryOp::Clip { min: -0.25, max: 0.5 })]
#[case::none(UnaryOp::Identity)]
fn channel_affine_act_is_affine_then_activation(#[case] act: UnaryOp) {
    for xs in [[2usize, 5, 7, 7], [1, 3, 56, 56], [1, 1000, 1, 1]] {
        let n: usize = xs.iter().product();
        let x = rand_vec(n, 81);
        let a = rand_vec(xs[1], 82);
        let b = rand_vec(xs[1], 83);
        let ip = xs[2] * xs[3];
        let affine: Vec<f32> = (0..n)
            .map(|i| {
                let c = (i / ip) % xs[1];
                x[i] * a[c] + b[c]
            })
            .collect();
        let mut want = vec![0.0; n];
        unary_f32(act, &affine, &mut want, 1).unwrap();
        for threads in [1, 2, 4] {
            let mut out = vec![f32::NAN; n];
            channel_affine_act(&x, &xs, &a, &b, Some(act), &mut out, threads).unwrap();
            assert_eq!(out, want, "{xs:?} at {threads} threads");
        }
    }
    let mut out = vec![0.0; 4];
    let nan_clip = UnaryOp::Clip {
        min: f32::NAN,
        max: 1.0,
    };
    let err = channel_affine_act(
        &[0.0; 4],
        &[1, 1, 2, 2],
        &[1.0],
        &[0.0],
        Some(nan_clip),
        &mut out,
        1,
    );
    assert!(err.is_err(), "a NaN Clip bound must be rejected");
}

#[test]
fn layer_norm_matches_formula() {
    let xs = [3, 2, 5];
    let x = rand_vec(30, 61);
    let scale = rand_vec(10, 62);
    let bias = rand_vec(10, 63);
    let mut out = vec![0.0; 30];
    layer_norm(&x, &xs, 1, &scale, Some(&bias), 1e-5, &mut out, 2).unwrap();
    let mut want = Vec::new();
    for row in x.chunks(10) {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / 10.0;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 10.0;
        for (j, &v) in row.iter().enumerate() {
            want.push(((v as f64 - mean) / (var + 1e-5).sqrt()) as f32 * scale[j] + bias[j]);
        }
    }
    assert_close(&out, &want, 1e-5);
    layer_norm(&x, &xs, 2, &[2.0], None, 1e-5, &mut out, 1).unwrap();
    let r0 = &x[..5];
    let mean = r0.iter().sum::<f32>() / 5.0;
    let var = r0.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 5.0;
    assert_close(
        &out[..1],
        &[(r0[0] - mean) / (var + 1e-5).sqrt() * 2.0],
        1e-5,
    );
    assert!(layer_norm(&x, &xs, 3, &scale, None, 1e-5, &mut out, 1).is_err());
}

#[rstest]
#[case(&[2, 3, 4], 2)]
#[case(&[2, 3, 4], 1)]
#[case(&[2, 3, 4], 0)]
#[case(&[5, 1000], 1)]
// rows shorter than, equal to and just over the 16 partial sums; a long odd column count
#[case(&[3, 7], 1)]
#[case(&[2, 16], 1)]
#[case(&[2, 33], 1)]
#[case(&[2, 5, 37], 1)]
// rows of whole lane chunks, more rows than one batch of the lane path
#[case(&[11, 32], 1)]
#[case(&[3, 6, 49], 2)]
fn softmax_matches_formula(#[case] xs: &[usize], #[case] axis: usize) {
    let x: Vec<f32> = rand_vec(xs.iter().product(), 71)
        .iter()
        .map(|v| v * 10.0)
        .collect();
    let (n, inner) = (xs[axis], xs[axis + 1..].iter().product::<usize>());
    let mut want = vec![0.0f32; x.len()];
    let mut want_log = vec![0.0f32; x.len()];
    for (i, w) in want.iter_mut().enumerate() {
        let (outer, j, k) = (i / (n * inner), (i / inner) % n, i % inner);
        let at = |jj: usize| x[(outer * n + jj) * inner + k] as f64;
        let m = (0..n).map(at).fold(f64::MIN, f64::max);
        let s: f64 = (0..n).map(|jj| (at(jj) - m).exp()).sum();
        *w = ((at(j) - m).exp() / s) as f32;
        want_log[i] = (at(j) - m - s.ln()) as f32;
    }
    let mut out = vec![0.0; x.len()];
    softmax(SoftmaxKind::Softmax, &x, xs, axis, &mut out, 2).unwrap();
    assert_close(&out, &want, 1e-5);
    softmax(SoftmaxKind::LogSoftmax, &x, xs, axis, &mut out, 1).unwrap();
    assert_close(&out, &want_log, 1e-5);
}

#[test]
fn softmax_extreme_inputs_and_thread_count_independence() {
    // Scores 0 and -200 apart (exp underflows to 0), an all-equal row, a row with +-1e30,
    // and 64 rows of 77 (more than one worker's share).
    let n = 77;
    let mut x = rand_vec(64 * n, 74);
    x[..n]
        .iter_mut()
        .enumerate()
        .for_each(|(i, v)| *v = if i == 5 { 0.0 } else { -200.0 });
    x[n..2 * n].fill(3.5);
    x[2 * n] = 1e30;
    x[2 * n + 1] = -1e30;
    let xs = [64, n];
    let mut first: Option<Vec<f32>> = None;
    for threads in [1, 2, 3] {
        let mut out = vec![f32::NAN; x.len()];
        softmax(SoftmaxKind::Softmax, &x, &xs, 1, &mut out, threads).unwrap();
        assert_eq!(out[5], 1.0);
        assert!(out[..n]
            .iter()
            .enumerate()
            .all(|(i, &v)| i == 5 || v == 0.0));
        assert_close(&out[n..2 * n], &vec![1.0 / n as f32; n], 1e-6);
        assert_eq!(out[2 * n], 1.0);
        assert!(out[2 * n + 1..3 * n].iter().all(|&v| v == 0.0));
        for row in out.chunks(n) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        match &first {
            None => first = Some(out),
            Some(f) => assert_bits_eq(&out, f),
        }
    }
    let mut out = vec![0.0; x.len()];
    softmax(SoftmaxKind::LogSoftmax, &x, &xs, 1, &mut out, 2).unwrap();
    assert_eq!(out[5], 0.0);
    assert_close(&out[..1], &[-200.0], 1e-6);
}

#[test]
fn softmax_legacy_flattens_at_axis() {
    let xs = [2, 3, 4];
    let x = rand_vec(24, 72);
    let mut out = vec![0.0; 24];
    softmax_legacy(SoftmaxKind::Softmax, &x, &xs, 1, &mut out, 1).unwrap();
    // Axis 1 of opset < 13 normalises over the 12 trailing elements of each batch.
    for (orow, xrow) in out.chunks(12).zip(x.chunks(12)) {
        let m = xrow.iter().cloned().fold(f32::MIN, f32::max);
        let s: f32 = xrow.iter().map(|v| (v - m).exp()).sum();
        let want: Vec<f32> = xrow.iter().map(|v| (v - m).exp() / s).collect();
        assert_close(orow, &want, 1e-6);
    }
    assert!(softmax_legacy(SoftmaxKind::Softmax, &x, &xs, 4, &mut out, 1).is_err());
}

#[rstest]
#[case(&[2, 3, 4, 5], &[2, 3], true)]
#[case(&[2, 3, 4, 5], &[1], false)]
#[case(&[2, 3, 4], &[0, 2], true)]
#[case(&[2, 3, 4], &[], false)]
#[case(&[3, 1, 2], &[1], false)]
fn reduce_matches_naive(#[case] xs: &[usize], #[case] axes: &[usize], #[case] keepdims: bool) {
    let x = rand_vec(xs.iter().product(), 81);
    let osh = reduce_output_shape(xs, axes, keepdims).unwrap();
    let kept: Vec<usize> = (0..xs.len())
        .filter(|d| !(axes.is_empty() || axes.contains(d)))
        .collect();
    let out_n: usize = kept.iter().map(|&d| xs[d]).product();
    assert_eq!(osh.iter().product::<usize>(), out_n);
    let mut sums = vec![0.0f64; out_n];
    let mut maxs = vec![f32::MIN; out_n];
    let mut cnt = vec![0usize; out_n];
    for (i, &v) in x.iter().enumerate() {
        let idx = unravel(i, xs);
        let o = kept.iter().fold(0, |acc, &d| acc * xs[d] + idx[d]);
        sums[o] += v as f64;
        maxs[o] = maxs[o].max(v);
        cnt[o] += 1;
    }
    let mean: Vec<f32> = sums
        .iter()
        .zip(&cnt)
        .map(|(s, &c)| (s / c as f64) as f32)
        .collect();
    for threads in [1, 2] {
        let mut out = vec![0.0; out_n];
        reduce(ReduceOp::Mean, &x, xs, axes, &mut out, threads).unwrap();
        assert_close(&out, &mean, 1e-5);
        reduce(ReduceOp::Max, &x, xs, axes, &mut out, threads).unwrap();
        assert_eq!(out, maxs);
    }
    assert!(reduce(ReduceOp::Sum, &x, xs, &[9], &mut [0.0], 1).is_err());
}

#[test]
fn lp_pool_sums_in_bounds_taps_to_the_power_p() {
    // One 3x3 plane, 2x2 windows, stride 1, one pad at the start of each axis.
    let x = [1.0, -2.0, 3.0, -4.0, 5.0, -6.0, 7.0, -8.0, 9.0];
    let mut a = PoolAttrs::new(&[2, 2]);
    a.pads_begin = vec![1, 1];
    a.pads_end = vec![0, 0];
    let mut out = [0.0f32; 9];
    lp_pool(&x, &[1, 1, 3, 3], &a, 1, &mut out, 1).unwrap();
    // Window at (1, 1) covers x[0..2] and x[3..5]: 1 + 2 + 4 + 5.
    assert_eq!(out[4], 12.0);
    assert_eq!(out[0], 1.0, "the padded cells add nothing");
    lp_pool(&x, &[1, 1, 3, 3], &a, 2, &mut out, 2).unwrap();
    assert_eq!(out[4], (1.0f32 + 4.0 + 16.0 + 25.0).sqrt());
    lp_pool(&x, &[1, 1, 3, 3], &a, 3, &mut out, 1).unwrap();
    let want = (1.0f32 + 8.0 + 64.0 + 125.0).powf(1.0 / 3.0);
    assert!((out[4] - want).abs() < 1e-5, "{} vs {want}", out[4]);
    assert!(lp_pool(&x, &[1, 1, 3, 3], &a, 0, &mut out, 1).is_err());
}

#[test]
fn hardmax_marks_the_first_largest_per_row() {
    // [2, 3] rows along axis 1; the second row ties at 5 and keeps the first.
    let x = [1.0, 3.0, 2.0, 5.0, 0.0, 5.0];
    let mut out = [9.0f32; 6];
    hardmax(&x, &[2, 3], 1, false, &mut out).unwrap();
    assert_eq!(out, [0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
    // Along axis 0: columns.
    hardmax(&x, &[2, 3], 0, false, &mut out).unwrap();
    assert_eq!(out, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
    // Legacy flatten at axis 0: one row of six, the first 5 wins.
    hardmax(&x, &[2, 3], 0, true, &mut out).unwrap();
    assert_eq!(out, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]);
    // NaN wins, as numpy's argmax.
    hardmax(&[1.0, f32::NAN, 7.0], &[3], 0, false, &mut out[..3]).unwrap();
    assert_eq!(&out[..3], &[0.0, 1.0, 0.0]);
    assert!(hardmax(&x, &[2, 3], 2, false, &mut out).is_err());
}

#[test]
fn group_norm_params_per_group_and_per_channel_agree_and_one_group_per_channel_normalises_planes() {
    let xs = [2, 4, 3];
    let x: Vec<f32> = (0..24).map(|i| ((i * 7) % 11) as f32 - 4.0).collect();
    let (gs, gb) = ([1.5f32, -0.5], [0.25f32, 2.0]);
    // The same parameters spread over each group's two channels.
    let (cs, cb) = ([1.5f32, 1.5, -0.5, -0.5], [0.25f32, 0.25, 2.0, 2.0]);
    let mut per_group = vec![0.0f32; 24];
    let mut per_channel = vec![0.0f32; 24];
    group_norm(&x, &xs, 2, &gs, &gb, 1e-5, &mut per_group, 1).unwrap();
    group_norm(&x, &xs, 2, &cs, &cb, 1e-5, &mut per_channel, 2).unwrap();
    assert_eq!(per_group, per_channel);
    // Group (0, 0) is x[0..6]: check one element against the definition.
    let g = &x[..6];
    let mean = g.iter().sum::<f32>() / 6.0;
    let var = g.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 6.0;
    let want = 1.5 * (x[1] - mean) / (var + 1e-5).sqrt() + 0.25;
    assert!((per_group[1] - want).abs() < 1e-5);
    // One group per channel normalises each plane: plane (1, 3) is x[21..24].
    let (s4, b4) = ([0.5f32, 1.0, 2.0, -1.0], [0.0f32, 1.0, -1.0, 0.5]);
    let mut gn = vec![0.0f32; 24];
    group_norm(&x, &xs, 4, &s4, &b4, 1e-5, &mut gn, 2).unwrap();
    let p = &x[21..24];
    let mean = p.iter().sum::<f32>() / 3.0;
    let var = p.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 3.0;
    let want = -(x[22] - mean) / (var + 1e-5).sqrt() + 0.5;
    assert!((gn[22] - want).abs() < 1e-5, "{} vs {want}", gn[22]);
    assert!(group_norm(&x, &xs, 3, &gs, &gb, 1e-5, &mut gn, 1).is_err());
}
