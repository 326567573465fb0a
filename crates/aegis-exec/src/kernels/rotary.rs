//! ONNX `RotaryEmbedding` (opset 23): rotates pairs of each head's first
//! `rotary_embedding_dim` features by per-position angles given as cosine and sine caches,
//! the pairs being the two halves of that span or, `interleaved`, neighbouring features.

use super::error::{check_len, invalid, numel, KernelError, KernelResult};

const OP: &str = "RotaryEmbedding";

/// Shapes and attributes, resolved at load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotarySpec {
    /// Batch size.
    pub batch: usize,
    /// Heads.
    pub heads: usize,
    /// Sequence length.
    pub seq: usize,
    /// Head size.
    pub head: usize,
    /// Features rotated (even, at most `head`); the rest pass through.
    pub rot: usize,
    /// `X` is `[batch, seq, heads * head]`; else `[batch, heads, seq, head]`.
    pub rank3: bool,
    /// Pairs are `(2i, 2i + 1)`; else `(i, i + rot / 2)`.
    pub interleaved: bool,
    /// With `position_ids`: rows of the caches `[positions, rot / 2]`; without, the caches
    /// are `[batch, seq, rot / 2]` (0 then).
    pub positions: usize,
}

/// Runs `RotaryEmbedding`; `position_ids [batch, seq]` pick the caches' rows when given.
///
/// # Errors
/// Length mismatches, or a position outside the caches.
pub fn rotary_embedding(
    spec: &RotarySpec,
    x: &[f32],
    cos: &[f32],
    sin: &[f32],
    position_ids: Option<&[i64]>,
    out: &mut [f32],
) -> KernelResult<()> {
    let s = spec;
    let half = s.rot / 2;
    let n = numel(OP, &[s.batch, s.heads, s.seq, s.head])?;
    check_len(OP, "X", x.len(), n)?;
    check_len(OP, "Y", out.len(), n)?;
    let rows = match position_ids {
        Some(p) => {
            check_len(OP, "position_ids", p.len(), s.batch * s.seq)?;
            s.positions
        }
        None => s.batch * s.seq,
    };
    check_len(OP, "cos_cache", cos.len(), rows * half)?;
    check_len(OP, "sin_cache", sin.len(), rows * half)?;
    if !s.rot.is_multiple_of(2) || s.rot > s.head {
        return Err(invalid(
            OP,
            "rotary_embedding_dim",
            format!("{} for head size {}", s.rot, s.head),
        ));
    }
    for b in 0..s.batch {
        for t in 0..s.seq {
            let row = match position_ids {
                Some(p) => {
                    let id = p[b * s.seq + t];
                    usize::try_from(id).ok().filter(|&r| r < rows).ok_or(
                        KernelError::IndexOutOfRange {
                            op: OP,
                            index: id,
                            size: rows,
                        },
                    )?
                }
                None => b * s.seq + t,
            };
            let (c, sn) = (&cos[row * half..][..half], &sin[row * half..][..half]);
            for h in 0..s.heads {
                let at = if s.rank3 {
                    (b * s.seq + t) * s.heads * s.head + h * s.head
                } else {
                    ((b * s.heads + h) * s.seq + t) * s.head
                };
                let (xr, or) = (&x[at..at + s.head], &mut out[at..at + s.head]);
                for i in 0..half {
                    let (p, q) = if s.interleaved {
                        (2 * i, 2 * i + 1)
                    } else {
                        (i, i + half)
                    };
                    let (x1, x2) = (xr[p], xr[q]);
                    or[p] = c[i] * x1 - sn[i] * x2;
                    or[q] = sn[i] * x1 + c[i] * x2;
                }
                or[s.rot..].copy_from_slice(&xr[s.rot..]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarter_turn_rotates_each_pair_and_leaves_the_rest() {
        // One head of 6 features, 4 rotated, at position 1 of a 2-row cache.
        let spec = RotarySpec {
            batch: 1,
            heads: 1,
            seq: 1,
            head: 6,
            rot: 4,
            rank3: false,
            interleaved: false,
            positions: 2,
        };
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let (cos, sin) = ([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]);
        let mut y = [0.0; 6];
        rotary_embedding(&spec, &x, &cos, &sin, Some(&[1]), &mut y).unwrap();
        // Pairs (1, 3) and (2, 4) turn by 90 degrees: (a, b) -> (-b, a).
        assert_eq!(y, [-3.0, -4.0, 1.0, 2.0, 5.0, 6.0]);
        let interleaved = RotarySpec {
            interleaved: true,
            ..spec.clone()
        };
        rotary_embedding(&interleaved, &x, &cos, &sin, Some(&[1]), &mut y).unwrap();
        assert_eq!(y, [-2.0, 1.0, -4.0, 3.0, 5.0, 6.0]);
        let e = rotary_embedding(&spec, &x, &cos, &sin, Some(&[2]), &mut y).unwrap_err();
        assert!(e.to_string().contains('2'), "{e}");
    }
}
