//! `faultline serve`: the store's runs and reports over HTTP, on 127.0.0.1 only.
//!
//! A deliberately tiny HTTP/1.0-style server (one request per connection, GET and HEAD):
//! it serves files read-only from inside the store and a listing of the runs. Bounded:
//! at most [`CONNECTIONS_MAX`] connections at once, request heads of at most
//! [`REQUEST_BYTES_MAX`] bytes, and a timeout on reading the request and on each write.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::html::{CSS, esc};

/// Enough that slow or idle clients (a slowloris, tabs left open) do not starve real ones;
/// beyond it a connection gets an immediate 503 instead of waiting in the accept queue.
pub const CONNECTIONS_MAX: usize = 512;
pub const REQUEST_BYTES_MAX: usize = 8 * 1024;
/// A browser sends its request head at once; a client still sending after this is dropped.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Whole-file transfers (a large history over a slow link) get longer.
const FILE_TIMEOUT: Duration = Duration::from_secs(600);
/// Run directories listed on the index page.
const LISTED_RUNS_MAX: usize = 500;

pub async fn serve(
    store: PathBuf,
    port: u16,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    let store = store
        .canonicalize()
        .with_context(|| format!("store {}", store.display()))?;
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    match ready {
        Some(tx) => {
            let _ = tx.send(addr);
        }
        None => outln!("serving {} on http://{addr}/", store.display()),
    }
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
    let store = Arc::new(store);
    loop {
        let (sock, _) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Full: say so without waiting (a non-blocking write; the socket is fresh).
            let _ = sock.try_write(b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 5\r\n\r\nbusy\n");
            continue;
        };
        let store = store.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = handle(sock, &store).await {
                tracing::debug!(error = %e, "connection");
            }
        });
    }
}

async fn read_head(sock: &mut TcpStream) -> anyhow::Result<Option<String>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
        if buf.len() > REQUEST_BYTES_MAX {
            anyhow::bail!("request head too large");
        }
    }
}

async fn respond(
    sock: &mut TcpStream,
    status: &str,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> anyhow::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n",
        body.len()
    );
    tokio::time::timeout(WRITE_TIMEOUT, async {
        sock.write_all(head.as_bytes()).await?;
        if !head_only {
            sock.write_all(body).await?;
        }
        sock.shutdown().await
    })
    .await
    .context("write timed out")??;
    Ok(())
}

async fn handle(mut sock: TcpStream, store: &Path) -> anyhow::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut sock)).await {
        Ok(Ok(Some(h))) => h,
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(_)) => {
            return respond(
                &mut sock,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
                false,
            )
            .await;
        }
        Err(_) => {
            return respond(
                &mut sock,
                "408 Request Timeout",
                "text/plain",
                b"timeout\n",
                false,
            )
            .await;
        }
    };
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(
            &mut sock,
            "405 Method Not Allowed",
            "text/plain",
            b"GET or HEAD only\n",
            false,
        )
        .await;
    }
    let path = percent_decode(target.split(['?', '#']).next().unwrap_or("/"));
    let Some(rel) = safe_relative(&path) else {
        return respond(
            &mut sock,
            "400 Bad Request",
            "text/plain",
            b"bad path\n",
            head_only,
        )
        .await;
    };
    if rel.as_os_str().is_empty() {
        let page = index_page(store);
        return respond(
            &mut sock,
            "200 OK",
            "text/html; charset=utf-8",
            page.as_bytes(),
            head_only,
        )
        .await;
    }
    let full = store.join(&rel);
    // Symlinks (`latest`) may point anywhere: only what resolves inside the store is served.
    let Ok(real) = full.canonicalize() else {
        return respond(
            &mut sock,
            "404 Not Found",
            "text/plain",
            b"not found\n",
            head_only,
        )
        .await;
    };
    if !real.starts_with(store) {
        return respond(
            &mut sock,
            "403 Forbidden",
            "text/plain",
            b"outside the store\n",
            head_only,
        )
        .await;
    }
    if real.is_dir() {
        let body = dir_listing(&real, &path);
        return respond(
            &mut sock,
            "200 OK",
            "text/html; charset=utf-8",
            body.as_bytes(),
            head_only,
        )
        .await;
    }
    // Histories can be large: streamed, not read into memory.
    let mut file = tokio::fs::File::open(&real)
        .await
        .with_context(|| format!("opening {}", real.display()))?;
    let len = file.metadata().await?.len();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n",
        content_type(&real)
    );
    tokio::time::timeout(FILE_TIMEOUT, async {
        sock.write_all(head.as_bytes()).await?;
        if !head_only {
            tokio::io::copy(&mut file, &mut sock).await?;
        }
        sock.shutdown().await
    })
    .await
    .context("sending the file timed out")??;
    Ok(())
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "xml" => "application/xml",
        _ => "text/plain; charset=utf-8",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `/a/b/` → `a/b`; `None` for anything with `..`, a root or a prefix after the first `/`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path.trim_start_matches('/'));
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn dir_listing(dir: &Path, url: &str) -> String {
    let base = if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut o = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><style>{CSS}</style></head><body><h1>{}</h1><ul>",
        esc(url)
    );
    for n in names.iter().take(10_000) {
        o.push_str(&format!(
            "<li><a href=\"{}{}\">{}</a></li>",
            esc(&base),
            esc(n),
            esc(n)
        ));
    }
    o.push_str("</ul></body></html>");
    o
}

