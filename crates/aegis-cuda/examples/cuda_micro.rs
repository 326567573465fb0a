//! Micro-benchmark of aegis-cuda's CUDA backend on a real GPU, through the crate's public safe
//! API only (`Stream::launch`, events, graph capture/replay, device and staging memory). Needs
//! a CUDA GPU and NVRTC (`$AEGIS_NVRTC_DIR` or `libnvrtc.so.*` on the loader path); feature
//! `cuda`.
//!
//! What it measures (one `FIGURE` line each, medians over repetitions, p99 where meaningful,
//! the in-process peer or the card's ceiling beside it):
//!
//! 1. Kernel launch overhead: host time of one `Stream::launch` of an empty kernel (10,000
//!    back-to-back launches per burst, each timed on the host), beside `Stream::record` (the
//!    cheapest enqueue through the same path); and launch + `Stream::synchronize` round trip,
//!    beside the synchronise of an idle stream.
//! 2. Graph replay vs stream launches: N = 100 and 1000 empty kernels captured into a graph,
//!    one replay, versus the same N launched on the stream; µs per node, GPU time (events, the
//!    queue filled behind a spin kernel first so the host's enqueue rate does not pace the GPU)
//!    and host wall time (enqueue + synchronise).
//! 3. Event record + cross-stream wait: stream A launches and records, stream B waits and
//!    launches, host round trip until B is synchronised, versus both kernels on one stream.
//! 4. Copy bandwidth: H2D and D2H from pinned staging memory (`HostBuffer`), H2D from pageable
//!    memory (`Stream::upload`), and D2D, at 1, 64 and 256 MiB; GB/s (1e9 bytes/s) from the
//!    median event time and from the median host wall time (copy + synchronise). D2D counts
//!    each byte once.
//!
//! `NOTE` lines say what the public API does not let it measure. Runs in well under a minute
//! on an H200.
//!
//! Run: `.gpu-bin/cuda_micro` (built, stripped, by `cargo xtask gpu-build`, and run by
//! `.gpu-bin/run-all.sh`), or on a GPU machine with a toolkit:
//! `cargo run --release -p aegis-cuda --features cuda --example cuda_micro`.

use std::error::Error;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aegis_cuda::nvrtc::{KernelCache, Nvrtc};
use aegis_cuda::{
    Device, DeviceMemory, DeviceSlice, Event, HostBuffer, Kernel, KernelArgs, Stream,
    StreamPriority,
};

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// The benchmark's kernels: an empty one (launch cost only) and a clock spin (keeps the GPU
/// busy while the host fills the queue behind it).
const SOURCE: &str = r#"
extern "C" __global__ void micro_empty() {}

extern "C" __global__ void micro_spin(unsigned long long cycles) {
    long long start = clock64();
    while ((unsigned long long)(clock64() - start) < cycles) {
    }
}
"#;

const MIB: usize = 1 << 20;

/// H200 HBM3e bandwidth, vendor datasheet.
const HBM_TBPS: f64 = 4.8;
/// PCIe Gen5 x16 raw rate per direction (32 GT/s x 16 lanes); the H200 datasheet gives
/// 128 GB/s for both directions together.
const PCIE5_X16_GBPS: f64 = 64.0;

/// Median and p99 of a sample, in µs.
#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    p99: f64,
}

fn stats(v: &[Duration]) -> Stats {
    let mut us: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    if us.is_empty() {
        return Stats {
            median: f64::NAN,
            p99: f64::NAN,
        };
    }
    let at = |q: f64| us[((us.len() - 1) as f64 * q).round() as usize];
    Stats {
        median: at(0.5),
        p99: at(0.99),
    }
}

fn gbps(bytes: usize, us: f64) -> f64 {
    bytes as f64 / (us * 1e-6) / 1e9
}

/// Host bytes in ordinary (pageable) memory, shared between uploads without copying.
#[derive(Debug, Clone)]
struct PageableBytes {
    buf: Arc<Vec<u8>>,
    len: usize,
}

impl AsRef<[u8]> for PageableBytes {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

struct Kernels {
    empty: Kernel,
    spin: Kernel,
    /// Spin-kernel clock cycles per µs, measured.
    cycles_per_us: f64,
}

impl Kernels {
    /// Enqueues a spin of about `us` µs on `s` (one thread).
    fn spin_for(&self, s: &Stream, us: f64) -> aegis_cuda::Result<()> {
        let cycles = (us * self.cycles_per_us).max(1.0) as u64;
        s.launch(&self.spin, 1u32, 1u32, 0, &KernelArgs::new().u64(cycles))
    }

