//! The model circuit: halo2-base's gate and range columns, plus a lookup argument for the
//! function tables (Exp, Erf, Softplus, ...). Each table is a run of rows `(tag, x, f(x))` in
//! three fixed columns; each lookup copies a pair `(x, y)` of laid-out cells into two advice
//! columns beside a fixed tag, and the argument checks `(tag, x, y)` is a row of the tables.
//! Unused rows hold `(0, 0, 0)`, which the tables' zero rows (every row past the last table)
//! contain. A model without such functions gets exactly halo2-base's circuit.

use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::gates::circuit::{BaseCircuitParams, BaseConfig};
use halo2_base::halo2_proofs::circuit::{Layouter, SimpleFloorPlanner, Value};
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::halo2_proofs::plonk::{Advice, Circuit, Column, ConstraintSystem, Error, Fixed};
use halo2_base::halo2_proofs::poly::Rotation;
use halo2_base::utils::halo2::{constrain_virtual_equals_external, raw_assign_advice, raw_assign_fixed};
use halo2_base::AssignedValue;
use serde::{Deserialize, Serialize};

use super::field::fe;
use super::linear_gate::{LinearConfig, LinearGeometry, LinearRegion};
use super::poseidon_gate::{PoseidonConfig, PoseidonRegion};

/// One table: the output of every input `lo + i · step` for `i` in `0..outputs.len()` (a
/// function's table steps by 1; an embedding's column by the fixed-point one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The first input.
    pub lo: i64,
    /// The distance between two inputs.
    pub step: i64,
    /// `f(lo + i · step)` at row `i`.
    pub outputs: Vec<i64>,
}

/// One lookup: cells `x` and `y` with `y = table[tag - 1](x)`.
#[derive(Clone, Copy, Debug)]
pub struct Lookup {
    /// 1 + the table's position.
    pub tag: u64,
    /// The input cell.
    pub x: AssignedValue<Fr>,
    /// The output cell.
    pub y: AssignedValue<Fr>,
}

/// The columns of the function lookup.
#[derive(Clone, Debug)]
pub struct FunctionLookupConfig {
    /// `(tag, x, y)` of every table row.
    table: [Column<Fixed>; 3],
    /// Sets of (tag, [x, y]) columns the lookups are copied into.
    inputs: Vec<(Column<Fixed>, [Column<Advice>; 2])>,
}

impl FunctionLookupConfig {
    fn configure(meta: &mut ConstraintSystem<Fr>, sets: usize) -> Self {
        let table = [(); 3].map(|_| meta.fixed_column());
        let inputs: Vec<_> = (0..sets)
            .map(|_| {
                let tag = meta.fixed_column();
                let cells = [(); 2].map(|_| {
                    let c = meta.advice_column();
                    meta.enable_equality(c);
                    c
                });
                (tag, cells)
            })
            .collect();
        for &(tag, [x, y]) in &inputs {
            meta.lookup_any("function table", |meta| {
                let t = table.map(|c| meta.query_fixed(c, Rotation::cur()));
                let [t_tag, t_x, t_y] = t;
                vec![
                    (meta.query_fixed(tag, Rotation::cur()), t_tag),
                    (meta.query_advice(x, Rotation::cur()), t_x),
                    (meta.query_advice(y, Rotation::cur()), t_y),
                ]
            });
        }
        FunctionLookupConfig { table, inputs }
    }
}

/// Everything that fixes the circuit's columns.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ModelCircuitParams {
    /// halo2-base's columns.
    pub base: BaseCircuitParams,
    /// Sets of function-lookup columns (0: none, and no lookup argument).
    pub lookup_sets: usize,
    /// The linear-layer gate's row shape (none: no such gate, every product in halo2-base's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<LinearGeometry>,
    /// Whether the circuit has the Poseidon gate (false: hashes in halo2-base's gate).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub poseidon: bool,
}

/// The columns of the model circuit.
#[derive(Clone, Debug)]
pub struct ModelConfig {
    base: BaseConfig<Fr>,
    lookup: Option<FunctionLookupConfig>,
    linear: Option<LinearConfig>,
    poseidon: Option<PoseidonConfig>,
    /// The key binding (see `prove::binding`): one fixed column, no gate reads it
    /// ([`ModelCircuit::binding_column`] finds its commitment in a verifying key).
    binding: Column<Fixed>,
}

