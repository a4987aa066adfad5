//! `vsa ingest`: stream a catalogue (a JSONL manifest) into a running appliance.
//!
//! Each manifest line is one item:
//! `{"id": "...", "image": "path/relative/to/the/manifest/folder.jpg", "category": "...",
//! "attributes": {"colour": "red"} | ["colour=red", ...], <any other field>: metadata}`.
//! The image bytes are read from disk and sent as `Request::Upsert`. Requests are pipelined on
//! one connection (up to `--in-flight` outstanding; answers come back in order). A retryable
//! answer (`busy`, `not_ready`, ...) is retried after a backoff, during which no new item is
//! sent; any other failure (a bad line, an unreadable image, a server error) is reported as
//! `line N (id X): code: message` on stderr and counted, and the stream goes on. Only a lost
//! connection stops the run.
//!
//! [`ingest_file`] / [`ingest_file_with`] are the library entry points (`vsa eval` and
//! `vsa demo` reuse them).

use std::collections::VecDeque;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::ProgressBar;
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, BufReader};
use vsa_protocol::{
    Client, ClientOptions, ItemContent, ProtocolError, Request, Response, UpsertRequest,
};

use super::client_common::{self, ConnArgs, RetryPolicy};

/// Failure code of a manifest line that is not a valid item.
pub const CODE_BAD_LINE: &str = "bad_line";
/// Failure code of an item whose image file cannot be read.
pub const CODE_UNREADABLE_IMAGE: &str = "unreadable_image";
/// At most this many failures are kept in [`IngestSummary::failures`] (all are counted).
pub const MAX_KEPT_FAILURES: usize = 1000;

/// Arguments of `vsa ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Server address and token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The JSONL manifest; image paths are relative to its folder.
    pub manifest: PathBuf,
    /// Requests kept outstanding on the connection (pipelining window).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub in_flight: u32,
    /// Ingest only the first N items of the manifest.
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Runs `vsa ingest`: exit 0 when every item was stored, 1 when any failed.
pub fn run(args: IngestArgs) -> anyhow::Result<i32> {
    let options = args.conn.options("ingest");
    let settings = IngestSettings {
        in_flight: args.in_flight as usize,
        limit: args.limit,
        progress: true,
        ..IngestSettings::default()
    };
    let summary = client_common::block_on(ingest_file_with(
        &args.conn.addr,
        &options,
        &args.manifest,
        &settings,
    ))??;
    println!("{}", summary.summary_line());
    Ok(if summary.failed == 0 { 0 } else { 1 })
}

/// How [`ingest_file_with`] streams.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// Requests kept outstanding (at least 1).
    pub in_flight: usize,
    /// Ingest only the first N items (non-empty lines).
    pub limit: Option<usize>,
    /// Draw a progress bar on stderr (only when stderr is a terminal).
    pub progress: bool,
    /// Print each failure to stderr as it happens.
    pub print_failures: bool,
    /// Backoff for retryable answers.
    pub retry: RetryPolicy,
}

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            in_flight: 32,
            limit: None,
            progress: false,
            print_failures: true,
            retry: RetryPolicy::default(),
        }
    }
}

/// One item that could not be ingested.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IngestFailure {
    /// 1-based line of the manifest.
    pub line: usize,
    /// The item id, when the line had one.
    pub id: Option<String>,
    /// A server error code, or [`CODE_BAD_LINE`] / [`CODE_UNREADABLE_IMAGE`].
    pub code: String,
    /// What went wrong.
    pub message: String,
}

impl fmt::Display for IngestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {} (id {}): {}: {}",
            self.line,
            self.id.as_deref().unwrap_or("?"),
            self.code,
            self.message
        )
    }
}

