#!/usr/bin/env python3
"""GPU peers for `cuda_bench`: each shared model on PyTorch (CUDA) eager and CUDA-graph replay,
and on onnxruntime (its CUDA provider where the installed onnxruntime has one, else the CPU).

Run on the GPU machine (its python3 has torch, onnx and onnxruntime):

    python3 xtask/scripts/gpu_peers.py MODELS_DIR [--iters 50]

PyTorch has no ONNX importer, so each graph runs through a small interpreter that maps every
node to one `torch` / `torch.nn.functional` call on the GPU, in the file's order: that is what
an `nn.Module`'s eager forward does too (one Python dispatch and one or more kernel launches per
op). Nodes computable from constants and static input shapes (ConstantOfShape, Shape
arithmetic) are evaluated once before timing, as a hand-written module would hold them as
parameters or Python ints. Batch norm is not folded into the convolution (eval-mode torch
does not fold it either). The output is checked against the model's reference
(`output_K.npy`) with the model's own tolerance before it is timed.

Timing matches `cuda_bench`'s: one inference is host input -> device -> run -> host output,
median of `--iters` after 3 warm-ups, synchronised.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper
import torch
import torch.nn.functional as F

DTYPES = {
    1: torch.float32,
    2: torch.uint8,
    3: torch.int8,
    6: torch.int32,
    7: torch.int64,
    9: torch.bool,
    10: torch.float16,
    11: torch.float64,
}


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def pads_of(a, x, k, s, d):
    """ONNX pads (begin..., end...) for the spatial dims, resolving auto_pad."""
    n = len(k)
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        pads = [0] * (2 * n)
        for i in range(n):
            size = x.shape[2 + i]
            out = -(-size // s[i])
            total = max(0, (out - 1) * s[i] + (k[i] - 1) * d[i] + 1 - size)
            small, big = total // 2, total - total // 2
            pads[i], pads[i + n] = (small, big) if auto == "SAME_UPPER" else (big, small)
        return pads
    if auto == "VALID":
        return [0] * (2 * n)
    return list(a.get("pads", [0] * (2 * n)))


def symmetric(pads):
    n = len(pads) // 2
    return all(pads[i] == pads[i + n] for i in range(n))


def torch_pad(pads):
    """ONNX (b1, b2, e1, e2) -> F.pad's last-dim-first (b2, e2, b1, e1)."""
    n = len(pads) // 2
    out = []
    for i in reversed(range(n)):
        out += [pads[i], pads[i + n]]
    return out


