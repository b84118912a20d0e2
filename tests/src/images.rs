//! System extension images for tests, built with the real `mksquashfs`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds a squashfs sysext: a release file and some files under `usr/`.
pub struct ImageBuilder {
    name: String,
    release: Option<String>,
    files: Vec<(String, Vec<u8>, u32)>,
    symlinks: Vec<(String, String)>,
    dirs: Vec<String>,
}

impl ImageBuilder {
    /// An image whose release file is `extension-release.<name>` with `ID=_any`.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            release: Some("ID=_any\n".to_owned()),
            files: Vec::new(),
            symlinks: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// Leaves the release file out (the image is then no extension at all).
    pub fn without_release(mut self) -> Self {
        self.release = None;
        self
    }

    /// Adds a file at `path` (relative to the image root), mode 0644.
    pub fn file(mut self, path: &str, contents: &str) -> Self {
        self.files.push((path.to_owned(), contents.as_bytes().to_vec(), 0o644));
        self
    }

    /// Adds a symlink at `path` (relative to the image root) pointing at `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.symlinks.push((path.to_owned(), target.to_owned()));
        self
    }

    /// Adds an empty directory at `path` (relative to the image root).
    pub fn dir(mut self, path: &str) -> Self {
        self.dirs.push(path.to_owned());
        self
    }

    /// Replaces the extension-release contents.
    pub fn release(mut self, text: &str) -> Self {
        self.release = Some(text.to_owned());
        self
    }

    /// Adds `/usr/bin/<command>`, a script that prints `output`.
    pub fn command(mut self, command: &str, output: &str) -> Self {
        self.files.push((format!("usr/bin/{command}"), format!("#!/bin/sh\necho '{output}'\n").into_bytes(), 0o755));
        self
    }

    /// Adds `/usr/share/<name>/noise`: `len` bytes that do not compress, so that the
    /// image is about that large and takes time to move.
    pub fn noise(mut self, len: usize) -> Self {
        self.files.push((format!("usr/share/{}/noise", self.name), noise(len), 0o644));
        self
    }

    /// Writes the image to `dir/<file_name>` and returns its path.
    pub fn build(&self, dir: &Path, file_name: &str) -> PathBuf {
        let tree = tempfile::tempdir_in(dir).expect("scratch tree");
        let release_dir = tree.path().join("usr/lib/extension-release.d");
        fs::create_dir_all(&release_dir).expect("release dir");
        if let Some(release) = &self.release {
            fs::write(release_dir.join(format!("extension-release.{}", self.name)), release).expect("release file");
        }
        for (path, contents, mode) in &self.files {
            let full = tree.path().join(path);
            fs::create_dir_all(full.parent().expect("files live in a directory")).expect("file dir");
            fs::write(&full, contents).expect("file");
            fs::set_permissions(&full, fs::Permissions::from_mode(*mode)).expect("mode");
        }
        for path in &self.dirs {
            fs::create_dir_all(tree.path().join(path)).expect("dir");
        }
        for (path, target) in &self.symlinks {
            let full = tree.path().join(path);
            fs::create_dir_all(full.parent().expect("links live in a directory")).expect("link dir");
            std::os::unix::fs::symlink(target, &full).expect("symlink");
        }
        let out = dir.join(file_name);
        let status = Command::new("mksquashfs")
            .arg(tree.path())
            .arg(&out)
            .args(["-all-root", "-noappend", "-quiet"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("mksquashfs runs (Debian package squashfs-tools)");
        assert!(status.success(), "mksquashfs failed for {}", self.name);
        fs::set_permissions(&out, fs::Permissions::from_mode(0o644)).expect("image mode");
        out
    }
}

/// Writes `len` bytes that are no filesystem at all.
pub fn junk(dir: &Path, file_name: &str, len: usize) -> PathBuf {
    let path = dir.join(file_name);
    let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + 13) as u8).collect();
    fs::write(&path, bytes).expect("junk file");
    path
}

/// `len` bytes of xorshift noise: no compressor shrinks them, and every run gets the same.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}
