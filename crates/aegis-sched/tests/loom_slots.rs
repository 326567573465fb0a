//! loom model of stream acquire/release (`SlotSet`, the `StreamPool`'s free set): concurrent
//! acquirers never hold the same stream at once, and every release returns it.
//! Run: `cargo xtask loom`.
#![cfg(loom)]

use aegis_cuda::sync::{thread, Arc, AtomicBool, Ordering};
use aegis_sched::primitives::SlotSet;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

#[test]
fn a_slot_is_never_held_twice() {
    model(|| {
        let slots = Arc::new(SlotSet::new(2));
        let held: Arc<Vec<AtomicBool>> = Arc::new((0..2).map(|_| AtomicBool::new(false)).collect());
        let ts: Vec<_> = (0..3)
            .map(|i| {
                let (slots, held) = (slots.clone(), held.clone());
                thread::spawn(move || {
                    // Thread 0 prefers slot 1 first: mixed preference orders race too.
                    let got = if i == 0 {
                        slots.try_acquire_in(&[1, 0])
                    } else {
                        slots.try_acquire()
                    };
                    if let Some(s) = got {
                        assert!(
                            !held[s].swap(true, Ordering::SeqCst),
                            "slot {s} handed out twice"
                        );
                        held[s].store(false, Ordering::SeqCst);
                        assert!(slots.release(s));
                    }
                    got.is_some()
                })
            })
            .collect();
        let acquired = ts
            .into_iter()
            .filter(|_| true)
            .map(|t| t.join().unwrap())
            .filter(|&b| b)
            .count();
        assert!(
            acquired >= 2,
            "with 2 slots at least two of three acquirers succeed"
        );
        assert_eq!(slots.free_count(), 2);
        assert!(!slots.release(0), "double release is refused");
    });
}
