//! Weighted fairness across tenants by measured device time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{Candidate, Choice, Feedback, PolicyContext, SchedulingPolicy};
use crate::error::SchedError;
use crate::request::TenantId;

#[derive(Debug, Clone)]
struct TenantState {
    weight: u32,
    /// Device time received divided by weight (ns per weight unit).
    vtime: f64,
}

/// Weighted fair sharing of device time across tenants (start-time fair queuing, a
/// virtual-time form of stride scheduling).
///
/// Each tenant has a virtual time: the device time it has received divided by its weight. A
/// free stream goes to the backlogged tenant with the least virtual time (ties: lowest tenant
/// id), which runs its oldest request. Dispatch charges the request's estimate; completion
/// corrects the charge with the **measured** device time, so a tenant whose requests run
/// longer than estimated pays for it. A tenant returning from idle starts at the current
/// virtual clock, not at its old (low) value, so idling banks no credit.
///
/// Only the tenants given at construction are accepted (others are refused at submission).
#[derive(Debug, Clone)]
pub struct WeightedFair {
    tenants: BTreeMap<TenantId, TenantState>,
    /// Start tag of the last dispatch: the virtual "now".
    clock: f64,
    heads: Vec<(TenantId, usize)>,
}

impl WeightedFair {
    /// Tenants and their weights (≥ 1; a tenant with weight 2 gets twice the device time of a
    /// tenant with weight 1 when both are backlogged).
    pub fn new(weights: impl IntoIterator<Item = (TenantId, u32)>) -> Result<Self, SchedError> {
        let mut tenants = BTreeMap::new();
        for (t, w) in weights {
            if w == 0 {
                return Err(SchedError::InvalidConfig {
                    field: "WeightedFair::weight",
                    value: format!("{t} = 0"),
                    reason: "weights are at least 1",
                });
            }
            tenants.insert(
                t,
                TenantState {
                    weight: w,
                    vtime: 0.0,
                },
            );
        }
        if tenants.is_empty() {
            return Err(SchedError::InvalidConfig {
                field: "WeightedFair::weights",
                value: "none".into(),
                reason: "give at least one tenant",
            });
        }
        Ok(Self {
            tenants,
            clock: 0.0,
            heads: Vec::new(),
        })
    }

    /// A tenant's virtual time (device nanoseconds received per weight unit).
    pub fn virtual_time(&self, tenant: TenantId) -> Option<f64> {
        self.tenants.get(&tenant).map(|s| s.vtime)
    }

    fn charge(&mut self, tenant: TenantId, nanos: f64) {
        if let Some(s) = self.tenants.get_mut(&tenant) {
            s.vtime += nanos / f64::from(s.weight);
        }
    }
}

fn nanos(d: Duration) -> f64 {
    d.as_nanos() as f64
}

impl SchedulingPolicy for WeightedFair {
    fn name(&self) -> &'static str {
        "weighted-fair"
    }

    fn known_tenants(&self) -> Option<Vec<TenantId>> {
        Some(self.tenants.keys().copied().collect())
    }

    fn decide(&mut self, ctx: &PolicyContext<'_>) -> Choice {
        if ctx.free_streams == 0 {
            return Choice::WAIT;
        }
        // Oldest candidate per tenant (candidates are oldest first).
        self.heads.clear();
        for (i, c) in ctx.candidates.iter().enumerate() {
            if !self.heads.iter().any(|(t, _)| *t == c.tenant) {
                self.heads.push((c.tenant, i));
            }
        }
        let clock = self.clock;
        let start_tag = |t: &TenantId| self.tenants.get(t).map_or(clock, |s| s.vtime.max(clock));
        let best = self
            .heads
            .iter()
            .min_by(|a, b| {
                start_tag(&a.0)
                    .total_cmp(&start_tag(&b.0))
                    .then(a.0.cmp(&b.0))
            })
            .and_then(|&(_, i)| ctx.candidates.get(i));
        match best {
            Some(c) => Choice::Dispatch(c.id),
            None => Choice::WAIT,
        }
    }

    fn on_dispatch(&mut self, c: &Candidate, _stream: usize, _now: Instant) {
        if let Some(s) = self.tenants.get_mut(&c.tenant) {
            // Idle tenants resume at the clock: no banked credit.
            s.vtime = s.vtime.max(self.clock);
            self.clock = s.vtime;
        }
        self.charge(c.tenant, nanos(c.estimate));
    }

    fn on_complete(&mut self, fb: &Feedback) {
        if let Some(measured) = fb.device_time {
            self.charge(fb.tenant, nanos(measured) - nanos(fb.estimate));
        }
    }
}

