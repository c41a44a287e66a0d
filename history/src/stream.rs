//! Reading `history.jsonl` one event at a time, as often as a judge needs to.
//!
//! An hour-long run's history is hundreds of megabytes of JSON and several gigabytes as
//! parsed events, so whoever judges it reads it as a stream, once per pass, and keeps only
//! what the pass needs. The reader is as strict as a whole-file read: a line that does not
//! parse is an error naming file and line, because a verdict over a silently truncated
//! history would lie. The one exception is a torn last line (no newline, does not parse):
//! a run killed mid-write leaves one, and everything before it stands.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::Event;

/// History lines longer than this are rejected rather than buffered without bound.
pub const LINE_BYTES_MAX: usize = 16 << 20;

/// Why a history could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("opening {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: line longer than {LINE_BYTES_MAX} bytes", path.display())]
    LineTooLong { path: PathBuf, line: usize },
    #[error("{}:{line}: {source}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
}

/// A history file that can be read from the start any number of times.
#[derive(Debug, Clone)]
pub struct HistoryFile {
    path: PathBuf,
}

impl HistoryFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        HistoryFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A fresh pass over the events, from the first.
    pub fn events(&self) -> Result<Events, StreamError> {
        let file = File::open(&self.path).map_err(|source| StreamError::Open {
            path: self.path.clone(),
            source,
        })?;
        Ok(Events {
            path: self.path.clone(),
            reader: BufReader::with_capacity(1 << 20, file),
            line: String::new(),
            lineno: 0,
            pos: 0,
            done: false,
        })
    }

    /// Calls `f` with each event's position (0-based, blank lines not counted) and the
    /// event, in file order, stopping at the first error of either.
    pub fn for_each<E: From<StreamError>>(
        &self,
        mut f: impl FnMut(usize, Event) -> Result<(), E>,
    ) -> Result<(), E> {
        for item in self.events()? {
            let (pos, e) = item?;
            f(pos, e)?;
        }
        Ok(())
    }

    /// The whole history in memory, for the checkers that need all of it at once.
    pub fn read_all(&self) -> Result<Vec<Event>, StreamError> {
        self.events()?.map(|r| r.map(|(_, e)| e)).collect()
    }
}

/// One pass over a history: `(position, event)`, each event's `index` set to its position
/// when the file does not carry one.
pub struct Events {
    path: PathBuf,
    reader: BufReader<File>,
    line: String,
    lineno: usize,
    pos: usize,
    done: bool,
}

impl Events {
    fn next_event(&mut self) -> Result<Option<(usize, Event)>, StreamError> {
        loop {
            self.line.clear();
            let n = (&mut self.reader)
                .take(LINE_BYTES_MAX as u64 + 1)
                .read_line(&mut self.line)
                .map_err(|source| StreamError::Read {
                    path: self.path.clone(),
                    source,
                })?;
            if n == 0 {
                return Ok(None);
            }
            self.lineno += 1;
            if n > LINE_BYTES_MAX {
                return Err(StreamError::LineTooLong {
                    path: self.path.clone(),
                    line: self.lineno,
                });
            }
            let text = self.line.trim();
            if text.is_empty() {
                continue;
            }
            let mut e: Event = match serde_json::from_str(text) {
                Ok(e) => e,
                Err(_)
                    if !self.line.ends_with('\n')
                        && self.reader.fill_buf().map(|b| b.is_empty()).unwrap_or(false) =>
                {
                    return Ok(None);
                }
                Err(source) => {
                    return Err(StreamError::Parse {
                        path: self.path.clone(),
                        line: self.lineno,
                        source,
                    });
                }
            };
            let pos = self.pos;
            self.pos += 1;
            if e.index.is_none() {
                e.index = Some(pos as u64);
            }
            return Ok(Some((pos, e)));
        }
    }
}

impl Iterator for Events {
    type Item = Result<(usize, Event), StreamError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_event() {
            Ok(Some(x)) => Some(Ok(x)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A history file in a directory of its own, removed when the test is done (the long
    /// line's file is 16 MB).
    struct Temp(HistoryFile, std::path::PathBuf);

    impl std::ops::Deref for Temp {
        type Target = HistoryFile;
        fn deref(&self) -> &HistoryFile {
            &self.0
        }
    }

    impl Drop for Temp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.1);
        }
    }

    fn temp(name: &str, text: &str) -> Temp {
        let dir = std::env::temp_dir().join(format!("faultline-stream-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("history.jsonl");
        std::fs::write(&p, text).unwrap();
        Temp(HistoryFile::new(p), dir)
    }

    const A: &str = r#"{"process":0,"type":"invoke","f":"read"}"#;
    const B: &str = r#"{"index":7,"process":0,"type":"ok","f":"read","value":1}"#;

    #[test]
    fn events_are_numbered_and_a_pass_can_be_repeated() {
        let h = temp("numbered", &format!("{A}\n\n{B}\n"));
        for _ in 0..2 {
            let got: Vec<(usize, Option<u64>)> =
                h.events().unwrap().map(|r| r.map(|(p, e)| (p, e.index)).unwrap()).collect();
            assert_eq!(got, vec![(0, Some(0)), (1, Some(7))]);
        }
    }

    #[test]
    fn a_bad_line_names_file_and_line_but_a_torn_last_line_is_dropped() {
        let h = temp("bad", &format!("{A}\n{{oops\n{B}\n"));
        let err = h.read_all().unwrap_err().to_string();
        assert!(err.contains("history.jsonl:2:"), "{err}");
        let torn = temp("torn", &format!("{A}\n{B}\n{{\"process\":0,\"ty"));
        assert_eq!(torn.read_all().unwrap().len(), 2);
        let missing = HistoryFile::new("/nonexistent/history.jsonl");
        assert!(matches!(missing.events(), Err(StreamError::Open { .. })));
    }

    #[test]
    fn an_overlong_line_is_refused_not_buffered() {
        let long = format!("{A}\n{}\n", " ".repeat(LINE_BYTES_MAX + 10));
        let h = temp("long", &long);
        let err = h.read_all().unwrap_err().to_string();
        assert!(err.contains(":2: line longer than"), "{err}");
    }
}
