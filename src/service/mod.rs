//! The proving service: `zkinfer serve` (an HTTP API over a persistent job queue) and
//! `zkinfer worker` (processes that lease jobs from the same queue, on this machine or others
//! sharing a Postgres database). See `openapi.json` for the API.

pub mod api;
pub mod store;
pub mod worker;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::artifacts::CompiledModel;
use crate::error::{Error, Result, ServiceError};
pub use store::{ApiKey, AuditEntry, Job, JobState, ModelRecord, Store};
pub use worker::{spawn_workers, OnchainConfig, WorkerOptions, Workers};

/// The OpenAPI description of the HTTP API, served at `/v1/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// How `zkinfer serve` runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Serve without API keys (local development only): every caller is an administrator.
    pub no_auth: bool,
    /// Workers in this process (0: the API alone, with `zkinfer worker` processes elsewhere).
    pub workers: Option<WorkerOptions>,
    /// How long an SSE stream waits between looks at its job.
    pub events_poll: Duration,
}

/// A running server.
pub struct Server {
    /// The address it listens on.
    pub address: SocketAddr,
    workers: Option<Workers>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Server {
    /// Stops accepting requests, lets the workers finish their running jobs, and returns.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        // Open event streams would hold a graceful shutdown forever: they get a few seconds.
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err() {
            task.abort();
        }
        if let Some(workers) = self.workers {
            workers.stop().await;
        }
    }
}

/// Starts the API (and the workers asked for) on `store`.
pub async fn start(store: Store, options: ServeOptions) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(options.listen).await.map_err(|e| ServiceError::Listen {
        address: options.listen.to_string(),
        reason: format!("{e} (is another server on that port? choose another with --listen)"),
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| ServiceError::Listen { address: options.listen.to_string(), reason: e.to_string() })?;
    let workers = options.workers.clone().map(|w| spawn_workers(store.clone(), w));
    let app = api::router(store, &options);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    Ok(Server { address, workers, stop, task })
}

/// What registering a model reads from its folder (`model.compiled`, `pk.bin`, `vk.bin`, the
/// files `zkinfer run` or `compile` and `setup` write): checked here so that a broken folder is
/// refused at registration, not at its first job.
pub fn model_record(
    id: &str,
    dir: &Path,
    srs: Option<&Path>,
    post_onchain: bool,
    registry_model: Option<String>,
) -> Result<ModelRecord> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(Error::Usage(format!(
            "model id {id:?}: use letters, digits, '-', '_' and '.' (it appears in URLs)"
        )));
    }
    let dir = dir.canonicalize().map_err(|e| Error::io("read", dir, e))?;
    let compiled = CompiledModel::load(&dir.join("model.compiled"))?;
    if compiled.model.visibility.submitter {
        return Err(Error::Usage(format!(
            "model {id} binds each proof to its submitter (--bind-submitter): the service does not prove such \
             models yet; make its settings without --bind-submitter"
        )));
    }
    let pk = dir.join("pk.bin");
    let pk_bytes = std::fs::metadata(&pk).map_err(|e| Error::io("read", &pk, e))?.len() as i64;
    let vk_path = dir.join("vk.bin");
    let (header, _, _) = crate::prove::keys::read_vk_checked(&vk_path, srs)?;
    crate::prove::keys::check_digest(&vk_path, &header.circuit_digest, &compiled.circuit_digest)?;
    let vk_bytes = crate::error::read_file(&vk_path)?;
    Ok(ModelRecord {
        id: id.to_string(),
        dir: dir.display().to_string(),
        srs: srs.map(|s| s.display().to_string()),
        circuit_digest: compiled.circuit_digest.clone(),
        vk_digest: store::sha256_hex(&vk_bytes),
        pk_bytes,
        settings: serde_json::to_value(&compiled.settings).expect("settings serialize"),
        post_onchain,
        registry_model,
        registered_at: store::now_ms(),
    })
}

/// Registers a model with the service, and records it in the audit log.
pub async fn register_model(store: &Store, record: ModelRecord, actor: Option<String>) -> Result<ModelRecord> {
    store.put_model(&record).await?;
    store
        .audit(AuditEntry {
            action: "model.registered".into(),
            actor,
            model: Some(record.id.clone()),
            model_commitment: Some(record.vk_digest.clone()),
            detail: Some(record.dir.clone()),
            ..AuditEntry::default()
        })
        .await?;
    Ok(record)
}
