//! The ONNX recurrent layers: RNN, GRU and LSTM, forward, reverse or bidirectional, with
//! optional biases, per-batch sequence lengths, initial states, LSTM peepholes, cell clipping,
//! the activation lists and the batch-first layout (opset 14).
//!
//! Per direction, the input projections of every time step are one GEMM (`X * W^T`); the
//! recurrence then runs step by step, each step's `R * h` as row dot products in index order
//! (so results do not depend on `threads`). Steps past a batch entry's sequence length write
//! zeros to `Y`; its `Y_h` / `Y_c` are the states after its last step (zeros for an empty
//! sequence, as onnxruntime gives).

use super::broadcast::simd_dispatch;
use super::elementwise::{sigmoid_f32, tanh_f32};
use super::error::{check_len, invalid, numel, KernelResult};
use super::matmul::{gemm, GemmAttrs};

/// Which recurrent cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RnnCell {
    /// `h = f(x W^T + h R^T + b)` (one gate).
    Simple,
    /// Gates `z, r, h`; `linear_before_reset` applies `r` after `R_h`.
    Gru {
        /// The reset gate multiplies `h R_h^T + Rb_h` instead of `h`.
        linear_before_reset: bool,
    },
    /// Gates `i, o, f, c`; `input_forget` couples the forget gate to `1 - i`.
    Lstm {
        /// The forget gate is `1 - i`.
        input_forget: bool,
    },
}

impl RnnCell {
    /// Gates per cell (rows of `W` per hidden unit).
    pub fn gates(self) -> usize {
        match self {
            RnnCell::Simple => 1,
            RnnCell::Gru { .. } => 3,
            RnnCell::Lstm { .. } => 4,
        }
    }

    /// Activation functions per direction (`f`, `g`, `h`).
    pub fn functions(self) -> usize {
        match self {
            RnnCell::Simple => 1,
            RnnCell::Gru { .. } => 2,
            RnnCell::Lstm { .. } => 3,
        }
    }
}

/// Direction of a recurrent layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RnnDirection {
    /// First step first.
    Forward,
    /// Last step first.
    Reverse,
    /// Both, forward as direction 0.
    Bidirectional,
}

impl RnnDirection {
    /// Directions computed.
    pub fn count(self) -> usize {
        if self == RnnDirection::Bidirectional {
            2
        } else {
            1
        }
    }
}

/// An activation function of a recurrent cell, with its `alpha` / `beta` (the ONNX operator's
/// defaults where the model gives none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RnnActivation {
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `tanh(x)`.
    Tanh,
    /// `max(x, 0)`.
    Relu,
    /// `max(0, min(1, alpha x + beta))`.
    HardSigmoid(f32, f32),
    /// `x` or `alpha x` below 0.
    LeakyRelu(f32),
    /// `x` above `alpha`, else 0.
    ThresholdedRelu(f32),
    /// `alpha tanh(beta x)`.
    ScaledTanh(f32, f32),
    /// `alpha x + beta`.
    Affine(f32, f32),
    /// `x`, or `alpha (e^x - 1)` below 0.
    Elu(f32),
    /// `x / (1 + |x|)`.
    Softsign,
    /// `ln(1 + e^x)`.
    Softplus,
}

impl RnnActivation {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            RnnActivation::Sigmoid => sigmoid_f32(x),
            RnnActivation::Tanh => tanh_f32(x),
            RnnActivation::Relu => x.max(0.0),
            RnnActivation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            RnnActivation::LeakyRelu(a) => {
                if x < 0.0 {
                    a * x
                } else {
                    x
                }
            }
            RnnActivation::ThresholdedRelu(a) => {
                if x > a {
                    x
                } else {
                    0.0
                }
            }
            RnnActivation::ScaledTanh(a, b) => a * tanh_f32(b * x),
            RnnActivation::Affine(a, b) => a * x + b,
            RnnActivation::Elu(a) => {
                if x < 0.0 {
                    a * (x.exp() - 1.0)
                } else {
                    x
                }
            }
            RnnActivation::Softsign => x / (1.0 + x.abs()),
            RnnActivation::Softplus => {
                // ln(1 + e^x) without overflow for large x.
                if x > 20.0 {
                    x
                } else {
                    x.exp().ln_1p()
                }
            }
        }
    }
}

