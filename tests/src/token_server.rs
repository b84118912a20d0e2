//! A token server for Docker distribution's bearer-token authentication, written in the
//! test code: it checks HTTP Basic credentials and issues RS256 JWTs whose `x5c` header
//! carries a throwaway self-signed certificate, the one the registry is told to trust.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509, X509NameBuilder};

/// The `service` and `issuer` the registry is configured with.
pub const SERVICE: &str = "kx-test-registry";
/// The issuer named in every token.
pub const ISSUER: &str = "kx-test-issuer";

/// What the server saw.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    /// `(user, scope)` of every token issued.
    pub issued: Vec<(String, String)>,
    /// Every `Authorization` header received, as sent.
    pub authorizations: Vec<String>,
}

/// A running token server; stops when dropped.
pub struct TokenServer {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
}

struct Signing {
    key: PKey<Private>,
    cert_der: Vec<u8>,
    user: String,
    password: String,
}

impl TokenServer {
    /// Starts on 127.0.0.1, admitting `user:password`; writes the certificate the
    /// registry must trust to `cert_pem`.
    pub fn start(user: &str, password: &str, cert_pem: &Path) -> Self {
        let key = PKey::from_rsa(Rsa::generate(2048).expect("rsa key")).expect("pkey");
        let mut name = X509NameBuilder::new().expect("name");
        name.append_entry_by_text("CN", "kx token signer").expect("cn");
        let name = name.build();
        let mut cert = X509::builder().expect("x509");
        cert.set_version(2).expect("version");
        cert.set_subject_name(&name).expect("subject");
        cert.set_issuer_name(&name).expect("issuer");
        cert.set_pubkey(&key).expect("pubkey");
        let serial = openssl::bn::BigNum::from_u32(1).and_then(|b| b.to_asn1_integer()).expect("serial");
        cert.set_serial_number(&serial).expect("serial");
        cert.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).expect("now")).expect("not before");
        cert.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).expect("tomorrow")).expect("not after");
        cert.sign(&key, MessageDigest::sha256()).expect("self-sign");
        let cert = cert.build();
        std::fs::write(cert_pem, cert.to_pem().expect("pem")).expect("write certificate");
        let signing = Arc::new(Signing {
            key,
            cert_der: cert.to_der().expect("der"),
            user: user.to_owned(),
            password: password.to_owned(),
        });

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (flag, record) = (stop.clone(), seen.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                answer(stream, &signing, &record);
            }
        });
        Self { port, stop, seen }
    }

    /// The realm URL to configure in the registry.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// What the server saw so far.
    pub fn seen(&self) -> Seen {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn answer(mut stream: TcpStream, signing: &Signing, seen: &Mutex<Seen>) {
    let Ok(clone) = stream.try_clone() else { return };
    let mut reader = BufReader::new(clone);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).map(|n| n == 0).unwrap_or(true) || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("authorization")
        {
            authorization = Some(value.trim().to_owned());
        }
    }
    let scope = request_line
        .split_whitespace()
        .nth(1)
        .and_then(|target| target.split_once('?'))
        .and_then(|(_, query)| query.split('&').find_map(|kv| kv.strip_prefix("scope=")))
        .map(percent_decode)
        .unwrap_or_default();
    let credentials = authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let admitted = credentials == Some(format!("{}:{}", signing.user, signing.password));
    if let Ok(mut seen) = seen.lock() {
        seen.authorizations.extend(authorization);
        if admitted {
            seen.issued.push((signing.user.clone(), scope.clone()));
        }
    }
    if !admitted {
        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#;
        let _ = write!(
            stream,
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    }
    let body = format!(r#"{{"token":"{}"}}"#, token(signing, &scope));
    let _ = write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// A JWT granting what `scope` (`repository:NAME:ACTIONS`) asks for.
fn token(signing: &Signing, scope: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut parts = scope.splitn(3, ':');
    let (kind, name, actions) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(&signing.cert_der)]});
    let claims = serde_json::json!({
        "iss": ISSUER, "sub": signing.user, "aud": SERVICE,
        "exp": now + 300, "nbf": now.saturating_sub(10), "iat": now.saturating_sub(10),
        "jti": format!("kx-{now}-{}", name.len()),
        "access": [{"type": kind, "name": name, "actions": actions}],
    });
    let signed =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut signer = Signer::new(MessageDigest::sha256(), &signing.key).expect("signer");
    signer.update(signed.as_bytes()).expect("sign");
    let signature = signer.sign_to_vec().expect("signature");
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
