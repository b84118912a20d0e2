//! HTTP(S) sources, streamed into staging.
//!
//! Bytes go from the socket through the staging file's hasher and size limit to disk in
//! one pass, so memory stays bounded whatever the image size. The server is not
//! trusted: a body shorter or longer than its Content-Length, a stall, or a redirect
//! away from HTTP(S) (or from HTTPS down to HTTP) is an error, and the staged file is
//! dropped with it.

use std::time::Duration;

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

use super::super::meta::Validators;
use super::super::progress::Progress;
use super::super::store::{Staged, StoreError};

/// Most time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most time without a single byte before the transfer is given up.
const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often cancellation is checked while waiting for data.
const CANCEL_CHECK: Duration = Duration::from_millis(250);
/// Redirects followed before giving up.
const MAX_REDIRECTS: usize = 10;

/// Why a download failed. Messages never include the URL, which may carry credentials.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The HTTP client could not be set up.
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    /// The request failed (connection, TLS, protocol, redirect policy).
    #[error("download failed: {0}")]
    Transfer(String),
    /// A redirect that is not followed.
    #[error("{0}")]
    Redirect(String),
    /// The server answered with an error status.
    #[error("the server answered {0}")]
    Status(reqwest::StatusCode),
    /// The body ended before or after what Content-Length announced.
    #[error("the server announced {expected} bytes but sent {received}")]
    LengthMismatch {
        /// Content-Length.
        expected: u64,
        /// Bytes received.
        received: u64,
    },
    /// No data arrived for too long (seconds).
    #[error("no data for {0} s; giving up")]
    Stalled(u64),
    /// Writing to staging failed (size limit, disk, cancellation).
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Streams `url` into `staged`; returns the validators the server sent with it, which a
/// later update check compares.
pub fn download(url: &Url, staged: &mut Staged, progress: &dyn Progress) -> Result<Validators, HttpError> {
    download_with(url, staged, progress, STALL_TIMEOUT)
}

fn download_with(
    url: &Url,
    staged: &mut Staged,
    progress: &dyn Progress,
    stall: Duration,
) -> Result<Validators, HttpError> {
    runtime()?.block_on(fetch(url, staged, progress, stall))
}

/// Asks for the validators of `url` with a HEAD request, following redirects as a
/// download does: what an update check compares with the recorded ones.
pub fn head(url: &Url, progress: &dyn Progress) -> Result<Validators, HttpError> {
    runtime()?.block_on(async {
        let response = with_cancel(client()?.head(url.clone()).send(), progress, STALL_TIMEOUT)
            .await?
            .map_err(|e| HttpError::Transfer(describe(e)))?;
        if !response.status().is_success() {
            return Err(HttpError::Status(response.status()));
        }
        Ok(validators(response.headers()))
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, HttpError> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| HttpError::Client(e.to_string()))
}

fn client() -> Result<reqwest::Client, HttpError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(redirect_policy())
        .user_agent(concat!("kairos-extensionsd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HttpError::Client(e.without_url().to_string()))
}

/// The `ETag` and `Last-Modified` headers, when they are text.
fn validators(headers: &reqwest::header::HeaderMap) -> Validators {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    Validators { etag: text(reqwest::header::ETAG), last_modified: text(reqwest::header::LAST_MODIFIED) }
}

/// Follows at most ten redirects, to http(s) only, never from https down to http.
pub(crate) fn redirect_policy() -> Policy {
    Policy::custom(|attempt: Attempt<'_>| {
        let previous_scheme = attempt.previous().last().map(|u| u.scheme().to_owned());
        let scheme = attempt.url().scheme().to_owned();
        if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
        } else if scheme != "http" && scheme != "https" {
            attempt.error(format!("refusing a redirect to a {scheme}: URL"))
        } else if previous_scheme.as_deref() == Some("https") && scheme == "http" {
            attempt.error("refusing a redirect from https to plain http")
        } else {
            attempt.follow()
        }
    })
}

