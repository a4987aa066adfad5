//! `vsa health` as a monitoring script runs it: the one line and exit code, `--json`, and
//! Nagios-style thresholds on the recent search p99 with performance data.

use vsa_protocol::{QueryInput, SearchRequest};

use crate::support::{Server, embedding, item, vsa};

fn health(server: &Server, extra: &[&str]) -> (i32, String) {
    let addr = server.addr.to_string();
    let mut args = vec!["health", "--addr", &addr];
    args.extend_from_slice(extra);
    let out = vsa(&args);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn health_thresholds_and_json() {
    let server = Server::start("");
    let mut client = server.client();
    for n in 0..10 {
        client.upsert(item(n, "things")).unwrap();
    }
    for q in 0..6 {
        client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(q)), 3))
            .unwrap();
    }

    let (code, line) = health(&server, &["--warn-p99", "60000", "--crit-p99", "120000"]);
    assert_eq!(code, 0, "{line}");
    assert!(
        line.starts_with("vsa ") && line.contains(" healthy "),
        "{line}"
    );
    assert!(line.contains("| search_p99_ms="), "{line}");
    assert!(line.trim_end().ends_with(";60000;120000"), "{line}");

    // Impossible thresholds: warning, then critical.
    let (code, line) = health(&server, &["--warn-p99", "0.0001"]);
    assert_eq!(code, 1, "{line}");
    assert!(
        line.contains("degraded") && line.contains("above the warning"),
        "{line}"
    );
    let (code, line) = health(&server, &["--warn-p99", "0.0001", "--crit-p99", "0.0002"]);
    assert_eq!(code, 2, "{line}");
    assert!(line.contains("above the critical"), "{line}");

    let (code, json) = health(&server, &["--json", "--warn-p99", "60000"]);
    assert_eq!(code, 0, "{json}");
    let v: serde_json::Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(v["state"], "healthy");
    assert_eq!(v["exit"], 0);
    assert_eq!(v["latency"]["searches"], 6);
    assert!(v["latency"]["search_p99_ms"].as_f64().unwrap() > 0.0);
    assert!(
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "shards")
    );

    // Down and unreachable: JSON still says so, exit 2.
    let addr = server.addr.to_string();
    drop(client);
    drop(server);
    let out = vsa(&["health", "--addr", &addr, "--json", "--timeout-ms", "500"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON even when unreachable");
    assert_eq!(v["state"], "down");
    assert!(v["error"].as_str().unwrap().contains("cannot reach"));
}
