//! Unit and property tests of the release encoding, signature and JSON view.

use std::error::Error;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

type TestResult = Result<(), Box<dyn Error>>;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn cell(indicator: Indicator, category: Option<&str>, value: i64) -> Cell {
    Cell {
        indicator,
        category: category.map(str::to_owned),
        value,
        scale: 4.0,
        ci95_half_width: 11.98,
    }
}

/// Every cell of `indicator`, with values 0, 1, 2, ...
fn cells_of(indicator: Indicator) -> Vec<Cell> {
    let categories = indicator.categories();
    if categories.is_empty() {
        vec![cell(indicator, None, 7)]
    } else {
        categories
            .iter()
            .zip(0..)
            .map(|(c, v)| cell(indicator, Some(c), v))
            .collect()
    }
}

/// A small valid release: a count_by, a count, a sum and a histogram.
fn sample(key: &SigningKey) -> Result<Release, Box<dyn Error>> {
    let mut cells = cells_of(Indicator::Accompagnements);
    cells.extend(cells_of(Indicator::Beneficiaires));
    cells.extend(cells_of(Indicator::DureeMinutes));
    cells.extend(cells_of(Indicator::Autonomie));
    Ok(Release {
        signer: key.verifying_key(),
        period: Period::new(2026, 10).ok_or("period in range")?,
        params: "maillage-core-v1/eps=1.0/laplace".to_owned(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: 1_793_491_200,
        cells,
    })
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Finite floats greater than 0, from the whole range of bit patterns and from everyday values.
fn positive() -> impl Strategy<Value = f64> {
    prop_oneof![
        (1u64..0x7ff0_0000_0000_0000).prop_map(f64::from_bits),
        0.001f64..1000.0
    ]
}

/// Finite floats ≥ 0, +0 included, −0 excluded.
fn non_negative() -> impl Strategy<Value = f64> {
    prop_oneof![
        (0u64..0x7ff0_0000_0000_0000).prop_map(f64::from_bits),
        0.0f64..1000.0,
        Just(0.0)
    ]
}

prop_compose! {
    fn arb_signed()(
        seed in any::<[u8; 32]>(),
        year in 2000i32..=2999,
        month in 1u8..=12,
        params in "[!-~]{1,64}",
        gaussian in any::<bool>(),
        loss in positive(),
        created_at in any::<u64>(),
        chosen in vec(any::<bool>(), Indicator::ALL.len()),
        first in 0..Indicator::ALL.len(),
        figures in vec((any::<i64>(), positive(), non_negative()), max_cells()),
    ) -> (SigningKey, Release) {
        let key = SigningKey::from_bytes(&seed);
        let mut cells = Vec::new();
        let mut figures = figures.into_iter();
        for (n, indicator) in Indicator::ALL.iter().enumerate() {
            if !(chosen[n] || n == first) {
                continue;
            }
            for mut c in cells_of(*indicator) {
                if let Some((value, scale, ci)) = figures.next() {
                    (c.value, c.scale, c.ci95_half_width) = (value, scale, ci);
                }
                cells.push(c);
            }
        }
        let mechanism = if gaussian { Mechanism::Gaussian { rho: loss } } else { Mechanism::Laplace { epsilon: loss } };
        // unwrap safety: the strategy draws year and month in range.
        #[allow(clippy::unwrap_used)]
        let period = Period::new(year, month).unwrap();
        let release = Release { signer: key.verifying_key(), period, params, mechanism, created_at, cells };
        (key, release)
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trips((_key, release) in arb_signed()) {
        let bytes = release.canonical_bytes().map_err(fail)?;
        let decoded = Release::decode(&bytes).map_err(fail)?;
        prop_assert_eq!(&decoded, &release);
        prop_assert_eq!(decoded.canonical_bytes().map_err(fail)?, bytes);
    }

    #[test]
    fn sign_verify_round_trips((key, release) in arb_signed()) {
        let signed = SignedRelease::sign(release.clone(), &key).map_err(fail)?;
        prop_assert!(signed.verify().is_ok());
        let bytes = signed.to_bytes();
        let back = SignedRelease::decode_and_verify(&bytes).map_err(fail)?;
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(back.id(), release.id().map_err(fail)?);
        prop_assert_eq!(signed.canonical_release(), release.canonical_bytes().map_err(fail)?);
    }

    #[test]
    fn any_flipped_byte_is_refused((key, release) in arb_signed(), at in any::<Index>(), mask in 1u8..=255) {
        let signed = SignedRelease::sign(release, &key).map_err(fail)?;
        let mut bytes = signed.to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(SignedRelease::decode_and_verify(&bytes).is_err(), "flip 0x{:02x} at byte {} accepted", mask, at);
    }

    #[test]
    fn another_signer_is_refused((key, release) in arb_signed(), other in any::<[u8; 32]>()) {
        let other = SigningKey::from_bytes(&other);
        prop_assume!(other.verifying_key() != key.verifying_key());
        let signed = SignedRelease::sign(release.clone(), &key).map_err(fail)?;
        let (mut claimed, signature) = signed.into_parts();
        claimed.signer = other.verifying_key();
        let forged = SignedRelease::from_parts(claimed, signature).map_err(fail)?;
        let verified = forged.verify();
        prop_assert!(matches!(verified, Err(ReleaseError::BadSignature { .. })), "{:?}", verified);
        let mismatched = SignedRelease::sign(release, &other);
        prop_assert!(matches!(mismatched, Err(ReleaseError::SignerMismatch { .. })), "{:?}", mismatched);
    }

    #[test]
    fn json_round_trip_verifies((key, release) in arb_signed()) {
        let signed = SignedRelease::sign(release.clone(), &key).map_err(fail)?;
        let text = signed.to_json_pretty();
        let back = SignedRelease::from_json_and_verify(&text).map_err(fail)?;
        prop_assert_eq!(back.canonical_release(), signed.canonical_release());
        prop_assert_eq!(&back, &signed);
        let unsigned = release.to_json_pretty().map_err(fail)?;
        prop_assert_eq!(Release::from_json(&unsigned).map_err(fail)?, release);
        // The serde impls give the same view.
        let via_serde: SignedRelease = serde_json::from_str(&serde_json::to_string(&signed).map_err(fail)?).map_err(fail)?;
        prop_assert_eq!(via_serde, signed);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
        let _ = Release::decode(&bytes);
        let _ = SignedRelease::decode_and_verify(&bytes);
        // The same bytes behind a valid start reach deeper into the decoder.
        let mut prefixed = vec![0x82, 0x88, 0x01, 0x58, 0x20];
        prefixed.extend_from_slice(&bytes);
        let _ = SignedRelease::decode_and_verify(&prefixed);
    }

    #[test]
    fn decoders_accept_only_what_they_would_write(
        (key, release) in arb_signed(),
        edits in vec((any::<Index>(), 0u8..3, any::<u8>()), 1..4),
    ) {
        let mut bytes = SignedRelease::sign(release, &key).map_err(fail)?.to_bytes();
        for (at, kind, byte) in edits {
            let at = at.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
            if bytes.is_empty() { break; }
        }
        let decoded = SignedRelease::decode(&bytes);
        if let Ok(decoded) = &decoded {
            prop_assert_eq!(&decoded.to_bytes(), &bytes);
        }
        // The head-only checker accepts exactly the same bytes, with the same head, and
        // refuses the others with the same error.
        let checked = SignedRelease::check_with(&bytes, &SignerKeys::default());
        // With the signer's key kept (a hub's members), the same answer.
        let kept: SignerKeys = [key.verifying_key()].into_iter().collect();
        let checked_kept = SignedRelease::check_with(&bytes, &kept);
        let comparable = |c: &Result<(ReleaseHead, Signature), ReleaseError>| match c {
            Ok((h, sig)) => Ok((h.signer.to_bytes(), h.period, h.params.clone(), h.mechanism, h.created_at, h.cells, *sig)),
            Err(e) => Err(format!("{e:?}")),
        };
        prop_assert_eq!(comparable(&checked), comparable(&checked_kept));
        match (decoded, checked) {
            (Ok(full), Ok((head, signature))) => {
                let r = full.release();
                prop_assert_eq!(
                    (r.signer, r.period, &r.params, r.mechanism, r.created_at, r.cells.len()),
                    (head.signer, head.period, &head.params, head.mechanism, head.created_at, head.cells)
                );
                prop_assert_eq!(full.signature(), &signature);
            }
            (Err(a), Err(b)) => prop_assert_eq!(format!("{a:?}"), format!("{b:?}")),
            (a, b) => prop_assert!(false, "decode: {:?}, check_with: {:?}", a.err(), b.err()),
        }
        let _ = Release::decode(&bytes);
    }

    #[test]
    fn json_reader_never_panics(text in ".{0,300}") {
        let _ = SignedRelease::from_json(&text);
        let _ = Release::from_json(&text);
    }

    #[test]
    fn json_reader_never_panics_on_damaged_releases(
        (key, release) in arb_signed(),
        at in any::<Index>(),
        junk in "[\\[\\]{}\":,0-9a-z. -]{0,4}",
        cut in 0usize..8,
    ) {
        let text = SignedRelease::sign(release, &key).map_err(fail)?.to_json_pretty();
        let at = text.char_indices().map(|(i, _)| i).nth(at.index(text.chars().count())).unwrap_or(0);
        let end = text[at..].char_indices().nth(cut).map_or(text.len(), |(i, _)| at + i);
        let damaged = format!("{}{}{}", &text[..at], junk, &text[end..]);
        if let Ok(read) = SignedRelease::from_json(&damaged) {
            // Whatever is accepted has a canonical form that decodes back to it.
            prop_assert_eq!(SignedRelease::decode(&read.to_bytes()).map_err(fail)?, read);
        }
    }
}

#[test]
fn every_flipped_byte_of_a_release_is_refused() -> TestResult {
    let key = key(7);
    let bytes = SignedRelease::sign(sample(&key)?, &key)?.to_bytes();
    for at in 0..bytes.len() {
        for mask in [0x01, 0x10, 0x80, 0xff] {
            let mut flipped = bytes.clone();
            flipped[at] ^= mask;
            assert!(
                SignedRelease::decode_and_verify(&flipped).is_err(),
                "flip 0x{mask:02x} at byte {at} accepted"
            );
        }
    }
    // Cutting the message anywhere is refused too.
    for len in 0..bytes.len() {
        assert!(
            SignedRelease::decode_and_verify(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    Ok(())
}

#[test]
fn layout_is_the_documented_one() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;
    let bytes = release.canonical_bytes()?;
    let mut expected = vec![0x88, 0x01, 0x58, 0x20];
    expected.extend_from_slice(key.verifying_key().as_bytes());
    expected.push(0x67);
    expected.extend_from_slice(b"2026-10");
    expected.push(0x78);
    expected.push(32);
    expected.extend_from_slice(b"maillage-core-v1/eps=1.0/laplace");
    expected.push(0x67);
    expected.extend_from_slice(b"laplace");
    expected.extend_from_slice(&[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]);
    expected.extend_from_slice(&[0x1a, 0x6a, 0xe6, 0x81, 0x00]);
    expected.push(0x80 | 7);
    // First cell: ["accompagnements", "individuel", 0, 4.0, 11.98]
    expected.push(0x85);
    expected.push(0x6f);
    expected.extend_from_slice(b"accompagnements");
    expected.push(0x6a);
    expected.extend_from_slice(b"individuel");
    expected.push(0x00);
    expected.extend_from_slice(&[0xfb, 0x40, 0x10, 0, 0, 0, 0, 0, 0]);
    expected.push(0xfb);
    expected.extend_from_slice(&11.98f64.to_bits().to_be_bytes());
    assert_eq!(bytes.get(..expected.len()), Some(&expected[..]));
    assert_eq!(1_793_491_200u64, 0x6ae6_8100);

    let signed = SignedRelease::sign(release, &key)?;
    let wire = signed.to_bytes();
    assert_eq!(wire[0], 0x82);
    assert_eq!(&wire[1..=bytes.len()], &bytes[..]);
    assert_eq!(&wire[bytes.len() + 1..bytes.len() + 3], &[0x58, 0x40]);
    assert_eq!(&wire[bytes.len() + 3..], &signed.signature().to_bytes()[..]);
    Ok(())
}

#[test]
fn canonical_bytes_are_plain_cbor() -> TestResult {
    use ciborium::Value;
    let key = key(7);
    let signed = SignedRelease::sign(sample(&key)?, &key)?;
    let value: Value = ciborium::from_reader(&signed.to_bytes()[..])?;
    let Value::Array(outer) = value else {
        return Err("not an array".into());
    };
    assert_eq!(outer.len(), 2);
    assert!(matches!(&outer[1], Value::Bytes(b) if b.len() == 64));
    let Value::Array(fields) = &outer[0] else {
        return Err("release is not an array".into());
    };
    assert_eq!(fields.len(), 8);
    assert_eq!(fields[0], Value::Integer(1.into()));
    assert_eq!(fields[2], Value::Text("2026-10".into()));
    assert_eq!(fields[5], Value::Float(1.0));
    let Value::Array(cells) = &fields[7] else {
        return Err("cells is not an array".into());
    };
    assert_eq!(cells.len(), 7);
    assert!(matches!(&cells[2], Value::Array(c) if c[1] == Value::Null));
    Ok(())
}

#[test]
fn signature_is_domain_separated() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;
    let bare = key.sign(&release.canonical_bytes()?);
    let signed = SignedRelease::from_parts(release, bare)?;
    assert!(matches!(
        signed.verify(),
        Err(ReleaseError::BadSignature { .. })
    ));
    Ok(())
}

#[test]
fn release_id_is_the_hash_of_the_signed_message() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;
    let signed = SignedRelease::sign(release.clone(), &key)?;
    let mut message = b"maillage/release/v1\0".to_vec();
    message.extend_from_slice(&release.canonical_bytes()?);
    let expected: [u8; 32] = Sha256::digest(&message).into();
    assert_eq!(signed.id().as_bytes(), &expected);
    assert_eq!(signed.id().to_string(), hex::encode(expected));
    // The signature does not enter the id.
    let other = SignedRelease::from_parts(release, Signature::from_bytes(&[0; 64]))?;
    assert_eq!(other.id(), signed.id());
    Ok(())
}

#[test]
fn equivocation_is_one_signer_one_period_two_releases() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;
    let a = SignedRelease::sign(release.clone(), &key)?;
    let mut changed = release.clone();
    changed.cells[0].value += 1;
    let b = SignedRelease::sign(changed.clone(), &key)?;
    assert!(a.equivocates_with(&b));
    assert!(!a.equivocates_with(&a.clone()));
    changed.period = changed.period.next();
    let next_month = SignedRelease::sign(changed, &key)?;
    assert!(!a.equivocates_with(&next_month));
    let other_key = self::key(8);
    let mut theirs = release;
    theirs.signer = other_key.verifying_key();
    let theirs = SignedRelease::sign(theirs, &other_key)?;
    assert!(!a.equivocates_with(&theirs));
    Ok(())
}

/// Replaces the first occurrence of `from` in `bytes` by `to`.
fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Result<Vec<u8>, Box<dyn Error>> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .ok_or("pattern not found")?;
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&bytes[at + from.len()..]);
    Ok(out)
}

