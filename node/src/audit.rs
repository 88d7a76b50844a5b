//! Auditing a bundle (`maillage audit <dir>`): every check an auditor makes on one period of a
//! hub, offline, trusting nothing in the bundle but the hub's key and the member list it names.
//!
//! [`audit`] reads a directory written by [`crate::bundle::export`] and answers an
//! [`AuditReport`]: a list of [`Finding`]s, each naming what is wrong, where (file, line or
//! array position, field) and which key signed the offending document. It never stops at the
//! first problem and never panics: a missing, unreadable or malformed file is itself a finding,
//! and the checks that do not need it still run.
//!
//! What is checked, in this order:
//! 1. `manifest.json`: its format, the hub key, the log's origin (which must be the hub's
//!    contributions log), the policy. `members.json`: valid, distinct keys.
//! 2. `releases.jsonl`: every line parses; its `index` is its position; its signature verifies
//!    (batches of [`BATCH`] with `ed25519_dalek::verify_batch`; a failed batch is halved until
//!    the bad signatures are found, see `verify_all`); its signer is a member with the contributing role (structures for a hub, hubs for
//!    the national node); its mechanism is the policy's and its privacy loss within the budget;
//!    no release is logged twice and no member has two different releases for one period
//!    (equivocation). The number of lines is the manifest's `log_size`.
//! 3. `receipts.jsonl`: one per leaf, each signed by the hub for the hub's log, naming the
//!    release at its index and a checkpoint size within the log.
//! 4. The Merkle tree rebuilt from the releases' ids: each checkpoint of `checkpoints.json` is
//!    signed by the hub for its log and has the rebuilt root at its size; two checkpoints of one
//!    size with different roots are a fork; one checkpoint covers the whole log. `proofs.json`:
//!    each consistency proof verifies and every pair of consecutive checkpoints has one; each
//!    inclusion proof verifies against the checkpoint of its size and every leaf has one.
//! 5. `aggregate.json`, if present: signed by the hub, of the manifest's period, naming a
//!    checkpoint of the bundle, summing exactly the period's leaves below that checkpoint's size
//!    (an omitted, extra or wrong contribution is named by index and id), each cell's sum,
//!    variance and interval equal to what `maillage_privacy::accuracy::combine` gives over the
//!    releases in log order (compared exactly: same code, same order, same floats), and the
//!    coverage lists equal to the summed signers and the members who did not contribute.
//! 6. `equivocations.json`: each pair that proves an equivocation is reported as one (the member
//!    cheated, the hub did its job); a pair that proves nothing is an invalid proof.
//!
//! The contributing role is that of the aggregate's level when there is an aggregate; without
//! one, a bundle whose members are all hubs is taken as the national node's.
//!
//! # National bundles
//!
//! A bundle whose manifest says `"level": "national"` is the national node's: its log's leaves
//! are hubs' signed aggregates (`contributions.jsonl`, each verified, of level `hub`, signed by
//! a member hub, one per hub and period), its receipts, checkpoints and proofs are checked as
//! above, and its aggregate must sum exactly the period's hub aggregates below its checkpoint:
//! each cell's sum is the sum of their sums, its variance the sum of their variances, its
//! interval [`crate::hub::ci95_of_variance`] of that variance (the same code the national node
//! signs with). Then the chain: each summed hub aggregate's own bundle must be in
//! `hubs/<aggregate id>/`, is audited as a hub bundle (its findings are reported under that
//! prefix), and its aggregate must be exactly the one the national log holds — so the audit
//! verifies national total = sum of hub aggregates, each hub aggregate = sum of its releases,
//! and every signature and proof on the way.

mod aggregate;
mod log;
mod national;
mod policy;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, VerifyingKey};
use maillage_protocol::checkpoint::contributions_origin;
use maillage_protocol::{Level, Period, SignedAggregate};
use serde::{Deserialize, Serialize};

use crate::bundle::{FORMAT, Manifest};
use crate::config::Role;
use crate::members::{Member, parse_key};

/// How many signatures are verified in one `verify_batch` call.
pub const BATCH: usize = 4096;

/// At most this many findings of one kind are listed; the rest are counted in one last finding
/// of that kind, so that a bundle with one shifted line does not produce a report of 20,000
/// lines saying the same thing.
pub const MAX_FINDINGS_PER_KIND: usize = 100;

