//! `vsa search`: search a running appliance with a photo (or an existing item) and print the
//! ranked hits as a table or as one JSON object.
//!
//! Table: `rank  id  score  category` (score with 4 decimals; a `components` column with
//! `--explain`), then the predicted category, the region searched and the stage timings.
//! JSON (`--json`): `{"query", "category", "results": [{"id","score","category"}], "roi",
//! "timings": {stage: µs}, "degraded", "query_id", "weights_version"}` (plus `"components"`
//! per hit with `--explain`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{ArgGroup, Args};
use serde::Serialize;
use vsa_protocol::{
    BoxXywh, FilterClause, QueryInput, SearchHit, SearchOptions, SearchRequest, SearchResponse,
};

use super::client_common::{self, ConnArgs, OrderedMap};

/// Arguments of `vsa search`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("query").required(true).args(["image", "item"])))]
pub struct SearchArgs {
    /// Server address and token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// The photo to search with (JPEG, PNG or WebP).
    pub image: Option<PathBuf>,
    /// Search with an item already in the catalogue instead of a photo.
    #[arg(long, value_name = "ID")]
    pub item: Option<String>,
    /// How many hits to return.
    #[arg(short, long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub k: u32,
    /// Search this category only (skips the server's category prediction).
    #[arg(long)]
    pub category: Option<String>,
    /// Attribute filter `key=v1,v2` (the item's key is one of the values); repeat for AND.
    #[arg(long = "where", value_name = "KEY=V1,V2", value_parser = parse_where)]
    pub filters: Vec<FilterClause>,
    /// Region of interest in the photo, in pixels: `x,y,w,h` (skips localisation).
    #[arg(long = "box", value_name = "X,Y,W,H", value_parser = parse_box)]
    pub roi: Option<BoxXywh>,
    /// A named server-side preset of weights and candidate counts.
    #[arg(long)]
    pub preset: Option<String>,
    /// Show each hit's score components.
    #[arg(long)]
    pub explain: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Write the photo with the searched region drawn on it (PNG) to this file.
    #[arg(long, value_name = "OUT.png")]
    pub show_roi: Option<PathBuf>,
}

/// Parses `--where key=v1,v2` into a clause (AND across clauses, OR within the values).
pub fn parse_where(text: &str) -> Result<FilterClause, String> {
    let (key, values) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?} is not key=v1,v2"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{text:?} has an empty key"));
    }
    let values: Vec<String> = values
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    if values.is_empty() {
        return Err(format!("{text:?} has no values"));
    }
    Ok(FilterClause {
        key: key.to_owned(),
        values,
    })
}

/// Parses `--box x,y,w,h` (non-negative integers, positive width and height).
pub fn parse_box(text: &str) -> Result<BoxXywh, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    let [x, y, w, h] = parts.as_slice() else {
        return Err(format!("{text:?} is not x,y,w,h"));
    };
    let num = |s: &str, name: &str| {
        s.parse::<u32>()
            .map_err(|_| format!("{name} {s:?} in {text:?} is not a non-negative integer"))
    };
    let roi = BoxXywh {
        x: num(x, "x")?,
        y: num(y, "y")?,
        w: num(w, "w")?,
        h: num(h, "h")?,
    };
    if roi.w == 0 || roi.h == 0 {
        return Err(format!("{text:?}: width and height must be positive"));
    }
    Ok(roi)
}

/// Builds the request the arguments describe (reads the photo).
pub fn build_request(args: &SearchArgs) -> anyhow::Result<SearchRequest> {
    let query = match (&args.image, &args.item) {
        (_, Some(id)) => QueryInput::ItemId(id.clone()),
        (Some(path), None) => QueryInput::Image(
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?,
        ),
        (None, None) => anyhow::bail!("give an IMAGE or --item ID"),
    };
    Ok(SearchRequest {
        query,
        k: args.k,
        category: args.category.clone(),
        filter: args.filters.clone(),
        options: SearchOptions {
            preset: args.preset.clone(),
            roi: args.roi,
            explain: args.explain,
            ..SearchOptions::default()
        },
    })
}

