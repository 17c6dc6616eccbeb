//! ONNX import: reads a model with tract-onnx's protobuf parser and translates the nodes we can
//! prove into our graph IR, folding constants and refusing anything else by node name and op type.

use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use tract_onnx::pb;
use tract_onnx::prelude::{DatumType, Framework, TractError};

use super::graph::{broadcast_indices, broadcast_shape, Graph, Node, Op, Tensor, Window};
use crate::error::ImportError;
use crate::error::{Error, Result};
use crate::ops::{input, movement, onnx_ops, OnnxOp};

mod passes;

/// The import table by op type.
static IMPORTS: LazyLock<HashMap<&'static str, &'static OnnxOp>> =
    LazyLock::new(|| onnx_ops().map(|op| (op.op_type, op)).collect());

/// The ONNX operators the import understands, as errors list them: the import table's op types
/// (what each supports of its op: `zkinfer ops`, the README, and the error's detail when it
/// refuses a case).
pub static SUPPORTED_OPS: LazyLock<String> =
    LazyLock::new(|| onnx_ops().map(|op| op.op_type).collect::<Vec<_>>().join(", "));

/// A value flowing between ONNX nodes: a constant we fold, or the output of one of our nodes.
#[derive(Clone, Debug)]
pub(crate) enum Value {
    /// A constant, folded at import.
    Const(Tensor),
    /// The output of the node at this index.
    Node(usize),
}

/// Reads an ONNX file into our IR. Inputs with a symbolic (batch) dimension get size 1.
pub fn import_onnx(path: &Path) -> Result<Graph> {
    import_onnx_with_shapes(path, None)
}

/// The most values one model input may hold (2^24): far beyond what a circuit proves here, and
/// a bound on what a damaged shape can make the importer allocate.
pub const MAX_INPUT_ELEMENTS: usize = 1 << 24;

/// A model file that is no model: what was wrong, and the parser's error when it gave one.
fn malformed_onnx(path: &Path, reason: String, source: Option<TractError>) -> Error {
    ImportError::MalformedOnnx { path: path.to_path_buf(), reason, source: source.map(Into::into) }.into()
}

/// The model's protobuf and its graph.
fn parse_proto(path: &Path) -> Result<pb::ModelProto> {
    let proto = tract_onnx::onnx()
        .proto_model_for_path(path)
        .map_err(|e| malformed_onnx(path, "its protobuf does not parse".into(), Some(e)))?;
    if proto.graph.is_none() {
        return Err(malformed_onnx(path, "the file holds no graph".into(), None));
    }
    Ok(proto)
}

