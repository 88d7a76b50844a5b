//! Signed releases: the differentially private figures one node publishes for one period.
//!
//! This module owns the release wire type, its one canonical byte encoding, the domain-separated
//! ed25519 signature over it, the release id used to detect equivocation, and the JSON view that
//! people and files see. It computes no figures and adds no noise (that is `maillage-privacy`'s
//! job) and does no I/O.
//!
//! # Canonical encoding, version 1
//!
//! A release is one CBOR data item (RFC 8949): an array of 8 elements in this fixed order.
//! There are no maps, so no key order to agree on.
//!
//! | # | field        | CBOR                       | accepted values |
//! |---|--------------|----------------------------|-----------------|
//! | 0 | version      | unsigned integer           | `1` |
//! | 1 | signer       | byte string, 32 bytes      | an ed25519 public key in canonical encoding, not of small order |
//! | 2 | period       | text string                | `YYYY-MM`, 2000-01 to 2999-12 |
//! | 3 | params       | text string                | 1 to 256 bytes, each 0x21–0x7e (printable ASCII, no space) |
//! | 4 | mechanism    | text string                | `"laplace"` or `"gaussian"` |
//! | 5 | loss         | 64-bit float               | ε for `laplace`, ρ (zCDP) for `gaussian`; finite and > 0 |
//! | 6 | created_at   | unsigned integer           | Unix time in seconds |
//! | 7 | cells        | array of 1 to [`max_cells`] cells | see below |
//!
//! Each cell is an array of 5 elements: the indicator code (text string), the category code
//! (text string) or `null` (`0xf6`) for a plain count or sum, the noisy value (integer, major
//! type 0 or 1, within `i64`), the noise scale (64-bit float, finite and > 0) and the half-width
//! of the 95% interval (64-bit float, finite and ≥ 0).
//!
//! Rules that make the encoding unique, all enforced by the decoder:
//! - definite lengths only; every integer, string length and array length in its shortest form
//!   (RFC 8949 §4.2.1); no tags, no maps, no simple values other than `null` where stated;
//! - every float as a 64-bit IEEE 754 value, big-endian (`0xfb` + 8 bytes), never a 16- or
//!   32-bit one. This departs from §4.2.1's preferred serialization on purpose: one width means
//!   one form for every value and no float conversion in any verifier. NaN and ±∞ are refused,
//!   and so is −0.0 (it would equal +0.0 yet encode differently);
//! - cells in catalogue order: each indicator at most once, in the order of [`Indicator::ALL`],
//!   and an indicator present lists every one of its categories, once each, in the order of
//!   [`Indicator::categories`] (histograms list zeros too, so releases add up cell by cell);
//!   a count or sum has exactly one cell, with a `null` category. Hence no duplicate cells;
//! - nothing after the item.
//!
//! As a last check the decoder re-encodes what it read and refuses the input unless the bytes
//! are identical.
//!
//! # Signature
//!
//! `signature = Ed25519(key, "maillage/release/v1\0" ‖ canonical release)` (pure Ed25519,
//! RFC 8032), verified with `verify_strict`, which also refuses non-canonical `S`, and
//! small-order `R` or keys. The domain tag ([`SIGNING_DOMAIN`]) keeps a release signature from
//! being valid for any other message type a Maillage key signs.
//!
//! A signed release on the wire is the CBOR array `[release, signature]`: `0x82`, the canonical
//! release, then `0x58 0x40` and the 64 signature bytes.
//!
//! # Release id
//!
//! [`ReleaseId`] is SHA-256 of the signed message, `"maillage/release/v1\0" ‖ canonical release`.
//! It leaves the signature out: Ed25519 lets a signer make other valid signatures of the same
//! message, and these must not count as different releases. Two verified releases with the same
//! signer and period but different ids are an equivocation
//! ([`SignedRelease::equivocates_with`]); a retried submission has the same id.
//!
//! # JSON view
//!
//! ```json
//! {"version": 1, "signer": "<64 hex digits>", "period": "2026-10",
//!  "params": "maillage-core-v1/eps=1.0/laplace", "mechanism": "laplace", "epsilon": 1.0,
//!  "created_at": 1793491200,
//!  "cells": [{"indicator": "accompagnements", "category": "individuel", "value": 12,
//!             "scale": 4.0, "ci95_half_width": 11.9}, ...],
//!  "signature": "<128 hex digits>"}
//! ```
//!
//! A `gaussian` release carries `"rho"` instead of `"epsilon"`, never both: converting ρ to an
//! (ε, δ) pair needs a δ that is the policy's choice, so the release states only what the
//! mechanism spent. `category` is `null` (or absent) for plain counts and sums. Unknown fields are
//! refused. Floats are written in their shortest round-trip form and read back bit for bit
//! (`serde_json`'s `float_roundtrip`), so a JSON file gives the same canonical bytes and its
//! signature verifies. The JSON form is a view, not a second canonical form: whitespace, key order
//! and hex case do not matter.

mod cbor;
mod json;

pub use json::SignedReleaseJson;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::indicator::Indicator;
use crate::period::{Period, PeriodError};
use crate::vocab::Vocabulary;
use cbor::{Field, Reader, Writer};

/// The version of the canonical encoding this build writes and reads.
pub const VERSION: u64 = 1;

