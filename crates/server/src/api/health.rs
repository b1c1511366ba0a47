//! `/healthz` (the process answers) and `/readyz` (it can serve: storage answers).

use super::dto::HealthDto;
use crate::app::AppState;
use actix_web::{web, HttpResponse};

/// Liveness: 200 whenever the process can answer at all.
#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, body = HealthDto))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(HealthDto {
        status: "ok".to_owned(),
    })
}

/// Readiness: 200 when storage answers a trivial query, else 503, so a load balancer
/// stops sending traffic to a node that cannot serve it.
#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, body = HealthDto),
        (status = 503, description = "Storage does not answer", body = HealthDto),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    match state.health.ping().await {
        Ok(()) => HttpResponse::Ok().json(HealthDto {
            status: "ok".to_owned(),
        }),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(HealthDto {
                status: "unavailable".to_owned(),
            })
        }
    }
}
