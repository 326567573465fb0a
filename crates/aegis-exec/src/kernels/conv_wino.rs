//! Winograd F(2x2, 3x3) convolution for 3x3 stride-1 convs with enough channels on planes of
//! 13x13 and wider (VGG's, ResNet's, Inception's and SqueezeNet's 3x3 layers; the
//! thresholds are in `conv.rs`).
//!
//! Why: a 3x3 conv costs 9 multiply-adds per output and input channel; F(2x2, 3x3) computes
//! each 2x2 output tile from a 4x4 input tile with 16, 2.25x fewer, the rest being additions
//! in the transforms (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016). With `U = G g Gᵀ` (each 3x3 filter `g` transformed once, at prepare time),
//! `V = Bᵀ d B` (each 4x4 input tile `d`) and `Y = Aᵀ M A`, the conv is 16 independent
//! products `M[ξ] = U[ξ] · V[ξ]` (`C_out x C_in` by `C_in x tiles`). From 128 input
//! channels (and 64 output channels) the channel-vectorised kernel ([`CoRows`]) runs them
//! with `U[ξ]` packed for it; with fewer, a product is too short to pay for that kernel's
//! per-step transposes (and with fewer output channels, DenseNet's 128->32, it measured
//! slower than the conv without Winograd), so
//! [`TileProducts`] runs them with tiles in lanes (the direct kernel's [`sum_taps`]: each
//! `U[ξ]` value broadcast against vectors of `V[ξ]`), writing `M`'s rows as they are. The
//! transforms' constants are 0, ±1 and ±1/2, so the results differ from direct summation by
//! rounding only (a random chain of four 128-256 channel convs on 56x56: within 6e-6 of
//! onnxruntime, the direct kernel 1e-5; the model tolerances are 1e-3 relative).
//!
//! Tiles are processed in chunks of whole tile rows (about 256 tiles, at least one chunk per
//! worker): the input transform writes the chunk's `V` (input channels x 16 x tiles), the 16
//! products its `M` (16 x output channels x tiles), the output transform reads `M` back into
//! the output rows. Each worker owns whole chunks (bands of output rows) and its own `V`/`M`
//! scratch. With tiles in lanes, a block of 6 output channels goes through all 16 products
//! and the output transform before the next, so `M` holds 16 x 6 rows (in L2) instead of
//! 16 x output channels. Workers always split tile rows, a plane that fits one chunk too
//! (27x27 halves into chunks of 98 tiles, two blocks of products, whose lanes are as full
//! as the whole plane's 196 in four): an earlier split of such planes by output channels,
//! after one input transform split by input channels, cost a second hand-off and had each
//! worker read the other's half of `V` (`kernel_bench`, 2 threads, ms: 32->128 on 27x27
//! 0.308 -> 0.280, 48->192 on 27x27 0.562 -> 0.495, 96->96 on 28x28 0.584 -> 0.463).
//!
//! Determinism: each output is `Aᵀ (U · V) A + bias` with every sum in a fixed order that
//! depends on the shapes only (the chunking does not change any element's arithmetic), so
//! results are bit-identical for any `threads`.

use super::conv::{DwAct, ResRows};
use super::conv_co::{CoPacked, CoRows};
use super::conv_direct::{sum_taps, Taps};
use super::lanes::{load, store};

/// Widest row of tiles a chunk holds (output rows of up to 256).
pub(super) const MAX_TW: usize = 128;
/// Tiles a chunk aims for: each product reuses a block of `U[ξ]` over this many positions
/// (`kernel_bench` 3x3 256->256 on 56x56, 1 thread, chunks of 28 -> 252 tiles: about 40 ->
/// 26-33 ms; 64 tiles fell between).
const CHUNK_TILES: usize = 256;
/// Most `V` elements (input channels x 16 x tiles) a chunk holds: 4 MB. One product reads
/// one `ξ`'s sixteenth of it, which stays in L2 while every block of output channels does.
const CHUNK_V: usize = 1024 * 1024;
/// Lanes past a chunk's tiles in `V` and `M` rows, so the output transform loads whole
/// vectors from any tile.
const LOAD_SLACK: usize = 16;
/// Tiles one step of [`TileProducts`] computes (4 vectors of 16 lanes).
const TILE_BLOCK: usize = 64;
/// Output channels one step of [`TileProducts`] computes.
const TILE_ROWS: usize = 6;