class Interpreter:
    def __init__(self, model, dev):
        self.dev = dev
        self.opset = max(
            (o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=1
        )
        self.const = {}
        for init in model.graph.initializer:
            self.const[init.name] = self.to_dev(numpy_helper.to_array(init))
        self.inputs = [i.name for i in model.graph.input if i.name not in self.const]
        self.outputs = [o.name for o in model.graph.output]
        self.nodes = list(model.graph.node)
        self.plan = None

    def to_dev(self, arr):
        return torch.from_numpy(np.ascontiguousarray(arr)).to(self.dev)

    def prepare(self, feeds):
        """Runs once; constant nodes are kept, the rest become the timed plan."""
        env = dict(self.const)
        env.update(feeds)
        static = set(self.const)
        plan = []
        for node in self.nodes:
            fn = self.compile(node, env)
            ins = [env[i] if i else None for i in node.input]
            outs = fn(*ins)
            if not isinstance(outs, (list, tuple)):
                outs = [outs]
            for name, v in zip(node.output, outs):
                env[name] = v
            const = node.op_type in ("Constant", "ConstantOfShape", "Shape") or (
                all((not i) or i in static for i in node.input) and node.input
            )
            if const:
                static.update(node.output)
            else:
                plan.append((fn, list(node.input), list(node.output)))
        self.static = {k: env[k] for k in static}
        self.plan = plan
        return [env[o] for o in self.outputs]

    def run(self, feeds):
        env = dict(self.static)
        env.update(feeds)
        for fn, ins, outs in self.plan:
            r = fn(*[env[i] if i else None for i in ins])
            if isinstance(r, torch.Tensor):
                # Ops whose optional outputs no one reads (Dropout's mask) return one tensor.
                env[outs[0]] = r
            else:
                for name, v in zip(outs, r):
                    env[name] = v
        return [env[o] for o in self.outputs]

    def compile(self, node, env):
        """Returns a callable for `node`; `env` holds the values known at prepare time."""
        a = attrs(node)
        op = node.op_type
        ints = lambda name: [int(v) for v in env[name].cpu().tolist()]  # noqa: E731

        if op in ("Identity", "Dropout"):
            return lambda x, *_: x
        if op == "Relu":
            return F.relu
        if op == "Sqrt":
            return torch.sqrt
        if op in ("Add", "Sum"):
            return lambda *xs: xs[0] + xs[1] if len(xs) == 2 else sum(xs[1:], xs[0])
        if op == "Sub":
            return torch.sub
        if op == "Mul":
            return torch.mul
        if op == "Div":
            def div(x, y):
                if x.dtype.is_floating_point:
                    return x / y
                return torch.div(x, y, rounding_mode="trunc")
            return div
        if op == "Mod":
            fmod = a.get("fmod", 0)
            return torch.fmod if fmod else torch.remainder
        if op == "Clip":
            if self.opset < 11:
                lo, hi = a.get("min", None), a.get("max", None)
            else:
                bound = lambda k: (  # noqa: E731
                    env[node.input[k]].item() if len(node.input) > k and node.input[k] else None
                )
                lo, hi = bound(1), bound(2)
            return lambda x, *_: torch.clamp(x, lo, hi)
        if op == "HardSigmoid":
            al, be = a.get("alpha", 0.2), a.get("beta", 0.5)
            return lambda x: torch.clamp(x * al + be, 0.0, 1.0)
        if op == "Cast":
            dt = DTYPES[a["to"]]
            return lambda x: x.to(dt)
        if op == "Constant":
            v = self.to_dev(numpy_helper.to_array(a["value"]))
            return lambda: v
        if op == "ConstantOfShape":
            val = numpy_helper.to_array(a["value"]) if "value" in a else np.zeros(1, np.float32)
            def cos(shape):
                return self.to_dev(np.full([int(s) for s in shape.cpu().tolist()], val.reshape(-1)[0], val.dtype))
            return cos
        if op == "Shape":
            return lambda x: torch.tensor(list(x.shape), dtype=torch.int64, device=self.dev)
        if op == "Conv":
            w = env[node.input[1]]
            k = list(a.get("kernel_shape", w.shape[2:]))
            s = list(a.get("strides", [1] * len(k)))
            d = list(a.get("dilations", [1] * len(k)))
            g = a.get("group", 1)
            x = env[node.input[0]]
            pads = pads_of(a, x, k, s, d)
            conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[len(k)]
            if symmetric(pads):
                p = pads[: len(k)]
                return lambda x, w, b=None: conv(x, w, b, s, p, d, g)
            tp = torch_pad(pads)
            return lambda x, w, b=None: conv(F.pad(x, tp), w, b, s, 0, d, g)
        if op in ("MaxPool", "AveragePool"):
            k = list(a["kernel_shape"])
            s = list(a.get("strides", [1] * len(k)))
            d = list(a.get("dilations", [1] * len(k)))
            x = env[node.input[0]]
            pads = pads_of(a, x, k, s, d)
            ceil = bool(a.get("ceil_mode", 0))
            if len(k) != 2:
                raise NotImplementedError(f"{len(k)}-D {op}")
            if op == "MaxPool" and len(node.output) > 1:
                raise NotImplementedError("MaxPool Indices")
            if op == "AveragePool" and d != [1] * len(k):
                raise NotImplementedError("dilated AveragePool")
            cip = bool(a.get("count_include_pad", 0))
            if symmetric(pads):
                p = pads[: len(k)]
                if op == "MaxPool":
                    return lambda x: F.max_pool2d(x, k, s, p, d, ceil_mode=ceil)
                return lambda x: F.avg_pool2d(x, k, s, p, ceil_mode=ceil, count_include_pad=cip)
            # Asymmetric pads (Caffe-style exports): pad explicitly, as a hand-written module
            # would. Max: -inf never wins. Average without padded cells: divide the padded sum
            # by the count of real cells under each window.
            tp = torch_pad(pads)
            if op == "MaxPool":
                return lambda x: F.max_pool2d(F.pad(x, tp, value=float("-inf")), k, s, 0, d, ceil_mode=ceil)
            if cip:
                return lambda x: F.avg_pool2d(F.pad(x, tp), k, s, 0, ceil_mode=ceil)
            ones = torch.ones((1, 1) + tuple(x.shape[2:]), device=self.dev, dtype=x.dtype)
            count = F.avg_pool2d(F.pad(ones, tp), k, s, 0, ceil_mode=ceil)
            return lambda x: F.avg_pool2d(F.pad(x, tp), k, s, 0, ceil_mode=ceil) / count
        if op == "GlobalAveragePool":
            return lambda x: x.mean(dim=tuple(range(2, x.dim())), keepdim=True)
        if op == "LRN":
            size, al, be, bias = a["size"], a.get("alpha", 1e-4), a.get("beta", 0.75), a.get("bias", 1.0)
            return lambda x: F.local_response_norm(x, size, al, be, bias)
        if op == "BatchNormalization":
            eps = a.get("epsilon", 1e-5)
            return lambda x, sc, b, m, v: F.batch_norm(x, m, v, sc, b, False, 0.0, eps)
        if op == "LayerNormalization":
            axis, eps = a.get("axis", -1), a.get("epsilon", 1e-5)
            x = env[node.input[0]]
            shape = list(x.shape[axis:])
            return lambda x, sc, b=None: F.layer_norm(x, shape, sc, b, eps)
        if op == "Concat":
            axis = a["axis"]
            return lambda *xs: torch.cat(xs, axis)
        if op == "Reshape":
            x, shape = env[node.input[0]], ints(node.input[1])
            allowzero = a.get("allowzero", 0)
            target = [x.shape[i] if (v == 0 and not allowzero) else v for i, v in enumerate(shape)]
            return lambda x, _s: x.reshape(target)
        if op == "Flatten":
            axis = a.get("axis", 1)
            def flat(x):
                ax = axis if axis >= 0 else axis + x.dim()
                lead = 1
                for v in x.shape[:ax]:
                    lead *= v
                return x.reshape(lead, -1)
            return flat
        if op == "Transpose":
            perm = a.get("perm")
            return lambda x: x.permute(*(perm if perm is not None else reversed(range(x.dim()))))
        if op in ("Unsqueeze", "Squeeze"):
            axes = a.get("axes") if self.opset < 13 else (ints(node.input[1]) if len(node.input) > 1 else None)
            x = env[node.input[0]]
            if op == "Unsqueeze":
                rank = x.dim() + len(axes)
                shape = list(x.shape)
                for ax in sorted(v % rank for v in axes):
                    shape.insert(ax, 1)
            else:
                drop = {v % x.dim() for v in axes} if axes else {i for i, v in enumerate(x.shape) if v == 1}
                shape = [v for i, v in enumerate(x.shape) if i not in drop]
            return lambda x, *_: x.reshape(shape)
        if op == "Softmax":
            axis = a.get("axis", -1 if self.opset >= 13 else 1)
            if self.opset >= 13:
                return lambda x: torch.softmax(x, axis)
            def sm(x):
                ax = axis % x.dim()
                lead = 1
                for v in x.shape[:ax]:
                    lead *= v
                return torch.softmax(x.reshape(lead, -1), 1).reshape(x.shape)
            return sm
        if op == "Gemm":
            al, be = a.get("alpha", 1.0), a.get("beta", 1.0)
            ta, tb = a.get("transA", 0), a.get("transB", 0)
            def gemm(x, w, c=None):
                x = x.t() if ta else x
                w = w.t() if tb else w
                if c is None:
                    return al * (x @ w) if al != 1.0 else x @ w
                if al == 1.0 and be == 1.0:
                    return torch.addmm(c, x, w) if c.dim() <= 2 else x @ w + c
                return torch.addmm(c, x, w, beta=be, alpha=al)
            return gemm
        if op == "MatMul":
            return torch.matmul
        if op == "Gather":
            axis = a.get("axis", 0)
            def gather(x, idx):
                ax = axis % x.dim()
                i = torch.where(idx < 0, idx + x.shape[ax], idx)
                out = torch.index_select(x, ax, i.reshape(-1))
                return out.reshape(list(x.shape[:ax]) + list(idx.shape) + list(x.shape[ax + 1:]))
            return gather
        if op == "Slice":
            x = env[node.input[0]]
            if self.opset < 10:
                starts, ends = a["starts"], a["ends"]
                axes = a.get("axes", list(range(len(starts))))
                steps = [1] * len(starts)
            else:
                starts, ends = ints(node.input[1]), ints(node.input[2])
                axes = ints(node.input[3]) if len(node.input) > 3 and node.input[3] else list(range(len(starts)))
                steps = ints(node.input[4]) if len(node.input) > 4 and node.input[4] else [1] * len(starts)
            idx = [slice(None)] * x.dim()
            for st, en, ax, sp in zip(starts, ends, axes, steps):
                if sp != 1:
                    raise NotImplementedError("Slice with step != 1")
                dim = x.shape[ax % x.dim()]
                st = max(0, min(dim, st + dim if st < 0 else st))
                en = max(0, min(dim, en + dim if en < 0 else en))
                idx[ax % x.dim()] = slice(st, en)
            idx = tuple(idx)
            return lambda x, *_: x[idx]
        raise NotImplementedError(f"op {op}")


def load_model(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    path = os.path.join(d, "model_static.onnx")
    if not os.path.exists(path):
        path = os.path.join(d, "model.onnx")
    ins = [np.load(os.path.join(d, f"input_{k}.npy")) for k in range(len(meta["inputs"]))]
    outs = [np.load(os.path.join(d, f"output_{k}.npy")) for k in range(len(meta["outputs"]))]
    return meta, path, ins, outs


def check(got, want, rtol, atol):
    worst = 0.0
    for g, w in zip(got, want):
        g = np.asarray(g, np.float64)
        w = np.asarray(w, np.float64)
        if g.shape != w.shape:
            return f"shape {g.shape} != {w.shape}"
        excess = np.abs(g - w) - (atol + rtol * np.abs(w))
        worst = max(worst, float(np.nanmax(excess)) if excess.size else 0.0)
    return "ok" if worst <= 0 else f"off by {worst:.3g} beyond tolerance"


def median_ms(fn, iters):
    for _ in range(3):
        fn()
    ts = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3


def torch_peer(d, iters):
    meta, path, ins, outs = load_model(d)
    dev = torch.device("cuda")
    # Plain FP32, as our kernels compute: PyTorch lets cuDNN convolutions use TF32 by default.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    interp = Interpreter(onnx.load(path), dev)
    names = interp.inputs
    with torch.inference_mode():
        feeds = {n: interp.to_dev(x) for n, x in zip(names, ins)}
        interp.prepare(feeds)
        got = [o.cpu().numpy() for o in interp.run(feeds)]
        verdict = check(got, outs, meta["rtol"], meta["atol"])

        def eager():
            f = {n: torch.from_numpy(x).to(dev) for n, x in zip(names, ins)}
            return [o.cpu() for o in interp.run(f)]

        eager_ms = median_ms(eager, iters)
        # CUDA graph replay: static input buffers copied into, the captured run replayed.
        static_in = {n: interp.to_dev(x) for n, x in zip(names, ins)}
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                interp.run(static_in)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            static_out = interp.run(static_in)

        def replay():
            for n, x in zip(names, ins):
                static_in[n].copy_(torch.from_numpy(x))
            g.replay()
            return [o.cpu() for o in static_out]

        replay_ms = median_ms(replay, iters)
        rgot = [o.numpy() for o in replay()]
        rverdict = check(rgot, outs, meta["rtol"], meta["atol"])
    return eager_ms, replay_ms, len(interp.plan), verdict, rverdict


def torchvision_rows(iters):
    """torchvision's own modules for the two tv-* models (same architectures, their own random
    weights): timing only, to show the interpreter's per-node cost is PyTorch eager's own."""
    try:
        import torchvision
    except ImportError:
        return []
    dev = torch.device("cuda")
    rows = []
    for name, ctor in (("squeezenet1_1", torchvision.models.squeezenet1_1),
                       ("mobilenet_v2", torchvision.models.mobilenet_v2)):
        m = ctor().eval().to(dev)
        x = np.random.default_rng(0).standard_normal([1, 3, 224, 224]).astype(np.float32)
        with torch.inference_mode():
            eager = median_ms(lambda: m(torch.from_numpy(x).to(dev)).cpu(), iters)
        rows.append((name, eager))
    return rows


def ort_peer(d, iters):
    """onnxruntime on the GPU when its CUDA provider is installed, else on the machine's CPU
    cores (all of them, default options): the CPU runtime a GPU deployment replaces."""
    import onnxruntime as ort

    provider = ("CUDAExecutionProvider" if "CUDAExecutionProvider" in ort.get_available_providers()
                else "CPUExecutionProvider")
    meta, path, ins, outs = load_model(d)
    so = ort.SessionOptions()
    sess = ort.InferenceSession(path, so, providers=[provider])
    names = [i.name for i in sess.get_inputs()]
    feed = dict(zip(names, ins))
    verdict = check(sess.run(None, feed), outs, meta["rtol"], meta["atol"])
    short = "cuda" if provider.startswith("CUDA") else "cpu"
    return median_ms(lambda: sess.run(None, feed), iters), f"{short} {verdict}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("models")
    ap.add_argument("--iters", type=int, default=50)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, device {torch.cuda.get_device_name(0)}")
    try:
        import onnxruntime as ort

        print(f"onnxruntime {ort.__version__}, providers {ort.get_available_providers()}")
    except ImportError:
        print("onnxruntime: not installed")
    print(f"{'model':<28} {'nodes':>6} {'torch eager ms':>15} {'torch graph ms':>15} {'ort ms':>12}  check")
    for name in sorted(os.listdir(args.models)):
        d = os.path.join(args.models, name)
        if not os.path.isfile(os.path.join(d, "meta.json")):
            continue
        try:
            e, r, n, v, rv = torch_peer(d, args.iters)
            row = f"{name:<28} {n:>6} {e:>15.3f} {r:>15.3f}"
            verdicts = f"torch {v}, replay {rv}"
        except Exception as ex:  # one model's failure must not hide the others
            row = f"{name:<28} {'-':>6} {'-':>15} {'-':>15}"
            verdicts = f"torch failed: {type(ex).__name__}: {ex}"
        try:
            o = ort_peer(d, args.iters)
            row += f" {o[0]:>12.3f}" if o else f" {'n/a':>12}"
            if o:
                verdicts += f", ort {o[1]}"
        except Exception as ex:
            row += f" {'-':>12}"
            verdicts += f", ort failed: {type(ex).__name__}: {ex}"
        print(f"{row}  {verdicts}", flush=True)
    for name, ms in torchvision_rows(args.iters):
        print(f"torchvision.models.{name} module, eager (timing only): {ms:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
