//! Tests across the crate's modules: validation rules, documents, merges, sync, adoption.

use ed25519_dalek::SigningKey;
use maillage_protocol::Indicator;
use proptest::prelude::*;

use crate::*;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn pk(seed: u8) -> PublicKey {
    PublicKey::from(key(seed).verifying_key())
}

const HUB: u8 = 10;
const NATIONAL: u8 = 11;
const STRUCTURE: u8 = 12;

/// A valid policy: default settings, a committee of keys 1, 2, 3 with quorum 2, a hub, the
/// national node and one structure.
fn fixture() -> Policy {
    let mut p = Policy::default();
    p.committee.quorum = 2;
    for (seed, name) in [(1, "ANCT"), (2, "Hub A"), (3, "Partenaire")] {
        p.committee
            .members
            .insert(pk(seed), CommitteeMember { name: name.into() });
    }
    p.members.insert(
        pk(HUB),
        Member {
            name: "Hub du Rhône".into(),
            role: Role::Hub,
            pivot: None,
            hub: None,
            commune: Some("69123".into()),
            place_id: None,
        },
    );
    p.members.insert(
        pk(NATIONAL),
        Member {
            name: "Niveau national".into(),
            role: Role::National,
            pivot: None,
            hub: None,
            commune: None,
            place_id: None,
        },
    );
    p.members.insert(
        pk(STRUCTURE),
        Member {
            name: "Association Les Clés".into(),
            role: Role::Structure,
            pivot: Some("73282932000074".into()),
            hub: Some(pk(HUB)),
            commune: Some("69385".into()),
            place_id: Some("lieu-1".into()),
        },
    );
    p
}

fn problems(p: &Policy) -> Vec<Problem> {
    p.problems()
}

fn has(p: &Policy, pred: impl Fn(&Problem) -> bool) -> bool {
    let found = problems(p);
    let ok = found.iter().any(&pred);
    if !ok {
        eprintln!("problems: {found:?}");
    }
    ok
}

// ---------------------------------------------------------------- validation rules

#[test]
fn fixture_is_valid_and_default_needs_a_committee() {
    assert_eq!(fixture().validate(), Ok(()));
    let default = Policy::default();
    assert_eq!(problems(&default), vec![Problem::EmptyCommittee]);
}

#[test]
fn schema_version_is_checked() {
    let mut p = fixture();
    p.schema = 2;
    assert!(has(&p, |e| matches!(e, Problem::Schema { found: 2, .. })));
}

#[test]
fn budget_range_is_checked() {
    for bad in [0, Privacy::MAX_BUDGET_MICRO + 1] {
        let mut p = fixture();
        p.privacy.budget_micro = bad;
        assert!(has(
            &p,
            |e| matches!(e, Problem::Budget { value, .. } if *value == bad)
        ));
    }
    let mut p = fixture();
    p.privacy.budget_micro = Privacy::MAX_BUDGET_MICRO;
    assert_eq!(p.validate(), Ok(()));
}

#[test]
fn bounds_ranges_are_checked() {
    let mut p = fixture();
    p.privacy.bounds.max_rows_per_person = 0;
    p.privacy.bounds.max_duration_min = 1441;
    p.privacy.bounds.max_themes_per_row = 20;
    p.privacy.bounds.max_materiel_per_row = 6;
    let found: Vec<&'static str> = problems(&p)
        .iter()
        .filter_map(|e| match e {
            Problem::Bound { field, .. } => Some(*field),
            _ => None,
        })
        .collect();
    assert_eq!(
        found,
        [
            "max_rows_per_person",
            "max_duration_min",
            "max_themes_per_row",
            "max_materiel_per_row"
        ]
    );
}

#[test]
fn indicators_must_match_the_catalogue() {
    let mut p = fixture();
    p.indicators.clear();
    assert!(has(&p, |e| matches!(e, Problem::NoIndicators)));

    let mut p = fixture();
    if let Some(e) = p.indicators.get_mut(&Indicator::Beneficiaires) {
        e.kind = "histogram".into();
    }
    assert!(has(&p, |e| matches!(
        e,
        Problem::Kind {
            indicator: Indicator::Beneficiaires,
            expected: "count",
            ..
        }
    )));

    let mut p = fixture();
    if let Some(e) = p.indicators.get_mut(&Indicator::Autonomie) {
        e.categories.push("autonome".into());
    }
    assert!(has(
        &p,
        |e| matches!(e, Problem::Categories { indicator: Indicator::Autonomie, duplicate: Some(d), .. } if d == "autonome")
    ));

    let mut p = fixture();
    if let Some(e) = p.indicators.get_mut(&Indicator::Autonomie) {
        e.categories.swap(0, 1);
    }
    assert!(has(&p, |e| matches!(
        e,
        Problem::Categories {
            duplicate: None,
            ..
        }
    )));

    let mut p = fixture();
    if let Some(e) = p.indicators.get_mut(&Indicator::Activites) {
        e.module = true;
    }
    assert!(has(&p, |e| matches!(
        e,
        Problem::Module {
            indicator: Indicator::Activites,
            ..
        }
    )));

    for bad in [0, validate::MAX_WEIGHT + 1] {
        let mut p = fixture();
        if let Some(e) = p.indicators.get_mut(&Indicator::Activites) {
            e.weight = bad;
        }
        assert!(has(
            &p,
            |e| matches!(e, Problem::Weight { value, .. } if *value == bad)
        ));
    }

    let mut p = fixture();
    p.indicators.insert(
        Indicator::Genres,
        IndicatorEntry::from_catalogue(Indicator::Genres, 3),
    );
    assert_eq!(p.validate(), Ok(()), "a module from the catalogue is fine");
}

#[test]
fn calendar_is_checked() {
    let mut p = fixture();
    p.calendar.period = "week".into();
    p.calendar.submission_deadline_days = 0;
    p.calendar.superseded_grace_days = 91;
    let found = problems(&p);
    assert!(found.contains(&Problem::Period {
        found: "week".into()
    }));
    assert!(found.iter().any(|e| matches!(
        e,
        Problem::Days {
            field: "submission_deadline_days",
            value: 0,
            ..
        }
    )));
    assert!(found.iter().any(|e| matches!(
        e,
        Problem::Days {
            field: "superseded_grace_days",
            value: 91,
            ..
        }
    )));
}

