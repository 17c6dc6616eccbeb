//! ONNX import: reads a model with tract-onnx's protobuf parser and translates the nodes we can
//! prove into our graph IR, folding constants and refusing anything else by node name and op type.

use std::collections::HashMap;
use std::path::Path;

use tract_onnx::pb;
use tract_onnx::prelude::{DatumType, Framework};

use super::function::Function;
use super::graph::{broadcast_indices, broadcast_shape, Graph, Node, Op, Tensor, Window};
use super::movement::{self, Moved, PadMode, Source};
use crate::error::{Error, Result};

/// The ONNX operators the import understands, listed in errors.
pub const SUPPORTED_OPS: &str =
    "Gemm, MatMul, Conv (1-D, 2-D, 3-D; strides, pads, dilations, groups), ConvTranspose, BatchNormalization, \
     InstanceNormalization, AveragePool, MaxPool, GlobalAveragePool, GlobalMaxPool, Add, Sub, Mul, Div (by a \
     constant or a positive computed value), Sum, Max, Min, Clip, Relu, LeakyRelu, PRelu, Sigmoid, Tanh, \
     Softmax, LogSoftmax, Exp, Log, Sqrt, Softplus, Softsign, Erf, Gelu, Elu, Selu, Pow (by a constant), \
     ReduceSum, ReduceMean, ReduceMax, ReduceMin, Transpose, Concat, Slice, Gather (constant indices), Pad \
     (constant, reflect, edge), Split, Expand, Tile, Squeeze, Unsqueeze, Flatten, Reshape, Neg, Abs, Identity, \
     Dropout, Constant, and Shape, ConstantOfShape and Cast on constants";

/// A value flowing between ONNX nodes: a constant we fold, or the output of one of our nodes.
#[derive(Clone, Debug)]
enum Value {
    Const(Tensor),
    Node(usize),
}

