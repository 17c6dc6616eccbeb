//! Values known at import: Constant, and Shape, ConstantOfShape and Cast where they fold to
//! constants (the shape arithmetic PyTorch exports around a flatten). Nothing here reaches the
//! circuit.

use tract_onnx::pb;

use super::OnnxOp;
use crate::error::Result;
use crate::model::graph::Tensor;
use crate::model::onnx::{attr, attr_int, node_name, Importer, Value};

/// The ONNX ops of this family.
pub const ONNX: &[OnnxOp] = &[
    OnnxOp { op_type: "Constant", import: |i, n| i.import_constant(n), note: "" },
    OnnxOp { op_type: "Shape", import: |i, n| i.import_shape(n), note: "folded" },
    OnnxOp { op_type: "ConstantOfShape", import: |i, n| i.import_constant_of_shape(n), note: "folded" },
    OnnxOp { op_type: "Cast", import: |i, n| i.import_cast(n), note: "to a float type, or of a constant" },
];

impl Importer<'_> {
    fn import_constant(&mut self, node: &pb::NodeProto) -> Result<()> {
        let value = self.constant_attribute(node)?;
        self.set_output(node, Value::Const(value))
    }

    fn import_shape(&mut self, node: &pb::NodeProto) -> Result<()> {
        let shape = self.shape_of(&self.required_input(node, 0)?);
        let rank = shape.len() as i64;
        let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
        let start = clamp(attr_int(node, "start").unwrap_or(0));
        let end = clamp(attr_int(node, "end").unwrap_or(rank)).max(start);
        let dims: Vec<f32> = shape[start..end].iter().map(|&d| d as f32).collect();
        self.set_output(node, Value::Const(Tensor::new(vec![dims.len()], dims)))
    }

    fn import_constant_of_shape(&mut self, node: &pb::NodeProto) -> Result<()> {
        let shape = self.const_ints(node, 0)?;
        let value = match attr(node, "value").and_then(|a| a.t.as_ref()) {
            None => 0.0,
            Some(t) => {
                let provider = tract_onnx::onnx().provider;
                let tensor = tract_onnx::tensor::load_tensor(&*provider, t, None)
                    .map_err(|e| self.malformed_by(format!("ConstantOfShape '{}'", node_name(node)), e))?;
                self.to_f32(&node_name(node), &tensor)?.data.first().copied().unwrap_or(0.0)
            }
        };
        let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
        let len = shape.iter().product();
        self.set_output(node, Value::Const(Tensor::new(shape, vec![value; len])))
    }

    fn import_cast(&mut self, node: &pb::NodeProto) -> Result<()> {
        // The graph computes in float: a cast of a computed value to an integer type would
        // truncate, which is not proven.
        let value = self.required_input(node, 0)?;
        let to_float = matches!(attr_int(node, "to"), Some(1 | 10 | 11 | 16));
        if matches!(value, Value::Node(_)) && !to_float {
            return Err(self.unsupported(node, "a cast of a computed value to a non-float type"));
        }
        self.set_output(node, value)
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
                    .map_err(|e| self.malformed_by(format!("Constant node '{}'", node_name(node)), e))?;
                self.to_f32(&node_name(node), &tensor)
            }
            "value_float" => Ok(Tensor::new(vec![], vec![attr.f])),
            "value_floats" => Ok(Tensor::new(vec![attr.floats.len()], attr.floats.clone())),
            "value_int" => Ok(Tensor::new(vec![], vec![attr.i as f32])),
            "value_ints" => Ok(Tensor::new(vec![attr.ints.len()], attr.ints.iter().map(|&i| i as f32).collect())),
            other => Err(self.unsupported(node, format!("Constant with attribute '{other}'"))),
        }
    }
}
