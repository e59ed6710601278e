//! A strict JSON scanner that walks objects and skips the values nobody asked for without building
//! them.
//!
//! An AdmissionReview is mostly bytes this server never reads: `userInfo`, `options`, and in each
//! object its `metadata`, whose last-applied annotation is the whole object again as an escaped
//! string, and `managedFields`. Skipping those through serde's visitor machinery cost more than the
//! rest of a review. This scanner finds string ends from bit masks built for the whole body in one
//! pass, 64 bytes per mask (with AVX2 or SSE2), escapes resolved as they are built; the same pass
//! notes whether the body is all ASCII, in which case (as once the whole body is checked) no string
//! needs a UTF-8 check of its own.
//! It checks the grammar as it walks (escapes, control characters, numbers, literals, nesting), so
//! a malformed body is still refused. The values that are used are read by walks over the same
//! scanner ([`Scanner::object`], [`Scanner::array`]: a spec's hooks, `hooks.rs`), or built by
//! their serde visitors through a `Deserializer` over it ([`Scanner::deserialize`], `de.rs`).

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
    /// One word per 64 bytes of `bytes`, and one for the end: bit `i` of word `w` is set where
    /// byte `64 * w + i` stops a string: a quote that is not escaped, a control character, an
    /// escape that is not valid JSON, or the end of the body. Strings in a review are short and
    /// many, and its last-applied annotation is one long string full of escapes: with the masks
    /// built in one pass over the body and escapes resolved there, each string costs a shift and
    /// a count.
    stops: Vec<u64>,
    /// The whole body as text, once it is known to be UTF-8: from the start when it is all ASCII
    /// (the mask pass tells), or after [`Scanner::utf8`]. The strings read from it then need no
    /// UTF-8 check of their own.
    text: Option<&'a str>,
}

/// An object member's key as written: the bytes between the quotes.
pub struct Key<'a> {
    raw: &'a [u8],
    /// True when the key holds escapes (rare: the API server writes plain keys).
    escaped: bool,
}

impl<'a> Key<'a> {
    fn new(raw: &'a [u8]) -> Self {
        Key {
            raw,
            escaped: has_backslash(raw),
        }
    }

    fn escaped(&self) -> bool {
        self.escaped
    }

