//! Convolution (ONNX `Conv`) and transposed convolution (`ConvTranspose`), NCHW (NCW,
//! NCDHW), f32.
//!
//! Eleven paths, chosen from the weights and the input shape, which is static once a model is
//! loaded:
//! - **dot products** (one group, a 1x1 conv on a 1x1 plane: a classifier written as a conv,
//!   as in DenseNet): one dot product of a filter row with the input's channels per output
//!   channel, the rows cut in two between workers above a size (`matmul::dot_rows`, shared
//!   with `Gemm` on one row);
//! - **depthwise, channels in lanes, AVX-512** (`group == C_in == C_out`, 2-D, outputs up to
//!   56x56 for a 3x3 and 28x28 for other kernels, the padded input up to 64x64): blocks of 16
//!   channels transposed into a `[row][col][16]` grid, one FMA per tap and vector of
//!   outputs (`conv_dw_t`; goes before the depthwise paths below);
//! - **depthwise, small planes** (`group == C_in == C_out`, stride 1, output the input's size,
//!   planes of up to 28x28, 3 or 5 kernel columns): the output plane itself is the flat grid,
//!   the input copied once per channel between zero margins, taps summed per kernel column
//!   and each column added under a mask of the outputs it covers (`conv_dw_same`;
//!   `kernel_bench`: 960 channels at 7x7 0.11 -> 0.04 ms, 576 at 14x14 0.14 -> 0.08, 192 at
//!   28x28 0.12 -> 0.09; at 56x56 the next path is faster, 0.26 vs 0.30);
//! - **depthwise, stride 2, wide rows, AVX-512** (`group == C_in == C_out`, 3x3, strides 2,
//!   output rows of 16 or more): output rows straight from the input rows, even and odd
//!   columns by two-source permutes, no plane copy (`conv_dw_v4`; MobileNetV2's 96 channels
//!   of 112x112 in the model: 0.68-0.75 -> 0.54-0.62 ms);
//! - **depthwise, stride 2** (`group == C_in == C_out`, strides 2, an even input width,
//!   planes up to 56x56): each plane split once, as a flat array, into its even and odd
//!   columns; vectors along output rows read each tap contiguously, columns masked as above
//!   (`conv_dw_same`; 192 channels at 28x28: 0.12 -> 0.05 ms);
//! - **depthwise** (`group == C_in == C_out`): per channel plane, a zero-padded copy with
//!   columns split by stride phase, then vectors of neighbouring outputs (four rows at a time)
//!   accumulate every tap in registers, through `pulp`'s run-time dispatch to AVX-512/AVX2
//!   (1-D and 2-D; 3-D keeps a direct loop);
//! - **Winograd F(2x2, 3x3)** (one group, 3x3 stride 1; needs
//!   [`PreparedConv::prepare_input`], which transforms the filter once): 16 products of
//!   transformed tiles instead of 9 taps per output, 2.25x fewer multiply-adds (`conv_wino`).
//!   From 128 input and 64 output channels (planes of 14x14 and wider, filters up to
//!   512 x 512, above 256 x 256 on 28x28 and wider) the products run with channels in lanes
//!   (`kernel_bench` 256->256 on 56x56, 1 thread: 36-39 -> 26-33 ms); from 16 input and 64
//!   output channels on planes of 27x27 and wider, with tiles in lanes (short products, no
//!   transposes: 64->64 on 56x56 2.23 -> 1.70 ms, VGG's 64->64 on 224x224 37.9 -> 24.4), as
//!   do 128 or more input channels with 32 to 63 output channels on 56x56 and wider
//!   (DenseNet's growth convs);
//! - **channel-vectorised** (one group, planes of 28x28 and smaller, 1x1 from 14x14 with
//!   K < 256 unless the direct pointwise kernel below takes it, strided
//!   convs with K >= 128 such as a 7x7/2 stem on any plane, channels filling >= 90 % of
//!   blocks of 32; needs [`PreparedConv::prepare_input`], which packs the
//!   filter once): vectors along output channels, so small planes lose no lanes, reading the
//!   once-padded input in place (`conv_co`);
//! - **direct stride-1** (one group, stride 1, wide planes where < 7 % of a flat grid is
//!   wasted): vectors of positions numbered on the padded input's row width, so every tap
//!   reads a contiguous run of the once-padded input; no im2col, packing or staging
//!   (`conv_direct`);
//! - **pointwise** (all kernel extents 1, no padding; a strided one over its input
//!   subsampled once into scratch): straight from the input, no im2col; with a short
//!   reduction and a small filter (K <= 128, <= 64 Ki elements per group, planes of >= 16
//!   positions; not a one-group conv that narrows the channels from
//!   K >= 64 on a plane over 28x28) the register-blocked direct kernel [`PointwiseRows`]
//!   (6 channels x 2 vectors of positions, FMAs over K, bias and activation fused; workers
//!   share blocks of channels, or bands of positions when there are fewer than two blocks
//!   per worker), else one GEMM per tile;
//! - **general**: im2col of a tile of output positions into caller-provided scratch, then
//!   GEMM against the weights ([`PointwiseRows`] on the tile instead when K and the filter
//!   are as small as above, e.g. a first 3x3 conv over RGB).
//!
//! The thresholds between paths are `kernel_bench` measurements on this project's machine
//! kind (AVX-512, 2 cores); each path's comment says what it was measured against.
//!
//! Determinism: the output of each group is cut into fixed tiles of output channels and of
//! output positions that depend only on the shapes, never on the thread count; each tile is
//! one single-threaded GEMM call, and threads only choose which tiles they run (contiguous
//! output-channel ranges). [`PointwiseRows`], the direct stride-1, the channel-vectorised
//! and the Winograd kernels compute every output element with the same sequence of
//! operations wherever its block or chunk falls. So every output element is produced by the
//! same arithmetic for any `threads`.

use aegis_cuda::{host_sgemm, HostMat, HostMatMut};

use super::conv_co::{co_partial_len, CoPacked, CoRows, CO_BLOCK};
use super::conv_direct::{pad_planes, sum_taps, tap_offsets, DirectRows, Flat, Taps};
use super::conv_dw_same::{DwSame, DwStride2, Plane2, PlaneDw, PlaneDwChannels};
#[cfg(target_arch = "x86_64")]
use super::conv_dw_t::DwT;
#[cfg(target_arch = "x86_64")]
use super::conv_dw_v4::{DwRows, DwRowsChannels};
use super::conv_wino::{WinoChunks, WinoGeo, WinoPacked, MAX_TW};
use super::elementwise::{check_unary, with_unary, MapInPlace, UnaryMap, UnaryOp};
use super::error::{check_len, invalid, numel, KernelError, KernelResult};
use super::lanes::load;
use super::par::{par_chunks, par_chunks_scratch, par_workers, workers};

/// Target size of one im2col tile (elements): half of a 1 MiB L2.
const COL_TILE_ELEMS: usize = 128 * 1024;
/// Positions one direct-kernel block covers under AVX-512 (the widest dispatch); used to judge
/// how much of a flat grid's work is useful.
const DIRECT_TILE: usize = 64;
/// Largest output plane the channel-vectorised kernel takes (`kernel_bench`: ahead of the
/// GEMM path by 10-20 % on 28x28 to 7x7 planes, behind from 55x55 up).
const CO_MAX_PLANE: usize = 28 * 28;
/// The same for a 1x1 conv, whose other paths lose no lanes down to 28x28 planes (even at
/// 14x14, 7x7 wins 10 %; a strided 1x1 onto 28x28 loses 7 %).
const CO_MAX_PLANE_POINTWISE: usize = 14 * 14;
/// On a CPU with [`wide_fma`], the most output elements a 1x1 conv takes the
/// channel-vectorised kernel for (else the GEMM, whose 6x64 tiles keep both FMA units busy).
/// `kernel_bench` on an Intel Xeon (AVX-512, AMX), 1 thread, minima of 3 alternating rounds,
/// channel-vectorised -> GEMM, ms: 1024->256 on 14x14 0.833 -> 0.670, 512->1000 on 13x13
/// 1.428 -> 1.168, 512->2048 on 7x7 0.997 -> 0.789, 160->960 on 7x7 0.150 -> 0.132, 512->64
/// on 13x13 (10816 outputs) 0.089 -> 0.077; but 1024->128 on 7x7 (6272) 0.108 -> 0.123 and
/// 1024->352 on 7x7 (17248) 0.286 both. Whole models there (`aegisrt bench`, paired runs,
/// median ratio new/old, 1 / 2 threads): every such conv on the GEMM gave DenseNet-121 1.027
/// at 1 thread (its 7x7 bottlenecks to 128 channels); with this bound ResNet-50 0.953 /
/// 0.939, SqueezeNet 1.1 0.939 / 0.920, MobileNetV2 0.983 / 0.881, Inception-v2 0.962,
/// DenseNet-121 0.975.
const CO_WIDE_FMA_MAX_OUT: usize = 8 * 1024;
/// Reductions from which a small-plane 1x1 conv runs in passes of `CO_POINTWISE_PASS_TAPS`
/// input channels (see [`PreparedConv::co_taps_per_pass`]).
const CO_POINTWISE_MAX_K: usize = 256;
/// Input channels per pass of such a 1x1 conv: a block's filter rows of one pass (16 KB)
/// stay in L1 while its steps read them.
const CO_POINTWISE_PASS_TAPS: usize = 128;
/// Largest filter (`C_out x C_in`) a small-plane 1x1 conv packs for the channel-vectorised
/// kernel (larger ones keep the GEMM): the packed copy adds to the graph's weights, and this
/// bounds what one conv adds to the peak RSS (8 MB; ResNet-50's 1024x2048 projection is the
/// largest shared filter it admits, its packed 1x1 filters add 37 MB to a 195 MB peak).
///
/// Why long reductions take it too: in a model the filter of such a conv is read once per
/// inference, from DRAM, and the GEMM packs it in a burst before any arithmetic, while this
/// kernel streams it under its FMAs in short prefetched passes. Per node in ResNet-50 (1
/// thread, minima over alternating profiles, GEMM -> channel-vectorised), ms: 512->2048 on
/// 7x7 1.45 -> 1.17, 2048->512 on 7x7 1.35 -> 1.13, the 1024->2048/2 projection 2.75 ->
/// 2.36, 1024->256 on 14x14 1.06 -> 1.00 (2 threads: 5-19 %; its fused 256->1024 joins on
/// 14x14 unchanged); Inception-v2's 576->64..224 on 14x14 3-13 %, DenseNet's 128-channel
/// bottlenecks on 14x14 2-12 %. SqueezeNet's 512->1000 classifier on 13x13 is the exception
/// (1.66 -> 1.75 at 1 thread, 0.92 -> 0.90 at 2).
const CO_POINTWISE_MAX_PACKED: usize = 2 * 1024 * 1024;
/// Strided convs with at least this long a reduction take the channel-vectorised kernel on
/// any plane (the GEMM path's im2col gathers strided columns: a 7x7/2 stem over RGB,
/// K = 147, measured 78-81 -> 90-91 GFLOP/s on one thread).
const CO_STRIDED_MIN_K: usize = 128;
/// Shortest reduction the channel-vectorised kernel takes (its transposed stores are paid
/// once per position and block, its FMAs once per tap).
const CO_MIN_K: usize = 64;
/// Input planes and one block's filter rows up to which the channel-vectorised kernel makes
/// one pass over the taps (see [`PreparedConv::co_taps_per_pass`]): the 1 MiB L2 of this
/// machine's cores (AMD Zen 4), like most current x86 server cores'.
const CO_ONE_PASS_BYTES: usize = 1024 * 1024;
/// Most bytes of input planes and filter rows one of its passes covers beyond that: half of
/// L2, leaving room for the partial sums and the output rows.
const CO_PASS_BYTES: usize = 512 * 1024;
/// Fewest input channels a Winograd conv takes (its products reduce over them).
const WINO_MIN_C_IN: usize = 128;
/// Fewest output channels a Winograd conv takes. With one block of 32 (DenseNet's 128->32
/// growth convs on 56x56) the input transform outweighs the products: measured in one
/// process, the paths alternating (medians of 30 runs, Winograd / the other path), 1 thread
/// 1.03-1.19, 2 threads 1.17-1.48; DenseNet's six such convs at 2 threads 13.0-13.6 ->
/// 10.0-11.6 ms.
const WINO_MIN_C_OUT: usize = 64;
/// Smallest output plane a Winograd conv takes (`kernel_bench`, 1 thread: 128->128 on 14x14
/// 0.67 -> 0.50 ms, 256->256 on 14x14 2.81 -> 2.11; on 7x7 no gain, 192->256 0.51 either
/// way).
const WINO_MIN_PLANE: usize = 14 * 14;
/// Filters (`C_out x C_in`) above this take the Winograd path only on planes of 28x28 and
/// wider (512->512 on 14x14: 11.3 -> 10.9 ms, not worth 16.8 MB of transformed filter).
const WINO_WIDE_FILTER: usize = 256 * 256;
/// Largest filter (`C_out x C_in`) a Winograd conv takes: its transformed copy holds 16/9
/// of the filter, on top of the graph's (VGG's 512 x 512 layers on 28x28: 16.8 MB each, in
/// place of the channel-vectorised kernel's 9.4 MB packing; `kernel_bench` 1 thread 34.0 ->
/// 21.6 ms, 2 threads 21.5 -> 13.7).
const WINO_MAX_FILTER: usize = 512 * 512;
/// Fewest input channels a Winograd conv with tiles in lanes takes (below
/// `WINO_MIN_C_IN`). `kernel_bench`, 1 thread, the direct or GEMM path -> Winograd, ms:
/// 32->128 on 27x27 0.52 -> 0.46, 48->192 on 27x27 1.13 -> 0.92, 64->64 on 56x56 2.23 ->
/// 1.70, 64->192 on 56x56 6.79 -> 4.46, 96->96 on 28x28 1.17 -> 0.95. 16->64 on 55x55
/// (SqueezeNet's) gained nothing (0.549 -> 0.558) while the products computed whole blocks
/// of 64 tiles; since they stop at the chunk's last tile it does: min of 4 alternating
/// rounds, direct -> Winograd, hot 0.551 -> 0.478 (2 threads 0.344 -> 0.259), cold 0.596
/// -> 0.606 (0.382 -> 0.360); in SqueezeNet 1.1 (per-node minima over 6 alternating
/// profiles) its two such convs 1.174 -> 1.038 ms at 1 thread, 0.612 -> 0.538 at 2.
const WINO_TILES_MIN_C_IN: usize = 16;
/// Fewest output channels a Winograd conv with tiles in lanes takes (below
/// `WINO_MIN_C_IN` input channels; fewer were not measured).
const WINO_TILES_MIN_C_OUT: usize = 64;
/// Fewest output channels a Winograd conv with at least `WINO_MIN_C_IN` input channels but
/// fewer than `WINO_MIN_C_OUT` output channels takes: its products run with tiles in lanes
/// (the channel-vectorised products are what lost on DenseNet's 128->32, see
/// `WINO_MIN_C_OUT`), on planes of at least `WINO_NARROW_MIN_PLANE`.
const WINO_NARROW_MIN_C_OUT: usize = 32;
/// See `WINO_NARROW_MIN_C_OUT`. DenseNet-121's growth convs (128->32, 3x3), direct or
/// channel-vectorised -> Winograd, per-node minima over 4 alternating profiles, 1 thread,
/// ms: six on 56x56 15.00 -> 13.34 (`kernel_bench` hot 2.35 -> 1.99, with the caches
/// evicted 2.42 -> 2.13; 2 threads per node 9.03 -> 8.47); twelve on 28x28 6.88 -> 7.35,
/// slower (`kernel_bench` hot 0.53 -> 0.43 but evicted 0.57 -> 0.66: the transforms'
/// traffic is not hidden there).
const WINO_NARROW_MIN_PLANE: usize = 56 * 56;
/// Smallest output plane a Winograd conv with tiles in lanes takes. On 13x13 (49 tiles, one
/// block of 64) `kernel_bench` gained (64->256 0.474 -> 0.426 ms) but SqueezeNet's 13x13
/// layers lost in the model (0.49 -> 0.55, 0.29 -> 0.36 ms): the transformed filter, 16/9 of
/// the filter, is read cold there and serves few tiles.
const WINO_TILES_MIN_PLANE: usize = 27 * 27;
/// Smallest position tile worth a GEMM call.
const MIN_TILE: usize = 64;
/// Multiply-adds below which a conv is not split into more tiles than the cache needs: the
/// same bar as [`PAR_MIN_MACS_GEMM`], so a conv worth a helper thread also has two tiles to
/// share (at 4 Mi, SqueezeNet's 384->48 1x1 on 13x13 ran on one thread at 2 threads; model
/// profile, 2 threads: 0.095 -> 0.048 ms, 256->32 on 27x27 0.146 -> 0.11).
const PAR_MIN_MACS: usize = 1 << 20;
/// Multiply-adds (one image) below which a GEMM conv runs on the calling thread only.
const PAR_MIN_MACS_GEMM: usize = 1 << 20;
/// The same for a depthwise conv (its small-plane kernels run ~0.3 ns per multiply-add: 64 Ki
/// is ~20 us, worth a helper; 576 channels 14x14 -> 7x7 at 2 threads 0.076 -> 0.038 ms).
const PAR_MIN_MACS_DW: usize = 1 << 16;

