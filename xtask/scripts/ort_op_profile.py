#!/usr/bin/env python3
"""Where onnxruntime's time goes on one model: kernel time per op type (median per node over
the profiled runs, summed by op type), for side-by-side reading with
`exec_bench MODEL --ops`. Same session settings as ../shared/bench/ort_bench.py.

Usage: ort_op_profile.py MODEL_DIR [--threads N] [--runs N]
Needs `pip install onnxruntime numpy`.
"""
import argparse, collections, json, os, statistics
import numpy as np
import onnxruntime as ort

ap = argparse.ArgumentParser()
ap.add_argument('model')
ap.add_argument('--threads', type=int, default=1)
ap.add_argument('--runs', type=int, default=20)
ap.add_argument('--nodes', type=int, default=0, help='also list the N slowest nodes with shapes')
a = ap.parse_args()
path = os.path.join(a.model, 'model.onnx') if os.path.isdir(a.model) else a.model
folder = os.path.dirname(path)
so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.enable_profiling = True
so.profile_file_prefix = '/tmp/ort_op_profile'
sess = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
feeds = {}
for k, i in enumerate(sess.get_inputs()):
    f = os.path.join(folder, f'input_{k}.npy')
    shape = [d if isinstance(d, int) else 1 for d in i.shape]
    feeds[i.name] = np.load(f) if os.path.exists(f) else np.zeros(shape, np.float32)
for _ in range(5):
    sess.run(None, feeds)
for _ in range(a.runs):
    sess.run(None, feeds)
prof = sess.end_profiling()
events = json.load(open(prof))
os.remove(prof)
per_node = collections.defaultdict(list)
op_of = {}
shapes_of = {}
for e in events:
    if e.get('cat') == 'Node' and e.get('name', '').endswith('_kernel_time'):
        n = e['name'][: -len('_kernel_time')]
        per_node[n].append(e['dur'])
        op_of[n] = e.get('args', {}).get('op_name', '?')
        shapes_of[n] = e.get('args', {}).get('input_type_shape', [])
by_op = collections.defaultdict(lambda: [0.0, 0])
for n, d in per_node.items():
    by_op[op_of[n]][0] += statistics.median(d) / 1e3
    by_op[op_of[n]][1] += 1
total = sum(v[0] for v in by_op.values())
print(f"onnxruntime {ort.__version__}, {a.threads} thread(s): sum of kernel medians {total:.3f} ms")
print("| op | nodes | ms | share |\n|---|---|---|---|")
for op, (ms, n) in sorted(by_op.items(), key=lambda kv: -kv[1][0]):
    print(f"| {op} | {n} | {ms:.3f} | {100 * ms / max(total, 1e-9):.1f} % |")
if a.nodes:
    print("slowest nodes:")
    meds = sorted(((statistics.median(d) / 1e3, n) for n, d in per_node.items()), reverse=True)
    for ms, n in meds[: a.nodes]:
        dims = ['x'.join(str(v) for v in list(t.values())[0]) for t in shapes_of[n]]
        print(f"  {ms:8.3f} ms  {n} ({op_of[n]}: {', '.join(dims)})")
