//! The Solidity verifier: generated from the verifying key by our generator (snark-verifier's
//! verification traced into a program, rendered as Solidity), compiled with solc (through
//! foundry-compilers); snark-verifier's own generated verifier is kept as the reference the
//! differential tests compare ours with.

use std::path::Path;

use halo2_base::gates::circuit::builder::BaseCircuitBuilder;
use halo2_base::halo2_proofs::halo2curves::bn256::{Bn256, Fr, G1Affine};
use halo2_base::halo2_proofs::plonk::VerifyingKey;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use snark_verifier_sdk::halo2::aggregation::AggregationCircuit;
use snark_verifier_sdk::SHPLONK;

use crate::error::EvmError;
use crate::error::Result;

/// EIP-170: the most runtime bytecode a contract may have.
pub const MAX_RUNTIME_BYTES: usize = 24_576;
/// The verifier contract's name (ours and snark-verifier's).
pub const VERIFIER_CONTRACT: &str = "Halo2Verifier";

/// A compiled contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CompiledContract {
    /// Contract name.
    pub name: String,
    /// Creation bytecode.
    #[serde(with = "hex_bytes")]
    pub bytecode: Vec<u8>,
    /// Runtime (deployed) bytecode.
    #[serde(with = "hex_bytes")]
    pub runtime: Vec<u8>,
    /// The ABI.
    pub abi: Value,
    /// The solc version that compiled it.
    pub solc_version: String,
    /// For a verifier: whether its verifying key was made with the development SRS, whose
    /// secret is public (anyone can forge proofs it accepts). `deploy` reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_srs: Option<bool>,
    /// For a verifier: the digest of the circuit whose verifying key it was generated from;
    /// `deploy` checks that the model it registers is that circuit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_digest: Option<String>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", hex::encode(bytes)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text.strip_prefix("0x").unwrap_or(&text)).map_err(serde::de::Error::custom)
    }
}

/// Generates the direct Solidity verifier (our generator, see [`super::program`] and
/// [`super::yul`]) of a circuit with one instance column of `num_instances`; for an aggregation
/// circuit (`aggregation`), the verifier also decides the accumulator its first instances carry.
pub fn generate_verifier(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    num_instances: usize,
    aggregation: bool,
    header: &super::yul::Header,
) -> Result<String> {
    let program = super::program::trace_verifier(params, vk, num_instances, aggregation)?;
    Ok(super::yul::render_direct(&program, header))
}

/// snark-verifier's own generated verifier for the same key, the reference the differential
/// tests hold ours to. The pragma is relaxed from its exact `0.8.19` to `^0.8.19`; compile it
/// with [`Optimizer::Off`].
pub fn snark_verifier_source(
    params: &ParamsKZG<Bn256>,
    vk: &VerifyingKey<G1Affine>,
    num_instances: usize,
    aggregation: bool,
) -> String {
    let code = if aggregation {
        snark_verifier_sdk::evm::gen_evm_verifier_sol_code::<AggregationCircuit, SHPLONK>(
            params,
            vk,
            vec![num_instances],
        )
    } else {
        snark_verifier_sdk::evm::gen_evm_verifier_sol_code::<BaseCircuitBuilder<Fr>, SHPLONK>(
            params,
            vk,
            vec![num_instances],
        )
    };
    require_canonical_scalars(&code.replacen("pragma solidity 0.8.19;", "pragma solidity ^0.8.19;", 1))
}

/// snark-verifier's verifier reads every scalar of its calldata (the public instances, the
/// proof's evaluations) modulo the field, so `x` and `x + r` verify alike: a statement could be
/// re-labelled with other words. Each such read is rewritten to refuse a word at or above the
/// modulus (the verification then fails, as it does for a point off the curve), which is also
/// what the native verifier does.
fn require_canonical_scalars(code: &str) -> String {
    let rewrite = |line: &str| -> Option<String> {
        let args = line.trim().strip_prefix("mstore(")?.strip_suffix("), f_q))")?;
        let (ptr, offset) = args.split_once(", mod(calldataload(")?;
        let hex =
            |s: &str| s.strip_prefix("0x").is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
        (hex(ptr) && hex(offset)).then(|| {
            format!(
                "{{ let word := calldataload({offset}) success := and(success, lt(word, f_q)) mstore({ptr}, word) }}"
            )
        })
    };
    let mut out = String::with_capacity(code.len() + code.len() / 8);
    for line in code.lines() {
        out.push_str(&rewrite(line).unwrap_or_else(|| line.to_string()));
        out.push('\n');
    }
    out
}