/// The 16 transformed filters `U[ξ] = (G g Gᵀ)[ξ]`, each `C_out x C_in`: packed for
/// [`CoRows`] (channels in lanes), or as plain rows for [`TileProducts`] (tiles in lanes).
#[derive(Debug, Clone)]
pub(super) enum WinoPacked {
    Channels(Vec<CoPacked>),
    /// `[16][c_out][c_in]`.
    Tiles(Vec<f32>),
}

impl WinoPacked {
    /// Transforms `w` (`[c_out, c_in, 3, 3]`, ONNX order) and packs it for the product kernel
    /// `tiles` chooses.
    pub(super) fn new(w: &[f32], c_out: usize, c_in: usize, tiles: bool) -> Self {
        let mut per = vec![vec![0.0f32; c_out * c_in]; 16];
        for (f, g) in w.chunks_exact(9).take(c_out * c_in).enumerate() {
            // G g: 4 x 3, G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1].
            let mut gg = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (a, b, c) = (g[j], g[3 + j], g[6 + j]);
                gg[0][j] = a;
                gg[1][j] = 0.5 * (a + b + c);
                gg[2][j] = 0.5 * (a - b + c);
                gg[3][j] = c;
            }
            // (G g) Gᵀ: 4 x 4.
            for (i, r) in gg.iter().enumerate() {
                let (a, b, c) = (r[0], r[1], r[2]);
                let row = [a, 0.5 * (a + b + c), 0.5 * (a - b + c), c];
                for (j, &v) in row.iter().enumerate() {
                    per[i * 4 + j][f] = v;
                }
            }
        }
        if tiles {
            Self::Tiles(per.concat())
        } else {
            Self::Channels(
                per.iter()
                    .map(|m| CoPacked::new(m, c_out, c_in, None))
                    .collect(),
            )
        }
    }

    /// Elements held (for memory accounting).
    pub(super) fn len(&self) -> usize {
        match self {
            Self::Channels(u) => u.iter().map(CoPacked::len).sum(),
            Self::Tiles(u) => u.len(),
        }
    }
}

/// A Winograd conv's geometry: channels, output extents, tiles and the padded input the
/// tiles read (`hp x wp`, rounded up to whole tiles).
#[derive(Debug, Clone, Copy)]
pub(super) struct WinoGeo {
    pub c_in: usize,
    pub c_out: usize,
    pub ho: usize,
    pub wo: usize,
    /// Tile rows and columns: `ceil(ho / 2)`, `ceil(wo / 2)`.
    pub th: usize,
    pub tw: usize,
    /// Padded input extents, `2 * th + 2` and `2 * tw + 2`.
    pub hp: usize,
    pub wp: usize,
    /// Fewest chunks to cut the plane into (one per worker).
    pub min_chunks: usize,
    /// Products with tiles in lanes ([`WinoPacked::Tiles`]).
    pub tiles: bool,
}

impl WinoGeo {
    pub(super) fn new(
        c_in: usize,
        c_out: usize,
        ho: usize,
        wo: usize,
        workers: usize,
        tiles: bool,
    ) -> Self {
        let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
        Self {
            tiles,
            c_in,
            c_out,
            ho,
            wo,
            th,
            tw,
            hp: 2 * th + 2,
            wp: 2 * tw + 2,
            min_chunks: workers.max(1),
        }
    }

