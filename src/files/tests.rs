use super::*;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let path =
            std::env::temp_dir().join(format!("sockwatch-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn created_files_get_their_mode_whatever_the_umask_and_existing_ones_keep_theirs() {
    let scratch = Scratch::new("modes");
    let dir = Dir::create(&scratch.0.join("state")).unwrap();
    assert_eq!(std::fs::metadata(dir.path()).unwrap().mode() & 0o777, 0o700);
    let old = rustix::process::umask(Mode::empty());
    let created = dir.open_file("incidents.json", Access::Replace, 0o600);
    rustix::process::umask(old);
    created.unwrap();
    let mode = |name: &str| std::fs::metadata(dir.path().join(name)).unwrap().mode() & 0o777;
    assert_eq!(mode("incidents.json"), 0o600);
    std::fs::write(dir.path().join("events.ndjson"), "").unwrap();
    std::fs::set_permissions(dir.path().join("events.ndjson"), PermissionsExt::from_mode(0o644))
        .unwrap();
    dir.open_file("events.ndjson", Access::Append, 0o640).unwrap();
    assert_eq!(mode("events.ndjson"), 0o644, "an administrator's choice stays");
}

#[test]
fn a_symlink_in_place_of_a_file_or_of_the_directory_is_not_followed() {
    let scratch = Scratch::new("links");
    let dir = Dir::create(&scratch.0.join("state")).unwrap();
    let target = scratch.0.join("target");
    std::fs::write(&target, "precious\n").unwrap();
    std::os::unix::fs::symlink(&target, dir.path().join("incidents.json")).unwrap();
    for access in [Access::Read, Access::Replace, Access::Append] {
        assert!(dir.open_file("incidents.json", access, 0o600).is_err(), "{access:?}");
    }
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious\n");
    let link = scratch.0.join("link");
    std::os::unix::fs::symlink(dir.path(), &link).unwrap();
    let refused = Dir::open(&link).unwrap_err().to_string();
    assert!(refused.contains("symbolic link"), "{refused}");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join("fifo"),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let fifo = dir.open_file("fifo", Access::ReadWrite, 0o600).unwrap_err().to_string();
    assert!(fifo.contains("not a regular file"), "{fifo}");
}

#[test]
fn directories_other_users_can_write_or_own_are_refused_with_the_reason() {
    let scratch = Scratch::new("owners");
    let shared = scratch.0.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o1777)).unwrap();
    let why = Dir::open(&shared).unwrap_err().to_string();
    assert!(why.contains("writable by other users (mode 1777)"), "{why}");
    assert_eq!(check(&shared), Err(why));
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o770)).unwrap();
    assert!(Dir::open(&shared).is_err(), "group-writable");
    std::fs::set_permissions(&shared, PermissionsExt::from_mode(0o755)).unwrap();
    assert!(Dir::open(&shared).is_ok());
    if rustix::process::geteuid().is_root() {
        rustix::fs::chown(&shared, Some(rustix::fs::Uid::from_raw(65534)), None).unwrap();
        let why = Dir::open(&shared).unwrap_err().to_string();
        assert!(why.contains("owned by uid 65534"), "{why}");
    }
    assert_eq!(check(&scratch.0.join("absent")), Ok(()), "created by the agent, its own");
}

#[test]
fn a_directory_lists_and_renames_by_handle() {
    let scratch = Scratch::new("names");
    let dir = Dir::create(&scratch.0.join("spool")).unwrap();
    dir.open_file("a.tmp", Access::Replace, 0o600).unwrap();
    dir.rename("a.tmp", "a").unwrap();
    dir.subdir("quarantine").unwrap();
    dir.sync().unwrap();
    let mut names = dir.names().unwrap();
    names.sort();
    assert_eq!(names, ["a", "quarantine"]);
    dir.remove("a").unwrap();
    dir.remove("a").unwrap();
    assert_eq!(dir.names().unwrap(), ["quarantine"]);
}