/// Prefixed to the canonical release bytes to form the message that is signed.
pub const SIGNING_DOMAIN: &[u8] = b"maillage/release/v1\0";

/// The longest accepted `params` identifier, in bytes.
pub const MAX_PARAMS_LEN: usize = 256;

const RELEASE_FIELDS: usize = 8;
const CELL_FIELDS: usize = 5;
/// Longer than any indicator or category code; bounds what the decoder reads.
const MAX_CODE_LEN: usize = 64;
const MAX_MECHANISM_LEN: usize = 16;
const MAX_PERIOD_LEN: usize = 16;
/// How much of a refused text value an error message quotes.
const EXCERPT_LEN: usize = 80;

/// The most cells a release can have: every indicator of the catalogue, each category once.
pub fn max_cells() -> usize {
    Indicator::ALL
        .iter()
        .map(|i| i.categories().len().max(1))
        .sum()
}

/// The noise mechanism and the privacy loss it spent for this release.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mechanism {
    /// Discrete Laplace noise under pure differential privacy.
    Laplace {
        /// ε, the privacy loss.
        epsilon: f64,
    },
    /// Discrete Gaussian noise under zero-concentrated differential privacy.
    Gaussian {
        /// ρ, the zCDP privacy loss.
        rho: f64,
    },
}

impl Mechanism {
    /// The name written on the wire and in JSON: `laplace` or `gaussian`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Laplace { .. } => "laplace",
            Self::Gaussian { .. } => "gaussian",
        }
    }

    /// The privacy loss: ε or ρ.
    pub fn loss(self) -> f64 {
        match self {
            Self::Laplace { epsilon } => epsilon,
            Self::Gaussian { rho } => rho,
        }
    }

    /// The name of the loss field in JSON: `epsilon` or `rho`.
    pub fn loss_field(self) -> &'static str {
        match self {
            Self::Laplace { .. } => "epsilon",
            Self::Gaussian { .. } => "rho",
        }
    }

    /// The mechanism called `name` with loss `loss` (not yet range-checked).
    fn from_name(name: &str, loss: f64) -> Result<Self, ReleaseError> {
        match name {
            "laplace" => Ok(Self::Laplace { epsilon: loss }),
            "gaussian" => Ok(Self::Gaussian { rho: loss }),
            _ => Err(ReleaseError::UnknownMechanism {
                value: excerpt(name),
            }),
        }
    }

    fn check(self) -> Result<(), ReleaseError> {
        let loss = self.loss();
        if loss.is_finite() && loss > 0.0 {
            Ok(())
        } else {
            Err(ReleaseError::InvalidLoss {
                field: self.loss_field(),
                value: loss,
            })
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({} = {})",
            self.name(),
            self.loss_field(),
            self.loss()
        )
    }
}

/// One published figure: an indicator, or one category of it, with its noise.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// The indicator.
    pub indicator: Indicator,
    /// The category code for a `count_by` or `histogram` indicator, `None` for a count or sum.
    pub category: Option<String>,
    /// The noisy value (may be negative).
    pub value: i64,
    /// The noise scale (Laplace scale or Gaussian σ), finite and > 0.
    pub scale: f64,
    /// Half the width of the 95% interval around `value`, finite and ≥ 0.
    pub ci95_half_width: f64,
}

/// What one node publishes for one period, before or without its signature.
///
/// Fields are public so a node can fill them; [`Release::validate`] checks them, and every
/// encoding, decoding and signing function validates first.
#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    /// The node's public key; the signature must be made by its secret key.
    pub signer: VerifyingKey,
    /// The month the figures describe.
    pub period: Period,
    /// The identifier of the adopted policy and privacy parameters the release follows, e.g. a
    /// policy hash or `maillage-core-v1/eps=1.0/laplace`: 1 to [`MAX_PARAMS_LEN`] bytes of
    /// printable ASCII without spaces.
    pub params: String,
    /// The mechanism and the privacy loss spent.
    pub mechanism: Mechanism,
    /// When the release was made, in Unix seconds.
    pub created_at: u64,
    /// The figures, in catalogue order (see the module documentation).
    pub cells: Vec<Cell>,
}

