//! The strict subset of CBOR (RFC 8949) that canonical releases use, and nothing more.
//!
//! Writer and reader know only unsigned and negative integers, byte strings, text strings,
//! definite-length arrays, `null` and 64-bit floats. The reader accepts exactly the forms the
//! writer produces: shortest heads, definite lengths, 64-bit floats only; anything else is an
//! error that names the byte offset and the field being read. It never allocates more than the
//! input's own length and never panics.

use std::fmt;

use super::ReleaseError;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;

/// `null` (major type 7, simple value 22).
pub(super) const NULL: u8 = 0xf6;
/// The initial byte of a 64-bit float (major type 7, additional information 27).
pub(super) const FLOAT64: u8 = 0xfb;

/// Which field is being read, for error messages; `Copy` so that naming a field costs nothing
/// until an error is actually built.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    /// A top-level field or a whole item, e.g. `period` or `signed release`.
    Top(&'static str),
    /// A field of cell `n`, e.g. `cells[3].value`; an empty name means the cell itself.
    Cell(usize, &'static str),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Top(name) => f.write_str(name),
            Self::Cell(n, "") => write!(f, "cells[{n}]"),
            Self::Cell(n, name) => write!(f, "cells[{n}].{name}"),
        }
    }
}

/// Appends canonical CBOR items to a buffer.
#[derive(Debug, Default)]
pub(super) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// A writer whose buffer holds `capacity` bytes before it grows.
    pub(super) fn with_capacity(capacity: usize) -> Self {
        Self {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// Appends bytes as they are (not a CBOR item): a prefix such as a signing domain.
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    pub(super) fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// A head in its shortest form (RFC 8949 §4.2.1).
    fn head(&mut self, major: u8, arg: u64) {
        let major = major << 5;
        if arg < 24 {
            // Fits in the additional information; the cast cannot truncate.
            self.buf.push(major | arg as u8);
        } else if let Ok(a) = u8::try_from(arg) {
            self.buf.extend_from_slice(&[major | 24, a]);
        } else if let Ok(a) = u16::try_from(arg) {
            self.buf.push(major | 25);
            self.buf.extend_from_slice(&a.to_be_bytes());
        } else if let Ok(a) = u32::try_from(arg) {
            self.buf.push(major | 26);
            self.buf.extend_from_slice(&a.to_be_bytes());
        } else {
            self.buf.push(major | 27);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        }
    }

    pub(super) fn array(&mut self, len: usize) {
        self.head(MAJOR_ARRAY, len as u64);
    }

    pub(super) fn uint(&mut self, v: u64) {
        self.head(MAJOR_UNSIGNED, v);
    }

    pub(super) fn int(&mut self, v: i64) {
        match u64::try_from(v) {
            Ok(u) => self.head(MAJOR_UNSIGNED, u),
            // -1 - v for negative v, i.e. !v, is in 0..=i64::MAX.
            Err(_) => self.head(MAJOR_NEGATIVE, !v as u64),
        }
    }

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub(super) fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    pub(super) fn opt_text(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.text(s),
            None => self.buf.push(NULL),
        }
    }

    pub(super) fn f64(&mut self, v: f64) {
        self.buf.push(FLOAT64);
        self.buf.extend_from_slice(&v.to_bits().to_be_bytes());
    }
}