    /// The key's bytes, for matching against field names; escapes are resolved.
    pub fn bytes(&self) -> Cow<'a, [u8]> {
        if self.escaped() {
            return Cow::Owned(self.text().into_owned().into_bytes());
        }
        Cow::Borrowed(self.raw)
    }

    /// The key's text; escapes are resolved (rare: the API server writes plain keys).
    pub fn text(&self) -> Cow<'a, str> {
        if !self.escaped() {
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
        let masks = string_stops(bytes);
        let text = if masks.ascii {
            // SAFETY: every byte of `bytes` is ASCII (`string_stops` saw no byte with its high
            // bit set), and ASCII is UTF-8.
            Some(unsafe { std::str::from_utf8_unchecked(bytes) })
        } else {
            None
        };
        Scanner {
            bytes,
            pos: 0,
            stops: masks.stops,
            text,
        }
    }

    /// Checks that the whole body is UTF-8, as JSON must be. The strings a walk reads are
    /// checked as they are read; this covers the ones it skips (serde_json does not check those
    /// either), so a body with invalid UTF-8 anywhere is refused, not half-read; after it, no
    /// string read needs a check of its own. Free for a body that is all ASCII, which the mask
    /// pass already knows.
    pub fn utf8(&mut self) -> Result<(), SyntaxError> {
        if self.text.is_some() {
            return Ok(());
        }
        let text = std::str::from_utf8(self.bytes).map_err(|err| SyntaxError {
            what: "invalid UTF-8",
            at: err.valid_up_to(),
        })?;
        self.text = Some(text);
        Ok(())
    }

    /// The text of `raw`, a string this scanner read (a [`Key`]'s): checked for UTF-8 only while
    /// the body as a whole is not known to be.
    fn text_of(&self, raw: &'a [u8]) -> Result<&'a str, std::str::Utf8Error> {
        if let Some(text) = self.text {
            // The same range of the body's text, at the offset of `raw`; `get` checks that the
            // range is within it and on character boundaries.
            let start = (raw.as_ptr() as usize).wrapping_sub(self.bytes.as_ptr() as usize);
            let end = start.saturating_add(raw.len());
            if let Some(own) = text.get(start..end) {
                return Ok(own);
            }
        }
        std::str::from_utf8(raw)
    }

    /// Out of line and marked cold: errors are rare, and with their construction kept out of
    /// the scanning loops the compiler keeps the common path's state in registers.
    #[cold]
    #[inline(never)]
    fn error(&self, what: &'static str) -> SyntaxError {
        SyntaxError { what, at: self.pos }
    }

    /// The offset of the first stop (see `stops`) at or after `pos`; `bytes.len()` or
    /// more when there is none before the end.
    #[inline(always)]
    fn next_stop(&self) -> usize {
        stop_in(&self.stops, self.bytes.len(), self.pos)
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

    /// Reads the string that starts here: its raw bytes, escapes unresolved.
    #[inline(always)]
    fn string(&mut self) -> Result<Key<'a>, SyntaxError> {
        self.expect(b'"', "expected a string")?;
        self.string_after_quote()
    }

    /// The rest of a string whose opening quote has been consumed.
    #[inline(always)]
    fn string_after_quote(&mut self) -> Result<Key<'a>, SyntaxError> {
        let start = self.pass_string()?;
        Ok(Key::new(&self.bytes[start..self.pos - 1]))
    }

    /// Moves past the rest of a string whose opening quote has been consumed, and returns where
    /// its contents start. For strings that are skipped: no [`Key`] is made.
    #[inline(always)]
    fn pass_string(&mut self) -> Result<usize, SyntaxError> {
        let start = self.pos;
        let at = self.next_stop();
        // Escaped quotes are not stops, so a quote here is the closing one.
        if self.bytes.get(at) == Some(&b'"') {
            self.pos = at + 1;
            return Ok(start);
        }
        self.string_from(start).map(|_| start)
    }

    /// The string that starts at `start`, checked one byte at a time. Reached only when the
    /// block masks stopped on something other than a closing quote (an error, or the end of the
    /// body), to say exactly what is wrong and where.
    #[cold]
    #[inline(never)]
    fn string_from(&mut self, start: usize) -> Result<Key<'a>, SyntaxError> {
        self.pos = start;
        loop {
            match self.bytes.get(self.pos) {
                Some(b'"') => {
                    let raw = &self.bytes[start..self.pos];
                    self.pos += 1;
                    return Ok(Key::new(raw));
                }
                Some(b'\\') => {}
                Some(&b) if b < 0x20 => {
                    return Err(self.error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
                Some(_) => {
                    self.pos += 1;
                    continue;
                }
                None => return Err(self.error("EOF while parsing a string")),
            }
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
        self.skip_at(0)
    }

    /// [`Scanner::skip`] for a value already `outer` containers deep (of the walk that reached
    /// it), which count towards the nesting limit.
    ///
    /// The walk keeps its position in a local and reads the body and the stops through locals, so
    /// they stay in registers: skipping is most of what a review's decoding does (a
    /// `managedFields` entry is dozens of `"f:name":{}` members). The position is written back
    /// before anything that reads it (a number, a literal, an error) and at the end.
    pub fn skip_at(&mut self, outer: u32) -> Result<(), SyntaxError> {
        // Most values skipped alone are strings: those need no walk.
        if self.bytes.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            return self.pass_string().map(drop);
        }
        // Lent to the walk, so it can hold them in registers while it changes the position.
        let stops = std::mem::take(&mut self.stops);
        let skipped = self.skip_walk(&stops, outer);
        self.stops = stops;
        skipped
    }

    /// [`Scanner::skip_at`] with the stops lent.
    fn skip_walk(&mut self, stops: &[u64], outer: u32) -> Result<(), SyntaxError> {
        let bytes = self.bytes;
        let mut pos = self.pos;
        let mut stack: u128 = 0;
        let mut depth: u32 = 0;
        let limit = MAX_DEPTH.saturating_sub(outer);
        // The byte at `pos` after any whitespace, `pos` moved onto it.
        macro_rules! next {
            () => {{
                match bytes.get(pos) {
                    // Compact JSON, the API server's: the byte is there, no whitespace before it.
                    Some(&b) if b > b' ' => Some(b),
                    _ => {
                        while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(pos) {
                            pos += 1;
                        }
                        bytes.get(pos).copied()
                    }
                }
            }};
        }
        // Fails at `pos`.
        macro_rules! fail {
            ($what:expr) => {{
                self.pos = pos;
                return Err(self.error($what));
            }};
        }
        // Moves past the string whose opening quote is at `pos`.
        macro_rules! string {
            () => {{
                let at = stop_in(stops, bytes.len(), pos + 1);
                if bytes.get(at) == Some(&b'"') {
                    pos = at + 1;
                } else {
                    // `string_from` sets the position itself; set here too, the walk compiles to
                    // about 230 fewer instructions a review (callgrind).
                    self.pos = pos + 1;
                    self.string_from(pos + 1)?;
                    pos = self.pos;
                }
            }};
        }
        // A member's key and colon, from `pos`.
        macro_rules! key {
            () => {{
                match next!() {
                    Some(b'"') => string!(),
                    Some(_) => fail!("expected a string"),
                    None => fail!("EOF while parsing a value"),
                }
                match next!() {
                    Some(b':') => pos += 1,
                    Some(_) => fail!("expected `:`"),
                    None => fail!("EOF while parsing a value"),
                }
            }};
        }
        loop {
            // A value: a string or an object most often, so those are looked for first.
            let b = next!();
            if b == Some(b'"') {
                string!();
            } else if b == Some(b'{') && depth < limit {
                pos += 1;
                if next!() == Some(b'}') {
                    pos += 1;
                } else {
                    stack = (stack << 1) | 1;
                    depth += 1;
                    key!();
                    continue;
                }
            } else {
                match b {
                    // An object here is one at the nesting limit.
                    Some(b'{' | b'[') if depth == limit => fail!("recursion limit exceeded"),
                    Some(b'[') => {
                        pos += 1;
                        if next!() == Some(b']') {
                            pos += 1;
                        } else {
                            stack <<= 1;
                            depth += 1;
                            continue;
                        }
                    }
                    Some(b't') => self.literal_at(&mut pos, b"true")?,
                    Some(b'f') => self.literal_at(&mut pos, b"false")?,
                    Some(b'n') => self.literal_at(&mut pos, b"null")?,
                    Some(b'-' | b'0'..=b'9') => {
                        self.pos = pos;
                        self.number()?;
                        pos = self.pos;
                    }
                    Some(_) => fail!("expected value"),
                    None => fail!("EOF while parsing a value"),
                }
            }
            // After a value: close containers, or move to the next member.
            loop {
                if depth == 0 {
                    self.pos = pos;
                    return Ok(());
                }
                let in_object = stack & 1 == 1;
                match (next!(), in_object) {
                    (Some(b','), true) => {
                        pos += 1;
                        key!();
                        break;
                    }
                    (Some(b','), false) => {
                        pos += 1;
                        break;
                    }
                    (Some(b'}'), true) | (Some(b']'), false) => {
                        pos += 1;
                        stack >>= 1;
                        depth -= 1;
                    }
                    (Some(_), true) => fail!("expected `,` or `}`"),
                    (Some(_), false) => fail!("expected `,` or `]`"),
                    (None, true) => fail!("EOF while parsing an object"),
                    (None, false) => fail!("EOF while parsing a list"),
                }
            }
        }
    }

    /// [`Scanner::literal`] at `pos`, which it moves past the literal.
    fn literal_at(&mut self, pos: &mut usize, word: &'static [u8]) -> Result<(), SyntaxError> {
        self.pos = *pos;
        self.literal(word)?;
        *pos = self.pos;
        Ok(())
    }

    /// A member's key and its colon. The API server writes compact JSON, so the quote and the
    /// colon are looked for right where they usually are before falling back to skipping
    /// whitespace.
    #[inline(always)]
    fn member_key(&mut self) -> Result<Key<'a>, SyntaxError> {
        self.key_quote()?;
        let key = self.string_after_quote()?;
        self.colon()?;
        Ok(key)
    }

    #[inline(always)]
    fn key_quote(&mut self) -> Result<(), SyntaxError> {
        if self.bytes.get(self.pos) == Some(&b'"') {
            self.pos += 1;
            return Ok(());
        }
        self.expect(b'"', "expected a string")
    }

    #[inline(always)]
    fn colon(&mut self) -> Result<(), SyntaxError> {
        if self.bytes.get(self.pos) == Some(&b':') {
            self.pos += 1;
            return Ok(());
        }
        self.expect(b':', "expected `:`")
    }

    /// The bytes of the value that starts here, checked and skipped.
    #[cfg(test)]
    fn value(&mut self) -> Result<&'a [u8], SyntaxError> {
        self.whitespace();
        let start = self.pos;
        self.skip()?;
        Ok(&self.bytes[start..self.pos])
    }

    /// Reads the value that starts here as `T`, and moves past it: the values this server uses
    /// are built by their serde visitors straight from the body, and what those visitors ignore
    /// is skipped by this scanner.
    pub fn deserialize<T: serde::Deserialize<'a>>(&mut self) -> Result<T, DeError> {
        self.deserialize_at(0)
    }

    /// [`Scanner::deserialize`] for a value already `depth` containers deep (of the walk that
    /// reached it), which count towards the nesting limit.
    pub fn deserialize_at<T: serde::Deserialize<'a>>(&mut self, depth: u32) -> Result<T, DeError> {
        T::deserialize(&mut de::Deserializer::at_depth(self, depth))
    }

    /// The first byte of the next value (whitespace skipped), which tells its type; nothing is
    /// consumed.
    pub fn next_byte(&mut self) -> Option<u8> {
        self.peek()
    }

    /// A key's text, escapes resolved, as serde_json reads a map's key into a `String`: one
    /// without escapes must be UTF-8, or it is refused at its opening quote.
    pub fn key_text(&self, key: &Key<'a>) -> Result<Cow<'a, str>, SyntaxError> {
        if key.escaped() {
            return Ok(key.text());
        }
        self.text_of(key.raw).map(Cow::Borrowed).map_err(|_| {
            let quote = (key.raw.as_ptr() as usize)
                .wrapping_sub(self.bytes.as_ptr() as usize)
                .wrapping_sub(1);
            SyntaxError {
                what: "invalid unicode code point",
                at: quote,
            }
        })
    }

    /// Walks the object that starts here, calling `member` with each key; `member` must consume
    /// the value (with [`Scanner::skip`], [`Scanner::deserialize`] or another walk).
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
            let key = self.member_key()?;
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

    /// Walks the array that starts here, calling `element` at each element; `element` must
    /// consume it.
    pub fn array<E: From<SyntaxError>>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<(), E> {
        self.expect(b'[', "expected a list")?;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            element(self)?;
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    // `[1,]` is refused where the value should be.
                    if self.peek() == Some(b']') {
                        return Err(self.error("expected value").into());
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(_) => return Err(self.error("expected `,` or `]`").into()),
                None => return Err(self.error("EOF while parsing a list").into()),
            }
        }
    }
}

