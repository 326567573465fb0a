//! loom model of the submission handoff (`BoundedInbox`): concurrent producers against a
//! bounded queue, a consumer that sleeps when idle, and a stop. Every accepted item reaches the
//! consumer exactly once and in sequence order, refusals hand the item back, and no wakeup is
//! lost (loom reports a deadlock if the consumer could sleep with work pending).
//! Run: `cargo xtask loom`.
#![cfg(loom)]

use std::collections::VecDeque;

use aegis_cuda::sync::{thread, Arc};
use aegis_sched::primitives::{BoundedInbox, PushRefusal, StopMode};

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(2);
    b.check(f);
}

type Inbox = BoundedInbox<(u64, u32), u32>;

/// Consumes until it has seen the stop, releasing each submission at once; returns what it got.
fn consume(inbox: &Inbox) -> (Vec<(u64, u32)>, Vec<u32>) {
    let (mut subs, mut comps) = (VecDeque::new(), Vec::new());
    let (mut got, mut done) = (Vec::new(), Vec::new());
    let mut released = 0;
    loop {
        let t = inbox.take_or_wait(released, None, &mut subs, &mut comps);
        released = subs.len();
        got.extend(subs.drain(..));
        done.append(&mut comps);
        if t.stop.is_some() {
            // The take that saw the stop took everything accepted before it.
            return (got, done);
        }
    }
}

#[test]
fn accepted_submissions_arrive_exactly_once_in_order() {
    model(|| {
        let inbox: Arc<Inbox> = Arc::new(BoundedInbox::new(1));
        let consumer = {
            let inbox = inbox.clone();
            thread::spawn(move || consume(&inbox))
        };
        let producers: Vec<_> = (0..2u32)
            .map(|p| {
                let inbox = inbox.clone();
                thread::spawn(move || match inbox.try_push(p, |v, seq| (seq, v)) {
                    Ok(seq) => Some((seq, p)),
                    Err((v, refusal)) => {
                        assert_eq!(v, p, "a refused item comes back untouched");
                        assert_eq!(refusal, PushRefusal::Full { capacity: 1 });
                        None
                    }
                })
            })
            .collect();
        let mut accepted: Vec<(u64, u32)> = producers
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        inbox.close(StopMode::Drain);
        let (got, _) = consumer.join().unwrap();
        accepted.sort_unstable();
        assert!(!accepted.is_empty());
        assert_eq!(
            got, accepted,
            "exactly the accepted items, in sequence order"
        );
        assert_eq!(
            inbox.try_push(9, |v, s| (s, v)).unwrap_err().1,
            PushRefusal::Closed
        );
    });
}

#[test]
fn completions_are_accepted_after_close_and_wake_the_consumer() {
    model(|| {
        let inbox: Arc<Inbox> = Arc::new(BoundedInbox::new(4));
        inbox.try_push(7, |v, s| (s, v)).unwrap();
        let worker = {
            let inbox = inbox.clone();
            thread::spawn(move || inbox.push_completion(42))
        };
        let stopper = {
            let inbox = inbox.clone();
            thread::spawn(move || inbox.close(StopMode::Cancel))
        };
        // The consumer keeps going until it has both the stop and the completion.
        let (mut subs, mut comps) = (VecDeque::new(), Vec::new());
        let (mut stop, mut n_subs) = (None, 0);
        while stop.is_none() || comps.is_empty() {
            let t = inbox.take_or_wait(0, None, &mut subs, &mut comps);
            stop = stop.or(t.stop);
            n_subs += t.submissions;
        }
        worker.join().unwrap();
        stopper.join().unwrap();
        assert_eq!(
            (n_subs, comps.as_slice(), stop),
            (1, &[42][..], Some(StopMode::Cancel))
        );
    });
}

#[test]
fn releasing_makes_room_for_a_blocked_producer() {
    model(|| {
        let inbox: Arc<Inbox> = Arc::new(BoundedInbox::new(1));
        inbox.try_push(0, |v, s| (s, v)).unwrap();
        let producer = {
            let inbox = inbox.clone();
            thread::spawn(move || {
                // Retry until the consumer releases the place (bounded: loom explores both orders).
                let mut v = 1;
                loop {
                    match inbox.try_push(v, |v, s| (s, v)) {
                        Ok(seq) => return seq,
                        Err((back, PushRefusal::Full { .. })) => {
                            v = back;
                            thread::yield_now();
                        }
                        Err((_, PushRefusal::Closed)) => unreachable!("never closed"),
                    }
                }
            })
        };
        let (mut subs, mut comps) = (VecDeque::new(), Vec::new());
        inbox.take_or_wait(0, None, &mut subs, &mut comps);
        assert_eq!(subs.pop_front(), Some((0, 0)));
        // Released: the producer can get in now.
        inbox.take_or_wait(1, None, &mut subs, &mut comps);
        let seq = producer.join().unwrap();
        assert_eq!(seq, 1);
        assert_eq!(inbox.queued(), 1);
    });
}

/// The scheduler's submit protocol: producers push quietly and poke only when the consumer
/// was asleep; the consumer waits with `wait_news` and takes with `take`. It is never left
/// asleep with a submission pending (loom reports a deadlock otherwise), and gets each one
/// exactly once, in sequence order.
#[test]
fn quiet_push_with_poke_never_leaves_the_consumer_asleep() {
    model(|| {
        let inbox: Arc<Inbox> = Arc::new(BoundedInbox::new(4));
        let producers: Vec<_> = (1..=2u32)
            .map(|v| {
                let inbox = inbox.clone();
                thread::spawn(move || {
                    let (_, asleep) = inbox.try_push_quiet(v, |v, s| (s, v)).unwrap();
                    if asleep {
                        inbox.poke();
                    }
                })
            })
            .collect();
        let (mut subs, mut comps) = (VecDeque::new(), Vec::new());
        let mut seen = Vec::new();
        while seen.len() < 2 {
            inbox.wait_news(None);
            inbox.take(0, &mut subs, &mut comps);
            seen.extend(subs.drain(..));
        }
        for p in producers {
            p.join().unwrap();
        }
        let seqs: Vec<u64> = seen.iter().map(|s| s.0).collect();
        assert_eq!(seqs, vec![0, 1]);
        let mut vals: Vec<u32> = seen.iter().map(|s| s.1).collect();
        vals.sort_unstable();
        assert_eq!(vals, vec![1, 2]);
    });
}
