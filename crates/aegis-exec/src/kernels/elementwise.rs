//! Elementwise operators: binary arithmetic and comparison with broadcasting, Where, the
//! variadic Sum/Max/Min/Mean, unary activations, and Cast.

use super::broadcast::{
    broadcast_assign, broadcast_binary, broadcast_shapes, broadcast_ternary, simd_dispatch,
    PAR_MIN_ELEMS,
};
use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::narrow::{Narrow, NarrowMode};
use super::par::par_chunks;
use half::slice::HalfFloatSliceExt;

/// A broadcasting binary arithmetic operator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integers truncate toward zero; integer division by zero is an error).
    Div,
    /// `a ^ b` (`powf` for floats; integers use repeated multiplication, wrapping, with
    /// negative exponents giving `0` except for bases `1` and `-1`).
    Pow,
    /// ONNX `Mod`. `fmod: true` is C `fmod` (result takes the sign of the dividend);
    /// `fmod: false` is Python/numpy `mod` (result takes the sign of the divisor). ONNX defines
    /// `fmod = 0` for floats from opset 28 (the floored remainder).
    Mod {
        /// The `fmod` attribute (default 0).
        fmod: bool,
    },
    /// `max(a, b)` (binary form of the variadic Max).
    Max,
    /// `min(a, b)`.
    Min,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            Self::Add => "Add",
            Self::Sub => "Sub",
            Self::Mul => "Mul",
            Self::Div => "Div",
            Self::Pow => "Pow",
            Self::Mod { .. } => "Mod",
            Self::Max => "Max",
            Self::Min => "Min",
        }
    }
}

macro_rules! float_mod {
    ($name:ident, $t:ty) => {
        /// ONNX `Mod` on floats: C `fmod`, or (`!fmod`) the floored remainder.
        fn $name(x: $t, y: $t, fmod: bool) -> $t {
            let r = x % y;
            if fmod {
                r
            } else if r == 0.0 {
                // The floored remainder's zero takes the divisor's sign (opset 28).
                (0.0 as $t).copysign(y)
            } else if (r < 0.0) != (y < 0.0) {
                r + y
            } else {
                r
            }
        }
    };
}
float_mod!(mod_f32, f32);
float_mod!(mod_f64, f64);

/// `x^y` for `y >= 0` by squaring, wrapping (any exponent terminates).
macro_rules! square_multiply {
    ($x:expr, $y:expr, $t:ty) => {{
        let (mut base, mut e, mut acc) = ($x, $y, 1 as $t);
        while e > 0 {
            if e & 1 == 1 {
                acc = acc.wrapping_mul(base);
            }
            base = base.wrapping_mul(base);
            e >>= 1;
        }
        acc
    }};
}

macro_rules! int_ops {
    ($t:ty, $mod_fn:ident, $pow_fn:ident) => {
        fn $mod_fn(x: $t, y: $t, fmod: bool) -> $t {
            let r = x.wrapping_rem(y);
            if !fmod && r != 0 && ((r < 0) != (y < 0)) {
                r.wrapping_add(y)
            } else {
                r
            }
        }
        fn $pow_fn(x: $t, y: $t) -> $t {
            if y < 0 {
                return match x {
                    1 => 1,
                    -1 => {
                        if y % 2 == 0 {
                            1
                        } else {
                            -1
                        }
                    }
                    _ => 0,
                };
            }
            square_multiply!(x, y, $t)
        }
    };
}
int_ops!(i64, mod_i64, pow_i64);
int_ops!(i32, mod_i32, pow_i32);
int_ops!(i16, mod_i16, pow_i16);
int_ops!(i8, mod_i8, pow_i8);

// Unsigned: no negative remainders or exponents to adjust.
fn mod_u8(x: u8, y: u8, _fmod: bool) -> u8 {
    x.wrapping_rem(y)
}
fn pow_u8(x: u8, y: u8) -> u8 {
    x.wrapping_pow(u32::from(y))
}

macro_rules! uint_ops {
    ($t:ty, $mod_fn:ident, $pow_fn:ident) => {
        fn $mod_fn(x: $t, y: $t, _fmod: bool) -> $t {
            x.wrapping_rem(y)
        }
        fn $pow_fn(x: $t, y: $t) -> $t {
            square_multiply!(x, y, $t)
        }
    };
}
uint_ops!(u16, mod_u16, pow_u16);
uint_ops!(u32, mod_u32, pow_u32);
uint_ops!(u64, mod_u64, pow_u64);

/// Broadcasting f32 binary arithmetic: `out = op(a, b)`; `out` has the broadcast shape of
/// `a_shape` and `b_shape` (numpy rules).
///
/// # Errors
/// Non-broadcastable shapes or buffer lengths that disagree with their shapes.
#[allow(clippy::too_many_arguments)]
pub fn binary_f32(
    op: BinaryOp,
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    let n = op.name();
    match op {
        BinaryOp::Add => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x + y),
        BinaryOp::Sub => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x - y),
        BinaryOp::Mul => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x * y),
        BinaryOp::Div => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x / y),
        // A scalar exponent of 3 (the tanh form of Gelu written out): products, in a loop
        // that vectorises (powf is a scalar call: 3 of a GPT-style layer's 42 ms). x * x * x
        // rounds twice where powf rounds once (within an ulp or two), as onnxruntime's Pow.
        BinaryOp::Pow if b == [3.0] => {
            broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, _| x * x * x)
        }
        // x*x is what powf(x, 2) rounds to; it is the common LayerNorm-decomposition case.
        BinaryOp::Pow if b == [2.0] => {
            broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, _| x * x)
        }
        BinaryOp::Pow => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
            if y == 2.0 {
                x * x
            } else {
                x.powf(y)
            }
        }),
        BinaryOp::Mod { fmod } => {
            broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
                mod_f32(x, y, fmod)
            })
        }
        BinaryOp::Max => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, f32_max),
        BinaryOp::Min => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, f32_min),
    }
}

