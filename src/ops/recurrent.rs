//! Recurrent layers, unrolled at import over their (compile-time) sequence length: LSTM, GRU and
//! RNN, forward, reverse or bidirectional, in either layout. Each step is made of the ops the
//! other families prove: the input projections of every step at once (one linear layer with
//! both biases), the recurrent projection of the previous hidden state (a linear layer), the
//! gates' activations (tables, or ReLU), and products and sums of computed tensors. Nothing here
//! reaches the circuit but through those ops.

use tract_onnx::pb;

use super::{activation, arith, extremum, linear, movement, OnnxOp};
use crate::error::Result;
use crate::model::function::Function;
use crate::model::graph::{Op, Tensor};
use crate::model::onnx::{attr, attr_int, transpose, Importer, Value};
use movement::Source;

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp {
        op_type: "LSTM",
        import: |i, n| i.import_recurrent(n, Cell::Lstm),
        note: "unrolled; no peepholes or clip",
    },
    OnnxOp { op_type: "GRU", import: |i, n| i.import_recurrent(n, Cell::Gru), note: "unrolled; no clip" },
    OnnxOp { op_type: "RNN", import: |i, n| i.import_recurrent(n, Cell::Rnn), note: "unrolled; no clip" },
];

/// Which recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Gates i, o, f, c; a cell state beside the hidden one.
    Lstm,
    /// Gates z, r, h.
    Gru,
    /// One gate.
    Rnn,
}

impl Cell {
    /// Gates per step.
    fn gates(self) -> usize {
        match self {
            Cell::Lstm => 4,
            Cell::Gru => 3,
            Cell::Rnn => 1,
        }
    }

    /// The activations a direction uses by default.
    fn default_activations(self) -> &'static [&'static str] {
        match self {
            Cell::Lstm => &["Sigmoid", "Tanh", "Tanh"],
            Cell::Gru => &["Sigmoid", "Tanh"],
            Cell::Rnn => &["Tanh"],
        }
    }
}

/// The geometry of one recurrent node.
struct Dims {
    seq: usize,
    batch: usize,
    hidden: usize,
    /// X is `[batch, seq, input]` (layout 1) instead of `[seq, batch, input]`.
    batch_first: bool,
}

impl Dims {
    /// The row of step `t`, sample `b` in a `[seq, batch, _]` (or batch-first) tensor.
    fn row(&self, t: usize, b: usize) -> usize {
        if self.batch_first {
            b * self.seq + t
        } else {
            t * self.batch + b
        }
    }
}

/// One direction's weights: input weights `[G·H, I]`, recurrent `[G·H, H]`, biases `[2·G·H]`.
struct Direction {
    w: Tensor,
    r: Tensor,
    b: Vec<f32>,
    activations: Vec<Op>,
}

/// A slice of rows of a direction's weights, transposed for a linear layer: rows
/// `[from·H, to·H)` of `t` as `[cols, (to - from)·H]`.
fn gate_weights(t: &Tensor, from: usize, to: usize, hidden: usize) -> Tensor {
    let cols = t.shape[1];
    let rows = Tensor::new(vec![(to - from) * hidden, cols], t.data[from * hidden * cols..to * hidden * cols].to_vec());
    transpose(&rows)
}

