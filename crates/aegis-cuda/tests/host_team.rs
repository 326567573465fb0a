//! The host compute team: every piece runs exactly once, slots are unique among the threads of
//! one call, concurrent and nested callers finish, panics reach the caller, idle helpers
//! park, and a hold keeps them from parking until it is dropped.

use aegis_cuda::{host_parallel_for, host_team_threads, HostTeam};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The body of one call: `f(piece, slot)`.
type Body<'a> = &'a (dyn Fn(usize, usize) + Sync);
/// A way to run one call (the global team or a local one).
type Runner<'a> = &'a dyn Fn(usize, usize, Body<'_>);

/// Runs one call and checks that each piece ran once and that no two threads shared a slot
/// at the same time.
fn check_call(run: Runner<'_>, pieces: usize, threads: usize) {
    let counts: Vec<AtomicUsize> = (0..pieces).map(|_| AtomicUsize::new(0)).collect();
    let busy: Vec<AtomicBool> = (0..threads.max(1))
        .map(|_| AtomicBool::new(false))
        .collect();
    run(pieces, threads, &|piece, slot| {
        assert!(slot < threads.max(1), "slot {slot} of {threads}");
        assert!(
            !busy[slot].swap(true, Ordering::AcqRel),
            "slot {slot} used twice at once"
        );
        counts[piece].fetch_add(1, Ordering::Relaxed);
        std::hint::black_box((0..200).sum::<usize>());
        busy[slot].store(false, Ordering::Release);
    });
    for (i, c) in counts.iter().enumerate() {
        assert_eq!(
            c.load(Ordering::Relaxed),
            1,
            "piece {i} of {pieces} (threads {threads})"
        );
    }
}

#[test]
fn every_piece_runs_exactly_once() {
    let global = |p, t, f: Body<'_>| host_parallel_for(p, t, f);
    let team = HostTeam::new(3, Duration::from_micros(50));
    let local = |p, t, f: Body<'_>| team.parallel_for(p, t, f);
    for run in [&global as Runner<'_>, &local] {
        for pieces in [0, 1, 2, 3, 7, 64, 1000] {
            for threads in [0, 1, 2, 3, 4, 16] {
                check_call(run, pieces, threads);
            }
        }
    }
    assert!(host_team_threads() >= 1);
    assert_eq!(team.threads(), 4);
}

#[test]
fn a_team_without_helpers_runs_everything_on_the_caller() {
    let team = HostTeam::new(0, Duration::ZERO);
    assert_eq!(team.threads(), 1);
    let me = std::thread::current().id();
    let n = AtomicUsize::new(0);
    team.parallel_for(10, 4, &|_, slot| {
        assert_eq!(slot, 0);
        assert_eq!(std::thread::current().id(), me);
        n.fetch_add(1, Ordering::Relaxed);
    });
    assert_eq!(n.load(Ordering::Relaxed), 10);
}

/// Runs 2-piece calls in which piece 0 holds its thread (up to 200 ms) until piece 1 has run,
/// until a helper ran piece 1 (only a helper can, while the caller holds piece 0) or 50
/// calls passed; returns whether a helper did.
fn a_helper_takes_a_piece(team: &HostTeam) -> bool {
    for _ in 0..50 {
        let other = AtomicBool::new(false);
        let helped = AtomicBool::new(false);
        team.parallel_for(2, 2, &|piece, slot| {
            if piece == 1 {
                helped.store(slot == 1, Ordering::Relaxed);
                other.store(true, Ordering::Release);
            } else {
                let until = Instant::now() + Duration::from_millis(200);
                while !other.load(Ordering::Acquire) && Instant::now() < until {
                    std::thread::yield_now();
                }
            }
        });
        if helped.load(Ordering::Relaxed) {
            return true;
        }
    }
    false
}

#[test]
fn helpers_do_take_pieces() {
    let team = HostTeam::new(1, Duration::from_micros(100));
    assert!(a_helper_takes_a_piece(&team), "no helper ever ran a piece");
}

#[test]
fn concurrent_callers_each_get_all_their_pieces() {
    let team = Arc::new(HostTeam::new(2, Duration::from_micros(50)));
    let callers: Vec<_> = (0..4)
        .map(|c| {
            let team = Arc::clone(&team);
            std::thread::spawn(move || {
                for i in 0..200 {
                    let pieces = 1 + (i * 7 + c) % 23;
                    let threads = 1 + (i + c) % 4;
                    check_call(&|p, t, f| team.parallel_for(p, t, f), pieces, threads);
                    check_call(&|p, t, f| host_parallel_for(p, t, f), pieces, threads);
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
}

#[test]
fn nested_calls_finish() {
    let team = HostTeam::new(2, Duration::from_micros(50));
    let total = AtomicUsize::new(0);
    team.parallel_for(8, 3, &|_, _| {
        team.parallel_for(8, 3, &|_, _| {
            host_parallel_for(4, 2, &|_, _| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
    });
    assert_eq!(total.load(Ordering::Relaxed), 8 * 8 * 4);
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[test]
fn a_panic_on_the_caller_is_re_raised_after_the_helpers_leave() {
    let team = HostTeam::new(1, Duration::from_micros(50));
    let ran = AtomicUsize::new(0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        team.parallel_for(4, 2, &|piece, slot| {
            ran.fetch_add(1, Ordering::Relaxed);
            if piece == 0 && slot == 0 {
                panic!("caller piece");
            }
        })
    }));
    assert_eq!(panic_text(&*r.unwrap_err()), "caller piece");
    // The team still works afterwards.
    check_call(&|p, t, f| team.parallel_for(p, t, f), 16, 2);
}

#[test]
fn a_panic_on_a_helper_is_re_raised_on_the_caller_and_the_helper_survives() {
    let team = HostTeam::new(1, Duration::from_micros(100));
    let mut seen = false;
    for _ in 0..50 {
        let other = AtomicBool::new(false);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            team.parallel_for(2, 2, &|piece, slot| {
                if piece == 1 {
                    other.store(true, Ordering::Release);
                    if slot == 1 {
                        panic!("helper piece");
                    }
                } else {
                    let until = Instant::now() + Duration::from_millis(200);
                    while !other.load(Ordering::Acquire) && Instant::now() < until {
                        std::thread::yield_now();
                    }
                }
            })
        }));
        if let Err(p) = r {
            assert_eq!(panic_text(&*p), "helper piece");
            seen = true;
            break;
        }
    }
    assert!(seen, "the helper never ran the panicking piece");
    // The helper is still alive and still takes pieces.
    assert!(a_helper_takes_a_piece(&team), "helper gone after a panic");
}

#[cfg(target_os = "linux")]
fn thread_cpu_ns(tid: &str) -> Option<u64> {
    let st = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    st.split_whitespace().next()?.parse().ok()
}

/// After a burst of jobs a helper may poll for its linger window, then must park: a helper
/// that kept polling would use ~100 ms of CPU over the 100 ms sleep.
#[cfg(target_os = "linux")]
#[test]
fn idle_helpers_park_after_their_linger_window() {
    let linger = Duration::from_micros(100);
    let team = HostTeam::new(1, linger);
    let tid = Mutex::new(String::new());
    for _ in 0..200 {
        let other = AtomicBool::new(false);
        team.parallel_for(2, 2, &|piece, slot| {
            if slot == 1 {
                let link = std::fs::read_link("/proc/thread-self").unwrap_or_default();
                *tid.lock().unwrap() = link
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
            }
            if piece == 1 {
                other.store(true, Ordering::Release);
            } else {
                let until = Instant::now() + Duration::from_millis(20);
                while !other.load(Ordering::Acquire) && Instant::now() < until {
                    std::thread::yield_now();
                }
            }
        });
    }
    let tid = tid.lock().unwrap().clone();
    assert!(!tid.is_empty(), "the helper never ran a piece");
    std::thread::sleep(linger + Duration::from_millis(20));
    let Some(before) = thread_cpu_ns(&tid) else {
        panic!("helper thread '{tid}' not found in /proc/self/task");
    };
    std::thread::sleep(Duration::from_millis(100));
    let after = thread_cpu_ns(&tid).expect("helper still alive");
    let burned = Duration::from_nanos(after.saturating_sub(before));
    assert!(
        burned < Duration::from_millis(10),
        "idle helper used {burned:?} of CPU in 100 ms"
    );
}

/// Waits (up to 5 s) until exactly `want` of `team`'s helpers are parked.
fn wait_parked(team: &HostTeam, want: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while team.parked_helpers() != want {
        assert!(
            Instant::now() < until,
            "{} helpers parked, expected {want}",
            team.parked_helpers()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A hold wakes parked helpers and keeps them from parking through many linger windows
/// (jobs still run under it, holds nest); once every hold is dropped they park again.
#[test]
fn a_hold_keeps_helpers_awake_until_it_is_dropped() {
    let linger = Duration::from_micros(100);
    let team = HostTeam::new(2, linger);
    wait_parked(&team, 2);
    {
        let _hold = team.hold();
        wait_parked(&team, 0);
        let _nested = team.hold();
        for _ in 0..20 {
            std::thread::sleep(linger * 2);
            assert_eq!(team.parked_helpers(), 0, "a helper parked under a hold");
        }
        check_call(&|p, t, f| team.parallel_for(p, t, f), 64, 3);
    }
    wait_parked(&team, 2);
}

/// The process-wide hold is only taken for more than one thread.
#[test]
fn the_global_hold_is_taken_only_for_several_threads() {
    assert!(aegis_cuda::host_team_hold(1).is_none());
    assert!(aegis_cuda::host_team_hold(0).is_none());
    let held = aegis_cuda::host_team_hold(2);
    assert_eq!(held.is_some(), host_team_threads() > 1);
}
