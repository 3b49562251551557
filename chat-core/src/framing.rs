//! Line framing and sanitizing (protocol.md, "Framing").
//!
//! [`LineFramer`] cuts a byte stream into lines without ever buffering more
//! than the line limit; [`sanitize`] turns one raw line into text that is safe
//! to show on anyone's terminal.

use std::borrow::Cow;

/// One step of framing: what the next bytes of the stream amount to.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A complete line: the bytes before the LF, one trailing CR removed.
    Line(&'a [u8]),
    /// The current line went over the limit. It is being discarded up to the
    /// next LF; this is reported once per such line, as soon as it is known.
    TooLong,
}

/// Cuts a byte stream into lines of at most `max_line` bytes.
///
/// The result does not depend on how the stream is split into reads: a line
/// that arrives whole in one read is handed out straight from that read, and
/// only the unterminated tail of a read is copied into the (bounded) buffer.
#[derive(Debug, Clone)]
pub struct LineFramer {
    max_line: usize,
    /// The unterminated start of the current line; never longer than
    /// `max_line + 1` (room for a CR that may turn out to precede the LF).
    partial: Vec<u8>,
    /// `partial` holds a line already handed out; clear it on the next call.
    handed_out: bool,
    /// Skipping an over-long line up to its LF.
    discarding: bool,
}

impl LineFramer {
    /// A framer for lines of at most `max_line` bytes, CR and LF excluded.
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            max_line,
            partial: Vec::new(),
            handed_out: false,
            discarding: false,
        }
    }

    /// Bytes of an unterminated line held right now; at most `max_line + 1`.
    pub fn buffered(&self) -> usize {
        if self.handed_out {
            0
        } else {
            self.partial.len()
        }
    }

    /// Whether an unterminated line has started (buffered or being discarded).
    pub fn in_line(&self) -> bool {
        self.buffered() > 0 || self.discarding
    }

    /// Takes the next frame out of `input`, advancing it past the bytes used.
    ///
    /// Call it in a loop until it returns `None`, which means every byte of
    /// `input` has been consumed (the tail is buffered or being discarded).
    pub fn next_frame<'s, 'i: 's>(&'s mut self, input: &mut &'i [u8]) -> Option<Frame<'s>> {
        if self.handed_out {
            self.partial.clear();
            self.handed_out = false;
        }
        loop {
            if input.is_empty() {
                return None;
            }
            let newline = find_lf(input);
            if self.discarding {
                match newline {
                    Some(pos) => {
                        *input = &input[pos + 1..];
                        self.discarding = false;
                        continue;
                    }
                    None => {
                        *input = &[];
                        return None;
                    }
                }
            }
            let Some(pos) = newline else {
                let tail: &[u8] = std::mem::take(input);
                let total = self.partial.len() + tail.len();
                // One byte over the limit may still be a CR right before the LF.
                let may_fit = total <= self.max_line
                    || (total == self.max_line + 1 && tail.last() == Some(&b'\r'));
                if !may_fit {
                    self.partial.clear();
                    self.discarding = true;
                    return Some(Frame::TooLong);
                }
                self.partial.extend_from_slice(tail);
                return None;
            };
            let (head, rest) = input.split_at(pos);
            *input = &rest[1..];
            if self.partial.is_empty() {
                // The whole line is in this read: hand it out without a copy.
                let line = strip_cr(head);
                return Some(if line.len() > self.max_line {
                    Frame::TooLong
                } else {
                    Frame::Line(line)
                });
            }
            if self.partial.len() + head.len() > self.max_line + 1 {
                self.partial.clear();
                return Some(Frame::TooLong);
            }
            self.partial.extend_from_slice(head);
            let len = strip_cr(&self.partial).len();
            if len > self.max_line {
                self.partial.clear();
                return Some(Frame::TooLong);
            }
            self.handed_out = true;
            return Some(Frame::Line(&self.partial[..len]));
        }
    }

    /// Ends the stream (EOF): the unterminated final line, if any, as if it
    /// had ended with LF. A line being discarded yields nothing.
    pub fn finish(&mut self) -> Option<&[u8]> {
        if self.handed_out || self.discarding || self.partial.is_empty() {
            self.discarding = false;
            return None;
        }
        self.handed_out = true;
        Some(strip_cr(&self.partial))
    }
}

fn find_lf(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether `c` is replaced by U+FFFD: C0 controls but TAB, DEL, C1 controls,
/// and the bidi embedding, override and isolate controls.
pub fn is_forbidden(c: char) -> bool {
    matches!(c, '\0'..='\x08' | '\x0a'..='\x1f' | '\x7f'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Sanitizes one raw line (protocol.md, "Sanitizing"): invalid UTF-8 and
/// forbidden characters become U+FFFD, then trailing whitespace is trimmed.
///
/// Borrows when nothing needs replacing, which is the common case.
pub fn sanitize(raw: &[u8]) -> Cow<'_, str> {
    // Fast path: printable ASCII and TAB need no replacing at all.
    if raw.iter().all(|&b| (b' '..0x7f).contains(&b) || b == b'\t') {
        let text = std::str::from_utf8(raw).unwrap_or_default();
        return Cow::Borrowed(text.trim_end_matches(char::is_whitespace));
    }
    let lossy = String::from_utf8_lossy(raw);
    let clean: Cow<'_, str> = if lossy.chars().any(is_forbidden) {
        Cow::Owned(
            lossy
                .chars()
                .map(|c| {
                    if is_forbidden(c) {
                        char::REPLACEMENT_CHARACTER
                    } else {
                        c
                    }
                })
                .collect(),
        )
    } else {
        lossy
    };
    match clean {
        Cow::Borrowed(text) => Cow::Borrowed(text.trim_end_matches(char::is_whitespace)),
        Cow::Owned(mut text) => {
            let len = text.trim_end_matches(char::is_whitespace).len();
            text.truncate(len);
            Cow::Owned(text)
        }
    }
}
