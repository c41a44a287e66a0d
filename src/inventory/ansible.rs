//! Ansible's YAML format (`all: {hosts, vars, children}`), so an existing VM inventory works
//! as is: group vars are inherited, host vars win.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::node::{self, BecomeFields, Field, NodeFields, Scalar};
use super::{Ctx, InventoryError, Node, SshSettings};

/// An Ansible group. Unknown keys are errors here too: a group only has these three.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AnsibleGroup {
    #[serde(default)]
    hosts: Option<BTreeMap<String, Option<AnsibleVars>>>,
    #[serde(default)]
    vars: Option<AnsibleVars>,
    #[serde(default)]
    children: Option<BTreeMap<String, Option<AnsibleGroup>>>,
}

/// The connection variables faultline understands; other variables are Ansible's business
/// and are ignored (an Ansible inventory carries many).
#[derive(Deserialize, Default, Clone)]
struct AnsibleVars {
    ansible_host: Option<Spanned<Scalar>>,
    ansible_ssh_host: Option<Spanned<Scalar>>,
    ansible_port: Option<Spanned<Scalar>>,
    ansible_ssh_port: Option<Spanned<Scalar>>,
    ansible_user: Option<Spanned<Scalar>>,
    ansible_ssh_user: Option<Spanned<Scalar>>,
    ansible_ssh_private_key_file: Option<Spanned<Scalar>>,
    ansible_private_key_file: Option<Spanned<Scalar>>,
    /// faultline extensions, so an Ansible inventory can pin host keys too.
    faultline_known_hosts: Option<Spanned<Scalar>>,
    faultline_host_key_policy: Option<Spanned<Scalar>>,
    ansible_become: Option<Spanned<Scalar>>,
    ansible_become_user: Option<Spanned<Scalar>>,
    ansible_become_method: Option<Spanned<Scalar>>,
    ansible_become_password: Option<Spanned<Scalar>>,
    ansible_become_pass: Option<Spanned<Scalar>>,
    faultline_become_password_env: Option<Spanned<Scalar>>,
    faultline_become_password_file: Option<Spanned<Scalar>>,
}

impl AnsibleVars {
    /// `other` wins where it sets a value (host vars over group vars, child over parent).
    fn merged(&self, other: &AnsibleVars) -> AnsibleVars {
        macro_rules! pick {
            ($f:ident) => {
                other.$f.clone().or_else(|| self.$f.clone())
            };
        }
        AnsibleVars {
            ansible_host: pick!(ansible_host),
            ansible_ssh_host: pick!(ansible_ssh_host),
            ansible_port: pick!(ansible_port),
            ansible_ssh_port: pick!(ansible_ssh_port),
            ansible_user: pick!(ansible_user),
            ansible_ssh_user: pick!(ansible_ssh_user),
            ansible_ssh_private_key_file: pick!(ansible_ssh_private_key_file),
            ansible_private_key_file: pick!(ansible_private_key_file),
            faultline_known_hosts: pick!(faultline_known_hosts),
            faultline_host_key_policy: pick!(faultline_host_key_policy),
            ansible_become: pick!(ansible_become),
            ansible_become_user: pick!(ansible_become_user),
            ansible_become_method: pick!(ansible_become_method),
            ansible_become_password: pick!(ansible_become_password),
            ansible_become_pass: pick!(ansible_become_pass),
            faultline_become_password_env: pick!(faultline_become_password_env),
            faultline_become_password_file: pick!(faultline_become_password_file),
        }
    }
}

/// The first of the variables that is set, as a field named after it.
fn first<'a>(vars: [(&'a str, &'a Option<Spanned<Scalar>>); 2]) -> Option<Field<'a>> {
    vars.into_iter().find_map(|(path, v)| node::field(path, v))
}

#[derive(Deserialize)]
struct AnsibleTop {
    all: Option<AnsibleGroup>,
}

/// Children nest; this bounds the walk so a cyclic or absurd file cannot recurse forever.
const ANSIBLE_DEPTH_MAX: usize = 32;

