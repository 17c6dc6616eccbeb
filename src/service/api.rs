//! The HTTP API (`/v1`): models, proof jobs, their progress as server-sent events, the audit
//! log. Every refusal is a 4xx with `{"error": "..."}` saying what to change, and nothing is
//! queued by a refused request.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{json, Value};

use super::store::{ApiKey, AuditEntry, Job, JobState, Store};
use super::ServeOptions;
use crate::artifacts::CompiledModel;

/// A refusal: its status and the message users read.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError { status, message: message.into() }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        let status = match &e {
            crate::Error::Service(_) | crate::Error::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.chain())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!("{}", self.message);
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult<T> = std::result::Result<T, ApiError>;

struct AppState {
    store: Store,
    no_auth: bool,
    max_body_bytes: usize,
    events_poll: Duration,
    /// Requests in the current minute, per key: (minute start, count).
    rates: Mutex<HashMap<String, (Instant, i64)>>,
    /// Compiled models (for checking inputs), by model id and circuit digest.
    compiled: Mutex<HashMap<(String, String), Arc<CompiledModel>>>,
    /// Input checks running at once.
    checks: tokio::sync::Semaphore,
}

/// The API's routes over `store`.
pub fn router(store: Store, options: &ServeOptions) -> Router {
    let state = Arc::new(AppState {
        store,
        no_auth: options.no_auth,
        max_body_bytes: options.max_body_bytes,
        events_poll: options.events_poll,
        rates: Mutex::new(HashMap::new()),
        compiled: Mutex::new(HashMap::new()),
        checks: tokio::sync::Semaphore::new(2),
    });
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/models", get(list_models).post(add_model))
        .route("/v1/models/{id}", get(get_model))
        .route("/v1/models/{id}/proofs", axum::routing::post(queue_proof))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/events", get(job_events))
        .route("/v1/audit", get(audit_log))
        // Bodies are read (and limited) by the handlers themselves, for a clear refusal.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

async fn health(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let [queued, running, done, failed] = state.store.counts().await?;
    Ok(Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "jobs": { "queued": queued, "running": running, "done": done, "failed": failed },
    })))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}

/// The caller's key (an administrator's stand-in without authentication).
async fn caller(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<ApiKey>> {
    if state.no_auth {
        return Ok(None);
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()));
    let Some(secret) = bearer.map(str::trim).filter(|s| !s.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "no API key: send it as `Authorization: Bearer KEY` (make one with `zkinfer serve keys create`)",
        ));
    };
    match state.store.key_by_secret(secret).await? {
        None => Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key: check it, or ask for a new one")),
        Some(key) if key.revoked_at.is_some() => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("API key {} was revoked: ask the service's operator for a new one", key.id),
        )),
        Some(key) => Ok(Some(key)),
    }
}

async fn admin(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<ApiKey>> {
    let key = caller(state, headers).await?;
    match &key {
        Some(k) if !k.admin => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("API key {} may not do this: it needs an administrator's key (`keys create --admin`)", k.id),
        )),
        _ => Ok(key),
    }
}

async fn read_body(state: &AppState, body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, state.max_body_bytes).await.map_err(|e| {
        let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
            || e.to_string().contains("length limit");
        if over {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "the request body is over the service's limit of {} bytes: send a smaller input, or start the \
                     server with a larger --max-body-bytes",
                    state.max_body_bytes
                ),
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, format!("the request body could not be read: {e}"))
        }
    })
}

fn parse_json(bytes: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("the request body is not valid JSON: {e}")))
}

async fn list_models(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Json<Value>> {
    caller(&state, &headers).await?;
    Ok(Json(json!({ "models": state.store.models().await? })))
}

async fn get_model(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    caller(&state, &headers).await?;
    let model = state.store.model(&id).await?.ok_or_else(|| unknown_model(&id))?;
    Ok(Json(json!(model)))
}

fn unknown_model(id: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no model {id:?} is registered: GET /v1/models lists them"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewModel {
    id: String,
    dir: PathBuf,
    #[serde(default)]
    srs: Option<PathBuf>,
    #[serde(default)]
    post_onchain: bool,
    #[serde(default)]
    registry_model: Option<String>,
}

async fn add_model(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let key = admin(&state, &headers).await?;
    let bytes = read_body(&state, body).await?;
    let new: NewModel = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"id\": ..., \"dir\": ..., \"srs\"?, \"post_onchain\"?, \"registry_model\"?}}: {e}"),
        )
    })?;
    // A folder that is missing or holds no usable model is the caller's to fix: 400.
    let record = tokio::task::spawn_blocking(move || {
        super::model_record(&new.id, &new.dir, new.srs.as_deref(), new.post_onchain, new.registry_model)
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.chain()))?;
    let record = super::register_model(&state.store, record, key.map(|k| k.id)).await?;
    Ok((StatusCode::CREATED, Json(json!(record))).into_response())
}

/// Counts a proof request against the key's rate (before any work is done for it).
fn charge_rate(state: &AppState, key: &ApiKey) -> ApiResult<()> {
    if key.rate_per_minute > 0 {
        let mut rates = state.rates.lock().expect("rates lock");
        let now = Instant::now();
        let entry = rates.entry(key.id.clone()).or_insert((now, 0));
        if now.duration_since(entry.0) >= Duration::from_secs(60) {
            *entry = (now, 0);
        }
        if entry.1 >= key.rate_per_minute {
            let wait = 60 - now.duration_since(entry.0).as_secs();
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "API key {} is limited to {} proof requests a minute: retry in {wait} s",
                    key.id, key.rate_per_minute
                ),
            ));
        }
        entry.1 += 1;
    }
    Ok(())
}

