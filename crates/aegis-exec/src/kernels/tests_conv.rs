use super::testutil::*;
use super::*;
use rstest::rstest;

fn p3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

/// Direct-definition convolution (ONNX Conv), any of 1-3 spatial axes.
fn naive_conv(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    b: Option<&[f32]>,
    a: &ConvAttrs,
) -> (Vec<f32>, Vec<usize>) {
    let (n, c_in, c_out, cig) = (xs[0], xs[1], ws[0], ws[1]);
    let cog = c_out / a.group;
    let osp = conv_output_spatial(&xs[2..], a).unwrap();
    let (i3, o3, k3) = (p3(&xs[2..], 1), p3(&osp, 1), p3(&a.kernel, 1));
    let (s3, d3, pb3) = (p3(&a.strides, 1), p3(&a.dilations, 1), p3(&a.pads_begin, 0));
    let mut out = vec![0.0f32; n * c_out * o3.iter().product::<usize>()];
    let mut oi = 0;
    for bn in 0..n {
        for co in 0..c_out {
            let g = co / cog;
            for od in 0..o3[0] {
                for oh in 0..o3[1] {
                    for ow in 0..o3[2] {
                        let mut acc = b.map_or(0.0, |b| b[co]) as f64;
                        for ci in 0..cig {
                            let c = g * cig + ci;
                            for kd in 0..k3[0] {
                                for kh in 0..k3[1] {
                                    for kw in 0..k3[2] {
                                        let id =
                                            (od * s3[0] + kd * d3[0]) as isize - pb3[0] as isize;
                                        let ih =
                                            (oh * s3[1] + kh * d3[1]) as isize - pb3[1] as isize;
                                        let iw =
                                            (ow * s3[2] + kw * d3[2]) as isize - pb3[2] as isize;
                                        if id < 0
                                            || ih < 0
                                            || iw < 0
                                            || id >= i3[0] as isize
                                            || ih >= i3[1] as isize
                                            || iw >= i3[2] as isize
                                        {
                                            continue;
                                        }
                                        let xv = x[(((bn * c_in + c) * i3[0] + id as usize)
                                            * i3[1]
                                            + ih as usize)
                                            * i3[2]
                                            + iw as usize];
                                        let wv = w[(((co * cig + ci) * k3[0] + kd) * k3[1] + kh)
                                            * k3[2]
                                            + kw];
                                        acc += (xv as f64) * (wv as f64);
                                    }
                                }
                            }
                        }
                        out[oi] = acc as f32;
                        oi += 1;
                    }
                }
            }
        }
    }
    let mut shape = vec![n, c_out];
    shape.extend(osp);
    (out, shape)
}

#[allow(clippy::too_many_arguments)]
fn attrs(
    k: &[usize],
    s: &[usize],
    d: &[usize],
    pb: &[usize],
    pe: &[usize],
    group: usize,
) -> ConvAttrs {
    ConvAttrs {
        kernel: k.to_vec(),
        strides: s.to_vec(),
        dilations: d.to_vec(),
        pads_begin: pb.to_vec(),
        pads_end: pe.to_vec(),
        group,
    }
}

/// A conv case's filter shape, input, filter and bias (random, from seeds `seed..seed + 3`).
fn case_tensors(
    xs: &[usize],
    c_out: usize,
    a: &ConvAttrs,
    seed: u64,
) -> (Vec<usize>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut ws = vec![c_out, xs[1] / a.group];
    ws.extend(&a.kernel);
    let x = rand_vec(xs.iter().product(), seed);
    let w = rand_vec(ws.iter().product(), seed + 1);
    let b = rand_vec(c_out, seed + 2);
    (ws, x, w, b)
}

/// Runs `pc` on `x` at each thread count: every run within `tol` of `want`, and all runs
/// bit-identical (scratch and output start as NaN, so nothing left unwritten passes).
fn assert_runs_match(
    pc: &PreparedConv,
    x: &[f32],
    xs: &[usize],
    want: &[f32],
    tol: f32,
    threads: &[usize],
) {
    let mut first: Option<Vec<f32>> = None;
    for &t in threads {
        let mut scratch = vec![f32::NAN; pc.scratch_len(xs, t).unwrap()];
        let mut out = vec![f32::NAN; want.len()];
        pc.run(x, xs, &mut out, &mut scratch, t).unwrap();
        assert_close(&out, want, tol);
        match &first {
            None => first = Some(out),
            Some(f) => assert_bits_eq(&out, f),
        }
    }
}

#[rstest]
// 3x3 pad 1 (resnet body), with bias
#[case(&[1, 8, 9, 9], 16, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), true)]
// stride 2, asymmetric pads
#[case(&[2, 3, 11, 10], 5, attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 1], &[2, 0], 1), true)]
// dilation 2
#[case(&[1, 4, 12, 12], 6, attrs(&[3, 3], &[1, 1], &[2, 2], &[2, 2], &[2, 2], 1), false)]
// groups 2 with 7x7 stride 2 (stem-like)
#[case(&[1, 4, 15, 15], 8, attrs(&[7, 7], &[2, 2], &[1, 1], &[3, 3], &[3, 3], 2), true)]
// pointwise
#[case(&[2, 16, 7, 5], 24, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
// strided 1x1 (downsample shortcuts) run as pointwise convs over the subsampled input:
// odd extents, strides (2, 3), a batch of 2, groups, 1-D and 3-D, and one large enough for
// each pointwise path (direct kernel, GEMM tiles, channel-vectorised on a 7x7 plane)
#[case(&[1, 8, 9, 9], 16, attrs(&[1, 1], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 1), false)]
#[case(&[2, 6, 11, 10], 10, attrs(&[1, 1], &[2, 3], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 8, 13, 13], 12, attrs(&[1, 1], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 4), true)]
#[case(&[2, 5, 31], 7, attrs(&[1], &[3], &[1], &[0], &[0], 1), true)]
#[case(&[1, 3, 5, 6, 7], 4, attrs(&[1, 1, 1], &[2, 1, 2], &[1, 1, 1], &[0, 0, 0], &[0, 0, 0], 1), true)]
#[case(&[1, 64, 56, 56], 48, attrs(&[1, 1], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 512, 28, 28], 96, attrs(&[1, 1], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 256, 14, 14], 128, attrs(&[1, 1], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 1), true)]
// depthwise 3x3 stride 1 and stride 2
#[case(&[1, 6, 10, 9], 6, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 6), true)]
#[case(&[2, 4, 11, 11], 4, attrs(&[5, 3], &[2, 3], &[2, 1], &[2, 1], &[1, 2], 4), true)]
// depthwise: rows wider than one vector step, row counts not a multiple of 4, odd widths
#[case(&[1, 5, 23, 37], 5, attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 5), true)]
#[case(&[1, 7, 13, 40], 7, attrs(&[3, 3], &[1, 1], &[2, 2], &[2, 2], &[2, 2], 7), false)]
#[case(&[1, 3, 6, 33], 3, attrs(&[5, 5], &[1, 2], &[1, 1], &[0, 2], &[2, 0], 3), true)]
// depthwise 1-D, and a 3-D one (direct loop)
#[case(&[2, 4, 29], 4, attrs(&[3], &[2], &[1], &[1], &[1], 4), true)]
#[case(&[1, 3, 4, 5, 6], 3, attrs(&[3, 3, 3], &[1, 1, 1], &[1, 1, 1], &[1, 1, 1], &[1, 1, 1], 3), true)]
// depthwise multiplier 2 (generic grouped path)
#[case(&[1, 3, 8, 8], 6, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 3), false)]
// 1-D conv
#[case(&[2, 3, 17], 4, attrs(&[5], &[2], &[2], &[3], &[1], 1), true)]
// 3-D conv
#[case(&[1, 2, 5, 6, 7], 3, attrs(&[3, 2, 3], &[1, 2, 1], &[1, 1, 2], &[1, 0, 1], &[1, 1, 2], 1), true)]
// kernel as large as the padded input
#[case(&[1, 2, 3, 3], 2, attrs(&[5, 5], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), false)]
// big enough to tile output channels and positions, threaded
#[case(&[1, 64, 20, 20], 64, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), true)]
#[case(&[1, 256, 30, 30], 64, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
// small planes with much work: split into fixed output-channel tiles
#[case(&[1, 256, 7, 7], 128, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), true)]
#[case(&[1, 512, 7, 7], 256, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), false)]
// direct pointwise kernel: grouped (channel blocks of 9 = 6 + 3), and one group large enough
// to thread (100 channels = 16 blocks of 6 + 4; 784 positions = 24 blocks of 32 + 16)
#[case(&[1, 24, 14, 14], 36, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 4), true)]
#[case(&[1, 64, 28, 28], 100, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
// direct spatial conv (stride 1 on a zero-padded copy): uneven pads, dilated columns, 30
// channels (5 blocks of 6), threaded
#[case(&[1, 20, 24, 30], 30, attrs(&[3, 3], &[1, 1], &[1, 2], &[1, 2], &[2, 1], 1), true)]
// direct stride-1 kernel (wide planes): 13 channels (2 blocks of 6 + 1), a reduction of 180
// taps (two chunks), a valid conv read in place, dilation with uneven pads, a 3x1 kernel
// (flat grid = output), 1-D
#[case(&[1, 5, 60, 62], 13, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), true)]
#[case(&[1, 20, 56, 56], 8, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), false)]
#[case(&[1, 4, 66, 66], 8, attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 3, 70, 70], 7, attrs(&[5, 3], &[1, 1], &[2, 1], &[2, 1], &[1, 3], 1), true)]
#[case(&[2, 6, 40, 64], 9, attrs(&[3, 1], &[1, 1], &[1, 1], &[1, 0], &[1, 0], 1), true)]
#[case(&[2, 3, 380], 5, attrs(&[5], &[1], &[1], &[2], &[2], 1), true)]
// channel-vectorised kernel (small planes, channels in blocks of 32): a short last step
// (81 positions = 10 steps of 8 + 1), stride 2 with uneven pads over a batch of 2, dilation,
// a 7x7 pointwise conv, 1-D
#[case(&[1, 16, 9, 9], 64, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), true)]
#[case(&[1, 16, 9, 9], 60, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), true)]
#[case(&[2, 8, 12, 11], 32, attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 0], &[0, 1], 1), true)]
#[case(&[1, 20, 10, 10], 96, attrs(&[3, 3], &[1, 1], &[2, 2], &[2, 2], &[2, 2], 1), false)]
#[case(&[1, 128, 7, 7], 64, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 32, 50], 32, attrs(&[3], &[1], &[1], &[1], &[1], 1), true)]
#[case(&[1, 3, 70, 66], 64, attrs(&[7, 7], &[2, 2], &[1, 1], &[3, 3], &[2, 3], 1), true)]
fn conv_matches_naive(
    #[case] xs: &[usize],
    #[case] c_out: usize,
    #[case] a: ConvAttrs,
    #[case] with_bias: bool,
) {
    let (ws, x, w, b) = case_tensors(xs, c_out, &a, 11);
    let bias = with_bias.then_some(&b[..]);
    let (want, shape) = naive_conv(&x, xs, &w, &ws, bias, &a);
    let pc = PreparedConv::new(&w, &ws, bias, a.clone())
        .unwrap()
        .prepare_input(xs)
        .unwrap();
    assert_eq!(pc.output_shape(xs).unwrap(), shape);
    assert_runs_match(&pc, &x, xs, &want, 1e-4, &[1, 2, 3]);
}