/// The outcome of an ingest.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct IngestSummary {
    /// Items attempted (non-empty manifest lines, within the limit).
    pub total: u64,
    /// Items stored.
    pub ok: u64,
    /// Of those, items that replaced an existing item with the same id.
    pub replaced: u64,
    /// Items not stored.
    pub failed: u64,
    /// Retries after retryable answers (`busy`, ...); not failures.
    pub retries: u64,
    /// Wall time of the whole ingest.
    pub elapsed: Duration,
    /// The first [`MAX_KEPT_FAILURES`] failures, in the order they happened.
    pub failures: Vec<IngestFailure>,
}

impl IngestSummary {
    /// Items stored per second of wall time.
    pub fn items_per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
    }

    /// `ingested 1024 items: 1024 ok (3 replaced), 0 failed, 2 retries; 12.3 s, 83.2 items/s`.
    pub fn summary_line(&self) -> String {
        format!(
            "ingested {} items: {} ok ({} replaced), {} failed, {} retries; {:.1} s, {:.1} items/s",
            self.total,
            self.ok,
            self.replaced,
            self.failed,
            self.retries,
            self.elapsed.as_secs_f64(),
            self.items_per_sec()
        )
    }

    fn fail(&mut self, failure: IngestFailure, print: bool, bar: &ProgressBar) {
        if print {
            client_common::eprint_above(bar, &failure.to_string());
        }
        self.failed += 1;
        if self.failures.len() < MAX_KEPT_FAILURES {
            self.failures.push(failure);
        }
        bar.inc(1);
        bar.set_message(format!("{} failed", self.failed));
    }
}

/// One parsed manifest line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEntry {
    /// Item id.
    pub id: String,
    /// The image path, resolved against the manifest's folder.
    pub image: PathBuf,
    /// The item's category.
    pub category: String,
    /// Filterable attributes, `(key, value)`; a key may repeat.
    pub attributes: Vec<(String, String)>,
    /// Every other field, as strings (non-string JSON values as their JSON text; nulls
    /// dropped), sorted by key.
    pub metadata: Vec<(String, String)>,
}

/// Why a manifest line is not an item: the id if one could be read, and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// The id, if the line had a string `id`.
    pub id: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Parses one manifest line; `base` is the manifest's folder.
pub fn parse_manifest_line(line: &str, base: &Path) -> Result<ManifestEntry, BadLine> {
    let bad = |id: Option<&str>, message: String| BadLine {
        id: id.map(str::to_owned),
        message,
    };
    let value: Value =
        serde_json::from_str(line).map_err(|e| bad(None, format!("not JSON: {e}")))?;
    let Value::Object(mut fields) = value else {
        return Err(bad(None, "expected a JSON object".into()));
    };
    let id = match fields.remove("id") {
        Some(Value::String(id)) if !id.is_empty() => id,
        Some(Value::String(_)) => return Err(bad(None, "\"id\" is empty".into())),
        Some(_) => return Err(bad(None, "\"id\" must be a string".into())),
        None => return Err(bad(None, "\"id\" is missing".into())),
    };
    let mut string_field = |name: &str| match fields.remove(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(Value::String(_)) => Err(bad(Some(&id), format!("\"{name}\" is empty"))),
        Some(_) => Err(bad(Some(&id), format!("\"{name}\" must be a string"))),
        None => Err(bad(Some(&id), format!("\"{name}\" is missing"))),
    };
    let image = string_field("image")?;
    let category = string_field("category")?;
    let attributes = match fields.remove("attributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => parse_attributes(value).map_err(|m| bad(Some(&id), m))?,
    };
    let metadata = metadata_strings(fields);
    Ok(ManifestEntry {
        image: base.join(image),
        id,
        category,
        attributes,
        metadata,
    })
}