/// ONNX `auto_pad`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    /// Use the explicit `pads` attribute.
    NotSet,
    /// Output `ceil(in / stride)`, extra padding at the end.
    SameUpper,
    /// Output `ceil(in / stride)`, extra padding at the beginning.
    SameLower,
    /// No padding.
    Valid,
}

/// Resolves `auto_pad` into explicit `(pads_begin, pads_end)` for one spatial axis (Conv and
/// pooling). For `NotSet` returns `(0, 0)`: use the `pads` attribute instead.
pub fn auto_pad(
    mode: AutoPad,
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
) -> (usize, usize) {
    match mode {
        AutoPad::NotSet | AutoPad::Valid => (0, 0),
        AutoPad::SameUpper | AutoPad::SameLower => {
            let stride = stride.max(1);
            let out = input.div_ceil(stride);
            let eff = (kernel.max(1) - 1) * dilation.max(1) + 1;
            let total = ((out.saturating_sub(1)) * stride + eff).saturating_sub(input);
            let small = total / 2;
            if mode == AutoPad::SameUpper {
                (small, total - small)
            } else {
                (total - small, small)
            }
        }
    }
}

/// Conv / ConvTranspose attributes with every default filled in and `auto_pad` resolved.
/// All vectors have one entry per spatial axis (1 to 3 axes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvAttrs {
    /// Kernel extents (`kernel_shape`, or the weight's trailing dimensions).
    pub kernel: Vec<usize>,
    /// `strides` (default 1).
    pub strides: Vec<usize>,
    /// `dilations` (default 1).
    pub dilations: Vec<usize>,
    /// The first half of ONNX `pads` (`x1_begin, x2_begin, ...`).
    pub pads_begin: Vec<usize>,
    /// The second half of ONNX `pads` (`x1_end, x2_end, ...`).
    pub pads_end: Vec<usize>,
    /// `group` (default 1).
    pub group: usize,
}

impl ConvAttrs {
    /// Attributes with ONNX defaults (stride 1, dilation 1, no padding, one group) for a kernel.
    pub fn new(kernel: &[usize]) -> Self {
        let n = kernel.len();
        Self {
            kernel: kernel.to_vec(),
            strides: vec![1; n],
            dilations: vec![1; n],
            pads_begin: vec![0; n],
            pads_end: vec![0; n],
            group: 1,
        }
    }

    fn validate(&self, op: &'static str) -> KernelResult<()> {
        let n = self.kernel.len();
        if n == 0 || n > 3 {
            return Err(invalid(
                op,
                "kernel_shape",
                format!("{n} spatial axes (1 to 3 supported)"),
            ));
        }
        for (name, v) in [
            ("strides", &self.strides),
            ("dilations", &self.dilations),
            ("pads", &self.pads_begin),
            ("pads", &self.pads_end),
        ] {
            if v.len() != n {
                return Err(invalid(
                    op,
                    name,
                    format!("{} entries for {n} spatial axes", v.len()),
                ));
            }
        }
        if self.kernel.contains(&0) || self.strides.contains(&0) || self.dilations.contains(&0) {
            return Err(invalid(
                op,
                "kernel_shape/strides/dilations",
                "entries must be >= 1",
            ));
        }
        if self.group == 0 {
            return Err(invalid(op, "group", "must be >= 1"));
        }
        Ok(())
    }
}

/// Spatial geometry padded to 3 axes (D, H, W) with leading unit axes.
#[derive(Debug, Clone, Copy)]
struct Geo {
    input: [usize; 3],
    out: [usize; 3],
    k: [usize; 3],
    s: [usize; 3],
    d: [usize; 3],
    pb: [usize; 3],
}

impl Geo {
    fn in_plane(&self) -> usize {
        self.input.iter().product()
    }
    fn out_plane(&self) -> usize {
        self.out.iter().product()
    }
    fn kprod(&self) -> usize {
        self.k.iter().product()
    }
}

/// Every `strides`-th element of each input plane (`in_dims`, 1 to 3 axes) from the first,
/// `geo.input` of them, into `dst` (the planes of a strided 1x1 conv's subsampled input),
/// planes shared between workers.
fn subsample(
    x: &[f32],
    in_dims: &[usize],
    strides: &[usize],
    geo: &Geo,
    dst: &mut [f32],
    threads: usize,
) {
    let [d, h, w] = pad3(in_dims, 1);
    let [sd, sh, sw] = pad3(strides, 1);
    let [od, oh, ow] = geo.input;
    let (ip, op) = (d * h * w, od * oh * ow);
    if op == 0 {
        return;
    }
    par_chunks(dst, op, threads, 64, |first, planes| {
        for (i, plane) in planes.chunks_mut(op).enumerate() {
            let src = &x[(first + i) * ip..(first + i + 1) * ip];
            for (r, row) in plane.chunks_mut(ow).enumerate() {
                let (z, y) = (r / oh, r % oh);
                let at = (z * sd * h + y * sh) * w;
                let line = &src[at..at + (ow - 1) * sw + 1];
                if sw == 2 {
                    // Pairs: the compiler turns this into shuffles.
                    for (o, pair) in row.iter_mut().zip(line.chunks(2)) {
                        *o = pair[0];
                    }
                } else {
                    for (o, v) in row.iter_mut().zip(line.iter().step_by(sw)) {
                        *o = *v;
                    }
                }
            }
        }
    });
}

fn pad3(v: &[usize], fill: usize) -> [usize; 3] {
    let mut o = [fill; 3];
    o[3 - v.len()..].copy_from_slice(v);
    o
}

/// Output spatial extents of a convolution (or pooling window):
/// `floor((in + pb + pe - ((k - 1) * d + 1)) / s) + 1`.
///
/// # Errors
/// [`KernelError::InvalidAttribute`] when the dilated kernel exceeds the padded input.
pub fn conv_output_spatial(input: &[usize], attrs: &ConvAttrs) -> KernelResult<Vec<usize>> {
    (0..attrs.kernel.len())
        .map(|i| {
            let padded = input[i] + attrs.pads_begin[i] + attrs.pads_end[i];
            let eff = (attrs.kernel[i] - 1) * attrs.dilations[i] + 1;
            if padded < eff {
                Err(invalid(
                    "Conv",
                    "kernel_shape",
                    format!("dilated kernel {eff} exceeds padded input {padded} on axis {i}"),
                ))
            } else {
                Ok((padded - eff) / attrs.strides[i] + 1)
            }
        })
        .collect()
}

/// The padded input the direct kernels read (stride-1 and channel-vectorised): pads `[top,
/// left, bottom, right]`, padded extents, and its scratch elements (0 without padding: the
/// input is read in place).
#[derive(Debug, Clone, Copy)]
struct PaddedInput {
    pads: [usize; 4],
    hp: usize,
    wp: usize,
    padded_len: usize,
}

/// One worker's share of a single-group conv: first tile, its part of every output row, and
/// its scratch.
type WorkerPart<'a> = (usize, Vec<&'a mut [f32]>, &'a mut [f32]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConvPath {
    Depthwise,
    Pointwise,
    Im2col,
}

/// A tensor a conv adds to its output before the activation
/// ([`PreparedConv::run_with_residual`]).
#[derive(Debug, Clone, Copy)]
pub enum Residual<'a> {
    /// In its own memory, the output's shape.
    Separate(&'a [f32]),
    /// The output's memory itself (planned exactly on the residual): each element is read
    /// before it is overwritten.
    InPlace,
}

/// One image's residual inside the kernels.
#[derive(Debug, Clone, Copy)]
pub(super) enum Res<'a> {
    None,
    /// The image's `[c_out, plane]` residual.
    Separate(&'a [f32]),
    InPlace,
}

impl<'a> Res<'a> {
    /// The residual of output rows from channel `co` on, row `r` position `q` (of a kernel
    /// whose positions start at `pos0` of the plane) at `(co + r) * plane + pos0 + q`.
    fn rows(self, co: usize, plane: usize, pos0: usize) -> ResRows<'a> {
        match self {
            Res::None => ResRows::None,
            Res::InPlace => ResRows::InPlace,
            Res::Separate(data) => ResRows::Separate {
                data,
                at: co * plane + pos0,
                plane,
            },
        }
    }
}

impl<'a> ResRows<'a> {
    /// The same from row `r` on.
    pub(super) fn skip_rows(self, r: usize) -> Self {
        match self {
            ResRows::Separate { data, at, plane } => ResRows::Separate {
                data,
                at: at + r * plane,
                plane,
            },
            other => other,
        }
    }
}

/// [`PointwiseRows`]' and [`CoRows`]' residual: row `r`, position `q` at
/// `data[at + r * plane + q]`, or the output row's current value.
#[derive(Debug, Clone, Copy)]
pub(super) enum ResRows<'a> {
    None,
    Separate {
        data: &'a [f32],
        at: usize,
        plane: usize,
    },
    InPlace,
}

/// Filter values shared with their owner (e.g. a graph constant), read in place.
pub type SharedWeights = std::sync::Arc<dyn AsRef<[f32]> + Send + Sync>;

/// A prepared conv's filter: its own copy, or shared with the graph that holds it anyway.
#[derive(Clone)]
enum ConvWeights {
    Owned(Vec<f32>),
    Shared(SharedWeights),
}

impl ConvWeights {
    fn get(&self) -> &[f32] {
        match self {
            ConvWeights::Owned(v) => v,
            ConvWeights::Shared(a) => (**a).as_ref(),
        }
    }
}

impl std::fmt::Debug for ConvWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            ConvWeights::Owned(_) => "owned",
            ConvWeights::Shared(_) => "shared",
        };
        write!(f, "{} {kind} f32 weights", self.get().len())
    }
}

/// Conv weights prepared once at load time: validated, with the path chosen and the bias
/// materialised. Holds the weights in ONNX layout `[C_out, C_in/group, k...]`, which is already
/// the row-major `[C_out, K]` GEMM operand (`K = C_in/group * prod(k)`), so preparing is a
/// copy; the GEMM reads it transposed through strides.
#[derive(Debug, Clone)]
pub struct PreparedConv {
    attrs: ConvAttrs,
    c_out: usize,
    c_in_g: usize,
    weights: ConvWeights,
    bias: Option<Vec<f32>>,
    activation: Option<UnaryOp>,
    path: ConvPath,
    /// The filter packed by output-channel blocks for small planes (see
    /// [`PreparedConv::prepare_input`]).
    co: Option<CoPacked>,
    /// The Winograd-transformed filter for wide 3x3 stride-1 planes (see
    /// [`PreparedConv::prepare_input`]).
    wino: Option<WinoPacked>,
    /// The CPU runs 512-bit FMAs on two full-width units ([`wide_fma`]): small-plane 1x1
    /// convs keep the GEMM unless their output is tiny (see [`PreparedConv::co_eligible`]).
    wide_fma: bool,
}

