//! A node started with `join: true` asks the cluster to take it in: it asks the members to
//! add it as a learner, then to promote it. The leader refuses the promotion (`Busy`) until
//! the learner has caught up, so asking again until it is accepted is the whole protocol;
//! the node never counts toward a quorum before it holds the log.
//!
//! Every request goes to the members' client addresses in turn (whoever is not the leader
//! refuses with `NotLeader`), each bounded by the client's timeout, and the whole join by
//! [`JOIN_DEADLINE`]: a node that cannot join logs why and keeps running as a non-member,
//! harmless, for an operator to look at.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{error, info, warn};

use crate::client::{Client, ClientError};
use crate::protocol::{MemberChange, WireError};

/// How long a node keeps asking to be added and promoted. A learner catching up a large
/// snapshot over a slow link needs most of it.
pub const JOIN_DEADLINE: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
const PAUSE: Duration = Duration::from_millis(200);

/// Why one request did not take: retried, except for a refusal that retrying cannot cure.
enum Refusal {
    Retry(String),
    Final(String),
}

/// What this node's own status must show for a step to be done.
#[derive(Clone, Copy)]
enum Want {
    /// A learner or a voter.
    Member,
    Voter,
}

/// Who is asking, and who can tell whether a step is done.
struct Me<'a> {
    name: &'a str,
    members: &'a [String],
}

impl Me<'_> {
    /// Whether the leader's configuration shows `want`. Not this node's own: a fresh node
    /// that installs a snapshot taken before its old self was removed holds, until it has
    /// the entries after it, a configuration that lists it as a voter, and believing that
    /// ended the join with the node a learner for good. A member that does not answer, or
    /// no leader among them, shows nothing.
    async fn has(&self, want: Want) -> bool {
        for addr in self.members {
            let Ok(Ok(mut c)) = tokio::time::timeout(REQUEST_TIMEOUT, Client::connect(addr, REQUEST_TIMEOUT)).await else {
                continue;
            };
            c.set_follow_leader(false);
            let Ok(Ok(s)) = tokio::time::timeout(REQUEST_TIMEOUT, c.status()).await else { continue };
            if s.role != "leader" {
                continue;
            }
            let voter = s.voters.iter().any(|v| v == self.name);
            return match want {
                Want::Member => voter || s.learners.iter().any(|l| l == self.name),
                Want::Voter => voter,
            };
        }
        false
    }
}

/// Asks for `change` at each of the members in turn until one accepts it, the leader's
/// configuration shows `want`, the deadline passes or the node shuts down.
async fn ask(
    me: &Me<'_>,
    change: MemberChange,
    want: Want,
    deadline: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let mut last = String::from("no member answered");
    let mut rounds = 0u64;
    loop {
        for addr in me.members {
            if *shutdown.borrow() {
                return Err("shutting down".into());
            }
            match request(addr, change.clone()).await {
                Ok(()) => return Ok(()),
                Err(Refusal::Final(why)) => {
                    if me.has(want).await {
                        return Ok(());
                    }
                    return Err(format!("{addr}: {why}"));
                }
                Err(Refusal::Retry(why)) => last = format!("{addr}: {why}"),
            }
        }
        if me.has(want).await {
            return Ok(());
        }
        rounds += 1;
        if rounds % 25 == 0 {
            info!(%last, ?change, "join: still asking");
        }
        if Instant::now() + PAUSE > deadline {
            return Err(format!("not done within {JOIN_DEADLINE:?}; last answer: {last}"));
        }
        tokio::select! {
            _ = tokio::time::sleep(PAUSE) => {}
            _ = shutdown.changed() => return Err("shutting down".into()),
        }
    }
}

async fn request(addr: &str, change: MemberChange) -> Result<(), Refusal> {
    let mut c = Client::connect(addr, REQUEST_TIMEOUT).await.map_err(|e| Refusal::Retry(e.to_string()))?;
    match c.member(change).await {
        Ok(()) => Ok(()),
        // "already a member", "not a learner": settled one way or the other; the caller
        // looks at its own configuration to tell which.
        Err(ClientError::Server(WireError::BadRequest(why)))
            if why.contains("already a member") || why.contains("not a learner") =>
        {
            Err(Refusal::Final(why))
        }
        // Anything else may pass: no leader yet, not the leader, the leader has not seen this
        // node's connection yet ("unknown node"), the learner not caught up (`Busy`).
        Err(e) => Err(Refusal::Retry(e.to_string())),
    }
}

/// Joins the cluster whose members answer at `members` (client addresses): add, then
/// promote. Logs the outcome; returns once this node is a voter or has given up.
pub async fn join(me: String, members: Vec<String>, mut shutdown: watch::Receiver<bool>) {
    let deadline = Instant::now() + JOIN_DEADLINE;
    info!(members = ?members, "joining: asking the members to add this node as a learner");
    let me = Me { name: &me, members: &members };
    let added = ask(&me, MemberChange::AddLearner { node: me.name.to_string() }, Want::Member, deadline, &mut shutdown);
    if let Err(why) = added.await {
        error!(%why, "join: not added as a learner; this node stays out of the cluster");
        return;
    }
    info!("join: a learner; asking to be promoted once caught up");
    let promoted = ask(&me, MemberChange::Promote { node: me.name.to_string() }, Want::Voter, deadline, &mut shutdown);
    match promoted.await {
        Ok(()) => info!("join: promoted, a voter"),
        Err(why) => warn!(%why, "join: not promoted; this node stays a learner"),
    }
}
