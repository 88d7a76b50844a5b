//! Unit and property tests of the aggregate encoding, signature, JSON view and equivocation
//! proofs.

use std::error::Error;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::release::{Cell, Mechanism, Release, SignedRelease};

type TestResult = Result<(), Box<dyn Error>>;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// Every cell of `indicator`, with sums 0, 1, 2, ...
fn cells_of(indicator: Indicator) -> Vec<AggregateCell> {
    let categories = indicator.categories();
    let slots: Vec<Option<&str>> = if categories.is_empty() {
        vec![None]
    } else {
        categories.into_iter().map(Some).collect()
    };
    slots
        .into_iter()
        .zip(0..)
        .map(|(category, sum)| AggregateCell {
            indicator,
            category: category.map(str::to_owned),
            sum,
            variance: 96.0,
            ci95_half_width: 19.2,
        })
        .collect()
}

fn sorted_keys(seeds: impl IntoIterator<Item = u8>) -> Vec<VerifyingKey> {
    let mut keys: Vec<VerifyingKey> = seeds.into_iter().map(|s| key(s).verifying_key()).collect();
    keys.sort_by_key(|k| *k.as_bytes());
    keys
}

/// A small valid hub aggregate: three of five members contributed, at leaves 0, 2 and 5 of a
/// 6-leaf log.
fn sample(hub: &SigningKey) -> Result<Aggregate, Box<dyn Error>> {
    let mut cells = cells_of(Indicator::Accompagnements);
    cells.extend(cells_of(Indicator::Beneficiaires));
    cells.extend(cells_of(Indicator::DureeMinutes));
    cells.extend(cells_of(Indicator::Autonomie));
    let contributions = [(0, 11), (2, 12), (5, 13)]
        .into_iter()
        .map(|(index, seed)| ContributionRef {
            index,
            id: ReleaseId::from_bytes([seed; 32]),
            signer: key(seed).verifying_key(),
        })
        .collect();
    Ok(Aggregate {
        signer: hub.verifying_key(),
        level: Level::Hub,
        period: Period::new(2026, 10).ok_or("period in range")?,
        checkpoint_size: 6,
        checkpoint_root: [0xab; 32],
        contributions,
        cells,
        contributed: sorted_keys([11, 12, 13]),
        missing: sorted_keys([14, 15]),
        created_at: 1_793_491_200,
        supersedes: None,
        structures: None,
    })
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
        national in any::<bool>(),
        year in 2000i32..=2999,
        month in 1u8..=12,
        members in vec((any::<[u8; 32]>(), any::<bool>(), any::<[u8; 32]>(), 1u64..1000), 0..6),
        spare in 0u64..3,
        chosen in vec(any::<bool>(), Indicator::ALL.len()),
        figures in vec((any::<i64>(), non_negative(), non_negative()), max_cells()),
        created_at in any::<u64>(),
        root in any::<[u8; 32]>(),
    ) -> (SigningKey, Aggregate) {
        let key = SigningKey::from_bytes(&seed);
        let mut contributions = Vec::new();
        let mut contributed = Vec::new();
        let mut missing = Vec::new();
        let mut index = 0u64;
        for (member, did, id, gap) in members {
            let member = SigningKey::from_bytes(&member).verifying_key();
            if contributed.contains(&member) || missing.contains(&member) {
                continue;
            }
            if did {
                index += gap;
                contributions.push(ContributionRef { index, id: ReleaseId::from_bytes(id), signer: member });
                contributed.push(member);
            } else {
                missing.push(member);
            }
        }
        contributed.sort_by_key(|k| *k.as_bytes());
        missing.sort_by_key(|k| *k.as_bytes());
        let checkpoint_size = if contributions.is_empty() { spare } else { index + 1 + spare };
        let checkpoint_root = if checkpoint_size == 0 { EMPTY_ROOT } else { root };
        let mut cells = Vec::new();
        let mut figures = figures.into_iter();
        for (n, indicator) in Indicator::ALL.iter().enumerate() {
            if !chosen[n] {
                continue;
            }
            for mut c in cells_of(*indicator) {
                if let Some((sum, variance, ci)) = figures.next() {
                    (c.sum, c.variance, c.ci95_half_width) = (sum, variance, ci);
                }
                cells.push(c);
            }
        }
        // unwrap safety: the strategy draws year and month in range.
        #[allow(clippy::unwrap_used)]
        let period = Period::new(year, month).unwrap();
        let aggregate = Aggregate {
            signer: key.verifying_key(),
            level: if national { Level::National } else { Level::Hub },
            period,
            checkpoint_size,
            checkpoint_root,
            contributions,
            cells,
            contributed,
            missing,
            created_at,
            supersedes: None,
            structures: None,
        };
        (key, aggregate)
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trips((_key, aggregate) in arb_signed()) {
        let bytes = aggregate.canonical_bytes().map_err(fail)?;
        let decoded = Aggregate::decode(&bytes).map_err(fail)?;
        prop_assert_eq!(&decoded, &aggregate);
        prop_assert_eq!(decoded.canonical_bytes().map_err(fail)?, bytes);
    }

    #[test]
    fn sign_verify_round_trips((key, aggregate) in arb_signed()) {
        let signed = SignedAggregate::sign(aggregate.clone(), &key).map_err(fail)?;
        prop_assert!(signed.verify().is_ok());
        let back = SignedAggregate::decode_and_verify(&signed.to_bytes()).map_err(fail)?;
        prop_assert_eq!(&back, &signed);
        prop_assert_eq!(back.id(), aggregate.id().map_err(fail)?);
        prop_assert_eq!(signed.canonical_aggregate(), aggregate.canonical_bytes().map_err(fail)?);
        prop_assert_eq!(signed.id().to_string().parse::<AggregateId>().map_err(fail)?, signed.id());
    }

    #[test]
    fn any_flipped_byte_is_refused((key, aggregate) in arb_signed(), at in any::<Index>(), mask in 1u8..=255) {
        let mut bytes = SignedAggregate::sign(aggregate, &key).map_err(fail)?.to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(SignedAggregate::decode_and_verify(&bytes).is_err(), "flip 0x{:02x} at byte {} accepted", mask, at);
    }

    #[test]
    fn json_round_trip_verifies((key, aggregate) in arb_signed()) {
        let signed = SignedAggregate::sign(aggregate, &key).map_err(fail)?;
        let back = SignedAggregate::from_json_and_verify(&signed.to_json_pretty()).map_err(fail)?;
        prop_assert_eq!(back.canonical_aggregate(), signed.canonical_aggregate());
        prop_assert_eq!(&back, &signed);
        let via_serde: SignedAggregate =
            serde_json::from_str(&serde_json::to_string(&signed).map_err(fail)?).map_err(fail)?;
        prop_assert_eq!(via_serde, signed);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..600)) {
        let _ = Aggregate::decode(&bytes);
        let _ = SignedAggregate::decode_and_verify(&bytes);
        // The same bytes behind a valid start reach deeper into the decoder.
        let mut prefixed = vec![0x82, 0x8b, 0x01, 0x58, 0x20];
        prefixed.extend_from_slice(&bytes);
        let _ = SignedAggregate::decode_and_verify(&prefixed);
    }

    #[test]
    fn decoders_accept_only_what_they_would_write(
        (key, aggregate) in arb_signed(),
        edits in vec((any::<Index>(), 0u8..3, any::<u8>()), 1..4),
    ) {
        let mut bytes = SignedAggregate::sign(aggregate, &key).map_err(fail)?.to_bytes();
        for (at, kind, byte) in edits {
            let at = at.index(bytes.len());
            match kind {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => { bytes.remove(at); }
            }
            if bytes.is_empty() { break; }
        }
        if let Ok(decoded) = SignedAggregate::decode(&bytes) {
            prop_assert_eq!(&decoded.to_bytes(), &bytes);
        }
        let _ = Aggregate::decode(&bytes);
    }

    #[test]
    fn json_reader_never_panics(text in ".{0,300}") {
        let _ = SignedAggregate::from_json(&text);
        let _ = EquivocationProof::from_json(&text);
    }

    #[test]
    fn json_reader_never_panics_on_damaged_aggregates(
        (key, aggregate) in arb_signed(),
        at in any::<Index>(),
        junk in "[\\[\\]{}\":,0-9a-z. -]{0,4}",
        cut in 0usize..8,
    ) {
        let text = SignedAggregate::sign(aggregate, &key).map_err(fail)?.to_json_pretty();
        let at = text.char_indices().map(|(i, _)| i).nth(at.index(text.chars().count())).unwrap_or(0);
        let end = text[at..].char_indices().nth(cut).map_or(text.len(), |(i, _)| at + i);
        let damaged = format!("{}{}{}", &text[..at], junk, &text[end..]);
        if let Ok(read) = SignedAggregate::from_json(&damaged) {
            prop_assert_eq!(SignedAggregate::decode(&read.to_bytes()).map_err(fail)?, read);
        }
    }
}

