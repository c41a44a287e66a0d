//! Seeded fuzzing of everything that parses bytes from outside the process: client and peer
//! frames, WAL images and snapshot files. Garbage must give an error, never a panic, and WAL
//! recovery must never return a record that was not written.

use faultline_node::kv::{Command, Kv, Op, Value};
use faultline_node::protocol::{self, PeerHello, Request, RequestBody, Response};
use faultline_node::replica::{Entry, EntryData, Snapshot, SplitMix64};
use faultline_node::wal::{self, Wal};
use faultline_node::{paxos, raft};

fn random_bytes(rng: &mut SplitMix64, max: usize) -> Vec<u8> {
    let n = (rng.next_u64() % (max as u64 + 1)) as usize;
    (0..n).map(|_| rng.next_u64() as u8).collect()
}

fn mutate(rng: &mut SplitMix64, mut b: Vec<u8>) -> Vec<u8> {
    match rng.next_u64() % 4 {
        0 if !b.is_empty() => {
            let i = (rng.next_u64() % b.len() as u64) as usize;
            b[i] ^= 1 << (rng.next_u64() % 8);
        }
        1 => {
            let cut = (rng.next_u64() % (b.len() as u64 + 1)) as usize;
            b.truncate(cut);
        }
        2 => b.extend(random_bytes(rng, 16)),
        _ if !b.is_empty() => {
            let i = (rng.next_u64() % b.len() as u64) as usize;
            b[i] = rng.next_u64() as u8;
        }
        _ => {}
    }
    b
}

fn samples() -> Vec<Vec<u8>> {
    let op = Op::Cas { key: "k".into(), from: Value::Int(1), to: Value::Str("two".into()) };
    vec![
        protocol::encode(&Request { id: 9, body: RequestBody::Op { client: 3, seq: 4, op: op.clone() } }).to_vec(),
        protocol::encode(&Request { id: 1, body: RequestBody::Status }).to_vec(),
        protocol::encode(&Response { id: 2, body: protocol::ResponseBody::Value(Some(Value::List(vec![Value::Int(1)]))) }).to_vec(),
        protocol::encode(&PeerHello {
            version: 1,
            from: "n1".into(),
            algo: "raft".into(),
            incarnation: 1,
            knows_you_as: 0,
            node_id: 1,
            client_addr: "127.0.0.1:1".into(),
            peer_addr: "127.0.0.1:2".into(),
        })
        .to_vec(),
        protocol::encode(&raft::Message::Append {
            term: 3,
            prev_index: 7,
            prev_term: 2,
            entries: vec![Entry { index: 8, term: 3, data: EntryData::Command(Command { client: 1, seq: 1, op }.encode()) }],
            commit: 6,
        })
        .to_vec(),
    ]
}

/// Decoding never panics; whatever decodes re-encodes (so it is a real value, not garbage
/// memory).
fn decode_all(b: &[u8]) {
    if let Ok(r) = protocol::decode::<Request>(b) {
        let _ = protocol::encode(&r);
    }
    let _ = protocol::decode::<Response>(b);
    let _ = protocol::decode::<PeerHello>(b);
    let _ = protocol::decode::<raft::Message>(b);
    let _ = protocol::decode::<paxos::Message>(b);
    let _ = protocol::decode::<raft::Record>(b);
    let _ = protocol::decode::<paxos::Record>(b);
    let _ = Command::decode(b);
    let _ = Kv::restore(b);
    let _ = wal::scan(b);
    let _ = wal::decode_snapshot(b);
}

#[test]
fn garbage_and_mutated_frames_never_panic() {
    let mut rng = SplitMix64::new(0xfa17);
    for _ in 0..20_000 {
        decode_all(&random_bytes(&mut rng, 64));
    }
    let samples = samples();
    for s in &samples {
        assert!(protocol::decode::<Request>(s).is_ok() || protocol::decode::<raft::Message>(s).is_ok() || protocol::decode::<Response>(s).is_ok() || protocol::decode::<PeerHello>(s).is_ok());
    }
    for _ in 0..50_000 {
        let s = samples[(rng.next_u64() % samples.len() as u64) as usize].clone();
        let mut m = mutate(&mut rng, s);
        for _ in 0..(rng.next_u64() % 3) {
            m = mutate(&mut rng, m);
        }
        decode_all(&m);
    }
}