    fn empty(&self, s: &Stream) -> aegis_cuda::Result<()> {
        s.launch(&self.empty, 1u32, 32u32, 0, &KernelArgs::new())
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("cuda_micro: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> BoxResult<()> {
    let started = Instant::now();
    let d = Device::cuda(0).map_err(|e| format!("opening CUDA device 0: {e}"))?;
    let info = d.info();
    println!(
        "INFO device 0: {} (compute capability {}, {} SMs, {:.1} GiB)",
        info.name,
        info.compute_capability
            .map_or_else(|| "unknown".to_owned(), |(a, b)| format!("{a}.{b}")),
        info.parallelism,
        info.total_memory as f64 / (1u64 << 30) as f64
    );
    let nvrtc = Nvrtc::load().map_err(|e| format!("loading NVRTC: {e}"))?;
    println!("INFO NVRTC {:?}", nvrtc.version());
    let cache = KernelCache::new(nvrtc, None);
    let module = cache
        .module(&d, "cuda_micro.cu", SOURCE, &[])
        .map_err(|e| format!("compiling the benchmark kernels: {e}"))?;
    let s = Stream::new(&d, StreamPriority::NORMAL)?;
    let mut k = Kernels {
        empty: module.kernel("micro_empty")?,
        spin: module.kernel("micro_spin")?,
        cycles_per_us: 2000.0,
    };
    calibrate_spin(&d, &s, &mut k)?;
    println!(
        "INFO spin kernel: {:.0} clock cycles per µs (measured with events)",
        k.cycles_per_us
    );

    launch_overhead(&d, &s, &k)?;
    for n in [100usize, 1000] {
        graph_vs_stream(&d, &s, &k, n)?;
    }
    cross_stream(&d, &k)?;
    copies(&d, &s)?;
    println!(
        "INFO total run time {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Measures the spin kernel's clock rate: a spin of 4M cycles timed with events.
fn calibrate_spin(d: &Device, s: &Stream, k: &mut Kernels) -> BoxResult<()> {
    let (start, end) = (Event::new(d)?, Event::new(d)?);
    let cycles: u64 = 4_000_000;
    // Unmeasured first: lets the clocks leave their idle state.
    s.launch(&k.spin, 1u32, 1u32, 0, &KernelArgs::new().u64(10 * cycles))?;
    s.synchronize()?;
    let mut per_us = Vec::new();
    for _ in 0..3 {
        s.record(&start)?;
        s.launch(&k.spin, 1u32, 1u32, 0, &KernelArgs::new().u64(cycles))?;
        s.record(&end)?;
        s.synchronize()?;
        let t = end.elapsed_since(&start)?;
        per_us.push(cycles as f64 / (t.as_secs_f64() * 1e6).max(1e-3));
    }
    per_us.sort_by(f64::total_cmp);
    k.cycles_per_us = per_us[1];
    Ok(())
}

/// FIGURE 1: host cost of one launch, and of launch + synchronise.
fn launch_overhead(d: &Device, s: &Stream, k: &Kernels) -> BoxResult<()> {
    const BURST: usize = 10_000;
    const BURSTS: usize = 3;
    const HEAD: usize = 1000;
    for _ in 0..200 {
        k.empty(s)?;
    }
    s.synchronize()?;

    let mut per_launch = Vec::with_capacity(BURST * BURSTS);
    let mut head = Vec::with_capacity(HEAD * BURSTS);
    let mut tail = Vec::with_capacity((BURST - HEAD) * BURSTS);
    let mut enqueue_mean = Vec::with_capacity(BURSTS);
    let mut drained_mean = Vec::with_capacity(BURSTS);
    for _ in 0..BURSTS {
        let t_burst = Instant::now();
        for i in 0..BURST {
            let t = Instant::now();
            k.empty(s)?;
            let e = t.elapsed();
            per_launch.push(e);
            if i < HEAD {
                head.push(e);
            } else {
                tail.push(e);
            }
        }
        enqueue_mean.push(t_burst.elapsed() / BURST as u32);
        s.synchronize()?;
        drained_mean.push(t_burst.elapsed() / BURST as u32);
    }
    let l = stats(&per_launch);
    let (h, t) = (stats(&head), stats(&tail));
    let (em, dm) = (stats(&enqueue_mean), stats(&drained_mean));

    // Peer: the cheapest enqueue through the same stream path (cuEventRecord).
    let ev = Event::new(d)?;
    let mut rec = Vec::with_capacity(BURST);
    for _ in 0..BURST {
        let t = Instant::now();
        s.record(&ev)?;
        rec.push(t.elapsed());
    }
    s.synchronize()?;
    let r = stats(&rec);
    println!(
        "FIGURE launch_enqueue: {:.2} µs median, p99 {:.2} µs per Stream::launch of an empty \
         kernel <<<1,32>>> (host Instant around each call; {BURSTS} bursts of {BURST} \
         back-to-back launches; launches 1-{HEAD} of a burst {:.2} µs median, the rest {:.2} \
         µs; burst mean {:.2} µs enqueue only, {:.2} µs incl. the final synchronise) | peer \
         Stream::record enqueue: {:.2} µs median, p99 {:.2} µs",
        l.median, l.p99, h.median, t.median, em.median, dm.median, r.median, r.p99
    );

    const RT: usize = 2000;
    let mut rt = Vec::with_capacity(RT);
    for i in 0..RT + 100 {
        let t = Instant::now();
        k.empty(s)?;
        s.synchronize()?;
        if i >= 100 {
            rt.push(t.elapsed());
        }
    }
    let mut idle = Vec::with_capacity(RT);
    for _ in 0..RT {
        let t = Instant::now();
        s.synchronize()?;
        idle.push(t.elapsed());
    }
    let (rt, idle) = (stats(&rt), stats(&idle));
    println!(
        "FIGURE launch_sync_roundtrip: {:.2} µs median, p99 {:.2} µs (host Instant around one \
         Stream::launch of the empty kernel + Stream::synchronize, {RT} reps) | peer \
         Stream::synchronize of an idle stream: {:.2} µs median, p99 {:.2} µs",
        rt.median, rt.p99, idle.median, idle.p99
    );
    println!(
        "NOTE launch figures are the cost of aegis-cuda's checked launch (argument check \
         against the PTX signature, keep-alive bookkeeping, cuLaunchKernel); a bare \
         cuLaunchKernel is not reachable through the public API, so no raw-driver peer is \
         measured"
    );
    Ok(())
}

/// `n` launches of the empty kernel on `s`.
fn launch_empty_n(s: &Stream, k: &Kernels, n: usize) -> aegis_cuda::Result<()> {
    for _ in 0..n {
        k.empty(s)?;
    }
    Ok(())
}

/// FIGURE 2: one replay of a graph of `n` empty kernels vs `n` launches on the stream.
fn graph_vs_stream(d: &Device, s: &Stream, k: &Kernels, n: usize) -> BoxResult<()> {
    let reps = if n <= 100 { 100 } else { 30 };
    let (start, end) = (Event::new(d)?, Event::new(d)?);

    s.synchronize()?;
    let t_build = Instant::now();
    s.begin_capture()?;
    let captured = launch_empty_n(s, k, n);
    // End the capture even when a launch failed, so the stream is usable for the report.
    let graph = s.end_capture();
    captured?;
    let graph = graph?;
    let exec = graph.instantiate()?;
    let build = t_build.elapsed();

    // Warm-up: first replay uploads the graph.
    for _ in 0..3 {
        s.launch_graph(&exec)?;
    }
    for _ in 0..3 {
        launch_empty_n(s, k, n)?;
    }
    s.synchronize()?;

    // Spin long enough that the host has enqueued everything before the start event passes.
    let spin_us = 1000.0 + 20.0 * n as f64;
    let mut starved = [0usize; 2];

    // GPU time per node: events around the replay / the launches, queued behind a spin.
    let mut g_gpu = Vec::with_capacity(reps);
    let mut s_gpu = Vec::with_capacity(reps);
    for _ in 0..reps {
        k.spin_for(s, spin_us)?;
        s.record(&start)?;
        s.launch_graph(&exec)?;
        s.record(&end)?;
        if start.query() {
            starved[0] += 1;
        }
        s.synchronize()?;
        g_gpu.push(end.elapsed_since(&start)? / n as u32);

        k.spin_for(s, spin_us)?;
        s.record(&start)?;
        launch_empty_n(s, k, n)?;
        s.record(&end)?;
        if start.query() {
            starved[1] += 1;
        }
        s.synchronize()?;
        s_gpu.push(end.elapsed_since(&start)? / n as u32);
    }

    // Host wall per node: enqueue + synchronise, nothing else in flight.
    let mut g_wall = Vec::with_capacity(reps);
    let mut s_wall = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        s.launch_graph(&exec)?;
        s.synchronize()?;
        g_wall.push(t.elapsed() / n as u32);

        let t = Instant::now();
        launch_empty_n(s, k, n)?;
        s.synchronize()?;
        s_wall.push(t.elapsed() / n as u32);
    }
    let (gg, sg, gw, sw) = (stats(&g_gpu), stats(&s_gpu), stats(&g_wall), stats(&s_wall));
    println!(
        "FIGURE graph_replay N={n}: GPU {:.3} µs/node median (p99 {:.3}), host launch_graph + \
         synchronize {:.3} µs/node median (p99 {:.3}) | peer {n} Stream::launch on the stream: \
         GPU {:.3} µs/node median (p99 {:.3}), host launches + synchronize {:.3} µs/node median \
         (p99 {:.3}) | graph/stream host ratio {:.2} ({reps} reps each; GPU = event elapsed \
         around the replay or the launches, queued behind a {:.1} ms spin kernel, / N; host = \
         Instant around enqueue + synchronize / N; empty kernel <<<1,32>>>; capture + \
         instantiate took {:.2} ms once)",
        gg.median,
        gg.p99,
        gw.median,
        gw.p99,
        sg.median,
        sg.p99,
        sw.median,
        sw.p99,
        gw.median / sw.median,
        spin_us / 1000.0,
        build.as_secs_f64() * 1e3
    );
    if starved.iter().any(|&c| c > 0) {
        println!(
            "NOTE graph_replay N={n}: the spin ended before the host finished enqueueing in \
             {} graph and {} stream reps of {reps}: their GPU time includes waiting for the host",
            starved[0], starved[1]
        );
    }
    drop((exec, graph));
    Ok(())
}

/// FIGURE 3: event record on A + wait on B vs the same two kernels on one stream.
fn cross_stream(d: &Device, k: &Kernels) -> BoxResult<()> {
    const REPS: usize = 2000;
    const WARM: usize = 100;
    let a = Stream::new(d, StreamPriority::NORMAL)?;
    let b = Stream::new(d, StreamPriority::NORMAL)?;
    let ev = Event::new(d)?;
    let mut rt = Vec::with_capacity(REPS);
    let mut rec = Vec::with_capacity(REPS);
    let mut wait = Vec::with_capacity(REPS);
    for i in 0..WARM + REPS {
        let t = Instant::now();
        k.empty(&a)?;
        let tr = Instant::now();
        a.record(&ev)?;
        let r = tr.elapsed();
        let tw = Instant::now();
        b.wait_event(&ev)?;
        let w = tw.elapsed();
        k.empty(&b)?;
        b.synchronize()?;
        let e = t.elapsed();
        // A finished before B could; synchronising it (untimed) releases its parked items.
        a.synchronize()?;
        if i >= WARM {
            rt.push(e);
            rec.push(r);
            wait.push(w);
        }
    }
    let mut one = Vec::with_capacity(REPS);
    for i in 0..WARM + REPS {
        let t = Instant::now();
        k.empty(&a)?;
        k.empty(&a)?;
        a.synchronize()?;
        if i >= WARM {
            one.push(t.elapsed());
        }
    }
    let (rt, rec, wait, one) = (stats(&rt), stats(&rec), stats(&wait), stats(&one));
    println!(
        "FIGURE event_cross_stream: {:.2} µs median, p99 {:.2} µs host round trip (Instant \
         around: A launch, A record, B wait_event, B launch, B synchronize; {REPS} reps; \
         enqueue of record {:.2} µs, of wait_event {:.2} µs median) | peer same two empty \
         kernels on one stream + synchronize: {:.2} µs median, p99 {:.2} µs",
        rt.median, rt.p99, rec.median, wait.median, one.median, one.p99
    );
    Ok(())
}

/// One timed copy: event time and host wall time (enqueue + synchronise) per rep.
fn time_copy(
    s: &Stream,
    start: &Event,
    end: &Event,
    reps: usize,
    mut op: impl FnMut() -> aegis_cuda::Result<()>,
) -> BoxResult<(Stats, Stats)> {
    op()?;
    s.synchronize()?;
    let mut gpu = Vec::with_capacity(reps);
    let mut wall = Vec::with_capacity(reps);
    for _ in 0..reps {
        s.record(start)?;
        let t = Instant::now();
        op()?;
        s.record(end)?;
        s.synchronize()?;
        wall.push(t.elapsed());
        gpu.push(end.elapsed_since(start)?);
    }
    Ok((stats(&gpu), stats(&wall)))
}

/// FIGURE 4: copy bandwidth.
fn copies(d: &Device, s: &Stream) -> BoxResult<()> {
    const MAX: usize = 256 * MIB;
    let (start, end) = (Event::new(d)?, Event::new(d)?);
    let dev_a = DeviceMemory::alloc(d, MAX)?;
    let dev_b = DeviceMemory::alloc(d, MAX)?;
    // Staging memory: page-locked (cuMemHostRegister) by aegis-cuda at this size.
    let pinned = HostBuffer::alloc(d, MAX)?;
    pinned.write()?.fill(0x5a);
    // Pageable memory, every page touched so none is faulted in during a timed copy.
    let pageable = Arc::new(vec![0xa5u8; MAX]);

    let pcie = format!(
        "ceiling: PCIe Gen5 x16 {PCIE5_X16_GBPS:.0} GB/s per direction raw (H200 datasheet: \
         128 GB/s both directions)"
    );
    let hbm = format!(
        "ceiling: HBM3e {HBM_TBPS} TB/s (H200 datasheet); a D2D copy reads and writes each byte, \
         so counted once the ceiling is {:.1} TB/s",
        HBM_TBPS / 2.0
    );
    let mut best_h2d = 0.0f64;
    let mut best_d2h = 0.0f64;
    for (size, reps) in [(MIB, 200usize), (64 * MIB, 30), (256 * MIB, 10)] {
        let label = format!("{} MiB", size / MIB);
        let host: DeviceSlice = pinned.as_slice().slice(0..size)?;
        let da: DeviceSlice = dev_a.slice(0..size)?;
        let db: DeviceSlice = dev_b.slice(0..size)?;

        let report = |what: &str, (g, w): (Stats, Stats), ceiling: &str| -> f64 {
            let bw = gbps(size, g.median);
            println!(
                "FIGURE copy {what} {label}: {bw:.1} GB/s (events, median of {reps}; p99 time \
                 -> {:.1} GB/s) | host wall copy + synchronize {:.1} GB/s median ({:.1} µs) | \
                 {ceiling}",
                gbps(size, g.p99),
                gbps(size, w.median),
                w.median
            );
            bw
        };
        let h2d = time_copy(s, &start, &end, reps, || s.copy(&host, &da))?;
        best_h2d = best_h2d.max(report("H2D pinned (HostBuffer, Stream::copy)", h2d, &pcie));
        let up = time_copy(s, &start, &end, reps, || {
            s.upload(
                PageableBytes {
                    buf: Arc::clone(&pageable),
                    len: size,
                },
                &da,
            )
        })?;
        report("H2D pageable (Vec<u8>, Stream::upload)", up, &pcie);
        let d2h = time_copy(s, &start, &end, reps, || s.download(&da, &host))?;
        best_d2h = best_d2h.max(report(
            "D2H pinned (HostBuffer, Stream::download)",
            d2h,
            &pcie,
        ));
        let d2d = time_copy(s, &start, &end, reps, || s.copy(&da, &db))?;
        report("D2D (Stream::copy, bytes counted once)", d2d, &hbm);
    }
    println!(
        "NOTE D2H into pageable memory is not measured: Stream::download only writes staging \
         memory (HostBuffer, page-locked), and no public call copies device \
         memory into an ordinary host allocation"
    );
    println!(
        "NOTE pinned = HostBuffer, page-locked with cuMemHostRegister at allocation; \
         the public API does not say whether registration succeeded (a refusal leaves it \
         pageable, logged at debug level only): pinned figures close to the pageable H2D ones \
         would mean it fell back"
    );
    println!(
        "CEILING H200 HBM3e {HBM_TBPS} TB/s (vendor datasheet); host link as measured: best \
         pinned H2D {best_h2d:.1} GB/s, best pinned D2H {best_d2h:.1} GB/s (PCIe Gen5 x16 \
         {PCIE5_X16_GBPS:.0} GB/s per direction raw)"
    );
    Ok(())
}
