//! `vsa health`: a one-line health check for scripts and operators.
//!
//! Prints `vsa ADDR healthy (model ok, 4 shards ok, coordinator ok)` (a failing check shows
//! as `shards degraded: 3/4 shards answering`) and exits 0 healthy, 1 degraded, 2 down. An
//! unreachable server, a refused session or no answer within `--timeout-ms` prints
//! `cannot reach vsa at ADDR: ...` on stderr and exits 2.
//!
//! Nagios-style latency thresholds: `--warn-p99 MS` / `--crit-p99 MS` compare the p99 of
//! searches over the server's recent window (about the last minute) and raise the state to
//! degraded (exit 1, WARNING) or down (exit 2, CRITICAL); the line then ends with performance
//! data, `| search_p99_ms=12.3;50;200`. `--json` prints one JSON object instead of the line.

use std::time::Duration;

use clap::Args;
use vsa_protocol::{ClientOptions, HealthReply, HealthState};

use super::client_common::{self, ConnArgs};

/// Arguments of `vsa health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Server address and token.
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Give up (exit 2) when connecting and answering take longer than this.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// Degraded (exit 1) when the recent search p99 is above this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub warn_p99: Option<f64>,
    /// Down (exit 2) when the recent search p99 is above this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub crit_p99: Option<f64>,
    /// One JSON object: addr, state, exit, checks, search p99 and its window.
    #[arg(long)]
    pub json: bool,
}

/// The recent search latency a threshold check looked at.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// p99 of searches in the window (`None`: no search in it).
    pub p99_ms: Option<f64>,
    /// Searches in the window.
    pub searches: u64,
    /// The window's length in seconds.
    pub window_s: f64,
}

/// The state after the latency thresholds, and the sentence that says why it changed.
pub fn with_thresholds(
    state: HealthState,
    latency: &Latency,
    warn: Option<f64>,
    crit: Option<f64>,
) -> (HealthState, Option<String>) {
    let Some(p99) = latency.p99_ms else {
        return (state, None);
    };
    if crit.is_some_and(|c| p99 > c) {
        return (
            state.max(HealthState::Down),
            Some(format!(
                "search p99 {p99:.1} ms above the critical {} ms",
                crit.unwrap_or(0.0)
            )),
        );
    }
    if warn.is_some_and(|w| p99 > w) {
        return (
            state.max(HealthState::Degraded),
            Some(format!(
                "search p99 {p99:.1} ms above the warning {} ms",
                warn.unwrap_or(0.0)
            )),
        );
    }
    (state, None)
}

fn perfdata(latency: &Latency, warn: Option<f64>, crit: Option<f64>) -> String {
    let num = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v}"));
    let p99 = latency
        .p99_ms
        .map_or("U".to_string(), |v| format!("{v:.1}"));
    format!("search_p99_ms={p99};{};{}", num(warn), num(crit))
}

/// Runs `vsa health`; returns 0 healthy, 1 degraded, 2 down or unreachable.
pub fn run(args: HealthArgs) -> anyhow::Result<i32> {
    let limit = Duration::from_millis(args.timeout_ms);
    let options = args.conn.options("health");
    let thresholds = args.warn_p99.is_some() || args.crit_p99.is_some();
    let addr = args.conn.addr.clone();
    let outcome = client_common::block_on(async move {
        let reply = check(&addr, options.clone(), limit).await?;
        let latency = if thresholds {
            Some(recent_latency(&addr, options, limit).await?)
        } else {
            None
        };
        Ok::<_, String>((reply, latency))
    })?;
    let addr = &args.conn.addr;
    match outcome {
        Ok((reply, latency)) => {
            let (state, why) = match &latency {
                Some(l) => with_thresholds(reply.state, l, args.warn_p99, args.crit_p99),
                None => (reply.state, None),
            };
            if args.json {
                let checks: Vec<_> = reply
                    .checks
                    .iter()
                    .map(|(n, s, d)| serde_json::json!({"name": n, "state": state_word(*s), "detail": d}))
                    .collect();
                let out = serde_json::json!({
                    "addr": addr,
                    "state": state_word(state),
                    "exit": exit_code(state),
                    "checks": checks,
                    "latency": latency.map(|l| serde_json::json!({
                        "search_p99_ms": l.p99_ms, "searches": l.searches, "window_s": l.window_s,
                        "warn_p99_ms": args.warn_p99, "crit_p99_ms": args.crit_p99,
                    })),
                    "reason": why,
                });
                println!("{out}");
            } else {
                let mut line = health_line(addr, &HealthReply { state, ..reply });
                if let Some(w) = &why {
                    line.push_str(&format!("; {w}"));
                }
                if let Some(l) = &latency {
                    line.push_str(&format!(" | {}", perfdata(l, args.warn_p99, args.crit_p99)));
                }
                println!("{line}");
            }
            Ok(exit_code(state))
        }
        Err(line) => {
            if args.json {
                let out =
                    serde_json::json!({"addr": addr, "state": "down", "exit": 2, "error": line});
                println!("{out}");
            } else {
                eprintln!("{line}");
            }
            Ok(2)
        }
    }
}

