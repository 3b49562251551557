//! A fixed-size read buffer that splits received bytes into lines.

/// Bytes kept of a line longer than the whole buffer: its head is dropped,
/// its tail (where the token is) is kept.
pub const KEEP_TAIL: usize = 256;
/// Smallest accepted buffer size.
pub const MIN_BUF: usize = 4 * KEEP_TAIL;

/// Read buffer with line splitting; partial lines carry over between reads.
#[derive(Debug)]
pub struct LineBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl LineBuf {
    /// A buffer of `size` bytes (at least [`MIN_BUF`]).
    pub fn new(size: usize) -> Self {
        Self {
            buf: vec![0; size.max(MIN_BUF)],
            start: 0,
            end: 0,
        }
    }

    /// Free space to read into. Moves a partial line to the front first if
    /// needed; a partial line filling the whole buffer is cut to its tail.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.end == self.buf.len() {
            let keep_from = if self.start == 0 {
                self.end - KEEP_TAIL
            } else {
                self.start
            };
            self.buf.copy_within(keep_from..self.end, 0);
            self.end -= keep_from;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`Self::spare`] as filled.
    pub fn commit(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Calls `f` on each complete line (without its LF) and consumes it.
    pub fn drain_lines(&mut self, mut f: impl FnMut(&[u8])) {
        let data = &self.buf[self.start..self.end];
        let mut pos = 0;
        for nl in memchr::memchr_iter(b'\n', data) {
            f(&data[pos..nl]);
            pos = nl + 1;
        }
        self.start += pos;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lb: &mut LineBuf, mut data: &[u8], chunk: usize, out: &mut Vec<Vec<u8>>) {
        while !data.is_empty() {
            let spare = lb.spare();
            let n = spare.len().min(chunk).min(data.len());
            spare[..n].copy_from_slice(&data[..n]);
            lb.commit(n);
            data = &data[n..];
            lb.drain_lines(|l| out.push(l.to_vec()));
        }
    }

    #[test]
    fn lines_split_across_reads() {
        let text: Vec<u8> = (0..500)
            .flat_map(|i| format!("line number {i}\n").into_bytes())
            .collect();
        for chunk in [1, 3, 7, 100, 5000] {
            let mut lb = LineBuf::new(MIN_BUF);
            let mut out = Vec::new();
            feed(&mut lb, &text, chunk, &mut out);
            assert_eq!(out.len(), 500, "chunk {chunk}");
            assert_eq!(out[0], b"line number 0");
            assert_eq!(out[499], b"line number 499");
        }
    }

    #[test]
    fn overlong_line_keeps_its_tail() {
        let mut text = vec![b'a'; 10 * MIN_BUF];
        text.extend_from_slice(b"TAIL\nnext\n");
        let mut lb = LineBuf::new(MIN_BUF);
        let mut out = Vec::new();
        feed(&mut lb, &text, 999, &mut out);
        assert_eq!(out.len(), 2);
        assert!(out[0].ends_with(b"aaaTAIL"));
        assert!(out[0].len() >= KEEP_TAIL && out[0].len() <= MIN_BUF);
        assert_eq!(out[1], b"next");
    }
}
