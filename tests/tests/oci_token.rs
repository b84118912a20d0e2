//! Installing from a real registry (Debian's docker-registry) that uses bearer-token
//! authentication, with a token server written in the test code.

use std::fs;

use base64::Engine as _;
use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::registry::{Layout, Registry, gzip, tar};
use kairos_extensions_tests::token_server::TokenServer;
use kairos_extensions_tests::{bins, privileged, stderr};

#[test]
fn bearer_tokens_are_fetched_with_the_registrys_own_credentials() {
    if !privileged("bearer_tokens_are_fetched_with_the_registrys_own_credentials") {
        return;
    }
    let scratch = tempfile::Builder::new().prefix("kx-token-").tempdir().expect("scratch");
    let cert = scratch.path().join("signer.pem");
    let tokens = TokenServer::start("kx", "t0ken-pw", &cert);
    let registry = Registry::start_with_token_auth(&tokens, &cert);
    let ns = Namespace::new();

    let image = ImageBuilder::new("hello").build(scratch.path(), "hello.img");
    let plain = tar(&[("hello.raw", &fs::read(image).expect("image"))]);
    let layout_dir = scratch.path().join("layout");
    let mut layout = Layout::new(&layout_dir);
    let arch = if std::env::consts::ARCH == "aarch64" { "arm64" } else { "amd64" };
    layout.image(arch, &gzip(&plain), "application/vnd.oci.image.layer.v1.tar+gzip", &plain);
    layout.finish("v1");
    // skopeo does the same token flow for its push.
    registry.push_as(&layout_dir, "v1", "hello", false, Some("kx:t0ken-pw"));
    let pushed = tokens.seen().issued.len();
    assert!(pushed > 0, "skopeo's push must have gone through the token server");

    let config = scratch.path().join("extensions.toml");
    fs::write(
        &config,
        format!("insecure_registries = [\"{}\"]\nregistry_auth = \"/run/auth.json\"\n", registry.host()),
    )
    .expect("config");
    let write_auth = |host: &str, password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("kx:{password}"));
        fs::write(ns.host_path("/run/auth.json"), format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#))
            .expect("auth.json");
    };
    let install = || {
        ns.command(bins::kairos_ext())
            .args(["--root", "/", "--config"])
            .arg(&config)
            .args(["install", &format!("oci://{}/hello:v1", registry.host()), "--replace"])
            .output()
            .expect("kairos-ext")
    };
    let stored = || ns.store().join("hello.raw").exists();
    let sent_the_password = || {
        tokens
            .seen()
            .authorizations
            .iter()
            .any(|a| a.contains(&base64::engine::general_purpose::STANDARD.encode("kx:t0ken-pw")))
    };

    let out = install();
    assert!(!out.status.success(), "without auth.json the registry must refuse");
    assert!(!stored());
    assert_eq!(tokens.seen().issued.len(), pushed, "no token for an anonymous pull");

    let before = tokens.seen().authorizations.len();
    write_auth("registry.example.com", "t0ken-pw");
    let out = install();
    assert!(!out.status.success(), "another registry's credentials must not be used");
    assert!(!stored());
    assert!(
        !tokens.seen().authorizations[before..].iter().any(|a| a.starts_with("Basic ")),
        "no credentials may reach the token server for another host's entry"
    );

    write_auth(&registry.host(), "wrong");
    let out = install();
    assert!(!out.status.success(), "a wrong password must fail");
    assert!(stderr(&out).to_lowercase().contains("auth"), "the failure names authentication: {}", stderr(&out));
    assert!(!stored());

    write_auth(&registry.host(), "t0ken-pw");
    let out = install();
    assert!(out.status.success(), "the registry's own credentials work: {}", stderr(&out));
    assert!(stored(), "the image is installed");
    assert!(sent_the_password());
    let seen = tokens.seen();
    assert!(
        seen.issued[pushed..].iter().any(|(user, scope)| user == "kx" && scope == "repository:hello:pull"),
        "a pull token for the repository was issued: {:?}",
        seen.issued
    );
}
