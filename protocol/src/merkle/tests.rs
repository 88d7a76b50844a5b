//! Unit and property tests of the Merkle log, against a naive transcription of RFC 9162's
//! recursive definitions. The published CT test vectors are in `tests/it/merkle_vectors.rs`.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use sha2::{Digest, Sha256};

use super::*;

/// RFC 9162 §2.1.1's `MTH`, recursively, straight from the text.
fn reference_root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => EMPTY_ROOT,
        [leaf] => *leaf,
        _ => {
            let k = split(leaves.len());
            node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
        }
    }
}

/// RFC 9162 §2.1.3.1's `PATH(m, D[n])`.
fn reference_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    if leaves.len() <= 1 {
        return Vec::new();
    }
    let k = split(leaves.len());
    let (mut path, sibling) = if m < k {
        (
            reference_path(m, &leaves[..k]),
            reference_root(&leaves[k..]),
        )
    } else {
        (
            reference_path(m - k, &leaves[k..]),
            reference_root(&leaves[..k]),
        )
    };
    path.push(sibling);
    path
}

/// RFC 9162 §2.1.4.1's `SUBPROOF(m, D[n], b)`.
fn reference_subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![reference_root(leaves)]
        };
    }
    let k = split(n);
    let (mut proof, sibling) = if m <= k {
        (
            reference_subproof(m, &leaves[..k], complete),
            reference_root(&leaves[k..]),
        )
    } else {
        (
            reference_subproof(m - k, &leaves[k..], false),
            reference_root(&leaves[..k]),
        )
    };
    proof.push(sibling);
    proof
}

/// Distinct leaf hashes `leaf_hash(i as u64 big-endian)`.
fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect()
}

fn log_of(n: u64) -> MerkleLog {
    MerkleLog::from_leaf_hashes(leaves(n))
}