/// The file names of a bundle.
pub(crate) mod files {
    pub const MANIFEST: &str = "manifest.json";
    pub const MEMBERS: &str = "members.json";
    pub const RELEASES: &str = "releases.jsonl";
    pub const RECEIPTS: &str = "receipts.jsonl";
    pub const CHECKPOINTS: &str = "checkpoints.json";
    pub const PROOFS: &str = "proofs.json";
    pub const AGGREGATE: &str = "aggregate.json";
    pub const EQUIVOCATIONS: &str = "equivocations.json";
    pub const CONTRIBUTIONS: &str = "contributions.jsonl";
    pub const POLICY_ADOPTIONS: &str = "policy-adoptions.json";
}

/// What kind of problem a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// A file is missing or cannot be read.
    Unreadable,
    /// A document or line is not valid JSON of the expected shape, or not a valid value.
    Malformed,
    /// The manifest's format, hub key, origin or policy is wrong.
    InvalidManifest,
    /// A member entry has an invalid or repeated key.
    InvalidMember,
    /// The number of releases is not the manifest's log size.
    LogSizeMismatch,
    /// A signature does not verify.
    BadSignature,
    /// A release line's `index` is not its position.
    WrongIndex,
    /// A release is signed by a key that is not a member with the contributing role.
    NotAMember,
    /// A release uses another mechanism than the policy.
    WrongMechanism,
    /// A release spends more than the policy's budget.
    OverBudget,
    /// The same release is logged twice.
    DuplicateRelease,
    /// A member signed two different releases for one period.
    Equivocation,
    /// A checkpoint, receipt or aggregate is not the hub's, or not about the hub's log.
    WrongLog,
    /// A checkpoint's root is not the root of the releases at its size.
    CheckpointMismatch,
    /// No signed checkpoint where one is needed (the whole log, a proof's tree size).
    MissingCheckpoint,
    /// Two signed checkpoints of one size with different roots.
    Fork,
    /// A consistency proof does not verify.
    InconsistentCheckpoints,
    /// Two consecutive checkpoints without a consistency proof.
    MissingConsistencyProof,
    /// An inclusion proof does not verify.
    BadInclusionProof,
    /// A leaf without an inclusion proof.
    MissingInclusionProof,
    /// A receipt that does not name the release at its index, or promises beyond the log.
    ReceiptMismatch,
    /// A leaf without a receipt.
    MissingReceipt,
    /// The aggregate is for another period than the manifest's.
    WrongPeriod,
    /// The aggregate names a checkpoint that is not in the bundle.
    UnknownCheckpoint,
    /// A release of the period is left out of the aggregate.
    OmittedContribution,
    /// The aggregate lists a contribution that is not a leaf of the period, or lists it twice.
    ExtraContribution,
    /// An aggregate cell differs from the sum of the releases.
    SumMismatch,
    /// The aggregate's lists of contributing and missing members are wrong.
    CoverageMismatch,
    /// An entry of `equivocations.json` does not prove an equivocation.
    InvalidEquivocationProof,
    /// A hub aggregate in the national log supersedes an aggregate that is not the head of its
    /// hub's revision chain for the period (or is not in the log at all).
    BadRevision,
    /// A national bundle lacks the bundle of a hub aggregate it sums.
    MissingHubBundle,
    /// A hub bundle inside a national bundle is not the one of the aggregate the national log
    /// holds.
    ChainMismatch,
    /// `policy-adoptions.json` is not a valid adoption chain (an altered policy, a signature
    /// that does not verify, a quorum not reached).
    BadPolicyAdoption,
    /// A release names a policy that the bundle's adoption chain never adopted.
    UnadoptedPolicy,
}

