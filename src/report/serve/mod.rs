//! `faultline serve`: the store as a read-only web application, the dashboard a team keeps
//! open after a night of runs. Pages (see [`pages`]) come from the SQLite run index and the
//! run directories; files inside the store are served by tower-http's `ServeDir` after
//! [`resolve`] has checked that the path, symlinks resolved, stays inside the store.
//!
//! Bounded like any server facing browsers left open: at most [`CONNECTIONS_MAX`]
//! connections at once (beyond, an immediate 503), request heads must arrive within
//! [`HEADER_READ_TIMEOUT`] and fit in [`REQUEST_HEAD_BYTES_MAX`], pages must be ready
//! within [`PAGE_TIMEOUT`], request bodies are refused (nothing here takes input beyond
//! the query string).

mod archive;
mod pages;
mod trends;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tower_http::compression::predicate::{NotForContentType, Predicate as _};
use tower_http::compression::{CompressionLayer, DefaultPredicate};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

/// Enough that slow or idle clients (a slowloris, tabs left open) do not starve real ones.
pub const CONNECTIONS_MAX: usize = 512;
/// hyper's smallest read buffer: heads beyond it get 431.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;
/// A browser sends its request head at once; a client still sending after this is dropped.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// A page (not a file transfer: a response's body streams on after this) must be ready
/// within this; a comparison of many long runs is the slowest.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(120);

/// The application's shared state.
pub struct App {
    /// Canonical: every served path is checked to start with it.
    pub store: PathBuf,
}

/// Where `serve` listens: loopback unless asked otherwise.
pub const DEFAULT_BIND: &str = "127.0.0.1";

/// Serves `store` on `addr` until the future is dropped. `ready` receives the bound
/// address (port 0 picks one); without it the address is printed.
pub async fn serve(
    store: PathBuf,
    addr: SocketAddr,
    ready: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> anyhow::Result<()> {
    let store = store
        .canonicalize()
        .with_context(|| format!("store {}", store.display()))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let addr = listener.local_addr()?;
    let shown = store.display().to_string();
    let app = router(Arc::new(App { store }));
    match ready {
        Some(tx) => {
            let _ = tx.send(addr);
        }
        None => {
            use std::io::Write as _;
            outln!("serving {shown} on http://{addr}/");
            let _ = std::io::stdout().flush();
        }
    }
    let slots = Arc::new(Semaphore::new(CONNECTIONS_MAX));
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
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(REQUEST_HEAD_BYTES_MAX)
                .serve_connection(TokioIo::new(sock), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection");
            }
        });
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(pages::runs))
        .route("/-/run/{test}/{stamp}", get(pages::run))
        .route("/-/live/{test}/{stamp}", get(pages::live))
        .route("/-/archive/{test}/{file}", get(archive::archive))
        .route("/-/compare", get(pages::compare))
        .route("/-/trends", get(trends::trends))
        .fallback(store_file)
        // An archive is gzip already.
        .layer(CompressionLayer::new().compress_when(
            DefaultPredicate::new().and(NotForContentType::const_new("application/gzip")),
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            PAGE_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(0))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(app)
}

/// Why a path in the store cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// `..`, a root or a prefix: 400.
    BadPath,
    /// Nothing there: 404.
    NotFound,
    /// Resolves (through a symlink) outside the store: 403.
    Outside,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::BadPath => (StatusCode::BAD_REQUEST, "bad path\n"),
            Refused::NotFound => (StatusCode::NOT_FOUND, "not found\n"),
            Refused::Outside => (StatusCode::FORBIDDEN, "outside the store\n"),
        }
        .into_response()
    }
}

/// A URL path (percent-encoded, as sent) to the real path inside `store` it names.
pub fn resolve(store: &Path, url_path: &str) -> Result<PathBuf, Refused> {
    let decoded = percent_encoding::percent_decode_str(url_path).decode_utf8_lossy();
    let rel = safe_relative(&decoded).ok_or(Refused::BadPath)?;
    let real = store
        .join(&rel)
        .canonicalize()
        .map_err(|_| Refused::NotFound)?;
    // Symlinks (`latest`) may point anywhere: only what resolves inside the store is served.
    if !real.starts_with(store) {
        return Err(Refused::Outside);
    }
    Ok(real)
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

/// Characters left as they are in the paths this server writes into links and rewrites.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The same within one segment: `/` too is encoded.
const SEGMENT_SET: &percent_encoding::AsciiSet = &PATH_SET.add(b'/');

/// A store-relative path as a URL path.
pub fn url_path(rel: &Path) -> String {
    format!(
        "/{}",
        percent_encoding::utf8_percent_encode(&rel.to_string_lossy(), PATH_SET)
    )
}

/// A URL path segment (a test name, a stamp).
pub fn url_segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT_SET).to_string()
}

/// Everything that is not a page: a file or directory inside the store.
async fn store_file(State(app): State<Arc<App>>, req: Request) -> Response {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "GET or HEAD only\n",
        )
            .into_response();
    }
    let real = match resolve(&app.store, req.uri().path()) {
        Ok(p) => p,
        Err(r) => return r.into_response(),
    };
    let rel = real
        .strip_prefix(&app.store)
        .unwrap_or(Path::new(""))
        .to_path_buf();
    if real.is_dir() {
        let app = app.clone();
        return match tokio::task::spawn_blocking(move || pages::dir_listing(&app.store, &rel)).await
        {
            Ok(page) => page.into_response(),
            Err(e) => pages::internal(anyhow::anyhow!("listing: {e}")),
        };
    }
    // ServeDir serves the resolved path (no symlink left to follow elsewhere): ranges,
    // content types, conditional requests.
    let (mut parts, body) = req.into_parts();
    let Ok(uri) = url_path(&rel).parse::<Uri>() else {
        return Refused::BadPath.into_response();
    };
    parts.uri = uri;
    let files = ServeDir::new(&app.store).append_index_html_on_directories(false);
    match files.oneshot(Request::from_parts(parts, body)).await {
        Ok(res) => res.map(Body::new),
        Err(e) => pages::internal(anyhow::anyhow!("serving a file: {e}")),
    }
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
        let store = std::env::temp_dir().canonicalize().unwrap();
        assert_eq!(resolve(&store, "/%2e%2e/x"), Err(Refused::BadPath));
        assert_eq!(resolve(&store, "/a%2F..%2F..%2Fetc"), Err(Refused::BadPath));
        assert_eq!(
            resolve(&store, "//etc/passwd"),
            Err(Refused::NotFound),
            "an absolute path is taken inside the store"
        );
    }

    #[test]
    fn links_round_trip_through_percent_encoding() {
        let rel = Path::new("my test/2026 x#?%");
        let url = url_path(rel);
        assert_eq!(url, "/my%20test/2026%20x%23%3F%25");
        assert_eq!(
            percent_encoding::percent_decode_str(&url).decode_utf8_lossy(),
            "/my test/2026 x#?%"
        );
    }
}