/// The offset of the first stop at or after `pos` in a body of `len` bytes with `stops` (see
/// [`Scanner`]); `len` or more when there is none before the end.
#[inline(always)]
fn stop_in(stops: &[u64], len: usize, pos: usize) -> usize {
    let mut word = pos / 64;
    let Some(&mask) = stops.get(word) else {
        return len;
    };
    let rest = mask >> (pos % 64);
    if rest != 0 {
        return pos + rest.trailing_zeros() as usize;
    }
    loop {
        // The last word has a bit for the end of the body, so this stops there.
        word += 1;
        match stops.get(word) {
            Some(&0) => {}
            Some(&mask) => return word * 64 + mask.trailing_zeros() as usize,
            None => return len,
        }
    }
}

/// True when `raw` holds a backslash. Eight bytes at a time: strings that are read (keys, names)
/// are short, and `contains` would call memchr.
#[inline(always)]
fn has_backslash(raw: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    let (words, rest) = raw.as_chunks::<8>();
    for word in words {
        // A zero byte of `v` is a backslash of `word`: the classic test for a zero byte.
        let v = u64::from_ne_bytes(*word) ^ BACKSLASHES;
        if v.wrapping_sub(ONES) & !v & HIGHS != 0 {
            return true;
        }
    }
    // Fewer than eight bytes: a plain loop.
    for &b in rest {
        if b == b'\\' {
            return true;
        }
    }
    false
}

