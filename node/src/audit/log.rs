//! Steps 2 to 4 of an audit: the releases, the receipts, and the Merkle log they make, against
//! the hub's signed checkpoints and the proofs of the bundle.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};

use ed25519_dalek::{Signature, VerifyingKey};
use maillage_privacy::accuracy::Summand;
use maillage_privacy::release::Mechanism as PrivacyMechanism;
use maillage_protocol::checkpoint::{RECEIPT_VERSION, contribution_leaf_hash};
use maillage_protocol::merkle::{Hash, MerkleLog, verify_consistency, verify_inclusion};
use maillage_protocol::release::{SignedReleaseJson, SignerKeys};
use maillage_protocol::vocab::Vocabulary as _;
use maillage_protocol::{Indicator, Mechanism, Period, ReleaseId, SignedCheckpoint, SignedReceipt};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{Auditor, BATCH, FindingKind, contributing_role, files, hex_key, verify_all};
use crate::bundle::Proofs;

/// A line of `releases.jsonl` as read ([`crate::bundle::LeafLine`]), its release not yet
/// validated (so that its signer's key can come from the keys already decoded).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeafLineView<'a> {
    index: u64,
    #[serde(borrow)]
    release: SignedReleaseJson<'a>,
}

/// At most this many decoded signer keys are kept while reading releases (a bundle's signers
/// are its members; the bound only caps what a bundle of made-up keys can make the audit hold).
const MAX_CACHED_KEYS: usize = 1 << 20;

/// What the audit knows of one leaf from its line of `releases.jsonl`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Leaf {
    /// The release id (SHA-256 of the signed message).
    pub id: ReleaseId,
    /// Its signer.
    pub signer: VerifyingKey,
    /// Its period.
    pub period: Period,
}

/// The running sum of one cell over the summed releases, in log order.
#[derive(Debug, Clone)]
pub(super) struct CellSum {
    pub indicator: Indicator,
    pub category: Option<String>,
    pub summands: Vec<Summand>,
}

/// A cell's place in catalogue order: indicator, then category position.
pub(super) type CellKey = (usize, usize);

/// The categories of every indicator, by indicator index (computed once).
#[derive(Debug)]
pub(super) struct Catalogue(Vec<Vec<&'static str>>);

impl Catalogue {
    pub(super) fn new() -> Self {
        Self(Indicator::ALL.iter().map(|i| i.categories()).collect())
    }

    pub(super) fn key(&self, indicator: Indicator, category: Option<&str>) -> CellKey {
        let index = indicator.index();
        let position = match (category, self.0.get(index)) {
            (Some(c), Some(categories)) => categories
                .iter()
                .position(|k| *k == c)
                .unwrap_or(usize::MAX),
            _ => 0,
        };
        (index, position)
    }
}

/// Step 2's outcome.
#[derive(Debug, Default)]
pub(super) struct Releases {
    /// One per line; `None` for a line that is not a valid release.
    pub leaves: Vec<Option<Leaf>>,
    /// Lines whose signature verified.
    pub verified: u64,
    /// The sums of the aggregate's period, if there is an aggregate.
    pub sums: BTreeMap<CellKey, CellSum>,
}

/// Steps 2 to 4's outcome, what the aggregate is checked against.
#[derive(Debug, Default)]
pub(super) struct Log {
    /// One per line of `releases.jsonl`.
    pub leaves: Vec<Option<Leaf>>,
    /// The tree rebuilt from them.
    pub tree: MerkleLog,
    /// Valid checkpoints (verified, the hub's, the hub's log) by size: position in
    /// `checkpoints.json` and root.
    pub checkpoints: BTreeMap<u64, Vec<(usize, Hash)>>,
    /// Lines of `releases.jsonl` whose signature verified.
    pub releases_verified: u64,
    /// The sums of the aggregate's period.
    pub sums: BTreeMap<CellKey, CellSum>,
    /// National bundles: the cells the national aggregate should state, summed from the
    /// period's hub aggregates (or why they cannot be summed).
    pub expected_cells: Option<Result<Vec<maillage_protocol::AggregateCell>, String>>,
}

fn privacy_mechanism(mechanism: Mechanism) -> PrivacyMechanism {
    match mechanism {
        Mechanism::Laplace { .. } => PrivacyMechanism::DiscreteLaplace,
        Mechanism::Gaussian { .. } => PrivacyMechanism::DiscreteGaussian,
    }
}

/// `releases.jsonl:17`: lines are shown 1-based, as editors do; leaf `n` is line `n + 1`.
pub(super) fn line_of(file: &str, position: usize) -> String {
    format!("{file}:{}", position + 1)
}

/// Decodes proof hashes, naming the first that is not 64 hex digits.
fn hashes(hexes: &[impl AsRef<str>]) -> Result<Vec<Hash>, String> {
    hexes
        .iter()
        .enumerate()
        .map(|(n, h)| {
            hex32(h.as_ref())
                .ok_or_else(|| format!("proof[{n}] is not 64 hexadecimal digits (a SHA-256 hash)"))
        })
        .collect()
}

/// The value of each hexadecimal digit (either case), 0xff for other bytes.
const HEX_VALUES: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        table[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Exactly 64 hexadecimal digits (either case, as `hex::decode_to_slice` reads them) as 32
/// bytes; a table lookup per digit (proofs hold hundreds of thousands of hashes).
pub(super) fn hex32(text: &str) -> Option<[u8; 32]> {
    let digits = text.as_bytes();
    if digits.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (HEX_VALUES[pair[0] as usize], HEX_VALUES[pair[1] as usize]);
        if (high | low) == 0xff {
            return None;
        }
        *byte = (high << 4) | low;
    }
    Some(out)
}

/// `proofs.json` ([`Proofs`]) as read, the hashes' text borrowed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofsView<'a> {
    #[serde(borrow)]
    inclusion: Vec<InclusionView<'a>>,
    #[serde(borrow)]
    consistency: Vec<ConsistencyView<'a>>,
}