#[test]
fn every_flipped_byte_of_an_aggregate_is_refused() -> TestResult {
    let hub = key(7);
    let bytes = SignedAggregate::sign(sample(&hub)?, &hub)?.to_bytes();
    for at in 0..bytes.len() {
        for mask in [0x01, 0x10, 0x80, 0xff] {
            let mut flipped = bytes.clone();
            flipped[at] ^= mask;
            assert!(
                SignedAggregate::decode_and_verify(&flipped).is_err(),
                "flip 0x{mask:02x} at byte {at} accepted"
            );
        }
    }
    for len in 0..bytes.len() {
        assert!(
            SignedAggregate::decode_and_verify(&bytes[..len]).is_err(),
            "prefix of {len} bytes accepted"
        );
    }
    Ok(())
}

#[test]
fn layout_is_the_documented_one() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;
    let bytes = aggregate.canonical_bytes()?;
    let mut expected = vec![0x8b, 0x01, 0x58, 0x20];
    expected.extend_from_slice(hub.verifying_key().as_bytes());
    expected.push(0x63);
    expected.extend_from_slice(b"hub");
    expected.push(0x67);
    expected.extend_from_slice(b"2026-10");
    expected.push(0x06);
    expected.extend_from_slice(&[0x58, 0x20]);
    expected.extend_from_slice(&[0xab; 32]);
    // contributions: 3 of [index, id, signer]
    expected.extend_from_slice(&[0x83, 0x83, 0x00, 0x58, 0x20]);
    expected.extend_from_slice(&[11; 32]);
    expected.extend_from_slice(&[0x58, 0x20]);
    expected.extend_from_slice(key(11).verifying_key().as_bytes());
    let at = bytes.get(..expected.len()).ok_or("short")?;
    assert_eq!(at, &expected[..]);

    // The first cell: ["accompagnements", "individuel", 0, 96.0, 19.2].
    let mut cell = vec![0x85, 0x6f];
    cell.extend_from_slice(b"accompagnements");
    cell.push(0x6a);
    cell.extend_from_slice(b"individuel");
    cell.push(0x00);
    cell.extend_from_slice(&[0xfb, 0x40, 0x58, 0, 0, 0, 0, 0, 0]);
    cell.push(0xfb);
    cell.extend_from_slice(&19.2f64.to_bits().to_be_bytes());
    let mut cells_head = vec![0x87];
    cells_head.extend_from_slice(&cell);
    assert!(bytes.windows(cells_head.len()).any(|w| w == cells_head));

    // The tail: contributed (3 keys), missing (2 keys), created_at.
    let mut tail = vec![0x83];
    for k in &aggregate.contributed {
        tail.extend_from_slice(&[0x58, 0x20]);
        tail.extend_from_slice(k.as_bytes());
    }
    tail.push(0x82);
    for k in &aggregate.missing {
        tail.extend_from_slice(&[0x58, 0x20]);
        tail.extend_from_slice(k.as_bytes());
    }
    tail.extend_from_slice(&[0x1a, 0x6a, 0xe6, 0x81, 0x00]);
    assert!(bytes.ends_with(&tail));

    let signed = SignedAggregate::sign(aggregate, &hub)?;
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
    let hub = key(7);
    let signed = SignedAggregate::sign(sample(&hub)?, &hub)?;
    let value: Value = ciborium::from_reader(&signed.to_bytes()[..])?;
    let Value::Array(outer) = value else {
        return Err("not an array".into());
    };
    assert_eq!(outer.len(), 2);
    let Value::Array(fields) = &outer[0] else {
        return Err("aggregate is not an array".into());
    };
    assert_eq!(fields.len(), 11);
    assert_eq!(fields[0], Value::Integer(1.into()));
    assert_eq!(fields[2], Value::Text("hub".into()));
    assert_eq!(fields[3], Value::Text("2026-10".into()));
    assert_eq!(fields[4], Value::Integer(6.into()));
    assert!(matches!(&fields[6], Value::Array(c) if c.len() == 3));
    assert!(matches!(&fields[7], Value::Array(c) if c.len() == 7));
    assert!(matches!(&fields[8], Value::Array(c) if c.len() == 3));
    assert!(matches!(&fields[9], Value::Array(c) if c.len() == 2));
    assert_eq!(fields[10], Value::Integer(1_793_491_200.into()));
    Ok(())
}

