#!/usr/bin/env python3
"""AegisRT against onnxruntime in interleaved bursts, so both see the same machine state.

Usage: ort_interleaved.py MODEL_DIR... [--aegisrt PATH] [--threads 1,2] [--rounds 6]
                          [--burst 10] [--warmup 3]

Why: on a shared VM the speed of the same binary drifts by 20-30 % over minutes, so medians
taken minutes apart (one runtime's table, then the other's) put that drift into the ratio.
Here each round times a burst of `aegisrt bench` (its own process: model loaded, `--warmup`
untimed runs, `--burst` timed ones) next to a burst of onnxruntime in this process (session
created once per model and thread count, same settings as ../shared/bench/ort_bench.py),
alternating which goes first. A round's ratio is the two bursts' medians, seconds apart; the
table gives the median of the rounds' ratios and their range, and each side's median of its
burst medians. Inputs: MODEL_DIR/input_K.npy for onnxruntime (as ort_bench.py); aegisrt
bench generates its own (uniform [0, 1), seed 0): the shared models' timings do not depend
on the values. Needs `pip install onnxruntime numpy` and a release build of the CLI
(`cargo build --release -p aegisrt`).
"""
import argparse, json, os, statistics, subprocess, time
import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument('models', nargs='+')
ap.add_argument('--aegisrt', default=os.path.join(os.path.dirname(__file__), '..', '..',
                                                  'target', 'release', 'aegisrt'))
ap.add_argument('--threads', default='1,2')
ap.add_argument('--rounds', type=int, default=6)
ap.add_argument('--burst', type=int, default=10)
ap.add_argument('--warmup', type=int, default=3)
a = ap.parse_args()


def ort_session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    sess = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
    folder = os.path.dirname(path)
    rng = np.random.default_rng(0)
    feeds = {}
    for k, i in enumerate(sess.get_inputs()):
        f = os.path.join(folder, f'input_{k}.npy')
        if os.path.exists(f):
            feeds[i.name] = np.load(f)
        else:
            shape = [d if isinstance(d, int) else 1 for d in i.shape]
            feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    return sess, feeds


def ort_burst(sess, feeds, n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def aegis_burst(path, feeds, threads, n, warmup):
    # Open dimensions fixed to the shapes onnxruntime is fed.
    shapes = [f"--shape={k}={','.join(map(str, v.shape))}" for k, v in feeds.items()]
    out = subprocess.run([a.aegisrt, 'bench', path, '--threads', str(threads), '--iterations',
                          str(n), '--warmup', str(warmup), '--json'] + shapes,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f'aegisrt bench failed on {path}: {out.stderr.strip()}')
    return json.loads(out.stdout)['median_ms']


print(f'onnxruntime {ort.__version__}; {a.rounds} rounds of {a.burst}-run bursts, alternating')
print('| model | threads | aegis ms | ORT ms | aegis/ORT (median of rounds) | range |')
print('|---|---|---|---|---|---|')
for m in a.models:
    path = os.path.join(m, 'model.onnx') if os.path.isdir(m) else m
    if not os.path.exists(path):
        continue  # not a model folder (../shared/models/lifetimes)
    name = os.path.basename(os.path.dirname(path)) or path
    for threads in [int(t) for t in a.threads.split(',')]:
        sess, feeds = ort_session(path, threads)
        ort_burst(sess, feeds, a.warmup)
        ours, theirs, ratios = [], [], []
        for r in range(a.rounds):
            if r % 2 == 0:
                x = aegis_burst(path, feeds, threads, a.burst, a.warmup)
                y = ort_burst(sess, feeds, a.burst)
            else:
                y = ort_burst(sess, feeds, a.burst)
                x = aegis_burst(path, feeds, threads, a.burst, a.warmup)
            ours.append(x)
            theirs.append(y)
            ratios.append(x / y)
        print(f'| {name} | {threads} | {statistics.median(ours):.2f} | '
              f'{statistics.median(theirs):.2f} | {statistics.median(ratios):.2f} | '
              f'{min(ratios):.2f}-{max(ratios):.2f} |', flush=True)
        del sess
