//! Steps 5 and 6 of an audit: the hub's aggregate against the releases it sums, and the
//! equivocation proofs the hub kept.

use std::collections::{BTreeMap, BTreeSet};

use maillage_privacy::accuracy::{Estimate, combine};
use maillage_protocol::{EquivocationProof, SignedAggregate};

use super::log::{Catalogue, CellKey, Log, line_of};
use super::{Auditor, FindingKind, contributing_role, files, hex_key};
use crate::bundle::EquivocationLine;

/// `accompagnements/individuel`, or `beneficiaires` for a cell without category.
fn cell_name(indicator: impl std::fmt::Display, category: Option<&str>) -> String {
    match category {
        Some(c) => format!("{indicator}/{c}"),
        None => indicator.to_string(),
    }
}

impl Auditor {
    /// Step 5: the aggregate.
    pub(super) fn aggregate(&mut self, signed: &SignedAggregate, log: &Log) {
        let a = signed.aggregate();
        let signer = a.signer;
        let file = files::AGGREGATE;
        let at = |field: &str| format!("{file} {field}");

        if let Err(e) = signed.verify() {
            self.find(
                FindingKind::BadSignature,
                at("signature"),
                Some(&signer),
                e.to_string(),
            );
        }
        if let Some(hub) = self.hub
            && signer != hub
        {
            self.find(
                FindingKind::WrongLog,
                at("signer"),
                Some(&signer),
                format!(
                    "the aggregate is signed by {}, not by the hub {}",
                    hex_key(&signer),
                    hex_key(&hub)
                ),
            );
        }
        if let Some(period) = self.period()
            && a.period != period
        {
            self.find(
                FindingKind::WrongPeriod,
                at("period"),
                Some(&signer),
                format!(
                    "the aggregate is for {}, but the bundle audits {period}",
                    a.period
                ),
            );
        }
        let known = log
            .checkpoints
            .get(&a.checkpoint_size)
            .is_some_and(|roots| roots.iter().any(|(_, root)| *root == a.checkpoint_root));
        if !known {
            self.find(
                FindingKind::UnknownCheckpoint,
                at("checkpoint"),
                Some(&signer),
                format!(
                    "the aggregate names the checkpoint of tree size {} and root {}, which is not a valid checkpoint of {}",
                    a.checkpoint_size,
                    hex::encode(a.checkpoint_root),
                    files::CHECKPOINTS
                ),
            );
        }

        // The contributions: exactly the leaves of the period below the checkpoint's size.
        let size = usize::try_from(a.checkpoint_size).unwrap_or(usize::MAX);
        let expected: Vec<usize> = log
            .leaves
            .iter()
            .enumerate()
            .take(size)
            .filter(|(_, leaf)| leaf.is_some_and(|l| l.period == a.period))
            .map(|(n, _)| n)
            .filter(|n| self.summed_leaves.as_ref().is_none_or(|s| s.contains(n)))
            .collect();
        if size > log.leaves.len() {
            self.find(
                FindingKind::ExtraContribution,
                at("checkpoint.size"),
                Some(&signer),
                format!(
                    "the aggregate covers a log of {} leaves, but {} holds only {}",
                    a.checkpoint_size,
                    self.leaves_file,
                    log.leaves.len()
                ),
            );
        }
        let mut listed: BTreeSet<u64> = BTreeSet::new();
        for (k, c) in a.contributions.iter().enumerate() {
            let where_ = at(&format!("contributions[{k}]"));
            let named = format!(
                "release {} of {} at leaf {}",
                c.id,
                hex_key(&c.signer),
                c.index
            );
            if !listed.insert(c.index) {
                self.find(
                    FindingKind::ExtraContribution,
                    where_,
                    Some(&signer),
                    format!("{named} is listed twice"),
                );
                continue;
            }
            let position = usize::try_from(c.index).unwrap_or(usize::MAX);
            let problem = match log.leaves.get(position) {
                _ if c.index >= a.checkpoint_size => Some(format!(
                    "leaf {} is beyond the aggregate's checkpoint of size {}",
                    c.index, a.checkpoint_size
                )),
                None => Some(format!(
                    "leaf {} is beyond the {} releases of {}",
                    c.index,
                    log.leaves.len(),
                    self.leaves_file
                )),
                // An unreadable line is a finding already; the aggregate is not blamed for it.
                Some(None) => None,
                Some(Some(leaf)) if leaf.id != c.id => Some(format!(
                    "leaf {} ({}) is release {} of {}",
                    c.index,
                    line_of(self.leaves_file, position),
                    leaf.id,
                    hex_key(&leaf.signer)
                )),
                Some(Some(leaf)) if leaf.signer != c.signer => Some(format!(
                    "leaf {} is signed by {}",
                    c.index,
                    hex_key(&leaf.signer)
                )),
                Some(Some(leaf)) if leaf.period != a.period => Some(format!(
                    "leaf {} is a release for {}, not for the aggregate's period {}",
                    c.index, leaf.period, a.period
                )),
                Some(Some(_)) if !expected.contains(&position) => Some(format!(
                    "leaf {} is a hub aggregate superseded by a later revision of its hub below the checkpoint (or outside its revision chain): the national aggregate sums each hub's latest revision",
                    c.index
                )),
                Some(Some(_)) => None,
            };
            if let Some(problem) = problem {
                self.find(
                    FindingKind::ExtraContribution,
                    where_,
                    Some(&signer),
                    format!("the aggregate sums {named}, but {problem}"),
                );
            }
        }
        for &position in &expected {
            if listed.contains(&(position as u64)) {
                continue;
            }
            if let Some(Some(leaf)) = log.leaves.get(position) {
                self.find(
                    FindingKind::OmittedContribution,
                    at("contributions"),
                    Some(&signer),
                    format!(
                        "release {} of {} for {} at leaf {position} ({}) is below the aggregate's checkpoint size {} but is not among its contributions",
                        leaf.id,
                        hex_key(&leaf.signer),
                        a.period,
                        line_of(self.leaves_file, position),
                        a.checkpoint_size
                    ),
                );
            }
        }

        self.sums(signed, log, expected.len());
        self.coverage(signed, log, &expected);
    }

