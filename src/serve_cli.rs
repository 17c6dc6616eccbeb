//! `zkinfer serve` and `zkinfer worker`: their arguments, and what they print.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use zkinfer::service::{self, OnchainConfig, ServeOptions, Store, WorkerOptions};

/// The job database.
#[derive(Args, Clone)]
pub(crate) struct DbArgs {
    /// `sqlite://FILE` (one process, made if missing) or `postgres://USER@HOST/DB` (the API and
    /// workers on several machines).
    #[arg(long, default_value = "sqlite://zkinfer-jobs.sqlite")]
    db: String,
}

/// How workers run.
#[derive(Args, Clone)]
pub(crate) struct WorkerArgs {
    /// Jobs proven at once by this process (they share the cores).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Memory running jobs may use at once, in MiB (0: no limit): a job needs about its
    /// proving key's size and waits while the budget is spent.
    #[arg(long, default_value_t = 0)]
    memory_budget_mib: u64,
    /// Seconds a job's lease lasts without a heartbeat: a job whose worker died is taken again
    /// after this.
    #[arg(long, default_value_t = 30)]
    lease_seconds: u64,
    /// This worker's name in leases and the audit log (default: host and process id).
    #[arg(long)]
    name: Option<String>,
    /// Post proofs (of jobs or models that ask for it) through this JSON-RPC node.
    #[arg(long, requires = "registry")]
    rpc_url: Option<String>,
    /// The InferenceRegistry to post to.
    #[arg(long, requires = "rpc_url")]
    registry: Option<String>,
    /// Refuse the node unless it reports this chain id.
    #[arg(long)]
    chain_id: Option<u64>,
    /// The paying account's encrypted keystore (password in $ZKINFER_KEYSTORE_PASSWORD); else
    /// $ZKINFER_PRIVATE_KEY, else on a local chain anvil's first account. Never logged.
    #[arg(long)]
    keystore: Option<PathBuf>,
}

impl WorkerArgs {
    fn options(&self) -> zkinfer::Result<WorkerOptions> {
        let onchain = match (&self.rpc_url, &self.registry) {
            (Some(url), Some(registry)) => Some(OnchainConfig {
                connect: zkinfer::evm::Connect {
                    rpc_url: Some(url.clone()),
                    keystore: self.keystore.clone(),
                    expected_chain_id: self.chain_id,
                    timeout: Duration::from_secs(120),
                },
                registry: crate::parse_address(registry, "--registry")?,
            }),
            _ => None,
        };
        if self.lease_seconds < 3 {
            return Err(zkinfer::Error::Usage("--lease-seconds must be at least 3".into()));
        }
        Ok(WorkerOptions {
            name: self.name.clone().unwrap_or_else(service::worker::default_worker_name),
            concurrency: self.workers.max(1),
            lease: Duration::from_secs(self.lease_seconds),
            memory_budget_mib: self.memory_budget_mib,
            onchain,
            ..WorkerOptions::default()
        })
    }
}

/// `zkinfer serve`'s arguments.
#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(crate) struct ServeArgs {
    #[command(subcommand)]
    action: Option<ServeAction>,
    #[command(flatten)]
    db: DbArgs,
    /// The address to listen on (port 0: any free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Register (or update) a model at start: ID=FOLDER, the folder holding model.compiled,
    /// pk.bin and vk.bin (`zkinfer run`'s output). Repeat for more models.
    #[arg(long = "model", value_name = "ID=FOLDER")]
    models: Vec<String>,
    /// The SRS file the models' keys were made with (default: the development SRS).
    #[arg(long)]
    srs: Option<PathBuf>,
    /// Largest request body accepted, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body_bytes: usize,
    /// Serve without API keys: every caller may do anything. For local development only.
    #[arg(long)]
    no_auth: bool,
    /// Run the API alone: jobs wait for `zkinfer worker` processes on the same database.
    #[arg(long)]
    no_workers: bool,
    #[command(flatten)]
    worker: WorkerArgs,
}

