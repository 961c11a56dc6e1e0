//! The store's transitions, each written once over the dialect seam ([`super::seam::Tx`]):
//! one file per concept. A backend opens the transaction, runs the transition in it and
//! commits (announcing work where the result is work); the SQL and the guards are here.

pub(crate) mod actions;
pub(crate) mod approvals;
pub(crate) mod audit;
pub(crate) mod commands;
pub(crate) mod findings;
pub(crate) mod fleet;
pub(crate) mod messages;
pub(crate) mod stats;
