//! Verification of inclusion and consistency proofs, following RFC 9162 §2.1.3.2 and §2.1.4.2
//! to the letter (the RFC's variable names `fn`, `sn`, `fr`, `sr` are kept as `fn_`, `sn`, `fr`,
//! `sr`).
//!
//! Both algorithms walk the binary expansions of the sizes, consuming one proof hash per step,
//! and fail if the proof runs out before `sn` reaches 0 or goes on after. The number of steps
//! depends on the sizes alone, so it is computed first ([`inclusion_proof_len`],
//! [`consistency_proof_len`]) and a proof of any other length is refused with that number in the
//! error, before any hashing.

use super::{EMPTY_ROOT, Hash, MerkleError, node_hash};

/// Right-shifts `fn_` and `sn` together until `fn_` is odd or 0 (steps 4.b.ii and 6.b.iii).
fn shift_while_even(fn_: &mut u64, sn: &mut u64) {
    while *fn_ & 1 == 0 && *fn_ != 0 {
        *fn_ >>= 1;
        *sn >>= 1;
    }
}

/// How many iterations the RFC's loop makes from `fn_`, `sn` until `sn` is 0.
fn steps(mut fn_: u64, mut sn: u64) -> usize {
    let mut count = 0;
    while sn != 0 {
        // Only the shifts of step b count here; its sub-step ii runs when `fn_` is even and
        // equal to `sn`.
        if fn_ & 1 == 0 && fn_ == sn {
            shift_while_even(&mut fn_, &mut sn);
        }
        fn_ >>= 1;
        sn >>= 1;
        count += 1;
    }
    count
}

/// The number of hashes in the inclusion proof of leaf `index` in a tree of `size` leaves, or
/// `None` if `index >= size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    (index < size).then(|| steps(index, size - 1))
}

/// The number of hashes in the consistency proof from tree size `old_size` to `new_size`, or
/// `None` if `old_size > new_size`. It is 0 when `old_size` is 0 or equals `new_size`.
pub fn consistency_proof_len(old_size: u64, new_size: u64) -> Option<usize> {
    if old_size > new_size {
        return None;
    }
    if old_size == 0 || old_size == new_size {
        return Some(0);
    }
    // Step 2: a power of two is its own first hash, which the proof then leaves out.
    let seed = usize::from(!old_size.is_power_of_two());
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    Some(seed + steps(fn_, sn))
}

/// Checks that `proof` proves that the leaf whose hash is `leaf_hash` is leaf `index` of the
/// tree of `size` leaves whose root is `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), MerkleError> {
    // Step 1.
    let Some(expected) = inclusion_proof_len(index, size) else {
        return Err(MerkleError::IndexOutOfRange { index, size });
    };
    let wrong_length = || MerkleError::InclusionProofLength {
        index,
        size,
        found: proof.len(),
        expected,
    };
    if proof.len() != expected {
        return Err(wrong_length());
    }
    // Steps 2 and 3 (`size >= 1` after step 1).
    let (mut fn_, mut sn) = (index, size - 1);
    let mut r = *leaf_hash;
    // Step 4.
    for p in proof {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            r = node_hash(p, &r);
            if fn_ & 1 == 0 {
                shift_while_even(&mut fn_, &mut sn);
            }
        } else {
            r = node_hash(&r, p);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    if sn != 0 {
        return Err(wrong_length());
    }
    if r != *root {
        return Err(MerkleError::InclusionRootMismatch {
            index,
            size,
            computed: r,
            expected: *root,
        });
    }
    Ok(())
}

/// Checks that `proof` proves that the tree of `new_size` leaves with root `new_root` extends
/// the tree of `old_size` leaves with root `old_root` (RFC 9162 §2.1.4.2, plus the cases
/// `old_size == 0` and `old_size == new_size`: see the module documentation).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), MerkleError> {
    let Some(expected) = consistency_proof_len(old_size, new_size) else {
        return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
    };
    let wrong_length = || MerkleError::ConsistencyProofLength {
        old_size,
        new_size,
        found: proof.len(),
        expected,
    };
    if proof.len() != expected {
        return Err(wrong_length());
    }
    if old_size == new_size && old_root != new_root {
        return Err(MerkleError::EqualSizesDifferentRoots {
            size: new_size,
            old_root: *old_root,
            new_root: *new_root,
        });
    }
    // Every tree extends the empty one, whose root is fixed.
    if old_size == 0 && *old_root != EMPTY_ROOT {
        return Err(MerkleError::OldRootMismatch {
            old_size,
            new_size,
            computed: EMPTY_ROOT,
            expected: *old_root,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(());
    }
    // Steps 1 and 2: the path starts with the old root if `old_size` is a power of two, else
    // with the proof's first hash (and a proof is never empty here: `expected >= 1`).
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(wrong_length()),
        }
    };
    // Step 3.
    let (mut fn_, mut sn) = (old_size - 1, new_size - 1);
    // Step 4.
    while fn_ & 1 == 1 {
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 5.
    let (mut fr, mut sr) = (seed, seed);
    // Step 6.
    for c in rest {
        if sn == 0 {
            return Err(wrong_length());
        }
        if fn_ & 1 == 1 || fn_ == sn {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fn_ & 1 == 0 {
                shift_while_even(&mut fn_, &mut sn);
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fn_ >>= 1;
        sn >>= 1;
    }
    // Step 7.
    if sn != 0 {
        return Err(wrong_length());
    }
    if fr != *old_root {
        return Err(MerkleError::OldRootMismatch {
            old_size,
            new_size,
            computed: fr,
            expected: *old_root,
        });
    }
    if sr != *new_root {
        return Err(MerkleError::NewRootMismatch {
            old_size,
            new_size,
            computed: sr,
            expected: *new_root,
        });
    }
    Ok(())
}