/// [`crate::bundle::InclusionProof`] as read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InclusionView<'a> {
    index: u64,
    tree_size: u64,
    #[serde(borrow)]
    proof: Vec<Text<'a>>,
}

/// [`crate::bundle::ConsistencyProof`] as read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsistencyView<'a> {
    old_size: u64,
    new_size: u64,
    #[serde(borrow)]
    proof: Vec<Text<'a>>,
}

impl<'a> ProofsView<'a> {
    fn of(proofs: &'a Proofs) -> Self {
        let texts = |proof: &'a [String]| {
            proof
                .iter()
                .map(|h| Text(Cow::Borrowed(h.as_str())))
                .collect()
        };
        Self {
            inclusion: proofs
                .inclusion
                .iter()
                .map(|p| InclusionView {
                    index: p.index,
                    tree_size: p.tree_size,
                    proof: texts(&p.proof),
                })
                .collect(),
            consistency: proofs
                .consistency
                .iter()
                .map(|p| ConsistencyView {
                    old_size: p.old_size,
                    new_size: p.new_size,
                    proof: texts(&p.proof),
                })
                .collect(),
        }
    }
}

/// Signatures waiting for one batch verification, with what to report if one fails.
#[derive(Debug, Default)]
struct Pending {
    messages: Vec<Vec<u8>>,
    signatures: Vec<Signature>,
    keys: Vec<VerifyingKey>,
    /// Line position, id and period of the signed release (described only if it fails).
    what: Vec<(usize, ReleaseId, Period)>,
}

impl Pending {
    fn push(
        &mut self,
        message: Vec<u8>,
        signature: Signature,
        key: VerifyingKey,
        at: (usize, ReleaseId, Period),
    ) {
        self.messages.push(message);
        self.signatures.push(signature);
        self.keys.push(key);
        self.what.push(at);
    }

    /// Verifies what is pending; returns the positions that verified and reports the others.
    fn flush(&mut self, auditor: &mut Auditor, file: &str) -> Vec<usize> {
        let results = verify_all(&self.messages, &self.signatures, &self.keys);
        let mut good = Vec::with_capacity(results.len());
        for ((ok, key), (position, id, period)) in
            results.into_iter().zip(&self.keys).zip(&self.what)
        {
            if ok {
                good.push(*position);
            } else {
                auditor.find(
                    FindingKind::BadSignature,
                    format!("{} signature", line_of(file, *position)),
                    Some(key),
                    format!(
                        "the signature of release {id} of {} for {period} does not verify with {}",
                        hex_key(key),
                        hex_key(key)
                    ),
                );
            }
        }
        self.messages.clear();
        self.signatures.clear();
        self.keys.clear();
        self.what.clear();
        good
    }
}

/// A receipt line as plain JSON (see [`SignedReceipt`]'s JSON view): parsed without decoding
/// any key or building any checkpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReceiptLine<'a> {
    version: u64,
    #[serde(borrow)]
    checkpoint: CheckpointText<'a>,
    #[serde(borrow)]
    release_id: Cow<'a, str>,
    index: u64,
    #[serde(borrow)]
    proof: Vec<Text<'a>>,
}

/// A JSON string, borrowed from the input unless it has escapes.
#[derive(Debug)]
pub(super) struct Text<'a>(pub Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        deserializer.deserialize_str(Visitor).map(Text)
    }
}

/// A signed checkpoint's JSON view, field by field, as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointText<'a> {
    version: u64,
    #[serde(borrow)]
    origin: Cow<'a, str>,
    tree_size: u64,
    #[serde(borrow)]
    root: Cow<'a, str>,
    timestamp: u64,
    #[serde(borrow)]
    signer: Cow<'a, str>,
    #[serde(borrow)]
    signature: Cow<'a, str>,
}

impl CheckpointText<'_> {
    fn into_owned(self) -> CheckpointText<'static> {
        CheckpointText {
            version: self.version,
            origin: Cow::Owned(self.origin.into_owned()),
            tree_size: self.tree_size,
            root: Cow::Owned(self.root.into_owned()),
            timestamp: self.timestamp,
            signer: Cow::Owned(self.signer.into_owned()),
            signature: Cow::Owned(self.signature.into_owned()),
        }
    }
}