#[test]
fn direct_kernel_is_chosen_for_wide_stride_1_planes_only() {
    let a3 = attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
    let pc = PreparedConv::new(&[0.0; 8 * 4 * 9], &[8, 4, 3, 3], None, a3).unwrap();
    assert!(pc.uses_direct(&[1, 4, 56, 56]).unwrap());
    // 28x28: an eighth of the flat grid is dropped columns; the GEMM path is faster.
    assert!(!pc.uses_direct(&[1, 4, 28, 28]).unwrap());
    let s2 = attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 1);
    let pc = PreparedConv::new(&[0.0; 8 * 4 * 9], &[8, 4, 3, 3], None, s2).unwrap();
    assert!(!pc.uses_direct(&[1, 4, 112, 112]).unwrap());
    let pw = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    let pc = PreparedConv::new(&[0.0; 8 * 4], &[8, 4, 1, 1], None, pw).unwrap();
    assert!(!pc.uses_direct(&[1, 4, 56, 56]).unwrap());
}

#[test]
fn channel_vectorised_kernel_is_chosen_for_small_planes_once_prepared() {
    let a3 = attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
    let w = vec![0.0; 64 * 8 * 9];
    let pc = PreparedConv::new(&w, &[64, 8, 3, 3], None, a3.clone())
        .unwrap()
        .with_wide_fma(false);
    // Not packed yet: the other paths run.
    assert!(!pc.uses_co(&[1, 8, 14, 14]).unwrap());
    assert_eq!(pc.packed_len(), 0);
    let pc = pc.prepare_input(&[1, 8, 14, 14]).unwrap();
    assert!(pc.uses_co(&[1, 8, 14, 14]).unwrap());
    assert_eq!(pc.packed_len(), 64 * 72 + 64);
    // Wide planes keep the direct kernel.
    assert!(!pc.uses_co(&[1, 8, 56, 56]).unwrap());
    // 48 channels fill 75 % of two blocks of 32; K = 2 * 9 is too short to repay the
    // transpose.
    assert!(!co_once_prepared([48, 4, 3, 3], a3.clone(), [1, 4, 14, 14]));
    // A strided conv with a long reduction takes it on any plane (a stem).
    let stem = attrs(&[7, 7], &[2, 2], &[1, 1], &[3, 3], &[3, 3], 1);
    assert!(co_once_prepared([64, 3, 7, 7], stem, [1, 3, 96, 96]));
    assert!(!co_once_prepared([64, 2, 3, 3], a3.clone(), [1, 2, 14, 14]));
    // 1x1 on 14x14: a short reduction and small filter (MobileNetV2's 96->576) stay on the
    // direct pointwise kernel (and pack nothing); a middle one (MobileNetV2's 160->960 on
    // 7x7) takes this one, and so does a long one (DenseNet's 512->128).
    let pw = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    assert!(!co_once_prepared(
        [576, 96, 1, 1],
        pw.clone(),
        [1, 96, 14, 14]
    ));
    let pc = PreparedConv::new(&vec![0.0; 576 * 96], &[576, 96, 1, 1], None, pw.clone())
        .unwrap()
        .with_wide_fma(false);
    assert_eq!(pc.prepare_input(&[1, 96, 14, 14]).unwrap().packed_len(), 0);
    assert!(co_once_prepared(
        [960, 160, 1, 1],
        pw.clone(),
        [1, 160, 7, 7]
    ));
    assert!(co_once_prepared(
        [128, 512, 1, 1],
        pw.clone(),
        [1, 512, 14, 14]
    ));
    // On 7x7 too (MobileNetV2's 960->320, ResNet-50's 2048->512), unless the packed copy
    // would pass `CO_POINTWISE_MAX_PACKED` (2 Mi elements).
    assert!(co_once_prepared(
        [320, 960, 1, 1],
        pw.clone(),
        [1, 960, 7, 7]
    ));
    assert!(co_once_prepared(
        [512, 2048, 1, 1],
        pw.clone(),
        [1, 2048, 7, 7]
    ));
    assert!(!co_once_prepared(
        [2049, 1024, 1, 1],
        pw.clone(),
        [1, 1024, 7, 7]
    ));
    // With two full-width FMA units (Intel's AVX-512 cores) the GEMM keeps those 1x1 convs
    // unless their output is at most 8 Ki elements (DenseNet's 1024->128 on 7x7); 3x3 convs
    // choose as before.
    assert!(!co_once_prepared_on(
        true,
        [960, 160, 1, 1],
        pw.clone(),
        [1, 160, 7, 7]
    ));
    assert!(!co_once_prepared_on(
        true,
        [128, 512, 1, 1],
        pw.clone(),
        [1, 512, 14, 14]
    ));
    assert!(co_once_prepared_on(
        true,
        [128, 1024, 1, 1],
        pw.clone(),
        [1, 1024, 7, 7]
    ));
    assert!(co_once_prepared_on(
        false,
        [128, 1024, 1, 1],
        pw,
        [1, 1024, 7, 7]
    ));
    assert!(co_once_prepared_on(true, [64, 8, 3, 3], a3, [1, 8, 14, 14]));
}

/// Both choices for a small-plane 1x1 conv (the GEMM with full-width FMA units, the
/// channel-vectorised kernel without) give the definition's values, each bit-identical at
/// 1, 2 and 4 threads.
#[test]
fn small_plane_pointwise_runs_right_on_either_choice() {
    let (xs, ws) = ([1, 512, 14, 14], [128, 512, 1, 1]);
    let PointwiseCase { x, w, b, a, want } = pointwise_case(xs, ws, 21);
    for wide in [true, false] {
        let pc = PreparedConv::new(&w, &ws, Some(&b), a.clone())
            .unwrap()
            .with_wide_fma(wide)
            .prepare_input(&xs)
            .unwrap();
        assert_eq!(pc.uses_co(&xs).unwrap(), !wide);
        assert_runs_match(&pc, &x, &xs, &want, 1e-4, &[1, 2, 4]);
    }
}

/// A 1x1 conv's random input, filter and bias (seeds `seed..seed + 3`) and its reference
/// output without an activation.
struct PointwiseCase {
    x: Vec<f32>,
    w: Vec<f32>,
    b: Vec<f32>,
    a: ConvAttrs,
    want: Vec<f32>,
}

fn pointwise_case(xs: [usize; 4], ws: [usize; 4], seed: u64) -> PointwiseCase {
    let x = rand_vec(xs.iter().product(), seed);
    let w = rand_vec(ws.iter().product(), seed + 1);
    let b = rand_vec(ws[0], seed + 2);
    let a = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, Some(&b), &a);
    PointwiseCase { x, w, b, a, want }
}

#[test]
fn long_pointwise_reduction_on_a_small_plane_runs_in_passes() {
    // K = 300: passes of 128, 128 and 44 input channels, the partial sums kept between
    // them; 60 output channels (a block and a cut one); a 6x7 plane (steps of 7, and a
    // short last one at 2 threads' bands). Same values as the reference, bit-identical
    // across thread counts.
    let (xs, ws) = ([1, 300, 6, 7], [60, 300, 1, 1]);
    let PointwiseCase { x, w, b, a, want } = pointwise_case(xs, ws, 11);
    let pc = PreparedConv::new(&w, &ws, Some(&b), a)
        .unwrap()
        .with_activation(UnaryOp::Relu)
        .prepare_input(&xs)
        .unwrap();
    assert!(pc.uses_co(&xs).unwrap());
    let want: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
    assert_runs_match(&pc, &x, &xs, &want, 1e-4, &[1, 2, 4]);
}

/// Whether a conv of filter shape `ws` (zero weights) takes the channel-vectorised kernel on
/// input `xs` once prepared for it, on a CPU without two full-width FMA units (AMD's Zen 4).
fn co_once_prepared(ws: [usize; 4], a: ConvAttrs, xs: [usize; 4]) -> bool {
    co_once_prepared_on(false, ws, a, xs)
}

/// [`co_once_prepared`] on a CPU with (`wide`) or without two full-width FMA units.
fn co_once_prepared_on(wide: bool, ws: [usize; 4], a: ConvAttrs, xs: [usize; 4]) -> bool {
    let w = vec![0.0; ws.iter().product()];
    PreparedConv::new(&w, &ws, None, a)
        .unwrap()
        .with_wide_fma(wide)
        .prepare_input(&xs)
        .unwrap()
        .uses_co(&xs)
        .unwrap()
}

/// A 3x3 pad-1 conv with bias and a fused `act` (reference `f`), prepared for `xs`, checked
/// at 1, 2 and 4 threads; returned so callers can assert the path it took.
fn fused_3x3_case(xs: [usize; 4], c_out: usize, act: UnaryOp, f: fn(f32) -> f32) -> PreparedConv {
    let ws = [c_out, xs[1], 3, 3];
    let x = rand_vec(xs.iter().product(), 6);
    let w = rand_vec(ws.iter().product(), 7);
    let b = rand_vec(c_out, 8);
    let a = attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, Some(&b), &a);
    let want: Vec<f32> = want.into_iter().map(f).collect();
    let pc = PreparedConv::new(&w, &ws, Some(&b), a)
        .unwrap()
        .with_activation(act)
        .prepare_input(&xs)
        .unwrap();
    assert_runs_match(&pc, &x, &xs, &want, 1e-4, &[1, 2, 4]);
    pc
}

#[test]
fn channel_vectorised_fused_activation_is_threads_invariant() {
    // Relu and Clip applied on the vectors it stores, LeakyRelu in a pass over the rows; 96
    // channels and 88 (a last block cut short).
    let xs = [1, 24, 14, 14];
    for c_out in [96, 88] {
        let pc = fused_3x3_case(xs, c_out, UnaryOp::Relu, |v| v.max(0.0));
        assert!(pc.uses_co(&xs).unwrap());
        let clip = UnaryOp::Clip { min: 0.0, max: 6.0 };
        let pc = fused_3x3_case(xs, c_out, clip, |v| v.clamp(0.0, 6.0));
        assert!(pc.uses_co(&xs).unwrap());
        let leaky = UnaryOp::LeakyRelu { alpha: 0.5 };
        let pc = fused_3x3_case(xs, c_out, leaky, |v| if v < 0.0 { 0.5 * v } else { v });
        assert!(pc.uses_co(&xs).unwrap());
    }
}

