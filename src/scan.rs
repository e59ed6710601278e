//! A strict JSON scanner that walks objects and skips the values nobody asked for without building
//! them.
//!
//! An AdmissionReview is mostly bytes this server never reads: `userInfo`, `options`, and in each
//! object its `metadata`, whose last-applied annotation is the whole object again as an escaped
//! string, and `managedFields`. Skipping those through serde's visitor machinery cost more than the
//! rest of a review. This scanner finds string ends eight bytes at a time and checks the grammar as
//! it goes (escapes, control characters, numbers, literals, nesting), so a malformed body is still
//! refused; the values that are used are read by serde_json in place ([`Scanner::deserialize`]).

use std::borrow::Cow;
use std::fmt;

/// Deeper nesting than this is refused, as serde_json refuses it.
const MAX_DEPTH: u32 = 128;

/// Why a body is not JSON, and the byte offset where that was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    what: &'static str,
    at: usize,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

impl std::error::Error for SyntaxError {}

/// A position in a JSON document.
pub struct Scanner<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// An object member's key as written: the bytes between the quotes.
pub struct Key<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Key<'a> {
    /// The key's bytes, for matching against field names; escapes are resolved.
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        if self.escaped {
            return Cow::Owned(self.text().into_owned().into_bytes());
        }
        Cow::Borrowed(self.raw)
    }

    /// The key's text; escapes are resolved (rare: the API server writes plain keys).
    pub fn text(&self) -> Cow<'a, str> {
        if !self.escaped {
            return String::from_utf8_lossy(self.raw);
        }
        let mut quoted = Vec::with_capacity(self.raw.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(self.raw);
        quoted.push(b'"');
        // The scanner has checked the escapes; a lone surrogate is the one thing left to fail.
        match serde_json::from_slice::<String>(&quoted) {
            Ok(s) => Cow::Owned(s),
            Err(_) => String::from_utf8_lossy(self.raw).into_owned().into(),
        }
    }
}