    /// Tile rows per chunk: about `CHUNK_TILES` tiles, `V` within `CHUNK_V`, at least one.
    pub(super) fn rows_per_chunk(&self) -> usize {
        let tiles = CHUNK_TILES.min(CHUNK_V / (16 * self.c_in.max(1)));
        let rows = (tiles / self.tw.max(1))
            .min(self.th.div_ceil(self.min_chunks))
            .clamp(1, self.th.max(1));
        // Chunks of equal height (9 + 9 + 9 + 1 rows would leave a worker idle).
        self.th.div_ceil(self.th.div_ceil(rows).max(1)).max(1)
    }

    /// Most tiles in a chunk, rounded up to whole product blocks: the stride of `V` and `M`
    /// rows (the tile-lane products compute whole vectors; lanes past the chunk's tiles hold
    /// values no output reads).
    pub(super) fn chunk_tiles(&self) -> usize {
        (self.rows_per_chunk() * self.tw + LOAD_SLACK).next_multiple_of(TILE_BLOCK)
    }

    /// Chunks in the plane.
    pub(super) fn chunks(&self) -> usize {
        self.th.div_ceil(self.rows_per_chunk())
    }

    /// Scratch one worker needs: its chunk's `V` and `M`.
    pub(super) fn worker_scratch(&self) -> usize {
        16 * (self.c_in + self.m_rows()) * self.chunk_tiles()
    }

    /// Rows of `M` per product held at once.
    fn m_rows(&self) -> usize {
        if self.tiles {
            TILE_ROWS
        } else {
            self.c_out
        }
    }
}

/// One worker's share: chunks `c0..c1` of the plane from the padded input `x`, into `out`
/// (one slice per output channel holding its rows `2 * ty0 ..` of the first chunk on).
pub(super) struct WinoChunks<'a, 'b> {
    pub packed: &'a WinoPacked,
    pub g: WinoGeo,
    pub x: &'a [f32],
    pub bias: Option<&'a [f32]>,
    pub act: DwAct,
    pub c0: usize,
    pub c1: usize,
    pub out: &'a mut [&'b mut [f32]],
    /// [`WinoGeo::worker_scratch`] elements.
    pub scratch: &'a mut [f32],
}

impl WinoChunks<'_, '_> {
    pub(super) fn run(self) {
        let g = self.g;
        let tcm = g.chunk_tiles();
        let (v, m) = self.scratch.split_at_mut(16 * g.c_in * tcm);
        let offs = tap_offsets(g.c_in, tcm);
        let rpc = g.rows_per_chunk();
        let row0 = 2 * self.c0 * rpc;
        for c in self.c0..self.c1 {
            let (ty0, ty1) = (c * rpc, ((c + 1) * rpc).min(g.th));
            let tc = (ty1 - ty0) * g.tw;
            InputTransform {
                g,
                x: self.x,
                ty0,
                ty1,
                stride: tcm,
                v,
            }
            .run();
            let out_t = OutTiles {
                g,
                stride: tcm,
                ty0,
                ty1,
                row0,
                act: self.act,
            };
            match self.packed {
                WinoPacked::Channels(u) => {
                    let m = &mut m[..16 * g.c_out * tcm];
                    let bases: Vec<usize> = (0..tc).collect();
                    for (xi, packed) in u.iter().enumerate() {
                        let mut rows: Vec<&mut [f32]> = m
                            [xi * g.c_out * tcm..(xi + 1) * g.c_out * tcm]
                            .chunks_mut(tcm)
                            .map(|r| &mut r[..tc])
                            .collect();
                        pulp::Arch::new().dispatch(CoRows {
                            packed,
                            first_block: 0,
                            x: v,
                            offs: &offs[xi * g.c_in..(xi + 1) * g.c_in],
                            bases: &bases,
                            rows: &mut rows,
                            act: DwAct::None,
                            taps_per_pass: g.c_in,
                            partial: &mut [],
                            prefetch: false,
                            res: ResRows::None,
                        });
                    }
                    pulp::Arch::new().dispatch(OutputTransform {
                        t: out_t,
                        m,
                        rows: g.c_out,
                        bias: self.bias,
                        out: &mut *self.out,
                    });
                }
                WinoPacked::Tiles(u) => tile_channels(
                    u,
                    v,
                    &mut m[..16 * TILE_ROWS * tcm],
                    &offs,
                    tc,
                    out_t,
                    self.bias,
                    &mut *self.out,
                ),
            }
        }
    }
}

