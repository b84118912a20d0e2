//! Cancelling a pull while the registry is slow: the pull must end even when the
//! registry falls silent in the middle of a blob (the client's read timeout is a
//! minute), or never lets a read time out by trickling a byte now and then.
//!
//! The registry here is a stand-in on loopback (a real one cannot be made to trickle);
//! each test bounds the wait generously, as a check that the pull ends at all, not how
//! fast.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::*;
use crate::engine::store::temp_store;

/// Answers `/v2/`, then hands every other request to `respond`. One request per
/// connection: complete answers say `Connection: close`, or the client could reuse a
/// connection this side is closing and see it reset.
fn registry(respond: fn(&str, &mut TcpStream)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let host = listener.local_addr().expect("address").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let Ok(clone) = stream.try_clone() else { return };
                let mut reader = BufReader::new(clone);
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                if path == "/v2/" {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
                } else {
                    respond(&path, &mut stream);
                }
            });
        }
    });
    host
}

/// Sends a byte every half second until the client goes away.
fn trickle(stream: &mut TcpStream) {
    while stream.write_all(b"x").and_then(|()| stream.flush()).is_ok() {
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Says nothing more, and keeps the connection until the client closes it.
fn fall_silent(stream: &mut TcpStream) {
    let mut sink = [0u8; 64];
    while std::io::Read::read(stream, &mut sink).is_ok_and(|n| n > 0) {}
}

/// A manifest with one uncompressed layer of 100 000 bytes.
fn manifest() -> String {
    let digest = format!("sha256:{}", "0".repeat(64));
    format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{digest}","size":2}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{digest}","size":100000}}]}}"#
    )
}

/// Cancels once `after_bytes` arrived (or at once, with 0).
struct CancelAfter {
    after_bytes: u64,
    canceled: AtomicBool,
}

impl Progress for CancelAfter {
    fn bytes(&self, done: u64, _total: Option<u64>) {
        if done >= self.after_bytes {
            self.canceled.store(true, Ordering::SeqCst);
        }
    }

    fn canceled(&self) -> bool {
        self.after_bytes == 0 || self.canceled.load(Ordering::SeqCst)
    }
}

/// Pulls from `host` with a cancel after `after_bytes`; the outcome, if it ends.
fn pull_canceled(host: &str, after_bytes: u64) -> Option<Result<Pulled, OciError>> {
    let reference = ImageReference::parse(&format!("{host}/x:v1")).expect("reference");
    let options = RegistryOptions { insecure: vec![host.to_owned()], auth_file: None, max_image_size: 1 << 30 };
    let (done, ended) = mpsc::channel();
    std::thread::spawn(move || {
        let (_root, store) = temp_store();
        let progress = CancelAfter { after_bytes, canceled: AtomicBool::new(false) };
        let _ = done.send(pull(&reference, &options, || store.stage(1 << 30), &progress));
    });
    ended.recv_timeout(Duration::from_secs(30)).ok()
}

fn assert_canceled(outcome: Option<Result<Pulled, OciError>>) {
    match outcome {
        Some(Err(OciError::Store(StoreError::Canceled))) => {}
        Some(Err(other)) => panic!("expected a cancel, got {other}"),
        Some(Ok(_)) => panic!("a canceled pull succeeded"),
        None => panic!("the pull did not end after its cancel while the registry was slow"),
    }
}

#[test]
fn a_cancel_ends_a_pull_whose_registry_falls_silent_in_a_blob() {
    let host = registry(|path, stream| {
        if path.contains("/manifests/") {
            let body = manifest();
            let head = format!(
                "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body.as_bytes()));
        } else {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            let _ = stream.write_all(&[0u8; 2000]);
            fall_silent(stream);
        }
    });
    assert_canceled(pull_canceled(&host, 1000));
}

#[test]
fn a_cancel_ends_a_pull_whose_registry_trickles_the_manifest() {
    let host = registry(|_path, stream| {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ");
        trickle(stream);
    });
    assert_canceled(pull_canceled(&host, 0));
}