    /// Step 5 (continued): every cell recomputed from the releases.
    fn sums(&mut self, signed: &SignedAggregate, log: &Log, summed: usize) {
        let a = signed.aggregate();
        let signer = a.signer;
        let catalogue = Catalogue::new();
        let mut stated: BTreeMap<CellKey, usize> = BTreeMap::new();
        for (n, cell) in a.cells.iter().enumerate() {
            stated.insert(catalogue.key(cell.indicator, cell.category.as_deref()), n);
        }
        // What each cell should be: from the releases (hub), or the hub aggregates (national).
        let what = if self.national {
            "hub aggregate"
        } else {
            "release"
        };
        let mut expected: BTreeMap<CellKey, (String, Result<Estimate, String>, usize)> =
            BTreeMap::new();
        match &log.expected_cells {
            Some(Ok(cells)) => {
                for cell in cells {
                    let key = catalogue.key(cell.indicator, cell.category.as_deref());
                    let estimate = Estimate {
                        value: cell.sum,
                        variance: cell.variance,
                        ci95_half_width: cell.ci95_half_width,
                    };
                    let name = cell_name(cell.indicator, cell.category.as_deref());
                    expected.insert(key, (name, Ok(estimate), summed));
                }
            }
            Some(Err(e)) => {
                self.find(
                    FindingKind::SumMismatch,
                    format!("{} cells", files::AGGREGATE),
                    Some(&signer),
                    format!("the {what}s' cells cannot be summed: {e}"),
                );
            }
            None => {
                for (key, sum) in &log.sums {
                    let name = cell_name(sum.indicator, sum.category.as_deref());
                    let estimate = combine(sum.summands.iter().copied()).map_err(|e| e.to_string());
                    expected.insert(*key, (name, estimate, sum.summands.len()));
                }
            }
        }
        for (key, (name, estimate, count)) in &expected {
            let estimate = match estimate {
                Ok(e) => e,
                Err(e) => {
                    self.find(
                        FindingKind::SumMismatch,
                        format!("{} cells", files::AGGREGATE),
                        Some(&signer),
                        format!("{name}: the {what}s' cells cannot be summed: {e}"),
                    );
                    continue;
                }
            };
            let Some(&n) = stated.get(key) else {
                self.find(
                    FindingKind::SumMismatch,
                    format!("{} cells", files::AGGREGATE),
                    Some(&signer),
                    format!(
                        "{name}: {count} {what}(s) of the period have this cell (sum {}), but the aggregate has no such cell",
                        estimate.value
                    ),
                );
                continue;
            };
            let Some(cell) = a.cells.get(n) else { continue };
            // Compared exactly: the same code, over the same summands in the same (log) order,
            // gives the same floats.
            let mut differences = Vec::new();
            if cell.sum != estimate.value {
                differences.push(("sum", cell.sum.to_string(), estimate.value.to_string()));
            }
            if cell.variance != estimate.variance {
                differences.push((
                    "variance",
                    cell.variance.to_string(),
                    estimate.variance.to_string(),
                ));
            }
            if cell.ci95_half_width != estimate.ci95_half_width {
                differences.push((
                    "ci95_half_width",
                    cell.ci95_half_width.to_string(),
                    estimate.ci95_half_width.to_string(),
                ));
            }
            if let Some((field, ..)) = differences.first() {
                let listed: Vec<String> = differences
                    .iter()
                    .map(|(field, stated, recomputed)| {
                        format!("{field} {stated} where the {what}s give {recomputed}")
                    })
                    .collect();
                self.find(
                    FindingKind::SumMismatch,
                    format!("{} cells[{n}].{field}", files::AGGREGATE),
                    Some(&signer),
                    format!(
                        "{name}: the aggregate states {} (recomputed over the {count} {what}(s) it should sum, in log order)",
                        listed.join(", "),
                    ),
                );
            }
        }
        for (key, &n) in &stated {
            if expected.contains_key(key) || matches!(log.expected_cells, Some(Err(_))) {
                continue;
            }
            let Some(cell) = a.cells.get(n) else { continue };
            self.find(
                FindingKind::SumMismatch,
                format!("{} cells[{n}]", files::AGGREGATE),
                Some(&signer),
                format!(
                    "{}: the aggregate states sum {}, but none of the {summed} {what}(s) it should sum has this cell",
                    cell_name(cell.indicator, cell.category.as_deref()),
                    cell.sum
                ),
            );
        }
    }

