//! Tests of the audit: a real hub makes a real bundle, which is then tampered with.

use std::error::Error;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use maillage_protocol::checkpoint::SignedCheckpoint;
use maillage_protocol::{
    Cell, Indicator, Mechanism, Period, Release, SignedAggregate, SignedRelease,
};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::Value;

use super::*;
use crate::hub::Hub;
use crate::identity::Identity;
use crate::members::{Member, Members};
use crate::node::{InitOptions, Node};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

const NOW: u64 = 1_775_000_000;

fn period() -> Period {
    Period::new(2026, 3).expect("a valid period")
}

fn other_period() -> Period {
    Period::new(2026, 2).expect("a valid period")
}

fn structure(n: u32) -> Identity {
    let mut seed = [7u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    Identity::from_seed(seed)
}

/// Every common-core cell, with values and scales that vary with `salt`.
fn cells(salt: u64) -> Vec<Cell> {
    let mut cells = Vec::new();
    let mut n = 0u64;
    for &indicator in Indicator::COMMON_CORE {
        let categories = indicator.categories();
        let mut push = |category: Option<String>| {
            n += 1;
            cells.push(Cell {
                indicator,
                category,
                value: ((salt * 31 + n * 7) % 50) as i64 - 5,
                scale: 8.0 + (salt % 5) as f64 * 0.7,
                ci95_half_width: 25.5,
            });
        };
        if categories.is_empty() {
            push(None);
        } else {
            for c in categories {
                push(Some(c.to_owned()));
            }
        }
    }
    cells
}

fn signed_release(who: &Identity, period: Period, salt: u64) -> Result<SignedRelease> {
    let release = Release {
        signer: who.public(),
        period,
        params: "maillage-core-v1/eps=1.0/laplace".into(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: NOW - 1000 + salt,
        cells: cells(salt),
    };
    Ok(SignedRelease::sign(release, who.signing_key())?)
}

fn hub_node(dir: &Path) -> Result<Node> {
    Ok(Node::init(
        &dir.join("hub"),
        InitOptions {
            role: Role::Hub,
            name: "Hub test".into(),
            code_insee: None,
            pivot: None,
        },
    )?)
}

fn structure_member(n: u32) -> Member {
    Member {
        key: structure(n).public_hex(),
        name: format!("Structure {n}"),
        role: Role::Structure,
        code_insee: None,
    }
}

/// A bundle made by a real hub.
struct Bundle {
    _dir: tempfile::TempDir,
    path: PathBuf,
    hub: SigningKey,
}

/// Six structures; three release for February, five for March (structure 5 never does), in
/// three batches (three checkpoints: sizes 3, 5 and 8); the hub aggregates March and exports.
/// With `equivocate`, structure 0 then sends a second, different March release.
fn bundle_with(equivocate: bool) -> Result<Bundle> {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path())?;
    let mut members = Members::load(node.dir())?;
    for n in 0..6 {
        members.add(structure_member(n))?;
    }
    let mut hub = Hub::open(&node)?;
    let batches: [&[(u32, Period)]; 3] = [
        &[
            (0, other_period()),
            (1, other_period()),
            (2, other_period()),
        ],
        &[(0, period()), (1, period())],
        &[(2, period()), (3, period()), (4, period())],
    ];
    let mut salt = 0;
    for (b, batch) in batches.iter().enumerate() {
        let mut bytes = Vec::new();
        for &(n, p) in *batch {
            salt += 1;
            bytes.push(signed_release(&structure(n), p, salt)?.to_bytes());
        }
        let outcomes = hub.accept_batch(&bytes, NOW + b as u64)?;
        assert!(outcomes.iter().all(|o| o.is_ok()), "{outcomes:?}");
    }
    if equivocate {
        let second = signed_release(&structure(0), period(), 999)?;
        let outcomes = hub.accept_batch(&[second.to_bytes()], NOW + 10)?;
        assert!(outcomes.iter().all(|o| o.is_err()), "{outcomes:?}");
    }
    let aggregate = hub.aggregate(period(), NOW + 20)?;
    let path = dir.path().join("bundle");
    crate::bundle::export(
        &hub,
        period(),
        Some(aggregate.to_json_pretty()),
        &path,
        NOW + 30,
    )?;
    let key = SigningKey::from_bytes(&node.identity.signing_key().to_bytes());
    Ok(Bundle {
        _dir: dir,
        path,
        hub: key,
    })
}

fn bundle() -> Result<Bundle> {
    bundle_with(false)
}

fn read(bundle: &Bundle, file: &str) -> Result<String> {
    Ok(std::fs::read_to_string(bundle.path.join(file))?)
}

fn write(bundle: &Bundle, file: &str, text: &str) -> Result {
    Ok(std::fs::write(bundle.path.join(file), text)?)
}

fn lines(bundle: &Bundle, file: &str) -> Result<Vec<String>> {
    Ok(read(bundle, file)?.lines().map(str::to_owned).collect())
}

fn write_lines(bundle: &Bundle, file: &str, lines: &[String]) -> Result {
    write(bundle, file, &(lines.join("\n") + "\n"))
}

/// Rewrites line `n` (0-based) of a JSON-lines file.
fn edit_line(bundle: &Bundle, file: &str, n: usize, edit: impl FnOnce(&mut Value)) -> Result {
    let mut all = lines(bundle, file)?;
    let line = all.get_mut(n).ok_or("no such line")?;
    let mut value: Value = serde_json::from_str(line)?;
    edit(&mut value);
    *line = serde_json::to_string(&value)?;
    write_lines(bundle, file, &all)
}

/// Rewrites a JSON file.
fn edit_json(bundle: &Bundle, file: &str, edit: impl FnOnce(&mut Value)) -> Result {
    let mut value: Value = serde_json::from_str(&read(bundle, file)?)?;
    edit(&mut value);
    write(bundle, file, &serde_json::to_string_pretty(&value)?)
}

/// Changes the first hex digit of a hex string to another.
fn flip_hex(value: &mut Value) {
    if let Some(s) = value.as_str() {
        let mut chars: Vec<char> = s.chars().collect();
        if let Some(c) = chars.first_mut() {
            *c = if *c == '0' { '1' } else { '0' };
        }
        *value = Value::String(chars.into_iter().collect());
    }
}

/// The hub re-signs a changed aggregate: what a dishonest hub would publish.
fn resign_aggregate(
    bundle: &Bundle,
    edit: impl FnOnce(&mut maillage_protocol::Aggregate),
) -> Result {
    let signed = SignedAggregate::from_json(&read(bundle, files::AGGREGATE)?)?;
    let (mut aggregate, _) = signed.into_parts();
    edit(&mut aggregate);
    let resigned = aggregate.sign(&bundle.hub)?;
    write(bundle, files::AGGREGATE, &resigned.to_json_pretty())
}

fn has(report: &AuditReport, kind: FindingKind, location: &str) -> bool {
    report
        .findings
        .iter()
        .any(|f| f.kind == kind && f.location == location)
}

fn find<'r>(report: &'r AuditReport, kind: FindingKind, location: &str) -> &'r Finding {
    match report
        .findings
        .iter()
        .find(|f| f.kind == kind && f.location == location)
    {
        Some(f) => f,
        None => panic!("no {kind} finding at {location:?} in:\n{report}"),
    }
}

