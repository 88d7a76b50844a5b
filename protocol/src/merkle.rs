//! The append-only Merkle log of Certificate Transparency (RFC 9162 §2.1, the same tree as
//! RFC 6962), as a pure data structure.
//!
//! This module owns the tree hashing, the in-memory [`MerkleLog`] that a hub appends
//! contributions to, the inclusion and consistency proofs it hands out, and the verification of
//! such proofs by anyone holding only a root. It does no I/O: the node keeps the leaf hashes in
//! its store and rebuilds the log with [`MerkleLog::from_leaf_hashes`]. What a leaf *is* (for the
//! contributions log, a release id) and the signed tree heads are the business of
//! [`crate::checkpoint`].
//!
//! # Hashing (RFC 9162 §2.1.1)
//!
//! With SHA-256 as `HASH`:
//! - the hash of an empty tree is `HASH("")` ([`EMPTY_ROOT`]);
//! - a leaf hash is `HASH(0x00 ‖ leaf data)` ([`leaf_hash`]);
//! - an interior node is `HASH(0x01 ‖ left ‖ right)` ([`node_hash`]);
//! - a tree of `n > 1` leaves splits at `k`, the largest power of two smaller than `n`: its
//!   left subtree holds leaves `0..k`, its right subtree leaves `k..n`.
//!
//! The two prefixes keep a leaf from ever being taken for an interior node (second-preimage
//! resistance).
//!
//! # Proofs
//!
//! An inclusion proof is RFC 9162's audit path `PATH(m, D[n])` (§2.1.3.1) and a consistency
//! proof its `PROOF(m, D[n])` (§2.1.4.1), both as a list of 32-byte hashes, innermost first.
//! [`verify_inclusion`] and [`verify_consistency`] follow the verification algorithms of
//! §2.1.3.2 and §2.1.4.2 step by step, after checking the sizes and that the proof has exactly
//! the length those algorithms consume (which is what they would fail on anyway); so a hostile
//! proof costs at most one hash per level of the tree and never panics.
//!
//! RFC 9162 defines consistency proofs only for `0 < old_size < new_size`. Two cases are added,
//! as CT implementations do: from size 0 the proof is empty and the old root must be the empty
//! tree's; between equal sizes the proof is empty and the two roots must be equal.
//!
//! # Cost
//!
//! The log keeps the root of every complete subtree (about two hashes per leaf: 1.3 MB for
//! 20,000 leaves). Appending costs one hash amortized; a root, an inclusion proof or a
//! consistency proof at any past size costs O(log² n) hashes at worst and usually a few dozen,
//! since only the subtrees on the right edge of a tree can be incomplete and need hashing.

#[cfg(test)]
mod tests;
mod verify;

use std::fmt;

use sha2::{Digest, Sha256};

pub use verify::{
    consistency_proof_len, inclusion_proof_len, verify_consistency, verify_inclusion,
};

/// A SHA-256 hash: a leaf hash, an interior node or a root.
pub type Hash = [u8; 32];

/// The byte prefixed to leaf data before hashing (RFC 9162 §2.1.1).
pub const LEAF_PREFIX: u8 = 0x00;

/// The byte prefixed to two child hashes before hashing (RFC 9162 §2.1.1).
pub const NODE_PREFIX: u8 = 0x01;

