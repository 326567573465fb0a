//! loom model of the host compute team's job protocol (preemption bound 2): every piece runs
//! exactly once, the caller returns only after every claimed piece finished, and a helper
//! that arrives late never runs a piece of a job its caller has already retracted, even when
//! the next job sits at the same address. Run: `cargo xtask loom`.
#![cfg(loom)]

use aegis_cuda::sync::{Arc, AtomicBool, AtomicUsize, Ordering};
use aegis_cuda::HostTeam;
use std::time::Duration;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

/// One call on a team of one helper; piece counts read back Relaxed on purpose: the
/// caller's return must itself order every piece's writes before it.
fn one_call(team: &HostTeam, pieces: usize, returned: &AtomicBool) {
    let counts: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
    team.parallel_for(pieces, 2, &|piece, slot| {
        assert!(slot < 2);
        assert!(
            !returned.load(Ordering::Relaxed),
            "piece ran after its caller returned"
        );
        counts[piece].fetch_add(1, Ordering::Relaxed);
    });
    for c in &counts {
        assert_eq!(c.load(Ordering::Relaxed), 1);
    }
}

#[test]
fn each_piece_runs_once_and_before_the_caller_returns() {
    model(|| {
        let team = HostTeam::new(1, Duration::ZERO);
        let returned = AtomicBool::new(false);
        one_call(&team, 2, &returned);
        returned.store(true, Ordering::Relaxed);
        drop(team);
    });
}

#[test]
fn a_late_helper_never_touches_a_retracted_job() {
    model(|| {
        let team = HostTeam::new(1, Duration::ZERO);
        // Two calls from the same frame: the second job sits where the first one was, so a
        // helper still holding the first job's pointer would run the second job's closure
        // with the first's (finished) counters, or a piece twice.
        for _ in 0..2 {
            let returned = AtomicBool::new(false);
            one_call(&team, 2, &returned);
            returned.store(true, Ordering::Relaxed);
        }
        drop(team);
    });
}

#[test]
fn two_callers_share_one_helper() {
    model(|| {
        let team = Arc::new(HostTeam::new(1, Duration::ZERO));
        let t2 = Arc::clone(&team);
        let other = loom::thread::spawn(move || {
            let returned = AtomicBool::new(false);
            one_call(&t2, 2, &returned);
            returned.store(true, Ordering::Relaxed);
        });
        let returned = AtomicBool::new(false);
        one_call(&team, 2, &returned);
        returned.store(true, Ordering::Relaxed);
        other.join().unwrap();
    });
}

#[test]
fn a_hold_around_a_call_wakes_the_helper_and_ends() {
    model(|| {
        // The hold's wake-up of a parked helper races the job's publication and the
        // helper's own parking; the call must still finish and the team still stop.
        let team = HostTeam::new(1, Duration::ZERO);
        let hold = team.hold();
        let returned = AtomicBool::new(false);
        one_call(&team, 2, &returned);
        returned.store(true, Ordering::Relaxed);
        drop(hold);
        drop(team);
    });
}
