//! Where the agent writes: its state, spools, locks and file sinks live in directories it opens
//! once, verifies, and then works in by handle. A file in them is opened with `O_NOFOLLOW`
//! relative to that handle, so neither a symlink planted in place of a file nor a directory
//! swapped after the check redirects a write; created files get their mode explicitly, whatever
//! the umask.
//!
//! A directory another user could write in (group or other write bits), or one owned by neither
//! the agent's user nor root, is refused: whoever can write there can plant links, fill the disk
//! or rewrite the agent's incidents and rules. The refusal is a setting to fix, not an outage
//! (the agent exits 78 at start).

use rustix::fs::{AtFlags, Mode, OFlags, fstat, openat};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Why a directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// Its owner or mode lets another user write there.
    #[error("{0}")]
    Unsafe(String),
    /// It could not be created or opened.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl From<DirError> for std::io::Error {
    fn from(e: DirError) -> Self {
        match e {
            DirError::Unsafe(why) => std::io::Error::new(std::io::ErrorKind::PermissionDenied, why),
            DirError::Io { source, .. } => source,
        }
    }
}

/// A verified directory, held open.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

/// How a file in a `Dir` is opened.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    /// Read only; the file must exist.
    Read,
    /// Read and write, created (with the mode) if missing, never truncated.
    ReadWrite,
    /// Appended to (and readable), created if missing.
    Append,
    /// Written from empty: created, or truncated.
    Replace,
}

impl Dir {
    /// Opens the existing directory `path` and verifies it.
    pub fn open(path: &Path) -> Result<Dir, DirError> {
        let io = |source: std::io::Error| DirError::Io { path: path.to_path_buf(), source };
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = openat(rustix::fs::CWD, path, flags, Mode::empty()).map_err(|e| {
            let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
            match e {
                rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR if link => DirError::Unsafe(
                    format!("{} is a symbolic link: name the directory itself", path.display()),
                ),
                e => io(e.into()),
            }
        })?;
        verify(&fd, path)?;
        Ok(Dir { fd, path: path.to_path_buf() })
    }

    /// Like `open`, creating the directory and its missing parents (mode 0700) first.
    pub fn create(path: &Path) -> Result<Dir, DirError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(|source| DirError::Io { path: path.to_path_buf(), source })?;
        Dir::open(path)
    }

    /// The subdirectory `name`, created (0700) if missing, verified like any other.
    pub fn subdir(&self, name: &str) -> Result<Dir, DirError> {
        let path = self.path.join(name);
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(DirError::Io { path, source: e.into() }),
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = openat(&self.fd, name, flags, Mode::empty())
            .map_err(|e| DirError::Io { path: path.clone(), source: e.into() })?;
        verify(&fd, &path)?;
        Ok(Dir { fd, path })
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` in this directory without following a symlink there. A file this call
    /// creates gets `mode` exactly.
    pub fn open_file(&self, name: &str, access: Access, mode: u32) -> std::io::Result<File> {
        let base = OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let flags = match access {
            Access::Read => base | OFlags::RDONLY,
            Access::ReadWrite => base | OFlags::RDWR,
            Access::Append => base | OFlags::RDWR | OFlags::APPEND,
            Access::Replace => base | OFlags::WRONLY | OFlags::TRUNC,
        };
        let mode = Mode::from_raw_mode(mode);
        let fd = match access {
            Access::Read => openat(&self.fd, name, flags, Mode::empty())?,
            // Created here, or already there: only a file created now gets `mode` (an
            // administrator's choice for an existing log stays).
            _ => match openat(&self.fd, name, flags | OFlags::CREATE | OFlags::EXCL, mode) {
                Ok(fd) => {
                    rustix::fs::fchmod(&fd, mode)?;
                    fd
                }
                Err(rustix::io::Errno::EXIST) => openat(&self.fd, name, flags, Mode::empty())?,
                Err(e) => return Err(e.into()),
            },
        };
        let stat = fstat(&fd)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Err(std::io::Error::other(format!(
                "{}: not a regular file",
                self.path.join(name).display()
            )));
        }
        Ok(File::from(fd))
    }

    /// Renames `from` to `to`, both in this directory (atomic replacement).
    pub fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
        Ok(rustix::fs::renameat(&self.fd, from, &self.fd, to)?)
    }

    /// Removes the file `name`; one already gone is no error.
    pub fn remove(&self, name: &str) -> std::io::Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes renames and removals in the directory durable.
    pub fn sync(&self) -> std::io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// The names in the directory.
    pub fn names(&self) -> std::io::Result<Vec<String>> {
        // A description of its own: a duplicate would share (and move) the read offset.
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        let mut dir = rustix::fs::Dir::new(openat(&self.fd, ".", flags, Mode::empty())?)?;
        let mut names = Vec::new();
        while let Some(entry) = dir.read() {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// Checks a directory without opening it for work: what `config check` asks. A missing
/// directory is no problem here (the agent creates it, 0700, its own).
pub fn check(path: &Path) -> Result<(), String> {
    match Dir::open(path) {
        Ok(_) => Ok(()),
        // What cannot be made there at all is for the caller's writability check to say.
        Err(DirError::Io { source, .. })
            if matches!(
                source.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(DirError::Unsafe(why)) => Err(why),
        Err(e) => Err(e.to_string()),
    }
}

/// The directory behind `fd` is owned by this user or root and writable by no one else.
fn verify(fd: &OwnedFd, path: &Path) -> Result<(), DirError> {
    let stat =
        fstat(fd).map_err(|e| DirError::Io { path: path.to_path_buf(), source: e.into() })?;
    let me = rustix::process::geteuid().as_raw();
    let mode = stat.st_mode & 0o7777;
    if stat.st_uid != me && stat.st_uid != 0 {
        return Err(DirError::Unsafe(format!(
            "{} is owned by uid {}, neither this user ({me}) nor root: that user could replace \
             what the agent writes there",
            path.display(),
            stat.st_uid
        )));
    }
    if mode & 0o022 != 0 {
        return Err(DirError::Unsafe(format!(
            "{} is writable by other users (mode {mode:04o}): they could plant links or rewrite \
             what the agent writes there; chmod go-w it, or name a directory of the agent's own",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