/// The direct stride-1 kernel applies Relu and Clip on the vectors it stores, other
/// activations in a pass over each block's rows.
#[test]
fn direct_fused_activation_is_threads_invariant() {
    let xs = [1, 7, 58, 60];
    let pc = fused_3x3_case(xs, 11, UnaryOp::Relu, |v| v.max(0.0));
    assert!(pc.uses_direct(&xs).unwrap());
    let clip = UnaryOp::Clip { min: 0.0, max: 6.0 };
    let pc = fused_3x3_case(xs, 11, clip, |v| v.clamp(0.0, 6.0));
    assert!(pc.uses_direct(&xs).unwrap());
    let leaky = UnaryOp::LeakyRelu { alpha: 0.5 };
    let pc = fused_3x3_case(xs, 11, leaky, |v| if v < 0.0 { 0.5 * v } else { v });
    assert!(pc.uses_direct(&xs).unwrap());
}

#[test]
fn empty_input_padded_to_a_plane_gives_the_bias() {
    // 0 x W input, 3x3 pad 2: a 2 x (W + 2) output of padding only, on the direct stride-1
    // (wide) and the channel-vectorised (narrow, 64 channels) paths.
    for (width, c_out, co) in [(60, 8, false), (20, 64, true)] {
        let xs = [1, 16, 0, width];
        let ws = [c_out, 16, 3, 3];
        let w = rand_vec(ws.iter().product(), 1);
        let b = rand_vec(c_out, 2);
        let a = attrs(&[3, 3], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 1);
        let (want, shape) = naive_conv(&[], &xs, &w, &ws, Some(&b), &a);
        assert_eq!(shape, [1, c_out, 2, width + 2]);
        let pc = PreparedConv::new(&w, &ws, Some(&b), a)
            .unwrap()
            .prepare_input(&xs)
            .unwrap();
        assert_eq!(pc.uses_co(&xs).unwrap(), co);
        assert_eq!(pc.uses_direct(&xs).unwrap(), !co);
        assert_runs_match(&pc, &[], &xs, &want, 0.0, &[1, 2]);
    }
}

#[test]
fn conv_fused_activation_and_one_shot() {
    let xs = [1, 4, 6, 6];
    let ws = [8, 4, 3, 3];
    let x = rand_vec(144, 1);
    let w = rand_vec(288, 2);
    let a = attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, None, &a);
    let pc = PreparedConv::new(&w, &ws, None, a.clone())
        .unwrap()
        .with_activation(UnaryOp::Relu);
    let mut out = vec![0.0; want.len()];
    let mut scratch = vec![0.0; pc.scratch_len(&xs, 1).unwrap()];
    pc.run(&x, &xs, &mut out, &mut scratch, 1).unwrap();
    let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
    assert_close(&out, &relu, 1e-5);
    conv(&x, &xs, &w, &ws, None, &a, &mut out, 2).unwrap();
    assert_close(&out, &want, 1e-5);
}

#[test]
fn pointwise_fused_activation_is_threads_invariant() {
    // The direct pointwise kernel applies the activation per block; grouped and not.
    for (xs, c_out, group) in [([1, 32, 9, 9], 40, 1), ([1, 32, 9, 9], 40, 4)] {
        let ws = [c_out, 32 / group, 1, 1];
        let x = rand_vec(xs.iter().product(), 3);
        let w = rand_vec(ws.iter().product(), 4);
        let b = rand_vec(c_out, 5);
        let a = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], group);
        let (want, _) = naive_conv(&x, &xs, &w, &ws, Some(&b), &a);
        let relu: Vec<f32> = want.iter().map(|v| v.max(0.0)).collect();
        let pc = PreparedConv::new(&w, &ws, Some(&b), a)
            .unwrap()
            .with_activation(UnaryOp::Relu);
        assert_runs_match(&pc, &x, &xs, &relu, 1e-5, &[1, 2]);
    }
}

/// A pointwise conv with few output channels (SqueezeNet's 16-channel squeezes) is split
/// between workers by bands of positions: the definition's result, bit-identical at 1, 2
/// and 4 threads, with the activation in registers (Clip) and in a pass after (LeakyRelu),
/// bands ending inside a block of positions (33x33).
#[rstest]
#[case(UnaryOp::Clip { min: -0.5, max: 0.5 })]
#[case(UnaryOp::LeakyRelu { alpha: 0.25 })]
fn pointwise_few_channels_split_by_positions(#[case] act: UnaryOp) {
    // K = 48: below the bar from which a narrowing conv on a large plane takes the GEMM.
    let (xs, ws) = ([1, 48, 33, 33], [16, 48, 1, 1]);
    let PointwiseCase { x, w, b, a, want } = pointwise_case(xs, ws, 13);
    let want: Vec<f32> = match act {
        UnaryOp::Clip { min, max } => want.iter().map(|v| v.clamp(min, max)).collect(),
        _ => want
            .iter()
            .map(|&v| if v < 0.0 { 0.25 * v } else { v })
            .collect(),
    };
    let pc = PreparedConv::new(&w, &ws, Some(&b), a)
        .unwrap()
        .with_activation(act);
    assert!(pc.uses_pointwise_rows(&xs).unwrap());
    assert_runs_match(&pc, &x, &xs, &want, 1e-5, &[1, 2, 4]);
}

#[test]
fn narrowing_pointwise_convs_on_large_planes_take_the_gemm() {
    let a = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    let rows = |c_out: usize, c_in: usize, hw: usize, group: usize| {
        let mut a = a.clone();
        a.group = group;
        let ws = [c_out, c_in / group, 1, 1];
        PreparedConv::new(&vec![0.0; ws.iter().product()], &ws, None, a)
            .unwrap()
            .uses_pointwise_rows(&[1, c_in, hw, hw])
            .unwrap()
    };
    // SqueezeNet's 64->16 and MobileNetV2's 96->24 squeezes on large planes: the GEMM.
    assert!(!rows(16, 64, 55, 1));
    assert!(!rows(24, 96, 56, 1));
    // Expanding, a short reduction, a small plane, or grouped: the direct kernel.
    assert!(rows(64, 16, 55, 1));
    assert!(rows(16, 32, 112, 1));
    assert!(rows(32, 128, 27, 1));
    assert!(rows(24, 96, 56, 4));
}

#[test]
fn pointwise_short_reduction_tiles_with_any_activation() {
    // K = 16: tiles of 384 positions (1600 = 4 tiles + a partial one), 14 channels (6 + 6 + 2),
    // Clip in registers and LeakyRelu in a pass over each tile.
    let xs = [1, 16, 40, 40];
    let ws = [14, 16, 1, 1];
    let x = rand_vec(xs.iter().product(), 21);
    let w = rand_vec(ws.iter().product(), 22);
    let b = rand_vec(14, 23);
    let a = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, Some(&b), &a);
    type Reference = fn(f32) -> f32;
    let acts: [(UnaryOp, Reference); 2] = [
        (
            UnaryOp::Clip {
                min: -0.1,
                max: 0.2,
            },
            |v| v.clamp(-0.1, 0.2),
        ),
        (UnaryOp::LeakyRelu { alpha: 0.25 }, |v| {
            if v < 0.0 {
                0.25 * v
            } else {
                v
            }
        }),
    ];
    for (act, f) in acts {
        let expect: Vec<f32> = want.iter().map(|&v| f(v)).collect();
        let pc = PreparedConv::new(&w, &ws, Some(&b), a.clone())
            .unwrap()
            .with_activation(act);
        assert_runs_match(&pc, &x, &xs, &expect, 1e-5, &[1, 2]);
    }
}

#[test]
fn shared_weights_match_owned_and_are_checked() {
    let xs = [1, 4, 6, 6];
    let ws = [8, 4, 3, 3];
    let x = rand_vec(144, 1);
    let w = rand_vec(288, 2);
    let a = attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
    let owned = PreparedConv::new(&w, &ws, None, a.clone()).unwrap();
    let shared_w: SharedWeights = std::sync::Arc::new(w.clone());
    let shared = PreparedConv::new_shared(shared_w, &ws, None, a.clone()).unwrap();
    let mut scratch = vec![0.0; owned.scratch_len(&xs, 2).unwrap()];
    let (mut o1, mut o2) = (vec![0.0; 288], vec![0.0; 288]);
    owned.run(&x, &xs, &mut o1, &mut scratch, 2).unwrap();
    shared.run(&x, &xs, &mut o2, &mut scratch, 2).unwrap();
    assert_eq!(o1, o2);
    // A filter of the wrong length is rejected as for `new`.
    let short: SharedWeights = std::sync::Arc::new(w[..100].to_vec());
    assert!(PreparedConv::new_shared(short, &ws, None, a).is_err());
}

#[test]
fn depthwise_fused_clip_is_thread_count_independent() {
    let xs = [1, 24, 15, 15];
    let ws = [24, 1, 3, 3];
    let x = rand_vec(xs.iter().product(), 5);
    let w = rand_vec(216, 6);
    let b = rand_vec(24, 7);
    let a = attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 24);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, Some(&b), &a);
    let clip: Vec<f32> = want.iter().map(|v| v.clamp(-0.1, 0.2)).collect();
    let pc = PreparedConv::new(&w, &ws, Some(&b), a)
        .unwrap()
        .with_activation(UnaryOp::Clip {
            min: -0.1,
            max: 0.2,
        });
    assert_runs_match(&pc, &x, &xs, &clip, 1e-5, &[1, 2, 4]);
}