impl<'a> Scanner<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Scanner { bytes, pos: 0 }
    }

    fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError { what, at: self.pos }
    }

    #[inline(always)]
    fn whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte that is not whitespace. The API server sends compact JSON, so the first
    /// byte looked at is almost always it.
    #[inline(always)]
    fn peek(&mut self) -> Option<u8> {
        match self.bytes.get(self.pos) {
            Some(&b) if b > b' ' => Some(b),
            _ => {
                self.whitespace();
                self.bytes.get(self.pos).copied()
            }
        }
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(self.error(what)),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// Only whitespace may follow the document.
    pub fn end(&mut self) -> Result<(), SyntaxError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("trailing characters")),
        }
    }

    /// True (and consumed) when the next value is `null`.
    pub fn null(&mut self) -> Result<bool, SyntaxError> {
        if self.peek() == Some(b'n') {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Reads the string that starts here: its raw bytes and whether they hold escapes.
    fn string(&mut self) -> Result<Key<'a>, SyntaxError> {
        self.expect(b'"', "expected a string")?;
        self.string_after_quote()
    }

    /// The rest of a string whose opening quote has been consumed.
    #[inline]
    fn string_after_quote(&mut self) -> Result<Key<'a>, SyntaxError> {
        let start = self.pos;
        let mut escaped = false;
        loop {
            let Some(found) = find_special(&self.bytes[self.pos..]) else {
                self.pos = self.bytes.len();
                return Err(self.error("EOF while parsing a string"));
            };
            self.pos += found;
            match self.bytes[self.pos] {
                b'"' => {
                    let raw = &self.bytes[start..self.pos];
                    self.pos += 1;
                    return Ok(Key { raw, escaped });
                }
                b'\\' => {}
                _ => {
                    return Err(self
                        .error("control character (\\u0000-\\u001F) found while parsing a string"))
                }
            }
            escaped = true;
            match self.bytes.get(self.pos + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.pos += 2,
                Some(b'u') => {
                    let hex = self.bytes.get(self.pos + 2..self.pos + 6);
                    match hex {
                        Some(h) if h.iter().all(u8::is_ascii_hexdigit) => self.pos += 6,
                        Some(_) => return Err(self.error("invalid escape")),
                        None => {
                            self.pos = self.bytes.len();
                            return Err(self.error("EOF while parsing a string"));
                        }
                    }
                }
                Some(_) => return Err(self.error("invalid escape")),
                None => {
                    self.pos = self.bytes.len();
                    return Err(self.error("EOF while parsing a string"));
                }
            }
        }
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), SyntaxError> {
        match self.bytes.get(self.pos..self.pos + word.len()) {
            Some(w) if w == word => {
                self.pos += word.len();
                Ok(())
            }
            Some(_) => Err(self.error("expected value")),
            None => {
                let tail = &self.bytes[self.pos..];
                if word.starts_with(tail) {
                    self.pos = self.bytes.len();
                    Err(self.error("EOF while parsing a value"))
                } else {
                    Err(self.error("expected value"))
                }
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// At least one digit, as a fraction or an exponent needs.
    fn some_digits(&mut self) -> Result<(), SyntaxError> {
        if self.digits() > 0 {
            return Ok(());
        }
        Err(self.error(if self.pos == self.bytes.len() {
            "EOF while parsing a value"
        } else {
            "invalid number"
        }))
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        if self.bytes.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            Some(_) => return Err(self.error("invalid number")),
            None => return Err(self.error("EOF while parsing a value")),
        }
        if self.bytes.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    /// Skips one value of any shape, checking it. Iterative: nesting is tracked in a bit stack
    /// (1 = object, 0 = array), so hostile depth cannot overflow the thread's stack.
    pub fn skip(&mut self) -> Result<(), SyntaxError> {
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        loop {
            // A value.
            match self.peek() {
                Some(b'{') | Some(b'[') if depth == MAX_DEPTH => {
                    return Err(self.error("recursion limit exceeded"))
                }
                Some(b'{') => {
                    self.pos += 1;
                    if self.peek() == Some(b'}') {
                        self.pos += 1;
                    } else {
                        stack = (stack << 1) | 1;
                        depth += 1;
                        self.string()?;
                        self.expect(b':', "expected `:`")?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.pos += 1;
                    if self.peek() == Some(b']') {
                        self.pos += 1;
                    } else {
                        stack <<= 1;
                        depth += 1;
                        continue;
                    }
                }
                Some(b'"') => {
                    self.pos += 1;
                    self.string_after_quote()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(_) => return Err(self.error("expected value")),
                None => return Err(self.error("EOF while parsing a value")),
            }
            // After a value: close containers, or move to the next member.
            loop {
                if depth == 0 {
                    return Ok(());
                }
                let in_object = stack & 1 == 1;
                match (self.peek(), in_object) {
                    (Some(b','), true) => {
                        self.pos += 1;
                        self.string()?;
                        self.expect(b':', "expected `:`")?;
                        break;
                    }
                    (Some(b','), false) => {
                        self.pos += 1;
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        self.pos += 1;
                        stack >>= 1;
                        depth -= 1;
                    }
                    (Some(_), true) => return Err(self.error("expected `,` or `}`")),
                    (Some(_), false) => return Err(self.error("expected `,` or `]`")),
                    (None, true) => return Err(self.error("EOF while parsing an object")),
                    (None, false) => return Err(self.error("EOF while parsing a list")),
                }
            }
        }
    }

    /// The bytes of the value that starts here, checked and skipped.
    pub fn value(&mut self) -> Result<&'a [u8], SyntaxError> {
        self.whitespace();
        let start = self.pos;
        self.skip()?;
        Ok(&self.bytes[start..self.pos])
    }

    /// Reads the value that starts here with serde_json, as `T`, and moves past it: the values
    /// this server uses are parsed once, not scanned and then parsed. The outer error is a body
    /// that ends before the value; the inner one is serde_json's, about the value.
    pub fn deserialize<T: serde::Deserialize<'a>>(
        &mut self,
    ) -> Result<Result<T, serde_json::Error>, SyntaxError> {
        self.whitespace();
        let rest = &self.bytes[self.pos..];
        let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<T>();
        match values.next() {
            Some(Ok(value)) => {
                self.pos += values.byte_offset();
                Ok(Ok(value))
            }
            Some(Err(err)) => Ok(Err(err)),
            None => Err(self.error("EOF while parsing a value")),
        }
    }

    /// Walks the object that starts here, calling `member` with each key; `member` must consume
    /// the value (with [`Scanner::skip`], [`Scanner::value`] or another walk).
    pub fn object<E: From<SyntaxError>>(
        &mut self,
        mut member: impl FnMut(&mut Self, Key<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.expect(b'{', "expected an object")?;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':', "expected `:`")?;
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => return Err(self.error("expected `,` or `}`").into()),
                None => return Err(self.error("EOF while parsing an object").into()),
            }
        }
    }

    /// True when the next value is an object (without consuming anything).
    pub fn at_object(&mut self) -> bool {
        self.peek() == Some(b'{')
    }
}