/// Reads an ONNX file into our IR. Inputs with a symbolic (batch) dimension get size 1.
pub fn import_onnx(path: &Path) -> Result<Graph> {
    if !path.is_file() {
        return Err(Error::io("read", path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let malformed = |reason: String| Error::MalformedOnnx { path: path.to_path_buf(), reason };
    let proto = tract_onnx::onnx().proto_model_for_path(path).map_err(|e| malformed(format!("{e:#}")))?;
    let graph = proto.graph.as_ref().ok_or_else(|| malformed("the file holds no graph".into()))?;
    let model_dir = path.parent().and_then(|d| d.to_str());
    // The default domain's opset decides a few semantics (Softmax's axis).
    let opset = proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or(LATEST_OPSET);
    Importer::new(path, graph, model_dir, opset)?.run(graph)
}

/// The opset assumed for a model that declares none.
const LATEST_OPSET: i64 = 21;

struct Importer<'a> {
    path: &'a Path,
    opset: i64,
    values: HashMap<String, Value>,
    nodes: Vec<Node>,
}

impl<'a> Importer<'a> {
    fn new(path: &'a Path, graph: &pb::GraphProto, model_dir: Option<&str>, opset: i64) -> Result<Self> {
        let mut importer = Importer { path, opset, values: HashMap::new(), nodes: Vec::new() };
        let provider = tract_onnx::onnx().provider;
        for init in &graph.initializer {
            let tensor = tract_onnx::tensor::load_tensor(&*provider, init, model_dir)
                .map_err(|e| importer.malformed(format!("initializer '{}': {e:#}", init.name)))?;
            importer.values.insert(init.name.clone(), Value::Const(importer.to_f32(&init.name, &tensor)?));
        }
        let mut index = 0;
        for input in &graph.input {
            if importer.values.contains_key(&input.name) {
                continue;
            }
            let shape = input_shape(input).map_err(|reason| importer.malformed(reason))?;
            importer.push(input.name.clone(), input.name.clone(), Op::Input { index }, vec![], shape);
            index += 1;
        }
        if index == 0 {
            return Err(importer.malformed("the graph has no input".into()));
        }
        Ok(importer)
    }

    fn malformed(&self, reason: String) -> Error {
        Error::MalformedOnnx { path: self.path.to_path_buf(), reason }
    }

    fn to_f32(&self, name: &str, tensor: &tract_onnx::prelude::Tensor) -> Result<Tensor> {
        let cast = tensor
            .cast_to::<f32>()
            .map_err(|e| self.malformed(format!("tensor '{name}' of type {:?}: {e:#}", tensor.datum_type())))?;
        let view = cast.to_plain_array_view::<f32>().expect("cast to f32 gives f32");
        Ok(Tensor::new(tensor.shape().to_vec(), view.iter().copied().collect()))
    }

    /// Appends a node named `name` whose output is the ONNX value `output`.
    fn push(&mut self, name: String, output: String, op: Op, inputs: Vec<usize>, shape: Vec<usize>) {
        self.nodes.push(Node { name, op, inputs, shape, value: output.clone() });
        self.values.insert(output, Value::Node(self.nodes.len() - 1));
    }

    fn run(mut self, graph: &pb::GraphProto) -> Result<Graph> {
        for node in &graph.node {
            self.import_node(node)?;
        }
        let mut outputs = Vec::new();
        for out in &graph.output {
            match self.values.get(&out.name) {
                Some(Value::Node(id)) => outputs.push(*id),
                Some(Value::Const(_)) => {
                    return Err(Error::UnsupportedModel(format!(
                        "output '{}' is a constant that does not depend on the input",
                        out.name
                    )))
                }
                None => return Err(self.malformed(format!("output '{}' is produced by no node", out.name))),
            }
        }
        let graph = Graph { nodes: self.nodes, outputs };
        Ok(simplify(graph))
    }

    fn unsupported(&self, node: &pb::NodeProto, detail: impl Into<String>) -> Error {
        let detail = detail.into();
        Error::UnsupportedOp {
            node: node_name(node),
            op_type: node.op_type.clone(),
            detail: if detail.is_empty() { detail } else { format!(": {detail}") },
            supported: SUPPORTED_OPS,
        }
    }

    fn input(&self, node: &pb::NodeProto, i: usize) -> Result<Option<Value>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            None => Ok(None),
            Some(name) => self.values.get(name).cloned().map(Some).ok_or_else(|| {
                self.malformed(format!("node '{}' reads '{name}', which nothing produces", node_name(node)))
            }),
        }
    }

    fn required_input(&self, node: &pb::NodeProto, i: usize) -> Result<Value> {
        self.input(node, i)?.ok_or_else(|| {
            self.malformed(format!("node '{}' ({}) lacks its input #{i}", node_name(node), node.op_type))
        })
    }

    fn shape_of(&self, value: &Value) -> Vec<usize> {
        match value {
            Value::Const(t) => t.shape.clone(),
            Value::Node(id) => self.nodes[*id].shape.clone(),
        }
    }

    /// Every input of a variadic node (Concat, Sum, Max, Min).
    fn all_inputs(&self, node: &pb::NodeProto) -> Result<Vec<Value>> {
        (0..node.input.len()).map(|i| self.required_input(node, i)).collect()
    }

    /// The shape numpy broadcasting gives the inputs together; refuses shapes that do not broadcast.
    fn broadcast_inputs(&self, node: &pb::NodeProto, inputs: &[Value]) -> Result<Vec<usize>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|v| self.shape_of(v)).collect();
        shapes
            .iter()
            .try_fold(Vec::new(), |acc, s| broadcast_shape(&acc, s))
            .ok_or_else(|| self.unsupported(node, format!("shapes {shapes:?} do not broadcast")))
    }

    /// Axes in `[-rank, rank)` as positions.
    fn axes(&self, node: &pb::NodeProto, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
        axes.iter()
            .map(|&a| movement::axis(a, rank))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.unsupported(node, e))
    }

    fn output_name(&self, node: &pb::NodeProto) -> Result<String> {
        node.output.first().cloned().ok_or_else(|| self.malformed(format!("node '{}' has no output", node_name(node))))
    }

    fn set_output(&mut self, node: &pb::NodeProto, value: Value) -> Result<()> {
        let name = self.output_name(node)?;
        self.values.insert(name, value);
        Ok(())
    }

    fn add_node(&mut self, node: &pb::NodeProto, op: Op, inputs: Vec<usize>, shape: Vec<usize>) -> Result<()> {
        let output = self.output_name(node)?;
        self.push(node_name(node), output, op, inputs, shape);
        Ok(())
    }

    /// An element-wise activation: folded on a constant, a node `op` otherwise.
    fn import_activation(&mut self, node: &pb::NodeProto, op: Op, f: fn(f32) -> f32) -> Result<()> {
        match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = f(*v));
                self.set_output(node, Value::Const(t))
            }
            Value::Node(id) => {
                let shape = self.nodes[id].shape.clone();
                self.add_node(node, op, vec![id], shape)
            }
        }
    }

    /// An element-wise function proven by lookup: folded on a constant, a node otherwise.
    fn import_lookup(&mut self, node: &pb::NodeProto, func: Function) -> Result<()> {
        match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = func.eval(f64::from(*v)) as f32);
                self.set_output(node, Value::Const(t))
            }
            Value::Node(id) => {
                let shape = self.nodes[id].shape.clone();
                self.add_node(node, Op::Lookup { func }, vec![id], shape)
            }
        }
    }

    /// Pow by one constant exponent (a computed base); constants fold.
    fn import_pow(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (base, exponent) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let Value::Const(exponent) = exponent else {
            return Err(self.unsupported(node, "the exponent must be a constant"));
        };
        let Some(&e) = exponent.data.first().filter(|&&e| exponent.data.iter().all(|&v| v == e)) else {
            return Err(self.unsupported(node, "the exponent must be one value"));
        };
        if let Value::Const(b) = &base {
            let shape = self.broadcast_inputs(node, &[base.clone(), Value::Const(exponent.clone())])?;
            let folded = combine(b, &exponent, shape, f32::powf);
            return self.set_output(node, Value::Const(folded));
        }
        if e == 1.0 {
            return self.set_output(node, base);
        }
        self.import_lookup(node, Function::Pow { exponent: f64::from(e) })
    }

    fn import_node(&mut self, node: &pb::NodeProto) -> Result<()> {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(self.unsupported(node, format!("custom domain '{}'", node.domain)));
        }
        match node.op_type.as_str() {
            "Constant" => {
                let value = self.constant_attribute(node)?;
                self.set_output(node, Value::Const(value))
            }
            "Identity" | "Dropout" => {
                let value = self.required_input(node, 0)?;
                self.set_output(node, value)
            }
            "Flatten" => {
                let value = self.required_input(node, 0)?;
                let shape = self.shape_of(&value);
                let axis = attr_int(node, "axis").unwrap_or(1);
                let axis = normalize_axis(axis, shape.len() + 1)
                    .ok_or_else(|| self.unsupported(node, format!("axis {axis}")))?;
                let new_shape = vec![shape[..axis].iter().product(), shape[axis..].iter().product()];
                self.reshape(node, value, new_shape)
            }
            "Reshape" => {
                let value = self.required_input(node, 0)?;
                let Some(Value::Const(target)) = self.input(node, 1)? else {
                    return Err(self.unsupported(node, "the target shape must be a constant"));
                };
                let shape = self.shape_of(&value);
                let new_shape = reshape_target(&shape, &target.data)
                    .ok_or_else(|| self.unsupported(node, format!("cannot reshape {shape:?} to {:?}", target.data)))?;
                self.reshape(node, value, new_shape)
            }
            "Gemm" => self.import_gemm(node),
            "MatMul" => self.import_matmul(node),
            "Add" => self.import_add(node),
            "Sub" | "Mul" | "Div" => self.import_arithmetic(node),
            "Sum" => self.import_sum(node),
            "Max" | "Min" => self.import_extremum(node),
            "Clip" => self.import_clip(node),
            "LeakyRelu" | "PRelu" => self.import_leaky(node),
            "Tanh" => self.import_lookup(node, Function::Tanh),
            "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" => self.import_reduce(node),
            "Softmax" | "LogSoftmax" => self.import_softmax(node),
            "Transpose" | "Concat" | "Slice" | "Gather" | "Pad" | "Split" | "Expand" | "Tile" => {
                self.import_movement(node)
            }
            "Neg" | "Abs" => self.import_neg_abs(node),
            "Squeeze" | "Unsqueeze" => self.import_squeeze(node),
            "Shape" => {
                let shape = self.shape_of(&self.required_input(node, 0)?);
                let rank = shape.len() as i64;
                let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
                let start = clamp(attr_int(node, "start").unwrap_or(0));
                let end = clamp(attr_int(node, "end").unwrap_or(rank)).max(start);
                let dims: Vec<f32> = shape[start..end].iter().map(|&d| d as f32).collect();
                self.set_output(node, Value::Const(Tensor::new(vec![dims.len()], dims)))
            }
            "ConstantOfShape" => {
                let shape = self.const_ints(node, 0)?;
                let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
                    None => 0.0,
                    Some(t) => {
                        let provider = tract_onnx::onnx().provider;
                        let tensor = tract_onnx::tensor::load_tensor(&*provider, t, None)
                            .map_err(|e| self.malformed(format!("ConstantOfShape '{}': {e:#}", node_name(node))))?;
                        self.to_f32(&node_name(node), &tensor)?.data.first().copied().unwrap_or(0.0)
                    }
                };
                let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
                let len = shape.iter().product();
                self.set_output(node, Value::Const(Tensor::new(shape, vec![value; len])))
            }
            "Cast" => {
                // The graph computes in float: a cast of a computed value to an integer type
                // would truncate, which is not proven.
                let value = self.required_input(node, 0)?;
                let to_float = matches!(attr_int(node, "to"), Some(1 | 10 | 11 | 16));
                if matches!(value, Value::Node(_)) && !to_float {
                    return Err(self.unsupported(node, "a cast of a computed value to a non-float type"));
                }
                self.set_output(node, value)
            }
            "Conv" => self.import_conv(node),
            "ConvTranspose" => self.import_conv_transpose(node),
            "BatchNormalization" => self.import_batch_norm(node),
            "InstanceNormalization" => self.import_instance_norm(node),
            "AveragePool" | "MaxPool" | "GlobalAveragePool" | "GlobalMaxPool" => self.import_pool(node),
            "Relu" => self.import_activation(node, Op::Relu, |v| v.max(0.0)),
            "Sigmoid" => self.import_lookup(node, Function::Sigmoid),
            "Exp" => self.import_lookup(node, Function::Exp),
            "Log" => self.import_lookup(node, Function::Log),
            "Sqrt" => self.import_lookup(node, Function::Sqrt),
            "Softplus" => self.import_lookup(node, Function::Softplus),
            "Softsign" => self.import_lookup(node, Function::Softsign),
            "Erf" => self.import_lookup(node, Function::Erf),
            "Gelu" => {
                let tanh = attr(node, "approximate").is_some_and(|a| a.s == b"tanh");
                self.import_lookup(node, Function::Gelu { tanh })
            }
            "Elu" => {
                let alpha = f64::from(attr_float(node, "alpha").unwrap_or(1.0));
                self.import_lookup(node, Function::Elu { alpha })
            }
            "Selu" => {
                let alpha = f64::from(attr_float(node, "alpha").unwrap_or(1.673_263_2));
                let gamma = f64::from(attr_float(node, "gamma").unwrap_or(1.050_701));
                self.import_lookup(node, Function::Selu { alpha, gamma })
            }
            "Pow" => self.import_pow(node),
            _ => Err(self.unsupported(node, "")),
        }
    }

    fn reshape(&mut self, node: &pb::NodeProto, value: Value, shape: Vec<usize>) -> Result<()> {
        match value {
            Value::Const(t) => self.set_output(node, Value::Const(Tensor::new(shape, t.data))),
            Value::Node(id) => self.add_node(node, Op::Reshape, vec![id], shape),
        }
    }

    fn constant_attribute(&self, node: &pb::NodeProto) -> Result<Tensor> {
        let attr = node
            .attribute
            .first()
            .ok_or_else(|| self.malformed(format!("Constant node '{}' has no value", node_name(node))))?;
        match attr.name.as_str() {
            "value" => {
                let t = attr.t.as_ref().ok_or_else(|| {
                    self.malformed(format!("Constant node '{}' has an empty tensor", node_name(node)))
                })?;
                let provider = tract_onnx::onnx().provider;
                let tensor = tract_onnx::tensor::load_tensor(&*provider, t, None)
                    .map_err(|e| self.malformed(format!("Constant node '{}': {e:#}", node_name(node))))?;
                self.to_f32(&node_name(node), &tensor)
            }
            "value_float" => Ok(Tensor::new(vec![], vec![attr.f])),
            "value_floats" => Ok(Tensor::new(vec![attr.floats.len()], attr.floats.clone())),
            "value_int" => Ok(Tensor::new(vec![], vec![attr.i as f32])),
            "value_ints" => Ok(Tensor::new(vec![attr.ints.len()], attr.ints.iter().map(|&i| i as f32).collect())),
            other => Err(self.unsupported(node, format!("Constant with attribute '{other}'"))),
        }
    }

    fn import_gemm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let alpha = attr_float(node, "alpha").unwrap_or(1.0);
        let beta = attr_float(node, "beta").unwrap_or(1.0);
        let trans_a = attr_int(node, "transA").unwrap_or(0) != 0;
        let trans_b = attr_int(node, "transB").unwrap_or(0) != 0;
        let Value::Node(a) = self.required_input(node, 0)? else {
            return Err(
                self.unsupported(node, "input A must be computed from the model input (a constant A is not supported)")
            );
        };
        let b = match self.required_input(node, 1)? {
            Value::Const(b) => b,
            Value::Node(b) => return self.import_gemm_computed(node, a, b, (trans_a, trans_b), (alpha, beta)),
        };
        let a_shape = self.nodes[a].shape.clone();
        if a_shape.len() != 2 || b.shape.len() != 2 {
            return Err(self.unsupported(node, format!("A {a_shape:?} and B {:?} must be matrices", b.shape)));
        }
        let (m, k) = if trans_a { (a_shape[1], a_shape[0]) } else { (a_shape[0], a_shape[1]) };
        let mut weight = if trans_b { transpose(&b) } else { b };
        if weight.shape[0] != k {
            return Err(self.unsupported(node, format!("A has {k} columns but B has {} rows", weight.shape[0])));
        }
        weight.data.iter_mut().for_each(|w| *w *= alpha);
        let n = weight.shape[1];
        let bias = match self.input(node, 2)? {
            None => None,
            Some(Value::Const(mut c)) => {
                if broadcast_shape(&c.shape, &[m, n]).as_deref() != Some(&[m, n][..]) {
                    return Err(self.unsupported(node, format!("C {:?} does not broadcast to [{m}, {n}]", c.shape)));
                }
                c.data.iter_mut().for_each(|v| *v *= beta);
                Some(c)
            }
            Some(Value::Node(_)) => return Err(self.unsupported(node, "input C must be a constant (bias)")),
        };
        self.add_node(node, Op::Dense { weight, bias, transpose_input: trans_a }, vec![a], vec![m, n])
    }

    /// Gemm of two computed matrices: `alpha · A' B' + beta · C`, with the transposes as data
    /// movement.
    fn import_gemm_computed(
        &mut self,
        node: &pb::NodeProto,
        a: usize,
        b: usize,
        (trans_a, trans_b): (bool, bool),
        (alpha, beta): (f32, f32),
    ) -> Result<()> {
        let mut operand = |id: usize, transposed: bool, part: &str| -> Result<usize> {
            let shape = self.nodes[id].shape.clone();
            if shape.len() != 2 {
                return Err(self.unsupported(node, format!("{part} {shape:?} must be a matrix")));
            }
            if !transposed {
                return Ok(id);
            }
            let (out, sources) = movement::transpose(&shape, None).map_err(|e| self.unsupported(node, e))?;
            Ok(self.intermediate(node, &format!("{part}T"), Op::Select { sources }, vec![id], out))
        };
        let (a, b) = (operand(a, trans_a, "A")?, operand(b, trans_b, "B")?);
        let (sa, sb) = (self.nodes[a].shape.clone(), self.nodes[b].shape.clone());
        if sa[1] != sb[0] {
            return Err(self.unsupported(node, format!("A has {} columns but B has {} rows", sa[1], sb[0])));
        }
        let shape = vec![sa[0], sb[1]];
        let c = self.input(node, 2)?;
        let mut steps: Vec<(&str, Op, Option<usize>)> = vec![("product", Op::MatMul, Some(b))];
        if alpha != 1.0 {
            steps.push(("alpha", Op::MulConst { constant: Tensor::new(vec![], vec![alpha]) }, None));
        }
        match c {
            None => {}
            Some(Value::Const(mut c)) => {
                c.data.iter_mut().for_each(|v| *v *= beta);
                if broadcast_shape(&c.shape, &shape).as_deref() != Some(&shape[..]) {
                    return Err(self.unsupported(node, format!("C {:?} does not broadcast to {shape:?}", c.shape)));
                }
                steps.push(("bias", Op::AddConst { constant: c }, None));
            }
            Some(Value::Node(c)) if beta == 1.0 => steps.push(("bias", Op::Add, Some(c))),
            Some(Value::Node(_)) => return Err(self.unsupported(node, "a computed C with beta other than 1")),
        }
        let last = steps.len() - 1;
        let mut current = a;
        for (i, (part, op, other)) in steps.into_iter().enumerate() {
            let inputs = std::iter::once(current).chain(other).collect();
            if i == last {
                return self.add_node(node, op, inputs, shape);
            }
            current = self.intermediate(node, part, op, inputs, shape.clone());
        }
        unreachable!("the product is always a step")
    }

    fn import_matmul(&mut self, node: &pb::NodeProto) -> Result<()> {
        let a = self.required_input(node, 0)?;
        let b = self.required_input(node, 1)?;
        let (a, weight) = match (a, b) {
            (Value::Node(a), Value::Const(w)) => (a, w),
            (Value::Const(_), Value::Node(_)) => {
                return Err(self.unsupported(
                    node,
                    "a constant left operand is not supported; multiply by constant weights on the right",
                ))
            }
            (Value::Node(a), Value::Node(b)) => {
                let (sa, sb) = (self.nodes[a].shape.clone(), self.nodes[b].shape.clone());
                if sb.len() != 2 || sa.last() != Some(&sb[0]) {
                    return Err(self.unsupported(node, format!("cannot multiply {sa:?} by {sb:?} (B must be [K, N])")));
                }
                let mut shape = sa;
                *shape.last_mut().expect("checked non-empty") = sb[1];
                return self.add_node(node, Op::MatMul, vec![a, b], shape);
            }
            (Value::Const(_), Value::Const(_)) => {
                return Err(self.unsupported(node, "products of two constants should be folded by the exporter"))
            }
        };
        let a_shape = self.nodes[a].shape.clone();
        let k = *a_shape.last().unwrap_or(&0);
        if weight.shape.len() != 2 || weight.shape[0] != k || a_shape.is_empty() {
            return Err(self.unsupported(node, format!("cannot multiply {a_shape:?} by weights {:?}", weight.shape)));
        }
        let mut shape = a_shape.clone();
        *shape.last_mut().expect("checked non-empty") = weight.shape[1];
        self.add_node(node, Op::Dense { weight, bias: None, transpose_input: false }, vec![a], shape)
    }

    /// The computed `[N, C, spatial...]` input of a convolution or pooling node.
    fn spatial_input(&self, node: &pb::NodeProto) -> Result<(usize, Vec<usize>)> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed from the model input"));
        };
        let shape = self.nodes[x].shape.clone();
        if shape.len() < 2 {
            return Err(self.unsupported(node, format!("input {shape:?} is not [N, C, spatial...]")));
        }
        Ok((x, shape))
    }

    /// The window of a convolution or pooling node over `spatial`, from its attributes.
    fn window(&self, node: &pb::NodeProto, spatial: &[usize], kernel: &[usize]) -> Result<Window> {
        let d = spatial.len();
        let ints = |name: &str, default: usize| -> Result<Vec<usize>> {
            let len = if name == "pads" { 2 * d } else { d };
            match attr(node, name) {
                None => Ok(vec![default; len]),
                Some(a) if a.ints.iter().all(|&v| v >= 0) => Ok(a.ints.iter().map(|&v| v as usize).collect()),
                Some(a) => Err(self.unsupported(node, format!("{name} {:?}", a.ints))),
            }
        };
        let strides = ints("strides", 1)?;
        let dilations = ints("dilations", 1)?;
        if attr_int(node, "ceil_mode").unwrap_or(0) != 0 {
            return Err(self.unsupported(node, "ceil_mode = 1"));
        }
        let auto_pad = attr(node, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
        let (begin, end) = match auto_pad.as_str() {
            "" | "NOTSET" => {
                let pads = ints("pads", 0)?;
                if pads.len() != 2 * d {
                    return Err(self.unsupported(node, format!("pads {pads:?} for {d} spatial axes")));
                }
                (pads[..d].to_vec(), pads[d..].to_vec())
            }
            "VALID" => (vec![0; d], vec![0; d]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut begin = vec![0; d];
                let mut end = vec![0; d];
                for a in 0..d.min(strides.len()).min(dilations.len()).min(kernel.len()) {
                    let out = spatial[a].div_ceil(strides[a].max(1));
                    let span = dilations[a] * (kernel[a].max(1) - 1) + 1;
                    let total = ((out - 1) * strides[a] + span).saturating_sub(spatial[a]);
                    let (small, large) = (total / 2, total - total / 2);
                    (begin[a], end[a]) = if auto_pad == "SAME_UPPER" { (small, large) } else { (large, small) };
                }
                (begin, end)
            }
            other => return Err(self.unsupported(node, format!("auto_pad {other}"))),
        };
        Window::new(spatial, kernel, &strides, &begin, &end, &dilations).map_err(|e| self.unsupported(node, e))
    }

    fn import_conv(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let Value::Const(weight) = self.required_input(node, 1)? else {
            return Err(self.unsupported(node, "the weights must be a constant"));
        };
        let group = attr_int(node, "group").unwrap_or(1).max(1) as usize;
        let (channels, m) = (shape[1], weight.shape[0]);
        if weight.shape.len() != shape.len()
            || channels % group != 0
            || m % group != 0
            || weight.shape[1] * group != channels
        {
            return Err(self.unsupported(
                node,
                format!("weights {:?} do not fit input {shape:?} in {group} groups", weight.shape),
            ));
        }
        let window = self.window(node, &shape[2..], &weight.shape[2..])?;
        self.add_conv(node, (x, shape[0]), weight, group, window)
    }

    /// ConvTranspose as the convolution it equals: the input spread out by the strides (zeros
    /// between its elements) and padded by `dilation · (kernel - 1) - pad` (plus the output
    /// padding at the end), convolved with stride 1 by the kernel flipped, with the input and
    /// output channels of each group exchanged.
    fn import_conv_transpose(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let Value::Const(w) = self.required_input(node, 1)? else {
            return Err(self.unsupported(node, "the weights must be a constant"));
        };
        let group = attr_int(node, "group").unwrap_or(1).max(1) as usize;
        let (channels, d) = (shape[1], shape.len() - 2);
        if w.shape.len() != shape.len() || w.shape[0] != channels || channels % group != 0 {
            return Err(self.unsupported(node, format!("weights {:?} do not fit input {shape:?}", w.shape)));
        }
        if attr(node, "output_shape").is_some() {
            return Err(self.unsupported(node, "the output_shape attribute (give pads instead)"));
        }
        let auto_pad = attr(node, "auto_pad").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
        if !matches!(auto_pad.as_str(), "" | "NOTSET" | "VALID") {
            return Err(self.unsupported(node, format!("auto_pad {auto_pad}")));
        }
        let ints = |name: &str, len: usize, default: i64| {
            attr(node, name).map(|a| a.ints.clone()).filter(|v| v.len() == len).unwrap_or_else(|| vec![default; len])
        };
        let (strides, dilations) = (ints("strides", d, 1), ints("dilations", d, 1));
        let (pads, output_padding) = (ints("pads", 2 * d, 0), ints("output_padding", d, 0));
        if strides.iter().chain(&dilations).any(|&v| v < 1) || pads.iter().chain(&output_padding).any(|&v| v < 0) {
            return Err(self.unsupported(node, "strides, dilations, pads or output_padding out of range"));
        }
        let kernel: Vec<usize> = w.shape[2..].to_vec();
        let span = |a: usize| dilations[a] * (kernel[a] as i64 - 1);
        let begin: Vec<i64> = (0..d).map(|a| span(a) - pads[a]).collect();
        let end: Vec<i64> = (0..d).map(|a| span(a) - pads[d + a] + output_padding[a]).collect();
        let strides: Vec<usize> = strides.iter().map(|&s| s as usize).collect();
        let (spread_shape, sources) =
            movement::dilate_pad(&shape, &strides, &begin, &end).map_err(|e| self.unsupported(node, e))?;
        let spread = self.intermediate(node, "spread", Op::Select { sources }, vec![x], spread_shape.clone());
        // W [C, M/G, k...] -> W' [M, C/G, flipped k...].
        let (per_in, per_out) = (channels / group, w.shape[1]);
        let m = per_out * group;
        let kernel_len: usize = kernel.iter().product();
        let mut weight = vec![0.0; m * per_in * kernel_len];
        for g in 0..group {
            for o in 0..per_out {
                for i in 0..per_in {
                    for t in 0..kernel_len {
                        let from = ((g * per_in + i) * per_out + o) * kernel_len + t;
                        let to = ((g * per_out + o) * per_in + i) * kernel_len + (kernel_len - 1 - t);
                        weight[to] = w.data[from];
                    }
                }
            }
        }
        let weight = Tensor::new([vec![m, per_in], kernel.clone()].concat(), weight);
        let ones = vec![1; d];
        let zeros = vec![0; d];
        let dilations: Vec<usize> = dilations.iter().map(|&v| v as usize).collect();
        let window = Window::new(&spread_shape[2..], &kernel, &ones, &zeros, &zeros, &dilations)
            .map_err(|e| self.unsupported(node, e))?;
        self.add_conv(node, (spread, shape[0]), weight, group, window)
    }

    /// Adds a convolution of node `x` (batch `n`) with the node's bias input, if any.
    fn add_conv(
        &mut self,
        node: &pb::NodeProto,
        (x, n): (usize, usize),
        weight: Tensor,
        group: usize,
        window: Window,
    ) -> Result<()> {
        let m = weight.shape[0];
        let bias = match self.input(node, 2)? {
            None => None,
            Some(Value::Const(b)) if b.len() == m => Some(Tensor::new(vec![m], b.data)),
            Some(_) => return Err(self.unsupported(node, format!("the bias must be a constant of {m} values"))),
        };
        let out_shape = [vec![n, m], window.output.clone()].concat();
        self.add_node(node, Op::Conv { weight, bias, group, window }, vec![x], out_shape)
    }

    /// BatchNormalization in inference mode: a per-channel `x · a + b`, proven as a depthwise
    /// 1×1 convolution (folded into a preceding convolution when that is its only reader).
    fn import_batch_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        if attr_int(node, "training_mode").unwrap_or(0) != 0 {
            return Err(self.unsupported(node, "training_mode = 1 (only inference is proven)"));
        }
        let (x, shape) = self.spatial_input(node)?;
        let c = shape[1];
        let params = self.channel_constants(node, 1..5, c, "scale, B, mean and var")?;
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let a: Vec<f32> = (0..c).map(|i| params[0][i] / (params[3][i] + epsilon).sqrt()).collect();
        let b: Vec<f32> = (0..c).map(|i| params[1][i] - params[2][i] * a[i]).collect();
        self.add_node(node, channel_affine(&shape, a, b), vec![x], shape)
    }

    /// Inputs `which` of a normalisation node: constants of one value per channel (`c`).
    fn channel_constants(
        &self,
        node: &pb::NodeProto,
        which: std::ops::Range<usize>,
        c: usize,
        names: &str,
    ) -> Result<Vec<Vec<f32>>> {
        which
            .map(|i| match self.required_input(node, i)? {
                Value::Const(t) if t.len() == c => Ok(t.data),
                _ => Err(self.unsupported(node, format!("{names} must be constants of {c} values"))),
            })
            .collect()
    }

    /// InstanceNormalization: `(x - mean) / √(var + ε) · scale + B` over each channel's
    /// spatial values, from a mean, a product, the Sqrt table and a proven division.
    fn import_instance_norm(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let mut params = self.channel_constants(node, 1..3, shape[1], "scale and B")?;
        let epsilon = attr_float(node, "epsilon").unwrap_or(1e-5);
        let (groups, reduced) = reduce_groups(&shape, &(2..shape.len()).collect::<Vec<_>>());
        let mean = Op::Reduce { groups: groups.clone(), mean: true };
        let mean = self.intermediate(node, "mean", mean, vec![x], reduced.clone());
        let centred = self.intermediate(node, "centred", Op::Sub, vec![x, mean], shape.clone());
        let square = self.intermediate(node, "square", Op::Mul, vec![centred, centred], shape.clone());
        let var = self.intermediate(node, "var", Op::Reduce { groups, mean: true }, vec![square], reduced.clone());
        let eps = Op::AddConst { constant: Tensor::new(vec![], vec![epsilon]) };
        let var = self.intermediate(node, "var_eps", eps, vec![var], reduced.clone());
        let std = self.intermediate(node, "std", Op::Lookup { func: Function::Sqrt }, vec![var], reduced);
        let normal = self.intermediate(node, "normal", Op::Div, vec![centred, std], shape.clone());
        let (scale, bias) = (params.remove(0), params.remove(0));
        self.add_node(node, channel_affine(&shape, scale, bias), vec![normal], shape)
    }

    fn import_pool(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (x, shape) = self.spatial_input(node)?;
        let spatial = shape[2..].to_vec();
        let global = node.op_type.starts_with("Global");
        let window = if global {
            let ones = vec![1; spatial.len()];
            let zeros = vec![0; spatial.len()];
            Window::new(&spatial, &spatial, &ones, &zeros, &zeros, &ones).expect("a global window fits")
        } else {
            let kernel: Vec<usize> =
                attr(node, "kernel_shape").map(|a| a.ints.iter().map(|&v| v.max(0) as usize).collect()).ok_or_else(
                    || self.malformed(format!("{} node '{}' has no kernel_shape", node.op_type, node_name(node))),
                )?;
            if node.output.len() > 1 && node.output[1..].iter().any(|o| !o.is_empty()) {
                return Err(self.unsupported(node, "the Indices output"));
            }
            let window = self.window(node, &spatial, &kernel)?;
            // An output whose window reads only padding has no maximum, and no average over
            // the taps inside the input: refused here, before any key exists.
            if let Some(o) = window.first_empty_output() {
                return Err(self.unsupported(
                    node,
                    format!(
                        "output position {o} of its window (kernel {kernel:?}, pads {:?}) lies entirely in the padding; \
                         reduce the padding below the kernel size",
                        window.pads_begin
                    ),
                ));
            }
            window
        };
        let out_shape = [shape[..2].to_vec(), window.output.clone()].concat();
        let op = if node.op_type.ends_with("AveragePool") {
            Op::AveragePool { window, count_include_pad: attr_int(node, "count_include_pad").unwrap_or(0) != 0 }
        } else {
            Op::MaxPool { window }
        };
        self.add_node(node, op, vec![x], out_shape)
    }

    /// A constant integer list: input `i` (newer opsets) as a constant.
    fn const_ints(&self, node: &pb::NodeProto, i: usize) -> Result<Vec<i64>> {
        match self.required_input(node, i)? {
            Value::Const(t) => Ok(t.data.iter().map(|&v| v as i64).collect()),
            Value::Node(_) => Err(self.unsupported(node, format!("input #{i} must be a constant"))),
        }
    }

    /// An integer list given as input `i` (newer opsets) or as attribute `name` (older ones).
    fn ints_input_or_attr(&self, node: &pb::NodeProto, i: usize, name: &str) -> Result<Option<Vec<i64>>> {
        if self.input(node, i)?.is_some() {
            return self.const_ints(node, i).map(Some);
        }
        Ok(attr(node, name).map(|a| a.ints.clone()))
    }

    /// Outputs a data-movement result: folded when every input is a constant, else a Select
    /// node whose inputs are the computed ones (constant inputs' elements become constants).
    fn emit_moved(&mut self, node: &pb::NodeProto, inputs: &[Value], moved: Moved, output: String) -> Result<()> {
        let (shape, sources) = moved;
        let mut node_inputs = Vec::new();
        let mut position = vec![None; inputs.len()];
        for (k, v) in inputs.iter().enumerate() {
            if let Value::Node(id) = v {
                position[k] = Some(node_inputs.len());
                node_inputs.push(*id);
            }
        }
        let sources: Vec<Source> = sources
            .into_iter()
            .map(|s| match s {
                Source::Input { input, index } => match (&inputs[input], position[input]) {
                    (_, Some(p)) => Source::Input { input: p, index },
                    (Value::Const(t), None) => Source::Const(t.data[index]),
                    (Value::Node(_), None) => unreachable!("computed inputs have a position"),
                },
                c => c,
            })
            .collect();
        if node_inputs.is_empty() {
            let data = movement::apply(&sources, &[]);
            self.values.insert(output, Value::Const(Tensor::new(shape, data)));
        } else {
            let name = if output == self.output_name(node)? {
                node_name(node)
            } else {
                format!("{}:{output}", node_name(node))
            };
            self.push(name, output, Op::Select { sources }, node_inputs, shape);
        }
        Ok(())
    }

    fn import_movement(&mut self, node: &pb::NodeProto) -> Result<()> {
        let data = self.required_input(node, 0)?;
        let shape = self.shape_of(&data);
        let refuse = |e: String| self.unsupported(node, e);
        let (inputs, moved) = match node.op_type.as_str() {
            "Transpose" => (
                vec![data],
                movement::transpose(&shape, attr(node, "perm").map(|a| a.ints.as_slice())).map_err(refuse)?,
            ),
            "Concat" => {
                let inputs = self.all_inputs(node)?;
                let shapes: Vec<Vec<usize>> = inputs.iter().map(|v| self.shape_of(v)).collect();
                let axis = attr_int(node, "axis").unwrap_or(0);
                (inputs, movement::concat(&shapes, axis).map_err(refuse)?)
            }
            "Slice" => {
                let starts = self.ints_input_or_attr(node, 1, "starts")?.unwrap_or_default();
                let ends = self.ints_input_or_attr(node, 2, "ends")?.unwrap_or_default();
                let axes = self.ints_input_or_attr(node, 3, "axes")?;
                let steps = self.ints_input_or_attr(node, 4, "steps")?;
                let moved =
                    movement::slice(&shape, &starts, &ends, axes.as_deref(), steps.as_deref()).map_err(refuse)?;
                (vec![data], moved)
            }
            "Gather" => {
                let Value::Const(indices) = self.required_input(node, 1)? else {
                    return Err(self.unsupported(node, "the indices must be constants"));
                };
                let ints: Vec<i64> = indices.data.iter().map(|&v| v as i64).collect();
                let axis = attr_int(node, "axis").unwrap_or(0);
                (vec![data], movement::gather(&shape, axis, &ints, &indices.shape).map_err(refuse)?)
            }
            "Pad" => {
                let mode = attr(node, "mode").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
                if self.input(node, 3)?.is_some() {
                    return Err(self.unsupported(node, "the axes input"));
                }
                let pads = self.ints_input_or_attr(node, 1, "pads")?.unwrap_or_default();
                let value = match self.input(node, 2)? {
                    Some(Value::Const(t)) => t.data.first().copied().unwrap_or(0.0),
                    Some(Value::Node(_)) => return Err(self.unsupported(node, "the padding value must be a constant")),
                    None => attr_float(node, "value").unwrap_or(0.0),
                };
                let mode = match mode.as_str() {
                    "" | "constant" => PadMode::Constant(value),
                    "reflect" => PadMode::Reflect,
                    "edge" => PadMode::Edge,
                    other => return Err(self.unsupported(node, format!("mode {other}"))),
                };
                (vec![data], movement::pad(&shape, &pads, mode).map_err(refuse)?)
            }
            "Tile" => {
                let repeats = self.const_ints(node, 1)?;
                (vec![data], movement::tile(&shape, &repeats).map_err(refuse)?)
            }
            "Expand" => {
                let target: Vec<usize> = self.const_ints(node, 1)?.iter().map(|&d| d.max(0) as usize).collect();
                (vec![data], movement::expand(&shape, &target).map_err(refuse)?)
            }
            _ => return self.import_split(node, data, &shape),
        };
        let output = self.output_name(node)?;
        self.emit_moved(node, &inputs, moved, output)
    }

    fn import_split(&mut self, node: &pb::NodeProto, data: Value, shape: &[usize]) -> Result<()> {
        let axis = attr_int(node, "axis").unwrap_or(0);
        let a = movement::axis(axis, shape.len()).map_err(|e| self.unsupported(node, e))?;
        let outputs = node.output.len().max(1);
        let sizes: Vec<usize> = match self.ints_input_or_attr(node, 1, "split")? {
            Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
            None => {
                let each = shape[a].div_ceil(outputs);
                (0..outputs).map(|i| each.min(shape[a].saturating_sub(i * each))).collect()
            }
        };
        let pieces = movement::split(shape, axis, &sizes).map_err(|e| self.unsupported(node, e))?;
        for (piece, output) in pieces.into_iter().zip(node.output.clone()) {
            if !output.is_empty() {
                self.emit_moved(node, std::slice::from_ref(&data), piece, output)?;
            }
        }
        Ok(())
    }

    fn import_squeeze(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        let shape = self.shape_of(&value);
        let axes = self.ints_input_or_attr(node, 1, "axes")?;
        let new_shape = if node.op_type == "Squeeze" {
            let rank = shape.len();
            let axes: Vec<usize> = match axes {
                Some(a) => self.axes(node, &a, rank)?,
                None => (0..rank).filter(|&i| shape[i] == 1).collect(),
            };
            if axes.iter().any(|&a| shape[a] != 1) {
                return Err(self.unsupported(node, format!("squeezing axes {axes:?} of {shape:?}")));
            }
            shape.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, &d)| d).collect()
        } else {
            let axes = axes.ok_or_else(|| self.malformed(format!("Unsqueeze '{}' has no axes", node_name(node))))?;
            let rank = shape.len() + axes.len();
            let mut axes = self.axes(node, &axes, rank)?;
            axes.sort_unstable();
            let mut out = shape.clone();
            for a in axes {
                out.insert(a.min(out.len()), 1);
            }
            out
        };
        self.reshape(node, value, new_shape)
    }

    /// Sub, Mul and Div: between computed tensors (Sub, Mul), or with a constant (Div only by
    /// one); constants fold.
    fn import_arithmetic(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        let op = node.op_type.as_str();
        let map =
            |t: &Tensor, f: &dyn Fn(f32) -> f32| Tensor::new(t.shape.clone(), t.data.iter().map(|&v| f(v)).collect());
        match (a, b) {
            (Value::Const(x), Value::Const(y)) => {
                let folded = combine(&x, &y, shape, |u, v| match op {
                    "Sub" => u - v,
                    "Mul" => u * v,
                    _ => u / v,
                });
                self.set_output(node, Value::Const(folded))
            }
            (Value::Node(x), Value::Node(y)) => match op {
                "Sub" => self.add_node(node, Op::Sub, vec![x, y], shape),
                "Mul" => self.add_node(node, Op::Mul, vec![x, y], shape),
                _ => self.add_node(node, Op::Div, vec![x, y], shape),
            },
            (Value::Node(x), Value::Const(c)) => match op {
                "Sub" => self.add_node(node, Op::AddConst { constant: map(&c, &|v| -v) }, vec![x], shape),
                "Mul" => self.add_node(node, Op::MulConst { constant: c }, vec![x], shape),
                _ if c.data.contains(&0.0) => Err(self.unsupported(node, "division by a constant that holds a zero")),
                _ => self.add_node(node, Op::MulConst { constant: map(&c, &|v| 1.0 / v) }, vec![x], shape),
            },
            (Value::Const(c), Value::Node(x)) => match op {
                "Mul" => self.add_node(node, Op::MulConst { constant: c }, vec![x], shape),
                "Sub" => {
                    // c - x = (-1) · x + c
                    let negated = self.intermediate(node, "neg", negation(), vec![x], self.nodes[x].shape.clone());
                    self.add_node(node, Op::AddConst { constant: c }, vec![negated], shape)
                }
                _ => Err(self.unsupported(node, "division by a computed value")),
            },
        }
    }

    /// Appends a node that only feeds the next one of the same ONNX node; returns its id.
    fn intermediate(
        &mut self,
        node: &pb::NodeProto,
        part: &str,
        op: Op,
        inputs: Vec<usize>,
        shape: Vec<usize>,
    ) -> usize {
        let name = format!("{}:{part}", node_name(node));
        self.push(name.clone(), name, op, inputs, shape);
        self.nodes.len() - 1
    }

    fn import_sum(&mut self, node: &pb::NodeProto) -> Result<()> {
        let inputs = self.all_inputs(node)?;
        let shape = self.broadcast_inputs(node, &inputs)?;
        let mut constant: Option<Tensor> = None;
        let mut computed: Option<usize> = None;
        for (i, v) in inputs.into_iter().enumerate() {
            match v {
                Value::Const(t) => {
                    constant = Some(match constant {
                        None => t,
                        Some(c) => {
                            let out = broadcast_shape(&c.shape, &t.shape).expect("checked");
                            combine(&c, &t, out, |a, b| a + b)
                        }
                    })
                }
                Value::Node(id) => {
                    computed = Some(match computed {
                        None => id,
                        Some(acc) => {
                            let s = broadcast_shape(&self.nodes[acc].shape, &self.nodes[id].shape).expect("checked");
                            self.intermediate(node, &format!("sum{i}"), Op::Add, vec![acc, id], s)
                        }
                    })
                }
            }
        }
        match (computed, constant) {
            (None, Some(c)) => self.set_output(node, Value::Const(c)),
            (Some(acc), Some(c)) => self.add_node(node, Op::AddConst { constant: c }, vec![acc], shape),
            (Some(acc), None) => {
                self.rename_last(node, acc);
                self.set_output(node, Value::Node(acc))
            }
            (None, None) => Err(self.malformed(format!("Sum '{}' has no input", node_name(node)))),
        }
    }

    /// Gives the ONNX node's name to the node that computes its output (a Sum of one input is
    /// that input: nothing to rename then).
    fn rename_last(&mut self, node: &pb::NodeProto, id: usize) {
        if self.nodes[id].name.starts_with(&format!("{}:", node_name(node))) {
            self.nodes[id].name = node_name(node);
        }
    }

    fn import_extremum(&mut self, node: &pb::NodeProto) -> Result<()> {
        let inputs = self.all_inputs(node)?;
        let min = node.op_type == "Min";
        let shape = self.broadcast_inputs(node, &inputs)?;
        let (mut ids, mut constants) = (Vec::new(), Vec::new());
        for v in inputs {
            match v {
                Value::Node(id) => ids.push(id),
                Value::Const(t) => constants.push(t),
            }
        }
        if ids.is_empty() {
            let pick = |a: f32, b: f32| if min { a.min(b) } else { a.max(b) };
            let len: usize = shape.iter().product();
            let maps: Vec<Vec<usize>> = constants.iter().map(|t| broadcast_indices(&t.shape, &shape)).collect();
            let data = (0..len)
                .map(|o| constants.iter().zip(&maps).map(|(t, m)| t.data[m[o]]).reduce(pick).unwrap_or(0.0))
                .collect();
            return self.set_output(node, Value::Const(Tensor::new(shape, data)));
        }
        self.add_node(node, Op::Extremum { min, constants }, ids, shape)
    }

    fn import_clip(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let bound = |i: usize, name: &str| -> Result<Option<Tensor>> {
            match self.input(node, i)? {
                Some(Value::Const(t)) => Ok(Some(t)),
                Some(Value::Node(_)) => Err(self.unsupported(node, format!("the {name} bound must be a constant"))),
                None => Ok(attr_float(node, name).map(|v| Tensor::new(vec![], vec![v]))),
            }
        };
        let (lo, hi) = (bound(1, "min")?, bound(2, "max")?);
        let shape = self.nodes[x].shape.clone();
        let after_lo = match lo {
            Some(lo) if hi.is_some() => {
                self.intermediate(node, "min", Op::Extremum { min: false, constants: vec![lo] }, vec![x], shape.clone())
            }
            Some(lo) => return self.add_node(node, Op::Extremum { min: false, constants: vec![lo] }, vec![x], shape),
            None => x,
        };
        match hi {
            Some(hi) => self.add_node(node, Op::Extremum { min: true, constants: vec![hi] }, vec![after_lo], shape),
            None => self.add_node(node, Op::Reshape, vec![x], shape),
        }
    }

    /// Neg is `(-1) · x`; Abs is `max(x, -x)`.
    fn import_neg_abs(&mut self, node: &pb::NodeProto) -> Result<()> {
        let abs = node.op_type == "Abs";
        let x = match self.required_input(node, 0)? {
            Value::Const(mut t) => {
                t.data.iter_mut().for_each(|v| *v = if abs { v.abs() } else { -*v });
                return self.set_output(node, Value::Const(t));
            }
            Value::Node(x) => x,
        };
        let shape = self.nodes[x].shape.clone();
        if !abs {
            return self.add_node(node, negation(), vec![x], shape);
        }
        let negated = self.intermediate(node, "neg", negation(), vec![x], shape.clone());
        self.add_node(node, Op::Extremum { min: false, constants: Vec::new() }, vec![x, negated], shape)
    }

    /// LeakyRelu and PRelu: `max(x, 0) + slope · min(x, 0)`, for any slope.
    fn import_leaky(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let slope = if node.op_type == "LeakyRelu" {
            Tensor::new(vec![], vec![attr_float(node, "alpha").unwrap_or(0.01)])
        } else {
            match self.required_input(node, 1)? {
                Value::Const(t) => t,
                Value::Node(_) => return Err(self.unsupported(node, "the slope must be a constant")),
            }
        };
        let shape = self.nodes[x].shape.clone();
        if broadcast_shape(&slope.shape, &shape).as_deref() != Some(&shape[..]) {
            return Err(self.unsupported(node, format!("slope {:?} does not broadcast to {shape:?}", slope.shape)));
        }
        let zero = || vec![Tensor::new(vec![], vec![0.0])];
        let positive = self.intermediate(node, "pos", Op::Relu, vec![x], shape.clone());
        let negative =
            self.intermediate(node, "neg", Op::Extremum { min: true, constants: zero() }, vec![x], shape.clone());
        let scaled = self.intermediate(node, "scaled", Op::MulConst { constant: slope }, vec![negative], shape.clone());
        self.add_node(node, Op::Add, vec![positive, scaled], shape)
    }

    fn import_reduce(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.required_input(node, 0)?;
        let shape = self.shape_of(&value);
        let rank = shape.len();
        let keepdims = attr_int(node, "keepdims").unwrap_or(1) != 0;
        let axes = self.ints_input_or_attr(node, 1, "axes")?.unwrap_or_default();
        let axes: Vec<usize> = if axes.is_empty() {
            if attr_int(node, "noop_with_empty_axes").unwrap_or(0) != 0 {
                return self.set_output(node, value);
            }
            (0..rank).collect()
        } else {
            self.axes(node, &axes, rank)?
        };
        let (groups, out_full) = reduce_groups(&shape, &axes);
        let out_shape: Vec<usize> = if keepdims {
            out_full.clone()
        } else {
            (0..rank).filter(|a| !axes.contains(a)).map(|a| shape[a]).collect()
        };
        let op = node.op_type.as_str();
        match value {
            Value::Const(t) => {
                let fold = |g: &Vec<usize>| {
                    let values = g.iter().map(|&i| t.data[i]);
                    match op {
                        "ReduceMax" => values.fold(f32::NEG_INFINITY, f32::max),
                        "ReduceMin" => values.fold(f32::INFINITY, f32::min),
                        "ReduceMean" => values.sum::<f32>() / g.len() as f32,
                        _ => values.sum::<f32>(),
                    }
                };
                let data = groups.iter().map(fold).collect();
                self.set_output(node, Value::Const(Tensor::new(out_shape, data)))
            }
            Value::Node(id) => {
                let reduce = match op {
                    "ReduceMax" | "ReduceMin" => Op::ReduceMax { groups, min: op == "ReduceMin" },
                    _ => Op::Reduce { groups, mean: op == "ReduceMean" },
                };
                self.add_node(node, reduce, vec![id], out_shape)
            }
        }
    }

    /// Softmax and LogSoftmax along one axis (from opset 13; before, over all axes from `axis`
    /// on, as a 2-D `[outer, inner]` view): with `d = x - max(x)`, `e^d / Σ e^d` and
    /// `d - ln Σ e^d`. The exponential and the logarithm are table lookups; the maximum makes
    /// every `d ≤ 0` and the sum at least 1.
    fn import_softmax(&mut self, node: &pb::NodeProto) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input must be computed"));
        };
        let shape = self.nodes[x].shape.clone();
        let rank = shape.len();
        let legacy = self.opset < 13;
        let axis = attr_int(node, "axis").unwrap_or(if legacy { 1 } else { -1 });
        let a = movement::axis(axis, rank).map_err(|e| self.unsupported(node, e))?;
        let (x, view, a) = if legacy && (rank != 2 || a != 1) {
            let view = vec![shape[..a].iter().product(), shape[a..].iter().product()];
            (self.intermediate(node, "2d", Op::Reshape, vec![x], view.clone()), view, 1)
        } else {
            (x, shape.clone(), a)
        };
        let (groups, reduced) = reduce_groups(&view, &[a]);
        let max = self.intermediate(
            node,
            "max",
            Op::ReduceMax { groups: groups.clone(), min: false },
            vec![x],
            reduced.clone(),
        );
        let shifted = self.intermediate(node, "shifted", Op::Sub, vec![x, max], view.clone());
        let exp = self.intermediate(node, "exp", Op::Lookup { func: Function::Exp }, vec![shifted], view.clone());
        let sum = self.intermediate(node, "sum", Op::Reduce { groups, mean: false }, vec![exp], reduced.clone());
        let (op, inputs) = if node.op_type == "Softmax" {
            (Op::Div, vec![exp, sum])
        } else {
            let log = self.intermediate(node, "log", Op::Lookup { func: Function::Log }, vec![sum], reduced);
            (Op::Sub, vec![shifted, log])
        };
        if view == shape {
            return self.add_node(node, op, inputs, shape);
        }
        let result = self.intermediate(node, "result", op, inputs, view);
        self.add_node(node, Op::Reshape, vec![result], shape)
    }

    fn import_add(&mut self, node: &pb::NodeProto) -> Result<()> {
        let (a, b) = (self.required_input(node, 0)?, self.required_input(node, 1)?);
        let shape = self.broadcast_inputs(node, &[a.clone(), b.clone()])?;
        match (a, b) {
            (Value::Node(x), Value::Const(c)) | (Value::Const(c), Value::Node(x)) => {
                self.add_node(node, Op::AddConst { constant: c }, vec![x], shape)
            }
            (Value::Node(x), Value::Node(y)) => self.add_node(node, Op::Add, vec![x, y], shape),
            (Value::Const(x), Value::Const(y)) => {
                self.set_output(node, Value::Const(combine(&x, &y, shape, |u, v| u + v)))
            }
        }
    }
}

