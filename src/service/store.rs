//! The service's persistent state: models, API keys, the job queue and the audit log, in SQLite
//! (one file, one process) or in Postgres (workers on several machines). The same SQL runs on
//! both through sqlx's `Any` driver; only the lease takes Postgres's `FOR UPDATE SKIP LOCKED`,
//! so that concurrent workers never take the same job.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::error::{Result, ServiceError};

/// Milliseconds since the Unix epoch: every timestamp the store keeps.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A fresh random identifier: `prefix` then 32 hex digits.
pub fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

/// The hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A job's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for a worker.
    Queued,
    /// Leased by a worker.
    Running,
    /// Proven (and posted, when asked).
    Done,
    /// Failed; `error` says why.
    Failed,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> JobState {
        match s {
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            _ => JobState::Queued,
        }
    }
}

/// A proving job as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Job {
    /// The job id.
    pub id: String,
    /// The model it proves.
    pub model: String,
    /// Where it stands.
    pub state: JobState,
    /// What the worker is doing ("loading keys", "proving", "posting on-chain").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// Progress, 0 to 100 (proving's share is estimated from the model's previous proofs).
    pub percent: i64,
    /// How many times a worker took it (more than one when a worker stopped mid-job).
    pub attempts: i64,
    /// Whether the proof is posted to the registry when proven.
    pub post_onchain: bool,
    /// When it was queued, started and ended (ms since the Unix epoch).
    pub created_at: i64,
    /// When a worker first took it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<i64>,
    /// When it ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    /// The result of a done job: proof.json, outputs, timings, the on-chain record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why a failed job failed: the error text the CLI prints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The input.json body it proves (not shown by the API: it may be private).
    #[serde(skip)]
    pub input: String,
    /// The API key that queued it.
    #[serde(skip)]
    pub api_key: Option<String>,
}

/// A leased job: the job and the lease's token (its attempt number), which every update under
/// the lease must show.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The job.
    pub job: Job,
    /// The worker holding it.
    pub worker: String,
}

/// A model the service proves.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelRecord {
    /// Its id in the API.
    pub id: String,
    /// The folder holding `model.compiled`, `pk.bin` and `vk.bin` (on every worker's machine).
    pub dir: String,
    /// The SRS file the keys were made with (none: the development SRS).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub srs: Option<String>,
    /// The compiled model's circuit digest.
    pub circuit_digest: String,
    /// SHA-256 of `vk.bin`: what the audit log names the model by.
    pub vk_digest: String,
    /// Size of `pk.bin` in bytes: what a worker budgets memory by.
    pub pk_bytes: i64,
    /// The model's settings (scales, visibility, shapes).
    pub settings: serde_json::Value,
    /// Post every proof of this model to the registry.
    pub post_onchain: bool,
    /// The name the model is registered under in the on-chain registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry_model: Option<String>,
    /// When it was registered (ms since the Unix epoch).
    pub registered_at: i64,
}