/// Runs `vsa search`; exit 0 (failures are errors, exit 1).
pub fn run(args: SearchArgs) -> anyhow::Result<i32> {
    let request = build_request(&args)?;
    let addr = args.conn.addr.clone();
    let options = args.conn.options("search");
    let (response, wall) = client_common::block_on(async move {
        let mut client = client_common::connect(&addr, options).await?;
        let started = Instant::now();
        let response = client
            .search(request)
            .await
            .map_err(|e| anyhow::anyhow!("search failed: {}", client_common::plain(&e)))?;
        anyhow::Ok((response, started.elapsed()))
    })??;
    let query = match (&args.item, &args.image) {
        (Some(id), _) => id.clone(),
        (None, Some(path)) => path.display().to_string(),
        (None, None) => String::new(),
    };
    if let (Some(out), Some(image)) = (&args.show_roi, &args.image) {
        draw_roi(image, response.roi, out)?;
    }
    if args.json {
        println!("{}", render_json(&query, &response, args.explain)?);
    } else {
        print!("{}", render_table(&response, args.explain, Some(wall)));
    }
    Ok(0)
}

/// Draws `roi` (if any) as a 3-pixel red frame on the photo and writes it as PNG.
pub fn draw_roi(
    image: &std::path::Path,
    roi: Option<BoxXywh>,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(image)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", image.display()))?;
    let mut img = vsa_models::decode_rgb(&bytes, &vsa_models::DecodeLimits::default())
        .map_err(|e| anyhow::anyhow!("cannot decode {}: {e}", image.display()))?;
    if let Some(b) = roi {
        let (w, h) = img.dimensions();
        let red = vsa_models::image::Rgb([255u8, 0, 0]);
        let (x0, y0) = (b.x.min(w.saturating_sub(1)), b.y.min(h.saturating_sub(1)));
        let (x1, y1) = ((b.x + b.w).min(w), (b.y + b.h).min(h));
        for y in y0..y1 {
            for x in x0..x1 {
                let edge = x < x0 + 3 || x + 3 >= x1 || y < y0 + 3 || y + 3 >= y1;
                if edge {
                    img.put_pixel(x, y, red);
                }
            }
        }
    }
    img.save_with_format(out, vsa_models::image::ImageFormat::Png)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    Ok(())
}

#[derive(Serialize)]
struct JsonHit<'a> {
    id: &'a str,
    score: f32,
    category: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    components: Option<OrderedMap<'a, f32>>,
}

#[derive(Serialize)]
struct JsonOutput<'a> {
    query: &'a str,
    category: Option<&'a str>,
    results: Vec<JsonHit<'a>>,
    roi: Option<[u32; 4]>,
    timings: OrderedMap<'a, u64>,
    degraded: bool,
    query_id: u64,
    weights_version: u64,
}

/// The `--json` output: one line.
pub fn render_json(
    query: &str,
    response: &SearchResponse,
    explain: bool,
) -> anyhow::Result<String> {
    let output = JsonOutput {
        query,
        category: response.category.as_ref().map(|c| c.category.as_str()),
        results: response
            .hits
            .iter()
            .map(|hit| JsonHit {
                id: &hit.id,
                score: hit.score,
                category: &hit.category,
                components: explain.then_some(OrderedMap(&hit.components)),
            })
            .collect(),
        roi: response.roi.map(|b| [b.x, b.y, b.w, b.h]),
        timings: OrderedMap(&response.timings),
        degraded: response.degraded,
        query_id: response.query_id,
        weights_version: response.weights_version,
    };
    Ok(serde_json::to_string(&output)?)
}

