//! Wire format of the lines the generator sends, and their cheap parsing.
//!
//! Every line ends with a fixed-width token
//! `cb:<run>:<sender>:<seq>:<sent_ns>` (all fields lower-case hex, zero
//! padded: 8, 8, 8 and 16 digits), preceded by filler so the whole line,
//! LF included, is exactly the requested size. The receiver finds the token
//! anywhere in a received line (servers add prefixes such as `NICK: `), so
//! any other line the server sends (welcome notices, joins, ...) is ignored.
//! Fixed widths let both sides work in place, without allocating per line.

use memchr::memmem;

/// Length of the token, without the line feed.
pub const TOKEN_LEN: usize = 3 + 8 + 1 + 8 + 1 + 8 + 1 + 16;
/// Smallest line (token plus line feed) the generator can send.
pub const MIN_LINE_LEN: usize = TOKEN_LEN + 1;
/// Sender index used for the synchronisation line sent before a run.
pub const SYNC_SENDER: u32 = u32::MAX;

/// Length of `cb:<run>:`, the part of the token that identifies this run.
const MARKER_LEN: usize = 3 + 8 + 1;
const HEX: &[u8; 16] = b"0123456789abcdef";

/// What a received token says about the line that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// Index of the sending client, or [`SYNC_SENDER`].
    pub sender: u32,
    /// Per-sender sequence number, from 0.
    pub seq: u32,
    /// (Scheduled) send time, in ns since the run's shared start instant.
    pub sent_ns: u64,
}

/// Writes `value` as `out.len()` zero-padded lower-case hex digits.
fn write_hex(out: &mut [u8], mut value: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(value & 0xf) as usize];
        value >>= 4;
    }
}

/// Parses lower-case or upper-case hex digits; `None` on any other byte.
fn parse_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &b| {
        let nibble = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            b'A'..=b'F' => b - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(nibble))
    })
}

/// The `cb:<run>:` marker for a run id.
fn marker(run: u32) -> [u8; MARKER_LEN] {
    let mut m = [0u8; MARKER_LEN];
    m[..3].copy_from_slice(b"cb:");
    write_hex(&mut m[3..11], u64::from(run));
    m[11] = b':';
    m
}

/// A reusable line for one sender: only the sequence number and the
/// timestamp change between lines, and they are rewritten in place.
#[derive(Debug, Clone)]
pub struct LineTemplate {
    line: Vec<u8>,
    token_at: usize,
}

impl LineTemplate {
    /// Builds a `size`-byte line (LF included) for `sender` in run `run`.
    ///
    /// # Errors
    /// If `size` is smaller than [`MIN_LINE_LEN`].
    pub fn new(run: u32, sender: u32, size: usize) -> Result<Self, String> {
        if size < MIN_LINE_LEN {
            return Err(format!(
                "line size {size} is too small: the token needs at least {MIN_LINE_LEN} bytes"
            ));
        }
        let token_at = size - 1 - TOKEN_LEN;
        let mut line = vec![b'x'; size];
        if token_at > 0 {
            line[token_at - 1] = b' ';
        }
        line[token_at..token_at + MARKER_LEN].copy_from_slice(&marker(run));
        let t = token_at + MARKER_LEN;
        write_hex(&mut line[t..t + 8], u64::from(sender));
        line[t + 8] = b':';
        line[t + 17] = b':';
        line[size - 1] = b'\n';
        Ok(Self { line, token_at })
    }

    /// The line for sequence number `seq` sent (or scheduled) at `sent_ns`.
    pub fn render(&mut self, seq: u32, sent_ns: u64) -> &[u8] {
        let t = self.token_at + MARKER_LEN + 9;
        write_hex(&mut self.line[t..t + 8], u64::from(seq));
        write_hex(&mut self.line[t + 9..t + 25], sent_ns);
        &self.line
    }
}

/// Finds and decodes this run's tokens in received lines.
#[derive(Debug)]
pub struct TokenParser {
    marker: [u8; MARKER_LEN],
    finder: memmem::FinderRev<'static>,
}