/// An API key (its secret is never stored, only its SHA-256).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiKey {
    /// Its public id.
    pub id: String,
    /// A name for people.
    pub name: String,
    /// May register models and read the audit log.
    pub admin: bool,
    /// May ask for its jobs to be posted on-chain (which the service's account pays for).
    pub may_post: bool,
    /// Proof requests per minute (0: no limit).
    pub rate_per_minute: i64,
    /// Proof requests in all (0: no limit).
    pub quota: i64,
    /// When it was made (ms since the Unix epoch).
    pub created_at: i64,
    /// When it was revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// One line of the append-only audit log.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Its position in the log.
    pub seq: i64,
    /// When (ms since the Unix epoch).
    pub at: i64,
    /// What happened: `job.queued`, `job.proven`, `job.failed`, `job.posted`, `model.registered`.
    pub action: String,
    /// Who asked: the API key id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The model id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model's commitment: SHA-256 of its verifying key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_commitment: Option<String>,
    /// SHA-256 of the quantized input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_commitment: Option<String>,
    /// SHA-256 of the proof bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proof_digest: Option<String>,
    /// The registry transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    /// Anything else (the error of a failed job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The database behind the service.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
    url: String,
    /// Signalled when a job is queued: wakes one idle worker of this process at once (workers
    /// of other processes find it at their next look).
    queued: Arc<Notify>,
    /// Signalled when a job changes: wakes the event streams of this process at once.
    changed: Arc<Notify>,
}

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, body TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, name TEXT NOT NULL, \
     admin BIGINT NOT NULL, may_post BIGINT NOT NULL, rate_per_minute BIGINT NOT NULL, quota BIGINT NOT NULL, created_at BIGINT NOT NULL, \
     revoked_at BIGINT)",
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, input TEXT NOT NULL, \
     api_key TEXT, state TEXT NOT NULL, phase TEXT, percent BIGINT NOT NULL, worker TEXT, lease_until BIGINT, \
     attempts BIGINT NOT NULL, post_onchain BIGINT NOT NULL, result TEXT, error TEXT, created_at BIGINT NOT NULL, \
     started_at BIGINT, finished_at BIGINT)",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, created_at)",
    "CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (api_key)",
];

const AUDIT_SQLITE: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_by_job ON audit (job)",
    "CREATE TRIGGER IF NOT EXISTS audit_append_only_update BEFORE UPDATE ON audit \
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_append_only_delete BEFORE DELETE ON audit \
     BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
];

const AUDIT_POSTGRES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS audit (seq BIGSERIAL PRIMARY KEY, job TEXT, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_by_job ON audit (job)",
    "CREATE OR REPLACE FUNCTION zkinfer_audit_append_only() RETURNS trigger AS $$ \
     BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$ LANGUAGE plpgsql",
    "CREATE OR REPLACE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit \
     FOR EACH ROW EXECUTE FUNCTION zkinfer_audit_append_only()",
    "CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit \
     FOR EACH STATEMENT EXECUTE FUNCTION zkinfer_audit_append_only()",
];

const JOB_COLUMNS: &str = "id, model, input, api_key, state, phase, percent, attempts, post_onchain, result, error, \
                           created_at, started_at, finished_at";

