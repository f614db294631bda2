//! MITRE ATT&CK identifiers as rule tags carry them (`mitre.T1059.004`, `mitre.TA0011`): their
//! form, the names of those the rule pack and a host agent's findings use, and their pages.
//! Names come from ATT&CK Enterprise; an id not listed here is valid when well formed and is
//! reported without a name, never with a made-up one.

/// Tag prefixes a rule may use: ATT&CK ids, and a site's own labels.
pub const TAG_PREFIXES: [&str; 2] = ["mitre.", "local."];

/// Every enterprise tactic.
const TACTICS: [(&str, &str); 14] = [
    ("TA0001", "Initial Access"),
    ("TA0002", "Execution"),
    ("TA0003", "Persistence"),
    ("TA0004", "Privilege Escalation"),
    ("TA0005", "Defense Evasion"),
    ("TA0006", "Credential Access"),
    ("TA0007", "Discovery"),
    ("TA0008", "Lateral Movement"),
    ("TA0009", "Collection"),
    ("TA0010", "Exfiltration"),
    ("TA0011", "Command and Control"),
    ("TA0040", "Impact"),
    ("TA0042", "Resource Development"),
    ("TA0043", "Reconnaissance"),
];

/// The techniques a socket and process watcher reports on.
const TECHNIQUES: [(&str, &str); 19] = [
    ("T1014", "Rootkit"),
    ("T1021", "Remote Services"),
    ("T1021.004", "SSH"),
    ("T1036", "Masquerading"),
    ("T1048", "Exfiltration Over Alternative Protocol"),
    ("T1059", "Command and Scripting Interpreter"),
    ("T1059.004", "Unix Shell"),
    ("T1059.006", "Python"),
    ("T1059.007", "JavaScript"),
    ("T1071", "Application Layer Protocol"),
    ("T1090", "Proxy"),
    ("T1095", "Non-Application Layer Protocol"),
    ("T1105", "Ingress Tool Transfer"),
    ("T1205", "Traffic Signaling"),
    ("T1562", "Impair Defenses"),
    ("T1564", "Hide Artifacts"),
    ("T1571", "Non-Standard Port"),
    ("T1572", "Protocol Tunneling"),
    ("T1573", "Encrypted Channel"),
];

/// What kind of ATT&CK id a tag's id is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MitreId {
    Tactic,
    Technique,
    Subtechnique,
}

/// The kind of a well-formed id (`TA0011`, `T1059`, `T1059.004`); `None` otherwise.
pub fn kind(id: &str) -> Option<MitreId> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(number) = id.strip_prefix("TA") {
        return digits(number, 4).then_some(MitreId::Tactic);
    }
    let number = id.strip_prefix('T')?;
    match number.split_once('.') {
        None => digits(number, 4).then_some(MitreId::Technique),
        Some((base, sub)) => (digits(base, 4) && digits(sub, 3)).then_some(MitreId::Subtechnique),
    }
}

/// Why a rule's tag is refused, if it is.
pub fn check_tag(tag: &str) -> Result<(), String> {
    match tag.strip_prefix("mitre.") {
        Some(id) if kind(id).is_some() => Ok(()),
        Some(id) => Err(format!(
            "`{id}` is not an ATT&CK id (a tactic `TA0011`, a technique `T1059`, a \
             sub-technique `T1059.004`)"
        )),
        None if tag.starts_with("local.") && tag.len() > "local.".len() => Ok(()),
        None => Err(format!(
            "tag `{tag}` has an unknown prefix (known: {})",
            TAG_PREFIXES.map(|p| format!("`{p}`")).join(", ")
        )),
    }
}

/// The ATT&CK name of a tactic or (sub-)technique, where this table has it.
pub fn name(id: &str) -> Option<&'static str> {
    TACTICS.iter().chain(TECHNIQUES.iter()).find(|(i, _)| *i == id).map(|(_, name)| *name)
}

/// The id's page on attack.mitre.org.
pub fn reference(id: &str) -> Option<String> {
    match kind(id)? {
        MitreId::Tactic => Some(format!("https://attack.mitre.org/tactics/{id}/")),
        MitreId::Technique => Some(format!("https://attack.mitre.org/techniques/{id}/")),
        MitreId::Subtechnique => {
            Some(format!("https://attack.mitre.org/techniques/{}/", id.replace('.', "/")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_told_by_their_form() {
        assert_eq!(kind("TA0011"), Some(MitreId::Tactic));
        assert_eq!(kind("T1059"), Some(MitreId::Technique));
        assert_eq!(kind("T1059.004"), Some(MitreId::Subtechnique));
        for bad in ["", "T", "TA11", "T105", "T1059.4", "T1059.0040", "t1059", "T1059.", "TAxxxx"] {
            assert_eq!(kind(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn tags_need_a_known_prefix_and_a_real_id() {
        assert!(check_tag("mitre.T1059.004").is_ok());
        assert!(check_tag("local.pci-zone").is_ok());
        assert!(check_tag("mitre.T59").unwrap_err().contains("not an ATT&CK id"));
        assert!(check_tag("attack.T1059").unwrap_err().contains("unknown prefix"));
        assert!(check_tag("local.").is_err());
        assert!(check_tag("T1059").is_err());
    }

    #[test]
    fn names_and_pages() {
        assert_eq!(name("T1059.004"), Some("Unix Shell"));
        assert_eq!(name("TA0011"), Some("Command and Control"));
        assert_eq!(name("T1999"), None);
        assert_eq!(
            reference("T1059.004").as_deref(),
            Some("https://attack.mitre.org/techniques/T1059/004/")
        );
        assert_eq!(
            reference("TA0005").as_deref(),
            Some("https://attack.mitre.org/tactics/TA0005/")
        );
        // Every id the tables name is well formed.
        for (id, _) in TACTICS.iter().chain(TECHNIQUES.iter()) {
            assert!(kind(id).is_some(), "{id}");
        }
    }
}
