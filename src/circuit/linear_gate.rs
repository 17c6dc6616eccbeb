//! The linear-layer gate: a region of our own beside halo2-base's columns where a row holds `C`
//! inputs and `K` running sums, and a fixed weight for each (input, sum) pair, so that a
//! multiply-accumulate costs about `1/C + 1/K` advice cells instead of the three of halo2-base's
//! generic gate (the input copied in, the weight as a constant cell, the running sum).
//!
//! A fixed column `t` says what each row is: 0 outside the region, 1 the first row of a run, 2
//! a row that continues one. On every row
//!
//! ```text
//! q(t) · acc_k[r + 1] = s(t) · acc_k[r] + Σ_c w[c, k][r] · x_c[r]      for every lane k,
//! q(t) = t(3 - t)/2 (1 on a run's rows), s(t) = t(t - 1)/2 (1 where a run continues)
//! ```
//!
//! The weights `w` are fixed columns too (the circuit, not the prover, holds them and `t`), so
//! the gate has degree 3, as halo2-base's own. A run of rows computes `K` outputs that read the
//! same inputs; its first slot holds the constant 1 (a copy of one constant cell), whose weights
//! are each output's bias plus the rescale's offset. Its outputs are the sums on the row after
//! its last, which is also the next run's first row (where `s = 0` never reads them). Every
//! input slot is copy-constrained to the cell it came from, and every output sum to the virtual
//! cell the rescale after it reads; outside the region `t` and the weights are zero and the gate
//! holds whatever the advice is (the blinding rows included).

use halo2_base::halo2_proofs::circuit::{Layouter, Value};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::plonk::{Advice, Column, ConstraintSystem, Error, Expression, Fixed};
use halo2_base::halo2_proofs::poly::Rotation;
use halo2_base::utils::halo2::{constrain_virtual_equals_external, raw_assign_advice, raw_assign_fixed};
use halo2_base::virtual_region::copy_constraints::{CopyConstraintManager, SharedCopyConstraintManager};
use halo2_base::{AssignedValue, Context};
use serde::{Deserialize, Serialize};

use super::field::fe;
use super::mutation::keep;

/// Copy-constrains `cell`, a raw cell of one of our regions, to `source`, a cell of halo2-base's
/// layout: an equality with an external cell, which halo2-base's manager resolves when it assigns
/// its own region (after ours).
pub(crate) fn copy_into_region(
    copies: &mut CopyConstraintManager<Fr>,
    source: AssignedValue<Fr>,
    cell: halo2_base::halo2_proofs::circuit::Cell,
) {
    let external = copies.load_external_cell(cell);
    copies.advice_equalities.push((source.cell.expect("a keygen cell"), external));
}

/// The shape of a row of the linear region: `inputs` slots and `outputs` running sums, and
/// where the weights are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinearGeometry {
    /// Input slots per row (`C`).
    pub inputs: usize,
    /// Running sums per row (`K`), each with its own weight for every input slot.
    pub outputs: usize,
    /// Whether the weights are advice cells copied in (params that are not fixed: private,
    /// public or hashed) instead of fixed columns.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advice_weights: bool,
}

impl LinearGeometry {
    /// A geometry with fixed weights.
    pub const fn new(inputs: usize, outputs: usize) -> Self {
        LinearGeometry { inputs, outputs, advice_weights: false }
    }

    /// This geometry with its weights in advice (`advice` true) or fixed columns.
    pub const fn with_advice_weights(self, advice: bool) -> Self {
        LinearGeometry { advice_weights: advice, ..self }
    }

    /// Advice columns the region adds (all with equality): the inputs, the sums and, with
    /// advice weights, one column per weight of a row.
    pub fn advice_columns(&self) -> usize {
        let weights = if self.advice_weights { self.inputs * self.outputs } else { 0 };
        self.inputs + self.outputs + weights
    }

