//! Driving a terminal program in a detached tmux session, as an operator would: `send-keys`
//! to type, `capture-pane` to read the screen. Each session runs on its own tmux server socket
//! (`-L`), so parallel tests and a developer's own tmux never meet.

use std::process::{Command, Output};
use std::time::Duration;

use super::wait_until;

/// A detached tmux session running one command; killed on drop.
pub(crate) struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (a shell command line) in a `width`×`height` window. The pane stays
    /// after the program exits so its last screen and exit status can be read.
    pub(crate) fn start(tag: &str, width: u16, height: u16, command: &str) -> Tmux {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = Tmux {
            socket: format!("vsa-e2e-{tag}-{}-{n}", std::process::id()),
        };
        let (w, h) = (width.to_string(), height.to_string());
        let out = t.tmux(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            &w,
            "-y",
            &h,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session failed (is tmux installed? scripts/setup.sh installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t.tmux(&["set-option", "-w", "-t", "main", "remain-on-exit", "on"]);
        t.tmux(&["set-option", "-g", "default-terminal", "xterm-256color"]);
        let out = t.tmux(&["respawn-pane", "-k", "-t", "main", command]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn tmux(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("run tmux (scripts/setup.sh installs it)")
    }

    /// Types keys (tmux key names: `Enter`, `Escape`, `Down`, `C-c`, or literal text).
    pub(crate) fn send(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        let out = self.tmux(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The visible screen as text.
    pub(crate) fn screen(&self) -> String {
        String::from_utf8_lossy(&self.tmux(&["capture-pane", "-p", "-t", "main"]).stdout)
            .into_owned()
    }

    /// Waits until the screen shows every one of `texts`; panics with the screen if not.
    pub(crate) fn wait_for(&self, texts: &[&str], timeout: Duration) -> String {
        let mut last = String::new();
        let ok = wait_until(timeout, || {
            last = self.screen();
            texts.iter().all(|t| last.contains(t))
        });
        assert!(ok, "screen never showed {texts:?}; it shows:\n{last}");
        last
    }

    /// Resizes the window.
    pub(crate) fn resize(&self, width: u16, height: u16) {
        let (w, h) = (width.to_string(), height.to_string());
        self.tmux(&["resize-window", "-t", "main", "-x", &w, "-y", &h]);
    }

    /// A pane format variable, e.g. `pane_dead`, `pane_dead_status`, `alternate_on`.
    pub(crate) fn pane(&self, var: &str) -> String {
        let fmt = format!("#{{{var}}}");
        String::from_utf8_lossy(
            &self
                .tmux(&["display-message", "-p", "-t", "main", &fmt])
                .stdout,
        )
        .trim()
        .to_string()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}