/// The layer's attributes, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct RnnSpec {
    /// Cell kind.
    pub cell: RnnCell,
    /// Hidden units.
    pub hidden: usize,
    /// Direction(s).
    pub direction: RnnDirection,
    /// `cell.functions()` per direction, forward's first.
    pub activations: Vec<RnnActivation>,
    /// Gate pre-activations are clamped to `[-clip, clip]`.
    pub clip: Option<f32>,
    /// `layout = 1`: `X [batch, seq, input]`, `Y [batch, seq, dirs, hidden]`, states
    /// `[batch, dirs, hidden]`.
    pub batch_first: bool,
}

/// The layer's input tensors (the optional ones `None` when absent).
#[derive(Debug, Clone, Copy)]
pub struct RnnInputs<'a> {
    /// `X` and its shape.
    pub x: &'a [f32],
    /// Shape of `X`.
    pub x_shape: &'a [usize],
    /// `W [dirs, gates * hidden, input]`.
    pub w: &'a [f32],
    /// `R [dirs, gates * hidden, hidden]`.
    pub r: &'a [f32],
    /// `B [dirs, 2 * gates * hidden]` (`Wb` then `Rb`).
    pub b: Option<&'a [f32]>,
    /// `sequence_lens [batch]`.
    pub seq_lens: Option<&'a [i32]>,
    /// `initial_h`.
    pub initial_h: Option<&'a [f32]>,
    /// `initial_c` (LSTM).
    pub initial_c: Option<&'a [f32]>,
    /// `P [dirs, 3 * hidden]` peepholes `i, o, f` (LSTM).
    pub p: Option<&'a [f32]>,
}

/// The layer's outputs (each `None` when the model does not use it).
#[derive(Debug)]
pub struct RnnOutputs<'a> {
    /// `Y`: every step's hidden state.
    pub y: Option<&'a mut [f32]>,
    /// `Y_h`: the last hidden state.
    pub y_h: Option<&'a mut [f32]>,
    /// `Y_c`: the last cell state (LSTM).
    pub y_c: Option<&'a mut [f32]>,
}

