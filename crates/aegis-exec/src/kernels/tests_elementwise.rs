// Tables of (op, reference closure) read best inline.
#![allow(clippy::type_complexity)]

use super::testutil::*;
use super::*;
use rstest::rstest;

fn naive_binary(
    a: &[f32],
    ash: &[usize],
    b: &[f32],
    bsh: &[usize],
    f: impl Fn(f32, f32) -> f32,
) -> (Vec<f32>, Vec<usize>) {
    let osh = broadcast_shape(ash, bsh).unwrap();
    let n: usize = osh.iter().product();
    let out = (0..n)
        .map(|i| {
            let idx = unravel(i, &osh);
            f(a[bcast_index(&idx, ash)], b[bcast_index(&idx, bsh)])
        })
        .collect();
    (out, osh)
}

#[rstest]
#[case(&[2, 1, 3], &[4, 1])]
#[case(&[2, 3, 4, 5], &[3, 1, 1])]
#[case(&[5], &[])]
#[case(&[], &[5])]
#[case(&[3, 4], &[3, 4])]
#[case(&[1, 4, 1], &[3, 1, 5])]
#[case(&[2, 3, 1], &[1])]
#[case(&[4, 1, 6], &[4, 5, 1])]
#[case(&[0, 3], &[1, 3])]
#[case(&[64, 1, 1024], &[1, 8, 1024])]
fn binary_matches_naive(#[case] ash: &[usize], #[case] bsh: &[usize]) {
    let a = rand_vec(ash.iter().product(), 1);
    let b: Vec<f32> = rand_vec(bsh.iter().product(), 2)
        .iter()
        .map(|v| v + 2.0)
        .collect();
    let ops: [(BinaryOp, fn(f32, f32) -> f32); 6] = [
        (BinaryOp::Add, |x, y| x + y),
        (BinaryOp::Sub, |x, y| x - y),
        (BinaryOp::Mul, |x, y| x * y),
        (BinaryOp::Div, |x, y| x / y),
        (BinaryOp::Max, f32::max),
        (BinaryOp::Pow, |x: f32, y| x.abs().powf(y)),
    ];
    for (op, f) in ops {
        let a_in: Vec<f32> = if op == BinaryOp::Pow {
            a.iter().map(|v| v.abs()).collect()
        } else {
            a.clone()
        };
        let (want, osh) = naive_binary(&a_in, ash, &b, bsh, f);
        for threads in [1, 3] {
            let mut out = vec![f32::NAN; want.len()];
            binary_f32(op, &a_in, ash, &b, bsh, &mut out, threads).unwrap();
            assert_bits_eq(&out, &want);
            let _ = &osh;
        }
    }
}

#[test]
fn broadcast_shape_rules() {
    assert_eq!(broadcast_shape(&[2, 1, 3], &[4, 1]).unwrap(), vec![2, 4, 3]);
    assert_eq!(broadcast_shape(&[], &[3]).unwrap(), vec![3]);
    assert!(matches!(
        broadcast_shape(&[2, 3], &[4]),
        Err(KernelError::ShapeMismatch { .. })
    ));
    let mut out = [0.0; 6];
    let err = binary_f32(
        BinaryOp::Add,
        &[0.0; 6],
        &[2, 3],
        &[0.0; 2],
        &[2],
        &mut out,
        1,
    );
    assert!(matches!(err, Err(KernelError::ShapeMismatch { .. })));
    let err = binary_f32(
        BinaryOp::Add,
        &[0.0; 5],
        &[2, 3],
        &[0.0; 3],
        &[3],
        &mut out,
        1,
    );
    assert!(matches!(err, Err(KernelError::LengthMismatch { .. })));
}