#[test]
fn untouched_bundle_passes() -> Result {
    let bundle = bundle()?;
    let report = audit(&bundle.path);
    assert!(report.ok, "{report}");
    assert!(report.findings.is_empty());
    assert_eq!(report.releases_verified, 8);
    assert!(report.aggregate_checked);
    Ok(())
}

#[test]
fn bundle_without_aggregate_passes_unchecked() -> Result {
    let bundle = bundle()?;
    std::fs::remove_file(bundle.path.join(files::AGGREGATE))?;
    let report = audit(&bundle.path);
    assert!(report.ok, "{report}");
    assert!(!report.aggregate_checked);
    Ok(())
}

#[test]
fn changed_cell_value_is_found() -> Result {
    let bundle = bundle()?;
    // Leaf 4: structure 1's March release; its first cell is summed by the aggregate.
    edit_line(&bundle, files::RELEASES, 4, |v| {
        let value = &mut v["release"]["cells"][0]["value"];
        *value = Value::from(value.as_i64().unwrap_or(0) + 1);
    })?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let bad = find(
        &report,
        FindingKind::BadSignature,
        "releases.jsonl:5 signature",
    );
    assert_eq!(bad.signer, Some(structure(1).public_hex()));
    assert_eq!(report.releases_verified, 7);
    let receipt = find(
        &report,
        FindingKind::ReceiptMismatch,
        "receipts.jsonl:5 release_id",
    );
    assert!(receipt.what.contains("leaf 4"), "{}", receipt.what);
    // The checkpoints of sizes 5 and 8 cover the changed leaf, the one of size 3 does not.
    assert!(has(
        &report,
        FindingKind::CheckpointMismatch,
        "checkpoints.json[1].root"
    ));
    assert!(has(
        &report,
        FindingKind::CheckpointMismatch,
        "checkpoints.json[2].root"
    ));
    assert!(!has(
        &report,
        FindingKind::CheckpointMismatch,
        "checkpoints.json[0].root"
    ));
    assert!(has(
        &report,
        FindingKind::BadInclusionProof,
        "proofs.json inclusion[4]"
    ));
    let sum = find(
        &report,
        FindingKind::SumMismatch,
        "aggregate.json cells[0].sum",
    );
    assert!(sum.what.starts_with("activites/individuel"), "{}", sum.what);
    Ok(())
}

