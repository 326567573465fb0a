use super::testutil::*;
use super::*;
use rstest::rstest;

#[test]
fn concat_and_split_roundtrip() {
    let a: Vec<i64> = (0..6).collect(); // [2,3]
    let b: Vec<i64> = (10..14).collect(); // [2,2]
    let mut out = vec![0i64; 10];
    concat(&[(&a, &[2, 3]), (&b, &[2, 2])], 1, &mut out, 2).unwrap();
    assert_eq!(out, [0, 1, 2, 10, 11, 3, 4, 5, 12, 13]);
    let (mut p0, mut p1) = (vec![0i64; 6], vec![0i64; 4]);
    split(&out, &[2, 5], 1, &[3, 2], &mut [&mut p0, &mut p1]).unwrap();
    assert_eq!((p0.as_slice(), p1.as_slice()), (a.as_slice(), b.as_slice()));
    let mut out0 = vec![0i64; 12];
    concat(&[(&a, &[2, 3]), (&a, &[2, 3])], 0, &mut out0, 2).unwrap();
    assert_eq!(&out0[6..], &a[..]);
    assert!(concat(&[(&a, &[2, 3]), (&b, &[2, 2])], 0, &mut out, 1).is_err());
    assert!(split(&out, &[2, 5], 1, &[3, 3], &mut [&mut p0, &mut p1]).is_err());
}

#[test]
fn concat_of_large_planes_splits_across_threads_without_changing_the_result() {
    // Channels 2 + 3 + 1 of 173x211: 219k elements, pieces of 64k straddling every input.
    let plane = 173 * 211;
    let ins: Vec<Vec<f32>> = [2, 3, 1]
        .iter()
        .enumerate()
        .map(|(i, &c)| (0..c * plane).map(|v| (v * 7 + i) as f32).collect())
        .collect();
    let shapes: Vec<[usize; 4]> = [2, 3, 1].iter().map(|&c| [1, c, 173, 211]).collect();
    let args: Vec<(&[f32], &[usize])> = ins
        .iter()
        .zip(&shapes)
        .map(|(d, s)| (d.as_slice(), s.as_slice()))
        .collect();
    let want: Vec<f32> = ins.iter().flatten().copied().collect();
    for threads in [1, 2, 3] {
        let mut out = vec![f32::NAN; want.len()];
        concat(&args, 1, &mut out, threads).unwrap();
        assert_bits_eq(&out, &want);
    }
}

fn naive_slice(x: &[f32], xs: &[usize], p: &[SliceAxis]) -> Vec<f32> {
    let osh: Vec<usize> = p.iter().map(|a| a.len).collect();
    let st = strides(xs);
    (0..osh.iter().product::<usize>())
        .map(|i| {
            let idx = unravel(i, &osh);
            let off: i64 = (0..xs.len())
                .map(|d| (p[d].start as i64 + idx[d] as i64 * p[d].step) * st[d] as i64)
                .sum();
            x[off as usize]
        })
        .collect()
}

#[rstest]
// ONNX slice examples and edge cases.
#[case(&[20, 10, 5], &[0, 0], &[3, 10], Some(vec![0, 1]), Some(vec![1, 1]), &[3, 10, 5])]
#[case(&[20, 10, 5], &[0, 0, 3], &[20, 10, 4], None, None, &[20, 10, 1])]
#[case(&[20, 10, 5], &[20, 10, 4], &[0, 0, 1], Some(vec![0, 1, 2]), Some(vec![-1, -3, -2]), &[19, 3, 2])]
#[case(&[20, 10, 5], &[0], &[-1], Some(vec![1]), None, &[20, 9, 5])]
#[case(&[20, 10, 5], &[1], &[1000], Some(vec![-2]), None, &[20, 9, 5])]
#[case(&[20, 10, 5], &[1000], &[1000], Some(vec![1]), None, &[20, 0, 5])]
#[case(&[20, 10, 5], &[-1], &[i64::MIN], Some(vec![1]), Some(vec![-1]), &[20, 10, 5])]
#[case(&[20, 10, 5], &[0, 1], &[i64::MAX, 9], Some(vec![-1, 0]), Some(vec![2, 3]), &[3, 10, 3])]
fn slice_matches_spec(
    #[case] xs: &[usize],
    #[case] starts: &[i64],
    #[case] ends: &[i64],
    #[case] axes: Option<Vec<i64>>,
    #[case] steps: Option<Vec<i64>>,
    #[case] want_shape: &[usize],
) {
    let x = rand_vec(xs.iter().product(), 91);
    let p = slice_params(xs, starts, ends, axes.as_deref(), steps.as_deref()).unwrap();
    let shape: Vec<usize> = p.iter().map(|a| a.len).collect();
    assert_eq!(shape, want_shape);
    let want = naive_slice(&x, xs, &p);
    let mut out = vec![0.0; want.len()];
    slice(&x, xs, &p, &mut out).unwrap();
    assert_eq!(out, want);
}