/// The model circuit: halo2-base's builder with the function tables and lookups.
pub struct ModelCircuit {
    /// The laid-out gates, range checks and instances.
    pub base: BaseCircuitBuilder<Fr>,
    /// Sets of function-lookup columns.
    pub lookup_sets: usize,
    /// The tables, tag `i + 1` for table `i`.
    pub tables: Vec<Table>,
    /// The lookups, in layout order.
    pub lookups: Vec<Lookup>,
    /// The key binding, at row 0 of its column (only key generation reads it; a prover's value
    /// is ignored, the proving key holds the fixed columns).
    pub binding: Fr,
    /// The linear layers laid out in the linear-layer gate, when the circuit has one.
    pub linear: Option<LinearRegion>,
    /// Whether the linear region's copy constraints were handed to halo2-base's manager (key
    /// generation synthesizes twice; the manager keeps them for the second pass).
    pub linear_copies: std::sync::atomic::AtomicBool,
    /// The hashes laid out in the Poseidon gate, when the circuit has one.
    pub poseidon: Option<PoseidonRegion>,
    /// As `linear_copies`, for the Poseidon region.
    pub poseidon_copies: std::sync::atomic::AtomicBool,
}

impl ModelCircuit {
    /// halo2-base's circuit alone: no tables, no lookups, no gates of ours, a zero binding.
    pub fn from_base(base: BaseCircuitBuilder<Fr>) -> Self {
        ModelCircuit {
            base,
            lookup_sets: 0,
            tables: Vec::new(),
            lookups: Vec::new(),
            binding: Fr::zero(),
            linear: None,
            linear_copies: Default::default(),
            poseidon: None,
            poseidon_copies: Default::default(),
        }
    }

    /// Whether this synthesis is the first of key generation, the one whose copy constraints
    /// go to halo2-base's manager (which keeps them for the second pass); `None` when proving.
    fn record_copies(&self, recorded: &std::sync::atomic::AtomicBool) -> Option<bool> {
        (!self.base.witness_gen_only()).then(|| !recorded.swap(true, std::sync::atomic::Ordering::SeqCst))
    }

    /// Rows the tables take.
    pub fn table_rows(&self) -> usize {
        self.tables.iter().map(|t| t.outputs.len()).sum()
    }

    fn assign_tables(&self, config: &FunctionLookupConfig, layouter: &mut impl Layouter<Fr>) -> Result<(), Error> {
        layouter.assign_region(
            || "function tables",
            |mut region| {
                let mut row = 0;
                for (i, table) in self.tables.iter().enumerate() {
                    let tag = Fr::from(i as u64 + 1);
                    for (j, &y) in table.outputs.iter().enumerate() {
                        let x = i128::from(table.lo) + j as i128 * i128::from(table.step);
                        raw_assign_fixed(&mut region, config.table[0], row, tag);
                        raw_assign_fixed(&mut region, config.table[1], row, fe(x));
                        raw_assign_fixed(&mut region, config.table[2], row, fe(i128::from(y)));
                        row += 1;
                    }
                }
                Ok(())
            },
        )
    }

    fn assign_lookups(&self, config: &FunctionLookupConfig, layouter: &mut impl Layouter<Fr>) -> Result<(), Error> {
        let copy_manager = (!self.base.witness_gen_only()).then(|| self.base.core().copy_manager.clone());
        layouter.assign_region(
            || "function lookups",
            |mut region| {
                let mut copies = copy_manager.as_ref().map(|m| m.lock().expect("copy manager lock"));
                let sets = config.inputs.len();
                for (i, lookup) in self.lookups.iter().enumerate() {
                    let (tag, [cx, cy]) = config.inputs[i % sets];
                    let row = i / sets;
                    raw_assign_fixed(&mut region, tag, row, Fr::from(lookup.tag));
                    for (cell, column) in [(lookup.x, cx), (lookup.y, cy)] {
                        let raw = raw_assign_advice(&mut region, column, row, Value::known(*cell.value()));
                        if let Some(copies) = copies.as_mut() {
                            constrain_virtual_equals_external(&mut region, cell, raw.cell(), copies);
                        }
                    }
                }
                Ok(())
            },
        )
    }

