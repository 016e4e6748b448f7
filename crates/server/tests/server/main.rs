//! The service's tests, in one binary with a module per area:
//! - `api`: the routes as a function (`app(state)` driven with `oneshot`);
//! - `dashboard`: the pages at `/ui`, their sessions and forms;
//! - `leases`: metered consumes, node credentials and leases;
//! - `policy`: the policy lifecycle over HTTP;
//! - `service`: the composed service (`Service::open`) served on loopback;
//! - `webhooks`: registering webhook endpoints, and events' deliveries;
//! - `support`: what they share.
//!
//! Each test of `api`, `leases` and `policy` runs on both backends, as
//! `sqlite::name` and `postgres::name` (`support::on_both_backends!`);
//! PostgreSQL is the tests' own, started on first use.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test helpers fail loudly"
)]

mod api;
mod dashboard;
mod leases;
mod policy;
mod service;
mod signing;
mod support;
mod webhooks;
mod whatif;
