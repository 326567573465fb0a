#!/usr/bin/env python3
"""Writes blocks of architectures the shared models do not cover (ConvNeXt, MobileNetV3,
EfficientNet, ResNeXt, Inception-v3, ViT, a causal decoder, YOLO, a U-Net decoder, Swin
windows) as small ONNX models with seeded random weights, each with a random input and
onnxruntime's outputs (graph optimisations off) as the reference.

    PYTHONPATH=<onnx and onnxruntime> python3 xtask/scripts/gen_arch_fixtures.py \
        crates/aegis-exec/tests/fixtures/arch            # the committed, reduced sizes
    PYTHONPATH=... python3 xtask/scripts/gen_arch_fixtures.py /tmp/arch --full
                                                         # the sizes of the real networks

Why: the shared models are classic CNNs and one encoder; a model that is not there reaches
kernel paths (a 7x7 depthwise conv, grouped 3x3 convs, Gelu, SiLU, 5x5 pooling, transposed
convs, window attention) that only op-level tests cover, and the path a kernel takes
depends on shapes. `--full` writes the real networks' shapes for speed comparisons
(`ort_interleaved.py`) and a local check; the reduced sizes keep the committed fixtures
small while taking the same kernel paths where the path depends on the plane size.

Each case folder holds model.onnx (weights as initializers), input_<k>.npy and
output_<k>.npy.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper


class G:
    """A graph under construction: nodes, initializers and a seeded generator."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.nodes, self.inits, self.n = [], [], 0

    def name(self, p):
        self.n += 1
        return f"{p}_{self.n}"

    def const(self, arr):
        n = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(arr), n))
        return n

    def w(self, shape, fan_in):
        # Variance 1/fan_in keeps activations near unit scale through the block.
        a = np.sqrt(3.0 / fan_in)
        return self.const(self.rng.uniform(-a, a, shape).astype(np.float32))

    def op(self, op, inputs, outs=1, **attrs):
        names = [self.name(op.lower()) for _ in range(outs)]
        # Named nodes: onnxruntime's optimiser names the nodes it fuses after their sources
        # and rejects a model where two unnamed ones collide.
        self.nodes.append(helper.make_node(op, inputs, names, name=names[0], **attrs))
        return names[0] if outs == 1 else names

    def conv(self, x, cin, cout, k, s=1, p=None, g=1, d=1, bias=True):
        kh, kw = (k, k) if isinstance(k, int) else k
        if p is None:
            p = (d * (kh - 1) // 2, d * (kw - 1) // 2)
        p = (p, p) if isinstance(p, int) else p
        w = self.w((cout, cin // g, kh, kw), cin // g * kh * kw)
        ins = [x, w] + ([self.w((cout,), 4)] if bias else [])
        return self.op("Conv", ins, kernel_shape=[kh, kw], strides=[s, s],
                       pads=[p[0], p[1], p[0], p[1]], group=g, dilations=[d, d])

    def bn(self, x, c):
        r = self.rng
        ins = [x, self.const(r.uniform(0.5, 1.5, c).astype(np.float32)),
               self.const(r.uniform(-0.2, 0.2, c).astype(np.float32)),
               self.const(r.uniform(-0.2, 0.2, c).astype(np.float32)),
               self.const(r.uniform(0.5, 1.5, c).astype(np.float32))]
        return self.op("BatchNormalization", ins, epsilon=1e-5)

    def silu(self, x):
        return self.op("Mul", [x, self.op("Sigmoid", [x])])

    def gelu_erf(self, x):
        # torch's exact Gelu as exported below opset 20: x * 0.5 * (1 + erf(x / sqrt 2)).
        e = self.op("Erf", [self.op("Div", [x, self.const(np.float32(np.sqrt(2.0)))])])
        h = self.op("Mul", [x, self.op("Add", [e, self.const(np.float32(1.0))])])
        return self.op("Mul", [h, self.const(np.float32(0.5))])

    def linear(self, x, cin, cout):
        return self.op("Add", [self.op("MatMul", [x, self.w((cin, cout), cin)]),
                               self.w((cout,), 4)])

    def layernorm(self, x, c):
        r = self.rng
        return self.op("LayerNormalization",
                       [x, self.const(r.uniform(0.5, 1.5, c).astype(np.float32)),
                        self.const(r.uniform(-0.2, 0.2, c).astype(np.float32))],
                       axis=-1, epsilon=1e-6)

    def shape(self, dims):
        return self.const(np.array(dims, dtype=np.int64))


def convnext(g, x, c, h, w):
    """ConvNeXt block: 7x7 depthwise, channels-last LayerNorm, 4x MLP with Gelu, layer scale,
    residual."""
    y = g.conv(x, c, c, 7, g=c)
    y = g.op("Transpose", [y], perm=[0, 2, 3, 1])
    y = g.layernorm(y, c)
    y = g.gelu_erf(g.linear(y, c, 4 * c))
    y = g.linear(y, 4 * c, c)
    y = g.op("Mul", [y, g.const(g.rng.uniform(0.5, 1.0, c).astype(np.float32))])
    y = g.op("Transpose", [y], perm=[0, 3, 1, 2])
    return g.op("Add", [x, y])


def se(g, x, c, r, gate):
    s = g.op("GlobalAveragePool", [x])
    s = g.op("Relu", [g.conv(s, c, r, 1)])
    s = g.op(gate, [g.conv(s, r, c, 1)], **({"alpha": 1.0 / 6} if gate == "HardSigmoid" else {}))
    return g.op("Mul", [x, s])


def mbv3(g, x, c, h, w):
    """MobileNetV3 bneck: 1x1 expand + HardSwish, 5x5 depthwise stride 2 + HardSwish,
    squeeze-excite with HardSigmoid, 1x1 project (BatchNorm unfused); then a stride-1 bneck
    with a residual."""
    e = 4 * c
    y = g.op("HardSwish", [g.bn(g.conv(x, c, e, 1, bias=False), e)])
    y = g.op("HardSwish", [g.bn(g.conv(y, e, e, 5, s=2, g=e, bias=False), e)])
    y = se(g, y, e, e // 4, "HardSigmoid")
    y = g.bn(g.conv(y, e, c, 1, bias=False), c)
    z = g.op("HardSwish", [g.conv(y, c, e, 1)])
    z = g.op("HardSwish", [g.conv(z, e, e, 3, g=e)])
    z = se(g, z, e, e // 4, "HardSigmoid")
    return g.op("Add", [y, g.conv(z, e, c, 1)])


def mbconv(g, x, c, h, w):
    """EfficientNet MBConv: 1x1 expand + SiLU, 3x3 depthwise + SiLU, squeeze-excite with
    SiLU and Sigmoid, 1x1 project, residual."""
    e = 6 * c
    y = g.silu(g.conv(x, c, e, 1))
    y = g.silu(g.conv(y, e, e, 3, g=e))
    s = g.op("ReduceMean", [y], axes=[2, 3], keepdims=1)
    s = g.silu(g.conv(s, e, c // 4, 1))
    s = g.op("Sigmoid", [g.conv(s, c // 4, e, 1)])
    y = g.op("Mul", [y, s])
    return g.op("Add", [x, g.conv(y, e, c, 1)])


def resnext(g, x, c, h, w):
    """ResNeXt bottleneck (32x4d): 1x1, grouped 3x3 (32 groups), 1x1, BatchNorm and Relu,
    residual; then the stride-2 variant with a projected shortcut."""
    m = 2 * c
    y = g.op("Relu", [g.bn(g.conv(x, c, m, 1, bias=False), m)])
    y = g.op("Relu", [g.bn(g.conv(y, m, m, 3, g=32, bias=False), m)])
    y = g.bn(g.conv(y, m, c, 1, bias=False), c)
    x = g.op("Relu", [g.op("Add", [x, y])])
    y = g.op("Relu", [g.bn(g.conv(x, c, m, 1, bias=False), m)])
    y = g.op("Relu", [g.bn(g.conv(y, m, m, 3, s=2, g=32, bias=False), m)])
    y = g.bn(g.conv(y, m, 2 * c, 1, bias=False), 2 * c)
    sc = g.bn(g.conv(x, c, 2 * c, 1, s=2, bias=False), 2 * c)
    return g.op("Relu", [g.op("Add", [sc, y])])


def inception3(g, x, c, h, w):
    """Inception-v3 module C-style: 1x1, 1x7 then 7x1, 7x1/1x7 twice, 3x3 average pool
    without the padding in the count, concatenated; then a grid reduction (3x3 stride 2
    valid conv and max pool)."""
    b = c // 4
    b1 = g.op("Relu", [g.conv(x, c, b, 1)])
    b2 = g.op("Relu", [g.conv(x, c, b, 1)])
    b2 = g.op("Relu", [g.conv(b2, b, b, (1, 7))])
    b2 = g.op("Relu", [g.conv(b2, b, b, (7, 1))])
    b3 = g.op("Relu", [g.conv(x, c, b, 1)])
    for k in [(7, 1), (1, 7), (7, 1), (1, 7)]:
        b3 = g.op("Relu", [g.conv(b3, b, b, k)])
    b4 = g.op("AveragePool", [x], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
              count_include_pad=0)
    b4 = g.op("Relu", [g.conv(b4, c, b, 1)])
    y = g.op("Concat", [b1, b2, b3, b4], axis=1)
    r1 = g.op("Relu", [g.conv(y, c, c, 3, s=2, p=0)])
    r2 = g.op("MaxPool", [y], kernel_shape=[3, 3], strides=[2, 2])
    return g.op("Concat", [r1, r2], axis=1)


def attention(g, x, t, d, heads, causal):
    """Multi-head self-attention as torch exports it: fused QKV projection, Split, per-head
    Reshape/Transpose, scaled scores, optional causal mask (Trilu + Where), Softmax."""
    dh = d // heads
    qkv = g.linear(x, d, 3 * d)
    q, k, v = g.op("Split", [qkv, g.shape([d, d, d])], outs=3, axis=-1)
    def heads_of(z, perm):
        return g.op("Transpose", [g.op("Reshape", [z, g.shape([1, t, heads, dh])])], perm=perm)
    q, k, v = heads_of(q, [0, 2, 1, 3]), heads_of(k, [0, 2, 3, 1]), heads_of(v, [0, 2, 1, 3])
    s = g.op("Mul", [g.op("MatMul", [q, k]), g.const(np.float32(1.0 / np.sqrt(dh)))])
    if causal:
        ones = g.op("ConstantOfShape", [g.shape([t, t])],
                    value=numpy_helper.from_array(np.array([1], dtype=np.int64)))
        keep = g.op("Cast", [g.op("Trilu", [ones], upper=0)], to=TensorProto.BOOL)
        s = g.op("Where", [keep, s, g.const(np.float32(-np.inf))])
    p = g.op("Softmax", [s], axis=-1)
    o = g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
    return g.linear(g.op("Reshape", [o, g.shape([1, t, d])]), d, d)


def vit(g, x, d, t, _w):
    """Pre-norm ViT encoder layer: LayerNorm, attention, residual, LayerNorm, MLP with the
    Gelu operator (opset 20), residual."""
    x = g.op("Add", [x, attention(g, g.layernorm(x, d), t, d, max(2, d // 64), False)])
    y = g.op("Gelu", [g.linear(g.layernorm(x, d), d, 4 * d)])
    return g.op("Add", [x, g.linear(y, 4 * d, d)])


def decoder(g, ids, d, t, vocab):
    """GPT-style decoder layer: token and position embeddings (Gather), causal attention,
    tanh-approximated Gelu written out, final LayerNorm and tied logits (Gemm transB)."""
    emb = g.w((vocab, d), 1)
    x = g.op("Gather", [emb, ids])
    x = g.op("Add", [x, g.w((1, t, d), 1)])
    x = g.op("Add", [x, attention(g, g.layernorm(x, d), t, d, max(2, d // 64), True)])
    y = g.linear(g.layernorm(x, d), d, 4 * d)
    y3 = g.op("Mul", [g.op("Pow", [y, g.const(np.float32(3.0))]), g.const(np.float32(0.044715))])
    inner = g.op("Mul", [g.op("Add", [y, y3]), g.const(np.float32(np.sqrt(2 / np.pi)))])
    y = g.op("Mul", [g.op("Mul", [y, g.const(np.float32(0.5))]),
                     g.op("Add", [g.op("Tanh", [inner]), g.const(np.float32(1.0))])])
    x = g.op("Add", [x, g.linear(y, 4 * d, d)])
    x = g.op("Reshape", [g.layernorm(x, d), g.shape([t, d])])
    return g.op("Gemm", [x, emb], transB=1)


def yolo(g, x, c, h, w):
    """YOLOv8-style: stride-2 conv + SiLU, C2f (Split, bottlenecks, Concat), SPPF (three 5x5
    stride-1 max pools), nearest 2x upsample (Resize), Concat, and a head that reshapes,
    transposes and applies Sigmoid."""
    def cbs(z, ci, co, k, s=1):
        return g.silu(g.conv(z, ci, co, k, s=s))
    y = cbs(x, c, 2 * c, 3, 2)
    a, b = g.op("Split", [cbs(y, 2 * c, 2 * c, 1), g.shape([c, c])], outs=2, axis=1)
    m = g.op("Add", [b, cbs(cbs(b, c, c, 3), c, c, 3)])
    y = cbs(g.op("Concat", [a, b, m], axis=1), 3 * c, 2 * c, 1)
    s = cbs(y, 2 * c, c, 1)
    p1 = g.op("MaxPool", [s], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    p2 = g.op("MaxPool", [p1], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    p3 = g.op("MaxPool", [p2], kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    y = cbs(g.op("Concat", [s, p1, p2, p3], axis=1), 4 * c, 2 * c, 1)
    up = g.op("Resize", [y, "", g.const(np.array([1, 1, 2, 2], dtype=np.float32))],
              mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    y = cbs(g.op("Concat", [up, x], axis=1), 3 * c, c, 3)
    head = g.conv(y, c, 3 * 6, 1)
    head = g.op("Reshape", [head, g.shape([1, 3, 6, h * w])])
    return g.op("Sigmoid", [g.op("Transpose", [head], perm=[0, 1, 3, 2])])


def unet(g, x, c, h, w):
    """U-Net decoder step: transposed 2x2 stride-2 conv, skip Concat, two 3x3 convs with
    InstanceNormalization and Relu, a bilinear Resize (half_pixel) and a final 1x1 conv."""
    skip = g.conv(x, c, c // 2, 3, s=1)
    down = g.op("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2])
    wt = g.w((c, c // 2, 2, 2), c)
    up = g.op("ConvTranspose", [down, wt, g.w((c // 2,), 4)], kernel_shape=[2, 2],
              strides=[2, 2])
    y = g.op("Concat", [up, skip], axis=1)
    for ci in (c, c // 2):
        y = g.conv(y, ci, c // 2, 3, bias=False)
        y = g.op("InstanceNormalization",
                 [y, g.const(g.rng.uniform(0.5, 1.5, c // 2).astype(np.float32)),
                  g.const(g.rng.uniform(-0.2, 0.2, c // 2).astype(np.float32))], epsilon=1e-5)
        y = g.op("Relu", [y])
    y = g.op("Resize", [y, "", g.const(np.array([1, 1, 2, 2], dtype=np.float32))],
             mode="linear", coordinate_transformation_mode="half_pixel")
    return g.conv(y, c // 2, 3, 1)


def swin(g, x, c, h, w):
    """Swin block: cyclic shift (Slice + Concat), window partition (6-D Reshape/Transpose),
    window attention with a relative-position bias (a constant Add), reverse partition and
    shift, residual; channels-last input."""
    ws, heads = 7, c // 32
    sh = ws // 2
    def roll(z, s, axis, n):
        a = g.op("Slice", [z, g.shape([s]), g.shape([n]), g.shape([axis])])
        b = g.op("Slice", [z, g.shape([0]), g.shape([s]), g.shape([axis])])
        return g.op("Concat", [a, b], axis=axis)
    y = g.layernorm(x, c)
    y = roll(roll(y, sh, 1, h), sh, 2, w)
    nw = (h // ws) * (w // ws)
    y = g.op("Reshape", [y, g.shape([1, h // ws, ws, w // ws, ws, c])])
    y = g.op("Transpose", [y], perm=[0, 1, 3, 2, 4, 5])
    y = g.op("Reshape", [y, g.shape([nw, ws * ws, c])])
    qkv = g.linear(y, c, 3 * c)
    qkv = g.op("Reshape", [qkv, g.shape([nw, ws * ws, 3, heads, c // heads])])
    qkv = g.op("Transpose", [qkv], perm=[2, 0, 3, 1, 4])
    q, k, v = [g.op("Squeeze", [s, g.shape([0])]) for s in
               g.op("Split", [qkv, g.shape([1, 1, 1])], outs=3, axis=0)]
    s = g.op("MatMul", [g.op("Mul", [q, g.const(np.float32((c // heads) ** -0.5))]),
                        g.op("Transpose", [k], perm=[0, 1, 3, 2])])
    bias = g.rng.uniform(-1, 1, (1, heads, ws * ws, ws * ws)).astype(np.float32)
    p = g.op("Softmax", [g.op("Add", [s, g.const(bias)])], axis=-1)
    o = g.op("Transpose", [g.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
    o = g.linear(g.op("Reshape", [o, g.shape([nw, ws * ws, c])]), c, c)
    o = g.op("Reshape", [o, g.shape([1, h // ws, w // ws, ws, ws, c])])
    o = g.op("Transpose", [o], perm=[0, 1, 3, 2, 4, 5])
    o = g.op("Reshape", [o, g.shape([1, h, w, c])])
    o = roll(roll(o, h - sh, 1, h), w - sh, 2, w)
    return g.op("Add", [x, o])


# name: (builder, opset, (reduced args), (full args), input kind)
CASES = {
    "convnext": (convnext, 17, (32, 28, 28), (96, 56, 56), "nchw"),
    "mobilenet_v3": (mbv3, 17, (16, 56, 56), (24, 56, 56), "nchw"),
    "efficientnet_mbconv": (mbconv, 17, (16, 28, 28), (40, 28, 28), "nchw"),
    "resnext": (resnext, 17, (64, 28, 28), (128, 56, 56), "nchw"),
    "inception_v3": (inception3, 17, (64, 17, 17), (768, 17, 17), "nchw"),
    "vit": (vit, 20, (64, 50, None), (768, 197, None), "tokens"),
    "decoder": (decoder, 17, (64, 32, 256), (768, 128, 8000), "ids"),
    "yolo": (yolo, 17, (16, 40, 40), (64, 80, 80), "nchw"),
    "unet": (unet, 17, (32, 32, 32), (128, 64, 64), "nchw"),
    "swin": (swin, 17, (64, 14, 14), (96, 56, 56), "nhwc"),
}


def build(name, full):
    fn, opset, small, big, kind = CASES[name]
    a, b, c = big if full else small
    g = G(seed=sum(map(ord, name)))
    if kind == "nchw":
        shape, dtype = [1, a, b, c], TensorProto.FLOAT
        feed = g.rng.uniform(-1, 1, shape).astype(np.float32)
    elif kind == "nhwc":
        shape, dtype = [1, b, c, a], TensorProto.FLOAT
        feed = g.rng.uniform(-1, 1, shape).astype(np.float32)
    elif kind == "tokens":
        shape, dtype = [1, b, a], TensorProto.FLOAT
        feed = g.rng.uniform(-1, 1, shape).astype(np.float32)
    else:
        shape, dtype = [1, b], TensorProto.INT64
        feed = g.rng.integers(0, c, shape).astype(np.int64)
    out = fn(g, "x", a, b, c)
    graph = helper.make_graph(
        g.nodes, name, [helper.make_tensor_value_info("x", dtype, shape)],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                              producer_name="gen_arch_fixtures")
    model.ir_version = 8 if opset < 19 else 9
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    return model, feed


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    root, full = sys.argv[1], "--full" in sys.argv[2:]
    names = [a for a in sys.argv[2:] if not a.startswith("--")] or list(CASES)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    for name in names:
        model, feed = build(name, full)
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        data = model.SerializeToString()
        with open(os.path.join(d, "model.onnx"), "wb") as f:
            f.write(data)
        sess = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
        outs = sess.run(None, {"x": feed})
        np.save(os.path.join(d, "input_0.npy"), feed)
        for k, o in enumerate(outs):
            np.save(os.path.join(d, f"output_{k}.npy"), o)
        print(f"{name}: {len(model.graph.node)} nodes, output {outs[0].shape}, "
              f"|max| {np.abs(outs[0]).max():.3g}, {len(data) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