async fn fetch(
    url: &Url,
    staged: &mut Staged,
    progress: &dyn Progress,
    stall: Duration,
) -> Result<Validators, HttpError> {
    let client = client()?;
    let transfer = |e: reqwest::Error| HttpError::Transfer(describe(e));
    let mut response = with_cancel(client.get(url.clone()).send(), progress, stall).await?.map_err(transfer)?;
    if response.status().is_redirection() {
        // Redirects the policy allows were followed; reqwest hands back the ones it
        // cannot follow at all (to file:, ftp:, ...) without asking the policy.
        let target = response.headers().get(reqwest::header::LOCATION).and_then(|l| l.to_str().ok()).unwrap_or("");
        let scheme = target.split_once(':').map(|(scheme, _)| scheme).unwrap_or("an unknown");
        return Err(HttpError::Redirect(format!("refusing a redirect to a {scheme}: URL")));
    }
    if !response.status().is_success() {
        return Err(HttpError::Status(response.status()));
    }
    let expected = response.content_length();
    let validators = validators(response.headers());
    progress.bytes(0, expected);
    loop {
        let Some(chunk) = with_cancel(response.chunk(), progress, stall).await?.map_err(transfer)? else { break };
        staged.write_chunk(&chunk)?;
        progress.bytes(staged.size(), expected);
    }
    match expected {
        Some(expected) if expected != staged.size() => {
            Err(HttpError::LengthMismatch { expected, received: staged.size() })
        }
        _ => Ok(validators),
    }
}

/// Waits for `work`, checking for cancellation and stalls a few times a second.
async fn with_cancel<T>(
    work: impl Future<Output = T>,
    progress: &dyn Progress,
    stall: Duration,
) -> Result<T, HttpError> {
    // Checked before every wait too: a server that keeps sending never lets a single
    // wait last long enough for the timer below to fire.
    if progress.canceled() {
        return Err(HttpError::Store(StoreError::Canceled));
    }
    tokio::pin!(work);
    let mut waited = Duration::ZERO;
    loop {
        tokio::select! {
            done = &mut work => return Ok(done),
            () = tokio::time::sleep(CANCEL_CHECK) => {
                if progress.canceled() {
                    return Err(HttpError::Store(StoreError::Canceled));
                }
                waited += CANCEL_CHECK;
                if waited >= stall {
                    return Err(HttpError::Stalled(stall.as_secs()));
                }
            }
        }
    }
}

