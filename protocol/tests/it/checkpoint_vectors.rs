//! Fixed test vectors for a signed checkpoint and a signed receipt.
//!
//! The secret key is the test-only seed `00 01 02 … 1f`; the tree is the 8-leaf tree of the CT
//! test vectors (see `merkle_vectors.rs`). The bytes were produced by this crate and checked
//! independently: the CBOR was assembled by hand in Python from the layout in the `checkpoint`
//! module's documentation, and Python's `cryptography` Ed25519 gave the same signatures over
//! `domain ‖ canonical bytes` (Ed25519 is deterministic).
//!
//! Any change to an encoding, a signing domain or the JSON view makes these tests fail. If the
//! change is deliberate, it is a new encoding version: bump `checkpoint::VERSION` and the domain
//! tags, then print new vectors with
//! `cargo test -p maillage-protocol --test it -- --ignored --nocapture print_checkpoint_vectors`.

use std::error::Error;

use ed25519_dalek::{Signer, SigningKey};
use maillage_protocol::checkpoint::{
    self, CHECKPOINT_SIGNING_DOMAIN, Checkpoint, RECEIPT_SIGNING_DOMAIN, Receipt, SignedCheckpoint,
    SignedReceipt,
};
use maillage_protocol::merkle::MerkleLog;
use maillage_protocol::{Cell, Indicator, Mechanism, Period, Release};
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

/// The canonical receipt: leaf 5, in the checkpoint of size 8, timestamp 1793491260.
const RECEIPT: &str = concat!(
    "8701784e30336131303762666633636531306265316437306464313865373462",
    "6330393936376534643633303962613530643566316464633836363431323535",
    "333162382f636f6e747269627574696f6e73582003a107bff3ce10be1d70dd18",
    "e74bc09967e4d6309ba50d5f1ddc8664125531b8582072a584a3414e95fae46a",
    "b3a93a6ce3a5194fe5b1b8a65fde7b2231d9029de42705081a6ae6813c",
);

/// Ed25519 over `"maillage/receipt/v1\0" ‖ RECEIPT`.
const RECEIPT_SIGNATURE: &str = concat!(
    "711737ea6a579dad607b34ce58808b2b6c6673f3820738e11eb26fab4ec39ac2",
    "8ec34b8f3932b15ec27051a1eb0e34a5f314e54653527644164250531246430c",
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

#[test]
fn receipt_vector_is_stable() -> TestResult {
    let key = hub_key();
    let receipt = Receipt::decode(&hex::decode(RECEIPT)?)?;
    assert_eq!(receipt.origin, format!("{HUB_PUBLIC}/contributions"));
    assert_eq!(receipt.hub, key.verifying_key());
    assert_eq!(receipt.release_id.to_string(), RELEASE_ID);
    assert_eq!(
        (receipt.index, receipt.checkpoint_size, receipt.timestamp),
        (5, 8, 1_793_491_260)
    );
    assert_eq!(hex::encode(receipt.canonical_bytes()?), RECEIPT);

    let signed = receipt.sign(&key)?;
    assert_eq!(
        hex::encode(signed.signature().to_bytes()),
        RECEIPT_SIGNATURE
    );
    let mut message = RECEIPT_SIGNING_DOMAIN.to_vec();
    message.extend(hex::decode(RECEIPT)?);
    assert_eq!(key.sign(&message), *signed.signature());

    let bytes = wire(RECEIPT, RECEIPT_SIGNATURE)?;
    assert_eq!(signed.to_bytes(), bytes);
    assert_eq!(SignedReceipt::decode_and_verify(&bytes)?, signed);

    let expected = json!({
        "version": 1,
        "origin": format!("{HUB_PUBLIC}/contributions"),
        "hub": HUB_PUBLIC,
        "release_id": RELEASE_ID,
        "index": 5,
        "checkpoint_size": 8,
        "timestamp": 1_793_491_260,
        "signature": RECEIPT_SIGNATURE,
    });
    let written: Value = serde_json::from_str(&signed.to_json_pretty())?;
    assert_eq!(written, expected);
    assert_eq!(
        SignedReceipt::from_json_and_verify(&expected.to_string())?,
        signed
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
    let receipt = Receipt {
        origin: checkpoint::contributions_origin(&key.verifying_key()),
        hub: key.verifying_key(),
        release_id: vector_release()?.id()?,
        index: 5,
        checkpoint_size: 8,
        timestamp: 1_793_491_260,
    }
    .sign(&key)?;
    println!("RELEASE_ID {}", receipt.receipt().release_id);
    println!("RECEIPT {}", hex::encode(receipt.canonical_receipt()));
    println!(
        "RECEIPT_SIGNATURE {}",
        hex::encode(receipt.signature().to_bytes())
    );
    println!("{}", receipt.to_json_pretty());
    Ok(())
}
