//! What gets shipped: `make install` into a DESTDIR, the Debian package installed into a
//! throwaway root with its maintainer scripts, the man pages as `man` renders them, and the
//! shell completions as the shells read them.
//!
//! These run the project's own Makefile on the debug build (`PROFILE=debug`), which `make
//! test` has built: a release build here would take minutes. Stripping, splitting debug
//! info and packaging are the same for both profiles.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use kairos_extensions_tests::{privileged, require, stderr, stdout};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `target/` and the profile the tests were built with.
fn build() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps");
    let profile = profile_dir.file_name().expect("profile directory has a name").to_string_lossy().into_owned();
    (profile_dir.parent().expect("target directory").to_path_buf(), profile)
}

/// Tools these tests run, with their Debian packages (`make test` installs them).
const TOOLS: [(&str, &str); 8] = [
    ("/usr/bin/make", "make"),
    ("/usr/bin/objcopy", "binutils"),
    ("/usr/bin/readelf", "binutils"),
    ("/usr/bin/man", "man-db"),
    ("/usr/bin/groff", "groff-base"),
    ("/usr/bin/zsh", "zsh"),
    ("/usr/bin/fish", "fish"),
    ("/usr/bin/dpkg-deb", "dpkg"),
];

/// Like [`privileged`] for tests that need the packaging tools but not root.
fn tools(test: &str) -> bool {
    let missing: Vec<String> = TOOLS
        .iter()
        .filter(|(tool, _)| !Path::new(tool).exists())
        .map(|(t, p)| format!("{t} (Debian package {p})"))
        .collect();
    require(test, &missing)
}

/// Runs `make TARGET VARS...` in the repository on the debug build, once [`dist`] is made.
fn make(target: &str, vars: &[(&str, &Path)]) -> Output {
    let (target_dir, profile) = build();
    let mut cmd = Command::new("make");
    cmd.current_dir(repo()).args(["-s", "--no-print-directory", target]);
    cmd.arg(format!("TARGET_DIR={}", target_dir.display())).arg(format!("PROFILE={profile}"));
    dist();
    for (name, value) in vars {
        cmd.arg(format!("{name}={}", value.display()));
    }
    // Only what the Makefile documents may steer it.
    cmd.env_remove("MAKEFLAGS").env_remove("PREFIX").env_remove("DESTDIR");
    let output = cmd.output().expect("make runs");
    assert!(output.status.success(), "make {target} failed:\n{}{}", stdout(&output), stderr(&output));
    output
}

/// Stripped binaries, split debug info, man pages and completions: the Makefile's own
/// `dist` directory of this profile, made (or found up to date) once, then only read.
fn dist() -> &'static Path {
    static DIST: OnceLock<PathBuf> = OnceLock::new();
    DIST.get_or_init(|| {
        let (target_dir, profile) = build();
        let output = Command::new("make")
            .current_dir(repo())
            .args(["-s", "--no-print-directory", "dist"])
            .arg(format!("TARGET_DIR={}", target_dir.display()))
            .arg(format!("PROFILE={profile}"))
            .env_remove("MAKEFLAGS")
            .output()
            .expect("make runs");
        assert!(output.status.success(), "make dist failed:\n{}{}", stdout(&output), stderr(&output));
        target_dir.join("dist").join(profile)
    })
}

/// Every file (and symlink) under `dir`, as absolute paths of the installed system.
fn files(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).expect("readable dir").flatten() {
            let path = entry.path();
            let kind = entry.file_type().expect("file type");
            if kind.is_dir() {
                stack.push(path);
            } else {
                out.insert(format!("/{}", path.strip_prefix(dir).expect("under dir").display()));
            }
        }
    }
    out
}

fn manifest(prefix: &str) -> BTreeSet<String> {
    let output = make("manifest", &[("PREFIX", Path::new(prefix))]);
    stdout(&output).lines().map(str::to_owned).collect()
}

fn docs() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .collect();
    names.sort();
    names
}