/// Every output channel of one chunk with tiles in lanes: a block of
/// `TILE_ROWS` channels at a time through all 16 products and the output transform, so its
/// `M` (16 x `TILE_ROWS` x tiles, `m`) stays in L2 while the chunk's `V` is reused.
#[allow(clippy::too_many_arguments)]
fn tile_channels(
    u: &[f32],
    v: &[f32],
    m: &mut [f32],
    offs: &[usize],
    tc: usize,
    out_t: OutTiles,
    bias: Option<&[f32]>,
    out: &mut [&mut [f32]],
) {
    let g = out_t.g;
    let tcm = out_t.stride;
    let n_u = g.c_out * g.c_in;
    let mut r = 0;
    while r < out.len() {
        let n = TILE_ROWS.min(out.len() - r);
        let c = r;
        for xi in 0..16 {
            let u_xi = &u[xi * n_u..(xi + 1) * n_u];
            pulp::Arch::new().dispatch(TileProducts {
                u: &u_xi[c * g.c_in..(c + n) * g.c_in],
                c_in: g.c_in,
                v,
                offs: &offs[xi * g.c_in..(xi + 1) * g.c_in],
                tc,
                stride: tcm,
                m: &mut m[xi * n * tcm..(xi + 1) * n * tcm],
            });
        }
        pulp::Arch::new().dispatch(OutputTransform {
            t: out_t,
            m: &m[..16 * n * tcm],
            rows: n,
            bias: bias.map(|b| &b[c..c + n]),
            out: &mut out[r..r + n],
        });
        r += n;
    }
}

/// Where tap (input channel) `k` of product `ξ` starts in `V` (`[c_in][16][tcm]`): entry
/// `ξ * c_in + k`.
fn tap_offsets(c_in: usize, tcm: usize) -> Vec<usize> {
    (0..16)
        .flat_map(|xi| (0..c_in).map(move |k| (k * 16 + xi) * tcm))
        .collect()
}

/// `M[ξ] = U[ξ] · V[ξ]` with tiles in lanes: blocks of `TILE_ROWS` output channels by
/// `TILE_BLOCK` tiles, each `U[ξ]` value broadcast against vectors of `V[ξ]` rows (the
/// direct kernel's [`sum_taps`], the input channels as its taps). Written straight into
/// `M`'s rows, no transposes: with few input channels a product is short and the
/// channel-vectorised kernel's per-step transposes outweigh it. Not
/// [`DirectRows`](super::conv_direct::DirectRows) itself:
/// that walks every tile for one block of channels before the next, while here a block of
/// tiles serves every channel block while its `V` is in L1 (`DirectRows` in its place,
/// `kernel_bench` 1 thread: 32->128 on 27x27 0.467 -> 0.561 ms, 64->192 on 56x56 4.69 ->
/// 5.37).
struct TileProducts<'a> {
    /// `U[ξ]`, `[c_out][c_in]`.
    u: &'a [f32],
    c_in: usize,
    /// `V`; input channel `k` of `V[ξ]` starts at `offs[k]`.
    v: &'a [f32],
    offs: &'a [usize],
    /// Tiles in the chunk (computed in whole vectors; `stride` holds them).
    tc: usize,
    stride: usize,
    /// `M[ξ]`, `[c_out][stride]`.
    m: &'a mut [f32],
}

impl pulp::WithSimd for TileProducts<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        // 24 accumulators need AVX-512's 32 registers; AVX2's 16 take 12.
        if S::F32_LANES >= 16 {
            self.run::<S, 4>(simd);
        } else {
            self.run::<S, 2>(simd);
        }
    }
}