/// Broadcasting f64 binary arithmetic, the formulas of [`binary_f32`] in f64 (no f32
/// shortcut: every operator rounds once, in f64).
///
/// # Errors
/// Non-broadcastable shapes or buffer lengths that disagree with their shapes.
#[allow(clippy::too_many_arguments)]
pub fn binary_f64(
    op: BinaryOp,
    a: &[f64],
    a_shape: &[usize],
    b: &[f64],
    b_shape: &[usize],
    out: &mut [f64],
    threads: usize,
) -> KernelResult<()> {
    let n = op.name();
    let nan_or = |x: f64, y: f64, f: fn(f64, f64) -> f64| {
        if x.is_nan() || y.is_nan() {
            f64::NAN
        } else {
            f(x, y)
        }
    };
    match op {
        BinaryOp::Add => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x + y),
        BinaryOp::Sub => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x - y),
        BinaryOp::Mul => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x * y),
        BinaryOp::Div => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| x / y),
        BinaryOp::Pow => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, f64::powf),
        BinaryOp::Mod { fmod } => {
            broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x: f64, y: f64| {
                mod_f64(x, y, fmod)
            })
        }
        BinaryOp::Max => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
            nan_or(x, y, f64::max)
        }),
        BinaryOp::Min => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
            nan_or(x, y, f64::min)
        }),
    }
}

/// In-place broadcasting f32 arithmetic for an output that shares memory with one input:
/// `out = op(out, b)`, or `out = op(b, out)` when `b_first` (the shared input is the right
/// operand). `b_shape` must broadcast to `out_shape`. Same formulas as [`binary_f32`], one
/// monomorphic loop per operator.
///
/// # Errors
/// As [`broadcast_assign`].
#[allow(clippy::too_many_arguments)]
pub fn binary_f32_inplace(
    op: BinaryOp,
    out: &mut [f32],
    out_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    b_first: bool,
    threads: usize,
) -> KernelResult<()> {
    let n = op.name();
    macro_rules! assign {
        ($f:expr) => {{
            let f = $f;
            if b_first {
                broadcast_assign(n, out, out_shape, b, b_shape, threads, move |o, y| f(y, o))
            } else {
                broadcast_assign(n, out, out_shape, b, b_shape, threads, f)
            }
        }};
    }
    match op {
        BinaryOp::Add => assign!(|x: f32, y: f32| x + y),
        BinaryOp::Sub => assign!(|x: f32, y: f32| x - y),
        BinaryOp::Mul => assign!(|x: f32, y: f32| x * y),
        BinaryOp::Div => assign!(|x: f32, y: f32| x / y),
        BinaryOp::Pow if !b_first && b == [3.0] => assign!(|x: f32, _: f32| x * x * x),
        BinaryOp::Pow if !b_first && b == [2.0] => assign!(|x: f32, _: f32| x * x),
        BinaryOp::Pow => assign!(|x: f32, y: f32| if y == 2.0 { x * x } else { x.powf(y) }),
        BinaryOp::Mod { fmod } => assign!(move |x: f32, y: f32| mod_f32(x, y, fmod)),
        BinaryOp::Max => assign!(f32_max),
        BinaryOp::Min => assign!(f32_min),
    }
}

/// NaN-propagating max (ONNX Max returns NaN if any input is NaN).
fn f32_max(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.max(y)
    }
}

fn f32_min(x: f32, y: f32) -> f32 {
    if x.is_nan() || y.is_nan() {
        f32::NAN
    } else {
        x.min(y)
    }
}

macro_rules! binary_int {
    ($(#[$doc:meta])* $name:ident, $t:ty, $mod_fn:ident, $pow_fn:ident) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name(
            op: BinaryOp,
            a: &[$t],
            a_shape: &[usize],
            b: &[$t],
            b_shape: &[usize],
            out: &mut [$t],
            threads: usize,
        ) -> KernelResult<()> {
            let n = op.name();
            match op {
                BinaryOp::Div | BinaryOp::Mod { .. } if b.contains(&0) => {
                    return Err(KernelError::DivisionByZero { op: n });
                }
                _ => {}
            }
            match op {
                BinaryOp::Add => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, <$t>::wrapping_add),
                BinaryOp::Sub => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, <$t>::wrapping_sub),
                BinaryOp::Mul => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, <$t>::wrapping_mul),
                BinaryOp::Div => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, <$t>::wrapping_div),
                BinaryOp::Pow => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, $pow_fn),
                BinaryOp::Mod { fmod } => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| $mod_fn(x, y, fmod)),
                BinaryOp::Max => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x: $t, y: $t| x.max(y)),
                BinaryOp::Min => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x: $t, y: $t| x.min(y)),
            }
        }
    };
}

binary_int!(
    /// Broadcasting i64 binary arithmetic (wrapping on overflow, like C++ runtimes).
    ///
    /// # Errors
    /// As [`binary_f32`], plus [`KernelError::DivisionByZero`] for Div/Mod with a zero divisor.
    binary_i64, i64, mod_i64, pow_i64
);
binary_int!(
    /// Broadcasting i32 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_i32, i32, mod_i32, pow_i32
);
binary_int!(
    /// Broadcasting i8 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_i8, i8, mod_i8, pow_i8
);
binary_int!(
    /// Broadcasting u8 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_u8, u8, mod_u8, pow_u8
);
binary_int!(
    /// Broadcasting i16 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_i16, i16, mod_i16, pow_i16
);
binary_int!(
    /// Broadcasting u16 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_u16, u16, mod_u16, pow_u16
);
binary_int!(
    /// Broadcasting u32 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_u32, u32, mod_u32, pow_u32
);
binary_int!(
    /// Broadcasting u64 binary arithmetic; see [`binary_i64`].
    ///
    /// # Errors
    /// As [`binary_i64`].
    binary_u64, u64, mod_u64, pow_u64
);

/// A broadcasting comparison; outputs are ONNX bools stored as `u8` (0 or 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `a == b` (NaN is unequal to everything).
    Equal,
    /// `a < b`.
    Less,
    /// `a <= b`.
    LessOrEqual,
    /// `a > b`.
    Greater,
    /// `a >= b`.
    GreaterOrEqual,
}

/// Broadcasting comparison of any ordered element type (f32, i64, i32, and bool as `u8`):
/// `out[i] = (a op b) as u8`.
///
/// # Errors
/// As [`binary_f32`].
#[allow(clippy::too_many_arguments)]
pub fn compare<T: Copy + PartialOrd + Sync>(
    op: CompareOp,
    a: &[T],
    a_shape: &[usize],
    b: &[T],
    b_shape: &[usize],
    out: &mut [u8],
    threads: usize,
) -> KernelResult<()> {
    let n = "Compare";
    match op {
        CompareOp::Equal => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
            u8::from(x == y)
        }),
        CompareOp::Less => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
            u8::from(x < y)
        }),
        CompareOp::LessOrEqual => {
            broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
                u8::from(x <= y)
            })
        }
        CompareOp::Greater => broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
            u8::from(x > y)
        }),
        CompareOp::GreaterOrEqual => {
            broadcast_binary(n, a, a_shape, b, b_shape, out, threads, |x, y| {
                u8::from(x >= y)
            })
        }
    }
}