#[test]
fn mod_follows_onnx_examples() {
    // ONNX Mod examples: mixed signs with fmod = 0 (integers) and fmod = 1.
    let x = [-4i64, 7, 5, 4, -7, 8];
    let y = [2i64, -3, 8, -2, 3, 5];
    let mut out = [0i64; 6];
    binary_i64(
        BinaryOp::Mod { fmod: false },
        &x,
        &[6],
        &y,
        &[6],
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [0, -2, 5, 0, 2, 3]);
    binary_i64(
        BinaryOp::Mod { fmod: true },
        &x,
        &[6],
        &y,
        &[6],
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [0, 1, 5, 0, -1, 3]);
    let xf = [-4.3f32, 7.2, 5.0, 4.3, -7.2, 8.0];
    let yf = [2.1f32, -3.4, 8.0, -2.1, 3.4, 5.0];
    let mut of = [0.0f32; 6];
    binary_f32(
        BinaryOp::Mod { fmod: true },
        &xf,
        &[6],
        &yf,
        &[6],
        &mut of,
        1,
    )
    .unwrap();
    assert_close(&of, &[-0.1, 0.4, 5.0, 0.1, -0.4, 3.0], 1e-5);
    binary_f32(
        BinaryOp::Mod { fmod: false },
        &xf,
        &[6],
        &yf,
        &[6],
        &mut of,
        1,
    )
    .unwrap();
    assert_close(&of, &[2.0, -3.0, 5.0, -2.0, 3.0, 3.0], 1e-5);
    let mut o32 = [0i32; 2];
    binary_i32(
        BinaryOp::Mod { fmod: false },
        &[-3, 3],
        &[2],
        &[-2],
        &[1],
        &mut o32,
        1,
    )
    .unwrap();
    assert_eq!(o32, [-1, -1]);
}

#[test]
fn integer_ops_and_division_by_zero() {
    let mut out = [0i64; 4];
    binary_i64(
        BinaryOp::Div,
        &[7, -7, 9, i64::MIN],
        &[4],
        &[2],
        &[1],
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [3, -3, 4, i64::MIN / 2]);
    binary_i64(
        BinaryOp::Pow,
        &[2, 3, -1, 5],
        &[4],
        &[10, 3, -3, -1],
        &[4],
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [1024, 27, -1, 0]);
    let err = binary_i64(BinaryOp::Div, &[1, 2], &[2], &[0], &[], &mut out[..2], 1);
    assert!(matches!(err, Err(KernelError::DivisionByZero { .. })));
    let err = binary_i32(
        BinaryOp::Mod { fmod: true },
        &[1],
        &[1],
        &[0],
        &[1],
        &mut [0],
        1,
    );
    assert!(matches!(err, Err(KernelError::DivisionByZero { .. })));
}

#[test]
fn compare_and_where() {
    let mut m = [0u8; 6];
    compare(
        CompareOp::Equal,
        &[1.0f32, 2.0, 3.0, 1.0, 5.0, 3.0],
        &[2, 3],
        &[1.0, 5.0, 3.0],
        &[3],
        &mut m,
        1,
    )
    .unwrap();
    assert_eq!(m, [1, 0, 1, 1, 1, 1]);
    compare(
        CompareOp::Less,
        &[1i64, 5],
        &[2, 1],
        &[2, 3, 6],
        &[3],
        &mut m,
        1,
    )
    .unwrap();
    assert_eq!(m, [1, 1, 1, 0, 0, 1]);
    compare(
        CompareOp::Equal,
        &[f32::NAN],
        &[1],
        &[f32::NAN],
        &[1],
        &mut m[..1],
        1,
    )
    .unwrap();
    assert_eq!(m[0], 0);
    // ONNX Where example.
    let mut out = [0.0f32; 4];
    where_select(
        &[1, 0, 1, 1],
        &[2, 2],
        &[1.0, 2.0, 3.0, 4.0],
        &[2, 2],
        &[9.0, 8.0, 7.0, 6.0],
        &[2, 2],
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [1.0, 8.0, 3.0, 4.0]);
    // Broadcast condition column against a row of x and a scalar y.
    let mut out = [0i64; 6];
    where_select(
        &[1, 0],
        &[2, 1],
        &[1i64, 2, 3],
        &[3],
        &[-1],
        &[],
        &mut out,
        1,
    )
    .unwrap();
    assert_eq!(out, [1, 2, 3, -1, -1, -1]);
}

