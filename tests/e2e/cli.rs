//! The client subcommands against a real server, as scripts use them: ingest, search, eval,
//! health, stats — output formats and exit codes.

use std::path::Path;
use std::process::Output;

use crate::support::fixtures;
use crate::support::{Server, TempDir, vsa};

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(o)))
}

/// A tiny evalset in the clipart format: the fixture catalogue, and distorted photos of some
/// of its items as queries.
fn evalset(dir: &Path) -> Vec<fixtures::Item> {
    let items = fixtures::catalogue(dir);
    std::fs::create_dir_all(dir.join("queries")).unwrap();
    let mut lines = String::new();
    for (n, it) in items.iter().enumerate().filter(|(n, _)| n % 3 == 2) {
        let name = format!("queries/q{n}.jpg");
        std::fs::write(dir.join(&name), fixtures::distorted(&it.path, 8.0)).unwrap();
        lines.push_str(&format!(
            "{{\"id\":\"q{n}\",\"image\":\"{name}\",\"target\":\"{}\",\"category\":\"{}\"}}\n",
            it.id, it.category
        ));
    }
    std::fs::write(dir.join("queries.jsonl"), lines).unwrap();
    items
}

#[test]
fn ingest_search_eval_health_stats() {
    let dir = TempDir::new("cli");
    let items = evalset(dir.path());
    let server = Server::start("[index]\nfit_threshold = 8\n");
    let addr = server.addr.to_string();

    // A manifest with one broken line and one missing file: the rest is ingested, the
    // failures are reported with their line numbers, exit 1.
    let manifest = dir.path().join("items.jsonl");
    let mut broken = std::fs::read_to_string(&manifest).unwrap();
    broken.push_str("{not json\n{\"id\":\"ghost\",\"image\":\"missing.png\",\"category\":\"x\"}\n");
    let broken_path = dir.path().join("broken.jsonl");
    std::fs::write(&broken_path, broken).unwrap();
    let o = vsa(&["ingest", "--addr", &addr, broken_path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let n = items.len();
    assert!(
        err.contains(&format!("line {}", n + 1)) && err.contains(&format!("line {}", n + 2)),
        "{}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&format!("{n} ok")),
        "{}",
        text(&o)
    );

    // Re-ingesting the clean manifest succeeds and replaces.
    let o = vsa(&["ingest", "--addr", &addr, manifest.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));

    // search --json: the distorted cat photo finds the cat.
    let cat = items.iter().find(|i| i.id == "chelsea").unwrap();
    let photo = dir.path().join("cat-photo.jpg");
    std::fs::write(&photo, fixtures::distorted(&cat.path, -10.0)).unwrap();
    let o = vsa(&[
        "search",
        "--addr",
        &addr,
        photo.to_str().unwrap(),
        "-k",
        "3",
        "--json",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let r = json(&o);
    assert_eq!(r["results"][0]["id"], "chelsea", "{r}");
    assert_eq!(r["results"].as_array().unwrap().len(), 3);
    assert_eq!(r["category"], "animals/mammals", "{r}");
    // The table form names the hit, and --where filters.
    let o = vsa(&[
        "search",
        "--addr",
        &addr,
        photo.to_str().unwrap(),
        "--where",
        "color=red",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        !table.contains("chelsea") && table.contains("shape-0"),
        "{table}"
    );
    // A missing file is a clear error.
    let o = vsa(&["search", "--addr", &addr, "/nonexistent.jpg"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("/nonexistent.jpg"),
        "{}",
        text(&o)
    );

    // eval: every metric, and a results file score.py's format.
    let out = dir.path().join("results.jsonl");
    let o = vsa(&[
        "eval",
        "--addr",
        &addr,
        "--evalset",
        dir.path().to_str().unwrap(),
        "--no-ingest",
        "--json",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let m = json(&o);
    assert_eq!(m["n"], 4, "{m}");
    assert_eq!(m["missing"], 0, "{m}");
    assert!(m["recall@10"].as_f64().unwrap() >= 0.75, "{m}");
    assert!(
        m["MRR@10"].as_f64().is_some() || m["mrr@10"].as_f64().is_some(),
        "{m}"
    );
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 4);
    for l in lines.lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(
            v["query"].is_string() && v["results"].is_array() && v.get("category").is_some(),
            "{l}"
        );
    }

    // health: one line, exit 0; stats --json: the item count.
    let o = vsa(&["health", "--addr", &addr]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("healthy"),
        "{}",
        text(&o)
    );
    let o = vsa(&["stats", "--addr", &addr, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(json(&o)["items"], items.len() as u64);

    // Nobody listening: health says down with exit 2.
    let o = vsa(&["health", "--addr", "127.0.0.1:1", "--timeout-ms", "500"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}