/// Why a release, its bytes, its JSON or its signature was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    /// The bytes end in the middle of an item.
    #[error("release bytes end at byte {offset}, inside {field}: expected {expected}")]
    Truncated {
        /// Where the input ended.
        offset: usize,
        /// The field being read.
        field: String,
        /// What was being read.
        expected: &'static str,
    },
    /// Bytes follow the end of the item.
    #[error(
        "{count} trailing byte(s) from byte {offset} after the end of the {what}: nothing may follow it"
    )]
    TrailingBytes {
        /// Where the extra bytes start.
        offset: usize,
        /// How many there are.
        count: usize,
        /// What had ended.
        what: &'static str,
    },
    /// An item of the wrong type (or an indefinite length, a reserved value, another float width).
    #[error("at byte {offset} ({field}): expected {expected}, found {found}")]
    UnexpectedItem {
        /// Where the item starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// What would be accepted.
        expected: &'static str,
        /// The initial byte found and what it means.
        found: String,
    },
    /// An integer or length written with more bytes than it needs.
    #[error(
        "at byte {offset} ({field}): {value} is written with a {width}-byte argument; the canonical encoding uses the shortest form"
    )]
    NonShortestHead {
        /// Where the item starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The integer or length.
        value: u64,
        /// The argument width used.
        width: usize,
    },
    /// An array with the wrong number of elements.
    #[error("at byte {offset} ({field}): an array of {found} elements, expected {expected}")]
    ArrayLength {
        /// Where the array starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The length found.
        found: usize,
        /// The length(s) accepted.
        expected: String,
    },
    /// A byte string of the wrong length.
    #[error(
        "at byte {offset} ({field}): a byte string of {found} bytes, expected exactly {expected}"
    )]
    WrongLength {
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The length found.
        found: u64,
        /// The length accepted.
        expected: usize,
    },
    /// A text string longer than the field allows.
    #[error("at byte {offset} ({field}): a text string of {len} bytes, at most {max} accepted")]
    TooLong {
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The length found.
        len: u64,
        /// The most accepted.
        max: usize,
    },
    /// An integer outside the field's range.
    #[error("at byte {offset} ({field}): {value} is out of range: expected {expected}")]
    IntegerOutOfRange {
        /// Where the integer starts.
        offset: usize,
        /// The field being read.
        field: String,
        /// The integer found.
        value: i128,
        /// The range accepted.
        expected: &'static str,
    },
    /// A text string that is not UTF-8.
    #[error("at byte {offset} ({field}): the text string is not valid UTF-8")]
    InvalidUtf8 {
        /// Where the string starts.
        offset: usize,
        /// The field being read.
        field: String,
    },
    /// What was read does not re-encode to the same bytes (a decoder bug guard).
    #[error(
        "the decoded release does not re-encode to the bytes it was read from (first difference at byte {offset}); refusing a non-canonical encoding"
    )]
    NotCanonical {
        /// The first differing byte.
        offset: usize,
    },
    /// Another version of the encoding.
    #[error(
        "version: release version {found} is not supported: this build reads version {supported}"
    )]
    UnsupportedVersion {
        /// The version found.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// The signer is not a usable ed25519 public key.
    #[error("signer: {value} is not accepted as an ed25519 public key: {reason}")]
    InvalidSigner {
        /// The key, in hex.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A hex field that does not decode.
    #[error("{field}: {value:?} is not accepted: expected {expected}")]
    InvalidHex {
        /// `signer`, `signature` or `release_id`.
        field: &'static str,
        /// What was given (or its beginning).
        value: String,
        /// What would be accepted.
        expected: &'static str,
    },
    /// The period is not a month in range.
    #[error("period: {0}")]
    InvalidPeriod(PeriodError),
    /// The params identifier is empty, too long or has characters outside printable ASCII.
    #[error(
        "params: {value:?} is not accepted: expected 1 to {MAX_PARAMS_LEN} bytes of printable ASCII without spaces (0x21-0x7e), e.g. \"maillage-core-v1/eps=1.0/laplace\" or a policy hash in hex"
    )]
    InvalidParams {
        /// What was given (or its beginning).
        value: String,
    },
    /// Not a known mechanism.
    #[error("mechanism: {value:?} is not a mechanism: expected \"laplace\" or \"gaussian\"")]
    UnknownMechanism {
        /// What was given.
        value: String,
    },
    /// The privacy loss is not a finite positive number.
    #[error(
        "{field}: {value} is not accepted as a privacy loss: expected a finite number greater than 0"
    )]
    InvalidLoss {
        /// `epsilon` or `rho`.
        field: &'static str,
        /// What was given.
        value: f64,
    },
    /// The JSON names the loss field that does not go with its mechanism, or none.
    #[error("{}", loss_field_message(.mechanism, .expected, .found))]
    LossField {
        /// The mechanism.
        mechanism: &'static str,
        /// The loss field it takes.
        expected: &'static str,
        /// The other loss field, if that is what was given.
        found: Option<&'static str>,
    },
    /// A release without cells.
    #[error("cells: a release has at least one cell")]
    NoCells,
    /// An indicator code outside the catalogue.
    #[error("cells[{cell}].indicator: {value:?} is not an indicator of the catalogue: expected one of {}", Indicator::codes().join(", "))]
    UnknownIndicator {
        /// The cell's position.
        cell: usize,
        /// What was given.
        value: String,
    },
    /// An indicator out of catalogue order, or listed twice.
    #[error("cells[{cell}].indicator: {indicator} after {previous}: each indicator appears once, its cells together, in catalogue order ({})", Indicator::codes().join(", "))]
    IndicatorOrder {
        /// The cell's position.
        cell: usize,
        /// Its indicator.
        indicator: Indicator,
        /// The indicator of the cells before it.
        previous: Indicator,
    },
    /// A category that is not the one expected at this position.
    #[error("cells[{cell}].category: found {}, expected {}: {}", show_category(.found.as_deref()), show_category(*.expected), category_rule(*.indicator))]
    UnexpectedCategory {
        /// The cell's position.
        cell: usize,
        /// Its indicator.
        indicator: Indicator,
        /// The category found.
        found: Option<String>,
        /// The category expected here.
        expected: Option<&'static str>,
    },
    /// A cell after its indicator already listed all its categories (a duplicate).
    #[error("cells[{cell}]: a duplicate cell: indicator {indicator} already listed all its cells; {}", category_rule(*.indicator))]
    DuplicateCell {
        /// The cell's position.
        cell: usize,
        /// Its indicator.
        indicator: Indicator,
    },
    /// An indicator that stops before listing all its categories.
    #[error("cells[{cell}]: indicator {indicator} is missing categories {}; {}", .missing.join(", "), category_rule(*.indicator))]
    MissingCategories {
        /// Where the next category was expected.
        cell: usize,
        /// The indicator.
        indicator: Indicator,
        /// The categories not listed.
        missing: Vec<&'static str>,
    },
    /// A scale or interval half-width out of range.
    #[error("cells[{cell}].{field}: {value} is not accepted: expected {expected}")]
    InvalidCellFloat {
        /// The cell's position.
        cell: usize,
        /// `scale` or `ci95_half_width`.
        field: &'static str,
        /// What was given.
        value: f64,
        /// What would be accepted.
        expected: &'static str,
    },
    /// A signed release read without its signature.
    #[error(
        "signature: missing: a signed release carries its 64-byte ed25519 signature as 128 hex digits"
    )]
    MissingSignature,
    /// An unsigned release read with a signature.
    #[error("signature: an unsigned release has no signature field; read it as a signed release")]
    UnexpectedSignature,
    /// Signing with a key that is not the release's signer.
    #[error("signer: the signing key's public key {key} is not the release's signer {signer}")]
    SignerMismatch {
        /// The release's signer, in hex.
        signer: String,
        /// The signing key's public key, in hex.
        key: String,
    },
    /// The signature does not verify.
    #[error(
        "signature: does not verify: it was not made by signer {signer} over this release (period {period}, params {params})"
    )]
    BadSignature {
        /// The release's signer, in hex.
        signer: String,
        /// The release's period.
        period: Period,
        /// The release's params.
        params: String,
    },
    /// Malformed JSON, or JSON not of the release's shape.
    #[error("JSON release: {message}")]
    Json {
        /// The line of the error (1-based), 0 if unknown.
        line: usize,
        /// The column of the error (1-based), 0 if unknown.
        column: usize,
        /// serde_json's description, with its position.
        message: String,
    },
}

