//! Text extraction and paragraph-aware chunking.

/// What kind of text a source is, from its content type or file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextKind {
    Plain,
    Markdown,
    Html,
    Pdf,
}

/// Decides the kind from a content type, falling back to the file extension
/// when the type is missing or generic. `None`: not something this
/// processor reads.
pub fn kind_of(content_type: &str, name: &str) -> Option<TextKind> {
    let ct = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match ct.as_str() {
        "text/plain" => return Some(TextKind::Plain),
        "text/markdown" | "text/x-markdown" => return Some(TextKind::Markdown),
        "text/html" | "application/xhtml+xml" => return Some(TextKind::Html),
        "application/pdf" => return Some(TextKind::Pdf),
        "" | "application/octet-stream" | "binary/octet-stream" => {}
        _ => return None,
    }
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "txt" | "text" => Some(TextKind::Plain),
        "md" | "markdown" => Some(TextKind::Markdown),
        "html" | "htm" | "xhtml" => Some(TextKind::Html),
        "pdf" => Some(TextKind::Pdf),
        _ => None,
    }
}

/// Elements whose content is not readable text.
const HIDDEN: [&[u8]; 4] = [b"script", b"style", b"noscript", b"template"];

/// Elements that end a paragraph.
const BLOCKS: [&[u8]; 21] = [
    b"p",
    b"div",
    b"br",
    b"h1",
    b"h2",
    b"h3",
    b"h4",
    b"h5",
    b"h6",
    b"li",
    b"tr",
    b"section",
    b"article",
    b"header",
    b"footer",
    b"blockquote",
    b"pre",
    b"ul",
    b"ol",
    b"table",
    b"hr",
];

/// Readable text from HTML, tokenized by `html5gum` (the WHATWG tokenizer,
/// with its naive state switching so script and style bodies are raw text):
/// scripts, styles, templates and comments dropped, block elements turned
/// into paragraph breaks, every character reference decoded. Linear in the
/// input; invalid UTF-8 is replaced, never fatal.
pub fn html_to_text(html: &[u8]) -> String {
    use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
    use html5gum::{Span, Tokenizer};

    let mut out = String::with_capacity(html.len() / 2);
    let mut hidden: Option<&'static [u8]> = None;
    let mut emitter = CallbackEmitter::new(|event: CallbackEvent<'_>, _: Span<()>| -> Option<()> {
        let block = |name: &[u8]| name == b"title" || BLOCKS.contains(&name);
        match event {
            CallbackEvent::OpenStartTag { name } if hidden.is_none() => {
                hidden = HIDDEN.iter().find(|h| **h == name).copied();
                if block(name) {
                    out.push_str("\n\n");
                }
            }
            CallbackEvent::EndTag { name } => match hidden {
                Some(h) if h == name => hidden = None,
                Some(_) => {}
                None if block(name) => out.push_str("\n\n"),
                None => {}
            },
            CallbackEvent::String { value } if hidden.is_none() => out.push_str(&String::from_utf8_lossy(value)),
            _ => {}
        }
        None
    });
    emitter.naively_switch_states(true);
    for token in Tokenizer::new_with_emitter(html, emitter) {
        let Ok(()) = token;
    }
    // collapse the spaces within a paragraph, keep the breaks between them
    let mut text = String::with_capacity(out.len());
    for para in out.split("\n\n") {
        let mut words = para.split_whitespace().peekable();
        if words.peek().is_none() {
            continue;
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        for (i, word) in words.enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(word);
        }
    }
    text
}