/// ONNX `Where`: `out[i] = if cond[i] != 0 { x[i] } else { y[i] }`, three-way broadcasting.
/// `cond` is a bool tensor stored as `u8`.
///
/// # Errors
/// As [`binary_f32`].
#[allow(clippy::too_many_arguments)]
pub fn where_select<T: Copy + Send + Sync>(
    cond: &[u8],
    cond_shape: &[usize],
    x: &[T],
    x_shape: &[usize],
    y: &[T],
    y_shape: &[usize],
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    broadcast_ternary(
        "Where",
        cond,
        cond_shape,
        x,
        x_shape,
        y,
        y_shape,
        out,
        threads,
        |c, a, b| if c != 0 { a } else { b },
    )
}

/// A variadic elementwise operator over broadcast inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariadicOp {
    /// ONNX `Sum`.
    Sum,
    /// ONNX `Mean` (the sum divided by the input count).
    Mean,
    /// ONNX `Max` (NaN-propagating).
    Max,
    /// ONNX `Min` (NaN-propagating).
    Min,
}

/// ONNX `Sum`/`Mean`/`Max`/`Min` over one or more inputs `(data, shape)` broadcast together;
/// `out` has the broadcast shape. Inputs are folded left to right (`((x0 + x1) + x2) ...`).
///
/// # Errors
/// No inputs, non-broadcastable shapes, or buffer lengths that disagree with their shapes.
pub fn variadic_f32(
    op: VariadicOp,
    inputs: &[(&[f32], &[usize])],
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    let name = "Sum";
    let Some(((first, first_shape), rest)) = inputs.split_first() else {
        return Err(invalid(name, "inputs", "at least one input is required"));
    };
    let shapes: Vec<&[usize]> = inputs.iter().map(|(_, s)| *s).collect();
    let out_shape = broadcast_shapes(&shapes)?;
    check_len(name, "output", out.len(), numel(name, &out_shape)?)?;
    if let [(b, b_shape)] = rest {
        // Two inputs (a residual Sum): one pass, the same `first op b` as the loop below.
        let (a, a_shape) = (*first, *first_shape);
        return match op {
            VariadicOp::Sum => {
                broadcast_binary(name, a, a_shape, b, b_shape, out, threads, |x, y| x + y)
            }
            VariadicOp::Mean => {
                broadcast_binary(name, a, a_shape, b, b_shape, out, threads, |x, y| {
                    (x + y) / 2.0
                })
            }
            VariadicOp::Max => {
                broadcast_binary(name, a, a_shape, b, b_shape, out, threads, f32_max)
            }
            VariadicOp::Min => {
                broadcast_binary(name, a, a_shape, b, b_shape, out, threads, f32_min)
            }
        };
    }
    broadcast_assign(name, out, &out_shape, first, first_shape, threads, |_, y| y)?;
    for (x, shape) in rest {
        match op {
            VariadicOp::Sum | VariadicOp::Mean => {
                broadcast_assign(name, out, &out_shape, x, shape, threads, |o, y| o + y)?
            }
            VariadicOp::Max => broadcast_assign(name, out, &out_shape, x, shape, threads, f32_max)?,
            VariadicOp::Min => broadcast_assign(name, out, &out_shape, x, shape, threads, f32_min)?,
        }
    }
    if op == VariadicOp::Mean && inputs.len() > 1 {
        let n = inputs.len() as f32;
        map_inplace(out, threads, |v| v / n);
    }
    Ok(())
}

/// ONNX `Expand` (and the broadcast step of anything else): copies `x` broadcast to
/// `out_shape`, which must be the numpy broadcast of `x_shape` with the requested shape
/// (the caller computes it: `broadcast_shape(x_shape, shape_input)`).
///
/// # Errors
/// `x_shape` does not broadcast to exactly `out_shape`, or lengths disagree.
pub fn expand<T: Copy + Send + Sync>(
    x: &[T],
    x_shape: &[usize],
    out: &mut [T],
    out_shape: &[usize],
    threads: usize,
) -> KernelResult<()> {
    broadcast_assign("Expand", out, out_shape, x, x_shape, threads, |_, y| y)
}

pub(crate) fn map_inplace(data: &mut [f32], threads: usize, f: impl Fn(f32) -> f32 + Sync) {
    par_chunks(data, 1, threads, PAR_MIN_ELEMS, |_, piece| {
        for v in piece {
            *v = f(*v);
        }
    });
}

/// GELU variant (ONNX `Gelu` attribute `approximate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeluApprox {
    /// `approximate = "none"`: `0.5 x (1 + erf(x / sqrt 2))`.
    None,
    /// `approximate = "tanh"`: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
    Tanh,
}

