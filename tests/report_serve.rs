//! `faultline serve`: lists runs and serves report files from inside the store only.

mod report_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use report_support::*;

/// Sends `raw` (a request head) and reads the whole answer. HTTP/1.1 keeps connections
/// open, so the request asks for the connection to be closed after it.
fn get(port: u16, raw: &str) -> String {
    String::from_utf8_lossy(&get_bytes(port, raw)).into_owned()
}

fn get_bytes(port: u16, raw: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let raw = match raw.split_once("\r\n") {
        Some((line, rest)) => format!("{line}\r\nConnection: close\r\n{rest}"),
        None => raw.to_string(),
    };
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// The body of a response (after the head), with chunked transfer decoded.
fn body_of(resp: &[u8]) -> Vec<u8> {
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let mut body = &resp[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return body.to_vec();
    }
    let mut out = Vec::new();
    loop {
        let nl = body.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(String::from_utf8_lossy(&body[..nl]).trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&body[nl + 2..nl + 2 + n]);
        body = &body[nl + 2 + n + 2..];
    }
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

    let (mut child, port) = serve(&store);

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
    let (mut child, port) = serve(&store);
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
    assert!(
        waited < Duration::from_secs(2),
        "a real request waited {waited:?}"
    );
    drop(slow);
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&store);
}

#[test]
fn run_page_archive_compare_and_trends_are_served() {
    let store = temp_store("serve-pages");
    let a = write_run(
        &store,
        "reg",
        "20261127T050000.000Z",
        "raft",
        &raft_outages(),
        false,
    );
    let b = write_run(
        &store,
        "reg",
        "20261128T050000.000Z",
        "paxos",
        &paxos_outages(),
        false,
    );
    for d in [&a, &b] {
        assert!(faultline().arg("report").arg(d).status().unwrap().success());
    }
    // A link out of the store is not followed.
    std::os::unix::fs::symlink("/etc", store.join("reg").join("outside")).unwrap();
    let (mut child, port) = serve(&store);

    let run = get(port, "GET /-/run/reg/20261127T050000.000Z HTTP/1.1\r\n\r\n");
    assert!(run.starts_with("HTTP/1.1 200"), "{run}");
    for want in [
        "history.jsonl",
        "nodes/n1/node.log",
        "/-/archive/reg/20261127T050000.000Z.tar.gz",
        "report.html",
    ] {
        assert!(run.contains(want), "run page lacks {want}: {run}");
    }

    let tgz = get_bytes(
        port,
        "GET /-/archive/reg/20261127T050000.000Z.tar.gz HTTP/1.1\r\n\r\n",
    );
    assert!(String::from_utf8_lossy(&tgz[..60]).starts_with("HTTP/1.1 200"));
    let mut names = Vec::new();
    let gz = body_of(&tgz);
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().display().to_string());
    }
    assert!(
        names
            .iter()
            .any(|n| n == "reg-20261127T050000.000Z/history.jsonl")
            && names.iter().any(|n| n.ends_with("nodes/n1/node.log")),
        "{names:?}"
    );

    let cmp = get(
        port,
        "GET /-/compare?run=reg%2F20261127T050000.000Z&run=reg%2F20261128T050000.000Z HTTP/1.1\r\n\r\n",
    );
    assert!(cmp.starts_with("HTTP/1.1 200"), "{cmp}");
    assert!(
        cmp.contains("raft 20261127T050000.000Z") && cmp.contains("paxos 20261128T050000.000Z")
    );
    assert!(cmp.contains("partition: unavailable median") && cmp.contains("<svg"));
    assert!(
        get(
            port,
            "GET /-/compare?run=reg%2F20261127T050000.000Z HTTP/1.1\r\n\r\n"
        )
        .starts_with("HTTP/1.1 400")
    );

    let trends = get(port, "GET /-/trends HTTP/1.1\r\n\r\n");
    assert!(trends.starts_with("HTTP/1.1 200"), "{trends}");
    assert_eq!(
        trends.matches("<svg class=\"trend\"").count(),
        6,
        "3 metrics × 2 dbs"
    );
    assert_eq!(trends.matches("<svg class=\"strip\"").count(), 2);
    assert!(get(port, "GET /-/trends?metric=nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));

    assert!(get(port, "GET /reg/outside/passwd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 403"));
    assert!(get(port, "GET /%2Fetc%2Fpasswd HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404"));
    assert!(get(port, "GET /-/run/reg/..%2F..%2Fetc HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));
    assert!(get(port, "GET /?sort=nope HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&store);
}

/// 10,000 runs inserted straight into the index (as `index::record` lays it out): a
/// filtered, sorted, paginated page returns exactly the rows it should.
#[test]
fn ten_thousand_runs_filter_and_paginate() {
    let store = temp_store("serve-10k");
    // `faultline report` of one real run creates the index and its schema.
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
    let mut conn = rusqlite::Connection::open(store.join("runs.sqlite")).unwrap();
    let tx = conn.transaction().unwrap();
    for i in 0..10_000u32 {
        let db = if i % 2 == 0 { "raft" } else { "paxos" };
        let verdict = if i % 7 == 0 { "invalid" } else { "valid" };
        let stamp = format!(
            "2026{:02}{:02}T{:06}.000Z",
            1 + i / 1000 % 12,
            1 + i % 28,
            i
        );
        tx.execute(
            "INSERT INTO runs (run_dir, name, started, db, workload, nemesis, verdict, ok_per_s)
             VALUES (?1, ?2, ?3, ?4, 'register', 'partition,kill', ?5, ?6)",
            rusqlite::params![
                format!("/s/nightly-{}/{stamp}", i % 10),
                format!("nightly-{}", i % 10),
                stamp,
                db,
                verdict,
                i as f64
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    let (mut child, port) = serve(&store);

    // nightly-3 (i % 10 == 3: odd, so paxos), invalid (i % 7 == 0): i ≡ 3 mod 10, i ≡ 0 mod 7.
    let want: Vec<u32> = (0..10_000u32)
        .filter(|i| i % 10 == 3 && i % 7 == 0)
        .collect();
    let t = std::time::Instant::now();
    let page = get(
        port,
        "GET /?name=nightly-3&db=paxos&verdict=invalid&sort=ok_per_s&order=asc&page=2 HTTP/1.1\r\n\r\n",
    );
    println!(
        "filtered page 2 of {} matching runs in {:?}",
        want.len(),
        t.elapsed()
    );
    assert!(
        page.starts_with("HTTP/1.1 200"),
        "{}",
        &page[..page.len().min(500)]
    );
    assert!(
        page.contains(&format!("{} runs", want.len())),
        "the total is shown"
    );
    let rows: Vec<&str> = page.split("<tr class=\"run\"").skip(1).collect();
    let expected = &want[50..want.len().min(100)];
    assert_eq!(rows.len(), expected.len());
    for (row, i) in rows.iter().zip(expected) {
        assert!(
            row.contains(&format!("T{i:06}.000Z")),
            "row for run {i} out of order: {row}"
        );
        assert!(row.contains("paxos") && row.contains("invalid"));
    }

    // A date range: only January (i / 1000 % 12 == 0).
    let jan = get(
        port,
        "GET /?since=2026-01-01&until=2026-01-31 HTTP/1.1\r\n\r\n",
    );
    let n_jan = (0..10_000u32).filter(|i| i / 1000 % 12 == 0).count();
    assert!(
        jan.contains(&format!("{n_jan} runs")),
        "January has {n_jan}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_dir_all(&store);
}
