//! The structured reference string: an insecure development SRS generated and cached locally,
//! or a ceremony file in halo2's serialization supplied by the user; either is downsized to k.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use halo2_base::halo2_proofs::halo2curves::bn256::Bn256;
use halo2_base::halo2_proofs::poly::commitment::Params;
use halo2_base::halo2_proofs::poly::kzg::commitment::ParamsKZG;
use halo2_base::halo2_proofs::{SerdeCurveAffine, SerdeFormat};
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::SrsError;
use crate::error::{Error, Result};

/// The seed of the development SRS. Anyone can recompute its secret: proofs made with it prove
/// nothing to a third party. It exists so that development needs no ceremony file.
pub const DEV_SRS_SEED: u64 = 0x007a_6b69_6e66_6572; // "zkinfer"

/// Where an SRS came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SrsInfo {
    /// True for the development SRS, whose toxic waste is public.
    pub insecure: bool,
    /// "development (insecure)" or the ceremony file's path.
    pub source: String,
    /// SHA-256 of the G2 points (`g2`, `s_g2`), which fix the SRS whatever its size.
    pub g2_digest: String,
}

/// A loaded SRS, sized to the circuit.
pub struct Srs {
    /// halo2's KZG parameters.
    pub params: ParamsKZG<Bn256>,
    /// Its provenance.
    pub info: SrsInfo,
}

/// The folder zkinfer caches development SRS files in: `$ZKINFER_CACHE`, else
/// `$XDG_CACHE_HOME/zkinfer`, else `~/.cache/zkinfer`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZKINFER_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("zkinfer");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("zkinfer")
}

fn dev_srs_path(k: u32) -> PathBuf {
    cache_dir().join("srs").join(format!("dev-insecure-bn254-k{k}.srs"))
}

/// The digest of the SRS's G2 points.
pub fn g2_digest(params: &ParamsKZG<Bn256>) -> String {
    let mut bytes = Vec::new();
    params.g2().write(&mut bytes, SerdeFormat::RawBytes).expect("writing to memory");
    params.s_g2().write(&mut bytes, SerdeFormat::RawBytes).expect("writing to memory");
    hex::encode(Sha256::digest(&bytes))
}

/// Loads an SRS for circuits of 2^k rows: the user's file when given, else the cached
/// development SRS (generated on first use and labelled insecure).
pub fn load_srs(k: u32, file: Option<&Path>) -> Result<Srs> {
    check_k(k)?;
    match file {
        Some(path) => load_ceremony_file(k, path),
        None => load_dev_srs(k),
    }
}

/// Loads the SRS a key was made with: the `--srs` file (which must match), or the development
/// SRS when the key says so.
pub fn srs_for_key(k: u32, recorded: &SrsInfo, srs_file: Option<&Path>) -> Result<Srs> {
    if srs_file.is_none() && !recorded.insecure {
        return Err(SrsError::Unusable(format!(
            "the keys were made with the SRS file {}; pass it with --srs",
            recorded.source
        ))
        .into());
    }
    let srs = load_srs(k, srs_file)?;
    if srs.info.g2_digest != recorded.g2_digest {
        return Err(SrsError::Unusable(format!(
            "this SRS ({}) is not the one the keys were made with ({})",
            srs.info.source, recorded.source
        ))
        .into());
    }
    Ok(srs)
}

/// A k an SRS can have (the field's two-adicity bounds it; a key or a file saying otherwise is
/// damaged).
fn check_k(k: u32) -> Result<()> {
    if !(1..=28).contains(&k) {
        return Err(SrsError::Unusable(format!("k = {k} is out of the supported range 1..=28")).into());
    }
    Ok(())
}

/// The development SRS for k (from the cache, or generated and cached), optionally also written
/// to `copy_to`.
pub fn dev_srs(k: u32, copy_to: Option<&Path>) -> Result<Srs> {
    check_k(k)?;
    let srs = load_dev_srs(k)?;
    if let Some(path) = copy_to {
        write_atomically(path, &srs.params)?;
    }
    Ok(srs)
}

fn read_params(path: &Path, format: SerdeFormat) -> Result<ParamsKZG<Bn256>> {
    let file = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    ParamsKZG::<Bn256>::read_custom(&mut reader, format)
        .map_err(|source| SrsError::Unreadable { path: path.to_path_buf(), source }.into())
}

