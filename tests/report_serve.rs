//! `faultline serve`: lists runs and serves report files from inside the store only.

mod report_support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use report_support::*;

fn get(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn serve_lists_runs_serves_reports_and_refuses_escapes() {
    let store = temp_store("report-serve");
    let dir = write_run(
        &store,
        "reg",
        "20261127T050000.000Z",
        "raft",
        &raft_outages(),
        false,
    );
    assert!(
        faultline()
            .arg("report")
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );

    let mut child = faultline()
        .args(["serve", "--port", "0", "--store"])
        .arg(&store)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line
        .trim()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("{line}"));

    let index = get(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    assert!(
        index.contains("20261127T050000.000Z") && index.contains("valid"),
        "{index}"
    );
    let report = get(
        port,
        "GET /reg/20261127T050000.000Z/report.html HTTP/1.1\r\n\r\n",
    );
    assert!(
        report.starts_with("HTTP/1.1 200")
            && report.contains("text/html")
            && report.contains("<svg")
    );
    assert!(get(port, "GET /../../etc/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(get(port, "GET /reg/%2e%2e/%2e%2e/x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(get(port, "GET /nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(port, "POST / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405"));
    let huge = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(20_000));
    let r = get(port, &huge);
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 431"), "{r}");
    // `latest` resolves inside the store and is served.
    assert!(get(port, "GET /latest/test.json HTTP/1.1\r\n\r\n").contains("\"seed\""));

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn slow_partial_requests_do_not_delay_a_real_one() {
    let store = temp_store("serve-slow");
    let mut child = faultline()
        .args(["serve", "--port", "0", "--store"])
        .arg(&store)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().trim_end_matches('/').parse().unwrap();
    // 100 clients that start a request and never finish it.
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t = std::time::Instant::now();
    let index = get(port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let waited = t.elapsed();
    assert!(index.starts_with("HTTP/1.1 200"), "{index}");
    // It used to wait about 7 s behind them (64 slots, 10 s read timeout).
    assert!(waited < Duration::from_secs(2), "a real request waited {waited:?}");
    drop(slow);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&store);
}
