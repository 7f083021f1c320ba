//! Where records end in a byte stream. Text and JSON lines end a record at
//! every `\n`; CSV ends one at a `\n` outside double quotes, so a quoted
//! field may hold line breaks (RFC 4180). Every function here takes a buffer
//! that starts at a record boundary: the quote state is known only from a
//! record's start.

use std::ops::Range;

use harrow_core::task::InputFormat;

/// How records are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// A record ends at each `\n`.
    Lines,
    /// A record ends at a `\n` outside double quotes.
    Csv,
}

impl Framing {
    pub fn of(format: InputFormat) -> Framing {
        match format {
            InputFormat::Csv => Framing::Csv,
            InputFormat::Text | InputFormat::Jsonl | InputFormat::Parquet => Framing::Lines,
        }
    }

    /// Calls `on_end` with the index just past each record terminator in
    /// `buf`, in order, while it returns true.
    fn scan(self, buf: &[u8], mut on_end: impl FnMut(usize) -> bool) {
        match self {
            Framing::Lines => {
                for newline in memchr::memchr_iter(b'\n', buf) {
                    if !on_end(newline + 1) {
                        return;
                    }
                }
            }
            Framing::Csv => {
                let mut quoted = false;
                for at in memchr::memchr2_iter(b'"', b'\n', buf) {
                    if buf[at] == b'"' {
                        // `""` inside quotes toggles twice: still quoted.
                        quoted = !quoted;
                    } else if !quoted && !on_end(at + 1) {
                        return;
                    }
                }
            }
        }
    }

    /// The end of the record holding byte `index`, if it ends within `buf`.
    pub fn end_of_record_at(self, buf: &[u8], index: usize) -> Option<usize> {
        match self {
            Framing::Lines => memchr::memchr(b'\n', &buf[index..]).map(|n| index + n + 1),
            Framing::Csv => {
                let mut found = None;
                self.scan(buf, |end| {
                    if end > index {
                        found = Some(end);
                    }
                    found.is_none()
                });
                found
            }
        }
    }

    /// The end of the last complete record in `buf`.
    pub fn last_end(self, buf: &[u8]) -> Option<usize> {
        match self {
            Framing::Lines => memchr::memrchr(b'\n', buf).map(|n| n + 1),
            Framing::Csv => {
                let mut last = None;
                self.scan(buf, |end| {
                    last = Some(end);
                    true
                });
                last
            }
        }
    }

    /// The byte ranges of the records in `buf` (which ends at a record end
    /// or holds a final unterminated record), without blank lines.
    pub fn records(self, buf: &[u8]) -> Vec<Range<usize>> {
        let mut records = Vec::new();
        let mut start = 0;
        let mut push = |range: Range<usize>| {
            if !is_blank(&buf[range.clone()]) {
                records.push(range);
            }
        };
        self.scan(buf, |end| {
            push(start..end);
            start = end;
            true
        });
        if start < buf.len() {
            push(start..buf.len());
        }
        records
    }
}

/// An empty line, with or without `\r`.
fn is_blank(record: &[u8]) -> bool {
    matches!(record, b"\n" | b"\r\n" | b"" | b"\r")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_records_keep_quoted_line_breaks() {
        let text = b"a,b\n1,\"x\ny\"\n\n2,\"say \"\"hi\"\"\n\"\n3,z";
        let records: Vec<&[u8]> = Framing::Csv
            .records(text)
            .into_iter()
            .map(|r| &text[r])
            .collect();
        assert_eq!(
            records,
            [
                &b"a,b\n"[..],
                b"1,\"x\ny\"\n",
                b"2,\"say \"\"hi\"\"\n\"\n",
                b"3,z"
            ]
        );
        assert_eq!(Framing::Csv.last_end(text), Some(text.len() - 3));
        // Byte 6 is inside the quoted field of the second record.
        assert_eq!(Framing::Csv.end_of_record_at(text, 6), Some(12));
        assert_eq!(Framing::Lines.end_of_record_at(text, 6), Some(9));
    }

    #[test]
    fn lines_end_at_every_newline() {
        let text = b"x\n\r\n\"y\n";
        assert_eq!(Framing::Lines.records(text), [0..2, 4..7]);
        assert_eq!(Framing::Lines.last_end(text), Some(7));
        assert_eq!(Framing::Lines.last_end(b"open"), None);
    }
}