impl Importer<'_> {
    /// LSTM, GRU and RNN as their steps, see the module's documentation.
    fn import_recurrent(&mut self, node: &pb::NodeProto, cell: Cell) -> Result<()> {
        let Value::Node(x) = self.required_input(node, 0)? else {
            return Err(self.unsupported(node, "the input sequence must be computed"));
        };
        let shape = self.nodes[x].shape.clone();
        let hidden = attr_int(node, "hidden_size").filter(|&h| h > 0).map(|h| h as usize);
        let batch_first = attr_int(node, "layout").unwrap_or(0) != 0;
        if shape.len() != 3 {
            return Err(self.unsupported(node, format!("the input {shape:?} is not [seq, batch, input]")));
        }
        let (seq, batch) = if batch_first { (shape[1], shape[0]) } else { (shape[0], shape[1]) };
        for unsupported in ["clip"] {
            if attr(node, unsupported).is_some() {
                return Err(self.unsupported(node, format!("the {unsupported} attribute")));
            }
        }
        if attr_int(node, "input_forget").unwrap_or(0) != 0 {
            return Err(self.unsupported(node, "input_forget = 1"));
        }
        let direction =
            attr(node, "direction").map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or("forward".into());
        let reverse: Vec<bool> = match direction.as_str() {
            "forward" => vec![false],
            "reverse" => vec![true],
            "bidirectional" => vec![false, true],
            other => return Err(self.unsupported(node, format!("direction {other}"))),
        };
        let dirs = reverse.len();
        let constant = |importer: &Self, i: usize, name: &str| -> Result<Option<Tensor>> {
            match importer.input(node, i)? {
                None => Ok(None),
                Some(Value::Const(t)) => Ok(Some(t)),
                Some(Value::Node(_)) => Err(importer.unsupported(node, format!("{name} must be a constant"))),
            }
        };
        let g = cell.gates();
        let (w, r) = match (constant(self, 1, "W")?, constant(self, 2, "R")?) {
            (Some(w), Some(r)) => (w, r),
            _ => return Err(self.malformed(format!("{} node lacks W or R", node.op_type))),
        };
        let hidden = hidden.unwrap_or(r.shape.last().copied().unwrap_or(0));
        let input = shape[2];
        if w.shape != [dirs, g * hidden, input] || r.shape != [dirs, g * hidden, hidden] {
            return Err(self.unsupported(
                node,
                format!("W {:?} and R {:?} do not fit {dirs} direction(s) of {g} gates of {hidden}", w.shape, r.shape),
            ));
        }
        let b = constant(self, 3, "B")?
            .unwrap_or_else(|| Tensor::new(vec![dirs, 2 * g * hidden], vec![0.0; dirs * 2 * g * hidden]));
        if b.len() != dirs * 2 * g * hidden {
            return Err(self.unsupported(node, format!("B {:?} does not fit", b.shape)));
        }
        if let Some(Value::Const(lens)) = self.input(node, 4)? {
            if lens.data.iter().any(|&l| l as usize != seq) {
                return Err(self.unsupported(node, "sequence_lens other than the whole sequence"));
            }
        } else if self.input(node, 4)?.is_some() {
            return Err(self.unsupported(node, "computed sequence_lens"));
        }
        if cell == Cell::Lstm
            && self
                .input(node, 7)?
                .is_some_and(|p| !matches!(p, Value::Const(ref t) if t.data.iter().all(|&v| v == 0.0)))
        {
            return Err(self.unsupported(node, "peepholes (P)"));
        }
        let names: Vec<String> = match attr(node, "activations") {
            Some(a) => a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect(),
            None => (0..dirs).flat_map(|_| cell.default_activations().iter().map(|s| s.to_string())).collect(),
        };
        let per_dir = cell.default_activations().len();
        if names.len() != per_dir * dirs {
            return Err(self.unsupported(node, format!("{} activations for {dirs} direction(s)", names.len())));
        }
        let alphas = attr(node, "activation_alpha").map(|a| a.floats.clone()).unwrap_or_default();
        let betas = attr(node, "activation_beta").map(|a| a.floats.clone()).unwrap_or_default();
        let mut activations = Vec::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            let (alpha, beta) = (alphas.get(i).map(|&v| f64::from(v)), betas.get(i).map(|&v| f64::from(v)));
            activations.push(match name.as_str() {
                "Sigmoid" => Op::Lookup(activation::Lookup { func: Function::Sigmoid }),
                "Tanh" => Op::Lookup(activation::Lookup { func: Function::Tanh }),
                "Relu" => Op::Relu(extremum::Relu),
                "HardSigmoid" => Op::Lookup(activation::Lookup {
                    func: Function::HardSigmoid { alpha: alpha.unwrap_or(0.2), beta: beta.unwrap_or(0.5) },
                }),
                other => return Err(self.unsupported(node, format!("the activation {other}"))),
            });
        }
        let dims = Dims { seq, batch, hidden, batch_first };
        let initial = |importer: &Self, i: usize| -> Result<Vec<Option<Value>>> {
            Ok(match importer.input(node, i)? {
                None => vec![None; dirs],
                Some(Value::Const(t)) if t.len() == dirs * batch * hidden => (0..dirs)
                    .map(|d| {
                        let part = t.data[d * batch * hidden..(d + 1) * batch * hidden].to_vec();
                        let zero = part.iter().all(|&v| v == 0.0);
                        (!zero).then(|| Value::Const(Tensor::new(vec![batch, hidden], part)))
                    })
                    .collect(),
                Some(_) => {
                    return Err(
                        importer.unsupported(node, "the initial state must be a constant of [dirs, batch, hidden]")
                    )
                }
            })
        };
        let (h0, c0) = (initial(self, 5)?, if cell == Cell::Lstm { initial(self, 6)? } else { vec![None; dirs] });

        let mut hs: Vec<Vec<usize>> = Vec::new();
        let mut last_c = Vec::new();
        for (d, &backwards) in reverse.iter().enumerate() {
            let slice =
                |t: &Tensor, per: usize| Tensor::new(t.shape[1..].to_vec(), t.data[d * per..(d + 1) * per].to_vec());
            let dir = Direction {
                w: slice(&w, g * hidden * input),
                r: slice(&r, g * hidden * hidden),
                b: b.data[d * 2 * g * hidden..(d + 1) * 2 * g * hidden].to_vec(),
                activations: activations[d * per_dir..(d + 1) * per_dir].to_vec(),
            };
            let (h, c) = self.unroll(node, cell, &dims, x, &dir, d, (h0[d].clone(), c0[d].clone()), backwards)?;
            hs.push(h);
            last_c.push(c);
        }
        self.recurrent_outputs(node, &dims, &hs, &last_c)
    }

    /// One direction's steps; returns the hidden state of each step (in sequence order) and the
    /// last cell state (LSTM).
    #[allow(clippy::too_many_arguments)]
    fn unroll(
        &mut self,
        node: &pb::NodeProto,
        cell: Cell,
        dims: &Dims,
        x: usize,
        dir: &Direction,
        d: usize,
        (h0, c0): (Option<Value>, Option<Value>),
        backwards: bool,
    ) -> Result<(Vec<usize>, Option<usize>)> {
        let (g, hidden, batch) = (cell.gates(), dims.hidden, dims.batch);
        let gh = g * hidden;
        // Every step's input projection at once, with both biases (GRU with
        // linear_before_reset keeps the recurrent bias of its h gate inside the reset).
        let lbr = cell == Cell::Gru && attr_int(node, "linear_before_reset").unwrap_or(0) != 0;
        let bias: Vec<f32> =
            (0..gh).map(|j| dir.b[j] + if lbr && j >= 2 * hidden { 0.0 } else { dir.b[gh + j] }).collect();
        let in_shape = self.nodes[x].shape.clone();
        let proj_shape = vec![in_shape[0], in_shape[1], gh];
        let dense = Op::Dense(linear::Dense {
            weight: gate_weights(&dir.w, 0, g, hidden),
            bias: Some(Tensor::new(vec![gh], bias)),
            transpose_input: false,
        });
        let projected = self.intermediate(node, &format!("d{d}:input_projection"), dense, vec![x], proj_shape);
        let steps: Vec<usize> = if backwards { (0..dims.seq).rev().collect() } else { (0..dims.seq).collect() };
        let mut h: Option<Value> = h0;
        let mut c: Option<Value> = c0;
        let mut hs = vec![0; dims.seq];
        for t in steps {
            let part = |name: &str| format!("d{d}t{t}:{name}");
            // Columns [from·H, to·H) of step t's projection (plus the recurrent one, when given).
            let rows: Vec<usize> = (0..batch).map(|b| dims.row(t, b)).collect();
            let x_gates = |importer: &mut Self, from: usize, to: usize, name: &str| {
                let sources = rows
                    .iter()
                    .flat_map(|&row| {
                        (from * hidden..to * hidden).map(move |j| Source::Input { input: 0, index: row * gh + j })
                    })
                    .collect();
                let select = Op::Select(movement::Select { sources });
                importer.intermediate(node, &part(name), select, vec![projected], vec![batch, (to - from) * hidden])
            };
            let recurrent =
                |importer: &mut Self, h: &Option<Value>, from: usize, to: usize, bias: Option<Tensor>, name: &str| {
                    importer.project(node, &part(name), h.as_ref(), gate_weights(&dir.r, from, to, hidden), bias, batch)
                };
            let gate = |importer: &mut Self, pre: usize, k: usize, at: usize, width: usize, name: &str| {
                let sources = (0..batch)
                    .flat_map(|b| {
                        (at * hidden..(at + 1) * hidden).map(move |j| Source::Input { input: 0, index: b * width + j })
                    })
                    .collect();
                let sliced = importer.intermediate(
                    node,
                    &part(&format!("{name}_pre")),
                    Op::Select(movement::Select { sources }),
                    vec![pre],
                    vec![batch, hidden],
                );
                importer.intermediate(node, &part(name), dir.activations[k].clone(), vec![sliced], vec![batch, hidden])
            };
            let next_h = match cell {
                Cell::Rnn => {
                    let xs = x_gates(self, 0, 1, "x");
                    let rec = recurrent(self, &h, 0, 1, None, "recurrent")?;
                    let pre = self.add_value(node, &part("pre"), xs, rec, vec![batch, hidden]);
                    self.intermediate(node, &part("h"), dir.activations[0].clone(), vec![pre], vec![batch, hidden])
                }
                Cell::Lstm => {
                    let xs = x_gates(self, 0, 4, "x");
                    let rec = recurrent(self, &h, 0, 4, None, "recurrent")?;
                    let pre = self.add_value(node, &part("gates"), xs, rec, vec![batch, gh]);
                    let i = gate(self, pre, 0, 0, gh, "i");
                    let o = gate(self, pre, 0, 1, gh, "o");
                    let f = gate(self, pre, 0, 2, gh, "f");
                    let candidate = gate(self, pre, 1, 3, gh, "c_candidate");
                    let kept = self.mul_value(node, &part("kept"), f, c.as_ref(), vec![batch, hidden]);
                    let written = self.intermediate(
                        node,
                        &part("written"),
                        Op::Mul(arith::Mul),
                        vec![i, candidate],
                        vec![batch, hidden],
                    );
                    let next_c = self.add_value(node, &part("c"), written, kept.map(Value::Node), vec![batch, hidden]);
                    let squashed = self.intermediate(
                        node,
                        &part("c_act"),
                        dir.activations[2].clone(),
                        vec![next_c],
                        vec![batch, hidden],
                    );
                    c = Some(Value::Node(next_c));
                    self.intermediate(node, &part("h"), Op::Mul(arith::Mul), vec![o, squashed], vec![batch, hidden])
                }
                Cell::Gru => {
                    let xs = x_gates(self, 0, 2, "x_zr");
                    let rec = recurrent(self, &h, 0, 2, None, "recurrent_zr")?;
                    let pre = self.add_value(node, &part("zr"), xs, rec, vec![batch, 2 * hidden]);
                    let z = gate(self, pre, 0, 0, 2 * hidden, "z");
                    let r = gate(self, pre, 0, 1, 2 * hidden, "r");
                    let xh = x_gates(self, 2, 3, "x_h");
                    let reset = if lbr {
                        let rb = Tensor::new(vec![hidden], dir.b[gh + 2 * hidden..gh + 3 * hidden].to_vec());
                        let hh = recurrent(self, &h, 2, 3, Some(rb), "recurrent_h")?;
                        self.mul_value(node, &part("reset"), r, hh.as_ref(), vec![batch, hidden]).map(Value::Node)
                    } else {
                        let rh =
                            self.mul_value(node, &part("reset"), r, h.as_ref(), vec![batch, hidden]).map(Value::Node);
                        recurrent(self, &rh, 2, 3, None, "recurrent_h")?
                    };
                    let pre_h = self.add_value(node, &part("h_pre"), xh, reset, vec![batch, hidden]);
                    let candidate = self.intermediate(
                        node,
                        &part("h_candidate"),
                        dir.activations[1].clone(),
                        vec![pre_h],
                        vec![batch, hidden],
                    );
                    // (1 - z) ⊙ ĥ + z ⊙ h = ĥ + z ⊙ (h - ĥ)
                    match &h {
                        None => {
                            let one_minus_z = self.one_minus(node, &part("keep_candidate"), z, vec![batch, hidden]);
                            self.intermediate(
                                node,
                                &part("h"),
                                Op::Mul(arith::Mul),
                                vec![one_minus_z, candidate],
                                vec![batch, hidden],
                            )
                        }
                        Some(previous) => {
                            let delta =
                                self.sub_value(node, &part("delta"), previous.clone(), candidate, vec![batch, hidden]);
                            let moved = self.intermediate(
                                node,
                                &part("update"),
                                Op::Mul(arith::Mul),
                                vec![z, delta],
                                vec![batch, hidden],
                            );
                            self.intermediate(
                                node,
                                &part("h"),
                                Op::Add(arith::Add),
                                vec![candidate, moved],
                                vec![batch, hidden],
                            )
                        }
                    }
                }
            };
            hs[t] = next_h;
            h = Some(Value::Node(next_h));
        }
        let last_c = match c {
            Some(Value::Node(id)) => Some(id),
            _ => None,
        };
        Ok((hs, last_c))
    }

    /// `h · weight + bias` for a hidden state `h` (`None`: zero): a linear layer of a computed
    /// state, folded for a constant one; `None` when the result is zero.
    fn project(
        &mut self,
        node: &pb::NodeProto,
        name: &str,
        h: Option<&Value>,
        weight: Tensor,
        bias: Option<Tensor>,
        batch: usize,
    ) -> Result<Option<Value>> {
        let n = weight.shape[1];
        match h {
            Some(Value::Node(id)) => {
                let dense = Op::Dense(linear::Dense { weight, bias, transpose_input: false });
                Ok(Some(Value::Node(self.intermediate(node, name, dense, vec![*id], vec![batch, n]))))
            }
            Some(Value::Const(state)) => {
                let k = weight.shape[0];
                let data = (0..batch * n)
                    .map(|o| {
                        let (b, j) = (o / n, o % n);
                        let dot: f32 = (0..k).map(|i| state.data[b * k + i] * weight.data[i * n + j]).sum();
                        dot + bias.as_ref().map_or(0.0, |t| t.data[j])
                    })
                    .collect();
                Ok(Some(Value::Const(Tensor::new(vec![batch, n], data))))
            }
            None => Ok(bias
                .map(|t| Value::Const(Tensor::new(vec![batch, n], (0..batch).flat_map(|_| t.data.clone()).collect())))),
        }
    }

    /// `a + b` for a computed `a` and a computed, constant or zero (`None`) `b`.
    fn add_value(&mut self, node: &pb::NodeProto, name: &str, a: usize, b: Option<Value>, shape: Vec<usize>) -> usize {
        match b {
            None => a,
            Some(Value::Node(b)) => self.intermediate(node, name, Op::Add(arith::Add), vec![a, b], shape),
            Some(Value::Const(c)) => {
                self.intermediate(node, name, Op::AddConst(arith::AddConst { constant: c }), vec![a], shape)
            }
        }
    }

    /// `a ⊙ b` for a computed `a` and a computed, constant or zero (`None`) `b`; `None` when zero.
    fn mul_value(
        &mut self,
        node: &pb::NodeProto,
        name: &str,
        a: usize,
        b: Option<&Value>,
        shape: Vec<usize>,
    ) -> Option<usize> {
        match b {
            None => None,
            Some(Value::Node(b)) => Some(self.intermediate(node, name, Op::Mul(arith::Mul), vec![a, *b], shape)),
            Some(Value::Const(c)) => {
                let op = Op::MulConst(arith::MulConst { constant: c.clone() });
                Some(self.intermediate(node, name, op, vec![a], shape))
            }
        }
    }

    /// `a - b` for a computed or constant `a` and a computed `b`.
    fn sub_value(&mut self, node: &pb::NodeProto, name: &str, a: Value, b: usize, shape: Vec<usize>) -> usize {
        match a {
            Value::Node(a) => self.intermediate(node, name, Op::Sub(arith::Sub), vec![a, b], shape),
            Value::Const(c) => {
                let negated =
                    self.intermediate(node, &format!("{name}_neg"), arith::negation(), vec![b], shape.clone());
                self.intermediate(node, name, Op::AddConst(arith::AddConst { constant: c }), vec![negated], shape)
            }
        }
    }

    /// `1 - a` for a computed `a`.
    fn one_minus(&mut self, node: &pb::NodeProto, name: &str, a: usize, shape: Vec<usize>) -> usize {
        let negated = self.intermediate(node, &format!("{name}_neg"), arith::negation(), vec![a], shape.clone());
        let one = Op::AddConst(arith::AddConst { constant: Tensor::new(vec![], vec![1.0]) });
        self.intermediate(node, name, one, vec![negated], shape)
    }

    /// Y (every step's hidden state), Y_h (the last one of each direction) and Y_c (LSTM: the
    /// last cell state), as the node's outputs ask, in its layout.
    fn recurrent_outputs(
        &mut self,
        node: &pb::NodeProto,
        dims: &Dims,
        hs: &[Vec<usize>],
        last_c: &[Option<usize>],
    ) -> Result<()> {
        let (seq, batch, hidden, dirs) = (dims.seq, dims.batch, dims.hidden, hs.len());
        let per_step: Vec<Value> = hs.iter().flatten().map(|&id| Value::Node(id)).collect();
        // The last state of direction d: step seq-1 forward, step 0 in reverse.
        let last: Vec<usize> = hs
            .iter()
            .enumerate()
            .map(|(d, h)| if d == 1 || self.is_reverse(node) { h[0] } else { h[seq - 1] })
            .collect();
        let outputs = node.output.clone();
        if let Some(y) = outputs.first().filter(|o| !o.is_empty()) {
            let shape = if dims.batch_first { vec![batch, seq, dirs, hidden] } else { vec![seq, dirs, batch, hidden] };
            // Y[t, d, s, j] (or [s, t, d, j]) is element (s, j) of direction d's step t.
            let sources = movement::build(&shape, |o| {
                let (t, d, s) = if dims.batch_first { (o[1], o[2], o[0]) } else { (o[0], o[1], o[2]) };
                Source::Input { input: d * seq + t, index: s * hidden + o[3] }
            });
            self.emit_moved(node, &per_step, (shape, sources), y.clone())?;
        }
        let state = |ids: &[usize]| -> (Vec<Value>, Vec<usize>, Vec<Source>) {
            let shape = if dims.batch_first { vec![batch, ids.len(), hidden] } else { vec![ids.len(), batch, hidden] };
            let sources = movement::build(&shape, |o| {
                let (d, s) = if dims.batch_first { (o[1], o[0]) } else { (o[0], o[1]) };
                Source::Input { input: d, index: s * hidden + o[2] }
            });
            (ids.iter().map(|&id| Value::Node(id)).collect(), shape, sources)
        };
        if let Some(y_h) = outputs.get(1).filter(|o| !o.is_empty()) {
            let (inputs, shape, sources) = state(&last);
            self.emit_moved(node, &inputs, (shape, sources), y_h.clone())?;
        }
        if let Some(y_c) = outputs.get(2).filter(|o| !o.is_empty()) {
            let cs: Option<Vec<usize>> = last_c.iter().copied().collect();
            let cs = cs.ok_or_else(|| self.unsupported(node, "the Y_c output of a cell without a state"))?;
            let (inputs, shape, sources) = state(&cs);
            self.emit_moved(node, &inputs, (shape, sources), y_c.clone())?;
        }
        Ok(())
    }

    fn is_reverse(&self, node: &pb::NodeProto) -> bool {
        attr(node, "direction").is_some_and(|a| a.s == b"reverse")
    }
}
