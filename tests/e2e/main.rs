//! End-to-end tests: they start the real `vsa` binary (`CARGO_BIN_EXE_vsa`) as a user would.
#![allow(clippy::unwrap_used)]

mod support;

mod cli;
mod clicks;
mod config_doc;
mod console;
mod demo;
mod durability;
mod health;
mod http;
mod quality;
mod ranking;
mod rebalance;
mod security;
mod serve;
mod telemetry;
mod tls;