fn decode_err(bytes: &[u8]) -> Result<ReleaseError, Box<dyn Error>> {
    match Release::decode(bytes) {
        Ok(_) => Err("decoded".into()),
        Err(e) => Ok(e),
    }
}

#[test]
fn refuses_non_canonical_heads_and_framing() -> TestResult {
    let key = key(7);
    let bytes = sample(&key)?.canonical_bytes()?;

    // The version, 1, written on two bytes.
    let err = decode_err(&patch(&bytes, &[0x88, 0x01], &[0x88, 0x18, 0x01])?)?;
    assert!(
        matches!(
            err,
            ReleaseError::NonShortestHead {
                offset: 1,
                value: 1,
                width: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("version"), "{err}");

    // The cell count, 7, written on two bytes.
    let err = decode_err(&patch(&bytes, &[0x87, 0x85], &[0x98, 0x07, 0x85])?)?;
    assert!(
        matches!(err, ReleaseError::NonShortestHead { ref field, .. } if field == "cells"),
        "{err:?}"
    );

    // An indefinite-length release array.
    let err = decode_err(&patch(&bytes, &[0x88], &[0x9f])?)?;
    assert!(err.to_string().contains("indefinite-length array"), "{err}");

    // A trailing byte.
    let mut trailing = bytes.clone();
    trailing.push(0x00);
    let err = decode_err(&trailing)?;
    assert_eq!(
        err,
        ReleaseError::TrailingBytes {
            offset: bytes.len(),
            count: 1,
            what: "release"
        }
    );

    // Truncated.
    let err = decode_err(&bytes[..bytes.len() - 3])?;
    assert!(
        matches!(err, ReleaseError::Truncated { ref field, .. } if field == "cells[6].ci95_half_width"),
        "{err:?}"
    );

    // Wrong array lengths.
    let err = decode_err(&patch(&bytes, &[0x88, 0x01], &[0x89, 0x01])?)?;
    assert!(
        matches!(err, ReleaseError::ArrayLength { found: 9, .. }),
        "{err:?}"
    );
    let err = decode_err(&patch(&bytes, &[0x87, 0x85], &[0x87, 0x84])?)?;
    assert!(
        matches!(err, ReleaseError::ArrayLength { ref field, found: 4, .. } if field == "cells[0]"),
        "{err:?}"
    );
    let err = decode_err(&patch(&bytes, &[0x58, 0x20], &[0x58, 0x1f])?)?;
    assert!(
        matches!(err, ReleaseError::WrongLength { ref field, found: 31, expected: 32, .. } if field == "signer"),
        "{err:?}"
    );

    // A 32-bit float for the loss.
    let err = decode_err(&patch(
        &bytes,
        &[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0],
        &[0xfa, 0x3f, 0x80, 0, 0],
    )?)?;
    assert!(
        matches!(err, ReleaseError::UnexpectedItem { ref field, .. } if field == "loss"),
        "{err:?}"
    );
    assert!(err.to_string().contains("32-bit float"), "{err}");

    // Another version comes first and is named as such.
    let err = decode_err(&patch(&bytes, &[0x88, 0x01], &[0x89, 0x02])?)?;
    assert_eq!(
        err,
        ReleaseError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );

    // An empty input, and an empty array.
    assert!(matches!(
        decode_err(&[])?,
        ReleaseError::Truncated { offset: 0, .. }
    ));
    assert!(matches!(
        decode_err(&[0x80])?,
        ReleaseError::ArrayLength { found: 0, .. }
    ));

    // Invalid UTF-8 in the period.
    let err = decode_err(&patch(&bytes, b"2026-10", b"2026-1\xff")?)?;
    assert!(
        matches!(err, ReleaseError::InvalidUtf8 { ref field, .. } if field == "period"),
        "{err:?}"
    );

    // The signed envelope: a trailing byte, a short signature.
    let signed = SignedRelease::sign(sample(&key)?, &key)?.to_bytes();
    let mut trailing = signed.clone();
    trailing.push(0xf6);
    let err = SignedRelease::decode(&trailing).err().ok_or("decoded")?;
    assert!(
        matches!(
            err,
            ReleaseError::TrailingBytes {
                what: "signed release",
                ..
            }
        ),
        "{err:?}"
    );
    let mut short = signed[..signed.len() - 1].to_vec();
    let sig_head = short.len() - 64;
    short[sig_head] = 0x3f;
    let err = SignedRelease::decode(&short).err().ok_or("decoded")?;
    assert!(
        matches!(
            err,
            ReleaseError::WrongLength {
                found: 63,
                expected: 64,
                ..
            }
        ),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn refuses_unknown_codes() -> TestResult {
    let key = key(7);
    let bytes = sample(&key)?.canonical_bytes()?;
    let err = decode_err(&patch(&bytes, b"beneficiaires", b"beneficiairez")?)?;
    assert_eq!(
        err,
        ReleaseError::UnknownIndicator {
            cell: 2,
            value: "beneficiairez".to_owned()
        }
    );
    assert!(
        err.to_string()
            .starts_with("cells[2].indicator: \"beneficiairez\" is not an indicator"),
        "{err}"
    );
    assert!(err.to_string().contains("nouveaux_beneficiaires"), "{err}");

    let err = decode_err(&patch(&bytes, b"\x67laplace", b"\x67laplacf")?)?;
    assert_eq!(
        err,
        ReleaseError::UnknownMechanism {
            value: "laplacf".to_owned()
        }
    );

    let err = decode_err(&patch(&bytes, b"2026-10", b"2026-13")?)?;
    assert!(matches!(err, ReleaseError::InvalidPeriod(_)), "{err:?}");
    assert!(err.to_string().contains("2026-13"), "{err}");

    let err = decode_err(&patch(&bytes, b"\x6aindividuel", b"\x6aindividuez")?)?;
    assert!(
        matches!(
            err,
            ReleaseError::UnexpectedCategory {
                cell: 0,
                expected: Some("individuel"),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("in this order: individuel, collectif"),
        "{err}"
    );
    Ok(())
}

/// The error of a release that is invalid in one way, checked the same way by `validate`, by
/// `canonical_bytes`, by the byte decoder and by the JSON reader.
fn refused(release: &Release) -> Result<ReleaseError, Box<dyn Error>> {
    // Compared through Debug, since NaN != NaN.
    let err = release.validate().err().ok_or("validated")?;
    let expected = Some(format!("{err:?}"));
    assert_eq!(
        release.canonical_bytes().err().map(|e| format!("{e:?}")),
        expected
    );
    assert_eq!(
        Release::decode(&release.encode_unchecked())
            .err()
            .map(|e| format!("{e:?}")),
        expected
    );
    // Signed (with any signature: it is not checked while decoding), both byte decoders of
    // signed releases refuse it the same way.
    let mut signed = vec![0x82];
    signed.extend_from_slice(&release.encode_unchecked());
    signed.extend_from_slice(&[0x58, 0x40]);
    signed.extend_from_slice(&[0; 64]);
    assert_eq!(
        SignedRelease::decode(&signed)
            .err()
            .map(|e| format!("{e:?}")),
        expected
    );
    assert_eq!(
        SignedRelease::check_with(&signed, &SignerKeys::default())
            .err()
            .map(|e| format!("{e:?}")),
        expected
    );
    // JSON has no NaN or infinities; they cannot be written, so they cannot be read.
    let finite = release
        .cells
        .iter()
        .all(|c| c.scale.is_finite() && c.ci95_half_width.is_finite());
    if finite && release.mechanism.loss().is_finite() {
        let json = json::to_string_pretty(&json::ReleaseJson::new(release, None));
        assert_eq!(
            Release::from_json(&json).err().map(|e| format!("{e:?}")),
            expected
        );
    }
    Ok(err)
}

#[test]
fn refuses_cells_out_of_catalogue_order() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;

    let mut r = release.clone();
    r.cells.insert(3, r.cells[2].clone());
    assert_eq!(
        refused(&r)?,
        ReleaseError::DuplicateCell {
            cell: 3,
            indicator: Indicator::Beneficiaires
        }
    );

    let mut r = release.clone();
    r.cells.push(r.cells[0].clone());
    let err = refused(&r)?;
    assert_eq!(
        err,
        ReleaseError::IndicatorOrder {
            cell: 7,
            indicator: Indicator::Accompagnements,
            previous: Indicator::Autonomie
        }
    );
    assert!(err.to_string().contains("catalogue order"), "{err}");

    let mut r = release.clone();
    r.cells.swap(0, 1);
    let err = refused(&r)?;
    assert!(
        matches!(
            err,
            ReleaseError::UnexpectedCategory {
                cell: 0,
                expected: Some("individuel"),
                ..
            }
        ),
        "{err:?}"
    );

    let mut r = release.clone();
    r.cells.remove(1);
    let err = refused(&r)?;
    assert_eq!(
        err,
        ReleaseError::MissingCategories {
            cell: 1,
            indicator: Indicator::Accompagnements,
            missing: vec!["collectif"]
        }
    );
    assert!(
        err.to_string().contains("missing categories collectif"),
        "{err}"
    );

    let mut r = release.clone();
    r.cells.pop();
    let err = refused(&r)?;
    assert_eq!(
        err,
        ReleaseError::MissingCategories {
            cell: 6,
            indicator: Indicator::Autonomie,
            missing: vec!["autonome"]
        }
    );

    let mut r = release.clone();
    r.cells[2].category = Some("individuel".to_owned());
    let err = refused(&r)?;
    assert_eq!(
        err,
        ReleaseError::UnexpectedCategory {
            cell: 2,
            indicator: Indicator::Beneficiaires,
            found: Some("individuel".to_owned()),
            expected: None
        }
    );
    assert!(err.to_string().contains("expected null"), "{err}");

    let mut r = release.clone();
    r.cells[0].category = None;
    assert!(matches!(
        refused(&r)?,
        ReleaseError::UnexpectedCategory { found: None, .. }
    ));

    let mut r = release;
    r.cells.clear();
    assert_eq!(r.validate(), Err(ReleaseError::NoCells));
    assert!(matches!(
        Release::decode(&r.encode_unchecked()),
        Err(ReleaseError::ArrayLength { found: 0, .. })
    ));
    Ok(())
}

#[test]
fn refuses_floats_out_of_range() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -0.0, 0.0, -1.0] {
        let mut r = release.clone();
        r.cells[4].scale = bad;
        let err = refused(&r)?;
        assert!(
            matches!(
                err,
                ReleaseError::InvalidCellFloat {
                    cell: 4,
                    field: "scale",
                    ..
                }
            ),
            "{bad}: {err:?}"
        );

        let mut r = release.clone();
        r.mechanism = Mechanism::Gaussian { rho: bad };
        assert!(
            matches!(refused(&r)?, ReleaseError::InvalidLoss { field: "rho", .. }),
            "{bad}"
        );
    }
    for bad in [f64::NAN, f64::INFINITY, -0.0, -1e-300] {
        let mut r = release.clone();
        r.cells[4].ci95_half_width = bad;
        let err = refused(&r)?;
        assert!(
            matches!(
                err,
                ReleaseError::InvalidCellFloat {
                    cell: 4,
                    field: "ci95_half_width",
                    ..
                }
            ),
            "{bad}"
        );
        assert!(
            err.to_string().starts_with("cells[4].ci95_half_width: "),
            "{err}"
        );
    }
    let mut r = release;
    r.cells[4].ci95_half_width = 0.0;
    assert!(r.validate().is_ok());
    Ok(())
}

#[test]
fn refuses_bad_params_and_signers() -> TestResult {
    let key = key(7);
    let release = sample(&key)?;
    for bad in ["", "with space", "accentué", "tab\there"] {
        let mut r = release.clone();
        r.params = bad.to_owned();
        assert!(
            matches!(refused(&r)?, ReleaseError::InvalidParams { .. }),
            "{bad:?}"
        );
    }
    let mut r = release.clone();
    r.params = "x".repeat(MAX_PARAMS_LEN);
    assert!(r.validate().is_ok());
    // One byte too many: refused by validation, and by the decoder before reading it.
    r.params.push('x');
    assert!(matches!(
        r.validate(),
        Err(ReleaseError::InvalidParams { .. })
    ));
    let err = decode_err(&r.encode_unchecked())?;
    assert!(
        matches!(err, ReleaseError::TooLong { len: 257, max: 256, ref field, .. } if field == "params"),
        "{err:?}"
    );

    // The identity point: small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let mut r = release.clone();
    r.signer = VerifyingKey::from_bytes(&identity)?;
    let err = refused(&r)?;
    assert!(
        matches!(err, ReleaseError::InvalidSigner { reason, .. } if reason.contains("small order")),
        "{err:?}"
    );

    // Non-canonical encodings of points (y ≥ p) that the curve library would accept.
    let mut non_canonical = 0;
    for k in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut bytes = [0xffu8; 32];
            bytes[0] = 0xed + k;
            bytes[31] = 0x7f | sign;
            if let Ok(signer) = VerifyingKey::from_bytes(&bytes) {
                let mut r = release.clone();
                r.signer = signer;
                assert!(
                    matches!(refused(&r)?, ReleaseError::InvalidSigner { .. }),
                    "{}",
                    hex::encode(bytes)
                );
                non_canonical += 1;
            }
        }
    }
    assert!(non_canonical > 0, "no non-canonical point found to test");

    // Bytes that are not a point at all.
    let bytes = release.canonical_bytes()?;
    let not_a_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|c| VerifyingKey::from_bytes(c).is_err())
        .ok_or("every pattern is a point")?;
    let err = decode_err(&patch(
        &bytes,
        key.verifying_key().as_bytes(),
        &not_a_point,
    )?)?;
    assert!(
        matches!(err, ReleaseError::InvalidSigner { reason, .. } if reason.contains("not the encoding")),
        "{err:?}"
    );
    Ok(())
}

