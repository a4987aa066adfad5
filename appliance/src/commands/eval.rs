//! `vsa eval`: evaluate a running appliance on an evalset (format `clipart-evalset/1`, e.g.
//! `clipart-public-v1`: `items.jsonl` `{"id","image","category",...}` and `queries.jsonl`
//! `{"id","image","target","category"}`, image paths relative to the folder).
//!
//! Unless `--no-ingest`, the catalogue is ingested first with
//! [`super::ingest::ingest_file_with`]. Then every query photo is searched (one request at a
//! time per connection, `--concurrency` connections) and graded.
//!
//! The metrics are those of `shared/scripts/score.py`, computed the same way: over the queries
//! sorted by id, a query's rank is the target's position in its first 10 results; recall@k
//! and MRR@10 divide by all queries (a failed query counts as a miss, like a missing line);
//! category accuracy is over queries with a prediction and over all, at full depth and at the
//! top level (first path component); every ratio is rounded to 4 decimals with round-half-even
//! on the exact binary value (Python's `round(x, 4)`) and is `null` when its denominator is 0.
//! `--out` writes the lines `score.py` grades: `{"query","results":[ids],"category"}` (failed
//! queries have no line; ids repeated by the server are dropped, keeping the first), so
//! `score.py --results` on that file prints the same numbers (with `--limit`, score.py counts
//! the queries that were not run as missing).

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Args;
use serde::{Deserialize, Serialize};
use vsa_protocol::{
    Client, ClientOptions, ProtocolError, QueryInput, Request, Response, SearchRequest,
    SearchResponse,
};

use super::client_common::{self, ConnArgs, OrderedMap, RetryPolicy};
use super::ingest::{self, IngestSettings, IngestSummary};

/// The cut-offs of recall@k; MRR is taken at the largest.
pub const KS: [usize; 3] = [1, 5, 10];

/// Arguments of `vsa eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Server address and token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The evalset folder (holds items.jsonl and queries.jsonl).
    #[arg(long, value_name = "DIR")]
    pub evalset: PathBuf,
    /// Print the report as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Do not ingest the catalogue first (it is already in the appliance).
    #[arg(long)]
    pub no_ingest: bool,
    /// Write one result line per query, in the format score.py grades.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Hits requested per query (metrics use the first 10).
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Queries run at once, each on its own connection.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Run only the first N queries.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Exit 1 when recall@10 is below this.
    #[arg(long, value_name = "X")]
    pub min_recall10: Option<f64>,
    /// The server-side quality preset of every query (the server's default when absent).
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,
    /// Pipelining window of the ingest.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub in_flight: u32,
}

/// Runs `vsa eval`: exit 0, or 1 when `--min-recall10` is given and not reached.
pub fn run(args: EvalArgs) -> anyhow::Result<i32> {
    let mut evalset = load_evalset(&args.evalset)?;
    if let Some(limit) = args.limit {
        evalset.queries.truncate(limit);
    }
    let settings = EvalSettings {
        k: args.k,
        concurrency: args.concurrency as usize,
        ingest: !args.no_ingest,
        in_flight: args.in_flight as usize,
        progress: true,
        preset: args.preset.clone(),
        ..EvalSettings::default()
    };
    let options = args.conn.options("eval");
    let outcome =
        client_common::block_on(evaluate(&args.conn.addr, &options, &evalset, &settings))??;
    if let Some(path) = &args.out {
        write_results(path, &outcome.lines)?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.report)?);
    } else {
        print!("{}", render_report(&args.evalset, &outcome.report));
    }
    let recall10 = outcome.report.metrics.recall_at_10.unwrap_or(0.0);
    if let Some(min) = args.min_recall10
        && recall10 < min
    {
        eprintln!("vsa eval: recall@10 {recall10} is below --min-recall10 {min}");
        return Ok(1);
    }
    Ok(0)
}

/// An evalset in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evalset {
    /// Its folder.
    pub dir: PathBuf,
    /// Catalogue item id → category.
    pub items: HashMap<String, String>,
    /// The queries, in file order.
    pub queries: Vec<EvalQuery>,
}

/// One query of an evalset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalQuery {
    /// Query id.
    pub id: String,
    /// The photo, resolved against the evalset folder.
    pub image: PathBuf,
    /// The item the query shows.
    pub target: String,
    /// The target's category.
    pub category: String,
}

#[derive(Deserialize)]
struct ItemLine {
    id: String,
    category: String,
}

#[derive(Deserialize)]
struct QueryLine {
    id: String,
    image: String,
    target: String,
    category: String,
}

