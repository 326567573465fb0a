//! Winograd F(2x2, 3x3) convolution for 3x3 stride-1 convs with enough channels on planes of
//! 14x14 and wider (VGG's 3x3 layers from 128 input channels, ResNet's and Inception's on
//! 28x28 and 14x14; the thresholds are in `conv.rs`).
//!
//! Why: a 3x3 conv costs 9 multiply-adds per output and input channel; F(2x2, 3x3) computes
//! each 2x2 output tile from a 4x4 input tile with 16, 2.25x fewer, the rest being additions
//! in the transforms (Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016). With `U = G g Gᵀ` (each 3x3 filter `g` transformed once, at prepare time),
//! `V = Bᵀ d B` (each 4x4 input tile `d`) and `Y = Aᵀ M A`, the conv is 16 independent
//! products `M[ξ] = U[ξ] · V[ξ]` (`C_out x C_in` by `C_in x tiles`), run here by the
//! channel-vectorised kernel ([`CoRows`]) with `U[ξ]` packed for it. The transforms'
//! constants are 0, ±1 and ±1/2, so the results differ from direct summation by rounding
//! only (a random chain of four 128-256 channel convs on 56x56: within 6e-6 of onnxruntime,
//! the direct kernel 1e-5; the model tolerances are 1e-3 relative).
//!
//! Tiles are processed in chunks of whole tile rows (about 256 tiles, at least one chunk per
//! worker): the input transform writes the chunk's `V` (16 x input channels x tiles), the 16
//! products its `M` (16 x output channels x tiles), the output transform reads `M` back into
//! the output rows. Each worker owns whole chunks (bands of output rows) and its own `V`/`M`
//! scratch.
//!
//! Determinism: each output is `Aᵀ (U · V) A + bias` with every sum in a fixed order that
//! depends on the shapes only (the chunking does not change any element's arithmetic), so
//! results are bit-identical for any `threads`.

use super::conv::DwAct;
use super::conv_co::{CoPacked, CoRows};

/// Widest row of tiles a chunk holds (output rows of up to 256).
pub(super) const MAX_TW: usize = 128;
/// Tiles a chunk aims for: each product reuses a block of `U[ξ]` over this many positions
/// (`kernel_bench` 3x3 256->256 on 56x56, 1 thread, chunks of 28 -> 252 tiles: about 40 ->
/// 26-33 ms; 64 tiles fell between).
const CHUNK_TILES: usize = 256;
/// Most `V` elements (16 x input channels x tiles) a chunk holds: 4 MB. One product reads
/// one `ξ`'s sixteenth of it, which stays in L2 while every block of output channels does.
const CHUNK_V: usize = 1024 * 1024;

/// The 16 transformed filters `U[ξ] = (G g Gᵀ)[ξ]`, each `C_out x C_in`, packed for
/// [`CoRows`].
#[derive(Debug, Clone)]
pub(super) struct WinoPacked {
    u: Vec<CoPacked>,
}

impl WinoPacked {
    /// Transforms and packs `w` (`[c_out, c_in, 3, 3]`, ONNX order).
    pub(super) fn new(w: &[f32], c_out: usize, c_in: usize) -> Self {
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
        Self {
            u: per
                .iter()
                .map(|m| CoPacked::new(m, c_out, c_in, None))
                .collect(),
        }
    }