fn json_err(text: &str) -> Result<ReleaseError, Box<dyn Error>> {
    SignedRelease::from_json(text)
        .err()
        .ok_or_else(|| "accepted".into())
}

#[test]
fn malformed_json_is_refused_precisely() -> TestResult {
    let key = key(7);
    let text = SignedRelease::sign(sample(&key)?, &key)?.to_json_pretty();
    let value: serde_json::Value = serde_json::from_str(&text)?;
    let with = |f: &dyn Fn(&mut serde_json::Value)| -> Result<String, Box<dyn Error>> {
        let mut v = value.clone();
        f(&mut v);
        Ok(serde_json::to_string_pretty(&v)?)
    };

    let err = json_err(&with(&|v| v["colour"] = "blue".into())?)?;
    let ReleaseError::Json { line, message, .. } = &err else {
        return Err(format!("{err:?}").into());
    };
    assert!(
        message.contains("unknown field `colour`") && message.contains("expected one of"),
        "{message}"
    );
    assert!(*line > 0);

    let err = json_err(&with(&|v| v["cells"][1]["note"] = "x".into())?)?;
    assert!(err.to_string().contains("unknown field `note`"), "{err}");

    let err = json_err(&with(&|v| {
        _ = v.as_object_mut().map(|o| o.remove("period"))
    })?)?;
    assert!(err.to_string().contains("missing field `period`"), "{err}");

    let err = json_err(&with(&|v| v["cells"][0]["value"] = 12.5.into())?)?;
    assert!(
        err.to_string().contains("12.5") && err.to_string().contains("line"),
        "{err}"
    );

    let err = json_err(&(text.clone() + "x"))?;
    assert!(err.to_string().contains("trailing characters"), "{err}");

    let err = json_err(&with(&|v| v["signer"] = "abc".into())?)?;
    assert!(
        matches!(
            err,
            ReleaseError::InvalidHex {
                field: "signer",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("64 hexadecimal digits"), "{err}");

    let err = json_err(&with(&|v| v["signature"] = "zz".repeat(64).into())?)?;
    assert!(
        matches!(
            err,
            ReleaseError::InvalidHex {
                field: "signature",
                ..
            }
        ),
        "{err:?}"
    );

    let err = json_err(&with(&|v| v["rho"] = 0.5.into())?)?;
    assert_eq!(
        err,
        ReleaseError::LossField {
            mechanism: "laplace",
            expected: "epsilon",
            found: Some("rho")
        }
    );
    assert_eq!(
        err.to_string(),
        "rho: mechanism \"laplace\" takes its privacy loss in field \"epsilon\", not \"rho\""
    );

    let err = json_err(&with(&|v| v["mechanism"] = "gaussian".into())?)?;
    assert_eq!(
        err,
        ReleaseError::LossField {
            mechanism: "gaussian",
            expected: "rho",
            found: Some("epsilon")
        }
    );

    let err = json_err(&with(&|v| {
        v["mechanism"] = "gaussian".into();
        _ = v.as_object_mut().map(|o| o.remove("epsilon"));
    })?)?;
    assert_eq!(
        err,
        ReleaseError::LossField {
            mechanism: "gaussian",
            expected: "rho",
            found: None
        }
    );

    let err = json_err(&with(&|v| v["period"] = "2026-1".into())?)?;
    assert!(
        err.to_string()
            .starts_with("period: invalid period \"2026-1\""),
        "{err}"
    );

    let err = json_err(&with(&|v| v["cells"][3]["indicator"] = "nope".into())?)?;
    assert_eq!(
        err,
        ReleaseError::UnknownIndicator {
            cell: 3,
            value: "nope".to_owned()
        }
    );

    let err = json_err(&with(&|v| v["cells"][4]["scale"] = (-2.0).into())?)?;
    assert_eq!(
        err.to_string(),
        "cells[4].scale: -2 is not accepted: expected a finite number greater than 0"
    );

    let err = json_err(&with(&|v| v["version"] = 2.into())?)?;
    assert_eq!(
        err,
        ReleaseError::UnsupportedVersion {
            found: 2,
            supported: 1
        }
    );

    let err = json_err(&with(&|v| {
        _ = v.as_object_mut().map(|o| o.remove("signature"))
    })?)?;
    assert_eq!(err, ReleaseError::MissingSignature);
    assert_eq!(
        Release::from_json(&text).err(),
        Some(ReleaseError::UnexpectedSignature)
    );

    // A category may be left out for a plain count; the release still verifies.
    let omitted = with(&|v| _ = v["cells"][2].as_object_mut().map(|o| o.remove("category")))?;
    assert!(SignedRelease::from_json_and_verify(&omitted).is_ok());

    // A changed figure parses but no longer verifies.
    let err =
        SignedRelease::from_json_and_verify(&with(&|v| v["cells"][0]["value"] = 13.into())?).err();
    assert!(
        matches!(err, Some(ReleaseError::BadSignature { .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn error_messages_name_the_field_and_what_is_accepted() -> TestResult {
    let key = key(7);
    let mut r = sample(&key)?;
    r.cells[0].category = Some("individual".to_owned());
    let err = r.validate().err().ok_or("valid")?;
    assert_eq!(
        err.to_string(),
        "cells[0].category: found \"individual\", expected \"individuel\": accompagnements lists each of its 2 categories once, in this order: individuel, collectif"
    );
    let mut r = sample(&key)?;
    r.cells[2].category = Some("x".to_owned());
    assert_eq!(
        r.validate().err().ok_or("valid")?.to_string(),
        "cells[2].category: found \"x\", expected null: beneficiaires is a count with exactly one cell, whose category is null"
    );
    let other = self::key(8);
    let err = SignedRelease::sign(sample(&key)?, &other)
        .err()
        .ok_or("signed")?;
    assert!(
        err.to_string()
            .starts_with("signer: the signing key's public key"),
        "{err}"
    );
    Ok(())
}

#[test]
fn signer_keys_keep_only_valid_signers() -> TestResult {
    // The neutral point (y = 1) has small order: a signature by it proves nothing.
    let mut neutral = [0u8; 32];
    neutral[0] = 1;
    let weak = VerifyingKey::from_bytes(&neutral)?;
    let mut keys = SignerKeys::new();
    keys.insert(weak);
    assert!(keys.is_empty(), "a small-order key is not kept");
    keys.insert(key(3).verifying_key());
    assert_eq!(keys.len(), 1);
    // A release "signed" by the weak key is refused even when it is offered as known.
    let mut release = sample(&key(3))?;
    release.signer = weak;
    let mut signed = vec![0x82];
    signed.extend_from_slice(&release.encode_unchecked());
    signed.extend_from_slice(&[0x58, 0x40]);
    signed.extend_from_slice(&[0; 64]);
    let kept: SignerKeys = [weak, key(3).verifying_key()].into_iter().collect();
    assert!(matches!(
        SignedRelease::check_with(&signed, &kept),
        Err(ReleaseError::InvalidSigner { .. })
    ));
    Ok(())
}