/// Whether this CPU runs 512-bit FMAs at full width on two units: Intel's AVX-512 cores
/// (AMD's Zen 4 splits each into two 256-bit halves). Read once from `cpuid`, so a machine
/// always makes the same choice and results stay the same from run to run.
fn wide_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static WIDE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *WIDE.get_or_init(|| {
            let id = std::arch::x86_64::__cpuid(0);
            let intel = [id.ebx, id.edx, id.ecx]
                .iter()
                .flat_map(|r| r.to_le_bytes())
                .eq(*b"GenuineIntel");
            intel && std::arch::is_x86_feature_detected!("avx512f")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl PreparedConv {
    /// The filter's shape, `[C_out, C_in/group, k1, ...]`.
    pub fn weight_shape(&self) -> Vec<usize> {
        [self.c_out, self.c_in_g]
            .into_iter()
            .chain(self.attrs.kernel.iter().copied())
            .collect()
    }

    /// Prepares `W` of shape `w_shape = [C_out, C_in/group, k1, ...]` and optional bias `[C_out]`.
    /// `attrs.kernel` must equal the weight's spatial extents.
    ///
    /// # Errors
    /// Attribute/shape inconsistencies.
    pub fn new(
        w: &[f32],
        w_shape: &[usize],
        bias: Option<&[f32]>,
        attrs: ConvAttrs,
    ) -> KernelResult<Self> {
        let mut conv = Self::validated(w, w_shape, bias, attrs)?;
        conv.weights = ConvWeights::Owned(w.to_vec());
        Ok(conv)
    }

    /// Checks everything and chooses the path; the caller then stores the weights.
    fn validated(
        w: &[f32],
        w_shape: &[usize],
        bias: Option<&[f32]>,
        attrs: ConvAttrs,
    ) -> KernelResult<Self> {
        const OP: &str = "Conv";
        attrs.validate(OP)?;
        check_len(OP, "W", w.len(), numel(OP, w_shape)?)?;
        if w_shape.len() != attrs.kernel.len() + 2 || w_shape[2..] != attrs.kernel[..] {
            return Err(KernelError::ShapeMismatch {
                op: OP,
                a: w_shape.to_vec(),
                b: attrs.kernel.clone(),
            });
        }
        let (c_out, c_in_g) = (w_shape[0], w_shape[1]);
        if c_out % attrs.group != 0 {
            return Err(invalid(
                OP,
                "group",
                format!("{} does not divide C_out {c_out}", attrs.group),
            ));
        }
        if let Some(b) = bias {
            check_len(OP, "B", b.len(), c_out)?;
        }
        // Strided 1x1 convs too: they run over their input subsampled once (see
        // `PreparedConv::subsampled`).
        let pointwise = attrs.kernel.iter().all(|&k| k == 1)
            && attrs
                .pads_begin
                .iter()
                .chain(&attrs.pads_end)
                .all(|&p| p == 0);
        let path = if c_in_g == 1 && attrs.group == c_out && attrs.group > 1 {
            ConvPath::Depthwise
        } else if pointwise {
            ConvPath::Pointwise
        } else {
            ConvPath::Im2col
        };
        Ok(Self {
            attrs,
            c_out,
            c_in_g,
            weights: ConvWeights::Owned(Vec::new()),
            bias: bias.map(<[f32]>::to_vec),
            activation: None,
            path,
            co: None,
            wino: None,
            wide_fma: wide_fma(),
        })
    }

    /// As if on a CPU with (or without) [`wide_fma`]: tests of both path choices on any
    /// machine.
    #[cfg(test)]
    pub(crate) fn with_wide_fma(mut self, wide: bool) -> Self {
        self.wide_fma = wide;
        self
    }

    /// Prepares for inputs of shape `x_shape` (shapes are static once a model is loaded):
    /// where that shape runs the channel-vectorised kernel, packs the filter for
    /// it, once. Without this call the conv still runs every shape, on the other paths.
    ///
    /// # Errors
    /// As [`PreparedConv::output_shape`].
    pub fn prepare_input(mut self, x_shape: &[usize]) -> KernelResult<Self> {
        let geo = self.geo(x_shape)?;
        if self.wino.is_none() && self.wino_geo(&geo, 1).is_some() {
            self.wino = Some(WinoPacked::new(
                self.weights.get(),
                self.c_out,
                self.c_in_g,
                self.wino_tiles(),
            ));
            return Ok(self);
        }
        if self.co.is_none() && self.co_eligible(&geo) {
            let kdim = self.c_in_g * geo.kprod();
            self.co = Some(CoPacked::new(
                self.weights.get(),
                self.c_out,
                kdim,
                self.bias.as_deref(),
            ));
        }
        Ok(self)
    }

    /// Extra elements held for the packed filter (0 unless [`PreparedConv::prepare_input`]
    /// packed one).
    pub fn packed_len(&self) -> usize {
        self.co.as_ref().map_or(0, CoPacked::len) + self.wino.as_ref().map_or(0, WinoPacked::len)
    }

    /// Whether the channel-vectorised kernel suits this geometry: one group, 2-D (or 1-D), a
    /// plane small enough that vectors of positions waste lanes or the GEMM's per-call
    /// packing dominates, and channels filling at least 90 % of their blocks of `CO_BLOCK`
    /// (the last block's missing channels are computed as zeros and dropped). A 1x1 conv
    /// that [`PointwiseRows`] takes stays there: in MobileNetV2, per-node medians (ms, 1
    /// thread, this kernel -> that one) 64->384 on 14x14 0.155 -> 0.11, 96->576 on 14x14
    /// 0.296 -> 0.248; any other 1x1 conv on a plane of at most `CO_MAX_PLANE_POINTWISE`
    /// comes here (160->960 on 7x7 0.245 vs 0.26-0.27 on the GEMM), long reductions too
    /// while the packed filter stays within `CO_POINTWISE_MAX_PACKED`; on a CPU with
    /// [`wide_fma`], only those of at most `CO_WIDE_FMA_MAX_OUT` outputs. Shape- and
    /// CPU-determined.
    fn co_eligible(&self, geo: &Geo) -> bool {
        let two_d = geo.k[0] == 1 && geo.input[0] == 1 && geo.out[0] == 1;
        let kdim = self.c_in_g * geo.kprod();
        self.path != ConvPath::Depthwise
            && self.attrs.group == 1
            && two_d
            && self.c_out * 10 >= self.c_out.div_ceil(CO_BLOCK) * CO_BLOCK * 9
            && kdim >= CO_MIN_K
            && (if geo.kprod() == 1 {
                geo.out_plane() <= CO_MAX_PLANE_POINTWISE
                    && self.c_out * kdim <= CO_POINTWISE_MAX_PACKED
                    && (!self.wide_fma || self.c_out * geo.out_plane() <= CO_WIDE_FMA_MAX_OUT)
            } else {
                geo.out_plane() <= CO_MAX_PLANE
            } || (geo.s[1] > 1 && geo.kprod() > 1 && kdim >= CO_STRIDED_MIN_K))
            && self.direct(geo).is_none()
            && !self.direct_pointwise(geo)
    }

    /// The 2-D padded input the direct kernels read.
    fn padded_input(&self, geo: &Geo) -> PaddedInput {
        let pe = pad3(&self.attrs.pads_end, 0);
        let pads = [geo.pb[1], geo.pb[2], pe[1], pe[2]];
        let [_, h, w] = geo.input;
        let (hp, wp) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        let padded = pads.iter().any(|&v| v > 0);
        PaddedInput {
            pads,
            hp,
            wp,
            padded_len: if padded { self.c_in_g * hp * wp } else { 0 },
        }
    }

    /// A small-plane conv through [`CoRows`]: the input padded once into `scratch` (when it
    /// has padding), then whole channel blocks per worker (a residual added as each step is
    /// stored), an activation other than Relu or Clip over each worker's rows at the end.
    #[allow(clippy::too_many_arguments)]
    fn run_co(
        &self,
        co: &CoPacked,
        x: &[f32],
        out: &mut [f32],
        geo: &Geo,
        scratch: &mut [f32],
        threads: usize,
        res: Res<'_>,
    ) {
        let [_, h, w] = geo.input;
        let PaddedInput {
            pads,
            hp,
            wp,
            padded_len,
        } = self.padded_input(geo);
        let (pad_buf, scratch) = scratch.split_at_mut(padded_len);
        let src: &[f32] = if padded_len > 0 {
            pad_planes(x, self.c_in_g, h, w, pads, pad_buf, threads);
            pad_buf
        } else {
            x
        };
        let offs = tap_offsets(
            self.c_in_g,
            hp,
            wp,
            [geo.k[1], geo.k[2]],
            [geo.d[1], geo.d[2]],
        );
        let [_, oh_n, ow_n] = geo.out;
        let mut bases = Vec::with_capacity(oh_n * ow_n);
        for oy in 0..oh_n {
            for ox in 0..ow_n {
                bases.push(oy * geo.s[1] * wp + ox * geo.s[2]);
            }
        }
        let p = geo.out_plane();
        let taps_per_pass = self.co_taps_per_pass(geo);
        let (vact, rest) = DwAct::split(self.activation);
        let run = |first_block: usize, j0: usize, rows: &mut [&mut [f32]], partial: &mut [f32]| {
            let n = rows.first().map_or(0, |r| r.len());
            pulp::Arch::new().dispatch(CoRows {
                packed: co,
                first_block,
                x: src,
                offs: &offs,
                bases: &bases[j0..j0 + n],
                rows: &mut *rows,
                act: vact,
                taps_per_pass,
                partial,
                prefetch: true,
                res: res.rows(first_block * CO_BLOCK, p, j0),
            });
            apply_rest(rest, rows);
        };
        let split = self.co_split(geo, threads);
        let part_len = self.co_part_partial(geo, &split);
        let CoSplit {
            nb,
            np,
            per_b,
            per_p,
        } = split;
        // Each part's partial sums (empty when one pass covers every tap); `scratch_len`
        // counted `parts() * part_len` after the padded input.
        let mut partials = scratch.chunks_mut(part_len.max(1));
        let mut parts: Vec<CoPart<'_, '_>> = Vec::with_capacity(nb * np);
        for bi in 0..nb {
            for pi in 0..np {
                let partial: &mut [f32] = if part_len > 0 {
                    partials.next().unwrap_or_default()
                } else {
                    &mut []
                };
                parts.push((bi * per_b, (pi * per_p).min(p), Vec::new(), partial));
            }
        }
        for (c, row) in out.chunks_mut(p).enumerate() {
            let bi = (c / CO_BLOCK) / per_b;
            let mut rest = row;
            for pi in 0..np {
                let len = ((pi + 1) * per_p).min(p) - (pi * per_p).min(p);
                let (a, b) = rest.split_at_mut(len);
                parts[bi * np + pi].2.push(a);
                rest = b;
            }
        }
        let _ = par_workers(parts, |(first_block, j0, mut rows, partial)| {
            run(first_block, j0, &mut rows, partial);
            Ok::<(), KernelError>(())
        });
    }

    /// How [`Self::run_co`] splits a conv between workers: whole channel blocks when those
    /// split evenly enough, else bands of positions of every block (a 96-channel conv has 3
    /// blocks: 2 + 1 would cap two threads at 1.5x). Either way every element's arithmetic
    /// is the same. Shape- and `threads`-determined (`threads` already cut by
    /// `useful_threads`, as `run` and `scratch_len` do), so `scratch_len` sizes the same parts.
    fn co_split(&self, geo: &Geo, threads: usize) -> CoSplit {
        let p = geo.out_plane();
        let blocks = self.c_out.div_ceil(CO_BLOCK);
        let nw = workers(blocks.max(p.div_ceil(8)), threads);
        let by_blocks = nw <= 1 || blocks.is_multiple_of(nw) || blocks >= 4 * nw;
        let (nb, np) = if by_blocks {
            (workers(blocks, threads), 1)
        } else {
            (1, workers(p.div_ceil(8), threads))
        };
        CoSplit {
            nb,
            np,
            per_b: blocks.div_ceil(nb),
            per_p: p.div_ceil(np).div_ceil(8) * 8,
        }
    }

    /// Partial-sum elements each part of `split` needs: 0 when one pass covers every tap.
    fn co_part_partial(&self, geo: &Geo, split: &CoSplit) -> usize {
        if self.co_taps_per_pass(geo) < self.c_in_g * geo.kprod() {
            co_partial_len(split.per_p)
        } else {
            0
        }
    }

    /// Taps per pass of [`CoRows`]: every tap (one pass) when all input planes (padded) and
    /// one block's filter rows fit `CO_ONE_PASS_BYTES`, else equal passes of whole input
    /// channels of at most `CO_PASS_BYTES`, so a pass's working set stays in L2; a long 1x1
    /// reduction, passes of `CO_POINTWISE_PASS_TAPS` channels.
    /// Shape-determined (never by `threads`).
    fn co_taps_per_pass(&self, geo: &Geo) -> usize {
        let PaddedInput { hp, wp, .. } = self.padded_input(geo);
        let kprod = geo.kprod();
        let per_channel = (hp * wp + kprod * CO_BLOCK) * std::mem::size_of::<f32>();
        let c = self.c_in_g;
        if kprod == 1 && c >= CO_POINTWISE_MAX_K {
            // A long 1x1 reduction on a small plane (see `CO_POINTWISE_MAX_PACKED`).
            return CO_POINTWISE_PASS_TAPS.min(c);
        }
        if c * per_channel <= CO_ONE_PASS_BYTES {
            return c * kprod;
        }
        // Passes of equal whole-channel counts, none over the budget.
        let passes = (c * per_channel).div_ceil(CO_PASS_BYTES);
        c.div_ceil(passes) * kprod
    }

    /// As [`PreparedConv::new`], but keeps `w` (which must hold `w_shape`'s elements in ONNX
    /// layout) shared instead of copying it: for weights their owner keeps alive anyway,
    /// such as a loaded graph's constants, so they are not held twice.
    ///
    /// # Errors
    /// As [`PreparedConv::new`].
    pub fn new_shared(
        w: SharedWeights,
        w_shape: &[usize],
        bias: Option<&[f32]>,
        attrs: ConvAttrs,
    ) -> KernelResult<Self> {
        let mut conv = Self::validated((*w).as_ref(), w_shape, bias, attrs)?;
        conv.weights = ConvWeights::Shared(w);
        Ok(conv)
    }

    /// Fuses an elementwise activation (e.g. Relu, Clip) applied to each output tile right
    /// after it is computed (bias first, then the activation).
    #[must_use]
    pub fn with_activation(mut self, activation: UnaryOp) -> Self {
        self.activation = Some(activation);
        self
    }

    /// The activation fused after the bias, if any.
    pub fn activation(&self) -> Option<UnaryOp> {
        self.activation
    }

    /// The attributes this conv was prepared with.
    pub fn attrs(&self) -> &ConvAttrs {
        &self.attrs
    }

    /// `[N, C_out, out...]` for an input of shape `x_shape = [N, C_in, in...]`.
    ///
    /// # Errors
    /// Input rank or channel count inconsistent with the weights.
    pub fn output_shape(&self, x_shape: &[usize]) -> KernelResult<Vec<usize>> {
        let nsp = self.attrs.kernel.len();
        if x_shape.len() != nsp + 2 || x_shape[1] != self.c_in_g * self.attrs.group {
            return Err(KernelError::ShapeMismatch {
                op: "Conv",
                a: x_shape.to_vec(),
                b: vec![self.c_out, self.c_in_g * self.attrs.group],
            });
        }
        let mut out = vec![x_shape[0], self.c_out];
        out.extend(conv_output_spatial(&x_shape[2..], &self.attrs)?);
        Ok(out)
    }

    /// The geometry the kernels see: a strided pointwise conv's is the stride-1 conv over
    /// its subsampled input ([`PreparedConv::subsampled`]).
    fn geo(&self, x_shape: &[usize]) -> KernelResult<Geo> {
        let out = self.output_shape(x_shape)?;
        let sub = self.subsampled();
        Ok(Geo {
            input: pad3(if sub { &out[2..] } else { &x_shape[2..] }, 1),
            out: pad3(&out[2..], 1),
            k: pad3(&self.attrs.kernel, 1),
            s: if sub {
                [1; 3]
            } else {
                pad3(&self.attrs.strides, 1)
            },
            d: pad3(&self.attrs.dilations, 1),
            pb: pad3(&self.attrs.pads_begin, 0),
        })
    }

    /// Whether this is a strided 1x1 conv without padding (ResNet's projection shortcuts,
    /// 1x1/2). It runs as the stride-1 pointwise conv over its input subsampled once into
    /// scratch (every `s`-th row and column: the only inputs a 1x1/s conv reads), so it gets
    /// the pointwise paths (no im2col tiles, the direct and channel-vectorised kernels) for
    /// the cost of one gather of a quarter of the input (the im2col path gathered strided
    /// columns for every tile). `kernel_bench --cold`, 1 thread, ms: 256->512 on 56x56
    /// 2.55 -> 2.29, 512->1024 on 28x28 2.52 -> 2.21, 1024->2048 on 14x14 2.66 -> 2.63;
    /// ResNet-50's three in the model (profile medians, summed) 7.07 -> 6.81 at 1 thread,
    /// 4.03 -> 3.61 at 2.
    fn subsampled(&self) -> bool {
        self.path == ConvPath::Pointwise && self.attrs.strides.iter().any(|&s| s > 1)
    }

    /// Elements of the subsampled input of one image (0 unless [`PreparedConv::subsampled`]).
    fn subsampled_len(&self, geo: &Geo) -> usize {
        if self.subsampled() {
            self.c_in_g * self.attrs.group * geo.in_plane()
        } else {
            0
        }
    }

    /// The output-position tiling of one group's GEMMs: `(positions per tile, tile count)`.
    /// A function of the shapes only, so results never depend on the thread count.
    fn tiles(&self, geo: &Geo) -> (usize, usize) {
        let c_out_g = self.c_out / self.attrs.group;
        let k = self.c_in_g * geo.kprod();
        let p = geo.out_plane().max(1);
        // The im2col tile and the output staging tile should stay in L2 together.
        let per_pos = c_out_g + if self.path == ConvPath::Im2col { k } else { 0 };
        let t_max = (COL_TILE_ELEMS / per_pos.max(1)).max(MIN_TILE);
        let mut n = p.div_ceil(t_max);
        // An even tile count balances two workers when there is enough work to split.
        if n % 2 == 1 && p >= 2 * MIN_TILE && c_out_g * k * p >= PAR_MIN_MACS {
            n += 1;
        }
        let t = p.div_ceil(n).div_ceil(16) * 16;
        let t = t.min(p);
        (t, p.div_ceil(t))
    }

    /// Output channels per GEMM call. Normally the whole group; a single-group conv with a
    /// single position tile but a lot of work (late, small-plane layers) is cut into 2 or 4
    /// fixed channel tiles so threads have something to share. Shape-determined.
    fn co_tile(&self, geo: &Geo) -> usize {
        let c_out_g = self.c_out / self.attrs.group;
        let k = self.c_in_g * geo.kprod();
        let p = geo.out_plane();
        if self.attrs.group == 1 && self.tiles(geo).1 == 1 && c_out_g * k * p >= PAR_MIN_MACS {
            for n in [4, 2] {
                if c_out_g.is_multiple_of(n) && c_out_g / n >= 32 {
                    return c_out_g / n;
                }
            }
        }
        c_out_g
    }

    fn scratch_per_worker(&self, geo: &Geo) -> usize {
        let (t, _) = self.tiles(geo);
        let col = if self.path == ConvPath::Im2col {
            self.c_in_g * geo.kprod() * t
        } else {
            0
        };
        // The short-reduction kernel writes the output rows itself: no staging tile.
        let stage = if self.im2col_direct(geo) {
            0
        } else {
            self.co_tile(geo) * t
        };
        col + stage
    }

    /// Whether an im2col conv's tiles run [`PointwiseRows`] (a short reduction and a small
    /// filter per group) rather than GEMM calls.
    fn im2col_direct(&self, geo: &Geo) -> bool {
        let kdim = self.c_in_g * geo.kprod();
        self.path == ConvPath::Im2col
            && kdim <= PW_MAX_K
            && (self.c_out / self.attrs.group) * kdim <= PW_MAX_FILTER
    }

    /// `threads`, or 1 when one image's conv is too small to repay waking a worker (about
    /// 20 us of work: waking a parked thread and joining it costs several microseconds, far
    /// more on a busy machine). Shape-determined, and tiles do not depend on it.
    fn useful_threads(&self, geo: &Geo, threads: usize) -> usize {
        if self.dot_case(geo) {
            // Memory-bound: the dot products choose their own split.
            return threads;
        }
        let macs = self.c_out * self.c_in_g * geo.kprod() * geo.out_plane();
        // Depthwise runs at a fraction of GEMM throughput, so its bar is lower.
        let min = if self.path == ConvPath::Depthwise {
            PAR_MIN_MACS_DW
        } else {
            PAR_MIN_MACS_GEMM
        };
        if macs < min {
            1
        } else {
            threads
        }
    }

    fn gemm_workers(&self, geo: &Geo, threads: usize) -> usize {
        let ct = self.co_tile(geo);
        if self.attrs.group > 1 {
            workers(self.attrs.group, threads)
        } else if ct < self.c_out {
            workers(self.c_out / ct, threads)
        } else {
            workers(self.tiles(geo).1, threads)
        }
    }

    /// Scratch elements [`PreparedConv::run`] needs for input shape `x_shape` and `threads`
    /// (GEMM path, per worker: an im2col tile plus an output staging tile; direct and
    /// channel-vectorised kernels: the padded input, plus each worker's partial sums when
    /// the latter makes several passes; depthwise: per worker plane buffers).
    ///
    /// # Errors
    /// As [`PreparedConv::output_shape`].
    pub fn scratch_len(&self, x_shape: &[usize], threads: usize) -> KernelResult<usize> {
        let geo = self.geo(x_shape)?;
        Ok(self.subsampled_len(&geo) + self.kernel_scratch_len(&geo, threads))
    }

    /// [`PreparedConv::scratch_len`] past the subsampled input: what the kernels use.
    fn kernel_scratch_len(&self, geo: &Geo, threads: usize) -> usize {
        let geo = *geo;
        let threads = self.useful_threads(&geo, threads);
        if self.path == ConvPath::Depthwise {
            #[cfg(target_arch = "x86_64")]
            if let Some(p) = dw_t(&geo, self.c_out) {
                return workers(self.c_out.div_ceil(DW_T_BLOCK), threads) * p.scratch_len();
            }
            let per_worker = match (dw_same(&geo), dw_stride2(&geo)) {
                (Some(p), _) => p.scratch_len(),
                (None, Some(p)) => p.scratch_len(),
                (None, None) => DwPlan::new(&geo).map_or(0, |p| p.len + p.out_len),
            };
            return workers(self.c_out, threads) * per_worker;
        }
        if let (Some(_), Some(wg)) = (&self.wino, self.wino_geo(&geo, threads)) {
            let padded = wg.c_in * wg.hp * wg.wp;
            let nw = workers(wg.chunks(), threads);
            return padded + nw * wg.worker_scratch();
        }
        if self.co.is_some() && self.co_eligible(&geo) {
            let split = self.co_split(&geo, threads);
            let partials = split.parts() * self.co_part_partial(&geo, &split);
            return self.padded_input(&geo).padded_len + partials;
        }
        if self.direct_pointwise(&geo) {
            return 0;
        }
        if let Some(d) = self.direct(&geo) {
            return d.padded_len;
        }
        self.gemm_workers(&geo, threads) * self.scratch_per_worker(&geo)
    }

    /// Runs the convolution: `x` is `[N, C_in, in...]`, `out` is
    /// [`PreparedConv::output_shape`], `scratch` holds at least
    /// [`PreparedConv::scratch_len`] elements (contents ignored).
    ///
    /// # Errors
    /// Shape/length mismatches or too little scratch.
    pub fn run(
        &self,
        x: &[f32],
        x_shape: &[usize],
        out: &mut [f32],
        scratch: &mut [f32],
        threads: usize,
    ) -> KernelResult<()> {
        self.run_with_residual(x, x_shape, None, out, scratch, threads)
    }

    /// Whether an input of shape `x_shape` runs a path that adds a residual in its epilogue
    /// ([`PreparedConv::run_with_residual`]): the direct pointwise kernel and the GEMM tiles.
    /// Shape-determined.
    ///
    /// # Errors
    /// As [`PreparedConv::output_shape`].
    pub fn supports_residual(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        let wino = self.wino.is_some() && self.wino_geo(&geo, 1).is_some();
        let co = self.co.is_some() && self.co_eligible(&geo);
        Ok(self.path != ConvPath::Depthwise
            && !wino
            && !self.dot_case(&geo)
            && (co || self.direct_pointwise(&geo) || self.direct(&geo).is_none()))
    }

    /// [`PreparedConv::run`] with a tensor of the output's shape added to the convolution
    /// before the activation, `act(conv(x) + residual)`, in the pass that writes the output
    /// (a residual join, `Relu(Add(Conv(x), skip))`, with one write of the output instead of
    /// a conv pass and an add pass). Each element gets the same two roundings as the conv
    /// followed by an Add. Only where [`PreparedConv::supports_residual`].
    ///
    /// # Errors
    /// As [`PreparedConv::run`]; a residual of the wrong length, or on a path without the
    /// epilogue.
    pub fn run_with_residual(
        &self,
        x: &[f32],
        x_shape: &[usize],
        residual: Option<Residual<'_>>,
        out: &mut [f32],
        scratch: &mut [f32],
        threads: usize,
    ) -> KernelResult<()> {
        const OP: &str = "Conv";
        let out_shape = self.output_shape(x_shape)?;
        check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
        check_len(OP, "Y", out.len(), numel(OP, &out_shape)?)?;
        if let Some(r) = residual {
            if let Residual::Separate(r) = r {
                check_len(OP, "residual", r.len(), out.len())?;
            }
            if !self.supports_residual(x_shape)? {
                return Err(invalid(
                    OP,
                    "residual",
                    format!("no residual epilogue on this conv's path for input {x_shape:?}"),
                ));
            }
        }
        let need = self.scratch_len(x_shape, threads)?;
        if scratch.len() < need {
            return Err(KernelError::ScratchTooSmall {
                op: OP,
                required: need,
                actual: scratch.len(),
            });
        }
        let geo = self.geo(x_shape)?;
        let threads = self.useful_threads(&geo, threads);
        let n = x_shape[0];
        let c_in = self.c_in_g * self.attrs.group;
        let (in_img, out_img) = (c_in * geo.in_plane(), self.c_out * geo.out_plane());
        if out_img == 0 {
            return Ok(());
        }
        let (sub, scratch) = scratch.split_at_mut(self.subsampled_len(&geo));
        let in_img = if self.subsampled() {
            c_in * numel(OP, &x_shape[2..])?
        } else {
            in_img
        };
        for b in 0..n {
            let mut xb = &x[b * in_img..(b + 1) * in_img];
            if self.subsampled() {
                subsample(xb, &x_shape[2..], &self.attrs.strides, &geo, sub, threads);
                xb = sub;
            }
            let ob = &mut out[b * out_img..(b + 1) * out_img];
            let rb = match residual {
                Some(Residual::Separate(r)) => Res::Separate(&r[b * out_img..(b + 1) * out_img]),
                Some(Residual::InPlace) => Res::InPlace,
                None => Res::None,
            };
            match self.path {
                ConvPath::Depthwise => self.run_depthwise(xb, ob, &geo, scratch, threads)?,
                _ => {
                    if let Some(act) = self.activation {
                        check_unary(act)?;
                    }
                    self.run_gemm(xb, ob, &geo, scratch, threads, rb)?
                }
            }
        }
        Ok(())
    }

    fn run_depthwise(
        &self,
        x: &[f32],
        out: &mut [f32],
        geo: &Geo,
        scratch: &mut [f32],
        threads: usize,
    ) -> KernelResult<()> {
        let (ip, op) = (geo.in_plane(), geo.out_plane());
        let kp = geo.kprod();
        #[cfg(target_arch = "x86_64")]
        if let Some(plan) = dw_t(geo, self.c_out) {
            if let Some(act) = self.activation {
                check_unary(act)?;
            }
            return par_chunks_scratch(
                out,
                DW_T_BLOCK * op,
                threads,
                scratch,
                plan.scratch_len(),
                |first, piece, buf| {
                    PlaneDwChannels {
                        plan: &plan,
                        weights: self.weights.get(),
                        bias: self.bias.as_deref(),
                        act: self.activation,
                        x,
                        first: first * DW_T_BLOCK,
                        out: piece,
                        scratch: buf,
                    }
                    .run();
                    Ok(())
                },
            );
        }
        if let Some(plan) = dw_same(geo) {
            return self.run_plane_dw(&plan, x, out, op, scratch, threads);
        }
        #[cfg(target_arch = "x86_64")]
        if let Some(plan) = plane2(geo).and_then(DwRows::new) {
            if let Some(act) = self.activation {
                check_unary(act)?;
            }
            par_chunks(out, op, threads, 1, |first, piece| {
                DwRowsChannels {
                    plan: &plan,
                    weights: self.weights.get(),
                    bias: self.bias.as_deref(),
                    act: self.activation,
                    x,
                    first,
                    out: piece,
                }
                .run();
            });
            return Ok(());
        }
        if let Some(plan) = dw_stride2(geo) {
            return self.run_plane_dw(&plan, x, out, op, scratch, threads);
        }
        if let Some(plan) = DwPlan::new(geo) {
            if let Some(act) = self.activation {
                check_unary(act)?;
            }
            let taps = plan.taps(geo);
            return par_chunks_scratch(
                out,
                op,
                threads,
                scratch,
                plan.len + plan.out_len,
                |first, piece, buf| {
                    pulp::Arch::new().dispatch(DwChannels {
                        conv: self,
                        plan,
                        taps: &taps,
                        geo,
                        x,
                        first,
                        out: piece,
                        buf,
                    });
                    Ok(())
                },
            );
        }
        par_chunks(out, op, threads, 1, |first, piece| {
            for (i, oplane) in piece.chunks_mut(op).enumerate() {
                let c = first + i;
                let xin = &x[c * ip..(c + 1) * ip];
                let w = &self.weights.get()[c * kp..(c + 1) * kp];
                let bias = self.bias.as_ref().map_or(0.0, |b| b[c]);
                depthwise_plane(xin, w, bias, oplane, geo);
                if let Some(act) = self.activation {
                    apply_activation(act, oplane);
                }
            }
        });
        Ok(())
    }

    /// A depthwise conv through one of the plane kernels ([`DwSame`], [`DwStride2`]): whole
    /// channels per worker, each worker with its own scratch.
    #[allow(clippy::too_many_arguments)]
    fn run_plane_dw<P: PlaneDw + Sync>(
        &self,
        plan: &P,
        x: &[f32],
        out: &mut [f32],
        op: usize,
        scratch: &mut [f32],
        threads: usize,
    ) -> KernelResult<()> {
        if let Some(act) = self.activation {
            check_unary(act)?;
        }
        par_chunks_scratch(
            out,
            op,
            threads,
            scratch,
            plan.scratch_len(),
            |first, piece, buf| {
                pulp::Arch::new().dispatch(PlaneDwChannels {
                    plan,
                    weights: self.weights.get(),
                    bias: self.bias.as_deref(),
                    act: self.activation,
                    x,
                    first,
                    out: piece,
                    scratch: buf,
                });
                Ok(())
            },
        )
    }

    /// Whether this is a fully connected layer written as a 1x1 conv on a 1x1 plane
    /// (DenseNet's and SqueezeNet-style classifiers): one group, nothing but the weights'
    /// rows dotted with the input's channels, which [`super::matmul::dot_rows`] streams once.
    fn dot_case(&self, geo: &Geo) -> bool {
        self.path == ConvPath::Pointwise
            && self.attrs.group == 1
            && geo.in_plane() == 1
            && geo.out_plane() == 1
    }

    /// Whether a pointwise conv runs the direct kernel ([`PointwiseRows`]) instead of GEMM
    /// calls: when a group's filter is small (it is re-read from cache for every block of
    /// positions, and a short reduction gives the GEMM's packing little to amortise).
    /// Measured on the shared models: the direct kernel wins up to about K = 128 with a
    /// filter of up to 64 Ki elements, and loses beyond. Weights-determined, so the choice
    /// never depends on `threads`. Planes of fewer than `PW_MIN_PLANE` positions (squeeze-
    /// excitation's 1x1) would fill vectors with masked lanes, so they keep the GEMM, and so
    /// does a narrowing conv on a large plane (`PW_NARROW_MIN_K`; one process, the paths
    /// alternating, medians, 1 thread, direct / GEMM: 64->16 on 55x55 1.2-1.35, 96->24 on
    /// 56x56 1.06-1.35, 64->32 on 56x56 1.04-1.39; 128->32 on 27x27 0.89-1.13).
    fn direct_pointwise(&self, geo: &Geo) -> bool {
        let c_out_g = self.c_out / self.attrs.group;
        self.path == ConvPath::Pointwise
            && self.c_in_g <= PW_MAX_K
            && c_out_g * self.c_in_g <= PW_MAX_FILTER
            && geo.out_plane() >= PW_MIN_PLANE
            && (self.attrs.group > 1
                || c_out_g >= self.c_in_g
                || self.c_in_g < PW_NARROW_MIN_K
                || geo.out_plane() <= PW_NARROW_MAX_PLANE)
    }

    /// A pointwise conv through [`PointwiseRows`]: whole groups per worker; for one group
    /// whole blocks of `PW_ROWS` output channels per worker, or, with fewer than two blocks
    /// per worker, a band of positions of every channel per worker.
    fn run_pointwise(&self, x: &[f32], out: &mut [f32], geo: &Geo, threads: usize, res: Res<'_>) {
        let group = self.attrs.group;
        let c_out_g = self.c_out / group;
        let (p, kdim) = (geo.out_plane(), self.c_in_g);
        let w = self.weights.get();
        let offs: Vec<usize> = (0..kdim).map(|k| k * p).collect();
        let rows = |co: usize, xg: &[f32], out: &mut [&mut [f32]], q0: usize, q1: usize| {
            let n = out.len();
            pulp::Arch::new().dispatch(PointwiseRows {
                w: &w[co * kdim..(co + n) * kdim],
                kdim,
                x: xg,
                offs: &offs,
                q0,
                q1,
                bias: self.bias.as_deref().map(|b| &b[co..co + n]),
                act: self.activation,
                res: res.rows(co, p, 0),
                out,
            });
        };
        if group > 1 {
            par_chunks(out, c_out_g * p, threads, 1, |first, piece| {
                for (gi, gout) in piece.chunks_mut(c_out_g * p).enumerate() {
                    let g = first + gi;
                    let mut planes: Vec<&mut [f32]> = gout.chunks_mut(p).collect();
                    rows(
                        g * c_out_g,
                        &x[g * kdim * p..(g + 1) * kdim * p],
                        &mut planes,
                        0,
                        p,
                    );
                }
            });
            return;
        }
        // SqueezeNet's 16-channel squeezes on 55x55 are 3 blocks: split by channels, two
        // workers share them 2 : 1 and each reads the whole input; by positions each reads
        // half of it. A large input goes by positions too (see `PW_BAND_MIN_INPUT`).
        let nw = workers(p.div_ceil(PW_POS_BAND), threads);
        if nw > 1 && (c_out_g < 2 * PW_ROWS * nw || kdim * p * 4 >= PW_BAND_MIN_INPUT) {
            let per = p.div_ceil(nw).div_ceil(PW_POS_BAND) * PW_POS_BAND;
            let bounds: Vec<usize> = (0..=nw).map(|i| (i * per).min(p)).collect();
            let parts: Vec<(usize, Vec<&mut [f32]>)> = cut_planes(out, p, &bounds)
                .into_iter()
                .enumerate()
                .map(|(i, r)| (bounds[i], r))
                .collect();
            let _ = par_workers(parts, |(q0, mut band)| {
                let q1 = band.first().map_or(q0, |r| q0 + r.len());
                rows(0, x, &mut band, q0, q1);
                Ok::<(), KernelError>(())
            });
            return;
        }
        par_chunks(out, PW_ROWS * p, threads, 1, |first, piece| {
            let mut planes: Vec<&mut [f32]> = piece.chunks_mut(p).collect();
            rows(first * PW_ROWS, x, &mut planes, 0, p);
        });
    }

    fn run_gemm(
        &self,
        x: &[f32],
        out: &mut [f32],
        geo: &Geo,
        scratch: &mut [f32],
        threads: usize,
        res: Res<'_>,
    ) -> KernelResult<()> {
        if let (Some(wp), Some(wg)) = (&self.wino, self.wino_geo(geo, threads)) {
            self.run_wino(wp, wg, x, out, geo, scratch, threads);
            return Ok(());
        }
        if self.dot_case(geo) {
            // A classifier as a 1x1 conv on a 1x1 plane: one dot product per output channel.
            match &self.bias {
                Some(b) => out.copy_from_slice(b),
                None => out.fill(0.0),
            }
            let w = self.weights.get();
            super::matmul::dot_rows(x, w, self.c_in_g, out, 1.0, true, threads);
            if let Some(act) = self.activation {
                apply_activation(act, out);
            }
            return Ok(());
        }
        if let Some(co) = self.co.as_ref().filter(|_| self.co_eligible(geo)) {
            self.run_co(co, x, out, geo, scratch, threads, res);
            return Ok(());
        }
        if self.direct_pointwise(geo) {
            self.run_pointwise(x, out, geo, threads, res);
            return Ok(());
        }
        if let Some(d) = self.direct(geo) {
            self.run_direct(x, out, geo, &d, scratch, threads);
            return Ok(());
        }
        let group = self.attrs.group;
        let c_out_g = self.c_out / group;
        let (ip, p) = (geo.in_plane(), geo.out_plane());
        let (_, n_tiles) = self.tiles(geo);
        let per_worker = self.scratch_per_worker(geo);
        let xg = |g: usize| &x[g * self.c_in_g * ip..(g + 1) * self.c_in_g * ip];
        if group > 1 {
            // Whole groups per worker: each group's rows are one contiguous chunk.
            return par_chunks_scratch(
                out,
                c_out_g * p,
                threads,
                scratch,
                per_worker,
                |first, piece, scr| {
                    for (gi, gout) in piece.chunks_mut(c_out_g * p).enumerate() {
                        let g = first + gi;
                        let mut rows: Vec<&mut [f32]> = gout.chunks_mut(p).collect();
                        self.group_tiles(xg(g), g, 0, &mut rows, 0, n_tiles, scr, geo, res)?;
                    }
                    Ok(())
                },
            );
        }
        let ct = self.co_tile(geo);
        if ct < c_out_g {
            // Fixed output-channel tiles: each worker owns whole rows of its channels.
            return par_chunks_scratch(
                out,
                ct * p,
                threads,
                scratch,
                per_worker,
                |first, piece, scr| {
                    let mut rows: Vec<&mut [f32]> = piece.chunks_mut(p).collect();
                    self.group_tiles(xg(0), 0, first * ct, &mut rows, 0, n_tiles, scr, geo, res)
                },
            );
        }
        // One group: workers take contiguous ranges of position tiles; each output row is cut
        // at the workers' boundaries so every worker owns its part of every row.
        let (t, _) = self.tiles(geo);
        let nw = workers(n_tiles, threads);
        let per = n_tiles.div_ceil(nw);
        let bounds: Vec<usize> = (0..=nw).map(|w| (w * per * t).min(p)).collect();
        let mut parts: Vec<WorkerPart<'_>> = Vec::with_capacity(nw);
        let mut scr_rest = scratch;
        for (w, rows) in cut_planes(out, p, &bounds).into_iter().enumerate() {
            let (sp, tail) = scr_rest.split_at_mut(per_worker.min(scr_rest.len()));
            scr_rest = tail;
            parts.push((w * per, rows, sp));
        }
        par_workers(parts, |(t0, mut rows, scr)| {
            let t1 = (t0 + per).min(n_tiles);
            self.group_tiles(xg(0), 0, 0, &mut rows, t0, t1, scr, geo, res)
        })
    }

    /// Whether an input of shape `x_shape` runs as dot products (tests check the choice).
    #[cfg(test)]
    pub(crate) fn uses_dot(&self, x_shape: &[usize]) -> KernelResult<bool> {
        Ok(self.dot_case(&self.geo(x_shape)?))
    }

    /// Whether an input of shape `x_shape` runs the Winograd kernel (tests check the choice).
    #[cfg(test)]
    pub(crate) fn uses_wino(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.wino.is_some() && self.wino_geo(&geo, 1).is_some())
    }

    /// Whether an input of shape `x_shape` runs the channel-vectorised kernel (tests check
    /// the choice).
    #[cfg(test)]
    pub(crate) fn uses_co(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.co.is_some() && self.co_eligible(&geo))
    }

    /// Whether an input of shape `x_shape` runs the small-plane "same" depthwise kernel
    /// (tests check the choice).
    #[cfg(test)]
    pub(crate) fn uses_dw_same(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.path == ConvPath::Depthwise
            && !dw_t_taken(&geo, self.c_out)
            && dw_same(&geo).is_some())
    }

    /// Whether an input of shape `x_shape` runs the stride-2 even-width depthwise kernel
    /// (tests check the choice).
    #[cfg(test)]
    pub(crate) fn uses_dw_stride2(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.path == ConvPath::Depthwise
            && !dw_t_taken(&geo, self.c_out)
            && dw_same(&geo).is_none()
            && !dw_rows(&geo)
            && dw_stride2(&geo).is_some())
    }

    /// Whether an input of shape `x_shape` runs the channels-in-lanes depthwise kernel
    /// (tests check the choice).
    #[cfg(test)]
    pub(crate) fn uses_dw_t(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.path == ConvPath::Depthwise && dw_t_taken(&geo, self.c_out))
    }

    /// Whether an input of shape `x_shape` runs the AVX-512 stride-2 row kernel (tests check
    /// the choice).
    #[cfg(test)]
    pub(crate) fn uses_dw_rows(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.path == ConvPath::Depthwise
            && !dw_t_taken(&geo, self.c_out)
            && dw_same(&geo).is_none()
            && dw_rows(&geo))
    }

    /// Whether an input of shape `x_shape` runs the direct pointwise kernel (tests check the
    /// choice).
    #[cfg(test)]
    pub(crate) fn uses_pointwise_rows(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(self.direct_pointwise(&geo))
    }

    /// Whether an input of shape `x_shape` runs the direct stride-1 kernel (tests check the
    /// choice).
    #[cfg(test)]
    pub(crate) fn uses_direct(&self, x_shape: &[usize]) -> KernelResult<bool> {
        let geo = self.geo(x_shape)?;
        Ok(!self.direct_pointwise(&geo) && self.direct(&geo).is_some())
    }

    /// Whether (and how) the conv runs the direct stride-1 kernel ([`DirectRows`]): one group,
    /// stride 1 on a 2-D (or 1-D) input. Shape-determined, never by `threads`.
    fn direct(&self, geo: &Geo) -> Option<PaddedInput> {
        let two_d = geo.k[0] == 1 && geo.input[0] == 1 && geo.out[0] == 1;
        if self.path == ConvPath::Depthwise
            || self.attrs.group != 1
            || !two_d
            || geo.s != [1, 1, 1]
            || geo.out_plane() == 0
        {
            return None;
        }
        let padded = self.padded_input(geo);
        // Flat positions past each output row are computed and dropped, and the last block
        // is rounded up to whole vectors. The kernel itself runs a little faster than the
        // GEMM path, so it pays off only with almost no waste: `kernel_bench` has it 6-12 %
        // ahead on 55x55 to 224x224 planes (>= 96 % useful) and 5-10 % behind on 27x27 and
        // 28x28 ones (87.5 %). Pointwise convs have no waste but measured no faster than the
        // GEMM path, so they keep it.
        let flat = (geo.out[1] - 1) * padded.wp + geo.out[2];
        if self.path == ConvPath::Pointwise
            || geo.out_plane() * 100 < flat.div_ceil(DIRECT_TILE) * DIRECT_TILE * 93
        {
            return None;
        }
        Some(padded)
    }

    /// The Winograd geometry where F(2x2, 3x3) suits this conv: one group, 2-D, 3x3, stride
    /// and dilation 1, at least `WINO_MIN_C_IN` input and `WINO_MIN_C_OUT` output channels,
    /// output channels filling 90 % of blocks of 32 (the products run the channel-vectorised
    /// kernel), a plane of at least `WINO_MIN_PLANE` outputs (28x28 for filters above
    /// `WINO_WIDE_FILTER`) and rows of at most `2 * MAX_TW`, and a filter of at most `WINO_MAX_FILTER` elements (the transformed
    /// filter holds 16/9 of it). Shape-determined; `threads` only sets how many chunks the
    /// plane is cut into (one per worker at least), which changes no element's arithmetic.
    fn wino_geo(&self, geo: &Geo, threads: usize) -> Option<WinoGeo> {
        let two_d = geo.k[0] == 1 && geo.input[0] == 1 && geo.out[0] == 1;
        let ok = self.path == ConvPath::Im2col
            && self.attrs.group == 1
            && two_d
            && geo.k == [1, 3, 3]
            && geo.s == [1, 1, 1]
            && geo.d == [1, 1, 1]
            && if self.wino_tiles() {
                // Tiles in lanes (see `conv_wino::TileProducts`).
                if self.c_out >= WINO_MIN_C_OUT {
                    self.c_in_g >= WINO_TILES_MIN_C_IN
                        && self.c_out >= WINO_TILES_MIN_C_OUT
                        && geo.out_plane() >= WINO_TILES_MIN_PLANE
                } else {
                    // Too few outputs for the channel-vectorised products.
                    self.c_in_g >= WINO_MIN_C_IN
                        && self.c_out >= WINO_NARROW_MIN_C_OUT
                        && geo.out_plane() >= WINO_NARROW_MIN_PLANE
                }
            } else {
                self.c_out >= WINO_MIN_C_OUT
                    && self.c_out * 10 >= self.c_out.div_ceil(CO_BLOCK) * CO_BLOCK * 9
                    && geo.out_plane() >= WINO_MIN_PLANE
                    && (self.c_out * self.c_in_g <= WINO_WIDE_FILTER || geo.out_plane() >= 28 * 28)
            }
            && geo.out[2] <= 2 * MAX_TW
            && self.c_out * self.c_in_g <= WINO_MAX_FILTER;
        ok.then(|| {
            WinoGeo::new(
                self.c_in_g,
                self.c_out,
                geo.out[1],
                geo.out[2],
                workers(geo.out[1].div_ceil(2), threads),
                self.wino_tiles(),
            )
        })
    }

    /// Whether a Winograd conv runs its products with tiles in lanes (fewer than
    /// `WINO_MIN_C_IN` input channels: short products, see `conv_wino::TileProducts`; or
    /// fewer than `WINO_MIN_C_OUT` output channels, too few for the channel-vectorised ones).
    fn wino_tiles(&self) -> bool {
        self.c_in_g < WINO_MIN_C_IN || self.c_out < WINO_MIN_C_OUT
    }

    /// A conv through [`WinoChunks`]: the input padded once into `scratch` (to whole
    /// tiles), then bands of tile rows per worker, each with its own transform scratch.
    #[allow(clippy::too_many_arguments)]
    fn run_wino(
        &self,
        packed: &WinoPacked,
        wg: WinoGeo,
        x: &[f32],
        out: &mut [f32],
        geo: &Geo,
        scratch: &mut [f32],
        threads: usize,
    ) {
        let [_, h, w] = geo.input;
        let (pt, pl) = (geo.pb[1], geo.pb[2]);
        let padded_len = wg.c_in * wg.hp * wg.wp;
        let (pad_buf, rest) = scratch.split_at_mut(padded_len);
        pad_planes(
            x,
            wg.c_in,
            h,
            w,
            [pt, pl, wg.hp - h - pt, wg.wp - w - pl],
            pad_buf,
            threads,
        );
        let (vact, act_rest) = DwAct::split(self.activation);
        let (p, rpc, chunks) = (wg.ho * wg.wo, wg.rows_per_chunk(), wg.chunks());
        let nw = workers(chunks, threads);
        let per = chunks.div_ceil(nw);
        // Worker i: chunks [i * per, (i + 1) * per), output rows from 2 * rpc * i * per.
        let bounds: Vec<usize> = (0..=nw)
            .map(|i| (2 * rpc * (i * per).min(chunks)).min(wg.ho) * wg.wo)
            .collect();
        let mut parts: Vec<WorkerPart<'_>> = Vec::with_capacity(nw);
        let mut scr = rest;
        for (i, rows) in cut_planes(out, p, &bounds).into_iter().enumerate() {
            let (s, tail) = scr.split_at_mut(wg.worker_scratch());
            scr = tail;
            parts.push((i * per, rows, s));
        }
        let _ = par_workers(parts, |(c0, mut rows, s)| {
            WinoChunks {
                packed,
                g: wg,
                x: pad_buf,
                bias: self.bias.as_deref(),
                act: vact,
                c0,
                c1: (c0 + per).min(chunks),
                out: &mut rows,
                scratch: s,
            }
            .run();
            apply_rest(act_rest, &mut rows);
            Ok::<(), KernelError>(())
        });
    }

    /// A stride-1 conv through [`DirectRows`]: the input padded once into `scratch` (when it
    /// has padding), then bands of output rows per worker.
    fn run_direct(
        &self,
        x: &[f32],
        out: &mut [f32],
        geo: &Geo,
        d: &PaddedInput,
        scratch: &mut [f32],
        threads: usize,
    ) {
        let [_, h, w] = geo.input;
        let src: &[f32] = if d.padded_len > 0 {
            let buf = &mut scratch[..d.padded_len];
            pad_planes(x, self.c_in_g, h, w, d.pads, buf, threads);
            buf
        } else {
            x
        };
        let kdim = self.c_in_g * geo.kprod();
        let offs = tap_offsets(
            self.c_in_g,
            d.hp,
            d.wp,
            [geo.k[1], geo.k[2]],
            [geo.d[1], geo.d[2]],
        );
        let flat = Flat {
            wp: d.wp,
            w_out: geo.out[2],
        };
        let (p, h_out, w_out) = (geo.out_plane(), geo.out[1], geo.out[2]);
        let run = |y0: usize, y1: usize, rows: &mut [&mut [f32]]| {
            pulp::Arch::new().dispatch(DirectRows {
                w: self.weights.get(),
                kdim,
                x: src,
                offs: &offs,
                flat,
                bias: self.bias.as_deref(),
                act: self.activation,
                y0,
                y1,
                out: rows,
            });
        };
        // Workers share output rows (every channel of a band of rows): each reads only its
        // band of the input, and the split never changes an element's arithmetic.
        let pieces = workers(h_out, threads);
        if pieces <= 1 {
            let mut rows: Vec<&mut [f32]> = out.chunks_mut(p).collect();
            run(0, h_out, &mut rows);
            return;
        }
        let per = h_out.div_ceil(pieces);
        let bounds: Vec<usize> = (0..=pieces).map(|i| (i * per).min(h_out) * w_out).collect();
        let parts: Vec<(usize, Vec<&mut [f32]>)> = cut_planes(out, p, &bounds)
            .into_iter()
            .enumerate()
            .map(|(i, rows)| (i * per, rows))
            .collect();
        let _ = par_workers(parts, |(y0, mut rows)| {
            run(y0, (y0 + per).min(h_out), &mut rows);
            Ok::<(), KernelError>(())
        });
    }

    /// Computes position tiles `[t0, t1)` of group `g` into `rows` (one slice per output
    /// channel, for the group's channels `co_first..co_first + rows.len()`, each starting at
    /// position `t0 * tile`): im2col (or a direct view) once per position tile, then per
    /// channel tile one GEMM into the staging tile and a copy into the rows with bias and
    /// activation.
    #[allow(clippy::too_many_arguments)]
    fn group_tiles(
        &self,
        xg: &[f32],
        g: usize,
        co_first: usize,
        rows: &mut [&mut [f32]],
        t0: usize,
        t1: usize,
        scr: &mut [f32],
        geo: &Geo,
        res: Res<'_>,
    ) -> KernelResult<()> {
        let c_out_g = self.c_out / self.attrs.group;
        let kdim = self.c_in_g * geo.kprod();
        let p = geo.out_plane();
        let (pt, _) = self.tiles(geo);
        let col_len = if self.path == ConvPath::Im2col {
            kdim * pt
        } else {
            0
        };
        let (col, stage) = scr.split_at_mut(col_len);
        let ct = self.co_tile(geo);
        // Im2col tiles with a short reduction run the direct kernel; row k of a tile of `t`
        // positions starts at k * t (the last tile may be shorter, so offsets per tile).
        let direct = self.im2col_direct(geo);
        let mut tile_offs: Option<Vec<usize>> = direct.then(|| vec![0; kdim]);
        for tile in t0..t1 {
            let p0 = tile * pt;
            let t = pt.min(p - p0);
            let lhs = if self.path == ConvPath::Im2col {
                let c = &mut col[..kdim * t];
                // Dispatched: the stride-2 gather's even/odd shuffles ran 4 lanes wide.
                super::broadcast::simd_dispatch(
                    #[inline(always)]
                    || im2col_tile(xg, self.c_in_g, geo, p0, t, c),
                );
                HostMat {
                    data: c,
                    rows: t,
                    cols: kdim,
                    row_stride: 1,
                    col_stride: t,
                }
            } else {
                HostMat {
                    data: &xg[p0..],
                    rows: t,
                    cols: kdim,
                    row_stride: 1,
                    col_stride: p,
                }
            };
            if let Some(offs) = tile_offs.as_mut() {
                for (k, o) in offs.iter_mut().enumerate() {
                    *o = k * t;
                }
            }
            let off = p0 - t0 * pt;
            for (ti, trows) in rows.chunks_mut(ct).enumerate() {
                let co = g * c_out_g + co_first + ti * ct;
                let n = trows.len();
                if let Some(offs) = &tile_offs {
                    // Short reduction: the register-blocked kernel on the im2col tile
                    // (rows of `t` positions) beats the GEMM's packing, and writes the
                    // output rows itself, bias and activation included (no staging pass:
                    // SqueezeNet's 3x3/2 stem over RGB, 3.2 MB of output, 0.555 -> 0.483 ms
                    // at 1 thread, MobileNetV2's 0.313 -> 0.298).
                    let mut out_rows: Vec<&mut [f32]> =
                        trows.iter_mut().map(|r| &mut r[off..off + t]).collect();
                    pulp::Arch::new().dispatch(PointwiseRows {
                        w: &self.weights.get()[co * kdim..(co + n) * kdim],
                        kdim,
                        x: lhs.data,
                        offs: &offs[..kdim],
                        q0: 0,
                        q1: t,
                        bias: self.bias.as_deref().map(|b| &b[co..co + n]),
                        act: self.activation,
                        res: res.rows(co, p, p0),
                        out: &mut out_rows,
                    });
                    continue;
                }
                let st = &mut stage[..n * t];
                {
                    host_sgemm(
                        HostMatMut {
                            data: st,
                            rows: t,
                            cols: n,
                            row_stride: 1,
                            col_stride: t,
                        },
                        lhs,
                        HostMat {
                            data: &self.weights.get()[co * kdim..(co + n) * kdim],
                            rows: kdim,
                            cols: n,
                            row_stride: 1,
                            col_stride: kdim,
                        },
                        None,
                        1.0,
                    )
                    .map_err(|source| KernelError::Gemm { op: "Conv", source })?;
                }
                // Under pulp's dispatch: compiled for the baseline, this pass ran 4 lanes wide
                // (3 % of a SqueezeNet inference in `perf`).
                super::broadcast::simd_dispatch(
                    #[inline(always)]
                    || {
                        for (r, (row, src)) in trows.iter_mut().zip(st.chunks(t)).enumerate() {
                            let dst = &mut row[off..off + t];
                            let bias = self.bias.as_ref().map(|b| b[co + r]);
                            let res = match res {
                                Res::None => StageRes::None,
                                Res::InPlace => StageRes::InPlace,
                                Res::Separate(data) => {
                                    let at = (co + r) * p + p0;
                                    StageRes::Separate(&data[at..at + t])
                                }
                            };
                            // Bias, residual and activation in the one pass that moves the
                            // staged tile.
                            let act = self.activation.unwrap_or(UnaryOp::Identity);
                            with_unary(
                                act,
                                StageMap {
                                    src,
                                    dst,
                                    bias,
                                    res,
                                },
                            );
                        }
                    },
                );
            }
        }
        Ok(())
    }
}

