//! The crate's tests: view-model ([`model_tests`]), app state machine ([`app_tests`]),
//! rendering to `TestBackend` ([`render_tests`]) and the poller against a fake server
//! ([`net_tests`]). Fixtures in [`fixtures`].

mod app_tests;
mod fixtures;
mod model_tests;
mod net_tests;
mod render_tests;
