//! Everything that touches /proc and netlink.

pub mod parse;