#[test]
fn keys_must_be_usable() {
    // The identity point: a valid encoding, but of small order.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let mut p = fixture();
    p.members.insert(
        PublicKey(weak),
        Member {
            name: "Faible".into(),
            role: Role::Auditor,
            pivot: None,
            hub: None,
            commune: None,
            place_id: None,
        },
    );
    p.committee.members.insert(
        PublicKey(weak),
        CommitteeMember {
            name: "Faible".into(),
        },
    );
    p.committee.quorum = 3;
    let found = problems(&p);
    let paths: Vec<&str> = found
        .iter()
        .filter_map(|e| match e {
            Problem::Key { path, .. } => Some(path.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(paths.len(), 2, "{found:?}");
    assert!(paths[0].starts_with("members."));
    assert!(paths[1].starts_with("committee.members."));
}

#[test]
fn names_pivots_and_communes_are_checked() {
    for bad in ["", " padded", "a\nb", &"x".repeat(201)] {
        let mut p = fixture();
        if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
            m.name = bad.to_owned();
        }
        assert!(
            has(
                &p,
                |e| matches!(e, Problem::Name { path, .. } if path.ends_with(".name"))
            ),
            "{bad:?}"
        );
    }
    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
        m.pivot = Some("73282932000075".into());
        m.commune = Some("69999".into());
    }
    let found = problems(&p);
    assert!(
        found
            .iter()
            .any(|e| matches!(e, Problem::Pivot { reason, .. } if reason.contains("check digit"))),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|e| matches!(e, Problem::Commune { reason, .. } if reason.contains("69999"))),
        "{found:?}"
    );
    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
        m.commune = Some("6938".into());
    }
    assert!(has(
        &p,
        |e| matches!(e, Problem::Commune { reason, .. } if reason.contains("not a commune code"))
    ));
}

#[test]
fn every_structure_needs_a_registered_hub() {
    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
        m.hub = None;
    }
    assert!(has(&p, |e| matches!(e, Problem::MissingHub { .. })));

    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
        m.hub = Some(pk(99));
    }
    assert!(has(
        &p,
        |e| matches!(e, Problem::UnknownHub { what, .. } if what == "not registered")
    ));

    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
        m.hub = Some(pk(NATIONAL));
    }
    assert!(has(
        &p,
        |e| matches!(e, Problem::UnknownHub { what, .. } if what == "registered as national")
    ));

    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(HUB)) {
        m.hub = Some(pk(NATIONAL));
    }
    assert!(has(&p, |e| matches!(
        e,
        Problem::UnexpectedHub {
            role: Role::Hub,
            ..
        }
    )));

    let mut p = fixture();
    p.members.remove(&pk(HUB));
    assert!(
        has(&p, |e| matches!(e, Problem::UnknownHub { .. })),
        "removing a hub orphans its structures"
    );
}

#[test]
fn a_place_has_one_key() {
    let mut p = fixture();
    let mut twin = p.members[&pk(STRUCTURE)].clone();
    twin.name = "Doublon".into();
    p.members.insert(pk(13), twin);
    assert!(has(
        &p,
        |e| matches!(e, Problem::DuplicatePlace { place_id, .. } if place_id == "lieu-1")
    ));
    let mut p = fixture();
    if let Some(m) = p.members.get_mut(&pk(STRUCTURE)) {
        m.place_id = Some(String::new());
    }
    assert!(has(&p, |e| matches!(e, Problem::PlaceId { .. })));
}

#[test]
fn quorum_must_be_a_majority_of_the_committee() {
    for (quorum, ok) in [(0, false), (1, false), (2, true), (3, true), (4, false)] {
        let mut p = fixture();
        p.committee.quorum = quorum;
        assert_eq!(p.validate().is_ok(), ok, "quorum {quorum} of 3");
        if !ok {
            assert!(has(&p, |e| matches!(
                e,
                Problem::Quorum {
                    min: 2,
                    size: 3,
                    ..
                }
            )));
        }
    }
    let mut p = fixture();
    p.committee.members.clear();
    assert!(has(&p, |e| matches!(e, Problem::EmptyCommittee)));
}

#[test]
fn validation_errors_name_every_problem() {
    let mut p = fixture();
    p.privacy.budget_micro = 0;
    p.committee.quorum = 9;
    let text = p
        .validate()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(text.contains("2 problem(s)"), "{text}");
    assert!(
        text.contains("privacy.budget_micro: 0 is out of range"),
        "{text}"
    );
    assert!(text.contains("committee.quorum: 9"), "{text}");
}

// ---------------------------------------------------------------- document

fn sync_pair(a: &mut PolicyDoc, b: &mut PolicyDoc) -> Result<usize, DocError> {
    let (mut sa, mut sb) = (SyncState::new(), SyncState::new());
    let mut rounds = 0;
    loop {
        let m1 = a.generate_sync_message(&mut sa);
        if let Some(m) = &m1 {
            b.receive_sync_message(&mut sb, m)?;
        }
        let m2 = b.generate_sync_message(&mut sb);
        if let Some(m) = &m2 {
            a.receive_sync_message(&mut sa, m)?;
        }
        rounds += 1;
        if m1.is_none() && m2.is_none() {
            return Ok(rounds);
        }
        assert!(rounds < 50, "sync does not converge");
    }
}

#[test]
fn genesis_document_reads_back_and_is_the_same_on_every_peer() -> TestResult {
    let policy = fixture();
    let a = PolicyDoc::genesis(&policy)?;
    let b = PolicyDoc::genesis(&policy)?;
    assert_eq!(a.heads(), b.heads(), "the genesis change is deterministic");
    assert_eq!(a.policy()?, policy);
    let loaded = PolicyDoc::load(&a.save())?;
    assert_eq!(loaded.policy()?, policy);
    assert_eq!(loaded.heads(), a.heads());
    assert_eq!(a.committee()?, policy.committee);
    let mut merged = PolicyDoc::load(&a.save())?;
    merged.merge(&b)?;
    assert_eq!(merged.change_count(), 1);
    Ok(())
}