#[test]
fn where_matches_naive_with_threads() {
    let (csh, xsh, ysh) = ([8usize, 1, 4096], [1usize, 16, 4096], [16usize, 1]);
    let c: Vec<u8> = rand_vec(8 * 4096, 3)
        .iter()
        .map(|v| u8::from(*v > 0.0))
        .collect();
    let x = rand_vec(16 * 4096, 4);
    let y = rand_vec(16, 5);
    let osh = [8, 16, 4096];
    let want: Vec<f32> = (0..8 * 16 * 4096)
        .map(|i| {
            let idx = unravel(i, &osh);
            if c[bcast_index(&idx, &csh)] != 0 {
                x[bcast_index(&idx, &xsh)]
            } else {
                y[bcast_index(&idx, &ysh)]
            }
        })
        .collect();
    for threads in [1, 2] {
        let mut out = vec![0.0; want.len()];
        where_select(&c, &csh, &x, &xsh, &y, &ysh, &mut out, threads).unwrap();
        assert_eq!(out, want);
    }
}

#[test]
fn variadic_sum_mean_max_min() {
    let (a, b, c) = ([3.0f32, 0.0, 2.0], [1.0f32, 3.0, 4.0], [2.0f32, 6.0, 6.0]);
    let ins: [(&[f32], &[usize]); 3] = [(&a, &[3]), (&b, &[3]), (&c, &[3])];
    let mut out = [0.0; 3];
    variadic_f32(VariadicOp::Sum, &ins, &mut out, 1).unwrap();
    assert_eq!(out, [6.0, 9.0, 12.0]);
    variadic_f32(VariadicOp::Mean, &ins, &mut out, 1).unwrap();
    assert_eq!(out, [2.0, 3.0, 4.0]);
    variadic_f32(VariadicOp::Max, &ins, &mut out, 1).unwrap();
    assert_eq!(out, [3.0, 6.0, 6.0]);
    variadic_f32(VariadicOp::Min, &ins, &mut out, 1).unwrap();
    assert_eq!(out, [1.0, 0.0, 2.0]);
    // Broadcast: [3] + [2,1] + [] -> [2,3]; a single input is a copy.
    let ins: [(&[f32], &[usize]); 3] = [(&a, &[3]), (&[10.0, 20.0], &[2, 1]), (&[0.5], &[])];
    let mut out = [0.0; 6];
    variadic_f32(VariadicOp::Sum, &ins, &mut out, 1).unwrap();
    assert_eq!(out, [13.5, 10.5, 12.5, 23.5, 20.5, 22.5]);
    let mut one = [0.0; 3];
    variadic_f32(VariadicOp::Sum, &[(&a, &[3])], &mut one, 1).unwrap();
    assert_eq!(one, a);
    assert!(variadic_f32(VariadicOp::Sum, &[], &mut one, 1).is_err());
}

#[test]
fn expand_broadcasts_to_target() {
    let mut out = [0i64; 6];
    expand(&[1i64, 2, 3], &[3], &mut out, &[2, 3], 1).unwrap();
    assert_eq!(out, [1, 2, 3, 1, 2, 3]);
    expand(&[1i64, 2], &[2, 1], &mut out, &[2, 3], 1).unwrap();
    assert_eq!(out, [1, 1, 1, 2, 2, 2]);
    assert!(expand(&[1i64, 2], &[2], &mut out, &[2, 3], 1).is_err());
}

/// Distance in units in the last place between two finite f32 of the same sign.
fn ulps(a: f32, b: f32) -> u32 {
    a.to_bits().abs_diff(b.to_bits())
}

