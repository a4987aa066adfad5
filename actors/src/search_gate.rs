//! The searches in flight, and the click thread's wait for a moment without any.
//!
//! The click work (the checks against the query log, the aggregators' updates) runs on one
//! thread at the lowest CPU priority ([`crate::clicks::ClickRuntime`]), so a waking search
//! takes a core from it at once. That is not enough on a small machine: the click thread still
//! runs *beside* a search, on the other core (often the same physical core's other hardware
//! thread on a cloud guest), sharing its caches and memory bandwidth, and on two shared cores
//! even that costs the searches' tail latency. So the click thread also waits, before each
//! short run of work, until no search is in flight — for at most a set time, so clicks still
//! progress under a search load that never pauses (and the bounded queues answer `Busy` when
//! they cannot keep up). A search that starts during a run waits for nothing: it overlaps the
//! rest of that one run (tens of microseconds), never a whole batch.
//!
//! Cost to a search: one atomic add when it starts, one subtract when it ends, and — only when
//! it is the last one in flight and the click thread is waiting — one wake-up of that thread.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// Searches in flight, counted by [`SearchGate::enter`]; the click thread waits on it with
/// [`SearchGate::wait_quiet`].
#[derive(Debug)]
pub struct SearchGate {
    in_flight: AtomicUsize,
    /// Set while a thread is parked in [`SearchGate::wait_quiet`].
    waiting: AtomicBool,
    /// That thread.
    waiter: Mutex<Option<Thread>>,
    /// The longest one wait lasts (zero: the click work never waits).
    max_wait: Duration,
    /// Waits that found searches in flight, and those that gave up on them.
    yielded: AtomicU64,
    gave_up: AtomicU64,
}

/// One search in flight: dropped when it ends.
#[derive(Debug)]
#[must_use = "the search counts as in flight only while this is held"]
pub struct Searching<'a>(&'a SearchGate);

/// How a [`SearchGate::wait_quiet`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// No search was in flight: no wait.
    Free,
    /// Searches were in flight, and the last of them ended.
    Yielded,
    /// Searches were still in flight after the longest wait; the work goes on anyway.
    GaveUp,
}

impl SearchGate {
    /// A gate whose waits last at most `max_wait` (zero: never wait).
    pub fn new(max_wait: Duration) -> SearchGate {
        SearchGate {
            in_flight: AtomicUsize::new(0),
            waiting: AtomicBool::new(false),
            waiter: Mutex::new(None),
            max_wait,
            yielded: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
        }
    }

    /// Counts a search in flight until the returned value is dropped.
    pub fn enter(&self) -> Searching<'_> {
        // Relaxed: only the subtract and the waiter's loads take part in the wake-up handshake.
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Searching(self)
    }

    /// Whether its waits can last at all (a non-zero longest wait): while not, searches need
    /// not be counted.
    pub fn is_on(&self) -> bool {
        !self.max_wait.is_zero()
    }

    /// Searches in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no search is in flight, or for the longest wait, whichever comes first.
    /// Called by the click work before each run; one waiting thread at a time (the click
    /// thread: the aggregators and the checks share it).
    pub fn wait_quiet(&self) -> Waited {
        if self.max_wait.is_zero() || self.in_flight() == 0 {
            return Waited::Free;
        }
        let deadline = Instant::now() + self.max_wait;
        if let Ok(mut w) = self.waiter.lock() {
            *w = Some(std::thread::current());
        }
        let outcome = loop {
            // Announce the wait, then look again: a search that ended between the two
            // loads either sees `waiting` and wakes this thread, or was seen here as ended.
            self.waiting.store(true, Ordering::SeqCst);
            if self.in_flight() == 0 {
                break Waited::Yielded;
            }
            let now = Instant::now();
            if now >= deadline {
                break Waited::GaveUp;
            }
            std::thread::park_timeout(deadline - now);
        };
        self.waiting.store(false, Ordering::SeqCst);
        match outcome {
            Waited::GaveUp => &self.gave_up,
            _ => &self.yielded,
        }
        .fetch_add(1, Ordering::Relaxed);
        outcome
    }

    /// `(waits that found searches in flight, of which gave up on them)` so far.
    pub fn waits(&self) -> (u64, u64) {
        let gave_up = self.gave_up.load(Ordering::Relaxed);
        (self.yielded.load(Ordering::Relaxed) + gave_up, gave_up)
    }
}

impl Drop for Searching<'_> {
    fn drop(&mut self) {
        let gate = self.0;
        if gate.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && gate.waiting.load(Ordering::SeqCst)
            && let Ok(w) = gate.waiter.lock()
            && let Some(t) = w.as_ref()
        {
            t.unpark();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn no_search_in_flight_means_no_wait() {
        let gate = SearchGate::new(Duration::from_secs(3600));
        assert_eq!(gate.wait_quiet(), Waited::Free);
        let s = gate.enter();
        drop(s);
        assert_eq!(gate.wait_quiet(), Waited::Free);
        assert_eq!(gate.waits(), (0, 0));
    }

    #[test]
    fn a_zero_wait_never_waits() {
        let gate = SearchGate::new(Duration::ZERO);
        let _s = gate.enter();
        assert_eq!(gate.in_flight(), 1);
        assert_eq!(gate.wait_quiet(), Waited::Free);
    }

    #[test]
    fn the_wait_ends_when_the_last_search_does() {
        // An hour's longest wait: only the end of both searches can end it in a test run.
        let gate = Arc::new(SearchGate::new(Duration::from_secs(3600)));
        let a = gate.enter();
        let b = gate.enter();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.wait_quiet())
        };
        while !gate.waiting.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        drop(a);
        // One search still in flight: the waiter stays parked (a wrong wake-up here would
        // let it return; the check cannot fail spuriously, since it may only return once
        // none is in flight).
        std::thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished());
        drop(b);
        assert_eq!(waiter.join().unwrap(), Waited::Yielded);
        assert_eq!(gate.in_flight(), 0);
        assert_eq!(gate.waits(), (1, 0));
    }

    #[test]
    fn a_search_that_never_ends_delays_the_work_only_so_long() {
        let gate = SearchGate::new(Duration::from_millis(20));
        let _stuck = gate.enter();
        assert_eq!(gate.wait_quiet(), Waited::GaveUp);
        assert_eq!(gate.wait_quiet(), Waited::GaveUp);
        assert_eq!(gate.waits(), (2, 2));
    }
}