/// Folds an element-wise operation of two constants, broadcast to `shape`.
fn combine(a: &Tensor, b: &Tensor, shape: Vec<usize>, f: impl Fn(f32, f32) -> f32) -> Tensor {
    let (ia, ib) = (broadcast_indices(&a.shape, &shape), broadcast_indices(&b.shape, &shape));
    let data = ia.iter().zip(&ib).map(|(&i, &j)| f(a.data[i], b.data[j])).collect();
    Tensor::new(shape, data)
}

/// `(-1) · x`.
fn negation() -> Op {
    Op::MulConst { constant: Tensor::new(vec![], vec![-1.0]) }
}

/// `a[c] · x + b[c]` for each channel `c` of an `[N, C, spatial...]` tensor of `shape`: a
/// depthwise 1×…×1 convolution.
fn channel_affine(shape: &[usize], a: Vec<f32>, b: Vec<f32>) -> Op {
    let (c, spatial) = (shape[1], &shape[2..]);
    let ones = vec![1; spatial.len()];
    let zeros = vec![0; spatial.len()];
    let window = Window::new(spatial, &ones, &ones, &zeros, &zeros, &ones).expect("a 1×1 window fits any input");
    let weight = Tensor::new([vec![c, 1], ones].concat(), a);
    Op::Conv { weight, bias: Some(Tensor::new(vec![c], b)), group: c, window }
}

