//! Workers: lease jobs from the store, prove them with keys kept warm, post them on-chain when
//! asked, and record the result under the lease (a job whose lease was lost is never recorded
//! twice: its late result is dropped).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy::primitives::Address;
use serde_json::json;
use tokio::sync::{watch, OnceCell, Semaphore};

use super::store::{sha256_hex, AuditEntry, Lease, ModelRecord, Store};
use crate::error::Result;
use crate::evm::{Chain, Connect};
use crate::pipeline::{Proved, Prover};
use crate::prove::TranscriptKind;

/// Where workers post proofs when a job asks for it: the node, the paying account (keystore or
/// `$ZKINFER_PRIVATE_KEY`, never logged) and the registry.
#[derive(Clone, Debug)]
pub struct OnchainConfig {
    /// The node and the account.
    pub connect: Connect,
    /// The InferenceRegistry the models are registered in.
    pub registry: Address,
}

/// How a worker process runs.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// This process's name in leases and the audit log (host and process id by default).
    pub name: String,
    /// Jobs proven at once (they share the cores through rayon's pool).
    pub concurrency: usize,
    /// How long a lease lasts without a heartbeat; a job whose worker died is taken again after it.
    pub lease: Duration,
    /// How often an idle worker looks for work.
    pub poll: Duration,
    /// The memory jobs may use at once, in MiB (0: no limit): a job needs about its proving
    /// key's size, and waits while the jobs running would exceed the budget. Warm keys are kept
    /// within the budget too (least recently used dropped first), so that at most about twice
    /// the budget is in use: the running jobs' working memory and the loaded keys.
    pub memory_budget_mib: u64,
    /// A job whose workers stopped this many times fails instead of being taken again.
    pub max_attempts: i64,
    /// Where to post proofs.
    pub onchain: Option<OnchainConfig>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        WorkerOptions {
            name: default_worker_name(),
            concurrency: 1,
            lease: Duration::from_secs(30),
            poll: Duration::from_millis(200),
            memory_budget_mib: 0,
            max_attempts: 3,
            onchain: None,
        }
    }
}

/// `hostname-pid`.
pub fn default_worker_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_string()).unwrap_or_default();
    let host = if host.is_empty() { "worker".to_string() } else { host };
    format!("{host}-{}", std::process::id())
}

