//! Local clusters standing in for cloud VMs: the SSH login is an unprivileged user with
//! sudo (`cluster up --login-user`), and every host step goes through sudo. Also the node
//! image: statically linked, so it runs on any x86_64 Linux.
//!
//! Needs root, the cluster tools and sudo; without them each test says why and returns.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root".into());
    }
    for tool in ["ip", "sshd", "ssh", "unshare", "iptables", "sudo", "useradd"] {
        let found = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|d| Path::new(d).join(tool).exists());
        if !found {
            return Some(format!("{tool} not installed"));
        }
    }
    None
}

macro_rules! require_env {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: VM stand-in tests need root, cluster tools and sudo: {why}");
            return;
        }
    };
}

fn fl(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env_remove("FL_VM_PW");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run faultline")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Cluster(String, String);

impl Cluster {
    fn up(name: &str, user: &str, extra: &[&str], env: &[(&str, &str)]) -> Cluster {
        let _ = fl(&["cluster", "down", "--name", name], &[]);
        let mut args = vec!["cluster", "up", "--nodes", "3", "--name", name, "--login-user", user];
        args.extend_from_slice(extra);
        let out = fl(&args, env);
        assert!(out.status.success(), "cluster up: {}", text(&out));
        Cluster(name.into(), user.into())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let out = fl(&["cluster", "down", "--name", &self.0], &[]);
        assert!(out.status.success(), "cluster down: {}", text(&out));
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
        assert!(
            !passwd.lines().any(|l| l.starts_with(&format!("{}:", self.1))),
            "login user {} left behind",
            self.1
        );
        assert!(!Path::new(&format!("/etc/sudoers.d/faultline-{}", self.0)).exists());
    }
}

#[test]
fn a_test_through_a_sudo_login_ends_valid_and_heal_works() {
    require_env!();
    let c = Cluster::up("vmsudo", "flvmsudo", &[], &[]);
    let who = fl(&["exec", "-i", &c.0, "--", "id", "-un"], &[]);
    assert!(text(&who).contains("n1: flvmsudo"), "{}", text(&who));
    let root = fl(&["exec", "-i", &c.0, "--sudo", "--", "id", "-un"], &[]);
    assert!(root.status.success() && text(&root).contains("n1: root"), "{}", text(&root));
    let store = std::env::temp_dir().join(format!("fl-vm-store-{}", std::process::id()));
    let out = Command::new(BIN)
        .args(["test", "-i", &c.0, "--nemesis", "kill,pause,partition", "--time-limit", "8", "--rate", "50", "--store"])
        .arg(&store)
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let heal = fl(&["nemesis", "heal", "-i", &c.0], &[]);
    assert!(heal.status.success(), "{}", text(&heal));
    let prep = fl(&["hosts", "prepare", "-i", &c.0], &[]);
    assert!(prep.status.success(), "{}", text(&prep));
    assert!(text(&prep).contains("iptables"), "{}", text(&prep));
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn password_sudo_works_from_the_environment_and_fails_clearly_without_it() {
    require_env!();
    let pw = "s3cr3t pass";
    let c = Cluster::up("vmpw", "flvmpw", &["--sudo-password-env", "FL_VM_PW"], &[("FL_VM_PW", pw)]);
    let ok = fl(&["exec", "-i", &c.0, "--sudo", "--", "id", "-un"], &[("FL_VM_PW", pw)]);
    assert!(ok.status.success() && text(&ok).contains("n2: root"), "{}", text(&ok));
    assert!(!text(&ok).contains(pw));
    let missing = fl(&["exec", "-i", &c.0, "--sudo", "--", "id", "-un"], &[]);
    assert!(!missing.status.success());
    assert!(text(&missing).contains("FL_VM_PW is not set"), "{}", text(&missing));
    let wrong = fl(&["exec", "-i", &c.0, "--sudo", "--", "id", "-un"], &[("FL_VM_PW", "nope")]);
    assert!(text(&wrong).contains("refused the password"), "{}", text(&wrong));
}

#[test]
fn a_login_without_sudo_rights_fails_preflight_clearly() {
    require_env!();
    let c = Cluster::up("vmnos", "flvmnos", &["--login-user-without-sudo"], &[]);
    let out = Command::new(BIN)
        .args(["test", "-i", &c.0, "--time-limit", "2", "--store"])
        .arg(std::env::temp_dir().join("fl-vm-nos"))
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("sudo as login user \"flvmnos\" failed") && t.contains("not allowed to use sudo"), "{t}");
}

#[test]
fn the_node_image_has_no_dynamic_libc() {
    let img = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/x86_64-unknown-linux-gnu/debug/faultline-node");
    if !img.is_file() {
        eprintln!("SKIPPED: no node image; scripts/build-node-image.sh builds it");
        return;
    }
    let out = Command::new("readelf").arg("-d").arg(&img).output();
    let Ok(out) = out else {
        eprintln!("SKIPPED: readelf (binutils) not installed");
        return;
    };
    let d = String::from_utf8_lossy(&out.stdout);
    assert!(!d.contains("NEEDED"), "dynamic dependencies: {d}");
    let l = Command::new("readelf").arg("-l").arg(&img).output().unwrap();
    assert!(!String::from_utf8_lossy(&l.stdout).contains("Requesting program interpreter"));
    assert!(std::fs::metadata(&img).unwrap().len() <= 25 << 20, "image above 25 MB");
}