/// A staged GEMM tile into its output row: `dst = f(src + bias + res)` (without a bias
/// `f(src + res)`, without a residual `f(src + bias)`, so a `-0.0` stays `-0.0` exactly as with
/// separate passes).
struct StageMap<'a> {
    src: &'a [f32],
    dst: &'a mut [f32],
    bias: Option<f32>,
    res: StageRes<'a>,
}

/// A staged tile's residual: none, its own run, or the destination's current values.
#[derive(Clone, Copy)]
enum StageRes<'a> {
    None,
    Separate(&'a [f32]),
    InPlace,
}

impl UnaryMap for StageMap<'_> {
    #[inline(always)]
    fn map(self, f: impl Fn(f32) -> f32 + Copy + Sync) {
        let conv = |s: f32| match self.bias {
            Some(bv) => s + bv,
            None => s,
        };
        match self.res {
            StageRes::None => {
                for (d, &s) in self.dst.iter_mut().zip(self.src) {
                    *d = f(conv(s));
                }
            }
            StageRes::Separate(r) => {
                for ((d, &s), &rv) in self.dst.iter_mut().zip(self.src).zip(r) {
                    *d = f(conv(s) + rv);
                }
            }
            StageRes::InPlace => {
                for (d, &s) in self.dst.iter_mut().zip(self.src) {
                    *d = f(conv(s) + *d);
                }
            }
        }
    }
}

