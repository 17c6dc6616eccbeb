//! The errors zkinfer reports to its users: each says what went wrong and what to do about it.

use std::path::PathBuf;

/// A cause kept as a typed source: a dependency's error (tract, halo2, revm) behind its trait.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in the pipeline, from reading a model to verifying on a chain:
/// the few faults of any layer (files, arguments) and each layer's own error, shown as it is
/// (its source chain kept: print it with [`Error::chain`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What we tried to do ("read", "write", "create").
        action: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A settings, compiled-model, key or proof file is not what we expected.
    #[error("{path}: {reason}")]
    BadArtifact {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A command-line value is malformed.
    #[error("{0}")]
    Usage(String),
    /// Reading the model or its input.
    #[error(transparent)]
    Import(#[from] ImportError),
    /// Running the quantized model.
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
    /// Laying the circuit out.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The SRS.
    #[error(transparent)]
    Srs(#[from] SrsError),
    /// Keys and proofs.
    #[error(transparent)]
    Prove(#[from] ProveError),
    /// Solidity, the toolchain and the chains.
    #[error(transparent)]
    Evm(#[from] EvmError),
    /// The proving service: its database and its server.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// The proving service (`zkinfer serve`, `zkinfer worker`).
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The job database could not be opened or answered with an error.
    #[error("job database {url}: {reason}")]
    Database {
        /// The database URL, without its password.
        url: String,
        /// What went wrong, and what to do.
        reason: String,
        /// sqlx's error.
        #[source]
        source: Option<Cause>,
    },
    /// The HTTP server could not start.
    #[error("cannot serve on {address}: {reason}")]
    Listen {
        /// The address asked for.
        address: String,
        /// The operating system's reason.
        reason: String,
    },
}

/// Reading a model and its input: the ONNX file, the ops it uses, the data given for it, and
/// tract's float reference.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The ONNX file could not be parsed at all.
    #[error("{path} is not a valid ONNX model: {reason}. Export it again (e.g. torch.onnx.export) and check it with onnx.checker")]
    MalformedOnnx {
        /// The model file.
        path: PathBuf,
        /// What the parser said.
        reason: String,
        /// The parser's own error, where it gave one.
        #[source]
        source: Option<Cause>,
    },
    /// tract, the float reference (calibration, the error `run` reports), cannot run a model
    /// zkinfer imported.
    #[error("tract, the float reference, cannot run {path}: {reason}. Proofs do not depend on it; compare the proven outputs with onnxruntime instead, or calibrate with explicit scales (gen-settings --input-scale, --param-scale)")]
    FloatReference {
        /// The model file.
        path: PathBuf,
        /// What tract said.
        reason: String,
        /// tract's error, where it returned one (not for a panic).
        #[source]
        source: Option<Cause>,
    },
    /// The model uses an operator the circuit cannot prove.
    #[error("node '{node}' uses operator {op_type}, which zkinfer does not support{detail}; supported: {supported}")]
    UnsupportedOp {
        /// The ONNX node name.
        node: String,
        /// The ONNX op type.
        op_type: String,
        /// More precise reason (e.g. an unsupported attribute), starting with ": " or empty.
        detail: String,
        /// The operators we support, for the user's benefit.
        supported: &'static str,
    },
    /// The model is well formed but its structure is outside what we handle.
    #[error("model not supported: {0}")]
    UnsupportedModel(String),
    /// The input data does not match the model.
    #[error("invalid input data in {path}: {reason}")]
    BadInput {
        /// The input file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Running the quantized model: values that leave the circuit's range or its tables.
#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    /// A value computed by the quantized model does not fit the circuit's range.
    #[error("value {value} at node '{node}' does not fit the circuit's range of {bits}-bit signed integers (|value| < {bound}); lower input_scale/param_scale in settings.json or raise activation_bits")]
    OutOfRange {
        /// The node whose output overflows.
        node: String,
        /// The offending integer value (at the node's fixed-point scale).
        value: i128,
        /// The signed bit width the circuit checks.
        bits: u32,
        /// 2^(bits-1).
        bound: i128,
    },
    /// An input of a table-lookup function lies outside the table.
    #[error("node '{node}' ({op}): input {value} is outside its lookup table, which covers [{low}, {high}]; run `zkinfer calibrate` with samples that include such inputs, or widen lookup_range in settings.json, then compile and setup again")]
    LookupRange {
        /// The node.
        node: String,
        /// Its function.
        op: String,
        /// The input, dequantized.
        value: f64,
        /// The table's smallest input, dequantized.
        low: f64,
        /// The table's largest input, dequantized.
        high: f64,
    },
    /// A bitwise op met a value that is not a whole number.
    #[error("node '{node}' ({op}) works on integers but gets {value}; bitwise ops apply to integer tensors (token ids, indices, masks), as the model declares them")]
    NotInteger {
        /// The node.
        node: String,
        /// Its op.
        op: String,
        /// The value, dequantized.
        value: f64,
    },
}

/// Laying the circuit out.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The lookup tables need more rows than the circuit has.
    #[error("the lookup tables (Exp, Erf, ...) take {rows} rows, more than the {usable} a circuit of k = {k} holds; leave k to compile (null in settings.json), or narrow lookup_range (zkinfer calibrate does)")]
    TablesTooLarge {
        /// Rows the tables take.
        rows: usize,
        /// Rows a circuit of `k` can use.
        usable: usize,
        /// The circuit's k.
        k: u32,
    },
    /// The Poseidon gate's region needs more rows than the circuit has.
    #[error("the commitments take {rows} rows of the Poseidon gate ({permutations} permutations), more than the {usable} a circuit of k = {k} holds; leave k to compile (null in settings.json), or hash in halo2-base's gate (poseidon_gate \"off\")")]
    PoseidonTooLarge {
        /// Rows the region takes.
        rows: usize,
        /// Permutations in the region.
        permutations: usize,
        /// Rows a circuit of `k` can use.
        usable: usize,
        /// The circuit's k.
        k: u32,
    },
    /// A constant of the circuit does not fit its range.
    #[error("node '{node}': its constant {value} (at the input scale) does not fit the circuit's {bits}-bit range; raise activation_bits or lower input_scale in settings.json")]
    ConstantTooLarge {
        /// The node.
        node: String,
        /// The constant, at the input scale.
        value: i128,
        /// The range's signed bits.
        bits: u32,
    },
    /// The range leaves too few bits above the scale for integers.
    #[error("node '{node}' works on integers, but {bits}-bit activations at input scale {scale} leave under 2 bits for them; raise activation_bits or lower input_scale in settings.json")]
    NoIntegerBits {
        /// The node.
        node: String,
        /// The range's signed bits.
        bits: u32,
        /// The input scale.
        scale: u32,
    },
}

/// Loading or making the structured reference string.
#[derive(Debug, thiserror::Error)]
pub enum SrsError {
    /// The structured reference string is unusable.
    #[error("SRS: {0}")]
    Unusable(String),
    /// The SRS file could not be parsed.
    #[error("SRS: {path} is not a halo2 KZG parameter file; pass the ceremony's .srs file (or leave --srs out for a development SRS)")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The parser's reason.
        #[source]
        source: std::io::Error,
    },
}

/// Keys, proofs and their verification.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    /// An artifact belongs to another circuit than the one at hand.
    #[error("{what} was made for another circuit (digest {found}, expected {expected}); run `zkinfer setup` and `zkinfer prove` again for this model and settings")]
    CircuitMismatch {
        /// Which artifact.
        what: String,
        /// The circuit digest recorded in the artifact.
        found: String,
        /// The digest of the circuit at hand.
        expected: String,
    },
    /// Key generation, proving or verification failed inside halo2.
    #[error("{stage} failed: {reason}")]
    Proving {
        /// "key generation", "proving", ...
        stage: &'static str,
        /// halo2's reason.
        reason: String,
        /// halo2's or snark-verifier's error, where there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The proof did not verify.
    #[error("proof rejected: {0}")]
    Rejected(String),
}

/// The EVM side: the npm toolchain, Solidity compilation, and the chains (in process or over RPC).
#[derive(Debug, thiserror::Error)]
pub enum EvmError {
    /// An external tool is missing.
    #[error("{tool} not found: {hint}")]
    ToolMissing {
        /// The tool's name.
        tool: &'static str,
        /// How to install it.
        hint: String,
    },
    /// Solidity compilation failed.
    #[error("solidity compilation failed: {0}")]
    Solc(String),
    /// The verifier could not be generated from the verifying key.
    #[error("cannot generate the verifier: {0}; the verifying key may be corrupt (regenerate it with zkinfer setup)")]
    Generate(String),
    /// The verifier contract is too large to deploy.
    #[error("verifier runtime bytecode is {size} bytes, over the EIP-170 limit of 24576 bytes; verify it with the shared verifier instead (create-evm-verifier --reusable: the key is data, in parts when large), or aggregate the proof (zkinfer aggregate), or reduce the public instances")]
    ContractTooLarge {
        /// Runtime bytecode size in bytes.
        size: usize,
    },
    /// An EVM (in process or over RPC) did not do what was asked.
    #[error("EVM: {0}")]
    Execution(String),
    /// The in-process EVM itself failed (not the contract).
    #[error("EVM: the in-process EVM failed on the {what}")]
    InProcess {
        /// Which call or transaction.
        what: String,
        /// revm's error.
        #[source]
        source: Cause,
    },
    /// The RPC endpoint cannot be used.
    #[error("cannot reach the RPC endpoint {url}: {reason}; check that the node is running and the URL is right")]
    Rpc {
        /// The URL given.
        url: String,
        /// What happened.
        reason: String,
    },
    /// The node is not on the chain expected.
    #[error("the node at {url} is on chain {found}, not chain {expected}; check the RPC URL (or --chain-id, or the deployment file)")]
    WrongChain {
        /// The URL given.
        url: String,
        /// The chain id expected.
        expected: u64,
        /// The chain id the node reported.
        found: u64,
    },
    /// A verifier built on the development SRS was about to go to a real chain.
    #[error("refusing to deploy this verifier to chain {chain_id}: {why}. Run `zkinfer setup --srs CEREMONY_FILE` and `zkinfer create-evm-verifier --srs CEREMONY_FILE` with a real ceremony file, or pass --allow-insecure-srs for a throw-away test network (local chains 31337 and 1337 need neither)")]
    InsecureSrs {
        /// The chain's id.
        chain_id: u64,
        /// Why the verifier is not trusted.
        why: String,
    },
    /// The signing key is missing or unusable.
    #[error("signing key: {0}")]
    Key(String),
    /// A transaction or call reverted.
    #[error("the {what} reverted: {reason}")]
    Reverted {
        /// Which transaction.
        what: String,
        /// The decoded reason.
        reason: String,
    },
    /// The paying account cannot pay.
    #[error("account {account} cannot pay for the {what} on chain {chain_id} (balance {balance} wei): fund it, or use a funded account's key (--keystore or ZKINFER_PRIVATE_KEY)")]
    InsufficientFunds {
        /// Which transaction.
        what: String,
        /// The paying account.
        account: String,
        /// The chain.
        chain_id: u64,
        /// Its balance, in wei.
        balance: String,
    },
    /// Another transaction of the same account got in the way.
    #[error("nonce conflict sending the {what} from {account} ({reason}): another transaction from this account is pending or was sent at the same time; wait for it and run the command again (submit checks the registry first, so nothing is recorded twice)")]
    NonceConflict {
        /// Which transaction.
        what: String,
        /// The paying account.
        account: String,
        /// What the node said.
        reason: String,
    },
    /// A transaction was sent but its receipt did not come in time.
    #[error("the {what} transaction {tx_hash} was sent but no receipt came within {seconds} s; it may still be mined: look the hash up, or run the command again later (submit checks the registry first, so nothing is recorded twice)")]
    ReceiptTimeout {
        /// Which transaction.
        what: String,
        /// Its hash.
        tx_hash: String,
        /// How long we waited.
        seconds: u64,
    },
}

/// The result type of the zkinfer library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path` while doing `action`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { action, path: path.into(), source }
    }

    /// The message, then each cause in its source chain on a line of its own.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        text
    }

    /// A malformed artifact at `path`.
    pub fn artifact(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::BadArtifact { path: path.into(), reason: reason.into() }
    }
}

