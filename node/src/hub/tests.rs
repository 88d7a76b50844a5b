//! Tests of the hub's storage: the contribution file and its batch records, a crash between
//! the two, a damaged file, and stores written before the file existed.

use std::error::Error;
use std::path::Path;

use maillage_protocol::{Cell, Indicator, Mechanism, Period, Release, SignedRelease};

use super::*;
use crate::identity::Identity;
use crate::members::{Member, Members};
use crate::node::{InitOptions, Node};

type Result<T = ()> = std::result::Result<T, Box<dyn Error>>;

const NOW: u64 = 1_775_000_000;

fn march() -> Period {
    Period::new(2026, 3).expect("a valid period")
}

fn structure(n: u32) -> Identity {
    let mut seed = [9u8; 32];
    seed[..4].copy_from_slice(&n.to_be_bytes());
    Identity::from_seed(seed)
}

fn release(n: u32, period: Period, salt: i64) -> Result<Vec<u8>> {
    let mut cells = Vec::new();
    for &indicator in Indicator::COMMON_CORE {
        let categories = indicator.categories();
        let slots: Vec<Option<String>> = if categories.is_empty() {
            vec![None]
        } else {
            categories.iter().map(|c| Some((*c).to_owned())).collect()
        };
        for category in slots {
            cells.push(Cell {
                indicator,
                category,
                value: salt + cells.len() as i64,
                scale: 10.0,
                ci95_half_width: 30.0,
            });
        }
    }
    let who = structure(n);
    let release = Release {
        signer: who.public(),
        period,
        params: "maillage-core-v1/eps=1.0/laplace".into(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: NOW - 100,
        cells,
    };
    Ok(SignedRelease::sign(release, who.signing_key())?.to_bytes())
}

/// A hub node whose members are structures 0 to `members - 1`.
fn hub_node(dir: &Path, members: u32) -> Result<Node> {
    let node = Node::init(
        &dir.join("hub"),
        InitOptions {
            role: Role::Hub,
            name: "Hub".into(),
            code_insee: None,
            pivot: None,
        },
    )?;
    let mut list = Members::load(node.dir())?;
    for n in 0..members {
        list.add(Member {
            key: structure(n).public_hex(),
            name: format!("Structure {n}"),
            role: Role::Structure,
            code_insee: None,
        })?;
    }
    Ok(node)
}

fn accepted(outcomes: &[Outcome]) -> Result<Vec<Accepted>> {
    outcomes
        .iter()
        .map(|o| o.clone().map_err(|r| format!("refused: {r}").into()))
        .collect()
}

/// Everything a reader of the hub sees: every leaf's bytes and receipt, the checkpoints and
/// the equivocations, as bytes.
fn snapshot(hub: &Hub<'_>) -> Result<Vec<Vec<u8>>> {
    let mut out = vec![hub.log().root().to_vec()];
    for index in 0..hub.log_size() {
        let (id, bytes) = hub.contribution_wire(index)?;
        let receipt = hub.receipt_of(&id)?.ok_or("no receipt")?;
        receipt.verify()?;
        out.push(bytes);
        out.push(receipt.to_bytes());
    }
    for checkpoint in hub.checkpoints()? {
        out.push(checkpoint.to_bytes());
    }
    for (first, second) in hub.equivocations()? {
        out.push(first.to_bytes());
        out.push(second.to_bytes());
    }
    Ok(out)
}

#[test]
fn a_reopened_hub_reads_back_the_same_log() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 4)?;
    let first = {
        let mut hub = Hub::open(&node)?;
        let batch = vec![release(0, march(), 1)?, release(1, march(), 2)?];
        accepted(&hub.accept_batch(&batch, NOW)?)?;
        // A resend, a new one, and a second March release of structure 1 (an equivocation).
        let batch = vec![
            release(0, march(), 1)?,
            release(2, march(), 3)?,
            release(1, march(), 99)?,
        ];
        let outcomes = hub.accept_batch(&batch, NOW + 1)?;
        assert!(matches!(&outcomes[0], Ok(a) if !a.new));
        assert!(matches!(&outcomes[1], Ok(a) if a.new));
        assert!(matches!(&outcomes[2], Err(Refusal::Equivocation { .. })));
        assert_eq!(hub.log_size(), 3);
        snapshot(&hub)?
    };
    drop(node);
    let node = Node::open(&dir.path().join("hub"))?;
    let mut hub = Hub::open(&node)?;
    assert_eq!(snapshot(&hub)?, first);
    // The resent release gets its first receipt again after the reopen.
    let again = hub.accept_batch(&[release(0, march(), 1)?], NOW + 2)?;
    let again = accepted(&again)?;
    assert!(!again[0].new);
    assert_eq!(again[0].receipt.checkpoint().checkpoint().tree_size, 2);
    accepted(&hub.accept_batch(&[release(3, march(), 4)?], NOW + 3)?)?;
    assert_eq!(hub.log_size(), 4);
    Ok(())
}