    /// The position of the key-binding column among a verifying key's fixed commitments: the
    /// fixed columns are committed in the order they were configured, and key generation
    /// appends the compressed selectors after them.
    pub fn binding_column(params: &ModelCircuitParams) -> usize {
        let mut meta = ConstraintSystem::<Fr>::default();
        let config = <Self as Circuit<Fr>>::configure_with_params(&mut meta, params.clone());
        config.binding.index()
    }
}

impl Circuit<Fr> for ModelCircuit {
    type Config = ModelConfig;
    type FloorPlanner = SimpleFloorPlanner;
    type Params = ModelCircuitParams;

    fn params(&self) -> Self::Params {
        ModelCircuitParams {
            base: self.base.config_params.clone(),
            lookup_sets: self.lookup_sets,
            // A region no layer chose is no gate.
            linear: self.linear.as_ref().filter(|r| r.rows() > 0).map(LinearRegion::geometry),
            poseidon: self.poseidon.as_ref().is_some_and(|r| r.rows() > 0),
        }
    }

    fn without_witnesses(&self) -> Self {
        unimplemented!("the model circuit is always built from a model")
    }

    fn configure_with_params(meta: &mut ConstraintSystem<Fr>, params: Self::Params) -> Self::Config {
        let k = params.base.k;
        let mut base = BaseConfig::configure(meta, params.base);
        let lookup = (params.lookup_sets > 0).then(|| FunctionLookupConfig::configure(meta, params.lookup_sets));
        let linear = params.linear.map(|g| LinearConfig::configure(meta, g));
        let poseidon = params.poseidon.then(|| PoseidonConfig::configure(meta));
        if lookup.is_some() || linear.is_some() || poseidon.is_some() {
            base.set_usable_rows((1 << k) - meta.minimum_rows());
        }
        let binding = meta.fixed_column();
        ModelConfig { base, lookup, linear, poseidon, binding }
    }

    fn configure(_: &mut ConstraintSystem<Fr>) -> Self::Config {
        unreachable!("the model circuit is configured with its params")
    }

