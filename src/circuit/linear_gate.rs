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

/// The shape of a row of the linear region: `inputs` slots and `outputs` running sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LinearGeometry {
    /// Input slots per row (`C`).
    pub inputs: usize,
    /// Running sums per row (`K`), each with its own weight for every input slot.
    pub outputs: usize,
}

impl LinearGeometry {
    /// Advice columns the region adds (all with equality).
    pub fn advice_columns(&self) -> usize {
        self.inputs + self.outputs
    }

    /// Fixed columns the region adds: `t` and the weights.
    pub fn fixed_columns(&self) -> usize {
        1 + self.inputs * self.outputs
    }

    /// Rows a run of `terms` inputs takes (its constant slot included).
    pub fn rows(&self, terms: usize) -> usize {
        (terms + 1).div_ceil(self.inputs)
    }
}

impl std::fmt::Display for LinearGeometry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.inputs, self.outputs)
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
        Ok(LinearGeometry { inputs, outputs })
    }
}

/// The region's columns.
#[derive(Clone, Debug)]
pub struct LinearConfig {
    geometry: LinearGeometry,
    x: Vec<Column<Advice>>,
    acc: Vec<Column<Advice>>,
    /// `w[c * K + k]`: the weight of slot `c` in sum `k`.
    w: Vec<Column<Fixed>>,
    /// 0 off the region, 1 on a run's first row, 2 on its other rows.
    t: Column<Fixed>,
}

impl LinearConfig {
    /// Configures the columns and the gate.
    pub fn configure(meta: &mut ConstraintSystem<Fr>, geometry: LinearGeometry) -> Self {
        let LinearGeometry { inputs, outputs } = geometry;
        let equality = |meta: &mut ConstraintSystem<Fr>| {
            let c = meta.advice_column();
            meta.enable_equality(c);
            c
        };
        let x: Vec<_> = (0..inputs).map(|_| equality(meta)).collect();
        let acc: Vec<_> = (0..outputs).map(|_| equality(meta)).collect();
        let w: Vec<_> = (0..inputs * outputs).map(|_| meta.fixed_column()).collect();
        let t = meta.fixed_column();
        meta.create_gate("linear layer", |m| {
            // Twice the constraint: 2q = t(3 - t), 2s = t(t - 1).
            let t = m.query_fixed(t, Rotation::cur());
            let constant = |v: u64| Expression::Constant(Fr::from(v));
            let q2 = t.clone() * (constant(3) - t.clone());
            let s2 = t.clone() * (t - constant(1));
            let xs: Vec<_> = x.iter().map(|&c| m.query_advice(c, Rotation::cur())).collect();
            (0..outputs)
                .map(|k| {
                    let dot = xs.iter().enumerate().fold(Expression::Constant(Fr::zero()), |e, (c, xc)| {
                        e + m.query_fixed(w[c * outputs + k], Rotation::cur()) * xc.clone()
                    });
                    let next = m.query_advice(acc[k], Rotation::next());
                    let cur = m.query_advice(acc[k], Rotation::cur());
                    q2.clone() * next - s2.clone() * cur - constant(2) * dot
                })
                .collect::<Vec<_>>()
        });
        LinearConfig { geometry, x, acc, w, t }
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
    w: Vec<i128>,
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
    #[cfg(test)]
    tamper: Option<Tamper>,
}

/// One run of the region: `K` (or fewer) outputs over the same inputs.
pub struct Block<'a> {
    /// The inputs, in term order.
    pub inputs: &'a [AssignedValue<Fr>],
    /// For each output, one weight per input.
    pub weights: &'a [Vec<i64>],
    /// For each output, the constant added (bias and the rescale's offset).
    pub bias: &'a [i128],
}

