//! The operator console against a real server, in a real terminal (tmux): tabs, a rebalance
//! applied through its confirmation dialog, a reranking weight changed, a tiny terminal, a
//! server restart (disconnected, then reconnected), and a clean terminal after quitting.

use std::time::Duration;

use vsa_protocol::{BlockingClient, Telemetry};

use crate::support::tmux::Tmux;
use crate::support::{ADMIN_TOKEN, Server, TempDir, item, wait_until};

/// Exact search and small rebalance thresholds: 200 items in one category ask for a split.
const CONFIG: &str = "[index]\nfit_threshold = 1000000\nrebalance_split_items = 60\nrebalance_merge_items = 40\nrebalance_grace_ms = 200\n";

const WAIT: Duration = Duration::from_secs(30);

/// The console in tmux; the shell writes its exit status to `exit` when it ends.
struct Console {
    term: Tmux,
    exit: std::path::PathBuf,
    _dir: TempDir,
}

impl std::ops::Deref for Console {
    type Target = Tmux;
    fn deref(&self) -> &Tmux {
        &self.term
    }
}

fn console(server: &Server, tag: &str) -> Console {
    let dir = TempDir::new(tag);
    let exit = dir.path().join("exit-status");
    let cmd = format!(
        "{} console --addr {} --admin-token {ADMIN_TOKEN} --refresh-ms 200; echo $? > {}",
        env!("CARGO_BIN_EXE_vsa"),
        server.addr,
        exit.display()
    );
    Console {
        term: Tmux::start(tag, 140, 40, &cmd),
        exit,
        _dir: dir,
    }
}

/// After `q`: the console exits with status 0 and leaves the alternate screen, its own
/// screen gone.
fn assert_left_clean(c: &Console) {
    let mut status = String::new();
    let ended = wait_until(WAIT, || {
        status = std::fs::read_to_string(&c.exit).unwrap_or_default();
        status.ends_with('\n')
    });
    assert!(ended, "the console did not exit; screen:\n{}", c.screen());
    assert_eq!(status.trim(), "0", "exit status");
    assert_ne!(c.pane("alternate_on"), "1", "still on the alternate screen");
    let screen = c.screen();
    assert!(
        !screen.contains("1 Overview"),
        "the console's screen stayed:\n{screen}"
    );
}

fn telemetry(client: &mut BlockingClient) -> Telemetry {
    client.telemetry(u64::MAX).expect("telemetry")
}

fn shards(client: &mut BlockingClient) -> usize {
    client.stats().expect("stats").shards.len()
}

#[test]
fn console_switches_tabs_applies_a_rebalance_and_changes_a_weight() {
    let server = Server::start(CONFIG);
    let mut client = server.client();
    for n in 0..200 {
        client.upsert(item(n, "things")).unwrap();
    }
    let term = console(&server, "console");
    term.wait_for(&["1 Overview", "connected", "200"], WAIT);

    // Every tab shows its own content.
    term.send(&["2"]);
    term.wait_for(
        &["root", "coordinator", "inference-pool", "p/things/0"],
        WAIT,
    );
    term.send(&["4"]);
    term.wait_for(&["workers"], WAIT);
    term.send(&["7"]);
    term.wait_for(&["7 Log"], WAIT);
    term.send(&["?"]);
    term.wait_for(&["quit"], WAIT);
    term.send(&["Escape"]);

    // Partitions: compute a plan, refuse it once, then apply it through the dialog.
    term.send(&["3"]);
    term.wait_for(&["p/things/0", "OVERSIZED"], WAIT);
    term.send(&["p"]);
    term.wait_for(&["split"], WAIT);
    term.send(&["a"]);
    term.wait_for(&["Apply plan 1? (y/n)"], WAIT);
    term.send(&["n"]);
    assert!(!wait_until(Duration::from_millis(600), || shards(
        &mut client
    ) != 1));
    term.send(&["a"]);
    term.wait_for(&["Apply plan 1? (y/n)"], WAIT);
    term.send(&["y"]);
    assert!(
        wait_until(WAIT, || shards(&mut client) > 1),
        "the split never happened; screen:\n{}",
        term.screen()
    );
    term.wait_for(&["p/things/1"], WAIT);
    assert_eq!(client.stats().unwrap().items, 200);

    // Clicks & ranking: raise the CTR weight by one step, see it pending, commit it.
    term.send(&["5"]);
    term.wait_for(&["ctr 0.00"], WAIT);
    term.send(&["Down", "Down", "Down", "+"]);
    term.wait_for(&["ctr 0.05*"], WAIT);
    assert_eq!(
        telemetry(&mut client).weights.version,
        1,
        "pending is not committed"
    );
    term.send(&["Enter"]);
    assert!(
        wait_until(WAIT, || telemetry(&mut client).weights.version == 2),
        "{}",
        term.screen()
    );
    let w = telemetry(&mut client).weights;
    let ctr = w.components.iter().find(|c| c.0 == "ctr").map(|c| c.1);
    assert!((ctr.unwrap() - 0.05).abs() < 1e-6, "{w:?}");
    term.wait_for(&["ctr 0.05"], WAIT);

    // A tiny terminal does not crash it; a normal one draws again.
    term.resize(20, 5);
    assert!(
        wait_until(WAIT, || term.screen().contains("small")),
        "{}",
        term.screen()
    );
    term.resize(140, 40);
    term.wait_for(&["1 Overview"], WAIT);
    assert_eq!(term.pane("pane_dead"), "0");

    // Quit: the program ends with status 0 and leaves the alternate screen.
    term.send(&["q"]);
    assert_left_clean(&term);
}

#[test]
fn console_shows_disconnected_and_reconnects_after_a_server_restart() {
    let dir = TempDir::new("console-restart");
    let mut server = Server::start_in(dir.path(), "");
    let addr = server.addr.to_string();
    let mut client = server.client();
    for n in 0..10 {
        client.upsert(item(n, "things")).unwrap();
    }
    drop(client);
    let term = console(&server, "restart");
    term.wait_for(&["connected", "10"], WAIT);

    server.kill9();
    term.wait_for(&["disconnected"], WAIT);
    assert_eq!(
        term.pane("pane_dead"),
        "0",
        "the console must survive the server"
    );

    // The same address again, on the same data: the console reconnects by itself.
    let _server = Server::start_on(dir.path(), "", &addr);
    let screen = term.wait_for(&["— connected"], WAIT);
    assert!(!screen.contains("disconnected"), "{screen}");
    term.send(&["q"]);
    assert_left_clean(&term);
}