/// Depthwise convs (the phase-split plane kernel: unrolled 3x3 and 5x5, the tap loop for
/// other sizes; and the small-plane "same" kernel) against the naive conv followed by the
/// activation, for activations the kernels apply on vectors (Relu, Clip) and ones they leave
/// to a pass over the plane.
#[rstest]
// The small-plane "same" kernel: 3x3 on MobileNet's 7x7 and 28x28 (the largest it takes),
// dilated, asymmetric pads that keep the size, 5 rows by 3 columns, a plane narrower than
// the kernel's reach, 1-D
#[case(&[1, 19, 7, 7], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 19))]
#[case(&[1, 3, 28, 28], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 3))]
#[case(&[2, 4, 13, 11], attrs(&[3, 3], &[1, 1], &[2, 2], &[2, 2], &[2, 2], 4))]
#[case(&[1, 3, 9, 10], attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 2], &[2, 0], 3))]
#[case(&[1, 2, 8, 6], attrs(&[5, 3], &[1, 1], &[1, 1], &[2, 1], &[2, 1], 2))]
#[case(&[1, 2, 2, 3], attrs(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 2))]
#[case(&[2, 5, 30], attrs(&[5], &[1], &[1], &[2], &[2], 5))]
// Edge planes: 1x1, a single row, dilation 3 reaching past a 5x5 plane, one channel
#[case(&[1, 3, 1, 1], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 3))]
#[case(&[1, 2, 1, 9], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 2))]
#[case(&[1, 2, 5, 5], attrs(&[3, 3], &[1, 1], &[3, 3], &[3, 3], &[3, 3], 2))]
#[case(&[1, 1, 12, 12], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1))]
#[case(&[1, 2, 1, 8], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 2))]
#[case(&[1, 1, 4, 4], attrs(&[5, 5], &[2, 2], &[1, 1], &[2, 2], &[2, 2], 1))]
// The stride-2 even-width kernel: MobileNet's 56x56 and 14x14, 5x5, no padding, an odd
// height, asymmetric pads, rows longer than a vector, a 2x2 plane
#[case(&[1, 2, 56, 56], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 2))]
#[case(&[1, 11, 14, 14], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 11))]
#[case(&[1, 4, 14, 14], attrs(&[5, 5], &[2, 2], &[1, 1], &[2, 2], &[2, 2], 4))]
#[case(&[1, 3, 8, 6], attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 3))]
#[case(&[1, 2, 9, 10], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 2))]
#[case(&[1, 3, 12, 20], attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 1], &[1, 0], 3))]
#[case(&[2, 2, 6, 40], attrs(&[3, 5], &[2, 2], &[1, 1], &[1, 2], &[1, 2], 2))]
#[case(&[1, 2, 2, 2], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 2))]
// The AVX-512 row kernel (stride 2, output rows of a whole vector or more): one exact
// vector, two with the tensor's last row read past, a partial last vector with asymmetric
// pads, no padding on an odd width, an odd output row count
#[case(&[1, 3, 33, 33], attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 3))]
#[case(&[2, 2, 35, 64], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 2))]
#[case(&[1, 2, 31, 48], attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 1], &[1, 0], 2))]
#[case(&[1, 2, 10, 45], attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 2))]
#[case(&[1, 3, 112, 112], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 3))]
// 3x3 stride 1 and 2, odd channel counts, planes narrower than a vector and wider than a
// block, asymmetric pads
#[case(&[1, 5, 7, 7], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 5))]
#[case(&[2, 3, 19, 70], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 0], &[0, 1], 3))]
#[case(&[1, 7, 14, 14], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 7))]
// 5x5 stride 1 and 2, no padding and large padding
#[case(&[1, 3, 12, 17], attrs(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 3))]
#[case(&[1, 9, 15, 15], attrs(&[5, 5], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 9))]
// 3x3 dilated, mixed strides, a 7x7, a 1x1 output plane, 1-D
#[case(&[1, 4, 11, 9], attrs(&[3, 3], &[1, 2], &[2, 3], &[2, 3], &[1, 0], 4))]
#[case(&[1, 3, 10, 10], attrs(&[7, 7], &[1, 1], &[1, 1], &[3, 3], &[3, 3], 3))]
#[case(&[1, 6, 3, 3], attrs(&[3, 3], &[2, 2], &[1, 1], &[0, 0], &[0, 0], 6))]
#[case(&[2, 5, 41], attrs(&[5], &[2], &[1], &[2], &[2], 5))]
fn depthwise_activations_match_naive(#[case] xs: &[usize], #[case] a: ConvAttrs) {
    let (ws, x, w, b) = case_tensors(xs, xs[1], &a, 21);
    let (plain, _) = naive_conv(&x, xs, &w, &ws, Some(&b), &a);
    let acts = [
        None,
        Some(UnaryOp::Relu),
        Some(UnaryOp::Clip {
            min: -0.3,
            max: 0.4,
        }),
        Some(UnaryOp::HardSwish),
        Some(UnaryOp::LeakyRelu { alpha: 0.1 }),
    ];
    for act in acts {
        let mut want = plain.clone();
        if let Some(act) = act {
            unary_f32_inplace(act, &mut want, 1).unwrap();
        }
        let mut pc = PreparedConv::new(&w, &ws, Some(&b), a.clone()).unwrap();
        if let Some(act) = act {
            pc = pc.with_activation(act);
        }
        assert_runs_match(&pc, &x, xs, &want, 1e-5, &[1, 2, 3]);
    }
}

#[test]
fn small_plane_and_stride_2_depthwise_kernels_are_chosen_by_shape() {
    #[cfg(target_arch = "x86_64")]
    let avx512 = pulp::x86::V4::try_new().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    let prepared = |xs: &[usize], a: ConvAttrs| {
        let mut ws = vec![xs[1], 1];
        ws.extend(&a.kernel);
        let w = vec![0.5; ws.iter().product()];
        PreparedConv::new(&w, &ws, None, a).unwrap()
    };
    let dw = |xs: &[usize], a: ConvAttrs| prepared(xs, a).uses_dw_same(xs).unwrap();
    let same3 = || attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 8);
    // On AVX-512 the channels-in-lanes kernel takes every 3x3 up to 56x56 first.
    assert_eq!(dw(&[1, 8, 7, 7], same3()), !avx512);
    assert_eq!(dw(&[1, 8, 28, 28], same3()), !avx512);
    for hw in [7, 28, 56] {
        let xs = [1, 8, hw, hw];
        assert_eq!(prepared(&xs, same3()).uses_dw_t(&xs).unwrap(), avx512);
    }
    let big = [1, 8, 57, 57];
    assert!(!prepared(&big, same3()).uses_dw_t(&big).unwrap());
    // A 5x5 keeps the 28x28 limit.
    let same5 = || attrs(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 8);
    for (hw, taken) in [(28, avx512), (29, false)] {
        let xs = [1, 8, hw, hw];
        assert_eq!(prepared(&xs, same5()).uses_dw_t(&xs).unwrap(), taken);
    }
    // Wider planes keep the phase-split kernel (faster there: 56x56 0.30 vs 0.26 ms).
    assert!(!dw(&[1, 8, 29, 29], same3()));
    // Strided, shrinking, or 7 kernel columns: not this kernel.
    assert!(!dw(
        &[1, 8, 14, 14],
        attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 8)
    ));
    assert!(!dw(
        &[1, 8, 14, 14],
        attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 8)
    ));
    assert!(!dw(
        &[1, 8, 14, 14],
        attrs(&[7, 7], &[1, 1], &[1, 1], &[3, 3], &[3, 3], 8)
    ));
    // Stride 2 on an even width takes the stride-2 kernel instead.
    let s2 = PreparedConv::new(
        &[0.5; 72],
        &[8, 1, 3, 3],
        None,
        attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 8),
    )
    .unwrap();
    // On AVX-512, outputs of at most 56x56 whose padded input fits 64x64 take the
    // channels-in-lanes kernel first.
    for hw in [14, 28, 56] {
        let xs = [1, 8, hw, hw];
        assert_eq!(s2.uses_dw_stride2(&xs).unwrap(), !avx512);
        assert_eq!(s2.uses_dw_t(&xs).unwrap(), avx512);
    }
    // A 5x5 at stride 8 onto 16x16 reads a 128x128 input: too large a grid for so few
    // outputs.
    let far = PreparedConv::new(
        &[0.5; 200],
        &[8, 1, 5, 5],
        None,
        attrs(&[5, 5], &[8, 8], &[1, 1], &[2, 2], &[2, 2], 8),
    )
    .unwrap();
    assert_eq!(far.uses_dw_t(&[1, 8, 32, 32]).unwrap(), avx512);
    assert!(!far.uses_dw_t(&[1, 8, 128, 128]).unwrap());
    assert!(!s2.uses_dw_stride2(&[1, 8, 15, 15]).unwrap());
    assert!(!s2.uses_dw_stride2(&[1, 8, 112, 112]).unwrap());
    // On AVX-512, output rows of a whole vector or more take the row kernel where the
    // channels-in-lanes grid would not fit.
    assert_eq!(s2.uses_dw_rows(&[1, 8, 112, 112]).unwrap(), avx512);
    assert!(!s2.uses_dw_t(&[1, 8, 112, 112]).unwrap());
    // With at least 32 channels a plain 3x3 takes it up to 112x112 (stride 1 and 2), not
    // beyond; with 16 (one block, one thread) not past 56x56.
    let dw3 = |c: usize, s: usize| {
        let a = attrs(&[3, 3], &[s, s], &[1, 1], &[1, 1], &[1, 1], c);
        PreparedConv::new(&vec![0.5; c * 9], &[c, 1, 3, 3], None, a).unwrap()
    };
    for (c, s, hw, taken) in [
        (32, 1, 112, avx512),
        (96, 2, 112, avx512),
        (32, 1, 113, false),
        (16, 1, 112, false),
        (16, 2, 112, false),
        (16, 1, 56, avx512),
    ] {
        let xs = [1, c, hw, hw];
        assert_eq!(
            dw3(c, s).uses_dw_t(&xs).unwrap(),
            taken,
            "{xs:?} stride {s}"
        );
    }
    assert!(!s2.uses_dw_rows(&[1, 8, 56, 56]).unwrap());
    // A grouped (not depthwise) conv never does.
    let w = vec![0.5; 8 * 2 * 9];
    let grouped = PreparedConv::new(
        &w,
        &[8, 2, 3, 3],
        None,
        attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 8),
    )
    .unwrap();
    assert!(!grouped.uses_dw_same(&[1, 16, 7, 7]).unwrap());
    assert!(!grouped.uses_dw_t(&[1, 16, 7, 7]).unwrap());
}