/// Reads `items.jsonl` and `queries.jsonl` of the evalset in `dir` (checked like score.py:
/// string ids and categories, every target in the catalogue; also no repeated query id).
pub fn load_evalset(dir: &Path) -> anyhow::Result<Evalset> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
    };
    let items_text = read("items.jsonl")?;
    let queries_text = read("queries.jsonl")?;
    parse_evalset(dir, &items_text, &queries_text)
}

/// [`load_evalset`] on texts already read.
pub fn parse_evalset(dir: &Path, items_text: &str, queries_text: &str) -> anyhow::Result<Evalset> {
    let mut items = HashMap::new();
    for (n, line) in numbered(items_text) {
        let item: ItemLine = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("items.jsonl:{n}: needs string id and category ({e})"))?;
        items.insert(item.id, item.category);
    }
    let mut queries = Vec::new();
    let mut seen = HashSet::new();
    for (n, line) in numbered(queries_text) {
        let q: QueryLine = serde_json::from_str(line).map_err(|e| {
            anyhow::anyhow!("queries.jsonl:{n}: needs string id, image, target and category ({e})")
        })?;
        anyhow::ensure!(
            items.contains_key(&q.target),
            "queries.jsonl:{n}: target {} is not in items.jsonl",
            q.target
        );
        anyhow::ensure!(
            seen.insert(q.id.clone()),
            "queries.jsonl:{n}: query {} repeats",
            q.id
        );
        queries.push(EvalQuery {
            image: dir.join(&q.image),
            id: q.id,
            target: q.target,
            category: q.category,
        });
    }
    Ok(Evalset {
        dir: dir.to_path_buf(),
        items,
        queries,
    })
}

fn numbered(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim().is_empty())
}

/// One line of the results file score.py grades.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultLine {
    /// Query id.
    pub query: String,
    /// Item ids, best first, without repeats.
    pub results: Vec<String>,
    /// The predicted category, or null.
    pub category: Option<String>,
}

/// The score.py metrics (same keys, same order, same rounding).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Queries in the evalset (those run).
    pub n: usize,
    /// Share of queries whose target is first.
    #[serde(rename = "recall@1")]
    pub recall_at_1: Option<f64>,
    /// Share of queries whose target is in the first 5.
    #[serde(rename = "recall@5")]
    pub recall_at_5: Option<f64>,
    /// Share of queries whose target is in the first 10.
    #[serde(rename = "recall@10")]
    pub recall_at_10: Option<f64>,
    /// Mean reciprocal rank of the target within the first 10 (0 when absent).
    #[serde(rename = "MRR@10")]
    pub mrr_at_10: Option<f64>,
    /// Correct categories over queries with a prediction.
    pub category_top1_predicted: Option<f64>,
    /// Correct categories over all queries.
    pub category_top1_all: Option<f64>,
    /// Correct top-level categories over queries with a prediction.
    pub category_l1_top1_predicted: Option<f64>,
    /// Correct top-level categories over all queries.
    pub category_l1_top1_all: Option<f64>,
    /// Queries with a category prediction.
    pub with_category: usize,
    /// Queries answered.
    pub answered: usize,
    /// Queries not answered (they count as misses).
    pub missing: usize,
}

/// Python's `round(x, 4)`: round-half-even on the exact binary value, then the nearest
/// double (Rust's `{:.4}` formatting rounds exactly like CPython's `round`).
pub fn round4(x: f64) -> f64 {
    format!("{x:.4}").parse().unwrap_or(x)
}

fn ratio(num: f64, den: usize) -> Option<f64> {
    (den > 0).then(|| round4(num / den as f64))
}

fn top_level(category: &str) -> &str {
    category.split('/').next().unwrap_or(category)
}