pub(super) fn parse(ctx: &Ctx) -> Result<(SshSettings, Vec<Node>), InventoryError> {
    let top: AnsibleTop = serde_saphyr::from_str(ctx.text).map_err(|e| ctx.saphyr(e))?;
    let all = top.all.unwrap_or_default();
    // Host name -> effective vars, in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut hosts: BTreeMap<String, AnsibleVars> = BTreeMap::new();
    walk_group(
        ctx,
        &all,
        &AnsibleVars::default(),
        0,
        &mut order,
        &mut hosts,
    )?;
    if order.is_empty() {
        return Err(ctx.invalid("Ansible inventory has no hosts under `all`"));
    }
    let mut ssh = SshSettings::default();
    let all_vars = all.vars.clone().unwrap_or_default();
    if let Some(k) = &all_vars.faultline_known_hosts {
        ssh.known_hosts = Some(ctx.path(Field {
            path: "faultline_known_hosts",
            value: k,
        })?);
    }
    if let Some(p) = &all_vars.faultline_host_key_policy {
        ssh.host_key_policy = ctx.host_key_policy(Field {
            path: "faultline_host_key_policy",
            value: p,
        })?;
    }
    let mut nodes = Vec::with_capacity(order.len());
    for name in order {
        let v = &hosts[&name];
        let name_at = locate_key(ctx.text, &name).unwrap_or((1, 1));
        let becomes = v
            .ansible_become
            .as_ref()
            .map(|b| ctx.text(Field { path: "ansible_become", value: b }))
            .transpose()?
            .is_some_and(|b| matches!(b.to_ascii_lowercase().as_str(), "true" | "yes" | "on"));
        if let (true, Some(m)) = (becomes, &v.ansible_become_method) {
            let f = Field { path: "ansible_become_method", value: m };
            let method = ctx.text(f)?;
            if method != "sudo" {
                return Err(ctx.at_field(
                    f,
                    format!("{method:?} is not supported: faultline escalates with sudo only"),
                ));
            }
        }
        nodes.push(node::build(
            ctx,
            NodeFields {
                name,
                name_at,
                host: first([
                    ("ansible_host", &v.ansible_host),
                    ("ansible_ssh_host", &v.ansible_ssh_host),
                ]),
                host_is_name: true,
                port: first([
                    ("ansible_port", &v.ansible_port),
                    ("ansible_ssh_port", &v.ansible_ssh_port),
                ]),
                user: first([
                    ("ansible_user", &v.ansible_user),
                    ("ansible_ssh_user", &v.ansible_ssh_user),
                ]),
                key: first([
                    (
                        "ansible_ssh_private_key_file",
                        &v.ansible_ssh_private_key_file,
                    ),
                    ("ansible_private_key_file", &v.ansible_private_key_file),
                ]),
                privilege: BecomeFields {
                    method: node::field("ansible_become", &v.ansible_become),
                    user: node::field("ansible_become_user", &v.ansible_become_user),
                    password_env: node::field(
                        "faultline_become_password_env",
                        &v.faultline_become_password_env,
                    ),
                    password_file: node::field(
                        "faultline_become_password_file",
                        &v.faultline_become_password_file,
                    ),
                    password: first([
                        ("ansible_become_password", &v.ansible_become_password),
                        ("ansible_become_pass", &v.ansible_become_pass),
                    ]),
                    strict: false,
                },
            },
            &ssh,
        )?);
    }
    Ok((ssh, nodes))
}

fn walk_group(
    ctx: &Ctx,
    g: &AnsibleGroup,
    inherited: &AnsibleVars,
    depth: usize,
    order: &mut Vec<String>,
    hosts: &mut BTreeMap<String, AnsibleVars>,
) -> Result<(), InventoryError> {
    if depth > ANSIBLE_DEPTH_MAX {
        return Err(ctx.invalid(format!(
            "Ansible groups nested deeper than {ANSIBLE_DEPTH_MAX}"
        )));
    }
    let vars = match &g.vars {
        Some(v) => inherited.merged(v),
        None => inherited.clone(),
    };
    if let Some(hs) = &g.hosts {
        for (name, hv) in hs {
            let effective = match hv {
                Some(hv) => vars.merged(hv),
                None => vars.clone(),
            };
            match hosts.get_mut(name) {
                Some(existing) => *existing = existing.merged(&effective),
                None => {
                    order.push(name.clone());
                    hosts.insert(name.clone(), effective);
                }
            }
        }
    }
    if let Some(children) = &g.children {
        for child in children.values().flatten() {
            walk_group(ctx, child, &vars, depth + 1, order, hosts)?;
        }
    }
    Ok(())
}

/// Finds where `key:` is first written, for errors about map keys (which carry no span).
fn locate_key(text: &str, key: &str) -> Option<(u64, u64)> {
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        for candidate in [
            format!("{key}:"),
            format!("\"{key}\":"),
            format!("'{key}':"),
        ] {
            if trimmed.starts_with(&candidate) {
                let col = line.len() - trimmed.len() + 1;
                return Some((i as u64 + 1, col as u64));
            }
        }
    }
    None
}