/// What one pass over a body finds: see the fields of [`Scanner`].
#[derive(Debug, PartialEq, Eq)]
struct Masks {
    stops: Vec<u64>,
    ascii: bool,
}

/// The masks (see [`Scanner`]) of `bytes`, in one pass: 32 bytes per comparison where the CPU
/// has AVX2 (nearly every x86_64 server), 16 where it has SSE2.
fn string_stops(bytes: &[u8]) -> Masks {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { string_stops_avx2(bytes) };
    }
    string_stops_with(bytes, masks64)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn string_stops_avx2(bytes: &[u8]) -> Masks {
    string_stops_with(bytes, |chunk| masks64_avx2(chunk))
}

/// [`string_stops`] with `masks` giving a block's [`BlockMasks`]. Inlined into each caller, so
/// the masks are computed in the caller's instruction set.
#[inline(always)]
fn string_stops_with(bytes: &[u8], masks: impl Fn(&[u8; 64]) -> BlockMasks) -> Masks {
    let (blocks, tail) = bytes.as_chunks::<64>();
    // The last, partial block: padded with zero bytes, which are control characters, so the end
    // of the body stops a string like any other stop.
    let mut padded = [0u8; 64];
    padded[..tail.len()].copy_from_slice(tail);
    let mut stops = Vec::with_capacity(blocks.len() + 1);
    // Whether the first byte of the next block is escaped by a backslash run before it.
    let mut carry = 0;
    let mut high = 0;
    let mut block = |start: usize, chunk: &[u8; 64]| {
        let m = masks(chunk);
        high |= m.high;
        resolve_escapes(bytes, start, m, &mut carry)
    };
    // One `extend` over an iterator of known length: the vector's capacity is checked once,
    // not per block.
    stops.extend(
        blocks
            .iter()
            .enumerate()
            .map(|(i, chunk)| block(i * 64, chunk)),
    );
    stops.push(block(blocks.len() * 64, &padded));
    Masks {
        stops,
        ascii: high == 0,
    }
}