impl TokenParser {
    /// A parser that accepts only tokens of run `run`.
    pub fn new(run: u32) -> Self {
        let marker = marker(run);
        Self {
            marker,
            finder: memmem::FinderRev::new(&marker).into_owned(),
        }
    }

    /// Decodes the token in `line` (without its LF), if there is one.
    ///
    /// The fast path looks at the end of the line, where the token normally
    /// is; otherwise the last occurrence of the marker anywhere is used.
    pub fn parse(&self, line: &[u8]) -> Option<Token> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(at) = line.len().checked_sub(TOKEN_LEN) {
            let tail = &line[at..];
            if tail.starts_with(&self.marker) {
                if let Some(tok) = decode(tail) {
                    return Some(tok);
                }
            }
        }
        let at = self.finder.rfind(line)?;
        decode(line.get(at..at + TOKEN_LEN)?)
    }
}

/// Decodes a `TOKEN_LEN`-byte token whose marker was already checked.
fn decode(tok: &[u8]) -> Option<Token> {
    let f = &tok[MARKER_LEN..];
    if f[8] != b':' || f[17] != b':' {
        return None;
    }
    Some(Token {
        sender: u32::try_from(parse_hex(&f[..8])?).ok()?,
        seq: u32::try_from(parse_hex(&f[9..17])?).ok()?,
        sent_ns: parse_hex(&f[18..34])?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_has_exact_size_and_roundtrips() {
        let mut tpl = LineTemplate::new(0xdead_beef, 7, 64).unwrap();
        let parser = TokenParser::new(0xdead_beef);
        for (seq, ts) in [(0, 0), (1, 123_456_789), (u32::MAX - 1, u64::MAX)] {
            let line = tpl.render(seq, ts).to_vec();
            assert_eq!(line.len(), 64);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_ne!(line[0], b'/', "lines must not look like commands");
            let tok = parser.parse(&line[..63]).unwrap();
            assert_eq!(
                tok,
                Token {
                    sender: 7,
                    seq,
                    sent_ns: ts
                }
            );
        }
    }

    #[test]
    fn minimum_size_line_has_no_filler() {
        assert!(LineTemplate::new(1, 2, MIN_LINE_LEN - 1).is_err());
        let mut tpl = LineTemplate::new(1, 2, MIN_LINE_LEN).unwrap();
        let line = tpl.render(3, 4).to_vec();
        assert!(line.starts_with(b"cb:00000001:00000002:00000003:0000000000000004"));
        assert_eq!(line.len(), MIN_LINE_LEN);
    }

    #[test]
    fn finds_token_after_prefix_and_before_suffix() {
        let parser = TokenParser::new(5);
        let mut tpl = LineTemplate::new(5, 9, 80).unwrap();
        let body = tpl.render(42, 1000)[..79].to_vec();
        let mut prefixed = b"aB3k: ".to_vec();
        prefixed.extend_from_slice(&body);
        let want = Some(Token {
            sender: 9,
            seq: 42,
            sent_ns: 1000,
        });
        assert_eq!(parser.parse(&prefixed), want);
        prefixed.extend_from_slice(b"\r");
        assert_eq!(parser.parse(&prefixed), want);
        prefixed.extend_from_slice(b" [trailer]");
        assert_eq!(parser.parse(&prefixed), want);
    }

    #[test]
    fn ignores_foreign_runs_and_garbage() {
        let parser = TokenParser::new(5);
        let mut other = LineTemplate::new(6, 9, 64).unwrap();
        assert_eq!(parser.parse(&other.render(1, 1)[..63]), None);
        assert_eq!(parser.parse(b"* aB3k joined"), None);
        assert_eq!(parser.parse(b""), None);
        // Marker present but the fields are cut short or malformed.
        assert_eq!(parser.parse(b"cb:00000005:0000"), None);
        assert_eq!(
            parser.parse(b"cb:00000005:0000000z:00000001:0000000000000001"),
            None
        );
    }
}