/// How solc optimizes a contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Optimizer {
    /// Everything off: snark-verifier's verifiers, which fail with "stack too deep" otherwise.
    Off,
    /// The bytecode optimizer (peephole, common subexpressions, constants, deduplicated code)
    /// without the Yul optimizer's steps: for our generated verifiers, whose assembly is
    /// already straight-line and which the Yul optimizer's hoisting of repeated expressions
    /// into variables runs out of stack.
    Bytecode,
    /// Solc's whole optimizer: hand-written contracts (the registry, the adapters).
    Full,
}

impl Optimizer {
    fn settings(self) -> Value {
        match self {
            Optimizer::Off => json!({ "enabled": false }),
            Optimizer::Bytecode => json!({ "enabled": true, "runs": 200, "details": { "yul": false } }),
            Optimizer::Full => json!({ "enabled": true, "runs": 200 }),
        }
    }
}

/// Compiles Solidity `sources` (file name, text; imports resolve among them) with the solc at
/// `solc` and returns the `contracts` asked for (file name, contract name), in order, on the
/// legacy pipeline (not via-IR) with the optimizer `optimizer`.
pub fn compile_sources(
    solc: &Path,
    sources: &[(&str, &str)],
    contracts: &[(&str, &str)],
    optimizer: Optimizer,
) -> Result<Vec<CompiledContract>> {
    let compiler = foundry_compilers::solc::Solc::new(solc)
        .map_err(|e| EvmError::Solc(format!("cannot run {} --version: {e}", solc.display())))?;
    let sources: serde_json::Map<String, Value> =
        sources.iter().map(|(file, text)| (file.to_string(), json!({ "content": text }))).collect();
    let input = json!({
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "optimizer": optimizer.settings(),
            "viaIR": false,
            "outputSelection": { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } }
        }
    });
    let raw = compiler.compile_output(&input).map_err(|e| EvmError::Solc(format!("{} failed: {e}", solc.display())))?;
    let output: Value = serde_json::from_slice(&raw)
        .map_err(|e| EvmError::Solc(format!("solc printed something that is not JSON: {e}")))?;
    let errors: Vec<String> = output["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["severity"] == "error")
        .map(|e| e["formattedMessage"].as_str().or(e["message"].as_str()).unwrap_or("unknown error").to_string())
        .collect();
    if !errors.is_empty() {
        return Err(EvmError::Solc(errors.join("\n")).into());
    }
    contracts
        .iter()
        .map(|(file, name)| {
            let contract = &output["contracts"][*file][*name];
            let hex_field = |v: &Value, what: &str| -> Result<Vec<u8>> {
                let text = v.as_str().ok_or_else(|| EvmError::Solc(format!("solc returned no {what} for {name}")))?;
                hex::decode(text)
                    .map_err(|e| EvmError::Solc(format!("solc returned a malformed {what} for {name}: {e}")).into())
            };
            Ok(CompiledContract {
                name: name.to_string(),
                bytecode: hex_field(&contract["evm"]["bytecode"]["object"], "bytecode")?,
                runtime: hex_field(&contract["evm"]["deployedBytecode"]["object"], "runtime bytecode")?,
                abi: contract["abi"].clone(),
                solc_version: compiler.version.to_string(),
                insecure_srs: None,
                circuit_digest: None,
            })
        })
        .collect()
}

/// Compiles a generated verifier (ours, with [`Optimizer::Bytecode`]; snark-verifier's with
/// [`Optimizer::Off`]) and checks that it fits EIP-170.
pub fn compile_verifier(solc: &Path, source: &str, optimizer: Optimizer) -> Result<CompiledContract> {
    let compiled =
        compile_sources(solc, &[("Verifier.sol", source)], &[("Verifier.sol", VERIFIER_CONTRACT)], optimizer)?
            .pop()
            .expect("one contract asked for");
    if compiled.runtime.len() > MAX_RUNTIME_BYTES {
        return Err(EvmError::ContractTooLarge { size: compiled.runtime.len() }.into());
    }
    Ok(compiled)
}

#[cfg(test)]
mod tests {
    use super::require_canonical_scalars;

    #[test]
    fn every_scalar_read_from_calldata_must_be_canonical() {
        let code = "let f_q := 0x30\nmstore(0xa0, mod(calldataload(0x0), f_q))\n    mstore(0x1c0, mod(calldataload(0x1e4), f_q))\nmstore(0x20, 1)\n";
        let out = require_canonical_scalars(code);
        assert!(!out.contains("mod(calldataload"), "{out}");
        assert!(
            out.contains("{ let word := calldataload(0x0) success := and(success, lt(word, f_q)) mstore(0xa0, word) }")
        );
        assert!(out.contains("calldataload(0x1e4) success := and(success, lt(word, f_q)) mstore(0x1c0, word)"));
        assert!(out.contains("mstore(0x20, 1)"));
    }
}
