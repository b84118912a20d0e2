//! Our verdicts against what systemd-sysext really does, fixture by fixture.
//!
//! Each fixture is first merged by the real systemd-sysext, the host's 252 and 254
//! unpacked beside it (tests/src/systemd254.rs), in a private namespace whose os-release
//! the test controls, next to a good image: does it merge, is it skipped, or does it take
//! the good image down with it? Then for the same fixture:
//!
//! - our install verdict: the engine, offline, on a root with the same os-release;
//! - our boot verdict: the fixture put into the store by hand and enabled (as kairos-agent
//!   or an image build would, with no provenance record), `kairos-extensionsd
//!   boot-activate`, then the real 252 merge of what it linked;
//! - our reasons, and what `sysext::reason_for` makes of systemd's real output.
//!
//! Every row must agree with systemd, and the table is printed. The host's systemd
//! decides our verdicts; where 254 differs (an image shipping `/usr/lib/os-release`) the
//! rule is checked against both binaries through `Blocker::blocks_whole_merge`.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Output;

use kairos_extensions_dbus::ErrorKind;
use kairos_extensions_tests::images::{ImageBuilder, junk};
use kairos_extensions_tests::namespace::Namespace;
use kairos_extensions_tests::systemd254::Systemd254;
use kairos_extensions_tests::{bins, privileged, stderr, stdout};
use kairos_extensionsd::engine::blockers::{self, Blocker};
use kairos_extensionsd::engine::image::Access;
use kairos_extensionsd::engine::meta::Provenance;
use kairos_extensionsd::engine::progress::Silent;
use kairos_extensionsd::engine::sysext::{self, RefreshRun, Refresher, SysextError};
use kairos_extensionsd::engine::{Config, Engine, InstallRequest, full_message, release};
use serde_json::Value;

/// The os-release of the system the fixture is judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    /// Debian 12, like this machine.
    Debian,
    /// A host with a sysext level and an `ID_LIKE`.
    Kairos,
}

impl Host {
    fn os_release(self) -> &'static str {
        match self {
            Self::Debian => "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n",
            Self::Kairos => "NAME=Kairos\nID=kairos\nID_LIKE=debian\nVERSION_ID=3\nSYSEXT_LEVEL=1.0\n",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Debian => "debian 12",
            Self::Kairos => "kairos",
        }
    }
}

/// What systemd-sysext did with a fixture merged next to a good image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sysext {
    /// Both merged.
    Merges,
    /// The good image merged, the fixture did not.
    Skips,
    /// Neither merged: the fixture stopped the whole merge.
    RefusesAll,
}

/// Our verdict, at install and at boot alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ours {
    /// Installed, and activated at boot.
    Accept,
    /// Refused at install with this kind, skipped at boot; both reasons contain the text.
    Refuse(ErrorKind, &'static str),
}

struct Fixture {
    /// The row's label.
    id: &'static str,
    /// The image file's name, in /run/extensions for the systemd runs and in the store.
    file: &'static str,
    host: Host,
    build: fn(&Path, &str) -> PathBuf,
    v252: Sysext,
    v254: Sysext,
    /// What 252 and 254 print about it ("" when they say nothing).
    says: (&'static str, &'static str),
    /// The property of the image [`blockers::find`] must report.
    blocker: Option<Blocker>,
    ours: Ours,
}

const INVALID: ErrorKind = ErrorKind::InvalidImage;
const INCOMPATIBLE: ErrorKind = ErrorKind::Incompatible;
const NO_MEDIUM: &str = "No medium found";
/// What an image that wrongly carries an os-release of its own would carry.
const OS_RELEASE: &str = "ID=debian\nVERSION_ID=12\n";
const SHIPS_OS_RELEASE_252: &str = "Extension image contains /usr/lib/os-release file, which is not allowed";
const SHIPS_OS_RELEASE_254: &str = "Failed to mount image: No medium found";

fn release_named(name: &str, release: &str) -> ImageBuilder {
    ImageBuilder::new(name).release(release).command(&format!("{name}-cmd"), name)
}

