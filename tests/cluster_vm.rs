//! Local clusters standing in for cloud VMs: the SSH login is an unprivileged user with
//! sudo (`cluster up --login-user`), and every host step goes through sudo. Also the node
//! image: statically linked, so it runs on any x86_64 Linux.
//!
//! Needs root, the cluster tools and sudo; without them each test says why and returns.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_faultline");

mod common;

fn skip_reason() -> Option<String> {
    common::missing_root_or_tools(&["ip", "sshd", "ssh", "unshare", "iptables", "sudo", "useradd"])
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
fn a_refused_sudo_password_fails_preflight_before_the_heal_of_an_earlier_run() {
    require_env!();
    let c = Cluster::up("vmbadpw", "flvmbadpw", &["--sudo-password-env", "FL_VM_PW"], &[("FL_VM_PW", "pw 4 badpw")]);
    // Every sudo is refused, the earlier run's heal included (the connection itself needs none).
    let out = Command::new(BIN)
        .args(["test", "-i", &c.0, "--nemesis", "partition", "--time-limit", "2", "--store"])
        .arg(std::env::temp_dir().join("fl-vm-badpw"))
        .env("FL_VM_PW", "not the password")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let t = text(&out);
    // The run's error is pre-flight's, and the heal of an earlier run never started (the
    // teardown after the abort may still try its own sudo).
    assert!(t.contains("harness error: pre-flight failed"), "{t}");
    for n in ["n1", "n2", "n3"] {
        assert!(t.contains(&format!("{n}: sudo as login user \"flvmbadpw\" failed")), "{n}: {t}");
    }
    assert!(t.contains("refused the password"), "{t}");
    assert!(!t.contains("faultline: heal-previous") && !t.contains("healing leftovers"), "{t}");
}

/// The nemesis drill this test SIGKILLs, killed also when the test fails first.
struct Controller(std::process::Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(what: &str, limit: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn a_partition_heals_itself_as_root_after_the_controller_is_sigkilled_through_a_sudo_login() {
    require_env!();
    let c = Cluster::up("vmwd", "flvmwd", &[], &[]);
    let nodes = ["n1", "n2", "n3"];
    let dir = std::env::var_os("FAULTLINE_CLUSTERS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/var/lib/faultline-clusters".into())
        .join(&c.0);
    // Looked at from this machine, not through the tool: the node's own network namespace
    // and its /var/lib/faultline (bound from the cluster directory).
    let rules = |n: &str| {
        let o = Command::new("ip")
            .args(["netns", "exec", &format!("fl-{}-{n}", c.0), "iptables", "-w", "-S"])
            .output()
            .unwrap();
        assert!(o.status.success(), "iptables in {n}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("FAULTLINE"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let journal = |n: &str| -> Vec<String> {
        match std::fs::read_dir(dir.join("nodes").join(n).join("root/nemesis/journal")) {
            Ok(d) => d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => panic!("{n}: journal: {e}"),
        }
    };
    assert!(nodes.iter().all(|&n| rules(n).is_empty()), "rules before the drill");

    let mut controller = Controller(
        Command::new(BIN)
            .args(["nemesis", "-i", &c.0, "partition", "--shape", "majorities-ring", "--for", "5s"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the partition's rules", std::time::Duration::from_secs(30), || {
        nodes.iter().any(|&n| !rules(n).is_empty())
    });
    // Applied on the hosts in parallel: let the last of them journal its part.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let applied = std::time::Instant::now();
    // Each watchdog runs as root: iptables in the undo needs it.
    let owners = fl(
        &[
            "exec", "-i", &c.0, "--sudo", "--",
            r#"for j in /var/lib/faultline/nemesis/journal/*.json; do wd=$(sed -n 's/.*"watchdog_pid":\([0-9]*\).*/\1/p' "$j"); echo "wd=$(stat -c %U /proc/$wd)"; done"#,
        ],
        &[],
    );
    let wds: Vec<String> = text(&owners).lines().filter(|l| l.contains("wd=")).map(str::to_string).collect();
    assert!(!wds.is_empty() && wds.iter().all(|l| l.ends_with("wd=root")), "{}", text(&owners));
    controller.0.kill().unwrap(); // SIGKILL, by pid: nothing of the controller heals.
    controller.0.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(nodes.iter().any(|&n| !rules(n).is_empty()), "healed before the expiry");
    // --for 5s gives each host an expiry of 10 s.
    wait_for("the hosts to heal the partition", std::time::Duration::from_secs(25), || {
        nodes.iter().all(|&n| rules(n).is_empty())
    });
    assert!(applied.elapsed() >= std::time::Duration::from_secs(5));
    for n in nodes {
        wait_for(&format!("{n}'s journal to empty"), std::time::Duration::from_secs(5), || {
            journal(n).is_empty()
        });
    }
    let heal = fl(&["nemesis", "heal", "-i", &c.0], &[]);
    assert!(heal.status.success() && !text(&heal).contains("healed partition-"), "{}", text(&heal));
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
    // Where the controller looks for it: beside its own target directory.
    let bin = Path::new(BIN);
    let profile = bin.parent().and_then(Path::file_name).unwrap();
    let img = bin
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("x86_64-unknown-linux-gnu")
        .join(profile)
        .join("faultline-node");
    // scripts/test.sh builds the image and sets this, so there the test cannot skip.
    let required = std::env::var_os("FAULTLINE_REQUIRE_NODE_IMAGE").is_some();
    if !img.is_file() {
        assert!(!required, "no node image at {}", img.display());
        eprintln!("SKIPPED: no node image; scripts/build-node-image.sh builds it");
        return;
    }
    let out = Command::new("readelf").arg("-d").arg(&img).output();
    let Ok(out) = out else {
        assert!(!required, "readelf (binutils) not installed");
        eprintln!("SKIPPED: readelf (binutils) not installed");
        return;
    };
    let d = String::from_utf8_lossy(&out.stdout);
    assert!(!d.contains("NEEDED"), "dynamic dependencies: {d}");
    let l = Command::new("readelf").arg("-l").arg(&img).output().unwrap();
    assert!(!String::from_utf8_lossy(&l.stdout).contains("Requesting program interpreter"));
    assert!(std::fs::metadata(&img).unwrap().len() <= 25 << 20, "image above 25 MB");
}
