//! passwd(5) and group(5) files: the name of each numeric id. Both start `name:password:id:`.
//! A container's files are written by whoever controls the container: any bytes, any length,
//! any number of lines; a line that is not an entry is skipped, never an error.

use super::parse_dec;
use crate::model::RawText;
use rustc_hash::FxHashMap;

/// The first name each id has, as getpwuid(3) and getgrgid(3) answer (later duplicates of an
/// id are ignored, like theirs).
pub fn parse_accounts(file: &[u8]) -> FxHashMap<u32, RawText> {
    let mut names = FxHashMap::default();
    for line in file.split(|&b| b == b'\n') {
        let mut fields = line.splitn(4, |&b| b == b':');
        let (Some(name), Some(_password), Some(id)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // NIS compat entries (`+name`, `-name`) and comments name no id.
        if name.is_empty() || matches!(name[0], b'+' | b'-' | b'#') {
            continue;
        }
        let Some(id) = parse_dec("id", id).ok().and_then(|id| u32::try_from(id).ok()) else {
            continue;
        };
        names.entry(id).or_insert_with(|| RawText::new(name));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_by_id_from_a_debian_passwd() {
        let file = b"root:x:0:0:root:/root:/bin/bash\n\
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        let names = parse_accounts(file);
        assert_eq!(names[&0].as_bytes(), b"root");
        assert_eq!(names[&65534].as_bytes(), b"nobody");
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn groups_parse_the_same_way() {
        let names = parse_accounts(b"sudo:x:27:alice,bob\nusers:x:100:\n");
        assert_eq!(names[&27].as_bytes(), b"sudo");
        assert_eq!(names[&100].as_bytes(), b"users");
    }

    #[test]
    fn hostile_lines_are_skipped_and_the_first_name_of_an_id_wins() {
        let file = b"# comment:x:5:\n+nis:x:6:\n:x:7:\nroot:x:0:0::/:/bin/sh\n\
fake-root:x:0:0::/:/bin/sh\nbig:x:99999999999:0\nneg:x:-1:0\nhalf:x\n\
esc\x1b[31m\xff:x:1000:1000::/home/u:/bin/sh\r\nno-newline:x:1001:1";
        let names = parse_accounts(file);
        assert_eq!(names[&0].as_bytes(), b"root");
        assert_eq!(names[&1000].as_bytes(), b"esc\x1b[31m\xff", "kept exactly, escaped on output");
        assert_eq!(names[&1001].as_bytes(), b"no-newline");
        assert!(![5, 6, 7].iter().any(|id| names.contains_key(id)));
        assert_eq!(names.len(), 3);
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panic(file in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let names = parse_accounts(&file);
            prop_assert!(names.values().all(|n| !n.is_empty() && !n.as_bytes().contains(&b':')));
        }

        #[test]
        fn written_entries_read_back(entries in proptest::collection::btree_map(
            any::<u32>(), "[a-z_][a-z0-9_.-]{0,31}", 0..32)) {
            let file: String = entries
                .iter()
                .map(|(id, name)| format!("{name}:x:{id}:{id}::/home/{name}:/bin/sh\n"))
                .collect();
            let names = parse_accounts(file.as_bytes());
            prop_assert_eq!(names.len(), entries.len());
            for (id, name) in &entries {
                prop_assert_eq!(names[id].as_bytes(), name.as_bytes());
            }
        }
    }
}
