//! `--now` says what really happened to the running system: nothing is merged for a
//! boot state that is not this boot's, a merge through another state is named, a removal
//! without `--now` says the extension stays merged, and activation links that immucore
//! made are taken out like ours. Real systemd-sysext in a private mount namespace, the
//! offline CLI on the live root, and the service on a private bus.

use std::path::Path;
use std::process::Output;

use kairos_extensions_tests::images::ImageBuilder;
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::system::Rig;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};

fn live(ns: &Namespace, args: &[&str]) -> Output {
    let out = ns.command(bins::kairos_ext()).args(["--root", "/"]).args(args).output().expect("kairos-ext runs");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

fn hello(dir: &Path) -> String {
    ImageBuilder::new("hello").command("hello-kx", "hi").build(dir, "hello.raw").display().to_string()
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("kx-now-").tempdir().expect("scratch")
}

#[test]
fn now_for_a_state_that_is_not_this_boot_merges_nothing_and_says_so() {
    if !privileged("now_for_a_state_that_is_not_this_boot_merges_nothing_and_says_so") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());

    // Not a Kairos boot: active never applies here.
    let out = live(&ns, &["install", &image, "--enable", "active", "--now"]);
    let said = stdout(&out);
    assert!(said.contains("not booted by Kairos") && said.contains("nothing was merged now"), "{said}");
    assert!(!said.contains("merged now)"), "{said}");
    assert!(ns.merged().is_empty(), "nothing may merge: {:?}", ns.merged());
    assert!(!ns.exists("/run/extensions/hello.raw"), "nothing is activated");

    // A passive boot: active takes effect at the next active boot.
    ns.set_boot_state("passive");
    let out = live(&ns, &["enable", "hello", "--boot", "active", "--now"]);
    let said = stdout(&out);
    assert!(said.contains("takes effect at the next active boot (this is a passive boot)"), "{said}");
    assert!(ns.merged().is_empty());

    // Merged through common: enabling for this boot's state says it was merged already.
    let out = live(&ns, &["enable", "hello", "--boot", "common", "--now"]);
    assert!(stdout(&out).contains("(merged now)"), "{}", stdout(&out));
    let out = live(&ns, &["enable", "hello", "--boot", "passive", "--now"]);
    assert!(stdout(&out).contains("it was merged already, through common"), "{}", stdout(&out));
    assert_eq!(ns.merged(), ["hello"]);

    // Disabling one of two states that bring it in keeps it merged, and says through which.
    let out = live(&ns, &["disable", "hello", "--boot", "common", "--now"]);
    assert!(stdout(&out).contains("it stays merged through passive"), "{}", stdout(&out));
    assert_eq!(ns.merged(), ["hello"]);

    // Removing without --now leaves the merge, and says until when.
    let out = live(&ns, &["remove", "hello"]);
    assert!(stdout(&out).contains("it stays merged until the next refresh or boot"), "{}", stdout(&out));
    assert_eq!(ns.merged(), ["hello"], "the merge is left as it was");
}

#[test]
fn activation_links_made_by_immucore_are_taken_out_like_ours() {
    if !privileged("activation_links_made_by_immucore_are_taken_out_like_ours") {
        return;
    }
    let ns = Namespace::new();
    let dir = scratch();
    let image = hello(dir.path());
    for verb in ["disable", "remove"] {
        live(&ns, &["install", &image, "--enable", "common"]);
        // What immucore does at boot: link through the boot-state directory, then merge.
        let out = ns.run("ln", &["-sf", "/var/lib/kairos/extensions/common/hello.raw", "/run/extensions/hello.raw"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let out = ns.run("systemd-sysext", &["refresh"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(ns.merged(), ["hello"], "immucore's link merges");

        let args: &[&str] = if verb == "disable" {
            &["disable", "hello", "--boot", "common", "--now"]
        } else {
            &["remove", "hello", "--now"]
        };
        let out = live(&ns, args);
        assert!(
            stdout(&out).contains("taken out of the merge now") || stdout(&out).contains("not merged now"),
            "{}",
            stdout(&out)
        );
        assert!(ns.merged().is_empty(), "{verb} --now unmerges: {:?}", ns.merged());
        assert!(!ns.exists("/run/extensions/hello.raw"), "{verb} --now removes immucore's link");
        if verb == "disable" {
            live(&ns, &["remove", "hello"]);
        }
    }
}

#[test]
fn the_service_says_what_now_did_too() {
    if !privileged("the_service_says_what_now_did_too") {
        return;
    }
    let rig = Rig::start(&[], "idle_exit_sec = 0\n");
    let image = hello(rig.scratch.path());
    let out = rig.kairos_ext(&["install", &image, "--enable", "active", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(said.contains("not booted by Kairos") && said.contains("nothing was merged now"), "{said}");
    assert!(rig.ns.merged().is_empty());

    let out = rig.kairos_ext(&["enable", "hello", "--boot", "common", "--now"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Enabled hello for common (merged now)"), "{}", stdout(&out));
    let out = rig.kairos_ext(&["enable", "hello", "--boot", "common", "--now"]);
    assert!(stdout(&out).contains("Already enabled: hello for common (merged now)"), "{}", stdout(&out));

    let out = rig.kairos_ext(&["remove", "hello"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("it stays merged until the next refresh or boot"), "{}", stdout(&out));
}