/// score.py's `metrics` over these queries and answers (by query id).
pub fn metrics(queries: &[EvalQuery], answers: &HashMap<String, ResultLine>) -> Metrics {
    let mut sorted: Vec<&EvalQuery> = queries.iter().collect();
    // score.py iterates sorted(qs): the MRR sum is added up in this order.
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let depth = KS[KS.len() - 1];
    let mut hits = [0usize; KS.len()];
    let mut rr = 0.0f64;
    let (mut cat_ok, mut cat_pred, mut l1_ok, mut answered) = (0usize, 0usize, 0usize, 0usize);
    for q in sorted {
        let Some(answer) = answers.get(&q.id) else {
            continue;
        };
        answered += 1;
        let top = &answer.results[..answer.results.len().min(depth)];
        if let Some(pos) = top.iter().position(|id| *id == q.target) {
            let rank = pos + 1;
            for (hit, k) in hits.iter_mut().zip(KS) {
                *hit += usize::from(rank <= k);
            }
            rr += 1.0 / rank as f64;
        }
        if let Some(predicted) = &answer.category {
            cat_pred += 1;
            cat_ok += usize::from(*predicted == q.category);
            l1_ok += usize::from(top_level(predicted) == top_level(&q.category));
        }
    }
    let n = queries.len();
    Metrics {
        n,
        recall_at_1: ratio(hits[0] as f64, n),
        recall_at_5: ratio(hits[1] as f64, n),
        recall_at_10: ratio(hits[2] as f64, n),
        mrr_at_10: ratio(rr, n),
        category_top1_predicted: ratio(cat_ok as f64, cat_pred),
        category_top1_all: ratio(cat_ok as f64, n),
        category_l1_top1_predicted: ratio(l1_ok as f64, cat_pred),
        category_l1_top1_all: ratio(l1_ok as f64, n),
        with_category: cat_pred,
        answered,
        missing: n - answered,
    }
}

/// How [`evaluate`] runs.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Hits requested per query.
    pub k: u32,
    /// Connections searching at once.
    pub concurrency: usize,
    /// Ingest `items.jsonl` first.
    pub ingest: bool,
    /// Pipelining window of the ingest.
    pub in_flight: usize,
    /// Progress bars on stderr (only when it is a terminal).
    pub progress: bool,
    /// Backoff for retryable answers.
    pub retry: RetryPolicy,
    /// The quality preset every query asks for.
    pub preset: Option<String>,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            k: 10,
            concurrency: 1,
            ingest: true,
            in_flight: 32,
            progress: false,
            retry: RetryPolicy::patient(),
            preset: None,
        }
    }
}

/// Client-side latency of the searches, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median (nearest rank).
    pub p50: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
    /// Mean.
    pub mean: Option<f64>,
}

/// What the ingest did, for the report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestReport {
    /// Items attempted.
    pub total: u64,
    /// Items stored.
    pub ok: u64,
    /// Items not stored.
    pub failed: u64,
    /// Retries after `busy` and the like.
    pub retries: u64,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Items stored per second.
    pub items_per_s: f64,
}

impl From<&IngestSummary> for IngestReport {
    fn from(s: &IngestSummary) -> Self {
        IngestReport {
            total: s.total,
            ok: s.ok,
            failed: s.failed,
            retries: s.retries,
            elapsed_s: round3(s.elapsed.as_secs_f64()),
            items_per_s: round3(s.items_per_sec()),
        }
    }
}

/// The full report (`--json` prints it; the score.py keys come first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalReport {
    /// The score.py metrics.
    #[serde(flatten)]
    pub metrics: Metrics,
    /// Queries that failed (unreadable photo, server error); counted as missing.
    pub failed: usize,
    /// Hits requested per query.
    pub k: u32,
    /// Connections used.
    pub concurrency: usize,
    /// Client-side wall time per search.
    pub latency_ms: Latency,
    /// Median of the server's reported time per stage, milliseconds, in the server's order
    /// (a JSON object).
    #[serde(serialize_with = "stage_map")]
    pub server_timings_p50_ms: Vec<(String, f64)>,
    /// The ingest, when one ran.
    pub ingest: Option<IngestReport>,
    /// Category top-1 over all queries of each prediction branch the server reported
    /// (`knn`: the neighbours' vote, `model`: nearest category centroid) and of the fused
    /// answer (`fused`), in that order (a JSON object).
    #[serde(serialize_with = "stage_map")]
    pub category_branches: Vec<(String, f64)>,
}

fn stage_map<S: serde::Serializer>(
    stages: &[(String, f64)],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    OrderedMap(stages).serialize(serializer)
}

/// What [`evaluate`] returns: the report and the result lines (for `--out`).
#[derive(Debug, Clone)]
pub struct EvalOutcome {
    /// The report.
    pub report: EvalReport,
    /// One line per answered query, in evalset order.
    pub lines: Vec<ResultLine>,
}

/// One answered query.
#[derive(Debug, Clone)]
struct Answered {
    line: ResultLine,
    latency: Duration,
    timings: Vec<(String, u64)>,
    /// `(branch, predicted category)` as the server reported them.
    branches: Vec<(String, String)>,
}