impl TileProducts<'_> {
    /// Blocks of `NV` vectors of tiles, then the chunk's last tiles in as few vectors as
    /// hold them: a chunk is whole tile rows, rarely whole blocks (ResNet's 56x56 planes run
    /// chunks of 196 tiles, SqueezeNet's 27x27 one of 196), and a last whole block computed
    /// 64 tiles for 4.
    #[inline(always)]
    fn run<S: pulp::Simd, const NV: usize>(mut self, simd: S) {
        let lanes = S::F32_LANES;
        let mut t0 = 0;
        while t0 < self.tc {
            let vectors = (self.tc - t0).div_ceil(lanes).min(NV);
            match vectors {
                1 => self.channels::<S, 1>(simd, t0),
                2 if NV > 2 => self.channels::<S, 2>(simd, t0),
                3 if NV > 3 => self.channels::<S, 3>(simd, t0),
                _ => self.channels::<S, NV>(simd, t0),
            }
            t0 += vectors * lanes;
        }
    }

    /// Every output channel for `NV` vectors of tiles from `t0`.
    #[inline(always)]
    fn channels<S: pulp::Simd, const NV: usize>(&mut self, simd: S, t0: usize) {
        let tile = NV * S::F32_LANES;
        let c_out = self.u.len() / self.c_in.max(1);
        let mut r = 0;
        while r < c_out {
            let n = TILE_ROWS.min(c_out - r);
            match n {
                6 => self.block::<S, NV, 6>(simd, r, t0, tile),
                5 => self.block::<S, NV, 5>(simd, r, t0, tile),
                4 => self.block::<S, NV, 4>(simd, r, t0, tile),
                3 => self.block::<S, NV, 3>(simd, r, t0, tile),
                2 => self.block::<S, NV, 2>(simd, r, t0, tile),
                _ => self.block::<S, NV, 1>(simd, r, t0, tile),
            }
            r += n;
        }
    }

    #[inline(always)]
    fn block<S: pulp::Simd, const NV: usize, const R: usize>(
        &mut self,
        simd: S,
        r0: usize,
        t0: usize,
        tile: usize,
    ) {
        let lanes = S::F32_LANES;
        let taps = Taps {
            w: &self.u[r0 * self.c_in..(r0 + R) * self.c_in],
            kdim: self.c_in,
            x: self.v,
            offs: self.offs,
            k: 0..self.c_in,
            q0: t0,
            len: tile,
        };
        let acc = sum_taps::<S, NV, R, true>(simd, [[simd.splat_f32s(0.0); NV]; R], &taps);
        for (r, acc_r) in acc.iter().enumerate() {
            let at = (r0 + r) * self.stride + t0;
            for (v, a) in acc_r.iter().enumerate() {
                store::<S>(&mut self.m[at + v * lanes..], *a);
            }
        }
    }
}

/// `V[ic][ξ][t] = (Bᵀ d B)[ξ]` for the tiles of tile rows `ty0..ty1` (`t` counted from the
/// chunk's first tile, rows of `V` `stride` apart, an input channel's 16 rows together).
/// `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
/// 0 1 0 -1]`. Loops run along tile columns over even/odd-split input rows, so they
/// vectorise under the dispatch's target features.
struct InputTransform<'a> {
    g: WinoGeo,
    x: &'a [f32],
    ty0: usize,
    ty1: usize,
    stride: usize,
    v: &'a mut [f32],
}

impl InputTransform<'_> {
    /// Under AVX-512 where the CPU has it ([`InputTransformV4`]), else the portable loops.
    fn run(self) {
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V4::try_new() {
            pulp::Simd::vectorize(simd, InputTransformV4 { simd, t: self });
            return;
        }
        pulp::Arch::new().dispatch(self);
    }
}

