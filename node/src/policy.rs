//! `maillage policy …`: the node's copy of the governance policy and its adoption records.
//!
//! Files, in the node directory's `policy/` folder, each replaced atomically (temporary file,
//! fsync, rename, fsync of the folder):
//! - `document.automerge`: the Automerge policy document (proposals and their merges);
//! - `adoptions.json`: the adoption chain, every adopted version with its record, verified
//!   from the genesis on every load;
//! - `pending-signatures.json`: committee signatures gathered for the current proposal;
//! - `adopted-at.json`: when this node learned each adoption (the start of the grace period of
//!   the version it replaced; records carry no time);
//! - `.lock`: held by whoever reads-modifies-writes the files (the commands above, and
//!   `maillage serve`, which merges what they write with what peers send).
//!
//! A node with an adopted policy releases under its parameters and names its hash in the
//! release's `params` ([`Governance`]); a hub with one accepts only releases naming its current
//! version, or the version that one replaced until `superseded_grace_days` after the hub learned
//! the replacement.
//!
//! The policy commands read only the node's configuration and key, not its store, so they run
//! beside `maillage serve`.
//!
//! # Proposal files (`maillage policy propose FILE`)
//!
//! TOML (`.toml`) or JSON (any other extension), one list `edits`, each with an `op`; see
//! `maillage_policy::edit` for every operation. Example:
//!
//! ```toml
//! [[edits]]
//! op = "set_budget"
//! budget = 0.8
//!
//! [[edits]]
//! op = "add_committee_member"
//! key = "<64 hex>"
//! name = "ANCT"
//!
//! [[edits]]
//! op = "set_quorum"
//! quorum = 2
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use maillage_policy::{
    Added, AdoptedPolicy, AdoptionChain, AdoptionSignature, Ballot, Edit, JoinDetails, JoinRequest,
    Policy, PolicyDoc, PolicyStatus, Proposal, PublicKey, Role as PolicyRole, diff, sign_adoption,
};
use maillage_privacy::bounded::Bounds;
use maillage_privacy::release::{IndicatorWeight, Mechanism, PrivacyParams};
use serde_json::json;

use crate::config::{Config, Role};
use crate::identity::Identity;
use crate::node::{CONFIG_FILE, KEY_FILE};

/// The policy folder inside a node directory.
pub const POLICY_DIR: &str = "policy";
/// The document's file name.
pub const DOCUMENT_FILE: &str = "document.automerge";
/// The adoption chain's file name.
pub const ADOPTIONS_FILE: &str = "adoptions.json";
/// The pending signatures' file name.
pub const PENDING_FILE: &str = "pending-signatures.json";
/// When this node learned each adoption (sequence → Unix seconds).
pub const ADOPTED_AT_FILE: &str = "adopted-at.json";
/// The lock file of writers of the folder (see [`PolicyFiles::lock`]).
pub const LOCK_FILE: &str = ".lock";

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The release parameters an adopted policy sets.
pub fn privacy_params(policy: &Policy) -> PrivacyParams {
    let p = &policy.privacy;
    PrivacyParams {
        mechanism: match p.mechanism {
            maillage_policy::Mechanism::Laplace => Mechanism::DiscreteLaplace,
            maillage_policy::Mechanism::Gaussian => Mechanism::DiscreteGaussian,
        },
        budget: p.budget(),
        bounds: Bounds {
            max_rows_per_person: p.bounds.max_rows_per_person,
            max_duration_min: p.bounds.max_duration_min,
            max_themes_per_row: p.bounds.max_themes_per_row,
            max_materiel_per_row: p.bounds.max_materiel_per_row,
        },
        indicators: policy
            .indicator_weights()
            .into_iter()
            .map(|(indicator, weight)| IndicatorWeight {
                indicator,
                weight: f64::from(weight),
            })
            .collect(),
    }
}

