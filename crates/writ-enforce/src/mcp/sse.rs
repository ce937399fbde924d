//! Server-sent events as the Streamable HTTP transport carries them (the `text/event-stream`
//! format of the WHATWG HTML standard, section 9.2 "Server-sent events"), split into events
//! **without re-encoding them**: the gateway relays every event's bytes as they came and
//! rewrites only the `data` of the few it must (a filtered `tools/list`, the `initialize`
//! result). The parsers on crates.io hand back decoded fields only, which would re-encode
//! every event (losing comments, the line endings, and a BOM); hence this small splitter.
//!
//! Lines end with CRLF, LF or CR; an empty line ends an event. Events are bounded: one over
//! the bound is discarded whole and reported ([`Piece::TooLong`]), and splitting resumes at
//! the next event, so the stream stays in step.

/// One piece of an event stream.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A whole event (its terminating empty line included).
    Event(Event),
    /// An event over the bound, discarded; its length.
    TooLong(usize),
}

/// One event: its bytes exactly as received.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Event {
    pub(crate) raw: Vec<u8>,
}

/// The lines of `raw` (without their terminators), empty lines included.
fn lines(raw: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = raw;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = rest.iter().position(|b| *b == b'\r' || *b == b'\n').unwrap_or(rest.len());
        let (line, tail) = rest.split_at(end);
        rest = match tail {
            [b'\r', b'\n', more @ ..] | [b'\r', more @ ..] | [b'\n', more @ ..] => more,
            _ => &[],
        };
        Some(line)
    })
}

/// A field line's name and value (one leading space of the value removed); `None` for a
/// comment or an empty line.
fn field(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line.strip_prefix("\u{feff}".as_bytes()).unwrap_or(line);
    if line.is_empty() || line.first() == Some(&b':') {
        return None;
    }
    match line.iter().position(|b| *b == b':') {
        Some(i) => {
            let (name, value) = line.split_at(i);
            let value = value.get(1..).unwrap_or_default();
            Some((name, value.strip_prefix(b" ").unwrap_or(value)))
        }
        None => Some((line, &[])),
    }
}

impl Event {
    /// The event's data (its `data` lines joined with `\n`), `None` when it has none.
    pub(crate) fn data(&self) -> Option<Vec<u8>> {
        let mut data: Option<Vec<u8>> = None;
        for (name, value) in lines(&self.raw).filter_map(field) {
            if name == b"data" {
                match &mut data {
                    Some(d) => {
                        d.push(b'\n');
                        d.extend_from_slice(value);
                    }
                    None => data = Some(value.to_vec()),
                }
            }
        }
        data
    }

    /// The event with its data replaced by `data` (one line: JSON text has no raw line
    /// break), every other line kept in its place, and LF line endings.
    pub(crate) fn with_data(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.raw.len() + data.len());
        let mut written = false;
        for line in lines(&self.raw).filter(|l| !l.is_empty()) {
            if field(line).is_some_and(|(name, _)| name == b"data") {
                if written {
                    continue;
                }
                written = true;
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(data);
            } else {
                out.extend_from_slice(line);
            }
            out.push(b'\n');
        }
        if !written {
            out.extend_from_slice(b"data: ");
            out.extend_from_slice(data);
            out.push(b'\n');
        }
        out.push(b'\n');
        out
    }
}

/// A `message` event carrying `data` (one line), encoded.
pub(crate) fn encode(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 24);
    out.extend_from_slice(b"event: message\ndata: ");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}

/// Splits a byte stream into events, whatever its chunking.
#[derive(Debug)]
pub(crate) struct Splitter {
    max: usize,
    /// The bytes of the event being read (empty while discarding one over the bound).
    buf: Vec<u8>,
    /// The length of the event being read.
    len: usize,
    /// The length of its current line.
    line: usize,
    /// The last byte was a CR: an LF right after it belongs to the same line ending.
    after_cr: bool,
}

