//! loom model of exactly-once completion (`CompletionCell`, behind every `RequestHandle`):
//! racing completers (e.g. the loop and a cancellation path) — only the first wins, the
//! waiter gets exactly that value once, and never hangs. Run: `cargo xtask loom`.
#![cfg(loom)]

use aegis_cuda::sync::{thread, Arc};
use aegis_sched::primitives::CompletionCell;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

#[test]
fn first_completion_wins_and_is_taken_once() {
    model(|| {
        let cell: Arc<CompletionCell<u32>> = Arc::new(CompletionCell::new());
        let completers: Vec<_> = (1..=2u32)
            .map(|v| {
                let cell = cell.clone();
                thread::spawn(move || cell.complete(v).is_ok())
            })
            .collect();
        let got = cell.wait().expect("completed value");
        let wins: Vec<bool> = completers.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(
            wins.iter().filter(|&&w| w).count(),
            1,
            "exactly one completion accepted"
        );
        let winner = if wins[0] { 1 } else { 2 };
        assert_eq!(got, winner);
        assert_eq!(cell.try_take(), None, "taken once");
        assert!(cell.is_complete());
    });
}
