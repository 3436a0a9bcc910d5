//! Investigation (investigation.md): what lets a person go from a bad figure to its cause. So far
//! the trace index ([`traces`]); the service map, top contributors, history and the group-wide
//! merge of snapshots come next (issue 10).

mod config;
pub mod traces;

pub use config::InvestigationConfig;
