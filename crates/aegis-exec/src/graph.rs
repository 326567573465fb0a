//! The immutable ExecutionGraph.
