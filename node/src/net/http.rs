//! The local HTTP API (loopback only): the daemon's status, the node's own figures, published
//! totals, and `/metrics`.
//!
//! | method | path | answers |
//! |---|---|---|
//! | GET | `/status` | role, identity, listening addresses, outbox, deliveries, log size |
//! | GET | `/indicators?period=YYYY-MM` | the node's own exact common-core indicators |
//! | GET | `/totals?indicator=ID&period=YYYY-MM[&by=region\|departement]` | hub and national totals with 95% intervals and coverage |
//! | POST | `/release?period=YYYY-MM[&force_open=true]` | a structure makes its release and queues it for its hub |
//! | POST | `/aggregate?period=YYYY-MM` | a hub or national node signs its aggregate now |
//! | POST | `/import?name=FILE` | imports the activity file in the body (what `maillage import` does while this daemon holds the store); 422 with the invalid rows |
//! | GET | `/metrics` | Prometheus/OpenMetrics text |
//!
//! Errors are `{"error": "..."}` with a 4xx or 5xx status.
//!
//! The POST requests change the node (a release spends its privacy budget, an import changes
//! its figures): they need the token the daemon writes at each start to `TOKEN_FILE` in the
//! node's folder, readable by the node's owner only, as `Authorization: Bearer <token>`
//! (`maillage import` sends it); any local user can read the GET answers.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::Router;
use axum::extract::{Extension, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use maillage_protocol::Period;
use maillage_protocol::network::Response;
use serde::Deserialize;
use serde_json::json;

use super::daemon::DaemonHandle;

/// The file in a node's folder where its running daemon writes its HTTP API's address (and
/// removes it when it stops), for `maillage import` to find it.
pub const ADDRESS_FILE: &str = "http.addr";

/// The file in a node's folder where its running daemon writes the token its POST requests
/// need (mode 0600, a new one at each start).
pub const TOKEN_FILE: &str = "http.token";

/// The token of the running daemon.
#[derive(Debug, Clone)]
struct Token(String);

/// Writes a new token for the daemon of node `dir` (readable by the node's owner only); it.
pub fn new_token(dir: &Path) -> std::io::Result<String> {
    use rand::TryRng;
    let mut bytes = [0u8; 32];
    rand::rngs::SysRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let token = hex::encode(bytes);
    let path = dir.join(TOKEN_FILE);
    let partial = dir.join(format!("{TOKEN_FILE}.partial"));
    let _ = std::fs::remove_file(&partial);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&partial)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(token)
}

/// The token of the daemon of node `dir`, as [`new_token`] wrote it.
pub fn read_token(dir: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(dir.join(TOKEN_FILE))?
        .trim()
        .to_owned())
}

/// Lets a request through only if it carries the daemon's token; else 401, saying how to send
/// it.
async fn require_token(
    State(token): State<Token>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> HttpResponse {
    let sent = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    // Compared in constant time: a wrong guess says nothing of the right one.
    let matches = sent.is_some_and(|sent| {
        sent.len() == token.0.len()
            && sent
                .bytes()
                .zip(token.0.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if matches {
        next.run(request).await
    } else {
        error(
            StatusCode::UNAUTHORIZED,
            format!(
                "a POST request needs the node's token: add -H \"Authorization: Bearer $(cat NODE_DIR/{TOKEN_FILE})\" (the file is readable by the node's owner only and changes at each start of maillage serve)"
            ),
        )
    }
}

/// Files received by `POST /import` are written in the node's folder (they hold personal data:
/// they stay where the store is), under this prefix, and deleted once imported.
const UPLOAD_PREFIX: &str = ".incoming-";

/// Where the daemon of node `dir` writes the files `POST /import` receives.
#[derive(Debug, Clone)]
struct Uploads(PathBuf);

/// The API's routes over a daemon handle, for the node in `dir`, whose POST requests need
/// `token`. Files an earlier run received and did not finish importing (it was killed) are
/// deleted.
pub fn router(handle: DaemonHandle, dir: PathBuf, token: String) -> Router {
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(UPLOAD_PREFIX)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    // What changes the node: only with the token.
    let changes = Router::new()
        .route("/release", post(release))
        .route("/aggregate", post(aggregate))
        .route(
            "/import",
            // The body is streamed to a file (axum's default body limit does not apply to it).
            post(import).route_layer(Extension(Uploads(dir))),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Token(token),
            require_token,
        ));
    Router::new()
        .route("/status", get(status))
        .route("/indicators", get(indicators))
        .route("/totals", get(totals))
        .route("/metrics", get(metrics))
        .merge(changes)
        .with_state(handle)
}

fn error(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

fn gone() -> HttpResponse {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the node's daemon is stopping",
    )
}

fn parse_period(raw: Option<&str>) -> Result<Period, Box<HttpResponse>> {
    let raw = raw.ok_or_else(|| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            "missing period: add ?period=YYYY-MM",
        ))
    })?;
    raw.parse().map_err(|_| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            format!("invalid period {raw:?}: expected YYYY-MM"),
        ))
    })
}