/// The channels-in-lanes kernel ([`super::conv_dw_t`]) against the naive conv: channel
/// counts that leave a partial block of 16 (and several blocks, threaded), kernels of any
/// size (the 3x3 on its register path), strides and dilations, pads that let windows reach
/// past the input, steps of 8 outputs running past a row's end, bands of output rows, no
/// bias, the largest planes it takes.
#[rstest]
#[case(&[1, 20, 7, 7], attrs(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 20), true)]
#[case(&[2, 37, 14, 14], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 37), true)]
#[case(&[1, 18, 13, 11], attrs(&[3, 5], &[1, 2], &[1, 1], &[0, 2], &[2, 1], 18), false)]
#[case(&[1, 16, 12, 12], attrs(&[3, 3], &[1, 1], &[2, 2], &[2, 2], &[2, 2], 16), true)]
#[case(&[1, 5, 10, 19], attrs(&[5, 5], &[3, 2], &[1, 2], &[1, 3], &[4, 0], 5), true)]
#[case(&[1, 33, 28, 28], attrs(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 33), true)]
#[case(&[1, 17, 15, 15], attrs(&[7, 7], &[2, 2], &[1, 1], &[3, 3], &[3, 3], 17), false)]
#[case(&[1, 3, 2, 2], attrs(&[5, 5], &[1, 1], &[1, 1], &[2, 2], &[2, 2], 3), true)]
#[case(&[1, 8, 32, 32], attrs(&[5, 5], &[8, 8], &[1, 1], &[2, 2], &[2, 2], 8), true)]
// 3x3 with the taps in registers: stride 1 and 2, bands of 2 (56 wide), 4 (28), 8 (10, cut
// at 9 rows) and whole planes (7x7), partial blocks of 16, asymmetric pads, batches
#[case(&[1, 35, 56, 56], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 35), true)]
#[case(&[2, 48, 28, 28], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 48), false)]
#[case(&[1, 17, 9, 10], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 0], &[1, 2], 17), true)]
#[case(&[1, 40, 7, 7], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 40), true)]
#[case(&[1, 33, 56, 56], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 33), true)]
#[case(&[1, 19, 29, 27], attrs(&[3, 3], &[2, 1], &[1, 1], &[0, 1], &[1, 1], 19), true)]
#[case(&[1, 16, 14, 14], attrs(&[3, 3], &[1, 2], &[1, 1], &[1, 1], &[1, 1], 16), false)]
// 3x3 on planes up to 112x112 with at least 32 channels: a partial block, stride 1 and 2,
// odd sizes
#[case(&[1, 35, 112, 112], attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 35), true)]
#[case(&[1, 40, 111, 113], attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 40), false)]
fn channels_in_lanes_depthwise_matches_naive(
    #[case] xs: &[usize],
    #[case] a: ConvAttrs,
    #[case] with_bias: bool,
) {
    let (ws, x, w, b) = case_tensors(xs, xs[1], &a, 31);
    let bias = with_bias.then_some(&b[..]);
    let (plain, _) = naive_conv(&x, xs, &w, &ws, bias, &a);
    #[cfg(target_arch = "x86_64")]
    let avx512 = pulp::x86::V4::try_new().is_some();
    #[cfg(not(target_arch = "x86_64"))]
    let avx512 = false;
    for act in [None, Some(UnaryOp::Relu), Some(UnaryOp::HardSwish)] {
        let mut want = plain.clone();
        if let Some(act) = act {
            unary_f32_inplace(act, &mut want, 1).unwrap();
        }
        let mut pc = PreparedConv::new(&w, &ws, bias, a.clone()).unwrap();
        if let Some(act) = act {
            pc = pc.with_activation(act);
        }
        assert_eq!(pc.uses_dw_t(xs).unwrap(), avx512, "{xs:?}");
        assert_runs_match(&pc, &x, xs, &want, 1e-5, &[1, 2, 3]);
    }
}

#[test]
fn depthwise_relu_and_clip_pass_nan_as_the_scalar_ops() {
    // A NaN input makes its window's outputs NaN before the activation: Relu turns them to 0
    // (as `f32::max(x, 0.0)`), Clip passes them through. The small-plane kernel, the
    // stride-2 row kernel and (AVX-512, a 7x7 output at stride 2) the channels-in-lanes one.
    for (hw, s) in [(6, 1), (40, 2), (14, 2)] {
        nan_through_activations(hw, s);
    }
}

fn nan_through_activations(hw: usize, s: usize) {
    let xs = [1, 2, hw, hw];
    let ws = [2, 1, 3, 3];
    let mut x = rand_vec(2 * hw * hw, 24);
    x[14] = f32::NAN;
    x[hw * hw + 3 * hw + 1] = f32::NAN;
    let w = rand_vec(18, 25);
    let a = attrs(&[3, 3], &[s, s], &[1, 1], &[1, 1], &[1, 1], 2);
    let (plain, _) = naive_conv(&x, &xs, &w, &ws, None, &a);
    for act in [
        UnaryOp::Relu,
        UnaryOp::Clip {
            min: -1.0,
            max: 1.0,
        },
    ] {
        let pc = PreparedConv::new(&w, &ws, None, a.clone())
            .unwrap()
            .with_activation(act);
        let mut out = vec![0.0; plain.len()];
        let mut scratch = vec![0.0; pc.scratch_len(&xs, 1).unwrap()];
        pc.run(&x, &xs, &mut out, &mut scratch, 1).unwrap();
        let mut want = plain.clone();
        unary_f32_inplace(act, &mut want, 1).unwrap();
        assert!(plain.iter().any(|v| v.is_nan()));
        assert_close(&out, &want, 1e-5);
    }
}

#[test]
fn conv_rejects_bad_arguments() {
    let w = vec![0.0; 2 * 3 * 9];
    let a = attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    assert!(PreparedConv::new(
        &w,
        &[2, 3, 3, 3],
        None,
        attrs(&[3, 3], &[0, 1], &[1, 1], &[0, 0], &[0, 0], 1)
    )
    .is_err());
    assert!(PreparedConv::new(
        &w,
        &[2, 3, 3, 3],
        None,
        attrs(&[3, 2], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1)
    )
    .is_err());
    assert!(PreparedConv::new(&w, &[2, 3, 3, 3], Some(&[0.0]), a.clone()).is_err());
    let pc = PreparedConv::new(&w, &[2, 3, 3, 3], None, a).unwrap();
    assert!(pc.output_shape(&[1, 4, 5, 5]).is_err());
    assert!(pc.output_shape(&[1, 3, 2, 5]).is_err());
    let mut out = vec![0.0; 2 * 9];
    let err = pc.run(&[0.0; 75], &[1, 3, 5, 5], &mut out, &mut [], 1);
    assert!(matches!(err, Err(KernelError::ScratchTooSmall { .. })));
}

#[test]
fn auto_pad_same() {
    assert_eq!(auto_pad(AutoPad::SameUpper, 5, 3, 2, 1), (1, 1));
    assert_eq!(auto_pad(AutoPad::SameUpper, 4, 3, 2, 1), (0, 1));
    assert_eq!(auto_pad(AutoPad::SameLower, 4, 3, 2, 1), (1, 0));
    assert_eq!(auto_pad(AutoPad::Valid, 4, 3, 2, 1), (0, 0));
}

