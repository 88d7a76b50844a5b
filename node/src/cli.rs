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
use crate::import::Progress;
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
    /// Fait tourner le nœud en service : réseau libp2p, envois avec reprise, API HTTP locale.
    Serve(ServeArgs),
    /// Interroge le niveau national (ou un hub) : estimation, intervalle à 95 %, couverture.
    Query(QueryArgs),
    /// Structure : envoie la diffusion enregistrée d'un mois à son hub et garde le reçu signé.
    Submit(SubmitArgs),
    /// Audite hors ligne un dossier exporté : signatures, preuves, sommes, budgets.
    Audit(AuditArgs),
    /// Écrit un fichier d'activités fictives (données synthétiques reproductibles).
    Generate(GenerateArgs),
    /// Démonstration : une fédération complète (structures, hubs, national) en libp2p local.
    Demo(DemoArgs),
    /// Gouvernance : politique commune (indicateurs, confidentialité, membres), propositions et adoption.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

/// `maillage policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Affiche la politique adoptée et la proposition en attente (différences, signatures).
    Show(PolicyShowArgs),
    /// Propose des modifications (fichier TOML ou JSON d'éditions, demandes d'adhésion).
    Propose(PolicyProposeArgs),
    /// Comité de pilotage : signe la proposition en attente avec la clé du nœud.
    Sign(PolicySignArgs),
    /// Ajoute des signatures du comité et adopte la proposition quand le quorum est atteint.
    Adopt(PolicyAdoptArgs),
    /// Liste le registre des membres (de la politique adoptée, ou de la proposition).
    Members(PolicyMembersArgs),
    /// Structure : écrit une demande d'adhésion signée à remettre à son hub.
    JoinRequest(PolicyJoinRequestArgs),
    /// Exporte le document de politique et les adoptions dans un dossier (échange hors ligne).
    Export(PolicyExportArgs),
    /// Fusionne un dossier exporté par un autre nœud (document et adoptions vérifiées).
    Import(PolicyImportArgs),
}

/// `maillage policy show`
#[derive(Debug, Args)]
pub struct PolicyShowArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage policy propose`
#[derive(Debug, Args)]
pub struct PolicyProposeArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Fichier d'éditions (.toml, sinon JSON) : une liste `edits`, chacune avec son `op`.
    pub file: Option<PathBuf>,
    /// Demande d'adhésion à ajouter au registre (répétable).
    #[arg(long = "join")]
    pub joins: Vec<PathBuf>,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage policy sign`
#[derive(Debug, Args)]
pub struct PolicySignArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Écrit la signature dans ce fichier (sinon sur la sortie standard).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage policy adopt`
#[derive(Debug, Args)]
pub struct PolicyAdoptArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Fichiers de signature écrits par maillage policy sign.
    pub signatures: Vec<PathBuf>,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage policy members`
#[derive(Debug, Args)]
pub struct PolicyMembersArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Liste le registre de la proposition en attente plutôt que celui de la version adoptée.
    #[arg(long)]
    pub proposed: bool,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
}

/// `maillage policy join-request`
#[derive(Debug, Args)]
pub struct PolicyJoinRequestArgs {
    /// Dossier du nœud de la structure.
    #[arg(long)]
    pub dir: PathBuf,
    /// Fichier CSV du schéma des lieux de médiation numérique où figure la structure.
    #[arg(long, requires = "place_id")]
    pub places: Option<PathBuf>,
    /// Identifiant (`id`) du lieu dans ce fichier.
    #[arg(long)]
    pub place_id: Option<String>,
    /// Clé publique du hub à rejoindre.
    #[arg(long)]
    pub hub: Option<String>,
    /// Fichier à écrire (sinon sur la sortie standard).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `maillage policy export`
#[derive(Debug, Args)]
pub struct PolicyExportArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Dossier où écrire le document et les adoptions.
    #[arg(long)]
    pub out: PathBuf,
}

/// `maillage policy import`
#[derive(Debug, Args)]
pub struct PolicyImportArgs {
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Dossier écrit par maillage policy export.
    pub from: PathBuf,
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
    /// Dossier du nœud.
    #[arg(long)]
    pub dir: PathBuf,
    /// Adresse d'écoute libp2p (répétable ; remplace network.listen de maillage.toml).
    #[arg(long)]
    pub listen: Vec<String>,
    /// Nœud auquel celui-ci rend compte, …/p2p/IDENTIFIANT (répétable ; remplace network.peers de maillage.toml).
    #[arg(long)]
    pub peer: Vec<String>,
    /// API HTTP locale : adresse de bouclage et port, ou « off » (remplace network.http de maillage.toml).
    #[arg(long)]
    pub http: Option<String>,
}

