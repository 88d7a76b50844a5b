//! Unit and property tests of checkpoints and receipts: encodings, signatures, JSON views, fork
//! and consistency checks. Fixed vectors are in `tests/it/checkpoint_vectors.rs`.

use std::error::Error;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::merkle::MerkleLog;

type TestResult = Result<(), Box<dyn Error>>;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

/// A log of `n` contributions, ids `[i; 32]`-like.
fn contributions(n: u64) -> (MerkleLog, Vec<ReleaseId>) {
    let ids: Vec<ReleaseId> = (0..n)
        .map(|i| {
            let mut id = [0; 32];
            id[..8].copy_from_slice(&i.to_be_bytes());
            ReleaseId(id)
        })
        .collect();
    let log = MerkleLog::from_leaf_hashes(ids.iter().map(contribution_leaf_hash));
    (log, ids)
}

fn checkpoint_of(hub: &SigningKey, log: &MerkleLog, size: u64) -> Result<Checkpoint, MerkleError> {
    Ok(Checkpoint {
        origin: contributions_origin(&hub.verifying_key()),
        tree_size: size,
        root: log.root_at(size)?,
        timestamp: 1_793_491_200 + size,
        signer: hub.verifying_key(),
    })
}

fn signed_checkpoint(
    hub: &SigningKey,
    log: &MerkleLog,
    size: u64,
) -> Result<SignedCheckpoint, Box<dyn Error>> {
    Ok(checkpoint_of(hub, log, size)?.sign(hub)?)
}

fn sample_receipt(hub: &SigningKey) -> Receipt {
    Receipt {
        origin: contributions_origin(&hub.verifying_key()),
        hub: hub.verifying_key(),
        release_id: ReleaseId([0xab; 32]),
        index: 17,
        checkpoint_size: 18,
        timestamp: 1_793_491_260,
    }
}

prop_compose! {
    fn arb_checkpoint()(
        seed in any::<[u8; 32]>(),
        origin in "[!-~]{1,80}",
        tree_size in prop_oneof![Just(0u64), any::<u64>(), 1u64..100],
        root in any::<[u8; 32]>(),
        timestamp in any::<u64>(),
    ) -> (SigningKey, Checkpoint) {
        let key = SigningKey::from_bytes(&seed);
        let root = if tree_size == 0 { EMPTY_ROOT } else { root };
        let checkpoint = Checkpoint { origin, tree_size, root, timestamp, signer: key.verifying_key() };
        (key, checkpoint)
    }
}

prop_compose! {
    fn arb_receipt()(
        seed in any::<[u8; 32]>(),
        origin in "[!-~]{1,80}",
        id in any::<[u8; 32]>(),
        (index, checkpoint_size) in any::<u64>().prop_flat_map(|size| (0..size.max(1), Just(size.max(1)))),
        timestamp in any::<u64>(),
    ) -> (SigningKey, Receipt) {
        let key = SigningKey::from_bytes(&seed);
        let receipt = Receipt {
            origin, hub: key.verifying_key(), release_id: ReleaseId(id), index, checkpoint_size, timestamp,
        };
        (key, receipt)
    }
}

