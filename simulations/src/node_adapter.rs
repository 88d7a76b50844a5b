//! The one place where the simulator calls `maillage-node`: hub nodes (sled store, Merkle log,
//! receipts, checkpoints, aggregates), audit bundles and the audit itself, and the node's
//! release parameters id.
//!
//! Everything the hub and the auditor detect comes from the node's own code called here; the
//! rest of the simulator sees only the small types of this module, so that a change of the
//! node's hub API touches this file alone.

use std::path::Path;

use ed25519_dalek::{SigningKey, VerifyingKey};
use maillage_node::config::Role;
use maillage_node::hub::{Hub, Refusal};
use maillage_node::members::{MEMBERS_FILE, Member};
use maillage_node::{InitOptions, Node};
use maillage_privacy::release::PrivacyParams;
use maillage_protocol::aggregate::AggregateCell;
use maillage_protocol::{Period, Release, SignedAggregate};

/// A member a hub admits.
#[derive(Debug, Clone)]
pub struct MemberInfo {
    /// Its key.
    pub key: VerifyingKey,
    /// Its name.
    pub name: String,
    /// Its commune.
    pub commune: String,
}

/// Why a hub refused a submission, as the node's [`Refusal`] says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// Undecodable or badly signed.
    Invalid,
    /// Signer not a member.
    NotMember,
    /// Another mechanism than the policy's.
    WrongMechanism,
    /// Over the period's budget.
    OverBudget,
    /// A second, different release for one period.
    Equivocation,
    /// Anything else the node may add.
    Other,
}

impl RefusalKind {
    /// Its name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotMember => "not_member",
            Self::WrongMechanism => "wrong_mechanism",
            Self::OverBudget => "over_budget",
            Self::Equivocation => "equivocation",
            Self::Other => "other",
        }
    }
}

/// What the hub answered to one submission.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `Ok((receipt wire bytes, whether it was new))` or the refusal.
    pub outcome: Result<(usize, bool), (RefusalKind, String)>,
}

/// One finding of an audit.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditFinding {
    /// The finding's kind (the node's `FindingKind` name).
    pub kind: String,
    /// Where.
    pub location: String,
    /// What.
    pub what: String,
    /// Who signed the offending document.
    pub signer: Option<String>,
}

/// The outcome of an audit of one hub's bundle.
#[derive(Debug, Clone)]
pub struct AuditOutcome {
    /// No findings.
    pub ok: bool,
    /// Releases whose signature verified.
    pub releases_verified: u64,
    /// The findings.
    pub findings: Vec<AuditFinding>,
    /// Total size of the bundle's files, in bytes (what an auditor downloads).
    pub bundle_bytes: u64,
}

/// A hub: a real node directory with its sled store.
#[derive(Debug)]
pub struct HubNode {
    node: Node,
}

impl HubNode {
    /// Creates a hub node in `dir` (new or empty) with its policy and its member list.
    pub fn create(
        dir: &Path,
        name: &str,
        seat: &str,
        params: &PrivacyParams,
        members: &[MemberInfo],
    ) -> anyhow::Result<HubNode> {
        let mut node = Node::init(
            dir,
            InitOptions {
                role: Role::Hub,
                name: name.to_owned(),
                code_insee: Some(seat.to_owned()),
                pivot: None,
            },
        )?;
        node.config.privacy = params.clone();
        // Written at once: `Members::add` rewrites the file per member (quadratic here).
        let list: Vec<Member> = members
            .iter()
            .map(|m| Member {
                key: hex::encode(m.key.as_bytes()),
                name: m.name.clone(),
                role: Role::Structure,
                code_insee: Some(m.commune.clone()),
            })
            .collect();
        std::fs::write(node.dir().join(MEMBERS_FILE), serde_json::to_vec(&list)?)?;
        // Fail now if the node cannot read what was written.
        Hub::open(&node)?;
        Ok(HubNode { node })
    }

    /// The hub's public key.
    pub fn public(&self) -> VerifyingKey {
        self.node.identity.public()
    }

    /// The hub's signing key (a cheating hub uses it to sign what it should not).
    pub fn signing_key(&self) -> &SigningKey {
        self.node.identity.signing_key()
    }

    /// Submits a batch of signed releases (wire bytes) at time `now`.
    pub fn submit(&self, batch: &[Vec<u8>], now: u64) -> anyhow::Result<Vec<Answer>> {
        let mut hub = Hub::open(&self.node)?;
        let outcomes = hub.accept_batch(batch, now)?;
        Ok(outcomes
            .into_iter()
            .map(|o| Answer {
                outcome: match o {
                    Ok(a) => Ok((a.receipt.to_bytes().len(), a.new)),
                    Err(r) => Err((refusal_kind(&r), r.to_string())),
                },
            })
            .collect())
    }

    /// Signs the aggregate of `period` over the log as it is, with its checkpoint; returns it
    /// and the checkpoint's wire size.
    pub fn aggregate(&self, period: Period, now: u64) -> anyhow::Result<(SignedAggregate, usize)> {
        let mut hub = Hub::open(&self.node)?;
        let aggregate = hub.aggregate(period, now)?;
        let checkpoint = hub.checkpoint(now)?;
        Ok((aggregate, checkpoint.to_bytes().len()))
    }