#[test]
fn bytes_of_a_batch_whose_record_never_reached_the_store_are_never_read() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 4)?;
    let path = dir.path().join("hub").join(CONTRIBUTIONS_FILE);
    let before = {
        let mut hub = Hub::open(&node)?;
        accepted(&hub.accept_batch(&[release(0, march(), 1)?], NOW)?)?;
        // A crash after step 1 of a batch: its bytes are in the file and synced, its record
        // is not in sled.
        let orphan = release(1, march(), 2)?;
        let leaf = NewLeaf {
            id: ReleaseId::from_bytes([7; 32]),
            key: &[1; 39],
            bytes: &orphan,
        };
        hub.ledger.stage(1, 2, &[leaf])?;
        snapshot(&hub)?
    };
    let grown = std::fs::metadata(&path)?.len();
    drop(node);
    let node = Node::open(&dir.path().join("hub"))?;
    let mut hub = Hub::open(&node)?;
    assert_eq!(hub.log_size(), 1, "the orphan batch is not in the log");
    assert_eq!(snapshot(&hub)?, before);
    // The next batch is written over the orphan's bytes.
    let outcomes =
        accepted(&hub.accept_batch(&[release(2, march(), 3)?, release(3, march(), 4)?], NOW + 1)?)?;
    assert_eq!(outcomes.len(), 2);
    assert_eq!(hub.contribution_wire(1)?.1, release(2, march(), 3)?);
    assert_eq!(hub.contribution_wire(2)?.1, release(3, march(), 4)?);
    let used = [
        release(0, march(), 1)?,
        release(2, march(), 3)?,
        release(3, march(), 4)?,
    ]
    .iter()
    .map(|r| r.len() as u64)
    .sum::<u64>();
    assert!(
        grown < used,
        "the orphan's bytes were overwritten, not skipped"
    );
    assert_eq!(std::fs::metadata(&path)?.len(), used);
    let after = snapshot(&hub)?;
    drop(hub);
    drop(node);
    let node = Node::open(&dir.path().join("hub"))?;
    assert_eq!(snapshot(&Hub::open(&node)?)?, after);
    Ok(())
}

#[test]
fn a_truncated_contribution_file_is_reported_at_open() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 2)?;
    {
        let mut hub = Hub::open(&node)?;
        accepted(&hub.accept_batch(&[release(0, march(), 1)?, release(1, march(), 2)?], NOW)?)?;
    }
    let path = dir.path().join("hub").join(CONTRIBUTIONS_FILE);
    let len = std::fs::metadata(&path)?.len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)?
        .set_len(len - 10)?;
    let err = Hub::open(&node)
        .err()
        .ok_or("a truncated file was accepted")?;
    let message = err.to_string();
    assert!(
        matches!(err, HubError::Corrupt(_))
            && message.contains(CONTRIBUTIONS_FILE)
            && message.contains(&format!("holds {} bytes", len - 10))
            && message.contains(&format!("name {len}"))
            && message.contains("backup"),
        "{message}"
    );
    Ok(())
}