proptest! {
    #[test]
    fn checkpoint_sign_verify_round_trips((key, checkpoint) in arb_checkpoint()) {
        let bytes = checkpoint.canonical_bytes().map_err(fail)?;
        prop_assert_eq!(&Checkpoint::decode(&bytes).map_err(fail)?, &checkpoint);
        let signed = checkpoint.clone().sign(&key).map_err(fail)?;
        prop_assert!(signed.verify().is_ok());
        prop_assert_eq!(signed.canonical_checkpoint(), bytes);
        let back = SignedCheckpoint::decode_and_verify(&signed.to_bytes()).map_err(fail)?;
        prop_assert_eq!(&back, &signed);
        let json = SignedCheckpoint::from_json_and_verify(&signed.to_json_pretty()).map_err(fail)?;
        prop_assert_eq!(&json, &signed);
        let via_serde: SignedCheckpoint = serde_json::from_str(&serde_json::to_string(&signed).map_err(fail)?).map_err(fail)?;
        prop_assert_eq!(via_serde, signed);
    }

    #[test]
    fn receipt_sign_verify_round_trips((key, receipt) in arb_receipt()) {
        let bytes = receipt.canonical_bytes().map_err(fail)?;
        prop_assert_eq!(&Receipt::decode(&bytes).map_err(fail)?, &receipt);
        let signed = receipt.clone().sign(&key).map_err(fail)?;
        prop_assert_eq!(signed.canonical_receipt(), bytes);
        let back = SignedReceipt::decode_and_verify(&signed.to_bytes()).map_err(fail)?;
        prop_assert_eq!(&back, &signed);
        let json = SignedReceipt::from_json_and_verify(&signed.to_json_pretty()).map_err(fail)?;
        prop_assert_eq!(&json, &signed);
        let via_serde: SignedReceipt = serde_json::from_str(&serde_json::to_string(&signed).map_err(fail)?).map_err(fail)?;
        prop_assert_eq!(via_serde, signed);
    }

    #[test]
    fn any_flipped_byte_of_a_checkpoint_is_refused(
        (key, checkpoint) in arb_checkpoint(), at in any::<Index>(), mask in 1u8..=255,
    ) {
        let mut bytes = checkpoint.sign(&key).map_err(fail)?.to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(SignedCheckpoint::decode_and_verify(&bytes).is_err(), "flip 0x{:02x} at byte {} accepted", mask, at);
    }

    #[test]
    fn any_flipped_byte_of_a_receipt_is_refused(
        (key, receipt) in arb_receipt(), at in any::<Index>(), mask in 1u8..=255,
    ) {
        let mut bytes = receipt.sign(&key).map_err(fail)?.to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(SignedReceipt::decode_and_verify(&bytes).is_err(), "flip 0x{:02x} at byte {} accepted", mask, at);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..400)) {
        let _ = Checkpoint::decode(&bytes);
        let _ = SignedCheckpoint::decode_and_verify(&bytes);
        let _ = Receipt::decode(&bytes);
        let _ = SignedReceipt::decode_and_verify(&bytes);
    }

    #[test]
    fn decoders_never_panic_on_damaged_encodings(
        (key, checkpoint) in arb_checkpoint(),
        edits in vec((any::<Index>(), any::<u8>()), 1..4),
        cut in any::<Index>(),
    ) {
        let mut bytes = checkpoint.sign(&key).map_err(fail)?.to_bytes();
        for (at, byte) in edits {
            let at = at.index(bytes.len());
            bytes[at] = byte;
        }
        let cut = cut.index(bytes.len() + 1);
        let _ = SignedCheckpoint::decode_and_verify(&bytes[..cut]);
        let _ = SignedCheckpoint::decode(&bytes);
    }

    #[test]
    fn json_readers_never_panic(text in ".{0,300}") {
        let _ = SignedCheckpoint::from_json_and_verify(&text);
        let _ = SignedReceipt::from_json_and_verify(&text);
    }

    #[test]
    fn checkpoints_of_one_log_are_consistent_and_forks_are_caught(
        new in 1u64..300, old in any::<Index>(), rewritten in any::<Index>(),
    ) {
        let hub = key(7);
        let (log, _) = contributions(new);
        let old = old.index(new as usize + 1) as u64;
        let a = signed_checkpoint(&hub, &log, old).map_err(fail)?;
        let b = signed_checkpoint(&hub, &log, new).map_err(fail)?;
        let proof = log.consistency_proof(old, new).map_err(fail)?;
        prop_assert_eq!(check_consistency(&a, &b, &proof), Ok(()));
        prop_assert_eq!(check_consistency(&b, &a, &proof), Ok(()));

        // The same hub signs a log with one leaf rewritten: same size, other root.
        let mut hashes = log.leaf_hashes().to_vec();
        hashes[rewritten.index(new as usize)] = merkle::leaf_hash(b"rewritten");
        let forged = MerkleLog::from_leaf_hashes(hashes);
        let c = signed_checkpoint(&hub, &forged, new).map_err(fail)?;
        prop_assert!(b.forks_with(&c) && c.forks_with(&b));
        let result = check_consistency(&b, &c, &[]);
        let forked = matches!(result, Err(CheckpointError::Fork { tree_size, .. }) if tree_size == new);
        prop_assert!(forked, "{:?}", result);
        // From the old checkpoint, the forged log cannot prove consistency unless the rewrite
        // lies beyond the old size.
        let forged_proof = forged.consistency_proof(old, new).map_err(fail)?;
        let result = check_consistency(&a, &c, &forged_proof);
        let rewritten_before_old = log.root_at(old).map_err(fail)? != forged.root_at(old).map_err(fail)?;
        prop_assert_eq!(result.is_err(), rewritten_before_old, "{:?}", result);
        if let Err(e) = result {
            prop_assert!(matches!(e, CheckpointError::Inconsistent { .. } | CheckpointError::Fork { .. }), "{:?}", e);
        }
    }

    #[test]
    fn receipts_are_checked_against_checkpoints(size in 1u64..300, index in any::<Index>(), other in any::<Index>()) {
        let hub = key(9);
        let (log, ids) = contributions(size);
        let index = index.index(size as usize) as u64;
        let receipt = Receipt {
            origin: contributions_origin(&hub.verifying_key()),
            hub: hub.verifying_key(),
            release_id: ids[index as usize],
            index,
            checkpoint_size: index + 1,
            timestamp: 1_793_491_200,
        }.sign(&hub).map_err(fail)?;
        let checkpoint = signed_checkpoint(&hub, &log, size).map_err(fail)?;
        let proof = log.inclusion_proof(index, size).map_err(fail)?;
        prop_assert_eq!(receipt.check_included(&checkpoint, &proof), Ok(()));
        // The proof of another leaf does not do.
        let other = other.index(size as usize) as u64;
        if other != index {
            let wrong = log.inclusion_proof(other, size).map_err(fail)?;
            let result = receipt.check_included(&checkpoint, &wrong);
            let refused = matches!(result, Err(CheckpointError::NotIncluded { .. }));
            prop_assert!(refused, "{:?}", result);
        }
    }
}