fn components_text(hit: &SearchHit) -> String {
    hit.components
        .iter()
        .map(|(name, value)| format!("{name}={value:.4}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The table output, trailing newline included; `wall` is the client-side time of the call.
pub fn render_table(response: &SearchResponse, explain: bool, wall: Option<Duration>) -> String {
    let mut out = String::new();
    if response.hits.is_empty() {
        out.push_str("no results\n");
    } else {
        let id_w = response
            .hits
            .iter()
            .map(|h| h.id.chars().count())
            .max()
            .unwrap_or(0)
            .max(2);
        let cat_w = response
            .hits
            .iter()
            .map(|h| h.category.chars().count())
            .max()
            .unwrap_or(0)
            .max(8);
        let header = format!(
            "{:>4}  {:<id_w$}  {:>7}  {:<cat_w$}",
            "rank", "id", "score", "category"
        );
        let header = if explain {
            format!("{header}  components")
        } else {
            header
        };
        out.push_str(header.trim_end());
        out.push('\n');
        for (rank, hit) in response.hits.iter().enumerate() {
            let row = format!(
                "{:>4}  {:<id_w$}  {:>7.4}  {:<cat_w$}",
                rank + 1,
                hit.id,
                hit.score,
                hit.category
            );
            let row = if explain {
                format!("{row}  {}", components_text(hit))
            } else {
                row
            };
            out.push_str(row.trim_end());
            out.push('\n');
        }
    }
    match &response.category {
        Some(prediction) => {
            let mut line = format!(
                "category: {} ({:.2})",
                prediction.category, prediction.confidence
            );
            if !prediction.alternatives.is_empty() {
                let alternatives: Vec<String> = prediction
                    .alternatives
                    .iter()
                    .map(|(c, p)| format!("{c} {p:.2}"))
                    .collect();
                line.push_str(&format!("; then {}", alternatives.join(", ")));
            }
            out.push_str(&line);
            out.push('\n');
        }
        None => out.push_str("category: none predicted\n"),
    }
    if let Some(roi) = response.roi {
        out.push_str(&format!("roi: {},{},{},{}\n", roi.x, roi.y, roi.w, roi.h));
    }
    let mut timings: Vec<String> = response
        .timings
        .iter()
        .map(|(stage, us)| format!("{stage} {}", client_common::fmt_ms(*us)))
        .collect();
    if let Some(wall) = wall {
        let us = u64::try_from(wall.as_micros()).unwrap_or(u64::MAX);
        timings.push(format!("client {}", client_common::fmt_ms(us)));
    }
    if !timings.is_empty() {
        out.push_str(&format!("timings: {}\n", timings.join(", ")));
    }
    if response.degraded {
        out.push_str("degraded: some partitions did not answer; results may be incomplete\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use clap::Parser;
    use vsa_protocol::{CategoryPrediction, ErrorCode, Request, Response};

    use super::*;
    use crate::commands::client_fake::{FakeServer, TempDir};

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        search: SearchArgs,
    }

    fn parse(args: &[&str]) -> Result<SearchArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("search").chain(args.iter().copied()))
            .map(|cli| cli.search)
    }

    #[test]
    fn where_clauses() {
        assert_eq!(
            parse_where("colour=red, blue,,").expect("valid"),
            FilterClause {
                key: "colour".into(),
                values: vec!["red".into(), "blue".into()]
            }
        );
        assert_eq!(
            parse_where(" size = m ").expect("valid"),
            FilterClause {
                key: "size".into(),
                values: vec!["m".into()]
            }
        );
        for bad in ["colour", "=red", "colour=", "colour= , "] {
            assert!(parse_where(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn boxes() {
        assert_eq!(
            parse_box("10, 20,30,40").expect("valid"),
            BoxXywh {
                x: 10,
                y: 20,
                w: 30,
                h: 40
            }
        );
        for bad in ["1,2,3", "1,2,3,4,5", "a,2,3,4", "-1,2,3,4", "1,2,0,4", ""] {
            assert!(parse_box(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line() {
        let args = parse(&[
            "photo.jpg",
            "-k",
            "5",
            "--where",
            "colour=red,blue",
            "--where",
            "size=m",
            "--box",
            "1,2,3,4",
            "--preset",
            "fast",
            "--explain",
            "--json",
            "--addr",
            "h:1",
            "--category",
            "food",
        ])
        .expect("valid");
        assert_eq!(args.image, Some(PathBuf::from("photo.jpg")));
        assert_eq!(args.k, 5);
        assert_eq!(args.filters.len(), 2);
        assert_eq!(args.filters[1].key, "size");
        assert_eq!(args.roi.map(|b| b.w), Some(3));
        assert_eq!(args.conn.addr, "h:1");
        assert!(args.explain && args.json);

        let by_item = parse(&["--item", "abc"]).expect("valid");
        assert_eq!(by_item.item.as_deref(), Some("abc"));
        assert_eq!(by_item.k, 10);
        let request = build_request(&by_item).expect("request");
        assert_eq!(request.query, QueryInput::ItemId("abc".into()));

        assert!(parse(&[]).is_err(), "a query is required");
        assert!(
            parse(&["p.jpg", "--item", "abc"]).is_err(),
            "one query only"
        );
        assert!(parse(&["p.jpg", "-k", "0"]).is_err());
        assert!(parse(&["p.jpg", "--where", "nokey"]).is_err());
        assert!(parse(&["p.jpg", "--box", "1,2"]).is_err());
    }

    fn response() -> SearchResponse {
        SearchResponse {
            query_id: 9,
            hits: vec![
                SearchHit {
                    id: "a283271a3354".into(),
                    score: 0.81234,
                    category: "animals".into(),
                    components: vec![("hamming".into(), 12.0), ("rerank".into(), 0.8)],
                },
                SearchHit {
                    id: "b2".into(),
                    score: 0.5,
                    category: "food/fruit".into(),
                    components: vec![],
                },
            ],
            category: Some(CategoryPrediction {
                category: "animals".into(),
                confidence: 0.875,
                alternatives: vec![("food/fruit".into(), 0.1)],
                branches: vec![],
            }),
            roi: Some(BoxXywh {
                x: 1,
                y: 2,
                w: 30,
                h: 40,
            }),
            timings: vec![("embed".into(), 5300), ("search".into(), 410)],
            degraded: true,
            epoch: 1,
            weights_version: 1,
        }
    }

    #[test]
    fn table_output() {
        let text = render_table(&response(), true, None);
        let expected = "\
rank  id              score  category    components
   1  a283271a3354   0.8123  animals     hamming=12.0000 rerank=0.8000
   2  b2             0.5000  food/fruit
category: animals (0.88); then food/fruit 0.10
roi: 1,2,30,40
timings: embed 5.30 ms, search 0.41 ms
degraded: some partitions did not answer; results may be incomplete
";
        assert_eq!(text, expected);
        let empty = SearchResponse {
            hits: vec![],
            category: None,
            roi: None,
            timings: vec![],
            degraded: false,
            ..response()
        };
        assert_eq!(
            render_table(&empty, false, None),
            "no results\ncategory: none predicted\n"
        );
    }

    #[test]
    fn json_output() {
        let text = render_json("q.jpg", &response(), false).expect("json");
        assert_eq!(
            text,
            r#"{"query":"q.jpg","category":"animals","results":[{"id":"a283271a3354","score":0.81234,"category":"animals"},{"id":"b2","score":0.5,"category":"food/fruit"}],"roi":[1,2,30,40],"timings":{"embed":5300,"search":410},"degraded":true,"query_id":9,"weights_version":1}"#
        );
        let explained = render_json("q.jpg", &response(), true).expect("json");
        assert!(
            explained.contains(r#""components":{"hamming":12.0,"rerank":0.8}"#),
            "{explained}"
        );
        let none = SearchResponse {
            category: None,
            roi: None,
            ..response()
        };
        let text = render_json("q.jpg", &none, false).expect("json");
        assert!(text.contains(r#""category":null"#) && text.contains(r#""roi":null"#));
    }

    #[tokio::test]
    async fn sends_what_the_flags_say() {
        let dir = TempDir::new("search");
        let photo = dir.write("q.jpg", "jpeg bytes");
        let server = FakeServer::start(
            1,
            Arc::new(|request| match request {
                Request::Search(_) => Response::SearchResults(response()),
                _ => Response::error(ErrorCode::BadRequest, "search only"),
            }),
        )
        .await;
        let photo_arg = photo.display().to_string();
        let addr = server.addr();
        let args = parse(&[
            &photo_arg, "--addr", &addr, "--where", "k=v", "--box", "1,2,3,4", "--json",
        ])
        .expect("valid");
        // `run` builds its own runtime, so call it off this one.
        let code = tokio::task::spawn_blocking(move || run(args))
            .await
            .expect("join")
            .expect("run");
        assert_eq!(code, 0);
        let requests = server.requests.lock().expect("lock");
        let Some(Request::Search(sent)) = requests.first() else {
            panic!("no search received");
        };
        assert_eq!(sent.query, QueryInput::Image(b"jpeg bytes".to_vec()));
        assert_eq!(sent.k, 10);
        assert_eq!(sent.filter[0].values, vec!["v".to_string()]);
        assert_eq!(sent.options.roi.map(|b| b.x), Some(1));
    }
}
