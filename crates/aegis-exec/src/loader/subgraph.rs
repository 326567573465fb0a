//! `If` with a condition known at load: the taken branch is inlined into the graph; `Loop`
//! with a trip count and conditions known at load: unrolled.
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
//!
//! A `Loop` (exported from scripted code, or the expansion of `Range`) is unrolled the same
//! way, one copy of its body per iteration (`Loop#2/iter3/...`): the iteration number and the
//! condition become constants, the carried values flow from one copy to the next, and each
//! scan output is the iterations' values stacked by `Unsqueeze` and `Concat`. The trip count
//! and every iteration's condition must fold at load, and at most [`MAX_UNROLL`] iterations
//! are unrolled. A `Scan` (opset 9+) is unrolled likewise, its iteration count being the scan
//! inputs' extent along their axes (static once the shapes are): each copy reads its slices
//! by `Gather` of one index, in either direction, and the scan outputs are stacked along their
//! axes, reversed for a backward output.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use tract_onnx::pb;

use super::node::Value;
use super::tensor::decode_tensor;
use super::{node_display_name, Loader};
use crate::error::ExecError;
use crate::graph::TensorData;

/// Most iterations a `Loop` is unrolled into (each copies the body into the graph).
pub(super) const MAX_UNROLL: usize = 1024;

/// An int attribute.
fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

/// An ints attribute.
fn ints_attr(name: &str, ints: Vec<i64>) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: 7,
        ints,
        ..Default::default()
    }
}

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

/// The graph held by attribute `attr` of `n`.
fn graph_attr<'n>(n: &'n pb::NodeProto, attr: &str) -> Option<&'n pb::GraphProto> {
    n.attribute
        .iter()
        .find(|a| a.name == attr)
        .and_then(|a| a.g.as_ref())
}

/// An invalid-node error of `model`'s node `name`.
fn invalid_node(model: &str, name: &str, reason: String) -> ExecError {
    ExecError::InvalidNode {
        model: model.to_owned(),
        node: name.to_owned(),
        reason,
    }
}

/// A bool scalar constant's value.
fn const_bool(v: &Value) -> Option<bool> {
    match v.konst.as_deref() {
        Some(TensorData::Bool(b)) if b.len() == 1 => Some(b[0] != 0),
        _ => None,
    }
}

