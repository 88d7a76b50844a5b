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

/// The receipt of leaf 17 of an 18-leaf log whose leaf 17 is release `ab ab … ab`.
fn sample_receipt(hub: &SigningKey) -> Result<SignedReceipt, Box<dyn Error>> {
    let (mut log, _) = contributions(17);
    let id = ReleaseId([0xab; 32]);
    log.append_leaf_hash(contribution_leaf_hash(&id));
    let checkpoint = signed_checkpoint(hub, &log, 18)?;
    Ok(SignedReceipt::issue(&log, checkpoint, id, 17)?)
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
    /// A receipt of a leaf of a real log, or with an arbitrary (not verifying) proof of the right
    /// length in a huge tree.
    fn arb_receipt()(
        seed in any::<[u8; 32]>(),
        size in 1u64..200,
        at in any::<Index>(),
        huge in any::<u64>(),
        hashes in vec(any::<[u8; 32]>(), 64),
        timestamp in any::<u64>(),
        real in any::<bool>(),
    ) -> SignedReceipt {
        let key = SigningKey::from_bytes(&seed);
        let origin = contributions_origin(&key.verifying_key());
        if real {
            let (log, ids) = contributions(size);
            let index = at.index(size as usize);
            let checkpoint = Checkpoint { origin, tree_size: size, root: log.root(), timestamp, signer: key.verifying_key() };
            let signed = checkpoint.sign(&key).ok();
            signed.and_then(|c| SignedReceipt::issue(&log, c, ids[index], index as u64).ok())
                .unwrap_or_else(|| unreachable!("a valid receipt"))
        } else {
            let size = huge.max(1);
            let index = at.index(usize::try_from(size).unwrap_or(usize::MAX)) as u64;
            let len = merkle::inclusion_proof_len(index, size).unwrap_or(0);
            let checkpoint = Checkpoint { origin, tree_size: size, root: hashes[0], timestamp, signer: key.verifying_key() };
            let signed = checkpoint.sign(&key).ok();
            signed.and_then(|c| SignedReceipt::new(c, ReleaseId(hashes[1]), index, hashes[..len].to_vec()).ok())
                .unwrap_or_else(|| unreachable!("a well-formed receipt"))
        }
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
    fn receipt_round_trips(signed in arb_receipt()) {
        let back = SignedReceipt::decode(&signed.to_bytes()).map_err(fail)?;
        prop_assert_eq!(&back, &signed);
        let json = SignedReceipt::from_json(&signed.to_json_pretty()).map_err(fail)?;
        prop_assert_eq!(&json, &signed);
        let via_serde: SignedReceipt = serde_json::from_str(&serde_json::to_string(&signed).map_err(fail)?).map_err(fail)?;
        prop_assert_eq!(&via_serde, &signed);
        prop_assert!(signed.checkpoint().verify().is_ok());
        let r = signed.receipt();
        prop_assert_eq!(r.checkpoint_size, signed.checkpoint().checkpoint().tree_size);
        prop_assert_eq!(r.hub, signed.checkpoint().checkpoint().signer);
        prop_assert!(r.index < r.checkpoint_size);
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
        size in 1u64..200, leaf in any::<Index>(), at in any::<Index>(), mask in 1u8..=255,
    ) {
        let hub = key(3);
        let (log, ids) = contributions(size);
        let leaf = leaf.index(size as usize);
        let checkpoint = signed_checkpoint(&hub, &log, size).map_err(fail)?;
        let receipt = SignedReceipt::issue(&log, checkpoint, ids[leaf], leaf as u64).map_err(fail)?;
        prop_assert!(SignedReceipt::decode_and_verify(&receipt.to_bytes()).is_ok());
        let mut bytes = receipt.to_bytes();
        let at = at.index(bytes.len());
        bytes[at] ^= mask;
        prop_assert!(SignedReceipt::decode_and_verify(&bytes).is_err(), "flip 0x{:02x} at byte {} accepted", mask, at);
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..400)) {
        let _ = Checkpoint::decode(&bytes);
        let _ = SignedCheckpoint::decode_and_verify(&bytes);
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
        let checkpoint = signed_checkpoint(&hub, &log, size).map_err(fail)?;
        let receipt = SignedReceipt::issue(&log, checkpoint.clone(), ids[index as usize], index).map_err(fail)?;
        prop_assert_eq!(receipt.verify(), Ok(()));
        prop_assert_eq!(receipt.receipt().release_id, ids[index as usize]);
        // The proof of another leaf does not do, nor another release at this index.
        let other = other.index(size as usize) as u64;
        if other != index {
            let wrong = log.inclusion_proof(other, size).map_err(fail)?;
            if wrong.len() == receipt.proof().len() {
                let forged = SignedReceipt::new(checkpoint.clone(), ids[index as usize], index, wrong).map_err(fail)?;
                let result = forged.verify();
                let refused = matches!(result, Err(CheckpointError::NotIncluded { .. }));
                prop_assert!(refused, "{:?}", result);
            }
            let forged = SignedReceipt::issue(&log, checkpoint, ids[other as usize], index).map_err(fail)?;
            let result = forged.verify();
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
    let receipt = sample_receipt(&hub)?.to_bytes();
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

    let receipt = sample_receipt(&hub)?;
    let bytes = receipt.to_bytes();
    let mut expected = vec![0x85, 0x02];
    expected.extend_from_slice(&receipt.checkpoint().to_bytes());
    expected.extend_from_slice(&[0x58, 0x20]);
    expected.extend_from_slice(&[0xab; 32]);
    // Leaf 17 of 18: the proof is leaf 16, then the root of leaves 0 to 15.
    expected.extend_from_slice(&[0x11, 0x82]);
    for hash in receipt.proof() {
        expected.extend_from_slice(&[0x58, 0x20]);
        expected.extend_from_slice(hash);
    }
    assert_eq!(bytes, expected);
    assert_eq!(receipt.proof().len(), 2);
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
        b"maillage/receipt/v1\0",
        crate::release::SIGNING_DOMAIN,
        crate::aggregate::SIGNING_DOMAIN,
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

    let (c, id, _, proof) = sample_receipt(&hub)?.into_parts();
    assert_eq!(
        SignedReceipt::new(c.clone(), id, 18, proof.clone()),
        Err(CheckpointError::IndexBeyondCheckpoint {
            index: 18,
            checkpoint_size: 18
        })
    );
    let err = SignedReceipt::new(c, id, 17, [proof.clone(), proof].concat());
    assert!(
        matches!(&err, Err(CheckpointError::NotIncluded { reason, .. })
            if matches!(**reason, MerkleError::InclusionProofLength { found: 4, expected: 2, .. })),
        "{err:?}"
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

    let receipt = sample_receipt(&hub)?;
    let mut j: serde_json::Value = serde_json::from_str(&receipt.to_json_pretty())?;
    j["index"] = 18.into();
    assert!(matches!(
        SignedReceipt::from_json(&j.to_string()),
        Err(CheckpointError::IndexBeyondCheckpoint { .. })
    ));
    // Leaf 16 of 18 has a proof of two hashes too, but not these.
    j["index"] = 16.into();
    assert!(SignedReceipt::from_json(&j.to_string()).is_ok());
    assert!(matches!(
        SignedReceipt::from_json_and_verify(&j.to_string()),
        Err(CheckpointError::NotIncluded { index: 16, .. })
    ));
    // Leaf 15 of 18 needs a proof of five hashes.
    j["index"] = 15.into();
    assert!(matches!(
        SignedReceipt::from_json(&j.to_string()),
        Err(CheckpointError::NotIncluded { index: 15, .. })
    ));
    j["index"] = 17.into();
    j["version"] = 1.into();
    assert!(matches!(
        SignedReceipt::from_json(&j.to_string()),
        Err(CheckpointError::UnsupportedVersion {
            found: 1,
            supported: 2,
            ..
        })
    ));
    j["version"] = 2.into();
    j["checkpoint"]["tree_size"] = 19.into();
    assert!(matches!(
        SignedReceipt::from_json_and_verify(&j.to_string()),
        Err(CheckpointError::NotIncluded { .. }) | Err(CheckpointError::BadSignature { .. })
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
fn receipt_with_another_checkpoint_is_refused() -> TestResult {
    let hub = key(1);
    let (log, ids) = contributions(4);
    let receipt = SignedReceipt::issue(&log, signed_checkpoint(&hub, &log, 4)?, ids[2], 2)?;
    assert_eq!(receipt.verify(), Ok(()));
    assert_eq!(receipt.leaf_hash(), log.leaf_hash_at(2).ok_or("leaf")?);
    let (_, id, index, proof) = receipt.into_parts();
    // Another hub's checkpoint of the same tree: its own signature verifies, and the receipt
    // then names that hub, not the first.
    let other = SignedReceipt::new(
        signed_checkpoint(&key(2), &log, 4)?,
        id,
        index,
        proof.clone(),
    )?;
    assert_eq!(other.receipt().hub, key(2).verifying_key());
    // A checkpoint too small to hold the leaf.
    let small = signed_checkpoint(&hub, &log, 2)?;
    assert_eq!(
        SignedReceipt::new(small, id, index, proof.clone()),
        Err(CheckpointError::IndexBeyondCheckpoint {
            index: 2,
            checkpoint_size: 2
        })
    );
    // A checkpoint of the same size with another root.
    let (other_log, _) = contributions(5);
    let mut forged = checkpoint_of(&hub, &log, 4)?;
    forged.root = other_log.root_at(4)?;
    forged.root[0] ^= 1;
    let err = SignedReceipt::new(forged.sign(&hub)?, id, index, proof)?.verify();
    assert!(
        matches!(
            &err,
            Err(CheckpointError::NotIncluded {
                index: 2,
                tree_size: 4,
                reason,
                ..
            }) if matches!(**reason, MerkleError::InclusionRootMismatch { .. })
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

proptest! {
    #[test]
    fn canonical_point_check_on_bytes_matches_reencoding(mut bytes in any::<[u8; 32]>(), high in any::<bool>(), special in 0u8..4) {
        // Steer a share of the cases to the edges: y near p, and y = ±1 with the sign bit.
        if high {
            bytes[1..31].fill(0xff);
            bytes[31] |= 0x7f;
        }
        match special {
            0 => { bytes = [0; 32]; bytes[0] = 1; bytes[31] |= 0x80; }
            1 => { bytes = [0xff; 32]; bytes[0] = 0xec; }
            _ => {}
        }
        if let Ok(key) = VerifyingKey::from_bytes(&bytes) {
            let reencoded = VerifyingKey::from(key.to_edwards()).to_bytes() == bytes;
            prop_assert_eq!(is_canonical_point_encoding(&bytes), reencoded, "{}", hex::encode(bytes));
        }
    }
}