/// `attributes`: an object of string → string (or → list of strings, one pair each), or a list
/// of `"key=value"` strings.
fn parse_attributes(value: Value) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match value {
                    Value::Array(values) => {
                        for v in values {
                            out.push((key.clone(), scalar_string(&key, v)?));
                        }
                    }
                    v => out.push((key.clone(), scalar_string(&key, v)?)),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let Value::String(pair) = item else {
                    return Err("\"attributes\" list entries must be \"key=value\" strings".into());
                };
                match pair.split_once('=') {
                    Some((k, v)) if !k.trim().is_empty() => {
                        out.push((k.trim().to_owned(), v.trim().to_owned()));
                    }
                    _ => return Err(format!("attribute {pair:?} is not \"key=value\"")),
                }
            }
        }
        _ => {
            return Err(
                "\"attributes\" must be an object or a list of \"key=value\" strings".into(),
            );
        }
    }
    Ok(out)
}

fn scalar_string(key: &str, value: Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!(
            "attribute {key:?} must be a string, number or boolean"
        )),
    }
}

fn metadata_strings(fields: Map<String, Value>) -> Vec<(String, String)> {
    fields
        .into_iter()
        .filter_map(|(k, v)| match v {
            Value::Null => None,
            Value::String(s) => Some((k, s)),
            other => Some((k, other.to_string())),
        })
        .collect()
}

/// Ingests the manifest at `path` into the server at `addr` with the default settings, this
/// pipelining window and optionally a progress bar; failures are printed to stderr.
pub async fn ingest_file(
    addr: &str,
    options: &ClientOptions,
    path: &Path,
    in_flight: usize,
    progress: bool,
) -> anyhow::Result<IngestSummary> {
    let settings = IngestSettings {
        in_flight,
        progress,
        ..IngestSettings::default()
    };
    ingest_file_with(addr, options, path, &settings).await
}

/// Ingests the manifest at `path` into the server at `addr` (see the module docs). Fails only
/// when the manifest cannot be opened or the connection is lost; item failures are in the
/// summary.
pub async fn ingest_file_with(
    addr: &str,
    options: &ClientOptions,
    path: &Path,
    settings: &IngestSettings,
) -> anyhow::Result<IngestSummary> {
    let open = |e: std::io::Error| anyhow::anyhow!("cannot read {}: {e}", path.display());
    let total = count_entries(path).await.map_err(open)?;
    let total = settings
        .limit
        .map_or(total, |limit| total.min(limit as u64));
    let file = tokio::fs::File::open(path).await.map_err(open)?;
    let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut client = client_common::connect(addr, options.clone()).await?;
    let bar = client_common::progress_bar(total, "items", settings.progress);
    let result = ingest_lines(&mut client, BufReader::new(file), &base, settings, &bar).await;
    bar.finish_and_clear();
    result.map_err(|e| anyhow::anyhow!("ingest into vsa at {addr} stopped: {e}"))
}

async fn count_entries(path: &Path) -> std::io::Result<u64> {
    let mut lines = BufReader::new(tokio::fs::File::open(path).await?).lines();
    let mut n = 0;
    while let Some(line) = lines.next_line().await? {
        n += u64::from(!line.trim().is_empty());
    }
    Ok(n)
}

/// An upsert on its way: where it came from and how often it was retried.
struct Pending {
    line: usize,
    id: String,
    request: Request,
    retries: u32,
}