impl ServeArgs {
    /// The daemon's options: `maillage.toml` with this command line's overrides.
    pub fn options(&self, config: &crate::Config) -> Result<crate::net::ServeOptions> {
        let mut options = crate::net::ServeOptions::from_config(config)?;
        if !self.listen.is_empty() {
            options.listen = self
                .listen
                .iter()
                .map(|a| {
                    a.parse()
                        .map_err(|e| anyhow::anyhow!("--listen {a:?}: not a libp2p address ({e})"))
                })
                .collect::<Result<_>>()?;
        }
        if !self.peer.is_empty() {
            options.peers = self
                .peer
                .iter()
                .map(|a| crate::config::parse_peer_address("--peer", a))
                .collect::<Result<_, _>>()?;
        }
        if let Some(http) = &self.http {
            options.http = crate::config::parse_http(http)?;
        }
        Ok(options)
    }
}

/// `maillage query`
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Dossier du nœud qui interroge (sa clé doit être admise par le nœud interrogé).
    #[arg(long)]
    pub dir: PathBuf,
    /// Indicateur (code du catalogue, par exemple activites).
    #[arg(long)]
    pub indicator: String,
    /// Mois, au format AAAA-MM.
    #[arg(long)]
    pub period: Period,
    /// Ventilation par territoire : region ou departement.
    #[arg(long, value_parser = ["region", "departement"])]
    pub by: Option<String>,
    /// Nœud interrogé, …/p2p/IDENTIFIANT (par défaut : le premier de network.peers de maillage.toml).
    #[arg(long)]
    pub peer: Option<String>,
    /// Délai d'attente de la réponse, en secondes.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Sortie JSON.
    #[arg(long)]
    pub json: bool,
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
    /// Adresse du hub, telle que maillage serve l'affiche (…/p2p/IDENTIFIANT).
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
    /// Empreinte de la politique fondatrice (genèse) du réseau : la chaîne d'adoptions du
    /// dossier doit partir d'elle.
    #[arg(long, value_name = "HASH")]
    pub genesis: Option<maillage_policy::PolicyHash>,
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
    /// Nombre de hubs (nommés d'après des régions réelles).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=18))]
    pub hubs: u32,
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
            let options = args.options(&node.config)?;
            crate::net::serve(&node, options)
        }
        Command::Query(args) => query(args),
        Command::Submit(args) => submit(args),
        Command::Audit(args) => audit(args),
        Command::Generate(args) => generate(args),
        Command::Demo(args) => demo(args),
        Command::Policy(command) => policy(command),
    }
}