    /// Fixed columns the region adds: `t` and the weights, or, with advice weights, the two
    /// selectors.
    pub fn fixed_columns(&self) -> usize {
        if self.advice_weights {
            2
        } else {
            1 + self.inputs * self.outputs
        }
    }

    /// Rows a run of `terms` inputs takes (its constant slot included).
    pub fn rows(&self, terms: usize) -> usize {
        (terms + 1).div_ceil(self.inputs)
    }
}

impl std::fmt::Display for LinearGeometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.inputs, self.outputs)?;
        if self.advice_weights {
            write!(f, " (weights in advice)")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LinearGeometry {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}` is not a geometry: write INPUTSxSUMS, e.g. 4x4 (each 1 to 16)");
        let (c, k) = s.split_once(['x', 'X']).ok_or_else(bad)?;
        let (inputs, outputs): (usize, usize) =
            (c.trim().parse().map_err(|_| bad())?, k.trim().parse().map_err(|_| bad())?);
        if !(1..=16).contains(&inputs) || !(1..=16).contains(&outputs) {
            return Err(bad());
        }
        Ok(LinearGeometry::new(inputs, outputs))
    }
}

/// The region's columns.
#[derive(Clone, Debug)]
pub struct LinearConfig {
    geometry: LinearGeometry,
    x: Vec<Column<Advice>>,
    acc: Vec<Column<Advice>>,
    weights: WeightColumns,
}

/// Where a row's weights are, `[c * K + k]` the weight of slot `c` in sum `k`.
#[derive(Clone, Debug)]
enum WeightColumns {
    /// Fixed columns, with `t`: 0 off the region, 1 on a run's first row, 2 on its other rows.
    Fixed { w: Vec<Column<Fixed>>, t: Column<Fixed> },
    /// Advice columns (with equality: each weight is copied from its param's cell), with two
    /// fixed selectors: `q` 1 on a run's rows, `s` 1 on the rows that continue a run.
    Advice { w: Vec<Column<Advice>>, q: Column<Fixed>, s: Column<Fixed> },
}

impl LinearConfig {
    /// Configures the columns and the gate.
    pub fn configure(meta: &mut ConstraintSystem<Fr>, geometry: LinearGeometry) -> Self {
        let LinearGeometry { inputs, outputs, advice_weights } = geometry;
        let equality = |meta: &mut ConstraintSystem<Fr>| {
            let c = meta.advice_column();
            meta.enable_equality(c);
            c
        };
        let x: Vec<_> = (0..inputs).map(|_| equality(meta)).collect();
        let acc: Vec<_> = (0..outputs).map(|_| equality(meta)).collect();
        let weights = if advice_weights {
            let w: Vec<_> = (0..inputs * outputs).map(|_| equality(meta)).collect();
            WeightColumns::Advice { w, q: meta.fixed_column(), s: meta.fixed_column() }
        } else {
            let w: Vec<_> = (0..inputs * outputs).map(|_| meta.fixed_column()).collect();
            WeightColumns::Fixed { w, t: meta.fixed_column() }
        };
        meta.create_gate("linear layer", |m| {
            let constant = |v: u64| Expression::Constant(Fr::from(v));
            let xs: Vec<_> = x.iter().map(|&c| m.query_advice(c, Rotation::cur())).collect();
            let weight = |m: &mut halo2_base::halo2_proofs::plonk::VirtualCells<'_, Fr>, i: usize| match &weights {
                WeightColumns::Fixed { w, .. } => m.query_fixed(w[i], Rotation::cur()),
                WeightColumns::Advice { w, .. } => m.query_advice(w[i], Rotation::cur()),
            };
            // `q · acc' - s · acc - scale · Σ w · x` per lane: with fixed weights (zero off the
            // region) twice the constraint, 2q = t(3 - t), 2s = t(t - 1) and scale 2; with advice
            // weights the selectors themselves and scale q (degree 3 either way).
            let (q, s, scale) = match &weights {
                WeightColumns::Fixed { t, .. } => {
                    let t = m.query_fixed(*t, Rotation::cur());
                    (t.clone() * (constant(3) - t.clone()), t.clone() * (t - constant(1)), constant(2))
                }
                WeightColumns::Advice { q, s, .. } => {
                    let q = m.query_fixed(*q, Rotation::cur());
                    (q.clone(), m.query_fixed(*s, Rotation::cur()), q)
                }
            };
            (0..outputs)
                .map(|k| {
                    let dot = xs.iter().enumerate().fold(Expression::Constant(Fr::zero()), |e, (c, xc)| {
                        e + weight(m, c * outputs + k) * xc.clone()
                    });
                    let next = m.query_advice(acc[k], Rotation::next());
                    let cur = m.query_advice(acc[k], Rotation::cur());
                    q.clone() * next - s.clone() * cur - scale.clone() * dot
                })
                .collect::<Vec<_>>()
        });
        LinearConfig { geometry, x, acc, weights }
    }
}