#[test]
fn exp_f32_is_within_two_ulp_and_handles_the_edges() {
    use super::elementwise::exp_f32;
    // A dense sweep of the normal-result range, against f64 exp rounded to f32.
    let (lo, hi, steps) = (-87.33f64, 88.72f64, 200_000);
    for i in 0..=steps {
        let x = (lo + (hi - lo) * i as f64 / steps as f64) as f32;
        let want = (x as f64).exp() as f32;
        let got = exp_f32(x);
        assert!(ulps(got, want) <= 2, "exp({x}) = {got}, want {want}");
    }
    for x in [
        0.0f32,
        -0.0,
        1e-20,
        -1e-20,
        1.0,
        -1.0,
        0.5,
        -0.346_573_6,
        0.346_573_6,
    ] {
        assert!(ulps(exp_f32(x), (x as f64).exp() as f32) <= 2, "exp({x})");
    }
    // Below ln(f32::MIN_POSITIVE) flush to 0; above ln(f32::MAX) +inf; NaN stays NaN.
    for x in [-87.5f32, -100.0, -1e30, f32::NEG_INFINITY, f32::MIN] {
        assert_eq!(exp_f32(x), 0.0, "exp({x})");
    }
    for x in [88.73f32, 1e3, f32::MAX, f32::INFINITY] {
        assert_eq!(exp_f32(x), f32::INFINITY, "exp({x})");
    }
    assert!(exp_f32(f32::NAN).is_nan());
}

#[test]
fn exp_and_sigmoid_are_the_same_bits_in_any_chunking() {
    // The vectorised body and the scalar tail of a loop, and any split between workers,
    // compute each element the same way.
    let x: Vec<f32> = rand_vec(1000, 9).iter().map(|v| v * 90.0).collect();
    for op in [UnaryOp::Exp, UnaryOp::Sigmoid] {
        let mut whole = vec![0.0; x.len()];
        unary_f32(op, &x, &mut whole, 1).unwrap();
        for split in [1, 7, 16, 333] {
            let mut parts = vec![0.0; x.len()];
            for (o, xi) in parts.chunks_mut(split).zip(x.chunks(split)) {
                unary_f32(op, xi, o, 1).unwrap();
            }
            assert_bits_eq(&parts, &whole);
        }
        let mut two = vec![0.0; x.len()];
        unary_f32(op, &x, &mut two, 2).unwrap();
        assert_bits_eq(&two, &whole);
    }
}