/// The distinct checkpoints the receipts carry: each built, and its signature verified, once.
#[derive(Debug, Default)]
pub(super) struct ReceiptCheckpoints {
    by_text: HashMap<CheckpointText<'static>, usize>,
    /// The last one met and its position in `list` (receipts of a batch follow each other).
    last: Option<(CheckpointText<'static>, usize)>,
    /// Each checkpoint and whether its signature verified.
    list: Vec<(SignedCheckpoint, bool)>,
    /// The first receipt line (position) carrying each.
    first_line: Vec<usize>,
}

/// Builds a signed checkpoint from its JSON fields; a signer equal to the hub's key (compared on
/// the bytes) reuses the key decoded from the manifest.
fn build_checkpoint(
    c: &CheckpointText<'_>,
    hub: Option<&VerifyingKey>,
    hub_bytes: Option<&[u8; 32]>,
) -> Result<SignedCheckpoint, String> {
    if c.version != maillage_protocol::checkpoint::VERSION {
        return Err(format!("checkpoint version {} is not supported", c.version));
    }
    let mut signer = [0u8; 32];
    hex::decode_to_slice(c.signer.as_bytes(), &mut signer)
        .map_err(|_| "signer is not 64 hexadecimal digits".to_owned())?;
    let signer = match (hub, hub_bytes) {
        (Some(hub), Some(bytes)) if *bytes == signer => *hub,
        _ => VerifyingKey::from_bytes(&signer)
            .map_err(|_| "signer is not an ed25519 key".to_owned())?,
    };
    let mut root = [0u8; 32];
    hex::decode_to_slice(c.root.as_bytes(), &mut root)
        .map_err(|_| "root is not 64 hexadecimal digits".to_owned())?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(c.signature.as_bytes(), &mut signature)
        .map_err(|_| "signature is not 128 hexadecimal digits".to_owned())?;
    let checkpoint = maillage_protocol::Checkpoint {
        origin: c.origin.to_string(),
        tree_size: c.tree_size,
        root,
        timestamp: c.timestamp,
        signer,
    };
    SignedCheckpoint::from_parts(checkpoint, Signature::from_bytes(&signature))
        .map_err(|e| e.to_string())
}

/// Calls `each` with the position and bytes of every line of a file (without its `\n`); a file
/// that cannot be read is a finding. A last empty line (after the final `\n`) is not a line.
pub(super) fn for_each_line(
    auditor: &mut Auditor,
    file: &str,
    mut each: impl FnMut(&mut Auditor, usize, &[u8]),
) {
    let path = auditor.dir.join(file);
    let mut reader = match std::fs::File::open(&path) {
        Ok(f) => BufReader::with_capacity(1 << 20, f),
        Err(e) => {
            let shown = path.display().to_string();
            auditor.find(
                FindingKind::Unreadable,
                file,
                None,
                format!("cannot read {shown}: {e}; every bundle has this file"),
            );
            return;
        }
    };
    let mut line = Vec::new();
    let mut position = 0usize;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                each(auditor, position, &line);
                position += 1;
            }
            Err(e) => {
                auditor.find(
                    FindingKind::Unreadable,
                    line_of(file, position),
                    None,
                    format!("reading stopped: {e}"),
                );
                return;
            }
        }
    }
}