impl Splitter {
    /// A splitter of events of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        Splitter { max, buf: Vec::new(), len: 0, line: 0, after_cr: false }
    }

    /// Takes the next chunk of the stream; the events it completes.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut end_at_lf = false;
        for (i, &b) in chunk.iter().enumerate() {
            let cr_lf = self.after_cr && b == b'\n';
            self.after_cr = b == b'\r';
            self.len = self.len.saturating_add(1);
            if self.len <= self.max {
                self.buf.push(b);
            } else if !self.buf.is_empty() {
                self.buf = Vec::new();
            }
            if cr_lf {
                // The LF of a CRLF whose CR ended the line already. When that line ended an
                // event, the event ends after the LF if it came in the same chunk; otherwise
                // it was passed on at the CR and the LF leads the next event's bytes.
                if std::mem::take(&mut end_at_lf) {
                    out.push(self.take());
                }
                continue;
            }
            if b == b'\r' || b == b'\n' {
                if self.line == 0 && self.len > 1 {
                    if b == b'\r' && chunk.get(i.saturating_add(1)) == Some(&b'\n') {
                        end_at_lf = true;
                    } else {
                        out.push(self.take());
                    }
                }
                self.line = 0;
            } else {
                self.line = self.line.saturating_add(1);
            }
        }
        out
    }

    /// The end of the stream: what is left is not an event (an unfinished event is not
    /// dispatched); its bytes, to be relayed as they are.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let rest = std::mem::take(&mut self.buf);
        self.len = 0;
        self.line = 0;
        rest
    }

    fn take(&mut self) -> Piece {
        let len = std::mem::replace(&mut self.len, 0);
        let raw = std::mem::take(&mut self.buf);
        if len > self.max { Piece::TooLong(len) } else { Piece::Event(Event { raw }) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(input: &[u8], chunk: usize, max: usize) -> (Vec<Piece>, Vec<u8>) {
        let mut s = Splitter::new(max);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            out.extend(s.push(c));
        }
        (out, s.finish())
    }

    fn raws(pieces: &[Piece]) -> Vec<u8> {
        pieces
            .iter()
            .flat_map(|p| match p {
                Piece::Event(e) => e.raw.clone(),
                Piece::TooLong(_) => Vec::new(),
            })
            .collect()
    }

    #[test]
    fn events_are_split_whatever_the_chunks_and_line_endings_and_relayed_byte_for_byte() {
        let input: &[u8] =
            b"id: 1\nevent: message\ndata: {\"a\":1}\n\n: keep-alive\n\nid: 2\r\ndata: x\r\ndata: y\r\n\r\nid: 3\rdata: z\r\rtail";
        for chunk in 1..input.len() {
            let (pieces, rest) = split(input, chunk, 1 << 20);
            assert_eq!(pieces.len(), 4, "chunk {chunk}: {pieces:?}");
            let mut all = raws(&pieces);
            all.extend(&rest);
            assert_eq!(all, input, "chunk {chunk}");
            assert_eq!(rest, b"tail");
            let Piece::Event(e) = &pieces[0] else { panic!() };
            assert_eq!(e.data().unwrap(), b"{\"a\":1}");
            let Piece::Event(e) = &pieces[1] else { panic!() };
            assert_eq!(e.data(), None);
            let Piece::Event(e) = &pieces[2] else { panic!() };
            assert_eq!(e.data().unwrap(), b"x\ny");
            let Piece::Event(e) = &pieces[3] else { panic!() };
            assert_eq!(e.data().unwrap(), b"z");
        }
    }

    #[test]
    fn a_crlf_split_after_the_cr_ending_an_event_stays_with_the_stream() {
        let input: &[u8] = b"data: a\r\n\r\ndata: b\r\n\r\n";
        for chunk in 1..input.len() {
            let (pieces, rest) = split(input, chunk, 100);
            assert_eq!(pieces.len(), 2, "chunk {chunk}: {pieces:?}");
            let mut all = raws(&pieces);
            all.extend(&rest);
            assert_eq!(all, input);
            let Piece::Event(e) = &pieces[1] else { panic!() };
            assert_eq!(e.data().unwrap(), b"b");
        }
        // In one chunk, an event's closing CRLF stays with it.
        let (pieces, rest) = split(input, input.len(), 100);
        assert_eq!(pieces[0], Piece::Event(Event { raw: b"data: a\r\n\r\n".to_vec() }));
        assert_eq!(pieces[1], Piece::Event(Event { raw: b"data: b\r\n\r\n".to_vec() }));
        assert!(rest.is_empty());
    }

    #[test]
    fn an_event_over_the_bound_is_dropped_and_the_next_one_kept() {
        let input: &[u8] = b"data: 0123456789012345678901234567890123456789\n\ndata: ok\n\n";
        for chunk in [1, 3, 7, 100] {
            let (pieces, rest) = split(input, chunk, 20);
            assert_eq!(pieces.len(), 2, "{pieces:?}");
            assert_eq!(pieces[0], Piece::TooLong(48));
            let Piece::Event(e) = &pieces[1] else { panic!() };
            assert_eq!(e.data().unwrap(), b"ok");
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn fields_follow_the_standard() {
        let e = Event { raw: b"\xef\xbb\xbfdata:no-space\ndata\ndata:  two\n:comment\n\n".to_vec() };
        assert_eq!(e.data().unwrap(), b"no-space\n\n two");
        let rewritten = e.with_data(b"{}");
        assert_eq!(rewritten, b"data: {}\n:comment\n\n");
        let e = Event { raw: b"\nid: 7\r\nevent: message\r\ndata: {\"x\":1}\r\n\r\n".to_vec() };
        assert_eq!(e.with_data(b"{\"y\":2}"), b"id: 7\nevent: message\ndata: {\"y\":2}\n\n");
        assert_eq!(Event { raw: b"id: 1\n\n".to_vec() }.with_data(b"1"), b"id: 1\ndata: 1\n\n");
        assert_eq!(encode(b"{}"), b"event: message\ndata: {}\n\n");
    }
}
