//! Model import and quantization: ONNX → our graph IR → fixed point, with the float (tract) and
//! integer references the circuit is checked against.

pub mod function;
pub mod graph;
pub mod input;
pub mod onnx;
pub mod quantize;
pub mod reference;
pub mod window;

pub use graph::{Graph, Node, Op, Tensor};
pub use input::{load_input, load_samples};
pub use onnx::import_onnx;
pub use quantize::{QNode, QOp, QuantizedModel};
pub use reference::run_float;