/// Reads a whole file, with an error naming it.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::io("read", path, e))
}

/// Creates the folder a file is written into, with an error naming it.
fn create_parent(path: &std::path::Path) -> Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e)),
        None => Ok(()),
    }
}

/// Writes a whole file (creating its folder), with an error naming it.
pub fn write_file(path: &std::path::Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    create_parent(path)?;
    std::fs::write(path, bytes).map_err(|e| Error::io("write", path, e))
}

/// Writes a large file (creating its folder) by streaming `body` into it through a 1 MiB buffer:
/// into a temporary file beside `path`, renamed over it once its last byte is flushed, so that
/// neither an interrupted write nor a concurrent reader ever sees half a file. A failing body
/// or disk leaves no file behind; the error names `path`.
pub fn write_file_atomically(
    path: &std::path::Path,
    body: impl FnOnce(&mut Latched<std::io::BufWriter<std::fs::File>>) -> std::io::Result<()>,
) -> Result<()> {
    use std::io::Write;
    create_parent(path)?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partial = path.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    let write = || -> std::io::Result<()> {
        let file = std::fs::File::create(&partial)?;
        let mut out = Latched { inner: std::io::BufWriter::with_capacity(1 << 20, file), error: None };
        body(&mut out)?;
        out.flush()?;
        if let Some(e) = out.error {
            return Err(e);
        }
        std::fs::rename(&partial, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        Error::io("write", path, e)
    })
}

