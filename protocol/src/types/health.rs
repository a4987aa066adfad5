//! `Health`: the server's and its parts' health states.

use serde::{Deserialize, Serialize};

/// The answer to a health request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReply {
    /// The overall state (the worst of the checks).
    pub state: HealthState,
    /// Individual checks: `(name, state, detail)`.
    pub checks: Vec<HealthCheck>,
}

/// One health check: `(name, state, detail)`.
pub type HealthCheck = (String, HealthState, String);

/// A health state, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum HealthState {
    /// Everything works.
    Healthy,
    /// Serving, with reduced results or capacity.
    Degraded,
    /// Not serving.
    Down,
}
