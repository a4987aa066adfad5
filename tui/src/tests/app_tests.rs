use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use vsa_protocol::AdminReply;

use super::fixtures::*;
use crate::action::{Action, AdminWhat, Command, NetEvent};
use crate::app::{App, Conn, Dialog, SEARCH_K, Tab};

fn reply(message: &str, payload: Option<&str>) -> AdminReply {
    AdminReply {
        message: message.into(),
        payload: payload.map(Into::into),
    }
}

#[test]
fn number_keys_and_tab_switch_screens() {
    let mut app = App::new("x:1");
    app.update(ch('3'));
    assert_eq!(app.tab, Tab::Partitions);
    app.update(key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::Inference);
    app.update(ch('7'));
    app.update(key(KeyCode::Tab));
    assert_eq!(app.tab, Tab::Overview, "Tab wraps");
    app.update(key(KeyCode::BackTab));
    assert_eq!(app.tab, Tab::Log, "Shift-Tab wraps back");
    app.update(ch('?'));
    assert!(app.help);
    app.update(ch('1'));
    assert_eq!(
        app.tab,
        Tab::Log,
        "keys other than ?/Esc/q are swallowed by the help"
    );
    app.update(ch('?'));
    assert!(!app.help);
    app.update(ch('q'));
    assert!(app.quit);
}

#[test]
fn ctrl_c_quits_even_while_typing() {
    let mut app = App::new("x:1");
    app.update(ch('6'));
    assert!(app.search.editing);
    app.update(ch('q'));
    assert!(!app.quit, "q is text in the path input");
    assert_eq!(app.search.input, "q");
    app.update(Action::Key(KeyEvent::new(
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    )));
    assert!(app.quit);
}

#[test]
fn apply_asks_first_and_only_y_sends() {
    let mut app = connected_app();
    app.update(ch('3'));
    app.update(ch('a'));
    assert_eq!(app.dialog, None, "no plan yet");
    assert!(app.status.as_ref().is_some_and(|s| s.error));
    app.update(ch('p'));
    assert_eq!(app.take_commands(), vec![Command::Plan]);
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Plan,
        result: Ok(reply(
            "plan 7",
            Some(r#"{"plan_id":7,"steps":[{"kind":"split","category":"shoes"}],"reason":"r"}"#),
        )),
    }));
    assert_eq!(app.plan.as_ref().map(|p| p.plan_id), Some(7));
    app.update(ch('a'));
    assert_eq!(app.dialog, Some(Dialog::Apply(7)));
    app.update(ch('x'));
    assert_eq!(
        app.dialog,
        Some(Dialog::Apply(7)),
        "other keys leave it open"
    );
    app.update(ch('n'));
    assert_eq!(app.dialog, None);
    assert_eq!(app.take_commands(), vec![]);
    app.update(ch('a'));
    app.update(ch('y'));
    assert_eq!(app.take_commands(), vec![Command::Apply(7)]);
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Apply(7),
        result: Ok(reply("applying plan 7 (2 steps)", None)),
    }));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("applying plan 7 (2 steps)")
    );
    app.update(ch('c'));
    assert_eq!(app.take_commands(), vec![Command::Cancel]);
}

#[test]
fn server_refusals_become_status_errors() {
    let mut app = connected_app();
    app.update(ch('2'));
    app.update(key(KeyCode::Down));
    app.update(ch('F'));
    assert_eq!(app.dialog, Some(Dialog::Panic("inference-pool".into())));
    app.update(ch('y'));
    assert_eq!(
        app.take_commands(),
        vec![Command::PanicActor("inference-pool".into())]
    );
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Panic("inference-pool".into()),
        result: Err("bad_request: fault injection is disabled".into()),
    }));
    let status = app.status.clone().expect("status");
    assert!(status.error);
    assert_eq!(
        status.text,
        "panic inference-pool failed: bad_request: fault injection is disabled"
    );
}

#[test]
fn snapshot_from_any_tab_after_confirmation() {
    let mut app = connected_app();
    app.update(ch('4'));
    app.update(ch('s'));
    assert_eq!(app.dialog, Some(Dialog::Snapshot));
    app.update(ch('y'));
    assert_eq!(app.take_commands(), vec![Command::Snapshot]);
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Snapshot,
        result: Ok(reply("snapshot: 3 shards written", None)),
    }));
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("snapshot: 3 shards written")
    );
}

#[test]
fn weight_edits_are_pending_until_enter() {
    let mut app = connected_app();
    app.update(ch('5'));
    for _ in 0..3 {
        app.update(key(KeyCode::Down));
    }
    assert_eq!(app.weights.selected, 3);
    app.update(ch('+'));
    assert_eq!(app.weights.pending[3], Some(0.55));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.weights.pending, [None; 4], "Esc discards");
    app.update(ch('+'));
    app.update(ch('+'));
    app.update(ch('-'));
    assert_eq!(app.weights.pending[3], Some(0.55));
    // A new poll does not overwrite the pending edit.
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(telemetry(14_000, 1400, 5)),
        at_ms: 5000,
    }));
    assert_eq!(app.weights.pending[3], Some(0.55));
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.take_commands(),
        vec![Command::SetWeights(vec![
            ("visual".into(), 1.0),
            ("colour".into(), 1.0),
            ("quality".into(), 0.0),
            ("ctr".into(), 0.55),
        ])]
    );
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Weights,
        result: Ok(reply(
            "weights v3",
            Some(r#"{"version":3,"visual":1,"colour":1,"quality":0,"ctr":0.55}"#),
        )),
    }));
    assert_eq!(app.weights.pending, [None; 4]);
    assert_eq!(app.weights.live.version, 3);
    assert_eq!(app.weights.live.get("ctr"), 0.55);
    assert_eq!(
        app.status.as_ref().map(|s| s.text.as_str()),
        Some("weights v3")
    );
}

