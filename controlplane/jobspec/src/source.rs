//! Source text with a line index, turning byte offsets from the syntax tree into file:line:col.

use super::error::SourcePos;

/// One source file: its name (as the user gave it) and text.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> Source<'a> {
    pub fn new(name: &'a str, text: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Source {
            name,
            text,
            line_starts,
        }
    }

    /// The position of a byte offset; offsets past the end clamp to the end.
    pub fn pos(&self, offset: usize) -> SourcePos {
        let offset = offset.min(self.text.len());
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts.get(line).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        SourcePos {
            file: self.name.to_string(),
            line: line + 1,
            col: col + 1,
        }
    }

    /// The position of the start of a span, if the node has one.
    pub fn span_pos(&self, span: Option<std::ops::Range<usize>>) -> Option<SourcePos> {
        span.map(|r| self.pos(r.start))
    }

    /// The text of a span.
    pub fn slice(&self, span: &std::ops::Range<usize>) -> &'a str {
        self.text.get(span.clone()).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let s = Source::new("f.hcl", "ab\ncé d\n\nx");
        assert_eq!(s.pos(0).line, 1);
        assert_eq!((s.pos(3).line, s.pos(3).col), (2, 1));
        // 'é' is two bytes: the 'd' at byte 7 is the 4th character of line 2.
        assert_eq!((s.pos(7).line, s.pos(7).col), (2, 4));
        assert_eq!((s.pos(10).line, s.pos(10).col), (4, 1));
        assert_eq!(s.pos(999).line, 4);
    }
}