fn load_ceremony_file(k: u32, path: &Path) -> Result<Srs> {
    let len = std::fs::metadata(path).map_err(|e| Error::io("read", path, e))?.len();
    let mut header = [0u8; 4];
    std::io::Read::read_exact(&mut File::open(path).map_err(|e| Error::io("read", path, e))?, &mut header)
        .map_err(|_| SrsError::Unusable(format!("{} is too short to be a KZG parameter file", path.display())))?;
    let file_k = u32::from_le_bytes(header);
    if file_k > 30 {
        return Err(SrsError::Unusable(format!(
            "{} is not a halo2 KZG parameter file (header says k = {file_k})",
            path.display()
        ))
        .into());
    }
    if file_k < k {
        return Err(SrsError::Unusable(format!(
            "{} holds 2^{file_k} points but the circuit needs k = {k}; supply a larger SRS",
            path.display()
        ))
        .into());
    }
    // Uncompressed points are 64 bytes (G1) and 128 (G2); compressed ("processed") ones half that.
    let n = 1u64 << file_k;
    let format = if len == 4 + 2 * n * 64 + 2 * 128 {
        SerdeFormat::RawBytes
    } else if len == 4 + 2 * n * 32 + 2 * 64 {
        SerdeFormat::Processed
    } else {
        return Err(SrsError::Unusable(format!(
            "{} has {len} bytes, which matches no halo2 KZG layout for k = {file_k}",
            path.display()
        ))
        .into());
    };
    let mut params = read_params(path, format)?;
    if file_k > k {
        params.downsize(k);
    }
    let info = SrsInfo { insecure: false, source: path.display().to_string(), g2_digest: g2_digest(&params) };
    Ok(Srs { params, info })
}

fn load_dev_srs(k: u32) -> Result<Srs> {
    let exact = dev_srs_path(k);
    // Generating is faster than downsizing a larger file (halo2's downsize recomputes the
    // Lagrange basis one scalar multiplication at a time), so every k gets its own file.
    let params = if exact.is_file() {
        read_params(&exact, SerdeFormat::RawBytesUnchecked)?
    } else {
        tracing::warn!("generating the INSECURE development SRS for k = {k} (cached in {})", exact.display());
        let spinner = crate::progress::spinner(format!("generating development SRS (k = {k}, insecure)"));
        let params = super::fast_srs::fast_setup(k, rand_chacha::ChaCha20Rng::seed_from_u64(DEV_SRS_SEED));
        spinner.finish_and_clear();
        write_atomically(&exact, &params)?;
        params
    };
    let info = SrsInfo {
        insecure: true,
        source: "development (INSECURE: its secret is public)".into(),
        g2_digest: g2_digest(&params),
    };
    Ok(Srs { params, info })
}

/// Writes parameters through a temporary file, so that a concurrent reader never sees half a file.
pub fn write_atomically(path: &Path, params: &ParamsKZG<Bn256>) -> Result<()> {
    crate::error::write_file_atomically(path, |out| params.write_custom(out, SerdeFormat::RawBytesUnchecked))
}

#[cfg(test)]
mod tests {
    use super::*;
    use halo2_base::halo2_proofs::poly::commitment::ParamsProver;

    #[test]
    fn a_larger_srs_downsizes_to_the_same_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let big = ParamsKZG::<Bn256>::setup(6, rand_chacha::ChaCha20Rng::seed_from_u64(DEV_SRS_SEED));
        let file = dir.path().join("ceremony.srs");
        let mut bytes = Vec::new();
        big.write_custom(&mut bytes, SerdeFormat::RawBytes).unwrap();
        std::fs::write(&file, &bytes).unwrap();
        let small = load_srs(4, Some(&file)).unwrap();
        let direct = ParamsKZG::<Bn256>::setup(4, rand_chacha::ChaCha20Rng::seed_from_u64(DEV_SRS_SEED));
        assert_eq!(small.params.k(), 4);
        assert_eq!(small.params.get_g(), direct.get_g());
        assert_eq!(small.info.g2_digest, g2_digest(&direct));
        assert!(!small.info.insecure);
        let too_small = load_srs(8, Some(&file)).err().unwrap().to_string();
        assert!(too_small.contains("needs k = 8"), "{too_small}");
        std::fs::write(&file, b"garbage!").unwrap();
        assert!(load_srs(4, Some(&file)).is_err());
    }
}