fn fixtures() -> Vec<Fixture> {
    use Ours::{Accept, Refuse};
    use Sysext::{Merges, RefusesAll, Skips};
    vec![
        Fixture {
            id: "ID=_any",
            file: "anyid.raw",
            host: Host::Debian,
            build: |d, f| release_named("anyid", "ID=_any\n").build(d, f),
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "ships /usr/lib/os-release",
            file: "osrel.raw",
            host: Host::Debian,
            build: |d, f| release_named("osrel", "ID=_any\n").file("usr/lib/os-release", OS_RELEASE).build(d, f),
            v252: RefusesAll,
            v254: Skips,
            says: (SHIPS_OS_RELEASE_252, SHIPS_OS_RELEASE_254),
            blocker: Some(Blocker::OsRelease),
            ours: Refuse(INVALID, "ships /usr/lib/os-release"),
        },
        Fixture {
            id: "usr/lib/os-release symlink",
            file: "osrellink.raw",
            host: Host::Debian,
            build: |d, f| {
                release_named("osrellink", "ID=_any\n")
                    .file("etc/os-release", "ID=debian\nVERSION_ID=12\n")
                    .symlink("usr/lib/os-release", "../../etc/os-release")
                    .build(d, f)
            },
            v252: RefusesAll,
            v254: Skips,
            says: (SHIPS_OS_RELEASE_252, SHIPS_OS_RELEASE_254),
            blocker: Some(Blocker::OsRelease),
            ours: Refuse(INVALID, "ships /usr/lib/os-release"),
        },
        Fixture {
            id: "os-release, no release file",
            file: "osrelonly.raw",
            host: Host::Debian,
            build: |d, f| {
                ImageBuilder::new("osrelonly").without_release().file("usr/lib/os-release", OS_RELEASE).build(d, f)
            },
            v252: RefusesAll,
            v254: Skips,
            says: (SHIPS_OS_RELEASE_252, SHIPS_OS_RELEASE_254),
            blocker: Some(Blocker::OsRelease),
            ours: Refuse(INVALID, "ships /usr/lib/os-release"),
        },
        Fixture {
            id: "dangling os-release link",
            file: "dangling.raw",
            host: Host::Debian,
            build: |d, f| {
                release_named("dangling", "ID=_any\n").symlink("usr/lib/os-release", "../../nowhere").build(d, f)
            },
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "/etc/os-release only",
            file: "etcosrel.raw",
            host: Host::Debian,
            build: |d, f| release_named("etcosrel", "ID=_any\n").file("etc/os-release", "ID=debian\n").build(d, f),
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "no release file",
            file: "norelease.raw",
            host: Host::Debian,
            build: |d, f| ImageBuilder::new("norelease").without_release().command("norelease-cmd", "x").build(d, f),
            v252: RefusesAll,
            v254: RefusesAll,
            says: (NO_MEDIUM, NO_MEDIUM),
            blocker: None,
            ours: Refuse(INVALID, "no /usr/lib/extension-release.d/extension-release.<NAME> file"),
        },
        Fixture {
            id: "release is a directory",
            file: "reldir.raw",
            host: Host::Debian,
            build: |d, f| {
                ImageBuilder::new("reldir")
                    .without_release()
                    .dir("usr/lib/extension-release.d/extension-release.reldir")
                    .build(d, f)
            },
            v252: RefusesAll,
            v254: RefusesAll,
            says: ("image reldir: Is a directory", "image reldir: Is a directory"),
            blocker: None,
            ours: Refuse(INVALID, "no /usr/lib/extension-release.d/extension-release.<NAME> file"),
        },
        Fixture {
            id: "release is a symlink",
            file: "rellink.raw",
            host: Host::Debian,
            build: |d, f| {
                ImageBuilder::new("rellink")
                    .without_release()
                    .file("usr/lib/extension-release.d/real", "ID=_any\n")
                    .symlink("usr/lib/extension-release.d/extension-release.rellink", "real")
                    .build(d, f)
            },
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "release name != file name",
            file: "misnamed.raw",
            host: Host::Debian,
            build: |d, f| release_named("renamed", "ID=_any\n").build(d, f),
            v252: RefusesAll,
            v254: RefusesAll,
            says: ("image misnamed: No medium found", "image misnamed: No medium found"),
            blocker: None,
            // We store and link it under its release name, where systemd merges it.
            ours: Accept,
        },
        Fixture {
            id: "NAME.sysext.raw",
            file: "k3s.sysext.raw",
            host: Host::Debian,
            build: |d, f| release_named("k3s", "ID=_any\n").build(d, f),
            v252: RefusesAll,
            v254: RefusesAll,
            says: ("image k3s.sysext: No medium found", "image k3s.sysext: No medium found"),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "not a file system",
            file: "junk.raw",
            host: Host::Debian,
            build: |d, f| junk(d, f, 200_000),
            v252: RefusesAll,
            v254: RefusesAll,
            says: ("image junk: Package not installed", "image junk: Package not installed"),
            blocker: None,
            ours: Refuse(INVALID, "no partition table or file system"),
        },
        Fixture {
            id: "empty file",
            file: "empty.raw",
            host: Host::Debian,
            build: |d, f| junk(d, f, 0),
            v252: RefusesAll,
            v254: RefusesAll,
            says: ("image empty: Package not installed", "image empty: Package not installed"),
            blocker: None,
            ours: Refuse(INVALID, "no partition table or file system"),
        },
        Fixture {
            id: "/opt is a file",
            file: "optfile.raw",
            host: Host::Debian,
            build: |d, f| release_named("optfile", "ID=_any\n").file("opt", "not a directory\n").build(d, f),
            v252: RefusesAll,
            v254: RefusesAll,
            says: ("extensions/optfile/opt' in extension", "extensions/optfile/opt' in extension"),
            blocker: Some(Blocker::NotADirectory("/opt")),
            ours: Refuse(INVALID, "/opt is not a directory"),
        },
        Fixture {
            id: "/opt links to a file",
            file: "optlink.raw",
            host: Host::Debian,
            build: |d, f| release_named("optlink", "ID=_any\n").symlink("opt", "usr/bin/optlink-cmd").build(d, f),
            v252: RefusesAll,
            v254: RefusesAll,
            says: (
                "in extension '/run/systemd/sysext/extensions/optlink'",
                "in extension '/run/systemd/sysext/extensions/optlink'",
            ),
            blocker: Some(Blocker::NotADirectory("/opt")),
            ours: Refuse(INVALID, "/opt is not a directory"),
        },
        Fixture {
            id: "/opt is a directory",
            file: "optdir.raw",
            host: Host::Debian,
            build: |d, f| release_named("optdir", "ID=_any\n").file("opt/optdir/data", "x\n").build(d, f),
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "empty release file",
            file: "emptyrel.raw",
            host: Host::Debian,
            build: |d, f| release_named("emptyrel", "").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "extension-release is empty"),
        },
        Fixture {
            id: "ID of another OS",
            file: "fedora.raw",
            host: Host::Debian,
            build: |d, f| release_named("fedora", "ID=fedora\nVERSION_ID=40\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "ID=\"fedora\" does not match"),
        },
        Fixture {
            id: "ID missing",
            file: "noid.raw",
            host: Host::Debian,
            build: |d, f| release_named("noid", "VERSION_ID=12\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "ID is missing"),
        },
        Fixture {
            id: "VERSION_ID matches",
            file: "deb12.raw",
            host: Host::Debian,
            build: |d, f| release_named("deb12", "ID=debian\nVERSION_ID=12\n").build(d, f),
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "VERSION_ID differs",
            file: "deb11.raw",
            host: Host::Debian,
            build: |d, f| release_named("deb11", "ID=debian\nVERSION_ID=11\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "VERSION_ID=\"11\" does not match"),
        },
        Fixture {
            id: "ARCHITECTURE=arm64",
            file: "arm.raw",
            host: Host::Debian,
            build: |d, f| release_named("arm", "ID=_any\nARCHITECTURE=arm64\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "ARCHITECTURE=\"arm64\""),
        },
        Fixture {
            id: "SYSEXT_SCOPE=initrd",
            file: "initrd.raw",
            host: Host::Debian,
            build: |d, f| release_named("initrd", "ID=_any\nSYSEXT_SCOPE=initrd\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "SYSEXT_SCOPE=\"initrd\""),
        },
        Fixture {
            id: "SYSEXT_LEVEL matches",
            file: "level.raw",
            host: Host::Kairos,
            build: |d, f| release_named("level", "ID=kairos\nSYSEXT_LEVEL=1.0\nVERSION_ID=9\n").build(d, f),
            v252: Merges,
            v254: Merges,
            says: ("", ""),
            blocker: None,
            ours: Accept,
        },
        Fixture {
            id: "SYSEXT_LEVEL differs",
            file: "level2.raw",
            host: Host::Kairos,
            build: |d, f| release_named("level2", "ID=kairos\nSYSEXT_LEVEL=2.0\nVERSION_ID=3\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "SYSEXT_LEVEL=\"2.0\" does not match"),
        },
        Fixture {
            id: "VERSION_ID differs, no level",
            file: "kairos4.raw",
            host: Host::Kairos,
            build: |d, f| release_named("kairos4", "ID=kairos\nVERSION_ID=4\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "VERSION_ID=\"4\" does not match"),
        },
        Fixture {
            id: "ID matches ID_LIKE only",
            file: "idlike.raw",
            host: Host::Kairos,
            build: |d, f| release_named("idlike", "ID=debian\nSYSEXT_LEVEL=1.0\n").build(d, f),
            v252: Skips,
            v254: Skips,
            says: ("", ""),
            blocker: None,
            ours: Refuse(INCOMPATIBLE, "ID=\"debian\" does not match the host's ID=\"kairos\""),
        },
    ]
}