fn loss_field_message(mechanism: &str, expected: &str, found: &Option<&'static str>) -> String {
    match found {
        Some(found) => format!(
            "{found}: mechanism {mechanism:?} takes its privacy loss in field {expected:?}, not {found:?}"
        ),
        None => format!(
            "{expected}: missing: mechanism {mechanism:?} takes its privacy loss in field {expected:?} (a number > 0)"
        ),
    }
}

fn show_category(category: Option<&str>) -> String {
    category.map_or_else(|| "null".to_owned(), |c| format!("{c:?}"))
}

fn category_rule(indicator: Indicator) -> String {
    let categories = indicator.categories();
    if categories.is_empty() {
        format!(
            "{indicator} is a {} with exactly one cell, whose category is null",
            indicator.kind()
        )
    } else {
        format!(
            "{indicator} lists each of its {} categories once, in this order: {}",
            categories.len(),
            categories.join(", ")
        )
    }
}

/// The beginning of `s`, for quoting a refused value without quoting megabytes.
fn excerpt(s: &str) -> String {
    match s.char_indices().nth(EXCERPT_LEN) {
        Some((end, _)) => format!("{}…", &s[..end]),
        None => s.to_owned(),
    }
}

fn check_signer(key: &VerifyingKey) -> Result<(), ReleaseError> {
    // Compared on the bytes (see `checkpoint::is_canonical_point_encoding`): the same answer as
    // re-encoding the decoded point, without its field inversion.
    let reason = if !crate::checkpoint::is_canonical_point_encoding(key.as_bytes()) {
        "the point is not in its canonical encoding"
    } else if key.is_weak() {
        "the point has small order, so signatures by it prove nothing"
    } else {
        return Ok(());
    };
    Err(ReleaseError::InvalidSigner {
        value: hex::encode(key.as_bytes()),
        reason,
    })
}

fn check_params(params: &str) -> Result<(), ReleaseError> {
    let ok = (1..=MAX_PARAMS_LEN).contains(&params.len())
        && params.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ReleaseError::InvalidParams {
            value: excerpt(params),
        })
    }
}

fn check_cell_floats(index: usize, scale: f64, ci: f64) -> Result<(), ReleaseError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(ReleaseError::InvalidCellFloat {
            cell: index,
            field: "scale",
            value: scale,
            expected: "a finite number greater than 0",
        });
    }
    if !(ci.is_finite() && ci >= 0.0 && ci.is_sign_positive()) {
        return Err(ReleaseError::InvalidCellFloat {
            cell: index,
            field: "ci95_half_width",
            value: ci,
            expected: "a finite number greater than or equal to 0 (and not -0)",
        });
    }
    Ok(())
}

/// The cells of one indicator being checked: which category comes next.
#[derive(Debug)]
struct Group {
    indicator: Indicator,
    /// The indicator's categories, in order (empty: the indicator has one cell, whose category
    /// is `None`).
    categories: &'static [&'static str],
    next: usize,
}

impl Group {
    fn new(indicator: Indicator) -> Self {
        Self {
            indicator,
            categories: indicator.category_codes(),
            next: 0,
        }
    }