/// A 64-byte block's bits: its quotes, its control characters (below 0x20), its backslashes, and
/// its bytes that are not ASCII.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BlockMasks {
    quotes: u64,
    controls: u64,
    backslashes: u64,
    high: u64,
}

/// The stops of the block at `start`, with masks `m`: a quote stops a string unless it is
/// escaped, a control character always does (escaped, it is not a valid escape), and so does an
/// escape that JSON does not have.
#[inline(always)]
fn resolve_escapes(bytes: &[u8], start: usize, m: BlockMasks, carry: &mut u64) -> u64 {
    if m.backslashes == 0 && *carry == 0 {
        return m.quotes | m.controls;
    }
    let escaped = escaped_bits(m.backslashes, carry);
    let mut stops = (m.quotes & !escaped) | m.controls;
    // An escaped quote or backslash is valid, and an escaped control character a stop already,
    // so only the other escaped characters are looked at, one by one: each must be one of
    // \/ \b \f \n \r \t, or \u and four hex digits. The last-applied annotation's escapes are
    // nearly all quotes, and this loop seldom runs.
    let mut rest = escaped & !(m.quotes | m.backslashes | m.controls);
    while rest != 0 {
        let i = rest.trailing_zeros() as usize;
        rest &= rest - 1;
        let at = start + i;
        let valid = match bytes.get(at) {
            Some(b'/' | b'b' | b'f' | b'n' | b'r' | b't') => true,
            Some(b'u') => bytes
                .get(at + 1..at + 5)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
            _ => false,
        };
        if !valid {
            stops |= 1 << i;
        }
    }
    stops
}

/// The characters that are escaped (follow an escaping backslash) in a block, given its
/// backslashes and `carry`: 1 when its first character is escaped by a backslash run from the
/// block before, and set for the next block on return. simdjson's branchless method: a run of
/// backslashes escapes the character after it when the run's length is odd, and the parity of a
/// run follows from where it starts.
fn escaped_bits(backslashes: u64, carry: &mut u64) -> u64 {
    const ODD_BITS: u64 = 0xAAAA_AAAA_AAAA_AAAA;
    let first_escaped = *carry;
    let potential = backslashes & !first_escaped;
    let maybe_escaped = potential << 1;
    let codes = (maybe_escaped | ODD_BITS).wrapping_sub(potential) ^ ODD_BITS;
    *carry = (codes & backslashes) >> 63;
    codes ^ (backslashes | first_escaped)
}