#[test]
fn edits_apply_as_one_change_or_not_at_all() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let before = doc.heads();
    let failing = [
        Edit::SetBudget { budget: 0.5 },
        Edit::RemoveMember { key: pk(77) },
    ];
    let err = doc.apply(&failing, "test").err();
    assert_eq!(
        err,
        Some(EditError::Edit {
            index: 1,
            op: "remove_member",
            reason: format!("member {} is not registered", pk(77)),
        })
    );
    assert_eq!(doc.heads(), before, "nothing changed");
    assert_eq!(doc.policy()?.privacy.budget_micro, 1_000_000);

    doc.apply(
        &[
            Edit::SetBudget { budget: 0.5 },
            Edit::SetMechanism {
                mechanism: Mechanism::Gaussian,
            },
            Edit::SetBounds {
                max_rows_per_person: Some(5),
                max_duration_min: None,
                max_themes_per_row: None,
                max_materiel_per_row: Some(1),
            },
            Edit::AddIndicator {
                indicator: Indicator::Genres,
                weight: 2,
            },
            Edit::RemoveIndicator {
                indicator: Indicator::Orientations,
            },
            Edit::SetWeight {
                indicator: Indicator::Activites,
                weight: 4,
            },
            Edit::SetCalendar {
                submission_deadline_days: Some(20),
                superseded_grace_days: None,
            },
            Edit::UpdateMember {
                key: pk(STRUCTURE),
                name: Some("Les Clés".into()),
                role: None,
                pivot: None,
                hub: None,
                commune: Some("69381".into()),
                place_id: None,
            },
            Edit::AddCommitteeMember {
                key: pk(4),
                name: "Quatrième".into(),
            },
            Edit::SetQuorum { quorum: 3 },
            Edit::RemoveCommitteeMember { key: pk(3) },
        ],
        "test",
    )?;
    let p = doc.policy()?;
    assert_eq!(p.privacy.budget_micro, 500_000);
    assert_eq!(p.privacy.mechanism, Mechanism::Gaussian);
    assert_eq!(p.privacy.bounds.max_rows_per_person, 5);
    assert_eq!(p.privacy.bounds.max_materiel_per_row, 1);
    assert_eq!(p.privacy.bounds.max_duration_min, 240);
    assert_eq!(p.indicators[&Indicator::Genres].weight, 2);
    assert!(p.indicators[&Indicator::Genres].module);
    assert!(!p.indicators.contains_key(&Indicator::Orientations));
    assert_eq!(p.indicators[&Indicator::Activites].weight, 4);
    assert_eq!(p.calendar.submission_deadline_days, 20);
    assert_eq!(p.members[&pk(STRUCTURE)].name, "Les Clés");
    assert_eq!(
        p.members[&pk(STRUCTURE)].pivot.as_deref(),
        Some("73282932000074")
    );
    assert_eq!(p.committee.quorum, 3);
    assert!(p.committee.members.contains_key(&pk(4)));
    assert!(!p.committee.members.contains_key(&pk(3)));
    assert_eq!(p.validate(), Ok(()));
    Ok(())
}

#[test]
fn edit_preconditions_are_precise() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Edit::AddIndicator {
                indicator: Indicator::Activites,
                weight: 1,
            },
            "already in the policy",
        ),
        (
            Edit::RemoveIndicator {
                indicator: Indicator::Genres,
            },
            "is not in the policy",
        ),
        (
            Edit::SetWeight {
                indicator: Indicator::Genres,
                weight: 1,
            },
            "use add_indicator",
        ),
        (
            Edit::add_member(pk(HUB), fixture().members[&pk(HUB)].clone()),
            "already registered",
        ),
        (
            Edit::AddCommitteeMember {
                key: pk(1),
                name: "x".into(),
            },
            "already on the committee",
        ),
        (
            Edit::RemoveCommitteeMember { key: pk(9) },
            "not on the committee",
        ),
        (Edit::SetBudget { budget: -1.0 }, "greater than 0"),
        (
            Edit::SetBounds {
                max_rows_per_person: None,
                max_duration_min: None,
                max_themes_per_row: None,
                max_materiel_per_row: None,
            },
            "names no bound",
        ),
    ];
    for (edit, expected) in cases {
        let err = doc
            .apply(std::slice::from_ref(&edit), "t")
            .err()
            .map(|e| e.to_string());
        let text = err.unwrap_or_default();
        assert!(text.starts_with("edit 1 ("), "{text}");
        assert!(text.contains(expected), "{edit:?}: {text}");
    }
    assert!(matches!(
        PolicyDoc::empty().apply(&[Edit::SetQuorum { quorum: 1 }], "t"),
        Err(EditError::EmptyDocument)
    ));
    Ok(())
}

#[test]
fn concurrent_proposals_from_several_peers_converge() -> TestResult {
    let genesis = PolicyDoc::genesis(&fixture())?;
    let mut peers: Vec<PolicyDoc> = (0..3)
        .map(|_| PolicyDoc::load(&genesis.save()))
        .collect::<Result<_, _>>()?;
    peers[0].apply(&[Edit::SetBudget { budget: 0.8 }], "peer 0")?;
    peers[1].apply(
        &[Edit::add_member(
            pk(20),
            Member {
                name: "Médiathèque".into(),
                role: Role::Structure,
                pivot: None,
                hub: Some(pk(HUB)),
                commune: Some("69123".into()),
                place_id: None,
            },
        )],
        "peer 1",
    )?;
    peers[2].apply(
        &[
            Edit::AddIndicator {
                indicator: Indicator::Genres,
                weight: 1,
            },
            // A conflicting write of the same field: one value wins, the same everywhere.
            Edit::SetBudget { budget: 0.9 },
        ],
        "peer 2",
    )?;
    // A ring of pairwise syncs, twice round.
    for _ in 0..2 {
        for i in 0..3 {
            let j = (i + 1) % 3;
            let (a, b) = if i < j {
                let (l, r) = peers.split_at_mut(j);
                (&mut l[i], &mut r[0])
            } else {
                let (l, r) = peers.split_at_mut(i);
                (&mut r[0], &mut l[j])
            };
            sync_pair(a, b)?;
        }
    }
    let hashes: Vec<PolicyHash> = peers
        .iter()
        .map(|p| p.policy().map(|p| p.hash()))
        .collect::<Result<_, _>>()?;
    assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{hashes:?}");
    assert!(peers.windows(2).all(|w| w[0].heads() == w[1].heads()));
    let p = peers[0].policy()?;
    assert!(p.members.contains_key(&pk(20)));
    assert!(p.indicators.contains_key(&Indicator::Genres));
    assert!([800_000, 900_000].contains(&p.privacy.budget_micro));
    assert_eq!(p.validate(), Ok(()));
    Ok(())
}

