//! The `maillage` command line: argument parsing and what each command prints.
//!
//! Help summaries are in French, the sector's language; errors name the file, line, field and
//! value at fault and what would be accepted.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use maillage_privacy::{IndicatorValue, Indicators};
use maillage_protocol::vocab::Vocabulary as _;
use maillage_protocol::{Indicator, Period, SignedAggregate, SignedRelease};
use serde_json::json;
use tracing_subscriber::EnvFilter;

use crate::config::Role;
use crate::hub::{Hub, Refusal};
use crate::import::{ImportError, Progress};
use crate::members::{Member, Members};
use crate::node::{InitOptions, Node, NodeError};
use crate::synth::{self, SynthOptions};

/// Maillage : statistiques fédérées et respectueuses de la vie privée pour l'inclusion numérique.
#[derive(Debug, Parser)]
#[command(name = "maillage", version, about, long_about = None)]
pub struct Cli {
    /// Plus de détails dans le journal (-v, -vv).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crée un nœud : paire de clés, base locale et maillage.toml commenté.
    Init(InitArgs),
    /// Importe un fichier d'activités (CSV du modèle national de compte rendu d'activité).
    Import(ImportArgs),
    /// Affiche les indicateurs exacts d'un mois, calculés sur la base locale.
    Indicators(IndicatorsArgs),
    /// Affiche le rôle, l'identité, les activités enregistrées et les mois couverts.
    Status(StatusArgs),
    /// Clôt un mois : produit (ou redonne) sa diffusion bruitée et signée.
    Release(ReleaseArgs),
    /// Vérifie la signature et la structure d'un fichier de diffusion.
    Verify(VerifyArgs),
    /// Affiche le budget de confidentialité dépensé et restant par mois.
    Budget(BudgetArgs),
    /// Hub : gère la liste des membres admis (clé publique, nom, rôle).
    #[command(subcommand)]
    Members(MembersCommand),
    /// Hub : accepte des diffusions signées dans le journal et remet un reçu signé pour chacune.
    Accept(AcceptArgs),
    /// Hub : signe l'agrégat d'un mois (sommes, variances, intervalles à 95 %, couverture).
    Aggregate(AggregateArgs),
    /// Hub : journal des contributions (export d'un dossier d'audit).
    #[command(subcommand)]
    Log(LogCommand),
    /// Hub : sert le nœud sur le réseau (libp2p) et reçoit les diffusions des membres.
    Serve(ServeArgs),
    /// Structure : envoie la diffusion enregistrée d'un mois à son hub et garde le reçu signé.
    Submit(SubmitArgs),
    /// Audite hors ligne un dossier exporté : signatures, preuves, sommes, budgets.
    Audit(AuditArgs),
    /// Écrit un fichier d'activités fictives (données synthétiques reproductibles).
    Generate(GenerateArgs),
    /// Démonstration : crée un nœud, importe des données fictives et affiche ses indicateurs.
    Demo(DemoArgs),
}

/// `maillage init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Dossier du nœud (créé ; doit être nouveau ou vide).
    #[arg(long)]
    pub dir: PathBuf,
    /// Rôle du nœud.
    #[arg(long, value_enum, default_value_t = Role::Structure)]
    pub role: Role,
    /// Nom de la structure.
    #[arg(long)]
    pub name: String,
    /// Code INSEE (COG) de la commune de la structure, par exemple 69385.
    #[arg(long)]
    pub code_insee: Option<String>,
    /// SIRET, RNA ou RIDET de la structure.
    #[arg(long)]
    pub pivot: Option<String>,
}

/// `maillage import`
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Fichier CSV à importer.
    pub file: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage indicators`
#[derive(Debug, Args)]
pub struct IndicatorsArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Mois, au format AAAA-MM.
    #[arg(long)]
    pub period: Period,
    /// Ajoute les modules optionnels au socle commun.
    #[arg(long)]
    pub modules: bool,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage release`
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Mois, au format AAAA-MM.
    #[arg(long)]
    pub period: Period,
    /// Diffuse un mois qui n'est pas terminé (les activités saisies ensuite n'y figureront pas).
    #[arg(long)]
    pub force_open_period: bool,
    /// Écrit aussi la diffusion signée (JSON) dans ce fichier.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sortie JSON : la diffusion signée.
    #[arg(long)]
    pub json: bool,
}

/// `maillage verify`
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Fichier de diffusion (JSON, ou binaire CBOR).
    pub file: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage budget`
#[derive(Debug, Args)]
pub struct BudgetArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage members ...`
#[derive(Debug, Subcommand)]
pub enum MembersCommand {
    /// Ajoute un membre (par sa clé, ou en lisant le dossier de son nœud).
    Add(MembersAddArgs),
    /// Liste les membres.
    List(MembersListArgs),
}

/// `maillage members add`
#[derive(Debug, Args)]
pub struct MembersAddArgs {
    /// Dossier du nœud du hub.
    #[arg(long)]
    pub dir: PathBuf,
    /// Clé publique du membre (64 caractères hexadécimaux).
    #[arg(
        long,
        required_unless_present = "from_node",
        conflicts_with = "from_node"
    )]
    pub key: Option<String>,
    /// Nom du membre.
    #[arg(long, required_unless_present = "from_node")]
    pub name: Option<String>,
    /// Rôle du membre.
    #[arg(long, value_enum, default_value_t = Role::Structure)]
    pub role: Role,
    /// Code INSEE (COG) de la commune du membre.
    #[arg(long)]
    pub code_insee: Option<String>,
    /// Lit la clé, le nom, le rôle et la commune dans le dossier du nœud du membre.
    #[arg(long)]
    pub from_node: Option<PathBuf>,
}

