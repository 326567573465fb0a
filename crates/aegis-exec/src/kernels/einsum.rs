//! Einsum over f32 (or f64) operands whose subscripts the loader has already resolved (ellipses
//! expanded, implicit outputs made explicit): each operand and the output is a list of letter
//! ids, one per axis.
//!
//! Operands are contracted left to right, two at a time, as one batched GEMM each: the
//! letters both share and still needed later are the batch, the ones both share and no one
//! needs later are the reduction `K`, the rest of each side are `M` and `N`. Before that,
//! any letter only one operand has and no one needs later is summed out, and a letter
//! repeated within one operand (a diagonal) is read with the sum of its strides. Packing,
//! sums and the final permutation are one strided walk (`gather_sum`); a letter of size 1 in
//! an operand broadcasts (stride 0). The temporaries are allocated per call: Einsum sits in
//! attention heads and post-processing, not in the convolution path.

use super::error::{invalid, numel, KernelResult};
use super::matmul::matmul;

/// An element type Einsum runs on: f32 contracts through the tiled GEMM, f64 through a
/// plain loop nest in f64 (no f64 GEMM here; f64 Einsum is rare and small).
pub trait EinsumElem:
    Copy + Send + Sync + std::ops::AddAssign + std::ops::Mul<Output = Self>
{
    /// Zero.
    const ZERO: Self;
    /// `c[b] = a[b] (m x k) * b[b] (k x n)` for each of `bt` batches (`dims` = bt, m, k, n),
    /// row-major.
    fn batched_matmul(
        a: &[Self],
        b: &[Self],
        dims: [usize; 4],
        c: &mut [Self],
        threads: usize,
    ) -> KernelResult<()>;
}

impl EinsumElem for f32 {
    const ZERO: Self = 0.0;
    fn batched_matmul(
        a: &[f32],
        b: &[f32],
        [bt, m, k, n]: [usize; 4],
        c: &mut [f32],
        threads: usize,
    ) -> KernelResult<()> {
        matmul(a, &[bt, m, k], b, &[bt, k, n], c, threads)
    }
}

impl EinsumElem for f64 {
    const ZERO: Self = 0.0;
    fn batched_matmul(
        a: &[f64],
        b: &[f64],
        [bt, m, k, n]: [usize; 4],
        c: &mut [f64],
        _threads: usize,
    ) -> KernelResult<()> {
        for i in 0..bt {
            let (a, b) = (&a[i * m * k..][..m * k], &b[i * k * n..][..k * n]);
            let c = &mut c[i * m * n..][..m * n];
            for (r, row) in c.chunks_exact_mut(n).enumerate() {
                // k outer, n inner: rows of b are read in order.
                for (p, &x) in a[r * k..][..k].iter().enumerate() {
                    for (o, &y) in row.iter_mut().zip(&b[p * n..][..n]) {
                        *o += x * y;
                    }
                }
            }
        }
        Ok(())
    }
}

/// One operand: contiguous data and, per letter it has, that letter's stride.
struct View<'a, T: Clone> {
    data: std::borrow::Cow<'a, [T]>,
    /// `(letter, stride)`, each letter once (a repeated letter's strides summed).
    strides: Vec<(u8, usize)>,
}

impl<T: Clone> View<'_, T> {
    fn has(&self, letter: u8) -> bool {
        self.strides.iter().any(|&(l, _)| l == letter)
    }

    fn stride(&self, letter: u8) -> usize {
        self.strides
            .iter()
            .find(|&&(l, _)| l == letter)
            .map_or(0, |&(_, s)| s)
    }
}

