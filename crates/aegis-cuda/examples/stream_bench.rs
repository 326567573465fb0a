//! Micro-benchmark of the host backend: enqueue→run latency, enqueue throughput and the
//! latency of an event wait across streams, each beside a peer measured in the same process
//! (a bare `std::sync::mpsc` hop to a worker thread: the floor for any thread handoff).
//!
//! Run: `cargo xtask bench stream` (or `cargo run --release -p aegis-cuda --example stream_bench`).

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aegis_cuda::{Device, Event, Stream, StreamPriority};

fn stats(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99))
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let d = Device::host();
    let a = Stream::new(&d, StreamPriority::NORMAL).unwrap();
    let b = Stream::new(&d, StreamPriority::NORMAL).unwrap();

    // 1. enqueue→run latency: back to back (the worker still lingering after the previous
    // probe), then on a parked worker (each probe well after the linger window).
    let lat = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let probe = |gap: Option<Duration>, count: usize| {
        for _ in 0..count {
            if let Some(g) = gap {
                std::thread::sleep(g);
            }
            let t0 = Instant::now();
            let l = Arc::clone(&lat);
            a.enqueue_host("probe", move || {
                l.lock().unwrap().push(t0.elapsed());
                Ok(())
            })
            .unwrap();
            a.synchronize().unwrap();
        }
        stats(std::mem::take(&mut *lat.lock().unwrap()))
    };
    let (med, p99) = probe(None, n);
    let parked_n = (n / 20).max(1);
    let (pk_med, pk_p99) = probe(Some(Duration::from_micros(300)), parked_n);

    // Peer: one mpsc hop to a dedicated thread.
    let (tx, rx) = mpsc::channel::<Instant>();
    let (back_tx, back_rx) = mpsc::channel::<Duration>();
    let peer = std::thread::spawn(move || {
        for t0 in rx {
            back_tx.send(t0.elapsed()).unwrap();
        }
    });
    let mut peer_lat = Vec::with_capacity(n);
    for _ in 0..n {
        tx.send(Instant::now()).unwrap();
        peer_lat.push(back_rx.recv().unwrap());
    }
    drop(tx);
    peer.join().unwrap();
    let (pmed, pp99) = stats(peer_lat);

    // 2. throughput: a burst of empty items, then one synchronise.
    let burst = n * 5;
    let t = Instant::now();
    for _ in 0..burst {
        a.enqueue_host("empty", || Ok(())).unwrap();
    }
    a.synchronize().unwrap();
    let per_item = t.elapsed() / burst as u32;

    // 3. cross-stream event wait: a stamps t0 then records; b waits and stamps t1.
    let mut wait_lat = Vec::with_capacity(n / 4);
    for _ in 0..n / 4 {
        let e = Event::new(&d).unwrap();
        let t0 = Arc::new(Mutex::new(None::<Instant>));
        let t1 = Arc::new(Mutex::new(None::<Instant>));
        let (s0, s1) = (Arc::clone(&t0), Arc::clone(&t1));
        a.enqueue_host("stamp0", move || {
            *s0.lock().unwrap() = Some(Instant::now());
            Ok(())
        })
        .unwrap();
        a.record(&e).unwrap();
        b.wait_event(&e).unwrap();
        b.enqueue_host("stamp1", move || {
            *s1.lock().unwrap() = Some(Instant::now());
            Ok(())
        })
        .unwrap();
        b.synchronize().unwrap();
        a.synchronize().unwrap();
        let (x, y) = (t0.lock().unwrap().unwrap(), t1.lock().unwrap().unwrap());
        wait_lat.push(y.saturating_duration_since(x));
    }
    let (wmed, wp99) = stats(wait_lat);

    println!("host backend stream micro-benchmark ({n} samples)");
    println!("| measure | median (µs) | p99 (µs) | peer (mpsc hop) median / p99 (µs) | ratio of medians |");
    println!("|---|---|---|---|---|");
    println!(
        "| enqueue→run, back to back (worker still lingering) | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} |",
        us(med),
        us(p99),
        us(pmed),
        us(pp99),
        us(med) / us(pmed)
    );
    println!(
        "| enqueue→run, parked worker (300 µs apart, {parked_n} samples) | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} |",
        us(pk_med),
        us(pk_p99),
        us(pmed),
        us(pp99),
        us(pk_med) / us(pmed)
    );
    println!(
        "| event record→cross-stream wait release | {:.2} | {:.2} | {:.2} / {:.2} | {:.2} |",
        us(wmed),
        us(wp99),
        us(pmed),
        us(pp99),
        us(wmed) / us(pmed)
    );
    println!(
        "| burst enqueue+run, per item | {:.3} | - | - | - |  ({:.2} M items/s)",
        us(per_item),
        1.0 / per_item.as_secs_f64() / 1e6
    );
}
