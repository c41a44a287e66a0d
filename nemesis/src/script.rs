//! Shell building blocks shared by the fault families. Every value that reaches a script goes
//! through [`quote`], so an address or path can never inject a command.

/// Single-quotes `s` for POSIX sh.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// `alive PID`: true when the process exists and is neither a zombie nor dead. `kill -0`
/// alone would call an unreaped zombie alive, and hosts whose pid 1 does not reap are common
/// in containers.
pub const ALIVE_FN: &str = r#"alive() {
  [ -r "/proc/$1/stat" ] || return 1
  st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
  case "$st" in Z|X|x|'') return 1 ;; esac
  return 0
}
"#;

/// `node_pid`: prints the pid from the pidfile in `$pf`, or fails with a message naming it.
pub const NODE_PID_FN: &str = r#"node_pid() {
  [ -f "$pf" ] || { echo "no pidfile at $pf" >&2; return 1; }
  p=$(tr -d ' \n' < "$pf")
  case "$p" in ''|*[!0-9]*) echo "pidfile $pf does not hold a pid: '$p'" >&2; return 1 ;; esac
  echo "$p"
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_survives_a_real_shell() {
        for s in ["plain", "with space", "it's", "$(touch /x)`id`", "a'b'c\"d"] {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }
}