/// A 64-byte chunk's [`BlockMasks`], sixteen bytes per comparison.
#[cfg(target_arch = "x86_64")]
#[inline]
fn masks64(chunk: &[u8; 64]) -> BlockMasks {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_max_epu8, _mm_movemask_epi8, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is part of the x86_64 baseline, so these instructions always exist; each load
    // reads 16 bytes at offset 0, 16, 32 or 48 of the 64-byte `chunk`, unaligned loads allowed.
    unsafe {
        let quote = _mm_set1_epi8(b'"' as i8);
        let backslash = _mm_set1_epi8(b'\\' as i8);
        let below = _mm_set1_epi8(0x1f);
        let mut m = BlockMasks {
            quotes: 0,
            controls: 0,
            backslashes: 0,
            high: 0,
        };
        for k in 0..4 {
            let v = _mm_loadu_si128(chunk.as_ptr().add(16 * k).cast());
            let bits = |eq| u64::from(_mm_movemask_epi8(eq) as u16) << (16 * k);
            m.quotes |= bits(_mm_cmpeq_epi8(v, quote));
            // Unsigned v <= 0x1f exactly where max(v, 0x1f) == 0x1f.
            m.controls |= bits(_mm_cmpeq_epi8(_mm_max_epu8(v, below), below));
            m.backslashes |= bits(_mm_cmpeq_epi8(v, backslash));
            m.high |= bits(v);
        }
        m
    }
}

/// [`masks64`], 32 bytes per comparison.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn masks64_avx2(chunk: &[u8; 64]) -> BlockMasks {
    use std::arch::x86_64::{
        _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_max_epu8, _mm256_movemask_epi8,
        _mm256_set1_epi8,
    };
    let quote = _mm256_set1_epi8(b'"' as i8);
    let backslash = _mm256_set1_epi8(b'\\' as i8);
    let below = _mm256_set1_epi8(0x1f);
    let mut m = BlockMasks {
        quotes: 0,
        controls: 0,
        backslashes: 0,
        high: 0,
    };
    for k in 0..2 {
        // SAFETY: reads 32 bytes at offset 0 or 32 of the 64-byte `chunk`, unaligned allowed.
        let v = unsafe { _mm256_loadu_si256(chunk.as_ptr().add(32 * k).cast()) };
        let bits = |eq| u64::from(_mm256_movemask_epi8(eq) as u32) << (32 * k);
        m.quotes |= bits(_mm256_cmpeq_epi8(v, quote));
        // Unsigned v <= 0x1f exactly where max(v, 0x1f) == 0x1f.
        m.controls |= bits(_mm256_cmpeq_epi8(_mm256_max_epu8(v, below), below));
        m.backslashes |= bits(_mm256_cmpeq_epi8(v, backslash));
        m.high |= bits(v);
    }
    m
}