/// Ingests the catalogue (unless told not to), runs every query and grades the answers.
/// Fails when the evalset cannot be ingested or a connection is lost; a failed query is
/// reported on stderr and counted as missing.
pub async fn evaluate(
    addr: &str,
    options: &ClientOptions,
    evalset: &Evalset,
    settings: &EvalSettings,
) -> anyhow::Result<EvalOutcome> {
    let ingest = if settings.ingest {
        let ingest_settings = IngestSettings {
            in_flight: settings.in_flight,
            progress: settings.progress,
            retry: settings.retry,
            ..IngestSettings::default()
        };
        let items = evalset.dir.join("items.jsonl");
        let summary = ingest::ingest_file_with(addr, options, &items, &ingest_settings).await?;
        eprintln!("vsa eval: {}", summary.summary_line());
        Some(IngestReport::from(&summary))
    } else {
        None
    };

    let queries = Arc::new(evalset.queries.clone());
    let next = Arc::new(AtomicUsize::new(0));
    let bar = client_common::progress_bar(queries.len() as u64, "queries", settings.progress);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..settings.concurrency.max(1).min(queries.len().max(1)) {
        let (options, addr) = (options.clone(), addr.to_owned());
        let (queries, next, bar) = (queries.clone(), next.clone(), bar.clone());
        let (k, retry) = (settings.k, settings.retry);
        let preset = settings.preset.clone();
        workers.spawn(async move {
            let mut client = client_common::connect(&addr, options).await?;
            let mut done = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(query) = queries.get(i) else {
                    break;
                };
                match run_query(&mut client, query, k, preset.as_deref(), retry).await {
                    Ok(Ok(answered)) => done.push((i, answered)),
                    Ok(Err((code, message))) => {
                        let line = format!("query {}: {code}: {message}", query.id);
                        client_common::eprint_above(&bar, &line);
                    }
                    Err(e) => anyhow::bail!("search on vsa at {addr} failed: {e}"),
                }
                bar.inc(1);
            }
            anyhow::Ok(done)
        });
    }
    let mut answered: Vec<(usize, Answered)> = Vec::new();
    while let Some(joined) = workers.join_next().await {
        answered.extend(joined.map_err(|e| anyhow::anyhow!("a search task died: {e}"))??);
    }
    bar.finish_and_clear();
    answered.sort_by_key(|(i, _)| *i);
    let answered: Vec<Answered> = answered.into_iter().map(|(_, a)| a).collect();
    Ok(grade(evalset, answered, settings, ingest))
}

fn grade(
    evalset: &Evalset,
    answered: Vec<Answered>,
    settings: &EvalSettings,
    ingest: Option<IngestReport>,
) -> EvalOutcome {
    let answers: HashMap<String, ResultLine> = answered
        .iter()
        .map(|a| (a.line.query.clone(), a.line.clone()))
        .collect();
    let metrics = metrics(&evalset.queries, &answers);
    let mut latencies: Vec<f64> = answered
        .iter()
        .map(|a| a.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let latency_ms = Latency {
        p50: percentile(&latencies, 50.0).map(round3),
        p99: percentile(&latencies, 99.0).map(round3),
        mean: (!latencies.is_empty())
            .then(|| round3(latencies.iter().sum::<f64>() / latencies.len() as f64)),
    };
    let mut stages: Vec<(String, Vec<f64>)> = Vec::new();
    for a in &answered {
        for (stage, us) in &a.timings {
            let ms = *us as f64 / 1000.0;
            match stages.iter_mut().find(|(s, _)| s == stage) {
                Some((_, values)) => values.push(ms),
                None => stages.push((stage.clone(), vec![ms])),
            }
        }
    }
    let server_timings_p50_ms = stages
        .into_iter()
        .filter_map(|(stage, mut values)| {
            values.sort_by(f64::total_cmp);
            percentile(&values, 50.0).map(|p| (stage, round3(p)))
        })
        .collect();
    let failed = evalset.queries.len() - answered.len();
    let truth: HashMap<&str, &str> = evalset
        .queries
        .iter()
        .map(|q| (q.id.as_str(), q.category.as_str()))
        .collect();
    let mut branch_hits: Vec<(String, usize)> = Vec::new();
    for a in &answered {
        let want = truth.get(a.line.query.as_str()).copied();
        let fused = a.line.category.clone().map(|c| ("fused".to_string(), c));
        for (branch, got) in a.branches.iter().cloned().chain(fused) {
            let ok = usize::from(want == Some(got.as_str()));
            match branch_hits.iter_mut().find(|(b, _)| *b == branch) {
                Some(b) => b.1 += ok,
                None => branch_hits.push((branch, ok)),
            }
        }
    }
    let n = evalset.queries.len().max(1) as f64;
    let category_branches = branch_hits
        .into_iter()
        .map(|(b, ok)| (b, round4(ok as f64 / n)))
        .collect();
    EvalOutcome {
        report: EvalReport {
            metrics,
            failed,
            k: settings.k,
            concurrency: settings.concurrency,
            latency_ms,
            server_timings_p50_ms,
            ingest,
            category_branches,
        },
        lines: answered.into_iter().map(|a| a.line).collect(),
    }
}

/// Runs one query: `Ok(Err((code, message)))` for a failed query, `Err` for a lost
/// connection.
async fn run_query(
    client: &mut Client,
    query: &EvalQuery,
    k: u32,
    preset: Option<&str>,
    retry: RetryPolicy,
) -> Result<Result<Answered, (String, String)>, String> {
    let bytes = match tokio::fs::read(&query.image).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let message = format!("cannot read {}: {e}", query.image.display());
            return Ok(Err((ingest::CODE_UNREADABLE_IMAGE.into(), message)));
        }
    };
    let mut request = SearchRequest::new(QueryInput::Image(bytes), k);
    request.options.preset = preset.map(str::to_owned);
    let mut retries = 0;
    loop {
        let message = Request::Search(request.clone());
        let started = Instant::now();
        let answer = client.call(message).await;
        let latency = started.elapsed();
        match answer {
            Ok(Response::SearchResults(response)) => {
                return Ok(Ok(answered(query, response, latency)));
            }
            Ok(Response::Error(e)) if RetryPolicy::retries(e.code) => match retry.delay(retries) {
                Some(delay) => {
                    retries += 1;
                    tokio::time::sleep(delay).await;
                }
                None => {
                    let message = format!("{} (gave up after {retries} retries)", e.message);
                    return Ok(Err((e.code.to_string(), message)));
                }
            },
            Ok(Response::Error(e)) => return Ok(Err((e.code.to_string(), e.message))),
            Ok(other) => {
                let message = format!("unexpected {} response", other.kind());
                return Ok(Err(("internal".into(), message)));
            }
            Err(e @ (ProtocolError::Decode(_) | ProtocolError::FrameTooLarge { .. }))
                if client.is_usable() =>
            {
                return Ok(Err(client_common::code_and_message(&e)));
            }
            Err(e) => return Err(client_common::plain(&e)),
        }
    }
}

