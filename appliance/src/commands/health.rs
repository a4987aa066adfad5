//! `vsa health`: a one-line health check for scripts and operators.
//!
//! Prints `vsa ADDR healthy (model ok, 4 shards ok, coordinator ok)` (a failing check shows
//! as `shards degraded: 3/4 shards answering`) and exits 0 healthy, 1 degraded, 2 down. An
//! unreachable server, a refused session or no answer within `--timeout-ms` prints
//! `cannot reach vsa at ADDR: ...` on stderr and exits 2.

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
}

/// Runs `vsa health`; returns 0 healthy, 1 degraded, 2 down or unreachable.
pub fn run(args: HealthArgs) -> anyhow::Result<i32> {
    let limit = Duration::from_millis(args.timeout_ms);
    let options = args.conn.options("health");
    let outcome = client_common::block_on(check(&args.conn.addr, options, limit))?;
    match outcome {
        Ok(reply) => {
            println!("{}", health_line(&args.conn.addr, &reply));
            Ok(exit_code(reply.state))
        }
        Err(line) => {
            eprintln!("{line}");
            Ok(2)
        }
    }
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
        };
        let code = tokio::task::spawn_blocking(move || run(args))
            .await
            .expect("join")
            .expect("run");
        assert_eq!(code, 2);
    }
}
