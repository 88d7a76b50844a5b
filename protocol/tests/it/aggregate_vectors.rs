//! Fixed test vectors for signed aggregates and an equivocation proof, frozen in
//! `tests/vectors/aggregate-v1.json` (encoding version 1, still read) and
//! `tests/vectors/aggregate-v2.json` (version 2: a hub's first aggregate, its revision, the
//! national aggregate over the revision).
//!
//! The bytes were produced by this crate and checked independently: a Python script assembled
//! the canonical CBOR of every vector by hand from the layout in the `aggregate` module's
//! documentation and the JSON view, and Python's `cryptography` Ed25519 verified the signatures
//! over `"maillage/aggregate/v1\0" ‖ canonical bytes` and gave the same ids.
//! The version 2 vectors were checked the same way (canonical CBOR assembled by hand from the
//! JSON view, Ed25519 with `cryptography`, SHA-256 ids), and their Merkle roots and consistency
//! proof recomputed from RFC 9162's definitions.
//!
//! Any change to the canonical encoding, the signing domain, the aggregate id or the JSON view
//! makes `aggregate_vectors_are_stable` fail. If the change is deliberate, it is a new encoding
//! version: bump `aggregate::VERSION` and the domain tag, then write new vectors with
//! `cargo test -p maillage-protocol --test it -- --ignored regenerate_aggregate_vectors`.

use std::error::Error;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use maillage_protocol::merkle::EMPTY_ROOT;
use maillage_protocol::{
    Aggregate, AggregateCell, Cell, ContributionRef, EquivocationProof, Indicator, Level,
    Mechanism, Period, Release, ReleaseId, SignedAggregate, SignedRelease,
};
use serde::Serialize;
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/aggregate-v1.json")
}

fn hex_field(vector: &Value, name: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    let text = vector[name]
        .as_str()
        .ok_or_else(|| format!("vector field {name} is not a string"))?;
    Ok(hex::decode(text)?)
}

fn secret(vector: &Value) -> Result<SigningKey, Box<dyn Error>> {
    let secret: [u8; 32] = hex_field(vector, "test_only_secret_key")?
        .try_into()
        .map_err(|_| "secret length")?;
    Ok(SigningKey::from_bytes(&secret))
}

/// Every vector reads from JSON and bytes, signs again to the same signature, and writes back.
fn check_vectors(vectors: &[Value]) -> TestResult {
    for vector in vectors {
        let name = vector["name"].as_str().unwrap_or("?");
        let key = secret(vector)?;

        // The JSON view reads, verifies and gives the frozen canonical bytes.
        let from_json = SignedAggregate::from_json_and_verify(&vector["aggregate"].to_string())?;
        assert_eq!(
            from_json.canonical_aggregate(),
            hex_field(vector, "canonical_aggregate")?,
            "{name}"
        );

        // Signing again gives the frozen signature (Ed25519 is deterministic).
        let signed = SignedAggregate::sign(from_json.aggregate().clone(), &key)?;
        assert_eq!(
            signed.signature().to_bytes().to_vec(),
            hex_field(vector, "signature")?,
            "{name}"
        );
        assert_eq!(signed, from_json, "{name}");

        // The wire bytes and the id.
        let wire = hex_field(vector, "signed_aggregate")?;
        assert_eq!(signed.to_bytes(), wire, "{name}");
        assert_eq!(
            signed.id().as_bytes().to_vec(),
            hex_field(vector, "aggregate_id")?,
            "{name}"
        );
        assert_eq!(SignedAggregate::decode_and_verify(&wire)?, signed, "{name}");

        // The JSON view writes back to the same document.
        let written: Value = serde_json::from_str(&signed.to_json_pretty())?;
        assert_eq!(written, vector["aggregate"], "{name}");
    }
    Ok(())
}

#[test]
fn aggregate_vectors_are_stable() -> TestResult {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(vectors_path())?)?;
    let vectors = file["vectors"].as_array().ok_or("no vectors")?;
    assert_eq!(vectors.len(), 3);
    check_vectors(vectors)?;
    // The national vector sums the hub vector, by its aggregate id.
    let hub_id = vectors[0]["aggregate_id"].as_str().ok_or("hub id")?;
    assert_eq!(
        vectors[1]["aggregate"]["contributions"][0]["id"].as_str(),
        Some(hub_id)
    );

    let equivocation = &file["equivocation"];
    let proof = EquivocationProof::from_json_and_verify(&equivocation["proof"].to_string())?;
    assert_eq!(
        proof.signer(),
        &secret(equivocation)?.verifying_key(),
        "equivocation signer"
    );
    assert_eq!(
        proof.first().id().to_string(),
        equivocation["first_release_id"].as_str().unwrap_or("?")
    );
    assert_eq!(
        proof.second().id().to_string(),
        equivocation["second_release_id"].as_str().unwrap_or("?")
    );
    let written: Value = serde_json::from_str(&proof.to_json_pretty())?;
    assert_eq!(written, equivocation["proof"]);
    Ok(())
}