#[test]
fn every_flipped_byte_of_a_fixed_checkpoint_is_refused() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(20);
    let bytes = signed_checkpoint(&hub, &log, 20)?.to_bytes();
    for at in 0..bytes.len() {
        for mask in [0x01, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            assert!(
                SignedCheckpoint::decode_and_verify(&damaged).is_err(),
                "flip 0x{mask:02x} at byte {at} accepted"
            );
        }
    }
    let receipt = sample_receipt(&hub).sign(&hub)?.to_bytes();
    for at in 0..receipt.len() {
        let mut damaged = receipt.clone();
        damaged[at] ^= 0x01;
        assert!(
            SignedReceipt::decode_and_verify(&damaged).is_err(),
            "flip at byte {at} accepted"
        );
    }
    Ok(())
}

#[test]
fn layout_is_the_documented_one() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(300);
    let checkpoint = checkpoint_of(&hub, &log, 300)?;
    let bytes = checkpoint.canonical_bytes()?;
    let origin = contributions_origin(&hub.verifying_key());
    let mut expected = vec![0x86, 0x01, 0x78, origin.len() as u8];
    expected.extend_from_slice(origin.as_bytes());
    expected.extend_from_slice(&[0x19, 0x01, 0x2c, 0x58, 0x20]);
    expected.extend_from_slice(&checkpoint.root);
    expected.extend_from_slice(&[0x1a]);
    expected.extend_from_slice(&(checkpoint.timestamp as u32).to_be_bytes());
    expected.extend_from_slice(&[0x58, 0x20]);
    expected.extend_from_slice(hub.verifying_key().as_bytes());
    assert_eq!(bytes, expected);

    let signed = checkpoint.sign(&hub)?;
    let wire = signed.to_bytes();
    assert_eq!(wire[0], 0x82);
    assert_eq!(&wire[1..1 + bytes.len()], bytes.as_slice());
    assert_eq!(&wire[1 + bytes.len()..3 + bytes.len()], &[0x58, 0x40]);
    assert_eq!(
        &wire[3 + bytes.len()..],
        signed.signature().to_bytes().as_slice()
    );

    let receipt = sample_receipt(&hub);
    let bytes = receipt.canonical_bytes()?;
    let mut expected = vec![0x87, 0x01, 0x78, origin.len() as u8];
    expected.extend_from_slice(origin.as_bytes());
    expected.extend_from_slice(&[0x58, 0x20]);
    expected.extend_from_slice(hub.verifying_key().as_bytes());
    expected.extend_from_slice(&[0x58, 0x20]);
    expected.extend_from_slice(&[0xab; 32]);
    expected.extend_from_slice(&[0x11, 0x12, 0x1a]);
    expected.extend_from_slice(&1_793_491_260u32.to_be_bytes());
    assert_eq!(bytes, expected);
    Ok(())
}