/// ONNX Einsum: `out[output] = sum over the other letters of the product of the operands`.
/// `terms[i]` holds operand `i`'s letter per axis, `output` the output's; `sizes[letter]` is
/// each letter's extent (an operand axis is that extent or 1).
///
/// # Errors
/// Shape or length mismatches between the operands, terms and sizes.
pub fn einsum<T: EinsumElem>(
    inputs: &[(&[T], &[usize])],
    terms: &[Vec<u8>],
    output: &[u8],
    sizes: &[usize],
    out: &mut [T],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "Einsum";
    if inputs.is_empty() || inputs.len() != terms.len() {
        return Err(invalid(
            OP,
            "inputs",
            format!("{} for {} terms", inputs.len(), terms.len()),
        ));
    }
    let size = |l: u8| sizes.get(usize::from(l)).copied();
    let mut views = Vec::with_capacity(inputs.len());
    for (i, (&(data, shape), term)) in inputs.iter().zip(terms).enumerate() {
        if shape.len() != term.len() || data.len() != numel(OP, shape)? {
            return Err(invalid(
                OP,
                "inputs",
                format!("operand {i} {shape:?} for {} letters", term.len()),
            ));
        }
        let mut strides: Vec<(u8, usize)> = Vec::new();
        let mut s = 1;
        for (&l, &d) in term.iter().zip(shape).rev() {
            let full = size(l).ok_or_else(|| invalid(OP, "letters", format!("{l} has no size")))?;
            if d != full && d != 1 {
                return Err(invalid(
                    OP,
                    "inputs",
                    format!("operand {i} axis of {d} for a letter of {full}"),
                ));
            }
            // A broadcast axis reads the same element along the letter.
            let st = if d == 1 { 0 } else { s };
            match strides.iter_mut().find(|(x, _)| *x == l) {
                Some((_, acc)) => *acc += st,
                None => strides.push((l, st)),
            }
            s *= d;
        }
        views.push(View {
            data: std::borrow::Cow::Borrowed(data),
            strides,
        });
    }
    let want: usize = output.iter().map(|&l| size(l).unwrap_or(0)).product();
    if out.len() != want {
        return Err(invalid(
            OP,
            "Y",
            format!("{} elements for {want}", out.len()),
        ));
    }
    let sizes_of = |ls: &[u8]| -> Vec<usize> { ls.iter().map(|&l| size(l).unwrap_or(0)).collect() };
    let mut rest = views.into_iter();
    let mut acc = match rest.next() {
        Some(v) => v,
        None => return Ok(()),
    };
    let remaining: Vec<View<'_, T>> = rest.collect();
    for (j, b) in remaining.iter().enumerate() {
        // Letters someone still needs after this pair: the output's and later operands'.
        let later = |l: u8| output.contains(&l) || remaining[j + 1..].iter().any(|v| v.has(l));
        let a_letters: Vec<u8> = acc.strides.iter().map(|&(l, _)| l).collect();
        let b_letters: Vec<u8> = b.strides.iter().map(|&(l, _)| l).collect();
        let both = |l: &u8| a_letters.contains(l) && b_letters.contains(l);
        let batch: Vec<u8> = a_letters
            .iter()
            .copied()
            .filter(|l| both(l) && later(*l))
            .collect();
        let k: Vec<u8> = a_letters
            .iter()
            .copied()
            .filter(|l| both(l) && !later(*l))
            .collect();
        let m: Vec<u8> = a_letters
            .iter()
            .copied()
            .filter(|l| !both(l) && later(*l))
            .collect();
        let n: Vec<u8> = b_letters
            .iter()
            .copied()
            .filter(|l| !both(l) && later(*l))
            .collect();
        let a_sum: Vec<u8> = a_letters
            .iter()
            .copied()
            .filter(|l| !both(l) && !later(*l))
            .collect();
        let b_sum: Vec<u8> = b_letters
            .iter()
            .copied()
            .filter(|l| !both(l) && !later(*l))
            .collect();
        let (bt, mm, kk, nn) = (
            sizes_of(&batch).iter().product::<usize>(),
            sizes_of(&m).iter().product::<usize>(),
            sizes_of(&k).iter().product::<usize>(),
            sizes_of(&n).iter().product::<usize>(),
        );
        let a_keep: Vec<u8> = batch.iter().chain(&m).chain(&k).copied().collect();
        let b_keep: Vec<u8> = batch.iter().chain(&k).chain(&n).copied().collect();
        let pa = gather_sum(&acc, &a_keep, &a_sum, &size);
        let pb = gather_sum(b, &b_keep, &b_sum, &size);
        let mut c = vec![T::ZERO; bt * mm * nn];
        if kk > 0 && !c.is_empty() {
            T::batched_matmul(&pa, &pb, [bt, mm, kk, nn], &mut c, threads)?;
        }
        let letters: Vec<u8> = batch.iter().chain(&m).chain(&n).copied().collect();
        acc = contiguous(c, &letters, &size);
    }
    let summed: Vec<u8> = acc
        .strides
        .iter()
        .map(|&(l, _)| l)
        .filter(|l| !output.contains(l))
        .collect();
    let y = gather_sum(&acc, output, &summed, &size);
    out.copy_from_slice(&y);
    Ok(())
}

