//! The Halo2 layout of a quantized model on halo2-base: one gadget per op family, each taking
//! its witness hints as arguments so that tests can feed it wrong ones.

pub mod commit;
pub mod field;
pub mod instances;
pub mod layout;
pub mod linear;
pub mod linear_gate;
pub mod lookup;
mod mutation;
pub mod nonlinear;
pub mod pool;
pub mod poseidon_gate;
pub mod shape;

#[cfg(test)]
pub(crate) mod soundness;
#[cfg(test)]
mod uniqueness;

pub use layout::{build_circuit, build_circuit_for, choose_shape, CircuitShape, LaidOut};
pub use layout::{zero_inputs, Stage, BLINDING_ROWS};
