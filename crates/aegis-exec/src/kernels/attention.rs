//! ONNX `Attention` (opsets 23-25): scaled dot-product attention over 3-D or 4-D `Q`, `K`,
//! `V`, with grouped key/value heads (GQA, MQA), a key/value cache (`past_*` in, `present_*`
//! out), a boolean or additive mask (shorter than the keys: padded), causal masking aligned
//! bottom-right to the cache, per-batch valid key counts (`nonpad_kv_seqlen`), sliding
//! windows, a logit soft cap, and the optional `qk_matmul_output` in its four modes.
//!
//! Per (batch, query head), blocks of [`ROWS`] query rows: the scores `Q K^T` are one GEMM
//! into a block of rows, then soft cap, bias and softmax run row by row, then `P V` is a
//! second GEMM. A row whose bias masks every key is zero (in `Y` and in mode 3's output), as
//! the specification's reference gives, never NaN.
//!
//! Determinism: each (batch, head) is computed by one thread in fixed row blocks; threads
//! only pick which heads they run.

use std::borrow::Cow;

use aegis_cuda::sync::{lock, Mutex};
use aegis_cuda::{host_sgemm, HostMat, HostMatMut};

use super::elementwise::tanh_f32;
use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::norm::softmax_rows;
use super::par::par_chunks;

const OP: &str = "Attention";
/// Query rows per score block: bounds the per-thread score buffers at `2 * ROWS * keys`.
const ROWS: usize = 64;

/// What `qk_matmul_output` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkOutput {
    /// Mode 0: the scaled `Q K^T`.
    Raw,
    /// Mode 1: after the soft cap.
    Capped,
    /// Mode 2: after the soft cap and the bias (mask, causal, window, padding).
    Biased,
    /// Mode 3: the softmax probabilities (a fully masked row is zero).
    Softmax,
}

/// The operator's shapes and attributes, resolved at load.
#[derive(Debug, Clone, PartialEq)]
pub struct AttentionSpec {
    /// Batch size.
    pub batch: usize,
    /// Query heads.
    pub q_heads: usize,
    /// Key/value heads (divides `q_heads`; query head `h` reads key head
    /// `h / (q_heads / kv_heads)`).
    pub kv_heads: usize,
    /// Query rows.
    pub q_seq: usize,
    /// Key/value rows of `K` and `V` (the cache's rows come before them).
    pub kv_seq: usize,
    /// Rows of `past_key` / `past_value` (0 without a cache).
    pub past_seq: usize,
    /// Head size of `Q` and `K`.
    pub head: usize,
    /// Head size of `V`.
    pub v_head: usize,
    /// `Q`, `K`, `V` are `[batch, seq, heads * head]` and so is `Y`; else `[batch, heads,
    /// seq, head]`.
    pub rank3: bool,
    /// Multiplies `Q K^T` (the attribute, default `1 / sqrt(head)`).
    pub scale: f32,
    /// Causal masking: query `i` sees key `j` only if `j <= i + offset`.
    pub causal: bool,
    /// `softcap * tanh(x / softcap)` on the scores when positive.
    pub softcap: f32,
    /// What `qk_matmul_output` holds when the model asks for it.
    pub qk_output: QkOutput,
    /// Keys at most this far before the query's position (`None`: unbounded).
    pub left_window: Option<usize>,
    /// Keys at most this far after the query's position (`None`: unbounded).
    pub right_window: Option<usize>,
    /// The mask's shape right-aligned to `[batch, q_heads, q_seq, keys]` (leading 1s); its
    /// last extent may be shorter than the keys (the rest is masked).
    pub mask_shape: Option<[usize; 4]>,
}

/// An attention mask: `true` keeps a key, or a value added to its score.
#[derive(Debug, Clone, Copy)]
pub enum AttentionMask<'a> {
    /// Bool (one byte per element).
    Bool(&'a [u8]),
    /// Additive.
    Float(&'a [f32]),
}

/// The operator's inputs (the optional ones `None` when absent).
#[derive(Debug, Clone, Copy)]
pub struct AttentionInputs<'a> {
    /// `Q`.
    pub q: &'a [f32],
    /// `K`.
    pub k: &'a [f32],
    /// `V`.
    pub v: &'a [f32],
    /// `attn_mask`.
    pub mask: Option<AttentionMask<'a>>,
    /// `past_key [batch, kv_heads, past_seq, head]` and `past_value`.
    pub past: Option<(&'a [f32], &'a [f32])>,
    /// `nonpad_kv_seqlen [batch]`: keys at or past it are padding.
    pub nonpad: Option<&'a [i64]>,
}

