//! Host kernel throughput: convolutions, pools and GEMMs (the host GEMM, and on packed
//! constant matrices) at 1 and 2 threads.
//!
//! `cargo run --release -p aegis-exec --example kernel_bench` prints GFLOP/s per case
//! (best of several runs, 2 FLOPs per multiply-add); an argument keeps only the cases whose
//! name contains it (`kernel_bench dw`), and `--cold` evicts the caches before every run
//! (`KB_REPS=N` sets the runs per case).

use std::time::{Duration, Instant};

use aegis_exec::kernels::{
    gemm, pool, softmax, unary_f32, ConvAttrs, GeluApprox, GemmAttrs, KernelResult, PackedB,
    PoolAttrs, PoolKind, PreparedConv, SoftmaxKind, UnaryOp,
};

fn best_of(reps: usize, mut f: impl FnMut() -> KernelResult<()>) -> KernelResult<Duration> {
    // `KB_REPS=N`: more runs, e.g. for a sampling profiler.
    let reps = std::env::var("KB_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(reps);
    f()?;
    let mut best = Duration::MAX;
    // `--cold`: sweep a buffer larger than the caches before each run, as a layer inside a
    // model finds its input and output (written or last touched a whole network ago).
    let mut sweep = if std::env::args().any(|a| a == "--cold") {
        vec![0u8; 96 << 20]
    } else {
        Vec::new()
    };
    for rep in 0..reps {
        for line in sweep.chunks_mut(64) {
            line[0] = line[0].wrapping_add(rep as u8);
        }
        let t = Instant::now();
        f()?;
        best = best.min(t.elapsed());
    }
    Ok(best)
}

/// Cases whose name contains the first command-line argument (all without one).
fn selected(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .find(|a| a != "--cold")
        .is_none_or(|f| name.contains(&f))
}

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn conv_case(
    name: &str,
    c_in: usize,
    c_out: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
    group: usize,
) -> KernelResult<()> {
    conv_case_2d(name, [c_in, c_out, group], hw, [k, k], stride, [pad, pad])
}

/// [`conv_case`] with a kernel of `kh x kw` and pads `[ph, pw]` on both sides of each axis
/// (Inception-v3's 1x7 and 7x1 factorised convs).
fn conv_case_2d(
    name: &str,
    [c_in, c_out, group]: [usize; 3],
    hw: usize,
    [kh, kw]: [usize; 2],
    stride: usize,
    [ph, pw]: [usize; 2],
) -> KernelResult<()> {
    if !selected(name) {
        return Ok(());
    }
    let x_shape = [1, c_in, hw, hw];
    let w_shape = [c_out, c_in / group, kh, kw];
    let mut attrs = ConvAttrs::new(&[kh, kw]);
    attrs.strides = vec![stride; 2];
    attrs.pads_begin = vec![ph, pw];
    attrs.pads_end = vec![ph, pw];
    attrs.group = group;
    let x = data(x_shape.iter().product());
    let w = data(w_shape.iter().product());
    let b = data(c_out);
    let pc = PreparedConv::new(&w, &w_shape, Some(&b), attrs)?.prepare_input(&x_shape)?;
    let out_shape = pc.output_shape(&x_shape)?;
    let mut out = vec![0.0; out_shape.iter().product()];
    let flops = 2.0 * (out.len() * (c_in / group) * kh * kw) as f64;
    for threads in [1, 2] {
        let mut scratch = vec![0.0; pc.scratch_len(&x_shape, threads)?];
        let t = best_of(30, || pc.run(&x, &x_shape, &mut out, &mut scratch, threads))?;
        println!(
            "conv {name:<34} threads {threads}: {:>8.3} ms  {:>7.1} GFLOP/s",
            t.as_secs_f64() * 1e3,
            flops / t.as_secs_f64() / 1e9
        );
    }
    Ok(())
}

/// A 2-D pooling over `c` planes of `hw x hw`; GB/s counts the input read once and the
/// output written once.
fn pool_case(
    name: &str,
    kind: PoolKind,
    c: usize,
    hw: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> KernelResult<()> {
    if !selected(name) {
        return Ok(());
    }
    let x_shape = [1, c, hw, hw];
    let mut attrs = PoolAttrs::new(&[k, k]);
    attrs.strides = vec![stride; 2];
    attrs.pads_begin = vec![pad; 2];
    attrs.pads_end = vec![pad; 2];
    let x = data(x_shape.iter().product());
    let o = (hw + 2 * pad - k) / stride + 1;
    let mut out = vec![0.0; c * o * o];
    let bytes = 4.0 * (x.len() + out.len()) as f64;
    for threads in [1, 2] {
        let t = best_of(30, || pool(kind, &x, &x_shape, &attrs, &mut out, threads))?;
        println!(
            "pool {name:<34} threads {threads}: {:>8.3} ms  {:>7.1} GB/s",
            t.as_secs_f64() * 1e3,
            bytes / t.as_secs_f64() / 1e9
        );
    }
    Ok(())
}

fn gemm_case(m: usize, k: usize, n: usize, trans_b: bool) -> KernelResult<()> {
    let tb = if trans_b { " transB" } else { "" };
    if !selected(&format!("gemm {m}x{k}x{n}{tb}")) {
        return Ok(());
    }
    let a = data(m * k);
    let b = data(k * n);
    let mut out = vec![0.0; m * n];
    let flops = 2.0 * (m * n * k) as f64;
    for threads in [1, 2] {
        let t = best_of(30, || {
            gemm(
                &a,
                &[m, k],
                &b,
                &if trans_b { [n, k] } else { [k, n] },
                None,
                &GemmAttrs {
                    trans_b,
                    ..GemmAttrs::default()
                },
                &mut out,
                threads,
            )
        })?;
        println!(
            "gemm {m}x{k} * {k}x{n}{tb:<14} threads {threads}: {:>8.3} ms  {:>7.1} GFLOP/s",
            t.as_secs_f64() * 1e3,
            flops / t.as_secs_f64() / 1e9
        );
    }
    if m < 8 {
        return Ok(());
    }
    // The same product with `B` packed once (a constant weight, as the loader packs it).
    let packed = PackedB::new(&b, k, n, trans_b, None)?;
    for threads in [1, 2] {
        let t = best_of(30, || packed.run(&a, m, &mut out, None, threads))?;
        println!(
            "gemm {m}x{k} * {k}x{n}{tb:<7} packed threads {threads}: {:>8.3} ms  {:>7.1} GFLOP/s",
            t.as_secs_f64() * 1e3,
            flops / t.as_secs_f64() / 1e9
        );
    }
    Ok(())
}

fn main() -> KernelResult<()> {
    conv_case("3x3 64->64 56x56 pad 1", 64, 64, 56, 3, 1, 1, 1)?;
    conv_case("3x3 256->256 56x56 pad 1", 256, 256, 56, 3, 1, 1, 1)?;
    conv_case("3x3 96->96 28x28 pad 1", 96, 96, 28, 3, 1, 1, 1)?;
    conv_case("3x3 64->192 56x56 pad 1", 64, 192, 56, 3, 1, 1, 1)?;
    conv_case("3x3 128->128 56x56 pad 1", 128, 128, 56, 3, 1, 1, 1)?;
    conv_case("3x3 128->128 14x14 pad 1", 128, 128, 14, 3, 1, 1, 1)?;
    conv_case("3x3 160->192 14x14 pad 1", 160, 192, 14, 3, 1, 1, 1)?;
    conv_case("3x3 192->256 7x7 pad 1", 192, 256, 7, 3, 1, 1, 1)?;
    // Inception-v3's 17x17 grid: factorised 1x7 / 7x1 convs and a 1x1 from 768 channels.
    conv_case_2d("1x7 192->192 17x17", [192, 192, 1], 17, [1, 7], 1, [0, 3])?;
    conv_case_2d("7x1 192->192 17x17", [192, 192, 1], 17, [7, 1], 1, [3, 0])?;
    conv_case("1x1 768->192 17x17", 768, 192, 17, 1, 1, 0, 1)?;
    conv_case("1x1 256->64 56x56", 256, 64, 56, 1, 1, 0, 1)?;
    conv_case("1x1 64->256 56x56", 64, 256, 56, 1, 1, 0, 1)?;
    conv_case("3x3 128->128 28x28 pad 1", 128, 128, 28, 3, 1, 1, 1)?;
    conv_case("3x3 256->256 14x14 pad 1", 256, 256, 14, 3, 1, 1, 1)?;
    // SqueezeNet's expand 3x3 (short reductions) and VGG's first layers.
    conv_case("3x3 16->64 55x55 pad 1", 16, 64, 55, 3, 1, 1, 1)?;
    conv_case("3x3 48->192 27x27 pad 1", 48, 192, 27, 3, 1, 1, 1)?;
    conv_case("3x3 48->192 13x13 pad 1", 48, 192, 13, 3, 1, 1, 1)?;
    conv_case("3x3 64->256 13x13 pad 1", 64, 256, 13, 3, 1, 1, 1)?;
    conv_case("3x3 64->64 224x224 pad 1", 64, 64, 224, 3, 1, 1, 1)?;
    conv_case("3x3 512->512 7x7 pad 1", 512, 512, 7, 3, 1, 1, 1)?;
    // VGG's late layers (the channel-vectorised kernel on 28x28 and 14x14).
    conv_case("3x3 512->512 28x28 pad 1", 512, 512, 28, 3, 1, 1, 1)?;
    conv_case("3x3 512->512 14x14 pad 1", 512, 512, 14, 3, 1, 1, 1)?;
    conv_case("1x1 512->2048 7x7", 512, 2048, 7, 1, 1, 0, 1)?;
    // ResNet-50's later 1x1 convs and its stride-2 layers.
    conv_case("1x1 128->512 28x28", 128, 512, 28, 1, 1, 0, 1)?;
    conv_case("1x1 512->128 28x28", 512, 128, 28, 1, 1, 0, 1)?;
    conv_case("1x1 64->128 28x28", 64, 128, 28, 1, 1, 0, 1)?;
    conv_case("1x1 1024->256 14x14", 1024, 256, 14, 1, 1, 0, 1)?;
    // SqueezeNet's classifier conv and its late expand 3x3.
    conv_case("1x1 512->1000 13x13", 512, 1000, 13, 1, 1, 0, 1)?;
    conv_case("1x1 512->64 13x13", 512, 64, 13, 1, 1, 0, 1)?;
    // SqueezeNet's late squeeze convs (48 channels: no full block for the channel-vectorised
    // kernel, too long a reduction for the pointwise rows).
    conv_case("1x1 384->48 13x13", 384, 48, 13, 1, 1, 0, 1)?;
    conv_case("1x1 256->48 13x13", 256, 48, 13, 1, 1, 0, 1)?;
    // DenseNet's and ResNet's 1x1 convs on 14x14.
    conv_case("1x1 512->128 14x14", 512, 128, 14, 1, 1, 0, 1)?;
    conv_case("1x1 256->1024 14x14", 256, 1024, 14, 1, 1, 0, 1)?;
    conv_case(
        "3x3/2 3->64 224x224 (squeezenet stem)",
        3,
        64,
        224,
        3,
        2,
        0,
        1,
    )?;
    conv_case(
        "3x3/2 3->32 224x224 pad 1 (mobilenet stem)",
        3,
        32,
        224,
        3,
        2,
        1,
        1,
    )?;
    // DenseNet's growth convs (32 output channels).
    conv_case("3x3 128->32 56x56 pad 1", 128, 32, 56, 3, 1, 1, 1)?;
    conv_case("3x3 128->32 28x28 pad 1", 128, 32, 28, 3, 1, 1, 1)?;
    conv_case("3x3 32->128 27x27 pad 1", 32, 128, 27, 3, 1, 1, 1)?;
    conv_case("1x1 64->16 55x55", 64, 16, 55, 1, 1, 0, 1)?;
    conv_case("1x1 256->32 27x27", 256, 32, 27, 1, 1, 0, 1)?;
    conv_case("1x1 128->32 27x27", 128, 32, 27, 1, 1, 0, 1)?;
    conv_case("1x1 128->16 55x55", 128, 16, 55, 1, 1, 0, 1)?;
    conv_case("1x1 16->64 55x55", 16, 64, 55, 1, 1, 0, 1)?;
    // Narrowing 1x1 convs on large planes (MobileNetV2's 96->24, SqueezeNet's squeezes):
    // the GEMM, not the direct pointwise kernel.
    conv_case("1x1 96->24 56x56", 96, 24, 56, 1, 1, 0, 1)?;
    conv_case("1x1 96->16 55x55", 96, 16, 55, 1, 1, 0, 1)?;
    conv_case("1x1 64->32 56x56", 64, 32, 56, 1, 1, 0, 1)?;
    // ZFNet's stem.
    conv_case(
        "7x7/2 3->96 224x224 pad 1 (zfnet stem)",
        3,
        96,
        224,
        7,
        2,
        1,
        1,
    )?;
    conv_case("3x3 64->256 13x13 pad 1", 64, 256, 13, 3, 1, 1, 1)?;
    // ResNet's, Inception's and DenseNet's stem.
    conv_case(
        "7x7/2 3->64 224x224 pad 3 (resnet stem)",
        3,
        64,
        224,
        7,
        2,
        3,
        1,
    )?;
    // Inception-v2's 3x3 convs on 28x28.
    conv_case("3x3 64->96 28x28 pad 1", 64, 96, 28, 3, 1, 1, 1)?;
    // MobileNetV2's expand 1x1 on a 112x112 plane (a reduction of 16).
    conv_case("1x1 16->96 112x112", 16, 96, 112, 1, 1, 0, 1)?;
    conv_case("1x1 32->16 112x112", 32, 16, 112, 1, 1, 0, 1)?;
    conv_case("1x1 24->144 56x56", 24, 144, 56, 1, 1, 0, 1)?;
    conv_case("1x1 32->192 28x28", 32, 192, 28, 1, 1, 0, 1)?;
    conv_case("1x1 96->576 14x14", 96, 576, 14, 1, 1, 0, 1)?;
    conv_case("1x1 64->384 14x14", 64, 384, 14, 1, 1, 0, 1)?;
    conv_case("1x1 160->960 7x7", 160, 960, 7, 1, 1, 0, 1)?;
    conv_case("1x1 320->1280 7x7", 320, 1280, 7, 1, 1, 0, 1)?;
    // Long reductions on 7x7 (ResNet-50, MobileNetV2, Inception-v2, DenseNet-121).
    conv_case("1x1 2048->512 7x7", 2048, 512, 7, 1, 1, 0, 1)?;
    conv_case("1x1 512->512 7x7", 512, 512, 7, 1, 1, 0, 1)?;
    conv_case("1x1 1024->1024 7x7", 1024, 1024, 7, 1, 1, 0, 1)?;
    conv_case("1x1 960->320 7x7", 960, 320, 7, 1, 1, 0, 1)?;
    conv_case("1x1 1024->352 7x7", 1024, 352, 7, 1, 1, 0, 1)?;
    conv_case("1x1 1024->128 7x7", 1024, 128, 7, 1, 1, 0, 1)?;
    // Inception's narrow 3x3 convs (3 blocks of 32 channels).
    conv_case("3x3 64->96 28x28 pad 1", 64, 96, 28, 3, 1, 1, 1)?;
    conv_case("3x3/2 128->128 56x56 pad 1", 128, 128, 56, 3, 2, 1, 1)?;
    // ResNet-50's projection shortcuts.
    conv_case("1x1/2 256->512 56x56", 256, 512, 56, 1, 2, 0, 1)?;
    conv_case("1x1/2 512->1024 28x28", 512, 1024, 28, 1, 2, 0, 1)?;
    conv_case("1x1/2 1024->2048 14x14", 1024, 2048, 14, 1, 2, 0, 1)?;
    conv_case("7x7/2 3->64 224x224 pad 3 (stem)", 3, 64, 224, 7, 2, 3, 1)?;
    // SqueezeNet 1.1's, MobileNetV2's, ShuffleNet's and SqueezeNet 1.0's stems.
    conv_case("3x3/2 3->64 224x224 (stem)", 3, 64, 224, 3, 2, 0, 1)?;
    conv_case("3x3/2 3->32 224x224 pad 1 (stem)", 3, 32, 224, 3, 2, 1, 1)?;
    conv_case("3x3/2 3->24 224x224 pad 1 (stem)", 3, 24, 224, 3, 2, 1, 1)?;
    conv_case("7x7/2 3->96 224x224 (stem)", 3, 96, 224, 7, 2, 0, 1)?;
    // AlexNet's stem.
    conv_case("11x11/4 3->96 227x227 (stem)", 3, 96, 227, 11, 4, 0, 1)?;
    conv_case("3x3 dw 256 56x56 pad 1", 256, 256, 56, 3, 1, 1, 256)?;
    // MobileNetV2's depthwise shapes (stride 1 and 2, large to tiny planes).
    conv_case("3x3 dw 32 112x112 pad 1", 32, 32, 112, 3, 1, 1, 32)?;
    conv_case("3x3/2 dw 96 112x112 pad 1", 96, 96, 112, 3, 2, 1, 96)?;
    // The same kernels on planes that stay in L2 between runs: equal GFLOP/s to the full
    // layers above says those are bound by instructions, not by reading their inputs.
    conv_case("3x3/2 dw 8 112x112 pad 1", 8, 8, 112, 3, 2, 1, 8)?;
    conv_case("3x3 dw 16 56x56 pad 1", 16, 16, 56, 3, 1, 1, 16)?;
    conv_case("3x3 dw 144 56x56 pad 1", 144, 144, 56, 3, 1, 1, 144)?;
    conv_case("3x3 dw 192 28x28 pad 1", 192, 192, 28, 3, 1, 1, 192)?;
    conv_case("3x3 dw 576 14x14 pad 1", 576, 576, 14, 3, 1, 1, 576)?;
    conv_case("3x3 dw 960 7x7 pad 1", 960, 960, 7, 3, 1, 1, 960)?;
    conv_case("3x3/2 dw 144 56x56 pad 1", 144, 144, 56, 3, 2, 1, 144)?;
    conv_case("3x3/2 dw 192 28x28 pad 1", 192, 192, 28, 3, 2, 1, 192)?;
    conv_case("3x3/2 dw 576 14x14 pad 1", 576, 576, 14, 3, 2, 1, 576)?;
    // MobileNetV3's 5x5 depthwise layers; ShuffleNet's stride-2 ones.
    conv_case("5x5 dw 576 7x7 pad 2", 576, 576, 7, 5, 1, 2, 576)?;
    conv_case("5x5 dw 240 14x14 pad 2", 240, 240, 14, 5, 1, 2, 240)?;
    conv_case("5x5/2 dw 96 28x28 pad 2", 96, 96, 28, 5, 2, 2, 96)?;
    conv_case("5x5 dw 120 28x28 pad 2", 120, 120, 28, 5, 1, 2, 120)?;
    conv_case("5x5/2 dw 72 56x56 pad 2", 72, 72, 56, 5, 2, 2, 72)?;
    conv_case("3x3/2 dw 232 14x14 pad 1", 232, 232, 14, 3, 2, 1, 232)?;
    conv_case("3x3 dw 464 7x7 pad 1", 464, 464, 7, 3, 1, 1, 464)?;
    // SqueezeNet's max pools, ResNet's stem pool, DenseNet's transition pools.
    pool_case("max 3x3/2 64x111x111", PoolKind::Max, 64, 111, 3, 2, 0)?;
    pool_case("max 3x3/2 128x55x55", PoolKind::Max, 128, 55, 3, 2, 0)?;
    pool_case("max 3x3/2 576x14x14", PoolKind::Max, 576, 14, 3, 2, 0)?;
    pool_case("max 3x3/2 320x28x28", PoolKind::Max, 320, 28, 3, 2, 0)?;
    pool_case("max 3x3/2 512x13x13", PoolKind::Max, 512, 13, 3, 2, 0)?;
    pool_case(
        "avg 3x3/1 pad 1 1024x7x7",
        PoolKind::Average,
        1024,
        7,
        3,
        1,
        1,
    )?;
    pool_case("max 3x3/2 256x27x27", PoolKind::Max, 256, 27, 3, 2, 0)?;
    pool_case(
        "max 3x3/2 pad 1 64x112x112",
        PoolKind::Max,
        64,
        112,
        3,
        2,
        1,
    )?;
    pool_case("max 2x2/2 64x224x224", PoolKind::Max, 64, 224, 2, 2, 0)?;
    pool_case("max 2x2/2 256x56x56", PoolKind::Max, 256, 56, 2, 2, 0)?;
    pool_case("avg 2x2/2 128x56x56", PoolKind::Average, 128, 56, 2, 2, 0)?;
    // Inception-v2's pool branches: 3x3 stride 1 keeping the plane.
    pool_case(
        "avg 3x3/1 pad 1 576x14x14",
        PoolKind::Average,
        576,
        14,
        3,
        1,
        1,
    )?;
    pool_case(
        "avg 3x3/1 pad 1 256x28x28",
        PoolKind::Average,
        256,
        28,
        3,
        1,
        1,
    )?;
    // The same windows as a depthwise conv (channels in lanes): 576x14x14 0.059 ms against
    // the pool's 0.073-0.082, not worth a second path.
    conv_case("dw 3x3 576x14x14 pad 1", 576, 576, 14, 3, 1, 1, 576)?;
    pool_case("avg 2x2/2 512x14x14", PoolKind::Average, 512, 14, 2, 2, 0)?;
    // Inception's 3x3/1 "same" pools; ShuffleNet's padded 3x3/2 average pools.
    pool_case(
        "avg 3x3/1 pad 1 576x14x14",
        PoolKind::Average,
        576,
        14,
        3,
        1,
        1,
    )?;
    pool_case(
        "avg 3x3/1 pad 1 256x28x28",
        PoolKind::Average,
        256,
        28,
        3,
        1,
        1,
    )?;
    pool_case("max 3x3/1 pad 1 1024x7x7", PoolKind::Max, 1024, 7, 3, 1, 1)?;
    // A classifier head's average over the whole 7x7 plane (ResNet-50, Inception).
    pool_case("avg 7x7/1 2048x7x7", PoolKind::Average, 2048, 7, 7, 1, 0)?;
    pool_case(
        "avg 3x3/2 pad 1 240x28x28",
        PoolKind::Average,
        240,
        28,
        3,
        2,
        1,
    )?;
    // The transformer encoder's attention softmax (4 heads of 128 x 128) and a Swin stage's
    // window attention (64 windows, 3 heads, 49 x 49).
    for (label, shape) in [
        ("softmax 512x128", [1, 4, 128, 128]),
        ("softmax 9408x49", [64, 3, 49, 49]),
    ] {
        if !selected(label) {
            continue;
        }
        let x = data(shape.iter().product());
        let mut out = vec![0.0; x.len()];
        for threads in [1, 2] {
            let t = best_of(30, || {
                softmax(SoftmaxKind::Softmax, &x, &shape, 3, &mut out, threads)
            })?;
            println!(
                "{label:<42} threads {threads}: {:>8.3} ms",
                t.as_secs_f64() * 1e3
            );
        }
    }
    // Transcendental activations over a ConvNeXt-stage MLP activation (56x56x384).
    for (name, op) in [
        ("erf", UnaryOp::Erf),
        ("tanh", UnaryOp::Tanh),
        ("gelu", UnaryOp::Gelu(GeluApprox::None)),
        ("gelu tanh", UnaryOp::Gelu(GeluApprox::Tanh)),
        (
            "gelu ops",
            UnaryOp::GeluOps {
                k: std::f32::consts::SQRT_2,
                divide: true,
                half_first: false,
            },
        ),
        ("sigmoid", UnaryOp::Sigmoid),
        ("exp", UnaryOp::Exp),
    ] {
        let label = format!("unary {name} 1204224");
        if !selected(&label) {
            continue;
        }
        let x: Vec<f32> = data(56 * 56 * 384).iter().map(|v| 6.0 * v - 3.0).collect();
        let mut out = vec![0.0; x.len()];
        for threads in [1, 2] {
            let t = best_of(30, || unary_f32(op, &x, &mut out, threads))?;
            println!(
                "{label:<42} threads {threads}: {:>8.3} ms",
                t.as_secs_f64() * 1e3
            );
        }
    }
    gemm_case(512, 512, 512, false)?;
    // The transformer's attention output projection (Gemm, transB) and the same as MatMul.
    gemm_case(1000, 512, 169, false)?;
    gemm_case(128, 256, 256, false)?;
    gemm_case(128, 256, 256, true)?;
    // The transformer encoder's QKV projection and feed-forward layers; BERT-base's.
    gemm_case(128, 256, 768, false)?;
    gemm_case(128, 256, 1024, false)?;
    gemm_case(128, 1024, 256, false)?;
    gemm_case(384, 768, 768, true)?;
    gemm_case(384, 768, 3072, false)?;
    gemm_case(1, 2048, 1000, false)?;
    // Fully connected layers (Gemm with transB, one row): ResNet's head, VGG's and AlexNet's
    // 4096-wide layers (VGG's first streams a 411 MB filter).
    gemm_case(1, 2048, 1000, true)?;
    gemm_case(1, 4096, 4096, true)?;
    gemm_case(1, 9216, 4096, true)?;
    gemm_case(1, 25088, 4096, true)?;
    Ok(())
}
