#!/usr/bin/env python3
"""Per-node AegisRT against onnxruntime in the same minutes: alternating rounds of
`aegisrt profile --json` (its own process) and an onnxruntime profiling session (this
process), nodes matched by op type, input shape and filter shape without its first dimension
(onnxruntime's NCHWc pads output channels, e.g. 1000 -> 1008), times summed per key; prints
each key's median over the rounds for both, the difference and the median of the rounds'
ratios, largest first. A node onnxruntime fused away or keyed differently (its NCHWc
padding of input channels too) shows 0 on one side and no ratio.

Usage: ort_pernode.py MODEL_DIR THREADS ROUNDS
Why: the VM's speed drifts by 20-30 % over minutes, so per-node tables taken minutes apart
(exec_bench --ops, then ort_op_profile.py) put the drift into the comparison. Needs
`pip install onnxruntime numpy` and a release build of the CLI (`cargo build --release -p
aegisrt`). Profile times at 2 threads include the helper's hand-offs; compare whole models
with ort_interleaved.py.
"""
import collections, json, os, statistics, subprocess, sys
import numpy as np, onnxruntime as ort
AEGISRT = os.path.join(os.path.dirname(__file__), '..', '..', 'target', 'release', 'aegisrt')
model_dir = sys.argv[1]; threads = int(sys.argv[2]); rounds = int(sys.argv[3])
path = os.path.join(model_dir, 'model.onnx')
def key(op, shapes):
    # op + input shape + weight shape without its first dim (ORT pads output channels)
    parts = shapes[:2]
    if len(parts) > 1:
        w = parts[1].split('x'); parts = [parts[0], 'x'.join(w[1:])]
    return op + ' ' + ', '.join(parts)
def shape_args():
    # Inputs fixed to the reference inputs' shapes (models with open dimensions).
    s = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    args = []
    for k, i in enumerate(s.get_inputs()):
        f = os.path.join(model_dir, f'input_{k}.npy')
        if os.path.exists(f):
            args += ['--shape', i.name + '=' + ','.join(str(d) for d in np.load(f).shape)]
    return args
def ours():
    run = subprocess.run([AEGISRT, 'profile', path, '--threads', str(threads), '--json', '--top', '1000', '--iterations', '20'] + SHAPES, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"aegisrt profile failed: {run.stderr.strip()}")
    d = json.loads(run.stdout); r = collections.defaultdict(float)
    for n in d['slowest']:
        r[key(n['op'], n['shapes'].split(' -> ')[0].split(', '))] += n['ms']
    return r, d['kernels_ms']
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
feeds = {}
def theirs():
    so.enable_profiling = True; so.profile_file_prefix = '/tmp/ort_pernode'
    s = ort.InferenceSession(path, so, providers=['CPUExecutionProvider'])
    for k, i in enumerate(s.get_inputs()):
        f = os.path.join(model_dir, f'input_{k}.npy')
        feeds[i.name] = np.load(f)
    for _ in range(25): s.run(None, feeds)
    prof = s.end_profiling(); ev = json.load(open(prof)); os.remove(prof); per = collections.defaultdict(list); info = {}
    for e in ev:
        if e.get('cat') == 'Node' and e['name'].endswith('_kernel_time'):
            n = e['name'][:-12]; per[n].append(e['dur'])
            a = e.get('args', {})
            info[n] = key(a.get('op_name', '?'), ['x'.join(str(v) for v in list(t.values())[0]) for t in a.get('input_type_shape', [])])
    r = collections.defaultdict(float)
    for n, d in per.items(): r[info[n]] += statistics.median(d[5:]) / 1e3
    return r, sum(r.values())
SHAPES = shape_args()
A = collections.defaultdict(list); B = collections.defaultdict(list); ta = []; tb = []
for i in range(rounds):
    a, x = ours(); b, y = theirs()
    ta.append(x); tb.append(y)
    for k in set(a) | set(b):
        A[k].append(a.get(k, 0)); B[k].append(b.get(k, 0))
print(f"kernel sums: ours {statistics.median(ta):.3f} ORT {statistics.median(tb):.3f}")
rows = sorted(A, key=lambda k: -statistics.median(A[k]))
for k in rows:
    a, b = statistics.median(A[k]), statistics.median(B[k])
    rat = [x / y for x, y in zip(A[k], B[k]) if y > 0]
    print(f"{a:7.3f} {b:7.3f} {a - b:+7.3f} {statistics.median(rat) if rat else float('nan'):5.2f}  {k}")
