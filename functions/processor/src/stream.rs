//! Plain text and Markdown analysed as a stream, in bounded memory: the
//! bytes go through once, in pieces of any size, and the counts come out
//! exactly as [`text::chunk`](crate::text::chunk) and friends give them for
//! the whole text (property-tested against it). Memory does not grow with
//! the input: a paragraph is never held, only counts about it.

use sha2::{Digest, Sha256};

/// Counts of a text as it streams by.
pub struct TextStream {
    /// Bytes of an incomplete UTF-8 sequence at the end of the last piece.
    utf8_tail: Vec<u8>,
    /// A `\r` waiting to see whether a `\n` follows (`\r\n` counts as `\n`).
    pending_cr: bool,
    /// A `\n` waiting to see whether it starts a `\n\n` paragraph break.
    pending_newline: bool,
    sha256: Sha256,
    characters: usize,
    words: usize,
    in_word: bool,
    chunks: Chunks,
    para: Paragraph,
}

/// Not UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotUtf8;

/// What a finished stream came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub chunks: usize,
    pub characters: usize,
    pub words: usize,
    pub sha256: String,
}

impl TextStream {
    pub fn new(max_chars: usize) -> Self {
        let max = max_chars.max(1);
        Self {
            utf8_tail: Vec::new(),
            pending_cr: false,
            pending_newline: false,
            sha256: Sha256::new(),
            characters: 0,
            words: 0,
            in_word: false,
            chunks: Chunks {
                max,
                done: 0,
                current: 0,
            },
            para: Paragraph::new(max),
        }
    }

    /// Feeds the next bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), NotUtf8> {
        self.sha256.update(bytes);
        let joined;
        let bytes = if self.utf8_tail.is_empty() {
            bytes
        } else {
            joined = [std::mem::take(&mut self.utf8_tail).as_slice(), bytes].concat();
            &joined[..]
        };
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() => {
                // an incomplete sequence at the end: keep it for the next piece
                let (valid, tail) = bytes.split_at(e.valid_up_to());
                self.utf8_tail = tail.to_vec();
                std::str::from_utf8(valid).map_err(|_| NotUtf8)?
            }
            Err(_) => return Err(NotUtf8),
        };
        for c in text.chars() {
            self.normalise(c);
        }
        Ok(())
    }

    /// `\r\n` → `\n`.
    fn normalise(&mut self, c: char) {
        if std::mem::take(&mut self.pending_cr) {
            if c == '\n' {
                return self.split(c);
            }
            self.split('\r');
        }
        if c == '\r' {
            self.pending_cr = true;
        } else {
            self.split(c);
        }
    }

    /// `\n\n` separates paragraphs (as `str::split("\n\n")` does).
    fn split(&mut self, c: char) {
        self.characters += 1;
        let ws = c.is_whitespace();
        if !ws && !self.in_word {
            self.words += 1;
        }
        self.in_word = !ws;
        if c == '\n' {
            if std::mem::take(&mut self.pending_newline) {
                self.para.end(&mut self.chunks);
            } else {
                self.pending_newline = true;
            }
            return;
        }
        if std::mem::take(&mut self.pending_newline) {
            self.para.push('\n', &mut self.chunks);
        }
        self.para.push(c, &mut self.chunks);
    }

    /// The counts; `NotUtf8` if the text ended inside a character.
    pub fn finish(mut self) -> Result<Counts, NotUtf8> {
        if !self.utf8_tail.is_empty() {
            return Err(NotUtf8);
        }
        if std::mem::take(&mut self.pending_cr) {
            self.split('\r');
        }
        if std::mem::take(&mut self.pending_newline) {
            self.para.push('\n', &mut self.chunks);
        }
        self.para.end(&mut self.chunks);
        Ok(Counts {
            chunks: self.chunks.finish(),
            characters: self.characters,
            words: self.words,
            sha256: hex::encode(self.sha256.finalize()),
        })
    }
}

/// Pieces joined into chunks of at most `max` characters, `\n\n` between.
struct Chunks {
    max: usize,
    done: usize,
    current: usize,
}

impl Chunks {
    fn piece(&mut self, len: usize) {
        if self.current > 0 && self.current + 2 + len > self.max {
            self.done += 1;
            self.current = 0;
        }
        if self.current > 0 {
            self.current += 2;
        }
        self.current += len;
    }

    fn finish(self) -> usize {
        self.done + usize::from(self.current > 0)
    }
}

/// One paragraph as it streams: its trimmed length, and the pieces word mode
/// would cut it into (held back, at most `max` characters' worth, until the
/// paragraph is known to be longer than `max`).
struct Paragraph {
    max: usize,
    /// Characters after the leading whitespace.
    body: usize,
    /// Whitespace at the end of `body` so far.
    trailing_ws: usize,
    /// Word mode for certain (the trimmed paragraph is longer than `max`).
    long: bool,
    /// Piece lengths word mode produced while the paragraph might still fit.
    held: Vec<usize>,
    /// The piece being built: its length and whether it ends a sentence.
    piece: usize,
    piece_sentence_end: bool,
    /// The word being read: its length and last character.
    word: usize,
    word_last: char,
}

impl Paragraph {
    fn new(max: usize) -> Self {
        Self {
            max,
            body: 0,
            trailing_ws: 0,
            long: false,
            held: Vec::new(),
            piece: 0,
            piece_sentence_end: false,
            word: 0,
            word_last: ' ',
        }
    }