/// The pipelined ingest loop over any connected client and any manifest reader.
///
/// Invariant: `outstanding` holds the requests sent and not yet answered, oldest first (the
/// server answers in order); `retry` holds requests answered with a retryable code, to be
/// sent again once `pause_until` has passed, before any new line.
pub async fn ingest_lines<S, R>(
    client: &mut Client<S>,
    reader: R,
    base: &Path,
    settings: &IngestSettings,
    bar: &ProgressBar,
) -> Result<IngestSummary, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: tokio::io::AsyncBufRead + Unpin,
{
    let started = Instant::now();
    let window = settings.in_flight.max(1);
    let print = settings.print_failures;
    let mut summary = IngestSummary::default();
    let mut lines = reader.lines();
    let mut line_no = 0usize;
    let mut outstanding: VecDeque<Pending> = VecDeque::new();
    let mut retry: VecDeque<Pending> = VecDeque::new();
    let mut pause_until: Option<Instant> = None;
    let mut source_done = false;
    let unconfirmed = |o: &VecDeque<Pending>, r: &VecDeque<Pending>, s: &IngestSummary| {
        format!(
            "{} ok, {} failed, {} unconfirmed",
            s.ok,
            s.failed,
            o.len() + r.len()
        )
    };

    loop {
        // Fill the window: retries first, then new lines.
        while outstanding.len() < window {
            if pause_until.is_some_and(|t| Instant::now() < t) {
                break;
            }
            let pending = if let Some(p) = retry.pop_front() {
                p
            } else if source_done {
                break;
            } else {
                match next_item(&mut lines, &mut line_no, base, settings.limit, &mut summary).await
                {
                    Err(e) => return Err(format!("reading the manifest: {e}")),
                    Ok(None) => {
                        source_done = true;
                        break;
                    }
                    Ok(Some(Err(failure))) => {
                        summary.fail(failure, print, bar);
                        continue;
                    }
                    Ok(Some(Ok(p))) => p,
                }
            };
            match client.send(pending.request.clone()).await {
                Ok(()) => outstanding.push_back(pending),
                // Refused before anything was written (e.g. over the frame limit).
                Err(e) if client.is_usable() => {
                    let (code, message) = client_common::code_and_message(&e);
                    summary.fail(
                        IngestFailure {
                            line: pending.line,
                            id: Some(pending.id),
                            code,
                            message,
                        },
                        print,
                        bar,
                    );
                }
                Err(e) => {
                    return Err(format!(
                        "{} ({})",
                        client_common::plain(&e),
                        unconfirmed(&outstanding, &retry, &summary)
                    ));
                }
            }
        }

        let Some(mut pending) = outstanding.pop_front() else {
            if retry.is_empty() && source_done {
                break;
            }
            if let Some(until) = pause_until.take() {
                tokio::time::sleep_until(until.into()).await;
            }
            continue;
        };
        let answer = client.recv().await;
        let failure = |code: String, message: String, p: Pending| IngestFailure {
            line: p.line,
            id: Some(p.id),
            code,
            message,
        };
        match answer {
            Ok(Response::Upserted(reply)) if reply.id == pending.id => {
                summary.ok += 1;
                summary.replaced += u64::from(reply.replaced);
                bar.inc(1);
            }
            Ok(Response::Upserted(reply)) => {
                let message = format!("answer for another item ({})", reply.id);
                summary.fail(failure("internal".into(), message, pending), print, bar);
            }
            Ok(Response::Error(e)) if RetryPolicy::retries(e.code) => {
                match settings.retry.delay(pending.retries) {
                    Some(delay) => {
                        pending.retries += 1;
                        summary.retries += 1;
                        let until = Instant::now() + delay;
                        pause_until = Some(pause_until.map_or(until, |t| t.max(until)));
                        retry.push_back(pending);
                    }
                    None => {
                        let message =
                            format!("{} (gave up after {} retries)", e.message, pending.retries);
                        summary.fail(failure(e.code.to_string(), message, pending), print, bar);
                    }
                }
            }
            Ok(Response::Error(e)) => {
                summary.fail(failure(e.code.to_string(), e.message, pending), print, bar);
            }
            Ok(other) => {
                let message = format!("unexpected {} response", other.kind());
                summary.fail(failure("internal".into(), message, pending), print, bar);
            }
            // The frame boundary is known: this answer is lost, the connection is fine.
            Err(e @ (ProtocolError::Decode(_) | ProtocolError::FrameTooLarge { .. }))
                if client.is_usable() =>
            {
                let (code, message) = client_common::code_and_message(&e);
                summary.fail(failure(code, message, pending), print, bar);
            }
            Err(e) => {
                outstanding.push_front(pending);
                return Err(format!(
                    "{} ({})",
                    client_common::plain(&e),
                    unconfirmed(&outstanding, &retry, &summary)
                ));
            }
        }
    }
    summary.elapsed = started.elapsed();
    Ok(summary)
}