#[test]
fn unary_ops_match_formulas() {
    let x: Vec<f32> = rand_vec(4096, 7).iter().map(|v| v * 6.0).collect();
    let cases: Vec<(UnaryOp, Box<dyn Fn(f32) -> f32>)> = vec![
        (
            UnaryOp::Relu,
            Box::new(|v: f32| if v > 0.0 { v } else { 0.0 }),
        ),
        (
            UnaryOp::Sigmoid,
            Box::new(|v: f32| (1.0 / (1.0 + (-(v as f64)).exp())) as f32),
        ),
        (UnaryOp::Tanh, Box::new(|v: f32| (v as f64).tanh() as f32)),
        (UnaryOp::Sqrt, Box::new(|v: f32| v.sqrt())),
        (
            UnaryOp::HardSigmoid {
                alpha: 0.2,
                beta: 0.5,
            },
            Box::new(|v: f32| (0.2 * v + 0.5).clamp(0.0, 1.0)),
        ),
        (
            UnaryOp::HardSwish,
            Box::new(|v: f32| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
        ),
        (
            UnaryOp::Clip {
                min: -1.0,
                max: 2.0,
            },
            Box::new(|v: f32| v.clamp(-1.0, 2.0)),
        ),
        (
            UnaryOp::LeakyRelu { alpha: 0.1 },
            Box::new(|v: f32| if v < 0.0 { 0.1 * v } else { v }),
        ),
        (UnaryOp::Exp, Box::new(|v: f32| v.exp())),
        (
            UnaryOp::Gelu(GeluApprox::Tanh),
            Box::new(|v: f32| {
                let v = v as f64;
                (0.5 * v
                    * (1.0
                        + ((2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v))
                            .tanh())) as f32
            }),
        ),
    ];
    for (op, f) in cases {
        let want: Vec<f32> = x.iter().map(|&v| f(v)).collect();
        for threads in [1, 2] {
            let mut out = vec![0.0; x.len()];
            unary_f32(op, &x, &mut out, threads).unwrap();
            assert_close(&out, &want, 2e-6);
            let mut inplace = x.clone();
            unary_f32_inplace(op, &mut inplace, threads).unwrap();
            assert_bits_eq(&inplace, &out);
        }
    }
}

/// Largest ulp distance of `f` from `exact` (f64, rounded to f32) over a dense sweep of
/// `[-hi, hi]` plus tiny and huge arguments; also checks that the vectorised map
/// (`unary_f32`, 2 threads) gives exactly the scalar function's bits.
fn sweep_ulps(f: fn(f32) -> f32, exact: fn(f64) -> f64, op: UnaryOp, hi: f64) -> u32 {
    let steps = 400_000;
    let mut xs: Vec<f32> = (0..=steps)
        .map(|i| (-hi + 2.0 * hi * i as f64 / steps as f64) as f32)
        .collect();
    xs.extend([1e-30f32, -1e-30, 1e-8, -3e-4, 1e3, -1e3, f32::MAX, f32::MIN]);
    let mut worst = 0;
    for &x in &xs {
        let (got, want) = (f(x), exact(x as f64) as f32);
        let d = if want == 0.0 {
            u32::from(got != 0.0) * u32::MAX
        } else {
            ulps(got, want)
        };
        assert!(
            got.signum() == want.signum() || want == 0.0,
            "{x}: {got} vs {want}"
        );
        worst = worst.max(d);
    }
    let mut out = vec![0.0; xs.len()];
    unary_f32(op, &xs, &mut out, 2).unwrap();
    for (i, (&o, &x)) in out.iter().zip(&xs).enumerate() {
        assert_eq!(
            o.to_bits(),
            f(x).to_bits(),
            "element {i} ({x}): map vs scalar"
        );
    }
    worst
}

#[test]
fn erf_f32_is_within_two_ulp_and_handles_the_edges() {
    use super::elementwise::erf_f32;
    let worst = sweep_ulps(erf_f32, libm::erf, UnaryOp::Erf, 4.5);
    assert!(worst <= 2, "erf: {worst} ulp");
    assert_eq!(erf_f32(0.0).to_bits(), 0.0f32.to_bits());
    assert_eq!(erf_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    assert_eq!(erf_f32(f32::INFINITY), 1.0);
    assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
    assert!(erf_f32(f32::NAN).is_nan());
}

#[test]
fn tanh_f32_is_within_two_ulp_and_handles_the_edges() {
    use super::elementwise::tanh_f32;
    let worst = sweep_ulps(tanh_f32, f64::tanh, UnaryOp::Tanh, 10.0);
    assert!(worst <= 2, "tanh: {worst} ulp");
    assert_eq!(tanh_f32(-0.0).to_bits(), (-0.0f32).to_bits());
    assert_eq!(tanh_f32(f32::INFINITY), 1.0);
    assert_eq!(tanh_f32(f32::NEG_INFINITY), -1.0);
    assert!(tanh_f32(f32::NAN).is_nan());
}

#[test]
fn erf_and_gelu_known_values() {
    let x = [0.0f32, 0.5, 1.0, -1.0, 2.0, -3.0];
    let mut out = [0.0; 6];
    unary_f32(UnaryOp::Erf, &x, &mut out, 1).unwrap();
    assert_close(
        &out,
        &[
            0.0,
            0.520_499_9,
            0.842_700_8,
            -0.842_700_8,
            0.995_322_3,
            -0.999_977_9,
        ],
        1e-6,
    );
    unary_f32(UnaryOp::Gelu(GeluApprox::None), &x, &mut out, 1).unwrap();
    assert_close(
        &out,
        &[
            0.0,
            0.345_731_3,
            0.841_344_7,
            -0.158_655_3,
            1.954_499_7,
            -0.004_049_7,
        ],
        1e-5,
    );
    // ONNX HardSigmoid example (alpha 0.5, beta 0.6).
    let mut o3 = [0.0; 3];
    unary_f32(
        UnaryOp::HardSigmoid {
            alpha: 0.5,
            beta: 0.6,
        },
        &[-1.0, 0.0, 1.0],
        &mut o3,
        1,
    )
    .unwrap();
    assert_close(&o3, &[0.1, 0.6, 1.0], 1e-6);
    unary_f32(UnaryOp::Round, &[0.5, 1.5, -2.5], &mut o3, 1).unwrap();
    assert_eq!(o3, [0.0, 2.0, -2.0]);
    unary_f32(
        UnaryOp::Clip {
            min: f32::NEG_INFINITY,
            max: 1.0,
        },
        &[f32::NAN, -5.0, 5.0],
        &mut o3,
        1,
    )
    .unwrap();
    assert!(o3[0].is_nan());
    assert_eq!(&o3[1..], &[-5.0, 1.0]);
    assert!(unary_f32(
        UnaryOp::Clip {
            min: f32::NAN,
            max: 1.0
        },
        &[0.0],
        &mut [0.0],
        1
    )
    .is_err());
    assert!(unary_f32(UnaryOp::Relu, &[0.0, 1.0], &mut [0.0], 1).is_err());
}

#[test]
fn cast_between_types() {
    let mut i = [0i64; 4];
    cast(
        CastSrc::F32(&[1.9, -1.9, f32::NAN, 1e20]),
        CastDst::I64(&mut i),
    )
    .unwrap();
    assert_eq!(i, [1, -1, 0, i64::MAX]);
    let mut b = [9u8; 4];
    cast(
        CastSrc::F32(&[0.0, -0.0, 2.0, f32::NAN]),
        CastDst::Bool(&mut b),
    )
    .unwrap();
    assert_eq!(b, [0, 0, 1, 1]);
    let mut f = [0.0f32; 3];
    cast(CastSrc::Bool(&[1, 0, 1]), CastDst::F32(&mut f)).unwrap();
    assert_eq!(f, [1.0, 0.0, 1.0]);
    let mut n = [0i32; 2];
    cast(CastSrc::I64(&[1 << 33 | 5, -7]), CastDst::I32(&mut n)).unwrap();
    assert_eq!(n, [5, -7]);
    let mut d = [0.0f64; 2];
    cast(CastSrc::I32(&[3, -4]), CastDst::F64(&mut d)).unwrap();
    assert_eq!(d, [3.0, -4.0]);
    assert!(cast(CastSrc::I32(&[3, -4]), CastDst::F64(&mut [0.0])).is_err());
}

/// The threaded f16 <-> f32 slice conversions give the bits of the element-wise path (one
/// rounding from the exact value through f64), on every f16 bit pattern and on f32 values
/// around ties, overflow and subnormals, split over 2 threads.
#[test]
fn f16_casts_in_parallel_match_the_element_wise_rounding() {
    let all: Vec<half::f16> = (0..=u16::MAX).map(half::f16::from_bits).collect();
    let mut wide = vec![0.0f32; all.len()];
    cast_par(CastSrc::F16(&all), CastDst::F32(&mut wide), 2).unwrap();
    for (h, w) in all.iter().zip(&wide) {
        assert!(
            h.is_nan() && w.is_nan() || f64::from(*w) == f64::from(*h),
            "{h:?}"
        );
    }
    let xs: Vec<f32> = (0..200_000u32)
        .map(|i| f32::from_bits(0x3300_0000u32.wrapping_add(i.wrapping_mul(21_017))))
        .chain([
            65519.0,
            65520.0,
            -65520.0,
            2.0f32.powi(-25),
            3.0 * 2.0f32.powi(-25),
        ])
        .collect();
    let mut fast = vec![half::f16::ZERO; xs.len()];
    let mut each = vec![half::f16::ZERO; xs.len()];
    cast_par(CastSrc::F32(&xs), CastDst::F16(&mut fast), 2).unwrap();
    super::elementwise::cast_any(CastSrc::F32(&xs), CastDst::F16(&mut each)).unwrap();
    for (k, (a, b)) in fast.iter().zip(&each).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan(),
            "{}: {a:?} vs {b:?}",
            xs[k]
        );
    }
    assert!(cast_par(CastSrc::F32(&xs), CastDst::F16(&mut each[1..]), 2).is_err());
}

