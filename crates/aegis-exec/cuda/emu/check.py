# Checks the CUDA kernels, run on the CPU by emu/shim.h, against numpy references (see run.sh).
# The parameter arrays are written by hand here, following the layouts documented in the .cu
# files; src/cuda/abi_tests.rs checks the Rust side's argument lists against the signatures.
import ctypes as C, os, sys
import numpy as np

OUT = sys.argv[1] if len(sys.argv) > 1 else "."
rng = np.random.default_rng(0)
L = {n: C.CDLL(os.path.join(OUT, f"lib_{n}.so")) for n in ["gemm", "conv", "norm", "pool", "ew"]}
F = lambda a: a.ctypes.data_as(C.c_void_p)
def I(v): return np.array(v, dtype=np.int64)
fails = []
def check(name, got, want, tol=1e-4):
    err = np.max(np.abs(got - want) / (1e-3 + np.abs(want))) if want.size else 0
    ok = got.shape == want.shape and np.allclose(got, want, rtol=tol, atol=tol)
    print(f"{'ok  ' if ok else 'FAIL'} {name}: max rel err {err:.2e}")
    if not ok: fails.append(name)
f32 = lambda *s: rng.standard_normal(s).astype(np.float32)
cd = lambda n, b: (n + b - 1) // b

# ---- sgemm ----
def sgemm(a, b, c, M, N, K, batch, ars, acs, brs, bcs, crs, ccs, has_c, vec, offs, alpha, beta, gy=None):
    y = np.zeros(batch * M * N, np.float32)
    p = I([M, N, K, batch, ars, acs, brs, bcs, crs, ccs, has_c, vec] + [v for o in offs for v in o])
    L["gemm"].run_sgemm(F(a), F(b), F(c), F(y), F(p), C.c_float(alpha), C.c_float(beta), cd(N, 64), gy or cd(M, 64), batch)
    return y
M, N, K = 70, 68, 36
a, b = f32(M, K), f32(K, N)
check("sgemm vec", sgemm(a, b, a, M, N, K, 1, K, 1, N, 1, 0, 0, 0, 1, [[0, 0, 0, 0]], 1, 0).reshape(M, N), a @ b)
check("sgemm scalar", sgemm(a, b, a, M, N, K, 1, K, 1, N, 1, 0, 0, 0, 0, [[0, 0, 0, 0]], 1, 0).reshape(M, N), a @ b)
M, N, K = 130, 45, 37
at, bt, c = f32(K, M), f32(N, K), f32(N)
got = sgemm(at, bt, c, M, N, K, 1, 1, M, 1, K, 0, 1, 1, 0, [[0, 0, 0, 0]], 0.5, 2.0, gy=1).reshape(M, N)
check("sgemm transA transB C-bias alpha beta (row tiles grid-strided)", got, 0.5 * at.T @ bt.T + 2.0 * c)
# batched broadcast: a [2,1,M,K], b [3,K,N] -> [2,3,M,N]
M, N, K = 5, 7, 6
a4, b3 = f32(2, 1, M, K), f32(3, K, N)
offs = [[i * M * K, j * K * N, 0, (i * 3 + j) * M * N] for i in range(2) for j in range(3)]
check("sgemm batched broadcast", sgemm(a4, b3, a4, M, N, K, 6, K, 1, N, 1, 0, 0, 0, 0, offs, 1, 0).reshape(2, 3, M, N), a4 @ b3)
# ---- sgemv (M == 1): the same table, grid.x = ceil(N / 8) when b_rs == 1, else ceil(N / 32) ----
def sgemv(a, b, c, N, K, batch, acs, brs, bcs, ccs, has_c, vec, offs, alpha, beta):
    y = np.zeros(batch * N, np.float32)
    p = I([1, N, K, batch, K, acs, brs, bcs, 0, ccs, has_c, vec] + [v for o in offs for v in o])
    L["gemm"].run_sgemv(F(a), F(b), F(c), F(y), F(p), C.c_float(alpha), C.c_float(beta), cd(N, 8 if brs == 1 else 32), batch)
    return y