/// What an installation with PREFIX=/usr holds, spelled out: a file the Makefile drops
/// fails here, not on a user's system.
fn expected_usr() -> BTreeSet<String> {
    let mut expected: BTreeSet<String> = [
        "/usr/bin/kairos-ext",
        "/usr/libexec/kairos-extensionsd",
        "/usr/lib/systemd/system/kairos-extensionsd.service",
        "/usr/lib/systemd/system/kairos-extensions-boot.service",
        "/usr/lib/systemd/system/kairos-extensions-update.service",
        "/usr/lib/systemd/system/kairos-extensions-update.timer",
        "/usr/lib/systemd/system-generators/kairos-extensions-generator",
        "/usr/lib/tmpfiles.d/kairos-extensions.conf",
        "/usr/share/dbus-1/system-services/org.kairos.Extensions1.service",
        "/usr/share/dbus-1/system.d/org.kairos.Extensions1.conf",
        "/usr/share/dbus-1/interfaces/org.kairos.Extensions1.xml",
        "/usr/share/polkit-1/actions/org.kairos.Extensions1.policy",
        "/usr/share/man/man1/kairos-ext.1",
        "/usr/share/man/man5/org.kairos.Extensions1.5",
        "/usr/share/man/man8/kairos-extensionsd.8",
        "/usr/share/bash-completion/completions/kairos-ext",
        "/usr/share/zsh/vendor-completions/_kairos-ext",
        "/usr/share/fish/vendor_completions.d/kairos-ext.fish",
        "/usr/share/doc/kairos-extensions/README.md",
        "/usr/share/doc/kairos-extensions/extensions.toml.example",
        "/usr/share/doc/kairos-extensions/org.kairos.Extensions1.rules.example",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert!(docs().len() >= 3, "docs/ has the operator guide, the image builders' page and the image page");
    expected.extend(docs().into_iter().map(|name| format!("/usr/share/doc/kairos-extensions/{name}")));
    expected.extend(cockpit_page().into_iter().map(|file| format!("/usr/share/cockpit/kairos-extensions/{file}")));
    expected
}

/// The files of the built Cockpit page, relative to cockpit/dist (`make cockpit`, which
/// `make test` runs first, builds it).
fn cockpit_page() -> Vec<String> {
    let dist = repo().join("cockpit/dist");
    assert!(dist.join("index.html").exists(), "{} has no page: run `make cockpit` (make test does)", dist.display());
    let mut files = Vec::new();
    let mut stack = vec![dist.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("cockpit/dist is readable").flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(path);
            } else if let Ok(relative) = path.strip_prefix(&dist) {
                files.push(relative.display().to_string());
            }
        }
    }
    for wanted in ["index.html", "manifest.json", "index.js.gz", "index.css.gz"] {
        assert!(files.iter().any(|f| f == wanted), "the page has {wanted}: {files:?}");
    }
    files.sort();
    files
}

/// Installs with `PREFIX=prefix` into a fresh DESTDIR.
fn install(prefix: &str) -> tempfile::TempDir {
    let destdir = tempfile::tempdir().expect("temp dir");
    make("install", &[("PREFIX", Path::new(prefix)), ("DESTDIR", destdir.path())]);
    destdir
}

fn section_headers(binary: &Path) -> String {
    let output = Command::new("readelf").arg("-SW").arg(binary).output().expect("readelf runs");
    assert!(output.status.success(), "readelf -S {}: {}", binary.display(), stderr(&output));
    stdout(&output)
}