/// The p99 of searches over the server's recent window (`Request::Metrics`).
pub async fn recent_latency(
    addr: &str,
    mut options: ClientOptions,
    limit: Duration,
) -> Result<Latency, String> {
    options.connect_timeout = Some(limit);
    options.request_timeout = Some(limit);
    let ask = async {
        let mut client = client_common::connect(addr, options).await?;
        client.metrics().await.map_err(|e| {
            anyhow::anyhow!(
                "vsa at {addr} did not report its metrics: {}",
                client_common::plain(&e)
            )
        })
    };
    let t = match tokio::time::timeout(limit, ask).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(_) => {
            return Err(format!(
                "cannot reach vsa at {addr}: no answer within {} ms",
                limit.as_millis()
            ));
        }
    };
    let search = t.recent_requests.iter().find(|r| r.kind == "search");
    Ok(Latency {
        p99_ms: search
            .and_then(|s| s.latency.quantile(0.99))
            .map(|us| us as f64 / 1000.0),
        searches: search.map_or(0, |s| s.count),
        window_s: if t.recent_window_ms == 0 {
            t.uptime_ms as f64 / 1000.0
        } else {
            t.recent_window_ms as f64 / 1000.0
        },
    })
}

/// Asks the server at `addr` for its health within `limit` (connect, handshake and answer
/// together). `Err` is the one-line reason it could not be asked.
pub async fn check(
    addr: &str,
    mut options: ClientOptions,
    limit: Duration,
) -> Result<HealthReply, String> {
    options.connect_timeout = Some(limit);
    options.request_timeout = Some(limit);
    let ask = async {
        let mut client = client_common::connect(addr, options).await?;
        client.health().await.map_err(|e| {
            anyhow::anyhow!(
                "vsa at {addr} did not report its health: {}",
                client_common::plain(&e)
            )
        })
    };
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "cannot reach vsa at {addr}: no answer within {} ms",
            limit.as_millis()
        )),
    }
}

/// The exit code of a state: 0 healthy, 1 degraded, 2 down.
pub fn exit_code(state: HealthState) -> i32 {
    match state {
        HealthState::Healthy => 0,
        HealthState::Degraded => 1,
        HealthState::Down => 2,
    }
}

/// The word for a state.
pub fn state_word(state: HealthState) -> &'static str {
    match state {
        HealthState::Healthy => "healthy",
        HealthState::Degraded => "degraded",
        HealthState::Down => "down",
    }
}