#[test]
fn sync_refuses_garbage_and_oversized_messages() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut state = SyncState::new();
    assert!(matches!(
        doc.receive_sync_message(&mut state, b"not a sync message"),
        Err(DocError::BadMessage(_))
    ));
    let big = vec![0x42u8; MAX_SYNC_MESSAGE + 1];
    assert!(matches!(
        doc.receive_sync_message(&mut state, &big),
        Err(DocError::MessageTooLarge { .. })
    ));
    assert!(PolicyDoc::load(b"garbage").is_err());
    Ok(())
}

#[test]
fn an_empty_peer_syncs_the_whole_document() -> TestResult {
    let mut a = PolicyDoc::genesis(&fixture())?;
    a.apply(&[Edit::SetQuorum { quorum: 3 }], "a")?;
    let mut b = PolicyDoc::empty();
    assert!(b.policy().is_err());
    sync_pair(&mut a, &mut b)?;
    assert_eq!(b.policy()?, a.policy()?);
    Ok(())
}

// ---------------------------------------------------------------- adoption

fn adopt(
    chain: &mut AdoptionChain,
    doc: &PolicyDoc,
    signers: &[u8],
) -> Result<AdoptionRecord, Box<dyn std::error::Error>> {
    let policy = doc.policy()?;
    let mut ballot = chain.ballot(&policy)?;
    let target = *ballot.target();
    for s in signers {
        ballot.add(&sign_adoption(&key(*s), target))?;
    }
    let record = ballot.into_record(doc.heads())?;
    chain.append(record.clone(), policy)?;
    Ok(record)
}

#[test]
fn a_version_is_adopted_only_with_a_quorum() -> TestResult {
    let doc = PolicyDoc::genesis(&fixture())?;
    let policy = doc.policy()?;
    let chain = AdoptionChain::new();
    let mut ballot = chain.ballot(&policy)?;
    let target = *ballot.target();
    assert_eq!(
        target,
        AdoptionTarget {
            sequence: 1,
            previous: None,
            policy: policy.hash()
        }
    );
    assert_eq!(ballot.add(&sign_adoption(&key(1), target))?, Added::Counted);
    assert_eq!(
        ballot.add(&sign_adoption(&key(1), target))?,
        Added::AlreadyCounted
    );
    assert!(!ballot.is_complete());
    let partial = ballot.clone().into_record(doc.heads());
    assert!(matches!(
        partial,
        Err(AdoptionError::QuorumNotReached {
            valid: 1,
            quorum: 2,
            ..
        })
    ));
    // A record carrying one signature is refused by any peer's chain.
    let one = AdoptionRecord {
        target,
        signatures: vec![SignerSignature {
            signer: pk(1),
            signature: sign_adoption(&key(1), target).signature,
        }],
        heads: doc.heads(),
    };
    let mut other = AdoptionChain::new();
    assert!(matches!(
        other.append(one, policy.clone()),
        Err(AdoptionError::QuorumNotReached { valid: 1, .. })
    ));
    assert!(other.current().is_none());

    ballot.add(&sign_adoption(&key(2), target))?;
    assert!(ballot.is_complete());
    let record = ballot.into_record(doc.heads())?;
    let mut chain = AdoptionChain::new();
    chain.append(record, policy.clone())?;
    assert_eq!(
        chain.current().map(AdoptedPolicy::hash),
        Some(policy.hash())
    );
    assert_eq!(
        chain.status(&policy.hash()),
        PolicyStatus::Current { sequence: 1 }
    );
    Ok(())
}

#[test]
fn forged_foreign_and_replayed_signatures_are_refused() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut chain = AdoptionChain::new();
    let genesis_record = adopt(&mut chain, &doc, &[1, 2])?;
    let genesis_target = genesis_record.target;

    doc.apply(&[Edit::SetBudget { budget: 0.5 }], "p")?;
    let policy = doc.policy()?;
    let mut ballot = chain.ballot(&policy)?;
    let target = *ballot.target();
    assert_eq!(target.sequence, 2);
    assert_eq!(target.previous, Some(genesis_target.policy));

    // Forged: a valid-looking signature by a committee key over other bytes.
    let mut forged = sign_adoption(&key(1), target);
    forged.signature.0[5] ^= 0x01;
    assert!(matches!(
        ballot.add(&forged),
        Err(AdoptionError::BadSignature { signer, .. }) if signer == pk(1)
    ));
    // Made by another key but claiming a committee member.
    let mut impostor = sign_adoption(&key(50), target);
    impostor.signer = pk(1);
    assert!(matches!(
        ballot.add(&impostor),
        Err(AdoptionError::BadSignature { .. })
    ));
    // Not on the committee.
    assert!(matches!(
        ballot.add(&sign_adoption(&key(50), target)),
        Err(AdoptionError::NotOnCommittee { size: 3, .. })
    ));
    // Replayed: the genesis signature of key 3 does not count for adoption n°2.
    let replayed = sign_adoption(&key(3), genesis_target);
    let err = ballot.add(&replayed).err();
    assert!(
        matches!(err, Some(AdoptionError::OtherTarget { .. })),
        "{err:?}"
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.contains("adoption n°1") && text.contains("adoption n°2"),
        "{text}"
    );
    // Re-targeted: the genesis signature bytes pasted onto the new target.
    let mut pasted = sign_adoption(&key(3), target);
    pasted.signature = genesis_record.signatures[0].signature;
    pasted.signer = genesis_record.signatures[0].signer;
    assert!(matches!(
        ballot.add(&pasted),
        Err(AdoptionError::BadSignature { .. })
    ));
    assert_eq!(ballot.count(), 0);

    // The genesis record itself replayed on top of the chain.
    assert!(matches!(
        chain.append(genesis_record.clone(), chain.entries()[0].policy.clone()),
        Err(AdoptionError::OutOfSequence {
            found: 1,
            expected: 2
        })
    ));
    Ok(())
}