pub(crate) fn apply_activation(act: UnaryOp, data: &mut [f32]) {
    // Single-threaded: callers already run inside a worker.
    let _ = super::elementwise::unary_f32_inplace(act, data, 1);
}

/// The activation a kernel's epilogue could not apply ([`DwAct::split`]'s rest), over its
/// output rows.
fn apply_rest(act: Option<UnaryOp>, rows: &mut [&mut [f32]]) {
    if let Some(act) = act {
        for row in rows.iter_mut() {
            apply_activation(act, row);
        }
    }
}

/// The valid output range `[lo, hi)` of `o` in `[o_start, o_start + len)` for which
/// `o * s + off` lies in `[0, n)`.
pub(super) fn valid_range(
    o_start: usize,
    len: usize,
    s: usize,
    off: isize,
    n: usize,
) -> (usize, usize) {
    let (a, b) = (o_start, o_start + len);
    if s == 1 {
        // The common case, without divisions.
        let lo = (-off).max(0) as usize;
        let hi = ((n as isize) - off).max(0) as usize;
        let lo = lo.clamp(a, b);
        return (lo, hi.clamp(lo, b));
    }
    let s_i = s as isize;
    // smallest o with o*s + off >= 0
    let lo = if off >= 0 {
        0
    } else {
        ((-off) + s_i - 1) / s_i
    } as usize;
    // smallest o with o*s + off >= n
    let hi = if (n as isize) - off <= 0 {
        0
    } else {
        (((n as isize) - off) + s_i - 1) / s_i
    } as usize;
    let lo = lo.clamp(a, b);
    let hi = hi.clamp(lo, b);
    (lo, hi)
}