    /// Step 5 (continued): who contributed and who did not.
    fn coverage(&mut self, signed: &SignedAggregate, log: &Log, expected: &[usize]) {
        let a = signed.aggregate();
        let signer = a.signer;
        let contributed: BTreeMap<[u8; 32], usize> = expected
            .iter()
            .filter_map(|&n| {
                log.leaves
                    .get(n)
                    .copied()
                    .flatten()
                    .map(|l| (l.signer.to_bytes(), n))
            })
            .collect();
        for (k, key) in a.contributed.iter().enumerate() {
            if !contributed.contains_key(key.as_bytes()) {
                self.find(
                    FindingKind::CoverageMismatch,
                    format!("{} coverage.contributed[{k}]", files::AGGREGATE),
                    Some(&signer),
                    format!(
                        "{} is listed as contributing, but no release of it for {} is among the summed leaves",
                        hex_key(key),
                        a.period
                    ),
                );
            }
        }
        let stated: BTreeSet<[u8; 32]> = a.contributed.iter().map(|k| k.to_bytes()).collect();
        for (key, n) in &contributed {
            if !stated.contains(key) {
                self.find(
                    FindingKind::CoverageMismatch,
                    format!("{} coverage.contributed", files::AGGREGATE),
                    Some(&signer),
                    format!(
                        "{} contributed (leaf {n}) but is not listed in coverage.contributed",
                        hex::encode(key)
                    ),
                );
            }
        }
        if !self.members_read {
            return;
        }
        let role = contributing_role(a.level);
        let absent: BTreeSet<[u8; 32]> = self
            .member_keys
            .iter()
            .filter(|(k, r, _)| *r == role && !contributed.contains_key(k))
            .map(|(k, ..)| *k)
            .collect();
        for (k, key) in a.missing.iter().enumerate() {
            if !absent.contains(key.as_bytes()) {
                let why = if contributed.contains_key(key.as_bytes()) {
                    "it contributed"
                } else {
                    "it is not a member with the contributing role"
                };
                self.find(
                    FindingKind::CoverageMismatch,
                    format!("{} coverage.missing[{k}]", files::AGGREGATE),
                    Some(&signer),
                    format!("{} is listed as missing, but {why}", hex_key(key)),
                );
            }
        }
        let stated: BTreeSet<[u8; 32]> = a.missing.iter().map(|k| k.to_bytes()).collect();
        for key in absent.difference(&stated) {
            self.find(
                FindingKind::CoverageMismatch,
                format!("{} coverage.missing", files::AGGREGATE),
                Some(&signer),
                format!(
                    "member {} ({role}) did not contribute to {} but is not listed in coverage.missing",
                    hex::encode(key),
                    a.period
                ),
            );
        }
    }

    /// Step 6: the equivocations the hub kept.
    pub(super) fn equivocations(&mut self) {
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
                    format!("not a JSON array of {{\"first\", \"second\"}} release pairs: {e}"),
                );
                return;
            }
        };
        for (n, value) in list.into_iter().enumerate() {
            let at = format!("{file}[{n}]");
            let line: EquivocationLine = match serde_json::from_value(value) {
                Ok(line) => line,
                Err(e) => {
                    self.find(
                        FindingKind::InvalidEquivocationProof,
                        at,
                        None,
                        format!("not a pair {{\"first\", \"second\"}} of signed releases: {e}"),
                    );
                    continue;
                }
            };
            let signer = line.first.release().signer;
            let proof = EquivocationProof::new(line.first, line.second);
            match proof.and_then(|p| p.verify().map(|()| p)) {
                Ok(p) => self.find(
                    FindingKind::Equivocation,
                    at,
                    Some(p.signer()),
                    format!(
                        "{} signed two different releases for {}: {} and {}",
                        hex_key(p.signer()),
                        p.period(),
                        p.first().id(),
                        p.second().id()
                    ),
                ),
                Err(e) => self.find(
                    FindingKind::InvalidEquivocationProof,
                    at,
                    Some(&signer),
                    format!("the pair does not prove an equivocation: {e}"),
                ),
            }
        }
    }
}