/// The fused Gelu of five exported nodes gives the bits the five kernels give one after
/// another, in both forms (torch's `(x * (erf(x / k) + 1)) * 0.5` and `(x * 0.5) * (erf(x *
/// k) + 1)`), signed zeros, infinities and NaN included.
#[test]
fn gelu_ops_matches_the_five_kernels() {
    let x = with_special_values(
        rand_vec(2000, 43).into_iter().map(|v| v * 12.0).collect(),
        &[1e-30, -5.5],
    );
    let (n, shape) = (x.len(), [x.len()]);
    let run = |op: BinaryOp, a: &[f32], b: &[f32], b_shape: &[usize]| {
        let mut out = vec![0.0; n];
        binary_f32(op, a, &shape, b, b_shape, &mut out, 1).unwrap();
        out
    };
    for (divide, half_first) in [(true, false), (false, true), (true, true), (false, false)] {
        let k = if divide {
            std::f32::consts::SQRT_2
        } else {
            std::f32::consts::FRAC_1_SQRT_2
        };
        let scaled = run(
            if divide { BinaryOp::Div } else { BinaryOp::Mul },
            &x,
            &[k],
            &[],
        );
        let mut e = vec![0.0; n];
        unary_f32(UnaryOp::Erf, &scaled, &mut e, 1).unwrap();
        let e1 = run(BinaryOp::Add, &e, &[1.0], &[]);
        let want = if half_first {
            let h = run(BinaryOp::Mul, &x, &[0.5], &[]);
            run(BinaryOp::Mul, &h, &e1, &shape)
        } else {
            let m = run(BinaryOp::Mul, &x, &e1, &shape);
            run(BinaryOp::Mul, &m, &[0.5], &[])
        };
        let mut got = vec![0.0; n];
        let op = UnaryOp::GeluOps {
            k,
            divide,
            half_first,
        };
        unary_f32(op, &x, &mut got, 2).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{op:?} at {}: {g} vs {w}",
                x[i]
            );
        }
    }
}