// loom primitives exist only inside a loom model: plain unit tests are not loom models.
#[cfg(all(test, not(loom)))]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::policy::test_support::{cand, ctx};
    use crate::policy::CandidateQueue;

    /// Runs the policy on one stream over a backlog (every tenant always has work) and counts
    /// dispatches per tenant, feeding back `actual_ms` per tenant as measured time.
    fn share(
        weights: &[(u32, u32)],
        estimate_ms: u64,
        actual_ms: &[(u32, u64)],
        rounds: u64,
    ) -> Vec<u64> {
        let t = Instant::now();
        let mut p = WeightedFair::new(weights.iter().map(|&(t, w)| (TenantId(t), w))).unwrap();
        let mut next_id = 0;
        let mut q = CandidateQueue::new();
        for &(tenant, _) in weights {
            for _ in 0..2 {
                next_id += 1;
                q.push(cand(t, next_id, 0, None, tenant, estimate_ms))
                    .unwrap();
            }
        }
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..rounds {
            let Choice::Dispatch(id) = p.decide(&ctx(t, &q, 1, &[])) else {
                panic!("backlogged policy must dispatch");
            };
            let c = q.remove(id).unwrap();
            p.on_dispatch(&c, 0, t);
            let idx = weights.iter().position(|&(w, _)| w == c.tenant.0).unwrap();
            counts[idx] += 1;
            let actual = actual_ms
                .iter()
                .find(|(tn, _)| *tn == c.tenant.0)
                .map_or(estimate_ms, |&(_, a)| a);
            p.on_complete(&Feedback {
                id,
                model: c.model.clone(),
                tenant: c.tenant,
                stream: 0,
                estimate: c.estimate,
                device_time: Some(Duration::from_millis(actual)),
                service_time: Duration::from_millis(actual),
                succeeded: true,
            });
            next_id += 1;
            q.push(cand(t, next_id, 0, None, c.tenant.0, estimate_ms))
                .unwrap();
        }
        counts
    }

    #[test]
    fn dispatch_share_follows_weights() {
        let c = share(&[(1, 1), (2, 3)], 1, &[], 400);
        // Exact up to float rounding at ties.
        assert!(c[0].abs_diff(100) <= 2 && c[1].abs_diff(300) <= 2, "{c:?}");
    }

    #[test]
    fn measured_time_is_charged_not_the_estimate() {
        // Tenant 2 estimates 1 ms but runs 3 ms: equal weights must give equal device time,
        // so tenant 1 gets three dispatches per tenant 2 dispatch.
        let c = share(&[(1, 1), (2, 1)], 1, &[(2, 3)], 400);
        assert!(c[0].abs_diff(300) <= 2 && c[1].abs_diff(100) <= 2, "{c:?}");
    }

    #[test]
    fn zero_weight_and_empty_are_invalid() {
        assert!(WeightedFair::new([(TenantId(1), 0)]).is_err());
        assert!(WeightedFair::new(std::iter::empty()).is_err());
        assert_eq!(
            WeightedFair::new([(TenantId(4), 1)])
                .unwrap()
                .known_tenants(),
            Some(vec![TenantId(4)])
        );
    }
}