impl Auditor {
    /// Step 2: every release line. `summed` is the aggregate's period and checkpoint size: the
    /// cells of the releases it should sum are accumulated on the way.
    pub(super) fn releases(&mut self, summed: Option<(Period, u64)>) -> Releases {
        let catalogue = Catalogue::new();
        let role = contributing_role(self.level);
        let policy = self.manifest.as_ref().map(|m| m.policy.clone());
        let mut out = Releases::default();
        let mut pending = Pending::default();
        let mut by_id: HashMap<ReleaseId, usize> = HashMap::new();
        let mut by_signer: HashMap<([u8; 32], Period), (usize, ReleaseId)> = HashMap::new();
        // Each distinct signer's key is decoded once (most sign a release every period).
        let mut keys = SignerKeys::new();
        let file = files::RELEASES;
        for_each_line(self, file, |auditor, position, line| {
            let at = || line_of(file, position);
            let malformed = |auditor: &mut Auditor, e: &dyn std::fmt::Display| {
                auditor.find(
                    FindingKind::Malformed,
                    at(),
                    None,
                    format!(
                        "leaf {position} is not a line {{\"index\": n, \"release\": <signed release>}}: {e}"
                    ),
                );
            };
            let parsed = serde_json::from_slice::<LeafLineView<'_>>(line)
                .map_err(|e| e.to_string())
                .and_then(|p| {
                    let index = p.index;
                    p.release
                        .into_signed(&keys)
                        .map(|signed| (index, signed))
                        .map_err(|e| e.to_string())
                });
            let (index, signed) = match parsed {
                Ok(parsed) => parsed,
                Err(e) => {
                    malformed(auditor, &e);
                    out.leaves.push(None);
                    return;
                }
            };
            let r = signed.release();
            let signer = r.signer;
            auditor.release_params.push(super::policy::ReleaseParams {
                position,
                signer,
                period: r.period,
                params: r.params.clone(),
            });
            if keys.len() < MAX_CACHED_KEYS {
                keys.insert(signer);
            }
            let shown = || hex_key(&signer);
            if index != position as u64 {
                auditor.find(
                    FindingKind::WrongIndex,
                    format!("{} index", at()),
                    Some(&signer),
                    format!(
                        "the line says index {} but it is leaf {position} of the log (line {})",
                        index,
                        position + 1
                    ),
                );
            }
            let message = signed.signed_message();
            // The release id is defined as SHA-256 of the signed message (see
            // `maillage_protocol::release`); computing it here saves encoding twice.
            let id = ReleaseId::from_bytes(Sha256::digest(&message).into());
            let period = r.period;
            let described = || format!("release {id} of {} for {period}", shown());

            if auditor.members_read {
                match auditor.members.get(signer.as_bytes()) {
                    Some(found) if *found == role => {}
                    Some(found) => auditor.find(
                        FindingKind::NotAMember,
                        format!("{} release.signer", at()),
                        Some(&signer),
                        format!(
                            "{}: the signer is a member with role {found}; only members with role {role} contribute to this log",
                            described()
                        ),
                    ),
                    None => auditor.find(
                        FindingKind::NotAMember,
                        format!("{} release.signer", at()),
                        Some(&signer),
                        format!("{}: the signer is not in members.json", described()),
                    ),
                }
            }
            if let Some(policy) = &policy {
                if r.mechanism.name() != policy.mechanism {
                    auditor.find(
                        FindingKind::WrongMechanism,
                        format!("{} release.mechanism", at()),
                        Some(&signer),
                        format!(
                            "{} uses {}; the policy's mechanism is {}",
                            described(),
                            r.mechanism.name(),
                            policy.mechanism
                        ),
                    );
                }
                if r.mechanism.loss() > policy.budget {
                    auditor.find(
                        FindingKind::OverBudget,
                        format!("{} release.{}", at(), r.mechanism.loss_field()),
                        Some(&signer),
                        format!(
                            "{} spends {} = {}, over the policy's budget of {} per period",
                            described(),
                            r.mechanism.loss_field(),
                            r.mechanism.loss(),
                            policy.budget
                        ),
                    );
                }
            }
            if let Some(first) = by_id.get(&id) {
                auditor.find(
                    FindingKind::DuplicateRelease,
                    at(),
                    Some(&signer),
                    format!(
                        "{} is logged twice: at leaf {first} (line {}) and leaf {position}",
                        described(),
                        first + 1
                    ),
                );
            } else {
                by_id.insert(id, position);
                match by_signer.get(&(signer.to_bytes(), r.period)) {
                    Some((first, first_id)) => auditor.find(
                        FindingKind::Equivocation,
                        at(),
                        Some(&signer),
                        format!(
                            "{} signed two different releases for {}: {first_id} at leaf {first} (line {}) and {id} at leaf {position}",
                            shown(),
                            r.period,
                            first + 1
                        ),
                    ),
                    None => {
                        by_signer.insert((signer.to_bytes(), r.period), (position, id));
                    }
                }
            }
            if let Some((summed_period, size)) = summed
                && period == summed_period
                && (position as u64) < size
            {
                let mechanism = privacy_mechanism(r.mechanism);
                for cell in &r.cells {
                    let key = catalogue.key(cell.indicator, cell.category.as_deref());
                    out.sums
                        .entry(key)
                        .or_insert_with(|| CellSum {
                            indicator: cell.indicator,
                            category: cell.category.clone(),
                            summands: Vec::new(),
                        })
                        .summands
                        .push(Summand {
                            value: cell.value,
                            mechanism,
                            scale: cell.scale,
                        });
                }
            }
            out.leaves.push(Some(Leaf {
                id,
                signer,
                period: r.period,
            }));
            pending.push(message, *signed.signature(), signer, (position, id, period));
            if pending.messages.len() >= BATCH {
                out.verified += pending.flush(auditor, file).len() as u64;
            }
        });
        out.verified += pending.flush(self, file).len() as u64;
        out
    }

