//! Fixed test vectors for a signed checkpoint and a receipt (version 2: a signed checkpoint, a
//! leaf index and its inclusion proof).
//!
//! The secret key is the test-only seed `00 01 02 … 1f`; the tree is the 8-leaf tree of the CT
//! test vectors (see `merkle_vectors.rs`). The bytes were produced by this crate and checked
//! independently: the CBOR was assembled by hand in Python from the layout in the `checkpoint`
//! module's documentation, and Python's `cryptography` Ed25519 gave the same signatures over
//! `domain ‖ canonical bytes` (Ed25519 is deterministic).
//!
//! The receipt vector (version 2) was checked the same way: its layout and every hash of its
//! inclusion proof were recomputed in Python with `hashlib`, and `cryptography` verified the
//! checkpoint signature inside it.
//!
//! Any change to an encoding, a signing domain or the JSON view makes these tests fail. If the
//! change is deliberate, it is a new encoding version: bump `checkpoint::VERSION` and the domain
//! tags, then print new vectors with
//! `cargo test -p maillage-protocol --test it -- --ignored --nocapture print_checkpoint_vectors`.

use std::error::Error;

use ed25519_dalek::{Signer, SigningKey};
use maillage_protocol::checkpoint::{
    self, CHECKPOINT_SIGNING_DOMAIN, Checkpoint, SignedCheckpoint, SignedReceipt,
};
use maillage_protocol::merkle::MerkleLog;
use maillage_protocol::{Cell, Indicator, Mechanism, Period, Release, ReleaseId};
use serde_json::{Value, json};

type TestResult = Result<(), Box<dyn Error>>;

/// The public key of the test-only secret key `00 01 02 … 1f`.
const HUB_PUBLIC: &str = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";

/// The canonical checkpoint: 8 leaves, root `5dc9…4328`, timestamp 1793491200.
const CHECKPOINT: &str = concat!(
    "8601784e30336131303762666633636531306265316437306464313865373462",
    "6330393936376534643633303962613530643566316464633836363431323535",
    "333162382f636f6e747269627574696f6e730858205dc9da79a70659a9ad559c",
    "b701ded9a2ab9d823aad2f4960cfe370eff46043281a6ae68100582003a107bf",
    "f3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
);

/// Ed25519 over `"maillage/checkpoint/v1\0" ‖ CHECKPOINT`.
const CHECKPOINT_SIGNATURE: &str = concat!(
    "b62a0c94d129898215dc457a0f7d0c3094db24b262684e00dca0e02d3d3b3075",
    "840ea5b11fdf28adfc0f8868ec988e2fb3333c604e571ad15ec99dc7decd390e",
);

/// The release id in the receipt (of a one-cell release; any 32 bytes would do).
const RELEASE_ID: &str = "72a584a3414e95fae46ab3a93a6ce3a5194fe5b1b8a65fde7b2231d9029de427";

/// The receipt of `RELEASE_ID` as leaf 5 of the 8-leaf contributions log of `receipt_log`,
/// wire encoding version 2: `[2, signed checkpoint, release_id, 5, proof]`.
const RECEIPT: &str = concat!(
    "8502828601784e30336131303762666633636531306265316437306464313865",
    "3734626330393936376534643633303962613530643566316464633836363431",
    "323535333162382f636f6e747269627574696f6e730858208a2116e366917d88",
    "4dd08e7a0d0993edb5b4a948a4d7cc8dedf521497438d63e1a6ae6813c582003",
    "a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b858",
    "407145ed54ceec373874e9c5d06bad3e07a09f605ff2392e151f7e95e89894bc",
    "8a8d69365fc63119791b74ff061be0b17d506d7f78031c92584d8620d21b205c",
    "06582072a584a3414e95fae46ab3a93a6ce3a5194fe5b1b8a65fde7b2231d902",
    "9de427058358201da033bf8927ed69376d91533748494f7f5e88c20603dede2a",
    "fc9bfd43d46f1758203ebd606fb49a3b46ea6025f6ca81438c59c6644eff2a75",
    "3ae4b564ffbf0eb06a5820fdea52008cdae79fa8bf806261959e23f5e1168164",
    "6a2fa2bc9b5e56b32030a2",
);