for K, vec in ((36, 1), (37, 0), (1100, 1)):
    N = 45
    a1, bt, c = f32(1, K), f32(N, K), f32(N)
    got = sgemv(a1, bt, c, N, K, 1, 1, 1, K, 1, 1, vec, [[0, 0, 0, 0]], 0.5, 2.0).reshape(1, N)
    check(f"sgemv transB K={K} vec={vec} C-bias alpha beta", got, 0.5 * a1 @ bt.T + 2.0 * c)
N, K = 70, 37
a3, b = f32(3, 1, K), f32(K, N)
offs = [[i * K, 0, 0, i * N] for i in range(3)]
check("sgemv row-major B, 3 batches sharing B", sgemv(a3, b, a3, N, K, 3, 1, N, 1, 0, 0, 0, offs, 1, 0).reshape(3, 1, N), a3 @ b)

# ---- conv ----
def conv_ref(x, w, b, s, d, pb, pe, g):
    n, ci, H, W = x.shape; co, cig, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pb[0], pe[0]), (pb[1], pe[1])))
    oh = (H + pb[0] + pe[0] - (kh - 1) * d[0] - 1) // s[0] + 1
    ow = (W + pb[1] + pe[1] - (kw - 1) * d[1] - 1) // s[1] + 1
    y = np.zeros((n, co, oh, ow), np.float64); cog = co // g
    for o in range(co):
        gi = o // cog
        for i in range(kh):
            for j in range(kw):
                patch = xp[:, gi * cig:(gi + 1) * cig, i * d[0]: i * d[0] + s[0] * (oh - 1) + 1: s[0], j * d[1]: j * d[1] + s[1] * (ow - 1) + 1: s[1]]
                y[:, o] += np.einsum("nchw,c->nhw", patch, w[o, :, i, j])
        if b is not None: y[:, o] += b[o]
    return y.astype(np.float32)
def geo(xs, ys, cout, k, s, d, pb, g, hb, va):
    p3 = lambda v, f: [f] * (3 - len(v)) + list(v)
    return I([xs[0], xs[1], cout, g] + p3(xs[2:], 1) + p3(ys[2:], 1) + p3(k, 1) + p3(s, 1) + p3(d, 1) + p3(pb, 0) + [hb, va, 0])