#[test]
fn typed_weights_and_a_refused_commit_keeps_them_pending() {
    let mut app = connected_app();
    app.update(ch('5'));
    app.update(key(KeyCode::Down));
    app.update(ch('e'));
    typed(&mut app, "0.3");
    assert_eq!(app.tab, Tab::Clicks, "digits are the value, not tabs");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.weights.pending[1], Some(0.3));
    app.update(ch('e'));
    typed(&mut app, "1..2");
    app.update(key(KeyCode::Enter));
    assert!(app.status.as_ref().is_some_and(|s| s.error), "not a number");
    assert_eq!(app.weights.pending[1], Some(0.3));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.take_commands().len(), 1);
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Weights,
        result: Err("unauthorized: bad admin token".into()),
    }));
    assert_eq!(app.weights.pending[1], Some(0.3));
    assert!(!app.weights.committing);
}

#[test]
fn search_tab_focuses_the_input_and_enter_searches() {
    let mut app = connected_app();
    app.update(ch('6'));
    typed(&mut app, "/tmp/7.jpg");
    assert_eq!(app.tab, Tab::Search);
    app.update(key(KeyCode::Enter));
    assert_eq!(
        app.take_commands(),
        vec![Command::Search {
            path: "/tmp/7.jpg".into(),
            k: SEARCH_K
        }]
    );
    assert!(!app.search.editing);
    app.update(ch('1'));
    assert_eq!(
        app.tab,
        Tab::Overview,
        "digits switch tabs again after searching"
    );
    app.update(ch('6'));
    app.update(Action::Net(NetEvent::Search(Err(
        "cannot read /tmp/7.jpg: No such file or directory (os error 2)".into(),
    ))));
    assert!(
        app.search
            .error
            .as_deref()
            .is_some_and(|e| e.contains("No such file"))
    );
    // A weights commit re-runs the last search so "current" shows the server's new order.
    app.update(Action::Net(NetEvent::Admin {
        what: AdminWhat::Weights,
        result: Ok(reply("ok", Some(r#"{"version":9,"ctr":1}"#))),
    }));
    assert_eq!(
        app.take_commands(),
        vec![Command::Search {
            path: "/tmp/7.jpg".into(),
            k: SEARCH_K
        }]
    );
}

#[test]
fn log_lines_accumulate_once_and_restart_over() {
    let mut app = connected_app();
    let mut t = telemetry(14_000, 1400, 5);
    t.log = vec![log_line(1, "WARN", "a"), log_line(2, "ERROR", "b")];
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(t.clone()),
        at_ms: 5000,
    }));
    // The same lines again (e.g. after a reconnect) are not duplicated.
    t.uptime_ms = 15_000;
    t.log.push(log_line(3, "WARN", "c"));
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(t),
        at_ms: 6000,
    }));
    let msgs: Vec<&str> = app.log.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(msgs, vec!["a", "b", "c"]);
    // The server restarted: its numbering starts over.
    let mut fresh = telemetry(1_000, 10, 0);
    fresh.log = vec![log_line(1, "WARN", "after restart")];
    app.update(Action::Net(NetEvent::Telemetry {
        telemetry: Box::new(fresh),
        at_ms: 7000,
    }));
    assert_eq!(app.log.len(), 4);
    assert!(app.window.is_none(), "no rates across a restart");
    // Scrolling is clamped.
    app.update(ch('7'));
    for _ in 0..10 {
        app.update(key(KeyCode::Up));
    }
    assert_eq!(app.log_scroll, 3);
    app.update(key(KeyCode::End));
    assert_eq!(app.log_scroll, 0);
}

#[test]
fn click_rate_from_two_polls() {
    let mut app = connected_app();
    let stats = |clicks: u32, impressions: u32| {
        format!(r#"{{"clicks":{clicks},"impressions":{impressions},"top":[]}}"#)
    };
    app.update(Action::Net(NetEvent::ClickStats {
        result: Ok(stats(10, 100)),
        at_ms: 1000,
    }));
    assert_eq!(app.click_rate, None);
    app.update(Action::Net(NetEvent::ClickStats {
        result: Ok(stats(16, 300)),
        at_ms: 3000,
    }));
    assert_eq!(app.click_rate, Some(3.0));
    assert_eq!(app.impression_rate, Some(100.0));
}

#[test]
fn disconnection_is_a_state_not_an_exit() {
    let mut app = connected_app();
    app.set_now(10_000);
    app.update(Action::Net(NetEvent::Disconnected {
        error: "connection refused".into(),
        retry_in_ms: 1600,
    }));
    assert_eq!(
        app.conn,
        Conn::Disconnected {
            error: "connection refused".into(),
            retry_at_ms: 11_600
        }
    );
    assert!(!app.quit);
    assert!(app.latest.is_some(), "the last numbers stay on screen");
    app.update(Action::Net(NetEvent::Connected {
        server: "vsa 0.1.0".into(),
    }));
    assert!(app.connected());
}
