//! Owning the terminal: raw mode and the alternate screen on [`TerminalGuard::enter`], undone
//! in `Drop` **and** in a panic hook (a panic on the drawing thread must not leave the shell
//! in raw mode). Logs go to a file, never to the screen ([`init_logging`]).

use std::io::{Stdout, stdout};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once, OnceLock};
use std::thread::ThreadId;

use crossterm::cursor::{Hide, Show};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// The terminal is in raw mode / the alternate screen.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// The thread that owns the terminal (the only one whose panic ends the console).
static UI_THREAD: OnceLock<Mutex<Option<ThreadId>>> = OnceLock::new();
static HOOK: Once = Once::new();

/// The console's terminal, restored when dropped.
pub struct TerminalGuard {
    /// The ratatui terminal over stdout.
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl std::fmt::Debug for TerminalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalGuard")
    }
}

impl TerminalGuard {
    /// Installs the panic hook, enters raw mode and the alternate screen, hides the cursor.
    pub fn enter() -> std::io::Result<TerminalGuard> {
        install_panic_hook();
        if let Ok(mut t) = UI_THREAD.get_or_init(|| Mutex::new(None)).lock() {
            *t = Some(std::thread::current().id());
        }
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let setup = execute!(stdout(), EnterAlternateScreen, Hide)
            .and_then(|()| Terminal::new(CrosstermBackend::new(stdout())));
        match setup {
            Ok(terminal) => Ok(TerminalGuard { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Leaves the alternate screen and raw mode, shows the cursor; does nothing if already done.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        // Raw mode first: it has the larger side effects.
        let _ = disable_raw_mode();
        let _ = execute!(stdout(), LeaveAlternateScreen, Show);
    }
}

fn on_ui_thread() -> bool {
    UI_THREAD
        .get()
        .and_then(|t| t.lock().ok().and_then(|t| *t))
        .is_none_or(|id| id == std::thread::current().id())
}

fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if ACTIVE.load(Ordering::SeqCst) && !on_ui_thread() {
                // Another thread (the network poller, which starts over): printing would
                // scribble over the screen, so log it instead.
                tracing::error!("panic in a console thread: {info}");
                return;
            }
            restore();
            previous(info);
        }));
    });
}

/// Sends `tracing` to `path` (appending), or nowhere when `None`, so nothing is written over
/// the screen. Fails only if the file cannot be opened; if a global subscriber is already
/// installed (the caller's), it is kept and this does nothing.
pub fn init_logging(path: Option<&Path>) -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("VSA_CONSOLE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false);
    let _ = match path {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            builder.with_writer(Mutex::new(file)).try_init()
        }
        None => builder.with_writer(std::io::sink).try_init(),
    };
    Ok(())
}
