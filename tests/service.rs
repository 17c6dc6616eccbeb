//! The proving service as a dApp backend uses it: `zkinfer serve` and `zkinfer worker` as
//! processes, over SQLite and over a Postgres server these tests start (Debian's `postgresql`
//! package), with HTTP clients on 127.0.0.1.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::ok;
use serde_json::{json, Value};

/// A model compiled, keyed and proven once (`zkinfer run`) into `cell`, shared by every test.
fn prepared(cell: &'static OnceLock<tempfile::TempDir>, model: &Path, input: &Path) -> &'static Path {
    cell.get_or_init(|| {
        let dir = common::work_with(&[(model, "network.onnx"), (input, "input.json")]);
        ok(dir.path(), &["run", "-M", "network.onnx", "-D", "input.json", "--dir", "."]);
        dir
    })
    .path()
}

/// The 16→32→8 MLP.
fn model_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    prepared(&DIR, &common::example("mlp_small").join("network.onnx"), &common::example("mlp_small").join("input.json"))
}

/// An 8→6 MatMul, Add and Relu: proven in a fifth of the MLP's time, for the tests that prove
/// a hundred jobs.
fn small_model_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    prepared(&DIR, &common::fixture("matmul_add.onnx"), &common::fixture("matmul_add.input.json"))
}

/// The input of the model in `dir` with its first value set to `-0.75 + i / 64`: distinct
/// inputs at the model's fixed-point scale, all in range.
fn input_of(dir: &Path, i: usize) -> Value {
    let input = common::json(&dir.join("input.json"));
    let mut values: Vec<f64> = input["input_data"][0].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    values[0] = -0.75 + i as f64 / 64.0;
    json!({ "input_data": [values] })
}

/// [`input_of`] the MLP.
fn input_number(i: usize) -> Value {
    input_of(model_dir(), i)
}

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    fn kill(&mut self) {
        // SIGKILL: the process ends mid-step, as a crashed machine would.
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

fn zkinfer_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_zkinfer"));
    cmd.args(args).current_dir(model_dir()).stdin(Stdio::null());
    cmd
}

