//! A loopback HTTP server that serves one file, for install tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Honestly.
    Honest,
    /// Announces more bytes than it sends, then closes.
    ShortBody,
    /// Sends half the body, then falls silent.
    Stall,
    /// Redirects to a `file://` URL.
    RedirectToFile,
    /// Sends the whole body honestly, but slowly (64 KiB every 100 ms), so that a
    /// test can act while the transfer runs.
    Trickle,
}

/// Serves `body` for every GET until dropped.
pub struct FileServer {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl FileServer {
    /// Starts serving `body` on 127.0.0.1.
    pub fn start(body: Vec<u8>) -> Self {
        Self::start_with(body, Behaviour::Honest)
    }

    /// Starts serving `body` on 127.0.0.1, answering as `behaviour` says.
    pub fn start_with(body: Vec<u8>, behaviour: Behaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let body = Arc::new(body);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let body = body.clone();
                std::thread::spawn(move || respond(stream, &body, behaviour));
            }
        });
        Self { port, stop }
    }

    /// A URL on this server (any path serves the file).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

/// Reads one HTTP request's line and headers from `stream`; the request line (`GET /path
/// HTTP/1.1`), or `None` when the client went away first. The test servers answer from it.
pub fn read_request(stream: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request = String::new();
    reader.read_line(&mut request).ok()?;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n" {
            break;
        }
    }
    Some(request)
}

fn respond(mut stream: TcpStream, body: &[u8], behaviour: Behaviour) {
    if read_request(&stream).is_none() {
        return;
    }
    let half = &body[..body.len() / 2];
    match behaviour {
        Behaviour::Honest => {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(body);
        }
        Behaviour::ShortBody => {
            let _ =
                write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len() * 2);
            let _ = stream.write_all(body);
        }
        Behaviour::Stall => {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            let _ = stream.write_all(half);
            std::thread::sleep(std::time::Duration::from_secs(120));
        }
        Behaviour::Trickle => {
            let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            for piece in body.chunks(64 << 10) {
                if stream.write_all(piece).is_err() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        Behaviour::RedirectToFile => {
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: file:///etc/shadow\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// What a [`ChangingServer`] says identifies the version of its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    /// An `ETag` header.
    ETag,
    /// A `Last-Modified` header.
    LastModified,
    /// Neither.
    Neither,
}

/// Serves one file whose content the test replaces, answering GET and HEAD with the
/// validator it was started with; the validator changes with each new content.
pub struct ChangingServer {
    port: u16,
    stop: Arc<AtomicBool>,
    file: Arc<std::sync::Mutex<(Vec<u8>, u32)>>,
}

impl ChangingServer {
    /// Starts serving `body` on 127.0.0.1 with `validator`.
    pub fn start(body: Vec<u8>, validator: Validator) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let file = Arc::new(std::sync::Mutex::new((body, 1)));
        let (flag, served) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let served = served.clone();
                std::thread::spawn(move || answer(stream, &served, validator));
            }
        });
        Self { port, stop, file }
    }

    /// Serves `body` from now on, as the next version.
    pub fn replace(&self, body: Vec<u8>) {
        let mut file = self.file.lock().expect("the file");
        let version = file.1 + 1;
        *file = (body, version);
    }

    /// A URL on this server (any path serves the file).
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

fn answer(mut stream: TcpStream, file: &std::sync::Mutex<(Vec<u8>, u32)>, validator: Validator) {
    let Some(request) = read_request(&stream) else { return };
    let (body, version) = file.lock().map(|f| f.clone()).unwrap_or_default();
    let header = match validator {
        Validator::ETag => format!("ETag: \"v{version}\"\r\n"),
        // One day apart per version, in the HTTP date format.
        Validator::LastModified => format!("Last-Modified: Tue, {:02} Jul 2025 10:00:00 GMT\r\n", version),
        Validator::Neither => String::new(),
    };
    let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{header}Connection: close\r\n\r\n", body.len());
    if !request.starts_with("HEAD ") {
        let _ = stream.write_all(&body);
    }
}

impl Drop for ChangingServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