#[test]
fn records_with_altered_parts_are_refused() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut chain = AdoptionChain::new();
    adopt(&mut chain, &doc, &[1, 2])?;
    doc.apply(&[Edit::SetQuorum { quorum: 3 }], "p")?;
    let policy = doc.policy()?;
    let mut ballot = chain.ballot(&policy)?;
    let target = *ballot.target();
    ballot.add(&sign_adoption(&key(1), target))?;
    ballot.add(&sign_adoption(&key(3), target))?;
    let record = ballot.into_record(doc.heads())?;

    let mut dup = record.clone();
    dup.signatures.push(dup.signatures[0].clone());
    assert!(matches!(
        chain.clone().append(dup, policy.clone()),
        Err(AdoptionError::DuplicateSigner { .. })
    ));

    let mut altered = policy.clone();
    altered.privacy.budget_micro = 9_000_000;
    assert!(matches!(
        chain.clone().append(record.clone(), altered),
        Err(AdoptionError::HashMismatch { .. })
    ));

    let mut wrong_prev = record.clone();
    wrong_prev.target.previous = Some(PolicyHash([7; 32]));
    assert!(matches!(
        chain.clone().append(wrong_prev, policy.clone()),
        Err(AdoptionError::WrongPrevious { sequence: 2, .. })
    ));

    let mut gap = record.clone();
    gap.target.sequence = 5;
    assert!(matches!(
        chain.clone().append(gap, policy.clone()),
        Err(AdoptionError::OutOfSequence {
            found: 5,
            expected: 2
        })
    ));

    chain.append(record, policy.clone())?;
    assert!(matches!(
        chain.ballot(&policy),
        Err(AdoptionError::AlreadyAdopted { sequence: 2, .. })
    ));
    Ok(())
}

#[test]
fn an_invalid_policy_cannot_be_adopted() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut chain = AdoptionChain::new();
    adopt(&mut chain, &doc, &[1, 2])?;
    doc.apply(
        &[Edit::RemoveMember { key: pk(HUB) }],
        "orphans the structure",
    )?;
    let invalid = doc.policy()?;
    assert!(matches!(
        chain.ballot(&invalid),
        Err(AdoptionError::Invalid(_))
    ));
    // Even with a quorum of good signatures over its hash.
    let target = chain.next_target(&invalid.hash());
    let record = AdoptionRecord {
        target,
        signatures: [1u8, 2]
            .iter()
            .map(|s| SignerSignature {
                signer: pk(*s),
                signature: sign_adoption(&key(*s), target).signature,
            })
            .collect(),
        heads: doc.heads(),
    };
    assert!(matches!(
        chain.append(record, invalid),
        Err(AdoptionError::Invalid(e)) if e.0.iter().any(|p| matches!(p, Problem::UnknownHub { .. }))
    ));
    Ok(())
}

#[test]
fn changing_the_committee_needs_the_old_committee() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut chain = AdoptionChain::new();
    adopt(&mut chain, &doc, &[1, 2])?;
    let replace: Vec<Edit> = [4u8, 5, 6]
        .iter()
        .map(|s| Edit::AddCommitteeMember {
            key: pk(*s),
            name: format!("Nouveau {s}"),
        })
        .chain(
            [1u8, 2, 3]
                .iter()
                .map(|s| Edit::RemoveCommitteeMember { key: pk(*s) }),
        )
        .collect();
    doc.apply(&replace, "new committee")?;
    let policy = doc.policy()?;
    let mut ballot = chain.ballot(&policy)?;
    let target = *ballot.target();
    assert!(matches!(
        ballot.add(&sign_adoption(&key(4), target)),
        Err(AdoptionError::NotOnCommittee { .. })
    ));
    ballot.add(&sign_adoption(&key(2), target))?;
    ballot.add(&sign_adoption(&key(3), target))?;
    chain.append(ballot.into_record(doc.heads())?, policy)?;

    // From now on the new committee adopts, the old one cannot.
    doc.apply(&[Edit::SetBudget { budget: 2.0 }], "p")?;
    let next = doc.policy()?;
    let mut ballot = chain.ballot(&next)?;
    let target = *ballot.target();
    assert!(matches!(
        ballot.add(&sign_adoption(&key(1), target)),
        Err(AdoptionError::NotOnCommittee { .. })
    ));
    ballot.add(&sign_adoption(&key(5), target))?;
    ballot.add(&sign_adoption(&key(6), target))?;
    chain.append(ballot.into_record(doc.heads())?, next)?;
    assert_eq!(chain.entries().len(), 3);
    Ok(())
}