/// A unary f32 operator with its attributes (ONNX defaults noted per variant).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    /// `max(x, 0)`.
    Relu,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// Gauss error function.
    Erf,
    /// `sqrt(x)` (NaN for negative x).
    Sqrt,
    /// ONNX `Gelu` (opset 20).
    Gelu(GeluApprox),
    /// `max(0, min(1, alpha x + beta))`; ONNX defaults `alpha = 0.2`, `beta = 0.5`.
    HardSigmoid {
        /// Slope.
        alpha: f32,
        /// Offset.
        beta: f32,
    },
    /// `x * max(0, min(1, x / 6 + 0.5))`.
    HardSwish,
    /// `x * clip(x + 3, 0, 6) / 6` rounded op by op, as the Add, Clip, Mul and Div nodes an
    /// exporter writes for hard-swish compute it (the executor runs such a chain as one pass;
    /// same bits as the four ops).
    HardSwishOps,
    /// Gelu as the nodes an exporter writes below opset 20, rounded op by op (the executor
    /// runs such a chain as one pass; same bits as the nodes): `e = erf(x / k)` (or
    /// `erf(x * k)` when `!divide`), then `(x * (e + 1)) * 0.5`, or `(x * 0.5) * (e + 1)`
    /// when `half_first` (torch's `nn.GELU` export, and the `0.5 * x * (1 + erf(...))` of
    /// Hugging Face models).
    GeluOps {
        /// The scale of the erf argument (`sqrt 2` to divide by, or `1 / sqrt 2`).
        k: f32,
        /// Whether `x` is divided by `k` (else multiplied).
        divide: bool,
        /// Whether `x * 0.5` is taken before the product with `e + 1`.
        half_first: bool,
    },
    /// Gelu's tanh form as the eight nodes an exporter writes below opset 20 (torch's
    /// `GELU(approximate="tanh")`, GPT-2's `gelu_new`), rounded op by op (the executor runs
    /// such a chain as one pass; same bits as the nodes): `t = tanh((x + (x * x * x) * c1) *
    /// c2)`, then `(x * 0.5) * (t + 1)`, or `(x * (t + 1)) * 0.5` unless `half_first`.
    GeluTanhOps {
        /// The cubic term's coefficient (0.044715 in the graph's f32).
        c1: f32,
        /// The tanh argument's scale (`sqrt(2 / pi)` in the graph's f32).
        c2: f32,
        /// Whether `x * 0.5` is taken before the product with `t + 1`.
        half_first: bool,
    },
    /// SiLU (swish) as the Sigmoid and Mul nodes an exporter writes for it compute it, `x *
    /// (1 / (1 + exp(-x)))` (the executor runs such a pair as one pass, or in the epilogue of
    /// the conv before it; same bits as the two nodes).
    Silu,
    /// `x * tanh(softplus(x))` (ONNX `Mish`).
    Mish,
    /// `min(max(x, min), max)`; NaN passes through. Absent bounds are `f32::NEG_INFINITY` /
    /// `f32::INFINITY` (opset < 11 attribute defaults are the f32 lowest/highest values,
    /// which behave the same).
    Clip {
        /// Lower bound.
        min: f32,
        /// Upper bound.
        max: f32,
    },
    /// `x < 0 ? alpha x : x`; ONNX default `alpha = 0.01`.
    LeakyRelu {
        /// Negative slope.
        alpha: f32,
    },
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `exp(x)`.
    Exp,
    /// Natural log.
    Log,
    /// `1 / x`.
    Reciprocal,
    /// Round down.
    Floor,
    /// Round up.
    Ceil,
    /// Round half to even (ONNX `Round`).
    Round,
    /// Identity (a copy).
    Identity,
}

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
// sqrt(2 / pi)
const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// `e^x` in f32 without a libm call, branch-free so that loops over it vectorise (Cephes
/// `expf`: `x = n ln 2 + r` with `|r| <= ln 2 / 2`, a degree-6 polynomial for `e^r`, and
/// `2^n` built in the exponent bits, as two factors so that `n = 128` still fits; within
/// 2 ulp of the exact value over the normal range).
/// Below `ln(f32::MIN_POSITIVE)` (about -87.34, where the exact value is subnormal) it
/// returns 0; above `ln(f32::MAX)` `+inf`; NaN stays NaN. The polynomial and the reduction
/// use fused multiply-adds (`mul_add`, one rounding each, exactly specified): the same bits
/// whether a loop runs it vectorised or not, on any instruction set (a CPU without FMA, which
/// pulp's dispatch only picks on pre-2013 x86, computes them in software, slowly). Against
/// separate multiplies and adds: exp over 1.2M elements 0.54 -> 0.40 ms, erf 1.70 -> 1.11.
#[inline(always)]
pub(crate) fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two: n * C1 is exact for the n that occur.
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer (ties to even) held in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    const LO: f32 = -87.336_55;
    // Just below ln(f32::MAX).
    const HI: f32 = 88.722_83;
    let xc = x.clamp(LO, HI);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let r = (-n).mul_add(C2, (-n).mul_add(C1, xc));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    // 2^n = 2^h * 2^(n - h), each an exponent field (t's bits are 0x4B40_0000 + n, and
    // -126 <= n <= 128); y * 2^h is exact, so the product rounds once, as y * 2^n would.
    let n_i = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let h = n_i >> 1;
    let s1 = f32::from_bits(((h + 127) as u32) << 23);
    let s2 = f32::from_bits(((n_i - h + 127) as u32) << 23);
    let v = (y * s1) * s2;
    if x < LO {
        0.0
    } else if x > 88.722_84 {
        f32::INFINITY
    } else if x.is_nan() {
        x
    } else {
        v
    }
}

/// `p[0] + p[1] t + p[2] t^2 + ...` by Horner's rule with fused multiply-adds (see
/// [`exp_f32`]).
#[inline(always)]
fn horner<const N: usize>(t: f32, p: &[f32; N]) -> f32 {
    let mut acc = p[N - 1];
    for &c in p[..N - 1].iter().rev() {
        acc = acc.mul_add(t, c);
    }
    acc
}

/// `erf(x)` in f32 without a libm call, branch-free so that loops over it vectorise (`libm`'s
/// `erff` is a scalar call: 10 of a ConvNeXt block's 17 ms went to it). Two pieces, both
/// computed and one selected: `|x| <= 0.921875`: `x P(x^2)`, `P` of degree 6; above:
/// `1 - exp(R(|x| - 2.4609375) - x^2)` with `R` of degree 10 fitting `ln erfc(x) + x^2`, `|x|`
/// clamped at 4 (where `erf` rounds to 1). Coefficients: weighted least squares refined
/// toward minimax against f64 `erf` (`xtask/scripts/fit_erf_tanh.py`); within 2 ulp of the
/// exact value (tests sweep it). NaN stays NaN; `erf(-0) = -0`.
#[inline(always)]
pub(crate) fn erf_f32(x: f32) -> f32 {
    const SPLIT: f32 = 0.921_875;
    const MID: f32 = 2.460_937_5;
    const P: [f32; 7] = [
        std::f32::consts::FRAC_2_SQRT_PI,
        -0.376_126_35,
        0.112_836_96,
        -0.026_859_4,
        0.005_201_036_6,
        -0.000_814_274_6,
        8.370_249e-5,
    ];
    const R: [f32; 11] = [
        -1.542_952_4,
        -0.357_114_26,
        0.057_398_75,
        -0.011_203_076,
        0.002_249_581_7,
        -0.000_439_096_85,
        8.043_525e-5,
        -1.359_994_5e-5,
        1.937_174_6e-6,
        -4.002_107_4e-8,
        -5.472_41e-8,
    ];
    let a = x.abs();
    let small = a * horner(a * a, &P);
    let ac = a.min(4.0);
    let big = 1.0 - exp_f32(horner(ac - MID, &R) - ac * ac);
    let y = if a <= SPLIT { small } else { big };
    if x.is_nan() {
        x
    } else {
        y.copysign(x)
    }
}