/// For reducing `axes` of a tensor of `shape`: the flat positions of each output element's
/// group, and the output shape with the reduced axes kept as 1.
fn reduce_groups(shape: &[usize], axes: &[usize]) -> (Vec<Vec<usize>>, Vec<usize>) {
    let rank = shape.len();
    let out_full: Vec<usize> = (0..rank).map(|a| if axes.contains(&a) { 1 } else { shape[a] }).collect();
    let mut groups = vec![Vec::new(); out_full.iter().product()];
    for i in 0..shape.iter().product() {
        let (mut rest, mut o, mut stride) = (i, 0, 1);
        for a in (0..rank).rev() {
            let c = rest % shape[a];
            rest /= shape[a];
            if !axes.contains(&a) {
                o += c * stride;
                stride *= shape[a];
            }
        }
        groups[o].push(i);
    }
    (groups, out_full)
}

fn node_name(node: &pb::NodeProto) -> String {
    if node.name.is_empty() {
        format!("{}({})", node.op_type, node.output.first().map(String::as_str).unwrap_or("?"))
    } else {
        node.name.clone()
    }
}

fn attr<'p>(node: &'p pb::NodeProto, name: &str) -> Option<&'p pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn attr_int(node: &pb::NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

fn attr_float(node: &pb::NodeProto, name: &str) -> Option<f32> {
    attr(node, name).map(|a| a.f)
}

