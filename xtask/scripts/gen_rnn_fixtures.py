#!/usr/bin/env python3
"""Writes the recurrent-layer fixtures of aegis-exec's tests: small RNN, GRU and LSTM models
covering what the ONNX node tests leave out (reverse and bidirectional directions, per-batch
sequence lengths with initial states, GRU's linear_before_reset, clip, LSTM peepholes and
input_forget, custom activations with alphas), each with a random input and onnxruntime's
outputs as the reference. (onnxruntime rejects the batch-first layout; the tests check it
against the sequence-first results instead.)

    PYTHONPATH=<onnx and onnxruntime> python3 xtask/scripts/gen_rnn_fixtures.py \
        crates/aegis-exec/tests/fixtures/rnn

Each case folder holds model.onnx, input_<k>.npy for the graph inputs and output_<k>.npy for
the outputs onnxruntime produced. The weights are initializers in the model.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

GATES = {"RNN": 1, "GRU": 3, "LSTM": 4}


def case(name, op, hidden, seq, batch, inp, direction="forward", layout=0, bias=True,
         seq_lens=None, initial=False, peep=False, attrs=None, outputs=2, seed=0):
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[op]
    xs = [batch, seq, inp] if layout else [seq, batch, inp]
    state = [batch, dirs, hidden] if layout else [dirs, batch, hidden]
    inits = [
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, (dirs, g * hidden, inp)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.uniform(-0.6, 0.6, (dirs, g * hidden, hidden)).astype(np.float32), "R"),
    ]
    names = ["X", "W", "R"]
    if bias:
        inits.append(numpy_helper.from_array(rng.uniform(-0.3, 0.3, (dirs, 2 * g * hidden)).astype(np.float32), "B"))
    names.append("B" if bias else "")
    feeds = {"X": rng.uniform(-1, 1, xs).astype(np.float32)}
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, xs)]
    if seq_lens is not None:
        inits.append(numpy_helper.from_array(np.array(seq_lens, dtype=np.int32), "L"))
    names.append("L" if seq_lens is not None else "")
    if initial:
        feeds["H0"] = rng.uniform(-0.5, 0.5, state).astype(np.float32)
        graph_inputs.append(helper.make_tensor_value_info("H0", TensorProto.FLOAT, state))
    names.append("H0" if initial else "")
    if op == "LSTM":
        if initial:
            feeds["C0"] = rng.uniform(-0.5, 0.5, state).astype(np.float32)
            graph_inputs.append(helper.make_tensor_value_info("C0", TensorProto.FLOAT, state))
        names.append("C0" if initial else "")
        if peep:
            inits.append(numpy_helper.from_array(rng.uniform(-0.5, 0.5, (dirs, 3 * hidden)).astype(np.float32), "P"))
        names.append("P" if peep else "")
    while names and names[-1] == "":
        names.pop()
    out_names = ["Y", "Y_h", "Y_c"][:outputs]
    node = helper.make_node(op, names, out_names, hidden_size=hidden, direction=direction,
                            **({"layout": layout} if layout else {}), **(attrs or {}))
    y = [batch, seq, dirs, hidden] if layout else [seq, dirs, batch, hidden]
    shapes = [y, state, state]
    graph = helper.make_graph([node], name, graph_inputs,
                              [helper.make_tensor_value_info(o, TensorProto.FLOAT, s)
                               for o, s in zip(out_names, shapes)],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = sess.run(None, feeds)
    return name, model, [feeds[i.name] for i in graph_inputs], outs


CASES = [
    case("rnn_reverse_relu", "RNN", 4, 5, 2, 3, direction="reverse",
         attrs={"activations": ["Relu"]}),
    case("rnn_bidirectional_lens", "RNN", 3, 4, 3, 2, direction="bidirectional",
         seq_lens=[4, 2, 0], initial=True, seed=1),
    case("gru_bidirectional_lbr", "GRU", 5, 4, 2, 3, direction="bidirectional",
         attrs={"linear_before_reset": 1}, initial=True, seed=2),
    case("gru_reverse_lens", "GRU", 4, 5, 3, 2, direction="reverse",
         seq_lens=[5, 3, 1], initial=True, seed=3),
    case("gru_activations_alpha", "GRU", 3, 3, 2, 2, seed=4,
         attrs={"activations": ["HardSigmoid", "LeakyRelu"], "activation_alpha": [0.3, 0.1],
                "activation_beta": [0.4]}),
    case("lstm_bidirectional_peepholes_lens", "LSTM", 4, 5, 3, 3, direction="bidirectional",
         seq_lens=[5, 1, 3], initial=True, peep=True, outputs=3, seed=5),
    case("lstm_clip", "LSTM", 6, 4, 2, 4, attrs={"clip": 0.5},
         outputs=3, seed=6),
    case("lstm_input_forget_reverse", "LSTM", 3, 4, 2, 2, direction="reverse",
         attrs={"input_forget": 1}, initial=True, outputs=3, seed=7),
    case("lstm_no_bias_activations", "LSTM", 4, 3, 1, 3, bias=False, seed=8,
         attrs={"activations": ["Sigmoid", "Softsign", "ScaledTanh"],
                "activation_alpha": [0.8], "activation_beta": [1.2]}),
]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "crates/aegis-exec/tests/fixtures/rnn"
    for name, model, inputs, outputs in CASES:
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        onnx.save(model, os.path.join(d, "model.onnx"))
        for k, v in enumerate(inputs):
            np.save(os.path.join(d, f"input_{k}.npy"), v)
        for k, v in enumerate(outputs):
            np.save(os.path.join(d, f"output_{k}.npy"), v.astype(np.float32))
        print(name, [o.shape for o in outputs])


if __name__ == "__main__":
    main()