    fn synthesize(&self, config: Self::Config, mut layouter: impl Layouter<Fr>) -> Result<(), Error> {
        // Our regions first: halo2-base's manager resolves the copies of their input cells
        // (recorded as equalities with external cells) and of their outputs (virtual cells
        // mapped here) when it assigns its own region, after this.
        let manager = || self.base.core().copy_manager.clone();
        if let (Some(config), Some(region)) = (&config.linear, self.linear.as_ref().filter(|r| r.rows() > 0)) {
            let record = self.record_copies(&self.linear_copies);
            let copies = (record == Some(true)).then(manager);
            region.assign(config, &mut layouter, copies.as_ref(), record.is_some())?;
        }
        if let (Some(config), Some(region)) = (&config.poseidon, self.poseidon.as_ref().filter(|r| r.rows() > 0)) {
            let record = self.record_copies(&self.poseidon_copies);
            let copies = (record == Some(true)).then(manager);
            region.assign(config, &mut layouter, copies.as_ref(), record.is_some())?;
        }
        Circuit::synthesize(&self.base, config.base, layouter.namespace(|| "model"))?;
        if let Some(lookup) = &config.lookup {
            self.assign_tables(lookup, &mut layouter)?;
            self.assign_lookups(lookup, &mut layouter)?;
        }
        layouter.assign_region(
            || "key binding",
            |mut region| {
                raw_assign_fixed(&mut region, config.binding, 0, self.binding);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::nonlinear::{layout_lookup, Lookups};
    use crate::model::function::{domain, Domain, Function};

    const K: u32 = 12;
    const SCALE: u32 = 5;
    const BITS: u32 = 12;

    /// Lays out `cells` (lookups recorded in the `Lookups` it is given) in one circuit with the
    /// returned cells public; returns whether the MockProver accepts it.
    fn mock_accepts(
        cells: impl FnOnce(
            &mut halo2_base::Context<Fr>,
            &halo2_base::gates::RangeChip<Fr>,
            &mut Lookups,
        ) -> Vec<AssignedValue<Fr>>,
    ) -> bool {
        crate::circuit::soundness::mock_run_with_lookups(K as usize, cells)
    }

    /// Looks up `f(x)` for each `(f, domain, x, hint)`; whether the MockProver accepts.
    fn accepted(cases: &[(Function, Domain, i128, Option<i128>)]) -> bool {
        mock_accepts(|ctx, range, lookups| {
            cases
                .iter()
                .map(|&(f, d, x, hint)| {
                    let x = ctx.load_witness(fe(x));
                    layout_lookup(ctx, range, lookups, x, (f, d, SCALE), BITS, hint)
                })
                .collect()
        })
    }

    #[test]
    fn honest_lookups_pass_and_every_wrong_output_fails() {
        let exp = (Function::Exp, domain(Function::Exp, SCALE, BITS, None).unwrap());
        let erf = (Function::Erf, domain(Function::Erf, SCALE, BITS, None).unwrap());
        assert!(exp.1.clamp_low && erf.1.clamp_low && erf.1.clamp_high);
        // Clamped inputs (far below Exp's table, beyond both ends of Erf's), table inputs.
        let inputs = [-2000i128, -300, -5, 0, 1, 40, 100];
        let mut honest = Vec::new();
        for &x in &inputs {
            honest.push((exp.0, exp.1, x, None));
            honest.push((erf.0, erf.1, x.clamp(-2047, 2047) * 3 / 2, None));
        }
        assert!(accepted(&honest), "the honest lookups must pass");
        for i in 0..honest.len() {
            let (f, d, x, _) = honest[i];
            let truth = f.quantized(d.row_input(x).unwrap(), SCALE).unwrap();
            for wrong in [truth + 1, truth - 1, -truth - 1] {
                let mut cases = honest.clone();
                cases[i].3 = Some(wrong);
                assert!(!accepted(&cases), "{f:?}({x}) = {wrong} instead of {truth} must fail");
            }
        }
        // Another function's value for the same input: the tag keeps the tables apart.
        let softplus = Function::Softplus.quantized(40, SCALE).unwrap();
        assert_ne!(softplus, Function::Exp.quantized(40, SCALE).unwrap());
        assert!(accepted(&[(exp.0, exp.1, 40, None), (Function::Softplus, exp.1, 40, None)]));
        assert!(!accepted(&[(exp.0, exp.1, 40, Some(softplus)), (Function::Softplus, exp.1, 40, None)]));
    }

    #[test]
    fn an_input_outside_an_unclamped_table_has_no_row() {
        let narrow = Domain { lo: -32, hi: 32, clamp_low: false, clamp_high: false };
        assert!(accepted(&[(Function::Exp, narrow, 32, None), (Function::Exp, narrow, -32, None)]));
        for x in [33i128, -33, 1000] {
            let value = Function::Exp.quantized(x, SCALE);
            assert!(!accepted(&[(Function::Exp, narrow, x, value)]), "exp({x}) outside [-32, 32] must fail");
        }
    }

    /// Looks up `(x, y)` pairs in the two columns of a 3-row embedding at step 32 (one at scale
    /// 5), rows -3..3 (negative indices wrap); returns whether the MockProver accepts.
    fn rows_accepted(cases: &[(i128, usize, i128)]) -> bool {
        let table = [[7i64, -3], [0, 12], [-40, 5]];
        mock_accepts(|ctx, _, lookups| {
            cases
                .iter()
                .map(|&(x, column, y)| {
                    let tag = lookups.rows_tag("embedding", column, || Table {
                        lo: -3 * 32,
                        step: 32,
                        outputs: (0..6).map(|i| table[i % 3][column]).collect(),
                    });
                    let x = ctx.load_witness(fe(x));
                    crate::circuit::nonlinear::layout_row_lookup(ctx, lookups, x, tag, y)
                })
                .collect()
        })
    }

    #[test]
    fn an_embedding_lookup_accepts_its_rows_entry_only() {
        let honest = [(0, 0, 7), (32, 1, 12), (64, 0, -40), (-32, 1, 5), (-96, 0, 7)];
        assert!(rows_accepted(&honest), "the honest rows must pass");
        for i in 0..honest.len() {
            let (x, column, y) = honest[i];
            // Any other value: one off, the other column's, another row's.
            for wrong in [y + 1, y - 1, if column == 0 { 12 } else { 7 }, 0] {
                if wrong == y {
                    continue;
                }
                let mut cases = honest;
                cases[i] = (x, column, wrong);
                assert!(!rows_accepted(&cases), "row {x} column {column}: {wrong} instead of {y} must fail");
            }
        }
        // An index between rows, or beyond them, has no row.
        for x in [16i128, 1, 96, -128] {
            assert!(!rows_accepted(&[(x, 0, 7)]) && !rows_accepted(&[(x, 0, 0)]), "index {x} must fail");
        }
    }
}