/// Starts `zkinfer serve` with `args`; returns it and its base URL (from its first lines).
fn serve(db: &str, args: &[&str]) -> (Process, String) {
    let mut cmd = zkinfer_command(&[&["serve", "--db", db, "--listen", "127.0.0.1:0"], args].concat());
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().expect("zkinfer serve starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines.next().expect("zkinfer serve printed its address").unwrap();
        if let Some(rest) = line.strip_prefix("zkinfer serve: listening on ") {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep draining its output so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (Process(child), url)
}

/// Starts `zkinfer worker` on `db`.
fn worker(db: &str, args: &[&str]) -> Process {
    let cmd = zkinfer_command(&[&["worker", "--db", db], args].concat()).stdout(Stdio::null()).spawn();
    Process(cmd.expect("zkinfer worker starts"))
}

/// Makes an API key with `extra` options; returns its secret.
fn api_key(db: &str, extra: &[&str]) -> String {
    let out = ok(model_dir(), &[&["serve", "keys", "create", "--db", db, "--name", "test"], extra].concat());
    let line = out.lines().next().unwrap();
    line.rsplit(' ').next().unwrap().to_string()
}

struct Client {
    http: reqwest::Client,
    url: String,
    key: String,
}

impl Client {
    fn new(url: &str, key: &str) -> Self {
        Client { http: reqwest::Client::new(), url: url.to_string(), key: key.to_string() }
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response =
            self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.key).json(body).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.key).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    async fn queue(&self, body: &Value) -> String {
        self.queue_on("mlp", body).await
    }

    async fn queue_on(&self, model: &str, body: &Value) -> String {
        let (status, job) = self.post(&format!("/v1/models/{model}/proofs"), body).await;
        assert_eq!(status, 202, "{job}");
        job["job"]["id"].as_str().unwrap().to_string()
    }

    /// Waits until every job has ended; returns them.
    async fn wait_all(&self, ids: &[String], limit: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let mut jobs = Vec::new();
            for id in ids {
                jobs.push(self.get(&format!("/v1/jobs/{id}")).await.1);
            }
            if jobs.iter().all(|j| j["state"] == "done" || j["state"] == "failed") {
                return jobs;
            }
            assert!(start.elapsed() < limit, "jobs still not done after {limit:?}: {:?}", states(&jobs));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn states(jobs: &[Value]) -> Vec<String> {
    jobs.iter().map(|j| format!("{} {}", j["state"], j["error"])).collect()
}

/// A Postgres server of the tests' own, in a temporary folder, reached over a local socket;
/// stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    as_postgres_user: bool,
}

impl Postgres {
    fn start() -> Postgres {
        let bin = ["/usr/lib/postgresql"]
            .iter()
            .filter_map(|root| std::fs::read_dir(root).ok())
            .flat_map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")))
            .find(|bin| bin.join("initdb").exists())
            .expect("Postgres is not installed: `apt-get install postgresql` (Debian's package), as .ci/run does");
        let dir = tempfile::tempdir().unwrap();
        // Postgres refuses to run as root: run it as the `postgres` user Debian's package makes.
        let as_postgres_user = unsafe_is_root();
        if as_postgres_user {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
            let status = Command::new("chmod").args(["755"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let pg = Postgres { dir, bin, as_postgres_user };
        let data = pg.dir.path().join("data");
        pg.run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "--no-sync"]);
        let options = format!("-c listen_addresses='' -c unix_socket_directories={} -c fsync=off", pg.socket_dir());
        let log = pg.dir.path().join("log");
        pg.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "start"]);
        pg
    }

    fn socket_dir(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = if self.as_postgres_user {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        }
        .unwrap();
        assert!(
            output.status.success(),
            "{tool} failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A fresh database on the server, and its URL.
    fn database(&self, name: &str) -> String {
        self.run("createdb", &["-h", &self.socket_dir(), "-U", "postgres", name]);
        format!("postgres://postgres@localhost/{name}?host={}", self.socket_dir())
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let program = self.bin.join("pg_ctl");
        let args = ["-D", data.to_str().unwrap(), "-m", "immediate", "stop"];
        let _ = if self.as_postgres_user {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&program).args(args).output()
        } else {
            Command::new(&program).args(args).output()
        };
    }
}

fn unsafe_is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn postgres() -> &'static Postgres {
    static PG: OnceLock<Postgres> = OnceLock::new();
    PG.get_or_init(Postgres::start)
}

fn sqlite_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("jobs.sqlite").display());
    (dir, url)
}

fn model_arg() -> String {
    format!("mlp={}", model_dir().display())
}

