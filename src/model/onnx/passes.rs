//! Graph passes run after import: a constant added after a bias-less Dense becomes its bias, a
//! per-channel scale (BatchNormalization) after a convolution that nothing else reads is folded
//! into it, pass-through reshapes are forwarded, and nodes no output needs are dropped.

use crate::model::graph::{Graph, Op, Tensor};
use crate::ops::{arith, linear, movement};

/// The per-channel `x · scale + shift` of a depthwise 1×1 convolution (what BatchNormalization
/// imports as), or `None` for any other op.
fn per_channel_affine(op: &Op) -> Option<(Vec<f32>, Vec<f32>)> {
    let Op::Conv(linear::Conv { weight, bias, group, window }) = op else { return None };
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
pub(super) fn simplify(mut graph: Graph) -> Graph {
    let consumers = |g: &Graph, id: usize| {
        g.nodes.iter().filter(|n| n.inputs.contains(&id)).count() + g.outputs.iter().filter(|&&o| o == id).count()
    };
    for id in 0..graph.nodes.len() {
        let Op::AddConst(arith::AddConst { constant }) = &graph.nodes[id].op else { continue };
        let src = graph.nodes[id].inputs[0];
        let fits = matches!(&graph.nodes[src].op, Op::Dense(linear::Dense { bias: None, .. }))
            && graph.nodes[src].shape == graph.nodes[id].shape
            && consumers(&graph, src) == 1;
        if fits {
            let constant = constant.clone();
            if let Op::Dense(linear::Dense { bias, .. }) = &mut graph.nodes[src].op {
                *bias = Some(constant);
            }
            graph.nodes[id].op = Op::Reshape(movement::Reshape);
            graph.nodes[src].value = graph.nodes[id].value.clone();
        }
    }
    // A per-channel scale (a BatchNormalization) right after a convolution that nothing else
    // reads is folded into the convolution's weights and bias: one rescale instead of two.
    for id in 0..graph.nodes.len() {
        let Some((scale, shift)) = per_channel_affine(&graph.nodes[id].op) else { continue };
        let src = graph.nodes[id].inputs[0];
        if !matches!(graph.nodes[src].op, Op::Conv(_)) || consumers(&graph, src) != 1 {
            continue;
        }
        if let Op::Conv(linear::Conv { weight, bias, .. }) = &mut graph.nodes[src].op {
            let m = weight.shape[0];
            if m != scale.len() {
                continue;
            }
            let per = weight.len() / m;
            weight.data.iter_mut().enumerate().for_each(|(i, w)| *w *= scale[i / per]);
            let old = bias.take().map(|b| b.data).unwrap_or_else(|| vec![0.0; m]);
            *bias = Some(Tensor::new(vec![m], (0..m).map(|c| old[c] * scale[c] + shift[c]).collect()));
        }
        graph.nodes[id].op = Op::Reshape(movement::Reshape);
        graph.nodes[src].value = graph.nodes[id].value.clone();
    }
    // Pass-through reshapes keep their shape; drop those whose shape equals their input's.
    let mut forward: Vec<usize> = (0..graph.nodes.len()).collect();
    for id in 0..graph.nodes.len() {
        if matches!(graph.nodes[id].op, Op::Reshape(_)) {
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
    stack.extend(graph.nodes.iter().enumerate().filter(|(_, n)| matches!(n.op, Op::Input(_))).map(|(i, _)| i));
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
    use crate::model::graph::{Node, Window};
    use crate::ops::{input, norm};

    fn node(name: &str, op: Op, inputs: Vec<usize>, shape: Vec<usize>) -> Node {
        Node { name: name.into(), op, inputs, shape, value: name.into() }
    }

    fn input(shape: Vec<usize>) -> Node {
        node("x", Op::Input(input::Input { index: 0 }), vec![], shape)
    }

    fn dense(bias: Option<Tensor>) -> Op {
        Op::Dense(linear::Dense {
            weight: Tensor::new(vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
            bias,
            transpose_input: false,
        })
    }

    fn conv() -> Op {
        let window = Window::new(&[2, 2], &[1, 1], &[1, 1], &[0, 0], &[0, 0], &[1, 1]).unwrap();
        Op::Conv(linear::Conv { weight: Tensor::new(vec![2, 1, 1, 1], vec![1.0, 2.0]), bias: None, group: 1, window })
    }

    #[test]
    fn a_constant_after_a_biasless_dense_becomes_its_bias() {
        let add = Op::AddConst(arith::AddConst { constant: Tensor::new(vec![2], vec![0.5, -1.0]) });
        let graph = Graph {
            nodes: vec![
                input(vec![1, 2]),
                node("fc", dense(None), vec![0], vec![1, 2]),
                node("add", add, vec![1], vec![1, 2]),
            ],
            outputs: vec![2],
        };
        let g = simplify(graph);
        assert_eq!(g.nodes.len(), 2, "the addition is folded away");
        let Op::Dense(d) = &g.nodes[1].op else { panic!("{:?}", g.nodes[1].op) };
        assert_eq!(d.bias.as_ref().unwrap().data, vec![0.5, -1.0]);
        assert_eq!(g.outputs, vec![1]);
        assert_eq!(g.nodes[1].value, "add", "the folded node computes the addition's value");
    }

    #[test]
    fn a_dense_with_a_bias_or_another_reader_keeps_its_addition() {
        let add = || Op::AddConst(arith::AddConst { constant: Tensor::new(vec![2], vec![0.5, -1.0]) });
        let biased = dense(Some(Tensor::new(vec![2], vec![1.0, 1.0])));
        let graph = Graph {
            nodes: vec![
                input(vec![1, 2]),
                node("fc", biased, vec![0], vec![1, 2]),
                node("add", add(), vec![1], vec![1, 2]),
            ],
            outputs: vec![2],
        };
        assert_eq!(simplify(graph).nodes.len(), 3);
        let graph = Graph {
            nodes: vec![
                input(vec![1, 2]),
                node("fc", dense(None), vec![0], vec![1, 2]),
                node("add", add(), vec![1], vec![1, 2]),
            ],
            outputs: vec![1, 2],
        };
        assert_eq!(simplify(graph).nodes.len(), 3, "the dense's own output is read");
    }

    #[test]
    fn a_per_channel_scale_folds_into_the_convolution_before_it() {
        let scale = norm::channel_affine(&[1, 2, 2, 2], vec![2.0, -1.0], vec![0.5, 0.25]);
        let graph = Graph {
            nodes: vec![
                input(vec![1, 1, 2, 2]),
                node("conv", conv(), vec![0], vec![1, 2, 2, 2]),
                node("bn", scale, vec![1], vec![1, 2, 2, 2]),
            ],
            outputs: vec![2],
        };
        let g = simplify(graph);
        assert_eq!(g.nodes.len(), 2);
        let Op::Conv(c) = &g.nodes[1].op else { panic!() };
        assert_eq!(c.weight.data, vec![2.0, -2.0]);
        assert_eq!(c.bias.as_ref().unwrap().data, vec![0.5, 0.25]);
    }

    #[test]
    fn pass_through_reshapes_are_forwarded_and_dead_nodes_dropped() {
        let graph = Graph {
            nodes: vec![
                input(vec![1, 2]),
                node("same", Op::Reshape(movement::Reshape), vec![0], vec![1, 2]),
                node("relu", Op::Relu(crate::ops::extremum::Relu), vec![1], vec![1, 2]),
                node("unused", Op::Relu(crate::ops::extremum::Relu), vec![0], vec![1, 2]),
                node("flat", Op::Reshape(movement::Reshape), vec![2], vec![2]),
            ],
            outputs: vec![4],
        };
        let g = simplify(graph);
        let names: Vec<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["x", "relu", "flat"], "the identity reshape and the unread node are gone");
        assert_eq!(g.nodes[1].inputs, vec![0]);
        assert_eq!(g.nodes[2].inputs, vec![1], "a reshape that changes the shape stays");
        assert_eq!(g.outputs, vec![2]);
    }
}