/// `maillage members list`
#[derive(Debug, Args)]
pub struct MembersListArgs {
    /// Dossier du nœud du hub.
    #[arg(long)]
    pub dir: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage accept`
#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// Dossier du nœud du hub (ou du nœud national).
    #[arg(long)]
    pub dir: PathBuf,
    /// Fichiers de diffusion signée (JSON ou binaire) ; pour le nœud national, dossiers d'audit
    /// de hub (maillage log export) ou fichiers d'agrégat de hub signé (JSON ou binaire).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Écrit le reçu de chaque diffusion acceptée dans ce dossier.
    #[arg(long)]
    pub receipts: Option<PathBuf>,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage aggregate`
#[derive(Debug, Args)]
pub struct AggregateArgs {
    /// Dossier du nœud du hub.
    #[arg(long)]
    pub dir: PathBuf,
    /// Mois, au format AAAA-MM.
    #[arg(long)]
    pub period: Period,
    /// Sortie JSON : l'agrégat signé.
    #[arg(long)]
    pub json: bool,
}

/// `maillage log ...`
#[derive(Debug, Subcommand)]
pub enum LogCommand {
    /// Exporte le dossier d'audit d'un mois.
    Export(LogExportArgs),
}

/// `maillage log export`
#[derive(Debug, Args)]
pub struct LogExportArgs {
    /// Dossier du nœud du hub.
    #[arg(long)]
    pub dir: PathBuf,
    /// Mois, au format AAAA-MM.
    #[arg(long)]
    pub period: Period,
    /// Dossier d'audit à créer.
    #[arg(long)]
    pub out: PathBuf,
}

/// `maillage serve`
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Dossier du nœud du hub.
    #[arg(long)]
    pub dir: PathBuf,
    /// Adresse d'écoute libp2p (répétable).
    #[arg(long, default_values_t = ["/ip4/127.0.0.1/tcp/0".parse::<libp2p::Multiaddr>().unwrap_or(libp2p::Multiaddr::empty())])]
    pub listen: Vec<libp2p::Multiaddr>,
}

/// `maillage submit`
#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Dossier du nœud de la structure.
    #[arg(long)]
    pub dir: PathBuf,
    /// Mois, au format AAAA-MM.
    #[arg(long)]
    pub period: Period,
    /// Adresse du hub, telle que maillage serve l'affiche (…/p2p/<identifiant>).
    #[arg(long)]
    pub to: libp2p::Multiaddr,
    /// Délai d'attente de la réponse, en secondes.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Sortie JSON : le reçu signé.
    #[arg(long)]
    pub json: bool,
}

/// `maillage audit`
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Dossier d'audit (écrit par maillage log export).
    pub bundle: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage generate`
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Fichier CSV à écrire.
    #[arg(long)]
    pub out: PathBuf,
    /// Graine : la même graine donne le même fichier.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Premier mois, au format AAAA-MM.
    #[arg(long, default_value = "2026-09")]
    pub from: Period,
    /// Nombre de mois.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=120))]
    pub months: u32,
    /// Nombre moyen d'activités par mois.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub activities_per_month: u32,
    /// Code INSEE (COG) de la commune de la structure.
    #[arg(long, default_value = "69385")]
    pub commune: String,
}

/// `maillage demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Nombre de structures.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub structures: u32,
    /// Graine des données fictives.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Garde le nœud et les données dans ce dossier (sinon un dossier temporaire, effacé).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// The whole `maillage` program: parses arguments, installs logging, runs the command and
/// turns its outcome into an exit code. The binary's `main` is only this call.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default = match cli.verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter =
        EnvFilter::try_from_env("MAILLAGE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`maillage ... | head`) is not an error worth reporting.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("erreur : {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a line on stdout, returning an error instead of panicking when stdout is closed
/// (e.g. `maillage release ... | head`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// Runs one command.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(args) => init(args),
        Command::Import(args) => import(args),
        Command::Indicators(args) => indicators(args),
        Command::Status(args) => status(args),
        Command::Release(args) => release(args),
        Command::Verify(args) => verify(args),
        Command::Budget(args) => budget(args),
        Command::Members(MembersCommand::Add(args)) => members_add(args),
        Command::Members(MembersCommand::List(args)) => members_list(args),
        Command::Accept(args) => accept(args),
        Command::Aggregate(args) => aggregate(args),
        Command::Log(LogCommand::Export(args)) => log_export(args),
        Command::Serve(args) => {
            let node = Node::open(&args.dir)?;
            crate::net::serve(&node, &args.listen)
        }
        Command::Submit(args) => submit(args),
        Command::Audit(args) => audit(args),
        Command::Generate(args) => generate(args),
        Command::Demo(args) => demo(args),
    }
}

