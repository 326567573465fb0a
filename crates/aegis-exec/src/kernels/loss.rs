//! `NegativeLogLikelihoodLoss` and `SoftmaxCrossEntropyLoss` (the same loss over the scores'
//! log-softmax along axis 1).
//!
//! Sums (`reduction` sum and mean) run in f64 in element order and are rounded once, so the
//! result does not depend on threads (there are none) and is at least as accurate as the
//! reference's f32 sum.

use super::error::{check_len, KernelError, KernelResult};

/// How a loss's per-element values are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LossReduction {
    /// One value per target element.
    None,
    /// Their sum (a scalar).
    Sum,
    /// Their weighted mean: the sum divided by the sum of the weights the targets selected
    /// (`NaN` when every target is ignored, as in the reference).
    Mean,
}

/// The operands of [`nll_loss`].
#[derive(Debug, Clone, Copy)]
pub struct LossArgs<'a, T> {
    /// Scores or log-probabilities, `[N, C, d...]`.
    pub x: &'a [f32],
    /// `x`'s shape.
    pub x_shape: &'a [usize],
    /// Class per element, `[N, d...]`.
    pub target: &'a [T],
    /// Optional per-class weights, `[C]`.
    pub weight: Option<&'a [f32]>,
    /// Targets equal to this contribute nothing (loss and weight 0).
    pub ignore_index: Option<i64>,
    /// Take the log-softmax of `x` over axis 1 first (`SoftmaxCrossEntropyLoss`).
    pub log_softmax: bool,
    /// How the values are combined.
    pub reduction: LossReduction,
}

