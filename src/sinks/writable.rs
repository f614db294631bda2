//! Whether this process could write where a sink will: what `config check` asks of file sinks
//! and spools, answered by the kernel's own permission check (`access(2)`, which also knows
//! read-only mounts and capabilities) without creating anything.

use rustix::fs::{Access, AtFlags, CWD, accessat};
use std::path::Path;

/// `path` can be appended to, or created in its (existing) directory.
pub(crate) fn appendable_file(path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Err(format!("{} is a directory", path.display())),
        Ok(_) => allowed(path, Access::WRITE_OK),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = parent(path);
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => allowed(dir, Access::WRITE_OK | Access::EXEC_OK)
                    .map_err(|e| format!("cannot create {}: {e}", path.display())),
                Ok(_) => Err(format!("{} is not a directory", dir.display())),
                Err(e) => Err(format!("directory {}: {e}", dir.display())),
            }
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// `dir` is a directory this process can create files in, or can be created: its nearest
/// existing ancestor is one.
pub(crate) fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match std::fs::metadata(at) {
            Ok(meta) if meta.is_dir() => {
                return allowed(at, Access::WRITE_OK | Access::EXEC_OK).map_err(|e| {
                    if at == dir { e } else { format!("cannot create {}: {e}", dir.display()) }
                });
            }
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                at = parent(at)
            }
            Err(e) => return Err(format!("{}: {e}", at.display())),
        }
    }
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn allowed(path: &Path, access: Access) -> Result<(), String> {
    accessat(CWD, path, access, AtFlags::empty())
        .map_err(|e| format!("{}: not writable by this user: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_directories_and_files_in_place_of_directories_are_named() {
        let dir = std::env::temp_dir().join(format!("sockwatch-writable-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(appendable_file(&dir.join("events.ndjson")), Ok(()));
        assert_eq!(writable_dir(&dir.join("spool/a/b")), Ok(()), "created on open");
        let missing = appendable_file(&dir.join("absent/events.ndjson")).unwrap_err();
        assert!(missing.contains("absent"), "{missing}");
        assert!(appendable_file(&dir).unwrap_err().contains("is a directory"));
        let file = dir.join("plain");
        std::fs::write(&file, "").unwrap();
        let under_file = writable_dir(&file.join("spool")).unwrap_err();
        assert!(under_file.contains("is not a directory"), "{under_file}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