impl Store {
    /// Opens (creating when needed) the database at `url`: `sqlite://FILE` (the file is made if
    /// missing) or `postgres://…`, and makes its tables.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let shown = redact(url);
        let connect_url = if postgres {
            url.to_string()
        } else if let Some(path) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            if path.is_empty() {
                return Err(bad_url(&shown, "name the database file: sqlite://jobs.sqlite"));
            }
            if path.contains('?') {
                url.to_string()
            } else {
                format!("sqlite://{path}?mode=rwc")
            }
        } else {
            return Err(bad_url(&shown, "use sqlite://FILE or postgres://USER@HOST/DATABASE"));
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 8 } else { 4 })
            .acquire_timeout(std::time::Duration::from_secs(30))
            .connect(&connect_url)
            .await
            .map_err(|e| db_error(&shown, "cannot connect (is the server running and the URL right?)", e))?;
        let store = Store { pool, postgres, url: shown, queued: Arc::default(), changed: Arc::default() };
        if !postgres {
            // Readers never wait for the writer; writers wait for each other instead of failing.
            store.exec("PRAGMA journal_mode=WAL").await?;
        }
        // Several processes may start at once on one Postgres database: one makes the tables.
        let mut tx = store.pool.begin().await.map_err(|e| store.error("cannot start a transaction", e))?;
        if postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7461938)")
                .execute(&mut *tx)
                .await
                .map_err(|e| store.error("cannot lock the schema", e))?;
        }
        for statement in SCHEMA.iter().chain(if postgres { AUDIT_POSTGRES } else { AUDIT_SQLITE }) {
            sqlx::query(statement).execute(&mut *tx).await.map_err(|e| store.error("cannot make the tables", e))?;
        }
        tx.commit().await.map_err(|e| store.error("cannot make the tables", e))?;
        Ok(store)
    }

    /// Waits until a job is queued by this process (or returns at once if one was queued since
    /// the last wait).
    pub async fn job_queued(&self) {
        self.queued.notified().await
    }

    /// Waits until a job changes in this process.
    pub async fn job_changed(&self) {
        self.changed.notified().await
    }

    /// The database's URL, without its password.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn exec(&self, sql: &str) -> Result<()> {
        sqlx::query(sql).execute(&self.pool).await.map_err(|e| self.error("a statement failed", e))?;
        Ok(())
    }

    fn error(&self, what: &str, e: sqlx::Error) -> crate::Error {
        db_error(&self.url, what, e)
    }

    // --- API keys -------------------------------------------------------------------------------

    /// Makes an API key; returns it and its secret, which is shown once and never stored.
    pub async fn create_key(
        &self,
        name: &str,
        admin: bool,
        may_post: bool,
        rate_per_minute: i64,
        quota: i64,
    ) -> Result<(ApiKey, String)> {
        let secret = random_id("zk_");
        let key = ApiKey {
            id: random_id("key_")[..16].to_string(),
            name: name.to_string(),
            admin,
            may_post,
            rate_per_minute,
            quota,
            created_at: now_ms(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, hash, name, admin, may_post, rate_per_minute, quota, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&key.id)
        .bind(sha256_hex(secret.as_bytes()))
        .bind(&key.name)
        .bind(admin as i64)
        .bind(may_post as i64)
        .bind(rate_per_minute)
        .bind(quota)
        .bind(key.created_at)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error("cannot store the key", e))?;
        Ok((key, secret))
    }

    /// Revokes a key; false if there is no such key or it was revoked already.
    pub async fn revoke_key(&self, id: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|e| self.error("cannot revoke the key", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Every key, revoked ones included.
    pub async fn keys(&self) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT id, name, admin, may_post, rate_per_minute, quota, created_at, revoked_at FROM api_keys ORDER BY created_at",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.error("cannot list keys", e))?;
        rows.iter().map(|r| key_of(r).map_err(|e| self.error("cannot read a key", e))).collect()
    }

    /// The key whose secret is `secret`, revoked or not.
    pub async fn key_by_secret(&self, secret: &str) -> Result<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, name, admin, may_post, rate_per_minute, quota, created_at, revoked_at FROM api_keys WHERE hash = $1",
        )
        .bind(sha256_hex(secret.as_bytes()))
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.error("cannot look the key up", e))?;
        row.map(|r| key_of(&r).map_err(|e| self.error("cannot read a key", e))).transpose()
    }

    /// How many jobs `key` has queued.
    pub async fn jobs_of_key(&self, key: &str) -> Result<i64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE api_key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.error("cannot count the key's jobs", e))?;
        row.try_get::<i64, _>("n").map_err(|e| self.error("cannot count the key's jobs", e))
    }

    // --- models ---------------------------------------------------------------------------------

    /// Registers (or replaces) a model.
    pub async fn put_model(&self, model: &ModelRecord) -> Result<()> {
        let body = serde_json::to_string(model).expect("a model record serializes");
        sqlx::query(
            "INSERT INTO models (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = excluded.body",
        )
        .bind(&model.id)
        .bind(body)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error("cannot store the model", e))?;
        Ok(())
    }

    /// The model `id`.
    pub async fn model(&self, id: &str) -> Result<Option<ModelRecord>> {
        let row = sqlx::query("SELECT body FROM models WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error("cannot read the model", e))?;
        Ok(row.and_then(|r| r.try_get::<String, _>("body").ok()).and_then(|b: String| serde_json::from_str(&b).ok()))
    }

    /// Every model.
    pub async fn models(&self) -> Result<Vec<ModelRecord>> {
        let rows = sqlx::query("SELECT body FROM models ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("cannot list the models", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("body").ok())
            .filter_map(|b: String| serde_json::from_str(&b).ok())
            .collect())
    }

    // --- jobs -----------------------------------------------------------------------------------

    /// The database's clock in ms since the Unix epoch, as SQL: leases are timed by the one
    /// clock every worker shares, not by each machine's own.
    fn now_sql(&self) -> &'static str {
        if self.postgres {
            "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"
        } else {
            "CAST(unixepoch('subsec') * 1000 AS INTEGER)"
        }
    }

    /// Queues a job and records who asked, in one transaction.
    pub async fn enqueue(
        &self,
        model: &str,
        input: &str,
        api_key: Option<&str>,
        post_onchain: bool,
        audit: AuditEntry,
    ) -> Result<Job> {
        let id = random_id("job_");
        let mut tx = self.pool.begin().await.map_err(|e| self.error("cannot queue the job", e))?;
        sqlx::query(&format!(
            "INSERT INTO jobs (id, model, input, api_key, state, percent, attempts, post_onchain, created_at) \
             VALUES ($1, $2, $3, $4, 'queued', 0, 0, $5, {})",
            self.now_sql()
        ))
        .bind(&id)
        .bind(model)
        .bind(input)
        .bind(api_key)
        .bind(post_onchain as i64)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.error("cannot queue the job", e))?;
        append(&mut tx, AuditEntry { job: Some(id.clone()), ..audit })
            .await
            .map_err(|e| self.error("cannot queue the job", e))?;
        tx.commit().await.map_err(|e| self.error("cannot queue the job", e))?;
        self.queued.notify_one();
        self.job(&id).await?.ok_or_else(|| self.error("the queued job vanished", sqlx::Error::RowNotFound))
    }

    /// The job `id`.
    pub async fn job(&self, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.error("cannot read the job", e))?;
        row.map(|r| job_of(&r).map_err(|e| self.error("cannot read the job", e))).transpose()
    }

    /// Jobs in each state: (queued, running, done, failed).
    pub async fn counts(&self) -> Result<[i64; 4]> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.error("cannot count jobs", e))?;
        let mut counts = [0; 4];
        for row in rows {
            let state: String = row.try_get("state").unwrap_or_default();
            let n: i64 = row.try_get("n").unwrap_or(0);
            counts[JobState::parse(&state) as usize] += n;
        }
        Ok(counts)
    }

    /// Takes the oldest job that is queued, or whose worker's lease ran out, for `worker`
    /// until `lease_ms` from now. A job whose workers stopped `max_attempts` times is failed
    /// (and logged) instead of being taken again.
    pub async fn lease(&self, worker: &str, lease_ms: i64, max_attempts: i64) -> Result<Option<Lease>> {
        let now = self.now_sql();
        let mut tx = self.pool.begin().await.map_err(|e| self.error("cannot lease a job", e))?;
        let expired = sqlx::query(&format!(
            "UPDATE jobs SET state = 'failed', finished_at = {now}, worker = NULL, lease_until = NULL, \
             error = 'its worker stopped ' || CAST(attempts AS TEXT) || ' times before finishing it (killed, or out of \
             memory?): check the workers'' logs and the model''s memory needs, then queue it again' \
             WHERE state = 'running' AND lease_until < {now} AND attempts >= $1 RETURNING id, model, api_key, error"
        ))
        .bind(max_attempts)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| self.error("cannot expire jobs", e))?;
        for row in expired {
            let entry = AuditEntry {
                action: "job.failed".into(),
                job: row.try_get("id").ok(),
                model: row.try_get("model").ok(),
                actor: row.try_get("api_key").ok().flatten(),
                detail: row.try_get("error").ok(),
                ..AuditEntry::default()
            };
            append(&mut tx, entry).await.map_err(|e| self.error("cannot expire jobs", e))?;
        }
        let lock = if self.postgres { " FOR UPDATE SKIP LOCKED" } else { "" };
        let row = sqlx::query(&format!(
            "UPDATE jobs SET state = 'running', worker = $1, lease_until = {now} + $2, attempts = attempts + 1, \
             started_at = COALESCE(started_at, {now}), phase = 'leased', percent = 0 \
             WHERE id = (SELECT id FROM jobs WHERE state = 'queued' OR (state = 'running' AND lease_until < {now}) \
             ORDER BY created_at, id LIMIT 1{lock}) RETURNING {JOB_COLUMNS}"
        ))
        .bind(worker)
        .bind(lease_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.error("cannot lease a job", e))?;
        tx.commit().await.map_err(|e| self.error("cannot lease a job", e))?;
        let Some(row) = row else { return Ok(None) };
        let job = job_of(&row).map_err(|e| self.error("cannot read the leased job", e))?;
        self.changed.notify_waiters();
        Ok(Some(Lease { job, worker: worker.to_string() }))
    }

    /// Extends a lease and records progress; false if the lease was lost (the job ran out of
    /// time and another worker took it, or it ended).
    pub async fn heartbeat(&self, lease: &Lease, lease_ms: i64, phase: &str, percent: i64) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE jobs SET lease_until = {} + $1, phase = $2, percent = $3 \
             WHERE id = $4 AND worker = $5 AND attempts = $6 AND state = 'running'",
            self.now_sql()
        ))
        .bind(lease_ms)
        .bind(phase)
        .bind(percent)
        .bind(&lease.job.id)
        .bind(&lease.worker)
        .bind(lease.job.attempts)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error("cannot extend the lease", e))?;
        self.changed.notify_waiters();
        Ok(done.rows_affected() == 1)
    }

    /// Saves a result under the lease before the job ends (a proof about to be posted, which a
    /// later attempt posts again instead of proving anew); false if the lease was lost.
    pub async fn save_result(&self, lease: &Lease, result: &serde_json::Value) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE jobs SET result = $1 WHERE id = $2 AND worker = $3 AND attempts = $4 AND state = 'running'",
        )
        .bind(result.to_string())
        .bind(&lease.job.id)
        .bind(&lease.worker)
        .bind(lease.job.attempts)
        .execute(&self.pool)
        .await
        .map_err(|e| self.error("cannot save the job's proof", e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends a leased job with its result or its error, and appends `audit`, in one
    /// transaction; false (and nothing written) if the lease was lost, so that a job is never
    /// recorded twice.
    pub async fn finish(
        &self,
        lease: &Lease,
        outcome: std::result::Result<&serde_json::Value, &str>,
        audit: Vec<AuditEntry>,
    ) -> Result<bool> {
        let (state, result, error) = match outcome {
            Ok(result) => (JobState::Done, Some(result.to_string()), None),
            Err(error) => (JobState::Failed, None, Some(error.to_string())),
        };
        let mut tx = self.pool.begin().await.map_err(|e| self.error("cannot record the job's end", e))?;
        let done = sqlx::query(&format!(
            "UPDATE jobs SET state = $1, result = $2, error = $3, finished_at = {}, \
             percent = CASE WHEN $1 = 'done' THEN 100 ELSE percent END, phase = NULL, worker = NULL, \
             lease_until = NULL WHERE id = $4 AND worker = $5 AND attempts = $6 AND state = 'running'",
            self.now_sql()
        ))
        .bind(state.as_str())
        .bind(result)
        .bind(error)
        .bind(&lease.job.id)
        .bind(&lease.worker)
        .bind(lease.job.attempts)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.error("cannot record the job's end", e))?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        for entry in audit {
            append(&mut tx, entry).await.map_err(|e| self.error("cannot record the job's end", e))?;
        }
        tx.commit().await.map_err(|e| self.error("cannot record the job's end", e))?;
        self.changed.notify_waiters();
        Ok(true)
    }

    // --- audit log ------------------------------------------------------------------------------

    /// Appends to the audit log (never updated or deleted: the database refuses it).
    pub async fn audit(&self, entry: AuditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.error("cannot append to the audit log", e))?;
        append(&mut conn, entry).await.map_err(|e| self.error("cannot append to the audit log", e))
    }

    /// Up to `limit` entries of the audit log after `after`, oldest first, of one job or of all.
    pub async fn audit_log(&self, job: Option<&str>, after: i64, limit: i64) -> Result<Vec<AuditEntry>> {
        let rows =
            sqlx::query("SELECT seq, body FROM audit WHERE seq > $1 AND ($2 = '' OR job = $2) ORDER BY seq LIMIT $3")
                .bind(after)
                .bind(job.unwrap_or(""))
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.error("cannot read the audit log", e))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                let seq: i64 = r.try_get("seq").ok()?;
                let mut entry: AuditEntry = serde_json::from_str(&r.try_get::<String, _>("body").ok()?).ok()?;
                entry.seq = seq;
                Some(entry)
            })
            .collect())
    }

    /// Runs `sql` as it is: for tests that check what the database refuses.
    pub async fn raw(&self, sql: &str) -> Result<u64> {
        let done = sqlx::query(sql).execute(&self.pool).await.map_err(|e| self.error("statement refused", e))?;
        Ok(done.rows_affected())
    }
}