fn init(args: InitArgs) -> Result<()> {
    let node = Node::init(
        &args.dir,
        InitOptions {
            role: args.role,
            name: args.name,
            code_insee: args.code_insee,
            pivot: args.pivot,
        },
    )?;
    tracing::info!(dir = %args.dir.display(), role = %node.config.node.role, "node created");
    out!("Nœud créé dans {}", args.dir.display())?;
    out!("  rôle      : {}", node.config.node.role.label())?;
    out!("  nom       : {}", node.config.node.name)?;
    out!("  identité  : {}", node.identity.public_hex())?;
    out!(
        "La clé secrète est dans {} (lisible par vous seul) : gardez-en une copie en lieu sûr.",
        args.dir.join(crate::node::KEY_FILE).display()
    )?;
    Ok(())
}

/// A progress bar on stderr for large files read in a terminal.
struct Bar(Option<ProgressBar>);

impl Bar {
    fn for_file(path: &Path) -> Self {
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        if size < 512 * 1024 || !std::io::stderr().is_terminal() {
            return Self(None);
        }
        let bar = ProgressBar::new(size);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:40}] {bytes}/{total_bytes} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("lecture");
        Self(Some(bar))
    }
}

impl Progress for Bar {
    fn advance(&mut self, bytes: u64) {
        if let Some(bar) = &self.0 {
            bar.set_position(bytes);
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

fn import(args: ImportArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let mut bar = Bar::for_file(&args.file);
    let result = node.import_file(&args.file, &mut bar);
    drop(bar);
    match result {
        Ok((summary, warnings)) => {
            tracing::info!(file = %args.file.display(), added = summary.added, replaced = summary.replaced, "import stored");
            if args.json {
                out!(
                    "{}",
                    json!({"ok": true, "file": args.file.display().to_string(), "summary": summary, "warnings": warnings})
                )?;
            } else {
                for w in &warnings {
                    eprintln!("attention : {w}");
                }
                out!(
                    "Import de {} : {} ligne(s), {} activité(s) ajoutée(s), {} remplacée(s), {} inchangée(s).",
                    args.file.display(),
                    summary.rows,
                    summary.added,
                    summary.replaced,
                    summary.unchanged
                )?;
            }
            Ok(())
        }
        Err(NodeError::Import {
            file,
            source: ImportError::Rows { errors, unlisted },
        }) if args.json => {
            let errors: Vec<_> = errors
                .iter()
                .map(|e| json!({"line": e.line, "column": e.column, "value": e.value, "message": e.message}))
                .collect();
            out!(
                "{}",
                json!({"ok": false, "file": file, "errors": errors, "unlisted_errors": unlisted})
            )?;
            bail!(
                "{file}: {} invalid row(s); nothing was imported",
                errors.len() as u64 + unlisted
            )
        }
        Err(e) => Err(e.into()),
    }
}

fn which_indicators(modules: bool) -> Vec<Indicator> {
    let mut which = Indicator::COMMON_CORE.to_vec();
    if modules {
        which.extend_from_slice(Indicator::MODULES);
    }
    which
}

fn print_indicators(title: &str, indicators: &Indicators) -> std::io::Result<()> {
    out!("{title}")?;
    for (indicator, value) in &indicators.values {
        match value {
            IndicatorValue::Scalar(v) => out!("  {:<50} {v:>8}", indicator.label())?,
            IndicatorValue::Categories(cells) => {
                out!("  {}", indicator.label())?;
                for (category, v) in cells {
                    out!("    {category:<48} {v:>8}")?;
                }
            }
        }
    }
    Ok(())
}

fn indicators(args: IndicatorsArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let indicators = node.indicators(args.period, &which_indicators(args.modules))?;
    if args.json {
        out!("{}", serde_json::to_string(&indicators)?)?;
    } else {
        print_indicators(
            &format!(
                "Indicateurs exacts de {} — {} (non diffusés)",
                args.period, node.config.node.name
            ),
            &indicators,
        )?;
    }
    Ok(())
}

fn status(args: StatusArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let stats = node.store.stats().context("reading the store")?;
    let cfg = &node.config.node;
    if args.json {
        let periods: serde_json::Map<String, serde_json::Value> = stats
            .periods
            .iter()
            .map(|(p, (a, r))| (p.to_string(), json!({"activities": a, "rows": r})))
            .collect();
        out!(
            "{}",
            json!({
                "role": cfg.role, "name": cfg.name, "code_insee": cfg.code_insee, "pivot": cfg.pivot,
                "identity": node.identity.public_hex(),
                "activities": stats.activities, "rows": stats.rows, "imports": stats.imports,
                "periods": periods,
            })
        )?;
        return Ok(());
    }
    out!("Nœud {}", node.dir().display())?;
    out!("  rôle        : {}", cfg.role.label())?;
    out!("  nom         : {}", cfg.name)?;
    if let Some(code) = &cfg.code_insee {
        out!("  commune     : {code}")?;
    }
    out!("  identité    : {}", node.identity.public_hex())?;
    out!(
        "  activités   : {} ({} accompagnements, {} import(s))",
        stats.activities,
        stats.rows,
        stats.imports
    )?;
    if stats.periods.is_empty() {
        out!(
            "  mois        : aucun (importez un fichier : maillage import --dir {} FICHIER.csv)",
            node.dir().display()
        )?;
    } else {
        out!("  mois couverts :")?;
        for (period, (activities, rows)) in &stats.periods {
            out!("    {period}  {activities:>6} activités  {rows:>6} accompagnements")?;
        }
    }
    Ok(())
}

fn release(args: ReleaseArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let now = time::OffsetDateTime::now_utc();
    if args.force_open_period && !args.period.has_ended(now.date()) {
        eprintln!(
            "attention : {} n'est pas terminé ; la diffusion le clôt tel qu'il est, et les activités saisies ensuite n'y figureront pas.",
            args.period
        );
    }
    let outcome = crate::release::release_period(
        &node,
        args.period,
        args.force_open_period,
        now.date(),
        u64::try_from(now.unix_timestamp()).unwrap_or(0),
    )?;
    let signed = &outcome.release;
    if let Some(out) = &args.out {
        write_atomically(out, signed.to_json_pretty().as_bytes())?;
    }
    if args.json {
        out!("{}", serde_json::to_string(signed)?)?;
        return Ok(());
    }
    let r = signed.release();
    out!(
        "Diffusion de {} — {} ({} {} = {})",
        r.period,
        if outcome.created {
            "créée, enregistrée et signée"
        } else {
            "déjà enregistrée, redonnée à l'identique"
        },
        r.mechanism.name(),
        r.mechanism.loss_field(),
        r.mechanism.loss()
    )?;
    out!("  signataire : {}", hex::encode(r.signer.as_bytes()))?;
    out!("  identifiant : {}", signed.id())?;
    out!(
        "  {:<46} {:>8} {:>10} {:>8}",
        "indicateur / catégorie",
        "valeur",
        "± (95 %)",
        "échelle"
    )?;
    let mut last = None;
    for cell in &r.cells {
        if last != Some(cell.indicator) {
            out!("  {}", cell.indicator.label())?;
            last = Some(cell.indicator);
        }
        out!(
            "    {:<44} {:>8} {:>10.1} {:>8.2}",
            cell.category.as_deref().unwrap_or("total"),
            cell.value,
            cell.ci95_half_width,
            cell.scale
        )?;
    }
    if let Some(out) = &args.out {
        out!("  fichier : {}", out.display())?;
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("partial");
    {
        let mut file =
            std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        std::io::Write::write_all(&mut file, bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", tmp.display()))?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

fn verify(args: VerifyArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
    let result = if first == Some(b'{') {
        std::str::from_utf8(&bytes)
            .map_err(|e| anyhow::anyhow!("not UTF-8 text at byte {}", e.valid_up_to()))
            .and_then(|text| SignedRelease::from_json_and_verify(text).map_err(Into::into))
    } else {
        SignedRelease::decode_and_verify(&bytes).map_err(Into::into)
    };
    match result {
        Ok(signed) => {
            let r = signed.release();
            if args.json {
                out!(
                    "{}",
                    json!({"ok": true, "file": args.file.display().to_string(), "signer": hex::encode(r.signer.as_bytes()),
                           "period": r.period, "id": signed.id().to_string(), "cells": r.cells.len(),
                           "mechanism": r.mechanism.name(), r.mechanism.loss_field(): r.mechanism.loss()})
                )?;
            } else {
                out!(
                    "{} : diffusion valide — signataire {}, mois {}, {} cellules, {} {} = {}",
                    args.file.display(),
                    hex::encode(r.signer.as_bytes()),
                    r.period,
                    r.cells.len(),
                    r.mechanism.name(),
                    r.mechanism.loss_field(),
                    r.mechanism.loss()
                )?;
            }
            Ok(())
        }
        Err(e) => {
            if args.json {
                out!(
                    "{}",
                    json!({"ok": false, "file": args.file.display().to_string(), "error": format!("{e:#}")})
                )?;
            }
            Err(e.context(format!(
                "{} is not a valid signed release",
                args.file.display()
            )))
        }
    }
}

fn budget(args: BudgetArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let ledger = node.ledger()?;
    let stats = node.store.stats().context("reading the store")?;
    let params = &node.config.privacy;
    let unit = match params.mechanism {
        maillage_privacy::release::Mechanism::DiscreteLaplace => "epsilon",
        maillage_privacy::release::Mechanism::DiscreteGaussian => "rho",
    };
    // Every period with data or a release; unreleased ones have their whole budget left.
    let mut periods: std::collections::BTreeMap<String, serde_json::Value> = stats
        .periods
        .keys()
        .map(|p| (p.to_string(), json!({"period": p, "budget": params.budget, "spent": 0.0, "left": params.budget, "unit": unit, "released": false})))
        .collect();
    for (period, entry) in &ledger {
        periods.insert(
            period.clone(),
            json!({"period": period, "budget": entry.budget, "spent": entry.spent,
                   "left": (entry.budget - entry.spent).max(0.0), "unit": entry.unit,
                   "released": true, "release_id": entry.release_id}),
        );
    }
    if args.json {
        out!(
            "{}",
            json!({"budget_per_period": params.budget, "unit": unit, "periods": periods.values().collect::<Vec<_>>()})
        )?;
        return Ok(());
    }
    out!(
        "Budget de confidentialité par mois : {} = {} ({})",
        unit,
        params.budget,
        params.mechanism
    )?;
    if periods.is_empty() {
        out!("  aucun mois enregistré")?;
    }
    for p in periods.values() {
        out!(
            "  {}  dépensé {:>8.4}  restant {:>8.4}  {}",
            p["period"].as_str().unwrap_or(""),
            p["spent"].as_f64().unwrap_or(0.0),
            p["left"].as_f64().unwrap_or(0.0),
            if p["released"].as_bool().unwrap_or(false) {
                "diffusé"
            } else {
                "non diffusé"
            }
        )?;
    }
    Ok(())
}

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

fn members_add(args: MembersAddArgs) -> Result<()> {
    let hub = Node::open(&args.dir)?;
    let member = match &args.from_node {
        Some(dir) => {
            let other = Node::open(dir)?;
            Member {
                key: other.identity.public_hex(),
                name: args
                    .name
                    .clone()
                    .unwrap_or_else(|| other.config.node.name.clone()),
                role: other.config.node.role,
                code_insee: args
                    .code_insee
                    .clone()
                    .or_else(|| other.config.node.code_insee.clone()),
            }
        }
        None => Member {
            key: args.key.clone().unwrap_or_default(),
            name: args.name.clone().unwrap_or_default(),
            role: args.role,
            code_insee: args.code_insee.clone(),
        },
    };
    if let Some(code) = &member.code_insee {
        maillage_protocol::Cog::get()
            .commune(code)
            .map_err(|e| anyhow::anyhow!("--code-insee: {e}"))?;
    }
    let mut members = Members::load(hub.dir())?;
    members.add(member.clone())?;
    out!(
        "Membre ajouté : {} ({}, {}) — {} membre(s)",
        member.name,
        member.role.label(),
        member.key,
        members.len()
    )?;
    Ok(())
}

fn members_list(args: MembersListArgs) -> Result<()> {
    let hub = Node::open(&args.dir)?;
    let members = Members::load(hub.dir())?;
    if args.json {
        out!(
            "{}",
            serde_json::to_string(&members.iter().collect::<Vec<_>>())?
        )?;
        return Ok(());
    }
    out!("{} membre(s)", members.len())?;
    for m in members.iter() {
        out!("  {}  {:<10} {}", m.key, m.role.as_str(), m.name)?;
    }
    Ok(())
}

fn accept(args: AcceptArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let mut hub = Hub::open(&node)?;
    if hub.is_national() {
        return accept_aggregates(&args, &mut hub);
    }
    let mut submissions = Vec::new();
    for file in &args.files {
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
        // JSON files are read into the wire form; anything that fails is refused below.
        let wire = if first == Some(b'{') {
            match std::str::from_utf8(&bytes)
                .ok()
                .map(SignedRelease::from_json)
            {
                Some(Ok(release)) => release.to_bytes(),
                Some(Err(e)) => {
                    submissions.push((file, Err(e.to_string())));
                    continue;
                }
                None => {
                    submissions.push((file, Err("not UTF-8 text".to_owned())));
                    continue;
                }
            }
        } else {
            bytes
        };
        submissions.push((file, Ok(wire)));
    }
    let wires: Vec<Vec<u8>> = submissions
        .iter()
        .filter_map(|(_, w)| w.as_ref().ok().cloned())
        .collect();
    let mut outcomes = hub.accept_batch(&wires, unix_now())?.into_iter();
    if let Some(dir) = &args.receipts {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut report = Vec::new();
    let mut refused = 0;
    for (file, wire) in &submissions {
        let outcome = match wire {
            Ok(_) => outcomes
                .next()
                .unwrap_or_else(|| Err(Refusal::Invalid("not processed".into()))),
            Err(e) => Err(Refusal::Invalid(e.clone())),
        };
        match outcome {
            Ok(accepted) => {
                let r = accepted.receipt.receipt();
                if let Some(dir) = &args.receipts {
                    let name = format!("receipt-{}.json", r.release_id);
                    write_atomically(
                        &dir.join(name),
                        accepted.receipt.to_json_pretty().as_bytes(),
                    )?;
                }
                report.push(json!({"file": file.display().to_string(), "accepted": true, "new": accepted.new,
                    "index": r.index, "release_id": r.release_id.to_string(), "receipt": accepted.receipt}));
                if !args.json {
                    out!(
                        "{} : {} (index {}, reçu signé)",
                        file.display(),
                        if accepted.new {
                            "acceptée"
                        } else {
                            "déjà reçue"
                        },
                        r.index
                    )?;
                }
            }
            Err(refusal) => {
                refused += 1;
                report.push(json!({"file": file.display().to_string(), "accepted": false, "reason": refusal.to_string()}));
                if !args.json {
                    out!("{} : refusée — {refusal}", file.display())?;
                }
            }
        }
    }
    if args.json {
        out!("{}", json!({"log_size": hub.log_size(), "results": report}))?;
    }
    if refused > 0 {
        bail!("{refused} submission(s) refused");
    }
    Ok(())
}

/// `maillage accept` at the national node: hub bundles (audited first, then kept so that the
/// national bundle carries the chain to every release) or hub aggregate files.
fn accept_aggregates(args: &AcceptArgs, hub: &mut Hub<'_>) -> Result<()> {
    let mut submissions: Vec<(&PathBuf, Result<SignedAggregate, String>, bool)> = Vec::new();
    for file in &args.files {
        if file.is_dir() {
            let report = crate::audit::audit(file);
            let blocking: Vec<&crate::audit::Finding> = report
                .findings
                .iter()
                .filter(|f| f.kind != crate::audit::FindingKind::Equivocation)
                .collect();
            if let Some(first) = blocking.first() {
                submissions.push((
                    file,
                    Err(format!(
                        "the hub bundle fails its audit ({} finding(s)); first: {first}",
                        blocking.len()
                    )),
                    true,
                ));
                continue;
            }
            let path = file.join("aggregate.json");
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("{}: {e}", path.display()))
                .and_then(|t| SignedAggregate::from_json(&t).map_err(|e| e.to_string()));
            submissions.push((file, parsed, true));
            continue;
        }
        let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let first = bytes.iter().copied().find(|b| !b.is_ascii_whitespace());
        let parsed = if first == Some(b'{') {
            std::str::from_utf8(&bytes)
                .map_err(|_| "not UTF-8 text".to_owned())
                .and_then(|t| SignedAggregate::from_json(t).map_err(|e| e.to_string()))
        } else {
            SignedAggregate::decode(&bytes).map_err(|e| e.to_string())
        };
        submissions.push((file, parsed, false));
    }
    let aggregates: Vec<SignedAggregate> = submissions
        .iter()
        .filter_map(|(_, a, _)| a.as_ref().ok().cloned())
        .collect();
    let mut outcomes = hub.accept_aggregates(&aggregates, unix_now())?.into_iter();
    if let Some(dir) = &args.receipts {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut report = Vec::new();
    let mut refused = 0;
    for (file, parsed, is_bundle) in &submissions {
        let outcome = match parsed {
            Ok(_) => outcomes
                .next()
                .unwrap_or_else(|| Err(Refusal::Invalid("not processed".into()))),
            Err(e) => Err(Refusal::Invalid(e.clone())),
        };
        match outcome {
            Ok(accepted) => {
                if *is_bundle && let Ok(aggregate) = parsed {
                    crate::bundle::keep_hub_bundle(hub, aggregate, file)?;
                }
                let r = accepted.receipt.receipt();
                if let Some(dir) = &args.receipts {
                    let name = format!("receipt-{}.json", r.release_id);
                    write_atomically(
                        &dir.join(name),
                        accepted.receipt.to_json_pretty().as_bytes(),
                    )?;
                }
                report.push(json!({"file": file.display().to_string(), "accepted": true, "new": accepted.new,
                    "index": r.index, "aggregate_id": r.release_id.to_string(), "hub_bundle_kept": is_bundle,
                    "receipt": accepted.receipt}));
                if !args.json {
                    out!(
                        "{} : agrégat de hub {} (index {}, reçu signé{})",
                        file.display(),
                        if accepted.new {
                            "accepté"
                        } else {
                            "déjà reçu"
                        },
                        r.index,
                        if *is_bundle {
                            ", dossier d'audit conservé"
                        } else {
                            ""
                        }
                    )?;
                }
            }
            Err(refusal) => {
                refused += 1;
                report.push(json!({"file": file.display().to_string(), "accepted": false, "reason": refusal.to_string()}));
                if !args.json {
                    out!("{} : refusé — {refusal}", file.display())?;
                }
            }
        }
    }
    if args.json {
        out!("{}", json!({"log_size": hub.log_size(), "results": report}))?;
    }
    if refused > 0 {
        bail!("{refused} submission(s) refused");
    }
    Ok(())
}

fn aggregate(args: AggregateArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let mut hub = Hub::open(&node)?;
    let signed = hub.aggregate(args.period, unix_now())?;
    if args.json {
        out!("{}", serde_json::to_string(&signed)?)?;
        return Ok(());
    }
    let a = signed.aggregate();
    out!(
        "Agrégat de {} — {} contribution(s), journal de taille {}",
        a.period,
        a.contributions.len(),
        a.checkpoint_size
    )?;
    out!(
        "  couverture : {} membre(s) ont contribué, {} manquant(s)",
        a.contributed.len(),
        a.missing.len()
    )?;
    if hub.is_national() {
        // The structures behind the summed hub aggregates, from their own coverage lists.
        let mut covered = std::collections::BTreeSet::new();
        let mut uncovered = std::collections::BTreeSet::new();
        for c in &a.contributions {
            let (hub_aggregate, _) = hub.aggregate_contribution(c.index)?;
            let h = hub_aggregate.aggregate();
            covered.extend(h.contributed.iter().map(|k| k.to_bytes()));
            uncovered.extend(h.missing.iter().map(|k| k.to_bytes()));
        }
        out!(
            "  structures couvertes : {} ont contribué via leur hub, {} membre(s) de ces hubs manquant(s)",
            covered.len(),
            uncovered.len()
        )?;
    }
    out!(
        "  {:<46} {:>10} {:>12}",
        "indicateur / catégorie",
        "somme",
        "± (95 %)"
    )?;
    for cell in &a.cells {
        out!(
            "  {:<46} {:>10} {:>12.1}",
            format!(
                "{} {}",
                cell.indicator,
                cell.category.as_deref().unwrap_or("")
            ),
            cell.sum,
            cell.ci95_half_width
        )?;
    }
    Ok(())
}

fn log_export(args: LogExportArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let hub = Hub::open(&node)?;
    let aggregate = hub
        .latest_aggregate(args.period)?
        .map(|a| a.to_json_pretty());
    let summary = crate::bundle::export(&hub, args.period, aggregate, &args.out, unix_now())?;
    out!(
        "Dossier d'audit {} : {} diffusion(s) du journal dont {} de {}, {} point(s) de contrôle, {} équivoque(s), agrégat {}",
        args.out.display(),
        summary.releases,
        summary.period_releases,
        args.period,
        summary.checkpoints,
        summary.equivocations,
        if summary.aggregate {
            "inclus"
        } else {
            "absent (maillage aggregate d'abord)"
        }
    )?;
    if hub.is_national() {
        out!(
            "  dossiers d'audit des hubs inclus : {}, manquants : {}",
            summary.hub_bundles,
            summary.hub_bundles_missing
        )?;
    }
    Ok(())
}

fn submit(args: SubmitArgs) -> Result<()> {
    let node = Node::open(&args.dir)?;
    let receipt = crate::net::submit(
        &node,
        args.period,
        &args.to,
        std::time::Duration::from_secs(args.timeout),
    )?;
    if args.json {
        out!("{}", serde_json::to_string(&receipt)?)?;
    } else {
        let r = receipt.receipt();
        out!(
            "Diffusion de {} reçue par le hub {} : index {} du journal (reçu signé enregistré)",
            args.period,
            hex::encode(r.hub.as_bytes()),
            r.index
        )?;
    }
    Ok(())
}

fn audit(args: AuditArgs) -> Result<()> {
    let report = crate::audit::audit(&args.bundle);
    if args.json {
        out!("{}", serde_json::to_string(&report)?)?;
    } else {
        out!(
            "Audit de {} : {} — {} diffusion(s) vérifiée(s), {} constat(s)",
            args.bundle.display(),
            if report.ok {
                "conforme"
            } else {
                "NON CONFORME"
            },
            report.releases_verified,
            report.findings.len()
        )?;
        for f in &report.findings {
            out!(
                "  - [{}] {} ({}){}",
                f.kind,
                f.what,
                f.location,
                f.signer
                    .as_ref()
                    .map(|s| format!(", signé par {s}"))
                    .unwrap_or_default()
            )?;
        }
    }
    if !report.ok {
        bail!("the audit found {} problem(s)", report.findings.len());
    }
    Ok(())
}

fn synth_options(args: &GenerateArgs) -> SynthOptions {
    SynthOptions {
        seed: args.seed,
        first: args.from,
        months: args.months,
        activities_per_month: args.activities_per_month,
        commune: args.commune.clone(),
        id_prefix: format!("s{}", args.seed),
    }
}

fn generate(args: GenerateArgs) -> Result<()> {
    maillage_protocol::Cog::get()
        .commune(&args.commune)
        .map_err(|e| anyhow::anyhow!("--commune: {e}"))?;
    let options = synth_options(&args);
    let tmp = args.out.with_extension("csv.partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let stats = synth::generate(&options, std::io::BufWriter::new(&file))
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &args.out)
        .with_context(|| format!("renaming to {}", args.out.display()))?;
    out!(
        "{} : {} activités fictives, {} accompagnements, de {} sur {} mois (graine {}).",
        args.out.display(),
        stats.activities,
        stats.rows,
        args.from,
        args.months,
        args.seed
    )?;
    Ok(())
}

fn demo(args: DemoArgs) -> Result<()> {
    use maillage_protocol::vocab::Vocabulary as _;
    let (root, _guard) = match &args.out {
        Some(dir) => {
            if dir.exists()
                && std::fs::read_dir(dir)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                bail!(
                    "{} exists and is not empty; give --out a new directory",
                    dir.display()
                );
            }
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            (dir.clone(), None)
        }
        None => {
            let tmp = tempfile::tempdir().context("creating a temporary directory")?;
            (tmp.path().to_path_buf(), Some(tmp))
        }
    };
    let period = Period::new(2026, 9).unwrap_or_else(|| unreachable!("2026-09 is in range"));
    let now = unix_now();
    let today = time::OffsetDateTime::now_utc().date();
    let hub = Node::init(
        &root.join("nodes").join("hub"),
        InitOptions {
            role: Role::Hub,
            name: "Hub Auvergne-Rhône-Alpes".into(),
            code_insee: Some("69123".into()),
            pivot: None,
        },
    )?;
    let communes = [
        "69385", "69123", "38185", "42218", "63113", "73065", "74010", "01053", "26362", "07186",
    ];
    let mut members = Members::load(hub.dir())?;
    let mut releases = Vec::new();
    let mut truth: std::collections::BTreeMap<(usize, Option<String>), u64> = Default::default();
    for i in 0..args.structures {
        let commune = communes[i as usize % communes.len()];
        let dir = root.join("nodes").join(format!("structure-{i:03}"));
        let node = Node::init(
            &dir,
            InitOptions {
                role: Role::Structure,
                name: format!("Structure {i:03}"),
                code_insee: Some(commune.into()),
                pivot: None,
            },
        )?;
        // Heavy-tailed sizes: most structures small, a few large.
        let rank = (u64::from(i) * 7919 + args.seed) % 97;
        let size = 10 + (2_000.0 / (1.0 + rank as f64)) as u32;
        let csv = root.join(format!("structure-{i:03}.csv"));
        let options = SynthOptions {
            seed: args.seed.wrapping_mul(1_000).wrapping_add(u64::from(i)),
            first: period,
            months: 1,
            activities_per_month: size,
            commune: commune.into(),
            id_prefix: format!("s{i}"),
        };
        let file =
            std::fs::File::create(&csv).with_context(|| format!("creating {}", csv.display()))?;
        synth::generate(&options, std::io::BufWriter::new(file))?;
        node.import_file(&csv, &mut ())?;
        for (indicator, value) in node.indicators(period, Indicator::COMMON_CORE)?.values {
            match value {
                IndicatorValue::Scalar(v) => {
                    *truth.entry((indicator.index(), None)).or_default() += v
                }
                IndicatorValue::Categories(cells) => {
                    for (c, v) in cells {
                        *truth
                            .entry((indicator.index(), Some(c.to_owned())))
                            .or_default() += v;
                    }
                }
            }
        }
        let outcome = crate::release::release_period(&node, period, false, today, now)?;
        releases.push(outcome.release.to_bytes());
        members.add(Member {
            key: node.identity.public_hex(),
            name: node.config.node.name.clone(),
            role: Role::Structure,
            code_insee: Some(commune.into()),
        })?;
    }
    let mut hub_state = Hub::open(&hub)?;
    let outcomes = hub_state.accept_batch(&releases, now)?;
    if let Some(Err(refusal)) = outcomes.iter().find(|o| o.is_err()) {
        bail!("the hub refused a release: {refusal}");
    }
    let aggregate = hub_state.aggregate(period, now)?;
    let bundle = root.join("bundle");
    crate::bundle::export(
        &hub_state,
        period,
        Some(aggregate.to_json_pretty()),
        &bundle,
        now,
    )?;
    let report = crate::audit::audit(&bundle);

    let a = aggregate.aggregate();
    let truth_of = |cell: &maillage_protocol::aggregate::AggregateCell| {
        truth
            .get(&(cell.indicator.index(), cell.category.clone()))
            .copied()
            .unwrap_or(0)
    };
    if args.json {
        let totals: Vec<serde_json::Value> = a
            .cells
            .iter()
            .map(|c| {
                json!({"indicator": c.indicator.code(), "category": c.category, "estimate": c.sum,
                       "ci95": [c.sum as f64 - c.ci95_half_width, c.sum as f64 + c.ci95_half_width],
                       "truth": truth_of(c)})
            })
            .collect();
        out!(
            "{}",
            json!({
                "structures": args.structures, "hubs": 1, "period": period,
                "coverage": {"contributed": a.contributed.len(), "missing": a.missing.len()},
                "totals": totals,
                "audit": {"ok": report.ok, "releases_verified": report.releases_verified,
                          "findings": report.findings.len()},
            })
        )?;
    } else {
        out!(
            "Démonstration Maillage — {} structures, 1 hub, mois {period} (données fictives, graine {})",
            args.structures,
            args.seed
        )?;
        out!(
            "Chaque structure importe ses activités et publie une diffusion bruitée (OpenDP) et signée ;"
        )?;
        out!(
            "le hub vérifie et journalise (Merkle), signe l'agrégat ; un auditeur vérifie tout hors ligne."
        )?;
        out!()?;
        out!(
            "  {:<58} {:>9} {:>21} {:>9}",
            "indicateur / catégorie",
            "estimé",
            "intervalle à 95 %",
            "réel"
        )?;
        for cell in &a.cells {
            let label = match &cell.category {
                Some(c) => format!("{} — {c}", cell.indicator.label()),
                None => cell.indicator.label().to_owned(),
            };
            let interval = format!(
                "[{:.0} ; {:.0}]",
                cell.sum as f64 - cell.ci95_half_width,
                cell.sum as f64 + cell.ci95_half_width
            );
            out!(
                "  {:<58} {:>9} {:>21} {:>9}",
                label,
                cell.sum,
                interval,
                truth_of(cell)
            )?;
        }
        out!()?;
        out!(
            "  couverture : {} structure(s) sur {} ont contribué",
            a.contributed.len(),
            a.contributed.len() + a.missing.len()
        )?;
        out!(
            "  audit      : {} — {} diffusion(s) vérifiée(s), {} constat(s)",
            if report.ok {
                "conforme"
            } else {
                "NON CONFORME"
            },
            report.releases_verified,
            report.findings.len()
        )?;
        match &args.out {
            None => out!(
                "  (dossier temporaire effacé ; --out DOSSIER garde les nœuds et le dossier d'audit)"
            )?,
            Some(_) => out!(
                "  nœuds dans {}, dossier d'audit dans {}",
                root.join("nodes").display(),
                bundle.display()
            )?,
        }
    }
    if !report.ok {
        bail!(
            "the demo's audit failed: {}",
            report
                .findings
                .first()
                .map(|f| f.what.clone())
                .unwrap_or_default()
        );
    }
    Ok(())
}
