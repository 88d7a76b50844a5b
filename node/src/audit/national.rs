//! The national node's bundle: its log holds hubs' signed aggregates (`contributions.jsonl`), its
//! aggregate sums them, and `hubs/<aggregate id>/` holds each summed hub's own bundle, audited
//! in turn, so that the chain runs from the national total to every release.

use std::collections::HashMap;
use std::path::Path;

use ed25519_dalek::{Signature, VerifyingKey};
use maillage_protocol::aggregate::SIGNING_DOMAIN as AGGREGATE_SIGNING_DOMAIN;
use maillage_protocol::{Level, Period, ReleaseId, SignedAggregate};
use sha2::{Digest, Sha256};

use super::log::{Leaf, Releases, for_each_line, line_of};
use super::{Auditor, BATCH, FindingKind, contributing_role, files, hex_key, verify_all};
use crate::bundle::{AggregateEquivocationLine, AggregateLine, HUBS_DIR};

/// A hub's revision chain for one period in the national log: (leaf, aggregate), head last.
type Chain = Vec<(usize, SignedAggregate)>;

/// Messages, signatures, keys and leaf positions waiting for one batch verification.
type Pending = (Vec<Vec<u8>>, Vec<Signature>, Vec<VerifyingKey>, Vec<usize>);

impl Auditor {
    /// Step 2 for a national bundle: every hub aggregate of `contributions.jsonl`. Its
    /// signature is verified (in batches), its level must be `hub`, its signer a member hub; no
    /// aggregate is logged twice and no hub has two for one period. The aggregates of
    /// `summed` (the national aggregate's period, below its checkpoint size) are kept, in log
    /// order, to recompute the national sums and to follow the chain to the hubs' bundles.
    pub(super) fn hub_aggregates(
        &mut self,
        summed: Option<(Period, u64)>,
    ) -> (Releases, Vec<(usize, SignedAggregate)>) {
        let role = contributing_role(Level::National);
        let mut out = Releases::default();
        let mut kept = Vec::new();
        let mut by_id: HashMap<ReleaseId, usize> = HashMap::new();
        // (hub, period) → its revision chain in log order: (leaf, aggregate), the head last.
        let mut chains: HashMap<([u8; 32], Period), Chain> = HashMap::new();
        let mut pending = Pending::default();
        let file = files::CONTRIBUTIONS;
        let flush = |auditor: &mut Auditor, pending: &mut Pending| -> u64 {
            let results = verify_all(&pending.0, &pending.1, &pending.2);
            let mut good = 0;
            for ((ok, key), position) in results.into_iter().zip(&pending.2).zip(&pending.3) {
                if ok {
                    good += 1;
                } else {
                    auditor.find(
                        FindingKind::BadSignature,
                        format!("{} aggregate.signature", line_of(file, *position)),
                        Some(key),
                        format!(
                            "the signature of the hub aggregate at leaf {position} does not verify with {}",
                            hex_key(key)
                        ),
                    );
                }
            }
            pending.0.clear();
            pending.1.clear();
            pending.2.clear();
            pending.3.clear();
            good
        };
        for_each_line(self, file, |auditor, position, line| {
            let at = line_of(file, position);
            let parsed: AggregateLine = match serde_json::from_slice(line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    auditor.find(
                        FindingKind::Malformed,
                        at,
                        None,
                        format!(
                            "leaf {position} is not a line {{\"index\": n, \"aggregate\": <signed hub aggregate>}}: {e}"
                        ),
                    );
                    out.leaves.push(None);
                    return;
                }
            };
            let signed = parsed.aggregate;
            let a = signed.aggregate();
            let signer = a.signer;
            let shown = hex_key(&signer);
            if parsed.index != position as u64 {
                auditor.find(
                    FindingKind::WrongIndex,
                    format!("{at} index"),
                    Some(&signer),
                    format!(
                        "the line says index {} but it is leaf {position} of the log (line {})",
                        parsed.index,
                        position + 1
                    ),
                );
            }
            let message = [
                AGGREGATE_SIGNING_DOMAIN,
                signed.canonical_aggregate().as_slice(),
            ]
            .concat();
            let id = ReleaseId::from_bytes(Sha256::digest(&message).into());
            let described = format!("hub aggregate {id} of {shown} for {}", a.period);
            if a.level != Level::Hub {
                auditor.find(
                    FindingKind::NotAMember,
                    format!("{at} aggregate.level"),
                    Some(&signer),
                    format!(
                        "{described} is of level {}; the national log holds hub aggregates only",
                        a.level
                    ),
                );
            }
            if auditor.members_read {
                match auditor.members.get(signer.as_bytes()) {
                    Some(found) if *found == role => {}
                    Some(found) => auditor.find(
                        FindingKind::NotAMember,
                        format!("{at} aggregate.signer"),
                        Some(&signer),
                        format!("{described}: the signer is a member with role {found}; only hubs contribute to the national log"),
                    ),
                    None => auditor.find(
                        FindingKind::NotAMember,
                        format!("{at} aggregate.signer"),
                        Some(&signer),
                        format!("{described}: the signer is not in members.json"),
                    ),
                }
            }
            if let Some(first) = by_id.get(&id) {
                auditor.find(
                    FindingKind::DuplicateRelease,
                    at.clone(),
                    Some(&signer),
                    format!("{described} is logged twice: at leaf {first} and leaf {position}"),
                );
            } else {
                by_id.insert(id, position);
                let chain = chains.entry((signer.to_bytes(), a.period)).or_default();
                auditor.revision(&at, &described, position, &signed, chain);
            }
            out.leaves.push(Some(Leaf {
                id,
                signer,
                period: a.period,
            }));
            pending.0.push(message);
            pending.1.push(*signed.signature());
            pending.2.push(signer);
            pending.3.push(position);
            if pending.0.len() >= BATCH {
                out.verified += flush(auditor, &mut pending);
            }
        });
        out.verified += flush(self, &mut pending);
        // What the national aggregate must sum: the latest revision of each hub's chain of the
        // period below its checkpoint size.
        if let Some((period, size)) = summed {
            for ((_, p), chain) in chains {
                if p != period {
                    continue;
                }
                if let Some((position, signed)) = chain
                    .into_iter()
                    .rfind(|(position, _)| (*position as u64) < size)
                {
                    kept.push((position, signed));
                }
            }
            kept.sort_by_key(|(position, _)| *position);
            self.summed_leaves = Some(kept.iter().map(|(position, _)| *position).collect());
        }
        (out, kept)
    }

    /// A hub aggregate of the national log against its hub's revision chain for its period so
    /// far (`chain`, in log order): the first of the chain names no predecessor; a later one
    /// must name the chain's head and extend its checkpoint (a revision, appended to `chain`).
    /// A second first aggregate, a second revision of one aggregate, or a "revision" that does
    /// not extend the head is an equivocation; one naming an aggregate that is not in the log
    /// breaks the chain.
    fn revision(
        &mut self,
        at: &str,
        described: &str,
        position: usize,
        signed: &SignedAggregate,
        chain: &mut Chain,
    ) {
        let signer = signed.aggregate().signer;
        let named = signed.supersedes_id();
        let Some((head_position, head)) = chain.last() else {
            if let Some(named) = named {
                self.find(
                    FindingKind::BadRevision,
                    format!("{at} aggregate.supersedes.id"),
                    Some(&signer),
                    format!(
                        "{described} supersedes {named}, but no earlier aggregate of this hub for the period is in the log: the revision chain is broken"
                    ),
                );
            }
            chain.push((position, signed.clone()));
            return;
        };
        let head_id = head.id();
        if named == Some(head_id) {
            match signed.check_revises(head) {
                Ok(()) => chain.push((position, signed.clone())),
                Err(e) => self.find(
                    FindingKind::Equivocation,
                    format!("{at} aggregate.supersedes"),
                    Some(&signer),
                    format!(
                        "{described} names the aggregate at leaf {head_position} as superseded but is not a revision of it: {e}"
                    ),
                ),
            }
            return;
        }
        let sibling = chain.iter().find(|(_, a)| a.supersedes_id() == named);
        match (named, sibling) {
            (_, Some((sibling_position, sibling))) => self.find(
                FindingKind::Equivocation,
                at.to_owned(),
                Some(&signer),
                format!(
                    "{described} and {} at leaf {sibling_position} both supersede {}: the hub forked its revision chain (signed two different aggregates for one period)",
                    sibling.id(),
                    named.map_or_else(|| "nothing".to_owned(), |n| n.to_string())
                ),
            ),
            (Some(named), None) => self.find(
                FindingKind::BadRevision,
                format!("{at} aggregate.supersedes.id"),
                Some(&signer),
                format!(
                    "{described} supersedes {named}, which is not the head {head_id} (leaf {head_position}) of its hub's revision chain"
                ),
            ),
            (None, None) => self.find(
                FindingKind::Equivocation,
                at.to_owned(),
                Some(&signer),
                format!(
                    "{described} names no superseded aggregate although {head_id} is logged at leaf {head_position}: two different aggregates for one period"
                ),
            ),
        }
    }

    /// Step 5 (national): `structures` of the national aggregate is the sum of the summed hub
    /// aggregates'.
    pub(super) fn national_structures(
        &mut self,
        national: &SignedAggregate,
        summed: &[(usize, SignedAggregate)],
    ) {
        let a = national.aggregate();
        let Some(stated) = a.structures else {
            return;
        };
        let expected: u64 = summed
            .iter()
            .map(|(_, s)| crate::hub::structures_of(s.aggregate()))
            .sum();
        if stated != expected {
            self.find(
                FindingKind::SumMismatch,
                format!("{} structures", files::AGGREGATE),
                Some(&a.signer),
                format!(
                    "the national aggregate states {stated} structures, but the {} hub aggregate(s) it sums cover {expected}",
                    summed.len()
                ),
            );
        }
    }

    /// Step 6 for a national bundle: the pairs of aggregates one hub signed for one period.
    pub(super) fn aggregate_equivocations(&mut self) {
        let file = files::EQUIVOCATIONS;
        let Some(bytes) = self.read(file, false) else {
            return;
        };
        let list: Vec<serde_json::Value> = match serde_json::from_slice(&bytes) {
            Ok(list) => list,
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    file,
                    None,
                    format!("not a JSON array of {{\"first\", \"second\"}} aggregate pairs: {e}"),
                );
                return;
            }
        };
        for (n, value) in list.into_iter().enumerate() {
            let at = format!("{file}[{n}]");
            let line: AggregateEquivocationLine = match serde_json::from_value(value) {
                Ok(line) => line,
                Err(e) => {
                    self.find(
                        FindingKind::InvalidEquivocationProof,
                        at,
                        None,
                        format!(
                            "not a pair {{\"first\", \"second\"}} of signed hub aggregates: {e}"
                        ),
                    );
                    continue;
                }
            };
            let (a, b) = (line.first.aggregate(), line.second.aggregate());
            let signer = a.signer;
            let problem = if let Err(e) = line.first.verify() {
                Some(format!("first: {e}"))
            } else if let Err(e) = line.second.verify() {
                Some(format!("second: {e}"))
            } else if a.signer != b.signer {
                Some("the two aggregates have different signers".to_owned())
            } else if a.period != b.period {
                Some(format!(
                    "the two aggregates are for {} and {}",
                    a.period, b.period
                ))
            } else if a.level != Level::Hub || b.level != Level::Hub {
                Some("the aggregates are not hub aggregates".to_owned())
            } else {
                maillage_protocol::aggregate::conflict(&line.first, &line.second).err()
            };
            match problem {
                None => self.find(
                    FindingKind::Equivocation,
                    at,
                    Some(&signer),
                    format!(
                        "hub {} signed two different aggregates for {}: {} and {}",
                        hex_key(&signer),
                        a.period,
                        line.first.id(),
                        line.second.id()
                    ),
                ),
                Some(problem) => self.find(
                    FindingKind::InvalidEquivocationProof,
                    at,
                    Some(&signer),
                    format!("the pair does not prove an equivocation: {problem}"),
                ),
            }
        }
    }

    /// Step 7 for a national bundle: each summed hub aggregate's own bundle, in
    /// `hubs/<aggregate id>/`, audited as a hub bundle (its findings are reported with that
    /// prefix), whose aggregate must be exactly the one the national log holds. Returns the
    /// releases verified in them.
    pub(super) fn hub_bundles(&mut self, summed: &[(usize, SignedAggregate)]) -> u64 {
        let mut verified = 0;
        for (position, logged) in summed {
            let id = logged.id();
            let name = id.to_string();
            let dir = self.dir.join(HUBS_DIR).join(&name);
            let location = format!("{HUBS_DIR}/{name}");
            let signer = logged.aggregate().signer;
            if !dir.is_dir() {
                self.find(
                    FindingKind::MissingHubBundle,
                    location,
                    Some(&signer),
                    format!(
                        "the hub aggregate {id} of {} at leaf {position} ({}) is summed, but its hub bundle is not in the national bundle: the chain to its releases is broken",
                        hex_key(&signer),
                        line_of(files::CONTRIBUTIONS, *position)
                    ),
                );
                continue;
            }
            let report = audit_hub_bundle(&dir, &self.options);
            verified += report.releases_verified;
            for mut finding in report.findings {
                finding.location = format!("{location}/{}", finding.location);
                self.findings.push(finding);
            }
            let text = std::fs::read_to_string(dir.join(files::AGGREGATE));
            let theirs = text
                .map_err(|e| e.to_string())
                .and_then(|t| SignedAggregate::from_json(&t).map_err(|e| e.to_string()));
            match theirs {
                Ok(theirs) if theirs.id() == id => {}
                Ok(theirs) => self.find(
                    FindingKind::ChainMismatch,
                    format!("{location}/{}", files::AGGREGATE),
                    Some(&theirs.aggregate().signer),
                    format!(
                        "the hub bundle's aggregate is {}, not the aggregate {id} the national log holds at leaf {position}",
                        theirs.id()
                    ),
                ),
                Err(e) => self.find(
                    FindingKind::ChainMismatch,
                    format!("{location}/{}", files::AGGREGATE),
                    Some(&signer),
                    format!("the hub bundle has no readable aggregate to match the logged aggregate {id}: {e}"),
                ),
            }
        }
        verified
    }
}

/// Audits a hub bundle inside a national one (never a national bundle: the chain has two
/// levels).
fn audit_hub_bundle(dir: &Path, options: &super::AuditOptions) -> super::AuditReport {
    let mut report = super::audit_with(dir, options);
    if report.national {
        report.ok = false;
        report.findings.push(super::Finding {
            kind: FindingKind::ChainMismatch,
            what: "a national bundle where a hub bundle is expected".into(),
            location: files::MANIFEST.into(),
            signer: None,
        });
    }
    report
}
