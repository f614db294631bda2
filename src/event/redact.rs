//! Secrets in argv (`--password=…`, `--token …`, `scheme://user:pass@host`) are replaced before an
//! argument leaves the agent. Patterns are configurable; the defaults cover the common spellings.

use regex::Regex;

/// What replaces a secret.
pub const REDACTED: &str = "[REDACTED]";

/// Argument patterns that hold secrets.
#[derive(Clone, Debug)]
pub struct Redactor {
    /// `--name=value`: group 1 is kept, the rest replaced.
    inline: Vec<Regex>,
    /// `--name value`: the next argument is replaced.
    flag: Vec<Regex>,
    /// Credentials inside an argument (URLs): group 1 and 3 kept, group 2 replaced.
    embedded: Vec<Regex>,
}

/// Flag names that end in one of these words hold a secret (`--db-password`, `--api-key`,
/// `--auth-token`); a word inside a longer name (`--author`, `--password-file`) does not.
const SECRET_FLAG: &str = r"-{1,2}[a-z0-9_.-]*(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key|auth|credentials?)";

impl Default for Redactor {
    fn default() -> Self {
        let pattern = |p: String| Regex::new(&p).expect("default redaction pattern");
        Redactor {
            // `s`: a value with a newline in it is a value too (argv may hold any byte).
            inline: vec![pattern(format!(r"(?is)^({SECRET_FLAG}[=:])(.+)$"))],
            flag: vec![pattern(format!(r"(?i)^{SECRET_FLAG}$"))],
            embedded: vec![pattern(r"(?i)([a-z][a-z0-9+.-]*://[^/:@\s]*:)([^@/\s]+)(@)".into())],
        }
    }
}

/// A configured argument pattern: the argument is replaced, except what capture group 1 (if any)
/// matches, which is kept (`^(--db-pass=).*` keeps `--db-pass=`).
#[derive(Clone, Debug)]
pub struct ArgPattern(pub Regex);

impl<'de> serde::Deserialize<'de> for ArgPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Regex::new(&text).map(ArgPattern).map_err(|e| {
            let first = e.to_string().lines().last().unwrap_or("invalid").trim().to_string();
            serde::de::Error::custom(format!("bad pattern {text:?}: {first}"))
        })
    }
}

impl PartialEq for ArgPattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Redactor {
    /// The default patterns plus `extra`.
    pub fn with_patterns(extra: &[ArgPattern]) -> Self {
        let mut redactor = Redactor::default();
        redactor.inline.extend(extra.iter().map(|p| p.0.clone()));
        redactor
    }

    /// Redacts `args` in place; returns whether anything was replaced.
    pub fn redact(&self, args: &mut [String]) -> bool {
        let mut changed = false;
        let mut redact_next = false;
        for arg in args.iter_mut() {
            if std::mem::take(&mut redact_next) {
                *arg = REDACTED.to_string();
                changed = true;
                continue;
            }
            if self.flag.iter().any(|r| r.is_match(arg)) {
                redact_next = true;
                continue;
            }
            for r in &self.inline {
                if let Some(c) = r.captures(arg) {
                    let kept = c.get(1).map_or("", |m| m.as_str());
                    *arg = format!("{kept}{REDACTED}");
                    changed = true;
                }
            }
            for r in &self.embedded {
                if r.is_match(arg) {
                    *arg = r.replace_all(arg, format!("${{1}}{REDACTED}${{3}}")).into_owned();
                    changed = true;
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(args: &[&str]) -> Vec<String> {
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        Redactor::default().redact(&mut args);
        args
    }

    #[test]
    fn configured_patterns_add_to_the_defaults() {
        let extra: Vec<ArgPattern> =
            serde_json::from_str(r#"["^(--db-pass=).*", "^AKIA[0-9A-Z]{16}$"]"#).unwrap();
        let redactor = Redactor::with_patterns(&extra);
        let mut args: Vec<String> =
            ["x", "--db-pass=1", "AKIAABCDEFGHIJKLMNOP", "--password=2"].map(String::from).to_vec();
        assert!(redactor.redact(&mut args));
        assert_eq!(args, ["x", "--db-pass=[REDACTED]", "[REDACTED]", "--password=[REDACTED]"]);
        assert!(serde_json::from_str::<Vec<ArgPattern>>(r#"["(unclosed"]"#).is_err());
    }

    #[test]
    fn a_value_with_a_line_break_is_still_hidden() {
        assert_eq!(redacted(&["--password=hunt\ner2"]), ["--password=[REDACTED]"]);
    }

    #[test]
    fn what_follows_a_secret_flag_is_hidden_whole() {
        assert_eq!(
            redacted(&["--api-key", "--password=hunter4", "x"]),
            ["--api-key", "[REDACTED]", "x"]
        );
    }

    #[test]
    fn common_spellings() {
        assert_eq!(
            redacted(&["mysql", "--password=hunter2", "-u", "root"]),
            ["mysql", "--password=[REDACTED]", "-u", "root"]
        );
        assert_eq!(
            redacted(&["tool", "--api-key", "abc", "--verbose"]),
            ["tool", "--api-key", "[REDACTED]", "--verbose"]
        );
        assert_eq!(
            redacted(&["curl", "https://bob:s3cret@example.test/x"]),
            ["curl", "https://bob:[REDACTED]@example.test/x"]
        );
        assert_eq!(
            redacted(&["nc", "-e", "/bin/sh", "127.0.0.1", "4444"]),
            ["nc", "-e", "/bin/sh", "127.0.0.1", "4444"]
        );
        assert_eq!(redacted(&["app", "--DB_PASSWORD:x"]), ["app", "--DB_PASSWORD:[REDACTED]"]);
        assert_eq!(
            redacted(&["git", "--author", "me", "--password-file", "/p"]),
            ["git", "--author", "me", "--password-file", "/p"]
        );
    }
}