/// The linear region as layout fills it: rows of inputs, weights and sums, and the virtual cells
/// of the outputs.
#[derive(Clone, Debug)]
pub struct LinearRegion {
    geometry: LinearGeometry,
    /// `rows · C` input slots (`None`: a padding slot, zero, with zero weights).
    x: Vec<Option<AssignedValue<Fr>>>,
    /// `rows · C · K` weights, slot-major within a row (a run's first slot weighs its biases,
    /// which may exceed 64 bits with the rescale's offset).
    w: Vec<Fr>,
    /// With advice weights, the cell each weight is copied from (`None`: a zero of padding).
    w_cells: Vec<Option<AssignedValue<Fr>>>,
    /// The constant 1 every run's first slot copies (laid out on the first run).
    one: Option<AssignedValue<Fr>>,
    /// Whether each row starts a run.
    start: Vec<bool>,
    /// `(rows + 1) · K` running sums: the sum before each row's terms, and after the last row.
    acc: Vec<Fr>,
    /// `(row, lane, virtual cell)` of every output.
    outputs: Vec<(usize, usize, AssignedValue<Fr>)>,
    /// Multiply-accumulates laid out.
    macs: usize,
    /// The most rows the region may take (its circuit's usable rows).
    capacity: usize,
    /// Rows of the runs that did not fit and were laid out in halo2-base's gate instead.
    overflow: usize,
    #[cfg(test)]
    tamper: Option<Tamper>,
}

/// One run of the region with fixed weights: `K` (or fewer) outputs over the same inputs.
pub struct Block<'a> {
    /// The inputs, in term order.
    pub inputs: &'a [AssignedValue<Fr>],
    /// For each output, one weight per input.
    pub weights: &'a [Vec<i64>],
    /// For each output, the constant added (bias and the rescale's offset).
    pub bias: &'a [i128],
}

/// One run of the region with advice weights: `K` (or fewer) outputs over the same inputs.
pub struct CellBlock<'a> {
    /// The inputs, in term order.
    pub inputs: &'a [AssignedValue<Fr>],
    /// For each output, the cell of its weight for each input.
    pub weights: &'a [Vec<AssignedValue<Fr>>],
    /// For each output, the cell of the constant added (bias and the rescale's offset).
    pub bias: &'a [AssignedValue<Fr>],
}

/// A weight slot of a run: its value and, with advice weights, the cell it copies.
type Slot = (Fr, Option<AssignedValue<Fr>>);

impl LinearRegion {
    /// An empty region of `geometry`.
    pub fn new(geometry: LinearGeometry) -> Self {
        LinearRegion {
            geometry,
            x: Vec::new(),
            w: Vec::new(),
            w_cells: Vec::new(),
            one: None,
            start: Vec::new(),
            acc: vec![Fr::zero(); geometry.outputs],
            outputs: Vec::new(),
            macs: 0,
            capacity: usize::MAX,
            overflow: 0,
            #[cfg(test)]
            tamper: None,
        }
    }

    /// This region holding at most `rows` rows (a circuit's usable rows at its k).
    pub fn with_capacity(self, rows: usize) -> Self {
        LinearRegion { capacity: rows, ..self }
    }