/// Checks the key's quota of queued proofs (counted in the database, for every server).
async fn check_quota(state: &AppState, key: &ApiKey) -> ApiResult<()> {
    if key.quota > 0 && state.store.jobs_of_key(&key.id).await? >= key.quota {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("API key {} has used its quota of {} proofs: ask the operator to raise it", key.id, key.quota),
        ));
    }
    Ok(())
}

async fn compiled_model(state: &AppState, id: &str, dir: &str, digest: &str) -> ApiResult<Arc<CompiledModel>> {
    let cache_key = (id.to_string(), digest.to_string());
    if let Some(found) = state.compiled.lock().expect("compiled lock").get(&cache_key) {
        return Ok(found.clone());
    }
    let path = Path::new(dir).join("model.compiled");
    let compiled = tokio::task::spawn_blocking(move || CompiledModel::load(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.chain()))?;
    let compiled = Arc::new(compiled);
    state.compiled.lock().expect("compiled lock").insert(cache_key, compiled.clone());
    Ok(compiled)
}

async fn queue_proof(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
    body: Body,
) -> ApiResult<Response> {
    let key = caller(&state, &headers).await?;
    if let Some(key) = &key {
        charge_rate(&state, key)?;
    }
    let bytes = read_body(&state, body).await?;
    let model = state.store.model(&id).await?.ok_or_else(|| unknown_model(&id))?;
    let mut input = parse_json(&bytes)?;
    let post_onchain = match input.as_object_mut().and_then(|o| o.remove("post_onchain")) {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("post_onchain must be true or false, not {other}"),
            ))
        }
    };
    if post_onchain && key.as_ref().is_some_and(|k| !k.may_post && !k.admin) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this API key may not have proofs posted on-chain (the service's account pays): ask for a key made \
             with `keys create --may-post`",
        ));
    }
    // The model's shapes and ranges, checked before anything is queued (a few at a time: the
    // check runs the model).
    let compiled = compiled_model(&state, &model.id, &model.dir, &model.circuit_digest).await?;
    let checked = input.clone();
    let checking = state.checks.acquire().await.expect("the semaphore is never closed");
    tokio::task::spawn_blocking(move || {
        let shapes = compiled.model.input_shapes();
        let inputs = crate::model::input::parse_input(&checked, &shapes, Path::new("the request body"))?;
        crate::pipeline::check_inputs(&compiled.model, &inputs).map(|_| ())
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
    .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.chain()))?;
    drop(checking);
    if let Some(key) = &key {
        check_quota(&state, key).await?;
    }
    let actor = key.map(|k| k.id);
    let audit = AuditEntry {
        action: "job.queued".into(),
        actor: actor.clone(),
        model: Some(model.id.clone()),
        model_commitment: Some(model.vk_digest.clone()),
        ..AuditEntry::default()
    };
    let job = state.store.enqueue(&model.id, &input.to_string(), actor.as_deref(), post_onchain, audit).await?;
    let location = format!("/v1/jobs/{}", job.id);
    let body = json!({ "job": job, "links": { "self": location, "events": format!("{location}/events") } });
    Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response())
}

/// The job `id`, if the caller may see it (its own, or any for an administrator).
async fn visible_job(state: &AppState, headers: &HeaderMap, id: &str) -> ApiResult<Job> {
    let key = caller(state, headers).await?;
    let job = state.store.job(id).await?;
    match (job, key) {
        (Some(job), None) => Ok(job),
        (Some(job), Some(key)) if key.admin || job.api_key.as_deref() == Some(key.id.as_str()) => Ok(job),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, format!("no job {id:?} (of this API key)"))),
    }
}

async fn get_job(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Json<Job>> {
    Ok(Json(shown(visible_job(&state, &headers, &id).await?)))
}

/// A job as callers see it: a result only once it is done (a running job may hold a proof
/// saved before posting).
fn shown(mut job: Job) -> Job {
    if job.state != JobState::Done {
        job.result = None;
    }
    job
}

async fn job_events(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    visible_job(&state, &headers, &id).await?;
    // Polling the store (not a channel in this process) follows jobs whatever worker runs them.
    let stream =
        futures_util::stream::unfold((state, id, None::<(JobState, Option<String>, i64)>, false), |s| async move {
            let (state, id, last, ended) = s;
            if ended {
                return None;
            }
            loop {
                let job = match state.store.job(&id).await {
                    Ok(Some(job)) => job,
                    Ok(None) => return None,
                    Err(e) => {
                        let event = Event::default().event("error").data(e.chain());
                        return Some((Ok(event), (state, id, last, true)));
                    }
                };
                let now = (job.state, job.phase.clone(), job.percent);
                if last.as_ref() != Some(&now) {
                    let end = matches!(job.state, JobState::Done | JobState::Failed);
                    let name = match job.state {
                        JobState::Done => "done",
                        JobState::Failed => "failed",
                        _ => "progress",
                    };
                    let data = serde_json::to_string(&shown(job)).expect("a job serializes");
                    return Some((Ok(Event::default().event(name).data(data)), (state, id, Some(now), end)));
                }
                // This process's workers signal their changes; others' are found by looking again.
                tokio::select! {
                    _ = state.store.job_changed() => {}
                    _ = tokio::time::sleep(state.events_poll) => {}
                }
            }
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[derive(Deserialize)]
struct AuditQuery {
    job: Option<String>,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn audit_log(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<AuditQuery>,
) -> ApiResult<Json<Value>> {
    admin(&state, &headers).await?;
    let limit = query.limit.unwrap_or(1000).clamp(1, 10_000);
    let entries = state.store.audit_log(query.job.as_deref(), query.after, limit).await?;
    let next = (entries.len() as i64 == limit).then(|| entries.last().map(|e| e.seq)).flatten();
    Ok(Json(json!({ "entries": entries, "next_after": next })))
}