impl FindingKind {
    /// The name in reports: the serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::Malformed => "malformed",
            Self::InvalidManifest => "invalid_manifest",
            Self::InvalidMember => "invalid_member",
            Self::LogSizeMismatch => "log_size_mismatch",
            Self::BadSignature => "bad_signature",
            Self::WrongIndex => "wrong_index",
            Self::NotAMember => "not_a_member",
            Self::WrongMechanism => "wrong_mechanism",
            Self::OverBudget => "over_budget",
            Self::DuplicateRelease => "duplicate_release",
            Self::Equivocation => "equivocation",
            Self::WrongLog => "wrong_log",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::MissingCheckpoint => "missing_checkpoint",
            Self::Fork => "fork",
            Self::InconsistentCheckpoints => "inconsistent_checkpoints",
            Self::MissingConsistencyProof => "missing_consistency_proof",
            Self::BadInclusionProof => "bad_inclusion_proof",
            Self::MissingInclusionProof => "missing_inclusion_proof",
            Self::ReceiptMismatch => "receipt_mismatch",
            Self::MissingReceipt => "missing_receipt",
            Self::WrongPeriod => "wrong_period",
            Self::UnknownCheckpoint => "unknown_checkpoint",
            Self::OmittedContribution => "omitted_contribution",
            Self::ExtraContribution => "extra_contribution",
            Self::SumMismatch => "sum_mismatch",
            Self::CoverageMismatch => "coverage_mismatch",
            Self::InvalidEquivocationProof => "invalid_equivocation_proof",
            Self::BadRevision => "bad_revision",
            Self::MissingHubBundle => "missing_hub_bundle",
            Self::ChainMismatch => "chain_mismatch",
            Self::BadPolicyAdoption => "bad_policy_adoption",
            Self::UnadoptedPolicy => "unadopted_policy",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found in a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// What kind of problem.
    pub kind: FindingKind,
    /// What is wrong, with the values involved.
    pub what: String,
    /// Where: the file, then a 1-based line (`releases.jsonl:17`) or an array position
    /// (`checkpoints.json[3]`), then the field (`cells[4].sum`) when there is one.
    pub location: String,
    /// The key (hex) that signed the offending document, when there is one.
    pub signer: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}: {}", self.kind, self.location, self.what)?;
        if let Some(signer) = &self.signer {
            write!(f, " (signed by {signer})")?;
        }
        Ok(())
    }
}

/// The outcome of an audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// `true` if and only if there are no findings.
    pub ok: bool,
    /// Release lines whose signature verified.
    pub releases_verified: u64,
    /// Whether the bundle had an aggregate that could be read and was checked.
    pub aggregate_checked: bool,
    /// Whether it was a national bundle (its releases are counted in its hub bundles).
    #[serde(default)]
    pub national: bool,
    /// Every problem found.
    pub findings: Vec<Finding>,
}

impl fmt::Display for AuditReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        let aggregate = if self.aggregate_checked {
            "aggregate checked"
        } else {
            "no aggregate checked"
        };
        if self.ok {
            write!(
                f,
                "audit passed: {} releases verified, {aggregate}",
                self.releases_verified
            )
        } else {
            write!(
                f,
                "audit FAILED: {} finding(s), {} releases verified, {aggregate}",
                self.findings.len(),
                self.releases_verified
            )
        }
    }
}

/// What the auditor knows besides the bundle.
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// The genesis policy hash of the network (`maillage audit --genesis`): the bundle's
    /// adoption chain must start there (finding `bad_policy_adoption` otherwise, or when the
    /// bundle has no chain).
    pub genesis: Option<maillage_policy::PolicyHash>,
}

/// Audits the bundle in `bundle_dir` (see the module documentation). Never panics.
pub fn audit(bundle_dir: &Path) -> AuditReport {
    audit_with(bundle_dir, &AuditOptions::default())
}

/// Audits the bundle in `bundle_dir` with `options`. Never panics.
pub fn audit_with(bundle_dir: &Path, options: &AuditOptions) -> AuditReport {
    let mut auditor = Auditor::new(bundle_dir);
    auditor.options = options.clone();
    auditor.manifest();
    auditor.members();
    let aggregate = auditor.read_aggregate();
    let summed = aggregate.as_ref().map(|a| {
        let a = a.aggregate();
        (a.period, a.checkpoint_size)
    });
    let national = auditor.national;
    let (releases, hub_aggregates) = if national {
        auditor.hub_aggregates(summed)
    } else {
        (auditor.releases(summed), Vec::new())
    };
    let signers: HashSet<[u8; 32]> = releases
        .leaves
        .iter()
        .flatten()
        .map(|leaf| leaf.signer.to_bytes())
        .collect();
    auditor.check_member_keys(&signers);
    let mut log = auditor.log(releases);
    if national {
        log.expected_cells = Some(crate::hub::sum_aggregate_cells(
            hub_aggregates.iter().map(|(_, a)| a.aggregate()),
        ));
    }
    let aggregate_checked = match &aggregate {
        Some(signed) => {
            auditor.aggregate(signed, &log);
            if national {
                auditor.national_structures(signed, &hub_aggregates);
            }
            true
        }
        None => false,
    };
    let mut releases_verified = log.releases_verified;
    if national {
        auditor.aggregate_equivocations();
        auditor.policy_adoptions();
        releases_verified += auditor.hub_bundles(&hub_aggregates);
    } else {
        auditor.equivocations();
        auditor.policy_adoptions();
    }
    let findings = auditor.findings.finish();
    AuditReport {
        ok: findings.is_empty(),
        releases_verified,
        aggregate_checked,
        national,
        findings,
    }
}