#[test]
fn deleted_line_is_found() -> Result {
    let bundle = bundle()?;
    let mut all = lines(&bundle, files::RELEASES)?;
    all.remove(4);
    write_lines(&bundle, files::RELEASES, &all)?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    assert!(has(&report, FindingKind::LogSizeMismatch, "releases.jsonl"));
    let shifted = find(&report, FindingKind::WrongIndex, "releases.jsonl:5 index");
    assert!(shifted.what.contains("says index 5"), "{}", shifted.what);
    assert!(has(
        &report,
        FindingKind::ReceiptMismatch,
        "receipts.jsonl:8"
    ));
    assert!(has(
        &report,
        FindingKind::CheckpointMismatch,
        "checkpoints.json[2].tree_size"
    ));
    Ok(())
}

#[test]
fn duplicated_line_is_found() -> Result {
    let bundle = bundle()?;
    let mut all = lines(&bundle, files::RELEASES)?;
    let copy = all.get(4).cloned().ok_or("no line 5")?;
    all.insert(5, copy);
    write_lines(&bundle, files::RELEASES, &all)?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let dup = find(&report, FindingKind::DuplicateRelease, "releases.jsonl:6");
    assert!(
        dup.what.contains("leaf 4") && dup.what.contains("leaf 5"),
        "{}",
        dup.what
    );
    assert_eq!(dup.signer, Some(structure(1).public_hex()));
    assert!(has(
        &report,
        FindingKind::WrongIndex,
        "releases.jsonl:6 index"
    ));
    assert!(has(&report, FindingKind::LogSizeMismatch, "releases.jsonl"));
    Ok(())
}

#[test]
fn changed_checkpoint_root_is_found() -> Result {
    let bundle = bundle()?;
    edit_json(&bundle, files::CHECKPOINTS, |v| flip_hex(&mut v[1]["root"]))?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    assert!(has(
        &report,
        FindingKind::BadSignature,
        "checkpoints.json[1].signature"
    ));

    // The hub itself signs a wrong root for size 5.
    let bundle = self::bundle()?;
    edit_json(&bundle, files::CHECKPOINTS, |v| {
        let resigned = serde_json::from_value::<SignedCheckpoint>(v[1].clone()).map(|c| {
            let (mut c, _) = c.into_parts();
            c.root[0] ^= 1;
            c.sign(&bundle.hub)
        });
        if let Ok(Ok(c)) = resigned {
            v[1] = serde_json::to_value(&c).unwrap_or_default();
        }
    })?;
    let report = audit(&bundle.path);
    let mismatch = find(
        &report,
        FindingKind::CheckpointMismatch,
        "checkpoints.json[1].root",
    );
    assert!(mismatch.what.contains("tree size 5"), "{}", mismatch.what);
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.kind == FindingKind::InconsistentCheckpoints)
    );
    Ok(())
}

#[test]
fn fork_is_found() -> Result {
    let bundle = bundle()?;
    edit_json(&bundle, files::CHECKPOINTS, |v| {
        let forked = serde_json::from_value::<SignedCheckpoint>(v[1].clone()).map(|c| {
            let (mut c, _) = c.into_parts();
            c.root[31] ^= 0x80;
            c.sign(&bundle.hub)
        });
        if let (Ok(Ok(c)), Some(list)) = (forked, v.as_array_mut()) {
            list.push(serde_json::to_value(&c).unwrap_or_default());
        }
    })?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let fork = find(&report, FindingKind::Fork, "checkpoints.json[3]");
    assert!(fork.what.contains("tree size 5"), "{}", fork.what);
    assert_eq!(
        fork.signer,
        Some(hex::encode(bundle.hub.verifying_key().as_bytes()))
    );
    assert!(has(
        &report,
        FindingKind::CheckpointMismatch,
        "checkpoints.json[3].root"
    ));
    Ok(())
}