/// [`InputTransform`] with 16 tiles per vector: each input row's columns split into even and
/// odd by two-source permutes and shifted one tile on by `valignd`, so the row transform
/// runs on whole vectors (the portable loops' pair splits and 14-tile rows ran mostly
/// scalar: 32 channels of 27x27 took 55 us, a tenth of the conv). The same operations in
/// the same order per element, so `V` is bit-identical to the portable loops'. Lanes past
/// the row's tiles are written too: into the next tile row's entries (which that row then
/// overwrites, tile rows running in order) or into the row's `LOAD_SLACK`.
#[cfg(target_arch = "x86_64")]
struct InputTransformV4<'a> {
    simd: pulp::x86::V4,
    t: InputTransform<'a>,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for InputTransformV4<'_> {
    type Output = ();

    // `j` picks column `j` of all four rows of `u`.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        use super::v4::{f32s, m512, tail, EVEN, L, ODD};
        use core::arch::x86_64::{__m512, __m512i};
        use pulp::x86::V4;
        use pulp::Simd;

        let (simd, t) = (self.simd, self.t);
        let f = simd.avx512f;
        let g = t.g;
        let (tw, plane) = (g.tw, g.hp * g.wp);
        let even: __m512i = bytemuck::cast(EVEN);
        let odd: __m512i = bytemuck::cast(ODD);
        let x = t.x;
        // 16 columns from `x[at..]`; past the tensor's end (its last rows) through a copy.
        let ld = |at: usize| -> __m512 {
            if at + L <= x.len() {
                m512(load::<V4>(&x[at..]))
            } else {
                m512(bytemuck::cast(tail(x, at, 0.0)))
            }
        };
        // `b`'s lanes 1.. then `a`'s lane 0: the next tile's column.
        let next = |a: __m512, b: __m512| -> pulp::f32x16 {
            f32s(f._mm512_castsi512_ps(
                f._mm512_alignr_epi32::<1>(f._mm512_castps_si512(a), f._mm512_castps_si512(b)),
            ))
        };
        for ic in 0..g.c_in {
            let xp = ic * plane;
            let vc = ic * 16 * t.stride;
            for ty in t.ty0..t.ty1 {
                let t0 = (ty - t.ty0) * tw;
                let mut tx0 = 0;
                while tx0 < tw {
                    let zero = simd.splat_f32s(0.0);
                    let mut u = [[zero; 4]; 4];
                    for (r, ur) in u.iter_mut().enumerate() {
                        // Columns 2tx .. 2tx + 3 of tile tx: c0 = e[tx], c1 = o[tx],
                        // c2 = e[tx + 1], c3 = o[tx + 1].
                        let at = xp + (2 * ty + r) * g.wp + 2 * tx0;
                        let (a, b) = (ld(at), ld(at + L));
                        let e = f._mm512_permutex2var_ps(a, even, b);
                        let o = f._mm512_permutex2var_ps(a, odd, b);
                        let (c0, c1) = (f32s(e), f32s(o));
                        let c2 = next(ld(at + 2 * L), e);
                        let c3 = next(ld(at + 2 * L + 1), o);
                        *ur = [
                            simd.sub_f32s(c0, c2),
                            simd.add_f32s(c1, c2),
                            simd.sub_f32s(c2, c1),
                            simd.sub_f32s(c1, c3),
                        ];
                    }
                    for j in 0..4 {
                        let (d0, d1, d2, d3) = (u[0][j], u[1][j], u[2][j], u[3][j]);
                        let rows = [
                            simd.sub_f32s(d0, d2),
                            simd.add_f32s(d1, d2),
                            simd.sub_f32s(d2, d1),
                            simd.sub_f32s(d1, d3),
                        ];
                        for (i, row) in rows.into_iter().enumerate() {
                            let at = vc + (i * 4 + j) * t.stride + t0 + tx0;
                            store::<V4>(&mut t.v[at..], row);
                        }
                    }
                    tx0 += L;
                }
            }
        }
    }
}