#[test]
fn signature_is_domain_separated_and_id_is_the_hash_of_the_signed_message() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;
    let bare = hub.sign(&aggregate.canonical_bytes()?);
    let unseparated = SignedAggregate::from_parts(aggregate.clone(), bare)?;
    assert!(matches!(
        unseparated.verify(),
        Err(AggregateError::BadSignature { .. })
    ));
    // A release-domain signature over the same bytes is no aggregate signature either.
    let mut message = crate::release::SIGNING_DOMAIN.to_vec();
    message.extend_from_slice(&aggregate.canonical_bytes()?);
    let release_domain = SignedAggregate::from_parts(aggregate.clone(), hub.sign(&message))?;
    assert!(release_domain.verify().is_err());

    let signed = SignedAggregate::sign(aggregate.clone(), &hub)?;
    let mut message = b"maillage/aggregate/v1\0".to_vec();
    message.extend_from_slice(&aggregate.canonical_bytes()?);
    let expected: [u8; 32] = Sha256::digest(&message).into();
    assert_eq!(signed.id().as_bytes(), &expected);
    assert_eq!(signed.id().to_string(), hex::encode(expected));
    assert_eq!(unseparated.id(), signed.id());
    assert_eq!(AggregateId::from_bytes(expected), signed.id());
    assert_eq!(
        signed.id().as_contribution_id(),
        ReleaseId::from_bytes(expected)
    );
    assert_eq!(
        hex::encode(expected)
            .to_uppercase()
            .parse::<AggregateId>()?,
        signed.id()
    );
    assert!(matches!(
        "abc".parse::<AggregateId>(),
        Err(AggregateError::InvalidHex { ref field, .. }) if field == "aggregate_id"
    ));
    Ok(())
}