    /// The category of each cell the indicator must list, in order.
    fn slot(&self, n: usize) -> Option<Option<&'static str>> {
        if self.categories.is_empty() {
            (n == 0).then_some(None)
        } else {
            self.categories.get(n).map(|c| Some(*c))
        }
    }

    fn accept(&mut self, index: usize, category: Option<&str>) -> Result<(), ReleaseError> {
        let Some(expected) = self.slot(self.next) else {
            return Err(ReleaseError::DuplicateCell {
                cell: index,
                indicator: self.indicator,
            });
        };
        if category != expected {
            return Err(ReleaseError::UnexpectedCategory {
                cell: index,
                indicator: self.indicator,
                found: category.map(excerpt),
                expected,
            });
        }
        self.next += 1;
        Ok(())
    }

    /// Fails if the group stopped before its last category; `index` is where the next was due.
    fn finish(&self, index: usize) -> Result<(), ReleaseError> {
        if self.slot(self.next).is_none() {
            return Ok(());
        }
        Err(ReleaseError::MissingCategories {
            cell: index,
            indicator: self.indicator,
            missing: self
                .categories
                .get(self.next..)
                .unwrap_or_default()
                .to_vec(),
        })
    }
}

/// Checks, one cell at a time, that cells come in catalogue order and complete (the rule in the
/// module documentation). Shared with aggregates, whose cells follow the same rule so that they
/// add up cell by cell; the errors are the [`ReleaseError`] cell-order variants.
#[derive(Debug, Default)]
pub(crate) struct CellOrder {
    group: Option<Group>,
}

impl CellOrder {
    /// Takes the next cell, at position `index`.
    pub(crate) fn accept(
        &mut self,
        index: usize,
        indicator: Indicator,
        category: Option<&str>,
    ) -> Result<(), ReleaseError> {
        let mut current = match self.group.take() {
            Some(g) if g.indicator == indicator => g,
            Some(previous) => {
                previous.finish(index)?;
                if indicator.index() <= previous.indicator.index() {
                    return Err(ReleaseError::IndicatorOrder {
                        cell: index,
                        indicator,
                        previous: previous.indicator,
                    });
                }
                Group::new(indicator)
            }
            None => Group::new(indicator),
        };
        current.accept(index, category)?;
        self.group = Some(current);
        Ok(())
    }

    /// Fails if the last indicator stopped before its last category; `len` is the cell count.
    pub(crate) fn finish(self, len: usize) -> Result<(), ReleaseError> {
        match self.group {
            Some(last) => last.finish(len),
            None => Ok(()),
        }
    }
}

fn check_cells(cells: &[Cell]) -> Result<(), ReleaseError> {
    if cells.is_empty() {
        return Err(ReleaseError::NoCells);
    }
    let mut order = CellOrder::default();
    for (index, cell) in cells.iter().enumerate() {
        check_cell_floats(index, cell.scale, cell.ci95_half_width)?;
        order.accept(index, cell.indicator, cell.category.as_deref())?;
    }
    order.finish(cells.len())
}

/// `SIGNING_DOMAIN ‖ canonical`.
fn signing_message(canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_DOMAIN.len() + canonical.len());
    message.extend_from_slice(SIGNING_DOMAIN);
    message.extend_from_slice(canonical);
    message
}

impl Release {
    /// Checks every field against the rules of the encoding (see the module documentation).
    pub fn validate(&self) -> Result<(), ReleaseError> {
        check_signer(&self.signer)?;
        check_params(&self.params)?;
        self.mechanism.check()?;
        check_cells(&self.cells)
    }

    /// The canonical encoding, after [`Release::validate`].
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, ReleaseError> {
        self.validate()?;
        Ok(self.encode_unchecked())
    }

    /// The release id: SHA-256 of the signed message (see the module documentation).
    pub fn id(&self) -> Result<ReleaseId, ReleaseError> {
        Ok(ReleaseId::of_canonical(&self.canonical_bytes()?))
    }