#[test]
fn a_chain_reverifies_from_its_pinned_genesis_and_reports_status() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut chain = AdoptionChain::new();
    adopt(&mut chain, &doc, &[1, 2])?;
    let first = chain.current().map(AdoptedPolicy::hash).ok_or("empty")?;
    doc.apply(&[Edit::SetBudget { budget: 0.5 }], "p")?;
    adopt(&mut chain, &doc, &[2, 3])?;
    let second = chain.current().map(AdoptedPolicy::hash).ok_or("empty")?;
    doc.apply(&[Edit::SetBudget { budget: 0.25 }], "p")?;
    adopt(&mut chain, &doc, &[1, 3])?;

    let json = serde_json::to_vec(chain.entries())?;
    let entries: Vec<AdoptedPolicy> = serde_json::from_slice(&json)?;
    let again = AdoptionChain::verify_from(&first, entries.clone())?;
    assert_eq!(again, chain);
    assert!(matches!(
        AdoptionChain::verify_from(&second, entries.clone()),
        Err(ChainError {
            index: 0,
            source: AdoptionError::GenesisMismatch { .. },
            ..
        })
    ));
    // An altered signature anywhere in the chain fails verification at that entry.
    let mut tampered = entries.clone();
    tampered[1].record.signatures[1].signature.0[0] ^= 0x80;
    let err = AdoptionChain::verify(tampered).err();
    assert!(
        matches!(
            err,
            Some(ChainError {
                index: 1,
                sequence: 2,
                source: AdoptionError::BadSignature { .. }
            })
        ),
        "{err:?}"
    );

    assert_eq!(
        chain.status(&first),
        PolicyStatus::Superseded {
            sequence: 1,
            replaced_by: 2,
            is_previous: false,
            grace_days: 15
        }
    );
    assert!(matches!(
        chain.status(&second),
        PolicyStatus::Superseded {
            is_previous: true,
            replaced_by: 3,
            ..
        }
    ));
    assert_eq!(chain.status(&PolicyHash([0; 32])), PolicyStatus::NotAdopted);
    assert_eq!(chain.records_after(1).count(), 2);
    Ok(())
}

#[test]
fn a_peer_offline_during_an_adoption_catches_up() -> TestResult {
    let genesis = PolicyDoc::genesis(&fixture())?;
    let mut a = PolicyDoc::load(&genesis.save())?;
    let mut b = PolicyDoc::load(&genesis.save())?;
    let mut c = PolicyDoc::load(&genesis.save())?; // offline from now on
    let mut chain_a = AdoptionChain::new();
    let r1 = adopt(&mut chain_a, &a, &[1, 2])?;
    let mut chain_b = AdoptionChain::new();
    let mut chain_c = AdoptionChain::new();
    chain_b.append_from_document(r1.clone(), &b)?;
    chain_c.append_from_document(r1, &c)?;

    a.apply(&[Edit::SetBudget { budget: 0.7 }], "a proposes")?;
    sync_pair(&mut a, &mut b)?;
    b.apply(
        &[Edit::SetCalendar {
            submission_deadline_days: Some(5),
            superseded_grace_days: None,
        }],
        "b amends",
    )?;
    sync_pair(&mut a, &mut b)?;
    let r2 = adopt(&mut chain_a, &a, &[1, 3])?;
    for r in chain_a.records_after(chain_b.current().map_or(0, AdoptedPolicy::sequence)) {
        chain_b.append_from_document(r.clone(), &b)?;
    }
    // Later edits after the adoption do not change what was adopted.
    a.apply(&[Edit::SetBudget { budget: 0.1 }], "a proposes again")?;

    // C comes back: the record alone is not enough until the document is synced.
    assert!(matches!(
        chain_c.clone().append_from_document(r2.clone(), &c),
        Err(AdoptionError::Document(DocError::MissingChanges { .. }))
    ));
    c.apply(&[Edit::SetQuorum { quorum: 3 }], "c's offline edit")?;
    sync_pair(&mut c, &mut a)?;
    let missing: Vec<AdoptionRecord> = chain_a
        .records_after(chain_c.current().map_or(0, AdoptedPolicy::sequence))
        .cloned()
        .collect();
    for r in missing {
        chain_c.append_from_document(r, &c)?;
    }
    assert_eq!(chain_c, chain_a);
    assert_eq!(chain_b, chain_a);
    let adopted = &chain_c.current().ok_or("empty")?.policy;
    assert_eq!(adopted.privacy.budget_micro, 700_000);
    assert_eq!(adopted.calendar.submission_deadline_days, 5);
    assert_eq!(
        adopted.committee.quorum, 2,
        "c's later edit is a proposal, not adopted"
    );
    assert_eq!(c.policy()?.committee.quorum, 3);
    Ok(())
}

// ---------------------------------------------------------------- diff and join requests

#[test]
fn diff_lists_every_change() {
    let old = fixture();
    let mut new = old.clone();
    new.privacy.budget_micro = 500_000;
    new.indicators.remove(&Indicator::Orientations);
    new.indicators.insert(
        Indicator::Genres,
        IndicatorEntry::from_catalogue(Indicator::Genres, 2),
    );
    new.members.remove(&pk(NATIONAL));
    if let Some(m) = new.members.get_mut(&pk(STRUCTURE)) {
        m.commune = Some("69381".into());
    }
    new.committee.quorum = 3;
    let lines: Vec<String> = diff(&old, &new).iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            "privacy.budget : ε = 1 → ε = 0.5".to_owned(),
            "- indicateur orientations (Orientations vers une autre structure)".to_owned(),
            "+ indicateur genres (Bénéficiaires par genre), poids 2".to_owned(),
            // Members in key order.
            format!(
                "membre {} « Association Les Clés » : commune 69385 → 69381",
                pk(STRUCTURE).short()
            ),
            format!(
                "- membre {} « Niveau national » (national)",
                pk(NATIONAL).short()
            ),
            "committee.quorum : 2 → 3".to_owned(),
        ]
    );
    assert!(diff(&old, &old).is_empty());
}

fn join_details() -> JoinDetails {
    JoinDetails {
        key: pk(0),
        name: "Espace numérique de Vaise".into(),
        role: Role::Structure,
        pivot: Some("73282932000074".into()),
        commune: Some("69389".into()),
        place_id: Some("lieu-vaise".into()),
        hub: Some(pk(HUB)),
    }
}

