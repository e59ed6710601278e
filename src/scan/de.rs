//! A serde `Deserializer` over the [`Scanner`]: the fields a review is read for (its identity, and
//! within a spec's hooks the values of a shape other than expected) are built by their serde
//! visitors straight from the body, and whatever those visitors ignore is skipped by the scanner
//! instead of by a second JSON parser. Errors read as serde_json's do: a value of the wrong type is
//! "invalid type: integer `3`, expected a string", JSON that is not JSON is a [`SyntaxError`] with
//! its byte offset in the body.

use std::fmt;

use serde::de::value::{BorrowedStrDeserializer, StringDeserializer};
use serde::de::{self, DeserializeSeed, Expected, IntoDeserializer, Unexpected, Visitor};

use super::{Scanner, SyntaxError, MAX_DEPTH};

/// Why a value could not be read: the body is not JSON there, or the JSON is not what the
/// visitor wanted (the message, without a position: the caller names the field).
#[derive(Debug, Clone, PartialEq)]
pub enum DeError {
    Syntax(SyntaxError),
    Invalid(String),
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeError::Syntax(err) => err.fmt(f),
            DeError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for DeError {}

impl From<SyntaxError> for DeError {
    fn from(err: SyntaxError) -> Self {
        DeError::Syntax(err)
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError::Invalid(msg.to_string())
    }

    // JSON has null where serde says "unit value"; serde_json says null, and so does this.
    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        match unexp {
            Unexpected::Unit => {
                de::Error::custom(format_args!("invalid type: null, expected {exp}"))
            }
            _ => de::Error::custom(format_args!("invalid type: {unexp}, expected {exp}")),
        }
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        match unexp {
            Unexpected::Unit => {
                de::Error::custom(format_args!("invalid value: null, expected {exp}"))
            }
            _ => de::Error::custom(format_args!("invalid value: {unexp}, expected {exp}")),
        }
    }
}

/// Reads one value at the scanner's position. `depth` counts the containers entered, so
/// nesting is bounded (as serde_json bounds it) however the visitors recurse.
pub struct Deserializer<'s, 'a> {
    scanner: &'s mut Scanner<'a>,
    depth: u32,
}

impl<'s, 'a> Deserializer<'s, 'a> {
    /// Reads the value at the scanner's position, `depth` containers deep.
    pub fn at_depth(scanner: &'s mut Scanner<'a>, depth: u32) -> Self {
        Deserializer { scanner, depth }
    }

    /// The object or array that starts here: `visit` reads its entries, then it must be closed
    /// with `close`.
    fn container<T>(
        &mut self,
        close: u8,
        visit: impl FnOnce(&mut Access<'_, 's, 'a>) -> Result<T, DeError>,
    ) -> Result<T, DeError> {
        self.enter()?;
        self.scanner.pos += 1;
        let mut access = Access {
            de: self,
            first: true,
            done: false,
        };
        let value = visit(&mut access)?;
        access.finish(close)?;
        Ok(value)
    }

    fn enter(&mut self) -> Result<(), DeError> {
        if self.depth == MAX_DEPTH {
            return Err(self.scanner.error("recursion limit exceeded").into());
        }
        self.depth += 1;
        Ok(())
    }

    /// The string that starts here (quote included), borrowed when it has no escapes.
    fn read_string<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value, DeError> {
        let start = self.scanner.pos;
        let key = self.scanner.string()?;
        if !key.escaped() {
            return match self.scanner.text_of(key.raw) {
                Ok(text) => visitor.visit_borrowed_str(text),
                Err(_) => Err(invalid_unicode(start)),
            };
        }
        // Escapes are rare in what is read; serde_json resolves them (and refuses lone
        // surrogates with its own words).
        match serde_json::from_slice::<String>(&self.scanner.bytes[start..self.scanner.pos]) {
            Ok(text) => visitor.visit_string(text),
            Err(err) => Err(DeError::Invalid(without_position(&err))),
        }
    }

    fn read_number<V: Visitor<'a>>(&mut self, visitor: V) -> Result<V::Value, DeError> {
        let start = self.scanner.pos;
        self.scanner.number()?;
        let text = &self.scanner.bytes[start..self.scanner.pos];
        let (negative, digits) = match text.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, text),
        };
        if digits.iter().all(u8::is_ascii_digit) {
            let integer = digits.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            });
            if let Some(n) = integer {
                if !negative {
                    return visitor.visit_u64(n);
                }
                // As serde_json: -0 and anything below i64::MIN are floats.
                let neg = (n as i64).wrapping_neg();
                if neg < 0 {
                    return visitor.visit_i64(neg);
                }
            }
        }
        // The scanner has checked the grammar, and JSON numbers are Rust float literals.
        let float = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok())
            .filter(|f| f.is_finite());
        match float {
            Some(f) => visitor.visit_f64(f),
            None => Err(SyntaxError {
                what: "number out of range",
                at: start,
            }
            .into()),
        }
    }
}