/// The root of the empty tree: SHA-256 of the empty string.
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// `SHA-256(0x00 ‖ data)`: the hash of a leaf holding `data`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Why a proof could not be made or did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MerkleError {
    /// A leaf index at or beyond the tree size (every index of an empty tree is).
    #[error("leaf index {index} is not in a tree of size {size}: expected an index below {size}")]
    IndexOutOfRange {
        /// The index asked for.
        index: u64,
        /// The size of the tree.
        size: u64,
    },
    /// A tree size larger than the log.
    #[error(
        "tree size {size} is beyond the end of the log, which holds {len} leaves: expected a size of at most {len}"
    )]
    SizeBeyondLog {
        /// The size asked for.
        size: u64,
        /// How many leaves the log holds.
        len: u64,
    },
    /// A consistency proof asked or checked from a larger tree to a smaller one.
    #[error(
        "old tree size {old_size} is larger than new tree size {new_size}: a consistency proof goes from a tree to one at least as large"
    )]
    SizesOutOfOrder {
        /// The old size.
        old_size: u64,
        /// The new size.
        new_size: u64,
    },
    /// An inclusion proof with more or fewer hashes than the index and size call for.
    #[error(
        "inclusion proof of leaf {index} in a tree of size {size} has {found} hashes: expected exactly {expected}"
    )]
    InclusionProofLength {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
        /// The number of hashes given.
        found: usize,
        /// The number the tree's shape calls for.
        expected: usize,
    },
    /// A consistency proof with more or fewer hashes than the two sizes call for.
    #[error(
        "consistency proof from tree size {old_size} to {new_size} has {found} hashes: expected exactly {expected}"
    )]
    ConsistencyProofLength {
        /// The old size.
        old_size: u64,
        /// The new size.
        new_size: u64,
        /// The number of hashes given.
        found: usize,
        /// The number the two sizes call for.
        expected: usize,
    },
    /// An inclusion proof that leads to another root: the leaf is not at that index in that tree.
    #[error(
        "inclusion proof of leaf {index} in a tree of size {size} leads to root {}, not to the expected root {}: this leaf is not at this index of this tree",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    InclusionRootMismatch {
        /// The leaf index.
        index: u64,
        /// The tree size.
        size: u64,
        /// The root the proof leads to.
        computed: Hash,
        /// The root it was checked against.
        expected: Hash,
    },
    /// A consistency proof that does not lead to the old root.
    #[error(
        "consistency proof from tree size {old_size} to {new_size} leads to old root {}, not to the expected old root {}",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    OldRootMismatch {
        /// The old size.
        old_size: u64,
        /// The new size.
        new_size: u64,
        /// The old root the proof leads to (for old size 0, the empty tree's root).
        computed: Hash,
        /// The old root it was checked against.
        expected: Hash,
    },
    /// A consistency proof that does not lead to the new root: the new tree does not extend the old.
    #[error(
        "consistency proof from tree size {old_size} to {new_size} leads to new root {}, not to the expected new root {}: the new tree does not extend the old one",
        hex::encode(.computed),
        hex::encode(.expected)
    )]
    NewRootMismatch {
        /// The old size.
        old_size: u64,
        /// The new size.
        new_size: u64,
        /// The new root the proof leads to.
        computed: Hash,
        /// The new root it was checked against.
        expected: Hash,
    },
    /// Two trees of one size with different roots: they cannot both be the same log.
    #[error(
        "two trees of size {size} have different roots {} and {}: a tree is consistent with one of its size only if their roots are equal",
        hex::encode(.old_root),
        hex::encode(.new_root)
    )]
    EqualSizesDifferentRoots {
        /// The size of both trees.
        size: u64,
        /// The root given as old.
        old_root: Hash,
        /// The root given as new.
        new_root: Hash,
    },
}

/// An append-only Merkle log of leaf hashes with the roots of all its complete subtrees, so that
/// roots and proofs at any past size are cheap.
///
/// Sizes and indices are `u64`, as on the wire; a size that does not fit the log is refused,
/// never truncated.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct MerkleLog {
    /// `levels[h][i]` is the root of the complete subtree of `2^h` leaves that starts at leaf
    /// `i·2^h`; `levels[0]` holds the leaf hashes, and level `h` has `⌊len / 2^h⌋` entries.
    levels: Vec<Vec<Hash>>,
}

impl fmt::Debug for MerkleLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerkleLog")
            .field("len", &self.len())
            .field("root", &hex::encode(self.root()))
            .finish()
    }
}

/// The largest power of two strictly smaller than `n`, for `n >= 2` (RFC 9162's `k`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2, "split({n})");
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