    /// Whether a run of `rows` rows fits the region's capacity after what it holds.
    pub fn has_room(&self, rows: usize) -> bool {
        self.start.len() + rows < self.capacity
    }

    /// Records a run of `rows` rows that did not fit (see [`Self::has_room`]) and was laid out
    /// elsewhere.
    pub fn overflowed(&mut self, rows: usize) {
        self.overflow += rows;
    }

    /// Rows of the runs that did not fit.
    pub fn overflow_rows(&self) -> usize {
        self.overflow
    }

    /// Multiply-accumulates laid out (one per input of a run and output of it).
    pub fn macs(&self) -> usize {
        self.macs
    }

    /// The region's geometry.
    pub fn geometry(&self) -> LinearGeometry {
        self.geometry
    }

    /// Rows the region holds cells on (its runs, and the row of the last outputs).
    pub fn rows(&self) -> usize {
        if self.start.is_empty() {
            0
        } else {
            self.start.len() + 1
        }
    }

    /// Appends a run computing `Σ_i weights[k][i] · inputs[i] + bias[k]` for each output `k`, and
    /// returns the outputs as virtual cells that the region's copy constraints bind.
    pub fn push_block(&mut self, ctx: &mut Context<Fr>, block: Block<'_>) -> Vec<AssignedValue<Fr>> {
        let weights: Vec<Vec<Fr>> =
            block.weights.iter().map(|w| w.iter().map(|&v| fe(i128::from(v))).collect()).collect();
        let bias: Vec<Fr> = block.bias.iter().map(|&b| fe(b)).collect();
        self.push_field_block(ctx, block.inputs, &weights, &bias)
    }

    /// [`Self::push_block`] with any field elements as weights and constants (a hash's round
    /// matrix and constants).
    pub fn push_field_block(
        &mut self,
        ctx: &mut Context<Fr>,
        inputs: &[AssignedValue<Fr>],
        weights: &[Vec<Fr>],
        bias: &[Fr],
    ) -> Vec<AssignedValue<Fr>> {
        assert!(!self.geometry.advice_weights, "a region with advice weights takes cell blocks");
        assert!(bias.len() == weights.len(), "a run has one bias per output");
        assert!(weights.iter().all(|w| w.len() == inputs.len()), "one weight per input");
        let weight = |lane: usize, i: usize| -> Slot {
            match i {
                0 => (bias[lane], None),
                _ => (weights[lane][i - 1], None),
            }
        };
        self.push_run(ctx, inputs, weights.len(), &weight)
    }

    /// [`Self::push_block`] with the weights and biases as cells, each copied into the row that
    /// weighs it (a region with advice weights).
    pub fn push_cell_block(&mut self, ctx: &mut Context<Fr>, block: CellBlock<'_>) -> Vec<AssignedValue<Fr>> {
        assert!(self.geometry.advice_weights, "a region with fixed weights takes constant blocks");
        assert!(block.bias.len() == block.weights.len(), "a run has one bias per output");
        assert!(block.weights.iter().all(|w| w.len() == block.inputs.len()), "one weight per input");
        let weight = |lane: usize, i: usize| -> Slot {
            let cell = if i == 0 { block.bias[lane] } else { block.weights[lane][i - 1] };
            (*cell.value(), Some(cell))
        };
        self.push_run(ctx, block.inputs, block.weights.len(), &weight)
    }

