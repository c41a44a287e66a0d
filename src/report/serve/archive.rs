//! A whole run directory as one `.tar.gz`, streamed as it is made: a run with a large
//! history or many node logs is never held in memory, and the download starts at once.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;

use super::{App, Refused, resolve, url_segment};

/// Chunks in flight between the archiver and the connection: the archiver waits on a slow
/// client instead of buffering the run.
const CHUNKS_IN_FLIGHT: usize = 8;

/// A `Write` that hands each chunk to the response body.
struct ChannelWriter(mpsc::Sender<std::io::Result<Bytes>>);

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client gone"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `dir` as `<prefix>/...` into a gzip'd tar. Symlinks are stored as links, never
/// followed, so nothing outside the run directory ends up in the archive.
pub fn write_tar_gz(dir: &Path, prefix: &str, out: impl Write) -> std::io::Result<()> {
    let gz = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.append_dir_all(prefix, dir)?;
    tar.into_inner()?.finish()?.flush()
}

/// `GET /-/archive/<test>/<stamp>.tar.gz`.
pub async fn archive(
    State(app): State<Arc<App>>,
    UrlPath((test, file)): UrlPath<(String, String)>,
) -> Response {
    let Some(stamp) = file.strip_suffix(".tar.gz") else {
        return Refused::NotFound.into_response();
    };
    let dir = match resolve(
        &app.store,
        &format!("/{}/{}", url_segment(&test), url_segment(stamp)),
    ) {
        Ok(d) if d.is_dir() && d.join(crate::store::HISTORY_FILE).is_file() => d,
        Ok(_) => return Refused::NotFound.into_response(),
        Err(r) => return r.into_response(),
    };
    let prefix = format!("{test}-{stamp}");
    let (tx, mut rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let err_tx = tx.clone();
    let p = prefix.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write_tar_gz(&dir, &p, ChannelWriter(tx)) {
            // Ends the body with an error: the client sees a broken download, not a
            // truncated archive that looks whole.
            let _ = err_tx.blocking_send(Err(e));
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let disposition = format!(
        "attachment; filename=\"{}.tar.gz\"",
        prefix.replace(['"', '\\', '/'], "_")
    );
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/gzip".to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}
