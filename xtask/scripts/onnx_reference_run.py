#!/usr/bin/env python3
"""Runs a model folder through onnx's own reference evaluator (the operator definitions in
Python: slow, minutes for a CNN, but independent of any optimised runtime) and saves the first
output, as a second oracle where two runtimes disagree (the quantized rows of STATUS.md).
Opsets below 19 are raised to 19, the first with a reference QuantizeLinear/DequantizeLinear
(their semantics for u8/i8 did not change).

    PYTHONPATH=<onnx> python3 xtask/scripts/onnx_reference_run.py MODEL_DIR OUT.npy
"""
import json
import sys
import time

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

d, out = sys.argv[1], sys.argv[2]
m = onnx.load(d + "/model.onnx")
for o in m.opset_import:
    if o.domain in ("", "ai.onnx"):
        o.version = max(o.version, 19)
meta = json.load(open(d + "/meta.json"))
x = np.load(d + "/input_0.npy")
t = time.time()
(y,) = ReferenceEvaluator(m).run(None, {meta["inputs"][0]["name"]: x})
np.save(out, y)
print(f"{out}: {y.shape}, {time.time() - t:.0f} s")