/// Reads lines up to the next item: `Ok(None)` at the end (or the limit), `Ok(Some(Err))` for
/// a line that is not an item (bad JSON, unreadable image), `Err` when reading fails.
async fn next_item<R: tokio::io::AsyncBufRead + Unpin>(
    lines: &mut tokio::io::Lines<R>,
    line_no: &mut usize,
    base: &Path,
    limit: Option<usize>,
    summary: &mut IngestSummary,
) -> std::io::Result<Option<Result<Pending, IngestFailure>>> {
    if limit.is_some_and(|limit| summary.total >= limit as u64) {
        return Ok(None);
    }
    let line = loop {
        let Some(line) = lines.next_line().await? else {
            return Ok(None);
        };
        *line_no += 1;
        if !line.trim().is_empty() {
            break line;
        }
    };
    summary.total += 1;
    let line_no = *line_no;
    let entry = match parse_manifest_line(&line, base) {
        Ok(entry) => entry,
        Err(bad) => {
            return Ok(Some(Err(IngestFailure {
                line: line_no,
                id: bad.id,
                code: CODE_BAD_LINE.into(),
                message: bad.message,
            })));
        }
    };
    let bytes = match tokio::fs::read(&entry.image).await {
        Ok(bytes) => bytes,
        Err(e) => {
            return Ok(Some(Err(IngestFailure {
                line: line_no,
                id: Some(entry.id),
                code: CODE_UNREADABLE_IMAGE.into(),
                message: format!("cannot read {}: {e}", entry.image.display()),
            })));
        }
    };
    Ok(Some(Ok(Pending {
        line: line_no,
        id: entry.id.clone(),
        request: Request::Upsert(UpsertRequest {
            id: entry.id,
            content: ItemContent::Image(bytes),
            category: entry.category,
            attributes: entry.attributes,
            metadata: entry.metadata,
        }),
        retries: 0,
    })))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::sync::atomic::Ordering;

    use vsa_protocol::{ErrorCode, UpsertReply};

    use super::*;
    use crate::commands::client_fake::{FakeServer, TempDir, dead_addr};

    fn base() -> PathBuf {
        PathBuf::from("/data/set")
    }

    #[test]
    fn parses_a_full_line() {
        let line = r#"{"id":"a1","image":"catalog/a1.jpg","category":"food/fruit",
            "attributes":{"colour":"red","size":["s","m"],"n":3},"source":"x/y.png",
            "rank":7,"tags":["p","q"],"gone":null}"#
            .replace('\n', " ");
        let entry = parse_manifest_line(&line, &base()).expect("valid line");
        assert_eq!(entry.id, "a1");
        assert_eq!(entry.image, PathBuf::from("/data/set/catalog/a1.jpg"));
        assert_eq!(entry.category, "food/fruit");
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entry.attributes,
            pairs(&[("colour", "red"), ("n", "3"), ("size", "s"), ("size", "m")])
        );
        assert_eq!(
            entry.metadata,
            pairs(&[
                ("rank", "7"),
                ("source", "x/y.png"),
                ("tags", r#"["p","q"]"#)
            ])
        );
    }

    #[test]
    fn parses_attribute_lists_and_absolute_paths() {
        let line =
            r#"{"id":"b","image":"/abs/b.png","category":"c","attributes":["k=v"," a = b=c "]}"#;
        let entry = parse_manifest_line(line, &base()).expect("valid line");
        assert_eq!(entry.image, PathBuf::from("/abs/b.png"));
        assert_eq!(
            entry.attributes,
            vec![
                ("k".to_string(), "v".to_string()),
                ("a".to_string(), "b=c".to_string())
            ]
        );
        assert!(entry.metadata.is_empty());
    }

    #[test]
    fn rejects_bad_lines_with_the_id_when_known() {
        let cases: [(&str, Option<&str>, &str); 8] = [
            ("{not json", None, "not JSON"),
            ("[1,2]", None, "expected a JSON object"),
            (r#"{"image":"a","category":"c"}"#, None, "\"id\" is missing"),
            (
                r#"{"id":5,"image":"a","category":"c"}"#,
                None,
                "must be a string",
            ),
            (
                r#"{"id":"x","category":"c"}"#,
                Some("x"),
                "\"image\" is missing",
            ),
            (
                r#"{"id":"x","image":"a","category":""}"#,
                Some("x"),
                "\"category\" is empty",
            ),
            (
                r#"{"id":"x","image":"a","category":"c","attributes":["novalue"]}"#,
                Some("x"),
                "not \"key=value\"",
            ),
            (
                r#"{"id":"x","image":"a","category":"c","attributes":{"k":{"n":1}}}"#,
                Some("x"),
                "must be a string, number or boolean",
            ),
        ];
        for (line, id, needle) in cases {
            let err = parse_manifest_line(line, &base()).expect_err(line);
            assert_eq!(err.id.as_deref(), id, "{line}");
            assert!(err.message.contains(needle), "{line}: {}", err.message);
        }
    }

    #[test]
    fn failure_lines_read_well() {
        let f = IngestFailure {
            line: 7,
            id: None,
            code: CODE_BAD_LINE.into(),
            message: "not JSON".into(),
        };
        assert_eq!(f.to_string(), "line 7 (id ?): bad_line: not JSON");
    }

    fn upserted(id: &str) -> Response {
        Response::Upserted(UpsertReply {
            id: id.into(),
            seq: 1,
            replaced: false,
        })
    }

    fn fast_settings(in_flight: usize) -> IngestSettings {
        IngestSettings {
            in_flight,
            print_failures: false,
            retry: RetryPolicy {
                first: Duration::from_millis(5),
                max_delay: Duration::from_millis(20),
                max_retries: 3,
            },
            ..IngestSettings::default()
        }
    }

    /// A manifest of `good` items (images present) plus a bad JSON line, a missing image and
    /// an item the server rejects (`bad-image`).
    fn manifest(dir: &TempDir, good: usize) -> PathBuf {
        let mut text = String::new();
        for i in 0..good {
            dir.write(&format!("img/{i}.jpg"), format!("image {i}"));
            text.push_str(&format!(
                "{{\"id\":\"i{i}\",\"image\":\"img/{i}.jpg\",\"category\":\"c{}\",\"attributes\":[\"n={i}\"],\"source\":\"s{i}\"}}\n",
                i % 2
            ));
            if i == 1 {
                text.push_str("\n{oops\n");
                text.push_str(r#"{"id":"gone","image":"img/missing.jpg","category":"c"}"#);
                text.push('\n');
                dir.write("img/bad.jpg", "garbage");
                text.push_str(r#"{"id":"bad-image","image":"img/bad.jpg","category":"c"}"#);
                text.push('\n');
            }
        }
        dir.write("sub/items.jsonl", text.replace("img/", "../img/"))
    }

    #[tokio::test]
    async fn pipelines_retries_busy_and_reports_failures() {
        let dir = TempDir::new("ingest");
        let path = manifest(&dir, 12);
        // The server says busy twice to i3 and i4, and rejects bad-image.
        let busy_left: Arc<Mutex<HashMap<String, u32>>> = Arc::new(Mutex::new(HashMap::from([
            ("i3".to_string(), 2),
            ("i4".to_string(), 2),
        ])));
        let server = FakeServer::start(
            8,
            Arc::new(move |request| {
                let Request::Upsert(up) = request else {
                    return Response::error(ErrorCode::BadRequest, "upserts only");
                };
                if up.id == "bad-image" {
                    return Response::error(ErrorCode::InvalidImage, "cannot decode");
                }
                let mut busy = busy_left.lock().expect("lock");
                match busy.get_mut(&up.id) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        Response::error(ErrorCode::Busy, "queue full")
                    }
                    _ => upserted(&up.id),
                }
            }),
        )
        .await;
        let summary = ingest_file_with(
            &server.addr(),
            &ClientOptions::default(),
            &path,
            &fast_settings(8),
        )
        .await
        .expect("ingest");
        assert_eq!(
            (summary.total, summary.ok, summary.failed, summary.retries),
            (15, 12, 3, 4)
        );
        let failures: Vec<String> = summary.failures.iter().map(|f| f.to_string()).collect();
        assert_eq!(failures.len(), 3);
        assert!(
            failures[0].starts_with("line 4 (id ?): bad_line: not JSON"),
            "{failures:?}"
        );
        assert!(
            failures[1].starts_with("line 5 (id gone): unreadable_image: cannot read"),
            "{failures:?}"
        );
        assert_eq!(
            failures[2],
            "line 6 (id bad-image): invalid_image: cannot decode"
        );
        // Pipelined: the server held several requests at once (a full window of 8 unless
        // reading a file stalled the client), never more than the window.
        let held = server.max_pending.load(Ordering::SeqCst);
        assert!((2..=8).contains(&held), "{held}");
        // 13 upserts sent + 4 retries.
        assert_eq!(server.request_count(), 17);
        let requests = server.requests.lock().expect("lock");
        let Some(Request::Upsert(first)) = requests.first() else {
            panic!("first request is not an upsert");
        };
        assert_eq!(first.id, "i0");
        assert_eq!(first.content, ItemContent::Image(b"image 0".to_vec()));
        assert_eq!(first.category, "c0");
        assert_eq!(first.attributes, vec![("n".to_string(), "0".to_string())]);
        assert_eq!(
            first.metadata,
            vec![("source".to_string(), "s0".to_string())]
        );
    }

    #[tokio::test]
    async fn window_of_one_does_not_pipeline_and_limit_stops_early() {
        let dir = TempDir::new("ingest1");
        let path = manifest(&dir, 6);
        let server = FakeServer::start(
            8,
            Arc::new(|request| match request {
                Request::Upsert(up) => upserted(&up.id),
                _ => Response::error(ErrorCode::BadRequest, "upserts only"),
            }),
        )
        .await;
        let settings = IngestSettings {
            limit: Some(3),
            ..fast_settings(1)
        };
        let summary = ingest_file_with(&server.addr(), &ClientOptions::default(), &path, &settings)
            .await
            .expect("ingest");
        assert_eq!((summary.total, summary.ok, summary.failed), (3, 2, 1));
        assert_eq!(server.max_pending.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn gives_up_on_endless_busy() {
        let dir = TempDir::new("ingest2");
        dir.write("a.jpg", "a");
        let path = dir.write("m.jsonl", r#"{"id":"a","image":"a.jpg","category":"c"}"#);
        let server = FakeServer::start(
            1,
            Arc::new(|_| Response::error(ErrorCode::Busy, "queue full")),
        )
        .await;
        let summary = ingest_file_with(
            &server.addr(),
            &ClientOptions::default(),
            &path,
            &fast_settings(4),
        )
        .await
        .expect("ingest");
        assert_eq!((summary.ok, summary.failed, summary.retries), (0, 1, 3));
        assert_eq!(summary.failures[0].code, "busy");
        assert!(
            summary.failures[0]
                .message
                .contains("gave up after 3 retries")
        );
    }

    #[tokio::test]
    async fn unreachable_server_is_one_clear_line() {
        let dir = TempDir::new("ingest3");
        let path = dir.write("m.jsonl", "");
        let addr = dead_addr().await;
        let err = ingest_file(&addr, &ClientOptions::default(), &path, 4, false)
            .await
            .expect_err("nobody listens");
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!("cannot reach vsa at {addr}: ")),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
