//! Reading catalogs from where they are configured: `http(s)://` URLs and local files.
//!
//! Every catalog is read whole into memory, bounded by
//! [`MAX_CATALOG_BYTES`](super::format::MAX_CATALOG_BYTES), and one that cannot be
//! read is skipped with a warning naming it and the reason, so one unreachable mirror
//! does not stop installs from the others.

use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use super::format::{self, Catalog, FormatError, MAX_CATALOG_BYTES};
use crate::engine::sources::http::{HttpError, redirect_policy};
use crate::engine::sources::{percent_decode, redact};

/// Most time to connect to a catalog server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Most time for a whole catalog download; catalogs are small.
const TOTAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a catalog is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An `http://` or `https://` URL.
    Url(Url),
    /// A local file (a path on the host that reads it).
    Path(PathBuf),
}

impl Location {
    /// Reads a catalog location as configured: an `http(s)://` URL, a `file://` URL or
    /// an absolute path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.chars().any(char::is_control) {
            return Err("control characters are not allowed".into());
        }
        if let Some(rest) = text.strip_prefix("file://") {
            let path = percent_decode(rest).ok_or("bad %-escape in the path")?;
            return Self::path(&path);
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            let url = Url::parse(text).map_err(|e| format!("not a valid URL: {e}"))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err("the URL has no host".into());
            }
            return Ok(Self::Url(url));
        }
        if text.contains("://") {
            return Err("catalogs are read over http:// or https://, or from a local file".into());
        }
        Self::path(text)
    }

    fn path(text: &str) -> Result<Self, String> {
        let path = PathBuf::from(text);
        if !path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(format!("{text:?} is not an absolute path without '..'"));
        }
        Ok(Self::Path(path))
    }

    /// The location as logged and shown: never with credentials.
    pub fn display(&self) -> String {
        match self {
            Self::Url(url) => redact(url.as_str()),
            Self::Path(path) => path.display().to_string(),
        }
    }
}

/// Why one catalog could not be used.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Larger than a catalog may be.
    #[error("larger than the {limit} bytes a catalog may be")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The local file cannot be read.
    #[error("cannot read it: {0}")]
    Read(#[source] std::io::Error),
    /// The local path is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The download failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The bytes are not a catalog.
    #[error(transparent)]
    Format(#[from] FormatError),
}

/// Reads and parses the catalog at `location`.
pub fn fetch(location: &Location) -> Result<Catalog, FetchError> {
    let bytes = match location {
        Location::Url(url) => download(url)?,
        Location::Path(path) => read_file(path)?,
    };
    Ok(format::parse(&bytes)?)
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, FetchError> {
    let file = std::fs::File::open(path).map_err(FetchError::Read)?;
    if !file.metadata().map_err(FetchError::Read)?.is_file() {
        return Err(FetchError::NotAFile);
    }
    let mut bytes = Vec::new();
    file.take(MAX_CATALOG_BYTES + 1).read_to_end(&mut bytes).map_err(FetchError::Read)?;
    if bytes.len() as u64 > MAX_CATALOG_BYTES {
        return Err(FetchError::TooLarge { limit: MAX_CATALOG_BYTES });
    }
    Ok(bytes)
}

fn download(url: &Url) -> Result<Vec<u8>, FetchError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| HttpError::Client(e.to_string()))?;
    runtime.block_on(get(url))
}

async fn get(url: &Url) -> Result<Vec<u8>, FetchError> {
    let describe = |e: reqwest::Error| crate::engine::full_message(&e.without_url());
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(TOTAL_TIMEOUT)
        .redirect(redirect_policy())
        .user_agent(concat!("kairos-extensionsd/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| HttpError::Client(describe(e)))?;
    let mut response = client.get(url.clone()).send().await.map_err(|e| HttpError::Transfer(describe(e)))?;
    if !response.status().is_success() {
        return Err(HttpError::Status(response.status()).into());
    }
    if response.content_length().is_some_and(|length| length > MAX_CATALOG_BYTES) {
        return Err(FetchError::TooLarge { limit: MAX_CATALOG_BYTES });
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| HttpError::Transfer(describe(e)))? {
        if (bytes.len() + chunk.len()) as u64 > MAX_CATALOG_BYTES {
            return Err(FetchError::TooLarge { limit: MAX_CATALOG_BYTES });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn reads_locations_as_configured() {
        assert_eq!(
            Location::parse("/etc/kairos/releases.json"),
            Ok(Location::Path("/etc/kairos/releases.json".into()))
        );
        assert_eq!(Location::parse("file:///srv/a%20b.json"), Ok(Location::Path("/srv/a b.json".into())));
        assert!(matches!(Location::parse("https://example.com/releases.json"), Ok(Location::Url(_))));
        for bad in ["releases.json", "./x.json", "/a/../b.json", "ftp://x/y", "https://", "/a\nb", "file://rel"] {
            assert!(Location::parse(bad).is_err(), "{bad:?} was taken");
        }
        let shown = Location::parse("https://user:pw@example.com/r.json?token=secret").map(|l| l.display());
        assert!(shown.is_ok_and(|s| !s.contains("pw") && !s.contains("secret")));
    }

    #[test]
    fn local_files_are_bounded() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let big = dir.path().join("big.json");
        std::fs::write(&big, vec![b' '; usize::try_from(MAX_CATALOG_BYTES).unwrap_or(usize::MAX) + 1])?;
        assert!(matches!(fetch(&Location::Path(big)), Err(FetchError::TooLarge { .. })));
        assert!(matches!(
            fetch(&Location::Path(dir.path().to_path_buf())),
            Err(FetchError::NotAFile | FetchError::Read(_))
        ));
        assert!(matches!(fetch(&Location::Path(dir.path().join("absent.json"))), Err(FetchError::Read(_))));
        let good = dir.path().join("good.json");
        std::fs::write(&good, r#"{"layers": [{"name": "k3s"}]}"#)?;
        assert_eq!(fetch(&Location::Path(good)).map(|c| c.layers.len()).ok(), Some(1));
        Ok(())
    }

    /// Answers one request with `head` and `body`.
    fn serve(head: String, body: Vec<u8>) -> Url {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n" {
                    break;
                }
            }
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        });
        Url::parse(&format!("http://127.0.0.1:{port}/releases.json")).expect("url")
    }

    #[test]
    fn downloads_are_bounded_whatever_the_server_announces() {
        let body = br#"{"layers": []}"#.to_vec();
        let url =
            serve(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()), body);
        assert!(fetch(&Location::Url(url)).is_ok());
        let url = serve(format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_CATALOG_BYTES + 1), Vec::new());
        assert!(
            matches!(fetch(&Location::Url(url)), Err(FetchError::TooLarge { .. })),
            "an announced size is believed"
        );
        let huge = vec![b' '; usize::try_from(MAX_CATALOG_BYTES).unwrap_or(usize::MAX) + 10];
        let url = serve("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".into(), huge);
        assert!(
            matches!(fetch(&Location::Url(url)), Err(FetchError::TooLarge { .. })),
            "an unannounced size is counted"
        );
        let url = serve("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(), Vec::new());
        assert!(matches!(fetch(&Location::Url(url)), Err(FetchError::Http(HttpError::Status(_)))));
    }
}
