//! The strict subset of CBOR (RFC 8949) that checkpoints and receipts use: unsigned integers,
//! byte strings, text strings and definite-length arrays, every head in its shortest form.
//!
//! The reader accepts exactly what the writer produces and names the byte offset and the field of
//! anything else; it never allocates and never panics. (Releases have their own, larger subset in
//! `release::cbor`, whose errors speak of releases and cells.)

use super::CheckpointError;

const MAJOR_UNSIGNED: u8 = 0;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;

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

    pub(super) fn bytes(&mut self, b: &[u8]) {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    pub(super) fn text(&mut self, s: &str) {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }
}

/// How an initial byte reads to a person: `0x63 (text string)`.
fn describe(initial: u8) -> String {
    let kind = match initial >> 5 {
        MAJOR_UNSIGNED => "unsigned integer",
        1 => "negative integer",
        MAJOR_BYTES => "byte string",
        MAJOR_TEXT => "text string",
        MAJOR_ARRAY => "array",
        5 => "map",
        6 => "tag",
        _ => "simple value or float",
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
    /// What is being read, for error messages: `checkpoint`, `signed receipt`, ...
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            pos: 0,
            what,
        }
    }

    /// Fails unless every byte has been read.
    pub(super) fn finish(&self) -> Result<(), CheckpointError> {
        match self.bytes.len().checked_sub(self.pos) {
            Some(0) | None => Ok(()),
            Some(count) => Err(CheckpointError::TrailingBytes {
                what: self.what,
                offset: self.pos,
                count,
            }),
        }
    }

    fn take(
        &mut self,
        n: usize,
        field: &'static str,
        expected: &'static str,
    ) -> Result<&'a [u8], CheckpointError> {
        let slice = self
            .pos
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.pos..end));
        match slice {
            Some(slice) => {
                self.pos += n;
                Ok(slice)
            }
            None => Err(CheckpointError::Truncated {
                what: self.what,
                offset: self.bytes.len(),
                field,
                expected,
            }),
        }
    }

    fn take_array<const N: usize>(
        &mut self,
        field: &'static str,
        expected: &'static str,
    ) -> Result<[u8; N], CheckpointError> {
        let slice = self.take(N, field, expected)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    /// Reads a head of major type `major` and returns its argument, refusing any other major
    /// type, indefinite lengths, reserved values and non-shortest arguments.
    fn head(
        &mut self,
        major: u8,
        field: &'static str,
        expected: &'static str,
    ) -> Result<u64, CheckpointError> {
        let offset = self.pos;
        let [initial] = self.take_array::<1>(field, expected)?;
        let what = self.what;
        let unexpected = || CheckpointError::UnexpectedItem {
            what,
            offset,
            field,
            expected,
            found: describe(initial),
        };
        if initial >> 5 != major {
            return Err(unexpected());
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
            _ => return Err(unexpected()),
        };
        if arg < minimum {
            return Err(CheckpointError::NonShortestHead {
                what: self.what,
                offset,
                field,
                value: arg,
                width,
            });
        }
        Ok(arg)
    }

    /// An array header; returns where it starts and its length.
    pub(super) fn array(&mut self, field: &'static str) -> Result<(usize, u64), CheckpointError> {
        let offset = self.pos;
        let len = self.head(
            MAJOR_ARRAY,
            field,
            "an array (major type 4, definite length)",
        )?;
        Ok((offset, len))
    }

    /// An array header whose length must be exactly `expected`.
    pub(super) fn array_of(
        &mut self,
        expected: usize,
        field: &'static str,
    ) -> Result<(), CheckpointError> {
        let (offset, len) = self.array(field)?;
        if len != expected as u64 {
            return Err(CheckpointError::ArrayLength {
                what: self.what,
                offset,
                field,
                found: len,
                expected,
            });
        }
        Ok(())
    }

    pub(super) fn uint(&mut self, field: &'static str) -> Result<u64, CheckpointError> {
        self.head(MAJOR_UNSIGNED, field, "an unsigned integer (major type 0)")
    }

    /// A byte string of exactly `N` bytes.
    pub(super) fn bytes<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], CheckpointError> {
        const EXPECTED: &str = "a byte string (major type 2)";
        let offset = self.pos;
        let len = self.head(MAJOR_BYTES, field, EXPECTED)?;
        if len != N as u64 {
            return Err(CheckpointError::WrongLength {
                what: self.what,
                offset,
                field,
                found: len,
                expected: N,
            });
        }
        self.take_array(field, EXPECTED)
    }

    /// A text string of at most `max` bytes.
    pub(super) fn text(
        &mut self,
        max: usize,
        field: &'static str,
    ) -> Result<&'a str, CheckpointError> {
        const EXPECTED: &str = "a text string (major type 3)";
        let offset = self.pos;
        let len = self.head(MAJOR_TEXT, field, EXPECTED)?;
        let len = match usize::try_from(len) {
            Ok(len) if len <= max => len,
            _ => {
                return Err(CheckpointError::TooLong {
                    what: self.what,
                    offset,
                    field,
                    len,
                    max,
                });
            }
        };
        let raw = self.take(len, field, EXPECTED)?;
        std::str::from_utf8(raw).map_err(|_| CheckpointError::InvalidUtf8 {
            what: self.what,
            offset,
            field,
        })
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
        assert_eq!(encoded(|w| w.uint(256)), [0x19, 0x01, 0x00]);
        assert_eq!(encoded(|w| w.uint(65_536)), [0x1a, 0, 1, 0, 0]);
        assert_eq!(encoded(|w| w.uint(1 << 32)), [0x1b, 0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(encoded(|w| w.bytes(&[7; 32]))[..2], [0x58, 32]);
        assert_eq!(encoded(|w| w.text("ab")), [0x62, b'a', b'b']);
        assert_eq!(encoded(|w| w.array(6)), [0x86]);
    }

    #[test]
    fn refuses_longer_heads_than_needed() {
        for bytes in [
            &[0x18, 23][..],
            &[0x19, 0, 0xff],
            &[0x1a, 0, 0, 0xff, 0xff],
            &[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff],
        ] {
            let err = Reader::new(bytes, "checkpoint").uint("tree_size");
            assert!(
                matches!(
                    err,
                    Err(CheckpointError::NonShortestHead {
                        offset: 0,
                        field: "tree_size",
                        ..
                    })
                ),
                "{bytes:?}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_indefinite_reserved_and_other_types() {
        for (bytes, read) in [
            (&[0x9f][..], "array"),
            (&[0x7f], "text"),
            (&[0x5f], "bytes"),
            (&[0x1c], "uint"),
            (&[0x1f], "uint"),
            (&[0x20], "uint"),
            (&[0xf6], "uint"),
            (&[0xa0], "array"),
            (&[0xc0], "uint"),
        ] {
            let mut r = Reader::new(bytes, "receipt");
            let err = match read {
                "array" => r.array("receipt").map(|_| ()),
                "text" => r.text(10, "origin").map(|_| ()),
                "bytes" => r.bytes::<32>("root").map(|_| ()),
                _ => r.uint("index").map(|_| ()),
            };
            assert!(
                matches!(err, Err(CheckpointError::UnexpectedItem { offset: 0, .. })),
                "{bytes:?}: {err:?}"
            );
        }
    }

    #[test]
    fn refuses_truncated_and_oversized_items() {
        let bytes = encoded(|w| w.text("origin"));
        assert!(matches!(
            Reader::new(&bytes[..4], "checkpoint").text(10, "origin"),
            Err(CheckpointError::Truncated { offset: 4, .. })
        ));
        assert!(matches!(
            Reader::new(&bytes, "checkpoint").text(3, "origin"),
            Err(CheckpointError::TooLong { len: 6, max: 3, .. })
        ));
        let huge = [0x7b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge, "checkpoint").text(10, "origin"),
            Err(CheckpointError::TooLong { .. })
        ));
        let huge = [0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            Reader::new(&huge, "checkpoint").bytes::<32>("root"),
            Err(CheckpointError::WrongLength { .. })
        ));
        let bytes = encoded(|w| w.bytes(&[1; 32]));
        assert!(matches!(
            Reader::new(&bytes[..20], "checkpoint").bytes::<32>("root"),
            Err(CheckpointError::Truncated { offset: 20, .. })
        ));
        assert!(matches!(
            Reader::new(&[0x62, 0xff, 0xfe], "checkpoint").text(10, "origin"),
            Err(CheckpointError::InvalidUtf8 { offset: 0, .. })
        ));
    }

    proptest! {
        #[test]
        fn unsigned_round_trip(v in any::<u64>()) {
            let bytes = encoded(|w| w.uint(v));
            let mut r = Reader::new(&bytes, "x");
            prop_assert_eq!(r.uint("x").ok(), Some(v));
            prop_assert!(r.finish().is_ok());
        }

        #[test]
        fn texts_round_trip(s in ".{0,40}") {
            let bytes = encoded(|w| w.text(&s));
            let mut r = Reader::new(&bytes, "x");
            prop_assert_eq!(r.text(1000, "x").ok(), Some(s.as_str()));
            prop_assert!(r.finish().is_ok());
        }
    }
}