/// The image every fixture is merged next to; compatible with every host here.
fn good(dir: &Path) -> PathBuf {
    ImageBuilder::new("good").command("good-cmd", "good").build(dir, "good.raw")
}

/// A namespace whose `/etc/os-release` (a link to `/usr/lib/os-release` on Debian) says
/// `host`; the host's own file is left alone.
fn namespace(host: Host, scratch: &Path) -> Namespace {
    let file = scratch.join(format!("os-release.{}", host.label().replace(' ', "-")));
    fs::write(&file, host.os_release()).expect("os-release");
    let ns = Namespace::new();
    let out = ns.run("mount", &["--bind", file.to_str().expect("utf-8 path"), "/usr/lib/os-release"]);
    assert!(out.status.success(), "bind-mounting os-release: {}", stderr(&out));
    let seen = ns.run("cat", &["/etc/os-release"]);
    assert_eq!(stdout(&seen), host.os_release(), "the namespace must see the fixture's os-release");
    ns
}

/// What one systemd-sysext merge of `fixture` next to `good.raw` did, and what it said.
struct Observed {
    verdict: Sysext,
    run: RefreshRun,
}

fn observe(fixture: &Fixture, image: &Path, good: &Path, scratch: &Path, v254: Option<&Systemd254>) -> Observed {
    let ns = namespace(fixture.host, scratch);
    fs::copy(image, ns.host_path("/run/extensions/").join(fixture.file)).expect("place the fixture");
    fs::copy(good, ns.host_path("/run/extensions/good.raw")).expect("place the good image");
    let out = match v254 {
        Some(v254) => v254.command_in(&ns, v254.sysext()).arg("merge").output().expect("systemd-sysext 254 runs"),
        None => ns.run("systemd-sysext", &["merge"]),
    };
    let merged = ns.merged();
    let stem = systemd_name(fixture.file);
    let verdict = match (merged.iter().any(|m| m == stem), merged.iter().any(|m| m == "good")) {
        (true, true) => Sysext::Merges,
        (false, true) => Sysext::Skips,
        (false, false) => Sysext::RefusesAll,
        (true, false) => panic!("{}: the fixture merged but the good image did not: {}", fixture.id, log(&out)),
    };
    Observed { verdict, run: RefreshRun { success: out.status.success(), log: log(&out) } }
}

