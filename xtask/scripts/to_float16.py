#!/usr/bin/env python3
"""Converts an f32 ONNX model to float16 throughout (weights, inputs, outputs, every declared
intermediate, Cast targets, float constants), as fp16 exports are, and runs onnxruntime on it
for a reference output: AegisRT's f16 path (operators compute in f32 and round each result to
f16) is checked against it by `compare` below.

Usage: to_float16.py MODEL_DIR OUT_DIR        (writes OUT_DIR/model.onnx, input_0.npy, output_0.npy)
       to_float16.py --compare OURS.npy REF.npy
Needs `pip install onnx onnxruntime numpy`.
"""
import os, sys
import numpy as np

if sys.argv[1] == '--compare':
    a = np.load(sys.argv[2]).astype(np.float32)
    b = np.load(sys.argv[3]).astype(np.float32)
    err = np.abs(a - b)
    print(f"max abs error {err.max():.4g}, max |ref| {np.abs(b).max():.4g}, "
          f"argmax equal: {int(a.argmax()) == int(b.argmax())} ({a.argmax()} vs {b.argmax()})")
    sys.exit(0)

import onnx
from onnx import TensorProto, numpy_helper
import onnxruntime as ort

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
m = onnx.load(os.path.join(src, 'model.onnx'))
g = m.graph
F, H = TensorProto.FLOAT, TensorProto.FLOAT16
# Inputs the specification keeps f32 whatever the data type (Resize's scales).
keep = {n.input[2] for n in g.node if n.op_type == 'Resize' and len(n.input) > 2}
for i, t in enumerate(g.initializer):
    if t.data_type == F and t.name not in keep:
        g.initializer[i].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name))
for vi in list(g.input) + list(g.output) + list(g.value_info):
    if vi.type.tensor_type.elem_type == F and vi.name not in keep:
        vi.type.tensor_type.elem_type = H
for n in g.node:
    for a in n.attribute:
        if n.op_type == 'Cast' and a.name == 'to' and a.i == F:
            a.i = H
        if a.type == onnx.AttributeProto.TENSOR and a.t.data_type == F:
            a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
onnx.save(m, os.path.join(out, 'model.onnx'))
x = np.load(os.path.join(src, 'input_0.npy')).astype(np.float16)
np.save(os.path.join(out, 'input_0.npy'), x)
sess = ort.InferenceSession(os.path.join(out, 'model.onnx'), providers=['CPUExecutionProvider'])
y = sess.run(None, {sess.get_inputs()[0].name: x})[0]
np.save(os.path.join(out, 'output_0.npy'), y)
print(f"{out}: output {y.dtype} {y.shape}")