impl Loader<'_> {
    /// Adds a constant value named `name`.
    fn add_const(&mut self, name: &str, shape: Vec<usize>, data: TensorData) {
        self.values.insert(
            name.to_owned(),
            Value {
                dtype: data.dtype(),
                shape,
                konst: Some(Arc::new(data)),
            },
        );
    }

    /// Processes one copy of subgraph `g`: the names it defines become `{prefix}/name`
    /// (added to `map`, which may already rename its inputs), its initializers constants, and
    /// its nodes run through [`Loader::process`] under `{prefix}/node`.
    fn inline_graph(
        &mut self,
        g: &pb::GraphProto,
        prefix: &str,
        map: &mut HashMap<String, String>,
        file_index: usize,
    ) -> Result<(), ExecError> {
        let defined = g
            .initializer
            .iter()
            .map(|t| &t.name)
            .chain(g.node.iter().flat_map(|n| &n.output));
        for d in defined.filter(|d| !d.is_empty()) {
            map.insert(d.clone(), format!("{prefix}/{d}"));
        }
        for init in &g.initializer {
            let (shape, data) = decode_tensor(self.model, init, self.base)?;
            self.add_const(&map[&init.name], shape, data);
        }
        for (i, n) in g.node.iter().enumerate() {
            let inner = format!("{prefix}/{}", node_display_name(n, i));
            self.process(&renamed(n, map), file_index, &inner)?;
        }
        Ok(())
    }

    /// Unrolls `Loop` node `n` (see the module doc).
    pub(super) fn process_loop(
        &mut self,
        n: &pb::NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<(), ExecError> {
        let model = self.model;
        let invalid = |reason: String| invalid_node(model, name, reason);
        let body = graph_attr(n, "body")
            .ok_or_else(|| invalid("attribute body (a graph) is missing".into()))?;
        let carried_n = n.input.len().saturating_sub(2);
        if body.input.len() != carried_n + 2 || body.output.len() < carried_n + 1 {
            return Err(invalid(format!(
                "the body has {} inputs and {} outputs for {carried_n} carried values",
                body.input.len(),
                body.output.len()
            )));
        }
        let scans_n = body.output.len() - carried_n - 1;
        if n.output.len() > carried_n + scans_n {
            return Err(invalid(format!(
                "{} outputs for {carried_n} carried values and {scans_n} scan outputs",
                n.output.len()
            )));
        }
        // Reads input `i` (resolved), `None` when absent.
        let read = |ld: &Self, i: usize| -> Result<Option<(String, Value)>, ExecError> {
            let Some(raw) = n.input.get(i).filter(|s| !s.is_empty()) else {
                return Ok(None);
            };
            let r = ld.resolve(raw);
            if let Some(reason) = ld.unavailable.get(&r) {
                return Err(invalid(format!("reads '{r}', which is {reason}")));
            }
            let v = ld.values.get(&r).ok_or_else(|| ExecError::DanglingInput {
                model: ld.model.to_owned(),
                node: name.to_owned(),
                tensor: r.clone(),
            })?;
            Ok(Some((r, v.clone())))
        };
        let trips = match read(self, 0)? {
            None => None,
            Some((r, v)) => match v.konst.as_deref() {
                Some(TensorData::I64(m)) if m.len() == 1 => Some(m[0].max(0)),
                Some(_) => return Err(invalid(format!("trip count '{r}' must be one int64"))),
                None => {
                    return Err(invalid(format!(
                        "input 0 (trip count '{r}') must be known at load: a Loop is unrolled \
                         into the static graph"
                    )))
                }
            },
        };
        if trips.is_some_and(|m| m > MAX_UNROLL as i64) {
            return Err(invalid(format!(
                "the loop runs more than {MAX_UNROLL} iterations; AegisRT unrolls loops into \
                 the static graph"
            )));
        }
        let mut cond = match read(self, 1)? {
            None => true,
            Some((r, v)) => const_bool(&v).ok_or_else(|| {
                invalid(format!(
                    "input 1 (cond '{r}') must be known at load: a Loop is unrolled into the \
                     static graph"
                ))
            })?,
        };
        let mut carried: Vec<String> = Vec::with_capacity(carried_n);
        for i in 0..carried_n {
            let (r, _) = read(self, 2 + i)?
                .ok_or_else(|| invalid(format!("carried value {i} (input {}) is empty", 2 + i)))?;
            carried.push(r);
        }
        let mut scans: Vec<Vec<String>> = vec![Vec::new(); scans_n];
        let mut iter = 0usize;
        while cond && trips.is_none_or(|m| (iter as i64) < m) {
            if iter == MAX_UNROLL {
                return Err(invalid(format!(
                    "the loop runs more than {MAX_UNROLL} iterations; AegisRT unrolls loops \
                     into the static graph"
                )));
            }
            let prefix = format!("{name}/iter{iter}");
            let mut map: HashMap<String, String> = HashMap::new();
            let (iter_in, cond_in) = (&body.input[0].name, &body.input[1].name);
            let iter_name = format!("{prefix}/{iter_in}");
            self.add_const(&iter_name, Vec::new(), TensorData::I64(vec![iter as i64]));
            map.insert(iter_in.clone(), iter_name);
            let cond_name = format!("{prefix}/{cond_in}");
            self.add_const(&cond_name, Vec::new(), TensorData::Bool(vec![1]));
            map.insert(cond_in.clone(), cond_name);
            for (vi, src) in body.input[2..].iter().zip(&carried) {
                map.insert(vi.name.clone(), src.clone());
            }
            self.inline_graph(body, &prefix, &mut map, file_index)?;
            // The body's outputs, resolved: cond_out, carried values, scan outputs.
            let outs = self.body_outputs(body, &map, &prefix, name)?;
            carried = outs[1..=carried_n].to_vec();
            for (k, s) in outs[carried_n + 1..].iter().enumerate() {
                scans[k].push(s.clone());
            }
            iter += 1;
            // The next iteration's condition, when there is one to decide.
            if trips.is_none_or(|m| (iter as i64) < m) {
                cond = const_bool(&self.values[&outs[0]]).ok_or_else(|| {
                    invalid(format!(
                        "the body's condition after iteration {} must be known at load",
                        iter - 1
                    ))
                })?;
            }
        }
        for (out, src) in n.output.iter().zip(&carried) {
            if !out.is_empty() {
                self.alias.insert(out.clone(), src.clone());
            }
        }
        for (k, out) in n.output.iter().enumerate().skip(carried_n) {
            if out.is_empty() {
                continue;
            }
            let parts = &scans[k - carried_n];
            if parts.is_empty() {
                return Err(invalid(format!(
                    "scan output '{out}' of a loop that runs no iteration has no known shape"
                )));
            }
            self.stack(name, k, parts, 0, out, file_index)?;
        }
        Ok(())
    }

    /// The outputs of one inlined copy of `body` (renamed by `map` under `prefix`), resolved.
    fn body_outputs(
        &self,
        body: &pb::GraphProto,
        map: &HashMap<String, String>,
        prefix: &str,
        name: &str,
    ) -> Result<Vec<String>, ExecError> {
        let mut outs = Vec::with_capacity(body.output.len());
        for o in &body.output {
            let r = self.resolve(map.get(&o.name).unwrap_or(&o.name));
            if let Some(reason) = self.unavailable.get(&r) {
                return Err(invalid_node(
                    self.model,
                    name,
                    format!("body output '{}' is {reason}", o.name),
                ));
            }
            if !self.values.contains_key(&r) {
                return Err(ExecError::DanglingInput {
                    model: self.model.to_owned(),
                    node: format!("{prefix} output"),
                    tensor: o.name.clone(),
                });
            }
            outs.push(r);
        }
        Ok(outs)
    }

    /// Output `out` of node `name`: the iterations' values `parts` stacked along a new axis
    /// `axis` (of the result; negative counts from its end) by `Unsqueeze` and `Concat`.
    fn stack(
        &mut self,
        name: &str,
        k: usize,
        parts: &[String],
        axis: i64,
        out: &str,
        file_index: usize,
    ) -> Result<(), ExecError> {
        let rank = parts
            .first()
            .and_then(|p| self.values.get(p))
            .map_or(0, |v| v.shape.len()) as i64;
        let axis = if axis < 0 { axis + rank + 1 } else { axis };
        if !(0..=rank).contains(&axis) {
            return Err(invalid_node(
                self.model,
                name,
                format!("scan output {k}: axis out of range for rank {}", rank + 1),
            ));
        }
        let axes_name = format!("{name}/scan{k}/axes");
        self.add_const(&axes_name, vec![1], TensorData::I64(vec![axis]));
        let mut stacked = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let un = format!("{name}/scan{k}/iter{i}");
            let node = if self.opset >= 13 {
                pb::NodeProto {
                    op_type: "Unsqueeze".into(),
                    input: vec![part.clone(), axes_name.clone()],
                    output: vec![un.clone()],
                    ..Default::default()
                }
            } else {
                pb::NodeProto {
                    op_type: "Unsqueeze".into(),
                    input: vec![part.clone()],
                    output: vec![un.clone()],
                    attribute: vec![ints_attr("axes", vec![axis])],
                    ..Default::default()
                }
            };
            self.process(&node, file_index, &format!("{un}/Unsqueeze"))?;
            stacked.push(un);
        }
        let concat = pb::NodeProto {
            op_type: "Concat".into(),
            input: stacked,
            output: vec![out.to_owned()],
            attribute: vec![int_attr("axis", axis)],
            ..Default::default()
        };
        self.process(&concat, file_index, &format!("{name}/scan{k}/Concat"))
    }

    /// Unrolls `Scan` node `n` (opset 9+): one copy of the body per element along the scan
    /// inputs' axes, each reading its slices (`Gather` of one index, in either direction),
    /// the state flowing from copy to copy, the scan outputs stacked.
    pub(super) fn process_scan(
        &mut self,
        n: &pb::NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<(), ExecError> {
        let model = self.model;
        let invalid = |reason: String| invalid_node(model, name, reason);
        if self.opset < 9 {
            return Err(invalid(
                "Scan before opset 9 (batched, with sequence_lens) is not supported".into(),
            ));
        }
        let body = graph_attr(n, "body")
            .ok_or_else(|| invalid("attribute body (a graph) is missing".into()))?;
        let ints = |attr: &str| -> Option<Vec<i64>> {
            n.attribute
                .iter()
                .find(|a| a.name == attr)
                .map(|a| a.ints.clone())
        };
        let m = n
            .attribute
            .iter()
            .find(|a| a.name == "num_scan_inputs")
            .map(|a| a.i)
            .ok_or_else(|| invalid("attribute num_scan_inputs is missing".into()))?;
        let m = usize::try_from(m)
            .ok()
            .filter(|&m| m >= 1 && m <= n.input.len())
            .ok_or_else(|| invalid(format!("num_scan_inputs {m} for {} inputs", n.input.len())))?;
        let states_n = n.input.len() - m;
        if body.input.len() != n.input.len() || body.output.len() < states_n {
            return Err(invalid(format!(
                "the body has {} inputs and {} outputs for {states_n} states and {m} scan inputs",
                body.input.len(),
                body.output.len()
            )));
        }
        let k_n = body.output.len() - states_n;
        let per = |attr: &str, len: usize| -> Result<Vec<i64>, ExecError> {
            match ints(attr) {
                None => Ok(vec![0; len]),
                Some(v) if v.len() == len => Ok(v),
                Some(v) => Err(invalid(format!("{attr} has {} values for {len}", v.len()))),
            }
        };
        let (in_dirs, in_axes) = (per("scan_input_directions", m)?, per("scan_input_axes", m)?);
        let (out_dirs, out_axes) = (
            per("scan_output_directions", k_n)?,
            per("scan_output_axes", k_n)?,
        );
        let mut inputs = Vec::with_capacity(n.input.len());
        for raw in &n.input {
            if raw.is_empty() {
                return Err(invalid("an input is empty".into()));
            }
            let r = self.resolve(raw);
            if let Some(reason) = self.unavailable.get(&r) {
                return Err(invalid(format!("reads '{r}', which is {reason}")));
            }
            let v = self
                .values
                .get(&r)
                .cloned()
                .ok_or_else(|| ExecError::DanglingInput {
                    model: self.model.to_owned(),
                    node: name.to_owned(),
                    tensor: r.clone(),
                })?;
            inputs.push((r, v));
        }
        // The scan axis of each scan input, resolved, and the common number of iterations.
        let mut trips = None;
        let mut axes = Vec::with_capacity(m);
        for (j, (r, v)) in inputs[states_n..].iter().enumerate() {
            let rank = v.shape.len() as i64;
            let a = if in_axes[j] < 0 {
                in_axes[j] + rank
            } else {
                in_axes[j]
            };
            if !(0..rank).contains(&a) {
                return Err(invalid(format!(
                    "scan input '{r}' has no axis {}",
                    in_axes[j]
                )));
            }
            let len = v.shape[a as usize];
            if trips.is_some_and(|t| t != len) {
                return Err(invalid(format!(
                    "scan input '{r}' has {len} elements along its axis, another has {}",
                    trips.unwrap_or(0)
                )));
            }
            trips = Some(len);
            axes.push(a);
        }
        let trips = trips.unwrap_or(0);
        if trips > MAX_UNROLL {
            return Err(invalid(format!(
                "the scan runs {trips} iterations; AegisRT unrolls at most {MAX_UNROLL} into the \
                 static graph"
            )));
        }
        let mut states: Vec<String> = inputs[..states_n].iter().map(|(r, _)| r.clone()).collect();
        let mut scans: Vec<Vec<String>> = vec![Vec::new(); k_n];
        for t in 0..trips {
            let prefix = format!("{name}/iter{t}");
            let mut map: HashMap<String, String> = HashMap::new();
            for (vi, src) in body.input.iter().zip(&states) {
                map.insert(vi.name.clone(), src.clone());
            }
            for (j, ((r, _), vi)) in inputs[states_n..]
                .iter()
                .zip(&body.input[states_n..])
                .enumerate()
            {
                let at = if in_dirs[j] == 1 { trips - 1 - t } else { t };
                let index = format!("{prefix}/scan_in{j}/index");
                self.add_const(&index, Vec::new(), TensorData::I64(vec![at as i64]));
                let slice = format!("{prefix}/scan_in{j}");
                let gather = pb::NodeProto {
                    op_type: "Gather".into(),
                    input: vec![r.clone(), index],
                    output: vec![slice.clone()],
                    attribute: vec![int_attr("axis", axes[j])],
                    ..Default::default()
                };
                self.process(&gather, file_index, &format!("{slice}/Gather"))?;
                map.insert(vi.name.clone(), slice);
            }
            self.inline_graph(body, &prefix, &mut map, file_index)?;
            let outs = self.body_outputs(body, &map, &prefix, name)?;
            states = outs[..states_n].to_vec();
            for (k, s) in outs[states_n..].iter().enumerate() {
                scans[k].push(s.clone());
            }
        }
        for (out, src) in n.output.iter().zip(&states) {
            if !out.is_empty() {
                self.alias.insert(out.clone(), src.clone());
            }
        }
        for (k, out) in n.output.iter().enumerate().skip(states_n).take(k_n) {
            if out.is_empty() {
                continue;
            }
            let mut parts = scans[k - states_n].clone();
            if parts.is_empty() {
                return Err(invalid(format!(
                    "scan output '{out}' of a scan over no elements has no known shape"
                )));
            }
            if out_dirs[k - states_n] == 1 {
                parts.reverse();
            }
            self.stack(name, k, &parts, out_axes[k - states_n], out, file_index)?;
        }
        Ok(())
    }

    /// Inlines the branch of `If` node `n` that its condition (known at load) selects.
    pub(super) fn process_if(
        &mut self,
        n: &pb::NodeProto,
        file_index: usize,
        name: &str,
    ) -> Result<(), ExecError> {
        let model = self.model;
        let invalid = |reason: String| invalid_node(model, name, reason);
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
        let branch = graph_attr(n, attr)
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
        self.inline_graph(branch, &prefix, &mut map, file_index)?;
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