async fn status(State(handle): State<DaemonHandle>) -> HttpResponse {
    match handle.status().await {
        Ok(report) => axum::Json(report).into_response(),
        Err(_) => gone(),
    }
}

#[derive(Debug, Deserialize)]
struct PeriodQuery {
    period: Option<String>,
    #[serde(default)]
    force_open: bool,
}

async fn indicators(
    State(handle): State<DaemonHandle>,
    Query(q): Query<PeriodQuery>,
) -> HttpResponse {
    let period = match parse_period(q.period.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match handle.indicators(period).await {
        Ok(Ok(value)) => axum::Json(value).into_response(),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(_) => gone(),
    }
}

#[derive(Debug, Deserialize)]
struct TotalsQuery {
    indicator: Option<String>,
    period: Option<String>,
    by: Option<String>,
}

async fn totals(State(handle): State<DaemonHandle>, Query(q): Query<TotalsQuery>) -> HttpResponse {
    let Some(indicator) = q.indicator else {
        return error(
            StatusCode::BAD_REQUEST,
            "missing indicator: add ?indicator=ID (see maillage indicators)",
        );
    };
    let period = match parse_period(q.period.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match handle.totals(indicator, period.to_string(), q.by).await {
        Ok(Response::Totals { totals }) => axum::Json(totals).into_response(),
        Ok(Response::Error { message }) => error(StatusCode::NOT_FOUND, message),
        Ok(Response::Refused { reason }) => error(StatusCode::FORBIDDEN, reason),
        Ok(other) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected answer {other:?}"),
        ),
        Err(_) => gone(),
    }
}

async fn release(State(handle): State<DaemonHandle>, Query(q): Query<PeriodQuery>) -> HttpResponse {
    let period = match parse_period(q.period.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match handle.release(period, q.force_open).await {
        Ok(Ok(outcome)) => axum::Json(json!({
            "period": period.to_string(),
            "release_id": outcome.release.id().to_string(),
            "created": outcome.created,
            "release": outcome.release,
        }))
        .into_response(),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(_) => gone(),
    }
}

async fn aggregate(
    State(handle): State<DaemonHandle>,
    Query(q): Query<PeriodQuery>,
) -> HttpResponse {
    let period = match parse_period(q.period.as_deref()) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match handle.aggregate(period).await {
        Ok(Ok(bytes)) => match maillage_protocol::SignedAggregate::decode(&bytes) {
            Ok(a) => axum::Json(json!({
                "period": period.to_string(),
                "aggregate_id": a.id().to_string(),
                "contributions": a.aggregate().contributions.len(),
            }))
            .into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(_) => gone(),
    }
}

#[derive(Debug, Deserialize)]
struct ImportQuery {
    name: Option<String>,
}

/// The name recorded for an imported file: the last component of what the client gave.
fn upload_name(given: Option<&str>) -> String {
    given
        .and_then(|n| n.rsplit(['/', '\\']).next())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("import.csv")
        .to_owned()
}

/// Receives an activity file (streamed to a file beside the store, never held in memory) and
/// has the daemon import it: the report of `maillage import --json`, 422 when it was refused.
async fn import(
    State(handle): State<DaemonHandle>,
    Extension(Uploads(dir)): Extension<Uploads>,
    Query(q): Query<ImportQuery>,
    body: axum::body::Body,
) -> HttpResponse {
    use http_body_util::BodyExt;
    let name = upload_name(q.name.as_deref());
    let upload = match tempfile::Builder::new()
        .prefix(UPLOAD_PREFIX)
        .suffix(".csv")
        .tempfile_in(&dir)
    {
        Ok(file) => file,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot write the received file in {}: {e}", dir.display()),
            );
        }
    };
    let mut body = body;
    let mut out = upload.as_file();
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue,
            },
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("the file was not received whole: {e}"),
                );
            }
        };
        if let Err(e) = out.write_all(&data) {
            return error(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "cannot write the received file in {}: {e} (check the free disk space)",
                    dir.display()
                ),
            );
        }
    }
    match handle.import(upload.path().to_path_buf(), name).await {
        Ok(report) => {
            let code = if report["ok"] == json!(true) {
                StatusCode::OK
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            (code, axum::Json(report)).into_response()
        }
        Err(_) => gone(),
    }
}

