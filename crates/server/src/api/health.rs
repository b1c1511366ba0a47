//! `/healthz` (the process answers), `/readyz` (it can serve: storage and Redis answer, and
//! it is not shutting down) and `/metrics` (Prometheus).

use crate::state::AppState;
use actix_web::{web, HttpResponse};
use protocol::rest::HealthDto;

/// Liveness: 200 whenever the process can answer at all.
#[utoipa::path(
    get, operation_id = "healthz", path = "/healthz", tag = "health",
    responses((status = 200, body = HealthDto))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthDto {
        status: "ok".to_owned(),
    })
}

/// Readiness: 200 when storage answers a trivial query and Redis (scale-out) a `PING`, else
/// 503, so a load balancer stops sending traffic to a node that cannot serve it. A node that
/// is shutting down answers 503 at once.
#[utoipa::path(
    get, operation_id = "readyz", path = "/readyz", tag = "health",
    responses(
        (status = 200, body = HealthDto),
        (status = 503, description = "Storage does not answer", body = HealthDto),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let unavailable = |status: &str| {
        HttpResponse::ServiceUnavailable().json(HealthDto {
            status: status.to_owned(),
        })
    };
    if state.realtime.lifecycle.is_draining() {
        return unavailable("shutting_down");
    }
    if let Err(e) = state.health.ping().await {
        tracing::warn!(error = %e, "readiness check failed: storage");
        return unavailable("unavailable");
    }
    if let Err(e) = state.realtime.ready().await {
        tracing::warn!(error = %e, "readiness check failed: redis");
        return unavailable("unavailable");
    }
    HttpResponse::Ok().json(HealthDto {
        status: "ok".to_owned(),
    })
}

/// The node's figures in the Prometheus text format, from its registry: sessions, messages in
/// and out, commits and batch sizes, latency histograms, storage and pub/sub errors, queue
/// depths.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(realtime::metrics::CONTENT_TYPE)
        .body(state.realtime.render_metrics())
}
