//! The strict subset of CBOR (RFC 8949) that canonical aggregates use, and nothing more.
//!
//! The same subset as releases (unsigned and negative integers, byte strings, text strings,
//! definite-length arrays, `null` and 64-bit floats), with errors that speak of aggregates and
//! name paths such as `contributions[3].index` or `coverage.missing[0]`. The reader accepts
//! exactly the forms the writer produces: shortest heads, definite lengths, 64-bit floats only.
//! It never allocates more than the input's own length and never panics.

use std::fmt;

use super::AggregateError;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_NEGATIVE: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;

/// `null` (major type 7, simple value 22).
const NULL: u8 = 0xf6;
/// The initial byte of a 64-bit float (major type 7, additional information 27).
const FLOAT64: u8 = 0xfb;

/// Which field is being read, for error messages; `Copy` so that naming a field costs nothing
/// until an error is actually built.
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    /// A top-level field or a whole item, e.g. `period` or `signed aggregate`.
    Top(&'static str),
    /// A field of contribution `n`; an empty name means the contribution itself.
    Contribution(usize, &'static str),
    /// A field of cell `n`; an empty name means the cell itself.
    Cell(usize, &'static str),
    /// Element `n` of a list of keys, e.g. `coverage.missing`.
    Key(&'static str, usize),
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Top(name) => f.write_str(name),
            Self::Contribution(n, "") => write!(f, "contributions[{n}]"),
            Self::Contribution(n, name) => write!(f, "contributions[{n}].{name}"),
            Self::Cell(n, "") => write!(f, "cells[{n}]"),
            Self::Cell(n, name) => write!(f, "cells[{n}].{name}"),
            Self::Key(list, n) => write!(f, "{list}[{n}]"),
        }
    }
}

/// Appends canonical CBOR items to a buffer.
#[derive(Debug, Default)]
pub(super) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
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

    pub(super) fn null(&mut self) {
        self.buf.push(NULL);
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
    if initial & 0x1f == 31 && (2..=5).contains(&(initial >> 5)) {
        format!("0x{initial:02x} (indefinite-length {kind})")
    } else {
        format!("0x{initial:02x} ({kind})")
    }
}

/// Reads canonical CBOR items from a byte slice, refusing every other form.
#[derive(Debug)]
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left; bounds what a declared length may make the decoder allocate.
    pub(super) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    /// Fails unless every byte has been read.
    pub(super) fn finish(&self, what: &'static str) -> Result<(), AggregateError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(AggregateError::TrailingBytes {
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
    ) -> Result<&'a [u8], AggregateError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end)) {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(AggregateError::Truncated {
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
    ) -> Result<[u8; N], AggregateError> {
        let slice = self.take(N, field, expected)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn unexpected(&self, offset: usize, field: Field, expected: &'static str) -> AggregateError {
        AggregateError::UnexpectedItem {
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
    ) -> Result<u64, AggregateError> {
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
            // 28 to 30 are reserved, 31 is an indefinite length.
            _ => return Err(self.unexpected(offset, field, expected)),
        };
        if arg < minimum {
            return Err(AggregateError::NonShortestHead {
                offset,
                field: field.to_string(),
                value: arg,
                width,
            });
        }
        Ok(arg)
    }

    /// An array header; returns where it starts and its length.
    pub(super) fn array(&mut self, field: Field) -> Result<(usize, usize), AggregateError> {
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
    pub(super) fn array_of(&mut self, expected: usize, field: Field) -> Result<(), AggregateError> {
        let (offset, len) = self.array(field)?;
        if len != expected {
            return Err(AggregateError::ArrayLength {
                offset,
                field: field.to_string(),
                found: len,
                expected: format!("exactly {expected}"),
            });
        }
        Ok(())
    }

    pub(super) fn uint(&mut self, field: Field) -> Result<u64, AggregateError> {
        self.head(MAJOR_UNSIGNED, field, "an unsigned integer (major type 0)")
    }

    pub(super) fn int(&mut self, field: Field) -> Result<i64, AggregateError> {
        const EXPECTED: &str = "an integer (major type 0 or 1)";
        let offset = self.pos;
        let negative = self.peek().is_some_and(|b| b >> 5 == MAJOR_NEGATIVE);
        let major = if negative {
            MAJOR_NEGATIVE
        } else {
            MAJOR_UNSIGNED
        };
        let arg = self.head(major, field, EXPECTED)?;
        match i64::try_from(arg) {
            Ok(v) if negative => Ok(-1 - v),
            Ok(v) => Ok(v),
            Err(_) => Err(AggregateError::IntegerOutOfRange {
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
    pub(super) fn bytes<const N: usize>(
        &mut self,
        field: Field,
    ) -> Result<[u8; N], AggregateError> {
        const EXPECTED: &str = "a byte string (major type 2)";
        let offset = self.pos;
        let len = self.head(MAJOR_BYTES, field, EXPECTED)?;
        if len != N as u64 {
            return Err(AggregateError::WrongLength {
                offset,
                field: field.to_string(),
                found: len,
                expected: N,
            });
        }
        self.take_array(field, EXPECTED)
    }

    /// A text string of at most `max` bytes.
    pub(super) fn text(&mut self, max: usize, field: Field) -> Result<&'a str, AggregateError> {
        const EXPECTED: &str = "a text string (major type 3)";
        let offset = self.pos;
        let len = self.head(MAJOR_TEXT, field, EXPECTED)?;
        let len = match usize::try_from(len) {
            Ok(len) if len <= max => len,
            _ => {
                return Err(AggregateError::TooLong {
                    offset,
                    field: field.to_string(),
                    len,
                    max,
                });
            }
        };
        let raw = self.take(len, field, EXPECTED)?;
        std::str::from_utf8(raw).map_err(|_| AggregateError::InvalidUtf8 {
            offset,
            field: field.to_string(),
        })
    }

    /// Reads `null` if it is next (and says so); otherwise reads nothing.
    pub(super) fn null(&mut self) -> bool {
        if self.peek() == Some(NULL) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// A text string of at most `max` bytes, or `null`.
    pub(super) fn opt_text(
        &mut self,
        max: usize,
        field: Field,
    ) -> Result<Option<&'a str>, AggregateError> {
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
    pub(super) fn f64(&mut self, field: Field) -> Result<f64, AggregateError> {
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
        assert_eq!(encoded(|w| w.uint(23)), [0x17]);
        assert_eq!(encoded(|w| w.uint(24)), [0x18, 24]);
        assert_eq!(encoded(|w| w.uint(256)), [0x19, 0x01, 0x00]);
        assert_eq!(encoded(|w| w.uint(1 << 32)), [0x1b, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(encoded(|w| w.int(-1)), [0x20]);
        assert_eq!(encoded(|w| w.opt_text(None)), [0xf6]);
        assert_eq!(
            encoded(|w| w.f64(4.5)),
            [0xfb, 0x40, 0x12, 0, 0, 0, 0, 0, 0]
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
            let err = Reader::new(bytes).uint(Field::Contribution(3, "index"));
            assert!(
                matches!(&err, Err(AggregateError::NonShortestHead { offset: 0, field, .. }) if field == "contributions[3].index"),
                "{bytes:?}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_other_float_widths_and_items() {
        let err = Reader::new(&[0xfa, 0x3f, 0x80, 0, 0]).f64(Field::Cell(2, "variance"));
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("cells[2].variance") && msg.contains("32-bit float"),
            "{msg}"
        );
        let err = Reader::new(&[0x9f]).array(Field::Key("coverage.missing", 0));
        assert!(
            matches!(err, Err(AggregateError::UnexpectedItem { ref found, .. }) if found.contains("indefinite")),
            "{err:?}"
        );
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge).bytes::<32>(Field::Top("signer")),
            Err(AggregateError::WrongLength { .. })
        ));
        let huge = [0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge).text(10, Field::Top("level")),
            Err(AggregateError::TooLong { .. })
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
        fn floats_round_trip_bit_for_bit(bits in any::<u64>()) {
            let bytes = encoded(|w| w.f64(f64::from_bits(bits)));
            let mut r = Reader::new(&bytes);
            prop_assert_eq!(r.f64(Field::Top("x")).ok().map(f64::to_bits), Some(bits));
        }
    }
}
