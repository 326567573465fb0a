//! ONNX loading: tract-onnx parses protobuf, our code builds the graph.