    fn trimmed(&self) -> usize {
        self.body - self.trailing_ws
    }

    fn push(&mut self, c: char, chunks: &mut Chunks) {
        if c.is_whitespace() {
            if self.body > 0 {
                self.body += 1;
                self.trailing_ws += 1;
            }
            self.end_word(chunks);
            return;
        }
        self.body += 1;
        self.trailing_ws = 0;
        if !self.long && self.trimmed() > self.max {
            // longer than a chunk: the pieces word mode cut so far are final
            self.long = true;
            for len in self.held.drain(..) {
                chunks.piece(len);
            }
        }
        self.word += 1;
        self.word_last = c;
        // a word longer than a chunk is cut every `max` characters
        if self.word > self.max {
            if self.piece > 0 {
                let len = std::mem::take(&mut self.piece);
                self.emit(len, chunks);
            }
            self.emit(self.max, chunks);
            self.word -= self.max;
        }
    }

    fn end_word(&mut self, chunks: &mut Chunks) {
        let word = std::mem::take(&mut self.word);
        if word == 0 {
            return;
        }
        if self.piece > 0
            && (self.piece + 1 + word > self.max || (self.piece_sentence_end && self.piece > self.max * 3 / 4))
        {
            let len = std::mem::take(&mut self.piece);
            self.emit(len, chunks);
        }
        if self.piece > 0 {
            self.piece += 1;
        }
        self.piece += word;
        self.piece_sentence_end = matches!(self.word_last, '.' | '!' | '?');
    }

    fn emit(&mut self, len: usize, chunks: &mut Chunks) {
        if self.long {
            chunks.piece(len);
        } else {
            self.held.push(len);
        }
    }

    /// The paragraph ended: one piece if it fits a chunk, else its words' pieces.
    fn end(&mut self, chunks: &mut Chunks) {
        self.end_word(chunks);
        let trimmed = self.trimmed();
        if self.long {
            if self.piece > 0 {
                chunks.piece(self.piece);
            }
        } else if trimmed > 0 {
            chunks.piece(trimmed);
        }
        *self = Paragraph::new(self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::chunk;
    use proptest::prelude::*;

    /// The whole-text counts the streamed ones must equal.
    fn whole(text: &str, max: usize) -> (usize, usize, usize) {
        let text = text.replace("\r\n", "\n");
        (
            chunk(&text, max).len(),
            text.chars().count(),
            text.split_whitespace().count(),
        )
    }

    fn streamed(bytes: &[u8], cuts: &[usize], max: usize) -> Result<Counts, NotUtf8> {
        let mut s = TextStream::new(max);
        let mut at = 0;
        for &cut in cuts {
            let end = (at + cut).min(bytes.len());
            s.push(&bytes[at..end])?;
            at = end;
        }
        s.push(&bytes[at..])?;
        s.finish()
    }

    #[test]
    fn the_examples_of_chunk_stream_alike() {
        for (text, max) in [
            ("First paragraph.\n\nSecond one.\n\n\n\nThird paragraph is here.", 30),
            ("word ".repeat(100).as_str(), 50),
            ("x".repeat(120).as_str(), 50),
            ("", 10),
            ("  \n\n  ", 10),
            ("a\r\nb\r\n\r\nc\r", 10),
            ("éé é\n\n€€€€€ 😀", 2),
        ] {
            let counts = streamed(text.as_bytes(), &[1, 2, 3, 5, 8], max).unwrap();
            assert_eq!(
                (counts.chunks, counts.characters, counts.words),
                whole(text, max),
                "{text:?}"
            );
        }
        let counts = streamed(b"abc", &[], 10).unwrap();
        assert_eq!(counts.sha256, hex::encode(Sha256::digest(b"abc")));
    }

    #[test]
    fn bytes_that_are_not_utf8_are_refused_wherever_they_are_cut() {
        assert_eq!(streamed(b"ok \xff\xfe", &[1], 10), Err(NotUtf8));
        assert_eq!(streamed("é".as_bytes(), &[1], 10).map(|c| c.characters), Ok(1));
        assert_eq!(streamed(&"é".as_bytes()[..1], &[], 10), Err(NotUtf8));
    }

    proptest! {
        /// Any text, cut into any pieces (inside characters, inside `\r\n`
        /// and `\n\n`), streams to exactly the counts of the whole text.
        #[test]
        fn streaming_equals_the_whole_text(
            text in "([a-zé€😀.!? ]{0,40}(\n|\r\n|\n\n|\n\n\n| \n\n )?){0,40}",
            cuts in proptest::collection::vec(0usize..50, 0..20),
            max in 1usize..120,
        ) {
            let counts = streamed(text.as_bytes(), &cuts, max).unwrap();
            prop_assert_eq!((counts.chunks, counts.characters, counts.words), whole(&text, max));
            prop_assert_eq!(counts.sha256, hex::encode(Sha256::digest(text.as_bytes())));
        }

        /// Long tokens and long paragraphs.
        #[test]
        fn long_tokens_stream_alike(
            words in proptest::collection::vec("[a-z.]{0,400}", 0..12),
            sep in prop_oneof![Just(" "), Just("\n\n"), Just("  ")],
            cuts in proptest::collection::vec(0usize..500, 0..10),
            max in 1usize..200,
        ) {
            let text = words.join(sep);
            let counts = streamed(text.as_bytes(), &cuts, max).unwrap();
            prop_assert_eq!((counts.chunks, counts.characters, counts.words), whole(&text, max));
        }
    }
}
