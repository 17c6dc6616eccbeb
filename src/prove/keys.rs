//! Proving and verifying keys on disk: a versioned header (JSON) followed by halo2's bytes, so
//! that a key from another circuit or another zkinfer version is refused before it is read.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use halo2_base::halo2_proofs::halo2curves::bn256::G1Affine;
use halo2_base::halo2_proofs::plonk::{ProvingKey, VerifyingKey};
use halo2_base::halo2_proofs::SerdeFormat;
use serde::{Deserialize, Serialize};

use super::srs::SrsInfo;
use crate::circuit::lookup::ModelCircuit;
use crate::circuit::CircuitShape;
use crate::error::ProveError;
use crate::error::{Error, Latched, Result};

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

/// Writes a key file: the header, then `body` streams halo2's bytes into the file (a proving key
/// takes as many bytes as it takes memory: no copy of it is made), written atomically. The body
/// writes to the file's own writer (no dynamic dispatch on halo2's many small writes).
fn write_key(
    path: &Path,
    header: &KeyHeader,
    body: impl FnOnce(&mut Latched<BufWriter<File>>) -> std::io::Result<()>,
) -> Result<()> {
    let header_json = serde_json::to_vec(header).expect("headers serialize");
    crate::error::write_file_atomically(path, |out| {
        out.write_all(MAGIC)?;
        out.write_all(&(header_json.len() as u32).to_le_bytes())?;
        out.write_all(&header_json)?;
        body(out)
    })
}

/// Opens a key file and reads its header, leaving the reader at halo2's bytes (read from the
/// file as they are parsed: no copy of a proving key's bytes is held beside the key).
fn open_key(path: &Path, kind: &str) -> Result<(KeyHeader, BufReader<File>)> {
    let not_a_key = || Error::artifact(path, format!("not a zkinfer {kind} file; create it with `zkinfer setup`"));
    let file = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let size = file.metadata().map_err(|e| Error::io("read", path, e))?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut head = [0u8; 12];
    if size < 12 || reader.read_exact(&mut head).is_err() || &head[..8] != MAGIC {
        return Err(not_a_key());
    }
    let len = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if u64::from(len) > size - 12 {
        return Err(not_a_key());
    }
    let mut header_bytes = vec![0u8; len as usize];
    reader.read_exact(&mut header_bytes).map_err(|e| Error::io("read", path, e))?;
    let header: KeyHeader = serde_json::from_slice(&header_bytes).map_err(|_| not_a_key())?;
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
    Ok((header, reader))
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
    write_key(path, header, |out| pk.write(out, SerdeFormat::RawBytesUnchecked))
}

/// Reads a proving key and its header.
pub fn read_pk(path: &Path) -> Result<(KeyHeader, ProvingKey<G1Affine>)> {
    let (header, mut body) = open_key(path, "proving key")?;
    let params = header.shape.params();
    let pk = read_halo2(path, "proving key", || {
        ProvingKey::read::<_, ModelCircuit>(&mut body, SerdeFormat::RawBytesUnchecked, params)
    })?;
    Ok((header, pk))
}

/// Writes a verifying key.
pub fn write_vk(path: &Path, header: &KeyHeader, vk: &VerifyingKey<G1Affine>) -> Result<()> {
    write_key(path, header, |out| vk.write(out, SerdeFormat::RawBytes))
}

/// Reads a verifying key and its header.
pub fn read_vk(path: &Path) -> Result<(KeyHeader, VerifyingKey<G1Affine>)> {
    let (header, mut body) = open_key(path, "verifying key")?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_is_complete_or_absent() {
        let dir = tempfile::tempdir().unwrap();
        let header: KeyHeader = serde_json::from_value(serde_json::json!({
            "kind": "verifying key", "format_version": KEY_FORMAT_VERSION, "zkinfer_version": "test",
            "circuit_digest": "d", "shape": CircuitShape::default(), "break_points": [],
            "srs": { "insecure": true, "source": "test", "g2_digest": "" }, "instance_layout": [],
            "weights": "fixed", "bound": []
        }))
        .unwrap();
        let path = dir.path().join("keys").join("vk.bin");
        write_key(&path, &header, |out| out.write_all(b"halo2's bytes")).unwrap();
        let (read, mut body) = open_key(&path, "verifying key").unwrap();
        assert_eq!(read.circuit_digest, "d");
        let mut rest = String::new();
        body.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "halo2's bytes");
        assert!(matches!(open_key(&path, "proving key"), Err(e) if e.to_string().contains("not a proving key")));
        // A body that fails leaves neither the file nor its partial copy.
        let failed = dir.path().join("pk.bin");
        let e = write_key(&failed, &header, |_| Err(std::io::Error::other("interrupted"))).unwrap_err();
        assert!(e.to_string().contains("interrupted"), "{e}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the keys folder");
        // A header that claims more bytes than the file has is not a key.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(open_key(&path, "verifying key"), Err(e) if e.to_string().contains("not a zkinfer")));
    }
}