/// 100 jobs from 10 concurrent clients on 2 workers: all done, each proven once, the proofs
/// verify, and their outputs are those of each input.
async fn hundred_jobs(db: &str, workers: Vec<Process>, serve_args: &[&str]) {
    let key = api_key(db, &["--rate-per-minute", "0"]);
    let model = format!("small={}", small_model_dir().display());
    let (_server, url) = serve(db, &[&["--model", model.as_str()], serve_args].concat());
    let clients: Vec<_> = (0..10)
        .map(|c| {
            let (url, key) = (url.clone(), key.clone());
            tokio::spawn(async move {
                let client = Client::new(&url, &key);
                let mut ids = Vec::new();
                for i in 0..10 {
                    ids.push(client.queue_on("small", &input_of(small_model_dir(), c * 10 + i)).await);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for c in clients {
        ids.extend(c.await.unwrap());
    }
    let client = Client::new(&url, &key);
    let jobs = client.wait_all(&ids, Duration::from_secs(600)).await;
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{:?}", states(&jobs));
    assert!(jobs.iter().all(|j| j["attempts"] == 1), "no job was taken twice");
    // Each proof's first public instance is its own input's first value.
    let mut firsts: Vec<String> = jobs.iter().map(|j| j["result"]["proof"]["instances"][0][0].to_string()).collect();
    firsts.sort();
    firsts.dedup();
    assert_eq!(firsts.len(), 100, "each job proved its own input");

    // Each job proven and recorded once in the audit log.
    let admin = Client::new(&url, &api_key(db, &["--admin"]));
    let (_, audit) = admin.get("/v1/audit").await;
    let proven: Vec<&Value> =
        audit["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "job.proven").collect();
    assert_eq!(proven.len(), 100);
    let mut proven_jobs: Vec<&str> = proven.iter().map(|e| e["job"].as_str().unwrap()).collect();
    proven_jobs.sort();
    proven_jobs.dedup();
    assert_eq!(proven_jobs.len(), 100);

    // A proof from the service verifies as any other.
    let work = tempfile::tempdir().unwrap();
    for job in [&jobs[0], &jobs[99]] {
        common::write_json(&work.path().join("proof.json"), &job["result"]["proof"]);
        let vk = small_model_dir().join("vk.bin");
        ok(work.path(), &["verify", "--vk", vk.to_str().unwrap(), "--proof", "proof.json"]);
    }
    drop(workers);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_jobs_from_ten_clients_on_two_workers_over_sqlite() {
    let (_dir, db) = sqlite_db();
    hundred_jobs(&db, Vec::new(), &["--workers", "2"]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hundred_jobs_from_ten_clients_on_two_worker_processes_over_postgres() {
    let db = postgres().database("hundred");
    // The API alone, and two worker processes pulling from the same queue.
    let workers = vec![worker(&db, &[]), worker(&db, &[])];
    hundred_jobs(&db, workers, &["--no-workers"]).await;
}

/// A worker killed mid-job: its job is leased again when the lease runs out and finishes on
/// another worker, proven and recorded once.
async fn killed_worker(db: &str) {
    let key = api_key(db, &[]);
    let model = model_arg();
    let (_server, url) = serve(db, &["--model", model.as_str(), "--no-workers"]);
    let client = Client::new(&url, &key);
    let id = client.queue(&input_number(1)).await;
    let mut first = worker(db, &["--lease-seconds", "3"]);
    let start = Instant::now();
    loop {
        let (_, job) = client.get(&format!("/v1/jobs/{id}")).await;
        if job["state"] == "running" {
            break;
        }
        assert_eq!(job["state"], "queued", "{job}");
        assert!(start.elapsed() < Duration::from_secs(60), "the worker never took the job");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill();
    let (_, job) = client.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["state"], "running", "the killed worker did not finish it: {job}");
    let _second = worker(db, &["--lease-seconds", "3"]);
    let jobs = client.wait_all(std::slice::from_ref(&id), Duration::from_secs(120)).await;
    assert_eq!(jobs[0]["state"], "done", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2, "taken again after the first worker's lease ran out");
    let admin = Client::new(&url, &api_key(db, &["--admin"]));
    let (_, audit) = admin.get(&format!("/v1/audit?job={id}")).await;
    let actions: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["job.queued", "job.proven"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_s_job_finishes_on_another_over_sqlite() {
    let (_dir, db) = sqlite_db();
    killed_worker(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_worker_s_job_finishes_on_another_over_postgres() {
    let db = postgres().database("killed");
    killed_worker(&db).await;
}

/// The server (with its workers) killed mid-queue and started again: no job lost.
async fn restarted_server(db: &str) {
    let key = api_key(db, &["--rate-per-minute", "0"]);
    let model = model_arg();
    let (mut server, url) = serve(db, &["--model", model.as_str(), "--lease-seconds", "3"]);
    let client = Client::new(&url, &key);
    let mut ids = Vec::new();
    for i in 0..8 {
        ids.push(client.queue(&input_number(i)).await);
    }
    // Kill it once it has started on the queue.
    let start = Instant::now();
    while client.get(&format!("/v1/jobs/{}", ids[0])).await.1["state"] == "queued" {
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.kill();
    let (_server, url) = serve(db, &["--lease-seconds", "3"]);
    let client = Client::new(&url, &key);
    let jobs = client.wait_all(&ids, Duration::from_secs(300)).await;
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{:?}", states(&jobs));
    // Each recorded proven once, the interrupted ones included.
    let admin = Client::new(&url, &api_key(db, &["--admin"]));
    let (_, audit) = admin.get("/v1/audit").await;
    let mut proven: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "job.proven")
        .map(|e| e["job"].as_str().unwrap())
        .collect();
    proven.sort();
    let mut expected: Vec<&str> = ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(proven, expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_loses_no_job_over_sqlite() {
    let (_dir, db) = sqlite_db();
    restarted_server(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_server_loses_no_job_over_postgres() {
    let db = postgres().database("restarted");
    restarted_server(&db).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_clearly_and_queue_nothing() {
    let (_dir, db) = sqlite_db();
    let key = api_key(&db, &["--quota", "2", "--rate-per-minute", "0"]);
    let limited = api_key(&db, &["--rate-per-minute", "1"]);
    let revoked = api_key(&db, &[]);
    let keys = ok(model_dir(), &["serve", "keys", "list", "--db", &db]);
    let revoked_id = keys.lines().last().unwrap().split_whitespace().next().unwrap().to_string();
    ok(model_dir(), &["serve", "keys", "revoke", &revoked_id, "--db", &db]);
    let model = model_arg();
    let (_server, url) = serve(&db, &["--model", model.as_str(), "--no-workers", "--max-body-bytes", "4096"]);
    let client = Client::new(&url, &key);
    let good = input_number(0);

    let refused = |expected: u16, words: &'static str| {
        move |(status, body): (u16, Value)| {
            assert_eq!(status, expected, "{body}");
            let message = body["error"].as_str().unwrap().to_string();
            assert!(message.contains(words), "{message:?} should say {words:?}");
        }
    };
    refused(404, "no model \"nope\"")(client.post("/v1/models/nope/proofs", &good).await);
    refused(422, "input 0 has 3 value(s) but the model expects 16")(
        client.post("/v1/models/mlp/proofs", &json!({"input_data": [[1, 2, 3]]})).await,
    );
    refused(422, "expected a number")(
        client.post("/v1/models/mlp/proofs", &json!({"input_data": [vec!["a"; 16]]})).await,
    );
    refused(422, "input_data")(client.post("/v1/models/mlp/proofs", &json!({"data": []})).await);
    let huge = json!({ "input_data": [vec![1e30; 16]] });
    refused(422, "does not fit the circuit's range")(client.post("/v1/models/mlp/proofs", &huge).await);
    refused(413, "over the service's limit of 4096 bytes")(
        client.post("/v1/models/mlp/proofs", &json!({"input_data": [vec![0.5; 2000]]})).await,
    );
    refused(400, "not valid JSON")({
        let r =
            client.http.post(format!("{url}/v1/models/mlp/proofs")).bearer_auth(&key).body("{").send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    });
    refused(401, "no API key")({
        let r = client.http.post(format!("{url}/v1/models/mlp/proofs")).json(&good).send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    });
    refused(401, "unknown API key")(Client::new(&url, "zk_nope").post("/v1/models/mlp/proofs", &good).await);
    refused(401, "was revoked")(Client::new(&url, &revoked).post("/v1/models/mlp/proofs", &good).await);
    refused(403, "administrator")(client.post("/v1/models", &json!({"id": "x", "dir": "/tmp"})).await);

    // Nothing queued so far.
    let (_, health) = client.get("/v1/health").await;
    assert_eq!(health["jobs"]["queued"], 0, "{health}");

    // Quota: two proofs, then refused; rate: one a minute, then refused.
    client.queue(&good).await;
    client.queue(&good).await;
    refused(429, "quota of 2 proofs")(client.post("/v1/models/mlp/proofs", &good).await);
    let slow = Client::new(&url, &limited);
    let mine = slow.queue(&good).await;
    refused(429, "1 proof requests a minute")(slow.post("/v1/models/mlp/proofs", &good).await);
    let (_, health) = client.get("/v1/health").await;
    assert_eq!(health["jobs"]["queued"], 3, "{health}");

    // A key's job is not shown to another key; its owner sees it.
    refused(404, "no job")(client.get(&format!("/v1/jobs/{mine}")).await);
    let (status, job) = slow.get(&format!("/v1/jobs/{mine}")).await;
    assert_eq!((status, job["state"].as_str()), (200, Some("queued")), "{job}");
    // Posting on-chain needs a key allowed to spend the service's account.
    let mut posted = good.clone();
    posted["post_onchain"] = json!(true);
    let other = Client::new(&url, &api_key(&db, &[]));
    refused(403, "--may-post")(other.post("/v1/models/mlp/proofs", &posted).await);
    // The model list and the OpenAPI document are shown.
    let (status, models) = client.get("/v1/models").await;
    assert_eq!(status, 200);
    assert_eq!(models["models"][0]["id"], "mlp");
    assert_eq!(
        models["models"][0]["settings"]["input_scale"],
        common::json(&model_dir().join("settings.json"))["input_scale"]
    );
    let spec: Value = reqwest::get(format!("{url}/v1/openapi.json")).await.unwrap().json().await.unwrap();
    assert!(spec["paths"]["/v1/models/{id}/proofs"]["post"].is_object());
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_streams_as_server_sent_events_until_done() {
    use futures_util::StreamExt;
    let (_dir, db) = sqlite_db();
    let key = api_key(&db, &[]);
    let model = model_arg();
    let (_server, url) = serve(&db, &["--model", model.as_str(), "--no-workers"]);
    let client = Client::new(&url, &key);
    let id = client.queue(&input_number(3)).await;
    let response = client.http.get(format!("{url}/v1/jobs/{id}/events")).bearer_auth(&key).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // The stream is open while the job waits; a worker then takes it.
    let _worker = worker(&db, &[]);
    let mut text = String::new();
    let mut body = response.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(120), body.next()).await.unwrap() {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.last(), Some(&"done"), "{text}");
    assert_eq!(events.first(), Some(&"progress"), "{text}");
    assert!(text.contains("\"state\":\"queued\""), "the queued state streamed first: {text}");
    assert!(text.contains("\"state\":\"running\""), "the running state streamed: {text}");
    let last = text.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap();
    let job: Value = serde_json::from_str(last).unwrap();
    assert_eq!(job["percent"], 100);
    assert!(job["result"]["timings"]["prove_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn the_audit_log_refuses_updates_and_deletes() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_dir, db) = sqlite_db();
        let store = zkinfer::service::Store::open(&db).await.unwrap();
        store.audit(zkinfer::service::AuditEntry { action: "job.queued".into(), ..Default::default() }).await.unwrap();
        for sql in ["UPDATE audit SET body = '{}'", "DELETE FROM audit"] {
            let e = store.raw(sql).await.unwrap_err().chain();
            assert!(e.contains("append-only"), "{e}");
        }
        let pg = zkinfer::service::Store::open(&postgres().database("audit")).await.unwrap();
        pg.audit(zkinfer::service::AuditEntry { action: "job.queued".into(), ..Default::default() }).await.unwrap();
        for sql in ["UPDATE audit SET body = '{}'", "DELETE FROM audit", "TRUNCATE audit"] {
            let e = pg.raw(sql).await.unwrap_err().chain();
            assert!(e.contains("append-only"), "{e}");
        }
        assert_eq!(pg.audit_log(None, 0, 100).await.unwrap().len(), 1);
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_post_their_proofs_on_anvil_and_a_repeated_inference_is_recorded_once() {
    let anvil = zkinfer::evm::anvil::spawn_anvil().expect("anvil starts");
    let rpc = anvil.endpoint();
    let chain = common::work_with(&[
        (&model_dir().join("Verifier.json"), "Verifier.json"),
        (&model_dir().join("vk.bin"), "vk.bin"),
    ]);
    ok(chain.path(), &["deploy", "--registry", "--model", "mlp", "--rpc-url", &rpc]);
    let deployment = common::json(&chain.path().join("deployment.json"));
    let registry = deployment["registry"]["address"].as_str().unwrap().to_string();

    let (_dir, db) = sqlite_db();
    let key = api_key(&db, &["--may-post"]);
    let model = model_arg();
    let (_server, url) = serve(&db, &["--model", model.as_str(), "--rpc-url", &rpc, "--registry", &registry]);
    let client = Client::new(&url, &key);
    let mut body = input_number(5);
    body["post_onchain"] = json!(true);
    let first = client.queue(&body).await;
    let jobs = client.wait_all(std::slice::from_ref(&first), Duration::from_secs(180)).await;
    assert_eq!(jobs[0]["state"], "done", "{}", jobs[0]);
    let record = &jobs[0]["result"]["onchain"];
    assert_eq!(record["status"], "verified", "{record}");
    assert_eq!(record["registry"].as_str().unwrap().to_lowercase(), registry.to_lowercase());
    assert_eq!(record["tx_hash"].as_str().unwrap().len(), 66, "{record}");
    let outputs = record["outputs"][0].as_str().unwrap();
    assert_eq!(outputs.split(',').count(), 8, "the decoded outputs: {record}");

    // The same inference again (as a retried job would be): found recorded, nothing sent.
    let again = client.queue(&body).await;
    let jobs = client.wait_all(&[again], Duration::from_secs(180)).await;
    let second = &jobs[0]["result"]["onchain"];
    assert_eq!(second["status"], "already-verified", "{second}");
    assert_eq!(second["record_id"], record["record_id"]);
    assert!(second["tx_hash"].is_null(), "{second}");

    // A job whose worker saved its proof and died before posting it: the next worker posts
    // the saved proof rather than a new one.
    let (_dir3, db3) = sqlite_db();
    let saved_proof = common::json(&model_dir().join("proof.json"));
    {
        let store = zkinfer::service::Store::open(&db3).await.unwrap();
        let input = common::json(&model_dir().join("input.json")).to_string();
        let queued = zkinfer::service::AuditEntry { action: "job.queued".into(), ..Default::default() };
        store.enqueue("mlp", &input, None, true, queued).await.unwrap();
        let lease = store.lease("dead-worker", 1, 3).await.unwrap().unwrap();
        let saved = json!({ "pending_post": true, "proof": saved_proof, "outputs": [], "prove_s": 0.0 });
        assert!(store.save_result(&lease, &saved).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let key3 = api_key(&db3, &["--admin"]);
    let (_server3, url3) = serve(&db3, &["--model", model.as_str(), "--rpc-url", &rpc, "--registry", &registry]);
    let client3 = Client::new(&url3, &key3);
    let (_, audit) = client3.get("/v1/audit").await;
    let id = audit["entries"][0]["job"].as_str().unwrap().to_string();
    let jobs = client3.wait_all(&[id], Duration::from_secs(180)).await;
    assert_eq!(jobs[0]["state"], "done", "{}", jobs[0]);
    assert_eq!(jobs[0]["attempts"], 2);
    assert_eq!(jobs[0]["result"]["proof"]["proof"], saved_proof["proof"], "the saved proof was posted");
    assert_eq!(jobs[0]["result"]["onchain"]["status"], "verified", "{}", jobs[0]);

    // Without a chain, a job that asks to be posted fails clearly.
    let (_dir2, db2) = sqlite_db();
    let key2 = api_key(&db2, &["--may-post"]);
    let (_server2, url2) = serve(&db2, &["--model", model.as_str()]);
    let client2 = Client::new(&url2, &key2);
    let id = client2.queue(&body).await;
    let jobs = client2.wait_all(&[id], Duration::from_secs(180)).await;
    assert_eq!(jobs[0]["state"], "failed");
    assert!(jobs[0]["error"].as_str().unwrap().contains("--rpc-url"), "{}", jobs[0]);

    let admin = Client::new(&url, &api_key(&db, &["--admin"]));
    let (_, audit) = admin.get(&format!("/v1/audit?job={first}")).await;
    let posted = audit["entries"].as_array().unwrap().iter().find(|e| e["action"] == "job.posted").unwrap();
    assert_eq!(posted["tx_hash"], record["tx_hash"]);
}
