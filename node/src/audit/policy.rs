//! Step 7 (hub bundles): the hub's policy adoption chain, `policy-adoptions.json` (present when
//! the hub had adopted a policy). Every adoption is re-verified from the genesis (committee
//! signatures over the sequence, the previous version and the policy hash, the quorum, the
//! version's validity), and every release of the log must name an adopted version in its
//! `params`. When a hub follows a version's grace period is a local fact (adoption records carry
//! no time), so a release naming any adopted version passes. National bundles carry the national
//! node's chain too (its leaves are aggregates: only the chain is checked). With a pinned genesis
//! (`maillage audit --genesis HASH`) the chain must start at it, and must be present.

use std::collections::HashSet;

use ed25519_dalek::VerifyingKey;
use maillage_policy::{AdoptedPolicy, AdoptionChain};
use maillage_protocol::Period;

use super::{Auditor, FindingKind, files};

/// What the policy step needs of one release: its position in `releases.jsonl` (0-based line
/// of the leaf), signer, period and the policy it names (`params`). Gathered by the log step.
#[derive(Debug, Clone)]
pub(super) struct ReleaseParams {
    pub position: usize,
    pub signer: VerifyingKey,
    pub period: Period,
    pub params: String,
}

impl Auditor {
    pub(super) fn policy_adoptions(&mut self) {
        let Some(bytes) = self.read(files::POLICY_ADOPTIONS, true) else {
            if let Some(genesis) = self.options.genesis {
                self.find(
                    FindingKind::BadPolicyAdoption,
                    files::POLICY_ADOPTIONS,
                    None,
                    format!(
                        "the bundle carries no adoption chain, while the audit pins the genesis policy {genesis}: its node followed no adopted policy"
                    ),
                );
            }
            return;
        };
        let entries: Vec<AdoptedPolicy> = match serde_json::from_slice(&bytes) {
            Ok(e) => e,
            Err(e) => {
                self.find(
                    FindingKind::Malformed,
                    files::POLICY_ADOPTIONS,
                    None,
                    format!("not an adoption chain (a JSON array of adopted versions): {e}"),
                );
                return;
            }
        };
        let verified = match self.options.genesis {
            Some(genesis) => AdoptionChain::verify_from(&genesis, entries),
            None => AdoptionChain::verify(entries),
        };
        let chain = match verified {
            Ok(chain) => chain,
            Err(e) => {
                self.find(
                    FindingKind::BadPolicyAdoption,
                    format!("{}[{}]", files::POLICY_ADOPTIONS, e.index),
                    None,
                    format!("the adoption chain does not verify: {e}"),
                );
                return;
            }
        };
        let adopted: HashSet<String> = chain.entries().iter().map(|e| e.hash().to_hex()).collect();
        let releases = std::mem::take(&mut self.release_params);
        for r in &releases {
            if !adopted.contains(&r.params) {
                self.find(
                    FindingKind::UnadoptedPolicy,
                    format!("{}:{}.params", self.leaves_file, r.position + 1),
                    Some(&r.signer),
                    format!(
                        "the release of {} for {} names the policy {:?}, which the hub's adoption chain ({} version(s), current {}) never adopted",
                        hex::encode(r.signer.as_bytes()),
                        r.period,
                        r.params,
                        chain.entries().len(),
                        chain.current().map(|c| c.hash().to_hex()).unwrap_or_default()
                    ),
                );
            }
        }
    }
}
