//! Metered consumes, node credentials and leases, as clients see them.

use serde::Serialize;
use utoipa::ToSchema;

use super::Outcome;

/// A metered consume done: the decision that admitted it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Consumed {
    /// The user whose units.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// Units consumed.
    pub requested: i64,
    /// The decision, applied (usage and grace recorded).
    pub outcome: Outcome,
}

/// A node credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Node {
    /// The node id.
    pub id: String,
    /// The most units its open leases may hold at once, across users.
    pub max_outstanding: i64,
    /// When it was created, Unix ms.
    pub created_at_ms: i64,
}

impl From<&quota_store::Node> for Node {
    fn from(n: &quota_store::Node) -> Self {
        Node {
            id: n.id.clone(),
            max_outstanding: n.max_outstanding,
            created_at_ms: n.created_at_ms,
        }
    }
}

/// A new node and its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct CreatedNode {
    /// The node.
    pub node: Node,
    /// The node token: shown once, stored only hashed. It only leases and
    /// consumes on users' behalf.
    pub token: String,
}

/// A node deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeletedNode {
    /// The node.
    pub node: Node,
    /// Its open leases, ended as fully spent.
    pub leases_ended: usize,
}

/// The nodes, with their open leases.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Nodes {
    /// By id.
    pub nodes: Vec<NodeLeases>,
}

/// A node and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NodeLeases {
    /// The node.
    #[serde(flatten)]
    pub node: Node,
    /// Units its open leases hold.
    pub outstanding: i64,
    /// Its open leases.
    pub leases: Vec<Lease>,
}

/// An open lease, as an admin or its user sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Lease {
    /// The lease id.
    pub id: i64,
    /// The node holding it.
    pub node_id: String,
    /// The user whose units it holds.
    pub user_id: String,
    /// The entitlement.
    pub entitlement_key: String,
    /// The usage counter its units count on.
    pub usage_key: String,
    /// Units it holds now: used until settled.
    pub reserved: i64,
    /// Of those, units granted on grace.
    pub reserved_grace: i64,
    /// Units granted over its life.
    pub granted_total: i64,
    /// Units settled as spent over its life.
    pub spent_total: i64,
    /// The last settle applied.
    pub seq: i64,
    /// When it expires (the store's clock), Unix ms.
    pub expires_at_ms: i64,
    /// When an admin change revoked it (its next renewal is decided
    /// afresh); null: not revoked.
    pub revoked_at_ms: Option<i64>,
}

impl From<&quota_store::Lease> for Lease {
    fn from(l: &quota_store::Lease) -> Self {
        Lease {
            id: l.id,
            node_id: l.node_id.clone(),
            user_id: l.user_id.clone(),
            entitlement_key: l.entitlement_key.clone(),
            usage_key: l.usage_key.clone(),
            reserved: l.reserved,
            reserved_grace: l.reserved_grace,
            granted_total: l.granted_total,
            spent_total: l.spent_total,
            seq: l.seq,
            expires_at_ms: l.expires_at_ms,
            revoked_at_ms: l.revoked_at_ms,
        }
    }
}

/// Why a grant or renewal reserved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Refused {
    /// The policy admits not even one unit (see `outcome`): consume
    /// directly to get its 403, or wait.
    Blocked,
    /// The node's open leases hold its `max_outstanding` already.
    NodeFull,
}

/// What a settle did with the units reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
pub struct Settlement {
    /// Units that became usage.
    pub spent: i64,
    /// Of those, units that became grace.
    pub grace_spent: i64,
    /// Units that went back.
    pub returned: i64,
}

/// The answer to a grant or a settle: what the node may now spend, and
/// everything it needs to decide locally with the same policy.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LeaseGrant {
    /// The lease id; null when a grant reserved nothing.
    pub id: Option<i64>,
    /// The last settle applied (0 after a grant): the next settle sends
    /// one more.
    pub seq: i64,
    /// Units the node may spend now; 0 when refused or ended.
    pub granted: i64,
    /// Of those, units granted on grace (spent last).
    pub grace_granted: i64,
    /// When the lease expires by the store's clock, Unix ms; null when it
    /// holds nothing.
    pub expires_at_ms: Option<i64>,
    /// The lease's time to live from the answer, ms: a node counts it on
    /// its monotonic clock, minus a margin, and spends nothing after.
    pub ttl_ms: i64,
    /// Why nothing was reserved, when nothing was.
    pub refused: Option<Refused>,
    /// An admin change (plan, override, default) touched what the lease
    /// was granted on since its last renewal: this renewal was decided on
    /// the changed state, and the node must drop what it knew.
    pub revoked: bool,
    /// The lease ended with this settle (no renewal).
    pub ended: bool,
    /// What the settle did (null for a grant).
    pub settled: Option<Settlement>,
    /// The decision input as of the grant, with `requested` set to the
    /// units granted, in the policy's JSON input format (what `quota
    /// policy eval` reads). A node decides a request of `n` units on it
    /// with `usage` raised by what it has spent from the lease and
    /// `requested` = `n`, as long as the total stays within `granted`.
    /// Null when nothing was granted.
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// The policy's decision for the units granted, or its block.
    pub outcome: Option<Outcome>,
}