impl pulp::WithSimd for InputTransform<'_> {
    type Output = ();

    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let g = self.g;
        let tw = g.tw;
        let plane = g.hp * g.wp;
        // Per input row r of a tile row: even and odd columns (tw + 1 each).
        let mut e = [[0.0f32; MAX_TW + 1]; 4];
        let mut o = [[0.0f32; MAX_TW + 1]; 4];
        // Per row r, the column transform's four outputs along the tiles.
        let mut u = [[[0.0f32; MAX_TW]; 4]; 4];
        for ic in 0..g.c_in {
            let xp = &self.x[ic * plane..(ic + 1) * plane];
            for ty in self.ty0..self.ty1 {
                for r in 0..4 {
                    let row = &xp[(2 * ty + r) * g.wp..(2 * ty + r + 1) * g.wp];
                    for ((ev, ov), pair) in e[r][..=tw]
                        .iter_mut()
                        .zip(&mut o[r][..=tw])
                        .zip(row.chunks_exact(2))
                    {
                        *ev = pair[0];
                        *ov = pair[1];
                    }
                    // d B along the row: columns 2tx .. 2tx + 3 are e[tx], o[tx], e[tx+1],
                    // o[tx+1].
                    let (er, or) = (&e[r], &o[r]);
                    let [u0, u1, u2, u3] = &mut u[r];
                    for tx in 0..tw {
                        let (c0, c1, c2, c3) = (er[tx], or[tx], er[tx + 1], or[tx + 1]);
                        u0[tx] = c0 - c2;
                        u1[tx] = c1 + c2;
                        u2[tx] = c2 - c1;
                        u3[tx] = c1 - c3;
                    }
                }
                // Bᵀ (d B) down the rows, into V[i * 4 + j].
                let t0 = (ty - self.ty0) * tw;
                for j in 0..4 {
                    let (d0, d1, d2, d3) = (&u[0][j], &u[1][j], &u[2][j], &u[3][j]);
                    for i in 0..4 {
                        let at = (ic * 16 + i * 4 + j) * self.stride + t0;
                        let dst = &mut self.v[at..at + tw];
                        match i {
                            0 => dst
                                .iter_mut()
                                .enumerate()
                                .for_each(|(t, o)| *o = d0[t] - d2[t]),
                            1 => dst
                                .iter_mut()
                                .enumerate()
                                .for_each(|(t, o)| *o = d1[t] + d2[t]),
                            2 => dst
                                .iter_mut()
                                .enumerate()
                                .for_each(|(t, o)| *o = d2[t] - d1[t]),
                            _ => dst
                                .iter_mut()
                                .enumerate()
                                .for_each(|(t, o)| *o = d1[t] - d3[t]),
                        }
                    }
                }
            }
        }
    }
}

/// `Y = Aᵀ M A + bias` per output channel and tile, `Aᵀ = [1 1 1 0; 0 1 -1 -1]`, written
/// into output rows `2ty, 2ty + 1` (those below `ho`, columns below `wo`), the activation
/// applied.
#[derive(Clone, Copy)]
struct OutTiles {
    g: WinoGeo,
    /// Row stride of `M`.
    stride: usize,
    ty0: usize,
    ty1: usize,
    /// The output row each `out` slice starts at.
    row0: usize,
    act: DwAct,
}

struct OutputTransform<'a, 'b> {
    t: OutTiles,
    /// `[16][rows][stride]`.
    m: &'a [f32],
    rows: usize,
    /// The channels' biases, one per `out` slice.
    bias: Option<&'a [f32]>,
    /// One slice per output channel of `m`.
    out: &'a mut [&'b mut [f32]],
}