/// Fills `dst[i] = src[(o_start + i) * s + off]` (0 where outside `src`).
#[inline(always)]
fn gather_row(dst: &mut [f32], src: &[f32], o_start: usize, s: usize, off: isize) {
    let (lo, hi) = valid_range(o_start, dst.len(), s, off, src.len());
    let (a, b) = (lo - o_start, hi - o_start);
    dst[..a].fill(0.0);
    dst[b..].fill(0.0);
    if b > a {
        let first = (lo as isize * s as isize + off) as usize;
        if s == 1 {
            dst[a..b].copy_from_slice(&src[first..first + (b - a)]);
        } else if s == 2 {
            // Even elements of pairs (vectorises; step_by does not), the last one alone
            // since it may lack a pair.
            if let Some((last, body)) = dst[a..b].split_last_mut() {
                for (d, p) in body.iter_mut().zip(src[first..].chunks_exact(2)) {
                    *d = p[0];
                }
                *last = src[first + 2 * body.len()];
            }
        } else {
            for (d, v) in dst[a..b].iter_mut().zip(src[first..].iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// Writes the im2col tile for output positions `[p0, p0 + t)`: row `r = (ci, kd, kh, kw)`
/// (weight order), column `p - p0`, row stride `t`. The tile is cut once into output-row
/// segments so the per-row loops do no index division. Inlined into its caller's dispatch.
#[inline(always)]
fn im2col_tile(xg: &[f32], c_in_g: usize, g: &Geo, p0: usize, t: usize, col: &mut [f32]) {
    let [_, ih_n, iw_n] = g.input;
    let [_, oh_n, ow_n] = g.out;
    let ip = g.in_plane();
    // (od, oh, ow_start, len, column offset)
    let mut segs = Vec::with_capacity(t / ow_n.max(1) + 2);
    let mut p = p0;
    while p < p0 + t {
        let ow = p % ow_n;
        let rest = p / ow_n;
        let end = (p - ow + ow_n).min(p0 + t);
        segs.push((rest / oh_n, rest % oh_n, ow, end - p, p - p0));
        p = end;
    }
    let mut r = 0;
    for ci in 0..c_in_g {
        let plane = &xg[ci * ip..(ci + 1) * ip];
        for kd in 0..g.k[0] {
            for kh in 0..g.k[1] {
                for kw in 0..g.k[2] {
                    let row = &mut col[r * t..(r + 1) * t];
                    r += 1;
                    let off_w = (kw * g.d[2]) as isize - g.pb[2] as isize;
                    for &(od, oh, ow, len, at) in &segs {
                        let dst = &mut row[at..at + len];
                        let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                        let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                        if id < 0 || id >= g.input[0] as isize || ih < 0 || ih >= ih_n as isize {
                            dst.fill(0.0);
                        } else {
                            let base = (id as usize * ih_n + ih as usize) * iw_n;
                            gather_row(dst, &plane[base..base + iw_n], ow, g.s[2], off_w);
                        }
                    }
                }
            }
        }
    }
}

/// A 2-D (or 1-D) convolution's geometry in its two plane axes; `None` for 3-D.
fn plane2(g: &Geo) -> Option<Plane2> {
    if g.input[0] != 1 || g.k[0] != 1 || g.out[0] != 1 {
        return None;
    }
    Some(Plane2 {
        input: [g.input[1], g.input[2]],
        out: [g.out[1], g.out[2]],
        kernel: [g.k[1], g.k[2]],
        strides: [g.s[1], g.s[2]],
        dilations: [g.d[1], g.d[2]],
        pads_begin: [g.pb[1], g.pb[2]],
    })
}

/// Channels per block of the channels-in-lanes depthwise kernel ([`DwT`]).
#[cfg(target_arch = "x86_64")]
const DW_T_BLOCK: usize = 16;

/// The channels-in-lanes depthwise geometry ([`DwT`]), when it applies: it goes before
/// every other depthwise kernel, within its plane limits (see [`DwT::new`]). Time against
/// the kernels it replaced (`kernel_bench`, 1 / 2 threads): 5x5 576x7x7 0.79 / 0.80,
/// 240x14x14 0.74 / 0.79, 120x28x28 0.92 / 0.89, 5x5/2 96x28x28 0.70 / 0.76, 72x56x56
/// 0.82 / 1.01; 3x3/2 576x14x14 0.63 / 0.64, 232x14x14 0.71 / 0.70 (session 21). Since the
/// 3x3 taps run from registers (session 22), also 3x3 at stride 1: 144x56x56 0.79-0.82 /
/// 0.72-0.83, 192x28x28 0.65-0.83 / 0.63-0.81, 576x14x14 0.75-0.92 / 0.76-0.80, 960x7x7
/// 0.79-0.84 / 0.49-0.74, 464x7x7 0.75 / 0.69; and 3x3/2 onto 28x28 and 14x14: 144x56x56
/// 0.83-0.86 / 0.84-0.87, 192x28x28 0.79-0.81 / 0.79-0.86.
#[cfg(target_arch = "x86_64")]
fn dw_t(g: &Geo, channels: usize) -> Option<DwT> {
    plane2(g).and_then(|p| DwT::new(p, channels))
}

/// Whether [`DwT`] takes this depthwise geometry (before every other kernel).
#[cfg(test)]
fn dw_t_taken(g: &Geo, channels: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return dw_t(g, channels).is_some();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The small-plane stride-1 "same" depthwise geometry ([`DwSame`]), when it applies.
fn dw_same(g: &Geo) -> Option<DwSame> {
    plane2(g).and_then(DwSame::new)
}

/// Whether the AVX-512 stride-2 row kernel ([`DwRows`]) takes this depthwise geometry.
#[cfg(test)]
fn dw_rows(g: &Geo) -> bool {
    #[cfg(target_arch = "x86_64")]
    return plane2(g).and_then(DwRows::new).is_some();
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// The stride-2 even-width depthwise geometry ([`DwStride2`]), when it applies.
fn dw_stride2(g: &Geo) -> Option<DwStride2> {
    plane2(g).and_then(DwStride2::new)
}

/// Output positions of one depthwise block: 4 vectors of up to 16 lanes. The flat output is
/// computed in whole blocks, so the staging area and the input copy are sized in them.
const DW_BLOCK: usize = 64;
/// Vectors one depthwise block accumulates together: four independent FMA chains, so their
/// latency overlaps (one chain alone is latency-bound).
const DW_VECS: usize = 4;

/// The 2-D (and 1-D) depthwise kernel's view of one input plane: a zero-padded copy split by
/// phase modulo the row and the column stride, so that output `(oh, ow)` at flat position
/// `q = oh * width + ow` reads tap `(kh, kw)` at `q + taps[(kh, kw)]` for every output: each
/// tap is one contiguous load for a vector of neighbouring outputs, with no border tests and
/// no strided loads, and rows wrap into each other so short rows still fill whole vectors.
///
/// Buffer layout `[row phase][column phase][row][col]`: row `j` of row phase `a` is padded row
/// `j * s_h + a` (input row `j * s_h + a - pad_top`), and likewise for columns. The output is
/// computed on the flat grid `[out_h][width]` (`width` is the output width plus the kernel's
/// reach in phase columns; the columns past the output width are computed and dropped), in
/// whole blocks of [`DW_BLOCK`] positions, into a staging area that the activated rows are
/// then copied out of. (Measured against storing each row's vectors straight into the output:
/// the staging copy costs less than the per-step index arithmetic and bounds checks that
/// scattered steps need, and wastes fewer lanes on rows narrower than a vector multiple.)
#[derive(Debug, Clone, Copy)]
struct DwPlan {
    rows: usize,
    width: usize,
    sh: usize,
    sw: usize,
    /// Staging elements: the flat output rounded up to whole blocks.
    out_len: usize,
    /// Input copy elements: every phase plane, and room for the last block's furthest tap.
    len: usize,
}

impl DwPlan {
    /// `None` for 3-D convolutions (the direct loop handles those).
    fn new(g: &Geo) -> Option<Self> {
        if g.input[0] != 1 || g.k[0] != 1 || g.out[0] != 1 {
            return None;
        }
        let (sh, sw) = (g.s[1], g.s[2]);
        let rows = g.out[1] + (g.k[1] - 1) * g.d[1] / sh;
        let width = g.out[2] + (g.k[2] - 1) * g.d[2] / sw;
        let out_len = (g.out[1] * width).next_multiple_of(DW_BLOCK);
        let mut plan = Self {
            rows,
            width,
            sh,
            sw,
            out_len,
            len: 0,
        };
        let reach = plan.taps(g).into_iter().max().unwrap_or(0);
        plan.len = (sh * sw * rows * width).max(out_len + reach);
        Some(plan)
    }

    /// Offset of each tap `(kh, kw)`, in weight order, from an output's flat position.
    fn taps(&self, g: &Geo) -> Vec<usize> {
        let mut taps = Vec::with_capacity(g.k[1] * g.k[2]);
        for kh in 0..g.k[1] {
            let r = kh * g.d[1];
            for kw in 0..g.k[2] {
                let c = kw * g.d[2];
                let phase = (r % self.sh) * self.sw + c % self.sw;
                taps.push((phase * self.rows + r / self.sh) * self.width + c / self.sw);
            }
        }
        taps
    }

    /// Zeroes the buffer: the padding is the same for every channel, so [`DwPlan::fill`]
    /// then only rewrites the positions that come from the input.
    fn clear(&self, buf: &mut [f32]) {
        buf[..self.len].fill(0.0);
    }

    /// Copies input plane `x` into its places in a [`DwPlan::clear`]ed buffer (the padding
    /// positions are never written, so they stay zero). Input rows in order, each split into
    /// its column phases while it is in L1 (the plane itself usually comes from L2 or L3).
    #[inline(always)]
    fn fill<S: pulp::Simd>(&self, simd: S, x: &[f32], g: &Geo, buf: &mut [f32]) {
        let [_, ih_n, iw_n] = g.input;
        let s = self.sw;
        // Per column phase: the columns [lo, hi) that come from the input, and the first
        // input column (kept for up to 8 phases, recomputed per row beyond).
        let col_range = |cph: usize| {
            let off = cph as isize - g.pb[2] as isize;
            let (lo, hi) = valid_range(0, self.width, s, off, iw_n);
            (
                lo,
                hi.max(lo),
                (lo as isize * s as isize + off).max(0) as usize,
            )
        };
        let mut cols = [(0usize, 0usize, 0usize); 8];
        for (cph, c) in cols.iter_mut().enumerate().take(s) {
            *c = col_range(cph);
        }
        for ih in 0..ih_n {
            let pr = ih + g.pb[1];
            let (rph, j) = (pr % self.sh, pr / self.sh);
            if j >= self.rows {
                break;
            }
            let xrow = &x[ih * iw_n..(ih + 1) * iw_n];
            for cph in 0..s {
                let (lo, hi, first) = cols.get(cph).copied().unwrap_or_else(|| col_range(cph));
                let n = hi - lo;
                if n == 0 {
                    continue;
                }
                let src = &xrow[first..];
                let at = ((rph * s + cph) * self.rows + j) * self.width + lo;
                let dst = &mut buf[at..at + n];
                if s == 1 {
                    copy_lanes(simd, dst, &src[..n]);
                } else if s == 2 {
                    // Even elements of pairs: a shape the vectoriser handles (step_by is not).
                    if let Some((last, body)) = dst.split_last_mut() {
                        for (d, p) in body.iter_mut().zip(src.chunks_exact(2)) {
                            *d = p[0];
                        }
                        *last = src[2 * (n - 1)];
                    }
                } else {
                    for (d, v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                        *d = *v;
                    }
                }
            }
        }
    }
}

/// The flat depthwise output into `stage` (whole blocks): `bias + sum of w * x` over the `T`
/// taps in weight order, one fused multiply-add per tap (padding taps add `w * 0`). `T` is
/// fixed so the tap loop unrolls and the weights stay in registers.
#[inline(always)]
fn dw_blocks_fixed<S: pulp::Simd, const T: usize>(
    simd: S,
    buf: &[f32],
    taps: &[usize; T],
    w: &[f32; T],
    bias: f32,
    stage: &mut [f32],
) {
    let lanes = S::F32_LANES;
    let blk = DW_VECS * lanes;
    let wv: [S::f32s; T] = w.map(|v| simd.splat_f32s(v));
    for (bi, out) in stage.chunks_exact_mut(blk).enumerate() {
        let q0 = bi * blk;
        let mut acc = [simd.splat_f32s(bias); DW_VECS];
        for t in 0..T {
            // One bounds check per tap; the loads below are at constant offsets in it.
            let src = &buf[q0 + taps[t]..q0 + taps[t] + blk];
            for (r, a) in acc.iter_mut().enumerate() {
                let v = load::<S>(&src[r * lanes..]);
                *a = simd.mul_add_f32s(wv[t], v, *a);
            }
        }
        out.copy_from_slice(bytemuck::cast_slice(&acc));
    }
}

/// [`dw_blocks_fixed`] for any tap count (the same arithmetic, the tap loop not unrolled).
#[inline(always)]
fn dw_blocks<S: pulp::Simd>(
    simd: S,
    buf: &[f32],
    taps: &[usize],
    w: &[f32],
    bias: f32,
    stage: &mut [f32],
) {
    let lanes = S::F32_LANES;
    let blk = DW_VECS * lanes;
    for (bi, out) in stage.chunks_exact_mut(blk).enumerate() {
        let q0 = bi * blk;
        let mut acc = [simd.splat_f32s(bias); DW_VECS];
        for (&t, &wt) in taps.iter().zip(w) {
            let wt = simd.splat_f32s(wt);
            let src = &buf[q0 + t..q0 + t + blk];
            for (r, a) in acc.iter_mut().enumerate() {
                let v = load::<S>(&src[r * lanes..]);
                *a = simd.mul_add_f32s(wt, v, *a);
            }
        }
        out.copy_from_slice(bytemuck::cast_slice(&acc));
    }
}

/// A fused activation the depthwise kernel applies to whole vectors before it stores them;
/// any other activation runs over the finished plane ([`with_unary`]).
#[derive(Debug, Clone, Copy)]
pub(super) enum DwAct {
    /// No activation.
    None,
    /// `x > 0 ? x : 0` (NaN gives 0, as `f32::max(x, 0.0)`).
    Relu,
    /// `min(max(x, min), max)` (NaN passes through; `max` wins when `min > max`), as
    /// [`UnaryOp::Clip`].
    Clip(f32, f32),
}

impl DwAct {
    /// The vector form of `act` and the activation left for a pass over the plane.
    pub(super) fn split(act: Option<UnaryOp>) -> (Self, Option<UnaryOp>) {
        match act {
            None => (DwAct::None, None),
            Some(UnaryOp::Relu) => (DwAct::Relu, None),
            Some(UnaryOp::Clip { min, max }) => (DwAct::Clip(min, max), None),
            Some(other) => (DwAct::None, Some(other)),
        }
    }

    /// The same on one value.
    pub(super) fn scalar(self, v: f32) -> f32 {
        match self {
            DwAct::None => v,
            DwAct::Relu => {
                if v > 0.0 {
                    v
                } else {
                    0.0
                }
            }
            DwAct::Clip(min, max) => {
                let v = if v < min { min } else { v };
                if v > max {
                    max
                } else {
                    v
                }
            }
        }
    }

    #[inline(always)]
    pub(super) fn apply<S: pulp::Simd>(self, simd: S, v: S::f32s) -> S::f32s {
        match self {
            DwAct::None => v,
            DwAct::Relu => {
                let z = simd.splat_f32s(0.0);
                simd.select_f32s(simd.greater_than_f32s(v, z), v, z)
            }
            DwAct::Clip(min, max) => {
                let (lo, hi) = (simd.splat_f32s(min), simd.splat_f32s(max));
                let v = simd.select_f32s(simd.less_than_f32s(v, lo), lo, v);
                simd.select_f32s(simd.greater_than_f32s(v, hi), hi, v)
            }
        }
    }
}

/// The staged flat output (rows of `width`) into the output plane (rows of `ow`), through
/// the vector activation; whole vectors, the end of each row masked.
#[inline(always)]
fn dw_compact<S: pulp::Simd>(
    simd: S,
    act: DwAct,
    stage: &[f32],
    width: usize,
    out: &mut [f32],
    ow: usize,
) {
    let lanes = S::F32_LANES;
    for (orow, srow) in out.chunks_exact_mut(ow).zip(stage.chunks(width)) {
        let mut d = orow.chunks_exact_mut(lanes);
        let mut x0 = 0;
        for dc in &mut d {
            let v = act.apply(simd, load::<S>(&srow[x0..]));
            dc.copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&v)));
            x0 += lanes;
        }
        let dr = d.into_remainder();
        if !dr.is_empty() {
            let v = simd.partial_load_f32s(&srow[x0..x0 + dr.len()]);
            simd.partial_store_f32s(dr, act.apply(simd, v));
        }
    }
}

/// `dst.copy_from_slice(src)` as whole-vector moves (a short row's memcpy call costs more
/// than the copy).
#[inline(always)]
fn copy_lanes<S: pulp::Simd>(simd: S, dst: &mut [f32], src: &[f32]) {
    let lanes = S::F32_LANES;
    let mut d = dst.chunks_exact_mut(lanes);
    let mut s = src.chunks_exact(lanes);
    for (dc, sc) in (&mut d).zip(&mut s) {
        dc.copy_from_slice(sc);
    }
    let (dr, sr) = (d.into_remainder(), s.remainder());
    simd.partial_store_f32s(dr, simd.partial_load_f32s(sr));
}

/// One worker's share of a 2-D depthwise conv (contiguous channels from `first`), run through
/// pulp's dispatch so its loops use the widest vector unit the CPU has.
struct DwChannels<'a> {
    conv: &'a PreparedConv,
    plan: DwPlan,
    taps: &'a [usize],
    geo: &'a Geo,
    x: &'a [f32],
    first: usize,
    out: &'a mut [f32],
    buf: &'a mut [f32],
}

impl pulp::WithSimd for DwChannels<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let (ip, op, kp) = (self.geo.in_plane(), self.geo.out_plane(), self.geo.kprod());
        let (conv, plan, taps) = (self.conv, self.plan, self.taps);
        let (buf, stage) = self.buf.split_at_mut(plan.len);
        let stage = &mut stage[..plan.out_len];
        plan.clear(buf);
        let ow = self.geo.out[2];
        let (vact, rest) = DwAct::split(conv.activation);
        for (i, oplane) in self.out.chunks_mut(op).enumerate() {
            let c = self.first + i;
            plan.fill(simd, &self.x[c * ip..(c + 1) * ip], self.geo, buf);
            let w = &conv.weights.get()[c * kp..(c + 1) * kp];
            let bias = conv.bias.as_ref().map_or(0.0, |b| b[c]);
            // 3x3 and 5x5 (any stride or dilation) unrolled; other sizes loop over the taps.
            if let (Ok(t), Ok(w)) = (<&[usize; 9]>::try_from(taps), <&[f32; 9]>::try_from(w)) {
                dw_blocks_fixed(simd, buf, t, w, bias, stage);
            } else if let (Ok(t), Ok(w)) =
                (<&[usize; 25]>::try_from(taps), <&[f32; 25]>::try_from(w))
            {
                dw_blocks_fixed(simd, buf, t, w, bias, stage);
            } else {
                dw_blocks(simd, buf, taps, w, bias, stage);
            }
            dw_compact(simd, vact, stage, plan.width, oplane, ow);
            if let Some(act) = rest {
                with_unary(act, MapInPlace(oplane));
            }
        }
    }
}