#[test]
fn slice_negative_step_values() {
    let x: Vec<i64> = (0..10).collect();
    let p = slice_params(&[10], &[8], &[1], None, Some(&[-3])).unwrap();
    let mut out = vec![0; p[0].len];
    slice(&x, &[10], &p, &mut out).unwrap();
    assert_eq!(out, [8, 5, 2]);
    assert!(slice_params(&[10], &[0], &[1], None, Some(&[0])).is_err());
    assert!(slice_params(&[10], &[0], &[1], Some(&[1]), None).is_err());
}

#[rstest]
#[case(&[2, 3, 4], &[2, 1, 0])]
#[case(&[2, 3, 4], &[0, 2, 1])]
#[case(&[2, 3, 4, 5], &[0, 2, 3, 1])]
#[case(&[2, 3, 4, 5], &[0, 3, 1, 2])]
#[case(&[2, 3, 4, 5], &[1, 0, 3, 2])]
#[case(&[2, 1, 4, 5], &[2, 0, 3, 1])]
#[case(&[67, 45], &[1, 0])]
#[case(&[3, 4], &[0, 1])]
// Whole 16x16 blocks with ragged edges, batches that workers split mid-matrix, and the
// NCHW <-> NHWC swaps of a ConvNeXt block.
#[case(&[3, 33, 50], &[0, 2, 1])]
#[case(&[1, 16, 16], &[0, 2, 1])]
#[case(&[5, 17, 31], &[0, 2, 1])]
#[case(&[1, 96, 20, 20], &[0, 2, 3, 1])]
#[case(&[1, 20, 20, 96], &[0, 3, 1, 2])]
#[case(&[2, 300, 1], &[1, 0, 2])]
#[case(&[3, 20, 700], &[0, 2, 1])]
fn transpose_matches_naive(#[case] xs: &[usize], #[case] perm: &[usize]) {
    let x = rand_vec(xs.iter().product(), 92);
    let osh: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
    let st = strides(xs);
    let want: Vec<f32> = (0..x.len())
        .map(|i| {
            let idx = unravel(i, &osh);
            x[(0..perm.len()).map(|d| idx[d] * st[perm[d]]).sum::<usize>()]
        })
        .collect();
    for threads in [1, 2, 3] {
        let mut out = vec![0.0; x.len()];
        transpose(&x, xs, perm, &mut out, threads).unwrap();
        assert_eq!(out, want);
        let mut out = vec![0.0; x.len()];
        transpose_f32(&x, xs, perm, &mut out, threads).unwrap();
        assert_eq!(out, want, "transpose_f32, {threads} threads");
    }
    assert!(transpose(&x, xs, &vec![0; xs.len()], &mut vec![0.0; x.len()], 1).is_err());
    assert!(transpose_f32(&x, xs, &vec![0; xs.len()], &mut vec![0.0; x.len()], 1).is_err());
}