    /// Reads a canonical release, refusing any other encoding of it.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReleaseError> {
        let mut reader = Reader::new(bytes);
        let release = Self::decode_from(&mut reader, &SignerKeys::default())?;
        reader.finish("release")?;
        release.check_read(bytes, 0)?;
        Ok(release)
    }

    /// Validates a release just decoded from `read` (found at byte `start` of the input).
    ///
    /// What was read is then the canonical encoding of the release: the reader accepts only
    /// the writer's forms (shortest heads, definite lengths, 64-bit floats, the exact field and
    /// cell counts), keeps every byte string, text, integer and float bit for bit, and the
    /// values it parses print back as they were read (codes are matched exactly, a period is
    /// `YYYY-MM` with a year of 2000–2999). Debug builds, which run the tests, still re-encode
    /// and compare; the property test `decoders_accept_only_what_they_would_write` checks the
    /// same on damaged releases in every build. Skipping the re-encoding makes decoding about a
    /// third cheaper, which a hub pays for every release it receives.
    fn check_read(&self, read: &[u8], start: usize) -> Result<(), ReleaseError> {
        self.validate()?;
        if !cfg!(debug_assertions) {
            return Ok(());
        }
        let mut w = Writer::with_capacity(read.len());
        self.encode_into(&mut w);
        let again = w.into_bytes();
        if again != read {
            let offset = start + again.iter().zip(read).take_while(|(a, b)| a == b).count();
            return Err(ReleaseError::NotCanonical { offset });
        }
        Ok(())
    }

    /// Signs the release with `key`, which must be the secret key of [`Release::signer`].
    pub fn sign(self, key: &SigningKey) -> Result<SignedRelease, ReleaseError> {
        SignedRelease::sign(self, key)
    }

    /// The JSON view, without signature, indented.
    pub fn to_json_pretty(&self) -> Result<String, ReleaseError> {
        self.validate()?;
        Ok(json::to_string_pretty(&json::ReleaseJson::new(self, None)))
    }

    /// Reads the JSON view of an unsigned release (refusing a `signature` field).
    pub fn from_json(text: &str) -> Result<Self, ReleaseError> {
        match json::parse(text)?.into_parts()? {
            (release, None) => Ok(release),
            (_, Some(_)) => Err(ReleaseError::UnexpectedSignature),
        }
    }

    fn encode_into(&self, w: &mut Writer) {
        w.array(RELEASE_FIELDS);
        w.uint(VERSION);
        w.bytes(self.signer.as_bytes());
        w.text(&self.period.to_string());
        w.text(&self.params);
        w.text(self.mechanism.name());
        w.f64(self.mechanism.loss());
        w.uint(self.created_at);
        w.array(self.cells.len());
        for cell in &self.cells {
            w.array(CELL_FIELDS);
            w.text(cell.indicator.code());
            w.opt_text(cell.category.as_deref());
            w.int(cell.value);
            w.f64(cell.scale);
            w.f64(cell.ci95_half_width);
        }
    }

    /// The encoding of the fields as they are, valid or not; callers validate first.
    fn encode_unchecked(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.encoded_len_hint());
        self.encode_into(&mut w);
        w.into_bytes()
    }

    /// About the length of the encoding (a little more, most of the time), so that encoding
    /// does not grow its buffer.
    fn encoded_len_hint(&self) -> usize {
        // Fixed fields and heads, then per cell: code, category, value, two floats and heads.
        160 + self.params.len() + self.cells.len() * 96
    }

    /// Reads the structure of a release; values are checked by [`Release::validate`] after.
    /// The signer's key is taken from `keys` when it is there (decoding a key costs a square
    /// root in the field; a hub or auditor meets the same members' keys again and again).
    fn decode_from(r: &mut Reader<'_>, keys: &SignerKeys) -> Result<Self, ReleaseError> {
        let mut cells = Vec::new();
        let (head, _) = read_release(r, keys, |_, count, cell| {
            cells.reserve(count);
            cells.push(Cell {
                indicator: cell.indicator,
                category: cell.category.map(str::to_owned),
                value: cell.value,
                scale: cell.scale,
                ci95_half_width: cell.ci95_half_width,
            });
        })?;
        Ok(Self {
            signer: head.signer,
            period: head.period,
            params: head.params,
            mechanism: head.mechanism,
            created_at: head.created_at,
            cells,
        })
    }
}

/// A cell as read, its category borrowed from the input.
struct CellRead<'a> {
    indicator: Indicator,
    category: Option<&'a str>,
    value: i64,
    scale: f64,
    ci95_half_width: f64,
}

/// The fields of a release besides its cells, and how many cells it has: what
/// [`SignedRelease::check_with`] gives of a release it checked without building its cells.
#[derive(Debug, Clone, PartialEq)]
pub struct ReleaseHead {
    /// [`Release::signer`]
    pub signer: VerifyingKey,
    /// [`Release::period`]
    pub period: Period,
    /// [`Release::params`]
    pub params: String,
    /// [`Release::mechanism`]
    pub mechanism: Mechanism,
    /// [`Release::created_at`]
    pub created_at: u64,
    /// How many cells the release has.
    pub cells: usize,
}