fn fail(e: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

#[test]
fn hashing_is_rfc_9162_with_sha256() {
    assert_eq!(EMPTY_ROOT, <[u8; 32]>::from(Sha256::digest(b"")));
    assert_eq!(
        leaf_hash(b"abc"),
        <[u8; 32]>::from(Sha256::digest(b"\x00abc"))
    );
    let (l, r) = ([1; 32], [2; 32]);
    let mut both = vec![0x01];
    both.extend_from_slice(&l);
    both.extend_from_slice(&r);
    assert_eq!(node_hash(&l, &r), <[u8; 32]>::from(Sha256::digest(&both)));
    // The prefixes keep a two-leaf node from being a leaf of the 64 bytes `l ‖ r`.
    assert_ne!(node_hash(&l, &r), leaf_hash(&both[1..]));
}

#[test]
fn split_is_the_largest_power_of_two_below() {
    for (n, k) in [
        (2, 1),
        (3, 2),
        (4, 2),
        (5, 4),
        (8, 4),
        (9, 8),
        (20_000, 16_384),
    ] {
        assert_eq!(split(n), k, "n = {n}");
    }
    assert_eq!(split(usize::MAX), 1 << (usize::BITS - 1));
}

#[test]
fn empty_log() {
    let log = MerkleLog::new();
    assert!(log.is_empty());
    assert_eq!(log.len(), 0);
    assert_eq!(log.root(), EMPTY_ROOT);
    assert_eq!(log.root_at(0), Ok(EMPTY_ROOT));
    assert_eq!(log.leaf_hash_at(0), None);
    assert_eq!(
        log.inclusion_proof(0, 0),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(log.consistency_proof(0, 0), Ok(Vec::new()));
    assert_eq!(
        verify_consistency(0, 0, &EMPTY_ROOT, &EMPTY_ROOT, &[]),
        Ok(())
    );
}

#[test]
fn append_returns_consecutive_indices_and_keeps_the_leaves() {
    let mut log = MerkleLog::new();
    for i in 0..10u64 {
        assert_eq!(log.append(&i.to_be_bytes()), i);
    }
    assert_eq!(log.leaf_hashes(), leaves(10).as_slice());
    assert_eq!(log.leaf_hash_at(9), Some(leaf_hash(&9u64.to_be_bytes())));
    assert_eq!(log.leaf_hash_at(10), None);
    assert_eq!(log.leaf_hash_at(u64::MAX), None);
    assert_eq!(log, log_of(10));
    assert_eq!(MerkleLog::from_leaf_hashes(log.leaf_hashes().to_vec()), log);
}

/// Every root and proof of every tree up to 40 leaves equals the RFC's recursive definition, and
/// verifies.
#[test]
fn matches_the_rfc_definitions_exhaustively() {
    let all = leaves(40);
    let log = MerkleLog::from_leaf_hashes(all.clone());
    for n in 0..=all.len() {
        let size = n as u64;
        let root = reference_root(&all[..n]);
        assert_eq!(log.root_at(size), Ok(root), "root of {n}");
        for m in 0..n {
            let index = m as u64;
            let proof = log.inclusion_proof(index, size).map_err(|e| e.to_string());
            assert_eq!(proof, Ok(reference_path(m, &all[..n])), "path {m} of {n}");
            let proof = proof.unwrap_or_default();
            assert_eq!(inclusion_proof_len(index, size), Some(proof.len()));
            assert_eq!(
                verify_inclusion(&all[m], index, size, &proof, &root),
                Ok(()),
                "path {m} of {n}"
            );
        }
        for m in 0..=n {
            let old = m as u64;
            let expected = if m == 0 || m == n {
                Vec::new()
            } else {
                reference_subproof(m, &all[..n], true)
            };
            let proof = log.consistency_proof(old, size).map_err(|e| e.to_string());
            assert_eq!(proof, Ok(expected), "consistency {m} -> {n}");
            let proof = proof.unwrap_or_default();
            assert_eq!(consistency_proof_len(old, size), Some(proof.len()));
            let old_root = reference_root(&all[..m]);
            assert_eq!(
                verify_consistency(old, size, &old_root, &root, &proof),
                Ok(()),
                "consistency {m} -> {n}"
            );
        }
    }
    assert_eq!(log.root(), reference_root(&all));
}

#[test]
fn refuses_out_of_range_requests() {
    let log = log_of(5);
    assert_eq!(
        log.inclusion_proof(5, 5),
        Err(MerkleError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert_eq!(
        log.inclusion_proof(3, 3),
        Err(MerkleError::IndexOutOfRange { index: 3, size: 3 })
    );
    assert_eq!(
        log.inclusion_proof(0, 6),
        Err(MerkleError::SizeBeyondLog { size: 6, len: 5 })
    );
    assert_eq!(
        log.inclusion_proof(u64::MAX, u64::MAX),
        Err(MerkleError::SizeBeyondLog {
            size: u64::MAX,
            len: 5
        })
    );
    assert_eq!(
        log.root_at(6),
        Err(MerkleError::SizeBeyondLog { size: 6, len: 5 })
    );
    assert_eq!(
        log.consistency_proof(4, 3),
        Err(MerkleError::SizesOutOfOrder {
            old_size: 4,
            new_size: 3
        })
    );
    assert_eq!(
        log.consistency_proof(2, 9),
        Err(MerkleError::SizeBeyondLog { size: 9, len: 5 })
    );
    assert_eq!(log.consistency_proof(5, 5), Ok(Vec::new()));
    assert_eq!(log.consistency_proof(0, 5), Ok(Vec::new()));
}

#[test]
fn verifiers_refuse_bad_sizes_and_lengths_precisely() {
    let log = log_of(8);
    let root = log.root();
    let leaf = leaves(8)[3];
    let proof = log.inclusion_proof(3, 8).unwrap_or_default();
    assert_eq!(
        verify_inclusion(&leaf, 8, 8, &proof, &root),
        Err(MerkleError::IndexOutOfRange { index: 8, size: 8 })
    );
    assert_eq!(
        verify_inclusion(&leaf, 0, 0, &[], &EMPTY_ROOT),
        Err(MerkleError::IndexOutOfRange { index: 0, size: 0 })
    );
    assert_eq!(
        verify_inclusion(&leaf, 3, 8, &proof[..2], &root),
        Err(MerkleError::InclusionProofLength {
            index: 3,
            size: 8,
            found: 2,
            expected: 3
        })
    );
    let mut long = proof.clone();
    long.push(root);
    assert_eq!(
        verify_inclusion(&leaf, 3, 8, &long, &root),
        Err(MerkleError::InclusionProofLength {
            index: 3,
            size: 8,
            found: 4,
            expected: 3
        })
    );
    // A one-leaf tree: the leaf hash is the root, and the proof is empty.
    assert_eq!(verify_inclusion(&leaf, 0, 1, &[], &leaf), Ok(()));
    assert!(verify_inclusion(&leaf, 0, 1, &[leaf], &leaf).is_err());

    let old_root = log.root_at(3).unwrap_or_default();
    let consistency = log.consistency_proof(3, 8).unwrap_or_default();
    assert_eq!(
        verify_consistency(5, 3, &old_root, &root, &consistency),
        Err(MerkleError::SizesOutOfOrder {
            old_size: 5,
            new_size: 3
        })
    );
    assert_eq!(
        verify_consistency(3, 8, &old_root, &root, &[]),
        Err(MerkleError::ConsistencyProofLength {
            old_size: 3,
            new_size: 8,
            found: 0,
            expected: consistency.len()
        })
    );
    assert_eq!(
        verify_consistency(0, 8, &EMPTY_ROOT, &root, &consistency),
        Err(MerkleError::ConsistencyProofLength {
            old_size: 0,
            new_size: 8,
            found: consistency.len(),
            expected: 0
        })
    );
    assert_eq!(
        verify_consistency(0, 8, &root, &root, &[]),
        Err(MerkleError::OldRootMismatch {
            old_size: 0,
            new_size: 8,
            computed: EMPTY_ROOT,
            expected: root
        })
    );
    assert_eq!(
        verify_consistency(8, 8, &old_root, &root, &[]),
        Err(MerkleError::EqualSizesDifferentRoots {
            size: 8,
            old_root,
            new_root: root
        })
    );
    // Equal empty trees still need the empty root.
    assert!(verify_consistency(0, 0, &root, &root, &[]).is_err());
    assert_eq!(verify_consistency(8, 8, &root, &root, &[]), Ok(()));
}

#[test]
fn error_messages_name_the_numbers() {
    let msg = MerkleError::InclusionProofLength {
        index: 17,
        size: 20_000,
        found: 3,
        expected: 15,
    }
    .to_string();
    for part in ["leaf 17", "size 20000", "has 3 hashes", "exactly 15"] {
        assert!(msg.contains(part), "{msg}");
    }
    let msg = MerkleError::NewRootMismatch {
        old_size: 3,
        new_size: 8,
        computed: [0xab; 32],
        expected: [0xcd; 32],
    }
    .to_string();
    assert!(
        msg.contains("from tree size 3 to 8")
            && msg.contains(&"ab".repeat(32))
            && msg.contains(&"cd".repeat(32)),
        "{msg}"
    );
    let msg = MerkleError::SizeBeyondLog { size: 9, len: 5 }.to_string();
    assert!(
        msg.contains("tree size 9") && msg.contains("at most 5"),
        "{msg}"
    );
}

/// A log of `size` leaves and an index below it.
fn size_and_index() -> impl Strategy<Value = (u64, u64)> {
    (1u64..1_500).prop_flat_map(|size| (Just(size), 0..size))
}

/// Two sizes, `old <= new`.
fn two_sizes() -> impl Strategy<Value = (u64, u64)> {
    (0u64..1_500).prop_flat_map(|new| (0..=new, Just(new)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn inclusion_proofs_verify_and_bind_leaf_index_and_root(
        (size, index) in size_and_index(),
        other in any::<Index>(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let log = log_of(size);
        let root = log.root();
        let leaf = log.leaf_hash_at(index).ok_or_else(|| fail("leaf in range"))?;
        let proof = log.inclusion_proof(index, size).map_err(fail)?;
        prop_assert_eq!(Some(proof.len()), inclusion_proof_len(index, size));
        prop_assert!(proof.len() <= 64 - size.leading_zeros() as usize);
        prop_assert_eq!(verify_inclusion(&leaf, index, size, &proof, &root), Ok(()));

        // Another leaf, another index, another root: refused.
        let wrong_leaf = leaf_hash(b"not in the log");
        prop_assert!(verify_inclusion(&wrong_leaf, index, size, &proof, &root).is_err());
        let other = other.index(size as usize) as u64;
        if other != index {
            prop_assert!(verify_inclusion(&leaf, other, size, &proof, &root).is_err());
            let other_leaf = log.leaf_hash_at(other).ok_or_else(|| fail("leaf in range"))?;
            prop_assert!(verify_inclusion(&other_leaf, index, size, &proof, &root).is_err());
        }
        let mut wrong_root = root;
        wrong_root[at.index(32)] ^= mask;
        prop_assert!(verify_inclusion(&leaf, index, size, &proof, &wrong_root).is_err());

        // Any altered byte of the proof: refused.
        if !proof.is_empty() {
            let mut altered = proof.clone();
            let byte = at.index(altered.len() * 32);
            altered[byte / 32][byte % 32] ^= mask;
            prop_assert!(verify_inclusion(&leaf, index, size, &altered, &root).is_err());
        }
        // Against a larger tree, the old proof fails, and the new one verifies.
        let mut grown = log.clone();
        grown.append(b"one more");
        if proof.len() == inclusion_proof_len(index, size + 1).unwrap_or(usize::MAX) {
            prop_assert!(verify_inclusion(&leaf, index, size + 1, &proof, &grown.root()).is_err());
        }
        let new_proof = grown.inclusion_proof(index, size + 1).map_err(fail)?;
        prop_assert_eq!(verify_inclusion(&leaf, index, size + 1, &new_proof, &grown.root()), Ok(()));
        // And the grown log still proves the old tree.
        prop_assert_eq!(grown.inclusion_proof(index, size).map_err(fail)?, proof);
    }

    #[test]
    fn consistency_proofs_verify_and_any_altered_byte_fails(
        (old, new) in two_sizes(),
        at in any::<Index>(),
        mask in 1u8..=255,
    ) {
        let log = log_of(new);
        let (old_root, new_root) = (log.root_at(old).map_err(fail)?, log.root());
        let proof = log.consistency_proof(old, new).map_err(fail)?;
        prop_assert_eq!(Some(proof.len()), consistency_proof_len(old, new));
        prop_assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));

        if !proof.is_empty() {
            let mut altered = proof.clone();
            let byte = at.index(altered.len() * 32);
            altered[byte / 32][byte % 32] ^= mask;
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &altered).is_err());
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof[1..]).is_err());
            let mut longer = proof.clone();
            longer.push(new_root);
            prop_assert!(verify_consistency(old, new, &old_root, &new_root, &longer).is_err());
        }
        let mut wrong = old_root;
        wrong[at.index(32)] ^= mask;
        prop_assert!(verify_consistency(old, new, &wrong, &new_root, &proof).is_err());
        // A new root that differs is refused, except from size 0 to a larger size: the empty
        // tree is a prefix of every tree.
        let mut wrong = new_root;
        wrong[at.index(32)] ^= mask;
        let result = verify_consistency(old, new, &old_root, &wrong, &proof);
        prop_assert_eq!(result.is_ok(), old == 0 && new > 0, "{:?}", result);
        // A log that rewrote a leaf before `old` cannot prove consistency with the old root.
        if old > 0 {
            let mut hashes = log.leaf_hashes().to_vec();
            let rewritten = at.index(old as usize);
            hashes[rewritten] = leaf_hash(b"rewritten");
            let forged = MerkleLog::from_leaf_hashes(hashes);
            let forged_proof = forged.consistency_proof(old, new).map_err(fail)?;
            prop_assert!(verify_consistency(old, new, &old_root, &forged.root(), &forged_proof).is_err());
        }
    }

    #[test]
    fn incremental_log_equals_rebuilt_log(n in 0u64..600, cut in any::<Index>()) {
        let all = leaves(n);
        let cut = cut.index(all.len() + 1);
        let mut log = MerkleLog::from_leaf_hashes(all[..cut].to_vec());
        for leaf in &all[cut..] {
            log.append_leaf_hash(*leaf);
        }
        prop_assert_eq!(log.root(), reference_root(&all));
        prop_assert_eq!(log, MerkleLog::from_leaf_hashes(all));
    }

    #[test]
    fn hostile_inclusion_proofs_never_panic(
        leaf in any::<[u8; 32]>(),
        index in prop_oneof![any::<u64>(), 0u64..70, Just(u64::MAX)],
        size in prop_oneof![any::<u64>(), 0u64..70, Just(u64::MAX), Just(0)],
        proof in vec(any::<[u8; 32]>(), 0..70),
        root in any::<[u8; 32]>(),
    ) {
        // Random hashes verify only by finding a SHA-256 collision; a size-1 tree with an
        // empty proof and root == leaf is the one legitimate way through.
        let result = verify_inclusion(&leaf, index, size, &proof, &root);
        prop_assert!(result.is_err() || (size == 1 && proof.is_empty() && leaf == root));
        let _ = inclusion_proof_len(index, size);
        let log = log_of(size % 70);
        let _ = log.inclusion_proof(index, size);
    }

    #[test]
    fn hostile_consistency_proofs_never_panic(
        old in prop_oneof![any::<u64>(), 0u64..70, Just(u64::MAX), Just(0)],
        new in prop_oneof![any::<u64>(), 0u64..70, Just(u64::MAX)],
        old_root in any::<[u8; 32]>(),
        new_root in any::<[u8; 32]>(),
        proof in vec(any::<[u8; 32]>(), 0..70),
    ) {
        let result = verify_consistency(old, new, &old_root, &new_root, &proof);
        prop_assert!(result.is_err() || (proof.is_empty() && old == new && old_root == new_root));
        let _ = consistency_proof_len(old, new);
        let log = log_of(new % 70);
        let _ = log.consistency_proof(old, new);
        let _ = log.root_at(old);
    }

    /// Proofs made by a real log but checked against hostile sizes are refused, not panicked on.
    #[test]
    fn real_proofs_with_wrong_sizes_are_refused(
        (size, index) in size_and_index(),
        claimed_size in any::<u64>(),
        claimed_index in any::<u64>(),
    ) {
        let log = log_of(size);
        let proof = log.inclusion_proof(index, size).map_err(fail)?;
        let leaf = log.leaf_hash_at(index).ok_or_else(|| fail("leaf in range"))?;
        let result = verify_inclusion(&leaf, claimed_index, claimed_size, &proof, &log.root());
        // A path's shape depends on the index and size, so that a few small (index, size)
        // pairs share one (which is why the verifier must take both from a signed tree head);
        // random 64-bit claims hit one with a probability far below 2^-40.
        prop_assert!(result.is_err() || (claimed_index == index && claimed_size == size));
    }
}

/// How long proofs take at the scale of an audit (run with
/// `cargo test --release -p maillage-protocol -- --ignored --nocapture merkle_timing`).
#[test]
#[ignore = "prints timings; run in release mode"]
fn merkle_timing_20k() {
    use std::time::Instant;
    const N: u64 = 20_000;
    let start = Instant::now();
    let log = log_of(N);
    let build = start.elapsed();
    let root = log.root();

    let start = Instant::now();
    let proofs: Vec<Vec<Hash>> = (0..N)
        .map(|i| log.inclusion_proof(i, N).unwrap_or_default())
        .collect();
    let prove = start.elapsed();
    let start = Instant::now();
    let verified = proofs
        .iter()
        .enumerate()
        .filter(|(i, p)| verify_inclusion(&log.leaf_hashes()[*i], *i as u64, N, p, &root).is_ok())
        .count();
    let verify = start.elapsed();
    assert_eq!(verified as u64, N);

    // One checkpoint every 100 leaves, and the consistency proof between consecutive ones.
    let start = Instant::now();
    let mut consistent = 0;
    for old in (100..N).step_by(100) {
        let new = old + 100;
        let proof = log.consistency_proof(old, new).unwrap_or_default();
        let (old_root, new_root) = (
            log.root_at(old).unwrap_or_default(),
            log.root_at(new).unwrap_or_default(),
        );
        consistent +=
            usize::from(verify_consistency(old, new, &old_root, &new_root, &proof).is_ok());
    }
    let consistency = start.elapsed();
    assert_eq!(consistent, 199);
    println!(
        "{N} leaves: build {build:?}; {N} inclusion proofs: make {prove:?} ({:?} each), verify {verify:?} ({:?} each); 199 consistency proofs made and verified with their roots: {consistency:?}",
        prove / N as u32,
        verify / N as u32,
    );
}

proptest! {
    #[test]
    fn truncating_is_never_having_appended(n in 0u64..300, keep in 0u64..320) {
        let hashes: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut log = MerkleLog::from_leaf_hashes(hashes.iter().copied());
        log.truncate(keep);
        let kept = usize::try_from(keep.min(n)).unwrap_or(usize::MAX);
        let expected = MerkleLog::from_leaf_hashes(hashes[..kept].iter().copied());
        prop_assert_eq!(&log, &expected);
        prop_assert_eq!(log.root(), expected.root());
    }
}
