//! The nodes of this control plane (`GET /v1/nodes`): each `writ serve` records a heartbeat
//! (its id, address, active bundle and log size, and when) in the metadata of the log store
//! it shares with the other nodes, under the key `node/<id>`, every [`HEARTBEAT`]; the route
//! lists every heartbeat the store holds, with this node's own figures read live. On the
//! embedded SQLite store that is this node alone; nodes that share one store list each
//! other. A node that stopped keeps its last heartbeat: `last_seen` tells how old it is.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiError, ServerFailures};

/// How often a node records its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// The metadata key prefix of heartbeats.
const PREFIX: &str = "node/";

/// Longest node id accepted (it is a key in the store).
const MAX_ID: usize = 128;

/// Who this node is: its id (unique among the nodes sharing a store) and the address it
/// serves on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    /// The node's id.
    pub id: String,
    /// The address it serves on, as clients reach it.
    pub address: String,
}

impl NodeIdentity {
    /// A node identity; the id is 1 to 128 printable ASCII characters without spaces
    /// (it is a key in the shared store and is shown as is).
    pub fn new(id: &str, address: &str) -> Result<Self, String> {
        if id.is_empty() || id.len() > MAX_ID || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!("a node id is 1 to {MAX_ID} printable ASCII characters without spaces: {id:?}"));
        }
        Ok(NodeIdentity { id: id.to_owned(), address: address.to_owned() })
    }
}

impl Default for NodeIdentity {
    fn default() -> Self {
        NodeIdentity { id: "local".into(), address: String::new() }
    }
}

/// One node, as `GET /v1/nodes` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NodeDoc {
    /// The node's id.
    pub id: String,
    /// The address it serves on.
    pub address: String,
    /// The digest of its active bundle (`null`: none).
    pub bundle_digest: Option<String>,
    /// The version of its active bundle.
    pub bundle_version: Option<String>,
    /// The log size it saw.
    pub log_size: u64,
    /// When it recorded this (Unix seconds; now, for this node).
    pub last_seen: u64,
    /// Whether this is the node answering.
    #[serde(rename = "self", default)]
    pub this: bool,
}

/// The answer of `GET /v1/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodesAnswer {
    /// Every node, this one first, then by id.
    nodes: Vec<NodeDoc>,
}

/// This node's figures now.
fn this_node(s: &AppState) -> NodeDoc {
    let bundle = s.engine.active_bundle();
    NodeDoc {
        id: s.node.id.clone(),
        address: s.node.address.clone(),
        bundle_digest: bundle.as_ref().map(|(_, _, d)| d.to_string()),
        bundle_version: bundle.map(|(_, v, _)| v),
        log_size: s.engine.log().size(),
        last_seen: s.engine.now(),
        this: true,
    }
}

/// Records this node's heartbeat in the shared store (a synced write).
pub(crate) async fn heartbeat(s: &AppState) -> Result<(), String> {
    let mut me = this_node(s);
    me.this = false;
    let value = serde_json::to_string(&me).map_err(|e| e.to_string())?;
    let store = s.engine.log().store().clone();
    let key = format!("{PREFIX}{}", me.id);
    tokio::task::spawn_blocking(move || store.set_meta(&key, &value))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Records a heartbeat now and every [`HEARTBEAT`] until the task is dropped; a failed
/// write is logged and retried at the next beat.
pub(crate) async fn beat(s: AppState) {
    let mut every = tokio::time::interval(HEARTBEAT);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = heartbeat(&s).await {
            tracing::warn!(error = %e, "recording this node's heartbeat");
        }
    }
}

/// The nodes of this control plane.
///
/// Every node whose heartbeat the shared log store holds (its id, address, active bundle,
/// log size and when it recorded them), this node's read live. On the embedded SQLite
/// store, this node alone.
#[utoipa::path(get, path = "/v1/nodes", tag = "service",
    responses(ServerFailures, (status = 200, description = "The nodes", body = NodesAnswer)))]
pub(crate) async fn nodes(State(s): State<AppState>) -> Result<Response, ApiError> {
    let me = this_node(&s);
    let store = s.engine.log().store().clone();
    let stored = tokio::task::spawn_blocking(move || store.meta_prefixed(PREFIX)).await;
    let mut others: Vec<NodeDoc> = match stored {
        Ok(Ok(rows)) => rows
            .into_iter()
            .filter_map(|(key, value)| {
                // A heartbeat that does not parse (another version's, or damaged) is skipped.
                let n: NodeDoc = serde_json::from_str(&value).ok()?;
                (key.strip_prefix(PREFIX) == Some(n.id.as_str()) && n.id != me.id)
                    .then_some(NodeDoc { this: false, ..n })
            })
            .collect(),
        // The other nodes are unknown: a list of this node alone would say it is the only
        // one, and healthy dashboards would be drawn over an outage of the shared store.
        Ok(Err(e)) => return Err(ApiError::log_unavailable(format!("reading the nodes' heartbeats: {e}"))),
        Err(e) => return Err(ApiError::log_unavailable(format!("reading the nodes' heartbeats: {e}"))),
    };
    others.sort_by(|a, b| a.id.cmp(&b.id));
    let mut nodes = vec![me];
    nodes.extend(others);
    Ok(Json(NodesAnswer { nodes }).into_response())
}