/// Reads a release's items (refusing every form the writer does not produce), handing each
/// cell to `on_cell` with its position and the cell count; the values are not validated, except
/// that the second value returned says whether the signer's key came from `keys` (which keeps
/// only valid signers' keys).
fn read_release<'a>(
    r: &mut Reader<'a>,
    keys: &SignerKeys,
    mut on_cell: impl FnMut(usize, usize, CellRead<'a>),
) -> Result<(ReleaseHead, bool), ReleaseError> {
    let (offset, len) = r.array(Field::Top("release"))?;
    let wrong_length = || ReleaseError::ArrayLength {
        offset,
        field: "release".to_owned(),
        found: len,
        expected: format!("exactly {RELEASE_FIELDS}"),
    };
    if len == 0 {
        return Err(wrong_length());
    }
    // The version is read before the length is checked, so that a future version with
    // other fields is refused as such.
    let version = r.uint(Field::Top("version"))?;
    if version != VERSION {
        return Err(ReleaseError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    if len != RELEASE_FIELDS {
        return Err(wrong_length());
    }
    let signer_bytes = r.bytes::<32>(Field::Top("signer"))?;
    let (signer, signer_checked) = match keys.kept(&signer_bytes) {
        Some(key) => (key, true),
        None => (keys.decode(&signer_bytes)?, false),
    };
    let period = r.text(MAX_PERIOD_LEN, Field::Top("period"))?;
    let period: Period = period.parse().map_err(ReleaseError::InvalidPeriod)?;
    let params = r.text(MAX_PARAMS_LEN, Field::Top("params"))?.to_owned();
    let mechanism = r.text(MAX_MECHANISM_LEN, Field::Top("mechanism"))?;
    let loss = r.f64(Field::Top("loss"))?;
    let mechanism = Mechanism::from_name(mechanism, loss)?;
    let created_at = r.uint(Field::Top("created_at"))?;
    let (offset, count) = r.array(Field::Top("cells"))?;
    let max = max_cells();
    if !(1..=max).contains(&count) {
        return Err(ReleaseError::ArrayLength {
            offset,
            field: "cells".to_owned(),
            found: count,
            expected: format!("1 to {max}"),
        });
    }
    for n in 0..count {
        r.array_of(CELL_FIELDS, Field::Cell(n, ""))?;
        let code = r.text(MAX_CODE_LEN, Field::Cell(n, "indicator"))?;
        let indicator =
            Indicator::from_code(code).ok_or_else(|| ReleaseError::UnknownIndicator {
                cell: n,
                value: excerpt(code),
            })?;
        let category = r.opt_text(MAX_CODE_LEN, Field::Cell(n, "category"))?;
        let value = r.int(Field::Cell(n, "value"))?;
        let scale = r.f64(Field::Cell(n, "scale"))?;
        let ci95_half_width = r.f64(Field::Cell(n, "ci95_half_width"))?;
        on_cell(
            n,
            count,
            CellRead {
                indicator,
                category,
                value,
                scale,
                ci95_half_width,
            },
        );
    }
    Ok((
        ReleaseHead {
            signer,
            period,
            params,
            mechanism,
            created_at,
            cells: count,
        },
        signer_checked,
    ))
}

/// Signers' keys already decoded, by their 32 bytes: decoding a key (a point decompression,
/// a square root in the field) costs about as much as a fifth of a signature verification, and
/// a hub or an auditor reads the same members' keys again and again. A key found here is the
/// very value [`VerifyingKey::from_bytes`] gives for those bytes; a key not found is decoded.
#[derive(Debug, Clone, Default)]
pub struct SignerKeys {
    keys: std::collections::HashMap<[u8; 32], VerifyingKey>,
}

impl SignerKeys {
    /// No key yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps a decoded key, if it is a valid signer's (canonically encoded, not of small
    /// order): a key taken from here needs no such check again.
    pub fn insert(&mut self, key: VerifyingKey) {
        if check_signer(&key).is_ok() {
            self.keys.insert(key.to_bytes(), key);
        }
    }

    /// The key kept for these bytes, if any (a valid signer's key, see [`SignerKeys::insert`]).
    fn kept(&self, bytes: &[u8; 32]) -> Option<VerifyingKey> {
        self.keys.get(bytes).copied()
    }

    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key of these bytes: the one kept, or decoded now (and not kept).
    pub fn decode(&self, bytes: &[u8; 32]) -> Result<VerifyingKey, ReleaseError> {
        if let Some(key) = self.kept(bytes) {
            return Ok(key);
        }
        VerifyingKey::from_bytes(bytes).map_err(|_| ReleaseError::InvalidSigner {
            value: hex::encode(bytes),
            reason: "the bytes are not the encoding of a curve point",
        })
    }
}

impl FromIterator<VerifyingKey> for SignerKeys {
    fn from_iter<I: IntoIterator<Item = VerifyingKey>>(keys: I) -> Self {
        let mut out = Self::new();
        for key in keys {
            out.insert(key);
        }
        out
    }
}

/// The id of a release: SHA-256 of `SIGNING_DOMAIN ‖ canonical release`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseId(pub(crate) [u8; 32]);

impl ReleaseId {
    fn of_canonical(canonical: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(SIGNING_DOMAIN);
        hasher.update(canonical);
        Self(hasher.finalize().into())
    }

    /// The id with these 32 bytes, e.g. read back from a store or a receipt.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Reads 64 hexadecimal digits (either case), as [`ReleaseId`]'s `Display` writes them.
impl FromStr for ReleaseId {
    type Err = ReleaseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| ReleaseError::InvalidHex {
            field: "release_id",
            value: excerpt(s),
            expected: "64 hexadecimal digits (a 32-byte SHA-256 hash)",
        })?;
        Ok(Self(bytes))
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseId({self})")
    }
}

/// A valid release with a signature, not necessarily verified: call [`SignedRelease::verify`],
/// or read it with [`SignedRelease::decode_and_verify`] or [`SignedRelease::from_json_and_verify`].
///
/// Its release always passes [`Release::validate`], so it always has a canonical encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedRelease {
    release: Release,
    signature: Signature,
}

impl SignedRelease {
    /// Validates `release` and signs it with `key`, which must be the release's signer.
    pub fn sign(release: Release, key: &SigningKey) -> Result<Self, ReleaseError> {
        let canonical = release.canonical_bytes()?;
        let key_public = key.verifying_key();
        if key_public != release.signer {
            return Err(ReleaseError::SignerMismatch {
                signer: hex::encode(release.signer.as_bytes()),
                key: hex::encode(key_public.as_bytes()),
            });
        }
        let signature = key.sign(&signing_message(&canonical));
        Ok(Self { release, signature })
    }

    /// Puts a release and a signature together after validating the release; the signature is
    /// not checked (see [`SignedRelease::verify`]).
    pub fn from_parts(release: Release, signature: Signature) -> Result<Self, ReleaseError> {
        release.validate()?;
        Ok(Self { release, signature })
    }

    /// The release.
    pub fn release(&self) -> &Release {
        &self.release
    }

    /// The signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The release and the signature.
    pub fn into_parts(self) -> (Release, Signature) {
        (self.release, self.signature)
    }