fn normalize_axis(axis: i64, rank: usize) -> Option<usize> {
    let axis = if axis < 0 { axis + rank as i64 - 1 } else { axis };
    (0..rank as i64).contains(&axis).then_some(axis as usize)
}

fn input_shape(input: &pb::ValueInfoProto) -> std::result::Result<Vec<usize>, String> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Type;
    let Some(Type::TensorType(tensor)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("input '{}' is not a tensor", input.name));
    };
    if let Ok(dt) = pb::tensor_proto::DataType::try_from(tensor.elem_type) {
        let datum: std::result::Result<DatumType, _> = dt.try_into();
        if !matches!(datum, Ok(DatumType::F32 | DatumType::F64 | DatumType::F16)) {
            return Err(format!("input '{}' has element type {dt:?}; only float inputs are supported", input.name));
        }
    }
    let shape = tensor.shape.as_ref().ok_or_else(|| format!("input '{}' has no shape", input.name))?;
    Ok(shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Dim::DimValue(v)) if *v > 0 => *v as usize,
            // A symbolic dimension is the batch: we prove one sample at a time.
            _ => 1,
        })
        .collect())
}

fn reshape_target(shape: &[usize], target: &[f32]) -> Option<Vec<usize>> {
    let total: usize = shape.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        let t = t as i64;
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 => out.push(*shape.get(i)?),
            t if t > 0 => out.push(t as usize),
            _ => return None,
        }
    }
    let known: usize = out.iter().product();
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return None;
        }
        out[i] = total / known;
    }
    (out.iter().product::<usize>() == total).then_some(out)
}

fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut data = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = t.data[i * c + j];
        }
    }
    Tensor::new(vec![c, r], data)
}

/// The per-channel `x · scale + shift` of a depthwise 1×1 convolution (what BatchNormalization
/// imports as), or `None` for any other op.
fn per_channel_affine(op: &Op) -> Option<(Vec<f32>, Vec<f32>)> {
    let Op::Conv { weight, bias, group, window } = op else { return None };
    let c = weight.shape[0];
    let one_by_one = window.kernel_len() == 1
        && window.input == window.output
        && window.strides.iter().all(|&s| s == 1)
        && window.pads_begin.iter().all(|&p| p == 0);
    (one_by_one && *group == c && weight.len() == c)
        .then(|| (weight.data.clone(), bias.as_ref().map(|b| b.data.clone()).unwrap_or_else(|| vec![0.0; c])))
}

/// Folds a constant added right after a bias-less Dense into its bias, and a per-channel scale
/// into the convolution before it, and drops nodes that no output depends on.
fn simplify(mut graph: Graph) -> Graph {
    let consumers = |g: &Graph, id: usize| {
        g.nodes.iter().filter(|n| n.inputs.contains(&id)).count() + g.outputs.iter().filter(|&&o| o == id).count()
    };
    for id in 0..graph.nodes.len() {
        let Op::AddConst { constant } = &graph.nodes[id].op else { continue };
        let src = graph.nodes[id].inputs[0];
        let fits = matches!(&graph.nodes[src].op, Op::Dense { bias: None, .. })
            && graph.nodes[src].shape == graph.nodes[id].shape
            && consumers(&graph, src) == 1;
        if fits {
            let constant = constant.clone();
            if let Op::Dense { bias, .. } = &mut graph.nodes[src].op {
                *bias = Some(constant);
            }
            graph.nodes[id].op = Op::Reshape;
            graph.nodes[src].value = graph.nodes[id].value.clone();
        }
    }
    // A per-channel scale (a BatchNormalization) right after a convolution that nothing else
    // reads is folded into the convolution's weights and bias: one rescale instead of two.
    for id in 0..graph.nodes.len() {
        let Some((scale, shift)) = per_channel_affine(&graph.nodes[id].op) else { continue };
        let src = graph.nodes[id].inputs[0];
        if !matches!(graph.nodes[src].op, Op::Conv { .. }) || consumers(&graph, src) != 1 {
            continue;
        }
        if let Op::Conv { weight, bias, .. } = &mut graph.nodes[src].op {
            let m = weight.shape[0];
            if m != scale.len() {
                continue;
            }
            let per = weight.len() / m;
            weight.data.iter_mut().enumerate().for_each(|(i, w)| *w *= scale[i / per]);
            let old = bias.take().map(|b| b.data).unwrap_or_else(|| vec![0.0; m]);
            *bias = Some(Tensor::new(vec![m], (0..m).map(|c| old[c] * scale[c] + shift[c]).collect()));
        }
        graph.nodes[id].op = Op::Reshape;
        graph.nodes[src].value = graph.nodes[id].value.clone();
    }
    // Pass-through reshapes keep their shape; drop those whose shape equals their input's.
    let mut forward: Vec<usize> = (0..graph.nodes.len()).collect();
    for id in 0..graph.nodes.len() {
        if graph.nodes[id].op == Op::Reshape {
            let src = forward[graph.nodes[id].inputs[0]];
            if graph.nodes[src].shape == graph.nodes[id].shape {
                forward[id] = src;
            }
        }
    }
    for node in &mut graph.nodes {
        node.inputs.iter_mut().for_each(|i| *i = forward[*i]);
    }
    graph.outputs.iter_mut().for_each(|o| *o = forward[*o]);
    // Keep the nodes the outputs need (and every input, so input numbering stays), in order.
    let mut live = vec![false; graph.nodes.len()];
    let mut stack: Vec<usize> = graph.outputs.clone();
    stack.extend(graph.nodes.iter().enumerate().filter(|(_, n)| matches!(n.op, Op::Input { .. })).map(|(i, _)| i));
    while let Some(id) = stack.pop() {
        if !std::mem::replace(&mut live[id], true) {
            stack.extend(graph.nodes[id].inputs.iter().copied());
        }
    }
    let mut remap = vec![usize::MAX; graph.nodes.len()];
    let mut nodes = Vec::new();
    for (id, node) in graph.nodes.into_iter().enumerate() {
        if live[id] {
            remap[id] = nodes.len();
            nodes.push(node);
        }
    }
    for node in &mut nodes {
        node.inputs.iter_mut().for_each(|i| *i = remap[*i]);
    }
    Graph { nodes, outputs: graph.outputs.iter().map(|&o| remap[o]).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_targets_resolve_zero_and_minus_one() {
        assert_eq!(reshape_target(&[1, 4, 4], &[1.0, -1.0]), Some(vec![1, 16]));
        assert_eq!(reshape_target(&[2, 8], &[0.0, 2.0, 4.0]), Some(vec![2, 2, 4]));
        assert_eq!(reshape_target(&[2, 8], &[3.0, -1.0]), None);
    }
}
