//! Gather of computed indices from a constant tensor: an embedding lookup (token ids in, their
//! rows out). Each column of the table is a lookup table of the circuit whose inputs are the row
//! indices in fixed point (`i · 2^scale`, negative ones wrapping as ONNX says): each output
//! element is one lookup of its index cell, so an index that is not a row of the table (out of
//! range, or not an integer) has no row and cannot be proven. The table lives in the circuit's
//! fixed columns, bound by the verifying key: such models need fixed params. (Gather of constant
//! indices is data movement, see [`super::movement`].)

use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};

use super::{ExecCx, Kernel, LayoutCx, QOp, Quantize, QuantizeCx};
use crate::circuit::lookup::Table;
use crate::circuit::nonlinear::layout_row_lookup;
use crate::error::ImportError;
use crate::error::{Error, Result};
use crate::model::graph::Tensor;
use crate::settings::Visibility;

/// Rows of a constant `table` (along axis 0) at computed indices: output `[indices..., row]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Embedding {
    /// The table, `[rows, ...]`.
    pub table: Tensor,
}

/// [`Embedding`] quantized: the table at the input scale, row-major.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QEmbedding {
    /// The entries, `rows × width`.
    pub table: Vec<i64>,
    /// Rows (the indices' range).
    pub rows: usize,
    /// Entries per row.
    pub width: usize,
}

impl Quantize for Embedding {
    fn quantize(&self, cx: &QuantizeCx<'_>) -> Result<QOp> {
        if cx.settings.visibility.params != Visibility::Fixed {
            return Err(ImportError::UnsupportedModel(format!(
                "node '{}' gathers rows of a constant table by computed indices: the table is held in the circuit, \
                 which needs fixed params (gen-settings --param-visibility fixed)",
                cx.node.name
            ))
            .into());
        }
        let rows = self.table.shape.first().copied().unwrap_or(0);
        Ok(QOp::Embedding(QEmbedding {
            table: cx.quantize(&self.table, cx.settings.input_scale),
            rows,
            width: self.table.len() / rows.max(1),
        }))
    }
}

impl QEmbedding {
    /// The table row of an index given in fixed point at `scale`, or `None` when the index is not
    /// an integer in `[-rows, rows)`.
    fn row(&self, x: i128, scale: u32) -> Option<usize> {
        let one = 1i128 << scale;
        let rows = self.rows as i128;
        let i = (x % one == 0).then_some(x / one)?;
        (-rows..rows).contains(&i).then_some(i.rem_euclid(rows.max(1)) as usize)
    }

    /// Column `j` as a circuit table: rows `-rows..rows` at the fixed-point step.
    fn column(&self, j: usize, scale: u32) -> Table {
        let one = 1i64 << scale;
        let outputs = (0..2 * self.rows).map(|i| self.table[(i % self.rows) * self.width + j]).collect();
        Table { lo: -(self.rows as i64) * one, step: one, outputs }
    }

    fn refuse(&self, node: &str, x: i128, scale: u32) -> Error {
        ImportError::UnsupportedModel(format!(
            "node '{node}' gathers row {} of a table of {} rows: indices must be integers in [-{1}, {1})",
            x as f64 / (1u64 << scale) as f64,
            self.rows
        ))
        .into()
    }
}

impl Kernel for QEmbedding {
    fn check(&self, node: &crate::model::QNode) -> Result<()> {
        if self.rows == 0 || self.table.len() != self.rows * self.width {
            return Err(
                ImportError::UnsupportedModel(format!("node '{}' has an empty or ragged table", node.name)).into()
            );
        }
        Ok(())
    }

    fn execute(&self, cx: &ExecCx<'_>) -> Result<Vec<i128>> {
        let scale = cx.scales.input;
        let mut out = Vec::with_capacity(cx.args[0].len() * self.width);
        for &x in cx.args[0] {
            let row = self.row(x, scale).ok_or_else(|| self.refuse(&cx.node.name, x, scale))?;
            out.extend(self.table[row * self.width..(row + 1) * self.width].iter().map(|&v| i128::from(v)));
        }
        Ok(out)
    }

    fn layout(&self, cx: &mut LayoutCx<'_, '_>) -> Result<Vec<AssignedValue<Fr>>> {
        let scale = cx.scales.input;
        let mut out = Vec::with_capacity(cx.args[0].len() * self.width);
        for &x in cx.args[0] {
            // At key generation the inputs are zeros: row 0.
            let row = crate::circuit::field::to_i128(x.value()).and_then(|v| self.row(v, scale));
            for j in 0..self.width {
                let tag = cx.lookups.rows_tag(&cx.node.value, j, || self.column(j, scale));
                let y = row.map_or(0, |r| i128::from(self.table[r * self.width + j]));
                out.push(layout_row_lookup(cx.ctx, cx.lookups, x, tag, y));
            }
        }
        Ok(out)
    }
}
