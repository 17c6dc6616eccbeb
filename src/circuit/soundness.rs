//! The shared soundness check every gadget's tests use: the honest witness satisfies the circuit
//! and each tampered witness does not, each run with the public outputs most favourable to it.

use halo2_base::gates::circuit::{builder::BaseCircuitBuilder, CircuitBuilderStage};
use halo2_base::gates::RangeChip;
use halo2_base::halo2_proofs::dev::MockProver;
use halo2_base::halo2_proofs::halo2curves::bn256::Fr;
use halo2_base::{AssignedValue, Context};

use super::lookup::ModelCircuit;
use super::nonlinear::Lookups;

const K: usize = 12;

/// A gadget under test: lays out cells and returns those exposed as public outputs.
pub(crate) trait GadgetFn: Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> {}

impl<F: Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>>> GadgetFn for F {}

/// An empty halo2-base builder for the MockProver at 2^k rows, whose range checks look up
/// `k - 1` bits at once, with one instance column.
pub(crate) fn mock_builder(k: usize) -> BaseCircuitBuilder<Fr> {
    BaseCircuitBuilder::<Fr>::from_stage(CircuitBuilderStage::Mock)
        .use_k(k)
        .use_lookup_bits(k - 1)
        .use_instance_columns(1)
}

/// Runs a gadget in the MockProver; returns whether it is satisfied and the output values.
/// `instances` overrides the public values (else the outputs' own values are used).
pub(crate) fn mock_run(gadget: &(dyn GadgetFn + '_), instances: Option<Vec<Fr>>) -> (bool, Vec<Fr>) {
    mock_run_at(K, gadget, instances)
}

/// [`mock_run`] in a circuit of 2^k rows, whose range checks look up `k - 1` bits at once.
pub(crate) fn mock_run_at(k: usize, gadget: &(dyn GadgetFn + '_), instances: Option<Vec<Fr>>) -> (bool, Vec<Fr>) {
    let mut builder = mock_builder(k);
    let range = builder.range_chip();
    let outputs = gadget(builder.main(0), &range);
    let values: Vec<Fr> = outputs.iter().map(|c| *c.value()).collect();
    builder.assigned_instances[0] = outputs;
    builder.calculate_params(Some(20));
    let instances = instances.unwrap_or_else(|| values.clone());
    let ok = MockProver::run(k as u32, &builder, vec![instances]).expect("mock prover runs").verify().is_ok();
    (ok, values)
}

/// Whether a gadget that records function or range lookups in the `Lookups` it is given, with
/// its own outputs public, satisfies the MockProver in a model circuit of 2^k rows (one set of
/// lookup columns).
pub(crate) fn mock_run_with_lookups(
    k: usize,
    gadget: impl FnOnce(&mut Context<Fr>, &RangeChip<Fr>, &mut Lookups) -> Vec<AssignedValue<Fr>>,
) -> bool {
    let mut builder = mock_builder(k);
    let range = builder.range_chip();
    let mut lookups = Lookups::default();
    let outputs = gadget(builder.main(0), &range, &mut lookups);
    let instances = outputs.iter().map(|c| *c.value()).collect();
    builder.assigned_instances[0] = outputs;
    builder.calculate_params(Some(20));
    let circuit = ModelCircuit {
        lookup_sets: 1,
        tables: lookups.tables,
        lookups: lookups.lookups,
        ..ModelCircuit::from_base(builder)
    };
    MockProver::run(k as u32, &circuit, vec![instances]).expect("mock prover runs").verify().is_ok()
}

/// The honest gadget is satisfied; every tampered one is not, even with its own outputs public.
pub(crate) fn assert_sound<'a, F>(honest: F, tampered: Vec<F>)
where
    F: Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>> + 'a,
{
    assert!(mock_run(&honest, None).0, "the honest witness must satisfy the circuit");
    for (i, t) in tampered.iter().enumerate() {
        assert!(!mock_run(t, None).0, "tampered witness #{i} must not satisfy the circuit");
    }
}

/// The honest gadget is satisfied with its outputs public; it fails when any public output is
/// changed, and a prover who swaps in other output cells fails against the honest outputs.
pub(crate) fn assert_outputs_bound<F, G>(honest: F, lying: G)
where
    F: Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>>,
    G: Fn(&mut Context<Fr>, &RangeChip<Fr>) -> Vec<AssignedValue<Fr>>,
{
    let (ok, values) = mock_run(&honest, None);
    assert!(ok, "the honest witness must satisfy the circuit");
    for i in 0..values.len() {
        let mut wrong = values.clone();
        wrong[i] += Fr::from(1u64);
        assert!(!mock_run(&honest, Some(wrong)).0, "a wrong public output #{i} must be rejected");
    }
    assert!(!mock_run(&lying, Some(values)).0, "a lying prover must be rejected");
}