/// The policy files of one node directory.
#[derive(Debug, Clone)]
pub struct PolicyFiles {
    dir: PathBuf,
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    {
        let mut file =
            fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        std::io::Write::write_all(&mut file, bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    if let Some(parent) = path.parent() {
        // The rename is durable once the folder is synced.
        fs::File::open(parent)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", parent.display()))?;
    }
    Ok(())
}

impl PolicyFiles {
    /// The policy files of the node directory `node_dir` (the folder is created when written).
    pub fn of_node(node_dir: &Path) -> Self {
        Self {
            dir: node_dir.join(POLICY_DIR),
        }
    }

    /// Takes the policy folder's lock (`policy/.lock`, an advisory lock released when the file
    /// is dropped), waiting for another writer — `maillage serve` merging a sync, another
    /// `maillage policy` command — to finish. Every read-modify-write of the files holds it.
    pub fn lock(&self) -> Result<fs::File> {
        let file = self.open_lock()?;
        file.lock()
            .with_context(|| format!("locking {}", self.path(LOCK_FILE).display()))?;
        Ok(file)
    }

    /// The lock if it is free right now (`None` while another process holds it).
    pub fn try_lock(&self) -> Result<Option<fs::File>> {
        let file = self.open_lock()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(file)),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", self.path(LOCK_FILE).display()))
            }
        }
    }

    fn open_lock(&self) -> Result<fs::File> {
        self.ensure_dir()?;
        let path = self.path(LOCK_FILE);
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    /// The document file's path.
    pub fn document_path(&self) -> PathBuf {
        self.path(DOCUMENT_FILE)
    }

    /// The adoption chain file's path.
    pub fn chain_path(&self) -> PathBuf {
        self.path(ADOPTIONS_FILE)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn ensure_dir(&self) -> Result<()> {
        fs::create_dir_all(&self.dir).with_context(|| format!("creating {}", self.dir.display()))
    }

    /// The document, if the node has one.
    pub fn document(&self) -> Result<Option<PolicyDoc>> {
        let path = self.path(DOCUMENT_FILE);
        match fs::read(&path) {
            Ok(bytes) => PolicyDoc::load(&bytes)
                .map(Some)
                .with_context(|| format!("reading {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Saves the document.
    pub fn save_document(&self, doc: &PolicyDoc) -> Result<()> {
        self.ensure_dir()?;
        write_atomically(&self.path(DOCUMENT_FILE), &doc.save())
    }

    /// The adoption chain, verified from its genesis (empty if the node has none).
    pub fn chain(&self) -> Result<AdoptionChain> {
        let path = self.path(ADOPTIONS_FILE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AdoptionChain::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let entries: Vec<AdoptedPolicy> = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: not an adoption chain", path.display()))?;
        AdoptionChain::verify(entries).with_context(|| format!("verifying {}", path.display()))
    }

    /// Saves the chain, and records now as the time this node learned each adoption it did
    /// not know (see [`PolicyFiles::adopted_at`]).
    pub fn save_chain(&self, chain: &AdoptionChain) -> Result<()> {
        self.ensure_dir()?;
        let mut times = self.adopted_at()?;
        let now = unix_now();
        for entry in chain.entries() {
            times.entry(entry.sequence()).or_insert(now);
        }
        times.retain(|seq, _| chain.entries().iter().any(|e| e.sequence() == *seq));
        // The times first: a chain is never saved without them.
        write_atomically(
            &self.path(ADOPTED_AT_FILE),
            &serde_json::to_vec_pretty(&times)?,
        )?;
        let bytes = serde_json::to_vec(chain.entries())?;
        write_atomically(&self.path(ADOPTIONS_FILE), &bytes)
    }

    /// When this node learned each adoption (sequence → Unix seconds): the start of the grace
    /// period of the version it replaced. Adoption records carry no time (a signed time would
    /// need a trusted clock); each node counts the grace from its own reception. A sequence the
    /// file lacks (a chain written before it existed) counts from the chain file's last change.
    pub fn adopted_at(&self) -> Result<BTreeMap<u64, u64>> {
        let path = self.path(ADOPTED_AT_FILE);
        let times: BTreeMap<u64, u64> = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "{}: not a map of adoption sequences to Unix times",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(times)
    }

    /// The chain file's (length, last change) — cheap to compare to see whether it changed.
    fn chain_stamp(&self) -> Option<(u64, std::time::SystemTime)> {
        let meta = fs::metadata(self.path(ADOPTIONS_FILE)).ok()?;
        Some((meta.len(), meta.modified().ok()?))
    }

    fn pending(&self) -> Result<Vec<AdoptionSignature>> {
        let path = self.path(PENDING_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("{}: not a list of signatures", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    fn save_pending(&self, ballot: Option<&Ballot>, sigs: &[AdoptionSignature]) -> Result<()> {
        self.ensure_dir()?;
        let keep: Vec<&AdoptionSignature> = sigs
            .iter()
            .filter(|s| ballot.is_some_and(|b| s.target == *b.target()))
            .collect();
        write_atomically(&self.path(PENDING_FILE), &serde_json::to_vec_pretty(&keep)?)
    }
}

/// Why a release's `params` does not name a policy this node accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("it names the policy {named}, which {reason}; this node accepts {accepted}")]
pub struct PolicyMismatch {
    /// The release's `params` field as found.
    pub named: String,
    /// Why it is not accepted.
    pub reason: String,
    /// What is accepted (the current version, and the previous one until its grace ends).
    pub accepted: String,
}

/// A node's adopted policies, for making and checking releases.
#[derive(Debug, Clone)]
pub struct Governance {
    chain: AdoptionChain,
    /// When this node learned each adoption (sequence → Unix seconds).
    adopted_at: BTreeMap<u64, u64>,
    /// When the chain file last changed (for adoptions without a recorded time).
    chain_changed: u64,
}

const DAY: u64 = 86_400;

fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| format!("{secs} (Unix time)"))
}

impl Governance {
    /// The adopted policies of the node directory `node_dir`, verified from the genesis;
    /// `None` when it has adopted none (it then follows its local settings).
    pub fn load(node_dir: &Path) -> Result<Option<Self>> {
        let files = PolicyFiles::of_node(node_dir);
        let stamp = files.chain_stamp();
        let chain = files.chain()?;
        if chain.current().is_none() {
            return Ok(None);
        }
        let chain_changed = stamp
            .and_then(|(_, t)| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        Ok(Some(Self {
            chain,
            adopted_at: files.adopted_at()?,
            chain_changed,
        }))
    }

    /// The adoption chain.
    pub fn chain(&self) -> &AdoptionChain {
        &self.chain
    }

    /// The currently adopted version.
    pub fn current(&self) -> Result<&AdoptedPolicy> {
        self.chain.current().context("the adoption chain is empty")
    }

    /// When this node learned adoption `sequence` (Unix seconds).
    pub fn adopted_at(&self, sequence: u64) -> u64 {
        self.adopted_at
            .get(&sequence)
            .copied()
            .unwrap_or(self.chain_changed)
    }

    /// The release parameters of the current version, and the `params` field naming it.
    pub fn release_params(&self) -> Result<(PrivacyParams, String)> {
        let current = self.current()?;
        Ok((privacy_params(&current.policy), current.hash().to_hex()))
    }

    /// What this node accepts at `now`, in words.
    fn accepted(&self, now: u64) -> String {
        let Some(current) = self.chain.current() else {
            return "no adopted policy".into();
        };
        let mut text = format!(
            "releases under the adopted policy {} (adoption n°{})",
            current.hash(),
            current.sequence()
        );
        let entries = self.chain.entries();
        if entries.len() >= 2 {
            let previous = &entries[entries.len() - 2];
            let end = self
                .adopted_at(current.sequence())
                .saturating_add(u64::from(current.policy.calendar.superseded_grace_days) * DAY);
            if now < end && previous.hash() != current.hash() {
                text.push_str(&format!(
                    ", or under the policy it replaced, {}, until {}",
                    previous.hash(),
                    utc(end)
                ));
            }
        }
        text
    }

    /// The adopted version a release whose `params` field is `params` follows, if this node
    /// accepts it at `now`: the current version, or the one it replaced within the current
    /// version's grace period counted from when this node learned the replacement.
    pub fn check(&self, params: &str, now: u64) -> Result<&AdoptedPolicy, PolicyMismatch> {
        let mismatch = |reason: String| PolicyMismatch {
            named: params.to_owned(),
            reason,
            accepted: self.accepted(now),
        };
        let Ok(hash) = params.parse::<maillage_policy::PolicyHash>() else {
            return Err(mismatch(
                "is not an adopted policy's hash (64 hexadecimal characters): the release was made under local settings".into(),
            ));
        };
        let find = |sequence: u64| {
            self.chain
                .entries()
                .iter()
                .find(|e| e.sequence() == sequence)
        };
        let found = match self.chain.status(&hash) {
            PolicyStatus::Current { sequence } => find(sequence),
            PolicyStatus::NotAdopted => {
                return Err(mismatch("was never adopted on this network".into()));
            }
            PolicyStatus::Superseded {
                sequence,
                replaced_by,
                is_previous,
                grace_days,
            } => {
                let replaced = self.adopted_at(replaced_by);
                if !is_previous {
                    return Err(mismatch(format!(
                        "was superseded by adoption n°{replaced_by} and is not the version the current one replaced"
                    )));
                }
                let end = replaced.saturating_add(u64::from(grace_days) * DAY);
                if now >= end {
                    return Err(mismatch(format!(
                        "was superseded by adoption n°{replaced_by} on {}; its grace period of {grace_days} days ended on {}",
                        utc(replaced),
                        utc(end)
                    )));
                }
                find(sequence)
            }
        };
        found.ok_or_else(|| mismatch("is missing from the adoption chain".into()))
    }
}

/// What the policy commands need of a node: its configuration and key (not its store).
struct NodeKey {
    config: Config,
    identity: Identity,
    files: PolicyFiles,
}

fn open(dir: &Path) -> Result<NodeKey> {
    let config_path = dir.join(CONFIG_FILE);
    if !config_path.exists() {
        bail!(
            "{} holds no Maillage node (no {CONFIG_FILE}); create one with: maillage init --dir {} --role structure --name \"...\"",
            dir.display(),
            dir.display()
        );
    }
    let text = fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;
    let config: Config =
        toml::from_str(&text).with_context(|| format!("{}", config_path.display()))?;
    let identity = Identity::read(&dir.join(KEY_FILE))?;
    Ok(NodeKey {
        config,
        identity,
        files: PolicyFiles::of_node(dir),
    })
}

fn require_document(files: &PolicyFiles, dir: &Path) -> Result<PolicyDoc> {
    files.document()?.with_context(|| {
        format!(
            "{} has no policy document yet: propose the first version (maillage policy propose --dir {} FILE) or import one (maillage policy import --dir {} FOLDER)",
            dir.display(),
            dir.display(),
            dir.display()
        )
    })
}

/// Prints a line on stdout, returning an error instead of panicking when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

fn summary(policy: &Policy) -> serde_json::Value {
    json!({
        "hash": policy.hash().to_hex(),
        "mechanism": policy.privacy.mechanism,
        "budget": policy.privacy.budget(),
        "bounds": policy.privacy.bounds,
        "indicators": policy.indicator_weights().iter().map(|(i, w)| json!({"indicator": i, "weight": w})).collect::<Vec<_>>(),
        "calendar": policy.calendar,
        "members": policy.members.len(),
        "committee": policy.committee.members.iter().map(|(k, m)| json!({"key": k, "name": m.name})).collect::<Vec<_>>(),
        "quorum": policy.committee.quorum,
    })
}

fn print_policy(policy: &Policy) -> std::io::Result<()> {
    let p = &policy.privacy;
    out!(
        "  confidentialité : {} {} = {} par mois ; K = {}, D = {} min, T = {}, M = {}",
        p.mechanism,
        p.mechanism.symbol(),
        p.budget(),
        p.bounds.max_rows_per_person,
        p.bounds.max_duration_min,
        p.bounds.max_themes_per_row,
        p.bounds.max_materiel_per_row
    )?;
    let indicators: Vec<String> = policy
        .indicator_weights()
        .iter()
        .map(|(i, w)| format!("{i} ({w})"))
        .collect();
    out!(
        "  indicateurs ({}) : {}",
        indicators.len(),
        indicators.join(", ")
    )?;
    out!(
        "  calendrier : mois, diffusion due {} jours après la fin du mois, version remplacée acceptée {} jours",
        policy.calendar.submission_deadline_days,
        policy.calendar.superseded_grace_days
    )?;
    out!("  membres : {}", policy.members.len())?;
    out!(
        "  comité de pilotage : {} clé(s), quorum {}",
        policy.committee.members.len(),
        policy.committee.quorum
    )?;
    for (k, m) in &policy.committee.members {
        out!("    {k}  {}", m.name)?;
    }
    Ok(())
}

/// `maillage policy show`
pub fn show(dir: &Path, as_json: bool) -> Result<()> {
    let node = open(dir)?;
    let chain = node.files.chain()?;
    let doc = node.files.document()?;
    let proposed = doc.as_ref().map(PolicyDoc::policy).transpose()?;
    let adopted = chain.current();
    let changes = match (adopted, &proposed) {
        (Some(a), Some(p)) => diff(&a.policy, p),
        (None, Some(p)) => diff(&Policy::default(), p),
        _ => Vec::new(),
    };
    let pending_hash = proposed.as_ref().map(Policy::hash);
    let is_pending = pending_hash.is_some() && pending_hash != adopted.map(AdoptedPolicy::hash);
    let problems = proposed.as_ref().map(Policy::problems).unwrap_or_default();
    let ballot = proposed
        .as_ref()
        .filter(|_| is_pending)
        .and_then(|p| chain.ballot(p).ok());
    let mut signed = 0;
    if let Some(mut b) = ballot.clone() {
        for s in node.files.pending()? {
            if b.add(&s) == Ok(Added::Counted) {
                signed += 1;
            }
        }
    }
    if as_json {
        out!(
            "{}",
            json!({
                "adopted": adopted.map(|a| json!({"sequence": a.sequence(), "hash": a.hash().to_hex(), "policy": summary(&a.policy)})),
                "document": proposed.as_ref().map(|p| json!({"hash": p.hash().to_hex(), "members": p.members.len(), "indicators": p.indicators.len(), "heads": doc.as_ref().map(|d| d.heads().0.iter().map(hex::encode).collect::<Vec<_>>())})),
                "proposal": proposed.as_ref().filter(|_| is_pending).map(|p| json!({
                    "hash": p.hash().to_hex(),
                    "sequence": chain.next_sequence(),
                    "valid": problems.is_empty(),
                    "problems": problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "changes": changes.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "signatures": signed,
                    "quorum": ballot.as_ref().map(Ballot::quorum),
                })),
            })
        )?;
        return Ok(());
    }
    match adopted {
        Some(a) => {
            out!(
                "Politique adoptée : {} (adoption n°{})",
                a.hash(),
                a.sequence()
            )?;
            print_policy(&a.policy)?;
        }
        None => out!("Aucune politique adoptée.")?,
    }
    match &proposed {
        Some(p) if is_pending => {
            out!(
                "Proposition en attente : {} (adoption n°{} si elle est signée)",
                p.hash(),
                chain.next_sequence()
            )?;
            if changes.is_empty() {
                out!("  aucun changement par rapport à la version adoptée")?;
            }
            for c in &changes {
                out!("  {c}")?;
            }
            if problems.is_empty() {
                if let Some(b) = &ballot {
                    out!("  signatures : {signed} sur {} nécessaires", b.quorum())?;
                }
            } else {
                out!("  non valide, ne peut pas être adoptée :")?;
                for p in &problems {
                    out!("    - {p}")?;
                }
            }
        }
        Some(_) => out!("Pas de proposition en attente : le document est la version adoptée.")?,
        None => out!("Pas de document de politique sur ce nœud.")?,
    }
    Ok(())
}

fn read_proposal(path: &Path) -> Result<Proposal> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let proposal = if path.extension().is_some_and(|e| e == "toml") {
        toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    } else {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
    };
    Ok(proposal)
}

/// `maillage policy propose`
pub fn propose(dir: &Path, file: Option<&Path>, joins: &[PathBuf], as_json: bool) -> Result<()> {
    let node = open(dir)?;
    // A running daemon writes the same files: one writer at a time.
    let _lock = node.files.lock()?;
    let chain = node.files.chain()?;
    let mut doc = match node.files.document()? {
        Some(doc) => doc,
        // The first proposal on a network starts from the v1 default.
        None => PolicyDoc::genesis(&Policy::default())?,
    };
    let before = doc.policy()?;
    let mut edits: Vec<Edit> = match file {
        Some(f) => read_proposal(f)?.edits,
        None => Vec::new(),
    };
    let me = PublicKey::from(node.identity.public());
    for path in joins {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let request: JoinRequest = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a join request: {e}", path.display()))?;
        edits.push(
            request
                .to_edit(&me, &before)
                .with_context(|| format!("{}", path.display()))?,
        );
    }
    if edits.is_empty() {
        bail!(
            "nothing to propose: give a proposal file (TOML or JSON with a list of edits) or --join FILE"
        );
    }
    let label = format!("{} ({})", node.config.node.name, node.identity.public_hex());
    let had_problems: Vec<String> = before.problems().iter().map(ToString::to_string).collect();
    doc.apply(&edits, &label)?;
    let after = doc.policy()?;
    let new_problems: Vec<String> = after
        .problems()
        .iter()
        .map(ToString::to_string)
        .filter(|p| !had_problems.contains(p))
        .collect();
    if !new_problems.is_empty() {
        bail!(
            "the proposal would make the policy invalid; nothing was saved:\n  - {}",
            new_problems.join("\n  - ")
        );
    }
    node.files.save_document(&doc)?;
    let base = chain
        .current()
        .map(|a| a.policy.clone())
        .unwrap_or_else(|| before.clone());
    let changes = diff(&base, &after);
    if as_json {
        out!(
            "{}",
            json!({"hash": after.hash().to_hex(), "valid": after.validate().is_ok(),
                   "changes": changes.iter().map(ToString::to_string).collect::<Vec<_>>()})
        )?;
    } else {
        out!(
            "Proposition enregistrée : {} ({} modification(s))",
            after.hash(),
            edits.len()
        )?;
        for c in &changes {
            out!("  {c}")?;
        }
        if let Err(e) = after.validate() {
            out!("  attention : {e}")?;
        }
    }
    Ok(())
}

/// `maillage policy sign`
pub fn sign(dir: &Path, out_file: Option<&Path>, as_json: bool) -> Result<()> {
    let node = open(dir)?;
    let chain = node.files.chain()?;
    let doc = require_document(&node.files, dir)?;
    let policy = doc.policy()?;
    let mut ballot = chain
        .ballot(&policy)
        .context("this proposal cannot be signed")?;
    let me = PublicKey::from(node.identity.public());
    if !ballot.committee().members.contains_key(&me) {
        bail!(
            "this node's key {me} is not on the steering committee that adopts this version ({} key(s)); only committee members sign",
            ballot.committee().members.len()
        );
    }
    let signature = sign_adoption(node.identity.signing_key(), *ballot.target());
    ballot.add(&signature)?;
    let mut pending = node.files.pending()?;
    pending.retain(|s| s.signer != me || s.target != signature.target);
    pending.push(signature.clone());
    node.files.save_pending(Some(&ballot), &pending)?;
    let text = serde_json::to_string_pretty(&signature)?;
    if let Some(path) = out_file {
        write_atomically(path, text.as_bytes())?;
    }
    if as_json || out_file.is_none() {
        out!("{text}")?;
    } else {
        out!(
            "Signé : {} par {} ; signature écrite dans {}",
            signature.target,
            me,
            out_file
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// `maillage policy adopt`
pub fn adopt(dir: &Path, files: &[PathBuf], as_json: bool) -> Result<()> {
    let node = open(dir)?;
    // A running daemon writes the same files: one writer at a time.
    let _lock = node.files.lock()?;
    let mut chain = node.files.chain()?;
    let doc = require_document(&node.files, dir)?;
    let policy = doc.policy()?;
    let mut ballot = chain
        .ballot(&policy)
        .context("this proposal cannot be adopted")?;
    // Signatures kept from earlier calls count if they are for this very step.
    let mut pending: Vec<AdoptionSignature> = node
        .files
        .pending()?
        .into_iter()
        .filter(|s| ballot.add(s).is_ok())
        .collect();
    for path in files {
        let text =
            fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let sig: AdoptionSignature = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a policy signature: {e}", path.display()))?;
        ballot.add(&sig).with_context(|| {
            format!(
                "{}: signature refused; nothing was recorded",
                path.display()
            )
        })?;
        pending.push(sig);
    }
    let (count, quorum, target) = (ballot.count(), ballot.quorum(), *ballot.target());
    if !ballot.is_complete() {
        node.files.save_pending(Some(&ballot), &pending)?;
        if as_json {
            out!(
                "{}",
                json!({"adopted": false, "hash": target.policy.to_hex(), "sequence": target.sequence, "signatures": count, "quorum": quorum})
            )?;
        } else {
            out!(
                "Pas encore adoptée : {count} signature(s) valide(s) sur {quorum} nécessaires pour {}",
                target.policy
            )?;
        }
        return Ok(());
    }
    let record = ballot.into_record(doc.heads())?;
    chain.append(record, policy)?;
    node.files.save_chain(&chain)?;
    node.files.save_pending(None, &[])?;
    tracing::info!(hash = %target.policy, sequence = target.sequence, "policy adopted");
    if as_json {
        out!(
            "{}",
            json!({"adopted": true, "hash": target.policy.to_hex(), "sequence": target.sequence, "signatures": count, "quorum": quorum})
        )?;
    } else {
        out!(
            "Adoptée : {} (adoption n°{}, {count} signature(s), quorum {quorum})",
            target.policy,
            target.sequence
        )?;
    }
    Ok(())
}

/// `maillage policy members`
pub fn members(dir: &Path, proposed: bool, as_json: bool) -> Result<()> {
    let node = open(dir)?;
    let policy = if proposed {
        require_document(&node.files, dir)?.policy()?
    } else {
        let chain = node.files.chain()?;
        match chain.current() {
            Some(a) => a.policy.clone(),
            None => bail!(
                "no policy adopted on this node yet (use --proposed to list the proposal's registry)"
            ),
        }
    };
    if as_json {
        let list: Vec<_> = policy
            .members
            .iter()
            .map(|(k, m)| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("key".into(), json!(k));
                }
                v
            })
            .collect();
        out!("{}", serde_json::Value::Array(list))?;
        return Ok(());
    }
    out!("{} membre(s)", policy.members.len())?;
    for (k, m) in &policy.members {
        out!(
            "  {k}  {:<9} {:<40} {}{}",
            m.role,
            m.name,
            m.commune.as_deref().unwrap_or("-"),
            m.hub
                .map(|h| format!("  hub {}", h.short()))
                .unwrap_or_default()
        )?;
    }
    Ok(())
}

/// One row of a places-standard CSV (schéma de données des lieux de médiation numérique).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlaceRow {
    /// `id`.
    pub id: String,
    /// `pivot`.
    pub pivot: Option<String>,
    /// `nom`.
    pub nom: String,
    /// `code_insee`.
    pub code_insee: Option<String>,
}

/// Reads the row whose `id` is `place_id` from a places-standard CSV (comma-separated, header
/// row; other columns are ignored).
pub fn read_place(path: &Path, place_id: &str) -> Result<PlaceRow> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h == name);
    let (Some(id_col), Some(nom_col)) = (col("id"), col("nom")) else {
        bail!(
            "{}: not a places-standard file: the columns id and nom are required (found: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let (pivot_col, insee_col) = (col("pivot"), col("code_insee"));
    for (i, record) in reader.records().enumerate() {
        let record = record.with_context(|| format!("{}: line {}", path.display(), i + 2))?;
        if record.get(id_col) == Some(place_id) {
            let get = |c: Option<usize>| {
                c.and_then(|c| record.get(c))
                    .filter(|v| !v.is_empty())
                    .map(str::to_owned)
            };
            return Ok(PlaceRow {
                id: place_id.to_owned(),
                pivot: get(pivot_col),
                nom: record.get(nom_col).unwrap_or_default().to_owned(),
                code_insee: get(insee_col),
            });
        }
    }
    bail!("{}: no place with id {place_id:?}", path.display())
}

/// `maillage policy join-request`
pub fn join_request(
    dir: &Path,
    places: Option<&Path>,
    place_id: Option<&str>,
    hub: Option<&str>,
    out_file: Option<&Path>,
) -> Result<()> {
    let node = open(dir)?;
    let cfg = &node.config.node;
    let hub = hub
        .map(str::parse::<PublicKey>)
        .transpose()
        .context("--hub")?;
    let role = match cfg.role {
        Role::Structure => PolicyRole::Structure,
        Role::Hub => PolicyRole::Hub,
        Role::National => PolicyRole::National,
        Role::Auditor => PolicyRole::Auditor,
    };
    let mut details = JoinDetails {
        key: PublicKey::from(node.identity.public()),
        name: cfg.name.clone(),
        role,
        pivot: cfg.pivot.clone(),
        commune: cfg.code_insee.clone(),
        place_id: None,
        hub,
    };
    match (places, place_id) {
        (Some(file), Some(id)) => {
            let row = read_place(file, id)?;
            details.name = row.nom;
            details.pivot = row.pivot.or(details.pivot);
            details.commune = row.code_insee.or(details.commune);
            details.place_id = Some(row.id);
        }
        (Some(_), None) => bail!("--places needs --place-id: the id of this structure's row"),
        (None, Some(id)) => details.place_id = Some(id.to_owned()),
        (None, None) => {}
    }
    let request = JoinRequest::sign(details, node.identity.signing_key());
    let text = serde_json::to_string_pretty(&request)?;
    match out_file {
        Some(path) => {
            write_atomically(path, text.as_bytes())?;
            out!(
                "Demande d'adhésion écrite dans {} : remettez-la à votre hub (maillage policy propose --join FICHIER).",
                path.display()
            )?;
        }
        None => out!("{text}")?,
    }
    Ok(())
}

/// `maillage policy export`: the document and the adoption chain into a folder.
pub fn export(dir: &Path, to: &Path) -> Result<()> {
    let node = open(dir)?;
    let doc = require_document(&node.files, dir)?;
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    write_atomically(&to.join(DOCUMENT_FILE), &doc.save())?;
    let chain = node.files.chain()?;
    write_atomically(
        &to.join(ADOPTIONS_FILE),
        &serde_json::to_vec(chain.entries())?,
    )?;
    out!(
        "Politique exportée dans {} ({} adoption(s))",
        to.display(),
        chain.entries().len()
    )?;
    Ok(())
}

/// `maillage policy import`: merges a folder written by `export` (document and adoptions).
pub fn import(dir: &Path, from: &Path) -> Result<()> {
    let node = open(dir)?;
    // A running daemon writes the same files: one writer at a time.
    let _lock = node.files.lock()?;
    let theirs_doc = {
        let path = from.join(DOCUMENT_FILE);
        let bytes = fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        PolicyDoc::load(&bytes).with_context(|| format!("reading {}", path.display()))?
    };
    let doc = match node.files.document()? {
        Some(mut doc) => {
            doc.merge(&theirs_doc)?;
            doc
        }
        None => theirs_doc,
    };
    let their_entries: Vec<AdoptedPolicy> = match fs::read(from.join(ADOPTIONS_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{}: not an adoption chain",
                from.join(ADOPTIONS_FILE).display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).context("reading the adoptions"),
    };
    let mut chain = node.files.chain()?;
    let known = chain.entries().len();
    for (i, entry) in their_entries.into_iter().enumerate() {
        if i < known {
            if chain.entries()[i] != entry {
                bail!(
                    "the imported adoption n°{} differs from this node's: the two chains have forked (or the import comes from another network)",
                    i + 1
                );
            }
            continue;
        }
        chain
            .append(entry.record, entry.policy)
            .with_context(|| format!("imported adoption n°{}", i + 1))?;
    }
    // Keep the document consistent before the chain names versions read from it.
    node.files.save_document(&doc)?;
    node.files.save_chain(&chain)?;
    let added = chain.entries().len() - known;
    out!(
        "Politique importée : {} adoption(s) nouvelle(s) ; version adoptée {} ; document {}",
        added,
        chain
            .current()
            .map(|a| a.hash().to_hex())
            .unwrap_or_else(|| "aucune".into()),
        doc.policy().map(|p| p.hash().to_hex()).unwrap_or_default()
    )?;
    Ok(())
}

/// Test helpers: adoptions by a one-key committee.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Adopts, on the node directory `node_dir`, the adopted version (or the default) changed
    /// by `change`, with `key` as the whole committee (quorum 1); returns its hash, hex.
    pub(crate) fn adopt_with(
        node_dir: &Path,
        key: &ed25519_dalek::SigningKey,
        change: impl FnOnce(&mut Policy),
    ) -> Result<String> {
        let files = PolicyFiles::of_node(node_dir);
        let mut chain = files.chain()?;
        let mut policy = chain
            .current()
            .map(|c| c.policy.clone())
            .unwrap_or_default();
        let me = PublicKey::from(key.verifying_key());
        policy.committee.members.insert(
            me,
            maillage_policy::CommitteeMember {
                name: "Comité".into(),
            },
        );
        policy.committee.quorum = 1;
        change(&mut policy);
        let mut ballot = chain.ballot(&policy)?;
        ballot.add(&sign_adoption(key, *ballot.target()))?;
        let doc = PolicyDoc::genesis(&policy)?;
        let record = ballot.into_record(doc.heads())?;
        let hash = policy.hash().to_hex();
        chain.append(record, policy)?;
        files.save_chain(&chain)?;
        Ok(hash)
    }

    /// Sets when this node learned adoption `sequence`.
    pub(crate) fn set_adopted_at(node_dir: &Path, sequence: u64, at: u64) -> Result<()> {
        let files = PolicyFiles::of_node(node_dir);
        let mut times = files.adopted_at()?;
        times.insert(sequence, at);
        write_atomically(&files.path(ADOPTED_AT_FILE), &serde_json::to_vec(&times)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_checked_against_the_current_and_the_previous_version_in_its_grace() -> Result<()>
    {
        let dir = tempfile::tempdir()?;
        let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        assert!(Governance::load(dir.path())?.is_none());
        let v1 = testing::adopt_with(dir.path(), &key, |_| {})?;
        let v2 = testing::adopt_with(dir.path(), &key, |p| p.privacy.budget_micro = 500_000)?;
        let t0 = 1_900_000_000;
        testing::set_adopted_at(dir.path(), 2, t0)?;
        let g = Governance::load(dir.path())?.context("adopted")?;
        let (params, label) = g.release_params()?;
        assert_eq!(label, v2);
        assert!((params.budget - 0.5).abs() < 1e-12, "{params:?}");

        assert_eq!(g.check(&v2, t0).map(|a| a.sequence()), Ok(2));
        // The replaced version: accepted for 15 days after the node learned its replacement.
        assert_eq!(g.check(&v1, t0 + 15 * DAY - 1).map(|a| a.sequence()), Ok(1));
        let late = g.check(&v1, t0 + 15 * DAY).err().context("late")?;
        let text = late.to_string();
        assert!(text.contains(&format!("names the policy {v1}")), "{text}");
        assert!(text.contains("superseded by adoption n°2"), "{text}");
        assert!(text.contains("grace period of 15 days ended on"), "{text}");
        assert!(
            text.contains(&format!("accepts releases under the adopted policy {v2}")),
            "{text}"
        );
        assert!(!text.contains("or under the policy it replaced"), "{text}");
        let early = g.check("local/x", t0).err().context("local")?.to_string();
        assert!(early.contains("not an adopted policy's hash"), "{early}");
        assert!(
            early.contains(&format!("or under the policy it replaced, {v1}, until")),
            "{early}"
        );
        let other = "ab".repeat(32);
        let never = g.check(&other, t0).err().context("never")?.to_string();
        assert!(never.contains("was never adopted"), "{never}");

        // Two versions later, the first is refused even at once.
        let v3 = testing::adopt_with(dir.path(), &key, |p| p.privacy.budget_micro = 400_000)?;
        let g = Governance::load(dir.path())?.context("adopted")?;
        assert_eq!(g.current()?.hash().to_hex(), v3);
        let old = g.check(&v1, t0).err().context("old")?.to_string();
        assert!(
            old.contains("is not the version the current one replaced"),
            "{old}"
        );
        Ok(())
    }

    #[test]
    fn the_default_policy_gives_the_default_privacy_params() {
        assert_eq!(privacy_params(&Policy::default()), PrivacyParams::default());
    }

    #[test]
    fn policy_ranges_agree_with_the_privacy_crate() {
        // The policy's accepted ranges must be exactly those the release code accepts.
        let edge = |f: fn(&mut Policy)| {
            let mut p = Policy::default();
            f(&mut p);
            let policy_ok = !p
                .problems()
                .iter()
                .any(|e| !matches!(e, maillage_policy::Problem::EmptyCommittee));
            (policy_ok, privacy_params(&p).validate().is_ok())
        };
        let cases: [fn(&mut Policy); 12] = [
            |p| p.privacy.budget_micro = 10_000_000,
            |p| p.privacy.budget_micro = 10_000_001,
            |p| p.privacy.budget_micro = 1,
            |p| p.privacy.bounds.max_rows_per_person = 100,
            |p| p.privacy.bounds.max_rows_per_person = 101,
            |p| p.privacy.bounds.max_rows_per_person = 0,
            |p| p.privacy.bounds.max_duration_min = 1440,
            |p| p.privacy.bounds.max_duration_min = 1441,
            |p| p.privacy.bounds.max_themes_per_row = 19,
            |p| p.privacy.bounds.max_themes_per_row = 20,
            |p| p.privacy.bounds.max_materiel_per_row = 5,
            |p| p.privacy.bounds.max_materiel_per_row = 6,
        ];
        for (i, case) in cases.iter().enumerate() {
            let (policy_ok, privacy_ok) = edge(*case);
            assert_eq!(policy_ok, privacy_ok, "case {i}");
        }
    }

    #[test]
    fn places_rows_are_read_by_id() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("lieux.csv");
        fs::write(
            &path,
            "\u{feff}id,pivot,nom,adresse,code_insee,services\n\
             lieu-1,73282932000074,Espace numérique,\"1 rue X, Lyon\",69385,Aide aux démarches administratives|Maîtrise des outils numériques du quotidien\n\
             lieu-2,,Médiathèque,,69123,\n",
        )?;
        let row = read_place(&path, "lieu-2")?;
        assert_eq!(
            row,
            PlaceRow {
                id: "lieu-2".into(),
                pivot: None,
                nom: "Médiathèque".into(),
                code_insee: Some("69123".into()),
            }
        );
        assert_eq!(
            read_place(&path, "lieu-1")?.pivot.as_deref(),
            Some("73282932000074")
        );
        let missing = read_place(&path, "lieu-3")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(missing.contains("no place with id \"lieu-3\""), "{missing}");
        fs::write(&path, "a,b\n1,2\n")?;
        let bad = read_place(&path, "x")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(bad.contains("columns id and nom are required"), "{bad}");
        Ok(())
    }
}