/// The running daemon of node `dir`, for a command that finds the store held by it: its API's
/// address and token (see [`ADDRESS_FILE`], [`TOKEN_FILE`]). `Err` says what to do.
pub fn running_daemon(dir: &Path) -> Result<(std::net::SocketAddr, String), String> {
    let address_file = dir.join(ADDRESS_FILE);
    let Ok(text) = std::fs::read_to_string(&address_file) else {
        return Err("its HTTP API is off: stop it and try again, or turn its API on ([network] http in maillage.toml) so that this command goes through it".into());
    };
    let addr = text
        .trim()
        .parse()
        .map_err(|_| format!("{}: not an address", address_file.display()))?;
    let token = read_token(dir).map_err(|e| {
        format!(
            "its HTTP API needs the token in {} ({e}; it is readable by the node's owner only)",
            dir.join(TOKEN_FILE).display()
        )
    })?;
    Ok((addr, token))
}

/// `POST path?query` to the daemon whose API is at `addr`, with its `token`, sending `body` (a
/// file) if any; the JSON it answers. An answer `{"error": …}`, or one that is not JSON, is an
/// `Err` with what it said.
pub fn post_to_daemon(
    addr: std::net::SocketAddr,
    token: &str,
    path: &str,
    query: &[(&str, &str)],
    body: Option<&Path>,
) -> std::io::Result<serde_json::Value> {
    let query = serde_urlencoded::to_string(query).map_err(std::io::Error::other)?;
    let mut input = body.map(std::fs::File::open).transpose()?;
    let len = match &input {
        Some(f) => f.metadata()?.len(),
        None => 0,
    };
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))?;
    // An import of a large file takes a few seconds; a stuck daemon is given up on.
    stream.set_read_timeout(Some(std::time::Duration::from_secs(600)))?;
    let content_type = if input.is_some() {
        "Content-Type: text/csv\r\n"
    } else {
        ""
    };
    write!(
        stream,
        "POST {path}?{query} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{content_type}Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )?;
    // A daemon that refuses the request answers before reading the body and closes: its answer
    // says why better than the broken pipe does.
    let sent = match (&mut input, body) {
        (Some(file), Some(shown)) => {
            match std::io::copy(&mut Read::by_ref(file).take(len), &mut stream) {
                Ok(n) if n == len => Ok(()),
                Ok(_) => Err(std::io::Error::other(format!(
                    "{} changed while it was being sent",
                    shown.display()
                ))),
                Err(e) => Err(e),
            }
        }
        _ => Ok(()),
    };
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        sent?;
        read?;
        return Err(std::io::Error::other("the daemon gave no answer"));
    };
    let Ok(report) = serde_json::from_str::<serde_json::Value>(body) else {
        let status = head.lines().next().unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "the daemon answered {status}: {}",
            body.trim()
        )));
    };
    // Errors other than an import's report (`{"error": …}`) are reported as such.
    match report.get("error").and_then(|e| e.as_str()) {
        Some(message) if report.get("ok").is_none() => {
            Err(std::io::Error::other(message.to_owned()))
        }
        _ => {
            sent?;
            Ok(report)
        }
    }
}

async fn metrics(State(handle): State<DaemonHandle>) -> HttpResponse {
    match handle.metrics().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(_) => gone(),
    }
}