/// A reqwest error in words with its causes (the useful part: "connection refused",
/// "incomplete message"), without the URL, which may carry credentials.
fn describe(error: reqwest::Error) -> String {
    super::super::full_message(&error.without_url())
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::engine::progress::Silent;

    /// Serves one connection with `respond`, which gets the request path and the socket.
    fn serve(respond: impl FnOnce(&str, &mut std::net::TcpStream) + Send + 'static) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut request_line = String::new();
            let mut reader = BufReader::new(stream.try_clone().expect("clone socket"));
            let _ = reader.read_line(&mut request_line);
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map(|n| n == 0).unwrap_or(true) || header == "\r\n" {
                    break;
                }
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            respond(&path, &mut stream);
        });
        Url::parse(&format!("http://127.0.0.1:{port}/image.raw")).expect("valid URL")
    }

    use crate::engine::store::temp_store as store;

    fn body_response(stream: &mut std::net::TcpStream, announced: usize, body: &[u8]) {
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {announced}\r\nConnection: close\r\n\r\n");
        let _ = stream.write_all(body);
    }

    #[test]
    fn streams_the_body_into_staging() {
        let url = serve(|_, s| body_response(s, 5000, &[7u8; 5000]));
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        download(&url, &mut staged, &Silent).expect("download");
        assert_eq!(staged.size(), 5000);
    }

    #[test]
    fn the_validators_of_a_download_and_of_a_head_are_the_servers() {
        let respond = |_: &str, s: &mut std::net::TcpStream| {
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nETag: W/\"v7\"\r\nLast-Modified: Tue, 01 Jul 2025 10:00:00 GMT\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
            );
        };
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        let got = download(&serve(respond), &mut staged, &Silent).expect("download");
        assert_eq!(got.etag.as_deref(), Some("W/\"v7\""));
        assert_eq!(got.last_modified.as_deref(), Some("Tue, 01 Jul 2025 10:00:00 GMT"));
        assert_eq!(head(&serve(respond), &Silent).expect("head"), got);
        let bare = serve(|_, s| body_response(s, 0, b""));
        assert!(head(&bare, &Silent).expect("head").is_empty(), "a server without validators gives none");
        let missing = serve(|_, s| {
            let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        assert!(matches!(head(&missing, &Silent), Err(HttpError::Status(s)) if s.as_u16() == 404));
    }

    #[test]
    fn a_short_body_is_an_error() {
        let url = serve(|_, s| body_response(s, 9000, &[1u8; 4000]));
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        let result = download(&url, &mut staged, &Silent);
        assert!(matches!(result, Err(HttpError::Transfer(_) | HttpError::LengthMismatch { .. })), "{result:?}");
    }

    #[test]
    fn error_statuses_and_foreign_redirects_are_refused() {
        let (_root, store) = store();
        let url = serve(|_, s| {
            let _ = write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        });
        let mut staged = store.stage(1 << 20).expect("stage");
        assert!(matches!(download(&url, &mut staged, &Silent), Err(HttpError::Status(s)) if s.as_u16() == 404));
        let url = serve(|_, s| {
            let _ = write!(
                s,
                "HTTP/1.1 302 Found\r\nLocation: file:///etc/shadow\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        });
        let mut staged = store.stage(1 << 20).expect("stage");
        let result = download(&url, &mut staged, &Silent);
        assert!(matches!(&result, Err(HttpError::Redirect(m)) if m.contains("file:")), "{result:?}");
        assert_eq!(staged.size(), 0);
    }

    #[test]
    fn the_size_limit_stops_the_transfer() {
        let url = serve(|_, s| body_response(s, 3 << 20, &vec![0u8; 3 << 20]));
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        let result = download(&url, &mut staged, &Silent);
        assert!(matches!(result, Err(HttpError::Store(StoreError::TooLarge { .. }))), "{result:?}");
    }

    #[test]
    fn a_stalled_server_is_given_up() {
        let url = serve(|_, s| {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf");
            std::thread::sleep(Duration::from_secs(5));
        });
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        let result = download_with(&url, &mut staged, &Silent, Duration::from_secs(1));
        assert!(matches!(result, Err(HttpError::Stalled(1))), "{result:?}");
    }

    struct CancelAfter(AtomicBool);

    impl Progress for CancelAfter {
        fn bytes(&self, done: u64, _total: Option<u64>) {
            if done > 0 {
                self.0.store(true, Ordering::SeqCst);
            }
        }

        fn canceled(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// The server stops after a few bytes and, ten seconds later, closes short of what
    /// it announced: only a cancel that took effect before then ends as canceled.
    #[test]
    fn cancel_stops_a_waiting_transfer() {
        let url = serve(|_, s| {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhalf");
            std::thread::sleep(Duration::from_secs(10));
        });
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        let result = download(&url, &mut staged, &CancelAfter(AtomicBool::new(false)));
        assert!(matches!(result, Err(HttpError::Store(StoreError::Canceled))), "{result:?}");
    }

    /// A server that never pauses long enough for the wait timer to fire: the cancel
    /// must still be seen, or the whole body arrives and the download succeeds.
    #[test]
    fn cancel_stops_a_transfer_that_keeps_receiving() {
        let url = serve(|_, s| {
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
            for _ in 0..100 {
                if s.write_all(&[0u8; 1000]).and_then(|()| s.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (_root, store) = store();
        let mut staged = store.stage(1 << 20).expect("stage");
        let result = download(&url, &mut staged, &CancelAfter(AtomicBool::new(false)));
        assert!(matches!(result, Err(HttpError::Store(StoreError::Canceled))), "{result:?}");
        assert!(staged.size() < 100_000, "the whole body was taken after the cancel");
    }
}
