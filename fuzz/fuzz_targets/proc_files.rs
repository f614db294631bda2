//! /proc/pid files a process controls the bytes of (comm, argv, paths): stat, status, cmdline,
//! cgroup (and the container it claims), fd links, fdinfo, mountinfo, the passwd and group files
//! of its own root, and the container runtimes' state files (names and images are a container
//! creator's). None may panic; comm must come back byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockwatch::scan::parse;

fuzz_target!(|data: &[u8]| {
    if let Ok(stat) = parse::parse_stat(data) {
        // comm is whatever lies between the first '(' and the last ')'.
        let open = data.iter().position(|&b| b == b'(').unwrap();
        let close = data.iter().rposition(|&b| b == b')').unwrap();
        assert_eq!(stat.comm.as_bytes(), &data[open + 1..close]);
    }
    let _ = parse::parse_status_ids(data);
    let argv = parse::split_cmdline(data);
    assert!(argv.iter().all(|a| !a.as_bytes().contains(&0)));
    if let Some(claim) = sockwatch::model::claim_of_cgroup(data) {
        assert!(!claim.id.is_empty());
    }
    let _ = parse::parse_cgroup(data);
    let _ = parse::parse_oci_config(data);
    let _ = parse::parse_docker_config(data);
    let _ = parse::parse_storage_containers(data, "x");
    let _ = parse::parse_machine(data);
    let _ = parse::parse_fd_link(data);
    let _ = parse::fdinfo_field(data, b"tty-index");
    let _ = parse::io_uring_files(data);
    let _ = parse::parse_nsfs_mounts(data);
    let _ = parse::parse_proc_pid_mounts(data);
    let names = parse::parse_accounts(data);
    assert!(names.values().all(|n| !n.as_bytes().contains(&b'\n')));
});
