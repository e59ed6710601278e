//! A strict JSON scanner that walks objects and skips the values nobody asked for without building
//! them.
//!
//! An AdmissionReview is mostly bytes this server never reads: `userInfo`, `options`, and in each
//! object its `metadata`, whose last-applied annotation is the whole object again as an escaped
//! string, and `managedFields`. Skipping those through serde's visitor machinery cost more than the
//! rest of a review. This scanner finds string ends 64 bytes at a time (a bit mask per block of the
//! body, built with SSE2 where there is SSE2) and checks the grammar as it goes (escapes, control
//! characters, numbers, literals, nesting), so a malformed body is still refused; the values that
//! are used are read by serde_json in place ([`Scanner::deserialize`]).

use std::borrow::Cow;
use std::fmt;

mod de;

pub use de::DeError;

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
    /// The 64-byte block of `bytes` that `specials` describes; `usize::MAX` before the first.
    block: usize,
    /// Bit `i` is set where byte `64 * block + i` ends a run of plain string content: `"`, `\\`,
    /// a control character, or the end of the body. Strings in a review are short and many, so
    /// one block's mask serves several of them and each string end costs a shift and a count.
    specials: u64,
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
        Scanner {
            bytes,
            pos: 0,
            block: usize::MAX,
            specials: 0,
        }
    }

    /// The offset of the first special byte (see `specials`) at or after `pos`; `bytes.len()` or
    /// more when there is none before the end.
    #[inline(always)]
    fn next_special(&mut self) -> usize {
        let mut block = self.pos / 64;
        if block != self.block {
            self.block = block;
            self.specials = block_specials(self.bytes, block);
        }
        let rest = self.specials >> (self.pos % 64);
        if rest != 0 {
            return self.pos + rest.trailing_zeros() as usize;
        }
        loop {
            // The block holding the end has every bit past the end set, so this stops there.
            block += 1;
            self.block = block;
            self.specials = block_specials(self.bytes, block);
            if self.specials != 0 {
                return block * 64 + self.specials.trailing_zeros() as usize;
            }
        }
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
    #[inline(always)]
    fn string(&mut self) -> Result<Key<'a>, SyntaxError> {
        self.expect(b'"', "expected a string")?;
        self.string_after_quote()
    }

    /// The rest of a string whose opening quote has been consumed. Inlined for the common case,
    /// a string without escapes; the rest is out of line.
    #[inline(always)]
    fn string_after_quote(&mut self) -> Result<Key<'a>, SyntaxError> {
        let start = self.pos;
        let at = self.next_special();
        if self.bytes.get(at) == Some(&b'"') {
            self.pos = at + 1;
            return Ok(Key {
                raw: &self.bytes[start..at],
                escaped: false,
            });
        }
        self.string_from(start)
    }

    /// The rest of the string that starts at `start`, from the first special byte after it.
    #[inline(never)]
    fn string_from(&mut self, start: usize) -> Result<Key<'a>, SyntaxError> {
        let mut escaped = false;
        loop {
            let at = self.next_special();
            match self.bytes.get(at) {
                Some(b'"') => {
                    let raw = &self.bytes[start..at];
                    self.pos = at + 1;
                    return Ok(Key { raw, escaped });
                }
                Some(b'\\') => self.pos = at,
                Some(_) => {
                    self.pos = at;
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                None => {
                    self.pos = self.bytes.len();
                    return Err(self.error("EOF while parsing a string"));
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
        self.skip_nested(0)
    }

    /// [`Scanner::skip`] for a value already `outer` containers deep, which count towards the
    /// nesting limit.
    fn skip_nested(&mut self, outer: u32) -> Result<(), SyntaxError> {
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        let limit = MAX_DEPTH.saturating_sub(outer);
        loop {
            // A value.
            match self.peek() {
                Some(b'{') | Some(b'[') if depth == limit => {
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

    /// Reads the value that starts here as `T`, and moves past it: the values this server uses
    /// are built by their serde visitors straight from the body, and what those visitors ignore
    /// is skipped by this scanner.
    pub fn deserialize<T: serde::Deserialize<'a>>(&mut self) -> Result<T, DeError> {
        T::deserialize(&mut de::Deserializer::new(self))
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

/// The specials mask (see [`Scanner`]) of the 64-byte block `block` of `bytes`.
#[inline]
fn block_specials(bytes: &[u8], block: usize) -> u64 {
    let start = block.saturating_mul(64);
    if let Some(chunk) = bytes.get(start..).and_then(<[u8]>::first_chunk::<64>) {
        return specials64(chunk);
    }
    // The last, partial block: padded with zero bytes, which count as special, so the end of the
    // body is found like any string end.
    let mut padded = [0u8; 64];
    let tail = bytes.get(start..).unwrap_or_default();
    padded[..tail.len()].copy_from_slice(tail);
    specials64(&padded)
}

/// Bit `i` set where `chunk[i]` is `"`, `\\` or below 0x20: sixteen bytes per comparison.
#[cfg(target_arch = "x86_64")]
#[inline]
fn specials64(chunk: &[u8; 64]) -> u64 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these instructions always exist; each load
    // reads 16 bytes at offset 0, 16, 32 or 48 of the 64-byte `chunk`, unaligned loads allowed.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let below = _mm_set1_epi8(0x1f);
        let mut mask = 0u64;
        for k in 0..4 {
            let v = _mm_loadu_si128(chunk.as_ptr().add(16 * k).cast());
            let hits = _mm_or_si128(
                _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)),
                // Unsigned v <= 0x1f exactly where max(v, 0x1f) == 0x1f.
                _mm_cmpeq_epi8(_mm_max_epu8(v, below), below),
            );
            mask |= u64::from(_mm_movemask_epi8(hits) as u16) << (16 * k);
        }
        mask
    }
}

/// Bit `i` set where `chunk[i]` is `"`, `\\` or below 0x20, one byte at a time.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn specials64_bytewise(chunk: &[u8; 64]) -> u64 {
    chunk.iter().enumerate().fold(0, |mask, (i, &b)| {
        mask | (u64::from(b == b'"' || b == b'\\' || b < 0x20) << i)
    })
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn specials64(chunk: &[u8; 64]) -> u64 {
    specials64_bytewise(chunk)
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
    fn block_masks_match_the_bytewise_definition() {
        for byte in 0..=255u8 {
            for at in [0, 1, 15, 16, 31, 32, 48, 63] {
                let mut chunk = [b'a'; 64];
                chunk[at] = byte;
                assert_eq!(
                    specials64(&chunk),
                    specials64_bytewise(&chunk),
                    "byte {byte:#x} at {at}"
                );
            }
        }
        for seed in 0..64usize {
            let chunk: [u8; 64] = std::array::from_fn(|i| ((i * 37 + seed * 101) % 256) as u8);
            assert_eq!(
                specials64(&chunk),
                specials64_bytewise(&chunk),
                "seed {seed}"
            );
        }
    }

    #[test]
    fn finds_the_next_special_byte_from_every_offset() {
        // Bytes near the specials in value must not count.
        let filler = [
            b'a', b'!', b'#', b'[', b' ', 0x80, 0xff, b']', 0x7f, b'~', 0x20,
        ];
        let specials = [b'"', b'\\', 0x00, 0x1f];
        for len in [0, 1, 7, 63, 64, 65, 127, 128, 130, 200, 300] {
            for every in [3, 50, 64, 70, 1000] {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| {
                        if i % every == every - 1 {
                            specials[i % 4]
                        } else {
                            filler[i % filler.len()]
                        }
                    })
                    .collect();
                // One scanner moving forward (reusing its block masks) and a fresh one per offset.
                let mut walking = Scanner::new(&bytes);
                for from in 0..=len {
                    let want = bytes[from..]
                        .iter()
                        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
                        .map(|i| from + i);
                    let mut fresh = Scanner::new(&bytes);
                    fresh.pos = from;
                    walking.pos = from;
                    for found in [fresh.next_special(), walking.next_special()] {
                        match want {
                            Some(at) => {
                                assert_eq!(found, at, "len {len} every {every} from {from}")
                            }
                            None => assert!(found >= len, "len {len} every {every} from {from}"),
                        }
                    }
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