/// The name systemd-sysext 252 and 254 give an image file: its name without `.raw`.
fn systemd_name(file: &str) -> &str {
    file.strip_suffix(".raw").unwrap_or(file)
}

fn log(out: &Output) -> String {
    format!("{}{}", stdout(out), stderr(out))
}

/// Committing an install never refreshes; this says so loudly if it does.
struct NoRefresh;

impl Refresher for NoRefresh {
    fn refresh(&self) -> Result<RefreshRun, SysextError> {
        Err(SysextError::Unavailable("an install without `now` must not refresh".into()))
    }
}

/// Our install verdict: the engine, offline, on a root whose os-release says `host`.
fn install(image: &Path, host: Host) -> Result<String, (ErrorKind, String)> {
    let root = tempfile::Builder::new().prefix("kx-verdict-root-").tempdir().expect("root");
    fs::create_dir_all(root.path().join("etc")).expect("etc");
    fs::write(root.path().join("etc/os-release"), host.os_release()).expect("os-release");
    let engine = Engine::open(root.path(), Config::default(), Box::new(NoRefresh)).expect("engine");
    let outcome = engine.install_file(image, &InstallRequest::default(), &Silent);
    let listed = fs::read_dir(engine.layout().store())
        .expect("store")
        .filter_map(|e| e.ok()?.file_name().to_str().filter(|n| n.ends_with(".raw")).map(str::to_owned))
        .collect::<Vec<_>>();
    match outcome {
        Ok(installed) => {
            assert_eq!(listed, std::slice::from_ref(&installed.file), "an install stores exactly its image");
            Ok(installed.name.to_string())
        }
        Err(e) => {
            assert!(listed.is_empty(), "a refused install must leave the store empty: {listed:?}");
            Err((e.kind(), full_message(&e)))
        }
    }
}

