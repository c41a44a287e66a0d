//! The history recorder: every event is stamped and appended to `history.jsonl` while the
//! run goes, by one writer task behind a bounded channel.
//!
//! Time and index are assigned under one lock, at the moment the event is handed to the
//! channel, so index order and time order agree. An invocation is recorded before its
//! request is sent and a completion after its response arrived: stamps can only widen an
//! operation, never make two concurrent operations look ordered.
//!
//! The writer flushes at least every [`FLUSH_INTERVAL`], so a controller crash loses at
//! most the last second of events.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_checkers::{Event, EventType, Process};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// Events queued for the writer before recorders wait (backpressure, not loss).
pub const QUEUE_EVENTS_MAX: usize = 8192;

/// Counters the progress line and the summary read.
#[derive(Default, Debug)]
pub struct Counts {
    pub invoke: AtomicU64,
    pub ok: AtomicU64,
    pub fail: AtomicU64,
    pub info: AtomicU64,
    pub nemesis: AtomicU64,
}

/// A cheap handle for recording events; clones share the writer.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

struct Inner {
    /// History time zero; moved once, before the first event, by [`Recorder::reset_epoch`].
    start: std::sync::RwLock<Instant>,
    /// The next index and the sender, under one lock (see the module doc).
    tx: Mutex<(u64, Option<mpsc::Sender<Event>>)>,
    counts: Counts,
}

/// The writer task's handle: `finish` closes the channel and waits for the last flush.
pub struct Writer {
    task: JoinHandle<anyhow::Result<u64>>,
}

impl Recorder {
    /// Opens `path` for appending and starts the writer task. `start` is the instant
    /// history time counts from.
    pub async fn open(path: &Path, start: Instant) -> anyhow::Result<(Recorder, Writer)> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .with_context(|| format!("cannot open {}", path.display()))?;
        let (tx, rx) = mpsc::channel(QUEUE_EVENTS_MAX);
        let display = path.display().to_string();
        let task = tokio::spawn(write_loop(file, rx, display));
        let rec = Recorder {
            inner: Arc::new(Inner {
                start: std::sync::RwLock::new(start),
                tx: Mutex::new((0, Some(tx))),
                counts: Counts::default(),
            }),
        };
        Ok((rec, Writer { task }))
    }

    /// Nanoseconds since the run began.
    pub fn now_ns(&self) -> u64 {
        let start = *self.inner.start.read().unwrap_or_else(|e| e.into_inner());
        start.elapsed().as_nanos() as u64
    }

    /// Makes now history time zero, so the history starts with the test rather than with
    /// the deploy. Only before any event was recorded (else times would go backwards).
    pub async fn reset_epoch(&self) -> bool {
        let guard = self.inner.tx.lock().await;
        if guard.0 > 0 {
            return false;
        }
        *self.inner.start.write().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        true
    }

    pub fn counts(&self) -> &Counts {
        &self.inner.counts
    }

    /// Stamps and queues `event`; returns its time. Waits when the writer is behind.
    /// After [`Recorder::close`] events are dropped (the run is over).
    pub async fn record(&self, mut event: Event) -> u64 {
        let c = &self.inner.counts;
        let counter = match (&event.process, event.kind) {
            (Process::Client(_), EventType::Invoke) => Some(&c.invoke),
            (Process::Client(_), EventType::Ok) => Some(&c.ok),
            (Process::Client(_), EventType::Fail) => Some(&c.fail),
            (Process::Client(_), EventType::Info) => Some(&c.info),
            (p, _) if p.is_nemesis() => Some(&c.nemesis),
            _ => None,
        };
        let mut guard = self.inner.tx.lock().await;
        let now = self.now_ns();
        event.index = Some(guard.0);
        event.time = now;
        if let Some(tx) = &guard.1 {
            if tx.send(event).await.is_ok() {
                guard.0 += 1;
                if let Some(counter) = counter {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        now
    }

    /// A client event.
    pub async fn client(
        &self,
        process: u64,
        kind: EventType,
        f: &str,
        key: &str,
        value: Value,
        error: Option<String>,
        node: &str,
    ) -> u64 {
        let mut e = Event::op(process, kind, f, Some(key), value);
        e.error = error;
        e.node = Some(Value::String(node.to_string()));
        self.record(e).await
    }

    /// An event of a named process (`nemesis`, `monitor`).
    pub async fn named(
        &self,
        process: &str,
        kind: EventType,
        f: &str,
        value: Value,
        node: Option<Value>,
        error: Option<String>,
    ) -> u64 {
        self.record(Event {
            index: None,
            time: 0,
            process: Process::Named(process.to_string()),
            kind,
            f: f.to_string(),
            key: None,
            value,
            error,
            node,
        })
        .await
    }

    /// Stops accepting events; the writer drains what is queued and exits.
    pub async fn close(&self) {
        self.inner.tx.lock().await.1 = None;
    }
}

impl Writer {
    /// Waits until every queued event is written and flushed; returns the event count.
    /// Call after [`Recorder::close`].
    pub async fn finish(self) -> anyhow::Result<u64> {
        self.task.await.context("history writer panicked")?
    }
}

async fn write_loop(
    file: tokio::fs::File,
    mut rx: mpsc::Receiver<Event>,
    path: String,
) -> anyhow::Result<u64> {
    let mut out = tokio::io::BufWriter::with_capacity(1 << 16, file);
    let mut tick = tokio::time::interval(FLUSH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = 0u64;
    let mut dirty = false;
    loop {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(ev) => {
                    let mut line = serde_json::to_vec(&ev)?;
                    line.push(b'\n');
                    out.write_all(&line).await.with_context(|| format!("cannot write {path}"))?;
                    written += 1;
                    dirty = true;
                }
                None => break,
            },
            _ = tick.tick() => {
                if dirty {
                    out.flush().await.with_context(|| format!("cannot write {path}"))?;
                    dirty = false;
                }
            }
        }
    }
    out.flush()
        .await
        .with_context(|| format!("cannot write {path}"))?;
    out.into_inner()
        .sync_all()
        .await
        .with_context(|| format!("cannot sync {path}"))?;
    Ok(written)
}

/// The history reader the report uses: strict about every line but a torn last one.
pub use crate::report::run::read_history;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_are_indexed_in_time_order_and_flushed_while_running() {
        let dir = std::env::temp_dir().join(format!("fl-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(crate::store::HISTORY_FILE);
        let _ = std::fs::remove_file(&path);
        let (rec, writer) = Recorder::open(&path, Instant::now()).await.unwrap();
        let mut tasks = Vec::new();
        for p in 0..8u64 {
            let rec = rec.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..100 {
                    rec.client(p, EventType::Invoke, "read", "k", Value::Null, None, "n1")
                        .await;
                    rec.client(p, EventType::Ok, "read", "k", Value::from(1), None, "n1")
                        .await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Without closing, the periodic flush must put everything on disk.
        tokio::time::sleep(FLUSH_INTERVAL + Duration::from_millis(300)).await;
        let on_disk = read_history(&path).unwrap();
        assert_eq!(on_disk.len(), 1600);
        rec.close().await;
        assert_eq!(writer.finish().await.unwrap(), 1600);
        let h = read_history(&path).unwrap();
        for (i, w) in h.windows(2).enumerate() {
            assert_eq!(w[0].index, Some(i as u64));
            assert!(w[0].time <= w[1].time, "time goes back at {i}");
        }
        assert_eq!(rec.counts().ok.load(Ordering::Relaxed), 800);
        // Recording after close is a no-op, not a panic.
        rec.client(0, EventType::Invoke, "read", "k", Value::Null, None, "n1")
            .await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
