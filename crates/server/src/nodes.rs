//! Node credentials (admin token): a node decides at the edge from leases
//! and may consume on users' behalf; it reaches no user or admin route.

use axum::extract::State;
use axum::http::StatusCode;
use quota_store::LeaseStore;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::admin::{ADMIN_ACTOR, new_token};
use crate::error::ApiError;
use crate::extract::{Admin, Json, Path, token_sha256};
use crate::wire;

/// A new node.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateNode {
    /// The node id.
    id: String,
    /// The most units its open leases may hold at once, across users.
    #[schema(minimum = 1)]
    max_outstanding: i64,
}

/// Create a node credential. The response carries its token: shown once, stored only hashed.
#[utoipa::path(post, path = "/admin/nodes", tag = "admin", request_body = CreateNode, security(("bearer" = [])),
    responses((status = 201, description = "The node and its token", body = crate::wire::CreatedNode),
              (status = 409, description = "The node exists", body = crate::wire::ErrorBody)))]
async fn create_node(
    State(state): State<AppState>,
    _: Admin,
    Json(body): Json<CreateNode>,
) -> Result<(StatusCode, axum::Json<wire::CreatedNode>), ApiError> {
    let token = new_token()?;
    state
        .blocking(move |engine| {
            let node = engine.store().create_node(
                ADMIN_ACTOR,
                &body.id,
                body.max_outstanding,
                &hex::encode(token_sha256(&token)),
                engine.now_ms(),
            )?;
            Ok((
                StatusCode::CREATED,
                axum::Json(wire::CreatedNode {
                    node: (&node).into(),
                    token,
                }),
            ))
        })
        .await
}

/// List the nodes with their open leases.
#[utoipa::path(get, path = "/admin/nodes", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Nodes", body = crate::wire::Nodes)))]
async fn list_nodes(
    State(state): State<AppState>,
    _: Admin,
) -> Result<axum::Json<wire::Nodes>, ApiError> {
    state
        .blocking(|engine| {
            let store = engine.store();
            let mut nodes = Vec::new();
            for node in store.nodes()? {
                let leases = store.open_leases(None, Some(&node.id))?;
                nodes.push(wire::NodeLeases {
                    node: (&node).into(),
                    outstanding: leases.iter().map(|l| l.reserved).sum(),
                    leases: leases.iter().map(wire::Lease::from).collect(),
                });
            }
            Ok(axum::Json(wire::Nodes { nodes }))
        })
        .await
}

/// Delete a node: its token stops working on every host at once, and its open leases end as fully spent (at most their units are lost, never admitted twice).
#[utoipa::path(delete, path = "/admin/nodes/{node_id}", tag = "admin",
    params(("node_id" = String, Path, description = "The node")), security(("bearer" = [])),
    responses((status = 200, description = "Deleted", body = crate::wire::DeletedNode),
              (status = 404, description = "No such node", body = crate::wire::ErrorBody)))]
async fn delete_node(
    State(state): State<AppState>,
    _: Admin,
    Path(node_id): Path<String>,
) -> Result<axum::Json<wire::DeletedNode>, ApiError> {
    crate::extract::id("node_id", &node_id)?;
    state
        .blocking(move |engine| {
            let (node, ended) =
                engine
                    .store()
                    .delete_node(ADMIN_ACTOR, &node_id, engine.now_ms())?;
            Ok(axum::Json(wire::DeletedNode {
                node: (&node).into(),
                leases_ended: ended,
            }))
        })
        .await
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_node, list_nodes))
        .routes(routes!(delete_node))
}