/// Every run directory in the store, newest first, with its verdict.
fn index_page(store: &Path) -> String {
    let mut runs: Vec<(String, String, String)> = Vec::new();
    if let Ok(tests) = std::fs::read_dir(store) {
        for t in tests.filter_map(Result::ok) {
            let tp = t.path();
            if !tp.is_dir() || t.file_name() == "latest" || tp.is_symlink() {
                continue;
            }
            let Ok(rd) = std::fs::read_dir(&tp) else {
                continue;
            };
            for r in rd.filter_map(Result::ok) {
                let rp = r.path();
                if rp.is_symlink() || !rp.join(crate::store::HISTORY_FILE).is_file() {
                    continue;
                }
                let verdict = std::fs::read(rp.join(crate::store::RESULTS_FILE))
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|v| v.get("valid").cloned())
                    .map(|v| match v {
                        serde_json::Value::Bool(true) => "valid".to_string(),
                        serde_json::Value::Bool(false) => "INVALID".to_string(),
                        other => other.as_str().unwrap_or("unknown").to_string(),
                    })
                    .unwrap_or_else(|| "no results".into());
                runs.push((
                    r.file_name().to_string_lossy().into_owned(),
                    t.file_name().to_string_lossy().into_owned(),
                    verdict,
                ));
            }
        }
    }
    runs.sort_by(|a, b| b.0.cmp(&a.0));
    let mut o = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>faultline runs</title><style>{CSS}</style></head><body><h1>Runs</h1><table><tr><th>started</th><th>test</th><th>verdict</th><th></th></tr>"
    );
    for (stamp, test, verdict) in runs.iter().take(LISTED_RUNS_MAX) {
        let href = format!("/{}/{}/", esc(test), esc(stamp));
        o.push_str(&format!(
            "<tr><td><a href=\"{href}report.html\">{}</a></td><td>{}</td><td>{}</td><td><a href=\"{href}\">files</a></td></tr>",
            esc(stamp),
            esc(test),
            esc(verdict)
        ));
    }
    o.push_str("</table></body></html>");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape_the_store() {
        assert_eq!(
            safe_relative("/a/b/report.html"),
            Some(PathBuf::from("a/b/report.html"))
        );
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/a/../../etc/passwd"), None);
        assert_eq!(percent_decode("/a%2e%2e/b%20c"), "/a../b c");
        assert_eq!(safe_relative(&percent_decode("/%2e%2e/x")), None);
    }
}