#[test]
fn signatures_are_domain_separated() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(3);
    let checkpoint = checkpoint_of(&hub, &log, 3)?;
    let canonical = checkpoint.canonical_bytes()?;
    for domain in [
        &b""[..],
        RECEIPT_SIGNING_DOMAIN,
        crate::release::SIGNING_DOMAIN,
    ] {
        let signature = hub.sign(&signing_message(domain, &canonical));
        let signed = SignedCheckpoint::from_parts(checkpoint.clone(), signature)?;
        assert!(
            matches!(
                signed.verify(),
                Err(CheckpointError::BadSignature {
                    what: "checkpoint",
                    ..
                })
            ),
            "domain {domain:?}"
        );
    }
    let receipt = sample_receipt(&hub);
    let signature = hub.sign(&signing_message(
        CHECKPOINT_SIGNING_DOMAIN,
        &receipt.canonical_bytes()?,
    ));
    assert!(
        SignedReceipt::from_parts(receipt, signature)?
            .verify()
            .is_err()
    );
    Ok(())
}

#[test]
fn signing_with_another_key_is_refused() -> TestResult {
    let (log, _) = contributions(3);
    let err = checkpoint_of(&key(1), &log, 3)?.sign(&key(2));
    assert!(
        matches!(
            err,
            Err(CheckpointError::SignerMismatch {
                field: "signer",
                ..
            })
        ),
        "{err:?}"
    );
    let err = sample_receipt(&key(1)).sign(&key(2));
    assert!(
        matches!(
            err,
            Err(CheckpointError::SignerMismatch { field: "hub", .. })
        ),
        "{err:?}"
    );
    // A valid signature by another key does not verify either.
    let checkpoint = checkpoint_of(&key(1), &log, 3)?;
    let other = checkpoint_of(&key(2), &log, 3)?;
    let signature = *other.sign(&key(2))?.signature();
    let err = SignedCheckpoint::from_parts(checkpoint, signature)?.verify();
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains(&hex::encode(key(1).verifying_key().as_bytes()))
            && msg.contains("tree size 3"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn invalid_fields_are_refused() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(3);
    let good = checkpoint_of(&hub, &log, 3)?;
    for origin in [
        "",
        "has space",
        "tab\there",
        "é",
        &"x".repeat(MAX_ORIGIN_LEN + 1),
    ] {
        let c = Checkpoint {
            origin: origin.to_owned(),
            ..good.clone()
        };
        assert!(
            matches!(c.validate(), Err(CheckpointError::InvalidOrigin { .. })),
            "{origin:?}"
        );
    }
    let c = Checkpoint {
        origin: "x".repeat(MAX_ORIGIN_LEN),
        ..good.clone()
    };
    assert_eq!(c.validate(), Ok(()));

    let c = Checkpoint {
        tree_size: 0,
        ..good.clone()
    };
    assert_eq!(
        c.validate(),
        Err(CheckpointError::EmptyTreeRoot { root: good.root })
    );
    let c = Checkpoint {
        tree_size: 0,
        root: EMPTY_ROOT,
        ..good.clone()
    };
    assert_eq!(c.validate(), Ok(()));

    // A small-order key: refused when signing and when reading.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    let weak = VerifyingKey::from_bytes(&identity)?;
    let c = Checkpoint {
        signer: weak,
        ..good.clone()
    };
    assert!(matches!(
        c.validate(),
        Err(CheckpointError::InvalidKey {
            field: "signer",
            ..
        })
    ));
    let mut bytes = good.canonical_bytes()?;
    let at = bytes.len() - 32;
    bytes[at..].copy_from_slice(&identity);
    assert!(matches!(
        Checkpoint::decode(&bytes),
        Err(CheckpointError::InvalidKey {
            field: "signer",
            ..
        })
    ));

    let r = Receipt {
        index: 18,
        ..sample_receipt(&hub)
    };
    assert_eq!(
        r.validate(),
        Err(CheckpointError::IndexBeyondCheckpoint {
            index: 18,
            checkpoint_size: 18
        })
    );
    let r = Receipt {
        index: 0,
        checkpoint_size: 0,
        ..sample_receipt(&hub)
    };
    assert!(r.canonical_bytes().is_err());
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

#[test]
fn non_canonical_encodings_are_refused() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(300);
    let checkpoint = checkpoint_of(&hub, &log, 300)?;
    let bytes = checkpoint.canonical_bytes()?;
    assert_eq!(Checkpoint::decode(&bytes)?, checkpoint);

    // tree_size 300 in 4 bytes instead of 2.
    let long = patch(&bytes, &[0x19, 0x01, 0x2c], &[0x1a, 0, 0, 0x01, 0x2c])?;
    assert!(matches!(
        Checkpoint::decode(&long),
        Err(CheckpointError::NonShortestHead {
            field: "tree_size",
            value: 300,
            width: 4,
            ..
        })
    ));
    // Version 1 in two bytes.
    let long = patch(&bytes, &[0x86, 0x01], &[0x86, 0x18, 0x01])?;
    assert!(matches!(
        Checkpoint::decode(&long),
        Err(CheckpointError::NonShortestHead {
            field: "version",
            ..
        })
    ));
    // An indefinite-length array.
    let mut indefinite = bytes.clone();
    indefinite[0] = 0x9f;
    indefinite.push(0xff);
    assert!(matches!(
        Checkpoint::decode(&indefinite),
        Err(CheckpointError::UnexpectedItem { offset: 0, .. })
    ));
    // Another version, refused as such whatever follows.
    let v2 = patch(&bytes, &[0x86, 0x01], &[0x87, 0x02])?;
    assert_eq!(
        Checkpoint::decode(&v2),
        Err(CheckpointError::UnsupportedVersion {
            what: "checkpoint",
            found: 2,
            supported: 1
        })
    );
    // One field too many or too few.
    let mut more = patch(&bytes, &[0x86], &[0x87])?;
    more.push(0x00);
    assert!(matches!(
        Checkpoint::decode(&more),
        Err(CheckpointError::ArrayLength {
            found: 7,
            expected: 6,
            ..
        })
    ));
    assert!(matches!(
        Checkpoint::decode(&[0x80]),
        Err(CheckpointError::ArrayLength { found: 0, .. })
    ));
    // Trailing bytes, and a truncation.
    let mut trailing = bytes.clone();
    trailing.push(0x00);
    assert!(matches!(
        Checkpoint::decode(&trailing),
        Err(CheckpointError::TrailingBytes { count: 1, .. })
    ));
    assert!(matches!(
        Checkpoint::decode(&bytes[..bytes.len() - 1]),
        Err(CheckpointError::Truncated {
            field: "signer",
            ..
        })
    ));
    // A 31-byte root.
    let short = patch(&bytes, &[0x58, 0x20], &[0x58, 0x1f])?;
    assert!(matches!(
        Checkpoint::decode(&short),
        Err(CheckpointError::WrongLength {
            field: "root",
            found: 31,
            expected: 32,
            ..
        })
    ));
    // The origin as a byte string.
    let origin_head = [0x78, contributions_origin(&hub.verifying_key()).len() as u8];
    let as_bytes = patch(&bytes, &origin_head, &[0x58, origin_head[1]])?;
    assert!(matches!(
        Checkpoint::decode(&as_bytes),
        Err(CheckpointError::UnexpectedItem {
            field: "origin",
            ..
        })
    ));
    // A signed checkpoint whose signature is 63 bytes, or that has two.
    let wire = checkpoint.sign(&hub)?.to_bytes();
    let mut short_signature = wire.clone();
    short_signature[bytes.len() + 2] = 0x3f;
    short_signature.pop();
    assert!(matches!(
        SignedCheckpoint::decode(&short_signature),
        Err(CheckpointError::WrongLength {
            field: "signature",
            found: 63,
            ..
        })
    ));
    let mut twice = wire.clone();
    twice.extend_from_slice(&wire[1 + bytes.len()..]);
    assert!(matches!(
        SignedCheckpoint::decode(&twice),
        Err(CheckpointError::TrailingBytes {
            what: "signed checkpoint",
            ..
        })
    ));
    Ok(())
}

#[test]
fn malformed_json_is_refused_precisely() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(5);
    let signed = signed_checkpoint(&hub, &log, 5)?;
    let json: serde_json::Value = serde_json::from_str(&signed.to_json_pretty())?;

    let with = |field: &str, value: serde_json::Value| {
        let mut j = json.clone();
        j[field] = value;
        SignedCheckpoint::from_json_and_verify(&j.to_string())
    };
    // Hex case does not matter.
    let upper = json["root"].as_str().ok_or("root")?.to_uppercase();
    assert_eq!(with("root", upper.into())?, signed);
    assert!(matches!(
        with("root", "abc".into()),
        Err(CheckpointError::InvalidHex { field: "root", .. })
    ));
    assert!(matches!(
        with("signature", "00".into()),
        Err(CheckpointError::InvalidHex {
            field: "signature",
            ..
        })
    ));
    assert!(matches!(
        with("version", 2.into()),
        Err(CheckpointError::UnsupportedVersion { found: 2, .. })
    ));
    assert!(matches!(
        with("tree_size", 6.into()),
        Err(CheckpointError::BadSignature { .. })
    ));
    assert!(matches!(
        with("tree_size", (-1).into()),
        Err(CheckpointError::Json {
            what: "checkpoint",
            ..
        })
    ));
    assert!(matches!(
        with("extra", 1.into()),
        Err(CheckpointError::Json { .. })
    ));
    let mut missing = json.clone();
    missing.as_object_mut().ok_or("object")?.remove("timestamp");
    let err = SignedCheckpoint::from_json(&missing.to_string());
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("timestamp"), "{msg}");

    let receipt = sample_receipt(&hub).sign(&hub)?;
    let mut j: serde_json::Value = serde_json::from_str(&receipt.to_json_pretty())?;
    j["index"] = 18.into();
    assert!(matches!(
        SignedReceipt::from_json(&j.to_string()),
        Err(CheckpointError::IndexBeyondCheckpoint { .. })
    ));
    j["index"] = 16.into();
    assert!(matches!(
        SignedReceipt::from_json_and_verify(&j.to_string()),
        Err(CheckpointError::BadSignature {
            what: "receipt",
            ..
        })
    ));
    Ok(())
}