    /// Exports the audit bundle of `period` into `dir` (new or empty) with `aggregate` (the
    /// hub's own, or one it forged).
    pub fn export(
        &self,
        period: Period,
        aggregate: Option<&SignedAggregate>,
        dir: &Path,
        now: u64,
    ) -> anyhow::Result<()> {
        let hub = Hub::open(&self.node)?;
        maillage_node::bundle::export(
            &hub,
            period,
            aggregate.map(SignedAggregate::to_json_pretty),
            dir,
            now,
        )?;
        Ok(())
    }
}

/// What the national node answered to a hub aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NationalOutcome {
    /// Logged (`new`), or already logged; `revision` when it supersedes an earlier aggregate.
    Accepted {
        /// Whether it entered the log now.
        new: bool,
        /// Whether it names an aggregate it supersedes.
        revision: bool,
    },
    /// Refused, as the node's [`Refusal`] says.
    Refused(RefusalKind, String),
}

/// The national node: a real node with role `national` (sled store, log of hub aggregates,
/// revision chains, equivocation proofs, national aggregate).
#[derive(Debug)]
pub struct NationalNode {
    node: Node,
}

impl NationalNode {
    /// Creates the national node in `dir` (new or empty), admitting these hubs (key, name).
    pub fn create(dir: &Path, hubs: &[(VerifyingKey, String)]) -> anyhow::Result<NationalNode> {
        let node = Node::init(
            dir,
            InitOptions {
                role: Role::National,
                name: "National".to_owned(),
                code_insee: Some("75056".to_owned()),
                pivot: None,
            },
        )?;
        let list: Vec<Member> = hubs
            .iter()
            .map(|(key, name)| Member {
                key: hex::encode(key.as_bytes()),
                name: name.clone(),
                role: Role::Hub,
                code_insee: None,
            })
            .collect();
        std::fs::write(node.dir().join(MEMBERS_FILE), serde_json::to_vec(&list)?)?;
        Hub::open(&node)?;
        Ok(NationalNode { node })
    }

    /// Submits a hub's signed aggregate (wire bytes) at time `now`.
    pub fn submit(&self, bytes: &[u8], now: u64) -> anyhow::Result<NationalOutcome> {
        let signed = match SignedAggregate::decode(bytes) {
            Ok(signed) => signed,
            Err(e) => {
                return Ok(NationalOutcome::Refused(
                    RefusalKind::Invalid,
                    e.to_string(),
                ));
            }
        };
        let mut hub = Hub::open(&self.node)?;
        Ok(match hub.accept_aggregate(&signed, now)? {
            Ok(accepted) => NationalOutcome::Accepted {
                new: accepted.new,
                revision: signed.aggregate().supersedes.is_some(),
            },
            Err(r) => NationalOutcome::Refused(refusal_kind(&r), r.to_string()),
        })
    }

    /// Signs the national aggregate of `period` over the latest revision of each hub's
    /// aggregate in its log.
    pub fn aggregate(&self, period: Period, now: u64) -> anyhow::Result<SignedAggregate> {
        let mut hub = Hub::open(&self.node)?;
        Ok(hub.aggregate(period, now)?)
    }
}

/// Audits the bundle in `dir` with the node's auditor.
pub fn audit(dir: &Path) -> anyhow::Result<AuditOutcome> {
    let mut bundle_bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        bundle_bytes += entry?.metadata()?.len();
    }
    let report = maillage_node::audit::audit(dir);
    Ok(AuditOutcome {
        ok: report.ok,
        releases_verified: report.releases_verified,
        findings: report
            .findings
            .into_iter()
            .map(|f| AuditFinding {
                kind: f.kind.as_str().to_owned(),
                location: f.location,
                what: f.what,
                signer: f.signer,
            })
            .collect(),
        bundle_bytes,
    })
}

/// The release file of a bundle (a cheating hub edits it).
pub const BUNDLE_RELEASES: &str = "releases.jsonl";

fn refusal_kind(r: &Refusal) -> RefusalKind {
    match r {
        Refusal::Invalid(_) => RefusalKind::Invalid,
        Refusal::NotMember { .. } => RefusalKind::NotMember,
        Refusal::WrongMechanism { .. } => RefusalKind::WrongMechanism,
        Refusal::OverBudget { .. } => RefusalKind::OverBudget,
        Refusal::Equivocation { .. } => RefusalKind::Equivocation,
        _ => RefusalKind::Other,
    }
}

/// Sums releases cell by cell as a hub and an auditor do.
pub fn sum_releases<'r>(
    releases: impl IntoIterator<Item = &'r Release>,
) -> anyhow::Result<Vec<AggregateCell>> {
    Ok(maillage_node::hub::sum_cells(releases)?)
}

/// The `params` field a node writes for these parameters.
pub fn params_id(params: &PrivacyParams) -> String {
    maillage_node::release::params_id(params)
}
