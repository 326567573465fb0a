//! Tensor lifetimes over a fixed step order.

use crate::error::MemoryError;

/// How one tensor is used by a step order: plain data, so this layer needs no graph.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TensorUsage {
    /// Caller's tensor id; unique within one request.
    pub id: usize,
    /// Size in bytes (unaligned).
    pub size_bytes: u64,
    /// The step that writes the tensor; `None` for a graph input (alive from step 0).
    pub producer: Option<usize>,
    /// The steps that read the tensor, in any order.
    pub consumers: Vec<usize>,
    /// Graph outputs stay alive to the end of the run (step `num_steps`).
    pub is_graph_output: bool,
    /// Constants (weights) live in their own buffers and are never planned.
    pub is_constant: bool,
}

/// The closed interval of steps during which a tensor's bytes must stay intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Lifetime {
    /// Caller's tensor id.
    pub tensor: usize,
    /// Size in bytes (unaligned).
    pub size_bytes: u64,
    /// First step at which the tensor is alive (its producer, or 0 for a graph input).
    pub first_step: usize,
    /// Last step at which it is alive (its last consumer; `num_steps` for a graph output).
    pub last_step: usize,
}

impl Lifetime {
    /// True when both tensors are alive at some common step.
    pub fn overlaps(&self, other: &Lifetime) -> bool {
        self.first_step <= other.last_step && other.first_step <= self.last_step
    }
}

/// Turns [`TensorUsage`]s into [`Lifetime`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct LifetimeAnalyser;

impl LifetimeAnalyser {
    /// Computes the lifetime of every non-constant tensor, in input order.
    ///
    /// A tensor is alive from its producer step (0 for a graph input) through its last
    /// consumer; a graph output through step `num_steps`. A produced tensor nobody reads is
    /// alive at its producer step only (the kernel still writes it). A graph input nobody
    /// reads and that is not an output is alive at step 0 only, so it still gets a slot.
    ///
    /// # Errors
    /// Duplicate ids, steps outside `0..num_steps`, a consumer at or before its producer.
    pub fn analyse(
        num_steps: usize,
        tensors: &[TensorUsage],
    ) -> Result<Vec<Lifetime>, MemoryError> {
        check_unique(tensors.iter().map(|t| t.id))?;
        let mut out = Vec::with_capacity(tensors.len());
        for t in tensors {
            if let Some(p) = t.producer {
                if p >= num_steps {
                    return Err(MemoryError::StepOutOfRange {
                        tensor: t.id,
                        step: p,
                        num_steps,
                    });
                }
            }
            for &c in &t.consumers {
                if c >= num_steps {
                    return Err(MemoryError::StepOutOfRange {
                        tensor: t.id,
                        step: c,
                        num_steps,
                    });
                }
                if let Some(p) = t.producer {
                    if c <= p {
                        return Err(MemoryError::ConsumerNotAfterProducer {
                            tensor: t.id,
                            producer: p,
                            consumer: c,
                        });
                    }
                }
            }
            if t.is_constant {
                continue;
            }
            let first_step = t.producer.unwrap_or(0);
            let last_read = t.consumers.iter().copied().max();
            let last_step = if t.is_graph_output {
                num_steps
            } else {
                last_read.unwrap_or(first_step).max(first_step)
            };
            out.push(Lifetime {
                tensor: t.id,
                size_bytes: t.size_bytes,
                first_step,
                last_step,
            });
        }
        Ok(out)
    }
}

/// Rejects repeated ids without depending on hash order.
pub(crate) fn check_unique(ids: impl Iterator<Item = usize>) -> Result<(), MemoryError> {
    let mut ids: Vec<usize> = ids.collect();
    ids.sort_unstable();
    match ids.windows(2).find(|w| w[0] == w[1]) {
        Some(w) => Err(MemoryError::DuplicateTensor { tensor: w[0] }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(id: usize, producer: Option<usize>, consumers: &[usize]) -> TensorUsage {
        TensorUsage {
            id,
            size_bytes: 10,
            producer,
            consumers: consumers.to_vec(),
            is_graph_output: false,
            is_constant: false,
        }
    }

    #[test]
    fn intervals_inputs_outputs_constants() {
        let mut out = usage(2, Some(1), &[]);
        out.is_graph_output = true;
        let mut w = usage(3, None, &[0]);
        w.is_constant = true;
        let l = LifetimeAnalyser::analyse(
            3,
            &[usage(0, None, &[0]), usage(1, Some(0), &[1, 2]), out, w],
        )
        .unwrap();
        let spans: Vec<_> = l
            .iter()
            .map(|l| (l.tensor, l.first_step, l.last_step))
            .collect();
        assert_eq!(spans, vec![(0, 0, 0), (1, 0, 2), (2, 1, 3)]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            LifetimeAnalyser::analyse(2, &[usage(0, Some(2), &[])]),
            Err(MemoryError::StepOutOfRange { step: 2, .. })
        ));
        assert!(matches!(
            LifetimeAnalyser::analyse(2, &[usage(0, Some(1), &[1])]),
            Err(MemoryError::ConsumerNotAfterProducer { .. })
        ));
        assert!(matches!(
            LifetimeAnalyser::analyse(2, &[usage(0, None, &[5])]),
            Err(MemoryError::StepOutOfRange { step: 5, .. })
        ));
        assert!(matches!(
            LifetimeAnalyser::analyse(2, &[usage(4, None, &[]), usage(4, None, &[])]),
            Err(MemoryError::DuplicateTensor { tensor: 4 })
        ));
    }
}