#[test]
fn make_install_writes_the_manifest_and_uninstall_removes_it() {
    if !tools("make_install_writes_the_manifest_and_uninstall_removes_it") {
        return;
    }
    let destdir = install("/usr");
    let root = destdir.path();
    let installed = files(root);
    assert_eq!(installed, expected_usr(), "make install PREFIX=/usr");
    assert_eq!(manifest("/usr"), installed, "make manifest names what make install writes");

    for path in &installed {
        let mode = fs::metadata(root.join(&path[1..])).expect("installed").permissions().mode() & 0o7777;
        let executable = ["/usr/bin/kairos-ext", "/usr/libexec/kairos-extensionsd"].contains(&path.as_str())
            || path.ends_with("-generator");
        assert_eq!(mode, if executable { 0o755 } else { 0o644 }, "mode of {path}");
        let text = fs::read(root.join(&path[1..])).expect("readable");
        assert!(!String::from_utf8_lossy(&text).contains("@LIBEXECDIR@"), "{path} still has a template placeholder");
    }

    // Stripped, with the debug info beside them and a link to it.
    for (installed, debug) in
        [("usr/bin/kairos-ext", "kairos-ext.debug"), ("usr/libexec/kairos-extensionsd", "kairos-extensionsd.debug")]
    {
        let headers = section_headers(&root.join(installed));
        // `.debug_gdb_scripts` is loaded with the program and stays; the DWARF goes.
        for section in [".symtab", ".debug_info", ".debug_line"] {
            assert!(!headers.contains(section), "{installed} is not stripped ({section}):\n{headers}");
        }
        assert!(headers.contains(".gnu_debuglink"), "{installed} does not name its debug file");
        let debug_headers = section_headers(&dist().join("debug").join(debug));
        assert!(debug_headers.contains(".debug_line"), "{debug} carries no line tables");
    }
    let version = Command::new(root.join("usr/bin/kairos-ext")).arg("--version").output().expect("runs");
    assert!(version.status.success() && stdout(&version).starts_with("kairos-ext "), "stripped kairos-ext runs");

    // The example configuration parses, and is the built-in defaults.
    let example =
        fs::read_to_string(root.join("usr/share/doc/kairos-extensions/extensions.toml.example")).expect("read");
    assert_eq!(kairos_extensionsd::engine::Config::parse(&example), Ok(kairos_extensionsd::engine::Config::default()));

    make("uninstall", &[("PREFIX", Path::new("/usr")), ("DESTDIR", root)]);
    assert_eq!(files(root), BTreeSet::new(), "make uninstall leaves nothing behind");
}

#[test]
fn prefix_reaches_the_units_the_generator_and_bus_activation() {
    if !tools("prefix_reaches_the_units_the_generator_and_bus_activation") {
        return;
    }
    let destdir = install("/usr/local");
    let root = destdir.path();
    let installed = files(root);
    assert_eq!(manifest("/usr/local"), installed);
    // Outside /usr these two go where dbus-daemon and polkitd read them; everything else
    // stays under the prefix.
    let elsewhere = [
        "/etc/dbus-1/system.d/org.kairos.Extensions1.conf",
        "/usr/share/polkit-1/actions/org.kairos.Extensions1.policy",
    ];
    for path in &installed {
        assert!(path.starts_with("/usr/local/") || elsewhere.contains(&path.as_str()), "{path} ignores PREFIX");
    }
    for path in elsewhere {
        assert!(installed.contains(path), "{path} is installed");
    }
    assert!(installed.contains("/usr/local/libexec/kairos-extensionsd"));

    let daemon = "/usr/local/libexec/kairos-extensionsd";
    for (file, key) in [
        ("usr/local/lib/systemd/system/kairos-extensionsd.service", "ExecStart="),
        ("usr/local/lib/systemd/system/kairos-extensions-boot.service", "ExecStart="),
        ("usr/local/share/dbus-1/system-services/org.kairos.Extensions1.service", "Exec="),
        ("usr/local/lib/systemd/system-generators/kairos-extensions-generator", "exec "),
    ] {
        let text = fs::read_to_string(root.join(file)).expect("installed");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(key)).collect();
        assert!(!lines.is_empty(), "{file} has no {key} line");
        for line in lines {
            assert!(line[key.len()..].starts_with(daemon), "{file}: {line}");
        }
        assert!(!text.contains("/usr/libexec"), "{file} still names /usr/libexec");
    }
}

/// `man` output of a page, asserting groff and man-db had nothing to warn about.
fn render(page: &Path) -> String {
    let output = Command::new("man")
        .args(["--warnings", "-l"])
        .arg(page)
        .env("LC_ALL", "C.UTF-8")
        .env("MANWIDTH", "100")
        .env_remove("MAN_KEEP_FORMATTING")
        .env_remove("MANPAGER")
        .env("PAGER", "cat")
        .output()
        .expect("man runs");
    assert!(output.status.success(), "man -l {} failed: {}", page.display(), stderr(&output));
    assert_eq!(stderr(&output), "", "man -l {} warns", page.display());
    let text = stdout(&output);
    assert!(text.contains("NAME") && text.contains("SEE ALSO"), "{} renders no page:\n{text}", page.display());
    text
}