/// Running workers; dropped or stopped, they finish their current job's step and end.
pub struct Workers {
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workers {
    /// Asks every worker to stop and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

struct WarmModel {
    prover: Arc<OnceCell<Arc<Prover>>>,
    bytes: u64,
    last_used: Instant,
    last_prove_seconds: Option<f64>,
}

/// Models kept loaded between jobs, and the memory budget jobs share.
struct Warm {
    models: Mutex<HashMap<String, WarmModel>>,
    posting: tokio::sync::Mutex<()>,
    budget_mib: u64,
    memory: Arc<Semaphore>,
}

impl Warm {
    fn entry(&self, model: &ModelRecord) -> Arc<OnceCell<Arc<Prover>>> {
        let mut models = self.models.lock().expect("warm models lock");
        let fresh = |m: &ModelRecord| WarmModel {
            prover: Arc::new(OnceCell::new()),
            bytes: m.pk_bytes.max(0) as u64,
            last_used: Instant::now(),
            last_prove_seconds: None,
        };
        let entry = models.entry(model.id.clone()).or_insert_with(|| fresh(model));
        // A model registered again (new keys) is loaded again.
        if entry.prover.get().is_some_and(|p| p.compiled.circuit_digest != model.circuit_digest) {
            *entry = fresh(model);
        }
        entry.last_used = Instant::now();
        let cell = entry.prover.clone();
        if self.budget_mib > 0 {
            // Drop the least recently used loaded models that no job holds until the rest fit.
            let mut loaded: Vec<(String, u64, Instant)> = models
                .iter()
                .filter(|(id, m)| m.prover.get().is_some() && **id != model.id && Arc::strong_count(&m.prover) == 1)
                .map(|(id, m)| (id.clone(), m.bytes, m.last_used))
                .collect();
            loaded.sort_by_key(|(_, _, used)| *used);
            let mut total: u64 = models.values().filter(|m| m.prover.get().is_some()).map(|m| m.bytes).sum();
            for (id, bytes, _) in loaded {
                if total / (1 << 20) <= self.budget_mib {
                    break;
                }
                models.remove(&id);
                total -= bytes;
                tracing::info!("dropped the warm keys of model {id} (memory budget)");
            }
        }
        cell
    }

    fn expected_seconds(&self, model: &str) -> Option<f64> {
        self.models.lock().expect("warm models lock").get(model).and_then(|m| m.last_prove_seconds)
    }

    fn proved(&self, model: &str, seconds: f64) {
        if let Some(m) = self.models.lock().expect("warm models lock").get_mut(model) {
            m.last_prove_seconds = Some(seconds);
        }
    }
}

/// Starts `options.concurrency` workers on `store` in this process's runtime.
pub fn spawn_workers(store: Store, options: WorkerOptions) -> Workers {
    let (stop, stopped) = watch::channel(false);
    let budget = options.memory_budget_mib;
    let warm = Arc::new(Warm {
        models: Mutex::new(HashMap::new()),
        posting: tokio::sync::Mutex::new(()),
        budget_mib: budget,
        memory: Arc::new(Semaphore::new(if budget == 0 { Semaphore::MAX_PERMITS } else { budget as usize })),
    });
    let options = Arc::new(options);
    let tasks = (0..options.concurrency.max(1))
        .map(|i| {
            let worker = Worker {
                name: format!("{}/{i}", options.name),
                store: store.clone(),
                options: options.clone(),
                warm: warm.clone(),
            };
            let stopped = stopped.clone();
            tokio::spawn(async move { worker.run(stopped).await })
        })
        .collect();
    Workers { stop, tasks }
}

struct Worker {
    name: String,
    store: Store,
    options: Arc<WorkerOptions>,
    warm: Arc<Warm>,
}

/// What a job is doing, shared with its heartbeat.
type Progress = Arc<Mutex<(String, i64)>>;

impl Worker {
    async fn run(self, mut stopped: watch::Receiver<bool>) {
        let lease_ms = self.options.lease.as_millis() as i64;
        // Stop when asked, or when the `Workers` handle is gone.
        while !*stopped.borrow() && stopped.has_changed().is_ok() {
            match self.store.lease(&self.name, lease_ms, self.options.max_attempts).await {
                Ok(Some(lease)) => self.work(lease).await,
                Ok(None) => {
                    tokio::select! {
                        _ = self.store.job_queued() => {}
                        _ = tokio::time::sleep(self.options.poll) => {}
                        _ = stopped.changed() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!("worker {}: {}", self.name, e.chain());
                    let _ = tokio::time::timeout(self.options.poll * 10, stopped.changed()).await;
                }
            }
        }
    }

    async fn work(&self, lease: Lease) {
        let job = &lease.job;
        tracing::info!("worker {}: job {} (model {}, attempt {})", self.name, job.id, job.model, job.attempts);
        let progress: Progress = Arc::new(Mutex::new(("leased".into(), 0)));
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let heartbeat = {
            let (store, lease, progress, lost) = (self.store.clone(), lease.clone(), progress.clone(), lost.clone());
            let every = self.options.lease / 3;
            let lease_ms = self.options.lease.as_millis() as i64;
            tokio::spawn(async move {
                // Progress is written when it changes (at most four times a second), and the
                // lease extended at least every third of its length.
                let mut written = (String::new(), -1);
                let mut extended = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let now = progress.lock().expect("progress lock").clone();
                    if now == written && extended.elapsed() < every {
                        continue;
                    }
                    match store.heartbeat(&lease, lease_ms, &now.0, now.1).await {
                        Ok(true) => {
                            written = now;
                            extended = Instant::now();
                        }
                        Ok(false) => {
                            lost.store(true, std::sync::atomic::Ordering::SeqCst);
                            return;
                        }
                        Err(e) => tracing::warn!("heartbeat of job {}: {}", lease.job.id, e.chain()),
                    }
                }
            })
        };
        let outcome = self.prove_job(&lease, &progress, &lost).await;
        heartbeat.abort();
        let (result, audit) = match outcome {
            Ok((result, audit)) => (Ok(result), audit),
            Err(error) => {
                // A node's URL often carries a provider's key: it is not shown to API callers.
                let mut text = error.chain();
                if let Some(url) = self.options.onchain.as_ref().and_then(|c| c.connect.rpc_url.as_deref()) {
                    text = text.replace(url, "the node (--rpc-url)");
                }
                let audit = vec![AuditEntry {
                    action: "job.failed".into(),
                    detail: Some(text.clone()),
                    ..self.audit_base(&lease)
                }];
                (Err(text), audit)
            }
        };
        let recorded = self.store.finish(&lease, result.as_ref().map_err(|e| e.as_str()), audit).await;
        match recorded {
            Ok(true) => {}
            Ok(false) => tracing::warn!(
                "worker {}: job {} was taken by another worker after this one's lease ran out; its result here is dropped",
                self.name,
                job.id
            ),
            Err(e) => tracing::warn!("worker {}: job {}: {}", self.name, job.id, e.chain()),
        }
    }

    fn audit_base(&self, lease: &Lease) -> AuditEntry {
        AuditEntry {
            actor: lease.job.api_key.clone(),
            job: Some(lease.job.id.clone()),
            model: Some(lease.job.model.clone()),
            detail: Some(format!("worker {}", self.name)),
            ..AuditEntry::default()
        }
    }

    async fn prove_job(
        &self,
        lease: &Lease,
        progress: &Progress,
        lost: &std::sync::atomic::AtomicBool,
    ) -> Result<(serde_json::Value, Vec<AuditEntry>)> {
        let set = |phase: &str, percent: i64| *progress.lock().expect("progress lock") = (phase.to_string(), percent);
        let job = &lease.job;
        let started = Instant::now();
        let model = self.store.model(&job.model).await?.ok_or_else(|| {
            crate::Error::Usage(format!("model {} is no longer registered with the service", job.model))
        })?;
        let post = job.post_onchain || model.post_onchain;
        if post && self.options.onchain.is_none() {
            return Err(crate::Error::Usage(
                "the job asks to be posted on-chain but this worker has no chain: start it with --rpc-url and \
                 --registry (and the account in --keystore or $ZKINFER_PRIVATE_KEY)"
                    .into(),
            ));
        }

        set("waiting for memory", 2);
        let need = ((model.pk_bytes.max(0) as u64) >> 20).max(64);
        let need = if self.warm.budget_mib == 0 { need } else { need.min(self.warm.budget_mib) };
        let _memory =
            self.warm.memory.clone().acquire_many_owned(need as u32).await.expect("the semaphore is never closed");

        set("loading keys", 5);
        let cell = self.warm.entry(&model);
        let prover = cell
            .get_or_try_init(|| async {
                let dir = PathBuf::from(&model.dir);
                let srs = model.srs.clone().map(PathBuf::from);
                blocking(move || {
                    Prover::load(&dir.join("model.compiled"), &dir.join("pk.bin"), srs.as_deref()).map(Arc::new)
                })
                .await
            })
            .await?
            .clone();
        let loaded = started.elapsed().as_secs_f64();

        let input: serde_json::Value = serde_json::from_str(&job.input)
            .map_err(|e| crate::Error::Usage(format!("the job's input is not JSON: {e}")))?;
        let inputs = prover.parse_input(&input, Path::new("the job's input"))?;
        let input_commitment =
            sha256_hex(&serde_json::to_vec(&prover.compiled.model.quantize_inputs(&inputs)).expect("inputs serialize"));
        // A proof an earlier attempt saved before posting is posted again, not made anew: the
        // registry then finds its record (a new proof of a salted model would be another one).
        let saved = job.result.as_ref().filter(|r| r["pending_post"] == true);
        let (proof, outputs, prove_seconds) = match saved {
            Some(saved) => (
                serde_json::from_value::<crate::prove::ProofFile>(saved["proof"].clone())
                    .map_err(|e| crate::Error::Usage(format!("the job's saved proof is unreadable: {e}")))?,
                serde_json::from_value::<Vec<Vec<f64>>>(saved["outputs"].clone()).unwrap_or_default(),
                saved["prove_s"].as_f64().unwrap_or(0.0),
            ),
            None => {
                let proved = self.prove_inputs(&model.id, &prover, inputs, progress).await?;
                (proved.proof, proved.outputs, proved.seconds)
            }
        };
        let proof_bytes = hex::decode(proof.proof.trim_start_matches("0x")).unwrap_or_default();
        let mut audit = vec![AuditEntry {
            action: "job.proven".into(),
            model_commitment: Some(model.vk_digest.clone()),
            input_commitment: Some(input_commitment.clone()),
            proof_digest: Some(sha256_hex(&proof_bytes)),
            ..self.audit_base(lease)
        }];

        let mut onchain = serde_json::Value::Null;
        let mut post_seconds = 0.0;
        // A worker whose lease another took posts nothing: the other worker's result counts.
        if lost.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::Error::Usage("the job's lease was lost to another worker".into()));
        }
        if post {
            set("posting on-chain", 92);
            // One transaction at a time from this process: the account's nonces stay in order.
            let _posting = self.warm.posting.lock().await;
            let config = self.options.onchain.clone().expect("checked above");
            let registry_model = model.registry_model.clone().unwrap_or_else(|| model.id.clone());
            let saved = json!({ "pending_post": true, "proof": proof, "outputs": outputs, "prove_s": prove_seconds });
            if !self.store.save_result(lease, &saved).await? {
                return Err(crate::Error::Usage("the job's lease was lost to another worker".into()));
            }
            let (dir, proof) = (PathBuf::from(&model.dir), proof.clone());
            let srs = model.srs.clone().map(PathBuf::from);
            let post_start = Instant::now();
            let submission = blocking(move || {
                let scratch = tempfile_dir()?;
                let proof_path = scratch.join("proof.json");
                crate::error::write_json(&proof_path, &proof)?;
                let mut chain = Chain::open(&config.connect)?;
                let result = crate::onchain::submit(
                    &mut chain,
                    &crate::onchain::SubmitOptions {
                        proof: proof_path,
                        vk: dir.join("vk.bin"),
                        srs,
                        allow_unbound_weights: false,
                        model: registry_model,
                        registry: Some(config.registry),
                        deployment: dir.join("deployment.json"),
                        verifier: dir.join("Verifier.json"),
                        key: None,
                        out: scratch.join("submission.json"),
                        solc: None,
                        gas_cap: 0,
                    },
                );
                let _ = std::fs::remove_dir_all(&scratch);
                result
            })
            .await?;
            post_seconds = post_start.elapsed().as_secs_f64();
            audit.push(AuditEntry {
                action: "job.posted".into(),
                model_commitment: Some(model.vk_digest.clone()),
                input_commitment: Some(input_commitment),
                tx_hash: submission.tx_hash.map(|h| h.to_string()),
                detail: Some(format!("record {} ({:?})", submission.record_id, submission.status)),
                ..self.audit_base(lease)
            });
            onchain = serde_json::to_value(&submission).expect("a submission serializes");
        }

        let queued = job.started_at.unwrap_or(job.created_at) - job.created_at;
        let result = json!({
            "proof": proof,
            "outputs": outputs,
            "timings": {
                "queued_s": queued as f64 / 1000.0,
                "load_s": loaded,
                "prove_s": prove_seconds,
                "post_s": post_seconds,
                "total_s": started.elapsed().as_secs_f64(),
            },
            "worker": self.name,
            "onchain": onchain,
        });
        Ok((result, audit))
    }
}

