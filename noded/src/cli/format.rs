//! Output for people: aligned columns (Nomad's `columnize` look), key = value blocks, times.

use controlplane::model::duration::format_go;
use controlplane::model::{now_unix_nanos, short_id};

/// Rows of cells aligned into columns separated by two spaces.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `Key = Value` lines with the `=` aligned.
pub fn kv(pairs: &[(&str, String)]) -> String {
    let width = pairs
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k}{} = {v}\n", " ".repeat(width - k.chars().count())))
        .collect()
}

/// "5m10s ago" for a Unix-nanos time.
pub fn ago(unix_nanos: i64) -> String {
    if unix_nanos <= 0 {
        return "N/A".to_string();
    }
    let delta = (now_unix_nanos() - unix_nanos).max(0);
    let secs = std::time::Duration::from_secs((delta / 1_000_000_000) as u64);
    format!("{} ago", format_go(secs))
}

/// RFC 3339 (seconds) for a Unix-nanos time.
pub fn timestamp(unix_nanos: i64) -> String {
    if unix_nanos <= 0 {
        return "N/A".to_string();
    }
    controlplane::model::time::format_rfc3339(unix_nanos - unix_nanos.rem_euclid(1_000_000_000))
}

pub fn short(id: &str) -> String {
    short_id(id).to_string()
}

pub fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_have_no_trailing_space() {
        let t = table(&[
            vec!["ID".into(), "Status".into()],
            vec!["abcdef12".into(), "running".into()],
        ]);
        assert_eq!(t, "ID        Status\nabcdef12  running\n");
        assert_eq!(
            kv(&[("ID", "x".into()), ("Status", "y".into())]),
            "ID     = x\nStatus = y\n"
        );
    }
}
