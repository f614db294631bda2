//! Credentials for the HTTP sink. They are read from files (config files get copied into tickets
//! and repositories; a token in one leaks), and a `Secret` prints as `<redacted>` everywhere: in
//! `Debug`, in errors, in events.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// A credential read from a file. Its value is reachable only through `expose`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Reads a secret file: its content without the trailing newline editors add. One that
    /// every user may read is refused: the credential is already out.
    pub fn read(path: &Path) -> Result<Secret, String> {
        let text = read_private(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(format!("secret file {} is empty", path.display()));
        }
        if value.contains(['\n', '\r']) {
            return Err(format!("secret file {} holds more than one line", path.display()));
        }
        Ok(Secret(value.to_string()))
    }

    /// The value, for building the one header that carries it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The text of a file only its owner and group may read (checked on the open file: a symlink,
/// as in Kubernetes secret volumes, is judged by what it points to).
pub(crate) fn read_private(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut file = std::fs::File::open(path)?;
    let mode = file.metadata()?.mode() & 0o777;
    if mode & 0o007 != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("readable or writable by every user (mode {mode:04o}); chmod o-rwx it"),
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `auth = { type = "…", … }`: where each kind of credential is read from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthConfig {
    /// `Authorization: Bearer <token>`.
    Bearer { token_file: PathBuf },
    /// `Authorization: Basic base64(user:password)`.
    Basic { username: String, password_file: PathBuf },
    /// `Authorization: Splunk <HEC token>`.
    Splunk { token_file: PathBuf },
    /// `Authorization: ApiKey <base64(id:key)>`, as Elasticsearch issues it (already encoded).
    ApiKey { key_file: PathBuf },
}

impl AuthConfig {
    /// The `Authorization` header value, read from its file now (so a rotated credential is
    /// picked up by a reload).
    pub fn header(&self) -> Result<Secret, String> {
        use base64::Engine as _;
        Ok(Secret(match self {
            AuthConfig::Bearer { token_file } => {
                format!("Bearer {}", Secret::read(token_file)?.expose())
            }
            AuthConfig::Basic { username, password_file } => {
                if username.contains(':') {
                    return Err("basic auth username cannot contain ':'".into());
                }
                let pair = format!("{username}:{}", Secret::read(password_file)?.expose());
                format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(pair))
            }
            AuthConfig::Splunk { token_file } => {
                format!("Splunk {}", Secret::read(token_file)?.expose())
            }
            AuthConfig::ApiKey { key_file } => {
                format!("ApiKey {}", Secret::read(key_file)?.expose())
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let dir = std::env::temp_dir().join(format!("sockwatch-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
        std::fs::write(&path, "s3cr3t-token\n").unwrap();
        let private = |mode: u32| {
            let mode = std::os::unix::fs::PermissionsExt::from_mode(mode);
            std::fs::set_permissions(&path, mode).unwrap()
        };
        private(0o644);
        let auth = AuthConfig::Bearer { token_file: path.clone() };
        let open = auth.header().unwrap_err();
        assert!(open.contains("readable or writable by every user (mode 0644)"), "{open}");
        private(0o640);
        let header = auth.header().unwrap();
        assert_eq!(header.expose(), "Bearer s3cr3t-token");
        assert_eq!(format!("{header:?}"), "<redacted>");
        assert!(!format!("{auth:?}").contains("s3cr3t"));

        std::fs::write(&path, "").unwrap();
        assert!(auth.header().unwrap_err().contains("is empty"));
        std::fs::write(&path, "a\nb\n").unwrap();
        assert!(auth.header().unwrap_err().contains("more than one line"));
        let missing = AuthConfig::Splunk { token_file: dir.join("absent") };
        assert!(missing.header().unwrap_err().contains("cannot read secret file"));

        std::fs::write(&path, "pa:ss\n").unwrap();
        let basic = AuthConfig::Basic { username: "agent".into(), password_file: path };
        // base64("agent:pa:ss")
        assert_eq!(basic.header().unwrap().expose(), "Basic YWdlbnQ6cGE6c3M=");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
