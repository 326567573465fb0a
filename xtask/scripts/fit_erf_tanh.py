#!/usr/bin/env python3
"""Fits the polynomial coefficients of aegis-exec's branch-free `erf_f32` and `tanh_f32`
(crates/aegis-exec/src/kernels/elementwise.rs) and reports the worst error of the f32
evaluation (Horner's rule in f32, plain multiplies and adds, as the kernels do; numpy's f32
exp standing in for `exp_f32`) against Python's f64 `math.erf` / `math.tanh`, in units in
the last place, over a dense sweep.

    PYTHONPATH=<numpy> python3 xtask/scripts/fit_erf_tanh.py

Pieces (see the functions' docs): erf: |x| <= 0.921875 as x P(x^2), P of degree 6; above as
1 - exp(R(|x| - 2.4609375) - x^2), R of degree 10 fitting ln erfc(x) + x^2 on
[0.921875, 4]. tanh: |x| < 0.625 as x + x^3 P(x^2), P of degree 5; above from exp.
Method: weighted least squares at Chebyshev points, reweighted (Lawson's iteration) toward
the minimax fit; relative error for erf's first piece and tanh, absolute for R (an error
in R is a relative error of erfc).
"""
import math

import numpy as np

f32 = np.float32
SPLIT_ERF, MID = 0.921875, (0.921875 + 4.0) / 2
SPLIT_TANH = 0.625


def fit(f, basis, lo, hi, deg, rel, n=4000, rounds=60):
    k = np.arange(n)
    x = (lo + hi) / 2 + (hi - lo) / 2 * np.cos(np.pi * (k + 0.5) / n)
    y = np.array([f(v) for v in x])
    a = np.stack([basis(x) ** i for i in range(deg + 1)], 1)
    w = 1 / np.abs(y) if rel else np.ones_like(y)
    lawson = np.ones_like(x)
    for _ in range(rounds):
        ww = w * np.sqrt(lawson)
        c, *_ = np.linalg.lstsq(a * ww[:, None], y * ww, rcond=None)
        e = np.abs((a @ c - y) * w)
        lawson = lawson * e
        lawson /= lawson.sum()
    return c, np.max(np.abs((a @ c - y) * w))


def horner(c, t):
    acc = np.full_like(t, f32(c[-1]))
    for v in c[-2::-1]:
        acc = (acc * t + f32(v)).astype(f32)
    return acc


def worst_ulps(got, want):
    sp = np.spacing(np.abs(want.astype(f32))).astype(np.float64)
    return np.max(np.abs(got.astype(np.float64) - want) / sp)


def main():
    p_erf, e1 = fit(lambda v: math.erf(v) / v, lambda x: x * x, 1e-6, SPLIT_ERF, 6, True)
    r_erf, e2 = fit(lambda v: math.log(math.erfc(v)) + v * v, lambda x: x - MID,
                    SPLIT_ERF, 4.0, 10, False)
    p_tanh, e3 = fit(lambda v: (math.tanh(v) - v) / v**3, lambda x: x * x, 1e-4, SPLIT_TANH,
                     5, True)
    print(f"fit errors: erf P {e1:.2e} (relative), erf R {e2:.2e}, tanh P {e3:.2e}")
    for name, c in (("erf P", p_erf), ("erf R", r_erf), ("tanh P", p_tanh)):
        print(name, [float(f32(v)) for v in c])

    xs = np.linspace(0, 4.5, 400001).astype(f32)
    want = np.array([math.erf(float(v)) for v in xs])
    small = (xs * horner(p_erf, (xs * xs).astype(f32))).astype(f32)
    xc = np.minimum(xs, f32(4.0))
    e = np.exp((horner(r_erf, (xc - f32(MID)).astype(f32)) - (xc * xc).astype(f32)).astype(f32))
    got = np.where(xs <= f32(SPLIT_ERF), small, (f32(1) - e.astype(f32)).astype(f32))
    print(f"erf: worst {worst_ulps(got, want):.2f} ulp on [0, 4.5]")

    xs = np.linspace(0, 9.5, 400001).astype(f32)
    want = np.array([math.tanh(float(v)) for v in xs])
    t = (xs * xs).astype(f32)
    small = (xs + (xs * t).astype(f32) * horner(p_tanh, t)).astype(f32)
    big = f32(1) - f32(2) / (np.exp((f32(2) * np.minimum(xs, f32(9.1))).astype(f32)) + f32(1))
    got = np.where(xs < f32(SPLIT_TANH), small, big.astype(f32))
    print(f"tanh: worst {worst_ulps(got, want):.2f} ulp on [0, 9.5]")


if __name__ == "__main__":
    main()