#[test]
fn altered_inclusion_proof_is_found() -> Result {
    let bundle = bundle()?;
    edit_json(&bundle, files::PROOFS, |v| {
        flip_hex(&mut v["inclusion"][2]["proof"][0])
    })?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let bad = find(
        &report,
        FindingKind::BadInclusionProof,
        "proofs.json inclusion[2]",
    );
    assert!(bad.what.contains("leaf 2"), "{}", bad.what);
    assert_eq!(report.findings.len(), 1, "{report}");
    Ok(())
}

#[test]
fn missing_proofs_are_found() -> Result {
    let bundle = bundle()?;
    edit_json(&bundle, files::PROOFS, |v| {
        if let Some(list) = v["inclusion"].as_array_mut() {
            list.remove(6);
        }
        if let Some(list) = v["consistency"].as_array_mut() {
            list.remove(0);
        }
    })?;
    let report = audit(&bundle.path);
    let missing = find(
        &report,
        FindingKind::MissingInclusionProof,
        "proofs.json inclusion",
    );
    assert!(missing.what.contains("leaf 6"), "{}", missing.what);
    let missing = find(
        &report,
        FindingKind::MissingConsistencyProof,
        "proofs.json consistency",
    );
    assert!(missing.what.contains("sizes 3 and 5"), "{}", missing.what);
    assert_eq!(report.findings.len(), 2, "{report}");
    Ok(())
}

#[test]
fn altered_receipt_is_found() -> Result {
    let bundle = bundle()?;
    edit_line(&bundle, files::RECEIPTS, 2, |v| {
        let t = &mut v["checkpoint"]["timestamp"];
        *t = Value::from(t.as_u64().unwrap_or(0) + 1);
    })?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let bad = find(
        &report,
        FindingKind::BadSignature,
        "receipts.jsonl:3 checkpoint.signature",
    );
    assert_eq!(
        bad.signer,
        Some(hex::encode(bundle.hub.verifying_key().as_bytes()))
    );

    // A receipt naming another release at leaf 2: its proof cannot lead to the signed root.
    let bundle = self::bundle()?;
    let other = signed_release(&structure(5), period(), 77)?.id();
    edit_line(&bundle, files::RECEIPTS, 2, |v| {
        v["release_id"] = Value::from(other.to_string());
    })?;
    let report = audit(&bundle.path);
    let mismatch = find(
        &report,
        FindingKind::ReceiptMismatch,
        "receipts.jsonl:3 release_id",
    );
    assert!(
        mismatch.what.contains(&other.to_string()),
        "{}",
        mismatch.what
    );
    assert!(has(
        &report,
        FindingKind::BadInclusionProof,
        "receipts.jsonl:3 proof"
    ));
    assert_eq!(report.findings.len(), 2, "{report}");

    // A changed hash of a receipt's proof.
    let bundle = self::bundle()?;
    edit_line(&bundle, files::RECEIPTS, 1, |v| {
        flip_hex(&mut v["proof"][0])
    })?;
    let report = audit(&bundle.path);
    assert!(has(
        &report,
        FindingKind::BadInclusionProof,
        "receipts.jsonl:2 proof"
    ));
    assert_eq!(report.findings.len(), 1, "{report}");

    // The hub signs, in a receipt, a checkpoint that contradicts checkpoints.json: a fork.
    let bundle = self::bundle()?;
    edit_line(&bundle, files::RECEIPTS, 0, |v| {
        if let Ok(c) = serde_json::from_value::<SignedCheckpoint>(v["checkpoint"].clone()) {
            let (mut c, _) = c.into_parts();
            c.root[0] ^= 1;
            if let Ok(signed) = c.sign(&bundle.hub) {
                v["checkpoint"] = serde_json::to_value(&signed).unwrap_or_default();
            }
        }
    })?;
    let report = audit(&bundle.path);
    assert!(
        has(&report, FindingKind::Fork, "receipts.jsonl:1 checkpoint"),
        "{report}"
    );

    let bundle = self::bundle()?;
    let mut all = lines(&bundle, files::RECEIPTS)?;
    all.pop();
    write_lines(&bundle, files::RECEIPTS, &all)?;
    let report = audit(&bundle.path);
    assert!(has(
        &report,
        FindingKind::MissingReceipt,
        "receipts.jsonl:8"
    ));
    Ok(())
}

