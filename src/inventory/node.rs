//! The one place a node as written (faultline's `nodes:` entry or an Ansible host) becomes a
//! [`Node`], and the checks of the scalar fields both formats share.
//!
//! Scalars are read as [`Scalar`] rather than as their final type so that a wrong value is
//! reported by us, naming the field (`nodes[1].port: expected an integer, got "abc"`),
//! instead of by serde, which knows neither the field nor the value.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Become, BecomePassword, Ctx, HostKeyPolicy, InventoryError, Node, SshSettings};

/// A YAML scalar as written: its type is checked where its field is known.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Scalar {
    Text(String),
    Int(i128),
    /// A float or a boolean, kept as its text.
    Other(String),
    Null,
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => write!(f, "{s:?}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Other(s) => write!(f, "{s}"),
            Scalar::Null => f.write_str("nothing"),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a single value (a string or a number), not a list or a map")
            }
            fn visit_str<E>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar::Text(v.into()))
            }
            fn visit_string<E>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar::Text(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_i128<E>(self, v: i128) -> Result<Scalar, E> {
                Ok(Scalar::Int(v))
            }
            fn visit_u128<E>(self, v: u128) -> Result<Scalar, E> {
                Ok(i128::try_from(v).map_or(Scalar::Other(v.to_string()), Scalar::Int))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar::Other(v.to_string()))
            }
            fn visit_unit<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Scalar, E> {
                Ok(Scalar::Null)
            }
        }
        // As a string, so `no` stays the word (not YAML 1.1's false) and `0x10` stays as written.
        d.deserialize_str(V)
    }
}

/// A scalar field as written: its path in the file (`nodes[1].port`, `ansible_port`) and value.
#[derive(Clone, Copy)]
pub(super) struct Field<'a> {
    pub path: &'a str,
    pub value: &'a Spanned<Scalar>,
}

/// The field at `path`, if it is set.
pub(super) fn field<'a>(path: &'a str, v: &'a Option<Spanned<Scalar>>) -> Option<Field<'a>> {
    v.as_ref().map(|value| Field { path, value })
}

impl Ctx<'_> {
    /// An error located at `f`'s value, naming its field.
    pub(super) fn at_field(&self, f: Field, message: impl fmt::Display) -> InventoryError {
        let s = f.value;
        self.at(
            s.referenced.line(),
            s.referenced.column(),
            format!("{}: {message}", f.path),
        )
    }

    pub(super) fn text(&self, f: Field) -> Result<String, InventoryError> {
        let v = match &f.value.value {
            Scalar::Text(s) | Scalar::Other(s) => s.trim().to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Null => String::new(),
        };
        if v.is_empty() {
            return Err(self.at_field(f, "is empty"));
        }
        Ok(v)
    }

    pub(super) fn integer(&self, f: Field) -> Result<i128, InventoryError> {
        match &f.value.value {
            Scalar::Int(i) => Ok(*i),
            Scalar::Text(s) if s.trim().parse::<i128>().is_ok() => {
                Ok(s.trim().parse().unwrap_or(0))
            }
            other => Err(self.at_field(f, format!("expected an integer, got {other}"))),
        }
    }

    pub(super) fn port(&self, f: Field) -> Result<u16, InventoryError> {
        let v = self.integer(f)?;
        u16::try_from(v)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| self.at_field(f, format!("bad port {v}: expected 1-65535")))
    }

    /// A positive count or duration, at most `max`.
    pub(super) fn positive(&self, f: Field, max: u64) -> Result<u64, InventoryError> {
        let v = self.integer(f)?;
        if v <= 0 {
            return Err(self.at_field(f, format!("must be positive, got {v}")));
        }
        u64::try_from(v)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| self.at_field(f, format!("{v} is above the limit of {max}")))
    }

    /// A login name, passed to ssh as `-l USER`.
    pub(super) fn user(&self, f: Field) -> Result<String, InventoryError> {
        let v = self.text(f)?;
        // ssh refuses such a name without saying why; it would also read as an option.
        if v.starts_with('-') || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.at_field(
                f,
                format!("bad user {v:?}: a login name cannot begin with '-' nor hold spaces"),
            ));
        }
        Ok(v)
    }

    pub(super) fn host(&self, f: Field) -> Result<String, InventoryError> {
        let v = self.text(f)?;
        check_host(&v).map_err(|why| self.at_field(f, why))?;
        Ok(v)
    }

    /// A path; relative to the inventory's directory, `~/` to `$HOME`.
    pub(super) fn path(&self, f: Field) -> Result<PathBuf, InventoryError> {
        Ok(self.resolve_path(&self.text(f)?))
    }

    /// A private key path, remembered so [`super::load`] checks it can be read.
    pub(super) fn key(&self, f: Field) -> Result<PathBuf, InventoryError> {
        let p = self.path(f)?;
        self.keys.borrow_mut().push(super::KeyRef {
            path: p.clone(),
            field: f.path.to_string(),
            line: f.value.referenced.line(),
            column: f.value.referenced.column(),
        });
        Ok(p)
    }
}

/// Why `host` is not something ssh can be pointed at, if it is not.
fn check_host(v: &str) -> Result<(), String> {
    if v.chars().any(|c| c.is_whitespace() || c == '@' || c == '/') {
        return Err(format!("bad host {v:?}: expected an address or DNS name"));
    }
    // ssh would take it for an option.
    if v.starts_with('-') {
        return Err(format!("bad host {v:?}: a host name cannot begin with '-'"));
    }
    Ok(())
}

