//! `maillage policy …`: the node's copy of the governance policy and its adoption records.
//!
//! Files, in the node directory's `policy/` folder, each replaced atomically (temporary file,
//! fsync, rename, fsync of the folder):
//! - `document.automerge`: the Automerge policy document (proposals and their merges);
//! - `adoptions.json`: the adoption chain, every adopted version with its record, verified
//!   from the genesis on every load;
//! - `pending-signatures.json`: committee signatures gathered for the current proposal.
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

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use maillage_policy::{
    Added, AdoptedPolicy, AdoptionChain, AdoptionSignature, Ballot, Edit, JoinDetails, JoinRequest,
    Policy, PolicyDoc, Proposal, PublicKey, Role as PolicyRole, diff, sign_adoption,
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

    /// Saves the chain.
    pub fn save_chain(&self, chain: &AdoptionChain) -> Result<()> {
        self.ensure_dir()?;
        let bytes = serde_json::to_vec(chain.entries())?;
        write_atomically(&self.path(ADOPTIONS_FILE), &bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

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