    /// Step 3: the receipts. Returns, for each position, the release id a valid receipt of the
    /// hub names there, and the distinct checkpoints the receipts carry (checked against the
    /// rebuilt tree and `checkpoints.json` once the tree is built).
    ///
    /// A receipt is the hub's signed checkpoint of the leaf's batch, the leaf's index and its
    /// inclusion proof. Receipts are read as plain JSON and their checkpoints compared by bytes:
    /// the hub's key is decoded once (from the manifest) and each distinct checkpoint is built
    /// and its signature verified once, however many receipts share it.
    fn receipts(
        &mut self,
        leaves: &[Option<Leaf>],
    ) -> (Vec<Option<ReleaseId>>, ReceiptCheckpoints) {
        let leaves_file = self.leaves_file;
        let hub = self.hub;
        let hub_bytes = hub.map(|k| k.to_bytes());
        let origin = self.origin.clone();
        let log_size = self.log_size().unwrap_or(leaves.len() as u64);
        let mut named: Vec<Option<ReleaseId>> = vec![None; leaves.len()];
        let mut seen = ReceiptCheckpoints::default();
        let file = files::RECEIPTS;
        let mut lines = 0usize;
        for_each_line(self, file, |auditor, position, line| {
            lines = position + 1;
            let at = line_of(file, position);
            let parsed: ReceiptLine<'_> = match serde_json::from_slice(line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    auditor.find(
                        FindingKind::Malformed,
                        at,
                        None,
                        format!("the receipt of leaf {position} is not a receipt {{\"version\": 2, \"checkpoint\", \"release_id\", \"index\", \"proof\"}}: {e}"),
                    );
                    return;
                }
            };
            if parsed.version != RECEIPT_VERSION {
                auditor.find(
                    FindingKind::Malformed,
                    format!("{at} version"),
                    None,
                    format!(
                        "receipt version {} is not supported: this auditor reads version {RECEIPT_VERSION}",
                        parsed.version
                    ),
                );
                return;
            }
            // The checkpoint: known already (by its JSON fields), or built and verified now.
            let c = &parsed.checkpoint;
            let known = match &seen.last {
                Some((last, n)) if c == last => Some(*n),
                _ => {
                    let owned = c.clone().into_owned();
                    let n = seen.by_text.get(&owned).copied();
                    if let Some(n) = n {
                        seen.last = Some((owned, n));
                    }
                    n
                }
            };
            let checkpoint = match known {
                Some(n) => seen
                    .list
                    .get(n)
                    .map(|(checkpoint, ok)| (checkpoint.clone(), *ok)),
                None => {
                    let built = build_checkpoint(c, hub.as_ref(), hub_bytes.as_ref());
                    match built {
                        Ok(checkpoint) => {
                            let ok = checkpoint.verify().is_ok();
                            let owned = c.clone().into_owned();
                            seen.last = Some((owned.clone(), seen.list.len()));
                            seen.by_text.insert(owned, seen.list.len());
                            seen.list.push((checkpoint.clone(), ok));
                            seen.first_line.push(position);
                            Some((checkpoint, ok))
                        }
                        Err(e) => {
                            auditor.find(
                                FindingKind::Malformed,
                                format!("{at} checkpoint"),
                                None,
                                format!(
                                    "the receipt's checkpoint is not a valid signed checkpoint: {e}"
                                ),
                            );
                            None
                        }
                    }
                }
            };
            let Some((checkpoint, signature_ok)) = checkpoint else {
                return;
            };
            let cp = checkpoint.checkpoint();
            let signer = cp.signer;
            let mut good = true;
            if !signature_ok {
                good = false;
                auditor.find(
                    FindingKind::BadSignature,
                    format!("{at} checkpoint.signature"),
                    Some(&signer),
                    format!(
                        "the checkpoint of tree size {} in the receipt of leaf {position} does not verify with {}",
                        cp.tree_size,
                        hex_key(&signer)
                    ),
                );
            }
            if let Some(hub) = &hub
                && signer != *hub
            {
                good = false;
                auditor.find(
                    FindingKind::WrongLog,
                    format!("{at} checkpoint.signer"),
                    Some(&signer),
                    format!(
                        "the receipt's checkpoint is signed by {}, not by the hub {}",
                        hex_key(&signer),
                        hex_key(hub)
                    ),
                );
            }
            if let Some(origin) = &origin
                && cp.origin != *origin
            {
                good = false;
                auditor.find(
                    FindingKind::WrongLog,
                    format!("{at} checkpoint.origin"),
                    Some(&signer),
                    format!(
                        "the receipt is for log {:?}, not the hub's log {origin:?}",
                        cp.origin
                    ),
                );
            }
            if parsed.index != position as u64 {
                good = false;
                auditor.find(
                    FindingKind::ReceiptMismatch,
                    format!("{at} index"),
                    Some(&signer),
                    format!(
                        "the receipt on the line of leaf {position} is for leaf {}",
                        parsed.index
                    ),
                );
            }
            let Some(id) = hex32(&parsed.release_id) else {
                auditor.find(
                    FindingKind::Malformed,
                    format!("{at} release_id"),
                    Some(&signer),
                    "release_id is not 64 hexadecimal digits",
                );
                return;
            };
            let id = ReleaseId::from_bytes(id);
            match leaves.get(position) {
                Some(Some(leaf)) if leaf.id != id => {
                    good = false;
                    auditor.find(
                        FindingKind::ReceiptMismatch,
                        format!("{at} release_id"),
                        Some(&signer),
                        format!(
                            "the hub's receipt names release {id} as leaf {position}, but {} holds release {} of {}",
                            line_of(leaves_file, position),
                            leaf.id,
                            hex_key(&leaf.signer)
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    good = false;
                    auditor.find(
                        FindingKind::ReceiptMismatch,
                        at.clone(),
                        Some(&signer),
                        format!(
                            "a receipt for leaf {position}, beyond the {} lines of {}",
                            leaves.len(),
                            leaves_file
                        ),
                    );
                }
            }
            if cp.tree_size > log_size {
                good = false;
                auditor.find(
                    FindingKind::ReceiptMismatch,
                    format!("{at} checkpoint.tree_size"),
                    Some(&signer),
                    format!(
                        "the receipt's checkpoint has tree size {}, beyond the log's {log_size} leaves",
                        cp.tree_size
                    ),
                );
            }
            let proof = match hashes(&parsed.proof) {
                Ok(proof) => proof,
                Err(e) => {
                    auditor.find(
                        FindingKind::BadInclusionProof,
                        format!("{at} proof"),
                        Some(&signer),
                        e,
                    );
                    return;
                }
            };
            let inclusion = SignedReceipt::new(checkpoint, id, parsed.index, proof)
                .and_then(|receipt| receipt.verify_inclusion());
            if let Err(e) = inclusion {
                good = false;
                auditor.find(
                    FindingKind::BadInclusionProof,
                    format!("{at} proof"),
                    Some(&signer),
                    format!("the receipt of leaf {position} does not show release {id} in its checkpoint: {e}"),
                );
            }
            if good && let Some(slot) = named.get_mut(position) {
                *slot = Some(id);
            }
        });
        for position in lines..leaves.len() {
            let signer = leaves.get(position).copied().flatten().map(|l| l.signer);
            self.find(
                FindingKind::MissingReceipt,
                line_of(file, position),
                None,
                format!(
                    "leaf {position} ({}) has no receipt",
                    match signer {
                        Some(s) => format!("a release of {}", hex_key(&s)),
                        None => line_of(leaves_file, position),
                    }
                ),
            );
        }
        (named, seen)
    }

    /// Step 4 (continued): every checkpoint a receipt carries is a valid checkpoint of the log,
    /// the same as `checkpoints.json`'s of that size.
    fn receipt_checkpoints(&mut self, log: &Log, seen: &ReceiptCheckpoints) {
        for ((checkpoint, ok), &line) in seen.list.iter().zip(&seen.first_line) {
            if !ok {
                continue;
            }
            let c = checkpoint.checkpoint();
            let at = format!("{} checkpoint", line_of(files::RECEIPTS, line));
            if self.hub.is_some_and(|hub| hub != c.signer)
                || self.origin.as_ref().is_some_and(|o| *o != c.origin)
            {
                continue;
            }
            match log.checkpoints.get(&c.tree_size) {
                Some(roots) if roots.iter().any(|(_, root)| *root == c.root) => {}
                Some(roots) => {
                    let first = roots.first().map(|(n, root)| (*n, *root));
                    if let Some((n, root)) = first {
                        self.find(
                            FindingKind::Fork,
                            at,
                            Some(&c.signer),
                            format!(
                                "the log forked: {}[{n}] and the checkpoint of this receipt are both signed by the hub for tree size {} with different roots {} and {}",
                                files::CHECKPOINTS,
                                c.tree_size,
                                hex::encode(root),
                                hex::encode(c.root)
                            ),
                        );
                    }
                }
                None => match log.tree.root_at(c.tree_size) {
                    Ok(root) if root == c.root => self.find(
                        FindingKind::MissingCheckpoint,
                        at,
                        Some(&c.signer),
                        format!(
                            "the receipt's checkpoint of tree size {} is not in {}",
                            c.tree_size,
                            files::CHECKPOINTS
                        ),
                    ),
                    _ => self.find(
                        FindingKind::CheckpointMismatch,
                        at,
                        Some(&c.signer),
                        format!(
                            "the hub signed root {} for tree size {} in a receipt, but the first {} leaves of the log make another root",
                            hex::encode(c.root),
                            c.tree_size,
                            c.tree_size
                        ),
                    ),
                },
            }
        }
    }

    /// Steps 3 and 4: receipts, the tree, checkpoints and proofs.
    pub(super) fn log(&mut self, releases: Releases) -> Log {
        let leaves_file = self.leaves_file;
        let Releases {
            leaves,
            verified,
            sums,
        } = releases;
        let (receipt_ids, receipt_checkpoints) = self.receipts(&leaves);
        if let Some(size) = self.log_size()
            && size != leaves.len() as u64
        {
            self.find(
                FindingKind::LogSizeMismatch,
                leaves_file,
                None,
                format!(
                    "{} holds {} releases, but {} says the bundle covers a log of {size}",
                    leaves_file,
                    leaves.len(),
                    files::MANIFEST
                ),
            );
        }
        // A line that could not be read stands for the release its verified receipt names, so
        // that one bad line is one finding and not a cascade of root mismatches.
        let unknown = ReleaseId::from_bytes([0; 32]);
        let tree = MerkleLog::from_leaf_hashes(leaves.iter().enumerate().map(|(n, leaf)| {
            let id = match leaf {
                Some(leaf) => leaf.id,
                None => receipt_ids.get(n).copied().flatten().unwrap_or(unknown),
            };
            contribution_leaf_hash(&id)
        }));
        let mut log = Log {
            leaves,
            tree,
            checkpoints: BTreeMap::new(),
            releases_verified: verified,
            sums,
            expected_cells: None,
        };
        self.checkpoints(&mut log);
        self.receipt_checkpoints(&log, &receipt_checkpoints);
        self.proofs(&log);
        log
    }

    /// Step 4: the checkpoints against the rebuilt tree.
    fn checkpoints(&mut self, log: &mut Log) {
        let leaves_file = self.leaves_file;
        let Some(bytes) = self.read(files::CHECKPOINTS, false) else {
            return;
        };
        let list: Vec<serde_json::Value> = match serde_json::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    files::CHECKPOINTS,
                    None,
                    format!("not a JSON array of signed checkpoints: {e}"),
                );
                return;
            }
        };
        let len = log.tree.len();
        for (n, value) in list.into_iter().enumerate() {
            let at = format!("{}[{n}]", files::CHECKPOINTS);
            let signed: SignedCheckpoint = match serde_json::from_value(value) {
                Ok(signed) => signed,
                Err(e) => {
                    self.find(
                        FindingKind::Malformed,
                        at,
                        None,
                        format!("not a signed checkpoint: {e}"),
                    );
                    continue;
                }
            };
            let c = signed.checkpoint();
            let signer = c.signer;
            let mut valid = true;
            if let Err(e) = signed.verify() {
                valid = false;
                self.find(
                    FindingKind::BadSignature,
                    format!("{at}.signature"),
                    Some(&signer),
                    format!("checkpoint of tree size {}: {e}", c.tree_size),
                );
            }
            if let Some(hub) = &self.hub
                && signer != *hub
            {
                valid = false;
                let hub = hex_key(hub);
                self.find(
                    FindingKind::WrongLog,
                    format!("{at}.signer"),
                    Some(&signer),
                    format!(
                        "the checkpoint of tree size {} is signed by {}, not by the hub {hub}",
                        c.tree_size,
                        hex_key(&signer)
                    ),
                );
            }
            if let Some(origin) = self.origin.clone()
                && c.origin != origin
            {
                valid = false;
                self.find(
                    FindingKind::WrongLog,
                    format!("{at}.origin"),
                    Some(&signer),
                    format!(
                        "the checkpoint of tree size {} is for log {:?}, not the hub's log {origin:?}",
                        c.tree_size, c.origin
                    ),
                );
            }
            if !valid {
                continue;
            }
            match log.tree.root_at(c.tree_size) {
                Ok(root) if root == c.root => {}
                Ok(root) => self.find(
                    FindingKind::CheckpointMismatch,
                    format!("{at}.root"),
                    Some(&signer),
                    format!(
                        "the hub signed root {} for tree size {}, but the first {} releases of {} make root {}",
                        hex::encode(c.root),
                        c.tree_size,
                        c.tree_size,
                        leaves_file,
                        hex::encode(root)
                    ),
                ),
                Err(_) => self.find(
                    FindingKind::CheckpointMismatch,
                    format!("{at}.tree_size"),
                    Some(&signer),
                    format!(
                        "the hub signed a checkpoint of tree size {}, but {} holds only {len} releases",
                        c.tree_size,
                        leaves_file
                    ),
                ),
            }
            let same_size = log.checkpoints.entry(c.tree_size).or_default();
            if let Some((first, root)) = same_size.iter().find(|(_, root)| *root != c.root) {
                let (first, root) = (*first, *root);
                same_size.push((n, c.root));
                self.find(
                    FindingKind::Fork,
                    at,
                    Some(&signer),
                    format!(
                        "the log forked: {}[{first}] and this checkpoint are both signed by the hub for tree size {} with different roots {} and {}",
                        files::CHECKPOINTS,
                        c.tree_size,
                        hex::encode(root),
                        hex::encode(c.root)
                    ),
                );
            } else {
                same_size.push((n, c.root));
            }
        }
        let covered = self.log_size().unwrap_or(len);
        // An empty log needs no checkpoint.
        if covered > 0 && !log.checkpoints.contains_key(&covered) {
            let hub = self.hub;
            self.find(
                FindingKind::MissingCheckpoint,
                files::CHECKPOINTS,
                hub.as_ref(),
                format!(
                    "no valid checkpoint signed by the hub covers the whole log of {covered} leaves"
                ),
            );
        }
    }

    /// Reads `proofs.json`, element by element if the whole does not parse, so that one bad
    /// proof is one finding.
    fn read_proofs(&mut self, bytes: Option<&[u8]>) -> Proofs {
        let Some(bytes) = bytes else {
            return Proofs::default();
        };
        let error = match serde_json::from_slice::<Proofs>(bytes) {
            Ok(proofs) => return proofs,
            Err(e) => e,
        };
        #[derive(Deserialize)]
        struct Loose {
            #[serde(default)]
            inclusion: Vec<serde_json::Value>,
            #[serde(default)]
            consistency: Vec<serde_json::Value>,
        }
        let Ok(loose) = serde_json::from_slice::<Loose>(bytes) else {
            self.find(
                FindingKind::Malformed,
                files::PROOFS,
                None,
                format!(
                    "not a JSON object {{\"inclusion\": [...], \"consistency\": [...]}}: {error}"
                ),
            );
            return Proofs::default();
        };
        let mut proofs = Proofs::default();
        for (n, value) in loose.inclusion.into_iter().enumerate() {
            match serde_json::from_value(value) {
                Ok(p) => proofs.inclusion.push(p),
                Err(e) => self.find(
                    FindingKind::Malformed,
                    format!("{} inclusion[{n}]", files::PROOFS),
                    None,
                    format!("not an inclusion proof {{\"index\", \"tree_size\", \"proof\"}}: {e}"),
                ),
            }
        }
        for (n, value) in loose.consistency.into_iter().enumerate() {
            match serde_json::from_value(value) {
                Ok(p) => proofs.consistency.push(p),
                Err(e) => self.find(
                    FindingKind::Malformed,
                    format!("{} consistency[{n}]", files::PROOFS),
                    None,
                    format!(
                        "not a consistency proof {{\"old_size\", \"new_size\", \"proof\"}}: {e}"
                    ),
                ),
            }
        }
        if proofs.inclusion.is_empty() && proofs.consistency.is_empty() {
            self.find(
                FindingKind::Malformed,
                files::PROOFS,
                None,
                error.to_string(),
            );
        }
        proofs
    }

    /// Step 4 (continued): consistency and inclusion proofs.
    fn proofs(&mut self, log: &Log) {
        let leaves_file = self.leaves_file;
        // Read borrowing the hashes' text from the file; anything else than a well-formed
        // `proofs.json` is read again element by element, to report each bad element.
        let bytes = self.read(files::PROOFS, false);
        let owned: Proofs;
        let proofs = match bytes
            .as_deref()
            .map(serde_json::from_slice::<ProofsView<'_>>)
        {
            Some(Ok(view)) => view,
            _ => {
                owned = self.read_proofs(bytes.as_deref());
                ProofsView::of(&owned)
            }
        };
        let root_of = |size: u64| {
            log.checkpoints
                .get(&size)
                .and_then(|v| v.first())
                .map(|(_, r)| *r)
        };

        let mut present: BTreeSet<(u64, u64)> = BTreeSet::new();
        for (n, p) in proofs.consistency.iter().enumerate() {
            let at = format!("{} consistency[{n}]", files::PROOFS);
            present.insert((p.old_size, p.new_size));
            let proof = match hashes(&p.proof) {
                Ok(proof) => proof,
                Err(e) => {
                    self.find(FindingKind::InconsistentCheckpoints, at, None, e);
                    continue;
                }
            };
            let (Some(old_root), Some(new_root)) = (root_of(p.old_size), root_of(p.new_size))
            else {
                let missing = if root_of(p.old_size).is_none() {
                    p.old_size
                } else {
                    p.new_size
                };
                self.find(
                    FindingKind::MissingCheckpoint,
                    at,
                    None,
                    format!(
                        "a consistency proof from tree size {} to {}, but {} has no valid checkpoint of size {missing}",
                        p.old_size,
                        p.new_size,
                        files::CHECKPOINTS
                    ),
                );
                continue;
            };
            if let Err(e) = verify_consistency(p.old_size, p.new_size, &old_root, &new_root, &proof)
            {
                self.find(
                    FindingKind::InconsistentCheckpoints,
                    at,
                    None,
                    format!(
                        "the checkpoints of tree sizes {} and {} are not shown consistent: {e}",
                        p.old_size, p.new_size
                    ),
                );
            }
        }
        let sizes: Vec<u64> = log.checkpoints.keys().copied().collect();
        for pair in sizes.windows(2) {
            if let [old, new] = pair
                && !present.contains(&(*old, *new))
            {
                self.find(
                    FindingKind::MissingConsistencyProof,
                    format!("{} consistency", files::PROOFS),
                    None,
                    format!(
                        "no consistency proof between the consecutive checkpoints of tree sizes {old} and {new}"
                    ),
                );
            }
        }

        let len = log.tree.len();
        let mut has_proof = vec![false; log.leaves.len()];
        let mut unsigned_sizes: BTreeMap<u64, usize> = BTreeMap::new();
        for (n, p) in proofs.inclusion.iter().enumerate() {
            let at = format!("{} inclusion[{n}]", files::PROOFS);
            let Some(leaf_hash) = log.tree.leaf_hash_at(p.index) else {
                self.find(
                    FindingKind::BadInclusionProof,
                    format!("{at}.index"),
                    None,
                    format!(
                        "an inclusion proof of leaf {}, beyond the {len} releases of {}",
                        p.index, leaves_file
                    ),
                );
                continue;
            };
            if let Some(slot) = usize::try_from(p.index)
                .ok()
                .and_then(|i| has_proof.get_mut(i))
            {
                *slot = true;
            }
            let proof = match hashes(&p.proof) {
                Ok(proof) => proof,
                Err(e) => {
                    self.find(
                        FindingKind::BadInclusionProof,
                        format!("{at}.proof"),
                        None,
                        e,
                    );
                    continue;
                }
            };
            let Some(root) = root_of(p.tree_size) else {
                *unsigned_sizes.entry(p.tree_size).or_default() += 1;
                continue;
            };
            if let Err(e) = verify_inclusion(&leaf_hash, p.index, p.tree_size, &proof, &root) {
                let position = usize::try_from(p.index).unwrap_or(usize::MAX);
                let release = match log.leaves.get(position).copied().flatten() {
                    Some(leaf) => format!("release {} of {}", leaf.id, hex_key(&leaf.signer)),
                    None => "an unreadable release".into(),
                };
                self.find(
                    FindingKind::BadInclusionProof,
                    at,
                    None,
                    format!(
                        "leaf {} ({}, {release}) is not shown in the checkpoint of tree size {}: {e}",
                        p.index,
                        line_of(leaves_file, position),
                        p.tree_size
                    ),
                );
            }
        }
        for (size, count) in unsigned_sizes {
            self.find(
                FindingKind::MissingCheckpoint,
                format!("{} inclusion", files::PROOFS),
                None,
                format!(
                    "{count} inclusion proof(s) are against tree size {size}, but {} has no valid checkpoint of that size",
                    files::CHECKPOINTS
                ),
            );
        }
        for (position, _) in has_proof.iter().enumerate().filter(|(_, has)| !**has) {
            self.find(
                FindingKind::MissingInclusionProof,
                format!("{} inclusion", files::PROOFS),
                None,
                format!(
                    "leaf {position} ({}) has no inclusion proof",
                    line_of(leaves_file, position)
                ),
            );
        }
    }
}
