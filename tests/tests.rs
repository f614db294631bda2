//! The integration tests: one binary (fast to link), topic files as modules. They run the real
//! `sockwatch` binary against real processes, sockets and namespaces the tests create, and need
//! root (./dev/test runs them so in CI).

mod agent;
mod agent_files;
mod agent_writes;
mod alert_context;
mod boundaries;
mod config_check;
mod containers;
mod detect_adversary;
mod detect_benign;
mod detect_lifecycle;
mod detect_shells;
mod exec_checks;
mod health;
mod http_proxy;
mod http_sink;
mod http_spool;
mod http_tls;
mod human_views;
mod kafka_sink;
mod least_privilege;
mod ocsf;
mod otlp_sink;
mod packaging;
mod proc_hiding;
mod scan_cli;
mod scan_holders;
mod scan_privileges;
mod scan_processes;
mod scan_ptys;
mod scan_relays;
mod scan_world;
mod shells;
mod short_lived;
mod sshd;
mod status_endpoint;
mod systemd;
mod unheld_connections;
mod util;