/// Our boot verdict: the fixture in the store by hand, enabled for `common`, next to
/// the good image; boot-activate; then the real 252 merge of what it linked.
struct Booted {
    /// The name it was activated under, or why it was skipped.
    verdict: Result<String, String>,
    /// What the merge afterwards merged.
    merged: Vec<String>,
    /// The names boot-activate linked.
    activated: Vec<String>,
}

fn boot(fixture: &Fixture, image: &Path, good: &Path, scratch: &Path) -> Booted {
    let ns = namespace(fixture.host, scratch);
    place(&ns, image, fixture.file);
    place(&ns, good, "good.raw");
    let out = ns.command(bins::kairos_extensionsd()).arg("boot-activate").output().expect("boot-activate runs");
    assert!(out.status.success(), "{}: boot-activate must succeed whatever the images: {}", fixture.id, log(&out));
    let report: Value = serde_json::from_str(
        &fs::read_to_string(ns.host_path("/run/kairos-extensions/boot.json")).expect("boot.json written"),
    )
    .expect("boot.json is JSON");
    let names = |key: &str| -> Vec<(String, String)> {
        report[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        let name = e["name"].as_str().unwrap_or("").to_owned();
                        let detail = e["file"].as_str().or(e["reason"].as_str()).unwrap_or("").to_owned();
                        (name, detail)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let activated = names("activated");
    let skipped = names("skipped");
    let verdict = match (activated.iter().find(|(_, file)| file == fixture.file), skipped.as_slice()) {
        (Some((name, _)), []) => Ok(name.clone()),
        (None, [(_, reason)]) => Err(reason.clone()),
        _ => panic!("{}: expected the fixture either activated or skipped, once: {report}", fixture.id),
    };
    assert!(activated.iter().any(|(n, _)| n == "good"), "{}: the good image must activate: {report}", fixture.id);
    let merge = ns.run("systemd-sysext", &["merge"]);
    assert!(merge.status.success(), "{}: merging what boot-activate linked: {}", fixture.id, log(&merge));
    let mut merged = ns.merged();
    merged.sort();
    let mut activated: Vec<String> = activated.into_iter().map(|(n, _)| n).collect();
    activated.sort();
    Booted { verdict, merged, activated }
}

/// Puts `image` into the store as `file` and enables it for `common`, by hand.
fn place(ns: &Namespace, image: &Path, file: &str) {
    fs::copy(image, ns.store().join(file)).expect("copy into the store");
    enable_by_hand(ns, file);
}

/// Enables the store file `file` for `common` the way kairos-agent does: a relative link.
fn enable_by_hand(ns: &Namespace, file: &str) {
    let common = ns.store().join("common");
    fs::create_dir_all(&common).expect("common");
    symlink(format!("../{file}"), common.join(file)).expect("enable link");
}

fn describe(verdict: &Result<String, (ErrorKind, String)>) -> String {
    match verdict {
        Ok(name) => format!("ok ({name})"),
        Err((kind, _)) => format!("refused ({kind:?})"),
    }
}

#[test]
fn our_verdicts_agree_with_systemd_sysext() {
    if !privileged("our_verdicts_agree_with_systemd_sysext") {
        return;
    }
    let Some(v254) = Systemd254::require("our_verdicts_agree_with_systemd_sysext") else { return };
    let host_version = sysext::host_systemd_version();
    assert_eq!(host_version, Some(252), "the expectations below are the host's systemd 252's");
    let scratch = tempfile::Builder::new().prefix("kx-verdicts-").tempdir().expect("scratch");
    let good = good(scratch.path());

    let mut table = vec![format!(
        "{:<30} {:<10} {:<11} {:<11} {:<26} {:<18} our reason",
        "fixture", "host", "252", "254", "install", "boot-activate"
    )];
    let mut differ = Vec::new();
    let mut problems = Vec::new();
    for fixture in fixtures() {
        let dir = tempfile::tempdir_in(scratch.path()).expect("fixture dir");
        let image = (fixture.build)(dir.path(), fixture.file);
        let at252 = observe(&fixture, &image, &good, scratch.path(), None);
        let at254 = observe(&fixture, &image, &good, scratch.path(), Some(&v254));
        let installed = install(&image, fixture.host);
        let booted = boot(&fixture, &image, &good, scratch.path());
        let mut check = |ok: bool, what: String| {
            if !ok {
                problems.push(format!("{}: {what}", fixture.id));
            }
        };

        // systemd-sysext does what the fixture records, in both versions.
        check(
            at252.verdict == fixture.v252,
            format!("252 {:?}, expected {:?}: {}", at252.verdict, fixture.v252, at252.run.log),
        );
        check(
            at254.verdict == fixture.v254,
            format!("254 {:?}, expected {:?}: {}", at254.verdict, fixture.v254, at254.run.log),
        );
        if at252.verdict != at254.verdict {
            differ.push(format!("{} (252 {:?}, 254 {:?})", fixture.id, at252.verdict, at254.verdict));
        }
        // What each printed, and what reason_for finds in it.
        for (version, observed, says) in [(252, &at252, fixture.says.0), (254, &at254, fixture.says.1)] {
            let name = systemd_name(fixture.file);
            if says.is_empty() {
                let silent = observed
                    .run
                    .log
                    .lines()
                    .all(|l| l.starts_with("Using extensions") || l.starts_with("Merged extensions"));
                check(silent, format!("{version} was expected to say nothing: {}", observed.run.log));
                continue;
            }
            check(observed.run.log.contains(says), format!("{version} did not print {says:?}: {}", observed.run.log));
            let reason = sysext::reason_for(name, &observed.run);
            check(reason.contains(says), format!("reason_for on {version}'s output: {reason:?}"));
            if observed.verdict == Sysext::RefusesAll {
                let collateral = sysext::reason_for("good", &observed.run);
                check(
                    collateral.contains("refused the whole merge"),
                    format!("good's reason on {version}: {collateral:?}"),
                );
            }
        }
        // The blocker, and the version rule, against both binaries.
        let found = blockers::find(&image, dir.path(), Access::AsSysext).ok().flatten();
        check(found == fixture.blocker, format!("blockers::find gave {found:?}"));
        if let Some(blocker) = found {
            for (version, observed) in [(252, &at252), (254, &at254)] {
                let whole = blocker.blocks_whole_merge(Some(version));
                check(
                    whole == (observed.verdict == Sysext::RefusesAll),
                    format!("blocks_whole_merge({version}) = {whole}"),
                );
            }
        }

        // Our install verdict.
        match (&installed, fixture.ours) {
            (Ok(_), Ours::Accept) => {}
            (Err((kind, message)), Ours::Refuse(expected, says)) => {
                check(*kind == expected, format!("install refused as {kind:?}, expected {expected:?}: {message}"));
                check(message.contains(says), format!("install reason {message:?} lacks {says:?}"));
            }
            (other, expected) => check(false, format!("install gave {other:?}, expected {expected:?}")),
        }
        // Our boot verdict, the same one.
        match (&booted.verdict, fixture.ours) {
            (Ok(_), Ours::Accept) => {}
            (Err(reason), Ours::Refuse(_, says)) => {
                check(reason.contains(says), format!("boot reason {reason:?} lacks {says:?}"))
            }
            (other, expected) => check(false, format!("boot-activate gave {other:?}, expected {expected:?}")),
        }
        // What we activate is exactly what then merges: nothing activated blocks the rest.
        check(
            booted.merged == booted.activated,
            format!("boot activated {:?} but {:?} merged", booted.activated, booted.merged),
        );
        // Agreement with the host's systemd: a refused image is one systemd would not
        // merge; an accepted one under its own name is one it merges. Accepted images that
        // systemd refuses by file name are stored and linked under their release name,
        // where the merge above proves that they merge.
        match (&installed, &booted.verdict) {
            (Err(_), _) => check(at252.verdict != Sysext::Merges, "refused, yet systemd merges it".to_owned()),
            (Ok(name), _) if name == systemd_name(fixture.file) => {
                check(at252.verdict == Sysext::Merges, format!("accepted, yet systemd {:?}", at252.verdict));
            }
            (Ok(name), Ok(linked)) => check(
                name == linked && booted.merged.contains(name),
                format!("accepted as {name}, activated as {linked}, merged {:?}", booted.merged),
            ),
            (Ok(_), Err(reason)) => check(false, format!("installable but skipped at boot: {reason}")),
        }

        let reason = match (&installed, &booted.verdict) {
            (Err((_, message)), _) => message.trim_start_matches("invalid image: ").to_owned(),
            (_, Err(reason)) => reason.clone(),
            _ => String::new(),
        };
        let boot = match &booted.verdict {
            Ok(name) => format!("activated ({name})"),
            Err(_) => "skipped".to_owned(),
        };
        table.push(format!(
            "{:<30} {:<10} {:<11} {:<11} {:<26} {:<18} {}",
            fixture.id,
            fixture.host.label(),
            format!("{:?}", at252.verdict),
            format!("{:?}", at254.verdict),
            describe(&installed),
            boot,
            reason
        ));
    }
    eprintln!("{}", table.join("\n"));
    eprintln!(
        "systemd 252 and 254 differ on: {}",
        if differ.is_empty() { "nothing".to_owned() } else { differ.join("; ") }
    );
    assert!(problems.is_empty(), "verdicts that disagree:\n{}", problems.join("\n"));
    assert!(!differ.is_empty(), "252 and 254 are known to differ on os-release images");
}

/// An image shipping /usr/lib/os-release that an earlier version of the service
/// installed: its provenance record says nothing of the check, yet boot skips it.
fn installed_before_the_check(ns: &Namespace, dir: &Path) {
    let release = "ID=_any\nSYSEXT_VERSION_ID=1\n";
    let image = release_named("osrel", release).file("usr/lib/os-release", "ID=debian\n").build(dir, "osrel.raw");
    let store = ns.store();
    fs::copy(&image, store.join("osrel.raw")).expect("store the image");
    let meta = fs::metadata(store.join("osrel.raw")).expect("stored image");
    let bytes = fs::read(store.join("osrel.raw")).expect("read image");
    let record = Provenance {
        name: "osrel".into(),
        file: "osrel.raw".into(),
        source: format!("file://{}", image.display()),
        resolved_digest: None,
        catalog: None,
        validators: None,
        digest: kairos_extensions_tests::registry::digest(&bytes),
        size: meta.len(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        installed_time_us: 1,
        release: release::parse(release),
    };
    fs::create_dir_all(store.join(".meta")).expect(".meta");
    fs::write(store.join(".meta/osrel.json"), serde_json::to_vec(&record).expect("record JSON")).expect("record");
}

fn live(ns: &Namespace, args: &[&str]) -> Output {
    ns.command(bins::kairos_ext()).args(["--root", "/"]).args(args).output().expect("kairos-ext runs")
}

#[test]
fn an_os_release_image_with_an_old_record_is_skipped_at_boot() {
    if !privileged("an_os_release_image_with_an_old_record_is_skipped_at_boot") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    installed_before_the_check(&ns, dir.path());
    enable_by_hand(&ns, "osrel.raw");
    let listed: Vec<Value> = serde_json::from_slice(&live(&ns, &["list", "--json"]).stdout).expect("list --json");
    assert_eq!(listed[0]["compatible"], true, "the record vouches for it, as it did before the check existed");
    place(&ns, &good(dir.path()), "good.raw");

    let out = ns.command(bins::kairos_extensionsd()).arg("boot-activate").output().expect("boot-activate runs");
    assert!(out.status.success(), "{}", log(&out));
    let report: Value =
        serde_json::from_str(&fs::read_to_string(ns.host_path("/run/kairos-extensions/boot.json")).expect("boot.json"))
            .expect("JSON");
    assert_eq!(report["activated"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["activated"][0]["name"], "good");
    assert_eq!(report["skipped"][0]["name"], "osrel");
    let reason = report["skipped"][0]["reason"].as_str().unwrap_or("");
    assert_eq!(
        reason,
        "the image ships /usr/lib/os-release, which systemd-sysext refuses \
         (it would merge nothing at all, the other extensions included)"
    );
    let merge = ns.run("systemd-sysext", &["merge"]);
    assert!(merge.status.success(), "{}", log(&merge));
    assert_eq!(ns.merged(), ["good"], "the good extension merges at boot");
}

#[test]
fn now_reports_the_reason_systemd_printed() {
    if !privileged("now_reports_the_reason_systemd_printed") {
        return;
    }
    let ns = Namespace::new();
    let dir = tempfile::tempdir().expect("scratch");
    let good = good(dir.path());
    let out = live(&ns, &["install", good.to_str().expect("utf-8"), "--enable", "common", "--now"]);
    assert!(out.status.success(), "{}", log(&out));
    installed_before_the_check(&ns, dir.path());

    let out = live(&ns, &["enable", "osrel", "--common", "--now"]);
    assert!(!out.status.success(), "an image systemd refuses must not look enabled");
    let message = stderr(&out);
    assert!(message.contains("\"osrel\" did not merge"), "{message}");
    assert!(
        message.contains(
            "systemd-sysext refused the whole merge: Extension image contains /usr/lib/os-release file, \
             which is not allowed (it may carry /etc/os-release), refusing."
        ),
        "the reason is the one systemd printed: {message}"
    );
    assert!(!message.contains("without saying why"), "{message}");
    assert!(!ns.host_path("/run/extensions/osrel.raw").exists(), "the activation is rolled back");
    assert!(!ns.store().join("common/osrel.raw").exists(), "the enablement is rolled back");
    assert_eq!(ns.merged(), ["good"], "the merge that was in place stays");
}