/// `tanh(x)` in f32 without a libm call, branch-free so that loops over it vectorise (std's
/// `tanh` is a scalar call: 6 of a GPT-style layer's 42 ms). `|x| < 0.625`: `x + x^3 P(x^2)`,
/// `P` of degree 5 (fitted as [`erf_f32`]'s); above: `1 - 2 / (e^(2|x|) + 1)` with `|x|`
/// clamped at 9.1 (where `tanh` rounds to 1). Within 2 ulp of the exact value (tests sweep
/// it). NaN stays NaN; `tanh(-0) = -0`.
#[inline(always)]
pub(crate) fn tanh_f32(x: f32) -> f32 {
    const SPLIT: f32 = 0.625;
    const P: [f32; 6] = [
        -0.333_333_34,
        0.133_333_86,
        -0.053_979_363,
        0.021_919_599,
        -0.008_791_183,
        0.002_752_496_4,
    ];
    let a = x.abs();
    let t = a * a;
    let small = (a * t).mul_add(horner(t, &P), a);
    let big = 1.0 - 2.0 / (exp_f32(2.0 * a.min(9.1)) + 1.0);
    let y = if a < SPLIT { small } else { big };
    if x.is_nan() {
        x
    } else {
        y.copysign(x)
    }
}

/// `1 / (1 + e^-x)`: Sigmoid, SiLU's factor and the recurrent cells' gates, one formula so
/// their bits agree.
#[inline(always)]
pub(crate) fn sigmoid_f32(x: f32) -> f32 {
    1.0 / (1.0 + exp_f32(-x))
}

#[inline(always)]
fn apply_unary(op: UnaryOp, x: f32) -> f32 {
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Sigmoid => sigmoid_f32(x),
        UnaryOp::Tanh => tanh_f32(x),
        UnaryOp::Erf => erf_f32(x),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Gelu(GeluApprox::None) => 0.5 * x * (1.0 + erf_f32(x * FRAC_1_SQRT_2)),
        UnaryOp::Gelu(GeluApprox::Tanh) => {
            0.5 * x * (1.0 + tanh_f32(SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)))
        }
        UnaryOp::HardSigmoid { alpha, beta } => (alpha * x + beta).clamp(0.0, 1.0),
        UnaryOp::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
        // The Sigmoid node's value, then the Mul's product: the two nodes' bits.
        UnaryOp::Silu => x * sigmoid_f32(x),
        UnaryOp::Mish => x * tanh_f32(super::map::softplus(x)),
        UnaryOp::GeluOps {
            k,
            divide,
            half_first,
        } => {
            let e = erf_f32(if divide { x / k } else { x * k });
            if half_first {
                (x * 0.5) * (e + 1.0)
            } else {
                (x * (e + 1.0)) * 0.5
            }
        }
        UnaryOp::GeluTanhOps { c1, c2, half_first } => {
            // Pow(x, 3) runs as x * x * x (see `binary_f32`), then Mul, Add, Mul, Tanh, Add.
            let t = tanh_f32((x + x * x * x * c1) * c2) + 1.0;
            if half_first {
                (x * 0.5) * t
            } else {
                (x * t) * 0.5
            }
        }
        UnaryOp::HardSwishOps => {
            // Clip's semantics (f32::clamp: NaN passes, -0 stays), written out: a call back
            // into this function would not inline, and the map would not vectorise.
            x * (x + 3.0).clamp(0.0, 6.0) / 6.0
        }
        UnaryOp::Clip { min, max } => {
            // `Min(max, Max(x, min))`, as the spec defines it: with `min > max` every
            // element becomes `max`. NaN passes through both comparisons.
            let v = if x < min { min } else { x };
            if v > max {
                max
            } else {
                v
            }
        }
        UnaryOp::LeakyRelu { alpha } => {
            if x < 0.0 {
                alpha * x
            } else {
                x
            }
        }
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Exp => exp_f32(x),
        UnaryOp::Log => x.ln(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
        UnaryOp::Identity => x,
    }
}

pub(crate) fn check_unary(op: UnaryOp) -> KernelResult<()> {
    if let UnaryOp::Clip { min, max } = op {
        if min.is_nan() || max.is_nan() {
            return Err(invalid(
                "Clip",
                "min/max",
                format!("bounds must not be NaN (min {min}, max {max})"),
            ));
        }
    }
    Ok(())
}

/// A loop over elements that [`with_unary`] runs with one closure type per operator, so every
/// loop is monomorphic and the cheap operators vectorise (a `match` per element does not).
pub(crate) trait UnaryMap {
    /// Applies `f` to every element.
    fn map(self, f: impl Fn(f32) -> f32 + Copy + Sync);
}

/// In place over a slice (a fused activation).
pub(crate) struct MapInPlace<'a>(pub(crate) &'a mut [f32]);

impl UnaryMap for MapInPlace<'_> {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32 + Copy + Sync) {
        for v in self.0 {
            *v = f(*v);
        }
    }
}

/// From a source slice into a destination of the same length.
struct MapFrom<'a>(&'a [f32], &'a mut [f32]);

impl UnaryMap for MapFrom<'_> {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32 + Copy + Sync) {
        for (o, &v) in self.1.iter_mut().zip(self.0) {
            *o = f(v);
        }
    }
}