    /// Elements held (for memory accounting).
    pub(super) fn len(&self) -> usize {
        self.u.iter().map(CoPacked::len).sum()
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
}

impl WinoGeo {
    pub(super) fn new(c_in: usize, c_out: usize, ho: usize, wo: usize, workers: usize) -> Self {
        let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
        Self {
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

    /// Most tiles in a chunk (the stride of `V` and `M` rows).
    pub(super) fn chunk_tiles(&self) -> usize {
        self.rows_per_chunk() * self.tw
    }

    /// Chunks in the plane.
    pub(super) fn chunks(&self) -> usize {
        self.th.div_ceil(self.rows_per_chunk())
    }

    /// Scratch one worker needs: its chunk's `V` and `M`.
    pub(super) fn worker_scratch(&self) -> usize {
        16 * (self.c_in + self.c_out) * self.chunk_tiles()
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
        let m = &mut m[..16 * g.c_out * tcm];
        // Tap k of a product reads V[ξ][k][t]: rows `tcm` apart; positions are the tiles.
        let offs: Vec<usize> = (0..g.c_in).map(|k| k * tcm).collect();
        let bases: Vec<usize> = (0..tcm).collect();
        let rpc = g.rows_per_chunk();
        let row0 = 2 * self.c0 * rpc;
        for c in self.c0..self.c1 {
            let (ty0, ty1) = (c * rpc, ((c + 1) * rpc).min(g.th));
            let tc = (ty1 - ty0) * g.tw;
            pulp::Arch::new().dispatch(InputTransform {
                g,
                x: self.x,
                ty0,
                ty1,
                stride: tcm,
                v,
            });
            for xi in 0..16 {
                let vx = &v[xi * g.c_in * tcm..(xi + 1) * g.c_in * tcm];
                let mut rows: Vec<&mut [f32]> = m[xi * g.c_out * tcm..(xi + 1) * g.c_out * tcm]
                    .chunks_mut(tcm)
                    .map(|r| &mut r[..tc])
                    .collect();
                pulp::Arch::new().dispatch(CoRows {
                    packed: &self.packed.u[xi],
                    first_block: 0,
                    x: vx,
                    offs: &offs,
                    bases: &bases[..tc],
                    rows: &mut rows,
                    act: DwAct::None,
                    taps_per_pass: g.c_in,
                    partial: &mut [],
                });
            }
            pulp::Arch::new().dispatch(OutputTransform {
                g,
                m,
                stride: tcm,
                ty0,
                ty1,
                row0,
                bias: self.bias,
                act: self.act,
                out: &mut *self.out,
            });
        }
    }
}

/// `V[ξ][ic][t] = (Bᵀ d B)[ξ]` for the tiles of tile rows `ty0..ty1` (`t` counted from the
/// chunk's first tile, rows of `V` `stride` apart). `Bᵀ = [1 0 -1 0; 0 1 1 0; 0 -1 1 0;
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
                        let at = ((i * 4 + j) * g.c_in + ic) * self.stride + t0;
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
struct OutputTransform<'a, 'b> {
    g: WinoGeo,
    m: &'a [f32],
    stride: usize,
    ty0: usize,
    ty1: usize,
    /// The output row each `out` slice starts at.
    row0: usize,
    bias: Option<&'a [f32]>,
    act: DwAct,
    out: &'a mut [&'b mut [f32]],
}

impl pulp::WithSimd for OutputTransform<'_, '_> {
    type Output = ();

    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let g = self.g;
        let tw = g.tw;
        let mut s = [[[0.0f32; MAX_TW]; 4]; 2];
        let mut y = [[0.0f32; 2 * MAX_TW]; 2];
        for (oc, orow) in self.out.iter_mut().enumerate().take(g.c_out) {
            let b = self.bias.map_or(0.0, |b| b[oc]);
            for ty in self.ty0..self.ty1 {
                let t0 = (ty - self.ty0) * tw;
                let mx = |xi: usize| {
                    let at = (xi * g.c_out + oc) * self.stride + t0;
                    &self.m[at..at + tw]
                };
                // Aᵀ M down the rows: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3 (per column j).
                for j in 0..4 {
                    let (m0, m1, m2, m3) = (mx(j), mx(4 + j), mx(8 + j), mx(12 + j));
                    let [s0, s1] = &mut s;
                    for tx in 0..tw {
                        s0[j][tx] = m0[tx] + m1[tx] + m2[tx];
                        s1[j][tx] = m1[tx] - m2[tx] - m3[tx];
                    }
                }
                // (Aᵀ M) A along the columns, interleaved into output columns 2tx, 2tx + 1.
                for (yr, sr) in y.iter_mut().zip(&s) {
                    for tx in 0..tw {
                        let y0 = sr[0][tx] + sr[1][tx] + sr[2][tx] + b;
                        let y1 = sr[1][tx] - sr[2][tx] - sr[3][tx] + b;
                        yr[2 * tx] = self.act.scalar(y0);
                        yr[2 * tx + 1] = self.act.scalar(y1);
                    }
                }
                for (i, yr) in y.iter().enumerate() {
                    let oy = 2 * ty + i;
                    if oy < g.ho {
                        let at = (oy - self.row0) * g.wo;
                        orow[at..at + g.wo].copy_from_slice(&yr[..g.wo]);
                    }
                }
            }
        }
    }
}