/// Reads canonical CBOR items from a byte slice, refusing every other form.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// How an initial byte reads to a person: `0x63 (text string)`.
fn describe(initial: u8) -> String {
    let kind = match initial >> 5 {
        MAJOR_UNSIGNED => "unsigned integer",
        MAJOR_NEGATIVE => "negative integer",
        MAJOR_BYTES => "byte string",
        MAJOR_TEXT => "text string",
        MAJOR_ARRAY => "array",
        5 => "map",
        6 => "tag",
        _ => match initial {
            0xf4 | 0xf5 => "boolean",
            NULL => "null",
            0xf7 => "undefined",
            0xf9 => "16-bit float",
            0xfa => "32-bit float",
            FLOAT64 => "64-bit float",
            0xff => "break",
            _ => "simple value",
        },
    };
    let indefinite = initial & 0x1f == 31 && (2..=5).contains(&(initial >> 5));
    if indefinite {
        format!("0x{initial:02x} (indefinite-length {kind})")
    } else {
        format!("0x{initial:02x} ({kind})")
    }
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte has been read.
    pub(super) fn finish(&self, what: &'static str) -> Result<(), ReleaseError> {
        match self.bytes.len().checked_sub(self.pos) {
            Some(0) | None => Ok(()),
            Some(count) => Err(ReleaseError::TrailingBytes {
                offset: self.pos,
                count,
                what,
            }),
        }
    }

    fn take(
        &mut self,
        n: usize,
        field: Field,
        expected: &'static str,
    ) -> Result<&'a [u8], ReleaseError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(ReleaseError::Truncated {
                offset: self.bytes.len(),
                field: field.to_string(),
                expected,
            }),
        }
    }

    fn take_array<const N: usize>(
        &mut self,
        field: Field,
        expected: &'static str,
    ) -> Result<[u8; N], ReleaseError> {
        let slice = self.take(N, field, expected)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn unexpected(&self, offset: usize, field: Field, expected: &'static str) -> ReleaseError {
        ReleaseError::UnexpectedItem {
            offset,
            field: field.to_string(),
            expected,
            found: self
                .bytes
                .get(offset)
                .map_or_else(|| "nothing".to_owned(), |&b| describe(b)),
        }
    }

    /// Reads a head of major type `major` and returns its argument, refusing any other major
    /// type, indefinite lengths, reserved values and non-shortest arguments.
    fn head(
        &mut self,
        major: u8,
        field: Field,
        expected: &'static str,
    ) -> Result<u64, ReleaseError> {
        let offset = self.pos;
        let [initial] = self.take_array::<1>(field, expected)?;
        if initial >> 5 != major {
            return Err(self.unexpected(offset, field, expected));
        }
        let info = initial & 0x1f;
        let (arg, width, minimum) = match info {
            0..=23 => return Ok(u64::from(info)),
            24 => (u64::from(self.take_array::<1>(field, expected)?[0]), 1, 24),
            25 => (
                u64::from(u16::from_be_bytes(self.take_array(field, expected)?)),
                2,
                0x100,
            ),
            26 => (
                u64::from(u32::from_be_bytes(self.take_array(field, expected)?)),
                4,
                0x1_0000,
            ),
            27 => (
                u64::from_be_bytes(self.take_array(field, expected)?),
                8,
                0x1_0000_0000,
            ),
            _ => return Err(self.unexpected(offset, field, expected)),
        };
        if arg < minimum {
            return Err(ReleaseError::NonShortestHead {
                offset,
                field: field.to_string(),
                value: arg,
                width,
            });
        }
        Ok(arg)
    }

    /// An array header; returns where it starts and its length.
    pub(super) fn array(&mut self, field: Field) -> Result<(usize, usize), ReleaseError> {
        let offset = self.pos;
        let len = self.head(
            MAJOR_ARRAY,
            field,
            "an array (major type 4, definite length)",
        )?;
        // A length that does not fit usize is longer than any input anyway.
        Ok((offset, usize::try_from(len).unwrap_or(usize::MAX)))
    }

    /// An array header whose length must be exactly `expected`.
    pub(super) fn array_of(&mut self, expected: usize, field: Field) -> Result<(), ReleaseError> {
        let (offset, len) = self.array(field)?;
        if len != expected {
            return Err(ReleaseError::ArrayLength {
                offset,
                field: field.to_string(),
                found: len,
                expected: format!("exactly {expected}"),
            });
        }
        Ok(())
    }

    pub(super) fn uint(&mut self, field: Field) -> Result<u64, ReleaseError> {
        self.head(MAJOR_UNSIGNED, field, "an unsigned integer (major type 0)")
    }

    pub(super) fn int(&mut self, field: Field) -> Result<i64, ReleaseError> {
        const EXPECTED: &str = "an integer (major type 0 or 1)";
        let offset = self.pos;
        let negative = self.peek().is_some_and(|b| b >> 5 == MAJOR_NEGATIVE);
        let arg = self.head(
            if negative {
                MAJOR_NEGATIVE
            } else {
                MAJOR_UNSIGNED
            },
            field,
            EXPECTED,
        )?;
        match i64::try_from(arg) {
            Ok(v) if negative => Ok(-1 - v),
            Ok(v) => Ok(v),
            Err(_) => Err(ReleaseError::IntegerOutOfRange {
                offset,
                field: field.to_string(),
                value: if negative {
                    -1 - i128::from(arg)
                } else {
                    i128::from(arg)
                },
                expected: "a 64-bit signed integer (-2^63 to 2^63-1)",
            }),
        }
    }

    /// A byte string of exactly `N` bytes.
    pub(super) fn bytes<const N: usize>(&mut self, field: Field) -> Result<[u8; N], ReleaseError> {
        const EXPECTED: &str = "a byte string (major type 2)";
        let offset = self.pos;
        let len = self.head(MAJOR_BYTES, field, EXPECTED)?;
        if len != N as u64 {
            return Err(ReleaseError::WrongLength {
                offset,
                field: field.to_string(),
                found: len,
                expected: N,
            });
        }
        self.take_array(field, EXPECTED)
    }

    /// A text string of at most `max` bytes.
    pub(super) fn text(&mut self, max: usize, field: Field) -> Result<&'a str, ReleaseError> {
        const EXPECTED: &str = "a text string (major type 3)";
        let offset = self.pos;
        let len = self.head(MAJOR_TEXT, field, EXPECTED)?;
        let len = match usize::try_from(len) {
            Ok(len) if len <= max => len,
            _ => {
                return Err(ReleaseError::TooLong {
                    offset,
                    field: field.to_string(),
                    len,
                    max,
                });
            }
        };
        let raw = self.take(len, field, EXPECTED)?;
        std::str::from_utf8(raw).map_err(|_| ReleaseError::InvalidUtf8 {
            offset,
            field: field.to_string(),
        })
    }

    /// A text string of at most `max` bytes, or `null`.
    pub(super) fn opt_text(
        &mut self,
        max: usize,
        field: Field,
    ) -> Result<Option<&'a str>, ReleaseError> {
        if self.peek() == Some(NULL) {
            self.pos += 1;
            return Ok(None);
        }
        let offset = self.pos;
        if self.peek().is_some_and(|b| b >> 5 != MAJOR_TEXT) {
            return Err(self.unexpected(
                offset,
                field,
                "a text string (major type 3) or null (0xf6)",
            ));
        }
        self.text(max, field).map(Some)
    }

    /// A 64-bit float, whatever its value; callers check the range.
    pub(super) fn f64(&mut self, field: Field) -> Result<f64, ReleaseError> {
        const EXPECTED: &str = "a 64-bit float (0xfb followed by 8 bytes)";
        let offset = self.pos;
        let [initial] = self.take_array::<1>(field, EXPECTED)?;
        if initial != FLOAT64 {
            return Err(self.unexpected(offset, field, EXPECTED));
        }
        Ok(f64::from_bits(u64::from_be_bytes(
            self.take_array(field, EXPECTED)?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(f: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::default();
        f(&mut w);
        w.into_bytes()
    }

    #[test]
    fn heads_are_shortest() {
        assert_eq!(encoded(|w| w.uint(0)), [0x00]);
        assert_eq!(encoded(|w| w.uint(23)), [0x17]);
        assert_eq!(encoded(|w| w.uint(24)), [0x18, 24]);
        assert_eq!(encoded(|w| w.uint(255)), [0x18, 0xff]);
        assert_eq!(encoded(|w| w.uint(256)), [0x19, 0x01, 0x00]);
        assert_eq!(encoded(|w| w.uint(65_536)), [0x1a, 0, 1, 0, 0]);
        assert_eq!(encoded(|w| w.uint(1 << 32)), [0x1b, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(encoded(|w| w.int(-1)), [0x20]);
        assert_eq!(encoded(|w| w.int(-25)), [0x38, 24]);
        assert_eq!(
            encoded(|w| w.int(i64::MIN)),
            [0x3b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        assert_eq!(
            encoded(|w| w.f64(1.0)),
            [0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn refuses_longer_heads_than_needed() {
        for bytes in [
            &[0x18, 23][..],
            &[0x19, 0, 0xff],
            &[0x1a, 0, 0, 0xff, 0xff],
            &[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ] {
            let err = Reader::new(bytes).uint(Field::Top("x"));
            assert!(
                matches!(err, Err(ReleaseError::NonShortestHead { offset: 0, .. })),
                "{bytes:?}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_indefinite_and_reserved_heads() {
        for bytes in [[0x9f], [0x7f], [0x1c], [0x1f]] {
            let err = if bytes[0] >> 5 == MAJOR_ARRAY {
                Reader::new(&bytes).array(Field::Top("x")).map(|_| ())
            } else if bytes[0] >> 5 == MAJOR_TEXT {
                Reader::new(&bytes).text(10, Field::Top("x")).map(|_| ())
            } else {
                Reader::new(&bytes).uint(Field::Top("x")).map(|_| ())
            };
            assert!(
                matches!(err, Err(ReleaseError::UnexpectedItem { offset: 0, .. })),
                "{bytes:?}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_other_float_widths() {
        let half = [0xf9, 0x3c, 0x00];
        let err = Reader::new(&half).f64(Field::Cell(2, "scale"));
        match err {
            Err(e @ ReleaseError::UnexpectedItem { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("cells[2].scale") && msg.contains("16-bit float"),
                    "{msg}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_integers_beyond_i64() {
        let bytes = encoded(|w| w.head(MAJOR_NEGATIVE, u64::MAX));
        let err = Reader::new(&bytes).int(Field::Cell(0, "value"));
        assert!(
            matches!(err, Err(ReleaseError::IntegerOutOfRange { value, .. }) if value == -1 - i128::from(u64::MAX))
        );
        let bytes = encoded(|w| w.uint(1 << 63));
        assert!(matches!(
            Reader::new(&bytes).int(Field::Top("x")),
            Err(ReleaseError::IntegerOutOfRange { .. })
        ));
    }

    #[test]
    fn refuses_truncated_and_oversized_strings() {
        let bytes = encoded(|w| w.text("period"));
        let err = Reader::new(&bytes[..4]).text(10, Field::Top("period"));
        assert!(
            matches!(err, Err(ReleaseError::Truncated { offset: 4, .. })),
            "{err:?}"
        );
        let err = Reader::new(&bytes).text(3, Field::Top("period"));
        assert!(
            matches!(err, Err(ReleaseError::TooLong { len: 6, max: 3, .. })),
            "{err:?}"
        );
        // A huge declared length is refused before anything is allocated or read.
        let huge = [0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge).text(10, Field::Top("x")),
            Err(ReleaseError::TooLong { .. })
        ));
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge).bytes::<32>(Field::Top("x")),
            Err(ReleaseError::WrongLength { .. })
        ));
    }

    proptest! {
        #[test]
        fn integers_round_trip(v in any::<i64>()) {
            let bytes = encoded(|w| w.int(v));
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.int(Field::Top("x")).ok(), Some(v));
            prop_assert!(r.finish("x").is_ok());
        }

        #[test]
        fn unsigned_round_trip(v in any::<u64>()) {
            let bytes = encoded(|w| w.uint(v));
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.uint(Field::Top("x")).ok(), Some(v));
            prop_assert!(r.finish("x").is_ok());
        }

        #[test]
        fn floats_round_trip_bit_for_bit(bits in any::<u64>()) {
            let bytes = encoded(|w| w.f64(f64::from_bits(bits)));
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.f64(Field::Top("x")).ok().map(f64::to_bits), Some(bits));
        }

        #[test]
        fn texts_round_trip(s in ".{0,40}") {
            let bytes = encoded(|w| w.text(&s));
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.text(1000, Field::Top("x")).ok(), Some(s.as_str()));
        }
    }
}