/// The test-only key `seed` repeated.
fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn sorted_keys(seeds: &[u8]) -> Vec<ed25519_dalek::VerifyingKey> {
    let mut keys: Vec<_> = seeds.iter().map(|&s| key(s).verifying_key()).collect();
    keys.sort_by_key(|k| *k.as_bytes());
    keys
}

fn cell(
    indicator: Indicator,
    category: Option<&str>,
    sum: i64,
    variance: f64,
    ci95_half_width: f64,
) -> AggregateCell {
    AggregateCell {
        indicator,
        category: category.map(str::to_owned),
        sum,
        variance,
        ci95_half_width,
    }
}

/// A vector's name, its signer's secret key and its aggregate.
type Named = (&'static str, [u8; 32], Aggregate);

/// The aggregates the vectors are made of: a hub's, the national one that sums it, and a hub's
/// of a period in which nobody contributed.
fn vector_aggregates() -> Result<Vec<Named>, Box<dyn Error>> {
    let hub_secret: [u8; 32] = std::array::from_fn(|i| i as u8);
    let hub = SigningKey::from_bytes(&hub_secret).verifying_key();
    let national_secret = [0x4e; 32];
    let october = Period::new(2026, 10).ok_or("period")?;
    let hub_aggregate = Aggregate {
        signer: hub,
        level: Level::Hub,
        period: october,
        checkpoint_size: 8,
        checkpoint_root: hex::decode(
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        )?
        .try_into()
        .map_err(|_| "root length")?,
        contributions: vec![
            ContributionRef {
                index: 2,
                id: "72a584a3414e95fae46ab3a93a6ce3a5194fe5b1b8a65fde7b2231d9029de427".parse()?,
                signer: key(0x42).verifying_key(),
            },
            ContributionRef {
                index: 5,
                id: ReleaseId::from_bytes([0x05; 32]),
                signer: key(0x43).verifying_key(),
            },
            ContributionRef {
                index: 7,
                id: ReleaseId::from_bytes([0x07; 32]),
                signer: key(0x44).verifying_key(),
            },
        ],
        cells: vec![
            cell(Indicator::Activites, Some("individuel"), 123, 96.0, 19.2),
            cell(Indicator::Activites, Some("collectif"), -7, 96.0, 19.2),
            cell(
                Indicator::Beneficiaires,
                None,
                111,
                24.0,
                9.601_652_519_764_063,
            ),
            cell(Indicator::DureeMinutes, None, i64::MIN, 345_600.0, 0.0),
            cell(
                Indicator::Genres,
                Some("masculin"),
                42,
                0.1,
                9_007_199_254_740_992.0,
            ),
            cell(Indicator::Genres, Some("feminin"), 66, 24.0, 5e-324),
            cell(Indicator::Genres, Some("non_communique"), 0, 0.0, 0.0),
        ],
        contributed: sorted_keys(&[0x42, 0x43, 0x44]),
        missing: sorted_keys(&[0x45, 0x46]),
        created_at: 1_793_491_260,
        supersedes: None,
        structures: None,
    };
    let hub_id =
        SignedAggregate::sign(hub_aggregate.clone(), &SigningKey::from_bytes(&hub_secret))?.id();
    let national = Aggregate {
        signer: key(0x4e).verifying_key(),
        level: Level::National,
        period: october,
        checkpoint_size: 1,
        checkpoint_root: [0x9c; 32],
        contributions: vec![ContributionRef {
            index: 0,
            id: hub_id.as_contribution_id(),
            signer: hub,
        }],
        cells: hub_aggregate.cells[2..4].to_vec(),
        contributed: vec![hub],
        missing: sorted_keys(&[0x48]),
        created_at: 1_793_577_600,
        supersedes: None,
        structures: None,
    };
    let empty = Aggregate {
        signer: hub,
        level: Level::Hub,
        period: Period::new(2027, 1).ok_or("period")?,
        checkpoint_size: 0,
        checkpoint_root: EMPTY_ROOT,
        contributions: vec![],
        cells: vec![],
        contributed: vec![],
        missing: sorted_keys(&[0x42, 0x43, 0x44, 0x45, 0x46]),
        created_at: 1_801_440_000,
        supersedes: None,
        structures: None,
    };
    Ok(vec![
        ("hub-three-of-five", hub_secret, hub_aggregate),
        ("national-one-hub", national_secret, national),
        ("hub-nobody-contributed", hub_secret, empty),
    ])
}

/// The two releases of one node for October 2026 that the equivocation vector is made of.
fn equivocating_releases(
    node: &SigningKey,
) -> Result<(SignedRelease, SignedRelease), Box<dyn Error>> {
    let release = |value| -> Result<SignedRelease, Box<dyn Error>> {
        let release = Release {
            signer: node.verifying_key(),
            period: Period::new(2026, 10).ok_or("period")?,
            params: "maillage-core-v1/eps=1.0/laplace".to_owned(),
            mechanism: Mechanism::Laplace { epsilon: 1.0 },
            created_at: 1_793_491_200,
            cells: vec![Cell {
                indicator: Indicator::Beneficiaires,
                category: None,
                value,
                scale: 2.0,
                ci95_half_width: 5.991464547107982,
            }],
        };
        Ok(SignedRelease::sign(release, node)?)
    };
    Ok((release(37)?, release(73)?))
}

/// One vector as written in the file, fields in reading order.
#[derive(Serialize)]
struct Vector<'a> {
    name: &'a str,
    test_only_secret_key: String,
    aggregate: &'a SignedAggregate,
    canonical_aggregate: String,
    signature: String,
    signed_aggregate: String,
    aggregate_id: String,
}