fn policy(command: PolicyCommand) -> Result<()> {
    use crate::policy as p;
    match command {
        PolicyCommand::Show(a) => p::show(&a.dir, a.json),
        PolicyCommand::Propose(a) => p::propose(&a.dir, a.file.as_deref(), &a.joins, a.json),
        PolicyCommand::Sign(a) => p::sign(&a.dir, a.out.as_deref(), a.json),
        PolicyCommand::Adopt(a) => p::adopt(&a.dir, &a.signatures, a.json),
        PolicyCommand::Members(a) => p::members(&a.dir, a.proposed, a.json),
        PolicyCommand::JoinRequest(a) => p::join_request(
            &a.dir,
            a.places.as_deref(),
            a.place_id.as_deref(),
            a.hub.as_deref(),
            a.out.as_deref(),
        ),
        PolicyCommand::Export(a) => p::export(&a.dir, &a.out),
        PolicyCommand::Import(a) => p::import(&a.dir, &a.from),
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
    let report = match Node::open(&args.dir) {
        Ok(node) => {
            let mut bar = Bar::for_file(&args.file);
            let result = node.import_file(&args.file, &mut bar);
            drop(bar);
            crate::node::import_report(&args.file.display().to_string(), &result)
        }
        // `maillage serve` holds the store: the import goes through its HTTP API.
        Err(NodeError::Locked { path }) => import_through_daemon(&args, &path)?,
        Err(e) => return Err(e.into()),
    };
    let file = report["file"].as_str().unwrap_or_default().to_owned();
    if report["ok"] == json!(true) {
        let count = |key: &str| report["summary"][key].as_u64().unwrap_or(0);
        tracing::info!(%file, added = count("added"), replaced = count("replaced"), "import stored");
        if args.json {
            out!("{report}")?;
        } else {
            for w in report["warnings"].as_array().into_iter().flatten() {
                eprintln!("attention : {}", w.as_str().unwrap_or_default());
            }
            out!(
                "Import de {file} : {} ligne(s), {} activité(s) ajoutée(s), {} remplacée(s), {} inchangée(s).",
                count("rows"),
                count("added"),
                count("replaced"),
                count("unchanged")
            )?;
        }
        return Ok(());
    }
    let message = report["message"].as_str().unwrap_or("the import failed");
    match report["errors"].as_array() {
        Some(errors) if args.json => {
            out!("{report}")?;
            bail!(
                "{file}: {} invalid row(s); nothing was imported",
                errors.len() as u64 + report["unlisted_errors"].as_u64().unwrap_or(0)
            )
        }
        _ => bail!("{message}"),
    }
}

/// Asks the `maillage serve` that holds the node's store in `dir` (at the HTTP API address and
/// with the token it wrote in the node's folder) to `what`: `POST path?query` with `body`.
fn through_daemon(
    dir: &Path,
    store: &str,
    what: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Path>,
) -> Result<serde_json::Value> {
    let busy = format!(
        "the store {store} is in use by another maillage process (for example `maillage serve`)"
    );
    let (addr, token) =
        crate::net::http::running_daemon(dir).map_err(|e| anyhow::anyhow!("{busy}, but {e}"))?;
    tracing::info!(%addr, "the store is held by maillage serve: {what} through its HTTP API");
    crate::net::http::post_to_daemon(addr, &token, path, query, body)
        .with_context(|| format!("{busy}; {what} through its HTTP API at {addr} failed"))
}

/// Sends the file to the `maillage serve` that holds the node's store; its report.
fn import_through_daemon(args: &ImportArgs, store: &str) -> Result<serde_json::Value> {
    if !args.file.is_file() {
        bail!("{}: no such file", args.file.display());
    }
    let name = args.file.file_name().map_or_else(
        || args.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut report = through_daemon(
        &args.dir,
        store,
        "importing",
        "/import",
        &[("name", &name)],
        Some(&args.file),
    )?;
    // Shown as the user named it.
    report["file"] = json!(args.file.display().to_string());
    if let Some(message) = report["message"].as_str() {
        report["message"] = json!(message.replacen(&name, &args.file.display().to_string(), 1));
    }
    Ok(report)
}

/// Has the `maillage serve` that holds the node's store make (or give back) the release.
fn release_through_daemon(args: &ReleaseArgs, store: &str) -> Result<crate::release::Outcome> {
    let period = args.period.to_string();
    let force_open = args.force_open_period.to_string();
    let answer = through_daemon(
        &args.dir,
        store,
        "releasing",
        "/release",
        &[("period", &period), ("force_open", &force_open)],
        None,
    )?;
    let release = SignedRelease::from_json_and_verify(&answer["release"].to_string())
        .context("the release the daemon answered")?;
    Ok(crate::release::Outcome {
        release,
        created: answer["created"] == json!(true),
    })
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
    let now = time::OffsetDateTime::now_utc();
    if args.force_open_period && !args.period.has_ended(now.date()) {
        eprintln!(
            "attention : {} n'est pas terminé ; la diffusion le clôt tel qu'il est, et les activités saisies ensuite n'y figureront pas.",
            args.period
        );
    }
    let outcome = match Node::open(&args.dir) {
        Ok(node) => crate::release::release_period(
            &node,
            args.period,
            args.force_open_period,
            now.date(),
            u64::try_from(now.unix_timestamp()).unwrap_or(0),
        )?,
        // `maillage serve` holds the store: the release is made by it.
        Err(NodeError::Locked { path }) => release_through_daemon(&args, &path)?,
        Err(e) => return Err(e.into()),
    };
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

fn query(args: QueryArgs) -> Result<()> {
    use maillage_protocol::vocab::Vocabulary as _;
    // Only the key and settings: the store may be held by this node's running daemon.
    let (config, identity) = Node::open_identity(&args.dir)?;
    let addr = match &args.peer {
        Some(a) => crate::config::parse_peer_address("--peer", a)?,
        None => config.network.peer_addresses()?.into_iter().next().ok_or_else(|| {
            anyhow::anyhow!(
                "no node to ask: pass --peer <address>/p2p/<peer id>, or set [network] peers in {}",
                args.dir.join("maillage.toml").display()
            )
        })?,
    };
    if maillage_protocol::Indicator::from_code(&args.indicator).is_none() {
        bail!(
            "unknown indicator {:?}: expected one of {}",
            args.indicator,
            maillage_protocol::Indicator::ALL
                .iter()
                .map(|i| i.code())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let totals = crate::net::query(
        &identity,
        &addr,
        &args.indicator,
        args.period,
        args.by.clone(),
        std::time::Duration::from_secs(args.timeout),
    )?;
    if args.json {
        out!("{}", serde_json::to_string(&totals)?)?;
        return Ok(());
    }
    out!(
        "{} — {}{}",
        totals.indicator,
        totals.period,
        totals
            .by
            .as_deref()
            .map(|b| format!(", par {b}"))
            .unwrap_or_default()
    )?;
    out!(
        "  {:<28} {:>12} {:>26} {:>12}",
        "territoire / catégorie",
        "estimation",
        "intervalle à 95 %",
        "couverture"
    )?;
    for row in &totals.rows {
        out!(
            "  {:<28} {:>12.0} {:>26} {:>12}",
            row.territory,
            row.estimate,
            format!("[{:.0} ; {:.0}]", row.ci95_low, row.ci95_high),
            format!("{}/{}", row.contributors, row.members)
        )?;
    }
    Ok(())
}

fn audit(args: AuditArgs) -> Result<()> {
    let report = crate::audit::audit_with(
        &args.bundle,
        &crate::audit::AuditOptions {
            genesis: args.genesis,
        },
    );
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
    let report = crate::demo::run(&crate::demo::DemoOptions {
        structures: args.structures,
        hubs: args.hubs,
        seed: args.seed,
        out: args.out.clone(),
        program: std::env::current_exe().ok(),
    })?;
    if args.json {
        out!("{}", serde_json::to_string(&report)?)?;
    } else {
        print_demo(&report, args.seed)?;
    }
    if !report.audit.ok {
        bail!(
            "the demo's audit failed: {}",
            report.audit.first_finding.clone().unwrap_or_default()
        );
    }
    Ok(())
}

fn print_demo(report: &crate::demo::DemoReport, seed: u64) -> std::io::Result<()> {
    out!(
        "Démonstration Maillage — {} structures, {} hubs, 1 niveau national, mois {} (données fictives, graine {seed})",
        report.structures,
        report.hubs,
        report.period
    )?;
    out!(
        "Chaque structure publie une diffusion bruitée (OpenDP) et signée, remise à son hub en libp2p ;"
    )?;
    out!(
        "chaque hub journalise (Merkle), signe son agrégat et le remet au niveau national, qui signe le total."
    )?;
    out!()?;
    out!(
        "  {:<58} {:>9} {:>21} {:>9}",
        "indicateur / catégorie (total national)",
        "estimé",
        "intervalle à 95 %",
        "réel"
    )?;
    for t in &report.totals {
        let label = match (Indicator::from_code(&t.indicator), &t.category) {
            (Some(i), Some(c)) => format!("{} — {c}", i.label()),
            (Some(i), None) => i.label().to_owned(),
            (None, _) => t.indicator.clone(),
        };
        out!(
            "  {:<58} {:>9} {:>21} {:>9}",
            label,
            t.estimate,
            format!("[{:.0} ; {:.0}]", t.ci95[0], t.ci95[1]),
            t.truth
        )?;
    }
    out!()?;
    out!("  Activités par région (requête du comité au niveau national, en libp2p) :")?;
    for r in &report.by_region {
        out!(
            "    {:<40} {:>9.0} {:>21} {:>9}   couverture {}",
            format!(
                "{} — {}",
                r.territory,
                r.category.as_deref().unwrap_or("total")
            ),
            r.estimate,
            format!("[{:.0} ; {:.0}]", r.ci95[0], r.ci95[1]),
            r.truth,
            r.coverage
        )?;
    }
    out!()?;
    out!(
        "  couverture : {} structure(s) sur {} et {} hub(s) sur {} dans le total national",
        report.coverage.structures_contributed,
        report.coverage.structures,
        report.coverage.hubs_contributed,
        report.hubs
    )?;
    out!(
        "  politique  : {} (adoptée par 2 des 3 membres du comité de pilotage ; chaque diffusion la nomme)",
        report.policy
    )?;
    out!(
        "  audit      : {} — {} diffusion(s) vérifiée(s), {} constat(s)",
        if report.audit.ok {
            "conforme"
        } else {
            "NON CONFORME"
        },
        report.audit.releases_verified,
        report.audit.findings
    )?;
    let m = &report.metrics;
    out!(
        "  mesures    : diffusion → total national {} ms ; {} octets envoyés par structure (max {}) ; service d'une structure au repos {} ; durée totale {} ms",
        m.release_to_national_total_ms,
        m.bytes_sent_per_structure_mean,
        m.bytes_sent_per_structure_max,
        m.idle_structure_daemon_rss_kib
            .map(|k| format!("{:.1} Mo", k as f64 / 1024.0))
            .unwrap_or_else(|| "non mesuré".into()),
        m.total_ms
    )?;
    match &report.out {
        None => out!(
            "  (dossiers temporaires effacés ; --out DOSSIER garde les nœuds et le dossier d'audit)"
        )?,
        Some(root) => out!("  nœuds dans {root}/nodes, dossier d'audit dans {root}/bundle")?,
    }
    Ok(())
}