    /// Appends a run of `lanes` outputs over `inputs`, `weight(lane, i)` weighing term `i`
    /// (term 0 the constant 1, term `i` input `i - 1`).
    fn push_run(
        &mut self,
        ctx: &mut Context<Fr>,
        inputs: &[AssignedValue<Fr>],
        lanes: usize,
        weight: &dyn Fn(usize, usize) -> Slot,
    ) -> Vec<AssignedValue<Fr>> {
        let LinearGeometry { inputs: c, outputs: k, advice_weights } = self.geometry;
        assert!(lanes <= k, "a run has at most one output per sum");
        let one = *self.one.get_or_insert_with(|| ctx.load_constant(Fr::one()));
        // Slot 0 of the run is the constant, weighted by the biases.
        let terms = inputs.len() + 1;
        let input = |i: usize| if i == 0 { Some(one) } else { inputs.get(i - 1).copied() };
        let first = self.start.len();
        let rows = self.geometry.rows(inputs.len());
        self.macs += lanes * inputs.len();
        for r in 0..rows {
            let row = first + r;
            self.start.push(r == 0);
            #[allow(unused_mut)]
            let mut slots: Vec<_> = (r * c..(r + 1) * c).map(input).collect();
            #[cfg(test)]
            match self.tamper {
                Some(Tamper::WrongInput { row: at, slot }) if at == row => {
                    if let Some(x) = slots[slot].as_mut() {
                        x.value = halo2_base::halo2_proofs::plonk::Assigned::Trivial(*x.value() + Fr::one());
                    }
                }
                Some(Tamper::WrongConstant) if r == 0 => {
                    if let Some(x) = slots[0].as_mut() {
                        x.value = halo2_base::halo2_proofs::plonk::Assigned::Trivial(Fr::from(2u64));
                    }
                }
                _ => {}
            }
            self.x.extend(slots);
            for slot in 0..c {
                for lane in 0..k {
                    let i = r * c + slot;
                    #[allow(unused_mut)]
                    let (mut value, cell) =
                        if lane < lanes && i < terms { weight(lane, i) } else { (Fr::zero(), None) };
                    #[cfg(test)]
                    if self.tamper == Some(Tamper::WrongWeight { row, slot }) && lane == 0 && advice_weights {
                        value += Fr::one();
                    }
                    self.w.push(value);
                    if advice_weights {
                        self.w_cells.push(cell);
                    }
                }
            }
            for lane in 0..k {
                let sum = self.row_sum(row, lane);
                self.acc.push(sum);
            }
        }
        let out_row = first + rows;
        let mut copies = ctx.copy_manager.lock().expect("copy manager lock");
        (0..lanes)
            .map(|lane| {
                #[allow(unused_mut)]
                let mut value = self.acc[out_row * k + lane];
                #[cfg(test)]
                if self.tamper == Some(Tamper::WrongOutput) {
                    value += Fr::one();
                }
                let cell = copies.mock_external_assigned(value);
                self.outputs.push((out_row, lane, cell));
                cell
            })
            .collect()
    }

    /// The running sum of `lane` after `row`, as the honest prover (or a test's tamper) computes it.
    fn row_sum(&self, row: usize, lane: usize) -> Fr {
        let LinearGeometry { inputs: c, outputs: k, .. } = self.geometry;
        #[allow(unused_mut)]
        let (mut carry, mut weight_row) = (!self.start[row], row);
        #[cfg(test)]
        match self.tamper {
            Some(Tamper::NoReset) => carry = true,
            Some(Tamper::PreviousRowWeights) if row > 0 => weight_row = row - 1,
            _ => {}
        }
        let carried = if carry { self.acc[row * k + lane] } else { Fr::zero() };
        #[allow(unused_mut)]
        let mut sum = (0..c).fold(carried, |sum, slot| match self.x[row * c + slot] {
            Some(x) => sum + *x.value() * self.w[(weight_row * c + slot) * k + lane],
            None => sum,
        });
        #[cfg(test)]
        if self.tamper == Some(Tamper::WrongSum { row }) {
            sum += Fr::one();
        }
        sum
    }