/// A writer that keeps its first error and takes (and drops) every write after it: halo2 writes
/// keys and parameters with `unwrap`, so a failing disk would panic inside it;
/// [`write_file_atomically`] reports the kept error instead.
pub struct Latched<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> std::io::Write for Latched<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_none() {
            if let Err(e) = self.inner.write_all(buf) {
                self.error = Some(e);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.error.is_none() {
            if let Err(e) = self.inner.flush() {
                self.error = Some(e);
            }
        }
        Ok(())
    }
}

/// Reads and parses a JSON file, with an error naming it.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<T> {
    let bytes = read_file(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::artifact(path, format!("not valid JSON for this file: {e}")))
}

/// Writes a value as pretty JSON.
pub fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).expect("our artifact types always serialize");
    write_file(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A disk that fails after `room` bytes.
    struct Disk {
        room: usize,
    }

    impl Write for Disk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.len() > self.room {
                return Err(std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device"));
            }
            self.room -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_failing_write_is_kept_for_the_caller_and_never_reaches_halo2s_unwrap() {
        let mut out = Latched { inner: Disk { room: 10 }, error: None };
        // halo2's `write_all(..).unwrap()` sees success every time.
        out.write_all(&[0; 8]).unwrap();
        out.write_all(&[0; 8]).unwrap();
        out.write_all(&[0; 8]).unwrap();
        out.flush().unwrap();
        assert_eq!(out.error.map(|e| e.kind()), Some(std::io::ErrorKind::StorageFull));
        let mut fine = Latched { inner: Disk { room: 100 }, error: None };
        fine.write_all(&[0; 64]).unwrap();
        assert!(fine.error.is_none());
    }

    #[test]
    fn an_atomic_write_leaves_the_whole_file_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join("pk.bin");
        write_file_atomically(&path, |out| out.write_all(b"all of it")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"all of it");
        // A failing body leaves the earlier file as it was and no temporary file beside it.
        let e = write_file_atomically(&path, |out| {
            out.write_all(b"half")?;
            Err(std::io::Error::other("interrupted"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("interrupted") && e.to_string().contains("pk.bin"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"all of it");
        assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
    }
}
