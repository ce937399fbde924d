//! Newline-delimited messages (the MCP stdio transport: "messages are delimited by
//! newlines, and MUST NOT contain embedded newlines"), read with a bound on their length so
//! that neither side can make the gateway hold an unbounded line.

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _};

/// The longest line relayed, in bytes (16 MiB). A longer line is dropped whole and
/// reported ([`Line::TooLong`]); reading resumes after its newline, so the stream stays in
/// step.
pub const MAX_LINE: usize = 16 * 1024 * 1024;

/// One read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// A line, without its `\n` (and without a `\r` before it).
    Data(Vec<u8>),
    /// A line over the bound, discarded; its length.
    TooLong(usize),
    /// The end of the stream.
    Eof,
}

/// Reads the next line of at most `max` bytes. A last line without a newline is a line.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut buf = Vec::new();
    let mut len = 0usize;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            if len == 0 {
                return Ok(Line::Eof);
            }
            break;
        }
        let (chunk, found) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (available.get(..i).unwrap_or_default(), Some(i)),
            None => (available, None),
        };
        len = len.saturating_add(chunk.len());
        if len <= max {
            buf.extend_from_slice(chunk);
        } else {
            buf = Vec::new();
        }
        let used = found.map_or(available.len(), |i| i.saturating_add(1));
        r.consume(used);
        if found.is_some() {
            break;
        }
    }
    if len > max {
        return Ok(Line::TooLong(len));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Line::Data(buf))
}
