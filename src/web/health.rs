//! `GET /healthz` (the process answers) and `GET /readyz` (its database and object
//! store answer too), for load balancers and orchestrators.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let (database, storage) = futures::join!(state.db.ping(), state.storage.ping());
    let label = |ok: bool| if ok { "ok" } else { "unavailable" };
    if let Err(error) = &database {
        tracing::warn!(%error, "readiness: database unavailable");
    }
    if let Err(error) = &storage {
        tracing::warn!(%error, "readiness: object store unavailable");
    }
    let ready = database.is_ok() && storage.is_ok();
    let body = json!({
        "status": label(ready),
        "database": label(database.is_ok()),
        "storage": label(storage.is_ok()),
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
