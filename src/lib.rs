//! sockwatch: a Linux host security agent that turns /proc into a graph of processes, file
//! descriptors and sockets, derives relations over it (socket direction, stdio relay links) and
//! reports them. See DESIGN.md in the shared docs for the architecture; each module's header says
//! what it owns.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod diff;
pub mod event;
pub mod files;
pub mod graph;
pub mod model;
pub mod rules;
pub mod scan;
pub mod sinks;
