#!/usr/bin/env python3
"""Quantizes a shared model with onnxruntime's own tool, for the quantized rows of the
benchmark table: static u8-activation / i8-weight quantization of Conv and MatMul, calibrated
on the model's input_0.npy and seven standard-normal inputs (seed 5), in QOperator format
(QLinearConv, QLinearMatMul; the default) or QDQ. Writes MODEL/model.onnx, input_0.npy,
output_0.npy (onnxruntime's output, all optimisations off) and a meta.json copied from the
source with the reference and recipe replaced, so `exec_bench OUT_DIR` runs it.

    PYTHONPATH=<onnx, onnxruntime> python3 xtask/scripts/quantize_shared.py \\
        ../shared/models/tv-mobilenet_v2 /tmp/q/tv-mobilenet_v2-int8 [--qdq]
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_static)


def main():
    src, out = sys.argv[1], sys.argv[2]
    qdq = "--qdq" in sys.argv[3:]
    meta = json.load(open(os.path.join(src, "meta.json")))
    name = meta["inputs"][0]["name"]
    x = np.load(os.path.join(src, "input_0.npy"))
    rng = np.random.default_rng(5)
    calib = [x] + [rng.standard_normal(x.shape).astype(np.float32) for _ in range(7)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{name: c} for c in calib])

        def get_next(self):
            return next(self.it, None)

    os.makedirs(out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        # The tool wants shape-inferred input; quantize from a copy so the source is untouched.
        f32 = os.path.join(tmp, "f32.onnx")
        shutil.copy(os.path.join(src, "model.onnx"), f32)
        quantize_static(f32, os.path.join(out, "model.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(os.path.join(out, "model.onnx"), so,
                                providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {name: x})
    np.save(os.path.join(out, "input_0.npy"), x)
    np.save(os.path.join(out, "output_0.npy"), y)
    meta["source"] = f"{meta['source']}; quantized by xtask/scripts/quantize_shared.py " \
        f"({'QDQ' if qdq else 'QOperator'}, u8 activations, i8 weights, Conv and MatMul)"
    meta["reference"] = "onnxruntime CPU, ORT_DISABLE_ALL, 1 thread"
    json.dump(meta, open(os.path.join(out, "meta.json"), "w"), indent=1)
    print(out, y.shape)


if __name__ == "__main__":
    main()