/// A contiguous operand over `letters` (row-major).
fn contiguous<'a, T: Clone>(
    data: Vec<T>,
    letters: &[u8],
    size: &impl Fn(u8) -> Option<usize>,
) -> View<'a, T> {
    let mut strides = vec![(0u8, 0usize); letters.len()];
    let mut s = 1;
    for (i, &l) in letters.iter().enumerate().rev() {
        strides[i] = (l, s);
        s *= size(l).unwrap_or(0);
    }
    View {
        data: std::borrow::Cow::Owned(data),
        strides,
    }
}

/// `v` read over `keep` (row-major, contiguous result), summed over `sum` in index order; a
/// letter `v` lacks reads with stride 0.
fn gather_sum<T: EinsumElem>(
    v: &View<'_, T>,
    keep: &[u8],
    sum: &[u8],
    size: &impl Fn(u8) -> Option<usize>,
) -> Vec<T> {
    let dims = |ls: &[u8]| -> Vec<usize> { ls.iter().map(|&l| size(l).unwrap_or(0)).collect() };
    let (kd, sd) = (dims(keep), dims(sum));
    let ks: Vec<usize> = keep.iter().map(|&l| v.stride(l)).collect();
    let ss: Vec<usize> = sum.iter().map(|&l| v.stride(l)).collect();
    let total: usize = kd.iter().product();
    let inner: usize = sd.iter().product();
    let mut out = Vec::with_capacity(total);
    let mut kidx = vec![0usize; kd.len()];
    let mut base = 0usize;
    for _ in 0..total {
        let mut s = T::ZERO;
        if inner > 0 {
            let mut sidx = vec![0usize; sd.len()];
            let mut off = base;
            for _ in 0..inner {
                s += v.data[off];
                off = step(&mut sidx, &sd, &ss, off);
            }
        }
        out.push(s);
        base = step(&mut kidx, &kd, &ks, base);
    }
    out
}