#[test]
fn changed_aggregate_sum_is_found() -> Result {
    let bundle = bundle()?;
    edit_json(&bundle, files::AGGREGATE, |v| {
        let sum = &mut v["cells"][3]["sum"];
        *sum = Value::from(sum.as_i64().unwrap_or(0) + 7);
    })?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    assert!(has(
        &report,
        FindingKind::BadSignature,
        "aggregate.json signature"
    ));

    let bundle = self::bundle()?;
    let mut stated = 0;
    resign_aggregate(&bundle, |a| {
        if let Some(cell) = a.cells.get_mut(3) {
            cell.sum += 7;
            stated = cell.sum;
        }
    })?;
    let report = audit(&bundle.path);
    let sum = find(
        &report,
        FindingKind::SumMismatch,
        "aggregate.json cells[3].sum",
    );
    let expected = format!("sum {stated} where the releases give {}", stated - 7);
    assert!(sum.what.contains(&expected), "{}", sum.what);
    assert!(!sum.what.contains("variance"), "{}", sum.what);
    assert_eq!(report.findings.len(), 1, "{report}");

    let bundle = self::bundle()?;
    resign_aggregate(&bundle, |a| {
        if let Some(cell) = a.cells.get_mut(3) {
            cell.variance *= 1.0 + f64::EPSILON;
        }
    })?;
    let report = audit(&bundle.path);
    assert!(has(
        &report,
        FindingKind::SumMismatch,
        "aggregate.json cells[3].variance"
    ));
    Ok(())
}

#[test]
fn contribution_removed_from_aggregate_is_found() -> Result {
    let bundle = bundle()?;
    let mut removed = None;
    resign_aggregate(&bundle, |a| {
        let c = a.contributions.remove(1);
        a.contributed.retain(|k| *k != c.signer);
        a.missing.push(c.signer);
        a.missing.sort_by_key(|k| k.to_bytes());
        // A version 2 hub aggregate states its structures count: kept consistent.
        a.structures = a.structures.map(|_| a.contributed.len() as u64);
        removed = Some(c);
    })?;
    let removed = removed.ok_or("nothing removed")?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let omitted = find(
        &report,
        FindingKind::OmittedContribution,
        "aggregate.json contributions",
    );
    assert!(
        omitted.what.contains(&removed.id.to_string()),
        "{}",
        omitted.what
    );
    assert!(
        omitted.what.contains(&format!("leaf {}", removed.index)),
        "{}",
        omitted.what
    );
    assert!(has(
        &report,
        FindingKind::CoverageMismatch,
        "aggregate.json coverage.contributed"
    ));
    Ok(())
}

#[test]
fn extra_contribution_and_wrong_period_are_found() -> Result {
    let bundle = bundle()?;
    resign_aggregate(&bundle, |a| {
        // Leaf 0 is a February release.
        if let Some(first) = a.contributions.first_mut() {
            first.index = 0;
        }
    })?;
    let report = audit(&bundle.path);
    let extra = find(
        &report,
        FindingKind::ExtraContribution,
        "aggregate.json contributions[0]",
    );
    assert!(extra.what.contains("leaf 0"), "{}", extra.what);
    assert!(has(
        &report,
        FindingKind::OmittedContribution,
        "aggregate.json contributions"
    ));

    let bundle = self::bundle()?;
    resign_aggregate(&bundle, |a| a.period = other_period())?;
    let report = audit(&bundle.path);
    assert!(has(
        &report,
        FindingKind::WrongPeriod,
        "aggregate.json period"
    ));
    Ok(())
}

#[test]
fn budget_below_release_loss_is_found() -> Result {
    let bundle = bundle()?;
    edit_json(&bundle, files::MANIFEST, |v| {
        v["policy"]["budget"] = Value::from(0.5)
    })?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let over: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::OverBudget)
        .collect();
    assert_eq!(over.len(), 8, "{report}");
    let first = find(
        &report,
        FindingKind::OverBudget,
        "releases.jsonl:1 release.epsilon",
    );
    assert!(
        first.what.contains("epsilon = 1") && first.what.contains("0.5"),
        "{}",
        first.what
    );
    assert_eq!(report.findings.len(), 8, "{report}");
    Ok(())
}

