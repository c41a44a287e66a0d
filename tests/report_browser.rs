//! `faultline serve` in a real browser: headless Debian chromium driven over WebDriver
//! (chromedriver on 127.0.0.1), against a store the test writes. Skips, saying so, when
//! chromium or chromedriver is not installed. Screenshots of each page land in
//! `<target>/tmp/report_browser/`.

mod report_support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use report_support::*;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A child process killed when the test ends, however it ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn serve_reaped(store: &Path) -> (Reaped, u16) {
    let (child, port) = serve(store);
    (Reaped(child), port)
}

fn shots_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report_browser");
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    let p = shots_dir().join(format!("{name}.png"));
    std::fs::write(&p, png).unwrap();
    println!("screenshot: {}", p.display());
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.unwrap().len()
}

async fn text(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until `css` matches `n` elements (pages load after a click).
async fn wait_count(c: &Client, css: &str, n: usize) {
    let t = Instant::now();
    loop {
        let got = count(c, css).await;
        if got == n {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "{css}: {got} elements, expected {n}; page: {}",
            c.current_url().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A run still going: a history, a log naming its phase, no results.
fn write_running(store: &Path) -> PathBuf {
    let dir = store.join("soak").join("20261201T010000.000Z");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("test.json"),
        json!({"name": "soak", "db": "raft", "workload": "register", "seed": 7}).to_string(),
    )
    .unwrap();
    let mut h = String::new();
    for i in 0..10u64 {
        h.push_str(&format!(
            "{}\n{}\n",
            json!({"index": 2 * i, "time": i * 1000, "process": 0, "type": "invoke", "f": "write", "key": "k", "value": i}),
            json!({"index": 2 * i + 1, "time": i * 1000 + 5, "process": 0, "type": "ok", "f": "write", "key": "k", "value": i})
        ));
    }
    std::fs::write(dir.join("history.jsonl"), h).unwrap();
    std::fs::write(
        dir.join("faultline.log"),
        "2026-12-01T01:00:00Z  INFO faultline::runner: begin phase=\"clients\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("20261201T010000.000Z", store.join("soak").join("latest")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_filter_run_report_compare_trends_and_live_in_chromium() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        println!(
            "SKIPPED: {CHROMIUM} or {CHROMEDRIVER} is not installed (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let store = temp_store("browser");
    let runs = [
        ("reg", "20261127T050000.000Z", "raft", false),
        ("reg", "20261128T050000.000Z", "paxos", false),
        ("reg", "20261129T050000.000Z", "raft", true),
    ];
    for (name, stamp, db, invalid) in runs {
        let outages = if db == "raft" {
            raft_outages()
        } else {
            paxos_outages()
        };
        let dir = write_run(&store, name, stamp, db, &outages, invalid);
        // An invalid run exits 1; both write the report and the index row.
        let st = faultline().arg("report").arg(&dir).status().unwrap();
        assert!(st.code() == Some(0) || st.code() == Some(1), "{st}");
    }
    let running = write_running(&store);
    let (_server, port) = serve_reaped(&store);
    let base = format!("http://127.0.0.1:{port}");

    let wd_port = free_port();
    let profile = store.join("chromium-profile");
    let _driver = Reaped(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={wd_port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let wd = format!("http://127.0.0.1:{wd_port}");
    let t = Instant::now();
    let c = loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&wd)
            .await
        {
            Ok(c) => break c,
            Err(e) if t.elapsed() < Duration::from_secs(30) => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("no WebDriver session on {wd}: {e}"),
        }
    };

    // Runs: every indexed run, newest first, and the one in progress.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_count(&c, "#runs tr.run", 3).await;
    assert_eq!(text(&c, "#total").await, "3 runs");
    let first = c
        .find(Locator::Css("#runs tr.run"))
        .await
        .unwrap()
        .attr("data-run")
        .await
        .unwrap();
    assert_eq!(first.as_deref(), Some("reg/20261129T050000.000Z"));
    assert!(text(&c, "#unfinished").await.contains("clients"));
    shot(&c, "runs").await;

    // Filter: paxos only.
    c.find(Locator::Css("#filters select[name=db]"))
        .await
        .unwrap()
        .select_by_value("paxos")
        .await
        .unwrap();
    c.find(Locator::Css("#apply"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_count(&c, "#runs tr.run", 1).await;
    assert!(text(&c, "#runs tr.run").await.contains("paxos"));
    assert!(c.current_url().await.unwrap().as_str().contains("db=paxos"));
    shot(&c, "runs-filtered").await;

    // Invalid only, by verdict.
    c.goto(&format!("{base}/?verdict=invalid")).await.unwrap();
    wait_count(&c, "#runs tr.run", 1).await;
    assert!(text(&c, "#runs tr.run").await.contains("raft"));

    // A run and its report.
    c.find(Locator::Css("#runs tr.run a.open"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#verdict"))
        .await
        .unwrap();
    assert!(text(&c, "#verdict").await.contains("invalid"));
    assert!(count(&c, "#files tr").await > 4, "its files are listed");
    assert!(count(&c, "#download").await == 1 && count(&c, "#report-frame").await == 1);
    shot(&c, "run").await;
    c.find(Locator::Css("#report"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Css(".banner")).await.unwrap();
    assert!(
        c.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/report.html")
    );
    assert!(count(&c, "svg").await >= 3, "the report's plots are drawn");
    assert!(text(&c, ".banner").await.contains("INVALID"));
    shot(&c, "report").await;

    // Compare: tick two runs.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_count(&c, "#runs tr.run", 3).await;
    for id in ["reg/20261127T050000.000Z", "reg/20261128T050000.000Z"] {
        c.find(Locator::Css(&format!(
            "input[type=checkbox][value=\"{id}\"]"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    }
    c.find(Locator::Css("#compare-selected"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("#comparison"))
        .await
        .unwrap();
    let heads: Vec<String> = {
        let mut v = Vec::new();
        for th in c
            .find_all(Locator::Css("#comparison tr:first-child th"))
            .await
            .unwrap()
        {
            v.push(th.text().await.unwrap());
        }
        v
    };
    // In the runs table's order: newest first.
    assert_eq!(
        heads,
        vec![
            "",
            "paxos 20261128T050000.000Z",
            "raft 20261127T050000.000Z"
        ]
    );
    assert_eq!(
        count(&c, "section.compared-run svg").await,
        2,
        "a throughput plot each"
    );
    shot(&c, "compare").await;

    // Trends: every db, three figures and a verdict strip each.
    c.find(Locator::LinkText("Trends"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Css("section.db-trend"))
        .await
        .unwrap();
    assert_eq!(count(&c, "section.db-trend").await, 2);
    assert_eq!(count(&c, "svg.trend").await, 6);
    assert_eq!(count(&c, "section[data-db=raft] svg.strip rect").await, 2);
    assert_eq!(
        count(&c, "section[data-db=raft] svg.strip rect.invalid").await,
        1
    );
    assert_eq!(
        count(&c, "section[data-db=paxos] svg.trend circle").await,
        3
    );
    shot(&c, "trends").await;

    // The run in progress: its counts follow the growing history.
    c.goto(&format!("{base}/-/run/soak/20261201T010000.000Z"))
        .await
        .unwrap();
    c.wait().for_element(Locator::Css("#live")).await.unwrap();
    assert_eq!(text(&c, "#live-phase").await, "clients");
    assert_eq!(text(&c, "#live-ok").await, "10");
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(running.join("history.jsonl"))
            .unwrap();
        for i in 10..15u64 {
            writeln!(f, "{}", json!({"index": 2 * i, "time": i * 1000, "process": 0, "type": "invoke", "f": "write", "key": "k", "value": i})).unwrap();
            writeln!(f, "{}", json!({"index": 2 * i + 1, "time": i * 1000 + 5, "process": 0, "type": "ok", "f": "write", "key": "k", "value": i})).unwrap();
        }
    }
    let t = Instant::now();
    while text(&c, "#live-ok").await != "15" {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the page did not refresh its counts"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    shot(&c, "live").await;

    c.close().await.unwrap();
    let _ = std::fs::remove_dir_all(&store);
}