fn hub_key() -> SigningKey {
    SigningKey::from_bytes(&std::array::from_fn(|i| i as u8))
}

fn ct_log() -> MerkleLog {
    let leaves: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];
    let mut log = MerkleLog::new();
    for leaf in leaves {
        log.append(leaf);
    }
    log
}

fn vector_checkpoint() -> Checkpoint {
    let hub = hub_key().verifying_key();
    let log = ct_log();
    Checkpoint {
        origin: checkpoint::contributions_origin(&hub),
        tree_size: log.len(),
        root: log.root(),
        timestamp: 1_793_491_200,
        signer: hub,
    }
}

/// `0x82 ‖ canonical ‖ 0x58 0x40 ‖ signature`.
fn wire(canonical: &str, signature: &str) -> Result<Vec<u8>, Box<dyn Error>> {
    let mut bytes = vec![0x82];
    bytes.extend(hex::decode(canonical)?);
    bytes.extend([0x58, 0x40]);
    bytes.extend(hex::decode(signature)?);
    Ok(bytes)
}

#[test]
fn checkpoint_vector_is_stable() -> TestResult {
    let key = hub_key();
    assert_eq!(hex::encode(key.verifying_key().as_bytes()), HUB_PUBLIC);
    let checkpoint = vector_checkpoint();
    assert_eq!(hex::encode(checkpoint.canonical_bytes()?), CHECKPOINT);
    assert_eq!(Checkpoint::decode(&hex::decode(CHECKPOINT)?)?, checkpoint);

    let signed = checkpoint.sign(&key)?;
    assert_eq!(
        hex::encode(signed.signature().to_bytes()),
        CHECKPOINT_SIGNATURE
    );
    let mut message = CHECKPOINT_SIGNING_DOMAIN.to_vec();
    message.extend(hex::decode(CHECKPOINT)?);
    assert_eq!(key.sign(&message), *signed.signature());

    let bytes = wire(CHECKPOINT, CHECKPOINT_SIGNATURE)?;
    assert_eq!(signed.to_bytes(), bytes);
    assert_eq!(SignedCheckpoint::decode_and_verify(&bytes)?, signed);

    let expected = json!({
        "version": 1,
        "origin": format!("{HUB_PUBLIC}/contributions"),
        "tree_size": 8,
        "root": "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        "timestamp": 1_793_491_200,
        "signer": HUB_PUBLIC,
        "signature": CHECKPOINT_SIGNATURE,
    });
    let written: Value = serde_json::from_str(&signed.to_json_pretty())?;
    assert_eq!(written, expected);
    assert_eq!(
        SignedCheckpoint::from_json_and_verify(&expected.to_string())?,
        signed
    );
    Ok(())
}

/// A contributions log of 8 leaves: release ids `[i; 32]`, except leaf 5, `RELEASE_ID`.
fn receipt_log() -> Result<MerkleLog, Box<dyn Error>> {
    let mut log = MerkleLog::new();
    for i in 0..8u8 {
        let id = if i == 5 {
            ReleaseId::from_bytes(hex::decode(RELEASE_ID)?.try_into().map_err(|_| "id")?)
        } else {
            ReleaseId::from_bytes([i; 32])
        };
        log.append_leaf_hash(checkpoint::contribution_leaf_hash(&id));
    }
    Ok(log)
}

fn vector_receipt() -> Result<SignedReceipt, Box<dyn Error>> {
    let key = hub_key();
    let log = receipt_log()?;
    let checkpoint = Checkpoint {
        origin: checkpoint::contributions_origin(&key.verifying_key()),
        tree_size: 8,
        root: log.root(),
        timestamp: 1_793_491_260,
        signer: key.verifying_key(),
    }
    .sign(&key)?;
    let id = ReleaseId::from_bytes(hex::decode(RELEASE_ID)?.try_into().map_err(|_| "id")?);
    Ok(SignedReceipt::issue(&log, checkpoint, id, 5)?)
}