#[test]
fn gather_axes_and_negative_indices() {
    // ONNX gather_0: data [3,2], indices [[0,1],[1,2]] -> [[[1,1.2],[2.3,3.4]],[[2.3,3.4],[4.5,5.7]]].
    let data = [1.0f32, 1.2, 2.3, 3.4, 4.5, 5.7];
    let mut out = [0.0; 8];
    gather(&data, &[3, 2], &[0i64, 1, 1, 2], &[2, 2], 0, &mut out).unwrap();
    assert_eq!(out, [1.0, 1.2, 2.3, 3.4, 2.3, 3.4, 4.5, 5.7]);
    // Axis 1 with negative i32 indices.
    let data: Vec<f32> = (0..9).map(|v| v as f32).collect();
    let mut out = [0.0; 6];
    gather(&data, &[3, 3], &[0i32, -1], &[2], 1, &mut out).unwrap();
    assert_eq!(out, [0.0, 2.0, 3.0, 5.0, 6.0, 8.0]);
    // Scalar index removes the axis.
    let mut out = [0.0; 3];
    gather(&data, &[3, 3], &[-2i64], &[], 0, &mut out).unwrap();
    assert_eq!(out, [3.0, 4.0, 5.0]);
    let err = gather(&data, &[3, 3], &[3i64], &[], 0, &mut out);
    assert!(matches!(
        err,
        Err(KernelError::IndexOutOfRange {
            index: 3,
            size: 3,
            ..
        })
    ));
}

#[test]
fn pad_modes_follow_onnx_examples() {
    // ONNX Pad examples: x = [[1.0, 1.2], [2.3, 3.4], [4.5, 5.7]], pads = [0, 2, 0, 0].
    let x = [1.0f32, 1.2, 2.3, 3.4, 4.5, 5.7];
    let mut out = [0.0; 12];
    pad(
        &x,
        &[3, 2],
        &[0, 2],
        &[0, 0],
        PadMode::Constant(0.0),
        &mut out,
    )
    .unwrap();
    assert_eq!(
        out,
        [0.0, 0.0, 1.0, 1.2, 0.0, 0.0, 2.3, 3.4, 0.0, 0.0, 4.5, 5.7]
    );
    let x = [1.0f32, 1.2, 2.3, 2.3, 3.4, 4.5, 4.5, 5.7, 6.8];
    let mut out = [0.0; 15];
    pad(&x, &[3, 3], &[0, 2], &[0, 0], PadMode::Reflect, &mut out).unwrap();
    assert_eq!(
        out,
        [2.3, 1.2, 1.0, 1.2, 2.3, 4.5, 3.4, 2.3, 3.4, 4.5, 6.8, 5.7, 4.5, 5.7, 6.8]
    );
    pad(&x, &[3, 3], &[0, 2], &[0, 0], PadMode::Edge, &mut out).unwrap();
    assert_eq!(
        out,
        [1.0, 1.0, 1.0, 1.2, 2.3, 2.3, 2.3, 2.3, 3.4, 4.5, 4.5, 4.5, 4.5, 5.7, 6.8]
    );
    // Wrap (opset 19 example: pads [2, 1, 1, 1] on the 3x2 input).
    let x = [1.0f32, 1.2, 2.3, 3.4, 4.5, 5.7];
    let mut out = [0.0; 24];
    pad(&x, &[3, 2], &[2, 1], &[1, 1], PadMode::Wrap, &mut out).unwrap();
    assert_eq!(
        out,
        [
            3.4, 2.3, 3.4, 2.3, 5.7, 4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0, 3.4, 2.3, 3.4, 2.3, 5.7,
            4.5, 5.7, 4.5, 1.2, 1.0, 1.2, 1.0
        ]
    );
    // Negative pads crop; constant value fills.
    let mut out = [0.0; 4];
    pad(
        &x,
        &[3, 2],
        &[-1, 1],
        &[0, -1],
        PadMode::Constant(9.0),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [9.0, 2.3, 9.0, 4.5]);
    assert!(pad(
        &x,
        &[3, 2],
        &[-4, 0],
        &[0, 0],
        PadMode::Constant(0.0),
        &mut out
    )
    .is_err());
}