/// The fused tanh Gelu of eight exported nodes gives the bits the eight kernels give one
/// after another (Pow by 3, Mul, Add, Mul, Tanh, Add, and both orders of the final products),
/// signed zeros, infinities and NaN included.
#[test]
fn gelu_tanh_ops_matches_the_eight_kernels() {
    let x = with_special_values(
        rand_vec(2000, 45).into_iter().map(|v| v * 12.0).collect(),
        &[1e-30, -5.5, 1e13],
    );
    let (n, shape) = (x.len(), [x.len()]);
    let run = |op: BinaryOp, a: &[f32], b: &[f32], b_shape: &[usize]| {
        let mut out = vec![0.0; n];
        binary_f32(op, a, &shape, b, b_shape, &mut out, 1).unwrap();
        out
    };
    let (c1, c2) = (0.044_715_f32, 0.797_884_6_f32);
    let cube = run(BinaryOp::Pow, &x, &[3.0], &[]);
    let inner = run(
        BinaryOp::Add,
        &x,
        &run(BinaryOp::Mul, &cube, &[c1], &[]),
        &shape,
    );
    let mut t = vec![0.0; n];
    unary_f32(
        UnaryOp::Tanh,
        &run(BinaryOp::Mul, &inner, &[c2], &[]),
        &mut t,
        1,
    )
    .unwrap();
    let t1 = run(BinaryOp::Add, &t, &[1.0], &[]);
    for half_first in [true, false] {
        let want = if half_first {
            run(
                BinaryOp::Mul,
                &run(BinaryOp::Mul, &x, &[0.5], &[]),
                &t1,
                &shape,
            )
        } else {
            run(
                BinaryOp::Mul,
                &run(BinaryOp::Mul, &x, &t1, &shape),
                &[0.5],
                &[],
            )
        };
        let op = UnaryOp::GeluTanhOps { c1, c2, half_first };
        let mut got = vec![0.0; n];
        unary_f32(op, &x, &mut got, 2).unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                "{op:?} at {}: {g} vs {w}",
                x[i]
            );
        }
    }
}

/// `x` followed by signed zeros, both infinities, NaN and `extra`.
fn with_special_values(mut x: Vec<f32>, extra: &[f32]) -> Vec<f32> {
    x.extend([-0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN]);
    x.extend_from_slice(extra);
    x
}