#[test]
fn man_pages_render_without_warnings() {
    if !tools("man_pages_render_without_warnings") {
        return;
    }
    let destdir = install("/usr");
    let man = destdir.path().join("usr/share/man");
    for page in ["man1/kairos-ext.1", "man5/org.kairos.Extensions1.5", "man8/kairos-extensionsd.8"] {
        render(&man.join(page));
    }
    // The daemon's page documents its own options, as clap knows them.
    let daemon = render(&man.join("man8/kairos-extensionsd.8"));
    for option in ["--root", "--config", "--check-config", "boot-activate", "generate"] {
        assert!(daemon.contains(option), "kairos-extensionsd(8) lacks {option}");
    }
}

/// The verbs `kairos-ext --help` lists under "Commands:", without `help`.
fn verbs_of(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|v| *v != "help")
        .map(str::to_owned)
        .collect()
}

/// What bash completes for `kairos-ext WORDS...`, through the installed script.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let words_array = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
    let program = format!(
        r#"source '{script}'
func=$(complete -p kairos-ext | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
COMP_WORDS=(kairos-ext {words_array}); COMP_CWORD={cword}
COMP_LINE="${{COMP_WORDS[*]}}"; COMP_POINT=${{#COMP_LINE}}
"$func" kairos-ext "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}""#,
        script = script.display(),
        cword = words.len(),
    );
    let output = Command::new("bash").args(["--norc", "-c", &program]).output().expect("bash runs");
    assert!(output.status.success(), "bash completion failed: {}", stderr(&output));
    stdout(&output).lines().map(str::to_owned).filter(|l| !l.is_empty()).collect()
}

#[test]
fn every_verb_is_in_the_help_the_man_page_and_every_completion() {
    if !tools("every_verb_is_in_the_help_the_man_page_and_every_completion") {
        return;
    }
    let destdir = install("/usr");
    let root = destdir.path();
    let help = Command::new(root.join("usr/bin/kairos-ext")).arg("--help").output().expect("kairos-ext runs");
    assert!(help.status.success());
    let verbs = verbs_of(&stdout(&help));
    for known in ["list", "inspect", "install", "enable", "disable", "remove", "refresh", "status"] {
        assert!(verbs.iter().any(|v| v == known), "--help lists {known}: {verbs:?}");
    }

    let page = render(&root.join("usr/share/man/man1/kairos-ext.1"));
    let commands: String = page.split("\nCOMMANDS\n").nth(1).expect("kairos-ext(1) has COMMANDS").into();
    let bash = root.join("usr/share/bash-completion/completions/kairos-ext");
    let zsh = fs::read_to_string(root.join("usr/share/zsh/vendor-completions/_kairos-ext")).expect("zsh completion");
    let fish = fs::read_to_string(root.join("usr/share/fish/vendor_completions.d/kairos-ext.fish")).expect("fish");
    let offered = bash_complete(&bash, &[""]);
    for verb in &verbs {
        assert!(
            commands.lines().any(|l| l.split_whitespace().next() == Some(verb.as_str())),
            "kairos-ext(1) has no entry for {verb}"
        );
        assert!(offered.contains(verb), "bash does not offer {verb}: {offered:?}");
        assert!(zsh.contains(&format!("'{verb}:")), "zsh does not offer {verb}");
        assert!(fish.contains(&format!("-a \"{verb}\"")), "fish does not offer {verb}");
    }
    assert_eq!(bash_complete(&bash, &["inst"]), ["install"], "bash completes a prefix");
    let install_options = bash_complete(&bash, &["install", "--re"]);
    assert!(install_options.contains(&"--replace".to_owned()), "bash completes install's options: {install_options:?}");
    let jobs_options = bash_complete(&bash, &["jobs", "--"]);
    assert!(jobs_options.iter().any(|o| o == "--json"), "jobs prints data: {jobs_options:?}");
    assert!(!jobs_options.iter().any(|o| o == "--root" || o == "--config"), "jobs is service-only: {jobs_options:?}");
    let list_options = bash_complete(&bash, &["list", "--"]);
    for option in ["--root", "--json", "--no-pager", "--no-legend", "--active", "--quiet"] {
        assert!(list_options.iter().any(|o| o == option), "bash completes list {option}: {list_options:?}");
    }
    let states = bash_complete(&bash, &["enable", "k3s", "--boot", ""]);
    assert_eq!(states, ["active", "passive", "recovery", "common"], "bash offers the boot states");
    for state in ["active", "passive", "recovery", "common"] {
        assert!(zsh.contains(state) && fish.contains(state), "zsh and fish offer {state}");
    }

    // Each shell parses its script.
    for (shell, args, file) in [
        ("bash", vec!["-n"], bash.clone()),
        ("zsh", vec!["-n"], root.join("usr/share/zsh/vendor-completions/_kairos-ext")),
        ("fish", vec!["--no-execute"], root.join("usr/share/fish/vendor_completions.d/kairos-ext.fish")),
    ] {
        let output = Command::new(shell).args(args).arg(&file).output().expect("shell runs");
        assert!(output.status.success(), "{shell} cannot parse {}: {}", file.display(), stderr(&output));
    }
}

/// Every name the interface XML declares, by kind.
fn interface_members(xml: &str) -> Vec<String> {
    let mut names = Vec::new();
    for tag in ["<method name=\"", "<property name=\"", "<signal name=\"", "<interface name=\""] {
        for rest in xml.split(tag).skip(1) {
            if let Some(name) = rest.split('"').next() {
                names.push(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn the_bus_api_page_documents_every_member_and_error() {
    if !tools("the_bus_api_page_documents_every_member_and_error") {
        return;
    }
    let destdir = install("/usr");
    let root = destdir.path();
    let xml = fs::read_to_string(root.join("usr/share/dbus-1/interfaces/org.kairos.Extensions1.xml")).expect("xml");
    let source = root.join("usr/share/man/man5/org.kairos.Extensions1.5");
    let page = render(&source);
    let roff = fs::read_to_string(&source).expect("page source");
    let members = interface_members(&xml);
    assert!(members.len() > 40, "the XML parses into its members: {members:?}");
    for member in members {
        assert!(page.contains(&member), "org.kairos.Extensions1(5) does not document {member}");
    }
    for kind in kairos_extensions_dbus::ErrorKind::ALL {
        assert!(
            roff.lines().any(|l| l == format!(".B {}", kind.short_name())),
            "org.kairos.Extensions1(5) has no entry for the error {}",
            kind.dbus_name()
        );
    }
    for example in ["busctl call", "gdbus call"] {
        assert!(page.contains(example), "org.kairos.Extensions1(5) has no {example} example");
    }
}

/// Every configuration key the service accepts, as its own parser names them when it
/// refuses an unknown one.
fn config_keys() -> Vec<String> {
    let error = kairos_extensionsd::engine::Config::parse("no_such_key = 1").expect_err("unknown keys are refused");
    let keys: Vec<String> =
        error.split('`').skip(1).step_by(2).filter(|k| *k != "no_such_key").map(str::to_owned).collect();
    assert!(keys.len() >= 10 && keys.contains(&"image_policy".to_owned()), "keys from {error:?}: {keys:?}");
    keys
}

#[test]
fn every_configuration_key_is_documented() {
    let example = fs::read_to_string(repo().join("packaging/extensions.toml.example")).expect("example");
    let guide = fs::read_to_string(repo().join("docs/operator-guide.md")).expect("operator guide");
    let page = kairos_extensions_gendoc_page();
    for key in config_keys() {
        assert!(
            example.lines().any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
            "extensions.toml.example lacks {key}"
        );
        assert!(guide.contains(&format!("`{key}`")), "docs/operator-guide.md does not describe {key}");
        assert!(page.contains(&format!("\\fB{key}\\fR")), "kairos-extensionsd(8) does not describe {key}");
    }
}

/// The generated kairos-extensionsd(8) source.
fn kairos_extensions_gendoc_page() -> String {
    let (target_dir, profile) = build();
    let out = tempfile::tempdir().expect("temp dir");
    let gendoc = target_dir.join(profile).join("kairos-extensions-gendoc");
    let status = Command::new(&gendoc).arg(out.path()).status().expect("the generator runs (make test builds it)");
    assert!(status.success(), "{} failed", gendoc.display());
    fs::read_to_string(out.path().join("man/kairos-extensionsd.8")).expect("page written")
}

/// Shared libraries a binary needs.
fn needed(binary: &Path) -> Vec<String> {
    let output = Command::new("readelf").arg("-dW").arg(binary).output().expect("readelf runs");
    stdout(&output)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1).and_then(|s| s.split(']').next()).map(str::to_owned))
        .collect()
}

/// The package names of a Depends field, without versions or alternatives.
fn depends_names(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter_map(|d| d.split('|').next())
        .filter_map(|d| d.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The host's dpkg status entries of `packages`, so the throwaway root's dpkg checks the
/// Depends line against what Debian 12 really has installed.
fn status_of(packages: &[String]) -> String {
    let status = fs::read_to_string("/var/lib/dpkg/status").expect("dpkg status");
    let mut out = String::new();
    for paragraph in status.split("\n\n") {
        let name = paragraph.lines().find_map(|l| l.strip_prefix("Package: ")).unwrap_or("");
        if packages.iter().any(|p| p == name) && paragraph.contains("Status: install ok installed") {
            out.push_str(paragraph.trim_end());
            out.push_str("\n\n");
        }
    }
    out
}

fn dpkg(root: &Path, args: &[&str]) -> Output {
    // Scripts run on the host with DPKG_ROOT set, which they honour: nothing outside the
    // root changes.
    let output = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .arg("--force-script-chrootless")
        .args(args)
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .expect("dpkg runs");
    assert!(output.status.success(), "dpkg {args:?} failed:\n{}{}", stdout(&output), stderr(&output));
    output
}

#[test]
fn the_deb_installs_into_a_root_verifies_and_removes_what_it_installed() {
    let test = "the_deb_installs_into_a_root_verifies_and_removes_what_it_installed";
    if !privileged(test) || !tools(test) {
        return;
    }
    let out = tempfile::tempdir().expect("temp dir");
    make("deb-only", &[("DEB_OUT", out.path()), ("DEB_COMPRESSION", Path::new("gzip"))]);
    let arch = Command::new("dpkg").arg("--print-architecture").output().expect("dpkg runs");
    let (version, arch) = (env!("CARGO_PKG_VERSION"), stdout(&arch).trim().to_owned());
    let deb = out.path().join(format!("kairos-extensions_{version}_{arch}.deb"));
    let dbgsym = out.path().join(format!("kairos-extensions-dbgsym_{version}_{arch}.deb"));
    assert!(deb.is_file() && dbgsym.is_file(), "make deb-only writes both packages");

    // The package holds the manifest, with man pages compressed as Debian does, and the
    // copyright file Debian policy asks for.
    let contents = Command::new("dpkg-deb").arg("--fsys-tarfile").arg(&deb).output().expect("dpkg-deb runs");
    let listing = Command::new("tar")
        .args(["-t"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut tar| {
            use std::io::Write;
            tar.stdin.take().expect("stdin").write_all(&contents.stdout)?;
            tar.wait_with_output()
        })
        .expect("tar runs");
    let packaged: BTreeSet<String> =
        stdout(&listing).lines().filter(|l| !l.ends_with('/')).map(|l| l.trim_start_matches('.').to_owned()).collect();
    let mut expected: BTreeSet<String> = expected_usr()
        .into_iter()
        .map(|p| if p.starts_with("/usr/share/man/") { format!("{p}.gz") } else { p })
        .collect();
    expected.insert("/usr/share/doc/kairos-extensions/copyright".into());
    assert_eq!(packaged, expected, "the .deb holds the install manifest");

    let field = |name: &str| {
        let output = Command::new("dpkg-deb").args(["-f"]).arg(&deb).arg(name).output().expect("dpkg-deb runs");
        stdout(&output).trim().to_owned()
    };
    let depends = depends_names(&field("Depends"));

    // Every shared library the binaries load comes from a package the .deb depends on.
    let root_tmp = tempfile::tempdir().expect("temp dir");
    let root = root_tmp.path();
    let staged = dist().join("bin");
    for binary in ["kairos-ext", "kairos-extensionsd"] {
        for library in needed(&staged.join(binary)) {
            let owner = Command::new("dpkg").args(["-S"]).arg(format!("*/{library}")).output().expect("dpkg -S runs");
            let owners: Vec<String> = stdout(&owner)
                .lines()
                .filter_map(|l| l.split(':').next())
                .flat_map(|l| l.split(", "))
                .map(str::to_owned)
                .collect();
            assert!(
                owners.iter().any(|o| depends.contains(o)),
                "{binary} needs {library} from {owners:?}, which Depends ({depends:?}) does not name"
            );
        }
    }

    // A throwaway root whose dpkg knows the host's versions of the dependencies.
    let admin = root.join("var/lib/dpkg");
    fs::create_dir_all(admin.join("info")).expect("mkdir");
    fs::create_dir_all(admin.join("updates")).expect("mkdir");
    fs::write(admin.join("status"), status_of(&depends)).expect("status");
    let enablement = "etc/systemd/system/sysinit.target.wants/kairos-extensions-boot.service";
    let host_had_enablement = Path::new("/").join(enablement).exists();

    dpkg(root, &["-i", deb.to_str().expect("utf-8 path")]);
    for path in &expected {
        assert!(root.join(&path[1..]).is_file(), "dpkg -i did not install {path}");
    }
    // postinst: tmpfiles made the store, the boot unit is enabled, nothing started.
    for dir in ["var/lib/kairos/extensions/common", "var/lib/kairos/extensions/.meta", "run/extensions"] {
        assert!(root.join(dir).is_dir(), "postinst did not create /{dir}");
    }
    assert_eq!(
        fs::read_link(root.join(enablement)).ok(),
        Some(PathBuf::from("/usr/lib/systemd/system/kairos-extensions-boot.service")),
        "postinst enables the boot unit"
    );
    assert_eq!(Path::new("/").join(enablement).exists(), host_had_enablement, "the host is untouched");
    let timer = root.join("etc/systemd/system/timers.target.wants/kairos-extensions-update.timer");
    assert!(fs::symlink_metadata(timer).is_err(), "the update timer is shipped disabled");

    // The installed units pass systemd-analyze verify against the installed tree (with the
    // host's own units for the targets they order against, and our man pages).
    let units = root.join("lib/systemd");
    fs::create_dir_all(&units).expect("mkdir");
    let copied = Command::new("cp").arg("-a").arg("/lib/systemd/system").arg(&units).status().expect("cp runs");
    assert!(copied.success(), "copying the host's units");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args([
            "/usr/lib/systemd/system/kairos-extensionsd.service",
            "/usr/lib/systemd/system/kairos-extensions-boot.service",
            "/usr/lib/systemd/system/kairos-extensions-update.service",
            "/usr/lib/systemd/system/kairos-extensions-update.timer",
        ])
        .env("MANPATH", root.join("usr/share/man"))
        .current_dir(root)
        .output()
        .expect("systemd-analyze runs");
    assert!(verify.status.success(), "systemd-analyze verify: {}{}", stdout(&verify), stderr(&verify));
    fs::remove_dir_all(root.join("lib")).expect("remove the host's units again");

    // The -dbgsym package holds each binary's debug info under its build-id.
    let listing = Command::new("dpkg-deb").arg("-c").arg(&dbgsym).output().expect("dpkg-deb runs");
    for binary in ["usr/bin/kairos-ext", "usr/libexec/kairos-extensionsd"] {
        let notes = Command::new("readelf").arg("-n").arg(root.join(binary)).output().expect("readelf runs");
        let id =
            stdout(&notes).lines().find_map(|l| l.split("Build ID: ").nth(1)).expect("a build-id").trim().to_owned();
        let (dir, file) = id.split_at(2);
        let path = format!("./usr/lib/debug/.build-id/{dir}/{file}.debug");
        assert!(stdout(&listing).contains(&path), "the -dbgsym package lacks {path}:\n{}", stdout(&listing));
    }

    // dpkg -r removes every file it installed; the store and the enablement stay until purge.
    dpkg(root, &["-r", "kairos-extensions"]);
    for path in &expected {
        assert!(!root.join(&path[1..]).exists(), "dpkg -r left {path}");
    }
    assert!(root.join("var/lib/kairos/extensions").is_dir(), "the store outlives the package");
    assert!(root.join(enablement).is_symlink(), "enablement is kept until purge, as Debian does");
    dpkg(root, &["-P", "kairos-extensions"]);
    assert!(!root.join(enablement).is_symlink(), "purge forgets the enablement");
    let left: Vec<String> = files(root).into_iter().filter(|p| !p.starts_with("/var/lib/dpkg/")).collect();
    assert_eq!(left, Vec::<String>::new(), "after purge only directories remain");
}