#[test]
fn release_ids_read_back_from_hex_and_bytes() -> TestResult {
    let id = ReleaseId::from_bytes([0x5a; 32]);
    assert_eq!(id.to_string().parse::<ReleaseId>()?, id);
    assert_eq!(id.as_bytes(), &[0x5a; 32]);
    let err = "5a".repeat(31).parse::<ReleaseId>().err().ok_or("parsed")?;
    assert!(
        matches!(
            err,
            ReleaseError::InvalidHex {
                field: "release_id",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("64 hexadecimal digits"), "{err}");
    Ok(())
}

#[test]
fn signing_with_another_key_is_refused() -> TestResult {
    let hub = key(7);
    let err = SignedAggregate::sign(sample(&hub)?, &key(8))
        .err()
        .ok_or("signed")?;
    assert!(
        matches!(err, AggregateError::SignerMismatch { .. }),
        "{err:?}"
    );
    let signed = SignedAggregate::sign(sample(&hub)?, &hub)?;
    let (mut claimed, signature) = signed.into_parts();
    claimed.signer = key(8).verifying_key();
    let forged = SignedAggregate::from_parts(claimed, signature)?;
    let err = forged.verify().err().ok_or("verified")?;
    assert!(
        err.to_string().starts_with("signature: does not verify")
            && err.to_string().contains("hub, period 2026-10"),
        "{err}"
    );
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

fn decode_err(bytes: &[u8]) -> Result<AggregateError, Box<dyn Error>> {
    Aggregate::decode(bytes)
        .err()
        .ok_or_else(|| "decoded".into())
}

#[test]
fn refuses_non_canonical_encodings() -> TestResult {
    let hub = key(7);
    let bytes = sample(&hub)?.canonical_bytes()?;

    // The version on two bytes.
    let err = decode_err(&patch(&bytes, &[0x8b, 0x01], &[0x8b, 0x18, 0x01])?)?;
    assert!(
        matches!(err, AggregateError::NonShortestHead { offset: 1, value: 1, ref field, .. } if field == "version"),
        "{err:?}"
    );
    // The checkpoint size, 6, on two bytes.
    let err = decode_err(&patch(&bytes, b"2026-10\x06", b"2026-10\x18\x06")?)?;
    assert!(
        matches!(err, AggregateError::NonShortestHead { ref field, .. } if field == "checkpoint_size"),
        "{err:?}"
    );
    // The contributions array with an indefinite length.
    let mut contributions = vec![0xab; 32];
    contributions.extend_from_slice(&[0x83, 0x83]);
    let mut indefinite = vec![0xab; 32];
    indefinite.extend_from_slice(&[0x9f, 0x83]);
    let err = decode_err(&patch(&bytes, &contributions, &indefinite)?)?;
    assert!(
        matches!(err, AggregateError::UnexpectedItem { ref field, ref found, .. } if field == "contributions" && found.contains("indefinite")),
        "{err:?}"
    );
    // A variance as a 32-bit float (96.0 = 0x42c00000).
    let err = decode_err(&patch(
        &bytes,
        &[0xfb, 0x40, 0x58, 0, 0, 0, 0, 0, 0],
        &[0xfa, 0x42, 0xc0, 0, 0],
    )?)?;
    assert!(
        matches!(err, AggregateError::UnexpectedItem { ref field, ref found, .. } if field == "cells[0].variance" && found.contains("32-bit float")),
        "{err:?}"
    );
    // A map instead of the aggregate.
    let err = decode_err(&[0xa0])?;
    assert!(
        matches!(err, AggregateError::UnexpectedItem { .. }),
        "{err:?}"
    );
    // Another version, and a wrong field count.
    let err = decode_err(&patch(&bytes, &[0x8b, 0x01], &[0x8b, 0x03])?)?;
    assert_eq!(
        err,
        AggregateError::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    );
    let err = decode_err(&patch(&bytes, &[0x8b, 0x01], &[0x8a, 0x01])?)?;
    assert!(
        matches!(err, AggregateError::ArrayLength { found: 10, .. }),
        "{err:?}"
    );
    // Trailing bytes.
    let mut trailing = bytes.clone();
    trailing.push(0x00);
    let err = decode_err(&trailing)?;
    assert!(
        matches!(err, AggregateError::TrailingBytes { count: 1, .. }),
        "{err:?}"
    );
    let mut wire = SignedAggregate::sign(sample(&hub)?, &hub)?.to_bytes();
    wire.push(0x00);
    assert!(matches!(
        SignedAggregate::decode(&wire),
        Err(AggregateError::TrailingBytes { .. })
    ));
    // An unknown level.
    let err = decode_err(&patch(&bytes, b"\x63hub", b"\x63hib")?)?;
    assert_eq!(
        err,
        AggregateError::UnknownLevel {
            value: "hib".to_owned()
        }
    );
    Ok(())
}

/// The error of an aggregate that is invalid in one way, checked the same way by `validate`, by
/// `canonical_bytes`, by the byte decoder and by the JSON reader.
fn refused(aggregate: &Aggregate) -> Result<AggregateError, Box<dyn Error>> {
    // Compared through Debug, since NaN != NaN.
    let err = aggregate.validate().err().ok_or("validated")?;
    let expected = Some(format!("{err:?}"));
    assert_eq!(
        aggregate.canonical_bytes().err().map(|e| format!("{e:?}")),
        expected
    );
    assert_eq!(
        Aggregate::decode(&aggregate.encode_unchecked())
            .err()
            .map(|e| format!("{e:?}")),
        expected
    );
    let finite = aggregate
        .cells
        .iter()
        .all(|c| c.variance.is_finite() && c.ci95_half_width.is_finite());
    if finite {
        let unchecked = SignedAggregate {
            aggregate: aggregate.clone(),
            signature: Signature::from_bytes(&[0; 64]),
        };
        assert_eq!(
            SignedAggregate::from_json(&unchecked.to_json_pretty())
                .err()
                .map(|e| format!("{e:?}")),
            expected
        );
    }
    Ok(err)
}

#[test]
fn refuses_cells_out_of_order_or_incomplete() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;

    let mut a = aggregate.clone();
    a.cells.swap(0, 1);
    let err = refused(&a)?;
    assert!(
        matches!(
            err,
            AggregateError::CellOrder(ReleaseError::UnexpectedCategory {
                cell: 0,
                expected: Some("individuel"),
                ..
            })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("cells[0].category: found \"collectif\", expected \"individuel\""),
        "{err}"
    );

    let mut a = aggregate.clone();
    a.cells.remove(1);
    assert_eq!(
        refused(&a)?,
        AggregateError::CellOrder(ReleaseError::MissingCategories {
            cell: 1,
            indicator: Indicator::Accompagnements,
            missing: vec!["collectif"]
        })
    );

    let mut a = aggregate.clone();
    a.cells.insert(3, a.cells[2].clone());
    assert_eq!(
        refused(&a)?,
        AggregateError::CellOrder(ReleaseError::DuplicateCell {
            cell: 3,
            indicator: Indicator::Beneficiaires
        })
    );

    let mut a = aggregate.clone();
    a.cells.push(a.cells[0].clone());
    let err = refused(&a)?;
    assert!(
        matches!(
            err,
            AggregateError::CellOrder(ReleaseError::IndicatorOrder { cell: 7, .. })
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("catalogue order"), "{err}");

    let mut a = aggregate.clone();
    a.cells.pop();
    assert!(matches!(
        refused(&a)?,
        AggregateError::CellOrder(ReleaseError::MissingCategories { cell: 6, .. })
    ));

    // Unknown indicator codes, in bytes and in JSON.
    let bytes = aggregate.canonical_bytes()?;
    let err = decode_err(&patch(&bytes, b"beneficiaires", b"beneficiairez")?)?;
    assert_eq!(
        err,
        AggregateError::UnknownIndicator {
            cell: 2,
            value: "beneficiairez".to_owned()
        }
    );

    // No cells at all is an aggregate of nothing, and valid.
    let mut a = aggregate;
    a.cells.clear();
    assert!(a.validate().is_ok());
    assert_eq!(Aggregate::decode(&a.canonical_bytes()?)?, a);
    Ok(())
}

#[test]
fn refuses_floats_out_of_range() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;
    for bad in [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        -1.0,
        -1e-300,
    ] {
        for field in ["variance", "ci95_half_width"] {
            let mut a = aggregate.clone();
            if field == "variance" {
                a.cells[4].variance = bad;
            } else {
                a.cells[4].ci95_half_width = bad;
            }
            let err = refused(&a)?;
            assert!(
                matches!(err, AggregateError::InvalidCellFloat { cell: 4, field: f, .. } if f == field),
                "{bad} {field}: {err:?}"
            );
            assert!(
                err.to_string().starts_with(&format!("cells[4].{field}: ")),
                "{err}"
            );
        }
    }
    let mut a = aggregate;
    a.cells[4].variance = 0.0;
    a.cells[4].ci95_half_width = 0.0;
    assert!(a.validate().is_ok());
    Ok(())
}

#[test]
fn refuses_contributions_not_increasing_or_beyond_the_checkpoint() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;

    let mut a = aggregate.clone();
    a.contributions.swap(0, 1);
    let err = refused(&a)?;
    assert_eq!(
        err,
        AggregateError::ContributionOrder {
            contribution: 1,
            index: 0,
            previous: 2
        }
    );
    assert!(
        err.to_string()
            .starts_with("contributions[1].index: leaf 0 after leaf 2"),
        "{err}"
    );

    let mut a = aggregate.clone();
    a.contributions[1].index = 0;
    assert!(matches!(
        refused(&a)?,
        AggregateError::ContributionOrder {
            contribution: 1,
            ..
        }
    ));

    let mut a = aggregate.clone();
    a.checkpoint_size = 5;
    let err = refused(&a)?;
    assert_eq!(
        err,
        AggregateError::IndexBeyondCheckpoint {
            contribution: 2,
            index: 5,
            checkpoint_size: 5
        }
    );

    // One signer twice, even with coverage listing it once.
    let mut a = aggregate.clone();
    a.contributions[2].signer = a.contributions[0].signer;
    a.contributed = sorted_keys([11, 12]);
    a.missing = sorted_keys([13, 14, 15]);
    let err = refused(&a)?;
    assert!(
        matches!(
            err,
            AggregateError::DuplicateContributor {
                contribution: 2,
                first: 0,
                ..
            }
        ),
        "{err:?}"
    );

    // An empty log has the empty tree's root.
    let mut a = aggregate;
    a.contributions.clear();
    a.contributed.clear();
    a.checkpoint_size = 0;
    assert!(matches!(refused(&a)?, AggregateError::EmptyTreeRoot { .. }));
    a.checkpoint_root = EMPTY_ROOT;
    assert!(a.validate().is_ok());
    Ok(())
}

#[test]
fn refuses_unsorted_overlapping_or_inconsistent_coverage() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;

    let mut a = aggregate.clone();
    a.missing.reverse();
    let err = refused(&a)?;
    assert!(
        matches!(
            err,
            AggregateError::CoverageOrder {
                list: "coverage.missing",
                position: 1,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with("coverage.missing[1]: "),
        "{err}"
    );

    let mut a = aggregate.clone();
    a.contributed.swap(0, 2);
    assert!(matches!(
        refused(&a)?,
        AggregateError::CoverageOrder {
            list: "coverage.contributed",
            ..
        }
    ));

    let mut a = aggregate.clone();
    a.missing = vec![a.missing[0], a.missing[0]];
    assert!(matches!(
        refused(&a)?,
        AggregateError::CoverageOrder { position: 1, .. }
    ));

    let mut a = aggregate.clone();
    a.missing = sorted_keys([12, 14, 15]);
    let err = refused(&a)?;
    assert!(
        matches!(err, AggregateError::CoverageOverlap { ref key, .. } if *key == hex::encode(self::key(12).verifying_key().as_bytes())),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("also in coverage.contributed"),
        "{err}"
    );

    let mut a = aggregate.clone();
    a.contributed = sorted_keys([11, 12]);
    a.missing = sorted_keys([13, 14, 15]);
    let err = refused(&a)?;
    assert_eq!(
        err,
        AggregateError::CoverageMismatch {
            key: hex::encode(key(13).verifying_key().as_bytes()),
            listed: false
        }
    );
    assert!(
        err.to_string()
            .contains("signed a contribution but is not listed"),
        "{err}"
    );

    let mut a = aggregate;
    a.contributed = sorted_keys([11, 12, 13, 14]);
    a.missing = sorted_keys([15]);
    assert_eq!(
        refused(&a)?,
        AggregateError::CoverageMismatch {
            key: hex::encode(key(14).verifying_key().as_bytes()),
            listed: true
        }
    );
    Ok(())
}

#[test]
fn refuses_weak_keys_anywhere() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;
    // The identity point: small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = VerifyingKey::from_bytes(&identity)?;

    let mut a = aggregate.clone();
    a.missing.insert(0, weak);
    let err = refused(&a)?;
    assert!(
        matches!(err, AggregateError::InvalidKey { ref field, reason, .. } if field == "coverage.missing[0]" && reason.contains("small order")),
        "{err:?}"
    );
    let mut a = aggregate.clone();
    a.signer = weak;
    assert!(matches!(
        refused(&a)?,
        AggregateError::InvalidKey { ref field, .. } if field == "signer"
    ));
    let mut a = aggregate;
    a.contributions[1].signer = weak;
    assert!(matches!(
        refused(&a)?,
        AggregateError::InvalidKey { ref field, .. } if field == "contributions[1].signer"
    ));
    Ok(())
}

#[test]
fn checkpoint_must_be_the_named_one() -> TestResult {
    let hub = key(7);
    let aggregate = sample(&hub)?;
    let mut checkpoint = Checkpoint {
        origin: checkpoint::contributions_origin(&hub.verifying_key()),
        tree_size: 6,
        root: [0xab; 32],
        timestamp: 1_793_491_200,
        signer: hub.verifying_key(),
    };
    aggregate.check_checkpoint(&checkpoint)?;
    checkpoint.tree_size = 7;
    assert!(matches!(
        aggregate.check_checkpoint(&checkpoint),
        Err(AggregateError::CheckpointMismatch {
            field: "checkpoint_size",
            ..
        })
    ));
    checkpoint.tree_size = 6;
    checkpoint.root = [0xac; 32];
    assert!(matches!(
        aggregate.check_checkpoint(&checkpoint),
        Err(AggregateError::CheckpointMismatch {
            field: "checkpoint_root",
            ..
        })
    ));
    checkpoint.root = [0xab; 32];
    checkpoint.origin = "elsewhere".to_owned();
    assert!(matches!(
        aggregate.check_checkpoint(&checkpoint),
        Err(AggregateError::CheckpointMismatch {
            field: "origin",
            ..
        })
    ));
    checkpoint.signer = key(8).verifying_key();
    assert!(matches!(
        aggregate.check_checkpoint(&checkpoint),
        Err(AggregateError::CheckpointMismatch {
            field: "signer",
            ..
        })
    ));
    Ok(())
}

fn json_err(text: &str) -> Result<AggregateError, Box<dyn Error>> {
    SignedAggregate::from_json(text)
        .err()
        .ok_or_else(|| "accepted".into())
}

#[test]
fn malformed_json_is_refused_precisely() -> TestResult {
    let hub = key(7);
    let text = SignedAggregate::sign(sample(&hub)?, &hub)?.to_json_pretty();
    let value: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(value["checkpoint"]["size"], 6);
    assert_eq!(
        value["coverage"]["missing"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(value["contributions"][1]["index"], 2);
    assert_eq!(value["cells"][0]["variance"], 96.0);
    let with = |f: &dyn Fn(&mut serde_json::Value)| -> Result<String, Box<dyn Error>> {
        let mut v = value.clone();
        f(&mut v);
        Ok(serde_json::to_string_pretty(&v)?)
    };

    for (path, edit) in [
        (
            "colour",
            &(|v: &mut serde_json::Value| v["colour"] = "blue".into())
                as &dyn Fn(&mut serde_json::Value),
        ),
        ("note", &|v| v["cells"][1]["note"] = "x".into()),
        ("extra", &|v| v["checkpoint"]["extra"] = 1.into()),
        ("weight", &|v| v["contributions"][0]["weight"] = 1.into()),
        ("late", &|v| v["coverage"]["late"] = serde_json::json!([])),
    ] {
        let err = json_err(&with(edit)?)?;
        assert!(
            matches!(&err, AggregateError::Json { line, message, .. } if *line > 0 && message.contains(&format!("unknown field `{path}`"))),
            "{path}: {err:?}"
        );
    }

    let err = json_err(&with(&|v| {
        _ = v.as_object_mut().map(|o| o.remove("coverage"))
    })?)?;
    assert!(
        err.to_string().contains("missing field `coverage`"),
        "{err}"
    );

    let err = json_err(&with(&|v| {
        _ = v.as_object_mut().map(|o| o.remove("signature"))
    })?)?;
    assert_eq!(err, AggregateError::MissingSignature);

    let err = json_err(&with(&|v| v["cells"][0]["sum"] = 12.5.into())?)?;
    assert!(err.to_string().contains("12.5"), "{err}");

    let err = json_err(&with(&|v| v["level"] = "regional".into())?)?;
    assert_eq!(
        err.to_string(),
        "level: \"regional\" is not a level: expected \"hub\" or \"national\""
    );

    let err = json_err(&with(&|v| v["checkpoint"]["root"] = "00".into())?)?;
    assert!(
        matches!(err, AggregateError::InvalidHex { ref field, .. } if field == "checkpoint.root"),
        "{err:?}"
    );
    let err = json_err(&with(&|v| v["contributions"][2]["id"] = "xyz".into())?)?;
    assert!(
        err.to_string().starts_with("contributions[2].id: \"xyz\""),
        "{err}"
    );
    let err = json_err(&with(&|v| v["coverage"]["missing"][1] = "00".into())?)?;
    assert!(
        err.to_string().starts_with("coverage.missing[1]: "),
        "{err}"
    );

    let err = json_err(&with(&|v| v["version"] = 3.into())?)?;
    assert_eq!(
        err,
        AggregateError::UnsupportedVersion {
            found: 3,
            supported: 2
        }
    );

    let err = json_err(&with(&|v| v["period"] = "2026-13".into())?)?;
    assert!(matches!(err, AggregateError::InvalidPeriod(_)), "{err:?}");

    // A category may be left out for a plain count; the aggregate still verifies.
    let omitted = with(&|v| _ = v["cells"][2].as_object_mut().map(|o| o.remove("category")))?;
    SignedAggregate::from_json_and_verify(&omitted)?;

    // A changed figure parses but no longer verifies.
    let err =
        SignedAggregate::from_json_and_verify(&with(&|v| v["cells"][0]["sum"] = 13.into())?).err();
    assert!(
        matches!(err, Some(AggregateError::BadSignature { .. })),
        "{err:?}"
    );
    Ok(())
}

// --- Equivocation proofs ---------------------------------------------------------------------

fn release(node: &SigningKey, month: u8, value: i64) -> Result<SignedRelease, Box<dyn Error>> {
    let release = Release {
        signer: node.verifying_key(),
        period: Period::new(2026, month).ok_or("period")?,
        params: "maillage-core-v1/eps=1.0/laplace".to_owned(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: 1_793_491_200,
        cells: vec![Cell {
            indicator: Indicator::Beneficiaires,
            category: None,
            value,
            scale: 2.0,
            ci95_half_width: 5.991464547107982,
        }],
    };
    Ok(SignedRelease::sign(release, node)?)
}

#[test]
fn equivocation_proof_of_two_releases_of_one_signer_and_period() -> TestResult {
    let node = key(21);
    let a = release(&node, 10, 37)?;
    let b = release(&node, 10, 38)?;
    let proof = EquivocationProof::new(a.clone(), b.clone())?;
    proof.verify()?;
    assert_eq!(proof.signer(), &node.verifying_key());
    assert_eq!(proof.period(), Period::new(2026, 10).ok_or("period")?);
    // Canonical: the order of the arguments does not matter; the smaller id comes first.
    let swapped = EquivocationProof::new(b, a)?;
    assert_eq!(swapped, proof);
    assert!(proof.first().id() < proof.second().id());

    // JSON round trip, and a JSON proof with the releases the other way round reads the same.
    let text = proof.to_json_pretty();
    let value: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(
        value
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["first".to_owned(), "second".to_owned()])
    );
    assert_eq!(
        serde_json::from_value::<SignedRelease>(value["first"].clone())?,
        *proof.first()
    );
    assert_eq!(EquivocationProof::from_json_and_verify(&text)?, proof);
    let reversed = serde_json::json!({"first": value["second"], "second": value["first"]});
    assert_eq!(
        EquivocationProof::from_json_and_verify(&reversed.to_string())?,
        proof
    );
    let mut extra = value.clone();
    extra["third"] = 1.into();
    let err = EquivocationProof::from_json(&extra.to_string())
        .err()
        .ok_or("accepted")?;
    assert!(err.to_string().contains("unknown field `third`"), "{err}");
    Ok(())
}

#[test]
fn equivocation_proof_refuses_what_proves_nothing() -> TestResult {
    let node = key(21);
    let a = release(&node, 10, 37)?;

    // The same release, and the same release with another signature: one id.
    let err = EquivocationProof::new(a.clone(), a.clone())
        .err()
        .ok_or("accepted")?;
    assert_eq!(err, EquivocationError::SameRelease { id: a.id() });
    let (bare, _) = a.clone().into_parts();
    let resigned = SignedRelease::from_parts(bare, Signature::from_bytes(&[1; 64]))?;
    assert!(matches!(
        EquivocationProof::new(a.clone(), resigned),
        Err(EquivocationError::SameRelease { .. })
    ));

    // Different signers.
    let other = release(&key(22), 10, 38)?;
    let err = EquivocationProof::new(a.clone(), other)
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(err, EquivocationError::DifferentSigners { .. }),
        "{err:?}"
    );

    // Different periods.
    let next = release(&node, 11, 37)?;
    let err = EquivocationProof::new(a.clone(), next)
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(err, EquivocationError::DifferentPeriods { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("2026-10 and 2026-11"), "{err}");

    // A bad signature on either release.
    let (forged, _) = release(&node, 10, 99)?.into_parts();
    let forged = SignedRelease::from_parts(forged, Signature::from_bytes(&[0; 64]))?;
    let proof = EquivocationProof::new(a.clone(), forged)?;
    let err = proof.verify().err().ok_or("verified")?;
    assert!(
        matches!(
            err,
            EquivocationError::InvalidRelease {
                error: ReleaseError::BadSignature { .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        EquivocationProof::from_json_and_verify(&proof.to_json_pretty()).is_err(),
        "a forged proof verified from JSON"
    );

    // A JSON proof of one release twice is refused when read.
    let same = serde_json::json!({
        "first": serde_json::to_value(&a)?,
        "second": serde_json::to_value(&a)?,
    });
    let err = EquivocationProof::from_json(&same.to_string())
        .err()
        .ok_or("accepted")?;
    assert!(
        matches!(err, EquivocationError::Json { ref message, .. } if message.contains("one release")),
        "{err:?}"
    );
    Ok(())
}

// --- Revisions (version 2) --------------------------------------------------------------------

/// A log of `n` leaves `[i; 32]`.
fn log_of(n: u8) -> crate::merkle::MerkleLog {
    let mut log = crate::merkle::MerkleLog::new();
    for i in 0..n {
        log.append(&[i; 32]);
    }
    log
}

/// The sample aggregate as version 2, at `size` leaves of `log`, revising `earlier` if given.
fn v2_at(
    hub: &SigningKey,
    log: &crate::merkle::MerkleLog,
    size: u64,
    earlier: Option<&SignedAggregate>,
) -> Result<SignedAggregate, Box<dyn Error>> {
    let mut a = sample(hub)?;
    a.checkpoint_size = size;
    a.checkpoint_root = log.root_at(size)?;
    a.structures = Some(a.contributed.len() as u64);
    a.supersedes = match earlier {
        Some(e) => Some(Supersedes {
            id: e.id(),
            consistency: log.consistency_proof(e.aggregate().checkpoint_size, size)?,
        }),
        None => None,
    };
    Ok(a.sign(hub)?)
}

#[test]
fn a_revision_with_a_valid_consistency_proof_is_accepted() -> TestResult {
    let hub = key(1);
    let log = log_of(11);
    let first = v2_at(&hub, &log, 6, None)?;
    for size in [6, 7, 8, 11] {
        let revision = v2_at(&hub, &log, size, Some(&first))?;
        revision.check_revises(&first)?;
        assert!(conflict(&first, &revision).is_err(), "size {size}");
        // Version 2 round-trips through bytes and JSON with the same id.
        let again = SignedAggregate::decode_and_verify(&revision.to_bytes())?;
        assert_eq!(again, revision);
        let json = SignedAggregate::from_json_and_verify(&revision.to_json_pretty())?;
        assert_eq!(json.id(), revision.id());
        assert_eq!(revision.aggregate().version(), VERSION);
    }
    // A chain: the third revises the second, which revises the first.
    let second = v2_at(&hub, &log, 8, Some(&first))?;
    let third = v2_at(&hub, &log, 11, Some(&second))?;
    third.check_revises(&second)?;
    // The first and the third are not neighbours: the pair proves nothing.
    let e = conflict(&first, &third).err().unwrap_or_default();
    assert!(e.contains("two steps of one revision chain"), "{e}");
    Ok(())
}

#[test]
fn version_1_still_reads_and_a_v1_revision_is_refused() -> TestResult {
    let hub = key(1);
    let v1 = sample(&hub)?.sign(&hub)?;
    assert_eq!(v1.aggregate().version(), VERSION_1);
    assert_eq!(v1.to_bytes()[1], 0x8b, "an 11-element array");
    assert_eq!(SignedAggregate::decode_and_verify(&v1.to_bytes())?, v1);
    let mut a = sample(&hub)?;
    a.supersedes = Some(Supersedes {
        id: v1.id(),
        consistency: vec![],
    });
    assert_eq!(a.validate(), Err(AggregateError::RevisionNeedsVersion2));
    let mut a = sample(&hub)?;
    a.structures = Some(2);
    assert!(matches!(
        a.validate(),
        Err(AggregateError::StructuresMismatch {
            stated: 2,
            contributed: 3
        })
    ));
    Ok(())
}

#[test]
fn non_extending_second_aggregates_are_equivocations() -> TestResult {
    let hub = key(1);
    let log = log_of(11);
    let first = v2_at(&hub, &log, 6, None)?;
    // Two first aggregates (neither names a predecessor): a fork.
    let other_first = v2_at(&hub, &log, 8, None)?;
    assert_eq!(conflict(&first, &other_first), Ok(AggregateConflict::Fork));
    // Two revisions of the same aggregate: a fork.
    let r1 = v2_at(&hub, &log, 8, Some(&first))?;
    let r2 = v2_at(&hub, &log, 9, Some(&first))?;
    assert_eq!(conflict(&r1, &r2), Ok(AggregateConflict::Fork));
    // Same size, other content: the revision names the first but the roots differ.
    let mut forked = log_of(5);
    forked.append(b"rewritten");
    let mut a = sample(&hub)?;
    a.checkpoint_root = forked.root();
    a.structures = Some(3);
    a.supersedes = Some(Supersedes {
        id: first.id(),
        consistency: vec![],
    });
    let same_size = a.sign(&hub)?;
    assert!(matches!(
        conflict(&first, &same_size),
        Ok(AggregateConflict::BadRevision(
            RevisionError::DoesNotExtend { .. }
        ))
    ));
    // A larger log that rewrote a leaf: its consistency proof from the first does not verify.
    let mut rewritten = log_of(5);
    rewritten.append(b"rewritten");
    for i in 6..11u8 {
        rewritten.append(&[i; 32]);
    }
    let bad = v2_at(&hub, &rewritten, 11, Some(&first))?;
    assert!(matches!(
        bad.check_revises(&first).map_err(|e| *e),
        Err(RevisionError::DoesNotExtend { .. })
    ));
    assert!(matches!(
        conflict(&first, &bad),
        Ok(AggregateConflict::BadRevision(_))
    ));
    // A smaller checkpoint.
    let later = v2_at(&hub, &log, 9, None)?;
    let mut a = sample(&hub)?;
    a.checkpoint_root = log.root_at(6)?;
    a.structures = Some(3);
    a.supersedes = Some(Supersedes {
        id: later.id(),
        consistency: vec![],
    });
    let shrunk = a.sign(&hub)?;
    assert!(matches!(
        conflict(&later, &shrunk),
        Ok(AggregateConflict::BadRevision(_))
    ));
    // Another signer's aggregate proves nothing.
    let stranger = v2_at(&key(2), &log, 8, Some(&first))?;
    assert!(conflict(&first, &stranger).is_err());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any bit flipped in a signed revision's wire bytes is refused (by the decoder or the
    /// signature), and any bit flipped in its consistency proof, even re-signed by the hub,
    /// makes it no revision of the earlier aggregate.
    #[test]
    fn any_flipped_bit_of_a_revision_is_refused(byte in any::<Index>(), bit in 0u8..8, which in 0usize..64, hbit in 0u8..8) {
        let hub = key(1);
        let log = log_of(13);
        let first = v2_at(&hub, &log, 6, None).map_err(fail)?;
        let revision = v2_at(&hub, &log, 13, Some(&first)).map_err(fail)?;
        let mut wire = revision.to_bytes();
        let at = byte.index(wire.len());
        wire[at] ^= 1 << bit;
        prop_assert!(SignedAggregate::decode_and_verify(&wire).is_err(), "flip at byte {at}");

        let (mut a, _) = revision.clone().into_parts();
        if let Some(link) = a.supersedes.as_mut() {
            let n = which % link.consistency.len().max(1);
            if let Some(hash) = link.consistency.get_mut(n) {
                hash[usize::from(hbit) * 4] ^= 1 << hbit;
            } else {
                link.id = AggregateId::from_bytes([0; 32]);
            }
        }
        let tampered = a.sign(&hub).map_err(fail)?;
        prop_assert!(tampered.check_revises(&first).is_err());
    }
}