fn check_name(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v.len() <= 64
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "bad node name {v:?}: use 1-64 characters from [A-Za-z0-9._-]"
        ))
    }
}

/// A node as written, in either format.
pub(super) struct NodeFields<'a> {
    pub name: String,
    /// Where the name is written.
    pub name_at: (u64, u64),
    pub host: Option<Field<'a>>,
    /// Ansible reaches a host without `ansible_host` by its name; faultline's format has no
    /// such fallback, and a missing `host` is an error.
    pub host_is_name: bool,
    pub port: Option<Field<'a>>,
    pub user: Option<Field<'a>>,
    pub key: Option<Field<'a>>,
    pub privilege: BecomeFields<'a>,
}

/// The privilege-escalation fields of a node or of the shared settings, in either format.
#[derive(Default, Clone, Copy)]
pub(super) struct BecomeFields<'a> {
    /// `become: sudo|none` (faultline) or `ansible_become: true|false`.
    pub method: Option<Field<'a>>,
    pub user: Option<Field<'a>>,
    pub password_env: Option<Field<'a>>,
    pub password_file: Option<Field<'a>>,
    /// Ansible's `ansible_become_password` (faultline's format keeps passwords out of the file).
    pub password: Option<Field<'a>>,
    /// Ansible sets `ansible_become_user` and the like on groups that do not become; only
    /// faultline's format calls a `become_*` field without `become` a mistake.
    pub strict: bool,
}

impl Ctx<'_> {
    /// The node's escalation: its own fields over `inherited` (the shared `ssh:` one).
    pub(super) fn privilege(
        &self,
        f: &BecomeFields,
        inherited: Option<&Become>,
    ) -> Result<Option<Become>, InventoryError> {
        let on = match f.method {
            None => None,
            Some(m) => {
                let v = self.text(m)?.to_ascii_lowercase();
                match v.as_str() {
                    "sudo" | "true" | "yes" | "on" => Some(true),
                    "none" | "false" | "no" | "off" => Some(false),
                    _ => {
                        return Err(self.at_field(
                            m,
                            format!("expected sudo or none, got {v:?} (sudo is the only escalation method faultline supports)"),
                        ));
                    }
                }
            }
        };
        let others = [f.user, f.password_env, f.password_file, f.password];
        let mut b = match (on, inherited) {
            (Some(false), _) => return Ok(None),
            (Some(true), Some(b)) | (None, Some(b)) => b.clone(),
            (Some(true), None) => Become {
                user: "root".into(),
                password: None,
            },
            (None, None) => {
                if f.strict {
                    if let Some(first) = others.iter().flatten().next() {
                        return Err(self.at_field(
                            *first,
                            "has no effect without `become: sudo` (set it here or under `ssh:`)",
                        ));
                    }
                }
                return Ok(None);
            }
        };
        if let Some(u) = f.user {
            b.user = self.user(u)?;
        }
        let given: Vec<Field> = [f.password_env, f.password_file, f.password]
            .into_iter()
            .flatten()
            .collect();
        if given.len() > 1 {
            return Err(self.at_field(
                given[1],
                format!("{} is set too: give the sudo password one way only", given[0].path),
            ));
        }
        if let Some(e) = f.password_env {
            let var = self.text(e)?;
            if !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || var.starts_with(|c: char| c.is_ascii_digit())
            {
                return Err(self.at_field(e, format!("{var:?} is not an environment variable name")));
            }
            b.password = Some(BecomePassword::Env(var));
        }
        if let Some(p) = f.password_file {
            b.password = Some(BecomePassword::File(self.path(p)?));
        }
        if let Some(p) = f.password {
            let v = self.text(p)?;
            if v.contains("{{") {
                return Err(self.at_field(
                    p,
                    "is a template, which faultline does not evaluate; use faultline_become_password_env or faultline_become_password_file",
                ));
            }
            b.password = Some(BecomePassword::Inline(v));
        }
        Ok(Some(b))
    }
}

/// Builds a node; what it does not set comes from `ssh`.
pub(super) fn build(ctx: &Ctx, f: NodeFields, ssh: &SshSettings) -> Result<Node, InventoryError> {
    let (line, column) = f.name_at;
    let name = f.name;
    check_name(&name).map_err(|why| ctx.at(line, column, why))?;
    let host = match f.host {
        Some(h) => ctx.host(h)?,
        None if f.host_is_name => {
            check_host(&name).map_err(|why| ctx.at(line, column, why))?;
            name.clone()
        }
        None => return Err(ctx.at(line, column, format!("node {name:?} has no `host`"))),
    };
    let port = match f.port {
        Some(p) => ctx.port(p)?,
        None => ssh.port,
    };
    let user = match f.user {
        Some(u) => ctx.user(u)?,
        None => ssh.user.clone(),
    };
    let private_key = f.key.map(|k| ctx.key(k)).transpose()?;
    let privilege = ctx.privilege(&f.privilege, ssh.privilege.as_ref())?;
    Ok(Node {
        name,
        host,
        port,
        user,
        private_key,
        privilege,
    })
}

impl Ctx<'_> {
    pub(super) fn host_key_policy(&self, f: Field) -> Result<HostKeyPolicy, InventoryError> {
        let v = self.text(f)?;
        match v.as_str() {
            "strict" => Ok(HostKeyPolicy::Strict),
            "accept-new" => Ok(HostKeyPolicy::AcceptNew),
            "no" => Ok(HostKeyPolicy::No),
            _ => Err(self.at_field(f, format!("expected strict, accept-new or no, got {:?}", v))),
        }
    }
}