impl pulp::WithSimd for OutputTransform<'_, '_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let t = self.t;
        let g = t.g;
        let (tw, lanes) = (g.tw, S::F32_LANES);
        // Per output row pair: even and odd columns (vectors of tiles), then interleaved.
        let mut ev = [[0.0f32; MAX_TW + 16]; 2];
        let mut od = [[0.0f32; MAX_TW + 16]; 2];
        let mut y = [0.0f32; 2 * MAX_TW];
        for (oc, orow) in self.out.iter_mut().enumerate().take(self.rows) {
            let b = simd.splat_f32s(self.bias.map_or(0.0, |b| b[oc]));
            for ty in t.ty0..t.ty1 {
                let t0 = (ty - t.ty0) * tw;
                let mut tx = 0;
                while tx < tw {
                    // Whole vectors: `M`'s rows hold `LOAD_SLACK` lanes past the chunk.
                    let m = |xi: usize| -> S::f32s {
                        load::<S>(&self.m[(xi * self.rows + oc) * t.stride + t0 + tx..])
                    };
                    // Aᵀ M down the rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3, per column j.
                    let mut s = [[simd.splat_f32s(0.0); 4]; 2];
                    let [s0, s1] = &mut s;
                    for (j, (s0j, s1j)) in s0.iter_mut().zip(s1.iter_mut()).enumerate() {
                        let (m0, m1, m2, m3) = (m(j), m(4 + j), m(8 + j), m(12 + j));
                        *s0j = simd.add_f32s(simd.add_f32s(m0, m1), m2);
                        *s1j = simd.sub_f32s(simd.sub_f32s(m1, m2), m3);
                    }
                    // (Aᵀ M) A along the columns: output columns 2tx (even) and 2tx + 1.
                    for (i, sr) in s.iter().enumerate() {
                        let y0 = simd.add_f32s(simd.add_f32s(sr[0], sr[1]), sr[2]);
                        let y1 = simd.sub_f32s(simd.sub_f32s(sr[1], sr[2]), sr[3]);
                        let y0 = t.act.apply(simd, simd.add_f32s(y0, b));
                        let y1 = t.act.apply(simd, simd.add_f32s(y1, b));
                        store::<S>(&mut ev[i][tx..], y0);
                        store::<S>(&mut od[i][tx..], y1);
                    }
                    tx += lanes;
                }
                for i in 0..2 {
                    let oy = 2 * ty + i;
                    if oy < g.ho {
                        for ((pair, &e), &o) in
                            y.chunks_exact_mut(2).zip(&ev[i][..tw]).zip(&od[i][..tw])
                        {
                            pair[0] = e;
                            pair[1] = o;
                        }
                        let at = (oy - t.row0) * g.wo;
                        orow[at..at + g.wo].copy_from_slice(&y[..g.wo]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 input transform writes the same `V` as the portable loops, bit for bit,
    /// wherever a product reads it (every tile of every row, each channel's 16 rows), on
    /// rows of fewer, exactly and more than 16 tiles and on a chunk below the first.
    #[test]
    fn avx512_input_transform_matches_portable_bitwise() {
        for (c_in, h, w, ty0, ty1) in [
            (3, 27, 27, 0, 14),
            (2, 13, 13, 3, 7),
            (2, 32, 32, 0, 16),
            (2, 56, 56, 10, 14),
            (1, 224, 224, 110, 112),
        ] {
            let g = WinoGeo::new(c_in, 64, h, w, 1, true);
            let x: Vec<f32> = (0..c_in * g.hp * g.wp)
                .map(|i| ((i * 7919 + 13) % 997) as f32 / 97.0 - 5.0)
                .collect();
            let tc = (ty1 - ty0) * g.tw;
            let stride = (tc + LOAD_SLACK).next_multiple_of(TILE_BLOCK);
            let mut want = vec![f32::NAN; 16 * c_in * stride];
            let mut got = want.clone();
            pulp::Arch::new().dispatch(InputTransform {
                g,
                x: &x,
                ty0,
                ty1,
                stride,
                v: &mut want,
            });
            InputTransform {
                g,
                x: &x,
                ty0,
                ty1,
                stride,
                v: &mut got,
            }
            .run();
            for (r, (a, b)) in want.chunks(stride).zip(got.chunks(stride)).enumerate() {
                for t in 0..tc {
                    assert_eq!(
                        a[t].to_bits(),
                        b[t].to_bits(),
                        "{c_in}x{h}x{w} tile rows {ty0}..{ty1}: row {r} tile {t}"
                    );
                }
            }
        }
    }
}