    /// Writes the region into the circuit; with `copies`, also its copy constraints (key
    /// generation records them once: the manager keeps them for the second pass).
    pub fn assign(
        &self,
        config: &LinearConfig,
        layouter: &mut impl Layouter<Fr>,
        copies: Option<&SharedCopyConstraintManager<Fr>>,
        fixed: bool,
    ) -> Result<(), Error> {
        let LinearGeometry { inputs: c, outputs: k, .. } = self.geometry;
        assert_eq!(config.geometry, self.geometry, "the region was laid out for the configured geometry");
        layouter.assign_region(
            || "linear layers",
            |mut region| {
                let mut copies = copies.map(|m| m.lock().expect("copy manager lock"));
                for row in 0..self.start.len() {
                    for slot in 0..c {
                        let source = self.x[row * c + slot];
                        let value = source.map_or(Fr::zero(), |x| *x.value());
                        let raw = raw_assign_advice(&mut region, config.x[slot], row, Value::known(value));
                        if let (Some(copies), Some(source)) = (copies.as_mut(), source) {
                            if keep("linear: input copy") {
                                copy_into_region(copies, source, raw.cell());
                            }
                        }
                    }
                    let weights = (row * c * k..(row + 1) * c * k).enumerate();
                    match &config.weights {
                        WeightColumns::Fixed { w, t } if fixed => {
                            let t_value = if self.start[row] { 1u64 } else { 2 };
                            raw_assign_fixed(&mut region, *t, row, Fr::from(t_value));
                            for (i, at) in weights {
                                if self.w[at] != Fr::zero() {
                                    raw_assign_fixed(&mut region, w[i], row, self.w[at]);
                                }
                            }
                        }
                        WeightColumns::Fixed { .. } => {}
                        WeightColumns::Advice { w, q, s } => {
                            if fixed {
                                raw_assign_fixed(&mut region, *q, row, Fr::one());
                                if !self.start[row] {
                                    raw_assign_fixed(&mut region, *s, row, Fr::one());
                                }
                            }
                            for (i, at) in weights {
                                let raw = raw_assign_advice(&mut region, w[i], row, Value::known(self.w[at]));
                                if let (Some(copies), Some(source)) = (copies.as_mut(), self.w_cells[at]) {
                                    if keep("linear: weight copy") {
                                        copy_into_region(copies, source, raw.cell());
                                    }
                                }
                            }
                        }
                    }
                }
                let mut cells = Vec::with_capacity(self.outputs.len());
                for row in 0..self.rows() {
                    for lane in 0..k {
                        let raw = raw_assign_advice(
                            &mut region,
                            config.acc[lane],
                            row,
                            Value::known(self.acc[row * k + lane]),
                        );
                        cells.push(raw.cell());
                    }
                }
                if let Some(copies) = copies.as_mut() {
                    for &(row, lane, cell) in &self.outputs {
                        constrain_virtual_equals_external(&mut region, cell, cells[row * k + lane], copies);
                    }
                }
                Ok(())
            },
        )
    }

    /// Test hook: the prover's deviation from the honest witness, applied as runs are pushed
    /// (the values handed on downstream follow it).
    #[cfg(test)]
    pub fn set_tamper(&mut self, tamper: Tamper) {
        self.tamper = Some(tamper);
    }

    /// Test hook: writes every running sum one row further down (the first row's sums zero).
    #[cfg(test)]
    pub fn shift_sums(&mut self) {
        let k = self.geometry.outputs;
        self.acc.truncate(self.acc.len() - k);
        self.acc.splice(0..0, vec![Fr::zero(); k]);
    }
}

/// How a test's prover deviates from the honest witness of the region.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// One more on the sums after `row` (and onwards, as if the products there were wrong).
    WrongSum {
        /// The row.
        row: usize,
    },
    /// Each row's sums computed with the previous row's weights.
    PreviousRowWeights,
    /// The sums carried over the start of every run (no reset).
    NoReset,
    /// The constant slot of every run holding 2 instead of 1 (the biases doubled).
    WrongConstant,
    /// Input slot `slot` of `row` one more than the cell it copies.
    WrongInput {
        /// The row.
        row: usize,
        /// The slot.
        slot: usize,
    },
    /// The outputs handed downstream one more than the region's sums.
    WrongOutput,
    /// With advice weights, the first lane's weight in `slot` of `row` one more than the cell it
    /// copies (the sums follow it).
    WrongWeight {
        /// The row.
        row: usize,
        /// The slot.
        slot: usize,
    },
}

