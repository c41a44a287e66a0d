//! faultline's own format: a `nodes:` list plus shared `ssh:` settings, with
//! `deny_unknown_fields` so a typo is an error rather than a silent default.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::node::{self, BecomeFields, Field, NodeFields, Scalar, field};
use super::{Ctx, InventoryError, Node, SshSettings};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    ssh: Option<RawSsh>,
    nodes: Spanned<Vec<RawNode>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    user: Option<Spanned<Scalar>>,
    private_key: Option<Spanned<Scalar>>,
    port: Option<Spanned<Scalar>>,
    known_hosts: Option<Spanned<Scalar>>,
    host_key_policy: Option<Spanned<Scalar>>,
    config_file: Option<Spanned<Scalar>>,
    connect_timeout_ms: Option<Spanned<Scalar>>,
    command_timeout_ms: Option<Spanned<Scalar>>,
    max_sessions_per_host: Option<Spanned<Scalar>>,
    server_alive_interval_ms: Option<Spanned<Scalar>>,
    #[serde(rename = "become")]
    become_method: Option<Spanned<Scalar>>,
    become_user: Option<Spanned<Scalar>>,
    become_password_env: Option<Spanned<Scalar>>,
    become_password_file: Option<Spanned<Scalar>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<Scalar>,
    host: Option<Spanned<Scalar>>,
    port: Option<Spanned<Scalar>>,
    user: Option<Spanned<Scalar>>,
    #[serde(alias = "private_key")]
    key: Option<Spanned<Scalar>>,
    #[serde(rename = "become")]
    become_method: Option<Spanned<Scalar>>,
    become_user: Option<Spanned<Scalar>>,
    become_password_env: Option<Spanned<Scalar>>,
    become_password_file: Option<Spanned<Scalar>>,
}

/// Above this, sshd (MaxSessions 10 by default) would refuse channels.
const MAX_SESSIONS_PER_HOST_MAX: u64 = 64;

pub(super) fn parse(ctx: &Ctx) -> Result<(SshSettings, Vec<Node>), InventoryError> {
    let raw: RawInventory = serde_saphyr::from_str(ctx.text).map_err(|e| ctx.saphyr(e))?;
    let ssh = build_ssh(ctx, raw.ssh.unwrap_or_default())?;
    if raw.nodes.value.is_empty() {
        return Err(ctx.at(
            raw.nodes.referenced.line(),
            raw.nodes.referenced.column(),
            "`nodes` is empty: an inventory needs at least one node",
        ));
    }
    let mut nodes = Vec::with_capacity(raw.nodes.value.len());
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    for (i, rn) in raw.nodes.value.iter().enumerate() {
        let paths = [
            "name",
            "host",
            "port",
            "user",
            "key",
            "become",
            "become_user",
            "become_password_env",
            "become_password_file",
        ]
        .map(|f| format!("nodes[{i}].{f}"));
        let name_field = Field {
            path: &paths[0],
            value: &rn.name,
        };
        let name = ctx.text(name_field)?;
        let name_at = (rn.name.referenced.line(), rn.name.referenced.column());
        if let Some(first) = seen.insert(name.clone(), name_at.0) {
            return Err(ctx.at(
                name_at.0,
                name_at.1,
                format!("duplicate node {name:?} (first defined on line {first})"),
            ));
        }
        nodes.push(node::build(
            ctx,
            NodeFields {
                name,
                name_at,
                host: field(&paths[1], &rn.host),
                host_is_name: false,
                port: field(&paths[2], &rn.port),
                user: field(&paths[3], &rn.user),
                key: field(&paths[4], &rn.key),
                privilege: BecomeFields {
                    method: field(&paths[5], &rn.become_method),
                    user: field(&paths[6], &rn.become_user),
                    password_env: field(&paths[7], &rn.become_password_env),
                    password_file: field(&paths[8], &rn.become_password_file),
                    password: None,
                    strict: true,
                },
            },
            &ssh,
        )?);
    }
    Ok((ssh, nodes))
}

fn build_ssh(ctx: &Ctx, raw: RawSsh) -> Result<SshSettings, InventoryError> {
    let mut s = SshSettings::default();
    let f = field;
    if let Some(u) = f("ssh.user", &raw.user) {
        s.user = ctx.user(u)?;
    }
    if let Some(p) = f("ssh.port", &raw.port) {
        s.port = ctx.port(p)?;
    }
    if let Some(k) = f("ssh.private_key", &raw.private_key) {
        s.private_key = Some(ctx.key(k)?);
    }
    if let Some(k) = f("ssh.known_hosts", &raw.known_hosts) {
        s.known_hosts = Some(ctx.path(k)?);
    }
    if let Some(k) = f("ssh.config_file", &raw.config_file) {
        s.config_file = Some(ctx.path(k)?);
    }
    if let Some(p) = f("ssh.host_key_policy", &raw.host_key_policy) {
        s.host_key_policy = ctx.host_key_policy(p)?;
    }
    let ms = [
        (
            "ssh.connect_timeout_ms",
            &raw.connect_timeout_ms,
            &mut s.connect_timeout_ms,
        ),
        (
            "ssh.command_timeout_ms",
            &raw.command_timeout_ms,
            &mut s.command_timeout_ms,
        ),
        (
            "ssh.server_alive_interval_ms",
            &raw.server_alive_interval_ms,
            &mut s.server_alive_interval_ms,
        ),
    ];
    for (path, raw, out) in ms {
        if let Some(v) = f(path, raw) {
            *out = ctx.positive(v, u64::MAX)?;
        }
    }
    if let Some(m) = f("ssh.max_sessions_per_host", &raw.max_sessions_per_host) {
        if ctx.integer(m)? > i128::from(MAX_SESSIONS_PER_HOST_MAX) {
            return Err(ctx.at_field(
                m,
                format!(
                    "above {MAX_SESSIONS_PER_HOST_MAX} is refused (sshd's MaxSessions is 10 by default)"
                ),
            ));
        }
        s.max_sessions_per_host = ctx.positive(m, MAX_SESSIONS_PER_HOST_MAX)? as usize;
    }
    s.privilege = ctx.privilege(
        &BecomeFields {
            method: f("ssh.become", &raw.become_method),
            user: f("ssh.become_user", &raw.become_user),
            password_env: f("ssh.become_password_env", &raw.become_password_env),
            password_file: f("ssh.become_password_file", &raw.become_password_file),
            password: None,
            strict: true,
        },
        None,
    )?;
    Ok(s)
}