#[test]
fn resize_nearest_modes() {
    // ONNX resize_upsample_scales_nearest: 2x2 -> 4x6 (scales 2, 3), asymmetric/floor style
    // result equals the default half_pixel + round_prefer_floor here.
    let x = [1.0f32, 2.0, 3.0, 4.0];
    let mut out = [0.0; 24];
    resize(
        &x,
        &[1, 1, 2, 2],
        &[1, 1, 4, 6],
        &[1.0, 1.0, 2.0, 3.0],
        ResizeMode::Nearest(NearestMode::RoundPreferFloor),
        CoordTransform::HalfPixel,
        &mut out,
        1,
    )
    .unwrap();
    let row0 = [1.0, 1.0, 1.0, 2.0, 2.0, 2.0];
    let row1 = [3.0, 3.0, 3.0, 4.0, 4.0, 4.0];
    assert_eq!(&out[..6], &row0);
    assert_eq!(&out[6..12], &row0);
    assert_eq!(&out[12..18], &row1);
    // resize_downsample_scales_nearest: [1,1,2,4] scales 0.6 -> [1,1,1,2] = [1, 3].
    let x: Vec<f32> = (1..=8).map(|v| v as f32).collect();
    let mut out = [0.0; 2];
    resize(
        &x,
        &[1, 1, 2, 4],
        &[1, 1, 1, 2],
        &[1.0, 1.0, 0.6, 0.6],
        ResizeMode::Nearest(NearestMode::RoundPreferFloor),
        CoordTransform::HalfPixel,
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [1.0, 3.0]);
    // 1-D checks of every nearest_mode with asymmetric and tf_half_pixel_for_nearest.
    let x = [10.0f32, 20.0, 30.0, 40.0];
    let run = |nm, ct, n: usize, s: f32| {
        let mut o = vec![0.0; n];
        resize(&x, &[4], &[n], &[s], ResizeMode::Nearest(nm), ct, &mut o, 1).unwrap();
        o
    };
    assert_eq!(
        run(NearestMode::Floor, CoordTransform::Asymmetric, 8, 2.0),
        [10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 40.0, 40.0]
    );
    assert_eq!(
        run(NearestMode::Ceil, CoordTransform::Asymmetric, 8, 2.0),
        [10.0, 20.0, 20.0, 30.0, 30.0, 40.0, 40.0, 40.0]
    );
    assert_eq!(
        run(
            NearestMode::RoundPreferCeil,
            CoordTransform::Asymmetric,
            8,
            2.0
        ),
        [10.0, 20.0, 20.0, 30.0, 30.0, 40.0, 40.0, 40.0]
    );
    assert_eq!(
        run(
            NearestMode::RoundPreferFloor,
            CoordTransform::Asymmetric,
            8,
            2.0
        ),
        [10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 40.0, 40.0]
    );
    assert_eq!(
        run(
            NearestMode::Floor,
            CoordTransform::TfHalfPixelForNearest,
            8,
            2.0
        ),
        [10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 40.0, 40.0]
    );
    assert_eq!(
        run(
            NearestMode::RoundPreferFloor,
            CoordTransform::AlignCorners,
            7,
            1.75
        ),
        [10.0, 10.0, 20.0, 20.0, 30.0, 30.0, 40.0]
    );
    assert_eq!(
        run(
            NearestMode::Floor,
            CoordTransform::PytorchHalfPixel,
            1,
            0.25
        ),
        [10.0]
    );
}