#[cfg(test)]
mod tests {
    use halo2_base::gates::GateInstructions;
    use halo2_base::halo2_proofs::dev::MockProver;
    use halo2_base::QuantumCell;

    use super::*;
    use crate::circuit::field::to_i128;
    use crate::circuit::lookup::ModelCircuit;

    const K: u32 = 10;
    const X: [i128; 7] = [3, -5, 8, 0, 11, -2, 7];
    /// Three outputs over all seven inputs, then two over the last four (the second run's
    /// inputs are another order of cells, some used twice).
    const W1: [[i64; 7]; 3] = [[2, -1, 0, 4, 1, 3, -6], [0, 5, -2, 1, 0, 0, 9], [-3, 0, 7, 2, -1, 4, 1]];
    const W2: [[i64; 4]; 2] = [[1, 2, -3, 4], [-5, 0, 6, 1]];
    const B1: [i128; 3] = [100, -7, 0];
    const B2: [i128; 2] = [-1, 50];

    fn expected() -> Vec<i128> {
        let first = (0..3).map(|l| (0..7).map(|i| X[i] * W1[l][i] as i128).sum::<i128>() + B1[l]);
        let inputs2 = [X[6], X[0], X[6], X[2]];
        let second = (0..2).map(|l| (0..4).map(|i| inputs2[i] * W2[l][i] as i128).sum::<i128>() + B2[l]);
        first.chain(second).collect()
    }

    /// Lays out the two runs at `geometry` (runs of more outputs than it has sums split), the
    /// outputs public through halo2-base cells; whether the MockProver accepts.
    fn accepted(geometry: LinearGeometry, tamper: Option<Tamper>, shift: bool) -> bool {
        let mut base = crate::circuit::soundness::mock_builder(K as usize);
        let gate = base.range_chip().gate;
        let ctx = base.main(0);
        let x: Vec<_> = X.iter().map(|&v| ctx.load_witness(fe(v))).collect();
        let mut region = LinearRegion::new(geometry);
        if let Some(t) = tamper {
            region.set_tamper(t);
        }
        let mut sums = Vec::new();
        let mut push = |ctx: &mut Context<Fr>, inputs: &[AssignedValue<Fr>], w: &[Vec<i64>], b: &[i128]| {
            if geometry.advice_weights {
                let w: Vec<Vec<_>> =
                    w.iter().map(|w| w.iter().map(|&v| ctx.load_witness(fe(v.into()))).collect()).collect();
                let b: Vec<_> = b.iter().map(|&v| ctx.load_witness(fe(v))).collect();
                region.push_cell_block(ctx, CellBlock { inputs, weights: &w, bias: &b })
            } else {
                region.push_block(ctx, Block { inputs, weights: w, bias: b })
            }
        };
        let w1: Vec<Vec<i64>> = W1.iter().map(|w| w.to_vec()).collect();
        for lanes in (0..3).collect::<Vec<_>>().chunks(geometry.outputs) {
            let weights: Vec<_> = lanes.iter().map(|&l| w1[l].clone()).collect();
            let bias: Vec<_> = lanes.iter().map(|&l| B1[l]).collect();
            sums.extend(push(ctx, &x, &weights, &bias));
        }
        let inputs2 = [x[6], x[0], x[6], x[2]];
        let w2: Vec<Vec<i64>> = W2.iter().map(|w| w.to_vec()).collect();
        for lanes in [0, 1].chunks(geometry.outputs) {
            let weights: Vec<_> = lanes.iter().map(|&l| w2[l].clone()).collect();
            let bias: Vec<_> = lanes.iter().map(|&l| B2[l]).collect();
            sums.extend(push(ctx, &inputs2, &weights, &bias));
        }
        if tamper.is_none() && !shift {
            let values: Vec<_> = sums.iter().map(|s| to_i128(s.value()).unwrap()).collect();
            assert_eq!(values, expected(), "{geometry}: the region's sums");
        }
        if shift {
            region.shift_sums();
        }
        let public: Vec<_> = sums.iter().map(|&s| gate.add(ctx, s, QuantumCell::Constant(Fr::zero()))).collect();
        let instances = public.iter().map(|c| *c.value()).collect();
        base.assigned_instances[0] = public;
        base.calculate_params(Some(20));
        let circuit = ModelCircuit { linear: Some(region), ..ModelCircuit::from_base(base) };
        MockProver::run(K, &circuit, vec![instances]).expect("mock prover runs").verify().is_ok()
    }