/// Collects findings, keeping at most [`MAX_FINDINGS_PER_KIND`] of each kind.
#[derive(Debug, Default)]
struct Findings {
    list: Vec<Finding>,
    per_kind: HashMap<FindingKind, usize>,
}

impl Findings {
    fn push(&mut self, finding: Finding) {
        let count = self.per_kind.entry(finding.kind).or_default();
        *count += 1;
        if *count <= MAX_FINDINGS_PER_KIND {
            self.list.push(finding);
        }
    }

    fn finish(mut self) -> Vec<Finding> {
        let mut over: Vec<(FindingKind, usize)> = self
            .per_kind
            .into_iter()
            .filter(|(_, n)| *n > MAX_FINDINGS_PER_KIND)
            .collect();
        over.sort();
        for (kind, n) in over {
            self.list.push(Finding {
                kind,
                what: format!(
                    "{} more findings of kind {kind} are not listed ({n} in all)",
                    n - MAX_FINDINGS_PER_KIND
                ),
                location: "(several)".into(),
                signer: None,
            });
        }
        self.list
    }
}

/// The role that contributes to the audited log.
fn contributing_role(level: Level) -> Role {
    match level {
        Level::Hub => Role::Structure,
        Level::National => Role::Hub,
    }
}

fn hex_key(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// The bundle's trust anchors and what every step shares.
#[derive(Debug)]
struct Auditor {
    dir: PathBuf,
    /// What the caller pinned (the genesis policy).
    options: AuditOptions,
    findings: Findings,
    /// The manifest's hub key, if valid.
    hub: Option<VerifyingKey>,
    /// The hub's contributions log origin (from the hub key).
    origin: Option<String>,
    /// The manifest, if it parsed.
    manifest: Option<Manifest>,
    /// Valid member keys and roles.
    members: HashMap<[u8; 32], Role>,
    /// Member keys (not yet checked to be curve points) and roles, in file order, with their
    /// position in `members.json`.
    member_keys: Vec<([u8; 32], Role, usize)>,
    /// Whether `members.json` could be read (membership is not checked otherwise).
    members_read: bool,
    /// Who may contribute: structures for a hub, hubs for the national node.
    level: Level,
    /// Whether the manifest says this is the national node's bundle.
    national: bool,
    /// The file of the log's leaves: `releases.jsonl`, or `contributions.jsonl` (national).
    leaves_file: &'static str,
    /// National bundles: the leaves the national aggregate must sum (each hub's latest
    /// revision below its checkpoint size); `None` for a hub (every leaf of the period).
    summed_leaves: Option<std::collections::BTreeSet<usize>>,
    /// The policy each release names, gathered while the log step reads `releases.jsonl`
    /// (so the policy step does not parse every release a second time).
    release_params: Vec<policy::ReleaseParams>,
}

impl Auditor {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            options: AuditOptions::default(),
            findings: Findings::default(),
            hub: None,
            origin: None,
            manifest: None,
            members: HashMap::new(),
            member_keys: Vec::new(),
            members_read: false,
            level: Level::Hub,
            national: false,
            leaves_file: files::RELEASES,
            summed_leaves: None,
            release_params: Vec::new(),
        }
    }

    fn find(
        &mut self,
        kind: FindingKind,
        location: impl Into<String>,
        signer: Option<&VerifyingKey>,
        what: impl Into<String>,
    ) {
        self.findings.push(Finding {
            kind,
            what: what.into(),
            location: location.into(),
            signer: signer.map(hex_key),
        });
    }

    /// Reads a whole file; a missing or unreadable file is a finding (unless `optional` and
    /// absent, which is `None` without a finding).
    fn read(&mut self, name: &str, optional: bool) -> Option<Vec<u8>> {
        let path = self.dir.join(name);
        let read = std::fs::File::open(&path).and_then(|mut f| {
            let mut bytes = Vec::new();
            f.read_to_end(&mut bytes).map(|_| bytes)
        });
        match read {
            Ok(bytes) => Some(bytes),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                let shown = path.display().to_string();
                self.find(
                    FindingKind::Unreadable,
                    name,
                    None,
                    format!("cannot read {shown}: {e}; every bundle has this file"),
                );
                None
            }
        }
    }

    /// Step 1: the manifest.
    fn manifest(&mut self) {
        let Some(bytes) = self.read(files::MANIFEST, false) else {
            return;
        };
        let manifest: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    files::MANIFEST,
                    None,
                    format!("not a bundle manifest: {e}"),
                );
                return;
            }
        };
        let at = |field: &str| format!("{} {field}", files::MANIFEST);
        if manifest.format != FORMAT {
            self.find(
                FindingKind::InvalidManifest,
                at("format"),
                None,
                format!(
                    "format {:?} is not supported: this auditor reads {FORMAT:?}",
                    manifest.format
                ),
            );
        }
        match parse_key(&manifest.hub) {
            Ok(hub) => {
                let origin = contributions_origin(&hub);
                if manifest.origin != origin {
                    self.find(
                        FindingKind::InvalidManifest,
                        at("origin"),
                        None,
                        format!(
                            "origin {:?} is not the hub's contributions log {origin:?}",
                            manifest.origin
                        ),
                    );
                }
                self.hub = Some(hub);
                self.origin = Some(origin);
            }
            Err(e) => self.find(FindingKind::InvalidManifest, at("hub"), None, e.to_string()),
        }
        if !matches!(manifest.policy.mechanism.as_str(), "laplace" | "gaussian") {
            self.find(
                FindingKind::InvalidManifest,
                at("policy.mechanism"),
                None,
                format!(
                    "mechanism {:?} is unknown: expected \"laplace\" or \"gaussian\"",
                    manifest.policy.mechanism
                ),
            );
        }
        let budget = manifest.policy.budget;
        if !(budget.is_finite() && budget > 0.0) {
            self.find(
                FindingKind::InvalidManifest,
                at("policy.budget"),
                None,
                format!("budget {budget} is not a finite number above 0"),
            );
        }
        match manifest.level.as_deref() {
            None => {}
            Some("national") => {
                self.national = true;
                self.level = Level::National;
                self.leaves_file = files::CONTRIBUTIONS;
            }
            Some(other) => self.find(
                FindingKind::InvalidManifest,
                at("level"),
                None,
                format!("level {other:?} is unknown: expected \"national\" or no level (a hub)"),
            ),
        }
        self.manifest = Some(manifest);
    }

    /// Step 1 (continued): the member list.
    fn members(&mut self) {
        let Some(bytes) = self.read(files::MEMBERS, false) else {
            return;
        };
        let list: Vec<serde_json::Value> = match serde_json::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    files::MEMBERS,
                    None,
                    format!("not a JSON array of members: {e}"),
                );
                return;
            }
        };
        self.members_read = true;
        for (n, value) in list.into_iter().enumerate() {
            let location = format!("{}[{n}]", files::MEMBERS);
            let member: Member = match serde_json::from_value(value) {
                Ok(m) => m,
                Err(e) => {
                    self.find(
                        FindingKind::Malformed,
                        location,
                        None,
                        format!("not a member ({e}); expected {{\"key\", \"name\", \"role\"}}"),
                    );
                    continue;
                }
            };
            // Whether the key is a curve point is checked after the releases are read
            // (`check_member_keys`): most members sign a release, whose key is checked then.
            let mut key = [0u8; 32];
            if hex::decode_to_slice(member.key.trim(), &mut key).is_err() {
                self.find(
                    FindingKind::InvalidMember,
                    format!("{location}.key"),
                    None,
                    format!(
                        "member key {:?} is not an ed25519 public key: expected 64 hexadecimal characters",
                        member.key
                    ),
                );
            } else if let std::collections::hash_map::Entry::Vacant(slot) = self.members.entry(key)
            {
                slot.insert(member.role);
                self.member_keys.push((key, member.role, n));
            } else {
                self.find(
                    FindingKind::InvalidMember,
                    format!("{location}.key"),
                    None,
                    format!("member key {} is listed twice", hex::encode(key)),
                );
            }
        }
        if !self.member_keys.is_empty()
            && self
                .member_keys
                .iter()
                .all(|(_, r, _)| *r != Role::Structure)
        {
            self.level = Level::National;
        }
    }

    /// Checks that every member key is a curve point; `signers` are keys already checked (those
    /// of the releases read).
    fn check_member_keys(&mut self, signers: &HashSet<[u8; 32]>) {
        let unchecked: Vec<([u8; 32], usize)> = self
            .member_keys
            .iter()
            .filter(|(key, ..)| !signers.contains(key))
            .map(|(key, _, n)| (*key, *n))
            .collect();
        for (key, n) in unchecked {
            if let Err(e) = parse_key(&hex::encode(key)) {
                self.find(
                    FindingKind::InvalidMember,
                    format!("{}[{n}].key", files::MEMBERS),
                    None,
                    e.to_string(),
                );
            }
        }
    }

    /// Reads `aggregate.json` without judging it yet (its period and checkpoint size tell which
    /// releases to sum while they are read). A malformed aggregate is a finding now.
    fn read_aggregate(&mut self) -> Option<SignedAggregate> {
        let bytes = self.read(files::AGGREGATE, true)?;
        let text = match std::str::from_utf8(&bytes) {
            Ok(text) => text,
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    files::AGGREGATE,
                    None,
                    format!("not UTF-8 text: {e}"),
                );
                return None;
            }
        };
        match SignedAggregate::from_json(text) {
            Ok(signed) => {
                self.level = signed.aggregate().level;
                Some(signed)
            }
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    files::AGGREGATE,
                    None,
                    format!("not a signed aggregate: {e}"),
                );
                None
            }
        }
    }

    /// The manifest's period, if it parsed.
    fn period(&self) -> Option<Period> {
        self.manifest.as_ref().map(|m| m.period)
    }

    /// The manifest's log size, if it parsed.
    fn log_size(&self) -> Option<u64> {
        self.manifest.as_ref().map(|m| m.log_size)
    }
}

