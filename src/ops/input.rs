//! The model's inputs: loaded as witnesses and range-checked, whoever sees them.

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};

use super::{ExecCx, Kernel, LayoutCx};
use crate::circuit::field::fe;
use crate::circuit::instances::layout_offset;
use crate::error::ImportError;
use crate::error::Result;

/// The model's input number `index`, at the input scale.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    /// Position among the model inputs.
    pub index: usize,
}

impl Input {
    fn data<'a>(&self, inputs: &'a [Vec<i64>]) -> Result<&'a [i64]> {
        inputs
            .get(self.index)
            .map(Vec::as_slice)
            .ok_or_else(|| ImportError::UnsupportedModel(format!("missing input #{}", self.index)).into())
    }
}

impl Kernel for Input {
    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        Ok(self.data(cx.inputs)?.iter().map(|&v| v as i128).collect())
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let data = self.data(cx.inputs)?;
        let input: Vec<_> = data.iter().map(|&v| cx.ctx.load_witness(fe(v as i128))).collect();
        // Every input is range-checked, whoever sees it: the statement is about in-range inputs.
        let shifted = layout_offset(cx.ctx, cx.range, &input, cx.bits());
        cx.laid_inputs.push((self.index, cx.node.name.clone(), cx.node.shape.clone(), shifted));
        Ok(input)
    }
}
