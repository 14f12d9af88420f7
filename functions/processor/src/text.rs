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

/// Readable text from HTML: scripts, styles and comments dropped, block
/// elements turned into paragraph breaks, the common entities decoded.
pub fn html_to_text(html: &str) -> String {
    let lower = html.to_ascii_lowercase();
    let mut out = String::with_capacity(html.len() / 2);
    let mut i = 0;
    let bytes = html.as_bytes();
    while i < bytes.len() {
        if bytes[i] == b'<' {
            if lower[i..].starts_with("<!--") {
                i = lower[i..].find("-->").map_or(bytes.len(), |e| i + e + 3);
                continue;
            }
            let skip_until = ["script", "style", "noscript", "template"]
                .iter()
                .find(|t| lower[i + 1..].starts_with(*t))
                .map(|t| format!("</{t}"));
            let Some(end) = lower[i..].find('>').map(|e| i + e) else {
                break;
            };
            let tag = lower[i + 1..end].trim_start_matches('/');
            let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
            if let Some(close) = skip_until {
                i = lower[end..]
                    .find(&close)
                    .and_then(|c| lower[end + c..].find('>').map(|g| end + c + g + 1))
                    .unwrap_or(bytes.len());
                continue;
            }
            let block = matches!(
                name.as_str(),
                "p" | "div"
                    | "br"
                    | "h1"
                    | "h2"
                    | "h3"
                    | "h4"
                    | "h5"
                    | "h6"
                    | "li"
                    | "tr"
                    | "section"
                    | "article"
                    | "header"
                    | "footer"
                    | "blockquote"
                    | "pre"
                    | "ul"
                    | "ol"
                    | "table"
                    | "hr"
                    | "title"
            );
            if block {
                out.push_str("\n\n");
            }
            i = end + 1;
        } else {
            let next = html[i..].find('<').map_or(html.len(), |n| i + n);
            out.push_str(&decode_entities(&html[i..next]));
            i = next;
        }
    }
    // normalise: collapse spaces in lines, keep paragraph breaks
    let mut text = String::with_capacity(out.len());
    for para in out.split("\n\n") {
        let line = para.split_whitespace().collect::<Vec<_>>().join(" ");
        if !line.is_empty() {
            if !text.is_empty() {
                text.push_str("\n\n");
            }
            text.push_str(&line);
        }
    }
    text
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&nbsp;", " ")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
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
        assert_eq!(html_to_text(html), "T\n\nHello & welcome\n\nOne two three.\n\nFour");
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