#[test]
fn non_member_and_wrong_mechanism_are_found() -> Result {
    let bundle = bundle()?;
    let removed = structure(3).public_hex();
    edit_json(&bundle, files::MEMBERS, |v| {
        if let Some(list) = v.as_array_mut() {
            list.retain(|m| m["key"].as_str() != Some(removed.as_str()));
        }
    })?;
    edit_json(&bundle, files::MANIFEST, |v| {
        v["policy"]["mechanism"] = Value::from("gaussian");
    })?;
    let report = audit(&bundle.path);
    let not_member = find(
        &report,
        FindingKind::NotAMember,
        "releases.jsonl:7 release.signer",
    );
    assert_eq!(not_member.signer, Some(removed));
    assert!(has(
        &report,
        FindingKind::WrongMechanism,
        "releases.jsonl:1 release.mechanism"
    ));
    Ok(())
}

#[test]
fn invalid_member_keys_are_found() -> Result {
    let bundle = bundle()?;
    // A member that signed nothing, with 64 hex digits that are not a curve point.
    let not_a_point = (0u8..=255)
        .map(|b| [b; 32])
        .find(|bytes| ed25519_dalek::VerifyingKey::from_bytes(bytes).is_err())
        .ok_or("every candidate is a point")?;
    let unused = structure(5).public_hex();
    edit_json(&bundle, files::MEMBERS, |v| {
        if let Some(list) = v.as_array_mut() {
            for m in list.iter_mut() {
                if m["key"].as_str() == Some(unused.as_str()) {
                    m["key"] = Value::from(hex::encode(not_a_point));
                }
            }
            list.push(serde_json::json!({"key": "zz", "name": "x", "role": "structure"}));
        }
    })?;
    let report = audit(&bundle.path);
    let invalid: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::InvalidMember)
        .collect();
    assert_eq!(invalid.len(), 2, "{report}");
    assert!(has(
        &report,
        FindingKind::InvalidMember,
        "members.json[6].key"
    ));
    Ok(())
}

#[test]
fn equivocation_is_reported() -> Result {
    let bundle = bundle_with(true)?;
    let report = audit(&bundle.path);
    assert!(!report.ok);
    let equivocation = find(&report, FindingKind::Equivocation, "equivocations.json[0]");
    assert_eq!(equivocation.signer, Some(structure(0).public_hex()));
    assert!(equivocation.what.contains(&period().to_string()));
    assert_eq!(report.findings.len(), 1, "{report}");

    edit_json(&bundle, files::EQUIVOCATIONS, |v| {
        flip_hex(&mut v[0]["second"]["signature"]);
    })?;
    let report = audit(&bundle.path);
    let invalid = find(
        &report,
        FindingKind::InvalidEquivocationProof,
        "equivocations.json[0]",
    );
    assert_eq!(invalid.signer, Some(structure(0).public_hex()));
    assert_eq!(report.findings.len(), 1, "{report}");
    Ok(())
}

#[test]
fn equivocation_inside_the_log_is_found() -> Result {
    let bundle = bundle()?;
    // Replace leaf 4 (structure 1, March) with structure 0's second March release: a log
    // holding two releases of one member for one period.
    let second = signed_release(&structure(0), period(), 999)?;
    edit_line(&bundle, files::RELEASES, 4, |v| {
        v["release"] = serde_json::to_value(&second).unwrap_or_default();
    })?;
    let report = audit(&bundle.path);
    let equivocation = find(&report, FindingKind::Equivocation, "releases.jsonl:5");
    assert_eq!(equivocation.signer, Some(structure(0).public_hex()));
    assert!(
        equivocation.what.contains("leaf 3"),
        "{}",
        equivocation.what
    );
    Ok(())
}