    const GEOMETRIES: [LinearGeometry; 7] = [
        LinearGeometry::new(4, 1),
        LinearGeometry::new(2, 2),
        LinearGeometry::new(3, 2),
        LinearGeometry::new(4, 4),
        LinearGeometry::new(2, 1).with_advice_weights(true),
        LinearGeometry::new(2, 2).with_advice_weights(true),
        LinearGeometry::new(3, 2).with_advice_weights(true),
    ];

    #[test]
    fn the_honest_region_computes_every_sum_at_every_geometry() {
        for g in GEOMETRIES {
            assert!(accepted(g, None, false), "{g}: the honest witness must pass");
        }
    }

    #[test]
    fn every_deviation_from_the_honest_region_is_rejected() {
        for g in GEOMETRIES {
            let tampers = [
                Tamper::WrongSum { row: 0 },
                Tamper::WrongSum { row: 1 },
                Tamper::PreviousRowWeights,
                Tamper::NoReset,
                Tamper::WrongConstant,
                Tamper::WrongInput { row: 0, slot: 0 },
                Tamper::WrongInput { row: 1, slot: g.inputs - 1 },
                Tamper::WrongOutput,
            ];
            let weights = [Tamper::WrongWeight { row: 0, slot: 1 }, Tamper::WrongWeight { row: 1, slot: 0 }];
            let extra: &[Tamper] = if g.advice_weights { &weights } else { &[] };
            let tampers = tampers.iter().chain(extra);
            for &t in tampers {
                assert!(!accepted(g, Some(t), false), "{g}: {t:?} must be rejected");
            }
            assert!(!accepted(g, None, true), "{g}: sums one row down must be rejected");
        }
    }

    #[test]
    fn a_dropped_input_copy_lets_a_wrong_input_pass() {
        // The copy constraints carry the wiring: without them the gate alone accepts any input.
        let g = LinearGeometry::new(2, 2);
        let wrong = Tamper::WrongInput { row: 0, slot: 0 };
        assert!(crate::circuit::mutation::without("linear: input copy", || accepted(g, Some(wrong), false)));
    }

    #[test]
    fn a_dropped_weight_copy_lets_a_wrong_weight_pass() {
        // With advice weights the copies also carry the weights: without them the gate takes
        // any weight the prover writes.
        let g = LinearGeometry::new(2, 2).with_advice_weights(true);
        let wrong = Tamper::WrongWeight { row: 1, slot: 0 };
        assert!(crate::circuit::mutation::without("linear: weight copy", || accepted(g, Some(wrong), false)));
    }

    #[test]
    fn geometries_parse_and_print() {
        let g: LinearGeometry = "4x2".parse().unwrap();
        assert_eq!(g, LinearGeometry::new(4, 2));
        assert_eq!(g.to_string(), "4x2");
        assert_eq!((g.advice_columns(), g.fixed_columns(), g.rows(9), g.rows(0)), (6, 9, 3, 1));
        let a = g.with_advice_weights(true);
        assert_eq!((a.advice_columns(), a.fixed_columns(), a.to_string()), (14, 2, "4x2 (weights in advice)".into()));
        for bad in ["4", "0x2", "4x17", "axb", ""] {
            assert!(bad.parse::<LinearGeometry>().is_err(), "{bad}");
        }
    }
}