/// Direct-definition ConvTranspose (scatter form).
fn naive_conv_transpose(
    x: &[f32],
    xs: &[usize],
    w: &[f32],
    ws: &[usize],
    b: Option<&[f32]>,
    a: &ConvTransposeAttrs,
) -> Vec<f32> {
    let c = &a.conv;
    let osp = conv_transpose_output_spatial(&xs[2..], a).unwrap();
    let (n, c_in, cog) = (xs[0], xs[1], ws[1]);
    let cig = c_in / c.group;
    let c_out = cog * c.group;
    let (i3, o3, k3) = (p3(&xs[2..], 1), p3(&osp, 1), p3(&c.kernel, 1));
    let (s3, d3, pb3) = (p3(&c.strides, 1), p3(&c.dilations, 1), p3(&c.pads_begin, 0));
    let op: usize = o3.iter().product();
    let mut out = vec![0.0f64; n * c_out * op];
    for bn in 0..n {
        for ci in 0..c_in {
            let g = ci / cig;
            for id in 0..i3[0] {
                for ih in 0..i3[1] {
                    for iw in 0..i3[2] {
                        let xv =
                            x[(((bn * c_in + ci) * i3[0] + id) * i3[1] + ih) * i3[2] + iw] as f64;
                        for cl in 0..cog {
                            let co = g * cog + cl;
                            for kd in 0..k3[0] {
                                for kh in 0..k3[1] {
                                    for kw in 0..k3[2] {
                                        let od =
                                            (id * s3[0] + kd * d3[0]) as isize - pb3[0] as isize;
                                        let oh =
                                            (ih * s3[1] + kh * d3[1]) as isize - pb3[1] as isize;
                                        let ow =
                                            (iw * s3[2] + kw * d3[2]) as isize - pb3[2] as isize;
                                        if od < 0
                                            || oh < 0
                                            || ow < 0
                                            || od >= o3[0] as isize
                                            || oh >= o3[1] as isize
                                            || ow >= o3[2] as isize
                                        {
                                            continue;
                                        }
                                        let wv = w[(((ci * cog + cl) * k3[0] + kd) * k3[1] + kh)
                                            * k3[2]
                                            + kw]
                                            as f64;
                                        out[((bn * c_out + co) * o3[0] + od as usize)
                                            * o3[1]
                                            * o3[2]
                                            + oh as usize * o3[2]
                                            + ow as usize] += xv * wv;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out.iter()
        .enumerate()
        .map(|(i, v)| (v + b.map_or(0.0, |b| b[(i / op) % c_out] as f64)) as f32)
        .collect()
}

#[rstest]
#[case(&[1, 2, 3, 3], 3, attrs(&[3, 3], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), &[0, 0])]
#[case(&[2, 4, 4, 5], 2, attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 0], &[1, 1], 2), &[1, 0])]
#[case(&[1, 3, 5, 4], 4, attrs(&[2, 3], &[2, 1], &[2, 1], &[0, 1], &[1, 1], 1), &[1, 0])]
#[case(&[1, 2, 7], 3, attrs(&[4], &[3], &[1], &[1], &[2], 1), &[2])]
fn conv_transpose_matches_naive(
    #[case] xs: &[usize],
    #[case] cog: usize,
    #[case] c: ConvAttrs,
    #[case] op: &[usize],
) {
    let a = ConvTransposeAttrs {
        conv: c,
        output_padding: op.to_vec(),
    };
    let mut ws = vec![xs[1], cog];
    ws.extend(&a.conv.kernel);
    let x = rand_vec(xs.iter().product(), 21);
    let w = rand_vec(ws.iter().product(), 22);
    let b = rand_vec(cog * a.conv.group, 23);
    let want = naive_conv_transpose(&x, xs, &w, &ws, Some(&b), &a);
    for threads in [1, 2] {
        let mut out = vec![f32::NAN; want.len()];
        conv_transpose(&x, xs, &w, &ws, Some(&b), &a, &mut out, threads).unwrap();
        assert_close(&out, &want, 1e-4);
    }
}

#[test]
fn conv_transpose_onnx_example() {
    // ONNX ConvTranspose example: x = 0..9 as [1,1,3,3], W = ones [1,2,3,3].
    let x: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let w = vec![1.0; 18];
    let a = ConvTransposeAttrs {
        conv: ConvAttrs::new(&[3, 3]),
        output_padding: vec![0, 0],
    };
    let mut out = vec![0.0; 2 * 25];
    conv_transpose(&x, &[1, 1, 3, 3], &w, &[1, 2, 3, 3], None, &a, &mut out, 1).unwrap();
    let plane = [
        0., 1., 3., 3., 2., 3., 8., 15., 12., 7., 9., 21., 36., 27., 15., 9., 20., 33., 24., 13.,
        6., 13., 21., 15., 8.,
    ];
    assert_eq!(&out[..25], &plane);
    assert_eq!(&out[25..], &plane);
}

fn naive_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum::<f64>() as f32;
        }
    }
    c
}

#[rstest]
#[case(false, false, None)]
#[case(true, false, Some(vec![1usize]))]
#[case(false, true, Some(vec![9]))]
#[case(true, true, Some(vec![7, 1]))]
#[case(false, false, Some(vec![7, 9]))]
fn gemm_matches_naive(#[case] ta: bool, #[case] tb: bool, #[case] c_shape: Option<Vec<usize>>) {
    let (m, k, n) = (7, 5, 9);
    let a = rand_vec(m * k, 1);
    let b = rand_vec(k * n, 2);
    // Transposed storage of the same logical matrices.
    let at: Vec<f32> = (0..m * k).map(|i| a[(i % m) * k + i / m]).collect();
    let bt: Vec<f32> = (0..k * n).map(|i| b[(i % k) * n + i / k]).collect();
    let attrs = GemmAttrs {
        alpha: 0.5,
        beta: 2.0,
        trans_a: ta,
        trans_b: tb,
    };
    let c = c_shape.as_ref().map(|s| rand_vec(s.iter().product(), 3));
    let ab = naive_matmul(&a, &b, m, k, n);
    let want: Vec<f32> = (0..m * n)
        .map(|i| {
            let cv = match (&c, &c_shape) {
                (Some(c), Some(s)) => c[bcast_index(&[i / n, i % n], s)],
                _ => 0.0,
            };
            0.5 * ab[i] + 2.0 * cv
        })
        .collect();
    let (ad, ash) = if ta { (&at, [k, m]) } else { (&a, [m, k]) };
    let (bd, bsh) = if tb { (&bt, [n, k]) } else { (&b, [k, n]) };
    let mut out = vec![f32::NAN; m * n];
    let cin = c.as_deref().zip(c_shape.as_deref());
    gemm(ad, &ash, bd, &bsh, cin, &attrs, &mut out, 1).unwrap();
    assert_close(&out, &want, 1e-5);
}

/// A single row against `B` stored `[N, K]` (the dot-product path): reductions with and
/// without a vector tail, row counts that leave 0-3 rows after the groups of four, a bias.
#[rstest]
#[case(5, 1)]
#[case(32, 4)]
#[case(37, 7)]
#[case(100, 9)]
#[case(257, 6)]
fn gemm_single_row_trans_b_matches_naive(#[case] k: usize, #[case] n: usize) {
    let a = rand_vec(k, 6);
    let b = rand_vec(k * n, 7);
    let bt: Vec<f32> = (0..k * n).map(|i| b[(i % k) * n + i / k]).collect();
    let c = rand_vec(n, 8);
    let ab = naive_matmul(&a, &b, 1, k, n);
    let want: Vec<f32> = (0..n).map(|j| 0.5 * ab[j] + 2.0 * c[j]).collect();
    let attrs = GemmAttrs {
        alpha: 0.5,
        beta: 2.0,
        trans_a: false,
        trans_b: true,
    };
    let mut out = vec![f32::NAN; n];
    gemm(
        &a,
        &[1, k],
        &bt,
        &[n, k],
        Some((&c, &[n])),
        &attrs,
        &mut out,
        1,
    )
    .unwrap();
    assert_close(&out, &want, 1e-5);
}

#[test]
fn gemm_is_thread_count_independent() {
    // Large enough to be tiled (rows, then the single-row column split, with B stored
    // [K, N] and [N, K]).
    for (m, k, n, tb) in [
        (300, 200, 150, false),
        (1, 2048, 1000, false),
        (1, 2055, 1003, true),
        // Above the dot products' own split, below the GEMM's.
        (1, 520, 300, true),
    ] {
        let a = rand_vec(m * k, 4);
        let b = rand_vec(k * n, 5);
        let want = naive_matmul(&a, &b, m, k, n);
        let bt: Vec<f32> = (0..k * n).map(|i| b[(i % k) * n + i / k]).collect();
        let (bd, bsh) = if tb { (&bt, [n, k]) } else { (&b, [k, n]) };
        let mut first: Option<Vec<f32>> = None;
        for threads in [1, 2, 3, 4] {
            let mut out = vec![0.0; m * n];
            gemm(
                &a,
                &[m, k],
                bd,
                &bsh,
                None,
                &GemmAttrs {
                    trans_b: tb,
                    ..GemmAttrs::default()
                },
                &mut out,
                threads,
            )
            .unwrap();
            assert_close(&out, &want, 1e-4);
            match &first {
                None => first = Some(out),
                Some(f) => assert_bits_eq(&out, f),
            }
        }
    }
}

#[rstest]
#[case(&[3, 4], &[4, 5], &[3, 5])]
#[case(&[4], &[4, 5], &[5])]
#[case(&[3, 4], &[4], &[3])]
#[case(&[4], &[4], &[])]
#[case(&[2, 3, 4], &[4, 5], &[2, 3, 5])]
#[case(&[2, 1, 3, 4], &[5, 4, 2], &[2, 5, 3, 2])]
#[case(&[4], &[3, 4, 2], &[3, 2])]
// batches folded into the rows of one GEMM: m = 1 (sequence-first activations), a unit
// batch on the weights, and one large enough to tile across threads
#[case(&[6, 1, 4], &[4, 5], &[6, 1, 5])]
#[case(&[2, 3, 2, 4], &[1, 4, 5], &[2, 3, 2, 5])]
#[case(&[96, 1, 160], &[160, 200], &[96, 1, 200])]
fn matmul_matches_naive(#[case] ash: &[usize], #[case] bsh: &[usize], #[case] osh: &[usize]) {
    assert_eq!(matmul_output_shape(ash, bsh).unwrap(), osh);
    let a = rand_vec(ash.iter().product(), 6);
    let b = rand_vec(bsh.iter().product(), 7);
    // Reference: promote 1-D operands, broadcast batches, multiply each pair.
    let a2: Vec<usize> = if ash.len() == 1 {
        vec![1, ash[0]]
    } else {
        ash.to_vec()
    };
    let b2: Vec<usize> = if bsh.len() == 1 {
        vec![bsh[0], 1]
    } else {
        bsh.to_vec()
    };
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let batch = broadcast_shape(&a2[..a2.len() - 2], &b2[..b2.len() - 2]).unwrap();
    let nb: usize = batch.iter().product();
    let mut want = Vec::new();
    for bi in 0..nb {
        let idx = unravel(bi, &batch);
        let ao = bcast_index(&idx, &a2[..a2.len() - 2]) * m * k;
        let bo = bcast_index(&idx, &b2[..b2.len() - 2]) * k * n;
        want.extend(naive_matmul(
            &a[ao..ao + m * k],
            &b[bo..bo + k * n],
            m,
            k,
            n,
        ));
    }
    let mut first: Option<Vec<f32>> = None;
    for threads in [1, 2, 3] {
        let mut out = vec![f32::NAN; want.len()];
        matmul(&a, ash, &b, bsh, &mut out, threads).unwrap();
        assert_close(&out, &want, 1e-4);
        match &first {
            None => first = Some(out),
            Some(f) => assert_bits_eq(&out, f),
        }
    }
    assert!(matmul(&a, ash, &b, &[7, 7], &mut [0.0; 1], 1).is_err());
}

/// A [`CoRows`](super::conv_co::CoRows) over `rows` in one pass over the `offs` taps, with no
/// activation, no prefetch and no residual (tests override the fields they vary).
fn co_rows<'a, 'b>(
    packed: &'a super::conv_co::CoPacked,
    x: &'a [f32],
    offs: &'a [usize],
    bases: &'a [usize],
    rows: &'a mut [&'b mut [f32]],
    partial: &'a mut [f32],
) -> super::conv_co::CoRows<'a, 'b> {
    super::conv_co::CoRows {
        packed,
        first_block: 0,
        x,
        offs,
        bases,
        rows,
        act: super::conv::DwAct::None,
        taps_per_pass: offs.len(),
        partial,
        prefetch: false,
        res: super::conv::ResRows::None,
    }
}

/// Steps of 8 and 7 positions cover every count from 49 on exactly, and never compute more
/// positions than steps of one size would; the partial sums fit every step size.
#[test]
fn channel_vectorised_steps_cover_the_positions() {
    use super::conv_co::{co_partial_len, eights_up_to, CO_BLOCK};
    for p in 1..=4096 {
        // The partial sums hold every step's accumulators, AVX2's steps of 3 too.
        assert!(co_partial_len(p) >= p.div_ceil(3) * 3 * CO_BLOCK, "{p}");
        let split = eights_up_to(p);
        assert!(split <= p, "{p}");
        assert_eq!(split % 8, 0, "{p}: {split}");
        let computed = split + (p - split).div_ceil(7) * 7;
        let one_size = p.div_ceil(8) * 8;
        assert!(
            computed <= one_size.min(p.div_ceil(7) * 7),
            "{p}: {computed}"
        );
        if p >= 49 {
            assert_eq!(computed, p, "{p}");
        }
    }
    assert_eq!(eights_up_to(169), 120);
    assert_eq!(eights_up_to(196), 168);
    assert_eq!(eights_up_to(49), 0);
    assert_eq!(eights_up_to(784), 784);
}

/// The channel-vectorised kernel in several passes over the taps (partial sums parked in
/// between, as on VGG's 512-channel 28x28 and 14x14 convs) gives the one-pass result
/// bit for bit: even and uneven passes, steps of two sizes (6x6 = 36 positions as one step
/// of 8 and four of 7 under AVX-512), two blocks with the second cut at 40 channels, and Relu
/// applied at the end.
#[test]
fn channel_vectorised_passes_match_one_pass_bitwise() {
    use super::conv::DwAct;
    use super::conv_co::{co_partial_len, CoPacked, CoRows};
    use super::conv_direct::tap_offsets;
    let (c_in, c_out, hp, wp, ho, wo) = (5, 40, 8, 8, 6, 6);
    let kdim = c_in * 9;
    let w = rand_vec(c_out * kdim, 31);
    let bias = rand_vec(c_out, 32);
    let x = rand_vec(c_in * hp * wp, 33);
    let packed = CoPacked::new(&w, c_out, kdim, Some(&bias));
    let offs = tap_offsets(c_in, hp, wp, [3, 3], [1, 1]);
    let bases: Vec<usize> = (0..ho * wo).map(|q| (q / wo) * wp + q % wo).collect();
    let p = bases.len();
    let run = |taps_per_pass: usize, prefetch: bool| {
        let mut out = vec![f32::NAN; c_out * p];
        let mut partial = vec![f32::NAN; co_partial_len(p)];
        let mut rows: Vec<&mut [f32]> = out.chunks_mut(p).collect();
        pulp::Arch::new().dispatch(CoRows {
            act: DwAct::Relu,
            taps_per_pass,
            prefetch,
            ..co_rows(&packed, &x, &offs, &bases, &mut rows, &mut partial)
        });
        out
    };
    let one = run(kdim, false);
    // Against the definition: the one pass is a convolution with bias and Relu.
    for co in 0..c_out {
        for (q, &base) in bases.iter().enumerate() {
            let mut want = bias[co] as f64;
            for (k, &off) in offs.iter().enumerate() {
                want += w[co * kdim + k] as f64 * x[base + off] as f64;
            }
            let got = one[co * p + q];
            assert!(
                (got as f64 - want.max(0.0)).abs() < 1e-4,
                "{co} {q}: {got} vs {want}"
            );
        }
    }
    // Passes with the next pass's prefetch (which reaches past the packed filter at the
    // last block) and without.
    for (taps, prefetch) in [
        (9, true),
        (18, false),
        (7, true),
        (1, true),
        (kdim - 1, false),
    ] {
        let passes = run(taps, prefetch);
        assert!(
            one.iter()
                .zip(&passes)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{taps} taps per pass differ from one pass"
        );
    }
}

#[test]
fn channel_vectorised_stores_reach_every_row_and_position() {
    // The results' way out of the registers for whole steps of 8 and 7 positions and the
    // short last step (100 positions: steps of 8, the last of 4; 169: steps of 7, the last
    // of 1), in whole blocks and one cut at 28 of 32 rows; output pre-filled with NaN, so a
    // position or row the store misses fails.
    use super::conv_co::{co_partial_len, CoPacked};
    let c_in = 3;
    for (p, c_out) in [
        (100, 64),
        (100, 60),
        (169, 64),
        (169, 60),
        (49, 32),
        (64, 60),
    ] {
        let kdim = c_in;
        let w = rand_vec(c_out * kdim, 41);
        let bias = rand_vec(c_out, 42);
        let x = rand_vec(c_in * p, 43);
        let packed = CoPacked::new(&w, c_out, kdim, Some(&bias));
        // A 1x1 conv: tap k reads input channel k.
        let offs: Vec<usize> = (0..c_in).map(|k| k * p).collect();
        let bases: Vec<usize> = (0..p).collect();
        let mut out = vec![f32::NAN; c_out * p];
        let mut partial = vec![0.0; co_partial_len(p)];
        let mut rows: Vec<&mut [f32]> = out.chunks_mut(p).collect();
        pulp::Arch::new().dispatch(co_rows(&packed, &x, &offs, &bases, &mut rows, &mut partial));
        for co in 0..c_out {
            for q in 0..p {
                let mut want = bias[co];
                for k in 0..c_in {
                    want = x[k * p + q].mul_add(w[co * kdim + k], want);
                }
                let got = out[co * p + q];
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "p {p}, channel {co}, position {q}"
                );
            }
        }
    }
}

/// The channel-vectorised kernel's residual epilogue, from its own rows and in place, gives
/// `relu((bias + taps) + r)` bit for bit on every instruction set it runs under (AVX-512's
/// transposing store, AVX2's and the scalar loops): whole steps of 8 and of 7 positions, a
/// short last step, and a block cut at 28 of 32 rows (a missing row takes the element-wise
/// path).
#[test]
fn channel_vectorised_residual_matches_the_definition_on_every_instruction_set() {
    use super::conv::DwAct;
    use super::conv::ResRows;
    use super::conv_co::{co_partial_len, CoPacked, CoRows};
    let c_in = 3;
    for (p, c_out) in [(100, 64), (49, 60), (169, 32)] {
        let w = rand_vec(c_out * c_in, 51);
        let bias = rand_vec(c_out, 52);
        let x = rand_vec(c_in * p, 53);
        let r = rand_vec(c_out * p, 54);
        let packed = CoPacked::new(&w, c_out, c_in, Some(&bias));
        let offs: Vec<usize> = (0..c_in).map(|k| k * p).collect();
        let bases: Vec<usize> = (0..p).collect();
        let want: Vec<f32> = (0..c_out * p)
            .map(|i| {
                let (co, q) = (i / p, i % p);
                let mut acc = bias[co];
                for k in 0..c_in {
                    acc = x[k * p + q].mul_add(w[co * c_in + k], acc);
                }
                (acc + r[i]).max(0.0)
            })
            .collect();
        let run = |in_place: bool, isa: &str| {
            let mut out = if in_place {
                r.clone()
            } else {
                vec![f32::NAN; c_out * p]
            };
            let mut partial = vec![0.0; co_partial_len(p)];
            let mut rows: Vec<&mut [f32]> = out.chunks_mut(p).collect();
            let k = CoRows {
                act: DwAct::Relu,
                res: if in_place {
                    ResRows::InPlace
                } else {
                    ResRows::Separate {
                        data: &r,
                        at: 0,
                        plane: p,
                    }
                },
                ..co_rows(&packed, &x, &offs, &bases, &mut rows, &mut partial)
            };
            match isa {
                #[cfg(target_arch = "x86_64")]
                "avx512" => match pulp::x86::V4::try_new() {
                    Some(v4) => pulp::Simd::vectorize(v4, k),
                    None => return None,
                },
                #[cfg(target_arch = "x86_64")]
                "avx2" => match pulp::x86::V3::try_new() {
                    Some(v3) => pulp::Simd::vectorize(v3, k),
                    None => return None,
                },
                _ => pulp::Simd::vectorize(pulp::Scalar::new(), k),
            }
            Some(out)
        };
        for isa in ["avx512", "avx2", "scalar"] {
            for in_place in [false, true] {
                let Some(got) = run(in_place, isa) else {
                    continue;
                };
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        g.to_bits(),
                        w.to_bits(),
                        "{isa}, in place {in_place}, p {p}, channel {}, position {}",
                        i / p,
                        i % p
                    );
                }
            }
        }
    }
}

#[rstest]
// Even plane, pad 1, Relu fused in the output transform.
#[case([1, 128, 28, 28], 64, [1, 1, 1, 1], Some(UnaryOp::Relu))]
// Odd plane (the last tile row and column cut), 92 channels (a block cut at 28 of 32
// rows), a batch of 2.
#[case([2, 130, 29, 31], 92, [1, 1, 1, 1], None)]
// No padding (the tile grid padded at the end only), LeakyRelu applied afterwards.
#[case([1, 128, 31, 30], 64, [0, 0, 0, 0], Some(UnaryOp::LeakyRelu { alpha: 0.25 }))]
// Asymmetric pads, rows of more than one chunk of tiles.
#[case([1, 128, 60, 58], 64, [2, 0, 1, 2], Some(UnaryOp::Clip { min: -0.5, max: 0.5 }))]
// Tiles in lanes (fewer than 128 input channels): a 27x27 plane in one chunk, its input
// and output channels split between workers.
#[case([1, 32, 27, 27], 64, [1, 1, 1, 1], Some(UnaryOp::Relu))]
// One chunk, 70 channels (a last block of 4), odd extents, a batch of 2.
#[case([2, 48, 27, 29], 70, [1, 1, 1, 1], None)]
// SqueezeNet's 16->64 on 55x55: four chunks of 196 tiles, each ending in a short vector.
#[case([1, 16, 55, 55], 64, [1, 1, 1, 1], Some(UnaryOp::Relu))]
// DenseNet's 128->32 on 56x56: 128 input channels, but too few outputs for the
// channel-vectorised products.
#[case([1, 128, 56, 56], 32, [1, 1, 1, 1], None)]
// Several chunks of tile rows, LeakyRelu applied afterwards.
#[case([1, 64, 56, 56], 64, [1, 1, 1, 1], Some(UnaryOp::LeakyRelu { alpha: 0.25 }))]
// No padding, Clip.
#[case([1, 96, 30, 29], 96, [0, 0, 0, 0], Some(UnaryOp::Clip { min: -0.5, max: 0.5 }))]
fn winograd_matches_the_definition_and_is_threads_invariant(
    #[case] xs: [usize; 4],
    #[case] c_out: usize,
    #[case] pads: [usize; 4],
    #[case] act: Option<UnaryOp>,
) {
    let ws = [c_out, xs[1], 3, 3];
    let x = rand_vec(xs.iter().product(), 51);
    let w = rand_vec(ws.iter().product(), 52);
    let b = rand_vec(c_out, 53);
    let a = attrs(&[3, 3], &[1, 1], &[1, 1], &pads[..2], &pads[2..], 1);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, Some(&b), &a);
    let want: Vec<f32> = match act {
        Some(UnaryOp::Relu) => want.iter().map(|v| v.max(0.0)).collect(),
        Some(UnaryOp::LeakyRelu { alpha }) => want
            .iter()
            .map(|&v| if v < 0.0 { alpha * v } else { v })
            .collect(),
        Some(UnaryOp::Clip { min, max }) => want.iter().map(|v| v.clamp(min, max)).collect(),
        _ => want,
    };
    let mut pc = PreparedConv::new(&w, &ws, Some(&b), a).unwrap();
    if let Some(act) = act {
        pc = pc.with_activation(act);
    }
    let pc = pc.prepare_input(&xs).unwrap();
    assert!(pc.uses_wino(&xs).unwrap(), "{xs:?} -> {c_out}");
    // Transforms reorder the sums: rounding-level differences only.
    assert_runs_match(&pc, &x, &xs, &want, 1e-4, &[1, 2, 4]);
}

/// A classifier written as a 1x1 conv on a 1x1 plane (DenseNet's) runs as dot products over
/// the weights' rows: the definition's result, bit-identical at any thread count (the rows
/// are cut in two above a size), with and without bias, with a fused activation, batch 2.
#[rstest]
#[case(1024, 1000, true, Some(UnaryOp::Relu))]
#[case(37, 21, false, None)]
fn classifier_conv_on_a_1x1_plane_runs_as_dot_products(
    #[case] c_in: usize,
    #[case] c_out: usize,
    #[case] with_bias: bool,
    #[case] act: Option<UnaryOp>,
) {
    let xs = [2, c_in, 1, 1];
    let ws = [c_out, c_in, 1, 1];
    let x = rand_vec(2 * c_in, 61);
    let w = rand_vec(c_out * c_in, 62);
    let b = rand_vec(c_out, 63);
    let bias = with_bias.then_some(&b[..]);
    let a = attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1);
    let (want, _) = naive_conv(&x, &xs, &w, &ws, bias, &a);
    let want: Vec<f32> = match act {
        Some(UnaryOp::Relu) => want.iter().map(|v| v.max(0.0)).collect(),
        _ => want,
    };
    let mut pc = PreparedConv::new(&w, &ws, bias, a).unwrap();
    if let Some(act) = act {
        pc = pc.with_activation(act);
    }
    let pc = pc.prepare_input(&xs).unwrap();
    assert!(pc.uses_dot(&xs).unwrap());
    assert!(
        !pc.uses_dot(&[1, c_in, 2, 1]).unwrap(),
        "a 2x1 plane is no dot case"
    );
    assert_runs_match(&pc, &x, &xs, &want, 1e-4, &[1, 2, 4]);
}