/// One depthwise output plane: `out = bias + sum over taps (kd, kh, kw) of w * x`, taps in
/// weight order, each tap a multiply-add over a run of an output row.
fn depthwise_plane(x: &[f32], w: &[f32], bias: f32, out: &mut [f32], g: &Geo) {
    let [id_n, ih_n, iw_n] = g.input;
    let [_, oh_n, ow_n] = g.out;
    for (ri, orow) in out.chunks_mut(ow_n).enumerate() {
        let (oh, od) = (ri % oh_n, ri / oh_n);
        orow.fill(bias);
        for kd in 0..g.k[0] {
            let id = (od * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
            if id < 0 || id >= id_n as isize {
                continue;
            }
            for kh in 0..g.k[1] {
                let ih = (oh * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                if ih < 0 || ih >= ih_n as isize {
                    continue;
                }
                let base = (id as usize * ih_n + ih as usize) * iw_n;
                let irow = &x[base..base + iw_n];
                for kw in 0..g.k[2] {
                    let wv = w[(kd * g.k[1] + kh) * g.k[2] + kw];
                    let off = (kw * g.d[2]) as isize - g.pb[2] as isize;
                    let (lo, hi) = valid_range(0, ow_n, g.s[2], off, iw_n);
                    if hi <= lo {
                        continue;
                    }
                    let first = (lo as isize * g.s[2] as isize + off) as usize;
                    if g.s[2] == 1 {
                        for (o, &v) in orow[lo..hi].iter_mut().zip(&irow[first..first + hi - lo]) {
                            *o += wv * v;
                        }
                    } else {
                        for (o, &v) in orow[lo..hi]
                            .iter_mut()
                            .zip(irow[first..].iter().step_by(g.s[2]))
                        {
                            *o += wv * v;
                        }
                    }
                }
            }
        }
    }
}

/// One-shot convolution: prepares the weights, allocates scratch and runs. For repeated
/// inference build a [`PreparedConv`] once instead.
///
/// # Errors
/// As [`PreparedConv::new`] and [`PreparedConv::run`].
#[allow(clippy::too_many_arguments)]
pub fn conv(
    x: &[f32],
    x_shape: &[usize],
    w: &[f32],
    w_shape: &[usize],
    bias: Option<&[f32]>,
    attrs: &ConvAttrs,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    let pc = PreparedConv::new(w, w_shape, bias, attrs.clone())?;
    let mut scratch = vec![0.0; pc.scratch_len(x_shape, threads)?];
    pc.run(x, x_shape, out, &mut scratch, threads)
}

/// Scratch elements for [`PreparedConv::run`] (free-function form for the memory planner).
///
/// # Errors
/// As [`PreparedConv::scratch_len`].
pub fn conv_scratch_len(
    conv: &PreparedConv,
    x_shape: &[usize],
    threads: usize,
) -> KernelResult<usize> {
    conv.scratch_len(x_shape, threads)
}

/// ConvTranspose attributes beyond [`ConvAttrs`]: `output_padding` per spatial axis
/// (default 0). When the model gives `output_shape`, the caller derives the pads from it per
/// the ONNX formula and passes them in `ConvAttrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvTransposeAttrs {
    /// Kernel, strides, dilations, pads and group.
    pub conv: ConvAttrs,
    /// `output_padding`.
    pub output_padding: Vec<usize>,
}

/// Output spatial extents of ConvTranspose:
/// `s * (in - 1) + output_padding + (k - 1) * d + 1 - pad_begin - pad_end`.
///
/// # Errors
/// Inconsistent attributes or a negative extent.
pub fn conv_transpose_output_spatial(
    input: &[usize],
    attrs: &ConvTransposeAttrs,
) -> KernelResult<Vec<usize>> {
    const OP: &str = "ConvTranspose";
    let c = &attrs.conv;
    c.validate(OP)?;
    if attrs.output_padding.len() != c.kernel.len() || input.len() != c.kernel.len() {
        return Err(invalid(
            OP,
            "output_padding",
            "one entry per spatial axis required",
        ));
    }
    (0..c.kernel.len())
        .map(|i| {
            let full = c.strides[i] * input[i].saturating_sub(1)
                + attrs.output_padding[i]
                + (c.kernel[i] - 1) * c.dilations[i]
                + 1;
            full.checked_sub(c.pads_begin[i] + c.pads_end[i])
                .filter(|_| input[i] > 0)
                .ok_or_else(|| invalid(OP, "pads", format!("negative output extent on axis {i}")))
        })
        .collect()
}

/// ONNX `ConvTranspose`: `x` `[N, C_in, in...]`, `w` `[C_in, C_out/group, k...]`, optional
/// bias `[C_out]`, `out` `[N, C_out, out...]` per [`conv_transpose_output_spatial`].
///
/// Per group: one GEMM `col = W_g^T x_g` (`[C_out_g * prod(k), in_positions]`), then col2im
/// scatter-adds into the output in a fixed order (channels split across threads), so results
/// do not depend on `threads`. Allocates its column buffer (ConvTranspose is rare in the
/// target CNNs).
///
/// # Errors
/// Shape, length or attribute inconsistencies.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose(
    x: &[f32],
    x_shape: &[usize],
    w: &[f32],
    w_shape: &[usize],
    bias: Option<&[f32]>,
    attrs: &ConvTransposeAttrs,
    out: &mut [f32],
    threads: usize,
) -> KernelResult<()> {
    const OP: &str = "ConvTranspose";
    let c = &attrs.conv;
    let nsp = c.kernel.len();
    let out_sp = conv_transpose_output_spatial(x_shape.get(2..).unwrap_or(&[]), attrs)?;
    if x_shape.len() != nsp + 2 || w_shape.len() != nsp + 2 || w_shape[2..] != c.kernel[..] {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: w_shape.to_vec(),
        });
    }
    let (n, c_in) = (x_shape[0], x_shape[1]);
    let group = c.group;
    if w_shape[0] != c_in || c_in % group != 0 {
        return Err(KernelError::ShapeMismatch {
            op: OP,
            a: x_shape.to_vec(),
            b: w_shape.to_vec(),
        });
    }
    let (c_in_g, c_out_g) = (c_in / group, w_shape[1]);
    let c_out = c_out_g * group;
    check_len(OP, "X", x.len(), numel(OP, x_shape)?)?;
    check_len(OP, "W", w.len(), numel(OP, w_shape)?)?;
    if let Some(b) = bias {
        check_len(OP, "B", b.len(), c_out)?;
    }
    let mut y_shape = vec![n, c_out];
    y_shape.extend(&out_sp);
    check_len(OP, "Y", out.len(), numel(OP, &y_shape)?)?;
    let geo = Geo {
        input: pad3(&x_shape[2..], 1),
        out: pad3(&out_sp, 1),
        k: pad3(&c.kernel, 1),
        s: pad3(&c.strides, 1),
        d: pad3(&c.dilations, 1),
        pb: pad3(&c.pads_begin, 0),
    };
    let (ip, op, kp) = (geo.in_plane(), geo.out_plane(), geo.kprod());
    let rows = c_out_g * kp;
    let mut col = vec![0.0f32; rows * ip];
    for b in 0..n {
        for g in 0..group {
            let xg = &x[(b * c_in + g * c_in_g) * ip..(b * c_in + (g + 1) * c_in_g) * ip];
            // col[r, q] = sum_ci W[g*c_in_g + ci, r] * x[ci, q]; W_g is [c_in_g, rows] row-major.
            let wg = &w[g * c_in_g * rows..(g + 1) * c_in_g * rows];
            host_sgemm(
                HostMatMut {
                    data: &mut col,
                    rows,
                    cols: ip,
                    row_stride: ip,
                    col_stride: 1,
                },
                HostMat {
                    data: wg,
                    rows,
                    cols: c_in_g,
                    row_stride: 1,
                    col_stride: rows,
                },
                HostMat {
                    data: xg,
                    rows: c_in_g,
                    cols: ip,
                    row_stride: ip,
                    col_stride: 1,
                },
                None,
                1.0,
            )
            .map_err(|source| KernelError::Gemm { op: OP, source })?;
            let yg = &mut out[(b * c_out + g * c_out_g) * op..(b * c_out + (g + 1) * c_out_g) * op];
            let col = &col;
            par_chunks(yg, op, threads, 1, |first, piece| {
                for (i, plane) in piece.chunks_mut(op).enumerate() {
                    let co = first + i;
                    plane.fill(bias.map_or(0.0, |bv| bv[g * c_out_g + co]));
                    col2im_plane(&col[co * kp * ip..(co + 1) * kp * ip], plane, &geo);
                }
            });
        }
    }
    Ok(())
}

