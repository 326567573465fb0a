//! `If` with a condition known at load: the taken branch is inlined into the graph.
//!
//! Why: AegisRT plans one static graph, so a branch chosen at run time has no place in it.
//! Exporters emit `If` mostly on conditions computed from shapes (tf2onnx's dynamic padding,
//! scripted PyTorch code testing a dimension), which are constants once the input shapes are
//! fixed; those models load, and the untaken branch costs nothing. A condition that depends
//! on input data is a typed load error naming the `If` node.
//!
//! A branch reads values of the enclosing scopes by name without listing them as inputs, so
//! the loader orders an `If` after the producers of those names ([`outer_reads`]). Names a
//! branch defines are prefixed with the `If` node's name and the branch (`If#3/then/x`) so
//! they cannot collide with the enclosing graph's, and the `If`'s outputs become aliases of
//! the branch's outputs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tract_onnx::pb;

use super::node::Value;
use super::tensor::decode_tensor;
use super::{node_display_name, Loader};
use crate::error::ExecError;
use crate::graph::TensorData;

/// The subgraphs held by `n`'s attributes (an `If`'s two branches, a `Loop`'s body ...).
pub(super) fn subgraphs(n: &pb::NodeProto) -> impl Iterator<Item = &pb::GraphProto> {
    n.attribute
        .iter()
        .flat_map(|a| a.g.iter().chain(a.graphs.iter()))
}

/// Names `n`'s subgraphs read from enclosing scopes (defined neither in the subgraph nor in
/// a subgraph nested in it), in first-read order, without repeats.
pub(super) fn outer_reads(n: &pb::NodeProto) -> Vec<String> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for g in subgraphs(n) {
        for name in graph_outer_reads(g) {
            if seen.insert(name.clone()) {
                out.push(name);
            }
        }
    }
    out
}

fn graph_outer_reads(g: &pb::GraphProto) -> Vec<String> {
    let mut local: HashSet<&str> = g
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .chain(g.input.iter().map(|i| i.name.as_str()))
        .collect();
    for n in &g.node {
        local.extend(n.output.iter().map(String::as_str));
    }
    let mut out = Vec::new();
    let push = |name: &str, out: &mut Vec<String>| {
        if !name.is_empty() && !local.contains(name) && !out.iter().any(|o| o == name) {
            out.push(name.to_owned());
        }
    };
    for n in &g.node {
        for i in &n.input {
            push(i, &mut out);
        }
        for nested in outer_reads(n) {
            push(&nested, &mut out);
        }
    }
    for o in &g.output {
        push(&o.name, &mut out);
    }
    out
}

/// `n` with every input and output named in `map` renamed, also inside its subgraphs (where
/// they are reads of the enclosing scope: ONNX forbids a subgraph to redefine them).
fn renamed(n: &pb::NodeProto, map: &HashMap<String, String>) -> pb::NodeProto {
    let mut n = n.clone();
    rename_in_node(&mut n, map);
    n
}

fn rename_in_node(n: &mut pb::NodeProto, map: &HashMap<String, String>) {
    for s in n.input.iter_mut().chain(n.output.iter_mut()) {
        if let Some(new) = map.get(s.as_str()) {
            s.clone_from(new);
        }
    }
    for a in &mut n.attribute {
        for g in a.g.iter_mut().chain(a.graphs.iter_mut()) {
            for inner in &mut g.node {
                rename_in_node(inner, map);
            }
            for o in &mut g.output {
                if let Some(new) = map.get(o.name.as_str()) {
                    o.name.clone_from(new);
                }
            }
        }
    }
}

impl Loader<'_> {
    /// Inlines the branch of `If` node `n` that its condition (known at load) selects.
    pub(super) fn process_if(
        &mut self,
        n: &pb::NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<(), ExecError> {
        let invalid = |reason: String| ExecError::InvalidNode {
            model: self.model.to_owned(),
            node: name.to_owned(),
            reason,
        };
        let cond = n
            .input
            .first()
            .filter(|c| !c.is_empty())
            .map(|c| self.resolve(c))
            .ok_or_else(|| invalid("input 0 (cond) is required".into()))?;
        if let Some(reason) = self.unavailable.get(&cond) {
            return Err(invalid(format!("reads '{cond}', which is {reason}")));
        }
        let v = self
            .values
            .get(&cond)
            .ok_or_else(|| ExecError::DanglingInput {
                model: self.model.to_owned(),
                node: name.to_owned(),
                tensor: cond.clone(),
            })?;
        let Some(data) = &v.konst else {
            return Err(invalid(format!(
                "input 0 (cond '{cond}') must be known at load: AegisRT plans one static \
                 graph, so it inlines the branch a condition computed from constants and \
                 shapes selects, and cannot choose one per run"
            )));
        };
        let taken = match &**data {
            TensorData::Bool(b) if b.len() == 1 => b[0] != 0,
            other => {
                return Err(invalid(format!(
                    "cond must be one bool, got {} of {} element(s)",
                    other.dtype(),
                    other.len()
                )))
            }
        };
        let (attr, tag) = if taken {
            ("then_branch", "then")
        } else {
            ("else_branch", "else")
        };
        let branch = n
            .attribute
            .iter()
            .find(|a| a.name == attr)
            .and_then(|a| a.g.as_ref())
            .ok_or_else(|| invalid(format!("attribute {attr} (a graph) is missing")))?;
        if branch.output.len() != n.output.len() {
            return Err(invalid(format!(
                "{attr} has {} outputs, the node {}",
                branch.output.len(),
                n.output.len()
            )));
        }
        let prefix = format!("{name}/{tag}");
        let mut map: HashMap<String, String> = HashMap::new();
        let defined = branch
            .initializer
            .iter()
            .map(|t| &t.name)
            .chain(branch.node.iter().flat_map(|bn| &bn.output));
        for d in defined.filter(|d| !d.is_empty()) {
            map.insert(d.clone(), format!("{prefix}/{d}"));
        }
        for init in &branch.initializer {
            let (shape, data) = decode_tensor(self.model, init, self.base)?;
            self.values.insert(
                map[&init.name].clone(),
                Value {
                    dtype: data.dtype(),
                    shape,
                    konst: Some(Arc::new(data)),
                },
            );
        }
        for (i, bn) in branch.node.iter().enumerate() {
            let inner = format!("{prefix}/{}", node_display_name(bn, i));
            self.process(&renamed(bn, &map), file_index, &inner)?;
        }
        for (out, bout) in n.output.iter().zip(&branch.output) {
            if out.is_empty() {
                continue;
            }
            let src = self.resolve(map.get(&bout.name).unwrap_or(&bout.name));
            if let Some(reason) = self.unavailable.get(&src).cloned() {
                self.unavailable.insert(out.clone(), reason);
            } else if self.values.contains_key(&src) {
                self.alias.insert(out.clone(), src);
            } else {
                return Err(ExecError::DanglingInput {
                    model: self.model.to_owned(),
                    node: format!("{prefix} output"),
                    tensor: bout.name.clone(),
                });
            }
        }
        Ok(())
    }
}
