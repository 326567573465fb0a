//! The context state machine, as a pure transition function and an atomic cell.
//!
//! ```text
//!            Prepared           Start             Succeed
//!  Created ──────────▶ Ready ─────────▶ Running ─────────▶ Ready
//!                        ▲                 │ Fail
//!                        │ Reset           ▼
//!                        └──────────── Faulted ◀── DeviceLost (from Created/Ready/Running)
//!  any ── Destroy ──▶ Destroyed (terminal)
//! ```

use std::fmt;

use aegis_cuda::sync::{AtomicU64, Ordering};

/// Where a context is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ContextState {
    /// Built, its model not yet prepared on the device.
    Created,
    /// Idle, able to run.
    Ready,
    /// Running one inference.
    Running,
    /// An inference failed (or the device was lost); nothing runs until a reset.
    Faulted,
    /// Dropped; terminal.
    Destroyed,
}

impl ContextState {
    /// Every state, for exhaustive tests.
    pub const ALL: [ContextState; 5] = [
        Self::Created,
        Self::Ready,
        Self::Running,
        Self::Faulted,
        Self::Destroyed,
    ];

    fn to_raw(self) -> usize {
        match self {
            Self::Created => 0,
            Self::Ready => 1,
            Self::Running => 2,
            Self::Faulted => 3,
            Self::Destroyed => 4,
        }
    }

    fn from_raw(raw: usize) -> Self {
        match raw {
            0 => Self::Created,
            1 => Self::Ready,
            2 => Self::Running,
            3 => Self::Faulted,
            // Only values written by `to_raw` are ever stored.
            _ => Self::Destroyed,
        }
    }
}

impl fmt::Display for ContextState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What happens to a context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum ContextEvent {
    /// Its model was prepared on the device.
    Prepared,
    /// An inference starts.
    Start,
    /// The running inference succeeded.
    Succeed,
    /// The running inference failed.
    Fail,
    /// The fault is cleared (after the cause was dealt with).
    Reset,
    /// The device hit a fatal (sticky) error: every context on it is faulted.
    DeviceLost,
    /// The context is dropped.
    Destroy,
}

impl ContextEvent {
    /// Every event, for exhaustive tests.
    pub const ALL: [ContextEvent; 7] = [
        Self::Prepared,
        Self::Start,
        Self::Succeed,
        Self::Fail,
        Self::Reset,
        Self::DeviceLost,
        Self::Destroy,
    ];
}

impl fmt::Display for ContextEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The transition table: the next state, or `None` when `event` is illegal in `state`.
pub fn transition(state: ContextState, event: ContextEvent) -> Option<ContextState> {
    use ContextEvent as E;
    use ContextState as S;
    match (state, event) {
        (S::Destroyed, _) => None,
        (_, E::Destroy) => Some(S::Destroyed),
        (S::Created, E::Prepared) => Some(S::Ready),
        (S::Ready, E::Start) => Some(S::Running),
        (S::Running, E::Succeed) => Some(S::Ready),
        (S::Running, E::Fail) => Some(S::Faulted),
        (S::Faulted, E::Reset) => Some(S::Ready),
        (S::Created | S::Ready | S::Running, E::DeviceLost) => Some(S::Faulted),
        _ => None,
    }
}

/// An illegal transition: what was attempted from which state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state the cell was in.
    pub from: ContextState,
    /// The event refused.
    pub event: ContextEvent,
}

/// A ticket for one run: the epoch at which `Start` was applied. `Succeed`/`Fail` are only
/// accepted with the ticket of the current run, so a stale run (one that outlived a device
/// loss and a reset) can never move a newer run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RunTicket(u64);

/// Why a ticketed transition was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefusal {
    /// The event is illegal in the current state.
    Illegal(IllegalTransition),
    /// The state is right but belongs to another run (the ticket is stale).
    Stale {
        /// The current state.
        state: ContextState,
    },
}

const STATE_BITS: u64 = 3;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

fn pack(state: ContextState, epoch: u64) -> u64 {
    (epoch << STATE_BITS) | state.to_raw() as u64
}

fn unpack(raw: u64) -> (ContextState, u64) {
    (
        ContextState::from_raw((raw & STATE_MASK) as usize),
        raw >> STATE_BITS,
    )
}