/// Advances the odometer `idx` over `dims` (last fastest) and returns `off` moved by the
/// strides accordingly.
fn step(idx: &mut [usize], dims: &[usize], strides: &[usize], mut off: usize) -> usize {
    for a in (0..idx.len()).rev() {
        idx[a] += 1;
        off += strides[a];
        if idx[a] < dims[a] {
            return off;
        }
        off -= strides[a] * idx[a];
        idx[a] = 0;
    }
    off
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition: every assignment of all letters, the product of the operands there
    /// (a size-1 axis read at 0) added into the output.
    fn naive(
        inputs: &[(&[f32], &[usize])],
        terms: &[Vec<u8>],
        output: &[u8],
        sizes: &[usize],
    ) -> Vec<f32> {
        let letters: Vec<u8> = (0..sizes.len() as u8)
            .filter(|l| terms.iter().any(|t| t.contains(l)))
            .collect();
        let total: usize = letters.iter().map(|&l| sizes[usize::from(l)]).product();
        let out_len: usize = output.iter().map(|&l| sizes[usize::from(l)]).product();
        let mut out = vec![0.0f64; out_len];
        let mut val = vec![0usize; sizes.len()];
        for mut i in 0..total {
            for &l in letters.iter().rev() {
                val[usize::from(l)] = i % sizes[usize::from(l)];
                i /= sizes[usize::from(l)];
            }
            let mut p = 1.0f64;
            for ((data, shape), term) in inputs.iter().zip(terms) {
                let mut off = 0;
                for (&l, &d) in term.iter().zip(*shape) {
                    off = off * d + if d == 1 { 0 } else { val[usize::from(l)] };
                }
                p *= f64::from(data[off]);
            }
            let mut o = 0;
            for &l in output {
                o = o * sizes[usize::from(l)] + val[usize::from(l)];
            }
            out[o] += p;
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    fn data(n: usize, seed: usize) -> Vec<f32> {
        (0..n)
            .map(|i| (((i + seed) * 37 % 17) as f32 - 8.0) / 8.0)
            .collect()
    }

    /// Letters as ids: `i` = 0, `j` = 1, ... in the order of `"ijklmnbhqd"`.
    fn ids(s: &str) -> Vec<u8> {
        s.chars()
            .map(|ch| "ijklmnbhqd".find(ch).unwrap() as u8)
            .collect()
    }

    #[rstest::rstest]
    #[case::matmul(&["ij", "jk"], "ik", &[(0, 3), (1, 4), (2, 5)])]
    #[case::batch_matmul(&["bij", "bjk"], "bik", &[(6, 2), (0, 3), (1, 4), (2, 5)])]
    #[case::attention_scores(&["bhqd", "bhkd"], "bhqk", &[(6, 2), (7, 3), (8, 5), (9, 4), (2, 6)])]
    #[case::transpose(&["ij"], "ji", &[(0, 3), (1, 4)])]
    #[case::trace(&["ii"], "", &[(0, 4)])]
    #[case::diagonal(&["bii"], "bi", &[(6, 3), (0, 4)])]
    #[case::row_sums(&["ij"], "i", &[(0, 3), (1, 5)])]
    #[case::inner(&["i", "i"], "", &[(0, 7)])]
    #[case::outer(&["i", "j"], "ij", &[(0, 3), (1, 4)])]
    #[case::chain_of_three(&["ij", "jk", "kl"], "il", &[(0, 2), (1, 3), (2, 4), (3, 5)])]
    #[case::summed_before_the_product(&["ijk", "jl"], "il", &[(0, 2), (1, 3), (2, 4), (3, 5)])]
    #[case::batch_kept_from_one_side(&["bij", "jk"], "bik", &[(6, 2), (0, 3), (1, 4), (2, 5)])]
    fn matches_the_definition(
        #[case] ins: &[&str],
        #[case] out: &str,
        #[case] dims: &[(u8, usize)],
    ) {
        let mut sizes = vec![1usize; 10];
        for &(l, d) in dims {
            sizes[usize::from(l)] = d;
        }
        let terms: Vec<Vec<u8>> = ins.iter().map(|s| ids(s)).collect();
        let shapes: Vec<Vec<usize>> = terms
            .iter()
            .map(|t| t.iter().map(|&l| sizes[usize::from(l)]).collect())
            .collect();
        let datas: Vec<Vec<f32>> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| data(s.iter().product(), i * 5))
            .collect();
        let inputs: Vec<(&[f32], &[usize])> = datas
            .iter()
            .zip(&shapes)
            .map(|(d, s)| (d.as_slice(), s.as_slice()))
            .collect();
        let output = ids(out);
        let want = naive(&inputs, &terms, &output, &sizes);
        for threads in [1, 2] {
            let mut got = vec![f32::NAN; want.len()];
            einsum(&inputs, &terms, &output, &sizes, &mut got, threads).unwrap();
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{ins:?}->{out}: {g} vs {w}"
                );
            }
        }
        // The f64 path (its own loop nest) on the same values, widened exactly.
        let wide: Vec<Vec<f64>> = datas
            .iter()
            .map(|d| d.iter().map(|&v| f64::from(v)).collect())
            .collect();
        let inputs: Vec<(&[f64], &[usize])> = wide
            .iter()
            .zip(&shapes)
            .map(|(d, s)| (d.as_slice(), s.as_slice()))
            .collect();
        let mut got = vec![f64::NAN; want.len()];
        einsum(&inputs, &terms, &output, &sizes, &mut got, 1).unwrap();
        for (g, w) in got.iter().zip(&want) {
            let w = f64::from(*w);
            assert!(
                (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                "f64 {ins:?}->{out}: {g} vs {w}"
            );
        }
    }

    #[test]
    fn a_size_one_axis_broadcasts_and_mismatches_are_errors() {
        // "bij,bjk->bik" with the left batch 1 and the right batch 3.
        let mut sizes = vec![1usize; 10];
        (sizes[6], sizes[0], sizes[1], sizes[2]) = (3, 2, 2, 2);
        let (a, b) = (data(4, 0), data(12, 3));
        let terms = vec![ids("bij"), ids("bjk")];
        let inputs: Vec<(&[f32], &[usize])> = vec![(&a, &[1, 2, 2]), (&b, &[3, 2, 2])];
        let want = naive(&inputs, &terms, &ids("bik"), &sizes);
        let mut got = vec![0.0; 12];
        einsum(&inputs, &terms, &ids("bik"), &sizes, &mut got, 1).unwrap();
        assert_eq!(got, want);
        let bad: Vec<(&[f32], &[usize])> = vec![(&a, &[1, 2, 2]), (&b[..8], &[2, 2, 2])];
        assert!(einsum(&bad, &terms, &ids("bik"), &sizes, &mut got, 1).is_err());
    }
}