#[test]
fn a_store_written_before_the_contribution_file_is_read_and_extended() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 3)?;
    let legacy = [release(0, march(), 1)?, release(1, march(), 2)?];
    {
        // Two leaves written the old way: `L`, `I`, `S`, the first one's bytes in `W` (by
        // index), the second one's in `R` (by id, the oldest layout), and their checkpoint.
        let mut hub = Hub::open(&node)?;
        for (index, bytes) in legacy.iter().enumerate() {
            let release = SignedRelease::decode(bytes)?;
            let id = release.id();
            let index = index as u64;
            let t = &hub.trees;
            t.log.insert(index.to_be_bytes(), id.as_bytes())?;
            if index == 0 {
                t.wires.insert(index.to_be_bytes(), bytes)?;
            } else {
                t.legacy_contents.insert(id.as_bytes(), bytes)?;
            }
            let r = release.release();
            t.by_signer
                .insert(signer_period_key(&r.signer, r.period), id.as_bytes())?;
            let mut entry = index.to_be_bytes().to_vec();
            entry.extend_from_slice(&2u64.to_be_bytes());
            t.index.insert(id.as_bytes(), entry)?;
            hub.log.append_leaf_hash(contribution_leaf_hash(&id));
        }
        hub.checkpoint(NOW)?;
    }
    let mut hub = Hub::open(&node)?;
    assert_eq!(hub.log_size(), 2);
    for (index, bytes) in legacy.iter().enumerate() {
        assert_eq!(&hub.contribution_wire(index as u64)?.1, bytes);
    }
    let outcomes = hub.accept_batch(
        &[
            legacy[0].clone(),
            release(1, march(), 77)?,
            release(2, march(), 3)?,
        ],
        NOW + 1,
    )?;
    // The old leaf's receipt again, an equivocation against the old leaf, a new leaf.
    assert!(
        matches!(&outcomes[0], Ok(a) if !a.new && a.receipt.checkpoint().checkpoint().tree_size == 2)
    );
    assert!(matches!(&outcomes[1], Err(Refusal::Equivocation { .. })));
    assert!(matches!(&outcomes[2], Ok(a) if a.new));
    let after = snapshot(&hub)?;
    assert_eq!(hub.equivocations()?.len(), 1);
    drop(hub);
    assert_eq!(snapshot(&Hub::open(&node)?)?, after);
    Ok(())
}

#[test]
fn large_batches_use_direct_io_and_mix_with_small_ones() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 60)?;
    let big = |months: std::ops::Range<u8>| -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for month in months {
            for n in 0..60 {
                out.push(release(
                    n,
                    Period::new(2025, month).ok_or("period")?,
                    i64::from(n),
                )?);
            }
        }
        Ok(out)
    };
    let first = big(1..3)?;
    assert!(first.iter().map(Vec::len).sum::<usize>() >= 256 * 1024);
    let mut sent = Vec::new();
    let mut hub = Hub::open(&node)?;
    let direct = hub.ledger.direct.is_some();
    accepted(&hub.accept_batch(&first, NOW)?)?;
    sent.extend(first);
    let small = vec![release(0, march(), 5)?];
    accepted(&hub.accept_batch(&small, NOW + 1)?)?;
    sent.extend(small);
    let second = big(4..6)?;
    accepted(&hub.accept_batch(&second, NOW + 2)?)?;
    let start_of_second = sent.len() as u64;
    sent.extend(second);
    if direct {
        // Written at a 4 KiB boundary (after the small batch's unaligned end).
        let (offset, _) = match hub.ledger.leaves[start_of_second as usize].location {
            ledger::Location::File { offset, len } => (offset, len),
            ledger::Location::Sled => return Err("a new leaf in sled".into()),
        };
        assert_eq!(offset % 4096, 0);
        assert!(hub.ledger.direct.is_some(), "direct I/O kept working");
    }
    for (index, bytes) in sent.iter().enumerate() {
        assert_eq!(&hub.contribution_wire(index as u64)?.1, bytes);
    }
    // The batches' records are small sled values (120 leaves: two records), so that no sled
    // node becomes a blob file (which sled does not fsync).
    let records: Vec<usize> = hub
        .trees
        .batches
        .iter()
        .map(|e| e.map(|(_, v)| v.len()))
        .collect::<sled::Result<_>>()?;
    assert_eq!(records.len(), 2 + 1 + 2, "{records:?}");
    assert!(records.iter().all(|&len| len < 8 * 1024), "{records:?}");
    let before = snapshot(&hub)?;
    drop(hub);
    drop(node);
    let node = Node::open(&dir.path().join("hub"))?;
    let hub = Hub::open(&node)?;
    assert_eq!(hub.log_size(), sent.len() as u64);
    assert_eq!(snapshot(&hub)?, before);
    Ok(())
}