/// Appends `entry` (timed now) on `conn`, inside the caller's transaction if it has one.
async fn append(conn: &mut sqlx::AnyConnection, mut entry: AuditEntry) -> std::result::Result<(), sqlx::Error> {
    entry.at = now_ms();
    entry.seq = 0;
    sqlx::query("INSERT INTO audit (job, body) VALUES ($1, $2)")
        .bind(entry.job.clone())
        .bind(serde_json::to_string(&entry).expect("an audit entry serializes"))
        .execute(conn)
        .await?;
    Ok(())
}

fn key_of(row: &AnyRow) -> std::result::Result<ApiKey, sqlx::Error> {
    Ok(ApiKey {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: row.try_get::<i64, _>("admin")? != 0,
        may_post: row.try_get::<i64, _>("may_post")? != 0,
        rate_per_minute: row.try_get("rate_per_minute")?,
        quota: row.try_get("quota")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn job_of(row: &AnyRow) -> std::result::Result<Job, sqlx::Error> {
    let result: Option<String> = row.try_get("result")?;
    Ok(Job {
        id: row.try_get("id")?,
        model: row.try_get("model")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?),
        phase: row.try_get("phase")?,
        percent: row.try_get("percent")?,
        attempts: row.try_get("attempts")?,
        post_onchain: row.try_get::<i64, _>("post_onchain")? != 0,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        result: result.and_then(|r: String| serde_json::from_str(&r).ok()),
        error: row.try_get("error")?,
        input: row.try_get("input")?,
        api_key: row.try_get("api_key")?,
    })
}

/// `url` with any password replaced by `***`.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!("{}{}:***{}", &url[..scheme + 3], &credentials[..colon], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn bad_url(url: &str, reason: &str) -> crate::Error {
    ServiceError::Database { url: url.to_string(), reason: reason.to_string(), source: None }.into()
}

fn db_error(url: &str, what: &str, e: sqlx::Error) -> crate::Error {
    ServiceError::Database { url: url.to_string(), reason: format!("{what}: {e}"), source: Some(Box::new(e)) }.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("postgres://me:secret@db/jobs"), "postgres://me:***@db/jobs");
        assert_eq!(redact("postgres://me@db/jobs"), "postgres://me@db/jobs");
        assert_eq!(redact("sqlite://jobs.sqlite"), "sqlite://jobs.sqlite");
    }
}
