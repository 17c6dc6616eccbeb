//! Setup, proving and verification: the SRS, keys and proof files.

pub mod binding;
pub mod fast_srs;
pub mod keys;
pub mod proof;
pub mod snark;
pub mod srs;

pub use keys::{read_pk, read_vk, write_pk, write_vk, KeyHeader};
pub use proof::{keygen, verify_keccak, ProofFile, TranscriptKind};
pub use srs::{load_srs, Srs, SrsInfo};