fn wal_image(records: &[Vec<u8>]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut w, _) = Wal::open::<Vec<u8>>(dir.path(), false).unwrap();
        for r in records {
            w.append(std::slice::from_ref(r)).unwrap();
        }
    }
    std::fs::read(dir.path().join("wal.log")).unwrap()
}

#[test]
fn wal_recovery_returns_only_written_records_in_order() {
    let mut rng = SplitMix64::new(77);
    for round in 0..40 {
        let records: Vec<Vec<u8>> = (0..1 + rng.next_u64() % 12).map(|_| random_bytes(&mut rng, 40)).collect();
        let image = wal_image(&records);
        let encoded: Vec<Vec<u8>> = records.iter().map(|r| postcard::to_allocvec(r).unwrap()).collect();
        // Every truncation point (a crash mid-write) recovers a prefix, never an error.
        for cut in 0..=image.len() {
            let s = wal::scan(&image[..cut]).unwrap_or_else(|e| panic!("round {round} cut {cut}: {e:?}"));
            assert!(s.records.len() <= encoded.len());
            assert_eq!(s.records[..], encoded[..s.records.len()], "round {round} cut {cut}");
            assert_eq!(s.valid_len + s.torn_bytes, cut as u64);
        }
        assert_eq!(wal::scan(&image).unwrap().records, encoded);
        // Any single corrupted byte: an error, or a prefix of what was written — never a
        // changed record.
        for _ in 0..200 {
            let mut bad = image.clone();
            let i = (rng.next_u64() % bad.len() as u64) as usize;
            bad[i] ^= 1 << (rng.next_u64() % 8);
            if let Ok(s) = wal::scan(&bad) {
                assert_eq!(s.records[..], encoded[..s.records.len()], "round {round} flip at {i}");
                assert!(s.records.len() + 1 >= encoded.len(), "a flip dropped more than the last record: at {i}");
            }
        }
    }
}

#[test]
fn wal_open_survives_arbitrary_files() {
    let mut rng = SplitMix64::new(5);
    let dir = tempfile::tempdir().unwrap();
    let valid = wal_image(&[b"abc".to_vec(), b"defg".to_vec()]);
    for i in 0..300 {
        let bytes = if i % 2 == 0 { random_bytes(&mut rng, 200) } else { mutate(&mut rng, valid.clone()) };
        std::fs::write(dir.path().join("wal.log"), &bytes).unwrap();
        let _ = std::fs::remove_file(dir.path().join("snapshot.bin"));
        if i % 3 == 0 {
            std::fs::write(dir.path().join("snapshot.bin"), random_bytes(&mut rng, 100)).unwrap();
        }
        // Errors are fine; panics are not. A successful open must leave a usable log.
        if let Ok((mut w, _)) = Wal::open::<Vec<u8>>(dir.path(), false) {
            w.append(&[b"more".to_vec()]).unwrap();
            drop(w);
            let (_, rec) = Wal::open::<Vec<u8>>(dir.path(), false).expect("reopen after a successful open");
            assert_eq!(rec.records.last().map(|r| r.as_slice()), Some(&b"more"[..]));
        }
    }
    let snap = Snapshot { index: 3, term: 1, data: vec![1, 2, 3] };
    let (mut w, _) = Wal::open::<Vec<u8>>(dir.path(), false).unwrap_or_else(|_| {
        std::fs::remove_file(dir.path().join("wal.log")).unwrap();
        Wal::open::<Vec<u8>>(dir.path(), false).unwrap()
    });
    w.save_snapshot(&snap).unwrap();
    let img = std::fs::read(dir.path().join("snapshot.bin")).unwrap();
    assert_eq!(wal::decode_snapshot(&img).unwrap(), snap);
    for cut in 0..img.len() {
        assert!(wal::decode_snapshot(&img[..cut]).is_err(), "a cut snapshot is never accepted");
    }
}