#[test]
fn winograd_is_chosen_by_shape() {
    let a3 = attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1);
    let wino = |ws: [usize; 4], a: ConvAttrs, xs: [usize; 4]| {
        let w = vec![0.0; ws.iter().product()];
        PreparedConv::new(&w, &ws, None, a)
            .unwrap()
            .prepare_input(&xs)
            .unwrap()
            .uses_wino(&xs)
            .unwrap()
    };
    assert!(wino([256, 256, 3, 3], a3.clone(), [1, 256, 56, 56]));
    assert!(wino([128, 128, 3, 3], a3.clone(), [1, 128, 28, 28]));
    // With tiles in lanes from 16 input channels, 64 output channels and 27x27.
    assert!(wino([64, 64, 3, 3], a3.clone(), [1, 64, 56, 56]));
    assert!(wino([256, 64, 3, 3], a3.clone(), [1, 64, 27, 27]));
    assert!(wino([64, 16, 3, 3], a3.clone(), [1, 16, 55, 55]));
    assert!(!wino([64, 8, 3, 3], a3.clone(), [1, 8, 55, 55]));
    assert!(!wino([32, 64, 3, 3], a3.clone(), [1, 64, 56, 56]));
    assert!(!wino([256, 64, 3, 3], a3.clone(), [1, 64, 26, 26]));
    // Too few input or output channels, too small a plane, too large a filter, stride 2.
    assert!(!wino([16, 128, 3, 3], a3.clone(), [1, 128, 56, 56]));
    // One block of 32 output channels (DenseNet's growth convs): with tiles in lanes, and
    // only from 56x56.
    assert!(wino([32, 128, 3, 3], a3.clone(), [1, 128, 56, 56]));
    assert!(!wino([32, 128, 3, 3], a3.clone(), [1, 128, 28, 28]));
    assert!(!wino([16, 128, 3, 3], a3.clone(), [1, 128, 56, 56]));
    assert!(wino([256, 128, 3, 3], a3.clone(), [1, 128, 14, 14]));
    assert!(!wino([256, 128, 3, 3], a3.clone(), [1, 128, 13, 13]));
    assert!(!wino([512, 512, 3, 3], a3.clone(), [1, 512, 14, 14]));
    assert!(wino([512, 512, 3, 3], a3.clone(), [1, 512, 28, 28]));
    assert!(!wino([1024, 512, 3, 3], a3.clone(), [1, 512, 28, 28]));
    let s2 = attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 1);
    assert!(!wino([128, 128, 3, 3], s2, [1, 128, 56, 56]));
    // Without prepare_input the conv runs the other paths.
    let pc = PreparedConv::new(&vec![0.0; 128 * 128 * 9], &[128, 128, 3, 3], None, a3).unwrap();
    assert!(!pc.uses_wino(&[1, 128, 28, 28]).unwrap());
}