#[derive(Serialize)]
struct Equivocation<'a> {
    test_only_secret_key: String,
    first_release_id: String,
    second_release_id: String,
    proof: &'a EquivocationProof,
}

#[derive(Serialize)]
struct VectorFile<'a> {
    description: &'a str,
    vectors: Vec<Vector<'a>>,
    equivocation: Equivocation<'a>,
}

/// Writes the vectors file. Run only when the encoding changes on purpose (see the module doc).
#[test]
#[ignore = "writes tests/vectors/aggregate-v1.json; run by hand when the encoding changes on purpose"]
fn regenerate_aggregate_vectors() -> TestResult {
    let mut signed = Vec::new();
    for (name, secret, aggregate) in vector_aggregates()? {
        signed.push((
            name,
            secret,
            SignedAggregate::sign(aggregate, &SigningKey::from_bytes(&secret))?,
        ));
    }
    let vectors = signed
        .iter()
        .map(|(name, secret, signed)| Vector {
            name,
            test_only_secret_key: hex::encode(secret),
            aggregate: signed,
            canonical_aggregate: hex::encode(signed.canonical_aggregate()),
            signature: hex::encode(signed.signature().to_bytes()),
            signed_aggregate: hex::encode(signed.to_bytes()),
            aggregate_id: signed.id().to_string(),
        })
        .collect();
    let node_secret = [0x51; 32];
    let (a, b) = equivocating_releases(&SigningKey::from_bytes(&node_secret))?;
    let proof = EquivocationProof::new(a, b)?;
    let file = VectorFile {
        description: "maillage-protocol signed aggregates, encoding version 1. signed_aggregate is the \
            CBOR array [canonical_aggregate, signature]; signature is Ed25519 over \
            \"maillage/aggregate/v1\\0\" || canonical_aggregate; aggregate_id is SHA-256 of that same \
            message. equivocation is a proof made of two signed releases of one node for one period, \
            the smaller release id first. The secret keys are public test values: never use them \
            for anything else.",
        vectors,
        equivocation: Equivocation {
            test_only_secret_key: hex::encode(node_secret),
            first_release_id: proof.first().id().to_string(),
            second_release_id: proof.second().id().to_string(),
            proof: &proof,
        },
    };
    std::fs::write(vectors_path(), serde_json::to_string_pretty(&file)? + "\n")?;
    Ok(())
}

// --- Version 2: revisions and structures ---------------------------------------------------

fn vectors_v2_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/aggregate-v2.json")
}