/// Computes the loss into `loss` (`[N, d...]` with [`LossReduction::None`], else one
/// element) and, when given, the log-softmax of `x` into `log_prob` (`x`'s shape; only with
/// `log_softmax`).
///
/// # Errors
/// Length mismatches, or a target outside `[0, C)` that is not `ignore_index`.
pub fn nll_loss<T: Copy + Into<i64>>(
    a: &LossArgs<'_, T>,
    loss: &mut [f32],
    mut log_prob: Option<&mut [f32]>,
) -> KernelResult<()> {
    let op = if a.log_softmax {
        "SoftmaxCrossEntropyLoss"
    } else {
        "NegativeLogLikelihoodLoss"
    };
    let (n, c) = match a.x_shape {
        [n, c, ..] => (*n, *c),
        _ => {
            return Err(KernelError::InvalidAttribute {
                op,
                attr: "input",
                reason: format!("shape {:?} has no class axis", a.x_shape),
            })
        }
    };
    let d: usize = a.x_shape[2..].iter().product();
    check_len(op, "input", a.x.len(), n * c * d)?;
    check_len(op, "target", a.target.len(), n * d)?;
    if let Some(w) = a.weight {
        check_len(op, "weight", w.len(), c)?;
    }
    let want = if a.reduction == LossReduction::None {
        n * d
    } else {
        1
    };
    check_len(op, "loss", loss.len(), want)?;
    if let Some(lp) = log_prob.as_deref() {
        check_len(op, "log_prob", lp.len(), a.x.len())?;
    }
    let (mut sum, mut weights) = (0.0f64, 0.0f64);
    for i in 0..n {
        let xs = &a.x[i * c * d..(i + 1) * c * d];
        for j in 0..d {
            // log(sum(exp(x - max))) over the classes of this element, when needed.
            let shift = if a.log_softmax {
                let max = (0..c)
                    .map(|k| xs[k * d + j])
                    .fold(f32::NEG_INFINITY, f32::max);
                let s: f32 = (0..c).map(|k| (xs[k * d + j] - max).exp()).sum();
                let shift = max + s.ln();
                if let Some(lp) = log_prob.as_deref_mut() {
                    for k in 0..c {
                        lp[i * c * d + k * d + j] = xs[k * d + j] - shift;
                    }
                }
                shift
            } else {
                0.0
            };
            let t: i64 = a.target[i * d + j].into();
            let (value, w) = if a.ignore_index == Some(t) {
                (0.0f32, 0.0f32)
            } else {
                let k = usize::try_from(t).ok().filter(|&k| k < c).ok_or(
                    KernelError::IndexOutOfRange {
                        op,
                        index: t,
                        size: c,
                    },
                )?;
                let w = a.weight.map_or(1.0, |w| w[k]);
                (w * -(xs[k * d + j] - shift), w)
            };
            match a.reduction {
                LossReduction::None => loss[i * d + j] = value,
                _ => {
                    sum += f64::from(value);
                    weights += f64::from(w);
                }
            }
        }
    }
    match a.reduction {
        LossReduction::None => {}
        LossReduction::Sum => loss[0] = sum as f32,
        LossReduction::Mean => loss[0] = (sum / weights) as f32,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args<'a>(
        x: &'a [f32],
        shape: &'a [usize],
        target: &'a [i64],
        reduction: LossReduction,
    ) -> LossArgs<'a, i64> {
        LossArgs {
            x,
            x_shape: shape,
            target,
            weight: None,
            ignore_index: None,
            log_softmax: false,
            reduction,
        }
    }

    #[test]
    fn picks_the_target_class_per_element_and_reduces() {
        // [N=2, C=3, d=2]: element (n, j) reads x[n][target][j].
        let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let target = [2i64, 0, 1, 1];
        let mut none = [0.0; 4];
        nll_loss(
            &args(&x, &[2, 3, 2], &target, LossReduction::None),
            &mut none,
            None,
        )
        .unwrap();
        assert_eq!(none, [-4.0, -1.0, -8.0, -9.0]);
        let mut sum = [0.0];
        let a = args(&x, &[2, 3, 2], &target, LossReduction::Sum);
        nll_loss(&a, &mut sum, None).unwrap();
        assert_eq!(sum, [-22.0]);
        // Weighted mean with an ignored element: (2*-4 + 1*-8 + 1*-9) / (2 + 1 + 1).
        let w = [1.0, 1.0, 2.0];
        let mut mean = [0.0];
        let a = LossArgs {
            weight: Some(&w),
            ignore_index: Some(0),
            reduction: LossReduction::Mean,
            ..a
        };
        nll_loss(&a, &mut mean, None).unwrap();
        assert_eq!(mean, [-25.0 / 4.0]);
    }

    #[test]
    fn softmax_cross_entropy_is_the_loss_of_the_log_softmax() {
        let x = [1.0f32, 2.0, 3.0, 0.5, -1.0, 4.0];
        let target = [2i64, 0];
        let mut lp = [0.0; 6];
        let mut loss = [0.0; 2];
        let a = LossArgs {
            log_softmax: true,
            ..args(&x, &[2, 3], &target, LossReduction::None)
        };
        nll_loss(&a, &mut loss, Some(&mut lp)).unwrap();
        for row in 0..2 {
            let r = &x[row * 3..row * 3 + 3];
            let lse = r.iter().map(|v| f64::from(*v).exp()).sum::<f64>().ln();
            for k in 0..3 {
                let want = f64::from(r[k]) - lse;
                assert!((f64::from(lp[row * 3 + k]) - want).abs() < 1e-6);
            }
            let t = target[row] as usize;
            assert!((f64::from(loss[row]) + f64::from(r[t]) - lse).abs() < 1e-6);
        }
    }

    #[test]
    fn a_target_outside_the_classes_is_a_typed_error() {
        let x = [0.0f32; 6];
        let mut loss = [0.0];
        let e = nll_loss(
            &args(&x, &[2, 3], &[1, 3], LossReduction::Mean),
            &mut loss,
            None,
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
        // The same value is fine when it is the ignored index.
        let a = LossArgs {
            ignore_index: Some(3),
            ..args(&x, &[2, 3], &[1, 3], LossReduction::Sum)
        };
        nll_loss(&a, &mut loss, None).unwrap();
        assert_eq!(loss, [0.0]);
    }
}