#[test]
fn receipt_vector_is_stable() -> TestResult {
    let key = hub_key();
    let bytes = hex::decode(RECEIPT)?;
    let receipt = SignedReceipt::decode_and_verify(&bytes)?;
    let r = receipt.receipt();
    assert_eq!(r.origin, format!("{HUB_PUBLIC}/contributions"));
    assert_eq!(r.hub, key.verifying_key());
    assert_eq!(r.release_id.to_string(), RELEASE_ID);
    assert_eq!(vector_release()?.id()?.to_string(), RELEASE_ID);
    assert_eq!(
        (r.index, r.checkpoint_size, r.timestamp),
        (5, 8, 1_793_491_260)
    );
    assert_eq!(receipt, vector_receipt()?);
    assert_eq!(receipt.to_bytes(), bytes);
    // Leaf 5 of 8: the proof is leaf 4, then leaves 6-7, then leaves 0-3.
    let log = receipt_log()?;
    let proof = [
        log.leaf_hash_at(4).ok_or("leaf 4")?,
        maillage_protocol::merkle::node_hash(
            &log.leaf_hash_at(6).ok_or("leaf 6")?,
            &log.leaf_hash_at(7).ok_or("leaf 7")?,
        ),
        log.root_at(4)?,
    ];
    assert_eq!(receipt.proof(), proof);
    // The checkpoint's signature is the receipt's only one.
    let mut message = CHECKPOINT_SIGNING_DOMAIN.to_vec();
    message.extend(receipt.checkpoint().canonical_checkpoint());
    assert_eq!(key.sign(&message), *receipt.signature());

    let expected = json!({
        "version": 2,
        "checkpoint": serde_json::from_str::<Value>(&receipt.checkpoint().to_json_pretty())?,
        "release_id": RELEASE_ID,
        "index": 5,
        "proof": proof.iter().map(hex::encode).collect::<Vec<_>>(),
    });
    let written: Value = serde_json::from_str(&receipt.to_json_pretty())?;
    assert_eq!(written, expected);
    assert_eq!(
        SignedReceipt::from_json_and_verify(&expected.to_string())?,
        receipt
    );
    Ok(())
}

/// The one-cell release whose id the receipt vector carries.
fn vector_release() -> Result<Release, Box<dyn Error>> {
    Ok(Release {
        signer: SigningKey::from_bytes(&[0x42; 32]).verifying_key(),
        period: Period::new(2026, 10).ok_or("period")?,
        params: "maillage-core-v1/eps=1.0/laplace".to_owned(),
        mechanism: Mechanism::Laplace { epsilon: 1.0 },
        created_at: 1_793_491_200,
        cells: vec![Cell {
            indicator: Indicator::Beneficiaires,
            category: None,
            value: 37,
            scale: 2.0,
            ci95_half_width: 5.991464547107982,
        }],
    })
}

#[test]
#[ignore = "prints the vectors to freeze"]
fn print_checkpoint_vectors() -> TestResult {
    let key = hub_key();
    let signed = vector_checkpoint().sign(&key)?;
    println!("HUB_PUBLIC {}", hex::encode(key.verifying_key().as_bytes()));
    println!("CHECKPOINT {}", hex::encode(signed.canonical_checkpoint()));
    println!(
        "CHECKPOINT_SIGNATURE {}",
        hex::encode(signed.signature().to_bytes())
    );
    println!("{}", signed.to_json_pretty());
    let receipt = vector_receipt()?;
    println!("RELEASE_ID {}", receipt.receipt().release_id);
    println!("RECEIPT {}", hex::encode(receipt.to_bytes()));
    println!("{}", receipt.to_json_pretty());
    Ok(())
}
