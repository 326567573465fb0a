#!/usr/bin/env python3
"""Writes the ONNX backend node test cases (model.onnx + test_data_set_N/*.pb) of the
installed `onnx` package under OUT/node/.

Usage: gen_onnx_node.py OUT
Why: from onnx 1.18 on, the wheel no longer ships the generated node data; its
`backend-test-tools generate-data` writes only the model cases. This runs the same writer
over the node cases (`onnx.backend.test.case.node`), whose expected outputs come from
onnx's own reference code, not from us.
"""
import argparse, sys, warnings

import onnx.backend.test.cmd_tools as tools
from onnx.backend.test.case import node

out = sys.argv[1]
warnings.simplefilter('ignore')  # the case scripts divide by zero on purpose (Reduce*)
tools.model_test.collect_testcases = lambda: node.collect_testcases(None)
tools.generate_data(argparse.Namespace(output=out))
