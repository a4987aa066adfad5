//! `vsa-tui`: the operator console (ratatui + crossterm), a client of `vsa-protocol` only.
//!
//! Not built yet: the console is issue 10 (it depends on the click/reranking and rebalancing
//! issues). This crate exists so the workspace has its final shape and dependency direction.