#[test]
fn missing_and_garbage_files_are_findings() -> Result {
    for file in [
        files::MANIFEST,
        files::MEMBERS,
        files::RELEASES,
        files::RECEIPTS,
        files::CHECKPOINTS,
        files::PROOFS,
        files::EQUIVOCATIONS,
    ] {
        let bundle = bundle()?;
        std::fs::remove_file(bundle.path.join(file))?;
        let report = audit(&bundle.path);
        assert!(!report.ok, "{file}");
        assert!(
            has(&report, FindingKind::Unreadable, file),
            "{file}: {report}"
        );
    }
    for file in [
        files::MANIFEST,
        files::MEMBERS,
        files::RELEASES,
        files::RECEIPTS,
        files::CHECKPOINTS,
        files::PROOFS,
        files::AGGREGATE,
        files::EQUIVOCATIONS,
    ] {
        let bundle = bundle()?;
        std::fs::write(bundle.path.join(file), b"\xff\x00{[\"\n\n")?;
        let report = audit(&bundle.path);
        assert!(!report.ok, "{file}");
    }
    let empty = tempfile::tempdir()?;
    let report = audit(empty.path());
    assert!(!report.ok);
    assert_eq!(report.releases_verified, 0);
    let report = audit(&empty.path().join("does-not-exist"));
    assert!(!report.ok);
    Ok(())
}

#[test]
fn bad_signatures_are_located_in_a_batch() -> Result {
    let signers: Vec<Identity> = (0..50).map(structure).collect();
    let mut messages = Vec::new();
    let mut signatures = Vec::new();
    let mut keys = Vec::new();
    for (n, who) in signers.iter().enumerate() {
        let message = format!("message {n}").into_bytes();
        signatures.push(ed25519_dalek::Signer::sign(who.signing_key(), &message));
        messages.push(message);
        keys.push(who.public());
    }
    assert!(
        verify_all(&messages, &signatures, &keys)
            .iter()
            .all(|ok| *ok)
    );
    messages[7].push(b'!');
    keys.swap(30, 31);
    let verified = verify_all(&messages, &signatures, &keys);
    let bad: Vec<usize> = (0..50).filter(|n| !verified[*n]).collect();
    assert_eq!(bad, [7, 30, 31]);
    assert!(verify_all::<Vec<u8>>(&[], &[], &[]).is_empty());
    Ok(())
}

#[test]
fn findings_of_one_kind_are_capped_and_counted() {
    let mut findings = Findings::default();
    for n in 0..(MAX_FINDINGS_PER_KIND + 50) {
        findings.push(Finding {
            kind: FindingKind::WrongIndex,
            what: format!("line {n}"),
            location: format!("releases.jsonl:{}", n + 1),
            signer: None,
        });
    }
    findings.push(Finding {
        kind: FindingKind::Fork,
        what: "fork".into(),
        location: "checkpoints.json[3]".into(),
        signer: None,
    });
    let list = findings.finish();
    assert_eq!(list.len(), MAX_FINDINGS_PER_KIND + 2);
    let last = list.last().map(|f| (f.kind, f.what.clone()));
    assert_eq!(
        last,
        Some((
            FindingKind::WrongIndex,
            format!(
                "50 more findings of kind wrong_index are not listed ({} in all)",
                MAX_FINDINGS_PER_KIND + 50
            )
        ))
    );
}

#[test]
fn report_is_snake_case_json() -> Result {
    let report = AuditReport {
        ok: false,
        releases_verified: 3,
        aggregate_checked: true,
        national: false,
        findings: vec![Finding {
            kind: FindingKind::InvalidEquivocationProof,
            what: "w".into(),
            location: "equivocations.json[0]".into(),
            signer: None,
        }],
    };
    let json = serde_json::to_value(&report)?;
    assert_eq!(json["findings"][0]["kind"], "invalid_equivocation_proof");
    assert_eq!(
        FindingKind::InvalidEquivocationProof.as_str(),
        "invalid_equivocation_proof"
    );
    let back: AuditReport = serde_json::from_value(json)?;
    assert_eq!(back, report);
    Ok(())
}