/// The offset of the first byte that ends a run of plain string content: `"`, `\\` or a control
/// character. Eight bytes at a time (the bit trick serde_json uses too): no call and no setup per
/// string, which matters because most strings in a review are a few bytes long.
#[inline(always)]
fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let x = u64::from_le_bytes(*chunk);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set where it is zero (after the XOR) or below 0x20; the lowest
        // such byte is always a true hit (borrows only run upward).
        let hits = ((quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip_all(text: &str) -> Result<(), SyntaxError> {
        let mut s = Scanner::new(text.as_bytes());
        s.skip()?;
        s.end()
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        for ok in [
            "{}",
            "[]",
            r#"{"a":[1,-2.5e+3,0,true,false,null,"x\"\\\/\b\f\n\r\tA\u00e9"],"b":{"c":{}}}"#,
            " [ { } , [ ] , \"\" ] ",
            "-0.0E-0",
            "\"\u{e9}\"",
        ] {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(ok).is_ok(),
                "{ok}"
            );
            assert_eq!(skip_all(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        for (bad, what) in [
            ("", "EOF while parsing a value at byte 0"),
            ("{", "EOF while parsing a value at byte 1"),
            ("{\"a\"}", "expected `:` at byte 4"),
            ("[1 2]", "expected `,` or `]` at byte 3"),
            ("{\"a\":1,}", "expected a string at byte 7"),
            ("[01]", "expected `,` or `]` at byte 2"),
            ("[1.]", "invalid number at byte 3"),
            (
                "\"a\u{1}\"",
                "control character (\\u0000-\\u001F) found while parsing a string at byte 2",
            ),
            ("\"\\x\"", "invalid escape at byte 1"),
            ("\"\\u12g4\"", "invalid escape at byte 1"),
            ("tru", "EOF while parsing a value at byte 3"),
            ("nul1", "expected value at byte 0"),
            ("{} x", "trailing characters at byte 3"),
            ("[\"unterminated", "EOF while parsing a string at byte 14"),
        ] {
            assert!(
                serde_json::from_str::<serde::de::IgnoredAny>(bad).is_err(),
                "{bad}"
            );
            assert_eq!(
                skip_all(bad).map_err(|e| e.to_string()),
                Err(what.to_owned()),
                "{bad}"
            );
        }
    }

    #[test]
    fn finds_the_first_special_byte_at_every_offset() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0x00, 0x1f] {
                    let mut bytes = vec![b'a'; len];
                    // Bytes that are near the specials in value must not count.
                    for (i, b) in bytes.iter_mut().enumerate() {
                        *b = [b'a', b'!', b'#', b'[', b' ', 0x80, 0xff, b']'][i % 8];
                    }
                    if at < len {
                        bytes[at] = special;
                        // A second special after the first must not win.
                        if at + 1 < len {
                            bytes[at + 1] = b'"';
                        }
                    }
                    let want = (at < len).then_some(at);
                    assert_eq!(
                        find_special(&bytes),
                        want,
                        "len {len} at {at} byte {special}"
                    );
                }
            }
        }
    }

    #[test]
    fn bounds_nesting_without_recursion() {
        let deep = "[".repeat(100_000);
        assert_eq!(
            skip_all(&deep).map_err(|e| e.to_string()),
            Err("recursion limit exceeded at byte 128".to_owned())
        );
        let fine = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert_eq!(skip_all(&fine), Ok(()));
    }

    #[test]
    fn walks_members_and_resolves_escaped_keys() {
        let mut s = Scanner::new(br#"{"plain": 1, "k\u0069nd": {"x": [2]}}"#);
        let mut seen = Vec::new();
        s.object::<SyntaxError>(|s, key| {
            seen.push((
                key.text().into_owned(),
                String::from_utf8_lossy(s.value()?).into_owned(),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                ("plain".to_owned(), "1".to_owned()),
                ("kind".to_owned(), r#"{"x": [2]}"#.to_owned())
            ]
        );
    }
}