impl LinearRegion {
    /// An empty region of `geometry`.
    pub fn new(geometry: LinearGeometry) -> Self {
        LinearRegion {
            geometry,
            x: Vec::new(),
            w: Vec::new(),
            one: None,
            start: Vec::new(),
            acc: vec![Fr::zero(); geometry.outputs],
            outputs: Vec::new(),
            macs: 0,
            #[cfg(test)]
            tamper: None,
        }
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
        let LinearGeometry { inputs: c, outputs: k } = self.geometry;
        let lanes = block.weights.len();
        assert!(lanes <= k && block.bias.len() == lanes, "a run has at most one output per sum");
        assert!(block.weights.iter().all(|w| w.len() == block.inputs.len()), "one weight per input");
        let one = *self.one.get_or_insert_with(|| ctx.load_constant(Fr::one()));
        // Slot 0 of the run is the constant, weighted by the biases.
        let terms = block.inputs.len() + 1;
        let input = |i: usize| if i == 0 { Some(one) } else { block.inputs.get(i - 1).copied() };
        let weight = |lane: usize, i: usize| match i {
            _ if lane >= lanes || i >= terms => 0,
            0 => block.bias[lane],
            _ => i128::from(block.weights[lane][i - 1]),
        };
        let first = self.start.len();
        let rows = self.geometry.rows(block.inputs.len());
        self.macs += lanes * block.inputs.len();
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
                self.w.extend((0..k).map(|lane| weight(lane, r * c + slot)));
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
        let LinearGeometry { inputs: c, outputs: k } = self.geometry;
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
            Some(x) => sum + *x.value() * fe(self.w[(weight_row * c + slot) * k + lane]),
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
        let LinearGeometry { inputs: c, outputs: k } = self.geometry;
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
                    if fixed {
                        let t = if self.start[row] { 1u64 } else { 2 };
                        raw_assign_fixed(&mut region, config.t, row, Fr::from(t));
                        for i in 0..c * k {
                            let w = self.w[row * c * k + i];
                            if w != 0 {
                                raw_assign_fixed(&mut region, config.w[i], row, fe(w));
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
}

#[cfg(test)]
mod tests {
    use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
    use halo2_base::gates::circuit::CircuitBuilderStage;
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
        let mut base = BaseCircuitBuilder::<Fr>::from_stage(CircuitBuilderStage::Mock)
            .use_k(K as usize)
            .use_lookup_bits(K as usize - 1)
            .use_instance_columns(1);
        let gate = base.range_chip().gate;
        let ctx = base.main(0);
        let x: Vec<_> = X.iter().map(|&v| ctx.load_witness(fe(v))).collect();
        let mut region = LinearRegion::new(geometry);
        if let Some(t) = tamper {
            region.set_tamper(t);
        }
        let mut sums = Vec::new();
        let w1: Vec<Vec<i64>> = W1.iter().map(|w| w.to_vec()).collect();
        for lanes in (0..3).collect::<Vec<_>>().chunks(geometry.outputs) {
            let weights: Vec<_> = lanes.iter().map(|&l| w1[l].clone()).collect();
            let bias: Vec<_> = lanes.iter().map(|&l| B1[l]).collect();
            sums.extend(region.push_block(ctx, Block { inputs: &x, weights: &weights, bias: &bias }));
        }
        let inputs2 = [x[6], x[0], x[6], x[2]];
        let w2: Vec<Vec<i64>> = W2.iter().map(|w| w.to_vec()).collect();
        for lanes in [0, 1].chunks(geometry.outputs) {
            let weights: Vec<_> = lanes.iter().map(|&l| w2[l].clone()).collect();
            let bias: Vec<_> = lanes.iter().map(|&l| B2[l]).collect();
            sums.extend(region.push_block(ctx, Block { inputs: &inputs2, weights: &weights, bias: &bias }));
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

    const GEOMETRIES: [LinearGeometry; 4] = [
        LinearGeometry { inputs: 4, outputs: 1 },
        LinearGeometry { inputs: 2, outputs: 2 },
        LinearGeometry { inputs: 3, outputs: 2 },
        LinearGeometry { inputs: 4, outputs: 4 },
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
            for t in tampers {
                assert!(!accepted(g, Some(t), false), "{g}: {t:?} must be rejected");
            }
            assert!(!accepted(g, None, true), "{g}: sums one row down must be rejected");
        }
    }

    #[test]
    fn a_dropped_input_copy_lets_a_wrong_input_pass() {
        // The copy constraints carry the wiring: without them the gate alone accepts any input.
        let g = LinearGeometry { inputs: 2, outputs: 2 };
        let wrong = Tamper::WrongInput { row: 0, slot: 0 };
        assert!(crate::circuit::mutation::without("linear: input copy", || accepted(g, Some(wrong), false)));
    }

    #[test]
    fn geometries_parse_and_print() {
        let g: LinearGeometry = "4x2".parse().unwrap();
        assert_eq!(g, LinearGeometry { inputs: 4, outputs: 2 });
        assert_eq!(g.to_string(), "4x2");
        assert_eq!((g.advice_columns(), g.fixed_columns(), g.rows(9), g.rows(0)), (6, 9, 3, 1));
        for bad in ["4", "0x2", "4x17", "axb", ""] {
            assert!(bad.parse::<LinearGeometry>().is_err(), "{bad}");
        }
    }
}