/// The fused SiLU gives the bits of the Sigmoid and Mul kernels one after the other (both
/// operand orders), in a buffer and in place, signed zeros, infinities and NaN included.
#[test]
fn silu_matches_sigmoid_then_mul() {
    let x = with_special_values(
        rand_vec(2000, 44).into_iter().map(|v| v * 40.0).collect(),
        &[-88.0, 89.0],
    );
    let shape = [x.len()];
    let mut s = vec![0.0; x.len()];
    unary_f32(UnaryOp::Sigmoid, &x, &mut s, 1).unwrap();
    let mut got = vec![0.0; x.len()];
    unary_f32(UnaryOp::Silu, &x, &mut got, 2).unwrap();
    let mut inplace = x.clone();
    unary_f32_inplace(UnaryOp::Silu, &mut inplace, 1).unwrap();
    for (a, b) in [(&x, &s), (&s, &x)] {
        let mut want = vec![0.0; x.len()];
        binary_f32(BinaryOp::Mul, a, &shape, b, &shape, &mut want, 1).unwrap();
        for (i, w) in want.iter().enumerate() {
            for g in [got[i], inplace[i]] {
                assert!(
                    g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
                    "SiLU at {}: {g} vs {w}",
                    x[i]
                );
            }
        }
    }
}

/// The fused hard-swish of four exported nodes gives the bits the four kernels give one
/// after another: Add 3, Clip [0, 6], Mul by the input, Div by 6 (around the clip's corners,
/// signed zeros, infinities and NaN included).
#[test]
fn hard_swish_ops_matches_the_four_kernels() {
    let mut x = rand_vec(1000, 41)
        .into_iter()
        .map(|v| v * 8.0)
        .collect::<Vec<_>>();
    x.extend([
        -3.0,
        3.0,
        -0.0,
        0.0,
        6.0,
        -6.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
        1e30,
        -1e30,
    ]);
    let n = x.len();
    let shape = [n];
    let mut a = vec![0.0; n];
    binary_f32(BinaryOp::Add, &x, &shape, &[3.0], &[], &mut a, 1).unwrap();
    let mut c = vec![0.0; n];
    unary_f32(UnaryOp::Clip { min: 0.0, max: 6.0 }, &a, &mut c, 1).unwrap();
    let mut m = vec![0.0; n];
    binary_f32(BinaryOp::Mul, &x, &shape, &c, &shape, &mut m, 1).unwrap();
    let mut want = vec![0.0; n];
    binary_f32(BinaryOp::Div, &m, &shape, &[6.0], &[], &mut want, 1).unwrap();
    let mut got = vec![0.0; n];
    unary_f32(UnaryOp::HardSwishOps, &x, &mut got, 2).unwrap();
    assert_bits_eq(&got, &want);
}

/// A scalar exponent of 2 or 3 runs as products: within 2 ulp of the exact power (f64),
/// signs, zeros and infinities as `powf`'s, the same bits in place and out of place.
#[test]
fn pow_by_a_scalar_two_or_three_is_a_product() {
    let mut x: Vec<f32> = rand_vec(3000, 47).into_iter().map(|v| v * 40.0).collect();
    x.extend([
        0.0,
        -0.0,
        1.0,
        -1.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-20,
        -3e12,
    ]);
    let shape = [x.len()];
    for y in [2.0f32, 3.0] {
        let mut out = vec![0.0; x.len()];
        binary_f32(BinaryOp::Pow, &x, &shape, &[y], &[], &mut out, 2).unwrap();
        for (&v, &o) in x.iter().zip(&out) {
            let want = v.powf(y);
            let exact = (v as f64).powf(y as f64) as f32;
            assert!(
                o.to_bits() == want.to_bits() || ulps(o, exact) <= 2,
                "{v}^{y} = {o}, powf {want}"
            );
            assert_eq!(o.is_sign_negative(), want.is_sign_negative(), "{v}^{y}");
        }
        let mut inplace = x.clone();
        binary_f32_inplace(BinaryOp::Pow, &mut inplace, &shape, &[y], &[], false, 2).unwrap();
        assert_bits_eq(&inplace, &out);
    }
}