/// [`import_onnx`] with the inputs' shapes given (as `settings.json` records them): each must
/// equal the model's declared shape but for its symbolic (or zero) dimensions, which take the
/// given sizes (a batch taken from the data).
pub fn import_onnx_with_shapes(path: &Path, shapes: Option<&[Vec<usize>]>) -> Result<Graph> {
    if !path.is_file() {
        return Err(Error::io("read", path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let proto = parse_proto(path)?;
    let graph = proto.graph.as_ref().expect("parse_proto checks the graph");
    let model_dir = path.parent().and_then(|d| d.to_str());
    // The default domain's opset decides a few semantics (Softmax's axis).
    let opset = proto
        .opset_import
        .iter()
        .filter(|o| o.domain.is_empty() || o.domain == "ai.onnx")
        .map(|o| o.version)
        .max()
        .unwrap_or(LATEST_OPSET);
    Importer::new(path, graph, model_dir, opset, shapes)?.run(graph)
}

/// The declared shape of each model input: `None` for a symbolic (or zero) dimension.
pub fn declared_input_shapes(path: &Path) -> Result<Vec<Vec<Option<usize>>>> {
    let proto = parse_proto(path)?;
    let graph = proto.graph.as_ref().expect("parse_proto checks the graph");
    let initialized: std::collections::HashSet<&str> = graph.initializer.iter().map(|i| i.name.as_str()).collect();
    graph
        .input
        .iter()
        .filter(|i| !initialized.contains(i.name.as_str()))
        .map(|i| input_shape(i).map_err(|reason| malformed_onnx(path, reason, None)))
        .collect()
}

/// The shape of each input for data of `lengths` values (one per input): a single symbolic
/// dimension takes the size that makes the data fit (a batch of several samples); without one,
/// or when the data does not divide, the declared shape with symbolic dimensions of 1.
pub fn shapes_for_data(declared: &[Vec<Option<usize>>], lengths: &[usize]) -> Vec<Vec<usize>> {
    declared
        .iter()
        .enumerate()
        .map(|(i, dims)| {
            let known: usize = dims.iter().map(|d| d.unwrap_or(1)).product();
            let symbolic = dims.iter().filter(|d| d.is_none()).count();
            let length = lengths.get(i).copied().unwrap_or(known);
            let free = (symbolic == 1 && known > 0 && length % known == 0 && length > 0).then(|| length / known);
            dims.iter().map(|d| d.unwrap_or_else(|| free.unwrap_or(1))).collect()
        })
        .collect()
}

/// The opset assumed for a model that declares none.
const LATEST_OPSET: i64 = 21;

/// Translates one ONNX graph, node by node; each family's import is an `impl Importer` block
/// in its module of [`crate::ops`].
pub(crate) struct Importer<'a> {
    path: &'a Path,
    /// The default domain's opset.
    pub(crate) opset: i64,
    /// Every ONNX value seen so far.
    pub(crate) values: HashMap<String, Value>,
    /// The nodes made so far.
    pub(crate) nodes: Vec<Node>,
}

impl<'a> Importer<'a> {
    fn new(
        path: &'a Path,
        graph: &pb::GraphProto,
        model_dir: Option<&str>,
        opset: i64,
        shapes: Option<&[Vec<usize>]>,
    ) -> Result<Self> {
        let mut importer = Importer { path, opset, values: HashMap::new(), nodes: Vec::new() };
        let provider = tract_onnx::onnx().provider;
        for init in &graph.initializer {
            let tensor = tract_onnx::tensor::load_tensor(&*provider, init, model_dir)
                .map_err(|e| importer.malformed_by(format!("initializer '{}'", init.name), e))?;
            importer.values.insert(init.name.clone(), Value::Const(importer.to_f32(&init.name, &tensor)?));
        }
        let mut index = 0;
        for input in &graph.input {
            if importer.values.contains_key(&input.name) {
                continue;
            }
            let declared = input_shape(input).map_err(|reason| importer.malformed(reason))?;
            let shape = match shapes.and_then(|s| s.get(index)) {
                None => declared.iter().map(|d| d.unwrap_or(1)).collect(),
                Some(given) => {
                    let fits = given.len() == declared.len()
                        && given.iter().zip(&declared).all(|(&g, d)| d.is_none_or(|d| d == g) && g > 0);
                    if !fits {
                        return Err(ImportError::UnsupportedModel(format!(
                            "input '{}' is declared {} but the settings give {given:?}; run `zkinfer gen-settings` again",
                            input.name,
                            describe_dims(&declared)
                        )).into());
                    }
                    given.clone()
                }
            };
            // A shape from a damaged file must not ask for memory no machine has.
            let elements = shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
            if elements.is_none_or(|n| n > MAX_INPUT_ELEMENTS) {
                return Err(ImportError::UnsupportedModel(format!(
                    "input '{}' of shape {shape:?} holds more than {MAX_INPUT_ELEMENTS} values, more than a circuit can \
                     take in; check the model's input shape and settings.json's input_shapes",
                    input.name
                ))
                .into());
            }
            importer.push(input.name.clone(), input.name.clone(), Op::Input(input::Input { index }), vec![], shape);
            index += 1;
        }
        Ok(importer)
    }

    pub(crate) fn malformed(&self, reason: String) -> Error {
        malformed_onnx(self.path, reason, None)
    }

    /// A malformed model, with the parser's error as the cause.
    pub(crate) fn malformed_by(&self, reason: String, cause: TractError) -> Error {
        malformed_onnx(self.path, reason, Some(cause))
    }

    pub(crate) fn to_f32(&self, name: &str, tensor: &tract_onnx::prelude::Tensor) -> Result<Tensor> {
        let cast = tensor
            .cast_to::<f32>()
            .map_err(|e| self.malformed_by(format!("tensor '{name}' of type {:?}", tensor.datum_type()), e))?;
        let view = cast.to_plain_array_view::<f32>().expect("cast to f32 gives f32");
        Ok(Tensor::new(tensor.shape().to_vec(), view.iter().copied().collect()))
    }

    /// Appends a node named `name` whose output is the ONNX value `output`.
    pub(crate) fn push(&mut self, name: String, output: String, op: Op, inputs: Vec<usize>, shape: Vec<usize>) {
        self.nodes.push(Node { name, op, inputs, shape, value: output.clone() });
        self.values.insert(output, Value::Node(self.nodes.len() - 1));
    }

    fn run(mut self, graph: &pb::GraphProto) -> Result<Graph> {
        for node in &graph.node {
            self.import_node(node)?;
        }
        let mut outputs = Vec::new();
        for out in &graph.output {
            match self.values.get(&out.name).cloned() {
                Some(Value::Node(id)) => outputs.push(id),
                // An output that depends on no input (a graph of constants only) is proven as
                // the constant it is: a node of constants, fixed in the circuit.
                Some(Value::Const(t)) => {
                    let name = format!("{}:constant", out.name);
                    self.push(name, out.name.clone(), movement::constants(&t), vec![], t.shape.clone());
                    outputs.push(self.nodes.len() - 1);
                }
                None => return Err(self.malformed(format!("output '{}' is produced by no node", out.name))),
            }
        }
        let graph = Graph { nodes: self.nodes, outputs };
        Ok(passes::simplify(graph))
    }

    pub(crate) fn unsupported(&self, node: &pb::NodeProto, detail: impl Into<String>) -> Error {
        let detail = detail.into();
        ImportError::UnsupportedOp {
            node: node_name(node),
            op_type: node.op_type.clone(),
            detail: if detail.is_empty() { detail } else { format!(": {detail}") },
            supported: SUPPORTED_OPS.as_str(),
        }
        .into()
    }

    pub(crate) fn input(&self, node: &pb::NodeProto, i: usize) -> Result<Option<Value>> {
        match node.input.get(i).filter(|n| !n.is_empty()) {
            None => Ok(None),
            Some(name) => self.values.get(name).cloned().map(Some).ok_or_else(|| {
                self.malformed(format!("node '{}' reads '{name}', which nothing produces", node_name(node)))
            }),
        }
    }

    pub(crate) fn required_input(&self, node: &pb::NodeProto, i: usize) -> Result<Value> {
        self.input(node, i)?.ok_or_else(|| {
            self.malformed(format!("node '{}' ({}) lacks its input #{i}", node_name(node), node.op_type))
        })
    }

    pub(crate) fn shape_of(&self, value: &Value) -> Vec<usize> {
        match value {
            Value::Const(t) => t.shape.clone(),
            Value::Node(id) => self.nodes[*id].shape.clone(),
        }
    }

    /// Every input of a variadic node (Concat, Sum, Max, Min).
    pub(crate) fn all_inputs(&self, node: &pb::NodeProto) -> Result<Vec<Value>> {
        (0..node.input.len()).map(|i| self.required_input(node, i)).collect()
    }

    /// The shape numpy broadcasting gives the inputs together; refuses shapes that do not broadcast.
    pub(crate) fn broadcast_inputs(&self, node: &pb::NodeProto, inputs: &[Value]) -> Result<Vec<usize>> {
        let shapes: Vec<Vec<usize>> = inputs.iter().map(|v| self.shape_of(v)).collect();
        shapes
            .iter()
            .try_fold(Vec::new(), |acc, s| broadcast_shape(&acc, s))
            .ok_or_else(|| self.unsupported(node, format!("shapes {shapes:?} do not broadcast")))
    }

    /// Axes in `[-rank, rank)` as positions.
    pub(crate) fn axes(&self, node: &pb::NodeProto, axes: &[i64], rank: usize) -> Result<Vec<usize>> {
        axes.iter()
            .map(|&a| movement::axis(a, rank))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.unsupported(node, e))
    }

    pub(crate) fn output_name(&self, node: &pb::NodeProto) -> Result<String> {
        node.output.first().cloned().ok_or_else(|| self.malformed(format!("node '{}' has no output", node_name(node))))
    }

    pub(crate) fn set_output(&mut self, node: &pb::NodeProto, value: Value) -> Result<()> {
        let name = self.output_name(node)?;
        self.values.insert(name, value);
        Ok(())
    }

    pub(crate) fn add_node(
        &mut self,
        node: &pb::NodeProto,
        op: Op,
        inputs: Vec<usize>,
        shape: Vec<usize>,
    ) -> Result<()> {
        let output = self.output_name(node)?;
        self.push(node_name(node), output, op, inputs, shape);
        Ok(())
    }

    /// Appends a node that only feeds the next one of the same ONNX node; returns its id.
    pub(crate) fn intermediate(
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

    /// Gives the ONNX node's name to the node that computes its output (a Sum of one input is
    /// that input: nothing to rename then).
    pub(crate) fn rename_last(&mut self, node: &pb::NodeProto, id: usize) {
        if self.nodes[id].name.starts_with(&format!("{}:", node_name(node))) {
            self.nodes[id].name = node_name(node);
        }
    }

    /// The computed `[N, C, spatial...]` input of a convolution or pooling node.
    pub(crate) fn spatial_input(&self, node: &pb::NodeProto) -> Result<(usize, Vec<usize>)> {
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
    pub(crate) fn window(&self, node: &pb::NodeProto, spatial: &[usize], kernel: &[usize]) -> Result<Window> {
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

    /// A constant integer list: input `i` (newer opsets) as a constant.
    pub(crate) fn const_ints(&self, node: &pb::NodeProto, i: usize) -> Result<Vec<i64>> {
        match self.required_input(node, i)? {
            Value::Const(t) => Ok(t.data.iter().map(|&v| v as i64).collect()),
            Value::Node(_) => Err(self.unsupported(node, format!("input #{i} must be a constant"))),
        }
    }

    /// An integer list given as input `i` (newer opsets) or as attribute `name` (older ones).
    pub(crate) fn ints_input_or_attr(&self, node: &pb::NodeProto, i: usize, name: &str) -> Result<Option<Vec<i64>>> {
        if self.input(node, i)?.is_some() {
            return self.const_ints(node, i).map(Some);
        }
        Ok(attr(node, name).map(|a| a.ints.clone()))
    }

    /// Imports one node through the import table.
    fn import_node(&mut self, node: &pb::NodeProto) -> Result<()> {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            return Err(self.unsupported(node, format!("custom domain '{}'", node.domain)));
        }
        match IMPORTS.get(node.op_type.as_str()) {
            Some(op) => (op.import)(self, node),
            None => Err(self.unsupported(node, "")),
        }
    }
}

/// Folds an element-wise operation of two constants, broadcast to `shape`.
pub(crate) fn combine(a: &Tensor, b: &Tensor, shape: Vec<usize>, f: impl Fn(f32, f32) -> f32) -> Tensor {
    let (ia, ib) = (broadcast_indices(&a.shape, &shape), broadcast_indices(&b.shape, &shape));
    let data = ia.iter().zip(&ib).map(|(&i, &j)| f(a.data[i], b.data[j])).collect();
    Tensor::new(shape, data)
}

pub(crate) fn node_name(node: &pb::NodeProto) -> String {
    if node.name.is_empty() {
        format!("{}({})", node.op_type, node.output.first().map(String::as_str).unwrap_or("?"))
    } else {
        node.name.clone()
    }
}

pub(crate) fn attr<'p>(node: &'p pb::NodeProto, name: &str) -> Option<&'p pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

pub(crate) fn attr_int(node: &pb::NodeProto, name: &str) -> Option<i64> {
    attr(node, name).map(|a| a.i)
}

pub(crate) fn attr_float(node: &pb::NodeProto, name: &str) -> Option<f32> {
    attr(node, name).map(|a| a.f)
}

/// A declared shape in words: symbolic dimensions as `?`.
fn describe_dims(dims: &[Option<usize>]) -> String {
    let dims: Vec<String> = dims.iter().map(|d| d.map_or("?".into(), |d| d.to_string())).collect();
    format!("[{}]", dims.join(", "))
}

fn input_shape(input: &pb::ValueInfoProto) -> std::result::Result<Vec<Option<usize>>, String> {
    use pb::tensor_shape_proto::dimension::Value as Dim;
    use pb::type_proto::Value as Type;
    let Some(Type::TensorType(tensor)) = input.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(format!("input '{}' is not a tensor", input.name));
    };
    if let Ok(dt) = pb::tensor_proto::DataType::try_from(tensor.elem_type) {
        let datum: std::result::Result<DatumType, _> = dt.try_into();
        // Integers (token ids, indices) and booleans (masks) are values like any other: in fixed
        // point, range-checked.
        let numeric = matches!(
            datum,
            Ok(DatumType::F32
                | DatumType::F64
                | DatumType::F16
                | DatumType::I64
                | DatumType::I32
                | DatumType::I16
                | DatumType::I8
                | DatumType::U8
                | DatumType::U16
                | DatumType::U32
                | DatumType::Bool)
        );
        if !numeric {
            return Err(format!(
                "input '{}' has element type {dt:?}; inputs are float, integer or boolean tensors",
                input.name
            ));
        }
    }
    let shape = tensor.shape.as_ref().ok_or_else(|| format!("input '{}' has no shape", input.name))?;
    Ok(shape
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Dim::DimValue(v)) if *v > 0 => Some(*v as usize),
            // A symbolic (or zero) dimension: a batch, sized by the settings or the data.
            _ => None,
        })
        .collect())
}