#[test]
fn join_requests_become_member_edits() -> TestResult {
    let request = JoinRequest::sign(join_details(), &key(30));
    assert_eq!(request.details.key, pk(30));
    request.verify()?;
    let json = serde_json::to_string(&request)?;
    let back: JoinRequest = serde_json::from_str(&json)?;
    assert_eq!(back, request);

    let policy = fixture();
    let edit = request.to_edit(&pk(HUB), &policy)?;
    let mut doc = PolicyDoc::genesis(&policy)?;
    doc.apply(&[edit], "join")?;
    let after = doc.policy()?;
    assert_eq!(after.members[&pk(30)].hub, Some(pk(HUB)));
    assert_eq!(after.validate(), Ok(()));

    let mut altered = request.clone();
    altered.details.name = "Autre".into();
    assert!(matches!(
        altered.verify(),
        Err(JoinError::BadSignature { .. })
    ));
    assert!(matches!(
        request.to_edit(&pk(NATIONAL), &policy),
        Err(JoinError::OtherHub { .. })
    ));
    assert!(matches!(
        request.to_edit(&pk(HUB), &after),
        Err(JoinError::AlreadyMember { .. })
    ));
    Ok(())
}

// ---------------------------------------------------------------- properties

fn edit_strategy() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (1u32..=3000).prop_map(|m| Edit::SetBudget {
            budget: f64::from(m) / 1000.0
        }),
        (1u32..=100).prop_map(|k| Edit::SetBounds {
            max_rows_per_person: Some(k),
            max_duration_min: None,
            max_themes_per_row: None,
            max_materiel_per_row: None
        }),
        (0usize..6).prop_map(|i| Edit::AddIndicator {
            indicator: Indicator::MODULES[i],
            weight: 1
        }),
        (0usize..10, 1u32..50).prop_map(|(i, w)| Edit::SetWeight {
            indicator: Indicator::COMMON_CORE[i],
            weight: w
        }),
        (20u8..40).prop_map(|s| Edit::add_member(
            pk(s),
            Member {
                name: format!("Structure {s}"),
                role: Role::Structure,
                pivot: None,
                hub: Some(pk(HUB)),
                commune: None,
                place_id: None,
            }
        )),
        (1u32..=90).prop_map(|d| Edit::SetCalendar {
            submission_deadline_days: Some(d),
            superseded_grace_days: None
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// However peers' concurrent proposals are merged (any order of pairwise merges), every
    /// peer ends with the same snapshot hash.
    #[test]
    fn snapshot_hash_is_independent_of_merge_order(
        edits in proptest::collection::vec(proptest::collection::vec(edit_strategy(), 1..4), 2..5),
        order in Just(()).prop_perturb(|_, mut rng| {
            let mut v: Vec<usize> = (0..8).collect();
            for i in (1..v.len()).rev() {
                let j = (rng.next_u32() as usize) % (i + 1);
                v.swap(i, j);
            }
            v
        }),
    ) {
        let genesis = PolicyDoc::genesis(&fixture()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut peers = Vec::new();
        for (i, peer_edits) in edits.iter().enumerate() {
            let mut doc = PolicyDoc::load(&genesis.save()).map_err(|e| TestCaseError::fail(e.to_string()))?;
            for e in peer_edits {
                // A precondition may fail (e.g. adding a module twice): that edit is skipped.
                let _ = doc.apply(std::slice::from_ref(e), &format!("peer {i}"));
            }
            peers.push(doc);
        }
        // Merge everything into one document in a given order, and in the reverse order.
        let n = peers.len();
        let forward: Vec<usize> = order.iter().copied().filter(|&i| i < n).collect();
        let mut one = PolicyDoc::load(&genesis.save()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for &i in &forward {
            one.merge(&peers[i]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let mut two = PolicyDoc::load(&genesis.save()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for &i in forward.iter().rev() {
            two.merge(&peers[i]).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        // And by sync messages between the first peer and each other in turn.
        let mut first = PolicyDoc::load(&peers[0].save()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        for peer in peers.iter_mut().skip(1) {
            sync_pair(&mut first, peer).map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        let h1 = one.policy().map_err(|e| TestCaseError::fail(e.to_string()))?.hash();
        let h2 = two.policy().map_err(|e| TestCaseError::fail(e.to_string()))?.hash();
        let h3 = first.policy().map_err(|e| TestCaseError::fail(e.to_string()))?.hash();
        prop_assert_eq!(h1, h2);
        prop_assert_eq!(h1, h3);
        prop_assert_eq!(one.heads(), first.heads());
    }

    /// Any single-bit change to a signature, or to the step it claims, makes it refused.
    #[test]
    fn any_altered_signature_is_rejected(byte in 0usize..64, bit in 0u8..8, field in 0u8..4) {
        let doc = PolicyDoc::genesis(&fixture()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let policy = doc.policy().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let chain = AdoptionChain::new();
        let mut ballot = chain.ballot(&policy).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let target = *ballot.target();
        let mut sig = sign_adoption(&key(1), target);
        match field {
            0 => sig.signature.0[byte] ^= 1 << bit,
            1 => sig.target.policy.0[byte % 32] ^= 1 << bit,
            2 => sig.target.sequence ^= 1 << (bit + 1),
            _ => sig.signer.0[byte % 32] ^= 1 << bit,
        }
        prop_assert!(ballot.add(&sig).is_err());
        prop_assert_eq!(ballot.count(), 0);
    }

    /// The canonical snapshot reads back to the same policy and bytes.
    #[test]
    fn canonical_snapshot_round_trips(budget in 1u64..=10_000_000, weight in 1u32..=1_000_000, name in "[ -~é]{1,40}") {
        let mut p = fixture();
        p.privacy.budget_micro = budget;
        if let Some(e) = p.indicators.get_mut(&Indicator::Thematiques) { e.weight = weight; }
        if let Some(m) = p.members.get_mut(&pk(HUB)) { m.name = name; }
        let bytes = p.canonical_bytes();
        let back = Policy::from_canonical_bytes(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &p);
        prop_assert_eq!(back.hash(), p.hash());
        // And through the Automerge document.
        let doc = PolicyDoc::genesis(&p).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(doc.policy().map_err(|e| TestCaseError::fail(e.to_string()))?.hash(), p.hash());
    }
}

#[test]
fn records_from_peers_are_checked_before_their_content_arrives() -> TestResult {
    let mut doc = PolicyDoc::genesis(&fixture())?;
    let mut chain = AdoptionChain::new();
    let genesis = adopt(&mut chain, &doc, &[1, 2])?;
    // A genesis is never taken from a peer.
    assert!(AdoptionChain::new().check_record(&genesis).is_err());
    // A replay of the genesis record on a chain that holds it is out of sequence.
    assert!(matches!(
        chain.check_record(&genesis),
        Err(AdoptionError::OutOfSequence {
            found: 1,
            expected: 2
        })
    ));
    doc.apply(&[Edit::SetQuorum { quorum: 3 }], "x")?;
    let policy = doc.policy()?;
    let target = chain.next_target(&policy.hash());
    let sig = |s: u8| SignerSignature {
        signer: pk(s),
        signature: sign_adoption(&key(s), target).signature,
    };
    let record = |signatures: Vec<SignerSignature>| AdoptionRecord {
        target,
        signatures,
        heads: doc.heads(),
    };
    chain.check_record(&record(vec![sig(1), sig(3)]))?;
    // Below the quorum, a duplicated signer, a forged signature, a non-member, a replayed
    // genesis signature: refused.
    assert!(matches!(
        chain.check_record(&record(vec![sig(1)])),
        Err(AdoptionError::QuorumNotReached {
            valid: 1,
            quorum: 2,
            ..
        })
    ));
    assert!(matches!(
        chain.check_record(&record(vec![sig(1), sig(1)])),
        Err(AdoptionError::DuplicateSigner { .. })
    ));
    let mut forged = sig(3);
    forged.signature.0[0] ^= 1;
    assert!(matches!(
        chain.check_record(&record(vec![sig(1), forged])),
        Err(AdoptionError::BadSignature { .. })
    ));
    assert!(matches!(
        chain.check_record(&record(vec![sig(1), sig(HUB)])),
        Err(AdoptionError::NotOnCommittee { .. })
    ));
    let replayed = record(genesis.signatures.clone());
    assert!(matches!(
        chain.check_record(&replayed),
        Err(AdoptionError::BadSignature { .. })
    ));
    let mut wrong_previous = record(vec![sig(1), sig(2)]);
    wrong_previous.target.previous = Some(policy.hash());
    assert!(chain.check_record(&wrong_previous).is_err());
    Ok(())
}

fn module_edit(id: &str, kind: &str, categories: &[&str]) -> Edit {
    Edit::AddModuleIndicator {
        id: id.into(),
        module: "numerique_responsable".into(),
        kind: kind.into(),
        categories: categories.iter().map(|c| (*c).to_owned()).collect(),
        max_contribution: 5,
        weight: 2,
    }
}

#[test]
fn module_indicators_are_validated_and_merge_from_concurrent_proposals() -> TestResult {
    let genesis = fixture();
    let hash_before = genesis.hash();
    let mut a = PolicyDoc::genesis(&genesis)?;
    // No module indicator: the snapshot (and hash) is the one without the field.
    assert_eq!(a.policy()?.hash(), hash_before);
    let mut b = PolicyDoc::genesis(&genesis)?;
    a.apply(&[module_edit("reparations", "count", &[])], "a")?;
    b.apply(
        &[module_edit(
            "equipements_donnes",
            "count_by",
            &["ordinateur", "telephone"],
        )],
        "b",
    )?;
    a.merge(&b)?;
    let merged = a.policy()?;
    assert_eq!(merged.modules.len(), 2, "{:?}", merged.modules);
    merged.validate()?;
    assert_ne!(merged.hash(), hash_before);
    let shown: Vec<String> = diff(&genesis, &merged)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        shown.contains(&"+ indicateur de module equipements_donnes (module numerique_responsable, count_by : ordinateur, telephone), borne 5 par personne, poids 2".to_owned()),
        "{shown:?}"
    );
    assert_eq!(shown.len(), 2, "{shown:?}");
    // Taken again: refused.
    assert!(
        a.apply(&[module_edit("reparations", "count", &[])], "again")
            .is_err()
    );

    let problems = |edit: Edit| -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let mut d = PolicyDoc::genesis(&genesis)?;
        d.apply(&[edit], "x")?;
        Ok(d.policy()?
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect())
    };
    let p = problems(module_edit("Bad-Id", "count", &[]))?;
    assert!(
        p.iter()
            .any(|p| p.starts_with("modules.Bad-Id: not an identifier")),
        "{p:?}"
    );
    let p = problems(module_edit("genres", "count", &[]))?;
    assert!(p.iter().any(|p| p.contains("compiled catalogue")), "{p:?}");
    let p = problems(module_edit("x", "mean", &[]))?;
    assert!(p.iter().any(|p| p.starts_with("modules.x.kind")), "{p:?}");
    let p = problems(module_edit("x", "count_by", &["a"]))?;
    assert!(
        p.iter()
            .any(|p| p.starts_with("modules.x.categories: 1 categories")),
        "{p:?}"
    );
    let p = problems(module_edit("x", "count_by", &["a", "a"]))?;
    assert!(p.iter().any(|p| p.contains("listed twice")), "{p:?}");
    let p = problems(module_edit("x", "sum", &["a", "b"]))?;
    assert!(p.iter().any(|p| p.contains("has no categories")), "{p:?}");
    let p = problems(Edit::AddModuleIndicator {
        id: "x".into(),
        module: "m".into(),
        kind: "sum".into(),
        categories: Vec::new(),
        max_contribution: 0,
        weight: 2_000_000,
    })?;
    assert!(
        p.iter()
            .any(|p| p.starts_with("modules.x.max_contribution")),
        "{p:?}"
    );
    assert!(p.iter().any(|p| p.starts_with("modules.x.weight")), "{p:?}");
    // A policy with invalid module indicators cannot be adopted.
    let mut d = PolicyDoc::genesis(&genesis)?;
    d.apply(&[module_edit("x", "mean", &[])], "x")?;
    assert!(AdoptionChain::new().ballot(&d.policy()?).is_err());
    Ok(())
}