/// A hub's first aggregate of a period over a real 5-leaf log, its revision over the same log
/// grown to 7 leaves (late releases), and the national aggregate that sums the revision.
fn vector_aggregates_v2() -> Result<Vec<Named>, Box<dyn Error>> {
    use maillage_protocol::checkpoint::contribution_leaf_hash;
    use maillage_protocol::{MerkleLog, Supersedes};
    let hub_secret: [u8; 32] = std::array::from_fn(|i| i as u8);
    let hub_key = SigningKey::from_bytes(&hub_secret);
    let hub = hub_key.verifying_key();
    let october = Period::new(2026, 10).ok_or("period")?;
    let mut log = MerkleLog::new();
    for leaf in 0..7u8 {
        log.append_leaf_hash(contribution_leaf_hash(&ReleaseId::from_bytes([leaf; 32])));
    }
    let contribution = |index: u64, seed: u8| ContributionRef {
        index,
        id: ReleaseId::from_bytes([index as u8; 32]),
        signer: key(seed).verifying_key(),
    };
    let first = Aggregate {
        signer: hub,
        level: Level::Hub,
        period: october,
        checkpoint_size: 5,
        checkpoint_root: log.root_at(5)?,
        contributions: vec![contribution(1, 0x42), contribution(4, 0x43)],
        cells: vec![cell(Indicator::Beneficiaires, None, 57, 16.0, 8.0)],
        contributed: sorted_keys(&[0x42, 0x43]),
        missing: sorted_keys(&[0x44]),
        created_at: 1_793_491_260,
        supersedes: None,
        structures: Some(2),
    };
    let first_id = SignedAggregate::sign(first.clone(), &hub_key)?.id();
    let revision = Aggregate {
        checkpoint_size: 7,
        checkpoint_root: log.root(),
        contributions: vec![
            contribution(1, 0x42),
            contribution(4, 0x43),
            contribution(6, 0x44),
        ],
        cells: vec![cell(Indicator::Beneficiaires, None, 81, 24.0, 9.0)],
        contributed: sorted_keys(&[0x42, 0x43, 0x44]),
        missing: vec![],
        created_at: 1_793_836_800,
        supersedes: Some(Supersedes {
            id: first_id,
            consistency: log.consistency_proof(5, 7)?,
        }),
        structures: Some(3),
        ..first.clone()
    };
    let revision_id = SignedAggregate::sign(revision.clone(), &hub_key)?.id();
    let national = Aggregate {
        signer: key(0x4e).verifying_key(),
        level: Level::National,
        period: october,
        checkpoint_size: 2,
        checkpoint_root: [0x9d; 32],
        contributions: vec![ContributionRef {
            index: 1,
            id: revision_id.as_contribution_id(),
            signer: hub,
        }],
        cells: vec![cell(Indicator::Beneficiaires, None, 81, 24.0, 10.0)],
        contributed: vec![hub],
        missing: vec![],
        created_at: 1_793_923_200,
        supersedes: None,
        structures: Some(3),
    };
    Ok(vec![
        ("hub-first-v2", hub_secret, first),
        ("hub-revision-v2", hub_secret, revision),
        ("national-over-revision-v2", [0x4e; 32], national),
    ])
}

#[test]
fn aggregate_v2_vectors_are_stable_and_the_revision_verifies() -> TestResult {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(vectors_v2_path())?)?;
    let vectors = file["vectors"].as_array().ok_or("no vectors")?;
    assert_eq!(vectors.len(), 3);
    check_vectors(vectors)?;
    let read =
        |n: usize| SignedAggregate::from_json_and_verify(&vectors[n]["aggregate"].to_string());
    let (first, revision) = (read(0)?, read(1)?);
    assert_eq!(first.aggregate().version(), 2);
    revision.check_revises(&first)?;
    assert!(maillage_protocol::aggregate::conflict(&first, &revision).is_err());
    // The vectors are what this crate builds today.
    for ((_, _, built), vector) in vector_aggregates_v2()?.iter().zip(vectors) {
        let frozen = SignedAggregate::from_json(&vector["aggregate"].to_string())?;
        assert_eq!(built, frozen.aggregate());
    }
    Ok(())
}

/// Writes the version 2 vectors file. Run only when the encoding changes on purpose.
#[test]
#[ignore = "writes tests/vectors/aggregate-v2.json; run by hand when the encoding changes on purpose"]
fn regenerate_aggregate_v2_vectors() -> TestResult {
    let mut signed = Vec::new();
    for (name, secret, aggregate) in vector_aggregates_v2()? {
        signed.push((
            name,
            secret,
            SignedAggregate::sign(aggregate, &SigningKey::from_bytes(&secret))?,
        ));
    }
    let vectors: Vec<Vector<'_>> = signed
        .iter()
        .map(|(name, secret, signed)| Vector {
            name,
            test_only_secret_key: hex::encode(secret),
            aggregate: signed,
            canonical_aggregate: hex::encode(signed.canonical_aggregate()),
            signature: hex::encode(signed.signature().to_bytes()),
            signed_aggregate: hex::encode(signed.to_bytes()),
            aggregate_id: signed.id().to_string(),
        })
        .collect();
    #[derive(Serialize)]
    struct File<'a> {
        description: &'a str,
        vectors: Vec<Vector<'a>>,
    }
    let file = File {
        description: "maillage-protocol signed aggregates, encoding version 2: the version 1 fields, \
            then supersedes (null, or [superseded aggregate id, RFC 9162 consistency proof from its \
            checkpoint to this one]) and structures. Signature and id as in version 1 (domain \
            \"maillage/aggregate/v1\\0\"). hub-revision-v2 revises hub-first-v2 (5 -> 7 leaves of the \
            log whose leaf i is the contribution leaf hash of 32 bytes i); the national vector sums \
            the revision. The secret keys are public test values: never use them for anything else.",
        vectors,
    };
    std::fs::write(
        vectors_v2_path(),
        serde_json::to_string_pretty(&file)? + "\n",
    )?;
    Ok(())
}