/// The state of one context, changed only through [`transition`], atomically: two threads
/// racing to `Start` see exactly one succeed. The state and a run epoch live in one atomic
/// word, so "is this still my run?" and "move the state" are one compare-and-swap.
#[derive(Debug)]
pub struct StateCell(AtomicU64);

impl StateCell {
    /// A cell in `state`.
    pub fn new(state: ContextState) -> Self {
        Self(AtomicU64::new(pack(state, 0)))
    }

    /// The current state.
    pub fn get(&self) -> ContextState {
        unpack(self.0.load(Ordering::Acquire)).0
    }

    fn cas_loop(
        &self,
        event: ContextEvent,
        ticket: Option<RunTicket>,
    ) -> Result<(ContextState, ContextState, u64), TicketRefusal> {
        let mut raw = self.0.load(Ordering::Acquire);
        loop {
            let (from, epoch) = unpack(raw);
            let Some(to) = transition(from, event) else {
                return Err(TicketRefusal::Illegal(IllegalTransition { from, event }));
            };
            if let Some(t) = ticket {
                if t.0 != epoch {
                    return Err(TicketRefusal::Stale { state: from });
                }
            }
            // Each Start opens a new epoch (its ticket); the epoch bits wrap after 2^61 runs.
            let new_epoch = if event == ContextEvent::Start {
                epoch.wrapping_add(1) & (u64::MAX >> STATE_BITS)
            } else {
                epoch
            };
            match self.0.compare_exchange(
                raw,
                pack(to, new_epoch),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok((from, to, new_epoch)),
                Err(seen) => raw = seen,
            }
        }
    }

    /// Applies `event`; returns `(from, to)`. `Succeed` and `Fail` need a ticket: use
    /// [`Self::finish`].
    ///
    /// # Errors
    /// [`IllegalTransition`] when the table refuses the event in the current state (or it is
    /// `Succeed`/`Fail`, which need a ticket); the state is unchanged then.
    pub fn apply(
        &self,
        event: ContextEvent,
    ) -> Result<(ContextState, ContextState), IllegalTransition> {
        if matches!(event, ContextEvent::Succeed | ContextEvent::Fail) {
            return Err(IllegalTransition {
                from: self.get(),
                event,
            });
        }
        match self.cas_loop(event, None) {
            Ok((from, to, _)) => Ok((from, to)),
            Err(TicketRefusal::Illegal(i)) => Err(i),
            // Unreachable without a ticket; report it as illegal rather than panic.
            Err(TicketRefusal::Stale { state }) => Err(IllegalTransition { from: state, event }),
        }
    }

    /// `Start`: Ready -> Running, returning the run's ticket.
    ///
    /// # Errors
    /// [`IllegalTransition`] when not Ready.
    pub fn start(&self) -> Result<RunTicket, IllegalTransition> {
        match self.cas_loop(ContextEvent::Start, None) {
            Ok((_, _, epoch)) => Ok(RunTicket(epoch)),
            Err(TicketRefusal::Illegal(i)) => Err(i),
            Err(TicketRefusal::Stale { state }) => Err(IllegalTransition {
                from: state,
                event: ContextEvent::Start,
            }),
        }
    }

