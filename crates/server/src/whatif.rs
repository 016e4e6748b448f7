//! `POST /admin/plans/{plan_id}/what-if` (admin token): what a plan
//! change would have done to the decisions logged under the plan, changing
//! nothing (docs/what-if.md).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use quota_engine::whatif::{PlanHypothesis, WhatIfError, WhatIfOptions, what_if};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::PlanBody;
use crate::error::ApiError;
use crate::extract::{Admin, Json, Path};
use crate::wire;
use quota_store::prelude::*;

/// Examples per transition unless the body asks (`examples`, 0 to 20).
const EXAMPLES: usize = 3;

impl From<WhatIfError> for ApiError {
    fn from(e: WhatIfError) -> Self {
        match e {
            WhatIfError::Store(e) => e.into(),
            WhatIfError::Policy(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "policy_unavailable",
                e.to_string(),
            ),
        }
    }
}

/// The body: a plan change (as `PUT /admin/plans/{plan_id}` takes it),
/// plus `since` and `examples`.
pub(crate) struct Request {
    hypothesis: PlanHypothesis,
    since: Option<Duration>,
    examples: usize,
}

pub(crate) fn request(mut body: Map<String, Value>) -> Result<Request, ApiError> {
    let since = match body.remove("since") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(humantime::parse_duration(&text).map_err(|e| {
            ApiError::invalid(format!(
                "`since` must be a duration such as `24h` or `7d`: {e}"
            ))
        })?),
        Some(_) => {
            return Err(ApiError::invalid(
                "`since` must be a duration such as `24h` or `7d`",
            ));
        }
    };
    let examples = match body.remove("examples") {
        None | Some(Value::Null) => EXAMPLES,
        Some(value) => value
            .as_u64()
            .filter(|n| *n <= 20)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| ApiError::invalid("`examples` must be an integer from 0 to 20"))?,
    };
    let plan: PlanBody = serde_json::from_value(Value::Object(body))
        .map_err(|e| ApiError::invalid(format!("the plan change: {e}")))?;
    let change = plan.into_change()?;
    change.validate()?;
    Ok(Request {
        hypothesis: PlanHypothesis::from_change(change).map_err(ApiError::invalid)?,
        since,
        examples,
    })
}

/// This host's name, for saying whose decision log a report covers.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "this host".to_owned())
}

/// What a plan change would have done: the decisions logged under the plan (since `since`, e.g. `"24h"`; default: the whole log), re-decided in their order with the plan changed as the body says (the body of `PUT /admin/plans/{plan_id}` without `periods`, plus `since` and `examples`), carrying forward each user's usage and grace. Changes nothing. A replay of logged requests, not a forecast.
#[utoipa::path(post, path = "/admin/plans/{plan_id}/what-if", tag = "admin", request_body = PlanBody,
    params(("plan_id" = String, Path, description = "The plan")), security(("bearer" = [])),
    responses((status = 200, description = "The report", body = crate::wire::WhatIf),
              (status = 400, description = "`invalid_request`: a bad field, or `periods`", body = crate::wire::ErrorBody),
              (status = 404, description = "`not_found`: no such plan", body = crate::wire::ErrorBody)))]
async fn post_what_if(
    State(state): State<AppState>,
    _: Admin,
    Path(plan_id): Path<String>,
    Json(body): Json<Map<String, Value>>,
) -> Result<axum::Json<wire::WhatIf>, ApiError> {
    crate::extract::id("plan_id", &plan_id)?;
    let request = request(body)?;
    let s = state.clone();
    state
        .blocking(move |engine| Ok(axum::Json(report(&s, engine, plan_id, request)?)))
        .await
}

/// The report of `request` for `plan_id`, from this host's decision log.
pub(crate) fn report(
    state: &AppState,
    engine: &quota_engine::Engine<crate::Store>,
    plan_id: String,
    request: Request,
) -> Result<wire::WhatIf, ApiError> {
    engine.store().plan(&plan_id)?;
    let options = WhatIfOptions::new(plan_id, request.since, engine.now_ms(), request.examples);
    let policy = engine.policy();
    let started = Instant::now();
    let report = match state.decision_log() {
        Some(log) => {
            log.flush(Duration::from_secs(5));
            what_if(log.store(), &policy, &request.hypothesis, &options)?
        }
        None => what_if(engine.store(), &policy, &request.hypothesis, &options)?,
    };
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let covers = wire::Coverage {
        scope: if engine.store().is_shared() {
            "this_host"
        } else {
            "service"
        }
        .to_owned(),
        host: host_name(),
    };
    Ok(wire::WhatIf::new(report, covers, elapsed_ms))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(post_what_if))
}
