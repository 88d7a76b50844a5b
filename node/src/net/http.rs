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
//! | GET | `/metrics` | Prometheus/OpenMetrics text |
//!
//! Errors are `{"error": "..."}` with a 4xx or 5xx status.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{get, post};
use maillage_protocol::Period;
use maillage_protocol::network::Response;
use serde::Deserialize;
use serde_json::json;

use super::daemon::DaemonHandle;

/// The API's routes over a daemon handle.
pub fn router(handle: DaemonHandle) -> Router {
    Router::new()
        .route("/status", get(status))
        .route("/indicators", get(indicators))
        .route("/totals", get(totals))
        .route("/release", post(release))
        .route("/aggregate", post(aggregate))
        .route("/metrics", get(metrics))
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
        Ok(Ok(id)) => {
            axum::Json(json!({ "period": period.to_string(), "release_id": id })).into_response()
        }
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