/// The operator's outputs (those the model does not ask for `None`).
#[derive(Debug)]
pub struct AttentionOutputs<'a> {
    /// `Y`.
    pub y: &'a mut [f32],
    /// `present_key [batch, kv_heads, past_seq + kv_seq, head]`.
    pub present_key: Option<&'a mut [f32]>,
    /// `present_value`.
    pub present_value: Option<&'a mut [f32]>,
    /// `qk_matmul_output [batch, q_heads, q_seq, past_seq + kv_seq]`.
    pub qk: Option<&'a mut [f32]>,
}

impl AttentionSpec {
    /// Keys each query sees before masking: the cache's and the new ones.
    pub fn keys(&self) -> usize {
        self.past_seq + self.kv_seq
    }

    /// The causal / window offset of batch entry `b`: the valid keys before the query block.
    fn offset(&self, b: usize, nonpad: Option<&[i64]>) -> i64 {
        match nonpad {
            Some(n) if self.past_seq == 0 => n[b] - self.q_seq as i64,
            _ => self.past_seq as i64,
        }
    }
}

/// `[batch, heads, rows, d]` from the cache (if any) then the new rows, which are laid out
/// `[batch, rows, heads * d]` when `rank3`.
#[allow(clippy::too_many_arguments)]
fn gather_cache(
    past: Option<&[f32]>,
    new: &[f32],
    rank3: bool,
    batch: usize,
    heads: usize,
    past_seq: usize,
    seq: usize,
    d: usize,
    dst: &mut [f32],
) {
    let total = past_seq + seq;
    for b in 0..batch {
        for h in 0..heads {
            let base = (b * heads + h) * total * d;
            let block = &mut dst[base..base + total * d];
            if let Some(p) = past {
                let src = (b * heads + h) * past_seq * d;
                block[..past_seq * d].copy_from_slice(&p[src..src + past_seq * d]);
            }
            for j in 0..seq {
                let src = if rank3 {
                    (b * seq + j) * heads * d + h * d
                } else {
                    ((b * heads + h) * seq + j) * d
                };
                let at = (past_seq + j) * d;
                block[at..at + d].copy_from_slice(&new[src..src + d]);
            }
        }
    }
}