    /// Ends the run holding `ticket` with `Succeed` or `Fail`; returns `(from, to)`.
    ///
    /// # Errors
    /// [`TicketRefusal`] when the event is illegal now or the ticket is not the current run's
    /// (the device was lost and the context reset meanwhile); the state is unchanged then.
    pub fn finish(
        &self,
        ticket: RunTicket,
        event: ContextEvent,
    ) -> Result<(ContextState, ContextState), TicketRefusal> {
        if !matches!(event, ContextEvent::Succeed | ContextEvent::Fail) {
            return Err(TicketRefusal::Illegal(IllegalTransition {
                from: self.get(),
                event,
            }));
        }
        self.cas_loop(event, Some(ticket))
            .map(|(from, to, _)| (from, to))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use ContextEvent as E;
    use ContextState as S;

    /// The whole table, written out independently of `transition`'s match.
    const LEGAL: [(S, E, S); 12] = [
        (S::Created, E::Prepared, S::Ready),
        (S::Created, E::DeviceLost, S::Faulted),
        (S::Created, E::Destroy, S::Destroyed),
        (S::Ready, E::Start, S::Running),
        (S::Ready, E::DeviceLost, S::Faulted),
        (S::Ready, E::Destroy, S::Destroyed),
        (S::Running, E::Succeed, S::Ready),
        (S::Running, E::Fail, S::Faulted),
        (S::Running, E::DeviceLost, S::Faulted),
        (S::Running, E::Destroy, S::Destroyed),
        (S::Faulted, E::Reset, S::Ready),
        (S::Faulted, E::Destroy, S::Destroyed),
    ];

    fn expected(s: S, e: E) -> Option<S> {
        LEGAL
            .iter()
            .find(|(a, b, _)| *a == s && *b == e)
            .map(|(_, _, to)| *to)
    }

    /// A cell in `s` reached through real transitions, plus the ticket of its last run
    /// (current when `s` is Running).
    fn cell_in(s: S) -> (StateCell, RunTicket) {
        let c = StateCell::new(S::Created);
        c.apply(E::Prepared).unwrap();
        let t = c.start().unwrap();
        match s {
            S::Created => return (StateCell::new(S::Created), t),
            S::Running => {}
            S::Ready => {
                c.finish(t, E::Succeed).unwrap();
            }
            S::Faulted => {
                c.finish(t, E::Fail).unwrap();
            }
            S::Destroyed => {
                c.apply(E::Destroy).unwrap();
            }
        }
        assert_eq!(c.get(), s);
        (c, t)
    }

    /// Applies `e` the way the context does (tickets for Succeed/Fail).
    fn fire(c: &StateCell, t: RunTicket, e: E) -> Result<(S, S), IllegalTransition> {
        match e {
            E::Succeed | E::Fail => c.finish(t, e).map_err(|r| match r {
                TicketRefusal::Illegal(i) => i,
                TicketRefusal::Stale { state } => panic!("current ticket stale in {state}"),
            }),
            E::Start => c.start().map(|_| (S::Ready, S::Running)),
            _ => c.apply(e),
        }
    }

    #[test]
    fn every_state_event_pair() {
        let mut legal = 0;
        for s in S::ALL {
            for e in E::ALL {
                let want = expected(s, e);
                assert_eq!(transition(s, e), want, "table: ({s}, {e})");
                let (cell, ticket) = cell_in(s);
                match (fire(&cell, ticket, e), want) {
                    (Ok((from, to)), Some(w)) => {
                        legal += 1;
                        assert_eq!((from, to), (s, w), "({s}, {e})");
                        assert_eq!(cell.get(), w);
                    }
                    (Err(ill), None) => {
                        assert_eq!(ill, IllegalTransition { from: s, event: e });
                        assert_eq!(cell.get(), s, "a refused event must not change state");
                    }
                    (got, want) => panic!("({s}, {e}): got {got:?}, want {want:?}"),
                }
            }
        }
        assert_eq!(legal, LEGAL.len());
    }

    #[test]
    fn destroyed_is_terminal() {
        for e in E::ALL {
            assert_eq!(transition(S::Destroyed, e), None);
        }
    }

    #[test]
    fn stale_ticket_cannot_finish_a_newer_run() {
        let c = StateCell::new(S::Ready);
        let old = c.start().unwrap();
        c.apply(E::DeviceLost).unwrap();
        c.apply(E::Reset).unwrap();
        let new = c.start().unwrap();
        assert_ne!(old, new);
        assert_eq!(
            c.finish(old, E::Succeed),
            Err(TicketRefusal::Stale { state: S::Running })
        );
        assert_eq!(c.get(), S::Running);
        assert_eq!(c.finish(new, E::Succeed), Ok((S::Running, S::Ready)));
    }

    #[test]
    fn succeed_and_fail_need_a_ticket() {
        let c = StateCell::new(S::Ready);
        c.start().unwrap();
        assert!(c.apply(E::Succeed).is_err());
        assert!(c.apply(E::Fail).is_err());
        assert!(c.finish(RunTicket(99), E::Reset).is_err());
        assert_eq!(c.get(), S::Running);
    }

    #[test]
    fn raw_round_trip() {
        for s in S::ALL {
            for epoch in [0, 1, u64::MAX >> STATE_BITS] {
                assert_eq!(unpack(pack(s, epoch)), (s, epoch));
            }
        }
    }
}