for (name, xs, ws, s, d, pb, pe, g, hb) in [
    ("conv 3x3 pad1 bias", (2, 5, 9, 11), (7, 5, 3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 1, True),
    ("conv strided dilated asym pads, 70 out ch", (1, 8, 13, 12), (70, 8, 3, 2), (2, 1), (2, 3), (2, 0), (1, 3), 1, False),
    ("conv groups vec_a (R=36)", (1, 8, 7, 7), (6, 4, 3, 3), (1, 1), (1, 1), (0, 0), (0, 0), 2, True),
    ("conv 17x16 kernel (272 taps, past the tap table)", (1, 2, 20, 18), (5, 2, 17, 16), (1, 1), (1, 1), (1, 2), (1, 0), 1, True),
]:
    x, w = f32(*xs), f32(*ws); b = f32(ws[0]) if hb else None
    want = conv_ref(x, w, b, s, d, pb, pe, g)
    y = np.zeros(want.shape, np.float32)
    R = ws[1] * ws[2] * ws[3]; va = int(R % 4 == 0)
    p = geo(xs, want.shape, ws[0], ws[2:], s, d, pb, g, int(hb), va)
    Q = xs[0] * want.shape[2] * want.shape[3]
    L["conv"].run_igemm(F(x), F(w), F(b if hb else w), F(y), F(p), 19, cd(Q, 64), cd(ws[0] // g, 64), g)
    check(name, y, want)
    if name.startswith("conv 3x3"):
        L["conv"].run_igemm(F(x), F(w), F(b), F(y), F(p), 0, cd(Q, 64), 1, 1)
        check("conv + fused relu", y, np.maximum(want, 0))
# 128-channel tiles (8 x 4 per thread): channels not a multiple of 128, vec_a and scalar A,
# groups, and a split-K run.
for (name, xs, ws_, g, split) in [
    ("conv128 vec_a bias 140 out ch", (1, 8, 9, 7), (140, 8, 3, 3), 1, 0),
    ("conv128 groups scalar A (R=27)", (2, 6, 6, 5), (260, 3, 3, 3), 2, 0),
    ("conv128 split-K (2 slices)", (1, 8, 9, 7), (140, 8, 3, 3), 1, 48),
    ("conv128 groups split-K (2 groups x 2 slices)", (2, 6, 6, 5), (260, 3, 3, 3), 2, 16),
]:
    x, w, b = f32(*xs), f32(*ws_), f32(ws_[0])
    want = conv_ref(x, w, b, (1, 1), (1, 1), (1, 1), (1, 1), g)
    Q = xs[0] * want.shape[2] * want.shape[3]
    R = ws_[1] * ws_[2] * ws_[3]
    p = geo(xs, want.shape, ws_[0], (3, 3), (1, 1), (1, 1), (1, 1), g, 1, int(R % 4 == 0))
    y = np.zeros(want.shape, np.float32)
    if split:
        p[-1] = split
        slices = cd(R, split)
        ws = np.zeros(slices * ws_[0] * Q, np.float32)
        L["conv"].run_igemm128(F(x), F(w), F(b), F(ws), F(p), 19, cd(Q, 64), cd(ws_[0] // g, 128), g * slices)
        L["conv"].run_splitk_reduce(F(ws), F(b), F(y), F(I([slices, ws_[0], Q, want.shape[2] * want.shape[3], 1])), 19, 4)
    else:
        L["conv"].run_igemm128(F(x), F(w), F(b), F(y), F(p), 19, cd(Q, 64), cd(ws_[0] // g, 128), g)
    check(name, y, want)
# split-K: 3 slices of r (lengths 32, 32, 8 of R = 72) into a [3][C_out][Q] workspace, then
# the ordered reduction with bias and a fused relu.
xs, ws_ = (2, 8, 6, 5), (70, 8, 3, 3)
x, w, b = f32(*xs), f32(*ws_), f32(70)
want = conv_ref(x, w, b, (1, 1), (1, 1), (1, 1), (1, 1), 1)
Q = xs[0] * want.shape[2] * want.shape[3]
p = geo(xs, want.shape, 70, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, 0)
p[-1] = 32
ws = np.zeros(3 * 70 * Q, np.float32)
L["conv"].run_igemm(F(x), F(w), F(b), F(ws), F(p), 19, cd(Q, 64), cd(70, 64), 3)
y = np.zeros(want.shape, np.float32)
L["conv"].run_splitk_reduce(F(ws), F(b), F(y), F(I([3, 70, Q, want.shape[2] * want.shape[3], 1])), 0, 4)
check("conv split-K (3 slices) + reduce with bias and relu", y, np.maximum(want, 0))
x, w, b = f32(2, 6, 10, 9), f32(6, 1, 3, 3), f32(6)
want = conv_ref(x, w, b, (2, 2), (1, 1), (1, 1), (1, 1), 6)
y = np.zeros(want.shape, np.float32)
L["conv"].run_dw(F(x), F(w), F(b), F(y), F(geo(x.shape, want.shape, 6, (3, 3), (2, 2), (1, 1), (1, 1), 6, 1, 0)), 2)
check("depthwise", y, want)
# conv transpose: x [1,4,5,6], w [4,3,3,3], group 1, stride 2, pads (1,1,0,0)
x, w, b = f32(1, 4, 5, 6), f32(4, 3, 3, 3), f32(3)
full = np.zeros((1, 3, (5 - 1) * 2 + 3, (6 - 1) * 2 + 3), np.float64)
for ci in range(4):
    for ih in range(5):
        for iw in range(6):
            full[0, :, ih * 2: ih * 2 + 3, iw * 2: iw * 2 + 3] += x[0, ci, ih, iw] * w[ci]
want = (full[:, :, 1:, 1:] + b[None, :, None, None]).astype(np.float32)
y = np.zeros(want.shape, np.float32)
L["conv"].run_convt(F(x), F(w), F(b), F(y), F(geo(x.shape, want.shape, 3, (3, 3), (2, 2), (1, 1), (1, 1), 1, 1, 0)), 2)
check("conv transpose stride 2 pads 1,1,0,0", y, want)

# ---- norm ----
x = f32(6, 300); y = np.zeros_like(x)
L["norm"].run_softmax_rows(F(x), F(y), C.c_longlong(6), C.c_longlong(300), 0)
e = np.exp(x - x.max(1, keepdims=True)); check("softmax rows", y, e / e.sum(1, keepdims=True))
L["norm"].run_softmax_rows(F(x), F(y), C.c_longlong(6), C.c_longlong(300), 1)
check("logsoftmax rows", y, np.log(e / e.sum(1, keepdims=True)))
x = f32(2, 5, 7); y = np.zeros_like(x)
L["norm"].run_softmax_strided(F(x), F(y), C.c_longlong(2), C.c_longlong(5), C.c_longlong(7), 0)
e = np.exp(x - x.max(1, keepdims=True)); check("softmax strided axis 1", y, e / e.sum(1, keepdims=True))
x, s, b = f32(5, 40), f32(40), f32(40); y = np.zeros_like(x); m = np.zeros(5, np.float32); inv = np.zeros(5, np.float32)
L["norm"].run_layernorm(F(x), F(s), F(b), F(y), F(m), F(inv), C.c_longlong(5), C.c_longlong(40), 7, C.c_float(1e-5))
mu = x.mean(1, keepdims=True); sd = 1 / np.sqrt(x.var(1, keepdims=True) + 1e-5)
check("layernorm", y, (x - mu) * sd * s + b); check("layernorm mean", m, mu[:, 0]); check("layernorm inv_std", inv, sd[:, 0])
x = f32(7, 1000); y = np.zeros(7, np.float32)
L["norm"].run_reduce_rows(F(x), F(y), C.c_longlong(7), C.c_longlong(1000), C.c_float(1000)); check("reduce rows mean", y, x.mean(1))
x = f32(3, 4, 5); y = np.zeros(4, np.float32)
L["norm"].run_reduce_general(F(x), F(y), F(I([4, 15, 1, 2, 4, 5, 3, 5, 20, 1])), C.c_float(15)); check("reduce general axes 0,2", y, x.mean((0, 2)))

# ---- pool ----
def pool_ref(x, k, s, d, pb, pe, kind, cip, ceil):
    n, c, H, W = x.shape
    def outlen(i, a):
        span = i + pb[a] + pe[a] - ((k[a] - 1) * d[a] + 1)
        o = (-(-span // s[a]) if ceil else span // s[a]) + 1
        if ceil and (o - 1) * s[a] >= i + pb[a]: o -= 1
        return o
    oh, ow = outlen(H, 0), outlen(W, 1)
    y = np.zeros((n, c, oh, ow), np.float32)
    for i in range(oh):
        for j in range(ow):
            vals, padded = [], 0
            for a in range(k[0]):
                for bb in range(k[1]):
                    h, w_ = i * s[0] - pb[0] + a * d[0], j * s[1] - pb[1] + bb * d[1]
                    if -pb[0] <= h < H + pe[0] and -pb[1] <= w_ < W + pe[1]: padded += 1
                    if 0 <= h < H and 0 <= w_ < W: vals.append(x[:, :, h, w_])
            v = np.stack(vals, -1)
            y[:, :, i, j] = v.max(-1) if kind == 0 else v.sum(-1) / (padded if cip else len(vals))
    return y
def prun(x, k, s, d, pb, pe, kind, cip, ceil):
    want = pool_ref(x, k, s, d, pb, pe, kind, cip, ceil)
    y = np.zeros(want.shape, np.float32)
    m = I([x.shape[0] * x.shape[1], 1, x.shape[2], x.shape[3], 1, want.shape[2], want.shape[3]] + [1] + list(k) + [1] + list(s) + [1] + list(d) + [0] + list(pb) + [0] + list(pe))
    L["pool"].run_pool(F(x), F(y), F(m), kind, cip)
    return y, want
x = f32(1, 3, 9, 10)
check("avgpool ceil count_include_pad", *prun(x, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, 1, True))
check("avgpool ceil exclude pad", *prun(x, (3, 3), (2, 2), (1, 1), (1, 1), (1, 1), 1, 0, True))
check("maxpool dilated", *prun(f32(2, 3, 11, 11), (3, 3), (1, 1), (2, 2), (1, 1), (1, 1), 0, 0, False))

# ---- elementwise ----
a, b = f32(2, 3, 4), f32(3, 1); y = np.zeros((2, 3, 4), np.float32)
# coalesced meta: shape [2,3,4] -> [2, 3, 4] (a contiguous merges, b not): rank 3 n 24 shape, a strides, b strides
L["ew"].run_binary(F(a), F(b), F(y), F(I([3, 24, 2, 3, 4, 12, 4, 1, 0, 1, 0])), 0); check("binary add broadcast", y, a + b)
L["ew"].run_binary(F(a), F(b), F(y), F(I([3, 24, 2, 3, 4, 12, 4, 1, 0, 1, 0])), 6); check("binary python mod", y, np.mod(a, b))
x = f32(2, 3, 4, 5); y = np.zeros((2, 4, 5, 3), np.float32)
L["ew"].run_copy(F(x), F(y), F(I([4, 120, 0, 0, 2, 4, 5, 3, 60, 5, 1, 20, 60, 15, 3, 1])), 4); check("transpose 0,2,3,1", y, x.transpose(0, 2, 3, 1))
x = f32(5, 8); want = x[4:0:-2, 1:8:3]; y = np.zeros(want.shape, np.float32)
L["ew"].run_copy(F(x), F(y), F(I([2, want.size, 4 * 8 + 1, 0, 2, 3, -16, 3, 3, 1])), 4); check("slice negative step", y, want)
x = f32(1, 2, 4, 5); want = np.pad(x, ((0, 0), (0, 0), (2, 1), (1, 3)), mode="reflect"); y = np.zeros(want.shape, np.float32)
L["ew"].run_pad(F(x), F(y), F(I([4, want.size, *want.shape, *x.shape, 0, 0, 2, 1, 40, 20, 5, 1])), 1, C.c_float(0)); check("pad reflect", y, want)
want = np.pad(x, ((0, 0), (0, 0), (2, 1), (1, 3)), mode="wrap")
L["ew"].run_pad(F(x), F(y), F(I([4, want.size, *want.shape, *x.shape, 0, 0, 2, 1, 40, 20, 5, 1])), 3, C.c_float(0)); check("pad wrap", y, want)
x = f32(4, 5, 3); idx = np.array([[0, -1, 2], [4, 1, -5]], np.int64); want = np.take(x, idx, axis=1); y = np.zeros(want.shape, np.float32)
L["ew"].run_gather(F(x), F(idx), 1, F(y), F(I([4, 5, 3, 6, want.size])), 4); check("gather negative indices", y, want)
x = f32(1001); y = np.zeros_like(x)
L["ew"].run_unary(F(x), F(y), C.c_ulonglong(1001), 8, C.c_float(0), C.c_float(0)); check("hardswish", y, x * np.clip(x / 6 + 0.5, 0, 1))
print("FAILURES:", fails)
sys.exit(1 if fails else 0)
