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
            self.clear_partial();
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
                    self.clear_partial();
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
                self.clear_partial();
                return Some(Frame::TooLong);
            }
            self.partial.extend_from_slice(head);
            let len = strip_cr(&self.partial).len();
            if len > self.max_line {
                self.clear_partial();
                return Some(Frame::TooLong);
            }
            self.handed_out = true;
            return Some(Frame::Line(&self.partial[..len]));
        }
    }

    /// Empties the buffer, giving its memory back if it grew past a short
    /// line: a client that once sent a long line does not keep room for
    /// one while it is quiet.
    fn clear_partial(&mut self) {
        if self.partial.capacity() > KEPT_CAPACITY {
            self.partial = Vec::new();
        } else {
            self.partial.clear();
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

/// Room for a split line that the framer keeps once the line is done.
const KEPT_CAPACITY: usize = 256;

fn find_lf(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Most combining marks (general category M) kept in a row (protocol.md,
/// "Sanitizing", rule 4); the marks after them in the same run are removed.
pub const MAX_MARKS: usize = 4;

/// The Hangul fillers (protocol.md, "Sanitizing", rule 2): letters (Lo, so
/// they pass `char::is_alphanumeric` and could make a blank nick) that
/// render as blanks. Listed by hand, from the spec: no general category
/// singles them out and unicode-properties exposes no property that does.
pub const FILLERS: [char; 4] = ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}'];

/// ZERO WIDTH NON-JOINER, kept between visible characters (rule 3).
pub const ZWNJ: char = '\u{200c}';
/// ZERO WIDTH JOINER, kept between visible characters (rule 3).
pub const ZWJ: char = '\u{200d}';

/// What sanitizing makes of one character, before looking at its neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Replaced by U+FFFD wherever it stands.
    Forbidden,
    /// ZWJ or ZWNJ: kept or replaced depending on its neighbours.
    Joiner,
    /// A combining mark: kept unless it is past the cap of its run.
    Mark,
    /// Whitespace that is not forbidden (TAB, spaces).
    Space,
    /// Anything else: kept as is.
    Visible,
}

impl Class {
    /// A neighbour that lets a joiner stay: not whitespace, not forbidden,
    /// not itself a joiner.
    fn visible(self) -> bool {
        matches!(self, Class::Mark | Class::Visible)
    }
}

fn classify(c: char) -> Class {
    use unicode_properties::{GeneralCategory as Gc, UnicodeGeneralCategory};
    if c.is_ascii() {
        return match c {
            '\t' | ' ' => Class::Space,
            _ if c.is_ascii_control() => Class::Forbidden,
            _ => Class::Visible,
        };
    }
    match c.general_category() {
        Gc::Control | Gc::LineSeparator | Gc::ParagraphSeparator => Class::Forbidden,
        Gc::Format if c == ZWJ || c == ZWNJ => Class::Joiner,
        Gc::Format => Class::Forbidden,
        Gc::NonspacingMark | Gc::SpacingMark | Gc::EnclosingMark => Class::Mark,
        _ if FILLERS.contains(&c) => Class::Forbidden,
        _ if c.is_whitespace() => Class::Space,
        _ => Class::Visible,
    }
}

/// Whether `c` is replaced by U+FFFD wherever it stands (protocol.md,
/// "Sanitizing", rule 2): controls (general category Cc) but TAB, format
/// characters (Cf) but ZWJ and ZWNJ, line and paragraph separators (Zl, Zp)
/// and the Hangul [`FILLERS`]. The bidi controls are format characters.
pub fn is_forbidden(c: char) -> bool {
    classify(c) == Class::Forbidden
}

/// Whether `c` is ZWJ or ZWNJ, kept only between two visible characters
/// (protocol.md, "Sanitizing", rule 3; see [`sanitize`]).
pub fn is_joiner(c: char) -> bool {
    c == ZWJ || c == ZWNJ
}

/// Whether `c` is a combining mark (general category Mn, Mc or Me), of
/// which at most [`MAX_MARKS`] are kept in a row.
pub fn is_combining_mark(c: char) -> bool {
    classify(c) == Class::Mark
}

/// Sanitizes one raw line (protocol.md, "Sanitizing"): invalid UTF-8 and
/// forbidden characters become U+FFFD, a joiner (ZWJ, ZWNJ) does too unless
/// the characters on both sides are visible and the one after is not a
/// combining mark, only the first [`MAX_MARKS`] of a run of combining marks
/// are kept, then trailing whitespace is trimmed.
///
/// Borrows when nothing needs replacing, which is the common case. The
/// result is never more than three times as long as `raw`: only invalid
/// bytes grow (one byte to three), a replaced character of two to four bytes
/// becomes three, and marks are only ever removed.
pub fn sanitize(raw: &[u8]) -> Cow<'_, str> {
    // Fast path: printable ASCII and TAB need no replacing at all. Checked
    // without an early exit so that it compiles to SIMD.
    let printable_ascii = raw.iter().fold(true, |ok, &b| {
        ok & (b.wrapping_sub(b' ') < 0x5f || b == b'\t')
    });
    if printable_ascii {
        let text = std::str::from_utf8(raw).unwrap_or_default();
        return Cow::Borrowed(text.trim_end_matches(char::is_whitespace));
    }
    let clean = match String::from_utf8_lossy(raw) {
        Cow::Borrowed(text) => clean_chars(text),
        Cow::Owned(text) => match clean_chars(&text) {
            Cow::Borrowed(_) => Cow::Owned(text),
            Cow::Owned(cleaner) => Cow::Owned(cleaner),
        },
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

/// Rules 2 to 4 of "Sanitizing" on valid text, copying only if something
/// changes: each replaced or removed character ends an unchanged span.
fn clean_chars(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    let mut changed = false;
    let mut prev = Class::Space;
    let mut marks = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let class = classify(c);
        marks = if class == Class::Mark { marks + 1 } else { 0 };
        let replacement = match class {
            Class::Space | Class::Visible => None,
            Class::Forbidden => Some("\u{fffd}"),
            Class::Mark if marks > MAX_MARKS => Some(""),
            Class::Mark => None,
            Class::Joiner => {
                let next = chars.peek().map(|&(_, n)| classify(n));
                if prev.visible() && next == Some(Class::Visible) {
                    None
                } else {
                    Some("\u{fffd}")
                }
            }
        };
        prev = class;
        if let Some(replacement) = replacement {
            out.push_str(&text[copied..at]);
            out.push_str(replacement);
            copied = at + c.len_utf8();
            changed = true;
        }
    }
    if !changed {
        return Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    //! Unit tests of framing and sanitizing, each citing the protocol.md
    //! section it checks.

    use super::*;

    /// Feeds `reads` in order and collects what the framer hands out:
    /// `Some(line)` for a line, `None` for a too-long report; then EOF.
    fn frames(max_line: usize, reads: &[&[u8]]) -> (Vec<Option<Vec<u8>>>, Option<Vec<u8>>) {
        let mut framer = LineFramer::new(max_line);
        let mut out = Vec::new();
        for read in reads {
            let mut input: &[u8] = read;
            while let Some(frame) = framer.next_frame(&mut input) {
                out.push(match frame {
                    Frame::Line(line) => Some(line.to_vec()),
                    Frame::TooLong => None,
                });
            }
            assert!(input.is_empty(), "every byte consumed");
            assert!(framer.buffered() <= max_line + 1, "buffer over max + 1");
        }
        let last = framer.finish().map(<[u8]>::to_vec);
        (out, last)
    }

    fn line(text: &str) -> Option<Vec<u8>> {
        Some(text.as_bytes().to_vec())
    }

    /// Framing: lines end at LF; one CR right before it is dropped, any
    /// other CR stays (to be sanitized).
    #[test]
    fn framing_lf_and_cr() {
        let (out, last) = frames(16, &[b"a\nb\r\nc\rd\ne\r\r\n\r\n\n"]);
        assert_eq!(
            out,
            [
                line("a"),
                line("b"),
                line("c\rd"),
                line("e\r"),
                line(""),
                line("")
            ]
        );
        assert_eq!(last, None);
    }

    /// Framing: a client that once sent a long line, split over reads (or
    /// too long), does not keep room for one once it is done.
    #[test]
    fn framing_buffer_shrinks_after_a_long_line() {
        for tail in [&b"\n"[..], b"y\n"] {
            let mut framer = LineFramer::new(4096);
            let long = vec![b'x'; 4096];
            let mut input: &[u8] = &long;
            assert!(framer.next_frame(&mut input).is_none());
            assert!(framer.partial.capacity() >= 4096);
            let mut input = tail;
            // The line, or its too-long report, then nothing buffered.
            assert!(framer.next_frame(&mut input).is_some());
            let mut input: &[u8] = b"hi";
            assert!(framer.next_frame(&mut input).is_none());
            assert!(framer.partial.capacity() <= KEPT_CAPACITY, "kept room");
            assert_eq!(framer.buffered(), 2);
        }
    }

    /// Framing: the result never depends on how the stream was split.
    #[test]
    fn framing_split_independent() {
        let stream: &[u8] = b"one\r\n0123456789abcdef\r\n0123456789abcdefg\nx\r\r\ntail\r";
        let whole = frames(16, &[stream]);
        assert_eq!(
            whole,
            (
                vec![line("one"), line("0123456789abcdef"), None, line("x\r")],
                line("tail")
            )
        );
        for at in 0..=stream.len() {
            let (x, y) = stream.split_at(at);
            assert_eq!(frames(16, &[x, y]), whole, "split at {at}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(16, &bytes), whole, "byte by byte");
    }

    /// Framing, max line: exactly max passes, max + CR passes, max + 1 fails;
    /// the too-long report comes once, as soon as it is known.
    #[test]
    fn framing_max_line_boundaries() {
        let max = "m".repeat(16);
        let over = "m".repeat(17);
        assert_eq!(frames(16, &[format!("{max}\n").as_bytes()]).0, [line(&max)]);
        assert_eq!(
            frames(16, &[format!("{max}\r\n").as_bytes()]).0,
            [line(&max)]
        );
        assert_eq!(frames(16, &[format!("{over}\n").as_bytes()]).0, [None]);
        assert_eq!(frames(16, &[format!("{max}\r\r\n").as_bytes()]).0, [None]);
        // Known too long before the LF: reported at once, then skipped.
        let mut framer = LineFramer::new(16);
        let mut input = over.as_bytes();
        assert_eq!(framer.next_frame(&mut input), Some(Frame::TooLong));
        assert_eq!(framer.next_frame(&mut input), None);
        assert!(framer.in_line());
        assert_eq!(framer.buffered(), 0);
        for _ in 0..100 {
            let mut more: &[u8] = b"more bytes";
            assert_eq!(framer.next_frame(&mut more), None);
        }
        let mut rest: &[u8] = b"x\nnext\n";
        assert_eq!(framer.next_frame(&mut rest), Some(Frame::Line(b"next")));
        assert_eq!(framer.next_frame(&mut rest), None);
        assert!(!framer.in_line());
        // Max bytes and a CR: not known to be too long yet.
        let mut framer = LineFramer::new(16);
        let held = format!("{max}\r");
        let mut input = held.as_bytes();
        assert_eq!(framer.next_frame(&mut input), None);
        assert_eq!(framer.buffered(), 17);
        let mut lf: &[u8] = b"\n";
        assert_eq!(
            framer.next_frame(&mut lf),
            Some(Frame::Line(max.as_bytes()))
        );
    }

    /// Framing, max line: never more than max + 1 bytes buffered while a
    /// long line streams in, in reads of any size.
    #[test]
    fn framing_buffer_bounded() {
        for read in [1, 7, 16, 17, 100, 4096] {
            let chunk = vec![b'z'; read];
            let reads: Vec<&[u8]> = std::iter::repeat_n(chunk.as_slice(), 50)
                .chain([b"\nok\n".as_slice()])
                .collect();
            let (out, _) = frames(16, &reads);
            let want = if read * 50 > 16 {
                vec![None, line("ok")]
            } else {
                vec![line(&"z".repeat(read * 50)), line("ok")]
            };
            assert_eq!(out, want, "reads of {read}");
        }
    }

    /// Framing: on EOF an unterminated line counts as a line (final CR
    /// dropped); a line being discarded does not.
    #[test]
    fn framing_eof() {
        assert_eq!(frames(16, &[b"done"]).1, line("done"));
        assert_eq!(frames(16, &[b"done\r"]).1, line("done"));
        assert_eq!(frames(16, &[b"done\n"]).1, None);
        assert_eq!(frames(16, &[b"", b""]).1, None);
        assert_eq!(frames(16, &[b"0123456789abcdefg"]), (vec![None], None));
        assert_eq!(
            frames(16, &[b"0123456789abcdef", b"\r"]).1,
            line("0123456789abcdef")
        );
    }

    /// Sanitizing 1: invalid UTF-8 as `String::from_utf8_lossy`.
    #[test]
    fn sanitizing_invalid_utf8() {
        for raw in [
            &b"a\xffb"[..],
            b"\xe2\x82",
            b"\xe2\x82x",
            b"\xf0\x9f\x98",
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\x80ok",
        ] {
            assert_eq!(sanitize(raw), String::from_utf8_lossy(raw), "{raw:?}");
        }
    }

    /// Sanitizing 2: exactly the controls but TAB, the format characters
    /// but the joiners, the separators Zl and Zp and the Hangul fillers are
    /// forbidden; a joiner between letters and a mark after a letter stay.
    #[test]
    fn sanitizing_forbidden_set() {
        use unicode_properties::{GeneralCategory as Gc, UnicodeGeneralCategory};
        let planes = ('\0'..='\u{30ff}').chain('\u{fe00}'..='\u{ffff}');
        for c in planes.chain('\u{e0000}'..='\u{e01ff}') {
            let gc = c.general_category();
            let joiner = c == '\u{200c}' || c == '\u{200d}';
            let want = (gc == Gc::Control && c != '\t')
                || (gc == Gc::Format && !joiner)
                || matches!(gc, Gc::LineSeparator | Gc::ParagraphSeparator)
                || matches!(c, '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}');
            assert_eq!(is_forbidden(c), want, "{c:?}");
            assert_eq!(is_joiner(c), joiner, "{c:?}");
            let mark = matches!(gc, Gc::NonspacingMark | Gc::SpacingMark | Gc::EnclosingMark);
            assert_eq!(is_combining_mark(c), mark, "{c:?}");
            let text = format!("a{c}b");
            let clean = sanitize(text.as_bytes());
            let expect = if want {
                "a\u{fffd}b".to_owned()
            } else {
                text.clone()
            };
            assert_eq!(clean, expect, "{c:?}");
        }
        for c in [
            '\u{61c}',
            '\u{200b}',
            '\u{200e}',
            '\u{2028}',
            '\u{feff}',
            '\u{e0041}',
        ] {
            assert!(is_forbidden(c), "{c:?}");
        }
        assert!(!is_forbidden('\u{2800}'), "braille blank is kept");
    }

    /// Sanitizing 3: a joiner stays only between two visible characters,
    /// the one after not a mark.
    #[test]
    fn sanitizing_joiners() {
        for (raw, want) in [
            ("a\u{200d}b", "a\u{200d}b"),
            ("\u{301}\u{200c}b", "\u{301}\u{200c}b"),
            ("\u{200d}b", "\u{fffd}b"),
            ("a\u{200d}", "a\u{fffd}"),
            ("a\u{200d} b", "a\u{fffd} b"),
            ("a \u{200d}b", "a \u{fffd}b"),
            ("a\u{200d}\u{200d}b", "a\u{fffd}\u{fffd}b"),
            ("a\u{200b}\u{200d}b", "a\u{fffd}\u{fffd}b"),
            ("a\u{200d}\u{301}", "a\u{fffd}\u{301}"),
            ("\u{fffd}\u{200d}\u{fffd}", "\u{fffd}\u{200d}\u{fffd}"),
        ] {
            assert_eq!(sanitize(raw.as_bytes()), want, "{raw:?}");
        }
        assert_eq!(
            sanitize(b"\xff\xe2\x80\x8d\xff"),
            "\u{fffd}\u{200d}\u{fffd}"
        );
    }

    /// Sanitizing 4: of a run of marks the first four stay, with or without
    /// a base; anything but a mark starts a new run.
    #[test]
    fn sanitizing_mark_cap() {
        let m = "\u{301}";
        assert_eq!(
            sanitize(format!("a{}", m.repeat(4)).as_bytes()),
            format!("a{}", m.repeat(4))
        );
        assert_eq!(
            sanitize(format!("a{}b", m.repeat(9)).as_bytes()),
            format!("a{}b", m.repeat(4))
        );
        assert_eq!(sanitize(m.repeat(9).as_bytes()), m.repeat(4));
        let split = format!("a{m}{m}{m}{m}\u{200b}{m}{m}{m}{m}{m}");
        assert_eq!(
            sanitize(split.as_bytes()),
            format!("a{0}\u{fffd}{0}", m.repeat(4))
        );
        let joined = format!("a{m}{m}{m}{m}{m}\u{200d}b");
        assert_eq!(
            sanitize(joined.as_bytes()),
            format!("a{}\u{200d}b", m.repeat(4))
        );
    }

    /// Sanitizing 5: trailing whitespace trimmed (after replacing controls),
    /// leading whitespace kept.
    #[test]
    fn sanitizing_trim() {
        assert_eq!(sanitize(b"hi \t "), "hi");
        assert_eq!(sanitize("hi\u{a0}\u{3000}".as_bytes()), "hi");
        assert_eq!(sanitize(b"  hi"), "  hi");
        assert_eq!(sanitize(b" \t "), "");
        assert_eq!(sanitize(b""), "");
        assert_eq!(sanitize(b"hi\x0b"), "hi\u{fffd}");
        assert_eq!(sanitize(b"\x1b[31mred \xff "), "\u{fffd}[31mred \u{fffd}");
    }
}