/// Splits text into chunks of at most `max_chars` characters, breaking
/// between paragraphs (blank lines) where possible, then between sentences,
/// then between words; a single word longer than `max_chars` is cut.
///
/// Linear in the input: every character is visited a bounded number of
/// times, whatever the text (one 5 MiB word, millions of one-letter words),
/// and lengths are kept as counts, never recounted.
pub fn chunk(text: &str, max_chars: usize) -> Vec<String> {
    let max = max_chars.max(1);
    let mut chunks = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    let paragraphs = text.split("\n\n").map(str::trim).filter(|p| !p.is_empty());
    for para in paragraphs {
        for (piece, len) in split_long(para, max) {
            if current_len > 0 && current_len + 2 + len > max {
                chunks.push(std::mem::take(&mut current));
                current_len = 0;
            }
            if current_len > 0 {
                current.push_str("\n\n");
                current_len += 2;
            }
            current.push_str(&piece);
            current_len += len;
        }
    }
    if current_len > 0 {
        chunks.push(current);
    }
    chunks
}

/// A paragraph as pieces of at most `max` characters, with their lengths.
fn split_long(para: &str, max: usize) -> Vec<(String, usize)> {
    let total = para.chars().count();
    if total <= max {
        return vec![(para.to_owned(), total)];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    let mut len = 0;
    for mut word in para.split_whitespace() {
        let mut word_len = word.chars().count();
        // a word longer than a chunk: cut it, each cut O(max)
        while word_len > max {
            if len > 0 {
                pieces.push((std::mem::take(&mut current), len));
                len = 0;
            }
            let cut = word.char_indices().nth(max).map_or(word.len(), |(i, _)| i);
            pieces.push((word[..cut].to_owned(), max));
            word = &word[cut..];
            word_len -= max;
        }
        if word_len == 0 {
            continue;
        }
        let sentence_end = current.ends_with(['.', '!', '?']);
        if len > 0 && (len + 1 + word_len > max || (sentence_end && len > max * 3 / 4)) {
            pieces.push((std::mem::take(&mut current), len));
            len = 0;
        }
        if len > 0 {
            current.push(' ');
            len += 1;
        }
        current.push_str(word);
        len += word_len;
    }
    if len > 0 {
        pieces.push((current, len));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_come_from_the_type_or_the_extension() {
        assert_eq!(kind_of("text/markdown; charset=utf-8", "x"), Some(TextKind::Markdown));
        assert_eq!(
            kind_of("application/octet-stream", "notes.MD"),
            Some(TextKind::Markdown)
        );
        assert_eq!(kind_of("", "page.htm"), Some(TextKind::Html));
        assert_eq!(kind_of("application/pdf", "a.txt"), Some(TextKind::Pdf));
        assert_eq!(kind_of("application/octet-stream", "a.pdf"), Some(TextKind::Pdf));
        assert_eq!(kind_of("image/png", "a.png"), None);
        assert_eq!(kind_of("application/octet-stream", "a.docx"), None);
    }

    #[test]
    fn html_becomes_paragraphs() {
        let html = "<html><head><title>T</title><style>p{}</style><script>var x = '<p>';</script></head>\
                    <body><!-- c --><h1>Hello &amp; welcome</h1><p>One   two\nthree.</p><div>Four</div></body></html>";
        assert_eq!(
            html_to_text(html.as_bytes()),
            "T\n\nHello & welcome\n\nOne two three.\n\nFour"
        );
    }

    /// What the hand-written stripper got wrong: every named and numeric
    /// reference, unquoted `>` in attributes, a `</script` inside a string
    /// of a script, upper-case and unclosed tags, a comment with `--`.
    #[test]
    fn html_is_read_the_way_a_browser_tokenizes_it() {
        let html = "<P CLASS=x title='a>b'>caf&eacute; &#x263A; &copy;2024 &zzz;</P>\
                    <SCRIPT>if (a < b) { s = \"</scr\" + \"ipt>\"; }</SCRIPT><!-- a -- b -->\
                    <ul><li>one<li>two</ul><textarea>x &lt; y</textarea><br/>end";
        assert_eq!(
            html_to_text(html.as_bytes()),
            "café ☺ ©2024 &zzz;\n\none\n\ntwo\n\nx < y\n\nend"
        );
        // not UTF-8: replaced, not fatal
        assert_eq!(html_to_text(b"<p>caf\xe9</p>"), "caf\u{fffd}");
    }

    /// Megabytes of tag soup with no text and no whitespace: tokenized,
    /// nothing invented (how fast is measured by `make bench`).
    #[test]
    fn hostile_html_yields_only_its_text() {
        let soup = "<a href=x><b>".repeat(400_000);
        assert_eq!(html_to_text(soup.as_bytes()), "");
        let unclosed = format!("<p>{}", "<".repeat(5 * 1024 * 1024));
        assert_eq!(html_to_text(unclosed.as_bytes()).len(), 5 * 1024 * 1024);
        let script = format!("<script>{}", "x".repeat(5 * 1024 * 1024));
        assert_eq!(html_to_text(script.as_bytes()), "");
    }

    #[test]
    fn chunks_respect_paragraphs_and_the_limit() {
        let text = "First paragraph.\n\nSecond one.\n\n\n\nThird paragraph is here.";
        assert_eq!(
            chunk(text, 30),
            ["First paragraph.\n\nSecond one.", "Third paragraph is here."]
        );
        assert_eq!(chunk(text, 1000).len(), 1);
        let long = "word ".repeat(100);
        let chunks = chunk(&long, 50);
        assert!(chunks.iter().all(|c| c.chars().count() <= 50));
        assert_eq!(chunks.iter().map(|c| c.split_whitespace().count()).sum::<usize>(), 100);
        let giant = "x".repeat(120);
        assert_eq!(
            chunk(&giant, 50).iter().map(|c| c.len()).collect::<Vec<_>>(),
            [50, 50, 20]
        );
        assert!(chunk("", 10).is_empty());
        assert!(chunk("  \n\n  ", 10).is_empty());
        // multi-byte characters are cut at character boundaries
        assert_eq!(chunk(&"é".repeat(5), 2), ["éé", "éé", "é"]);
    }

    /// The input that used to take 37 s (one token, megabytes long) is
    /// chunked; how fast is measured by `make bench`, not asserted here.
    #[test]
    fn a_multi_megabyte_single_token_is_chunked_exactly() {
        let token = "x".repeat(5 * 1024 * 1024);
        let chunks = chunk(&token, 1000);
        assert_eq!(chunks.len(), 5 * 1024 * 1024 / 1000 + 1);
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() == 1000));
        assert_eq!(chunks.iter().map(String::len).sum::<usize>(), token.len());
        let words = "a ".repeat(1024 * 1024);
        let chunks = chunk(&words, 1000);
        assert_eq!(chunks.iter().map(|c| c.split(' ').count()).sum::<usize>(), 1024 * 1024);
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Long tokens, multi-byte characters and odd spacing: every chunk
            /// fits, and the characters come back in order.
            #[test]
            fn hostile_inputs_lose_nothing(
                words in proptest::collection::vec("[a-zé€😀.]{0,700}", 0..30),
                seps in proptest::collection::vec(prop_oneof![Just(" "), Just("\n\n"), Just("  \n ")], 30),
                max in 1usize..300,
            ) {
                let text: String = words.iter().zip(&seps).flat_map(|(w, s)| [w.as_str(), *s]).collect();
                let chunks = chunk(&text, max);
                prop_assert!(chunks.iter().all(|c| c.chars().count() <= max && !c.is_empty()));
                let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
                prop_assert_eq!(squeeze(&text), squeeze(&chunks.concat()));
            }

            #[test]
            fn no_chunk_exceeds_the_limit_and_no_word_is_lost(text in "[a-z .\\n]{0,400}", max in 100usize..300) {
                let chunks = chunk(&text, max);
                prop_assert!(chunks.iter().all(|c| c.chars().count() <= max));
                let words: Vec<&str> = text.split_whitespace().collect();
                let rejoined: Vec<String> = chunks.iter().flat_map(|c| c.split_whitespace().map(str::to_owned)).collect();
                prop_assert_eq!(words, rejoined);
            }
        }
    }
}