/// Positions of the digits whose change must change what a file says: digits of JSON integers
/// and digits inside hex strings of 64 characters or more. Floats are left out (a change in a
/// 17th significant digit may name the same double), and so is the manifest's `created_at`,
/// which nothing signs or checks.
fn significant_digits(file: &str, text: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut key = String::new();
    let mut i = 0;
    while i < text.len() {
        let c = text[i];
        if c == b'"' {
            let start = i + 1;
            let mut j = start;
            while j < text.len() && text[j] != b'"' {
                j += if text[j] == b'\\' { 2 } else { 1 };
            }
            let end = j.min(text.len());
            let s = &text[start..end];
            let mut k = end + 1;
            while k < text.len() && text[k].is_ascii_whitespace() {
                k += 1;
            }
            if text.get(k) == Some(&b':') {
                key = String::from_utf8_lossy(s).into_owned();
            } else if s.len() >= 64 && s.iter().all(u8::is_ascii_hexdigit) {
                out.extend((start..end).filter(|&p| text[p].is_ascii_digit()));
            }
            i = end + 1;
        } else if c == b'-' || c.is_ascii_digit() {
            let start = i;
            while i < text.len()
                && matches!(text[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
            {
                i += 1;
            }
            let token = &text[start..i];
            let integer = !token.iter().any(|b| matches!(b, b'.' | b'e' | b'E'));
            let exempt = file == files::MANIFEST && key == "created_at";
            if integer && !exempt {
                out.extend((start..i).filter(|&p| text[p].is_ascii_digit()));
            }
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn flipped_digits_are_always_found_and_never_panic() -> Result {
    let bundle = bundle()?;
    let names = [
        files::MANIFEST,
        files::MEMBERS,
        files::RELEASES,
        files::RECEIPTS,
        files::CHECKPOINTS,
        files::PROOFS,
        files::AGGREGATE,
        files::EQUIVOCATIONS,
    ];
    let mut originals = Vec::new();
    for name in names {
        let bytes = std::fs::read(bundle.path.join(name))?;
        let digits = significant_digits(name, &bytes);
        originals.push((name, bytes, digits));
    }
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let strategy = (
        0..originals.len(),
        any::<prop::sample::Index>(),
        1u8..10,
        any::<u8>(),
    );
    runner
        .run(&strategy, |(file, at, shift, byte)| {
            let (name, bytes, digits) = &originals[file];
            let path = bundle.path.join(name);
            let restore = |_| std::fs::write(&path, bytes);
            // A digit changed to another digit: always a finding.
            if !digits.is_empty() {
                let p = digits[at.index(digits.len())];
                let mut changed = bytes.clone();
                changed[p] = b'0' + (changed[p] - b'0' + shift) % 10;
                std::fs::write(&path, &changed).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let report = audit(&bundle.path);
                restore(()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    !report.ok,
                    "{name}: byte {p} changed from {:?} to {:?} went unnoticed",
                    bytes[p] as char,
                    changed[p] as char
                );
            }
            // Any byte anywhere: findings or not, never a panic.
            if !bytes.is_empty() {
                let p = at.index(bytes.len());
                let mut changed = bytes.clone();
                changed[p] = byte;
                std::fs::write(&path, &changed).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let report = audit(&bundle.path);
                restore(()).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(report.ok, report.findings.is_empty());
            }
            Ok(())
        })
        .map_err(|e| e.to_string())?;
    assert!(audit(&bundle.path).ok);
    Ok(())
}

/// Times a full audit of 20,000 releases (run with
/// `cargo test --release -p maillage-node audit_of_20000 -- --ignored --nocapture`), or of the
/// bundle named by `MAILLAGE_AUDIT_BUNDLE`, three times.
#[test]
#[ignore = "a timing, not a test: run in release mode with --ignored --nocapture"]
fn audit_of_20000_releases_timing() -> Result {
    const N: u32 = 20_000;
    if let Some(path) = std::env::var_os("MAILLAGE_AUDIT_BUNDLE") {
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let report = audit(Path::new(&path));
            let elapsed = started.elapsed();
            eprintln!(
                "audit of {}: {elapsed:?}, {} releases verified, ok = {}",
                Path::new(&path).display(),
                report.releases_verified,
                report.ok
            );
        }
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path())?;
    let members: Vec<Member> = (0..N).map(structure_member).collect();
    std::fs::write(
        node.dir().join(crate::members::MEMBERS_FILE),
        serde_json::to_string(&members)?,
    )?;
    let mut hub = Hub::open(&node)?;
    let started = std::time::Instant::now();
    for chunk in (0..N).collect::<Vec<_>>().chunks(1000) {
        let mut bytes = Vec::new();
        for &n in chunk {
            bytes.push(signed_release(&structure(n), period(), u64::from(n))?.to_bytes());
        }
        hub.accept_batch(&bytes, NOW)?;
    }
    let aggregate = hub.aggregate(period(), NOW)?;
    let path = dir.path().join("bundle");
    crate::bundle::export(&hub, period(), Some(aggregate.to_json_pretty()), &path, NOW)?;
    eprintln!("bundle of {N} releases made in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let report = audit(&path);
    let elapsed = started.elapsed();
    assert!(report.ok, "{report}");
    assert_eq!(report.releases_verified, u64::from(N));
    eprintln!("audit of {N} releases: {elapsed:?}");
    Ok(())
}