fn answered(query: &EvalQuery, response: SearchResponse, latency: Duration) -> Answered {
    let mut seen = HashSet::new();
    let results = response
        .hits
        .into_iter()
        .map(|hit| hit.id)
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let branches = response.category.as_ref().map_or_else(Vec::new, |c| {
        c.branches
            .iter()
            .map(|(b, cat, _)| (b.clone(), cat.clone()))
            .collect()
    });
    Answered {
        branches,
        line: ResultLine {
            query: query.id.clone(),
            results,
            category: response.category.map(|c| c.category),
        },
        latency,
        timings: response.timings,
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writes the result lines (`{"query","results","category"}`), one per line.
pub fn write_results(path: &Path, lines: &[ResultLine]) -> anyhow::Result<()> {
    let fail = |e: std::io::Error| anyhow::anyhow!("cannot write {}: {e}", path.display());
    let file = std::fs::File::create(path).map_err(fail)?;
    let mut out = std::io::BufWriter::new(file);
    for line in lines {
        serde_json::to_writer(&mut out, line)?;
        out.write_all(b"\n").map_err(fail)?;
    }
    out.flush().map_err(fail)
}

fn fmt_ratio(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.4}"))
}

/// The readable report, trailing newline included.
pub fn render_report(dir: &Path, r: &EvalReport) -> String {
    let m = &r.metrics;
    let mut out = format!(
        "evalset {}: {} queries, k={}, concurrency {}\n",
        dir.display(),
        m.n,
        r.k,
        r.concurrency
    );
    if let Some(i) = &r.ingest {
        out.push_str(&format!(
            "ingest: {} items, {} ok, {} failed, {} retries; {:.1} s, {:.1} items/s\n",
            i.total, i.ok, i.failed, i.retries, i.elapsed_s, i.items_per_s
        ));
    }
    out.push_str(&format!(
        "answered {}, missing {} ({} failed)\n",
        m.answered, m.missing, r.failed
    ));
    for (name, value) in [
        ("recall@1", m.recall_at_1),
        ("recall@5", m.recall_at_5),
        ("recall@10", m.recall_at_10),
        ("MRR@10", m.mrr_at_10),
    ] {
        out.push_str(&format!("{name:<10} {}\n", fmt_ratio(value)));
    }
    out.push_str(&format!(
        "category top-1: {} of {} predicted, {} of all; top level: {} of predicted, {} of all\n",
        fmt_ratio(m.category_top1_predicted),
        m.with_category,
        fmt_ratio(m.category_top1_all),
        fmt_ratio(m.category_l1_top1_predicted),
        fmt_ratio(m.category_l1_top1_all),
    ));
    let ms = |x: Option<f64>| x.map_or_else(|| "n/a".to_owned(), |x| format!("{x:.2} ms"));
    out.push_str(&format!(
        "latency (client wall time): p50 {}, p99 {}, mean {}\n",
        ms(r.latency_ms.p50),
        ms(r.latency_ms.p99),
        ms(r.latency_ms.mean)
    ));
    if !r.server_timings_p50_ms.is_empty() {
        let stages: Vec<String> = r
            .server_timings_p50_ms
            .iter()
            .map(|(stage, p50)| format!("{stage} {p50:.2} ms"))
            .collect();
        out.push_str(&format!("server p50: {}\n", stages.join(", ")));
    }
    if !r.category_branches.is_empty() {
        let branches: Vec<String> = r
            .category_branches
            .iter()
            .map(|(b, acc)| format!("{b} {acc:.4}"))
            .collect();
        out.push_str(&format!("category by branch: {}\n", branches.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use vsa_protocol::{CategoryPrediction, ErrorCode, SearchHit, UpsertReply};

    use super::*;
    use crate::commands::client_fake::{FakeServer, TempDir};

    /// The synthetic evalset of the metrics tests: 12 items, 7 queries.
    const ITEMS: &str = r#"{"id": "i1", "image": "catalog/i1.jpg", "category": "a/x"}
{"id": "i2", "image": "catalog/i2.jpg", "category": "a/y"}
{"id": "i3", "image": "catalog/i3.jpg", "category": "b"}
{"id": "i4", "image": "catalog/i4.jpg", "category": "b/z"}
{"id": "i5", "image": "catalog/i5.jpg", "category": "a/x"}
{"id": "i6", "image": "catalog/i6.jpg", "category": "c"}
{"id": "i7", "image": "catalog/i7.jpg", "category": "c/w"}
{"id": "i8", "image": "catalog/i8.jpg", "category": "b"}
{"id": "i9", "image": "catalog/i9.jpg", "category": "b"}
{"id": "i10", "image": "catalog/i10.jpg", "category": "c"}
{"id": "i11", "image": "catalog/i11.jpg", "category": "c"}
{"id": "i12", "image": "catalog/i12.jpg", "category": "a/x"}
"#;
    const QUERIES: &str = r#"{"id": "q1", "image": "queries/q1.jpg", "target": "i1", "category": "a/x"}
{"id": "q2", "image": "queries/q2.jpg", "target": "i2", "category": "a/y"}
{"id": "q3", "image": "queries/q3.jpg", "target": "i3", "category": "b"}
{"id": "q4", "image": "queries/q4.jpg", "target": "i4", "category": "b/z"}
{"id": "q5", "image": "queries/q5.jpg", "target": "i5", "category": "a/x"}
{"id": "q6", "image": "queries/q6.jpg", "target": "i6", "category": "c"}
{"id": "q7", "image": "queries/q7.jpg", "target": "i7", "category": "c/w"}
"#;
    /// The answers (q5 missing): ranks 1, 3, 7, 11 (a miss), -, none, 5.
    const RESULTS: &str = r#"{"query": "q1", "results": ["i1", "i2", "i3"], "category": "a/x"}
{"query": "q2", "results": ["i5", "i6", "i2"], "category": "a/x"}
{"query": "q3", "results": ["i4", "i5", "i6", "i7", "i8", "i9", "i3"], "category": null}
{"query": "q4", "results": ["i1", "i2", "i3", "i5", "i6", "i7", "i8", "i9", "i10", "i11", "i4"], "category": "b/z"}
{"query": "q6", "results": [], "category": "b"}
{"query": "q7", "results": ["i8", "i9", "i10", "i11", "i7"], "category": "c"}
"#;
    /// `python3 shared/scripts/score.py --evalset . --results results.jsonl` on the three
    /// texts above, verbatim.
    const SCORE_PY: &str = r#"{
  "n": 7,
  "recall@1": 0.1429,
  "recall@5": 0.4286,
  "recall@10": 0.5714,
  "MRR@10": 0.2395,
  "category_top1_predicted": 0.4,
  "category_top1_all": 0.2857,
  "category_l1_top1_predicted": 0.8,
  "category_l1_top1_all": 0.5714,
  "with_category": 5,
  "answered": 6,
  "missing": 1
}"#;

    fn answers(text: &str) -> HashMap<String, ResultLine> {
        text.lines()
            .map(|l| serde_json::from_str::<ResultLine>(l).expect("result line"))
            .map(|r| (r.query.clone(), r))
            .collect()
    }

    #[test]
    fn metrics_match_score_py() {
        let evalset = parse_evalset(Path::new("/e"), ITEMS, QUERIES).expect("evalset");
        assert_eq!(evalset.queries.len(), 7);
        assert_eq!(evalset.queries[0].image, PathBuf::from("/e/queries/q1.jpg"));
        let m = metrics(&evalset.queries, &answers(RESULTS));
        assert_eq!(serde_json::to_string_pretty(&m).expect("json"), SCORE_PY);
    }

    #[test]
    fn metrics_round_half_even_and_null_without_predictions() {
        // 32 queries, one hit at rank 1, no category predictions; score.py prints 0.0312
        // (1/32 = 0.03125 exactly) and null for the per-prediction accuracies.
        let items: String = (0..32)
            .map(|i| format!("{{\"id\":\"t{i:02}\",\"image\":\"x\",\"category\":\"k\"}}\n"))
            .collect();
        let queries: String = (0..32)
            .map(|i| {
                format!("{{\"id\":\"q{i:02}\",\"image\":\"x\",\"target\":\"t{i:02}\",\"category\":\"k\"}}\n")
            })
            .collect();
        let evalset = parse_evalset(Path::new("."), &items, &queries).expect("evalset");
        let answers: HashMap<String, ResultLine> = (0..32)
            .map(|i| {
                let query = format!("q{i:02}");
                let results = if i == 0 {
                    vec!["t00".to_string()]
                } else {
                    vec![]
                };
                (
                    query.clone(),
                    ResultLine {
                        query,
                        results,
                        category: None,
                    },
                )
            })
            .collect();
        let m = metrics(&evalset.queries, &answers);
        let expected = r#"{
  "n": 32,
  "recall@1": 0.0312,
  "recall@5": 0.0312,
  "recall@10": 0.0312,
  "MRR@10": 0.0312,
  "category_top1_predicted": null,
  "category_top1_all": 0.0,
  "category_l1_top1_predicted": null,
  "category_l1_top1_all": 0.0,
  "with_category": 0,
  "answered": 32,
  "missing": 0
}"#;
        assert_eq!(serde_json::to_string_pretty(&m).expect("json"), expected);
        let empty = metrics(&[], &HashMap::new());
        assert_eq!((empty.n, empty.recall_at_10), (0, None));
    }

    #[test]
    fn evalset_checks() {
        let err = parse_evalset(
            Path::new("."),
            ITEMS,
            r#"{"id":"q","image":"x","target":"nope","category":"c"}"#,
        )
        .expect_err("unknown target");
        assert!(
            err.to_string()
                .contains("target nope is not in items.jsonl"),
            "{err}"
        );
        let twice =
            "{\"id\":\"q\",\"image\":\"x\",\"target\":\"i1\",\"category\":\"c\"}\n".repeat(2);
        assert!(parse_evalset(Path::new("."), ITEMS, &twice).is_err());
        assert!(parse_evalset(Path::new("."), "{\"id\":1}", "").is_err());
    }

    #[test]
    fn percentiles_and_rounding() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(round4(1.0 / 7.0), 0.1429);
        assert_eq!(round4(2.675), 2.675);
    }

    /// A fake server whose search answers are written in the query photo itself:
    /// `id,id,...|category` (an empty category means no prediction).
    /// The very first search is answered `busy` (it must be retried, not failed).
    fn scripted_server() -> crate::commands::client_fake::Handler {
        let busy_once = std::sync::atomic::AtomicBool::new(true);
        Arc::new(move |request| match request {
            Request::Upsert(up) => Response::Upserted(UpsertReply {
                id: up.id.clone(),
                seq: 1,
                replaced: false,
            }),
            Request::Search(search) => {
                let QueryInput::Image(bytes) = &search.query else {
                    return Response::error(ErrorCode::BadRequest, "images only");
                };
                if busy_once.swap(false, Ordering::SeqCst) {
                    return Response::error(ErrorCode::Busy, "queue full");
                }
                let text = String::from_utf8_lossy(bytes);
                let (ids, category) = text.split_once('|').unwrap_or((&text, ""));
                Response::SearchResults(SearchResponse {
                    query_id: 1,
                    hits: ids
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(|id| SearchHit {
                            id: id.to_owned(),
                            score: 1.0,
                            category: String::new(),
                            components: vec![],
                        })
                        .collect(),
                    category: (!category.is_empty()).then(|| CategoryPrediction {
                        category: category.to_owned(),
                        confidence: 1.0,
                        alternatives: vec![],
                        branches: vec![],
                    }),
                    roi: None,
                    timings: vec![("embed".into(), 2000), ("total".into(), 3000)],
                    degraded: false,
                    epoch: 1,
                    weights_version: 1,
                })
            }
            _ => Response::error(ErrorCode::BadRequest, "unexpected"),
        })
    }

    /// The synthetic evalset on disk, with query photos that script the answers of RESULTS
    /// (q5's photo is missing, so it fails and counts as missing).
    fn evalset_on_disk(dir: &TempDir) {
        dir.write("items.jsonl", ITEMS);
        dir.write("queries.jsonl", QUERIES);
        for i in 1..=12 {
            dir.write(&format!("catalog/i{i}.jpg"), "item");
        }
        for (query, line) in answers(RESULTS) {
            let script = format!(
                "{}|{}",
                line.results.join(","),
                line.category.unwrap_or_default()
            );
            dir.write(&format!("queries/{query}.jpg"), script);
        }
    }

    #[tokio::test]
    async fn evaluates_against_a_server() {
        let dir = TempDir::new("eval");
        evalset_on_disk(&dir);
        let server = FakeServer::start(1, scripted_server()).await;
        let evalset = load_evalset(dir.path()).expect("evalset");
        let settings = EvalSettings {
            concurrency: 3,
            ..EvalSettings::default()
        };
        let outcome = evaluate(
            &server.addr(),
            &ClientOptions::default(),
            &evalset,
            &settings,
        )
        .await
        .expect("evaluate");
        let report = &outcome.report;
        assert_eq!(
            serde_json::to_string_pretty(&report.metrics).expect("json"),
            SCORE_PY
        );
        assert_eq!(report.failed, 1);
        assert_eq!(report.ingest.as_ref().map(|i| i.ok), Some(12));
        assert_eq!(
            report.server_timings_p50_ms,
            vec![("embed".to_string(), 2.0), ("total".to_string(), 3.0)]
        );
        assert!(report.latency_ms.p50.is_some());
        // The --out lines are score.py's input: same answers, evalset order.
        assert_eq!(outcome.lines.len(), 6);
        assert_eq!(outcome.lines[0].query, "q1");
        let out = dir.path().join("results.jsonl");
        write_results(&out, &outcome.lines).expect("write");
        let written = std::fs::read_to_string(&out).expect("read");
        assert_eq!(answers(&written), answers(RESULTS));
        assert!(
            written.starts_with(r#"{"query":"q1","results":["i1","i2","i3"],"category":"a/x"}"#)
        );
        // The JSON report has score.py's keys first, then ours.
        let json = serde_json::to_value(report).expect("json");
        assert_eq!(json["MRR@10"], 0.2395);
        assert_eq!(json["server_timings_p50_ms"]["embed"], 2.0);
        assert_eq!(json["ingest"]["ok"], 12);
        let text = render_report(dir.path(), report);
        assert!(text.contains("recall@10  0.5714\n"), "{text}");
        assert!(
            text.contains("server p50: embed 2.00 ms, total 3.00 ms\n"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn no_ingest_and_min_recall_exit_code() {
        let dir = TempDir::new("eval2");
        evalset_on_disk(&dir);
        let server = FakeServer::start(1, scripted_server()).await;
        let out = dir.path().join("out.jsonl");
        let args = |min_recall10: f64| EvalArgs {
            conn: ConnArgs {
                addr: server.addr(),
                token: None,
            },
            evalset: dir.path().to_path_buf(),
            json: true,
            no_ingest: true,
            out: Some(out.clone()),
            k: 10,
            concurrency: 1,
            limit: Some(2),
            min_recall10: Some(min_recall10),
            preset: None,
            in_flight: 32,
        };
        let first = args(0.6);
        let code = tokio::task::spawn_blocking(move || run(first))
            .await
            .expect("join")
            .expect("run");
        // q1 hits, q2 hits at rank 3: recall@10 = 1.0 over the 2 queries run.
        assert_eq!(code, 0);
        // No upserts: a busy answer, its retry and one more search.
        assert_eq!(server.request_count(), 3);
        assert_eq!(
            std::fs::read_to_string(&out).expect("out").lines().count(),
            2
        );
        let second = args(1.01);
        let code = tokio::task::spawn_blocking(move || run(second))
            .await
            .expect("join")
            .expect("run");
        assert_eq!(code, 1);
    }
}
