//! The `gateway` binary itself, as an operator starts it: what `main.rs` wires around the
//! library.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reload of the file the binary started from changes nothing and needs no restart: the
/// running configuration is the file's, `runtime = "auto"` included (not the flavour `auto`
/// resolved to, which would differ from the file at every reload).
#[tokio::test]
async fn reloading_the_file_it_started_from_needs_no_restart() {
    let port = free_port();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
    let _gateway = Running(
        Command::new(env!("CARGO_BIN_EXE_gateway"))
            .args(["--config", config, "--listen", &format!("127.0.0.1:{port}")])
            .env_remove("GATEWAY_API_KEYS")
            .env_remove("GATEWAY_ADMIN_TOKEN")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the gateway did not start within 10 s");
    let r = client
        .post(format!("{base}/admin/reload"))
        .bearer_auth(gateway::DEMO_ADMIN_TOKEN)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), reqwest::StatusCode::OK);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["needs_restart"], serde_json::json!([]), "{body}");
    assert_eq!(body["applied"], serde_json::json!([]), "{body}");
}