#[test]
fn checkpoints_of_different_logs_are_not_compared() -> TestResult {
    let (log, _) = contributions(10);
    let a = signed_checkpoint(&key(1), &log, 5)?;
    let b = signed_checkpoint(&key(2), &log, 10)?;
    let proof = log.consistency_proof(5, 10)?;
    assert!(matches!(
        check_consistency(&a, &b, &proof),
        Err(CheckpointError::DifferentLogs { .. })
    ));
    let mut c = checkpoint_of(&key(1), &log, 10)?;
    c.origin = format!(
        "{}/aggregates",
        hex::encode(key(1).verifying_key().as_bytes())
    );
    let c = c.sign(&key(1))?;
    assert!(matches!(
        check_consistency(&a, &c, &proof),
        Err(CheckpointError::DifferentLogs { .. })
    ));
    assert!(!a.forks_with(&c));
    Ok(())
}

#[test]
fn consistency_check_verifies_signatures_and_proofs() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(10);
    let a = signed_checkpoint(&hub, &log, 5)?;
    let b = signed_checkpoint(&hub, &log, 10)?;
    let proof = log.consistency_proof(5, 10)?;
    // A wrong proof: inconsistent, naming the sizes.
    let err = check_consistency(&a, &b, &proof[1..]);
    assert!(
        matches!(
            &err,
            Err(CheckpointError::Inconsistent {
                old_size: 5,
                new_size: 10,
                reason,
                ..
            }) if matches!(**reason, MerkleError::ConsistencyProofLength { .. })
        ),
        "{err:?}"
    );
    let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("sizes 5 and 10") && msg.contains("expected exactly"),
        "{msg}"
    );
    // A forged signature.
    let (checkpoint, _) = b.clone().into_parts();
    let forged = SignedCheckpoint::from_parts(checkpoint, *a.signature())?;
    assert!(matches!(
        check_consistency(&a, &forged, &proof),
        Err(CheckpointError::BadSignature { .. })
    ));
    // Same size, same root, another timestamp: consistent (a proof must then be empty).
    let mut later = b.checkpoint().clone();
    later.timestamp += 3_600;
    let later = later.sign(&hub)?;
    assert_eq!(check_consistency(&b, &later, &[]), Ok(()));
    assert!(!b.forks_with(&later));
    assert!(check_consistency(&b, &later, &proof).is_err());
    Ok(())
}