#[test]
fn resize_bilinear_matches_onnx_examples() {
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    // resize_upsample_scales_linear: [[1,2],[3,4]] x2, half_pixel.
    let mut out = [0.0; 16];
    resize(
        &[1.0, 2.0, 3.0, 4.0],
        &[1, 1, 2, 2],
        &[1, 1, 4, 4],
        &[1.0, 1.0, 2.0, 2.0],
        ResizeMode::Linear,
        CoordTransform::HalfPixel,
        &mut out,
        1,
    )
    .unwrap();
    assert_close(
        &out,
        &[
            1.0, 1.25, 1.75, 2.0, 1.5, 1.75, 2.25, 2.5, 2.5, 2.75, 3.25, 3.5, 3.0, 3.25, 3.75, 4.0,
        ],
        1e-6,
    );
    // resize_upsample_scales_linear_align_corners.
    resize(
        &[1.0, 2.0, 3.0, 4.0],
        &[1, 1, 2, 2],
        &[1, 1, 4, 4],
        &[1.0, 1.0, 2.0, 2.0],
        ResizeMode::Linear,
        CoordTransform::AlignCorners,
        &mut out,
        2,
    )
    .unwrap();
    assert_close(
        &out,
        &[
            1.0, 1.333_333, 1.666_667, 2.0, 1.666_667, 2.0, 2.333_333, 2.666_667, 2.333_333,
            2.666_667, 3.0, 3.333_333, 3.0, 3.333_333, 3.666_667, 4.0,
        ],
        1e-5,
    );
    // resize_downsample_scales_linear: [1,1,2,4] scale 0.6 -> [2.6666665, 4.3333331].
    let mut o2 = [0.0; 2];
    resize(
        &x[..8],
        &[1, 1, 2, 4],
        &[1, 1, 1, 2],
        &[1.0, 1.0, 0.6, 0.6],
        ResizeMode::Linear,
        CoordTransform::HalfPixel,
        &mut o2,
        1,
    )
    .unwrap();
    assert_close(&o2, &[2.666_666_5, 4.333_333], 1e-5);
    // Linear over N or C is refused.
    assert!(resize(
        &x,
        &[2, 2, 2, 2],
        &[4, 2, 2, 2],
        &[2.0, 1.0, 1.0, 1.0],
        ResizeMode::Linear,
        CoordTransform::HalfPixel,
        &mut [0.0; 32],
        1
    )
    .is_err());
}

#[test]
fn copy_checks_length() {
    let mut out = [0u8; 3];
    copy(&[1u8, 0, 1], &mut out).unwrap();
    assert_eq!(out, [1, 0, 1]);
    assert!(copy(&[1u8], &mut out).is_err());
}

#[rstest]
#[case(&[1, 2, 5, 7], &[1, 2, 9, 4], &[1.0, 1.0, 1.8, 4.0 / 7.0], CoordTransform::HalfPixel)]
#[case(&[1, 1, 4, 4], &[1, 1, 8, 3], &[1.0, 1.0, 2.0, 0.75], CoordTransform::AlignCorners)]
#[case(&[2, 3, 5], &[2, 3, 11], &[1.0, 1.0, 2.2], CoordTransform::Asymmetric)]
fn separable_linear_resize_matches_the_bilinear_kernel(
    #[case] xs: &[usize],
    #[case] os: &[usize],
    #[case] scales: &[f32],
    #[case] ct: CoordTransform,
) {
    let n: usize = xs.iter().product();
    let x: Vec<f32> = (0..n).map(|i| ((i * 37) % 11) as f32 - 5.0).collect();
    let m: usize = os.iter().product();
    let (mut a, mut b) = (vec![0.0; m], vec![0.0; m]);
    resize(&x, xs, os, scales, ResizeMode::Linear, ct, &mut a, 1).unwrap();
    let opts = FilteredResize {
        filter: ResizeFilter::Linear,
        coord: FilteredCoord::Transform(ct),
        antialias: false,
        exclude_outside: false,
    };
    resize_filtered(&x, xs, os, scales, &opts, &mut b, 2).unwrap();
    assert_close(&b, &a, 1e-5);
    let mut c = vec![0.0; m];
    resize_filtered(&x, xs, os, scales, &opts, &mut c, 1).unwrap();
    assert_eq!(b, c, "depends on threads");
}