/// Calls `m.map` with `op` as a closure of its own type (the variant fixed, so `apply_unary`'s
/// `match` folds away inside the loop).
#[inline(always)]
pub(crate) fn with_unary(op: UnaryOp, m: impl UnaryMap) {
    use UnaryOp as U;
    match op {
        U::Relu => m.map(
            #[inline(always)]
            |x| apply_unary(U::Relu, x),
        ),
        U::Sigmoid => m.map(
            #[inline(always)]
            |x| apply_unary(U::Sigmoid, x),
        ),
        U::Tanh => m.map(
            #[inline(always)]
            |x| apply_unary(U::Tanh, x),
        ),
        U::Erf => m.map(
            #[inline(always)]
            |x| apply_unary(U::Erf, x),
        ),
        U::Sqrt => m.map(
            #[inline(always)]
            |x| apply_unary(U::Sqrt, x),
        ),
        U::Gelu(GeluApprox::None) => m.map(
            #[inline(always)]
            |x| apply_unary(U::Gelu(GeluApprox::None), x),
        ),
        U::Gelu(GeluApprox::Tanh) => m.map(
            #[inline(always)]
            |x| apply_unary(U::Gelu(GeluApprox::Tanh), x),
        ),
        U::HardSigmoid { alpha, beta } => m.map(
            #[inline(always)]
            move |x| apply_unary(U::HardSigmoid { alpha, beta }, x),
        ),
        U::HardSwish => m.map(
            #[inline(always)]
            |x| apply_unary(U::HardSwish, x),
        ),
        U::HardSwishOps => m.map(
            #[inline(always)]
            |x| apply_unary(U::HardSwishOps, x),
        ),
        U::Silu => m.map(
            #[inline(always)]
            |x| apply_unary(U::Silu, x),
        ),
        U::Mish => m.map(
            #[inline(always)]
            |x| apply_unary(U::Mish, x),
        ),
        // One closure per form, so the form's branches fold away inside the loop.
        U::GeluOps {
            k,
            divide,
            half_first,
        } => match (divide, half_first) {
            (true, true) => m.map(
                #[inline(always)]
                move |x| {
                    apply_unary(
                        U::GeluOps {
                            k,
                            divide: true,
                            half_first: true,
                        },
                        x,
                    )
                },
            ),
            (true, false) => m.map(
                #[inline(always)]
                move |x| {
                    apply_unary(
                        U::GeluOps {
                            k,
                            divide: true,
                            half_first: false,
                        },
                        x,
                    )
                },
            ),
            (false, true) => m.map(
                #[inline(always)]
                move |x| {
                    apply_unary(
                        U::GeluOps {
                            k,
                            divide: false,
                            half_first: true,
                        },
                        x,
                    )
                },
            ),
            (false, false) => m.map(
                #[inline(always)]
                move |x| {
                    apply_unary(
                        U::GeluOps {
                            k,
                            divide: false,
                            half_first: false,
                        },
                        x,
                    )
                },
            ),
        },
        U::GeluTanhOps { c1, c2, half_first } => {
            if half_first {
                m.map(
                    #[inline(always)]
                    move |x| {
                        apply_unary(
                            U::GeluTanhOps {
                                c1,
                                c2,
                                half_first: true,
                            },
                            x,
                        )
                    },
                )
            } else {
                m.map(
                    #[inline(always)]
                    move |x| {
                        apply_unary(
                            U::GeluTanhOps {
                                c1,
                                c2,
                                half_first: false,
                            },
                            x,
                        )
                    },
                )
            }
        }
        U::Clip { min, max } => m.map(
            #[inline(always)]
            move |x| apply_unary(U::Clip { min, max }, x),
        ),
        U::LeakyRelu { alpha } => m.map(
            #[inline(always)]
            move |x| apply_unary(U::LeakyRelu { alpha }, x),
        ),
        U::Neg => m.map(
            #[inline(always)]
            |x| apply_unary(U::Neg, x),
        ),
        U::Abs => m.map(
            #[inline(always)]
            |x| apply_unary(U::Abs, x),
        ),
        U::Exp => m.map(
            #[inline(always)]
            |x| apply_unary(U::Exp, x),
        ),
        U::Log => m.map(
            #[inline(always)]
            |x| apply_unary(U::Log, x),
        ),
        U::Reciprocal => m.map(
            #[inline(always)]
            |x| apply_unary(U::Reciprocal, x),
        ),
        U::Floor => m.map(
            #[inline(always)]
            |x| apply_unary(U::Floor, x),
        ),
        U::Ceil => m.map(
            #[inline(always)]
            |x| apply_unary(U::Ceil, x),
        ),
        U::Round => m.map(
            #[inline(always)]
            |x| apply_unary(U::Round, x),
        ),
        U::Identity => m.map(
            #[inline(always)]
            |x| x,
        ),
    }
}

/// Applies `op` elementwise: `out[i] = op(x[i])`. `x` and `out` have the same length
/// (any shape). Parallel over contiguous chunks; deterministic for any `threads`.
///
/// # Errors
/// Length mismatch, or NaN Clip bounds.
pub fn unary_f32(op: UnaryOp, x: &[f32], out: &mut [f32], threads: usize) -> KernelResult<()> {
    check_len("Unary", "output", out.len(), x.len())?;
    check_unary(op)?;
    par_chunks(out, 1, threads, PAR_MIN_ELEMS, |first, piece| {
        let src = &x[first..first + piece.len()];
        if op == UnaryOp::Identity {
            piece.copy_from_slice(src);
        } else {
            simd_dispatch(
                #[inline(always)]
                || with_unary(op, MapFrom(src, piece)),
            );
        }
    });
    Ok(())
}

/// In-place form of [`unary_f32`] (fusing an activation into a producer's output).
///
/// # Errors
/// NaN Clip bounds.
pub fn unary_f32_inplace(op: UnaryOp, data: &mut [f32], threads: usize) -> KernelResult<()> {
    check_unary(op)?;
    if op == UnaryOp::Identity {
        return Ok(());
    }
    par_chunks(data, 1, threads, PAR_MIN_ELEMS, |_, piece| {
        simd_dispatch(
            #[inline(always)]
            || with_unary(op, MapInPlace(piece)),
        );
    });
    Ok(())
}