/// A string that is not UTF-8, as serde_json words it; `start` is its opening quote.
fn invalid_unicode(start: usize) -> DeError {
    SyntaxError {
        what: "invalid unicode code point",
        at: start,
    }
    .into()
}

/// serde_json's message without its " at line L column C", which is within the value.
fn without_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rsplit_once(" at line ") {
        Some((message, _)) => message.to_owned(),
        None => text,
    }
}

impl<'de> de::Deserializer<'de> for &mut Deserializer<'_, 'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scanner.peek() {
            Some(b'"') => self.read_string(visitor),
            Some(b'{') => self.container(b'}', |access| visitor.visit_map(access)),
            Some(b'[') => self.container(b']', |access| visitor.visit_seq(access)),
            Some(b'n') => {
                self.scanner.literal(b"null")?;
                visitor.visit_unit()
            }
            Some(b't') => {
                self.scanner.literal(b"true")?;
                visitor.visit_bool(true)
            }
            Some(b'f') => {
                self.scanner.literal(b"false")?;
                visitor.visit_bool(false)
            }
            Some(b'-' | b'0'..=b'9') => self.read_number(visitor),
            Some(_) => Err(self.scanner.error("expected value").into()),
            None => Err(self.scanner.error("EOF while parsing a value").into()),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.scanner.null()? {
            return visitor.visit_none();
        }
        visitor.visit_some(self)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.scanner.skip_at(self.depth)?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    /// Unit variants only, written as strings: what Kubernetes enums are.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        struct Variant<V>(V);
        impl<'de, V: Visitor<'de>> Visitor<'de> for Variant<V> {
            type Value = V::Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.expecting(f)
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
                self.0.visit_enum(BorrowedStrDeserializer::new(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
                self.0.visit_enum(v.into_deserializer())
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
                self.0.visit_enum(v.into_deserializer())
            }
        }
        self.deserialize_any(Variant(visitor))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier
    }
}

/// The members of an object or the elements of an array, one at a time.
struct Access<'d, 's, 'a> {
    de: &'d mut Deserializer<'s, 'a>,
    first: bool,
    done: bool,
}

impl Access<'_, '_, '_> {
    /// Moves to the next entry: true when there is one, false (and the container closed) at
    /// its end.
    fn next(&mut self, close: u8) -> Result<bool, DeError> {
        let scanner = &mut *self.de.scanner;
        let peeked = scanner.peek();
        if peeked == Some(close) {
            scanner.pos += 1;
            self.done = true;
            self.de.depth -= 1;
            return Ok(false);
        }
        if std::mem::take(&mut self.first) {
            return Ok(true);
        }
        let object = close == b'}';
        match peeked {
            Some(b',') => {
                scanner.pos += 1;
                if object {
                    return Ok(true);
                }
                // `[1,]` is refused where the value should be.
                if scanner.peek() == Some(b']') {
                    return Err(scanner.error("expected value").into());
                }
                Ok(true)
            }
            Some(_) if object => Err(scanner.error("expected `,` or `}`").into()),
            Some(_) => Err(scanner.error("expected `,` or `]`").into()),
            None if object => Err(scanner.error("EOF while parsing an object").into()),
            None => Err(scanner.error("EOF while parsing a list").into()),
        }
    }

    /// After the visitor: it must have read every entry.
    fn finish(self, close: u8) -> Result<(), DeError> {
        if self.done {
            return Ok(());
        }
        match self.de.scanner.peek() {
            Some(c) if c == close => {
                self.de.scanner.pos += 1;
                self.de.depth -= 1;
                Ok(())
            }
            _ => Err(self.de.scanner.error("trailing characters").into()),
        }
    }
}

impl<'de> de::MapAccess<'de> for Access<'_, '_, 'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        if !self.next(b'}')? {
            return Ok(None);
        }
        let scanner = &mut *self.de.scanner;
        let start = scanner.pos;
        let key = scanner.string()?;
        let value = if !key.escaped() {
            seed.deserialize(KeyDeserializer {
                raw: key.raw,
                scanner,
                start,
            })?
        } else {
            let text: String = key.text().into_owned();
            seed.deserialize(StringDeserializer::<DeError>::new(text))?
        };
        self.de.scanner.expect(b':', "expected `:`")?;
        Ok(Some(value))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        seed.deserialize(&mut *self.de)
    }
}

