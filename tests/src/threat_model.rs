//! The escape attempts `docs/threat-model.md` documents, read from its tables, so that a test
//! can check the verifier reports exactly those: an attempt added to `noded-verify escape`
//! or removed from it without the document following fails.

use std::path::PathBuf;

/// The section of the document whose tables list the attempts.
const SECTION: &str = "## Every attempt and the barrier that stops it";

/// One row of the document's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentedAttempt {
    /// As `noded-verify escape` names it, e.g. `mount_tmpfs`.
    pub name: String,
    /// The "nobody" and "root" columns say **open** (a documented opening or known limit).
    pub open_for_nobody: bool,
    pub open_for_root: bool,
    /// The barrier column says the attempt exists on x86_64 only.
    pub x86_64_only: bool,
}

/// `docs/threat-model.md` of this workspace.
pub fn threat_model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/threat-model.md")
}

/// Every attempt the document's tables list, in document order, on any architecture.
pub fn parse_documented_attempts(text: &str) -> Vec<DocumentedAttempt> {
    let start = text
        .find(SECTION)
        .unwrap_or_else(|| panic!("docs/threat-model.md has no section {SECTION:?}"));
    let section = &text[start + SECTION.len()..];
    let section = section.find("\n## ").map_or(section, |end| &section[..end]);
    section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let cell = |i: usize| -> &str {
                cells
                    .get(i)
                    .copied()
                    .unwrap_or_else(|| panic!("docs/threat-model.md: short table row {line:?}"))
            };
            DocumentedAttempt {
                name: cell(1).trim_matches('`').to_string(),
                open_for_nobody: cell(2).contains("open"),
                open_for_root: cell(3).contains("open"),
                x86_64_only: cell(4).contains("x86_64 only"),
            }
        })
        .collect()
}

/// The attempts the document lists for the architecture these tests run on.
pub fn documented_escape_attempts() -> Vec<DocumentedAttempt> {
    let path = threat_model_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_documented_attempts(&text)
        .into_iter()
        .filter(|a| cfg!(target_arch = "x86_64") || !a.x86_64_only)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The number after `needle` in `text`, e.g. `76` in "**76 attempts".
    fn number_before(text: &str, needle: &str) -> usize {
        let end = text
            .find(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in the document"));
        let digits: String = text[..end]
            .chars()
            .rev()
            .take_while(char::is_ascii_digit)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        digits.parse().unwrap()
    }

    #[test]
    fn the_documents_counts_match_its_tables() {
        let text = std::fs::read_to_string(threat_model_path()).unwrap();
        let all = parse_documented_attempts(&text);
        let names: BTreeSet<&str> = all.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names.len(), all.len(), "an attempt is listed twice");
        // "**76 attempts; as `nobody` 76 blocked; as `root` 74 blocked**"
        assert_eq!(number_before(&text, " attempts; as `nobody`"), all.len());
        let nobody_blocked = all.iter().filter(|a| !a.open_for_nobody).count();
        let root_blocked = all.iter().filter(|a| !a.open_for_root).count();
        assert_eq!(number_before(&text, " blocked; as `root`"), nobody_blocked);
        assert_eq!(number_before(&text, " blocked**"), root_blocked);
        let x86 = all.iter().filter(|a| a.x86_64_only).count();
        assert_eq!(
            number_before(&text, " attempts.)"),
            all.len() - x86,
            "the count without the x86_64-only attempts"
        );
    }

    #[test]
    fn rows_are_read_with_their_columns() {
        let text = "intro\n## Every attempt and the barrier that stops it\n\n### A\n\n\
            | Attempt | nobody | root | Barrier | Where |\n|---|---|---|---|---|\n\
            | `one` | blocked | **open** | x | `a.rs` |\n\
            | `two` | blocked | blocked | seccomp (x86_64 only) | same |\n\n\
            ## Entering\n| `not_an_attempt` | blocked | blocked | | |\n";
        let rows = parse_documented_attempts(text);
        assert_eq!(
            rows,
            vec![
                DocumentedAttempt {
                    name: "one".into(),
                    open_for_nobody: false,
                    open_for_root: true,
                    x86_64_only: false
                },
                DocumentedAttempt {
                    name: "two".into(),
                    open_for_nobody: false,
                    open_for_root: false,
                    x86_64_only: true
                },
            ]
        );
    }
}
