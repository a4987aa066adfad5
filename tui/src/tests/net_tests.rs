//! The poller against a fake server on a real socket: connect, poll, lose the server, come
//! back.

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use vsa_protocol::{
    AdminAction, AdminReply, BlockingConnection, ErrorCode, HelloReply, PROTOCOL_VERSION, Request,
    Response,
};

use super::fixtures::*;
use crate::action::{Action, AdminWhat, Command, NetEvent};
use crate::net::{self, MAX_BACKOFF, NetConfig, next_backoff};

/// Serves one connection: Hello, telemetry, click stats, status; fault injection refused.
/// Answers at most `budget` requests, then hangs up.
fn serve(stream: TcpStream, uptime_ms: u64, budget: usize) {
    let mut conn = BlockingConnection::new(stream);
    let mut uptime = uptime_ms;
    for _ in 0..budget {
        let Ok(Some(request)) = conn.read_request() else {
            return;
        };
        let response = match request {
            Request::Hello(_) => Response::Hello(HelloReply {
                protocol_version: PROTOCOL_VERSION,
                server: "fake 1".into(),
            }),
            Request::Admin(admin) if admin.token != "secret" => {
                Response::error(ErrorCode::Unauthorized, "bad admin token")
            }
            Request::Admin(admin) => match admin.action {
                AdminAction::Telemetry { log_after } => {
                    uptime += 1000;
                    let mut t = telemetry(uptime, 100, 0);
                    t.log = (1..=3)
                        .filter(|&s| s > log_after)
                        .map(|s| log_line(s, "WARN", "w"))
                        .collect();
                    Response::Telemetry(Box::new(t))
                }
                AdminAction::ClickStats { .. } => Response::Admin(AdminReply {
                    message: "clicks".into(),
                    payload: Some(r#"{"clicks":1,"impressions":2,"top":[]}"#.into()),
                }),
                AdminAction::RebalanceStatus => Response::Admin(AdminReply {
                    message: "idle".into(),
                    payload: Some(
                        r#"{"state":"idle","plan_id":null,"progress":0,"message":""}"#.into(),
                    ),
                }),
                _ => Response::error(ErrorCode::BadRequest, "fault injection is disabled"),
            },
            _ => Response::error(ErrorCode::BadRequest, "not here"),
        };
        if conn.write_response(&response).is_err() {
            return;
        }
    }
}

fn wait_for(events: &Receiver<Action>, what: &str, f: impl Fn(&NetEvent) -> bool) -> NetEvent {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(Action::Net(e)) if f(&e) => return e,
            Ok(_) => {}
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

fn config(addr: String) -> NetConfig {
    let mut client = vsa_protocol::ClientOptions::named("vsa-tui test");
    client.admin_token = Some("secret".into());
    client.connect_timeout = Some(Duration::from_millis(500));
    client.request_timeout = Some(Duration::from_secs(2));
    NetConfig {
        addr,
        client,
        refresh: Duration::from_millis(50),
        clock: Instant::now(),
    }
}

#[test]
fn backoff_doubles_up_to_two_seconds() {
    let mut b = Duration::ZERO;
    let mut seen = Vec::new();
    for _ in 0..8 {
        b = next_backoff(b);
        seen.push(b.as_millis());
    }
    assert_eq!(seen, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
    assert!(b <= MAX_BACKOFF);
}

#[test]
fn polls_survive_a_server_restart_and_report_refusals() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        // Serve a little, then vanish (listener and connection both closed).
        serve(stream, 50_000, 40);
    });
    let (command_tx, command_rx) = crossbeam_channel::unbounded();
    let (event_tx, events) = crossbeam_channel::unbounded();
    net::spawn(config(addr.to_string()), command_rx, event_tx).expect("spawn");

    wait_for(
        &events,
        "connected",
        |e| matches!(e, NetEvent::Connected { server } if server == "fake 1"),
    );
    let NetEvent::Telemetry { telemetry, .. } = wait_for(&events, "telemetry", |e| {
        matches!(e, NetEvent::Telemetry { .. })
    }) else {
        unreachable!()
    };
    assert_eq!(
        telemetry.log.len(),
        3,
        "the first poll asks for the whole log"
    );
    let NetEvent::Telemetry { telemetry, .. } = wait_for(&events, "telemetry", |e| {
        matches!(e, NetEvent::Telemetry { .. })
    }) else {
        unreachable!()
    };
    assert_eq!(
        telemetry.log.len(),
        0,
        "later polls ask after the last seq seen"
    );
    wait_for(&events, "click stats", |e| {
        matches!(e, NetEvent::ClickStats { result: Ok(_), .. })
    });
    wait_for(&events, "status", |e| {
        matches!(e, NetEvent::RebalanceStatus(Ok(_)))
    });

    // A refusal is a value and keeps the connection.
    command_tx
        .send(Command::PanicActor("root".into()))
        .expect("send");
    let NetEvent::Admin { what, result } = wait_for(&events, "admin answer", |e| {
        matches!(e, NetEvent::Admin { .. })
    }) else {
        unreachable!()
    };
    assert_eq!(what, AdminWhat::Panic("root".into()));
    assert_eq!(
        result,
        Err("bad_request: fault injection is disabled".into())
    );

    // The server goes away: the poller says so and keeps trying.
    server.join().expect("server");
    wait_for(&events, "disconnected", |e| {
        matches!(e, NetEvent::Disconnected { .. })
    });

    // Back on the same port.
    let listener = TcpListener::bind(addr).expect("rebind");
    let server = thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        serve(stream, 1_000, usize::MAX);
    });
    wait_for(&events, "reconnected", |e| {
        matches!(e, NetEvent::Connected { .. })
    });
    // The restarted server's log starts over at seq 1: the poller asks for it all again.
    let NetEvent::Telemetry { telemetry, .. } = wait_for(
        &events,
        "telemetry after restart",
        |e| matches!(e, NetEvent::Telemetry { telemetry, .. } if telemetry.uptime_ms < 50_000),
    ) else {
        unreachable!()
    };
    assert_eq!(telemetry.log.len(), 3);
    drop(command_tx);
    drop(events);
    let _ = server;
}