/// [`masks64`], one byte at a time.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn masks64_bytewise(chunk: &[u8; 64]) -> BlockMasks {
    let mut masks = BlockMasks {
        quotes: 0,
        controls: 0,
        backslashes: 0,
        high: 0,
    };
    for (i, &b) in chunk.iter().enumerate() {
        masks.quotes |= u64::from(b == b'"') << i;
        masks.controls |= u64::from(b < 0x20) << i;
        masks.backslashes |= u64::from(b == b'\\') << i;
        masks.high |= u64::from(!b.is_ascii()) << i;
    }
    masks
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn masks64(chunk: &[u8; 64]) -> BlockMasks {
    masks64_bytewise(chunk)
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
            ("\"\\\u{1}\"", "invalid escape at byte 1"),
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

    /// Every way of computing a block's masks against the bytewise definition.
    fn check_masks(chunk: &[u8; 64], what: &str) {
        let want = masks64_bytewise(chunk);
        assert_eq!(masks64(chunk), want, "{what}");
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            assert_eq!(unsafe { masks64_avx2(chunk) }, want, "{what} (AVX2)");
        }
    }

    #[test]
    fn block_masks_match_the_bytewise_definition() {
        for byte in 0..=255u8 {
            for at in [0, 1, 15, 16, 31, 32, 33, 48, 63] {
                let mut chunk = [b'a'; 64];
                chunk[at] = byte;
                check_masks(&chunk, &format!("byte {byte:#x} at {at}"));
            }
        }
        for seed in 0..64usize {
            let chunk: [u8; 64] = std::array::from_fn(|i| ((i * 37 + seed * 101) % 256) as u8);
            check_masks(&chunk, &format!("seed {seed}"));
        }
    }

    #[test]
    fn every_instruction_set_gives_the_same_stops() {
        let review = std::fs::read("tests/fixtures/reviews/backupconfiguration-create.json")
            .expect("the recorded review");
        for len in [0, 1, 63, 64, 65, 1000, review.len()] {
            let bytes = &review[..len.min(review.len())];
            // Against the bytewise masks, so the test holds whichever set this CPU runs.
            let want = string_stops_with(bytes, masks64_bytewise);
            assert_eq!(string_stops(bytes), want, "first {len} bytes");
            assert_eq!(string_stops_with(bytes, masks64), want, "first {len} bytes");
        }
    }

    /// How many backslashes come right before `at`.
    fn backslash_run_before(bytes: &[u8], at: usize) -> usize {
        bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count()
    }

    /// The escaped characters of a block and whether the next block's first is, one byte at a
    /// time.
    fn escaped_bytewise(backslashes: u64, first_escaped: bool) -> (u64, bool) {
        let mut escaped = 0;
        let mut next_escaped = first_escaped;
        for i in 0..64 {
            let this_escaped = next_escaped;
            if this_escaped {
                escaped |= 1 << i;
            }
            next_escaped = !this_escaped && backslashes & (1 << i) != 0;
        }
        (escaped, next_escaped)
    }

    #[test]
    fn escaped_characters_match_the_bytewise_definition() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut patterns = vec![0, u64::MAX, 1, 1 << 63, 0b11, 0b111, 0x5555_5555_5555_5555];
        for _ in 0..2000 {
            // xorshift: runs of backslashes of every length, at odd and even offsets.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            patterns.push(state & (state >> 1));
            patterns.push(state | (state << 1));
            patterns.push(state);
        }
        for backslashes in patterns {
            for first in [false, true] {
                let mut carry = u64::from(first);
                let escaped = escaped_bits(backslashes, &mut carry);
                let (want, want_carry) = escaped_bytewise(backslashes, first);
                assert_eq!(
                    (escaped, carry),
                    (want, u64::from(want_carry)),
                    "{backslashes:064b} first escaped {first}"
                );
            }
        }
    }

    #[test]
    fn strings_with_escapes_across_blocks_are_read_as_serde_json_reads_them() {
        let pieces: [&[u8]; 12] = [
            b"a",
            b"\\\\",
            b"\\\"",
            b"\\n",
            b"\\u00e9",
            b"\\u12g4",
            b"\\x",
            b"\x01",
            b"\\",
            b"\"",
            b"\\u12",
            b"\xc3\xa9",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut doc = b"[".to_vec();
            doc.extend(std::iter::repeat_n(b' ', (state % 70) as usize));
            doc.push(b'"');
            let mut rest = state >> 8;
            for _ in 0..(state >> 56) % 40 {
                // Mostly plain text and valid escapes; the rest now and then.
                let pick = (rest % 31) as usize;
                doc.extend_from_slice(pieces[if pick < 12 { pick } else { pick % 4 }]);
                rest = rest.rotate_right(5) ^ state;
            }
            doc.extend_from_slice(b"\"]");
            let mut scanner = Scanner::new(&doc);
            let scanned = scanner.skip().and_then(|()| scanner.end());
            let parsed = serde_json::from_slice::<serde::de::IgnoredAny>(&doc);
            assert_eq!(
                scanned.is_ok(),
                parsed.is_ok(),
                "{:?}: scanner {scanned:?}, serde_json {parsed:?}",
                String::from_utf8_lossy(&doc)
            );
        }
    }

    /// Whether byte `i` stops a string (see [`Scanner`]), one byte at a time.
    fn stop(bytes: &[u8], i: usize) -> bool {
        let escaped = backslash_run_before(bytes, i) % 2 == 1;
        let b = bytes[i];
        if !escaped {
            return b == b'"' || b < 0x20;
        }
        let valid = match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => true,
            b'u' => bytes
                .get(i + 1..i + 5)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)),
            _ => false,
        };
        !valid
    }

    #[test]
    fn finds_the_next_stop_from_every_offset() {
        // Bytes near the stops in value must not count.
        let filler = [
            b'a', b'!', b'#', b'[', b' ', 0x80, 0xff, b']', 0x7f, b'~', 0x20, b'u', b'0', b'n',
        ];
        let stops = [b'"', b'\\', 0x00, 0x1f];
        for len in [0, 1, 7, 63, 64, 65, 127, 128, 130, 200, 300] {
            for every in [3, 50, 64, 70, 1000] {
                let bytes: Vec<u8> = (0..len)
                    .map(|i| {
                        if i % every == every - 1 {
                            stops[i % 4]
                        } else {
                            filler[i % filler.len()]
                        }
                    })
                    .collect();
                let mut scanner = Scanner::new(&bytes);
                for from in 0..=len {
                    let want = (from..len).find(|&i| stop(&bytes, i));
                    scanner.pos = from;
                    let found = scanner.next_stop();
                    match want {
                        Some(at) => assert_eq!(found, at, "len {len} every {every} from {from}"),
                        None => assert!(found >= len, "len {len} every {every} from {from}"),
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

    #[test]
    fn finds_backslashes_as_contains_does() {
        for len in 0..40 {
            for at in 0..=len {
                let mut raw = vec![b'a'; len];
                if at < len {
                    raw[at] = b'\\';
                }
                // Bytes that differ from a backslash by one bit must not count.
                raw.iter_mut().step_by(3).for_each(|b| {
                    if *b != b'\\' {
                        *b = b'\\' ^ 0x01;
                    }
                });
                assert_eq!(has_backslash(&raw), raw.contains(&b'\\'), "{raw:?}");
            }
        }
    }

    #[test]
    fn refuses_bodies_that_are_not_utf8_wherever_the_bad_byte_is() {
        let cases: [(&[u8], Result<(), SyntaxError>); 4] = [
            (br#"{"a":"plain"}"#, Ok(())),
            ("{\"a\":\"caf\u{e9}\"}".as_bytes(), Ok(())),
            // Latin-1, in a string no walk reads.
            (
                b"{\"a\":\"caf\xe9\"}",
                Err(SyntaxError {
                    what: "invalid UTF-8",
                    at: 9,
                }),
            ),
            // A sequence cut short by the end of the body.
            (
                b"{\"a\":\"\xe2\x82",
                Err(SyntaxError {
                    what: "invalid UTF-8",
                    at: 6,
                }),
            ),
        ];
        for (body, expected) in cases {
            let mut s = Scanner::new(body);
            assert_eq!(s.utf8(), expected, "{}", String::from_utf8_lossy(body));
            // Once checked, the body is known to be text.
            assert_eq!(s.text.is_some(), expected.is_ok());
        }
        // The walk alone passes over the Latin-1 string, as serde_json's skipping does.
        let mut s = Scanner::new(b"{\"a\":\"caf\xe9\"}");
        assert_eq!(s.skip().and_then(|()| s.end()), Ok(()));
    }

    #[test]
    fn reads_text_alike_with_and_without_bytes_beyond_ascii() {
        // The same keys and values; the second body is not all ASCII, so its strings are
        // checked for UTF-8 one by one, unless the body was checked as a whole first.
        let ascii = r#"{"name":"demo","params":{"a":"b"}}"#;
        let beyond = r#"{"name":"demo","params":{"a":"b"},"note":"café"}"#;
        for (body, checked_first, known_text) in [
            (ascii, false, true),
            (beyond, false, false),
            (beyond, true, true),
        ] {
            let mut s = Scanner::new(body.as_bytes());
            if checked_first {
                s.utf8().unwrap();
            }
            assert_eq!(s.text.is_some(), known_text, "{body}");
            let value: serde_json::Value = s.deserialize().unwrap();
            assert_eq!(
                value,
                serde_json::from_str::<serde_json::Value>(body).unwrap()
            );
        }
    }
}