/// A key without escapes. Field names (`uid`, `group`, ...) are matched as bytes, with no UTF-8
/// check, as the scanner matches the review's own keys: a key that is not UTF-8 matches no field.
/// A key read as text (of a map read whole, or skipped by a visitor) is checked.
struct KeyDeserializer<'s, 'a> {
    raw: &'a [u8],
    /// The scanner that read the key, which knows whether its text needs a UTF-8 check.
    scanner: &'s Scanner<'a>,
    start: usize,
}

impl<'de> de::Deserializer<'de> for KeyDeserializer<'_, 'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.scanner.text_of(self.raw) {
            Ok(text) => visitor.visit_borrowed_str(text),
            Err(_) => Err(invalid_unicode(self.start)),
        }
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_borrowed_bytes(self.raw)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum ignored_any
    }
}

impl<'de> de::SeqAccess<'de> for Access<'_, '_, 'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        if !self.next(b']')? {
            return Ok(None);
        }
        seed.deserialize(&mut *self.de).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::Operation;
    use serde_json::Value;

    fn read<'a, T: serde::Deserialize<'a>>(text: &'a str) -> Result<T, String> {
        let mut scanner = Scanner::new(text.as_bytes());
        let value = scanner.deserialize::<T>().map_err(|e| e.to_string())?;
        scanner.end().map_err(|e| e.to_string())?;
        Ok(value)
    }

    #[test]
    fn wrong_types_are_named_as_serde_json_names_them() {
        for (text, want) in [
            ("3", "invalid type: integer `3`, expected a string"),
            ("-3", "invalid type: integer `-3`, expected a string"),
            (
                "1.5",
                "invalid type: floating point `1.5`, expected a string",
            ),
            ("null", "invalid type: null, expected a string"),
            ("true", "invalid type: boolean `true`, expected a string"),
            ("[]", "invalid type: sequence, expected a string"),
            ("{}", "invalid type: map, expected a string"),
        ] {
            let serde_json = serde_json::from_str::<String>(text)
                .unwrap_err()
                .to_string();
            assert!(serde_json.starts_with(want), "{serde_json}");
            assert_eq!(read::<String>(text), Err(want.to_owned()), "{text}");
        }
        assert_eq!(
            read::<Operation>("\"UPSERT\""),
            Err(
                "unknown variant `UPSERT`, expected one of `CREATE`, `UPDATE`, `DELETE`, `CONNECT`"
                    .to_owned()
            )
        );
    }

    #[test]
    fn reads_strings_enums_and_numbers() {
        assert_eq!(read::<String>(r#""plain""#), Ok("plain".to_owned()));
        assert_eq!(
            read::<String>(r#""a\"b\u00e9""#),
            Ok("a\"b\u{e9}".to_owned())
        );
        assert_eq!(read::<Operation>(r#""CREATE""#), Ok(Operation::Create));
        assert_eq!(read::<Operation>(r#""CR\u0045ATE""#), Ok(Operation::Create));
        assert_eq!(read::<Option<bool>>("null"), Ok(None));
        assert_eq!(read::<Option<bool>>(" true "), Ok(Some(true)));
        for text in [
            "0",
            "-0",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "1e3",
            "-2.5E-3",
        ] {
            assert_eq!(
                read::<Value>(text),
                Ok(serde_json::from_str::<Value>(text).unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_json_with_its_offset() {
        assert_eq!(
            read::<Value>("1e999"),
            Err("number out of range at byte 0".to_owned())
        );
        assert_eq!(
            read::<Value>(r#"{"a" 1}"#),
            Err("expected `:` at byte 5".to_owned())
        );
        assert_eq!(
            read::<Value>("[1 2]"),
            Err("expected `,` or `]` at byte 3".to_owned())
        );
        assert_eq!(
            read::<Value>("[1,]"),
            Err("expected value at byte 3".to_owned())
        );
        // Escapes are resolved by serde_json, and its words are kept.
        assert_eq!(
            read::<String>(r#""\ud800""#),
            Err("unexpected end of hex escape".to_owned())
        );
        let mut latin1 = Scanner::new(b"\"caf\xe9\"");
        assert_eq!(
            latin1.deserialize::<String>().map_err(|e| e.to_string()),
            Err("invalid unicode code point at byte 0".to_owned())
        );
        // Nesting is bounded whether the visitor builds the values or ignores them.
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            read::<Value>(&deep),
            Err("recursion limit exceeded at byte 128".to_owned())
        );
        let deep_ignored = format!("[{}{}]", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            read::<Vec<serde::de::IgnoredAny>>(&deep_ignored),
            Err("recursion limit exceeded at byte 128".to_owned())
        );
        let fine = format!("{}{}", "[".repeat(128), "]".repeat(128));
        assert!(read::<Value>(&fine).is_ok());
    }
}