impl MerkleLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The log holding these leaf hashes, in this order (e.g. as read back from the node's store).
    pub fn from_leaf_hashes<I: IntoIterator<Item = Hash>>(leaf_hashes: I) -> Self {
        let mut log = Self::new();
        for hash in leaf_hashes {
            log.append_leaf_hash(hash);
        }
        log
    }

    /// Appends a leaf holding `leaf_data` and returns its index.
    pub fn append(&mut self, leaf_data: &[u8]) -> u64 {
        self.append_leaf_hash(leaf_hash(leaf_data))
    }

    /// Appends a leaf by its hash ([`leaf_hash`] of its data) and returns its index.
    pub fn append_leaf_hash(&mut self, leaf_hash: Hash) -> u64 {
        let index = self.len();
        let mut hash = leaf_hash;
        let mut level = 0;
        loop {
            if level == self.levels.len() {
                self.levels.push(Vec::new());
            }
            // index safety: `level <= levels.len()` before the push above, so `<` after it.
            let nodes = &mut self.levels[level];
            nodes.push(hash);
            // An even count means the new node completed a pair, whose parent is complete too.
            match nodes.as_slice() {
                [.., left, right] if nodes.len().is_multiple_of(2) => hash = node_hash(left, right),
                _ => return index,
            }
            level += 1;
        }
    }

    /// Drops every leaf from `len` on (nothing if the log is not longer), e.g. to undo appends
    /// whose storage failed.
    pub fn truncate(&mut self, len: u64) {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        for (level, nodes) in self.levels.iter_mut().enumerate() {
            nodes.truncate(len >> level);
        }
        while self.levels.last().is_some_and(Vec::is_empty) {
            self.levels.pop();
        }
    }

    /// How many leaves the log holds.
    pub fn len(&self) -> u64 {
        self.leaf_hashes().len() as u64
    }

    /// Whether the log has no leaf.
    pub fn is_empty(&self) -> bool {
        self.leaf_hashes().is_empty()
    }

    /// The leaf hashes, in order (what the node stores).
    pub fn leaf_hashes(&self) -> &[Hash] {
        self.levels.first().map_or(&[], Vec::as_slice)
    }

    /// The hash of leaf `index`, if the log has it.
    pub fn leaf_hash_at(&self, index: u64) -> Option<Hash> {
        let index = usize::try_from(index).ok()?;
        self.leaf_hashes().get(index).copied()
    }

    /// The root of the whole log.
    pub fn root(&self) -> Hash {
        self.root_of(self.leaf_hashes().len())
    }

    /// The root of the tree made of the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<Hash, MerkleError> {
        Ok(self.root_of(self.checked_size(size)?))
    }

    /// The inclusion proof (audit path) of leaf `index` in the tree of the first `size` leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, MerkleError> {
        let n = self.checked_size(size)?;
        let m = match usize::try_from(index) {
            Ok(m) if m < n => m,
            _ => return Err(MerkleError::IndexOutOfRange { index, size }),
        };
        let mut proof = Vec::new();
        self.path(m, 0, n, &mut proof);
        Ok(proof)
    }

    /// The proof that the tree of the first `new_size` leaves extends that of the first
    /// `old_size` (empty when `old_size` is 0 or equals `new_size`).
    pub fn consistency_proof(
        &self,
        old_size: u64,
        new_size: u64,
    ) -> Result<Vec<Hash>, MerkleError> {
        if old_size > new_size {
            return Err(MerkleError::SizesOutOfOrder { old_size, new_size });
        }
        let n = self.checked_size(new_size)?;
        // At most `new_size`, which fits.
        let m = usize::try_from(old_size).unwrap_or(n);
        let mut proof = Vec::new();
        if 0 < m && m < n {
            self.subproof(m, 0, n, true, &mut proof);
        }
        Ok(proof)
    }

    /// `size` as an index bound, if the log has that many leaves.
    fn checked_size(&self, size: u64) -> Result<usize, MerkleError> {
        let len = self.leaf_hashes().len();
        match usize::try_from(size) {
            Ok(n) if n <= len => Ok(n),
            _ => Err(MerkleError::SizeBeyondLog {
                size,
                len: len as u64,
            }),
        }
    }

    /// The root of the first `n <= len` leaves.
    fn root_of(&self, n: usize) -> Hash {
        if n == 0 {
            EMPTY_ROOT
        } else {
            self.subtree_root(0, n)
        }
    }

    /// `MTH(D[start:end])` for `start < end <= len`: a stored hash if the range is a complete,
    /// aligned subtree, else the RFC's split.
    fn subtree_root(&self, start: usize, end: usize) -> Hash {
        let width = end - start;
        if width.is_power_of_two() && start.is_multiple_of(width) {
            let level = width.trailing_zeros() as usize;
            if let Some(hash) = self
                .levels
                .get(level)
                .and_then(|nodes| nodes.get(start >> level))
            {
                return *hash;
            }
        }
        // Every complete, aligned range inside the log is stored (single leaves included), so
        // `width >= 2` here as long as `start < end <= len`, which every caller checks first.
        let mid = start + split(width);
        node_hash(&self.subtree_root(start, mid), &self.subtree_root(mid, end))
    }

    /// Appends `PATH(m - start, D[start:end])` (RFC 9162 §2.1.3.1) to `out`, for
    /// `start <= m < end <= len`.
    fn path(&self, m: usize, start: usize, end: usize, out: &mut Vec<Hash>) {
        if end - start <= 1 {
            return;
        }
        let mid = start + split(end - start);
        if m < mid {
            self.path(m, start, mid, out);
            out.push(self.subtree_root(mid, end));
        } else {
            self.path(m, mid, end, out);
            out.push(self.subtree_root(start, mid));
        }
    }

    /// Appends `SUBPROOF(m - start, D[start:end], complete)` (RFC 9162 §2.1.4.1) to `out`, for
    /// `start < m <= end <= len`.
    fn subproof(&self, m: usize, start: usize, end: usize, complete: bool, out: &mut Vec<Hash>) {
        if m == end {
            if !complete {
                out.push(self.subtree_root(start, end));
            }
            return;
        }
        let mid = start + split(end - start);
        if m <= mid {
            self.subproof(m, start, mid, complete, out);
            out.push(self.subtree_root(mid, end));
        } else {
            self.subproof(m, mid, end, false, out);
            out.push(self.subtree_root(start, mid));
        }
    }
}