impl Worker {
    /// Proves `inputs` off the async threads, with proving's share of the progress estimated
    /// from this model's previous proof.
    async fn prove_inputs(
        &self,
        model: &str,
        prover: &Arc<Prover>,
        inputs: Vec<Vec<f32>>,
        progress: &Progress,
    ) -> Result<Proved> {
        *progress.lock().expect("progress lock") = ("proving".into(), 10);
        let expected = self.warm.expected_seconds(model);
        let ticker = {
            let progress = progress.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    let percent = match expected {
                        Some(total) if total > 0.0 => {
                            10 + ((start.elapsed().as_secs_f64() / total) * 80.0).min(79.0) as i64
                        }
                        _ => 50,
                    };
                    *progress.lock().expect("progress lock") = ("proving".into(), percent);
                }
            })
        };
        let prover = prover.clone();
        let proved = blocking(move || prover.prove(&inputs, TranscriptKind::Keccak, None)).await;
        ticker.abort();
        let proved = proved?;
        self.warm.proved(model, proved.seconds);
        Ok(proved)
    }
}

/// Runs blocking work (proving, loading keys, a chain client with its own runtime) off the
/// async threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|e| {
        Err(crate::Error::Usage(format!("a worker thread stopped unexpectedly ({e}); the job can be queued again")))
    })
}

fn tempfile_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(super::store::random_id("zkinfer-job-"));
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io("create", &dir, e))?;
    Ok(dir)
}