pub(crate) fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape[0], t.shape[1]);
    let mut data = vec![0.0; r * c];
    for i in 0..r {
        for j in 0..c {
            data[j * r + i] = t.data[i * c + j];
        }
    }
    Tensor::new(vec![c, r], data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The README's list of supported operators and the import table say the same: every op
    /// the table imports is in the list, once per op type.
    #[test]
    fn the_readme_lists_every_imported_op() {
        let readme = include_str!("../../../README.md");
        let start = readme.find("Supported ONNX operators:").expect("the README lists the supported operators");
        let list = &readme[start..start + readme[start..].find("\n\n").unwrap_or(readme.len() - start)];
        let words: Vec<&str> = list.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        let missing: Vec<&str> = onnx_ops().map(|op| op.op_type).filter(|t| !words.contains(t)).collect();
        assert!(missing.is_empty(), "the README's supported-operator list lacks {missing:?}");
        let mut types: Vec<&str> = onnx_ops().map(|op| op.op_type).collect();
        let all = types.len();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), all, "an op type has two rows in the import table");
    }

    #[test]
    fn a_symbolic_dimension_takes_the_size_the_data_gives() {
        let declared = vec![vec![None, Some(4)], vec![Some(2), Some(3)], vec![None, None]];
        // 3 samples of 4, a fixed input, two symbolic dimensions (ambiguous: 1 each).
        assert_eq!(shapes_for_data(&declared, &[12, 6, 8]), vec![vec![3, 4], vec![2, 3], vec![1, 1]]);
        // Data that does not divide keeps the batch of 1 (and is refused when loaded).
        assert_eq!(shapes_for_data(&declared[..1], &[10]), vec![vec![1, 4]]);
        assert_eq!(describe_dims(&declared[0]), "[?, 4]");
    }

    #[test]
    fn unsupported_ops_are_refused_with_the_supported_list() {
        assert!(SUPPORTED_OPS.starts_with("Gemm, MatMul, Conv"), "{}", *SUPPORTED_OPS);
        assert!(SUPPORTED_OPS.contains("Softmax"));
        assert!(IMPORTS.contains_key("Conv") && !IMPORTS.contains_key("NonZero"));
    }
}
