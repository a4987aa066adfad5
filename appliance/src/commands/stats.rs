//! `vsa stats`: the server's counters, readable or as JSON (the protocol's `StatsReply`
//! serialized with serde, field names as in `vsa_protocol::StatsReply`).

use clap::Args;
use vsa_protocol::StatsReply;

use super::client_common::{self, ConnArgs, fmt_bytes, fmt_uptime};

/// Arguments of `vsa stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Server address and token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Print the statistics as one pretty-printed JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Runs `vsa stats`; exit 0 (failures are errors, exit 1).
pub fn run(args: StatsArgs) -> anyhow::Result<i32> {
    let addr = args.conn.addr.clone();
    let options = args.conn.options("stats");
    let reply = client_common::block_on(async {
        let mut client = client_common::connect(&addr, options).await?;
        client.stats().await.map_err(|e| {
            anyhow::anyhow!(
                "stats from vsa at {addr} failed: {}",
                client_common::plain(&e)
            )
        })
    })??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        print!("{}", render(&addr, &reply));
    }
    Ok(0)
}

/// The readable report, trailing newline included.
pub fn render(addr: &str, s: &StatsReply) -> String {
    let i = &s.inference;
    let mut out = format!(
        "vsa {addr}: {} items, epoch {}, uptime {}, {:.1} qps, {} restarts\n",
        s.items,
        s.epoch,
        fmt_uptime(s.uptime_ms),
        s.qps,
        s.restarts
    );
    out.push_str(&format!(
        "inference: {} workers, queue {}/{}, {} batches, {} images, {} busy rejections\n",
        i.workers, i.queue_depth, i.queue_capacity, i.batches, i.images, i.busy_rejections
    ));
    if s.shards.is_empty() {
        out.push_str("no shards\n");
        return out;
    }
    let rows: Vec<[String; 6]> = s
        .shards
        .iter()
        .map(|sh| {
            [
                sh.name.clone(),
                sh.category.clone(),
                sh.items.to_string(),
                fmt_bytes(sh.memory_bytes),
                sh.queue_depth.to_string(),
                sh.searches.to_string(),
            ]
        })
        .collect();
    let header = ["shard", "category", "items", "memory", "queue", "searches"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let text = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(col, (cell, w))| {
                // Text left, numbers right.
                if col < 2 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ");
        format!("{}\n", text.trim_end())
    };
    out.push_str(&line(header));
    for row in &rows {
        out.push_str(&line([
            &row[0], &row[1], &row[2], &row[3], &row[4], &row[5],
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vsa_protocol::{ErrorCode, InferenceStats, Request, Response, ShardStats};

    use super::*;
    use crate::commands::client_fake::FakeServer;

    fn sample() -> StatsReply {
        StatsReply {
            items: 1024,
            shards: vec![
                ShardStats {
                    name: "animals-0".into(),
                    category: "animals".into(),
                    items: 14,
                    memory_bytes: 12_595,
                    queue_depth: 0,
                    searches: 10,
                },
                ShardStats {
                    name: "food/fruit-0".into(),
                    category: "food/fruit".into(),
                    items: 1010,
                    memory_bytes: 3 * 1024 * 1024,
                    queue_depth: 2,
                    searches: 1234,
                },
            ],
            inference: InferenceStats {
                workers: 4,
                queue_depth: 1,
                queue_capacity: 256,
                batches: 123,
                images: 1500,
                busy_rejections: 3,
            },
            restarts: 1,
            qps: 12.34,
            uptime_ms: 3_723_000,
            epoch: 3,
        }
    }

    #[test]
    fn readable() {
        let expected = "\
vsa h:1: 1024 items, epoch 3, uptime 1h 02m 03s, 12.3 qps, 1 restarts
inference: 4 workers, queue 1/256, 123 batches, 1500 images, 3 busy rejections
shard         category    items    memory  queue  searches
animals-0     animals        14  12.3 KiB      0        10
food/fruit-0  food/fruit   1010   3.0 MiB      2      1234
";
        assert_eq!(render("h:1", &sample()), expected);
    }

    #[test]
    fn json_round_trips() {
        let text = serde_json::to_string_pretty(&sample()).expect("json");
        let value: serde_json::Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(value["items"], 1024);
        assert_eq!(value["shards"][1]["searches"], 1234);
        assert_eq!(value["inference"]["busy_rejections"], 3);
    }

    #[tokio::test]
    async fn asks_for_stats() {
        let server = FakeServer::start(
            1,
            Arc::new(|request| match request {
                Request::Stats => Response::Stats(sample()),
                _ => Response::error(ErrorCode::BadRequest, "stats only"),
            }),
        )
        .await;
        let args = StatsArgs {
            conn: ConnArgs {
                addr: server.addr(),
                token: None,
            },
            json: true,
        };
        let code = tokio::task::spawn_blocking(move || run(args))
            .await
            .expect("join")
            .expect("run");
        assert_eq!(code, 0);
        assert_eq!(server.request_count(), 1);
    }
}
