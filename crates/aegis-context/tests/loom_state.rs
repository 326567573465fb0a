//! Loom model of the context state machine: racing starts, and a device loss racing the end
//! of a run. Run with `RUSTFLAGS="--cfg loom" cargo test -p aegis-context --test loom_state
//! --release`.
#![cfg(loom)]

use aegis_context::state::{StateCell, TicketRefusal};
use aegis_context::{ContextEvent, ContextState};
use std::sync::Arc;

use aegis_cuda::sync::thread;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn exactly_one_of_two_racing_starts_wins() {
    model(|| {
        let cell = Arc::new(StateCell::new(ContextState::Ready));
        let spawn = || {
            let c = Arc::clone(&cell);
            thread::spawn(move || c.start().ok())
        };
        let (t1, t2) = (spawn(), spawn());
        let (a, b) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(a.is_some() ^ b.is_some());
        assert_eq!(cell.get(), ContextState::Running);
        let ticket = a.or(b).unwrap();
        assert!(cell.finish(ticket, ContextEvent::Succeed).is_ok());
        assert_eq!(cell.get(), ContextState::Ready);
    });
}

#[test]
fn device_loss_racing_a_run_always_ends_faulted() {
    model(|| {
        let cell = Arc::new(StateCell::new(ContextState::Ready));
        let ticket = cell.start().unwrap();
        let c1 = Arc::clone(&cell);
        let runner = thread::spawn(move || c1.finish(ticket, ContextEvent::Succeed));
        let c2 = Arc::clone(&cell);
        let lost = thread::spawn(move || c2.apply(ContextEvent::DeviceLost).is_ok());
        let finished = runner.join().unwrap();
        assert!(
            lost.join().unwrap(),
            "DeviceLost is legal from Ready and Running"
        );
        // Either order ends Faulted; a run refused after the loss sees Faulted.
        assert_eq!(cell.get(), ContextState::Faulted);
        if let Err(r) = finished {
            assert!(matches!(r, TicketRefusal::Illegal(i) if i.from == ContextState::Faulted));
        }
    });
}

#[test]
fn stale_run_cannot_end_a_new_run_after_reset() {
    model(|| {
        let cell = Arc::new(StateCell::new(ContextState::Ready));
        let old = cell.start().unwrap();
        cell.apply(ContextEvent::DeviceLost).unwrap();
        cell.apply(ContextEvent::Reset).unwrap();
        let c1 = Arc::clone(&cell);
        let stale = thread::spawn(move || c1.finish(old, ContextEvent::Fail).is_err());
        let c2 = Arc::clone(&cell);
        let fresh = thread::spawn(move || {
            let t = c2.start().unwrap();
            c2.finish(t, ContextEvent::Succeed).is_ok()
        });
        assert!(stale.join().unwrap(), "the stale ticket is always refused");
        assert!(fresh.join().unwrap());
        assert_eq!(cell.get(), ContextState::Ready);
    });
}
