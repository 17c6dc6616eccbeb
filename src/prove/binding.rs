//! The key binding: what a key's header says about its circuit (the layout of its public
//! instances, the instance words that tie a proof to the model's weights, whether the first
//! instances are an accumulator the verifier must decide) is hashed to a field element that the
//! circuit holds in a fixed column of its own, at row 0. That column's commitment is part of the
//! halo2 verifying key and equals `binding · [L_0(τ)]₁`, which anyone holding the SRS recomputes:
//! a header edited after setup (a relabelled output, a changed scale, a removed aggregation
//! flag) no longer matches its key and is refused, and a proof file's own metadata is never
//! needed to read what a proof says.

use std::path::Path;

use halo2_base::halo2_proofs::arithmetic::CurveAffine;
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_base::halo2_proofs::halo2curves::ff::PrimeField;
use halo2_base::halo2_proofs::halo2curves::group::Curve;
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::commitment::{Blind, Params};
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::keys::KeyHeader;
use super::proof::{fr_from_hex, fr_to_hex};
use crate::circuit::instances::InstanceSpan;
use crate::error::{Error, Result};
use crate::error::{ProveError, SrsError};

/// How a circuit's proofs are tied to the model's weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Weights {
    /// The weights are constants of the circuit: the verifying key itself binds them.
    Fixed,
    /// The weights (public) or their commitment (hashed) are public instances: a proof is of
    /// this model only when those words equal the key's `bound` words.
    Instances,
    /// Private weights, or an aggregation that does not expose its proofs' weight instances: a
    /// proof says only that some weights of this architecture give its output.
    Unbound,
}

impl std::fmt::Display for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Weights::Fixed => "fixed in the circuit",
            Weights::Instances => "bound by public instances",
            Weights::Unbound => "not bound (private)",
        })
    }
}

/// A public instance a proof of this model must carry with exactly this value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundWord {
    /// Its position among the instances.
    pub index: usize,
    /// Its value: a 0x-prefixed 32-byte big-endian word.
    pub word: String,
}

/// The weight binding of an application circuit: the instance words of its public params or of
/// its params commitment, read from a layout with the instances laid out at setup (the params
/// do not depend on the input); `private` when the params are neither fixed nor exposed.
pub fn application_weights(layout: &[InstanceSpan], instances: &[Fr], private: bool) -> (Weights, Vec<BoundWord>) {
    let bound: Vec<BoundWord> = layout
        .iter()
        .filter(|s| s.kind == "param" || s.kind == "params")
        .flat_map(|s| s.first_instance..s.first_instance + s.instances)
        .filter_map(|index| instances.get(index).map(|w| BoundWord { index, word: fr_to_hex(w) }))
        .collect();
    let weights = match (bound.is_empty(), private) {
        (false, _) => Weights::Instances,
        (true, true) => Weights::Unbound,
        (true, false) => Weights::Fixed,
    };
    (weights, bound)
}

/// The field element a header binds: SHA-256 of everything in it that describes the circuit and
/// its instances (not the break points, known only after key generation, nor the key's kind or
/// the writing zkinfer's version), 31 bytes of it so that it is below the field's modulus.
pub fn binding_of(header: &KeyHeader) -> Fr {
    let statement = serde_json::json!({
        "binding": 1,
        "circuit_digest": header.circuit_digest,
        "shape": header.shape,
        "srs": header.srs,
        "aggregation": header.aggregation,
        "instance_layout": header.instance_layout,
        "weights": header.weights,
        "bound": header.bound,
    });
    let digest = Sha256::digest(serde_json::to_vec(&statement).expect("headers serialize"));
    let mut repr = [0u8; 32];
    repr[..31].copy_from_slice(&digest[..31]);
    Fr::from_repr(repr).expect("31 bytes are below the modulus")
}

/// The commitment of a fixed column holding `binding` at row 0 and zeros elsewhere, at the SRS's
/// size (which must be the key's).
pub fn binding_commitment(params: &ParamsKZG<Bn256>, vk: &VerifyingKey<G1Affine>, binding: Fr) -> G1Affine {
    let mut column = vk.get_domain().empty_lagrange();
    column[0] = binding;
    params.commit_lagrange(&column, Blind::default()).to_affine()
}

/// Checks that a key's header is the one its circuit was made with; `params` is the SRS at the
/// key's k.
pub fn check_binding(
    path: &Path,
    header: &KeyHeader,
    vk: &VerifyingKey<G1Affine>,
    params: &ParamsKZG<Bn256>,
) -> Result<()> {
    let edited = || {
        Error::artifact(
            path,
            "the key's header does not match the key (its instance layout, weights or aggregation fields were \
             edited after setup, or it belongs to another key); use the file `zkinfer setup` or `zkinfer aggregate` wrote",
        )
    };
    let column = crate::circuit::lookup::ModelCircuit::binding_column(&header.shape.params());
    let committed = vk.fixed_commitments().get(column).ok_or_else(edited)?;
    if params.k() != vk.get_domain().k() {
        return Err(SrsError::Unusable(format!(
            "the SRS has k = {}, the key k = {}: load the SRS at the key's size",
            params.k(),
            vk.get_domain().k()
        ))
        .into());
    }
    let expected = binding_commitment(params, vk, binding_of(header));
    if bool::from(committed.is_on_curve()) && *committed == expected {
        Ok(())
    } else {
        Err(edited())
    }
}

/// Checks `words` (a proof's instances) against the key's bound words; names the first that
/// differs.
pub fn check_bound_words(header: &KeyHeader, words: &[Fr]) -> Result<()> {
    for bound in &header.bound {
        let want = fr_from_hex(&bound.word);
        let got = words.get(bound.index);
        if want.is_none() || got.is_none() || want.as_ref() != got {
            return Err(ProveError::Rejected(format!(
                "the proof is valid but for other weights: instance {} is {}, the key's model has {}",
                bound.index,
                got.map(fr_to_hex).unwrap_or_else(|| "missing".into()),
                bound.word
            ))
            .into());
        }
    }
    Ok(())
}
