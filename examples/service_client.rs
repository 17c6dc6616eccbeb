//! A dApp backend's client of `zkinfer serve`: queue a proof of a model on an input, follow the
//! job until it ends, and save the proof.
//!
//! ```sh
//! cargo run --example service_client -- http://127.0.0.1:8080 "$KEY" mlp input.json
//! ```

use std::time::Duration;

use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, model, input] = &args[..] else {
        return Err("usage: service_client URL API_KEY MODEL input.json".into());
    };
    let body: Value = serde_json::from_slice(&std::fs::read(input)?)?;
    let http = reqwest::Client::new();

    let response = http.post(format!("{url}/v1/models/{model}/proofs")).bearer_auth(key).json(&body).send().await?;
    let status = response.status();
    let queued: Value = response.json().await?;
    if status.as_u16() != 202 {
        // Every refusal says what to change.
        return Err(format!("refused ({status}): {}", queued["error"]).into());
    }
    let id = queued["job"]["id"].as_str().ok_or("no job id")?.to_string();
    println!("queued {id}");

    loop {
        let job: Value = http.get(format!("{url}/v1/jobs/{id}")).bearer_auth(key).send().await?.json().await?;
        match job["state"].as_str() {
            Some("done") => {
                std::fs::write("proof.json", serde_json::to_vec_pretty(&job["result"]["proof"])?)?;
                println!("outputs {}", job["result"]["outputs"]);
                println!("proof.json written ({} s proving)", job["result"]["timings"]["prove_s"]);
                if !job["result"]["onchain"].is_null() {
                    println!("on-chain record {}", job["result"]["onchain"]["record_id"]);
                }
                return Ok(());
            }
            Some("failed") => return Err(format!("job failed: {}", job["error"]).into()),
            _ => println!("{} {}%", job["phase"].as_str().unwrap_or("queued"), job["percent"]),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