#[test]
fn a_member_added_while_the_hub_is_open_is_admitted_at_the_next_batch() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 2)?;
    let mut hub = Hub::open(&node)?;
    let outcomes = hub.accept_batch(&[release(2, march(), 1)?], NOW)?;
    assert!(
        matches!(&outcomes[0], Err(Refusal::NotMember { .. })),
        "{outcomes:?}"
    );
    // Another process (`maillage members add`) rewrites members.json.
    Members::load(node.dir())?.add(Member {
        key: structure(2).public_hex(),
        name: "Structure 2".into(),
        role: Role::Structure,
        code_insee: None,
    })?;
    accepted(&hub.accept_batch(&[release(2, march(), 1)?], NOW + 1)?)?;
    assert_eq!(hub.log_size(), 1);
    Ok(())
}

#[test]
fn a_member_may_only_send_its_own_releases() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 2)?;
    let mut hub = Hub::open(&node)?;
    let theirs = release(1, march(), 1)?;
    let mine = release(0, march(), 2)?;
    let sender = structure(0).public();
    let outcomes = hub.accept_from(&[theirs, mine], Some(&[sender, sender]), NOW)?;
    match &outcomes[0] {
        Err(e @ Refusal::NotTheSender { sender: s, signer }) => {
            assert_eq!(s, &structure(0).public_hex());
            assert_eq!(signer, &structure(1).public_hex());
            assert!(
                e.to_string().contains("only submit its own releases"),
                "{e}"
            );
        }
        other => return Err(format!("{other:?}").into()),
    }
    assert!(matches!(&outcomes[1], Ok(a) if a.new));
    assert_eq!(hub.log_size(), 1);
    Ok(())
}

/// A hub's aggregate lists every member: with 1,250 it is larger than what sled keeps
/// durable in one value (sled writes nodes over 128 KiB to blob files it never syncs). It is
/// stored in small parts and read back whole, also after a reopen.
#[test]
fn a_large_aggregate_is_stored_in_small_parts() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 1250)?;
    let aggregate = {
        let mut hub = Hub::open(&node)?;
        let batch: Vec<Vec<u8>> = (0..1250)
            .map(|n| release(n, march(), i64::from(n)))
            .collect::<Result<_>>()?;
        accepted(&hub.accept_batch(&batch, NOW)?)?;
        let aggregate = hub.aggregate(march(), NOW + 10)?;
        let len = aggregate.to_bytes().len();
        assert!(len > 128 * 1024, "{len} bytes");
        assert_eq!(aggregate.aggregate().contributed.len(), 1250);
        aggregate.to_bytes()
    };
    node.store.flush()?;
    assert_eq!(node.store.blob_files(), 0, "sled wrote blob files");
    drop(node);
    let node = Node::open(&dir.path().join("hub"))?;
    let mut hub = Hub::open(&node)?;
    let latest = hub.latest_aggregate(march())?.map(|a| a.to_bytes());
    assert_eq!(latest.as_ref(), Some(&aggregate));
    // Asked again at the same log size: the stored one, unchanged.
    assert_eq!(hub.aggregate(march(), NOW + 20)?.to_bytes(), aggregate);
    Ok(())
}

/// Refused contributions are kept in parts (a refused hub aggregate may be large) and read
/// back whole, next to values stored whole by earlier versions.
#[test]
fn refused_contributions_are_kept_in_parts_and_read_back_whole() -> Result {
    let dir = tempfile::tempdir()?;
    let node = hub_node(dir.path(), 1)?;
    let table = Table {
        tree: node.store.tree("parts_test")?,
        prefix: b'E',
    };
    let key = |n: u8| vec![n; EQUIVOCATION_KEY_LEN];
    let big: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let mut batch = sled::Batch::default();
    table.put_parts(&mut batch, &key(1), b"");
    table.put_parts(&mut batch, &key(3), &big);
    table.put_parts(&mut batch, &key(4), b"small");
    table.tree.apply_batch(batch)?;
    // As a store written before parts keeps it.
    table.insert(key(2), &big[..5000])?;
    for entry in table.iter() {
        let (key, value) = entry?;
        assert!(key.len() == EQUIVOCATION_KEY_LEN || value.len() <= crate::store::PART_BYTES);
    }
    let values = table.values_in_parts(EQUIVOCATION_KEY_LEN)?;
    assert_eq!(
        values,
        vec![
            (key(1), Vec::new()),
            (key(2), big[..5000].to_vec()),
            (key(3), big.clone()),
            (key(4), b"small".to_vec()),
        ]
    );
    Ok(())
}
