//! Fixed test vectors for signed releases, frozen in `tests/vectors/release-v1.json`.
//!
//! Any change to the canonical encoding, the signing domain, the release id or the JSON view
//! makes `release_vectors_are_stable` fail. If the change is deliberate, it is a new encoding
//! version: bump `release::VERSION` and the domain tag, then write new vectors with
//! `cargo test -p maillage-protocol --test it -- --ignored regenerate_release_vectors`.

use std::error::Error;
use std::path::PathBuf;

use ed25519_dalek::SigningKey;
use maillage_protocol::{Cell, Indicator, Mechanism, Period, Release, SignedRelease};
use serde::Serialize;
use serde_json::Value;

type TestResult = Result<(), Box<dyn Error>>;

fn vectors_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/release-v1.json")
}

fn hex_field(vector: &Value, name: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    let text = vector[name]
        .as_str()
        .ok_or_else(|| format!("vector field {name} is not a string"))?;
    Ok(hex::decode(text)?)
}

#[test]
fn release_vectors_are_stable() -> TestResult {
    let file: Value = serde_json::from_str(&std::fs::read_to_string(vectors_path())?)?;
    let vectors = file["vectors"].as_array().ok_or("no vectors")?;
    assert_eq!(vectors.len(), 2);
    for vector in vectors {
        let name = vector["name"].as_str().unwrap_or("?");
        let secret: [u8; 32] = hex_field(vector, "test_only_secret_key")?
            .try_into()
            .map_err(|_| "secret length")?;
        let key = SigningKey::from_bytes(&secret);

        // The JSON view reads, verifies and gives the frozen canonical bytes.
        let from_json = SignedRelease::from_json_and_verify(&vector["release"].to_string())?;
        assert_eq!(
            from_json.canonical_release(),
            hex_field(vector, "canonical_release")?,
            "{name}"
        );

        // Signing again gives the frozen signature (Ed25519 is deterministic).
        let signed = SignedRelease::sign(from_json.release().clone(), &key)?;
        assert_eq!(
            signed.signature().to_bytes().to_vec(),
            hex_field(vector, "signature")?,
            "{name}"
        );
        assert_eq!(signed, from_json, "{name}");

        // The wire bytes and the id.
        assert_eq!(
            signed.to_bytes(),
            hex_field(vector, "signed_release")?,
            "{name}"
        );
        assert_eq!(
            signed.id().as_bytes().to_vec(),
            hex_field(vector, "release_id")?,
            "{name}"
        );
        assert_eq!(
            SignedRelease::decode_and_verify(&signed.to_bytes())?,
            signed,
            "{name}"
        );

        // The JSON view writes back to the same document.
        let written: Value = serde_json::from_str(&signed.to_json_pretty())?;
        assert_eq!(written, vector["release"], "{name}");
    }
    Ok(())
}

fn cell(
    indicator: Indicator,
    category: Option<&str>,
    value: i64,
    scale: f64,
    ci95_half_width: f64,
) -> Cell {
    Cell {
        indicator,
        category: category.map(str::to_owned),
        value,
        scale,
        ci95_half_width,
    }
}

/// A vector's name, its signer's secret key and its release.
type Named = (&'static str, [u8; 32], Release);

/// The releases the vectors are made of.
fn vector_releases() -> Result<Vec<Named>, Box<dyn Error>> {
    let laplace_key: [u8; 32] = std::array::from_fn(|i| i as u8);
    let gaussian_key = [0x42; 32];
    let ci = 11.982929094215963;
    let laplace = Release {
        signer: SigningKey::from_bytes(&laplace_key).verifying_key(),
        period: Period::new(2026, 10).ok_or("period")?,
        params: "maillage-core-v1/eps=1.0/laplace".to_owned(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: 1_793_491_200,
        cells: vec![
            cell(Indicator::Activites, Some("individuel"), 41, 4.0, ci),
            cell(Indicator::Activites, Some("collectif"), -3, 4.0, ci),
            cell(Indicator::Beneficiaires, None, 37, 2.0, 5.991464547107982),
            cell(
                Indicator::DureeMinutes,
                None,
                2_419,
                240.0,
                718.9757456529578,
            ),
            cell(
                Indicator::Autonomie,
                Some("entierement_accompagne"),
                12,
                2.5,
                7.489330683884977,
            ),
            cell(
                Indicator::Autonomie,
                Some("partiellement_autonome"),
                0,
                2.5,
                7.489330683884977,
            ),
            cell(
                Indicator::Autonomie,
                Some("autonome"),
                9_007_199_254_740_993,
                2.5,
                7.489330683884977,
            ),
            cell(
                Indicator::Genres,
                Some("masculin"),
                14,
                2.0,
                5.991464547107982,
            ),
            cell(
                Indicator::Genres,
                Some("feminin"),
                22,
                2.0,
                5.991464547107982,
            ),
            cell(
                Indicator::Genres,
                Some("non_communique"),
                i64::MIN,
                2.0,
                0.0,
            ),
        ],
    };
    let gaussian = Release {
        signer: SigningKey::from_bytes(&gaussian_key).verifying_key(),
        period: Period::new(2027, 1).ok_or("period")?,
        params: "5f0c6a2b9e3d4c1a8b7e6f5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a291".to_owned(),
        mechanism: Mechanism::Gaussian { rho: 0.125 },
        created_at: 1_801_440_000,
        cells: vec![
            cell(
                Indicator::NouveauxBeneficiaires,
                None,
                5,
                3.7416573867739413,
                7.333623862039315,
            ),
            cell(
                Indicator::Orientations,
                None,
                -1,
                3.7416573867739413,
                7.333623862039315,
            ),
        ],
    };
    Ok(vec![
        ("laplace-core-and-module", laplace_key, laplace),
        ("gaussian-counts", gaussian_key, gaussian),
    ])
}

/// One vector as written in the file, fields in reading order.
#[derive(Serialize)]
struct Vector<'a> {
    name: &'a str,
    test_only_secret_key: String,
    release: &'a SignedRelease,
    canonical_release: String,
    signature: String,
    signed_release: String,
    release_id: String,
}

#[derive(Serialize)]
struct VectorFile<'a> {
    description: &'a str,
    vectors: Vec<Vector<'a>>,
}

/// Writes the vectors file. Run only when the encoding changes on purpose (see the module doc).
#[test]
#[ignore = "writes tests/vectors/release-v1.json; run by hand when the encoding changes on purpose"]
fn regenerate_release_vectors() -> TestResult {
    let releases = vector_releases()?;
    let mut signed = Vec::new();
    for (name, secret, release) in releases {
        signed.push((
            name,
            secret,
            SignedRelease::sign(release, &SigningKey::from_bytes(&secret))?,
        ));
    }
    let vectors = signed
        .iter()
        .map(|(name, secret, signed)| Vector {
            name,
            test_only_secret_key: hex::encode(secret),
            release: signed,
            canonical_release: hex::encode(signed.canonical_release()),
            signature: hex::encode(signed.signature().to_bytes()),
            signed_release: hex::encode(signed.to_bytes()),
            release_id: signed.id().to_string(),
        })
        .collect();
    let file = VectorFile {
        description: "maillage-protocol signed releases, encoding version 1. signed_release is the CBOR \
            array [canonical_release, signature]; signature is Ed25519 over \"maillage/release/v1\\0\" \
            || canonical_release; release_id is SHA-256 of that same message. The secret keys are \
            public test values: never use them for anything else.",
        vectors,
    };
    std::fs::write(vectors_path(), serde_json::to_string_pretty(&file)? + "\n")?;
    Ok(())
}
