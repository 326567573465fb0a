//! A small constant evaluator for load-time folding (shape arithmetic and data movement).
//!
//! Deliberately separate from the kernels: it runs once at load on small tensors, favours
//! obviously-correct index arithmetic over speed, and never panics (integer overflow wraps,
//! division by zero is an error).

use crate::error::ExecError;
use crate::graph::{CompareKind, DType, LogicKind, MathFn, Op, ReduceKind, TensorData};
use crate::kernels;
use crate::loader::node::NodeCtx;
use crate::loader::tensor::{checked_bytes, MAX_CONSTANT_BYTES};

/// Rejects constants too large to materialise at load.
pub(crate) fn check_const_size(
    c: &NodeCtx<'_>,
    shape: &[usize],
    dtype: DType,
) -> Result<(), ExecError> {
    match checked_bytes(shape, dtype) {
        Some(b) if b <= MAX_CONSTANT_BYTES && b <= c.const_budget => Ok(()),
        _ => Err(c.overflow(format!("constant of shape {shape:?} is too large"))),
    }
}

/// `n` copies of the single element of `fill`.
pub(crate) fn splat(fill: &TensorData, n: usize) -> TensorData {
    match fill {
        TensorData::F32(v) => TensorData::F32(vec![v.first().copied().unwrap_or(0.0); n]),
        TensorData::I32(v) => TensorData::I32(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::I64(v) => TensorData::I64(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::Bool(v) => TensorData::Bool(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::U8(v) => TensorData::U8(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::I8(v) => TensorData::I8(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::F16(v) => TensorData::F16(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::BF16(v) => TensorData::BF16(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::F64(v) => TensorData::F64(vec![v.first().copied().unwrap_or(0.0); n]),
        TensorData::I16(v) => TensorData::I16(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::U16(v) => TensorData::U16(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::U32(v) => TensorData::U32(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::U64(v) => TensorData::U64(vec![v.first().copied().unwrap_or(0); n]),
        TensorData::Narrow(t, v) => {
            TensorData::Narrow(*t, vec![v.first().copied().unwrap_or(0); n])
        }
    }
}

/// Elements of `d` at the flat indices `idx` (all in range by construction).
fn take(d: &TensorData, idx: &[usize]) -> TensorData {
    fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
        idx.iter().filter_map(|&i| v.get(i).copied()).collect()
    }
    match d {
        TensorData::F32(v) => TensorData::F32(pick(v, idx)),
        TensorData::I32(v) => TensorData::I32(pick(v, idx)),
        TensorData::I64(v) => TensorData::I64(pick(v, idx)),
        TensorData::Bool(v) => TensorData::Bool(pick(v, idx)),
        TensorData::U8(v) => TensorData::U8(pick(v, idx)),
        TensorData::I8(v) => TensorData::I8(pick(v, idx)),
        TensorData::F16(v) => TensorData::F16(pick(v, idx)),
        TensorData::BF16(v) => TensorData::BF16(pick(v, idx)),
        TensorData::F64(v) => TensorData::F64(pick(v, idx)),
        TensorData::I16(v) => TensorData::I16(pick(v, idx)),
        TensorData::U16(v) => TensorData::U16(pick(v, idx)),
        TensorData::U32(v) => TensorData::U32(pick(v, idx)),
        TensorData::U64(v) => TensorData::U64(pick(v, idx)),
        TensorData::Narrow(t, v) => TensorData::Narrow(*t, pick(v, idx)),
    }
}

fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Calls `f(flat_out, coords)` for every element of `shape` in row-major order.
fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    let n: usize = shape.iter().product();
    let mut coord = vec![0usize; shape.len()];
    for _ in 0..n {
        f(&coord);
        for a in (0..shape.len()).rev() {
            coord[a] += 1;
            if coord[a] < shape[a] {
                break;
            }
            coord[a] = 0;
        }
    }
}

/// For each element of `out`, the flat index of the broadcast source element in `inp`.
fn broadcast_index(inp: &[usize], out: &[usize]) -> Vec<usize> {
    let st = strides(inp);
    let off = out.len() - inp.len();
    let mut idx = Vec::with_capacity(out.iter().product());
    for_each_index(out, |c| {
        let mut f = 0;
        for (a, &d) in inp.iter().enumerate() {
            if d != 1 {
                f += c[a + off] * st[a];
            }
        }
        idx.push(f);
    });
    idx
}

/// An input of a folded node: its data and shape.
pub(crate) type Arg<'a> = (&'a TensorData, &'a [usize]);

/// Outputs larger than this are left to the runtime kernels: folding is for shape arithmetic,
/// and the evaluator's index lists cost 8 bytes per element.
const FOLD_MAX_ELEMENTS: usize = 1 << 22;

/// A constant zero point as the `$variant` slice, `None` when absent; one of another type
/// leaves the node to the runtime (its kernel reports the mismatch).
macro_rules! zp_as {
    ($zp:expr, $variant:ident) => {
        match $zp {
            None => None,
            Some(TensorData::$variant(z)) => Some(z.as_slice()),
            Some(_) => return Ok(None),
        }
    };
}

/// Evaluates `op` on constant inputs. `Ok(None)`: the evaluator does not cover this op (it
/// stays a runtime node). `outs` are the inferred output shapes.
pub(crate) fn eval(
    c: &NodeCtx<'_>,
    op: &Op,
    args: &[Arg<'_>],
    outs: &[(DType, Vec<usize>)],
) -> Result<Option<Vec<TensorData>>, ExecError> {
    for (dt, shape) in outs {
        if crate::loader::tensor::checked_numel(shape).is_none_or(|n| n > FOLD_MAX_ELEMENTS) {
            return Ok(None);
        }
        check_const_size(c, shape, *dt)?;
    }
    let out_shape = match outs.first() {
        Some((_, s)) => s.as_slice(),
        None => return Ok(None),
    };
    let one = |d: TensorData| Ok(Some(vec![d]));
    match op {
        Op::Reshape { .. } | Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            one(args[0].0.clone())
        }
        Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Pow | Op::Mod { .. } | Op::Equal => {
            // 8-bit arithmetic is not shape arithmetic: the runtime kernel computes it.
            if matches!(args[0].0.dtype(), DType::U8 | DType::I8) {
                return Ok(None);
            }
            let a = take(args[0].0, &broadcast_index(args[0].1, out_shape));
            let b = take(args[1].0, &broadcast_index(args[1].1, out_shape));
            binary(c, op, &a, &b).map(|d| Some(vec![d]))
        }
        // Conditions on shapes (an `If`'s `cond`, a `Where` over dimensions): exact on
        // every type, so folding cannot disagree with the runtime kernel.
        Op::Compare { cmp } => {
            let a = take(args[0].0, &broadcast_index(args[0].1, out_shape));
            let b = take(args[1].0, &broadcast_index(args[1].1, out_shape));
            fn ord<T: PartialOrd>(x: &[T], y: &[T], cmp: CompareKind) -> Vec<u8> {
                x.iter()
                    .zip(y)
                    .map(|(p, q)| {
                        u8::from(match cmp {
                            CompareKind::Less => p < q,
                            CompareKind::LessOrEqual => p <= q,
                            CompareKind::Greater => p > q,
                            CompareKind::GreaterOrEqual => p >= q,
                        })
                    })
                    .collect()
            }
            let r = match (&a, &b) {
                (TensorData::I64(x), TensorData::I64(y)) => ord(x, y, *cmp),
                (TensorData::I32(x), TensorData::I32(y)) => ord(x, y, *cmp),
                (TensorData::F32(x), TensorData::F32(y)) => ord(x, y, *cmp),
                _ => return Ok(None),
            };
            one(TensorData::Bool(r))
        }
        // Shape arithmetic (`Max(Shape(x), target)` in expanded CenterCropPad): integers only,
        // as f32 Max/Min differ from the kernel's on NaN and signed zeros.
        Op::Max | Op::Min => {
            let max = matches!(op, Op::Max);
            let mut acc = take(args[0].0, &broadcast_index(args[0].1, out_shape));
            for arg in &args[1..] {
                let b = take(arg.0, &broadcast_index(arg.1, out_shape));
                acc = match (acc, &b) {
                    (TensorData::I64(a), TensorData::I64(b)) => TensorData::I64(
                        a.iter()
                            .zip(b)
                            .map(|(&p, &q)| if max { p.max(q) } else { p.min(q) })
                            .collect(),
                    ),
                    (TensorData::I32(a), TensorData::I32(b)) => TensorData::I32(
                        a.iter()
                            .zip(b)
                            .map(|(&p, &q)| if max { p.max(q) } else { p.min(q) })
                            .collect(),
                    ),
                    _ => return Ok(None),
                };
            }
            one(acc)
        }
        // Integer reductions of shapes (`ReduceProd` of a shape's tail: the element count a
        // `Reshape` needs); exact, with wrapping like the runtime's integer kernels.
        Op::Reduce {
            kind: kind @ (ReduceKind::Sum | ReduceKind::Prod | ReduceKind::Max | ReduceKind::Min),
            axes,
            ..
        } => {
            let in_shape = args[0].1;
            let n_out: usize = out_shape.iter().product();
            let mut oidx = Vec::with_capacity(args[0].0.len());
            for_each_index(in_shape, |c| {
                let mut f = 0;
                for (a, &d) in in_shape.iter().enumerate() {
                    if !axes.contains(&a) {
                        f = f * d + c[a];
                    }
                }
                oidx.push(f);
            });
            macro_rules! fold {
                ($v:expr, $t:ty, $variant:ident) => {{
                    let (init, f): ($t, fn($t, $t) -> $t) = match kind {
                        ReduceKind::Sum => (0, <$t>::wrapping_add),
                        ReduceKind::Prod => (1, <$t>::wrapping_mul),
                        ReduceKind::Max => (<$t>::MIN, <$t>::max),
                        _ => (<$t>::MAX, <$t>::min),
                    };
                    let mut acc = vec![init; n_out];
                    for (&v, &o) in $v.iter().zip(&oidx) {
                        acc[o] = f(acc[o], v);
                    }
                    one(TensorData::$variant(acc))
                }};
            }
            match args[0].0 {
                TensorData::I64(v) => fold!(v, i64, I64),
                TensorData::I32(v) => fold!(v, i32, I32),
                _ => Ok(None),
            }
        }
        Op::Logic { op: kind } => {
            let a = take(args[0].0, &broadcast_index(args[0].1, out_shape));
            let b = take(args[1].0, &broadcast_index(args[1].1, out_shape));
            let (TensorData::Bool(x), TensorData::Bool(y)) = (&a, &b) else {
                return Ok(None);
            };
            let f = |p: u8, q: u8| {
                let (p, q) = (p != 0, q != 0);
                u8::from(match kind {
                    LogicKind::And => p && q,
                    LogicKind::Or => p || q,
                    LogicKind::Xor => p != q,
                })
            };
            one(TensorData::Bool(
                x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect(),
            ))
        }
        Op::Not => match args[0].0 {
            TensorData::Bool(x) => one(TensorData::Bool(
                x.iter().map(|&v| u8::from(v == 0)).collect(),
            )),
            _ => Ok(None),
        },
        Op::Sum => {
            let mut acc = take(args[0].0, &broadcast_index(args[0].1, out_shape));
            for arg in &args[1..] {
                let b = take(arg.0, &broadcast_index(arg.1, out_shape));
                acc = binary(c, &Op::Add, &acc, &b)?;
            }
            one(acc)
        }
        Op::Where => {
            let cond = take(args[0].0, &broadcast_index(args[0].1, out_shape));
            let TensorData::Bool(cond) = cond else {
                return Ok(None);
            };
            let xi = broadcast_index(args[1].1, out_shape);
            let yi = broadcast_index(args[2].1, out_shape);
            // Build one combined source: x then y; pick per element.
            let nx = args[1].0.len();
            let idx: Vec<usize> = cond
                .iter()
                .zip(xi.iter().zip(&yi))
                .map(|(&c, (&x, &y))| if c != 0 { x } else { nx + y })
                .collect();
            let both = concat_data(&[args[1].0, args[2].0]).ok_or_else(|| c.mismatch("types"))?;
            one(take(&both, &idx))
        }
        Op::Relu | Op::Sigmoid | Op::Tanh | Op::Sqrt | Op::HardSwish => {
            let Some(x) = args[0].0.as_f32() else {
                return Ok(None);
            };
            let f: fn(f32) -> f32 = match op {
                Op::Relu => |v| v.max(0.0),
                Op::Sigmoid => |v| 1.0 / (1.0 + (-v).exp()),
                Op::Tanh => f32::tanh,
                Op::Sqrt => f32::sqrt,
                _ => |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
            };
            one(TensorData::F32(x.iter().map(|&v| f(v)).collect()))
        }
        Op::Clip { min, max } => {
            let Some(x) = args[0].0.as_f32() else {
                return Ok(None);
            };
            one(TensorData::F32(
                x.iter().map(|&v| v.max(*min).min(*max)).collect(),
            ))
        }
        // Shape arithmetic (`Neg` of an axis in expanded LayerNormalization): integers only,
        // so no float function is evaluated differently from the runtime kernel.
        Op::Math {
            f: f @ (MathFn::Neg | MathFn::Abs),
        } => {
            let neg = *f == MathFn::Neg;
            macro_rules! neg_abs {
                ($v:expr, $variant:ident) => {
                    one(TensorData::$variant(
                        $v.iter()
                            .map(|&x| {
                                if neg {
                                    x.wrapping_neg()
                                } else {
                                    x.wrapping_abs()
                                }
                            })
                            .collect(),
                    ))
                };
            }
            match args[0].0 {
                TensorData::I64(v) => neg_abs!(v, I64),
                TensorData::I32(v) => neg_abs!(v, I32),
                _ => Ok(None),
            }
        }
        // Exact on f32 (no rounding of their own): a trip count computed as `ceil((limit -
        // start) / delta)` (expanded `Range`) folds like the integer arithmetic around it.
        Op::Math {
            f: f @ (MathFn::Floor | MathFn::Ceil | MathFn::Round),
        } => {
            let Some(x) = args[0].0.as_f32() else {
                return Ok(None);
            };
            let g: fn(f32) -> f32 = match f {
                MathFn::Floor => f32::floor,
                MathFn::Ceil => f32::ceil,
                _ => f32::round_ties_even,
            };
            one(TensorData::F32(x.iter().map(|&v| g(v)).collect()))
        }
        // Narrow types convert with the run-time kernel (saturation, E8M0 rounding).
        Op::Cast { to, narrow } if matches!(to, DType::Narrow(_)) || is_narrow(args[0].0) => {
            one(cast_narrow(c, args[0].0, *to, *narrow)?)
        }
        Op::Cast { to, .. } => one(cast(args[0].0, *to)),
        // Weights computed at load (ConstantOfShape, folded arithmetic) quantize once here.
        // Quantized weights of a QDQ model fold to f32 below, so the f32 kernels (with their
        // load-time weight preparation) run the layer. Same kernel as at run time.
        Op::QuantizeLinear { layout, saturate } => {
            let (Some(x), Some(scale)) = (args[0].0.as_f32(), args[1].0.as_f32()) else {
                return Ok(None);
            };
            let (x_shape, zp) = (args[0].1, args.get(2).map(|a| a.0));
            let r = match outs[0].0 {
                DType::U8 => {
                    let mut o = vec![0u8; x.len()];
                    kernels::quantize_linear(x, x_shape, scale, zp_as!(zp, U8), *layout, &mut o, 1)
                        .map(|()| TensorData::U8(o))
                }
                DType::I8 => {
                    let mut o = vec![0i8; x.len()];
                    kernels::quantize_linear(x, x_shape, scale, zp_as!(zp, I8), *layout, &mut o, 1)
                        .map(|()| TensorData::I8(o))
                }
                DType::I16 => {
                    let mut o = vec![0i16; x.len()];
                    let zp = zp_as!(zp, I16);
                    kernels::quantize_linear(x, x_shape, scale, zp, *layout, &mut o, 1)
                        .map(|()| TensorData::I16(o))
                }
                DType::U16 => {
                    let mut o = vec![0u16; x.len()];
                    let zp = zp_as!(zp, U16);
                    kernels::quantize_linear(x, x_shape, scale, zp, *layout, &mut o, 1)
                        .map(|()| TensorData::U16(o))
                }
                DType::Narrow(t) => {
                    let mut o = vec![0u8; x.len()];
                    let zp = match zp {
                        Some(TensorData::Narrow(_, z)) => Some(&z[..]),
                        _ => None,
                    };
                    let (l, s) = (*layout, *saturate);
                    kernels::quantize_narrow(x, x_shape, scale, zp, l, t, s, &mut o, 1)
                        .map(|()| TensorData::Narrow(t, o))
                }
                _ => return Ok(None),
            };
            one(r.map_err(|e| c.mismatch(e.to_string()))?)
        }
        Op::DequantizeLinear { layout } => {
            let Some(scale) = args[1].0.as_f32() else {
                return Ok(None);
            };
            let (x_shape, zp) = (args[0].1, args.get(2).map(|a| a.0));
            let mut out = vec![0f32; args[0].0.len()];
            let (l, o) = (*layout, &mut out);
            let r = match args[0].0 {
                TensorData::U8(x) => {
                    kernels::dequantize_linear(x, x_shape, scale, zp_as!(zp, U8), l, o, 1)
                }
                TensorData::I8(x) => {
                    kernels::dequantize_linear(x, x_shape, scale, zp_as!(zp, I8), l, o, 1)
                }
                TensorData::I32(x) => {
                    kernels::dequantize_linear(x, x_shape, scale, zp_as!(zp, I32), l, o, 1)
                }
                TensorData::I16(x) => {
                    kernels::dequantize_linear(x, x_shape, scale, zp_as!(zp, I16), l, o, 1)
                }
                TensorData::U16(x) => {
                    kernels::dequantize_linear(x, x_shape, scale, zp_as!(zp, U16), l, o, 1)
                }
                // 4-bit weights of a weight-only quantized model fold to f32 here too.
                TensorData::Narrow(t, x) => {
                    let zp = match zp {
                        Some(TensorData::Narrow(_, z)) => Some(&z[..]),
                        _ => None,
                    };
                    kernels::dequantize_narrow(x, *t, x_shape, scale, zp, l, o, 1)
                }
                _ => return Ok(None),
            };
            r.map_err(|e| c.mismatch(e.to_string()))?;
            one(TensorData::F32(out))
        }
        Op::Transpose { perm } => {
            let (d, shape) = args[0];
            let st = strides(shape);
            let mut idx = Vec::with_capacity(d.len());
            for_each_index(out_shape, |co| {
                idx.push(perm.iter().enumerate().map(|(i, &p)| co[i] * st[p]).sum());
            });
            one(take(d, &idx))
        }
        Op::Expand { .. } => one(take(args[0].0, &broadcast_index(args[0].1, out_shape))),
        Op::Slice { starts, steps } => {
            let (d, shape) = args[0];
            let st = strides(shape);
            let mut idx = Vec::new();
            for_each_index(out_shape, |co| {
                let mut f = 0i64;
                for a in 0..co.len() {
                    f += (starts[a] as i64 + co[a] as i64 * steps[a]) * st[a] as i64;
                }
                idx.push(f as usize);
            });
            one(take(d, &idx))
        }
        Op::Concat { axis } => {
            let datas: Vec<&TensorData> = args.iter().map(|a| a.0).collect();
            let all = concat_data(&datas).ok_or_else(|| c.mismatch("types"))?;
            // Offset of each input inside `all`, and the input each output slab comes from.
            let mut base = Vec::with_capacity(args.len());
            let mut acc = 0;
            for a in args {
                base.push(acc);
                acc += a.0.len();
            }
            let mut idx = Vec::new();
            for_each_index(out_shape, |co| {
                let mut pos = co[*axis];
                let mut k = 0;
                while k + 1 < args.len() && pos >= args[k].1[*axis] {
                    pos -= args[k].1[*axis];
                    k += 1;
                }
                let st = strides(args[k].1);
                let mut f = base[k];
                for a in 0..co.len() {
                    f += if a == *axis { pos } else { co[a] } * st[a];
                }
                idx.push(f);
            });
            one(take(&all, &idx))
        }
        Op::Split { axis, splits } => {
            let (d, shape) = args[0];
            let st = strides(shape);
            let mut res = Vec::with_capacity(splits.len());
            let mut offset = 0;
            for (k, (_, oshape)) in outs.iter().enumerate() {
                let mut idx = Vec::new();
                for_each_index(oshape, |co| {
                    let mut f = 0;
                    for a in 0..co.len() {
                        f += if a == *axis { co[a] + offset } else { co[a] } * st[a];
                    }
                    idx.push(f);
                });
                offset += splits[k];
                res.push(take(d, &idx));
            }
            Ok(Some(res))
        }
        Op::Gather { axis } => {
            let (d, shape) = args[0];
            let (ind, ishape) = args[1];
            let ind: Vec<i64> = match ind {
                TensorData::I64(v) => v.clone(),
                TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
                _ => return Ok(None),
            };
            let extent = shape[*axis] as i64;
            let st = strides(shape);
            let ir = ishape.len();
            let ist = strides(ishape);
            let mut idx = Vec::new();
            let mut bad = None;
            for_each_index(out_shape, |co| {
                let mut flat_i = 0;
                for j in 0..ir {
                    flat_i += co[axis + j] * ist[j];
                }
                let mut i = ind.get(flat_i).copied().unwrap_or(0);
                if i < 0 {
                    i += extent;
                }
                if !(0..extent).contains(&i) {
                    bad = Some(i);
                    return;
                }
                let mut f = i as usize * st[*axis];
                for a in 0..*axis {
                    f += co[a] * st[a];
                }
                for a in axis + 1..shape.len() {
                    f += co[a + ir - 1] * st[a];
                }
                idx.push(f);
            });
            if let Some(i) = bad {
                return Err(c.mismatch(format!("Gather index {i} out of range")));
            }
            one(take(d, &idx))
        }
        _ => Ok(None),
    }
}

fn concat_data(parts: &[&TensorData]) -> Option<TensorData> {
    let first = parts.first()?;
    let mut out = match first {
        TensorData::F32(_) => TensorData::F32(Vec::new()),
        TensorData::I32(_) => TensorData::I32(Vec::new()),
        TensorData::I64(_) => TensorData::I64(Vec::new()),
        TensorData::Bool(_) => TensorData::Bool(Vec::new()),
        TensorData::U8(_) => TensorData::U8(Vec::new()),
        TensorData::I8(_) => TensorData::I8(Vec::new()),
        TensorData::F16(_) => TensorData::F16(Vec::new()),
        TensorData::BF16(_) => TensorData::BF16(Vec::new()),
        TensorData::F64(_) => TensorData::F64(Vec::new()),
        TensorData::I16(_) => TensorData::I16(Vec::new()),
        TensorData::U16(_) => TensorData::U16(Vec::new()),
        TensorData::U32(_) => TensorData::U32(Vec::new()),
        TensorData::U64(_) => TensorData::U64(Vec::new()),
        TensorData::Narrow(t, _) => TensorData::Narrow(*t, Vec::new()),
    };
    for p in parts {
        match (&mut out, p) {
            (TensorData::F32(o), TensorData::F32(v)) => o.extend_from_slice(v),
            (TensorData::I32(o), TensorData::I32(v)) => o.extend_from_slice(v),
            (TensorData::I64(o), TensorData::I64(v)) => o.extend_from_slice(v),
            (TensorData::Bool(o), TensorData::Bool(v)) => o.extend_from_slice(v),
            (TensorData::U8(o), TensorData::U8(v)) => o.extend_from_slice(v),
            (TensorData::I8(o), TensorData::I8(v)) => o.extend_from_slice(v),
            (TensorData::F16(o), TensorData::F16(v)) => o.extend_from_slice(v),
            (TensorData::BF16(o), TensorData::BF16(v)) => o.extend_from_slice(v),
            (TensorData::F64(o), TensorData::F64(v)) => o.extend_from_slice(v),
            (TensorData::I16(o), TensorData::I16(v)) => o.extend_from_slice(v),
            (TensorData::U16(o), TensorData::U16(v)) => o.extend_from_slice(v),
            (TensorData::U32(o), TensorData::U32(v)) => o.extend_from_slice(v),
            (TensorData::U64(o), TensorData::U64(v)) => o.extend_from_slice(v),
            (TensorData::Narrow(t, o), TensorData::Narrow(u, v)) if t == u => {
                o.extend_from_slice(v)
            }
            _ => return None,
        }
    }
    Some(out)
}

fn is_narrow(d: &TensorData) -> bool {
    matches!(d, TensorData::Narrow(..))
}

/// A Cast from or to a narrow type, folded by the run-time kernel.
fn cast_narrow(
    c: &NodeCtx<'_>,
    d: &TensorData,
    to: DType,
    mode: kernels::NarrowMode,
) -> Result<TensorData, ExecError> {
    use kernels::{CastDst, CastSrc};
    let n = d.len();
    let src = match d {
        TensorData::Narrow(t, v) => CastSrc::Narrow(*t, v),
        TensorData::F32(v) => CastSrc::F32(v),
        TensorData::F64(v) => CastSrc::F64(v),
        TensorData::I64(v) => CastSrc::I64(v),
        TensorData::I32(v) => CastSrc::I32(v),
        TensorData::Bool(v) => CastSrc::Bool(v),
        TensorData::U8(v) => CastSrc::U8(v),
        TensorData::I8(v) => CastSrc::I8(v),
        TensorData::I16(v) => CastSrc::I16(v),
        TensorData::U16(v) => CastSrc::U16(v),
        TensorData::U32(v) => CastSrc::U32(v),
        TensorData::U64(v) => CastSrc::U64(v),
        // 16-bit floats widen exactly first.
        TensorData::F16(_) | TensorData::BF16(_) => {
            return cast_narrow(c, &cast(d, DType::F64), to, mode)
        }
    };
    let err = |e: kernels::KernelError| c.mismatch(e.to_string());
    match to {
        DType::Narrow(t) => {
            let mut o = vec![0u8; n];
            kernels::cast(src, CastDst::Narrow(t, mode, &mut o)).map_err(err)?;
            Ok(TensorData::Narrow(t, o))
        }
        // From a narrow type: every value is an f64, whose cast to `to` is the same.
        _ => {
            let mut o = vec![0f64; n];
            kernels::cast(src, CastDst::F64(&mut o)).map_err(err)?;
            Ok(cast(&TensorData::F64(o), to))
        }
    }
}

pub(crate) fn cast(d: &TensorData, to: DType) -> TensorData {
    // Through f64 / i64: exact for every value our int32/int64/f32 shape arithmetic produces.
    let float_to = matches!(to, DType::F32 | DType::F64 | DType::F16 | DType::BF16);
    // The other integer types through i64 (wrapping, as numpy's astype); a u64 beyond i64's
    // range to a float from its own value.
    let wide = |v: Vec<i64>| cast(&TensorData::I64(v), to);
    match d {
        TensorData::I16(v) => return wide(v.iter().map(|&x| i64::from(x)).collect()),
        TensorData::U16(v) => return wide(v.iter().map(|&x| i64::from(x)).collect()),
        TensorData::U32(v) => return wide(v.iter().map(|&x| i64::from(x)).collect()),
        TensorData::U64(v) if float_to => {
            return cast(&TensorData::F64(v.iter().map(|&x| x as f64).collect()), to)
        }
        TensorData::U64(v) => return wide(v.iter().map(|&x| x as i64).collect()),
        _ => {}
    }
    let as_f64: Vec<f64> = match d {
        TensorData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I64(v) => {
            return match to {
                DType::I64 => d.clone(),
                DType::I32 => TensorData::I32(v.iter().map(|&x| x as i32).collect()),
                DType::F32 => TensorData::F32(v.iter().map(|&x| x as f32).collect()),
                DType::Bool => TensorData::Bool(v.iter().map(|&x| u8::from(x != 0)).collect()),
                // Integer narrowing wraps, as numpy's astype and C casts do.
                DType::U8 => TensorData::U8(v.iter().map(|&x| x as u8).collect()),
                DType::I8 => TensorData::I8(v.iter().map(|&x| x as i8).collect()),
                DType::F16 => TensorData::F16(v.iter().map(|&x| f16_bits(x as f64)).collect()),
                DType::BF16 => TensorData::BF16(v.iter().map(|&x| bf16_bits(x as f64)).collect()),
                DType::F64 => TensorData::F64(v.iter().map(|&x| x as f64).collect()),
                DType::I16 => TensorData::I16(v.iter().map(|&x| x as i16).collect()),
                DType::U16 => TensorData::U16(v.iter().map(|&x| x as u16).collect()),
                DType::U32 => TensorData::U32(v.iter().map(|&x| x as u32).collect()),
                DType::U64 => TensorData::U64(v.iter().map(|&x| x as u64).collect()),
                DType::Narrow(t) => TensorData::Narrow(
                    t,
                    v.iter()
                        .map(|&x| t.encode_int(x, kernels::NarrowMode::default()))
                        .collect(),
                ),
            };
        }
        TensorData::Bool(v) | TensorData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        TensorData::I8(v) => v.iter().map(|&x| f64::from(x)).collect(),
        // Exact: f64 holds every binary16 value.
        TensorData::F16(v) => v
            .iter()
            .map(|&b| f64::from(half::f16::from_bits(b)))
            .collect(),
        TensorData::BF16(v) => v
            .iter()
            .map(|&b| f64::from(half::bf16::from_bits(b)))
            .collect(),
        TensorData::F64(v) => v.clone(),
        TensorData::Narrow(t, v) => v.iter().map(|&b| f64::from(t.decode(b))).collect(),
        // Returned above.
        TensorData::I16(_) | TensorData::U16(_) | TensorData::U32(_) | TensorData::U64(_) => {
            Vec::new()
        }
    };
    match to {
        DType::F32 => TensorData::F32(as_f64.iter().map(|&x| x as f32).collect()),
        DType::F64 => TensorData::F64(as_f64),
        // One rounding, to nearest even, from the exact value.
        DType::F16 => TensorData::F16(as_f64.iter().map(|&x| f16_bits(x)).collect()),
        DType::BF16 => TensorData::BF16(as_f64.iter().map(|&x| bf16_bits(x)).collect()),
        // `as` saturates and maps NaN to 0: defined behaviour, never a panic.
        DType::I32 => TensorData::I32(as_f64.iter().map(|&x| x as i32).collect()),
        DType::I64 => TensorData::I64(as_f64.iter().map(|&x| x as i64).collect()),
        DType::Bool => TensorData::Bool(as_f64.iter().map(|&x| u8::from(x != 0.0)).collect()),
        DType::Narrow(t) => TensorData::Narrow(
            t,
            as_f64
                .iter()
                .map(|&x| t.encode(x, kernels::NarrowMode::default()))
                .collect(),
        ),
        // From a float `as` saturates; from an integer it wraps through i64, as above.
        DType::U8 | DType::I8 | DType::I16 | DType::U16 | DType::U32 | DType::U64 => {
            let ints: Vec<i64> = match d {
                TensorData::F32(_)
                | TensorData::F16(_)
                | TensorData::BF16(_)
                | TensorData::F64(_) => {
                    return match to {
                        DType::U8 => TensorData::U8(as_f64.iter().map(|&x| x as u8).collect()),
                        DType::I16 => TensorData::I16(as_f64.iter().map(|&x| x as i16).collect()),
                        DType::U16 => TensorData::U16(as_f64.iter().map(|&x| x as u16).collect()),
                        DType::U32 => TensorData::U32(as_f64.iter().map(|&x| x as u32).collect()),
                        DType::U64 => TensorData::U64(as_f64.iter().map(|&x| x as u64).collect()),
                        _ => TensorData::I8(as_f64.iter().map(|&x| x as i8).collect()),
                    }
                }
                _ => as_f64.iter().map(|&x| x as i64).collect(),
            };
            cast(&TensorData::I64(ints), to)
        }
    }
}

/// The binary16 bit pattern nearest `x` (ties to even; overflow to infinity, NaN kept).
fn f16_bits(x: f64) -> u16 {
    half::f16::from_f64(x).to_bits()
}

/// The bfloat16 bit pattern nearest `x` (ties to even; overflow to infinity, NaN kept).
fn bf16_bits(x: f64) -> u16 {
    half::bf16::from_f64(x).to_bits()
}

fn int_op(c: &NodeCtx<'_>, op: &Op, a: i64, b: i64) -> Result<i64, ExecError> {
    Ok(match op {
        Op::Add => a.wrapping_add(b),
        Op::Sub => a.wrapping_sub(b),
        Op::Mul => a.wrapping_mul(b),
        Op::Div => a
            .checked_div(b)
            .ok_or_else(|| c.invalid("integer division by zero in constant folding"))?,
        Op::Mod { fmod } => {
            let r = a
                .checked_rem(b)
                .ok_or_else(|| c.invalid("integer modulo by zero in constant folding"))?;
            if !fmod && r != 0 && ((r < 0) != (b < 0)) {
                r + b
            } else {
                r
            }
        }
        Op::Pow => {
            let e = u32::try_from(b).map_err(|_| c.invalid("negative integer exponent"))?;
            a.wrapping_pow(e)
        }
        _ => 0,
    })
}

fn binary(
    c: &NodeCtx<'_>,
    op: &Op,
    a: &TensorData,
    b: &TensorData,
) -> Result<TensorData, ExecError> {
    let types = || c.mismatch("unsupported operand types in constant folding");
    if let Op::Equal = op {
        let eq: Vec<u8> = match (a, b) {
            (TensorData::F32(x), TensorData::F32(y)) => {
                x.iter().zip(y).map(|(p, q)| u8::from(p == q)).collect()
            }
            (TensorData::I32(x), TensorData::I32(y)) => {
                x.iter().zip(y).map(|(p, q)| u8::from(p == q)).collect()
            }
            (TensorData::I64(x), TensorData::I64(y)) => {
                x.iter().zip(y).map(|(p, q)| u8::from(p == q)).collect()
            }
            (TensorData::Bool(x), TensorData::Bool(y)) => {
                x.iter().zip(y).map(|(p, q)| u8::from(p == q)).collect()
            }
            _ => return Err(types()),
        };
        return Ok(TensorData::Bool(eq));
    }
    // Pow may mix types (exponent of another type); bring the exponent to the base's type.
    let b_conv;
    let b = if let (Op::Pow, true) = (op, a.dtype() != b.dtype()) {
        b_conv = cast(b, a.dtype());
        &b_conv
    } else {
        b
    };
    match (a, b) {
        (TensorData::F32(x), TensorData::F32(y)) => {
            let f = |p: f32, q: f32| match op {
                Op::Add => p + q,
                Op::Sub => p - q,
                Op::Mul => p * q,
                Op::Div => p / q,
                Op::Pow => p.powf(q),
                Op::Mod { .. } => p % q,
                _ => 0.0,
            };
            Ok(TensorData::F32(
                x.iter().zip(y).map(|(&p, &q)| f(p, q)).collect(),
            ))
        }
        (TensorData::I64(x), TensorData::I64(y)) => Ok(TensorData::I64(
            x.iter()
                .zip(y)
                .map(|(&p, &q)| int_op(c, op, p, q))
                .collect::<Result<_, _>>()?,
        )),
        (TensorData::I32(x), TensorData::I32(y)) => Ok(TensorData::I32(
            x.iter()
                .zip(y)
                .map(|(&p, &q)| int_op(c, op, p.into(), q.into()).map(|v| v as i32))
                .collect::<Result<_, _>>()?,
        )),
        _ => Err(types()),
    }
}