#[test]
fn fork_error_names_the_log_and_both_roots() -> TestResult {
    let hub = key(1);
    let (log, _) = contributions(4);
    let (other, _) = contributions(5);
    let a = signed_checkpoint(&hub, &log, 4)?;
    let mut forged = checkpoint_of(&hub, &other, 4)?;
    forged.root = other.root_at(5)?;
    let b = forged.sign(&hub)?;
    let msg = check_consistency(&a, &b, &[])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    for part in [
        "forked".to_owned(),
        "tree size 4".to_owned(),
        hex::encode(log.root()),
        hex::encode(other.root_at(5)?),
        contributions_origin(&hub.verifying_key()),
    ] {
        assert!(msg.contains(&part), "{part} not in {msg}");
    }
    Ok(())
}

#[test]
fn receipt_of_another_log_is_refused() -> TestResult {
    let hub = key(1);
    let (log, ids) = contributions(4);
    let receipt = Receipt {
        release_id: ids[2],
        index: 2,
        checkpoint_size: 4,
        ..sample_receipt(&hub)
    }
    .sign(&hub)?;
    let proof = log.inclusion_proof(2, 4)?;
    assert_eq!(
        receipt.check_included(&signed_checkpoint(&hub, &log, 4)?, &proof),
        Ok(())
    );
    assert_eq!(
        receipt.receipt().leaf_hash(),
        log.leaf_hash_at(2).ok_or("leaf")?
    );
    let other_hub = signed_checkpoint(&key(2), &log, 4)?;
    assert!(matches!(
        receipt.check_included(&other_hub, &proof),
        Err(CheckpointError::DifferentLogs {
            what: "the receipt and the checkpoint",
            ..
        })
    ));
    // A checkpoint too small to hold the leaf.
    let small = signed_checkpoint(&hub, &log, 2)?;
    let err = receipt.check_included(&small, &proof);
    assert!(
        matches!(
            err,
            Err(CheckpointError::NotIncluded {
                index: 2,
                tree_size: 2,
                ref reason,
                ..
            }) if matches!(**reason, MerkleError::IndexOutOfRange { .. })
        ),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn contribution_leaves_are_release_ids() {
    let id = ReleaseId([0x5a; 32]);
    assert_eq!(contribution_leaf_hash(&id), merkle::leaf_hash(&[0x5a; 32]));
    let hub = key(1).verifying_key();
    let origin = contributions_origin(&hub);
    assert_eq!(
        origin,
        format!("{}/contributions", hex::encode(hub.as_bytes()))
    );
    assert_eq!(check_origin(&origin), Ok(()));
}
