//! The HTTP side through the real server: liveness, readiness, version, Prometheus metrics that
//! parse and move, JSON search (raw body and multipart) that answers like `vsa search --json`,
//! item writes and deletes, and the TCP protocol's limits and error codes as HTTP statuses.

use std::collections::HashMap;

use vsa_protocol::{QueryInput, SearchRequest};

use crate::support::fixtures;
use crate::support::http::{multipart, request};
use crate::support::{Server, TempDir, embedding, item};

/// A scrape's samples: `(metric, sorted labels)` → value.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

const HTTP: &str = "[server]\nhttp_listen = \"127.0.0.1:0\"\n[limits]\nmax_image_bytes = 2000000\n";

/// The samples of a scrape: `(metric, labels)` → value (histograms: their count).
fn scrape(server: &Server) -> Samples {
    let r = request(server.http.unwrap(), "GET", "/metrics", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    let text = r.text();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("metrics parse as Prometheus text");
    let mut out = HashMap::new();
    for s in parsed.samples {
        let mut labels: Vec<(String, String)> = s
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.sort();
        let v = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert((s.metric, labels), v);
    }
    out
}

fn sample(m: &Samples, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let mut l: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.sort();
    *m.get(&(metric.to_string(), l.clone()))
        .unwrap_or_else(|| panic!("no sample {metric} {l:?}"))
}

#[test]
fn health_readiness_version_and_metrics_that_move() {
    let server = Server::start(HTTP);
    let http = server.http.expect("the server printed its HTTP address");
    let r = request(http, "GET", "/healthz", &[], b"");
    assert_eq!((r.status, r.text().trim()), (200, "ok"));
    let r = request(http, "GET", "/readyz", &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["ready"], true);
    let r = request(http, "GET", "/version", &[], b"");
    assert_eq!(r.json()["protocol"], vsa_protocol::PROTOCOL_VERSION);
    assert_eq!(request(http, "GET", "/nope", &[], b"").status, 404);

    let before = scrape(&server);
    assert_eq!(
        sample(&before, "vsa_requests_total", &[("kind", "search")]),
        0.0
    );
    let mut client = server.client();
    for n in 0..12 {
        client.upsert(item(n, "things")).unwrap();
    }
    for q in 0..3 {
        client
            .search(SearchRequest::new(QueryInput::Embedding(embedding(q)), 3))
            .unwrap();
    }
    let after = scrape(&server);
    assert_eq!(
        sample(&after, "vsa_requests_total", &[("kind", "search")]),
        3.0
    );
    assert_eq!(
        sample(&after, "vsa_requests_total", &[("kind", "upsert")]),
        12.0
    );
    assert_eq!(
        sample(
            &after,
            "vsa_request_duration_seconds",
            &[("kind", "search")]
        ),
        3.0
    );
    assert_eq!(sample(&after, "vsa_items", &[]), 12.0);
    assert_eq!(
        sample(
            &after,
            "vsa_shard_items",
            &[("shard", "p/things/0"), ("category", "things")]
        ),
        12.0
    );
    assert_eq!(sample(&after, "vsa_wal_records_total", &[]), 12.0);
    assert!(sample(&after, "vsa_wal_fsyncs_total", &[]) >= 1.0);
    assert!(sample(&after, "vsa_memory_rss_bytes", &[]) > 1e6);
    assert_eq!(sample(&after, "vsa_health", &[("check", "overall")]), 0.0);
}

#[test]
fn json_search_item_writes_and_errors_over_http() {
    let dir = TempDir::new("http-catalogue");
    let items = fixtures::catalogue(dir.path());
    let server = Server::start(HTTP);
    let http = server.http.unwrap();
    for it in &items {
        let body = std::fs::read(&it.path).unwrap();
        let path = format!(
            "/v1/items?id={}&category={}&attr=color%3D{}",
            it.id,
            it.category.replace('/', "%2F"),
            it.colour
        );
        let r = request(http, "POST", &path, &[], &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["id"], it.id.as_str());
    }
    let target = &items[3];
    let photo = fixtures::distorted(&target.path, 10.0);

    // Raw body: the same JSON as `vsa search --json`.
    let r = request(http, "POST", "/v1/search?k=5&explain=1", &[], &photo);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["results"][0]["id"], target.id.as_str(), "{j}");
    assert!(j["results"][0]["components"]["visual"].is_number(), "{j}");
    assert!(j["timings"]["total"].is_number());
    assert_eq!(j["query"], "body");
    // Multipart, with a filter and a category hint.
    let (ct, body) = multipart("shopper.jpg", &photo);
    let path = format!(
        "/v1/search?k=3&where=color%3D{}&category={}",
        target.colour,
        target.category.replace('/', "%2F")
    );
    let r = request(http, "POST", &path, &[("Content-Type", &ct)], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["query"], "shopper.jpg");
    assert_eq!(j["results"][0]["id"], target.id.as_str());
    for hit in j["results"].as_array().unwrap() {
        let it = items.iter().find(|i| i.id == hit["id"]).unwrap();
        assert_eq!(it.colour, target.colour, "the filter holds: {j}");
    }

    // Delete, then it is gone.
    let r = request(
        http,
        "DELETE",
        &format!("/v1/items/{}", target.id),
        &[],
        b"",
    );
    assert_eq!(
        (r.status, r.json()["existed"].clone()),
        (200, true.into()),
        "{}",
        r.text()
    );
    let r = request(http, "POST", "/v1/search?k=5", &[], &photo);
    assert!(
        r.json()["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["id"] != target.id.as_str())
    );
    // Deleting an unknown id is not an error, as over TCP: it says it did not exist.
    let r = request(
        http,
        "DELETE",
        &format!("/v1/items/{}", target.id),
        &[],
        b"",
    );
    assert_eq!((r.status, r.json()["existed"].clone()), (200, false.into()));

    // Errors: the TCP protocol's codes, as HTTP statuses; nothing crashes.
    let cases: [(&str, &[u8], u16, &str); 5] = [
        (
            "/v1/search",
            b"definitely not an image",
            400,
            "invalid_image",
        ),
        ("/v1/search", b"", 400, "invalid_image"),
        ("/v1/search?k=0", &photo, 400, "bad_request"),
        ("/v1/search?where=nonsense", &photo, 400, "invalid_filter"),
        ("/v1/items?id=x", &photo, 400, "bad_request"),
    ];
    for (path, body, status, code) in cases {
        let r = request(http, "POST", path, &[], body);
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.json()["error"]["code"], code, "{path}");
    }
    let big = vec![0xffu8; 2_500_000];
    let r = request(http, "POST", "/v1/search", &[], &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "image_too_large");
    let r = request(http, "GET", "/readyz", &[], b"");
    assert_eq!(r.status, 200, "still ready after bad input");
}
