//! Verified uploads: streamed into a temporary file beside the target, checked by sha256 on
//! the host, renamed into place; skipped where the host already has the same bytes.

use std::path::Path;
use std::time::Duration;

use futures::future::join_all;
use sha2::{Digest, Sha256};

use super::error::tail;
use super::exec::Input;
use super::{Control, ControlError, quote};

/// Result of an upload to one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uploaded {
    /// The file was sent and verified.
    Copied { bytes: u64 },
    /// The host already had a file with the same sha256 (mode is still applied).
    AlreadyPresent,
}

impl Control {
    /// Copies `local` to `remote` on each of `nodes` in parallel, with file mode `mode`.
    pub async fn upload<S: AsRef<str>>(
        &self,
        nodes: &[S],
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Vec<(String, Result<Uploaded, ControlError>)> {
        let local_s = local.display().to_string();
        let hash = match hash_file(local).await {
            Ok(h) => h,
            Err(e) => {
                return nodes
                    .iter()
                    .map(|n| {
                        let err = ControlError::Upload {
                            node: n.as_ref().into(),
                            local: local_s.clone(),
                            remote: remote.into(),
                            detail: format!("cannot read local file: {e}"),
                        };
                        (n.as_ref().to_string(), Err(err))
                    })
                    .collect();
            }
        };
        let calls = nodes.iter().map(|n| {
            let n = n.as_ref().to_string();
            let (hash, local_s) = (hash.clone(), local_s.clone());
            async move {
                let r = self
                    .upload_one(
                        &n,
                        Source::File(local),
                        &local_s,
                        &hash.0,
                        hash.1,
                        remote,
                        mode,
                    )
                    .await;
                (n, r)
            }
        });
        join_all(calls).await
    }

    /// Writes `data` to `remote` on each of `nodes`, with the same verification and skip
    /// rule as [`Control::upload`].
    pub async fn put_bytes<S: AsRef<str>>(
        &self,
        nodes: &[S],
        data: &[u8],
        remote: &str,
        mode: u32,
    ) -> Vec<(String, Result<Uploaded, ControlError>)> {
        let hash = hex(&Sha256::digest(data));
        let calls = nodes.iter().map(|n| {
            let n = n.as_ref().to_string();
            let hash = hash.clone();
            async move {
                let r = self
                    .upload_one(
                        &n,
                        Source::Bytes(data),
                        "<memory>",
                        &hash,
                        data.len() as u64,
                        remote,
                        mode,
                    )
                    .await;
                (n, r)
            }
        });
        join_all(calls).await
    }
}

impl Control {
    #[allow(clippy::too_many_arguments)]
    async fn upload_one(
        &self,
        node: &str,
        src: Source<'_>,
        local_s: &str,
        hash: &str,
        bytes: u64,
        remote: &str,
        mode: u32,
    ) -> Result<Uploaded, ControlError> {
        let up_err = |detail: String| ControlError::Upload {
            node: node.into(),
            local: local_s.into(),
            remote: remote.into(),
            detail,
        };
        if remote.is_empty() || remote.ends_with('/') {
            return Err(up_err("remote path must name a file".into()));
        }
        let q = quote(remote);
        let probe = format!(
            "if [ -f {q} ] && [ \"$(sha256sum < {q} | cut -d' ' -f1)\" = {hash} ]; then chmod {mode:o} {q} && echo same; else echo differ; fi"
        );
        let short = Duration::from_secs(30).min(self.inner.upload_timeout);
        let out = self.run(node, &probe, short).await?.check()?;
        if out.stdout_str().trim() == "same" {
            return Ok(Uploaded::AlreadyPresent);
        }
        let script = format!(
            "set -e; t={q}.fl-up.$$; mkdir -p \"$(dirname {q})\"; trap 'rm -f \"$t\"' EXIT; cat > \"$t\"; \
             h=$(sha256sum < \"$t\" | cut -d' ' -f1); \
             if [ \"$h\" != {hash} ]; then echo \"sha256 mismatch on host: got $h\" >&2; exit 90; fi; \
             chmod {mode:o} \"$t\"; mv -f \"$t\" {q}; trap - EXIT"
        );
        let input = match src {
            Source::File(p) => Input::File(p),
            Source::Bytes(b) => Input::Bytes(b),
        };
        let out = self
            .exec(node, &script, Some(input), self.inner.upload_timeout)
            .await?;
        if !out.success() {
            return Err(up_err(format!(
                "{}: {}",
                out.status_str(),
                tail(&out.stderr_str(), 300)
            )));
        }
        Ok(Uploaded::Copied { bytes })
    }
}

enum Source<'a> {
    File(&'a Path),
    Bytes(&'a [u8]),
}

async fn hash_file(p: &Path) -> std::io::Result<(String, u64)> {
    let p = p.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&p)?;
        let mut h = Sha256::new();
        let n = std::io::copy(&mut f, &mut h)?;
        Ok((hex(&h.finalize()), n))
    })
    .await
    .map_err(std::io::Error::other)?
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
