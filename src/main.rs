//! The `zkinfer` command line: parses arguments, calls the library, prints. No logic lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod serve_cli;
use zkinfer::calibrate::Target;
use zkinfer::onchain::{
    self, DeployOptions, DeploymentFile, RegistryTarget, Submission, SubmissionStatus, SubmitOptions,
};
use zkinfer::pipeline::{self, RunOptions, SettingsOptions};

#[derive(Parser)]
#[command(
    name = "zkinfer",
    version,
    about = "Zero-knowledge proofs of ONNX model inference, verified natively and on the EVM"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Which chain, and who pays. Keys are never taken on the command line.
#[derive(Args, Clone)]
struct ChainArgs {
    /// A JSON-RPC node; without it, the in-process EVM (revm) is used.
    #[arg(long)]
    rpc_url: Option<String>,
    /// Refuse the node unless it reports this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// An encrypted JSON keystore for the paying account (password in $ZKINFER_KEYSTORE_PASSWORD);
    /// without it, the hex key in $ZKINFER_PRIVATE_KEY, or on a local chain (31337, 1337) anvil's
    /// first development account.
    #[arg(long)]
    keystore: Option<PathBuf>,
    /// Seconds to wait for the node's answers and for each receipt.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

impl From<&ChainArgs> for zkinfer::evm::Connect {
    fn from(a: &ChainArgs) -> Self {
        zkinfer::evm::Connect {
            rpc_url: a.rpc_url.clone(),
            keystore: a.keystore.clone(),
            expected_chain_id: a.chain_id,
            timeout: std::time::Duration::from_secs(a.timeout),
        }
    }
}

/// The model a registration or a submission is for.
#[derive(Args, Clone)]
struct ModelKeyArgs {
    /// The model's verifying key (or an aggregation's): what is registered (the layout of the
    /// public instances, the weights proofs must carry) and how a proof and its record are read
    /// come from it.
    #[arg(long, default_value = "vk.bin")]
    vk: PathBuf,
    /// The SRS file the key was made with (default: the development SRS).
    #[arg(long)]
    srs: Option<PathBuf>,
    /// Register a model with private weights anyway: its records then say only that some
    /// weights of this architecture gave the output.
    #[arg(long)]
    allow_unbound_weights: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Read an ONNX model and write settings.json (scales, visibility, shapes).
    GenSettings {
        /// The ONNX model.
        #[arg(short = 'M', long, default_value = "network.onnx")]
        model: PathBuf,
        /// Where to write the settings.
        #[arg(short = 'O', long, default_value = "settings.json")]
        settings: PathBuf,
        /// Input data (input.json) whose size gives the inputs' symbolic (batch) dimension;
        /// without it, a symbolic dimension is 1.
        #[arg(short = 'D', long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        options: SettingsOptions,
    },
    /// Choose the scales and activation range from sample inputs (against tract's float
    /// execution), update settings.json (keeping its visibility) and print a per-layer report;
    /// the full report goes to <settings>.calibration.json.
    Calibrate {
        /// The ONNX model.
        #[arg(short = 'M', long, default_value = "network.onnx")]
        model: PathBuf,
        /// Sample inputs: input.json's format, each input's list holding one or more samples.
        #[arg(short = 'D', long, default_value = "input.json")]
        data: PathBuf,
        /// The settings to update (created with the defaults when missing or for another model).
        #[arg(short = 'O', long, default_value = "settings.json")]
        settings: PathBuf,
        /// `accuracy`: the smallest error; `resources`: the smallest circuit (k, then cells) whose
        /// error is within twice the best or 1% of the largest output, the most accurate of those.
        #[arg(long, value_enum, default_value_t = Target::Resources)]
        target: Target,
    },
    /// Quantize the model and lay out its circuit: writes model.compiled.
    Compile {
        /// The ONNX model.
        #[arg(short = 'M', long, default_value = "network.onnx")]
        model: PathBuf,
        /// The settings.
        #[arg(short = 'S', long, default_value = "settings.json")]
        settings: PathBuf,
        /// Where to write the compiled model.
        #[arg(long, default_value = "model.compiled")]
        compiled: PathBuf,
    },
    /// Generate the proving and verifying keys.
    Setup {
        /// The compiled model.
        #[arg(long, default_value = "model.compiled")]
        compiled: PathBuf,
        /// A KZG parameter file (ceremony); default: the cached development SRS (insecure).
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Where to write the proving key.
        #[arg(long, default_value = "pk.bin")]
        pk: PathBuf,
        /// Where to write the verifying key.
        #[arg(long, default_value = "vk.bin")]
        vk: PathBuf,
    },
    /// Run the model on input data and prove it: writes witness.json and proof.json.
    Prove {
        /// The compiled model.
        #[arg(long, default_value = "model.compiled")]
        compiled: PathBuf,
        /// The proving key.
        #[arg(long, default_value = "pk.bin")]
        pk: PathBuf,
        /// The input data ({"input_data": [[...]]}).
        #[arg(short = 'D', long, default_value = "input.json")]
        data: PathBuf,
        /// The SRS file the keys were made with (default: development SRS).
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Where to write the witness (private values).
        #[arg(long, default_value = "witness.json")]
        witness: PathBuf,
        /// Where to write the proof.
        #[arg(long, default_value = "proof.json")]
        proof: PathBuf,
        /// Prove for `zkinfer aggregate` (Poseidon transcript) instead of for the EVM (Keccak).
        #[arg(long)]
        for_aggregation: bool,
        /// For a model made with --bind-submitter: the account that will submit the proof.
        #[arg(long)]
        submitter: Option<String>,
        /// With --submitter: the registry the proof is for (default: deployment.json's).
        #[arg(long, requires = "submitter")]
        registry: Option<String>,
        /// With --submitter: the chain the proof is for (default: deployment.json's).
        #[arg(long, requires = "submitter")]
        chain_id: Option<u64>,
        /// With --submitter: the deployment record that names the registry and the chain.
        #[arg(long, default_value = "deployment.json")]
        deployment: PathBuf,
    },
    /// Aggregate proofs (made with `prove --for-aggregation`, or aggregation proofs made with
    /// `aggregate --for-aggregation`) into one: writes pk.bin, vk.bin and proof.json in the
    /// output folder, reusing its keys when they were made for the same circuits.
    Aggregate {
        /// The proofs to aggregate.
        #[arg(short = 'P', long = "proofs", num_args = 1.., required = true)]
        proofs: Vec<PathBuf>,
        /// The verifying keys of the proofs' circuits (`vk.bin` of `setup`, or of a previous
        /// `aggregate`): once for all proofs, or once per proof in order. What is aggregated is
        /// read from them, never from the proof files.
        #[arg(long = "vk", num_args = 1.., required = true)]
        vks: Vec<PathBuf>,
        /// The output folder.
        #[arg(short = 'O', long, default_value = "aggregate")]
        out: PathBuf,
        /// The aggregation circuit's k (default: the smallest within --max-advice-columns).
        #[arg(long)]
        k: Option<u32>,
        /// Without --k: the most advice columns the chosen k may need (fewer: less gas, more
        /// rows).
        #[arg(long, default_value_t = zkinfer::aggregate::DEFAULT_MAX_ADVICE_COLUMNS)]
        max_advice_columns: usize,
        /// Prove for a next layer of aggregation (Poseidon transcript) instead of for the EVM.
        #[arg(long)]
        for_aggregation: bool,
        /// Expose only the accumulator, not the aggregated proofs' public instances.
        #[arg(long)]
        accumulator_only: bool,
        /// Read and write pk.bin and vk.bin in this folder instead of the output folder (one
        /// folder for every aggregation of the same circuits, e.g. each pair of a tree's layer).
        #[arg(long)]
        keys: Option<PathBuf>,
        /// The SRS file (default: development SRS).
        #[arg(long)]
        srs: Option<PathBuf>,
    },
    /// Verify a proof natively.
    Verify {
        /// The verifying key.
        #[arg(long, default_value = "vk.bin")]
        vk: PathBuf,
        /// The proof.
        #[arg(long, default_value = "proof.json")]
        proof: PathBuf,
        /// The SRS file the keys were made with (default: development SRS).
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Reject the proof unless its model commitment (hashed params) is this one (0x hex).
        #[arg(long)]
        model_commitment: Option<String>,
        /// Reject the proof unless its input commitment (hashed input) is this one (0x hex).
        #[arg(long)]
        input_commitment: Option<String>,
    },
    /// Compute the Poseidon commitments a proof with hashed params or input exposes, off-circuit,
    /// from the compiled model (or the ONNX model and settings) and an input file.
    Commit {
        /// The compiled model.
        #[arg(long, default_value = "model.compiled", conflicts_with = "model")]
        compiled: PathBuf,
        /// The ONNX model (with --settings), instead of a compiled model.
        #[arg(short = 'M', long, requires = "settings")]
        model: Option<PathBuf>,
        /// The settings the ONNX model is quantized with.
        #[arg(short = 'S', long)]
        settings: Option<PathBuf>,
        /// Also commit to this input data.
        #[arg(short = 'D', long)]
        data: Option<PathBuf>,
        /// The salt of each input's commitment (from the prover's witness.json), in input order.
        #[arg(long = "salt", requires = "data")]
        salts: Vec<String>,
    },
    /// Generate and compile the Solidity verifier: writes Verifier.sol and Verifier.json.
    CreateEvmVerifier {
        /// The verifying key.
        #[arg(long, default_value = "vk.bin")]
        vk: PathBuf,
        /// The SRS file the keys were made with (default: development SRS).
        #[arg(long)]
        srs: Option<PathBuf>,
        /// Where to write the Solidity source (the compiled contract goes beside it, .json).
        /// Default: Verifier.sol, or SharedVerifier.sol with --reusable.
        #[arg(long)]
        sol: Option<PathBuf>,
        /// The solc to use (default: $SOLC, solc on PATH, or the pinned solc-js).
        #[arg(long)]
        solc: Option<PathBuf>,
        /// Write the reusable verifier instead of a direct one: the shared verifier (deployed
        /// once per chain, it verifies the proofs of any zkinfer key) and this model's key as a
        /// data contract (--key-out).
        #[arg(long)]
        reusable: bool,
        /// With --reusable: where to write the key's data contract.
        #[arg(long, default_value = "VerifyingKey.json", requires = "reusable")]
        key_out: PathBuf,
    },
    /// Print the calldata a verifier reads for a proof, for callers that build transactions
    /// themselves: the direct verifier's (instances then proof, no selector), or with
    /// --key-address the shared verifier's verifyProof(key, instances, proof).
    EncodeEvmCalldata {
        /// The proof.
        #[arg(long, default_value = "proof.json")]
        proof: PathBuf,
        /// The address of the model's key (data contract) for the shared verifier.
        #[arg(long)]
        key_address: Option<String>,
        /// Write the calldata (0x-prefixed hex) to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Deploy the verifier and verify a proof on an EVM (in-process revm, or --rpc-url).
    VerifyEvm {
        /// The proof.
        #[arg(long, default_value = "proof.json")]
        proof: PathBuf,
        /// The compiled verifier (written by create-evm-verifier).
        #[arg(long, default_value = "Verifier.json")]
        verifier: PathBuf,
        /// For the shared verifier (create-evm-verifier --reusable): the model's key contract.
        #[arg(long)]
        key_contract: Option<PathBuf>,
        /// A JSON-RPC node; without it, an in-process EVM is used.
        #[arg(long, conflicts_with = "anvil")]
        rpc_url: Option<String>,
        /// Start a local anvil (the pinned one from npm) for this verification, then stop it.
        #[arg(long)]
        anvil: bool,
    },
    /// Deploy the verifier and, with --registry, its adapter and an inference registry in which
    /// the model is registered; writes deployment.json after each contract.
    Deploy {
        #[command(flatten)]
        chain: ChainArgs,
        /// The compiled verifier (written by create-evm-verifier).
        #[arg(long, default_value = "Verifier.json")]
        verifier: PathBuf,
        /// With the shared verifier (SharedVerifier.json): the model's key contract
        /// (VerifyingKey.json), deployed with an adapter that the model is registered with.
        #[arg(long)]
        key_contract: Option<PathBuf>,
        /// With the shared verifier: the address of one already on this chain, used instead of
        /// deploying another (default: the one in the previous deployment file of this chain).
        #[arg(long, requires = "key_contract")]
        shared_verifier: Option<String>,
        /// Also deploy an InferenceRegistry (owned by the deploying account) and the verifier's
        /// adapter.
        #[arg(long, conflicts_with = "registry_address")]
        registry: bool,
        /// Register in the registry at this address instead (the deploying account must own it).
        #[arg(long)]
        registry_address: Option<String>,
        /// Register the model in the registry under this name (or 32-byte hex id).
        #[arg(long)]
        model: Option<String>,
        #[command(flatten)]
        key: ModelKeyArgs,
        /// Gas one verification may use (the registry's call of the adapter's verifier, or of
        /// the shared verifier with the model's key).
        #[arg(long, default_value_t = zkinfer::evm::registry::DEFAULT_GAS_CAP)]
        gas_cap: u64,
        /// Deploy a verifier built on the development SRS to a chain that is not a local one.
        #[arg(long)]
        allow_insecure_srs: bool,
        /// The solc for the registry.
        #[arg(long)]
        solc: Option<PathBuf>,
        /// Where to write the deployment record.
        #[arg(short = 'O', long, default_value = "deployment.json")]
        out: PathBuf,
    },
    /// Submit a proof to the inference registry, wait for the receipt and print the record.
    /// Without --rpc-url, runs the whole flow on the in-process EVM (deploy, register, submit).
    Submit {
        #[command(flatten)]
        chain: ChainArgs,
        /// The proof.
        #[arg(short = 'P', long, default_value = "proof.json")]
        proof: PathBuf,
        #[command(flatten)]
        key: ModelKeyArgs,
        /// The model's registered name (or 32-byte hex id).
        #[arg(long)]
        model: String,
        /// The registry (default: the one in the deployment file).
        #[arg(long)]
        registry: Option<String>,
        /// The deployment record written by `deploy`.
        #[arg(long, default_value = "deployment.json")]
        deployment: PathBuf,
        /// The compiled verifier (in-process EVM only).
        #[arg(long, default_value = "Verifier.json")]
        verifier: PathBuf,
        /// With the shared verifier (in-process EVM only): the model's key contract.
        #[arg(long)]
        key_contract: Option<PathBuf>,
        /// Gas one verification may use inside the adapter (in-process EVM only).
        #[arg(long, default_value_t = zkinfer::evm::registry::DEFAULT_GAS_CAP)]
        gas_cap: u64,
        /// The solc for the registry (in-process EVM only).
        #[arg(long)]
        solc: Option<PathBuf>,
        /// Where to write the submission record.
        #[arg(short = 'O', long, default_value = "submission.json")]
        out: PathBuf,
    },
    /// Every step in one working directory, then report.json.
    Run {
        /// The ONNX model.
        #[arg(short = 'M', long)]
        model: PathBuf,
        /// The input data.
        #[arg(short = 'D', long)]
        data: PathBuf,
        /// The working directory.
        #[arg(long, default_value = "zkinfer-out")]
        dir: PathBuf,
        /// A KZG parameter file (ceremony); default: the development SRS (insecure).
        #[arg(long)]
        srs: Option<PathBuf>,
        /// The solc to use.
        #[arg(long)]
        solc: Option<PathBuf>,
        /// Verify on this node instead of in process.
        #[arg(long)]
        rpc_url: Option<String>,
        #[command(flatten)]
        options: SettingsOptions,
    },
    /// Generate (or reuse) the cached development SRS for 2^logrows points, INSECURE: its secret is
    /// public. Optionally write a copy in halo2's format.
    GenSrs {
        /// log2 of the number of points.
        #[arg(long)]
        logrows: u32,
        /// Also write the parameters to this file.
        #[arg(long)]
        srs_path: Option<PathBuf>,
    },
    /// Run the whole pipeline on the bundled example and print a summary.
    Demo {
        /// The working directory.
        #[arg(long, default_value = "zkinfer-demo")]
        dir: PathBuf,
    },
    /// List the ONNX operators zkinfer proves, each with what it supports of the operator.
    Ops,
    /// Install the pinned EVM toolchain (solc-js, anvil, forge) into the per-user cache if it is
    /// not there, and print where each tool is found.
    Toolchain,
    /// The proving service: an HTTP API (/v1) over a persistent job queue, with workers in this
    /// process unless --no-workers; `serve keys` manages its API keys.
    Serve(serve_cli::ServeArgs),
    /// A worker of the proving service: leases jobs from the service's database (Postgres for
    /// workers on several machines) and proves them, keeping keys loaded between jobs.
    Worker(serve_cli::WorkerCommand),
}

/// The demo's model and input, compiled in.
const DEMO_MODEL: &[u8] = include_bytes!("../examples/mlp_small/network.onnx");
const DEMO_INPUT: &[u8] = include_bytes!("../examples/mlp_small/input.json");

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ZKINFER_LOG").unwrap_or_else(|_| "zkinfer=warn".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    match execute(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.chain());
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> zkinfer::Result<()> {
    match command {
        Command::GenSettings { model, settings, data, options } => {
            let options = SettingsOptions { data, ..options };
            let s = pipeline::gen_settings(&model, &settings, &options)?;
            println!(
                "wrote {} (input scale {}, param scale {}, inputs {:?})",
                settings.display(),
                s.input_scale,
                s.param_scale,
                s.input_shapes
            );
        }
        Command::Calibrate { model, data, settings, target } => {
            let (s, c) = zkinfer::calibrate::calibrate(&model, &data, &settings, target)?;
            print_calibration(&c);
            println!(
                "wrote {} (target {target}, {} sample(s)): input scale {}, param scale {}, activation bits {}; \
                 output max abs error {:.6}, mean {:.6}; report in {}",
                settings.display(),
                c.samples,
                s.input_scale,
                s.param_scale,
                s.activation_bits,
                c.chosen.max_abs_error,
                c.chosen.mean_abs_error,
                zkinfer::calibrate::report_path(&settings).display()
            );
        }
        Command::Compile { model, settings, compiled } => {
            let c = pipeline::compile(&model, &settings, &compiled)?;
            let columns: usize = c.shape.config.num_advice_per_phase.iter().sum();
            let tables = match c.shape.table_rows {
                0 => String::new(),
                rows => format!(", lookup tables of {rows} rows"),
            };
            let gate = match c.shape.linear {
                Some(g) => format!(
                    ", linear gate {g}: {} rows, {} multiply-accumulates at {:.2} advice cells each{}",
                    c.shape.linear_rows,
                    c.shape.linear_macs,
                    c.shape.linear_cells() as f64 / c.shape.linear_macs.max(1) as f64,
                    match c.shape.linear_overflow_rows {
                        0 => String::new(),
                        rows => format!(" (runs of {rows} more rows in halo2-base's gate: past the region at this k)"),
                    }
                ),
                None => String::new(),
            };
            let hashes = match c.shape.poseidon {
                true => format!(
                    ", Poseidon gate: {} rows, {} permutations",
                    c.shape.poseidon_rows, c.shape.poseidon_permutations
                ),
                false => String::new(),
            };
            println!(
                "wrote {}: k = {}, {} advice cells in {columns} column(s){gate}{hashes}, {} public instances{tables}",
                compiled.display(),
                c.shape.k,
                c.shape.advice_cells,
                c.shape.num_instances
            );
            if !c.shape.reason.is_empty() {
                println!("geometry: {}", c.shape.reason);
            }
        }
        Command::Setup { compiled, srs, pk, vk } => {
            let out = pipeline::setup(&compiled, srs.as_deref(), &pk, &vk)?;
            println!("wrote {} and {} in {:.2} s (SRS: {})", pk.display(), vk.display(), out.seconds, out.srs.source);
        }
        Command::Prove {
            compiled,
            pk,
            data,
            srs,
            witness,
            proof,
            for_aggregation,
            submitter,
            registry,
            chain_id,
            deployment,
        } => {
            let transcript = transcript_for(for_aggregation);
            let binding = match submitter {
                None => None,
                Some(submitter) => Some(onchain::submitter_binding(
                    parse_address(&submitter, "--submitter")?,
                    registry.map(|r| parse_address(&r, "--registry")).transpose()?,
                    chain_id,
                    &deployment,
                )?),
            };
            let out =
                pipeline::prove(&compiled, &pk, &data, srs.as_deref(), &witness, &proof, transcript, binding.as_ref())?;
            println!("wrote {} in {:.2} s; outputs {:?}", proof.display(), out.seconds, out.outputs);
        }
        Command::Aggregate {
            proofs,
            vks,
            out,
            k,
            max_advice_columns,
            for_aggregation,
            accumulator_only,
            srs,
            keys,
        } => {
            let options = zkinfer::aggregate::AggregateOptions {
                k,
                max_advice_columns,
                transcript: transcript_for(for_aggregation),
                expose_instances: !accumulator_only,
                srs,
                keys,
                vks,
            };
            let done = zkinfer::aggregate::aggregate(&proofs, &out, &options)?;
            let keys = match done.keygen_seconds {
                Some(s) => format!("keys generated in {s:.2} s"),
                None => "keys reused".into(),
            };
            println!(
                "aggregated {} proofs into {} (k = {}, {} advice columns, {} public instances; {keys}, proved in {:.2} s)",
                proofs.len(),
                out.join("proof.json").display(),
                done.shape.k,
                done.shape.config.num_advice_per_phase.iter().sum::<usize>(),
                done.shape.num_instances,
                done.prove_seconds
            );
        }
        Command::Verify { vk, proof, srs, model_commitment, input_commitment } => {
            let expected = pipeline::Expected { model_commitment, input_commitment };
            let verified = pipeline::verify(&vk, &proof, srs.as_deref(), &expected)?;
            println!("verified: the proof is valid (weights {})", verified.weights);
            for (span, decoded) in verified.instances {
                let of = match span.proof.as_slice() {
                    [] => String::new(),
                    path => format!(
                        " of aggregated proof {}",
                        path.iter().map(usize::to_string).collect::<Vec<_>>().join(".")
                    ),
                };
                println!("proven {} {} ({}) {:?}{of}: {decoded}", span.kind, span.index, span.name, span.shape);
            }
        }
        Command::Commit { compiled, model, settings, data, salts } => {
            let source = match (&model, &settings) {
                (Some(m), Some(s)) => pipeline::ModelSource::Onnx(m, s),
                _ => pipeline::ModelSource::Compiled(&compiled),
            };
            let c = pipeline::commit(source, data.as_deref(), &salts)?;
            println!("{}", serde_json::to_string_pretty(&c).expect("serializable"));
        }
        Command::CreateEvmVerifier { vk, srs, sol, solc, reusable: false, .. } => {
            let sol = sol.unwrap_or_else(|| PathBuf::from("Verifier.sol"));
            let c = pipeline::create_evm_verifier(&vk, srs.as_deref(), &sol, solc.as_deref())?;
            println!(
                "wrote {} and {} (runtime bytecode {} bytes, solc {})",
                sol.display(),
                pipeline::verifier_artifact_path(&sol).display(),
                c.runtime.len(),
                c.solc_version
            );
        }
        Command::CreateEvmVerifier { vk, srs, sol, solc, reusable: true, key_out } => {
            let sol = sol.unwrap_or_else(|| PathBuf::from("SharedVerifier.sol"));
            let r = pipeline::create_reusable_verifier(&vk, srs.as_deref(), &sol, &key_out, solc.as_deref())?;
            println!(
                "wrote {} and {} (the shared verifier, runtime bytecode {} bytes, solc {}) and {} (this model's key, {} bytes of data)",
                sol.display(),
                pipeline::verifier_artifact_path(&sol).display(),
                r.verifier.runtime.len(),
                r.verifier.solc_version,
                key_out.display(),
                r.key.runtime.len()
            );
        }
        Command::EncodeEvmCalldata { proof, key_address, out } => {
            let key = key_address.as_deref().map(|a| parse_address(a, "--key-address")).transpose()?;
            let calldata = format!("0x{}", hex::encode(pipeline::evm_calldata(&proof, key)?));
            match out {
                Some(path) => {
                    zkinfer::error::write_file(&path, &calldata)?;
                    println!("wrote {} ({} bytes of calldata)", path.display(), calldata.len() / 2 - 1);
                }
                None => println!("{calldata}"),
            }
        }
        Command::VerifyEvm { proof, verifier, key_contract, rpc_url, anvil } => {
            let node = if anvil { Some(zkinfer::evm::anvil::spawn_anvil()?) } else { None };
            let rpc_url = node.as_ref().map(|n| n.endpoint()).or(rpc_url);
            let out = pipeline::verify_evm(&proof, &verifier, key_contract.as_deref(), rpc_url.as_deref())?;
            let place = rpc_url.as_deref().unwrap_or("in-process EVM");
            println!("verified on {place}: gas used {}", out.verification.gas_used.unwrap_or_default());
        }
        Command::Deploy {
            chain,
            verifier,
            key_contract,
            shared_verifier,
            registry,
            registry_address,
            model,
            key,
            gas_cap,
            allow_insecure_srs,
            solc,
            out,
        } => {
            let registry = match (registry, registry_address) {
                (_, Some(address)) => RegistryTarget::At(parse_address(&address, "--registry-address")?),
                (true, None) => RegistryTarget::New,
                (false, None) => RegistryTarget::None,
            };
            let mut chain = zkinfer::evm::Chain::open(&(&chain).into())?;
            let shared_verifier = shared_verifier.map(|a| parse_address(&a, "--shared-verifier")).transpose()?;
            let options = DeployOptions {
                verifier,
                key: key_contract,
                shared_verifier,
                registry,
                model,
                vk: key.vk,
                srs: key.srs,
                allow_unbound_weights: key.allow_unbound_weights,
                gas_cap,
                allow_insecure_srs,
                solc,
                out: Some(out.clone()),
            };
            let file = onchain::deploy(&mut chain, &options)?;
            print_deployment(&chain, &file, Some(&out));
        }
        Command::Submit {
            chain,
            proof,
            key,
            model,
            registry,
            deployment,
            verifier,
            key_contract,
            gas_cap,
            solc,
            out,
        } => {
            let registry = registry.map(|a| parse_address(&a, "--registry")).transpose()?;
            let mut chain = zkinfer::evm::Chain::open(&(&chain).into())?;
            let options = SubmitOptions {
                proof,
                vk: key.vk,
                srs: key.srs,
                allow_unbound_weights: key.allow_unbound_weights,
                model,
                registry,
                deployment,
                verifier,
                key: key_contract,
                out,
                solc,
                gas_cap,
            };
            let submission = if chain.rpc_url().is_none() {
                let (deployment, submission) = onchain::submit_in_process(&mut chain, &options)?;
                print_deployment(&chain, &deployment, None);
                submission
            } else {
                onchain::submit(&mut chain, &options)?
            };
            print_submission(&chain, &submission, &options.out);
        }
        Command::Run { model, data, dir, srs, solc, rpc_url, options } => {
            let options = RunOptions { settings: options, srs, solc, rpc_url };
            let report = pipeline::run(&model, &data, &dir, &options)?;
            print_summary(&report, &dir);
        }
        Command::GenSrs { logrows, srs_path } => {
            let start = std::time::Instant::now();
            let srs = zkinfer::prove::srs::dev_srs(logrows, srs_path.as_deref())?;
            println!(
                "development SRS for k = {logrows} ready in {:.2} s ({}; g2 digest {})",
                start.elapsed().as_secs_f64(),
                srs.info.source,
                srs.info.g2_digest
            );
        }
        Command::Demo { dir } => {
            // The demo model travels in the binary: an installed zkinfer needs no checkout.
            std::fs::create_dir_all(&dir).map_err(|e| zkinfer::Error::io("create", &dir, e))?;
            let (model, input) = (dir.join("network.onnx"), dir.join("input.json"));
            for (path, bytes) in [(&model, DEMO_MODEL), (&input, DEMO_INPUT)] {
                std::fs::write(path, bytes).map_err(|e| zkinfer::Error::io("write", path, e))?;
            }
            println!(
                "zkinfer demo: proving a 16→32→8 MLP ({}) and verifying it natively and on an in-process EVM",
                model.display()
            );
            let report = pipeline::run(&model, &input, &dir, &RunOptions::default())?;
            print_summary(&report, &dir);
        }
        Command::Ops => {
            for op in zkinfer::ops::onnx_ops() {
                match op.note {
                    "" => println!("{}", op.op_type),
                    note => println!("{} ({note})", op.op_type),
                }
            }
        }
        Command::Serve(args) => serve_cli::serve(args)?,
        Command::Worker(args) => serve_cli::worker(args)?,
        Command::Toolchain => {
            use zkinfer::evm::toolchain;
            println!("toolchain folder: {}", toolchain::toolchain_dir().display());
            println!("solc:  {}", toolchain::resolve_solc(None)?.display());
            println!("anvil: {}", toolchain::resolve_anvil()?.display());
            println!("forge: {}", toolchain::resolve_forge()?.display());
        }
    }
    Ok(())
}

fn parse_address(text: &str, flag: &str) -> zkinfer::Result<alloy::primitives::Address> {
    text.parse().map_err(|_| zkinfer::Error::Usage(format!("{flag} {text:?} is not an address (0x and 40 hex digits)")))
}

fn print_deployment(chain: &zkinfer::evm::Chain, file: &DeploymentFile, out: Option<&Path>) {
    println!("deployed on {} from {}:", chain.describe(), file.deployer);
    let line = |what: &str, d: &Option<zkinfer::evm::Deployed>| {
        if let Some(d) = d {
            let tx = d.tx_hash.map(|h| format!(", tx {h}")).unwrap_or_default();
            println!("  {what:<9} {} ({} gas{tx})", d.address, d.gas_used);
        }
    };
    line("verifier", &file.verifier);
    line("key", &file.key);
    line("adapter", &file.adapter);
    line("registry", &file.registry);
    for m in &file.models {
        let weights = match m.weights {
            zkinfer::evm::registry::WeightBinding::Fixed => "weights fixed in the verifier".to_string(),
            zkinfer::evm::registry::WeightBinding::Instances => {
                format!("weights bound by instances {:?}", m.layout.bound)
            }
            _ => "weights NOT bound: records say only that some weights gave the output".to_string(),
        };
        println!("  model     {:?} registered as {} ({weights}; {} gas)", m.name, m.model_id, m.gas_used);
    }
    match out {
        Some(out) => println!("deployment record: {}", out.display()),
        None => println!("deployment record: none (in-process contracts last only as long as the command)"),
    }
}

fn print_submission(chain: &zkinfer::evm::Chain, s: &Submission, out: &Path) {
    match s.status {
        SubmissionStatus::AlreadyVerified => {
            println!("already verified on {}: record {} (nothing sent)", chain.describe(), s.record_id)
        }
        _ => println!(
            "verified on {}: record {} in block {}, {} gas{}",
            chain.describe(),
            s.record_id,
            s.block.unwrap_or_default(),
            s.gas_used.unwrap_or_default(),
            s.tx_hash.map(|h| format!(", tx {h}")).unwrap_or_default()
        ),
    }
    println!("  registry  {}", s.registry);
    println!("  model     {}", s.model_id);
    if let Some(submitter) = s.submitter {
        println!("  submitter {submitter}");
    }
    for (i, input) in s.inputs.iter().enumerate() {
        println!("  input {i}   {input}");
    }
    for (i, output) in s.outputs.iter().enumerate() {
        println!("  output {i}  {output}");
    }
    println!("submission record: {}", out.display());
}

fn print_summary(r: &zkinfer::artifacts::Report, dir: &Path) {
    let gate = match &r.linear_gate {
        Some(g) => format!(
            ", linear gate {g} ({} multiply-accumulates at {:.2} advice cells each)",
            r.linear_macs,
            r.linear_cells as f64 / r.linear_macs.max(1) as f64
        ),
        None => String::new(),
    };
    let hashes = match r.poseidon_permutations {
        0 => String::new(),
        n => format!(", Poseidon gate ({n} permutations)"),
    };
    println!(
        "circuit:        k = {}, {} advice and {} fixed column(s){gate}{hashes}, {} public instances",
        r.k, r.total_advice_columns, r.fixed_columns, r.num_instances
    );
    println!(
        "setup:          {:.2} s{}",
        r.setup_seconds,
        if r.insecure_srs { " (development SRS: INSECURE, for testing only)" } else { "" }
    );
    println!("prove:          {:.2} s, proof {} bytes", r.prove_seconds, r.proof_bytes);
    println!("verify:         native {} in {:.3} s", if r.verified { "OK" } else { "FAILED" }, r.verify_seconds);
    println!(
        "EVM ({}): {}, {} gas, verifier {} bytes",
        r.evm,
        if r.evm_verified { "OK" } else { "FAILED" },
        r.evm_gas.unwrap_or_default(),
        r.verifier_runtime_bytes
    );
    println!("outputs:        {:?}", r.outputs);
    match (&r.reference_outputs, r.max_abs_error, r.mean_abs_error) {
        (Some(reference), Some(max), Some(mean)) => {
            println!("float ref:      {reference:?}");
            println!("error:          max {max:.5}, mean {mean:.5}");
        }
        _ => println!(
            "float ref:      none: tract cannot run this model (report.json says why); compare the outputs with onnxruntime"
        ),
    }
    println!("artifacts in {}", dir.display());
}

/// The transcript a proof is made with: Poseidon when it is to be aggregated, Keccak for the EVM.
fn transcript_for(for_aggregation: bool) -> zkinfer::prove::TranscriptKind {
    if for_aggregation {
        zkinfer::prove::TranscriptKind::Poseidon
    } else {
        zkinfer::prove::TranscriptKind::Keccak
    }
}

fn print_calibration(c: &zkinfer::calibrate::Calibration) {
    let fmt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_else(|| "n/a".into());
    let width = c.layers.iter().map(|l| l.node.len()).max().unwrap_or(5).max(5);
    println!("{:width$}  {:14}  {:>12}  {:>12}", "layer", "op", "max abs err", "mean abs err");
    for l in &c.layers {
        println!("{:width$}  {:14}  {:>12}  {:>12}", l.node, l.op, fmt(l.max_abs_error), fmt(l.mean_abs_error));
    }
}