#[test]
fn cubic_resize_keeps_constants_and_extrapolates_outside_the_roi() {
    // Cubic weights sum to 1: a constant input stays constant, whatever the scale.
    let x = vec![3.0f32; 16];
    let mut o = vec![0.0; 36];
    let cubic = FilteredResize {
        filter: ResizeFilter::Cubic { a: -0.75 },
        coord: FilteredCoord::Transform(CoordTransform::HalfPixel),
        antialias: true,
        exclude_outside: true,
    };
    resize_filtered(
        &x,
        &[1, 1, 4, 4],
        &[1, 1, 6, 6],
        &[1.0, 1.0, 1.5, 1.5],
        &cubic,
        &mut o,
        1,
    )
    .unwrap();
    assert_close(&o, &[3.0; 36], 1e-5);
    // A roi reaching past the input: those outputs take the extrapolation value.
    let crop = FilteredResize {
        coord: FilteredCoord::TfCropAndResize {
            roi: vec![0.0, 0.5, 1.0, 1.5],
            extrapolation_value: -1.0,
        },
        ..cubic
    };
    let x: Vec<f32> = (0..4).map(|v| v as f32).collect();
    let mut o = vec![0.0; 2];
    resize_filtered(&x, &[1, 4], &[1, 2], &[1.0, 0.5], &crop, &mut o, 1).unwrap();
    // Coordinates 1.5 (inside) and 4.5 (outside the last index 3).
    assert_eq!(o[1], -1.0);
    assert!((o[0] - 1.5).abs() < 1e-5, "{o:?}");
    assert!(resize_filtered(
        &x,
        &[1, 4],
        &[1, 2],
        &[1.0, 0.5],
        &FilteredResize {
            coord: FilteredCoord::TfCropAndResize {
                roi: vec![0.0],
                extrapolation_value: 0.0
            },
            ..crop
        },
        &mut o,
        1
    )
    .is_err());
}

#[test]
fn det_pivots_signs_and_singular_matrices() {
    // [[0, 2], [3, 4]] needs a row swap: det = -6. A 3x3 with det 6, and a singular one.
    let x = [0.0, 2.0, 3.0, 4.0];
    let mut out = [0.0f32];
    det(&x, &[2, 2], &mut out).unwrap();
    assert_eq!(out[0], -6.0);
    let x = [
        2.0, 0.0, 1.0, 1.0, 3.0, 2.0, 1.0, 1.0, 2.0, 1.0, 2.0, 3.0, 2.0, 4.0, 6.0, 0.0, 0.0, 1.0,
    ];
    let mut out = [0.0f32; 2];
    det(&x, &[2, 3, 3], &mut out).unwrap();
    assert!((out[0] - 6.0).abs() < 1e-5, "{}", out[0]);
    assert_eq!(out[1], 0.0);
    assert!(det(&x[..6], &[2, 3], &mut out[..1]).is_err());
}

#[test]
fn reverse_sequence_reverses_each_prefix_and_checks_lengths() {
    // [batch 2, time 3]: lengths 3 and 2.
    let x = [1, 2, 3, 4, 5, 6];
    let mut out = [0; 6];
    reverse_sequence(&x, &[2, 3], &[3, 2], 0, 1, &mut out).unwrap();
    assert_eq!(out, [3, 2, 1, 5, 4, 6]);
    // Time-major [time 3, batch 2].
    reverse_sequence(&x, &[3, 2], &[1, 3], 1, 0, &mut out).unwrap();
    assert_eq!(out, [1, 6, 3, 4, 5, 2]);
    assert!(reverse_sequence(&x, &[2, 3], &[4, 1], 0, 1, &mut out).is_err());
    assert!(reverse_sequence(&x, &[2, 3], &[-1, 1], 0, 1, &mut out).is_err());
}

#[test]
fn tensor_scatter_writes_rows_from_each_batch_index_and_wraps_only_when_circular() {
    // Cache [2, 1, 3, 1] of bytes; update of 2 rows per batch entry.
    let past = [0u8; 6];
    let update = [1u8, 2, 3, 4];
    let shape = [2, 1, 3, 1];
    let mut out = [9u8; 6];
    tensor_scatter(
        &past,
        &shape,
        &update,
        2,
        2,
        1,
        Some(&[1, 0]),
        false,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [0, 1, 2, 3, 4, 0]);
    // Batch 0 from row 2: row 3 wraps to 0 when circular, and is an error when linear.
    tensor_scatter(
        &past,
        &shape,
        &update,
        2,
        2,
        1,
        Some(&[2, 0]),
        true,
        &mut out,
    )
    .unwrap();
    assert_eq!(out, [2, 0, 1, 3, 4, 0]);
    let e = tensor_scatter(
        &past,
        &shape,
        &update,
        2,
        2,
        1,
        Some(&[2, 0]),
        false,
        &mut out,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            KernelError::IndexOutOfRange {
                index: 3,
                size: 3,
                ..
            }
        ),
        "{e}"
    );
}