/// A residual added in the epilogue (`act(conv(x) + r)`) gives the bits of the conv, then an
/// Add, then the activation, on every path that takes it (direct pointwise, grouped
/// pointwise, GEMM tiles over a plane and over im2col tiles, short-reduction im2col tiles,
/// the channel-vectorised kernel), from its own memory or in place, at any thread count and
/// over a batch.
#[rstest]
#[case(&[2, 64, 14, 14], 96, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
// An input of 400 KB: workers split the positions, not the channel blocks.
#[case(&[1, 64, 40, 40], 96, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 24, 14, 14], 36, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 4), false)]
#[case(&[1, 256, 14, 14], 160, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[2, 200, 7, 7], 40, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), false)]
#[case(&[1, 3, 33, 31], 16, attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 1), true)]
#[case(&[1, 64, 15, 15], 40, attrs(&[3, 3], &[2, 2], &[1, 1], &[1, 1], &[1, 1], 1), false)]
// The channel-vectorised kernel: a long 1x1 reduction on 7x7 (passes of 128 channels, steps
// of 7) over a batch, and a 3x3 on 9x9 (a short last step) whose workers split positions.
#[case(&[2, 384, 7, 7], 96, attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1), true)]
#[case(&[1, 16, 9, 9], 64, attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 1), false)]
fn residual_epilogue_matches_conv_then_add(
    #[case] xs: &[usize],
    #[case] c_out: usize,
    #[case] a: ConvAttrs,
    #[case] with_bias: bool,
) {
    use super::conv::Residual;
    let (ws, x, w, b) = case_tensors(xs, c_out, &a, 41);
    let bias = with_bias.then_some(&b[..]);
    for act in [None, Some(UnaryOp::Relu), Some(UnaryOp::HardSwish)] {
        // Paths chosen as without full-width FMA units, so every machine runs the
        // channel-vectorised epilogue here.
        let plain = PreparedConv::new(&w, &ws, bias, a.clone())
            .unwrap()
            .with_wide_fma(false)
            .prepare_input(xs)
            .unwrap();
        let mut fused = PreparedConv::new(&w, &ws, bias, a.clone())
            .unwrap()
            .with_wide_fma(false);
        if let Some(act) = act {
            fused = fused.with_activation(act);
        }
        let fused = fused.prepare_input(xs).unwrap();
        assert!(fused.supports_residual(xs).unwrap(), "{xs:?} {ws:?}");
        // The 256->160 on 14x14 and the last two cases take the channel-vectorised kernel.
        let co = matches!(
            (xs, c_out),
            ([1, 256, 14, 14], 160) | ([2, 384, 7, 7], 96) | ([1, 16, 9, 9], 64)
        );
        assert_eq!(fused.uses_co(xs).unwrap(), co, "{xs:?} {ws:?}");
        let os = plain.output_shape(xs).unwrap();
        let r = rand_vec(os.iter().product(), 44);
        let mut want = vec![0.0; r.len()];
        let mut scratch = vec![0.0; plain.scratch_len(xs, 1).unwrap()];
        plain.run(&x, xs, &mut want, &mut scratch, 1).unwrap();
        for (o, rv) in want.iter_mut().zip(&r) {
            *o += rv;
        }
        if let Some(act) = act {
            unary_f32_inplace(act, &mut want, 1).unwrap();
        }
        for t in [1, 2, 3] {
            let mut scratch = vec![f32::NAN; fused.scratch_len(xs, t).unwrap()];
            let mut out = vec![f32::NAN; r.len()];
            let sep = Some(Residual::Separate(&r));
            fused
                .run_with_residual(&x, xs, sep, &mut out, &mut scratch, t)
                .unwrap();
            assert_bits_eq(&out, &want);
            let mut inplace = r.clone();
            fused
                .run_with_residual(
                    &x,
                    xs,
                    Some(Residual::InPlace),
                    &mut inplace,
                    &mut scratch,
                    t,
                )
                .unwrap();
            assert_bits_eq(&inplace, &want);
        }
    }
}

#[test]
fn residual_of_the_wrong_length_or_on_a_path_without_the_epilogue_is_refused() {
    use super::conv::Residual;
    let xs = [1, 8, 6, 6];
    let pw = PreparedConv::new(
        &[0.5; 64],
        &[8, 8, 1, 1],
        None,
        attrs(&[1, 1], &[1, 1], &[1, 1], &[0, 0], &[0, 0], 1),
    )
    .unwrap();
    let x = vec![1.0; 288];
    let mut out = vec![0.0; 288];
    let short = vec![0.0; 100];
    let mut scratch = vec![0.0; pw.scratch_len(&xs, 1).unwrap()];
    let err = pw
        .run_with_residual(
            &x,
            &xs,
            Some(Residual::Separate(&short)),
            &mut out,
            &mut scratch,
            1,
        )
        .unwrap_err();
    assert!(err.to_string().contains("residual"), "{err}");
    // A depthwise conv has no residual epilogue.
    let dw = PreparedConv::new(
        &[0.5; 72],
        &[8, 1, 3, 3],
        None,
        attrs(&[3, 3], &[1, 1], &[1, 1], &[1, 1], &[1, 1], 8),
    )
    .unwrap();
    assert!(!dw.supports_residual(&xs).unwrap());
    let mut scratch = vec![0.0; dw.scratch_len(&xs, 1).unwrap()];
    let r = vec![0.0; 288];
    let err = dw
        .run_with_residual(
            &x,
            &xs,
            Some(Residual::Separate(&r)),
            &mut out,
            &mut scratch,
            1,
        )
        .unwrap_err();
    assert!(err.to_string().contains("residual epilogue"), "{err}");
}

/// The input pad of the direct, channel-vectorised and Winograd paths split between threads
/// by whole planes: the same bytes as the serial pad at any thread count, for pieces that
/// cut a plane count unevenly, one large plane, and padding on some sides only. A
/// pre-filled destination shows every element (borders included) is written.
#[rstest]
#[case(64, 56, 56, [1, 1, 1, 1])]
#[case(130, 20, 20, [1, 0, 2, 1])]
#[case(3, 200, 190, [0, 2, 1, 3])]
#[case(1, 300, 300, [2, 2, 2, 2])]
#[case(5, 7, 7, [1, 1, 1, 1])]
fn parallel_pad_writes_what_the_serial_pad_writes(
    #[case] c: usize,
    #[case] h: usize,
    #[case] w: usize,
    #[case] pads: [usize; 4],
) {
    use super::conv_direct::pad_planes;
    let x = rand_vec(c * h * w, 71);
    let len = c * (h + pads[0] + pads[2]) * (w + pads[1] + pads[3]);
    let mut want = vec![f32::NAN; len];
    pad_planes(&x, c, h, w, pads, &mut want, 1);
    assert!(want.iter().all(|v| !v.is_nan()));
    for threads in [1, 2, 3, 4] {
        let mut got = vec![f32::NAN; len];
        pad_planes(&x, c, h, w, pads, &mut got, threads);
        assert_bits_eq(&got, &want);
    }
}