/// Runs `Attention`.
///
/// # Errors
/// Length mismatches, a mask or `nonpad_kv_seqlen` of the wrong length, a zero head count.
pub fn attention<'a>(
    spec: &AttentionSpec,
    inputs: &AttentionInputs<'a>,
    outputs: AttentionOutputs<'a>,
    threads: usize,
) -> KernelResult<()> {
    let s = spec;
    if s.kv_heads == 0 || !s.q_heads.is_multiple_of(s.kv_heads) {
        return Err(invalid(
            OP,
            "kv_num_heads",
            format!("{} does not divide q_num_heads {}", s.kv_heads, s.q_heads),
        ));
    }
    let (b, qh, kvh) = (s.batch, s.q_heads, s.kv_heads);
    let total = s.keys();
    let len = |dims: &[usize]| numel(OP, dims);
    check_len(OP, "Q", inputs.q.len(), len(&[b, qh, s.q_seq, s.head])?)?;
    check_len(OP, "K", inputs.k.len(), len(&[b, kvh, s.kv_seq, s.head])?)?;
    check_len(OP, "V", inputs.v.len(), len(&[b, kvh, s.kv_seq, s.v_head])?)?;
    check_len(OP, "Y", outputs.y.len(), len(&[b, qh, s.q_seq, s.v_head])?)?;
    let k_len = len(&[b, kvh, total, s.head])?;
    let v_len = len(&[b, kvh, total, s.v_head])?;
    if let Some((pk, pv)) = inputs.past {
        check_len(
            OP,
            "past_key",
            pk.len(),
            len(&[b, kvh, s.past_seq, s.head])?,
        )?;
        check_len(
            OP,
            "past_value",
            pv.len(),
            len(&[b, kvh, s.past_seq, s.v_head])?,
        )?;
    } else if s.past_seq != 0 {
        return Err(invalid(OP, "past_key", "a cache length without the cache"));
    }
    if let Some(n) = inputs.nonpad {
        check_len(OP, "nonpad_kv_seqlen", n.len(), b)?;
    }
    let mask_strides = match (inputs.mask, s.mask_shape) {
        (None, _) => None,
        (Some(m), Some(ms)) => {
            let m_len = match m {
                AttentionMask::Bool(v) => v.len(),
                AttentionMask::Float(v) => v.len(),
            };
            check_len(OP, "attn_mask", m_len, len(&ms)?)?;
            if ms[3] > total {
                return Err(invalid(
                    OP,
                    "attn_mask",
                    format!("{} keys, more than the {total} there are", ms[3]),
                ));
            }
            // Broadcast dimensions step by 0.
            let st = |i: usize| {
                if ms[i] == 1 {
                    0
                } else {
                    ms[i + 1..].iter().product()
                }
            };
            Some([st(0), st(1), st(2)])
        }
        (Some(_), None) => return Err(invalid(OP, "attn_mask", "a mask without its shape")),
    };
    let AttentionOutputs {
        y,
        present_key,
        present_value,
        qk,
    } = outputs;
    if let Some(p) = present_key.as_deref() {
        check_len(OP, "present_key", p.len(), k_len)?;
    }
    if let Some(p) = present_value.as_deref() {
        check_len(OP, "present_value", p.len(), v_len)?;
    }
    if let Some(o) = qk.as_deref() {
        check_len(
            OP,
            "qk_matmul_output",
            o.len(),
            len(&[b, qh, s.q_seq, total])?,
        )?;
    }

    // Keys and values as [batch, kv_heads, keys, d]: the present outputs when asked for,
    // the 4-D inputs themselves without a cache, else a gathered copy.
    let direct = !s.rank3 && inputs.past.is_none();
    let cache = |present: Option<&'a mut [f32]>, past: Option<&[f32]>, new: &'a [f32], d: usize| {
        let gather = |dst: &mut [f32]| {
            gather_cache(past, new, s.rank3, b, kvh, s.past_seq, s.kv_seq, d, dst);
        };
        match present {
            Some(p) => {
                gather(p);
                Cow::Borrowed(&*p)
            }
            None if direct => Cow::Borrowed(new),
            None => {
                let mut own = vec![0.0; b * kvh * total * d];
                gather(&mut own);
                Cow::Owned(own)
            }
        }
    };
    let ks = cache(present_key, inputs.past.map(|p| p.0), inputs.k, s.head);
    let vs = cache(present_value, inputs.past.map(|p| p.1), inputs.v, s.v_head);

    // Y per (batch, head) as [batch, q_heads, q_seq, v_head]: the output itself when 4-D.
    let y_block = s.q_seq * s.v_head;
    let mut y4 = if s.rank3 {
        vec![0.0; y.len()]
    } else {
        Vec::new()
    };
    let y4s: &mut [f32] = if s.rank3 { &mut y4 } else { &mut *y };
    let qk_block = s.q_seq * total;
    let mut heads: Vec<(&mut [f32], Option<&mut [f32]>)> = Vec::with_capacity(b * qh);
    let mut qk_blocks = qk.map(|o| o.chunks_mut(qk_block.max(1)));
    for yb in y4s.chunks_mut(y_block.max(1)) {
        let qb = qk_blocks.as_mut().and_then(Iterator::next);
        heads.push((yb, qb));
    }
    let ctx = Ctx {
        s,
        inputs,
        ks: &ks,
        vs: &vs,
        mask_strides,
        total,
    };
    let failed = Mutex::new(None);
    par_chunks(&mut heads, 1, threads, 1, |first, piece| {
        let mut scores = vec![0.0f32; ROWS.min(s.q_seq) * total];
        let mut probs = vec![0.0f32; scores.len()];
        for (i, (yb, qb)) in piece.iter_mut().enumerate() {
            let r = ctx.head(first + i, yb, qb.as_deref_mut(), &mut scores, &mut probs);
            if let Err(e) = r {
                lock(&failed).get_or_insert(e);
            }
        }
    });
    if let Some(e) = lock(&failed).take() {
        return Err(e);
    }
    if s.rank3 {
        // [batch, heads, seq, v] -> [batch, seq, heads * v]
        for bi in 0..b {
            for h in 0..qh {
                for i in 0..s.q_seq {
                    let src = ((bi * qh + h) * s.q_seq + i) * s.v_head;
                    let dst = (bi * s.q_seq + i) * qh * s.v_head + h * s.v_head;
                    y[dst..dst + s.v_head].copy_from_slice(&y4[src..src + s.v_head]);
                }
            }
        }
    }
    Ok(())
}

