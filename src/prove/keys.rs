//! Proving and verifying keys on disk: a versioned header (JSON) followed by halo2's bytes, so
//! that a key from another circuit or another zkinfer version is refused before it is read.

use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::G1Affine;
use halo2_base::halo2_proofs::plonk::{ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::SerdeFormat;
use serde::{Deserialize, Serialize};

use super::srs::SrsInfo;
use crate::circuit::lookup::ModelCircuit;
use crate::circuit::CircuitShape;
use crate::error::ProveError;
use crate::error::{read_file, write_file, Error, Result};

const MAGIC: &[u8; 8] = b"ZKINFER\0";
/// Version of the key file layout; bumped whenever the circuit or the layout changes.
pub const KEY_FORMAT_VERSION: u32 = 2;

/// What a key file says about itself.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct KeyHeader {
    /// "proving key" or "verifying key".
    pub kind: String,
    /// Key layout version ([`KEY_FORMAT_VERSION`]).
    pub format_version: u32,
    /// The zkinfer version that wrote it.
    pub zkinfer_version: String,
    /// Digest of the compiled circuit the key belongs to.
    pub circuit_digest: String,
    /// The circuit's geometry, needed to read the key and to prove.
    pub shape: CircuitShape,
    /// Where halo2-base broke the virtual advice column into physical columns at keygen; the
    /// prover must break it at the same places.
    pub break_points: Vec<Vec<usize>>,
    /// The SRS the key was made with.
    pub srs: SrsInfo,
    /// For an aggregation circuit's keys: what it aggregates (its first public instances are
    /// then the accumulator every verifier must decide).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregation: Option<AggregationInfo>,
    /// What each run of public instances is: what `verify` prints and the registry records are
    /// read through this layout, never through a proof file's.
    pub instance_layout: Vec<crate::circuit::instances::InstanceSpan>,
    /// How proofs are tied to the model's weights.
    pub weights: super::binding::Weights,
    /// The instance words that tie a proof to the model's weights (public params, params
    /// commitments), with the values this key's model has.
    pub bound: Vec<super::binding::BoundWord>,
}

impl KeyHeader {
    /// The field element the circuit holds for this header (see [`super::binding`]).
    pub fn binding(&self) -> halo2_base::halo2_proofs::halo2curves::bn256::Fr {
        super::binding::binding_of(self)
    }
}

/// What an aggregation circuit verifies, recorded in its keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregationInfo {
    /// Digest of the aggregated protocols and of what is exposed: keys are reused for new proofs
    /// of the same circuits when it matches.
    pub inner_digest: String,
    /// The aggregated proofs' circuits, in order (the `file` fields name the proofs the keys
    /// were made with), their digests read from the verifying keys given to `aggregate`.
    pub inner: Vec<super::proof::AggregatedProof>,
}

fn write_key(path: &Path, header: &KeyHeader, body: &[u8]) -> Result<()> {
    let header_json = serde_json::to_vec(header).expect("headers serialize");
    let mut bytes = Vec::with_capacity(12 + header_json.len() + body.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(header_json.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header_json);
    bytes.extend_from_slice(body);
    write_file(path, bytes)
}

fn read_header<'a>(path: &Path, bytes: &'a [u8], kind: &str) -> Result<(KeyHeader, &'a [u8])> {
    let not_a_key = || Error::artifact(path, format!("not a zkinfer {kind} file; create it with `zkinfer setup`"));
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(not_a_key());
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let header_bytes = bytes.get(12..12 + len).ok_or_else(not_a_key)?;
    let header: KeyHeader = serde_json::from_slice(header_bytes).map_err(|_| not_a_key())?;
    if header.kind != kind {
        return Err(Error::artifact(path, format!("this is a {}, not a {kind}", header.kind)));
    }
    if header.format_version != KEY_FORMAT_VERSION {
        return Err(Error::artifact(
            path,
            format!(
                "written by zkinfer {} (key format {}), this zkinfer {} reads format {KEY_FORMAT_VERSION}; run `zkinfer setup` again",
                header.zkinfer_version,
                header.format_version,
                env!("CARGO_PKG_VERSION")
            ),
        ));
    }
    Ok((header, &bytes[12 + len..]))
}

/// Checks that a key belongs to the circuit with digest `expected`.
pub fn check_digest(what: &Path, found: &str, expected: &str) -> Result<()> {
    if found != expected {
        return Err(ProveError::CircuitMismatch {
            what: what.display().to_string(),
            found: found.to_string(),
            expected: expected.to_string(),
        }
        .into());
    }
    Ok(())
}

fn read_halo2<T>(path: &Path, kind: &str, read: impl FnOnce() -> std::io::Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(key)) => Ok(key),
        Ok(Err(e)) => Err(Error::artifact(path, format!("the {kind} is damaged ({e}); run `zkinfer setup` again"))),
        Err(_) => Err(Error::artifact(path, format!("the {kind} is damaged; run `zkinfer setup` again"))),
    }
}

/// Writes a proving key.
pub fn write_pk(path: &Path, header: &KeyHeader, pk: &ProvingKey<G1Affine>) -> Result<()> {
    let mut body = Vec::new();
    pk.write(&mut body, SerdeFormat::RawBytesUnchecked).map_err(|e| Error::io("write", path, e))?;
    write_key(path, header, &body)
}

/// Reads a proving key and its header.
pub fn read_pk(path: &Path) -> Result<(KeyHeader, ProvingKey<G1Affine>)> {
    let bytes = read_file(path)?;
    let (header, mut body) = read_header(path, &bytes, "proving key")?;
    let params = header.shape.params();
    let pk = read_halo2(path, "proving key", || {
        ProvingKey::read::<_, ModelCircuit>(&mut body, SerdeFormat::RawBytesUnchecked, params)
    })?;
    Ok((header, pk))
}

/// Writes a verifying key.
pub fn write_vk(path: &Path, header: &KeyHeader, vk: &VerifyingKey<G1Affine>) -> Result<()> {
    let mut body = Vec::new();
    vk.write(&mut body, SerdeFormat::RawBytes).map_err(|e| Error::io("write", path, e))?;
    write_key(path, header, &body)
}

/// Reads a verifying key and its header.
pub fn read_vk(path: &Path) -> Result<(KeyHeader, VerifyingKey<G1Affine>)> {
    let bytes = read_file(path)?;
    let (header, mut body) = read_header(path, &bytes, "verifying key")?;
    let params = header.shape.params();
    let vk = read_halo2(path, "verifying key", || {
        VerifyingKey::read::<_, ModelCircuit>(&mut body, SerdeFormat::RawBytes, params)
    })?;
    // The header's k chooses the SRS: it must be the key's own.
    let k = vk.get_domain().k();
    if k != header.shape.k {
        return Err(Error::artifact(
            path,
            format!(
                "its header says k = {} but the key is of k = {k}: the file is damaged; run `zkinfer setup` again",
                header.shape.k
            ),
        ));
    }
    Ok((header, vk))
}

/// Reads a verifying key, loads the SRS it was made with (the `--srs` file, or the development
/// one when the key says so) and checks that the key's header is the one its circuit binds:
/// what the header says (instance layout, bound weights, aggregation) can then be trusted.
pub fn read_vk_checked(
    path: &Path,
    srs_file: Option<&Path>,
) -> Result<(KeyHeader, VerifyingKey<G1Affine>, super::Srs)> {
    let (header, vk) = read_vk(path)?;
    let srs = super::srs::srs_for_key(header.shape.k, &header.srs, srs_file)?;
    super::binding::check_binding(path, &header, &vk, &srs.params)?;
    Ok((header, vk, srs))
}