#[derive(Subcommand)]
enum ServeAction {
    /// Manage API keys (stored hashed: a key's secret is shown once, when it is made).
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Make a key and print its secret (once).
    Create {
        /// A name for people ("dapp-backend").
        #[arg(long)]
        name: String,
        /// May register models and read the audit log (and have proofs posted on-chain).
        #[arg(long)]
        admin: bool,
        /// May ask for its jobs to be posted on-chain, which the service's account pays for.
        #[arg(long)]
        may_post: bool,
        /// Proof requests a minute (0: no limit).
        #[arg(long, default_value_t = 60)]
        rate_per_minute: i64,
        /// Proof requests in all (0: no limit).
        #[arg(long, default_value_t = 0)]
        quota: i64,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Revoke a key: it is refused from then on.
    Revoke {
        /// The key's id (from `keys list`).
        id: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the keys (never their secrets).
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

/// `zkinfer worker`'s arguments.
#[derive(Args)]
pub(crate) struct WorkerCommand {
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    worker: WorkerArgs,
}

fn runtime() -> zkinfer::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| zkinfer::Error::Usage(format!("cannot start the async runtime: {e}")))
}

async fn until_stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Waits for Ctrl-C or SIGTERM, then runs `stop` (the running jobs finish first), unless asked
/// again: then it leaves them to other workers once their leases run out.
async fn stop_when_asked(stop: impl std::future::Future<Output = ()>) {
    until_stopped().await;
    println!("stopping: the running jobs finish first (stop again to leave them to other workers)");
    tokio::select! {
        _ = stop => {}
        _ = until_stopped() => println!("stopped: the running jobs are taken again when their leases run out"),
    }
}

/// `zkinfer serve`.
pub(crate) fn serve(args: ServeArgs) -> zkinfer::Result<()> {
    runtime()?.block_on(async move {
        if let Some(ServeAction::Keys { action }) = args.action {
            return keys(action).await;
        }
        let store = Store::open(&args.db.db).await?;
        for spec in &args.models {
            let (id, dir) = spec.split_once('=').ok_or_else(|| {
                zkinfer::Error::Usage(format!("--model {spec:?}: expected ID=FOLDER, e.g. --model mlp=./mlp"))
            })?;
            let record = service::model_record(id, &PathBuf::from(dir), args.srs.as_deref(), false, None)?;
            let record = service::register_model(&store, record, None).await?;
            println!("model {} from {} (vk {})", record.id, record.dir, &record.vk_digest[..16]);
        }
        let workers = if args.no_workers { None } else { Some(args.worker.options()?) };
        let described = match &workers {
            None => "no workers: run `zkinfer worker` on the same database".to_string(),
            Some(w) => format!("{} worker(s)", w.concurrency),
        };
        if args.no_auth {
            println!("WARNING: serving without API keys (--no-auth): anyone who reaches this port may use it");
        }
        let server = service::start(
            store.clone(),
            ServeOptions {
                listen: args.listen,
                max_body_bytes: args.max_body_bytes,
                no_auth: args.no_auth,
                workers,
                events_poll: Duration::from_millis(100),
            },
        )
        .await?;
        println!("zkinfer serve: listening on http://{} (jobs in {}, {described})", server.address, store.url());
        stop_when_asked(server.stop()).await;
        Ok(())
    })
}

/// `zkinfer worker`.
pub(crate) fn worker(args: WorkerCommand) -> zkinfer::Result<()> {
    runtime()?.block_on(async move {
        let store = Store::open(&args.db.db).await?;
        let options = args.worker.options()?;
        println!("zkinfer worker {}: {} job(s) at once from {}", options.name, options.concurrency, store.url());
        let workers = service::spawn_workers(store, options);
        stop_when_asked(workers.stop()).await;
        Ok(())
    })
}

async fn keys(action: KeysAction) -> zkinfer::Result<()> {
    match action {
        KeysAction::Create { name, admin, may_post, rate_per_minute, quota, db } => {
            let store = Store::open(&db.db).await?;
            let (key, secret) = store.create_key(&name, admin, may_post, rate_per_minute, quota).await?;
            println!("key {} ({}{}): {secret}", key.id, key.name, if admin { ", admin" } else { "" });
            println!("keep the secret: it is stored hashed and cannot be shown again");
        }
        KeysAction::Revoke { id, db } => {
            let store = Store::open(&db.db).await?;
            if !store.revoke_key(&id).await? {
                return Err(zkinfer::Error::Usage(format!(
                    "no active key {id}: `zkinfer serve keys list` shows the keys"
                )));
            }
            println!("revoked {id}");
        }
        KeysAction::List { db } => {
            let store = Store::open(&db.db).await?;
            for key in store.keys().await? {
                let state = if key.revoked_at.is_some() { "revoked" } else { "active" };
                let admin = if key.admin { " admin" } else { "" };
                println!(
                    "{} {:<20} {state}{admin} rate {}/min quota {}",
                    key.id, key.name, key.rate_per_minute, key.quota
                );
            }
        }
    }
    Ok(())
}