/// Verifies signatures with `ed25519_dalek::verify_batch`; when a batch fails, its halves are
/// verified in turn, down to single signatures checked with `verify_strict`, so that `k` bad
/// signatures among `n` cost about `k·log(n)` batches. Returns which verified.
///
/// A batch checks the same equation as `verify_strict` but not that the signature's `R` has
/// large order: a signature with a small-order `R` (which only the key's owner can make, and
/// which names the same release id) may be accepted when its batch passes.
pub(crate) fn verify_all<M: AsRef<[u8]>>(
    messages: &[M],
    signatures: &[Signature],
    keys: &[VerifyingKey],
) -> Vec<bool> {
    let n = messages.len().min(signatures.len()).min(keys.len());
    let mut verified = vec![false; n];
    bisect(messages, signatures, keys, 0, n, &mut verified);
    verified
}

/// Below this many signatures, a failed batch is checked one by one.
const ONE_BY_ONE: usize = 4;

fn bisect<M: AsRef<[u8]>>(
    messages: &[M],
    signatures: &[Signature],
    keys: &[VerifyingKey],
    start: usize,
    end: usize,
    verified: &mut [bool],
) {
    let (Some(m), Some(s), Some(k)) = (
        messages.get(start..end),
        signatures.get(start..end),
        keys.get(start..end),
    ) else {
        return;
    };
    if m.is_empty() {
        return;
    }
    if m.len() <= ONE_BY_ONE {
        for (i, ((message, signature), key)) in m.iter().zip(s).zip(k).enumerate() {
            if let Some(slot) = verified.get_mut(start + i) {
                *slot = key.verify_strict(message.as_ref(), signature).is_ok();
            }
        }
        return;
    }
    let refs: Vec<&[u8]> = m.iter().map(AsRef::as_ref).collect();
    if ed25519_dalek::verify_batch(&refs, s, k).is_ok() {
        if let Some(slots) = verified.get_mut(start..end) {
            slots.fill(true);
        }
        return;
    }
    let middle = start + m.len() / 2;
    bisect(messages, signatures, keys, start, middle, verified);
    bisect(messages, signatures, keys, middle, end, verified);
}