/// `vsa ADDR STATE (check, check, ...)`: a healthy check reads as its detail when that
/// already says `ok` (`4 shards ok`), else as `NAME ok`; any other as `NAME STATE: DETAIL`.
pub fn health_line(addr: &str, reply: &HealthReply) -> String {
    let checks: Vec<String> = reply
        .checks
        .iter()
        .map(|(name, state, detail)| match state {
            HealthState::Healthy if detail == "ok" || detail.ends_with(" ok") => {
                if detail == "ok" {
                    format!("{name} ok")
                } else {
                    detail.clone()
                }
            }
            HealthState::Healthy => format!("{name} ok"),
            other if detail.is_empty() => format!("{name} {}", state_word(*other)),
            other => format!("{name} {}: {detail}", state_word(*other)),
        })
        .collect();
    let mut line = format!("vsa {addr} {}", state_word(reply.state));
    if !checks.is_empty() {
        line.push_str(&format!(" ({})", checks.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vsa_protocol::{ErrorCode, Request, Response};

    use super::*;
    use crate::commands::client_fake::{FakeServer, dead_addr};

    fn reply(state: HealthState, checks: &[(&str, HealthState, &str)]) -> HealthReply {
        HealthReply {
            state,
            checks: checks
                .iter()
                .map(|(n, s, d)| (n.to_string(), *s, d.to_string()))
                .collect(),
        }
    }

    #[test]
    fn lines() {
        use HealthState::*;
        let healthy = reply(
            Healthy,
            &[
                ("model", Healthy, "4 workers"),
                ("shards", Healthy, "4 shards ok"),
                ("coordinator", Healthy, "ok"),
            ],
        );
        assert_eq!(
            health_line("127.0.0.1:7878", &healthy),
            "vsa 127.0.0.1:7878 healthy (model ok, 4 shards ok, coordinator ok)"
        );
        let degraded = reply(
            Degraded,
            &[
                ("model", Down, "no model worker alive"),
                ("shards", Degraded, "3/4 shards answering"),
                ("x", Degraded, ""),
            ],
        );
        assert_eq!(
            health_line("h:1", &degraded),
            "vsa h:1 degraded (model down: no model worker alive, shards degraded: 3/4 shards answering, x degraded)"
        );
        assert_eq!(health_line("h:1", &reply(Down, &[])), "vsa h:1 down");
    }

    #[test]
    fn thresholds_raise_the_state() {
        use HealthState::*;
        let l = |p99: Option<f64>| Latency {
            p99_ms: p99,
            searches: 10,
            window_s: 60.0,
        };
        let (w, c) = (Some(50.0), Some(200.0));
        assert_eq!(with_thresholds(Healthy, &l(Some(20.0)), w, c).0, Healthy);
        let (s, why) = with_thresholds(Healthy, &l(Some(80.0)), w, c);
        assert_eq!(s, Degraded);
        assert!(why.unwrap().contains("warning 50 ms"));
        assert_eq!(with_thresholds(Healthy, &l(Some(250.0)), w, c).0, Down);
        assert_eq!(
            with_thresholds(Down, &l(Some(80.0)), w, c).0,
            Down,
            "never better"
        );
        assert_eq!(
            with_thresholds(Degraded, &l(None), w, c).0,
            Degraded,
            "no searches"
        );
        assert_eq!(perfdata(&l(Some(12.34)), w, None), "search_p99_ms=12.3;50;");
        assert_eq!(perfdata(&l(None), w, c), "search_p99_ms=U;50;200");
    }

    async fn code_for(state: HealthState) -> i32 {
        let server = FakeServer::start(
            1,
            Arc::new(move |request| match request {
                Request::Health => Response::Health(reply(state, &[("model", state, "detail")])),
                _ => Response::error(ErrorCode::BadRequest, "health only"),
            }),
        )
        .await;
        let outcome = check(
            &server.addr(),
            ClientOptions::default(),
            Duration::from_secs(5),
        )
        .await;
        exit_code(outcome.expect("reachable").state)
    }

    #[tokio::test]
    async fn exit_codes_follow_the_state() {
        assert_eq!(code_for(HealthState::Healthy).await, 0);
        assert_eq!(code_for(HealthState::Degraded).await, 1);
        assert_eq!(code_for(HealthState::Down).await, 2);
    }

    #[tokio::test]
    async fn unreachable_and_silent_servers_are_down() {
        let addr = dead_addr().await;
        let err = check(&addr, ClientOptions::default(), Duration::from_secs(2))
            .await
            .expect_err("nobody listens");
        assert!(
            err.starts_with(&format!("cannot reach vsa at {addr}: ")),
            "{err}"
        );

        // Accepts but never answers the Hello.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let silent = listener.local_addr().expect("addr").to_string();
        let hold = tokio::spawn(async move {
            let held = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(held);
        });
        let err = check(
            &silent,
            ClientOptions::default(),
            Duration::from_millis(200),
        )
        .await
        .expect_err("silent");
        assert!(
            err.starts_with(&format!("cannot reach vsa at {silent}: ")),
            "{err}"
        );
        hold.abort();

        // The whole command: exit 2, no error.
        let args = HealthArgs {
            conn: ConnArgs { addr, token: None },
            timeout_ms: 500,
            warn_p99: None,
            crit_p99: None,
            json: false,
        };
        let code = tokio::task::spawn_blocking(move || run(args))
            .await
            .expect("join")
            .expect("run");
        assert_eq!(code, 2);
    }
}