/// Scatter-adds one output channel's `[prod(k), in_positions]` columns into its plane.
fn col2im_plane(col: &[f32], plane: &mut [f32], g: &Geo) {
    let ip = g.in_plane();
    let [od_n, oh_n, ow_n] = g.out;
    let [id_n, ih_n, iw_n] = g.input;
    let mut r = 0;
    for kd in 0..g.k[0] {
        for kh in 0..g.k[1] {
            for kw in 0..g.k[2] {
                let crow = &col[r * ip..(r + 1) * ip];
                r += 1;
                for i_d in 0..id_n {
                    let o_d = (i_d * g.s[0] + kd * g.d[0]) as isize - g.pb[0] as isize;
                    if o_d < 0 || o_d >= od_n as isize {
                        continue;
                    }
                    for i_h in 0..ih_n {
                        let o_h = (i_h * g.s[1] + kh * g.d[1]) as isize - g.pb[1] as isize;
                        if o_h < 0 || o_h >= oh_n as isize {
                            continue;
                        }
                        let src = &crow[(i_d * ih_n + i_h) * iw_n..(i_d * ih_n + i_h + 1) * iw_n];
                        let orow =
                            &mut plane[(o_d as usize * oh_n + o_h as usize) * ow_n..][..ow_n];
                        let off = (kw * g.d[2]) as isize - g.pb[2] as isize;
                        for (i_w, &v) in src.iter().enumerate() {
                            let o_w = (i_w * g.s[2]) as isize + off;
                            if o_w >= 0 && o_w < ow_n as isize {
                                orow[o_w as usize] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Each output channel's plane (`p` elements of `out`) cut at `bounds` (offsets in the plane,
/// from 0 to `p`, one band per worker): worker `i` gets band `bounds[i]..bounds[i + 1]` of
/// every plane, so workers write disjoint parts of every channel.
fn cut_planes<'a>(out: &'a mut [f32], p: usize, bounds: &[usize]) -> Vec<Vec<&'a mut [f32]>> {
    let n = bounds.len().saturating_sub(1);
    let mut parts: Vec<Vec<&mut [f32]>> = (0..n)
        .map(|_| Vec::with_capacity(out.len() / p.max(1)))
        .collect();
    for plane in out.chunks_mut(p.max(1)) {
        let mut rest = plane;
        for (part, w) in parts.iter_mut().zip(bounds.windows(2)) {
            let (a, b) = rest.split_at_mut(w[1] - w[0]);
            part.push(a);
            rest = b;
        }
    }
    parts
}

/// A worker's part of [`PreparedConv::run_co`]: first block, first position, its output
/// rows, its partial-sum scratch.
type CoPart<'a, 'b> = (usize, usize, Vec<&'a mut [f32]>, &'b mut [f32]);

/// See [`PreparedConv::co_split`].
struct CoSplit {
    nb: usize,
    np: usize,
    per_b: usize,
    per_p: usize,
}

impl CoSplit {
    fn parts(&self) -> usize {
        self.nb * self.np
    }
}

/// Longest reduction (input channels per group) the direct pointwise kernel takes.
const PW_MAX_K: usize = 128;
/// A one-group pointwise conv that narrows the channels (fewer outputs than inputs) takes
/// the GEMM from this reduction on planes larger than `PW_NARROW_MAX_PLANE`: a tile of 32
/// positions reads every input channel a plane apart, while the GEMM packs its panels.
const PW_NARROW_MIN_K: usize = 64;
/// See `PW_NARROW_MIN_K`.
const PW_NARROW_MAX_PLANE: usize = 28 * 28;
/// Largest per-group filter (elements) the direct pointwise kernel takes.
const PW_MAX_FILTER: usize = 64 * 1024;
/// Smallest output plane the direct pointwise kernel takes.
const PW_MIN_PLANE: usize = 16;
/// Input elements (`kdim` rows of a tile of positions) the direct pointwise kernel keeps in
/// L1 while every channel block reads them.
const PW_TILE_ELEMS: usize = 6 * 1024;
/// The same in L2 (a quarter of a 1 MiB L2), for convs with at least `PW_MANY_ROWS` output
/// channels.
const PW_L2_TILE_ELEMS: usize = 64 * 1024;
/// Output channels (of the piece one worker runs) from which the direct pointwise kernel
/// takes L2 tiles.
const PW_MANY_ROWS: usize = 128;
/// Output channels one direct pointwise step computes together.
const PW_ROWS: usize = 6;
/// Input bytes from which a one-group direct pointwise conv splits its positions between
/// workers rather than its channel blocks: split by channels, every worker streams the whole
/// input from L3 for each of its tiles' channel blocks. `kernel_bench --cold`, 2 threads,
/// channels -> positions, ms: 64->256 on 56x56 (ResNet-50's, 800 KB) 0.87-1.08 -> 0.61-0.68
/// (hot 0.61 -> 0.52), 128->512 on 28x28 (400 KB) 0.67-0.72 -> 0.63 (hot 0.51 -> 0.53),
/// 16->96 on 112x112 0.65 -> 0.61; below, 64->128 on 28x28 (200 KB) 0.118 -> 0.127 and
/// 32->192 on 28x28 hot 0.049 -> 0.058 lost.
const PW_BAND_MIN_INPUT: usize = 384 * 1024;
/// Positions a worker's band of a position-split pointwise conv is a multiple of (one block
/// of `PW_VECS` AVX-512 vectors).
const PW_POS_BAND: usize = 32;
/// Position vectors one direct pointwise step computes together (`PW_ROWS * PW_VECS`
/// accumulators: enough independent FMA chains to hide their latency, few enough for AVX2's
/// 16 registers).
const PW_VECS: usize = 2;

/// A pointwise conv's output rows computed directly (no packing, no staging): `out[r][p] =
/// bias[r] + sum over k of w[r][k] * x[k][p]`, summed in `k` order with fused multiply-adds,
/// one block of `PW_ROWS` channels by `PW_VECS` vectors of positions at a time. Each output
/// element's arithmetic is the same whatever block it falls in, so any split of the rows
/// between workers gives bit-identical results. Run through pulp's dispatch.
struct PointwiseRows<'a, 'b> {
    /// `[rows, kdim]` filter rows of the channels in `out`.
    w: &'a [f32],
    kdim: usize,
    /// The input: reduction step `k` reads `x[offs[k] + q]` for output position `q`.
    x: &'a [f32],
    /// Per reduction step, where its input run starts in `x` (`k * p` for planes or an
    /// im2col tile).
    offs: &'a [usize],
    /// The positions `q0..q1` computed; row slices in `out` hold exactly those.
    q0: usize,
    q1: usize,
    /// The channels' biases, one per row of `out`.
    bias: Option<&'a [f32]>,
    act: Option<UnaryOp>,
    /// Added before the activation (row `r` of `out` is the residual's row `r`).
    res: ResRows<'a>,
    /// One output row per channel, each `q1 - q0` positions long (whole planes, or one
    /// worker's band of every plane).
    out: &'a mut [&'b mut [f32]],
}

impl pulp::WithSimd for PointwiseRows<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let (kdim, offs, q0) = (self.kdim, self.offs, self.q0);
        if self.q1 <= q0 {
            return;
        }
        let rows = self.out.len();
        let block = PW_VECS * S::F32_LANES;
        // Relu and Clip in registers before the store; any other activation in a pass over
        // each block while it is still in L1.
        let (vact, rest) = DwAct::split(self.act);
        // Tiles of positions outside, channel blocks inside, blocks of positions innermost:
        // a tile's `[kdim, tile]` input stays in cache while every channel block reads it,
        // and each output row receives a whole tile's run at a time (one block per row at a
        // time would keep every row's page in flight: 96 rows of a 112x112 plane overflow the
        // TLB). With many output rows, 256 KB tiles (in L2) so the rows are written as long
        // runs (`kernel_bench`, min of 4 alternating rounds, 1 thread, ms: 64->256 on 56x56
        // hot 1.56 -> 1.26, cold 1.79 -> 1.23; 128->512 on 28x28 cold 1.63 -> 1.13). With
        // fewer, tiles in L1 measured faster hot (128->16 on 55x55 0.128 vs 0.161, 96->576 on
        // 14x14 0.216 vs 0.249): from K = 64 a block (the blocks' FMAs hide the stores), below
        // 6 Ki elements.
        let tile = if rows >= PW_MANY_ROWS {
            PW_L2_TILE_ELEMS / kdim.max(1)
        } else if kdim >= 64 {
            block
        } else {
            PW_TILE_ELEMS / kdim.max(1)
        };
        let tile = tile.max(block) / block * block;
        let mut t0 = q0;
        while t0 < self.q1 {
            let t1 = (t0 + tile).min(self.q1);
            let mut r = 0;
            while r < rows {
                let n = PW_ROWS.min(rows - r);
                let w = &self.w[r * kdim..(r + n) * kdim];
                let bias = self.bias.map(|b| &b[r..r + n]);
                let res = self.res.skip_rows(r);
                let out = &mut self.out[r..r + n];
                let x = self.x;
                let mut p0 = t0;
                while p0 < t1 {
                    let len = block.min(t1 - p0);
                    match n {
                        6 => pw_block::<S, 6>(
                            simd, w, kdim, x, offs, q0, bias, vact, res, p0, len, out,
                        ),
                        5 => pw_block::<S, 5>(
                            simd, w, kdim, x, offs, q0, bias, vact, res, p0, len, out,
                        ),
                        4 => pw_block::<S, 4>(
                            simd, w, kdim, x, offs, q0, bias, vact, res, p0, len, out,
                        ),
                        3 => pw_block::<S, 3>(
                            simd, w, kdim, x, offs, q0, bias, vact, res, p0, len, out,
                        ),
                        2 => pw_block::<S, 2>(
                            simd, w, kdim, x, offs, q0, bias, vact, res, p0, len, out,
                        ),
                        _ => pw_block::<S, 1>(
                            simd, w, kdim, x, offs, q0, bias, vact, res, p0, len, out,
                        ),
                    }
                    p0 += len;
                }
                if let Some(act) = rest {
                    for row in out.iter_mut() {
                        with_unary(act, MapInPlace(&mut row[t0 - q0..t1 - q0]));
                    }
                }
                r += n;
            }
            t0 = t1;
        }
    }
}

/// Positions `p0..p0 + len` (at most `PW_VECS` vectors) of `R` output rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn pw_block<S: pulp::Simd, const R: usize>(
    simd: S,
    w: &[f32],
    kdim: usize,
    x: &[f32],
    offs: &[usize],
    q0: usize,
    bias: Option<&[f32]>,
    act: DwAct,
    res: ResRows<'_>,
    p0: usize,
    len: usize,
    out: &mut [&mut [f32]],
) {
    if len == PW_VECS * S::F32_LANES {
        pw_block_n::<S, R, true>(simd, w, kdim, x, offs, q0, bias, act, res, p0, len, out);
    } else {
        pw_block_n::<S, R, false>(simd, w, kdim, x, offs, q0, bias, act, res, p0, len, out);
    }
}

/// [`pw_block`] with whole vectors (`FULL`) or a partial last block. Loops over `R` and
/// `PW_VECS` have constant trip counts so the accumulators stay in registers.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
fn pw_block_n<S: pulp::Simd, const R: usize, const FULL: bool>(
    simd: S,
    w: &[f32],
    kdim: usize,
    x: &[f32],
    offs: &[usize],
    q0: usize,
    bias: Option<&[f32]>,
    act: DwAct,
    res: ResRows<'_>,
    p0: usize,
    len: usize,
    out: &mut [&mut [f32]],
) {
    let lanes = S::F32_LANES;
    let mut acc = [[simd.splat_f32s(0.0); PW_VECS]; R];
    for r in 0..R {
        let b = simd.splat_f32s(bias.map_or(0.0, |b| b[r]));
        for v in 0..PW_VECS {
            acc[r][v] = b;
        }
    }
    let acc = sum_taps::<S, PW_VECS, R, FULL>(
        simd,
        acc,
        &Taps {
            w,
            kdim,
            x,
            offs: &offs[..kdim],
            k: 0..kdim,
            q0: p0,
            len,
        },
    );
    for r in 0..R {
        let dst = &mut out[r][p0 - q0..p0 - q0 + len];
        for v in 0..PW_VECS {
            let lo = (v * lanes).min(len);
            let hi = ((v + 1) * lanes).min(len);
            // The residual joins the conv's value before the activation, as an Add would.
            let rv = match res {
                ResRows::None => None,
                ResRows::Separate { data, at, plane } => {
                    let src = &data[at + r * plane + p0 + lo..at + r * plane + p0 + hi];
                    Some(if FULL {
                        load::<S>(src)
                    } else {
                        simd.partial_load_f32s(src)
                    })
                }
                ResRows::InPlace => Some(if FULL {
                    load::<S>(&dst[lo..hi])
                } else {
                    simd.partial_load_f32s(&dst[lo..hi])
                }),
            };
            let sum = match rv {
                Some(rv) => simd.add_f32s(acc[r][v], rv),
                None => acc[r][v],
            };
            let a = act.apply(simd, sum);
            if FULL {
                dst[lo..hi].copy_from_slice(bytemuck::cast_slice(std::slice::from_ref(&a)));
            } else {
                simd.partial_store_f32s(&mut dst[lo..hi], a);
            }
        }
    }
}