    /// Checks the signature, with `verify_strict`, over the re-encoded release.
    pub fn verify(&self) -> Result<(), ReleaseError> {
        let message = signing_message(&self.canonical_release());
        self.release
            .signer
            .verify_strict(&message, &self.signature)
            .map_err(|_| ReleaseError::BadSignature {
                signer: hex::encode(self.release.signer.as_bytes()),
                period: self.release.period,
                params: self.release.params.clone(),
            })
    }

    /// The signed message, `SIGNING_DOMAIN ‖ canonical release` (the release id is its
    /// SHA-256), written in one buffer.
    pub fn signed_message(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SIGNING_DOMAIN.len() + self.release.encoded_len_hint());
        w.raw(SIGNING_DOMAIN);
        self.release.encode_into(&mut w);
        w.into_bytes()
    }

    /// The canonical bytes of the release alone, as signed after [`SIGNING_DOMAIN`].
    pub fn canonical_release(&self) -> Vec<u8> {
        // The release was validated when this value was made and cannot have changed since.
        self.release.encode_unchecked()
    }

    /// The wire encoding: the CBOR array `[release, signature]`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(self.release.encoded_len_hint() + 67);
        w.array(2);
        self.release.encode_into(&mut w);
        w.bytes(&self.signature.to_bytes());
        w.into_bytes()
    }

    /// Reads the wire encoding, refusing anything not canonical; the signature is not checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, ReleaseError> {
        Self::decode_with(bytes, &SignerKeys::default())
    }

    /// [`SignedRelease::decode`], taking the signer's decoded key from `keys` when it is there
    /// (the same key [`VerifyingKey::from_bytes`] would give, without decoding it again).
    pub fn decode_with(bytes: &[u8], keys: &SignerKeys) -> Result<Self, ReleaseError> {
        let mut r = Reader::new(bytes);
        r.array_of(2, Field::Top("signed release"))?;
        let start = r.position();
        let release = Release::decode_from(&mut r, keys)?;
        let end = r.position();
        let signature = Signature::from_bytes(&r.bytes::<64>(Field::Top("signature"))?);
        r.finish("signed release")?;
        // The reader's positions lie inside `bytes`, so the range is always there.
        release.check_read(bytes.get(start..end).unwrap_or_default(), start)?;
        Ok(Self { release, signature })
    }

    /// Checks wire bytes exactly as [`SignedRelease::decode_with`] does — it accepts the same
    /// bytes and refuses the others with the same error — but keeps only the release's head
    /// and signature instead of building its cells (a string per category): for a hub, which
    /// checks a release and stores its bytes as they came. The cells are checked as they are
    /// read; an error among them is reported only after the rest has been read and the head
    /// checked, in the order [`Release::validate`] checks them.
    pub fn check_with(
        bytes: &[u8],
        keys: &SignerKeys,
    ) -> Result<(ReleaseHead, Signature), ReleaseError> {
        let mut r = Reader::new(bytes);
        r.array_of(2, Field::Top("signed release"))?;
        let mut order = CellOrder::default();
        let mut cell_error = None;
        let (head, signer_checked) = read_release(&mut r, keys, |n, _, cell| {
            if cell_error.is_none() {
                cell_error = check_cell_floats(n, cell.scale, cell.ci95_half_width)
                    .and_then(|()| order.accept(n, cell.indicator, cell.category))
                    .err();
            }
        })?;
        let signature = Signature::from_bytes(&r.bytes::<64>(Field::Top("signature"))?);
        r.finish("signed release")?;
        if !signer_checked {
            check_signer(&head.signer)?;
        }
        check_params(&head.params)?;
        head.mechanism.check()?;
        if let Some(e) = cell_error {
            return Err(e);
        }
        order.finish(head.cells)?;
        Ok((head, signature))
    }

    /// Reads the wire encoding and checks the signature.
    pub fn decode_and_verify(bytes: &[u8]) -> Result<Self, ReleaseError> {
        let signed = Self::decode(bytes)?;
        signed.verify()?;
        Ok(signed)
    }

    /// The release id (the signature does not enter it).
    pub fn id(&self) -> ReleaseId {
        ReleaseId::of_canonical(&self.canonical_release())
    }

    /// Whether `self` and `other`, both verified, prove that their signer equivocated: one
    /// signer, one period, two different releases.
    pub fn equivocates_with(&self, other: &SignedRelease) -> bool {
        self.release.signer == other.release.signer
            && self.release.period == other.release.period
            && self.id() != other.id()
    }

    /// The JSON view, with signature, indented.
    pub fn to_json_pretty(&self) -> String {
        json::to_string_pretty(&json::ReleaseJson::new(
            &self.release,
            Some(&self.signature),
        ))
    }

    /// Reads the JSON view of a signed release; the signature is not checked.
    pub fn from_json(text: &str) -> Result<Self, ReleaseError> {
        match json::parse(text)?.into_parts()? {
            (release, Some(signature)) => Ok(Self { release, signature }),
            (_, None) => Err(ReleaseError::MissingSignature),
        }
    }

    /// Reads the JSON view of a signed release and checks the signature.
    pub fn from_json_and_verify(text: &str) -> Result<Self, ReleaseError> {
        let signed = Self::from_json(text)?;
        signed.verify()?;
        Ok(signed)
    }
}