/// Runs an ONNX RNN, GRU or LSTM layer (see the module docs).
///
/// # Errors
/// Shape or length mismatches, or a sequence length outside `0..=seq`.
pub fn rnn(
    spec: &RnnSpec,
    inp: &RnnInputs<'_>,
    out: RnnOutputs<'_>,
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "RNN";
    let [d0, d1, input] = match *inp.x_shape {
        [a, b, c] => [a, b, c],
        _ => {
            return Err(invalid(
                OP,
                "X",
                format!("shape {:?} (rank 3)", inp.x_shape),
            ))
        }
    };
    let (seq, batch) = if spec.batch_first { (d1, d0) } else { (d0, d1) };
    let (h, g, dirs) = (spec.hidden, spec.cell.gates(), spec.direction.count());
    let gh = g * h;
    check_len(OP, "X", inp.x.len(), numel(OP, inp.x_shape)?)?;
    check_len(OP, "W", inp.w.len(), dirs * gh * input)?;
    check_len(OP, "R", inp.r.len(), dirs * gh * h)?;
    check_len(
        OP,
        "activations",
        spec.activations.len(),
        dirs * spec.cell.functions(),
    )?;
    if let Some(b) = inp.b {
        check_len(OP, "B", b.len(), dirs * 2 * gh)?;
    }
    let states = dirs * batch * h;
    for (what, v) in [("initial_h", inp.initial_h), ("initial_c", inp.initial_c)] {
        if let Some(v) = v {
            check_len(OP, what, v.len(), states)?;
        }
    }
    if let Some(p) = inp.p {
        check_len(OP, "P", p.len(), dirs * 3 * h)?;
    }
    let lens: Vec<usize> = match inp.seq_lens {
        Some(l) => {
            check_len(OP, "sequence_lens", l.len(), batch)?;
            l.iter()
                .map(|&v| {
                    usize::try_from(v)
                        .ok()
                        .filter(|&v| v <= seq)
                        .ok_or_else(|| invalid(OP, "sequence_lens", format!("{v} for {seq} steps")))
                })
                .collect::<KernelResult<_>>()?
        }
        None => vec![seq; batch],
    };
    let RnnOutputs {
        mut y,
        mut y_h,
        mut y_c,
    } = out;
    if let Some(y) = y.as_deref_mut() {
        check_len(OP, "Y", y.len(), seq * dirs * batch * h)?;
        y.fill(0.0);
    }
    for (what, v) in [("Y_h", y_h.as_deref()), ("Y_c", y_c.as_deref())] {
        if let Some(v) = v {
            check_len(OP, what, v.len(), states)?;
        }
    }
    // Flat offsets in the layout's order.
    let y_at = |t: usize, d: usize, b: usize| {
        if spec.batch_first {
            ((b * seq + t) * dirs + d) * h
        } else {
            ((t * dirs + d) * batch + b) * h
        }
    };
    let state_at = |d: usize, b: usize| {
        if spec.batch_first {
            (b * dirs + d) * h
        } else {
            (d * batch + b) * h
        }
    };
    let clip = |v: f32| match spec.clip {
        Some(c) => v.clamp(-c, c),
        None => v,
    };
    let nf = spec.cell.functions();
    let mut xw = vec![0.0f32; seq * batch * gh];
    let mut gates = vec![0.0f32; gh];
    let mut rh = vec![0.0f32; gh];
    let mut hbuf = vec![0.0f32; h];
    let mut cbuf = vec![0.0f32; h];
    let mut tmp = vec![0.0f32; h];
    for d in 0..dirs {
        let reverse = spec.direction == RnnDirection::Reverse || d == 1;
        let w = &inp.w[d * gh * input..(d + 1) * gh * input];
        let r = &inp.r[d * gh * h..(d + 1) * gh * h];
        let (wb, rb) = match inp.b {
            Some(b) => {
                let b = &b[d * 2 * gh..(d + 1) * 2 * gh];
                (Some(&b[..gh]), Some(&b[gh..]))
            }
            None => (None, None),
        };
        let acts = &spec.activations[d * nf..(d + 1) * nf];
        // Every step's input projection at once, rows in X's own order.
        if input > 0 && !xw.is_empty() {
            gemm(
                inp.x,
                &[seq * batch, input],
                w,
                &[gh, input],
                None,
                &GemmAttrs {
                    trans_b: true,
                    ..GemmAttrs::default()
                },
                &mut xw,
                threads,
            )?;
        }
        // Under the SIMD dispatch: the activations' polynomials use fused multiply-adds,
        // which outside it are library calls.
        simd_dispatch(
            #[inline(always)]
            || {
                for (b, &len) in lens.iter().enumerate() {
                    let s0 = state_at(d, b);
                    match inp.initial_h {
                        Some(v) => hbuf.copy_from_slice(&v[s0..s0 + h]),
                        None => hbuf.fill(0.0),
                    }
                    match inp.initial_c {
                        Some(v) => cbuf.copy_from_slice(&v[s0..s0 + h]),
                        None => cbuf.fill(0.0),
                    }
                    for s in 0..len {
                        let t = if reverse { len - 1 - s } else { s };
                        let row = if spec.batch_first {
                            b * seq + t
                        } else {
                            t * batch + b
                        } * gh;
                        // GRU with linear_before_reset adds Rb_h inside the reset product instead.
                        let rb_split = match spec.cell {
                            RnnCell::Gru {
                                linear_before_reset: true,
                            } => 2 * h,
                            _ => gh,
                        };
                        for j in 0..gh {
                            let mut v = xw[row + j];
                            if let (Some(wb), Some(rb)) = (wb, rb) {
                                v += wb[j] + if j < rb_split { rb[j] } else { 0.0 };
                            }
                            gates[j] = v;
                        }
                        matvec(r, &hbuf, &mut rh);
                        match spec.cell {
                            RnnCell::Simple => {
                                for j in 0..h {
                                    hbuf[j] = acts[0].apply(clip(gates[j] + rh[j]));
                                }
                            }
                            RnnCell::Gru {
                                linear_before_reset,
                            } => {
                                let (f, gf) = (acts[0], acts[1]);
                                // z and r.
                                for j in 0..2 * h {
                                    gates[j] = f.apply(clip(gates[j] + rh[j]));
                                }
                                let (z, rest) = gates.split_at_mut(h);
                                let (rg, hg) = rest.split_at_mut(h);
                                if linear_before_reset {
                                    for j in 0..h {
                                        let rbh = rb.map_or(0.0, |rb| rb[2 * h + j]);
                                        hg[j] =
                                            gf.apply(clip(hg[j] + rg[j] * (rh[2 * h + j] + rbh)));
                                    }
                                } else {
                                    // R_h (r * h) + Rb_h; the bias was already added with Wb_h.
                                    for j in 0..h {
                                        tmp[j] = rg[j] * hbuf[j];
                                    }
                                    let rh_h = &r[2 * h * h..3 * h * h];
                                    for (j, rrow) in rh_h.chunks_exact(h).enumerate() {
                                        hg[j] = gf.apply(clip(hg[j] + dot(rrow, &tmp)));
                                    }
                                }
                                for j in 0..h {
                                    hbuf[j] = (1.0 - z[j]) * hg[j] + z[j] * hbuf[j];
                                }
                            }
                            RnnCell::Lstm { input_forget } => {
                                let (f, gf, hf) = (acts[0], acts[1], acts[2]);
                                let peep = |k: usize, j: usize| {
                                    inp.p.map_or(0.0, |p| p[d * 3 * h + k * h + j])
                                };
                                for j in 0..h {
                                    let i = f.apply(clip(gates[j] + rh[j] + peep(0, j) * cbuf[j]));
                                    let fg = if input_forget {
                                        1.0 - i
                                    } else {
                                        f.apply(clip(
                                            gates[2 * h + j] + rh[2 * h + j] + peep(2, j) * cbuf[j],
                                        ))
                                    };
                                    let c = gf.apply(clip(gates[3 * h + j] + rh[3 * h + j]));
                                    let cn = fg * cbuf[j] + i * c;
                                    let o =
                                        f.apply(clip(gates[h + j] + rh[h + j] + peep(1, j) * cn));
                                    cbuf[j] = cn;
                                    hbuf[j] = o * hf.apply(cn);
                                }
                            }
                        }
                        if let Some(y) = y.as_deref_mut() {
                            let o = y_at(t, d, b);
                            y[o..o + h].copy_from_slice(&hbuf);
                        }
                    }
                    // An empty sequence leaves zero states, not the initial ones (onnxruntime's
                    // convention; the specification does not say).
                    if len == 0 {
                        hbuf.fill(0.0);
                        cbuf.fill(0.0);
                    }
                    if let Some(v) = y_h.as_deref_mut() {
                        v[s0..s0 + h].copy_from_slice(&hbuf);
                    }
                    if let Some(v) = y_c.as_deref_mut() {
                        v[s0..s0 + h].copy_from_slice(&cbuf);
                    }
                }
            },
        );
    }
    Ok(())
}

/// `out[j] = sum_k m[j][k] v[k]` for the rows of `m` (`out.len()` rows of `v.len()`).
#[inline(always)]
fn matvec(m: &[f32], v: &[f32], out: &mut [f32]) {
    if v.is_empty() {
        out.fill(0.0);
        return;
    }
    for (o, row) in out.iter_mut().zip(m.chunks_exact(v.len())) {
        *o = dot(row, v);
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
