//! Join requests: what a structure joining the network hands to its hub.
//!
//! A join request carries the structure's public key and its place details (from the places
//! standard when it has a row there: `id`, `pivot`, `nom`, `code_insee`), signed with the
//! structure's own key so the hub knows the requester holds it. The hub turns it into an
//! `add_member` edit of a proposal ([`JoinRequest::to_edit`]).
//!
//! Signed message: `"maillage/join-request/v1\0" ‖ canonical JSON of the request without its
//! signature` (keys sorted, no whitespace, as the policy snapshot).

use ed25519_dalek::{Signature, Signer, SigningKey};
use serde::{Deserialize, Serialize};

use crate::adoption::SignatureBytes;
use crate::edit::Edit;
use crate::model::{Member, Policy, PublicKey, Role, canonical_json};

/// Prefixed to the signed join-request message.
pub const JOIN_DOMAIN: &[u8] = b"maillage/join-request/v1\0";

/// The details of a joining structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinDetails {
    /// The key it will sign releases with.
    pub key: PublicKey,
    /// Its name (`nom` in the places standard).
    pub name: String,
    /// Its role (normally `structure`).
    pub role: Role,
    /// SIRET, RNA or RIDET (`pivot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pivot: Option<String>,
    /// COG code of its commune (`code_insee`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune: Option<String>,
    /// Its places-standard `id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place_id: Option<String>,
    /// The hub it asks to join, if it knows the hub's key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<PublicKey>,
}

/// A signed join request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// What it asks.
    pub details: JoinDetails,
    /// The requester's signature, by `details.key`.
    pub signature: SignatureBytes,
}

/// Why a join request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinError {
    /// The signature does not verify with the request's key.
    #[error(
        "the join request of {key} is not signed by that key: it was altered or forged (ask the structure for a new one)"
    )]
    BadSignature {
        /// The key it claims.
        key: PublicKey,
    },
    /// The request names another hub than the one adding it.
    #[error("the join request of {key} asks to join hub {asked}, not {adding}")]
    OtherHub {
        /// The requester.
        key: PublicKey,
        /// The hub it names.
        asked: PublicKey,
        /// The hub adding it.
        adding: PublicKey,
    },
    /// The key is already registered.
    #[error("{key} is already registered as « {name} »")]
    AlreadyMember {
        /// The key.
        key: PublicKey,
        /// Its registered name.
        name: String,
    },
}

fn message(details: &JoinDetails) -> Vec<u8> {
    let mut m = JOIN_DOMAIN.to_vec();
    m.extend_from_slice(&canonical_json(details));
    m
}

impl JoinRequest {
    /// Signs `details` with the structure's key (whose public half must be `details.key`;
    /// it is set from the signing key).
    pub fn sign(mut details: JoinDetails, key: &SigningKey) -> Self {
        details.key = PublicKey::from(key.verifying_key());
        let signature = key.sign(&message(&details));
        Self {
            details,
            signature: SignatureBytes(signature.to_bytes()),
        }
    }

    /// Checks the signature.
    pub fn verify(&self) -> Result<(), JoinError> {
        let bad = || JoinError::BadSignature {
            key: self.details.key,
        };
        let key = self.details.key.verifying_key().map_err(|_| bad())?;
        key.verify_strict(
            &message(&self.details),
            &Signature::from_bytes(&self.signature.0),
        )
        .map_err(|_| bad())
    }

    /// The `add_member` edit a hub (key `hub`) makes of this request, after checking the
    /// signature, that the request names this hub (if it names one) and that the key is not
    /// registered yet in `policy`. The place details are checked when the proposal is validated.
    pub fn to_edit(&self, hub: &PublicKey, policy: &Policy) -> Result<Edit, JoinError> {
        self.verify()?;
        let d = &self.details;
        if let Some(asked) = d.hub
            && asked != *hub
        {
            return Err(JoinError::OtherHub {
                key: d.key,
                asked,
                adding: *hub,
            });
        }
        if let Some(m) = policy.members.get(&d.key) {
            return Err(JoinError::AlreadyMember {
                key: d.key,
                name: m.name.clone(),
            });
        }
        Ok(Edit::add_member(
            d.key,
            Member {
                name: d.name.clone(),
                role: d.role,
                pivot: d.pivot.clone(),
                hub: (d.role == Role::Structure).then_some(*hub),
                commune: d.commune.clone(),
                place_id: d.place_id.clone(),
            },
        ))
    }
}