/// What every (batch, head) reads.
struct Ctx<'a> {
    s: &'a AttentionSpec,
    inputs: &'a AttentionInputs<'a>,
    ks: &'a [f32],
    vs: &'a [f32],
    mask_strides: Option<[usize; 3]>,
    total: usize,
}

impl Ctx<'_> {
    /// The keys row `i` of batch `b` may attend before the mask's values: `[lo, hi)` from the
    /// causal frontier, the window, the valid key count and a mask shorter than the keys
    /// (all four bound an interval). Empty when `lo >= hi`.
    fn span(&self, b: usize, i: usize) -> (usize, usize) {
        let s = self.s;
        let total = self.total as i64;
        let (mut lo, mut hi) = (0i64, total);
        // The query's absolute position; keys are 0-based over the cache then the new.
        let p = s.offset(b, self.inputs.nonpad) + i as i64;
        if s.causal {
            hi = hi.min(p + 1);
        }
        if let Some(w) = s.left_window {
            lo = lo.max(p - w as i64);
        }
        if let Some(w) = s.right_window {
            hi = hi.min(p + w as i64 + 1);
        }
        if let Some(n) = self.inputs.nonpad {
            hi = hi.min(n[b]);
        }
        if let Some(ms) = s.mask_shape {
            hi = hi.min(ms[3] as i64);
        }
        let clamp = |v: i64| v.clamp(0, total) as usize;
        (clamp(lo), clamp(hi))
    }

    /// Adds row `i`'s mask values (bool: `-inf` where false) to `row`, which holds keys
    /// `k0..k0 + row.len()`.
    fn add_mask(&self, b: usize, h: usize, i: usize, k0: usize, row: &mut [f32]) {
        let (Some(m), Some(st)) = (self.inputs.mask, self.mask_strides) else {
            return;
        };
        let at = b * st[0] + h * st[1] + i * st[2] + k0;
        let n = row.len();
        match m {
            AttentionMask::Bool(v) => {
                for (o, &keep) in row.iter_mut().zip(&v[at..at + n]) {
                    if keep == 0 {
                        *o = f32::NEG_INFINITY;
                    }
                }
            }
            AttentionMask::Float(v) => {
                for (o, &a) in row.iter_mut().zip(&v[at..at + n]) {
                    *o += a;
                }
            }
        }
    }

    /// Batch and query head `bh`: `Y`'s block `[q_seq, v_head]` and, when asked for,
    /// `qk_matmul_output`'s `[q_seq, keys]`.
    fn head(
        &self,
        bh: usize,
        y: &mut [f32],
        mut qk: Option<&mut [f32]>,
        scores: &mut [f32],
        probs: &mut [f32],
    ) -> KernelResult<()> {
        let (s, total) = (self.s, self.total);
        let (b, h) = (bh / s.q_heads, bh % s.q_heads);
        let kvh = h / (s.q_heads / s.kv_heads);
        let (d, dv) = (s.head, s.v_head);
        let (q_base, q_rs) = if s.rank3 {
            (b * s.q_seq * s.q_heads * d + h * d, s.q_heads * d)
        } else {
            (bh * s.q_seq * d, d)
        };
        let k_base = (b * s.kv_heads + kvh) * total * d;
        let v_base = (b * s.kv_heads + kvh) * total * dv;
        let gemm = |e| KernelError::Gemm { op: OP, source: e };
        // Scores outside every row's span are never needed unless a pre-softmax
        // qk_matmul_output shows them.
        let full = qk.is_some() && s.qk_output != QkOutput::Softmax;
        // The spec scales Q and K by sqrt(scale) each; their product is scale.
        let root = s.scale.sqrt();
        for i0 in (0..s.q_seq).step_by(ROWS) {
            let rows = ROWS.min(s.q_seq - i0);
            let mut spans = [(0usize, 0usize); ROWS];
            for (r, sp) in spans[..rows].iter_mut().enumerate() {
                *sp = self.span(b, i0 + r);
            }
            let (k0, k1) = if full {
                (0, total)
            } else {
                let live = spans[..rows].iter().filter(|(lo, hi)| lo < hi);
                live.fold((total, 0), |(a, z), &(lo, hi)| (a.min(lo), z.max(hi)))
            };
            let w = k1.saturating_sub(k0);
            let y_rows = &mut y[i0 * dv..(i0 + rows) * dv];
            if w == 0 {
                // No row attends any key: zero, as a fully masked row is.
                y_rows.fill(0.0);
                if let Some(o) = qk.as_deref_mut() {
                    o[i0 * total..(i0 + rows) * total].fill(0.0);
                }
                continue;
            }
            let sc = &mut scores[..rows * w];
            host_sgemm(
                HostMatMut {
                    data: sc,
                    rows,
                    cols: w,
                    row_stride: w,
                    col_stride: 1,
                },
                HostMat {
                    data: &self.inputs.q[q_base + i0 * q_rs..],
                    rows,
                    cols: d,
                    row_stride: q_rs,
                    col_stride: 1,
                },
                HostMat {
                    data: &self.ks[k_base + k0 * d..],
                    rows: d,
                    cols: w,
                    row_stride: 1,
                    col_stride: d,
                },
                None,
                root * root,
            )
            .map_err(gemm)?;
            // Modes 0-2 only when `full` (w == total): rows copy whole.
            let mut keep = |mode: QkOutput, sc: &[f32]| {
                if s.qk_output == mode {
                    if let Some(o) = qk.as_deref_mut() {
                        o[i0 * total..(i0 + rows) * total].copy_from_slice(sc);
                    }
                }
            };
            keep(QkOutput::Raw, sc);
            if s.softcap > 0.0 {
                let c = s.softcap;
                for v in sc.iter_mut() {
                    *v = c * tanh_f32(*v / c);
                }
            }
            // Without a cap, mode 1 is the raw scores.
            keep(QkOutput::Capped, sc);
            let mut masked = [false; ROWS];
            for (r, row) in sc.chunks_exact_mut(w).enumerate() {
                let (lo, hi) = spans[r];
                let (lo, hi) = (lo.clamp(k0, k1) - k0, hi.clamp(k0, k1) - k0);
                if lo >= hi {
                    row.fill(f32::NEG_INFINITY);
                } else {
                    row[..lo].fill(f32::NEG_INFINITY);
                    row[hi..].fill(f32::NEG_INFINITY);
                    self.add_mask(b, h, i0 + r, k0 + lo, &mut row[lo..hi]);
                }
                // A row with no key to attend is zero (its softmax would be 0/0).
                masked[r] = row.iter().all(|&v| v == f32::NEG_INFINITY);
            }
            keep(QkOutput::Biased, sc);
            let pr = &mut probs[..rows * w];
            softmax_rows(sc, pr, w);
            for (r, row) in pr.chunks_exact_mut(w).enumerate() {
                if masked[r] {
                    row.fill(0.0);
                }
            }
            if s.qk_output == QkOutput::Softmax {
                if let Some(o) = qk.as_deref_mut() {
                    for (r, row) in pr.chunks_exact(w).enumerate() {
                        let out = &mut o[(i0 + r) * total..(i0 + r + 1) * total];
                        out.fill(0.0);
                        out[k0..k1].copy_from_slice(row);
                    }
                }
            }
            host_sgemm(
                HostMatMut {
                    data: y_rows,
                    rows,
                    cols: dv,
                    row_stride: dv,
                    col_stride: 1,
                },
                HostMat {
                    data: pr,
                    rows,
                    cols: w,
                    row_stride: w,
                    col_stride: 1,
                },
                HostMat {
                    data: &self.vs[v_base + k0 * dv..],
                    rows: w,
                    cols: dv,
                    row_stride: dv,
                    col_stride: 1,
                },
                None,
                1.0,
            )
            .map_err(gemm)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's formula written out plainly (4-D, f64 accumulation).
    #[allow(clippy::too_many_arguments)]
    fn naive(s: &AttentionSpec, q: &[f32], k: &[f32], v: &[f32], mask: Option<&[f32]>) -> Vec<f32> {
        let total = s.keys();
        let mut y = vec![0.0f32; s.batch * s.q_heads * s.q_seq * s.v_head];
        for b in 0..s.batch {
            for h in 0..s.q_heads {
                let kh = h / (s.q_heads / s.kv_heads);
                for i in 0..s.q_seq {
                    let mut row: Vec<f64> = (0..total)
                        .map(|j| {
                            let mut acc = 0.0f64;
                            for c in 0..s.head {
                                acc +=
                                    f64::from(q[((b * s.q_heads + h) * s.q_seq + i) * s.head + c])
                                        * f64::from(
                                            k[((b * s.kv_heads + kh) * total + j) * s.head + c],
                                        );
                            }
                            let mut x = acc * f64::from(s.scale);
                            if s.causal && j > i {
                                x = f64::NEG_INFINITY;
                            }
                            if let Some(m) = mask {
                                x += f64::from(m[i * total + j]);
                            }
                            x
                        })
                        .collect();
                    let mx = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    if mx == f64::NEG_INFINITY {
                        continue;
                    }
                    let mut sum = 0.0;
                    for x in &mut row {
                        *x = (*x - mx).exp();
                        sum += *x;
                    }
                    for c in 0..s.v_head {
                        let mut acc = 0.0;
                        for (j, p) in row.iter().enumerate() {
                            acc += p / sum
                                * f64::from(v[((b * s.kv_heads + kh) * total + j) * s.v_head + c]);
                        }
                        y[((b * s.q_heads + h) * s.q_seq + i) * s.v_head + c] = acc as f32;
                    }
                }
            }
        }
        y
    }

    fn spec(q_seq: usize, kv_seq: usize) -> AttentionSpec {
        AttentionSpec {
            batch: 2,
            q_heads: 4,
            kv_heads: 2,
            q_seq,
            kv_seq,
            past_seq: 0,
            head: 8,
            v_head: 5,
            rank3: false,
            scale: 1.0 / 8f32.sqrt(),
            causal: false,
            softcap: 0.0,
            qk_output: QkOutput::Raw,
            left_window: None,
            right_window: None,
            mask_shape: None,
        }
    }

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn run(s: &AttentionSpec, mask: Option<&[f32]>, threads: usize) -> Vec<f32> {
        let total = s.keys();
        let q = data(s.batch * s.q_heads * s.q_seq * s.head, 1);
        let k = data(s.batch * s.kv_heads * total * s.head, 2);
        let v = data(s.batch * s.kv_heads * total * s.v_head, 3);
        let mut y = vec![f32::NAN; s.batch * s.q_heads * s.q_seq * s.v_head];
        let inputs = AttentionInputs {
            q: &q,
            k: &k,
            v: &v,
            mask: mask.map(AttentionMask::Float),
            past: None,
            nonpad: None,
        };
        let outputs = AttentionOutputs {
            y: &mut y,
            present_key: None,
            present_value: None,
            qk: None,
        };
        attention(s, &inputs, outputs, threads).unwrap();
        let want = naive(s, &q, &k, &v, mask);
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert!(
                (a - b).abs() <= 1e-5 + 1e-4 * b.abs(),
                "y[{i}] = {a}, want {b}"
            );
        }
        y
    }

    #[test]
    fn grouped_heads_match_the_formula_over_several_row_blocks_and_threads() {
        // 70 query rows: a full block of 64 and a ragged one.
        let s = spec(70, 70);
        let one = run(&s, None, 1);
        assert_eq!(one, run(&s, None, 2), "bit-identical across thread counts");
    }

    #[test]
    fn causal_rows_and_an_additive_mask_match_the_formula() {
        let mut s = spec(6, 6);
        s.causal = true;
        let mut mask = data(36, 7);
        // Row 2 masked whole by the mask: zero, not NaN.
        mask[12..18].fill(f32::NEG_INFINITY);
        s.mask_shape = Some([1, 1, 6, 6]);
        let y = run(&s, Some(&mask), 1);
        let row2 = &y[2 * s.v_head..3 * s.v_head];
        assert!(row2.iter().all(|&v| v == 0.0), "{row2:?}");
    }

    #[test]
    fn a_mask_longer_than_the_keys_is_an_error() {
        let mut s = spec(2, 3);
        s.mask_shape = Some([1, 1, 2, 4]);
        let (q, k, v) = (
            vec![0.0; 2 * 4 * 2 * 8],
            vec![0.0; 2 * 2 * 3 * 8],
            vec![0.0; 2 * 2 * 3 * 5],
        );
        let mask = vec![0.0; 8];
        let mut y = vec![0.0; 2 * 4 * 2 * 5];
        let inputs = AttentionInputs {
            q: &q,
            k: &k,
            v: &v,
            mask: Some(AttentionMask::Float(&mask)),
            past: None,
            nonpad: None,
        };
        let out = AttentionOutputs {
            y: &mut y,
            present_key: None,
            present_value: None,
            qk: None,
        };
        let e = attention(&s, &inputs, out, 1).unwrap_err().to_string();
        assert!(e.contains("attn_mask") && e.contains("4 keys"), "{e}");
    }
}
