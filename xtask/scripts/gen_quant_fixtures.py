#!/usr/bin/env python3
"""Writes the quantized-model fixtures of aegis-exec's tests: one small f32 CNN (three convs,
grouped and depthwise, a reshape and a classifier MatMul) quantized by onnxruntime's own
quantization tool in the forms real quantized models take, each with a random input and
onnxruntime's output as the reference:

- qop_u8: QOperator format (QLinearConv, QLinearMatMul, QuantizeLinear, DequantizeLinear),
  u8 activations, i8 weights, one scale per tensor;
- qop_s8_per_channel: QOperator, i8 activations and weights, per-output-channel weight scales;
- qdq_per_channel: QDQ format (QuantizeLinear / DequantizeLinear pairs around f32 ops, i8
  weights with per-axis scales);
- dynamic: quantize_dynamic (DynamicQuantizeLinear, ConvInteger, MatMulInteger, Cast, Mul).

    PYTHONPATH=<onnx, onnxruntime> python3 xtask/scripts/gen_quant_fixtures.py \\
        crates/aegis-exec/tests/fixtures/quant

Each case folder holds model.onnx, input_0.npy and output_0.npy. The models use only
default-domain operators (onnxruntime's com.microsoft QLinear* ops are left out by
restricting the quantized op types to Conv and MatMul).
"""
import os
import sys
import tempfile

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                      quantize_dynamic, quantize_static)

SHAPE = [1, 3, 16, 16]


def float_model(path):
    rng = np.random.default_rng(7)

    def w(name, *shape):
        fan_in = int(np.prod(shape[1:]))
        v = rng.standard_normal(shape).astype(np.float32) * np.float32(1.5 / np.sqrt(fan_in))
        return numpy_helper.from_array(v, name)

    def b(name, n):
        return numpy_helper.from_array((rng.standard_normal(n) * 0.1).astype(np.float32), name)

    inits = [w("w1", 8, 3, 3, 3), b("b1", 8), w("w2", 16, 4, 3, 3), b("b2", 16),
             w("w3", 16, 1, 3, 3), b("b3", 16), w("fc", 1024, 10),
             numpy_helper.from_array(np.array([1, 1024], np.int64), "flat")]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2],
                         group=2),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], group=16),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Reshape", ["r3", "flat"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "quant_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


class Reader(CalibrationDataReader):
    def __init__(self):
        rng = np.random.default_rng(11)
        self.data = iter([{"x": rng.standard_normal(SHAPE).astype(np.float32)}
                          for _ in range(16)])

    def get_next(self):
        return next(self.data, None)


def write_case(out_dir, name, model_path, x):
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    model = onnx.load(model_path)
    ops = sorted({(n.domain or "ai.onnx", n.op_type) for n in model.graph.node})
    assert all(dom == "ai.onnx" for dom, _ in ops), ops
    onnx.save(model, os.path.join(d, "model.onnx"))
    sess = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": x})
    np.save(os.path.join(d, "input_0.npy"), x)
    np.save(os.path.join(d, "output_0.npy"), y)
    print(name, [op for _, op in ops])


def main():
    out_dir = sys.argv[1]
    x = np.random.default_rng(3).standard_normal(SHAPE).astype(np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "f32.onnx")
        float_model(f32)
        common = dict(op_types_to_quantize=["Conv", "MatMul"])
        cases = {
            "qop_u8": dict(quant_format=QuantFormat.QOperator,
                           activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8),
            "qop_s8_per_channel": dict(quant_format=QuantFormat.QOperator, per_channel=True,
                                       activation_type=QuantType.QInt8,
                                       weight_type=QuantType.QInt8),
            "qdq_per_channel": dict(quant_format=QuantFormat.QDQ, per_channel=True,
                                    activation_type=QuantType.QUInt8,
                                    weight_type=QuantType.QInt8),
        }
        for name, kw in cases.items():
            q = os.path.join(tmp, name + ".onnx")
            quantize_static(f32, q, Reader(), **common, **kw)
            write_case(out_dir, name, q, x)
        q = os.path.join(tmp, "dynamic.onnx")
        quantize_dynamic(f32, q, weight_type=QuantType.QUInt8, **common)
        write_case(out_dir, "dynamic", q, x)


if __name__ == "__main__":
    main()
