//! The monitor: polls every node's `status` about four times a second and records each
//! sample as a `monitor` event, so reports can show roles, terms and commit progress over
//! time and recovery metrics can count elections.

use std::sync::Arc;
use std::time::Duration;

use faultline_checkers::EventType;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::Db;
use super::history::Recorder;

pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
use crate::db::STATUS_TIMEOUT;

/// Polls until `cancel` fires; returns the number of samples recorded.
pub async fn run(db: Arc<dyn Db>, rec: Recorder, cancel: CancellationToken) -> u64 {
    let nodes = db.nodes();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut samples = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return samples,
        }
        let polls = nodes.iter().map(|n| {
            let db = db.clone();
            async move {
                let r = tokio::time::timeout(STATUS_TIMEOUT, db.status(n)).await;
                (n, r)
            }
        });
        for (node, r) in futures::future::join_all(polls).await {
            let (value, error) = match r {
                Ok(Ok(v)) => (v, None),
                Ok(Err(e)) => (Value::Null, Some(e.to_string())),
                Err(_) => (
                    Value::Null,
                    Some(format!("timeout after {} ms", STATUS_TIMEOUT.as_millis())),
                ),
            };
            let node = Some(Value::String(node.clone()));
            rec.named("monitor", EventType::Info, "status", value, node, error)
                .await;
            samples += 1;
        }
    }
}
