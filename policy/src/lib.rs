//! Maillage's governance: the policy as a replicated Automerge document, adopted by quorum.
//!
//! This crate owns the policy's schema, its materialised form ([`Policy`]) and canonical
//! snapshot whose hash ([`PolicyHash`]) identifies a version, the validation rules a version
//! must pass, proposals ([`Edit`]) applied to the Automerge document ([`PolicyDoc`]), the sync
//! of that document between peers (bytes in, bytes out), adoption by a quorum of
//! steering-committee signatures ([`AdoptionChain`], [`Ballot`], [`AdoptionRecord`]), the diff
//! between versions, and join requests. It does no I/O and spawns no tasks: the node stores the
//! document and records, and carries sync messages and records over the network.
//!
//! # Schema (version 1)
//!
//! The Automerge document's root map and the canonical snapshot have the same fields:
//!
//! | path | type | accepted |
//! |---|---|---|
//! | `schema` | integer | `1` |
//! | `privacy.mechanism` | string | `laplace` (discrete Laplace, ε-DP) or `gaussian` (discrete Gaussian, ρ-zCDP) |
//! | `privacy.budget_micro` | integer | budget per node and month in millionths of ε or ρ: 1–10,000,000 (default 1,000,000: ε = 1) |
//! | `privacy.bounds.max_rows_per_person` | integer | K, 1–100 (default 10) |
//! | `privacy.bounds.max_duration_min` | integer | D, 1–1440 (default 240) |
//! | `privacy.bounds.max_themes_per_row` | integer | T, 1–19 (default 3) |
//! | `privacy.bounds.max_materiel_per_row` | integer | M, 1–5 (default 2) |
//! | `indicators.<id>` | map | an indicator of the catalogue (`maillage_protocol::Indicator`), at least one |
//! | `indicators.<id>.kind` | string | the catalogue's kind: `count`, `count_by`, `sum`, `histogram` |
//! | `indicators.<id>.categories` | list of strings | the catalogue's categories, in order (empty for count/sum) |
//! | `indicators.<id>.module` | boolean | `false` for the common core, `true` for an optional module (as the catalogue says) |
//! | `indicators.<id>.weight` | integer | share of the budget, 1–1,000,000 (the indicator gets weight/Σweights) |
//! | `modules.<id>` | map, optional | an indicator of an optional module beyond the compiled catalogue; `<id>`: 1–64 of `a-z 0-9 _`, starting with a letter, not a catalogue code; at most 200 indicators in all |
//! | `modules.<id>.module` | string | the module's identifier (same form) |
//! | `modules.<id>.kind` | string | `count`, `count_by`, `sum`, `histogram` |
//! | `modules.<id>.categories` | list of strings | 2–64 distinct identifiers for `count_by` and `histogram`, empty otherwise |
//! | `modules.<id>.max_contribution` | integer | contribution bound of one person in a period, 1–1,000,000 |
//! | `modules.<id>.weight` | integer | share of the budget, 1–1,000,000, as for catalogue indicators |
//! | `calendar.period` | string | `month` |
//! | `calendar.submission_deadline_days` | integer | releases due this many days after the month ends, 1–90 (default 10) |
//! | `calendar.superseded_grace_days` | integer | a replaced version is still accepted this many days, 0–90 (default 15) |
//! | `members.<key>` | map | key: 64 lowercase hex digits, a usable ed25519 public key |
//! | `members.<key>.name` | string | 1–200 characters, no control characters, no surrounding spaces |
//! | `members.<key>.role` | string | `structure`, `hub`, `national`, `auditor` |
//! | `members.<key>.hub` | string, optional | structures only, required: the key of a member of role `hub` |
//! | `members.<key>.pivot` | string, optional | SIRET (14 digits, Luhn), RNA (`W` + 9) or RIDET |
//! | `members.<key>.commune` | string, optional | a commune of the COG table compiled into `maillage-protocol` |
//! | `members.<key>.place_id` | string, optional | places-standard `id`; one key per place |
//! | `committee.quorum` | integer | more than half the committee, at most its size |
//! | `committee.members.<key>` | map | at least one; key as for members |
//! | `committee.members.<key>.name` | string | as member names |
//!
//! No floating-point values anywhere (budgets are integers of millionths), so the snapshot has
//! one spelling. Optional fields are absent, never `null`.
//!
//! # Canonical snapshot and hash
//!
//! The snapshot is the materialised policy as JSON with every object's keys sorted by their
//! UTF-8 bytes, no whitespace, integers in decimal, strings escaped as RFC 8785 (JCS) does,
//! optional fields omitted. It depends only on the policy's values, never on the Automerge
//! history that produced them. [`PolicyHash`] = `SHA-256("maillage/policy/v1\0" ‖ snapshot)`,
//! the version's identifier that releases name.
//!
//! # Proposals and merges
//!
//! Anyone holding a copy of the document may apply a proposal ([`Edit`]s, see [`edit`]); each
//! edit writes only the fields it names, so concurrent proposals merge field by field, and
//! concurrent writes of one field resolve to the same value on every peer. Automerge changes
//! are not signed: authority comes only from adoption, and the node admits to policy sync only
//! peers whose key is in the adopted registry. Peers must share one genesis document
//! ([`PolicyDoc::genesis`] makes the same one from the same policy on every peer).
//!
//! # Adoption
//!
//! See [`adoption`]: a version is adopted when a quorum of the currently adopted committee
//! signs `(sequence, previous hash, hash)`; records form a chain from a pinned genesis.

pub mod adoption;
pub mod diff;
pub mod document;
pub mod edit;
pub mod join;
pub mod model;
pub mod validate;

#[cfg(test)]
mod tests;

pub use adoption::{
    ADOPTION_DOMAIN, Added, AdoptedPolicy, AdoptionChain, AdoptionError, AdoptionRecord,
    AdoptionSignature, AdoptionTarget, Ballot, ChainError, PolicyStatus, SignatureBytes,
    SignerSignature, sign_adoption,
};
pub use diff::{Change, diff};
pub use document::{DocError, Heads, MAX_SYNC_MESSAGE, PolicyDoc, SyncState};
pub use edit::{Edit, EditError, Proposal};
pub use join::{JoinDetails, JoinError, JoinRequest};
pub use model::{
    Bounds, Calendar, Committee, CommitteeMember, IndicatorEntry, Mechanism, Member,
    ModuleIndicator, Policy, PolicyHash, Privacy, PublicKey, Role, SCHEMA_VERSION,
};
pub use validate::{Problem, ValidationErrors, validate_pivot};