/// A typed read-only view for [`cast`] (bool is one byte per element, 0 or 1).
#[derive(Debug, Clone, Copy)]
pub enum CastSrc<'a> {
    /// f32 elements.
    F32(&'a [f32]),
    /// f64 elements.
    F64(&'a [f64]),
    /// i64 elements.
    I64(&'a [i64]),
    /// i32 elements.
    I32(&'a [i32]),
    /// bool elements as `u8`.
    Bool(&'a [u8]),
    /// u8 elements.
    U8(&'a [u8]),
    /// i8 elements.
    I8(&'a [i8]),
    /// binary16 elements.
    F16(&'a [half::f16]),
    /// bfloat16 elements.
    BF16(&'a [half::bf16]),
    /// i16 elements.
    I16(&'a [i16]),
    /// u16 elements.
    U16(&'a [u16]),
    /// u32 elements.
    U32(&'a [u32]),
    /// u64 elements.
    U64(&'a [u64]),
    /// Narrow elements, one byte each.
    Narrow(Narrow, &'a [u8]),
}

/// A typed writable view for [`cast`].
#[derive(Debug)]
pub enum CastDst<'a> {
    /// f32 elements.
    F32(&'a mut [f32]),
    /// f64 elements.
    F64(&'a mut [f64]),
    /// i64 elements.
    I64(&'a mut [i64]),
    /// i32 elements.
    I32(&'a mut [i32]),
    /// bool elements as `u8`.
    Bool(&'a mut [u8]),
    /// u8 elements.
    U8(&'a mut [u8]),
    /// i8 elements.
    I8(&'a mut [i8]),
    /// binary16 elements.
    F16(&'a mut [half::f16]),
    /// bfloat16 elements.
    BF16(&'a mut [half::bf16]),
    /// i16 elements.
    I16(&'a mut [i16]),
    /// u16 elements.
    U16(&'a mut [u16]),
    /// u32 elements.
    U32(&'a mut [u32]),
    /// u64 elements.
    U64(&'a mut [u64]),
    /// Narrow elements, one byte each, and how values that do not fit convert.
    Narrow(Narrow, NarrowMode, &'a mut [u8]),
}

impl CastDst<'_> {
    /// The elements `at` of this view.
    fn part(&mut self, at: std::ops::Range<usize>) -> CastDst<'_> {
        match self {
            CastDst::F32(d) => CastDst::F32(&mut d[at]),
            CastDst::F64(d) => CastDst::F64(&mut d[at]),
            CastDst::I64(d) => CastDst::I64(&mut d[at]),
            CastDst::I32(d) => CastDst::I32(&mut d[at]),
            CastDst::Bool(d) => CastDst::Bool(&mut d[at]),
            CastDst::U8(d) => CastDst::U8(&mut d[at]),
            CastDst::I8(d) => CastDst::I8(&mut d[at]),
            CastDst::F16(d) => CastDst::F16(&mut d[at]),
            CastDst::BF16(d) => CastDst::BF16(&mut d[at]),
            CastDst::I16(d) => CastDst::I16(&mut d[at]),
            CastDst::U16(d) => CastDst::U16(&mut d[at]),
            CastDst::U32(d) => CastDst::U32(&mut d[at]),
            CastDst::U64(d) => CastDst::U64(&mut d[at]),
            CastDst::Narrow(n, m, d) => CastDst::Narrow(*n, *m, &mut d[at]),
        }
    }

    fn len(&self) -> usize {
        match self {
            CastDst::F32(d) => d.len(),
            CastDst::F64(d) => d.len(),
            CastDst::I64(d) => d.len(),
            CastDst::I32(d) => d.len(),
            CastDst::Bool(d) | CastDst::U8(d) | CastDst::Narrow(_, _, d) => d.len(),
            CastDst::I8(d) => d.len(),
            CastDst::F16(d) => d.len(),
            CastDst::BF16(d) => d.len(),
            CastDst::I16(d) => d.len(),
            CastDst::U16(d) => d.len(),
            CastDst::U32(d) => d.len(),
            CastDst::U64(d) => d.len(),
        }
    }
}

/// A source element of [`cast`]: floats go through f64 and integers through i64, both exact.
trait CastFrom: Copy {
    const FLOAT: bool;
    /// u64, whose upper half does not fit i64: to a float it goes through `float`.
    const U64: bool = false;
    fn float(self) -> f64;
    fn int(self) -> i64;
}

/// A destination element of [`cast`].
trait CastTo: Copy {
    /// Whether this is a float type.
    const IS_FLOAT: bool = false;
    fn from_float(v: f64) -> Self;
    fn from_int(v: i64) -> Self;
}

macro_rules! cast_float {
    ($($t:ty),*) => {$(
        impl CastFrom for $t {
            const FLOAT: bool = true;
            fn float(self) -> f64 { f64::from(self) }
            fn int(self) -> i64 { self as i64 }
        }
        impl CastTo for $t {
            const IS_FLOAT: bool = true;
            fn from_float(v: f64) -> Self { v as $t }
            fn from_int(v: i64) -> Self { v as $t }
        }
    )*};
}
cast_float!(f32, f64);

macro_rules! cast_int {
    ($($t:ty),*) => {$(
        impl CastFrom for $t {
            const FLOAT: bool = false;
            fn float(self) -> f64 { self as f64 }
            fn int(self) -> i64 { i64::from(self) }
        }
        impl CastTo for $t {
            // `as` from a float saturates (NaN to 0); from a wider integer it wraps.
            fn from_float(v: f64) -> Self { v as $t }
            fn from_int(v: i64) -> Self { v as $t }
        }
    )*};
}
cast_int!(i64, i32, u8, i8, i16, u16, u32);

impl CastFrom for u64 {
    const FLOAT: bool = false;
    const U64: bool = true;
    fn float(self) -> f64 {
        self as f64
    }
    // Wraps, as every integer narrowing does; the low bits are the value's.
    fn int(self) -> i64 {
        self as i64
    }
}
impl CastTo for u64 {
    fn from_float(v: f64) -> Self {
        v as u64
    }
    fn from_int(v: i64) -> Self {
        v as u64
    }
}

// 16-bit floats through f64 (exact both ways); to them is one rounding, to nearest even.
macro_rules! cast_half {
    ($($t:ty),*) => {$(
        impl CastFrom for $t {
            const FLOAT: bool = true;
            fn float(self) -> f64 { f64::from(self) }
            fn int(self) -> i64 { f64::from(self) as i64 }
        }
        impl CastTo for $t {
            const IS_FLOAT: bool = true;
            fn from_float(v: f64) -> Self { <$t>::from_f64(v) }
            fn from_int(v: i64) -> Self { <$t>::from_f64(v as f64) }
        }
    )*};
}
cast_half!(half::f16, half::bf16);

/// Bool as a destination (bool as a source is `u8`, already 0 or 1).
#[derive(Clone, Copy)]
struct BoolByte(u8);

impl CastTo for BoolByte {
    fn from_float(v: f64) -> Self {
        BoolByte(u8::from(v != 0.0))
    }
    fn from_int(v: i64) -> Self {
        BoolByte(u8::from(v != 0))
    }
}

/// One source element as the destination type; `BOOL` reads a stored bool as 0 or 1.
fn cast_one<S: CastFrom, D: CastTo, const BOOL: bool>(v: S) -> D {
    // `S::FLOAT` and `BOOL` are constants: each instance keeps one branch.
    if S::FLOAT || (S::U64 && D::IS_FLOAT) {
        D::from_float(v.float())
    } else if BOOL {
        D::from_int(i64::from(v.int() != 0))
    } else {
        D::from_int(v.int())
    }
}

fn cast_slice<S: CastFrom, D: CastTo, const BOOL: bool>(s: &[S], d: &mut [D]) -> KernelResult<()> {
    check_len("Cast", "output", d.len(), s.len())?;
    for (o, &v) in d.iter_mut().zip(s) {
        *o = cast_one::<S, D, BOOL>(v);
    }
    Ok(())
}

/// ONNX `Cast` between f32, f64, f16, i64, i32, u8, i8 and bool. Float to integer truncates toward
/// zero and saturates (NaN becomes 0; ONNX leaves out-of-range values undefined); anything to
/// bool is `x != 0` (NaN is true); bool to number is 0/1; integer narrowing wraps (two's
/// complement, like C++ `static_cast`).
///
/// # Errors
/// Source and destination lengths differ.
pub fn cast(src: CastSrc<'_>, dst: CastDst<'_>) -> KernelResult<()> {
    cast_par(src, dst, 1)
}

/// [`cast`] on up to `threads` threads for f16/bf16 <-> f32, the casts around every operator
/// of a 16-bit float model, which use half's slice conversions (F16C where the CPU has it; the
/// same rounding, to nearest even); every other pair runs as [`cast`] does, on the caller.
///
/// # Errors
/// Source and destination lengths differ.
pub fn cast_par(src: CastSrc<'_>, dst: CastDst<'_>, threads: usize) -> KernelResult<()> {
    match (src, dst) {
        (CastSrc::F16(s), CastDst::F32(d)) => widen_par(s, d, threads),
        (CastSrc::BF16(s), CastDst::F32(d)) => widen_par(s, d, threads),
        (CastSrc::F32(s), CastDst::F16(d)) => narrow_par(s, d, threads),
        (CastSrc::F32(s), CastDst::BF16(d)) => narrow_par(s, d, threads),
        (src, dst) => cast_any(src, dst),
    }
}

fn widen_par<H: Sync>(s: &[H], d: &mut [f32], threads: usize) -> KernelResult<()>
where
    [H]: HalfFloatSliceExt,
{
    check_len("Cast", "output", d.len(), s.len())?;
    par_chunks(d, 1, threads, PAR_MIN_ELEMS, |first, piece| {
        s[first..first + piece.len()].convert_to_f32_slice(piece);
    });
    Ok(())
}

fn narrow_par<H: Send>(s: &[f32], d: &mut [H], threads: usize) -> KernelResult<()>
where
    [H]: HalfFloatSliceExt,
{
    check_len("Cast", "output", d.len(), s.len())?;
    par_chunks(d, 1, threads, PAR_MIN_ELEMS, |first, piece| {
        piece.convert_from_f32_slice(&s[first..first + piece.len()]);
    });
    Ok(())
}

pub(super) fn cast_any(src: CastSrc<'_>, dst: CastDst<'_>) -> KernelResult<()> {
    fn to<S: CastFrom, const BOOL: bool>(s: &[S], dst: CastDst<'_>) -> KernelResult<()> {
        match dst {
            CastDst::F32(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::F64(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::I64(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::I32(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::U8(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::I8(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::F16(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::BF16(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::I16(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::U16(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::U32(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::U64(d) => cast_slice::<_, _, BOOL>(s, d),
            CastDst::Bool(d) => {
                check_len("Cast", "output", d.len(), s.len())?;
                for (o, &v) in d.iter_mut().zip(s) {
                    *o = cast_one::<S, BoolByte, BOOL>(v).0;
                }
                Ok(())
            }
            CastDst::Narrow(n, mode, d) => {
                check_len("Cast", "output", d.len(), s.len())?;
                // Floats (and u64 to a float) round once from their exact f64 value;
                // integers keep their low bits in an integer type.
                let float = S::FLOAT || (S::U64 && n.is_float());
                for (o, &v) in d.iter_mut().zip(s) {
                    *o = if float {
                        n.encode(v.float(), mode)
                    } else if BOOL {
                        n.encode_int(i64::from(v.int() != 0), mode)
                    } else {
                        n.encode_int(v.int(), mode)
                    };
                }
                Ok(())
            }
        }
    }
    /// Narrow sources decode exactly to f32 (every narrow value is one) and convert from
    /// there, a block at a time through the stack: no allocation.
    fn from_narrow(n: Narrow, s: &[u8], mut dst: CastDst<'_>) -> KernelResult<()> {
        check_len("Cast", "output", dst.len(), s.len())?;
        const BLOCK: usize = 256;
        let table = n.table();
        let mut buf = [0f32; BLOCK];
        for (k, codes) in s.chunks(BLOCK).enumerate() {
            let vals = &mut buf[..codes.len()];
            for (v, &b) in vals.iter_mut().zip(codes) {
                *v = table[usize::from(b)];
            }
            let at = k * BLOCK..k * BLOCK + codes.len();
            to::<f32, false>(vals, dst.part(at))?;
        }
        Ok(())
    }
    match src {
        CastSrc::F32(s) => to::<_, false>(s, dst),
        CastSrc::F64(s) => to::<_, false>(s, dst),
        CastSrc::I64(s) => to::<_, false>(s, dst),
        CastSrc::I32(s) => to::<_, false>(s, dst),
        CastSrc::U8(s) => to::<_, false>(s, dst),
        CastSrc::I8(s) => to::<_, false>(s, dst),
        CastSrc::F16(s) => to::<_, false>(s, dst),
        CastSrc::BF16(s) => to::<_, false>(s, dst),
        CastSrc::Bool(s) => to::<_, true>(s, dst),
        CastSrc::I16(s) => to::<_, false>(s, dst),
        CastSrc::U16(s) => to::<_, false>(s, dst),
        CastSrc::U32(s) => to::<_, false>(s, dst),
        CastSrc::U64(s) => to::<_, false>(s, dst),
        CastSrc::Narrow(n, s) => from_narrow(n, s, dst),
    }
}
